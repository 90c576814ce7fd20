//! SANITIZE (SBC-4 5.30): OVERWRITE and BLOCK ERASE done for real, EXIT
//! FAILURE MODE, and the sanitize-in-progress behaviour (SBC-4 4.11).
//!
//! - OVERWRITE writes the initialization pattern (INVERT between passes)
//!   over every logical block, OVERWRITE COUNT times.
//! - BLOCK ERASE deallocates every block (thin LUs only: it is offered only
//!   where LBPME=1, and unmapped blocks then read as LBPRZ says; B1h
//!   reports WABEREQ=01b).
//! - CRYPTO ERASE is not offered (there is no media encryption key to
//!   change): it is absent from REPORT SUPPORTED OPERATION CODES and fails
//!   with INVALID FIELD IN CDB (byte 1, the service action), WACEREQ=0.
//!
//! The operation runs on its own thread, detached from the command: it
//! survives ABORT TASK, resets and the loss of the nexus that started it, as
//! SBC-4 requires. While it runs every command but INQUIRY, REPORT LUNS and
//! REQUEST SENSE fails with NOT READY / SANITIZE IN PROGRESS (REQUEST SENSE
//! returns that as data, with the progress indication). With IMMED=1 the
//! command completes once the operation has started; else when it ends.
//! OVERWRITE is throttled to [`crate::LuConfig::sanitize_bytes_per_sec`].
//! A failed operation leaves the LU in sanitize failure mode: medium-access
//! commands fail with MEDIUM ERROR / SANITIZE COMMAND FAILED until a
//! sanitize succeeds or EXIT FAILURE MODE is sent.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use rtgt_backstore::{Backstore, BackstoreError};

use crate::core::cdb::be16;
use crate::core::handler::{Action, BoxFuture, Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};

pub(crate) const OVERWRITE: u8 = 0x01;
pub(crate) const BLOCK_ERASE: u8 = 0x02;
pub(crate) const EXIT_FAILURE_MODE: u8 = 0x1f;

/// Bytes written per backstore call.
const CHUNK: usize = 1 << 20;

/// Sanitize state of one LU.
#[derive(Default)]
pub(crate) struct SanitizeState {
    running: AtomicBool,
    failed: AtomicBool,
    /// Progress of the running operation, in 65536ths.
    progress: AtomicU16,
}

impl SanitizeState {
    pub fn in_progress(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// NOT READY / SANITIZE IN PROGRESS with the progress indication.
    pub fn in_progress_sense(&self) -> Sense {
        Sense {
            progress: Some(self.progress.load(Ordering::Relaxed)),
            ..sense::SANITIZE_IN_PROGRESS
        }
    }
}

/// BLOCK ERASE is offered on thin LUs whose backstore can show that every
/// block was deallocated (GET LBA STATUS), as initiators check.
pub(crate) fn block_erase_offered(lu: &crate::lu::LogicalUnit) -> bool {
    lu.config.thin && lu.config.backstore.reports_allocation()
}

/// Whether `opcode` runs while a sanitize is in progress.
pub(crate) fn allowed_while_running(opcode: u8) -> bool {
    matches!(opcode, 0x12 | 0xa0 | 0x03)
}

pub(crate) fn decode(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let sa = d.cdb[1] & 0x1f;
    let len = be16(&d.cdb[7..9]) as u32;
    let plan = match sa {
        OVERWRITE => {
            // Four header bytes and a pattern of at most one block.
            if len <= 4 || len > lu.block_size() + 4 {
                return Err(Sense::invalid_cdb_field(7, None));
            }
            Plan::action(Action::Async(exec)).with_data_out(len)
        }
        BLOCK_ERASE if !block_erase_offered(lu) => {
            return Err(Sense::invalid_cdb_field(1, Some(4)))
        }
        BLOCK_ERASE | EXIT_FAILURE_MODE => {
            if len != 0 {
                return Err(Sense::invalid_cdb_field(7, None));
            }
            Plan::action(Action::Async(exec))
        }
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    };
    Ok(plan)
}

/// What one sanitize operation does.
#[derive(Clone)]
enum Job {
    Overwrite {
        pattern: Vec<u8>,
        invert: bool,
        passes: u8,
        bytes_per_sec: u64,
    },
    BlockErase,
}

/// Parse the OVERWRITE parameter list.
fn overwrite_job(p: &[u8], block_size: u32, bytes_per_sec: u64) -> Result<Job, Sense> {
    if p.len() < 5 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let invert = p[0] & 0x80 != 0;
    if p[0] & 0x60 != 0 {
        // TEST: only 00b (normal operation).
        return Err(Sense::invalid_param_field(0, Some(6)));
    }
    let passes = p[0] & 0x1f;
    if passes == 0 {
        return Err(Sense::invalid_param_field(0, Some(4)));
    }
    let n = be16(&p[2..4]) as usize;
    if n == 0 || n > block_size as usize || n > p.len() - 4 {
        return Err(Sense::invalid_param_field(2, None));
    }
    Ok(Job::Overwrite {
        pattern: p[4..4 + n].to_vec(),
        invert,
        passes,
        bytes_per_sec,
    })
}

fn exec<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(run(c))
}

