//! The management plane end to end: the control API, the `rtgt` one-shot
//! commands and `apply`/`diff`, with initiators logged in (libiscsi's tools
//! and the test client), across a restart; changes in a loop while another
//! initiator's I/O runs; a thousand LUNs; metrics that move with I/O.

mod common;

use common::iscsi_login::{login, ClientChap, LoginOptions};
use common::scsi_client::Session;
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const IQN: &str = "iqn.2026-11.org.rtgt:ctl";
const HOST: &str = "iqn.2026-11.org.rtgt:ctl-host";
const SECRET: &str = "ctl-secret-0123";

/// Run it and expect success; its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = d.cli(args);
    assert!(
        o.status.success(),
        "rtgt {args:?}: {}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn empty_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("rtgt.toml");
    std::fs::write(&p, "").unwrap();
    p
}

fn chap_session(d: &Daemon, initiator: &str, secret: Option<&str>) -> Session {
    let r = login(
        d.port(),
        &LoginOptions {
            initiator: initiator.into(),
            target: Some(IQN.into()),
            chap: secret.map(|s| ClientChap {
                user: "ctl-user".into(),
                secret: s.as_bytes().to_vec(),
                algorithms: vec![5],
                mutual: None,
                reflect: false,
            }),
            isid: [0x80, 0, 0, 0x77, 0x12, 0x34],
        },
    )
    .unwrap();
    assert!(r.succeeded(), "login: {:02x}/{:02x}", r.class, r.detail);
    Session::new(r.stream.unwrap())
}

const TUR: [u8; 6] = [0; 6];

