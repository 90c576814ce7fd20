//! Operational key negotiation (RFC 7143 sections 6.2 and 13), target side.
//!
//! [`Negotiator`] answers the initiator's keys with each key's result
//! function (list, min, max, AND, OR, declarative), makes the target's own
//! proposals for keys the initiator left out, checks the initiator's
//! answers to them and finally yields [`SessionParams`] and
//! [`ConnectionParams`]. The login state machine (`login.rs`) handles the
//! login-only keys (InitiatorName, TargetName, SessionType, AuthMethod and
//! the authentication keys) itself and hands everything else to it.
//!
//! [`respond_ffp_key`] answers keys that arrive in Text Requests in full
//! feature phase.

use crate::login::{status, LoginFailure};
use crate::text::Pair;

pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
pub const IRRELEVANT: &str = "Irrelevant";
pub const REJECT: &str = "Reject";

/// Bounds of MaxRecvDataSegmentLength, MaxBurstLength, FirstBurstLength.
pub const MIN_DATA_LEN: u32 = 512;
pub const MAX_DATA_LEN: u32 = (1 << 24) - 1;

/// Digest algorithms (HeaderDigest, DataDigest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    None,
    Crc32c,
}

impl Digest {
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }
    pub fn parse(s: &str) -> Option<Digest> {
        match s {
            "None" => Some(Digest::None),
            "CRC32C" => Some(Digest::Crc32c),
            _ => None,
        }
    }
}

/// SessionType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

impl SessionType {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Normal => "Normal",
            SessionType::Discovery => "Discovery",
        }
    }
    pub fn parse(s: &str) -> Option<SessionType> {
        match s {
            "Normal" => Some(SessionType::Normal),
            "Discovery" => Some(SessionType::Discovery),
            _ => None,
        }
    }
}

/// TaskReporting (RFC 7143 13.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskReporting {
    Rfc3720,
    ResponseFence,
    FastAbort,
}

/// Session-wide results of the negotiation. `Default` gives the RFC 7143
/// defaults (what applies to a key nobody negotiated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub session_type: SessionType,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_outstanding_r2t: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub task_reporting: TaskReporting,
    /// iSCSIProtocolLevel (RFC 7144); 0 when not negotiated.
    pub protocol_level: u8,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            session_type: SessionType::Normal,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            max_connections: 1,
            task_reporting: TaskReporting::Rfc3720,
            protocol_level: 0,
        }
    }
}

/// Per-connection results of the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionParams {
    pub header_digest: Digest,
    pub data_digest: Digest,
    /// Our MaxRecvDataSegmentLength: the most the initiator may send in
    /// one PDU's data segment.
    pub max_recv_dsl: u32,
    /// The initiator's MaxRecvDataSegmentLength: the most we may send in
    /// one PDU's data segment.
    pub max_send_dsl: u32,
}

impl Default for ConnectionParams {
    fn default() -> Self {
        ConnectionParams {
            header_digest: Digest::None,
            data_digest: Digest::None,
            max_recv_dsl: 8192,
            max_send_dsl: 8192,
        }
    }
}

/// The target's values: what it offers and the limits it answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationConfig {
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u16,
    /// Acceptable header digests (any order; the initiator's order picks).
    pub header_digests: Vec<Digest>,
    pub data_digests: Vec<Digest>,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    /// Highest iSCSIProtocolLevel we implement (1 = RFC 7143).
    pub protocol_level: u8,
    /// Propose our values of keys the initiator did not send, when they
    /// differ from the defaults (costs one more login round trip with
    /// such initiators).
    pub propose_missing: bool,
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        NegotiationConfig {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 16,
            header_digests: vec![Digest::None, Digest::Crc32c],
            data_digests: vec![Digest::None, Digest::Crc32c],
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            protocol_level: 1,
            propose_missing: true,
        }
    }
}

/// The keys of RFC 7143 section 13 (plus RFC 7144 iSCSIProtocolLevel and
/// the RFC 7145 iSER keys, which we answer but do not implement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    SendTargets,
    TargetName,
    InitiatorName,
    TargetAlias,
    InitiatorAlias,
    TargetAddress,
    TargetPortalGroupTag,
    InitialR2T,
    ImmediateData,
    MaxRecvDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPduInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
    SessionType,
    TaskReporting,
    ProtocolLevel,
    /// IFMarker, OFMarker (obsoleted by RFC 7143).
    Marker,
    /// IFMarkInt, OFMarkInt (obsoleted by RFC 7143).
    MarkInt,
    RdmaExtensions,
    /// TargetRecvDataSegmentLength, InitiatorRecvDataSegmentLength,
    /// MaxOutstandingUnexpectedPDUs: meaningful only with iSER.
    Iser,
    AuthMethod,
    /// CHAP_*, SRP_*, KRB_*, SPKM_*: authentication exchanges.
    AuthKey,
}

