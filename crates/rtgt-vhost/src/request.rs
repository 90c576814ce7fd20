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
//!
//! Zero copy: a READ's data goes from the medium straight into the guest's
//! data-in buffer, and a WRITE's straight out of its data-out buffer, when
//! that buffer is contiguous in this process's mapping of guest memory (one
//! descriptor, as Linux gives for a page, or neighbours the mapping makes
//! adjacent). The core gets the guest memory lent as a foreign
//! [`IoBuf`] that keeps the memory table's mapping alive; the chain is only
//! completed once every lent buffer is back (an aborted I/O the kernel
//! still holds included), so the guest never gets a buffer back that rtgt
//! can still write. Everything else (scattered buffers, parameter lists the
//! core parses, the small answers it builds) is copied.

use std::io::{Read, Write};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use rtgt_backstore::IoBuf;
use rtgt_scsi::api::{
    Cdb, Command, DataDirection, ExecOutcome, Nexus, Prepared, Response, TaskAttr,
};
use tokio::sync::oneshot;
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::bitmap::{BitmapSlice, WithBitmapSlice};
use vm_memory::{GuestAddress, GuestMemory, Permissions};

use crate::wire::{response, CmdReq, CmdResp, VirtioLun, CMD_REQ_LEN, CMD_RESP_LEN};

/// The target ID the controller answers for: one target per controller,
/// as QEMU's and SPDK's vhost-user-scsi have it (the device's config says
/// max_target 0).
pub const TARGET_ID: u8 = 0;

/// Serve one request chain on `nexus`; returns the used length (bytes
/// written into the chain's device-writable part).
///
/// Guest memory is read and written through `vm-memory`'s checked views
/// before and after the command runs, and lent to the core for the data of
/// READ and WRITE (see the module documentation).
pub async fn serve<M, T>(mem: &Arc<M>, chain: DescriptorChain<T>, nexus: &Arc<Nexus>) -> u32
where
    M: GuestMemory + Send + Sync + 'static,
    for<'a> <M as GuestMemory>::Bitmap: WithBitmapSlice<'a>,
    T: Deref + Clone,
    T::Target: GuestMemory + Sized,
{
    let mem_ref: &M = mem;
    let (r, shape, direct) = match begin(mem, chain.clone(), nexus) {
        Begin::Done(used) => return used,
        Begin::Answer(r, shape) => (r, shape, None),
        Begin::Execute(p, out, data_in, mut lent) => {
            // Where the lent data-in starts (an address, to compare).
            let lent_in = data_in.as_ref().map(|b| b.as_ptr() as usize);
            let outcome = match data_in {
                Some(d) => p.execute_into(out.buf, d).await,
                None => p.execute(out.buf).await,
            };
            let (r, direct) = match outcome {
                ExecOutcome::Done(mut r) => {
                    // The data is in the guest's buffer already when the
                    // core answered with the buffer it was lent.
                    let direct = (lent_in == Some(r.data.as_ptr() as usize))
                        .then(|| std::mem::take(&mut r.data).len());
                    (Some(r), direct)
                }
                ExecOutcome::Aborted => (None, None),
            };
            lent.returned().await;
            match r {
                Some(r) => (r, out.shape, direct),
                None => {
                    return answer(mem_ref, chain, |resp, _| {
                        finish(resp, CmdResp::with_response(response::ABORTED), 0)
                    })
                }
            }
        }
    };
    answer(mem_ref, chain, |resp, data_in| {
        respond(r, shape, direct, resp, data_in)
    })
}

/// Guest memory lent to the core for one request. Every lent buffer's
/// owner is the same guard, which keeps the mapping alive and holds the
/// sender of a oneshot; when the last buffer is dropped (by the core, or by
/// io_uring on an aborted I/O's completion) the receiver wakes, and the
/// memory is the guest's again.
struct Lent<M> {
    mem: Arc<M>,
    guard: Option<Arc<LentGuard<M>>>,
    back: Option<oneshot::Receiver<()>>,
}

struct LentGuard<M> {
    _mem: Arc<M>,
    _back: oneshot::Sender<()>,
}

