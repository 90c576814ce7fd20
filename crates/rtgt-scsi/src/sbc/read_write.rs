//! The block commands (SBC-4): READ and WRITE (6/10/12/16), VERIFY and
//! WRITE AND VERIFY (10/12/16), PRE-FETCH and SYNCHRONIZE CACHE (10/16):
//! decoding in `prepare()` and the backstore I/O in `execute()`.
//!
//! Backstore calls run inline when the backstore does not block (RAM) and
//! on tokio's blocking pool otherwise.

use std::sync::Arc;

use rtgt_backstore::{aio, uring, Backstore, BackstoreError, IoBuf};

use crate::core::cdb::{self, LbaLen};
use crate::core::handler::{Action, BlockRange, Decode, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::task_set::TaskHandle;
use crate::lu::LogicalUnit;
use crate::spc::vpd;

/// What a CDB family does with its range.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    WriteVerify,
    Verify,
    Prefetch,
    Sync,
}

/// Check that `lba..lba+len` lies within the medium.
pub(crate) fn check_range(lu: &LogicalUnit, lba: u64, len: u64) -> Result<(), Sense> {
    let blocks = lu.num_blocks();
    match lba.checked_add(len) {
        Some(end) if lba < blocks && end <= blocks => Ok(()),
        _ => Err(sense::LBA_OUT_OF_RANGE),
    }
}

fn plan(d: &Decode<'_>, ll: LbaLen, kind: Kind) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let bs = lu.block_size();
    let fua = d.cdb[0] != 0x08 && d.cdb[0] != 0x0a && d.cdb[1] & 0x08 != 0;
    let bytchk = (d.cdb[1] >> 1) & 0x03;
    match kind {
        Kind::Prefetch | Kind::Sync => {
            // Length 0 means "to the end of the medium".
            check_range(lu, ll.lba, ll.len as u64)?;
            return Ok(if kind == Kind::Sync {
                Plan::action(Action::Sync)
            } else {
                Plan::good()
            });
        }
        Kind::Verify if bytchk == 0b10 => return Err(Sense::invalid_cdb_field(1, Some(2))),
        _ => {}
    }
    if ll.len > vpd::max_transfer_blocks(bs) {
        return Err(Sense::invalid_cdb_field(ll.len_offset, None));
    }
    check_range(lu, ll.lba, ll.len as u64)?;
    if ll.len == 0 {
        return Ok(Plan::good());
    }
    let r = BlockRange {
        lba: ll.lba,
        blocks: ll.len,
        fua,
        bytchk,
    };
    let bytes = ll.len * bs;
    Ok(match kind {
        Kind::Read => Plan::action(Action::Read(r)),
        Kind::Write => Plan::action(Action::Write(r)).with_data_out(bytes),
        Kind::WriteVerify => Plan::action(Action::WriteVerify(r)).with_data_out(bytes),
        Kind::Verify => match bytchk {
            0 => Plan::good(),
            1 => Plan::action(Action::Verify(r)).with_data_out(bytes),
            _ => Plan::action(Action::Verify(r)).with_data_out(bs),
        },
        Kind::Prefetch | Kind::Sync => unreachable!(),
    })
}

pub(crate) fn decode_read6(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len6(d.cdb), Kind::Read)
}
pub(crate) fn decode_write6(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len6(d.cdb), Kind::Write)
}
pub(crate) fn decode_read10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::Read)
}
pub(crate) fn decode_write10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::Write)
}
pub(crate) fn decode_write_verify10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::WriteVerify)
}
pub(crate) fn decode_verify10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::Verify)
}
pub(crate) fn decode_prefetch10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::Prefetch)
}
pub(crate) fn decode_sync10(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len10(d.cdb), Kind::Sync)
}
pub(crate) fn decode_read12(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len12(d.cdb), Kind::Read)
}
pub(crate) fn decode_write12(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len12(d.cdb), Kind::Write)
}
pub(crate) fn decode_write_verify12(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len12(d.cdb), Kind::WriteVerify)
}
pub(crate) fn decode_verify12(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len12(d.cdb), Kind::Verify)
}
pub(crate) fn decode_read16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::Read)
}
pub(crate) fn decode_write16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::Write)
}
pub(crate) fn decode_write_verify16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::WriteVerify)
}
pub(crate) fn decode_verify16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::Verify)
}
pub(crate) fn decode_prefetch16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::Prefetch)
}
pub(crate) fn decode_sync16(d: &Decode<'_>) -> Result<Plan, Sense> {
    plan(d, cdb::lba_len16(d.cdb), Kind::Sync)
}

