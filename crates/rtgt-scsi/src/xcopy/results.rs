//! Copy results: the status held per nexus and list identifier, and
//! RECEIVE COPY RESULTS (COPY STATUS and OPERATING PARAMETERS).

use std::sync::{Mutex, PoisonError};

use super::{
    BLOCK_TO_BLOCK, IDENTIFICATION, MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_HELD,
    MAX_SEGMENT_BYTES, MAX_SEGMENT_DESCRIPTORS,
};
use crate::core::cdb::be32;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::Sense;

#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) nexus: u64,
    pub(super) list_id: u8,
    /// COPY MANAGER STATUS: 00h done, 01h done with errors.
    pub(super) status: u8,
    pub(super) segments: u16,
    pub(super) bytes: u64,
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

    pub(super) fn put(&self, h: Held) {
        let mut v = self.lock();
        v.retain(|x| !(x.nexus == h.nexus && x.list_id == h.list_id));
        if v.len() >= MAX_HELD {
            v.remove(0);
        }
        v.push(h);
    }

    pub(super) fn get(&self, nexus: u64, list_id: u8) -> Option<Held> {
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

pub(super) const COPY_STATUS: u8 = 0x00;
pub(super) const OPERATING_PARAMETERS: u8 = 0x03;

pub(crate) fn decode_receive_copy_results(d: &Decode<'_>) -> Result<Plan, Sense> {
    let f: crate::core::handler::EmulateFn = match d.cdb[1] & 0x1f {
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
pub(super) const IMPLEMENTED: [u8; 2] = [BLOCK_TO_BLOCK, IDENTIFICATION];

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
