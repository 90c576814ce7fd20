//! Adaptive busy polling: a runtime thread that has just carried traffic
//! stays awake a little longer instead of sleeping in epoll.
//!
//! At queue depth 1 an initiator sends its next command a few tens of
//! microseconds after our reply. A thread that went to sleep in between
//! pays the CPU's wake-up from idle first (on virtual machines tens of
//! microseconds, as much as the rest of the round trip). So after each PDU
//! a connection receives, its runtime keeps polling its sockets without
//! blocking for the configured window (100 µs by default), the way the
//! kernel's `net.core.busy_poll` does for NIC queues. The cost is bounded:
//! at most one window of CPU per burst of traffic, nothing at all on an
//! idle target; under load the thread never sleeps anyway.
//!
//! How: a task per runtime yields in a loop while the window is open,
//! giving the CPU to any other runnable thread each time round
//! (`sched_yield`), so the spinning takes no CPU time another process on
//! the same core wants.
//! A yielding task makes tokio's current-thread scheduler poll the I/O
//! driver with a zero timeout instead of blocking, so readiness is noticed
//! at once and the thread stays out of the idle state.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

struct Poller {
    /// Start of this thread's clock.
    origin: Instant,
    /// When the window closes, in nanoseconds since `origin`.
    until: AtomicU64,
    window: u64,
    /// The polling task sleeps until traffic comes.
    sleeping: AtomicBool,
    wake: Notify,
}

thread_local! {
    static POLLER: RefCell<Option<Arc<Poller>>> = const { RefCell::new(None) };
}

/// Busy-poll this runtime thread for `window` after traffic; must be
/// called on the thread of a current-thread runtime, inside it. Does
/// nothing for a zero window or when already started on this thread.
pub fn start(window: Duration) {
    if window.is_zero() {
        return;
    }
    let poller = POLLER.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_some() {
            return None;
        }
        let poller = Arc::new(Poller {
            origin: Instant::now(),
            until: AtomicU64::new(0),
            window: window.as_nanos().min(u64::MAX as u128) as u64,
            sleeping: AtomicBool::new(false),
            wake: Notify::new(),
        });
        *p = Some(poller.clone());
        Some(poller)
    });
    if let Some(p) = poller {
        tokio::spawn(spin(p));
    }
}

/// Traffic on this thread: keep it awake for another window.
pub fn activity() {
    POLLER.with(|p| {
        if let Some(p) = p.borrow().as_ref() {
            let now = p.origin.elapsed().as_nanos() as u64;
            p.until.store(now + p.window, Ordering::Relaxed);
            if p.sleeping.swap(false, Ordering::AcqRel) {
                p.wake.notify_one();
            }
        }
    });
}

async fn spin(p: Arc<Poller>) {
    loop {
        let now = p.origin.elapsed().as_nanos() as u64;
        if now < p.until.load(Ordering::Relaxed) {
            // Polite spinning: another process that wants this CPU (a
            // load generator, a VM) gets it at once; with none, this
            // returns immediately.
            std::thread::yield_now();
            rtgt_scsi::poll_io_completions();
            tokio::task::yield_now().await;
            continue;
        }
        // Window closed: sleep until `activity` says otherwise. Register
        // before announcing, so a wake in between is not lost.
        let notified = p.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        p.sleeping.store(true, Ordering::Release);
        if p.origin.elapsed().as_nanos() as u64 >= p.until.load(Ordering::Relaxed) {
            notified.await;
        } else {
            p.sleeping.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_on_activity_and_closes_by_itself() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            start(Duration::from_millis(20));
            tokio::task::yield_now().await;
            let p = POLLER.with(|p| p.borrow().clone()).expect("started");
            // Idle: the task sleeps.
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(p.sleeping.load(Ordering::Acquire));
            activity();
            assert!(!p.sleeping.load(Ordering::Acquire), "woken by traffic");
            // Within the window it keeps the thread busy (never sleeping).
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(!p.sleeping.load(Ordering::Acquire));
            // After it, asleep again.
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert!(p.sleeping.load(Ordering::Acquire));
        });
    }
}
