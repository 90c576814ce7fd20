//! The data buffers of the I/O path.
//!
//! Every READ needs a buffer the size of its transfer and every WRITE one for
//! its Data-Out. Taking them from the heap per command costs more than the
//! I/O on a RAM disk: glibc serves 128 KiB and more with `mmap`, so each such
//! command faulted in and zeroed fresh pages, then unmapped them again. An
//! [`IoBuf`] comes from a per-thread pool of page-aligned buffers in
//! power-of-two size classes instead, and goes back to it when dropped
//! (wherever the last owner drops it: the fabric, after the Data-In has left
//! the socket). Page alignment lets O_DIRECT and io_uring use the buffer as
//! it is, with no bounce buffer.
//!
//! A pooled buffer is *not* cleared between uses: whoever takes one with
//! [`IoBuf::with_len`] must fill all of it before anyone reads it (a READ
//! fills it from the medium, a WRITE from the network and executes only once
//! every byte has arrived).
//!
//! Small buffers that handlers build as `Vec`s (INQUIRY data and the like)
//! become `IoBuf`s without a copy and are freed normally.
//!
//! A fabric whose initiator's memory is mapped into rtgt (a virtual
//! machine's, over vhost-user) lends that memory as a *foreign* buffer
//! ([`IoBuf::foreign`]): a READ's data goes straight into it and a WRITE's
//! data straight out of it, with no copy in between. The buffer keeps the
//! mapping alive (its owner) for as long as anyone, the kernel included,
//! can still reach it.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of pooled buffers: a page, which covers every logical block
/// size O_DIRECT may ask for.
pub const IO_ALIGN: usize = 4096;
/// Smallest size class.
const MIN_SHIFT: u32 = 12;
/// Size classes 4 KiB .. 8 MiB (the largest transfer an LU accepts).
const CLASSES: usize = 12;
/// Bytes of idle buffers a thread keeps per size class: one 4 MiB buffer,
/// no 8 MiB one (those are rare and would pin 16 MiB a thread). Bounds what
/// the pool holds after a burst; the data budget bounds what is in flight.
const KEEP_BYTES_PER_CLASS: usize = 4 << 20;

/// A byte buffer for command data; see the module documentation.
pub struct IoBuf {
    repr: Repr,
}

enum Repr {
    /// Page-aligned memory of `4 KiB << class` bytes (or `cap` bytes when
    /// `class` is `None`: larger than any class, never pooled) of which the
    /// first `len` are in use.
    Aligned {
        ptr: NonNull<u8>,
        len: usize,
        cap: usize,
        class: Option<u8>,
    },
    /// An ordinary vector (emulated commands' small answers).
    Heap(Vec<u8>),
    /// `len` bytes at `ptr` in memory that `owner` keeps mapped.
    Foreign {
        ptr: NonNull<u8>,
        len: usize,
        _owner: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    },
}

// SAFETY: an `Aligned` buffer owns its allocation exclusively (nothing else
// holds the pointer), exactly like a `Box<[u8]>`, so moving it to or sharing
// `&IoBuf` with another thread is as sound as for a `Box<[u8]>`. A
// `Foreign` one is lent to this buffer alone (the contract of
// `IoBuf::foreign`) and its owner is `Send + Sync`.
unsafe impl Send for IoBuf {}
// SAFETY: as above; `&IoBuf` only gives out `&[u8]`.
unsafe impl Sync for IoBuf {}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

#[derive(Default)]
struct Pool {
    free: [Vec<NonNull<u8>>; CLASSES],
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (class, list) in self.free.iter_mut().enumerate() {
            for ptr in list.drain(..) {
                // SAFETY: every pointer in list `class` was allocated by
                // `alloc_class` with this class's layout and is owned here.
                unsafe { alloc::dealloc(ptr.as_ptr(), class_layout(class)) };
            }
        }
    }
}

fn class_size(class: usize) -> usize {
    1 << (MIN_SHIFT as usize + class)
}

fn class_layout(class: usize) -> Layout {
    layout(class_size(class))
}

fn layout(size: usize) -> Layout {
    // Cannot fail: IO_ALIGN is a power of two and sizes stay far below
    // isize::MAX (8 MiB classes; larger buffers are bounded by the caller).
    Layout::from_size_align(size.max(1), IO_ALIGN).expect("valid I/O buffer layout")
}

/// The size class that holds `len` bytes, if any does.
fn class_for(len: usize) -> Option<usize> {
    let size = len.max(1).next_power_of_two();
    let shift = size.trailing_zeros().max(MIN_SHIFT);
    let class = (shift - MIN_SHIFT) as usize;
    (class < CLASSES).then_some(class)
}

