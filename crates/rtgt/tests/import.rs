//! `rtgt import`: a realistic file of each format (LIO's saveconfig.json,
//! tgt's targets.conf, SCST's scst.conf, in the shape those tools write
//! them) imports, serves, and libiscsi sees the same targets and LUNs and
//! logs in with the imported CHAP credentials (and not without them); an
//! imported LIO LU reports the VPD 80h/83h LIO reported; what cannot be
//! carried over is named; a broken file is exit 2 with its place.

mod common;

use common::iscsi_login::{login, ClientChap, LoginOptions};
use common::scsi_client::Session;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn rtgt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .args(args)
        .output()
        .unwrap()
}

/// The fixture `name` with its paths put under `dir`, and the images it
/// names (16 MiB each) created there.
fn fixture(dir: &Path, name: &str, images: &[&str]) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name);
    let text = std::fs::read_to_string(src)
        .unwrap()
        .replace("@DIR@", dir.to_str().unwrap());
    for i in images {
        let f = std::fs::File::create(dir.join(i)).unwrap();
        f.set_len(16 << 20).unwrap();
    }
    let out = dir.join(name);
    std::fs::write(&out, text).unwrap();
    out
}

/// Import, check the notes name what they must, serve the result.
fn import_and_serve(dir: &Path, format: &str, file: &Path, notes: &[&str]) -> Daemon {
    let o = rtgt(&["import", format, file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "import {format}: {stderr}");
    for n in notes {
        assert!(
            stderr.contains(n),
            "{format}: no note about {n:?} in:\n{stderr}"
        );
    }
    let cfg = dir.join(format!("{format}.toml"));
    write_private(&cfg, &String::from_utf8_lossy(&o.stdout));
    let check = rtgt(&["check", cfg.to_str().unwrap()]);
    assert!(check.status.success(), "{check:?}");
    Daemon::with_config(&cfg)
}

/// `iscsi-ls -s` as `user`/`secret` (or without CHAP): its output, or
/// None if the login failed.
fn ls(d: &Daemon, initiator: &str, chap: Option<(&str, &str)>) -> Option<String> {
    let url = match chap {
        Some((u, p)) => format!("iscsi://{u}%{p}@127.0.0.1:{}", d.port()),
        None => format!("iscsi://127.0.0.1:{}", d.port()),
    };
    let o = run(
        Command::new(libiscsi("iscsi-ls")).args(["-i", initiator, "-s", &url]),
        30,
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success() && out.contains("Lun:")).then_some(out)
}

const HOST: &str = "iqn.2026-11.org.rtgt:import-host";

#[test]
fn lio_saveconfig_imports_serves_and_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path(), "lio-saveconfig.json", &[]);
    let d = import_and_serve(
        dir.path(),
        "lio",
        &file,
        &[
            "$.storage_objects[2]: storage object \"cephdisk\" (user)",
            "$.targets[0].tpgs[0].luns[2]",
            "\"iqn.2026-11.org.rtgt:no-chap-host\" has no CHAP credentials",
            "fabric module \"loopback\"",
        ],
    );
    let iqn = "iqn.2003-01.org.linux-iscsi.store1.x8664:sn.4b1ee6e5a1f2";
    let out = ls(&d, HOST, Some(("dbhost", "db-host-secret-1"))).expect("CHAP login");
    assert!(out.contains(iqn), "{out}");
    assert!(out.contains("Lun:0 ") && out.contains("Lun:1 "), "{out}");
    assert!(
        ls(&d, HOST, Some(("dbhost", "wrong-secret-00"))).is_none(),
        "a wrong secret logs in"
    );
    assert!(ls(&d, HOST, None).is_none(), "no CHAP logs in");
    assert!(
        ls(&d, "iqn.2026-11.org.rtgt:no-chap-host", None).is_none(),
        "the ACL LIO could not let in without CHAP gets in"
    );
    // VPD 80h: the storage object's wwn; 83h: LIO's NAA 6 of it.
    let url = format!(
        "iscsi://dbhost%db-host-secret-1@127.0.0.1:{}/{iqn}/0",
        d.port()
    );
    let inq = |page: &str| {
        let o = Command::new(libiscsi("iscsi-inq"))
            .args(["-i", HOST, "-e", "1", "-c", page, &url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        o.stdout
    };
    let serial = String::from_utf8_lossy(&inq("128")).into_owned();
    assert!(
        serial.contains("a1b2c3d4-e5f6-4789-abcd-ef0123456789"),
        "{serial}"
    );
    let ids = inq("131");
    let at = ids
        .windows(19)
        .position(|w| w == b"Designator Type:(3)")
        .expect("an NAA designator");
    let open = at + ids[at..].iter().position(|&b| b == b'[').unwrap() + 1;
    // 6 001405 and the first 25 hex digits of the serial, as LIO derives it.
    let lio = [
        0x60, 0x01, 0x40, 0x5a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x64, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x12,
    ];
    assert_eq!(&ids[open..open + 16], &lio);
    let std = run_ok(
        Command::new(libiscsi("iscsi-inq")).args(["-i", HOST, &url]),
        30,
    );
    assert!(
        std.contains("Vendor:LIO-ORG")
            && std.contains("Product:db")
            && std.contains("Revision:4.0"),
        "{std}"
    );
}

#[test]
fn tgt_targets_conf_imports_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(
        dir.path(),
        "tgt-targets.conf",
        &["tgt-disk1.img", "tgt-disk2.img", "tgt-disk3.img"],
    );
    let d = import_and_serve(
        dir.path(),
        "tgt",
        &file,
        &[
            "MaxRecvDataSegmentLength is not carried over",
            "T10 vendor ID",
        ],
    );
    let out = ls(&d, HOST, Some(("tgtuser", "tgt-secret-0001"))).expect("CHAP login");
    assert!(
        out.contains("iqn.2008-09.com.example:server.target1"),
        "{out}"
    );
    // tgt numbers backing stores from 1 (LUN 0 is its controller).
    assert!(out.contains("Lun:1 ") && out.contains("Lun:2 "), "{out}");
    assert!(ls(&d, HOST, Some(("tgtuser", "wrong-secret-00"))).is_none());
    // Only the named initiator has target1; target2 (no ACL) is open, LUN 5.
    let other = ls(&d, "iqn.2026-11.org.rtgt:someone", None).expect("open target");
    assert!(
        other.contains("server.target2") && other.contains("Lun:5 "),
        "{other}"
    );
    let std = run_ok(
        Command::new(libiscsi("iscsi-inq")).args([
            "-i",
            HOST,
            &format!(
                "iscsi://tgtuser%tgt-secret-0001@127.0.0.1:{}/iqn.2008-09.com.example:server.target1/1",
                d.port()
            ),
        ]),
        30,
    );
    // Cut to INQUIRY's 8 characters, as tgt reported it.
    assert!(
        std.contains("Vendor:MyCompan") && std.contains("NAS-Disk"),
        "{std}"
    );
    // VPD 83h: the NAA 6 tgt made of the scsi_id "IET     00010001" (tid 1:
    // target1 sorts first; LUN 1), so the multipath WWID
    // 360000000000000000e00000000010001 stays. (Read with the raw client:
    // iscsi-inq prints a binary designator as a C string, and this one
    // holds zero bytes.)
    let r = login(
        d.port(),
        &LoginOptions {
            initiator: HOST.into(),
            target: Some("iqn.2008-09.com.example:server.target1".into()),
            chap: Some(ClientChap {
                user: "tgtuser".into(),
                secret: b"tgt-secret-0001".to_vec(),
                algorithms: vec![5],
                mutual: None,
                reflect: false,
            }),
            isid: [0x80, 0, 0, 0, 0x16, 1],
        },
    )
    .unwrap();
    assert!(r.succeeded(), "login {:02x}/{:02x}", r.class, r.detail);
    let mut s = Session::new(r.stream.unwrap());
    s.clear_unit_attentions(1);
    let tgt = [0x60, 0, 0, 0, 0, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0x01, 0, 0x01];
    assert_eq!(s.naa(1), tgt);
    assert_eq!(s.naa(2)[15], 0x02, "LUN 2: IET     00010002");
}