impl Key {
    pub fn from_name(name: &str) -> Option<Key> {
        use Key::*;
        Some(match name {
            "HeaderDigest" => HeaderDigest,
            "DataDigest" => DataDigest,
            "MaxConnections" => MaxConnections,
            "SendTargets" => SendTargets,
            "TargetName" => TargetName,
            "InitiatorName" => InitiatorName,
            "TargetAlias" => TargetAlias,
            "InitiatorAlias" => InitiatorAlias,
            "TargetAddress" => TargetAddress,
            "TargetPortalGroupTag" => TargetPortalGroupTag,
            "InitialR2T" => InitialR2T,
            "ImmediateData" => ImmediateData,
            "MaxRecvDataSegmentLength" => MaxRecvDataSegmentLength,
            "MaxBurstLength" => MaxBurstLength,
            "FirstBurstLength" => FirstBurstLength,
            "DefaultTime2Wait" => DefaultTime2Wait,
            "DefaultTime2Retain" => DefaultTime2Retain,
            "MaxOutstandingR2T" => MaxOutstandingR2T,
            "DataPDUInOrder" => DataPduInOrder,
            "DataSequenceInOrder" => DataSequenceInOrder,
            "ErrorRecoveryLevel" => ErrorRecoveryLevel,
            "SessionType" => SessionType,
            "TaskReporting" => TaskReporting,
            "iSCSIProtocolLevel" => ProtocolLevel,
            "IFMarker" | "OFMarker" => Marker,
            "IFMarkInt" | "OFMarkInt" => MarkInt,
            "RDMAExtensions" => RdmaExtensions,
            "TargetRecvDataSegmentLength"
            | "InitiatorRecvDataSegmentLength"
            | "MaxOutstandingUnexpectedPDUs" => Iser,
            "AuthMethod" => AuthMethod,
            _ if name.starts_with("CHAP_")
                || name.starts_with("SRP_")
                || name.starts_with("KRB_")
                || name.starts_with("SPKM_") =>
            {
                AuthKey
            }
            _ => return None,
        })
    }

    /// LO: may only be negotiated on the leading connection of a session.
    pub fn leading_only(self) -> bool {
        use Key::*;
        matches!(
            self,
            MaxConnections
                | InitialR2T
                | ImmediateData
                | MaxBurstLength
                | FirstBurstLength
                | DefaultTime2Wait
                | DefaultTime2Retain
                | MaxOutstandingR2T
                | DataPduInOrder
                | DataSequenceInOrder
                | ErrorRecoveryLevel
                | SessionType
                | TaskReporting
                | ProtocolLevel
                | RdmaExtensions
        )
    }

    /// "Irrelevant when: SessionType=Discovery".
    pub fn irrelevant_in_discovery(self) -> bool {
        use Key::*;
        matches!(
            self,
            MaxConnections
                | InitialR2T
                | ImmediateData
                | MaxBurstLength
                | FirstBurstLength
                | MaxOutstandingR2T
                | DataPduInOrder
                | DataSequenceInOrder
                | TaskReporting
        )
    }

    /// Security keys: only valid in the SecurityNegotiation stage.
    pub fn is_security(self) -> bool {
        matches!(self, Key::AuthMethod | Key::AuthKey)
    }
}

/// Whether `v` is one of the answers that carry no value
/// (NotUnderstood, Irrelevant, Reject).
pub fn is_special(v: &str) -> bool {
    v == NOT_UNDERSTOOD || v == IRRELEVANT || v == REJECT
}

/// A numerical value: decimal or `0x` hexadecimal (RFC 7143 6.1).
pub fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn ranged(s: &str, lo: u64, hi: u64) -> Option<u64> {
    parse_number(s).filter(|v| (lo..=hi).contains(v))
}

fn fail(reason: String) -> LoginFailure {
    LoginFailure::new(status::INITIATOR_ERROR, reason)
}

/// Numeric keys with a min/max result function, their range and how the
/// value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Min,
    Max,
}

fn numeric_spec(key: Key) -> Option<(Func, u64, u64)> {
    Some(match key {
        Key::MaxConnections => (Func::Min, 1, 65535),
        Key::MaxBurstLength | Key::FirstBurstLength => {
            (Func::Min, MIN_DATA_LEN as u64, MAX_DATA_LEN as u64)
        }
        Key::DefaultTime2Wait => (Func::Max, 0, 3600),
        Key::DefaultTime2Retain => (Func::Min, 0, 3600),
        Key::MaxOutstandingR2T => (Func::Min, 1, 65535),
        Key::ErrorRecoveryLevel => (Func::Min, 0, 2),
        Key::ProtocolLevel => (Func::Min, 0, 31),
        _ => return None,
    })
}

/// One proposal of ours awaiting the initiator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    key: Key,
    name: &'static str,
    value: String,
}

/// Target side of one login's operational negotiation.
#[derive(Debug, Clone)]
pub struct Negotiator {
    cfg: NegotiationConfig,
    leading: bool,
    session: SessionParams,
    conn: ConnectionParams,
    /// Keys the initiator has sent during this login (proposals,
    /// declarations and answers): a second one is a protocol error.
    seen: Vec<String>,
    offers: Vec<Offer>,
    offered_once: bool,
    declared: bool,
}

impl Negotiator {
    /// `leading`: this login creates a session (TSIH 0); on other
    /// connections leading-only keys are irrelevant.
    pub fn new(cfg: NegotiationConfig, leading: bool) -> Self {
        let conn = ConnectionParams {
            max_recv_dsl: cfg.max_recv_data_segment_length,
            ..ConnectionParams::default()
        };
        Negotiator {
            cfg,
            leading,
            session: SessionParams::default(),
            conn,
            seen: Vec::new(),
            offers: Vec::new(),
            offered_once: false,
            declared: false,
        }
    }

    pub fn config(&self) -> &NegotiationConfig {
        &self.cfg
    }

    pub fn set_session_type(&mut self, t: SessionType) {
        self.session.session_type = t;
    }

    pub fn session_type(&self) -> SessionType {
        self.session.session_type
    }

