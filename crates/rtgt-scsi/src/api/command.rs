//! Commands and their answers: [`Command`], [`Response`], SCSI [`status`],
//! data direction, task attributes and [`ExecOutcome`].

use rtgt_backstore::IoBuf;

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

/// A CDB: inline up to 16 bytes (every CDB but extended and
/// variable-length ones), so a command costs no allocation for it.
#[derive(Clone)]
pub struct Cdb(CdbRepr);

#[derive(Clone)]
enum CdbRepr {
    Inline { len: u8, bytes: [u8; 16] },
    Long(Box<[u8]>),
}

impl From<&[u8]> for Cdb {
    fn from(c: &[u8]) -> Cdb {
        if c.len() <= 16 {
            let mut bytes = [0u8; 16];
            bytes[..c.len()].copy_from_slice(c);
            Cdb(CdbRepr::Inline {
                len: c.len() as u8,
                bytes,
            })
        } else {
            Cdb(CdbRepr::Long(c.into()))
        }
    }
}

impl From<Vec<u8>> for Cdb {
    fn from(c: Vec<u8>) -> Cdb {
        if c.len() <= 16 {
            Cdb::from(&c[..])
        } else {
            Cdb(CdbRepr::Long(c.into_boxed_slice()))
        }
    }
}

impl<const N: usize> From<[u8; N]> for Cdb {
    fn from(c: [u8; N]) -> Cdb {
        Cdb::from(&c[..])
    }
}

impl std::ops::Deref for Cdb {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            CdbRepr::Inline { len, bytes } => &bytes[..*len as usize],
            CdbRepr::Long(b) => b,
        }
    }
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A SCSI command as a fabric received it.
#[derive(Debug, Clone)]
pub struct Command {
    /// LUN number (the 64-bit SAM LUN decoded to a flat number; see
    /// [`decode_lun`](super::decode_lun)).
    pub lun: u64,
    /// The CDB (6 to 260 bytes; usually 6..=16).
    pub cdb: Cdb,
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
    /// residual). An [`IoBuf`] so that a READ's data leaves from the
    /// buffer the backstore filled.
    pub data: IoBuf,
}

impl Response {
    pub fn good(data: impl Into<IoBuf>) -> Self {
        Response {
            status: status::GOOD,
            sense: None,
            data: data.into(),
        }
    }
    pub fn status(status: u8) -> Self {
        Response {
            status,
            sense: None,
            data: IoBuf::new(),
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
