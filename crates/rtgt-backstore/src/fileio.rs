//! A regular file as the medium.
//!
//! Two descriptors share the file: a plain one for reads, cached writes and
//! fdatasync, and one opened with `O_DSYNC` for FUA and write-through writes,
//! which makes just that write durable in one system call instead of
//! flushing every dirty page of the file with fdatasync.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{
    block_size_problem, check_block_size, check_range, path_error, unsupported,
    write_zeroes_by_writing, Allocation, Backstore, Result,
};

/// How to open a [`FileIo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIoOptions {
    pub path: PathBuf,
    /// Size in bytes (a multiple of `block_size`). A missing file is created
    /// at this size and a shorter one extended (sparsely); a longer file is
    /// used up to this size and left as it is. `None` uses an existing
    /// file's length rounded down to whole blocks.
    pub size: Option<u64>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Write-back caching (WCE=1); when false every write is durable.
    pub write_back: bool,
}

impl FileIoOptions {
    /// Defaults: size from the existing file, 512-byte blocks, write-back.
    pub fn new(path: impl Into<PathBuf>) -> FileIoOptions {
        FileIoOptions {
            path: path.into(),
            size: None,
            block_size: 512,
            write_back: true,
        }
    }
}

/// A backstore on a regular file.
#[derive(Debug)]
pub struct FileIo {
    path: PathBuf,
    file: File,
    dsync: File,
    /// Grows (never shrinks) while the LU runs; see [`Backstore::grow`].
    capacity: AtomicU64,
    block_size: u32,
    write_back: AtomicBool,
    /// Cleared once the file system refuses `FALLOC_FL_ZERO_RANGE` (tmpfs).
    zero_range: AtomicBool,
    /// Cleared once the file system refuses `FALLOC_FL_PUNCH_HOLE`.
    punch_hole: AtomicBool,
    /// The file lives in memory (tmpfs): its I/O never waits for a disk,
    /// so it can run inline like a RAM disk's.
    in_memory: bool,
}

