//! A block device as the medium, opened with `O_DIRECT`.
//!
//! Direct I/O bypasses the page cache (the initiator has its own, and the
//! device has a write cache that flush drains) but wants offsets, lengths
//! and buffer addresses aligned to the logical block size. I/O that is
//! aligned goes straight from the caller's buffer; anything else goes
//! through a per-thread aligned bounce buffer.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    block_size_problem, check_block_size, check_range, path_error, unsupported,
    write_zeroes_by_writing, Backstore, BackstoreError, Result,
};

/// Bounce buffers are aligned to this, the largest logical block we accept.
const ALIGN: usize = 4096;
/// Unaligned I/O is split into pieces of this size (a multiple of `ALIGN`).
const BOUNCE_LEN: usize = 512 << 10;

/// `<linux/fs.h>` ioctl numbers, built as the kernel's `_IO`/`_IOR` do.
mod nr {
    use libc::c_ulong;

    #[cfg(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))]
    const IOC_READ: c_ulong = 2 << 29;
    #[cfg(not(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    const IOC_READ: c_ulong = 2 << 30;

    const fn io(nr: c_ulong) -> c_ulong {
        (0x12 << 8) | nr
    }

    const fn ior(nr: c_ulong, size: usize) -> c_ulong {
        IOC_READ | ((size as c_ulong) << 16) | io(nr)
    }

    pub const BLKSSZGET: c_ulong = io(104);
    // The kernel declares it with `size_t` although it always writes a u64.
    pub const BLKGETSIZE64: c_ulong = ior(114, std::mem::size_of::<usize>());
    pub const BLKDISCARD: c_ulong = io(119);
    pub const BLKPBSZGET: c_ulong = io(123);
    pub const BLKZEROOUT: c_ulong = io(127);
}

/// A zeroed heap buffer aligned to `ALIGN`, as `O_DIRECT` needs.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(1), ALIGN).expect("bounce buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed) bytes
        // that this value owns alone, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this very layout and is
        // freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

thread_local! {
    // One per thread, kept for the thread's life: no allocation per I/O and
    // no lock between the blocking workers that run block I/O.
    static BOUNCE: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

fn with_bounce<T>(f: impl FnOnce(&mut [u8]) -> Result<T>) -> Result<T> {
    BOUNCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let buf = slot.get_or_insert_with(|| AlignedBuf::new(BOUNCE_LEN));
        f(buf.as_mut_slice())
    })
}

/// A backstore on a block device.
#[derive(Debug)]
pub struct BlockIo {
    path: PathBuf,
    file: File,
    /// The same device with `O_DSYNC` too: a FUA write becomes a FUA request
    /// (or write + flush where the device has no FUA) in one system call.
    dsync: File,
    capacity: u64,
    block_size: u32,
    physical_block_size: u32,
    write_back: AtomicBool,
    /// The device accepts BLKDISCARD (its queue has a nonzero
    /// `discard_max_bytes`).
    discard: bool,
}

