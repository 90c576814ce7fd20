//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), answered from the opcode
//! table ([`crate::core::opcodes::OPS`]) that also dispatches the commands.

use crate::core::cdb::{be16, be32};
use crate::core::handler::{Decode, ExecCtx, Plan};
use crate::core::opcodes::{self, OpDesc, OPS};
use crate::core::sense::Sense;

const ALL: u8 = 0b000;
const ONE_OPCODE: u8 = 0b001;
const ONE_SERVICE_ACTION: u8 = 0b010;
const ONE_EITHER: u8 = 0b011;

pub(crate) fn decode(d: &Decode<'_>) -> Result<Plan, Sense> {
    let options = d.cdb[2] & 0x07;
    let opcode = d.cdb[3];
    let known = opcodes::find(opcode, be16(&d.cdb[4..6]) as u8).is_some()
        || opcodes::has_service_actions(opcode);
    match options {
        ALL | ONE_EITHER => {}
        // One opcode: invalid for an opcode that has service actions.
        ONE_OPCODE if opcodes::has_service_actions(opcode) => {
            return Err(Sense::invalid_cdb_field(3, Some(7)))
        }
        ONE_OPCODE => {}
        // Opcode and service action: invalid for an opcode without them.
        ONE_SERVICE_ACTION if known && !opcodes::has_service_actions(opcode) => {
            return Err(Sense::invalid_cdb_field(3, Some(7)))
        }
        ONE_SERVICE_ACTION => {}
        _ => return Err(Sense::invalid_cdb_field(2, Some(2))),
    }
    Ok(Plan::emulate(execute).with_alloc_len(be32(&d.cdb[6..10])))
}

/// Command timeouts descriptor (SPC-4 6.35.4).
fn timeouts(out: &mut Vec<u8>, op: &OpDesc) {
    out.extend_from_slice(&[0x00, 0x0a, 0, 0]);
    // Nominal: not specified; recommended: the table's timeout.
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&op.timeout.to_be_bytes());
}

/// Whether the LU offers `op`: SANITIZE BLOCK ERASE needs logical block
/// provisioning (a thin LU).
fn offered(op: &OpDesc, lu: Option<&crate::lu::LogicalUnit>) -> bool {
    !(op.opcode == 0x48
        && op.sa == Some(crate::sbc::sanitize::BLOCK_ERASE)
        && lu.is_some_and(|lu| !crate::sbc::sanitize::block_erase_offered(lu)))
}

