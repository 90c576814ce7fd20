//! An RBD image as a backstore: SCSI's operations mapped onto RBD's own
//! (reads and writes asynchronous, WRITE SAME, zeroing, discard and
//! COMPARE AND WRITE done in the cluster).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rtgt_backstore::aio::{AsyncIo, Completion};
use rtgt_backstore::{
    check_block_size, check_range, Allocation, Backstore, BackstoreError, CapacityListener, IoBuf,
    Result,
};

use crate::librbd::Image;
use crate::RbdOptions;

/// librbd's default `rbd_discard_granularity_bytes`: it deallocates
/// aligned runs of this size and skips anything smaller.
const DISCARD_GRANULE: u32 = 64 << 10;

/// The largest range zeroed or discarded in one librbd call.
const CHUNK: u64 = 1 << 30;

/// A backstore on an RBD image.
pub struct Rbd {
    opts: RbdOptions,
    /// Shared with the update watch's thread (weakly).
    image: Arc<Image>,
    capacity: Arc<AtomicU64>,
}

impl std::fmt::Debug for Rbd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbd")
            .field("image", &self.opts.spec())
            .finish()
    }
}

fn opening(opts: &RbdOptions, e: io::Error) -> BackstoreError {
    BackstoreError::Io(io::Error::new(
        e.kind(),
        format!(
            "rbd image {} (ceph_conf {}): {e}",
            opts.spec(),
            opts.ceph_conf.display()
        ),
    ))
}

impl Rbd {
    /// Connect to the cluster and open the image.
    pub fn open(opts: RbdOptions) -> Result<Rbd> {
        check_block_size(opts.block_size)?;
        let image = Image::open(&opts.target()).map_err(|e| opening(&opts, e))?;
        let capacity = whole_blocks(
            image.size().map_err(|e| opening(&opts, e))?,
            opts.block_size,
        );
        if capacity == 0 {
            return Err(opening(
                &opts,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the image is smaller than one block",
                ),
            ));
        }
        tracing::info!(image = %opts.spec(), capacity, librbd = %crate::librbd::version(), "rbd image open");
        Ok(Rbd {
            opts,
            image: Arc::new(image),
            capacity: Arc::new(AtomicU64::new(capacity)),
        })
    }

    /// Read the image's size from the cluster again (it may have been
    /// resized elsewhere); whether the capacity changed.
    pub fn refresh_size(&self) -> Result<bool> {
        Ok(refresh(&self.image, &self.capacity, self.opts.block_size)?)
    }

    fn range(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity())
    }
}

/// `size` in whole blocks, in bytes.
fn whole_blocks(size: u64, block: u32) -> u64 {
    size - size % u64::from(block)
}

/// Take the image's size from the cluster into `capacity`; whether it
/// changed.
fn refresh(image: &Image, capacity: &AtomicU64, block: u32) -> io::Result<bool> {
    let cap = whole_blocks(image.size()?, block);
    Ok(capacity.swap(cap, Ordering::Relaxed) != cap)
}

