//! Blocking backstore calls in flight for an LU's commands, so that task
//! management can wait for those an abort left running.
//!
//! An aborted command's future is dropped at once, but a read or write it
//! already handed to a worker thread goes on there. Were ABORT TASK (or a
//! reset, or a nexus loss) answered before that call returned, a WRITE the
//! initiator believes gone could still land, over data written after it.
//! So every blocking call of a command enters the fence of the LU the
//! command was issued to, and task management waits past it: it flips the
//! fence's phase and waits until no call of the old phase is left. A call
//! that enters after the flip sees its task aborted (the abort happened
//! before the flip) and never starts.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

#[derive(Debug, Default)]
pub(crate) struct Fence {
    phase: AtomicUsize,
    counts: [AtomicUsize; 2],
    drained: Notify,
    /// One waiter flips at a time (two flips would reuse the old phase).
    flip: Mutex<()>,
}

/// A call in flight; leaving on drop.
#[derive(Debug)]
pub(crate) struct Entered {
    fence: Arc<Fence>,
    phase: usize,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.fence.counts[self.phase].fetch_sub(1, SeqCst) == 1 {
            self.fence.drained.notify_waiters();
        }
    }
}

impl Fence {
    /// Enter the current phase. The caller checks afterwards whether its
    /// task was aborted, and drops the guard without calling if so.
    pub fn enter(self: &Arc<Self>) -> Entered {
        loop {
            let p = self.phase.load(SeqCst) & 1;
            self.counts[p].fetch_add(1, SeqCst);
            if self.phase.load(SeqCst) & 1 == p {
                return Entered {
                    fence: self.clone(),
                    phase: p,
                };
            }
            // Flipped meanwhile: count in the new phase instead.
            if self.counts[p].fetch_sub(1, SeqCst) == 1 {
                self.drained.notify_waiters();
            }
        }
    }

    /// Wait until every call that entered before now has left.
    pub async fn wait_past(&self) {
        let _one = self.flip.lock().await;
        let old = self.phase.fetch_add(1, SeqCst) & 1;
        loop {
            let drained = self.drained.notified();
            if self.counts[old].load(SeqCst) == 0 {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_calls_entered_before_only() {
        let f = Arc::new(Fence::default());
        let before = f.enter();
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.wait_past().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A call entering after the flip does not hold the waiter up.
        let after = f.enter();
        assert!(
            !waiter.is_finished(),
            "must wait for the call entered before"
        );
        drop(before);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released once the old call left")
            .unwrap();
        // And the next wait covers `after`.
        let f3 = f.clone();
        let waiter = tokio::spawn(async move { f3.wait_past().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(after);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
