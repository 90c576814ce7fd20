//! Copy offload (SPC-4 6.4, 6.18, 7.8.17): EXTENDED COPY (LID1) with
//! block-to-block segment descriptors (02h) between copy targets named by
//! identification descriptors (E4h), RECEIVE COPY RESULTS (COPY STATUS and
//! OPERATING PARAMETERS), and the third-party copy VPD page (8Fh).
//!
//! A CSCD may name any logical unit this process serves, through the NAA
//! designator of its device identification page: every [`LogicalUnit`]
//! enters a process-wide registry when it is created and leaves it when it
//! is dropped. The copy runs inside the target, in chunks, each chunk's
//! destination range held with a shared range lock like any write.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use rtgt_backstore::Backstore;

use crate::cdb::{be16, be32, be64};
use crate::lu::LogicalUnit;
use crate::opcodes::{Action, BoxFuture, Decode, ExecCtx, Plan};
use crate::read_write::{io_sense, on_backstore};
use crate::sense::{self, key, Sense};

/// MAXIMUM CSCD DESCRIPTOR COUNT.
pub const MAX_CSCD_DESCRIPTORS: u16 = 16;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// MAXIMUM DESCRIPTOR LIST LENGTH: room for the most of both.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 =
    MAX_CSCD_DESCRIPTORS as u32 * CSCD_LEN as u32 + MAX_SEGMENT_DESCRIPTORS as u32 * 28;
/// MAXIMUM SEGMENT LENGTH in bytes (a block-to-block segment carries at
/// most 65535 blocks).
pub const MAX_SEGMENT_BYTES: u32 = 0xffff * 4096;
/// Held copy results kept per logical unit.
const MAX_HELD: usize = 256;
/// A segment is copied through buffers of this size.
const COPY_CHUNK: u64 = 1 << 20;

const CSCD_LEN: usize = 32;
const HEADER_LEN: usize = 16;
/// Descriptor type codes.
const BLOCK_TO_BLOCK: u8 = 0x02;
const IDENTIFICATION: u8 = 0xe4;

// Sense data of the copy manager.
const TOO_MANY_CSCDS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x06);
const UNSUPPORTED_CSCD_TYPE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x07);
const TOO_MANY_SEGMENTS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x08);
const UNSUPPORTED_SEGMENT_TYPE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x09);
const COPY_ABORTED: u8 = 0x0a;
const TARGET_NOT_REACHABLE: Sense = Sense::new(COPY_ABORTED, 0x0d, 0x02);
const INCORRECT_TARGET_TYPE: Sense = Sense::new(COPY_ABORTED, 0x0d, 0x03);
/// A segment outside its copy target's capacity, or an I/O failure.
const SEGMENT_FAILED: Sense = Sense::new(COPY_ABORTED, 0x00, 0x00);

// ------------------------------------------------------------- registry

/// Every live logical unit with its NAA identifier.
static REGISTRY: Mutex<Vec<(u64, Weak<LogicalUnit>)>> = Mutex::new(Vec::new());

/// Enter a new LU into the registry (from [`LogicalUnit::new`]).
pub(crate) fn register(lu: &Arc<LogicalUnit>) {
    let mut r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    r.retain(|(_, w)| w.strong_count() > 0);
    r.push((lu.config.naa, Arc::downgrade(lu)));
}

/// Drop the entries of LUs that are gone (from `LogicalUnit`'s `Drop`).
pub(crate) fn unregister(naa: u64) {
    let mut r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    r.retain(|(n, w)| *n != naa || w.strong_count() > 0);
}

/// The LU with NAA identifier `naa`; `own` (the LU the command came to)
/// wins when several LUs share one.
fn lookup(naa: u64, own: &LogicalUnit) -> Option<Arc<LogicalUnit>> {
    let r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let live = || {
        r.iter()
            .filter(|(n, _)| *n == naa)
            .filter_map(|(_, w)| w.upgrade())
    };
    live()
        .find(|lu| std::ptr::eq(lu.as_ref(), own))
        .or_else(|| live().next())
}

// ----------------------------------------------------- held copy status

