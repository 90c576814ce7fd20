//! Fuzz entry points of the SCSI core (`fuzz/` at the repository root runs
//! them under libFuzzer; `crates/rtgt/tests/fuzz_corpus.rs` replays the
//! committed seed corpus through them on the stable toolchain).
//!
//! Each entry point takes arbitrary bytes and must not panic on any input;
//! the assertions in here are invariants, and a failed one is a finding.
//! Every run builds its own small RAM logical unit, so runs do not share
//! state.
//!
//! - [`cdb`]: one CDB (any opcode, any length up to 32 bytes) plus its
//!   Data-Out, through `Nexus::prepare` and `Prepared::execute`.
//! - [`param_list`]: a sequence of commands with parameter lists (PERSISTENT
//!   RESERVE OUT, MODE SELECT, UNMAP, EXTENDED COPY, WRITE SAME, COMPARE AND
//!   WRITE, WRITE ATOMIC, ORWRITE) with well-formed CDBs, from two nexuses.
//!
//! The helpers ([`ram_lu`], [`nexus_for`], [`check_response`],
//! [`task_set_drained`]) are public so that fabric crates' fuzz entry
//! points can use the same fixtures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtgt_backstore::RamDisk;

use crate::api::{
    status, Command, DataDirection, ExecOutcome, LunMap, MappedLun, Nexus, Response, TargetPort,
    TaskAttr,
};
use crate::core::sense::Sense;
use crate::lu::{LogicalUnit, LuConfig};
use crate::state_store::MemoryStore;

/// Size of the logical unit every run gets.
pub const LU_BYTES: u64 = 1 << 20;
/// Its logical block size.
pub const BLOCK: u32 = 512;
/// Longer inputs are ignored (keeps every run small).
pub const MAX_INPUT: usize = 64 * 1024;
/// Largest Data-Out buffer the harness pads a command's data to.
const MAX_PAD: usize = 1 << 20;
/// A command that has not completed after this long is a finding (nothing
/// on a RAM disk with an otherwise idle task set may wait).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Initiator port names of the two nexuses the harness uses.
pub const INITIATOR_A: &str = "iqn.1994-05.com.redhat:fuzz-a,i,0x23d000000001";
pub const INITIATOR_B: &str = "iqn.1994-05.com.redhat:fuzz-b,i,0x23d000000002";

/// Run `fut` to completion on this thread's current-thread runtime (with
/// timers), as a fabric would run the core. The runtime is made once per
/// thread and kept: building one per run would cost more than most runs.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    }
    RT.with(|rt| rt.block_on(fut))
}

/// A RAM logical unit of `bytes` (`block_size` 512 or 4096) with an
/// in-memory state store (so APTPL is supported) and SANITIZE unthrottled.
pub fn ram_lu(bytes: u64, block_size: u32) -> Arc<LogicalUnit> {
    let mut cfg = LuConfig::new("fuzz0", Arc::new(RamDisk::new(bytes, block_size)));
    cfg.sanitize_bytes_per_sec = 0;
    cfg.state = Some(Arc::new(MemoryStore::new()));
    LogicalUnit::new(cfg)
}

/// The target port every fuzz nexus comes through.
pub fn target_port() -> TargetPort {
    TargetPort {
        name: "iqn.2026-11.org.rtgt:fuzz,t,0x0001".to_string(),
        target_name: "iqn.2026-11.org.rtgt:fuzz".to_string(),
        relative_port_id: 1,
        group: crate::alua::TargetPortGroup::new(
            1,
            crate::alua::AccessState::ActiveOptimized,
            false,
        ),
    }
}

/// A nexus for `initiator_port` that maps `luns` (LUN, LU, read-only).
pub fn nexus_for(initiator_port: &str, luns: &[(u64, &Arc<LogicalUnit>, bool)]) -> Arc<Nexus> {
    let map: BTreeMap<u64, MappedLun> = luns
        .iter()
        .map(|(n, lu, ro)| {
            (
                *n,
                MappedLun {
                    lu: (*lu).clone(),
                    read_only: *ro,
                },
            )
        })
        .collect();
    Nexus::new(
        initiator_port.to_string(),
        Arc::new(target_port()),
        Arc::new(LunMap { luns: map }),
    )
}

