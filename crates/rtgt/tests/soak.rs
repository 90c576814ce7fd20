//! Soak test (its own command, outside CI's time budget):
//!
//! ```text
//! RTGT_SOAK_SECS=600 RTGT_SOAK_SESSIONS=100 RTGT_SOAK_QD=32 \
//!   cargo test --release -p rtgt --test soak -- --ignored --nocapture
//! ```
//!
//! The real daemon serves one fileio LUN (a sparse file in a tempdir).
//! N sessions, each its own initiator name and ISID and its own region of
//! the LUN, keep up to QD commands in flight: WRITE(10/16) (some with FUA)
//! of blocks whose contents encode (session, LBA, generation), READ(10/16)
//! verified block by block against the session's model of its region, and
//! a few SYNCHRONIZE CACHE. Injected on the way: ABORT TASK of one of the
//! session's own commands, LOGICAL UNIT RESET (rare; it aborts everyone's
//! commands: the others see a UNIT ATTENTION), abrupt disconnects and clean
//! logouts followed by a new login (same ISID: session reinstatement).
//!
//! What a command's fate leaves uncertain (aborted, or in flight at a reset
//! or a disconnect) is "unknown" in the model until the next successful
//! write: a read of it only checks that the block is zeros or a well-formed
//! block of that session and LBA. Every other block must match exactly.
//!
//! Checks: no verification error, no protocol surprise, every session's
//! window back to 128 when idle (at each logout and at the end), the
//! daemon's VmRSS flat (sampled every 10 s), the daemon alive at the end
//! and exiting 0 on SIGTERM.

mod common;

use common::iscsi_login::{login, LoginOptions};
use common::Daemon;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-11.org.rtgt:soak";
const BS: usize = 512;
/// Each session's region of the LUN: 16 MiB.
const REGION_BLOCKS: u64 = 32 * 1024;
/// Transfer sizes: 4 KiB .. 128 KiB.
const MIN_BLOCKS: u64 = 8;
const MAX_BLOCKS: u64 = 256;
/// The target's command window.
const WINDOW: u32 = 128;
const MAGIC: u32 = 0x534f_414b; // "SOAK"
/// A connection that answers nothing this long gets a probe TEST UNIT READY.
const PROBE_AFTER: Duration = Duration::from_secs(2);
/// A command (or TMF) unanswered this long is a stall: an error.
const STALL_AFTER: Duration = Duration::from_secs(30);
/// Model: the block's generation, with this bit when it is unknown.
const UNKNOWN: u64 = 1 << 63;

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ------------------------------------------------------------ statistics

#[derive(Default)]
struct Stats {
    commands: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    fua_writes: AtomicU64,
    syncs: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    reads_verified: AtomicU64,
    blocks_verified: AtomicU64,
    blocks_unknown_checked: AtomicU64,
    aborts_sent: AtomicU64,
    aborts_complete: AtomicU64,
    aborts_not_found: AtomicU64,
    resets: AtomicU64,
    unit_attentions: AtomicU64,
    ghosts: AtomicU64,
    late_responses: AtomicU64,
    reconnects_abrupt: AtomicU64,
    reconnects_logout: AtomicU64,
    logins: AtomicU64,
    login_retries: AtomicU64,
    probes: AtomicU64,
    busy: AtomicU64,
    r2ts: AtomicU64,
    nops: AtomicU64,
    async_msgs: AtomicU64,
    window_checks: AtomicU64,
    window_leaks: AtomicU64,
    scanned_blocks: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    port: u16,
    qd: usize,
    deadline: Instant,
    stats: Stats,
    /// The first error messages (all are counted).
    errors: Mutex<Vec<String>>,
    /// When the next LOGICAL UNIT RESET is due (one session takes it).
    next_reset: Mutex<Instant>,
    /// Set when errors pile up: everyone stops.
    abort_run: AtomicBool,
}

impl Shared {
    fn error(&self, msg: String) {
        let n = self.stats.errors.fetch_add(1, Relaxed);
        eprintln!("soak ERROR: {msg}");
        let mut e = self.errors.lock().unwrap();
        if e.len() < 100 {
            e.push(msg);
        }
        if n > 1000 {
            self.abort_run.store(true, Relaxed);
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

// ------------------------------------------------------------ helpers

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
    fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo * 1000 + self.below((hi - lo) * 1000 + 1))
    }
}

/// The contents of block `lba` (absolute) written by `session` as
/// generation `gen`; generation 0 is a block never written (zeros).
fn fill_block(buf: &mut [u8], session: u32, lba: u64, gen: u64) {
    if gen == 0 {
        buf.fill(0);
        return;
    }
    buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    buf[4..8].copy_from_slice(&session.to_be_bytes());
    buf[8..16].copy_from_slice(&lba.to_be_bytes());
    buf[16..24].copy_from_slice(&gen.to_be_bytes());
    let mut x = (lba ^ gen.rotate_left(40) ^ (u64::from(session) << 20)) | 1;
    for c in buf[24..].chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

/// What a block read back holds, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Zeros,
    /// A well-formed block: (session, lba, gen).
    Block(u32, u64, u64),
    Garbage,
}

