//! The data path on several cores, verified block by block.
//!
//! The real daemon runs with several worker threads (`--threads`) and
//! serves one LUN: a RAM disk in one test, a fileio file in the other.
//! Sixteen sessions run at once, each from its own thread, with its own
//! initiator name, ISID and LBA region of the LUN, and 4 to 8 commands in
//! flight (distinct ITTs, within the CmdSN window the target announces).
//! Each does a fixed, seeded sequence of WRITE(10/16) (some FUA) and
//! READ(10/16) of 512 bytes to 256 KiB. Sessions negotiate different
//! operational keys so that write data comes every way RFC 7143 allows:
//! all immediate, immediate plus unsolicited Data-Out, Data-Out answering
//! R2Ts (several per command, MaxBurstLength 64 KiB) after a little or no
//! immediate data; Data-In comes in 8 KiB to 256 KiB PDUs.
//!
//! Every block written encodes (session, LBA, generation), the generation
//! counting the session's writes, so a block read back that is stale (an
//! older generation), misplaced (another LBA) or someone else's is told
//! apart. A command that overlaps one in flight waits for it, so each
//! session's model of its region is exact: every READ is compared with it.
//! Then each session reads its whole region back; after all writers have
//! logged out, sixteen new sessions each read a neighbour's region at
//! once, and one fresh session reads the whole LUN (the gaps between and
//! around the regions must still be zeros).
//!
//! fileio: the daemon is stopped with SIGTERM (exit 0), the image file is
//! checked directly, the daemon is started again on the same file, the
//! whole LUN is read back, and a second round of writers overwrites the
//! regions (newer generations) before everything is verified again.
//!
//! Every status must be GOOD without residuals, every PDU where the
//! protocol puts it (DataSN, buffer offsets, R2TSN, segment lengths), and
//! the counts of commands, R2Ts, Data-Out and blocks verified add up.
//! Nothing waits more than 20 s for the target: a hang is a failure.

mod common;

use common::iscsi_login::login_with_keys;
use common::Daemon;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-11.org.rtgt:multicore";
const BS: usize = 512;
const SESSIONS: u32 = 16;
/// Each session's region: 2 MiB.
const REGION_BLOCKS: u64 = 4096;
/// Blocks before the first region (and after the last) nobody writes.
const GAP_BLOCKS: u64 = 2048;
const LUN_BLOCKS: u64 = 2 * GAP_BLOCKS + SESSIONS as u64 * REGION_BLOCKS;
const LUN_MIB: u64 = (LUN_BLOCKS * BS as u64) >> 20;
const _: () = assert!((LUN_BLOCKS * BS as u64).is_multiple_of(1 << 20));
/// READ/WRITE commands per session and round (before the region scan).
const OPS: usize = 400;
/// The largest transfer: 256 KiB.
const MAX_BLOCKS: u64 = 512;
/// The longest the target may stay silent with commands in flight.
const STALL: Duration = Duration::from_secs(20);
const MAGIC: u32 = 0x4d43_4f52; // "MCOR"
const RESERVED: u32 = u32::MAX;

// ------------------------------------------------------------ session profiles

/// Operational keys a session offers (the target's own proposals for the
/// rest are accepted as they are).
struct Profile {
    name: &'static str,
    keys: &'static [(&'static str, &'static str)],
}

const PROFILES: [Profile; 4] = [
    Profile {
        name: "target's proposals: InitialR2T=No, FirstBurstLength 256K",
        keys: &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    },
    Profile {
        name: "InitialR2T=No, FirstBurstLength 64K, MaxBurstLength 128K",
        keys: &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "131072"),
            ("FirstBurstLength", "65536"),
        ],
    },
    Profile {
        name: "InitialR2T=Yes, FirstBurstLength 16K",
        keys: &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "32768"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "Yes"),
            ("FirstBurstLength", "16384"),
        ],
    },
    Profile {
        name: "R2T only: ImmediateData=No, MaxBurstLength 64K, MaxOutstandingR2T 2, \
               MaxRecvDataSegmentLength 8K",
        keys: &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "8192"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "65536"),
            ("MaxOutstandingR2T", "2"),
        ],
    },
];

/// What the login settled.
#[derive(Debug, Clone, Copy)]
struct Params {
    initial_r2t: bool,
    immediate_data: bool,
    first_burst: usize,
    max_burst: usize,
    /// The most the target takes in one data segment.
    target_mrdsl: usize,
    /// The most we take in one data segment.
    our_mrdsl: usize,
}

