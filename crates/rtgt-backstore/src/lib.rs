//! Storage behind rtgt's logical units.
//!
//! A backstore is a flat array of bytes with a block size. It knows nothing
//! about SCSI or iSCSI: the core translates LBAs into byte offsets and maps
//! [`BackstoreError`]s onto sense data.
//!
//! The trait is synchronous on purpose. Positioned I/O on a file or a block
//! device is a blocking system call whichever way it is dressed up (tokio's
//! own `fs` runs it on the blocking pool), and a RAM disk is a `memcpy`. The
//! core asks [`Backstore::may_block`] and either calls inline (RAM) or hands
//! the call to a blocking worker (file, block device), so no boxed future is
//! allocated per I/O and each implementation stays a plain, testable struct.

pub mod aio;
mod blockio;
mod buf;
mod faulty;
mod fileio;
mod ramdisk;
pub mod uring;

pub use blockio::BlockIo;
pub use buf::{IoBuf, IO_ALIGN};
pub use faulty::{FaultOp, FaultRule, Faulty};
pub use fileio::{FileIo, FileIoOptions};
pub use ramdisk::RamDisk;
pub use uring::UringFile;

use std::io;

/// Errors a backstore reports; the core maps them onto sense data.
#[derive(Debug, thiserror::Error)]
pub enum BackstoreError {
    /// The byte range lies (partly) beyond the end of the medium.
    #[error("range {offset}+{len} beyond capacity {capacity}")]
    OutOfRange {
        offset: u64,
        len: u64,
        capacity: u64,
    },
    /// The medium does not support the operation (e.g. discard).
    #[error("operation not supported by this backstore")]
    Unsupported,
    /// The underlying I/O failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, BackstoreError>;

/// See [`Backstore::watch_capacity`].
pub type CapacityListener = Box<dyn Fn() + Send + Sync>;

/// Allocation state of a byte range, for GET LBA STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    Mapped,
    Deallocated,
}