/// Map a backstore error onto sense data.
pub(crate) fn io_sense(e: BackstoreError, write: bool) -> Sense {
    match e {
        BackstoreError::OutOfRange { .. } => sense::LBA_OUT_OF_RANGE,
        BackstoreError::Unsupported => sense::INTERNAL_TARGET_FAILURE,
        BackstoreError::Io(e) => match e.raw_os_error() {
            // The file system (or thin pool) under the LU is full.
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => sense::SPACE_ALLOCATION_FAILED,
            // The device under the LU went away.
            Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::ENOMEDIUM) => {
                sense::NOT_READY_MANUAL_INTERVENTION
            }
            // A cluster (RBD) that did not answer within its deadline:
            // retryable, not a medium error the host would give up on.
            Some(libc::ETIMEDOUT) => sense::TIMEOUT_ON_LOGICAL_UNIT,
            // This gateway was blocklisted (fenced) by the cluster (Ceph's
            // EBLOCKLISTED is ESHUTDOWN): not accessible here, which sends
            // multipath initiators to another gateway.
            Some(libc::ESHUTDOWN) => sense::ALUA_TRANSITIONING,
            _ if write => sense::WRITE_ERROR,
            _ => sense::UNRECOVERED_READ_ERROR,
        },
    }
}

/// [`io_sense`] for an I/O starting at `lba`: a medium error names the
/// LBA in the INFORMATION field.
pub(crate) fn io_sense_at(e: BackstoreError, write: bool, lba: u64) -> Sense {
    let s = io_sense(e, write);
    if s.key == sense::key::MEDIUM_ERROR {
        s.with_info(lba)
    } else {
        s
    }
}

/// The first LBA of `r` that fails to read, for a read of the whole range
/// that failed with a medium error (block by block: errors are rare, and
/// the initiator's error handling wants the exact block).
fn first_bad_lba(b: &dyn Backstore, r: BlockRange, block_size: u32) -> u64 {
    let mut one = vec![0u8; block_size as usize];
    (r.lba..r.lba + r.blocks as u64)
        .find(|lba| b.read_at(lba * block_size as u64, &mut one).is_err())
        .unwrap_or(r.lba)
}

/// The command whose backstore calls run in this task: the LU it was
/// issued to, its task there, and that LU's abort epoch when it registered.
pub(crate) struct IoContext {
    pub lu: Arc<LogicalUnit>,
    pub task: TaskHandle,
    pub epoch: u64,
}

tokio::task_local! {
    static IO_CONTEXT: IoContext;
}

/// Run a command's execution with its [`IoContext`].
pub(crate) async fn with_io_context<F: std::future::Future>(ctx: IoContext, f: F) -> F::Output {
    IO_CONTEXT.scope(ctx, f).await
}

/// Run `f` (which only reads) on the backstore: inline when it does not
/// block, else on a blocking worker thread.
pub(crate) async fn on_backstore<T, F>(bs: &Arc<dyn Backstore>, f: F) -> Result<T, Sense>
where
    T: Send + 'static,
    F: FnOnce(&dyn Backstore) -> T + Send + 'static,
{
    if bs.may_block() {
        let bs = bs.clone();
        tokio::task::spawn_blocking(move || f(bs.as_ref()))
            .await
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)
    } else {
        Ok(f(bs.as_ref()))
    }
}

/// [`on_backstore`] for a call that changes the medium: on a worker
/// thread it enters the issuing LU's fence, so task management that aborts
/// the command waits until the call has returned, and it never starts for
/// a command already aborted (a write the initiator was told is gone must
/// not land later, over newer data).
pub(crate) async fn on_backstore_write<T, F>(bs: &Arc<dyn Backstore>, f: F) -> Result<T, Sense>
where
    T: Send + 'static,
    F: FnOnce(&dyn Backstore) -> T + Send + 'static,
{
    if !bs.may_block() {
        return Ok(f(bs.as_ref()));
    }
    let entered = enter_fence()?;
    let bs = bs.clone();
    tokio::task::spawn_blocking(move || {
        let _in_flight = entered;
        f(bs.as_ref())
    })
    .await
    .map_err(|_| sense::INTERNAL_TARGET_FAILURE)
}

