//! Initiator port identities for reservations, and the TransportIDs
//! (SPC-4 7.6.4) that name them in PERSISTENT RESERVE OUT parameter lists
//! and READ FULL STATUS data.
//!
//! Two TransportIDs are understood:
//! - iSCSI (protocol identifier 5h):
//!   - format 00b: the iSCSI name of an initiator device, which stands for
//!     every initiator port of that device (any ISID);
//!   - format 01b: `<iSCSI name>,i,0x<ISID>`, one initiator port.
//! - SAS (6h, SPC-4 7.6.4.6): the 8-byte SAS address of one port. A
//!   virtual machine on a vhost-user-scsi controller is the initiator
//!   port `naa.<16 hex digits>`, which is such an address, and is named
//!   by it as LIO's vhost-scsi names its nexus.
//!
//! A nexus' initiator port name as the iSCSI fabric sets it
//! (`Nexus::initiator_port()`, `"iqn...,i,0x<12 hex digits>"`) parses into
//! the same [`InitiatorId`]. iSCSI names compare case-insensitively (RFC
//! 3722 normalises them to lower case) and ISIDs compare as numbers.

use crate::core::sense::Sense;

/// SCSI transport protocol identifier of iSCSI (SPC-4 table 362).
pub const PROTOCOL_ISCSI: u8 = 0x5;
/// SCSI transport protocol identifier of SAS (SPC-4 table 362).
pub const PROTOCOL_SAS: u8 = 0x6;
/// A SAS TransportID's length: header, address, reserved.
const SAS_TRANSPORT_ID_LEN: usize = 24;

/// An initiator port, or with `isid == None` every port of one initiator
/// device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitiatorId {
    /// Initiator (device) name, lower case.
    pub name: String,
    /// The 48-bit ISID; `None` for a name-only (format 00b) identity.
    pub isid: Option<u64>,
}

/// Separator between the iSCSI name and the ISID in an initiator port name.
const SEPARATOR: &str = ",i,0x";

/// The "ISID" of a port whose name is not an iSCSI initiator port name (a
/// future fabric's): the whole name identifies one port.
pub(crate) const NO_ISID: u64 = u64::MAX;

impl InitiatorId {
    /// Parse an initiator port name. Names without the iSCSI `,i,0x<ISID>`
    /// suffix (or with an unparsable ISID) are taken whole as the name of
    /// a single port.
    pub fn from_port(port: &str) -> InitiatorId {
        let lower = port.to_ascii_lowercase();
        if let Some(at) = lower.rfind(SEPARATOR) {
            let hex = &lower[at + SEPARATOR.len()..];
            if !hex.is_empty() && hex.len() <= 12 {
                if let Ok(isid) = u64::from_str_radix(hex, 16) {
                    return InitiatorId {
                        name: lower[..at].to_string(),
                        isid: Some(isid),
                    };
                }
            }
        }
        InitiatorId {
            name: lower,
            isid: Some(NO_ISID),
        }
    }

    /// Whether this identity (possibly name-only) covers the port `port`.
    pub fn covers(&self, port: &InitiatorId) -> bool {
        self.name == port.name && (self.isid.is_none() || self.isid == port.isid)
    }

    /// Whether some initiator port is covered by both identities.
    pub fn overlaps(&self, other: &InitiatorId) -> bool {
        self.name == other.name
            && (self.isid.is_none() || other.isid.is_none() || self.isid == other.isid)
    }

    /// The text of the TransportID: the name, plus `,i,0x<ISID>` for a port.
    pub fn text(&self) -> String {
        match self.isid {
            None => self.name.clone(),
            Some(NO_ISID) => self.name.clone(),
            Some(isid) => format!("{}{SEPARATOR}{isid:012x}", self.name),
        }
    }

