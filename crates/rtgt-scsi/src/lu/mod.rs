//! Logical units and their per-LU state: the logical unit itself
//! (`logical_unit`), its task set (`task_set`), range locks (`range_lock`),
//! unit attentions (`unit_attention`) and the store persistent state goes
//! to (`state_store`).

pub(crate) mod fence;
pub mod identity;
mod logical_unit;
pub(crate) mod range_lock;
pub mod state_store;
pub(crate) mod task_set;
pub(crate) mod unit_attention;

pub use identity::Naa;
pub use logical_unit::{LogicalUnit, LuConfig, LuError};
