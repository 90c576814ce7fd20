//! The I_T nexus and what it reaches: [`Nexus`], the [`Prepared`] command,
//! the [`TargetPort`] and the [`LunMap`] of [`MappedLun`]s.

use rtgt_backstore::IoBuf;
use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{Command, ExecOutcome, Response, TmfFunction, TmfResult};

/// A target port as the core sees it: what INQUIRY's device identification
/// page reports about the port a command came through.
#[derive(Debug, Clone)]
pub struct TargetPort {
    /// SCSI name of the target port, e.g. `iqn.2026-11.org.rtgt:demo,t,0x0001`.
    pub name: String,
    /// The target device name, e.g. `iqn.2026-11.org.rtgt:demo`.
    pub target_name: String,
    /// Relative target port identifier (1-based).
    pub relative_port_id: u16,
    /// The target port group (ALUA) the port belongs to: its identifier
    /// and access state.
    pub group: Arc<crate::alua::TargetPortGroup>,
}

/// One LUN as mapped for a nexus.
#[derive(Clone)]
pub struct MappedLun {
    pub lu: Arc<crate::lu::LogicalUnit>,
    /// Mapped read-only for this initiator: write-type commands fail with
    /// DATA PROTECT / WRITE PROTECTED.
    pub read_only: bool,
}

/// The LUNs a nexus sees.
#[derive(Clone, Default)]
pub struct LunMap {
    pub luns: BTreeMap<u64, MappedLun>,
}

impl LunMap {
    /// Every distinct LU of the map (one LU may be mapped under several
    /// numbers).
    pub fn distinct_lus(&self) -> Vec<&Arc<crate::lu::LogicalUnit>> {
        let mut v: Vec<&Arc<crate::lu::LogicalUnit>> = Vec::new();
        for m in self.luns.values() {
            if !v.iter().any(|l| Arc::ptr_eq(l, &m.lu)) {
                v.push(&m.lu);
            }
        }
        v
    }

    /// The same LUs under the same numbers with the same rights.
    pub fn same_as(&self, other: &LunMap) -> bool {
        self.luns.len() == other.luns.len()
            && self.luns.iter().zip(&other.luns).all(|((a, x), (b, y))| {
                a == b && Arc::ptr_eq(&x.lu, &y.lu) && x.read_only == y.read_only
            })
    }

    /// Whether the map reaches `lu` at all.
    pub fn reaches(&self, lu: &crate::lu::LogicalUnit) -> bool {
        self.luns.values().any(|m| std::ptr::eq(m.lu.as_ref(), lu))
    }
}

/// One I_T nexus: an initiator port talking to a target port. Created by the
/// fabric when a session reaches full feature phase; dropped (after
/// [`Nexus::close`]) when the session ends.
pub struct Nexus {
    id: u64,
    initiator_port: String,
    port: Arc<TargetPort>,
    /// Swapped whole when the access model changes it; read once per
    /// command without a lock.
    luns: ArcSwap<LunMap>,
    /// Turns true when the access model ends the nexus.
    revoked: watch::Sender<bool>,
}

