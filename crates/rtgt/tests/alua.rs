//! ALUA through the daemon: two TPGs of one target on two portals are two
//! paths (two target port groups) to the same LU. INQUIRY's TPGS, REPORT
//! TARGET PORT GROUPS on each path, a state set with the CLI reaching the
//! sessions as a unit attention and the state's sense, SET TARGET PORT
//! GROUPS from an initiator, and the states kept across a restart.

mod common;

use common::iscsi_login::{login_at, LoginOptions};
use common::scsi_client::Session;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const IQN: &str = "iqn.2026-12.org.rtgt:alua";
const HOST: &str = "iqn.2026-12.org.rtgt:alua-host";
const TUR: [u8; 6] = [0; 6];
const RTPG: [u8; 12] = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];

fn config(dir: &Path, explicit: bool) -> std::path::PathBuf {
    let cfg = dir.join("rtgt.toml");
    let alua = if explicit {
        "[alua]\nexplicit = true\n\n"
    } else {
        ""
    };
    std::fs::write(
        &cfg,
        format!(
            r#"{alua}[[backstore]]
name = "shared"
type = "ramdisk"
size = "16M"

[[target]]
iqn = "{IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"
alua_preferred = true

[[target.tpg.lun]]
lun = 0
backstore = "shared"

[[target.tpg]]
tag = 2
portals = ["127.0.0.2:0"]
mode = "demo"
alua_state = "active_nonoptimized"

[[target.tpg.lun]]
lun = 0
backstore = "shared"
"#
        ),
    )
    .unwrap();
    cfg
}

/// A session through path `i` (0: tpg1 on 127.0.0.1, 1: tpg2 on 127.0.0.2).
fn path(d: &Daemon, i: usize, isid: u8) -> Session {
    let ip = [[127, 0, 0, 1], [127, 0, 0, 2]][i];
    let r = login_at(
        SocketAddr::from((ip, d.ports[i])),
        &LoginOptions {
            initiator: HOST.into(),
            target: Some(IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0, 0, isid],
        },
    )
    .unwrap();
    assert!(r.succeeded(), "login on path {i}: {}/{}", r.class, r.detail);
    let mut s = Session::new(r.stream.unwrap());
    clear_ua(&mut s);
    s
}

/// TEST UNIT READY until no unit attention is left (a path in standby
/// then answers NOT READY).
fn clear_ua(s: &mut Session) {
    for _ in 0..8 {
        let r = s.command(0, &TUR, &[], 0).unwrap();
        if r.status == 0 || r.sense_code().is_some_and(|c| c.0 != 6) {
            return;
        }
    }
    panic!("unit attentions do not clear");
}

/// (group id, state code, preferred, relative port ids) per descriptor.
fn groups(s: &mut Session) -> Vec<(u16, u8, bool, Vec<u16>)> {
    let r = s.command(0, &RTPG, &[], 4096).unwrap();
    assert_eq!(r.status, 0, "RTPG: {:?}", r.sense_code());
    let d = r.data;
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, d.len());
    let mut out = Vec::new();
    let mut i = 4;
    while i < d.len() {
        let n = d[i + 7] as usize;
        let ports = (0..n)
            .map(|k| u16::from_be_bytes([d[i + 8 + 4 * k + 2], d[i + 8 + 4 * k + 3]]))
            .collect();
        out.push((
            u16::from_be_bytes([d[i + 2], d[i + 3]]),
            d[i] & 0x0f,
            d[i] & 0x80 != 0,
            ports,
        ));
        i += 8 + 4 * n;
    }
    out
}

#[test]
fn two_paths_report_their_groups_and_follow_a_state_change_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let c = cfg.to_str().unwrap();
    let mut d = Daemon::start(&["serve", "--config", c]);
    assert_eq!(d.ports.len(), 2, "two portals: {}", d.stderr());
    let mut a = path(&d, 0, 1);
    let mut b = path(&d, 1, 2);

    // TPGS 01b: implicit ALUA.
    let inq = a.command(0, &[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert_eq!(inq.data[5] & 0x30, 0x10);
    // Both paths see both groups: 1 optimized and preferred, 2 not.
    let ga = groups(&mut a);
    assert_eq!(ga.len(), 2, "{ga:?}");
    assert_eq!((ga[0].0, ga[0].1, ga[0].2), (1, 0x0, true));
    assert_eq!((ga[1].0, ga[1].1, ga[1].2), (2, 0x1, false));
    assert_ne!(ga[0].3, ga[1].3, "each group has its own relative port");
    assert_eq!(groups(&mut b), ga);
    // Implicit only: SET TARGET PORT GROUPS is not offered.
    let stpg = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    let r = a.command(0, &stpg, &[0, 0, 0, 0, 0, 0, 0, 2], 0).unwrap();
    assert_eq!(r.sense_code(), Some((5, 0x20, 0)));

    // The administrator moves the optimized path to tpg2 and puts tpg1
    // in standby.
    for (tpg, state) in [("tpg2", "active_optimized"), ("tpg1", "standby")] {
        let o = d.cli(&[
            &format!("/iscsi/{IQN}/{tpg}"),
            "set",
            "alua",
            &format!("state={state}"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Each session hears of it once per change, then sees the new state.
    let r = a.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((6, 0x2a, 0x06)));
    clear_ua(&mut a);
    let r = a.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((2, 0x04, 0x0b)), "tpg1 is standby");
    let r = a
        .command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert_eq!(r.sense_code(), Some((2, 0x04, 0x0b)));
    let r = b.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((6, 0x2a, 0x06)));
    clear_ua(&mut b);
    let r = b
        .command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert_eq!(r.status, 0, "tpg2 reads: {:?}", r.sense_code());
    let g = groups(&mut a);
    assert_eq!((g[0].1, g[1].1), (0x2, 0x0));
    // ls and status say so.
    let ls = String::from_utf8_lossy(&d.cli(&["ls"]).stdout).into_owned();
    assert!(ls.contains("alua: standby, preferred, sessions"), "{ls}");
    let st = String::from_utf8_lossy(&d.cli(&["--json", "status"]).stdout).into_owned();
    assert!(st.contains("\"alua_state\": \"standby\""), "{st}");
    // Saved.
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("alua_state = \"standby\""), "{text}");

    // After a restart the states are what they were.
    drop((a, b));
    d.stop();
    let d = Daemon::start(&["serve", "--config", c]);
    let mut a = path(&d, 0, 1);
    let g = groups(&mut a);
    assert_eq!((g[0].0, g[0].1, g[1].0, g[1].1), (1, 0x2, 2, 0x0));
    let r = a.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((2, 0x04, 0x0b)));
}

