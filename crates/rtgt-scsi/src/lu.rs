//! Logical units: a backstore plus the SCSI state around it.

use std::sync::Arc;

use rtgt_backstore::Backstore;

use crate::mode::ModeState;
use crate::task_set::TaskSet;
use crate::unit_attention::UnitAttentions;

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
            naa: (0x5u64 << 60) | (0x1405_u64 << 36) | (h & 0xf_ffff_ffff),
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
    /// Tasks in the LU's (single) task set.
    pub(crate) tasks: TaskSet,
    /// Unit attentions per attached nexus.
    pub(crate) ua: UnitAttentions,
    /// Mode parameters shared by all nexuses.
    pub(crate) mode: ModeState,
}

impl LogicalUnit {
    pub fn new(config: LuConfig) -> Arc<Self> {
        let mode = ModeState::new(config.backstore.as_ref());
        Arc::new(LogicalUnit {
            config,
            tasks: TaskSet::default(),
            ua: UnitAttentions::default(),
            mode,
        })
    }

    /// Logical block size in bytes.
    pub(crate) fn block_size(&self) -> u32 {
        self.config.backstore.block_size()
    }

    /// Number of logical blocks.
    pub(crate) fn num_blocks(&self) -> u64 {
        self.config.backstore.capacity() / self.block_size() as u64
    }

    /// Whether writes must fail with DATA PROTECT for a nexus that maps the
    /// LU with `mapped_read_only`; returns the condition to report.
    pub(crate) fn write_protect(&self, mapped_read_only: bool) -> Option<crate::sense::Sense> {
        if mapped_read_only || self.config.read_only {
            Some(crate::sense::WRITE_PROTECTED)
        } else if self.mode.swp() {
            Some(crate::sense::SOFTWARE_WRITE_PROTECTED)
        } else {
            None
        }
    }

    pub fn config(&self) -> &LuConfig {
        &self.config
    }

    pub fn backstore(&self) -> &Arc<dyn Backstore> {
        &self.config.backstore
    }
}