fn alloc_zeroed(layout: Layout) -> NonNull<u8> {
    // SAFETY: the layout has a non-zero size (see `layout`). Zeroed memory
    // means every byte of a buffer is initialised from the start, so any
    // length up to its capacity may be exposed as `&[u8]`.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

impl IoBuf {
    /// A buffer of `len` bytes whose contents are unspecified (left over
    /// from an earlier use): the caller overwrites all of it.
    pub fn with_len(len: usize) -> IoBuf {
        let (ptr, cap, class) = match class_for(len) {
            Some(class) => {
                let reused = POOL
                    .try_with(|p| p.borrow_mut().free[class].pop())
                    .ok()
                    .flatten();
                let ptr = reused.unwrap_or_else(|| alloc_zeroed(class_layout(class)));
                (ptr, class_size(class), Some(class as u8))
            }
            None => (alloc_zeroed(layout(len)), len, None),
        };
        IoBuf {
            repr: Repr::Aligned {
                ptr,
                len,
                cap,
                class,
            },
        }
    }

    /// A buffer over `len` bytes at `ptr` that someone else's memory
    /// holds (a guest's RAM mapped into this process); `owner` keeps it
    /// mapped (shared by the buffers lent from one request, so lending
    /// costs no allocation per buffer) and is dropped with the buffer, after the last use of `ptr`
    /// (by rtgt or by the kernel: io_uring returns the buffer only on
    /// completion).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long
    /// as `owner` lives, and lent to this buffer alone: no Rust reference
    /// to those bytes exists elsewhere while it lives. Another *process*
    /// (the guest) may still write them meanwhile; rtgt only lends buffers
    /// whose bytes it moves as plain data (to and from the medium, or
    /// compared), never parses, so what the guest changes under it changes
    /// what lands on the medium or in the guest, nothing else.
    pub unsafe fn foreign(
        ptr: NonNull<u8>,
        len: usize,
        owner: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    ) -> IoBuf {
        IoBuf {
            repr: Repr::Foreign {
                ptr,
                len,
                _owner: owner,
            },
        }
    }

    /// Whether this buffer is memory lent by someone else ([`IoBuf::foreign`]).
    pub fn is_foreign(&self) -> bool {
        matches!(self.repr, Repr::Foreign { .. })
    }

    /// A copy of `data` in a pooled buffer.
    pub fn copy_from(data: &[u8]) -> IoBuf {
        let mut b = IoBuf::with_len(data.len());
        b.copy_from_slice(data);
        b
    }

    /// An empty buffer (allocates nothing).
    pub const fn new() -> IoBuf {
        IoBuf {
            repr: Repr::Heap(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Aligned { len, .. } | Repr::Foreign { len, .. } => *len,
            Repr::Heap(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shorten to `len` bytes (no effect when already shorter).
    pub fn truncate(&mut self, new_len: usize) {
        match &mut self.repr {
            Repr::Aligned { len, .. } | Repr::Foreign { len, .. } => *len = (*len).min(new_len),
            Repr::Heap(v) => v.truncate(new_len),
        }
    }

    /// Whether the data starts on an `align`-byte boundary.
    pub fn is_aligned_to(&self, align: usize) -> bool {
        (self.as_ptr() as usize).is_multiple_of(align.max(1))
    }
}

impl Default for IoBuf {
    fn default() -> Self {
        IoBuf::new()
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.repr {
            // SAFETY: `ptr` is valid for `cap` initialised bytes (zeroed at
            // allocation), owned by this buffer, and `len <= cap`.
            Repr::Aligned { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            // SAFETY: valid for `len` bytes while `owner` lives, which is as
            // long as `self` (the contract of `IoBuf::foreign`).
            Repr::Foreign { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            Repr::Heap(v) => v,
        }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            // SAFETY: as in `deref`; `&mut self` makes the access exclusive.
            Repr::Aligned { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            // SAFETY: as in `deref`; lent to this buffer alone, and `&mut
            // self` makes the access exclusive within this process.
            Repr::Foreign { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            Repr::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for IoBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        let Repr::Aligned {
            ptr, cap, class, ..
        } = self.repr
        else {
            return;
        };
        if let Some(class) = class {
            let class = class as usize;
            let keep = KEEP_BYTES_PER_CLASS / class_size(class);
            let kept = POOL
                .try_with(|p| {
                    let mut p = p.borrow_mut();
                    let list = &mut p.free[class];
                    (list.len() < keep).then(|| list.push(ptr)).is_some()
                })
                .unwrap_or(false);
            if kept {
                return;
            }
        }
        // SAFETY: allocated by `alloc_zeroed` with exactly this layout (the
        // class's, or `layout(cap)` for unpooled buffers), and not kept.
        unsafe { alloc::dealloc(ptr.as_ptr(), layout(cap)) };
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(v: Vec<u8>) -> IoBuf {
        IoBuf {
            repr: Repr::Heap(v),
        }
    }
}

impl Clone for IoBuf {
    fn clone(&self) -> IoBuf {
        match &self.repr {
            Repr::Heap(v) => IoBuf::from(v.clone()),
            Repr::Aligned { .. } | Repr::Foreign { .. } => IoBuf::copy_from(self),
        }
    }
}

impl fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for IoBuf {
    fn eq(&self, other: &IoBuf) -> bool {
        **self == **other
    }
}

impl Eq for IoBuf {}

impl PartialEq<[u8]> for IoBuf {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for IoBuf {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for IoBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for IoBuf {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_for(0), Some(0));
        assert_eq!(class_for(1), Some(0));
        assert_eq!(class_for(4096), Some(0));
        assert_eq!(class_for(4097), Some(1));
        assert_eq!(class_for(128 << 10), Some(5));
        assert_eq!(class_for(8 << 20), Some(11));
        assert_eq!(class_for((8 << 20) + 1), None);
    }

    #[test]
    fn aligned_and_sized() {
        for len in [0, 1, 512, 4096, 5000, 128 << 10, (8 << 20) + 512] {
            let b = IoBuf::with_len(len);
            assert_eq!(b.len(), len);
            assert!(b.is_aligned_to(IO_ALIGN), "{len}");
        }
    }

    #[test]
    fn reuses_buffers_of_its_class_on_this_thread() {
        let a = IoBuf::with_len(100 << 10);
        let ptr = a.as_ptr();
        drop(a);
        let b = IoBuf::with_len(128 << 10);
        assert_eq!(b.as_ptr(), ptr, "same class, reused");
        let c = IoBuf::with_len(128 << 10);
        assert_ne!(c.as_ptr(), ptr);
    }

    #[test]
    fn the_largest_class_is_not_kept() {
        let a = IoBuf::with_len(8 << 20);
        drop(a);
        let kept = POOL.with(|p| p.borrow().free[class_for(8 << 20).unwrap()].len());
        assert_eq!(kept, 0);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let bufs: Vec<IoBuf> = (0..64).map(|_| IoBuf::with_len(1 << 20)).collect();
        drop(bufs);
        let kept = POOL.with(|p| p.borrow().free[class_for(1 << 20).unwrap()].len());
        assert_eq!(kept, KEEP_BYTES_PER_CLASS / (1 << 20));
    }

    #[test]
    fn vec_truncate_compare_clone() {
        let mut v = IoBuf::from(vec![1, 2, 3, 4]);
        v.truncate(2);
        assert_eq!(v, vec![1u8, 2]);
        let mut a = IoBuf::copy_from(&[9; 600]);
        a.truncate(10);
        assert_eq!(a.clone(), [9u8; 10]);
        assert_eq!(a.len(), 10);
        a.truncate(20);
        assert_eq!(a.len(), 10, "truncate never grows");
    }

    #[test]
    fn a_foreign_buffer_is_the_lenders_memory_and_drops_its_owner() {
        struct Owner(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Owner {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut memory = vec![0u8; 8192].into_boxed_slice();
        let ptr = NonNull::new(memory[4096..].as_mut_ptr()).unwrap();
        // SAFETY: `memory` outlives the buffer and nothing else touches it
        // until the buffer is dropped.
        let mut b =
            unsafe { IoBuf::foreign(ptr, 4096, std::sync::Arc::new(Owner(dropped.clone()))) };
        assert!(b.is_foreign());
        b[..3].copy_from_slice(b"abc");
        b.truncate(100);
        assert_eq!(b.len(), 100);
        let copy = b.clone();
        assert!(!copy.is_foreign(), "a clone is the project's own memory");
        drop(b);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(&memory[4096..4099], b"abc");
        assert_eq!(&copy[..3], b"abc");
    }

    #[test]
    fn sent_to_another_thread_and_dropped_there() {
        let b = IoBuf::copy_from(&[7; 4096]);
        let h = std::thread::spawn(move || b.iter().map(|&x| x as u32).sum::<u32>());
        assert_eq!(h.join().unwrap(), 7 * 4096);
    }
}
