//! A hostile or unlucky initiator, played with this suite's raw client:
//! whatever it sends, the command window stays an invariant and the
//! daemon keeps serving others.

mod common;

use common::iscsi_login::{login, LoginOptions};
use common::scsi_client::Session;
use common::*;
use std::time::Duration;

fn session(d: &Daemon, isid_tail: u8) -> Session {
    let r = login(
        d.port(),
        &LoginOptions {
            initiator: INITIATOR.into(),
            target: Some(DEMO_IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0x77, 0x01, isid_tail],
        },
    )
    .unwrap();
    assert!(r.succeeded(), "login {:?}", (r.class, r.detail));
    let mut s = Session::new(r.stream.unwrap());
    s.clear_unit_attentions(0);
    s
}

/// A SCSI Command PDU for WRITE(10) of `blocks` blocks at `lba` with
/// `flags` (byte 1), EDTL `edtl`, the session's next ITT and CmdSN.
/// Returns the BHS and its ITT.
fn write10(s: &mut Session, flags: u8, edtl: u32, lba: u8, blocks: u8) -> ([u8; 48], u32) {
    let itt = s.take_itt();
    let sn = s.take_cmdsn();
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = flags;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&edtl.to_be_bytes());
    b[24..28].copy_from_slice(&sn.to_be_bytes());
    b[32..42].copy_from_slice(&[0x2a, 0, 0, 0, 0, lba, 0, 0, blocks, 0]);
    (b, itt)
}

/// A Data-Out PDU answering R2T `ttt` of command `itt`.
fn data_out(itt: u32, ttt: &[u8], datasn: u32, offset: u32, last: bool) -> [u8; 48] {
    let mut d = [0u8; 48];
    d[0] = 0x05;
    d[1] = if last { 0x80 } else { 0 };
    d[16..20].copy_from_slice(&itt.to_be_bytes());
    d[20..24].copy_from_slice(ttt);
    d[36..40].copy_from_slice(&datasn.to_be_bytes());
    d[40..44].copy_from_slice(&offset.to_be_bytes());
    d
}

/// A WRITE(10) of one block announced with no data and none sent: the
/// target waits for it (unsolicited, or after an R2T, as negotiated).
/// Returns (ITT, CmdSN).
fn stalled_write(s: &mut Session) -> (u32, u32) {
    let sn = s.cmdsn();
    let (b, itt) = write10(s, 0x80 | 0x20 | 0x01, 512, 9, 1); // F, W, SIMPLE
    s.send_raw(b, &[]).unwrap();
    (itt, sn)
}

/// An immediate task management request; returns its response code and
/// the MaxCmdSN - ExpCmdSN + 1 it announced.
fn tmf(s: &mut Session, function: u8, ref_itt: u32, ref_cmdsn: u32) -> (u8, u32) {
    let itt = s.take_itt();
    let mut b = [0u8; 48];
    b[0] = 0x40 | 0x02; // immediate TMF
    b[1] = 0x80 | function;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&ref_itt.to_be_bytes());
    b[24..28].copy_from_slice(&s.cmdsn().to_be_bytes());
    b[32..36].copy_from_slice(&ref_cmdsn.to_be_bytes());
    s.send_raw(b, &[]).unwrap();
    loop {
        let (r, _) = s.recv_raw().unwrap();
        if r[0] & 0x3f == 0x22 {
            assert_eq!(&r[16..20], &itt.to_be_bytes());
            return (r[2], window_of(&r));
        }
    }
}

/// MaxCmdSN - ExpCmdSN + 1 of a response.
fn window_of(bhs: &[u8; 48]) -> u32 {
    let exp = u32::from_be_bytes(bhs[28..32].try_into().unwrap());
    let max = u32::from_be_bytes(bhs[32..36].try_into().unwrap());
    max.wrapping_sub(exp).wrapping_add(1)
}

/// TEST UNIT READY answered GOOD, and the window it announces.
fn tur_window(s: &mut Session) -> u32 {
    let itt = s.take_itt();
    let sn = s.take_cmdsn();
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = 0x81;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[24..28].copy_from_slice(&sn.to_be_bytes());
    s.send_raw(b, &[]).unwrap();
    let r = reply_to(s, itt);
    assert_eq!((r[0] & 0x3f, r[3]), (0x21, 0), "TUR: {:02x?}", &r[..4]);
    window_of(&r)
}

