//! REQUEST SENSE (SPC-4 6.39): reports (and clears) a pending unit
//! attention as parameter data, else NO SENSE; LOGICAL UNIT NOT SUPPORTED
//! for a LUN that is not mapped.

use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};

pub(crate) fn decode(d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::emulate(execute).with_alloc_len(d.cdb[4] as u32))
}

fn execute(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let desc = c.cdb[1] & 1 != 0;
    let s = match c.lu {
        None => sense::LU_NOT_SUPPORTED,
        Some(lu) => match lu.ua.take(c.nexus.id()) {
            Some(ua) => ua,
            None if lu.sanitize.in_progress() => lu.sanitize.in_progress_sense(),
            None if !lu.medium.loaded() => sense::MEDIUM_NOT_PRESENT,
            None => sense::NO_SENSE,
        },
    };
    Ok(s.encode(desc))
}

#[cfg(test)]
mod tests {
    use crate::core::sense::Sense;
    use crate::testutil::*;

    #[tokio::test]
    async fn request_sense_reports_and_clears_the_ua() {
        let t = Fixture::new(1024, 512);
        let r = t.run(&[0x03, 0, 0, 0, 252, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data[0], 0x70);
        assert_eq!(Sense::decode(&r.data).unwrap().code(), 0x2900);
        assert_eq!(Sense::decode(&r.data).unwrap().key, 6);
        // Cleared: now NO SENSE, in descriptor format when asked.
        let r = t.run(&[0x03, 1, 0, 0, 252, 0], &[]).await;
        assert_eq!(r.data, vec![0x72, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.run(&[0, 0, 0, 0, 0, 0], &[]).await.status, 0);
        // Unmapped LUN: GOOD with LOGICAL UNIT NOT SUPPORTED.
        let r = t.run_lun(3, &[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(Sense::decode(&r.data).unwrap().code(), 0x2500);
    }
}
