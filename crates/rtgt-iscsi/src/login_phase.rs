//! The login phase on a real connection: feeds Login Request PDUs to the
//! sans-IO [`Login`] state machine, answers from the configured targets,
//! registers the session (TSIH, reinstatement) and hands over to the full
//! feature phase.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::chap::Chap;
use crate::conn::{session_key, LoggedIn};
use crate::discovery::TargetPortals;
use crate::ffp::FfpParams;
use crate::gate::{Full, LoginTicket};
use crate::lock;
use crate::login::{
    status, AuthPolicy, Login, LoginConfig, LoginFailure, LoginRequest, LoginResponse, Lookup,
    Step, TargetDirectory, TargetInfo, STAGE_SECURITY,
};
use crate::negotiation::{Digest, NegotiationConfig, SessionType};
use crate::pacing::{Admit, PaceKey};
use crate::pdu::{op, reject, Bhs};
use crate::server::Server;
use crate::stats::{LoginFailureReason, NegotiatedParams};
use crate::target::{initiator_key, Targets};
use crate::text;
use crate::wire::{encode_simple, PduReader, ReadError};
use rtgt_scsi::access::{Admission, ChapAuth};

/// Answers the login state machine's questions from the target set, for a
/// connection that arrived on `local`; keeps what the core's access model
/// admitted, for the nexus made when the login completes.
struct Directory<'a> {
    server: &'a Server,
    targets: &'a Targets,
    local: SocketAddr,
    admitted: Mutex<Option<Admission>>,
    /// This connection's place in the login phase, counted against the
    /// initiator name once the login names one.
    ticket: Mutex<&'a mut LoginTicket>,
    /// The bound that refused the login, if one did.
    limited: Mutex<Option<Full>>,
}

impl Directory<'_> {
    fn chap(&self, auth: Option<ChapAuth>, initiator_name: &str) -> AuthPolicy {
        match auth {
            None => AuthPolicy::None,
            Some(a) => AuthPolicy::Required(Box::new(Chap::new(
                a,
                &self.targets.chap,
                self.server.challenges.clone(),
                initiator_name.to_string(),
            ))),
        }
    }

    /// Whether the initiator already has all the sessions it may, or all
    /// the connections in login.
    fn at_limit(&self, initiator_name: &str) -> bool {
        if let Err(full) = lock(&self.ticket).name(initiator_name) {
            tracing::warn!(initiator = %initiator_name, "login refused (03/02): {full} at the limit");
            *lock(&self.limited) = Some(full);
            return true;
        }
        let n = self.server.sessions.count_for(initiator_name);
        let max = self.server.settings.max_sessions_per_initiator;
        if n >= max {
            tracing::warn!(initiator = %initiator_name, "login refused: {n} sessions already (limit {max})");
        }
        n >= max
    }
}

impl TargetDirectory for Directory<'_> {
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Lookup {
        if self.at_limit(initiator_name) {
            return Lookup::OutOfResources;
        }
        let Some(t) = self.targets.find(target_name) else {
            return Lookup::NotFound;
        };
        // A target not served on this portal is, from here, not found.
        let Some(g) = t.group_for(self.local) else {
            return Lookup::NotFound;
        };
        let Some(admission) = g.group.admit(&initiator_key(initiator_name)) else {
            tracing::warn!(initiator = %initiator_name, target = %t.name, "login refused: no ACL for this initiator");
            return Lookup::NotAllowed;
        };
        let auth = self.chap(admission.auth().cloned(), initiator_name);
        *lock(&self.admitted) = Some(admission);
        Lookup::Found(TargetInfo {
            alias: t.alias.clone(),
            auth,
        })
    }

    fn lookup_discovery(&self, initiator_name: &str) -> Lookup {
        if self.at_limit(initiator_name) {
            return Lookup::OutOfResources;
        }
        Lookup::Found(TargetInfo {
            alias: None,
            auth: self.chap(self.targets.discovery_auth.clone(), initiator_name),
        })
    }

    fn session_exists(&self, initiator_name: &str, isid: [u8; 6], tsih: u16) -> bool {
        self.targets.targets.iter().any(|t| {
            t.groups.iter().any(|g| {
                self.server
                    .sessions
                    .exists(&session_key(initiator_name, isid, &t.name, g.tag), tsih)
            })
        })
    }
}

