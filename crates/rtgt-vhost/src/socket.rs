//! A controller served on its Unix socket for as long as it is
//! configured: one front-end (VM) at a time, each a new I_T nexus opened
//! when it connects and closed when it goes. The daemon holds a
//! [`SocketServer`] per `[[vhost]]`; it tells it of LUNs that come and go
//! (the guest hears of them on the event queue) and stops it when the
//! controller is removed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rtgt_scsi::api::Nexus;
use vhost::vhost_user::Listener;
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::backend::{Controller, Runtimes};

/// Opens the nexus of a front-end that connected (the controller's port
/// group admitting the VM's initiator name); `None`: refused.
pub type OpenNexus = Box<dyn Fn() -> Option<Arc<Nexus>> + Send + Sync>;

/// How often the accept loop looks whether it should stop.
const STOP_POLL_MS: i32 = 100;

/// A controller's socket and the thread serving it.
pub struct SocketServer {
    path: PathBuf,
    /// The socket file created, to remove on stop only if it is still
    /// ours (a controller that replaced this one on the same path binds
    /// its own first).
    inode: (u64, u64),
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    /// The front-end attached now.
    current: Mutex<Option<(Controller, Option<ShutdownHandle>)>>,
}

impl SocketServer {
    /// Bind `path` and serve it on a thread of its own. A stale socket
    /// there is replaced unless a process still listens on it (`ours`:
    /// the caller's own controller on that path, about to be replaced);
    /// any other kind of file is refused. Requests run on `runtimes`.
    pub fn start(
        path: &Path,
        request_queues: usize,
        runtimes: Runtimes,
        open_nexus: OpenNexus,
        ours: bool,
    ) -> std::io::Result<SocketServer> {
        let listener = bind(path, ours)?;
        let meta = std::fs::metadata(path)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            current: Mutex::new(None),
        });
        let s = shared.clone();
        let p = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!("vhost {}", path.display()))
            .spawn(move || run(listener, &p, request_queues, runtimes, open_nexus, &s))?;
        Ok(SocketServer {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
            shared,
            thread: Some(thread),
        })
    }

    /// Whether a front-end is attached.
    pub fn connected(&self) -> bool {
        lock(&self.shared.current).is_some()
    }

    /// A LUN appeared or went: the attached guest hears of it (a guest
    /// that attaches later scans what is there).
    pub fn lun_changed(&self, lun: u16, present: bool) {
        if let Some((c, _)) = lock(&self.shared.current).as_ref() {
            c.lun_changed(lun, present);
        }
    }

    /// Stop serving: the attached front-end is disconnected (its commands
    /// still running finish into a ring nobody reads), the thread ends
    /// and the socket file goes.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some((_, Some(h))) = lock(&self.shared.current).as_ref() {
            h.shutdown();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Bind the socket, replacing a stale one.
fn bind(path: &Path, ours: bool) -> std::io::Result<UnixListener> {
    use std::io::{Error, ErrorKind};
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Ok(_) => {
            if !ours && UnixStream::connect(path).is_ok() {
                return Err(Error::new(
                    ErrorKind::AddrInUse,
                    format!("{}: another process serves this socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(_) => {}
    }
    UnixListener::bind(path)
}

/// Wait until a front-end connects (`true`) or the server is told to stop.
fn wait_for_front_end(listener: &impl AsRawFd, shared: &Shared) -> std::io::Result<bool> {
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        listener.as_raw_fd(),
        EpollEvent::new(EventSet::IN, 0),
    )?;
    let mut events = [EpollEvent::default()];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match epoll.wait(STOP_POLL_MS, &mut events) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run(
    listener: UnixListener,
    path: &Path,
    request_queues: usize,
    runtimes: Runtimes,
    open_nexus: OpenNexus,
    shared: &Shared,
) {
    // Without a path: the socket file is the server's to remove, not the
    // listener's (see `SocketServer::inode`).
    let mut listener = Listener::from(listener);
    loop {
        match wait_for_front_end(&listener, shared) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(socket = %path.display(), "vhost-user socket: {e}");
                return;
            }
        }
        let Some(nexus) = open_nexus() else {
            tracing::error!(socket = %path.display(), "the controller's port group refused its initiator");
            // Take the connection and drop it, so the VM sees a refusal.
            let _ = listener.accept();
            continue;
        };
        let ctrl = Controller::new(request_queues, nexus.clone(), runtimes.clone());
        let mut daemon = match VhostUserDaemon::new(
            format!("vhost-user-scsi {}", path.display()),
            ctrl.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(socket = %path.display(), "vhost-user: {e}");
                nexus.close();
                return;
            }
        };
        if let Err(e) = daemon.start(&mut listener) {
            tracing::warn!(socket = %path.display(), "vhost-user front-end refused: {e}");
            nexus.close();
            continue;
        }
        tracing::info!(socket = %path.display(), initiator = %nexus.initiator_port(), "vhost-user front-end attached");
        *lock(&shared.current) = Some((ctrl, daemon.shutdown_handle()));
        if shared.stop.load(Ordering::SeqCst) {
            daemon.request_shutdown();
        }
        let r = daemon.wait();
        *lock(&shared.current) = None;
        // The vring worker threads end with the connection.
        for h in daemon.get_epoll_handlers() {
            h.send_exit_event();
        }
        nexus.close();
        match r {
            Ok(()) => tracing::info!(socket = %path.display(), "vhost-user front-end detached"),
            Err(e) => tracing::warn!(socket = %path.display(), "vhost-user connection ended: {e}"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
