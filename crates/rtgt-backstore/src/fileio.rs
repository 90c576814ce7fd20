//! File-backed backstore (placeholder).
pub struct FileIo;
pub struct FileIoOptions;
