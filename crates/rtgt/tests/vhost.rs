//! vhost-user-scsi controllers through the daemon: `[[vhost]]` in the
//! file, the socket served and removed, controllers and their LUNs made and
//! removed live with the CLI, and the files a controller must not take
//! (another kind of file, a socket another process serves). The guest side
//! (QEMU and Linux's virtio_scsi) is tests/guest/vhost.sh.

mod common;

use common::*;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

fn config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[backstore]]
name = "ram0"
type = "ramdisk"
size = "16M"

[[backstore]]
name = "ram1"
type = "ramdisk"
size = "8M"

[[target]]
iqn = "iqn.2026-12.org.rtgt:vhost-itest"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "ram0"

[[vhost]]
socket = "{}"

[[vhost.lun]]
lun = 0
backstore = "ram0"
"#,
            dir.join("vm1.sock").display()
        ),
    )
    .unwrap();
    cfg
}

fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let o = d.cli(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "rtgt {args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn cli_err(d: &Daemon, args: &[&str]) -> String {
    let o = d.cli(args);
    assert!(
        !o.status.success(),
        "rtgt {args:?} should have been refused"
    );
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

#[test]
fn controllers_are_served_made_and_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut d = Daemon::start(&["serve", "--config", cfg.to_str().unwrap()]);
    let vm1 = dir.path().join("vm1.sock");
    assert!(is_socket(&vm1), "the controller's socket is served");

    let ls = cli_ok(&d, &["ls", "/vhost"]);
    assert!(ls.contains("vm1") && ls.contains("no VM"), "{ls}");
    assert!(ls.contains("lun0") && ls.contains("ramdisk/ram0"), "{ls}");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&d, &["status"])).expect("status is JSON");
    let v = &status["vhost"][0];
    assert_eq!(v["name"], "vm1");
    assert_eq!(v["connected"], false);
    assert!(v["relative_port_id"].as_u64().unwrap() > 0, "{v}");
    assert!(v["alua_group"].as_u64().unwrap() >= 0x8000, "{v}");
    assert!(v["initiator"].as_str().unwrap().starts_with("naa.3"), "{v}");

    // A LUN added and removed live.
    cli_ok(&d, &["/vhost/vm1/luns", "create", "ram1", "lun=1"]);
    assert!(cli_ok(&d, &["ls", "/vhost/vm1"]).contains("lun1"));
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(saved.contains("backstore = \"ram1\""), "saved:\n{saved}");
    cli_ok(&d, &["/vhost/vm1/luns", "delete", "lun1"]);
    assert!(!cli_ok(&d, &["ls", "/vhost/vm1"]).contains("lun1"));
    // The same backstore cannot go while a controller exports it.
    let e = cli_err(&d, &["/backstores/ramdisk", "delete", "ram0"]);
    assert!(e.contains("/vhost/vm1/luns/lun0"), "{e}");

    // A second controller: made, then removed with its socket.
    let vm2 = dir.path().join("vm2.sock");
    cli_ok(
        &d,
        &[
            "/vhost",
            "create",
            "vm2",
            vm2.to_str().unwrap(),
            "num_queues=4",
        ],
    );
    assert!(is_socket(&vm2));
    let e = cli_err(&d, &["/vhost", "create", "vm3", vm2.to_str().unwrap()]);
    assert!(e.contains("vm2"), "a socket is one controller's: {e}");
    cli_ok(&d, &["/vhost", "delete", "vm2"]);
    assert!(!vm2.exists(), "the socket goes with its controller");

    // Never another kind of file, never a socket another process serves.
    let file = dir.path().join("precious");
    std::fs::write(&file, b"data").unwrap();
    let e = cli_err(&d, &["/vhost", "create", "vm4", file.to_str().unwrap()]);
    assert!(e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data", "left alone");
    let theirs = dir.path().join("theirs.sock");
    let listener = std::os::unix::net::UnixListener::bind(&theirs).unwrap();
    let e = cli_err(&d, &["/vhost", "create", "vm5", theirs.to_str().unwrap()]);
    assert!(e.contains("another process"), "{e}");
    // Once that process is gone, its socket file is stale and is replaced.
    drop(listener);
    cli_ok(&d, &["/vhost", "create", "vm5", theirs.to_str().unwrap()]);
    assert!(is_socket(&theirs));
    assert!(
        std::os::unix::net::UnixStream::connect(&theirs).is_ok(),
        "rtgt serves it now"
    );

    // A clean stop removes the sockets it made.
    d.stop();
    assert!(!vm1.exists() && !theirs.exists(), "sockets left behind");
}

#[test]
fn a_broken_vhost_entry_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[backstore]]\nname = \"r\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\n[[vhost]]\nsocket = \"/tmp/x.sock\"\nnum_queues = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args(["check", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:8") && err.contains("num_queues"),
        "{err}"
    );
}

/// PERSISTENT RESERVE OUT with a 24-byte parameter list: reservation key,
/// service action reservation key.
fn pr_out(sa: u8, ty: u8, key: u64, sa_key: u64) -> ([u8; 10], Vec<u8>) {
    let cdb = [0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, p)
}

