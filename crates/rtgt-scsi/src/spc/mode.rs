//! Mode parameters (SPC-4 7.5, SBC-4 6.5): MODE SENSE (6/10) and MODE
//! SELECT (6/10) with the caching page (08h), the control page (0Ah) and
//! the informational exceptions control page (1Ch).
//!
//! Parameters are per logical unit, shared by every nexus; a MODE SELECT
//! that changes something raises MODE PARAMETERS CHANGED for the others.
//! Changeable: WCE (when the backstore can switch its cache), D_SENSE and
//! SWP. Nothing can be saved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rtgt_backstore::Backstore;

use crate::core::cdb::be16;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::LogicalUnit;

/// Pages we implement, in the order MODE SENSE returns them.
pub const PAGES: [u8; 3] = [0x08, 0x0a, 0x1c];
const ALL_PAGES: u8 = 0x3f;

const CACHING_LEN: usize = 20;
const CONTROL_LEN: usize = 12;
const IEC_LEN: usize = 12;

/// Device-specific parameter bits (SBC-4 6.5.1).
const DSP_WP: u8 = 0x80;
const DSP_DPOFUA: u8 = 0x10;

/// Page control values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
}

/// Mode state of one logical unit.
pub(crate) struct ModeState {
    d_sense: AtomicBool,
    swp: AtomicBool,
    /// Whether the backstore lets WCE be switched.
    wce_changeable: bool,
    /// Serializes MODE SELECT.
    select: Mutex<()>,
}

impl ModeState {
    pub fn new(bs: &dyn Backstore) -> ModeState {
        // Setting the cache to what it already is probes whether it can be
        // changed at all, without changing anything.
        let wce_changeable = bs.set_write_cache(bs.write_cache()).is_ok();
        ModeState {
            d_sense: AtomicBool::new(false),
            swp: AtomicBool::new(false),
            wce_changeable,
            select: Mutex::new(()),
        }
    }

    /// Sense data in descriptor format (control page D_SENSE).
    pub fn d_sense(&self) -> bool {
        self.d_sense.load(Ordering::Relaxed)
    }

    /// Software write protect (control page SWP).
    pub fn swp(&self) -> bool {
        self.swp.load(Ordering::Relaxed)
    }

    /// Back to the defaults (logical unit reset).
    pub fn reset(&self) {
        self.d_sense.store(false, Ordering::Relaxed);
        self.swp.store(false, Ordering::Relaxed);
    }
}

/// One page as MODE SENSE returns it.
fn page(lu: &LogicalUnit, code: u8, pc: PageControl) -> Vec<u8> {
    let m = &lu.mode;
    match code {
        0x08 => {
            let mut p = vec![0u8; CACHING_LEN];
            p[0] = 0x08;
            p[1] = (CACHING_LEN - 2) as u8;
            p[2] = match pc {
                PageControl::Changeable if m.wce_changeable => 0x04,
                PageControl::Changeable => 0,
                _ if lu.config.backstore.write_cache() => 0x04, // WCE
                _ => 0,
            };
            p
        }
        0x0a => {
            let mut p = vec![0u8; CONTROL_LEN];
            p[0] = 0x0a;
            p[1] = (CONTROL_LEN - 2) as u8;
            match pc {
                PageControl::Changeable => {
                    p[2] = 0x04; // D_SENSE
                    p[4] = 0x08; // SWP
                }
                PageControl::Current | PageControl::Default => {
                    let current = pc == PageControl::Current;
                    // TST=000b (one task set), D_SENSE.
                    p[2] = if current && m.d_sense() { 0x04 } else { 0 };
                    // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering;
                    // QERR=00b.
                    p[3] = 0x10;
                    // UA_INTLCK_CTRL=00b, SWP.
                    p[4] = if current && m.swp() { 0x08 } else { 0 };
                    // TAS=0: aborted tasks get no response.
                    p[5] = 0;
                    // BUSY TIMEOUT PERIOD: unlimited.
                    p[8..10].copy_from_slice(&0xffffu16.to_be_bytes());
                }
            }
            p
        }
        0x1c => {
            let mut p = vec![0u8; IEC_LEN];
            p[0] = 0x1c;
            p[1] = (IEC_LEN - 2) as u8;
            if pc != PageControl::Changeable {
                p[2] = 0x08; // DEXCPT: no informational exceptions
            }
            p
        }
        _ => unreachable!("page {code:02x} not implemented"),
    }
}

