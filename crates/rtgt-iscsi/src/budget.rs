//! The process-wide budget of memory for command data: every READ and
//! WRITE is charged for the bytes it moves before it enters a task set,
//! and the charge is given back when its Data-In is on the wire (READ) or
//! it has completed (WRITE). When the budget is spent, readers stop taking
//! new commands until data drains, so however many sessions and however
//! deep their windows, the data in flight stays under the budget.
//!
//! Charging before the task set matters: a command waiting for budget is
//! in no task set, so it cannot hold up commands that hold budget (an
//! ORDERED one there would otherwise wait for it, and it for them).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget accounting unit.
const UNIT: u64 = 4096;

#[derive(Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    units: u32,
}

/// A command's share of the budget, returned when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    /// Held only to be dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// A budget of `bytes` (at least one 8 MiB command's worth).
    pub fn new(bytes: u64) -> Arc<Budget> {
        let units = (bytes / UNIT).clamp(2048, Semaphore::MAX_PERMITS as u64) as u32;
        Arc::new(Budget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        })
    }

    /// Wait until `bytes` fit, and take them (a command larger than the
    /// whole budget takes all of it).
    pub async fn charge(&self, bytes: u64) -> Charge {
        if bytes == 0 {
            return Charge::default();
        }
        let n = bytes.div_ceil(UNIT).min(self.units as u64) as u32;
        // The semaphore is never closed.
        Charge {
            _permit: self.sem.clone().acquire_many_owned(n).await.ok(),
        }
    }

    /// Bytes not charged right now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn charges_wait_for_the_budget_and_give_it_back() {
        let b = Budget::new(16 << 20);
        let first = b.charge(12 << 20).await;
        assert_eq!(b.available(), 4 << 20);
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.charge(8 << 20).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "over budget: must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("charged once the first is back")
            .unwrap();
        assert_eq!(b.available(), 8 << 20);
        drop(second);
        assert_eq!(b.available(), 16 << 20);
        // Larger than the budget: takes all of it rather than never.
        let all = b.charge(1 << 40).await;
        assert_eq!(b.available(), 0);
        drop(all);
        let none = b.charge(0).await;
        assert_eq!(b.available(), 16 << 20);
        drop(none);
    }
}
