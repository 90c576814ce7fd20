//! Vital product data pages (SPC-4 7.8, SBC-4 6.6): 00h supported pages,
//! 80h unit serial number, 83h device identification, 86h extended
//! INQUIRY data, B0h block limits, B1h block device characteristics, B2h
//! logical block provisioning.

use crate::api::TargetPort;
use crate::lu::LogicalUnit;

/// Supported VPD pages, ascending.
pub const SUPPORTED: [u8; 8] = [0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2];

/// Largest transfer we accept in one command, in bytes (B0h MAXIMUM
/// TRANSFER LENGTH; longer READ/WRITE/VERIFY commands are refused).
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;

/// Optimal transfer length reported in B0h, in bytes.
pub const OPTIMAL_TRANSFER_BYTES: u32 = 1 << 20;

/// MAXIMUM TRANSFER LENGTH in blocks for a block size.
pub fn max_transfer_blocks(block_size: u32) -> u32 {
    MAX_TRANSFER_BYTES / block_size
}

/// Protocol identifier for the designators associated with the target
/// port: iSCSI (5h) when the port name is an iSCSI one, else none given.
fn protocol_id(port: &TargetPort) -> Option<u8> {
    port.name.contains(",t,0x").then_some(0x5)
}

/// Build page `code`, or `None` if it is not supported.
pub(crate) fn page(lu: &LogicalUnit, port: &TargetPort, code: u8) -> Option<Vec<u8>> {
    let mut d = vec![0x00, code, 0, 0];
    match code {
        0x00 => d.extend_from_slice(&SUPPORTED),
        0x80 => {
            let serial: Vec<u8> = lu
                .config
                .serial
                .bytes()
                .filter(|b| (0x20..=0x7e).contains(b))
                .take(250)
                .collect();
            d.extend_from_slice(&serial);
        }
        0x83 => device_identification(lu, port, &mut d),
        0x86 => {
            d.resize(64, 0);
            // HEADSUP, ORDSUP, SIMPSUP.
            d[5] = 0x07;
            // V_SUP: volatile write cache we can flush.
            d[6] = 0x01;
        }
        0xb0 => {
            d.resize(64, 0);
            let bs = lu.block_size();
            let phys = lu.physical_block_size();
            // OPTIMAL TRANSFER LENGTH GRANULARITY: a physical block.
            d[6..8].copy_from_slice(&((phys / bs).min(0xffff) as u16).to_be_bytes());
            d[8..12].copy_from_slice(&max_transfer_blocks(bs).to_be_bytes());
            d[12..16].copy_from_slice(&(OPTIMAL_TRANSFER_BYTES / bs).to_be_bytes());
            // MAXIMUM PREFETCH LENGTH.
            d[16..20].copy_from_slice(&max_transfer_blocks(bs).to_be_bytes());
            block_limits_vaai(lu, &mut d);
        }
        0x8f => d.extend_from_slice(&crate::xcopy::vpd_page(lu)),
        0xb1 => {
            d.resize(64, 0);
            // MEDIUM ROTATION RATE: non-rotating medium.
            d[4..6].copy_from_slice(&1u16.to_be_bytes());
            // WABEREQ 01b: after SANITIZE BLOCK ERASE (thin LUs only) reads
            // succeed with the data LBPRZ describes; WACEREQ 00b: no CRYPTO
            // ERASE.
            if crate::sbc::sanitize::block_erase_offered(lu) {
                d[7] = 0x40;
            }
        }
        0xb2 => {
            d.resize(8, 0);
            if lu.config.thin {
                // LBPU, LBPWS, LBPWS10; LBPRZ 001b when unmapped blocks
                // read as zeroes; ANC_SUP=0; provisioning type 010b: thin.
                d[5] = 0xe0 | if crate::sbc::thin::lbprz(lu) { 0x04 } else { 0 };
                d[6] = 0x02;
            }
        }
        _ => return None,
    }
    let len = (d.len() - 4) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    Some(d)
}

