//! TEST UNIT READY (SPC-4 6.37), START STOP UNIT (SBC-4 5.25) and PREVENT
//! ALLOW MEDIUM REMOVAL (SBC-4 5.13), and the removable medium behind them.
//!
//! A fixed LU (the default) is always ready: LOEJ is refused and PREVENT is
//! accepted and ignored. A removable LU ([`crate::LuConfig::removable`])
//! ejects its medium on START STOP UNIT with LOEJ=1 START=0 and loads it
//! with LOEJ=1 START=1, both refused with ILLEGAL REQUEST / MEDIUM REMOVAL
//! PREVENTED while any I_T nexus prevents removal. Prevention is held per
//! nexus and released by PREVENT=0 from that nexus, by its loss (logout,
//! connection drop) and by logical unit and target resets. While the medium
//! is out, medium-access commands fail with NOT READY / MEDIUM NOT PRESENT
//! (the check is in `exec::prepare`, driven by the opcode table's
//! `MEDIUM` flag).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::core::handler::{Action, Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};

/// The removable medium of one LU.
pub(crate) struct Medium {
    /// Medium present (always, for a fixed LU).
    loaded: AtomicBool,
    /// Nexuses holding PREVENT MEDIUM REMOVAL.
    preventing: Mutex<Vec<u64>>,
}

impl Default for Medium {
    fn default() -> Medium {
        Medium {
            loaded: AtomicBool::new(true),
            preventing: Mutex::new(Vec::new()),
        }
    }
}

impl Medium {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.preventing.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn set_prevent(&self, nexus: u64, on: bool) {
        let mut g = self.lock();
        g.retain(|&n| n != nexus);
        if on {
            g.push(nexus);
        }
    }

    /// The nexus is gone: its prevention with it.
    pub fn forget_nexus(&self, nexus: u64) {
        self.set_prevent(nexus, false);
    }

    /// Logical unit or target reset: nobody prevents removal any more.
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// Load (`true`) or eject the medium; refused while removal is prevented.
    fn load_eject(&self, load: bool) -> Result<(), Sense> {
        let g = self.lock();
        if !g.is_empty() {
            return Err(sense::MEDIUM_REMOVAL_PREVENTED);
        }
        self.loaded.store(load, Ordering::Release);
        Ok(())
    }
}

pub(crate) fn decode_test_unit_ready(_d: &Decode<'_>) -> Result<Plan, Sense> {
    // NOT READY (medium absent, sanitize running) is decided in prepare.
    Ok(Plan::good())
}

pub(crate) fn decode_start_stop(d: &Decode<'_>) -> Result<Plan, Sense> {
    let power_condition = d.cdb[4] >> 4;
    let no_flush = d.cdb[4] & 0x04 != 0;
    let loej = d.cdb[4] & 0x02 != 0;
    let start = d.cdb[4] & 0x01 != 0;
    let removable = d.lu.is_some_and(|lu| lu.config.removable);
    if power_condition != 0 {
        // Power conditions are accepted and change nothing; START and LOEJ
        // are ignored with them (SBC-4 5.25).
        return Ok(Plan::good());
    }
    if loej {
        if !removable {
            // The medium is not removable: nothing to load or eject.
            return Err(Sense::invalid_cdb_field(4, Some(1)));
        }
        return Ok(Plan::emulate(if start { load } else { eject }));
    }
    if !start && !no_flush && d.lu.is_none_or(|lu| lu.medium.loaded()) {
        // Stopping flushes the cache first; the LU stays ready anyway.
        return Ok(Plan::action(Action::Sync));
    }
    Ok(Plan::good())
}

fn load(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    c.lu.expect("mapped").medium.load_eject(true)?;
    Ok(Vec::new())
}

fn eject(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    if lu.medium.loaded() && lu.config.backstore.write_cache() {
        // Cached writes reach the medium before it leaves. (Best effort:
        // the backstore stays open, so nothing is lost if this fails.)
        let _ = lu.config.backstore.flush();
    }
    lu.medium.load_eject(false)?;
    Ok(Vec::new())
}

pub(crate) fn decode_prevent_allow(d: &Decode<'_>) -> Result<Plan, Sense> {
    match d.cdb[4] & 0x03 {
        0 => Ok(Plan::emulate(allow)),
        1 => Ok(Plan::emulate(prevent)),
        // 10b / 11b are obsolete (MMC persistent prevention).
        _ => Err(Sense::invalid_cdb_field(4, Some(1))),
    }
}

fn prevent(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    // A fixed medium cannot be removed anyway: nothing to hold.
    if lu.config.removable {
        lu.medium.set_prevent(c.nexus.id(), true);
    }
    Ok(Vec::new())
}

