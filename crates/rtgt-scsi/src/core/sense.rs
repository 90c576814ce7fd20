//! Sense data (SPC-4 4.5): the condition (key / ASC / ASCQ), the optional
//! sense-key-specific field pointer and information field, and their
//! encoding in fixed (70h) or descriptor (72h) format.

/// Sense keys (SPC-4 table 27).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const RECOVERED_ERROR: u8 = 0x1;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xb;
    pub const MISCOMPARE: u8 = 0xe;
}

/// Sense-key-specific bytes for ILLEGAL REQUEST: the field pointer to the
/// byte (and optionally bit) that was wrong, in the CDB or in the parameter
/// list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true: the error is in the CDB; false: in the parameter list.
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// Bit of the field's most significant bit (0..=7), if given.
    pub bit: Option<u8>,
}

impl FieldPointer {
    /// The three sense-key-specific bytes (SKSV set).
    pub fn encode(&self) -> [u8; 3] {
        let mut b0 = 0x80;
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 7);
        }
        [b0, (self.byte >> 8) as u8, self.byte as u8]
    }
}

/// A sense condition: key, additional sense code and qualifier, plus the
/// optional sense-key-specific field pointer and information field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// Sense-key-specific field pointer (INVALID FIELD IN CDB / PARAMETER
    /// LIST).
    pub field: Option<FieldPointer>,
    /// Information field (e.g. offset of the first miscompare).
    pub info: Option<u64>,
    /// Sense-key-specific progress indication (NOT READY while a sanitize
    /// or format runs), in 65536ths; ignored when `field` is set.
    pub progress: Option<u16>,
}