/// The block limits (B0h) of UNMAP, WRITE SAME, COMPARE AND WRITE and
/// WRITE ATOMIC, into the 64-byte page `d`.
fn block_limits_vaai(lu: &LogicalUnit, d: &mut [u8]) {
    let bs = lu.block_size();
    // WSNZ=0: WRITE SAME with zero blocks writes to the end of the medium.
    d[5] = crate::sbc::atomic::MAX_COMPARE_AND_WRITE_BLOCKS;
    if lu.config.thin {
        d[20..24].copy_from_slice(&crate::sbc::thin::MAX_UNMAP_LBA_COUNT.to_be_bytes());
        d[24..28].copy_from_slice(&crate::sbc::thin::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        // OPTIMAL UNMAP GRANULARITY: what the medium frees in; UGAVALID
        // with alignment 0.
        let gran = (lu.config.backstore.discard_granularity() / bs).max(1);
        d[28..32].copy_from_slice(&gran.to_be_bytes());
        d[32..36].copy_from_slice(&0x8000_0000u32.to_be_bytes());
    }
    d[36..44].copy_from_slice(&crate::sbc::thin::MAX_WRITE_SAME_BLOCKS.to_be_bytes());
    // MAXIMUM ATOMIC TRANSFER LENGTH; no alignment or granularity
    // requirement; no atomic boundaries.
    d[44..48].copy_from_slice(&crate::sbc::atomic::max_atomic_blocks(bs).to_be_bytes());
}

/// Append one designation descriptor.
fn designator(d: &mut Vec<u8>, proto: Option<u8>, code_set: u8, assoc: u8, ty: u8, id: &[u8]) {
    let (piv, p) = match proto {
        Some(p) => (0x80, p),
        None => (0, 0),
    };
    d.push((p << 4) | code_set);
    d.push(piv | (assoc << 4) | ty);
    d.push(0);
    d.push(id.len() as u8);
    d.extend_from_slice(id);
}

/// A SCSI name string designator value: UTF-8, NUL terminated, padded to a
/// multiple of four bytes (at most 256).
fn name_string(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(251).collect();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

fn device_identification(lu: &LogicalUnit, port: &TargetPort, d: &mut Vec<u8>) {
    const BINARY: u8 = 1;
    const UTF8: u8 = 3;
    const LU: u8 = 0b00;
    const PORT: u8 = 0b01;
    const DEVICE: u8 = 0b10;
    let proto = protocol_id(port);
    // The NAA designator of the logical unit.
    designator(d, None, BINARY, LU, 0x3, lu.config.naa.as_bytes());
    // Relative target port identifier.
    let mut rel = [0u8; 4];
    rel[2..4].copy_from_slice(&port.relative_port_id.to_be_bytes());
    designator(d, proto, BINARY, PORT, 0x4, &rel);
    // Target port group.
    let mut tpg = [0u8; 4];
    tpg[2..4].copy_from_slice(&port.group.id().to_be_bytes());
    designator(d, proto, BINARY, PORT, 0x5, &tpg);
    // SCSI name string of the target port.
    designator(d, proto, UTF8, PORT, 0x8, &name_string(&port.name));
    // SCSI name string of the target device.
    designator(d, proto, UTF8, DEVICE, 0x8, &name_string(&port.target_name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// Parse the designators of a device identification page.
    fn designators(p: &[u8]) -> Vec<(u8, u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 4;
        while i + 4 <= p.len() {
            let len = p[i + 3] as usize;
            out.push((
                p[i] & 0xf,
                (p[i + 1] >> 4) & 3,
                p[i + 1] & 0xf,
                p[i + 4..i + 4 + len].to_vec(),
            ));
            i += 4 + len;
        }
        assert_eq!(i, p.len());
        out
    }

    #[test]
    fn every_supported_page_builds_with_the_right_length() {
        let lu = mem_lu(4096, 512);
        let port = test_port();
        for &code in SUPPORTED.iter() {
            let p = page(&lu, &port, code).unwrap();
            assert_eq!(p[1], code);
            assert_eq!(
                u16::from_be_bytes([p[2], p[3]]) as usize,
                p.len() - 4,
                "page {code:02x}"
            );
        }
        assert!(page(&lu, &port, 0x42).is_none());
        let p0 = page(&lu, &port, 0).unwrap();
        assert_eq!(&p0[4..], &SUPPORTED);
    }

    #[test]
    fn serial_and_identification() {
        let lu = mem_lu(4096, 512);
        let port = test_port();
        let p = page(&lu, &port, 0x80).unwrap();
        assert_eq!(&p[4..], lu.config.serial.as_bytes());

        let p = page(&lu, &port, 0x83).unwrap();
        let ds = designators(&p);
        // NAA, LU association, binary.
        assert_eq!(ds[0], (1, 0, 3, lu.config.naa.as_bytes().to_vec()));
        assert_eq!(ds[0].3[0] >> 4, 3, "locally assigned by default");
        // Relative target port 1, port association.
        assert_eq!(ds[1], (1, 1, 4, vec![0, 0, 0, 1]));
        // Target port group 7.
        assert_eq!(ds[2], (1, 1, 5, vec![0, 0, 0, 7]));
        // SCSI name strings, UTF-8, NUL padded to 4.
        assert_eq!(ds[3].0, 3);
        assert_eq!((ds[3].1, ds[3].2), (1, 8));
        assert_eq!(ds[3].3.len() % 4, 0);
        assert!(ds[3].3.starts_with(port.name.as_bytes()));
        assert_eq!((ds[4].1, ds[4].2), (2, 8));
        assert!(ds[4].3.starts_with(port.target_name.as_bytes()));
        // iSCSI protocol identifier with PIV on the port designators.
        assert_eq!(p[4 + 12] >> 4, 5);
        assert_eq!(p[4 + 12 + 1] & 0x80, 0x80);
    }

    #[test]
    fn block_limits_and_characteristics() {
        let lu = mem_lu(4096, 512);
        let port = test_port();
        let p = page(&lu, &port, 0xb0).unwrap();
        assert_eq!(p[3], 0x3c);
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), 16384);
        assert_eq!(u32::from_be_bytes([p[12], p[13], p[14], p[15]]), 2048);
        // WSNZ=0, MAXIMUM COMPARE AND WRITE LENGTH.
        assert_eq!((p[4], p[5]), (0, 255));
        let be32 = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        // Thin (the test store discards): unmap limits, granularity 1.
        assert_eq!(be32(20), crate::sbc::thin::MAX_UNMAP_LBA_COUNT);
        assert_eq!(be32(24), crate::sbc::thin::MAX_UNMAP_DESCRIPTORS);
        assert_eq!(be32(28), 1);
        assert_eq!(be32(32), 0x8000_0000, "UGAVALID, alignment 0");
        assert_eq!(
            &p[36..44],
            &0xffffu64.to_be_bytes(),
            "MAXIMUM WRITE SAME LENGTH"
        );
        assert_eq!(be32(44), 16384, "MAXIMUM ATOMIC TRANSFER LENGTH");
        assert_eq!(
            (be32(48), be32(52)),
            (0, 0),
            "no atomic alignment/granularity"
        );
        let p = page(&lu, &port, 0xb2).unwrap();
        assert_eq!(
            (p[3], p[5], p[6]),
            (4, 0xe4, 0x02),
            "LBPU, LBPWS(10), LBPRZ, thin"
        );

        // A fully provisioned LU reports no UNMAP.
        let mut cfg = crate::lu::LuConfig::new("fat", lu.config.backstore.clone());
        cfg.thin = false;
        let fat = crate::lu::LogicalUnit::new(cfg);
        let p = page(&fat, &port, 0xb0).unwrap();
        assert_eq!(&p[20..36], &[0; 16], "no UNMAP limits without UNMAP");
        assert_eq!(
            &p[36..44],
            &0xffffu64.to_be_bytes(),
            "WRITE SAME still works"
        );
        let p = page(&fat, &port, 0xb2).unwrap();
        assert_eq!((p[5], p[6]), (0, 0));
        let p = page(&lu, &port, 0xb1).unwrap();
        assert_eq!(p[3], 0x3c);
        assert_eq!(&p[4..6], &[0, 1]);
        let p = page(&lu, &port, 0x86).unwrap();
        assert_eq!(p[5], 0x07);
    }
}
