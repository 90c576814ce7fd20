//! The vhost-user-scsi device: rust-vmm's `vhost-user-backend` runs the
//! vhost-user protocol (memory table, vrings, features); this is the
//! device behind it. Queue 0 is the control queue (task management,
//! asynchronous notification), queue 1 the event queue (LUN hotplug), the
//! rest are request queues. Each request queue has a vring thread of its
//! own and its requests run on one of the daemon's per-CPU runtimes
//! (request queue `i` on runtime `i % n`, as a guest uses queue `i` from
//! vCPU `i`), so a guest's vCPUs are served in parallel, a queue's used
//! ring is only ever touched from one runtime, and a slow LU holds up
//! neither the vring thread nor other requests. Requests complete into the
//! used ring in any order (as virtio allows).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rtgt_scsi::api::{Nexus, TmfFunction, TmfResult};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::{QueueOwnedT, Reader, Writer};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::request;
use crate::wire::{self, CtrlReq, Event, TmfSubtype, VirtioLun};

/// virtio feature bits (virtio 1.2 section 6).
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Request queues a controller can have: vhost-user-backend serves at
/// most 64 vrings (a bit each in a u64 mask), two of them the control and
/// event queues.
pub const MAX_REQUEST_QUEUES: usize = 62;

/// Queue size offered to the front-end.
pub const QUEUE_SIZE: usize = 1024;
/// Events kept for a guest that has given no event buffers: beyond this,
/// the next event delivered carries EVENTS_MISSED (the guest rescans).
const MAX_PENDING_EVENTS: usize = 64;

const CONTROL_QUEUE: usize = 0;
const EVENT_QUEUE: usize = 1;
const FIRST_REQUEST_QUEUE: usize = 2;

/// One vhost-user-scsi controller (one target, one I_T nexus: the VM).
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    request_queues: usize,
    /// The nexus the VM's commands come through (a controller serves one
    /// front-end: the next VM gets a controller and a nexus of its own).
    nexus: Arc<Nexus>,
    mem: RwLock<Option<GuestMemoryAtomic<GuestMemoryMmap>>>,
    event_idx: AtomicBool,
    runtimes: Runtimes,
    events: Mutex<PendingEvents>,
    /// The event queue, once the guest has kicked it (given it buffers):
    /// events raised later are delivered at once, not at the next kick.
    event_vring: Mutex<Option<VringRwLock>>,
}

/// The runtimes a controller's requests run on: request queue `i` on the
/// `i % n`-th, the control queue on the first. Never empty.
#[derive(Clone)]
pub struct Runtimes(Arc<[tokio::runtime::Handle]>);

impl Runtimes {
    /// `handles`, or `fallback` alone when there are none (the daemon has
    /// per-CPU runtimes only with more than one CPU).
    pub fn new(handles: Vec<tokio::runtime::Handle>, fallback: tokio::runtime::Handle) -> Runtimes {
        if handles.is_empty() {
            Runtimes(Arc::new([fallback]))
        } else {
            Runtimes(handles.into())
        }
    }

    /// The runtime the requests of device queue `queue` run on.
    fn for_queue(&self, queue: usize) -> &tokio::runtime::Handle {
        &self.0[queue.saturating_sub(FIRST_REQUEST_QUEUE) % self.0.len()]
    }
}

#[derive(Default)]
struct PendingEvents {
    queue: VecDeque<Event>,
    missed: bool,
}

impl Controller {
    /// A controller with `request_queues` request queues (1 to
    /// `MAX_REQUEST_QUEUES`) whose commands go to `nexus`, spread over
    /// `runtimes`.
    pub fn new(request_queues: usize, nexus: Arc<Nexus>, runtimes: Runtimes) -> Self {
        Controller {
            inner: Arc::new(Inner {
                request_queues: request_queues.clamp(1, MAX_REQUEST_QUEUES),
                nexus,
                mem: RwLock::new(None),
                event_idx: AtomicBool::new(false),
                runtimes,
                events: Mutex::new(PendingEvents::default()),
                event_vring: Mutex::new(None),
            }),
        }
    }

    /// A LUN appeared or went: the guest hears of it on the event queue
    /// (TRANSPORT_RESET, RESCAN or REMOVED), as LIO's vhost-scsi tells it.
    pub fn lun_changed(&self, lun: u16, present: bool) {
        let reason = if present {
            wire::EVT_RESET_RESCAN
        } else {
            wire::EVT_RESET_REMOVED
        };
        {
            let mut ev = lock(&self.inner.events);
            if ev.queue.len() >= MAX_PENDING_EVENTS {
                ev.missed = true;
            } else {
                ev.queue.push_back(Event::transport_reset(
                    VirtioLun {
                        target: request::TARGET_ID,
                        lun,
                    },
                    reason,
                ));
            }
        }
        let vring = lock(&self.inner.event_vring).clone();
        if let Some(v) = vring {
            if let Err(e) = self.deliver_events(&v) {
                tracing::warn!("vhost-user-scsi event queue: {e}");
            }
        }
    }

