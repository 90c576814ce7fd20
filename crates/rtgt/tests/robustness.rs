//! Bad input never takes the daemon down: garbage bytes, malformed PDUs,
//! broken login text and abrupt disconnects, after which a real initiator
//! still gets served.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Send `bytes`, then read whatever comes back until the target closes the
/// connection or goes quiet. Returns what was read.
fn poke(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(port);
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn login_pdu(text: &[u8], version_min: u8, flags: u8) -> Vec<u8> {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43;
    bhs[1] = flags;
    bhs[3] = version_min;
    bhs[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
    bhs[8] = 0x80;
    let mut v = bhs.to_vec();
    v.extend_from_slice(text);
    v.resize(48 + text.len().div_ceil(4) * 4, 0);
    v
}

fn still_serves(d: &Daemon) {
    let out = run_ok(
        Command::new(libiscsi("iscsi-inq"))
            .args(["-i", INITIATOR])
            .arg(d.url(DEMO_IQN, 0)),
        30,
    );
    assert!(out.contains("Vendor:RTGT"), "iscsi-inq after abuse:\n{out}");
}

#[test]
fn garbage_and_malformed_pdus() {
    let mut d = Daemon::default_target();
    let port = d.port();

    // Pseudo-random garbage of several sizes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [1usize, 47, 48, 100, 4096, 70_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        poke(port, &bytes);
    }

    // A header announcing a 16 MiB data segment, then nothing.
    let mut big = login_pdu(b"", 0, 0x87);
    big[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    poke(port, &big[..48]);

    // SCSI Command before login: rejected, connection closed.
    let mut cmd = [0u8; 48];
    cmd[0] = 0x01;
    cmd[1] = 0x80;
    let reply = poke(port, &cmd);
    assert!(
        reply.is_empty() || reply[0] & 0x3f == 0x3f,
        "expected a Reject or nothing, got {reply:02x?}"
    );

    // Login text without '=' / not UTF-8 / unknown target / bad version:
    // each gets a Login Response with an initiator-error status class.
    let cases: [(&[u8], u8); 4] = [
        (b"InitiatorName\0", 0),
        (b"InitiatorName=\xff\xfe\0TargetName=x\0", 0),
        (
            b"InitiatorName=iqn.2026-11.x:y\0TargetName=iqn.2026-11.nope:none\0",
            0,
        ),
        (
            b"InitiatorName=iqn.2026-11.x:y\0TargetName=iqn.2026-11.org.rtgt:demo\0",
            7,
        ),
    ];
    for (text, vmin) in cases {
        let reply = poke(port, &login_pdu(text, vmin, 0x87));
        assert!(reply.len() >= 48, "no login response to {text:?}");
        assert_eq!(reply[0] & 0x3f, 0x23, "login response opcode for {text:?}");
        assert_eq!(
            reply[36],
            2,
            "status class for {text:?}: {:02x?}",
            &reply[36..38]
        );
    }

    // Connections dropped halfway through a PDU.
    for cut in [10usize, 48, 60] {
        let pdu = login_pdu(
            b"InitiatorName=iqn.2026-11.x:y\0TargetName=iqn.2026-11.org.rtgt:demo\0",
            0,
            0x87,
        );
        let mut s = connect(port);
        let _ = s.write_all(&pdu[..cut.min(pdu.len())]);
        drop(s);
    }

    assert!(d.running(), "the daemon died; stderr:\n{}", d.stderr());
    still_serves(&d);
    d.stop();
}