#[test]
fn cli_builds_a_target_initiators_use_and_it_comes_back_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = empty_config(dir.path());
    let mut d = Daemon::with_config(&cfg);
    let tpg = format!("/iscsi/{IQN}/tpg1");
    let img = dir.path().join("f1.img");

    ok(&d, &["/backstores/ramdisk", "create", "r0", "64M"]);
    let out = ok(
        &d,
        &[
            "/backstores/fileio",
            "create",
            "f1",
            img.to_str().unwrap(),
            "32M",
        ],
    );
    assert_eq!(out, "+ /backstores/fileio/f1\n");
    ok(&d, &["/iscsi", "create", IQN]);
    ok(&d, &[&format!("{tpg}/luns"), "create", "r0"]);
    ok(
        &d,
        &[&format!("{tpg}/luns"), "create", "/backstores/fileio/f1"],
    );
    ok(&d, &[&format!("{tpg}/acls"), "create", HOST]);
    let acl = format!("{tpg}/acls/{HOST}");
    ok(&d, &[&acl, "create", "mapped_lun=0", "tpg_lun=0"]);
    let o = d.cli(&[&tpg, "set", "attribute", "authentication=1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("none yet for: {HOST}")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(
        &d,
        &[
            &acl,
            "set",
            "auth",
            "userid=ctl-user",
            &format!("password={SECRET}"),
        ],
    );

    assert!(ok(&d, &[&tpg, "set", "attribute", "authentication=1"]).contains("already"));
    assert!(ok(&d, &[&tpg, "get", "attribute"]).contains("authentication=1"));

    // Errors say what to do, with exit codes scripts can use.
    let o = d.cli(&[&format!("{tpg}/luns"), "create", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("create it under /backstores"));
    let o = d.cli(&["/backstores/ramdisk", "delete", "r0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("delete those LUNs first"));
    assert_eq!(d.cli(&["/bogus", "ls"]).status.code(), Some(2));
    assert!(ok(&d, &["/iscsi", "--help"]).contains("create IQN"));
    assert!(ok(&d, &[&format!("{tpg}/luns"), "create", "--help"]).contains("create BACKSTORE"));
    let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args(["--socket", "/nonexistent/rtgt.sock", "ls"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is `rtgt serve` running?"));

    // libiscsi logs in with CHAP and sees LUN 0 only; without it, no login.
    let creds = format!("ctl-user%{SECRET}@");
    let ls = run_ok(
        Command::new(libiscsi("iscsi-ls")).args([
            "-s",
            "-i",
            HOST,
            &format!("iscsi://{creds}127.0.0.1:{}", d.port()),
        ]),
        30,
    );
    let luns: Vec<&str> = ls.lines().filter(|l| l.starts_with("Lun:")).collect();
    assert_eq!(luns.len(), 1, "{ls}");
    assert!(
        luns[0].contains("Size:63M") || luns[0].contains("Size:64M"),
        "{ls}"
    );
    let inq = run(
        Command::new(libiscsi("iscsi-inq")).args([
            "-i",
            HOST,
            &format!("iscsi://127.0.0.1:{}/{IQN}/0", d.port()),
        ]),
        30,
    );
    assert!(!inq.status.success(), "no CHAP, no login");

    // A session sees the map change live: REPORTED LUNS DATA HAS CHANGED.
    let mut s = chap_session(&d, HOST, Some(SECRET));
    s.clear_unit_attentions(0);
    assert_eq!(s.report_luns(), [0]);
    ok(
        &d,
        &[
            &acl,
            "create",
            "mapped_lun=1",
            "tpg_lun=1",
            "write_protect=1",
        ],
    );
    let r = s.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x3f, 0x0e)), "{r:?}");
    assert_eq!(s.report_luns(), [0, 1]);
    s.clear_unit_attentions(1);
    let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let r = s.command(1, &write10, &[0x5a; 512], 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x07, 0x27, 0x00)),
        "write protected: {r:?}"
    );
    assert_eq!(s.command(0, &write10, &[0x5a; 512], 0).unwrap().status, 0);

    let sessions = ok(&d, &["sessions"]);
    assert!(
        sessions.contains(HOST) && sessions.contains("lun1 -> f1 (ro)"),
        "{sessions}"
    );
    let ls = ok(&d, &["ls"]);
    assert!(
        ls.contains("sessions: 1") && ls.contains("mapped_lun1"),
        "{ls}"
    );

    ok(&d, &[&acl, "delete", "mapped_lun1"]);
    let r = s.command(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x3f, 0x0e)), "{r:?}");
    assert_eq!(s.report_luns(), [0]);
    drop(s);

    // Every change was saved; the file is what runs.
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("name = \"f1\"") && saved.contains(SECRET),
        "{saved}"
    );
    assert!(dir.path().join("backup").read_dir().unwrap().count() > 3);
    let dump = ok(&d, &["config", "dump"]);
    assert!(!dump.contains(SECRET), "no secrets in the dump:\n{dump}");
    let with = ok(&d, &["config", "dump", "--secrets"]);
    assert!(with.contains(SECRET));
    ok(&d, &["saveconfig"]);

    // Restart: the same state comes back.
    d.stop();
    let d = Daemon::with_config(&cfg);
    assert_eq!(ok(&d, &["config", "dump", "--secrets"]), with);

    // Applying the running file changes nothing and touches no session.
    let mut s = chap_session(&d, HOST, Some(SECRET));
    s.clear_unit_attentions(0);
    let copy = dir.path().join("desired.toml");
    std::fs::copy(&cfg, &copy).unwrap();
    assert_eq!(
        ok(&d, &["apply", copy.to_str().unwrap()]),
        "nothing to change\n"
    );
    assert_eq!(
        ok(&d, &["apply", copy.to_str().unwrap()]),
        "nothing to change\n"
    );
    assert_eq!(
        s.command(0, &TUR, &[], 0).unwrap().status,
        0,
        "no unit attention"
    );

    // diff shows a desired change object by object; apply makes it.
    let desired = std::fs::read_to_string(&copy).unwrap().replace(
        "mapped_lun = 0\ntpg_lun = 0",
        "mapped_lun = 0\ntpg_lun = 0\nread_only = true",
    );
    std::fs::write(&copy, desired).unwrap();
    let diff = ok(&d, &["diff", copy.to_str().unwrap()]);
    assert!(
        diff.contains(&format!("~ /iscsi/{IQN}/tpg1/acls/{HOST}/mapped_lun0"))
            && diff.contains("read_only: (unset) -> true")
            && diff.contains("not applied"),
        "{diff}"
    );
    assert_eq!(
        s.command(0, &TUR, &[], 0).unwrap().status,
        0,
        "diff changes nothing"
    );
    ok(&d, &["apply", copy.to_str().unwrap()]);
    s.clear_unit_attentions(0);
    let r = s.command(0, &write10, &[0x5a; 512], 0).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x07, 0x27, 0x00)),
        "now write protected: {r:?}"
    );
    assert_eq!(
        ok(&d, &["diff", copy.to_str().unwrap()]),
        "nothing to change\n"
    );

    // A broken file is refused with its name and line, and changes nothing.
    std::fs::write(&copy, "[[target]]\niqn = \"bogus\"\n").unwrap();
    let o = d.cli(&["apply", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("desired.toml:2:"), "{e}");
    assert!(ok(&d, &["config", "dump", "--secrets"]).contains("name = \"f1\""));

    // Deleting the target ends the session.
    ok(&d, &["/iscsi", "delete", IQN]);
    assert!(s.command(0, &TUR, &[], 0).is_err(), "session ended");
}