    /// Record that the initiator sent `key`; false if it already had.
    pub fn note_key(&mut self, key: &str) -> bool {
        if self.seen.iter().any(|k| k == key) {
            return false;
        }
        self.seen.push(key.to_string());
        true
    }

    /// Whether the initiator has sent `key` in this login.
    pub fn has_seen(&self, key: &str) -> bool {
        self.seen.iter().any(|k| k == key)
    }

    /// Whether proposals of ours still wait for the initiator's answer
    /// (the target must not transit then).
    pub fn awaiting_answers(&self) -> bool {
        !self.offers.is_empty()
    }

    /// Answer the initiator's operational keys, appending our answers to
    /// `out`. Keys are checked for repetition here; callers that handle
    /// some keys themselves must `note_key` them and leave them out.
    pub fn respond(&mut self, pairs: &[Pair], out: &mut Vec<Pair>) -> Result<(), LoginFailure> {
        // FirstBurstLength depends on MaxBurstLength, InitialR2T and
        // ImmediateData, which may come later in the same text.
        let mut deferred = Vec::new();
        for (name, value) in pairs {
            if !self.note_key(name) {
                return Err(fail(format!("key {name} sent twice")));
            }
            if Key::from_name(name) == Some(Key::FirstBurstLength)
                && !self.offers.iter().any(|o| o.key == Key::FirstBurstLength)
            {
                deferred.push((name.as_str(), value.as_str()));
                continue;
            }
            self.respond_one(name, value, out)?;
        }
        for (name, value) in deferred {
            self.respond_one(name, value, out)?;
        }
        Ok(())
    }

    fn respond_one(
        &mut self,
        name: &str,
        value: &str,
        out: &mut Vec<Pair>,
    ) -> Result<(), LoginFailure> {
        let key = Key::from_name(name);
        if let Some(i) = key.and_then(|k| self.offers.iter().position(|o| o.key == k)) {
            let offer = self.offers.remove(i);
            return self.take_answer(&offer, value);
        }
        if is_special(value) {
            // An answer to nothing we asked: nothing to say.
            return Ok(());
        }
        let mut reply = |v: &str| out.push((name.to_string(), v.to_string()));
        let Some(key) = key else {
            // Unknown keys and X-/X# extension keys alike.
            reply(NOT_UNDERSTOOD);
            return Ok(());
        };
        if key.is_security() {
            return Err(fail(format!(
                "security key {name} outside security negotiation"
            )));
        }
        if self.session.session_type == SessionType::Discovery && key.irrelevant_in_discovery() {
            reply(IRRELEVANT);
            return Ok(());
        }
        if !self.leading && key.leading_only() {
            reply(IRRELEVANT);
            return Ok(());
        }
        match key {
            Key::HeaderDigest | Key::DataDigest => {
                let acceptable = if key == Key::HeaderDigest {
                    &self.cfg.header_digests
                } else {
                    &self.cfg.data_digests
                };
                let pick = value
                    .split(',')
                    .filter_map(Digest::parse)
                    .find(|d| acceptable.contains(d));
                match pick {
                    Some(d) => {
                        if key == Key::HeaderDigest {
                            self.conn.header_digest = d;
                        } else {
                            self.conn.data_digest = d;
                        }
                        reply(d.as_str());
                    }
                    None => reply(REJECT),
                }
            }
            Key::InitialR2T
            | Key::ImmediateData
            | Key::DataPduInOrder
            | Key::DataSequenceInOrder => {
                let Some(theirs) = parse_bool(value) else {
                    reply(REJECT);
                    return Ok(());
                };
                let result = match key {
                    // OR
                    Key::InitialR2T => theirs || self.cfg.initial_r2t,
                    Key::DataPduInOrder => theirs || self.cfg.data_pdu_in_order,
                    Key::DataSequenceInOrder => theirs || self.cfg.data_sequence_in_order,
                    // AND
                    _ => theirs && self.cfg.immediate_data,
                };
                self.set_bool(key, result);
                reply(yes_no(result));
            }
            Key::MaxRecvDataSegmentLength => {
                // Declarative: the initiator's limit on what we send.
                match ranged(value, MIN_DATA_LEN as u64, MAX_DATA_LEN as u64) {
                    Some(v) => self.conn.max_send_dsl = v as u32,
                    None => {
                        return Err(fail(format!("invalid MaxRecvDataSegmentLength={value}")));
                    }
                }
            }
            Key::FirstBurstLength if self.first_burst_irrelevant() => reply(IRRELEVANT),
            Key::MaxConnections
            | Key::MaxBurstLength
            | Key::FirstBurstLength
            | Key::DefaultTime2Wait
            | Key::DefaultTime2Retain
            | Key::MaxOutstandingR2T
            | Key::ErrorRecoveryLevel
            | Key::ProtocolLevel => {
                let (func, lo, hi) = numeric_spec(key).expect("numeric key");
                let Some(theirs) = ranged(value, lo, hi) else {
                    reply(REJECT);
                    return Ok(());
                };
                let ours = self.our_number(key);
                let mut result = match func {
                    Func::Min => theirs.min(ours),
                    Func::Max => theirs.max(ours),
                };
                if key == Key::FirstBurstLength {
                    result = result.min(self.session.max_burst_length as u64);
                }
                self.set_number(key, result);
                reply(&result.to_string());
            }
            Key::TaskReporting => {
                // We implement the RFC 3720 semantics only.
                if value.split(',').any(|v| v == "RFC3720") {
                    self.session.task_reporting = TaskReporting::Rfc3720;
                    reply("RFC3720");
                } else {
                    reply(REJECT);
                }
            }
            Key::RdmaExtensions => match parse_bool(value) {
                // AND with our No: iSER is not offered.
                Some(_) => reply("No"),
                None => reply(REJECT),
            },
            Key::Iser => reply(IRRELEVANT),
            // RFC 7143 13.26: SHOULD (IFMarker, OFMarker) / MUST (the
            // intervals) answer Reject.
            Key::Marker | Key::MarkInt => reply(REJECT),
            // Declarations of the initiator handled by the login itself.
            Key::InitiatorName | Key::InitiatorAlias | Key::TargetName | Key::SessionType => {}
            // Full feature phase only.
            Key::SendTargets => reply(IRRELEVANT),
            // Sent by targets only.
            Key::TargetAlias | Key::TargetAddress | Key::TargetPortalGroupTag => reply(REJECT),
            Key::AuthMethod | Key::AuthKey => unreachable!("handled above"),
        }
        Ok(())
    }

