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
