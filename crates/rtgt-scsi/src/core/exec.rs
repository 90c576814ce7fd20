//! Command admission (`prepare`), execution, task management and the
//! nexus lifecycle: the glue between the fabric API and the rest of the
//! core.
//!
//! `prepare()` (in command order, on the fabric's reader) decides
//! everything that can be decided before data moves: LUN mapping, pending
//! unit attention, opcode and reserved bits, write protection, the CDB's own
//! fields and ranges; then it enters the task in the LU's task set.
//! `execute()` waits for its turn (task attributes), runs the command and
//! leaves the task set; if task management aborted the task meanwhile it
//! returns `Aborted` without a response.

use rtgt_backstore::IoBuf;
use std::sync::Arc;

use crate::api::{
    status, Command, ExecOutcome, MappedLun, Nexus, Prepared, Response, TmfFunction, TmfResult,
};
use crate::core::handler::{flags, Action, Decode, ExecCtx, Plan};
use crate::core::opcodes;
use crate::core::sense::{self, Sense};
use crate::lu::task_set::{Scope, TaskHandle};
use crate::lu::LogicalUnit;

/// Opcodes that never report a unit attention (SPC-4 5.12: INQUIRY,
/// REPORT LUNS; REQUEST SENSE returns it as data).
fn reports_ua(opcode: u8) -> bool {
    !matches!(opcode, 0x12 | 0xa0 | 0x03)
}

/// CHECK CONDITION with `s` encoded as the LU wants it.
pub(crate) fn check_condition(s: Sense, descriptor: bool) -> Response {
    Response {
        status: status::CHECK_CONDITION,
        sense: Some(s.encode(descriptor)),
        data: IoBuf::new(),
    }
}

/// A command admitted to a task set (or, for a LUN that is not mapped,
/// admitted to run without one).
pub(crate) struct PreparedInner {
    nexus: Arc<Nexus>,
    mapped: Option<MappedLun>,
    task: Option<TaskHandle>,
    /// The LU's abort epoch when the task was registered.
    epoch: u64,
    /// The task may start without waiting.
    enabled: bool,
    cdb: crate::api::Cdb,
    plan: Plan,
    /// Left the task set (completed or found aborted).
    finished: bool,
}

impl PreparedInner {
    pub fn data_out_len(&self) -> u32 {
        self.plan.data_out_len
    }

    /// Bytes a READ moves from the medium into Data-In as they are (0 for
    /// every other command, whose Data-In the core builds).
    pub fn data_in_from_medium(&self) -> usize {
        match (&self.plan.action, &self.mapped) {
            (Action::Read(r), Some(m)) => r.blocks as usize * m.lu.block_size() as usize,
            _ => 0,
        }
    }

    /// Whether the Data-Out goes to the medium as it is (a WRITE), and is
    /// never parsed.
    pub fn data_out_to_medium(&self) -> bool {
        self.mapped.is_some()
            && matches!(self.plan.action, Action::Write(_) | Action::WriteVerify(_))
    }

    pub async fn execute(self, data_out: IoBuf, data_in: Option<IoBuf>) -> ExecOutcome {
        // Its blocking writes enter the LU's fence (see `lu::fence`). Only
        // commands that can make such writes need the context: I/O on a
        // backstore that blocks, and the asynchronous handlers (copy, thin
        // provisioning, atomics); a RAM-disk READ pays nothing for it.
        let may_write_blocking = |m: &MappedLun| {
            matches!(self.plan.action, Action::Async(_)) || m.lu.config.backstore.may_block()
        };
        match (&self.mapped, self.task) {
            (Some(m), Some(task)) if may_write_blocking(m) => {
                let ctx = crate::sbc::read_write::IoContext {
                    lu: m.lu.clone(),
                    task,
                    epoch: self.epoch,
                };
                crate::sbc::read_write::with_io_context(ctx, self.run(data_out, data_in)).await
            }
            _ => self.run(data_out, data_in).await,
        }
    }

