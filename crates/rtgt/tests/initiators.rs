//! Linux-style use with real initiators: discovery, login, INQUIRY,
//! READ CAPACITY, writes and reads of one block up to several MiB read back
//! identical, on the default RAM target, a fileio LUN (also across a daemon
//! restart) and a blockio LUN on a loop device.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn discovery_lists_target_and_portal() {
    let ls = libiscsi("iscsi-ls");
    let d = Daemon::default_target();
    let portal = format!("iscsi://127.0.0.1:{}", d.port());
    let out = run_ok(Command::new(&ls).args(["-i", INITIATOR, &portal]), 30);
    // "Target:iqn... Portal:127.0.0.1:PORT,TAG": the real (ephemeral) port
    let want = format!("Target:{DEMO_IQN} Portal:127.0.0.1:{},", d.port());
    assert!(
        out.contains(&want),
        "SendTargets should list `{want}`, iscsi-ls printed:\n{out}"
    );
    // -s logs in to each listed portal and reports the LUNs
    let out = run_ok(Command::new(&ls).args(["-i", INITIATOR, "-s", &portal]), 30);
    let lun0 = out
        .lines()
        .find(|l| l.starts_with("Lun:0 "))
        .unwrap_or_else(|| panic!("no Lun:0 in:\n{out}"));
    assert!(
        lun0.contains("Type:DIRECT_ACCESS"),
        "LUN 0 should be a disk: {lun0}"
    );
}

#[test]
fn inquiry_standard_data() {
    let inq = libiscsi("iscsi-inq");
    let d = Daemon::default_target();
    let out = run_ok(
        Command::new(inq)
            .args(["-i", INITIATOR])
            .arg(d.url(DEMO_IQN, 0)),
        30,
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in iscsi-inq output:\n{out}"))
    };
    assert_eq!(field("Vendor:"), "RTGT");
    assert_eq!(field("Peripheral Device Type:"), "DIRECT_ACCESS");
    assert_eq!(field("Peripheral Qualifier:"), "CONNECTED");
}

/// "NAME:value" lines of iscsi-readcapacity16
fn readcap16(url: &str) -> (u64, u64, u64) {
    let rc = libiscsi("iscsi-readcapacity16");
    let out = run_ok(Command::new(rc).args(["-i", INITIATOR, url]), 30);
    let num = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        num("RETURNED LOGICAL BLOCK ADDRESS:"),
        num("LOGICAL BLOCK LENGTH IN BYTES:"),
        num("Total size:"),
    )
}

#[test]
fn read_capacity16_default_target_is_1gib_of_512() {
    let d = Daemon::default_target();
    let (last_lba, block, total) = readcap16(&d.url(DEMO_IQN, 0));
    assert_eq!(block, 512);
    assert_eq!(last_lba, (1 << 30) / 512 - 1);
    assert_eq!(total, 1 << 30);
}

#[test]
fn ramdisk_writes_and_reads_back_every_size() {
    let q = Qemu::find();
    let d = Daemon::default_target();
    write_and_verify_sizes(&q, &d, DEMO_IQN, 0, 1);
    // a RAM disk starts out zeroed: an untouched range reads as zeros
    q.check_pattern(&d.url(DEMO_IQN, 0), 512 << 20, 1 << 20, 0);
    // unaligned write: the initiator does read-modify-write around it
    q.write_pattern(&d.url(DEMO_IQN, 0), (600 << 20) + 1000, 5000, 0x5a);
    q.check_pattern(&d.url(DEMO_IQN, 0), (600 << 20) + 1000, 5000, 0x5a);
    q.check_pattern(&d.url(DEMO_IQN, 0), 600 << 20, 1000, 0);
}

const FILE_IQN: &str = "iqn.2026-11.org.rtgt:itest-file";

fn fileio_config(dir: &Path, img: &Path, block_size: u32) -> std::path::PathBuf {
    let cfg = dir.join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[backstore]]
name = "file0"
type = "fileio"
path = "{}"
size = "128M"
block_size = {block_size}
write_back = true

[[target]]
iqn = "{FILE_IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "file0"
"#,
            img.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn fileio_keeps_data_across_restart() {
    let q = Qemu::find();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk0.img");
    let cfg = fileio_config(dir.path(), &img, 512);

    let mut d = Daemon::with_config(&cfg);
    let (_, block, total) = readcap16(&d.url(FILE_IQN, 0));
    assert_eq!(
        (block, total),
        (512, 128 << 20),
        "fileio LUN created at the configured size"
    );
    let written = write_and_verify_sizes(&q, &d, FILE_IQN, 0, 100);
    d.stop(); // SIGTERM: write-back data must be flushed

    // the file itself holds the data
    let file = std::fs::read(&img).unwrap();
    assert_eq!(file.len() as u64, 128 << 20, "backing file size");
    for (off, data) in &written {
        let at = &file[*off as usize..*off as usize + data.len()];
        assert_same(
            &format!("backing file, {} bytes at {off}", data.len()),
            at,
            data,
        );
    }

    // and a new daemon serves it again
    let d = Daemon::with_config(&cfg);
    verify(&q, &d, FILE_IQN, 0, &written);
}

