//! The core: the handler contract (`handler`: context, plan, action), the
//! opcode table (`opcodes`: the one file that names every handler),
//! prepare / execute / task management (`exec`), CDB field decoding
//! (`cdb`) and sense data (`sense`).

pub(crate) mod cdb;
pub(crate) mod exec;
pub(crate) mod handler;
pub(crate) mod opcodes;
pub mod sense;