/// The same LU over iSCSI and over vhost at once has one reservation
/// state: what one fabric's initiator reserves binds the other's, with the
/// status SPC-4 gives. The VM here is our own vhost-user front-end
/// (common::vhost_frontend), so CI checks it without a guest.
#[test]
fn one_reservation_state_across_iscsi_and_vhost() {
    use common::iscsi_login::{login, LoginOptions};
    use common::scsi_client::Session;
    use common::vhost_frontend::VhostFrontend;

    const TUR: [u8; 6] = [0; 6];
    const WRITE1: [u8; 10] = [0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    const READ_RESERVATION: [u8; 10] = [0x5e, 1, 0, 0, 0, 0, 0, 0, 64, 0];
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = Daemon::start(&["serve", "--config", cfg.to_str().unwrap()]);
    let mut vm = VhostFrontend::connect(&dir.path().join("vm1.sock"));

    // A new nexus: POWER ON first, then ready.
    let r = vm.command(0, &TUR, &[], 0);
    assert_eq!((r.response, r.status), (0, 2), "{r:?}");
    assert_eq!(r.sense[2] & 0xf, 6, "UNIT ATTENTION: {r:?}");
    assert_eq!(vm.command(0, &TUR, &[], 0).status, 0);
    let status: serde_json::Value = serde_json::from_str(&cli_ok(&d, &["status"])).unwrap();
    assert_eq!(status["vhost"][0]["connected"], true, "{status}");
    // Data goes through.
    let block: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(vm.command(0, &WRITE1, &block, 0).status, 0);
    assert_eq!(vm.command(0, &READ1, &[], 512).data, block);

    // The iSCSI initiator registers and takes Write Exclusive.
    let l = login(
        d.port(),
        &LoginOptions {
            initiator: INITIATOR.into(),
            target: Some("iqn.2026-12.org.rtgt:vhost-itest".into()),
            chap: None,
            isid: [0x80, 0, 0, 0, 0, 1],
        },
    )
    .unwrap();
    let mut s = Session::new(l.stream.unwrap());
    s.clear_unit_attentions(0);
    let (cdb, p) = pr_out(0, 0, 0, 0x1111);
    assert_eq!(s.command(0, &cdb, &p, 0).unwrap().status, 0, "REGISTER");
    let (cdb, p) = pr_out(1, 1, 0x1111, 0);
    assert_eq!(s.command(0, &cdb, &p, 0).unwrap().status, 0, "RESERVE");

    // The VM sees it and is bound by it.
    let r = vm.command(0, &READ_RESERVATION, &[], 64);
    assert_eq!(r.status, 0);
    assert_eq!(&r.data[8..16], &0x1111u64.to_be_bytes(), "{r:?}");
    let r = vm.command(0, &WRITE1, &block, 0);
    assert_eq!(
        (r.response, r.status),
        (0, 0x18),
        "RESERVATION CONFLICT: {r:?}"
    );
    assert_eq!(
        vm.command(0, &READ1, &[], 512).status,
        0,
        "reads pass Write Exclusive"
    );

    // The VM registers and preempts: now the iSCSI nexus is fenced.
    let (cdb, p) = pr_out(0, 0, 0, 0x2222);
    assert_eq!(vm.command(0, &cdb, &p, 0).status, 0, "REGISTER over vhost");
    let (cdb, p) = pr_out(4, 1, 0x2222, 0x1111);
    assert_eq!(vm.command(0, &cdb, &p, 0).status, 0, "PREEMPT over vhost");
    let r = s.command(0, &WRITE1, &block, 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((6, 0x2a, 0x05)),
        "REGISTRATIONS PREEMPTED first"
    );
    assert_eq!(s.command(0, &WRITE1, &block, 0).unwrap().status, 0x18);
    assert_eq!(
        vm.command(0, &WRITE1, &block, 0).status,
        0,
        "the holder writes"
    );

    // The VM goes: its nexus closes.
    drop(vm);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st: serde_json::Value = serde_json::from_str(&cli_ok(&d, &["status"])).unwrap();
        if st["vhost"][0]["connected"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still connected: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// With VIRTIO_RING_F_EVENT_IDX the front-end kicks only when the
/// back-end's avail_event asks and waits for the interrupt its used_event
/// asks for: every command still completes and is signalled.
#[test]
fn event_idx_kicks_and_interrupts_as_the_indices_ask() {
    use common::vhost_frontend::VhostFrontend;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let _d = Daemon::start(&["serve", "--config", cfg.to_str().unwrap()]);
    let mut vm = VhostFrontend::connect_with(&dir.path().join("vm1.sock"), true);
    for i in 0..100 {
        let r = vm.command(0, &[0; 6], &[], 0);
        assert!(r.status == 0 || i == 0, "command {i}: {r:?}");
    }
    assert!(vm.interrupts >= 100, "{} interrupts", vm.interrupts);
}