/// Length of fixed-format sense data as we produce it.
pub const FIXED_LEN: usize = 18;

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            field: None,
            info: None,
            progress: None,
        }
    }

    /// The sense-key-specific bytes, if any.
    fn sks(&self) -> Option<[u8; 3]> {
        match (self.field, self.progress) {
            (Some(f), _) => Some(f.encode()),
            (None, Some(p)) => Some([0x80, (p >> 8) as u8, p as u8]),
            (None, None) => None,
        }
    }

    /// ASC/ASCQ as one 16-bit number (libiscsi's convention), for tests
    /// and logs.
    pub fn code(&self) -> u16 {
        ((self.asc as u16) << 8) | self.ascq as u16
    }

    pub fn with_info(mut self, info: u64) -> Sense {
        self.info = Some(info);
        self
    }

    /// INVALID FIELD IN CDB pointing at `byte`, `bit`.
    pub fn invalid_cdb_field(byte: usize, bit: Option<u8>) -> Sense {
        Sense {
            field: Some(FieldPointer {
                in_cdb: true,
                byte: byte as u16,
                bit,
            }),
            ..INVALID_FIELD_IN_CDB
        }
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte`, `bit`.
    pub fn invalid_param_field(byte: usize, bit: Option<u8>) -> Sense {
        Sense {
            field: Some(FieldPointer {
                in_cdb: false,
                byte: byte as u16,
                bit,
            }),
            ..INVALID_FIELD_IN_PARAMETER_LIST
        }
    }

    /// Encode in fixed (`descriptor == false`) or descriptor format.
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        self.encode_into(descriptor, &mut v);
        v
    }

    /// Append the encoded sense data to `out`.
    pub fn encode_into(&self, descriptor: bool, out: &mut Vec<u8>) {
        if descriptor {
            let start = out.len();
            out.extend_from_slice(&[0x72, self.key & 0xf, self.asc, self.ascq, 0, 0, 0, 0]);
            if let Some(info) = self.info {
                // Information descriptor (type 00h).
                out.extend_from_slice(&[0x00, 0x0a, 0x80, 0]);
                out.extend_from_slice(&info.to_be_bytes());
            }
            if let Some(sks) = self.sks() {
                // Sense key specific descriptor (type 02h).
                out.extend_from_slice(&[0x02, 0x06, 0, 0]);
                out.extend_from_slice(&sks);
                out.push(0);
            }
            out[start + 7] = (out.len() - start - 8) as u8;
        } else {
            let mut b = [0u8; FIXED_LEN];
            b[0] = 0x70;
            b[2] = self.key & 0xf;
            if let Some(info) = self.info {
                // Four bytes in fixed format; VALID only when it fits.
                if info <= u32::MAX as u64 {
                    b[0] |= 0x80;
                }
                b[3..7].copy_from_slice(&(info as u32).to_be_bytes());
            }
            b[7] = (FIXED_LEN - 8) as u8;
            b[12] = self.asc;
            b[13] = self.ascq;
            if let Some(sks) = self.sks() {
                b[15..18].copy_from_slice(&sks);
            }
            out.extend_from_slice(&b);
        }
    }

    /// Decode fixed or descriptor sense data (for tests and tools).
    pub fn decode(b: &[u8]) -> Option<Sense> {
        match b.first()? & 0x7f {
            0x70 | 0x71 => {
                if b.len() < 14 {
                    return None;
                }
                let mut s = Sense::new(b[2] & 0xf, b[12], b[13]);
                if b[0] & 0x80 != 0 {
                    s.info = Some(u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as u64);
                }
                if b.len() >= 18 && b[15] & 0x80 != 0 {
                    s.set_sks(&b[15..18]);
                }
                Some(s)
            }
            0x72 | 0x73 => {
                if b.len() < 8 {
                    return None;
                }
                let mut s = Sense::new(b[1] & 0xf, b[2], b[3]);
                let end = (8 + b[7] as usize).min(b.len());
                let mut i = 8;
                while i + 2 <= end {
                    let (ty, len) = (b[i], b[i + 1] as usize);
                    let d = &b[i..(i + 2 + len).min(end)];
                    match ty {
                        0x00 if d.len() >= 12 => {
                            let mut x = [0u8; 8];
                            x.copy_from_slice(&d[4..12]);
                            s.info = Some(u64::from_be_bytes(x));
                        }
                        0x02 if d.len() >= 7 && d[4] & 0x80 != 0 => {
                            s.set_sks(&d[4..7]);
                        }
                        _ => {}
                    }
                    i += 2 + len;
                }
                Some(s)
            }
            _ => None,
        }
    }
}

impl Sense {
    /// Sense-key-specific bytes: a progress indication for NOT READY, else a
    /// field pointer.
    fn set_sks(&mut self, b: &[u8]) {
        if self.key == key::NOT_READY {
            self.progress = Some(u16::from_be_bytes([b[1], b[2]]));
        } else {
            self.field = Some(decode_sks(b));
        }
    }
}

fn decode_sks(b: &[u8]) -> FieldPointer {
    FieldPointer {
        in_cdb: b[0] & 0x40 != 0,
        byte: u16::from_be_bytes([b[1], b[2]]),
        bit: if b[0] & 0x08 != 0 {
            Some(b[0] & 7)
        } else {
            None
        },
    }
}

// The conditions the core reports.
pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0x00, 0x00);
pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
pub const LU_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
pub const INVALID_FIELD_IN_PARAMETER_LIST: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
pub const PARAMETER_LIST_LENGTH_ERROR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1a, 0x00);
pub const INVALID_FIELD_IN_INFORMATION_UNIT: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x0e, 0x03);
pub const SAVING_PARAMETERS_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
pub const SOFTWARE_WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x02);
pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);
/// A thin LU whose backing store ran out of space (SBC-4 4.7.3.7).
pub const SPACE_ALLOCATION_FAILED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x07);
/// The medium did not answer in time (a cluster's operation deadline):
/// ABORTED COMMAND, which initiators retry.
pub const TIMEOUT_ON_LOGICAL_UNIT: Sense = Sense::new(key::ABORTED_COMMAND, 0x3e, 0x02);
/// The medium behind the LU is gone (a block device removed).
pub const NOT_READY_MANUAL_INTERVENTION: Sense = Sense::new(key::NOT_READY, 0x04, 0x03);
pub const MISCOMPARE_DURING_VERIFY: Sense = Sense::new(key::MISCOMPARE, 0x1d, 0x00);
pub const INTERNAL_TARGET_FAILURE: Sense = Sense::new(key::HARDWARE_ERROR, 0x44, 0x00);
pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(key::NOT_READY, 0x3a, 0x00);
pub const MEDIUM_REMOVAL_PREVENTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02);
pub const SANITIZE_IN_PROGRESS: Sense = Sense::new(key::NOT_READY, 0x04, 0x1b);
pub const SANITIZE_FAILED: Sense = Sense::new(key::MEDIUM_ERROR, 0x31, 0x03);
// ALUA (SPC-4 5.15): the LU is not accessible through this target port.
pub const ALUA_TRANSITIONING: Sense = Sense::new(key::NOT_READY, 0x04, 0x0a);
pub const ALUA_STANDBY: Sense = Sense::new(key::NOT_READY, 0x04, 0x0b);
pub const ALUA_UNAVAILABLE: Sense = Sense::new(key::NOT_READY, 0x04, 0x0c);
pub const ALUA_OFFLINE: Sense = Sense::new(key::NOT_READY, 0x04, 0x12);
// Unit attentions.
pub const UA_ASYMMETRIC_ACCESS_STATE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x06);
pub const UA_IMPLICIT_TRANSITION_FAILED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x07);
pub const UA_POWER_ON_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
pub const UA_LUN_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
pub const UA_MODE_PARAMETERS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x01);
pub const UA_CAPACITY_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x09);
pub const UA_REPORTED_LUNS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3f, 0x0e);
pub const UA_COMMANDS_CLEARED_BY_ANOTHER: Sense = Sense::new(key::UNIT_ATTENTION, 0x2f, 0x00);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_with_field_pointer() {
        let s = Sense::invalid_cdb_field(1, Some(7));
        let b = s.encode(false);
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        // SKSV | C/D | BPV | bit 7, field byte 1.
        assert_eq!(&b[15..18], &[0xc8 | 7, 0, 1]);
        assert_eq!(Sense::decode(&b), Some(s));
    }

    #[test]
    fn fixed_format_plain() {
        let b = LBA_OUT_OF_RANGE.encode(false);
        assert_eq!(b[0], 0x70);
        assert_eq!(&b[15..18], &[0, 0, 0]);
        assert_eq!(Sense::decode(&b), Some(LBA_OUT_OF_RANGE));
    }

    #[test]
    fn fixed_format_information() {
        let s = MISCOMPARE_DURING_VERIFY.with_info(513);
        let b = s.encode(false);
        assert_eq!(b[0], 0xf0);
        assert_eq!(&b[3..7], &[0, 0, 2, 1]);
        assert_eq!(b[2], 0x0e);
        assert_eq!(Sense::decode(&b), Some(s));
    }

    #[test]
    fn descriptor_format() {
        let b = LBA_OUT_OF_RANGE.encode(true);
        assert_eq!(b, vec![0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]);

        let s = Sense::invalid_param_field(12, None).with_info(0x1_0000_0000);
        let b = s.encode(true);
        assert_eq!(b[0], 0x72);
        assert_eq!(b[7] as usize, b.len() - 8);
        assert_eq!(b.len(), 8 + 12 + 8);
        // Information descriptor.
        assert_eq!(&b[8..12], &[0x00, 0x0a, 0x80, 0x00]);
        assert_eq!(&b[12..20], &0x1_0000_0000u64.to_be_bytes());
        // Sense key specific descriptor: SKSV, C/D=0, no bit pointer.
        assert_eq!(&b[20..28], &[0x02, 0x06, 0, 0, 0x80, 0, 12, 0]);
        assert_eq!(Sense::decode(&b), Some(s));
    }
}
