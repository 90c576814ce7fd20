//! The session's command window (RFC 7143 3.2.2.1), stamped into every
//! outgoing PDU.
//!
//! MaxCmdSN is ExpCmdSN - 1 + (depth - outstanding). A non-immediate
//! command is admitted only with CmdSN = ExpCmdSN and while the window has
//! room; it then holds a [`Slot`] until it leaves the session, whatever
//! ends it (completion, abort, any task management, a reject, connection
//! loss, logout): the slot gives its place back when it is dropped, so the
//! window cannot leak by a path that forgot to count. Other non-immediate
//! PDUs (NOP-Out, task management, Text, Logout) take their CmdSN but hold
//! no slot.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Window {
    exp_cmdsn: AtomicU32,
    /// Slots alive: non-immediate commands received and not yet ended.
    outstanding: AtomicU32,
    depth: u32,
}

/// A place in the window, held by one command until it is dropped.
#[derive(Debug)]
pub struct Slot(Arc<Window>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What admission decided about a PDU.
#[derive(Debug)]
pub enum Admit {
    /// Immediate: outside command numbering.
    Immediate,
    /// In order and in the window; a command holds its slot.
    InOrder(Option<Slot>),
    /// Outside the window (RFC 7143: silently ignored).
    Ignore,
}

impl Window {
    pub fn new(exp_cmdsn: u32, depth: u32) -> Arc<Self> {
        Arc::new(Window {
            exp_cmdsn: AtomicU32::new(exp_cmdsn),
            outstanding: AtomicU32::new(0),
            depth: depth.max(1),
        })
    }

    pub fn exp_cmdsn(&self) -> u32 {
        self.exp_cmdsn.load(Ordering::Acquire)
    }

    pub fn max_cmdsn(&self) -> u32 {
        let out = self.outstanding().min(self.depth);
        self.exp_cmdsn()
            .wrapping_add(self.depth - out)
            .wrapping_sub(1)
    }

    /// Commands holding a slot.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Acquire)
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Admit a PDU carrying `cmdsn`: one the reader is processing now
    /// (called from the connection's reader only, so ExpCmdSN has a single
    /// writer). `holds_slot` for SCSI commands, which stay in the window
    /// until they end.
    pub fn admit(self: &Arc<Self>, cmdsn: u32, immediate: bool, holds_slot: bool) -> Admit {
        if immediate {
            return Admit::Immediate;
        }
        let exp = self.exp_cmdsn();
        // The window is [ExpCmdSN, MaxCmdSN]; MaxCmdSN = ExpCmdSN - 1 means
        // it is closed. Commands are processed in order, so only ExpCmdSN
        // itself can be taken now.
        if cmdsn != exp || self.outstanding() >= self.depth {
            return Admit::Ignore;
        }
        let slot = holds_slot.then(|| {
            self.outstanding.fetch_add(1, Ordering::AcqRel);
            Slot(self.clone())
        });
        self.exp_cmdsn.store(exp.wrapping_add(1), Ordering::Release);
        Admit::InOrder(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random interleavings of admissions (in order, out of order,
    /// immediate, past MaxCmdSN) and endings in any order: after every step
    /// the window's count is exactly the commands alive, MaxCmdSN never
    /// moves back, and a full window admits nothing.
    #[test]
    fn slots_are_the_window() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let depth = 1 + (round % 9) as u32;
            let start = (u32::MAX - 5).wrapping_add(round as u32); // wraps during the test
            let w = Window::new(start, depth);
            let mut alive: Vec<Slot> = Vec::new();
            let mut last_max = w.max_cmdsn();
            for _ in 0..500 {
                let exp = w.exp_cmdsn();
                match rnd() % 6 {
                    0 | 1 => {
                        let full = alive.len() as u32 >= depth;
                        match w.admit(exp, false, true) {
                            Admit::InOrder(Some(s)) => {
                                assert!(!full, "admitted past MaxCmdSN");
                                alive.push(s);
                            }
                            Admit::Ignore => assert!(full, "refused with room"),
                            other => panic!("{other:?}"),
                        }
                    }
                    2 => {
                        let off = 1 + (rnd() % 4) as u32;
                        let sn = if rnd() % 2 == 0 {
                            exp.wrapping_add(off)
                        } else {
                            exp.wrapping_sub(off)
                        };
                        assert!(matches!(w.admit(sn, false, true), Admit::Ignore));
                        assert_eq!(w.exp_cmdsn(), exp);
                    }
                    3 => {
                        assert!(matches!(
                            w.admit(exp.wrapping_add(7), true, true),
                            Admit::Immediate
                        ));
                    }
                    4 if !alive.is_empty() => {
                        let i = (rnd() % alive.len() as u64) as usize;
                        drop(alive.swap_remove(i));
                    }
                    _ => {
                        // A NOP-Out / TMF: takes its CmdSN, holds nothing.
                        let full = alive.len() as u32 >= depth;
                        let r = w.admit(exp, false, false);
                        assert_eq!(matches!(r, Admit::InOrder(None)), !full);
                    }
                }
                assert_eq!(w.outstanding(), alive.len() as u32);
                let max = w.max_cmdsn();
                assert!(!crate::wire::sn_lt(max, last_max), "MaxCmdSN moved back");
                assert_eq!(
                    max.wrapping_sub(w.exp_cmdsn()).wrapping_add(1),
                    depth - alive.len() as u32
                );
                last_max = max;
            }
            drop(alive);
            assert_eq!(w.outstanding(), 0);
        }
    }
}
