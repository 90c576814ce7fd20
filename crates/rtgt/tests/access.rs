//! Access control end to end, with real initiators (libiscsi's tools with
//! `-i` initiator names and CHAP in the URL, QEMU's libiscsi driver with
//! `initiator-name`) and, where no tool can send what is needed (SHA-2/3
//! CHAP, a reflected challenge, a write through a read-only mapping that
//! QEMU refuses to attempt, an EXTENDED COPY), this suite's own client.
//!
//! The seed's case: from target T, initiator A sees X and Y read-write;
//! B sees Y read-only and Z read-write (under other LUN numbers than the
//! group's); an initiator without an ACL cannot log in and does not learn
//! of T from discovery.

mod common;

use common::iscsi_login::{login, send_targets, ClientChap, LoginOptions, LoginResult};
use common::scsi_client::Session;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: &str = "iqn.2026-11.org.rtgt:access-t";
const OPEN: &str = "iqn.2026-11.org.rtgt:access-open";
const A: &str = "iqn.2026-11.org.rtgt:host-a";
const B: &str = "iqn.2026-11.org.rtgt:host-b";
const C: &str = "iqn.2026-11.org.rtgt:host-c";
const B_SECRET: &str = "b-secret-0123456";
const B_MUTUAL: &str = "target-secret-789";

