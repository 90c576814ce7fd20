//! The commands that must not interleave with other writes to their
//! blocks: COMPARE AND WRITE (SBC-4 5.2), ORWRITE (16) (5.15) and WRITE
//! ATOMIC (16) (5.45). Each holds an exclusive [`crate::lu::range_lock`] on
//! its range for the whole read-compare/modify-write, and every ordinary
//! write takes a shared lock on its own range, so no write to the same
//! blocks can land in between.

use rtgt_backstore::Backstore;

use crate::core::cdb::{be16, be32, be64};
use crate::core::handler::{Action, BlockRange, BoxFuture, Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::LogicalUnit;
use crate::sbc::read_write::{check_range, first_mismatch, io_sense, on_backstore_write, read};
use crate::spc::vpd;

/// MAXIMUM COMPARE AND WRITE LENGTH (B0h), in blocks.
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;

/// MAXIMUM ATOMIC TRANSFER LENGTH (B0h) for a block size: the maximum
/// transfer length, since one backstore write under the range lock is
/// atomic whatever its size.
pub fn max_atomic_blocks(block_size: u32) -> u32 {
    vpd::max_transfer_blocks(block_size)
}

/// Write `data` at `lba` under no lock of its own.
async fn write(
    lu: &LogicalUnit,
    lba: u64,
    data: impl AsRef<[u8]> + Send + 'static,
    fua: bool,
) -> Result<(), Sense> {
    let off = lba * lu.block_size() as u64;
    on_backstore_write(&lu.config.backstore, move |b: &dyn Backstore| {
        b.write_at(off, data.as_ref(), fua)
    })
    .await?
    .map_err(|e| io_sense(e, true))
}

/// Read `blocks` blocks at `lba` (from the medium when `fua`).
async fn read_blocks(
    lu: &LogicalUnit,
    lba: u64,
    blocks: u32,
    fua: bool,
) -> Result<rtgt_backstore::IoBuf, Sense> {
    let r = BlockRange {
        lba,
        blocks,
        fua,
        bytchk: 0,
    };
    read(&lu.config.backstore, r, lu.block_size()).await
}

/// The whole blocks of Data-Out that arrived, at most `needed` bytes: a
/// shorter Data-Out (a smaller expected length) writes what arrived, part
/// of a block is an error.
fn whole_blocks(data: &[u8], needed: usize, block_size: usize) -> Result<&[u8], Sense> {
    if data.len() < needed && !data.len().is_multiple_of(block_size) {
        return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
    }
    Ok(&data[..data.len().min(needed)])
}

// ---------------------------------------------------- COMPARE AND WRITE

pub(crate) fn decode_compare_and_write(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let lba = be64(&d.cdb[2..10]);
    let n = d.cdb[13];
    check_range(lu, lba, n as u64)?;
    let bs = lu.block_size();
    let need = 2 * n as u32 * bs;
    // n never exceeds MAXIMUM COMPARE AND WRITE LENGTH: both are 8 bits.
    // The Data-Out holds the verify and the write data, n blocks each. An
    // announced length that does not fit the CDB is refused; for n = 0 a
    // length beyond what any COMPARE AND WRITE may carry means the 8-bit
    // NUMBER OF LOGICAL BLOCKS wrapped.
    let most = 2 * MAX_COMPARE_AND_WRITE_BLOCKS as u32 * bs;
    if d.expected_len != 0 && (n > 0 && d.expected_len != need || d.expected_len > most) {
        return Err(Sense::invalid_cdb_field(13, None));
    }
    if n == 0 {
        return Ok(Plan::good());
    }
    Ok(Plan::action(Action::Async(exec_compare_and_write)).with_data_out(need))
}

fn exec_compare_and_write<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(compare_and_write(c))
}

