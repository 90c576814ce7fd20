//! A minimal vhost-user-scsi front-end (what QEMU is to rtgt), written from
//! the vhost-user and virtio-scsi specifications with rust-vmm's frontend
//! side, sharing no code with rtgt-vhost: guest memory in a
//! shared file, one request queue, commands laid into it as a driver would.

use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const MEM: usize = 1 << 20;
const QSIZE: u16 = 16;
/// The first request queue (0 control, 1 event).
const REQUEST_QUEUE: usize = 2;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
/// virtio_scsi_cmd_req: lun[8], tag, task_attr, prio, crn, cdb[32].
const REQ_LEN: u32 = 51;
/// virtio_scsi_cmd_resp: sense_len, resid, status_qualifier, status,
/// response, sense[96].
const RESP_LEN: u32 = 108;

/// What the device answered.
#[derive(Debug)]
pub struct VirtioResult {
    /// virtio-scsi response code (0: OK).
    pub response: u8,
    /// SAM status.
    pub status: u8,
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
}

pub struct VhostFrontend {
    _fe: Frontend,
    mem: GuestMemoryMmap,
    kick: EventFd,
    _call: EventFd,
    desc_table: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    sent: u16,
    tag: u64,
    /// EVENT_IDX negotiated: kicks and interrupts only as the other side's
    /// event indices ask (virtio 1.2 2.7.10).
    event_idx: bool,
    /// Interrupts (used-buffer notifications) seen.
    pub interrupts: u64,
}

impl VhostFrontend {
    /// Connect to `socket` and set up guest memory and the first request
    /// queue, as QEMU does when the guest's driver starts the device.
    pub fn connect(socket: &Path) -> VhostFrontend {
        Self::connect_with(socket, false)
    }