fn execute(c: &ExecCtx<'_>) -> Result<Vec<u8>, Sense> {
    let rctd = c.cdb[2] & 0x80 != 0;
    let options = c.cdb[2] & 0x07;
    let opcode = c.cdb[3];
    let sa = be16(&c.cdb[4..6]);
    if options == ALL {
        let per = 8 + if rctd { 12 } else { 0 };
        let ops: Vec<&OpDesc> = OPS.iter().filter(|op| offered(op, c.lu)).collect();
        let mut d = Vec::with_capacity(4 + per * ops.len());
        d.extend_from_slice(&((per * ops.len()) as u32).to_be_bytes());
        for op in ops {
            d.push(op.opcode);
            d.push(0);
            d.extend_from_slice(&(op.sa.unwrap_or(0) as u16).to_be_bytes());
            d.push(0);
            d.push(if rctd { 0x02 } else { 0 } | if op.sa.is_some() { 0x01 } else { 0 });
            d.extend_from_slice(&(op.usage.len() as u16).to_be_bytes());
            if rctd {
                timeouts(&mut d, op);
            }
        }
        return Ok(d);
    }
    let found = match options {
        ONE_OPCODE => opcodes::find(opcode, 0).filter(|o| o.sa.is_none()),
        ONE_SERVICE_ACTION => {
            opcodes::find(opcode, sa as u8).filter(|o| o.sa.is_some() && sa <= 0x1f)
        }
        _ if opcodes::has_service_actions(opcode) => {
            opcodes::find(opcode, sa as u8).filter(|_| sa <= 0x1f)
        }
        _ => opcodes::find(opcode, 0).filter(|_| sa == 0),
    };
    let found = found.filter(|op| offered(op, c.lu));
    let mut d = vec![0u8, 0, 0, 0];
    match found {
        None => d[1] = 0b001, // not supported
        Some(op) => {
            d[1] = 0b011 | if rctd { 0x80 } else { 0 };
            d[2..4].copy_from_slice(&(op.usage.len() as u16).to_be_bytes());
            d.extend_from_slice(op.usage);
            if rctd {
                timeouts(&mut d, op);
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16) -> Vec<u8> {
        let mut c = vec![
            0xa3,
            0x0c,
            options | if rctd { 0x80 } else { 0 },
            opcode,
            0,
            0,
            0,
            0,
            0xff,
            0xff,
            0,
            0,
        ];
        c[4..6].copy_from_slice(&sa.to_be_bytes());
        c
    }

    #[tokio::test]
    async fn all_commands_from_the_table() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        let r = t.run(&rsoc(false, 0, 0, 0), &[]).await;
        assert_eq!(r.status, 0);
        let d = &r.data;
        assert_eq!(be32(&d[0..4]) as usize, d.len() - 4);
        assert_eq!(d.len(), 4 + 8 * OPS.len());
        for (i, op) in OPS.iter().enumerate() {
            let e = &d[4 + 8 * i..12 + 8 * i];
            assert_eq!(e[0], op.opcode);
            assert_eq!(be16(&e[2..4]), op.sa.unwrap_or(0) as u16);
            assert_eq!(e[5] & 0x01 != 0, op.sa.is_some(), "SERVACTV");
            assert_eq!(e[5] & 0x02, 0, "CTDP without RCTD");
            assert_eq!(be16(&e[6..8]) as usize, op.usage.len());
        }
        // With timeouts descriptors.
        let r = t.run(&rsoc(true, 0, 0, 0), &[]).await;
        let d = &r.data;
        assert_eq!(d.len(), 4 + 20 * OPS.len());
        for i in 0..OPS.len() {
            let e = &d[4 + 20 * i..24 + 20 * i];
            assert_eq!(e[5] & 0x02, 0x02, "CTDP");
            assert_eq!(be16(&e[8..10]), 0x0a);
        }
        // Allocation length truncates.
        let mut c = rsoc(false, 0, 0, 0);
        c[8] = 0;
        c[9] = 10;
        assert_eq!(t.run(&c, &[]).await.data.len(), 10);
    }

    #[tokio::test]
    async fn one_command() {
        let t = Fixture::new(1024, 512);
        t.clear_ua().await;
        // READ(10): usage data with DPO/FUA.
        let r = t.run(&rsoc(false, 1, 0x28, 0), &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.data[1] & 0x07, 0b011);
        assert_eq!(be16(&r.data[2..4]), 10);
        assert_eq!(r.data[4], 0x28);
        assert_eq!(r.data[5] & 0x18, 0x18);
        assert_eq!(r.data.len(), 14);
        // With RCTD.
        let r = t.run(&rsoc(true, 1, 0x28, 0), &[]).await;
        assert_eq!(r.data[1] & 0x80, 0x80);
        assert_eq!(r.data.len(), 14 + 12);
        // READ CAPACITY(16) needs its service action.
        let s = t.check(&rsoc(false, 1, 0x9e, 0x10)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 3));
        let r = t.run(&rsoc(false, 2, 0x9e, 0x10), &[]).await;
        assert_eq!(r.data[1] & 0x07, 0b011);
        assert_eq!(&r.data[4..6], &[0x9e, 0x10]);
        // Unknown service action / opcode: not supported (GOOD).
        assert_eq!(
            t.run(&rsoc(false, 2, 0x9e, 0x13), &[]).await.data,
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            t.run(&rsoc(false, 1, 0xc5, 0), &[]).await.data,
            vec![0, 1, 0, 0]
        );
        // Service-action format for an opcode without service actions.
        let s = t.check(&rsoc(false, 2, 0x28, 0)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 3));
        // 011b works both ways.
        assert_eq!(t.run(&rsoc(false, 3, 0x28, 0), &[]).await.data[1] & 7, 3);
        assert_eq!(t.run(&rsoc(false, 3, 0x28, 1), &[]).await.data[1] & 7, 1);
        assert_eq!(t.run(&rsoc(false, 3, 0xa3, 0x0c), &[]).await.data[1] & 7, 3);
        // Reserved reporting options.
        let s = t.check(&rsoc(false, 4, 0, 0)).await;
        assert_eq!((s.code(), s.field.unwrap().byte), (0x2400, 2));
        // Every entry reports itself with its usage data.
        for op in OPS {
            let options = if op.sa.is_some() { 2 } else { 1 };
            let r = t
                .run(
                    &rsoc(false, options, op.opcode, op.sa.unwrap_or(0) as u16),
                    &[],
                )
                .await;
            assert_eq!(&r.data[4..], op.usage, "{}", op.name);
        }
    }
}
