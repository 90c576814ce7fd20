//! Persistent reservations with APTPL survive a crash: register a key with
//! APTPL through one session, kill -9 the daemon, start it again on the same
//! state directory, and READ KEYS from a new session returns the key.
//!
//! libiscsi's tools cannot send PERSISTENT RESERVE OUT with APTPL, so this
//! test speaks just enough iSCSI itself (login, SCSI Command, Data-In),
//! encoded here independently of the daemon's own PDU code.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const KEY: u64 = 0x1122_3344_5566_7788;

struct Session {
    s: TcpStream,
    cmdsn: u32,
    exp_statsn: u32,
    itt: u32,
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        v.extend_from_slice(format!("{k}={val}").as_bytes());
        v.push(0);
    }
    v
}

fn send(s: &mut TcpStream, mut bhs: [u8; 48], data: &[u8]) {
    let len = data.len() as u32;
    bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    let mut wire = bhs.to_vec();
    wire.extend_from_slice(data);
    wire.resize(48 + data.len().div_ceil(4) * 4, 0);
    s.write_all(&wire).unwrap();
}

fn recv(s: &mut TcpStream) -> ([u8; 48], Vec<u8>) {
    let mut bhs = [0u8; 48];
    s.read_exact(&mut bhs).unwrap();
    let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    let mut data = vec![0u8; len.div_ceil(4) * 4];
    s.read_exact(&mut data).unwrap();
    data.truncate(len);
    (bhs, data)
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

impl Session {
    fn login(port: u16, target: &str, isid_low: u8) -> Session {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut data = text(&[
            ("InitiatorName", "iqn.2026-11.org.rtgt:aptpl-test"),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ErrorRecoveryLevel", "0"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("MaxOutstandingR2T", "1"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "20"),
        ]);
        let mut exp_statsn = 0u32;
        for _round in 0..4 {
            let mut bhs = [0u8; 48];
            bhs[0] = 0x43; // Login Request, immediate
            bhs[1] = 0x80 | (1 << 2) | 3; // T, CSG=operational, NSG=full feature
            bhs[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, isid_low]);
            bhs[16..20].copy_from_slice(&1u32.to_be_bytes()); // ITT
            bhs[24..28].copy_from_slice(&1u32.to_be_bytes()); // CmdSN
            bhs[28..32].copy_from_slice(&exp_statsn.to_be_bytes());
            send(&mut s, bhs, &data);
            let (r, _) = recv(&mut s);
            assert_eq!(r[0] & 0x3f, 0x23, "login response");
            assert_eq!((r[36], r[37]), (0, 0), "login status class/detail");
            exp_statsn = be32(&r, 24).wrapping_add(1);
            if r[1] & 0x80 != 0 && r[1] & 3 == 3 {
                return Session {
                    s,
                    cmdsn: be32(&r, 28),
                    exp_statsn,
                    itt: 10,
                };
            }
            // The target asked for another round (it proposed keys): answer
            // with nothing new.
            data = Vec::new();
        }
        panic!("login did not reach full feature phase");
    }

    /// Run a command; returns (status, Data-In, sense).
    fn command(&mut self, cdb: &[u8], data_out: &[u8], read_len: u32) -> (u8, Vec<u8>, Vec<u8>) {
        self.itt += 1;
        let mut bhs = [0u8; 48];
        bhs[0] = 0x01;
        bhs[1] = 0x80
            | 0x01
            | if read_len > 0 { 0x40 } else { 0 }
            | if data_out.is_empty() { 0 } else { 0x20 };
        bhs[16..20].copy_from_slice(&self.itt.to_be_bytes());
        let edtl = if read_len > 0 {
            read_len
        } else {
            data_out.len() as u32
        };
        bhs[20..24].copy_from_slice(&edtl.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        bhs[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmdsn = self.cmdsn.wrapping_add(1);
        send(&mut self.s, bhs, data_out); // immediate data
        let mut data_in = Vec::new();
        loop {
            let (r, data) = recv(&mut self.s);
            match r[0] & 0x3f {
                0x25 => {
                    data_in.extend_from_slice(&data);
                    if r[1] & 0x01 != 0 {
                        self.exp_statsn = be32(&r, 24).wrapping_add(1);
                        return (r[3], data_in, Vec::new());
                    }
                }
                0x21 => {
                    self.exp_statsn = be32(&r, 24).wrapping_add(1);
                    let sense = if data.len() > 2 {
                        data[2..].to_vec()
                    } else {
                        Vec::new()
                    };
                    return (r[3], data_in, sense);
                }
                0x20 => {} // a NOP-In ping; not expected this quickly
                op => panic!("unexpected PDU opcode {op:#x}"),
            }
        }
    }

    /// Clear the power-on unit attention a new nexus starts with.
    fn clear_unit_attention(&mut self) {
        for _ in 0..4 {
            if self.command(&[0u8; 6], &[], 0).0 == 0 {
                return;
            }
        }
        panic!("TEST UNIT READY keeps failing");
    }

    fn read_keys(&mut self) -> Vec<u64> {
        let cdb = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0];
        let (st, data, sense) = self.command(&cdb, &[], 256);
        assert_eq!(st, 0, "PERSISTENT RESERVE IN failed, sense {sense:02x?}");
        let len = be32(&data, 4) as usize;
        data[8..8 + len]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }
}

#[test]
fn aptpl_registration_survives_kill_9() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_string();
    let start = || Daemon::start(&["serve", "--listen", "127.0.0.1:0", "--state-dir", &dir]);

    let mut d = start();
    let mut s = Session::login(d.port(), DEMO_IQN, 1);
    s.clear_unit_attention();
    // PERSISTENT RESERVE OUT, REGISTER, parameter list of 24 bytes:
    // service action reservation key = KEY, APTPL = 1.
    let cdb = [0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0];
    let mut params = [0u8; 24];
    params[8..16].copy_from_slice(&KEY.to_be_bytes());
    params[20] = 0x01;
    let (st, _, sense) = s.command(&cdb, &params, 0);
    assert_eq!(st, 0, "REGISTER with APTPL failed, sense {sense:02x?}");
    assert_eq!(s.read_keys(), vec![KEY]);
    assert!(
        std::fs::read_dir(state.path()).unwrap().count() > 0,
        "nothing was written to the state directory"
    );

    // A crash: no chance to flush or clean up.
    assert!(
        d.stop_with("KILL", 10).is_some(),
        "kill -9 did not end the daemon"
    );
    drop(s);

    let d = start();
    let mut s = Session::login(d.port(), DEMO_IQN, 2);
    s.clear_unit_attention();
    assert_eq!(s.read_keys(), vec![KEY], "the APTPL registration was lost");

    // Without APTPL state (a fresh directory) the key is not there: the
    // test would notice a daemon that never forgot anything.
    drop(d);
    let other = tempfile::tempdir().unwrap();
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        other.path().to_str().unwrap(),
    ]);
    let mut s = Session::login(d.port(), DEMO_IQN, 3);
    s.clear_unit_attention();
    assert_eq!(s.read_keys(), Vec::<u64>::new());
}
