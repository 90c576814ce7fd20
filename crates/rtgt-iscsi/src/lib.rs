pub mod pdu;
pub mod ffp;
pub mod session;
pub mod target;
pub mod wire;
