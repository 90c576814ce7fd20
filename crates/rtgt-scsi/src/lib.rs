//! rtgt's SCSI core: logical units, the SPC-4 / SBC-4 command set, sense
//! data, unit attentions, task sets and the fabric API.
//!
//! A fabric (iSCSI today) talks to the core only through [`fabric`]:
//! it creates a [`fabric::Nexus`] per I_T nexus, turns each received command
//! into a [`fabric::Command`], calls [`fabric::Nexus::prepare`] (which answers
//! at once when the command can be refused before any data moves, and
//! otherwise tells how many Data-Out bytes the command needs), then awaits
//! [`fabric::Prepared::execute`]. Task management goes through the same
//! nexus. Nothing here knows about sockets, PDUs or iSCSI.
//!
//! Inside, one module per job:
//! - `opcodes`: THE opcode table (decoder, CDB usage mask, flags per
//!   opcode / service action); dispatches commands, drives the reserved-bit
//!   check and answers REPORT SUPPORTED OPERATION CODES (`report_opcodes`).
//! - `cdb`: CDB field decoding and the reserved-bit check.
//! - `sense`: sense data, fixed and descriptor format.
//! - command handlers: `inquiry` + `vpd`, `mode`, `capacity`,
//!   `read_write`, `report_luns`, `request_sense`, `readiness` (removable
//!   medium), `sanitize`, `defect` (READ DEFECT DATA).
//! - `task_set`: task attributes and aborts per LU; `unit_attention`:
//!   unit attentions per LU per nexus; `exec`: prepare / execute / task
//!   management and the nexus lifecycle.
//!
//! Task attribute ACA is treated as SIMPLE (NACA is not supported, so no
//! ACA condition ever exists). Aborted tasks get no response (TAS=0).

pub mod access;
mod atomic;
mod capacity;
mod cdb;
mod defect;
mod exec;
mod extended_copy;
pub mod fabric;
mod inquiry;
pub mod lu;
mod mode;
mod opcodes;
mod persistent_reservation;
mod pr_store;
mod range_lock;
mod read_write;
mod readiness;
mod report_luns;
mod report_opcodes;
mod request_sense;
mod reservation;
mod sanitize;
pub mod sense;
pub mod state_store;
mod task_set;
#[cfg(test)]
mod testutil;
mod thin;
mod transport_id;
mod unit_attention;
mod vpd;

pub use fabric::{
    Command, DataDirection, ExecOutcome, LunMap, MappedLun, Nexus, Prepared, Response, TargetPort,
    TaskAttr, TmfFunction, TmfResult,
};
pub use lu::{LogicalUnit, LuConfig, LuError};
pub use pr_store::PrStateError;
pub use sense::Sense;
pub use state_store::{MemoryStore, StateStore};
