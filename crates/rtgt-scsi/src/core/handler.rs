//! The handler contract: what a command handler gets and gives back.
//!
//! A decoder ([`DecodeFn`]) runs in `prepare()`: it validates the CDB,
//! decides how many Data-Out bytes the command takes, and returns a
//! [`Plan`] whose [`Action`] `execute()` carries out, handing emulated
//! commands an [`ExecCtx`]. The opcode table ([`super::opcodes`]) names
//! every decoder.

use crate::api::Nexus;
use crate::core::sense::Sense;
use crate::lu::LogicalUnit;

/// What `prepare()` hands a decoder.
pub(crate) struct Decode<'a> {
    pub cdb: &'a [u8],
    /// `None` when the LUN is not mapped (only for [`flags::ANY_LUN`] commands).
    pub lu: Option<&'a LogicalUnit>,
    /// The initiator's expected Data-Out length (0 when it announced none).
    pub expected_len: u32,
    /// The target port the command came through.
    pub port: &'a crate::api::TargetPort,
}

/// What `execute()` hands an emulated command.
pub(crate) struct ExecCtx<'a> {
    pub nexus: &'a Nexus,
    pub lu: Option<&'a LogicalUnit>,
    /// The LU is mapped read-only for this nexus.
    pub read_only: bool,
    pub cdb: &'a [u8],
    pub data_out: &'a [u8],
}

/// An emulated command: builds its Data-In (GOOD) or fails.
pub(crate) type EmulateFn = fn(&ExecCtx<'_>) -> Result<Vec<u8>, Sense>;

/// A decoder: validates the CDB and plans the command.
pub(crate) type DecodeFn = fn(&Decode<'_>) -> Result<Plan, Sense>;

/// The future an asynchronous command returns.
pub(crate) type BoxFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, Sense>> + Send + 'a>>;

/// An emulated command that waits (backstore I/O, range locks).
pub(crate) type AsyncFn = for<'a> fn(&'a ExecCtx<'a>) -> BoxFuture<'a>;

/// A block range for the I/O actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRange {
    pub lba: u64,
    pub blocks: u32,
    /// FUA: write through / read from the medium.
    pub fua: bool,
    /// BYTCHK for VERIFY and WRITE AND VERIFY.
    pub bytchk: u8,
}

/// What `execute()` does.
pub(crate) enum Action {
    /// Nothing: GOOD without data.
    Good,
    Emulate(EmulateFn),
    /// Like `Emulate`, for commands that wait (UNMAP, WRITE SAME, COMPARE
    /// AND WRITE, EXTENDED COPY ...).
    Async(AsyncFn),
    Read(BlockRange),
    Write(BlockRange),
    WriteVerify(BlockRange),
    Verify(BlockRange),
    /// Flush the backstore's cache.
    Sync,
}

/// The outcome of decoding.
pub(crate) struct Plan {
    pub data_out_len: u32,
    pub action: Action,
    /// Truncate Data-In to this ALLOCATION LENGTH.
    pub alloc_len: Option<u32>,
}

impl Plan {
    pub fn good() -> Plan {
        Plan::action(Action::Good)
    }
    pub fn action(action: Action) -> Plan {
        Plan {
            data_out_len: 0,
            action,
            alloc_len: None,
        }
    }
    pub fn emulate(f: EmulateFn) -> Plan {
        Plan::action(Action::Emulate(f))
    }
    pub fn with_alloc_len(mut self, n: u32) -> Plan {
        self.alloc_len = Some(n);
        self
    }
    pub fn with_data_out(mut self, n: u32) -> Plan {
        self.data_out_len = n;
        self
    }
}

/// Flags of a table entry.
pub(crate) mod flags {
    /// Runs for a LUN that is not mapped (INQUIRY, REPORT LUNS, REQUEST
    /// SENSE); such commands also never report a unit attention.
    pub const ANY_LUN: u8 = 0x01;
    /// Writes the medium: refused on a write-protected LU.
    pub const MEDIUM_WRITE: u8 = 0x02;
    /// Accesses the medium: NOT READY / MEDIUM NOT PRESENT while a
    /// removable medium is ejected, MEDIUM ERROR / SANITIZE COMMAND FAILED
    /// in sanitize failure mode.
    pub const MEDIUM: u8 = 0x04;
}
