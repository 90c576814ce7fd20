//! Unit attention conditions (SAM-5 5.14, SPC-4 7.5.2 / 5.12), kept per
//! logical unit for each I_T nexus that sees it.
//!
//! A nexus is attached to each LU it maps when the nexus is created, with
//! POWER ON, RESET, OR BUS DEVICE RESET OCCURRED pending (the first thing
//! an initiator sees after login). Reset conditions supersede whatever was
//! queued; other conditions queue behind them (at most [`MAX_QUEUED`]). A
//! pending UA is reported, and cleared, by the next command other than
//! INQUIRY, REPORT LUNS and REQUEST SENSE (REQUEST SENSE returns it as
//! parameter data and clears it).
//!
//! The data path pays one atomic load per command while nothing is pending.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::core::sense::Sense;

/// Conditions queued per nexus beyond which new ones are dropped.
pub const MAX_QUEUED: usize = 8;

struct Entry {
    nexus: u64,
    queue: Vec<Sense>,
}

#[derive(Default)]
pub(crate) struct UnitAttentions {
    /// Total conditions queued over all nexuses (fast-path check).
    pending: AtomicUsize,
    nexuses: Mutex<Vec<Entry>>,
}

fn is_reset(s: &Sense) -> bool {
    s.asc == 0x29
}

impl UnitAttentions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.nexuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A nexus starts seeing this LU: POWER ON / RESET pending.
    pub fn attach(&self, nexus: u64, initial: Option<Sense>) {
        let mut g = self.lock();
        if g.iter().any(|e| e.nexus == nexus) {
            return;
        }
        let queue: Vec<Sense> = initial.into_iter().collect();
        self.pending.fetch_add(queue.len(), Ordering::Relaxed);
        g.push(Entry { nexus, queue });
    }

    /// The nexus is gone.
    pub fn detach(&self, nexus: u64) {
        let mut g = self.lock();
        if let Some(i) = g.iter().position(|e| e.nexus == nexus) {
            let e = g.swap_remove(i);
            self.pending.fetch_sub(e.queue.len(), Ordering::Relaxed);
        }
    }

    /// Establish `ua` for every attached nexus for which `select` is true.
    pub fn establish(&self, ua: Sense, select: impl Fn(u64) -> bool) {
        let mut g = self.lock();
        for e in g.iter_mut().filter(|e| select(e.nexus)) {
            let before = e.queue.len();
            if is_reset(&ua) {
                e.queue.clear();
                e.queue.push(ua);
            } else if !e.queue.contains(&ua) && e.queue.len() < MAX_QUEUED {
                e.queue.push(ua);
            }
            let after = e.queue.len();
            if after > before {
                self.pending.fetch_add(after - before, Ordering::Relaxed);
            } else {
                self.pending.fetch_sub(before - after, Ordering::Relaxed);
            }
        }
    }

    /// Report and clear the oldest condition pending for `nexus`.
    pub fn take(&self, nexus: u64) -> Option<Sense> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut g = self.lock();
        let e = g.iter_mut().find(|e| e.nexus == nexus)?;
        if e.queue.is_empty() {
            return None;
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Some(e.queue.remove(0))
    }

    /// Conditions pending for `nexus` (tests).
    #[cfg(test)]
    pub fn pending_for(&self, nexus: u64) -> Vec<Sense> {
        self.lock()
            .iter()
            .find(|e| e.nexus == nexus)
            .map(|e| e.queue.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sense::*;

    #[test]
    fn lifecycle() {
        let ua = UnitAttentions::default();
        ua.attach(1, Some(UA_POWER_ON_RESET));
        ua.attach(2, Some(UA_POWER_ON_RESET));
        ua.attach(2, Some(UA_POWER_ON_RESET)); // idempotent
        assert_eq!(ua.take(1), Some(UA_POWER_ON_RESET));
        assert_eq!(ua.take(1), None);
        // Mode parameters changed for everyone but nexus 2.
        ua.establish(UA_MODE_PARAMETERS_CHANGED, |n| n != 2);
        assert_eq!(ua.pending_for(1), vec![UA_MODE_PARAMETERS_CHANGED]);
        assert_eq!(ua.pending_for(2), vec![UA_POWER_ON_RESET]);
        // A reset supersedes what was queued.
        ua.establish(UA_LUN_RESET, |_| true);
        assert_eq!(ua.pending_for(1), vec![UA_LUN_RESET]);
        assert_eq!(ua.pending_for(2), vec![UA_LUN_RESET]);
        // Duplicates are not queued twice.
        ua.establish(UA_MODE_PARAMETERS_CHANGED, |_| true);
        ua.establish(UA_MODE_PARAMETERS_CHANGED, |_| true);
        assert_eq!(
            ua.pending_for(1),
            vec![UA_LUN_RESET, UA_MODE_PARAMETERS_CHANGED]
        );
        ua.detach(2);
        assert_eq!(ua.take(2), None);
        assert_eq!(ua.take(1), Some(UA_LUN_RESET));
        assert_eq!(ua.take(1), Some(UA_MODE_PARAMETERS_CHANGED));
        assert_eq!(ua.take(1), None);
        assert_eq!(ua.pending.load(Ordering::Relaxed), 0);
    }
}