#[test]
fn fileio_4096_byte_blocks() {
    let q = Qemu::find();
    let dir = tempfile::tempdir().unwrap();
    let cfg = fileio_config(dir.path(), &dir.path().join("disk4k.img"), 4096);
    let d = Daemon::with_config(&cfg);
    let (last_lba, block, total) = readcap16(&d.url(FILE_IQN, 0));
    assert_eq!(
        (last_lba, block, total),
        ((128 << 20) / 4096 - 1, 4096, 128 << 20)
    );
    let data = random_bytes(1 << 20, 7);
    q.write(&d.url(FILE_IQN, 0), 64 << 10, &data);
    assert_same(
        "4096-byte-block LUN",
        &q.read(d.port(), FILE_IQN, 0, 64 << 10, 1 << 20),
        &data,
    );
}

#[test]
fn blockio_on_a_loop_device() {
    let q = Qemu::find();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("blk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let Some(lo) = LoopDev::new(&img) else {
        // not root or no loop devices here: said loudly above, nothing to test
        return;
    };
    let iqn = "iqn.2026-11.org.rtgt:itest-blk";
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backstore]]\nname = \"blk0\"\ntype = \"blockio\"\npath = \"{}\"\n\n\
             [[target]]\niqn = \"{iqn}\"\n\n[[target.tpg]]\ntag = 1\nportals = [\"127.0.0.1:0\"]\n\
             mode = \"demo\"\n\n[[target.tpg.lun]]\nlun = 0\nbackstore = \"blk0\"\n",
            lo.dev
        ),
    )
    .unwrap();
    let mut d = Daemon::with_config(&cfg);
    let (_, block, total) = readcap16(&d.url(iqn, 0));
    assert_eq!(
        (block, total),
        (512, 128 << 20),
        "size and block size read from the device"
    );
    let written = write_and_verify_sizes(&q, &d, iqn, 0, 200);
    d.stop();
    drop(d);
    drop(lo);
    // O_DIRECT writes reached the device, hence the file under it
    let file = std::fs::read(&img).unwrap();
    for (off, data) in &written {
        assert_same(
            "loop device backing file",
            &file[*off as usize..*off as usize + data.len()],
            data,
        );
    }
}

/// The identity of a LU set in the file is what a real initiator reads
/// (standard INQUIRY, VPD 80h, VPD 83h), and after a restart still is.
#[test]
fn lu_identity_from_the_file_survives_restart() {
    let inq = libiscsi("iscsi-inq");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[backstore]]
name = "migrated"
type = "ramdisk"
size = "16M"
vendor = "LIO-ORG"
product = "old_disk"
revision = "4.0"
serial = "3a2b1c0d-aaaa-bbbb"
naa = "6001405a1b2c3d4e5f60718293a4b5c6"

[[backstore]]
name = "plain"
type = "ramdisk"
size = "16M"

[[target]]
iqn = "{FILE_IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "migrated"

[[target.tpg.lun]]
lun = 1
backstore = "plain"
"#
        ),
    )
    .unwrap();
    let read = |d: &Daemon, lun: u32, page: Option<&str>| {
        let mut c = Command::new(&inq);
        c.args(["-i", INITIATOR]);
        if let Some(p) = page {
            c.args(["-e", "1", "-c", p]);
        }
        run_ok(c.arg(d.url(FILE_IQN, lun)), 30)
    };
    let mut seen = Vec::new();
    for round in 0..2 {
        let mut d = Daemon::with_config(&cfg);
        let std = read(&d, 0, None);
        for want in ["LIO-ORG", "old_disk", "4.0"] {
            assert!(std.contains(want), "round {round}: no {want} in:\n{std}");
        }
        let serial = read(&d, 0, Some("128"));
        assert!(
            serial.contains("3a2b1c0d-aaaa-bbbb"),
            "round {round}: VPD 80h:\n{serial}"
        );
        // iscsi-inq prints a binary designator as its raw bytes.
        let raw = |lun: u32| {
            let out = Command::new(&inq)
                .args(["-i", INITIATOR, "-e", "1", "-c", "131"])
                .arg(d.url(FILE_IQN, lun))
                .output()
                .unwrap();
            assert!(out.status.success(), "iscsi-inq VPD 83h: {out:?}");
            let at = out
                .stdout
                .windows(19)
                .position(|w| w == b"Designator Type:(3)")
                .unwrap_or_else(|| panic!("no NAA designator: {out:?}"));
            let rest = &out.stdout[at..];
            let open = rest.iter().position(|&b| b == b'[').unwrap() + 1;
            rest[open..].to_vec()
        };
        let want = [
            0x60, 0x01, 0x40, 0x5a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4,
            0xb5, 0xc6, b']',
        ];
        let ids = raw(0);
        assert_eq!(&ids[..17], &want, "round {round}: VPD 83h NAA of LUN 0");
        // The default: NAA 3 (locally assigned), no borrowed company ID.
        let plain = raw(1);
        assert_eq!(plain[0] >> 4, 3, "round {round}: default NAA 3: {plain:?}");
        assert_eq!(plain[8], b']', "8 bytes");
        seen.push((serial, ids, plain));
        d.stop();
    }
    assert_eq!(seen[0], seen[1], "the same identity after a restart");
}
