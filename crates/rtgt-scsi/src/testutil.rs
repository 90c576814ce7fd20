//! Test helpers: a sparse in-memory backstore and a nexus fixture that
//! drives commands through `prepare` + `execute`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rtgt_backstore::{check_range, Allocation, Backstore, BackstoreError, Result as BsResult};

use crate::api::{
    Command, DataDirection, ExecOutcome, LunMap, MappedLun, Nexus, Response, TargetPort, TaskAttr,
};
use crate::core::sense::Sense;
use crate::lu::{LogicalUnit, LuConfig};

fn as_io(e: BackstoreError) -> io::Error {
    match e {
        BackstoreError::Io(e) => e,
        e => io::Error::other(e),
    }
}

/// Completes on another thread, as librbd's callbacks do.
impl rtgt_backstore::aio::AsyncIo for MemStore {
    fn read(
        &self,
        offset: u64,
        mut buf: rtgt_backstore::IoBuf,
        done: rtgt_backstore::aio::Completion,
    ) {
        self.native_call();
        let r = self.read_at(offset, &mut buf).map_err(as_io);
        std::thread::spawn(move || done(r, buf));
    }
    fn write(
        &self,
        offset: u64,
        buf: rtgt_backstore::IoBuf,
        fua: bool,
        done: rtgt_backstore::aio::Completion,
    ) {
        self.native_call();
        let r = self.write_at(offset, &buf, fua).map_err(as_io);
        std::thread::spawn(move || done(r, buf));
    }
}

/// Sparse block store; blocks never written read as zeroes.
pub struct MemStore {
    block_size: u32,
    physical: u32,
    capacity: u64,
    blocking: bool,
    blocks: Mutex<HashMap<u64, Vec<u8>>>,
    wce: AtomicBool,
    fua_writes: AtomicUsize,
    flushes: AtomicUsize,
    fail: AtomicBool,
    /// The errno injected failures carry (0: none, an "other" error).
    fail_errno: std::sync::atomic::AtomicI32,
    /// Offers the media's own operations (asynchronous I/O, write same,
    /// compare and write), as RBD does; counted in `native_calls`.
    native: AtomicBool,
    native_calls: AtomicUsize,
    /// Makes reads wait until released (abort tests).
    pub gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The same for the next write.
    pub write_gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl MemStore {
    pub fn new(blocks: u64, block_size: u32, physical: u32, blocking: bool) -> MemStore {
        MemStore {
            block_size,
            physical,
            capacity: blocks * block_size as u64,
            blocking,
            blocks: Mutex::new(HashMap::new()),
            wce: AtomicBool::new(true),
            fua_writes: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            fail_errno: std::sync::atomic::AtomicI32::new(0),
            native: AtomicBool::new(false),
            native_calls: AtomicUsize::new(0),
            gate: Mutex::new(None),
            write_gate: Mutex::new(None),
        }
    }
    pub fn fua_writes(&self) -> usize {
        self.fua_writes.load(Ordering::Relaxed)
    }
    /// No block holds data (everything deallocated).
    pub fn allocation_is_empty(&self) -> bool {
        self.blocks.lock().unwrap().is_empty()
    }
    pub fn flushes(&self) -> usize {
        self.flushes.load(Ordering::Relaxed)
    }
    /// Offer (or stop offering) the native operations.
    pub fn set_native(&self, on: bool) {
        self.native.store(on, Ordering::Relaxed)
    }
    /// How many native operations ran.
    pub fn native_calls(&self) -> usize {
        self.native_calls.load(Ordering::Relaxed)
    }
    fn native_call(&self) -> bool {
        let on = self.native.load(Ordering::Relaxed);
        if on {
            self.native_calls.fetch_add(1, Ordering::Relaxed);
        }
        on
    }
    /// Fail every I/O with `errno` (a timeout, a fenced client).
    pub fn fail_with(&self, errno: i32) {
        self.fail_errno.store(errno, Ordering::Relaxed);
        self.fail.store(true, Ordering::Relaxed)
    }
    pub fn fail_io(&self, on: bool) {
        self.fail.store(on, Ordering::Relaxed)
    }
    fn check(&self, offset: u64, len: u64) -> BsResult<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(BackstoreError::Io(
                match self.fail_errno.load(Ordering::Relaxed) {
                    0 => io::Error::other("injected"),
                    e => io::Error::from_raw_os_error(e),
                },
            ));
        }
        check_range(offset, len, self.capacity)
    }
}