/// Targets and portals an initiator may learn of through SendTargets: only
/// the groups it may log in to.
pub(crate) fn visible_targets(targets: &Targets, initiator: &str) -> Vec<TargetPortals> {
    let key = initiator_key(initiator);
    targets
        .targets
        .iter()
        .filter_map(|t| {
            let portals: Vec<(SocketAddr, u16)> = t
                .groups
                .iter()
                .filter(|g| g.group.admit(&key).is_some())
                .flat_map(|g| g.portals.iter().map(move |p| (*p, g.tag)))
                .collect();
            (!portals.is_empty()).then(|| TargetPortals {
                name: t.name.clone(),
                portals,
            })
        })
        .collect()
}

/// The portal group tag to announce: that of the requested target on this
/// portal, read from the first request's TargetName.
fn group_tag(targets: &Targets, local: SocketAddr, first_text: &[u8]) -> u16 {
    let name = text::parse(first_text).ok().and_then(|pairs| {
        pairs
            .into_iter()
            .find(|(k, _)| k == "TargetName")
            .map(|(_, v)| v)
    });
    let by_name = name
        .as_deref()
        .and_then(|n| targets.find(n))
        .and_then(|t| t.group_for(local))
        .map(|g| g.tag);
    by_name
        .or_else(|| {
            targets
                .targets
                .iter()
                .find_map(|t| t.group_for(local))
                .map(|g| g.tag)
        })
        .unwrap_or(1)
}

async fn send_response<W: AsyncWrite + Unpin>(
    wr: &mut W,
    resp: &LoginResponse,
    stat_sn: u32,
    exp_cmdsn: u32,
    window: u32,
) -> std::io::Result<()> {
    let mut bhs = resp.to_bhs();
    bhs.set_u32_at(24, stat_sn);
    bhs.set_u32_at(28, exp_cmdsn);
    bhs.set_u32_at(32, exp_cmdsn.wrapping_add(window).wrapping_sub(1));
    wr.write_all(&encode_simple(&bhs, &resp.data)).await
}

/// Why a login failed: the reason counted, and what to log.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LoginError {
    pub reason: LoginFailureReason,
    pub message: String,
}

impl LoginError {
    fn new(reason: LoginFailureReason, message: impl Into<String>) -> Self {
        LoginError {
            reason,
            message: message.into(),
        }
    }

    fn read(e: ReadError) -> Self {
        let reason = match e {
            ReadError::Closed | ReadError::Io(_) => LoginFailureReason::ConnectionLost,
            _ => LoginFailureReason::ProtocolError,
        };
        LoginError::new(reason, e.to_string())
    }

    fn write(e: std::io::Error) -> Self {
        LoginError::new(LoginFailureReason::ConnectionLost, e.to_string())
    }
}

/// How long a refused connection gets to send the Login Request its 03/02
/// answers.
const REFUSE_WAIT: Duration = Duration::from_secs(2);

/// Answer a connection the login gate turned away: 03/02 (out of
/// resources, which initiators retry) to its first Login Request, then
/// close. At most [`crate::server::MAX_REFUSING`] at once; past that the
/// connection is closed unanswered.
pub(crate) async fn refuse<R, W>(server: &Server, reader: &mut PduReader<R>, wr: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Slot<'a>(&'a AtomicUsize);
    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let slot = Slot(&server.refusing);
    if slot.0.fetch_add(1, Ordering::AcqRel) >= crate::server::MAX_REFUSING {
        return;
    }
    reader.max_data = crate::login::LOGIN_MAX_DSL;
    let first = tokio::time::timeout(REFUSE_WAIT, async {
        let inc = reader.read_header().await?;
        let data = reader.read_data_vec(&inc).await?;
        Ok::<_, ReadError>((inc, data))
    })
    .await;
    let Ok(Ok((inc, data))) = first else {
        return;
    };
    if inc.bhs.opcode() != op::LOGIN_REQ {
        return;
    }
    let req = LoginRequest::from_bhs(&inc.bhs, data);
    let f = LoginFailure::new(status::OUT_OF_RESOURCES, "too many connections in login");
    let resp = Login::failure_response(&req, &f);
    let _ = send_response(wr, &resp, 1, req.cmdsn, 1).await;
    let _ = wr.shutdown().await;
}

