//! The vhost-user-scsi fabric: a virtual machine's virtio-scsi controller
//! served from rtgt's SCSI core (issue 18).
//!
//! - `wire`: the virtio-scsi structures as they sit in guest memory
//!   (virtio 1.2 section 5.6), parsed and encoded with no I/O, every field
//!   checked: a guest writes whatever it likes there.
//! - `request`: one request chain of a request queue through the core and
//!   back into guest memory.
//! - `backend`: the device behind rust-vmm's vhost-user-backend: the
//!   control, event and request queues of one controller.
//! - `fuzz_entry`: hostile virtqueues, for cargo-fuzz and the tests.
//! - `socket`: a controller served on its Unix socket while it is
//!   configured, one front-end after another.

pub mod backend;
pub mod fuzz_entry;
pub mod request;
pub mod socket;
pub mod wire;

pub use backend::Runtimes;
pub use socket::{OpenNexus, SocketServer};
