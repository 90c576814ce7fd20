//! The control API: HTTP/1.1 + JSON on a Unix socket (so `curl
//! --unix-socket` works), resources named like the object tree, every
//! change validated whole and applied live (see [`crate::serve::Live`]).
//! Prometheus metrics are served on the same socket and, with
//! `--metrics-listen`, on a TCP address.

pub mod api;
pub mod ops;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::serve::{ChangeError, Live};

pub type Shared = Arc<Mutex<Live>>;

/// Where the control API and metrics are served.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The control socket; `None`: the default path ([`default_socket`]).
    pub socket: Option<PathBuf>,
    /// Also serve `/metrics` over TCP here.
    pub metrics_listen: Option<SocketAddr>,
}

/// `/run/rtgt/rtgt.sock` as root; else under `$XDG_RUNTIME_DIR`, or
/// `/tmp/rtgt-<uid>`.
pub fn default_socket() -> PathBuf {
    let uid = crate::state::euid();
    if uid == 0 {
        return PathBuf::from("/run/rtgt/rtgt.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("rtgt/rtgt.sock"),
        None => PathBuf::from(format!("/tmp/rtgt-{uid}/rtgt.sock")),
    }
}

/// The running control servers.
pub struct Control {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl Control {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(p) = self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bind the control socket (and the metrics address) and serve them.
pub async fn start(live: Shared, opts: Options) -> Result<Control> {
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let explicit = opts.socket.is_some();
    let path = opts.socket.unwrap_or_else(default_socket);
    let socket = match bind_socket(&path) {
        Ok(l) => {
            let app = api::router(live.clone());
            let mut rx = rx.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|v| *v).await;
                };
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!("control socket: {e}");
                }
            }));
            println!("rtgt: control socket {}", path.display());
            Some(path)
        }
        Err(e) if explicit => return Err(e),
        Err(e) => {
            // A second daemon (on other portals) must not fail for the
            // default path; it runs without a control socket and says so.
            tracing::warn!("{e:#}; running without a control socket (give --control PATH)");
            eprintln!("rtgt: {e:#}; running without a control socket (give --control PATH)");
            None
        }
    };
    if let Some(addr) = opts.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
        println!("rtgt: metrics on http://{}/metrics", l.local_addr()?);
        let app = api::metrics_router(live.clone());
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(l, app).with_graceful_shutdown(shutdown).await {
                tracing::error!("metrics listener: {e}");
            }
        }));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(Control {
        stop,
        tasks,
        socket,
    })
}

/// Bind `path` mode 0600 in a directory only the owner can enter (created
/// if missing). A socket file left by a daemon that died is replaced; one
/// a live daemon answers on is not.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "control socket {} is in use by another rtgt",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    // Bind under a umask that gives nobody else access, so that the socket
    // is never reachable by others, not even between bind and chmod.
    // SAFETY: umask only swaps the process' file mode mask; it cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let l = tokio::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(l)
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong and what to do about it.
    pub error: String,
}

/// An error answer: status and message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<ops::OpError> for ApiError {
    fn from(e: ops::OpError) -> ApiError {
        match e {
            ops::OpError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ops::OpError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            ops::OpError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            ChangeError::Refused(m) => ApiError(StatusCode::CONFLICT, m),
            ChangeError::Unsaved(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<axum::extract::rejection::StringRejection> for ApiError {
    fn from(e: axum::extract::rejection::StringRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}
