//! REPORT LUNS (SPC-4 6.33): the LUNs mapped for the nexus.

use crate::api::encode_lun;
use crate::core::cdb::be32;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::Sense;

pub(crate) fn decode(d: &Decode<'_>) -> Result<Plan, Sense> {
    if d.cdb[2] > 2 {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    }
    let alloc = be32(&d.cdb[6..10]);
    if alloc < 16 {
        return Err(Sense::invalid_cdb_field(6, Some(7)));
    }
    Ok(Plan::emulate(execute).with_alloc_len(alloc))
}

fn execute(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    // SELECT REPORT 0 and 2: every LUN we have (we have no well-known
    // LUNs, so 1 reports an empty list).
    let luns: Vec<u64> = match c.cdb[2] {
        1 => Vec::new(),
        _ => c.nexus.luns().luns.keys().copied().collect(),
    };
    let mut d = Vec::with_capacity(8 + 8 * luns.len());
    d.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for lun in luns {
        d.extend_from_slice(&encode_lun(lun));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[tokio::test]
    async fn report_luns() {
        let t = Fixture::new(1024, 512);
        // Works on any LUN and does not report the pending UA.
        let r = t
            .run_lun(9, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[])
            .await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let r = t.run(&[0xa0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!(r.data, vec![0; 8]);
        // Allocation length below 16.
        let s = t.check(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 6));
        let s = t.check(&[0xa0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 2));
        // The UA is still pending for the next command.
        let s = t.check(&[0, 0, 0, 0, 0, 0]).await;
        assert_eq!(s.code(), 0x2900);
    }
}
