//! Moving PDUs between a TCP stream and the connection: the reader that
//! frames incoming PDUs (checking digests) and the writer task that stamps
//! sequence numbers and batches outgoing PDUs into vectored writes.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::pdu::{self, op, Bhs, BHS_LEN};

/// Digest settings of a connection, switched on after login.
#[derive(Debug, Default)]
pub struct Digests {
    pub header: AtomicBool,
    pub data: AtomicBool,
}

/// Why reading a PDU failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The header was fine; the data digest was not. The connection may
    /// answer with a Reject and go on (the data was consumed).
    #[error("data digest mismatch")]
    DataDigest(Bhs),
    #[error("data segment of {0} bytes exceeds MaxRecvDataSegmentLength {1}")]
    TooLong(usize, usize),
}

/// A received PDU whose data segment has not been read yet, so the caller
/// can choose where it goes (a command's write buffer, or a scratch Vec).
pub struct Incoming {
    pub bhs: Bhs,
    pub ahs: Vec<u8>,
}

/// Reads PDUs from one connection.
pub struct PduReader<R> {
    inner: R,
    digests: Arc<Digests>,
    /// Largest data segment we accept (our MaxRecvDataSegmentLength; during
    /// login the RFC's 8 KiB default).
    pub max_data: usize,
}

impl<R: AsyncRead + Unpin> PduReader<R> {
    pub fn new(inner: R, digests: Arc<Digests>) -> Self {
        PduReader {
            inner,
            digests,
            max_data: 8192,
        }
    }

    /// Read the BHS, AHS and header digest.
    pub async fn read_header(&mut self) -> Result<Incoming, ReadError> {
        let mut b = [0u8; BHS_LEN];
        match self.inner.read_exact(&mut b).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
            Err(e) => return Err(e.into()),
        }
        let bhs = Bhs(b);
        let mut ahs = Vec::new();
        if bhs.ahs_len() > 0 {
            ahs.resize(bhs.ahs_len(), 0);
            self.inner.read_exact(&mut ahs).await?;
        }
        if self.digests.header.load(Ordering::Relaxed) {
            let mut d = [0u8; 4];
            self.inner.read_exact(&mut d).await?;
            if u32::from_le_bytes(d) != pdu::digest(&[&bhs.0, &ahs]) {
                return Err(ReadError::HeaderDigest);
            }
        }
        if bhs.data_len() > self.max_data {
            return Err(ReadError::TooLong(bhs.data_len(), self.max_data));
        }
        Ok(Incoming { bhs, ahs })
    }

    /// Read the data segment of `inc` into `dst` (exactly `data_len`
    /// bytes), then padding and digest.
    pub async fn read_data_into(
        &mut self,
        inc: &Incoming,
        dst: &mut [u8],
    ) -> Result<(), ReadError> {
        debug_assert_eq!(dst.len(), inc.bhs.data_len());
        self.inner.read_exact(dst).await?;
        self.finish_data(inc, Some(dst)).await
    }

    /// Read and throw away the data segment (data for a task that no
    /// longer exists, or beyond what a command needs).
    pub async fn skip_data(&mut self, inc: &Incoming) -> Result<(), ReadError> {
        self.read_data_prefix(inc, &mut []).await
    }

    /// Read the data segment, keeping its first `dst.len()` bytes in `dst`
    /// and discarding the rest.
    pub async fn read_data_prefix(
        &mut self,
        inc: &Incoming,
        dst: &mut [u8],
    ) -> Result<(), ReadError> {
        let len = inc.bhs.data_len();
        debug_assert!(dst.len() <= len);
        self.inner.read_exact(dst).await?;
        let check = self.digests.data.load(Ordering::Relaxed);
        let mut crc = if check { crc32c::crc32c(dst) } else { 0 };
        let mut left = len - dst.len();
        let mut scratch = [0u8; 4096];
        while left > 0 {
            let n = left.min(scratch.len());
            self.inner.read_exact(&mut scratch[..n]).await?;
            if check {
                crc = crc32c::crc32c_append(crc, &scratch[..n]);
            }
            left -= n;
        }
        self.finish_data_crc(inc, crc).await
    }

    /// Read the data segment into a new Vec.
    pub async fn read_data_vec(&mut self, inc: &Incoming) -> Result<Vec<u8>, ReadError> {
        let mut v = vec![0u8; inc.bhs.data_len()];
        self.read_data_into(inc, &mut v).await?;
        Ok(v)
    }

    async fn finish_data(&mut self, inc: &Incoming, data: Option<&[u8]>) -> Result<(), ReadError> {
        let crc = match data {
            Some(d) if self.digests.data.load(Ordering::Relaxed) => crc32c::crc32c(d),
            _ => 0,
        };
        self.finish_data_crc(inc, crc).await
    }

    async fn finish_data_crc(&mut self, inc: &Incoming, crc: u32) -> Result<(), ReadError> {
        let len = inc.bhs.data_len();
        if len == 0 {
            return Ok(());
        }
        let pad = pdu::padded(len) - len;
        let mut tail = [0u8; 3];
        if pad > 0 {
            self.inner.read_exact(&mut tail[..pad]).await?;
        }
        if self.digests.data.load(Ordering::Relaxed) {
            let crc = crc32c::crc32c_append(crc, &tail[..pad]);
            let mut d = [0u8; 4];
            self.inner.read_exact(&mut d).await?;
            if u32::from_le_bytes(d) != crc {
                return Err(ReadError::DataDigest(inc.bhs));
            }
        }
        Ok(())
    }
}

