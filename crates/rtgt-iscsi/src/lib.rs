pub mod budget;
pub mod chap;
mod conn;
pub mod discovery;
pub mod ffp;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod login;
mod login_phase;
pub mod negotiation;
pub mod outbox;
pub mod pdu;
pub mod server;
pub mod session;
pub mod shards;
pub mod target;
pub mod text;
pub mod window;
pub mod wire;
