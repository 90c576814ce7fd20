//! Thin provisioning (SBC-4 4.7): UNMAP, WRITE SAME (10) and (16) with
//! the UNMAP and NDOB bits, and GET LBA STATUS. The limits reported in the
//! block limits VPD page (B0h) are the ones enforced here.
//!
//! Deallocation goes through [`rtgt_backstore::Backstore::discard`]; where
//! the medium refuses, the range is zeroed instead, so a thin LU always
//! reads deallocated blocks as zeroes when the backstore says it does
//! (LBPRZ). ANCHOR is not supported (ANC_SUP=0): the usage masks leave the
//! ANCHOR bits out, so the reserved-bit check refuses them.

use std::sync::Arc;

use rtgt_backstore::{Allocation, Backstore, BackstoreError};

use crate::core::cdb::{be16, be32, be64};
use crate::core::handler::{Action, BoxFuture, Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::LogicalUnit;
use crate::sbc::read_write::{check_range, io_sense, on_backstore, on_backstore_write};

/// MAXIMUM UNMAP LBA COUNT (B0h): per UNMAP command.
pub const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (B0h).
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// MAXIMUM WRITE SAME LENGTH (B0h), in blocks.
pub const MAX_WRITE_SAME_BLOCKS: u64 = 0xffff;
/// GET LBA STATUS returns at most this many descriptors (16 KiB), however
/// large the allocation length: the initiator asks again from where they end.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 1024;
/// Allocation queries one GET LBA STATUS makes at most. A backstore reports
/// whole extents, so this is reached only on one that cuts them into small
/// pieces; the descriptors then end where the queries stopped.
const MAX_ALLOCATION_QUERIES: usize = 1 << 16;

/// Whether reads of deallocated blocks return zeroes (LBPRZ).
pub(crate) fn lbprz(lu: &LogicalUnit) -> bool {
    lu.config.thin && lu.config.backstore.discard_zeroes()
}

/// Deallocate `blocks` blocks from `lba`; zero them where the medium
/// cannot deallocate.
pub(crate) async fn deallocate(lu: &LogicalUnit, lba: u64, blocks: u64) -> Result<(), Sense> {
    let bs = lu.block_size() as u64;
    let (off, len) = (lba * bs, blocks * bs);
    on_backstore_write(&lu.config.backstore, move |b: &dyn Backstore| {
        match b.discard(off, len) {
            Err(BackstoreError::Unsupported) => b.write_zeroes(off, len),
            r => r,
        }
    })
    .await?
    .map_err(|e| io_sense(e, true))
}

// ---------------------------------------------------------------- UNMAP

pub(crate) fn decode_unmap(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    if !lu.config.thin {
        // LBPU=0: the command is not there for a fully provisioned LU.
        return Err(sense::INVALID_OPCODE);
    }
    let len = be16(&d.cdb[7..9]) as u32;
    match len {
        0 => Ok(Plan::good()),
        1..=7 => Err(sense::PARAMETER_LIST_LENGTH_ERROR),
        _ => Ok(Plan::action(Action::Async(exec_unmap)).with_data_out(len)),
    }
}

fn exec_unmap<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(unmap(c))
}

/// The descriptors of an UNMAP parameter list, validated.
fn unmap_ranges(lu: &LogicalUnit, p: &[u8]) -> Result<Vec<(u64, u64)>, Sense> {
    if p.len() < 8 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    // A descriptor list longer than what arrived counts what arrived; a
    // truncated last descriptor is ignored.
    let bd_len = (be16(&p[2..4]) as usize).min(p.len() - 8);
    let count = bd_len / 16;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_param_field(2, None));
    }
    let mut total: u64 = 0;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let d = &p[8 + i * 16..8 + (i + 1) * 16];
        let (lba, n) = (be64(&d[0..8]), be32(&d[8..12]) as u64);
        if n == 0 {
            continue;
        }
        check_range(lu, lba, n)?;
        total += n;
        if total > MAX_UNMAP_LBA_COUNT as u64 {
            return Err(Sense::invalid_param_field(8 + i * 16 + 8, None));
        }
        out.push((lba, n));
    }
    Ok(out)
}

async fn unmap(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let ranges = unmap_ranges(lu, c.data_out)?;
    for (lba, n) in ranges {
        let _range = lu.ranges.shared(lba, n).await;
        deallocate(lu, lba, n).await?;
    }
    Ok(Vec::new())
}

