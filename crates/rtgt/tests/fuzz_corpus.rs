//! Replays the committed fuzz seed corpus (`fuzz/corpus/<target>/`) through
//! the same entry points the `cargo fuzz` targets call, on the stable
//! toolchain: every seed (including the reproducers of fixed crashes) must
//! run without a panic, also in tasks the entry points spawn.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// Panics anywhere in the process (tokio catches those of spawned tasks;
/// libFuzzer's hook aborts on them, so the replay must see them too).
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// One replay at a time, so a panic is charged to the right seed.
static SERIAL: Mutex<()> = Mutex::new(());

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn replay(target: &str, entry: fn(&[u8])) {
    count_panics();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let before = PANICS.load(Ordering::SeqCst);
        let ok = std::panic::catch_unwind(|| entry(&data)).is_ok();
        if !ok || PANICS.load(Ordering::SeqCst) != before {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} seeds panicked: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn pdu() {
    replay("pdu", rtgt_iscsi::fuzz_entry::pdu);
}

#[test]
fn login() {
    replay("login", rtgt_iscsi::fuzz_entry::login);
}

#[test]
fn ffp() {
    replay("ffp", rtgt_iscsi::fuzz_entry::ffp);
}

#[test]
fn cdb() {
    replay("cdb", rtgt_scsi::fuzz_entry::cdb);
}

#[test]
fn param_list() {
    replay("param_list", rtgt_scsi::fuzz_entry::param_list);
}

#[test]
fn chap() {
    replay("chap", rtgt_iscsi::fuzz_entry::chap);
}

#[test]
fn vhost_chain() {
    replay("vhost_chain", |d| {
        rtgt_vhost::fuzz_entry::virtqueue(d);
    });
}
