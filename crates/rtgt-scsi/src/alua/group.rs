//! A target port group (SPC-4 5.15.2.1): target ports that share one
//! asymmetric access state. The group is shared by its ports (each
//! [`TargetPort`](crate::TargetPort) holds it), so the state check of every
//! command is one atomic load.
//!
//! The group knows the LUs its ports export (registered by the access
//! model through [`super::attach`]) so that a change of its state reaches
//! every I_T nexus of those LUs with ASYMMETRIC ACCESS STATE CHANGED.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::{lock, AccessState};
use crate::core::sense;
use crate::lu::LogicalUnit;

/// What INQUIRY's TPGS field offers (SPC-4 6.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tpgs {
    /// 01b: the target changes states itself (and through its management);
    /// SET TARGET PORT GROUPS is not supported.
    #[default]
    Implicit,
    /// 10b: only SET TARGET PORT GROUPS changes states.
    Explicit,
    /// 11b: both.
    Both,
}

impl Tpgs {
    /// The TPGS field, in place in INQUIRY byte 5.
    pub const fn inquiry_bits(self) -> u8 {
        match self {
            Tpgs::Implicit => 0x10,
            Tpgs::Explicit => 0x20,
            Tpgs::Both => 0x30,
        }
    }

    pub const fn explicit(self) -> bool {
        matches!(self, Tpgs::Explicit | Tpgs::Both)
    }
}

/// Who changed the state last (STATUS CODE of REPORT TARGET PORT GROUPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SET TARGET PORT GROUPS from an initiator (the nexus that sent it).
    Explicit { nexus: u64 },
    /// The target itself: its management, a failover, a configuration.
    Implicit,
}

/// A state the group was asked to take (what a watcher of the group sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub state: AccessState,
    pub cause: Cause,
}

/// One target port group.
pub struct TargetPortGroup {
    id: u16,
    /// The state commands see now (Transitioning during a transition).
    state: AtomicU8,
    /// The state asked for last (what is persisted).
    wanted: AtomicU8,
    preferred: AtomicBool,
    /// STATUS CODE: 0 none, 1 altered by SET TARGET PORT GROUPS, 2 altered
    /// by implicit behaviour.
    status: AtomicU8,
    tpgs: Mutex<Tpgs>,
    /// How long a change spends in Transitioning.
    transition: Mutex<Duration>,
    /// Bumped by every change: a delayed end of transition that finds it
    /// moved on does nothing.
    generation: AtomicU64,
    /// The LUs its ports export, with the number of ports exporting each.
    lus: Mutex<Vec<(Weak<LogicalUnit>, usize)>>,
    changes: watch::Sender<Change>,
}

impl std::fmt::Debug for TargetPortGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetPortGroup")
            .field("id", &self.id)
            .field("state", &self.state())
            .field("preferred", &self.preferred())
            .finish()
    }
}

impl TargetPortGroup {
    pub fn new(id: u16, state: AccessState, preferred: bool) -> Arc<TargetPortGroup> {
        Arc::new(TargetPortGroup {
            id,
            state: AtomicU8::new(state.code()),
            wanted: AtomicU8::new(state.code()),
            preferred: AtomicBool::new(preferred),
            status: AtomicU8::new(0),
            tpgs: Mutex::new(Tpgs::default()),
            transition: Mutex::new(Duration::ZERO),
            generation: AtomicU64::new(0),
            lus: Mutex::new(Vec::new()),
            changes: watch::Sender::new(Change {
                state,
                cause: Cause::Implicit,
            }),
        })
    }

    /// TARGET PORT GROUP (the identifier in VPD 83h and REPORT TARGET PORT
    /// GROUPS).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The state commands see now.
    pub fn state(&self) -> AccessState {
        AccessState::from_code(self.state.load(Ordering::Acquire))
            .unwrap_or(AccessState::Transitioning)
    }

    /// The state the group is in or moving to.
    pub fn wanted(&self) -> AccessState {
        AccessState::from_code(self.wanted.load(Ordering::Acquire))
            .unwrap_or(AccessState::ActiveOptimized)
    }