/// Invariants of any response the core gives: a SAM status code, sense
/// exactly with CHECK CONDITION and decodable, no data unless the command
/// succeeded.
pub fn check_response(r: &Response) {
    assert!(
        matches!(
            r.status,
            status::GOOD
                | status::CHECK_CONDITION
                | status::CONDITION_MET
                | status::BUSY
                | status::RESERVATION_CONFLICT
                | status::TASK_SET_FULL
                | status::ACA_ACTIVE
                | status::TASK_ABORTED
        ),
        "status {:#04x} is not a SAM status",
        r.status
    );
    match &r.sense {
        Some(s) => {
            assert_eq!(
                r.status,
                status::CHECK_CONDITION,
                "sense data with status {:#04x}",
                r.status
            );
            assert!(
                Sense::decode(s).is_some(),
                "sense data that does not decode: {s:02x?}"
            );
        }
        None => assert_ne!(
            r.status,
            status::CHECK_CONDITION,
            "CHECK CONDITION without sense data"
        ),
    }
    if !matches!(r.status, status::GOOD | status::CONDITION_MET) {
        assert!(
            r.data.is_empty(),
            "{} data bytes with status {:#04x}",
            r.data.len(),
            r.status
        );
    }
}

static TAGS: AtomicU64 = AtomicU64::new(1);

fn next_tag() -> u64 {
    TAGS.fetch_add(1, Ordering::Relaxed)
}

/// Whether every task that entered `lu`'s task set has left it: an ORDERED
/// command from a new nexus may only start once all older tasks ended, so
/// it runs at once exactly when the task set is empty. Call it once no
/// command is in flight.
pub async fn task_set_drained(lu: &Arc<LogicalUnit>) -> bool {
    let probe = nexus_for("iqn.fuzz:probe,i,0x000000000000", &[(0, lu, false)]);
    let cmd = Command {
        lun: 0,
        cdb: [0x12, 0, 0, 0, 36, 0].into(),
        tag: next_tag(),
        attr: TaskAttr::Ordered,
        expected_len: 36,
        dir: DataDirection::Read,
    };
    let drained = match probe.prepare(cmd) {
        Err(r) => {
            check_response(&r);
            true
        }
        Ok(p) => tokio::time::timeout(Duration::from_secs(2), p.execute(Vec::new()))
            .await
            .is_ok(),
    };
    probe.close();
    drained
}

/// Run one command: `data` is the Data-Out offered (cut to what the CDB
/// needs); with `pad`, missing Data-Out is made up with zeroes (and the
/// expected length is left unknown). Checks the response invariants.
pub async fn run_command(
    nexus: &Arc<Nexus>,
    lun: u64,
    cdb: &[u8],
    data: &[u8],
    pad: bool,
) -> Option<Response> {
    let cmd = Command {
        lun,
        cdb: cdb.into(),
        tag: next_tag(),
        attr: TaskAttr::Simple,
        expected_len: if pad { 0 } else { data.len() as u32 },
        dir: if data.is_empty() && !pad {
            DataDirection::None
        } else {
            DataDirection::Write
        },
    };
    let r = match nexus.prepare(cmd) {
        Err(r) => r,
        Ok(p) => {
            let need = p.data_out_len() as usize;
            let mut buf = data[..data.len().min(need)].to_vec();
            if pad && buf.len() < need {
                buf.resize(need.min(MAX_PAD), 0);
            }
            match tokio::time::timeout(COMMAND_TIMEOUT, p.execute(buf)).await {
                Ok(ExecOutcome::Done(r)) => r,
                // PREEMPT AND ABORT may end the issuer's own tasks.
                Ok(ExecOutcome::Aborted) => return None,
                Err(_) => panic!("command {cdb:02x?} did not complete on an idle RAM LU"),
            }
        }
    };
    check_response(&r);
    Some(r)
}

