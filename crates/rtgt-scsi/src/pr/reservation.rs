//! Reservations of a logical unit: SPC-2 RESERVE / RELEASE, the persistent
//! reservation state (see [`crate::pr::persistent_reservation`]) and the
//! conflict check `prepare()` makes for every command.
//!
//! SPC-2 reservations: one I_T nexus (a live [`Nexus`]) may reserve the LU
//! with RESERVE(6) / RESERVE(10) (no extents, no third-party reservations).
//! Other nexuses then get RESERVATION CONFLICT for every command but
//! INQUIRY, REPORT LUNS, REQUEST SENSE, LOG SENSE, REPORT SUPPORTED
//! OPERATION CODES and the other MAINTENANCE IN reports, READ MEDIA SERIAL
//! NUMBER, PREVENT ALLOW MEDIUM REMOVAL with PREVENT=0, and RELEASE (which
//! does nothing for a non-holder). PERSISTENT RESERVE IN / OUT conflict for
//! every nexus, the holder included, while an SPC-2 reservation exists. The
//! reservation is released by RELEASE from the holder, LOGICAL UNIT RESET,
//! TARGET RESET, and the holder's nexus loss.
//!
//! Persistent reservations are never touched by resets or nexus loss. While
//! one exists, each command is classified ([`access`], SPC-4 table 64 and
//! SBC-4 table 13) and checked against the reservation type.
//!
//! CRH=1 (SPC-4 5.13.3): while a persistent reservation exists, RESERVE and
//! RELEASE from its holder, or from any registered nexus when the type is
//! registrants-only or all-registrants, complete with GOOD and do nothing;
//! from any other nexus they get RESERVATION CONFLICT. Without a persistent
//! reservation (registrations alone do not count) they work as in SPC-2.
//!
//! The data path pays one atomic load per command while the LU has no
//! reservation of either kind.

use crate::lu::state_store::StateStore;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::api::Nexus;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::task_set::Scope;
use crate::lu::{LogicalUnit, LuConfig};
use crate::pr::persistent_reservation::{Effects, PrState, Target};
use crate::pr::pr_store::{self, PrStateError};
use crate::pr::shared::{self, Logged, Shared, SharedPrStore};
use crate::pr::transport_id::InitiatorId;

/// Marker a command handler returns to end its command with RESERVATION
/// CONFLICT status (no sense data) instead of CHECK CONDITION; `execute()`
/// turns it into the status. Never encoded (its sense key is not a valid
/// one).
pub(crate) const CONFLICT: Sense = Sense::new(0xff, 0xff, 0xff);

/// The I_T nexus identity reservations use: the initiator port and the
/// relative target port identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who {
    pub init: InitiatorId,
    pub port: u16,
}

impl Who {
    pub fn of(n: &Nexus) -> Who {
        Who {
            init: InitiatorId::from_port(n.initiator_port()),
            port: n.target_port().relative_port_id,
        }
    }
}

/// How a command fares against reservations held by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Allowed through every persistent reservation.
    Allowed,
    /// Reads: allowed through write exclusive types, conflicts with
    /// exclusive access types.
    Read,
    /// Conflicts with every reservation type (writes and everything else).
    Write,
    /// PERSISTENT RESERVE IN / OUT: their own rules.
    Persistent,
    /// RESERVE / RELEASE: decided by their handlers.
    Spc2,
}

