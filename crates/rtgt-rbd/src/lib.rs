//! A Ceph RBD image as an rtgt backstore (issue 19), through librbd.
//!
//! - `librbd`: the bindings (generated from the installed headers by
//!   `build.rs`) wrapped safely; the only module with `unsafe`.
//! - `backstore`: the image behind the [`rtgt_backstore::Backstore`] trait.
//!
//! Built without librbd (its headers or libclang missing at build time),
//! [`open`] says so instead of opening anything.

#[cfg(have_librbd)]
mod backstore;
#[cfg(have_librbd)]
mod librbd;
mod options;

pub use options::{RbdOptions, DEFAULT_OP_TIMEOUT};

#[cfg(have_librbd)]
pub use backstore::Rbd;

/// The persistent reservation state of an image, shared by every gateway
/// that exports it: the RADOS object `rtgt.pr.IMAGE` beside the image,
/// replaced by compare-and-swap on its version, with watch/notify.
pub struct SharedState {
    #[cfg(have_librbd)]
    obj: librbd::StateObject,
}

impl SharedState {
    /// Open (creating it empty) the state object of the image `opts` names.
    pub fn open(opts: &RbdOptions) -> std::io::Result<SharedState> {
        #[cfg(have_librbd)]
        {
            let t = opts.target();
            let obj = librbd::StateObject::open(&t, &format!("rtgt.pr.{}", opts.image))?;
            Ok(SharedState { obj })
        }
        #[cfg(not(have_librbd))]
        {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!(
                    "rbd image {}: this rtgt was built without librbd",
                    opts.spec()
                ),
            ))
        }
    }

    /// The bytes and version; empty before the first commit.
    pub fn read(&self) -> std::io::Result<(u64, Vec<u8>)> {
        #[cfg(have_librbd)]
        return self.obj.read();
        #[cfg(not(have_librbd))]
        unreachable_without_librbd()
    }

    /// Replace the bytes if still at `version`; tells the watchers.
    pub fn commit(&self, version: u64, data: &[u8]) -> std::io::Result<Option<u64>> {
        #[cfg(have_librbd)]
        return self.obj.commit(version, data);
        #[cfg(not(have_librbd))]
        {
            let _ = (version, data);
            unreachable_without_librbd()
        }
    }

    /// Call `changed` when another gateway commits.
    pub fn watch(&self, changed: Box<dyn Fn() + Send + Sync>) -> std::io::Result<()> {
        #[cfg(have_librbd)]
        return self.obj.watch(changed);
        #[cfg(not(have_librbd))]
        {
            let _ = changed;
            unreachable_without_librbd()
        }
    }

    pub fn describe(&self) -> String {
        #[cfg(have_librbd)]
        return self.obj.describe();
        #[cfg(not(have_librbd))]
        String::new()
    }
}

/// Without librbd no `SharedState` is ever made (`open` fails).
#[cfg(not(have_librbd))]
fn unreachable_without_librbd<T>() -> std::io::Result<T> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "built without librbd",
    ))
}

/// Whether this build can open RBD images.
pub const AVAILABLE: bool = cfg!(have_librbd);

/// Open the image `opts` names.
pub fn open(
    opts: RbdOptions,
) -> rtgt_backstore::Result<std::sync::Arc<dyn rtgt_backstore::Backstore>> {
    #[cfg(have_librbd)]
    {
        Ok(std::sync::Arc::new(Rbd::open(opts)?))
    }
    #[cfg(not(have_librbd))]
    {
        Err(rtgt_backstore::BackstoreError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "rbd image {}: this rtgt was built without librbd (install librbd-dev and libclang-dev, then rebuild)",
                opts.spec()
            ),
        )))
    }
}

#[cfg(test)]
mod tests {
    /// Headers installed but no bindings (libclang missing): the build
    /// warned, and this says it again as a failure, so an rbd-less rtgt is
    /// never mistaken for one with rbd.
    #[test]
    // A constant of the build: that is what this checks.
    #[allow(clippy::assertions_on_constants)]
    fn built_with_librbd_where_its_headers_are() {
        if std::path::Path::new("/usr/include/rbd/librbd.h").exists()
            && std::env::var_os("RTGT_NO_RBD").is_none()
        {
            assert!(
                super::AVAILABLE,
                "librbd-dev is installed but rtgt-rbd was built without it (libclang-dev missing?)"
            );
        }
    }
}
