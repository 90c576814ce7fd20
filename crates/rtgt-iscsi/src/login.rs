//! The login phase of one connection (RFC 7143 sections 6.3, 11.12,
//! 11.13), target side, sans I/O.
//!
//! The driver parses each Login Request PDU into a [`LoginRequest`],
//! calls [`Login::step`] and sends the [`LoginResponse`] it gets back
//! (adding StatSN, ExpCmdSN, MaxCmdSN and, on completion, the TSIH it
//! assigned). [`Step`] tells whether the login goes on, completed (the
//! connection is in full feature phase with the negotiated parameters) or
//! failed (close the connection after sending the response).
//!
//! Supported: security stage with AuthMethod=None (and a hook,
//! [`Authenticator`], for methods such as CHAP), operational stage, stage
//! skipping (0->3, 1->3), text spanning several request PDUs (C bit),
//! responses spanning several PDUs, error recovery level 0 and one
//! connection per session (a login with TSIH != 0 is refused).

use std::fmt;

use crate::negotiation::{
    ConnectionParams, Key, NegotiationConfig, Negotiator, SessionParams, SessionType, IRRELEVANT,
    REJECT,
};
use crate::pdu::{op, Bhs};
use crate::text::{self, Pair, TextAccumulator, TextSegmenter};

/// Login stages (CSG / NSG values).
pub const STAGE_SECURITY: u8 = 0;
pub const STAGE_OPERATIONAL: u8 = 1;
pub const STAGE_FULL_FEATURE: u8 = 3;

/// Data segment limit for Login Responses: MaxRecvDataSegmentLength
/// declarations take effect in full feature phase, so during login the
/// default of 8192 applies.
pub const LOGIN_MAX_DSL: usize = 8192;

/// Login status class and detail (RFC 7143 11.13.5).
pub mod status {
    /// (Status-Class, Status-Detail).
    pub type Status = (u8, u8);
    pub const SUCCESS: Status = (0, 0);
    pub const TARGET_MOVED_TEMPORARILY: Status = (1, 1);
    pub const TARGET_MOVED_PERMANENTLY: Status = (1, 2);
    pub const INITIATOR_ERROR: Status = (2, 0);
    pub const AUTHENTICATION_FAILURE: Status = (2, 1);
    pub const AUTHORIZATION_FAILURE: Status = (2, 2);
    pub const NOT_FOUND: Status = (2, 3);
    pub const TARGET_REMOVED: Status = (2, 4);
    pub const UNSUPPORTED_VERSION: Status = (2, 5);
    pub const TOO_MANY_CONNECTIONS: Status = (2, 6);
    pub const MISSING_PARAMETER: Status = (2, 7);
    pub const CANT_INCLUDE_IN_SESSION: Status = (2, 8);
    pub const SESSION_TYPE_NOT_SUPPORTED: Status = (2, 9);
    pub const SESSION_DOES_NOT_EXIST: Status = (2, 0x0a);
    pub const INVALID_DURING_LOGIN: Status = (2, 0x0b);
    pub const TARGET_ERROR: Status = (3, 0);
    pub const SERVICE_UNAVAILABLE: Status = (3, 1);
    pub const OUT_OF_RESOURCES: Status = (3, 2);
}

/// Why a login ends without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailure {
    pub class: u8,
    pub detail: u8,
    /// For the log.
    pub reason: String,
    /// Text for the response (TargetAddress of a redirection).
    pub data: Vec<Pair>,
    /// When the authentication method failed: its label for the
    /// metrics ([`Authenticator::failure_label`]).
    pub auth: Option<&'static str>,
}

impl LoginFailure {
    pub fn new(st: status::Status, reason: impl Into<String>) -> Self {
        LoginFailure {
            class: st.0,
            detail: st.1,
            reason: reason.into(),
            data: Vec::new(),
            auth: None,
        }
    }
    pub fn status(&self) -> status::Status {
        (self.class, self.detail)
    }
}

impl fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "login status {:02x}/{:02x}: {}",
            self.class, self.detail, self.reason
        )
    }
}

impl std::error::Error for LoginFailure {}

/// The fields of a Login Request PDU the state machine needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub data: Vec<u8>,
}

/// The fields of a Login Response PDU decided here; the driver adds
/// StatSN, ExpCmdSN and MaxCmdSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_active: u8,
    /// The request's ISID, echoed.
    pub isid: [u8; 6],
    /// The request's TSIH; on [`Step::Complete`] the driver sets the
    /// TSIH of the (new or joined) session here.
    pub tsih: u16,
    /// The request's ITT, echoed.
    pub itt: u32,
    pub status_class: u8,
    pub status_detail: u8,
    pub data: Vec<u8>,
}

impl LoginRequest {
    /// Decode the fields from a Login Request BHS (RFC 7143 11.12) and
    /// its data segment.
    pub fn from_bhs(bhs: &Bhs, data: Vec<u8>) -> Self {
        let f = bhs.flags();
        LoginRequest {
            transit: f & 0x80 != 0,
            cont: f & 0x40 != 0,
            csg: (f >> 2) & 3,
            nsg: f & 3,
            version_max: bhs.0[2],
            version_min: bhs.0[3],
            isid: bhs.0[8..14].try_into().expect("6 bytes"),
            tsih: bhs.u16_at(14),
            itt: bhs.itt(),
            cid: bhs.u16_at(20),
            cmdsn: bhs.cmdsn(),
            exp_statsn: bhs.exp_statsn(),
            data,
        }
    }
}

impl LoginResponse {
    /// Put the TSIH assigned by the driver (final response).
    pub fn set_tsih(&mut self, tsih: u16) {
        self.tsih = tsih;
    }

    /// The Login Response BHS (RFC 7143 11.13) with DataSegmentLength set;
    /// StatSN (24), ExpCmdSN (28) and MaxCmdSN (32) are left 0 for the
    /// driver. The data segment is `self.data`.
    pub fn to_bhs(&self) -> Bhs {
        let mut b = Bhs::new(op::LOGIN_RSP);
        let mut f = (self.csg & 3) << 2;
        if self.transit {
            f |= 0x80 | (self.nsg & 3);
        }
        if self.cont {
            f |= 0x40;
        }
        b.set_flags(f);
        b.0[2] = self.version_max;
        b.0[3] = self.version_active;
        b.set_data_len(self.data.len());
        b.0[8..14].copy_from_slice(&self.isid);
        b.set_u16_at(14, self.tsih);
        b.set_itt(self.itt);
        b.0[36] = self.status_class;
        b.0[37] = self.status_detail;
        b
    }
}

/// Progress of an authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    /// More rounds needed.
    Continue,
    /// The initiator (and, for mutual methods, the target) is
    /// authenticated.
    Success,
    /// Authentication failed (login fails with 02/01).
    Failure,
    /// The target cannot take the exchange on now (login fails with
    /// 03/02, which an initiator retries).
    OutOfResources,
}