    /// With `event_idx`, negotiate VIRTIO_RING_F_EVENT_IDX (the back-end
    /// must offer it) and drive the ring as Linux's virtio_ring does.
    pub fn connect_with(socket: &Path, event_idx: bool) -> VhostFrontend {
        let dir = if Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let file = tempfile::tempfile_in(dir).unwrap();
        file.set_len(MEM as u64).unwrap();
        let fd = file.as_raw_fd();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[(
            GuestAddress(0),
            MEM,
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        // The split ring's parts, each whole (virtio 1.2 2.7): the mock
        // queue's layout puts the used ring over the avail ring's used_event.
        let (desc_table, avail, used) = (GuestAddress(0), GuestAddress(0x100), GuestAddress(0x200));

        let mut fe = Frontend::connect(socket, 3).unwrap();
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        assert!(offered & PROTOCOL_FEATURES != 0, "features {offered:#x}");
        let mut want = VIRTIO_F_VERSION_1 | PROTOCOL_FEATURES;
        if event_idx {
            assert!(
                offered & VIRTIO_RING_F_EVENT_IDX != 0,
                "EVENT_IDX not offered"
            );
            want |= VIRTIO_RING_F_EVENT_IDX;
        }
        fe.set_features(offered & want).unwrap();
        let pf = fe.get_protocol_features().unwrap();
        fe.set_protocol_features(pf & VhostUserProtocolFeatures::MQ)
            .unwrap();
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: fd,
        }])
        .unwrap();
        let kick = EventFd::new(0).unwrap();
        let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        fe.set_vring_num(REQUEST_QUEUE, QSIZE).unwrap();
        fe.set_vring_addr(
            REQUEST_QUEUE,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                // vhost-user gives ring addresses in the front-end's own
                // address space
                desc_table_addr: host + desc_table.0,
                used_ring_addr: host + used.0,
                avail_ring_addr: host + avail.0,
                log_addr: None,
            },
        )
        .unwrap();
        fe.set_vring_base(REQUEST_QUEUE, 0).unwrap();
        fe.set_vring_call(REQUEST_QUEUE, &call).unwrap();
        fe.set_vring_kick(REQUEST_QUEUE, &kick).unwrap();
        fe.set_vring_enable(REQUEST_QUEUE, true).unwrap();
        VhostFrontend {
            _fe: fe,
            mem,
            kick,
            _call: call,
            desc_table,
            avail,
            used,
            sent: 0,
            tag: 1,
            event_idx,
            interrupts: 0,
        }
    }

    /// Send `cdb` to LUN `lun` of target 0 with `data_out`, or room for
    /// `read_len` bytes of Data-In; wait for the used ring to return it.
    pub fn command(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        read_len: u32,
    ) -> VirtioResult {
        // Each command in its own 4 KiB slot, high enough above the rings.
        let slot = 0x1_0000 + u64::from(self.sent % QSIZE) * 0x4000;
        let (req, resp, data) = (slot, slot + 0x200, slot + 0x400);
        let mut r = vec![0u8; REQ_LEN as usize];
        // single-level LUN: 1, target, flat-space LUN
        r[0] = 1;
        r[2] = 0x40 | (lun >> 8) as u8;
        r[3] = lun as u8;
        r[8..16].copy_from_slice(&self.tag.to_le_bytes());
        r[19..19 + cdb.len()].copy_from_slice(cdb);
        self.tag += 1;
        self.mem.write_slice(&r, GuestAddress(req)).unwrap();
        self.mem
            .write_slice(&[0u8; RESP_LEN as usize], GuestAddress(resp))
            .unwrap();
        let mut descs = vec![(req, REQ_LEN, 0u16)];
        if !data_out.is_empty() {
            self.mem.write_slice(data_out, GuestAddress(data)).unwrap();
            descs.push((data, data_out.len() as u32, 0));
            descs.push((resp, RESP_LEN, F_WRITE));
        } else {
            descs.push((resp, RESP_LEN, F_WRITE));
            if read_len > 0 {
                descs.push((data, read_len, F_WRITE));
            }
        }
        // Descriptor indices: 4 per command, so a chain never straddles.
        let first = (self.sent % (QSIZE / 4)) * 4;
        let n = descs.len();
        for (i, &(a, l, f)) in descs.iter().enumerate() {
            let next = if i + 1 < n { F_NEXT } else { 0 };
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&a.to_le_bytes());
            d[8..12].copy_from_slice(&l.to_le_bytes());
            d[12..14].copy_from_slice(&(f | next).to_le_bytes());
            d[14..16].copy_from_slice(&(first + i as u16 + 1).to_le_bytes());
            let at = self
                .desc_table
                .unchecked_add(16 * u64::from(first + i as u16));
            self.mem.write_slice(&d, at).unwrap();
        }
        // The head into the available ring, then its index (the driver's
        // order: the device may read the entry once it sees the index).
        // used_event: interrupt us once this command is used (written
        // before the device can see the command, as Linux's
        // virtqueue_enable_cb does after taking the last completion).
        let used_event_at = self.avail.unchecked_add(4 + 2 * u64::from(QSIZE));
        self.mem
            .write_obj(self.sent.to_le(), used_event_at)
            .unwrap();
        let slot_at = self
            .avail
            .unchecked_add(4 + 2 * u64::from(self.sent % QSIZE));
        self.mem.write_obj(first.to_le(), slot_at).unwrap();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let new_idx = self.sent.wrapping_add(1);
        self.mem
            .write_obj(new_idx.to_le(), self.avail.unchecked_add(2))
            .unwrap();
        let old = self.sent;
        self.sent = self.sent.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let kick = if self.event_idx {
            let avail_event_at = self.used.unchecked_add(4 + 8 * u64::from(QSIZE));
            let avail_event = u16::from_le(self.mem.read_obj(avail_event_at).unwrap());
            // vring_need_event(event, new, old)
            self.sent.wrapping_sub(avail_event).wrapping_sub(1) < self.sent.wrapping_sub(old)
        } else {
            true
        };
        if kick {
            self.kick.write(1).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let signalled = self._call.read().is_ok();
            if signalled {
                self.interrupts += 1;
            }
            let idx: u16 = self.mem.read_obj(self.used.unchecked_add(2)).unwrap();
            if idx == self.sent && (signalled || !self.event_idx) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no completion in 10 s (used idx {idx}, sent {}, kicked {kick}, interrupts {})",
                self.sent,
                self.interrupts
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut h = [0u8; RESP_LEN as usize];
        self.mem.read_slice(&mut h, GuestAddress(resp)).unwrap();
        let sense_len = (u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize).min(96);
        let resid = u32::from_le_bytes(h[4..8].try_into().unwrap());
        let mut d = vec![0u8; read_len.saturating_sub(resid) as usize];
        self.mem.read_slice(&mut d, GuestAddress(data)).unwrap();
        VirtioResult {
            response: h[11],
            status: h[10],
            sense: h[12..12 + sense_len].to_vec(),
            data: d,
        }
    }
}
