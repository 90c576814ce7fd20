//! Sparse RAM disk.
//!
//! The disk is cut into fixed-size chunks, each behind its own lock and
//! allocated on first write: a large disk costs memory only for what was
//! written, and threads working on different chunks never meet on a lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::{check_block_size, check_range, Allocation, Backstore, Result};

/// Smallest chunk (64 KiB): one 4 KiB write to an empty disk costs little
/// memory, and a chunk still holds many blocks so the slot table stays small.
const MIN_CHUNK_SHIFT: u32 = 16;
/// At most 2^20 slots (~24 MiB of table); bigger disks get bigger chunks.
const MAX_SLOTS_SHIFT: u32 = 20;

/// A chunk's memory, `None` until first written (reads as zeroes).
type Slot = RwLock<Option<Box<[u8]>>>;

/// A sparse, thread-safe RAM disk.
pub struct RamDisk {
    capacity: u64,
    block_size: u32,
    chunk_shift: u32,
    slots: Box<[Slot]>,
    allocated: AtomicU64,
}

/// The part of an I/O that falls in one chunk.
struct Piece {
    slot: usize,
    /// Offset inside the chunk.
    at: usize,
    len: usize,
    /// Offset from the start of the I/O (inside the caller's buffer).
    pos: usize,
}

impl RamDisk {
    /// A RAM disk of `capacity` bytes (rounded down to whole blocks).
    ///
    /// # Panics
    /// If `block_size` is not 512 or 4096; see [`RamDisk::try_new`].
    pub fn new(capacity: u64, block_size: u32) -> RamDisk {
        match Self::try_new(capacity, block_size) {
            Ok(disk) => disk,
            Err(e) => panic!("RamDisk::new: {e}"),
        }
    }

    /// Like [`RamDisk::new`], but an invalid block size is an error.
    pub fn try_new(capacity: u64, block_size: u32) -> Result<RamDisk> {
        check_block_size(block_size)?;
        let capacity = capacity - capacity % u64::from(block_size);
        // ceil(log2(capacity)), so that capacity fits in 2^MAX_SLOTS_SHIFT chunks.
        let bits = u64::BITS - capacity.saturating_sub(1).leading_zeros();
        let chunk_shift = bits.saturating_sub(MAX_SLOTS_SHIFT).max(MIN_CHUNK_SHIFT);
        let nslots = capacity.div_ceil(1 << chunk_shift) as usize;
        Ok(RamDisk {
            capacity,
            block_size,
            chunk_shift,
            slots: (0..nslots).map(|_| RwLock::new(None)).collect(),
            allocated: AtomicU64::new(0),
        })
    }

    /// Bytes of memory currently holding data.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Length of chunk `slot`; only the last one may be short.
    fn chunk_len(&self, slot: usize) -> usize {
        let start = (slot as u64) << self.chunk_shift;
        (self.capacity - start).min(1 << self.chunk_shift) as usize
    }

    /// Split `offset..offset+len` (already range-checked) at chunk borders.
    fn pieces(&self, offset: u64, len: u64) -> impl Iterator<Item = Piece> {
        let shift = self.chunk_shift;
        let mask = (1u64 << shift) - 1;
        let end = offset + len;
        let mut cur = offset;
        std::iter::from_fn(move || {
            if cur >= end {
                return None;
            }
            let stop = (cur | mask).saturating_add(1).min(end);
            let piece = Piece {
                slot: (cur >> shift) as usize,
                at: (cur & mask) as usize,
                len: (stop - cur) as usize,
                pos: (cur - offset) as usize,
            };
            cur = stop;
            Some(piece)
        })
    }

    fn new_chunk(&self, slot: usize) -> Box<[u8]> {
        let len = self.chunk_len(slot);
        self.allocated.fetch_add(len as u64, Ordering::Relaxed);
        vec![0u8; len].into_boxed_slice()
    }
}

/// Whether `buf` is all zeroes; OR-folds 64-byte runs so it vectorises yet
/// stops early on data.
fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

// A panic while holding a chunk lock cannot leave bytes in an invalid state,
// so poisoning carries no information here.
macro_rules! lock {
    ($slot:expr, read) => {
        $slot.read().unwrap_or_else(PoisonError::into_inner)
    };
    ($slot:expr, write) => {
        $slot.write().unwrap_or_else(PoisonError::into_inner)
    };
}