// ----------------------------------------------------------- WRITE SAME

/// The fields of a WRITE SAME CDB.
struct WriteSame {
    lba: u64,
    blocks: u64,
    unmap: bool,
    /// No Data-Out: the block is zeroes (WRITE SAME (16) only).
    ndob: bool,
    len_offset: usize,
}

/// The fields of a WRITE SAME CDB; NUMBER OF LOGICAL BLOCKS 0 becomes
/// "to the end of the medium" (0 when the LBA is beyond it).
fn parse_write_same(cdb: &[u8], lu: &LogicalUnit) -> WriteSame {
    let mut ws = parse_write_same_cdb(cdb);
    if ws.blocks == 0 {
        ws.blocks = lu.num_blocks().saturating_sub(ws.lba);
    }
    ws
}

fn parse_write_same_cdb(cdb: &[u8]) -> WriteSame {
    if cdb[0] == 0x41 {
        WriteSame {
            lba: be32(&cdb[2..6]) as u64,
            blocks: be16(&cdb[7..9]) as u64,
            unmap: cdb[1] & 0x08 != 0,
            ndob: false,
            len_offset: 7,
        }
    } else {
        WriteSame {
            lba: be64(&cdb[2..10]),
            blocks: be32(&cdb[10..14]) as u64,
            unmap: cdb[1] & 0x08 != 0,
            ndob: cdb[1] & 0x01 != 0,
            len_offset: 10,
        }
    }
}

pub(crate) fn decode_write_same(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let ws = parse_write_same(d.cdb, lu);
    check_range(lu, ws.lba, ws.blocks)?;
    // Zero blocks (WSNZ=0) means up to the end of the medium, which the
    // limit applies to as well.
    if ws.blocks > MAX_WRITE_SAME_BLOCKS {
        return Err(Sense::invalid_cdb_field(ws.len_offset, None));
    }
    if ws.unmap && !lu.config.thin {
        return Err(Sense::invalid_cdb_field(1, Some(3)));
    }
    let out = if ws.ndob { 0 } else { lu.block_size() };
    // The Data-Out is exactly one block: refuse any other announced size.
    if d.expected_len != 0 && d.expected_len != out {
        return Err(Sense::invalid_cdb_field(ws.len_offset, None));
    }
    Ok(Plan::action(Action::Async(exec_write_same)).with_data_out(out))
}

fn exec_write_same<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(write_same(c))
}

/// Largest buffer a WRITE SAME writes through at a time.
const WRITE_SAME_CHUNK: usize = 1 << 20;

async fn write_same(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let ws = parse_write_same(c.cdb, lu);
    let bsz = lu.block_size() as usize;
    let block: &[u8] = if ws.ndob {
        &[]
    } else if c.data_out.len() < bsz {
        return Err(sense::INVALID_FIELD_IN_INFORMATION_UNIT);
    } else {
        &c.data_out[..bsz]
    };
    let zero = block.iter().all(|&b| b == 0);
    let _range = lu.ranges.shared(ws.lba, ws.blocks).await;
    if ws.unmap {
        // UNMAP=1: deallocate, whatever the block holds (LBPRZ tells the
        // initiator what reads return).
        return deallocate(lu, ws.lba, ws.blocks).await.map(|_| Vec::new());
    }
    let bs = lu.block_size() as u64;
    let (off, len) = (ws.lba * bs, ws.blocks * bs);
    let store: &Arc<dyn Backstore> = &lu.config.backstore;
    if zero {
        return on_backstore_write(store, move |b: &dyn Backstore| b.write_zeroes(off, len))
            .await?
            .map(|_| Vec::new())
            .map_err(|e| io_sense(e, true));
    }
    // A medium that repeats the block itself (RBD): one call, one block.
    let pattern = block.to_vec();
    if let Some(res) = on_backstore_write(store, move |b: &dyn Backstore| {
        b.write_same(off, len, &pattern)
    })
    .await?
    {
        return res.map(|_| Vec::new()).map_err(|e| io_sense(e, true));
    }
    let per = (WRITE_SAME_CHUNK / bsz).max(1) as u64;
    let buf: Arc<Vec<u8>> = Arc::new(block.repeat(per.min(ws.blocks) as usize));
    let mut done = 0u64;
    while done < ws.blocks {
        let n = per.min(ws.blocks - done);
        let at = off + done * bs;
        let buf = buf.clone();
        let bytes = (n * bs) as usize;
        on_backstore_write(store, move |b: &dyn Backstore| {
            b.write_at(at, &buf[..bytes], false)
        })
        .await?
        .map_err(|e| io_sense(e, true))?;
        done += n;
    }
    Ok(Vec::new())
}