    fn memory(&self) -> Option<GuestMemoryAtomic<GuestMemoryMmap>> {
        read(&self.inner.mem).clone()
    }

    /// Take every available chain of device queue `queue` (the control
    /// queue or a request queue) and start each on the queue's runtime.
    fn process(&self, vring: &VringRwLock, queue: usize) -> std::io::Result<()> {
        let control_queue = queue == CONTROL_QUEUE;
        let runtime = self.inner.runtimes.for_queue(queue);
        let Some(mem) = self.memory() else {
            return Ok(());
        };
        let chains: Vec<_> = {
            let mut v = vring.get_mut();
            match v.get_queue_mut().iter(mem.memory()) {
                Ok(it) => it.collect(),
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        };
        for chain in chains {
            let head = chain.head_index();
            let mem = mem.memory().into_inner();
            let nexus = self.inner.nexus.clone();
            let vring = vring.clone();
            let event_idx = self.inner.event_idx.load(Ordering::Relaxed);
            runtime.spawn(async move {
                let used = if control_queue {
                    control(&*mem, chain, &nexus).await
                } else {
                    request::serve(&mem, chain, &nexus).await
                };
                complete(&vring, head, used, event_idx);
            });
        }
        Ok(())
    }

    /// Hand pending events to the buffers the guest gave the event queue.
    fn deliver_events(&self, vring: &VringRwLock) -> std::io::Result<()> {
        let Some(mem) = self.memory() else {
            return Ok(());
        };
        let event_idx = self.inner.event_idx.load(Ordering::Relaxed);
        loop {
            let mut ev = lock(&self.inner.events);
            if ev.queue.is_empty() && !ev.missed {
                return Ok(());
            }
            let chain = {
                let mut v = vring.get_mut();
                let next = match v.get_queue_mut().iter(mem.memory()) {
                    Ok(mut it) => it.next(),
                    Err(e) => return Err(std::io::Error::other(e.to_string())),
                };
                next
            };
            let Some(chain) = chain else {
                return Ok(()); // no buffer: the events wait for the next kick
            };
            let mut e = ev.queue.pop_front().unwrap_or(Event {
                event: wire::T_NO_EVENT,
                lun: [0; 8],
                reason: 0,
            });
            if std::mem::take(&mut ev.missed) {
                e.event |= wire::T_EVENTS_MISSED;
            }
            drop(ev);
            let head = chain.head_index();
            let guard = mem.memory();
            let used = match Writer::new(&*guard, chain) {
                Ok(mut w) => {
                    if w.write_all(&e.encode()).is_ok() {
                        wire::EVENT_LEN as u32
                    } else {
                        0
                    }
                }
                Err(_) => 0,
            };
            complete(vring, head, used, event_idx);
        }
    }
}

/// One control queue request; returns the used length.
pub(crate) async fn control<M, T>(
    mem: &M,
    chain: virtio_queue::DescriptorChain<T>,
    nexus: &Arc<Nexus>,
) -> u32
where
    M: vm_memory::GuestMemory,
    for<'a> <M as vm_memory::GuestMemory>::Bitmap: vm_memory::bitmap::WithBitmapSlice<'a>,
    T: std::ops::Deref + Clone,
    T::Target: vm_memory::GuestMemory + Sized,
{
    // Guest memory views are not held across the await: read, run, write.
    let req = {
        let Ok(mut r) = Reader::new(mem, chain.clone()) else {
            return 0;
        };
        let mut buf = vec![0u8; r.available_bytes().min(wire::TMF_REQ_LEN)];
        if r.read_exact(&mut buf).is_err() {
            return 0;
        }
        CtrlReq::parse(&buf)
    };
    let out: Vec<u8> = match req {
        Ok(CtrlReq::Tmf { subtype, lun, id }) => vec![tmf(nexus, subtype, &lun, id).await],
        Ok(CtrlReq::An { .. }) => wire::an_response(0, wire::response::OK).to_vec(),
        // a request we cannot read: answer in the TMF response's one byte
        Err(_) => vec![wire::response::FAILURE],
    };
    let Ok(mut w) = Writer::new(mem, chain) else {
        return 0;
    };
    let n = out.len().min(w.available_bytes());
    if w.write_all(&out[..n]).is_err() {
        return 0;
    }
    n as u32
}

/// A task management function on the nexus; its virtio-scsi response.
async fn tmf(nexus: &Arc<Nexus>, subtype: TmfSubtype, lun: &[u8; 8], tag: u64) -> u8 {
    use wire::response as r;
    let lun = match VirtioLun::parse(lun) {
        Ok(l) if l.target == request::TARGET_ID => u64::from(l.lun),
        _ => return r::BAD_TARGET,
    };
    let f = match subtype {
        TmfSubtype::AbortTask => TmfFunction::AbortTask { lun, tag },
        TmfSubtype::AbortTaskSet => TmfFunction::AbortTaskSet { lun },
        TmfSubtype::ClearTaskSet => TmfFunction::ClearTaskSet { lun },
        TmfSubtype::LogicalUnitReset => TmfFunction::LogicalUnitReset { lun },
        _ => return r::FUNCTION_REJECTED,
    };
    match nexus.task_management(f).await {
        // ABORT TASK of a task that is gone: done all the same (SAM-5)
        TmfResult::Complete | TmfResult::TaskNotFound => r::OK,
        TmfResult::LunNotFound => r::INCORRECT_LUN,
        TmfResult::NotSupported | TmfResult::Rejected => r::FUNCTION_REJECTED,
    }
}

/// Put a finished chain in the used ring and tell the guest if it wants.
fn complete(vring: &VringRwLock, head: u16, used: u32, event_idx: bool) {
    if vring.add_used(head, used).is_err() {
        tracing::warn!(head, "vhost-user-scsi: could not return a descriptor chain");
        return;
    }
    let notify = !event_idx || vring.needs_notification().unwrap_or(true);
    tracing::trace!(head, used, notify, "vhost-user-scsi used");
    if notify {
        let _ = vring.signal_used_queue();
    }
}

impl VhostUserBackend for Controller {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        FIRST_REQUEST_QUEUE + self.inner.request_queues
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // The control and event queues share a thread; each request queue
        // has its own, so one vCPU's kicks never wait behind another's.
        let mut threads = vec![(1 << CONTROL_QUEUE) | (1 << EVENT_QUEUE)];
        threads.extend((FIRST_REQUEST_QUEUE..self.num_queues()).map(|q| 1u64 << q));
        threads
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        // EVENT_IDX: the guest kicks and is interrupted only as the
        // other side's index asks (`handle_event`, `complete`).
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | wire::feature::HOTPLUG
            // QEMU's vhost-user-scsi acks CHANGE (its param_change
            // property) whatever the back-end offers; rtgt reports
            // capacity changes as unit attentions, which the guest gets
            // either way.
            | wire::feature::CHANGE
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // Not CONFIG: QEMU's vhost-user-scsi (7.2) makes the configuration
        // space itself (from num_queues and its own limits) and warns about
        // a back-end that offers it.
        VhostUserProtocolFeatures::MQ
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // One per vring thread (see `queues_per_thread`); the socket
        // server ends them when the front-end goes.
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.inner.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        wire::Config {
            num_queues: self.inner.request_queues as u32,
            seg_max: (QUEUE_SIZE - 2) as u32,
            max_sectors: 0xffff,
            cmd_per_lun: 128,
            event_info_size: wire::EVENT_LEN as u32,
            sense_size: wire::SENSE_SIZE as u32,
            cdb_size: wire::CDB_SIZE as u32,
            max_channel: 0,
            max_target: 0,
            max_lun: 16383,
        }
        .read(offset, size)
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> std::io::Result<()> {
        *write(&self.inner.mem) = Some(mem);
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> std::io::Result<()> {
        tracing::trace!(thread_id, device_event, ?evset, "vhost-user-scsi kick");
        if evset != EventSet::IN {
            return Ok(());
        }
        // `vrings` are this thread's, `device_event` an index into them.
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Ok(());
        };
        let q = queue_of(thread_id, device_event);
        let event_idx = self.inner.event_idx.load(Ordering::Relaxed);
        loop {
            if event_idx {
                let _ = vring.disable_notification();
            }
            match q {
                CONTROL_QUEUE => self.process(vring, CONTROL_QUEUE)?,
                EVENT_QUEUE => {
                    *lock(&self.inner.event_vring) = Some(vring.clone());
                    self.deliver_events(vring)?
                }
                _ => self.process(vring, q)?,
            }
            // With EVENT_IDX, chains added while notifications were off
            // would be missed: look again until none came.
            if !event_idx || !vring.enable_notification().unwrap_or(false) {
                return Ok(());
            }
        }
    }
}

/// The device queue that vring thread `thread`'s `index`-th vring is, as
/// `queues_per_thread` lays them out: thread 0 has the control and event
/// queues, thread `t` request queue `t - 1`.
fn queue_of(thread: usize, index: u16) -> usize {
    match thread {
        0 => usize::from(index),
        t => FIRST_REQUEST_QUEUE + t - 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CmdReq, CMD_REQ_LEN, CMD_RESP_LEN};
    use rtgt_scsi::fuzz_entry::{nexus_for, ram_lu, INITIATOR_A};
    use std::time::Duration;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const VRING_DESC_F_NEXT: u16 = 1;
    const VRING_DESC_F_WRITE: u16 = 2;

    /// A vring laid out at `base` holding one TEST UNIT READY chain whose
    /// header and response sit at `base + 0x1000` and `base + 0x2000`.
    fn vring_with_one_request(mem: &GuestMemoryAtomic<GuestMemoryMmap>, base: u64) -> VringRwLock {
        let guard = mem.memory();
        let (req, resp) = (base + 0x1000, base + 0x2000);
        let header = CmdReq::simple(VirtioLun { target: 0, lun: 0 }, 1, &[0; 6]).encode();
        guard.write_slice(&header, GuestAddress(req)).unwrap();
        let q = MockSplitQueue::create(&*guard, GuestAddress(base), 16);
        q.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(
                    req,
                    CMD_REQ_LEN as u32,
                    VRING_DESC_F_NEXT,
                    1,
                )),
                RawDescriptor::from(Descriptor::new(
                    resp,
                    CMD_RESP_LEN as u32,
                    VRING_DESC_F_WRITE,
                    0,
                )),
            ],
            0,
        )
        .unwrap();
        let v = VringRwLock::new(mem.clone(), 16).unwrap();
        v.set_queue_size(16);
        v.set_queue_info(q.desc_table_addr().0, q.avail_addr().0, q.used_addr().0)
            .unwrap();
        v.set_queue_ready(true);
        v
    }

    /// Drive `rt` until `v` has `n` used chains, for at most a few seconds.
    fn used_after_running(rt: &tokio::runtime::Runtime, v: &VringRwLock, n: u16) -> u16 {
        rt.block_on(async {
            for _ in 0..500 {
                if v.queue_used_idx().unwrap() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        v.queue_used_idx().unwrap()
    }

    #[test]
    fn each_request_queue_runs_on_its_own_runtime() {
        let mem = GuestMemoryAtomic::new(
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap(),
        );
        let lu = ram_lu(1 << 20, 512);
        let nexus = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        // Current-thread runtimes run their tasks only while driven, so
        // which one a request went to shows in which drive completes it.
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let (a, b) = (runtime(), runtime());
        let rts = Runtimes::new(
            vec![a.handle().clone(), b.handle().clone()],
            a.handle().clone(),
        );
        let ctrl = Controller::new(3, nexus, rts);
        assert_eq!(
            ctrl.queues_per_thread(),
            vec![0b11, 1 << 2, 1 << 3, 1 << 4],
            "control and event queues on one vring thread, each request queue on its own"
        );
        ctrl.update_memory(mem.clone()).unwrap();
        // Device queues 2, 3, 4: request queues 0, 1, 2.
        let q: Vec<_> = [0x0, 0x1_0000, 0x2_0000]
            .iter()
            .map(|&base| vring_with_one_request(&mem, base))
            .collect();
        for (i, v) in q.iter().enumerate() {
            ctrl.process(v, FIRST_REQUEST_QUEUE + i).unwrap();
        }
        // Driving runtime A answers request queues 0 and 2 (i % 2 == 0)...
        assert_eq!(used_after_running(&a, &q[0], 1), 1);
        assert_eq!(used_after_running(&a, &q[2], 1), 1);
        assert_eq!(q[1].queue_used_idx().unwrap(), 0, "queue 1 is runtime B's");
        // ... and only driving B answers queue 1.
        assert_eq!(used_after_running(&b, &q[1], 1), 1);
    }

    #[test]
    fn kicks_are_mapped_to_the_queue_each_thread_serves() {
        let lu = ram_lu(1 << 20, 512);
        let nexus = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for queues in [1, 2, 8, crate::backend::MAX_REQUEST_QUEUES] {
            let rts = Runtimes::new(Vec::new(), rt.handle().clone());
            let ctrl = Controller::new(queues, nexus.clone(), rts);
            let threads = ctrl.queues_per_thread();
            let mut seen = Vec::new();
            // vhost-user-backend hands thread t its vrings in queue order
            // and reports a kick by the index among them.
            for (t, mask) in threads.iter().enumerate() {
                let mine: Vec<usize> = (0..64).filter(|q| mask >> q & 1 == 1).collect();
                for (i, &q) in mine.iter().enumerate() {
                    assert_eq!(queue_of(t, i as u16), q, "thread {t}, vring {i}");
                    seen.push(q);
                }
            }
            seen.sort();
            assert_eq!(
                seen,
                (0..ctrl.num_queues()).collect::<Vec<_>>(),
                "each queue once"
            );
        }
    }
}