/// The medium under a logical unit.
///
/// All offsets and lengths are in bytes. Implementations must be safe to call
/// from many threads at once; concurrent writes to overlapping ranges may
/// interleave (the SCSI core orders commands where SCSI requires it).
pub trait Backstore: Send + Sync + 'static {
    /// A short name of the kind (`"ramdisk"`, `"fileio"`, `"blockio"`).
    fn kind(&self) -> &'static str;
    /// Size in bytes; always a multiple of `block_size()`.
    fn capacity(&self) -> u64;
    /// Grow the medium to `new_capacity` bytes (whole blocks) while it is
    /// in use. Shrinking is refused: it would drop what initiators wrote.
    fn grow(&self, _new_capacity: u64) -> Result<()> {
        Err(BackstoreError::Unsupported)
    }
    /// Logical block size in bytes (512 or 4096).
    fn block_size(&self) -> u32;
    /// Physical block size in bytes (>= `block_size()`, a power-of-two multiple).
    fn physical_block_size(&self) -> u32 {
        self.block_size()
    }
    /// Whether calls may block the calling thread for long (real I/O); when
    /// true the core runs them on a blocking worker thread.
    fn may_block(&self) -> bool;
    /// Whether writes are cached (write-back) and need [`Backstore::flush`]
    /// to be durable. Reported to initiators as WCE.
    fn write_cache(&self) -> bool {
        false
    }
    /// Switch write-back caching on or off (MODE SELECT of the caching page).
    /// Returns `Unsupported` where the medium cannot change it.
    fn set_write_cache(&self, _enabled: bool) -> Result<()> {
        Err(BackstoreError::Unsupported)
    }
    /// Have `changed` called whenever the capacity changes by itself (an
    /// RBD image resized from elsewhere): the LU raises CAPACITY DATA HAS
    /// CHANGED. The default: a medium that only changes through
    /// [`Backstore::grow`] calls nothing.
    fn watch_capacity(&self, _changed: CapacityListener) {}
    /// Fill `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Write `buf` at `offset`; when `fua` is set the data is durable on return.
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()>;
    /// Make every completed write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> Result<()>;
    /// Read only if that cannot block (the data is cached in memory);
    /// `None` means "would block, use [`Backstore::read_at`] on a blocking
    /// thread". Lets a backstore that `may_block` serve cache hits inline,
    /// without a thread hand-off.
    fn read_nowait(&self, _offset: u64, _buf: &mut [u8]) -> Option<Result<()>> {
        None
    }
    /// Write (without FUA) only if that cannot block; `None` as for
    /// [`Backstore::read_nowait`].
    fn write_nowait(&self, _offset: u64, _buf: &[u8]) -> Option<Result<()>> {
        None
    }
    /// The descriptor io_uring may read (`write` false) or write this
    /// medium through, for a write with `fua` one that makes it durable on
    /// completion; `None` (the default) keeps the calls above. Only media
    /// whose reads and writes are plain positioned I/O on one descriptor
    /// (no translation, no fault injection) return one.
    fn uring_file(&self, _write: bool, _fua: bool) -> Option<UringFile> {
        None
    }
    /// Reads and writes that complete by callback (librbd's aio); `None`
    /// (the default) keeps the calls above. The core uses it for plain
    /// reads and writes and keeps the blocking calls for the rest, and for
    /// saying which block failed.
    fn async_io(&self) -> Option<&dyn aio::AsyncIo> {
        None
    }
    /// Deallocate a range; later reads return zeroes.
    fn discard(&self, _offset: u64, _len: u64) -> Result<()> {
        Err(BackstoreError::Unsupported)
    }
    /// Whether [`Backstore::discard`] works on this medium and really
    /// deallocates (thin provisioning: UNMAP, WRITE SAME with UNMAP).
    fn supports_discard(&self) -> bool {
        false
    }
    /// Whether a discarded range is guaranteed to read back as zeroes
    /// (reported as LBPRZ).
    fn discard_zeroes(&self) -> bool {
        false
    }
    /// The unit in bytes in which discard frees space (a multiple of the
    /// block size); ranges smaller than it are zeroed but stay allocated.
    fn discard_granularity(&self) -> u32 {
        self.block_size()
    }
    /// Zero a range.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        write_zeroes_by_writing(self, offset, len)
    }
    /// Whether the medium has its own write same and compare and write
    /// (below): the core asks it only then, so other media pay no copy
    /// and no thread hop for a `None`.
    fn native_ops(&self) -> bool {
        false
    }
    /// Fill `len` bytes at `offset` with `pattern` repeated, where the
    /// medium does that itself (RBD's writesame: the pattern crosses the
    /// network once); `None` (the default): the core writes the blocks.
    fn write_same(&self, _offset: u64, _len: u64, _pattern: &[u8]) -> Option<Result<()>> {
        None
    }
    /// COMPARE AND WRITE done atomically by the medium (RBD's
    /// compare-and-write, atomic across every gateway of the cluster):
    /// `Ok(None)` written, `Ok(Some(n))` the medium differs from `cmp` at
    /// byte `n` and nothing was written. `None` (the default): the core
    /// does it itself under the LU's range lock (atomic for this daemon).
    fn compare_and_write(
        &self,
        _offset: u64,
        _cmp: &[u8],
        _data: &[u8],
    ) -> Option<Result<Option<u64>>> {
        None
    }
    /// Whether [`Backstore::allocation`] tells deallocated ranges apart
    /// (false: it reports everything mapped).
    fn reports_allocation(&self) -> bool {
        false
    }
    /// Allocation state of the range starting at `offset`: the state of the
    /// first byte and how many bytes from `offset` share it (at most `len`).
    fn allocation(&self, _offset: u64, len: u64) -> Result<(Allocation, u64)> {
        Ok((Allocation::Mapped, len))
    }
}

/// Whether an I/O error says the medium cannot do the operation at all
/// (rather than that it failed).
pub(crate) fn unsupported(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Check that `offset..offset+len` fits in `capacity`.
pub fn check_range(offset: u64, len: u64, capacity: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BackstoreError::OutOfRange {
            offset,
            len,
            capacity,
        }),
    }
}

/// The generic write-zeroes: write zero blocks in bounded chunks.
///
/// It is the trait's default, and public so that implementations which try a
/// faster native way first can fall back to it when the medium refuses.
pub fn write_zeroes_by_writing<B: Backstore + ?Sized>(bs: &B, offset: u64, len: u64) -> Result<()> {
    let chunk = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        bs.write_at(offset + done, &chunk[..n], false)?;
        done += n as u64;
    }
    Ok(())
}

/// Check that `block_size` is one rtgt serves (512 or 4096 bytes).
pub fn check_block_size(block_size: u32) -> Result<()> {
    match block_size {
        512 | 4096 => Ok(()),
        _ => Err(BackstoreError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            block_size_problem(block_size),
        ))),
    }
}

fn block_size_problem(block_size: u32) -> String {
    format!("block size {block_size} not supported (use 512 or 4096)")
}

/// An error that names the file it is about, for messages at open time.
fn path_error(
    path: &std::path::Path,
    kind: io::ErrorKind,
    msg: impl std::fmt::Display,
) -> BackstoreError {
    BackstoreError::Io(io::Error::new(kind, format!("{}: {msg}", path.display())))
}