    async fn run(mut self, data_out: IoBuf, data_in: Option<IoBuf>) -> ExecOutcome {
        let lu: Option<&LogicalUnit> = self.mapped.as_ref().map(|m| m.lu.as_ref());
        let read_only = self.mapped.as_ref().is_some_and(|m| m.read_only);

        if let (Some(lu), Some(h)) = (lu, self.task) {
            // Aborted while waiting for its Data-Out, or for its turn.
            let aborted = if self.enabled {
                lu.tasks.aborted_since(h, self.epoch)
            } else {
                !lu.tasks.wait_turn(h).await
            };
            if aborted {
                self.finished = true;
                return ExecOutcome::Aborted;
            }
        }

        let result = match &self.plan.action {
            Action::Good => Ok(IoBuf::new()),
            Action::Emulate(f) => {
                let ctx = ExecCtx {
                    nexus: &self.nexus,
                    lu,
                    read_only,
                    cdb: &self.cdb,
                    data_out: &data_out,
                };
                f(&ctx).map(IoBuf::from)
            }
            Action::Async(f) => {
                let ctx = ExecCtx {
                    nexus: &self.nexus,
                    lu,
                    read_only,
                    cdb: &self.cdb,
                    data_out: &data_out,
                };
                f(&ctx).await.map(IoBuf::from)
            }
            io => {
                let lu = lu.expect("I/O needs a mapped LUN");
                let h = self.task.expect("mapped LUNs have tasks");
                let work = crate::sbc::read_write::execute(lu, io, data_out, data_in);
                if lu.config.backstore.may_block() {
                    match lu.tasks.run_abortable(h, self.epoch, work).await {
                        Some(r) => r,
                        None => {
                            self.finished = true;
                            return ExecOutcome::Aborted;
                        }
                    }
                } else {
                    work.await
                }
            }
        };

        if let (Some(lu), Some(h)) = (lu, self.task) {
            self.finished = true;
            if !lu.tasks.complete(h) {
                return ExecOutcome::Aborted;
            }
        }

        ExecOutcome::Done(match result {
            Ok(mut data) => {
                if let Some(n) = self.plan.alloc_len {
                    data.truncate(n as usize);
                }
                Response::good(data)
            }
            Err(s) if s == crate::pr::reservation::CONFLICT => {
                Response::status(status::RESERVATION_CONFLICT)
            }
            Err(s) => check_condition(s, lu.is_some_and(|lu| lu.mode.d_sense())),
        })
    }
}

impl PreparedInner {
    /// End the command with `s` instead of executing it (a transport-level
    /// failure such as a Data-Out sequence error); leaves the task set.
    pub fn fail(self, s: Sense) -> Response {
        let descriptor = self.mapped.as_ref().is_some_and(|m| m.lu.mode.d_sense());
        drop(self);
        check_condition(s, descriptor)
    }
}

impl Drop for PreparedInner {
    fn drop(&mut self) {
        // Dropped without executing (or executing was cancelled): leave the
        // task set so later tasks are not held up.
        if !self.finished {
            if let (Some(m), Some(h)) = (&self.mapped, self.task) {
                m.lu.tasks.complete(h);
            }
        }
    }
}

