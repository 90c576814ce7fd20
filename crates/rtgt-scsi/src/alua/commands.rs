//! REPORT TARGET PORT GROUPS (MAINTENANCE IN / 0Ah, SPC-4 6.36) and SET
//! TARGET PORT GROUPS (MAINTENANCE OUT / 0Ah, SPC-4 6.47).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{AccessState, Cause, TargetPortGroup};
use crate::api::TargetPort;
use crate::core::cdb::be32;
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::sense::{self, Sense};

/// Supported states of every group: T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP,
/// AO_SUP (no LBA dependent).
const SUPPORTED_STATES: u8 = 0x80 | 0x40 | 0x08 | 0x04 | 0x02 | 0x01;

/// Largest SET TARGET PORT GROUPS parameter list taken: the header and
/// 1024 descriptors (more groups than any LU has).
const MAX_STPG_LEN: u32 = 4 + 4 * 1024;

pub(crate) fn decode_report(d: &Decode<'_>) -> Result<Plan, Sense> {
    // PARAMETER DATA FORMAT: 000b length only, 001b extended header.
    if d.cdb[1] >> 5 > 1 {
        return Err(Sense::invalid_cdb_field(1, Some(7)));
    }
    Ok(Plan::emulate(report).with_alloc_len(be32(&d.cdb[6..10])))
}

/// The groups through which the LU is exported, each with its ports'
/// relative identifiers; the port the command came through is always one.
fn groups_of(
    ports: Vec<Arc<TargetPort>>,
    this: &TargetPort,
) -> BTreeMap<u16, (Arc<TargetPortGroup>, Vec<u16>)> {
    let mut out: BTreeMap<u16, (Arc<TargetPortGroup>, Vec<u16>)> = BTreeMap::new();
    let mut add = |p: &TargetPort| {
        let e = out
            .entry(p.group.id())
            .or_insert_with(|| (p.group.clone(), Vec::new()));
        if !e.1.contains(&p.relative_port_id) {
            e.1.push(p.relative_port_id);
            e.1.sort_unstable();
        }
    };
    for p in &ports {
        add(p);
    }
    add(this);
    out
}

fn report(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.ok_or(sense::LU_NOT_SUPPORTED)?;
    let this = c.nexus.target_port();
    let extended = c.cdb[1] >> 5 == 1;
    let mut d = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        d[4] = 0x10;
        // IMPLICIT TRANSITION TIME, in seconds (rounded up).
        let t = this.group.transition_time();
        d[5] = t
            .as_secs()
            .saturating_add(u64::from(t.subsec_nanos() > 0))
            .min(255) as u8;
    }
    for (id, (g, rel)) in groups_of(lu.alua_ports.snapshot(), this) {
        let state = g.state();
        d.push(if g.preferred() { 0x80 } else { 0 } | state.code());
        d.push(SUPPORTED_STATES);
        d.extend_from_slice(&id.to_be_bytes());
        d.push(0);
        d.push(g.status_code());
        d.push(0);
        d.push(rel.len().min(255) as u8);
        for r in rel.iter().take(255) {
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(&r.to_be_bytes());
        }
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(d)
}

pub(crate) fn decode_set(d: &Decode<'_>) -> Result<Plan, Sense> {
    if !d.port.group.tpgs().explicit() {
        // TPGS says implicit only: the command is not offered.
        return Err(sense::INVALID_OPCODE);
    }
    let len = be32(&d.cdb[6..10]);
    if len == 0 {
        return Ok(Plan::good());
    }
    if len > MAX_STPG_LEN {
        return Err(Sense::invalid_cdb_field(6, Some(7)));
    }
    Ok(Plan::emulate(set).with_data_out(len))
}

fn set(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let lu = c.lu.ok_or(sense::LU_NOT_SUPPORTED)?;
    let p = c.data_out;
    if p.len() < 4 || !p.len().is_multiple_of(4) {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let groups = groups_of(lu.alua_ports.snapshot(), c.nexus.target_port());
    // Every descriptor is checked before any group changes.
    let mut asked: Vec<(Arc<TargetPortGroup>, AccessState)> = Vec::new();
    for (i, desc) in p[4..].chunks_exact(4).enumerate() {
        let at = 4 + 4 * i;
        let state = match AccessState::from_code(desc[0] & 0x0f) {
            Some(AccessState::Transitioning) | None => {
                return Err(Sense::invalid_param_field(at, Some(3)))
            }
            Some(s) => s,
        };
        let id = u16::from_be_bytes([desc[2], desc[3]]);
        let Some((g, _)) = groups.get(&id) else {
            return Err(Sense::invalid_param_field(at + 2, Some(7)));
        };
        if asked.iter().any(|(a, _)| a.id() == id) {
            // The same group twice: SPC-4 leaves no room for two answers.
            return Err(Sense::invalid_param_field(at + 2, Some(7)));
        }
        asked.push((g.clone(), state));
    }
    let cause = Cause::Explicit {
        nexus: c.nexus.id(),
    };
    for (g, state) in asked {
        g.set_state(state, cause);
    }
    Ok(Vec::new())
}