#[test]
fn api_answers_json_and_metrics_move_with_io() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backstore]]\nname = \"m0\"\ntype = \"ramdisk\"\nsize = \"16M\"\n\
             [[target]]\niqn = \"{IQN}\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n\
             [[target.tpg.lun]]\nlun = 0\nbackstore = \"m0\"\n"
        ),
    )
    .unwrap();
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = cfg.to_str().unwrap();
    let addr = format!("127.0.0.1:{metrics_port}");
    let d = Daemon::start(&[
        "serve",
        "--config",
        c,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &addr,
    ]);
    let sock = d.control.clone();
    // The socket is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let (st, body) = http(&sock, "GET", "/openapi.json", None);
    assert_eq!(st, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["paths"]["/api/v1/backstores"]["post"].is_object());

    let (st, body) = http(
        &sock,
        "POST",
        "/api/v1/backstores",
        Some("{\"name\":\"m1\",\"type\":\"ramdisk\",\"size\":\"8M\"}"),
    );
    assert_eq!(st, 201, "{body}");
    let (st, body) = http(
        &sock,
        "POST",
        "/api/v1/backstores",
        Some("{\"name\":\"m1\",\"type\":\"ramdisk\",\"size\":\"8M\"}"),
    );
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("exists already"), "{body}");
    let (st, body) = http(
        &sock,
        "POST",
        "/api/v1/backstores",
        Some("{\"name\":\"m2\",\"type\":\"floppy\"}"),
    );
    assert_eq!(st, 400, "{body}");
    let (st, body) = http(&sock, "GET", "/api/v1/backstores/m1", None);
    assert_eq!((st, body.contains("\"8M\"")), (200, true), "{body}");

    let scrape = |url_tcp: bool| -> prometheus_parse::Scrape {
        let text = if url_tcp {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            out.split_once("\r\n\r\n").unwrap().1.to_string()
        } else {
            let (st, b) = http(&sock, "GET", "/metrics", None);
            assert_eq!(st, 200);
            b
        };
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, lu: &str| -> f64 {
        s.samples
            .iter()
            .find(|x| x.metric == name && x.labels.get("lu") == Some(lu))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is no counter"),
            })
            .unwrap_or_else(|| panic!("no {name}{{lu={lu}}}"))
    };
    let before = scrape(false);
    let w0 = value(&before, "rtgt_lu_written_bytes_total", "m0");
    let c0 = value(&before, "rtgt_lu_commands_total", "m0");

    let r = login(
        d.port(),
        &LoginOptions {
            initiator: HOST.into(),
            target: Some(IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0x77, 0x55, 0x66],
        },
    )
    .unwrap();
    let mut s = Session::new(r.stream.unwrap());
    s.clear_unit_attentions(0);
    let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    for _ in 0..10 {
        assert_eq!(s.command(0, &write10, &[7; 4096], 0).unwrap().status, 0);
    }
    let after = scrape(true);
    assert_eq!(
        value(&after, "rtgt_lu_written_bytes_total", "m0") - w0,
        40960.0
    );
    assert!(value(&after, "rtgt_lu_commands_total", "m0") - c0 >= 10.0);

    let (st, body) = http(&sock, "GET", "/api/v1/sessions", None);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let me = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["initiator"] == HOST)
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(me["isid"], "800000775566");
    assert_eq!(me["totals"]["written_bytes"], 40960);
    assert_eq!(me["connections"].as_array().unwrap().len(), 1);
}

