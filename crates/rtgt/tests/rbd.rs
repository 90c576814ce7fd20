//! RBD LUs through the daemon, against a real cluster (`tests/rbd.sh`
//! starts one and runs these with RTGT_CEPH_CONF set; ignored otherwise):
//! two daemons (gateways) export the same image under the same identity;
//! what one writes the other reads, COMPARE AND WRITE is atomic across
//! them (VMware's ATS locks), a resize in the cluster reaches both as
//! CAPACITY DATA HAS CHANGED, and a missing image is a clear start error.

mod common;

use common::iscsi_login::{login, LoginOptions};
use common::scsi_client::Session;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const IQN: &str = "iqn.2026-12.org.rtgt:rbd-ha";
const HOST: &str = "iqn.2026-12.org.rtgt:rbd-host";

fn ceph_conf() -> String {
    std::env::var("RTGT_CEPH_CONF")
        .expect("RTGT_CEPH_CONF: the test cluster's ceph.conf (tests/rbd.sh)")
}

fn rbd(args: &[&str]) {
    let out = Command::new("rbd")
        .arg("-c")
        .arg(ceph_conf())
        .args(args)
        .output()
        .expect("rbd");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh image for one test, removed afterwards.
struct Img(String);

impl Img {
    fn new(tag: &str, size: &str) -> Img {
        let name = format!("d{}-{tag}", std::process::id());
        rbd(&["create", "--size", size, &format!("rbd/{name}")]);
        Img(name)
    }
}

impl Drop for Img {
    fn drop(&mut self) {
        let _ = Command::new("rbd")
            .arg("-c")
            .arg(ceph_conf())
            .args(["rm", "--no-progress", &format!("rbd/{}", self.0)])
            .output();
    }
}

fn config(dir: &Path, image: &str, gateway: u16) -> PathBuf {
    let cfg = dir.join(format!("gw{gateway}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"[[backstore]]
name = "ceph"
type = "rbd"
pool = "rbd"
image = "{image}"
ceph_conf = "{conf}"
serial = "rbd-{image}"
naa = "6001405aaaaaaaaaaaaaaaaaaaaaaaaa"

[[target]]
iqn = "{IQN}"
[[target.tpg]]
tag = {gateway}
portals = ["127.0.0.1:0"]
mode = "demo"
[[target.tpg.lun]]
lun = 0
backstore = "ceph"
"#,
            conf = ceph_conf()
        ),
    )
    .unwrap();
    cfg
}

fn session(d: &Daemon, isid: u8) -> Session {
    session_as(d, HOST, isid)
}

fn session_as(d: &Daemon, host: &str, isid: u8) -> Session {
    let r = login(
        d.port(),
        &LoginOptions {
            initiator: host.into(),
            target: Some(IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0, 0, isid],
        },
    )
    .unwrap();
    assert!(r.succeeded(), "login: {}/{}", r.class, r.detail);
    let mut s = Session::new(r.stream.unwrap());
    s.clear_unit_attentions(0);
    s
}

fn write16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = write16(lba, blocks);
    c[0] = 0x88;
    c
}

