//! The task set of a logical unit (SAM-5 8.5–8.9): which tasks exist, in
//! which order they arrived, when each may start (task attributes), and
//! aborting them.
//!
//! Order is the order of [`TaskSet::register`] calls, which the fabric
//! makes in command order. Rules:
//! - SIMPLE (and ACA, which is treated as SIMPLE) tasks start once every
//!   older ORDERED and HEAD OF QUEUE task has completed;
//! - ORDERED tasks start once every older task has completed;
//! - HEAD OF QUEUE tasks start at once.
//!
//! An aborted task is simply no longer in the set: its owner notices that
//! on the next check and reports `Aborted`. Nothing here waits for I/O.
//!
//! The common case (only SIMPLE tasks) takes one short mutex hold to
//! register and one to complete, with no allocation once the slab has grown
//! to the queue depth.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::api::TaskAttr;

/// One task in the set.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Arrival sequence number; 0 marks a free slot.
    seq: u64,
    nexus: u64,
    tag: u64,
    attr: TaskAttr,
    enabled: bool,
}

const FREE: Slot = Slot {
    seq: 0,
    nexus: 0,
    tag: 0,
    attr: TaskAttr::Simple,
    enabled: false,
};

#[derive(Default)]
struct Inner {
    next_seq: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Sequence numbers of active ORDERED and HEAD OF QUEUE tasks.
    barriers: Vec<u64>,
    /// Tasks registered but not yet enabled.
    waiting: usize,
}

/// Identifies a registered task to its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskHandle {
    slot: u32,
    seq: u64,
}

/// Which tasks a task management function aborts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// One task of one nexus (ABORT TASK).
    Task { nexus: u64, tag: u64 },
    /// Every task of one nexus (ABORT TASK SET, nexus loss).
    Nexus(u64),
    /// Every task (CLEAR TASK SET, LOGICAL UNIT RESET).
    All,
}

impl Scope {
    fn matches(&self, s: &Slot) -> bool {
        match *self {
            Scope::Task { nexus, tag } => s.nexus == nexus && s.tag == tag,
            Scope::Nexus(n) => s.nexus == n,
            Scope::All => true,
        }
    }
}

#[derive(Default)]
pub(crate) struct TaskSet {
    inner: Mutex<Inner>,
    /// Woken when a task leaves the set while others wait for their turn.
    order: Notify,
    /// Woken when tasks are aborted, so running tasks stop waiting.
    abort: Notify,
    /// Bumped by every abort: a task that saw the same value when it was
    /// registered cannot have been aborted (checked without the lock).
    epoch: AtomicU64,
}

impl Inner {
    fn present(&self, h: TaskHandle) -> bool {
        self.slots
            .get(h.slot as usize)
            .is_some_and(|s| s.seq == h.seq)
    }

    fn may_start(&self, seq: u64, attr: TaskAttr) -> bool {
        match attr {
            TaskAttr::HeadOfQueue => true,
            TaskAttr::Simple | TaskAttr::Aca => self.barriers.iter().all(|&b| b >= seq),
            TaskAttr::Ordered => self.slots.iter().all(|s| s.seq == 0 || s.seq >= seq),
        }
    }

    /// Remove the task in `slot`; true if others may now be able to start.
    fn remove(&mut self, slot: u32) -> bool {
        let s = std::mem::replace(&mut self.slots[slot as usize], FREE);
        self.free.push(slot);
        if !s.enabled {
            self.waiting -= 1;
        }
        if matches!(s.attr, TaskAttr::Ordered | TaskAttr::HeadOfQueue) {
            self.barriers.retain(|&b| b != s.seq);
        }
        self.waiting > 0
    }
}