/// Classify a command (SPC-4 table 64, SBC-4 table 13). Unknown opcodes
/// conflict.
pub(crate) fn access(cdb: &[u8]) -> Access {
    let b = |i: usize| cdb.get(i).copied().unwrap_or(0);
    let sa = b(1) & 0x1f;
    match cdb[0] {
        // TEST UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY(10),
        // LOG SENSE, ACCESS CONTROL IN/OUT, REPORT LUNS, MAINTENANCE IN
        // (REPORT SUPPORTED OPERATION CODES / TMFs, TARGET PORT GROUPS ...).
        0x00 | 0x03 | 0x12 | 0x25 | 0x4d | 0x86 | 0x87 | 0xa0 | 0xa3 => Access::Allowed,
        // PREVENT ALLOW MEDIUM REMOVAL: only PREVENT=0 is allowed.
        0x1e if b(4) & 0x03 == 0 => Access::Allowed,
        // START STOP UNIT: START=1 with POWER CONDITION 0 is allowed.
        0x1b if b(4) & 0x01 != 0 && b(4) >> 4 == 0 => Access::Allowed,
        // SERVICE ACTION IN(16): READ CAPACITY(16) allowed; READ LONG(16),
        // GET LBA STATUS, REPORT REFERRALS read.
        0x9e if sa == 0x10 => Access::Allowed,
        0x9e if (0x11..=0x13).contains(&sa) => Access::Read,
        // SERVICE ACTION IN(12): READ MEDIA SERIAL NUMBER.
        0xab if sa == 0x01 => Access::Allowed,
        // READ(6/10/12/16), VERIFY(10/12/16), PRE-FETCH(10/16),
        // READ DEFECT DATA(10/12), READ LONG(10).
        0x08 | 0x28 | 0xa8 | 0x88 | 0x2f | 0xaf | 0x8f | 0x34 | 0x90 | 0x37 | 0xb7 | 0x3e => {
            Access::Read
        }
        // THIRD-PARTY COPY OUT: POPULATE TOKEN reads; EXTENDED COPY
        // conflicts (below).
        0x83 if sa == 0x10 => Access::Read,
        0x5e | 0x5f => Access::Persistent,
        0x16 | 0x17 | 0x56 | 0x57 => Access::Spc2,
        // Writes, MODE SENSE / SELECT, SYNCHRONIZE CACHE, FORMAT UNIT,
        // SANITIZE, UNMAP, WRITE SAME, COMPARE AND WRITE, EXTENDED COPY,
        // RECEIVE COPY RESULTS, buffers, diagnostics, ...
        _ => Access::Write,
    }
}

/// Commands another nexus' SPC-2 reservation lets through.
fn spc2_allowed(cdb: &[u8]) -> bool {
    match cdb[0] {
        0x03 | 0x12 | 0x4d | 0xa0 | 0xa3 => true,
        0x1e => cdb.get(4).is_some_and(|b| b & 0x03 == 0),
        0xab => cdb.get(1).is_some_and(|b| b & 0x1f == 0x01),
        _ => false,
    }
}

struct Inner {
    /// Nexus holding the SPC-2 reservation.
    spc2: Option<u64>,
    pr: PrState,
    /// The shared state's version `pr` is (0 when not shared).
    version: u64,
}

/// Commits lost to other gateways before a service action gives up.
const SHARED_TRIES: usize = 32;

/// The reservation state of one LU.
pub(crate) struct Reservations {
    /// An SPC-2 or a persistent reservation exists.
    active: AtomicBool,
    inner: Mutex<Inner>,
    /// Live nexuses that see the LU, with their identities (to find the
    /// nexuses a unit attention or abort is for).
    nexuses: Mutex<Vec<(u64, Who)>>,
    /// Where APTPL state is saved, and its name; `None` when APTPL is not
    /// supported.
    store: Option<(Arc<dyn StateStore>, String)>,
    /// The state shared with other gateways, when it is.
    shared: Option<Arc<dyn SharedPrStore>>,
}