fn negotiated(ours: &[(&str, &str)], theirs: &[(String, String)]) -> Result<Params, String> {
    let theirs_of = |k: &str| {
        theirs
            .iter()
            .rev()
            .find(|(key, v)| key == k && !["Irrelevant", "NotUnderstood", "Reject"].contains(&&**v))
            .map(|(_, v)| v.clone())
    };
    let ours_of = |k: &str| {
        ours.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    // A session key: the target's answer or proposal, else what we sent,
    // else the RFC 7143 default.
    let key = |k: &str, default: &str| {
        theirs_of(k)
            .or_else(|| ours_of(k))
            .unwrap_or_else(|| default.to_string())
    };
    let num = |k: &str, v: String| {
        v.parse::<usize>()
            .map_err(|_| format!("negotiated {k}={v} is not a number"))
    };
    let yes = |k: &str, v: String| match v.as_str() {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(format!("negotiated {k}={v}")),
    };
    Ok(Params {
        initial_r2t: yes("InitialR2T", key("InitialR2T", "Yes"))?,
        immediate_data: yes("ImmediateData", key("ImmediateData", "Yes"))?,
        first_burst: num("FirstBurstLength", key("FirstBurstLength", "65536"))?,
        max_burst: num("MaxBurstLength", key("MaxBurstLength", "262144"))?,
        target_mrdsl: num(
            "MaxRecvDataSegmentLength",
            theirs_of("MaxRecvDataSegmentLength").unwrap_or_else(|| "8192".into()),
        )?,
        our_mrdsl: num(
            "MaxRecvDataSegmentLength",
            ours_of("MaxRecvDataSegmentLength").unwrap_or_else(|| "8192".into()),
        )?,
    })
}

// ------------------------------------------------------------ statistics

#[derive(Default)]
struct Stats {
    logins: AtomicU64,
    logouts: AtomicU64,
    turs: AtomicU64,
    unit_attentions: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    cdb16: AtomicU64,
    fua: AtomicU64,
    /// READ/WRITE answered GOOD.
    good: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// Writes with some immediate data / with all of it.
    immediate_writes: AtomicU64,
    all_immediate_writes: AtomicU64,
    unsolicited_data_outs: AtomicU64,
    r2ts: AtomicU64,
    /// Writes that needed more than one R2T.
    multi_r2t_writes: AtomicU64,
    solicited_data_outs: AtomicU64,
    data_ins: AtomicU64,
    /// Reads whose data came in more than one Data-In.
    multi_data_in_reads: AtomicU64,
    blocks_verified: AtomicU64,
    /// Most commands one session had in flight.
    peak_in_flight: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

// ------------------------------------------------------------ data

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Block `lba` as session `owner` writes it in generation `gen`;
/// generation 0 is a block never written: zeros.
fn fill_block(buf: &mut [u8], owner: u32, lba: u64, gen: u64) {
    if gen == 0 {
        buf.fill(0);
        return;
    }
    buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    buf[4..8].copy_from_slice(&owner.to_be_bytes());
    buf[8..16].copy_from_slice(&lba.to_be_bytes());
    buf[16..24].copy_from_slice(&gen.to_be_bytes());
    let mut x = (lba ^ gen.rotate_left(40) ^ (u64::from(owner) << 20)) | 1;
    for c in buf[24..].chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

fn pattern(owner: u32, lba: u64, blocks: u64, gen: u64) -> Vec<u8> {
    let mut data = vec![0u8; blocks as usize * BS];
    for (i, b) in data.chunks_mut(BS).enumerate() {
        fill_block(b, owner, lba + i as u64, gen);
    }
    data
}

/// What a block read back holds, in words.
fn describe(got: &[u8], lba: u64, owner: u32, gen: u64) -> String {
    if got.iter().all(|&b| b == 0) {
        return "zeros".into();
    }
    let garbage = || format!("garbage starting {:02x?}", &got[..24]);
    if got[0..4] != MAGIC.to_be_bytes() {
        return garbage();
    }
    let s = u32::from_be_bytes(got[4..8].try_into().unwrap());
    let l = u64::from_be_bytes(got[8..16].try_into().unwrap());
    let g = u64::from_be_bytes(got[16..24].try_into().unwrap());
    let mut want = [0u8; BS];
    fill_block(&mut want, s, l, g);
    if g == 0 || want[..] != got[..] {
        return format!("a damaged block claiming session {s} LBA {l} generation {g}");
    }
    let what = if s != owner {
        "another session's block"
    } else if l != lba {
        "misplaced"
    } else if g < gen {
        "stale: an older generation"
    } else {
        "a generation not yet written"
    };
    format!("session {s} LBA {l} generation {g} ({what})")
}

/// Where session `id`'s region starts.
fn region_base(id: u32) -> u64 {
    GAP_BLOCKS + u64::from(id) * REGION_BLOCKS
}

/// What block `lba` must hold, given every session's model:
/// (owner, generation); generation 0: zeros.
fn expected(models: &[Vec<u64>], lba: u64) -> (u32, u64) {
    if lba >= GAP_BLOCKS {
        let s = (lba - GAP_BLOCKS) / REGION_BLOCKS;
        if s < u64::from(SESSIONS) {
            return (
                s as u32,
                models[s as usize][((lba - GAP_BLOCKS) % REGION_BLOCKS) as usize],
            );
        }
    }
    (0, 0)
}

/// Compare `data` (read at `lba`) with what `want` says; an error message
/// naming the first differing blocks, or None.
fn check_blocks(
    what: &str,
    lba: u64,
    data: &[u8],
    want: &dyn Fn(u64) -> (u32, u64),
    stats: &Stats,
) -> Option<String> {
    let mut buf = [0u8; BS];
    let mut bad = 0;
    let mut first = Vec::new();
    let blocks = data.len() / BS;
    for (i, got) in data.chunks(BS).enumerate() {
        let abs = lba + i as u64;
        let (owner, gen) = want(abs);
        fill_block(&mut buf, owner, abs, gen);
        if got != buf {
            bad += 1;
            if first.len() < 4 {
                let w = if gen == 0 {
                    "zeros (never written)".to_string()
                } else {
                    format!("session {owner} generation {gen}")
                };
                first.push(format!(
                    "LBA {abs}: want {w}, got {}",
                    describe(got, abs, owner, gen)
                ));
            }
        }
    }
    add(&stats.blocks_verified, (blocks - bad) as u64);
    (bad > 0).then(|| {
        format!(
            "DATA MISMATCH {what}: {bad} of {blocks} blocks differ; {}",
            first.join("; ")
        )
    })
}

// ------------------------------------------------------------ commands

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Tur,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    lba: u64,
    blocks: u64,
    cdb16: bool,
    fua: bool,
    /// Write: the generation written (the owner is the writing session).
    gen: u64,
    /// Write: immediate data as much as allowed (0), none (1), half (2).
    imm: u8,
    /// Write: Data-Out segment size (at most the target's limit).
    seg: usize,
}

impl Op {
    fn read(lba: u64, blocks: u64, cdb16: bool) -> Op {
        Op {
            kind: Kind::Read,
            lba,
            blocks,
            cdb16,
            fua: false,
            gen: 0,
            imm: 0,
            seg: 0,
        }
    }

    fn bytes(&self) -> usize {
        match self.kind {
            Kind::Tur => 0,
            _ => self.blocks as usize * BS,
        }
    }

    /// Must not be in flight together with `o` (so the model stays exact).
    fn conflicts(&self, o: &Op) -> bool {
        (self.kind == Kind::Write || o.kind == Kind::Write)
            && self.kind != Kind::Tur
            && o.kind != Kind::Tur
            && self.lba < o.lba + o.blocks
            && o.lba < self.lba + self.blocks
    }

    fn cdb(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        let write = self.kind == Kind::Write;
        match (self.kind, self.cdb16) {
            (Kind::Tur, _) => {}
            (_, true) => {
                c[0] = if write { 0x8a } else { 0x88 };
                c[2..10].copy_from_slice(&self.lba.to_be_bytes());
                c[10..14].copy_from_slice(&(self.blocks as u32).to_be_bytes());
            }
            (_, false) => {
                c[0] = if write { 0x2a } else { 0x28 };
                c[2..6].copy_from_slice(&(self.lba as u32).to_be_bytes());
                c[7..9].copy_from_slice(&(self.blocks as u16).to_be_bytes());
            }
        }
        if self.fua {
            c[1] |= 0x08;
        }
        c
    }

    fn name(&self) -> String {
        let n = if self.cdb16 { 16 } else { 10 };
        match self.kind {
            Kind::Tur => "TEST UNIT READY".into(),
            Kind::Read => format!("READ({n}) LBA {} x{}", self.lba, self.blocks),
            Kind::Write => format!(
                "WRITE({n}){} LBA {} x{} generation {}",
                if self.fua { " FUA" } else { "" },
                self.lba,
                self.blocks,
                self.gen
            ),
        }
    }
}

/// The seeded READ/WRITE sequence of session `id` in `round`; write
/// generations continue from `gen`.
fn workload(id: u32, round: u32, gen: &mut u64) -> Vec<Op> {
    let mut rng = Rng::new(0x6d63_0000 ^ (u64::from(id) << 8) ^ u64::from(round));
    let base = region_base(id);
    (0..OPS)
        .map(|_| {
            let write = rng.below(100) < 55;
            let blocks = match rng.below(10) {
                0 | 1 => 1,
                2..=4 => 2 + rng.below(15),
                5..=7 => 17 + rng.below(112),
                _ => 129 + rng.below(MAX_BLOCKS - 128),
            };
            let lba = base + rng.below(REGION_BLOCKS - blocks + 1);
            let cdb16 = rng.chance(2);
            if !write {
                return Op::read(lba, blocks, cdb16);
            }
            *gen += 1;
            Op {
                kind: Kind::Write,
                lba,
                blocks,
                cdb16,
                fua: rng.chance(8),
                gen: *gen,
                imm: rng.below(3) as u8,
                seg: [4096, 8192, 65536, 262_144][rng.below(4) as usize],
            }
        })
        .collect()
}

/// Reads covering `blocks` blocks from `lba`, in varied sizes.
fn scan_ops(lba: u64, blocks: u64, seed: u64) -> Vec<Op> {
    const SIZES: [u64; 7] = [512, 7, 128, 1, 300, 64, 33];
    let mut ops = Vec::new();
    let mut pos = 0;
    let mut i = seed as usize;
    while pos < blocks {
        let n = SIZES[i % SIZES.len()].min(blocks - pos);
        ops.push(Op::read(lba + pos, n, i.is_multiple_of(2)));
        pos += n;
        i += 1;
    }
    ops
}

// ------------------------------------------------------------ connection

struct Pdu {
    bhs: [u8; 48],
    data: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Serial-number a < b (RFC 1982, 32 bits).
fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

fn read_pdu(s: &mut TcpStream) -> io::Result<Pdu> {
    let mut bhs = [0u8; 48];
    s.read_exact(&mut bhs)?;
    let ahs = bhs[4] as usize * 4;
    let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    if len > 16 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("data segment of {len} bytes"),
        ));
    }
    let mut rest = vec![0u8; ahs + len.div_ceil(4) * 4];
    s.read_exact(&mut rest)?;
    rest.truncate(ahs + len);
    rest.drain(..ahs);
    Ok(Pdu { bhs, data: rest })
}

