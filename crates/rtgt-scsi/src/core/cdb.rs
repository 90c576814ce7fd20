//! CDB field decoding: big-endian fields, the LBA / transfer length of the
//! READ / WRITE / VERIFY families, and the reserved-bit check against a
//! command's CDB usage mask.

use crate::core::sense::Sense;

pub fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn be64(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_be_bytes(x)
}

/// Where a CDB family keeps its LBA and transfer length, so that range and
/// length errors can point at the right bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaLen {
    pub lba: u64,
    pub len: u32,
    /// Byte offset of the transfer length field (for field pointers).
    pub len_offset: usize,
}

/// LBA and transfer length of a 6-byte READ/WRITE CDB (21-bit LBA; length
/// 0 means 256 blocks).
pub fn lba_len6(cdb: &[u8]) -> LbaLen {
    let lba = (be24(&cdb[1..4]) & 0x1f_ffff) as u64;
    let len = match cdb[4] {
        0 => 256,
        n => n as u32,
    };
    LbaLen {
        lba,
        len,
        len_offset: 4,
    }
}

/// LBA and transfer length of a 10-byte CDB (bytes 2..6, 7..9).
pub fn lba_len10(cdb: &[u8]) -> LbaLen {
    LbaLen {
        lba: be32(&cdb[2..6]) as u64,
        len: be16(&cdb[7..9]) as u32,
        len_offset: 7,
    }
}

/// LBA and transfer length of a 12-byte CDB (bytes 2..6, 6..10).
pub fn lba_len12(cdb: &[u8]) -> LbaLen {
    LbaLen {
        lba: be32(&cdb[2..6]) as u64,
        len: be32(&cdb[6..10]),
        len_offset: 6,
    }
}

/// LBA and transfer length of a 16-byte CDB (bytes 2..10, 10..14).
pub fn lba_len16(cdb: &[u8]) -> LbaLen {
    LbaLen {
        lba: be64(&cdb[2..10]),
        len: be32(&cdb[10..14]),
        len_offset: 10,
    }
}

/// Check `cdb` against its usage mask: any bit set in the CDB that the mask
/// does not allow is a reserved (or unsupported) bit and fails with INVALID
/// FIELD IN CDB pointing at the most significant offending bit. Byte 0 (the
/// opcode) is not checked; in byte 1 `sa_bits` (the service action field of
/// commands that have one) are skipped. The vendor-specific bits (7:6) of
/// the CONTROL byte are ignored; NACA and LINK are not supported.
pub fn check_reserved(cdb: &[u8], usage: &[u8], sa_bits: u8) -> Result<(), Sense> {
    let last = usage.len() - 1;
    for i in 1..usage.len() {
        let mut allowed = usage[i];
        if i == 1 {
            allowed |= sa_bits;
        }
        if i == last {
            allowed |= 0xc0;
        }
        let bad = cdb[i] & !allowed;
        if bad != 0 {
            let bit = 7 - bad.leading_zeros() as u8;
            return Err(Sense::invalid_cdb_field(i, Some(bit)));
        }
    }
    Ok(())
}

#[cfg(test)]
/// CDB length by opcode group (SPC-4 4.2.5.1); `None` for the
/// variable-length and vendor-specific groups.
pub fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sense::FieldPointer;

    #[test]
    fn decode_lba_lengths() {
        let r6 = [0x08, 0x1f, 0xff, 0xfe, 0x00, 0x00];
        assert_eq!(
            lba_len6(&r6),
            LbaLen {
                lba: 0x1f_fffe,
                len: 256,
                len_offset: 4
            }
        );
        let r6 = [0x08, 0xe0, 0x00, 0x01, 0x07, 0x00];
        assert_eq!(lba_len6(&r6).lba, 1); // bits 7:5 of byte 1 are not LBA
        assert_eq!(lba_len6(&r6).len, 7);
        let r10 = [0x28, 0, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x02, 0];
        assert_eq!(
            lba_len10(&r10),
            LbaLen {
                lba: 0x1234_5678,
                len: 0x102,
                len_offset: 7
            }
        );
        let mut r12 = [0u8; 12];
        r12[0] = 0xa8;
        r12[2..6].copy_from_slice(&7u32.to_be_bytes());
        r12[6..10].copy_from_slice(&0x10000u32.to_be_bytes());
        assert_eq!(
            lba_len12(&r12),
            LbaLen {
                lba: 7,
                len: 0x10000,
                len_offset: 6
            }
        );
        let mut r16 = [0u8; 16];
        r16[0] = 0x88;
        r16[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
        r16[10..14].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            lba_len16(&r16),
            LbaLen {
                lba: u64::MAX,
                len: 9,
                len_offset: 10
            }
        );
    }

    #[test]
    fn reserved_bits_point_at_the_offending_bit() {
        let usage = [0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00];
        let ok = [0x28, 0x18, 1, 2, 3, 4, 0x1f, 0, 1, 0];
        assert!(check_reserved(&ok, &usage, 0).is_ok());
        // RDPROTECT (bits 7:5 of byte 1) is not in the mask.
        let mut bad = ok;
        bad[1] = 0x60;
        let e = check_reserved(&bad, &usage, 0).unwrap_err();
        assert_eq!((e.asc, e.ascq), (0x24, 0));
        assert_eq!(
            e.field,
            Some(FieldPointer {
                in_cdb: true,
                byte: 1,
                bit: Some(6)
            })
        );
        // Byte 6 bit 5.
        let mut bad = ok;
        bad[6] = 0x20;
        let e = check_reserved(&bad, &usage, 0).unwrap_err();
        assert_eq!(
            e.field,
            Some(FieldPointer {
                in_cdb: true,
                byte: 6,
                bit: Some(5)
            })
        );
        // NACA in the CONTROL byte.
        let mut bad = ok;
        bad[9] = 0x04;
        let e = check_reserved(&bad, &usage, 0).unwrap_err();
        assert_eq!(
            e.field,
            Some(FieldPointer {
                in_cdb: true,
                byte: 9,
                bit: Some(2)
            })
        );
        // Vendor-specific control bits are ignored.
        let mut vs = ok;
        vs[9] = 0xc0;
        assert!(check_reserved(&vs, &usage, 0).is_ok());
    }

    #[test]
    fn service_action_bits_are_skipped() {
        let usage = [
            0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0x00,
        ];
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x10;
        assert!(check_reserved(&cdb, &usage, 0x1f).is_ok());
        cdb[1] = 0x30;
        let e = check_reserved(&cdb, &usage, 0x1f).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 1);
        assert_eq!(e.field.unwrap().bit, Some(5));
    }

    #[test]
    fn group_lengths() {
        assert_eq!(cdb_len(0x28), Some(10));
        assert_eq!(cdb_len(0x08), Some(6));
        assert_eq!(cdb_len(0x88), Some(16));
        assert_eq!(cdb_len(0xa0), Some(12));
        assert_eq!(cdb_len(0x7f), None);
    }
}