pub(crate) fn prepare(nexus: &Arc<Nexus>, cmd: Command) -> Result<Prepared, Response> {
    let Some(&opcode) = cmd.cdb.first() else {
        return Err(check_condition(sense::INVALID_OPCODE, false));
    };
    let map = nexus.luns();
    let mapped = map.luns.get(&cmd.lun);
    let descriptor = mapped.is_some_and(|m| m.lu.mode.d_sense());
    let fail = |s: Sense| check_condition(s, descriptor);

    match mapped {
        None if reports_ua(opcode) => return Err(fail(sense::LU_NOT_SUPPORTED)),
        Some(m) if reports_ua(opcode) => {
            if let Some(ua) = m.lu.ua.take(nexus.id()) {
                return Err(fail(ua));
            }
        }
        _ => {}
    }

    // The access state of the port's target port group (after unit
    // attentions, before reservations, as LIO orders them). An opcode the
    // table does not have runs in no state but the active ones.
    if mapped.is_some() {
        let state = nexus.target_port().group.state();
        if !state.is_active() {
            let sa = cmd.cdb.get(1).map_or(0, |b| b & 0x1f);
            let allow = opcodes::find(opcode, sa).map_or(0, |op| op.alua);
            if !state.admits(allow) {
                return Err(fail(state.refusal()));
            }
        }
    }

    if let Some(m) = mapped {
        // The LU is not ready for medium access: that is reported before
        // the CDB's own fields are looked at (a sanitize in progress stops
        // everything but INQUIRY, REPORT LUNS and REQUEST SENSE).
        if m.lu.sanitize.in_progress() && !crate::sbc::sanitize::allowed_while_running(opcode) {
            return Err(fail(m.lu.sanitize.in_progress_sense()));
        }
        let sa = cmd.cdb.get(1).map_or(0, |b| b & 0x1f);
        if opcodes::find(opcode, sa).is_some_and(|op| op.flags & flags::MEDIUM != 0) {
            if !m.lu.medium.loaded() {
                return Err(fail(sense::MEDIUM_NOT_PRESENT));
            }
            if m.lu.sanitize.failed() && opcode != 0x48 {
                return Err(fail(sense::SANITIZE_FAILED));
            }
        }
    }
    let op = opcodes::lookup(&cmd.cdb).map_err(fail)?;
    if mapped.is_some_and(|m| m.lu.reservations.conflicts(nexus, &cmd.cdb)) {
        return Err(Response::status(status::RESERVATION_CONFLICT));
    }
    if op.flags & flags::MEDIUM_WRITE != 0 {
        if let Some(s) = mapped.and_then(|m| m.lu.write_protect(m.read_only)) {
            return Err(fail(s));
        }
    }
    let plan = (op.decode)(&Decode {
        cdb: &cmd.cdb,
        lu: mapped.map(|m| m.lu.as_ref()),
        expected_len: cmd.expected_len,
        port: nexus.target_port(),
    })
    .map_err(|s| {
        tracing::debug!(
            nexus = nexus.id(),
            lun = cmd.lun,
            op = op.name,
            ?s,
            "command refused"
        );
        fail(s)
    })?;

    let (task, epoch, enabled) = match mapped {
        Some(m) => {
            let epoch = m.lu.tasks.epoch();
            let (h, enabled) = m.lu.tasks.register(nexus.id(), cmd.tag, cmd.attr);
            (Some(h), epoch, enabled)
        }
        None => (None, 0, true),
    };
    Ok(Prepared {
        inner: PreparedInner {
            nexus: nexus.clone(),
            mapped: mapped.cloned(),
            task,
            epoch,
            enabled,
            cdb: cmd.cdb,
            plan,
            finished: false,
        },
    })
}

/// Abort every task of the LU, reset its mode parameters and tell every
/// nexus with `ua`.
fn reset_lu(lu: &LogicalUnit, ua: Sense) {
    lu.tasks.abort(Scope::All);
    lu.mode.reset();
    lu.reservations.reset();
    lu.medium.reset();
    lu.ua.establish(ua, |_| true);
}

pub(crate) async fn task_management(nexus: &Arc<Nexus>, f: TmfFunction) -> TmfResult {
    let me = nexus.id();
    let map = nexus.luns();
    let lu_of = |lun: u64| map.luns.get(&lun).map(|m| m.lu.clone());
    match f {
        TmfFunction::AbortTask { lun, tag } => {
            let Some(lu) = lu_of(lun) else {
                return TmfResult::LunNotFound;
            };
            if lu.tasks.abort(Scope::Task { nexus: me, tag }).is_empty() {
                TmfResult::TaskNotFound
            } else {
                // The task has ceased only once its writes have returned.
                lu.fence.wait_past().await;
                TmfResult::Complete
            }
        }
        TmfFunction::AbortTaskSet { lun } => {
            let Some(lu) = lu_of(lun) else {
                return TmfResult::LunNotFound;
            };
            lu.tasks.abort(Scope::Nexus(me));
            lu.fence.wait_past().await;
            TmfResult::Complete
        }
        TmfFunction::ClearTaskSet { lun } => {
            let Some(lu) = lu_of(lun) else {
                return TmfResult::LunNotFound;
            };
            let mut others = lu.tasks.abort(Scope::All);
            others.retain(|&n| n != me);
            if !others.is_empty() {
                lu.ua.establish(sense::UA_COMMANDS_CLEARED_BY_ANOTHER, |n| {
                    others.contains(&n)
                });
            }
            lu.fence.wait_past().await;
            TmfResult::Complete
        }
        TmfFunction::LogicalUnitReset { lun } => {
            let Some(lu) = lu_of(lun) else {
                return TmfResult::LunNotFound;
            };
            reset_lu(&lu, sense::UA_LUN_RESET);
            lu.fence.wait_past().await;
            TmfResult::Complete
        }
        TmfFunction::TargetReset => {
            for lu in map.distinct_lus() {
                reset_lu(lu, sense::UA_POWER_ON_RESET);
            }
            for lu in map.distinct_lus() {
                lu.fence.wait_past().await;
            }
            TmfResult::Complete
        }
    }
}

