/// Lock a mutex whose data a panic elsewhere cannot leave inconsistent
/// (counters, tables): take it even if poisoned, rather than panic too.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub mod budget;
pub mod busy_poll;
pub mod chap;
mod conn;
pub mod discovery;
pub mod ffp;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod gate;
pub mod login;
mod login_phase;
pub mod negotiation;
pub mod outbox;
pub mod pacing;
pub mod pdu;
pub mod server;
pub mod session;
pub mod shards;
pub mod stats;
pub mod target;
pub mod text;
pub mod window;
pub mod wire;
