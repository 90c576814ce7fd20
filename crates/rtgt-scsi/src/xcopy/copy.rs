//! EXTENDED COPY: decoding the CDB and running the copy, segment by
//! segment, in chunks.

use std::sync::Arc;

use rtgt_backstore::Backstore;

use super::params::{parse, Segment};
use super::results::Held;
use super::{COPY_ABORTED, COPY_CHUNK, HEADER_LEN, MAX_DESCRIPTOR_LIST_LENGTH};
use crate::core::cdb::be32;
use crate::core::handler::{Action, BoxFuture, Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};
use crate::lu::LogicalUnit;
use crate::sbc::read_write::{io_sense, on_backstore, on_backstore_write};

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
        on_backstore_write(&dst.config.backstore, move |b: &dyn Backstore| {
            b.write_at(to + at, &buf, false)
        })
        .await?
        .map_err(|e| io_sense(e, true))?;
    }
    Ok(())
}

async fn extended_copy(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.expect("mapped");
    let map = c.nexus.luns();
    let list = parse(lu, &map, c.data_out)?;
    // Every destination must be writable for this initiator: an LU mapped
    // read-only (under any of its numbers) is a copy source only.
    for s in &list.segments {
        let dst = &list.targets[s.dst];
        let mapped_ro = map
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