fn allow(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    c.lu.expect("mapped")
        .medium
        .set_prevent(c.nexus.id(), false);
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use crate::api::TmfFunction;
    use crate::testutil::*;

    const TUR: [u8; 6] = [0; 6];
    const EJECT: [u8; 6] = [0x1b, 0, 0, 0, 0x02, 0];
    const LOAD: [u8; 6] = [0x1b, 0, 0, 0, 0x03, 0];
    const PREVENT: [u8; 6] = [0x1e, 0, 0, 0, 1, 0];
    const ALLOW: [u8; 6] = [0x1e, 0, 0, 0, 0, 0];

    #[tokio::test]
    async fn start_stop_and_prevent_allow_on_a_fixed_lu() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        // Eject (LOEJ=1 START=0) fails: not removable.
        let s = t.check(&EJECT).await;
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2400, 4, Some(1))
        );
        for b4 in [0x00u8, 0x01, 0x04, 0x05, 0x10, 0x31, 0x12] {
            let r = t.run(&[0x1b, 1, 0, 0, b4, 0], &[]).await;
            assert_eq!(r.status, 0, "byte 4 {b4:02x}");
        }
        assert_eq!(t.run(&PREVENT, &[]).await.status, 0);
        assert_eq!(t.run(&ALLOW, &[]).await.status, 0);
        assert_eq!(t.run(&TUR, &[]).await.status, 0);
        assert_eq!(t.check(&[0x1e, 0, 0, 0, 2, 0]).await.code(), 0x2400);
        // INQUIRY: RMB=0.
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0], &[]).await.data[1], 0);
    }

    #[tokio::test]
    async fn removable_medium_eject_load_and_prevention() {
        let t = Fixture::removable(1024, 512);
        let b = t.other_nexus();
        t.clear_ua().await;
        b.clear_ua().await;
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0], &[]).await.data[1], 0x80);
        // Eject; medium-access commands now fail with MEDIUM NOT PRESENT,
        // on every nexus; INQUIRY, REPORT LUNS, MODE SENSE still work.
        assert_eq!(t.run(&EJECT, &[]).await.status, 0);
        for cdb in [
            &TUR[..],
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
            &[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        ] {
            let s = b.check(cdb).await;
            assert_eq!((s.key, s.asc), (2, 0x3a), "{cdb:02x?}");
        }
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
        assert_eq!(t.run(&[0x1a, 0, 0x3f, 0, 255, 0], &[]).await.status, 0);
        assert_eq!(
            t.run(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[])
                .await
                .status,
            0
        );
        // Ejecting again is fine; PREVENT blocks loading too.
        assert_eq!(t.run(&EJECT, &[]).await.status, 0);
        assert_eq!(t.run(&PREVENT, &[]).await.status, 0);
        assert_eq!(t.check(&LOAD).await.code(), 0x5302);
        assert_eq!(t.run(&ALLOW, &[]).await.status, 0);
        assert_eq!(t.run(&LOAD, &[]).await.status, 0);
        assert_eq!(t.run(&TUR, &[]).await.status, 0);

        // Prevention by one nexus holds for all; ALLOW from another nexus
        // does not release it.
        assert_eq!(t.run(&PREVENT, &[]).await.status, 0);
        assert_eq!(b.check(&EJECT).await.code(), 0x5302);
        assert_eq!(b.run(&ALLOW, &[]).await.status, 0);
        assert_eq!(b.check(&EJECT).await.code(), 0x5302);
        // A power condition with LOEJ ejects nothing.
        assert_eq!(b.run(&[0x1b, 0, 0, 0, 0x32, 0], &[]).await.status, 0);
        assert_eq!(b.run(&TUR, &[]).await.status, 0);
        // LOEJ=0 never ejects.
        assert_eq!(b.run(&[0x1b, 0, 0, 0, 0x00, 0], &[]).await.status, 0);
        assert_eq!(b.run(&TUR, &[]).await.status, 0);

        // Nexus loss releases the prevention.
        t.nexus.close();
        assert_eq!(b.run(&EJECT, &[]).await.status, 0);
        assert_eq!(b.run(&LOAD, &[]).await.status, 0);
    }

    #[tokio::test]
    async fn resets_release_prevention() {
        for tmf in [
            TmfFunction::LogicalUnitReset { lun: 0 },
            TmfFunction::TargetReset,
        ] {
            let t = Fixture::removable(64, 512);
            t.clear_ua().await;
            assert_eq!(t.run(&PREVENT, &[]).await.status, 0);
            assert_eq!(t.check(&EJECT).await.code(), 0x5302);
            t.nexus.task_management(tmf).await;
            t.clear_ua().await;
            assert_eq!(t.run(&EJECT, &[]).await.status, 0, "{tmf:?}");
            // The reset does not load the medium again.
            assert_eq!(t.check(&TUR).await.code(), 0x3a00);
            assert_eq!(t.run(&LOAD, &[]).await.status, 0);
        }
    }
}