impl FileIo {
    pub fn open(opts: FileIoOptions) -> Result<FileIo> {
        let path = opts.path.as_path();
        let bs = u64::from(opts.block_size);
        if check_block_size(opts.block_size).is_err() {
            let msg = block_size_problem(opts.block_size);
            return Err(path_error(path, io::ErrorKind::InvalidInput, msg));
        }
        match opts.size {
            Some(size) if size == 0 || size % bs != 0 => {
                return Err(path_error(
                    path,
                    io::ErrorKind::InvalidInput,
                    format_args!("size {size} is not a positive multiple of the block size {bs}"),
                ))
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(opts.size.is_some())
            .open(path)
            .map_err(|e| {
                let hint = match (e.kind(), opts.size) {
                    (io::ErrorKind::NotFound, None) => " (give a size to create it)",
                    _ => "",
                };
                path_error(path, e.kind(), format_args!("cannot open: {e}{hint}"))
            })?;
        let meta = file
            .metadata()
            .map_err(|e| path_error(path, e.kind(), format_args!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(path_error(
                path,
                io::ErrorKind::InvalidInput,
                "not a regular file (use blockio for block devices)",
            ));
        }
        let capacity = match opts.size {
            Some(size) => {
                if meta.len() < size {
                    file.set_len(size).map_err(|e| {
                        path_error(path, e.kind(), format_args!("cannot extend to {size}: {e}"))
                    })?;
                }
                size
            }
            None => meta.len() - meta.len() % bs,
        };
        if capacity == 0 {
            return Err(path_error(
                path,
                io::ErrorKind::InvalidInput,
                format_args!("file is smaller than one {bs}-byte block"),
            ));
        }
        let dsync = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(path)
            .map_err(|e| path_error(path, e.kind(), format_args!("cannot open: {e}")))?;
        // Opening by name twice could catch a file renamed over ours in between.
        let dmeta = dsync
            .metadata()
            .map_err(|e| path_error(path, e.kind(), format_args!("cannot stat: {e}")))?;
        if (dmeta.dev(), dmeta.ino()) != (meta.dev(), meta.ino()) {
            return Err(path_error(
                path,
                io::ErrorKind::Other,
                "file was replaced while opening",
            ));
        }
        Ok(FileIo {
            path: opts.path,
            dsync,
            capacity: AtomicU64::new(capacity),
            block_size: opts.block_size,
            write_back: AtomicBool::new(opts.write_back),
            zero_range: AtomicBool::new(true),
            punch_hole: AtomicBool::new(true),
            in_memory: is_tmpfs(&file),
            file,
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

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (off, len) = (offset as libc::off_t, len as libc::off_t);
        loop {
            // SAFETY: fallocate takes only integers and a descriptor that
            // `self.file` keeps open for the duration of the call; it does
            // not touch our memory.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Where the next data (`SEEK_DATA`) or hole (`SEEK_HOLE`) starts at or
    /// after `offset`; `None` when there is none (`ENXIO`).
    fn seek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // SAFETY: lseek takes only integers and a descriptor kept open by
        // `self.file`. Moving the file position is harmless: every read and
        // write here is positioned (pread/pwrite).
        let pos = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
        if pos >= 0 {
            return Ok(Some(pos as u64));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(err),
        }
    }

    /// After a metadata-only change, make it durable when writes must be.
    fn sync_if_write_through(&self) -> Result<()> {
        if !self.write_back.load(Ordering::Relaxed) {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Whether `file` lives on tmpfs.
fn is_tmpfs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a `struct statfs` into the pointer we pass,
    // which is valid for that; we read it only when the call succeeded.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: rc == 0 means the kernel filled the whole struct.
    rc == 0 && unsafe { st.assume_init() }.f_type as libc::c_long == TMPFS_MAGIC
}

/// Drive a `RWF_NOWAIT` transfer of `len` bytes to completion. `None` when
/// the kernel would block (EAGAIN), does not support the flag, or the file
/// ends early; the caller then retries the whole transfer the blocking way
/// (repeating the part done is harmless for both reads and writes).
fn nowait_io(
    file: &File,
    offset: u64,
    len: usize,
    mut op: impl FnMut(libc::c_int, libc::off_t, usize) -> libc::ssize_t,
) -> Option<Result<()>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut done = 0usize;
    while done < len {
        let n = op(fd, (offset + done as u64) as libc::off_t, done);
        if n > 0 {
            done += n as usize;
            continue;
        }
        if n == 0 {
            return None;
        }
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => None,
            _ => Some(Err(err.into())),
        };
    }
    Some(Ok(()))
}

impl Backstore for FileIo {
    fn kind(&self) -> &'static str {
        "fileio"
    }

    fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    fn grow(&self, new_capacity: u64) -> Result<()> {
        let cur = self.capacity();
        let bs = u64::from(self.block_size);
        if new_capacity < cur || !new_capacity.is_multiple_of(bs) {
            return Err(path_error(
                &self.path,
                io::ErrorKind::InvalidInput,
                format_args!(
                    "cannot resize from {cur} to {new_capacity} bytes: a LU only grows, by whole {bs}-byte blocks"
                ),
            ));
        }
        let len = self.file.metadata()?.len();
        if len < new_capacity {
            self.file.set_len(new_capacity)?;
        }
        self.capacity.store(new_capacity, Ordering::Relaxed);
        Ok(())
    }

    fn block_size(&self) -> u32 {
        self.block_size
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
            // Writes cached before the switch must not stay volatile after it.
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn uring_file(&self, write: bool, fua: bool) -> Option<crate::UringFile> {
        let file = if write { self.writer(fua) } else { &self.file };
        Some(crate::UringFile {
            fd: file.as_raw_fd(),
            align: 1,
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity())?;
        // read_exact_at retries short reads and EINTR; EOF inside the
        // capacity means the file was truncated behind our back.
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity())?;
        let file = self.writer(fua);
        file.write_all_at(buf, offset)?;
        Ok(())
    }

    fn read_nowait(&self, offset: u64, buf: &mut [u8]) -> Option<Result<()>> {
        if let Err(e) = check_range(offset, buf.len() as u64, self.capacity()) {
            return Some(Err(e));
        }
        if self.in_memory {
            return Some(self.read_at(offset, buf));
        }
        nowait_io(&self.file, offset, buf.len(), |fd, off, done| {
            let rest = &mut buf[done..];
            let iov = libc::iovec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            };
            // SAFETY: `iov` points into `buf`, which is valid for writes of
            // `rest.len()` bytes and outlives the call; `fd` is our open file.
            unsafe { libc::preadv2(fd, &iov, 1, off, libc::RWF_NOWAIT) }
        })
    }

    fn write_nowait(&self, offset: u64, buf: &[u8]) -> Option<Result<()>> {
        if !self.write_back.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        if let Err(e) = check_range(offset, buf.len() as u64, self.capacity()) {
            return Some(Err(e));
        }
        if self.in_memory {
            return Some(self.write_at(offset, buf, false));
        }
        nowait_io(&self.file, offset, buf.len(), |fd, off, done| {
            let rest = &buf[done..];
            let iov = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            };
            // SAFETY: `iov` points into `buf`, valid for reads of
            // `rest.len()` bytes for the call; pwritev2 does not write
            // through it. `fd` is our open file.
            unsafe { libc::pwritev2(fd, &iov, 1, off, libc::RWF_NOWAIT) }
        })
    }

    fn flush(&self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity())?;
        if len == 0 {
            return Ok(());
        }
        if self.punch_hole.load(Ordering::Relaxed) {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            match self.fallocate(mode, offset, len) {
                Ok(()) => return self.sync_if_write_through(),
                Err(e) if unsupported(&e) => self.punch_hole.store(false, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        self.write_zeroes(offset, len)
    }

    /// Punching holes frees space; where the file system cannot, discard
    /// still zeroes, so discarded ranges always read back as zeroes.
    fn supports_discard(&self) -> bool {
        true
    }

    fn discard_zeroes(&self) -> bool {
        true
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.capacity())?;
        if len == 0 {
            return Ok(());
        }
        if self.zero_range.load(Ordering::Relaxed) {
            let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
            match self.fallocate(mode, offset, len) {
                Ok(()) => return self.sync_if_write_through(),
                Err(e) if unsupported(&e) => self.zero_range.store(false, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        write_zeroes_by_writing(self, offset, len)
    }

    fn reports_allocation(&self) -> bool {
        true
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        check_range(offset, len, self.capacity())?;
        if len == 0 {
            return Ok((Allocation::Mapped, 0));
        }
        let bs = u64::from(self.block_size);
        let data = match self.seek(offset, libc::SEEK_DATA) {
            Ok(data) => data,
            // No SEEK_DATA on this file system: everything counts as mapped.
            Err(_) => return Ok((Allocation::Mapped, len)),
        };
        let (state, run) = match data {
            None => (Allocation::Deallocated, len),
            Some(d) if d > offset => (Allocation::Deallocated, d - offset),
            Some(_) => {
                let hole = self.seek(offset, libc::SEEK_HOLE)?.unwrap_or(u64::MAX);
                (Allocation::Mapped, hole - offset)
            }
        };
        // The file system's granule may be finer than our block: a block is
        // deallocated only if all of it is a hole, mapped if any of it is data.
        Ok(match state {
            Allocation::Deallocated if run >= len => (state, len),
            Allocation::Deallocated if run >= bs => (state, run - run % bs),
            Allocation::Deallocated => (Allocation::Mapped, bs.min(len)),
            Allocation::Mapped => (state, run.div_ceil(bs).saturating_mul(bs).min(len)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackstoreError;
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    fn create(dir: &Path, size: u64) -> FileIo {
        FileIo::open(FileIoOptions {
            size: Some(size),
            ..FileIoOptions::new(dir.join("lun.img"))
        })
        .unwrap()
    }

    /// Bytes the file really occupies on disk.
    fn on_disk(f: &FileIo) -> u64 {
        f.file.metadata().unwrap().blocks() * 512
    }

    /// Cache-hit reads and write-back writes go through without blocking
    /// and move the same bytes as the blocking calls.
    #[test]
    fn nowait_fast_path() {
        let Some(dir) = shm_dir() else { return };
        let f = create(dir.path(), 1 << 20);
        let data = pattern(8192, 7);
        match f.write_nowait(4096, &data) {
            Some(r) => r.unwrap(),
            None => f.write_at(4096, &data, false).unwrap(),
        }
        let mut back = vec![0u8; 8192];
        // tmpfs pages are always in memory: the read must not need a thread.
        assert!(f.in_memory, "/dev/shm is tmpfs");
        f.read_nowait(4096, &mut back)
            .expect("tmpfs read would block")
            .unwrap();
        assert_eq!(back, data);
        let mut slow = vec![0u8; 8192];
        f.read_at(4096, &mut slow).unwrap();
        assert_eq!(slow, data);
        // Out of range is an error, not "would block".
        let mut big = vec![0u8; 512];
        assert!(matches!(
            f.read_nowait(1 << 20, &mut big),
            Some(Err(BackstoreError::OutOfRange { .. }))
        ));
        // Write-through never takes the fast path.
        f.set_write_cache(false).unwrap();
        assert!(f.write_nowait(0, &data[..512]).is_none());

        // A disk file system: cache hits may go through RWF_NOWAIT; whatever
        // comes back must be the data.
        let disk = tempfile::tempdir().unwrap();
        let g = create(disk.path(), 1 << 20);
        g.write_at(0, &data, false).unwrap();
        let mut back = vec![0u8; 8192];
        if let Some(r) = g.read_nowait(0, &mut back) {
            r.unwrap();
            assert_eq!(back, data);
        }
        if let Some(r) = g.write_nowait(8192, &data) {
            r.unwrap();
            let mut slow = vec![0u8; 8192];
            g.read_at(8192, &mut slow).unwrap();
            assert_eq!(slow, data);
        }
    }

    fn shm_dir() -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir_in("/dev/shm").ok();
        if dir.is_none() {
            eprintln!("skipping the tmpfs part: /dev/shm not usable");
        }
        dir
    }

    #[test]
    fn option_defaults() {
        let o = FileIoOptions::new("/x");
        assert_eq!((o.size, o.block_size, o.write_back), (None, 512, true));
    }

    #[test]
    fn create_sparse_at_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = create(dir.path(), 1 << 30);
        assert_eq!(
            (f.capacity(), f.block_size(), f.kind()),
            (1 << 30, 512, "fileio")
        );
        assert!(f.may_block() && f.write_cache());
        assert_eq!(
            std::fs::metadata(dir.path().join("lun.img")).unwrap().len(),
            1 << 30
        );
        f.write_at(MIB, &pattern(4096, 1), false).unwrap();
        assert!(
            on_disk(&f) <= MIB,
            "file not sparse: {} bytes on disk",
            on_disk(&f)
        );
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.img");
        let msg = FileIo::open(FileIoOptions::new(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&*missing.to_string_lossy()) && msg.contains("give a size"),
            "{msg}"
        );
        for (opts, want) in [
            (
                FileIoOptions {
                    block_size: 1000,
                    size: Some(MIB),
                    ..FileIoOptions::new(&missing)
                },
                "block size",
            ),
            (
                FileIoOptions {
                    size: Some(1000),
                    ..FileIoOptions::new(&missing)
                },
                "multiple",
            ),
            (FileIoOptions::new("/dev/null"), "not a regular file"),
            (FileIoOptions::new(dir.path()), "cannot open"),
        ] {
            let path = opts.path.clone();
            let msg = FileIo::open(opts).unwrap_err().to_string();
            assert!(
                msg.contains(&*path.to_string_lossy()) && msg.contains(want),
                "{msg}"
            );
        }
        assert!(!missing.exists(), "a refused open must not create the file");
        std::fs::write(&missing, [1u8; 100]).unwrap();
        let msg = FileIo::open(FileIoOptions::new(&missing))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("smaller than one"), "{msg}");
    }

    #[test]
    fn existing_file_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lun.img");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let f = FileIo::open(FileIoOptions {
            block_size: 4096,
            ..FileIoOptions::new(&path)
        })
        .unwrap();
        assert_eq!((f.capacity(), f.block_size()), (8192, 4096));
        drop(f);
        // A shorter file is extended, keeping its data; a longer one is kept.
        let f = FileIo::open(FileIoOptions {
            size: Some(64 * MIB),
            ..FileIoOptions::new(&path)
        })
        .unwrap();
        assert_eq!(f.capacity(), 64 * MIB);
        assert!(on_disk(&f) < MIB);
        let mut buf = [0u8; 4];
        f.read_at(9_998, &mut buf).unwrap();
        assert_eq!(buf, [7, 7, 0, 0]);
        drop(f);
        let f = FileIo::open(FileIoOptions {
            size: Some(MIB),
            ..FileIoOptions::new(&path)
        })
        .unwrap();
        assert_eq!(f.capacity(), MIB);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * MIB);
    }

    #[test]
    fn read_after_write_and_zero_reads() {
        let dir = tempfile::tempdir().unwrap();
        let f = create(dir.path(), 16 * MIB);
        for (off, len, seed) in [
            (0u64, 4096usize, 1u8),
            (4096 * 3 + 17, 9_999, 2),
            (MIB - 1, 3 * MIB as usize, 3),
        ] {
            let data = pattern(len, seed);
            f.write_at(off, &data, false).unwrap();
            let mut back = vec![0u8; len];
            f.read_at(off, &mut back).unwrap();
            assert_eq!(back, data, "offset {off}");
        }
        let mut buf = vec![0xAAu8; 8192];
        f.read_at(8 * MIB, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let f = create(dir.path(), MIB);
        let mut buf = [0u8; 1024];
        assert!(matches!(
            f.read_at(MIB - 512, &mut buf),
            Err(BackstoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            f.write_at(MIB, &buf[..1], false),
            Err(BackstoreError::OutOfRange { .. })
        ));
        assert!(f.write_at(u64::MAX - 10, &buf, true).is_err());
        assert!(f.discard(0, MIB + 1).is_err());
        assert!(f.write_zeroes(MIB, 1).is_err());
        // Nothing was written past the end.
        assert_eq!(
            std::fs::metadata(dir.path().join("lun.img")).unwrap().len(),
            MIB
        );
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(12_345, 4);
        {
            let f = create(dir.path(), 4 * MIB);
            f.write_at(777, &data, false).unwrap();
            f.flush().unwrap();
        }
        let f = FileIo::open(FileIoOptions::new(dir.path().join("lun.img"))).unwrap();
        assert_eq!(f.capacity(), 4 * MIB);
        let mut back = vec![0u8; data.len()];
        f.read_at(777, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn fua_and_write_through_use_the_dsync_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let f = create(dir.path(), 4 * MIB);
        // SAFETY: F_GETFL only reads the flags of a descriptor `f.dsync` keeps open.
        let flags = unsafe { libc::fcntl(f.dsync.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0 && flags & libc::O_DSYNC == libc::O_DSYNC);
        let fd = |fua| f.writer(fua).as_raw_fd();
        assert_eq!(
            (fd(true), fd(false)),
            (f.dsync.as_raw_fd(), f.file.as_raw_fd())
        );
        f.write_at(0, &pattern(4096, 5), true).unwrap();
        // Another open of the file sees the FUA write.
        let on_file = std::fs::read(dir.path().join("lun.img")).unwrap();
        assert_eq!(&on_file[..4096], &pattern(4096, 5)[..]);

        f.set_write_cache(false).unwrap();
        assert!(!f.write_cache());
        assert_eq!(f.writer(false).as_raw_fd(), f.dsync.as_raw_fd());
        f.write_at(4096, &pattern(512, 6), false).unwrap();
        let mut back = vec![0u8; 512];
        f.read_at(4096, &mut back).unwrap();
        assert_eq!(back, pattern(512, 6));
        f.set_write_cache(true).unwrap();
        assert!(f.write_cache());

        let wt = FileIo::open(FileIoOptions {
            write_back: false,
            ..FileIoOptions::new(dir.path().join("lun.img"))
        })
        .unwrap();
        assert!(!wt.write_cache());
    }

    /// Discard, write_zeroes and allocation on a file system (`dir`).
    fn thin_ops(dir: &Path) {
        let f = create(dir, 8 * MIB);
        assert!(f.supports_discard() && f.discard_zeroes());
        assert_eq!(
            f.allocation(0, 8 * MIB).unwrap(),
            (Allocation::Deallocated, 8 * MIB)
        );
        f.write_at(0, &pattern(4 * MIB as usize, 7), false).unwrap();
        assert_eq!(
            f.allocation(0, 8 * MIB).unwrap(),
            (Allocation::Mapped, 4 * MIB)
        );
        assert_eq!(
            f.allocation(4 * MIB, 4 * MIB).unwrap(),
            (Allocation::Deallocated, 4 * MIB)
        );
        assert_eq!(f.allocation(MIB, 4096).unwrap(), (Allocation::Mapped, 4096));

        let before = on_disk(&f);
        f.discard(MIB, MIB).unwrap();
        assert!(on_disk(&f) <= before - MIB, "discard did not free space");
        assert_eq!(
            f.allocation(MIB, 4 * MIB).unwrap(),
            (Allocation::Deallocated, MIB)
        );
        f.write_zeroes(3 * MIB + 100, 4000).unwrap();
        f.discard(2 * MIB + 512, 512).unwrap();

        let mut back = vec![0xAAu8; 4 * MIB as usize];
        f.read_at(0, &mut back).unwrap();
        let mut want = pattern(4 * MIB as usize, 7);
        want[MIB as usize..2 * MIB as usize].fill(0);
        want[3 * MIB as usize + 100..3 * MIB as usize + 4100].fill(0);
        want[2 * MIB as usize + 512..2 * MIB as usize + 1024].fill(0);
        assert!(back == want, "zeroed ranges differ");
    }

    #[test]
    fn thin_ops_on_disk_fs() {
        thin_ops(tempfile::tempdir().unwrap().path());
    }

    #[test]
    fn thin_ops_on_tmpfs() {
        if let Some(dir) = shm_dir() {
            thin_ops(dir.path());
        }
    }

    #[test]
    fn concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(create(dir.path(), 8 * MIB));
        const THREADS: usize = 4;
        const BLOCKS: usize = 128;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let f = Arc::clone(&f);
                std::thread::spawn(move || {
                    for i in 0..BLOCKS {
                        let block = (i * THREADS + t) as u64;
                        f.write_at(block * 4096, &pattern(4096, t as u8), i % 16 == 0)
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
            f.read_at(block as u64 * 4096, &mut back).unwrap();
            assert_eq!(
                back,
                pattern(4096, (block % THREADS) as u8),
                "block {block}"
            );
        }
    }
}