impl Reservations {
    /// The state for an LU: restored from its state file when the LU has a
    /// state directory and the file exists.
    pub fn open(config: &LuConfig) -> Result<Reservations, PrStateError> {
        let store = config
            .state
            .as_ref()
            .map(|s| (s.clone(), pr_store::state_name(&config.naa)));
        let shared = config.shared_pr.clone();
        let (pr, version) = match (&shared, &store) {
            (Some(sh), _) => {
                let err = |reason: String| PrStateError {
                    location: sh.describe(),
                    reason,
                };
                let (v, blob) = sh.read().map_err(|e| err(e.to_string()))?;
                match blob {
                    Some(b) => (shared::decode(&b).map_err(err)?.state, v),
                    None => (PrState::default(), v),
                }
            }
            (None, Some((s, name))) => (pr_store::load(s.as_ref(), name)?.unwrap_or_default(), 0),
            (None, None) => (PrState::default(), 0),
        };
        if let (Some((s, name)), true) = (&store, !pr.regs.is_empty()) {
            tracing::info!(
                state = %s.describe(name),
                registrations = pr.regs.len(),
                reserved = pr.res.is_some(),
                "persistent reservations restored"
            );
        }
        let r = Reservations {
            active: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                spc2: None,
                pr,
                version,
            }),
            nexuses: Mutex::new(Vec::new()),
            store,
            shared,
        };
        r.update_active(&r.lock());
        Ok(r)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> MutexGuard<'_, Vec<(u64, Who)>> {
        self.nexuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_active(&self, g: &Inner) {
        self.active
            .store(g.spc2.is_some() || g.pr.res.is_some(), Ordering::Release);
    }

    /// APTPL can be honoured (the LU has a state directory).
    pub fn aptpl_capable(&self) -> bool {
        // A shared state is kept by the cluster whatever the APTPL bit.
        self.store.is_some() || self.shared.is_some()
    }

    /// A nexus starts seeing the LU.
    pub fn attach(&self, n: &Nexus) {
        let mut g = self.live();
        if !g.iter().any(|(id, _)| *id == n.id()) {
            g.push((n.id(), Who::of(n)));
        }
    }

    /// The nexus is gone: it no longer holds an SPC-2 reservation.
    pub fn detach(&self, nexus: u64) {
        self.live().retain(|(id, _)| *id != nexus);
        let mut g = self.lock();
        if g.spc2 == Some(nexus) {
            g.spc2 = None;
            self.update_active(&g);
        }
    }

    /// LOGICAL UNIT RESET / TARGET RESET: SPC-2 reservations are released;
    /// persistent ones stay.
    pub fn reset(&self) {
        let mut g = self.lock();
        g.spc2 = None;
        self.update_active(&g);
    }

    /// Whether `cdb` from `nexus` must get RESERVATION CONFLICT.
    pub fn conflicts(&self, nexus: &Nexus, cdb: &[u8]) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let class = access(cdb);
        if class == Access::Spc2 {
            return false;
        }
        let g = self.lock();
        if let Some(holder) = g.spc2 {
            return class == Access::Persistent || (holder != nexus.id() && !spc2_allowed(cdb));
        }
        let Some(res) = g.pr.res else {
            return false;
        };
        let reg = g.pr.find(&Who::of(nexus));
        if reg.is_some_and(|i| g.pr.is_holder(i)) {
            return false;
        }
        let registered_access = reg.is_some() && res.ty.registrants_have_access();
        match class {
            Access::Allowed | Access::Persistent | Access::Spc2 => false,
            Access::Read => !registered_access && res.ty.exclusive_access(),
            Access::Write => !registered_access,
        }
    }

    /// Read the persistent reservation state (PERSISTENT RESERVE IN).
    pub fn read_pr<T>(&self, f: impl FnOnce(&PrState) -> Result<T, Sense>) -> Result<T, Sense> {
        let g = self.lock();
        if g.spc2.is_some() {
            return Err(CONFLICT);
        }
        f(&g.pr)
    }

    /// Run a PERSISTENT RESERVE OUT service action on a copy of the state;
    /// persist the result when APTPL is (or was) active, then install it.
    /// Returns the nexuses to notify / abort.
    pub async fn modify_pr(
        &self,
        f: impl Fn(&mut PrState) -> Result<Effects, Sense>,
    ) -> Result<Resolved, Sense> {
        if let Some(sh) = &self.shared {
            return self.modify_shared(sh, f).await;
        }
        self.modify_local(f)
    }

    fn modify_local(
        &self,
        f: impl Fn(&mut PrState) -> Result<Effects, Sense>,
    ) -> Result<Resolved, Sense> {
        let mut g = self.lock();
        if g.spc2.is_some() {
            return Err(CONFLICT);
        }
        let mut next = g.pr.clone();
        let effects = f(&mut next)?;
        if next != g.pr {
            if let Some((store, name)) = &self.store {
                let r = if next.aptpl {
                    pr_store::save(store.as_ref(), name, &next)
                } else if g.pr.aptpl {
                    pr_store::remove(store.as_ref(), name)
                } else {
                    Ok(())
                };
                if let Err(e) = r {
                    tracing::error!(state = %store.describe(name), error = %e,
                        "cannot save persistent reservation state");
                    return Err(sense::INTERNAL_TARGET_FAILURE);
                }
            }
            g.pr = next;
            self.update_active(&g);
        }
        drop(g);
        Ok(self.resolve(effects))
    }

    /// [`Reservations::modify_pr`] on the shared state: read it, apply
    /// the service action, commit if no other gateway did in between (else
    /// again, from what it committed).
    async fn modify_shared(
        &self,
        sh: &Arc<dyn SharedPrStore>,
        f: impl Fn(&mut PrState) -> Result<Effects, Sense>,
    ) -> Result<Resolved, Sense> {
        // The store's calls wait for the cluster: on a blocking thread.
        async fn off<T: Send + 'static>(
            sh: &Arc<dyn SharedPrStore>,
            call: impl FnOnce(&dyn SharedPrStore) -> io::Result<T> + Send + 'static,
        ) -> io::Result<T> {
            let sh = sh.clone();
            tokio::task::spawn_blocking(move || call(sh.as_ref()))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)))
        }
        let failed = |what: &str, e: String| {
            tracing::error!(state = %sh.describe(), error = %e, "{what}");
            sense::INTERNAL_TARGET_FAILURE
        };
        let mut remote = Resolved::default();
        for _ in 0..SHARED_TRIES {
            if self.lock().spc2.is_some() {
                return Err(CONFLICT);
            }
            let (version, blob) = off(sh, |s| s.read())
                .await
                .map_err(|e| failed("cannot read the shared reservation state", e.to_string()))?;
            let cur = match blob {
                Some(b) => shared::decode(&b)
                    .map_err(|e| failed("the shared reservation state is damaged", e))?,
                None => Shared {
                    state: PrState::default(),
                    log: Vec::new(),
                },
            };
            // What other gateways committed since this one last looked.
            remote.merge(self.install(version, &cur));
            let mut next = cur.state.clone();
            let effects = f(&mut next)?;
            if next == cur.state {
                let mut r = self.resolve(effects);
                r.remote = Some(Box::new(remote));
                return Ok(r);
            }
            let mut log = cur.log;
            log.push(Logged::of(version + 1, &effects));
            let keep = log.len().saturating_sub(shared::EFFECTS_KEPT as usize);
            log.drain(..keep);
            let new = Shared { state: next, log };
            let bytes = shared::encode(&new);
            match off(sh, move |s| s.commit(version, &bytes)).await {
                Ok(Some(v)) => {
                    let mut g = self.lock();
                    if v > g.version {
                        g.pr = new.state;
                        g.version = v;
                        self.update_active(&g);
                    }
                    drop(g);
                    let mut r = self.resolve(effects);
                    r.remote = Some(Box::new(remote));
                    return Ok(r);
                }
                Ok(None) => continue,
                Err(e) => {
                    return Err(failed(
                        "cannot commit the shared reservation state",
                        e.to_string(),
                    ))
                }
            }
        }
        Err(failed(
            "gave up committing the shared reservation state",
            format!("{SHARED_TRIES} commits lost to other gateways"),
        ))
    }

    /// Take `cur` (at `version`) as the state if it is newer than the one
    /// held; the effects of the commits in between, for this gateway's
    /// nexuses.
    fn install(&self, version: u64, cur: &Shared) -> Resolved {
        let mut g = self.lock();
        if version <= g.version {
            return Resolved::default();
        }
        let mut missed = Effects::default();
        for l in cur
            .log
            .iter()
            .filter(|l| l.version > g.version && l.version <= version)
        {
            let e = l.effects();
            missed.ua.extend(e.ua);
            missed.abort.extend(e.abort);
        }
        g.pr = cur.state.clone();
        g.version = version;
        self.update_active(&g);
        drop(g);
        self.resolve(missed)
    }

    /// Another gateway committed: take its state, and deliver what its
    /// service actions caused to the nexuses here.
    pub fn reload(&self, lu: &LogicalUnit) {
        let Some(sh) = &self.shared else { return };
        let (version, blob) = match sh.read() {
            Ok((v, Some(b))) => (v, b),
            Ok((_, None)) => return,
            Err(e) => {
                tracing::warn!(state = %sh.describe(), error = %e, "cannot read the shared reservation state");
                return;
            }
        };
        match shared::decode(&blob) {
            Ok(cur) => apply_effects(lu, NO_ISSUER, self.install(version, &cur)),
            Err(e) => {
                tracing::error!(state = %sh.describe(), error = %e, "the shared reservation state is damaged; keeping the one held")
            }
        }
    }

    /// Live nexus ids covered by `targets`.
    fn ids(&self, targets: &[Target]) -> Vec<u64> {
        self.live()
            .iter()
            .filter(|(_, who)| targets.iter().any(|t| t.covers(who)))
            .map(|(id, _)| *id)
            .collect()
    }

    fn resolve(&self, e: Effects) -> Resolved {
        Resolved {
            ua: e.ua.iter().map(|(s, t)| (*s, self.ids(t))).collect(),
            abort: self.ids(&e.abort),
            remote: None,
        }
    }

    /// RESERVE from `nexus`.
    fn spc2_reserve(&self, nexus: &Nexus) -> Result<(), Sense> {
        let mut g = self.lock();
        if g.pr.res.is_some() {
            return self.crh(&g, nexus);
        }
        match g.spc2 {
            Some(h) if h != nexus.id() => Err(CONFLICT),
            _ => {
                g.spc2 = Some(nexus.id());
                self.update_active(&g);
                Ok(())
            }
        }
    }

    /// RELEASE from `nexus`.
    fn spc2_release(&self, nexus: &Nexus) -> Result<(), Sense> {
        let mut g = self.lock();
        if g.pr.res.is_some() {
            return self.crh(&g, nexus);
        }
        if g.spc2 == Some(nexus.id()) {
            g.spc2 = None;
            self.update_active(&g);
        }
        Ok(())
    }

    /// RESERVE / RELEASE while a persistent reservation exists (CRH=1).
    fn crh(&self, g: &Inner, nexus: &Nexus) -> Result<(), Sense> {
        let res = g.pr.res.expect("reserved");
        match g.pr.find(&Who::of(nexus)) {
            Some(i) if g.pr.is_holder(i) || res.ty.registrants_have_access() => Ok(()),
            _ => Err(CONFLICT),
        }
    }

    #[cfg(test)]
    pub fn spc2_holder(&self) -> Option<u64> {
        self.lock().spc2
    }
}