/// A command in flight.
struct Flight {
    op: Op,
    cmdsn: u32,
    sent: Instant,
    /// Write: its data (R2Ts are answered from it); read: the Data-In buffer.
    data: Vec<u8>,
    /// Read: bytes and PDUs received (DataSN expected next).
    received: usize,
    data_ins: u32,
    /// Write: where the next R2T must start, and its R2TSN.
    next_r2t_offset: usize,
    r2ts: u32,
}

/// How a command ended.
struct Done {
    op: Op,
    itt: u32,
    cmdsn: u32,
    status: u8,
    /// The U and O bits (residual underflow / overflow).
    residual: u8,
    sense: Vec<u8>,
    data: Vec<u8>,
    received: usize,
}

impl Done {
    /// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
    fn sense_code(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first().map(|b| b & 0x7f) {
            Some(0x70) | Some(0x71) if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            Some(0x72) | Some(0x73) if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

/// A session's one connection: commands are written from the session's
/// thread, a reader thread hands over every PDU the target sends (so the
/// target never waits for us while we write).
struct Conn {
    who: String,
    stream: TcpStream,
    rx: Receiver<io::Result<Pdu>>,
    reader: Option<JoinHandle<()>>,
    p: Params,
    cmdsn: u32,
    exp_statsn: u32,
    max_cmdsn: u32,
    itt: u32,
    out: HashMap<u32, Flight>,
    logout_response: Option<u8>,
    stats: Arc<Stats>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Conn {
    /// Log in as `initiator` with `isid` and `profile`'s keys, then clear
    /// the unit attention a new I_T nexus starts with.
    fn open(
        port: u16,
        who: String,
        initiator: &str,
        isid: [u8; 6],
        profile: &Profile,
        stats: Arc<Stats>,
    ) -> Result<Conn, String> {
        let (stream, theirs) = login_with_keys(port, initiator, IQN, isid, profile.keys)
            .map_err(|e| format!("{who}: login: {e}"))?;
        let p = negotiated(profile.keys, &theirs).map_err(|e| format!("{who}: {e}"))?;
        let after = |e: io::Error| format!("{who}: after login: {e}");
        stream.set_read_timeout(None).map_err(after)?;
        stream.set_write_timeout(Some(STALL)).map_err(after)?;
        let mut rd = stream.try_clone().map_err(after)?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || loop {
            let r = read_pdu(&mut rd);
            let end = r.is_err();
            if tx.send(r).is_err() || end {
                return;
            }
        });
        add(&stats.logins, 1);
        let mut c = Conn {
            who,
            stream,
            rx,
            reader: Some(reader),
            p,
            cmdsn: 1,
            exp_statsn: 0,
            // Until a response announces the window, one command at a time.
            max_cmdsn: 1,
            itt: 0x10,
            out: HashMap::new(),
            logout_response: None,
            stats,
        };
        c.clear_unit_attentions()?;
        Ok(c)
    }

    fn send(&mut self, mut bhs: [u8; 48], data: &[u8]) -> Result<(), String> {
        bhs[4] = 0;
        bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        bhs[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        let mut pdu = Vec::with_capacity(48 + data.len() + 3);
        pdu.extend_from_slice(&bhs);
        pdu.extend_from_slice(data);
        pdu.resize(48 + data.len().div_ceil(4) * 4, 0);
        self.stream
            .write_all(&pdu)
            .map_err(|e| format!("{}: sending: {e}; {}", self.who, self.in_flight()))
    }

    fn take_itt(&mut self) -> u32 {
        let itt = self.itt;
        self.itt = self.itt.wrapping_add(1);
        if self.itt == RESERVED {
            self.itt = 0x10;
        }
        itt
    }

    /// May a command with the next CmdSN go now?
    fn window_open(&self) -> bool {
        !sn_lt(self.max_cmdsn, self.cmdsn)
    }

    fn in_flight(&self) -> String {
        let mut v: Vec<_> = self.out.iter().collect();
        v.sort_by_key(|(_, f)| f.cmdsn);
        let list: Vec<String> = v
            .iter()
            .map(|(itt, f)| {
                format!(
                    "{} (ITT {itt:#x}, CmdSN {}, {:.1}s ago, {} bytes in, {} R2Ts)",
                    f.op.name(),
                    f.cmdsn,
                    f.sent.elapsed().as_secs_f64(),
                    f.received,
                    f.r2ts
                )
            })
            .collect();
        format!(
            "{} in flight [{}], CmdSN {} MaxCmdSN {} ExpStatSN {}",
            list.len(),
            list.join(", "),
            self.cmdsn,
            self.max_cmdsn,
            self.exp_statsn
        )
    }

    /// Send `op`; a write sends `data` as immediate data and unsolicited
    /// Data-Out as far as the session's keys allow and `op` chooses, the
    /// rest when the target asks for it (R2T).
    fn submit(&mut self, op: Op, data: Vec<u8>) -> Result<u32, String> {
        let itt = self.take_itt();
        let sn = self.cmdsn;
        self.cmdsn = sn.wrapping_add(1);
        let total = op.bytes();
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = 0x01; // SIMPLE
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&(total as u32).to_be_bytes());
        b[24..28].copy_from_slice(&sn.to_be_bytes());
        b[32..48].copy_from_slice(&op.cdb());
        let st = self.stats.clone();
        let mut flight = Flight {
            op,
            cmdsn: sn,
            sent: Instant::now(),
            data: Vec::new(),
            received: 0,
            data_ins: 0,
            next_r2t_offset: 0,
            r2ts: 0,
        };
        match op.kind {
            Kind::Tur => {
                b[1] |= 0x80;
                self.send(b, &[])?;
                add(&st.turs, 1);
            }
            Kind::Read => {
                b[1] |= 0x80 | 0x40;
                self.send(b, &[])?;
                flight.data = vec![0; total];
                add(&st.reads, 1);
            }
            Kind::Write => {
                assert_eq!(data.len(), total);
                b[1] |= 0x20;
                let p = self.p;
                // Unsolicited data: immediate (up to FirstBurstLength and
                // the target's segment size) and, with InitialR2T=No,
                // Data-Out up to min(FirstBurstLength, length).
                let imm_max = if p.immediate_data {
                    total.min(p.first_burst).min(p.target_mrdsl)
                } else {
                    0
                };
                let imm = match op.imm {
                    0 => imm_max,
                    1 => 0,
                    _ => imm_max / 2 / BS * BS,
                };
                let unsolicited_end = if p.initial_r2t {
                    imm
                } else {
                    p.first_burst.min(total).max(imm)
                };
                if unsolicited_end == imm {
                    b[1] |= 0x80; // no unsolicited Data-Out follows
                }
                self.send(b, &data[..imm])?;
                if imm > 0 {
                    add(&st.immediate_writes, 1);
                }
                if imm == total {
                    add(&st.all_immediate_writes, 1);
                }
                let n = self.send_data_out(itt, RESERVED, imm, unsolicited_end, op.seg, &data)?;
                add(&st.unsolicited_data_outs, n);
                flight.next_r2t_offset = unsolicited_end;
                flight.data = data;
                add(&st.writes, 1);
                add(&st.bytes_written, total as u64);
                if op.fua {
                    add(&st.fua, 1);
                }
            }
        }
        if op.cdb16 && op.kind != Kind::Tur {
            add(&st.cdb16, 1);
        }
        self.out.insert(itt, flight);
        st.peak_in_flight.fetch_max(self.out.len() as u64, Relaxed);
        Ok(itt)
    }

    /// Data-Out PDUs for bytes `from..to` of `data`; returns how many.
    fn send_data_out(
        &mut self,
        itt: u32,
        ttt: u32,
        from: usize,
        to: usize,
        seg: usize,
        data: &[u8],
    ) -> Result<u64, String> {
        let seg = seg.min(self.p.target_mrdsl).max(BS);
        let mut pos = from;
        let mut datasn = 0u32;
        while pos < to {
            let n = (to - pos).min(seg);
            let mut b = [0u8; 48];
            b[0] = 0x05;
            if pos + n == to {
                b[1] = 0x80;
            }
            b[16..20].copy_from_slice(&itt.to_be_bytes());
            b[20..24].copy_from_slice(&ttt.to_be_bytes());
            b[36..40].copy_from_slice(&datasn.to_be_bytes());
            b[40..44].copy_from_slice(&(pos as u32).to_be_bytes());
            self.send(b, &data[pos..pos + n])?;
            pos += n;
            datasn += 1;
        }
        Ok(u64::from(datasn))
    }

    /// Bookkeeping every target PDU implies: ExpStatSN, MaxCmdSN.
    fn note(&mut self, p: &Pdu) {
        let op = p.bhs[0] & 0x3f;
        let has_statsn = matches!(op, 0x21 | 0x22 | 0x24 | 0x26 | 0x32 | 0x3f)
            || (op == 0x25 && p.bhs[1] & 0x01 != 0)
            || (op == 0x20 && be32(&p.bhs, 16) != RESERVED);
        if has_statsn {
            self.exp_statsn = be32(&p.bhs, 24).wrapping_add(1);
        }
        let max = be32(&p.bhs, 32);
        if sn_lt(self.max_cmdsn, max) {
            self.max_cmdsn = max;
        }
    }

    /// Wait for one PDU and handle it; a command that ended is returned.
    fn pump(&mut self) -> Result<Option<Done>, String> {
        let p = match self.rx.recv_timeout(STALL) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return Err(format!(
                    "{}: connection lost: {e}; {}",
                    self.who,
                    self.in_flight()
                ))
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "{}: HANG: nothing from the target for {STALL:?}; {}",
                    self.who,
                    self.in_flight()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("{}: reader ended; {}", self.who, self.in_flight()))
            }
        };
        self.note(&p);
        self.handle(p)
    }