/// The next PDU answering `itt`, skipping others (R2Ts).
fn reply_to(s: &mut Session, itt: u32) -> [u8; 48] {
    loop {
        let (r, _) = s.recv_raw().unwrap();
        if r[16..20] == itt.to_be_bytes() && r[0] & 0x3f != 0x31 {
            return r;
        }
    }
}

#[test]
fn ended_writes_give_their_window_slot_back() {
    let d = Daemon::default_target();
    let mut s = session(&d, 1);
    let full = tur_window(&mut s);
    assert_eq!(full, 128);
    // 3 x 128 writes that never send data, each ended by another TMF.
    for i in 0..384u32 {
        let (itt, sn) = stalled_write(&mut s);
        let (resp, _) = match i % 3 {
            0 => tmf(&mut s, 1, itt, sn),        // ABORT TASK
            1 => tmf(&mut s, 2, 0xffff_ffff, 0), // ABORT TASK SET
            _ => tmf(&mut s, 5, 0xffff_ffff, 0), // LOGICAL UNIT RESET
        };
        assert_eq!(resp, 0, "TMF {i}");
        if i % 3 == 2 {
            // The LU reset's unit attention.
            s.clear_unit_attentions(0);
        }
    }
    assert_eq!(tur_window(&mut s), full, "the window leaked");
}

#[test]
fn commands_past_max_cmdsn_are_ignored() {
    let d = Daemon::default_target();
    let mut s = session(&d, 2);
    assert_eq!(tur_window(&mut s), 128);
    // Fill the window with writes waiting for data.
    let held: Vec<(u32, u32)> = (0..128).map(|_| stalled_write(&mut s)).collect();
    // One more command, past MaxCmdSN: no answer, not executed.
    let itt = s.take_itt();
    let sn = s.take_cmdsn();
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = 0x81;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[24..28].copy_from_slice(&sn.to_be_bytes());
    s.send_raw(b, &[]).unwrap();
    s.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok((r, _)) = s.recv_raw() {
        assert_ne!(
            &r[16..20],
            &itt.to_be_bytes(),
            "a command past MaxCmdSN was answered"
        );
    }
    s.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Ending one held write opens one place; the initiator resends.
    let (resp, window) = tmf(&mut s, 1, held[0].0, held[0].1);
    assert_eq!((resp, window), (0, 1));
    s.send_raw(b, &[]).unwrap();
    let r = reply_to(&mut s, itt);
    assert_eq!((r[0] & 0x3f, r[3]), (0x21, 0));
    // A LUN reset ends the rest.
    assert_eq!(tmf(&mut s, 5, 0xffff_ffff, 0).0, 0);
    s.clear_unit_attentions(0);
    assert_eq!(tur_window(&mut s), 128);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// READ(10) of `blocks` 512-byte blocks at LBA 0, as a raw PDU.
fn read10(s: &mut Session, blocks: u16) -> [u8; 48] {
    let itt = s.take_itt();
    let sn = s.take_cmdsn();
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = 0x80 | 0x40 | 0x01; // F, R, SIMPLE
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&(blocks as u32 * 512).to_be_bytes());
    b[24..28].copy_from_slice(&sn.to_be_bytes());
    let n = blocks.to_be_bytes();
    b[32..42].copy_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, n[0], n[1], 0]);
    b
}