async fn run(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let immed = c.cdb[1] & 0x80 != 0;
    let job = match c.cdb[1] & 0x1f {
        OVERWRITE => overwrite_job(
            c.data_out,
            lu.block_size(),
            lu.config.sanitize_bytes_per_sec,
        )?,
        BLOCK_ERASE => Job::BlockErase,
        _ => {
            // EXIT FAILURE MODE: complete the failed sanitize successfully.
            lu.sanitize.failed.store(false, Ordering::Release);
            return Ok(Vec::new());
        }
    };
    let state = lu.sanitize.clone();
    if state
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(state.in_progress_sense());
    }
    state.progress.store(0, Ordering::Relaxed);
    let bs = lu.config.backstore.clone();
    let block_size = lu.block_size() as u64;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rtgt-sanitize".into())
        .spawn(move || {
            let res = work(bs.as_ref(), &job, block_size, &state.progress);
            if let Err(e) = &res {
                tracing::warn!(error = %e, "SANITIZE failed");
            }
            state.failed.store(res.is_err(), Ordering::Release);
            state.running.store(false, Ordering::Release);
            let _ = tx.send(res.is_ok());
        });
    if spawned.is_err() {
        lu.sanitize.running.store(false, Ordering::Release);
        return Err(sense::INTERNAL_TARGET_FAILURE);
    }
    if immed {
        return Ok(Vec::new());
    }
    match rx.await {
        Ok(true) => Ok(Vec::new()),
        _ => Err(sense::SANITIZE_FAILED),
    }
}