    pub fn preferred(&self) -> bool {
        self.preferred.load(Ordering::Relaxed)
    }

    pub fn set_preferred(&self, p: bool) {
        self.preferred.store(p, Ordering::Relaxed);
    }

    pub(crate) fn status_code(&self) -> u8 {
        self.status.load(Ordering::Relaxed)
    }

    pub fn tpgs(&self) -> Tpgs {
        *lock(&self.tpgs)
    }

    pub fn set_tpgs(&self, t: Tpgs) {
        *lock(&self.tpgs) = t;
    }

    /// How long a change spends in Transitioning (0: none).
    pub fn transition_time(&self) -> Duration {
        *lock(&self.transition)
    }

    pub fn set_transition_time(&self, d: Duration) {
        *lock(&self.transition) = d;
    }

    /// Every change asked of the group, as it is asked (the daemon persists
    /// what SET TARGET PORT GROUPS did through this).
    pub fn subscribe(&self) -> watch::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Move the group to `to`. With a transition time the group is in
    /// Transitioning meanwhile (commands get ASYMMETRIC ACCESS STATE
    /// TRANSITION); at the end every I_T nexus of its LUs gets ASYMMETRIC
    /// ACCESS STATE CHANGED, except the one that asked by SET TARGET PORT
    /// GROUPS (SPC-4 5.15.2.3). Asking for the state it is in or moving to
    /// does nothing. Transitioning itself cannot be asked for (it is
    /// ignored).
    pub fn set_state(self: &Arc<Self>, to: AccessState, cause: Cause) {
        if to == AccessState::Transitioning || self.wanted() == to {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.wanted.store(to.code(), Ordering::Release);
        self.status.store(
            match cause {
                Cause::Explicit { .. } => 1,
                Cause::Implicit => 2,
            },
            Ordering::Relaxed,
        );
        self.changes.send_replace(Change { state: to, cause });
        let delay = self.transition_time();
        let handle = tokio::runtime::Handle::try_current();
        match handle {
            Ok(h) if !delay.is_zero() => {
                self.state
                    .store(AccessState::Transitioning.code(), Ordering::Release);
                let me = self.clone();
                h.spawn(async move {
                    tokio::time::sleep(delay).await;
                    me.finish(generation, to, cause);
                });
            }
            _ => self.finish(generation, to, cause),
        }
    }

    fn finish(&self, generation: u64, to: AccessState, cause: Cause) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.state.store(to.code(), Ordering::Release);
        let except = match cause {
            Cause::Explicit { nexus } => Some(nexus),
            Cause::Implicit => None,
        };
        tracing::info!(group = self.id, state = %to, ?cause, "ALUA access state changed");
        for lu in self.lus() {
            lu.ua
                .establish(sense::UA_ASYMMETRIC_ACCESS_STATE_CHANGED, |n| {
                    Some(n) != except
                });
        }
    }

    /// Put the group in `s` at once, whatever it is (tests).
    #[cfg(test)]
    pub(crate) fn force(&self, s: AccessState) {
        self.state.store(s.code(), Ordering::Release);
        self.wanted.store(s.code(), Ordering::Release);
    }

    /// The LUs exported through the group's ports.
    pub(crate) fn lus(&self) -> Vec<Arc<LogicalUnit>> {
        let mut g = lock(&self.lus);
        g.retain(|(w, _)| w.strong_count() > 0);
        g.iter().filter_map(|(w, _)| w.upgrade()).collect()
    }

    pub(crate) fn add_lu(&self, lu: &Arc<LogicalUnit>) {
        let mut g = lock(&self.lus);
        match g
            .iter_mut()
            .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(lu)))
        {
            Some((_, n)) => *n += 1,
            None => g.push((Arc::downgrade(lu), 1)),
        }
    }

    pub(crate) fn remove_lu(&self, lu: &Arc<LogicalUnit>) {
        let mut g = lock(&self.lus);
        if let Some(i) = g
            .iter()
            .position(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(lu)))
        {
            g[i].1 -= 1;
            if g[i].1 == 0 {
                g.swap_remove(i);
            }
        }
    }
}