/// Enter the issuing LU's fence for a write that may outlive its command
/// (on a worker thread, or in io_uring): `Err` when the command was already
/// aborted, so the write must not start; `None` for background work done
/// on behalf of no command.
fn enter_fence() -> Result<Option<crate::lu::fence::Entered>, Sense> {
    let entered = IO_CONTEXT.try_with(|c| {
        let entered = c.lu.fence.enter();
        (!c.lu.tasks.aborted_since(c.task, c.epoch)).then_some(entered)
    });
    match entered {
        Ok(Some(e)) => Ok(Some(e)),
        // Aborted: the command reports no status, whatever this says.
        Ok(None) => Err(sense::INTERNAL_TARGET_FAILURE),
        Err(_) => Ok(None),
    }
}

/// Whether io_uring may take `len` bytes at `off` on this medium (the
/// range check the blocking calls make themselves).
fn uring_file(
    bs: &Arc<dyn Backstore>,
    write: bool,
    fua: bool,
    off: u64,
    len: usize,
) -> Option<uring::UringFile> {
    let file = bs.uring_file(write, fua)?;
    rtgt_backstore::check_range(off, len as u64, bs.capacity())
        .is_ok()
        .then_some(file)
}

/// Offset of the first byte where `a` and `b` differ.
pub(crate) fn first_mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Read `r` from the medium.
pub(crate) async fn read(
    bs: &Arc<dyn Backstore>,
    r: BlockRange,
    block_size: u32,
) -> Result<IoBuf, Sense> {
    read_into(bs, r, block_size, None).await
}

/// Read `r` from the medium into `dest` when the fabric lent one large
/// enough (the initiator's own memory: no copy on the way), else into a
/// pooled buffer.
///
/// Reading into lent memory is a write into someone else's memory, so it
/// is fenced like a write to the medium: it does not start for a command
/// already aborted, and task management waits until the kernel or worker
/// is done with it, so the initiator is never told a command is gone while
/// its data can still land in its buffers.
pub(crate) async fn read_into(
    bs: &Arc<dyn Backstore>,
    r: BlockRange,
    block_size: u32,
    dest: Option<IoBuf>,
) -> Result<IoBuf, Sense> {
    let off = r.lba * block_size as u64;
    let len = (r.blocks * block_size) as usize;
    // Every byte is overwritten by the read or the buffer is dropped.
    let mut buf = match dest {
        Some(mut d) if d.len() >= len => {
            d.truncate(len);
            d
        }
        _ => IoBuf::with_len(len),
    };
    let lent = buf.is_foreign();
    let fence = || if lent { enter_fence() } else { Ok(None) };
    let flush = r.fua && bs.write_cache();
    if let (false, Some(io)) = (flush, bs.async_io()) {
        if rtgt_backstore::check_range(off, len as u64, bs.capacity()).is_ok() {
            // Completes by callback; an error goes the blocking way, which
            // says which block failed.
            let keep = Box::new((bs.clone(), fence()?));
            buf = match aio::read(io, off, buf, keep).await {
                (Ok(()), b) => return Ok(b),
                (Err(e), b) => {
                    // Not a medium error (a timeout, a fenced gateway): the
                    // answer now, not after a second wait on the blocking
                    // path, which is there to find the failing block.
                    let s = io_sense(e.into(), false);
                    if s.key != sense::key::MEDIUM_ERROR {
                        return Err(s);
                    }
                    if b.len() == len {
                        b
                    } else {
                        IoBuf::with_len(len)
                    }
                }
            };
        }
    }
    if !flush && bs.may_block() {
        // A cache hit needs no blocking thread.
        if let Some(Ok(())) = bs.read_nowait(off, &mut buf) {
            return Ok(buf);
        }
        // A miss: io_uring, without a thread hand-off. An error there, or
        // no io_uring: the blocking path (which also says which block).
        if let Some(file) = uring_file(bs, false, false, off, buf.len()) {
            // The fence rides with the operation (until its completion).
            let keep = Box::new((bs.clone(), fence()?));
            buf = match uring::read(file, off, buf, keep).await {
                Ok((Ok(()), b)) => return Ok(b),
                Ok((Err(_), b)) | Err(b) => b,
            };
        }
    }
    let in_flight = fence()?;
    let res = on_backstore(bs, move |b| {
        let _in_flight = in_flight;
        // READ with FUA: make cached writes reach the medium first.
        let res = if flush { b.flush() } else { Ok(()) };
        match res.and_then(|_| b.read_at(off, &mut buf)) {
            Ok(()) => Ok(buf),
            Err(e) => {
                let s = io_sense(e, false);
                Err(if s.key == sense::key::MEDIUM_ERROR {
                    s.with_info(first_bad_lba(b, r, block_size))
                } else {
                    s
                })
            }
        }
    })
    .await?;
    res
}