/// The LUNs the nexus can reach changed: REPORTED LUNS DATA HAS CHANGED
/// for this nexus, on every LU it maps.
pub(crate) fn luns_changed(nexus: &Nexus) {
    for lu in nexus.luns().distinct_lus() {
        lu.ua
            .establish(sense::UA_REPORTED_LUNS_CHANGED, |n| n == nexus.id());
    }
}

/// A new nexus: it sees each of its LUs for the first time.
pub(crate) fn nexus_created(nexus: &Nexus) {
    for lu in nexus.luns().distinct_lus() {
        lu.ua.attach(nexus.id(), Some(sense::UA_POWER_ON_RESET));
        lu.reservations.attach(nexus);
    }
}

/// A running nexus now reaches `lu` (its map changed): the LU learns of it;
/// the REPORTED LUNS DATA HAS CHANGED that follows is its unit attention.
pub(crate) fn lu_attached(nexus: &Nexus, lu: &LogicalUnit) {
    lu.ua.attach(nexus.id(), None);
    lu.reservations.attach(nexus);
}

/// A running nexus no longer reaches `lu`: the LU forgets it, as if the
/// nexus were lost (its commands still running there complete).
pub(crate) fn lu_detached(nexus: &Nexus, lu: &LogicalUnit) {
    lu.ua.detach(nexus.id());
    lu.reservations.detach(nexus.id());
    lu.copies.forget_nexus(nexus.id());
    lu.medium.forget_nexus(nexus.id());
}

/// The nexus is gone: abort its tasks, forget its unit attentions.
pub(crate) fn nexus_lost(nexus: &Nexus) {
    for lu in nexus.luns().distinct_lus() {
        lu.tasks.abort(Scope::Nexus(nexus.id()));
        lu.ua.detach(nexus.id());
        lu.reservations.detach(nexus.id());
        lu.copies.forget_nexus(nexus.id());
        lu.medium.forget_nexus(nexus.id());
    }
}

