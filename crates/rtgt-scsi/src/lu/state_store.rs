//! Where the core keeps state that must outlive the process (persistent
//! reservations with APTPL). The core never opens files itself: whoever
//! builds the logical units hands it a store (the daemon's keeps one file
//! per name in its state directory).

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

/// Durable named blobs.
pub trait StateStore: Send + Sync {
    /// What is saved under `name`; `None` when nothing is.
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Replace what is saved under `name`, atomically and durably: after a
    /// crash at any point, `load` returns either the old or the new bytes.
    fn save(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Forget `name` (durably); not an error when nothing is saved.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Where `name` lives, for messages (e.g. a file path).
    fn describe(&self, name: &str) -> String;
}

/// A store in memory: for tests and for embedders that want no persistence
/// across processes but the same behaviour within one.
#[derive(Default)]
pub struct MemoryStore {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Make `save` fail (to test write failures).
    pub fail_saves: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of saved names.
    pub fn len(&self) -> usize {
        self.blobs.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Names currently saved.
    pub fn names(&self) -> Vec<String> {
        self.blobs.lock().unwrap().keys().cloned().collect()
    }
    /// Overwrite a blob behind the store's back (to test corrupt state).
    pub fn put_raw(&self, name: &str, data: Vec<u8>) {
        self.blobs.lock().unwrap().insert(name.to_string(), data);
    }
}

impl StateStore for MemoryStore {
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.blobs.lock().unwrap().get(name).cloned())
    }
    fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        if self.fail_saves.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("saving is made to fail"));
        }
        self.blobs
            .lock()
            .unwrap()
            .insert(name.to_string(), data.to_vec());
        Ok(())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.blobs.lock().unwrap().remove(name);
        Ok(())
    }
    fn describe(&self, name: &str) -> String {
        format!("memory:{name}")
    }
}