pub(crate) async fn login<R, W>(
    server: &Arc<Server>,
    reader: &mut PduReader<R>,
    wr: &mut W,
    (local, peer): (SocketAddr, SocketAddr),
    ticket: &mut LoginTicket,
) -> Result<LoggedIn, LoginError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let targets = server.targets();
    let settings = &server.settings;
    reader.max_data = crate::login::LOGIN_MAX_DSL;
    let mut machine: Option<Login> = None;
    // The initial StatSN is ours to choose.
    let mut stat_sn: u32 = 1;
    let dir = Directory {
        server,
        targets: &targets,
        local,
        admitted: Mutex::new(None),
        ticket: Mutex::new(ticket),
        limited: Mutex::new(None),
    };
    // Until it has authenticated, a peer holds its place in the login
    // phase for the security deadline at most.
    let security_deadline = tokio::time::Instant::now() + settings.security_timeout;
    loop {
        let in_security = machine.as_ref().is_none_or(|l| l.stage() == STAGE_SECURITY);
        let pdu = async {
            let inc = reader.read_header().await?;
            if inc.bhs.opcode() != op::LOGIN_REQ {
                let _ = reader.skip_data(&inc).await;
                return Ok((inc, None));
            }
            let data = reader.read_data_vec(&inc).await?;
            Ok::<_, ReadError>((inc, Some(data)))
        };
        let read = if in_security {
            match tokio::time::timeout_at(security_deadline, pdu).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(LoginError::new(
                        LoginFailureReason::Timeout,
                        format!(
                            "security stage not completed within {:?}",
                            settings.security_timeout
                        ),
                    ))
                }
            }
        } else {
            pdu.await
        };
        let (inc, data) = read.map_err(LoginError::read)?;
        let Some(data) = data else {
            // Anything but a Login Request before login completes is a
            // protocol error; answer with a Reject and close.
            let mut r = Bhs::new(op::REJECT);
            r.set_flags(0x80);
            r.0[2] = reject::PROTOCOL_ERROR;
            r.set_itt(crate::pdu::RESERVED_TAG);
            let _ = wr.write_all(&encode_simple(&r, &inc.bhs.0)).await;
            return Err(LoginError::new(
                LoginFailureReason::ProtocolError,
                format!("opcode {:#04x} before login completed", inc.bhs.opcode()),
            ));
        };
        let req = LoginRequest::from_bhs(&inc.bhs, data);
        let login = machine.get_or_insert_with(|| {
            let negotiation = NegotiationConfig {
                max_recv_data_segment_length: settings.max_recv_dsl,
                max_burst_length: settings.max_burst,
                first_burst_length: settings.first_burst,
                max_outstanding_r2t: settings.max_outstanding_r2t.min(u16::MAX as u32) as u16,
                ..NegotiationConfig::default()
            };
            Login::new(LoginConfig {
                portal_group_tag: group_tag(&targets, local, &req.data),
                negotiation,
            })
        });
        let exp_cmdsn = req.cmdsn;

        // A request that will be checked against the initiator's proof
        // waits for its (initiator name, source)'s turn.
        let pace = (login.checks_proof_next() && !req.cont)
            .then(|| PaceKey::new(login.initiator_name().unwrap_or_default(), peer.ip()));
        if let Some(key) = &pace {
            let admit = server.pacer().admit(key, std::time::Instant::now());
            let refused = match admit {
                Admit::Locked(_) => Some((
                    crate::stats::LOCKED_OUT,
                    "locked out after repeated authentication failures",
                )),
                Admit::At(t) => {
                    let t = tokio::time::Instant::from_std(t);
                    if t > security_deadline {
                        Some((
                            crate::stats::PACED,
                            "authentication failed too often from this source: the next try is not due in time",
                        ))
                    } else {
                        tokio::time::sleep_until(t).await;
                        None
                    }
                }
            };
            if let Some((label, why)) = refused {
                server.registry.auth_failed(label);
                tracing::warn!(initiator = %login.initiator_name().unwrap_or_default(), %peer,
                    reason = label, "authentication refused unchecked");
                let f = LoginFailure::new(status::AUTHENTICATION_FAILURE, why);
                let resp = Login::failure_response(&req, &f);
                let _ = send_response(wr, &resp, stat_sn, exp_cmdsn, settings.cmd_window).await;
                return Err(LoginError::new(
                    LoginFailureReason::AuthenticationFailed,
                    f.to_string(),
                ));
            }
        }
        let step = login.step(&req, &dir);
        if let Some(key) = &pace {
            match &step {
                Step::Fail(_, f) if f.status() == status::AUTHENTICATION_FAILURE => {
                    server.pacer().failed(key, std::time::Instant::now())
                }
                _ if login.authenticated() => server.pacer().succeeded(key),
                _ => {}
            }
        }
        match step {
            Step::Continue(resp) => {
                send_response(wr, &resp, stat_sn, exp_cmdsn, settings.cmd_window)
                    .await
                    .map_err(LoginError::write)?;
                stat_sn = stat_sn.wrapping_add(1);
            }
            Step::Fail(resp, failure) => {
                if let Some(label) = failure.auth {
                    server.registry.auth_failed(label);
                    tracing::warn!(initiator = %login.initiator_name().unwrap_or_default(), %peer,
                        reason = label, "authentication failed");
                }
                let _ = send_response(wr, &resp, stat_sn, exp_cmdsn, settings.cmd_window).await;
                let reason = if lock(&dir.limited).is_some() {
                    LoginFailureReason::LoginLimit
                } else {
                    LoginFailureReason::from_status(failure.class, failure.detail)
                };
                return Err(LoginError::new(reason, failure.to_string()));
            }
            Step::Complete(mut resp, outcome) => {
                let discovery = outcome.session_type == SessionType::Discovery;
                let target = outcome.target_name.clone().unwrap_or_default();
                let key_target = if discovery {
                    "<discovery>"
                } else {
                    target.as_str()
                };
                let tpg_tag = group_tag_for(&targets, &target, local);
                let registration = server
                    .sessions
                    .register(session_key(
                        &outcome.initiator_name,
                        outcome.isid,
                        key_target,
                        tpg_tag,
                    ))
                    .await;
                resp.set_tsih(registration.tsih);
                send_response(wr, &resp, stat_sn, exp_cmdsn, settings.cmd_window)
                    .await
                    .map_err(LoginError::write)?;
                stat_sn = stat_sn.wrapping_add(1);
                let s = &outcome.session;
                let c = &outcome.connection;
                let admission = lock(&dir.admitted).take();
                let digest = |d: Digest| d.as_str().to_string();
                let negotiated = NegotiatedParams {
                    max_recv_data_segment_length: c.max_recv_dsl,
                    initiator_max_recv_data_segment_length: c.max_send_dsl,
                    max_burst_length: s.max_burst_length,
                    first_burst_length: s.first_burst_length,
                    immediate_data: s.immediate_data,
                    initial_r2t: s.initial_r2t,
                    header_digest: digest(c.header_digest),
                    data_digest: digest(c.data_digest),
                    max_outstanding_r2t: s.max_outstanding_r2t,
                    error_recovery_level: s.error_recovery_level,
                    max_connections: s.max_connections,
                    data_pdu_in_order: s.data_pdu_in_order,
                    data_sequence_in_order: s.data_sequence_in_order,
                    default_time2wait: s.default_time2wait,
                    default_time2retain: s.default_time2retain,
                    auth_method: outcome.auth_method.clone(),
                };
                return Ok(LoggedIn {
                    admission,
                    cid: outcome.cid,
                    initiator_alias: outcome.initiator_alias.clone(),
                    negotiated,
                    discovery,
                    initiator: outcome.initiator_name.clone(),
                    isid: outcome.isid,
                    target,
                    tpg_tag,
                    ffp: FfpParams {
                        immediate_data: s.immediate_data,
                        initial_r2t: s.initial_r2t,
                        first_burst: s.first_burst_length,
                        max_burst: s.max_burst_length,
                        max_outstanding_r2t: s.max_outstanding_r2t as u32,
                        max_recv_dsl: c.max_recv_dsl,
                    },
                    max_send_dsl: c.max_send_dsl,
                    max_burst: s.max_burst_length,
                    header_digest: c.header_digest == Digest::Crc32c,
                    data_digest: c.data_digest == Digest::Crc32c,
                    stat_sn,
                    exp_cmdsn,
                    registration: Some(registration),
                });
            }
        }
    }
}

fn group_tag_for(targets: &Targets, target: &str, local: SocketAddr) -> u16 {
    targets
        .find(target)
        .and_then(|t| t.group_for(local))
        .map(|g| g.tag)
        .unwrap_or(0)
}
