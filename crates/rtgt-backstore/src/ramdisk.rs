//! Sparse RAM disk.
//!
//! The disk is cut into fixed-size chunks, each behind its own lock and
//! allocated on first write: a large disk costs memory only for what was
//! written, and threads working on different chunks never meet on a lock.
//!
//! Which chunks hold memory is also kept in an [`AllocIndex`], a 64-ary
//! hierarchical bitmap of atomic words, so that allocation queries (GET LBA
//! STATUS) find where an extent ends in O(log n) without visiting its
//! chunks. It changes only when a chunk is allocated or freed; reads and
//! writes of allocated chunks never touch it.

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
    /// Which slots hold memory (kept in step with `slots`).
    index: AllocIndex,
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
            index: AllocIndex::new(nslots),
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

    /// Memory for chunk `slot`, accounted as allocated; called with the
    /// slot's write lock held.
    fn new_chunk(&self, slot: usize) -> Box<[u8]> {
        let len = self.chunk_len(slot);
        self.allocated.fetch_add(len as u64, Ordering::Relaxed);
        self.index.allocate(slot);
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
                    self.index.free(p.slot);
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
        if len == 0 {
            return Ok((Allocation::Mapped, 0));
        }
        // The state of the chunk holding `offset` lasts until the first
        // later chunk in the other state.
        let slot = (offset >> self.chunk_shift) as usize;
        let (state, other) = if self.index.is_allocated(slot) {
            (Allocation::Mapped, self.index.next(Find::Free, slot + 1))
        } else {
            (
                Allocation::Deallocated,
                self.index.next(Find::Allocated, slot + 1),
            )
        };
        let stop = other.map_or(self.capacity, |s| (s as u64) << self.chunk_shift);
        Ok((state, stop.min(offset + len) - offset))
    }
}

/// What [`AllocIndex::next`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Find {
    Allocated,
    Free,
}

/// Which chunk slots hold memory: a 64-ary hierarchical bitmap.
///
/// `leaf` has one bit per slot, set while the slot holds memory. Two
/// summaries stand above it, each a stack of levels with one bit per word
/// of the level below: `has_allocated` marks words with a set bit,
/// `has_free` words with a clear one (slots past the end do not count).
/// Finding the next allocated or free slot climbs a summary to the first
/// marked word and descends: a few word loads per level, O(log64 n).
///
/// Updates take no lock. A slot's bit changes only under the slot's write
/// lock, but other bits of its word may change at the same time, so marks
/// follow one rule: the update that makes a word non-empty marks it in its
/// level above; the one that makes it empty unmarks it there, then looks at
/// the word again and marks it back if it has filled meanwhile (every
/// access sequentially consistent). Once the updates in flight are done,
/// every non-empty word is marked; a mark left on an empty word by a race
/// only costs a search one more look.
struct AllocIndex {
    slots: usize,
    leaf: Box<[AtomicU64]>,
    has_allocated: Vec<Box<[AtomicU64]>>,
    has_free: Vec<Box<[AtomicU64]>>,
}

/// The bits in use of word `w` of a bitmap of `bits` bits.
fn word_mask(w: usize, bits: usize) -> u64 {
    match bits.saturating_sub(w * 64) {
        n if n >= 64 => !0,
        n => (1u64 << n) - 1,
    }
}

/// Bit `i` of a bitmap: the word and the mask.
fn bit(i: usize) -> (usize, u64) {
    (i / 64, 1u64 << (i % 64))
}

/// The bits of a word at `i % 64` and above.
fn from_bit(i: usize) -> u64 {
    !0u64 << (i % 64)
}

/// Set mark `i` of summary level `k` (and above, if its word was empty).
fn mark(levels: &[Box<[AtomicU64]>], k: usize, i: usize) {
    let Some(level) = levels.get(k) else { return };
    let (w, b) = bit(i);
    if level[w].fetch_or(b, Ordering::SeqCst) == 0 {
        mark(levels, k + 1, w);
    }
}

