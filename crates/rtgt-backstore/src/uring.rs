//! Positioned reads and writes through io_uring, completion-driven.
//!
//! Without it, every READ or WRITE on a file or block device that could
//! block went to a blocking worker thread and back: two thread hand-offs
//! per command, and a pool of threads whose stacks count against resident
//! memory. Here the runtime thread itself submits the I/O to a ring of its
//! own and goes on; the kernel posts the completion, a per-thread reaper
//! task wakes the command. O_DIRECT I/O on a block device completes
//! without any thread of ours waiting on it.
//!
//! The buffer is an [`IoBuf`] the operation owns until the kernel is done
//! with it. A command that is aborted drops its future, but the operation
//! stays in the ring's table with its buffer and whatever else the caller
//! asked to keep alive (the backstore, the LU fence guard that makes task
//! management wait for the write) until its completion arrives, so the
//! kernel never writes into freed memory and a TMF never returns while an
//! aborted write can still land.
//!
//! Where io_uring is missing or forbidden (old kernels, seccomp in some
//! containers) or the ring is full, the calls hand the buffer back and the
//! caller uses the blocking path.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, types, IoUring};
use tokio::io::unix::AsyncFd;

use crate::IoBuf;

/// Submission queue entries per ring (the completion queue is twice that).
const ENTRIES: u32 = 256;
/// Operations a ring carries at once; beyond, callers use the blocking path
/// rather than overflow the completion queue.
const MAX_IN_FLIGHT: usize = 2 * ENTRIES as usize;

/// A file or block device io_uring can do a backstore's I/O on.
#[derive(Debug, Clone, Copy)]
pub struct UringFile {
    pub fd: RawFd,
    /// What O_DIRECT requires buffer address, offset and length to be
    /// multiples of (1: nothing).
    pub align: usize,
}

/// What an operation keeps alive until the kernel has finished it.
pub type KeepAlive = Box<dyn Any + Send>;

/// The result of a whole transfer, with the buffer back.
pub type Done = (io::Result<()>, IoBuf);

/// Read `buf.len()` bytes at `offset`. `Err(buf)`: not submitted (no ring
/// here, ring full, or the buffer not aligned as the file needs); use the
/// blocking path.
pub async fn read(
    file: UringFile,
    offset: u64,
    buf: IoBuf,
    keep: KeepAlive,
) -> Result<Done, IoBuf> {
    transfer(file, offset, buf, keep, Dir::Read).await
}

/// Write all of `buf` at `offset`, as [`read`]. Durability is the
/// descriptor's: a backstore hands out its O_DSYNC one for FUA writes.
pub async fn write(
    file: UringFile,
    offset: u64,
    buf: IoBuf,
    keep: KeepAlive,
) -> Result<Done, IoBuf> {
    transfer(file, offset, buf, keep, Dir::Write).await
}

#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

