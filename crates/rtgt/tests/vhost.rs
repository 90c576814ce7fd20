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
