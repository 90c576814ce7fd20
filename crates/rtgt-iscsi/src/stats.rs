//! Read-only statistics for the management plane: what each session is
//! (initiator, ISID, TSIH, connection, negotiated parameters, mapped LUNs),
//! command counters per LU, per session and per target port, and login
//! counters.
//!
//! The data path touches no counter shared between cores: a session (which
//! runs on one core) owns its counters, one [`IoCounters`] slot per LU it
//! sent commands to (made on its first command there) and one for commands
//! that reached no LU. A command's completion adds to its slot with relaxed
//! atomics. [`StatsRegistry::snapshot`] adds the slots up: per session, per
//! LU (by LU name) and per target port. When a session ends its totals are
//! folded into per-LU and per-port "retired" sums, under the same lock the
//! snapshot takes, so totals only ever grow (as Prometheus counters must).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rtgt_scsi::api::status;
use rtgt_scsi::{LunMap, Nexus};
use serde::Serialize;

/// Upper bounds of the latency histogram buckets, in nanoseconds; one more
/// bucket, +Inf, follows.
pub const LATENCY_BOUNDS_NS: [u64; 13] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Buckets of the latency histogram: one per bound, and +Inf.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// What kind of command, for the read / write counters: the READ and
/// WRITE family by opcode (not every command with Data-In is a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Read,
    Write,
    Other,
}

impl CommandKind {
    /// Classify a CDB by its operation code.
    pub fn of(cdb: &[u8]) -> CommandKind {
        match cdb.first() {
            // READ (6), (10), (12), (16).
            Some(0x08 | 0x28 | 0xa8 | 0x88) => CommandKind::Read,
            // WRITE (6), (10), (12), (16); WRITE AND VERIFY (10), (12),
            // (16); WRITE ATOMIC (16).
            Some(0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e | 0x9c) => CommandKind::Write,
            _ => CommandKind::Other,
        }
    }
}

/// One finished command, as the counters see it.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub kind: CommandKind,
    /// SCSI status it ended with.
    pub status: u8,
    /// Data-In bytes sent to the initiator.
    pub data_in: u64,
    /// Data-Out bytes it received and executed with.
    pub data_out: u64,
    /// From receipt of the command to its status.
    pub latency: Duration,
}

/// Live counters of one (session, LU) pair. Updated by one session only.
#[derive(Debug, Default)]
pub struct IoCounters {
    commands: AtomicU64,
    read_commands: AtomicU64,
    write_commands: AtomicU64,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
    latency_sum_ns: AtomicU64,
}

/// The histogram bucket of a latency.
fn bucket(ns: u64) -> usize {
    LATENCY_BOUNDS_NS.partition_point(|&b| b < ns)
}