#[test]
fn luns_and_acls_change_in_a_loop_while_another_initiator_runs_io() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backstore]]\nname = \"busy\"\ntype = \"ramdisk\"\nsize = \"16M\"\n\
             [[target]]\niqn = \"{IQN}\"\n[[target.tpg]]\ntag = 1\nmode = \"acl\"\n\
             [[target.tpg.lun]]\nlun = 0\nbackstore = \"busy\"\n\
             [[target.tpg.acl]]\ninitiator = \"{HOST}\"\n\
             [[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 0\n"
        ),
    )
    .unwrap();
    let d = Daemon::with_config(&cfg);
    let mut s = chap_session(&d, HOST, None);
    s.clear_unit_attentions(0);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let io = std::thread::spawn(move || {
        // Write a block, read it back, compare; any status but GOOD (a
        // unit attention included: this initiator's map never changes)
        // is a failure.
        let mut n = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let lba = (n % 4096).to_be_bytes();
            let data = vec![(n % 251) as u8; 512];
            let w = [0x2a, 0, lba[0], lba[1], lba[2], lba[3], 0, 0, 1, 0];
            let r = s.command(0, &w, &data, 0).expect("write");
            assert_eq!(r.status, 0, "write {n}: {r:?}");
            let rd = [0x28, 0, lba[0], lba[1], lba[2], lba[3], 0, 0, 1, 0];
            let r = s.command(0, &rd, &[], 512).expect("read");
            assert_eq!(r.status, 0, "read {n}: {r:?}");
            assert_eq!(r.data, data, "read {n} back");
            n += 1;
        }
        n
    });
    let tpg = format!("/api/v1/targets/{IQN}/tpgs/1");
    for i in 0..25 {
        let name = format!("x{i}");
        let other = format!("iqn.2026-11.org.rtgt:other{i}");
        let steps: Vec<(&str, String, Option<String>)> = vec![
            (
                "POST",
                "/api/v1/backstores".into(),
                Some(format!(
                    "{{\"name\":\"{name}\",\"type\":\"ramdisk\",\"size\":\"1M\"}}"
                )),
            ),
            (
                "POST",
                format!("{tpg}/luns"),
                Some(format!("{{\"lun\":5,\"backstore\":\"{name}\"}}")),
            ),
            (
                "POST",
                format!("{tpg}/acls"),
                Some(format!("{{\"initiator\":\"{other}\"}}")),
            ),
            (
                "POST",
                format!("{tpg}/acls/{other}/mapped_luns"),
                Some("{\"mapped_lun\":0,\"tpg_lun\":5}".into()),
            ),
            ("DELETE", format!("{tpg}/acls/{other}/mapped_luns/0"), None),
            ("DELETE", format!("{tpg}/acls/{other}"), None),
            ("DELETE", format!("{tpg}/luns/5"), None),
            ("DELETE", format!("/api/v1/backstores/{name}"), None),
        ];
        for (m, p, b) in steps {
            let (st, body) = http(&d.control, m, &p, b.as_deref());
            assert!(st == 200 || st == 201, "{m} {p}: {st} {body}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = io.join().expect("I/O thread saw an error");
    assert!(n > 0);
    eprintln!("{n} verified write+read pairs ran during 200 changes");
}

#[test]
fn a_thousand_luns_through_the_api_and_by_apply() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = empty_config(dir.path());
    let d = Daemon::with_config(&cfg);
    let (st, _) = http(
        &d.control,
        "POST",
        "/api/v1/targets",
        Some(&format!("{{\"iqn\":\"{IQN}\"}}")),
    );
    assert_eq!(st, 201);
    let t = Instant::now();
    for i in 0..1000 {
        let (st, b) = http(
            &d.control,
            "POST",
            "/api/v1/backstores",
            Some(&format!(
                "{{\"name\":\"l{i}\",\"type\":\"ramdisk\",\"size\":\"1M\"}}"
            )),
        );
        assert_eq!(st, 201, "{b}");
        let (st, b) = http(
            &d.control,
            "POST",
            &format!("/api/v1/targets/{IQN}/tpgs/1/luns"),
            Some(&format!("{{\"backstore\":\"l{i}\"}}")),
        );
        assert_eq!(st, 201, "{b}");
    }
    let api = t.elapsed();
    let t = Instant::now();
    let ls = ok(&d, &["ls"]);
    let ls_time = t.elapsed();
    assert!(ls.contains("[LUNs: 1000]"), "{}", &ls[..ls.len().min(2000)]);
    let file = dir.path().join("thousand.toml");
    std::fs::write(&file, ok(&d, &["config", "dump"])).unwrap();

    // A fresh daemon gets all of it in one apply; again changes nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = Daemon::with_config(&empty_config(dir2.path()));
    let t = Instant::now();
    let out = ok(&d2, &["apply", file.to_str().unwrap()]);
    let apply = t.elapsed();
    assert_eq!(
        out.lines().filter(|l| l.starts_with('+')).count(),
        2002,
        "{}",
        &out[..500]
    );
    let t = Instant::now();
    assert_eq!(
        ok(&d2, &["apply", file.to_str().unwrap()]),
        "nothing to change\n"
    );
    let again = t.elapsed();
    assert_eq!(
        ok(&d2, &["config", "dump"]),
        std::fs::read_to_string(&file).unwrap()
    );
    // Measured, not asserted (speed is the benchmark's business).
    eprintln!(
        "1000 backstores + 1000 LUNs through the API: {api:?}; rtgt ls: {ls_time:?}; \
         rtgt apply of the 1000-LUN file: {apply:?}; apply again (no-op): {again:?}"
    );
}

/// `--listen` replaces the file's portals: `ls` and the status say what
/// the daemon listens on, and that the file's portal is not served.
#[test]
fn ls_shows_the_portals_actually_listened_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!("[[target]]\niqn = \"{IQN}\"\n[[target.tpg]]\ntag = 1\nportals = [\"127.0.0.1:3260\"]\nmode = \"demo\"\n"),
    )
    .unwrap();
    // with_config adds --listen 127.0.0.1:0
    let d = Daemon::with_config(&cfg);
    let actual = format!("127.0.0.1:{}", d.port());
    let ls = ok(&d, &["ls", &format!("/iscsi/{IQN}/tpg1/portals")]);
    let line = |addr: &str| {
        ls.lines()
            .find(|l| l.contains(&format!("o- {addr} ")))
            .unwrap_or_else(|| panic!("{addr} not in:\n{ls}"))
            .to_string()
    };
    assert!(
        line("127.0.0.1:3260").contains("[not listening: replaced by --listen]"),
        "{ls}"
    );
    assert!(line(&actual).contains("[listening (--listen)]"), "{ls}");
    let (st, body) = http(&d.control, "GET", "/api/v1/status", None);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["tpgs"][0]["listening"],
        serde_json::json!([actual]),
        "{body}"
    );
    assert_eq!(v["tpgs"][0]["portals_overridden"], true, "{body}");
}