pub use crate::window::Window;

/// Serial-number comparison (RFC 1982) for 32-bit sequence numbers.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// A SCSI command's completion, expanded by the writer into Data-In PDUs
/// and (unless the status rides in the last Data-In) a SCSI Response.
pub struct ScsiReply {
    pub itt: u32,
    pub lun: [u8; 8],
    pub status: u8,
    pub sense: Option<Vec<u8>>,
    /// Data-In to send (already truncated to the expected length).
    pub data: Bytes,
    /// Residual flags byte (O/U bits, as in the SCSI Response) and count.
    pub residual_flags: u8,
    pub residual: u32,
    /// The command's data budget, given back once the data is sent.
    pub charge: crate::budget::Charge,
}

/// Something for the writer to send.
pub enum Outgoing {
    /// One PDU; StatSN/ExpCmdSN/MaxCmdSN are stamped where the opcode has
    /// them.
    Pdu {
        bhs: Bhs,
        data: Bytes,
    },
    Scsi(ScsiReply),
    /// Flush what is queued, then tell the sender (logout, login replies
    /// before switching digests on).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Limits the writer needs to segment Data-In.
#[derive(Debug)]
pub struct SendLimits {
    /// The initiator's MaxRecvDataSegmentLength.
    pub max_send_dsl: AtomicU32,
    pub max_burst: AtomicU32,
}

/// The writer half of a connection: owns StatSN.
pub struct PduWriter<W> {
    inner: W,
    digests: Arc<Digests>,
    window: Arc<Window>,
    limits: Arc<SendLimits>,
    pub stat_sn: u32,
    /// A write that makes no progress for this long ends the connection
    /// (a peer that stopped reading its socket).
    pub send_timeout: std::time::Duration,
    last_max: u32,
    scratch: Vec<u8>,
    pieces: Vec<Piece>,
    /// Budget of the replies in the batch being written.
    charges: Vec<crate::budget::Charge>,
}

enum Piece {
    Scratch(usize, usize),
    Data(Bytes),
}

const BATCH_BYTES: usize = 1 << 20;

impl<W: AsyncWrite + Unpin> PduWriter<W> {
    pub fn new(
        inner: W,
        digests: Arc<Digests>,
        window: Arc<Window>,
        limits: Arc<SendLimits>,
    ) -> Self {
        PduWriter {
            inner,
            digests,
            window,
            limits,
            stat_sn: 0,
            send_timeout: std::time::Duration::from_secs(60),
            last_max: 0,
            scratch: Vec::with_capacity(8192),
            pieces: Vec::with_capacity(64),
            charges: Vec::new(),
        }
    }