async fn transfer(
    file: UringFile,
    offset: u64,
    buf: IoBuf,
    keep: KeepAlive,
    dir: Dir,
) -> Result<Done, IoBuf> {
    let a = file.align.max(1);
    if !buf.is_aligned_to(a) || !(offset as usize).is_multiple_of(a) || !buf.len().is_multiple_of(a)
    {
        return Err(buf);
    }
    let Some(ring) = Ring::here() else {
        return Err(buf);
    };
    let total = buf.len();
    let mut done = 0usize;
    let mut buf = buf;
    // The keep-alive rides with the first operation and moves along with
    // the buffer on the (rare) continuation of a short transfer.
    let mut keep = Some(keep);
    loop {
        // A full ring makes the command wait for a completion, like a full
        // device queue: falling back to blocking threads there would start
        // a thread per waiting command.
        let op = loop {
            let space = ring.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match ring.submit(file.fd, offset + done as u64, buf, done, keep.take(), dir) {
                Ok(op) => break op,
                Err((b, k)) => {
                    buf = b;
                    keep = k;
                    space.await;
                }
            }
        };
        let (res, b, k) = op.await;
        buf = b;
        keep = k;
        match res {
            Ok(0) if total > done => {
                let err = match dir {
                    Dir::Read => io::ErrorKind::UnexpectedEof,
                    Dir::Write => io::ErrorKind::WriteZero,
                };
                return Ok((Err(err.into()), buf));
            }
            Ok(n) => {
                done += n;
                if done >= total {
                    return Ok((Ok(()), buf));
                }
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Ok((Err(e), buf)),
        }
    }
}

/// Take the completions this thread's ring has, if it has one: lets a
/// thread that is busy polling see them without the eventfd round trip
/// through the reactor.
pub fn reap_here() {
    RING.with(|c| {
        if let Some(Some(ring)) = c.borrow().as_ref() {
            ring.reap_completions();
        }
    });
}

thread_local! {
    /// This thread's ring; `None` inside once creating one failed.
    static RING: RefCell<Option<Option<Arc<Ring>>>> = const { RefCell::new(None) };
}

/// One thread's ring and its table of operations in flight.
struct Ring {
    state: Mutex<State>,
    /// Signalled by the kernel for every completion.
    eventfd: OwnedFd,
    /// Whether a reaper task is alive on a runtime (a runtime that shuts
    /// down drops it; the next use on this thread starts another).
    reaper: AtomicBool,
    /// Woken when operations complete, for submitters that found the ring
    /// full.
    space: tokio::sync::Notify,
}

struct State {
    ring: IoUring,
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    in_flight: usize,
}

struct Op {
    buf: Option<IoBuf>,
    keep: Option<KeepAlive>,
    result: Option<i32>,
    waker: Option<Waker>,
    /// Its future was dropped: free it when it completes.
    abandoned: bool,
}

impl Ring {
    /// This thread's ring, with a reaper running on the current runtime;
    /// `None` where io_uring cannot be had or there is no runtime.
    fn here() -> Option<Arc<Ring>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let ring = RING.with(|cell| {
            let mut cell = cell.borrow_mut();
            cell.get_or_insert_with(|| match Ring::new() {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::info!("io_uring not available here ({e}); using blocking threads");
                    None
                }
            })
            .clone()
        })?;
        if !ring.reaper.swap(true, Ordering::AcqRel) {
            let fd = match ring.eventfd.try_clone() {
                Ok(fd) => fd,
                Err(_) => {
                    ring.reaper.store(false, Ordering::Release);
                    return None;
                }
            };
            handle.spawn(reap(ring.clone(), fd));
        }
        Some(ring)
    }

    fn new() -> io::Result<Ring> {
        let ring = IoUring::new(ENTRIES)?;
        // SAFETY: eventfd takes integer flags only; a non-negative result is
        // a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Ring {
            state: Mutex::new(State {
                ring,
                ops: Vec::new(),
                free: Vec::new(),
                in_flight: 0,
            }),
            eventfd,
            reaper: AtomicBool::new(false),
            space: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[allow(clippy::type_complexity)]
    fn submit(
        self: &Arc<Self>,
        fd: RawFd,
        offset: u64,
        mut buf: IoBuf,
        start: usize,
        keep: Option<KeepAlive>,
        dir: Dir,
    ) -> Result<OpFuture, (IoBuf, Option<KeepAlive>)> {
        let mut st = self.lock();
        if st.in_flight >= MAX_IN_FLIGHT {
            return Err((buf, keep));
        }
        let len = (buf.len() - start).min(u32::MAX as usize & !4095) as u32;
        let id = match st.free.pop() {
            Some(id) => id,
            None => {
                st.ops.push(None);
                st.ops.len() - 1
            }
        };
        // The pointer stays valid: the buffer's heap memory does not move
        // when the IoBuf value moves into the table below, and the table
        // keeps it until the completion arrives.
        let ptr = buf[start..].as_mut_ptr();
        let entry = match dir {
            Dir::Read => opcode::Read::new(types::Fd(fd), ptr, len)
                .offset(offset)
                .build(),
            Dir::Write => opcode::Write::new(types::Fd(fd), ptr, len)
                .offset(offset)
                .build(),
        }
        .user_data(id as u64);
        st.ops[id] = Some(Op {
            buf: Some(buf),
            keep,
            result: None,
            waker: None,
            abandoned: false,
        });
        // SAFETY: the entry points at memory owned by `ops[id]` until its
        // completion is reaped (the Op is only freed then, or, if the
        // future is dropped first, by the reaper on completion), and `fd`
        // is kept open by the caller's keep-alive (the backstore).
        let pushed = unsafe { st.ring.submission().push(&entry).is_ok() };
        if !pushed {
            let op = st.ops[id].take().expect("just stored");
            st.free.push(id);
            return Err((op.buf.expect("just stored"), op.keep));
        }
        if let Err(e) = st.ring.submit() {
            // Nothing was consumed (e.g. EBUSY); the entry stays queued and
            // goes in with the next submit, or at the reaper's.
            tracing::debug!("io_uring submit: {e}");
        }
        st.in_flight += 1;
        Ok(OpFuture {
            ring: self.clone(),
            id,
            finished: false,
        })
    }

    /// Take the completions the kernel has posted.
    fn reap_completions(&self) {
        if self.reap_locked() {
            self.space.notify_waiters();
        }
    }

    /// [`Ring::reap_completions`] without the wake-ups; true if any
    /// operation completed.
    fn reap_locked(&self) -> bool {
        let mut st = self.lock();
        let State {
            ring,
            ops,
            free,
            in_flight,
        } = &mut *st;
        // Entries a failed submit left queued.
        if !ring.submission().is_empty() {
            let _ = ring.submit();
        }
        let mut any = false;
        for c in ring.completion() {
            let id = c.user_data() as usize;
            let Some(slot) = ops.get_mut(id) else {
                continue;
            };
            let Some(op) = slot.as_mut() else {
                continue;
            };
            any = true;
            *in_flight -= 1;
            if op.abandoned {
                *slot = None;
                free.push(id);
            } else {
                op.result = Some(c.result());
                if let Some(w) = op.waker.take() {
                    w.wake();
                }
            }
        }
        any
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel may still be writing into buffers in the table: wait
        // for every operation before the table (and they) are freed.
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        while st.in_flight > 0 {
            if st.ring.submit_and_wait(1).is_err() {
                break;
            }
            let n = st.ring.completion().count();
            st.in_flight = st.in_flight.saturating_sub(n);
        }
    }
}