/// A change saved through the API keeps the administrator's comments and
/// layout, and edits only what changed.
#[test]
fn saving_keeps_comments_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    let text = format!(
        "# Storage for the lab, by hand.\n\n[[backstore]]   # the big one\nname = \"big\"\ntype = \"ramdisk\"\nsize = \"64M\"        # enough for now\n\n\
         [[target]]\niqn = \"{IQN}\"\n\n[[target.tpg]]\ntag = 1\nportals = [\"127.0.0.1:0\"]   # loopback only\nmode = \"demo\"\n"
    );
    std::fs::write(&cfg, &text).unwrap();
    let d = Daemon::with_config(&cfg);
    ok(&d, &["/backstores/ramdisk", "create", "small", "16M"]);
    let saved = std::fs::read_to_string(&cfg).unwrap();
    // The new backstore goes with the others; the rest is the file as
    // written, byte for byte.
    let small = "[[backstore]]\nname = \"small\"\ntype = \"ramdisk\"\nsize = \"16M\"\n\n";
    assert!(saved.contains(small), "{saved}");
    assert_eq!(
        saved.replacen(small, "", 1),
        text,
        "the file's own text changed"
    );
    let tpg = format!("/iscsi/{IQN}/tpg1");
    ok(&d, &[&tpg, "set", "attribute", "demo_mode_write_protect=1"]);
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("# Storage for the lab, by hand.") && saved.contains("# the big one"),
        "{saved}"
    );
    assert!(
        saved.contains("# enough for now") && saved.contains("# loopback only"),
        "{saved}"
    );
    assert!(
        saved.contains("demo_read_only = true")
            && saved.contains("size = \"64M\"        # enough for now"),
        "{saved}"
    );
    ok(&d, &["/backstores/ramdisk", "delete", "small"]);
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !saved.contains("small") && saved.contains("# the big one"),
        "{saved}"
    );
}

