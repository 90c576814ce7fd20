//! The fabric API: the seam between transports and the SCSI core.

use std::collections::BTreeMap;
use std::sync::Arc;

/// SCSI status codes (SAM-5).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const ACA_ACTIVE: u8 = 0x30;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// Direction of data transfer as the initiator announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    None,
    /// Data-In: target to initiator.
    Read,
    /// Data-Out: initiator to target.
    Write,
    Bidirectional,
}

/// Task attribute (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// A SCSI command as a fabric received it.
#[derive(Debug, Clone)]
pub struct Command {
    /// LUN number (the 64-bit SAM LUN decoded to a flat number; see
    /// [`decode_lun`]).
    pub lun: u64,
    /// The CDB (6 to 260 bytes; usually 6..=16).
    pub cdb: Vec<u8>,
    /// The fabric's task tag, unique among the nexus' outstanding tasks.
    pub tag: u64,
    pub attr: TaskAttr,
    /// Expected data transfer length announced by the initiator (bytes), for
    /// the direction in `dir`.
    pub expected_len: u32,
    pub dir: DataDirection,
}

/// The answer to a command.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// SCSI status (see [`status`]).
    pub status: u8,
    /// Encoded sense data (fixed or descriptor format, as the LU's D_SENSE
    /// says), present with CHECK CONDITION.
    pub sense: Option<Vec<u8>>,
    /// Data-In the command produced, before any truncation to the
    /// initiator's expected length (the fabric truncates and reports the
    /// residual).
    pub data: Vec<u8>,
}

impl Response {
    pub fn good(data: Vec<u8>) -> Self {
        Response {
            status: status::GOOD,
            sense: None,
            data,
        }
    }
    pub fn status(status: u8) -> Self {
        Response {
            status,
            sense: None,
            data: Vec::new(),
        }
    }
}

/// What became of an executed command.
#[derive(Debug)]
pub enum ExecOutcome {
    Done(Response),
    /// The task was aborted by task management or a reset; the fabric sends
    /// no response for it (TAS=0).
    Aborted,
}

/// A target port as the core sees it: what INQUIRY's device identification
/// page reports about the port a command came through.
#[derive(Debug, Clone)]
pub struct TargetPort {
    /// SCSI name of the target port, e.g. `iqn.2026-11.org.rtgt:demo,t,0x0001`.
    pub name: String,
    /// The target device name, e.g. `iqn.2026-11.org.rtgt:demo`.
    pub target_name: String,
    /// Relative target port identifier (1-based).
    pub relative_port_id: u16,
    /// Target port group (ALUA); the TPG tag for iSCSI.
    pub port_group: u16,
}

/// One LUN as mapped for a nexus.
#[derive(Clone)]
pub struct MappedLun {
    pub lu: Arc<crate::lu::LogicalUnit>,
    /// Mapped read-only for this initiator: write-type commands fail with
    /// DATA PROTECT / WRITE PROTECTED.
    pub read_only: bool,
}

/// The LUNs a nexus sees.
#[derive(Clone, Default)]
pub struct LunMap {
    pub luns: BTreeMap<u64, MappedLun>,
}

/// Task management functions (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask {
        lun: u64,
        tag: u64,
    },
    AbortTaskSet {
        lun: u64,
    },
    ClearTaskSet {
        lun: u64,
    },
    LogicalUnitReset {
        lun: u64,
    },
    /// Warm and cold target resets are the same to a target without power
    /// to cycle.
    TargetReset,
}

/// Service response of a task management function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfResult {
    Complete,
    /// ABORT TASK: no such task (it may have completed already).
    TaskNotFound,
    LunNotFound,
    NotSupported,
    Rejected,
}

/// Decode an 8-byte SAM LUN field into a flat LUN number (peripheral and
/// flat addressing for the first level; other levels are rejected by
/// returning `u64::MAX`, which matches no mapped LUN).
pub fn decode_lun(raw: [u8; 8]) -> u64 {
    if raw[2..].iter().any(|&b| b != 0) {
        return u64::MAX;
    }
    match raw[0] >> 6 {
        0b00 if raw[0] == 0 => raw[1] as u64,
        0b01 => (((raw[0] & 0x3f) as u64) << 8) | raw[1] as u64,
        _ => u64::MAX,
    }
}