/// An authentication method run in the security stage (CHAP).
pub trait Authenticator: Send {
    /// Its AuthMethod value, e.g. "CHAP".
    fn method(&self) -> &str;
    /// One round: `keys` are the request's authentication keys (CHAP_A,
    /// CHAP_N, ...); append the keys to send to `out`.
    fn step(&mut self, keys: &[Pair], out: &mut Vec<Pair>) -> AuthStatus;
    /// Whether the next round checks the initiator's proof (a CHAP
    /// response): the round the driver paces after failures.
    fn checks_proof_next(&self) -> bool {
        false
    }
    /// Why it failed, as a metrics label, once it did.
    fn failure_label(&self) -> Option<&'static str> {
        None
    }
}

/// What authentication a target (or discovery) requires of an initiator.
#[derive(Default)]
pub enum AuthPolicy {
    /// AuthMethod=None is accepted (and the security stage may be
    /// skipped).
    #[default]
    None,
    /// The initiator must authenticate with this method.
    Required(Box<dyn Authenticator>),
}

impl fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthPolicy::None => write!(f, "None"),
            AuthPolicy::Required(a) => write!(f, "Required({})", a.method()),
        }
    }
}

/// What the driver knows about a target an initiator logs in to.
#[derive(Debug, Default)]
pub struct TargetInfo {
    /// Sent as TargetAlias when set.
    pub alias: Option<String>,
    pub auth: AuthPolicy,
}

/// Result of a target lookup.
#[derive(Debug)]
pub enum Lookup {
    Found(TargetInfo),
    /// No such target: 02/03.
    NotFound,
    /// The initiator may not use this target: 02/02.
    NotAllowed,
    /// The target is gone for good: 02/04.
    Removed,
    /// Redirect (01/01 or 01/02) to `address` ("host:port,tpgt").
    Moved {
        address: String,
        permanent: bool,
    },
    /// Temporarily unable to serve: 03/01.
    Unavailable,
    /// The initiator holds as many sessions as it may: 03/02.
    OutOfResources,
}

/// Lookups the login needs from the driver's configuration and session
/// table.
pub trait TargetDirectory {
    /// A normal session's target, as seen by `initiator_name`.
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Lookup;
    /// Whether `initiator_name` may open a discovery session.
    fn lookup_discovery(&self, _initiator_name: &str) -> Lookup {
        Lookup::Found(TargetInfo::default())
    }
    /// Whether a session with this TSIH exists for this initiator and
    /// ISID (asked for logins with TSIH != 0, which would add a
    /// connection to it).
    fn session_exists(&self, _initiator_name: &str, _isid: [u8; 6], _tsih: u16) -> bool {
        false
    }
}

/// Static parameters of the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// Target Portal Group Tag of the portal the connection came in on.
    pub portal_group_tag: u16,
    pub negotiation: NegotiationConfig,
}

impl LoginConfig {
    pub fn new(portal_group_tag: u16) -> Self {
        LoginConfig {
            portal_group_tag,
            negotiation: NegotiationConfig::default(),
        }
    }
}

/// Everything the driver needs once the connection is in full feature
/// phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// None for discovery sessions.
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    /// TSIH of the requests (0: a new session).
    pub tsih: u16,
    pub cid: u16,
    /// CmdSN of the last Login Request (the session's first CmdSN).
    pub cmdsn: u32,
    /// "None" or the method that authenticated the initiator.
    pub auth_method: String,
    pub session: SessionParams,
    pub connection: ConnectionParams,
}

/// What to do after a request.
#[derive(Debug)]
pub enum Step {
    /// Send the response and wait for the next Login Request.
    Continue(LoginResponse),
    /// Set the TSIH into the response, send it; the connection is now in
    /// full feature phase.
    Complete(LoginResponse, Box<LoginOutcome>),
    /// Send the response (status class != 0), then close the connection.
    Fail(LoginResponse, LoginFailure),
}

impl Step {
    pub fn response(&self) -> &LoginResponse {
        match self {
            Step::Continue(r) | Step::Complete(r, _) | Step::Fail(r, _) => r,
        }
    }
}

/// Identity keys of the first request.
#[derive(Debug, Clone)]
struct Identity {
    initiator_name: String,
    initiator_alias: Option<String>,
    target_name: Option<String>,
    session_type: SessionType,
}

/// Values of the first PDU that must not change during the login.
#[derive(Debug, Clone, Copy)]
struct Fixed {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    version_max: u8,
    version_min: u8,
}

enum AuthState {
    /// No AuthMethod negotiated yet.
    NotStarted,
    /// We answered AuthMethod=Reject: the next request fails with 02/01.
    Rejected,
    InProgress(Box<dyn Authenticator>),
    Done(String),
}

/// An answer too long for one PDU, being handed out.
struct PendingOut {
    seg: TextSegmenter,
    /// Whether the last chunk transits (if the request then still asks).
    transit: bool,
    nsg: u8,
}

/// The login state machine of one connection.
pub struct Login {
    cfg: LoginConfig,
    stage: u8,
    fixed: Option<Fixed>,
    identity: Option<Identity>,
    policy: AuthPolicy,
    /// The target requires authentication (policy was `Required`).
    auth_required: bool,
    auth: AuthState,
    neg: Negotiator,
    acc: TextAccumulator,
    pending: Option<PendingOut>,
    /// Our last response carried proposals the initiator must answer.
    offers_sent: bool,
    over: bool,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("stage", &self.stage)
            .field("identity", &self.identity)
            .field("policy", &self.policy)
            .field("over", &self.over)
            .finish_non_exhaustive()
    }
}

fn fail(st: status::Status, reason: impl Into<String>) -> LoginFailure {
    LoginFailure::new(st, reason)
}

impl Login {
    pub fn new(cfg: LoginConfig) -> Self {
        let neg = Negotiator::new(cfg.negotiation.clone(), true);
        Login {
            cfg,
            stage: STAGE_SECURITY,
            fixed: None,
            identity: None,
            policy: AuthPolicy::None,
            auth_required: false,
            auth: AuthState::NotStarted,
            neg,
            acc: TextAccumulator::new(),
            pending: None,
            offers_sent: false,
            over: false,
        }
    }

    /// The current stage (CSG the next request must carry).
    pub fn stage(&self) -> u8 {
        self.stage
    }