    /// The SAS address when this is a `naa.<16 hex digits>` port.
    fn sas_address(&self) -> Option<u64> {
        let hex = self.name.strip_prefix("naa.")?;
        if self.isid != Some(NO_ISID) || hex.len() != 16 {
            return None;
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    /// Encode as a TransportID: SAS for a `naa.` port, else iSCSI (format
    /// 01b for a port, 00b for a device name, NUL terminated and padded to
    /// a multiple of four).
    pub fn encode_transport_id(&self) -> Vec<u8> {
        if let Some(address) = self.sas_address() {
            let mut v = vec![0u8; SAS_TRANSPORT_ID_LEN];
            v[0] = PROTOCOL_SAS; // format 00b
            v[4..12].copy_from_slice(&address.to_be_bytes());
            return v;
        }
        let text = self.text();
        let format: u8 = match self.isid {
            Some(isid) if isid != NO_ISID => 0b01,
            _ => 0b00,
        };
        // Name + NUL, padded to a multiple of 4, at least 20 bytes.
        let len = (text.len() + 1).div_ceil(4).max(5) * 4;
        let mut v = Vec::with_capacity(4 + len);
        v.push((format << 6) | PROTOCOL_ISCSI);
        v.push(0);
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v.extend_from_slice(text.as_bytes());
        v.resize(4 + len, 0);
        v
    }
}

/// Parse the TransportID at `buf[at..]` (a parameter list; field pointers
/// are relative to its start). Returns the identity and the TransportID's
/// length.
pub(crate) fn parse_transport_id(buf: &[u8], at: usize) -> Result<(InitiatorId, usize), Sense> {
    let bad = |off: usize, bit: Option<u8>| Sense::invalid_param_field(at + off, bit);
    if buf.len() < at + 4 {
        return Err(crate::core::sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let b0 = buf[at];
    match b0 & 0x0f {
        PROTOCOL_ISCSI => {}
        PROTOCOL_SAS => return parse_sas(buf, at),
        _ => return Err(bad(0, Some(3))),
    }
    let format = b0 >> 6;
    if format > 1 || b0 & 0x30 != 0 {
        return Err(bad(0, Some(7)));
    }
    let add_len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
    if !add_len.is_multiple_of(4) || add_len == 0 {
        return Err(bad(2, Some(7)));
    }
    let total = 4 + add_len;
    if buf.len() < at + total {
        return Err(crate::core::sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let body = &buf[at + 4..at + total];
    let Some(nul) = body.iter().position(|&b| b == 0) else {
        return Err(bad(4, None));
    };
    let Ok(text) = std::str::from_utf8(&body[..nul]) else {
        return Err(bad(4, None));
    };
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(4, None));
    }
    let lower = text.to_ascii_lowercase();
    let id = match (format, lower.rfind(SEPARATOR)) {
        (0, None) => InitiatorId {
            name: lower,
            isid: None,
        },
        (1, Some(sep)) => {
            let hex = &lower[sep + SEPARATOR.len()..];
            let isid = if hex.is_empty() || hex.len() > 12 {
                None
            } else {
                u64::from_str_radix(hex, 16).ok()
            };
            let Some(isid) = isid else {
                return Err(bad(4 + sep + SEPARATOR.len(), None));
            };
            if sep == 0 {
                return Err(bad(4, None));
            }
            InitiatorId {
                name: lower[..sep].to_string(),
                isid: Some(isid),
            }
        }
        // Format 00b with a separator, or 01b without one.
        _ => return Err(bad(4, None)),
    };
    Ok((id, total))
}

/// A SAS TransportID: format 00b, 24 bytes, the address in bytes 4..12.
fn parse_sas(buf: &[u8], at: usize) -> Result<(InitiatorId, usize), Sense> {
    if buf[at] >> 6 != 0 || buf[at] & 0x30 != 0 {
        return Err(Sense::invalid_param_field(at, Some(7)));
    }
    let Some(t) = buf.get(at..at + SAS_TRANSPORT_ID_LEN) else {
        return Err(crate::core::sense::PARAMETER_LIST_LENGTH_ERROR);
    };
    let mut address = [0u8; 8];
    address.copy_from_slice(&t[4..12]);
    let id = InitiatorId {
        name: format!("naa.{:016x}", u64::from_be_bytes(address)),
        isid: Some(NO_ISID),
    };
    Ok((id, SAS_TRANSPORT_ID_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_parse() {
        let p = InitiatorId::from_port("IQN.1994-05.com.Example:host,i,0x23D000000001");
        assert_eq!(p.name, "iqn.1994-05.com.example:host");
        assert_eq!(p.isid, Some(0x23d0_0000_0001));
        assert_eq!(p.text(), "iqn.1994-05.com.example:host,i,0x23d000000001");
        // Short ISIDs (as test fixtures write them) compare as numbers.
        assert_eq!(
            InitiatorId::from_port("iqn.a,i,0x1"),
            InitiatorId::from_port("iqn.a,i,0x000000000001")
        );
        // A name that is not an iSCSI port name is one port of its own.
        let q = InitiatorId::from_port("naa.5001405abcdef");
        assert_eq!(q.name, "naa.5001405abcdef");
        assert!(q.isid.is_some());
    }

    #[test]
    fn coverage_and_overlap() {
        let port1 = InitiatorId::from_port("iqn.a,i,0x1");
        let port2 = InitiatorId::from_port("iqn.a,i,0x2");
        let device = InitiatorId {
            name: "iqn.a".into(),
            isid: None,
        };
        assert!(port1.covers(&port1));
        assert!(!port1.covers(&port2));
        assert!(device.covers(&port1) && device.covers(&port2));
        assert!(!device.covers(&InitiatorId::from_port("iqn.b,i,0x1")));
        assert!(device.overlaps(&port2) && port2.overlaps(&device));
        assert!(!port1.overlaps(&port2));
    }

    #[test]
    fn transport_ids_round_trip() {
        for id in [
            InitiatorId::from_port(
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test,i,0x23d000000001",
            ),
            InitiatorId {
                name: "iqn.x".into(),
                isid: None,
            },
        ] {
            let t = id.encode_transport_id();
            assert_eq!(t.len() % 4, 0);
            assert!(t.len() >= 24);
            assert_eq!(t[0] & 0x0f, PROTOCOL_ISCSI);
            assert_eq!(t[0] >> 6, u8::from(id.isid.is_some()));
            let (back, len) = parse_transport_id(&t, 0).unwrap();
            assert_eq!((back, len), (id, t.len()));
        }
    }

    #[test]
    fn a_naa_port_is_named_by_its_sas_address() {
        // As a vhost-user-scsi controller names its VM (any case).
        let vm = InitiatorId::from_port("naa.5001405ABCDEF012");
        let t = vm.encode_transport_id();
        assert_eq!(t.len(), 24);
        assert_eq!(t[0], PROTOCOL_SAS, "format 00b, SAS");
        assert_eq!(&t[4..12], &[0x50, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12]);
        assert!(t[1..4].iter().chain(&t[12..]).all(|&b| b == 0));
        let (back, len) = parse_transport_id(&t, 0).unwrap();
        assert_eq!((&back, len), (&vm, 24));
        // A SAS TransportID in a parameter list names that port.
        let mut list = vec![0u8; 8];
        list.extend_from_slice(&t);
        assert!(parse_transport_id(&list, 8).unwrap().0.covers(&vm));
        // Short, or another format: refused with the field.
        assert_eq!(parse_transport_id(&t[..20], 0).unwrap_err().code(), 0x1a00);
        let mut t1 = t.clone();
        t1[0] |= 0x40;
        let e = parse_transport_id(&t1, 0).unwrap_err();
        assert_eq!((e.code(), e.field.unwrap().byte), (0x2600, 0));
        // Names that are not SAS addresses stay iSCSI TransportIDs.
        for name in [
            "naa.5001405abcdef",
            "naa.5001405abcdef0123",
            "naa.500140zabcdef012",
        ] {
            let t = InitiatorId::from_port(name).encode_transport_id();
            assert_eq!(t[0] & 0x0f, PROTOCOL_ISCSI, "{name}");
        }
    }

    #[test]
    fn bad_transport_ids() {
        let good = InitiatorId::from_port("iqn.a,i,0x1").encode_transport_id();
        // Not iSCSI (FCP, protocol 0).
        let mut t = good.clone();
        t[0] &= 0xf0;
        let e = parse_transport_id(&t, t.len() - 2).err();
        assert_eq!(e.unwrap().code(), 0x1a00, "nothing left to parse");
        let e = parse_transport_id(&t, 0).unwrap_err();
        assert_eq!((e.code(), e.field.unwrap().byte), (0x2600, 0));
        // Format 01b without the separator.
        let mut t = InitiatorId {
            name: "iqn.a".into(),
            isid: None,
        }
        .encode_transport_id();
        t[0] |= 0x40;
        assert_eq!(parse_transport_id(&t, 0).unwrap_err().code(), 0x2600);
        // Length not a multiple of four.
        let mut t = good.clone();
        t[3] = 21;
        let e = parse_transport_id(&t, 0).unwrap_err();
        assert_eq!((e.code(), e.field.unwrap().byte), (0x2600, 2));
        // Truncated.
        assert_eq!(
            parse_transport_id(&good[..good.len() - 4], 0)
                .unwrap_err()
                .code(),
            0x1a00
        );
        // No NUL terminator.
        let mut t = good.clone();
        for b in &mut t[4..] {
            if *b == 0 {
                *b = b'x';
            }
        }
        assert_eq!(parse_transport_id(&t, 0).unwrap_err().code(), 0x2600);
        // Field pointers are relative to the parameter list.
        let mut list = vec![0u8; 28];
        let mut t = good.clone();
        t[0] = 0x41; // format 01b, protocol 1 (SRP)
        list.extend_from_slice(&t);
        let e = parse_transport_id(&list, 28).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 28);
    }
}