impl Backstore for MemStore {
    fn kind(&self) -> &'static str {
        "test"
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn physical_block_size(&self) -> u32 {
        self.physical
    }
    fn may_block(&self) -> bool {
        self.blocking
    }
    fn write_cache(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }
    fn set_write_cache(&self, on: bool) -> BsResult<()> {
        self.wce.store(on, Ordering::Relaxed);
        Ok(())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BsResult<()> {
        if let Some(rx) = self.gate.lock().unwrap().take() {
            let _ = rx.recv();
        }
        self.check(offset, buf.len() as u64)?;
        let bs = self.block_size as u64;
        let g = self.blocks.lock().unwrap();
        for (i, chunk) in buf.chunks_mut(bs as usize).enumerate() {
            match g.get(&(offset / bs + i as u64)) {
                Some(b) => chunk.copy_from_slice(&b[..chunk.len()]),
                None => chunk.fill(0),
            }
        }
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BsResult<()> {
        if let Some(rx) = self.write_gate.lock().unwrap().take() {
            let _ = rx.recv();
        }
        self.check(offset, buf.len() as u64)?;
        if fua {
            self.fua_writes.fetch_add(1, Ordering::Relaxed);
        }
        let bs = self.block_size as u64;
        let mut g = self.blocks.lock().unwrap();
        for (i, chunk) in buf.chunks(bs as usize).enumerate() {
            g.insert(offset / bs + i as u64, chunk.to_vec());
        }
        Ok(())
    }
    fn flush(&self) -> BsResult<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        true
    }
    fn discard_zeroes(&self) -> bool {
        true
    }
    fn discard(&self, offset: u64, len: u64) -> BsResult<()> {
        self.check(offset, len)?;
        let bs = self.block_size as u64;
        let mut g = self.blocks.lock().unwrap();
        for b in offset / bs..(offset + len) / bs {
            g.remove(&b);
        }
        Ok(())
    }
    fn async_io(&self) -> Option<&dyn rtgt_backstore::aio::AsyncIo> {
        self.native.load(Ordering::Relaxed).then_some(self as _)
    }
    fn native_ops(&self) -> bool {
        self.native.load(Ordering::Relaxed)
    }
    fn write_same(&self, offset: u64, len: u64, pattern: &[u8]) -> Option<BsResult<()>> {
        if !self.native_call() {
            return None;
        }
        let data = pattern.repeat((len / pattern.len() as u64) as usize);
        Some(self.write_at(offset, &data, false))
    }
    fn compare_and_write(
        &self,
        offset: u64,
        cmp: &[u8],
        data: &[u8],
    ) -> Option<BsResult<Option<u64>>> {
        if !self.native_call() {
            return None;
        }
        let mut cur = vec![0u8; cmp.len()];
        if let Err(e) = self.read_at(offset, &mut cur) {
            return Some(Err(e));
        }
        if let Some(at) = cur.iter().zip(cmp).position(|(a, b)| a != b) {
            return Some(Ok(Some(at as u64)));
        }
        Some(self.write_at(offset, data, false).map(|()| None))
    }
    fn reports_allocation(&self) -> bool {
        true
    }
    fn allocation(&self, offset: u64, len: u64) -> BsResult<(Allocation, u64)> {
        self.check(offset, len)?;
        let bs = self.block_size as u64;
        let g = self.blocks.lock().unwrap();
        let state = |b: u64| {
            if g.contains_key(&b) {
                Allocation::Mapped
            } else {
                Allocation::Deallocated
            }
        };
        let first = state(offset / bs);
        let mut run = 0;
        while run < len && state((offset + run) / bs) == first {
            run += bs;
        }
        Ok((first, run.min(len)))
    }
}

pub fn test_port() -> TargetPort {
    TargetPort {
        name: "iqn.2026-11.org.rtgt:test,t,0x0007".to_string(),
        target_name: "iqn.2026-11.org.rtgt:test".to_string(),
        relative_port_id: 1,
        group: crate::alua::TargetPortGroup::new(
            7,
            crate::alua::AccessState::ActiveOptimized,
            false,
        ),
    }
}

pub fn mem_lu(blocks: u64, block_size: u32) -> Arc<LogicalUnit> {
    LogicalUnit::new(LuConfig::new(
        "mem0",
        Arc::new(MemStore::new(blocks, block_size, block_size, false)),
    ))
}

static TAGS: AtomicU64 = AtomicU64::new(1);

pub fn cmd(lun: u64, cdb: &[u8]) -> Command {
    Command {
        lun,
        cdb: cdb.into(),
        tag: TAGS.fetch_add(1, Ordering::Relaxed),
        attr: TaskAttr::Simple,
        expected_len: 0,
        dir: DataDirection::None,
    }
}

pub fn done(o: ExecOutcome) -> Response {
    match o {
        ExecOutcome::Done(r) => r,
        ExecOutcome::Aborted => panic!("unexpectedly aborted"),
    }
}

pub struct Fixture {
    pub nexus: Arc<Nexus>,
    pub lu: Arc<LogicalUnit>,
    pub store: Arc<MemStore>,
    pub luns: Arc<LunMap>,
}

impl Fixture {
    pub fn new(blocks: u64, block_size: u32) -> Fixture {
        Fixture::build(blocks, block_size, block_size, false)
    }

    pub fn with_physical(blocks: u64, block_size: u32, physical: u32) -> Fixture {
        Fixture::build(blocks, block_size, physical, false)
    }

