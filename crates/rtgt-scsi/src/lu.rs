//! Logical units: a backstore plus the SCSI state around it.

use std::sync::Arc;

use rtgt_backstore::Backstore;

/// How a logical unit presents itself.
#[derive(Clone)]
pub struct LuConfig {
    /// Name of the backstore (shown by management, used to derive the
    /// serial number and NAA identifier when those are not given).
    pub name: String,
    pub backstore: Arc<dyn Backstore>,
    /// Unit serial number (VPD 80h).
    pub serial: String,
    /// 64 bits of the NAA IEEE Registered identifier (VPD 83h), NAA=5 in
    /// the top nibble.
    pub naa: u64,
    /// INQUIRY vendor (8), product (16) and revision (4), space padded.
    pub vendor: String,
    pub product: String,
    pub revision: String,
    /// Refuse every write-type command with DATA PROTECT / WRITE PROTECTED
    /// for every initiator.
    pub read_only: bool,
}

impl LuConfig {
    /// Defaults for a backstore: serial and NAA derived from the name.
    pub fn new(name: &str, backstore: Arc<dyn Backstore>) -> Self {
        // FNV-1a: a stable, dependency-free hash of the name.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        LuConfig {
            name: name.to_string(),
            backstore,
            serial: format!("{:016x}", h),
            // NAA 5, an unassigned-looking company id, 36 bits of hash.
            naa: (0x5u64 << 60) | (0x0014_05u64 << 36) | (h & 0xf_ffff_ffff),
            vendor: "RTGT".to_string(),
            product: name.chars().take(16).collect(),
            revision: "0001".to_string(),
            read_only: false,
        }
    }
}

/// A logical unit. Shared by every nexus that maps it.
pub struct LogicalUnit {
    pub(crate) config: LuConfig,
}

impl LogicalUnit {
    pub fn new(config: LuConfig) -> Arc<Self> {
        Arc::new(LogicalUnit { config })
    }

    pub fn config(&self) -> &LuConfig {
        &self.config
    }

    pub fn backstore(&self) -> &Arc<dyn Backstore> {
        &self.config.backstore
    }
}
