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
//!
//! OVERWRITE goes as fast as the medium does unless
//! [`crate::LuConfig::sanitize_bytes_per_sec`] limits it, and gives way to
//! other work either way: its thread runs at the lowest CPU priority and
//! the lowest best-effort I/O priority (what `nice -n 19 ionice -c2 -n7`
//! gives a background job), and writes in pieces sized to take about
//! [`CHUNK_TIME`] each (up to [`MAX_CHUNK`]), yielding in between, so the
//! storage serves other I/O between them. Other LUs' commands thus keep
//! their CPU and storage; this LU's own (INQUIRY, REPORT LUNS, REQUEST
//! SENSE) never touch the medium.
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

/// Largest write of an OVERWRITE, in bytes.
const MAX_CHUNK: u64 = 16 << 20;
/// Smallest write an OVERWRITE shrinks to when the medium is slow.
const MIN_CHUNK: u64 = 128 << 10;
/// First write of an OVERWRITE, before the medium's speed is known.
const FIRST_CHUNK: u64 = 1 << 20;
/// How long one write of an OVERWRITE should take: the write size halves
/// when a write takes longer and doubles when one takes under a quarter.
const CHUNK_TIME: Duration = Duration::from_millis(10);
/// A rate-limited OVERWRITE writes about this many times per second.
const RATE_STEPS_PER_SEC: u64 = 8;

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
            background_priority();
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
            let mut pace = Pacer::new(block_size, *bytes_per_sec);
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
                let buf = block.repeat((pace.max_len().min(cap) / block_size) as usize);
                let mut off = 0;
                while off < cap {
                    let n = pace.len().min(cap - off) as usize;
                    let t = Instant::now();
                    bs.write_at(off, &buf[..n], false)?;
                    off += n as u64;
                    done += n as u64;
                    progress.store(((done as u128 * 65535) / total) as u16, Ordering::Relaxed);
                    match pace.wrote(n as u64, t.elapsed(), start.elapsed()) {
                        Some(wait) => std::thread::sleep(wait),
                        None => std::thread::yield_now(),
                    }
                }
            }
            bs.flush()
        }
    }
}

/// How much an OVERWRITE writes at a time, and whether it waits after.
#[derive(Debug)]
struct Pacer {
    block_size: u64,
    /// Size of the next write, in blocks.
    blocks: u64,
    /// Bounds of `blocks`.
    min: u64,
    max: u64,
    /// Bytes per second; 0: no limit.
    rate: u64,
    /// Bytes written so far.
    done: u64,
}

impl Pacer {
    fn new(block_size: u64, rate: u64) -> Pacer {
        // A rate limit spreads the writes over the second.
        let max_len = match rate {
            0 => MAX_CHUNK,
            r => (r / RATE_STEPS_PER_SEC).min(MAX_CHUNK),
        };
        let max = (max_len / block_size).max(1);
        let min = (MIN_CHUNK / block_size).clamp(1, max);
        Pacer {
            block_size,
            blocks: (FIRST_CHUNK / block_size).clamp(min, max),
            min,
            max,
            rate,
            done: 0,
        }
    }

    /// Bytes of the next write.
    fn len(&self) -> u64 {
        self.blocks * self.block_size
    }

    /// Bytes of the largest write.
    fn max_len(&self) -> u64 {
        self.max * self.block_size
    }

    /// A write of `n` bytes took `took`, `elapsed` since the first began:
    /// size the next one, and say how long to wait to keep to the rate.
    fn wrote(&mut self, n: u64, took: Duration, elapsed: Duration) -> Option<Duration> {
        self.done = self.done.saturating_add(n);
        if took > CHUNK_TIME {
            self.blocks = (self.blocks / 2).max(self.min);
        } else if took < CHUNK_TIME / 4 {
            self.blocks = (self.blocks * 2).min(self.max);
        }
        if self.rate == 0 {
            return None;
        }
        let due = Duration::try_from_secs_f64(self.done as f64 / self.rate as f64)
            .unwrap_or(Duration::MAX);
        due.checked_sub(elapsed).filter(|w| !w.is_zero())
    }
}

