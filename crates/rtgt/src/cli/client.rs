//! The control API's client: one HTTP/1.1 request per call over the
//! daemon's Unix socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, StatusCode};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach rtgt at {path}: {source} (is `rtgt serve` running? give its socket with --socket PATH or RTGT_SOCKET)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to rtgt: {0}")]
    Http(String),
}

/// An answer: status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The error message of a JSON error body, or the body as text.
    pub fn error_text(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(socket: &Path) -> std::io::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            socket: socket.to_path_buf(),
            rt,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::GET, path, None)
    }

    pub fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, ClientError> {
        let b = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
        self.call(method, path, Some(("application/json", b)))
    }

    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, ClientError> {
        self.rt.block_on(async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, "rtgt");
            let data = match body {
                Some((ctype, b)) => {
                    req = req.header(header::CONTENT_TYPE, ctype);
                    b
                }
                None => Vec::new(),
            };
            let req = req
                .body(Full::new(Bytes::from(data)))
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        })
    }
}

/// Percent-encode one path segment (IQNs hold ':', portals '[' and ']').
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
