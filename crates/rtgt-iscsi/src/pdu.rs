//! iSCSI PDU framing (RFC 7143 section 11): the 48-byte Basic Header
//! Segment, additional header segments, digests and the data segment.
//!
//! The BHS is kept as raw bytes with typed accessors rather than decoded
//! into an enum: the hot path reads three or four fields of a SCSI Command
//! or Data-Out and builds Data-In headers in place, and raw bytes make that
//! a handful of loads and stores.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Opcodes (RFC 7143 11.1.1).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_CMD: u8 = 0x01;
    pub const TMF_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK_REQ: u8 = 0x10;

    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RSP: u8 = 0x21;
    pub const TMF_RSP: u8 = 0x22;
    pub const LOGIN_RSP: u8 = 0x23;
    pub const TEXT_RSP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RSP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MSG: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 11.17.1).
pub mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// The reserved tag value (ITT / TTT "none").
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// A Basic Header Segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bhs(op={:#04x} flags={:#04x} itt={:#x} dsl={})",
            self.opcode(),
            self.flags(),
            self.itt(),
            self.data_len()
        )
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl Bhs {
    /// A zeroed header with the opcode set.
    pub fn new(opcode: u8) -> Self {
        let mut b = [0u8; BHS_LEN];
        b[0] = opcode & 0x3f;
        Bhs(b)
    }

    pub fn opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }
    /// The I (immediate delivery) bit of initiator PDUs.
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    pub fn set_flags(&mut self, f: u8) {
        self.0[1] = f;
    }
    /// The F (final) bit.
    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// TotalAHSLength in bytes.
    pub fn ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    pub fn data_len(&self) -> usize {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]]) as usize
    }
    pub fn set_data_len(&mut self, len: usize) {
        debug_assert!(len < 1 << 24);
        let b = (len as u32).to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..4]);
    }
    pub fn lun(&self) -> [u8; 8] {
        self.0[8..16].try_into().unwrap()
    }
    pub fn set_lun(&mut self, lun: [u8; 8]) {
        self.0[8..16].copy_from_slice(&lun);
    }
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    pub fn set_itt(&mut self, v: u32) {
        self.set_u32_at(16, v)
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    pub fn set_u32_at(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }
    pub fn set_u16_at(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }

    // Fields shared by most PDUs, named for readability at call sites.
    /// CmdSN of initiator requests (offset 24).
    pub fn cmdsn(&self) -> u32 {
        self.u32_at(24)
    }
    /// ExpStatSN of initiator requests (offset 28).
    pub fn exp_statsn(&self) -> u32 {
        self.u32_at(28)
    }
    /// Target Transfer Tag (offset 20) of Data-Out, NOP-Out, Text.
    pub fn ttt(&self) -> u32 {
        self.u32_at(20)
    }
    /// Whether target-originated PDUs of this opcode carry StatSN that
    /// advances the status sequence.
    pub fn advances_statsn(&self) -> bool {
        match self.opcode() {
            op::SCSI_RSP
            | op::TMF_RSP
            | op::LOGIN_RSP
            | op::TEXT_RSP
            | op::LOGOUT_RSP
            | op::REJECT
            | op::ASYNC_MSG => true,
            // Data-In advances StatSN only when it carries status.
            op::DATA_IN => self.0[1] & 0x01 != 0,
            // A NOP-In advances it only when it answers a NOP-Out
            // (ITT != reserved); a target ping does not.
            op::NOP_IN => self.itt() != RESERVED_TAG,
            _ => false,
        }
    }
}

/// Round up to the 4-byte padding of data segments.
pub fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// CRC32C digest as iSCSI uses it (the crate's standard Castagnoli CRC,
/// sent little-endian on the wire).
pub fn digest(parts: &[&[u8]]) -> u32 {
    let mut crc = 0u32;
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_len_roundtrip() {
        let mut b = Bhs::new(op::DATA_IN);
        b.set_data_len(0x12_3456);
        assert_eq!(b.data_len(), 0x12_3456);
        assert_eq!(&b.0[5..8], &[0x12, 0x34, 0x56]);
    }

    #[test]
    fn statsn_rules() {
        let mut d = Bhs::new(op::DATA_IN);
        assert!(!d.advances_statsn());
        d.set_flags(0x81);
        assert!(d.advances_statsn());
        let mut n = Bhs::new(op::NOP_IN);
        n.set_itt(RESERVED_TAG);
        assert!(!n.advances_statsn());
        n.set_itt(7);
        assert!(n.advances_statsn());
        assert!(!Bhs::new(op::R2T).advances_statsn());
    }

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeroes.
        assert_eq!(digest(&[&[0u8; 32]]), 0x8a91_36aa);
        // Split input gives the same digest.
        assert_eq!(digest(&[&[0u8; 7], &[0u8; 25]]), 0x8a91_36aa);
    }

    #[test]
    fn padding() {
        assert_eq!(padded(0), 0);
        assert_eq!(padded(1), 4);
        assert_eq!(padded(4), 4);
        assert_eq!(padded(513), 516);
    }
}