impl IoCounters {
    /// Count a finished command.
    pub fn record(&self, c: &Completion) {
        self.commands.fetch_add(1, Relaxed);
        match c.kind {
            CommandKind::Read => self.read_commands.fetch_add(1, Relaxed),
            CommandKind::Write => self.write_commands.fetch_add(1, Relaxed),
            CommandKind::Other => 0,
        };
        if c.data_in > 0 {
            self.read_bytes.fetch_add(c.data_in, Relaxed);
        }
        let good = c.status == status::GOOD || c.status == status::CONDITION_MET;
        if good {
            if c.data_out > 0 {
                self.written_bytes.fetch_add(c.data_out, Relaxed);
            }
        } else {
            self.errors.fetch_add(1, Relaxed);
        }
        let ns = u64::try_from(c.latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency[bucket(ns)].fetch_add(1, Relaxed);
        self.latency_sum_ns.fetch_add(ns, Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> IoTotals {
        let mut buckets = [0u64; LATENCY_BUCKETS];
        for (b, a) in buckets.iter_mut().zip(&self.latency) {
            *b = a.load(Relaxed);
        }
        IoTotals {
            commands: self.commands.load(Relaxed),
            read_commands: self.read_commands.load(Relaxed),
            write_commands: self.write_commands.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            written_bytes: self.written_bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            latency: Latency {
                buckets,
                sum_ns: self.latency_sum_ns.load(Relaxed),
            },
        }
    }
}

/// A latency histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Commands per bucket (not cumulative): `buckets[i]` counts latencies
    /// in (`LATENCY_BOUNDS_NS[i-1]`, `LATENCY_BOUNDS_NS[i]`]; the last one
    /// those above the largest bound.
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all latencies, in nanoseconds.
    pub sum_ns: u64,
}

impl Latency {
    /// Commands measured.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of all latencies, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }
}

/// Command counters at one moment (or added up).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IoTotals {
    /// Commands that ended with a status (aborted ones, which get none,
    /// are not counted).
    pub commands: u64,
    /// READ (6/10/12/16) commands.
    pub read_commands: u64,
    /// WRITE (6/10/12/16), WRITE AND VERIFY and WRITE ATOMIC commands.
    pub write_commands: u64,
    /// Data-In bytes sent, of every command.
    pub read_bytes: u64,
    /// Data-Out bytes of commands that ended with GOOD status.
    pub written_bytes: u64,
    /// Commands that ended with a status other than GOOD (or CONDITION
    /// MET): CHECK CONDITION, RESERVATION CONFLICT, BUSY, TASK SET FULL...
    pub errors: u64,
    pub latency: Latency,
}

impl IoTotals {
    pub fn add(&mut self, o: &IoTotals) {
        self.commands += o.commands;
        self.read_commands += o.read_commands;
        self.write_commands += o.write_commands;
        self.read_bytes += o.read_bytes;
        self.written_bytes += o.written_bytes;
        self.errors += o.errors;
        for (a, b) in self.latency.buckets.iter_mut().zip(&o.latency.buckets) {
            *a += b;
        }
        self.latency.sum_ns += o.latency.sum_ns;
    }
}

/// The counters of one session for one LU (or, `lu` None, for commands to
/// LUNs that reach no LU).
#[derive(Debug)]
pub struct LuSlot {
    pub lu: Option<String>,
    pub counters: IoCounters,
}

/// Negotiated operational parameters of a session and its connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NegotiatedParams {
    /// The target's MaxRecvDataSegmentLength: the largest data segment
    /// the initiator may send.
    pub max_recv_data_segment_length: u32,
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment
    /// the target may send.
    pub initiator_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// "None" or "CRC32C".
    pub header_digest: String,
    pub data_digest: String,
    pub max_outstanding_r2t: u16,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    /// "None" or the CHAP variant that authenticated the initiator.
    pub auth_method: String,
}

/// One connection of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionView {
    pub cid: u16,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// What a session is, fixed at login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub initiator: String,
    pub initiator_alias: Option<String>,
    /// The ISID as 12 hex digits.
    pub isid: String,
    pub tsih: u16,
    /// "Normal" or "Discovery".
    pub session_type: String,
    /// The target's configured name (empty for discovery sessions).
    pub target: String,
    pub tpg: u16,
    pub connections: Vec<ConnectionView>,
    pub params: NegotiatedParams,
}

/// One LUN of a session's map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedLunView {
    pub lun: u64,
    /// The LU (backstore) name.
    pub lu: String,
    pub read_only: bool,
}

/// Counters of one LU (per session or in total).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LuStats {
    pub lu: String,
    #[serde(flatten)]
    pub totals: IoTotals,
}

/// A live session and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionStatsView {
    #[serde(flatten)]
    pub info: SessionInfo,
    /// The LUN map now.
    pub luns: Vec<MappedLunView>,
    /// All its commands.
    pub totals: IoTotals,
    /// Its commands per LU (LUs it sent commands to).
    pub lus: Vec<LuStats>,
}

