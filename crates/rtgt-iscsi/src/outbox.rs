//! The queue between a connection's producers (its reader, the commands it
//! runs, its watchdog) and its writer task, with the bytes it holds
//! counted: the reader stops taking new PDUs while more than a bound of
//! replies wait to be sent, so an initiator that does not read its socket
//! cannot make the target queue replies without limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::pdu::BHS_LEN;
use crate::wire::Outgoing;

/// Bytes queued for one connection's writer.
#[derive(Debug)]
pub struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
    drained: Notify,
}

impl Backlog {
    /// Bytes waiting to be written.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// The writer put `n` accounted bytes on the wire.
    pub fn sent(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        // Only crossing the limit downwards can release a waiting reader.
        if before > self.limit && before - n <= self.limit {
            self.drained.notify_waiters();
        }
    }

    /// Wait until the backlog is at most the limit (at once, on the data
    /// path, when it is).
    pub async fn wait_for_room(&self) {
        while self.bytes() > self.limit {
            // A `Notified` sees every notify_waiters() from its creation on,
            // so a drain between this line and the check is not missed.
            let notified = self.drained.notified();
            if self.bytes() <= self.limit {
                return;
            }
            notified.await;
        }
    }
}

/// The producers' end of the queue.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
}

/// What a message counts against the backlog: its data and one header.
/// Writer and producers use this same figure, so the count cannot drift.
pub fn accounted(m: &Outgoing) -> usize {
    match m {
        Outgoing::Pdu { data, .. } => BHS_LEN + data.len(),
        Outgoing::Scsi(r) => BHS_LEN + r.data.len() + r.sense.as_ref().map_or(0, |s| s.len()),
        Outgoing::Flush(_) => 0,
    }
}

impl Outbox {
    /// A queue whose reader-side wait begins above `limit` bytes.
    pub fn new(limit: usize) -> (Outbox, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog {
            bytes: AtomicUsize::new(0),
            limit,
            drained: Notify::new(),
        });
        (Outbox { tx, backlog }, rx)
    }

    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Queue `m` (dropped when the writer is gone: the connection is
    /// ending).
    pub fn send(&self, m: Outgoing) {
        let n = accounted(&m);
        self.backlog.bytes.fetch_add(n, Ordering::AcqRel);
        if let Err(e) = self.tx.send(m) {
            // The writer is gone; the message will never be sent.
            self.backlog.sent(accounted(&e.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn the_reader_waits_while_the_backlog_is_over_its_limit() {
        let (out, mut rx) = Outbox::new(1000);
        let bhs = crate::pdu::Bhs::new(crate::pdu::op::NOP_IN);
        out.send(Outgoing::Pdu {
            bhs,
            data: Bytes::from(vec![0; 2000]),
        });
        assert_eq!(out.backlog().bytes(), 2048);
        let b = out.backlog().clone();
        let waiter = tokio::spawn(async move { b.wait_for_room().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while over the limit");
        let m = rx.recv().await.unwrap();
        out.backlog().sent(accounted(&m));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken once drained")
            .unwrap();
        assert_eq!(out.backlog().bytes(), 0);
        // A message for a writer that is gone does not stay counted.
        drop(rx);
        out.send(Outgoing::Pdu {
            bhs,
            data: Bytes::from(vec![0; 10]),
        });
        assert_eq!(out.backlog().bytes(), 0);
    }
}
