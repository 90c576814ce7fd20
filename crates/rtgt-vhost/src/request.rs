//! One request of a request queue, end to end: the descriptor chain the
//! guest made (device-readable header and data-out, then device-writable
//! response header and data-in) into a core [`Command`] on the controller's
//! nexus, and the core's [`Response`] back into guest memory.
//!
//! Guest memory is never trusted. A chain with a descriptor outside the
//! memory table, lengths that overflow, or a response buffer too short for
//! the response header is completed with nothing written (used length 0);
//! a request header too short or malformed gets the virtio-scsi response
//! code the spec has for it; everything else is the core's to judge, as
//! over iSCSI (LUN map, access, reservations, ALUA).

use std::io::{Read, Write};
use std::ops::Deref;
use std::sync::Arc;

use rtgt_backstore::IoBuf;
use rtgt_scsi::api::{
    Cdb, Command, DataDirection, ExecOutcome, Nexus, Prepared, Response, TaskAttr,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::bitmap::{BitmapSlice, WithBitmapSlice};
use vm_memory::GuestMemory;

use crate::wire::{response, CmdReq, CmdResp, VirtioLun, CMD_REQ_LEN, CMD_RESP_LEN};

/// The target ID the controller answers for: one target per controller,
/// as QEMU's and SPDK's vhost-user-scsi have it (the device's config says
/// max_target 0).
pub const TARGET_ID: u8 = 0;

/// Serve one request chain on `nexus`; returns the used length (bytes
/// written into the chain's device-writable part).
///
/// Guest memory is only touched before and after the command runs (views
/// of it are raw pointers, not to be held across an await): the data-out
/// is read first, the data-in and the response written at the end.
pub async fn serve<M, T>(mem: &M, chain: DescriptorChain<T>, nexus: &Arc<Nexus>) -> u32
where
    M: GuestMemory,
    for<'a> <M as GuestMemory>::Bitmap: WithBitmapSlice<'a>,
    T: Deref + Clone,
    T::Target: GuestMemory + Sized,
{
    let (r, shape) = match begin(mem, chain.clone(), nexus) {
        Begin::Done(used) => return used,
        Begin::Answer(r, shape) => (r, shape),
        Begin::Execute(p, buf, shape) => match p.execute(buf).await {
            ExecOutcome::Done(r) => (r, shape),
            ExecOutcome::Aborted => {
                return answer(mem, chain, |resp, _| {
                    finish(resp, CmdResp::with_response(response::ABORTED), 0)
                })
            }
        },
    };
    answer(mem, chain, |resp, data_in| respond(r, shape, resp, data_in))
}

/// The buffers a request brought (their lengths) and the direction.
#[derive(Clone, Copy)]
struct Shape {
    dir: DataDirection,
    out_len: usize,
    in_len: usize,
}

enum Begin {
    /// Answered already: the used length.
    Done(u32),
    /// The core answered without running it (UA, ALUA, no such LUN, …).
    Answer(Response, Shape),
    /// To run, with its data-out.
    Execute(Prepared, IoBuf, Shape),
}

fn begin<M, T>(mem: &M, chain: DescriptorChain<T>, nexus: &Arc<Nexus>) -> Begin
where
    M: GuestMemory,
    for<'a> <M as GuestMemory>::Bitmap: WithBitmapSlice<'a>,
    T: Deref + Clone,
    T::Target: GuestMemory + Sized,
{
    let fail = |code| {
        Begin::Done(answer(mem, chain.clone(), |resp, _| {
            finish(resp, CmdResp::with_response(code), 0)
        }))
    };
    // Nowhere to put the response header: nothing can be said.
    let in_len = match split_writer(mem, chain.clone()) {
        Some((_, data_in)) => data_in.available_bytes(),
        None => return Begin::Done(0),
    };
    let Ok(mut reader) = Reader::new(mem, chain.clone()) else {
        return fail(response::FAILURE);
    };
    let mut header = [0u8; CMD_REQ_LEN];
    if reader.available_bytes() < CMD_REQ_LEN || reader.read_exact(&mut header).is_err() {
        return fail(response::FAILURE);
    }
    let Ok(req) = CmdReq::parse(&header) else {
        return fail(response::FAILURE);
    };
    let lun = match VirtioLun::parse(&req.lun) {
        Ok(l) if l.target == TARGET_ID => u64::from(l.lun),
        _ => return fail(response::BAD_TARGET),
    };
    let out_len = reader.available_bytes();
    let dir = match (out_len > 0, in_len > 0) {
        (false, false) => DataDirection::None,
        (true, false) => DataDirection::Write,
        (false, true) => DataDirection::Read,
        (true, true) => DataDirection::Bidirectional,
    };
    let shape = Shape {
        dir,
        out_len,
        in_len,
    };
    tracing::trace!(lun, cdb = ?&req.cdb[..req.cdb_len()], out_len, in_len, "vhost-user-scsi request");
    let attr = match req.task_attr {
        1 => TaskAttr::Ordered,
        2 => TaskAttr::HeadOfQueue,
        3 => TaskAttr::Aca,
        _ => TaskAttr::Simple,
    };
    let expected = if out_len > 0 { out_len } else { in_len };
    let cmd = Command {
        lun,
        cdb: Cdb::from(&req.cdb[..req.cdb_len()]),
        tag: req.tag,
        attr,
        expected_len: u32::try_from(expected).unwrap_or(u32::MAX),
        dir,
    };
    match nexus.prepare(cmd) {
        Err(r) => Begin::Answer(r, shape),
        Ok(p) => {
            // The data-out the command takes (never more than the guest gave).
            let want = (p.data_out_len() as usize).min(out_len);
            let mut buf = IoBuf::with_len(want);
            if reader.read_exact(&mut buf).is_err() {
                return fail(response::FAILURE);
            }
            Begin::Execute(p, buf, shape)
        }
    }
}

/// A writer over guest memory `M` for as long as `'a`.
type GuestWriter<'a, M> = Writer<'a, <<M as GuestMemory>::Bitmap as WithBitmapSlice<'a>>::S>;

/// The response header's buffer and the data-in after it.
fn split_writer<'a, M, T>(
    mem: &'a M,
    chain: DescriptorChain<T>,
) -> Option<(GuestWriter<'a, M>, GuestWriter<'a, M>)>
where
    M: GuestMemory,
    for<'b> <M as GuestMemory>::Bitmap: WithBitmapSlice<'b>,
    T: Deref,
    T::Target: GuestMemory + Sized,
{
    let mut resp = Writer::new(mem, chain).ok()?;
    if resp.available_bytes() < CMD_RESP_LEN {
        return None;
    }
    let data_in = resp.split_at(CMD_RESP_LEN).ok()?;
    Some((resp, data_in))
}