/// Carry out `job` over the whole medium.
fn work(
    bs: &dyn Backstore,
    job: &Job,
    block_size: u64,
    progress: &AtomicU16,
) -> Result<(), BackstoreError> {
    let cap = bs.capacity();
    match job {
        Job::BlockErase => {
            // Deallocate in bounded pieces so progress moves.
            let step = (1u64 << 30) / block_size * block_size;
            let mut off = 0;
            while off < cap {
                let n = step.min(cap - off);
                match bs.discard(off, n) {
                    Err(BackstoreError::Unsupported) => bs.write_zeroes(off, n)?,
                    r => r?,
                }
                off += n;
                progress.store(
                    ((off as u128 * 65535) / cap as u128) as u16,
                    Ordering::Relaxed,
                );
            }
            bs.flush()
        }
        Job::Overwrite {
            pattern,
            invert,
            passes,
            bytes_per_sec,
        } => {
            let total = cap as u128 * *passes as u128;
            let start = Instant::now();
            let mut done: u64 = 0;
            for pass in 0..*passes {
                // The pattern fills each block from its start; INVERT flips
                // it on every other pass.
                let flip = *invert && pass % 2 == 1;
                let mut block = Vec::with_capacity(block_size as usize);
                while (block.len() as u64) < block_size {
                    block.extend(pattern.iter().map(|&b| if flip { !b } else { b }));
                }
                block.truncate(block_size as usize);
                let per = (CHUNK as u64 / block_size).max(1) as usize;
                let buf = block.repeat(per);
                let mut off = 0;
                while off < cap {
                    let n = (buf.len() as u64).min(cap - off) as usize;
                    bs.write_at(off, &buf[..n], false)?;
                    off += n as u64;
                    done += n as u64;
                    progress.store(((done as u128 * 65535) / total) as u16, Ordering::Relaxed);
                    if *bytes_per_sec > 0 {
                        let due = Duration::from_secs_f64(done as f64 / *bytes_per_sec as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
            bs.flush()
        }
    }
}

/// Wait until no sanitize runs on `lu` (tests).
#[cfg(test)]
pub(crate) async fn wait_idle(lu: &crate::lu::LogicalUnit) {
    for _ in 0..1000 {
        if !lu.sanitize.in_progress() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("sanitize does not finish");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn sanitize(sa: u8, immed: bool, len: u16) -> Vec<u8> {
        let mut c = vec![
            0x48,
            sa | if immed { 0x80 } else { 0 },
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        c[7..9].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn pattern(count: u8, pat: &[u8]) -> Vec<u8> {
        let mut p = vec![count, 0];
        p.extend_from_slice(&(pat.len() as u16).to_be_bytes());
        p.extend_from_slice(pat);
        p
    }

    fn read10(lba: u32, n: u16) -> Vec<u8> {
        let mut c = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    }

    fn write10(lba: u32, data: &[u8]) -> Vec<u8> {
        let mut c = vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&((data.len() / 512) as u16).to_be_bytes());
        c
    }

    #[tokio::test]
    async fn overwrite_writes_the_pattern_everywhere() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let data = vec![b'a'; 512 * 4];
        assert_eq!(t.run(&write10(60, &data), &data).await.status, 0);
        // Two passes with INVERT: the second pass writes the inverse.
        let mut p = pattern(2, &[0x0f, 0xf0]);
        p[0] |= 0x80;
        let r = t.run(&sanitize(OVERWRITE, false, p.len() as u16), &p).await;
        assert_eq!(r.status, 0);
        assert!(!t.lu.sanitize_in_progress());
        let r = t.run(&read10(0, 64), &[]).await;
        assert!(r.data.chunks(2).all(|c| c == [0xf0, 0x0f]), "inverted");
        // One pass, a full-block pattern.
        let pat: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let p = pattern(1, &pat);
        let r = t.run(&sanitize(OVERWRITE, false, p.len() as u16), &p).await;
        assert_eq!(r.status, 0);
        let r = t.run(&read10(63, 1), &[]).await;
        assert_eq!(r.data, pat);
    }

    #[tokio::test]
    async fn parameter_checks() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        // OVERWRITE parameter list length: 5..=516.
        for len in [0u16, 1, 4, 517] {
            let s = t.check(&sanitize(OVERWRITE, false, len)).await;
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 7), "len {len}");
        }
        // OVERWRITE COUNT 0, pattern length 0 or > block size.
        for p in [pattern(0, &[1; 512]), pattern(1, &[]), {
            let mut p = pattern(1, &[1; 512]);
            p[2..4].copy_from_slice(&516u16.to_be_bytes());
            p
        }] {
            let mut p = p;
            p.resize(516, 0);
            let s = t.check_with(&sanitize(OVERWRITE, false, 516), &p).await;
            assert_eq!(s.code(), 0x2600);
        }
        // BLOCK ERASE and EXIT FAILURE MODE take no parameter list.
        for sa in [BLOCK_ERASE, EXIT_FAILURE_MODE] {
            let s = t.check(&sanitize(sa, false, 8)).await;
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 7));
            assert_eq!(t.run(&sanitize(sa, false, 0), &[]).await.status, 0);
        }
        // Every other service action, CRYPTO ERASE included, is refused.
        for sa in (0..0x1f).filter(|&s| s != OVERWRITE && s != BLOCK_ERASE) {
            let s = t.check(&sanitize(sa, false, 0)).await;
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1), "sa {sa}");
        }
        // Reserved bits (ZNR in SBC-4 is not supported) and bytes.
        let s = t.check(&[0x48, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        assert_eq!(s.field.unwrap().byte, 1);
        let s = t.check(&[0x48, 0x02, 0, 5, 0, 0, 0, 0, 0, 0]).await;
        assert_eq!(s.field.unwrap().byte, 3);
    }

    #[tokio::test]
    async fn block_erase_deallocates_and_only_on_thin_lus() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let data = vec![b'a'; 512 * 4];
        assert_eq!(t.run(&write10(0, &data), &data).await.status, 0);
        assert_eq!(t.run(&sanitize(BLOCK_ERASE, false, 0), &[]).await.status, 0);
        assert_eq!(t.run(&read10(0, 4), &[]).await.data, vec![0u8; 2048]);
        assert!(t.store.allocation_is_empty());
        let fat = Fixture::new(64, 512).with_thin(false);
        fat.clear_ua().await;
        let s = fat.check(&sanitize(BLOCK_ERASE, false, 0)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn in_progress_refuses_commands_and_survives_resets() {
        // 64 KiB at 64 KiB/s: about a second.
        let t = Fixture::with_config(128, 512, |c| c.sanitize_bytes_per_sec = 64 << 10);
        let b = t.other_nexus();
        t.clear_ua().await;
        b.clear_ua().await;
        let p = pattern(1, &[0x5a]);
        let r = t.run(&sanitize(OVERWRITE, true, p.len() as u16), &p).await;
        assert_eq!(r.status, 0, "IMMED: completes at once");
        assert!(t.lu.sanitize_in_progress());
        for f in [&t, &b] {
            let s = f.check(&[0, 0, 0, 0, 0, 0]).await;
            assert_eq!((s.key, s.code()), (2, 0x041b));
            assert_eq!(f.check(&read10(0, 1)).await.code(), 0x041b);
            assert_eq!(f.check(&[0x1b, 0, 0, 0, 1, 0]).await.code(), 0x041b);
            assert_eq!(f.run(&[0x12, 0, 0, 0, 96, 0], &[]).await.status, 0);
        }
        // REQUEST SENSE reports it as data, with progress.
        let r = t.run(&[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!((r.data[2], r.data[12], r.data[13]), (2, 0x04, 0x1b));
        assert_eq!(r.data[15] & 0x80, 0x80, "SKSV: progress indication");
        // A LUN reset and the loss of the nexus do not stop it.
        t.nexus
            .task_management(crate::api::TmfFunction::LogicalUnitReset { lun: 0 })
            .await;
        t.nexus.close();
        assert_eq!(b.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x2903);
        assert_eq!(b.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x041b);
        wait_idle(&b.lu).await;
        assert_eq!(b.run(&[0, 0, 0, 0, 0, 0], &[]).await.status, 0);
        assert_eq!(b.run(&read10(127, 1), &[]).await.data, vec![0x5a; 512]);
    }

    #[tokio::test]
    async fn report_supported_opcodes_lists_what_the_lu_offers() {
        // One service action: SUPPORT 011b when offered, 001b when not.
        let rsoc = |sa: u8| vec![0xa3, 0x0c, 0x02, 0x48, 0, sa, 0, 0, 0, 64, 0, 0];
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        for (sa, support) in [(1u8, 3u8), (2, 3), (3, 1), (0x1f, 3)] {
            assert_eq!(t.run(&rsoc(sa), &[]).await.data[1] & 7, support, "sa {sa}");
        }
        let fat = Fixture::new(64, 512).with_thin(false);
        fat.clear_ua().await;
        assert_eq!(fat.run(&rsoc(2), &[]).await.data[1] & 7, 1);
        // B1h: WABEREQ 01b only where BLOCK ERASE is offered; WACEREQ 0.
        let b1 = [0x12, 1, 0xb1, 0, 64, 0];
        assert_eq!(t.run(&b1, &[]).await.data[7] & 0xf0, 0x40);
        assert_eq!(fat.run(&b1, &[]).await.data[7] & 0xf0, 0);
    }

    #[tokio::test]
    async fn failure_mode_until_exit_failure_mode() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        t.store.fail_io(true);
        let p = pattern(1, &[1]);
        let s = t
            .check_with(&sanitize(OVERWRITE, false, p.len() as u16), &p)
            .await;
        assert_eq!((s.key, s.code()), (3, 0x3103));
        t.store.fail_io(false);
        assert_eq!(t.check(&read10(0, 1)).await.code(), 0x3103);
        assert_eq!(t.run(&[0x12, 0, 0, 0, 96, 0], &[]).await.status, 0);
        assert_eq!(
            t.run(&sanitize(EXIT_FAILURE_MODE, false, 0), &[])
                .await
                .status,
            0
        );
        assert_eq!(t.run(&read10(0, 1), &[]).await.status, 0);
    }

    #[tokio::test]
    async fn write_protection_and_reservations() {
        let ro = Fixture::read_only(64, 512);
        ro.clear_ua().await;
        let p = pattern(1, &[1]);
        let s = ro
            .check_with(&sanitize(OVERWRITE, false, p.len() as u16), &p)
            .await;
        assert_eq!((s.key, s.asc), (7, 0x27));
        let s = ro.check(&sanitize(BLOCK_ERASE, false, 0)).await;
        assert_eq!((s.key, s.asc), (7, 0x27));
        let t = Fixture::new(64, 512);
        let b = t.other_nexus();
        t.clear_ua().await;
        b.clear_ua().await;
        assert_eq!(b.run(&[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
        let r = t.run(&sanitize(BLOCK_ERASE, false, 0), &[]).await;
        assert_eq!(r.status, 0x18);
    }
}
