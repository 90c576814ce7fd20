//! Full feature phase of one connection (RFC 7143, error recovery level 0):
//! SCSI commands and their Data-Out / R2T, task management, NOP, Text and
//! Logout. The reader loop here owns all per-connection transfer state, so
//! none of it needs a lock; command execution runs in spawned tasks that
//! report back through the writer's channel.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtgt_scsi::fabric::decode_lun;
use rtgt_scsi::{Cdb, IoBuf};
use rtgt_scsi::{
    Command, DataDirection, ExecOutcome, Nexus, Prepared, Response, Sense, TaskAttr, TmfFunction,
    TmfResult,
};
use tokio::io::AsyncRead;
use tokio::sync::oneshot;

use crate::budget::{Budget, Charge};
use crate::discovery::{answer_text, TargetPortals, TextContext, TextExchange, TextRequest};
use crate::negotiation::SessionType;
use crate::outbox::Outbox;
use crate::pdu::{op, reject, Bhs, RESERVED_TAG};
use crate::stats::{CommandKind, Completion, LuSlot, LunSlots, SessionStats};
use crate::window::{Admit, Slot, Window};
use crate::wire::{sn_lt, Incoming, Outgoing, PduReader, ReadError, ScsiReply, SendLimits};

/// What the negotiation settled that the full feature phase needs.
#[derive(Debug, Clone)]
pub struct FfpParams {
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub first_burst: u32,
    pub max_burst: u32,
    pub max_outstanding_r2t: u32,
    /// Our MaxRecvDataSegmentLength: the largest data segment we accept.
    pub max_recv_dsl: u32,
}

/// What Text requests in full feature phase may learn (SendTargets).
pub struct TextService {
    pub session_type: SessionType,
    pub session_target: Option<String>,
    pub targets: Vec<TargetPortals>,
    pub local: SocketAddr,
    pub exchange: TextExchange,
}

/// Liveness shared between the reader and the connection's watchdog.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// Milliseconds since `start` at the last received PDU.
    last_rx: AtomicU64,
    /// Milliseconds since `start` at which the write that has waited
    /// longest for its Data-Out last made progress; `u64::MAX`: none waits.
    data_wait_since: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            start: Instant::now(),
            last_rx: AtomicU64::new(0),
            data_wait_since: AtomicU64::new(u64::MAX),
        }
    }
}

impl Liveness {
    fn touch(&self) {
        self.last_rx
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn set_data_wait(&self, since: Option<Instant>) {
        let ms = since.map_or(u64::MAX, |t| {
            t.duration_since(self.start).as_millis() as u64
        });
        self.data_wait_since.store(ms, Ordering::Relaxed);
    }

    /// How long the write that waits longest has had no Data-Out.
    pub fn data_out_wait(&self) -> Option<Duration> {
        let since = self.data_wait_since.load(Ordering::Relaxed);
        (since != u64::MAX).then(|| {
            let now = self.start.elapsed().as_millis() as u64;
            Duration::from_millis(now.saturating_sub(since))
        })
    }

    /// Time since the last PDU arrived.
    pub fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_rx.load(Ordering::Relaxed)))
    }
}

/// ABORTED COMMAND sense for Data-Out that breaks the sequence rules.
const DATA_PHASE_ERROR: Sense = Sense::new(0x0b, 0x4b, 0x00);
const DATA_OFFSET_ERROR: Sense = Sense::new(0x0b, 0x4b, 0x05);
const INVALID_TTT: Sense = Sense::new(0x0b, 0x4b, 0x01);

/// Target transfer tag used for our NOP-In pings.
pub const PING_TTT: u32 = 0x7fff_fffe;

/// Why the full feature phase ended.
#[derive(Debug)]
pub enum End {
    /// Orderly logout; the response has been flushed.
    Logout,
    /// The initiator closed the connection.
    Closed,
    /// A protocol violation or I/O error; the connection is dropped.
    Error(String),
}

/// Bookkeeping of one command carried with its execution.
#[derive(Clone)]
struct CmdMeta {
    itt: u32,
    lun: [u8; 8],
    edtl: u32,
    read: bool,
    write: bool,
    /// Data-Out bytes the CDB called for.
    needed: u32,
    /// Data-Out bytes it executed with.
    data_out: u32,
    /// When the command was received, and where it is counted.
    start: Instant,
    kind: CommandKind,
    slot: Option<Arc<LuSlot>>,
}