/// Write into the chain's response (and data-in) buffers with `f`.
fn answer<M, T>(
    mem: &M,
    chain: DescriptorChain<T>,
    f: impl for<'a> FnOnce(
        Writer<'a, <M::Bitmap as WithBitmapSlice<'a>>::S>,
        &mut Writer<'a, <M::Bitmap as WithBitmapSlice<'a>>::S>,
    ) -> u32,
) -> u32
where
    M: GuestMemory,
    for<'a> <M as GuestMemory>::Bitmap: WithBitmapSlice<'a>,
    T: Deref,
    T::Target: GuestMemory + Sized,
{
    match split_writer(mem, chain) {
        Some((resp, mut data_in)) => f(resp, &mut data_in),
        None => 0,
    }
}

/// The core's answer into the data-in buffer and the response header.
fn respond<B: BitmapSlice>(
    r: Response,
    shape: Shape,
    resp: Writer<'_, B>,
    data_in: &mut Writer<'_, B>,
) -> u32 {
    let n = r.data.len().min(shape.in_len);
    if n > 0 && data_in.write_all(&r.data[..n]).is_err() {
        return finish(resp, CmdResp::with_response(response::FAILURE), 0);
    }
    // The residual is of the buffer the direction used: what the guest
    // offered and the command did not fill (a write that the core ended
    // with an error has, from the guest's view, transferred nothing).
    let resid = match shape.dir {
        DataDirection::Read | DataDirection::Bidirectional => shape.in_len - n,
        DataDirection::Write if r.status != 0 => shape.out_len,
        _ => 0,
    };
    let sense = r.sense.as_deref().unwrap_or(&[]);
    tracing::trace!(status = r.status, data = n, resid, sense = ?&sense[..sense.len().min(14)], "vhost-user-scsi response");
    let header = CmdResp::scsi(r.status, sense, u32::try_from(resid).unwrap_or(u32::MAX));
    finish(resp, header, n)
}

