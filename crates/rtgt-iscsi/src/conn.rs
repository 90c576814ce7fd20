//! One TCP connection from accept to close: login, then the full feature
//! phase with its writer task and idle watchdog.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::discovery::TextExchange;
use crate::ffp::{End, Ffp, FfpParams, Liveness, TextService, PING_TTT};
use crate::negotiation::SessionType;
use crate::outbox::Outbox;
use crate::pdu::{op, Bhs, RESERVED_TAG};
use crate::server::Server;
use crate::session::SessionKey;
use crate::stats::{ConnectionView, SessionInfo, SessionStats};
use crate::wire::{Digests, Outgoing, PduReader, PduWriter, SendLimits, Window};

/// What a successful login hands to the full feature phase.
pub(crate) struct LoggedIn {
    /// What the access model admitted (normal sessions).
    pub admission: Option<rtgt_scsi::access::Admission>,
    pub discovery: bool,
    pub initiator: String,
    pub initiator_alias: Option<String>,
    pub isid: [u8; 6],
    pub target: String,
    pub tpg_tag: u16,
    /// The connection's CID.
    pub cid: u16,
    /// Negotiated parameters as the statistics report them.
    pub negotiated: crate::stats::NegotiatedParams,
    pub ffp: FfpParams,
    /// The initiator's MaxRecvDataSegmentLength.
    pub max_send_dsl: u32,
    pub max_burst: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Next StatSN and ExpCmdSN after the final login response.
    pub stat_sn: u32,
    pub exp_cmdsn: u32,
    /// Session registration (normal sessions), made during login so the
    /// final response carries the TSIH.
    pub registration: Option<crate::session::Registration>,
}

type Reader = PduReader<BufReader<tokio::net::tcp::OwnedReadHalf>>;

pub(crate) async fn run(
    server: Arc<Server>,
    stream: TcpStream,
    budget: Arc<crate::budget::Budget>,
    local: SocketAddr,
    peer: SocketAddr,
) {
    let (rd, mut wr) = stream.into_split();
    let digests = Arc::new(Digests::default());
    let mut reader = PduReader::new(BufReader::with_capacity(64 * 1024, rd), digests.clone());
    let mut ticket = match server.gate.enter(peer.ip()) {
        Ok(t) => t,
        Err(full) => {
            server
                .registry
                .login_failed(crate::stats::LoginFailureReason::LoginLimit);
            tracing::warn!(%peer, "login refused (03/02): {full} at the limit");
            crate::login_phase::refuse(&server, &mut reader, &mut wr).await;
            return;
        }
    };
    let login = tokio::time::timeout(
        server.settings.login_timeout,
        crate::login_phase::login(&server, &mut reader, &mut wr, (local, peer), &mut ticket),
    )
    .await;
    // Out of the login phase: the place goes to the next connection.
    drop(ticket);
    let logged_in = match login {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::info!(%peer, "login failed: {e}");
            server.registry.login_failed(e.reason);
            let _ = wr.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "login timed out");
            server
                .registry
                .login_failed(crate::stats::LoginFailureReason::Timeout);
            return;
        }
    };
    server.registry.login_succeeded();
    tracing::info!(%peer, initiator = %logged_in.initiator, target = %logged_in.target,
        discovery = logged_in.discovery, "login complete");
    let _serving = server.serving();
    full_feature(
        server,
        reader,
        wr,
        digests,
        budget,
        (local, peer),
        logged_in,
    )
    .await;
}