impl Backstore for RamDisk {
    fn kind(&self) -> &'static str {
        "ramdisk"
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn may_block(&self) -> bool {
        false
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        for p in self.pieces(offset, buf.len() as u64) {
            let dst = &mut buf[p.pos..p.pos + p.len];
            match &*lock!(self.slots[p.slot], read) {
                Some(chunk) => dst.copy_from_slice(&chunk[p.at..p.at + p.len]),
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8], _fua: bool) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        for p in self.pieces(offset, buf.len() as u64) {
            let src = &buf[p.pos..p.pos + p.len];
            let mut slot = lock!(self.slots[p.slot], write);
            // Zeroes into an empty chunk change nothing; skipping them keeps
            // disks that initiators "format" with zeroes sparse.
            if slot.is_none() && is_zero(src) {
                continue;
            }
            let chunk = slot.get_or_insert_with(|| self.new_chunk(p.slot));
            chunk[p.at..p.at + p.len].copy_from_slice(src);
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity)?;
        for p in self.pieces(offset, len) {
            let mut slot = lock!(self.slots[p.slot], write);
            if p.at == 0 && p.len == self.chunk_len(p.slot) {
                if slot.take().is_some() {
                    self.allocated.fetch_sub(p.len as u64, Ordering::Relaxed);
                }
            } else if let Some(chunk) = slot.as_mut() {
                chunk[p.at..p.at + p.len].fill(0);
            }
        }
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn discard_zeroes(&self) -> bool {
        true
    }

    fn discard_granularity(&self) -> u32 {
        1 << self.chunk_shift
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        // Every chunk of a RAM disk is thin: zeroes and holes read the same.
        self.discard(offset, len)
    }

    fn reports_allocation(&self) -> bool {
        true
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        check_range(offset, len, self.capacity)?;
        let state = |slot: usize| {
            if lock!(self.slots[slot], read).is_some() {
                Allocation::Mapped
            } else {
                Allocation::Deallocated
            }
        };
        let mut pieces = self.pieces(offset, len);
        let Some(first) = pieces.next() else {
            return Ok((Allocation::Mapped, 0));
        };
        let kind = state(first.slot);
        let mut run = first.len as u64;
        for p in pieces {
            if state(p.slot) != kind {
                break;
            }
            run += p.len as u64;
        }
        Ok((kind, run))
    }
}

impl fmt::Debug for RamDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamDisk")
            .field("capacity", &self.capacity)
            .field("block_size", &self.block_size)
            .field("chunk_size", &(1u64 << self.chunk_shift))
            .field("allocated", &self.allocated_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackstoreError;
    use std::sync::Arc;

    const GIB: u64 = 1 << 30;
    const CHUNK: u64 = 1 << MIN_CHUNK_SHIFT;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn geometry() {
        let d = RamDisk::new(GIB + 1000, 512);
        assert_eq!(d.capacity(), GIB + 512);
        assert_eq!(d.block_size(), 512);
        assert_eq!(d.physical_block_size(), 512);
        assert!(!d.may_block());
        assert!(!d.write_cache());
        assert_eq!(d.kind(), "ramdisk");
        assert_eq!(d.chunk_shift, MIN_CHUNK_SHIFT);
        // Huge disks get bigger chunks instead of a huge slot table.
        let big = RamDisk::new(1 << 40, 4096);
        assert_eq!(big.slots.len(), 1 << MAX_SLOTS_SHIFT);
        assert!(RamDisk::try_new(GIB, 1000).is_err());
        assert_eq!(RamDisk::new(0, 512).capacity(), 0);
    }

    #[test]
    fn unwritten_reads_zero() {
        let d = RamDisk::new(GIB, 512);
        let mut buf = vec![0xAAu8; 3 * CHUNK as usize + 17];
        d.read_at(GIB - buf.len() as u64, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn read_after_write_aligned_and_unaligned() {
        let d = RamDisk::new(16 << 20, 512);
        // Aligned, and one straddling a chunk border at odd offsets.
        for (off, len, seed) in [
            (0u64, 4096usize, 1u8),
            (CHUNK - 100, 300, 2),
            (3 * CHUNK + 7, 2 * CHUNK as usize + 5, 3),
        ] {
            let data = pattern(len, seed);
            d.write_at(off, &data, false).unwrap();
            let mut back = vec![0u8; len];
            d.read_at(off, &mut back).unwrap();
            assert_eq!(back, data, "offset {off}");
        }
        // Bytes around a write are untouched.
        let mut around = vec![0xFFu8; 10];
        d.read_at(CHUNK - 105, &mut around).unwrap();
        assert_eq!(&around[..5], &[0; 5]);
        assert_eq!(&around[5..], &pattern(300, 2)[..5]);
    }

    #[test]
    fn out_of_range() {
        let d = RamDisk::new(1 << 20, 512);
        let mut buf = [0u8; 1024];
        let err = d.read_at((1 << 20) - 512, &mut buf).unwrap_err();
        assert!(matches!(err, BackstoreError::OutOfRange { .. }));
        assert!(d.write_at(1 << 20, &buf[..1], false).is_err());
        assert!(d.write_at(u64::MAX, &buf, false).is_err());
        assert!(d.discard(0, (1 << 20) + 1).is_err());
        assert!(d.allocation(1 << 20, 1).is_err());
        // The last byte is fine.
        d.write_at((1 << 20) - 1, &[7], false).unwrap();
    }

    #[test]
    fn sparse_allocation() {
        let d = RamDisk::new(GIB, 512);
        assert_eq!(d.allocated_bytes(), 0);
        d.write_at(GIB / 2, &pattern(4096, 9), false).unwrap();
        assert!(d.allocated_bytes() > 0 && d.allocated_bytes() <= CHUNK);
        // Zeroes into empty chunks take no memory.
        d.write_at(0, &vec![0u8; 1 << 20], false).unwrap();
        assert_eq!(d.allocated_bytes(), CHUNK);
    }

    #[test]
    fn thin_capabilities() {
        let d = RamDisk::new(GIB, 512);
        assert!(d.supports_discard());
        assert!(d.discard_zeroes());
        assert_eq!(u64::from(d.discard_granularity()), CHUNK);
    }

    #[test]
    fn discard_frees_and_zeroes() {
        let d = RamDisk::new(1 << 20, 512);
        let data = pattern(4 * CHUNK as usize, 5);
        d.write_at(0, &data, false).unwrap();
        assert_eq!(d.allocated_bytes(), 4 * CHUNK);
        // Covers chunk 1 and 2 wholly, chunk 0 and 3 in part.
        d.discard(CHUNK - 512, 2 * CHUNK + 1024).unwrap();
        assert_eq!(d.allocated_bytes(), 2 * CHUNK);
        let mut back = vec![0xAAu8; data.len()];
        d.read_at(0, &mut back).unwrap();
        let (lo, hi) = ((CHUNK - 512) as usize, (3 * CHUNK + 512) as usize);
        assert_eq!(&back[..lo], &data[..lo]);
        assert!(back[lo..hi].iter().all(|&b| b == 0));
        assert_eq!(&back[hi..], &data[hi..]);
        // write_zeroes behaves the same.
        d.write_zeroes(0, 4 * CHUNK).unwrap();
        assert_eq!(d.allocated_bytes(), 0);
    }

    #[test]
    fn allocation_status() {
        let d = RamDisk::new(1 << 20, 512);
        d.write_at(2 * CHUNK, &[1u8; 512], false).unwrap();
        d.write_at(3 * CHUNK + 100, &[1u8; 512], false).unwrap();
        assert_eq!(
            d.allocation(0, 1 << 20).unwrap(),
            (Allocation::Deallocated, 2 * CHUNK)
        );
        assert_eq!(
            d.allocation(512, 1 << 19).unwrap(),
            (Allocation::Deallocated, 2 * CHUNK - 512)
        );
        assert_eq!(
            d.allocation(2 * CHUNK, 1 << 19).unwrap(),
            (Allocation::Mapped, 2 * CHUNK)
        );
        assert_eq!(
            d.allocation(2 * CHUNK, 1024).unwrap(),
            (Allocation::Mapped, 1024)
        );
        assert_eq!(
            d.allocation(4 * CHUNK, (1 << 20) - 4 * CHUNK).unwrap(),
            (Allocation::Deallocated, (1 << 20) - 4 * CHUNK)
        );
    }

    #[test]
    fn concurrent_writers() {
        let d = Arc::new(RamDisk::new(8 << 20, 512));
        const THREADS: usize = 8;
        const BLOCKS: usize = 256;
        // Thread t owns blocks t, t+8, ...: neighbours share every chunk.
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let d = Arc::clone(&d);
                std::thread::spawn(move || {
                    for i in 0..BLOCKS {
                        let block = (i * THREADS + t) as u64;
                        d.write_at(block * 4096, &pattern(4096, t as u8), false)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut back = vec![0u8; 4096];
        for block in 0..THREADS * BLOCKS {
            d.read_at(block as u64 * 4096, &mut back).unwrap();
            assert_eq!(
                back,
                pattern(4096, (block % THREADS) as u8),
                "block {block}"
            );
        }
    }
}