    /// Run until the channel closes or the socket fails (or stalls for
    /// `send_timeout`). What it writes leaves `backlog`.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Outgoing>,
        backlog: Arc<crate::outbox::Backlog>,
    ) -> io::Result<()> {
        while let Some(first) = rx.recv().await {
            let mut flushes = Vec::new();
            let mut counted = crate::outbox::accounted(&first);
            let mut queued = self.encode(first, &mut flushes);
            while queued < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        counted += crate::outbox::accounted(&m);
                        queued += self.encode(m, &mut flushes);
                    }
                    Err(_) => break,
                }
            }
            let written = self.write_batch().await;
            backlog.sent(counted);
            written?;
            for f in flushes {
                let _ = f.send(());
            }
        }
        let _ = self.inner.shutdown().await;
        Ok(())
    }

    fn encode(
        &mut self,
        m: Outgoing,
        flushes: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    ) -> usize {
        match m {
            Outgoing::Pdu { bhs, data } => self.push_pdu(bhs, data),
            Outgoing::Scsi(r) => self.push_scsi(r),
            Outgoing::Flush(tx) => {
                flushes.push(tx);
                0
            }
        }
    }

    /// Stamp sequence numbers and queue one PDU. Returns its wire size.
    fn push_pdu(&mut self, mut bhs: Bhs, data: Bytes) -> usize {
        let opc = bhs.opcode();
        // Data-In without status has no StatSN field; every other target
        // PDU carries the current StatSN (R2T and target pings without
        // advancing it).
        if opc != op::DATA_IN || bhs.flags() & 0x01 != 0 {
            bhs.set_u32_at(24, self.stat_sn);
        }
        if bhs.advances_statsn() {
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
        let exp = self.window.exp_cmdsn();
        let mut max = self.window.max_cmdsn();
        // The two counters are read without a lock; never let a torn read
        // make MaxCmdSN go backwards.
        if sn_lt(max, self.last_max) {
            max = self.last_max;
        }
        self.last_max = max;
        bhs.set_u32_at(28, exp);
        bhs.set_u32_at(32, max);
        bhs.set_data_len(data.len());
        let start = self.scratch.len();
        self.scratch.extend_from_slice(&bhs.0);
        if self.digests.header.load(Ordering::Relaxed) {
            let d = pdu::digest(&[&bhs.0]);
            self.scratch.extend_from_slice(&d.to_le_bytes());
        }
        let len = data.len();
        if len > 0 {
            let pad = pdu::padded(len) - len;
            let data_digest = self.digests.data.load(Ordering::Relaxed);
            let crc = if data_digest {
                Some(pdu::digest(&[&data, &[0u8; 3][..pad]]))
            } else {
                None
            };
            let hdr_end = self.scratch.len();
            self.pieces.push(Piece::Scratch(start, hdr_end));
            self.pieces.push(Piece::Data(data));
            let tail = self.scratch.len();
            self.scratch.extend_from_slice(&[0u8; 3][..pad]);
            if let Some(c) = crc {
                self.scratch.extend_from_slice(&c.to_le_bytes());
            }
            if self.scratch.len() > tail {
                self.pieces.push(Piece::Scratch(tail, self.scratch.len()));
            }
        } else {
            self.pieces.push(Piece::Scratch(start, self.scratch.len()));
        }
        BHS_LEN + len
    }

    fn push_scsi(&mut self, mut r: ScsiReply) -> usize {
        self.charges.push(std::mem::take(&mut r.charge));
        let max_dsl = self.limits.max_send_dsl.load(Ordering::Relaxed).max(512) as usize;
        let max_burst = self.limits.max_burst.load(Ordering::Relaxed).max(512) as usize;
        // Phase collapse: GOOD status without sense rides in the last Data-In.
        let collapse = !r.data.is_empty() && r.sense.is_none() && r.status == 0;
        let mut total = 0;
        let mut off = 0usize;
        let mut data_sn = 0u32;
        let mut burst_left = max_burst;
        while off < r.data.len() {
            let n = (r.data.len() - off).min(max_dsl).min(burst_left);
            let last = off + n == r.data.len();
            let mut bhs = Bhs::new(op::DATA_IN);
            let mut flags = 0u8;
            burst_left -= n;
            if last || burst_left == 0 {
                flags |= 0x80; // F: end of this Data-In sequence
                burst_left = max_burst;
            }
            if last && collapse {
                flags |= 0x01 | r.residual_flags;
                bhs.0[3] = r.status;
                bhs.set_u32_at(44, r.residual);
            }
            bhs.set_flags(flags);
            bhs.set_lun(r.lun);
            bhs.set_itt(r.itt);
            bhs.set_u32_at(20, pdu::RESERVED_TAG);
            bhs.set_u32_at(36, data_sn);
            bhs.set_u32_at(40, off as u32);
            total += self.push_pdu(bhs, r.data.slice(off..off + n));
            data_sn += 1;
            off += n;
        }
        if !collapse {
            let mut bhs = Bhs::new(op::SCSI_RSP);
            bhs.set_flags(0x80 | r.residual_flags);
            bhs.0[2] = 0; // command completed at target
            bhs.0[3] = r.status;
            bhs.set_itt(r.itt);
            bhs.set_u32_at(36, data_sn); // ExpDataSN
            bhs.set_u32_at(44, r.residual);
            let data = match r.sense {
                Some(s) => {
                    let mut v = Vec::with_capacity(2 + s.len());
                    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    v.extend_from_slice(&s);
                    Bytes::from(v)
                }
                None => Bytes::new(),
            };
            total += self.push_pdu(bhs, data);
        }
        total
    }

    async fn write_batch(&mut self) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.pieces.len());
        for p in &self.pieces {
            match p {
                Piece::Scratch(a, b) => slices.push(IoSlice::new(&self.scratch[*a..*b])),
                Piece::Data(d) => slices.push(IoSlice::new(d)),
            }
        }
        let mut bufs: &mut [IoSlice<'_>] = &mut slices;
        while !bufs.is_empty() {
            let n = tokio::time::timeout(self.send_timeout, self.inner.write_vectored(bufs))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the initiator has not read its socket for the send timeout",
                    )
                })??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        drop(slices);
        self.scratch.clear();
        self.pieces.clear();
        self.charges.clear();
        Ok(())
    }
}

