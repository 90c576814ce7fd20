//! Per-LU LBA range locks: what makes COMPARE AND WRITE, ORWRITE, WRITE
//! ATOMIC and the destination side of EXTENDED COPY atomic against every
//! other write to the same blocks.
//!
//! Ordinary writes take a *shared* lock on their range (they may overlap
//! each other, as SCSI allows); the read-modify-write and atomic commands
//! take an *exclusive* one. A request is granted once no earlier request
//! (granted or still waiting) on an overlapping range conflicts with it,
//! so exclusive requests are not starved by a stream of writes.
//!
//! The common case, writes with nothing exclusive around, costs one short
//! mutex hold to enter the list and one to leave it; the list holds only
//! the commands in flight, so it stays short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    start: u64,
    /// Exclusive end.
    end: u64,
    exclusive: bool,
}

impl Entry {
    fn conflicts(&self, other: &Entry) -> bool {
        (self.exclusive || other.exclusive) && self.start < other.end && other.start < self.end
    }
}

#[derive(Default)]
pub(crate) struct RangeLock {
    /// Requests in arrival order, granted or waiting.
    entries: Mutex<Vec<Entry>>,
    /// Woken whenever a request leaves.
    released: Notify,
    next_id: AtomicU64,
}

/// A held range; dropping it releases the range.
pub(crate) struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    /// Lock `blocks` blocks from `lba` for a write that may overlap other
    /// writes.
    pub async fn shared(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        self.acquire(lba, blocks, false).await
    }

    /// Lock `blocks` blocks from `lba` against every other locked write.
    pub async fn exclusive(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        self.acquire(lba, blocks, true).await
    }

    async fn acquire(&self, lba: u64, blocks: u64, exclusive: bool) -> RangeGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let me = Entry {
            id,
            start: lba,
            end: lba.saturating_add(blocks.max(1)),
            exclusive,
        };
        let guard = RangeGuard { lock: self, id };
        {
            let mut e = self.lock_entries();
            let free = !e.iter().any(|o| o.conflicts(&me));
            e.push(me);
            if free {
                return guard;
            }
        }
        // Wait until every earlier conflicting request has left. The guard
        // is live already: if this future is dropped, the request leaves.
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.grantable(id) {
                return guard;
            }
            notified.await;
        }
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No request before `id` conflicts with it.
    fn grantable(&self, id: u64) -> bool {
        let e = self.lock_entries();
        let Some(pos) = e.iter().position(|x| x.id == id) else {
            return true;
        };
        let me = e[pos];
        !e[..pos].iter().any(|o| o.conflicts(&me))
    }

    /// Requests currently in the list (granted or waiting).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock_entries().len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut e = self.lock.lock_entries();
        // Someone can only be waiting on a conflict, and a conflict needs an
        // exclusive holder on one side: shared-only lists wake nobody.
        let mut waiters = false;
        if let Some(pos) = e.iter().position(|x| x.id == self.id) {
            let gone = e.remove(pos);
            waiters = gone.exclusive || e.iter().any(|x| x.exclusive);
        }
        drop(e);
        if waiters {
            self.lock.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn shared_ranges_overlap_exclusive_ones_wait() {
        let l = Arc::new(RangeLock::default());
        let a = l.shared(0, 10).await;
        let b = l.shared(5, 10).await;
        assert_eq!(l.len(), 2);
        // A non-overlapping exclusive lock is granted at once.
        let c = l.exclusive(100, 1).await;
        drop(c);
        // An overlapping exclusive lock waits for both shared holders.
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.exclusive(8, 1).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "b still overlaps");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("granted once the writes left")
            .unwrap();
        assert_eq!(l.len(), 0);
    }

    #[tokio::test]
    async fn later_writes_queue_behind_a_waiting_exclusive_request() {
        let l = Arc::new(RangeLock::default());
        let first = l.shared(0, 4).await;
        let l2 = l.clone();
        let ex = tokio::spawn(async move {
            let _g = l2.exclusive(0, 4).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A new write to the same blocks must not overtake the waiting
        // exclusive request.
        let l3 = l.clone();
        let late = tokio::spawn(async move {
            let _g = l3.shared(2, 1).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!late.is_finished());
        drop(first);
        ex.await.unwrap();
        late.await.unwrap();
        assert_eq!(l.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_list() {
        let l = RangeLock::default();
        let g = l.exclusive(0, 1).await;
        let r = tokio::time::timeout(Duration::from_millis(10), l.exclusive(0, 1)).await;
        assert!(r.is_err());
        assert_eq!(l.len(), 1);
        drop(g);
        assert_eq!(l.len(), 0);
        let _again = l.exclusive(0, 1).await;
    }
}