    /// FirstBurstLength is irrelevant with InitialR2T=Yes and
    /// ImmediateData=No: no unsolicited data at all.
    fn first_burst_irrelevant(&self) -> bool {
        let (r2t, imm) = self.expected_r2t_imm();
        r2t && !imm
    }

    /// InitialR2T / ImmediateData as they stand, counting our pending
    /// proposals as if accepted.
    fn expected_r2t_imm(&self) -> (bool, bool) {
        let mut r2t = self.session.initial_r2t;
        let mut imm = self.session.immediate_data;
        for o in &self.offers {
            match o.key {
                Key::InitialR2T => r2t = o.value == "Yes",
                Key::ImmediateData => imm = o.value == "Yes",
                _ => {}
            }
        }
        (r2t, imm)
    }

    fn our_number(&self, key: Key) -> u64 {
        let c = &self.cfg;
        match key {
            Key::MaxConnections => c.max_connections as u64,
            Key::MaxBurstLength => c.max_burst_length as u64,
            Key::FirstBurstLength => c.first_burst_length as u64,
            Key::DefaultTime2Wait => c.default_time2wait as u64,
            Key::DefaultTime2Retain => c.default_time2retain as u64,
            Key::MaxOutstandingR2T => c.max_outstanding_r2t as u64,
            Key::ErrorRecoveryLevel => c.error_recovery_level as u64,
            Key::ProtocolLevel => c.protocol_level as u64,
            _ => unreachable!("not numeric: {key:?}"),
        }
    }

    fn set_number(&mut self, key: Key, v: u64) {
        let s = &mut self.session;
        match key {
            Key::MaxConnections => s.max_connections = v as u16,
            Key::MaxBurstLength => s.max_burst_length = v as u32,
            Key::FirstBurstLength => s.first_burst_length = v as u32,
            Key::DefaultTime2Wait => s.default_time2wait = v as u16,
            Key::DefaultTime2Retain => s.default_time2retain = v as u16,
            Key::MaxOutstandingR2T => s.max_outstanding_r2t = v as u16,
            Key::ErrorRecoveryLevel => s.error_recovery_level = v as u8,
            Key::ProtocolLevel => s.protocol_level = v as u8,
            _ => unreachable!("not numeric: {key:?}"),
        }
    }

    fn set_bool(&mut self, key: Key, v: bool) {
        let s = &mut self.session;
        match key {
            Key::InitialR2T => s.initial_r2t = v,
            Key::ImmediateData => s.immediate_data = v,
            Key::DataPduInOrder => s.data_pdu_in_order = v,
            Key::DataSequenceInOrder => s.data_sequence_in_order = v,
            _ => unreachable!("not boolean: {key:?}"),
        }
    }

    /// The initiator's answer to one of our proposals.
    fn take_answer(&mut self, offer: &Offer, value: &str) -> Result<(), LoginFailure> {
        if is_special(value) {
            // Rejected / irrelevant / not understood: the default stays.
            return Ok(());
        }
        let bad = || {
            fail(format!(
                "invalid answer {}={value} to our {}",
                offer.name, offer.value
            ))
        };
        match offer.key {
            Key::InitialR2T
            | Key::ImmediateData
            | Key::DataPduInOrder
            | Key::DataSequenceInOrder => {
                let theirs = parse_bool(value).ok_or_else(bad)?;
                let ours = offer.value == "Yes";
                let result = if offer.key == Key::ImmediateData {
                    theirs && ours
                } else {
                    theirs || ours
                };
                self.set_bool(offer.key, result);
            }
            key => {
                let (func, lo, hi) = numeric_spec(key).ok_or_else(bad)?;
                let theirs = ranged(value, lo, hi).ok_or_else(bad)?;
                let ours: u64 = offer.value.parse().expect("our own number");
                let legal = match func {
                    Func::Min => theirs <= ours,
                    Func::Max => theirs >= ours,
                };
                if !legal {
                    return Err(bad());
                }
                self.set_number(key, theirs);
            }
        }
        Ok(())
    }