#[derive(Debug, Clone, Copy)]
struct Held {
    nexus: u64,
    list_id: u8,
    /// COPY MANAGER STATUS: 00h done, 01h done with errors.
    status: u8,
    segments: u16,
    bytes: u64,
}

/// Results of EXTENDED COPY commands with a list identifier, per I_T
/// nexus, for RECEIVE COPY RESULTS; forgotten when the nexus goes.
#[derive(Default)]
pub(crate) struct CopyResults {
    held: Mutex<Vec<Held>>,
}

impl CopyResults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, h: Held) {
        let mut v = self.lock();
        v.retain(|x| !(x.nexus == h.nexus && x.list_id == h.list_id));
        if v.len() >= MAX_HELD {
            v.remove(0);
        }
        v.push(h);
    }

    fn get(&self, nexus: u64, list_id: u8) -> Option<Held> {
        self.lock()
            .iter()
            .find(|x| x.nexus == nexus && x.list_id == list_id)
            .copied()
    }

    /// The nexus is gone: so is what was held for it.
    pub(crate) fn forget_nexus(&self, nexus: u64) {
        self.lock().retain(|x| x.nexus != nexus);
    }
}

// -------------------------------------------------------- EXTENDED COPY

pub(crate) fn decode_extended_copy(d: &Decode<'_>) -> Result<Plan, Sense> {
    let len = be32(&d.cdb[10..14]);
    if len == 0 {
        return Ok(Plan::good());
    }
    if len > HEADER_LEN as u32 + MAX_DESCRIPTOR_LIST_LENGTH {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    Ok(Plan::action(Action::Async(exec_extended_copy)).with_data_out(len))
}

fn exec_extended_copy<'a>(c: &'a ExecCtx<'a>) -> BoxFuture<'a> {
    Box::pin(extended_copy(c))
}

/// One block-to-block segment, resolved.
struct Segment {
    src: usize,
    dst: usize,
    src_lba: u64,
    dst_lba: u64,
    bytes: u64,
}

/// A parsed parameter list.
struct CopyList {
    list_id: u8,
    /// LIST ID USAGE 00b or 10b: the list identifier names the copy.
    hold: bool,
    targets: Vec<Arc<LogicalUnit>>,
    segments: Vec<Segment>,
}

fn parse(lu: &LogicalUnit, p: &[u8]) -> Result<CopyList, Sense> {
    if p.len() < HEADER_LEN {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let usage = (p[1] >> 3) & 0x03;
    if usage == 0b01 || (usage == 0b11 && p[0] != 0) {
        return Err(Sense::invalid_param_field(1, Some(4)));
    }
    let tdl = be16(&p[2..4]) as usize;
    let sdl = be32(&p[8..12]) as usize;
    let inline = be32(&p[12..16]) as usize;
    if HEADER_LEN + tdl + sdl + inline > p.len() {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if tdl + sdl > MAX_DESCRIPTOR_LIST_LENGTH as usize {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if inline != 0 {
        return Err(Sense::invalid_param_field(12, None));
    }
    if !tdl.is_multiple_of(CSCD_LEN) {
        return Err(Sense::invalid_param_field(2, None));
    }
    if tdl / CSCD_LEN > MAX_CSCD_DESCRIPTORS as usize {
        return Err(TOO_MANY_CSCDS);
    }

    // CSCD descriptors.
    let mut targets = Vec::new();
    for d in p[HEADER_LEN..HEADER_LEN + tdl].chunks(CSCD_LEN) {
        if d[0] != IDENTIFICATION {
            return Err(UNSUPPORTED_CSCD_TYPE);
        }
        // LU ID TYPE is ignored for identification descriptors (SPC-4).
        if d[1] & 0x1f != 0 {
            // Only block devices.
            return Err(INCORRECT_TARGET_TYPE);
        }
        if d[1] & 0x20 != 0 {
            // NUL: a null logical unit cannot be read or written.
            return Err(TARGET_NOT_REACHABLE);
        }
        let (ty, len) = (d[5] & 0x0f, d[7] as usize);
        if ty != 0x3 || len != 8 {
            return Err(TARGET_NOT_REACHABLE);
        }
        let naa = be64(&d[8..16]);
        let target = lookup(naa, lu).ok_or(TARGET_NOT_REACHABLE)?;
        let block_len = be32(&[0, d[29], d[30], d[31]]);
        if block_len != 0 && block_len != target.block_size() {
            return Err(INCORRECT_TARGET_TYPE);
        }
        targets.push(target);
    }

    // Segment descriptors: count first, then check each.
    let list = &p[HEADER_LEN + tdl..HEADER_LEN + tdl + sdl];
    let mut spans = Vec::new();
    let mut off = 0;
    while off < list.len() {
        if off + 4 > list.len() {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let end = off + 4 + be16(&list[off + 2..off + 4]) as usize;
        if end > list.len() {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        spans.push((off, end));
        off = end;
    }
    if spans.len() > MAX_SEGMENT_DESCRIPTORS as usize {
        return Err(TOO_MANY_SEGMENTS);
    }
    let mut segments = Vec::new();
    for (off, end) in spans {
        let d = &list[off..end];
        let at = HEADER_LEN + tdl + off;
        if d[0] != BLOCK_TO_BLOCK {
            return Err(UNSUPPORTED_SEGMENT_TYPE);
        }
        if d.len() != 28 {
            return Err(Sense::invalid_param_field(at + 2, None));
        }
        let (src, dst) = (be16(&d[4..6]) as usize, be16(&d[6..8]) as usize);
        let (Some(s), Some(t)) = (targets.get(src), targets.get(dst)) else {
            return Err(TARGET_NOT_REACHABLE);
        };
        let blocks = be16(&d[10..12]) as u64;
        // DC: the count is in destination blocks, else in source blocks.
        let unit = if d[1] & 0x02 != 0 {
            t.block_size()
        } else {
            s.block_size()
        } as u64;
        let bytes = blocks * unit;
        let (src_lba, dst_lba) = (be64(&d[12..20]), be64(&d[20..28]));
        let fits = |lu: &LogicalUnit, lba: u64| {
            let bs = lu.block_size() as u64;
            bytes.is_multiple_of(bs)
                && lba
                    .checked_add(bytes / bs)
                    .is_some_and(|e| e <= lu.num_blocks())
        };
        if !fits(s, src_lba) || !fits(t, dst_lba) {
            return Err(SEGMENT_FAILED);
        }
        segments.push(Segment {
            src,
            dst,
            src_lba,
            dst_lba,
            bytes,
        });
    }
    Ok(CopyList {
        list_id: p[0],
        hold: usage != 0b11,
        targets,
        segments,
    })
}

/// Copy one segment, in chunks; backwards when it overlaps itself on one
/// LU with the destination after the source.
async fn copy_segment(src: &LogicalUnit, dst: &LogicalUnit, s: &Segment) -> Result<(), Sense> {
    let (sbs, dbs) = (src.block_size() as u64, dst.block_size() as u64);
    let (from, to) = (s.src_lba * sbs, s.dst_lba * dbs);
    let chunk = COPY_CHUNK - COPY_CHUNK % (sbs.max(dbs));
    let n = s.bytes.div_ceil(chunk);
    let backwards = std::ptr::eq(src, dst) && to > from && to < from + s.bytes;
    for k in 0..n {
        let i = if backwards { n - 1 - k } else { k };
        let at = i * chunk;
        let len = chunk.min(s.bytes - at);
        let _range = dst.ranges.shared((to + at) / dbs, len / dbs).await;
        let buf = on_backstore(&src.config.backstore, move |b: &dyn Backstore| {
            let mut buf = vec![0u8; len as usize];
            b.read_at(from + at, &mut buf).map(|_| buf)
        })
        .await?
        .map_err(|e| io_sense(e, false))?;
        on_backstore(&dst.config.backstore, move |b: &dyn Backstore| {
            b.write_at(to + at, &buf, false)
        })
        .await?
        .map_err(|e| io_sense(e, true))?;
    }
    Ok(())
}

async fn extended_copy(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let list = parse(lu, c.data_out)?;
    // Every destination must be writable for this initiator.
    for s in &list.segments {
        let dst = &list.targets[s.dst];
        let mapped_ro = c
            .nexus
            .luns()
            .luns
            .values()
            .any(|m| Arc::ptr_eq(&m.lu, dst) && m.read_only)
            || (std::ptr::eq(dst.as_ref(), lu) && c.read_only);
        if let Some(s) = dst.write_protect(mapped_ro) {
            return Err(s);
        }
    }
    let mut done = Held {
        nexus: c.nexus.id(),
        list_id: list.list_id,
        status: 0,
        segments: 0,
        bytes: 0,
    };
    let mut result = Ok(Vec::new());
    for s in &list.segments {
        let (src, dst) = (&list.targets[s.src], &list.targets[s.dst]);
        if let Err(e) = copy_segment(src, dst, s).await {
            done.status = 0x01;
            // I/O errors of a copy are reported as COPY ABORTED.
            result = Err(Sense {
                key: COPY_ABORTED,
                ..e
            });
            break;
        }
        done.segments += 1;
        done.bytes += s.bytes;
    }
    if list.hold {
        lu.copies.put(done);
    }
    result
}

// ------------------------------------------------- RECEIVE COPY RESULTS

const COPY_STATUS: u8 = 0x00;
const OPERATING_PARAMETERS: u8 = 0x03;

pub(crate) fn decode_receive_copy_results(d: &Decode<'_>) -> Result<Plan, Sense> {
    let f: crate::opcodes::EmulateFn = match d.cdb[1] & 0x1f {
        COPY_STATUS => copy_status,
        _ => operating_parameters,
    };
    Ok(Plan::emulate(f).with_alloc_len(be32(&d.cdb[10..14])))
}

fn copy_status(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let Some(h) = lu.copies.get(c.nexus.id(), c.cdb[2]) else {
        return Err(Sense::invalid_cdb_field(2, None));
    };
    // TRANSFER COUNT in bytes, or in the smallest binary unit that fits.
    let (mut units, mut count) = (0u8, h.bytes);
    while count > u32::MAX as u64 {
        units = if units == 0 { 0xf1 } else { units + 1 };
        count >>= 10;
    }
    let mut d = vec![0u8; 12];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    d[4] = h.status;
    d[5..7].copy_from_slice(&h.segments.to_be_bytes());
    d[7] = units;
    d[8..12].copy_from_slice(&(count as u32).to_be_bytes());
    Ok(d)
}

/// The descriptor type codes implemented.
const IMPLEMENTED: [u8; 2] = [BLOCK_TO_BLOCK, IDENTIFICATION];

fn operating_parameters(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let mut d = vec![0u8; 44];
    d.extend_from_slice(&IMPLEMENTED);
    let avail = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d[4] = 0x01; // SNLID: copies without a list identifier are supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    // No inline or held data, no stream devices.
    d[34..36].copy_from_slice(&1u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
    d[36] = 1; // MAXIMUM CONCURRENT COPIES
    d[37] = lu.block_size().trailing_zeros() as u8; // DATA SEGMENT GRANULARITY
    d[43] = IMPLEMENTED.len() as u8;
    Ok(d)
}

// --------------------------------------------------------- VPD page 8Fh

/// Append one third-party copy descriptor, padded to a multiple of four.
fn tpc_descriptor(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    let len = body.len().next_multiple_of(4);
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + len - body.len(), 0);
}

/// The body of the third-party copy VPD page (after its 4-byte header).
pub(crate) fn vpd_page(lu: &LogicalUnit) -> Vec<u8> {
    let mut d = Vec::with_capacity(128);
    // Supported Commands: EXTENDED COPY (LID1), RECEIVE COPY RESULTS.
    let cmds: [u8; 7] = [0x83, 1, 0x00, 0x84, 2, COPY_STATUS, OPERATING_PARAMETERS];
    let mut body = vec![cmds.len() as u8];
    body.extend_from_slice(&cmds);
    tpc_descriptor(&mut d, 0x0001, &body);
    // Parameter Data.
    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    tpc_descriptor(&mut d, 0x0004, &body);
    // Supported Descriptors.
    let mut body = vec![IMPLEMENTED.len() as u8];
    body.extend_from_slice(&IMPLEMENTED);
    tpc_descriptor(&mut d, 0x0008, &body);
    // Supported CSCD Descriptor IDs: none beyond the descriptors.
    tpc_descriptor(&mut d, 0x000c, &[0, 0]);
    // General Copy Operations.
    let mut body = vec![0u8; 32];
    body[0..4].copy_from_slice(&1u32.to_be_bytes()); // TOTAL CONCURRENT COPIES
    body[4..8].copy_from_slice(&1u32.to_be_bytes()); // MAXIMUM IDENTIFIED CONCURRENT COPIES
    body[8..12].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    body[12] = lu.block_size().trailing_zeros() as u8; // DATA SEGMENT GRANULARITY
    tpc_descriptor(&mut d, 0x8001, &body);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lu::LuConfig;
    use crate::testutil::*;

    fn xcopy_cdb(len: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x83;
        c[10..14].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn rcr_cdb(sa: u8, list_id: u8) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x84;
        c[1] = sa;
        c[2] = list_id;
        c[10..14].copy_from_slice(&1024u32.to_be_bytes());
        c
    }

    fn cscd(naa: u64, flags: u8) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[1] = flags;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 8;
        d[8..16].copy_from_slice(&naa.to_be_bytes());
        d[29..32].copy_from_slice(&[0, 2, 0]);
        d
    }

    fn b2b(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&24u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
    }

    fn list(list_id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let t: Vec<u8> = cscds.concat();
        let s: Vec<u8> = segs.concat();
        let mut p = vec![0u8; 16];
        p[0] = list_id;
        p[1] = usage << 3;
        p[2..4].copy_from_slice(&(t.len() as u16).to_be_bytes());
        p[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
        p.extend_from_slice(&t);
        p.extend_from_slice(&s);
        p
    }

    fn rw16(op: u8, lba: u64, n: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = op;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&n.to_be_bytes());
        c
    }

    async fn xcopy(t: &Fixture, p: &[u8]) -> crate::fabric::Response {
        t.run(&xcopy_cdb(p.len() as u32), p).await
    }

    #[tokio::test]
    async fn copies_within_one_lu_and_reports_status() {
        let t = Fixture::new(8192, 512);
        t.clear_ua().await;
        let naa = t.lu.config.naa;
        let data: Vec<u8> = (0..2048 * 512).map(|i| (i / 512) as u8).collect();
        assert_eq!(t.run(&rw16(0x8a, 0, 2048), &data).await.status, 0);
        // No copy with list id 1 yet.
        let s = t.check(&rcr_cdb(0, 1)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 2));
        let p = list(1, 0, &[cscd(naa, 0)], &[b2b(0, 0, 2048, 0, 8192 - 2048)]);
        assert_eq!(xcopy(&t, &p).await.status, 0);
        let r = t.run(&rw16(0x88, 8192 - 2048, 2048), &[]).await;
        assert_eq!(r.data, data);
        // COPY STATUS: done, one segment, 1 MiB.
        let r = t.run(&rcr_cdb(0, 1), &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(&r.data[0..4], &8u32.to_be_bytes());
        assert_eq!(r.data[4], 0);
        assert_eq!(&r.data[5..7], &1u16.to_be_bytes());
        assert_eq!(r.data[7], 0);
        assert_eq!(&r.data[8..12], &(1u32 << 20).to_be_bytes());
        // Another nexus does not see it; a closed nexus forgets it.
        let o = t.other_nexus();
        o.clear_ua().await;
        assert_eq!(o.check(&rcr_cdb(0, 1)).await.code(), 0x2400);
        t.nexus.close();
        assert!(t.lu.copies.get(t.nexus.id(), 1).is_none());
    }

    #[tokio::test]
    async fn overlapping_copy_on_one_lu_moves_data_correctly() {
        let t = Fixture::new(8192, 512);
        t.clear_ua().await;
        let naa = t.lu.config.naa;
        let data: Vec<u8> = (0..4096 * 512)
            .map(|i| (i / 512) as u8 ^ (i as u8))
            .collect();
        assert_eq!(t.run(&rw16(0x8a, 0, 4096), &data).await.status, 0);
        // Move 4096 blocks up by 100: overlapping, needs a backwards copy.
        let p = list(0, 3, &[cscd(naa, 0)], &[b2b(0, 0, 4096, 0, 100)]);
        assert_eq!(xcopy(&t, &p).await.status, 0);
        let r = t.run(&rw16(0x88, 100, 4096), &[]).await;
        assert!(r.data == data, "overlapping copy corrupted the data");
    }

    #[tokio::test]
    async fn copies_between_lus_named_by_naa() {
        let a = Arc::new(MemStore::new(1024, 512, 512, false));
        let b = Arc::new(MemStore::new(1024, 512, 512, false));
        let lu_a = LogicalUnit::new(LuConfig::new("xcopy-src", a.clone()));
        let lu_b = LogicalUnit::new(LuConfig::new("xcopy-dst", b.clone()));
        // The destination is served but not mapped to this nexus.
        let t = Fixture::with_lus(vec![lu_a.clone()], a);
        t.clear_ua().await;
        let data = vec![0x5au8; 16 * 512];
        assert_eq!(t.run(&rw16(0x8a, 0, 16), &data).await.status, 0);
        let p = list(
            0,
            2,
            &[cscd(lu_a.config.naa, 0), cscd(lu_b.config.naa, 0)],
            &[b2b(0, 1, 16, 0, 1000)],
        );
        assert_eq!(xcopy(&t, &p).await.status, 0);
        let mut back = vec![0u8; 16 * 512];
        b.read_at(1000 * 512, &mut back).unwrap();
        assert_eq!(back, data);
        // Once the LU is gone, its NAA no longer resolves.
        let naa_b = lu_b.config.naa;
        drop(lu_b);
        let p = list(
            0,
            2,
            &[cscd(lu_a.config.naa, 0), cscd(naa_b, 0)],
            &[b2b(0, 1, 1, 0, 0)],
        );
        let s = t.check_with(&xcopy_cdb(p.len() as u32), &p).await;
        assert_eq!((s.key, s.asc, s.ascq), (0x0a, 0x0d, 0x02));
    }

    #[tokio::test]
    async fn parameter_list_errors() {
        let t = Fixture::new(8192, 512);
        t.clear_ua().await;
        let naa = t.lu.config.naa;
        let good = list(1, 0, &[cscd(naa, 0)], &[b2b(0, 0, 2048, 0, 6144)]);
        // Zero length: nothing happens.
        assert_eq!(t.run(&xcopy_cdb(0), &[]).await.status, 0);
        // Truncated CSCD or segment.
        for cut in [16 + 31, 16 + 32 + 27] {
            let s = t.check_with(&xcopy_cdb(cut as u32), &good[..cut]).await;
            assert_eq!(s.code(), 0x1a00);
        }
        // Too many CSCDs / segments / a list too long.
        let many: Vec<Vec<u8>> = (0..17).map(|_| cscd(naa, 0)).collect();
        let p = list(1, 0, &many, &[b2b(0, 0, 1, 0, 1)]);
        let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
        assert_eq!(s.code(), 0x2606);
        let segs: Vec<Vec<u8>> = (0..65).map(|_| b2b(0, 0, 1, 0, 1)).collect();
        let p = list(2, 0, &[cscd(naa, 0)], &segs);
        let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
        assert_eq!(s.code(), 0x2608);
        let p = list(3, 0, &many, &segs);
        let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
        assert_eq!(s.code(), 0x1a00);
        // Unsupported descriptor types.
        let mut fc = cscd(naa, 0);
        fc[0] = 0xe0;
        let p = list(1, 0, &[fc], &[b2b(0, 0, 1, 0, 1)]);
        let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
        assert_eq!(s.code(), 0x2607);
        let mut s2s = b2b(0, 0, 1, 0, 1);
        s2s[0] = 0x03;
        s2s[2..4].copy_from_slice(&16u16.to_be_bytes());
        s2s.truncate(20);
        let p = list(1, 0, &[cscd(naa, 0)], &[s2s]);
        let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
        assert_eq!(s.code(), 0x2609);
        // LU ID TYPE is ignored (SPC-4).
        let p = list(1, 0, &[cscd(naa, 0xc0)], &[b2b(0, 0, 1, 0, 1)]);
        assert_eq!(xcopy(&t, &p).await.status, 0);
        // NUL; bad CSCD index; beyond the end; unknown NAA.
        for p in [
            list(1, 0, &[cscd(naa, 0x20)], &[b2b(0, 0, 1, 0, 1)]),
            list(1, 0, &[cscd(naa, 0)], &[b2b(0, 1, 1, 0, 1)]),
            list(1, 0, &[cscd(naa, 0)], &[b2b(0, 0, 2048, 0, 8191)]),
            list(1, 0, &[cscd(0x5123, 0)], &[b2b(0, 0, 1, 0, 1)]),
        ] {
            let s = Sense::decode(xcopy(&t, &p).await.sense.as_ref().unwrap()).unwrap();
            assert_eq!(s.key, 0x0a, "COPY ABORTED");
            assert!(matches!(s.code(), 0x0000 | 0x0804 | 0x0d02), "{s:?}");
        }
        // Nothing was written by the refused copies.
        let r = t.run(&rw16(0x88, 8191, 1), &[]).await;
        assert!(r.data.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn read_only_destination_is_refused() {
        let t = Fixture::read_only(4096, 512);
        t.clear_ua().await;
        let p = list(0, 3, &[cscd(t.lu.config.naa, 0)], &[b2b(0, 0, 1, 0, 1)]);
        let s = t.check_with(&xcopy_cdb(p.len() as u32), &p).await;
        assert_eq!((s.key, s.code()), (7, 0x2700));
    }

    #[tokio::test]
    async fn operating_parameters_and_vpd() {
        let t = Fixture::new(4096, 512);
        t.clear_ua().await;
        let r = t.run(&rcr_cdb(3, 0), &[]).await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(
            u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize,
            d.len() - 4
        );
        assert!(d.len() >= 44);
        assert_eq!(u16::from_be_bytes([d[8], d[9]]), MAX_CSCD_DESCRIPTORS);
        assert_eq!(u16::from_be_bytes([d[10], d[11]]), MAX_SEGMENT_DESCRIPTORS);
        assert_eq!(
            u32::from_be_bytes(d[12..16].try_into().unwrap()),
            MAX_DESCRIPTOR_LIST_LENGTH
        );
        assert_eq!(d[37], 9);
        assert_eq!(d[43], 2);
        assert_eq!(&d[44..46], &[0x02, 0xe4]);
        // Unknown service actions.
        assert_eq!(t.check(&rcr_cdb(0x05, 0)).await.field.unwrap().byte, 1);

        // 8Fh: every descriptor padded, the supported commands listed.
        let p = vpd_page(&t.lu);
        let mut i = 0;
        let mut types = Vec::new();
        while i < p.len() {
            let ty = u16::from_be_bytes([p[i], p[i + 1]]);
            let len = u16::from_be_bytes([p[i + 2], p[i + 3]]) as usize;
            assert_eq!(len % 4, 0, "descriptor {ty:04x} padded");
            if ty == 0x0001 {
                assert_eq!(&p[i + 4..i + 12], &[7, 0x83, 1, 0, 0x84, 2, 0, 3]);
            }
            if ty == 0x0004 {
                assert_eq!(len, 0x1c);
            }
            if ty == 0x8001 {
                assert_eq!(len, 0x20);
            }
            types.push(ty);
            i += 4 + len;
        }
        assert_eq!(i, p.len());
        assert_eq!(types, vec![0x0001, 0x0004, 0x0008, 0x000c, 0x8001]);
    }
}
