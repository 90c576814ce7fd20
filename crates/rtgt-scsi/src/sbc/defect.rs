//! READ DEFECT DATA (10) and (12) (SBC-4 5.17, 5.18): the medium has no
//! defects, so both lists are returned valid and empty, in the format asked
//! for.

use crate::core::cdb::{be16, be32};
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::Sense;

/// REQ_PLIST, REQ_GLIST and DEFECT LIST FORMAT as the header echoes them
/// (PLISTV, GLISTV: the requested lists are valid, and empty).
fn header_byte(b: u8) -> u8 {
    b & 0x1f
}

pub(crate) fn decode10(d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(execute10).with_alloc_len(be16(&d.cdb[7..9]) as u32))
}

fn execute10(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    // Reserved, flags + format, DEFECT LIST LENGTH 0.
    Ok(vec![0, header_byte(c.cdb[2]), 0, 0])
}

pub(crate) fn decode12(d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(execute12).with_alloc_len(be32(&d.cdb[6..10])))
}

fn execute12(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    // Reserved, flags + format, GENERATION CODE 0, DEFECT LIST LENGTH 0.
    Ok(vec![0, header_byte(c.cdb[1]), 0, 0, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[tokio::test]
    async fn empty_defect_lists() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let r = t.run(&[0x37, 0, 0x18 | 3, 0, 0, 0, 0, 0, 32, 0], &[]).await;
        assert_eq!((r.status, r.data.to_vec()), (0, vec![0, 0x1b, 0, 0]));
        let r = t
            .run(&[0xb7, 0x10, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[])
            .await;
        assert_eq!(
            (r.status, r.data.to_vec()),
            (0, vec![0, 0x10, 0, 0, 0, 0, 0, 0])
        );
        // Allocation length truncates.
        let r = t.run(&[0x37, 0, 0, 0, 0, 0, 0, 0, 2, 0], &[]).await;
        assert_eq!(r.data.len(), 2);
        // Reserved bits.
        let s = t.check(&[0x37, 0, 0x20, 0, 0, 0, 0, 0, 4, 0]).await;
        assert_eq!(s.field.unwrap().byte, 2);
    }
}