async fn compare_and_write(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let lba = be64(&c.cdb[2..10]);
    let n = c.cdb[13] as u32;
    let fua = c.cdb[1] & 0x08 != 0;
    let half = (n * lu.block_size()) as usize;
    if c.data_out.len() < 2 * half {
        return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
    }
    let (verify, data) = c.data_out[..2 * half].split_at(half);
    let _range = lu.ranges.exclusive(lba, n as u64).await;
    // A medium that compares and writes atomically itself (RBD: atomic
    // across every gateway of the cluster, which ATS needs) does it;
    // FUA changes nothing there (its writes are durable on completion).
    if lu.config.backstore.native_ops() {
        let (cmp, new) = (verify.to_vec(), data.to_vec());
        let off = lba * lu.block_size() as u64;
        let native = on_backstore_write(&lu.config.backstore, move |b: &dyn Backstore| {
            b.compare_and_write(off, &cmp, &new)
        })
        .await?;
        match native {
            Some(Ok(None)) => return Ok(Vec::new()),
            Some(Ok(Some(at))) => return Err(sense::MISCOMPARE_DURING_VERIFY.with_info(at)),
            Some(Err(e)) => return Err(io_sense(e, true)),
            // Not for this range (RBD: across objects): done here.
            None => {}
        }
    }
    let current = read_blocks(lu, lba, n, fua).await?;
    if let Some(at) = first_mismatch(&current, verify) {
        return Err(sense::MISCOMPARE_DURING_VERIFY.with_info(at as u64));
    }
    write(lu, lba, data.to_vec(), fua).await?;
    Ok(Vec::new())
}

// -------------------------------------------- ORWRITE and WRITE ATOMIC

pub(crate) fn decode_orwrite(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let (lba, n) = (be64(&d.cdb[2..10]), be32(&d.cdb[10..14]));
    check_range(lu, lba, n as u64)?;
    if n > vpd::max_transfer_blocks(lu.block_size()) {
        return Err(Sense::invalid_cdb_field(10, None));
    }
    if n == 0 {
        return Ok(Plan::good());
    }
    Ok(Plan::action(Action::Async(exec_orwrite)).with_data_out(n * lu.block_size()))
}

fn exec_orwrite<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(orwrite(c))
}

async fn orwrite(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let bs = lu.block_size();
    let (lba, n) = (be64(&c.cdb[2..10]), be32(&c.cdb[10..14]));
    let fua = c.cdb[1] & 0x08 != 0;
    let data = whole_blocks(c.data_out, (n * bs) as usize, bs as usize)?;
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let blocks = (data.len() / bs as usize) as u32;
    let _range = lu.ranges.exclusive(lba, blocks as u64).await;
    let mut merged = read_blocks(lu, lba, blocks, false).await?;
    for (m, d) in merged.iter_mut().zip(data) {
        *m |= d;
    }
    write(lu, lba, merged, fua).await?;
    Ok(Vec::new())
}

pub(crate) fn decode_write_atomic16(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let (lba, n) = (be64(&d.cdb[2..10]), be16(&d.cdb[12..14]) as u32);
    check_range(lu, lba, n as u64)?;
    if n > max_atomic_blocks(lu.block_size()) {
        return Err(Sense::invalid_cdb_field(12, None));
    }
    if n == 0 {
        return Ok(Plan::good());
    }
    Ok(Plan::action(Action::Async(exec_write_atomic)).with_data_out(n * lu.block_size()))
}

fn exec_write_atomic<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(write_atomic(c))
}