impl<M: Send + Sync + 'static> Lent<M> {
    fn new(mem: &Arc<M>) -> Self {
        Lent {
            mem: mem.clone(),
            guard: None,
            back: None,
        }
    }

    /// Lend `len` bytes at `ptr`, which lie in `self.mem`'s mapping.
    ///
    /// # Safety
    /// `ptr..ptr+len` is inside a region of `self.mem` (so mapped while it
    /// lives) and not lent twice.
    unsafe fn lend(&mut self, ptr: NonNull<u8>, len: usize) -> IoBuf {
        let guard = match &self.guard {
            Some(g) => g.clone(),
            None => {
                let (tx, rx) = oneshot::channel();
                self.back = Some(rx);
                let g = Arc::new(LentGuard {
                    _mem: self.mem.clone(),
                    _back: tx,
                });
                self.guard = Some(g.clone());
                g
            }
        };
        // SAFETY: mapped while the guard (holding the memory table's
        // mapping) lives; lent once, as the caller promises; rtgt never
        // holds a reference into guest memory otherwise (vm-memory's views
        // are volatile raw accesses).
        unsafe { IoBuf::foreign(ptr, len, guard) }
    }

    /// Wait until every lent buffer is dropped.
    async fn returned(&mut self) {
        self.guard = None;
        if let Some(rx) = self.back.take() {
            // An error once the guard, and with it the sender, is gone.
            let _ = rx.await;
        }
    }
}

/// The host address of `len` bytes of the chain's device-readable
/// (`writable` false) or device-writable part, from byte `skip` of it on,
/// if they are contiguous in this process's memory; `None` where they are
/// scattered, or not all in guest memory.
fn contiguous<M, T>(
    mem: &M,
    chain: DescriptorChain<T>,
    writable: bool,
    mut skip: usize,
    len: usize,
) -> Option<NonNull<u8>>
where
    M: GuestMemory,
    T: Deref,
    T::Target: GuestMemory + Sized,
{
    if len == 0 {
        return None;
    }
    let descs = if writable {
        chain.writable()
    } else {
        chain.readable()
    };
    let mut start: Option<*mut u8> = None;
    let mut have = 0usize;
    for d in descs {
        let mut addr = d.addr().0;
        let mut dlen = d.len() as usize;
        if skip > 0 {
            let s = skip.min(dlen);
            addr = addr.checked_add(s as u64)?;
            dlen -= s;
            skip -= s;
        }
        if dlen == 0 {
            continue;
        }
        let take = dlen.min(len - have);
        let access = if writable {
            Permissions::Write
        } else {
            Permissions::Read
        };
        // One slice for the whole piece: it lies in one region, so it is
        // contiguous in the mapping.
        let first = mem
            .get_slices(GuestAddress(addr), take, access)
            .ok()?
            .next()?
            .ok()?;
        if first.len() != take {
            return None;
        }
        let p = first.ptr_guard_mut().as_ptr();
        match start {
            None => start = Some(p),
            Some(s) if s.wrapping_add(have) == p => {}
            Some(_) => return None,
        }
        have += take;
        if have == len {
            return NonNull::new(start?);
        }
    }
    None
}

/// The buffers a request brought (their lengths) and the direction.
#[derive(Clone, Copy)]
struct Shape {
    dir: DataDirection,
    out_len: usize,
    in_len: usize,
}

enum Begin<M> {
    /// Answered already: the used length.
    Done(u32),
    /// The core answered without running it (UA, ALUA, no such LUN, …).
    Answer(Response, Shape),
    /// To run, with its data-out, maybe a lent data-in, and what was lent.
    Execute(Prepared, DataOut, Option<IoBuf>, Lent<M>),
}

struct DataOut {
    buf: IoBuf,
    shape: Shape,
}