/// The seed's configuration. B authenticates with CHAP (`b_auth`), A
/// maps `extra_a` more lines of mapped LUNs.
fn seed_config(b_auth: &str, extra_a: &str) -> String {
    format!(
        r#"
[[backstore]]
name = "X"
type = "ramdisk"
size = "16M"

[[backstore]]
name = "Y"
type = "ramdisk"
size = "32M"

[[backstore]]
name = "Z"
type = "ramdisk"
size = "48M"

[[target]]
iqn = "{T}"

[[target.tpg]]
tag = 1
mode = "acl"

[[target.tpg.lun]]
lun = 10
backstore = "X"

[[target.tpg.lun]]
lun = 11
backstore = "Y"

[[target.tpg.lun]]
lun = 12
backstore = "Z"

[[target.tpg.acl]]
initiator = "{A}"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 10

[[target.tpg.acl.mapped_lun]]
mapped_lun = 1
tpg_lun = 11
{extra_a}
[[target.tpg.acl]]
initiator = "{B}"
{b_auth}
[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 11
read_only = true

[[target.tpg.acl.mapped_lun]]
mapped_lun = 1
tpg_lun = 12

[[target]]
iqn = "{OPEN}"

[[target.tpg]]
tag = 1
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "Z"
"#
    )
}

fn b_chap(algorithms: &str) -> String {
    format!("[target.tpg.acl.auth]\nuserid = \"bob\"\npassword = \"{B_SECRET}\"\n{algorithms}")
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("rtgt.toml");
    common::write_private(&p, text);
    p
}

fn opts(initiator: &str, target: Option<&str>, chap: Option<ClientChap>) -> LoginOptions {
    LoginOptions {
        initiator: initiator.into(),
        target: target.map(Into::into),
        chap,
        isid: [0x80, 0, 0, 0x12, 0x34, 0x56],
    }
}

fn chap(user: &str, secret: &str, algorithms: &[u8]) -> ClientChap {
    ClientChap {
        user: user.into(),
        secret: secret.as_bytes().to_vec(),
        algorithms: algorithms.to_vec(),
        mutual: None,
        reflect: false,
    }
}

fn session(d: &Daemon, initiator: &str, chap: Option<ClientChap>) -> Session {
    let r = login(d.port(), &opts(initiator, Some(T), chap)).unwrap();
    assert!(
        r.succeeded(),
        "{initiator} login: {:02x}/{:02x}",
        r.class,
        r.detail
    );
    Session::new(r.stream.unwrap())
}

fn status(r: &LoginResult) -> (u8, u8) {
    (r.class, r.detail)
}

/// `iscsi-ls -s` as `initiator`: "Lun:N ... (Size:M)" lines of target `iqn`.
fn listed_luns(d: &Daemon, initiator: &str, creds: &str, iqn: &str) -> Vec<String> {
    let portal = format!("iscsi://{creds}127.0.0.1:{}", d.port());
    let out = run_ok(
        Command::new(libiscsi("iscsi-ls")).args(["-s", "-i", initiator, &portal]),
        30,
    );
    let mut mine = false;
    let mut luns = Vec::new();
    for l in out.lines() {
        if let Some(t) = l.strip_prefix("Target:") {
            mine = t.starts_with(&format!("{iqn} "));
        } else if mine && l.starts_with("Lun:") {
            luns.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    luns
}

/// qemu-io through QEMU's libiscsi driver as `initiator`.
fn qemu_io(
    q: &Qemu,
    d: &Daemon,
    initiator: &str,
    auth: &str,
    lun: u32,
    args: &[&str],
) -> std::process::Output {
    let opts = format!(
        "driver=iscsi,transport=tcp,portal=127.0.0.1:{},target={T},lun={lun},initiator-name={initiator}{auth}",
        d.port()
    );
    run(
        q.cmd("qemu-io").arg("--image-opts").arg(opts).args(args),
        60,
    )
}

const B_QEMU_AUTH: &str = ",user=bob,password=b-secret-0123456";

#[test]
fn seed_case_lun_masking_and_write_protect() {
    let q = Qemu::find();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &seed_config(&b_chap(""), ""));
    let d = Daemon::with_config(&cfg);
    let b_creds = format!("bob%{B_SECRET}@");

    // REPORT LUNS through each initiator's map (iscsi-ls -s logs in to
    // each target it discovers and lists the LUNs).
    assert_eq!(
        listed_luns(&d, A, "", T),
        [
            "Lun:0 Type:DIRECT_ACCESS (Size:15M)",
            "Lun:1 Type:DIRECT_ACCESS (Size:31M)"
        ]
    );
    assert_eq!(
        listed_luns(&d, B, &b_creds, T),
        [
            "Lun:0 Type:DIRECT_ACCESS (Size:31M)",
            "Lun:1 Type:DIRECT_ACCESS (Size:47M)"
        ]
    );

    // A writes Y (its LUN 1); B reads the same data through its LUN 0.
    let out = qemu_io(&q, &d, A, "", 1, &["-c", "write -P 0xa7 0 1M"]);
    assert!(out.status.success(), "A writes Y: {out:?}");
    let out = qemu_io(
        &q,
        &d,
        B,
        B_QEMU_AUTH,
        0,
        &["-r", "-c", "read -P 0xa7 0 1M"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("verification failed"),
        "B reads Y: {out:?}"
    );
    // QEMU sees WP in MODE SENSE and will not open B's LUN 0 for writing.
    let out = qemu_io(&q, &d, B, B_QEMU_AUTH, 0, &["-c", "write -P 0x11 0 4k"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("write protected"),
        "B opened a read-only mapping for writing: {out:?}"
    );
    // B writes Z (its LUN 1) normally.
    let out = qemu_io(
        &q,
        &d,
        B,
        B_QEMU_AUTH,
        1,
        &["-c", "write -P 0x3c 0 64k", "-c", "read -P 0x3c 0 64k"],
    );
    assert!(out.status.success(), "B writes Z: {out:?}");

    // A WRITE sent anyway through the read-only mapping: DATA PROTECT /
    // WRITE PROTECTED, and nothing written; the same block through A's
    // read-write mapping is written.
    let mut b = session(&d, B, Some(chap("bob", B_SECRET, &[5])));
    b.clear_unit_attentions(0);
    let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let r = b.command(0, &write10, &[0x55; 512], 0).unwrap();
    assert_eq!(
        (r.status, r.sense_code()),
        (2, Some((0x07, 0x27, 0x00))),
        "{r:?}"
    );
    let mode_sense = [0x1a, 0, 0x3f, 0, 0xff, 0];
    let wp = |s: &mut Session, lun| s.command(lun, &mode_sense, &[], 255).unwrap().data[2] & 0x80;
    assert_eq!(wp(&mut b, 0), 0x80, "MODE SENSE shows WP to B on Y");
    b.clear_unit_attentions(1);
    assert_eq!(wp(&mut b, 1), 0, "but not on Z");
    let mut a = session(&d, A, None);
    a.clear_unit_attentions(1);
    assert_eq!(wp(&mut a, 1), 0, "nor to A on Y");
    let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(
        a.command(1, &read10, &[], 512).unwrap().data,
        vec![0xa7; 512]
    );
    assert_eq!(a.command(1, &write10, &[0x66; 512], 0).unwrap().status, 0);
    assert_eq!(
        b.command(0, &read10, &[], 512).unwrap().data,
        vec![0x66; 512]
    );

    // An unmapped LUN (the group's LUN 11 is not B's): INQUIRY says
    // peripheral qualifier 011b, other commands LOGICAL UNIT NOT SUPPORTED
    // (libiscsi's tools refuse such a LUN at login, after a TEST UNIT READY).
    let r = b.command(2, &[0x12, 0, 0, 0, 36, 0], &[], 36).unwrap();
    assert_eq!((r.status, r.data[0]), (0, 0x7f), "{r:?}");
    let url = format!("iscsi://{b_creds}127.0.0.1:{}/{T}/11", d.port());
    let out = run(
        Command::new(libiscsi("iscsi-inq")).args(["-i", B, &url]),
        30,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LOGICAL_UNIT_NOT_SUPPORTED"),
        "{out:?}"
    );
    let r = b.command(11, &read10, &[], 512).unwrap();
    assert_eq!(r.sense_code(), Some((0x05, 0x25, 0x00)), "{r:?}");
}

#[test]
fn no_acl_no_login_and_discovery_shows_only_what_an_initiator_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &seed_config("", ""));
    let d = Daemon::with_config(&cfg);

    // C has no ACL: login status 02/02 (authorization failure).
    let r = login(d.port(), &opts(C, Some(T), None)).unwrap();
    assert_eq!(status(&r), (2, 2));
    let out = run(
        Command::new(libiscsi("iscsi-inq")).args(["-i", C, &d.url(T, 0)]),
        30,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authorization failure"),
        "{out:?}"
    );
    // ... and the demo-mode target stays open to C.
    let r = login(d.port(), &opts(C, Some(OPEN), None)).unwrap();
    assert!(r.succeeded());

    // SendTargets: C learns only of the open target; A of both.
    let portal = format!("iscsi://127.0.0.1:{}", d.port());
    let ls = |who: &str| {
        run_ok(
            Command::new(libiscsi("iscsi-ls")).args(["-i", who, &portal]),
            30,
        )
    };
    let c_sees = ls(C);
    assert!(c_sees.contains(OPEN) && !c_sees.contains(T), "{c_sees}");
    let a_sees = ls(A);
    assert!(
        a_sees.contains(OPEN) && a_sees.contains(&format!("Target:{T} ")),
        "{a_sees}"
    );
    // The same through our own client (raw SendTargets=All).
    let mut s = login(d.port(), &opts(C, None, None))
        .unwrap()
        .stream
        .unwrap();
    let names: Vec<String> = send_targets(&mut s)
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(names, [OPEN]);
    assert!(
        d.stderr().contains("no ACL for this initiator"),
        "the log says why"
    );
}

#[test]
fn chap_every_algorithm_mutual_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mutual = format!("mutual_userid = \"tgt\"\nmutual_password = \"{B_MUTUAL}\"\n");
    let cfg = write_config(dir.path(), &seed_config(&b_chap(""), ""));
    let mut d = Daemon::with_config(&cfg);

    // One-way CHAP with each algorithm, alone and in preference order.
    for alg in [5u8, 6, 7, 8] {
        let r = login(
            d.port(),
            &opts(B, Some(T), Some(chap("bob", B_SECRET, &[alg]))),
        )
        .unwrap();
        assert!(r.succeeded(), "CHAP_A={alg}: {:?}", status(&r));
        assert_eq!(r.chosen_algorithm, Some(alg));
    }
    let r = login(
        d.port(),
        &opts(B, Some(T), Some(chap("bob", B_SECRET, &[6, 8, 5]))),
    )
    .unwrap();
    assert_eq!(r.chosen_algorithm, Some(6), "the initiator's order decides");
    // libiscsi offers MD5 only.
    let url = format!("iscsi://bob%{B_SECRET}@127.0.0.1:{}/{T}/1", d.port());
    run_ok(
        Command::new(libiscsi("iscsi-inq")).args(["-i", B, &url]),
        30,
    );

    // Failures: 02/01, whatever went wrong.
    let bad = [
        ("wrong secret", chap("bob", "not-the-secret-1", &[7])),
        ("wrong user", chap("alice", B_SECRET, &[7])),
        ("unknown algorithm", chap("bob", B_SECRET, &[99])),
    ];
    for (what, c) in bad {
        let r = login(d.port(), &opts(B, Some(T), Some(c))).unwrap();
        assert_eq!(status(&r), (2, 1), "{what}");
    }
    let r = login(d.port(), &opts(B, Some(T), None)).unwrap();
    assert_eq!(status(&r), (2, 1), "AuthMethod=None when CHAP is required");
    let wrong = format!("iscsi://bob%wrong-secret-9999@127.0.0.1:{}/{T}/1", d.port());
    let out = run(
        Command::new(libiscsi("iscsi-inq")).args(["-i", B, &wrong]),
        30,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authentication failure"),
        "{out:?}"
    );

    // Mutual CHAP: the target proves itself with the mutual secret.
    common::write_private(&cfg, &seed_config(&b_chap(&mutual), ""));
    reload(&d, 1);
    for alg in [5u8, 8] {
        let mut c = chap("bob", B_SECRET, &[alg]);
        c.mutual = Some(("tgt".into(), B_MUTUAL.as_bytes().to_vec()));
        let r = login(d.port(), &opts(B, Some(T), Some(c))).unwrap();
        assert!(r.succeeded(), "mutual CHAP_A={alg}: {:?}", status(&r));
        assert_eq!(r.target_verified, Some(true));
    }
    let url = format!(
        "iscsi://bob%{B_SECRET}@127.0.0.1:{}/{T}/1?target_user=tgt&target_password={B_MUTUAL}",
        d.port()
    );
    run_ok(
        Command::new(libiscsi("iscsi-inq")).args(["-i", B, &url]),
        30,
    );
    // A reflected challenge (ours sent back as the initiator's) is refused.
    let mut c = chap("bob", B_SECRET, &[7]);
    c.mutual = Some(("tgt".into(), B_MUTUAL.as_bytes().to_vec()));
    c.reflect = true;
    let r = login(d.port(), &opts(B, Some(T), Some(c))).unwrap();
    assert_eq!(status(&r), (2, 1), "reflection");
    // Mutual required but not asked for.
    let r = login(
        d.port(),
        &opts(B, Some(T), Some(chap("bob", B_SECRET, &[7]))),
    )
    .unwrap();
    assert_eq!(status(&r), (2, 1));

    // The target may restrict the algorithms.
    let restricted = format!(
        "[iscsi]\nchap_algorithms = [\"SHA256\"]\n{}",
        seed_config(&b_chap(""), "")
    );
    common::write_private(&cfg, &restricted);
    reload(&d, 2);
    let r = login(
        d.port(),
        &opts(B, Some(T), Some(chap("bob", B_SECRET, &[8, 5, 7]))),
    )
    .unwrap();
    assert_eq!((r.succeeded(), r.chosen_algorithm), (true, Some(7)));
    let r = login(
        d.port(),
        &opts(B, Some(T), Some(chap("bob", B_SECRET, &[5]))),
    )
    .unwrap();
    assert_eq!(status(&r), (2, 1), "MD5 not allowed");

    // Secrets never reach the log; the failing initiator does.
    d.stop();
    let log = d.stderr();
    for s in [B_SECRET, B_MUTUAL, "not-the-secret-1", "wrong-secret-9999"] {
        assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
    }
}

#[test]
fn discovery_chap() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[iscsi.discovery_auth]\nuserid = \"disco\"\npassword = \"discovery-secret-1\"\n{}",
        seed_config("", "")
    );
    let cfg = write_config(dir.path(), &text);
    let d = Daemon::with_config(&cfg);
    let r = login(d.port(), &opts(A, None, None)).unwrap();
    assert_eq!(status(&r), (2, 1), "discovery without CHAP");
    let r = login(
        d.port(),
        &opts(A, None, Some(chap("disco", "discovery-secret-1", &[8]))),
    )
    .unwrap();
    assert!(r.succeeded());
    let mut s = r.stream.unwrap();
    let names: Vec<String> = send_targets(&mut s)
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert!(
        names.contains(&T.to_string()) && names.contains(&OPEN.to_string()),
        "{names:?}"
    );
    let portal = format!("iscsi://disco%discovery-secret-1@127.0.0.1:{}", d.port());
    let out = run_ok(
        Command::new(libiscsi("iscsi-ls")).args(["-i", A, &portal]),
        30,
    );
    assert!(out.contains(T), "{out}");
    // Normal sessions are not affected by discovery CHAP.
    assert!(login(d.port(), &opts(A, Some(T), None))
        .unwrap()
        .succeeded());
}

