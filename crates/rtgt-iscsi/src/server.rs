//! Accepting connections on the portals and running each one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::chap::Challenges;
use crate::gate::{LoginGate, LoginLimits};
use crate::pacing::{Pacer, PacingConfig};
use crate::session::SessionTable;
use crate::shards::Shards;
use crate::stats::{LoginFailureReason, LoginPhaseStats, ServerStats, StatsRegistry};
use crate::target::Targets;

/// Tunables of the iSCSI fabric.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our MaxRecvDataSegmentLength.
    pub max_recv_dsl: u32,
    pub first_burst: u32,
    pub max_burst: u32,
    pub max_outstanding_r2t: u32,
    /// Command window per session (MaxCmdSN - ExpCmdSN + 1).
    pub cmd_window: u32,
    /// Ping an idle connection after this long without a PDU...
    pub nop_interval: Duration,
    /// ...and drop it when the ping is not answered within this.
    pub nop_timeout: Duration,
    /// Time allowed for a login to complete.
    pub login_timeout: Duration,
    /// Time allowed from accept to the end of the security stage
    /// (authentication done): a peer that has proved nothing holds its
    /// place in the login phase at most this long.
    pub security_timeout: Duration,
    /// Bounds on connections in the login phase (see [`crate::gate`]).
    pub login_limits: LoginLimits,
    /// Pacing of failed authentication (see [`crate::pacing`]).
    pub pacing: PacingConfig,
    /// A write waiting this long for Data-Out that does not come ends its
    /// connection (error recovery level 0), as LIO's dataout_timeout.
    pub data_out_timeout: Duration,
    /// A connection whose initiator does not read its socket for this long
    /// is dropped.
    pub send_timeout: Duration,
    /// Bytes of replies a connection may have waiting to be sent before
    /// its reader stops taking new PDUs.
    pub reply_backlog: usize,
    /// Connections one source address may have open (in login or not);
    /// more are closed at once.
    pub max_connections_per_address: usize,
    /// Sessions one initiator name may have (discovery included); a login
    /// beyond gets 03/02 (out of resources).
    pub max_sessions_per_initiator: usize,
    /// Bytes of command data (READ and WRITE buffers) all sessions together
    /// may have in flight; beyond it, readers wait for data to drain.
    pub data_budget: u64,
    /// Runtimes (one thread each, see [`crate::shards`]) connections are
    /// spread over. 0 runs them on the runtime that calls
    /// [`Server::serve`].
    pub shards: usize,
    /// How long a runtime thread keeps polling after traffic instead of
    /// sleeping (see [`crate::busy_poll`]); zero turns it off.
    pub busy_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_recv_dsl: 256 * 1024,
            first_burst: 256 * 1024,
            max_burst: 1024 * 1024,
            max_outstanding_r2t: 8,
            cmd_window: 128,
            // Generous: an initiator may legitimately stop reading for a
            // while (libiscsi's SANITIZE reset test sleeps 60 s); a dead
            // connection costs little to keep a minute longer.
            nop_interval: Duration::from_secs(30),
            nop_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(15),
            security_timeout: Duration::from_secs(5),
            login_limits: LoginLimits::default(),
            pacing: PacingConfig::default(),
            data_out_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(60),
            reply_backlog: 4 << 20,
            max_connections_per_address: 256,
            max_sessions_per_initiator: 64,
            data_budget: 1 << 30,
            shards: 0,
            busy_poll: Duration::from_micros(100),
        }
    }
}

/// The iSCSI fabric: targets, live sessions, settings.
pub struct Server {
    targets: RwLock<Arc<Targets>>,
    pub sessions: Arc<SessionTable>,
    pub settings: Settings,
    /// Where connections run, and the data budget they charge.
    runs: Runs,
    /// Connections past login, which shutdown waits for (those still in
    /// login are simply dropped).
    connections: AtomicUsize,
    idle: Notify,
    /// Open connections per source address.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Session statistics and login counters.
    pub(crate) registry: Arc<StatsRegistry>,
    /// Connections in the login phase.
    pub(crate) gate: Arc<LoginGate>,
    /// Refused connections being answered 03/02 right now (bounded: past
    /// the bound they are closed without an answer).
    pub(crate) refusing: AtomicUsize,
    /// CHAP challenges outstanding on any connection: room for one per
    /// connection the gate lets into the login phase.
    pub(crate) challenges: Arc<Challenges>,
    /// Failed authentications by (initiator name, source).
    pub(crate) pacer: Mutex<Pacer>,
}

/// Refused connections answered at once, at most; more are closed.
pub(crate) const MAX_REFUSING: usize = 64;

impl Server {
    /// A server; starts its shards' threads when `settings.shards > 0`.
    pub fn new(targets: Targets, settings: Settings) -> std::io::Result<Arc<Server>> {
        let runs = match settings.shards {
            0 => Runs::Here(crate::budget::Budget::new(settings.data_budget)),
            n => Runs::Shards(Shards::start(n, settings.data_budget, settings.busy_poll)?),
        };
        Ok(Arc::new(Server {
            targets: RwLock::new(Arc::new(targets)),
            sessions: Arc::new(SessionTable::default()),
            runs,
            connections: AtomicUsize::new(0),
            idle: Notify::new(),
            per_address: Mutex::new(HashMap::new()),
            registry: Arc::new(StatsRegistry::default()),
            gate: LoginGate::new(settings.login_limits),
            refusing: AtomicUsize::new(0),
            challenges: Challenges::new(settings.login_limits.global.max(1)),
            pacer: Mutex::new(Pacer::new(settings.pacing.clone())),
            settings,
        }))
    }

