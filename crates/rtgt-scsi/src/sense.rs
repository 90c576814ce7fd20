//! Sense data (SPC-4 4.5).

/// A sense condition: key, additional sense code and qualifier, plus the
/// optional sense-key-specific field pointer and information field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}