/// What a command holds until it ends: its place in the command window
/// and its share of the data budget (both given back when dropped).
#[derive(Default)]
struct Held {
    slot: Option<Slot>,
    charge: Charge,
}

/// An outstanding R2T.
struct R2tState {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    next_datasn: u32,
}

/// A write command collecting its Data-Out.
struct WriteXfer {
    prepared: Prepared,
    /// Its place in the command window and its data budget: dropping the
    /// transfer (abort, reset, connection loss) gives them back.
    held: Held,
    meta: CmdMeta,
    /// Where the Data-Out lands, the buffer the backstore writes from:
    /// taken when the first byte arrives, not on the announced length
    /// alone.
    buf: Option<IoBuf>,
    /// Bytes the command will take.
    total: usize,
    received: usize,
    /// Last time data for it arrived (or it was received).
    since: Instant,
    /// Unsolicited data the initiator may still send (bytes, from offset 0).
    unsolicited_end: u32,
    /// Offset the next unsolicited Data-Out must carry (DataPDUInOrder).
    unsolicited_next: u32,
    unsolicited_datasn: u32,
    /// Next offset to solicit with an R2T.
    next_solicit: u32,
    r2t_sn: u32,
    r2ts: VecDeque<R2tState>,
}

pub struct Ffp {
    /// None in a discovery session, which carries no SCSI.
    pub nexus: Option<Arc<Nexus>>,
    pub window: Arc<Window>,
    pub tx: Outbox,
    pub params: FfpParams,
    pub liveness: Arc<Liveness>,
    pub text: TextService,
    pub limits: Arc<SendLimits>,
    writes: HashMap<u32, WriteXfer>,
    /// (last progress, ITT) of every write waiting for Data-Out.
    waiting: BTreeSet<(Instant, u32)>,
    /// The process-wide data budget commands are charged against.
    budget: Option<Arc<Budget>>,
    /// Where commands are counted (none: not counted).
    stats: Option<LunSlots>,
    next_ttt: u32,
}

impl Ffp {
    pub fn new(
        nexus: Option<Arc<Nexus>>,
        window: Arc<Window>,
        tx: Outbox,
        params: FfpParams,
        liveness: Arc<Liveness>,
        text: TextService,
        limits: Arc<SendLimits>,
    ) -> Self {
        Ffp {
            nexus,
            window,
            tx,
            params,
            liveness,
            text,
            limits,
            writes: HashMap::new(),
            waiting: BTreeSet::new(),
            budget: None,
            stats: None,
            next_ttt: 1,
        }
    }

    /// Charge every READ and WRITE against `budget` before it enters a
    /// task set.
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Count every command that ends with a status in `stats`.
    pub fn with_stats(mut self, stats: Arc<SessionStats>) -> Self {
        self.stats = Some(LunSlots::new(stats));
        self
    }

    /// Process PDUs until logout, close or error.
    pub async fn run<R: AsyncRead + Unpin>(&mut self, reader: &mut PduReader<R>) -> End {
        reader.max_data = self.params.max_recv_dsl as usize;
        loop {
            // Replies the initiator has not taken yet hold back new work.
            self.tx.backlog().wait_for_room().await;
            let inc = match reader.read_header().await {
                Ok(i) => i,
                Err(ReadError::Closed) => return End::Closed,
                Err(e) => return End::Error(e.to_string()),
            };
            self.liveness.touch();
            crate::busy_poll::activity();
            let res = match inc.bhs.opcode() {
                op::SCSI_CMD | op::DATA_OUT | op::TMF_REQ if self.nexus.is_none() => {
                    // Discovery sessions carry only Text, NOP and Logout.
                    let _ = self
                        .skip_and_reject(reader, inc, reject::PROTOCOL_ERROR)
                        .await;
                    Err("SCSI in a discovery session".into())
                }
                op::SCSI_CMD => self.on_command(reader, inc).await,
                op::DATA_OUT => self.on_data_out(reader, inc).await,
                op::NOP_OUT => self.on_nop_out(reader, inc).await,
                op::TMF_REQ => self.on_tmf(reader, inc).await,
                op::TEXT_REQ => self.on_text(reader, inc).await,
                op::LOGOUT_REQ => match self.on_logout(reader, inc).await {
                    Ok(()) => return End::Logout,
                    Err(e) => Err(e),
                },
                op::SNACK_REQ => {
                    // Error recovery level 0 has no SNACK.
                    self.skip_and_reject(reader, inc, reject::PROTOCOL_ERROR)
                        .await
                }
                op::LOGIN_REQ => {
                    let _ = self
                        .skip_and_reject(reader, inc, reject::PROTOCOL_ERROR)
                        .await;
                    Err("login request in full feature phase".into())
                }
                _ => {
                    self.skip_and_reject(reader, inc, reject::COMMAND_NOT_SUPPORTED)
                        .await
                }
            };
            if let Err(e) = res {
                return End::Error(e);
            }
        }
    }