    /// The per-CPU runtimes connections run on; none when they run on the
    /// runtime that serves (one CPU).
    pub fn runtimes(&self) -> Vec<tokio::runtime::Handle> {
        match &self.runs {
            Runs::Shards(shards) => shards.runtimes(),
            Runs::Here(_) => Vec::new(),
        }
    }

    /// Run a new connection: on the least loaded shard, or here.
    fn start_connection(
        self: &Arc<Self>,
        stream: tokio::net::TcpStream,
        local: SocketAddr,
        peer: SocketAddr,
        guard: AddressGuard,
    ) {
        let me = self.clone();
        let shards = match &self.runs {
            Runs::Shards(shards) => shards,
            Runs::Here(budget) => {
                let budget = budget.clone();
                tokio::spawn(async move {
                    crate::conn::run(me, stream, budget, local, peer).await;
                    drop(guard);
                });
                return;
            }
        };
        // Leave this runtime's reactor; the shard registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, "cannot hand the connection to a shard: {e}");
                return;
            }
        };
        shards.spawn(move |placement| async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    let budget = placement.budget.clone();
                    crate::conn::run(me, stream, budget, local, peer).await;
                }
                Err(e) => tracing::warn!(%peer, "cannot register the connection: {e}"),
            }
            drop(guard);
            drop(placement);
        });
    }

    /// The current target set (a snapshot; live changes swap it whole).
    pub fn targets(&self) -> Arc<Targets> {
        self.targets.read().unwrap().clone()
    }

    pub fn set_targets(&self, t: Targets) {
        *self.targets.write().unwrap() = Arc::new(t);
    }

    /// Accept connections until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if matches!(self.runs, Runs::Here(_)) {
            // Connections run on this runtime.
            crate::busy_poll::start(self.settings.busy_poll);
        }
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let Some(guard) = self.clone().admit_address(peer.ip()) else {
                            self.registry.login_failed(LoginFailureReason::TooManyConnections);
                            tracing::warn!(%peer, "connection refused: {} connections from this address already",
                                self.settings.max_connections_per_address);
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let local = stream.local_addr().unwrap_or(peer);
                        self.start_connection(stream, local, peer, guard);
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, go on.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// End every session and wait (up to `limit`) for their connections to
    /// finish, so in-flight commands complete or are failed before exit.
    pub async fn shutdown(&self, limit: Duration) {
        self.sessions.stop_all();
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.connections.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Statistics now: live sessions with their counters, totals per LU
    /// and per target port (every configured one, ended sessions
    /// included), login counters. Reads atomics and walks the target set;
    /// takes no lock the data path takes.
    pub fn stats(&self) -> ServerStats {
        let targets = self.targets();
        let groups: Vec<_> = targets
            .targets
            .iter()
            .flat_map(|t| t.groups.iter().map(move |g| (t.name.as_str(), g)))
            .map(|(name, g)| (name, g.tag, g.group.config()))
            .collect();
        let lus = groups
            .iter()
            .flat_map(|(_, _, c)| c.luns.values().map(|l| l.lu.config().name.as_str()));
        let ports = groups.iter().map(|&(name, tag, _)| (name, tag));
        let mut stats = self.registry.snapshot(lus, ports);
        let limits = self.gate.limits();
        stats.login_phase = LoginPhaseStats {
            in_login: self.gate.in_login() as u64,
            limit: limits.global as u64,
            limit_per_network: limits.per_network as u64,
            limit_per_initiator: limits.per_initiator as u64,
            security_timeout_seconds: self.settings.security_timeout.as_secs_f64(),
            login_timeout_seconds: self.settings.login_timeout.as_secs_f64(),
            challenges_outstanding: self.challenges.outstanding() as u64,
            challenges_capacity: self.challenges.capacity() as u64,
            paced_sources: self.pacer().len() as u64,
        };
        stats
    }

    /// The pacing table.
    pub(crate) fn pacer(&self) -> std::sync::MutexGuard<'_, Pacer> {
        crate::lock(&self.pacer)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Count a connection from `ip`, unless it already has the most.
    fn admit_address(self: Arc<Self>, ip: IpAddr) -> Option<AddressGuard> {
        let mut m = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.settings.max_connections_per_address {
            return None;
        }
        *n += 1;
        drop(m);
        Some(AddressGuard { server: self, ip })
    }

    /// A connection reached full feature phase: shutdown waits for it.
    pub(crate) fn serving(self: &Arc<Self>) -> ServingGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ServingGuard {
            server: self.clone(),
        }
    }
}

/// Where a server runs its connections.
enum Runs {
    /// On the runtime that calls [`Server::serve`], all charging one budget.
    Here(Arc<crate::budget::Budget>),
    /// Spread over per-CPU runtimes, each with its own budget.
    Shards(Shards),
}

/// One connection counted against its source address.
struct AddressGuard {
    server: Arc<Server>,
    ip: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut m = self
            .server
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A connection in full feature phase.
pub(crate) struct ServingGuard {
    server: Arc<Server>,
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        if self.server.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.server.idle.notify_waiters();
        }
    }
}

/// Bind a listener, with SO_REUSEADDR so a restarted daemon gets its port
/// back at once.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}
