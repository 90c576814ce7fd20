//! SCSI commands over a session opened by [`super::iscsi_login::login`]:
//! one command at a time, Data-Out as immediate data, Data-In collected,
//! sense data decoded. Enough to show what a command through a given
//! initiator's map gets, when no real initiator tool can send it.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// What a command got back.
#[derive(Debug)]
pub struct ScsiResult {
    pub status: u8,
    /// Sense data (without the 2-byte length), with CHECK CONDITION.
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
}

impl ScsiResult {
    /// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first().map(|b| b & 0x7f) {
            Some(0x70) | Some(0x71) if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            Some(0x72) | Some(0x73) if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

/// A full-feature-phase session: command numbering of its own.
pub struct Session {
    pub stream: TcpStream,
    cmdsn: u32,
    exp_statsn: u32,
    itt: u32,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Session {
    /// `stream` is a connection just logged in by `iscsi_login::login`
    /// (whose first command takes CmdSN 1).
    pub fn new(stream: TcpStream) -> Session {
        Session {
            stream,
            cmdsn: 1,
            exp_statsn: 0,
            itt: 0x10_0000,
        }
    }

    /// The CmdSN the next non-immediate PDU takes (and count it).
    pub fn take_cmdsn(&mut self) -> u32 {
        let sn = self.cmdsn;
        self.cmdsn = self.cmdsn.wrapping_add(1);
        sn
    }

    /// The CmdSN the next non-immediate PDU would take.
    pub fn cmdsn(&self) -> u32 {
        self.cmdsn
    }

    /// A fresh initiator task tag.
    pub fn take_itt(&mut self) -> u32 {
        let itt = self.itt;
        self.itt = self.itt.wrapping_add(1);
        itt
    }

    /// Send one PDU as it is (data padded), with ExpStatSN filled in.
    pub fn send_raw(&mut self, mut bhs: [u8; 48], data: &[u8]) -> io::Result<()> {
        bhs[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        let mut pdu = bhs.to_vec();
        pdu.extend_from_slice(data);
        pdu.resize(48 + data.len().div_ceil(4) * 4, 0);
        self.stream.write_all(&pdu)
    }

    /// Read one PDU (BHS, data segment); StatSN bookkeeping done.
    pub fn recv_raw(&mut self) -> io::Result<([u8; 48], Vec<u8>)> {
        let (bhs, data) = self.read_pdu()?;
        // Responses that carry StatSN: SCSI Response, TMF/Text/Logout
        // Response, Data-In with S, NOP-In with a real ITT.
        let op = bhs[0] & 0x3f;
        let has_statsn = matches!(op, 0x21 | 0x22 | 0x24 | 0x26)
            || (op == 0x25 && bhs[1] & 0x01 != 0)
            || (op == 0x20 && bhs[16..20] != [0xff; 4]);
        if has_statsn {
            self.exp_statsn = u32::from_be_bytes(bhs[24..28].try_into().unwrap()).wrapping_add(1);
        }
        Ok((bhs, data))
    }

    fn read_pdu(&mut self) -> io::Result<([u8; 48], Vec<u8>)> {
        let mut bhs = [0u8; 48];
        self.stream.read_exact(&mut bhs)?;
        let ahs = bhs[4] as usize * 4;
        let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut rest = vec![0u8; ahs + len.div_ceil(4) * 4];
        self.stream.read_exact(&mut rest)?;
        Ok((bhs, rest[ahs..ahs + len].to_vec()))
    }

    /// Send `cdb` to `lun`; `data_out` goes as immediate data, `read_len`
    /// is the expected Data-In length.
    pub fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        data_out: &[u8],
        read_len: u32,
    ) -> io::Result<ScsiResult> {
        let itt = self.itt;
        self.itt = self.itt.wrapping_add(1);
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = 0x80 | 0x01; // F, SIMPLE
        if read_len > 0 {
            b[1] |= 0x40;
        }
        if !data_out.is_empty() {
            b[1] |= 0x20;
        }
        let dl = data_out.len() as u32;
        b[5..8].copy_from_slice(&dl.to_be_bytes()[1..]);
        let lun_raw: [u8; 8] = if lun < 256 {
            [0, lun as u8, 0, 0, 0, 0, 0, 0]
        } else {
            [
                0x40 | ((lun >> 8) as u8 & 0x3f),
                lun as u8,
                0,
                0,
                0,
                0,
                0,
                0,
            ]
        };
        b[8..16].copy_from_slice(&lun_raw);
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&read_len.max(dl).to_be_bytes());
        b[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
        b[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        b[32..32 + cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        self.cmdsn = self.cmdsn.wrapping_add(1);
        let mut pdu = b.to_vec();
        pdu.extend_from_slice(data_out);
        pdu.resize(48 + data_out.len().div_ceil(4) * 4, 0);
        self.stream.write_all(&pdu)?;

        let mut data = Vec::new();
        loop {
            let (bhs, seg) = self.read_pdu()?;
            match bhs[0] & 0x3f {
                0x20 => {
                    // NOP-In: answer a ping that asks for it.
                    let ttt = u32::from_be_bytes(bhs[20..24].try_into().unwrap());
                    if ttt != u32::MAX {
                        let mut n = [0u8; 48];
                        n[0] = 0x40;
                        n[1] = 0x80;
                        n[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
                        n[20..24].copy_from_slice(&ttt.to_be_bytes());
                        n[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
                        n[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
                        self.stream.write_all(&n)?;
                    }
                }
                0x25 => {
                    // Data-In, status in the last one when S is set.
                    data.extend_from_slice(&seg);
                    if bhs[1] & 0x01 != 0 {
                        self.exp_statsn =
                            u32::from_be_bytes(bhs[24..28].try_into().unwrap()).wrapping_add(1);
                        return Ok(ScsiResult {
                            status: bhs[3],
                            sense: Vec::new(),
                            data,
                        });
                    }
                }
                0x21 => {
                    self.exp_statsn =
                        u32::from_be_bytes(bhs[24..28].try_into().unwrap()).wrapping_add(1);
                    if bhs[2] != 0 {
                        return Err(invalid(format!("iSCSI response {:#x}", bhs[2])));
                    }
                    let sense = if seg.len() >= 2 {
                        let n = u16::from_be_bytes([seg[0], seg[1]]) as usize;
                        seg[2..(2 + n).min(seg.len())].to_vec()
                    } else {
                        Vec::new()
                    };
                    return Ok(ScsiResult {
                        status: bhs[3],
                        sense,
                        data,
                    });
                }
                0x3f => return Err(invalid("Reject")),
                op => return Err(invalid(format!("unexpected opcode {op:#04x}"))),
            }
        }
    }

    /// TEST UNIT READY until it answers GOOD (unit attentions cleared);
    /// returns the sense codes it reported on the way.
    pub fn clear_unit_attentions(&mut self, lun: u64) -> Vec<(u8, u8, u8)> {
        let mut seen = Vec::new();
        for _ in 0..16 {
            let r = self.command(lun, &[0; 6], &[], 0).expect("TEST UNIT READY");
            if r.status == 0 {
                return seen;
            }
            seen.extend(r.sense_code());
        }
        panic!("unit attentions never clear on LUN {lun}: {seen:x?}");
    }

    /// REPORT LUNS: the LUN numbers (flat/peripheral addressing).
    pub fn report_luns(&mut self) -> Vec<u64> {
        let r = self
            .command(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0], &[], 4096)
            .expect("REPORT LUNS");
        assert_eq!(r.status, 0, "REPORT LUNS: {r:?}");
        r.data[8..]
            .chunks(8)
            .map(|c| (((c[0] & 0x3f) as u64) << 8) | c[1] as u64)
            .collect()
    }

    /// READ CAPACITY(16): the LU's last LBA.
    pub fn last_lba(&mut self, lun: u64) -> u64 {
        let r = self
            .command(
                lun,
                &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                &[],
                32,
            )
            .expect("READ CAPACITY(16)");
        assert_eq!(r.status, 0, "READ CAPACITY(16): {r:?}");
        u64::from_be_bytes(r.data[0..8].try_into().unwrap())
    }

    /// The NAA designator of the LU at `lun` (VPD page 83h).
    pub fn naa(&mut self, lun: u64) -> Vec<u8> {
        let r = self
            .command(lun, &[0x12, 1, 0x83, 1, 0, 0], &[], 256)
            .expect("INQUIRY VPD 83h");
        assert_eq!(r.status, 0, "INQUIRY 83h: {r:?}");
        let mut i = 4;
        while i + 4 <= r.data.len() {
            let (ty, len) = (r.data[i + 1] & 0x0f, r.data[i + 3] as usize);
            let assoc = (r.data[i + 1] >> 4) & 0x03;
            if ty == 3 && assoc == 0 {
                return r.data[i + 4..i + 4 + len].to_vec();
            }
            i += 4 + len;
        }
        panic!("no NAA designator in {:02x?}", r.data);
    }
}