/// The nexus object is dropped (its tasks are gone with it).
pub(crate) fn nexus_dropped(nexus: &Nexus) {
    for lu in nexus.luns().distinct_lus() {
        lu.medium.forget_nexus(nexus.id());
        lu.ua.detach(nexus.id());
        lu.reservations.detach(nexus.id());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::api::{ExecOutcome, TaskAttr, TmfFunction, TmfResult};
    use crate::core::sense::Sense;
    use crate::testutil::*;

    const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    fn decode(r: &crate::api::Response) -> Sense {
        Sense::decode(r.sense.as_ref().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn unit_attention_lifecycle() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        // INQUIRY and REPORT LUNS do not report or clear it.
        assert_eq!(a.run(&[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
        // The first other command reports POWER ON, RESET (and clears it).
        let s = a.check(&TUR).await;
        assert_eq!((s.key, s.code()), (6, 0x2900));
        assert_eq!(a.run(&TUR, &[]).await.status, 0);
        // Also for an unknown opcode: the UA comes first.
        let s = b.check(&[0xc9, 0, 0, 0, 0, 0]).await;
        assert_eq!(s.code(), 0x2900);
        assert_eq!(b.check(&[0xc9, 0, 0, 0, 0, 0]).await.code(), 0x2000);

        // LUN RESET: BUS DEVICE RESET FUNCTION OCCURRED for every nexus.
        assert_eq!(
            a.nexus
                .task_management(TmfFunction::LogicalUnitReset { lun: 0 })
                .await,
            TmfResult::Complete
        );
        assert_eq!(a.check(&TUR).await.code(), 0x2903);
        assert_eq!(b.check(&READ1).await.code(), 0x2903);
        assert_eq!(b.run(&READ1, &[]).await.status, 0);

        // TARGET RESET: POWER ON, RESET.
        assert_eq!(
            b.nexus.task_management(TmfFunction::TargetReset).await,
            TmfResult::Complete
        );
        assert_eq!(a.check(&TUR).await.code(), 0x2900);
        assert_eq!(b.check(&TUR).await.code(), 0x2900);

        // TMF on an unmapped LUN.
        assert_eq!(
            a.nexus
                .task_management(TmfFunction::LogicalUnitReset { lun: 3 })
                .await,
            TmfResult::LunNotFound
        );

        // A closed nexus no longer holds unit attentions.
        b.nexus.close();
        assert!(a.lu.ua.pending_for(b.nexus.id()).is_empty());
    }

    /// A fixture whose backstore blocks (worker thread) and whose next read
    /// waits until the returned sender is used or dropped.
    fn gated() -> (Fixture, std::sync::mpsc::Sender<()>) {
        let t = Fixture::build(64, 512, 512, true);
        let (tx, rx) = std::sync::mpsc::channel();
        *t.store.gate.lock().unwrap() = Some(rx);
        (t, tx)
    }

    #[tokio::test]
    async fn abort_task_does_not_wait_for_backstore_io() {
        let t = Fixture::build(64, 512, 512, true);
        t.clear_ua().await;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        *t.store.gate.lock().unwrap() = Some(rx);
        let mut c = cmd(0, &READ1);
        c.tag = 4242;
        let p = t.nexus.prepare(c).map_err(|_| ()).unwrap();
        let running = tokio::spawn(p.execute(Vec::new()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!running.is_finished(), "the read is held in the backstore");
        let tmf = tokio::time::timeout(
            Duration::from_secs(1),
            t.nexus
                .task_management(TmfFunction::AbortTask { lun: 0, tag: 4242 }),
        )
        .await
        .expect("TMF must not wait for backstore I/O");
        assert_eq!(tmf, TmfResult::Complete);
        let out = tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .expect("aborted task returns")
            .unwrap();
        assert!(matches!(out, ExecOutcome::Aborted));
        // Now the task is unknown.
        assert_eq!(
            t.nexus
                .task_management(TmfFunction::AbortTask { lun: 0, tag: 4242 })
                .await,
            TmfResult::TaskNotFound
        );
        drop(tx);
        assert_eq!(t.run(&READ1, &[]).await.status, 0);
        assert_eq!(t.lu.tasks.len(), 0);
    }

    /// ABORT TASK of a WRITE whose data is already being written by a
    /// worker thread answers only once that write has returned: a write
    /// the initiator was told is gone must not land afterwards, over newer
    /// data. (Reads are not waited for: see the test above.)
    #[tokio::test]
    async fn abort_task_waits_for_a_write_in_flight() {
        let t = Fixture::build(64, 512, 512, true);
        t.clear_ua().await;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        *t.store.write_gate.lock().unwrap() = Some(rx);
        let mut c = cmd(0, &[0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0]);
        c.tag = 99;
        let p = t.nexus.prepare(c).map_err(|_| ()).unwrap();
        let running = tokio::spawn(p.execute(vec![0x5a; 512]));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let nexus = t.nexus.clone();
        let tmf = tokio::spawn(async move {
            nexus
                .task_management(TmfFunction::AbortTask { lun: 0, tag: 99 })
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !tmf.is_finished(),
            "answered while the write was still in flight"
        );
        tx.send(()).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), tmf)
            .await
            .expect("answered once the write returned")
            .unwrap();
        assert_eq!(r, TmfResult::Complete);
        assert!(matches!(running.await.unwrap(), ExecOutcome::Aborted));
        // A write after the abort is not overwritten by the aborted one.
        assert_eq!(
            t.run(&[0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0], &[0x11; 512])
                .await
                .status,
            0
        );
        let back = t.run(&[0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], &[]).await;
        assert_eq!(back.data, vec![0x11; 512]);
    }

    #[tokio::test]
    async fn ordered_command_waits_for_earlier_simple_one() {
        let (t, tx) = gated();
        t.clear_ua().await;
        let read = t.nexus.prepare(cmd(0, &READ1)).map_err(|_| ()).unwrap();
        let mut ord = cmd(0, &TUR);
        ord.attr = TaskAttr::Ordered;
        let ordered = t.nexus.prepare(ord).map_err(|_| ()).unwrap();
        let mut hoq = cmd(0, &TUR);
        hoq.attr = TaskAttr::HeadOfQueue;
        let hoq = t.nexus.prepare(hoq).map_err(|_| ()).unwrap();
        let later = t.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();

        let read = tokio::spawn(read.execute(Vec::new()));
        let ordered = tokio::spawn(ordered.execute(Vec::new()));
        let later = tokio::spawn(later.execute(Vec::new()));
        // HEAD OF QUEUE runs at once, even with the ORDERED task waiting.
        let h = tokio::time::timeout(Duration::from_secs(1), hoq.execute(Vec::new()))
            .await
            .unwrap();
        assert!(matches!(h, ExecOutcome::Done(ref r) if r.status == 0));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!read.is_finished());
        assert!(
            !ordered.is_finished(),
            "ORDERED ran before the earlier SIMPLE read completed"
        );
        assert!(
            !later.is_finished(),
            "SIMPLE ran before the earlier ORDERED task completed"
        );
        tx.send(()).unwrap();
        for j in [read, ordered, later] {
            let out = tokio::time::timeout(Duration::from_secs(2), j)
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(out, ExecOutcome::Done(ref r) if r.status == 0));
        }
        assert_eq!(t.lu.tasks.len(), 0);
    }

    #[tokio::test]
    async fn clear_task_set_and_nexus_loss() {
        let (a, tx) = gated();
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        let pb = b.nexus.prepare(cmd(0, &READ1)).map_err(|_| ()).unwrap();
        let running = tokio::spawn(pb.execute(Vec::new()));
        let waiting = a.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.nexus
                .task_management(TmfFunction::ClearTaskSet { lun: 0 })
                .await,
            TmfResult::Complete
        );
        let out = tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(out, ExecOutcome::Aborted));
        // A's own task (not yet executed) is gone too.
        assert!(matches!(
            waiting.execute(Vec::new()).await,
            ExecOutcome::Aborted
        ));
        // B is told its commands were cleared; A is not.
        let s = b.check(&TUR).await;
        assert_eq!((s.key, s.code()), (6, 0x2f00));
        assert_eq!(a.run(&TUR, &[]).await.status, 0);
        drop(tx);

        // Nexus loss aborts that nexus' tasks only.
        let pa = a.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        let pb = b.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        b.nexus.close();
        assert!(matches!(pb.execute(Vec::new()).await, ExecOutcome::Aborted));
        assert!(matches!(pa.execute(Vec::new()).await, ExecOutcome::Done(_)));
    }

    #[tokio::test]
    async fn abort_task_set_only_touches_own_tasks_and_drop_leaves_the_set() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        let pa = a.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        let pb = b.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        assert_eq!(
            a.nexus
                .task_management(TmfFunction::AbortTaskSet { lun: 0 })
                .await,
            TmfResult::Complete
        );
        assert!(matches!(pa.execute(Vec::new()).await, ExecOutcome::Aborted));
        assert!(matches!(pb.execute(Vec::new()).await, ExecOutcome::Done(_)));
        // No UA for B from ABORT TASK SET.
        assert_eq!(b.run(&TUR, &[]).await.status, 0);

        let p = a.nexus.prepare(cmd(0, &TUR)).map_err(|_| ()).unwrap();
        assert_eq!(a.lu.tasks.len(), 1);
        drop(p);
        assert_eq!(a.lu.tasks.len(), 0);
    }

    #[tokio::test]
    async fn only_reads_and_writes_move_data_as_it_is() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let prep = |c: &[u8]| {
            let mut c = cmd(0, c);
            c.expected_len = 4096;
            t.nexus.prepare(c).map_err(|_| ()).unwrap()
        };
        // (CDB, Data-In from the medium, Data-Out to the medium)
        let cases: [(&[u8], usize, bool); 6] = [
            (&[0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0], 1024, false),
            (&[0x2a, 0, 0, 0, 0, 5, 0, 0, 2, 0], 0, true),
            (&[0x2e, 0, 0, 0, 0, 5, 0, 0, 1, 0], 0, true),
            // parsed by the core: never lent
            (&[0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], 0, false),
            (&[0x55, 0x10, 0, 0, 0, 0, 0, 0, 24, 0], 0, false),
            (&[0x12, 0, 0, 0, 96, 0], 0, false),
        ];
        for (c, din, dout) in cases {
            let p = prep(c);
            assert_eq!(
                (p.data_in_from_medium(), p.data_out_to_medium()),
                (din, dout),
                "{c:02x?}"
            );
        }
        // an unmapped LUN lends nothing
        let p = t
            .nexus
            .prepare(cmd(9, &[0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0]))
            .ok();
        assert!(p.is_none_or(|p| p.data_in_from_medium() == 0));
    }

    #[tokio::test]
    async fn write_aborted_while_waiting_for_data_out_never_writes() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let mut c = cmd(0, &[0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0]);
        c.tag = 77;
        let p = t.nexus.prepare(c).map_err(|_| ()).unwrap();
        assert_eq!(p.data_out_len(), 512);
        assert_eq!(
            t.nexus
                .task_management(TmfFunction::AbortTask { lun: 0, tag: 77 })
                .await,
            TmfResult::Complete
        );
        assert!(matches!(
            p.execute(vec![0xab; 512]).await,
            ExecOutcome::Aborted
        ));
        let r = t.run(&[0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0], &[]).await;
        assert_eq!(
            r.data,
            vec![0u8; 512],
            "an aborted WRITE must not reach the medium"
        );
    }

    #[tokio::test]
    async fn unmapped_lun_and_bad_cdbs_fail_in_prepare() {
        let t = Fixture::new(64, 512);
        let r = t.nexus.prepare(cmd(1, &READ1)).err().unwrap();
        assert_eq!((r.status, decode(&r).code()), (2, 0x2500));
        // Empty CDB.
        let r = t.nexus.prepare(cmd(0, &[])).err().unwrap();
        assert_eq!(decode(&r).code(), 0x2000);
        t.clear_ua().await;
        let r = t
            .nexus
            .prepare(cmd(0, &[0x28, 0, 0, 0, 0, 0x40, 0, 0, 1, 0]))
            .err()
            .unwrap();
        assert_eq!(decode(&r).code(), 0x2100);
        assert_eq!(
            t.lu.tasks.len(),
            0,
            "refused commands do not enter the task set"
        );
    }
}

#[cfg(test)]
mod bench {
    use crate::testutil::*;

    /// Rough cost of prepare + execute for a 4 KiB READ(10) on an inline
    /// backstore: `cargo test -p rtgt-scsi --release -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn read_4k_cost() {
        let t = Fixture::new(1 << 16, 512);
        t.clear_ua().await;
        let n = 200_000u32;
        let start = std::time::Instant::now();
        for i in 0..n {
            let lba = (i.wrapping_mul(2_654_435_761) % ((1 << 16) - 8)).to_be_bytes();
            let c = [0x28, 0, lba[0], lba[1], lba[2], lba[3], 0, 0, 8, 0];
            let p = t.nexus.prepare(cmd(0, &c)).map_err(|_| ()).unwrap();
            let r = done(p.execute(Vec::new()).await);
            assert_eq!(r.data.len(), 4096);
        }
        let per = start.elapsed() / n;
        println!("prepare+execute READ(10) 4 KiB: {per:?} per command");
    }
}