#[test]
fn an_initiator_that_never_reads_cannot_grow_memory_and_is_dropped() {
    let d = Daemon::start(&["serve", "--listen", "127.0.0.1:0", "--send-timeout", "3"]);
    let base = rss_kib(d.pid());
    let mut s = session(&d, 3);
    // 128 pipelined 8 MiB READs (1 GiB of replies), and never read.
    s.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0;
    for _ in 0..128 {
        let b = read10(&mut s, 16384);
        if s.send_raw(b, &[]).is_err() {
            break; // the target stopped reading, and our socket is full
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = rss_kib(d.pid());
    eprintln!("non-reading initiator: {sent} READs of 8 MiB sent, daemon RSS {base} -> {held} KiB");
    assert!(
        held < base + 64 * 1024,
        "{sent} unread 8 MiB READs took the daemon from {base} to {held} KiB"
    );
    // Meanwhile another initiator is served.
    let mut other = session(&d, 4);
    assert_eq!(tur_window(&mut other), 128);
    // After the send timeout the stalled connection is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !d.stderr().contains("has not read its socket") {
        assert!(
            std::time::Instant::now() < deadline,
            "not dropped:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tur_window(&mut other), 128);
}

#[test]
fn a_stalled_ordered_write_does_not_hold_other_initiators_hostage() {
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-out-timeout",
        "1",
    ]);
    let mut staller = session(&d, 5);
    let mut victim = session(&d, 6);
    // An ORDERED WRITE whose data never comes: a barrier in the task set.
    let itt = staller.take_itt();
    let sn = staller.take_cmdsn();
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = 0x80 | 0x20 | 0x02; // F, W, ORDERED
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&512u32.to_be_bytes());
    b[24..28].copy_from_slice(&sn.to_be_bytes());
    b[32..42].copy_from_slice(&[0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0]);
    staller.send_raw(b, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The staller keeps its connection alive (it answers pings), but the
    // victim's READ completes once the Data-Out timeout ends the staller's
    // connection.
    let start = std::time::Instant::now();
    let r = victim
        .command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(d.stderr().contains("no Data-Out"), "{}", d.stderr());
    // The staller's connection is gone.
    staller
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut closed = false;
    for _ in 0..8 {
        match staller.recv_raw() {
            Ok(_) => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);
}

/// A WRITE(10) of one block sent with `flags`, EDTL `edtl` and `data`:
/// (status, residual flags byte, residual count) of its SCSI Response.
fn write_with(s: &mut Session, w_bit: bool, edtl: u32, data: &[u8]) -> (u8, u8, u32) {
    let flags = 0x80 | if w_bit { 0x20 } else { 0 } | 0x01;
    let (b, itt) = write10(s, flags, edtl, 20, 1);
    s.send_raw(b, data).unwrap();
    let r = reply_to(s, itt);
    assert_eq!(r[0] & 0x3f, 0x21, "SCSI Response");
    (
        r[3],
        r[1] & 0x06,
        u32::from_be_bytes(r[44..48].try_into().unwrap()),
    )
}

#[test]
fn a_write_without_announced_data_gets_residual_overflow() {
    let d = Daemon::default_target();
    let mut s = session(&d, 7);
    let read_back = |s: &mut Session| {
        s.command(0, &[0x28, 0, 0, 0, 0, 20, 0, 0, 1, 0], &[], 512)
            .unwrap()
            .data
    };
    for (w, edtl, data) in [
        (false, 0u32, &[][..]),
        (true, 0, &[][..]),
        (false, 512, &[][..]),
    ] {
        let (status, flags, residual) = write_with(&mut s, w, edtl, data);
        eprintln!("W={w} EDTL={edtl}: status {status:#x} flags {flags:#x} residual {residual}");
        assert!(
            status != 0 || (flags, residual) == (0x04, 512),
            "W={w} EDTL={edtl}: GOOD without a residual overflow of the 512 bytes needed"
        );
    }
    assert_eq!(read_back(&mut s), vec![0u8; 512], "nothing was written");
}

fn login_as(d: &Daemon, initiator: &str, isid_tail: u8) -> common::iscsi_login::LoginResult {
    login(
        d.port(),
        &LoginOptions {
            initiator: initiator.into(),
            target: Some(DEMO_IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0x42, 0x00, isid_tail],
        },
    )
    .unwrap()
}

#[test]
fn sessions_per_initiator_are_bounded() {
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-sessions-per-initiator",
        "2",
    ]);
    let a = login_as(&d, INITIATOR, 1);
    let b = login_as(&d, INITIATOR, 2);
    assert!(a.succeeded() && b.succeeded());
    let c = login_as(&d, INITIATOR, 3);
    assert_eq!((c.class, c.detail), (3, 2), "out of resources");
    // Another initiator is not affected.
    assert!(login_as(&d, "iqn.2026-11.org.rtgt:someone-else", 1).succeeded());
    // Once a session ends, the initiator may log in again.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if login_as(&d, INITIATOR, 4).succeeded() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a slot never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_per_address_are_bounded_and_logins_do_not_hold_up_shutdown() {
    use std::io::Read;
    let mut d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-connections-per-address",
        "3",
    ]);
    // Three connections that never log in...
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", d.port())).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...and the fourth from the same address is closed at once.
    let mut fourth = std::net::TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        fourth.read(&mut [0u8; 1]).unwrap_or(0),
        0,
        "fourth connection kept"
    );
    // Shutdown does not wait for connections still in login.
    let start = std::time::Instant::now();
    let st = d.stop_with("TERM", 10).expect("rtgt did not exit");
    assert!(st.success());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?}",
        start.elapsed()
    );
    drop(idle);
}

