//! What names an RBD image and its cluster (the configuration's `rbd`
//! backstore), whether or not this build has librbd.

use std::path::PathBuf;

/// Where the image is and how to reach its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdOptions {
    pub pool: String,
    pub namespace: Option<String>,
    pub image: String,
    pub ceph_conf: PathBuf,
    pub keyring: Option<PathBuf>,
    /// cephx client id (default "admin").
    pub client: String,
    pub block_size: u32,
    /// Seconds a cluster operation may take before it fails (retryable).
    pub op_timeout: u32,
}

impl RbdOptions {
    pub fn new(pool: &str, image: &str) -> RbdOptions {
        RbdOptions {
            pool: pool.into(),
            namespace: None,
            image: image.into(),
            ceph_conf: "/etc/ceph/ceph.conf".into(),
            keyring: None,
            client: "admin".into(),
            block_size: 512,
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }

    /// `pool/[namespace/]image`, for messages.
    pub fn spec(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.pool, ns, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

/// Default deadline of a cluster operation, in seconds: shorter than the
/// initiators' command timeouts (Linux sd: 30 s), so a stuck cluster gives
/// a retryable error before the initiator starts aborting.
pub const DEFAULT_OP_TIMEOUT: u32 = 25;
