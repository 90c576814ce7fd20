//! Media whose reads and writes complete by callback, on threads of their
//! own (librbd's asynchronous API): the core submits and awaits the
//! completion on the runtime that runs the command, so a slow cluster holds
//! no thread per I/O.

use std::any::Any;
use std::io;

use crate::IoBuf;

/// Called once, from whatever thread the medium completes on, with the
/// outcome and the buffer back.
pub type Completion = Box<dyn FnOnce(io::Result<()>, IoBuf) + Send>;

/// What an operation keeps alive until it has completed (the LU's write
/// fence, the backstore itself).
pub type KeepAlive = Box<dyn Any + Send>;

/// Reads and writes submitted without blocking.
///
/// An implementation owns `buf` until it calls `done`: the medium may
/// write into it (read) or read from it (write) until then, so it must
/// keep the buffer (not a pointer to it) with the operation, and call
/// `done` exactly once, also when submission fails.
pub trait AsyncIo: Send + Sync {
    /// Fill all of `buf` from `offset`.
    fn read(&self, offset: u64, buf: IoBuf, done: Completion);
    /// Write all of `buf` at `offset`; with `fua`, durable on completion.
    fn write(&self, offset: u64, buf: IoBuf, fua: bool, done: Completion);
}

/// Read through `io`, awaiting its completion here.
pub async fn read(
    io: &dyn AsyncIo,
    offset: u64,
    buf: IoBuf,
    keep: KeepAlive,
) -> (io::Result<()>, IoBuf) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    io.read(
        offset,
        buf,
        Box::new(move |res, buf| {
            drop(keep);
            let _ = tx.send((res, buf));
        }),
    );
    finish(rx).await
}

/// Write through `io`, awaiting its completion here.
pub async fn write(
    io: &dyn AsyncIo,
    offset: u64,
    buf: IoBuf,
    fua: bool,
    keep: KeepAlive,
) -> (io::Result<()>, IoBuf) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    io.write(
        offset,
        buf,
        fua,
        Box::new(move |res, buf| {
            drop(keep);
            let _ = tx.send((res, buf));
        }),
    );
    finish(rx).await
}

async fn finish(
    rx: tokio::sync::oneshot::Receiver<(io::Result<()>, IoBuf)>,
) -> (io::Result<()>, IoBuf) {
    match rx.await {
        Ok(done) => done,
        // The medium dropped the completion without calling it: a broken
        // implementation, reported as a failed I/O rather than a hang.
        Err(_) => (
            Err(io::Error::other(
                "the medium dropped an I/O without completing it",
            )),
            IoBuf::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A medium that completes on a thread of its own, as librbd does.
    struct Threaded(Mutex<Vec<u8>>);

    impl AsyncIo for Threaded {
        fn read(&self, offset: u64, mut buf: IoBuf, done: Completion) {
            let data = self.0.lock().unwrap().clone();
            std::thread::spawn(move || {
                let o = offset as usize;
                match data.get(o..o + buf.len()) {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        done(Ok(()), buf)
                    }
                    None => done(Err(io::Error::from_raw_os_error(libc::EINVAL)), buf),
                }
            });
        }
        fn write(&self, offset: u64, buf: IoBuf, _fua: bool, done: Completion) {
            let o = offset as usize;
            self.0.lock().unwrap()[o..o + buf.len()].copy_from_slice(&buf);
            std::thread::spawn(move || done(Ok(()), buf));
        }
    }

    /// Drops the completion: the caller must not hang.
    struct Forgets;

    impl AsyncIo for Forgets {
        fn read(&self, _: u64, _: IoBuf, _: Completion) {}
        fn write(&self, _: u64, _: IoBuf, _: bool, _: Completion) {}
    }

    #[tokio::test]
    async fn completions_from_another_thread_reach_the_awaiting_task() {
        let m = Threaded(Mutex::new(vec![0u8; 8192]));
        let (res, _) = write(&m, 4096, IoBuf::copy_from(&[7u8; 512]), false, Box::new(())).await;
        res.unwrap();
        let (res, buf) = read(&m, 4096, IoBuf::with_len(512), Box::new(())).await;
        res.unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        let (res, _) = read(&m, 8000, IoBuf::with_len(512), Box::new(())).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    #[tokio::test]
    async fn a_completion_dropped_unanswered_is_an_error_not_a_hang() {
        let (res, _) = read(&Forgets, 0, IoBuf::with_len(512), Box::new(())).await;
        assert!(res.is_err());
    }

    /// Holds the completion until the test completes it.
    #[derive(Default)]
    struct Held(Mutex<Option<(Completion, IoBuf)>>);

    impl AsyncIo for Held {
        fn read(&self, _: u64, buf: IoBuf, done: Completion) {
            *self.0.lock().unwrap() = Some((done, buf));
        }
        fn write(&self, _: u64, buf: IoBuf, _: bool, done: Completion) {
            *self.0.lock().unwrap() = Some((done, buf));
        }
    }

    #[tokio::test]
    async fn what_the_operation_keeps_lives_until_it_completes() {
        let kept = std::sync::Arc::new(());
        let m = std::sync::Arc::new(Held::default());
        let (m2, k2) = (m.clone(), kept.clone());
        let op =
            tokio::spawn(async move { read(&*m2, 0, IoBuf::with_len(512), Box::new(k2)).await });
        while m.0.lock().unwrap().is_none() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            std::sync::Arc::strong_count(&kept),
            2,
            "released before completion"
        );
        let (done, buf) = m.0.lock().unwrap().take().unwrap();
        done(Ok(()), buf);
        op.await.unwrap().0.unwrap();
        assert_eq!(
            std::sync::Arc::strong_count(&kept),
            1,
            "kept after completion"
        );
    }
}