/// `set wwn` gives a backstore the identity an initiator then reads; it is
/// refused while a LUN exports it, and two LUs may not share an NAA.
#[test]
fn set_wwn_sets_the_identity_hosts_see() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = empty_config(dir.path());
    let d = Daemon::with_config(&cfg);
    ok(&d, &["/backstores/ramdisk", "create", "w0", "16M"]);
    ok(&d, &["/backstores/ramdisk", "create", "w1", "16M"]);
    let info = ok(&d, &["/backstores/ramdisk/w0", "info"]);
    assert!(info.contains("\"naa\": \"3"), "default NAA 3 shown: {info}");
    ok(
        &d,
        &[
            "/backstores/ramdisk/w0",
            "set",
            "wwn",
            "vendor=ACME",
            "product=Vault",
            "serial=SN-0001",
            "naa=6001405aabbccddeeff0011223344556",
        ],
    );
    // The same NAA on a second LU is refused, naming both.
    let o = d.cli(&[
        "/backstores/ramdisk/w1",
        "set",
        "wwn",
        "naa=6001405AABBCCDDEEFF0011223344556",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("same naa"), "{err}");
    ok(&d, &["/iscsi", "create", IQN]);
    ok(
        &d,
        &[
            &format!("/iscsi/{IQN}/tpg1"),
            "set",
            "attribute",
            "generate_node_acls=1",
        ],
    );
    ok(&d, &[&format!("/iscsi/{IQN}/tpg1/luns"), "create", "w0"]);
    let inq = Command::new(libiscsi("iscsi-inq"))
        .args(["-i", HOST, "-e", "1", "-c", "128"])
        .arg(d.url(IQN, 0))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&inq.stdout);
    assert!(out.contains("SN-0001"), "VPD 80h: {out}");
    let std = run_ok(
        Command::new(libiscsi("iscsi-inq"))
            .args(["-i", HOST])
            .arg(d.url(IQN, 0)),
        30,
    );
    assert!(std.contains("ACME") && std.contains("Vault"), "{std}");
    // Exported: its hosts would see another disk, so it is refused.
    let o = d.cli(&["/backstores/ramdisk/w0", "set", "wwn", "serial=SN-0002"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("in use"), "{err}");
    // And it is in the saved file, so it survives a restart.
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("naa = \"6001405aabbccddeeff0011223344556\""),
        "{saved}"
    );
}

/// `rtgt apply` holds a file with inline secrets to the rule `serve
/// --config` does: private, or refused.
#[test]
fn apply_refuses_inline_secrets_in_a_readable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::with_config(&empty_config(dir.path()));
    let f = dir.path().join("want.toml");
    std::fs::write(
        &f,
        format!("[[target]]\niqn = \"{IQN}\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\npassword = \"{SECRET}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = d.cli(&["apply", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("chmod 600") && err.contains(":8:"),
        "{err}"
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&d, &["apply", f.to_str().unwrap()]);
}