impl TaskSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enter a task; returns its handle and whether it may start at once.
    pub fn register(&self, nexus: u64, tag: u64, attr: TaskAttr) -> (TaskHandle, bool) {
        let mut g = self.lock();
        g.next_seq += 1;
        let seq = g.next_seq;
        let enabled = g.may_start(seq, attr);
        if !enabled {
            g.waiting += 1;
        }
        if matches!(attr, TaskAttr::Ordered | TaskAttr::HeadOfQueue) {
            g.barriers.push(seq);
        }
        let s = Slot {
            seq,
            nexus,
            tag,
            attr,
            enabled,
        };
        let slot = match g.free.pop() {
            Some(i) => {
                g.slots[i as usize] = s;
                i
            }
            None => {
                g.slots.push(s);
                (g.slots.len() - 1) as u32
            }
        };
        (TaskHandle { slot, seq }, enabled)
    }

    /// The abort epoch (see [`TaskSet::aborted_since`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the task, registered when the epoch was `epoch`, has been
    /// aborted. Lock-free unless some abort happened since.
    pub fn aborted_since(&self, h: TaskHandle, epoch: u64) -> bool {
        self.epoch() != epoch && !self.is_present(h)
    }

    /// Wait until the task may start. False if it was aborted meanwhile.
    pub async fn wait_turn(&self, h: TaskHandle) -> bool {
        loop {
            let mut notified = pin!(self.order.notified());
            notified.as_mut().enable();
            {
                let mut g = self.lock();
                if !g.present(h) {
                    return false;
                }
                let s = g.slots[h.slot as usize];
                if s.enabled {
                    return true;
                }
                if g.may_start(s.seq, s.attr) {
                    g.slots[h.slot as usize].enabled = true;
                    g.waiting -= 1;
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Whether the task is still in the set (not aborted).
    pub fn is_present(&self, h: TaskHandle) -> bool {
        self.lock().present(h)
    }

    /// The task is done (or its owner gave up on it): leave the set. True if
    /// it was still there, false if it had been aborted.
    pub fn complete(&self, h: TaskHandle) -> bool {
        let wake = {
            let mut g = self.lock();
            if !g.present(h) {
                return false;
            }
            g.remove(h.slot)
        };
        if wake {
            self.order.notify_waiters();
        }
        true
    }

    /// Abort the tasks in `scope`. Returns the nexus of each aborted task
    /// (one entry per task). Never waits for the tasks themselves.
    pub fn abort(&self, scope: Scope) -> Vec<u64> {
        let mut aborted = Vec::new();
        {
            let mut g = self.lock();
            for i in 0..g.slots.len() {
                let s = g.slots[i];
                if s.seq != 0 && scope.matches(&s) {
                    aborted.push(s.nexus);
                    g.remove(i as u32);
                }
            }
            if !aborted.is_empty() {
                self.epoch.fetch_add(1, Ordering::Release);
            }
        }
        if !aborted.is_empty() {
            self.order.notify_waiters();
            self.abort.notify_waiters();
        }
        aborted
    }

    /// Number of tasks in the set.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().slots.iter().filter(|s| s.seq != 0).count()
    }

    /// Run `work` unless the task is aborted first; `None` when aborted.
    /// The work is dropped on abort (a blocking backstore call already
    /// handed to a worker thread finishes there, unobserved).
    pub async fn run_abortable<F: Future>(
        &self,
        h: TaskHandle,
        epoch: u64,
        work: F,
    ) -> Option<F::Output> {
        let mut work = pin!(work);
        loop {
            let mut notified = pin!(self.abort.notified());
            notified.as_mut().enable();
            // The epoch moves on every abort, so the common case needs no lock.
            if self.aborted_since(h, epoch) {
                return None;
            }
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                _ = &mut notified => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn simple_tasks_start_at_once() {
        let ts = TaskSet::default();
        let (_a, ea) = ts.register(1, 1, TaskAttr::Simple);
        let (_b, eb) = ts.register(1, 2, TaskAttr::Simple);
        assert!(ea && eb);
        assert_eq!(ts.len(), 2);
    }

    #[test]
    fn ordered_waits_for_older_and_blocks_newer() {
        let ts = TaskSet::default();
        let (a, ea) = ts.register(1, 1, TaskAttr::Simple);
        let (o, eo) = ts.register(1, 2, TaskAttr::Ordered);
        let (s, es) = ts.register(1, 3, TaskAttr::Simple);
        let (h, eh) = ts.register(1, 4, TaskAttr::HeadOfQueue);
        assert!(ea);
        assert!(!eo, "ORDERED must wait for the older SIMPLE task");
        assert!(!es, "SIMPLE must wait for the older ORDERED task");
        assert!(eh, "HEAD OF QUEUE starts at once");
        assert!(ts.complete(a));
        // Now the ORDERED task may start; the later SIMPLE still waits.
        let g = ts.lock();
        assert!(g.may_start(o.seq, TaskAttr::Ordered));
        assert!(!g.may_start(s.seq, TaskAttr::Simple));
        drop(g);
        assert!(ts.complete(h));
    }

    #[tokio::test]
    async fn ordered_task_waits_for_earlier_simple_one() {
        let ts = Arc::new(TaskSet::default());
        let (a, _) = ts.register(1, 1, TaskAttr::Simple);
        let (o, eo) = ts.register(1, 2, TaskAttr::Ordered);
        assert!(!eo);
        let ts2 = ts.clone();
        let waiter = tokio::spawn(async move { ts2.wait_turn(o).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "ORDERED started before the SIMPLE task completed"
        );
        assert!(ts.complete(a));
        let started = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(started);
        assert!(ts.complete(o));
        assert_eq!(ts.len(), 0);
    }

    #[tokio::test]
    async fn abort_wakes_waiters_and_runners() {
        let ts = Arc::new(TaskSet::default());
        let ep = ts.epoch();
        let (_a, _) = ts.register(7, 1, TaskAttr::Simple);
        let (o, _) = ts.register(7, 2, TaskAttr::Ordered);
        let ts2 = ts.clone();
        let waiter = tokio::spawn(async move { ts2.wait_turn(o).await });
        let (r, _) = ts.register(8, 1, TaskAttr::HeadOfQueue);
        let ts3 = ts.clone();
        let runner =
            tokio::spawn(
                async move { ts3.run_abortable(r, ep, std::future::pending::<()>()).await },
            );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(ts.abort(Scope::Nexus(7)), vec![7, 7]);
        assert!(!tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap());
        assert!(!runner.is_finished());
        assert_eq!(ts.abort(Scope::Task { nexus: 8, tag: 1 }), vec![8]);
        let out = tokio::time::timeout(Duration::from_secs(2), runner)
            .await
            .unwrap()
            .unwrap();
        assert!(out.is_none());
        assert!(!ts.complete(r), "an aborted task is no longer in the set");
        assert_eq!(ts.len(), 0);
    }

    #[test]
    fn slots_are_reused_and_stale_handles_rejected() {
        let ts = TaskSet::default();
        let (a, _) = ts.register(1, 1, TaskAttr::Simple);
        assert_eq!(ts.abort(Scope::All), vec![1]);
        let (b, _) = ts.register(1, 1, TaskAttr::Simple);
        assert_eq!(a.slot, b.slot);
        assert!(!ts.is_present(a));
        assert!(ts.is_present(b));
    }
}