    /// Give up on proposals the initiator did not answer in the round
    /// after we made them: both sides then keep the defaults (the
    /// initiator ignored our values), and the login can proceed instead
    /// of looping. Returns the keys given up.
    pub fn abandon_offers(&mut self) -> Vec<&'static str> {
        self.offers.drain(..).map(|o| o.name).collect()
    }

    /// Declare our MaxRecvDataSegmentLength (once per login).
    pub fn declare(&mut self, out: &mut Vec<Pair>) {
        if !self.declared {
            self.declared = true;
            out.push((
                "MaxRecvDataSegmentLength".into(),
                self.cfg.max_recv_data_segment_length.to_string(),
            ));
        }
    }

    /// Propose our values of the keys the initiator has not sent, where
    /// ours would change the outcome from the default. Done once per
    /// login; returns whether anything was proposed (then the login must
    /// not leave the stage until the answers are in).
    pub fn make_offers(&mut self, out: &mut Vec<Pair>) -> bool {
        if self.offered_once
            || !self.cfg.propose_missing
            || !self.leading
            || self.session.session_type != SessionType::Normal
        {
            return false;
        }
        self.offered_once = true;
        let d = SessionParams::default();
        let c = self.cfg.clone();
        let mut candidates: Vec<(Key, &'static str, String)> = Vec::new();
        if c.initial_r2t != d.initial_r2t {
            candidates.push((Key::InitialR2T, "InitialR2T", yes_no(c.initial_r2t).into()));
        }
        if c.immediate_data != d.immediate_data {
            candidates.push((
                Key::ImmediateData,
                "ImmediateData",
                yes_no(c.immediate_data).into(),
            ));
        }
        if c.max_burst_length != d.max_burst_length {
            candidates.push((
                Key::MaxBurstLength,
                "MaxBurstLength",
                c.max_burst_length.to_string(),
            ));
        }
        if c.first_burst_length != d.first_burst_length {
            candidates.push((
                Key::FirstBurstLength,
                "FirstBurstLength",
                c.first_burst_length.to_string(),
            ));
        }
        if c.max_outstanding_r2t != d.max_outstanding_r2t {
            candidates.push((
                Key::MaxOutstandingR2T,
                "MaxOutstandingR2T",
                c.max_outstanding_r2t.to_string(),
            ));
        }
        if c.default_time2wait != d.default_time2wait {
            candidates.push((
                Key::DefaultTime2Wait,
                "DefaultTime2Wait",
                c.default_time2wait.to_string(),
            ));
        }
        if c.default_time2retain != d.default_time2retain {
            candidates.push((
                Key::DefaultTime2Retain,
                "DefaultTime2Retain",
                c.default_time2retain.to_string(),
            ));
        }
        if c.data_pdu_in_order != d.data_pdu_in_order {
            candidates.push((
                Key::DataPduInOrder,
                "DataPDUInOrder",
                yes_no(c.data_pdu_in_order).into(),
            ));
        }
        if c.data_sequence_in_order != d.data_sequence_in_order {
            candidates.push((
                Key::DataSequenceInOrder,
                "DataSequenceInOrder",
                yes_no(c.data_sequence_in_order).into(),
            ));
        }
        if c.max_connections != d.max_connections {
            candidates.push((
                Key::MaxConnections,
                "MaxConnections",
                c.max_connections.to_string(),
            ));
        }
        if c.error_recovery_level != d.error_recovery_level {
            candidates.push((
                Key::ErrorRecoveryLevel,
                "ErrorRecoveryLevel",
                c.error_recovery_level.to_string(),
            ));
        }
        for (key, name, value) in candidates {
            if self.has_seen(name) {
                continue;
            }
            let mut value = value;
            if key == Key::FirstBurstLength {
                // Only worth proposing where unsolicited data is allowed
                // (our InitialR2T/ImmediateData proposals count), and
                // never above the MaxBurstLength in force.
                if self.first_burst_irrelevant() {
                    continue;
                }
                let cap = if self.has_seen("MaxBurstLength") {
                    self.session.max_burst_length
                } else {
                    c.max_burst_length
                };
                value = c.first_burst_length.min(cap).to_string();
            }
            out.push((name.to_string(), value.clone()));
            self.offers.push(Offer { key, name, value });
        }
        !self.offers.is_empty()
    }

    /// The negotiated values, once the login completes.
    pub fn finish(&self) -> (SessionParams, ConnectionParams) {
        let mut s = self.session.clone();
        if s.first_burst_length > s.max_burst_length {
            s.first_burst_length = s.max_burst_length;
        }
        let mut c = self.conn;
        c.max_recv_dsl = self.cfg.max_recv_data_segment_length;
        (s, c)
    }
}

/// What to do with one key of a Text Request in full feature phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FfpAnswer {
    /// Put this pair into the response.
    Reply(Pair),
    /// The initiator declared a new MaxRecvDataSegmentLength: the limit
    /// on the data segments we send from now on.
    MaxSendDsl(u32),
    /// No answer.
    Nothing,
}