/// Counters of one target port (target IQN and portal group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortStats {
    pub target: String,
    pub tpg: u16,
    /// Live normal sessions on it.
    pub sessions: u64,
    #[serde(flatten)]
    pub totals: IoTotals,
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailureReason {
    /// CHAP failed (or was required and not offered).
    AuthenticationFailed,
    /// The initiator may not use the target (no ACL).
    AuthorizationFailed,
    /// No such target (on this portal), or it was removed.
    TargetNotFound,
    /// A malformed or out-of-sequence login, missing or bad keys,
    /// unsupported version or session type.
    ProtocolError,
    /// Too many connections (from one address, or in a session).
    TooManyConnections,
    /// The initiator already has all the sessions it may have.
    TooManySessions,
    /// A bound on connections in the login phase was full (03/02).
    LoginLimit,
    /// The login did not complete in time.
    Timeout,
    /// The connection broke or was closed during login.
    ConnectionLost,
    Other,
}

impl LoginFailureReason {
    pub const ALL: [LoginFailureReason; 10] = [
        LoginFailureReason::AuthenticationFailed,
        LoginFailureReason::AuthorizationFailed,
        LoginFailureReason::TargetNotFound,
        LoginFailureReason::ProtocolError,
        LoginFailureReason::TooManyConnections,
        LoginFailureReason::TooManySessions,
        LoginFailureReason::LoginLimit,
        LoginFailureReason::Timeout,
        LoginFailureReason::ConnectionLost,
        LoginFailureReason::Other,
    ];

    /// The label value (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailureReason::AuthenticationFailed => "authentication_failed",
            LoginFailureReason::AuthorizationFailed => "authorization_failed",
            LoginFailureReason::TargetNotFound => "target_not_found",
            LoginFailureReason::ProtocolError => "protocol_error",
            LoginFailureReason::TooManyConnections => "too_many_connections",
            LoginFailureReason::TooManySessions => "too_many_sessions",
            LoginFailureReason::LoginLimit => "login_limit",
            LoginFailureReason::Timeout => "timeout",
            LoginFailureReason::ConnectionLost => "connection_lost",
            LoginFailureReason::Other => "other",
        }
    }

    /// The reason behind a failing login status (RFC 7143 11.13.5).
    pub fn from_status(class: u8, detail: u8) -> LoginFailureReason {
        use crate::login::status::*;
        match (class, detail) {
            AUTHENTICATION_FAILURE => LoginFailureReason::AuthenticationFailed,
            AUTHORIZATION_FAILURE => LoginFailureReason::AuthorizationFailed,
            NOT_FOUND | TARGET_REMOVED => LoginFailureReason::TargetNotFound,
            TOO_MANY_CONNECTIONS => LoginFailureReason::TooManyConnections,
            OUT_OF_RESOURCES => LoginFailureReason::TooManySessions,
            (2, _) => LoginFailureReason::ProtocolError,
            _ => LoginFailureReason::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Login counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoginStats {
    /// Logins that reached full feature phase (discovery included).
    pub succeeded: u64,
    /// Failed logins by reason (every reason present).
    pub failures: BTreeMap<&'static str, u64>,
    /// Failed authentications by reason (every reason present): what the
    /// CHAP exchange found wrong, or `locked_out` / `paced` when the
    /// proof was refused unchecked.
    pub auth_failures: BTreeMap<&'static str, u64>,
}

/// A proof refused unchecked: its (initiator name, source) is locked out...
pub const LOCKED_OUT: &str = "locked_out";
/// ...or its paced turn would come after the security deadline.
pub const PACED: &str = "paced";
/// Labels of [`LoginStats::auth_failures`] beyond the method's own.
pub const AUTH_REFUSED_LABELS: [&str; 2] = [LOCKED_OUT, PACED];

/// The login phase's bounds and what is in it now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoginPhaseStats {
    /// Connections in the login phase now.
    pub in_login: u64,
    /// Bounds on connections in the login phase: in all, per source
    /// network (/24 or /64), per initiator name.
    pub limit: u64,
    pub limit_per_network: u64,
    pub limit_per_initiator: u64,
    /// Deadlines: for authentication (the security stage), and for the
    /// whole login.
    pub security_timeout_seconds: f64,
    pub login_timeout_seconds: f64,
    /// CHAP challenges outstanding, and how many the record holds.
    pub challenges_outstanding: u64,
    pub challenges_capacity: u64,
    /// (initiator name, source) pairs with failed authentications on
    /// record (being paced).
    pub paced_sources: u64,
}

/// Everything [`crate::server::Server::stats`] reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerStats {
    /// Upper bounds of the latency buckets in seconds (+Inf follows).
    pub latency_bounds_seconds: Vec<f64>,
    /// Live sessions (normal and discovery).
    pub session_count: u64,
    /// Live sessions, ordered by target, TPG, initiator, ISID.
    pub sessions: Vec<SessionStatsView>,
    /// Every configured LU (and any LU that had commands), by name, with
    /// the commands of ended sessions included.
    pub lus: Vec<LuStats>,
    /// Every configured target port (and any with past sessions),
    /// with the commands of ended sessions included.
    pub ports: Vec<PortStats>,
    pub logins: LoginStats,
    pub login_phase: LoginPhaseStats,
}