fn begin<M, T>(mem: &Arc<M>, chain: DescriptorChain<T>, nexus: &Arc<Nexus>) -> Begin<M>
where
    M: GuestMemory + Send + Sync + 'static,
    for<'a> <M as GuestMemory>::Bitmap: WithBitmapSlice<'a>,
    T: Deref + Clone,
    T::Target: GuestMemory + Sized,
{
    let mem_arc = mem;
    let mem: &M = mem;
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
            let mut lent = Lent::new(mem_arc);
            // The data-out the command takes (never more than the guest
            // gave): lent where it goes to the medium as it is.
            let want = (p.data_out_len() as usize).min(out_len);
            let direct_out = p
                .data_out_to_medium()
                .then(|| contiguous(mem, chain.clone(), false, CMD_REQ_LEN, want))
                .flatten();
            let buf = match direct_out {
                // SAFETY: inside guest memory (`contiguous` took it from
                // the memory table), and the only buffer lent from it.
                Some(ptr) => unsafe { lent.lend(ptr, want) },
                None => {
                    let mut buf = IoBuf::with_len(want);
                    if reader.read_exact(&mut buf).is_err() {
                        return fail(response::FAILURE);
                    }
                    buf
                }
            };
            let n = p.data_in_from_medium();
            let data_in = (n > 0 && n <= in_len)
                .then(|| contiguous(mem, chain.clone(), true, CMD_RESP_LEN, n))
                .flatten()
                // SAFETY: as above; data-in and data-out are distinct
                // descriptors (device-writable and device-readable).
                .map(|ptr| unsafe { lent.lend(ptr, n) });
            Begin::Execute(p, DataOut { buf, shape }, data_in, lent)
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
/// `direct`: the data went into the guest's buffer already (its length).
fn respond<B: BitmapSlice>(
    r: Response,
    shape: Shape,
    direct: Option<usize>,
    resp: Writer<'_, B>,
    data_in: &mut Writer<'_, B>,
) -> u32 {
    let n = match direct {
        Some(n) => n.min(shape.in_len),
        None => {
            let n = r.data.len().min(shape.in_len);
            if n > 0 && data_in.write_all(&r.data[..n]).is_err() {
                return finish(resp, CmdResp::with_response(response::FAILURE), 0);
            }
            n
        }
    };
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
    use rtgt_scsi::TmfFunction;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    const WRITE: u16 = 2; // VRING_DESC_F_WRITE
    const MEM: usize = 0x10_0000;
    const REQ: u64 = 0x1_0000;
    const RESP: u64 = 0x2_0000;
    const DATA: u64 = 0x3_0000;

    fn memory() -> Arc<GuestMemoryMmap> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap())
    }

    fn header(lun: u16, target: u8, cdb: &[u8]) -> [u8; CMD_REQ_LEN] {
        CmdReq::simple(VirtioLun { target, lun }, 1, cdb).encode()
    }

    /// Descriptors (addr, len, writable) as the mock queue takes them.
    fn raw(descs: &[(u64, u32, bool)]) -> Vec<RawDescriptor> {
        descs
            .iter()
            .map(|&(a, l, w)| {
                RawDescriptor::from(Descriptor::new(a, l, if w { WRITE } else { 0 }, 0))
            })
            .collect()
    }

    /// Put the request header at REQ and run a chain of `descs` (addr,
    /// len, writable); returns (used length, response header, the bytes at DATA).
    fn run_chain(
        mem: &Arc<GuestMemoryMmap>,
        nexus: &Arc<Nexus>,
        req: &[u8],
        descs: &[(u64, u32, bool)],
    ) -> (u32, Option<CmdResp>, Vec<u8>) {
        mem.write_slice(req, GuestAddress(REQ)).unwrap();
        let q = MockSplitQueue::new(&**mem, 16);
        let chain = q.build_desc_chain(&raw(descs)).unwrap();
        let used = block_on(serve(mem, chain, nexus));
        let mut h = [0u8; CMD_RESP_LEN];
        mem.read_slice(&mut h, GuestAddress(RESP)).unwrap();
        let mut d = vec![0u8; 4096];
        mem.read_slice(&mut d, GuestAddress(DATA)).unwrap();
        (used, (used > 0).then(|| CmdResp::parse(&h).unwrap()), d)
    }

    /// A new nexus starts with POWER ON OCCURRED (06/29/00) pending: take it.
    fn clear_ua(mem: &Arc<GuestMemoryMmap>, n: &Arc<Nexus>) {
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

    /// A RAM disk that records where the buffers it is given lie, and can
    /// hold its reads until a gate opens (then it says it blocks, so the
    /// core runs it on a worker as it would a file).
    struct Recording {
        ram: rtgt_backstore::RamDisk,
        gated: bool,
        seen: std::sync::Mutex<Vec<(char, usize)>>,
        started: std::sync::atomic::AtomicBool,
        gate: (std::sync::Mutex<bool>, std::sync::Condvar),
    }

    impl Recording {
        fn new(gated: bool) -> Arc<Recording> {
            Arc::new(Recording {
                ram: rtgt_backstore::RamDisk::new(1 << 20, 512),
                gated,
                seen: Default::default(),
                started: Default::default(),
                gate: Default::default(),
            })
        }
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    impl rtgt_backstore::Backstore for Recording {
        fn kind(&self) -> &'static str {
            "recording"
        }
        fn capacity(&self) -> u64 {
            self.ram.capacity()
        }
        fn block_size(&self) -> u32 {
            512
        }
        fn may_block(&self) -> bool {
            self.gated
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> rtgt_backstore::Result<()> {
            self.seen.lock().unwrap().push(('r', buf.as_ptr() as usize));
            self.started
                .store(true, std::sync::atomic::Ordering::SeqCst);
            if self.gated {
                let mut open = self.gate.0.lock().unwrap();
                while !*open {
                    open = self.gate.1.wait(open).unwrap();
                }
            }
            self.ram.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> rtgt_backstore::Result<()> {
            self.seen.lock().unwrap().push(('w', buf.as_ptr() as usize));
            self.ram.write_at(offset, buf, fua)
        }
        fn flush(&self) -> rtgt_backstore::Result<()> {
            Ok(())
        }
    }

    fn lu_on(bs: &Arc<Recording>) -> Arc<rtgt_scsi::LogicalUnit> {
        let bs: Arc<dyn rtgt_backstore::Backstore> = bs.clone();
        rtgt_scsi::LogicalUnit::new(rtgt_scsi::LuConfig::new("rec0", bs))
    }

    fn host(mem: &GuestMemoryMmap, addr: u64) -> usize {
        vm_memory::GuestMemoryBackend::get_host_address(mem, GuestAddress(addr)).unwrap() as usize
    }

    #[test]
    fn read_and_write_data_go_straight_between_the_medium_and_guest_memory() {
        let mem = memory();
        let bs = Recording::new(false);
        let lu = lu_on(&bs);
        let n = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        clear_ua(&mem, &n);
        let block: Vec<u8> = (0..1024u32).map(|i| (i * 13 + 1) as u8).collect();
        // data-out in one descriptor, and in two the mapping makes adjacent
        mem.write_slice(&block, GuestAddress(0x4_0000)).unwrap();
        let write10 = [0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0];
        for descs in [
            vec![(0x4_0000, 1024, false)],
            vec![(0x4_0000, 600, false), (0x4_0000 + 600, 424, false)],
        ] {
            let mut chain = vec![(REQ, CMD_REQ_LEN as u32, false)];
            chain.extend(descs);
            chain.push((RESP, CMD_RESP_LEN as u32, true));
            let (_, r, _) = run_chain(&mem, &n, &header(0, 0, &write10), &chain);
            assert_eq!(r.unwrap().status, 0);
            let last = *bs.seen.lock().unwrap().last().unwrap();
            assert_eq!(
                last,
                ('w', host(&mem, 0x4_0000)),
                "written from guest memory"
            );
        }
        // a READ lands in the guest's data-in buffer itself
        let read10 = [0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0];
        let (used, r, d) = run_chain(&mem, &n, &header(0, 0, &read10), &standard(1024));
        assert_eq!((used as usize, r.unwrap().status), (CMD_RESP_LEN + 1024, 0));
        assert_eq!(&d[..1024], &block[..]);
        let last = *bs.seen.lock().unwrap().last().unwrap();
        assert_eq!(last, ('r', host(&mem, DATA)), "read into guest memory");
        // scattered data-in: read into a buffer of rtgt's, then copied
        let (used, r, _) = run_chain(
            &mem,
            &n,
            &header(0, 0, &read10),
            &[
                (REQ, CMD_REQ_LEN as u32, false),
                (RESP, CMD_RESP_LEN as u32, true),
                (0x6_0000, 512, true),
                (0x7_0000, 512, true),
            ],
        );
        assert_eq!((used as usize, r.unwrap().status), (CMD_RESP_LEN + 1024, 0));
        let mut back = vec![0u8; 1024];
        mem.read_slice(&mut back[..512], GuestAddress(0x6_0000))
            .unwrap();
        mem.read_slice(&mut back[512..], GuestAddress(0x7_0000))
            .unwrap();
        assert_eq!(back, block);
        let (op, at) = *bs.seen.lock().unwrap().last().unwrap();
        assert_eq!(op, 'r');
        assert!(
            !(host(&mem, 0)..host(&mem, 0) + MEM).contains(&at),
            "a scattered buffer is not lent"
        );
        // a guest buffer shorter than the transfer is not lent either: the
        // core's data is cut to it
        let (used, r, d) = run_chain(&mem, &n, &header(0, 0, &read10), &standard(512));
        assert_eq!((used as usize, r.unwrap().status), (CMD_RESP_LEN + 512, 0));
        assert_eq!(&d[..512], &block[..512]);
        let (_, at) = *bs.seen.lock().unwrap().last().unwrap();
        assert!(
            !(host(&mem, 0)..host(&mem, 0) + MEM).contains(&at),
            "a short buffer is not lent"
        );
    }

    #[test]
    fn contiguous_spans_follow_the_chain_and_skip_the_header() {
        let mem = memory();
        let q = MockSplitQueue::new(&*mem, 16);
        // header and data in one descriptor: the data starts after the header
        let c = q
            .build_desc_chain(&raw(&[(REQ, 51 + 512, false), (RESP, 108, true)]))
            .unwrap();
        assert_eq!(
            contiguous(&*mem, c.clone(), false, CMD_REQ_LEN, 512).map(|p| p.as_ptr() as usize),
            Some(host(&mem, REQ) + CMD_REQ_LEN)
        );
        // asking for more than there is
        assert!(contiguous(&*mem, c.clone(), false, CMD_REQ_LEN, 513).is_none());
        // the writable part holds only the response header
        assert!(contiguous(&*mem, c, true, CMD_RESP_LEN, 1).is_none());
        // two data-in descriptors apart in memory
        let c = q
            .build_desc_chain(&raw(&[
                (REQ, 51, false),
                (RESP, 108, true),
                (DATA, 512, true),
                (DATA + 4096, 512, true),
            ]))
            .unwrap();
        assert!(contiguous(&*mem, c.clone(), true, CMD_RESP_LEN, 1024).is_none());
        assert_eq!(
            contiguous(&*mem, c, true, CMD_RESP_LEN, 512).map(|p| p.as_ptr() as usize),
            Some(host(&mem, DATA))
        );
        // a descriptor running off the end of guest memory
        let c = q
            .build_desc_chain(&raw(&[(REQ, 51, false), (MEM as u64 - 100, 512, false)]))
            .unwrap();
        assert!(contiguous(&*mem, c, false, CMD_REQ_LEN, 512).is_none());
    }

    #[test]
    fn an_aborted_read_into_guest_memory_completes_only_once_the_medium_is_done() {
        use std::sync::atomic::Ordering::SeqCst;
        let mem = memory();
        let bs = Recording::new(true);
        let lu = lu_on(&bs);
        let n = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        bs.open();
        clear_ua(&mem, &n);
        *bs.gate.0.lock().unwrap() = false;
        let opened = std::sync::atomic::AtomicBool::new(false);
        mem.write_slice(
            &header(0, 0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]),
            GuestAddress(REQ),
        )
        .unwrap();
        let q = MockSplitQueue::new(&*mem, 16);
        let chain = q.build_desc_chain(&raw(&standard(4096))).unwrap();
        let (used, opened_before_done, tmf) = block_on(async {
            let read = async {
                let used = serve(&mem, chain, &n).await;
                (used, opened.load(SeqCst))
            };
            let reset = async {
                while !bs.started.load(SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                let tmf = async {
                    let t = n
                        .task_management(TmfFunction::LogicalUnitReset { lun: 0 })
                        .await;
                    (t, opened.load(SeqCst))
                };
                let open_later = async {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    opened.store(true, SeqCst);
                    bs.open();
                };
                let (t, ()) = tokio::join!(tmf, open_later);
                t
            };
            let ((used, opened_before_done), tmf) = tokio::join!(read, reset);
            (used, opened_before_done, tmf)
        });
        assert_eq!(
            tmf,
            (rtgt_scsi::TmfResult::Complete, true),
            "the LUN reset waits for the read into guest memory"
        );
        assert_eq!(used as usize, CMD_RESP_LEN, "answered, without data");
        let mut h = [0u8; CMD_RESP_LEN];
        mem.read_slice(&mut h, GuestAddress(RESP)).unwrap();
        assert_eq!(CmdResp::parse(&h).unwrap().response, response::ABORTED);
        assert!(
            opened_before_done,
            "the chain went back to the guest while the medium still wrote into it"
        );
        assert_eq!(bs.seen.lock().unwrap().last().unwrap().1, host(&mem, DATA));
    }
}