/// The first mark at or after `i` in summary level `k`: the index of a
/// word of the level below that is (or was, see [`AllocIndex`]) non-empty.
/// Above the top level every word is a candidate.
fn next_marked(levels: &[Box<[AtomicU64]>], k: usize, mut i: usize) -> Option<usize> {
    let Some(level) = levels.get(k) else {
        return Some(i);
    };
    loop {
        let w = i / 64;
        let bits = level.get(w)?.load(Ordering::Acquire) & from_bit(i);
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        i = next_marked(levels, k + 1, w + 1)?.checked_mul(64)?;
    }
}

impl AllocIndex {
    /// An index of `slots` slots, none allocated.
    fn new(slots: usize) -> AllocIndex {
        let zeroed = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let leaf = zeroed(slots.div_ceil(64));
        let (mut has_allocated, mut has_free) = (Vec::new(), Vec::new());
        let mut below = leaf.len();
        while below > 1 {
            let n = below.div_ceil(64);
            has_allocated.push(zeroed(n));
            // Every word below has a free slot.
            has_free.push(
                (0..n)
                    .map(|w| AtomicU64::new(word_mask(w, below)))
                    .collect(),
            );
            below = n;
        }
        AllocIndex {
            slots,
            leaf,
            has_allocated,
            has_free,
        }
    }

    fn summary(&self, find: Find) -> &[Box<[AtomicU64]>] {
        match find {
            Find::Allocated => &self.has_allocated,
            Find::Free => &self.has_free,
        }
    }

    /// Leaf word `w` with a bit set for each slot that is `find`.
    fn leaf_word(&self, find: Find, w: usize) -> u64 {
        let v = self.leaf[w].load(Ordering::SeqCst);
        match find {
            Find::Allocated => v,
            Find::Free => !v & word_mask(w, self.slots),
        }
    }

    fn is_allocated(&self, slot: usize) -> bool {
        let (w, b) = bit(slot);
        self.leaf
            .get(w)
            .is_some_and(|x| x.load(Ordering::Acquire) & b != 0)
    }

    /// Slot `slot` now holds memory.
    fn allocate(&self, slot: usize) {
        let (w, b) = bit(slot);
        let old = self.leaf[w].fetch_or(b, Ordering::SeqCst);
        if old & b != 0 {
            return;
        }
        if old == 0 {
            mark(&self.has_allocated, 0, w);
        }
        if old | b == word_mask(w, self.slots) {
            self.unmark(Find::Free, 0, w);
        }
    }

    /// Slot `slot` no longer holds memory.
    fn free(&self, slot: usize) {
        let (w, b) = bit(slot);
        let old = self.leaf[w].fetch_and(!b, Ordering::SeqCst);
        if old & b == 0 {
            return;
        }
        if old == word_mask(w, self.slots) {
            mark(&self.has_free, 0, w);
        }
        if old & !b == 0 {
            self.unmark(Find::Allocated, 0, w);
        }
    }

    /// Clear mark `i` of level `k` of `find`'s summary, whose word below
    /// became empty; mark it back if that word has filled since.
    fn unmark(&self, find: Find, k: usize, i: usize) {
        let levels = self.summary(find);
        let Some(level) = levels.get(k) else { return };
        let (w, b) = bit(i);
        if level[w].fetch_and(!b, Ordering::SeqCst) & !b == 0 {
            self.unmark(find, k + 1, w);
        }
        let below = match k {
            0 => self.leaf_word(find, i),
            _ => levels[k - 1][i].load(Ordering::SeqCst),
        };
        if below != 0 {
            mark(levels, k, i);
        }
    }

