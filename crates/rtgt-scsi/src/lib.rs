//! rtgt's SCSI core: logical units, the SPC-4 / SBC-4 command set, sense
//! data, unit attentions, task sets and the fabric API.
//!
//! A fabric (iSCSI today) talks to the core only through [`api`]:
//! it creates a [`api::Nexus`] per I_T nexus, turns each received command
//! into a [`api::Command`], calls [`api::Nexus::prepare`] (which answers
//! at once when the command can be refused before any data moves, and
//! otherwise tells how many Data-Out bytes the command needs), then awaits
//! [`api::Prepared::execute`]. Task management goes through the same
//! nexus. Nothing here knows about sockets, PDUs or iSCSI.
//!
//! Inside, one folder per layer (a module imports downwards where it can):
//! - `api`: the fabric API ([`api`], also reachable as [`fabric`]):
//!   commands and responses, the nexus and its LUN map, task management,
//!   LUN encoding.
//! - `core`: the handler contract (`core::handler`: decode and execute
//!   contexts, plans, actions, flags), THE opcode table (`core::opcodes`:
//!   decoder, CDB usage mask and flags per opcode / service action; the one
//!   file that names every handler; it drives the reserved-bit check),
//!   prepare / execute / task management and the nexus lifecycle
//!   (`core::exec`), CDB field decoding (`core::cdb`) and sense data, fixed
//!   and descriptor format ([`sense`]).
//! - `lu`: the logical unit ([`lu`]), its task set (task attributes and
//!   aborts), range locks, unit attentions per nexus, and the
//!   [`state_store`] persistent state goes to.
//! - `access`: targets, port groups, node ACLs, mapped LUNs, auth settings.
//! - `alua`: target port groups and their asymmetric access states, REPORT
//!   and SET TARGET PORT GROUPS.
//! - `spc`: INQUIRY + VPD, MODE, REPORT LUNS, REPORT SUPPORTED OPERATION
//!   CODES, REQUEST SENSE, TEST UNIT READY / START STOP UNIT (removable
//!   medium).
//! - `sbc`: READ / WRITE / VERIFY, atomics, thin provisioning, capacity,
//!   SANITIZE, READ DEFECT DATA.
//! - `pr`: SPC-2 and persistent reservations, their store, TransportIDs.
//! - `xcopy`: EXTENDED COPY and RECEIVE COPY RESULTS.
//!
//! Task attribute ACA is treated as SIMPLE (NACA is not supported, so no
//! ACA condition ever exists). Aborted tasks get no response (TAS=0).

pub mod access;
pub mod alua;
pub mod api;
mod core;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod lu;
mod pr;
mod sbc;
mod spc;
#[cfg(test)]
mod testutil;
mod xcopy;

pub use crate::core::sense;
/// The fabric API under its former name.
pub use api as fabric;
pub use lu::state_store;

pub use api::{
    Cdb, Command, DataDirection, ExecOutcome, LunMap, MappedLun, Nexus, Prepared, Response,
    TargetPort, TaskAttr, TmfFunction, TmfResult,
};
pub use lu::{LogicalUnit, LuConfig, LuError, Naa};
pub use pr::pr_store::PrStateError;
pub use pr::shared::{MemorySharedPr, SharedPrStore};
/// The largest transfer one command may ask for (VPD B0h), in bytes.
pub use rtgt_backstore::IoBuf;

/// Collect completed backstore I/O on this thread now (for a fabric's busy
/// polling; completions arrive by themselves otherwise).
pub fn poll_io_completions() {
    rtgt_backstore::uring::reap_here();
}
pub use sense::Sense;
pub use spc::vpd::MAX_TRANSFER_BYTES;
pub use state_store::{MemoryStore, StateStore};
