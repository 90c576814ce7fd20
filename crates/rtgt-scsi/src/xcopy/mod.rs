//! Copy offload (SPC-4 6.4, 6.18, 7.8.17): EXTENDED COPY (LID1) with
//! block-to-block segment descriptors (02h) between copy targets named by
//! identification descriptors (E4h), RECEIVE COPY RESULTS (COPY STATUS and
//! OPERATING PARAMETERS), and the third-party copy VPD page (8Fh).
//!
//! A CSCD names a logical unit through the NAA designator of its device
//! identification page, and only the LUs the issuing nexus has mapped can
//! be named: the designator is looked up in that nexus' LUN map, never in
//! the process at large. The copy runs inside the target, in chunks, each chunk's
//! destination range held with a shared range lock like any write.

mod copy;
mod params;
mod results;

pub(crate) use copy::decode_extended_copy;
pub(crate) use results::{decode_receive_copy_results, CopyResults};
use results::{COPY_STATUS, IMPLEMENTED, OPERATING_PARAMETERS};

use crate::core::sense::{key, Sense};
use crate::lu::LogicalUnit;

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
    use rtgt_backstore::Backstore;
    use std::sync::Arc;

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

    fn cscd(naa: crate::lu::Naa, flags: u8) -> Vec<u8> {
        let id = naa.as_bytes();
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[1] = flags;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = id.len() as u8;
        d[8..8 + id.len()].copy_from_slice(id);
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

    async fn xcopy(t: &Fixture, p: &[u8]) -> crate::api::Response {
        t.run(&xcopy_cdb(p.len() as u32), p).await
    }

    /// An LU with a 16-byte NAA 6 (as migrated from LIO) is named by it.
    #[tokio::test]
    async fn a_sixteen_byte_naa_names_the_lu() {
        let naa: crate::lu::Naa = "6001405a1b2c3d4e5f60718293a4b5c6".parse().unwrap();
        let t = Fixture::with_config(4096, 512, |c| c.naa = naa);
        t.clear_ua().await;
        let data = vec![0x5au8; 8 * 512];
        assert_eq!(t.run(&rw16(0x8a, 0, 8), &data).await.status, 0);
        let p = list(0, 3, &[cscd(naa, 0)], &[b2b(0, 0, 8, 0, 100)]);
        assert_eq!(xcopy(&t, &p).await.status, 0);
        assert_eq!(t.run(&rw16(0x88, 100, 8), &[]).await.data, data);
        // Another designator of that length names no LU of this nexus.
        let other: crate::lu::Naa = "6001405a1b2c3d4e5f60718293a4b5c7".parse().unwrap();
        let p = list(0, 3, &[cscd(other, 0)], &[b2b(0, 0, 8, 0, 100)]);
        assert_ne!(xcopy(&t, &p).await.status, 0);
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

    /// A nexus mapping `a` read-write as LUN 0 and, when given, `b` as LUN
    /// 1 (read-only if `b_ro`).
    fn nexus_with(
        a: &Arc<LogicalUnit>,
        store: Arc<MemStore>,
        b: Option<(&Arc<LogicalUnit>, bool)>,
    ) -> Fixture {
        let t = Fixture::with_lus(vec![a.clone()], store);
        if let Some((b, ro)) = b {
            let mut map = (*t.nexus.luns()).clone();
            map.luns.insert(
                1,
                crate::api::MappedLun {
                    lu: b.clone(),
                    read_only: ro,
                },
            );
            t.nexus.set_luns(Arc::new(map));
        }
        t
    }

    #[tokio::test]
    async fn copies_only_between_lus_the_nexus_maps() {
        let a = Arc::new(MemStore::new(1024, 512, 512, false));
        let b = Arc::new(MemStore::new(1024, 512, 512, false));
        let lu_a = LogicalUnit::new(LuConfig::new("xcopy-src", a.clone()));
        let lu_b = LogicalUnit::new(LuConfig::new("xcopy-dst", b.clone()));
        let (naa_a, naa_b) = (lu_a.config.naa, lu_b.config.naa);
        let data = vec![0x5au8; 16 * 512];
        let secret = vec![0xc3u8; 16 * 512];
        b.write_at(0, &secret, false).unwrap();
        let to_b = list(
            0,
            2,
            &[cscd(naa_a, 0), cscd(naa_b, 0)],
            &[b2b(0, 1, 16, 0, 1000)],
        );
        let from_b = list(
            0,
            2,
            &[cscd(naa_a, 0), cscd(naa_b, 0)],
            &[b2b(1, 0, 16, 0, 500)],
        );
        let unreachable =
            |s: Sense| assert_eq!((s.key, s.asc, s.ascq), (0x0a, 0x0d, 0x02), "{s:?}");

        // B is served by the process but not mapped to this nexus: its
        // (leaked or guessed) designator reaches nothing, either way.
        let t = nexus_with(&lu_a, a.clone(), None);
        t.clear_ua().await;
        assert_eq!(t.run(&rw16(0x8a, 0, 16), &data).await.status, 0);
        unreachable(t.check_with(&xcopy_cdb(to_b.len() as u32), &to_b).await);
        let mut back = vec![0u8; 16 * 512];
        b.read_at(1000 * 512, &mut back).unwrap();
        assert_eq!(back, vec![0u8; 16 * 512], "an unmapped LU was written");
        unreachable(t.check_with(&xcopy_cdb(from_b.len() as u32), &from_b).await);
        let r = t.run(&rw16(0x88, 500, 16), &[]).await;
        assert_eq!(r.data, vec![0u8; 16 * 512], "an unmapped LU was read");

        // Mapped read-only, B is a copy source but not a destination.
        let t = nexus_with(&lu_a, a.clone(), Some((&lu_b, true)));
        t.clear_ua().await;
        let s = t.check_with(&xcopy_cdb(to_b.len() as u32), &to_b).await;
        assert_eq!((s.key, s.asc), (0x07, 0x27), "DATA PROTECT: {s:?}");
        b.read_at(1000 * 512, &mut back).unwrap();
        assert_eq!(back, vec![0u8; 16 * 512]);
        assert_eq!(xcopy(&t, &from_b).await.status, 0);
        assert_eq!(t.run(&rw16(0x88, 500, 16), &[]).await.data, secret);

        // Mapped read-write: copies go both ways.
        let t = nexus_with(&lu_a, a.clone(), Some((&lu_b, false)));
        t.clear_ua().await;
        assert_eq!(xcopy(&t, &to_b).await.status, 0);
        b.read_at(1000 * 512, &mut back).unwrap();
        assert_eq!(back, data);

        // Once the LU is unmapped again, its NAA no longer resolves.
        t.nexus.set_luns(t.luns.clone());
        t.clear_ua().await;
        unreachable(t.check_with(&xcopy_cdb(to_b.len() as u32), &to_b).await);
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
            list(
                1,
                0,
                &[cscd(crate::lu::Naa::from_u64(0x5123_0000_0000_0000), 0)],
                &[b2b(0, 0, 1, 0, 1)],
            ),
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
