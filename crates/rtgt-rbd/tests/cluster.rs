//! The RBD backstore against a real cluster: `tests/rbd.sh` starts one
//! with scripts/ceph-dev-cluster.sh and runs these (ignored otherwise) with
//! RTGT_CEPH_CONF set to its ceph.conf.
#![cfg(have_librbd)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rtgt_backstore::{aio, Allocation, Backstore, IoBuf};
use rtgt_rbd::{Rbd, RbdOptions};

const POOL: &str = "rbd";

fn conf() -> String {
    std::env::var("RTGT_CEPH_CONF")
        .expect("RTGT_CEPH_CONF names the test cluster's ceph.conf (tests/rbd.sh sets it)")
}

fn rbd_cli(args: &[&str]) {
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf())
        .args(args)
        .output()
        .expect("run rbd");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh image of `size` for one test (removed when dropped).
struct TestImage(String);

impl TestImage {
    fn new(size: &str) -> TestImage {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        rbd_cli(&["create", "--size", size, &format!("{POOL}/{name}")]);
        TestImage(name)
    }

    fn opts(&self) -> RbdOptions {
        RbdOptions {
            ceph_conf: conf().into(),
            ..RbdOptions::new(POOL, &self.0)
        }
    }

    fn open(&self) -> Rbd {
        Rbd::open(self.opts()).expect("open the test image")
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("rbd")
            .arg("-c")
            .arg(conf())
            .args(["rm", "--no-progress", &format!("{POOL}/{}", self.0)])
            .output();
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn what_is_written_reads_back_and_survives_a_reopen() {
    let img = TestImage::new("64M");
    let r = img.open();
    assert_eq!(r.capacity(), 64 << 20);
    assert_eq!(r.kind(), "rbd");
    let a = pattern(1, 1 << 20);
    r.write_at(4096, &a, false).unwrap();
    r.write_at((64 << 20) - 512, &[9u8; 512], true).unwrap();
    r.flush().unwrap();
    drop(r);
    let r = img.open();
    let mut back = vec![0u8; a.len()];
    r.read_at(4096, &mut back).unwrap();
    assert_eq!(back, a);
    let mut last = [0u8; 512];
    r.read_at((64 << 20) - 512, &mut last).unwrap();
    assert_eq!(last, [9u8; 512]);
    // Never written: zeroes.
    let mut hole = [1u8; 4096];
    r.read_at(32 << 20, &mut hole).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn beyond_the_end_is_out_of_range_and_touches_nothing() {
    let img = TestImage::new("8M");
    let r = img.open();
    let mut buf = [0u8; 1024];
    assert!(matches!(
        r.read_at((8 << 20) - 512, &mut buf),
        Err(rtgt_backstore::BackstoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        r.write_at(u64::MAX - 100, &buf, false),
        Err(rtgt_backstore::BackstoreError::OutOfRange { .. })
    ));
    assert!(r.discard(8 << 20, 512).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
async fn asynchronous_io_completes_on_the_awaiting_task() {
    let img = TestImage::new("64M");
    let r = std::sync::Arc::new(img.open());
    let io = r.async_io().expect("rbd does asynchronous I/O");
    // Many at once, as a queue depth of 64 would.
    let mut writes = Vec::new();
    for i in 0..64u64 {
        let r = r.clone();
        writes.push(tokio::spawn(async move {
            let io = r.async_io().unwrap();
            let data = IoBuf::copy_from(&pattern(i as u8, 65536));
            aio::write(io, i * 65536, data, i % 2 == 0, Box::new(()))
                .await
                .0
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    for i in 0..64u64 {
        let (res, buf) = aio::read(io, i * 65536, IoBuf::with_len(65536), Box::new(())).await;
        res.unwrap();
        assert_eq!(&buf[..], &pattern(i as u8, 65536)[..], "block run {i}");
    }
    // Out of range: an error through the completion, not a hang.
    let (res, _) = aio::read(io, 64 << 20, IoBuf::with_len(512), Box::new(())).await;
    assert!(res.is_err());
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn discard_deallocates_and_reads_zeroes() {
    let img = TestImage::new("64M");
    let r = img.open();
    assert!(r.supports_discard() && r.discard_zeroes() && r.reports_allocation());
    // Nothing written: all of it is deallocated.
    assert_eq!(
        r.allocation(0, 64 << 20).unwrap(),
        (Allocation::Deallocated, 64 << 20)
    );
    r.write_at(0, &pattern(3, 16 << 20), false).unwrap();
    let (state, n) = r.allocation(0, 64 << 20).unwrap();
    assert_eq!(state, Allocation::Mapped);
    assert!((16 << 20..64 << 20).contains(&n), "mapped run {n}");
    // Whole objects (4 MiB) go.
    r.discard(4 << 20, 8 << 20).unwrap();
    assert_eq!(
        r.allocation(0, 64 << 20).unwrap(),
        (Allocation::Mapped, 4 << 20)
    );
    let (state, n) = r.allocation(4 << 20, 60 << 20).unwrap();
    assert_eq!(state, Allocation::Deallocated);
    assert!(n >= 8 << 20, "deallocated run {n}");
    let mut back = vec![1u8; 8 << 20];
    r.read_at(4 << 20, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
    // Part of an object: zeroed.
    r.discard(512, 1024).unwrap();
    let mut part = vec![1u8; 2048];
    r.read_at(0, &mut part).unwrap();
    assert_eq!(&part[..512], &pattern(3, 512)[..]);
    assert!(part[512..1536].iter().all(|&b| b == 0));
    assert_eq!(&part[1536..], &pattern(3, 2048)[1536..]);
    r.write_zeroes(16 << 20, 1 << 20).unwrap();
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn write_same_repeats_the_pattern_in_the_cluster() {
    let img = TestImage::new("16M");
    let r = img.open();
    let block = pattern(7, 512);
    r.write_same(1 << 20, 2 << 20, &block)
        .expect("rbd does write same")
        .unwrap();
    let mut back = vec![0u8; 2 << 20];
    r.read_at(1 << 20, &mut back).unwrap();
    for (i, chunk) in back.chunks(512).enumerate() {
        assert_eq!(chunk, &block[..], "block {i}");
    }
    // A length that is not whole patterns: the core's way.
    assert!(r.write_same(0, 700, &block).is_none());
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn compare_and_write_is_atomic_in_the_cluster_and_reports_the_mismatch() {
    let img = TestImage::new("16M");
    let a = img.open();
    // A second client (another gateway) on the same image.
    let b = img.open();
    let old = pattern(1, 512);
    let new = pattern(2, 512);
    a.write_at(8192, &old, true).unwrap();
    let got = b
        .compare_and_write(8192, &old, &new)
        .expect("rbd compares in the cluster");
    assert_eq!(got.unwrap(), None);
    let mut back = vec![0u8; 512];
    a.read_at(8192, &mut back).unwrap();
    assert_eq!(back, new, "the other client's write is seen");
    // A stale compare (byte 100 differs): reported, nothing written.
    let mut stale = new.clone();
    stale[100] ^= 0xff;
    let got = a.compare_and_write(8192, &stale, &old).expect("native");
    assert_eq!(got.unwrap(), Some(100));
    b.read_at(8192, &mut back).unwrap();
    assert_eq!(back, new);
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn a_resize_elsewhere_is_seen_on_refresh_and_grow_resizes_the_image() {
    let img = TestImage::new("16M");
    let r = img.open();
    assert!(!r.refresh_size().unwrap());
    rbd_cli(&[
        "resize",
        "--no-progress",
        "--size",
        "32M",
        &format!("{POOL}/{}", img.0),
    ]);
    assert!(r.refresh_size().unwrap());
    assert_eq!(r.capacity(), 32 << 20);
    // Watched: a resize elsewhere is reported without asking.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    r.watch_capacity(Box::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    rbd_cli(&[
        "resize",
        "--no-progress",
        "--size",
        "40M",
        &format!("{POOL}/{}", img.0),
    ]);
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the watch reports the resize");
    assert_eq!(r.capacity(), 40 << 20);
    r.grow(48 << 20).unwrap();
    assert!(r.grow(16 << 20).is_err(), "never shrinks");
    drop(r);
    assert_eq!(img.open().capacity(), 48 << 20);
}

#[test]
#[ignore = "needs a Ceph cluster: tests/rbd.sh"]
fn what_cannot_be_opened_is_named_in_the_error() {
    let img = TestImage::new("8M");
    let missing = RbdOptions {
        image: "no-such-image".into(),
        ..img.opts()
    };
    let e = Rbd::open(missing).unwrap_err().to_string();
    assert!(
        e.contains("rbd/no-such-image") && e.contains("No such file"),
        "{e}"
    );
    let pool = RbdOptions {
        pool: "no-such-pool".into(),
        ..img.opts()
    };
    let e = Rbd::open(pool).unwrap_err().to_string();
    assert!(e.contains("no-such-pool"), "{e}");
    let conf = RbdOptions {
        ceph_conf: "/nonexistent/ceph.conf".into(),
        ..img.opts()
    };
    let e = Rbd::open(conf).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ceph.conf"), "{e}");
    let block = RbdOptions {
        block_size: 1000,
        ..img.opts()
    };
    assert!(Rbd::open(block).is_err());
}