/// Write `data` at `off` on a medium that may block: through io_uring
/// where it can, else on a blocking worker. Either way the write enters
/// the LU's fence first and holds it until the medium has it.
async fn write_blocking(
    bs: &Arc<dyn Backstore>,
    off: u64,
    data: IoBuf,
    fua: bool,
) -> Result<(rtgt_backstore::Result<()>, IoBuf), Sense> {
    if let Some(io) = bs.async_io() {
        if rtgt_backstore::check_range(off, data.len() as u64, bs.capacity()).is_ok() {
            let keep = Box::new((bs.clone(), enter_fence()?));
            let (res, data) = aio::write(io, off, data, fua, keep).await;
            return Ok((res.map_err(BackstoreError::from), data));
        }
    }
    let data = match uring_file(bs, true, fua, off, data.len()) {
        Some(file) => {
            let entered = enter_fence()?;
            let keep = Box::new((bs.clone(), entered));
            match uring::write(file, off, data, keep).await {
                Ok((res, data)) => return Ok((res.map_err(BackstoreError::from), data)),
                Err(data) => data,
            }
        }
        None => data,
    };
    on_backstore_write(bs, move |b| {
        let res = b.write_at(off, &data, fua);
        (res, data)
    })
    .await
}

/// Carry out an I/O action. Returns the Data-In.
/// `data_in`: memory the fabric lends for a READ's data (see [`read_into`]).
pub(crate) async fn execute(
    lu: &LogicalUnit,
    action: &Action,
    mut data_out: IoBuf,
    data_in: Option<IoBuf>,
) -> Result<IoBuf, Sense> {
    let bs = &lu.config.backstore;
    let block_size = lu.block_size();
    match *action {
        Action::Read(r) => read_into(bs, r, block_size, data_in).await,
        Action::Write(r) | Action::WriteVerify(r) => {
            let needed = (r.blocks * block_size) as usize;
            if data_out.len() < needed && !data_out.len().is_multiple_of(block_size as usize) {
                // The initiator sent part of a block.
                return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
            }
            // Write only what arrived (a shorter expected length than the
            // CDB asks for), and never more than the CDB asks for.
            data_out.truncate(needed);
            if data_out.is_empty() {
                return Ok(IoBuf::new());
            }
            let verify = matches!(action, Action::WriteVerify(_));
            let fua = r.fua || verify;
            let off = r.lba * block_size as u64;
            // Ordered against COMPARE AND WRITE and atomic writes.
            let _range = lu.ranges.shared(r.lba, r.blocks as u64).await;
            let fast = if !fua && bs.may_block() {
                bs.write_nowait(off, &data_out)
            } else {
                None
            };
            let (res, data_out) = match fast {
                Some(res) => (res, data_out),
                None => write_blocking(bs, off, data_out, fua).await?,
            };
            res.map_err(|e| io_sense_at(e, true, r.lba))?;
            if verify && r.bytchk == 1 {
                let written = BlockRange {
                    blocks: (data_out.len() / block_size as usize) as u32,
                    fua: false,
                    ..r
                };
                let back = read(bs, written, block_size).await?;
                if let Some(at) = first_mismatch(&back, &data_out) {
                    return Err(sense::MISCOMPARE_DURING_VERIFY.with_info(at as u64));
                }
            }
            Ok(IoBuf::new())
        }
        Action::Verify(r) => {
            let medium = read(bs, r, block_size).await?;
            let mismatch = if r.bytchk == 0b11 {
                // One block of Data-Out compared with every block.
                let bsz = block_size as usize;
                if data_out.len() < bsz {
                    return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
                }
                medium.chunks(bsz).enumerate().find_map(|(i, blk)| {
                    first_mismatch(blk, &data_out[..bsz]).map(|at| i * bsz + at)
                })
            } else {
                let n = data_out.len().min(medium.len());
                first_mismatch(&medium[..n], &data_out[..n])
            };
            match mismatch {
                Some(at) => Err(sense::MISCOMPARE_DURING_VERIFY.with_info(at as u64)),
                None => Ok(IoBuf::new()),
            }
        }
        Action::Sync => {
            on_backstore(bs, |b| b.flush())
                .await?
                .map_err(|e| io_sense(e, true))?;
            Ok(IoBuf::new())
        }
        Action::Good | Action::Emulate(_) | Action::Async(_) => Ok(IoBuf::new()),
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    fn rw10(op: u8, flags: u8, lba: u32, len: u16) -> Vec<u8> {
        let mut c = vec![op, flags, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn rw16(op: u8, flags: u8, lba: u64, len: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = op;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn rw12(op: u8, flags: u8, lba: u32, len: u32) -> Vec<u8> {
        let mut c = vec![0u8; 12];
        c[0] = op;
        c[1] = flags;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[6..10].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn write_read_round_trip_all_sizes() {
        for blocking in [false, true] {
            let t = Fixture::build(2048, 512, 512, blocking);
            t.clear_ua().await;
            let data = pattern(8 * 512, 3);
            // WRITE(10) with FUA, READ(10).
            let p = t
                .nexus
                .prepare(cmd(0, &rw10(0x2a, 0x08, 100, 8)))
                .map_err(|r| r.status)
                .unwrap();
            assert_eq!(p.data_out_len(), 4096);
            let r = done(p.execute(data.clone()).await);
            assert_eq!(r.status, 0);
            assert!(t.store.fua_writes() >= 1);
            let r = t.run(&rw10(0x28, 0, 100, 8), &[]).await;
            assert_eq!(r.data, data);
            // READ(6), READ(12), READ(16) see the same data.
            let r = t.run(&[0x08, 0, 0, 100, 8, 0], &[]).await;
            assert_eq!(r.data, data);
            let r = t.run(&rw12(0xa8, 0, 100, 8), &[]).await;
            assert_eq!(r.data, data);
            let r = t.run(&rw16(0x88, 0x18, 100, 8), &[]).await;
            assert_eq!(r.data, data);
            // WRITE(6) with length 0 = 256 blocks; WRITE(16), WRITE(12).
            let big = pattern(256 * 512, 9);
            let r = t.run(&[0x0a, 0, 0x02, 0, 0, 0], &big).await;
            assert_eq!(r.status, 0);
            assert_eq!(t.run(&rw16(0x88, 0, 512, 256), &[]).await.data, big);
            let d2 = pattern(512, 77);
            assert_eq!(t.run(&rw16(0x8a, 0, 2047, 1), &d2).await.status, 0);
            assert_eq!(t.run(&rw12(0xa8, 0, 2047, 1), &[]).await.data, d2);
            assert_eq!(t.run(&rw12(0xaa, 0, 0, 1), &d2).await.status, 0);
            assert_eq!(t.run(&rw10(0x28, 0, 0, 1), &[]).await.data, d2);
        }
    }

    #[tokio::test]
    async fn reads_and_writes_go_through_a_medium_s_asynchronous_io() {
        let t = Fixture::build(2048, 512, 512, true);
        t.clear_ua().await;
        t.store.set_native(true);
        let data = pattern(16 * 512, 5);
        let fua = t.store.fua_writes();
        assert_eq!(t.run(&rw10(0x2a, 0x08, 100, 16), &data).await.status, 0);
        assert_eq!(t.store.fua_writes(), fua + 1, "FUA reaches the medium");
        let r = t.run(&rw10(0x28, 0, 100, 16), &data).await;
        assert_eq!(r.data, data);
        assert_eq!(t.store.native_calls(), 2, "both completed by callback");
        // A failed asynchronous read is retried the blocking way, which
        // gives the sense (and the block) of a read error.
        t.store.fail_io(true);
        let s = t.check(&rw10(0x28, 0, 100, 16)).await;
        assert_eq!((s.key, s.asc), (0x03, 0x11));
        let s = t.check_with(&rw10(0x2a, 0, 100, 1), &data[..512]).await;
        assert_eq!((s.key, s.asc), (0x03, 0x0c));
    }

    #[tokio::test]
    async fn a_cluster_timeout_is_retryable_and_a_fenced_gateway_not_accessible() {
        for native in [false, true] {
            let t = Fixture::build(2048, 512, 512, true);
            t.clear_ua().await;
            t.store.set_native(native);
            t.store.fail_with(libc::ETIMEDOUT);
            for s in [
                t.check(&rw10(0x28, 0, 0, 8)).await,
                t.check_with(&rw10(0x2a, 0, 0, 1), &[0u8; 512]).await,
            ] {
                // ABORTED COMMAND / TIMEOUT ON LOGICAL UNIT, not a medium error.
                assert_eq!(
                    (s.key, s.asc, s.ascq),
                    (0x0b, 0x3e, 0x02),
                    "native {native}"
                );
            }
            t.store.fail_with(libc::ESHUTDOWN);
            let s = t.check(&rw10(0x28, 0, 0, 8)).await;
            assert_eq!(
                (s.key, s.asc, s.ascq),
                (0x02, 0x04, 0x0a),
                "native {native}"
            );
        }
    }

    #[tokio::test]
    async fn range_and_length_errors() {
        let t = Fixture::new(1000, 512);
        t.clear_ua().await;
        // Zero blocks: GOOD without data, but the LBA is still checked.
        let r = t.run(&rw10(0x28, 0, 0, 0), &[]).await;
        assert_eq!((r.status, r.data.len()), (0, 0));
        assert_eq!(t.check(&rw10(0x28, 0, 1001, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&rw10(0x28, 0, 999, 2)).await.code(), 0x2100);
        assert_eq!(t.check(&rw10(0x28, 0, u32::MAX, 1)).await.code(), 0x2100);
        assert_eq!(t.check(&rw16(0x88, 0, u64::MAX, 1)).await.code(), 0x2100);
        assert_eq!(
            t.check(&rw16(0x8a, 0, u64::MAX - 1, 4)).await.code(),
            0x2100
        );
        assert_eq!(
            t.check(&[0x08, 0x1f, 0xff, 0xff, 1, 0]).await.code(),
            0x2100
        );
        assert_eq!(t.run(&rw10(0x28, 0, 999, 1), &[]).await.status, 0);
        // Longer than the maximum transfer length: field pointer at the
        // transfer length.
        let s = t.check(&rw12(0xa8, 0, 0, 16385)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 6));
        // RDPROTECT.
        let s = t.check(&rw10(0x28, 0x20, 0, 1)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn short_data_out_writes_only_whole_blocks_that_arrived() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        let a = vec![b'a'; 1024];
        assert_eq!(t.run(&rw10(0x2a, 0, 0, 2), &a).await.status, 0);
        // Two blocks in the CDB, one block of data.
        let b = vec![b'b'; 512];
        assert_eq!(t.run(&rw10(0x2a, 0, 0, 2), &b).await.status, 0);
        let r = t.run(&rw10(0x28, 0, 0, 2), &[]).await;
        assert_eq!(&r.data[..512], &b[..]);
        assert_eq!(&r.data[512..], &a[512..]);
        // Nothing at all.
        assert_eq!(t.run(&rw10(0x2a, 0, 0, 1), &[]).await.status, 0);
        // Part of a block.
        let s = t.check_with(&rw10(0x2a, 0, 0, 1), &[0u8; 200]).await;
        assert_eq!(s.code(), 0x0e03);
    }

    #[tokio::test]
    async fn verify_and_write_verify() {
        let t = Fixture::new(256, 512);
        t.clear_ua().await;
        let data = pattern(4 * 512, 1);
        assert_eq!(t.run(&rw10(0x2a, 0, 10, 4), &data).await.status, 0);
        // BYTCHK=0: no Data-Out, GOOD.
        let p = t
            .nexus
            .prepare(cmd(0, &rw10(0x2f, 0x10, 10, 4)))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(p.data_out_len(), 0);
        assert_eq!(done(p.execute(Vec::new()).await).status, 0);
        // BYTCHK=1 matching.
        assert_eq!(t.run(&rw10(0x2f, 0x02, 10, 4), &data).await.status, 0);
        assert_eq!(t.run(&rw16(0x8f, 0x02, 10, 4), &data).await.status, 0);
        assert_eq!(t.run(&rw12(0xaf, 0x02, 10, 4), &data).await.status, 0);
        // BYTCHK=1 with a flipped byte: MISCOMPARE, information = offset.
        let mut bad = data.clone();
        bad[1234] ^= b'X';
        let s = t.check_with(&rw10(0x2f, 0x02, 10, 4), &bad).await;
        assert_eq!((s.key, s.code(), s.info), (0x0e, 0x1d00, Some(1234)));
        // BYTCHK=11b: one block against each.
        let same = vec![7u8; 512];
        assert_eq!(
            t.run(
                &rw10(0x2a, 0, 20, 3),
                &[same.clone(), same.clone(), same.clone()].concat()
            )
            .await
            .status,
            0
        );
        let p = t
            .nexus
            .prepare(cmd(0, &rw10(0x2f, 0x06, 20, 3)))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(p.data_out_len(), 512);
        assert_eq!(done(p.execute(same.clone()).await).status, 0);
        let s = t.check_with(&rw10(0x2f, 0x06, 19, 3), &same).await;
        assert_eq!((s.code(), s.info), (0x1d00, Some(0)));
        // BYTCHK=10b is reserved.
        let s = t.check(&rw10(0x2f, 0x04, 20, 1)).await;
        assert_eq!(
            (s.code(), s.field.unwrap().byte, s.field.unwrap().bit),
            (0x2400, 1, Some(2))
        );
        // WRITE AND VERIFY with BYTCHK: written and durable.
        let fua_before = t.store.fua_writes();
        let d2 = pattern(2 * 512, 5);
        assert_eq!(t.run(&rw10(0x2e, 0x02, 40, 2), &d2).await.status, 0);
        assert_eq!(t.run(&rw16(0x8e, 0x10, 42, 2), &d2).await.status, 0);
        assert_eq!(t.run(&rw12(0xae, 0x00, 44, 2), &d2).await.status, 0);
        assert_eq!(t.run(&rw10(0x28, 0, 40, 2), &[]).await.data, d2);
        assert_eq!(t.run(&rw10(0x28, 0, 44, 2), &[]).await.data, d2);
        assert!(t.store.fua_writes() >= fua_before + 3);
        // Beyond the end.
        assert_eq!(t.check(&rw10(0x2e, 0, 255, 2)).await.code(), 0x2100);
        assert_eq!(t.check(&rw10(0x2f, 0, 256, 1)).await.code(), 0x2100);
    }

    #[tokio::test]
    async fn prefetch_and_sync() {
        let t = Fixture::new(256, 512);
        t.clear_ua().await;
        for c in [
            rw10(0x34, 0x02, 0, 1),
            rw10(0x34, 0, 255, 1),
            rw10(0x34, 0, 0, 0),
            rw16(0x90, 0x02, 250, 6),
        ] {
            let r = t.run(&c, &[]).await;
            assert_eq!(r.status, 0, "PRE-FETCH returns GOOD");
        }
        assert_eq!(t.check(&rw10(0x34, 0, 255, 2)).await.code(), 0x2100);
        assert_eq!(t.check(&rw16(0x90, 0, 256, 0)).await.code(), 0x2100);
        let flushes = t.store.flushes();
        assert_eq!(t.run(&rw10(0x35, 0x02, 0, 0), &[]).await.status, 0);
        assert_eq!(t.run(&rw16(0x91, 0, 10, 10), &[]).await.status, 0);
        assert_eq!(t.store.flushes(), flushes + 2);
        assert_eq!(t.check(&rw16(0x91, 0, 250, 10)).await.code(), 0x2100);
    }

    #[tokio::test]
    async fn io_errors_map_to_medium_errors() {
        let t = Fixture::new(64, 512);
        t.clear_ua().await;
        t.store.fail_io(true);
        let s = t.check(&rw10(0x28, 0, 0, 1)).await;
        assert_eq!((s.key, s.code()), (3, 0x1100));
        let s = t.check_with(&rw10(0x2a, 0, 0, 1), &[0u8; 512]).await;
        assert_eq!((s.key, s.code()), (3, 0x0c00));
    }

    #[tokio::test]
    async fn read_only_mapping_refuses_writes() {
        let t = Fixture::read_only(64, 512);
        t.clear_ua().await;
        let s = t.check_with(&rw10(0x2a, 0, 0, 1), &[0u8; 512]).await;
        assert_eq!((s.key, s.code()), (7, 0x2700));
        let s = t.check_with(&rw16(0x8e, 0, 0, 1), &[0u8; 512]).await;
        assert_eq!((s.key, s.code()), (7, 0x2700));
        assert_eq!(t.run(&rw10(0x28, 0, 0, 1), &[]).await.status, 0);
    }
}
