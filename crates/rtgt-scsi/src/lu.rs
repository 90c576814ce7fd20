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
    /// Thin provisioning: LBPME in READ CAPACITY (16), UNMAP and WRITE SAME
    /// with UNMAP deallocate through [`Backstore::discard`]. Defaults to
    /// [`Backstore::supports_discard`]; setting it on a backstore whose
    /// discard does not work makes unmapping fall back to writing zeroes.
    pub thin: bool,
    /// Directory for state that must survive a restart: the persistent
    /// reservation state of APTPL registrations (`pr-<NAA>.state`).
    /// `None`: APTPL is not supported (REPORT CAPABILITIES says PTPL_C=0
    /// and APTPL=1 fails with INVALID FIELD IN PARAMETER LIST).
    pub state_dir: Option<std::path::PathBuf>,
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
            thin: backstore.supports_discard(),
            backstore,
            serial: format!("{:016x}", h),
            // NAA 5, an unassigned-looking company id, 36 bits of hash.
            naa: (0x5u64 << 60) | (0x1405_u64 << 36) | (h & 0xf_ffff_ffff),
            vendor: "RTGT".to_string(),
            product: name.chars().take(16).collect(),
            revision: "0001".to_string(),
            read_only: false,
            state_dir: None,
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
    /// LBA range locks (COMPARE AND WRITE, atomic writes vs. writes).
    pub(crate) ranges: crate::range_lock::RangeLock,
    /// EXTENDED COPY results held for RECEIVE COPY RESULTS.
    pub(crate) copies: crate::extended_copy::CopyResults,
    /// SPC-2 and persistent reservations.
    pub(crate) reservations: crate::reservation::Reservations,
}

impl LogicalUnit {
    /// Create an LU. Panics if its persistent reservation state cannot be
    /// restored (only possible with a `state_dir`); use [`LogicalUnit::open`]
    /// to handle that.
    pub fn new(config: LuConfig) -> Arc<Self> {
        Self::open(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Create an LU, restoring the persistent reservations saved in its
    /// `state_dir` (APTPL). A state file that is unreadable, torn or corrupt
    /// is an error, not an empty state: starting without the registrations
    /// would silently drop the initiators' fencing.
    pub fn open(config: LuConfig) -> Result<Arc<Self>, crate::pr_store::PrStateError> {
        let reservations = crate::reservation::Reservations::open(&config)?;
        let mode = ModeState::new(config.backstore.as_ref());
        let lu = Arc::new(LogicalUnit {
            config,
            tasks: TaskSet::default(),
            ua: UnitAttentions::default(),
            mode,
            ranges: Default::default(),
            copies: Default::default(),
            reservations,
        });
        crate::extended_copy::register(&lu);
        Ok(lu)
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

impl Drop for LogicalUnit {
    fn drop(&mut self) {
        crate::extended_copy::unregister(self.config.naa);
    }
}