pub(crate) fn decode_sense6(d: &Decode<'_>) -> Result<Plan, Sense> {
    check_sense_cdb(d.cdb)?;
    Ok(Plan::emulate(sense6).with_alloc_len(d.cdb[4] as u32))
}

pub(crate) fn decode_sense10(d: &Decode<'_>) -> Result<Plan, Sense> {
    check_sense_cdb(d.cdb)?;
    Ok(Plan::emulate(sense10).with_alloc_len(be16(&d.cdb[7..9]) as u32))
}

fn check_sense_cdb(cdb: &[u8]) -> Result<(), Sense> {
    if cdb[2] >> 6 == 3 {
        return Err(sense::SAVING_PARAMETERS_NOT_SUPPORTED);
    }
    let code = cdb[2] & 0x3f;
    if code != ALL_PAGES && !PAGES.contains(&code) {
        return Err(Sense::invalid_cdb_field(2, Some(5)));
    }
    // Subpages: only 00h, and FFh (all subpages) with all pages.
    match cdb[3] {
        0x00 => Ok(()),
        0xff if code == ALL_PAGES => Ok(()),
        _ => Err(Sense::invalid_cdb_field(3, Some(7))),
    }
}

fn page_control(cdb: &[u8]) -> PageControl {
    match cdb[2] >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        _ => PageControl::Default,
    }
}

/// The selected pages.
fn pages(lu: &LogicalUnit, cdb: &[u8]) -> Vec<u8> {
    let pc = page_control(cdb);
    let code = cdb[2] & 0x3f;
    let mut out = Vec::with_capacity(64);
    for &p in PAGES.iter().filter(|&&p| code == ALL_PAGES || p == code) {
        out.extend_from_slice(&page(lu, p, pc));
    }
    out
}

fn device_specific(c: &ExecCtx<'_>, lu: &LogicalUnit) -> u8 {
    let wp = if lu.write_protect(c.read_only).is_some() {
        DSP_WP
    } else {
        0
    };
    wp | DSP_DPOFUA
}

fn sense6(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let dbd = c.cdb[1] & 0x08 != 0;
    let mut d = vec![0u8, 0, device_specific(c, lu), 0];
    if !dbd {
        d[3] = 8;
        let blocks = lu.num_blocks().min(0xffff_ffff) as u32;
        d.extend_from_slice(&blocks.to_be_bytes());
        d.push(0);
        d.extend_from_slice(&lu.block_size().to_be_bytes()[1..4]);
    }
    d.extend_from_slice(&pages(lu, c.cdb));
    d[0] = (d.len() - 1).min(255) as u8;
    Ok(d)
}

fn sense10(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let dbd = c.cdb[1] & 0x08 != 0;
    let llbaa = c.cdb[1] & 0x10 != 0;
    let mut d = vec![0u8, 0, 0, device_specific(c, lu), 0, 0, 0, 0];
    if !dbd {
        if llbaa {
            d[4] = 0x01; // LONGLBA
            d[7] = 16;
            d.extend_from_slice(&lu.num_blocks().to_be_bytes());
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&lu.block_size().to_be_bytes());
        } else {
            d[7] = 8;
            let blocks = lu.num_blocks().min(0xffff_ffff) as u32;
            d.extend_from_slice(&blocks.to_be_bytes());
            d.push(0);
            d.extend_from_slice(&lu.block_size().to_be_bytes()[1..4]);
        }
    }
    d.extend_from_slice(&pages(lu, c.cdb));
    let len = (d.len() - 2) as u16;
    d[0..2].copy_from_slice(&len.to_be_bytes());
    Ok(d)
}

pub(crate) fn decode_select6(d: &Decode<'_>) -> Result<Plan, Sense> {
    decode_select(d.cdb, d.cdb[4] as u32, select6)
}

pub(crate) fn decode_select10(d: &Decode<'_>) -> Result<Plan, Sense> {
    decode_select(d.cdb, be16(&d.cdb[7..9]) as u32, select10)
}