    /// Wait until a command ends.
    fn wait(&mut self) -> Result<Done, String> {
        loop {
            if let Some(d) = self.pump()? {
                return Ok(d);
            }
        }
    }

    fn handle(&mut self, p: Pdu) -> Result<Option<Done>, String> {
        let who = self.who.clone();
        let itt = be32(&p.bhs, 16);
        let st = self.stats.clone();
        match p.bhs[0] & 0x3f {
            0x25 => {
                // Data-In
                let our_mrdsl = self.p.our_mrdsl;
                let Some(f) = self.out.get_mut(&itt) else {
                    return Err(format!("{who}: Data-In for ITT {itt:#x}, not in flight"));
                };
                let name = f.op.name();
                if f.op.kind != Kind::Read {
                    return Err(format!("{who}: Data-In for {name} (ITT {itt:#x})"));
                }
                let datasn = be32(&p.bhs, 36);
                let off = be32(&p.bhs, 40) as usize;
                let len = p.data.len();
                if datasn != f.data_ins {
                    return Err(format!(
                        "{who}: {name} (ITT {itt:#x}): Data-In DataSN {datasn}, expected {}",
                        f.data_ins
                    ));
                }
                if off != f.received {
                    return Err(format!(
                        "{who}: {name} (ITT {itt:#x}): Data-In at offset {off}, expected {} \
                         (DataPDUInOrder=Yes)",
                        f.received
                    ));
                }
                if len > our_mrdsl {
                    return Err(format!(
                        "{who}: {name} (ITT {itt:#x}): Data-In segment of {len} bytes, \
                         our MaxRecvDataSegmentLength is {our_mrdsl}"
                    ));
                }
                if off + len > f.data.len() {
                    return Err(format!(
                        "{who}: {name} (ITT {itt:#x}): Data-In {off}+{len} past the \
                         transfer length {}",
                        f.data.len()
                    ));
                }
                f.data[off..off + len].copy_from_slice(&p.data);
                f.received += len;
                f.data_ins += 1;
                add(&st.data_ins, 1);
                if p.bhs[1] & 0x01 != 0 {
                    // S: the status is here.
                    let f = self.out.remove(&itt).unwrap();
                    if f.data_ins > 1 {
                        add(&st.multi_data_in_reads, 1);
                    }
                    return Ok(Some(Done {
                        op: f.op,
                        itt,
                        cmdsn: f.cmdsn,
                        status: p.bhs[3],
                        residual: p.bhs[1] & 0x06,
                        sense: Vec::new(),
                        data: f.data,
                        received: f.received,
                    }));
                }
            }
            0x21 => {
                // SCSI Response
                let Some(f) = self.out.remove(&itt) else {
                    return Err(format!(
                        "{who}: SCSI Response for ITT {itt:#x}, not in flight"
                    ));
                };
                if p.bhs[2] != 0 {
                    return Err(format!(
                        "{who}: {} (ITT {itt:#x}): iSCSI response {:#x}",
                        f.op.name(),
                        p.bhs[2]
                    ));
                }
                if f.data_ins > 1 {
                    add(&st.multi_data_in_reads, 1);
                }
                let sense = if p.data.len() >= 2 {
                    let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                    p.data[2..(2 + n).min(p.data.len())].to_vec()
                } else {
                    Vec::new()
                };
                return Ok(Some(Done {
                    op: f.op,
                    itt,
                    cmdsn: f.cmdsn,
                    status: p.bhs[3],
                    residual: p.bhs[1] & 0x06,
                    sense,
                    data: f.data,
                    received: f.received,
                }));
            }
            0x31 => {
                // R2T: send what it asks for.
                let max_burst = self.p.max_burst;
                let Some(f) = self.out.get_mut(&itt) else {
                    return Err(format!("{who}: R2T for ITT {itt:#x}, not in flight"));
                };
                let name = f.op.name();
                let ttt = be32(&p.bhs, 20);
                let r2tsn = be32(&p.bhs, 36);
                let off = be32(&p.bhs, 40) as usize;
                let len = be32(&p.bhs, 44) as usize;
                let total = f.data.len();
                let bad = if f.op.kind != Kind::Write {
                    Some("not a write".to_string())
                } else if r2tsn != f.r2ts {
                    Some(format!("R2TSN {r2tsn}, expected {}", f.r2ts))
                } else if off != f.next_r2t_offset {
                    Some(format!(
                        "offset {off}, expected {} (DataSequenceInOrder=Yes)",
                        f.next_r2t_offset
                    ))
                } else if len == 0 || len > max_burst || off + len > total {
                    Some(format!(
                        "length {len} at {off} (MaxBurstLength {max_burst}, transfer {total})"
                    ))
                } else if ttt == RESERVED {
                    Some("TTT ffffffff".to_string())
                } else {
                    None
                };
                if let Some(why) = bad {
                    return Err(format!("{who}: {name} (ITT {itt:#x}): bad R2T: {why}"));
                }
                f.r2ts += 1;
                f.next_r2t_offset = off + len;
                if f.r2ts == 2 {
                    add(&st.multi_r2t_writes, 1);
                }
                let seg = f.op.seg;
                let data = std::mem::take(&mut f.data);
                add(&st.r2ts, 1);
                let sent = self.send_data_out(itt, ttt, off, off + len, seg, &data);
                if let Some(f) = self.out.get_mut(&itt) {
                    f.data = data;
                }
                add(&st.solicited_data_outs, sent?);
            }
            0x20 => {
                // NOP-In: answer a ping.
                let ttt = be32(&p.bhs, 20);
                if ttt != RESERVED {
                    let mut n = [0u8; 48];
                    n[0] = 0x40;
                    n[1] = 0x80;
                    n[16..20].copy_from_slice(&RESERVED.to_be_bytes());
                    n[20..24].copy_from_slice(&ttt.to_be_bytes());
                    n[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
                    self.send(n, &p.data)?;
                }
            }
            0x26 => self.logout_response = Some(p.bhs[2]),
            0x32 => {
                return Err(format!(
                    "{who}: Async Message, event {}; {}",
                    p.bhs[36],
                    self.in_flight()
                ))
            }
            0x3f => {
                return Err(format!(
                    "{who}: Reject, reason {:#x}, of {:02x?}",
                    p.bhs[2],
                    &p.data[..p.data.len().min(48)]
                ))
            }
            op => return Err(format!("{who}: unexpected PDU, opcode {op:#04x}")),
        }
        Ok(None)
    }

    /// A command ended: it must be GOOD, without residual, with all its data.
    fn check_good(&self, d: &Done) -> Result<(), String> {
        let what = || {
            format!(
                "{}: {} (ITT {:#x}, CmdSN {})",
                self.who,
                d.op.name(),
                d.itt,
                d.cmdsn
            )
        };
        if d.status != 0 {
            return Err(format!(
                "{} ended with status {:#04x}, sense {:x?} ({:02x?})",
                what(),
                d.status,
                d.sense_code(),
                &d.sense[..d.sense.len().min(18)]
            ));
        }
        if d.residual != 0 {
            return Err(format!(
                "{} GOOD with residual flags {:#x}",
                what(),
                d.residual
            ));
        }
        if d.op.kind == Kind::Read && d.received != d.op.bytes() {
            return Err(format!(
                "{} GOOD with {} bytes of Data-In, want {}",
                what(),
                d.received,
                d.op.bytes()
            ));
        }
        Ok(())
    }

    /// TEST UNIT READY until GOOD (a new nexus has a unit attention).
    fn clear_unit_attentions(&mut self) -> Result<(), String> {
        let tur = Op {
            kind: Kind::Tur,
            ..Op::read(0, 0, false)
        };
        for _ in 0..8 {
            self.submit(tur, Vec::new())?;
            let d = self.wait()?;
            match d.status {
                0 => return Ok(()),
                2 if d.sense_code().map(|s| s.0) == Some(6) => {
                    add(&self.stats.unit_attentions, 1);
                }
                s => {
                    return Err(format!(
                        "{}: TEST UNIT READY: status {s:#x}, sense {:x?}",
                        self.who,
                        d.sense_code()
                    ))
                }
            }
        }
        Err(format!("{}: unit attentions never clear", self.who))
    }

    /// Run `ops` in order, at most `qd` in flight; an op waits while it
    /// conflicts with one in flight. Writes carry the blocks of session
    /// `owner`; `on_done` sees each command that ended GOOD and returns a
    /// data mismatch, collected in `mismatches` (anything else ends the run).
    fn run(
        &mut self,
        ops: &[Op],
        qd: usize,
        owner: u32,
        mismatches: &mut Vec<String>,
        mut on_done: impl FnMut(&Done) -> Option<String>,
    ) -> Result<(), String> {
        let mut next = 0;
        while next < ops.len() || !self.out.is_empty() {
            while next < ops.len() && self.out.len() < qd && self.window_open() {
                let op = ops[next];
                if self.out.values().any(|f| f.op.conflicts(&op)) {
                    break;
                }
                let data = match op.kind {
                    Kind::Write => pattern(owner, op.lba, op.blocks, op.gen),
                    _ => Vec::new(),
                };
                self.submit(op, data)?;
                next += 1;
            }
            if self.out.is_empty() {
                return Err(format!(
                    "{}: the command window is closed with nothing in flight; {}",
                    self.who,
                    self.in_flight()
                ));
            }
            let d = self.wait()?;
            self.check_good(&d)?;
            add(&self.stats.good, 1);
            if d.op.kind == Kind::Read {
                add(&self.stats.bytes_read, d.received as u64);
            }
            if let Some(m) = on_done(&d) {
                eprintln!("{m}");
                mismatches.push(m);
                if mismatches.len() >= 20 {
                    return Err(format!("{}: too many data mismatches", self.who));
                }
            }
        }
        Ok(())
    }

    /// Logout (close the session) and its response.
    fn logout(mut self) -> Result<(), String> {
        if !self.out.is_empty() {
            return Err(format!("{}: logout with {}", self.who, self.in_flight()));
        }
        let itt = self.take_itt();
        let mut b = [0u8; 48];
        b[0] = 0x40 | 0x06; // immediate Logout Request
        b[1] = 0x80; // close the session
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..22].copy_from_slice(&1u16.to_be_bytes()); // CID
        b[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
        self.send(b, &[])?;
        while self.logout_response.is_none() {
            if let Some(d) = self.pump()? {
                return Err(format!(
                    "{}: {} ended while logging out",
                    self.who,
                    d.op.name()
                ));
            }
        }
        match self.logout_response {
            Some(0) => {
                add(&self.stats.logouts, 1);
                Ok(())
            }
            r => Err(format!("{}: Logout Response {r:?}", self.who)),
        }
    }
}

// ------------------------------------------------------------ sessions

/// What one writer session leaves: its region's model and last generation,
/// and the READ/WRITE commands it sent.
struct Written {
    model: Vec<u64>,
    gen: u64,
    commands: u64,
    blocks_read: u64,
}

fn qd_of(id: u32) -> usize {
    4 + id as usize % 5
}

/// Session `id` of `round`: its workload on its region, checking every
/// read against its model, then its whole region read back.
fn writer(
    port: u16,
    stats: Arc<Stats>,
    id: u32,
    round: u32,
    mut model: Vec<u64>,
    mut gen: u64,
) -> Result<Written, String> {
    let profile = &PROFILES[id as usize % PROFILES.len()];
    let qd = qd_of(id);
    let who = format!("writer {id} (round {round}, QD{qd}, {})", profile.name);
    let mut c = Conn::open(
        port,
        who.clone(),
        &format!("iqn.2026-11.org.rtgt:mc-writer-{id:02}"),
        [0x80, 0x4d, 0x43, round as u8, 0, id as u8],
        profile,
        stats.clone(),
    )?;
    // What each profile is there for.
    let p = c.p;
    let wanted = match id as usize % PROFILES.len() {
        0 => !p.initial_r2t && p.immediate_data,
        1 => !p.initial_r2t && p.first_burst == 65536 && p.max_burst == 131_072,
        2 => p.initial_r2t && p.immediate_data && p.first_burst == 16384,
        _ => p.initial_r2t && !p.immediate_data && p.max_burst == 65536,
    };
    if !wanted {
        return Err(format!("{who}: negotiated {p:?}"));
    }
    let ops = workload(id, round, &mut gen);
    let base = region_base(id);
    let mut mismatches = Vec::new();
    let mut blocks_read = 0;
    c.run(&ops, qd, id, &mut mismatches, |d| match d.op.kind {
        Kind::Write => {
            let from = (d.op.lba - base) as usize;
            model[from..from + d.op.blocks as usize].fill(d.op.gen);
            None
        }
        _ => {
            blocks_read += d.op.blocks;
            let want = |lba: u64| (id, model[(lba - base) as usize]);
            let what = format!(
                "{who}: {} (ITT {:#x}, CmdSN {})",
                d.op.name(),
                d.itt,
                d.cmdsn
            );
            check_blocks(&what, d.op.lba, &d.data, &want, &stats)
        }
    })?;
    // The whole region, as this session left it.
    let scan = scan_ops(base, REGION_BLOCKS, u64::from(id));
    c.run(&scan, qd, id, &mut mismatches, |d| {
        blocks_read += d.op.blocks;
        let want = |lba: u64| (id, model[(lba - base) as usize]);
        let what = format!(
            "{who}: region scan {} (ITT {:#x}, CmdSN {})",
            d.op.name(),
            d.itt,
            d.cmdsn
        );
        check_blocks(&what, d.op.lba, &d.data, &want, &stats)
    })?;
    c.logout()?;
    if !mismatches.is_empty() {
        return Err(mismatches.join("\n"));
    }
    Ok(Written {
        model,
        gen,
        commands: (ops.len() + scan.len()) as u64,
        blocks_read,
    })
}

/// A new session that reads blocks and checks them against every
/// session's model.
struct ReadJob<'a> {
    who: String,
    initiator: String,
    isid: [u8; 6],
    profile: &'static Profile,
    qd: usize,
    lba: u64,
    blocks: u64,
    models: &'a [Vec<u64>],
}