/// The statistics side of one session, shared by its connection (which
/// counts) and the registry (which reads).
#[derive(Debug)]
pub struct SessionStats {
    info: SessionInfo,
    /// (target, tpg) for normal sessions.
    port: Option<(String, u16)>,
    nexus: Option<Weak<Nexus>>,
    slots: Mutex<Vec<Arc<LuSlot>>>,
    no_lu: Arc<LuSlot>,
}

use crate::lock;

impl SessionStats {
    pub fn new(info: SessionInfo, nexus: Option<&Arc<Nexus>>) -> Arc<SessionStats> {
        let port = (info.session_type == "Normal").then(|| (info.target.clone(), info.tpg));
        Arc::new(SessionStats {
            info,
            port,
            nexus: nexus.map(Arc::downgrade),
            slots: Mutex::new(Vec::new()),
            no_lu: Arc::new(LuSlot {
                lu: None,
                counters: IoCounters::default(),
            }),
        })
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The slot of the LU named `lu`, made on first use.
    pub fn slot(&self, lu: &str) -> Arc<LuSlot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.iter().find(|s| s.lu.as_deref() == Some(lu)) {
            return s.clone();
        }
        let s = Arc::new(LuSlot {
            lu: Some(lu.to_string()),
            counters: IoCounters::default(),
        });
        slots.push(s.clone());
        s
    }

    /// The slot of commands that reach no LU.
    pub fn no_lu(&self) -> &Arc<LuSlot> {
        &self.no_lu
    }

    /// Per-LU totals and the session's total.
    fn totals(&self) -> (Vec<LuStats>, IoTotals) {
        let mut total = self.no_lu.counters.snapshot();
        let mut lus: Vec<LuStats> = lock(&self.slots)
            .iter()
            .filter_map(|s| {
                let t = s.counters.snapshot();
                total.add(&t);
                s.lu.clone().map(|lu| LuStats { lu, totals: t })
            })
            .collect();
        lus.sort_by(|a, b| a.lu.cmp(&b.lu));
        (lus, total)
    }

    fn mapped_luns(&self) -> Vec<MappedLunView> {
        let Some(n) = self.nexus.as_ref().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        n.luns()
            .luns
            .iter()
            .map(|(&lun, m)| MappedLunView {
                lun,
                lu: m.lu.config().name.clone(),
                read_only: m.read_only,
            })
            .collect()
    }
}

/// A connection's way from a LUN number to its counters: a cache of its
/// session's slots by LUN, rebuilt when the nexus' LUN map is swapped. Owned
/// by the connection's reader, so no lock on the way.
pub struct LunSlots {
    stats: Arc<SessionStats>,
    map: Option<Arc<LunMap>>,
    by_lun: HashMap<u64, Arc<LuSlot>>,
}

impl LunSlots {
    pub fn new(stats: Arc<SessionStats>) -> LunSlots {
        LunSlots {
            stats,
            map: None,
            by_lun: HashMap::new(),
        }
    }