/// Reaps completions whenever the eventfd says there are some.
async fn reap(ring: Arc<Ring>, eventfd: OwnedFd) {
    struct Alive(Arc<Ring>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.reaper.store(false, Ordering::Release);
        }
    }
    let alive = Alive(ring);
    // SAFETY: `OwnedFd` is an open descriptor that stays open, and the same
    // one, until the AsyncFd that owns it is dropped.
    let registered =
        unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) };
    let Ok(afd) = registered else {
        return;
    };
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into the local array from our own
        // non-blocking eventfd.
        let _ = unsafe { libc::read(afd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        guard.clear_ready();
        alive.0.reap_completions();
    }
}

/// One submitted operation.
struct OpFuture {
    ring: Arc<Ring>,
    id: usize,
    finished: bool,
}

impl Future for OpFuture {
    type Output = (io::Result<usize>, IoBuf, Option<KeepAlive>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ring = self.ring.clone();
        let take = |st: &mut State, id: usize| {
            let op = st.ops[id].take().expect("op in flight");
            st.free.push(id);
            op
        };
        {
            let mut st = ring.lock();
            let ready = st.ops[self.id].as_ref().is_some_and(|o| o.result.is_some());
            if !ready {
                drop(st);
                // A fast completion may be posted already.
                ring.reap_completions();
                st = ring.lock();
            }
            let op = st.ops[self.id].as_mut().expect("op in flight");
            if op.result.is_none() {
                op.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let op = take(&mut st, self.id);
            drop(st);
            self.finished = true;
            let res = op.result.unwrap_or(-libc::EIO);
            let res = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            Poll::Ready((res, op.buf.expect("buffer in op"), op.keep))
        }
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut st = self.ring.lock();
        let Some(op) = st.ops[self.id].as_mut() else {
            return;
        };
        if op.result.is_some() {
            // Completed but never collected.
            st.ops[self.id] = None;
            st.free.push(self.id);
        } else {
            op.abandoned = true;
            op.waker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, std::fs::File) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().write_all_at(data, 0).unwrap();
        let h = f.reopen().unwrap();
        (f, h)
    }

    /// Whether io_uring works here. Where it does not (an old kernel,
    /// seccomp), these tests fail unless RTGT_SKIP_IO_URING_TESTS=1 says
    /// that is known; then they are skipped, loudly.
    fn available() -> bool {
        match IoUring::new(4) {
            Ok(_) => true,
            Err(e) if std::env::var_os("RTGT_SKIP_IO_URING_TESTS").is_some() => {
                eprintln!("SKIPPED (RTGT_SKIP_IO_URING_TESTS): io_uring not available: {e}");
                false
            }
            Err(e) => panic!(
                "io_uring not available here ({e}); set RTGT_SKIP_IO_URING_TESTS=1 to skip these tests"
            ),
        }
    }

    #[tokio::test]
    async fn reads_and_writes_a_file() {
        if !available() {
            return;
        }
        let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
        let (_t, f) = file_with(&data);
        let file = UringFile {
            fd: f.as_raw_fd(),
            align: 1,
        };
        let (res, buf) = read(file, 4096, IoBuf::with_len(8192), Box::new(()))
            .await
            .expect("submitted");
        res.unwrap();
        assert_eq!(&buf[..], &data[4096..4096 + 8192]);

        let (res, _) = write(file, 100, IoBuf::copy_from(&[0xee; 1000]), Box::new(()))
            .await
            .expect("submitted");
        res.unwrap();
        let mut back = [0u8; 1000];
        f.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(back, [0xee; 1000]);
    }

    #[tokio::test]
    async fn a_read_past_the_end_fails_and_unaligned_buffers_are_refused() {
        if !available() {
            return;
        }
        let (_t, f) = file_with(&[1u8; 4096]);
        let file = UringFile {
            fd: f.as_raw_fd(),
            align: 1,
        };
        let (res, _) = read(file, 2048, IoBuf::with_len(4096), Box::new(()))
            .await
            .expect("submitted");
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let direct = UringFile {
            fd: f.as_raw_fd(),
            align: 512,
        };
        assert!(read(direct, 100, IoBuf::with_len(512), Box::new(()))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_dropped_operation_keeps_its_buffer_and_keep_alive_until_done() {
        if !available() {
            return;
        }
        let (_t, f) = file_with(&[3u8; 1 << 20]);
        let file = UringFile {
            fd: f.as_raw_fd(),
            align: 1,
        };
        let alive = Arc::new(());
        let keep: KeepAlive = Box::new(alive.clone());
        let fut = read(file, 0, IoBuf::with_len(1 << 20), keep);
        // Poll once so it is submitted, then drop it.
        let mut fut = Box::pin(fut);
        let _ = futures_poll_once(fut.as_mut()).await;
        drop(fut);
        // The reaper frees it on completion.
        for _ in 0..200 {
            if Arc::strong_count(&alive) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "keep-alive released after completion"
        );
    }

    async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await
    }

    #[test]
    fn many_in_flight_from_many_tasks() {
        if !available() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let data: Vec<u8> = (0..(4 << 20) as u32).map(|i| (i / 4096) as u8).collect();
        let (_t, f) = file_with(&data);
        let fd = f.as_raw_fd();
        rt.block_on(async move {
            let tasks: Vec<_> = (0..(MAX_IN_FLIGHT + 100))
                .map(|i| {
                    tokio::spawn(async move {
                        let block = (i % 1024) as u64;
                        let file = UringFile { fd, align: 1 };
                        match read(file, block * 4096, IoBuf::with_len(4096), Box::new(())).await {
                            Ok((res, buf)) => {
                                res.unwrap();
                                assert!(buf.iter().all(|&b| b == block as u8));
                                true
                            }
                            Err(_) => false,
                        }
                    })
                })
                .collect();
            let mut submitted = 0;
            for t in tasks {
                submitted += t.await.unwrap() as usize;
            }
            assert_eq!(
                submitted,
                MAX_IN_FLIGHT + 100,
                "a full ring waits, never refuses"
            );
        });
        // A new runtime on the same thread gets a new reaper.
        let rt2 = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt2.block_on(async move {
            let file = UringFile { fd, align: 1 };
            let (res, _) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read(file, 0, IoBuf::with_len(4096), Box::new(())),
            )
            .await
            .expect("completes on a second runtime")
            .expect("submitted");
            res.unwrap();
        });
    }
}
