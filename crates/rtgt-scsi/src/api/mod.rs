//! The fabric API: the seam between transports and the SCSI core.
//!
//! - `command`: [`Command`], [`Response`], [`status`], [`DataDirection`],
//!   [`TaskAttr`], [`ExecOutcome`].
//! - `nexus`: [`Nexus`], [`Prepared`], [`TargetPort`], [`LunMap`],
//!   [`MappedLun`].
//! - `tmf`: [`TmfFunction`], [`TmfResult`].
//! - `lun`: [`decode_lun`], [`encode_lun`].

mod command;
mod lun;
mod nexus;
mod tmf;

pub use command::{status, Cdb, Command, DataDirection, ExecOutcome, Response, TaskAttr};
pub use lun::{decode_lun, encode_lun};
pub use nexus::{LunMap, MappedLun, Nexus, Prepared, TargetPort};
pub use tmf::{TmfFunction, TmfResult};