/// The INFORMATION field of fixed-format sense data, when VALID.
fn sense_info(sense: &[u8]) -> Option<u32> {
    (sense.len() >= 7 && sense[0] & 0x80 != 0)
        .then(|| u32::from_be_bytes(sense[3..7].try_into().unwrap()))
}

#[test]
fn backstore_errors_become_the_right_sense_and_the_daemon_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("shrinks.img");
    let cfg = dir.path().join("faults.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[backstore]]
name = "flaky"
type = "ramdisk"
size = "1M"

[backstore.faults]
[[backstore.faults.rule]]
op = "read"
lba = 100
blocks = 8
error = "EIO"
[[backstore.faults.rule]]
op = "write"
lba = 200
blocks = 10
error = "ENOSPC"
[[backstore.faults.rule]]
op = "any"
lba = 300
blocks = 1
error = "ENXIO"
[[backstore.faults.rule]]
op = "write"
lba = 400
blocks = 4
error = "EIO"

[[backstore]]
name = "slow"
type = "ramdisk"
size = "1M"
[backstore.faults]
latency_ms = 300

[[backstore]]
name = "file"
type = "fileio"
path = "{}"
size = "1M"

[[target]]
iqn = "{DEMO_IQN}"
[[target.tpg]]
tag = 1
mode = "demo"
[[target.tpg.lun]]
lun = 0
backstore = "flaky"
[[target.tpg.lun]]
lun = 1
backstore = "slow"
[[target.tpg.lun]]
lun = 2
backstore = "file"
"#,
            img.display()
        ),
    )
    .unwrap();
    let d = Daemon::with_config(&cfg);
    let mut s = session(&d, 8);
    s.clear_unit_attentions(1);
    s.clear_unit_attentions(2);
    let rw10 = |op: u8, lba: u32, n: u16| {
        let l = lba.to_be_bytes();
        let n = n.to_be_bytes();
        [op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
    };
    // EIO on read: MEDIUM ERROR / UNRECOVERED READ ERROR at the first bad
    // block of the range.
    let r = s.command(0, &rw10(0x28, 96, 16), &[], 16 * 512).unwrap();
    assert_eq!(r.sense_code(), Some((0x03, 0x11, 0x00)), "{r:?}");
    assert_eq!(sense_info(&r.sense), Some(100));
    // ENOSPC on write: SPACE ALLOCATION FAILED WRITE PROTECT.
    let r = s.command(0, &rw10(0x2a, 205, 1), &[1; 512], 0).unwrap();
    assert_eq!(r.sense_code(), Some((0x07, 0x27, 0x07)), "{r:?}");
    // The device gone: NOT READY.
    let r = s.command(0, &rw10(0x28, 300, 1), &[], 512).unwrap();
    assert_eq!(r.sense_code().map(|c| c.0), Some(0x02), "{r:?}");
    // EIO on write: MEDIUM ERROR / WRITE ERROR naming the LBA.
    let r = s.command(0, &rw10(0x2a, 400, 2), &[2; 1024], 0).unwrap();
    assert_eq!(r.sense_code(), Some((0x03, 0x0c, 0x00)), "{r:?}");
    assert_eq!(sense_info(&r.sense), Some(400));
    // Blocks outside the rules work.
    assert_eq!(
        s.command(0, &rw10(0x2a, 10, 1), &[3; 512], 0)
            .unwrap()
            .status,
        0
    );
    assert_eq!(
        s.command(0, &rw10(0x28, 10, 1), &[], 512).unwrap().data,
        vec![3; 512]
    );
    // Latency delays, nothing else.
    let start = std::time::Instant::now();
    assert_eq!(s.command(1, &rw10(0x28, 0, 1), &[], 512).unwrap().status, 0);
    assert!(start.elapsed() >= Duration::from_millis(300));
    // A fileio file truncated behind the target's back: a read past the
    // new end is a medium error, not a crash or a short GOOD.
    assert_eq!(
        s.command(2, &rw10(0x2a, 1000, 1), &[4; 512], 0)
            .unwrap()
            .status,
        0
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let r = s.command(2, &rw10(0x28, 1000, 1), &[], 512).unwrap();
    assert_eq!(r.sense_code().map(|c| c.0), Some(0x03), "{r:?}");
    // Still serving.
    assert_eq!(tur_window(&mut s), 128);
    assert_eq!(s.command(2, &rw10(0x28, 0, 1), &[], 512).unwrap().status, 0);
}

/// Sessions that pipeline 8 MiB READs on a LUN whose reads block (a
/// RAM disk with injected latency: each read runs on a worker thread into
/// its own buffer, many at once) and never read the answers: what the
/// daemon holds is capped by the data budget, whatever the windows allow.
fn unread_blocking_reads(budget: &str, sessions: u8) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("f.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backstore]]\nname = \"f\"\ntype = \"ramdisk\"\nsize = \"64M\"\n\
             [backstore.faults]\nlatency_ms = 200\n\n\
             [[target]]\niqn = \"{DEMO_IQN}\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n\
             [[target.tpg.lun]]\nlun = 0\nbackstore = \"f\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-budget",
        budget,
        "--send-timeout",
        "4",
    ]);
    let base = rss_kib(d.pid());
    let mut stallers = Vec::new();
    for i in 0..sessions {
        let mut s = session(&d, 0x40 + i);
        s.stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        for _ in 0..128 {
            let b = read10(&mut s, 16384);
            if s.send_raw(b, &[]).is_err() {
                break;
            }
        }
        stallers.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = rss_kib(d.pid());
    eprintln!(
        "{sessions} non-reading sessions x 128 blocking READs of 8 MiB, budget {budget}: RSS {base} -> {held} KiB"
    );
    // Another initiator gets its READ once the stallers are dropped (the
    // send timeout), not never.
    let mut other = session(&d, 0x7f);
    let r = other
        .command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[], 4096)
        .unwrap();
    assert_eq!(r.status, 0);
    drop(stallers);
    (base, held)
}

