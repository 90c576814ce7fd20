//! SPC-4 persistent reservations (5.13, 6.16 PERSISTENT RESERVE IN, 6.17
//! PERSISTENT RESERVE OUT).
//!
//! The state ([`PrState`]) is a list of registrations and at most one
//! reservation. A registration belongs to an I_T nexus identity, not to a
//! live [`crate::Nexus`]: an initiator port ([`InitiatorId`], for iSCSI the
//! initiator name plus ISID, or only the name when a format 00b TransportID
//! registered every port of the initiator) and a relative target port
//! identifier (or every target port, for ALL_TG_PT). So a registration
//! survives logout and reset, a new login with the same ISID finds it again,
//! and a login with a new ISID is a different I_T nexus. Registrations never
//! overlap (no nexus is covered by two of them), which registering enforces.
//!
//! Every service action is a pure function on a copy of the state returning
//! the unit attentions and aborts it causes ([`Effects`]); the caller
//! ([`crate::pr::reservation::Reservations::modify_pr`]) persists the new state
//! when APTPL is active, installs it, and only then applies the effects.
//!
//! Supported: all eight PERSISTENT RESERVE OUT service actions, the four
//! PERSISTENT RESERVE IN ones, all six reservation types, SPEC_I_PT with
//! iSCSI TransportIDs, ALL_TG_PT (one registration covering every target
//! port, listed once by READ KEYS and READ FULL STATUS), APTPL when the LU
//! has a state directory, and CRH (SPC-2 RESERVE / RELEASE exceptions, see
//! [`crate::pr::reservation`]). PREEMPT AND ABORT aborts the tasks of the
//! preempted nexuses, except those of the nexus issuing it (its own
//! registration is never preempted). REGISTER AND MOVE registers the
//! destination with the SERVICE ACTION RESERVATION KEY (replacing its key
//! if it was registered) and moves the reservation with the type in the CDB.

use crate::core::cdb::{be16, be32, be64};
use crate::core::handler::{Action, BoxFuture, Decode, ExecCtx, Plan};
use crate::core::sense::{self, key, Sense};
use crate::pr::reservation::{Who, CONFLICT};
use crate::pr::transport_id::{parse_transport_id, InitiatorId};

/// Registrations an LU keeps at most; more fail with INSUFFICIENT
/// REGISTRATION RESOURCES.
pub const MAX_REGISTRATIONS: usize = 256;
/// Largest PERSISTENT RESERVE OUT parameter list accepted.
const MAX_PARAMETER_LIST: u32 = 64 * 1024;

pub const INVALID_RELEASE_OF_PR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x04);
pub const INSUFFICIENT_REGISTRATION_RESOURCES: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x55, 0x04);
pub const UA_RESERVATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x03);
pub const UA_RESERVATIONS_RELEASED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x04);
pub const UA_REGISTRATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x05);

/// PERSISTENT RESERVE IN service actions.
pub(crate) mod sa_in {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// PERSISTENT RESERVE OUT service actions.
pub(crate) mod sa_out {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// Persistent reservation types (SPC-4 table 171).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WeRegistrantsOnly = 5,
    EaRegistrantsOnly = 6,
    WeAllRegistrants = 7,
    EaAllRegistrants = 8,
}

impl PrType {
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WeRegistrantsOnly,
            6 => PrType::EaRegistrantsOnly,
            7 => PrType::WeAllRegistrants,
            8 => PrType::EaAllRegistrants,
            _ => return None,
        })
    }
    /// Every registrant holds the reservation.
    pub fn all_registrants(self) -> bool {
        matches!(self, PrType::WeAllRegistrants | PrType::EaAllRegistrants)
    }
    pub fn registrants_only(self) -> bool {
        matches!(self, PrType::WeRegistrantsOnly | PrType::EaRegistrantsOnly)
    }
    /// Registered non-holders get access (registrants only / all
    /// registrants types).
    pub fn registrants_have_access(self) -> bool {
        self.registrants_only() || self.all_registrants()
    }
    /// Reads by those without access conflict too.
    pub fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess | PrType::EaRegistrantsOnly | PrType::EaAllRegistrants
        )
    }
}

/// One registration: a reservation key for an I_T nexus identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// Unique within the LU, stable across restarts (names the holder).
    pub id: u64,
    pub key: u64,
    pub who: InitiatorId,
    /// Relative target port identifier; `None`: every target port
    /// (ALL_TG_PT).
    pub port: Option<u16>,
}

impl Registration {
    /// Whether the registration is the one of the I_T nexus `who`.
    pub fn covers(&self, who: &Who) -> bool {
        self.who.covers(&who.init) && self.port.is_none_or(|p| p == who.port)
    }
    fn overlaps(&self, who: &InitiatorId, port: Option<u16>) -> bool {
        self.who.overlaps(who) && (self.port.is_none() || port.is_none() || self.port == port)
    }
    fn target(&self) -> Target {
        Target {
            who: self.who.clone(),
            port: self.port,
        }
    }
}

/// The persistent reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub ty: PrType,
    /// Registration id of the holder (not used for all-registrants types).
    pub holder: u64,
}

/// An LU's persistent reservation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrState {
    pub generation: u32,
    pub regs: Vec<Registration>,
    pub res: Option<Reservation>,
    /// The last APTPL bit received: persist through power loss.
    pub aptpl: bool,
    pub next_id: u64,
}

impl Default for PrState {
    fn default() -> Self {
        PrState {
            generation: 0,
            regs: Vec::new(),
            res: None,
            aptpl: false,
            next_id: 1,
        }
    }
}

/// Which nexuses a unit attention or an abort is for: those a (former)
/// registration covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub who: InitiatorId,
    pub port: Option<u16>,
}

impl Target {
    pub fn covers(&self, who: &Who) -> bool {
        self.who.covers(&who.init) && self.port.is_none_or(|p| p == who.port)
    }
}

/// What a service action causes beyond the state change. The issuing
/// nexus never receives these.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub ua: Vec<(Sense, Vec<Target>)>,
    /// Nexuses whose tasks are aborted (PREEMPT AND ABORT).
    pub abort: Vec<Target>,
}

impl Effects {
    fn ua(&mut self, s: Sense, t: Vec<Target>) {
        if !t.is_empty() {
            self.ua.push((s, t));
        }
    }
}

/// What the device server does for a command from `who` while a
/// persistent reservation exists; see [`crate::pr::reservation::Access`].
impl PrState {
    /// Index of the registration of `who`.
    pub fn find(&self, who: &Who) -> Option<usize> {
        self.regs.iter().position(|r| r.covers(who))
    }

    /// Whether registration `i` holds the reservation.
    pub fn is_holder(&self, i: usize) -> bool {
        self.res
            .is_some_and(|r| r.ty.all_registrants() || r.holder == self.regs[i].id)
    }

    /// Key reported for the reservation (0 for all-registrants types).
    fn holder_key(&self) -> Option<u64> {
        let res = self.res?;
        if res.ty.all_registrants() {
            return Some(0);
        }
        self.regs.iter().find(|r| r.id == res.holder).map(|r| r.key)
    }

    fn add(&mut self, key: u64, who: InitiatorId, port: Option<u16>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.regs.push(Registration { id, key, who, port });
        id
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    fn others(&self, except: usize) -> Vec<Target> {
        self.regs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != except)
            .map(|(_, r)| r.target())
            .collect()
    }

    /// Remove registration `i` (unregistering), releasing the reservation
    /// when it goes with it.
    fn unregister(&mut self, i: usize) -> Effects {
        let reg = self.regs.remove(i);
        let mut eff = Effects::default();
        if let Some(res) = self.res {
            if res.ty.all_registrants() {
                if self.regs.is_empty() {
                    self.res = None;
                }
            } else if res.holder == reg.id {
                self.res = None;
                if res.ty.registrants_only() {
                    eff.ua(
                        UA_RESERVATIONS_RELEASED,
                        self.regs.iter().map(|r| r.target()).collect(),
                    );
                }
            }
        }
        eff
    }
}

/// The parameter list of every service action but REGISTER AND MOVE.
#[derive(Debug, Default)]
pub(crate) struct OutParams {
    pub rk: u64,
    pub sark: u64,
    pub spec_i_pt: bool,
    pub all_tg_pt: bool,
    pub aptpl: bool,
    /// SPEC_I_PT TransportIDs with their offsets in the list.
    pub tids: Vec<(InitiatorId, usize)>,
}

/// The REGISTER AND MOVE parameter list.
#[derive(Debug)]
pub(crate) struct MoveParams {
    pub rk: u64,
    pub sark: u64,
    pub unreg: bool,
    pub aptpl: bool,
    pub rel_port: u16,
    pub dest: InitiatorId,
}

