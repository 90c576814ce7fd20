//! TEST UNIT READY (SPC-4 6.37), START STOP UNIT (SBC-4 5.25) and PREVENT
//! ALLOW MEDIUM REMOVAL (SBC-4 5.13): the LU is always ready and its medium
//! is not removable.

use crate::opcodes::{Action, Decode, Plan};
use crate::sense::Sense;

pub(crate) fn decode_test_unit_ready(_d: &Decode<'_>) -> Result<Plan, Sense> {
    Ok(Plan::good())
}

pub(crate) fn decode_start_stop(d: &Decode<'_>) -> Result<Plan, Sense> {
    let power_condition = d.cdb[4] >> 4;
    let no_flush = d.cdb[4] & 0x04 != 0;
    let loej = d.cdb[4] & 0x02 != 0;
    let start = d.cdb[4] & 0x01 != 0;
    if loej && power_condition == 0 {
        // The medium is not removable: nothing to load or eject.
        return Err(Sense::invalid_cdb_field(4, Some(1)));
    }
    if !start && !no_flush && power_condition == 0 {
        // Stopping flushes the cache first; the LU stays ready anyway.
        return Ok(Plan::action(Action::Sync));
    }
    Ok(Plan::good())
}

pub(crate) fn decode_prevent_allow(_d: &Decode<'_>) -> Result<Plan, Sense> {
    // Nothing is removable, so there is nothing to prevent.
    Ok(Plan::good())
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[tokio::test]
    async fn start_stop_and_prevent_allow() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        // Eject (LOEJ=1 START=0) fails: not removable.
        let s = t.check(&[0x1b, 1, 0, 0, 0x02, 0]).await;
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2400, 4, Some(1))
        );
        for b4 in [0x00u8, 0x01, 0x04, 0x05, 0x10, 0x31] {
            let r = t.run(&[0x1b, 1, 0, 0, b4, 0], &[]).await;
            assert_eq!(r.status, 0, "byte 4 {b4:02x}");
        }
        assert_eq!(t.run(&[0x1e, 0, 0, 0, 1, 0], &[]).await.status, 0);
        assert_eq!(t.run(&[0x1e, 0, 0, 0, 0, 0], &[]).await.status, 0);
        assert_eq!(t.run(&[0x00, 0, 0, 0, 0, 0], &[]).await.status, 0);
    }
}