    /// The counters of a command to `lun` on `nexus` (None: no nexus, as in
    /// a discovery session).
    pub fn slot(&mut self, nexus: Option<&Arc<Nexus>>, lun: u64) -> Arc<LuSlot> {
        let Some(nexus) = nexus else {
            return self.stats.no_lu.clone();
        };
        if !self.map.as_ref().is_some_and(|m| nexus.luns_are(m)) {
            self.by_lun.clear();
            self.map = Some(nexus.luns());
        }
        if let Some(s) = self.by_lun.get(&lun) {
            return s.clone();
        }
        let s = match self.map.as_ref().and_then(|m| m.luns.get(&lun)) {
            Some(m) => self.stats.slot(&m.lu.config().name),
            None => self.stats.no_lu.clone(),
        };
        // LUNs that reach nothing are not cached: a hostile initiator could
        // name 2^64 of them.
        if s.lu.is_some() {
            self.by_lun.insert(lun, s.clone());
        }
        s
    }
}

/// Login counters: rare events, shared atomics.
#[derive(Debug, Default)]
struct LoginCounters {
    succeeded: AtomicU64,
    failures: [AtomicU64; LoginFailureReason::ALL.len()],
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    live: BTreeMap<u64, Arc<SessionStats>>,
    retired_lus: HashMap<String, IoTotals>,
    retired_ports: HashMap<(String, u16), IoTotals>,
}

/// Every session's statistics, the totals of ended sessions, and the login
/// counters.
#[derive(Default)]
pub struct StatsRegistry {
    inner: Mutex<Registry>,
    logins: LoginCounters,
    /// Not on any I/O path: a map behind a lock will do.
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
}

/// A session's place in the registry; dropping it (when the session ends)
/// folds the session's totals into the retired sums.
pub struct Registered {
    registry: Arc<StatsRegistry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = lock(&self.registry.inner);
        let Some(s) = r.live.remove(&self.id) else {
            return;
        };
        let (lus, total) = s.totals();
        for l in lus {
            r.retired_lus.entry(l.lu).or_default().add(&l.totals);
        }
        if let Some(port) = &s.port {
            r.retired_ports.entry(port.clone()).or_default().add(&total);
        }
    }
}

impl StatsRegistry {
    /// Enter a live session.
    pub fn register(self: &Arc<Self>, s: Arc<SessionStats>) -> Registered {
        let mut r = lock(&self.inner);
        r.next_id += 1;
        let id = r.next_id;
        r.live.insert(id, s);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    pub fn login_succeeded(&self) {
        self.logins.succeeded.fetch_add(1, Relaxed);
    }

    pub fn login_failed(&self, why: LoginFailureReason) {
        self.logins.failures[why.index()].fetch_add(1, Relaxed);
    }

    /// Count a failed authentication under `label` (a method's failure
    /// label, or one of [`AUTH_REFUSED_LABELS`]).
    pub fn auth_failed(&self, label: &'static str) {
        *lock(&self.auth_failures).entry(label).or_default() += 1;
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.inner).live.len()
    }