/// Make the calling thread a background one: the lowest CPU priority and
/// the lowest best-effort I/O priority (`nice -n 19 ionice -c2 -n7`).
/// Best effort: where that fails, it runs at normal priority.
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_BE: libc::c_long = 2;
        const IOPRIO_CLASS_SHIFT: u32 = 13;
        const NICE: libc::c_int = 19;
        // SAFETY: gettid, setpriority and ioprio_set take integers only and
        // change nothing but the scheduling of the calling thread (on Linux
        // both priorities are per thread).
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                tid,
                (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7,
            );
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
    async fn overwrite_spanning_many_writes() {
        // 3 MiB and three blocks: writes of growing size, a short last one.
        let blocks = 3 * 2048 + 3;
        let t = Fixture::new(blocks, 512);
        t.clear_ua().await;
        assert_eq!(t.lu.config.sanitize_bytes_per_sec, 0, "no limit by default");
        let p = pattern(1, &[0xa5, 0x5a, 0x01]);
        let r = t.run(&sanitize(OVERWRITE, false, p.len() as u16), &p).await;
        assert_eq!(r.status, 0);
        let block: Vec<u8> = [0xa5, 0x5a, 0x01].into_iter().cycle().take(512).collect();
        for lba in [0, 2047, 2048, 6143, 6144, blocks as u32 - 1] {
            let r = t.run(&read10(lba, 1), &[]).await;
            assert_eq!(r.data, block, "lba {lba}");
        }
        assert_eq!(t.store.flushes(), 1);
    }

    #[test]
    fn pacer_sizes_writes_by_their_duration() {
        let ms = Duration::from_millis;
        let mut p = Pacer::new(512, 0);
        assert_eq!(p.len(), FIRST_CHUNK);
        assert_eq!(p.max_len(), MAX_CHUNK);
        // Fast writes grow to the largest size, and never wait.
        for _ in 0..10 {
            assert_eq!(p.wrote(p.len(), ms(1), ms(1000)), None);
        }
        assert_eq!(p.len(), MAX_CHUNK);
        // Slow ones shrink to the smallest; in between, it stays.
        for _ in 0..10 {
            assert_eq!(p.wrote(p.len(), ms(50), ms(1000)), None);
        }
        assert_eq!(p.len(), MIN_CHUNK);
        p.wrote(p.len(), ms(5), ms(1000));
        assert_eq!(p.len(), MIN_CHUNK);
        // Big blocks: never less than one.
        let p = Pacer::new(4096, 1000);
        assert_eq!((p.len(), p.max_len()), (4096, 4096));
    }

    #[test]
    fn pacer_keeps_to_a_configured_rate() {
        let ms = Duration::from_millis;
        // 64 KiB/s: writes of 8 KiB, 125 ms apart.
        let mut p = Pacer::new(512, 64 << 10);
        assert_eq!((p.len(), p.max_len()), (8192, 8192));
        assert_eq!(p.wrote(8192, ms(1), ms(1)), Some(ms(124)));
        assert_eq!(p.wrote(8192, ms(1), ms(200)), Some(ms(50)));
        // Behind the rate (a slow medium): no wait.
        assert_eq!(p.wrote(8192, ms(1), ms(900)), None);
        assert_eq!(p.len(), 8192);
        // A high rate is capped by the largest write.
        assert_eq!(Pacer::new(512, 1 << 40).max_len(), MAX_CHUNK);
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
        // A rate limit keeps it running: 64 KiB at 64 KiB/s, about a second.
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

    /// Reads of 64 KiB on LUN 1 by `readers` tasks until `stop`: how many,
    /// and their latencies.
    async fn read_load(
        nexus: &std::sync::Arc<crate::api::Nexus>,
        readers: usize,
        stop: Instant,
    ) -> (usize, Vec<Duration>) {
        let tasks: Vec<_> = (0..readers)
            .map(|i| {
                let nexus = nexus.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut lba = i as u32 * 4096;
                    while Instant::now() < stop {
                        let s = Instant::now();
                        let p = nexus.prepare(cmd(1, &read10(lba, 128))).ok().unwrap();
                        assert_eq!(done(p.execute(Vec::new()).await).status, 0);
                        lat.push(s.elapsed());
                        lba = (lba + 128) % (64 << 11);
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        (all.len(), all)
    }

    /// Not a test: the time of a SANITIZE OVERWRITE of 1 GiB LUs, alone and
    /// beside reads on another LU. Run with
    /// `cargo test --release -p rtgt-scsi sanitize_timing -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn sanitize_timing() {
        use rtgt_backstore::{FileIo, FileIoOptions, RamDisk};
        use std::sync::Arc;
        const GIB: u64 = 1 << 30;
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let window = Duration::from_secs(2);
        for kind in ["ramdisk", "fileio"] {
            let make = |rate: Option<u64>| {
                let store: Arc<dyn Backstore> = match kind {
                    "ramdisk" => Arc::new(RamDisk::new(GIB, 512)),
                    _ => Arc::new(
                        FileIo::open(FileIoOptions {
                            size: Some(GIB),
                            ..FileIoOptions::new(dir.path().join("lun.img"))
                        })
                        .unwrap(),
                    ),
                };
                let mut cfg = crate::lu::LuConfig::new("t", store);
                if let Some(r) = rate {
                    cfg.sanitize_bytes_per_sec = r;
                }
                let other = RamDisk::new(64 << 20, 512);
                other.write_at(0, &vec![1u8; 64 << 20], false).unwrap();
                let other = crate::lu::LuConfig::new("o", Arc::new(other));
                Fixture::with_lus(
                    vec![
                        crate::lu::LogicalUnit::new(cfg),
                        crate::lu::LogicalUnit::new(other),
                    ],
                    Arc::new(MemStore::new(1, 512, 512, false)),
                )
            };
            let p = pattern(1, &[0x5a]);
            let cdb = sanitize(OVERWRITE, true, p.len() as u16);
            // Alone, as configured by default (three times: the times vary).
            for _ in 0..3 {
                let t = make(None);
                t.clear_ua().await;
                let start = Instant::now();
                assert_eq!(t.run(&cdb, &p).await.status, 0);
                wait_idle_long(&t.lu).await;
                let took = start.elapsed();
                println!(
                    "{kind}: SANITIZE OVERWRITE 1 GiB, default settings: {:.2} s ({:.0} MiB/s)",
                    took.as_secs_f64(),
                    1024.0 / took.as_secs_f64()
                );
                let r = t.run(&read10((GIB / 512 - 1) as u32, 1), &[]).await;
                assert_eq!(r.data, vec![0x5a; 512]);
            }
            // Unlimited, while 1 or 2 tasks read another LU flat out.
            for readers in [1, 2] {
                let t = make(Some(0));
                t.clear_ua().await;
                while t.run_lun(1, &read10(0, 1), &[]).await.status != 0 {}
                let (base, _) = read_load(&t.nexus, readers, Instant::now() + window).await;
                let start = Instant::now();
                assert_eq!(t.run(&cdb, &p).await.status, 0);
                let (n, lat) = read_load(&t.nexus, readers, start + window).await;
                let left = 65535 - t.lu.sanitize.progress.load(Ordering::Relaxed);
                wait_idle_long(&t.lu).await;
                let took = start.elapsed();
                println!(
                    "{kind}: SANITIZE OVERWRITE 1 GiB, no limit, {readers} reader(s) of another \
                     LU for the first {window:?}: reads {:.0}% of their rate alone, latency \
                     p50 {:?} p99 {:?} max {:?}; {:.0}% left after {window:?}; done in {:.2} s",
                    100.0 * n as f64 / base as f64,
                    lat[lat.len() / 2],
                    lat[lat.len() * 99 / 100],
                    lat[lat.len() - 1],
                    100.0 * left as f64 / 65535.0,
                    took.as_secs_f64(),
                );
            }
        }
    }

    /// Wait (up to 10 minutes) until no sanitize runs on `lu`.
    async fn wait_idle_long(lu: &crate::lu::LogicalUnit) {
        for _ in 0..60_000 {
            if !lu.sanitize.in_progress() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sanitize does not finish");
    }
}