async fn write_atomic(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let bs = lu.block_size();
    let (lba, n) = (be64(&c.cdb[2..10]), be16(&c.cdb[12..14]) as u32);
    let fua = c.cdb[1] & 0x08 != 0;
    // All or nothing: a partial Data-Out is not written at all.
    if c.data_out.len() < (n * bs) as usize {
        return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
    }
    let data = c.data_out[..(n * bs) as usize].to_vec();
    let _range = lu.ranges.exclusive(lba, n as u64).await;
    write(lu, lba, data, fua).await?;
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::testutil::*;

    fn caw(lba: u64, n: u8, flags: u8) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x89;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = n;
        c
    }

    fn op16(op: u8, lba: u64, n: u32, flags: u8) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = op;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        if op == 0x9c {
            c[12..14].copy_from_slice(&(n as u16).to_be_bytes());
        } else {
            c[10..14].copy_from_slice(&n.to_be_bytes());
        }
        c
    }

    #[tokio::test]
    async fn a_medium_that_compares_and_writes_itself_does_it() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        t.store.set_native(true);
        let a = vec![b'A'; 2 * 512];
        assert_eq!(t.run(&op16(0x8a, 10, 2, 0), &a).await.status, 0);
        let before = t.store.native_calls();
        let b = vec![b'B'; 2 * 512];
        let r = t
            .run(&caw(10, 2, 0), &[a.clone(), b.clone()].concat())
            .await;
        assert_eq!(r.status, 0);
        assert_eq!(
            t.store.native_calls(),
            before + 1,
            "the medium's own compare and write"
        );
        // Stale: the medium's mismatch offset is the INFORMATION field.
        let mut stale = a.clone();
        stale[..700].copy_from_slice(&b[..700]);
        let s = t
            .check_with(&caw(10, 2, 0), &[stale, a.clone()].concat())
            .await;
        assert_eq!((s.key, s.asc, s.ascq), (0x0e, 0x1d, 0x00));
        assert_eq!(s.info, Some(700));
        let r = t.run(&op16(0x88, 10, 2, 0), &[]).await;
        assert_eq!(r.data, b, "nothing written on a miscompare");
    }

    #[tokio::test]
    async fn compare_and_write_swaps_on_match_only() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        let a = vec![b'A'; 2 * 512];
        assert_eq!(t.run(&op16(0x8a, 10, 2, 0), &a).await.status, 0);
        let b = vec![b'B'; 2 * 512];
        // Match: written (with FUA through to the medium).
        let fua = t.store.fua_writes();
        let r = t
            .run(&caw(10, 2, 0x18), &[a.clone(), b.clone()].concat())
            .await;
        assert_eq!(r.status, 0);
        assert!(t.store.fua_writes() > fua);
        assert_eq!(t.run(&op16(0x88, 10, 2, 0), &[]).await.data, b);
        // Miscompare: nothing written, information = first differing byte.
        let mut verify = b.clone();
        verify[1000] = b'C';
        let s = t
            .check_with(&caw(10, 2, 0), &[verify, a.clone()].concat())
            .await;
        assert_eq!((s.key, s.asc, s.ascq, s.info), (0x0e, 0x1d, 0, Some(1000)));
        assert_eq!(t.run(&op16(0x88, 10, 2, 0), &[]).await.data, b);
        // Unwritten blocks read as zeroes and miscompare at byte 0.
        let s = t
            .check_with(&caw(500, 1, 0), &[vec![b'%'; 512], vec![1; 512]].concat())
            .await;
        assert_eq!(s.info, Some(0));
    }

    #[tokio::test]
    async fn compare_and_write_fields() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        assert_eq!(t.check(&caw(1024, 1, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&caw(1020, 5, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&caw(u64::MAX, 1, 0)).await.code(), 0x2100);
        // Zero blocks: nothing to do.
        assert_eq!(t.run(&caw(0, 0, 0x18), &[]).await.status, 0);
        // WRPROTECT is not supported.
        let s = t.check(&caw(0, 1, 0x20)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
        // Announced Data-Out that does not fit the CDB.
        for (n, len) in [(1u8, 4 * 512u32), (3, 4 * 512), (0, 512 * 512)] {
            let mut c = cmd(0, &caw(0, n, 0));
            c.expected_len = len;
            let r = match t.nexus.prepare(c) {
                Err(r) => r,
                Ok(_) => panic!("TL {n} with {len} bytes must be refused"),
            };
            let s = crate::core::sense::Sense::decode(r.sense.as_ref().unwrap()).unwrap();
            assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 13));
        }
        let mut c = cmd(0, &caw(0, 0, 0x10));
        c.expected_len = 512;
        assert!(t.nexus.prepare(c).is_ok(), "0 blocks with a small Data-Out");
        let mut c = cmd(0, &caw(0, 2, 0));
        c.expected_len = 4 * 512;
        assert_eq!(
            t.nexus.prepare(c).map_err(|_| ()).unwrap().data_out_len(),
            2048
        );
        // Short Data-Out at execution.
        assert_eq!(t.check_with(&caw(0, 1, 0), &[0; 512]).await.code(), 0x0e03);
    }

    #[tokio::test]
    async fn compare_and_write_excludes_concurrent_writes() {
        // A blocking store whose next read waits: the CAW holds its range
        // while it reads, and a WRITE to the same block must wait for it.
        let t = Fixture::build(64, 512, 512, true);
        t.clear_ua().await;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        *t.store.gate.lock().unwrap() = Some(rx);
        let c = t
            .nexus
            .prepare(cmd(0, &caw(3, 1, 0)))
            .map_err(|_| ())
            .unwrap();
        let caw_run = tokio::spawn(c.execute([vec![0u8; 512], vec![b'C'; 512]].concat()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let w = t
            .nexus
            .prepare(cmd(0, &op16(0x8a, 3, 1, 0)))
            .map_err(|_| ())
            .unwrap();
        let write = tokio::spawn(w.execute(vec![b'W'; 512]));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!write.is_finished(), "the WRITE waits for the CAW");
        drop(tx);
        assert_eq!(done(caw_run.await.unwrap()).status, 0);
        assert_eq!(done(write.await.unwrap()).status, 0);
        // The WRITE came last.
        let r = t.run(&op16(0x88, 3, 1, 0), &[]).await;
        assert_eq!(r.data, vec![b'W'; 512]);
        assert_eq!(t.lu.ranges.len(), 0);
    }

    #[tokio::test]
    async fn orwrite_ors_into_the_medium() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        assert_eq!(t.run(&op16(0x8a, 0, 2, 0), &[0x0fu8; 1024]).await.status, 0);
        assert_eq!(
            t.run(&op16(0x8b, 0, 2, 0x18), &[0xa0u8; 1024]).await.status,
            0
        );
        assert_eq!(
            t.run(&op16(0x88, 0, 2, 0), &[]).await.data,
            vec![0xafu8; 1024]
        );
        // Zero blocks, ranges, protect fields.
        assert_eq!(t.run(&op16(0x8b, 0, 0, 0), &[]).await.status, 0);
        assert_eq!(t.check(&op16(0x8b, 1025, 0, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&op16(0x8b, 1 << 63, 0, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&op16(0x8b, 1023, 2, 0)).await.code(), 0x2100);
        let s = t.check(&op16(0x8b, 0, 1, 0x40)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn write_atomic_writes_and_checks() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        let data: Vec<u8> = (0..3 * 512).map(|i| i as u8).collect();
        assert_eq!(t.run(&op16(0x9c, 100, 3, 0x08), &data).await.status, 0);
        assert_eq!(t.run(&op16(0x88, 100, 3, 0), &[]).await.data, data);
        assert_eq!(t.run(&op16(0x9c, 0, 0, 0), &[]).await.status, 0);
        assert_eq!(t.check(&op16(0x9c, 1023, 2, 0)).await.code(), 0x2100);
        assert_eq!(t.check(&op16(0x9c, u64::MAX, 1, 0)).await.code(), 0x2100);
        // ATOMIC BOUNDARY is not supported.
        let mut c = op16(0x9c, 0, 1, 0);
        c[10] = 1;
        assert_eq!(t.check(&c).await.field.unwrap().byte, 10);
        // A partial Data-Out writes nothing.
        assert_eq!(
            t.check_with(&op16(0x9c, 200, 2, 0), &[7u8; 512])
                .await
                .code(),
            0x0e03
        );
        assert!(t
            .run(&op16(0x88, 200, 1, 0), &[])
            .await
            .data
            .iter()
            .all(|&b| b == 0));
        // Write protection.
        let ro = Fixture::read_only(64, 512);
        ro.clear_ua().await;
        assert_eq!(ro.check_with(&op16(0x9c, 0, 1, 0), &[0; 512]).await.key, 7);
        assert_eq!(ro.check_with(&op16(0x8b, 0, 1, 0), &[0; 512]).await.key, 7);
        assert_eq!(ro.check_with(&caw(0, 1, 0), &[0; 1024]).await.key, 7);
    }
}