#[test]
fn extended_copy_cannot_reach_an_unmapped_lu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &seed_config("", ""));
    let d = Daemon::with_config(&cfg);
    let mut a = session(&d, A, None);
    let mut b = session(&d, B, None);
    for lun in [0, 1] {
        a.clear_unit_attentions(lun);
        b.clear_unit_attentions(lun);
    }
    // A fills X (its LUN 0) and leaks X's designator; B has no path to X.
    let write16 = |lba: u64, n: u32| {
        let mut c = vec![0x8a, 0];
        c.extend_from_slice(&lba.to_be_bytes());
        c.extend_from_slice(&n.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c
    };
    let read16 = |lba: u64, n: u32| {
        let mut c = write16(lba, n);
        c[0] = 0x88;
        c
    };
    assert_eq!(
        a.command(0, &write16(0, 8), &[0xe1; 4096], 0)
            .unwrap()
            .status,
        0
    );
    let x = a.naa(0);
    let z = b.naa(1);
    assert_eq!(
        b.command(1, &write16(0, 8), &[0x2b; 4096], 0)
            .unwrap()
            .status,
        0
    );

    // EXTENDED COPY (LID1): two identification CSCDs (E4h, NAA) and one
    // block-to-block segment of 8 blocks.
    let cscd = |naa: &[u8]| {
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[4] = 0x01; // code set binary
        d[5] = 0x03; // NAA, LU association
        d[7] = naa.len() as u8;
        d[8..8 + naa.len()].copy_from_slice(naa);
        d[29..32].copy_from_slice(&512u32.to_be_bytes()[1..]);
        d
    };
    let xcopy = |src: &[u8], dst: &[u8], src_lba: u64, dst_lba: u64| {
        let mut seg = vec![0u8; 28];
        seg[0] = 0x02;
        seg[2..4].copy_from_slice(&0x18u16.to_be_bytes());
        seg[4..6].copy_from_slice(&0u16.to_be_bytes());
        seg[6..8].copy_from_slice(&1u16.to_be_bytes());
        seg[10..12].copy_from_slice(&8u16.to_be_bytes());
        seg[12..20].copy_from_slice(&src_lba.to_be_bytes());
        seg[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        let mut p = vec![0u8; 16];
        p[1] = 0x18; // LIST ID USAGE 11b: no list id
        p[2..4].copy_from_slice(&64u16.to_be_bytes());
        p[8..12].copy_from_slice(&28u32.to_be_bytes());
        p.extend(cscd(src));
        p.extend(cscd(dst));
        p.extend(seg);
        let mut cdb = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[10..14].copy_from_slice(&(p.len() as u32).to_be_bytes());
        (cdb, p)
    };
    // Read X through B: Z <- X.
    let (cdb, p) = xcopy(&x, &z, 0, 100);
    let r = b.command(1, &cdb, &p, 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x0a, 0x0d, 0x02)),
        "COPY TARGET DEVICE NOT REACHABLE: {r:?}"
    );
    let r = b.command(1, &read16(100, 8), &[], 4096).unwrap();
    assert_eq!(r.data, vec![0u8; 4096], "X's data reached B");
    // Write X through B: X <- Z.
    let (cdb, p) = xcopy(&z, &x, 0, 0);
    let r = b.command(1, &cdb, &p, 0).unwrap();
    assert_eq!(r.sense_code(), Some((0x0a, 0x0d, 0x02)), "{r:?}");
    let r = a.command(0, &read16(0, 8), &[], 4096).unwrap();
    assert_eq!(r.data, vec![0xe1; 4096], "B wrote X");
    // A, who maps X and Y, copies between them.
    let y = a.naa(1);
    let (cdb, p) = xcopy(&x, &y, 0, 40);
    assert_eq!(a.command(0, &cdb, &p, 0).unwrap().status, 0);
    assert_eq!(
        a.command(1, &read16(40, 8), &[], 4096).unwrap().data,
        vec![0xe1; 4096]
    );
    // B maps Y read-only: a source, never a destination.
    let (cdb, p) = xcopy(&z, &y, 0, 0);
    let r = b.command(1, &cdb, &p, 0).unwrap();
    assert_eq!(
        r.sense_code().map(|s| s.0),
        Some(0x07),
        "DATA PROTECT: {r:?}"
    );
}