/// Run `job`; returns the READ commands it sent.
fn reader(port: u16, stats: Arc<Stats>, job: ReadJob) -> Result<u64, String> {
    let who = job.who;
    let mut c = Conn::open(
        port,
        who.clone(),
        &job.initiator,
        job.isid,
        job.profile,
        stats.clone(),
    )?;
    let ops = scan_ops(job.lba, job.blocks, job.lba);
    let mut mismatches = Vec::new();
    c.run(&ops, job.qd, 0, &mut mismatches, |d| {
        let want = |l: u64| expected(job.models, l);
        let what = format!(
            "{who}: {} (ITT {:#x}, CmdSN {})",
            d.op.name(),
            d.itt,
            d.cmdsn
        );
        check_blocks(&what, d.op.lba, &d.data, &want, &stats)
    })?;
    c.logout()?;
    if !mismatches.is_empty() {
        return Err(mismatches.join("\n"));
    }
    Ok(ops.len() as u64)
}

/// The end of a failed thread, as text.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn fail(d: &Daemon, what: &str, errors: &[String]) -> ! {
    let log = d.stderr();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "{what}: {} failed:\n{}\n--- daemon stderr (last {} lines) ---\n{}",
        errors.len(),
        errors.join("\n"),
        tail.len(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// Every writer at once; returns the new models and last generations.
fn writers(
    d: &Daemon,
    stats: &Arc<Stats>,
    round: u32,
    models: Vec<Vec<u64>>,
    gens: &[u64],
) -> (Vec<Vec<u64>>, Vec<u64>) {
    let t0 = Instant::now();
    let before = get(&stats.good);
    let verified_before = get(&stats.blocks_verified);
    let port = d.port();
    let handles: Vec<_> = models
        .into_iter()
        .zip(gens)
        .enumerate()
        .map(|(id, (model, &gen))| {
            let st = stats.clone();
            thread::Builder::new()
                .name(format!("mc-writer-{id}"))
                .spawn(move || writer(port, st, id as u32, round, model, gen))
                .unwrap()
        })
        .collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(w)) => out.push(w),
            Ok(Err(e)) => errors.push(e),
            Err(p) => errors.push(format!("writer {id} panicked: {}", panic_text(p))),
        }
    }
    if !errors.is_empty() {
        fail(d, &format!("round {round}: writer sessions"), &errors);
    }
    let commands: u64 = out.iter().map(|w| w.commands).sum();
    let blocks: u64 = out.iter().map(|w| w.blocks_read).sum();
    assert_eq!(
        get(&stats.good) - before,
        commands,
        "round {round}: READ/WRITE commands answered GOOD"
    );
    assert_eq!(
        get(&stats.blocks_verified) - verified_before,
        blocks,
        "round {round}: blocks read and verified"
    );
    eprintln!(
        "multicore: round {round}: {SESSIONS} writer sessions, {commands} commands, \
         {blocks} blocks verified, {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    out.into_iter().map(|w| (w.model, w.gen)).unzip()
}