fn caw(lba: u64) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = 1;
    c
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn two_gateways_serve_one_image_with_one_identity_and_atomic_compare_and_write() {
    let img = Img::new("ha", "64M");
    let dir = tempfile::tempdir().unwrap();
    let mut g1 = Daemon::with_config(&config(dir.path(), &img.0, 1));
    let mut g2 = Daemon::with_config(&config(dir.path(), &img.0, 2));
    let mut a = session(&g1, 1);
    let mut b = session(&g2, 2);
    // One LU identity on both paths (what dm-multipath groups by).
    assert_eq!(a.naa(0), b.naa(0));
    // READ CAPACITY(16): the image's size.
    assert_eq!(a.last_lba(0), (64 << 20) / 512 - 1);

    // Written through gateway 1, read through gateway 2 (no cache between).
    let data = random_bytes(64 * 1024, 19);
    let w = a.command(0, &write16(1000, 128), &data, 0).unwrap();
    assert_eq!(w.status, 0, "{w:?}");
    let r = b.command(0, &read16(1000, 128), &[], 64 * 1024).unwrap();
    assert_same("read through gateway 2", &r.data, &data);

    // ATS: both gateways try to take the same "lock" block (compare with
    // its current content, write their own): exactly one wins, the other
    // gets MISCOMPARE, whatever order they run in.
    let free = vec![0u8; 512];
    let mut won = 0;
    for round in 0..20u64 {
        let lba = 5000 + round;
        let mine_a = [&free[..], &[b'A'; 512][..]].concat();
        let mine_b = [&free[..], &[b'B'; 512][..]].concat();
        let ta = std::thread::scope(|s| {
            let ha = s.spawn(|| a.command(0, &caw(lba), &mine_a, 0).unwrap());
            let hb = s.spawn(|| b.command(0, &caw(lba), &mine_b, 0).unwrap());
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let (ra, rb) = ta;
        let ok = [ra.status == 0, rb.status == 0];
        assert_eq!(
            ok.iter().filter(|&&x| x).count(),
            1,
            "round {round}: exactly one wins: {ra:?} {rb:?}"
        );
        let loser = if ok[0] { &rb } else { &ra };
        assert_eq!(loser.sense_code(), Some((0x0e, 0x1d, 0x00)), "MISCOMPARE");
        let r = a.command(0, &read16(lba, 1), &[], 512).unwrap();
        let want = if ok[0] { b'A' } else { b'B' };
        assert!(
            r.data.iter().all(|&x| x == want),
            "round {round}: the winner's block"
        );
        won += ok[0] as u32;
    }
    eprintln!("gateway 1 won {won} of 20 rounds");

    // Resized in the cluster: both gateways report it.
    rbd(&[
        "resize",
        "--no-progress",
        "--size",
        "96M",
        &format!("rbd/{}", img.0),
    ]);
    for (name, s) in [("gateway 1", &mut a), ("gateway 2", &mut b)] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = Vec::new();
        while !seen.contains(&(0x06, 0x2a, 0x09)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no CAPACITY DATA HAS CHANGED: {seen:x?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
            seen.extend(s.clear_unit_attentions(0));
        }
        assert_eq!(s.last_lba(0), (96 << 20) / 512 - 1, "{name}");
    }
    g1.stop();
    g2.stop();
}

/// PERSISTENT RESERVE OUT with a basic parameter list.
fn prout(s: &mut Session, sa: u8, ty: u8, rk: u64, sark: u64) -> common::scsi_client::ScsiResult {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    s.command(0, &[0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0], &p, 0)
        .unwrap()
}

/// PERSISTENT RESERVE IN, READ KEYS: (generation, keys).
fn read_keys(s: &mut Session) -> (u32, Vec<u64>) {
    let r = s
        .command(0, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096)
        .unwrap();
    assert_eq!(r.status, 0, "READ KEYS: {r:?}");
    let n = u32::from_be_bytes(r.data[4..8].try_into().unwrap()) as usize;
    let keys = r.data[8..8 + n]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    (u32::from_be_bytes(r.data[0..4].try_into().unwrap()), keys)
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn persistent_reservations_are_one_state_across_gateways_in_the_cluster() {
    let img = Img::new("pr", "16M");
    let dir = tempfile::tempdir().unwrap();
    let mut g1 = Daemon::with_config(&config(dir.path(), &img.0, 1));
    let mut g2 = Daemon::with_config(&config(dir.path(), &img.0, 2));
    let mut a = session_as(&g1, "iqn.2026-12.org.rtgt:node-a", 1);
    let mut b = session_as(&g2, "iqn.2026-12.org.rtgt:node-b", 2);
    const WE: u8 = 1;
    assert_eq!(
        prout(&mut a, 0, 0, 0, 0xa).status,
        0,
        "register A through gateway 1"
    );
    assert_eq!(
        prout(&mut b, 0, 0, 0, 0xb).status,
        0,
        "register B through gateway 2"
    );
    assert_eq!(read_keys(&mut a), (2, vec![0xa, 0xb]));
    assert_eq!(read_keys(&mut b), (2, vec![0xa, 0xb]));
    // A reserves through gateway 1: gateway 2 enforces it.
    assert_eq!(prout(&mut a, 1, WE, 0xa, 0).status, 0);
    let data = vec![7u8; 512];
    assert_eq!(a.command(0, &write16(0, 1), &data, 0).unwrap().status, 0);
    let w = b.command(0, &write16(0, 1), &data, 0).unwrap();
    assert_eq!(
        w.status, 0x18,
        "RESERVATION CONFLICT through gateway 2: {w:?}"
    );
    assert_eq!(
        prout(&mut b, 1, WE, 0xb, 0).status,
        0x18,
        "a second reservation conflicts"
    );
    // B preempts A through gateway 2 (a failover cluster fencing node A):
    // A's nexus on gateway 1 is told, and fenced.
    assert_eq!(prout(&mut b, 4, WE, 0xb, 0xa).status, 0);
    let seen = a.clear_unit_attentions(0);
    assert!(
        seen.contains(&(0x06, 0x2a, 0x05)),
        "REGISTRATIONS PREEMPTED on gateway 1: {seen:x?}"
    );
    let w = a.command(0, &write16(0, 1), &data, 0).unwrap();
    assert_eq!(w.status, 0x18, "A is fenced on gateway 1: {w:?}");
    assert_eq!(b.command(0, &write16(0, 1), &data, 0).unwrap().status, 0);
    assert_eq!(read_keys(&mut a).1, vec![0xb]);
    // A gateway restarted later finds the state in the cluster.
    g1.stop();
    let mut g1 = Daemon::with_config(&config(dir.path(), &img.0, 1));
    let mut a = session_as(&g1, "iqn.2026-12.org.rtgt:node-a", 3);
    assert_eq!(read_keys(&mut a).1, vec![0xb]);
    assert_eq!(a.command(0, &write16(0, 1), &data, 0).unwrap().status, 0x18);
    g1.stop();
    g2.stop();
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn a_missing_image_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "no-such-image", 1);
    let out = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--control")
        .arg(dir.path().join("ctl.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rbd/no-such-image") && err.contains("\"ceph\""),
        "{err}"
    );
}

/// The cluster's directory (scripts/ceph-dev-cluster.sh), for the fault
/// test that stops and starts its daemons.
fn cluster_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("RTGT_CEPH_DIR")
            .expect("RTGT_CEPH_DIR: the test cluster's directory (tests/rbd.sh)"),
    )
}