    /// Park a write that waits for Data-Out.
    fn park(&mut self, mut x: WriteXfer) {
        // A reused task tag replaces the write it named (whose slot and
        // task go with it).
        self.unpark(x.meta.itt);
        x.since = Instant::now();
        self.waiting.insert((x.since, x.meta.itt));
        self.writes.insert(x.meta.itt, x);
        self.publish_wait();
    }

    /// Tell the watchdog since when the longest-waiting write has had no
    /// data (only where `waiting` changes, not per PDU).
    fn publish_wait(&self) {
        self.liveness
            .set_data_wait(self.waiting.first().map(|(t, _)| *t));
    }

    /// Take a parked write out.
    fn unpark(&mut self, itt: u32) -> Option<WriteXfer> {
        let x = self.writes.remove(&itt)?;
        self.waiting.remove(&(x.since, itt));
        self.publish_wait();
        Some(x)
    }

    /// Forget parked writes that task management ended.
    fn drop_writes(&mut self, keep: impl Fn(&WriteXfer) -> bool) {
        self.writes.retain(|_, x| keep(x));
        let writes = &self.writes;
        self.waiting.retain(|(_, itt)| writes.contains_key(itt));
        self.publish_wait();
    }

    fn send(&self, bhs: Bhs, data: Bytes) {
        self.tx.send(Outgoing::Pdu { bhs, data });
    }

    /// Wait until everything queued so far is on the wire.
    async fn flush(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        self.tx.send(Outgoing::Flush(done_tx));
        let _ = done_rx.await;
    }

    fn send_reject(&self, rejected: &Bhs, reason: u8) {
        let mut b = Bhs::new(op::REJECT);
        b.set_flags(0x80);
        b.0[2] = reason;
        b.set_itt(RESERVED_TAG);
        self.send(b, Bytes::copy_from_slice(&rejected.0));
    }