/// Effects mapped to live nexus ids.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub ua: Vec<(Sense, Vec<u64>)>,
    pub abort: Vec<u64>,
    /// What other gateways' commits caused, for every nexus here (the
    /// issuer included).
    pub remote: Option<Box<Resolved>>,
}

impl Resolved {
    fn merge(&mut self, o: Resolved) {
        self.ua.extend(o.ua);
        self.abort.extend(o.abort);
    }
}

/// The issuer of effects that come from another gateway: no nexus here.
const NO_ISSUER: u64 = u64::MAX;

/// Establish the unit attentions and abort the tasks a persistent
/// reservation change causes, sparing the nexus `issuer` that made it.
pub(crate) fn apply_effects(lu: &LogicalUnit, issuer: u64, mut r: Resolved) {
    if let Some(remote) = r.remote.take() {
        apply_effects(lu, NO_ISSUER, *remote);
    }
    let mut cleared = Vec::new();
    for &id in r.abort.iter().filter(|&&id| id != issuer) {
        if !lu.tasks.abort(Scope::Nexus(id)).is_empty() {
            cleared.push(id);
        }
    }
    for (ua, ids) in r.ua {
        lu.ua.establish(ua, |n| n != issuer && ids.contains(&n));
    }
    if !cleared.is_empty() {
        lu.ua.establish(sense::UA_COMMANDS_CLEARED_BY_ANOTHER, |n| {
            cleared.contains(&n)
        });
    }
}

