//! Parsing the EXTENDED COPY (LID1) parameter list: the CSCD descriptors
//! (identification, E4h) and the block-to-block segment descriptors (02h).

use std::sync::Arc;

use super::{
    BLOCK_TO_BLOCK, CSCD_LEN, HEADER_LEN, IDENTIFICATION, INCORRECT_TARGET_TYPE,
    MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS, SEGMENT_FAILED,
    TARGET_NOT_REACHABLE, TOO_MANY_CSCDS, TOO_MANY_SEGMENTS, UNSUPPORTED_CSCD_TYPE,
    UNSUPPORTED_SEGMENT_TYPE,
};
use crate::api::LunMap;
use crate::core::cdb::{be16, be32, be64};
use crate::core::sense::{self, Sense};
use crate::lu::{LogicalUnit, Naa};

/// One block-to-block segment, resolved.
pub(super) struct Segment {
    pub(super) src: usize,
    pub(super) dst: usize,
    pub(super) src_lba: u64,
    pub(super) dst_lba: u64,
    pub(super) bytes: u64,
}

/// A parsed parameter list.
pub(super) struct CopyList {
    pub(super) list_id: u8,
    /// LIST ID USAGE 00b or 10b: the list identifier names the copy.
    pub(super) hold: bool,
    pub(super) targets: Vec<Arc<LogicalUnit>>,
    pub(super) segments: Vec<Segment>,
}

/// The LU with NAA identifier `naa` among those the issuing nexus maps
/// (`own`, the LU the command came to, wins when several share one). An
/// LU the initiator has not mapped is unreachable whatever its designator:
/// a guessed or leaked NAA must not open a path around the LUN map (LIO's
/// CVE-2020-28374).
fn lookup(naa: Naa, own: &LogicalUnit, map: &LunMap) -> Option<Arc<LogicalUnit>> {
    let lus = map.distinct_lus();
    let named = || lus.iter().filter(|lu| lu.config.naa == naa);
    named()
        .find(|lu| std::ptr::eq(Arc::as_ptr(lu), own))
        .or_else(|| named().next())
        .map(|lu| Arc::clone(lu))
}

pub(super) fn parse(lu: &LogicalUnit, map: &LunMap, p: &[u8]) -> Result<CopyList, Sense> {
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
        // The designator: NAA (8 or 16 bytes) is what our LUs report.
        let (ty, len) = (d[5] & 0x0f, d[7] as usize);
        let naa = match (ty, d.get(8..8 + len.min(20))) {
            (0x3, Some(b)) => Naa::from_bytes(b),
            _ => None,
        }
        .ok_or(TARGET_NOT_REACHABLE)?;
        let target = lookup(naa, lu, map).ok_or(TARGET_NOT_REACHABLE)?;
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