#[test]
fn scst_conf_imports_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(
        dir.path(),
        "scst.conf",
        &["scst-disk01.img", "scst-disk02.img"],
    );
    let d = import_and_serve(
        dir.path(),
        "scst",
        &file,
        &[
            "handler dev_tape",
            "initiator pattern \"iqn.1991-05.com.microsoft:*\"",
        ],
    );
    // rel_tgt_id is carried over, not reported as left behind.
    let toml = std::fs::read_to_string(dir.path().join("scst.toml")).unwrap();
    assert!(toml.contains("relative_port_id = 1"), "{toml}");
    let out = ls(&d, HOST, Some(("scstuser", "scst-secret-001"))).expect("CHAP login");
    assert!(out.contains("iqn.2006-10.net.vlnb:tgt"), "{out}");
    assert!(out.contains("Lun:0 ") && out.contains("Lun:1 "), "{out}");
    assert!(ls(&d, HOST, Some(("scstuser", "wrong-secret-00"))).is_none());
    // Not in the group: no access.
    assert!(ls(
        &d,
        "iqn.2026-11.org.rtgt:someone",
        Some(("scstuser", "scst-secret-001"))
    )
    .is_none());
}

#[test]
fn broken_files_are_exit_2_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    for (format, name, text, place) in [
        ("lio", "bad.json", "{\n \"targets\": [\n", "bad.json:3"),
        (
            "lio",
            "bad2.json",
            "{\"storage_objects\": [{\"plugin\": \"fileio\", \"name\": 5}]}",
            "$.storage_objects[0].name",
        ),
        (
            "tgt",
            "bad.conf",
            "<target iqn.2001-04.com.example:a>\n",
            "bad.conf:1",
        ),
        ("scst", "bad.scst", "HANDLER vdisk_fileio {\n", "bad.scst:1"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let o = rtgt(&["import", format, f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{format} {name}: {err}");
        assert!(err.contains(place), "{format} {name}: {err}");
    }
}

/// `--apply` makes the running daemon serve the import.
#[test]
fn import_apply_changes_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(&cfg, "").unwrap();
    let d = Daemon::with_config(&cfg);
    let file = fixture(dir.path(), "lio-saveconfig.json", &[]);
    let ctl = d.control.to_str().unwrap().to_string();
    let o = rtgt(&[
        "--socket",
        &ctl,
        "import",
        "lio",
        file.to_str().unwrap(),
        "--apply",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(ls(&d, HOST, Some(("dbhost", "db-host-secret-1"))).is_some());
    // Saved, with the identity.
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("naa = \"6001405a1b2c3d4e5f64789abcdef012\""),
        "{saved}"
    );
}