#[test]
fn the_data_budget_caps_what_many_stalled_sessions_hold() {
    let (base, held) = unread_blocking_reads("64M", 4);
    assert!(
        held < base + 64 * 1024 + 4 * 16 * 1024,
        "RSS {base} -> {held} KiB with a 64 MiB budget"
    );
}

#[test]
fn a_hundred_hostile_sessions_stay_within_the_budget() {
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-budget",
        "64M",
        "--max-sessions-per-initiator",
        "200",
        "--data-out-timeout",
        "30",
    ]);
    let base = rss_kib(d.pid());
    let mut hostile = Vec::new();
    for i in 0..100u8 {
        let mut s = session(&d, i);
        s.stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        for _ in 0..128 {
            // Half pipeline 8 MiB READs and never read the answers; half
            // announce 8 MiB WRITEs and never send the data.
            let b = if i % 2 == 0 {
                read10(&mut s, 16384)
            } else {
                let itt = s.take_itt();
                let sn = s.take_cmdsn();
                let mut b = [0u8; 48];
                b[0] = 0x01;
                b[1] = 0x80 | 0x20 | 0x01;
                b[16..20].copy_from_slice(&itt.to_be_bytes());
                b[20..24].copy_from_slice(&(8u32 << 20).to_be_bytes());
                b[24..28].copy_from_slice(&sn.to_be_bytes());
                b[32..42].copy_from_slice(&[0x2a, 0, 0, 0, 0, 0, 0, 0x40, 0, 0]);
                b
            };
            if s.send_raw(b, &[]).is_err() {
                break;
            }
        }
        hostile.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = rss_kib(d.pid());
    eprintln!("100 hostile sessions (50 unread READs, 50 WRITEs without data), budget 64 MiB: RSS {base} -> {held} KiB");
    assert!(
        held < base + 64 * 1024 + 100 * 512,
        "RSS {base} -> {held} KiB"
    );
    drop(hostile);
}

