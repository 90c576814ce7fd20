//! Logical units: a backstore plus the SCSI state around it.

use std::sync::Arc;

use rtgt_backstore::Backstore;

use crate::lu::task_set::TaskSet;
use crate::lu::unit_attention::UnitAttentions;
use crate::spc::mode::ModeState;

/// A logical unit could not be created.
#[derive(Debug, thiserror::Error)]
pub enum LuError {
    /// The persistent reservation state (APTPL) could not be restored.
    #[error(transparent)]
    PrState(#[from] crate::pr::pr_store::PrStateError),
    /// The configuration is inconsistent with the backstore.
    #[error("{0}")]
    Config(String),
}

/// How a logical unit presents itself.
#[derive(Clone)]
pub struct LuConfig {
    /// Name of the backstore (shown by management, used to derive the
    /// serial number and NAA identifier when those are not given).
    pub name: String,
    pub backstore: Arc<dyn Backstore>,
    /// Unit serial number (VPD 80h).
    pub serial: String,
    /// The NAA designator of the LU (VPD 83h).
    pub naa: crate::lu::identity::Naa,
    /// INQUIRY vendor (8), product (16) and revision (4), space padded.
    pub vendor: String,
    pub product: String,
    pub revision: String,
    /// Refuse every write-type command with DATA PROTECT / WRITE PROTECTED
    /// for every initiator (and report WP in MODE SENSE).
    pub read_only: bool,
    /// Removable medium: RMB=1 in INQUIRY, PREVENT ALLOW MEDIUM REMOVAL
    /// honoured, START STOP UNIT with LOEJ ejects and loads the medium, and
    /// medium-access commands fail with NOT READY / MEDIUM NOT PRESENT
    /// while it is ejected.
    pub removable: bool,
    /// Physical block size reported to initiators (LOGICAL BLOCKS PER
    /// PHYSICAL BLOCK EXPONENT in READ CAPACITY (16), granularities in
    /// B0h). `None`: the backstore's. Must be a power-of-two multiple of
    /// the logical block size ([`LogicalUnit::open`] refuses others).
    pub physical_block_size: Option<u32>,
    /// A limit on how fast SANITIZE OVERWRITE writes, in bytes per second;
    /// 0 (the default): none, it goes as fast as the medium does. Either
    /// way it gives way to other work (its thread runs at the lowest CPU
    /// and I/O priority and writes in pieces of bounded duration).
    pub sanitize_bytes_per_sec: u64,
    /// Thin provisioning: LBPME in READ CAPACITY (16), UNMAP and WRITE SAME
    /// with UNMAP deallocate through [`Backstore::discard`]. Defaults to
    /// [`Backstore::supports_discard`]; setting it on a backstore whose
    /// discard does not work makes unmapping fall back to writing zeroes.
    pub thin: bool,
    /// Where state that must survive a restart is kept: the persistent
    /// reservation state of APTPL registrations (`pr-<NAA>.state`).
    /// `None`: APTPL is not supported (REPORT CAPABILITIES says PTPL_C=0
    /// and APTPL=1 fails with INVALID FIELD IN PARAMETER LIST).
    pub state: Option<Arc<dyn crate::lu::state_store::StateStore>>,
    /// Where the persistent reservation state is shared with the other
    /// gateways that export the same LU (see [`crate::pr::shared`]); it
    /// then lives there, not in `state`.
    pub shared_pr: Option<Arc<dyn crate::pr::shared::SharedPrStore>>,
}

impl LuConfig {
    /// Defaults for a backstore: serial and NAA derived from the name
    /// (the same on every host and after every restart).
    pub fn new(name: &str, backstore: Arc<dyn Backstore>) -> Self {
        use crate::lu::identity;
        LuConfig {
            name: name.to_string(),
            thin: backstore.supports_discard(),
            backstore,
            serial: identity::default_serial(name),
            naa: identity::Naa::local_from_name(name),
            vendor: "RTGT".to_string(),
            product: name.chars().take(16).collect(),
            revision: "0001".to_string(),
            read_only: false,
            removable: false,
            physical_block_size: None,
            sanitize_bytes_per_sec: 0,
            state: None,
            shared_pr: None,
        }
    }
}

/// A logical unit. Shared by every nexus that maps it.
pub struct LogicalUnit {
    pub(crate) config: LuConfig,
    /// Tasks in the LU's (single) task set.
    pub(crate) tasks: TaskSet,
    /// Blocking backstore calls of its commands in flight (see `fence`).
    pub(crate) fence: Arc<crate::lu::fence::Fence>,
    /// Unit attentions per attached nexus.
    pub(crate) ua: UnitAttentions,
    /// Mode parameters shared by all nexuses.
    pub(crate) mode: ModeState,
    /// LBA range locks (COMPARE AND WRITE, atomic writes vs. writes).
    pub(crate) ranges: crate::lu::range_lock::RangeLock,
    /// EXTENDED COPY results held for RECEIVE COPY RESULTS.
    pub(crate) copies: crate::xcopy::CopyResults,
    /// SPC-2 and persistent reservations.
    pub(crate) reservations: crate::pr::reservation::Reservations,
    /// Removable medium state (loaded, prevention per nexus).
    pub(crate) medium: crate::spc::readiness::Medium,
    /// SANITIZE in progress.
    pub(crate) sanitize: Arc<crate::sbc::sanitize::SanitizeState>,
    /// The target ports that export it (REPORT TARGET PORT GROUPS).
    pub(crate) alua_ports: crate::alua::LuPorts,
}

impl LogicalUnit {
    /// Create an LU. Panics if its persistent reservation state cannot be
    /// restored (only possible with a `state` store); use [`LogicalUnit::open`]
    /// to handle that.
    pub fn new(config: LuConfig) -> Arc<Self> {
        Self::open(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Create an LU, restoring the persistent reservations saved in its
    /// `state` store (APTPL). A state file that is unreadable, torn or corrupt
    /// is an error, not an empty state: starting without the registrations
    /// would silently drop the initiators' fencing.
    pub fn open(config: LuConfig) -> Result<Arc<Self>, LuError> {
        let bs = config.backstore.block_size();
        if let Some(p) = config.physical_block_size {
            if p < bs || p % bs != 0 || !(p / bs).is_power_of_two() || (p / bs) > 1 << 15 {
                return Err(LuError::Config(format!(
                    "physical block size {p} is not a power-of-two multiple \
                     (at most 32768) of the logical block size {bs}"
                )));
            }
        }
        let reservations = crate::pr::reservation::Reservations::open(&config)?;
        let mode = ModeState::new(config.backstore.as_ref());
        let lu = Arc::new(LogicalUnit {
            config,
            tasks: TaskSet::default(),
            fence: Default::default(),
            ua: UnitAttentions::default(),
            mode,
            ranges: Default::default(),
            copies: Default::default(),
            reservations,
            medium: Default::default(),
            sanitize: Default::default(),
            alua_ports: Default::default(),
        });
        // Another gateway's commits reach this LU's nexuses.
        if let Some(sh) = &lu.config.shared_pr {
            let weak = Arc::downgrade(&lu);
            sh.watch(Box::new(move || {
                if let Some(lu) = weak.upgrade() {
                    lu.reservations.reload(&lu);
                }
            }));
        }
        Ok(lu)
    }

    /// Logical block size in bytes.
    pub(crate) fn block_size(&self) -> u32 {
        self.config.backstore.block_size()
    }

    /// Physical block size in bytes (a power-of-two multiple of the
    /// logical one).
    pub(crate) fn physical_block_size(&self) -> u32 {
        let bs = self.block_size();
        let p = match self.config.physical_block_size {
            Some(p) => p,
            None => self.config.backstore.physical_block_size(),
        };
        if p > bs && p % bs == 0 && (p / bs).is_power_of_two() {
            p
        } else {
            bs
        }
    }

    /// Number of logical blocks.
    pub(crate) fn num_blocks(&self) -> u64 {
        self.config.backstore.capacity() / self.block_size() as u64
    }

    /// Whether writes must fail with DATA PROTECT for a nexus that maps the
    /// LU with `mapped_read_only`; returns the condition to report.
    pub(crate) fn write_protect(
        &self,
        mapped_read_only: bool,
    ) -> Option<crate::core::sense::Sense> {
        if mapped_read_only || self.config.read_only {
            Some(crate::core::sense::WRITE_PROTECTED)
        } else if self.mode.swp() {
            Some(crate::core::sense::SOFTWARE_WRITE_PROTECTED)
        } else {
            None
        }
    }

    /// The medium capacity changed (the backstore was resized): every
    /// nexus gets CAPACITY DATA HAS CHANGED (2Ah/09h).
    pub fn capacity_changed(&self) {
        self.ua
            .establish(crate::core::sense::UA_CAPACITY_CHANGED, |_| true);
    }

    /// The logical units this LU's nexuses can reach changed (a LUN was
    /// added to or removed from their maps): every nexus attached to this LU
    /// gets REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh). See also
    /// [`crate::api::Nexus::luns_changed`] for nexuses that map no LU.
    pub fn reported_luns_changed(&self) {
        self.ua
            .establish(crate::core::sense::UA_REPORTED_LUNS_CHANGED, |_| true);
    }

    /// Whether the removable medium is loaded (always true for a fixed LU).
    pub fn medium_loaded(&self) -> bool {
        self.medium.loaded()
    }

    /// Whether a SANITIZE operation is in progress.
    pub fn sanitize_in_progress(&self) -> bool {
        self.sanitize.in_progress()
    }

    pub fn config(&self) -> &LuConfig {
        &self.config
    }

    pub fn backstore(&self) -> &Arc<dyn Backstore> {
        &self.config.backstore
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testutil::*;

    #[test]
    fn physical_block_size_is_validated() {
        let store = Arc::new(MemStore::new(64, 512, 512, false));
        for bad in [256u32, 768, 1536, 512 << 16] {
            let mut c = LuConfig::new("x", store.clone());
            c.physical_block_size = Some(bad);
            let e = LogicalUnit::open(c).err().expect("refused");
            assert!(matches!(e, LuError::Config(_)));
            assert!(e.to_string().contains(&bad.to_string()), "{e}");
        }
        for good in [512u32, 1024, 4096, 65536] {
            let mut c = LuConfig::new("x", store.clone());
            c.physical_block_size = Some(good);
            assert_eq!(LogicalUnit::open(c).unwrap().physical_block_size(), good);
        }
    }

    #[tokio::test]
    async fn configured_physical_block_size_is_reported() {
        let t = Fixture::with_config(1024, 512, |c| c.physical_block_size = Some(4096));
        t.clear_ua().await;
        let mut c16 = [0u8; 16];
        c16[0] = 0x9e;
        c16[1] = 0x10;
        c16[13] = 32;
        let r = t.run(&c16, &[]).await;
        assert_eq!(r.data[13] & 0x0f, 3, "LBPPBE: 8 logical per physical");
        // B0h: OPTIMAL TRANSFER LENGTH GRANULARITY is a physical block.
        let r = t.run(&[0x12, 1, 0xb0, 0, 64, 0], &[]).await;
        assert_eq!(&r.data[6..8], &[0, 8]);
    }

    #[tokio::test]
    async fn capacity_and_lun_change_unit_attentions() {
        let a = Fixture::new(64, 512);
        let b = a.other_nexus();
        a.clear_ua().await;
        b.clear_ua().await;
        a.lu.capacity_changed();
        for f in [&a, &b] {
            let s = f.check(&[0, 0, 0, 0, 0, 0]).await;
            assert_eq!((s.key, s.code()), (6, 0x2a09));
            assert_eq!(f.run(&[0, 0, 0, 0, 0, 0], &[]).await.status, 0);
        }
        // LUN map change: only the nexus told about it.
        a.nexus.luns_changed();
        assert_eq!(a.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x3f0e);
        assert_eq!(b.run(&[0, 0, 0, 0, 0, 0], &[]).await.status, 0);
        a.lu.reported_luns_changed();
        assert_eq!(b.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x3f0e);
        assert_eq!(a.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x3f0e);
    }
}