/// Answer a key (other than SendTargets) received in a Text Request in
/// full feature phase. Only keys with "Use: ALL" can change there:
/// MaxRecvDataSegmentLength and the aliases; keys that are
/// negotiated only at login are rejected.
pub fn respond_ffp_key(name: &str, value: &str) -> FfpAnswer {
    let reply = |v: &str| FfpAnswer::Reply((name.to_string(), v.to_string()));
    if is_special(value) {
        return FfpAnswer::Nothing;
    }
    match Key::from_name(name) {
        None => reply(NOT_UNDERSTOOD),
        Some(Key::MaxRecvDataSegmentLength) => {
            match ranged(value, MIN_DATA_LEN as u64, MAX_DATA_LEN as u64) {
                Some(v) => FfpAnswer::MaxSendDsl(v as u32),
                None => reply(REJECT),
            }
        }
        Some(Key::InitiatorAlias) => FfpAnswer::Nothing,
        Some(Key::Iser) => reply(IRRELEVANT),
        Some(_) => reply(REJECT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn neg() -> Negotiator {
        Negotiator::new(NegotiationConfig::default(), true)
    }

    fn answer(n: &mut Negotiator, list: &[(&str, &str)]) -> Vec<Pair> {
        let mut out = Vec::new();
        n.respond(&pairs(list), &mut out).unwrap();
        out
    }

    #[test]
    fn number_parsing() {
        assert_eq!(parse_number("8192"), Some(8192));
        assert_eq!(parse_number("0x2000"), Some(8192));
        assert_eq!(parse_number("0X1f"), Some(31));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("99999999999999999999999"), None);
    }

    #[test]
    fn digests_first_acceptable_in_initiator_order() {
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("HeaderDigest", "CRC32C,None"),
                ("DataDigest", "None,CRC32C"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[("HeaderDigest", "CRC32C"), ("DataDigest", "None")])
        );
        let (_, c) = n.finish();
        assert_eq!(c.header_digest, Digest::Crc32c);
        assert_eq!(c.data_digest, Digest::None);

        let cfg = NegotiationConfig {
            header_digests: vec![Digest::None],
            ..NegotiationConfig::default()
        };
        let mut n = Negotiator::new(cfg, true);
        let out = answer(
            &mut n,
            &[("HeaderDigest", "CRC32C"), ("DataDigest", "MD5,CRC32C")],
        );
        assert_eq!(
            out,
            pairs(&[("HeaderDigest", "Reject"), ("DataDigest", "CRC32C")])
        );
        assert_eq!(n.finish().1.header_digest, Digest::None);
    }

    #[test]
    fn boolean_functions() {
        // InitialR2T OR (ours No), ImmediateData AND (ours Yes),
        // DataPDUInOrder/DataSequenceInOrder OR (ours Yes).
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("DataPDUInOrder", "No"),
                ("DataSequenceInOrder", "No"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
            ])
        );
        let (s, _) = n.finish();
        assert!(!s.initial_r2t && s.immediate_data && s.data_pdu_in_order);

        let mut n = neg();
        let out = answer(&mut n, &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
        assert_eq!(
            out,
            pairs(&[("InitialR2T", "Yes"), ("ImmediateData", "No")])
        );
        let (s, _) = n.finish();
        assert!(s.initial_r2t && !s.immediate_data);

        let mut n = neg();
        let out = answer(&mut n, &[("InitialR2T", "yes")]);
        assert_eq!(out, pairs(&[("InitialR2T", "Reject")]));
        assert!(n.finish().0.initial_r2t, "default stays");
    }

    #[test]
    fn numeric_min_max() {
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("MaxBurstLength", "16776192"),
                ("FirstBurstLength", "65536"),
                ("MaxOutstandingR2T", "1"),
                ("DefaultTime2Wait", "0"),
                ("DefaultTime2Retain", "0"),
                ("ErrorRecoveryLevel", "2"),
                ("MaxConnections", "8"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("MaxBurstLength", "1048576"),
                ("MaxOutstandingR2T", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxConnections", "1"),
                ("FirstBurstLength", "65536"),
            ])
        );
        let (s, _) = n.finish();
        assert_eq!(s.max_burst_length, 1 << 20);
        assert_eq!(s.first_burst_length, 65536);
        assert_eq!(s.max_outstanding_r2t, 1);
        assert_eq!(s.default_time2wait, 2);
        assert_eq!(s.default_time2retain, 0);
        assert_eq!(s.error_recovery_level, 0);
        assert_eq!(s.max_connections, 1);
    }

    #[test]
    fn first_burst_bounded_by_max_burst_in_same_text() {
        let mut n = neg();
        // FirstBurstLength before MaxBurstLength in the text.
        let out = answer(
            &mut n,
            &[("FirstBurstLength", "262144"), ("MaxBurstLength", "131072")],
        );
        assert_eq!(
            out,
            pairs(&[("MaxBurstLength", "131072"), ("FirstBurstLength", "131072")])
        );
        assert_eq!(n.finish().0.first_burst_length, 131072);
    }

    #[test]
    fn first_burst_irrelevant_without_unsolicited_data() {
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("FirstBurstLength", "65536"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "No"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("InitialR2T", "Yes"),
                ("ImmediateData", "No"),
                ("FirstBurstLength", "Irrelevant")
            ])
        );
    }

    #[test]
    fn out_of_range_and_malformed_numbers_rejected() {
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("MaxBurstLength", "511"),
                ("FirstBurstLength", "16777216"),
                ("MaxOutstandingR2T", "0"),
                ("ErrorRecoveryLevel", "3"),
                ("DefaultTime2Wait", "3601"),
                ("MaxConnections", "abc"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("MaxBurstLength", "Reject"),
                ("MaxOutstandingR2T", "Reject"),
                ("ErrorRecoveryLevel", "Reject"),
                ("DefaultTime2Wait", "Reject"),
                ("MaxConnections", "Reject"),
                ("FirstBurstLength", "Reject"),
            ])
        );
        assert_eq!(n.finish().0, SessionParams::default());
    }

    #[test]
    fn mrdsl_is_declarative_per_direction() {
        let mut n = neg();
        let mut out = answer(&mut n, &[("MaxRecvDataSegmentLength", "0x10000")]);
        assert!(out.is_empty(), "declarations get no answer");
        n.declare(&mut out);
        n.declare(&mut out); // once only
        assert_eq!(out, pairs(&[("MaxRecvDataSegmentLength", "262144")]));
        let (_, c) = n.finish();
        assert_eq!(c.max_send_dsl, 65536);
        assert_eq!(c.max_recv_dsl, 262144);

        // Without the initiator's declaration the default 8192 holds.
        assert_eq!(neg().finish().1.max_send_dsl, 8192);
    }

    #[test]
    fn mrdsl_out_of_range_fails() {
        for bad in ["511", "16777216", "x"] {
            let mut n = neg();
            let e = n
                .respond(
                    &pairs(&[("MaxRecvDataSegmentLength", bad)]),
                    &mut Vec::new(),
                )
                .unwrap_err();
            assert_eq!((e.class, e.detail), (2, 0), "{bad}");
        }
        let mut n = neg();
        answer(&mut n, &[("MaxRecvDataSegmentLength", "16777215")]);
        assert_eq!(n.finish().1.max_send_dsl, 16777215);
    }

    #[test]
    fn unknown_extension_obsolete_and_misc_keys() {
        let mut n = neg();
        let out = answer(
            &mut n,
            &[
                ("X-com.example.foo", "1"),
                ("X#org.example", "a"),
                ("Frobnicate", "Yes"),
                ("IFMarker", "No"),
                ("OFMarker", "No"),
                ("OFMarkInt", "2048"),
                ("TaskReporting", "FastAbort,RFC3720"),
                ("iSCSIProtocolLevel", "2"),
                ("RDMAExtensions", "Yes"),
                ("TargetRecvDataSegmentLength", "8192"),
                ("SendTargets", "All"),
                ("TargetAlias", "x"),
                ("SomeAnswer", "NotUnderstood"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("X-com.example.foo", "NotUnderstood"),
                ("X#org.example", "NotUnderstood"),
                ("Frobnicate", "NotUnderstood"),
                ("IFMarker", "Reject"),
                ("OFMarker", "Reject"),
                ("OFMarkInt", "Reject"),
                ("TaskReporting", "RFC3720"),
                ("iSCSIProtocolLevel", "1"),
                ("RDMAExtensions", "No"),
                ("TargetRecvDataSegmentLength", "Irrelevant"),
                ("SendTargets", "Irrelevant"),
                ("TargetAlias", "Reject"),
            ])
        );
        assert_eq!(n.finish().0.protocol_level, 1);
        let mut n = neg();
        assert_eq!(
            answer(&mut n, &[("TaskReporting", "ResponseFence,FastAbort")]),
            pairs(&[("TaskReporting", "Reject")])
        );
        let mut n = neg();
        assert_eq!(
            answer(&mut n, &[("iSCSIProtocolLevel", "0")]),
            pairs(&[("iSCSIProtocolLevel", "0")])
        );
    }

    #[test]
    fn duplicate_key_is_protocol_error() {
        let mut n = neg();
        let e = n
            .respond(
                &pairs(&[("MaxBurstLength", "8192"), ("MaxBurstLength", "8192")]),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!((e.class, e.detail), (2, 0));
        // Also across requests of one login.
        let mut n = neg();
        answer(&mut n, &[("HeaderDigest", "None")]);
        let e = n
            .respond(&pairs(&[("HeaderDigest", "None")]), &mut Vec::new())
            .unwrap_err();
        assert_eq!((e.class, e.detail), (2, 0));
    }

    #[test]
    fn security_keys_outside_security_stage_fail() {
        let mut n = neg();
        let e = n
            .respond(&pairs(&[("CHAP_A", "5")]), &mut Vec::new())
            .unwrap_err();
        assert_eq!((e.class, e.detail), (2, 0));
    }

    #[test]
    fn discovery_irrelevant_keys() {
        let mut n = neg();
        n.set_session_type(SessionType::Discovery);
        let out = answer(
            &mut n,
            &[
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("MaxOutstandingR2T", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("MaxConnections", "1"),
                ("HeaderDigest", "None"),
                ("DefaultTime2Wait", "2"),
                ("ErrorRecoveryLevel", "0"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("MaxBurstLength", "Irrelevant"),
                ("InitialR2T", "Irrelevant"),
                ("ImmediateData", "Irrelevant"),
                ("MaxOutstandingR2T", "Irrelevant"),
                ("DataPDUInOrder", "Irrelevant"),
                ("DataSequenceInOrder", "Irrelevant"),
                ("MaxConnections", "Irrelevant"),
                ("HeaderDigest", "None"),
                ("DefaultTime2Wait", "2"),
                ("ErrorRecoveryLevel", "0"),
                ("FirstBurstLength", "Irrelevant"),
            ])
        );
        // No proposals in discovery sessions.
        let mut out = Vec::new();
        assert!(!n.make_offers(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn leading_only_keys_on_other_connections() {
        let mut n = Negotiator::new(NegotiationConfig::default(), false);
        let out = answer(&mut n, &[("InitialR2T", "No"), ("HeaderDigest", "None")]);
        assert_eq!(
            out,
            pairs(&[("InitialR2T", "Irrelevant"), ("HeaderDigest", "None")])
        );
    }

    #[test]
    fn offers_for_missing_keys_and_answers() {
        let mut n = neg();
        answer(
            &mut n,
            &[("HeaderDigest", "None"), ("MaxBurstLength", "262144")],
        );
        let mut out = Vec::new();
        assert!(n.make_offers(&mut out));
        assert_eq!(
            out,
            pairs(&[
                ("InitialR2T", "No"),
                ("FirstBurstLength", "262144"),
                ("MaxOutstandingR2T", "16"),
            ])
        );
        assert!(n.awaiting_answers());
        // Only once.
        assert!(!n.make_offers(&mut Vec::new()));
        // Answers: no response pairs, values adopted.
        let out = answer(
            &mut n,
            &[
                ("InitialR2T", "No"),
                ("FirstBurstLength", "131072"),
                ("MaxOutstandingR2T", "4"),
            ],
        );
        assert!(out.is_empty());
        assert!(!n.awaiting_answers());
        let (s, _) = n.finish();
        assert!(!s.initial_r2t);
        assert_eq!(s.first_burst_length, 131072);
        assert_eq!(s.max_outstanding_r2t, 4);
        assert_eq!(s.max_burst_length, 262144);
    }

    #[test]
    fn offer_answers_checked() {
        // Rejected offer: the default stays.
        let mut n = neg();
        n.make_offers(&mut Vec::new());
        answer(
            &mut n,
            &[("InitialR2T", "Reject"), ("MaxBurstLength", "Irrelevant")],
        );
        let (s, _) = n.finish();
        assert!(s.initial_r2t);
        assert_eq!(s.max_burst_length, 262144);
        // InitialR2T=Yes is a legal answer to our No (OR).
        let mut n = neg();
        n.make_offers(&mut Vec::new());
        answer(&mut n, &[("InitialR2T", "Yes")]);
        assert!(n.finish().0.initial_r2t);
        // Answering a min key above our offer is illegal.
        let mut n = neg();
        n.make_offers(&mut Vec::new());
        let e = n
            .respond(&pairs(&[("MaxOutstandingR2T", "17")]), &mut Vec::new())
            .unwrap_err();
        assert_eq!((e.class, e.detail), (2, 0));
        // Garbage answer.
        let mut n = neg();
        n.make_offers(&mut Vec::new());
        assert!(n
            .respond(&pairs(&[("InitialR2T", "Maybe")]), &mut Vec::new())
            .is_err());
    }

    #[test]
    fn nothing_to_offer_when_initiator_sent_everything() {
        let mut n = neg();
        answer(
            &mut n,
            &[
                ("InitialR2T", "No"),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("MaxOutstandingR2T", "1"),
            ],
        );
        let mut out = Vec::new();
        assert!(!n.make_offers(&mut out));
        assert!(out.is_empty());
        // Nor when proposing is switched off.
        let cfg = NegotiationConfig {
            propose_missing: false,
            ..NegotiationConfig::default()
        };
        assert!(!Negotiator::new(cfg, true).make_offers(&mut out));
    }

    #[test]
    fn first_burst_offer_capped_by_max_burst() {
        let mut n = neg();
        answer(
            &mut n,
            &[("MaxBurstLength", "131072"), ("InitialR2T", "No")],
        );
        let mut out = Vec::new();
        assert!(n.make_offers(&mut out));
        assert_eq!(
            out,
            pairs(&[("FirstBurstLength", "131072"), ("MaxOutstandingR2T", "16")])
        );
    }

    #[test]
    fn abandoned_offers_keep_defaults() {
        let mut n = neg();
        n.make_offers(&mut Vec::new());
        answer(&mut n, &[("MaxOutstandingR2T", "2")]);
        assert_eq!(
            n.abandon_offers(),
            vec!["InitialR2T", "MaxBurstLength", "FirstBurstLength"]
        );
        assert!(!n.awaiting_answers());
        let (s, _) = n.finish();
        assert!(s.initial_r2t);
        assert_eq!(s.max_burst_length, 262144);
        assert_eq!(s.first_burst_length, 65536);
        assert_eq!(s.max_outstanding_r2t, 2);
    }

    #[test]
    fn no_first_burst_offer_when_irrelevant() {
        let cfg = NegotiationConfig {
            initial_r2t: true,
            immediate_data: false,
            ..NegotiationConfig::default()
        };
        let mut n = Negotiator::new(cfg, true);
        let mut out = Vec::new();
        assert!(n.make_offers(&mut out));
        assert_eq!(
            out,
            pairs(&[
                ("ImmediateData", "No"),
                ("MaxBurstLength", "1048576"),
                ("MaxOutstandingR2T", "16"),
            ])
        );
    }

    #[test]
    fn ffp_keys() {
        assert_eq!(
            respond_ffp_key("MaxRecvDataSegmentLength", "4096"),
            FfpAnswer::MaxSendDsl(4096)
        );
        assert_eq!(
            respond_ffp_key("MaxRecvDataSegmentLength", "100"),
            FfpAnswer::Reply(("MaxRecvDataSegmentLength".into(), "Reject".into()))
        );
        assert_eq!(
            respond_ffp_key("MaxBurstLength", "4096"),
            FfpAnswer::Reply(("MaxBurstLength".into(), "Reject".into()))
        );
        assert_eq!(
            respond_ffp_key("X-foo", "1"),
            FfpAnswer::Reply(("X-foo".into(), "NotUnderstood".into()))
        );
        assert_eq!(
            respond_ffp_key("InitiatorAlias", "host"),
            FfpAnswer::Nothing
        );
        assert_eq!(respond_ffp_key("X-foo", "Reject"), FfpAnswer::Nothing);
    }
}
