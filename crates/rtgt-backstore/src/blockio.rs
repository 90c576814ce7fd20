//! Block-device backstore (placeholder).
pub struct BlockIo;
