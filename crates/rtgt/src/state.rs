//! The daemon's state directory: one file per name, written atomically
//! (temp file, fsync, rename, fsync of the directory), so a crash at any
//! point leaves either the old or the new contents. Holds what must outlive
//! the process, such as persistent reservations with APTPL.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rtgt_scsi::StateStore;

/// The process' effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This user's rtgt state: `$XDG_STATE_HOME/rtgt`, else
/// `~/.local/state/rtgt`.
pub fn user_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("rtgt"))
}

/// Where `rtgt serve` keeps state: `/var/lib/rtgt` as root, else
/// [`user_dir`].
pub fn default_dir() -> Option<PathBuf> {
    if euid() == 0 {
        return Some(PathBuf::from("/var/lib/rtgt"));
    }
    user_dir()
}

pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: &Path) -> io::Result<DirStore> {
        fs::create_dir_all(dir)?;
        Ok(DirStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        fs::File::open(&self.dir)?.sync_all()
    }
}

impl StateStore for DirStore {
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path(name);
        // A temp file left by a crash before the rename is simply replaced.
        let tmp = self.path(&format!("{name}.tmp"));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        self.sync_dir()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::open(&dir.path().join("sub")).unwrap();
        assert_eq!(s.load("a").unwrap(), None);
        s.save("a", b"one").unwrap();
        assert_eq!(s.load("a").unwrap().as_deref(), Some(&b"one"[..]));
        // A leftover temp file (a crash before the rename) changes nothing.
        fs::write(dir.path().join("sub/a.tmp"), "garbage").unwrap();
        assert_eq!(s.load("a").unwrap().as_deref(), Some(&b"one"[..]));
        s.save("a", b"two").unwrap();
        assert_eq!(s.load("a").unwrap().as_deref(), Some(&b"two"[..]));
        assert!(
            !dir.path().join("sub/a.tmp").exists(),
            "temp file renamed away"
        );
        s.remove("a").unwrap();
        assert_eq!(s.load("a").unwrap(), None);
        s.remove("a").unwrap();
        assert!(s.describe("a").ends_with("sub/a"));
    }

    #[test]
    fn unwritable_directory_fails_to_save() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::open(dir.path()).unwrap();
        fs::remove_dir(dir.path()).unwrap();
        assert!(s.save("a", b"x").is_err());
    }
}