fn decode_select(cdb: &[u8], len: u32, f: crate::core::handler::EmulateFn) -> Result<Plan, Sense> {
    if cdb[1] & 0x01 != 0 {
        // SP: nothing can be saved.
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    if len == 0 {
        return Ok(Plan::good());
    }
    if cdb[1] & 0x10 == 0 {
        // PF=0: vendor-specific page format, which we do not have.
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    Ok(Plan::emulate(f).with_data_out(len))
}

fn select6(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    select(c, false)
}

fn select10(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    select(c, true)
}

/// A validated change to apply.
#[derive(Default)]
struct Changes {
    wce: Option<bool>,
    d_sense: Option<bool>,
    swp: Option<bool>,
}

fn select(c: &ExecCtx<'_>, ten: bool) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let data = c.data_out;
    let hl = if ten { 8 } else { 4 };
    if data.len() < hl {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let (medium_type_at, bdl, long_lba) = if ten {
        (2, be16(&data[6..8]) as usize, data[4] & 0x01 != 0)
    } else {
        (1, data[3] as usize, false)
    };
    if data[medium_type_at] != 0 {
        return Err(Sense::invalid_param_field(medium_type_at, Some(7)));
    }
    // Block descriptors: accepted when they describe what we have.
    let dlen = if long_lba { 16 } else { 8 };
    if bdl % dlen != 0 {
        return Err(Sense::invalid_param_field(if ten { 6 } else { 3 }, Some(7)));
    }
    if hl + bdl > data.len() {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    for off in (hl..hl + bdl).step_by(dlen) {
        let (at, len) = if long_lba {
            (
                off + 12,
                u32::from_be_bytes([
                    data[off + 12],
                    data[off + 13],
                    data[off + 14],
                    data[off + 15],
                ]),
            )
        } else {
            (
                off + 5,
                u32::from_be_bytes([0, data[off + 5], data[off + 6], data[off + 7]]),
            )
        };
        if len != lu.block_size() {
            return Err(Sense::invalid_param_field(at, None));
        }
    }

    let _serial = lu.mode.select.lock().unwrap_or_else(|e| e.into_inner());
    let mut changes = Changes::default();
    let mut off = hl + bdl;
    while off < data.len() {
        if off + 2 > data.len() {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        if data[off] & 0x80 != 0 {
            // PS is reserved in MODE SELECT.
            return Err(Sense::invalid_param_field(off, Some(7)));
        }
        if data[off] & 0x40 != 0 {
            // Sub-page format: we have no subpages.
            return Err(Sense::invalid_param_field(off, Some(6)));
        }
        let code = data[off] & 0x3f;
        if !PAGES.contains(&code) {
            return Err(Sense::invalid_param_field(off, Some(5)));
        }
        let current = page(lu, code, PageControl::Current);
        let changeable = page(lu, code, PageControl::Changeable);
        if data[off + 1] as usize != current.len() - 2 {
            return Err(Sense::invalid_param_field(off + 1, Some(7)));
        }
        let end = off + current.len();
        if end > data.len() {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let new = &data[off..end];
        for i in 2..current.len() {
            let bad = (new[i] ^ current[i]) & !changeable[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(Sense::invalid_param_field(off + i, Some(bit)));
            }
        }
        match code {
            0x08 => changes.wce = Some(new[2] & 0x04 != 0),
            0x0a => {
                changes.d_sense = Some(new[2] & 0x04 != 0);
                changes.swp = Some(new[4] & 0x08 != 0);
            }
            _ => {}
        }
        off = end;
    }

    // Everything validated: apply.
    let mut changed = false;
    if let Some(wce) = changes.wce {
        let bs = &lu.config.backstore;
        if bs.write_cache() != wce {
            bs.set_write_cache(wce)
                .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
            changed = true;
        }
    }
    if let Some(v) = changes.d_sense {
        changed |= lu.mode.d_sense.swap(v, Ordering::Relaxed) != v;
    }
    if let Some(v) = changes.swp {
        changed |= lu.mode.swp.swap(v, Ordering::Relaxed) != v;
    }
    if changed {
        let me = c.nexus.id();
        lu.ua
            .establish(sense::UA_MODE_PARAMETERS_CHANGED, |n| n != me);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    /// Find a page in MODE SENSE (6) data.
    fn find6(d: &[u8], code: u8) -> Option<Vec<u8>> {
        let mut i = 4 + d[3] as usize;
        while i + 2 <= d.len() {
            let len = d[i + 1] as usize + 2;
            if d[i] & 0x3f == code {
                return Some(d[i..i + len].to_vec());
            }
            i += len;
        }
        None
    }

    #[tokio::test]
    async fn mode_sense6_all_pages() {
        let t = Fixture::new(4096, 512);
        t.clear_ua().await;
        let r = t.run(&[0x1a, 0, 0x3f, 0, 255, 0], &[]).await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(d[0] as usize, d.len() - 1);
        assert_eq!(d[2], 0x10, "DPOFUA, not write protected");
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..8], &4096u32.to_be_bytes());
        assert_eq!(&d[9..12], &[0, 2, 0]);
        assert_eq!(d.len(), 4 + 8 + 20 + 12 + 12);
        let caching = find6(d, 0x08).unwrap();
        assert_eq!(caching.len(), 20);
        let control = find6(d, 0x0a).unwrap();
        assert_eq!(control[1], 10);
        assert_eq!(control[2] & 0x04, 0, "D_SENSE off by default");
        assert!(find6(d, 0x1c).is_some());
        // DBD and a single page.
        let r = t.run(&[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await;
        assert_eq!(r.data.len(), 4 + 12);
        assert_eq!(r.data[3], 0);
        // Allocation length truncates.
        let r = t.run(&[0x1a, 0, 0x3f, 0, 4, 0], &[]).await;
        assert_eq!(r.data.len(), 4);
        // Changeable values.
        let r = t.run(&[0x1a, 0x08, 0x4a, 0, 255, 0], &[]).await;
        assert_eq!(&r.data[4..8], &[0x0a, 0x0a, 0x04, 0x00]);
        assert_eq!(r.data[8], 0x08);
        // Saved values are not supported.
        let s = t.check(&[0x1a, 0, 0xca, 0, 255, 0]).await;
        assert_eq!(s.code(), 0x3900);
        // Unknown page, unknown subpage.
        let s = t.check(&[0x1a, 0, 0x19, 0, 255, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 2));
        let s = t.check(&[0x1a, 0, 0x0a, 1, 255, 0]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 3));
    }

    #[tokio::test]
    async fn mode_sense10_long_lba() {
        let t = Fixture::new(4096, 512);
        t.clear_ua().await;
        let r = t
            .run(&[0x5a, 0x10, 0x08, 0, 0, 0, 0, 0x10, 0, 0], &[])
            .await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
        assert_eq!(d[4] & 1, 1);
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), 16);
        assert_eq!(&d[8..16], &4096u64.to_be_bytes());
        assert_eq!(&d[20..24], &512u32.to_be_bytes());
        assert_eq!(d[24], 0x08);
    }

    #[tokio::test]
    async fn mode_select_d_sense_and_swp() {
        let t = Fixture::new(4096, 512);
        let other = t.other_nexus();
        t.clear_ua().await;
        other.clear_ua().await;
        // Read the control page, set D_SENSE, write it back.
        let r = t.run(&[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await;
        let mut param = r.data.clone();
        param[0] = 0;
        param[4 + 2] |= 0x04;
        let len = param.len() as u8;
        let r = t.run(&[0x15, 0x10, 0, 0, len, 0], &param).await;
        assert_eq!(r.status, 0, "{:?}", r.sense);
        // Errors now come in descriptor format.
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
        cdb[13] = 1;
        let r = t.run(&cdb, &[]).await;
        assert_eq!(r.sense.as_ref().unwrap()[0], 0x72);
        // The other nexus is told the mode parameters changed.
        let s = other.check(&[0, 0, 0, 0, 0, 0]).await;
        assert_eq!((s.key, s.code()), (6, 0x2a01));
        // SWP makes writes fail with DATA PROTECT.
        param[4 + 4] |= 0x08;
        let r = t.run(&[0x15, 0x10, 0, 0, len, 0], &param).await;
        assert_eq!(r.status, 0);
        let r = t.run(&[0x1a, 0, 0x3f, 0, 255, 0], &[]).await;
        assert_eq!(r.data[2] & 0x80, 0x80, "WP");
        let s = t
            .check_with(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0u8; 512])
            .await;
        assert_eq!((s.key, s.code()), (7, 0x2702));
        // Changing something not changeable: QERR in byte 3.
        let mut bad = param.clone();
        bad[4 + 3] |= 0x02;
        let s = t.check_with(&[0x15, 0x10, 0, 0, len, 0], &bad).await;
        assert_eq!(s.code(), 0x2600);
        let f = s.field.unwrap();
        assert!(!f.in_cdb);
        assert_eq!((f.byte, f.bit), (7, Some(1)));
        // SP is refused; PF=0 is refused.
        let s = t.check_with(&[0x15, 0x11, 0, 0, len, 0], &param).await;
        assert_eq!((s.code(), s.field.unwrap().bit), (0x2400, Some(0)));
        let s = t.check_with(&[0x15, 0x00, 0, 0, len, 0], &param).await;
        assert_eq!((s.code(), s.field.unwrap().bit), (0x2400, Some(4)));
        // Short parameter list.
        let s = t.check_with(&[0x15, 0x10, 0, 0, 2, 0], &param[..2]).await;
        assert_eq!(s.code(), 0x1a00);
    }
}
