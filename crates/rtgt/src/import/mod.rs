//! `rtgt import lio|tgt|scst FILE`: the configuration of the targets
//! people run today, as an rtgt configuration. Each importer reads its
//! format into the one configuration model and says, by name, what it
//! could not carry over; the model's own rules then check the result.
//!
//! The rule for what cannot be carried: nothing becomes more open than it
//! was. A credential that cannot be kept, or an initiator that would lose
//! its CHAP, stops the import (or drops that initiator's access), never
//! the protection.

pub mod lio;
pub mod scst;
pub mod tgt;

use std::fmt;
use std::path::Path;

use crate::config::Doc;

/// What an import made, and what it left behind.
#[derive(Debug, Default)]
pub struct Imported {
    pub doc: Doc,
    /// Items not carried over (or carried with a change of behaviour):
    /// where, and why.
    pub notes: Vec<Note>,
}

/// One item not carried over as it was.
#[derive(Debug, Clone)]
pub struct Note {
    /// Where in the source: a JSON path, or FILE:LINE.
    pub at: String,
    pub what: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

impl Imported {
    fn note(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.notes.push(Note {
            at: at.into(),
            what: what.into(),
        });
    }
}

/// The source could not be read: where and why (exit status 2).
#[derive(Debug)]
pub struct ImportError {
    pub at: String,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

fn fail<T>(at: impl Into<String>, message: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError {
        at: at.into(),
        message: message.into(),
    })
}

/// The formats `rtgt import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// targetcli / rtslib-fb saveconfig.json (LIO).
    Lio,
    /// tgt's targets.conf, or the output of `tgt-admin --dump`.
    Tgt,
    /// scst.conf as scstadmin writes it.
    Scst,
}

/// Import `path` in `format`: the configuration, checked by the same
/// rules a file is, and the notes.
pub fn import(format: Format, path: &Path) -> Result<Imported, ImportError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).or_else(|e| fail(&name, format!("cannot read: {e}")))?;
    let mut out = match format {
        Format::Lio => lio::import(&name, &text)?,
        Format::Tgt => tgt::import(&name, &text)?,
        Format::Scst => scst::import(&name, &text)?,
    };
    out.doc.canonicalize();
    out.doc.check().or_else(|e| {
        fail(
            &name,
            format!("the imported configuration is not valid for rtgt: {e}"),
        )
    })?;
    Ok(out)
}

/// A name rtgt takes for a backstore (letters, digits, '-', '_', '.'):
/// others are mapped, and the mapping noted.
fn backstore_name(out: &mut Imported, at: &str, name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mapped = if mapped.is_empty() {
        "unnamed".to_string()
    } else {
        mapped
    };
    if mapped != name {
        out.note(
            at,
            format!("backstore {name:?} is named {mapped:?} in rtgt"),
        );
    }
    mapped
}

/// An INQUIRY field as the old target reported it: cut to the field's
/// width (what hosts saw), with a note when the file said more.
fn inquiry_field(out: &mut Imported, at: &str, key: &str, value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let cut: String = value.chars().take(max).collect();
    out.note(
        at,
        format!("{key} {value:?} is longer than INQUIRY carries: hosts saw {cut:?}, and so will they now"),
    );
    cut
}

/// Vendor, product and revision of `b`, cut to INQUIRY's widths.
fn fit_identity(out: &mut Imported, at: &str, b: &mut crate::config::BackstoreDoc) {
    use rtgt_scsi::lu::identity::{PRODUCT_LEN, REVISION_LEN, VENDOR_LEN};
    for (key, field, max) in [
        ("vendor", &mut b.vendor, VENDOR_LEN),
        ("product", &mut b.product, PRODUCT_LEN),
        ("revision", &mut b.revision, REVISION_LEN),
    ] {
        if let Some(v) = field.as_mut() {
            *v = inquiry_field(out, at, key, v, max);
        }
    }
}

/// File-backed or device-backed: by what the path is, if it exists here,
/// else by where it lives.
fn is_block_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) => m.file_type().is_block_device(),
        Err(_) => path.starts_with("/dev/"),
    }
}

#[cfg(test)]
mod tests {
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Serials and WWIDs as real hosts listed them (`ls -l
    /// /dev/disk/by-id/`, `udevadm info`), not only as the algorithms say.
    #[test]
    fn identity_vectors_from_real_systems() {
        // LIO (targetcli fileio backstores "cl1" and "sbdnfs", from the
        // SBD set-up in Microsoft's Azure SAP documentation):
        // scsi-SLIO-ORG_cl1_3fe4da37-… and scsi-360014053fe4da37….
        for (serial, wwid) in [
            (
                "3fe4da37-1a5a-4bb6-9a41-9a4df57770e4",
                "360014053fe4da371a5a4bb69a419a4df",
            ),
            (
                "afb0ba8d-3a3c-413b-8cc2-cca03e63ef42",
                "36001405afb0ba8d3a3c413b8cc2cca03",
            ),
        ] {
            let naa = hex(&super::lio::lio_naa(0x001405, serial));
            assert_eq!(format!("3{naa}"), wwid, "{serial}");
        }
        // tgt (a Longhorn volume, tid 1 LUN 1): scsi-SIET_VIRTUAL-DISK_beaf11,
        // scsi-1IET_00010001, wwn-0x60000000000000000e00000000010001; and
        // multipath -ll listing 360000000000000000e00000000020001 for tid 2.
        assert_eq!(
            super::tgt::naa6_from_scsi_id("IET     00010001"),
            "60000000000000000e00000000010001"
        );
        assert_eq!(
            super::tgt::naa6_from_scsi_id("IET     00020001"),
            "60000000000000000e00000000020001"
        );
    }
}