async fn full_feature(
    server: Arc<Server>,
    mut reader: Reader,
    wr: OwnedWriteHalf,
    digests: Arc<Digests>,
    budget: Arc<crate::budget::Budget>,
    (local, peer): (SocketAddr, SocketAddr),
    l: LoggedIn,
) {
    digests.header.store(l.header_digest, Ordering::Relaxed);
    digests.data.store(l.data_digest, Ordering::Relaxed);
    let window = Window::new(l.exp_cmdsn, server.settings.cmd_window);
    let limits = Arc::new(SendLimits {
        max_send_dsl: l.max_send_dsl.into(),
        max_burst: l.max_burst.into(),
    });
    let (tx, rx) = Outbox::new(server.settings.reply_backlog);
    let mut writer = PduWriter::new(wr, digests.clone(), window.clone(), limits.clone());
    writer.stat_sn = l.stat_sn;
    writer.send_timeout = server.settings.send_timeout;
    let mut writer_task = tokio::spawn(writer.run(rx, tx.backlog().clone()));

    let targets = server.targets();
    let target = (!l.discovery).then(|| targets.find(&l.target)).flatten();
    let nexus = if l.discovery {
        None
    } else {
        let group = target.and_then(|t| t.groups.iter().find(|g| g.tag == l.tpg_tag));
        let (Some(group), Some(admission)) = (group, l.admission.as_ref()) else {
            return;
        };
        let initiator_port = format!("{},i,0x{}", l.initiator, hex(&l.isid));
        match group.group.open_nexus(
            &crate::target::initiator_key(&l.initiator),
            initiator_port,
            admission,
        ) {
            Ok(n) => Some(n),
            Err(e) => {
                // The configuration changed between login and now.
                tracing::warn!(initiator = %l.initiator, "session refused: {e}");
                return;
            }
        }
    };
    let text = TextService {
        session_type: if l.discovery {
            SessionType::Discovery
        } else {
            SessionType::Normal
        },
        session_target: if l.discovery {
            None
        } else {
            Some(l.target.clone())
        },
        targets: crate::login_phase::visible_targets(&targets, &l.initiator),
        local,
        exchange: TextExchange::new(),
    };
    let stats = SessionStats::new(
        SessionInfo {
            initiator: l.initiator.clone(),
            initiator_alias: l.initiator_alias.clone(),
            isid: hex(&l.isid),
            tsih: l.registration.as_ref().map_or(0, |r| r.tsih),
            session_type: if l.discovery { "Discovery" } else { "Normal" }.to_string(),
            // The configured name, as the per-port totals know it.
            target: target.map_or_else(|| l.target.clone(), |t| t.name.clone()),
            tpg: l.tpg_tag,
            connections: vec![ConnectionView {
                cid: l.cid,
                local,
                peer,
            }],
            params: l.negotiated.clone(),
        },
        nexus.as_ref(),
    );
    let _registered = server.registry.register(stats.clone());
    let liveness = Arc::new(Liveness::default());
    let mut ffp = Ffp::new(
        nexus.clone(),
        window,
        tx.clone(),
        l.ffp.clone(),
        liveness.clone(),
        text,
        limits,
    )
    .with_budget(budget)
    .with_stats(stats);

    let mut stop = l.registration.as_ref().map(|r| r.stop.clone());
    let settings = server.settings.clone();
    let watchdog = {
        let tx = tx.clone();
        let liveness = liveness.clone();
        async move {
            // Ping a quiet connection; give up on one that stays silent,
            // and on one that leaves a write without its Data-Out.
            let tick = settings
                .nop_interval
                .min(settings.nop_timeout)
                .min(settings.data_out_timeout)
                / 4;
            let mut pinged_at = None;
            loop {
                tokio::time::sleep(tick.max(std::time::Duration::from_millis(50))).await;
                if liveness
                    .data_out_wait()
                    .is_some_and(|w| w >= settings.data_out_timeout)
                {
                    // ERL 0: the data cannot be recovered; dropping the
                    // connection ends its commands (and the task-set
                    // barriers an ORDERED one holds).
                    return format!(
                        "no Data-Out for a write within {:?}",
                        settings.data_out_timeout
                    );
                }
                let idle = liveness.idle();
                if idle < settings.nop_interval {
                    pinged_at = None;
                    continue;
                }
                match pinged_at {
                    None => {
                        let mut b = Bhs::new(op::NOP_IN);
                        b.set_flags(0x80);
                        b.set_itt(RESERVED_TAG);
                        b.set_u32_at(20, PING_TTT);
                        tx.send(Outgoing::Pdu {
                            bhs: b,
                            data: Bytes::new(),
                        });
                        pinged_at = Some(std::time::Instant::now());
                    }
                    Some(t) if t.elapsed() >= settings.nop_timeout => {
                        return "initiator did not answer NOP-In ping".to_string()
                    }
                    Some(_) => {}
                }
            }
        }
    };
    let stopped = async {
        match stop.as_mut() {
            Some(s) => {
                let _ = s.wait_for(|v| *v).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    // The access model ends the session when its ACL is removed or its
    // authentication changes.
    let revoked = async {
        match &nexus {
            Some(n) => n.revoked().await,
            None => std::future::pending::<()>().await,
        }
    };
    let mut writer_done = false;
    let end = tokio::select! {
        e = ffp.run(&mut reader) => e,
        why = watchdog => End::Error(why),
        r = &mut writer_task => {
            writer_done = true;
            End::Error(match r {
                Ok(Ok(())) => "writer ended".into(),
                Ok(Err(e)) => format!("sending: {e}"),
                Err(e) => format!("writer: {e}"),
            })
        }
        _ = stopped => End::Error("session ended by the target (reinstatement or shutdown)".into()),
        _ = revoked => End::Error("session ended: its access was revoked by a configuration change".into()),
    };
    match &end {
        End::Logout | End::Closed => {
            tracing::info!(initiator = %l.initiator, "connection ended: {end:?}")
        }
        End::Error(e) => tracing::warn!(initiator = %l.initiator, "connection dropped: {e}"),
    }
    // Abort what is still running for this nexus, then let the writer drain.
    drop(ffp);
    if let Some(n) = &nexus {
        n.close();
        // Before the session's registration goes (letting a reinstating
        // login in): nothing of this session may land after its writes.
        n.quiesce().await;
    }
    drop(tx);
    if !writer_done {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer_task).await;
    }
    drop(l.registration);
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn session_key(initiator: &str, isid: [u8; 6], target: &str, tpg: u16) -> SessionKey {
    SessionKey {
        initiator: initiator.to_ascii_lowercase(),
        isid,
        target: target.to_ascii_lowercase(),
        tpg,
    }
}
