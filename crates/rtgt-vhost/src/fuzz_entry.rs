//! The fuzzing entry point (fuzz/fuzz_targets/vhost_chain.rs), also run by
//! the unit tests below on their seeds: a guest that writes whatever it
//! likes into its descriptor table, available ring, request headers and
//! buffers. The guest memory, the rings and the requests all come from
//! the input; the queue is driven as the vring thread drives it.

use rtgt_scsi::fuzz_entry::{block_on, nexus_for, ram_lu, INITIATOR_A};
use std::sync::Arc;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory the input is laid into.
const MEM: usize = 0x1_0000;
const QUEUE_SIZE: u16 = 16;
const DESC_TABLE: u32 = 0x0;
const AVAIL_RING: u32 = 0x100;
const USED_RING: u32 = 0x200;
/// Chains served per input at most (the guest's avail index may claim
/// any number).
const MAX_CHAINS: usize = 32;

/// `data[0]` bit 0: the control queue (else a request queue); the rest is
/// guest memory from address 0: the descriptor table at 0, the available
/// ring at 0x100, the buffers wherever the descriptors point. Returns
/// the used length of each chain served.
pub fn virtqueue(data: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let Some((&mode, image)) = data.split_first() else {
        return out;
    };
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).map(Arc::new)
    else {
        return out;
    };
    let n = image.len().min(MEM);
    if mem.write_slice(&image[..n], GuestAddress(0)).is_err() {
        return out;
    }
    let Ok(mut q) = Queue::new(QUEUE_SIZE) else {
        return out;
    };
    q.set_size(QUEUE_SIZE);
    q.set_desc_table_address(Some(DESC_TABLE), Some(0));
    q.set_avail_ring_address(Some(AVAIL_RING), Some(0));
    q.set_used_ring_address(Some(USED_RING), Some(0));
    q.set_ready(true);
    let lu = ram_lu(1 << 20, 512);
    let nexus = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
    let chains: Vec<_> = match q.iter(&*mem) {
        Ok(it) => it.take(MAX_CHAINS).collect(),
        Err(_) => return out,
    };
    for chain in chains {
        let head = chain.head_index();
        let used = if mode & 1 == 1 {
            block_on(crate::backend::control(&*mem, chain, &nexus))
        } else {
            block_on(crate::request::serve(&mem, chain, &nexus))
        };
        // What the device returns must fit in the memory it was given.
        assert!(
            used as usize <= MEM,
            "used length {used} for a {MEM}-byte guest"
        );
        let _ = q.add_used(&*mem, head, used);
        out.push(used);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CmdReq, VirtioLun, CMD_REQ_LEN};

    /// A guest image: descriptors (addr, len, flags, next) and the
    /// available ring's heads, plus bytes placed at addresses.
    fn image(descs: &[(u64, u32, u16, u16)], heads: &[u16], at: &[(usize, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; 0x4000];
        for (i, &(a, l, f, nx)) in descs.iter().enumerate() {
            let o = i * 16;
            m[o..o + 8].copy_from_slice(&a.to_le_bytes());
            m[o + 8..o + 12].copy_from_slice(&l.to_le_bytes());
            m[o + 12..o + 14].copy_from_slice(&f.to_le_bytes());
            m[o + 14..o + 16].copy_from_slice(&nx.to_le_bytes());
        }
        let a = AVAIL_RING as usize;
        m[a + 2..a + 4].copy_from_slice(&(heads.len() as u16).to_le_bytes());
        for (i, h) in heads.iter().enumerate() {
            m[a + 4 + 2 * i..a + 6 + 2 * i].copy_from_slice(&h.to_le_bytes());
        }
        for (o, b) in at {
            m[*o..*o + b.len()].copy_from_slice(b);
        }
        m
    }

    fn read10() -> [u8; CMD_REQ_LEN] {
        let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        CmdReq::simple(VirtioLun { target: 0, lun: 0 }, 7, &cdb).encode()
    }

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    #[test]
    fn hostile_rings_never_bring_the_device_down() {
        let req = read10();
        let seeds: Vec<Vec<u8>> = vec![
            // a well-formed READ(10) twice: header, response, one block
            image(
                &[
                    (0x1000, CMD_REQ_LEN as u32, NEXT, 1),
                    (0x2000, 108, NEXT | WRITE, 2),
                    (0x3000, 512, WRITE, 0),
                    (0x1000, CMD_REQ_LEN as u32, NEXT, 4),
                    (0x2100, 108, NEXT | WRITE, 5),
                    (0x3400, 512, WRITE, 0),
                ],
                &[0, 3],
                &[(0x1000, &req)],
            ),
            // a loop: 0 -> 1 -> 0
            image(
                &[(0x1000, 51, NEXT, 1), (0x2000, 108, NEXT | WRITE, 0)],
                &[0],
                &[(0x1000, &req)],
            ),
            // buffers outside guest memory, and lengths that wrap
            image(
                &[
                    (0xffff_ffff_ffff_f000, CMD_REQ_LEN as u32, NEXT, 1),
                    (0x2000, u32::MAX, WRITE, 0),
                ],
                &[0, 0, 15],
                &[],
            ),
            // an indirect table pointing at itself, a next beyond the table
            image(
                &[(0x0, 256, INDIRECT, 0), (0x1000, 51, NEXT, 200)],
                &[0, 1],
                &[(0x1000, &req)],
            ),
            // a response buffer too short for the header
            image(
                &[(0x1000, CMD_REQ_LEN as u32, NEXT, 1), (0x2000, 3, WRITE, 0)],
                &[0],
                &[(0x1000, &req)],
            ),
            // an avail index far ahead of the ring
            {
                let mut m = image(&[], &[], &[]);
                let a = AVAIL_RING as usize;
                m[a + 2..a + 4].copy_from_slice(&0xfff0u16.to_le_bytes());
                m
            },
        ];
        let run = |mode: u8, s: &[u8]| {
            let mut d = vec![mode];
            d.extend_from_slice(s);
            virtqueue(&d)
        };
        for s in &seeds {
            run(0, s);
            run(1, s);
        }
        // The well-formed READs are served: the first gets the new
        // nexus' POWER ON unit attention (the response header only), the
        // second the header and the block.
        assert_eq!(run(0, &seeds[0]), vec![108, 108 + 512]);
        // A chain that loops is followed no further than the queue size
        // (virtio-queue's bound): one bounded answer, at most a header.
        let looped = run(0, &seeds[1]);
        assert!(looped.len() == 1 && looped[0] <= 108, "{looped:?}");
        // A response buffer too short for the header: returned with
        // nothing written.
        assert_eq!(run(0, &seeds[4]), vec![0]);
        assert!(virtqueue(&[]).is_empty());
        assert!(virtqueue(&[0]).is_empty());
    }
}