/// SIGHUP and wait for the daemon to report the `n`th reload.
fn reload(d: &Daemon, n: usize) {
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stderr().matches("rtgt: reloaded").count() < n {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_changes_a_live_map_without_disturbing_others() {
    let q = Qemu::find();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &seed_config("", ""));
    let d = Daemon::with_config(&cfg);

    let mut a = session(&d, A, None);
    for lun in [0, 1] {
        a.clear_unit_attentions(lun);
    }
    assert_eq!(a.report_luns(), [0, 1]);

    // B keeps I/O running on Z (its LUN 1) through QEMU meanwhile.
    let opts = format!(
        "driver=iscsi,transport=tcp,portal=127.0.0.1:{},target={T},lun=1,initiator-name={B}",
        d.port()
    );
    let mut bench = q.cmd("qemu-img");
    bench
        .args([
            "bench", "-t", "none", "-c", "300000", "-d", "8", "-s", "4k", "-w",
        ])
        .arg("--image-opts")
        .arg(&opts)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut bench = bench.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // A gains Z as LUN 7; a broken file in between changes nothing.
    common::write_private(&cfg, "[[target]]\niqn = \"bogus\"\n");
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.stderr().contains("reload refused") {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.stderr().contains("rtgt.toml:2:"),
        "names file and line:\n{}",
        d.stderr()
    );
    assert_eq!(
        a.command(0, &[0; 6], &[], 0).unwrap().status,
        0,
        "nothing changed"
    );

    let extra = "\n[[target.tpg.acl.mapped_lun]]\nmapped_lun = 7\ntpg_lun = 12\n";
    common::write_private(&cfg, &seed_config("", extra));
    reload(&d, 1);
    assert!(
        bench.try_wait().unwrap().is_none(),
        "B's I/O ended before the reload: make it longer"
    );
    let r = a.command(0, &[0; 6], &[], 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x06, 0x3f, 0x0e)),
        "REPORTED LUNS DATA HAS CHANGED: {r:?}"
    );
    assert_eq!(a.report_luns(), [0, 1, 7]);
    a.clear_unit_attentions(7);
    let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(a.command(7, &read10, &[], 512).unwrap().status, 0);

    let out = bench.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "B's I/O saw an error:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Removing A's ACL ends A's session; B is untouched.
    let mut b = session(&d, B, None);
    b.clear_unit_attentions(1);
    let no_a = seed_config("", "").replace(
        &format!("initiator = \"{A}\""),
        "initiator = \"iqn.2026-11.org.rtgt:gone\"",
    );
    common::write_private(&cfg, &no_a);
    reload(&d, 2);
    assert!(
        a.command(0, &[0; 6], &[], 0).is_err(),
        "A's connection should be closed"
    );
    assert_eq!(
        b.command(1, &[0; 6], &[], 0).unwrap().status,
        0,
        "B sees no error"
    );
    let r = login(d.port(), &opts_for(A)).unwrap();
    assert_eq!(status(&r), (2, 2));
}