#[test]
fn set_target_port_groups_from_an_initiator_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let c = cfg.to_str().unwrap();
    let mut d = Daemon::start(&["serve", "--config", c]);
    let mut a = path(&d, 0, 1);
    let mut b = path(&d, 1, 2);
    let inq = a.command(0, &[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert_eq!(inq.data[5] & 0x30, 0x30, "TPGS 11b");
    // Through path b: group 2 optimized, group 1 standby.
    let stpg = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0];
    let list = [0, 0, 0, 0, 0x0, 0, 0, 2, 0x2, 0, 0, 1];
    let r = b.command(0, &stpg, &list, 0).unwrap();
    assert_eq!(r.status, 0, "{:?}", r.sense_code());
    // The other path is told; the one that asked is not.
    let r = a.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((6, 0x2a, 0x06)));
    let r = b.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.status, 0);
    // The file follows (the save is asynchronous: wait for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&cfg).unwrap();
        if text.contains("alua_state = \"standby\"") {
            assert!(!text.contains("active_nonoptimized"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not saved:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop((a, b));
    d.stop();
    let d = Daemon::start(&["serve", "--config", c]);
    let mut a = path(&d, 0, 1);
    let g = groups(&mut a);
    assert_eq!((g[0].1, g[1].1), (0x2, 0x0));
}

#[test]
fn tpgs_of_one_group_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("tag = 2\n", "tag = 2\nalua_group = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args(["check", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rtgt.toml:") && err.contains("target port group 1"),
        "{err}"
    );
}

/// `--listen` moves every tpg onto the same portals; for a target with two
/// tpgs that would be one network portal in two portal groups (RFC 7143
/// 4.4.1) and two "paths" that are one: refused, naming the target.
#[test]
fn listen_is_refused_for_a_target_with_two_tpgs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--control"])
        .arg(dir.path().join("sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(IQN) && err.contains("2 tpgs") && err.contains("--listen"),
        "{err}"
    );
}

/// PERSISTENT RESERVE OUT `action` with `key`/`sa_key`, `flags` byte 20
/// (ALL_TG_PT 0x04) and type `ty`; returns the status.
fn prout(s: &mut Session, action: u8, ty: u8, key: u64, sa_key: u64, flags: u8) -> u8 {
    let mut p = [0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    let cdb = [0x5f, action, ty, 0, 0, 0, 0, 0, 24, 0];
    s.command(0, &cdb, &p, 0).unwrap().status
}

/// Registrations across the two target ports (SPC-4 5.14.7): with
/// ALL_TG_PT an initiator port's registration holds on every target port
/// (the same ISID through tpg2 may reserve with it); without, only on the
/// port it came through; another ISID is another initiator port either way.
#[test]
fn all_tg_pt_registers_the_initiator_port_on_both_target_ports() {
    const RESERVE: u8 = 1;
    const REGISTER: u8 = 0;
    const RELEASE: u8 = 2;
    const WE: u8 = 1;
    const CONFLICT: u8 = 0x18;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let d = Daemon::start(&["serve", "--config", cfg.to_str().unwrap()]);
    let mut a1 = path(&d, 0, 7); // ISID ...07 through tpg1
                                 // The same initiator port through tpg2: another I_T nexus, so this
                                 // login must not reinstate (end) a1's session (RFC 7143 4.4.3).
    let mut a2 = path(&d, 1, 7);
    let mut other = path(&d, 1, 8); // another ISID through tpg2

    // Without ALL_TG_PT: the key is tpg1's nexus's only.
    assert_eq!(prout(&mut a1, REGISTER, 0, 0, 0xa1, 0), 0);
    assert_eq!(prout(&mut a2, RESERVE, WE, 0xa1, 0, 0), CONFLICT);
    assert_eq!(prout(&mut a1, REGISTER, 0, 0xa1, 0, 0), 0, "unregister");

    // With ALL_TG_PT: the same initiator port may use it through tpg2.
    assert_eq!(prout(&mut a1, REGISTER, 0, 0, 0xa2, 0x04), 0);
    assert_eq!(prout(&mut a2, RESERVE, WE, 0xa2, 0, 0), 0);
    assert_eq!(prout(&mut other, RESERVE, WE, 0xa2, 0, 0), CONFLICT);
    // The holder is the initiator port, whichever target port: a write
    // through tpg1 passes, one from the other ISID does not.
    let write = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(a1.command(0, &write, &[0; 512], 0).unwrap().status, 0);
    assert_eq!(
        other.command(0, &write, &[0; 512], 0).unwrap().status,
        CONFLICT
    );
    assert_eq!(prout(&mut a1, RELEASE, WE, 0xa2, 0, 0), 0);
}
