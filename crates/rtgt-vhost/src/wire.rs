//! virtio-scsi on the wire (virtio 1.2, 5.6): the request and response
//! headers of the request queues, task management and asynchronous
//! notification on the control queue, events, the device configuration,
//! and the LUN addressing virtio-scsi uses. Little-endian, as virtio 1.x is.
//!
//! No I/O here: the backend copies the headers out of (and into) guest
//! memory, and these functions take and give plain bytes, so that every
//! parse can be tested with hostile input and fuzzed.

use thiserror::Error;

/// Sizes the device announces (and the driver then uses): a CDB of 32
/// bytes and sense of 96 bytes (the spec's defaults).
pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;

/// Bytes of a command request header: lun 8, tag 8, task_attr, prio, crn,
/// then the CDB.
pub const CMD_REQ_LEN: usize = 19 + CDB_SIZE;
/// Bytes of a command response header: sense_len 4, resid 4,
/// status_qualifier 2, status, response, then the sense.
pub const CMD_RESP_LEN: usize = 12 + SENSE_SIZE;
/// Task management request: type 4, subtype 4, lun 8, id 8.
pub const TMF_REQ_LEN: usize = 24;
/// Task management response: the response byte.
pub const TMF_RESP_LEN: usize = 1;
/// Asynchronous notification query/subscribe: type 4, lun 8, event_requested 4.
pub const AN_REQ_LEN: usize = 16;
/// Its response: event_actual 4, response 1.
pub const AN_RESP_LEN: usize = 5;
/// An event: event 4, lun 8, reason 4.
pub const EVENT_LEN: usize = 16;

/// The response field (virtio 1.2 5.6.6.1): how the transport did, apart
/// from the SCSI status.
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
    pub const INCORRECT_LUN: u8 = 12;
}

/// Control queue request types.
pub const T_TMF: u32 = 0;
pub const T_AN_QUERY: u32 = 1;
pub const T_AN_SUBSCRIBE: u32 = 2;

/// Event types and the TRANSPORT_RESET reasons.
pub const T_NO_EVENT: u32 = 0;
pub const T_TRANSPORT_RESET: u32 = 1;
pub const T_ASYNC_NOTIFY: u32 = 2;
pub const T_PARAM_CHANGE: u32 = 3;
/// Set in `event` when the device dropped events for want of buffers.
pub const T_EVENTS_MISSED: u32 = 0x8000_0000;
pub const EVT_RESET_HARD: u32 = 0;
pub const EVT_RESET_RESCAN: u32 = 1;
pub const EVT_RESET_REMOVED: u32 = 2;

/// Device feature bits of virtio-scsi.
pub mod feature {
    /// A request may carry both data-out and data-in.
    pub const INOUT: u64 = 1 << 0;
    /// The device reports LUN hotplug on the event queue.
    pub const HOTPLUG: u64 = 1 << 1;
    /// The device reports parameter changes (capacity and the like).
    pub const CHANGE: u64 = 1 << 2;
    /// T10 protection information (not offered).
    pub const T10_PI: u64 = 1 << 3;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("request header of {0} bytes, {1} needed")]
    Short(usize, usize),
    #[error("LUN field not in virtio-scsi's single-level format")]
    BadLun,
    #[error("unknown control request type {0}")]
    UnknownType(u32),
}

/// Where a virtio-scsi LUN field points: virtio-scsi addresses a target
/// (byte 1) and a LUN in SAM's flat or peripheral form (bytes 2-3); byte 0
/// is 1 and bytes 4-7 are 0 (5.6.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioLun {
    pub target: u8,
    pub lun: u16,
}

impl VirtioLun {
    pub fn parse(b: &[u8; 8]) -> Result<VirtioLun, WireError> {
        if b[0] != 1 || b[4..] != [0, 0, 0, 0] {
            return Err(WireError::BadLun);
        }
        let raw = u16::from_be_bytes([b[2], b[3]]);
        let lun = match raw >> 14 {
            // peripheral device addressing, bus 0: LUN 0..255
            0 if raw >> 8 == 0 => raw & 0xff,
            // flat space addressing: LUN 0..16383
            1 => raw & 0x3fff,
            _ => return Err(WireError::BadLun),
        };
        Ok(VirtioLun { target: b[1], lun })
    }

