//! One runtime per core.
//!
//! Each shard is a thread running a current-thread tokio runtime, pinned to
//! one CPU when there is a shard for every CPU the process may use. A
//! connection is handed to the shard with the fewest connections when it is
//! accepted and stays there: its reader, its commands, its writer and the
//! RAM-disk I/O it does all run on that one thread, so a command never
//! crosses cores and no work-stealing scheduler moves it. Each shard has its
//! own slice of the data budget, so the budget is no counter shared between
//! cores either.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::budget::Budget;

/// The shards connections run on.
pub struct Shards {
    shards: Vec<Shard>,
}

struct Shard {
    handle: Handle,
    /// Connections on it now.
    load: Arc<AtomicUsize>,
    budget: Arc<Budget>,
    /// Dropped with the shards: the runtime's thread then ends.
    _stop: oneshot::Sender<()>,
}

/// Where a connection was placed; dropping it counts the connection gone.
pub struct Placement {
    load: Arc<AtomicUsize>,
    /// The data budget of the connection's shard.
    pub budget: Arc<Budget>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shards {
    /// Start `n` shards (at least one) sharing `budget_bytes` of data
    /// budget equally, each busy-polling for `busy_poll` after traffic
    /// (see [`crate::busy_poll`]).
    pub fn start(n: usize, budget_bytes: u64, busy_poll: Duration) -> io::Result<Shards> {
        let n = n.max(1);
        let cpus = allowed_cpus();
        // Pin only when every shard can have a CPU of its own; otherwise
        // let the kernel place the threads.
        let pin = cpus.len() >= n;
        let mut shards = Vec::with_capacity(n);
        for i in 0..n {
            let cpu = if pin { cpus.get(i).copied() } else { None };
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("rtgt-shard-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let rt = match rt {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    // Drives every task spawned on this shard until the
                    // shards are dropped.
                    let _ = rt.block_on(async move {
                        crate::busy_poll::start(busy_poll);
                        stopped.await
                    });
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("shard thread ended before its runtime started"))??;
            shards.push(Shard {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                budget: Budget::new(budget_bytes / n as u64),
                _stop: stop,
            });
        }
        Ok(Shards { shards })
    }

    /// The shards' runtimes, in order (another fabric spreads its queues
    /// over them: queue `i` on runtime `i % n`).
    pub fn runtimes(&self) -> Vec<Handle> {
        self.shards.iter().map(|s| s.handle.clone()).collect()
    }

    /// Run the future `make` builds on the least loaded shard. `make` runs
    /// there, when the shard first polls the task, so what it registers
    /// with a reactor (the connection's socket) lands on the shard's.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce(Placement) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.load.load(Ordering::Acquire))
        else {
            return;
        };
        shard.load.fetch_add(1, Ordering::AcqRel);
        let placement = Placement {
            load: shard.load.clone(),
            budget: shard.budget.clone(),
        };
        shard.handle.spawn(async move { make(placement).await });
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most
    // size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pin the calling thread to `cpu` (best effort: a failure only costs
/// locality).
fn pin_to(cpu: usize) {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes inside the set for any
    // cpu < CPU_SETSIZE, which `allowed_cpus` guarantees.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