fn cluster(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-dev-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(args[0])
        .arg(cluster_dir())
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ceph-dev-cluster {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write then read back one 64 KiB run at `lba`; the status of each and
/// how long they took.
fn write_read(s: &mut Session, lba: u64, seed: u64) -> (ScsiOutcome, std::time::Duration) {
    let t = std::time::Instant::now();
    let data = random_bytes(64 * 1024, seed);
    let w = s.command(0, &write16(lba, 128), &data, 0).unwrap();
    if w.status != 0 {
        return (ScsiOutcome::Failed(w.sense_code()), t.elapsed());
    }
    let r = s.command(0, &read16(lba, 128), &[], 64 * 1024).unwrap();
    if r.status != 0 {
        return (ScsiOutcome::Failed(r.sense_code()), t.elapsed());
    }
    assert_same("read back", &r.data, &data);
    (ScsiOutcome::Good, t.elapsed())
}

#[derive(Debug, PartialEq)]
enum ScsiOutcome {
    Good,
    Failed(Option<(u8, u8, u8)>),
}

/// Runs alone (it stops the cluster's daemons): tests/rbd.sh gives it a
/// cluster of its own, two OSDs and a pool of size 2.
#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn cluster_faults_give_retryable_errors_within_the_deadline_never_a_hang() {
    let img = Img::new("faults", "64M");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &img.0, 1);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("serial = ", "op_timeout = 5\nserial = ");
    std::fs::write(&cfg, text).unwrap();
    let mut g = Daemon::with_config(&cfg);
    let mut s = session(&g, 1);
    assert_eq!(write_read(&mut s, 0, 1).0, ScsiOutcome::Good);

    // One OSD of two stopped: I/O goes on, on the other replica.
    cluster(&["osd-stop", "1"]);
    for i in 0..10u64 {
        let (o, took) = write_read(&mut s, i * 128, 10 + i);
        assert_eq!(
            o,
            ScsiOutcome::Good,
            "with one OSD down, run {i} ({took:?})"
        );
    }

    // The mon stopped briefly: I/O on current maps goes on; whatever
    // fails, fails retryably within the deadline.
    cluster(&["mon-stop"]);
    for i in 0..5u64 {
        let (o, took) = write_read(&mut s, 2000 + i * 128, 30 + i);
        assert!(
            took < std::time::Duration::from_secs(12),
            "with the mon down: {took:?}"
        );
        if let ScsiOutcome::Failed(code) = o {
            assert_eq!(code, Some((0x0b, 0x3e, 0x02)), "with the mon down");
        }
    }
    cluster(&["mon-start"]);

    // The OSD left hangs (SIGSTOP): each command ends within op_timeout
    // (5 s; the write and the read each wait at most that) with ABORTED
    // COMMAND / TIMEOUT ON LOGICAL UNIT, which initiators retry; no hang.
    cluster(&["osd-pause", "0"]);
    let (o, took) = write_read(&mut s, 4000, 50);
    cluster(&["osd-resume", "0"]);
    assert_eq!(o, ScsiOutcome::Failed(Some((0x0b, 0x3e, 0x02))), "{took:?}");
    assert!(
        took < std::time::Duration::from_secs(12),
        "failed within the deadline: {took:?}"
    );
    // Back: the same command succeeds (the initiator's retry).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (o, _) = write_read(&mut s, 4000, 51);
        if o == ScsiOutcome::Good {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "I/O did not come back: {o:?}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    cluster(&["osd-start", "1"]);
    // What was acknowledged before the faults is still there.
    for i in 0..10u64 {
        let r = s.command(0, &read16(i * 128, 128), &[], 64 * 1024).unwrap();
        assert_same(
            &format!("run {i} after the faults"),
            &r.data,
            &random_bytes(64 * 1024, 10 + i),
        );
    }
    g.stop();
}