    async fn skip_and_reject<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
        reason: u8,
    ) -> Result<(), String> {
        read_skip(reader, &inc).await?;
        self.send_reject(&inc.bhs, reason);
        Ok(())
    }

    /// CmdSN acceptance (RFC 7143 3.2.2.1): `None` when the PDU must be
    /// silently ignored (out of order, or past MaxCmdSN); otherwise the
    /// window slot a SCSI command (`holds_slot`) keeps until it ends.
    fn admit(&self, bhs: &Bhs, holds_slot: bool) -> Option<Option<Slot>> {
        match self.window.admit(bhs.cmdsn(), bhs.immediate(), holds_slot) {
            Admit::Immediate => Some(None),
            Admit::InOrder(slot) => Some(slot),
            Admit::Ignore => {
                tracing::debug!(
                    cmdsn = bhs.cmdsn(),
                    exp = self.window.exp_cmdsn(),
                    max = self.window.max_cmdsn(),
                    "CmdSN outside the window; ignoring PDU"
                );
                None
            }
        }
    }

    async fn on_command<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let start = Instant::now();
        let bhs = inc.bhs;
        let Some(slot) = self.admit(&bhs, true) else {
            return read_skip(reader, &inc).await;
        };
        // The data it may move, charged before it enters a task set. No
        // command moves more than the largest transfer the LU allows.
        let charge = match (&self.budget, bhs.u32_at(20)) {
            (Some(b), edtl) if edtl > 0 => {
                b.charge(u64::from(edtl).min(rtgt_scsi::MAX_TRANSFER_BYTES as u64))
                    .await
            }
            _ => Charge::default(),
        };
        let held = Held { slot, charge };
        let flags = bhs.flags();
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let attr = match flags & 0x07 {
            0 | 1 => TaskAttr::Simple,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            _ => TaskAttr::Aca,
        };
        let edtl = bhs.u32_at(20);
        // Extended CDB AHS (type 1): the bytes beyond the 16th.
        let cdb = if inc.ahs.len() >= 4 && inc.ahs[2] == 1 {
            let ahs_len = u16::from_be_bytes([inc.ahs[0], inc.ahs[1]]) as usize;
            let end = (4 + ahs_len.saturating_sub(1)).min(inc.ahs.len());
            let mut cdb = bhs.0[32..48].to_vec();
            cdb.extend_from_slice(&inc.ahs[4..end]);
            Cdb::from(cdb)
        } else {
            Cdb::from(&bhs.0[32..48])
        };
        let dir = match (read, write) {
            (false, false) => DataDirection::None,
            (true, false) => DataDirection::Read,
            (false, true) => DataDirection::Write,
            (true, true) => DataDirection::Bidirectional,
        };
        let itt = bhs.itt();
        let kind = CommandKind::of(&cdb);
        let cmd = Command {
            lun: decode_lun(bhs.lun()),
            cdb,
            tag: itt as u64,
            attr,
            expected_len: edtl,
            dir,
        };
        let stat_slot = self
            .stats
            .as_mut()
            .map(|s| s.slot(self.nexus.as_ref(), cmd.lun));
        let mut meta = CmdMeta {
            itt,
            lun: bhs.lun(),
            edtl,
            read,
            write,
            needed: 0,
            data_out: 0,
            start,
            kind,
            slot: stat_slot,
        };
        let nexus = self.nexus.as_ref().expect("normal session");
        let prepared = match nexus.prepare(cmd) {
            Ok(p) => p,
            Err(resp) => {
                read_skip(reader, &inc).await?;
                complete(&self.tx, held, meta, resp);
                return Ok(());
            }
        };
        meta.needed = prepared.data_out_len();
        let xfer_len = if write { meta.needed.min(edtl) } else { 0 } as usize;
        let imm = bhs.data_len();
        if imm > 0 && !self.params.immediate_data {
            // Immediate data that was not negotiated.
            read_skip(reader, &inc).await?;
            drop(held);
            self.send_reject(&bhs, reject::PROTOCOL_ERROR);
            return Ok(());
        }
        let keep = imm.min(xfer_len);
        // The buffer is filled before anyone reads it: here, by immediate
        // data, or PDU by PDU (in order, no overlap) before it executes.
        let mut buf = (keep > 0).then(|| IoBuf::with_len(xfer_len));
        let dst = buf.as_mut().map_or(&mut [][..], |b| &mut b[..keep]);
        reader
            .read_data_prefix(&inc, dst)
            .await
            .map_err(|e| e.to_string())?;
        if keep == xfer_len {
            spawn_exec(&self.tx, held, prepared, buf.unwrap_or_default(), meta);
            return Ok(());
        }
        // F=1 on the command: no unsolicited Data-Out follows (RFC 7143
        // 11.3.1); solicit the rest right after the immediate data.
        let unsolicited_end = if self.params.initial_r2t || flags & 0x80 != 0 {
            imm as u32
        } else {
            (self.params.first_burst.min(edtl)).max(imm as u32)
        };
        let mut x = WriteXfer {
            prepared,
            held,
            meta,
            buf,
            total: xfer_len,
            received: keep,
            since: Instant::now(),
            unsolicited_end,
            unsolicited_next: imm as u32,
            unsolicited_datasn: 0,
            next_solicit: unsolicited_end.min(xfer_len as u32),
            r2t_sn: 0,
            r2ts: VecDeque::new(),
        };
        self.solicit(&mut x);
        self.park(x);
        Ok(())
    }

    /// Send R2Ts up to MaxOutstandingR2T for data not yet solicited.
    fn solicit(&mut self, x: &mut WriteXfer) {
        let total = x.total as u32;
        while x.next_solicit < total
            && (x.r2ts.len() as u32) < self.params.max_outstanding_r2t.max(1)
        {
            let len = (total - x.next_solicit).min(self.params.max_burst);
            let ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1);
            if self.next_ttt == RESERVED_TAG || self.next_ttt == PING_TTT {
                self.next_ttt = 1;
            }
            let mut b = Bhs::new(op::R2T);
            b.set_flags(0x80);
            b.set_lun(x.meta.lun);
            b.set_itt(x.meta.itt);
            b.set_u32_at(20, ttt);
            b.set_u32_at(36, x.r2t_sn);
            b.set_u32_at(40, x.next_solicit);
            b.set_u32_at(44, len);
            self.send(b, Bytes::new());
            x.r2ts.push_back(R2tState {
                ttt,
                offset: x.next_solicit,
                len,
                received: 0,
                next_datasn: 0,
            });
            x.r2t_sn += 1;
            x.next_solicit += len;
        }
    }

    async fn on_data_out<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let bhs = inc.bhs;
        let itt = bhs.itt();
        let Some(mut x) = self.unpark(itt) else {
            // Data for a task that completed or was aborted: drop it.
            return read_skip(reader, &inc).await;
        };
        let ttt = bhs.ttt();
        let datasn = bhs.u32_at(36);
        let offset = bhs.u32_at(40);
        let len = bhs.data_len() as u32;
        let end = offset.saturating_add(len);
        // Sequence errors end the command, not the connection: at ERL 0
        // the data cannot be recovered, but the session can go on.
        let fault = if ttt == RESERVED_TAG {
            if datasn != x.unsolicited_datasn {
                Some((
                    DATA_PHASE_ERROR,
                    format!(
                        "unsolicited DataSN {datasn}, expected {}",
                        x.unsolicited_datasn
                    ),
                ))
            } else if end > x.unsolicited_end {
                Some((
                    DATA_OFFSET_ERROR,
                    format!("unsolicited data to {end} beyond {}", x.unsolicited_end),
                ))
            } else if offset != x.unsolicited_next {
                Some((
                    DATA_OFFSET_ERROR,
                    format!(
                        "unsolicited data at {offset}, expected {}",
                        x.unsolicited_next
                    ),
                ))
            } else {
                x.unsolicited_datasn += 1;
                x.unsolicited_next = end;
                None
            }
        } else {
            match x.r2ts.iter_mut().find(|r| r.ttt == ttt) {
                None => Some((INVALID_TTT, format!("unknown TTT {ttt:#x}"))),
                Some(r) if datasn != r.next_datasn => Some((
                    DATA_PHASE_ERROR,
                    format!("DataSN {datasn}, expected {}", r.next_datasn),
                )),
                Some(r) if offset < r.offset || end > r.offset + r.len => Some((
                    DATA_OFFSET_ERROR,
                    format!("offset {offset}+{len} outside R2T {}+{}", r.offset, r.len),
                )),
                // DataPDUInOrder=Yes: each PDU continues where the last one
                // ended, so the bytes counted are the bytes written.
                Some(r) if offset != r.offset + r.received => Some((
                    DATA_OFFSET_ERROR,
                    format!(
                        "offset {offset}, expected {} in R2T {}+{}",
                        r.offset + r.received,
                        r.offset,
                        r.len
                    ),
                )),
                Some(r) => {
                    r.next_datasn += 1;
                    r.received += len;
                    None
                }
            }
        };
        if let Some((sense, why)) = fault {
            tracing::debug!(itt, "Data-Out error: {why}");
            read_skip(reader, &inc).await?;
            let resp = x.prepared.fail(sense);
            complete(&self.tx, x.held, x.meta, resp);
            return Ok(());
        }
        let total = x.total;
        let start = (offset as usize).min(total);
        let keep = (end as usize).min(total) - start;
        let dst = if keep > 0 {
            let buf = x.buf.get_or_insert_with(|| IoBuf::with_len(total));
            &mut buf[start..start + keep]
        } else {
            &mut [][..]
        };
        reader
            .read_data_prefix(&inc, dst)
            .await
            .map_err(|e| e.to_string())?;
        x.received += keep;
        // Retire R2Ts whose data has all arrived, and solicit more.
        while x.r2ts.front().is_some_and(|r| r.received >= r.len) {
            x.r2ts.pop_front();
        }
        if x.received >= total {
            let buf = x.buf.unwrap_or_default();
            spawn_exec(&self.tx, x.held, x.prepared, buf, x.meta);
        } else {
            self.solicit(&mut x);
            self.park(x);
        }
        Ok(())
    }

    async fn on_nop_out<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let bhs = inc.bhs;
        let data = read_vec(reader, &inc).await?;
        if bhs.itt() == RESERVED_TAG {
            // The answer to our ping (or a NOP-Out that wants no answer);
            // receiving it already counted as activity.
            return Ok(());
        }
        if self.admit(&bhs, false).is_none() {
            return Ok(());
        }
        let mut b = Bhs::new(op::NOP_IN);
        b.set_flags(0x80);
        b.set_lun(bhs.lun());
        b.set_itt(bhs.itt());
        b.set_u32_at(20, RESERVED_TAG);
        self.send(b, Bytes::from(data));
        Ok(())
    }

    async fn on_tmf<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let bhs = inc.bhs;
        read_skip(reader, &inc).await?;
        if self.admit(&bhs, false).is_none() {
            return Ok(());
        }
        let lun = decode_lun(bhs.lun());
        let ref_tag = bhs.u32_at(20);
        let ref_cmdsn = bhs.u32_at(32);
        let function = bhs.flags() & 0x7f;
        let f = match function {
            1 => Some(TmfFunction::AbortTask {
                lun,
                tag: ref_tag as u64,
            }),
            2 => Some(TmfFunction::AbortTaskSet { lun }),
            4 => Some(TmfFunction::ClearTaskSet { lun }),
            5 => Some(TmfFunction::LogicalUnitReset { lun }),
            6 | 7 => Some(TmfFunction::TargetReset),
            _ => None,
        };
        let response: u8 = match f {
            // CLEAR ACA (we never establish ACA), TASK REASSIGN (needs ERL 2).
            None if function == 8 => 4,
            None => 5,
            Some(f) => {
                let nexus = self.nexus.as_ref().expect("normal session");
                let r = nexus.task_management(f).await;
                // Forget Data-Out collection of the tasks it ended.
                match f {
                    TmfFunction::AbortTask { .. } => {
                        if r == TmfResult::Complete {
                            self.unpark(ref_tag);
                        }
                    }
                    TmfFunction::TargetReset => self.drop_writes(|_| false),
                    _ => {
                        let raw = bhs.lun();
                        self.drop_writes(|x| x.meta.lun != raw);
                    }
                }
                match r {
                    TmfResult::Complete => 0,
                    TmfResult::TaskNotFound => {
                        // RFC 7143 11.5.1: a referenced command not yet
                        // received (its CmdSN still inside the window and
                        // before this request's) counts as aborted; one
                        // that already completed does not exist.
                        let exp = self.window.exp_cmdsn();
                        let max = self.window.max_cmdsn();
                        let in_window = !sn_lt(ref_cmdsn, exp) && !sn_lt(max, ref_cmdsn);
                        if in_window && sn_lt(ref_cmdsn, bhs.cmdsn()) {
                            0
                        } else {
                            1
                        }
                    }
                    TmfResult::LunNotFound => 2,
                    TmfResult::NotSupported => 5,
                    TmfResult::Rejected => 255,
                }
            }
        };
        let mut b = Bhs::new(op::TMF_RSP);
        b.set_flags(0x80);
        b.0[2] = response;
        b.set_itt(bhs.itt());
        self.send(b, Bytes::new());
        if function == 7 && response == 0 {
            // TARGET COLD RESET: after the response the target drops its
            // connections (RFC 7143 11.5.1).
            self.flush().await;
            return Err("target cold reset".into());
        }
        Ok(())
    }

    async fn on_text<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let bhs = inc.bhs;
        let data = read_vec(reader, &inc).await?;
        if self.admit(&bhs, false).is_none() {
            return Ok(());
        }
        let req = TextRequest::from_bhs(&bhs, data);
        let max_send = self.limits.max_send_dsl.load(Ordering::Relaxed);
        let t = &mut self.text;
        let mut new_limit = None;
        let result = {
            let ctx = TextContext {
                session_type: t.session_type,
                session_target: t.session_target.as_deref(),
                targets: &t.targets,
                local_addr: Some(t.local),
            };
            t.exchange.step(&req, max_send, |keys| {
                let a = answer_text(keys, &ctx);
                new_limit = a.max_send_dsl;
                a.pairs
            })
        };
        match result {
            Ok(resp) => {
                let mut b = resp.to_bhs();
                b.set_lun(bhs.lun());
                self.send(b, Bytes::from(resp.data));
            }
            Err(rej) => {
                tracing::debug!("text request rejected: {}", rej.why);
                self.send_reject(&bhs, rej.reason);
            }
        }
        if let Some(n) = new_limit {
            self.limits.max_send_dsl.store(n, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn on_logout<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut PduReader<R>,
        inc: Incoming,
    ) -> Result<(), String> {
        let bhs = inc.bhs;
        read_skip(reader, &inc).await?;
        // Logout is answered even out of order: the initiator is leaving.
        let _ = self.admit(&bhs, false);
        let reason = bhs.flags() & 0x7f;
        // Let running commands answer first, so that nothing follows the
        // Logout Response on the wire.
        self.drop_writes(|_| false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.window.outstanding() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut b = Bhs::new(op::LOGOUT_RSP);
        b.set_flags(0x80);
        b.0[2] = match reason {
            0 | 1 => 0,
            // Removing a connection for recovery needs ERL 2.
            _ => 2,
        };
        b.set_itt(bhs.itt());
        self.send(b, Bytes::new());
        self.flush().await;
        Ok(())
    }
}

async fn read_skip<R: AsyncRead + Unpin>(
    reader: &mut PduReader<R>,
    inc: &Incoming,
) -> Result<(), String> {
    reader.skip_data(inc).await.map_err(|e| e.to_string())
}

async fn read_vec<R: AsyncRead + Unpin>(
    reader: &mut PduReader<R>,
    inc: &Incoming,
) -> Result<Vec<u8>, String> {
    reader.read_data_vec(inc).await.map_err(|e| e.to_string())
}

fn spawn_exec(tx: &Outbox, held: Held, prepared: Prepared, buf: IoBuf, mut meta: CmdMeta) {
    meta.data_out = buf.len() as u32;
    let tx = tx.clone();
    let mut fut = Box::pin(async move {
        match prepared.execute(buf).await {
            ExecOutcome::Done(resp) => complete(&tx, held, meta, resp),
            // No response (TAS=0); what it held goes with it.
            ExecOutcome::Aborted => drop(held),
        }
    });
    // Most commands on a RAM disk (and every refused one) finish without
    // waiting: run them right here and skip a task hand-off. Anything that
    // waits (its turn in the task set, blocking I/O) becomes a task; it
    // registers its real waker when the runtime polls it again.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(fut);
    }
}