/// Encode one PDU into a buffer (login phase, where PDUs go one at a time
/// and digests are not yet in force).
pub fn encode_simple(bhs: &Bhs, data: &[u8]) -> Vec<u8> {
    let mut bhs = *bhs;
    bhs.set_data_len(data.len());
    let mut v = Vec::with_capacity(BHS_LEN + pdu::padded(data.len()));
    v.extend_from_slice(&bhs.0);
    v.extend_from_slice(data);
    v.resize(BHS_LEN + pdu::padded(data.len()), 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(
        digests: bool,
    ) -> (
        PduWriter<tokio::io::DuplexStream>,
        PduReader<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let d = Arc::new(Digests::default());
        d.header.store(digests, Ordering::Relaxed);
        d.data.store(digests, Ordering::Relaxed);
        let window = Window::new(10, 128);
        let limits = Arc::new(SendLimits {
            max_send_dsl: 1000.into(),
            max_burst: 2500.into(),
        });
        let mut w = PduWriter::new(a, d.clone(), window, limits);
        w.stat_sn = 5;
        (w, PduReader::new(b, d))
    }

    /// Data-In is cut at MaxRecvDataSegmentLength and MaxBurstLength, with
    /// status in the last PDU, StatSN advancing once, and digests that the
    /// reader accepts.
    #[tokio::test]
    async fn scsi_reply_segments_and_digests() {
        for digests in [false, true] {
            let (w, mut r) = pipe(digests);
            let (tx, rx) = crate::outbox::Outbox::new(1 << 20);
            let data: Vec<u8> = (0..3001u32).map(|i| i as u8).collect();
            tx.send(Outgoing::Scsi(ScsiReply {
                itt: 7,
                lun: [0; 8],
                status: 0,
                sense: None,
                data: Bytes::from(data.clone()),
                residual_flags: 0x02,
                residual: 99,
                charge: Default::default(),
            }));
            let backlog = tx.backlog().clone();
            drop(tx);
            let task = tokio::spawn(w.run(rx, backlog.clone()));
            let mut got = Vec::new();
            let mut flags = Vec::new();
            loop {
                let inc = r.read_header().await.unwrap();
                assert_eq!(inc.bhs.opcode(), op::DATA_IN);
                assert_eq!(inc.bhs.u32_at(40) as usize, got.len(), "buffer offset");
                r.max_data = 1 << 20;
                got.extend(r.read_data_vec(&inc).await.unwrap());
                flags.push(inc.bhs.flags());
                if inc.bhs.flags() & 0x01 != 0 {
                    assert_eq!(inc.bhs.u32_at(24), 5, "StatSN");
                    assert_eq!(inc.bhs.u32_at(44), 99, "residual");
                    assert_eq!(inc.bhs.u32_at(32), 10 + 128 - 1, "MaxCmdSN");
                    break;
                }
            }
            assert_eq!(got, data);
            // 1000 + 1000 + 500 (burst ends, F) + 501 (last, F|U|S).
            assert_eq!(flags, vec![0x00, 0x00, 0x80, 0x83]);
            task.await.unwrap().unwrap();
            assert_eq!(backlog.bytes(), 0, "what was written left the backlog");
        }
    }

    #[tokio::test]
    async fn corrupted_data_digest_is_detected() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let d = Arc::new(Digests::default());
        d.data.store(true, Ordering::Relaxed);
        let mut r = PduReader::new(a, d);
        let mut bhs = Bhs::new(op::NOP_OUT);
        bhs.set_data_len(5);
        let mut wire = bhs.0.to_vec();
        wire.extend_from_slice(b"hello\0\0\0");
        wire.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        b.write_all(&wire).await.unwrap();
        let inc = r.read_header().await.unwrap();
        assert!(matches!(
            r.read_data_vec(&inc).await,
            Err(ReadError::DataDigest(_))
        ));
    }

    #[test]
    fn window_never_exceeds_depth() {
        let w = Window::new(100, 128);
        assert_eq!(w.max_cmdsn(), 227);
        let slots: Vec<_> = (100..228u32)
            .map(|sn| match w.admit(sn, false, true) {
                crate::window::Admit::InOrder(Some(s)) => s,
                other => panic!("{sn}: {other:?}"),
            })
            .collect();
        assert_eq!(w.max_cmdsn(), 227, "full window stays closed");
        assert!(matches!(
            w.admit(228, false, true),
            crate::window::Admit::Ignore
        ));
        drop(slots);
        assert_eq!(w.max_cmdsn(), 355);
        assert!(sn_lt(0xffff_fff0, 5));
        assert!(!sn_lt(5, 0xffff_fff0));
    }
}