    /// Peripheral device addressing below 256, flat space above, as
    /// QEMU and LIO's vhost-scsi write event LUNs: Linux's virtio_scsi
    /// takes bytes 2-3 of an event whole as the LUN to scan, so LUN 1 in
    /// flat form would be scanned as LUN 16385.
    pub fn encode(self) -> [u8; 8] {
        let raw = if self.lun < 256 {
            self.lun
        } else {
            0x4000 | (self.lun & 0x3fff)
        };
        [1, self.target, (raw >> 8) as u8, raw as u8, 0, 0, 0, 0]
    }
}

/// A command request header (virtio_scsi_cmd_req).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdReq {
    /// The LUN field as the driver wrote it (parse with [`VirtioLun`]).
    pub lun: [u8; 8],
    pub tag: u64,
    /// 0 simple, 1 ordered, 2 head of queue, 3 ACA (SAM).
    pub task_attr: u8,
    pub prio: u8,
    pub crn: u8,
    /// The CDB, `CDB_SIZE` bytes (unused bytes 0; the opcode says how long).
    pub cdb: [u8; CDB_SIZE],
}

impl CmdReq {
    /// A SIMPLE task (priority and CRN 0) carrying `cdb` (cut to
    /// `CDB_SIZE` bytes) to `lun` under `tag`, as the tests send one.
    #[cfg(test)]
    pub(crate) fn simple(lun: VirtioLun, tag: u64, cdb: &[u8]) -> CmdReq {
        let mut c = [0; CDB_SIZE];
        let n = cdb.len().min(CDB_SIZE);
        c[..n].copy_from_slice(&cdb[..n]);
        CmdReq {
            lun: lun.encode(),
            tag,
            task_attr: 0,
            prio: 0,
            crn: 0,
            cdb: c,
        }
    }

    pub fn parse(b: &[u8]) -> Result<CmdReq, WireError> {
        if b.len() < CMD_REQ_LEN {
            return Err(WireError::Short(b.len(), CMD_REQ_LEN));
        }
        let mut lun = [0; 8];
        lun.copy_from_slice(&b[0..8]);
        let mut cdb = [0; CDB_SIZE];
        cdb.copy_from_slice(&b[19..19 + CDB_SIZE]);
        Ok(CmdReq {
            lun,
            tag: u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()),
            task_attr: b[16],
            prio: b[17],
            crn: b[18],
            cdb,
        })
    }

    pub fn encode(&self) -> [u8; CMD_REQ_LEN] {
        let mut b = [0; CMD_REQ_LEN];
        b[0..8].copy_from_slice(&self.lun);
        b[8..16].copy_from_slice(&self.tag.to_le_bytes());
        b[16] = self.task_attr;
        b[17] = self.prio;
        b[18] = self.crn;
        b[19..].copy_from_slice(&self.cdb);
        b
    }

    /// The CDB's own length, from its opcode's group code (SPC-4 4.2.5.1);
    /// a variable-length CDB (7Fh) says its length in byte 7. Never more
    /// than the `CDB_SIZE` bytes there are.
    pub fn cdb_len(&self) -> usize {
        let n = match self.cdb[0] >> 5 {
            0 => 6,
            1 | 2 => 10,
            4 => 16,
            5 => 12,
            // 3: 7Fh variable length (8 + additional length), else reserved
            _ if self.cdb[0] == 0x7f => 8 + self.cdb[7] as usize,
            _ => CDB_SIZE,
        };
        n.min(CDB_SIZE)
    }
}

/// A command response header (virtio_scsi_cmd_resp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResp {
    /// Bytes of sense data that matter (the rest of `sense` is zero).
    pub sense_len: u32,
    /// Bytes of the data buffer not transferred.
    pub resid: u32,
    pub status_qualifier: u16,
    pub status: u8,
    pub response: u8,
    pub sense: [u8; SENSE_SIZE],
}

impl CmdResp {
    /// A response with only a transport outcome (no SCSI status).
    pub fn with_response(response: u8) -> CmdResp {
        CmdResp {
            sense_len: 0,
            resid: 0,
            status_qualifier: 0,
            status: 0,
            response,
            sense: [0; SENSE_SIZE],
        }
    }

    /// A SCSI status with its sense (cut to `SENSE_SIZE`; `sense_len`
    /// says what was kept).
    pub fn scsi(status: u8, sense: &[u8], resid: u32) -> CmdResp {
        let mut r = CmdResp::with_response(response::OK);
        let n = sense.len().min(SENSE_SIZE);
        r.sense[..n].copy_from_slice(&sense[..n]);
        r.sense_len = n as u32;
        r.status = status;
        r.resid = resid;
        r
    }