fn finish<B: BitmapSlice>(mut resp: Writer<'_, B>, header: CmdResp, data: usize) -> u32 {
    if resp.write_all(&header.encode()).is_err() {
        return 0;
    }
    u32::try_from(CMD_RESP_LEN + data).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CmdResp, SENSE_SIZE};
    use rtgt_scsi::fuzz_entry::{block_on, nexus_for, ram_lu, INITIATOR_A, INITIATOR_B};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    const WRITE: u16 = 2; // VRING_DESC_F_WRITE
    const MEM: usize = 0x10_0000;
    const REQ: u64 = 0x1_0000;
    const RESP: u64 = 0x2_0000;
    const DATA: u64 = 0x3_0000;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap()
    }

    fn header(lun: u16, target: u8, cdb: &[u8]) -> [u8; CMD_REQ_LEN] {
        let mut c = [0; crate::wire::CDB_SIZE];
        c[..cdb.len()].copy_from_slice(cdb);
        CmdReq {
            lun: VirtioLun { target, lun }.encode(),
            tag: 1,
            task_attr: 0,
            prio: 0,
            crn: 0,
            cdb: c,
        }
        .encode()
    }

    /// Put the request header at REQ and run a chain of `descs` (addr,
    /// len, writable); returns (used length, response header, the bytes at DATA).
    fn run_chain(
        mem: &GuestMemoryMmap,
        nexus: &Arc<Nexus>,
        req: &[u8],
        descs: &[(u64, u32, bool)],
    ) -> (u32, Option<CmdResp>, Vec<u8>) {
        mem.write_slice(req, GuestAddress(REQ)).unwrap();
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .map(|&(a, l, w)| {
                RawDescriptor::from(Descriptor::new(a, l, if w { WRITE } else { 0 }, 0))
            })
            .collect();
        let q = MockSplitQueue::new(mem, 16);
        let chain = q.build_desc_chain(&raw).unwrap();
        let used = block_on(serve(mem, chain, nexus));
        let mut h = [0u8; CMD_RESP_LEN];
        mem.read_slice(&mut h, GuestAddress(RESP)).unwrap();
        let mut d = vec![0u8; 4096];
        mem.read_slice(&mut d, GuestAddress(DATA)).unwrap();
        (used, (used > 0).then(|| CmdResp::parse(&h).unwrap()), d)
    }

    /// A new nexus starts with POWER ON OCCURRED (06/29/00) pending: take it.
    fn clear_ua(mem: &GuestMemoryMmap, n: &Arc<Nexus>) {
        let (_, r, _) = run_chain(mem, n, &header(0, 0, &[0; 6]), &standard(0));
        let r = r.unwrap();
        assert_eq!(
            (r.status, r.sense[2] & 0xf, r.sense[12]),
            (2, 6, 0x29),
            "the power-on unit attention"
        );
    }

    fn standard(len: u32) -> Vec<(u64, u32, bool)> {
        vec![
            (REQ, CMD_REQ_LEN as u32, false),
            (RESP, CMD_RESP_LEN as u32, true),
            (DATA, len, true),
        ]
    }

    #[test]
    fn inquiry_through_the_core_with_its_residual() {
        let mem = memory();
        let lu = ram_lu(1 << 20, 512);
        let n = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        let (used, r, d) = run_chain(
            &mem,
            &n,
            &header(0, 0, &[0x12, 0, 0, 0, 255, 0]),
            &standard(255),
        );
        let r = r.unwrap();
        assert_eq!((r.response, r.status), (response::OK, 0));
        let n = 5 + d[4] as usize; // standard INQUIRY: additional length + 5
        assert_eq!(used as usize, CMD_RESP_LEN + n);
        assert_eq!(r.resid as usize, 255 - n);
        assert_eq!(d[0], 0, "a disk");
    }

    #[test]
    fn write_then_read_across_split_descriptors() {
        let mem = memory();
        let lu = ram_lu(1 << 20, 512);
        let n = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        clear_ua(&mem, &n);
        let block: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        // data-out in two descriptors of 300 and 724 bytes, after the header
        mem.write_slice(&block[..300], GuestAddress(0x4_0000))
            .unwrap();
        mem.write_slice(&block[300..], GuestAddress(0x5_0000))
            .unwrap();
        let write10 = [0x2a, 0, 0, 0, 0, 4, 0, 0, 2, 0];
        let (used, r, _) = run_chain(
            &mem,
            &n,
            &header(0, 0, &write10),
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (0x4_0000, 300, false),
                (0x5_0000, 724, false),
                (RESP, CMD_RESP_LEN as u32, true),
            ],
        );
        let r = r.unwrap();
        assert_eq!((used as usize, r.status, r.resid), (CMD_RESP_LEN, 0, 0));
        let read10 = [0x28, 0, 0, 0, 0, 4, 0, 0, 2, 0];
        let (used, r, d) = run_chain(&mem, &n, &header(0, 0, &read10), &standard(1024));
        assert_eq!((used as usize, r.unwrap().status), (CMD_RESP_LEN + 1024, 0));
        assert_eq!(&d[..1024], &block[..]);
    }

    #[test]
    fn hostile_chains_are_answered_or_dropped_never_followed() {
        let mem = memory();
        let lu = ram_lu(1 << 20, 512);
        let n = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        let tur = header(0, 0, &[0, 0, 0, 0, 0, 0]);
        // a response buffer too short for the header: nothing written
        let (used, _, _) = run_chain(
            &mem,
            &n,
            &tur,
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (RESP, CMD_RESP_LEN as u32 - 1, true),
            ],
        );
        assert_eq!(used, 0);
        // a data-in descriptor past the end of guest memory: nothing written
        let (used, _, _) = run_chain(
            &mem,
            &n,
            &tur,
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (RESP, CMD_RESP_LEN as u32, true),
                (MEM as u64 - 16, 4096, true),
            ],
        );
        assert_eq!(used, 0);
        // a request header cut short: FAILURE
        let (used, r, _) = run_chain(
            &mem,
            &n,
            &tur,
            &[(REQ, 10, false), (RESP, CMD_RESP_LEN as u32, true)],
        );
        assert_eq!(
            (used as usize, r.unwrap().response),
            (CMD_RESP_LEN, response::FAILURE)
        );
        // a data-out descriptor outside memory: FAILURE, the LU untouched
        let (_, r, _) = run_chain(
            &mem,
            &n,
            &header(0, 0, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (u64::MAX - 100, 512, false),
                (RESP, CMD_RESP_LEN as u32, true),
            ],
        );
        assert_eq!(r.unwrap().response, response::FAILURE);
        // another target, and a LUN field the spec does not have
        let (_, r, _) = run_chain(&mem, &n, &header(0, 1, &[0; 6]), &standard(0));
        assert_eq!(r.unwrap().response, response::BAD_TARGET);
        let mut bad = tur;
        bad[0] = 2;
        let (_, r, _) = run_chain(&mem, &n, &bad, &standard(0));
        assert_eq!(r.unwrap().response, response::BAD_TARGET);
    }

    #[test]
    fn the_core_judges_luns_and_reservations_as_over_iscsi() {
        let mem = memory();
        let lu = ram_lu(1 << 20, 512);
        let vm = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        clear_ua(&mem, &vm);
        // an unmapped LUN: CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED
        let (_, r, _) = run_chain(&mem, &vm, &header(3, 0, &[0; 6]), &standard(0));
        let r = r.unwrap();
        assert_eq!((r.response, r.status), (response::OK, 2));
        assert!(r.sense_len as usize <= SENSE_SIZE);
        assert_eq!((r.sense[2] & 0xf, r.sense[12], r.sense[13]), (5, 0x25, 0));
        // another initiator (say over iSCSI) registers and reserves the LU
        // (Write Exclusive): the VM's write is a reservation conflict
        let other = nexus_for(INITIATOR_B, &[(0, &lu, false)]);
        let prout = |sa: u8, ty: u8, key: u64, sark: u64| {
            let mut p = [0u8; 24];
            p[..8].copy_from_slice(&key.to_be_bytes());
            p[8..16].copy_from_slice(&sark.to_be_bytes());
            let cmd = Command {
                lun: 0,
                cdb: Cdb::from([0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0]),
                tag: 9,
                attr: TaskAttr::Simple,
                expected_len: 24,
                dir: DataDirection::Write,
            };
            let p2 = match other.prepare(cmd) {
                Ok(p2) => p2,
                Err(r) => return r.status,
            };
            match block_on(p2.execute(IoBuf::copy_from(&p))) {
                ExecOutcome::Done(r) => r.status,
                ExecOutcome::Aborted => 0xff,
            }
        };
        assert_eq!(
            prout(0, 0, 0, 0xabc),
            2,
            "its first command: the power-on unit attention"
        );
        assert_eq!(prout(0, 0, 0, 0xabc), 0);
        assert_eq!(prout(1, 1, 0xabc, 0), 0);
        mem.write_slice(&[0u8; 512], GuestAddress(0x4_0000))
            .unwrap();
        let (_, r, _) = run_chain(
            &mem,
            &vm,
            &header(0, 0, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (0x4_0000, 512, false),
                (RESP, CMD_RESP_LEN as u32, true),
            ],
        );
        let r = r.unwrap();
        assert_eq!((r.response, r.status, r.resid), (response::OK, 0x18, 512));
    }
}