impl Backstore for Rbd {
    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    fn grow(&self, new_capacity: u64) -> Result<()> {
        let cur = self.capacity();
        if new_capacity < cur || !new_capacity.is_multiple_of(u64::from(self.opts.block_size)) {
            return Err(BackstoreError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot resize {} from {cur} to {new_capacity} bytes: a LU only grows, by whole blocks", self.opts.spec()),
            )));
        }
        if new_capacity > cur {
            self.image.resize(new_capacity)?;
        }
        self.capacity.store(new_capacity, Ordering::Relaxed);
        Ok(())
    }

    fn block_size(&self) -> u32 {
        self.opts.block_size
    }

    fn may_block(&self) -> bool {
        true
    }

    fn watch_capacity(&self, changed: CapacityListener) {
        let image = Arc::downgrade(&self.image);
        let capacity = self.capacity.clone();
        let block = self.opts.block_size;
        let changed = Arc::new(changed);
        let spec = self.opts.spec();
        // librbd calls back on its own thread, where it must not be called
        // again: a short thread of its own reads the new size.
        let res = self.image.watch(Box::new(move || {
            let (image, capacity, changed) = (image.clone(), capacity.clone(), changed.clone());
            let _ = std::thread::Builder::new()
                .name("rbd watch".into())
                .spawn(move || {
                    let Some(image) = image.upgrade() else { return };
                    match refresh(&image, &capacity, block) {
                        Ok(true) => {
                            tracing::info!(
                                capacity = capacity.load(Ordering::Relaxed),
                                "rbd image resized"
                            );
                            changed();
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!("rbd image: cannot read its size after an update: {e}")
                        }
                    }
                });
        }));
        if let Err(e) = res {
            tracing::warn!(image = %spec, "rbd: cannot watch the image for resizes (a resize elsewhere goes unnoticed): {e}");
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.range(offset, buf.len() as u64)?;
        Ok(self.image.read(offset, buf)?)
    }

    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()> {
        self.range(offset, buf.len() as u64)?;
        Ok(self.image.write(offset, buf, fua)?)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.image.flush()?)
    }

    fn async_io(&self) -> Option<&dyn AsyncIo> {
        Some(self)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.range(offset, len)?;
        // librbd skips discards of less than its granularity (and the
        // unaligned edges of larger ones) without zeroing them: those
        // parts are zeroed here, so a discarded range always reads zeroes.
        let g = u64::from(DISCARD_GRANULE);
        let end = offset + len;
        let (a, b) = (offset.next_multiple_of(g), end - end % g);
        if a >= b {
            return self.write_zeroes(offset, len);
        }
        self.write_zeroes(offset, a - offset)?;
        let mut at = a;
        while at < b {
            let n = (b - at).min(CHUNK);
            self.image.discard(at, n)?;
            at += n;
        }
        self.write_zeroes(b, end - b)
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn discard_granularity(&self) -> u32 {
        DISCARD_GRANULE
    }

    fn discard_zeroes(&self) -> bool {
        // librbd zeroes what it cannot deallocate (partial objects), and a
        // deallocated object reads as zeroes.
        true
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.image.write_zeroes(offset + done, n as usize)?;
            done += n;
        }
        Ok(())
    }

    fn native_ops(&self) -> bool {
        true
    }

    fn write_same(&self, offset: u64, len: u64, pattern: &[u8]) -> Option<Result<()>> {
        if pattern.is_empty() || !len.is_multiple_of(pattern.len() as u64) {
            return None;
        }
        if let Err(e) = self.range(offset, len) {
            return Some(Err(e));
        }
        let chunk = CHUNK - CHUNK % pattern.len() as u64;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk);
            if let Err(e) = self.image.write_same(offset + done, n as usize, pattern) {
                return Some(Err(e.into()));
            }
            done += n;
        }
        Some(Ok(()))
    }

    fn compare_and_write(
        &self,
        offset: u64,
        cmp: &[u8],
        data: &[u8],
    ) -> Option<Result<Option<u64>>> {
        if let Err(e) = self.range(offset, cmp.len() as u64) {
            return Some(Err(e));
        }
        match self.image.compare_and_write(offset, cmp, data) {
            // librbd does it within one object only; across objects the
            // core's own (gateway-local) way is the fallback.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            r => Some(r.map_err(BackstoreError::from)),
        }
    }

    fn reports_allocation(&self) -> bool {
        true
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        self.range(offset, len)?;
        Ok(first_run(offset, len, &self.image.extents(offset, len)?))
    }
}

/// The state of the byte at `offset` and how many bytes from it share it,
/// given the extents librbd reported (offset, length, holds data) in
/// order; what no extent covers is a hole.
fn first_run(offset: u64, len: u64, extents: &[(u64, u64, bool)]) -> (Allocation, u64) {
    let end = offset + len;
    let state = |data: bool| {
        if data {
            Allocation::Mapped
        } else {
            Allocation::Deallocated
        }
    };
    let mut run: Option<(Allocation, u64)> = None;
    let mut at = offset;
    let mut segments = Vec::new();
    for &(o, l, data) in extents {
        let (o, e) = (o.max(at), o.saturating_add(l).min(end));
        if e <= o {
            continue;
        }
        if o > at {
            segments.push((Allocation::Deallocated, o - at));
        }
        segments.push((state(data), e - o));
        at = e;
    }
    if at < end {
        segments.push((Allocation::Deallocated, end - at));
    }
    for (s, n) in segments {
        match &mut run {
            None => run = Some((s, n)),
            Some((r, total)) if *r == s => *total += n,
            Some(_) => break,
        }
    }
    run.unwrap_or((Allocation::Deallocated, len))
}

impl AsyncIo for Rbd {
    fn read(&self, offset: u64, buf: IoBuf, done: Completion) {
        if let Err(e) = self.range(offset, buf.len() as u64) {
            return done(Err(io::Error::other(e)), buf);
        }
        self.image.aio_read(offset, buf, done)
    }

    fn write(&self, offset: u64, buf: IoBuf, fua: bool, done: Completion) {
        if let Err(e) = self.range(offset, buf.len() as u64) {
            return done(Err(io::Error::other(e)), buf);
        }
        self.image.aio_write(offset, buf, fua, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Allocation::{Deallocated as D, Mapped as M};

    #[test]
    fn the_first_run_of_a_range_follows_the_extents() {
        // No extents: one hole.
        assert_eq!(first_run(0, 100, &[]), (D, 100));
        // Data from the start, then a hole.
        assert_eq!(first_run(0, 100, &[(0, 40, true)]), (M, 40));
        // A hole first.
        assert_eq!(first_run(0, 100, &[(30, 10, true)]), (D, 30));
        // Adjacent data extents merge; a zero extent ends the run.
        assert_eq!(
            first_run(0, 100, &[(0, 10, true), (10, 10, true), (20, 5, false)]),
            (M, 20)
        );
        // A zero extent and a hole after it are one deallocated run.
        assert_eq!(
            first_run(0, 100, &[(0, 10, false), (50, 10, true)]),
            (D, 50)
        );
        // Extents reaching outside the range are clipped to it.
        assert_eq!(first_run(20, 30, &[(0, 100, true)]), (M, 30));
        assert_eq!(
            first_run(20, 30, &[(0, 25, true), (25, 100, true)]),
            (M, 30)
        );
    }
}