    /// Initiator name, once the first complete request was processed.
    pub fn initiator_name(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.initiator_name.as_str())
    }

    /// Whether the next complete request is checked against the
    /// initiator's proof of identity (see
    /// [`Authenticator::checks_proof_next`]).
    pub fn checks_proof_next(&self) -> bool {
        !self.over && matches!(&self.auth, AuthState::InProgress(a) if a.checks_proof_next())
    }

    /// Whether an authentication method (not None) has succeeded.
    pub fn authenticated(&self) -> bool {
        matches!(&self.auth, AuthState::Done(m) if m != "None")
    }

    /// Target name (normal sessions), once known.
    pub fn target_name(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .filter(|i| i.session_type == SessionType::Normal)
            .and_then(|i| i.target_name.as_deref())
    }

    /// A failure response for `req`, for the driver to end a login on its
    /// own account (e.g. 03/02 when it cannot create a session).
    pub fn failure_response(req: &LoginRequest, f: &LoginFailure) -> LoginResponse {
        LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: 0,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            status_class: f.class,
            status_detail: f.detail,
            data: text::encode(&f.data),
        }
    }

    /// Process one Login Request.
    pub fn step(&mut self, req: &LoginRequest, dir: &dyn TargetDirectory) -> Step {
        match self.step_inner(req, dir) {
            Ok(step) => step,
            Err(f) => {
                self.over = true;
                self.pending = None;
                self.acc.reset();
                Step::Fail(Self::failure_response(req, &f), f)
            }
        }
    }

    fn response(&self, req: &LoginRequest) -> LoginResponse {
        LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: 0,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            status_class: 0,
            status_detail: 0,
            data: Vec::new(),
        }
    }

    fn check_header(&mut self, req: &LoginRequest) -> Result<(), LoginFailure> {
        use status::*;
        if self.over {
            return Err(fail(INITIATOR_ERROR, "login already ended"));
        }
        match self.fixed {
            None => {
                // We implement version 0x00 only.
                if req.version_min > 0 {
                    return Err(fail(
                        UNSUPPORTED_VERSION,
                        format!(
                            "versions {}..{} not supported",
                            req.version_min, req.version_max
                        ),
                    ));
                }
                if req.csg != STAGE_SECURITY && req.csg != STAGE_OPERATIONAL {
                    return Err(fail(INITIATOR_ERROR, format!("invalid CSG {}", req.csg)));
                }
                self.fixed = Some(Fixed {
                    isid: req.isid,
                    tsih: req.tsih,
                    cid: req.cid,
                    version_max: req.version_max,
                    version_min: req.version_min,
                });
                self.stage = req.csg;
            }
            Some(f) => {
                if f.isid != req.isid || f.tsih != req.tsih || f.cid != req.cid {
                    return Err(fail(
                        INITIATOR_ERROR,
                        "ISID, TSIH or CID changed during login",
                    ));
                }
                if f.version_max != req.version_max || f.version_min != req.version_min {
                    return Err(fail(INITIATOR_ERROR, "version changed during login"));
                }
                if req.csg != self.stage {
                    return Err(fail(
                        INITIATOR_ERROR,
                        format!("CSG {} but login is in stage {}", req.csg, self.stage),
                    ));
                }
            }
        }
        if req.transit && req.cont {
            return Err(fail(INITIATOR_ERROR, "T and C bits both set"));
        }
        if req.transit {
            let ok = match req.csg {
                STAGE_SECURITY => req.nsg == STAGE_OPERATIONAL || req.nsg == STAGE_FULL_FEATURE,
                STAGE_OPERATIONAL => req.nsg == STAGE_FULL_FEATURE,
                _ => false,
            };
            if !ok {
                return Err(fail(
                    INITIATOR_ERROR,
                    format!("invalid transition {} -> {}", req.csg, req.nsg),
                ));
            }
        }
        Ok(())
    }

    fn step_inner(
        &mut self,
        req: &LoginRequest,
        dir: &dyn TargetDirectory,
    ) -> Result<Step, LoginFailure> {
        self.check_header(req)?;

        // Rest of an answer too long for one PDU.
        if let Some(mut p) = self.pending.take() {
            if !req.data.is_empty() || req.cont {
                return Err(fail(
                    status::INITIATOR_ERROR,
                    "text sent while the target's response is incomplete",
                ));
            }
            let (chunk, more) = p.seg.next_chunk(LOGIN_MAX_DSL);
            if more {
                let mut resp = self.response(req);
                resp.cont = true;
                resp.data = chunk;
                self.pending = Some(p);
                return Ok(Step::Continue(resp));
            }
            return Ok(self.finish_round(req, chunk, p.transit && req.transit, p.nsg));
        }

        // Text continued over several requests.
        let data = match self.acc.push(&req.data, req.cont) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Step::Continue(self.response(req))),
            Err(e) => return Err(fail(e.login_status(), e.to_string())),
        };
        let pairs = text::parse(&data).map_err(|e| fail(e.login_status(), e.to_string()))?;

        let mut out: Vec<Pair> = Vec::new();
        let rest = self.identity_keys(req, &pairs, dir, &mut out)?;

        // Authentication.
        if matches!(self.auth, AuthState::Rejected) {
            return Err(fail(
                status::AUTHENTICATION_FAILURE,
                "no acceptable authentication method",
            ));
        }
        let (security, operational): (Vec<Pair>, Vec<Pair>) = rest
            .into_iter()
            .partition(|(k, _)| Key::from_name(k).is_some_and(|k| k.is_security()));
        if self.stage == STAGE_SECURITY {
            self.security_keys(&security, &mut out)?;
        } else {
            if self.auth_required && !matches!(self.auth, AuthState::Done(_)) {
                return Err(fail(
                    status::AUTHENTICATION_FAILURE,
                    "authentication required but security stage skipped",
                ));
            }
            // Security keys here are a protocol error; let the
            // negotiator say so.
            self.neg.respond(&security, &mut out)?;
        }

        // Operational keys (allowed in the security stage too).
        self.neg.respond(&operational, &mut out)?;
        if std::mem::take(&mut self.offers_sent) && self.neg.awaiting_answers() {
            let keys = self.neg.abandon_offers();
            tracing::debug!(?keys, "initiator ignored our proposals; defaults apply");
        }

        let mut transit = req.transit && self.auth_complete();
        if transit || self.stage == STAGE_OPERATIONAL {
            if self.stage == STAGE_OPERATIONAL || req.nsg == STAGE_FULL_FEATURE {
                self.neg.declare(&mut out);
            }
            if transit && req.nsg == STAGE_FULL_FEATURE && self.neg.make_offers(&mut out) {
                transit = false;
                self.offers_sent = true;
            }
        }
        if self.neg.awaiting_answers() {
            transit = false;
        }

        let data = text::encode(&out);
        if data.len() > LOGIN_MAX_DSL {
            let mut seg = TextSegmenter::new(data);
            let (chunk, _) = seg.next_chunk(LOGIN_MAX_DSL);
            self.pending = Some(PendingOut {
                seg,
                transit,
                nsg: req.nsg,
            });
            let mut resp = self.response(req);
            resp.cont = true;
            resp.data = chunk;
            return Ok(Step::Continue(resp));
        }
        Ok(self.finish_round(req, data, transit, req.nsg))
    }

    /// The (last) response to a request: transit or not.
    fn finish_round(&mut self, req: &LoginRequest, data: Vec<u8>, transit: bool, nsg: u8) -> Step {
        let mut resp = self.response(req);
        resp.data = data;
        if !transit {
            return Step::Continue(resp);
        }
        resp.transit = true;
        resp.nsg = nsg;
        self.stage = nsg;
        if nsg != STAGE_FULL_FEATURE {
            return Step::Continue(resp);
        }
        self.over = true;
        let id = self
            .identity
            .clone()
            .expect("identity known before completion");
        let fixed = self.fixed.expect("first request seen");
        let (session, connection) = self.neg.finish();
        let auth_method = match &self.auth {
            AuthState::Done(m) => m.clone(),
            _ => "None".to_string(),
        };
        let outcome = LoginOutcome {
            session_type: id.session_type,
            initiator_name: id.initiator_name,
            initiator_alias: id.initiator_alias,
            target_name: match id.session_type {
                SessionType::Normal => id.target_name,
                SessionType::Discovery => None,
            },
            isid: fixed.isid,
            tsih: fixed.tsih,
            cid: fixed.cid,
            cmdsn: req.cmdsn,
            auth_method,
            session,
            connection,
        };
        Step::Complete(resp, Box::new(outcome))
    }

    fn auth_complete(&self) -> bool {
        match self.auth {
            AuthState::Done(_) => true,
            AuthState::NotStarted => !self.auth_required,
            AuthState::InProgress(_) | AuthState::Rejected => false,
        }
    }

    /// Handle InitiatorName, TargetName, SessionType, InitiatorAlias;
    /// return the other pairs. On the first complete request this looks
    /// the target up and starts the response with TargetPortalGroupTag.
    fn identity_keys(
        &mut self,
        req: &LoginRequest,
        pairs: &[Pair],
        dir: &dyn TargetDirectory,
        out: &mut Vec<Pair>,
    ) -> Result<Vec<Pair>, LoginFailure> {
        use status::*;
        let mut initiator_name = None;
        let mut initiator_alias = None;
        let mut target_name = None;
        let mut session_type = None;
        let mut rest = Vec::new();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "InitiatorName" => &mut initiator_name,
                "InitiatorAlias" => &mut initiator_alias,
                "TargetName" => &mut target_name,
                "SessionType" => &mut session_type,
                _ => {
                    rest.push((k.clone(), v.clone()));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(fail(INITIATOR_ERROR, format!("key {k} sent twice")));
            }
            *slot = Some(v.clone());
        }

        if let Some(id) = &self.identity {
            // Later requests may repeat these keys (libiscsi does after the
            // security stage) but not change them.
            let same = |new: &Option<String>, old: Option<&str>| match new {
                None => true,
                Some(n) => Some(n.as_str()) == old,
            };
            let st = session_type.as_deref().map(SessionType::parse);
            if !same(&initiator_name, Some(&id.initiator_name))
                || !same(&target_name, id.target_name.as_deref())
                || !same(&initiator_alias, id.initiator_alias.as_deref())
                || st.is_some_and(|t| t != Some(id.session_type))
            {
                return Err(fail(INITIATOR_ERROR, "login identity keys changed"));
            }
            return Ok(rest);
        }

        let Some(initiator_name) = initiator_name.filter(|n| !n.is_empty()) else {
            return Err(fail(MISSING_PARAMETER, "InitiatorName missing"));
        };
        let session_type = match session_type.as_deref() {
            None => SessionType::Normal,
            Some(s) => SessionType::parse(s)
                .ok_or_else(|| fail(SESSION_TYPE_NOT_SUPPORTED, format!("SessionType={s}")))?,
        };
        let lookup = match session_type {
            SessionType::Normal => {
                let Some(t) = target_name.as_deref().filter(|t| !t.is_empty()) else {
                    return Err(fail(MISSING_PARAMETER, "TargetName missing"));
                };
                dir.lookup(t, &initiator_name)
            }
            SessionType::Discovery => dir.lookup_discovery(&initiator_name),
        };
        let info = match lookup {
            Lookup::Found(info) => info,
            Lookup::NotFound => {
                return Err(fail(
                    NOT_FOUND,
                    format!("no target {}", target_name.unwrap_or_default()),
                ))
            }
            Lookup::NotAllowed => {
                return Err(fail(
                    AUTHORIZATION_FAILURE,
                    format!("{initiator_name} not allowed"),
                ))
            }
            Lookup::Removed => return Err(fail(TARGET_REMOVED, "target removed")),
            Lookup::Unavailable => return Err(fail(SERVICE_UNAVAILABLE, "target unavailable")),
            Lookup::OutOfResources => {
                return Err(fail(
                    OUT_OF_RESOURCES,
                    format!("{initiator_name} has too many sessions"),
                ))
            }
            Lookup::Moved { address, permanent } => {
                let st = if permanent {
                    TARGET_MOVED_PERMANENTLY
                } else {
                    TARGET_MOVED_TEMPORARILY
                };
                let mut f = fail(st, format!("target moved to {address}"));
                f.data.push(("TargetAddress".into(), address));
                return Err(f);
            }
        };
        if req.tsih != 0 {
            // Adding a connection to an existing session: we allow one
            // connection per session (MaxConnections=1).
            return Err(if dir.session_exists(&initiator_name, req.isid, req.tsih) {
                fail(TOO_MANY_CONNECTIONS, "one connection per session")
            } else {
                fail(
                    SESSION_DOES_NOT_EXIST,
                    format!("no session with TSIH {}", req.tsih),
                )
            });
        }
        if session_type == SessionType::Normal {
            if let Some(alias) = &info.alias {
                out.push(("TargetAlias".into(), alias.clone()));
            }
            out.push((
                "TargetPortalGroupTag".into(),
                self.cfg.portal_group_tag.to_string(),
            ));
        }
        self.auth_required = matches!(info.auth, AuthPolicy::Required(_));
        self.policy = info.auth;
        self.neg.set_session_type(session_type);
        self.identity = Some(Identity {
            initiator_name,
            initiator_alias,
            target_name,
            session_type,
        });
        Ok(rest)
    }

    /// AuthMethod and the authentication keys, in the security stage.
    fn security_keys(&mut self, keys: &[Pair], out: &mut Vec<Pair>) -> Result<(), LoginFailure> {
        use status::*;
        let mut auth_keys = Vec::new();
        for (k, v) in keys {
            if !self.neg.note_key(k) {
                return Err(fail(INITIATOR_ERROR, format!("key {k} sent twice")));
            }
            if k == "AuthMethod" {
                if !matches!(self.auth, AuthState::NotStarted) {
                    return Err(fail(INITIATOR_ERROR, "AuthMethod renegotiated"));
                }
                let offered: Vec<&str> = v.split(',').collect();
                let ours = match &self.policy {
                    AuthPolicy::None => "None".to_string(),
                    AuthPolicy::Required(a) => a.method().to_string(),
                };
                if offered.contains(&ours.as_str()) {
                    out.push((k.clone(), ours.clone()));
                    self.auth = match std::mem::take(&mut self.policy) {
                        AuthPolicy::None => AuthState::Done(ours),
                        AuthPolicy::Required(a) => AuthState::InProgress(a),
                    };
                } else {
                    out.push((k.clone(), REJECT.to_string()));
                    self.auth = AuthState::Rejected;
                }
            } else {
                auth_keys.push((k.clone(), v.clone()));
            }
        }
        match &mut self.auth {
            AuthState::InProgress(a) => {
                let method = a.method().to_string();
                if !auth_keys.is_empty() || !keys.iter().any(|(k, _)| k == "AuthMethod") {
                    match a.step(&auth_keys, out) {
                        AuthStatus::Continue => {}
                        AuthStatus::Success => self.auth = AuthState::Done(method),
                        AuthStatus::Failure => {
                            let mut f = fail(AUTHENTICATION_FAILURE, format!("{method} failed"));
                            f.auth = a.failure_label();
                            return Err(f);
                        }
                        AuthStatus::OutOfResources => {
                            let mut f = fail(
                                OUT_OF_RESOURCES,
                                format!("{method}: no room for the exchange"),
                            );
                            f.auth = a.failure_label();
                            return Err(f);
                        }
                    }
                }
            }
            AuthState::NotStarted if !auth_keys.is_empty() => {
                return Err(fail(
                    INITIATOR_ERROR,
                    "authentication keys before AuthMethod",
                ));
            }
            AuthState::Done(_) => {
                // Keys of a method not in use.
                for (k, _) in auth_keys {
                    out.push((k, IRRELEVANT.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TGT: &str = "iqn.2026-11.org.rtgt:demo";
    const INI: &str = "iqn.1994-05.com.redhat:client";

    struct Dir;
    impl TargetDirectory for Dir {
        fn lookup(&self, target: &str, initiator: &str) -> Lookup {
            match (target, initiator) {
                (TGT, "iqn.bad") => Lookup::NotAllowed,
                (TGT, _) => Lookup::Found(TargetInfo {
                    alias: Some("demo".into()),
                    auth: AuthPolicy::None,
                }),
                ("iqn.moved", _) => Lookup::Moved {
                    address: "10.0.0.2:3260,1".into(),
                    permanent: false,
                },
                ("iqn.chap", _) => Lookup::Found(TargetInfo {
                    alias: None,
                    auth: AuthPolicy::Required(Box::new(FakeChap { rounds: 0 })),
                }),
                _ => Lookup::NotFound,
            }
        }
        fn session_exists(&self, _: &str, _: [u8; 6], tsih: u16) -> bool {
            tsih == 7
        }
    }

    /// Succeeds when it sees CHAP_R=good, in the round after CHAP_A.
    struct FakeChap {
        rounds: u32,
    }
    impl Authenticator for FakeChap {
        fn method(&self) -> &str {
            "CHAP"
        }
        fn step(&mut self, keys: &[Pair], out: &mut Vec<Pair>) -> AuthStatus {
            self.rounds += 1;
            let get = |n: &str| keys.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            if get("CHAP_A").is_some() {
                out.push(("CHAP_A".into(), "5".into()));
                out.push(("CHAP_I".into(), "1".into()));
                out.push(("CHAP_C".into(), "0xabcd".into()));
                return AuthStatus::Continue;
            }
            match get("CHAP_R") {
                Some("good") => AuthStatus::Success,
                _ => AuthStatus::Failure,
            }
        }
    }

    fn req(csg: u8, nsg: u8, transit: bool, text: &[(&str, &str)]) -> LoginRequest {
        LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0x12, 0x34, 0],
            tsih: 0,
            itt: 0x1000,
            cid: 1,
            cmdsn: 42,
            exp_statsn: 0,
            data: text::encode(text),
        }
    }

    fn login() -> Login {
        Login::new(LoginConfig::new(1))
    }

    fn text_of(r: &LoginResponse) -> Vec<Pair> {
        text::parse(&r.data).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The keys libiscsi sends in its single operational request.
    fn libiscsi_op_keys(session_type: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("InitiatorName", INI), ("InitiatorAlias", "host")];
        if session_type == "Normal" {
            v.push(("TargetName", TGT));
        }
        v.extend([
            ("SessionType", session_type),
            ("HeaderDigest", "None,CRC32C"),
            ("DataDigest", "None"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("MaxConnections", "1"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ]);
        v
    }

    fn expect_fail(step: Step, st: status::Status) -> LoginResponse {
        match step {
            Step::Fail(r, f) => {
                assert_eq!((r.status_class, r.status_detail), st, "{f}");
                assert_eq!(f.status(), st);
                assert!(!r.transit);
                r
            }
            other => panic!("expected failure {st:?}, got {other:?}"),
        }
    }

    fn expect_continue(step: Step) -> LoginResponse {
        match step {
            Step::Continue(r) => {
                assert_eq!((r.status_class, r.status_detail), (0, 0));
                r
            }
            other => panic!("expected continue, got {other:?}"),
        }
    }

    fn expect_complete(step: Step) -> (LoginResponse, LoginOutcome) {
        match step {
            Step::Complete(r, o) => {
                assert_eq!((r.status_class, r.status_detail), (0, 0));
                assert!(r.transit);
                assert_eq!(r.nsg, STAGE_FULL_FEATURE);
                (r, *o)
            }
            other => panic!("expected completion, got {other:?}"),
        }
    }

    #[test]
    fn libiscsi_single_round_normal_login() {
        let mut l = login();
        let (r, o) = expect_complete(l.step(&req(1, 3, true, &libiscsi_op_keys("Normal")), &Dir));
        assert_eq!(r.csg, 1);
        assert_eq!(r.itt, 0x1000);
        assert_eq!(r.isid, [0x80, 0, 0, 0x12, 0x34, 0]);
        assert_eq!(r.tsih, 0);
        assert_eq!((r.version_max, r.version_active), (0, 0));
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("TargetAlias", "demo"),
                ("TargetPortalGroupTag", "1"),
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "262144"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
                ("MaxOutstandingR2T", "1"),
                ("ErrorRecoveryLevel", "0"),
                ("IFMarker", "Reject"),
                ("OFMarker", "Reject"),
                ("MaxConnections", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("FirstBurstLength", "262144"),
                ("MaxRecvDataSegmentLength", "262144"),
            ])
        );
        assert_eq!(o.session_type, SessionType::Normal);
        assert_eq!(o.initiator_name, INI);
        assert_eq!(o.initiator_alias.as_deref(), Some("host"));
        assert_eq!(o.target_name.as_deref(), Some(TGT));
        assert_eq!(o.isid, [0x80, 0, 0, 0x12, 0x34, 0]);
        assert_eq!((o.tsih, o.cid, o.cmdsn), (0, 1, 42));
        assert_eq!(o.auth_method, "None");
        assert!(!o.session.initial_r2t);
        assert!(o.session.immediate_data);
        assert_eq!(o.session.max_burst_length, 262144);
        assert_eq!(o.session.first_burst_length, 262144);
        assert_eq!(o.session.default_time2retain, 0);
        assert_eq!(o.connection.max_send_dsl, 262144);
        assert_eq!(o.connection.max_recv_dsl, 262144);
        // Over: further requests fail.
        expect_fail(
            l.step(&req(3, 3, false, &[]), &Dir),
            status::INITIATOR_ERROR,
        );
    }

    #[test]
    fn driver_sets_tsih_in_final_response() {
        let mut l = login();
        let (mut r, _) =
            expect_complete(l.step(&req(1, 3, true, &libiscsi_op_keys("Normal")), &Dir));
        r.set_tsih(0x1234);
        assert_eq!(r.tsih, 0x1234);
    }

    #[test]
    fn open_iscsi_style_security_then_operational() {
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("InitiatorAlias", "host"),
                    ("TargetName", TGT),
                    ("SessionType", "Normal"),
                    ("AuthMethod", "CHAP,None"),
                ],
            ),
            &Dir,
        ));
        assert!(r.transit);
        assert_eq!((r.csg, r.nsg), (0, 1));
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("TargetAlias", "demo"),
                ("TargetPortalGroupTag", "1"),
                ("AuthMethod", "None"),
            ])
        );
        assert_eq!(l.stage(), 1);
        // libiscsi repeats the identity keys in the operational stage.
        let (r, o) = expect_complete(l.step(&req(1, 3, true, &libiscsi_op_keys("Normal")), &Dir));
        assert_eq!(r.csg, 1);
        assert!(!text_of(&r).iter().any(|(k, _)| k == "TargetPortalGroupTag"));
        assert_eq!(o.auth_method, "None");
    }

    #[test]
    fn identity_change_is_an_error() {
        let mut l = login();
        expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("AuthMethod", "None"),
                ],
            ),
            &Dir,
        ));
        expect_fail(
            l.step(&req(1, 3, true, &[("InitiatorName", "iqn.other")]), &Dir),
            status::INITIATOR_ERROR,
        );
    }

    #[test]
    fn skip_security_transit_0_to_3() {
        let mut l = login();
        let (r, o) = expect_complete(l.step(
            &req(
                0,
                3,
                true,
                &[
                    ("InitiatorName", INI),
                    ("SessionType", "Discovery"),
                    ("AuthMethod", "None"),
                    ("MaxRecvDataSegmentLength", "32768"),
                ],
            ),
            &Dir,
        ));
        assert_eq!((r.csg, r.nsg), (0, 3));
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("AuthMethod", "None"),
                ("MaxRecvDataSegmentLength", "262144")
            ])
        );
        assert_eq!(o.session_type, SessionType::Discovery);
        assert_eq!(o.target_name, None);
        assert_eq!(o.connection.max_send_dsl, 32768);
    }

    #[test]
    fn discovery_with_repeated_target_name() {
        let mut l = login();
        let keys = [
            ("InitiatorName", INI),
            ("SessionType", "Discovery"),
            ("TargetName", "iqn.whatever"),
            ("AuthMethod", "None"),
        ];
        expect_continue(l.step(&req(0, 1, true, &keys), &Dir));
        let (_, o) = expect_complete(l.step(&req(1, 3, true, &keys[..3]), &Dir));
        assert_eq!(o.target_name, None);
    }

    #[test]
    fn discovery_session_answers() {
        let mut l = login();
        let (r, o) =
            expect_complete(l.step(&req(1, 3, true, &libiscsi_op_keys("Discovery")), &Dir));
        let t = text_of(&r);
        assert!(!t.iter().any(|(k, _)| k == "TargetPortalGroupTag"));
        assert!(t.contains(&("MaxBurstLength".into(), "Irrelevant".into())));
        assert!(t.contains(&("InitialR2T".into(), "Irrelevant".into())));
        assert!(t.contains(&("HeaderDigest".into(), "None".into())));
        assert_eq!(o.session_type, SessionType::Discovery);
        assert_eq!(o.session.session_type, SessionType::Discovery);
    }

    #[test]
    fn target_only_transits_when_asked() {
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                1,
                0,
                false,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("InitialR2T", "No"),
                ],
            ),
            &Dir,
        ));
        assert!(!r.transit);
        assert_eq!((r.csg, r.nsg), (1, 0));
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("TargetAlias", "demo"),
                ("TargetPortalGroupTag", "1"),
                ("InitialR2T", "No"),
                ("MaxRecvDataSegmentLength", "262144"),
            ])
        );
        assert_eq!(l.stage(), 1);
        // Now the initiator asks; we propose what it left out first.
        let r = expect_continue(l.step(&req(1, 3, true, &[("ImmediateData", "Yes")]), &Dir));
        assert!(!r.transit, "proposals pending: no transit");
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "1048576"),
                ("FirstBurstLength", "262144"),
                ("MaxOutstandingR2T", "16"),
            ])
        );
        // Second round: the answers, then completion.
        let (r, o) = expect_complete(l.step(
            &req(
                1,
                3,
                true,
                &[
                    ("MaxBurstLength", "524288"),
                    ("FirstBurstLength", "65536"),
                    ("MaxOutstandingR2T", "8"),
                ],
            ),
            &Dir,
        ));
        assert!(r.data.is_empty());
        assert_eq!(o.session.max_burst_length, 524288);
        assert_eq!(o.session.first_burst_length, 65536);
        assert_eq!(o.session.max_outstanding_r2t, 8);
        assert_eq!(o.connection.max_send_dsl, 8192, "initiator never declared");
    }

    #[test]
    fn mandatory_keys() {
        let mut l = login();
        expect_fail(
            l.step(&req(1, 3, true, &[("TargetName", TGT)]), &Dir),
            status::MISSING_PARAMETER,
        );
        let mut l = login();
        expect_fail(
            l.step(&req(1, 3, true, &[("InitiatorName", INI)]), &Dir),
            status::MISSING_PARAMETER,
        );
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    1,
                    3,
                    true,
                    &[
                        ("InitiatorName", INI),
                        ("SessionType", "Normal"),
                        ("TargetName", ""),
                    ],
                ),
                &Dir,
            ),
            status::MISSING_PARAMETER,
        );
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    1,
                    3,
                    true,
                    &[("InitiatorName", INI), ("SessionType", "Bogus")],
                ),
                &Dir,
            ),
            status::SESSION_TYPE_NOT_SUPPORTED,
        );
    }

    #[test]
    fn lookup_failures() {
        let mut l = login();
        let r = expect_fail(
            l.step(
                &req(
                    0,
                    1,
                    true,
                    &[("InitiatorName", INI), ("TargetName", "iqn.nope")],
                ),
                &Dir,
            ),
            status::NOT_FOUND,
        );
        assert!(r.data.is_empty());
        assert_eq!((r.csg, r.itt), (0, 0x1000));
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    0,
                    1,
                    true,
                    &[("InitiatorName", "iqn.bad"), ("TargetName", TGT)],
                ),
                &Dir,
            ),
            status::AUTHORIZATION_FAILURE,
        );
        let mut l = login();
        let r = expect_fail(
            l.step(
                &req(
                    0,
                    1,
                    true,
                    &[("InitiatorName", INI), ("TargetName", "iqn.moved")],
                ),
                &Dir,
            ),
            status::TARGET_MOVED_TEMPORARILY,
        );
        assert_eq!(r.data, b"TargetAddress=10.0.0.2:3260,1\0".to_vec());
    }

    #[test]
    fn version_checks() {
        let mut l = login();
        let mut r = req(0, 1, true, &[("InitiatorName", INI), ("TargetName", TGT)]);
        r.version_min = 1;
        r.version_max = 2;
        expect_fail(l.step(&r, &Dir), status::UNSUPPORTED_VERSION);
        // VersionMax > 0 with VersionMin 0 is fine: we answer 0.
        let mut l = login();
        let mut r = req(1, 3, true, &libiscsi_op_keys("Normal"));
        r.version_max = 3;
        let (resp, _) = expect_complete(l.step(&r, &Dir));
        assert_eq!((resp.version_max, resp.version_active), (0, 0));
    }

    #[test]
    fn stage_and_flag_checks() {
        let cases: Vec<LoginRequest> = vec![
            {
                let mut r = req(0, 1, true, &[("InitiatorName", INI)]);
                r.cont = true; // T and C
                r
            },
            req(2, 3, true, &[("InitiatorName", INI)]),
            req(3, 3, true, &[("InitiatorName", INI)]),
            req(1, 1, true, &[("InitiatorName", INI)]),
            req(1, 0, true, &[("InitiatorName", INI)]),
            req(0, 2, true, &[("InitiatorName", INI)]),
            req(0, 0, true, &[("InitiatorName", INI)]),
        ];
        for r in cases {
            let mut l = login();
            expect_fail(l.step(&r, &Dir), status::INITIATOR_ERROR);
        }
        // CSG must follow the negotiated stage.
        let mut l = login();
        expect_continue(l.step(
            &req(0, 1, false, &[("InitiatorName", INI), ("TargetName", TGT)]),
            &Dir,
        ));
        expect_fail(l.step(&req(1, 3, true, &[]), &Dir), status::INITIATOR_ERROR);
        // ISID must not change.
        let mut l = login();
        expect_continue(l.step(
            &req(0, 1, false, &[("InitiatorName", INI), ("TargetName", TGT)]),
            &Dir,
        ));
        let mut r = req(0, 1, true, &[]);
        r.isid[5] = 9;
        expect_fail(l.step(&r, &Dir), status::INITIATOR_ERROR);
    }

    #[test]
    fn malformed_text_fails_login() {
        let mut l = login();
        let mut r = req(0, 1, true, &[]);
        r.data = b"InitiatorName=iqn.x\0NoEquals\0".to_vec();
        expect_fail(l.step(&r, &Dir), status::INITIATOR_ERROR);
        let mut l = login();
        let mut r = req(0, 1, true, &[]);
        r.data = format!("InitiatorName={}\0", "x".repeat(300)).into_bytes();
        expect_fail(l.step(&r, &Dir), status::INITIATOR_ERROR);
    }

    #[test]
    fn duplicate_keys_fail() {
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    0,
                    1,
                    true,
                    &[
                        ("InitiatorName", INI),
                        ("InitiatorName", INI),
                        ("TargetName", TGT),
                    ],
                ),
                &Dir,
            ),
            status::INITIATOR_ERROR,
        );
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    1,
                    3,
                    true,
                    &[
                        ("InitiatorName", INI),
                        ("TargetName", TGT),
                        ("MaxBurstLength", "512"),
                        ("MaxBurstLength", "512"),
                    ],
                ),
                &Dir,
            ),
            status::INITIATOR_ERROR,
        );
        // Across requests too.
        let mut l = login();
        expect_continue(l.step(
            &req(
                1,
                0,
                false,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("DataDigest", "None"),
                ],
            ),
            &Dir,
        ));
        expect_fail(
            l.step(&req(1, 3, true, &[("DataDigest", "None")]), &Dir),
            status::INITIATOR_ERROR,
        );
    }

    #[test]
    fn chap_only_offer_rejected_then_authentication_failure() {
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("AuthMethod", "CHAP"),
                ],
            ),
            &Dir,
        ));
        assert!(!r.transit);
        assert_eq!(
            text_of(&r),
            pairs(&[
                ("TargetAlias", "demo"),
                ("TargetPortalGroupTag", "1"),
                ("AuthMethod", "Reject"),
            ])
        );
        expect_fail(
            l.step(&req(0, 1, true, &[]), &Dir),
            status::AUTHENTICATION_FAILURE,
        );
    }

    #[test]
    fn security_keys_in_operational_stage_fail() {
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    1,
                    3,
                    true,
                    &[
                        ("InitiatorName", INI),
                        ("TargetName", TGT),
                        ("AuthMethod", "None"),
                    ],
                ),
                &Dir,
            ),
            status::INITIATOR_ERROR,
        );
    }

    #[test]
    fn operational_keys_allowed_in_security_stage() {
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("AuthMethod", "None"),
                    ("MaxBurstLength", "65536"),
                ],
            ),
            &Dir,
        ));
        assert!(text_of(&r).contains(&("MaxBurstLength".into(), "65536".into())));
        let (_, o) = expect_complete(l.step(
            &req(
                1,
                3,
                true,
                &[
                    ("FirstBurstLength", "65536"),
                    ("InitialR2T", "No"),
                    ("MaxOutstandingR2T", "1"),
                ],
            ),
            &Dir,
        ));
        assert_eq!(o.session.max_burst_length, 65536);
    }

    #[test]
    fn required_auth_method_flow() {
        // Skipping security when authentication is required: 02/01.
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    1,
                    3,
                    true,
                    &[("InitiatorName", INI), ("TargetName", "iqn.chap")],
                ),
                &Dir,
            ),
            status::AUTHENTICATION_FAILURE,
        );
        // Offering only None: Reject, then 02/01.
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", "iqn.chap"),
                    ("AuthMethod", "None"),
                ],
            ),
            &Dir,
        ));
        assert_eq!(text_of(&r)[1], ("AuthMethod".into(), "Reject".into()));
        expect_fail(
            l.step(&req(0, 1, true, &[]), &Dir),
            status::AUTHENTICATION_FAILURE,
        );

        // The full exchange through the hook.
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                false,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", "iqn.chap"),
                    ("AuthMethod", "CHAP,None"),
                ],
            ),
            &Dir,
        ));
        assert_eq!(
            text_of(&r),
            pairs(&[("TargetPortalGroupTag", "1"), ("AuthMethod", "CHAP")])
        );
        let r = expect_continue(l.step(&req(0, 1, false, &[("CHAP_A", "5")]), &Dir));
        assert_eq!(
            text_of(&r),
            pairs(&[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0xabcd")])
        );
        // Transit asked while still authenticating: T stays 0 until done;
        // here the response completes authentication and transits.
        let r = expect_continue(l.step(
            &req(0, 1, true, &[("CHAP_N", INI), ("CHAP_R", "good")]),
            &Dir,
        ));
        assert!(r.transit);
        assert_eq!(r.nsg, 1);
        let (_, o) =
            expect_complete(l.step(&req(1, 3, true, &libiscsi_op_keys("Normal")[4..]), &Dir));
        assert_eq!(o.auth_method, "CHAP");

        // A wrong response: 02/01.
        let mut l = login();
        expect_continue(l.step(
            &req(
                0,
                1,
                false,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", "iqn.chap"),
                    ("AuthMethod", "CHAP"),
                ],
            ),
            &Dir,
        ));
        expect_continue(l.step(&req(0, 1, false, &[("CHAP_A", "5")]), &Dir));
        expect_fail(
            l.step(
                &req(0, 1, true, &[("CHAP_N", INI), ("CHAP_R", "bad")]),
                &Dir,
            ),
            status::AUTHENTICATION_FAILURE,
        );

        // Transit requested before the method finished: no transit.
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", "iqn.chap"),
                    ("AuthMethod", "CHAP"),
                ],
            ),
            &Dir,
        ));
        assert!(!r.transit);
    }

    #[test]
    fn auth_keys_without_method() {
        let mut l = login();
        expect_fail(
            l.step(
                &req(
                    0,
                    1,
                    true,
                    &[("InitiatorName", INI), ("TargetName", TGT), ("CHAP_A", "5")],
                ),
                &Dir,
            ),
            status::INITIATOR_ERROR,
        );
        // With AuthMethod=None agreed, stray CHAP keys are irrelevant.
        let mut l = login();
        let r = expect_continue(l.step(
            &req(
                0,
                1,
                true,
                &[
                    ("InitiatorName", INI),
                    ("TargetName", TGT),
                    ("AuthMethod", "None"),
                    ("CHAP_A", "5"),
                ],
            ),
            &Dir,
        ));
        assert_eq!(text_of(&r)[3], ("CHAP_A".into(), "Irrelevant".into()));
    }

    #[test]
    fn tsih_nonzero_refused() {
        let mut l = login();
        let mut r = req(1, 3, true, &libiscsi_op_keys("Normal"));
        r.tsih = 7;
        let resp = expect_fail(l.step(&r, &Dir), status::TOO_MANY_CONNECTIONS);
        assert_eq!(resp.tsih, 7);
        let mut l = login();
        r.tsih = 8;
        expect_fail(l.step(&r, &Dir), status::SESSION_DOES_NOT_EXIST);
    }

    #[test]
    fn request_text_over_several_pdus() {
        let full = text::encode(&libiscsi_op_keys("Normal"));
        let (a, b) = full.split_at(37); // mid-pair
        let mut l = login();
        let mut r1 = req(1, 3, false, &[]);
        r1.cont = true;
        r1.data = a.to_vec();
        let resp = expect_continue(l.step(&r1, &Dir));
        assert!(resp.data.is_empty());
        assert!(!resp.transit && !resp.cont);
        assert_eq!(resp.csg, 1);
        let mut r2 = req(1, 3, true, &[]);
        r2.data = b.to_vec();
        let (_, o) = expect_complete(l.step(&r2, &Dir));
        assert_eq!(o.initiator_name, INI);
        assert_eq!(o.connection.max_send_dsl, 262144);
    }

    #[test]
    fn response_over_several_pdus() {
        // Lots of unknown keys: each gets NotUnderstood, more than 8 KiB.
        let names: Vec<String> = (0..300)
            .map(|i| format!("X-com.example.key{i:04}"))
            .collect();
        let mut list: Vec<(&str, &str)> = vec![("InitiatorName", INI), ("TargetName", TGT)];
        list.extend(names.iter().map(|n| (n.as_str(), "1")));
        let mut l = login();
        let resp = expect_continue(l.step(&req(0, 1, true, &list), &Dir));
        assert!(resp.cont);
        assert!(!resp.transit);
        assert!(resp.data.len() <= LOGIN_MAX_DSL);
        assert_eq!(*resp.data.last().unwrap(), 0, "cut at a pair boundary");
        let mut all = resp.data.clone();
        // Text with a pending response is an error; empty requests fetch
        // the rest.
        let mut n = 0;
        let last = loop {
            n += 1;
            let resp = expect_continue(l.step(&req(0, 1, true, &[]), &Dir));
            all.extend_from_slice(&resp.data);
            if !resp.cont {
                break resp;
            }
        };
        assert_eq!(n, 1);
        assert!(last.transit);
        assert_eq!(last.nsg, 1);
        let t = text::parse(&all).unwrap();
        assert_eq!(t.len(), 2 + 300);
        assert_eq!(
            t[2],
            ("X-com.example.key0000".into(), "NotUnderstood".into())
        );
        assert_eq!(
            t[301],
            ("X-com.example.key0299".into(), "NotUnderstood".into())
        );
        assert_eq!(l.stage(), 1);

        // Sending text while the response is pending is an error.
        let mut l = login();
        expect_continue(l.step(&req(0, 1, true, &list), &Dir));
        expect_fail(
            l.step(&req(0, 1, true, &[("A", "b")]), &Dir),
            status::INITIATOR_ERROR,
        );
    }

    #[test]
    fn bhs_conversion() {
        let mut b = Bhs::new(op::LOGIN_REQ);
        b.0[0] |= 0x40; // immediate
        b.set_flags(0x87); // T, CSG 1, NSG 3
        b.0[2] = 0;
        b.0[3] = 0;
        b.0[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
        b.set_u16_at(14, 0);
        b.set_itt(0xdead_beef);
        b.set_u16_at(20, 3);
        b.set_u32_at(24, 100);
        b.set_u32_at(28, 200);
        let r = LoginRequest::from_bhs(&b, b"A=1\0".to_vec());
        assert_eq!(
            r,
            LoginRequest {
                transit: true,
                cont: false,
                csg: 1,
                nsg: 3,
                version_max: 0,
                version_min: 0,
                isid: [0x80, 1, 2, 3, 4, 5],
                tsih: 0,
                itt: 0xdead_beef,
                cid: 3,
                cmdsn: 100,
                exp_statsn: 200,
                data: b"A=1\0".to_vec(),
            }
        );
        let mut b = Bhs::new(op::LOGIN_REQ);
        b.set_flags(0x41); // C, CSG 0, NSG 1 (ignored without T)
        let r = LoginRequest::from_bhs(&b, Vec::new());
        assert_eq!((r.transit, r.cont, r.csg, r.nsg), (false, true, 0, 1));

        let resp = LoginResponse {
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_active: 0,
            isid: [0x80, 1, 2, 3, 4, 5],
            tsih: 0x0102,
            itt: 0xdead_beef,
            status_class: 2,
            status_detail: 7,
            data: vec![0; 13],
        };
        let b = resp.to_bhs();
        let mut want = [0u8; 48];
        want[0] = 0x23;
        want[1] = 0x87;
        want[7] = 13;
        want[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
        want[14..16].copy_from_slice(&[1, 2]);
        want[16..20].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        want[36] = 2;
        want[37] = 7;
        assert_eq!(b.0, want);
        // Without T, NSG is not sent; C is bit 6.
        let b = LoginResponse {
            transit: false,
            cont: true,
            csg: 0,
            nsg: 1,
            ..resp
        }
        .to_bhs();
        assert_eq!(b.0[1], 0x40);
    }

    #[test]
    fn ignored_proposals_do_not_loop() {
        let mut l = login();
        let r = expect_continue(l.step(
            &req(1, 3, true, &[("InitiatorName", INI), ("TargetName", TGT)]),
            &Dir,
        ));
        assert!(!r.transit);
        assert!(text_of(&r).contains(&("InitialR2T".into(), "No".into())));
        // The initiator asks again without answering: defaults apply.
        let (_, o) = expect_complete(l.step(&req(1, 3, true, &[]), &Dir));
        assert!(o.session.initial_r2t);
        assert_eq!(o.session.max_burst_length, 262144);
        assert_eq!(o.session.max_outstanding_r2t, 1);
    }

    #[test]
    fn failure_response_shape() {
        let r = req(1, 3, true, &[]);
        let f = LoginFailure::new(status::OUT_OF_RESOURCES, "no sessions left");
        let resp = Login::failure_response(&r, &f);
        assert_eq!((resp.status_class, resp.status_detail), (3, 2));
        assert_eq!(
            (resp.transit, resp.cont, resp.csg, resp.nsg),
            (false, false, 1, 0)
        );
        assert!(resp.data.is_empty());
    }
}
