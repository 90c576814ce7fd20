//! INQUIRY (SPC-4 6.6): standard inquiry data, and dispatch to the VPD
//! pages in [`crate::spc::vpd`].

use crate::core::cdb::be16;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::Sense;
use crate::lu::LogicalUnit;
use crate::spc::vpd;

/// Version descriptors claimed: SAM-5, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 3] = [0x00a0, 0x0460, 0x04c0];

/// Length of the standard inquiry data we return.
pub const STANDARD_LEN: usize = 96;

pub(crate) fn decode(d: &Decode<'_>) -> Result<Plan, Sense> {
    let evpd = d.cdb[1] & 1 != 0;
    let page = d.cdb[2];
    if !evpd && page != 0 {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    }
    if evpd && !vpd::SUPPORTED.contains(&page) {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    }
    Ok(Plan::emulate(execute).with_alloc_len(be16(&d.cdb[3..5]) as u32))
}

fn execute(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let evpd = c.cdb[1] & 1 != 0;
    let page = c.cdb[2];
    match c.lu {
        // LUN not mapped: peripheral qualifier 011b, device type 1Fh.
        None if evpd => Ok(vec![0x7f, page, 0, 0]),
        None => Ok(standard(None)),
        Some(lu) if evpd => vpd::page(lu, c.nexus.target_port(), page)
            .ok_or_else(|| Sense::invalid_cdb_field(2, Some(7))),
        Some(lu) => {
            let mut d = standard(Some(lu));
            // TPGS: how the access states of the port's group change.
            d[5] |= c.nexus.target_port().group.tpgs().inquiry_bits();
            Ok(d)
        }
    }
}

/// Copy `s` as printable ASCII into `out`, space padded.
pub(crate) fn ascii_field(out: &mut [u8], s: &str) {
    out.fill(b' ');
    for (o, b) in out.iter_mut().zip(s.bytes()) {
        *o = if (0x20..=0x7e).contains(&b) { b } else { b'_' };
    }
}

/// Standard INQUIRY data; `None` for a LUN that is not mapped.
pub(crate) fn standard(lu: Option<&LogicalUnit>) -> Vec<u8> {
    let mut d = vec![0u8; STANDARD_LEN];
    // Peripheral qualifier 000b, direct access block device (00h).
    d[0] = if lu.is_some() { 0x00 } else { 0x7f };
    // RMB: removable medium.
    d[1] = if lu.is_some_and(|lu| lu.config.removable) {
        0x80
    } else {
        0x00
    };
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP=1, response data format 2
    d[4] = (STANDARD_LEN - 5) as u8;
    // SCCS=0, ACC=0, TPGS (added by `execute`), PROTECT=0; 3PC: EXTENDED COPY is supported.
    d[5] = if lu.is_some() { 0x08 } else { 0x00 };
    d[6] = 0x00;
    d[7] = 0x02; // CMDQUE=1
    let (vendor, product, revision) = match lu {
        Some(lu) => (
            lu.config.vendor.as_str(),
            lu.config.product.as_str(),
            lu.config.revision.as_str(),
        ),
        None => ("RTGT", "", ""),
    };
    ascii_field(&mut d[8..16], vendor);
    ascii_field(&mut d[16..32], product);
    ascii_field(&mut d[32..36], revision);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn standard_data() {
        let lu = mem_lu(1024, 512);
        let d = standard(Some(&lu));
        assert_eq!(d.len(), 96);
        assert_eq!(d[0], 0);
        assert_eq!(d[2], 6);
        assert_eq!(d[3] & 0x0f, 2);
        assert_eq!(d[4] as usize, d.len() - 5);
        assert_eq!(d[7] & 0x02, 0x02, "CMDQUE");
        assert_eq!(&d[8..16], b"RTGT    ");
        assert!(d[16..36].iter().all(|&b| (0x20..=0x7e).contains(&b)));
        assert_eq!(&d[58..64], &[0x00, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
        assert_eq!(d[5] & 0x08, 0x08, "3PC: third-party copy");
        let u = standard(None);
        assert_eq!(u[0], 0x7f);
    }

    #[tokio::test]
    async fn inquiry_through_the_nexus() {
        let t = Fixture::new(2048, 512);
        t.clear_ua().await;
        // Allocation length truncates.
        let r = t.run(&[0x12, 0, 0, 0, 36, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data.len(), 36);
        let r = t.run(&[0x12, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert!(r.data.is_empty());
        let r = t.run(&[0x12, 0, 0, 1, 4, 0], &[]).await;
        assert_eq!(r.data.len(), 96);
        // EVPD=0 with a page code is an invalid field (byte 2).
        let s = t.check(&[0x12, 0, 1, 0, 255, 0]).await;
        assert_eq!(s.code(), 0x2400);
        assert_eq!(s.field.unwrap().byte, 2);
        // Unknown VPD page.
        let s = t.check(&[0x12, 1, 0x42, 0, 255, 0]).await;
        assert_eq!(s.code(), 0x2400);
        // Reserved bit (CMDDT) in byte 1.
        let s = t.check(&[0x12, 2, 0, 0, 255, 0]).await;
        assert_eq!(s.field.unwrap().byte, 1);
        assert_eq!(s.field.unwrap().bit, Some(1));
    }

    #[tokio::test]
    async fn inquiry_to_unmapped_lun() {
        let t = Fixture::new(2048, 512);
        let r = t.run_lun(5, &[0x12, 0, 0, 0, 96, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data[0], 0x7f);
        // Other commands to the unmapped LUN fail.
        let r = t.run_lun(5, &[0x00, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.status, 2);
        assert_eq!(
            crate::core::sense::Sense::decode(r.sense.as_ref().unwrap())
                .unwrap()
                .code(),
            0x2500
        );
    }
}
