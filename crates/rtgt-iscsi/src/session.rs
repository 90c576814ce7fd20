//! The table of live sessions: TSIH allocation and session reinstatement
//! (RFC 7143 6.3.5: a login with the same initiator name and ISID and TSIH 0
//! to the same target portal group replaces the old session; through
//! another portal group of the target it is another I_T nexus, a path of
//! its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Key of a session: the I_T nexus (SCSI initiator port and target port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub initiator: String,
    pub isid: [u8; 6],
    pub target: String,
    /// The target portal group tag (the target port).
    pub tpg: u16,
}

struct Entry {
    tsih: u16,
    /// Set to true to ask the session to end.
    stop: watch::Sender<bool>,
    /// Becomes true when the session has ended.
    ended: watch::Receiver<bool>,
}

/// Handle a session keeps while it lives; dropping it unregisters.
pub struct Registration {
    table: Arc<SessionTable>,
    key: SessionKey,
    pub tsih: u16,
    pub stop: watch::Receiver<bool>,
    ended: watch::Sender<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.ended.send(true);
        let mut map = self.table.map.lock().unwrap();
        if map.get(&self.key).map(|e| e.tsih) == Some(self.tsih) {
            map.remove(&self.key);
        }
    }
}

#[derive(Default)]
pub struct SessionTable {
    map: Mutex<HashMap<SessionKey, Entry>>,
    next_tsih: Mutex<u16>,
}

impl SessionTable {
    /// Whether a session with this TSIH exists for the key.
    pub fn exists(&self, key: &SessionKey, tsih: u16) -> bool {
        self.map.lock().unwrap().get(key).map(|e| e.tsih) == Some(tsih)
    }

    /// Register a new session, ending (and waiting for) any old session of
    /// the same initiator port.
    pub async fn register(self: &Arc<Self>, key: SessionKey) -> Registration {
        let old = self.map.lock().unwrap().remove(&key);
        if let Some(old) = old {
            tracing::info!(initiator = %key.initiator, tsih = old.tsih, "reinstating session");
            let _ = old.stop.send(true);
            let mut ended = old.ended;
            let _ = tokio::time::timeout(Duration::from_secs(10), ended.wait_for(|e| *e)).await;
        }
        let tsih = {
            let mut n = self.next_tsih.lock().unwrap();
            *n = n.wrapping_add(1);
            if *n == 0 {
                *n = 1;
            }
            *n
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ended_tx, ended_rx) = watch::channel(false);
        self.map.lock().unwrap().insert(
            key.clone(),
            Entry {
                tsih,
                stop: stop_tx,
                ended: ended_rx,
            },
        );
        Registration {
            table: self.clone(),
            key,
            tsih,
            stop: stop_rx,
            ended: ended_tx,
        }
    }

    /// Ask every session to end (daemon shutdown).
    pub fn stop_all(&self) {
        for e in self.map.lock().unwrap().values() {
            let _ = e.stop.send(true);
        }
    }

    /// Sessions of one initiator (its name as in the key).
    pub fn count_for(&self, initiator: &str) -> usize {
        let initiator = initiator.to_ascii_lowercase();
        self.map
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.initiator == initiator)
            .count()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
