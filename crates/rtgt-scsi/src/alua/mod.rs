//! Asymmetric logical unit access (SPC-4 5.15), fabric-neutral.
//!
//! - `state`: the access states, what a refused command is told, and the
//!   bits of the opcode table's `alua` column (which commands each state
//!   lets through; the check itself is in `core::exec::prepare`, after
//!   unit attentions and before reservations, as in LIO).
//! - `group`: [`TargetPortGroup`], shared by its target ports.
//! - `commands`: REPORT TARGET PORT GROUPS and SET TARGET PORT GROUPS.
//!
//! Which ports reach a LU is kept on the LU ([`LuPorts`]), registered by
//! the access model when a port group starts or stops exporting it
//! ([`attach`], [`detach`]).

pub(crate) mod commands;
mod group;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

pub use group::{Cause, Change, TargetPortGroup, Tpgs};
pub use state::{AccessState, Allow};

use crate::api::TargetPort;
use crate::lu::LogicalUnit;

/// The target ports through which a LU is exported.
#[derive(Default)]
pub(crate) struct LuPorts {
    /// With the number of times each was attached (a port group may map
    /// one LU under several LUNs).
    ports: Mutex<Vec<(Arc<TargetPort>, usize)>>,
}

impl LuPorts {
    /// The ports, by relative port identifier.
    pub fn snapshot(&self) -> Vec<Arc<TargetPort>> {
        let mut v: Vec<Arc<TargetPort>> =
            lock(&self.ports).iter().map(|(p, _)| p.clone()).collect();
        v.sort_by_key(|p| p.relative_port_id);
        v
    }
}

/// Every update under the ALUA module's locks is a single assignment,
/// push or removal, so a poisoned lock still holds consistent data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `port` now exports `lu`.
pub fn attach(lu: &Arc<LogicalUnit>, port: &Arc<TargetPort>) {
    let mut ports = lock(&lu.alua_ports.ports);
    match ports.iter_mut().find(|(p, _)| Arc::ptr_eq(p, port)) {
        Some((_, n)) => *n += 1,
        None => {
            ports.push((port.clone(), 1));
            port.group.add_lu(lu);
        }
    }
}

/// `port` no longer exports `lu` (once per [`attach`]).
pub fn detach(lu: &Arc<LogicalUnit>, port: &Arc<TargetPort>) {
    let mut ports = lock(&lu.alua_ports.ports);
    if let Some(i) = ports.iter().position(|(p, _)| Arc::ptr_eq(p, port)) {
        ports[i].1 -= 1;
        if ports[i].1 == 0 {
            ports.swap_remove(i);
            port.group.remove_lu(lu);
        }
    }
}