    /// Add everything up. `lus` and `ports` name the configured LUs and
    /// target ports, reported even before their first command.
    pub fn snapshot<'a>(
        &self,
        lus: impl IntoIterator<Item = &'a str>,
        ports: impl IntoIterator<Item = (&'a str, u16)>,
    ) -> ServerStats {
        let mut lu_totals: HashMap<String, IoTotals> = HashMap::new();
        for l in lus {
            if !lu_totals.contains_key(l) {
                lu_totals.insert(l.to_string(), IoTotals::default());
            }
        }
        let mut port_totals: HashMap<(String, u16), (u64, IoTotals)> = ports
            .into_iter()
            .map(|(t, tag)| ((t.to_string(), tag), (0, IoTotals::default())))
            .collect();
        let mut sessions = Vec::with_capacity(self.session_count());
        {
            let r = lock(&self.inner);
            for s in r.live.values() {
                let (lus, total) = s.totals();
                for l in &lus {
                    match lu_totals.get_mut(&l.lu) {
                        Some(t) => t.add(&l.totals),
                        None => {
                            lu_totals.insert(l.lu.clone(), l.totals.clone());
                        }
                    }
                }
                if let Some(port) = &s.port {
                    let p = port_totals.entry(port.clone()).or_default();
                    p.0 += 1;
                    p.1.add(&total);
                }
                sessions.push((s.clone(), total, lus));
            }
            for (lu, t) in &r.retired_lus {
                match lu_totals.get_mut(lu) {
                    Some(x) => x.add(t),
                    None => {
                        lu_totals.insert(lu.clone(), t.clone());
                    }
                }
            }
            for (port, t) in &r.retired_ports {
                port_totals.entry(port.clone()).or_default().1.add(t);
            }
        }
        // The LUN maps outside the lock: sessions may come and go meanwhile.
        let mut sessions: Vec<SessionStatsView> = sessions
            .into_iter()
            .map(|(s, totals, lus)| SessionStatsView {
                info: s.info.clone(),
                luns: s.mapped_luns(),
                totals,
                lus,
            })
            .collect();
        sessions.sort_by(|a, b| {
            (&a.info.target, a.info.tpg, &a.info.initiator, &a.info.isid).cmp(&(
                &b.info.target,
                b.info.tpg,
                &b.info.initiator,
                &b.info.isid,
            ))
        });
        let mut lus: Vec<LuStats> = lu_totals
            .into_iter()
            .map(|(lu, totals)| LuStats { lu, totals })
            .collect();
        lus.sort_by(|a, b| a.lu.cmp(&b.lu));
        let mut ports: Vec<PortStats> = port_totals
            .into_iter()
            .map(|((target, tpg), (sessions, totals))| PortStats {
                target,
                tpg,
                sessions,
                totals,
            })
            .collect();
        ports.sort_by(|a, b| (&a.target, a.tpg).cmp(&(&b.target, b.tpg)));
        ServerStats {
            latency_bounds_seconds: LATENCY_BOUNDS_NS.iter().map(|&n| n as f64 / 1e9).collect(),
            session_count: sessions.len() as u64,
            sessions,
            lus,
            ports,
            logins: LoginStats {
                succeeded: self.logins.succeeded.load(Relaxed),
                failures: LoginFailureReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), self.logins.failures[r.index()].load(Relaxed)))
                    .collect(),
                auth_failures: {
                    let mut m: BTreeMap<&'static str, u64> = crate::chap::ChapFailure::LABELS
                        .iter()
                        .chain(AUTH_REFUSED_LABELS.iter())
                        .map(|l| (*l, 0))
                        .collect();
                    for (l, n) in lock(&self.auth_failures).iter() {
                        *m.entry(l).or_default() += n;
                    }
                    m
                },
            },
            login_phase: LoginPhaseStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(kind: CommandKind, status: u8, data_in: u64, data_out: u64, us: u64) -> Completion {
        Completion {
            kind,
            status,
            data_in,
            data_out,
            latency: Duration::from_micros(us),
        }
    }

    fn info(target: &str, tpg: u16, initiator: &str) -> SessionInfo {
        SessionInfo {
            initiator: initiator.into(),
            initiator_alias: None,
            isid: "400001370000".into(),
            tsih: 1,
            session_type: "Normal".into(),
            target: target.into(),
            tpg,
            connections: vec![ConnectionView {
                cid: 0,
                local: "127.0.0.1:3260".parse().unwrap(),
                peer: "127.0.0.1:40000".parse().unwrap(),
            }],
            params: NegotiatedParams::default(),
        }
    }

    /// A normal session's stats without a nexus (which only supplies the
    /// mapped LUN view).
    fn session(target: &str, tpg: u16, initiator: &str) -> Arc<SessionStats> {
        SessionStats::new(info(target, tpg, initiator), None)
    }

    #[test]
    fn buckets_are_upper_inclusive() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(50_000), 0);
        assert_eq!(bucket(50_001), 1);
        assert_eq!(bucket(1_000_000), 4);
        assert_eq!(bucket(1_000_000_000), 12);
        assert_eq!(bucket(1_000_000_001), 13);
        assert_eq!(bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn commands_are_classified_by_opcode() {
        assert_eq!(CommandKind::of(&[0x28, 0]), CommandKind::Read);
        assert_eq!(CommandKind::of(&[0x88]), CommandKind::Read);
        assert_eq!(CommandKind::of(&[0x2a]), CommandKind::Write);
        assert_eq!(CommandKind::of(&[0x8e]), CommandKind::Write);
        assert_eq!(CommandKind::of(&[0x12]), CommandKind::Other);
        assert_eq!(CommandKind::of(&[]), CommandKind::Other);
    }

    #[test]
    fn counters_record_what_completed() {
        let c = IoCounters::default();
        c.record(&done(CommandKind::Read, status::GOOD, 4096, 0, 30));
        c.record(&done(CommandKind::Write, status::GOOD, 0, 8192, 700));
        // A failed write: an error, and its bytes were not written.
        c.record(&done(
            CommandKind::Write,
            status::CHECK_CONDITION,
            0,
            512,
            2_000_000,
        ));
        c.record(&done(CommandKind::Other, status::GOOD, 36, 0, 10));
        c.record(&done(
            CommandKind::Other,
            status::RESERVATION_CONFLICT,
            0,
            0,
            10,
        ));
        let t = c.snapshot();
        assert_eq!(t.commands, 5);
        assert_eq!(t.read_commands, 1);
        assert_eq!(t.write_commands, 2);
        assert_eq!(t.read_bytes, 4096 + 36);
        assert_eq!(t.written_bytes, 8192);
        assert_eq!(t.errors, 2);
        assert_eq!(t.latency.count(), 5);
        assert_eq!(t.latency.buckets[0], 3);
        assert_eq!(t.latency.buckets[4], 1); // 700 us: (500us, 1ms]
        assert_eq!(t.latency.buckets[LATENCY_BUCKETS - 1], 1); // 2 s
        assert_eq!(t.latency.sum_ns, (30 + 700 + 2_000_000 + 10 + 10) * 1000);
    }

    #[test]
    fn snapshot_adds_up_sessions_and_keeps_ended_ones() {
        let reg = Arc::new(StatsRegistry::default());
        let a = session("iqn.t1", 1, "iqn.i1");
        let b = session("iqn.t1", 1, "iqn.i2");
        let c = session("iqn.t2", 2, "iqn.i1");
        let ra = reg.register(a.clone());
        let rb = reg.register(b.clone());
        let _rc = reg.register(c.clone());
        let read = done(CommandKind::Read, status::GOOD, 512, 0, 80);
        let write = done(CommandKind::Write, status::GOOD, 0, 1024, 80);
        // The same slot comes back for the same LU.
        assert!(Arc::ptr_eq(&a.slot("ram0"), &a.slot("ram0")));
        a.slot("ram0").counters.record(&read);
        a.slot("ram0").counters.record(&write);
        a.slot("ram1").counters.record(&read);
        a.no_lu()
            .counters
            .record(&done(CommandKind::Other, status::CHECK_CONDITION, 0, 0, 5));
        b.slot("ram0").counters.record(&read);
        c.slot("ram1").counters.record(&write);

        let s = reg.snapshot(["ram0", "ram1", "idle"], [("iqn.t1", 1), ("iqn.t2", 2)]);
        assert_eq!(s.session_count, 3);
        let lu =
            |s: &ServerStats, n: &str| s.lus.iter().find(|l| l.lu == n).unwrap().totals.clone();
        assert_eq!(lu(&s, "ram0").commands, 3);
        assert_eq!(lu(&s, "ram0").read_bytes, 1024);
        assert_eq!(lu(&s, "ram0").written_bytes, 1024);
        assert_eq!(lu(&s, "ram1").commands, 2);
        assert_eq!(lu(&s, "idle"), IoTotals::default());
        let p1 = &s.ports[0];
        assert_eq!((p1.target.as_str(), p1.tpg, p1.sessions), ("iqn.t1", 1, 2));
        // The command to no LU counts for the session and the port.
        assert_eq!(p1.totals.commands, 5);
        assert_eq!(p1.totals.errors, 1);
        assert_eq!(s.ports[1].totals.commands, 1);
        let sa = s
            .sessions
            .iter()
            .find(|v| v.info.initiator == "iqn.i1" && v.info.target == "iqn.t1")
            .unwrap();
        assert_eq!(sa.totals.commands, 4);
        assert_eq!(
            sa.lus
                .iter()
                .map(|l| (l.lu.as_str(), l.totals.commands))
                .collect::<Vec<_>>(),
            [("ram0", 2), ("ram1", 1)]
        );

        // Ending sessions keeps every total where it was.
        drop(ra);
        drop(rb);
        let after = reg.snapshot(["ram0", "ram1", "idle"], [("iqn.t1", 1), ("iqn.t2", 2)]);
        assert_eq!(after.session_count, 1);
        assert_eq!(after.lus, s.lus);
        assert_eq!(after.ports[0].totals, s.ports[0].totals);
        assert_eq!(after.ports[0].sessions, 0);
        // A later session on the same LU adds to them.
        let d = session("iqn.t1", 1, "iqn.i3");
        let _rd = reg.register(d.clone());
        d.slot("ram0").counters.record(&read);
        let later = reg.snapshot(["ram0"], [("iqn.t1", 1)]);
        assert_eq!(lu(&later, "ram0").commands, 4);
        assert_eq!(later.ports[0].totals.commands, 6);
        // An LU no longer configured still shows what it did.
        assert_eq!(lu(&later, "ram1").commands, 2);
    }

    #[test]
    fn a_scrape_of_a_thousand_lus_and_a_hundred_sessions_is_cheap() {
        let reg = Arc::new(StatsRegistry::default());
        let names: Vec<String> = (0..1000).map(|i| format!("lu{i}")).collect();
        let mut held = Vec::new();
        for i in 0..100 {
            let s = session("iqn.t", 1, &format!("iqn.i{i}"));
            // Each session busy on ten LUs.
            for j in 0..10 {
                let c = s.slot(&names[(i * 10 + j) % 1000]);
                c.counters
                    .record(&done(CommandKind::Read, status::GOOD, 4096, 0, 90));
            }
            held.push(reg.register(s));
        }
        let t = std::time::Instant::now();
        let snap = reg.snapshot(names.iter().map(String::as_str), [("iqn.t", 1)]);
        let took = t.elapsed();
        assert_eq!(snap.lus.len(), 1000);
        assert_eq!(snap.sessions.len(), 100);
        assert!(snap.lus.iter().all(|l| l.totals.commands == 1));
        assert_eq!(snap.ports[0].totals.commands, 1000);
        assert_eq!(snap.ports[0].totals.read_bytes, 4096 * 1000);
        // Milliseconds in a release build; generous for debug builds.
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn login_counters_by_reason() {
        let reg = StatsRegistry::default();
        reg.login_succeeded();
        reg.login_succeeded();
        reg.login_failed(LoginFailureReason::from_status(2, 1));
        reg.login_failed(LoginFailureReason::from_status(2, 2));
        reg.login_failed(LoginFailureReason::from_status(2, 3));
        reg.login_failed(LoginFailureReason::from_status(2, 7));
        reg.login_failed(LoginFailureReason::from_status(3, 2));
        reg.login_failed(LoginFailureReason::from_status(3, 0));
        reg.login_failed(LoginFailureReason::Timeout);
        let l = reg.snapshot([], []).logins;
        assert_eq!(l.succeeded, 2);
        assert_eq!(l.failures.len(), LoginFailureReason::ALL.len());
        for (reason, n) in [
            ("authentication_failed", 1),
            ("authorization_failed", 1),
            ("target_not_found", 1),
            ("protocol_error", 1),
            ("too_many_sessions", 1),
            ("other", 1),
            ("timeout", 1),
            ("too_many_connections", 0),
            ("connection_lost", 0),
        ] {
            assert_eq!(l.failures[reason], n, "{reason}");
        }
    }

    #[test]
    fn stats_serialize() {
        // The daemon returns them as JSON; serde must accept every type.
        fn is_serialize<T: Serialize>() {}
        is_serialize::<ServerStats>();
    }
}