/// Queue a command's reply, with residuals (RFC 7143 11.4.5).
fn complete(tx: &Outbox, held: Held, meta: CmdMeta, resp: Response) {
    // Open the window before the reply goes out so the reply carries it;
    // the data budget goes back once the writer has sent the data.
    drop(held.slot);
    let (flags, residual, data) = if (meta.write || meta.needed > 0) && !meta.read {
        // Residuals of a write compare what the CDB needed with what the
        // initiator expected to send: nothing at all without the W bit
        // (RFC 7143 11.4.5), so a data-out CDB sent without it overflows
        // by all it needed, never a plain GOOD.
        let announced = if meta.write { meta.edtl } else { 0 };
        let (f, r) = residual(meta.needed as usize, announced as usize);
        (f, r, Bytes::new())
    } else {
        let produced = resp.data.len();
        let (f, r) = residual(produced, meta.edtl as usize);
        // The Data-In leaves from the buffer the backstore read into; it
        // goes back to the pool once the writer has sent it.
        let mut data = Bytes::from_owner(resp.data);
        if meta.read {
            data.truncate(meta.edtl as usize);
        } else {
            data = Bytes::new();
        }
        (f, r, data)
    };
    if let Some(slot) = &meta.slot {
        slot.counters.record(&Completion {
            kind: meta.kind,
            status: resp.status,
            data_in: data.len() as u64,
            data_out: meta.data_out.into(),
            latency: meta.start.elapsed(),
        });
    }
    tx.send(Outgoing::Scsi(ScsiReply {
        itt: meta.itt,
        lun: meta.lun,
        status: resp.status,
        sense: resp.sense,
        data,
        residual_flags: flags,
        residual,
        charge: held.charge,
    }));
}

/// Residual flags (O = 0x04, U = 0x02) and count for `actual` bytes of a
/// transfer the initiator expected to be `expected` bytes.
fn residual(actual: usize, expected: usize) -> (u8, u32) {
    use std::cmp::Ordering::*;
    match actual.cmp(&expected) {
        Equal => (0, 0),
        Greater => (0x04, (actual - expected) as u32),
        Less => (0x02, (expected - actual) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::residual;

    #[test]
    fn residual_flags() {
        assert_eq!(residual(512, 512), (0, 0));
        assert_eq!(residual(512, 0), (0x04, 512));
        assert_eq!(residual(512, 10000), (0x02, 10000 - 512));
        assert_eq!(residual(1024, 512), (0x04, 512));
    }
}