    pub fn encode(&self) -> [u8; CMD_RESP_LEN] {
        let mut b = [0; CMD_RESP_LEN];
        b[0..4].copy_from_slice(&self.sense_len.to_le_bytes());
        b[4..8].copy_from_slice(&self.resid.to_le_bytes());
        b[8..10].copy_from_slice(&self.status_qualifier.to_le_bytes());
        b[10] = self.status;
        b[11] = self.response;
        b[12..].copy_from_slice(&self.sense);
        b
    }

    pub fn parse(b: &[u8]) -> Result<CmdResp, WireError> {
        if b.len() < CMD_RESP_LEN {
            return Err(WireError::Short(b.len(), CMD_RESP_LEN));
        }
        let mut sense = [0; SENSE_SIZE];
        sense.copy_from_slice(&b[12..CMD_RESP_LEN]);
        Ok(CmdResp {
            sense_len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            resid: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            status_qualifier: u16::from_le_bytes([b[8], b[9]]),
            status: b[10],
            response: b[11],
            sense,
        })
    }
}

/// Task management subtypes (virtio 1.2 5.6.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfSubtype {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    ItNexusReset,
    LogicalUnitReset,
    QueryTask,
    QueryTaskSet,
    Other(u32),
}

impl TmfSubtype {
    fn from_u32(v: u32) -> TmfSubtype {
        use TmfSubtype::*;
        match v {
            0 => AbortTask,
            1 => AbortTaskSet,
            2 => ClearAca,
            3 => ClearTaskSet,
            4 => ItNexusReset,
            5 => LogicalUnitReset,
            6 => QueryTask,
            7 => QueryTaskSet,
            v => Other(v),
        }
    }

    fn to_u32(self) -> u32 {
        use TmfSubtype::*;
        match self {
            AbortTask => 0,
            AbortTaskSet => 1,
            ClearAca => 2,
            ClearTaskSet => 3,
            ItNexusReset => 4,
            LogicalUnitReset => 5,
            QueryTask => 6,
            QueryTaskSet => 7,
            Other(v) => v,
        }
    }
}

/// A control queue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtrlReq {
    Tmf {
        subtype: TmfSubtype,
        lun: [u8; 8],
        /// The tag of the task to abort or query.
        id: u64,
    },
    /// AN query (`subscribe` false) or subscribe: the events asked for.
    An {
        subscribe: bool,
        lun: [u8; 8],
        event_requested: u32,
    },
}

impl CtrlReq {
    /// The request's type comes first; how long the rest must be depends on it.
    pub fn parse(b: &[u8]) -> Result<CtrlReq, WireError> {
        if b.len() < 4 {
            return Err(WireError::Short(b.len(), 4));
        }
        let ty = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut lun = [0; 8];
        match ty {
            T_TMF => {
                if b.len() < TMF_REQ_LEN {
                    return Err(WireError::Short(b.len(), TMF_REQ_LEN));
                }
                lun.copy_from_slice(&b[8..16]);
                Ok(CtrlReq::Tmf {
                    subtype: TmfSubtype::from_u32(u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
                    lun,
                    id: u64::from_le_bytes(b[16..24].try_into().unwrap_or_default()),
                })
            }
            T_AN_QUERY | T_AN_SUBSCRIBE => {
                if b.len() < AN_REQ_LEN {
                    return Err(WireError::Short(b.len(), AN_REQ_LEN));
                }
                lun.copy_from_slice(&b[4..12]);
                Ok(CtrlReq::An {
                    subscribe: ty == T_AN_SUBSCRIBE,
                    lun,
                    event_requested: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
                })
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            CtrlReq::Tmf { subtype, lun, id } => {
                b.extend_from_slice(&T_TMF.to_le_bytes());
                b.extend_from_slice(&subtype.to_u32().to_le_bytes());
                b.extend_from_slice(lun);
                b.extend_from_slice(&id.to_le_bytes());
            }
            CtrlReq::An {
                subscribe,
                lun,
                event_requested,
            } => {
                let ty = if *subscribe {
                    T_AN_SUBSCRIBE
                } else {
                    T_AN_QUERY
                };
                b.extend_from_slice(&ty.to_le_bytes());
                b.extend_from_slice(lun);
                b.extend_from_slice(&event_requested.to_le_bytes());
            }
        }
        b
    }
}

/// The response to an AN request: no event is supported (rtgt reports
/// media and capacity changes as unit attentions, as a disk does).
pub fn an_response(event_actual: u32, response: u8) -> [u8; AN_RESP_LEN] {
    let e = event_actual.to_le_bytes();
    [e[0], e[1], e[2], e[3], response]
}

/// An event for the event queue (virtio_scsi_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event: u32,
    pub lun: [u8; 8],
    pub reason: u32,
}

impl Event {
    /// A LUN appeared (`EVT_RESET_RESCAN`) or went (`EVT_RESET_REMOVED`).
    pub fn transport_reset(lun: VirtioLun, reason: u32) -> Event {
        Event {
            event: T_TRANSPORT_RESET,
            lun: lun.encode(),
            reason,
        }
    }

    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let mut b = [0; EVENT_LEN];
        b[0..4].copy_from_slice(&self.event.to_le_bytes());
        b[4..12].copy_from_slice(&self.lun);
        b[12..16].copy_from_slice(&self.reason.to_le_bytes());
        b
    }
}

