//! Saving the configuration so that it survives a crash at any instant:
//! the new text goes to a temporary file in the same directory, is synced,
//! and replaces the old one by rename; the directory is synced so that the
//! rename itself is durable. The version replaced is kept in `backup/`
//! beside the file (the newest [`BACKUPS`]), as targetcli keeps its own.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Previous versions kept.
pub const BACKUPS: usize = 10;

/// Where the previous versions of `path` go.
pub fn backup_dir(path: &Path) -> PathBuf {
    path.parent()
        .unwrap_or_else(|| Path::new("."))
        .join("backup")
}

/// Replace `path` by `text` atomically, keeping the old version as a
/// backup. Nothing is written when the file holds `text` already.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rtgt.toml".into());
    let old = fs::read(path).ok();
    if old.as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        // The file may hold CHAP secrets: owner only.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if old.is_some() {
            backup(dir, path, &name)?;
        }
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Keep the current `path` as `backup/<name>.<n>` (n grows with each
/// save) by a hard link, so no byte is copied and the version is as
/// durable as it already was; drop all but the newest [`BACKUPS`]. Where
/// links are not possible the file is copied.
fn backup(dir: &Path, path: &Path, name: &str) -> std::io::Result<()> {
    let bdir = dir.join("backup");
    if !bdir.exists() {
        fs::create_dir_all(&bdir)?;
        fs::set_permissions(&bdir, fs::Permissions::from_mode(0o700))?;
    }
    let prefix = format!("{name}.");
    let mut numbers: Vec<u64> = fs::read_dir(&bdir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    numbers.sort_unstable();
    let next = numbers.last().map_or(1, |n| n + 1);
    let dest = bdir.join(format!("{prefix}{next}"));
    if fs::hard_link(path, &dest).is_err() {
        fs::copy(path, &dest)?;
    }
    numbers.push(next);
    let drop = numbers.len().saturating_sub(BACKUPS);
    for n in &numbers[..drop] {
        let _ = fs::remove_file(bdir.join(format!("{prefix}{n}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_rotates_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rtgt.toml");
        save(&path, "v0\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "v0\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!backup_dir(&path).exists(), "nothing to back up yet");
        save(&path, "v0\n").unwrap();
        assert!(!backup_dir(&path).exists(), "unchanged: no backup");
        for i in 1..=12 {
            save(&path, &format!("v{i}\n")).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "v12\n");
        let mut kept: Vec<String> = fs::read_dir(backup_dir(&path))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort_by_key(|n| n.rsplit('.').next().unwrap().parse::<u64>().unwrap());
        assert_eq!(kept.len(), BACKUPS, "{kept:?}");
        // The newest backup is the version replaced last.
        let newest = backup_dir(&path).join(kept.last().unwrap());
        assert_eq!(fs::read_to_string(newest).unwrap(), "v11\n");
        let oldest = backup_dir(&path).join(&kept[0]);
        assert_eq!(fs::read_to_string(oldest).unwrap(), "v2\n");
        // No temporary file is left behind.
        let stray = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("tmp")
            })
            .count();
        assert_eq!(stray, 0);
    }
}