fn decode_block(b: &[u8]) -> Seen {
    if b.iter().all(|&x| x == 0) {
        return Seen::Zeros;
    }
    if b[0..4] != MAGIC.to_be_bytes() {
        return Seen::Garbage;
    }
    let session = u32::from_be_bytes(b[4..8].try_into().unwrap());
    let lba = u64::from_be_bytes(b[8..16].try_into().unwrap());
    let gen = u64::from_be_bytes(b[16..24].try_into().unwrap());
    if gen == 0 {
        return Seen::Garbage;
    }
    let mut want = [0u8; BS];
    fill_block(&mut want, session, lba, gen);
    if want[..] == b[..BS] {
        Seen::Block(session, lba, gen)
    } else {
        Seen::Garbage
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Serial-number a < b (RFC 1982, 32 bits).
fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
fn sense_code(s: &[u8]) -> Option<(u8, u8, u8)> {
    match s.first().map(|b| b & 0x7f) {
        Some(0x70) | Some(0x71) if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
        Some(0x72) | Some(0x73) if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
        _ => None,
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A log line without its colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

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

// ------------------------------------------------------------ connection

struct Pdu {
    bhs: [u8; 48],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    fn itt(&self) -> u32 {
        be32(&self.bhs, 16)
    }
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

/// A logged-in connection: we write on `stream`, a thread reads every PDU
/// into `rx` (so that the target can never block on us while we write).
struct Conn {
    stream: TcpStream,
    rx: Receiver<io::Result<Pdu>>,
    reader: Option<JoinHandle<()>>,
    cmdsn: u32,
    exp_statsn: u32,
    exp_cmdsn: u32,
    max_cmdsn: u32,
    last_pdu: Instant,
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut rd = stream.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || loop {
            let r = read_pdu(&mut rd);
            let end = r.is_err();
            if tx.send(r).is_err() || end {
                return;
            }
        });
        Ok(Conn {
            stream,
            rx,
            reader: Some(reader),
            cmdsn: 1,
            exp_statsn: 0,
            exp_cmdsn: 1,
            max_cmdsn: 1,
            last_pdu: Instant::now(),
        })
    }

    fn send(&mut self, mut bhs: [u8; 48], data: &[u8]) -> io::Result<()> {
        bhs[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        bhs[4] = 0;
        bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        let mut pdu = Vec::with_capacity(48 + data.len() + 3);
        pdu.extend_from_slice(&bhs);
        pdu.extend_from_slice(data);
        pdu.resize(48 + data.len().div_ceil(4) * 4, 0);
        self.stream.write_all(&pdu)
    }

    /// Bookkeeping every target PDU implies: StatSN, ExpCmdSN, MaxCmdSN.
    fn note(&mut self, p: &Pdu) {
        self.last_pdu = Instant::now();
        let op = p.opcode();
        let has_statsn = matches!(op, 0x21 | 0x22 | 0x24 | 0x26 | 0x3f)
            || (op == 0x25 && p.bhs[1] & 0x01 != 0)
            || (op == 0x20 && p.itt() != u32::MAX)
            || op == 0x32;
        if has_statsn {
            self.exp_statsn = be32(&p.bhs, 24).wrapping_add(1);
        }
        let exp = be32(&p.bhs, 28);
        let max = be32(&p.bhs, 32);
        // ExpCmdSN / MaxCmdSN only ever move forward.
        if sn_lt(self.exp_cmdsn, exp) {
            self.exp_cmdsn = exp;
        }
        if sn_lt(self.max_cmdsn, max) {
            self.max_cmdsn = max;
        }
    }

    /// May a command with the next CmdSN go now?
    fn window_open(&self) -> bool {
        !sn_lt(self.max_cmdsn, self.cmdsn)
    }

    /// Close abruptly (RST-like: no logout) and wait for the reader.
    fn kill(mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

// ------------------------------------------------------------ session

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Sync,
    Tur,
}

struct Cmd {
    kind: Kind,
    cmdsn: u32,
    /// Absolute LBA and blocks.
    lba: u64,
    blocks: u64,
    gen: u64,
    fua: bool,
    cdb16: bool,
    sent: Instant,
    data_in: Vec<u8>,
    /// ABORT TASK answered "task does not exist": the response must come.
    abort_not_found: bool,
}

/// Why a command's fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// ABORT TASK answered FUNCTION COMPLETE: must never execute (or answer).
    Aborted,
    /// In flight at our own LOGICAL UNIT RESET.
    OwnReset,
    /// Older than a command that got a UNIT ATTENTION (someone's reset).
    UnitAttention,
    /// In flight when we dropped the connection.
    Disconnect,
    /// Ended with an error status.
    Failed,
}

struct Ghost {
    kind: Kind,
    lba: u64,
    blocks: u64,
    fate: Fate,
    since: Instant,
}

enum Tmf {
    Abort {
        itt: u32,
        ref_itt: u32,
        sent: Instant,
    },
    Reset {
        itt: u32,
        sent: Instant,
    },
}

/// A TEST UNIT READY's status, sense code and the window its response announced.
type TurResult = (u8, Option<(u8, u8, u8)>, u32);

struct Soak {
    id: u32,
    sh: Arc<Shared>,
    rng: Rng,
    base: u64,
    /// Per block of the region: generation (0: never written) | UNKNOWN.
    model: Vec<u64>,
    /// Last generation issued.
    gen: u64,
    /// Generations whose write ended other than plainly (for diagnosis).
    fates: HashMap<u64, (Fate, Instant)>,
    conn: Option<Conn>,
    itt: u32,
    out: HashMap<u32, Cmd>,
    ghosts: HashMap<u32, Ghost>,
    tmf: Option<Tmf>,
    /// Results of TEST UNIT READYs sent one at a time: (status, sense, window).
    tur_done: HashMap<u32, TurResult>,
    probe: Option<u32>,
    next_reconnect: Instant,
    /// Final scan: next region block to read.
    scan: Option<u64>,
    started: Instant,
    logout_done: Option<u8>,
    /// Clearing the unit attentions of a new login (not counted).
    in_login: bool,
}

enum Step {
    Continue,
    /// The connection is gone or unusable: reconnect.
    Broken(String),
}

impl Soak {
    fn new(id: u32, sh: Arc<Shared>) -> Soak {
        let mut rng = Rng::new(0x5eed_0000 + u64::from(id));
        let next_reconnect = Instant::now() + rng.secs(15, 60);
        Soak {
            id,
            sh,
            rng,
            base: u64::from(id) * REGION_BLOCKS,
            model: vec![0; REGION_BLOCKS as usize],
            gen: 0,
            fates: HashMap::new(),
            conn: None,
            itt: 0x0100_0000,
            out: HashMap::new(),
            ghosts: HashMap::new(),
            tmf: None,
            tur_done: HashMap::new(),
            probe: None,
            next_reconnect,
            scan: None,
            started: Instant::now(),
            logout_done: None,
            in_login: false,
        }
    }

    fn err(&self, msg: String) {
        self.sh.error(format!(
            "session {} (t={:.1}s): {msg}",
            self.id,
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn take_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        if self.itt == u32::MAX {
            self.itt = 1;
        }
        self.itt
    }

    // ---- login / logout ----

    fn login(&mut self) -> bool {
        let opts = LoginOptions {
            initiator: format!("iqn.2026-11.org.rtgt:soak-{:03}", self.id),
            target: Some(IQN.into()),
            chap: None,
            isid: [0x80, 0, 0, 0x50, (self.id >> 8) as u8, self.id as u8],
        };
        for attempt in 0..20 {
            if attempt > 0 {
                add(&self.sh.stats.login_retries, 1);
                thread::sleep(Duration::from_millis(250));
            }
            match login(self.sh.port, &opts) {
                Ok(r) if r.succeeded() => {
                    let conn = match Conn::new(r.stream.unwrap()) {
                        Ok(c) => c,
                        Err(e) => {
                            self.err(format!("after login: {e}"));
                            continue;
                        }
                    };
                    self.conn = Some(conn);
                    add(&self.sh.stats.logins, 1);
                    // A new I_T nexus starts with POWER ON, RESET.
                    self.in_login = true;
                    for _ in 0..16 {
                        match self.tur_sync() {
                            Some((0, _, _)) => {
                                self.in_login = false;
                                return true;
                            }
                            Some((2, Some((6, _, _)), _)) => continue,
                            Some(other) => {
                                self.err(format!("TEST UNIT READY after login: {other:?}"));
                                return false;
                            }
                            None => break,
                        }
                    }
                    self.in_login = false;
                    if let Some(c) = self.conn.take() {
                        c.kill();
                    }
                    self.err("unit attentions after login never cleared".into());
                }
                Ok(r) => eprintln!(
                    "soak: session {} login refused {:02x}/{:02x}, retrying",
                    self.id, r.class, r.detail
                ),
                Err(e) => eprintln!("soak: session {} login failed: {e}, retrying", self.id),
            }
        }
        self.err("could not log in (20 attempts)".into());
        false
    }

    /// One TEST UNIT READY, waiting for its answer (other PDUs are handled
    /// on the way): (status, sense code, window of the response).
    fn tur_sync(&mut self) -> Option<TurResult> {
        let itt = self.send_tur()?;
        let t0 = Instant::now();
        loop {
            if let Some(r) = self.tur_done.remove(&itt) {
                return Some(r);
            }
            if t0.elapsed() > STALL_AFTER {
                self.err(format!("TEST UNIT READY unanswered for {STALL_AFTER:?}"));
                return None;
            }
            match self.pump(Duration::from_millis(200)) {
                Step::Continue => {}
                Step::Broken(why) => {
                    self.err(format!(
                        "connection lost waiting for TEST UNIT READY: {why}"
                    ));
                    return None;
                }
            }
        }
    }

    fn send_tur(&mut self) -> Option<u32> {
        let itt = self.take_itt();
        let conn = self.conn.as_mut()?;
        let sn = conn.cmdsn;
        conn.cmdsn = sn.wrapping_add(1);
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = 0x81; // F, SIMPLE
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[24..28].copy_from_slice(&sn.to_be_bytes());
        if let Err(e) = conn.send(b, &[]) {
            self.err(format!("sending TEST UNIT READY: {e}"));
            return None;
        }
        self.out.insert(
            itt,
            Cmd {
                kind: Kind::Tur,
                cmdsn: sn,
                lba: 0,
                blocks: 0,
                gen: 0,
                fua: false,
                cdb16: false,
                sent: Instant::now(),
                data_in: Vec::new(),
                abort_not_found: false,
            },
        );
        add(&self.sh.stats.commands, 1);
        Some(itt)
    }

    /// Drop the connection with everything in flight.
    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.kill();
        }
        let itts: Vec<u32> = self.out.keys().copied().collect();
        for itt in itts {
            self.ghost(itt, Fate::Disconnect);
        }
        // Nothing can answer on a dead connection.
        self.ghosts.clear();
        self.tmf = None;
        self.probe = None;
        self.tur_done.clear();
    }

    /// Let everything in flight finish (no new commands).
    fn drain(&mut self) -> bool {
        let t0 = Instant::now();
        while !self.out.is_empty() || self.tmf.is_some() {
            if self.conn.is_none() {
                return false;
            }
            if let Step::Broken(why) = self.pump(Duration::from_millis(200)) {
                self.err(format!("connection lost while draining: {why}"));
                self.disconnect();
                return false;
            }
            if let Step::Broken(why) = self.idle_checks() {
                self.err(why);
                self.disconnect();
                return false;
            }
            if t0.elapsed() > STALL_AFTER * 3 {
                self.err(format!(
                    "drain: {} commands still in flight after {:?}",
                    self.out.len(),
                    t0.elapsed()
                ));
                self.disconnect();
                return false;
            }
        }
        // Ghosts may still answer (a command done just before a reset):
        // give them a moment so that their window slots are back.
        let t1 = Instant::now();
        while self.ghosts.values().any(|g| g.fate != Fate::Aborted)
            && t1.elapsed() < Duration::from_millis(500)
        {
            if let Step::Broken(why) = self.pump(Duration::from_millis(50)) {
                self.err(format!("connection lost while draining: {why}"));
                self.disconnect();
                return false;
            }
        }
        true
    }

    /// On an idle connection: the window must be all there.
    fn check_window(&mut self) {
        let mut last = 0;
        for attempt in 0..10 {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(200));
            }
            match self.tur_sync() {
                Some((0, _, w)) => {
                    last = w;
                    if w == WINDOW {
                        add(&self.sh.stats.window_checks, 1);
                        return;
                    }
                }
                // A unit attention (someone's reset) cleared on the way.
                Some((2, Some((6, _, _)), _)) => continue,
                Some(other) => {
                    self.err(format!("TEST UNIT READY for the window check: {other:?}"));
                    return;
                }
                None => return,
            }
        }
        add(&self.sh.stats.window_checks, 1);
        add(&self.sh.stats.window_leaks, 1);
        self.err(format!(
            "leaked window: idle session sees MaxCmdSN - ExpCmdSN + 1 = {last}, want {WINDOW}"
        ));
    }

    /// Drain, check the window, log out (Logout Request, close session).
    fn logout(&mut self) {
        if !self.drain() {
            return;
        }
        self.check_window();
        let itt = self.take_itt();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut b = [0u8; 48];
        b[0] = 0x40 | 0x06; // immediate Logout Request
        b[1] = 0x80; // close the session
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..22].copy_from_slice(&1u16.to_be_bytes()); // CID
        b[24..28].copy_from_slice(&conn.cmdsn.to_be_bytes());
        if let Err(e) = conn.send(b, &[]) {
            self.err(format!("sending Logout: {e}"));
            self.disconnect();
            return;
        }
        self.logout_done = None;
        let t0 = Instant::now();
        while self.logout_done.is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                self.err("no Logout Response within 10 s".into());
                break;
            }
            if let Step::Broken(why) = self.pump(Duration::from_millis(200)) {
                self.err(format!(
                    "connection lost waiting for the Logout Response: {why}"
                ));
                break;
            }
        }
        if let Some(r) = self.logout_done {
            if r != 0 {
                self.err(format!("Logout Response {r}"));
            }
        }
        self.disconnect();
    }

    // ---- commands ----

    fn overlaps_write(&self, lba: u64, blocks: u64, is_write: bool) -> bool {
        self.out.values().any(|c| {
            matches!(c.kind, Kind::Read | Kind::Write)
                && (is_write || c.kind == Kind::Write)
                && c.lba < lba + blocks
                && lba < c.lba + c.blocks
        })
    }

    /// Send one more command if there is room; false when none was sent.
    fn issue(&mut self) -> Result<bool, String> {
        let qd = self.sh.qd;
        if self.out.len() >= qd
            || matches!(self.tmf, Some(Tmf::Reset { .. }))
            || !self.conn.as_ref().is_some_and(|c| c.window_open())
        {
            return Ok(false);
        }
        let (kind, lba, blocks) = if let Some(pos) = self.scan {
            if pos >= REGION_BLOCKS {
                return Ok(false);
            }
            let n = MAX_BLOCKS.min(REGION_BLOCKS - pos);
            if self.overlaps_write(self.base + pos, n, false) {
                return Ok(false);
            }
            self.scan = Some(pos + n);
            (Kind::Read, self.base + pos, n)
        } else {
            let r = self.rng.below(1000);
            let kind = match r {
                0..=9 => Kind::Sync,
                10..=509 => Kind::Write,
                _ => Kind::Read,
            };
            if kind == Kind::Sync {
                (kind, 0, 0)
            } else {
                let mut found = None;
                for _ in 0..16 {
                    let blocks = MIN_BLOCKS + self.rng.below(MAX_BLOCKS - MIN_BLOCKS + 1);
                    let lba = self.base + self.rng.below(REGION_BLOCKS - blocks + 1);
                    if !self.overlaps_write(lba, blocks, kind == Kind::Write) {
                        found = Some((kind, lba, blocks));
                        break;
                    }
                }
                match found {
                    Some(f) => f,
                    None => return Ok(false),
                }
            }
        };
        let cdb16 = self.rng.chance(2);
        let fua = kind == Kind::Write && self.rng.chance(4);
        let gen = if kind == Kind::Write {
            self.gen += 1;
            self.gen
        } else {
            0
        };
        let itt = self.take_itt();
        let data = if kind == Kind::Write {
            self.pattern(lba, blocks, gen)
        } else {
            Vec::new()
        };
        let conn = self.conn.as_mut().unwrap();
        let sn = conn.cmdsn;
        conn.cmdsn = sn.wrapping_add(1);
        let bytes = (blocks as usize) * BS;
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = 0x80 | 0x01; // F, SIMPLE
        let mut cdb = [0u8; 16];
        match kind {
            Kind::Read | Kind::Write => {
                let write = kind == Kind::Write;
                b[1] |= if write { 0x20 } else { 0x40 };
                b[20..24].copy_from_slice(&(bytes as u32).to_be_bytes());
                if cdb16 {
                    cdb[0] = if write { 0x8a } else { 0x88 };
                    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                    cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
                } else {
                    cdb[0] = if write { 0x2a } else { 0x28 };
                    cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                    cdb[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
                }
                if fua {
                    cdb[1] |= 0x08;
                }
            }
            Kind::Sync => cdb[0] = 0x35, // SYNCHRONIZE CACHE(10), whole LU
            Kind::Tur => {}
        }
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[24..28].copy_from_slice(&sn.to_be_bytes());
        b[32..48].copy_from_slice(&cdb);
        // Writes go whole as immediate data (InitialR2T=No, FirstBurstLength
        // 256 KiB, the target's MaxRecvDataSegmentLength 256 KiB).
        conn.send(b, &data)
            .map_err(|e| format!("sending a command: {e}"))?;
        let st = &self.sh.stats;
        add(&st.commands, 1);
        match kind {
            Kind::Read => add(&st.reads, 1),
            Kind::Write => {
                add(&st.writes, 1);
                add(&st.bytes_written, bytes as u64);
                if fua {
                    add(&st.fua_writes, 1);
                }
            }
            Kind::Sync => add(&st.syncs, 1),
            Kind::Tur => {}
        }
        self.out.insert(
            itt,
            Cmd {
                kind,
                cmdsn: sn,
                lba,
                blocks,
                gen,
                fua,
                cdb16,
                sent: Instant::now(),
                data_in: Vec::new(),
                abort_not_found: false,
            },
        );
        // Now and then, abort the command just sent (or a write in flight).
        if self.scan.is_none() && self.tmf.is_none() && self.rng.chance(250) {
            let target = if kind == Kind::Write || self.rng.chance(2) {
                Some(itt)
            } else {
                self.out
                    .iter()
                    .filter(|(_, c)| c.kind == Kind::Write && c.fua)
                    .map(|(i, _)| *i)
                    .next()
                    .or(Some(itt))
            };
            if let Some(t) = target {
                self.send_abort(t)?;
            }
        }
        Ok(true)
    }

    fn pattern(&self, lba: u64, blocks: u64, gen: u64) -> Vec<u8> {
        let mut data = vec![0u8; blocks as usize * BS];
        for (i, blk) in data.chunks_mut(BS).enumerate() {
            fill_block(blk, self.id, lba + i as u64, gen);
        }
        data
    }

    fn send_abort(&mut self, ref_itt: u32) -> Result<(), String> {
        let ref_cmdsn = self.out[&ref_itt].cmdsn;
        let itt = self.take_itt();
        let conn = self.conn.as_mut().unwrap();
        let mut b = [0u8; 48];
        b[0] = 0x40 | 0x02; // immediate TMF
        b[1] = 0x80 | 1; // ABORT TASK
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&ref_itt.to_be_bytes());
        b[24..28].copy_from_slice(&conn.cmdsn.to_be_bytes());
        b[32..36].copy_from_slice(&ref_cmdsn.to_be_bytes());
        conn.send(b, &[])
            .map_err(|e| format!("sending ABORT TASK: {e}"))?;
        add(&self.sh.stats.aborts_sent, 1);
        self.tmf = Some(Tmf::Abort {
            itt,
            ref_itt,
            sent: Instant::now(),
        });
        Ok(())
    }

    fn send_reset(&mut self) -> Result<(), String> {
        let itt = self.take_itt();
        let conn = self.conn.as_mut().unwrap();
        let mut b = [0u8; 48];
        b[0] = 0x40 | 0x02;
        b[1] = 0x80 | 5; // LOGICAL UNIT RESET
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        b[24..28].copy_from_slice(&conn.cmdsn.to_be_bytes());
        conn.send(b, &[])
            .map_err(|e| format!("sending LUN RESET: {e}"))?;
        add(&self.sh.stats.resets, 1);
        self.tmf = Some(Tmf::Reset {
            itt,
            sent: Instant::now(),
        });
        Ok(())
    }

    /// A command's fate becomes unknown: its blocks too (writes), and a
    /// late response to it is tolerated (except after ABORT TASK).
    fn ghost(&mut self, itt: u32, fate: Fate) {
        let Some(c) = self.out.remove(&itt) else {
            return;
        };
        add(&self.sh.stats.ghosts, 1);
        if c.kind == Kind::Write {
            self.mark_unknown(c.lba, c.blocks);
            self.fates.insert(c.gen, (fate, Instant::now()));
        }
        if self.probe == Some(itt) {
            self.probe = None;
        }
        self.ghosts.insert(
            itt,
            Ghost {
                kind: c.kind,
                lba: c.lba,
                blocks: c.blocks,
                fate,
                since: Instant::now(),
            },
        );
    }

    fn mark_unknown(&mut self, lba: u64, blocks: u64) {
        let from = (lba - self.base) as usize;
        for m in &mut self.model[from..from + blocks as usize] {
            *m |= UNKNOWN;
        }
    }

    // ---- responses ----

    /// Wait up to `wait` for one PDU and handle it.
    fn pump(&mut self, wait: Duration) -> Step {
        let Some(conn) = self.conn.as_mut() else {
            return Step::Broken("no connection".into());
        };
        let p = match conn.rx.recv_timeout(wait) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Step::Broken(format!("reading: {e}")),
            Err(RecvTimeoutError::Timeout) => return Step::Continue,
            Err(RecvTimeoutError::Disconnected) => return Step::Broken("reader ended".into()),
        };
        conn.note(&p);
        self.handle(p)
    }

    fn handle(&mut self, p: Pdu) -> Step {
        let itt = p.itt();
        match p.opcode() {
            0x20 => {
                // NOP-In: answer a ping.
                add(&self.sh.stats.nops, 1);
                let ttt = be32(&p.bhs, 20);
                if ttt != u32::MAX {
                    let conn = self.conn.as_mut().unwrap();
                    let mut n = [0u8; 48];
                    n[0] = 0x40;
                    n[1] = 0x80;
                    n[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
                    n[20..24].copy_from_slice(&ttt.to_be_bytes());
                    n[24..28].copy_from_slice(&conn.cmdsn.to_be_bytes());
                    if let Err(e) = conn.send(n, &p.data) {
                        return Step::Broken(format!("answering a NOP-In: {e}"));
                    }
                }
            }
            0x21 => {
                if p.bhs[2] != 0 {
                    self.err(format!(
                        "SCSI Response with iSCSI response {:#x} for ITT {itt:#x}",
                        p.bhs[2]
                    ));
                }
                let sense = if p.data.len() >= 2 {
                    let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                    p.data[2..(2 + n).min(p.data.len())].to_vec()
                } else {
                    Vec::new()
                };
                let window = be32(&p.bhs, 32)
                    .wrapping_sub(be32(&p.bhs, 28))
                    .wrapping_add(1);
                self.complete(itt, p.bhs[3], &sense, Vec::new(), window);
            }
            0x25 => {
                let off = be32(&p.bhs, 40) as usize;
                let s_bit = p.bhs[1] & 0x01 != 0;
                if let Some(c) = self.out.get_mut(&itt) {
                    let want = c.blocks as usize * BS;
                    if off + p.data.len() > want {
                        let msg = format!(
                            "Data-In past the transfer: offset {off} + {} > {want}",
                            p.data.len()
                        );
                        self.sh.error(format!("session {}: {msg}", self.id));
                    } else {
                        if c.data_in.len() < off + p.data.len() {
                            c.data_in.resize(off + p.data.len(), 0);
                        }
                        c.data_in[off..off + p.data.len()].copy_from_slice(&p.data);
                    }
                    if s_bit {
                        let data = std::mem::take(&mut c.data_in);
                        let window = be32(&p.bhs, 32)
                            .wrapping_sub(be32(&p.bhs, 28))
                            .wrapping_add(1);
                        self.complete(itt, p.bhs[3], &[], data, window);
                    }
                } else if self.ghosts.contains_key(&itt) {
                    // A late answer to a ghost (reads fit one Data-In).
                    if s_bit {
                        self.complete(itt, p.bhs[3], &[], p.data, 0);
                    }
                } else {
                    self.err(format!("Data-In for unknown ITT {itt:#x}"));
                }
            }
            0x22 => self.on_tmf_response(itt, p.bhs[2]),
            0x26 => self.logout_done = Some(p.bhs[2]),
            0x31 => {
                // R2T: not expected (writes fit the first burst); answer it.
                add(&self.sh.stats.r2ts, 1);
                let ttt = be32(&p.bhs, 20);
                let off = be32(&p.bhs, 40) as usize;
                let len = be32(&p.bhs, 44) as usize;
                let Some(c) = self.out.get(&itt) else {
                    // An aborted write; the target ends the transfer itself.
                    return Step::Continue;
                };
                let data = self.pattern(c.lba, c.blocks, c.gen);
                let conn = self.conn.as_mut().unwrap();
                let end = (off + len).min(data.len());
                let mut pos = off;
                let mut datasn = 0u32;
                while pos < end {
                    let n = (end - pos).min(256 * 1024);
                    let mut b = [0u8; 48];
                    b[0] = 0x05;
                    if pos + n == end {
                        b[1] = 0x80;
                    }
                    b[16..20].copy_from_slice(&itt.to_be_bytes());
                    b[20..24].copy_from_slice(&ttt.to_be_bytes());
                    b[36..40].copy_from_slice(&datasn.to_be_bytes());
                    b[40..44].copy_from_slice(&(pos as u32).to_be_bytes());
                    if let Err(e) = conn.send(b, &data[pos..pos + n]) {
                        return Step::Broken(format!("sending Data-Out: {e}"));
                    }
                    pos += n;
                    datasn += 1;
                }
            }
            0x32 => {
                add(&self.sh.stats.async_msgs, 1);
                let event = p.bhs[36];
                eprintln!("soak: session {} Async Message event {event}", self.id);
                if event == 1 {
                    // The target asks for a logout.
                    self.next_reconnect = Instant::now();
                } else if event == 2 || event == 3 {
                    return Step::Broken(format!("target ends the connection (event {event})"));
                }
            }
            0x3f => {
                let reason = p.bhs[2];
                self.err(format!(
                    "Reject, reason {reason:#x}, of {:02x?}",
                    &p.data[..p.data.len().min(48)]
                ));
            }
            op => self.err(format!("unexpected PDU opcode {op:#04x}")),
        }
        Step::Continue
    }

    fn on_tmf_response(&mut self, itt: u32, response: u8) {
        match self.tmf.take() {
            Some(Tmf::Abort {
                itt: t, ref_itt, ..
            }) if t == itt => match response {
                0 => {
                    add(&self.sh.stats.aborts_complete, 1);
                    if self.out.contains_key(&ref_itt) {
                        self.ghost(ref_itt, Fate::Aborted);
                    } else if !self.ghosts.contains_key(&ref_itt) {
                        self.err(format!(
                            "ABORT TASK of ITT {ref_itt:#x} answered FUNCTION COMPLETE, \
                             but the task had already answered"
                        ));
                    } else if let Some(g) = self.ghosts.get_mut(&ref_itt) {
                        g.fate = Fate::Aborted;
                    }
                }
                1 => {
                    add(&self.sh.stats.aborts_not_found, 1);
                    if let Some(c) = self.out.get_mut(&ref_itt) {
                        c.abort_not_found = true;
                    }
                }
                r => self.err(format!("ABORT TASK answered {r}")),
            },
            Some(Tmf::Reset { itt: t, .. }) if t == itt => {
                if response != 0 {
                    self.err(format!("LOGICAL UNIT RESET answered {response}"));
                }
                let itts: Vec<u32> = self.out.keys().copied().collect();
                for i in itts {
                    self.ghost(i, Fate::OwnReset);
                }
            }
            other => {
                self.tmf = other;
                self.err(format!("TMF Response for ITT {itt:#x}, not ours"));
            }
        }
    }

    fn complete(&mut self, itt: u32, status: u8, sense: &[u8], data: Vec<u8>, window: u32) {
        let code = sense_code(sense);
        if let Some(c) = self.out.remove(&itt) {
            if self.probe == Some(itt) {
                self.probe = None;
            }
            self.completed(itt, c, status, code, data, window);
        } else if let Some(g) = self.ghosts.remove(&itt) {
            add(&self.sh.stats.late_responses, 1);
            if g.fate == Fate::Aborted {
                self.err(format!(
                    "a response (status {status:#x}) to ITT {itt:#x} ({:?} LBA {} x{}), \
                     which ABORT TASK reported aborted (TAS=0: no response)",
                    g.kind, g.lba, g.blocks
                ));
            } else if g.kind == Kind::Read && status == 0 && data.len() == g.blocks as usize * BS {
                // It ran at some point before the event: only check form.
                self.check_read(g.lba, g.blocks, &data, true, itt);
            }
        } else {
            self.err(format!(
                "response to unknown ITT {itt:#x} (status {status:#x})"
            ));
        }
    }

    fn completed(
        &mut self,
        itt: u32,
        c: Cmd,
        status: u8,
        code: Option<(u8, u8, u8)>,
        data: Vec<u8>,
        window: u32,
    ) {
        if c.kind == Kind::Tur {
            self.tur_done.insert(itt, (status, code, window));
        }
        match status {
            0 => match c.kind {
                Kind::Write => {
                    let from = (c.lba - self.base) as usize;
                    for m in &mut self.model[from..from + c.blocks as usize] {
                        *m = c.gen;
                    }
                }
                Kind::Read => {
                    add(&self.sh.stats.bytes_read, data.len() as u64);
                    add(&self.sh.stats.reads_verified, 1);
                    if self.scan.is_some() {
                        add(&self.sh.stats.scanned_blocks, c.blocks);
                    }
                    self.check_read(c.lba, c.blocks, &data, false, itt);
                }
                Kind::Sync | Kind::Tur => {}
            },
            0x02 if code.map(|c| c.0) == Some(6) => {
                // UNIT ATTENTION (a reset by someone): the command did not
                // run; those admitted before it were aborted by the reset
                // or had finished (their answer may yet come).
                if !self.in_login {
                    add(&self.sh.stats.unit_attentions, 1);
                }
                let older: Vec<u32> = self
                    .out
                    .iter()
                    .filter(|(_, o)| sn_lt(o.cmdsn, c.cmdsn))
                    .map(|(i, _)| *i)
                    .collect();
                for i in older {
                    self.ghost(i, Fate::UnitAttention);
                }
            }
            0x08 | 0x28 => {
                // BUSY / TASK SET FULL: not executed.
                add(&self.sh.stats.busy, 1);
            }
            _ => {
                self.err(format!(
                    "{:?} LBA {} x{} (cdb16 {}, fua {}) ended with status {status:#x}, sense {code:x?}",
                    c.kind, c.lba, c.blocks, c.cdb16, c.fua
                ));
                if c.kind == Kind::Write {
                    self.mark_unknown(c.lba, c.blocks);
                    self.fates.insert(c.gen, (Fate::Failed, Instant::now()));
                }
            }
        }
    }

    /// Verify a READ's data against the model; `weak`: only check form.
    fn check_read(&mut self, lba: u64, blocks: u64, data: &[u8], weak: bool, itt: u32) {
        if data.len() != blocks as usize * BS {
            self.err(format!(
                "READ LBA {lba} x{blocks} (ITT {itt:#x}) returned {} bytes, want {}",
                data.len(),
                blocks as usize * BS
            ));
            return;
        }
        let mut want = [0u8; BS];
        let mut strict = 0;
        let mut loose = 0;
        let mut reported = 0;
        for (i, got) in data.chunks(BS).enumerate() {
            let abs = lba + i as u64;
            let m = self.model[(abs - self.base) as usize];
            if weak || m & UNKNOWN != 0 {
                loose += 1;
                let ok = match decode_block(got) {
                    Seen::Zeros => true,
                    Seen::Block(s, l, g) => s == self.id && l == abs && g <= self.gen,
                    Seen::Garbage => false,
                };
                if !ok && reported < 3 {
                    reported += 1;
                    let seen = self.describe(got);
                    self.err(format!(
                        "VERIFY: LBA {abs} (unknown block, READ ITT {itt:#x} LBA {lba} x{blocks}): \
                         want zeros or a block of this session and LBA, got {seen}"
                    ));
                }
                continue;
            }
            strict += 1;
            fill_block(&mut want, self.id, abs, m);
            if got != &want[..] && reported < 3 {
                reported += 1;
                let seen = self.describe(got);
                let (wfate, _) = self.fate(m);
                self.err(format!(
                    "VERIFY: LBA {abs} (READ ITT {itt:#x} LBA {lba} x{blocks}): \
                     expected generation {m} ({wfate}), got {seen}"
                ));
            }
        }
        add(&self.sh.stats.blocks_verified, strict);
        add(&self.sh.stats.blocks_unknown_checked, loose);
    }

    fn fate(&self, gen: u64) -> (String, Option<Instant>) {
        if gen == 0 {
            return ("never written: zeros".into(), None);
        }
        if gen > self.gen {
            return (format!("never issued (last is {})", self.gen), None);
        }
        match self.fates.get(&gen) {
            Some((f, t)) => (
                format!("{f:?} {:.2}s ago", t.elapsed().as_secs_f64()),
                Some(*t),
            ),
            None => ("completed GOOD".into(), None),
        }
    }

    fn describe(&self, got: &[u8]) -> String {
        match decode_block(got) {
            Seen::Zeros => "zeros".into(),
            Seen::Block(s, l, g) if s == self.id => {
                format!("generation {g} of LBA {l} ({})", self.fate(g).0)
            }
            Seen::Block(s, l, g) => format!("a block of session {s}, LBA {l}, generation {g}"),
            Seen::Garbage => format!("garbage starting {:02x?}", &got[..32]),
        }
    }

    // ---- the loop ----

    /// Probes and stall detection on a quiet connection.
    fn idle_checks(&mut self) -> Step {
        let Some(conn) = self.conn.as_ref() else {
            return Step::Continue;
        };
        let quiet = conn.last_pdu.elapsed();
        // Ghosts that never answered: forget them after a while.
        self.ghosts
            .retain(|_, g| g.since.elapsed() < Duration::from_secs(120));
        if let Some(t) = &self.tmf {
            let (Tmf::Abort { sent, .. } | Tmf::Reset { sent, .. }) = t;
            if sent.elapsed() > STALL_AFTER {
                return Step::Broken(format!("TMF unanswered for {:?}", sent.elapsed()));
            }
        }
        if self.out.is_empty() {
            return Step::Continue;
        }
        let oldest = self.out.values().map(|c| c.sent).min().unwrap();
        if oldest.elapsed() > STALL_AFTER {
            let (itt, c) = self
                .out
                .iter()
                .min_by_key(|(_, c)| c.sent)
                .map(|(i, c)| (*i, c))
                .unwrap();
            return Step::Broken(format!(
                "stall: {:?} ITT {itt:#x} CmdSN {} LBA {} x{} unanswered for {:.1}s \
                 (abort said not found: {}; {} in flight; ExpCmdSN {} MaxCmdSN {})",
                c.kind,
                c.cmdsn,
                c.lba,
                c.blocks,
                c.sent.elapsed().as_secs_f64(),
                c.abort_not_found,
                self.out.len(),
                conn.exp_cmdsn,
                conn.max_cmdsn
            ));
        }
        // Commands lost to someone's reset answer nothing: a TEST UNIT READY
        // gets the unit attention that says so.
        if quiet > PROBE_AFTER && self.probe.is_none() && conn.window_open() {
            add(&self.sh.stats.probes, 1);
            self.probe = self.send_tur();
        }
        Step::Continue
    }

    fn run(&mut self) {
        if !self.login() {
            return;
        }
        loop {
            let now = Instant::now();
            if now >= self.sh.deadline || self.sh.abort_run.load(Relaxed) {
                break;
            }
            if self.conn.is_none() {
                if !self.login() {
                    return;
                }
                continue;
            }
            if now >= self.next_reconnect {
                self.next_reconnect = now + self.rng.secs(15, 60);
                if self.rng.below(10) < 6 {
                    add(&self.sh.stats.reconnects_abrupt, 1);
                    self.disconnect();
                } else {
                    add(&self.sh.stats.reconnects_logout, 1);
                    self.logout();
                }
                continue;
            }
            // A LOGICAL UNIT RESET now and then, by whoever comes first.
            if self.tmf.is_none() {
                let mut next = self.sh.next_reset.lock().unwrap();
                if now >= *next {
                    *next = now + self.rng.secs(10, 30);
                    drop(next);
                    if let Err(e) = self.send_reset() {
                        self.err(e);
                        self.disconnect();
                        continue;
                    }
                }
            }
            let mut broken = None;
            loop {
                match self.issue() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if broken.is_none() {
                if let Step::Broken(why) = self.pump(Duration::from_millis(100)) {
                    broken = Some(why);
                }
            }
            if broken.is_none() {
                if let Step::Broken(why) = self.idle_checks() {
                    broken = Some(why);
                }
            }
            if let Some(why) = broken {
                self.err(format!("connection broken: {why}"));
                self.disconnect();
            }
        }
        // The end: everything answered, then read the whole region back.
        if self.conn.is_none() && !self.login() {
            return;
        }
        if !self.drain() {
            return;
        }
        self.scan = Some(0);
        while self.scan.is_some_and(|p| p < REGION_BLOCKS) || !self.out.is_empty() {
            if self.sh.abort_run.load(Relaxed) {
                break;
            }
            let mut broken = None;
            loop {
                match self.issue() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if broken.is_none() {
                if let Step::Broken(why) = self.pump(Duration::from_millis(100)) {
                    broken = Some(why);
                }
            }
            if broken.is_none() {
                if let Step::Broken(why) = self.idle_checks() {
                    broken = Some(why);
                }
            }
            if let Some(why) = broken {
                self.err(format!("connection broken during the final scan: {why}"));
                self.disconnect();
                return;
            }
        }
        self.logout();
    }
}

// ------------------------------------------------------------ the test

fn config(dir: &std::path::Path, size_mib: u64) -> std::path::PathBuf {
    let cfg = dir.join("soak.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[backstore]]
name = "soak"
type = "fileio"
path = "{}"
size = "{size_mib}M"

[[target]]
iqn = "{IQN}"

[[target.tpg]]
tag = 1
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "soak"
"#,
            dir.join("soak.img").display()
        ),
    )
    .unwrap();
    cfg
}

/// An idle new session: the window it sees.
fn fresh_window(sh: &Arc<Shared>, id: u32) -> Option<u32> {
    let mut s = Soak::new(id, sh.clone());
    if !s.login() {
        return None;
    }
    let w = s.tur_sync().map(|r| r.2);
    s.logout();
    w
}

#[test]
#[ignore = "soak: run with --ignored, RTGT_SOAK_SECS=600"]
fn soak_fileio_sessions_with_task_management_and_reconnects() {
    let secs = env_or("RTGT_SOAK_SECS", 600);
    let sessions = env_or("RTGT_SOAK_SESSIONS", 100) as u32;
    let qd = env_or("RTGT_SOAK_QD", 32) as usize;
    assert!(sessions >= 1 && qd >= 1 && qd < WINDOW as usize);
    let dir = tempfile::tempdir().unwrap();
    let size_mib = (u64::from(sessions) * REGION_BLOCKS * BS as u64) >> 20;
    let cfg = config(dir.path(), size_mib);
    let state = dir.path().join("state");
    let mut d = Daemon::start(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let pid = d.pid();
    eprintln!(
        "soak: {secs} s, {sessions} sessions x QD{qd}, fileio LUN of {size_mib} MiB \
         ({} MiB per session), daemon pid {pid} on port {}",
        (REGION_BLOCKS * BS as u64) >> 20,
        d.port()
    );

    let start = Instant::now();
    let sh = Arc::new(Shared {
        port: d.port(),
        qd,
        deadline: start + Duration::from_secs(secs),
        stats: Stats::default(),
        errors: Mutex::new(Vec::new()),
        next_reset: Mutex::new(start + Duration::from_secs(5.min(secs / 3 + 1))),
        abort_run: AtomicBool::new(false),
    });
    let base_rss = rss_kib(pid);
    let handles: Vec<JoinHandle<()>> = (0..sessions)
        .map(|id| {
            let sh = sh.clone();
            thread::Builder::new()
                .name(format!("soak-{id}"))
                .spawn(move || Soak::new(id, sh).run())
                .unwrap()
        })
        .collect();

    // Sample the daemon every 10 s (more often in short runs).
    let interval = Duration::from_secs(10.min((secs / 12).max(1)));
    let mut samples: Vec<(f64, u64)> = vec![(0.0, base_rss)];
    let mut next = start + interval;
    let st = &sh.stats;
    while handles.iter().any(|h| !h.is_finished()) {
        thread::sleep(Duration::from_millis(100));
        if Instant::now() >= next && Instant::now() < sh.deadline + interval / 2 {
            next += interval;
            let t = start.elapsed().as_secs_f64();
            let rss = rss_kib(pid);
            samples.push((t, rss));
            eprintln!(
                "soak: t={t:6.1}s rss {rss} KiB fds {} threads {} | cmds {} rd {} MiB wr {} MiB \
                 | aborts {} resets {} UAs {} reconnects {} | errors {}",
                fd_count(pid),
                thread_count(pid),
                st.commands.load(Relaxed),
                st.bytes_read.load(Relaxed) >> 20,
                st.bytes_written.load(Relaxed) >> 20,
                st.aborts_sent.load(Relaxed),
                st.resets.load(Relaxed),
                st.unit_attentions.load(Relaxed),
                st.reconnects_abrupt.load(Relaxed) + st.reconnects_logout.load(Relaxed),
                st.errors.load(Relaxed),
            );
        }
    }
    let load_time = start.elapsed();
    for (i, h) in handles.into_iter().enumerate() {
        if h.join().is_err() {
            sh.error(format!("session {i} panicked"));
        }
    }
    // After everyone logged out: the daemon is idle.
    thread::sleep(Duration::from_secs(2));
    let end_rss = rss_kib(pid);
    let end_fds = fd_count(pid);
    let end_threads = thread_count(pid);
    // Once the blocking pool's idle threads have retired (10 s).
    thread::sleep(Duration::from_secs(12));
    let later_rss = rss_kib(pid);
    let later_threads = thread_count(pid);
    let idle_window = fresh_window(&sh, sessions + 1);
    let running = d.running();

    // Memory: the last half of the run against its first quarter.
    let run_secs = secs as f64;
    let first: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t <= run_secs / 4.0)
        .map(|s| s.1)
        .collect();
    let last: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= run_secs / 2.0)
        .map(|s| s.1)
        .collect();
    let first_max = first.iter().copied().max().unwrap_or(base_rss);
    let last_max = last.iter().copied().max().unwrap_or(0);
    let rss_limit = first_max * 3 / 2 + 64 * 1024;

    let mib = |b: &AtomicU64| b.load(Relaxed) as f64 / (1 << 20) as f64;
    let n = |c: &AtomicU64| c.load(Relaxed);
    let el = load_time.as_secs_f64();
    println!("==================== rtgt soak summary ====================");
    println!("duration        {el:.1} s (asked {secs} s; includes drain and final scans)");
    println!("sessions        {sessions} x QD{qd}, fileio LUN {size_mib} MiB, 512-byte blocks");
    println!(
        "commands        {} ({:.0}/s): {} READ, {} WRITE ({} FUA), {} SYNC CACHE, \
         {} probe TUR",
        n(&st.commands),
        n(&st.commands) as f64 / el,
        n(&st.reads),
        n(&st.writes),
        n(&st.fua_writes),
        n(&st.syncs),
        n(&st.probes)
    );
    println!(
        "data            read {:.1} MiB ({:.1} MiB/s), written {:.1} MiB ({:.1} MiB/s)",
        mib(&st.bytes_read),
        mib(&st.bytes_read) / el,
        mib(&st.bytes_written),
        mib(&st.bytes_written) / el
    );
    println!(
        "verification    {} READs verified: {} blocks exact, {} unknown blocks checked for \
         form; final scan {} blocks",
        n(&st.reads_verified),
        n(&st.blocks_verified),
        n(&st.blocks_unknown_checked),
        n(&st.scanned_blocks)
    );
    println!(
        "task management {} ABORT TASK ({} aborted, {} not found), {} LUN RESET, \
         {} UNIT ATTENTION, {} commands of unknown fate, {} late responses",
        n(&st.aborts_sent),
        n(&st.aborts_complete),
        n(&st.aborts_not_found),
        n(&st.resets),
        n(&st.unit_attentions),
        n(&st.ghosts),
        n(&st.late_responses)
    );
    println!(
        "reconnects      {} ({} abrupt, {} logout); {} logins ({} retries)",
        n(&st.reconnects_abrupt) + n(&st.reconnects_logout),
        n(&st.reconnects_abrupt),
        n(&st.reconnects_logout),
        n(&st.logins),
        n(&st.login_retries)
    );
    println!(
        "other           {} BUSY/TASK SET FULL, {} R2T, {} NOP-In, {} Async",
        n(&st.busy),
        n(&st.r2ts),
        n(&st.nops),
        n(&st.async_msgs)
    );
    println!(
        "window          {} idle checks, {} leaks; fresh session at the end: {:?}",
        n(&st.window_checks),
        n(&st.window_leaks),
        idle_window
    );
    println!(
        "daemon RSS      samples (s: KiB): {}",
        samples
            .iter()
            .map(|(t, r)| format!("{t:.0}:{r}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "                max first quarter {first_max} KiB, max last half {last_max} KiB \
         (limit {rss_limit})"
    );
    println!(
        "daemon idle     after the sessions: {end_rss} KiB, {end_threads} threads, {end_fds} fds; \
         12 s later: {later_rss} KiB, {later_threads} threads"
    );
    println!("errors          {}", n(&st.errors));
    for e in sh.errors.lock().unwrap().iter() {
        println!("  {e}");
    }
    println!("daemon running  {running}");
    let log = d.stderr();
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for line in log.lines() {
        // Group lines by their text without the timestamp and numbers.
        let key: String = strip_ansi(line)
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(160)
            .collect();
        match kinds.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => kinds.push((key, 1)),
        }
    }
    println!("daemon stderr   {} lines", log.lines().count());
    for (k, n) in kinds.iter().take(20) {
        println!("  {n:6} x {k}");
    }

    assert!(running, "the daemon died; stderr:\n{}", d.stderr());
    d.stop();
    println!("daemon exit     0 on SIGTERM");
    println!("===========================================================");
    assert_eq!(n(&st.errors), 0, "soak errors (see above)");
    assert_eq!(n(&st.window_leaks), 0, "leaked window");
    assert_eq!(idle_window, Some(WINDOW), "window of a fresh idle session");
    assert!(
        last_max <= rss_limit,
        "daemon memory grew: {last_max} KiB in the last half, limit {rss_limit} KiB"
    );
}
