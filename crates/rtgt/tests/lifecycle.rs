//! The daemon's life: start, listening lines, clean shutdown on SIGTERM and
//! SIGINT (also with I/O in flight), refusal of bad config files.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn listens_on_an_ephemeral_port_and_exits_0_on_sigterm() {
    let mut d = Daemon::default_target();
    assert!(
        d.port() != 0 && d.port() != 3260,
        "ephemeral port expected, got {}",
        d.port()
    );
    // the port is really served
    std::net::TcpStream::connect(("127.0.0.1", d.port())).expect("connect to the listening port");
    d.stop();
}

#[test]
fn exits_0_on_sigint() {
    let mut d = Daemon::default_target();
    let st = d
        .stop_with("INT", 20)
        .expect("rtgt did not exit within 20 s of SIGINT");
    assert_eq!(
        st.code(),
        Some(0),
        "exit status on SIGINT; stderr:\n{}",
        d.stderr()
    );
}

#[test]
fn listen_is_repeatable_one_line_per_portal() {
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(
        d.ports.len(),
        2,
        "two --listen, expected two listening lines, got ports {:?}",
        d.ports
    );
    assert_ne!(d.ports[0], d.ports[1]);
    for p in &d.ports {
        std::net::TcpStream::connect(("127.0.0.1", *p)).expect("connect to each listening port");
    }
}

#[test]
fn sigterm_with_io_in_flight_exits_0() {
    let perf = libiscsi("iscsi-perf");
    let mut d = Daemon::default_target();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("perf.out");
    // iscsi-perf keeps 32 reads in flight until killed, printing a progress line a second
    let mut load = Command::new(perf)
        .args(["-i", INITIATOR, "-m", "32", "-b", "8", "-r"])
        .arg(d.url(DEMO_IQN, 0))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let st = d.stop_with("TERM", 20);
    let _ = load.kill();
    let _ = load.wait();
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.contains("connected to") && out.contains("iops current"),
        "iscsi-perf was not doing I/O when the daemon was signalled:\n{out}"
    );
    let st = st.expect("rtgt did not exit within 20 s of SIGTERM while serving I/O");
    assert_eq!(
        st.code(),
        Some(0),
        "exit status on SIGTERM under load; stderr:\n{}",
        d.stderr()
    );
}

/// Run `rtgt serve --config FILE` on a bad file: exit 2, stderr names the
/// file and the line.
fn refused(config: &str, bad_line: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    check_refused(&path, Some(bad_line));
}

fn check_refused(path: &Path, bad_line: Option<usize>) {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_rtgt"))
            .args(["serve", "--config"])
            .arg(path)
            .args(["--listen", "127.0.0.1:0"]),
        20,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for a bad config, stderr:\n{stderr}"
    );
    let name = path.to_str().unwrap();
    assert!(
        stderr.contains(name),
        "stderr should name the file {name}:\n{stderr}"
    );
    if let Some(n) = bad_line {
        // "line 7", "bad.toml:7" or "bad.toml:7:3" all name the line
        let named =
            stderr.contains(&format!("line {n}")) || stderr.contains(&format!("{name}:{n}"));
        assert!(named, "stderr should name line {n}:\n{stderr}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "must not start listening"
    );
}

const GOOD_HEAD: &str = r#"[[backstore]]
name = "ram0"
type = "ramdisk"
size = "64M"
"#;

#[test]
fn bad_config_toml_syntax() {
    // line 4: an unterminated string
    refused(
        "[[backstore]]\nname = \"ram0\"\ntype = \"ramdisk\"\nsize = \"64M\n",
        4,
    );
}

#[test]
fn bad_config_unknown_backstore_type() {
    refused(
        "[[backstore]]\nname = \"x\"\ntype = \"floppy\"\nsize = \"1M\"\n",
        3,
    );
}

#[test]
fn bad_config_bad_size() {
    refused(
        "[[backstore]]\nname = \"x\"\ntype = \"ramdisk\"\nsize = \"lots\"\n",
        4,
    );
}

#[test]
fn bad_config_lun_names_missing_backstore() {
    let cfg = format!(
        "{GOOD_HEAD}\n[[target]]\niqn = \"iqn.2026-11.org.rtgt:t\"\n\n[[target.tpg]]\ntag = 1\n\
         portals = [\"127.0.0.1:0\"]\nmode = \"demo\"\n\n[[target.tpg.lun]]\nlun = 0\nbackstore = \"nope\"\n"
    );
    let line = cfg.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    refused(&cfg, line);
}

#[test]
fn bad_config_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    check_refused(&dir.path().join("does-not-exist.toml"), None);
}