/// TEST UNIT READY until no unit attention is left (or give up).
async fn clear_ua(nexus: &Arc<Nexus>) {
    for _ in 0..8 {
        match run_command(nexus, 0, &[0, 0, 0, 0, 0, 0], &[], false).await {
            Some(r) if r.status == status::CHECK_CONDITION => {
                let s = r.sense.as_deref().and_then(Sense::decode);
                if s.is_none_or(|s| s.key != crate::core::sense::key::UNIT_ATTENTION) {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// One CDB and its Data-Out.
///
/// Byte 0: bits 4:0 the CDB length - 1 (1..=32 bytes); bit 5: address LUN 1,
/// which is not mapped; bit 6: pad the Data-Out with zeroes to what the CDB
/// needs; bit 7: the LUN is mapped read-only. Then the CDB, then the
/// Data-Out. The nexus' power-on unit attention is cleared first.
pub fn cdb(data: &[u8]) {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let ctl = data[0];
    let len = ((ctl & 0x1f) as usize + 1).min(data.len() - 1);
    let (cdb, rest) = data[1..].split_at(len);
    block_on(async {
        let lu = ram_lu(LU_BYTES, BLOCK);
        let nexus = nexus_for(INITIATOR_A, &[(0, &lu, ctl & 0x80 != 0)]);
        clear_ua(&nexus).await;
        let lun = u64::from(ctl & 0x20 != 0);
        run_command(&nexus, lun, cdb, rest, ctl & 0x40 != 0).await;
        assert!(
            task_set_drained(&lu).await,
            "a task stayed in the task set after {cdb:02x?}"
        );
        nexus.close();
    });
}

/// Commands [`param_list`] chooses from (record byte 0, bits 4:0, modulo
/// this count): PERSISTENT RESERVE OUT service actions 0..=7, then the
/// others in this order.
pub const PARAM_COMMANDS: u8 = 17;
pub const PL_MODE_SELECT6: u8 = 8;
pub const PL_MODE_SELECT10: u8 = 9;
pub const PL_UNMAP: u8 = 10;
pub const PL_XCOPY: u8 = 11;
pub const PL_WRITE_SAME10: u8 = 12;
pub const PL_WRITE_SAME16: u8 = 13;
pub const PL_COMPARE_AND_WRITE: u8 = 14;
pub const PL_WRITE_ATOMIC16: u8 = 15;
pub const PL_ORWRITE16: u8 = 16;

/// Reservation keys the preamble registers for nexus A and B.
pub const KEY_A: u64 = 0x0a0a_0a0a_0a0a_0a0a;
pub const KEY_B: u64 = 0x0b0b_0b0b_0b0b_0b0b;

fn put_be(buf: &mut [u8], v: u64) {
    let n = buf.len();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (v >> (8 * (n - 1 - i))) as u8;
    }
}

/// The CDB of parameter-list command `sel` for a parameter list of `len`
/// bytes, `opt` (flags) and `arg` (LBA / 8); returns the CDB and the
/// Data-Out length it calls for.
pub fn param_cdb(sel: u8, opt: u8, arg: u8, len: usize) -> (Vec<u8>, usize) {
    let lba = u64::from(arg) * 8;
    let bs = BLOCK as usize;
    let blocks = |len: usize| len.div_ceil(bs).max(1);
    match sel % PARAM_COMMANDS {
        sa @ 0..=7 => {
            let mut c = vec![0x5f, sa, opt, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[5..9], len as u64);
            (c, len)
        }
        PL_MODE_SELECT6 => {
            let len = len.min(255);
            (vec![0x15, 0x10 | (opt & 1), 0, 0, len as u8, 0], len)
        }
        PL_MODE_SELECT10 => {
            let len = len.min(0xffff);
            let mut c = vec![0x55, 0x10 | (opt & 1), 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[7..9], len as u64);
            (c, len)
        }
        PL_UNMAP => {
            let len = len.min(0xffff);
            let mut c = vec![0x42, opt & 1, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[7..9], len as u64);
            (c, len)
        }
        PL_XCOPY => {
            let mut c = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[10..14], len as u64);
            (c, len)
        }
        PL_WRITE_SAME10 => {
            // UNMAP (bit 3); 1..=16 blocks.
            let n = 1 + u64::from(opt >> 4);
            let mut c = vec![0x41, opt & 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[2..6], lba);
            put_be(&mut c[7..9], n);
            (c, bs)
        }
        PL_WRITE_SAME16 => {
            // UNMAP (bit 3), NDOB (bit 0); 1..=16 blocks.
            let n = 1 + u64::from(opt >> 4);
            let mut c = vec![0x93, opt & 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[2..10], lba);
            put_be(&mut c[10..14], n);
            (c, if opt & 1 != 0 { 0 } else { bs })
        }
        PL_COMPARE_AND_WRITE => {
            let n = len.div_ceil(2 * bs).clamp(1, 255);
            let mut c = vec![0x89, opt & 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[2..10], lba);
            c[13] = n as u8;
            (c, 2 * n * bs)
        }
        PL_WRITE_ATOMIC16 => {
            let n = blocks(len).min(0xffff);
            let mut c = vec![0x9c, opt & 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[2..10], lba);
            put_be(&mut c[12..14], n as u64);
            (c, n * bs)
        }
        _ => {
            let n = blocks(len);
            let mut c = vec![0x8b, opt & 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            put_be(&mut c[2..10], lba);
            put_be(&mut c[10..14], n as u64);
            (c, n * bs)
        }
    }
}

/// A PERSISTENT RESERVE OUT parameter list (24 bytes).
pub fn pr_out_params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    put_be(&mut p[0..8], key);
    put_be(&mut p[8..16], sa_key);
    p[20] = flags;
    p
}

/// Commands with parameter lists, from two nexuses (A and B) on one LU.
///
/// The input is a sequence of records (at most 16):
/// `[sel, opt, arg, (len_hi, len_lo if sel bit 5), parameter list]`.
/// `sel` bits 4:0 pick the command (see [`param_cdb`]), bit 5 says the
/// record is length-prefixed and another record follows (otherwise the
/// parameter list is the rest of the input), bit 6 issues it from nexus B,
/// bit 7 (first record only) first registers [`KEY_A`] for A and
/// [`KEY_B`] for B. `opt` gives the CDB's flags (PR OUT: its byte 2, scope
/// and type), `arg` the LBA / 8 of block commands. Afterwards the PR IN
/// answers are checked for consistency and the task set must be empty.
pub fn param_list(data: &[u8]) {
    if data.len() < 3 || data.len() > MAX_INPUT {
        return;
    }
    block_on(async {
        let lu = ram_lu(LU_BYTES, BLOCK);
        let a = nexus_for(INITIATOR_A, &[(0, &lu, false)]);
        let b = nexus_for(INITIATOR_B, &[(0, &lu, false)]);
        clear_ua(&a).await;
        clear_ua(&b).await;
        if data[0] & 0x80 != 0 {
            for (n, key) in [(&a, KEY_A), (&b, KEY_B)] {
                let p = pr_out_params(0, key, 0);
                let (c, _) = param_cdb(0, 0, 0, p.len());
                run_command(n, 0, &c, &p, false).await;
            }
        }
        let mut rest = data;
        for _ in 0..16 {
            if rest.len() < 3 {
                break;
            }
            let (sel, opt, arg) = (rest[0], rest[1], rest[2]);
            rest = &rest[3..];
            let params = if sel & 0x20 != 0 {
                if rest.len() < 2 {
                    break;
                }
                let n = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
                let p = &rest[2..2 + n];
                rest = &rest[2 + n..];
                p
            } else {
                std::mem::take(&mut rest)
            };
            let (c, need) = param_cdb(sel & 0x1f, opt, arg, params.len());
            let mut p = params[..params.len().min(need)].to_vec();
            p.resize(need, 0);
            let nexus = if sel & 0x40 != 0 { &b } else { &a };
            run_command(nexus, 0, &c, &p, false).await;
            if sel & 0x20 == 0 {
                break;
            }
        }
        for n in [&a, &b] {
            clear_ua(n).await;
            check_pr_in(n).await;
        }
        // Nothing runs any more: every task must have left the task set.
        assert!(task_set_drained(&lu).await, "a task stayed in the task set");
        a.close();
        b.close();
    });
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// PERSISTENT RESERVE IN answers agree with their own length fields and
/// with each other.
async fn check_pr_in(n: &Arc<Nexus>) {
    let pr_in = |sa: u8| vec![0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, 0];
    let Some(keys) = run_command(n, 0, &pr_in(0), &[], false).await else {
        return;
    };
    if keys.status != status::GOOD {
        return;
    }
    let d = &keys.data;
    assert!(d.len() >= 8, "READ KEYS: {} bytes", d.len());
    let add = be32(&d[4..8]);
    assert_eq!(add % 8, 0, "READ KEYS additional length {add}");
    if d.len() < 0xffff {
        assert_eq!(add, d.len() - 8, "READ KEYS additional length {add}");
    }
    let registered = add / 8;

    if let Some(r) = run_command(n, 0, &pr_in(1), &[], false).await {
        if r.status == status::GOOD {
            let d = &r.data;
            assert!(d.len() >= 8, "READ RESERVATION: {} bytes", d.len());
            let add = be32(&d[4..8]);
            assert!(
                add == 0 || add == 16,
                "READ RESERVATION additional length {add}"
            );
            assert_eq!(add, d.len() - 8, "READ RESERVATION length");
            if add == 16 && registered == 0 {
                // Only the all-registrants types survive without a
                // registration, and they need one too (SPC-4 5.13.11).
                panic!("a persistent reservation with no registered key");
            }
        }
    }
    if let Some(r) = run_command(n, 0, &pr_in(3), &[], false).await {
        if r.status == status::GOOD {
            let d = &r.data;
            assert!(d.len() >= 8, "READ FULL STATUS: {} bytes", d.len());
            let add = be32(&d[4..8]);
            assert_eq!(add, d.len() - 8, "READ FULL STATUS additional length");
            // Walk the descriptors: 24 bytes + a TransportID each.
            let mut at = 8;
            let mut count = 0;
            while at < d.len() {
                assert!(at + 24 <= d.len(), "READ FULL STATUS: torn descriptor");
                let tid = be32(&d[at + 20..at + 24]);
                at += 24 + tid;
                count += 1;
            }
            assert_eq!(at, d.len(), "READ FULL STATUS: descriptor overrun");
            assert!(
                count >= registered,
                "READ FULL STATUS shows {count} registrations, READ KEYS {registered}"
            );
        }
    }
    if let Some(r) = run_command(n, 0, &pr_in(2), &[], false).await {
        if r.status == status::GOOD {
            assert!(
                r.data.len() >= 8,
                "REPORT CAPABILITIES: {} bytes",
                r.data.len()
            );
        }
    }
}