impl BlockIo {
    pub fn open(path: &Path) -> Result<BlockIo> {
        let meta = std::fs::metadata(path)
            .map_err(|e| path_error(path, e.kind(), format_args!("cannot stat: {e}")))?;
        if !meta.file_type().is_block_device() {
            return Err(path_error(
                path,
                io::ErrorKind::InvalidInput,
                "not a block device (use fileio for regular files)",
            ));
        }
        let open = |flags| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT | flags)
                .open(path)
                .map_err(|e| path_error(path, e.kind(), format_args!("cannot open: {e}")))
        };
        let file = open(0)?;
        let dsync = open(libc::O_DSYNC)?;
        let fd = file.as_raw_fd();
        let query = |e: io::Error| path_error(path, e.kind(), format_args!("cannot query: {e}"));

        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which
        // points to a live local u64; `fd` is open for the whole call.
        ioctl_result(unsafe { libc::ioctl(fd, nr::BLKGETSIZE64 as _, &mut size as *mut u64) })
            .map_err(query)?;
        let mut lbs: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int into the local `lbs`.
        ioctl_result(unsafe { libc::ioctl(fd, nr::BLKSSZGET as _, &mut lbs as *mut libc::c_int) })
            .map_err(query)?;
        let mut pbs: libc::c_uint = 0;
        // SAFETY: BLKPBSZGET writes one unsigned int into the local `pbs`.
        ioctl_result(unsafe {
            libc::ioctl(fd, nr::BLKPBSZGET as _, &mut pbs as *mut libc::c_uint)
        })
        .map_err(query)?;

        let block_size = u32::try_from(lbs).unwrap_or(0);
        if check_block_size(block_size).is_err() {
            let msg = format!("device has logical {}", block_size_problem(block_size));
            return Err(path_error(path, io::ErrorKind::InvalidInput, msg));
        }
        let capacity = size - size % u64::from(block_size);
        if capacity == 0 {
            return Err(path_error(
                path,
                io::ErrorKind::InvalidInput,
                "device is empty",
            ));
        }
        let physical_block_size = if pbs.is_power_of_two() && pbs >= block_size {
            pbs
        } else {
            block_size
        };
        let discard = device_discards(&meta);
        Ok(BlockIo {
            path: path.to_owned(),
            file,
            dsync,
            capacity,
            block_size,
            physical_block_size,
            write_back: AtomicBool::new(true),
            discard,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor a write goes through: the `O_DSYNC` one when this
    /// write must be durable on return.
    fn writer(&self, fua: bool) -> &File {
        if fua || !self.write_back.load(Ordering::Relaxed) {
            &self.dsync
        } else {
            &self.file
        }
    }

    fn bs(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// Whether `O_DIRECT` can take this I/O as it is.
    fn aligned(&self, offset: u64, buf: &[u8]) -> bool {
        let mask = self.bs() - 1;
        (offset | buf.len() as u64 | buf.as_ptr() as u64) & mask == 0
    }

    /// The block-aligned range covering `offset..offset+len`. It stays
    /// within the capacity, which is whole blocks.
    fn widen(&self, offset: u64, len: u64) -> (u64, u64) {
        let bs = self.bs();
        (offset - offset % bs, (offset + len).div_ceil(bs) * bs)
    }

    /// The widest block-aligned range inside `offset..offset+len`, if any.
    fn narrow(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let bs = self.bs();
        let (start, end) = (offset.div_ceil(bs) * bs, (offset + len) / bs * bs);
        (start < end).then_some((start, end))
    }

    /// A range ioctl (BLKDISCARD, BLKZEROOUT) on an aligned range.
    fn range_ioctl(&self, request: libc::c_ulong, start: u64, end: u64) -> io::Result<()> {
        let range: [u64; 2] = [start, end - start];
        // SAFETY: both ioctls only read two u64s (start, length) from the
        // pointer, which points to the local `range`; the fd is open.
        ioctl_result(unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, range.as_ptr()) })
    }

    /// Zero the unaligned head and tail of a range whose aligned middle
    /// `start..end` is handled by an ioctl.
    fn zero_edges(&self, offset: u64, len: u64, start: u64, end: u64) -> Result<()> {
        static ZEROES: [u8; ALIGN] = [0; ALIGN];
        for (at, n) in [(offset, start - offset), (end, offset + len - end)] {
            if n > 0 {
                self.write_at(at, &ZEROES[..n as usize], false)?;
            }
        }
        Ok(())
    }
}