/// The device configuration space (virtio_scsi_config), 36 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Request queues (the control and event queues are not counted).
    pub num_queues: u32,
    /// Most segments in a request's data.
    pub seg_max: u32,
    /// Most 512-byte sectors in one request.
    pub max_sectors: u32,
    /// Most requests in flight per LUN.
    pub cmd_per_lun: u32,
    pub event_info_size: u32,
    pub sense_size: u32,
    pub cdb_size: u32,
    pub max_channel: u16,
    pub max_target: u16,
    pub max_lun: u32,
}

pub const CONFIG_LEN: usize = 36;

impl Config {
    pub fn encode(&self) -> [u8; CONFIG_LEN] {
        let mut b = [0; CONFIG_LEN];
        let words = [
            self.num_queues,
            self.seg_max,
            self.max_sectors,
            self.cmd_per_lun,
            self.event_info_size,
            self.sense_size,
            self.cdb_size,
        ];
        for (i, w) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        b[28..30].copy_from_slice(&self.max_channel.to_le_bytes());
        b[30..32].copy_from_slice(&self.max_target.to_le_bytes());
        b[32..36].copy_from_slice(&self.max_lun.to_le_bytes());
        b
    }

    /// The bytes at `offset..offset+size` (a driver may read any part);
    /// outside the structure: nothing.
    pub fn read(&self, offset: u32, size: u32) -> Vec<u8> {
        let all = self.encode();
        let (o, s) = (offset as usize, size as usize);
        match o.checked_add(s) {
            Some(end) if end <= CONFIG_LEN => all[o..end].to_vec(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_forms_the_linux_driver_and_the_spec_use() {
        // Linux virtio_scsi: 1, target, 0x40 | lun >> 8, lun & 0xff
        let l = VirtioLun::parse(&[1, 0, 0x40, 0x05, 0, 0, 0, 0]).unwrap();
        assert_eq!(l, VirtioLun { target: 0, lun: 5 });
        // events carry LUNs below 256 in peripheral form (Linux reads
        // bytes 2-3 of an event as the LUN itself), higher ones flat
        assert_eq!(l.encode(), [1, 0, 0, 0x05, 0, 0, 0, 0]);
        let high = VirtioLun {
            target: 0,
            lun: 300,
        };
        assert_eq!(high.encode(), [1, 0, 0x41, 0x2c, 0, 0, 0, 0]);
        assert_eq!(VirtioLun::parse(&high.encode()), Ok(high));
        let l = VirtioLun::parse(&[1, 3, 0x7f, 0xff, 0, 0, 0, 0]).unwrap();
        assert_eq!((l.target, l.lun), (3, 0x3fff));
        // peripheral device addressing of LUN 7
        assert_eq!(VirtioLun::parse(&[1, 0, 0, 7, 0, 0, 0, 0]).unwrap().lun, 7);
        for bad in [
            [0, 0, 0x40, 0, 0, 0, 0, 0],    // byte 0 not 1
            [1, 0, 0x40, 0, 0, 0, 0, 1],    // a second level
            [1, 0, 0x80, 0, 0, 0, 0, 0],    // logical unit addressing
            [1, 0, 0x01, 0x00, 0, 0, 0, 0], // peripheral with a bus
        ] {
            assert_eq!(VirtioLun::parse(&bad), Err(WireError::BadLun), "{bad:?}");
        }
    }

    #[test]
    fn command_request_round_trip_and_short_headers() {
        let mut cdb = [0; CDB_SIZE];
        cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0]);
        let r = CmdReq {
            lun: VirtioLun { target: 0, lun: 1 }.encode(),
            tag: 0x1122_3344_5566_7788,
            task_attr: 0,
            prio: 0,
            crn: 0,
            cdb,
        };
        let b = r.encode();
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(CmdReq::parse(&b).unwrap(), r);
        assert_eq!(r.cdb_len(), 10);
        for n in [0, 1, CMD_REQ_LEN - 1] {
            assert_eq!(
                CmdReq::parse(&b[..n]),
                Err(WireError::Short(n, CMD_REQ_LEN))
            );
        }
    }

    #[test]
    fn cdb_lengths_by_group_never_past_the_field() {
        let len = |op: u8, b7: u8| {
            let mut cdb = [0; CDB_SIZE];
            cdb[0] = op;
            cdb[7] = b7;
            CmdReq {
                lun: [0; 8],
                tag: 0,
                task_attr: 0,
                prio: 0,
                crn: 0,
                cdb,
            }
            .cdb_len()
        };
        assert_eq!(len(0x00, 0), 6);
        assert_eq!(len(0x28, 0), 10);
        assert_eq!(len(0x5f, 0), 10);
        assert_eq!(len(0xa0, 0), 12);
        assert_eq!(len(0x88, 0), 16);
        assert_eq!(len(0x7f, 0x18), 32);
        assert_eq!(len(0x7f, 0xff), CDB_SIZE, "a hostile additional length");
        assert_eq!(len(0xc0, 0), CDB_SIZE, "vendor specific: the whole field");
    }

    #[test]
    fn response_carries_status_sense_and_residual() {
        let sense = [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0];
        let r = CmdResp::scsi(2, &sense, 512);
        let b = r.encode();
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 18);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 512);
        assert_eq!((b[10], b[11]), (2, response::OK));
        assert_eq!(&b[12..30], &sense);
        assert_eq!(CmdResp::parse(&b).unwrap(), r);
        // sense longer than the field is cut and says so
        let r = CmdResp::scsi(2, &[0xee; 200], 0);
        assert_eq!(r.sense_len as usize, SENSE_SIZE);
    }

    #[test]
    fn control_requests_by_type() {
        let lun = VirtioLun { target: 0, lun: 2 }.encode();
        for r in [
            CtrlReq::Tmf {
                subtype: TmfSubtype::AbortTask,
                lun,
                id: 77,
            },
            CtrlReq::Tmf {
                subtype: TmfSubtype::LogicalUnitReset,
                lun,
                id: 0,
            },
            CtrlReq::Tmf {
                subtype: TmfSubtype::Other(99),
                lun,
                id: 1,
            },
            CtrlReq::An {
                subscribe: true,
                lun,
                event_requested: 0x10,
            },
            CtrlReq::An {
                subscribe: false,
                lun,
                event_requested: 0,
            },
        ] {
            assert_eq!(CtrlReq::parse(&r.encode()).unwrap(), r);
        }
        let tmf = CtrlReq::Tmf {
            subtype: TmfSubtype::AbortTask,
            lun,
            id: 1,
        }
        .encode();
        assert_eq!(
            CtrlReq::parse(&tmf[..20]),
            Err(WireError::Short(20, TMF_REQ_LEN))
        );
        assert_eq!(
            CtrlReq::parse(&[9, 0, 0, 0, 0]),
            Err(WireError::UnknownType(9))
        );
        assert_eq!(CtrlReq::parse(&[0, 0]), Err(WireError::Short(2, 4)));
    }

    #[test]
    fn config_space_reads_any_part_and_nothing_outside() {
        let c = Config {
            num_queues: 2,
            seg_max: 126,
            max_sectors: 0xffff,
            cmd_per_lun: 128,
            event_info_size: EVENT_LEN as u32,
            sense_size: SENSE_SIZE as u32,
            cdb_size: CDB_SIZE as u32,
            max_channel: 0,
            max_target: 0,
            max_lun: 16383,
        };
        assert_eq!(c.read(0, 4), 2u32.to_le_bytes());
        assert_eq!(c.read(20, 4), 96u32.to_le_bytes());
        assert_eq!(c.read(32, 4), 16383u32.to_le_bytes());
        assert!(c.read(33, 4).is_empty());
        assert!(c.read(u32::MAX, 2).is_empty());
        assert_eq!(
            Event::transport_reset(VirtioLun { target: 0, lun: 3 }, EVT_RESET_RESCAN).encode()[..4],
            1u32.to_le_bytes()
        );
    }
}
