//! A backstore that injects faults into another one: chosen errors on
//! chosen byte ranges, and latency. For test rigs that need to see how an
//! initiator (or the target itself) copes with a failing disk, the way
//! SPDK's error bdev or the kernel's dm-flakey / dm-delay are used.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::{Allocation, Backstore, BackstoreError, Result};

/// Which operations a rule hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Read,
    Write,
    /// Reads, writes, discards and zeroing.
    Any,
}

/// One rule: `op`s touching `[offset, offset + len)` fail with the OS
/// error `errno` (e.g. `libc::EIO`, `libc::ENOSPC`, `libc::ENXIO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub op: FaultOp,
    pub offset: u64,
    pub len: u64,
    pub errno: i32,
}

/// `inner`, with faults.
pub struct Faulty {
    inner: Arc<dyn Backstore>,
    rules: Vec<FaultRule>,
    latency: Duration,
}

impl Faulty {
    pub fn new(inner: Arc<dyn Backstore>, rules: Vec<FaultRule>, latency: Duration) -> Faulty {
        Faulty {
            inner,
            rules,
            latency,
        }
    }

    /// Delay, then the error of the first rule hit by this access.
    fn check(&self, write: bool, offset: u64, len: u64) -> Result<()> {
        if !self.latency.is_zero() {
            // Only ever on a blocking worker: `may_block` says so.
            std::thread::sleep(self.latency);
        }
        let end = offset.saturating_add(len.max(1));
        for r in &self.rules {
            let op = match r.op {
                FaultOp::Any => true,
                FaultOp::Read => !write,
                FaultOp::Write => write,
            };
            if op && offset < r.offset.saturating_add(r.len) && r.offset < end {
                return Err(BackstoreError::Io(io::Error::from_raw_os_error(r.errno)));
            }
        }
        Ok(())
    }
}

impl Backstore for Faulty {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn grow(&self, new_capacity: u64) -> Result<()> {
        self.inner.grow(new_capacity)
    }
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn physical_block_size(&self) -> u32 {
        self.inner.physical_block_size()
    }
    fn may_block(&self) -> bool {
        // Latency sleeps, so it must not run on the async threads.
        !self.latency.is_zero() || self.inner.may_block()
    }
    fn write_cache(&self) -> bool {
        self.inner.write_cache()
    }
    fn set_write_cache(&self, enabled: bool) -> Result<()> {
        self.inner.set_write_cache(enabled)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(false, offset, buf.len() as u64)?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()> {
        self.check(true, offset, buf.len() as u64)?;
        self.inner.write_at(offset, buf, fua)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    // No inline fast paths: every access goes through the checks.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check(true, offset, len)?;
        self.inner.discard(offset, len)
    }
    fn supports_discard(&self) -> bool {
        self.inner.supports_discard()
    }
    fn discard_zeroes(&self) -> bool {
        self.inner.discard_zeroes()
    }
    fn discard_granularity(&self) -> u32 {
        self.inner.discard_granularity()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check(true, offset, len)?;
        self.inner.write_zeroes(offset, len)
    }
    fn reports_allocation(&self) -> bool {
        self.inner.reports_allocation()
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        self.inner.allocation(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RamDisk;

    #[test]
    fn rules_hit_only_their_ranges_and_ops() {
        let ram: Arc<dyn Backstore> = Arc::new(RamDisk::new(1 << 20, 512));
        let f = Faulty::new(
            ram,
            vec![
                FaultRule {
                    op: FaultOp::Read,
                    offset: 4096,
                    len: 512,
                    errno: libc::EIO,
                },
                FaultRule {
                    op: FaultOp::Write,
                    offset: 8192,
                    len: 1024,
                    errno: libc::ENOSPC,
                },
            ],
            Duration::ZERO,
        );
        let mut b = [0u8; 512];
        assert!(f.read_at(0, &mut b).is_ok());
        let errno = |r: Result<()>| match r {
            Err(BackstoreError::Io(e)) => e.raw_os_error(),
            _ => None,
        };
        assert_eq!(errno(f.read_at(4096, &mut b)), Some(libc::EIO));
        let mut big = vec![0u8; 8192];
        assert_eq!(errno(f.read_at(0, &mut big)), Some(libc::EIO), "overlap");
        assert!(
            f.write_at(4096, &b, false).is_ok(),
            "read rule spares writes"
        );
        assert_eq!(errno(f.write_at(8704, &b, false)), Some(libc::ENOSPC));
        assert!(f.write_at(9216, &b, false).is_ok());
        assert!(!f.may_block());
        let slow = Faulty::new(
            Arc::new(RamDisk::new(1 << 20, 512)),
            vec![],
            Duration::from_millis(1),
        );
        assert!(slow.may_block());
    }
}
