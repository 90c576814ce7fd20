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

mod exec;
pub mod fabric;
pub mod lu;
pub mod sense;

pub use fabric::{
    Command, DataDirection, ExecOutcome, LunMap, MappedLun, Nexus, Prepared, Response,
    TargetPort, TaskAttr, TmfFunction, TmfResult,
};
pub use lu::{LogicalUnit, LuConfig};
pub use sense::Sense;
