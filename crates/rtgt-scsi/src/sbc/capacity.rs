//! READ CAPACITY (10) and (16) (SBC-4 5.20, 5.21).

use crate::core::cdb::{be32, be64};
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::Sense;

pub(crate) fn decode10(d: &Decode<'_>) -> Result<Plan, Sense> {
    // PMI=0 with a nonzero LOGICAL BLOCK ADDRESS is invalid (SBC-3; both
    // fields are obsolete in SBC-4).
    if d.cdb[8] & 1 == 0 && be32(&d.cdb[2..6]) != 0 {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    }
    Ok(Plan::emulate(execute10))
}

fn execute10(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let last = lu.num_blocks().saturating_sub(1);
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&(last.min(0xffff_ffff) as u32).to_be_bytes());
    d.extend_from_slice(&lu.block_size().to_be_bytes());
    Ok(d)
}

pub(crate) fn decode16(d: &Decode<'_>) -> Result<Plan, Sense> {
    if d.cdb[14] & 1 == 0 && be64(&d.cdb[2..10]) != 0 {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    }
    Ok(Plan::emulate(execute16).with_alloc_len(be32(&d.cdb[10..14])))
}

fn execute16(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let bs = lu.block_size();
    let phys = lu.physical_block_size();
    let lbppbe = (phys / bs).trailing_zeros() as u8 & 0x0f;
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&lu.num_blocks().saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&bs.to_be_bytes());
    // No protection information: P_TYPE / PROT_EN / P_I_EXPONENT = 0.
    d[13] = lbppbe;
    // LBPME for a thin LU, LBPRZ when unmapped blocks read as zeroes;
    // lowest aligned LBA 0.
    if lu.config.thin {
        d[14] = 0x80 | if crate::sbc::thin::lbprz(lu) { 0x40 } else { 0 };
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[tokio::test]
    async fn read_capacity() {
        let t = Fixture::with_physical(1 << 20, 512, 4096);
        t.clear_ua().await;
        let r = t.run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.data, vec![0, 0x0f, 0xff, 0xff, 0, 0, 2, 0]);
        let mut c16 = [0u8; 16];
        c16[0] = 0x9e;
        c16[1] = 0x10;
        c16[13] = 32;
        let r = t.run(&c16, &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data.len(), 32);
        assert_eq!(&r.data[0..8], &((1u64 << 20) - 1).to_be_bytes());
        assert_eq!(&r.data[8..12], &512u32.to_be_bytes());
        assert_eq!(
            r.data[13] & 0x0f,
            3,
            "LBPPBE: 8 logical blocks per physical"
        );
        assert_eq!(r.data[12], 0);
        // Allocation length 15 (and 0) are not errors; data is truncated.
        c16[13] = 15;
        assert_eq!(t.run(&c16, &[]).await.data.len(), 15);
        c16[13] = 0;
        let r = t.run(&c16, &[]).await;
        assert_eq!((r.status, r.data.len()), (0, 0));
        // Thin (the test store discards): LBPME and LBPRZ.
        c16[1] = 0x10;
        c16[13] = 32;
        assert_eq!(t.run(&c16, &[]).await.data[14], 0xc0);
        let fat = Fixture::with_physical(64, 512, 512).with_thin(false);
        fat.clear_ua().await;
        assert_eq!(fat.run(&c16, &[]).await.data[14], 0);
        // An unknown SERVICE ACTION IN service action points at byte 1.
        c16[1] = 0x13;
        let s = t.check(&c16).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn read_capacity10_saturates() {
        let t = Fixture::new(0x1_0000_0010, 512);
        t.clear_ua().await;
        let r = t.run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(&r.data[0..4], &[0xff; 4]);
    }
}