impl Nexus {
    /// `initiator_port` is the SCSI initiator port name (for iSCSI
    /// `iqn...,i,0x<ISID>`); it identifies the nexus for reservations.
    pub fn new(initiator_port: String, port: Arc<TargetPort>, luns: Arc<LunMap>) -> Arc<Nexus> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let nexus = Arc::new(Nexus {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            initiator_port,
            port,
            luns: ArcSwap::new(luns),
            revoked: watch::Sender::new(false),
        });
        crate::core::exec::nexus_created(&nexus);
        nexus
    }

    /// Process-unique identifier of this nexus.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn initiator_port(&self) -> &str {
        &self.initiator_port
    }

    pub fn target_port(&self) -> &Arc<TargetPort> {
        &self.port
    }

    /// The LUN map as it is now (a snapshot: a command keeps the map it
    /// was admitted with).
    pub fn luns(&self) -> Arc<LunMap> {
        self.luns.load_full()
    }

    /// Whether `map` is the nexus' LUN map now (no reference taken: cheap
    /// enough for every command).
    pub fn luns_are(&self, map: &Arc<LunMap>) -> bool {
        Arc::ptr_eq(&self.luns.load(), map)
    }

    /// Replace the LUN map while the nexus runs: LUs it no longer reaches
    /// forget it (commands already running on them complete), LUs it now
    /// reaches learn of it, and its initiator is told REPORTED LUNS DATA HAS
    /// CHANGED on each LU of the new map. Called by the access model.
    pub fn set_luns(&self, new: Arc<LunMap>) {
        let old = self.luns.load_full();
        if old.same_as(&new) {
            return;
        }
        for lu in new.distinct_lus() {
            if !old.reaches(lu) {
                crate::core::exec::lu_attached(self, lu);
            }
        }
        self.luns.store(new.clone());
        for lu in old.distinct_lus() {
            if !new.reaches(lu) {
                crate::core::exec::lu_detached(self, lu);
            }
        }
        crate::core::exec::luns_changed(self);
    }

    /// End the nexus from the target side (its initiator lost access, or
    /// its authentication changed): the fabric, waiting in
    /// [`Nexus::revoked`], drops the session.
    pub fn revoke(&self) {
        self.revoked.send_replace(true);
    }

    /// Resolves when the nexus has been revoked.
    pub async fn revoked(&self) {
        let mut rx = self.revoked.subscribe();
        // The sender lives as long as `self`, so this cannot fail early.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Whether the nexus has been revoked.
    pub fn is_revoked(&self) -> bool {
        *self.revoked.borrow()
    }

    /// Admit a command: decode its CDB, check the LUN, unit attentions,
    /// ranges and reservations, and enter it into the LU's task set (in the
    /// order commands are prepared, which must be command order).
    ///
    /// `Err` is the final answer, given before any data moves (the fabric
    /// still swallows any unsolicited data the initiator sends). `Ok` tells
    /// how many Data-Out bytes the command needs.
    pub fn prepare(self: &Arc<Self>, cmd: Command) -> Result<Prepared, Response> {
        crate::core::exec::prepare(self, cmd)
    }

    /// Perform a task management function. Aborted tasks stop being
    /// reported at once; the answer waits only for medium writes they had
    /// already handed to a worker thread (a task has ceased only when
    /// nothing of it can still reach the medium), never for reads.
    pub async fn task_management(self: &Arc<Self>, f: TmfFunction) -> TmfResult {
        crate::core::exec::task_management(self, f).await
    }

    /// Tell the initiator that the set of LUNs this nexus reaches changed
    /// (the daemon changed its LUN map live): REPORTED LUNS DATA HAS CHANGED
    /// (3Fh/0Eh) is reported by the next command on any of its LUs. Call it
    /// on the nexus' new map, or on the old one when LUs were only removed.
    pub fn luns_changed(&self) {
        crate::core::exec::luns_changed(self)
    }

    /// The nexus is gone (logout, connection loss): abort its tasks and drop
    /// the state SCSI ties to it.
    pub fn close(self: &Arc<Self>) {
        crate::core::exec::nexus_lost(self)
    }

    /// After [`Nexus::close`]: wait until writes its aborted commands left
    /// running on worker threads have returned, so that nothing of the old
    /// nexus lands after a new one (the same initiator reconnecting)
    /// writes.
    pub async fn quiesce(&self) {
        let map = self.luns();
        for lu in map.distinct_lus() {
            lu.fence.wait_past().await;
        }
    }
}

impl Drop for Nexus {
    fn drop(&mut self) {
        crate::core::exec::nexus_dropped(self)
    }
}

/// A command admitted to a task set, waiting for its Data-Out (if any) and
/// execution. Dropping it without executing removes it from the task set.
pub struct Prepared {
    pub(crate) inner: crate::core::exec::PreparedInner,
}

impl Prepared {
    /// Data-Out bytes the CDB calls for (0 for commands without Data-Out).
    pub fn data_out_len(&self) -> u32 {
        self.inner.data_out_len()
    }

    /// Execute with the Data-Out buffer (exactly `data_out_len()` bytes, or
    /// fewer if the initiator's expected length was smaller — the core then
    /// fails the command properly). Waits for the task-attribute order.
    pub async fn execute(self, data_out: impl Into<IoBuf>) -> ExecOutcome {
        self.inner.execute(data_out.into(), None).await
    }

    /// Bytes of Data-In a READ moves from the medium as they are; a fabric
    /// that can lend the initiator's own memory for that many bytes passes
    /// it to [`Prepared::execute_into`]. 0 for every other command.
    pub fn data_in_from_medium(&self) -> usize {
        self.inner.data_in_from_medium()
    }

    /// Whether the Data-Out goes to the medium as it is and is never
    /// parsed (WRITE and WRITE AND VERIFY), so the fabric may lend the
    /// initiator's memory for it ([`IoBuf::foreign`]); for every other
    /// command it copies the Data-Out into a buffer of its own.
    pub fn data_out_to_medium(&self) -> bool {
        self.inner.data_out_to_medium()
    }

    /// [`Prepared::execute`] with `data_in`, memory lent for a READ's data
    /// (at least [`Prepared::data_in_from_medium`] bytes): the medium is
    /// read straight into it and the response's data is that buffer. A
    /// buffer too short is not used. Lent buffers (this one, and a lent
    /// Data-Out) are otherwise dropped before this returns, except for an
    /// I/O that task management ended while the kernel still had it: it is
    /// dropped on the I/O's completion, which task management waits for,
    /// and so must the fabric before it gives the memory back.
    pub async fn execute_into(self, data_out: IoBuf, data_in: IoBuf) -> ExecOutcome {
        self.inner.execute(data_out, Some(data_in)).await
    }

    /// Fail the command with `sense` without executing it, e.g. when the
    /// transport could not deliver its Data-Out intact.
    pub fn fail(self, sense: crate::core::sense::Sense) -> Response {
        self.inner.fail(sense)
    }
}