/// Encode a flat LUN number into the 8-byte SAM LUN field (REPORT LUNS).
pub fn encode_lun(lun: u64) -> [u8; 8] {
    let mut raw = [0u8; 8];
    if lun < 256 {
        raw[1] = lun as u8;
    } else {
        raw[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        raw[1] = lun as u8;
    }
    raw
}

/// One I_T nexus: an initiator port talking to a target port. Created by the
/// fabric when a session reaches full feature phase; dropped (after
/// [`Nexus::close`]) when the session ends.
pub struct Nexus {
    id: u64,
    initiator_port: String,
    port: Arc<TargetPort>,
    luns: Arc<LunMap>,
}

impl Nexus {
    /// `initiator_port` is the SCSI initiator port name (for iSCSI
    /// `iqn...,i,0x<ISID>`); it identifies the nexus for reservations.
    pub fn new(initiator_port: String, port: Arc<TargetPort>, luns: Arc<LunMap>) -> Arc<Nexus> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let nexus = Arc::new(Nexus {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            initiator_port,
            port,
            luns,
        });
        crate::exec::nexus_created(&nexus);
        nexus
    }

    /// Process-unique identifier of this nexus.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn initiator_port(&self) -> &str {
        &self.initiator_port
    }

    pub fn target_port(&self) -> &Arc<TargetPort> {
        &self.port
    }

    pub fn luns(&self) -> &Arc<LunMap> {
        &self.luns
    }

    /// Admit a command: decode its CDB, check the LUN, unit attentions,
    /// ranges and reservations, and enter it into the LU's task set (in the
    /// order commands are prepared, which must be command order).
    ///
    /// `Err` is the final answer, given before any data moves (the fabric
    /// still swallows any unsolicited data the initiator sends). `Ok` tells
    /// how many Data-Out bytes the command needs.
    pub fn prepare(self: &Arc<Self>, cmd: Command) -> Result<Prepared, Response> {
        crate::exec::prepare(self, cmd)
    }

    /// Perform a task management function. Never waits for backstore I/O:
    /// aborted tasks stop being reported at once.
    pub async fn task_management(self: &Arc<Self>, f: TmfFunction) -> TmfResult {
        crate::exec::task_management(self, f).await
    }

    /// Tell the initiator that the set of LUNs this nexus reaches changed
    /// (the daemon changed its LUN map live): REPORTED LUNS DATA HAS CHANGED
    /// (3Fh/0Eh) is reported by the next command on any of its LUs. Call it
    /// on the nexus' new map, or on the old one when LUs were only removed.
    pub fn luns_changed(&self) {
        crate::exec::luns_changed(self)
    }

    /// The nexus is gone (logout, connection loss): abort its tasks and drop
    /// the state SCSI ties to it.
    pub fn close(self: &Arc<Self>) {
        crate::exec::nexus_lost(self)
    }
}

impl Drop for Nexus {
    fn drop(&mut self) {
        crate::exec::nexus_dropped(self)
    }
}

/// A command admitted to a task set, waiting for its Data-Out (if any) and
/// execution. Dropping it without executing removes it from the task set.
pub struct Prepared {
    pub(crate) inner: crate::exec::PreparedInner,
}

impl Prepared {
    /// Data-Out bytes the CDB calls for (0 for commands without Data-Out).
    pub fn data_out_len(&self) -> u32 {
        self.inner.data_out_len()
    }

    /// Execute with the Data-Out buffer (exactly `data_out_len()` bytes, or
    /// fewer if the initiator's expected length was smaller — the core then
    /// fails the command properly). Waits for the task-attribute order.
    pub async fn execute(self, data_out: Vec<u8>) -> ExecOutcome {
        self.inner.execute(data_out).await
    }

    /// Fail the command with `sense` without executing it, e.g. when the
    /// transport could not deliver its Data-Out intact.
    pub fn fail(self, sense: crate::sense::Sense) -> Response {
        self.inner.fail(sense)
    }
}
