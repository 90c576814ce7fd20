//! The 8-byte SAM LUN field.

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