fn opts_for(initiator: &str) -> LoginOptions {
    opts(initiator, Some(T), None)
}

#[test]
fn sighup_grows_a_fileio_lun_and_refuses_to_shrink_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("grow.img");
    let config = |size: &str| {
        format!(
            "[[backstore]]\nname = \"f\"\ntype = \"fileio\"\npath = \"{}\"\nsize = \"{size}\"\n\n\
             [[target]]\niqn = \"{T}\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n\
             [[target.tpg.lun]]\nlun = 0\nbackstore = \"f\"\n",
            img.display()
        )
    };
    let cfg = write_config(dir.path(), &config("16M"));
    let d = Daemon::with_config(&cfg);
    let mut s = session(&d, A, None);
    s.clear_unit_attentions(0);
    let read_capacity = |s: &mut Session| {
        let r = s
            .command(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8)
            .unwrap();
        assert_eq!(r.status, 0, "{r:?}");
        u32::from_be_bytes(r.data[0..4].try_into().unwrap()) as u64 + 1
    };
    assert_eq!(read_capacity(&mut s), (16 << 20) / 512);
    common::write_private(&cfg, &config("24M"));
    reload(&d, 1);
    let r = s.command(0, &[0; 6], &[], 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x06, 0x2a, 0x09)),
        "CAPACITY DATA HAS CHANGED: {r:?}"
    );
    assert_eq!(read_capacity(&mut s), (24 << 20) / 512);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 24 << 20);
    // The new end is writable.
    let mut w = vec![0x8a, 0];
    w.extend_from_slice(&((24u64 << 20) / 512 - 1).to_be_bytes());
    w.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    assert_eq!(s.command(0, &w, &[0x77; 512], 0).unwrap().status, 0);
    // Shrinking would drop data: refused, nothing changes.
    common::write_private(&cfg, &config("8M"));
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.stderr().contains("cannot shrink") {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read_capacity(&mut s), (24 << 20) / 512);
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sighup_binds_new_portals_and_closes_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let config = |ports: &[u16]| {
        let portals: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        format!(
            "[[backstore]]\nname = \"r\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\n\
             [[target]]\niqn = \"{T}\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\nportals = [{}]\n\
             [[target.tpg.lun]]\nlun = 0\nbackstore = \"r\"\n",
            portals.join(", ")
        )
    };
    let cfg = write_config(dir.path(), &config(&[p1]));
    let d = Daemon::start(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(d.ports, [p1]);
    let logs_in = |port: u16| {
        login(port, &opts(A, Some(T), None))
            .map(|r| r.succeeded())
            .unwrap_or(false)
    };
    assert!(logs_in(p1) && !logs_in(p2));
    common::write_private(&cfg, &config(&[p1, p2]));
    reload(&d, 1);
    assert!(logs_in(p1) && logs_in(p2), "new portal served");
    // A session on the portal that stays is not disturbed.
    let mut s = session_on(p2);
    s.clear_unit_attentions(0);
    common::write_private(&cfg, &config(&[p2]));
    reload(&d, 2);
    assert!(!logs_in(p1), "removed portal still accepts logins");
    assert_eq!(s.command(0, &[0; 6], &[], 0).unwrap().status, 0);
}

fn session_on(port: u16) -> Session {
    let r = login(port, &opts(A, Some(T), None)).unwrap();
    assert!(r.succeeded());
    Session::new(r.stream.unwrap())
}