/// Data-Out PDUs that overlap (the second repeats the first's offset) add
/// up to the transfer length without covering it. DataPDUInOrder=Yes makes
/// that a protocol error: the command ends with DATA OFFSET ERROR and
/// nothing is written, rather than a write of whatever the buffer held
/// where no data arrived.
#[test]
fn overlapping_data_out_is_refused_and_writes_nothing() {
    let d = Daemon::default_target();
    let mut s = session(&d, 8);
    // F (no unsolicited data follows), W, SIMPLE
    let (b, itt) = write10(&mut s, 0x80 | 0x20 | 0x01, 1024, 30, 2);
    s.send_raw(b, &[]).unwrap();
    let r2t = loop {
        let (r, _) = s.recv_raw().unwrap();
        if r[0] & 0x3f == 0x31 {
            break r;
        }
    };
    assert_eq!(&r2t[40..44], &0u32.to_be_bytes(), "R2T from offset 0");
    for (datasn, last) in [(0u32, false), (1, true)] {
        // Both at offset 0.
        let d = data_out(itt, &r2t[20..24], datasn, 0, last);
        s.send_raw(d, &[0x5a; 512]).unwrap();
    }
    let (r, data) = loop {
        let (r, data) = s.recv_raw().unwrap();
        if r[16..20] == itt.to_be_bytes() && r[0] & 0x3f == 0x21 {
            break (r, data);
        }
    };
    assert_eq!(r[3], 0x02, "CHECK CONDITION, not {:#x}", r[3]);
    let sense = &data[2..];
    assert_eq!(
        (sense[2] & 0x0f, sense[12], sense[13]),
        (0x0b, 0x4b, 0x05),
        "DATA OFFSET ERROR"
    );
    let back = s
        .command(0, &[0x28, 0, 0, 0, 0, 30, 0, 0, 2, 0], &[], 1024)
        .unwrap()
        .data;
    assert_eq!(back, vec![0u8; 1024], "nothing was written");
}

/// With InitialR2T=No, a write command with F=1 says no unsolicited
/// Data-Out follows its immediate data (RFC 7143 11.3.1): the target must
/// solicit the rest at once, from the end of the immediate data, not wait
/// for a first burst that will never come.
#[test]
fn f_bit_on_a_write_ends_unsolicited_data() {
    let d = Daemon::default_target();
    let (stream, _) = common::iscsi_login::login_with_keys(
        d.port(),
        INITIATOR,
        DEMO_IQN,
        [0x80, 0, 0, 0x77, 0x01, 9],
        &[
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("FirstBurstLength", "65536"),
        ],
    )
    .unwrap();
    let mut s = Session::new(stream);
    s.clear_unit_attentions(0);
    let (b, itt) = write10(&mut s, 0x80 | 0x20 | 0x01, 2048, 40, 4); // F, W, SIMPLE
    s.send_raw(b, &[0x11; 512]).unwrap();
    let (r2t, _) = s.recv_raw().unwrap();
    assert_eq!(r2t[0] & 0x3f, 0x31, "an R2T at once, not {:#x}", r2t[0]);
    let offset = u32::from_be_bytes(r2t[40..44].try_into().unwrap());
    let len = u32::from_be_bytes(r2t[44..48].try_into().unwrap());
    assert_eq!(
        (offset, len),
        (512, 1536),
        "the rest after the immediate data"
    );
    s.send_raw(data_out(itt, &r2t[20..24], 0, 512, true), &[0x22; 1536])
        .unwrap();
    let r = reply_to(&mut s, itt);
    assert_eq!((r[0] & 0x3f, r[3]), (0x21, 0), "GOOD");
    let back = s
        .command(0, &[0x28, 0, 0, 0, 0, 40, 0, 0, 4, 0], &[], 2048)
        .unwrap()
        .data;
    assert_eq!(&back[..512], &[0x11; 512][..]);
    assert_eq!(&back[512..], &[0x22; 1536][..]);
}