pub(crate) fn decode_reserve(_d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(reserve))
}

pub(crate) fn decode_release(_d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(release))
}

fn reserve(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    lu.reservations.spc2_reserve(c.nexus)?;
    Ok(Vec::new())
}

fn release(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    lu.reservations.spc2_release(c.nexus)?;
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TmfFunction;
    use crate::pr::persistent_reservation::sa_out;
    use crate::pr::persistent_reservation::tests::*;
    use crate::testutil::*;

    const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
    const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];
    const RESERVE10: [u8; 10] = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const RELEASE10: [u8; 10] = [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const MODE_SENSE6: [u8; 6] = [0x1a, 0, 0x3f, 0, 255, 0];

    async fn st(t: &Fixture, cdb: &[u8]) -> u8 {
        t.run(cdb, &[]).await.status
    }

    #[tokio::test]
    async fn spc2_reserve_and_release() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        assert_eq!(st(&a, &RESERVE6).await, 0);
        // Reserving again from the holder is fine.
        assert_eq!(st(&a, &RESERVE6).await, 0);
        assert_eq!(st(&a, &MODE_SENSE6).await, 0);
        assert_eq!(st(&a, &READ1).await, 0);
        // The other nexus: conflicts ...
        for cdb in [&RESERVE6[..], &RESERVE10, &TUR, &READ1, &MODE_SENSE6] {
            assert_eq!(st(&b, cdb).await, CONFLICT_STATUS, "{cdb:02x?}");
        }
        // ... except INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT SUPPORTED
        // OPERATION CODES, and RELEASE which does nothing.
        for cdb in [
            &[0x12, 0, 0, 0, 36, 0][..],
            &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            &[0x03, 0, 0, 0, 18, 0],
            &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            &RELEASE6,
        ] {
            assert_eq!(st(&b, cdb).await, 0, "{cdb:02x?}");
        }
        assert_eq!(a.lu.reservations.spc2_holder(), Some(a.nexus.id()));
        // Persistent reservation commands conflict for everyone, the holder
        // included.
        assert_eq!(pr_in(&a, 0, 100).await.status, CONFLICT_STATUS);
        assert_eq!(
            out(&b, sa_out::REGISTER, 0, 0, 1).await.status,
            CONFLICT_STATUS
        );
        // Released by the holder: now b may reserve (with the 10-byte CDB).
        assert_eq!(st(&a, &RELEASE6).await, 0);
        assert_eq!(st(&b, &RESERVE10).await, 0);
        assert_eq!(st(&a, &TUR).await, CONFLICT_STATUS);
        assert_eq!(st(&b, &RELEASE10).await, 0);
        assert_eq!(st(&a, &TUR).await, 0);
        assert_eq!(a.lu.reservations.spc2_holder(), None);
        // No unit attentions come from any of this.
        assert!(a.lu.ua.pending_for(a.nexus.id()).is_empty());
        // Extents and third-party reservations are not supported.
        let s = a.check(&[0x16, 0x01, 0, 0, 0, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
        let s = a.check(&[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn spc2_released_by_resets_and_nexus_loss() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        // LOGICAL UNIT RESET.
        assert_eq!(st(&a, &RESERVE6).await, 0);
        a.nexus
            .task_management(TmfFunction::LogicalUnitReset { lun: 0 })
            .await;
        b.clear_ua().await;
        assert_eq!(st(&b, &RESERVE6).await, 0);
        // TARGET RESET.
        a.nexus.task_management(TmfFunction::TargetReset).await;
        a.clear_ua().await;
        assert_eq!(st(&a, &RESERVE6).await, 0);
        // Nexus loss (logout / connection loss). The unit attention comes
        // before the conflict.
        assert_eq!(st(&b, &TUR).await, 2);
        assert_eq!(st(&b, &TUR).await, CONFLICT_STATUS);
        a.nexus.close();
        assert_eq!(st(&b, &RESERVE6).await, 0);
        // The nexus object being dropped releases too.
        let c = nexus_as(&b, "iqn.test:c,i,0x5", 1);
        assert_eq!(st(&b, &RELEASE6).await, 0);
        c.clear_ua().await;
        assert_eq!(st(&c, &RESERVE6).await, 0);
        let lu = c.lu.clone();
        drop(c);
        assert_eq!(lu.reservations.spc2_holder(), None);
        assert_eq!(st(&b, &TUR).await, 0);
    }

    #[tokio::test]
    async fn reserve_release_with_persistent_reservations() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        let c = nexus_as(&a, "iqn.test:third,i,0x3", 1);
        for n in [&a, &b, &c] {
            n.clear_ua().await;
        }
        // Registrations alone: SPC-2 works as usual.
        register_key(&a, 0xa).await;
        register_key(&b, 0xb).await;
        assert_eq!(st(&c, &RESERVE6).await, 0);
        assert_eq!(
            out(&a, sa_out::RESERVE, WE, 0xa, 0).await.status,
            CONFLICT_STATUS
        );
        assert_eq!(st(&c, &RELEASE6).await, 0);
        // A persistent reservation: the holder's RESERVE / RELEASE are
        // no-ops, everyone else's conflict (CRH=1).
        assert_eq!(out(&a, sa_out::RESERVE, WE, 0xa, 0).await.status, 0);
        assert_eq!(st(&a, &RESERVE6).await, 0);
        assert_eq!(a.lu.reservations.spc2_holder(), None);
        assert_eq!(st(&a, &RELEASE10).await, 0);
        assert_eq!(reservation(&a).await, Some((0xa, WE)));
        assert_eq!(st(&b, &RESERVE6).await, CONFLICT_STATUS);
        assert_eq!(st(&b, &RELEASE6).await, CONFLICT_STATUS);
        assert_eq!(st(&c, &RESERVE10).await, CONFLICT_STATUS);
        // Registrants-only: a registered nexus' RESERVE is a no-op too.
        assert_eq!(out(&a, sa_out::RELEASE, WE, 0xa, 0).await.status, 0);
        assert_eq!(out(&a, sa_out::RESERVE, WE_RO, 0xa, 0).await.status, 0);
        assert_eq!(st(&b, &RESERVE6).await, 0);
        assert_eq!(st(&c, &RESERVE6).await, CONFLICT_STATUS);
        assert_eq!(a.lu.reservations.spc2_holder(), None);
    }

    #[test]
    fn classification() {
        use Access::*;
        let cases: &[(&[u8], Access)] = &[
            (&[0x00, 0, 0, 0, 0, 0], Allowed),
            (&[0x12, 0, 0, 0, 0, 0], Allowed),
            (&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], Allowed),
            (&[0x9e, 0x10], Allowed),
            (&[0x9e, 0x12], Read),
            (&[0x1e, 0, 0, 0, 0, 0], Allowed),
            (&[0x1e, 0, 0, 0, 1, 0], Write),
            (&[0x1b, 0, 0, 0, 1, 0], Allowed),
            (&[0x1b, 0, 0, 0, 0, 0], Write),
            (&[0x1b, 0, 0, 0, 0x31, 0], Write),
            (&[0x28], Read),
            (&[0x88], Read),
            (&[0x2f], Read),
            (&[0x2a], Write),
            (&[0x2e], Write),
            (&[0x35], Write),
            (&[0x1a], Write),
            (&[0x15], Write),
            (&[0x42], Write),
            (&[0x41], Write),
            (&[0x89], Write),
            (&[0x48], Write),
            (&[0x83, 0x00], Write),
            (&[0x83, 0x10], Read),
            (&[0x84], Write),
            (&[0x5e], Persistent),
            (&[0x5f], Persistent),
            (&[0x16], Spc2),
            (&[0x57], Spc2),
            (&[0xc0], Write),
        ];
        for (cdb, want) in cases {
            assert_eq!(access(cdb), *want, "{cdb:02x?}");
        }
        // Every command in the opcode table is classified deliberately:
        // commands without a read or write purpose that are not in the
        // allowed lists conflict (MODE SELECT/SENSE, SYNCHRONIZE CACHE).
        for op in crate::core::opcodes::OPS {
            let mut cdb = op.usage.to_vec();
            cdb[1] = op.sa.unwrap_or(0);
            let a = access(&cdb);
            if op.flags & crate::core::handler::flags::MEDIUM_WRITE != 0 {
                assert_eq!(a, Write, "{} writes", op.name);
            }
            if op.flags & crate::core::handler::flags::ANY_LUN != 0 {
                assert_eq!(a, Allowed, "{} runs anywhere", op.name);
                assert!(spc2_allowed(&cdb), "{}", op.name);
            }
        }
    }
}
