//! Sparse RAM disk (placeholder).
pub struct RamDisk;