fn highest_bit(b: u8) -> Option<u8> {
    Some(7 - b.leading_zeros() as u8)
}

pub(crate) fn parse_out(data: &[u8], sa: u8, aptpl_ok: bool) -> Result<OutParams, Sense> {
    if data.len() < 24 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let flags = data[20];
    if flags & 0xf2 != 0 {
        return Err(Sense::invalid_param_field(20, highest_bit(flags & 0xf2)));
    }
    if data[21] != 0 {
        return Err(Sense::invalid_param_field(21, highest_bit(data[21])));
    }
    let mut p = OutParams {
        rk: be64(&data[0..8]),
        sark: be64(&data[8..16]),
        spec_i_pt: flags & 0x08 != 0,
        all_tg_pt: flags & 0x04 != 0,
        aptpl: flags & 0x01 != 0,
        tids: Vec::new(),
    };
    let registering = matches!(
        sa,
        sa_out::REGISTER | sa_out::REGISTER_AND_IGNORE_EXISTING_KEY
    );
    if p.spec_i_pt {
        if sa != sa_out::REGISTER {
            return Err(Sense::invalid_param_field(20, Some(3)));
        }
        if data.len() < 28 {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let tlen = be32(&data[24..28]) as usize;
        if data.len() != 28 + tlen {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let mut at = 28;
        while at < data.len() {
            let (id, len) = parse_transport_id(data, at)?;
            p.tids.push((id, at));
            at += len;
        }
    } else if data.len() != 24 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if registering && p.aptpl && !aptpl_ok {
        return Err(Sense::invalid_param_field(20, Some(0)));
    }
    if !registering {
        p.aptpl = false;
        p.all_tg_pt = false;
    }
    Ok(p)
}

pub(crate) fn parse_move(data: &[u8], aptpl_ok: bool) -> Result<MoveParams, Sense> {
    if data.len() < 24 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if data[16] != 0 {
        return Err(Sense::invalid_param_field(16, highest_bit(data[16])));
    }
    let flags = data[17];
    if flags & 0xfc != 0 {
        return Err(Sense::invalid_param_field(17, highest_bit(flags & 0xfc)));
    }
    let tlen = be32(&data[20..24]) as usize;
    if data.len() != 24 + tlen {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let (dest, len) = parse_transport_id(data, 24)?;
    if len != tlen {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let aptpl = flags & 0x01 != 0;
    if aptpl && !aptpl_ok {
        return Err(Sense::invalid_param_field(17, Some(0)));
    }
    Ok(MoveParams {
        rk: be64(&data[0..8]),
        sark: be64(&data[8..16]),
        unreg: flags & 0x02 != 0,
        aptpl,
        rel_port: be16(&data[18..20]),
        dest,
    })
}

/// REGISTER and REGISTER AND IGNORE EXISTING KEY.
pub(crate) fn register(
    st: &mut PrState,
    who: &Who,
    p: &OutParams,
    ignore_key: bool,
) -> Result<Effects, Sense> {
    match st.find(who) {
        None => {
            if !ignore_key && p.rk != 0 {
                return Err(CONFLICT);
            }
            if p.sark == 0 {
                // Unregistering what is not registered: nothing to do.
                return Ok(Effects::default());
            }
            let port = if p.all_tg_pt { None } else { Some(who.port) };
            let mut new = vec![(who.init.clone(), port)];
            for (t, at) in &p.tids {
                if new.iter().any(|(w, _)| w == t) {
                    continue; // the same initiator port twice (or the issuer)
                }
                if new.iter().any(|(w, _)| w.overlaps(t)) {
                    return Err(Sense::invalid_param_field(*at, None));
                }
                new.push((t.clone(), port));
            }
            if new
                .iter()
                .any(|(w, pt)| st.regs.iter().any(|r| r.overlaps(w, *pt)))
            {
                return Err(CONFLICT);
            }
            if st.regs.len() + new.len() > MAX_REGISTRATIONS {
                return Err(INSUFFICIENT_REGISTRATION_RESOURCES);
            }
            for (w, pt) in new {
                st.add(p.sark, w, pt);
            }
            st.aptpl = p.aptpl;
            st.bump();
            Ok(Effects::default())
        }
        Some(i) => {
            if !ignore_key && p.rk != st.regs[i].key {
                return Err(CONFLICT);
            }
            if p.spec_i_pt {
                return Err(Sense::invalid_param_field(20, Some(3)));
            }
            st.bump();
            if p.sark == 0 {
                Ok(st.unregister(i))
            } else {
                st.regs[i].key = p.sark;
                st.aptpl = p.aptpl;
                Ok(Effects::default())
            }
        }
    }
}

/// The registration of `who` if `rk` is its key, else RESERVATION CONFLICT.
fn registered(st: &PrState, who: &Who, rk: u64) -> Result<usize, Sense> {
    match st.find(who) {
        Some(i) if st.regs[i].key == rk => Ok(i),
        _ => Err(CONFLICT),
    }
}

pub(crate) fn reserve(st: &mut PrState, who: &Who, rk: u64, ty: PrType) -> Result<Effects, Sense> {
    let i = registered(st, who, rk)?;
    match st.res {
        None => {
            st.res = Some(Reservation {
                ty,
                holder: st.regs[i].id,
            })
        }
        Some(res) if st.is_holder(i) && res.ty == ty => {}
        Some(_) => return Err(CONFLICT),
    }
    Ok(Effects::default())
}

pub(crate) fn release(st: &mut PrState, who: &Who, rk: u64, ty: PrType) -> Result<Effects, Sense> {
    let i = registered(st, who, rk)?;
    let mut eff = Effects::default();
    match st.res {
        Some(res) if st.is_holder(i) => {
            if res.ty != ty {
                return Err(INVALID_RELEASE_OF_PR);
            }
            st.res = None;
            if res.ty.registrants_have_access() {
                eff.ua(UA_RESERVATIONS_RELEASED, st.others(i));
            }
        }
        // Not reserved, or reserved by another: nothing to release.
        _ => {}
    }
    Ok(eff)
}

pub(crate) fn clear(st: &mut PrState, who: &Who, rk: u64) -> Result<Effects, Sense> {
    let i = registered(st, who, rk)?;
    let mut eff = Effects::default();
    eff.ua(UA_RESERVATIONS_PREEMPTED, st.others(i));
    st.regs.clear();
    st.res = None;
    st.bump();
    Ok(eff)
}

/// PREEMPT and PREEMPT AND ABORT.
pub(crate) fn preempt(
    st: &mut PrState,
    who: &Who,
    p: &OutParams,
    ty: PrType,
    abort: bool,
) -> Result<Effects, Sense> {
    let i = registered(st, who, p.rk)?;
    let me = st.regs[i].id;
    let mut eff = Effects::default();
    let with_key = |st: &PrState, k: u64| -> Vec<u64> {
        st.regs
            .iter()
            .filter(|r| r.key == k && r.id != me)
            .map(|r| r.id)
            .collect()
    };
    let removed: Vec<u64> = match st.res {
        Some(res) if res.ty.all_registrants() && p.sark == 0 => {
            // Preempt everyone else; the issuer now holds a reservation of
            // the new type.
            let ids = st
                .regs
                .iter()
                .filter(|r| r.id != me)
                .map(|r| r.id)
                .collect();
            st.res = Some(Reservation { ty, holder: me });
            ids
        }
        Some(res) if !res.ty.all_registrants() && st.holder_key() == Some(p.sark) => {
            let ids = with_key(st, p.sark);
            st.res = Some(Reservation { ty, holder: me });
            if res.ty != ty {
                let released: Vec<Target> = st
                    .regs
                    .iter()
                    .filter(|r| r.id != me && !ids.contains(&r.id))
                    .map(|r| r.target())
                    .collect();
                eff.ua(UA_RESERVATIONS_RELEASED, released);
            }
            ids
        }
        _ => {
            // Remove registrations only; the reservation (if any) stays.
            if p.sark == 0 {
                return Err(Sense::invalid_param_field(8, None));
            }
            let ids = with_key(st, p.sark);
            if ids.is_empty() {
                return Err(CONFLICT);
            }
            ids
        }
    };
    let targets: Vec<Target> = st
        .regs
        .iter()
        .filter(|r| removed.contains(&r.id))
        .map(|r| r.target())
        .collect();
    st.regs.retain(|r| !removed.contains(&r.id));
    if abort {
        eff.abort = targets.clone();
    }
    eff.ua(UA_REGISTRATIONS_PREEMPTED, targets);
    st.bump();
    Ok(eff)
}

pub(crate) fn register_and_move(
    st: &mut PrState,
    who: &Who,
    p: &MoveParams,
    ty: PrType,
) -> Result<Effects, Sense> {
    let i = registered(st, who, p.rk)?;
    let me = st.regs[i].id;
    match st.res {
        Some(res) if !res.ty.all_registrants() && res.holder == me => {}
        _ => return Err(CONFLICT),
    }
    if p.sark == 0 {
        return Err(Sense::invalid_param_field(8, None));
    }
    if p.rel_port == 0 {
        return Err(Sense::invalid_param_field(18, None));
    }
    if p.dest.covers(&who.init) && p.rel_port == who.port {
        // Moving to the I_T nexus that holds it.
        return Err(Sense::invalid_param_field(24, None));
    }
    let existing = st
        .regs
        .iter()
        .position(|r| r.overlaps(&p.dest, Some(p.rel_port)));
    let dest = match existing {
        Some(j) if st.regs[j].id == me => return Err(Sense::invalid_param_field(24, None)),
        Some(j) => {
            st.regs[j].key = p.sark;
            st.regs[j].id
        }
        None => {
            if st.regs.len() >= MAX_REGISTRATIONS {
                return Err(INSUFFICIENT_REGISTRATION_RESOURCES);
            }
            st.add(p.sark, p.dest.clone(), Some(p.rel_port))
        }
    };
    st.res = Some(Reservation { ty, holder: dest });
    if p.unreg {
        st.regs.retain(|r| r.id != me);
    }
    st.aptpl = p.aptpl;
    st.bump();
    Ok(Effects::default())
}

// ---- PERSISTENT RESERVE IN ------------------------------------------------

pub(crate) fn decode_in(d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(execute_in).with_alloc_len(be16(&d.cdb[7..9]) as u32))
}

fn execute_in(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let aptpl_capable = lu.reservations.aptpl_capable();
    lu.reservations
        .read_pr(|st| build_in(st, c.cdb[1] & 0x1f, aptpl_capable))
}

/// PERSISTENT RESERVE IN parameter data (before truncation to the
/// allocation length; the length fields are never altered by it).
pub(crate) fn build_in(st: &PrState, sa: u8, aptpl_capable: bool) -> Result<Vec<u8>, Sense> {
    let mut d = Vec::new();
    match sa {
        sa_in::READ_KEYS => {
            d.extend_from_slice(&st.generation.to_be_bytes());
            d.extend_from_slice(&((st.regs.len() * 8) as u32).to_be_bytes());
            for r in &st.regs {
                d.extend_from_slice(&r.key.to_be_bytes());
            }
        }
        sa_in::READ_RESERVATION => {
            d.extend_from_slice(&st.generation.to_be_bytes());
            match (st.res, st.holder_key()) {
                (Some(res), Some(key)) => {
                    d.extend_from_slice(&16u32.to_be_bytes());
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 0, 0, res.ty as u8, 0, 0]);
                }
                _ => d.extend_from_slice(&0u32.to_be_bytes()),
            }
        }
        sa_in::REPORT_CAPABILITIES => {
            // CRH, SIP_C, ATP_C, PTPL_C.
            let b2 = 0x10 | 0x08 | 0x04 | u8::from(aptpl_capable);
            // TMV, ALLOW COMMANDS 001b (TEST UNIT READY is allowed through
            // WE and EA reservations), PTPL_A.
            let b3 = 0x80 | (0b001 << 4) | u8::from(st.aptpl && aptpl_capable);
            // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
            d.extend_from_slice(&[0, 8, b2, b3, 0xea, 0x01, 0, 0]);
        }
        sa_in::READ_FULL_STATUS => {
            d.extend_from_slice(&st.generation.to_be_bytes());
            d.extend_from_slice(&[0, 0, 0, 0]);
            for (i, r) in st.regs.iter().enumerate() {
                let holder = st.is_holder(i);
                let tid = r.who.encode_transport_id();
                d.extend_from_slice(&r.key.to_be_bytes());
                d.extend_from_slice(&[0, 0, 0, 0]);
                d.push(if r.port.is_none() { 0x02 } else { 0 } | u8::from(holder));
                d.push(match st.res {
                    Some(res) if holder => res.ty as u8,
                    _ => 0,
                });
                d.extend_from_slice(&[0, 0, 0, 0]);
                d.extend_from_slice(&r.port.unwrap_or(0).to_be_bytes());
                d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                d.extend_from_slice(&tid);
            }
            let add = (d.len() - 8) as u32;
            d[4..8].copy_from_slice(&add.to_be_bytes());
        }
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    }
    Ok(d)
}

// ---- PERSISTENT RESERVE OUT -----------------------------------------------

pub(crate) fn decode_out(d: &Decode<'_>) -> Result<Plan, Sense> {
    let sa = d.cdb[1] & 0x1f;
    let scope = d.cdb[2] >> 4;
    let ty = d.cdb[2] & 0x0f;
    if matches!(
        sa,
        sa_out::RESERVE
            | sa_out::RELEASE
            | sa_out::PREEMPT
            | sa_out::PREEMPT_AND_ABORT
            | sa_out::REGISTER_AND_MOVE
    ) {
        if scope != 0 {
            return Err(Sense::invalid_cdb_field(2, Some(7)));
        }
        if PrType::from_code(ty).is_none() {
            return Err(Sense::invalid_cdb_field(2, Some(3)));
        }
    }
    let len = be32(&d.cdb[5..9]);
    if !(24..=MAX_PARAMETER_LIST).contains(&len) {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    Ok(Plan::action(Action::Async(exec_out)).with_data_out(len))
}

fn exec_out<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(execute_out(c))
}

/// Asynchronous because a shared state (several gateways) is read and
/// committed in the cluster: those calls run on a blocking thread, never
/// on the runtime that serves the other commands.
async fn execute_out(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let len = be32(&c.cdb[5..9]) as usize;
    if c.data_out.len() < len {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let data = &c.data_out[..len];
    let sa = c.cdb[1] & 0x1f;
    // Validated by decode_out for the service actions that use it.
    let ty = PrType::from_code(c.cdb[2] & 0x0f).unwrap_or(PrType::WriteExclusive);
    let who = Who::of(c.nexus);
    let r = &lu.reservations;
    let aptpl_ok = r.aptpl_capable();
    let effects = if sa == sa_out::REGISTER_AND_MOVE {
        let p = parse_move(data, aptpl_ok)?;
        r.modify_pr(|st| register_and_move(st, &who, &p, ty))
            .await?
    } else {
        let p = parse_out(data, sa, aptpl_ok)?;
        r.modify_pr(|st| match sa {
            sa_out::REGISTER => register(st, &who, &p, false),
            sa_out::REGISTER_AND_IGNORE_EXISTING_KEY => register(st, &who, &p, true),
            sa_out::RESERVE => reserve(st, &who, p.rk, ty),
            sa_out::RELEASE => release(st, &who, p.rk, ty),
            sa_out::CLEAR => clear(st, &who, p.rk),
            sa_out::PREEMPT => preempt(st, &who, &p, ty, false),
            sa_out::PREEMPT_AND_ABORT => preempt(st, &who, &p, ty, true),
            _ => Err(Sense::invalid_cdb_field(1, Some(4))),
        })
        .await?
    };
    crate::pr::reservation::apply_effects(lu, c.nexus.id(), effects);
    Ok(Vec::new())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::api::{
        status, ExecOutcome, LunMap, MappedLun, Nexus, Response, TargetPort, TmfFunction,
    };
    use crate::lu::{LogicalUnit, LuConfig};
    use crate::testutil::*;

    pub const CONFLICT_STATUS: u8 = status::RESERVATION_CONFLICT;
    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const WRITE1: [u8; 10] = [0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
    pub const WE: u8 = 1;
    pub const EA: u8 = 3;
    pub const WE_RO: u8 = 5;
    pub const EA_RO: u8 = 6;
    pub const WE_AR: u8 = 7;
    pub const EA_AR: u8 = 8;

    /// A nexus of initiator port `init` through relative target port
    /// `port`, seeing the fixture's LUs.
    pub fn nexus_as(t: &Fixture, init: &str, port: u16) -> Fixture {
        let tp = TargetPort {
            relative_port_id: port,
            ..test_port()
        };
        Fixture {
            nexus: Nexus::new(init.to_string(), Arc::new(tp), t.luns.clone()),
            lu: t.lu.clone(),
            store: t.store.clone(),
            luns: t.luns.clone(),
        }
    }

    /// A fixture whose LU keeps its APTPL state in `state`.
    pub fn with_state(state: &Arc<crate::MemoryStore>) -> Result<Fixture, crate::LuError> {
        let store = Arc::new(MemStore::new(64, 512, 512, false));
        let mut cfg = LuConfig::new("aptpl0", store.clone());
        cfg.state = Some(state.clone());
        let lu = LogicalUnit::open(cfg)?;
        let mut map = BTreeMap::new();
        map.insert(
            0,
            MappedLun {
                lu: lu.clone(),
                read_only: false,
            },
        );
        let luns = Arc::new(LunMap { luns: map });
        let nexus = Nexus::new(
            "iqn.test:init,i,0x1".to_string(),
            Arc::new(test_port()),
            luns.clone(),
        );
        Ok(Fixture {
            nexus,
            lu,
            store,
            luns,
        })
    }

    pub fn out_cdb(sa: u8, ty: u8, len: u32) -> Vec<u8> {
        let mut c = vec![0x5f, sa, ty, 0, 0, 0, 0, 0, 0, 0];
        c[5..9].copy_from_slice(&len.to_be_bytes());
        c
    }

    pub fn params(rk: u64, sark: u64, flags: u8) -> Vec<u8> {
        let mut d = vec![0u8; 24];
        d[0..8].copy_from_slice(&rk.to_be_bytes());
        d[8..16].copy_from_slice(&sark.to_be_bytes());
        d[20] = flags;
        d
    }

    pub async fn out_raw(t: &Fixture, sa: u8, ty: u8, data: &[u8]) -> Response {
        t.run(&out_cdb(sa, ty, data.len() as u32), data).await
    }

    pub async fn out(t: &Fixture, sa: u8, ty: u8, rk: u64, sark: u64) -> Response {
        out_raw(t, sa, ty, &params(rk, sark, 0)).await
    }

    pub async fn register_key(t: &Fixture, key: u64) {
        let r = out(t, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, key).await;
        assert_eq!(r.status, 0, "register {key:x}");
    }

    pub async fn pr_in(t: &Fixture, sa: u8, alloc: u16) -> Response {
        let mut c = vec![0x5e, sa, 0, 0, 0, 0, 0, 0, 0, 0];
        c[7..9].copy_from_slice(&alloc.to_be_bytes());
        t.run(&c, &[]).await
    }

    /// (PRgeneration, keys).
    pub async fn keys(t: &Fixture) -> (u32, Vec<u64>) {
        let r = pr_in(t, sa_in::READ_KEYS, 8192).await;
        assert_eq!(r.status, 0);
        let d = r.data;
        let n = be32(&d[4..8]) as usize;
        assert_eq!(d.len(), 8 + n);
        (be32(&d[0..4]), d[8..].chunks(8).map(be64).collect())
    }

    /// (key, type) of the reservation.
    pub async fn reservation(t: &Fixture) -> Option<(u64, u8)> {
        let r = pr_in(t, sa_in::READ_RESERVATION, 8192).await;
        assert_eq!(r.status, 0);
        match be32(&r.data[4..8]) {
            0 => None,
            16 => Some((be64(&r.data[8..16]), r.data[21] & 0x0f)),
            n => panic!("additional length {n}"),
        }
    }

    async fn can_read(t: &Fixture) -> bool {
        t.run(&READ1, &[]).await.status == 0
    }

    async fn can_write(t: &Fixture) -> bool {
        t.run(&WRITE1, &vec![0xab; 512]).await.status == 0
    }

    fn sense_of(r: &Response) -> Sense {
        assert_eq!(r.status, 2, "expected CHECK CONDITION");
        Sense::decode(r.sense.as_ref().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn register_read_keys_and_generation() {
        let a = Fixture::new(64, 512);
        a.clear_ua().await;
        assert_eq!(keys(&a).await, (0, vec![]));
        // Unregistered with RK != 0: RESERVATION CONFLICT.
        assert_eq!(
            out(&a, sa_out::REGISTER, 0, 5, 7).await.status,
            CONFLICT_STATUS
        );
        // Unregistered with SARK 0: GOOD, nothing happens.
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0, 0).await.status, 0);
        assert_eq!(keys(&a).await, (0, vec![]));
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0, 0x11).await.status, 0);
        assert_eq!(keys(&a).await, (1, vec![0x11]));
        // Registered: REGISTER with the wrong RK conflicts (libiscsi
        // ProutRegister re-registers with RK=0).
        assert_eq!(
            out(&a, sa_out::REGISTER, 0, 0, 0x12).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(keys(&a).await, (1, vec![0x11]));
        // Change the key.
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0x11, 0x22).await.status, 0);
        assert_eq!(keys(&a).await, (2, vec![0x22]));
        // REGISTER AND IGNORE EXISTING KEY ignores RK.
        assert_eq!(
            out(&a, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x999, 0x33)
                .await
                .status,
            0
        );
        assert_eq!(keys(&a).await, (3, vec![0x33]));
        // Another nexus registers its own key.
        let b = a.other_nexus();
        b.clear_ua().await;
        register_key(&b, 0x44).await;
        assert_eq!(keys(&a).await, (4, vec![0x33, 0x44]));
        // Unregister.
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0x33, 0).await.status, 0);
        assert_eq!(keys(&b).await, (5, vec![0x44]));
        // RESERVE and RELEASE do not bump the generation.
        assert_eq!(out(&b, sa_out::RESERVE, WE, 0x44, 0).await.status, 0);
        assert_eq!(out(&b, sa_out::RELEASE, WE, 0x44, 0).await.status, 0);
        assert_eq!(keys(&b).await.0, 5);
    }

    #[tokio::test]
    async fn read_keys_truncated_keeps_the_length() {
        let a = Fixture::new(64, 512);
        a.clear_ua().await;
        register_key(&a, 0xabc).await;
        let r = pr_in(&a, sa_in::READ_KEYS, 8).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data.len(), 8);
        assert_eq!(be32(&r.data[4..8]), 8, "ADDITIONAL LENGTH not truncated");
    }

    #[tokio::test]
    async fn service_action_range_and_cdb_checks() {
        let a = Fixture::new(64, 512);
        a.clear_ua().await;
        for sa in 0..4 {
            assert_eq!(pr_in(&a, sa, 512).await.status, 0, "PRIN SA {sa}");
        }
        for sa in 4..0x20 {
            let s = sense_of(&pr_in(&a, sa, 512).await);
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1), "SA {sa}");
        }
        for sa in 8..0x20 {
            let s = sense_of(&out(&a, sa, 0, 0, 1).await);
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1), "SA {sa}");
        }
        register_key(&a, 1).await;
        // RESERVE: scope must be LU_SCOPE, type must be valid.
        let s = sense_of(&out(&a, sa_out::RESERVE, 0x10 | WE, 1, 0).await);
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2400, 2, Some(7))
        );
        for bad in [0u8, 2, 4, 9, 15] {
            let s = sense_of(&out(&a, sa_out::RESERVE, bad, 1, 0).await);
            assert_eq!(
                (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
                (0x2400, 2, Some(3)),
                "type {bad}"
            );
        }
        // Reserved CDB bytes.
        let mut c = out_cdb(sa_out::RESERVE, WE, 24);
        c[3] = 1;
        let s = sense_of(&a.run(&c, &params(1, 0, 0)).await);
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 3));
        // PARAMETER LIST LENGTH: less than 24 at once, more than 24
        // without SPEC_I_PT after the data.
        let r = a.run(&out_cdb(sa_out::RESERVE, WE, 20), &[0; 20]).await;
        assert_eq!(sense_of(&r).code(), 0x1a00);
        let r = a.run(&out_cdb(sa_out::REGISTER, 0, 0), &[]).await;
        assert_eq!(sense_of(&r).code(), 0x1a00);
        let mut long = params(1, 0, 0);
        long.extend_from_slice(&[0; 4]);
        assert_eq!(
            sense_of(&out_raw(&a, sa_out::RESERVE, WE, &long).await).code(),
            0x1a00
        );
        // Data-Out shorter than the parameter list length.
        let r = a.run(&out_cdb(sa_out::RESERVE, WE, 24), &[0; 12]).await;
        assert_eq!(sense_of(&r).code(), 0x1a00);
        // SPEC_I_PT only with REGISTER.
        let s = sense_of(&out_raw(&a, sa_out::RESERVE, WE, &params(1, 0, 0x08)).await);
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2600, 20, Some(3))
        );
        // Reserved bits in byte 20.
        let s = sense_of(&out_raw(&a, sa_out::RESERVE, WE, &params(1, 0, 0x80)).await);
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2600, 20, Some(7))
        );
        // APTPL without a state directory.
        let s = sense_of(&out_raw(&a, sa_out::REGISTER, 0, &params(1, 2, 0x01)).await);
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2600, 20, Some(0))
        );
        assert_eq!(keys(&a).await.1, vec![1], "nothing changed");
        // The commands are in the opcode table (REPORT SUPPORTED OPCODES).
        for sa in 0..4 {
            assert!(crate::core::opcodes::find(0x5e, sa).is_some());
        }
        for sa in 0..8 {
            assert!(crate::core::opcodes::find(0x5f, sa).is_some());
        }
        assert!(crate::core::opcodes::find(0x5e, 4).is_none());
    }

    #[tokio::test]
    async fn report_capabilities() {
        let a = Fixture::new(64, 512);
        a.clear_ua().await;
        let r = pr_in(&a, sa_in::REPORT_CAPABILITIES, 512).await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(be16(&d[0..2]), 8);
        assert_eq!(
            d[2], 0x1c,
            "CRH, SIP_C, ATP_C; no PTPL_C without a state dir"
        );
        assert_eq!(d[3], 0x90, "TMV, ALLOW COMMANDS 1, PTPL_A 0");
        assert_eq!(&d[4..6], &[0xea, 0x01], "all six types");
        let state = Arc::new(crate::MemoryStore::new());
        let p = with_state(&state).unwrap();
        p.clear_ua().await;
        let r = pr_in(&p, sa_in::REPORT_CAPABILITIES, 512).await;
        assert_eq!(r.data[2], 0x1d, "PTPL_C with a state dir");
        assert_eq!(r.data[3] & 1, 0);
        let r = out_raw(&p, sa_out::REGISTER, 0, &params(0, 5, 0x01)).await;
        assert_eq!(r.status, 0);
        let r = pr_in(&p, sa_in::REPORT_CAPABILITIES, 512).await;
        assert_eq!(r.data[3] & 1, 1, "PTPL_A after APTPL=1");
    }

    /// The access matrix of libiscsi's ProutReserve.Access* tests and SPC-4
    /// table 64 / SBC-4 table 13, for every type.
    #[tokio::test]
    async fn access_by_type() {
        // (type, registered can read, write, unregistered can read, write)
        let cases = [
            (EA, false, false, false, false),
            (WE, true, false, true, false),
            (EA_RO, true, true, false, false),
            (WE_RO, true, true, true, false),
            (EA_AR, true, true, false, false),
            (WE_AR, true, true, true, false),
        ];
        for (ty, rr, rw, ur, uw) in cases {
            let a = Fixture::new(64, 512);
            let b = a.other_nexus();
            let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
            for n in [&a, &b, &c] {
                n.clear_ua().await;
            }
            register_key(&a, 0xa).await;
            register_key(&b, 0xb).await;
            assert_eq!(out(&a, sa_out::RESERVE, ty, 0xa, 0).await.status, 0);
            let expect_key = if ty >= WE_AR { 0 } else { 0xa };
            assert_eq!(reservation(&b).await, Some((expect_key, ty)));
            assert!(
                can_read(&a).await && can_write(&a).await,
                "holder, type {ty}"
            );
            assert_eq!(can_read(&b).await, rr, "registered read, type {ty}");
            assert_eq!(can_write(&b).await, rw, "registered write, type {ty}");
            assert_eq!(can_read(&c).await, ur, "unregistered read, type {ty}");
            assert_eq!(can_write(&c).await, uw, "unregistered write, type {ty}");
            // Always allowed: TEST UNIT READY, INQUIRY, REPORT LUNS, READ
            // CAPACITY, PERSISTENT RESERVE IN.
            for cdb in [
                &TUR[..],
                &[0x12, 0, 0, 0, 36, 0],
                &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
                &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ] {
                assert_eq!(c.run(cdb, &[]).await.status, 0, "{cdb:02x?} type {ty}");
            }
            assert_eq!(pr_in(&c, sa_in::READ_KEYS, 100).await.status, 0);
            // MODE SENSE and SYNCHRONIZE CACHE conflict for those without
            // access.
            let ms = c.run(&[0x1a, 0, 0x3f, 0, 255, 0], &[]).await;
            assert_eq!(ms.status, CONFLICT_STATUS, "MODE SENSE type {ty}");
            let sync = c.run(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
            assert_eq!(sync.status, CONFLICT_STATUS);
            // Unregistering b makes it an unregistered nexus.
            assert_eq!(out(&b, sa_out::REGISTER, 0, 0xb, 0).await.status, 0);
            assert_eq!(can_read(&b).await, ur, "unregistered b read, type {ty}");
            assert_eq!(can_write(&b).await, uw, "unregistered b write, type {ty}");
            assert_eq!(out(&a, sa_out::RELEASE, ty, 0xa, 0).await.status, 0);
            assert_eq!(reservation(&a).await, None);
            assert!(can_write(&c).await);
        }
    }

    #[tokio::test]
    async fn reserve_and_release_rules() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        for n in [&a, &b, &c] {
            n.clear_ua().await;
        }
        // Unregistered: RESERVE / RELEASE / CLEAR / PREEMPT conflict.
        assert_eq!(
            out(&a, sa_out::RESERVE, WE, 0, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(
            out(&a, sa_out::RELEASE, WE, 0, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(
            out(&a, sa_out::CLEAR, 0, 0, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(
            out(&a, sa_out::PREEMPT, WE, 0, 1).await.status,
            CONFLICT_STATUS
        );
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        // Wrong key.
        assert_eq!(
            out(&a, sa_out::RESERVE, WE, 0xb, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(out(&a, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        // The holder again with the same type: GOOD; another type: conflict.
        assert_eq!(out(&a, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        assert_eq!(
            out(&a, sa_out::RESERVE, WE, 0xa, 0).await.status,
            CONFLICT_STATUS
        );
        // Another registrant cannot reserve.
        assert_eq!(
            out(&b, sa_out::RESERVE, EA, 0xb, 0).await.status,
            CONFLICT_STATUS
        );
        // RELEASE from a registered non-holder: GOOD, nothing released.
        assert_eq!(out(&b, sa_out::RELEASE, EA, 0xb, 0).await.status, 0);
        assert_eq!(reservation(&a).await, Some((0xa, EA)));
        // RELEASE from an unregistered nexus conflicts.
        assert_eq!(
            out(&c, sa_out::RELEASE, EA, 0, 0).await.status,
            CONFLICT_STATUS
        );
        // RELEASE with the wrong type: INVALID RELEASE OF PERSISTENT
        // RESERVATION.
        let s = sense_of(&out(&a, sa_out::RELEASE, WE, 0xa, 0).await);
        assert_eq!((s.key, s.code()), (5, 0x2604));
        assert_eq!(reservation(&a).await, Some((0xa, EA)));
        // Releasing an EA reservation: no unit attention.
        assert_eq!(out(&a, sa_out::RELEASE, EA, 0xa, 0).await.status, 0);
        assert!(b.lu.ua.pending_for(b.nexus.id()).is_empty());
        // Releasing a registrants-only one: RESERVATIONS RELEASED for the
        // other registrants only.
        assert_eq!(out(&a, sa_out::RESERVE, WE_RO, 0xa, 0).await.status, 0);
        assert_eq!(out(&a, sa_out::RELEASE, WE_RO, 0xa, 0).await.status, 0);
        assert_eq!(
            b.lu.ua.pending_for(b.nexus.id()),
            vec![UA_RESERVATIONS_RELEASED]
        );
        assert!(a.lu.ua.pending_for(a.nexus.id()).is_empty());
        assert!(c.lu.ua.pending_for(c.nexus.id()).is_empty());
        let s = sense_of(&b.run(&TUR, &[]).await);
        assert_eq!((s.key, s.code()), (6, 0x2a04));
        // Releasing when nothing is reserved: GOOD.
        assert_eq!(out(&a, sa_out::RELEASE, WE, 0xa, 0).await.status, 0);
    }

    #[tokio::test]
    async fn unregistering_the_holder() {
        // WE-RO: the holder leaving releases it, with RESERVATIONS RELEASED
        // for the others (ProutReserve.OwnershipWERO).
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        assert_eq!(out(&a, sa_out::RESERVE, EA_RO, 0xa, 0).await.status, 0);
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0xa, 0).await.status, 0);
        assert_eq!(reservation(&a).await, None);
        assert_eq!(
            b.lu.ua.pending_for(b.nexus.id()),
            vec![UA_RESERVATIONS_RELEASED]
        );
        b.clear_ua().await;

        // WE: released, no unit attention.
        register_key(&a, 0xa).await;
        assert_eq!(out(&a, sa_out::RESERVE, WE, 0xa, 0).await.status, 0);
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0xa, 0).await.status, 0);
        assert_eq!(reservation(&a).await, None);
        assert!(b.lu.ua.pending_for(b.nexus.id()).is_empty());

        // All registrants: stays while any registrant is left; the key
        // reported is 0 (ProutReserve.OwnershipEAAR).
        register_key(&a, 0xa).await;
        assert_eq!(out(&a, sa_out::RESERVE, EA_AR, 0xa, 0).await.status, 0);
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0xa, 0).await.status, 0);
        assert_eq!(reservation(&a).await, Some((0, EA_AR)));
        // b, a registrant, holds it now and may release it.
        assert!(can_write(&b).await);
        assert!(!can_read(&a).await);
        assert_eq!(out(&b, sa_out::RELEASE, EA_AR, 0xb, 0).await.status, 0);
        assert_eq!(reservation(&a).await, None);
        // And the last registrant leaving ends it too.
        assert_eq!(out(&b, sa_out::RESERVE, WE_AR, 0xb, 0).await.status, 0);
        assert_eq!(out(&b, sa_out::REGISTER, 0, 0xb, 0).await.status, 0);
        assert_eq!(reservation(&a).await, None);
        assert_eq!(keys(&a).await.1, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn clear_removes_everything() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        for n in [&a, &b, &c] {
            n.clear_ua().await;
        }
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        assert_eq!(out(&a, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        let gen = keys(&a).await.0;
        // Wrong key.
        assert_eq!(
            out(&b, sa_out::CLEAR, 0, 0xa, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(out(&b, sa_out::CLEAR, 0, 0xb, 0).await.status, 0);
        assert_eq!(
            a.lu.ua.pending_for(a.nexus.id()),
            vec![UA_RESERVATIONS_PREEMPTED]
        );
        assert_eq!(keys(&b).await, (gen + 1, vec![]));
        assert_eq!(reservation(&b).await, None);
        assert!(b.lu.ua.pending_for(b.nexus.id()).is_empty());
        assert!(
            c.lu.ua.pending_for(c.nexus.id()).is_empty(),
            "not registered"
        );
    }

    #[tokio::test]
    async fn preempt_registrations_and_reservations() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        for n in [&a, &b, &c] {
            n.clear_ua().await;
        }
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        register_key(&c, 0xc).await;
        // No reservation: SARK 0 is invalid, an unknown key conflicts.
        let s = sense_of(&out(&b, sa_out::PREEMPT, EA, 0xb, 0).await);
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2600, 8));
        assert_eq!(
            out(&b, sa_out::PREEMPT, EA, 0xb, 0x77).await.status,
            CONFLICT_STATUS
        );
        // Remove a's registration (ProutPreempt.RemoveRegistration).
        let gen = keys(&a).await.0;
        assert_eq!(out(&b, sa_out::PREEMPT, EA, 0xb, 0xa).await.status, 0);
        assert_eq!(keys(&b).await, (gen + 1, vec![0xb, 0xc]));
        assert_eq!(reservation(&b).await, None, "no reservation was created");
        assert_eq!(
            a.lu.ua.pending_for(a.nexus.id()),
            vec![UA_REGISTRATIONS_PREEMPTED]
        );
        assert!(c.lu.ua.pending_for(c.nexus.id()).is_empty());
        a.clear_ua().await;

        // Preempt the holder: the reservation moves to the preempter with
        // the new type; the remaining registrant learns the type changed.
        register_key(&a, 0xa).await;
        assert_eq!(out(&a, sa_out::RESERVE, WE, 0xa, 0).await.status, 0);
        assert_eq!(out(&b, sa_out::PREEMPT, EA, 0xb, 0xa).await.status, 0);
        assert_eq!(reservation(&b).await, Some((0xb, EA)));
        assert_eq!(keys(&b).await.1, vec![0xb, 0xc]);
        assert_eq!(
            a.lu.ua.pending_for(a.nexus.id()),
            vec![UA_REGISTRATIONS_PREEMPTED]
        );
        assert_eq!(
            c.lu.ua.pending_for(c.nexus.id()),
            vec![UA_RESERVATIONS_RELEASED]
        );
        assert!(b.lu.ua.pending_for(b.nexus.id()).is_empty());
        a.clear_ua().await;
        c.clear_ua().await;

        // Preempting a non-holder's key leaves the reservation alone.
        assert_eq!(out(&b, sa_out::PREEMPT, WE, 0xb, 0xc).await.status, 0);
        assert_eq!(reservation(&b).await, Some((0xb, EA)));
        assert_eq!(keys(&b).await.1, vec![0xb]);

        // All registrants with SARK 0: everyone else goes, the preempter
        // holds a reservation of the new type.
        assert_eq!(
            c.lu.ua.pending_for(c.nexus.id()),
            vec![UA_REGISTRATIONS_PREEMPTED]
        );
        c.clear_ua().await;
        assert_eq!(out(&b, sa_out::RELEASE, EA, 0xb, 0).await.status, 0);
        register_key(&a, 0xa).await;
        register_key(&c, 0xc).await;
        assert_eq!(out(&a, sa_out::RESERVE, WE_AR, 0xa, 0).await.status, 0);
        assert_eq!(out(&c, sa_out::PREEMPT, EA_RO, 0xc, 0).await.status, 0);
        assert_eq!(keys(&c).await.1, vec![0xc]);
        assert_eq!(reservation(&c).await, Some((0xc, EA_RO)));
        for n in [&a, &b] {
            assert_eq!(
                n.lu.ua.pending_for(n.nexus.id()),
                vec![UA_REGISTRATIONS_PREEMPTED]
            );
        }
    }

    #[tokio::test]
    async fn preempt_and_abort_aborts_the_preempted_tasks() {
        let a = Fixture::build(64, 512, 512, true);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        assert_eq!(out(&b, sa_out::RESERVE, WE, 0xb, 0).await.status, 0);
        // b's read hangs in the backstore.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        *a.store.gate.lock().unwrap() = Some(rx);
        let p = b.nexus.prepare(cmd(0, &READ1)).map_err(|_| ()).unwrap();
        let running = tokio::spawn(p.execute(Vec::new()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!running.is_finished());
        let r = out(&a, sa_out::PREEMPT_AND_ABORT, EA, 0xa, 0xb).await;
        assert_eq!(r.status, 0);
        let o = tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .expect("the preempted task is aborted")
            .unwrap();
        assert!(matches!(o, ExecOutcome::Aborted));
        drop(tx);
        assert_eq!(reservation(&a).await, Some((0xa, EA)));
        assert_eq!(
            b.lu.ua.pending_for(b.nexus.id()),
            vec![
                UA_REGISTRATIONS_PREEMPTED,
                crate::core::sense::UA_COMMANDS_CLEARED_BY_ANOTHER
            ]
        );
        assert!(a.lu.ua.pending_for(a.nexus.id()).is_empty());
        assert_eq!(a.lu.tasks.len(), 0);
    }

    #[tokio::test]
    async fn registrations_follow_the_initiator_port() {
        let a = Fixture::new(64, 512);
        a.clear_ua().await;
        register_key(&a, 0xa).await;
        assert_eq!(out(&a, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        // The nexus goes away; the registration and reservation stay, and a
        // new login with the same ISID (written differently) is the same
        // I_T nexus.
        a.nexus.close();
        let again = nexus_as(&a, "IQN.TEST:INIT,i,0x000000000001", 1);
        again.clear_ua().await;
        assert!(can_write(&again).await);
        assert_eq!(reservation(&again).await, Some((0xa, EA)));
        // A new ISID is a new I_T nexus: not registered, no access.
        let other_isid = nexus_as(&a, "iqn.test:init,i,0x2", 1);
        other_isid.clear_ua().await;
        assert!(!can_read(&other_isid).await);
        assert_eq!(
            out(&other_isid, sa_out::RELEASE, EA, 0xa, 0).await.status,
            CONFLICT_STATUS
        );
        // The same port through another target port: another I_T nexus.
        let port2 = nexus_as(&a, "iqn.test:init,i,0x1", 2);
        port2.clear_ua().await;
        assert!(!can_read(&port2).await);
        // LU reset and target reset leave persistent reservations alone.
        again
            .nexus
            .task_management(TmfFunction::LogicalUnitReset { lun: 0 })
            .await;
        again.nexus.task_management(TmfFunction::TargetReset).await;
        again.clear_ua().await;
        assert_eq!(reservation(&again).await, Some((0xa, EA)));
    }

    #[tokio::test]
    async fn all_target_ports() {
        let a = Fixture::new(64, 512);
        let port2 = nexus_as(&a, "iqn.test:init,i,0x1", 2);
        a.clear_ua().await;
        port2.clear_ua().await;
        let r = out_raw(&a, sa_out::REGISTER, 0, &params(0, 0xa, 0x04)).await;
        assert_eq!(r.status, 0);
        // Registered through port 2 too: it can reserve with the key.
        assert_eq!(out(&port2, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        assert!(can_write(&a).await, "the same registration holds it");
        assert_eq!(keys(&a).await.1, vec![0xa]);
        let r = pr_in(&a, sa_in::READ_FULL_STATUS, 4096).await;
        assert_eq!(r.data[8 + 12], 0x03, "ALL_TG_PT and R_HOLDER");
        assert_eq!(be16(&r.data[8 + 18..8 + 20]), 0);
        // Without ALL_TG_PT each target port registers separately, and an
        // ALL_TG_PT registration overlapping one conflicts.
        let b1 = nexus_as(&a, "iqn.test:b,i,0x9", 1);
        let b2 = nexus_as(&a, "iqn.test:b,i,0x9", 2);
        b1.clear_ua().await;
        b2.clear_ua().await;
        register_key(&b1, 0xb1).await;
        assert_eq!(
            out(&b2, sa_out::REGISTER, 0, 0xb1, 0xb2).await.status,
            CONFLICT_STATUS
        );
        let r = out_raw(&b2, sa_out::REGISTER, 0, &params(0, 0xb2, 0x04)).await;
        assert_eq!(r.status, CONFLICT_STATUS);
        register_key(&b2, 0xb2).await;
        assert_eq!(keys(&a).await.1, vec![0xa, 0xb1, 0xb2]);
    }

    fn with_tids(rk: u64, sark: u64, flags: u8, tids: &[Vec<u8>]) -> Vec<u8> {
        let mut d = params(rk, sark, flags | 0x08);
        let tl: usize = tids.iter().map(|t| t.len()).sum();
        d.extend_from_slice(&(tl as u32).to_be_bytes());
        for t in tids {
            d.extend_from_slice(t);
        }
        d
    }

    /// READ FULL STATUS: (key, relative target port, TransportID) of each
    /// registration.
    async fn full_status(t: &Fixture) -> Vec<(u64, u16, Vec<u8>)> {
        let r = pr_in(t, sa_in::READ_FULL_STATUS, 4096).await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(be32(&d[4..8]) as usize, d.len() - 8);
        let mut at = 8;
        let mut out = Vec::new();
        while at < d.len() {
            let n = be32(&d[at + 20..at + 24]) as usize;
            out.push((
                be64(&d[at..at + 8]),
                be16(&d[at + 18..at + 20]),
                d[at + 24..at + 24 + n].to_vec(),
            ));
            at += 24 + n;
        }
        out
    }

    #[tokio::test]
    async fn a_vm_is_registered_and_reported_by_its_sas_address() {
        // The VM of a vhost-user-scsi controller, and an iSCSI initiator
        // that registers it for a cluster (SPEC_I_PT with a SAS TransportID).
        let a = Fixture::new(64, 512);
        let vm = nexus_as(&a, "naa.5001405000000abc", 2);
        a.clear_ua().await;
        vm.clear_ua().await;
        let mut sas = vec![0u8; 24];
        sas[0] = crate::pr::transport_id::PROTOCOL_SAS;
        sas[4..12].copy_from_slice(&0x5001_4050_0000_0abcu64.to_be_bytes());
        let d = with_tids(0, 0x5, 0x04, std::slice::from_ref(&sas));
        assert_eq!(out_raw(&a, sa_out::REGISTER, 0, &d).await.status, 0);
        // The VM holds the key: it can change it.
        assert_eq!(out(&vm, sa_out::REGISTER, 0, 5, 6).await.status, 0);
        let seen = full_status(&a).await;
        assert!(
            seen.iter().any(|(key, _, tid)| *key == 6 && *tid == sas),
            "the VM's registration is named by its SAS TransportID: {seen:?}"
        );
    }

    #[tokio::test]
    async fn spec_i_pt_registers_the_named_ports() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus(); // iqn.test:other,i,0x2
        let b3 = nexus_as(&a, "iqn.test:other,i,0x3", 1);
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        for n in [&a, &b, &b3, &c] {
            n.clear_ua().await;
        }
        let other_device = InitiatorId {
            name: "iqn.test:other".into(),
            isid: None,
        }
        .encode_transport_id();
        let third_port = InitiatorId::from_port("iqn.test:third,i,0x3").encode_transport_id();
        let d = with_tids(0, 0x5, 0, &[other_device.clone(), third_port.clone()]);
        assert_eq!(out_raw(&a, sa_out::REGISTER, 0, &d).await.status, 0);
        assert_eq!(keys(&a).await, (1, vec![5, 5, 5]));
        // Every port of iqn.test:other is registered, and iqn.test:third's.
        for n in [&b, &b3, &c] {
            assert_eq!(out(n, sa_out::REGISTER, 0, 5, 6).await.status, 0);
            assert_eq!(out(n, sa_out::REGISTER, 0, 6, 5).await.status, 0);
        }
        // READ FULL STATUS names them with TransportIDs.
        let mut seen = Vec::new();
        for (key, port, tid) in full_status(&a).await {
            assert_eq!((key, port), (5, 1));
            let (id, len) = parse_transport_id(&tid, 0).unwrap();
            assert_eq!(len, tid.len());
            seen.push(id.text());
        }
        assert_eq!(
            seen,
            vec![
                "iqn.test:init,i,0x000000000001",
                "iqn.test:other",
                "iqn.test:third,i,0x000000000003"
            ]
        );
        // A registered nexus may not use SPEC_I_PT.
        let d = with_tids(5, 6, 0, std::slice::from_ref(&third_port));
        let s = sense_of(&out_raw(&a, sa_out::REGISTER, 0, &d).await);
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2600, 20));
        // Naming an already registered port conflicts, all or nothing.
        let d4 = nexus_as(&a, "iqn.test:fourth,i,0x4", 1);
        d4.clear_ua().await;
        let d = with_tids(0, 7, 0, &[third_port]);
        assert_eq!(
            out_raw(&d4, sa_out::REGISTER, 0, &d).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(keys(&a).await.1.len(), 3);
        // TransportID lengths must add up.
        let mut d = with_tids(0, 7, 0, &[other_device]);
        d[27] += 4;
        assert_eq!(
            sense_of(&out_raw(&d4, sa_out::REGISTER, 0, &d).await).code(),
            0x1a00
        );
    }

    fn move_params(rk: u64, sark: u64, flags: u8, port: u16, tid: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 24];
        d[0..8].copy_from_slice(&rk.to_be_bytes());
        d[8..16].copy_from_slice(&sark.to_be_bytes());
        d[17] = flags;
        d[18..20].copy_from_slice(&port.to_be_bytes());
        d[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        d.extend_from_slice(tid);
        d
    }

    #[tokio::test]
    async fn register_and_move() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        let b_tid = InitiatorId::from_port(b.nexus.initiator_port()).encode_transport_id();
        let a_tid = InitiatorId::from_port(a.nexus.initiator_port()).encode_transport_id();
        register_key(&a, 0xa).await;
        // Not the holder: conflict.
        let d = move_params(0xa, 0xb, 0, 1, &b_tid);
        assert_eq!(
            out_raw(&a, sa_out::REGISTER_AND_MOVE, EA, &d).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(out(&a, sa_out::RESERVE, EA, 0xa, 0).await.status, 0);
        // To itself: invalid.
        let d = move_params(0xa, 0xb, 0, 1, &a_tid);
        assert_eq!(
            sense_of(&out_raw(&a, sa_out::REGISTER_AND_MOVE, EA, &d).await).code(),
            0x2600
        );
        // Relative port 0: invalid.
        let d = move_params(0xa, 0xb, 0, 0, &b_tid);
        let s = sense_of(&out_raw(&a, sa_out::REGISTER_AND_MOVE, EA, &d).await);
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2600, 18));
        // Move to b and unregister a.
        let gen = keys(&a).await.0;
        let d = move_params(0xa, 0xb, 0x02, 1, &b_tid);
        assert_eq!(
            out_raw(&a, sa_out::REGISTER_AND_MOVE, EA, &d).await.status,
            0
        );
        assert_eq!(keys(&a).await, (gen + 1, vec![0xb]));
        assert_eq!(reservation(&a).await, Some((0xb, EA)));
        assert!(can_write(&b).await);
        assert!(!can_read(&a).await);
    }

    #[tokio::test]
    async fn aptpl_state_survives_the_lu() {
        let state = Arc::new(crate::MemoryStore::new());
        {
            let a = with_state(&state).unwrap();
            let b = nexus_as(&a, "iqn.test:other,i,0x2", 1);
            a.clear_ua().await;
            b.clear_ua().await;
            // Without APTPL nothing is written.
            register_key(&b, 0xb).await;
            assert!(state.is_empty());
            let r = out_raw(&a, sa_out::REGISTER, 0, &params(0, 0xa, 0x01)).await;
            assert_eq!(r.status, 0);
            assert_eq!(out(&a, sa_out::RESERVE, WE_RO, 0xa, 0).await.status, 0);
            // The LU (and its nexuses) go away: a restart.
        }
        let a = with_state(&state).unwrap();
        a.clear_ua().await;
        let (gen, k) = keys(&a).await;
        assert_eq!((gen, k), (2, vec![0xb, 0xa]));
        assert_eq!(reservation(&a).await, Some((0xa, WE_RO)));
        assert!(can_write(&a).await, "the holder is recognised again");
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        c.clear_ua().await;
        assert!(!can_write(&c).await);
        let r = pr_in(&a, sa_in::REPORT_CAPABILITIES, 8).await;
        assert_eq!(r.data[3] & 1, 1, "PTPL_A");
        // APTPL=0 in a later REGISTER: the state no longer persists.
        assert_eq!(out(&a, sa_out::REGISTER, 0, 0xa, 0xaa).await.status, 0);
        assert!(state.is_empty());
        drop((a, c));
        let a = with_state(&state).unwrap();
        a.clear_ua().await;
        assert_eq!(keys(&a).await, (0, vec![]));
    }

    #[tokio::test]
    async fn corrupt_state_is_refused() {
        let state = Arc::new(crate::MemoryStore::new());
        {
            let a = with_state(&state).unwrap();
            a.clear_ua().await;
            let r = out_raw(&a, sa_out::REGISTER, 0, &params(0, 0xa, 0x01)).await;
            assert_eq!(r.status, 0);
        }
        let name = state.names().pop().expect("state saved");
        let text = crate::StateStore::load(state.as_ref(), &name)
            .unwrap()
            .unwrap();
        // Torn: the end line is missing.
        state.put_raw(&name, text[..text.len() - 10].to_vec());
        let e = with_state(&state).err().expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("truncated") && msg.contains(".state"), "{msg}");
        // Restoring the intact state works again.
        state.put_raw(&name, text);
        let a = with_state(&state).unwrap();
        a.clear_ua().await;
        assert_eq!(keys(&a).await.1, vec![0xa]);
    }

    /// When the APTPL state cannot be written the command fails and the
    /// state does not change.
    #[tokio::test]
    async fn aptpl_write_failure_changes_nothing() {
        let state = Arc::new(crate::MemoryStore::new());
        state
            .fail_saves
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let a = with_state(&state).unwrap();
        a.clear_ua().await;
        let r = out_raw(&a, sa_out::REGISTER, 0, &params(0, 0xa, 0x01)).await;
        let s = sense_of(&r);
        assert_eq!((s.key, s.code()), (4, 0x4400));
        assert_eq!(keys(&a).await, (0, vec![]));
        // Without APTPL nothing is written, so it works.
        register_key(&a, 0xa).await;
        assert_eq!(keys(&a).await, (1, vec![0xa]));
    }

    /// Two gateways: LUs of their own on one shared state, as two daemons
    /// exporting one RBD image are.
    fn gateways() -> (Arc<crate::MemorySharedPr>, Fixture, Fixture) {
        let store = crate::MemorySharedPr::new();
        let gw = |h| Fixture::with_config(64, 512, |c| c.shared_pr = Some(h));
        let (g1, g2) = (gw(store.handle()), gw(store.handle()));
        (store, g1, g2)
    }

    #[tokio::test]
    async fn two_gateways_enforce_one_reservation_and_a_preempt_fences_across() {
        let (_store, g1, g2) = gateways();
        // Host A through gateway 1 (port 1) and, unregistered, through
        // gateway 2 (port 2); host B through gateway 2.
        let a1 = nexus_as(&g1, "iqn.test:a,i,0x1", 1);
        let a2 = nexus_as(&g2, "iqn.test:a,i,0x1", 2);
        let b2 = nexus_as(&g2, "iqn.test:b,i,0x2", 2);
        for n in [&a1, &a2, &b2] {
            n.clear_ua().await;
        }
        register_key(&a1, 0xa).await;
        register_key(&b2, 0xb).await;
        // One set of registrations, whichever gateway is asked.
        assert_eq!(keys(&a1).await, (2, vec![0xa, 0xb]));
        assert_eq!(keys(&b2).await, (2, vec![0xa, 0xb]));
        // Reserved through gateway 1, enforced by gateway 2.
        assert_eq!(out(&a1, sa_out::RESERVE, WE, 0xa, 0).await.status, 0);
        assert_eq!(reservation(&b2).await, Some((0xa, WE)));
        assert!(can_write(&a1).await);
        assert!(
            !can_write(&b2).await,
            "gateway 2 enforces gateway 1's reservation"
        );
        assert!(!can_write(&a2).await, "A's unregistered path conflicts too");
        assert!(can_read(&b2).await, "write exclusive lets reads through");
        // A second reservation through gateway 2 conflicts.
        assert_eq!(
            out(&b2, sa_out::RESERVE, WE, 0xb, 0).await.status,
            CONFLICT_STATUS
        );
        // B preempts A through gateway 2: A's nexus on gateway 1 learns it
        // and is fenced there.
        assert_eq!(out(&b2, sa_out::PREEMPT, WE, 0xb, 0xa).await.status, 0);
        assert_eq!(
            g1.lu.ua.pending_for(a1.nexus.id()),
            vec![UA_REGISTRATIONS_PREEMPTED]
        );
        assert!(
            g2.lu.ua.pending_for(b2.nexus.id()).is_empty(),
            "not the preempter"
        );
        a1.clear_ua().await;
        assert!(!can_write(&a1).await, "fenced on gateway 1");
        assert!(can_write(&b2).await);
        assert_eq!(reservation(&a1).await, Some((0xb, WE)));
        assert_eq!(keys(&a1).await.1, vec![0xb]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn registrations_racing_through_both_gateways_are_all_kept() {
        let (_store, g1, g2) = gateways();
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let gw = if i % 2 == 0 { &g1 } else { &g2 };
            let n = nexus_as(gw, &format!("iqn.test:h{i},i,0x{i:x}"), 1 + (i % 2) as u16);
            tasks.push(tokio::spawn(async move {
                n.clear_ua().await;
                register_key(&n, 0x100 + i).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // No registration lost to a concurrent commit on the other gateway.
        g1.clear_ua().await;
        g2.clear_ua().await;
        let (gen, mut k) = keys(&g1).await;
        k.sort();
        assert_eq!(k, (0x100..0x128).collect::<Vec<u64>>());
        assert_eq!(gen, 40);
        assert_eq!(keys(&g2).await.0, 40);
    }

    #[tokio::test]
    async fn a_damaged_shared_state_fails_the_service_action_and_keeps_the_held_one() {
        let (store, g1, g2) = gateways();
        let a1 = nexus_as(&g1, "iqn.test:a,i,0x1", 1);
        a1.clear_ua().await;
        register_key(&a1, 0xa).await;
        store.put_raw(b"rtgt-pr-shared 1\nstate\ngarbage".to_vec());
        let s = sense_of(&out(&a1, sa_out::REGISTER, 0, 0xa, 0xaa).await);
        assert_eq!((s.key, s.asc), (0x04, 0x44), "INTERNAL TARGET FAILURE");
        // What each gateway held stays.
        g2.clear_ua().await;
        assert_eq!(keys(&a1).await.1, vec![0xa]);
        assert_eq!(keys(&g2).await.1, vec![0xa]);
        // A gateway opened on it is refused, naming the store.
        let e = LogicalUnit::open({
            let mut c = LuConfig::new("mem1", Arc::new(MemStore::new(64, 512, 512, false)));
            c.shared_pr = Some(store.handle());
            c
        });
        assert!(e.is_err());
    }

    #[test]
    fn too_many_registrations() {
        let mut st = PrState::default();
        for i in 0..MAX_REGISTRATIONS {
            let who = Who {
                init: InitiatorId::from_port(&format!("iqn.x{i},i,0x1")),
                port: 1,
            };
            let p = OutParams {
                sark: 1,
                ..Default::default()
            };
            register(&mut st, &who, &p, false).unwrap();
        }
        let who = Who {
            init: InitiatorId::from_port("iqn.last,i,0x1"),
            port: 1,
        };
        let p = OutParams {
            sark: 1,
            ..Default::default()
        };
        assert_eq!(
            register(&mut st, &who, &p, false).unwrap_err(),
            INSUFFICIENT_REGISTRATION_RESOURCES
        );
    }
}