    /// The first slot at or after `from` that is `find`.
    fn next(&self, find: Find, from: usize) -> Option<usize> {
        let levels = self.summary(find);
        let mut i = from;
        loop {
            let w = i / 64;
            if w >= self.leaf.len() {
                return None;
            }
            let bits = self.leaf_word(find, w) & from_bit(i);
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            i = next_marked(levels, 0, w + 1)?.checked_mul(64)?;
        }
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

    /// The extents `allocation` reports from `offset` to the end.
    fn extents(d: &RamDisk, mut offset: u64) -> Vec<(u64, u64, Allocation)> {
        let mut out = Vec::new();
        while offset < d.capacity() {
            let (state, run) = d.allocation(offset, d.capacity() - offset).unwrap();
            assert!(run > 0);
            out.push((offset, run, state));
            offset += run;
        }
        out
    }

    #[test]
    fn allocation_extents_across_many_chunks() {
        let cap = 1024 * CHUNK;
        let d = RamDisk::new(cap, 512);
        d.write_at(10 * CHUNK, &pattern(290 * CHUNK as usize, 1), false)
            .unwrap();
        d.write_at(500 * CHUNK + 4096, &[1u8; 512], false).unwrap();
        d.write_at(cap - 512, &[1u8; 512], false).unwrap();
        use Allocation::{Deallocated as D, Mapped as M};
        assert_eq!(
            extents(&d, 0),
            vec![
                (0, 10 * CHUNK, D),
                (10 * CHUNK, 290 * CHUNK, M),
                (300 * CHUNK, 200 * CHUNK, D),
                (500 * CHUNK, CHUNK, M),
                (501 * CHUNK, 522 * CHUNK, D),
                (1023 * CHUNK, CHUNK, M),
            ]
        );
        // Starting mid-chunk, the run counts from there.
        assert_eq!(
            d.allocation(10 * CHUNK + 512, cap - 10 * CHUNK - 512)
                .unwrap(),
            (M, 290 * CHUNK - 512)
        );
        assert_eq!(d.allocation(300 * CHUNK - 512, 4096).unwrap(), (M, 512));
        assert_eq!(
            d.allocation(300 * CHUNK + 7, cap - 300 * CHUNK - 7)
                .unwrap(),
            (D, 200 * CHUNK - 7)
        );
        // The length bounds the run.
        assert_eq!(d.allocation(20 * CHUNK, 1000).unwrap(), (M, 1000));
        assert_eq!(d.allocation(0, 3 * CHUNK).unwrap(), (D, 3 * CHUNK));
        // The end of the disk.
        assert_eq!(
            d.allocation(1023 * CHUNK + 100, CHUNK - 100).unwrap(),
            (M, CHUNK - 100)
        );
        assert_eq!(d.allocation(cap - 1, 1).unwrap(), (M, 1));
        assert_eq!(d.allocation(cap, 0).unwrap(), (M, 0));
        // Freed chunks join their neighbours' runs.
        d.discard(500 * CHUNK, CHUNK).unwrap();
        d.discard(10 * CHUNK, 290 * CHUNK).unwrap();
        assert_eq!(
            extents(&d, 0),
            vec![(0, 1023 * CHUNK, D), (1023 * CHUNK, CHUNK, M)]
        );
        d.write_at(0, &pattern(1023 * CHUNK as usize, 2), false)
            .unwrap();
        assert_eq!(extents(&d, 512), vec![(512, cap - 512, M)]);
    }

    #[test]
    fn allocation_with_a_short_last_chunk() {
        let cap = 10 * CHUNK + 1536;
        let d = RamDisk::new(cap, 512);
        assert_eq!(extents(&d, 0), vec![(0, cap, Allocation::Deallocated)]);
        d.write_at(cap - 512, &[1u8; 512], false).unwrap();
        assert_eq!(d.allocated_bytes(), 1536);
        assert_eq!(
            extents(&d, 9 * CHUNK + 512),
            vec![
                (9 * CHUNK + 512, CHUNK - 512, Allocation::Deallocated),
                (10 * CHUNK, 1536, Allocation::Mapped),
            ]
        );
        assert_eq!(
            d.allocation(10 * CHUNK + 512, 1024).unwrap(),
            (Allocation::Mapped, 1024)
        );
        // The short chunk is freed whole.
        d.discard(10 * CHUNK, 1536).unwrap();
        assert_eq!(d.allocated_bytes(), 0);
        assert_eq!(extents(&d, 0), vec![(0, cap, Allocation::Deallocated)]);
        d.write_at(0, &pattern(cap as usize, 3), false).unwrap();
        assert_eq!(extents(&d, 0), vec![(0, cap, Allocation::Mapped)]);
    }

    #[test]
    fn sparse_gib_disk_reports_exactly_its_chunks() {
        let d = RamDisk::new(GIB, 512);
        let last = GIB / CHUNK - 1;
        for c in [0, 777, 778, 9000, last] {
            d.write_at(c * CHUNK + 1024, &[7u8; 512], false).unwrap();
        }
        use Allocation::{Deallocated as D, Mapped as M};
        assert_eq!(
            extents(&d, 0),
            vec![
                (0, CHUNK, M),
                (CHUNK, 776 * CHUNK, D),
                (777 * CHUNK, 2 * CHUNK, M),
                (779 * CHUNK, 8221 * CHUNK, D),
                (9000 * CHUNK, CHUNK, M),
                (9001 * CHUNK, (last - 9001) * CHUNK, D),
                (last * CHUNK, CHUNK, M),
            ]
        );
        d.discard(777 * CHUNK, CHUNK).unwrap();
        assert_eq!(d.allocation(CHUNK, GIB - CHUNK).unwrap(), (D, 777 * CHUNK));
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    impl AllocIndex {
        /// Every non-empty word is marked in the levels above (`exact`:
        /// and only those).
        fn check_marks(&self, exact: bool) {
            for find in [Find::Allocated, Find::Free] {
                let levels = self.summary(find);
                let mut below: Vec<u64> = (0..self.leaf.len())
                    .map(|w| self.leaf_word(find, w))
                    .collect();
                for level in levels {
                    let marks: Vec<u64> = level.iter().map(|x| x.load(Ordering::SeqCst)).collect();
                    for (i, &word) in below.iter().enumerate() {
                        let marked = marks[i / 64] & (1 << (i % 64)) != 0;
                        assert!(marked || word == 0, "{find:?}: word {i} unmarked");
                        assert!(!exact || marked == (word != 0), "{find:?}: word {i}");
                    }
                    below = marks;
                }
            }
        }

        /// `next` for every kind at `from` agrees with `model`.
        fn check_next(&self, model: &[bool], from: usize) {
            let want = |a: bool| (from..model.len()).find(|&i| model[i] == a);
            assert_eq!(self.next(Find::Allocated, from), want(true), "from {from}");
            assert_eq!(self.next(Find::Free, from), want(false), "from {from}");
        }
    }

    #[test]
    fn alloc_index_matches_a_model() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // One leaf word, two, one summary level, several.
        for slots in [
            0usize,
            1,
            63,
            64,
            65,
            130,
            4095,
            4096,
            4097,
            64 * 64 * 64 + 5,
        ] {
            let ix = AllocIndex::new(slots);
            let mut model = vec![false; slots];
            ix.check_marks(true);
            ix.check_next(&model, 0);
            if slots == 0 {
                assert_eq!(ix.next(Find::Free, 0), None);
                continue;
            }
            for round in 0..40 {
                // Runs of slots switched one way, long and short.
                let start = rng.below(slots);
                let len = match round % 3 {
                    0 => 1,
                    1 => rng.below(200) + 1,
                    _ => rng.below(slots) + 1,
                };
                let on = rng.below(2) == 0;
                let end = (start + len).min(slots);
                for (s, m) in model.iter_mut().enumerate().take(end).skip(start) {
                    if on {
                        ix.allocate(s);
                    } else {
                        ix.free(s);
                    }
                    *m = on;
                    assert_eq!(ix.is_allocated(s), on);
                }
                ix.check_marks(true);
                for from in [0, slots - 1, slots, start, start + len, rng.below(slots)] {
                    ix.check_next(&model, from);
                }
            }
            // All allocated, then all free.
            for (s, m) in model.iter_mut().enumerate() {
                ix.allocate(s);
                *m = true;
            }
            ix.check_marks(true);
            assert_eq!(ix.next(Find::Free, 0), None);
            assert_eq!(ix.next(Find::Allocated, slots - 1), Some(slots - 1));
            for (s, m) in model.iter_mut().enumerate() {
                ix.free(s);
                *m = false;
            }
            ix.check_marks(true);
            assert_eq!(ix.next(Find::Allocated, 0), None);
        }
    }

    /// The race the unmark rule is for, played step by step: a word
    /// empties (or fills), another slot of it changes back before the
    /// summary is updated, then the first update finishes.
    #[test]
    fn alloc_index_word_refilled_while_unmarking() {
        let ix = AllocIndex::new(64 * 65);
        let mut model = vec![false; 64 * 65];
        ix.allocate(64);
        // Freeing slot 64 empties word 1 ...
        ix.leaf[1].fetch_and(!1, Ordering::SeqCst);
        // ... slot 65 is allocated meanwhile (word 1 non-empty again) ...
        ix.allocate(65);
        // ... then the free unmarks word 1.
        ix.unmark(Find::Allocated, 0, 1);
        model[65] = true;
        ix.check_marks(false);
        ix.check_next(&model, 0);
        // The same with a word filling up.
        for s in 128..192 {
            ix.allocate(s);
        }
        model[128..192].fill(true);
        ix.free(130);
        ix.leaf[2].fetch_or(1 << 2, Ordering::SeqCst);
        ix.free(131);
        ix.unmark(Find::Free, 0, 2);
        model[131] = false;
        ix.check_marks(false);
        ix.check_next(&model, 0);
        ix.check_next(&model, 129);
        // A mark left on a word with nothing to find costs a look, not a
        // wrong answer.
        ix.allocate(131);
        model[131] = true;
        mark(&ix.has_allocated, 0, 10);
        mark(&ix.has_free, 0, 2);
        for from in [0, 66, 129, 640] {
            ix.check_next(&model, from);
        }
    }

    #[test]
    fn alloc_index_concurrent_updates() {
        // Threads share the words of a three-word index: word 0 keeps
        // going empty and non-empty, word 1 (otherwise allocated) full and
        // not full. After each round the marks must match the words.
        const THREADS: usize = 4;
        const ROUNDS: usize = 2000;
        let ix = Arc::new(AllocIndex::new(130));
        for s in 64 + THREADS..128 {
            ix.allocate(s);
        }
        let barrier = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ix, barrier) = (Arc::clone(&ix), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        barrier.wait();
                        for _ in 0..16 {
                            ix.allocate(t);
                            ix.free(64 + t);
                            ix.free(t);
                            ix.allocate(64 + t);
                        }
                        let on = (round >> t) & 1 == 1;
                        if on {
                            ix.allocate(t);
                            ix.free(64 + t);
                        } else {
                            ix.free(t);
                            ix.allocate(64 + t);
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        for round in 0..ROUNDS {
            barrier.wait();
            barrier.wait();
            let model: Vec<bool> = (0..130)
                .map(|s| match s {
                    0..THREADS => (round >> s) & 1 == 1,
                    64..=127 if s - 64 < THREADS => (round >> (s - 64)) & 1 == 0,
                    64..=127 => true,
                    _ => false,
                })
                .collect();
            ix.check_marks(false);
            for from in [0, 1, 5, 63, 64, 65, 70, 127, 128, 130] {
                ix.check_next(&model, from);
            }
        }
        for h in handles {
            h.join().unwrap();
        }
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