/// Sixteen new sessions at once, each reading its neighbour's region.
fn cross_check(d: &Daemon, stats: &Arc<Stats>, tag: &str, models: &Arc<Vec<Vec<u64>>>) {
    let t0 = Instant::now();
    let port = d.port();
    let handles: Vec<_> = (0..SESSIONS)
        .map(|id| {
            let st = stats.clone();
            let models = models.clone();
            let tag = tag.to_string();
            thread::Builder::new()
                .name(format!("mc-cross-{id}"))
                .spawn(move || {
                    let n = (id + 1) % SESSIONS;
                    reader(
                        port,
                        st,
                        ReadJob {
                            who: format!("cross-reader {id} ({tag}) of region {n}"),
                            initiator: format!("iqn.2026-11.org.rtgt:mc-cross-{id:02}"),
                            isid: [0x80, 0x4d, 0x58, 0, 0, id as u8],
                            profile: &PROFILES[(id as usize + 1) % PROFILES.len()],
                            qd: qd_of(id + 3),
                            lba: region_base(n),
                            blocks: REGION_BLOCKS,
                            models: &models,
                        },
                    )
                })
                .unwrap()
        })
        .collect();
    let mut errors = Vec::new();
    let mut commands = 0;
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(n)) => commands += n,
            Ok(Err(e)) => errors.push(e),
            Err(p) => errors.push(format!("cross-reader {id} panicked: {}", panic_text(p))),
        }
    }
    if !errors.is_empty() {
        fail(d, &format!("{tag}: cross-session reads"), &errors);
    }
    eprintln!(
        "multicore: {tag}: {SESSIONS} sessions read their neighbour's region: {commands} \
         commands, {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// One fresh session reads the whole LUN.
fn full_scan(d: &Daemon, stats: &Arc<Stats>, tag: &str, seq: u8, models: &[Vec<u64>]) {
    let t0 = Instant::now();
    let before = get(&stats.blocks_verified);
    let r = reader(
        d.port(),
        stats.clone(),
        ReadJob {
            who: format!("full scan ({tag})"),
            initiator: "iqn.2026-11.org.rtgt:mc-scan".into(),
            isid: [0x80, 0x4d, 0x53, seq, 0, 0],
            profile: &PROFILES[0],
            qd: 8,
            lba: 0,
            blocks: LUN_BLOCKS,
            models,
        },
    );
    if let Err(e) = r {
        fail(d, &format!("{tag}: whole-LUN read"), &[e]);
    }
    assert_eq!(
        get(&stats.blocks_verified) - before,
        LUN_BLOCKS,
        "{tag}: blocks of the LUN verified"
    );
    eprintln!(
        "multicore: {tag}: whole LUN ({LUN_BLOCKS} blocks) read and verified in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// The image file itself holds what the models say.
fn check_file(path: &Path, models: &[Vec<u64>], stats: &Stats) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(data.len() as u64, LUN_BLOCKS * BS as u64, "image file size");
    let want = |l: u64| expected(models, l);
    if let Some(m) = check_blocks("image file after SIGTERM", 0, &data, &want, stats) {
        panic!("{m}");
    }
}

// ------------------------------------------------------------ the tests

fn config(dir: &Path, backstore: &str) -> PathBuf {
    let cfg = dir.join("multicore.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[backstore]]
name = "lun0"
{backstore}
size = "{LUN_MIB}M"

[[target]]
iqn = "{IQN}"

[[target.tpg]]
tag = 1
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "lun0"
"#
        ),
    )
    .unwrap();
    cfg
}

/// Threads of process `pid`.
fn thread_count(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `--threads N` gave the daemon at least N threads.
fn check_threads(d: &Daemon, threads: u32) {
    let n = thread_count(d.pid());
    eprintln!("multicore: daemon has {n} threads (--threads {threads})");
    assert!(
        n >= u64::from(threads),
        "daemon started with --threads {threads} has {n} threads"
    );
}

fn start(cfg: &Path, dir: &Path, threads: u32) -> Daemon {
    let state = dir.join("state");
    Daemon::start(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--threads",
        &threads.to_string(),
        "--state-dir",
        state.to_str().unwrap(),
    ])
}

/// The totals every run must reach: each way of moving data was used.
fn check_coverage(stats: &Stats) {
    let n = get;
    eprintln!(
        "multicore: {} logins, {} logouts, {} READ, {} WRITE ({} FUA, {} with a 16-byte CDB), \
         {} GOOD; {:.1} MiB read, {:.1} MiB written; writes with immediate data {} (all of it \
         {}), unsolicited Data-Out {}, R2T {} ({} writes with several), solicited Data-Out {}, \
         Data-In {} ({} reads in several); {} blocks verified; {} unit attentions; peak {} \
         commands in flight per session",
        n(&stats.logins),
        n(&stats.logouts),
        n(&stats.reads),
        n(&stats.writes),
        n(&stats.fua),
        n(&stats.cdb16),
        n(&stats.good),
        n(&stats.bytes_read) as f64 / (1 << 20) as f64,
        n(&stats.bytes_written) as f64 / (1 << 20) as f64,
        n(&stats.immediate_writes),
        n(&stats.all_immediate_writes),
        n(&stats.unsolicited_data_outs),
        n(&stats.r2ts),
        n(&stats.multi_r2t_writes),
        n(&stats.solicited_data_outs),
        n(&stats.data_ins),
        n(&stats.multi_data_in_reads),
        n(&stats.blocks_verified),
        n(&stats.unit_attentions),
        n(&stats.peak_in_flight),
    );
    assert_eq!(n(&stats.good), n(&stats.reads) + n(&stats.writes));
    assert_eq!(n(&stats.logins), n(&stats.logouts));
    for (what, c) in [
        ("FUA writes", &stats.fua),
        ("16-byte CDBs", &stats.cdb16),
        ("writes with immediate data", &stats.immediate_writes),
        ("writes all immediate", &stats.all_immediate_writes),
        ("unsolicited Data-Out", &stats.unsolicited_data_outs),
        ("R2Ts", &stats.r2ts),
        ("writes with several R2Ts", &stats.multi_r2t_writes),
        ("reads in several Data-In", &stats.multi_data_in_reads),
    ] {
        assert!(c.load(Relaxed) > 0, "no {what}: the test lost its coverage");
    }
    assert!(
        n(&stats.peak_in_flight) >= 4,
        "never more than {} commands in flight",
        n(&stats.peak_in_flight)
    );
}

#[test]
fn ram_lun_sixteen_sessions_on_four_threads_verified() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "type = \"ramdisk\"");
    let mut d = start(&cfg, dir.path(), 4);
    let stats = Arc::new(Stats::default());
    let zero = vec![vec![0u64; REGION_BLOCKS as usize]; SESSIONS as usize];
    let (models, _) = writers(&d, &stats, 0, zero, &[0; SESSIONS as usize]);
    check_threads(&d, 4);
    let models = Arc::new(models);
    cross_check(&d, &stats, "ram", &models);
    full_scan(&d, &stats, "ram", 0, &models);
    check_coverage(&stats);
    assert!(d.running(), "the daemon died; stderr:\n{}", d.stderr());
    d.stop();
    eprintln!("multicore: ram: {:.1}s in all", t0.elapsed().as_secs_f64());
}