/// Whether the block device behind `meta` (a device node) supports
/// discard, from `/sys/dev/block/MAJOR:MINOR/queue/discard_max_bytes`.
fn device_discards(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.rdev();
    // The glibc encoding of major and minor numbers in a dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let queue = |minor: u64| format!("/sys/dev/block/{major}:{minor}/queue/discard_max_bytes");
    // A partition has no queue of its own: its parent's is one level up.
    let read = |p: String| std::fs::read_to_string(p).ok();
    read(queue(minor))
        .or_else(|| {
            read(format!(
                "/sys/dev/block/{major}:{minor}/../queue/discard_max_bytes"
            ))
        })
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

fn ioctl_result(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Backstore for BlockIo {
    fn kind(&self) -> &'static str {
        "blockio"
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn physical_block_size(&self) -> u32 {
        self.physical_block_size
    }

    fn may_block(&self) -> bool {
        true
    }

    fn write_cache(&self) -> bool {
        self.write_back.load(Ordering::Relaxed)
    }

    fn set_write_cache(&self, enabled: bool) -> Result<()> {
        self.write_back.store(enabled, Ordering::Relaxed);
        if !enabled {
            // Writes acknowledged before the switch must not stay volatile.
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn uring_file(&self, write: bool, fua: bool) -> Option<crate::UringFile> {
        let file = if write { self.writer(fua) } else { &self.file };
        Some(crate::UringFile {
            fd: file.as_raw_fd(),
            align: self.block_size as usize,
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        if self.aligned(offset, buf) {
            self.file.read_exact_at(buf, offset)?;
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let (mut pos, stop) = self.widen(offset, buf.len() as u64);
        with_bounce(|bounce| {
            while pos < stop {
                let n = (stop - pos).min(BOUNCE_LEN as u64);
                self.file.read_exact_at(&mut bounce[..n as usize], pos)?;
                let (lo, hi) = (pos.max(offset), (pos + n).min(end));
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bounce[(lo - pos) as usize..(hi - pos) as usize]);
                pos += n;
            }
            Ok(())
        })
    }

    /// Unaligned writes read-modify-write their edge blocks, so two
    /// concurrent writes sharing a block (but not bytes) can lose one of
    /// them; the SCSI core only issues whole blocks.
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        let file = self.writer(fua);
        if self.aligned(offset, buf) {
            file.write_all_at(buf, offset)?;
            return Ok(());
        }
        let bs = self.bs() as usize;
        let end = offset + buf.len() as u64;
        let (mut pos, stop) = self.widen(offset, buf.len() as u64);
        with_bounce(|bounce| {
            while pos < stop {
                let n = (stop - pos).min(BOUNCE_LEN as u64);
                let (lo, hi) = (pos.max(offset), (pos + n).min(end));
                let piece = &mut bounce[..n as usize];
                if lo > pos {
                    self.file.read_exact_at(&mut piece[..bs], pos)?;
                }
                if hi < pos + n {
                    let last = piece.len() - bs;
                    self.file
                        .read_exact_at(&mut piece[last..], pos + last as u64)?;
                }
                piece[(lo - pos) as usize..(hi - pos) as usize]
                    .copy_from_slice(&buf[(lo - offset) as usize..(hi - offset) as usize]);
                file.write_all_at(piece, pos)?;
                pos += n;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<()> {
        // fdatasync on a block device sends a cache flush to the device.
        self.file.sync_data()?;
        Ok(())
    }

    /// Discarded blocks need not read back as zeroes (that is up to the
    /// device), so `discard_zeroes` stays false.
    fn supports_discard(&self) -> bool {
        self.discard
    }

    /// Whether discarded blocks then read as zeroes is up to the device
    /// (true for loop devices and most SSDs that report it); use
    /// `write_zeroes` where zeroes must be guaranteed.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity)?;
        let Some((start, end)) = self.narrow(offset, len) else {
            return self.write_at(offset, &vec![0; len as usize], false);
        };
        match self.range_ioctl(nr::BLKDISCARD, start, end) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => return Err(BackstoreError::Unsupported),
            Err(e) => return Err(e.into()),
        }
        self.zero_edges(offset, len, start, end)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity)?;
        let Some((start, end)) = self.narrow(offset, len) else {
            return self.write_at(offset, &vec![0; len as usize], false);
        };
        match self.range_ioctl(nr::BLKZEROOUT, start, end) {
            Ok(()) if !self.write_back.load(Ordering::Relaxed) => self.file.sync_data()?,
            Ok(()) => {}
            Err(e) if unsupported(&e) => write_zeroes_by_writing(self, start, end - start)?,
            Err(e) => return Err(e.into()),
        }
        self.zero_edges(offset, len, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Allocation;
    use std::process::Command;
    use std::sync::{Arc, Mutex, PoisonError};

    const MIB: u64 = 1 << 20;

    #[test]
    fn discard_capability_from_sysfs() {
        // A character device has no block queue: no discard.
        let null = std::fs::metadata("/dev/null").unwrap();
        assert!(!device_discards(&null));
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    /// A loop device over a sparse temporary file, detached on drop.
    struct Loop {
        dev: PathBuf,
        backing: PathBuf,
        _dir: tempfile::TempDir,
    }

    // `losetup --find` can race with itself; one at a time in this process.
    static LOSETUP: Mutex<()> = Mutex::new(());

    impl Loop {
        /// `None` (after saying why) where loop devices are not available.
        fn new(size: u64, sector_size: u32) -> Option<Loop> {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("skipping: loop devices need root");
                return None;
            }
            let _guard = LOSETUP.lock().unwrap_or_else(PoisonError::into_inner);
            let dir = tempfile::tempdir().unwrap();
            let backing = dir.path().join("backing.img");
            File::create(&backing).unwrap().set_len(size).unwrap();
            let out = Command::new("losetup")
                .args([
                    "--find",
                    "--show",
                    "--sector-size",
                    &sector_size.to_string(),
                ])
                .arg(&backing)
                .output();
            match out {
                Ok(out) if out.status.success() => {
                    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    Some(Loop {
                        dev: dev.into(),
                        backing,
                        _dir: dir,
                    })
                }
                Ok(out) => {
                    eprintln!(
                        "skipping: losetup failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    None
                }
                Err(e) => {
                    eprintln!("skipping: cannot run losetup: {e}");
                    None
                }
            }
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        }
    }

    #[test]
    fn ioctl_numbers() {
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(nr::BLKGETSIZE64, 0x8008_1272);
        }
        assert_eq!((nr::BLKSSZGET, nr::BLKPBSZGET), (0x1268, 0x127b));
        assert_eq!((nr::BLKDISCARD, nr::BLKZEROOUT), (0x1277, 0x127f));
    }

    #[test]
    fn aligned_buf_is_aligned_and_zeroed() {
        let mut b = AlignedBuf::new(3 * ALIGN);
        let s = b.as_mut_slice();
        assert_eq!((s.as_ptr() as usize % ALIGN, s.len()), (0, 3 * ALIGN));
        assert!(s.iter().all(|&x| x == 0));
    }

    #[test]
    fn refuses_what_is_not_a_block_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.img");
        std::fs::write(&file, [0u8; 4096]).unwrap();
        for (path, want) in [
            (file.as_path(), "not a block device"),
            (Path::new("/dev/null"), "not a block device"),
            (&dir.path().join("missing"), "cannot stat"),
        ] {
            let msg = BlockIo::open(path).unwrap_err().to_string();
            assert!(
                msg.contains(&*path.to_string_lossy()) && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn geometry_from_the_device() {
        for sector in [512u32, 4096] {
            let Some(lo) = Loop::new(8 * MIB, sector) else {
                return;
            };
            let b = BlockIo::open(&lo.dev).unwrap();
            assert_eq!(
                (b.capacity(), b.block_size(), b.kind()),
                (8 * MIB, sector, "blockio")
            );
            assert!(b.physical_block_size() >= sector);
            assert!(b.may_block() && b.write_cache());
            assert_eq!(b.allocation(0, 4096).unwrap(), (Allocation::Mapped, 4096));
        }
    }

    /// Writes through the device, checked against a model and the backing file.
    fn read_after_write(sector: u32) {
        let Some(lo) = Loop::new(4 * MIB, sector) else {
            return;
        };
        let b = BlockIo::open(&lo.dev).unwrap();
        let mut model = vec![0u8; 4 * MIB as usize];
        let mut back = vec![0xAAu8; 64 * 1024];
        b.read_at(MIB, &mut back).unwrap();
        assert!(back.iter().all(|&x| x == 0), "unwritten area not zero");

        // An aligned buffer goes straight through.
        let mut aligned = AlignedBuf::new(8192);
        aligned.as_mut_slice().copy_from_slice(&pattern(8192, 1));
        b.write_at(0, aligned.as_mut_slice(), false).unwrap();
        model[..8192].copy_from_slice(&pattern(8192, 1));
        // Misaligned buffer, offset and length; bigger than one bounce buffer.
        for (off, len, seed) in [
            (4096u64, 4096usize, 2u8),
            (100, 10_000, 3),
            (MIB - 7, BOUNCE_LEN * 2 + 300, 4),
            (4 * MIB - 1, 1, 5),
        ] {
            let data = pattern(len + 1, seed);
            b.write_at(off, &data[1..], seed % 2 == 0).unwrap();
            model[off as usize..off as usize + len].copy_from_slice(&data[1..]);
            let mut back = vec![0u8; len + 3];
            b.read_at(off, &mut back[3..]).unwrap();
            assert!(back[3..] == data[1..], "offset {off} len {len}");
        }
        let mut all = vec![0u8; model.len()];
        b.read_at(0, &mut all).unwrap();
        assert!(all == model, "device contents differ from the model");
        b.flush().unwrap();
        let on_file = std::fs::read(&lo.backing).unwrap();
        assert!(on_file == model, "backing file differs from the model");
    }

    #[test]
    fn read_after_write_512() {
        read_after_write(512);
    }

    #[test]
    fn read_after_write_4096() {
        read_after_write(4096);
    }

    #[test]
    fn out_of_range() {
        let Some(lo) = Loop::new(MIB, 512) else {
            return;
        };
        let b = BlockIo::open(&lo.dev).unwrap();
        let mut buf = [0u8; 1024];
        assert!(matches!(
            b.read_at(MIB - 512, &mut buf),
            Err(BackstoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            b.write_at(MIB, &buf[..1], true),
            Err(BackstoreError::OutOfRange { .. })
        ));
        assert!(b.discard(MIB - 512, 1024).is_err());
        assert!(b.write_zeroes(u64::MAX, 2).is_err());
    }

    #[test]
    fn discard_and_write_zeroes_read_zero() {
        let Some(lo) = Loop::new(4 * MIB, 512) else {
            return;
        };
        let b = BlockIo::open(&lo.dev).unwrap();
        let mut model = pattern(4 * MIB as usize, 6);
        b.write_at(0, &model, false).unwrap();
        match b.discard(MIB, MIB) {
            Ok(()) => model[MIB as usize..2 * MIB as usize].fill(0),
            Err(BackstoreError::Unsupported) => eprintln!("loop device without discard"),
            Err(e) => panic!("discard: {e}"),
        }
        b.write_zeroes(3 * MIB + 100, 5000).unwrap();
        model[3 * MIB as usize + 100..3 * MIB as usize + 5100].fill(0);
        b.write_zeroes(200, 50).unwrap();
        model[200..250].fill(0);
        let mut all = vec![0xAAu8; model.len()];
        b.read_at(0, &mut all).unwrap();
        assert!(all == model, "zeroed ranges differ");
    }

    #[test]
    fn fua_and_write_through() {
        let Some(lo) = Loop::new(MIB, 512) else {
            return;
        };
        let b = BlockIo::open(&lo.dev).unwrap();
        // SAFETY: F_GETFL only reads the flags of a descriptor `b.dsync` keeps open.
        let flags = unsafe { libc::fcntl(b.dsync.as_raw_fd(), libc::F_GETFL) };
        assert!(
            flags >= 0 && flags & libc::O_DSYNC == libc::O_DSYNC && flags & libc::O_DIRECT != 0
        );
        let fd = |fua| b.writer(fua).as_raw_fd();
        assert_eq!(
            (fd(true), fd(false)),
            (b.dsync.as_raw_fd(), b.file.as_raw_fd())
        );
        b.write_at(0, &pattern(4096, 7), true).unwrap();
        b.set_write_cache(false).unwrap();
        assert!(!b.write_cache());
        assert_eq!(fd(false), b.dsync.as_raw_fd());
        b.write_at(4096, &pattern(4096, 8), false).unwrap();
        let on_file = std::fs::read(&lo.backing).unwrap();
        assert_eq!(&on_file[..4096], &pattern(4096, 7)[..]);
        assert_eq!(&on_file[4096..8192], &pattern(4096, 8)[..]);
    }

    #[test]
    fn concurrent_writers() {
        let Some(lo) = Loop::new(4 * MIB, 512) else {
            return;
        };
        let b = Arc::new(BlockIo::open(&lo.dev).unwrap());
        const THREADS: usize = 4;
        const BLOCKS: usize = 64;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    for i in 0..BLOCKS {
                        let block = (i * THREADS + t) as u64;
                        b.write_at(block * 4096, &pattern(4096, t as u8), i % 8 == 0)
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
            b.read_at(block as u64 * 4096, &mut back).unwrap();
            assert_eq!(
                back,
                pattern(4096, (block % THREADS) as u8),
                "block {block}"
            );
        }
    }
}