    pub fn build(blocks: u64, block_size: u32, physical: u32, blocking: bool) -> Fixture {
        Fixture::make(
            Arc::new(MemStore::new(blocks, block_size, physical, blocking)),
            false,
        )
    }

    pub fn read_only(blocks: u64, block_size: u32) -> Fixture {
        Fixture::make(
            Arc::new(MemStore::new(blocks, block_size, block_size, false)),
            true,
        )
    }

    /// A fixture with a removable medium.
    pub fn removable(blocks: u64, block_size: u32) -> Fixture {
        Fixture::with_config(blocks, block_size, |c| c.removable = true)
    }

    /// A fixture whose LU configuration `f` adjusts.
    pub fn with_config(blocks: u64, block_size: u32, f: impl FnOnce(&mut LuConfig)) -> Fixture {
        let store = Arc::new(MemStore::new(blocks, block_size, block_size, false));
        let mut cfg = LuConfig::new("mem0", store.clone());
        f(&mut cfg);
        Fixture::with_lus(vec![LogicalUnit::new(cfg)], store)
    }

    fn make(store: Arc<MemStore>, read_only: bool) -> Fixture {
        let lu = LogicalUnit::new(LuConfig::new("mem0", store.clone()));
        let mut map = BTreeMap::new();
        map.insert(
            0,
            MappedLun {
                lu: lu.clone(),
                read_only,
            },
        );
        let luns = Arc::new(LunMap { luns: map });
        let nexus = Nexus::new(
            "iqn.test:init,i,0x1".to_string(),
            Arc::new(test_port()),
            luns.clone(),
        );
        Fixture {
            nexus,
            lu,
            store,
            luns,
        }
    }

    /// The same store behind a new LU whose `thin` is `thin` (and a new
    /// nexus).
    pub fn with_thin(self, thin: bool) -> Fixture {
        let mut cfg = LuConfig::new("mem0", self.store.clone());
        cfg.thin = thin;
        Fixture::with_lus(vec![LogicalUnit::new(cfg)], self.store.clone())
    }

    /// A nexus mapping `lus` as LUNs 0, 1, ...; `store` is LUN 0's.
    pub fn with_lus(lus: Vec<Arc<LogicalUnit>>, store: Arc<MemStore>) -> Fixture {
        let map = lus
            .iter()
            .enumerate()
            .map(|(i, lu)| {
                let m = MappedLun {
                    lu: lu.clone(),
                    read_only: false,
                };
                (i as u64, m)
            })
            .collect();
        let luns = Arc::new(LunMap { luns: map });
        let nexus = Nexus::new(
            "iqn.test:init,i,0x1".to_string(),
            Arc::new(test_port()),
            luns.clone(),
        );
        Fixture {
            nexus,
            lu: lus[0].clone(),
            store,
            luns,
        }
    }

    /// A second nexus seeing the same LUs.
    pub fn other_nexus(&self) -> Fixture {
        let nexus = Nexus::new(
            "iqn.test:other,i,0x2".to_string(),
            Arc::new(test_port()),
            self.luns.clone(),
        );
        Fixture {
            nexus,
            lu: self.lu.clone(),
            store: self.store.clone(),
            luns: self.luns.clone(),
        }
    }

    /// A nexus of initiator port `init` through `port`, seeing the same LUs.
    pub fn through(&self, port: &Arc<TargetPort>, init: &str) -> Fixture {
        Fixture {
            nexus: Nexus::new(init.to_string(), port.clone(), self.luns.clone()),
            lu: self.lu.clone(),
            store: self.store.clone(),
            luns: self.luns.clone(),
        }
    }

    pub async fn run_lun(&self, lun: u64, cdb: &[u8], data: &[u8]) -> Response {
        match self.nexus.prepare(cmd(lun, cdb)) {
            Err(r) => r,
            Ok(p) => done(p.execute(data.to_vec()).await),
        }
    }

    pub async fn run(&self, cdb: &[u8], data: &[u8]) -> Response {
        self.run_lun(0, cdb, data).await
    }

    /// Run and expect CHECK CONDITION; the decoded sense.
    pub async fn check_with(&self, cdb: &[u8], data: &[u8]) -> Sense {
        let r = self.run(cdb, data).await;
        assert_eq!(r.status, 2, "expected CHECK CONDITION for {cdb:02x?}");
        Sense::decode(r.sense.as_ref().expect("sense")).expect("decodable sense")
    }

    pub async fn check(&self, cdb: &[u8]) -> Sense {
        self.check_with(cdb, &[]).await
    }

    /// TEST UNIT READY until the pending unit attentions are gone.
    pub async fn clear_ua(&self) {
        for _ in 0..10 {
            if self.run(&[0, 0, 0, 0, 0, 0], &[]).await.status == 0 {
                return;
            }
        }
        panic!("unit attention does not clear");
    }
}