#[test]
fn fileio_lun_sixteen_sessions_on_two_threads_verified_across_restart() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("lun0.img");
    let cfg = config(
        dir.path(),
        &format!("type = \"fileio\"\npath = \"{}\"", img.display()),
    );
    let stats = Arc::new(Stats::default());

    let mut d = start(&cfg, dir.path(), 2);
    let zero = vec![vec![0u64; REGION_BLOCKS as usize]; SESSIONS as usize];
    let (models, gens) = writers(&d, &stats, 0, zero, &[0; SESSIONS as usize]);
    check_threads(&d, 2);
    let models = Arc::new(models);
    cross_check(&d, &stats, "fileio", &models);
    full_scan(&d, &stats, "fileio", 0, &models);
    assert!(d.running(), "the daemon died; stderr:\n{}", d.stderr());
    d.stop();
    check_file(&img, &models, &stats);

    // The same file again: what was written is there, and new writes
    // replace it.
    let mut d = start(&cfg, dir.path(), 2);
    full_scan(&d, &stats, "fileio after restart", 1, &models);
    let (models, _) = writers(&d, &stats, 1, Arc::unwrap_or_clone(models), &gens);
    let models = Arc::new(models);
    cross_check(&d, &stats, "fileio round 1", &models);
    full_scan(&d, &stats, "fileio round 1", 2, &models);
    check_coverage(&stats);
    assert!(d.running(), "the daemon died; stderr:\n{}", d.stderr());
    d.stop();
    check_file(&img, &models, &stats);
    eprintln!(
        "multicore: fileio: {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
}