// ------------------------------------------------------- GET LBA STATUS

pub(crate) fn decode_get_lba_status(d: &Decode<'_>) -> Result<Plan, Sense> {
    let lu = d.lu.expect("block commands need a mapped LUN");
    let lba = be64(&d.cdb[2..10]);
    if lba >= lu.num_blocks() {
        return Err(sense::LBA_OUT_OF_RANGE);
    }
    Ok(Plan::action(Action::Async(exec_get_lba_status)).with_alloc_len(be32(&d.cdb[10..14])))
}

fn exec_get_lba_status<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(get_lba_status(c))
}

/// Provisioning status codes of an LBA status descriptor.
const MAPPED: u8 = 0;
const DEALLOCATED: u8 = 1;

async fn get_lba_status(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let start = be64(&c.cdb[2..10]);
    let alloc = be32(&c.cdb[10..14]) as usize;
    let want = (alloc.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let bs = lu.block_size() as u64;
    let end = lu.num_blocks();
    // One trip to the backstore (one worker thread hop where it blocks).
    let descs = on_backstore(&lu.config.backstore, move |b: &dyn Backstore| {
        lba_status(b, bs, start, end, want)
    })
    .await?
    .map_err(|e| io_sense(e, false))?;
    let mut d = Vec::with_capacity(8 + 16 * descs.len());
    d.extend_from_slice(&((4 + 16 * descs.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for (lba, n, code) in descs {
        d.extend_from_slice(&lba.to_be_bytes());
        d.extend_from_slice(&n.to_be_bytes());
        d.extend_from_slice(&[code, 0, 0, 0]);
    }
    Ok(d)
}

/// The LBA status descriptors (LBA, NUMBER OF LOGICAL BLOCKS, provisioning
/// status) of blocks `start..end`, at most `want` of them. Each describes a
/// whole extent, up to the 32-bit block count a descriptor holds (a longer
/// one continues in the next descriptor); the last one too, however many
/// pieces the backstore reports it in.
fn lba_status(
    b: &dyn Backstore,
    bs: u64,
    start: u64,
    end: u64,
    want: usize,
) -> Result<Vec<(u64, u32, u8)>, BackstoreError> {
    let mut descs: Vec<(u64, u32, u8)> = Vec::new();
    let mut pos = start;
    let mut queries = 0;
    while pos < end && queries < MAX_ALLOCATION_QUERIES {
        queries += 1;
        let span = (end - pos).min(u32::MAX as u64);
        let (state, run) = b.allocation(pos * bs, span * bs)?;
        let mut blocks = (run / bs).clamp(1, span);
        let code = match state {
            Allocation::Mapped => MAPPED,
            Allocation::Deallocated => DEALLOCATED,
        };
        pos += blocks;
        if let Some(last) = descs.last_mut().filter(|l| l.2 == code) {
            let more = blocks.min((u32::MAX - last.1) as u64);
            last.1 += more as u32;
            blocks -= more;
        }
        if blocks > 0 {
            if descs.len() == want {
                break;
            }
            // `blocks` <= `span` <= u32::MAX.
            descs.push((pos - blocks, blocks as u32, code));
        }
    }
    Ok(descs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rtgt_backstore::{Allocation, Backstore, RamDisk};

    use crate::lu::{LogicalUnit, LuConfig};
    use crate::testutil::*;

    fn unmap_cdb(len: u16) -> Vec<u8> {
        let mut c = vec![0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[7..9].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        p[0..2].copy_from_slice(&((6 + 16 * ranges.len()) as u16).to_be_bytes());
        p[2..4].copy_from_slice(&((16 * ranges.len()) as u16).to_be_bytes());
        for &(lba, n) in ranges {
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&n.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
        }
        p
    }

    fn ws10(flags: u8, lba: u32, n: u16) -> Vec<u8> {
        let mut c = vec![0x41, flags, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    }

    fn ws16(flags: u8, lba: u64, n: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x93;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&n.to_be_bytes());
        c
    }

    fn lba_status(lba: u64, alloc: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x12;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    fn write10(lba: u32, data: &[u8]) -> Vec<u8> {
        let mut c = vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&((data.len() / 512) as u16).to_be_bytes());
        c
    }

    fn read10(lba: u32, n: u16) -> Vec<u8> {
        let mut c = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    }

    /// (lba, blocks, status) of each GET LBA STATUS descriptor.
    fn descriptors(d: &[u8]) -> Vec<(u64, u32, u8)> {
        let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        assert_eq!(len + 4, d.len());
        d[8..]
            .chunks(16)
            .map(|x| {
                (
                    u64::from_be_bytes(x[0..8].try_into().unwrap()),
                    u32::from_be_bytes(x[8..12].try_into().unwrap()),
                    x[12] & 0x0f,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn unmap_deallocates_and_reads_zero() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        let data = vec![b'a'; 16 * 512];
        assert_eq!(t.run(&write10(0, &data), &data).await.status, 0);
        let p = unmap_list(&[(2, 3), (10, 1)]);
        assert_eq!(t.run(&unmap_cdb(p.len() as u16), &p).await.status, 0);
        let r = t.run(&read10(0, 16), &[]).await;
        for (i, blk) in r.data.chunks(512).enumerate() {
            let unmapped = (2..5).contains(&i) || i == 10;
            assert_eq!(blk.iter().all(|&b| b == 0), unmapped, "block {i}");
        }
        // GET LBA STATUS sees the holes.
        let r = t.run(&lba_status(0, 1024), &[]).await;
        let d = descriptors(&r.data);
        assert_eq!(d[0], (0, 2, 0));
        assert_eq!(d[1], (2, 3, 1));
        assert_eq!(d[2], (5, 5, 0));
        assert_eq!(d[3], (10, 1, 1));
        assert_eq!(d[4], (11, 5, 0));
        assert_eq!(d[5], (16, 1008, 1));
    }

    #[tokio::test]
    async fn unmap_parameter_list_rules() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        // Length 0: nothing to do; no descriptors: GOOD.
        assert_eq!(t.run(&unmap_cdb(0), &[]).await.status, 0);
        let p = unmap_list(&[]);
        assert_eq!(t.run(&unmap_cdb(8), &p).await.status, 0);
        // 1..7 bytes: PARAMETER LIST LENGTH ERROR.
        assert_eq!(t.check(&unmap_cdb(7)).await.code(), 0x1a00);
        // Zero blocks at the end of the medium is fine; one is not.
        let p = unmap_list(&[(1024, 0)]);
        assert_eq!(t.run(&unmap_cdb(p.len() as u16), &p).await.status, 0);
        let p = unmap_list(&[(1000, 25)]);
        let s = t.check_with(&unmap_cdb(p.len() as u16), &p).await;
        assert_eq!((s.key, s.code()), (5, 0x2100));
        let p = unmap_list(&[(u64::MAX, 2)]);
        assert_eq!(
            t.check_with(&unmap_cdb(p.len() as u16), &p).await.code(),
            0x2100
        );
        // Too many descriptors.
        let many: Vec<(u64, u32)> = (0..257).map(|i| (i, 1)).collect();
        let p = unmap_list(&many);
        let s = t.check_with(&unmap_cdb(p.len() as u16), &p).await;
        assert_eq!(s.code(), 0x2600);
        // ANCHOR is not supported.
        let mut c = unmap_cdb(24);
        c[1] = 1;
        let s = t.check_with(&c, &unmap_list(&[(0, 1)])).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
    }

    #[tokio::test]
    async fn unmap_needs_a_thin_lu() {
        let t = Fixture::new(64, 512).with_thin(false);
        t.clear_ua().await;
        let p = unmap_list(&[(0, 1)]);
        assert_eq!(
            t.check_with(&unmap_cdb(p.len() as u16), &p).await.code(),
            0x2000
        );
        // WRITE SAME with UNMAP is refused too, without UNMAP it works.
        let s = t.check_with(&ws10(0x08, 0, 1), &[0u8; 512]).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 1));
        assert_eq!(t.run(&ws10(0, 0, 1), &[0u8; 512]).await.status, 0);
    }

    #[tokio::test]
    async fn write_same_writes_every_block() {
        for blocking in [false, true] {
            let t = Fixture::build(4096, 512, 512, blocking);
            t.clear_ua().await;
            let block: Vec<u8> = (0..512).map(|i| i as u8).collect();
            assert_eq!(t.run(&ws10(0, 7, 300), &block).await.status, 0);
            let r = t.run(&read10(6, 302), &[]).await;
            assert!(r.data[..512].iter().all(|&b| b == 0));
            for blk in r.data[512..512 * 301].chunks(512) {
                assert_eq!(blk, &block[..]);
            }
            assert!(r.data[512 * 301..].iter().all(|&b| b == 0));
            // WRITE SAME (16) spanning more than one write chunk.
            assert_eq!(t.run(&ws16(0, 1000, 2100), &block).await.status, 0);
            let r = t.run(&read10(3099, 1), &[]).await;
            assert_eq!(r.data, block);
            // Zeroes.
            assert_eq!(t.run(&ws16(0, 1000, 2100), &[0u8; 512]).await.status, 0);
            let r = t.run(&read10(3099, 1), &[]).await;
            assert!(r.data.iter().all(|&b| b == 0));
        }
    }

    #[tokio::test]
    async fn a_medium_that_repeats_the_block_itself_does_it() {
        let t = Fixture::build(4096, 512, 512, true);
        t.clear_ua().await;
        t.store.set_native(true);
        let block: Vec<u8> = (0..512).map(|i| (i * 7) as u8).collect();
        assert_eq!(t.run(&ws16(0, 1000, 2100), &block).await.status, 0);
        assert_eq!(t.store.native_calls(), 1, "one call for the whole range");
        let r = t.run(&read10(999, 2102), &[]).await;
        assert!(r.data[..512].iter().all(|&b| b == 0));
        for blk in r.data[512..512 * 2101].chunks(512) {
            assert_eq!(blk, &block[..]);
        }
        assert!(r.data[512 * 2101..].iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn write_same_unmap_and_ndob() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        let data = vec![0xffu8; 8 * 512];
        assert_eq!(t.run(&write10(0, &data), &data).await.status, 0);
        // UNMAP=1 deallocates whatever the block holds.
        assert_eq!(t.run(&ws10(0x08, 0, 4), &[0xffu8; 512]).await.status, 0);
        let r = t.run(&read10(0, 8), &[]).await;
        assert!(r.data[..4 * 512].iter().all(|&b| b == 0));
        assert!(r.data[4 * 512..].iter().all(|&b| b == 0xff));
        let d = descriptors(&t.run(&lba_status(0, 64), &[]).await.data);
        assert_eq!(d[0], (0, 4, 1));
        assert_eq!(d[1], (4, 4, 0));
        // NDOB: no Data-Out, zeroes written (and with UNMAP, deallocated).
        let p = t
            .nexus
            .prepare(cmd(0, &ws16(0x09, 4, 2)))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(p.data_out_len(), 0);
        assert_eq!(done(p.execute(Vec::new()).await).status, 0);
        let p = t
            .nexus
            .prepare(cmd(0, &ws16(0x01, 6, 2)))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(p.data_out_len(), 0);
        assert_eq!(done(p.execute(Vec::new()).await).status, 0);
        let r = t.run(&read10(0, 8), &[]).await;
        assert!(r.data.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn write_same_limits_and_fields() {
        let t = Fixture::new(0x20000, 512);
        t.clear_ua().await;
        let blk = [0u8; 512];
        // Zero blocks: to the end of the medium, within the limit.
        let s = t.check_with(&ws10(0, 0, 0), &blk).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 7));
        let s = t.check_with(&ws10(0, 0x20000 - 0x10000, 0), &blk).await;
        assert_eq!(s.code(), 0x2400);
        let ones = [1u8; 512];
        assert_eq!(t.run(&ws10(0, 0x20000 - 0xffff, 0), &ones).await.status, 0);
        let r = t.run(&[0x28, 0, 0, 1, 0xff, 0xff, 0, 0, 1, 0], &[]).await;
        assert_eq!(r.data, ones.to_vec(), "the last block was written");
        assert_eq!(
            t.check_with(&ws10(0, 0x20000, 0), &blk).await.code(),
            0x2100
        );
        assert_eq!(
            t.check_with(&ws10(0, 0x20001, 0), &blk).await.code(),
            0x2100
        );
        assert_eq!(
            t.check_with(&ws16(0, u64::MAX, 0), &blk).await.code(),
            0x2100
        );
        // Beyond the end.
        assert_eq!(
            t.check_with(&ws10(0, 0x1ffff, 2), &blk).await.code(),
            0x2100
        );
        // Longer than MAXIMUM WRITE SAME LENGTH.
        let s = t.check_with(&ws16(0x08, 0, 0x10000), &blk).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 10));
        assert_eq!(t.run(&ws16(0x08, 0, 0xffff), &blk).await.status, 0);
        // ANCHOR and WRPROTECT are not supported.
        let s = t.check_with(&ws10(0x10, 0, 1), &blk).await;
        assert_eq!((s.field.unwrap().byte, s.field.unwrap().bit), (1, Some(4)));
        let s = t.check_with(&ws16(0x18, 0, 1), &blk).await;
        assert_eq!(s.code(), 0x2400);
        let s = t.check_with(&ws10(0x20, 0, 1), &blk).await;
        assert_eq!((s.field.unwrap().byte, s.field.unwrap().bit), (1, Some(5)));
        // An announced Data-Out other than one block.
        for len in [256, 1024] {
            let mut c = cmd(0, &ws10(0x08, 0, 1));
            c.expected_len = len;
            let r = match t.nexus.prepare(c) {
                Err(r) => r,
                Ok(_) => panic!("a {len}-byte Data-Out must be refused"),
            };
            let s = crate::core::sense::Sense::decode(r.sense.as_ref().unwrap()).unwrap();
            assert_eq!(s.code(), 0x2400);
        }
        let mut c = cmd(0, &ws10(0x08, 0, 1));
        c.expected_len = 512;
        assert!(t.nexus.prepare(c).is_ok());
        // A short Data-Out at execution.
        let s = t.check_with(&ws10(0, 0, 1), &[0u8; 100]).await;
        assert_eq!(s.code(), 0x0e03);
    }

    #[tokio::test]
    async fn write_protected_lu_refuses_thin_commands() {
        let t = Fixture::read_only(64, 512);
        t.clear_ua().await;
        let p = unmap_list(&[(0, 1)]);
        assert_eq!(t.check_with(&unmap_cdb(p.len() as u16), &p).await.key, 7);
        assert_eq!(t.check_with(&ws10(0, 0, 1), &[0u8; 512]).await.key, 7);
        assert_eq!(t.check_with(&ws16(0, 0, 1), &[0u8; 512]).await.key, 7);
    }

    #[tokio::test]
    async fn get_lba_status_ranges_and_allocation_length() {
        let t = Fixture::new(1000, 512);
        t.clear_ua().await;
        assert_eq!(t.check(&lba_status(1000, 24)).await.code(), 0x2100);
        assert_eq!(t.check(&lba_status(u64::MAX, 24)).await.code(), 0x2100);
        assert_eq!(t.check(&lba_status(1 << 63, 24)).await.code(), 0x2100);
        // An empty LU: one deallocated run to the end.
        let r = t.run(&lba_status(999, 24), &[]).await;
        assert_eq!(descriptors(&r.data), vec![(999, 1, 1)]);
        // Allocation length truncates; the header still counts what we have.
        let data = vec![1u8; 512];
        assert_eq!(t.run(&write10(5, &data), &data).await.status, 0);
        let r = t.run(&lba_status(0, 24), &[]).await;
        assert_eq!(r.data.len(), 24);
        assert_eq!(&r.data[8..16], &0u64.to_be_bytes());
        assert_eq!(&r.data[16..20], &5u32.to_be_bytes());
        assert_eq!(r.data[20], 1);
        let r = t.run(&lba_status(5, 0x100), &[]).await;
        assert_eq!(descriptors(&r.data), vec![(5, 1, 0), (6, 994, 1)]);
    }

    /// A fixture whose LU 0 is on `store`.
    fn on(store: Arc<dyn Backstore>) -> Fixture {
        Fixture::with_lus(
            vec![LogicalUnit::new(LuConfig::new("t", store))],
            Arc::new(MemStore::new(1, 512, 512, false)),
        )
    }

    /// A RAM disk reporting its allocation in pieces of at most 4 KiB, as a
    /// file system with small extents might.
    struct Pieces(RamDisk);

    impl Backstore for Pieces {
        fn kind(&self) -> &'static str {
            "pieces"
        }
        fn capacity(&self) -> u64 {
            self.0.capacity()
        }
        fn block_size(&self) -> u32 {
            self.0.block_size()
        }
        fn may_block(&self) -> bool {
            false
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> rtgt_backstore::Result<()> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> rtgt_backstore::Result<()> {
            self.0.write_at(offset, buf, fua)
        }
        fn flush(&self) -> rtgt_backstore::Result<()> {
            Ok(())
        }
        fn supports_discard(&self) -> bool {
            true
        }
        fn discard_zeroes(&self) -> bool {
            true
        }
        fn discard(&self, offset: u64, len: u64) -> rtgt_backstore::Result<()> {
            self.0.discard(offset, len)
        }
        fn reports_allocation(&self) -> bool {
            true
        }
        fn allocation(&self, offset: u64, len: u64) -> rtgt_backstore::Result<(Allocation, u64)> {
            let (state, run) = self.0.allocation(offset, len)?;
            Ok((state, run.min(4096)))
        }
    }

    const CHUNK: u64 = (64 << 10) / 512;

    #[tokio::test]
    async fn get_lba_status_describes_whole_extents() {
        // 64 MiB of 64 KiB chunks: a long extent, then alternating chunks.
        let t = on(Arc::new(RamDisk::new(64 << 20, 512)));
        t.clear_ua().await;
        let data = vec![1u8; 64 << 10];
        for c in (3..40).chain((50..60).step_by(2)) {
            let r = t.run(&write10((c * CHUNK) as u32, &data), &data).await;
            assert_eq!(r.status, 0);
        }
        let mut want = vec![(0, 3 * CHUNK as u32, 1), (3 * CHUNK, 37 * CHUNK as u32, 0)];
        want.push((40 * CHUNK, 10 * CHUNK as u32, 1));
        for c in (50..60).step_by(2) {
            want.push((c * CHUNK, CHUNK as u32, 0));
            want.push(((c + 1) * CHUNK, CHUNK as u32, 1));
        }
        want.last_mut().unwrap().1 = (1024 - 59) * CHUNK as u32;
        let r = t.run(&lba_status(0, 8 + 16 * 100), &[]).await;
        assert_eq!(descriptors(&r.data), want);
        // Starting inside an extent; the allocation length bounds the
        // count, not the extents.
        let r = t.run(&lba_status(3 * CHUNK + 5, 8 + 16 * 2), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![
                (3 * CHUNK + 5, 37 * CHUNK as u32 - 5, 0),
                (40 * CHUNK, 10 * CHUNK as u32, 1)
            ]
        );
        // The last block.
        let r = t.run(&lba_status(1024 * CHUNK - 1, 24), &[]).await;
        assert_eq!(descriptors(&r.data), vec![(1024 * CHUNK - 1, 1, 1)]);
    }

    #[tokio::test]
    async fn get_lba_status_joins_the_pieces_of_an_extent() {
        let t = on(Arc::new(Pieces(RamDisk::new(64 << 20, 512))));
        t.clear_ua().await;
        let data = vec![1u8; 64 << 10];
        for c in 0..20 {
            let r = t.run(&write10((c * CHUNK) as u32, &data), &data).await;
            assert_eq!(r.status, 0);
        }
        // One descriptor asked for: the whole extent, not its first piece.
        let r = t.run(&lba_status(100, 24), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![(100, 20 * CHUNK as u32 - 100, 0)]
        );
        let r = t.run(&lba_status(0, 40), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![
                (0, 20 * CHUNK as u32, 0),
                (20 * CHUNK, 1004 * CHUNK as u32, 1)
            ]
        );
    }

    #[tokio::test]
    async fn get_lba_status_splits_at_the_descriptor_limit() {
        // 4 TiB: 2^33 blocks, more than two descriptors can count.
        let blocks = 1u64 << 33;
        let max = u32::MAX as u64;
        let t = on(Arc::new(RamDisk::new(blocks * 512, 512)));
        t.clear_ua().await;
        let r = t.run(&lba_status(0, 8 + 16 * 8), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![(0, u32::MAX, 1), (max, u32::MAX, 1), (2 * max, 2, 1)]
        );
        // The allocation length cuts after the first two.
        let r = t.run(&lba_status(0, 8 + 16 * 2), &[]).await;
        assert_eq!(descriptors(&r.data).len(), 2);
        // A mapped chunk (4 MiB) at the end.
        let one = vec![1u8; 512];
        let mut w = vec![0u8; 16];
        w[0] = 0x8a;
        w[2..10].copy_from_slice(&(blocks - 1).to_be_bytes());
        w[13] = 1;
        assert_eq!(t.run(&w, &one).await.status, 0);
        let chunk = (4 << 20) / 512;
        let r = t.run(&lba_status(5, 8 + 16 * 8), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![
                (5, u32::MAX, 1),
                (max + 5, (blocks - chunk - max - 5) as u32, 1),
                (blocks - chunk, chunk as u32, 0),
            ]
        );
    }

    #[tokio::test]
    async fn get_lba_status_on_fileio_reports_whole_extents() {
        let dir = tempfile::tempdir().unwrap();
        let file = rtgt_backstore::FileIo::open(rtgt_backstore::FileIoOptions {
            size: Some(16 << 20),
            ..rtgt_backstore::FileIoOptions::new(dir.path().join("lun.img"))
        })
        .unwrap();
        let t = on(Arc::new(file));
        t.clear_ua().await;
        // 2 MiB written in 32 pieces, 1 MiB at 8 MiB.
        let data = vec![1u8; 64 << 10];
        for lba in (0..4096).step_by(128).chain((16384..18432).step_by(128)) {
            assert_eq!(t.run(&write10(lba, &data), &data).await.status, 0);
        }
        let r = t.run(&lba_status(0, 8 + 16 * 64), &[]).await;
        assert_eq!(
            descriptors(&r.data),
            vec![
                (0, 4096, 0),
                (4096, 12288, 1),
                (16384, 2048, 0),
                (18432, 32768 - 18432, 1)
            ]
        );
        let r = t.run(&lba_status(1000, 24), &[]).await;
        assert_eq!(descriptors(&r.data), vec![(1000, 3096, 0)]);
    }

    /// Not a test: GET LBA STATUS over RAM LUs, timed. Run with
    /// `cargo test --release -p rtgt-scsi get_lba_status_timing -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn get_lba_status_timing() {
        use std::time::{Duration, Instant};
        const GIB: u64 = 1 << 30;
        for (what, size, every) in [
            ("1 GiB, alternating chunks", GIB, 2u64),
            ("1 GiB, 4 chunks", GIB, 4096),
            ("1 TiB, 4 chunks", GIB << 10, 1 << 18),
        ] {
            let blocks = size / 512;
            let ram = Arc::new(RamDisk::new(size, 512));
            let chunk_blocks = u64::from(ram.discard_granularity()) / 512;
            let t = on(ram);
            t.clear_ua().await;
            let one = vec![1u8; 512];
            let mut c = 0;
            while c * chunk_blocks < blocks {
                let r = t.run(&write10((c * chunk_blocks) as u32, &one), &one).await;
                assert_eq!(r.status, 0);
                c += every;
            }
            for descs in [64u32, 1024] {
                let alloc = 8 + 16 * descs;
                // One command from LBA 0 (median of 1000).
                let mut one = vec![Duration::ZERO; 1000];
                let mut n_first = 0;
                for d in one.iter_mut() {
                    let s = Instant::now();
                    let r = t.run(&lba_status(0, alloc), &[]).await;
                    *d = s.elapsed();
                    n_first = descriptors(&r.data).len();
                }
                one.sort();
                // The whole LU, command after command (best of 5).
                let mut best = Duration::MAX;
                let (mut cmds, mut total) = (0, 0);
                for _ in 0..5 {
                    let s = Instant::now();
                    let (mut lba, mut n, mut d_all) = (0u64, 0, 0);
                    while lba < blocks {
                        let r = t.run(&lba_status(lba, alloc), &[]).await;
                        let d = descriptors(&r.data);
                        n += 1;
                        d_all += d.len();
                        let last = d[d.len() - 1];
                        lba = last.0 + last.1 as u64;
                    }
                    best = best.min(s.elapsed());
                    (cmds, total) = (n, d_all);
                }
                println!(
                    "GET LBA STATUS, RAM LU of {what}, allocation length for {descs}: \
                     one command {:?} ({n_first} descriptors); whole LU {best:?} in {cmds} \
                     commands, {total} descriptors",
                    one[500]
                );
            }
        }
    }
}
