//! The configuration model and its TOML file format.
//!
//! One model — backstores, targets, portal groups, portals, LUNs and (for
//! the next issues) ACLs and auth — is loaded from a file written by people,
//! so every error names the file, the line and what is wrong.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rtgt_scsi::access::{ChapAuth, Credential, Secret};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The default iSCSI port.
pub const ISCSI_PORT: u16 = 3260;
/// The built-in demo target.
pub const DEMO_IQN: &str = "iqn.2026-11.org.rtgt:demo";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub iscsi: Iscsi,
    #[serde(default)]
    pub backstore: Vec<Backstore>,
    #[serde(default)]
    pub target: Vec<Target>,
}

/// Settings of the iSCSI fabric as a whole.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iscsi {
    /// CHAP algorithms the target accepts, in its order of preference
    /// (default: SHA3-256, SHA256, SHA1, MD5). The initiator's order decides
    /// among those.
    pub chap_algorithms: Option<Spanned<Vec<String>>>,
    /// CHAP required of discovery sessions (none: discovery is open).
    pub discovery_auth: Option<Auth>,
    /// Shortest CHAP_C (bytes) accepted from an initiator for mutual CHAP
    /// (default 16): a short challenge makes the target's answers
    /// precomputable.
    pub chap_min_challenge: Option<Spanned<u32>>,
}

/// CHAP credentials: the user name and secret the initiator must prove,
/// and optionally (mutual CHAP) those the target proves back.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub userid: Spanned<String>,
    pub password: Option<Spanned<String>>,
    /// A file holding the secret (mode 0600 or stricter; one trailing
    /// newline is ignored).
    pub password_file: Option<Spanned<PathBuf>>,
    pub mutual_userid: Option<Spanned<String>>,
    pub mutual_password: Option<Spanned<String>>,
    pub mutual_password_file: Option<Spanned<PathBuf>>,
    /// The resolved settings (secrets read), filled in by validation.
    #[serde(skip)]
    pub resolved: Option<ChapAuth>,
}

impl fmt::Debug for Auth {
    // Written out so that the inline passwords never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("userid", self.userid.get_ref())
            .field(
                "mutual_userid",
                &self.mutual_userid.as_ref().map(|u| u.get_ref()),
            )
            .finish_non_exhaustive()
    }
}

/// Who may use a portal group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TpgMode {
    /// Any initiator, seeing every LUN of the group.
    Demo,
    /// Only initiators with an `acl` entry, seeing their mapped LUNs.
    Acl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackstoreKind {
    Ramdisk,
    Fileio,
    Blockio,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backstore {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: BackstoreKind,
    /// Size: bytes, or a number with K/M/G/T (powers of 1024).
    pub size: Option<Spanned<Size>>,
    pub path: Option<Spanned<PathBuf>>,
    pub block_size: Option<Spanned<u32>>,
    /// fileio: cache writes and make them durable on SYNCHRONIZE CACHE or
    /// FUA (default), or write through.
    pub write_back: Option<bool>,
    /// Refuse every write, for every initiator.
    #[serde(default)]
    pub read_only: bool,
    /// Present the LU as removable medium (RMB=1): initiators may eject and
    /// load it, and lock it with PREVENT ALLOW MEDIUM REMOVAL.
    #[serde(default)]
    pub removable: bool,
    /// Report a physical block larger than the logical one (a power-of-two
    /// multiple of block_size), as 512e disks do.
    pub physical_block_size: Option<Spanned<u32>>,
    /// Thin provisioning (UNMAP, WRITE SAME with UNMAP): default on where
    /// the backstore can give space back.
    pub thin: Option<bool>,
    /// SANITIZE OVERWRITE writes at most this many bytes per second
    /// (`"100M"`); absent or 0: as fast as the medium goes.
    pub sanitize_rate: Option<Spanned<Size>>,
    /// Fault injection, for test rigs: errors on chosen blocks, latency.
    pub faults: Option<Faults>,
    /// The identity hosts know the LU by (INQUIRY, VPD 80h, VPD 83h):
    /// defaults "RTGT", the name, "0001", a serial and an NAA 3 derived
    /// from the name.
    pub vendor: Option<Spanned<String>>,
    pub product: Option<Spanned<String>>,
    pub revision: Option<Spanned<String>>,
    pub serial: Option<Spanned<String>>,
    pub naa: Option<Spanned<String>>,
}

/// Faults a backstore injects (as SPDK's error bdev or dm-flakey do).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every read and write.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rule: Vec<FaultRule>,
}

/// `op`s touching blocks `lba .. lba + blocks` fail with `error`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub op: FaultOp,
    pub lba: u64,
    pub blocks: Spanned<u64>,
    pub error: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FaultOp {
    Read,
    Write,
    Any,
}

/// The errors a fault rule may inject, by name.
pub fn fault_errno(name: &str) -> Option<i32> {
    Some(match name {
        "EIO" => libc::EIO,
        "ENOSPC" => libc::ENOSPC,
        "ENXIO" => libc::ENXIO,
        "ENODEV" => libc::ENODEV,
        _ => return None,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub iqn: Spanned<String>,
    pub alias: Option<String>,
    #[serde(default)]
    pub tpg: Vec<Tpg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tpg {
    pub tag: Spanned<u16>,
    #[serde(default)]
    pub portals: Vec<Spanned<String>>,
    /// `demo` (any initiator, every LUN of the group) or `acl` (only the
    /// initiators of the `acl` entries, each with its mapped LUNs). Required:
    /// opening a group to everyone is never a silent default.
    pub mode: Option<Spanned<TpgMode>>,
    /// Demo mode: every LUN is read-only for initiators without an ACL.
    #[serde(default)]
    pub demo_read_only: bool,
    /// The relative target port identifier (1..65535) persistent
    /// reservations are keyed on; by default derived from the target name
    /// and tag, so it stays the same across restarts and config changes.
    pub relative_port_id: Option<Spanned<u16>>,
    /// CHAP for initiators of this group whose ACL sets none (and for
    /// every initiator in demo mode).
    pub auth: Option<Auth>,
    #[serde(default)]
    pub lun: Vec<Lun>,
    #[serde(default)]
    pub acl: Vec<Acl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lun {
    pub lun: Spanned<u64>,
    pub backstore: Spanned<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// A node ACL: one initiator, its CHAP settings and the LUNs it sees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub initiator: Spanned<String>,
    pub auth: Option<Auth>,
    #[serde(default)]
    pub mapped_lun: Vec<MappedLun>,
}

/// A LUN of the group as one initiator sees it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappedLun {
    /// The LUN number the initiator sees.
    pub mapped_lun: Spanned<u64>,
    /// The group's LUN it reaches.
    pub tpg_lun: Spanned<u64>,
    /// Write-protected for this initiator.
    #[serde(default)]
    pub read_only: bool,
}

/// A byte count written as `1073741824`, `"1G"`, `"512M"` ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a whole number of bytes, or a string such as \"512M\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {n}: it cannot be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Parse `"1G"`, `"512M"`, `"4096"`, `"1.5T"` is not accepted (whole units only).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size {s:?}: unknown unit {c:?} (use K, M, G or T)"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        format!("invalid size {s:?}: expected a whole number with an optional K/M/G/T unit")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The slowest `sanitize_rate` accepted (1 MiB/s): below it a forgotten
/// unit (`20` for `"20M"`) would make a sanitize last for years.
pub const MIN_SANITIZE_RATE: u64 = 1 << 20;

/// A configuration error, located in its file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Maps byte offsets of the source to line numbers.
struct Lines<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }
    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        }
    }
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        })
    }
}

impl Config {
    /// The built-in default: a 1 GiB RAM disk as LUN 0 of the demo target
    /// on 127.0.0.1:3260, open to any initiator.
    pub fn demo() -> Config {
        let text = format!(
            r#"
[[backstore]]
name = "ram0"
type = "ramdisk"
size = "1G"

[[target]]
iqn = "{DEMO_IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:{ISCSI_PORT}"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "ram0"
"#
        );
        Config::parse(Path::new("<built-in>"), &text).expect("built-in config is valid")
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let config = Config::parse(path, &text)?;
        // Secrets in the file itself: the file is held to the rule of a
        // password file.
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            if let Some((span, key)) = config.inline_secrets().next() {
                let lines = Lines {
                    file: path,
                    text: &text,
                };
                return lines.err(
                    span,
                    format!(
                        "inline {key} in a file readable by group or others (mode {mode:04o}): \
                         chmod 600 {}, or move the secret to a {key}_file",
                        path.display()
                    ),
                );
            }
        }
        Ok(config)
    }

    /// Every CHAP setting of the file with a place for messages: where it
    /// is, and the spans of its user names.
    fn auths(&self) -> Vec<(String, &Auth)> {
        let mut v: Vec<(String, &Auth)> = Vec::new();
        if let Some(a) = &self.iscsi.discovery_auth {
            v.push(("[iscsi.discovery_auth]".into(), a));
        }
        for t in &self.target {
            for g in &t.tpg {
                let iqn = t.iqn.get_ref();
                let tag = g.tag.get_ref();
                if let Some(a) = &g.auth {
                    v.push((format!("the auth of target {iqn:?} tpg {tag}"), a));
                }
                for acl in &g.acl {
                    if let Some(a) = &acl.auth {
                        v.push((
                            format!(
                                "the auth of ACL {:?} (target {iqn:?} tpg {tag})",
                                acl.initiator.get_ref()
                            ),
                            a,
                        ));
                    }
                }
            }
        }
        v
    }

    /// The inline secrets (`password`, `mutual_password`) of the file.
    fn inline_secrets(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &'static str)> + '_ {
        self.auths().into_iter().flat_map(|(_, a)| {
            [
                a.password.as_ref().map(|p| (p.span(), "password")),
                a.mutual_password
                    .as_ref()
                    .map(|p| (p.span(), "mutual_password")),
            ]
            .into_iter()
            .flatten()
        })
    }

    /// RFC 7143 9.2.1, over every credential at once (each setting's own
    /// pair is checked where it is read).
    fn check_secret_roles(&self, l: &Lines<'_>) -> Result<(), ConfigError> {
        let auths = self.auths();
        let resolved = auths
            .iter()
            .enumerate()
            .filter_map(|(i, (_, a))| a.resolved.as_ref().map(|r| (i, r)));
        let Some(clash) = rtgt_scsi::access::find_secret_in_both_roles(resolved) else {
            return Ok(());
        };
        let (ini_place, ini) = &auths[clash.initiator];
        let (tgt_place, tgt) = &auths[clash.target];
        let span = tgt
            .mutual_userid
            .as_ref()
            .map_or(tgt.userid.span(), |u| u.span());
        let ini_line = if l.text.is_empty() {
            String::new()
        } else {
            format!(" (line {})", l.line_of(ini.userid.span().start))
        };
        l.err(
            span,
            format!(
                "the mutual secret of {tgt_place} is also the initiator secret of {ini_place}{ini_line}: \
                 a secret that authenticates initiators must not authenticate the target (RFC 7143 9.2.1), \
                 or a mutual login could be made to answer another initiator's challenge; give each its own secret"
            ),
        )
    }

    /// Parse and validate config text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let lines = Lines { file, text };
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| lines.line_of(s.start));
            ConfigError {
                file: file.to_path_buf(),
                line,
                message: e.message().to_string(),
            }
        })?;
        config.validate(&lines)?;
        Ok(config)
    }

    /// Validate a configuration built in memory (not read from text):
    /// errors carry no line.
    pub fn validated(mut self, name: &Path) -> Result<Config, ConfigError> {
        let lines = Lines {
            file: name,
            text: "",
        };
        self.validate(&lines)
            .map_err(|e| ConfigError { line: None, ..e })?;
        Ok(self)
    }

    fn validate(&mut self, l: &Lines<'_>) -> Result<(), ConfigError> {
        if let Some(algs) = &self.iscsi.chap_algorithms {
            if algs.get_ref().is_empty() {
                return l.err(
                    algs.span(),
                    "chap_algorithms must name at least one algorithm",
                );
            }
            for a in algs.get_ref() {
                if rtgt_iscsi::chap::ChapAlgorithm::from_name(a).is_none() {
                    return l.err(
                        algs.span(),
                        format!("unknown CHAP algorithm {a:?} (SHA3-256, SHA256, SHA1 or MD5)"),
                    );
                }
            }
        }
        if let Some(a) = &mut self.iscsi.discovery_auth {
            a.resolve(l)?;
        }
        if let Some(m) = &self.iscsi.chap_min_challenge {
            let max = rtgt_iscsi::chap::MAX_PEER_CHALLENGE_LEN;
            if !(1..=max as u32).contains(m.get_ref()) {
                return l.err(
                    m.span(),
                    format!("chap_min_challenge must be 1..{max} (bytes; default 16)"),
                );
            }
        }
        let mut names = HashSet::new();
        let mut serials = std::collections::HashMap::new();
        let mut naas = std::collections::HashMap::new();
        for b in &self.backstore {
            let name = b.name.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return l.err(b.name.span(), format!("backstore name {name:?} must be non-empty letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(name.as_str()) {
                return l.err(b.name.span(), format!("duplicate backstore name {name:?}"));
            }
            if let Some(bs) = &b.block_size {
                if !matches!(*bs.get_ref(), 512 | 4096) {
                    return l.err(
                        bs.span(),
                        format!("block_size {} is not supported (512 or 4096)", bs.get_ref()),
                    );
                }
                if b.kind == BackstoreKind::Blockio {
                    return l.err(
                        bs.span(),
                        "block_size is read from the device for blockio; remove it",
                    );
                }
            }
            match b.kind {
                BackstoreKind::Ramdisk => {
                    let Some(size) = &b.size else {
                        return l.err(b.name.span(), format!("ramdisk {name:?} needs a size"));
                    };
                    if b.path.is_some() {
                        return l.err(b.name.span(), format!("ramdisk {name:?} takes no path"));
                    }
                    check_size(
                        l,
                        size,
                        b.block_size.as_ref().map(|s| *s.get_ref()).unwrap_or(512),
                    )?;
                }
                BackstoreKind::Fileio => {
                    if b.path.is_none() {
                        return l.err(b.name.span(), format!("fileio {name:?} needs a path"));
                    }
                    if let Some(size) = &b.size {
                        check_size(
                            l,
                            size,
                            b.block_size.as_ref().map(|s| *s.get_ref()).unwrap_or(512),
                        )?;
                    }
                }
                BackstoreKind::Blockio => {
                    if b.path.is_none() {
                        return l.err(b.name.span(), format!("blockio {name:?} needs a path"));
                    }
                    if let Some(size) = &b.size {
                        return l.err(
                            size.span(),
                            "size is read from the device for blockio; remove it",
                        );
                    }
                }
            }
            if let Some(pbs) = &b.physical_block_size {
                let logical = b.block_size.as_ref().map(|s| *s.get_ref()).unwrap_or(512);
                let p = *pbs.get_ref();
                if p < logical || !p.is_power_of_two() || p > 65536 {
                    return l.err(
                        pbs.span(),
                        format!("physical_block_size {p} must be a power of two from the block size ({logical}) to 65536"),
                    );
                }
            }
            if let Some(f) = &b.faults {
                for r in &f.rule {
                    if fault_errno(r.error.get_ref()).is_none() {
                        return l.err(
                            r.error.span(),
                            format!(
                                "unknown error {:?} (EIO, ENOSPC, ENXIO or ENODEV)",
                                r.error.get_ref()
                            ),
                        );
                    }
                    if *r.blocks.get_ref() == 0 {
                        return l.err(r.blocks.span(), "blocks must be at least 1");
                    }
                }
            }
            if let Some(rate) = &b.sanitize_rate {
                let r = rate.get_ref().0;
                if r != 0 && r < MIN_SANITIZE_RATE {
                    return l.err(
                        rate.span(),
                        format!(
                            "sanitize_rate {r} bytes per second is too slow (a sanitize would \
                             never end): give at least \"1M\" (bytes per second), or 0 for no limit"
                        ),
                    );
                }
            }
            if b.write_back.is_some() && b.kind != BackstoreKind::Fileio {
                return l.err(
                    b.name.span(),
                    "write_back applies to fileio backstores only",
                );
            }
            use rtgt_scsi::lu::identity;
            for (key, v, max) in [
                ("vendor", &b.vendor, identity::VENDOR_LEN),
                ("product", &b.product, identity::PRODUCT_LEN),
                ("revision", &b.revision, identity::REVISION_LEN),
            ] {
                if let Some(v) = v {
                    identity::check_ascii(key, v.get_ref(), max).or_else(|e| l.err(v.span(), e))?;
                }
            }
            let serial = match &b.serial {
                Some(s) => {
                    identity::check_serial(s.get_ref()).or_else(|e| l.err(s.span(), e))?;
                    (s.get_ref().clone(), s.span())
                }
                None => (identity::default_serial(name), b.name.span()),
            };
            let naa = match &b.naa {
                Some(n) => (
                    n.get_ref()
                        .parse::<rtgt_scsi::Naa>()
                        .or_else(|e| l.err(n.span(), e))?,
                    n.span(),
                ),
                None => (rtgt_scsi::Naa::local_from_name(name), b.name.span()),
            };
            // Two LUs with one identity would be taken by hosts for two
            // paths to one disk (multipath would merge them).
            if let Some(other) = serials.insert(serial.0.clone(), name.clone()) {
                return l.err(
                    serial.1,
                    format!("backstores {other:?} and {name:?} have the same serial {:?}; each LU needs its own", serial.0),
                );
            }
            if let Some(other) = naas.insert(naa.0, name.clone()) {
                return l.err(
                    naa.1,
                    format!("backstores {other:?} and {name:?} have the same naa {}; each LU needs its own", naa.0),
                );
            }
        }
        let mut iqns = HashSet::new();
        let mut rtpis = HashSet::new();
        for t in &mut self.target {
            let iqn = t.iqn.get_ref();
            if let Err(why) = check_iscsi_name(iqn) {
                return l.err(t.iqn.span(), format!("target name {iqn:?}: {why}"));
            }
            if !iqns.insert(iqn.to_ascii_lowercase()) {
                return l.err(t.iqn.span(), format!("duplicate target {iqn:?}"));
            }
            let mut tags = HashSet::new();
            for g in &mut t.tpg {
                let tag = *g.tag.get_ref();
                if tag == 0 {
                    return l.err(g.tag.span(), "tpg tag must be 1..65535");
                }
                if !tags.insert(tag) {
                    return l.err(
                        g.tag.span(),
                        format!("duplicate tpg tag {tag} in target {iqn:?}"),
                    );
                }
                for p in &g.portals {
                    if let Err(why) = parse_portal(p.get_ref()) {
                        return l.err(p.span(), why);
                    }
                }
                let Some(mode) = &g.mode else {
                    return l.err(
                        g.tag.span(),
                        format!("tpg {tag} of target {iqn:?} needs a mode: mode = \"acl\" (only initiators with an `acl` entry) or mode = \"demo\" (any initiator, every LUN)"),
                    );
                };
                if g.demo_read_only && *mode.get_ref() != TpgMode::Demo {
                    return l.err(
                        mode.span(),
                        "demo_read_only applies to mode = \"demo\" only",
                    );
                }
                if let Some(r) = &g.relative_port_id {
                    if *r.get_ref() == 0 {
                        return l.err(r.span(), "relative_port_id must be 1..65535");
                    }
                    if !rtpis.insert(*r.get_ref()) {
                        return l.err(
                            r.span(),
                            format!("relative_port_id {} is used by another tpg", r.get_ref()),
                        );
                    }
                }
                if let Some(a) = &mut g.auth {
                    a.resolve(l)?;
                }
                let mut luns = HashSet::new();
                for lun in &g.lun {
                    let n = *lun.lun.get_ref();
                    if n >= 16384 {
                        return l.err(
                            lun.lun.span(),
                            format!("LUN {n} is out of range (0..16383)"),
                        );
                    }
                    if !luns.insert(n) {
                        return l.err(
                            lun.lun.span(),
                            format!("LUN {n} is mapped twice in tpg {tag}"),
                        );
                    }
                    let bs = lun.backstore.get_ref();
                    if !names.contains(bs.as_str()) {
                        return l.err(lun.backstore.span(), format!("no backstore named {bs:?}"));
                    }
                }
                let mut initiators = HashSet::new();
                for acl in &mut g.acl {
                    let name = acl.initiator.get_ref();
                    if let Err(why) = check_iscsi_name(name) {
                        return l.err(
                            acl.initiator.span(),
                            format!("initiator name {name:?}: {why}"),
                        );
                    }
                    if !initiators.insert(name.to_ascii_lowercase()) {
                        return l.err(
                            acl.initiator.span(),
                            format!("initiator {name:?} has two ACLs in tpg {tag}"),
                        );
                    }
                    let mut mapped = HashSet::new();
                    for m in &acl.mapped_lun {
                        let n = *m.mapped_lun.get_ref();
                        if n >= 16384 {
                            return l.err(
                                m.mapped_lun.span(),
                                format!("mapped_lun {n} is out of range (0..16383)"),
                            );
                        }
                        if !mapped.insert(n) {
                            return l.err(
                                m.mapped_lun.span(),
                                format!("mapped_lun {n} appears twice for initiator {name:?}"),
                            );
                        }
                        let t = *m.tpg_lun.get_ref();
                        if !luns.contains(&t) {
                            return l.err(m.tpg_lun.span(), format!("tpg {tag} has no LUN {t}"));
                        }
                    }
                    if let Some(a) = &mut acl.auth {
                        a.resolve(l)?;
                    }
                }
            }
        }
        self.check_secret_roles(l)
    }
}

/// RFC 7143 12.1.3 wants CHAP secrets of at least 96 bits; open-iscsi and
/// the Windows initiator refuse longer than 16 or 256 bytes respectively.
const MIN_SECRET: usize = 12;
const MAX_SECRET: usize = 255;

impl Auth {
    /// Read the secrets (inline or from their files) and check them.
    fn resolve(&mut self, l: &Lines<'_>) -> Result<(), ConfigError> {
        let user = self.userid.get_ref();
        if user.is_empty() {
            return l.err(self.userid.span(), "userid is empty");
        }
        let secret = read_secret(
            l,
            &self.userid,
            &self.password,
            &self.password_file,
            "password",
        )?;
        let mutual = match (
            &self.mutual_userid,
            &self.mutual_password,
            &self.mutual_password_file,
        ) {
            (None, None, None) => None,
            (None, Some(p), _) => return l.err(p.span(), "mutual_password needs a mutual_userid"),
            (None, None, Some(p)) => {
                return l.err(p.span(), "mutual_password_file needs a mutual_userid")
            }
            (Some(u), p, f) => {
                if u.get_ref().is_empty() {
                    return l.err(u.span(), "mutual_userid is empty");
                }
                let s = read_secret(l, u, p, f, "mutual_password")?;
                Some(Credential {
                    user: u.get_ref().clone(),
                    secret: s,
                })
            }
        };
        let auth = ChapAuth {
            initiator: Credential {
                user: user.clone(),
                secret,
            },
            mutual,
        };
        if let Err(e) = auth.validate() {
            let span = self
                .mutual_userid
                .as_ref()
                .map(|u| u.span())
                .unwrap_or(self.userid.span());
            return l.err(span, e.to_string());
        }
        self.resolved = Some(auth);
        Ok(())
    }
}

/// One secret, given inline (`key`) or in a file (`key_file`); errors
/// name the key, never the secret.
fn read_secret(
    l: &Lines<'_>,
    user: &Spanned<String>,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<PathBuf>>,
    key: &str,
) -> Result<Secret, ConfigError> {
    let bytes = match (inline, file) {
        (Some(_), Some(f)) => {
            return l.err(
                f.span(),
                format!("give either {key} or {key}_file, not both"),
            )
        }
        (None, None) => {
            return l.err(
                user.span(),
                format!(
                    "{key} (or {key}_file) is missing for user {:?}",
                    user.get_ref()
                ),
            )
        }
        (Some(p), None) => (p.span(), p.get_ref().as_bytes().to_vec()),
        (None, Some(f)) => {
            use std::os::unix::fs::PermissionsExt;
            let path = f.get_ref();
            let meta = std::fs::metadata(path)
                .map_err(|e| l.error(f.span(), format!("{key}_file {}: {e}", path.display())))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return l.err(
                    f.span(),
                    format!(
                        "{key}_file {} is readable by others (mode {mode:04o}): chmod 600 it",
                        path.display()
                    ),
                );
            }
            // A secret is a small regular file: a FIFO or a device would
            // block or never end (and the control API waits for this).
            if !meta.is_file() {
                return l.err(
                    f.span(),
                    format!("{key}_file {} is not a regular file", path.display()),
                );
            }
            let mut b = Vec::new();
            std::fs::File::open(path)
                .and_then(|file| {
                    use std::io::Read;
                    file.take(MAX_SECRET as u64 + 3).read_to_end(&mut b)
                })
                .map_err(|e| l.error(f.span(), format!("{key}_file {}: {e}", path.display())))?;
            if b.last() == Some(&b'\n') {
                b.pop();
                if b.last() == Some(&b'\r') {
                    b.pop();
                }
            }
            (f.span(), b)
        }
    };
    let (span, bytes) = bytes;
    if bytes.len() < MIN_SECRET || bytes.len() > MAX_SECRET {
        let n = bytes.len();
        return l.err(
            span,
            format!("the {key} of user {:?} has {n} bytes; CHAP secrets need {MIN_SECRET} to {MAX_SECRET}", user.get_ref()),
        );
    }
    Ok(Secret::new(bytes))
}

fn check_size(l: &Lines<'_>, size: &Spanned<Size>, block: u32) -> Result<(), ConfigError> {
    let n = size.get_ref().0;
    if n == 0 || !n.is_multiple_of(block as u64) {
        return l.err(
            size.span(),
            format!("size {n} must be a non-zero multiple of the block size {block}"),
        );
    }
    Ok(())
}

/// Light validation of an iSCSI name (RFC 3720 3.2.6): the type prefix and
/// the characters allowed.
pub fn check_iscsi_name(name: &str) -> Result<(), String> {
    if name.len() > 223 {
        return Err("longer than 223 bytes".into());
    }
    let lower = name.to_ascii_lowercase();
    if !(lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa.")) {
        return Err("must start with iqn., eui. or naa.".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
    {
        return Err("may contain only letters, digits, '-', '.' and ':'".into());
    }
    Ok(())
}

/// Parse `host:port`, `host` (port 3260), `[v6]:port`.
pub fn parse_portal(s: &str) -> Result<SocketAddr, String> {
    // Literal addresses only (and `localhost`): a portal is an address of
    // this machine to listen on, and looking a name up would block the
    // caller (the control API among them) for as long as DNS takes.
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = match s.rsplit_once(':') {
        // "host:port", but not a bare IPv6 address ("::1").
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("invalid portal {s:?}: the port must be 0..65535"))?;
            (h, port)
        }
        _ => (s, ISCSI_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse::<std::net::IpAddr>().map_err(|_| {
            format!(
                "invalid portal {s:?}: give an IP address of this machine and an optional port \
                 (0.0.0.0:3260, 192.0.2.10, [::]:3260); host names are not looked up"
            )
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn lu_identity_is_checked_and_unique() {
        let two = |a: &str, b: &str| {
            parse(&format!(
                "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n{a}\n\
                 [[backstore]]\nname = \"b\"\ntype = \"ramdisk\"\nsize = \"1M\"\n{b}\n"
            ))
        };
        assert!(two(
            "naa = \"6001405a1b2c3d4e5f60718293a4b5c6\"",
            "serial = \"x1\""
        )
        .is_ok());
        for (a, b, line, what) in [
            (
                "naa = \"3000000000000001\"",
                "naa = \"0x3000000000000001\"",
                10,
                "same naa",
            ),
            ("serial = \"s1\"", "serial = \"s1\"", 10, "same serial"),
            ("vendor = \"NINECHARS\"", "", 5, "longer than 8"),
            ("product = \"seventeen chars!!\"", "", 5, "longer than 16"),
            ("revision = \"12345\"", "", 5, "longer than 4"),
            ("naa = \"5001405\"", "", 5, "16 or 32 hex digits"),
            ("serial = \" padded\"", "", 5, "spaces"),
        ] {
            let e = two(a, b).unwrap_err();
            assert_eq!(e.line, Some(line), "{a} / {b}: {e}");
            assert!(e.message.contains(what), "{a} / {b}: {e}");
        }
    }

    #[test]
    fn demo_is_valid() {
        let c = Config::demo();
        assert_eq!(c.target[0].iqn.get_ref(), DEMO_IQN);
        assert_eq!(c.backstore[0].size.as_ref().unwrap().get_ref().0, 1 << 30);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12Q").is_err());
    }

    #[test]
    fn syntax_error_names_line() {
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().starts_with("test.toml:4:"), "{e}");
    }

    #[test]
    fn unknown_backstore_reference_names_line() {
        let text = "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\n[[target]]\niqn = \"iqn.2026-11.x:y\"\n[[target.tpg]]\ntag = 1\nmode = \"acl\"\n[[target.tpg.lun]]\nlun = 0\nbackstore = \"b\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("no backstore named \"b\""), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e =
            parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\ncolour = 3\n")
                .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn bad_values() {
        let e = parse(
            "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nblock_size = 1000\n",
        )
        .unwrap_err();
        assert!(e.message.contains("block_size 1000"), "{e}");
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"fileio\"\n").unwrap_err();
        assert!(e.message.contains("needs a path"), "{e}");
        let e = parse("[[target]]\niqn = \"bogus\"\n").unwrap_err();
        assert!(e.message.contains("iqn."), "{e}");
        let e = parse("[[target]]\niqn = \"iqn.2026-11.a:b\"\n[[target.tpg]]\ntag = 1\nportals = [\"1.2.3.4:notaport\"]\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn lun_options() {
        let c = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nremovable = true\nphysical_block_size = 4096\nthin = false\n").unwrap();
        let b = &c.backstore[0];
        assert!(b.removable);
        assert_eq!(
            b.physical_block_size.as_ref().map(|p| *p.get_ref()),
            Some(4096)
        );
        assert_eq!(b.thin, Some(false));
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nphysical_block_size = 1000\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nblock_size = 4096\nphysical_block_size = 512\n").unwrap_err();
        assert!(e.message.contains("physical_block_size 512"), "{e}");
    }

    #[test]
    fn sanitize_rate() {
        let head = "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n";
        let rate = |text: &str| {
            parse(&format!("{head}{text}"))
                .map(|c| c.backstore[0].sanitize_rate.as_ref().map(|r| r.get_ref().0))
        };
        assert_eq!(rate("").unwrap(), None);
        assert_eq!(rate("sanitize_rate = \"100M\"\n").unwrap(), Some(100 << 20));
        assert_eq!(rate("sanitize_rate = 2097152\n").unwrap(), Some(2 << 20));
        assert_eq!(rate("sanitize_rate = 0\n").unwrap(), Some(0));
        for (bad, says) in [
            ("20", "too slow"),
            ("\"512K\"", "too slow"),
            ("\"fast\"", "invalid size"),
            ("\"20Q\"", "unknown unit"),
            ("-1", "negative"),
            ("true", "expected a size"),
        ] {
            let e = rate(&format!("sanitize_rate = {bad}\n")).unwrap_err();
            assert_eq!(e.line, Some(5), "{bad}: {e}");
            assert!(e.to_string().starts_with("test.toml:5: "), "{e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    const TPG: &str = "[[backstore]]\nname = \"x\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\
        [[target]]\niqn = \"iqn.2026-11.a:t\"\n[[target.tpg]]\ntag = 1\n";

    /// Two ACLs and a group credential, with the secrets given.
    fn three_credentials(
        group: &str,
        ow2: &str,
        mu2: &str,
        mu2_mutual: &str,
        disc_mutual: &str,
    ) -> String {
        format!(
            "[iscsi.discovery_auth]\nuserid = \"d\"\npassword = \"discovery-secret\"\n\
             mutual_userid = \"dt\"\nmutual_password = \"{disc_mutual}\"\n\
             {TPG}mode = \"acl\"\n\
             [target.tpg.auth]\nuserid = \"g\"\npassword = \"{group}\"\n\
             [[target.tpg.acl]]\ninitiator = \"iqn.1994-05.x:ow2\"\n\
             [target.tpg.acl.auth]\nuserid = \"ow2\"\npassword = \"{ow2}\"\n\
             [[target.tpg.acl]]\ninitiator = \"iqn.1994-05.x:mu2\"\n\
             [target.tpg.acl.auth]\nuserid = \"mu2\"\npassword = \"{mu2}\"\n\
             mutual_userid = \"tgt\"\nmutual_password = \"{mu2_mutual}\"\n"
        )
    }

    #[test]
    fn no_secret_authenticates_both_initiators_and_the_target() {
        let ok = three_credentials(
            "group-secret-1",
            "ow2-secret-123",
            "mu2-secret-123",
            "target-secret-1",
            "disc-target-secret",
        );
        parse(&ok).unwrap();
        // The same target secret for discovery and an ACL is no clash.
        parse(&three_credentials(
            "group-secret-1",
            "ow2-secret-123",
            "mu2-secret-123",
            "target-secret-1",
            "target-secret-1",
        ))
        .unwrap();
        for (case, text, line, places) in [
            (
                "ACL ow2's initiator secret is ACL mu2's mutual secret",
                three_credentials(
                    "group-secret-1",
                    "shared-secret-S",
                    "mu2-secret-123",
                    "shared-secret-S",
                    "disc-target-secret",
                ),
                28,
                ["ACL \"iqn.1994-05.x:mu2\"", "ACL \"iqn.1994-05.x:ow2\""],
            ),
            (
                "the group secret is an ACL's mutual secret",
                three_credentials(
                    "shared-secret-S",
                    "ow2-secret-123",
                    "mu2-secret-123",
                    "shared-secret-S",
                    "disc-target-secret",
                ),
                28,
                ["ACL \"iqn.1994-05.x:mu2\"", "tpg 1"],
            ),
            (
                "an ACL's initiator secret is the discovery mutual secret",
                three_credentials(
                    "group-secret-1",
                    "shared-secret-S",
                    "mu2-secret-123",
                    "target-secret-1",
                    "shared-secret-S",
                ),
                4,
                ["[iscsi.discovery_auth]", "ACL \"iqn.1994-05.x:ow2\""],
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, Some(line), "{case}: {e}");
            assert!(e.message.contains("RFC 7143 9.2.1"), "{case}: {e}");
            for p in places {
                assert!(e.message.contains(p), "{case}: {p} not in {e}");
            }
            assert!(!e.to_string().contains("shared-secret-S"), "{case}: {e}");
            // A change through the control API is validated the same way.
            let c: Config = toml::from_str(&text).unwrap();
            let e = c.validated(Path::new("<change>")).unwrap_err();
            assert!(
                e.message.contains("RFC 7143 9.2.1") && e.line.is_none(),
                "{case}: {e}"
            );
        }
    }

    #[test]
    fn inline_secrets_need_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from a file 123\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let head = format!("{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\n");
        let inline = format!("{head}password = \"twelve chars\"\n");
        let by_file = format!("{head}password_file = \"{}\"\n", secret.display());
        let f = dir.path().join("rtgt.toml");
        for (text, mode, ok) in [
            (&inline, 0o644, false),
            (&inline, 0o640, false),
            (&inline, 0o604, false),
            (&inline, 0o600, true),
            (&inline, 0o400, true),
            (&by_file, 0o644, true),
        ] {
            std::fs::write(&f, text).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            match Config::load(&f) {
                Ok(_) => assert!(ok, "mode {mode:o} accepted"),
                Err(e) => {
                    assert!(!ok, "mode {mode:o}: {e}");
                    assert_eq!(e.line, Some(12), "{e}");
                    assert!(
                        e.message.contains("chmod 600") && e.message.contains("password_file"),
                        "{e}"
                    );
                    assert!(
                        e.to_string().starts_with(&format!("{}:12:", f.display())),
                        "{e}"
                    );
                    assert!(!e.to_string().contains("twelve chars"), "{e}");
                }
            }
        }
    }

    #[test]
    fn chap_min_challenge_is_checked() {
        let t = |v: &str| format!("[iscsi]\nchap_min_challenge = {v}\n{TPG}mode = \"demo\"\n");
        for (v, ok) in [
            ("16", true),
            ("1", true),
            ("1024", true),
            ("0", false),
            ("1025", false),
            ("-1", false),
        ] {
            match parse(&t(v)) {
                Ok(c) => {
                    assert!(ok, "{v} accepted");
                    assert_eq!(
                        c.iscsi
                            .chap_min_challenge
                            .map(|m| m.into_inner().to_string()),
                        Some(v.to_string())
                    );
                }
                Err(e) => {
                    assert!(!ok, "{v}: {e}");
                    assert_eq!(e.line, Some(2), "{e}");
                }
            }
        }
    }

    #[test]
    fn tpg_mode_is_required() {
        let e = parse(TPG).unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("needs a mode"), "{e}");
        parse(&format!("{TPG}mode = \"acl\"\n")).unwrap();
        let e = parse(&format!("{TPG}mode = \"acl\"\ndemo_read_only = true\n")).unwrap_err();
        assert!(e.message.contains("demo_read_only"), "{e}");
        let e = parse(&format!("{TPG}mode = \"open\"\n")).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
    }

    #[test]
    fn acls_and_mapped_luns_are_checked() {
        let head = format!("{TPG}mode = \"acl\"\n[[target.tpg.lun]]\nlun = 3\nbackstore = \"x\"\n");
        let acl = "[[target.tpg.acl]]\ninitiator = \"iqn.2026-11.a:host\"\n";
        parse(&format!("{head}{acl}[[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 3\nread_only = true\n")).unwrap();
        let e = parse(&format!(
            "{head}{acl}[[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 4\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("no LUN 4"), "{e}");
        assert_eq!(e.line, Some(17), "{e}");
        let e = parse(&format!("{head}{acl}{acl}")).unwrap_err();
        assert!(e.message.contains("two ACLs"), "{e}");
        let e = parse(&format!("{head}[[target.tpg.acl]]\ninitiator = \"host\"\n")).unwrap_err();
        assert!(e.message.contains("iqn."), "{e}");
    }

    #[test]
    fn chap_secrets() {
        let head = format!("{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\n");
        let c = parse(&format!("{head}password = \"twelve chars\"\n")).unwrap();
        let a = c.target[0].tpg[0]
            .auth
            .as_ref()
            .unwrap()
            .resolved
            .clone()
            .unwrap();
        assert_eq!(a.initiator.secret.expose(), b"twelve chars");
        // Errors name the line, never the secret.
        let e = parse(&format!("{head}password = \"short\"\n")).unwrap_err();
        assert!(
            e.message.contains("12 to 255") && !e.to_string().contains("short\""),
            "{e}"
        );
        assert!(
            !format!("{c:?}").contains("twelve chars"),
            "Debug leaks the secret"
        );
        let e = parse(&format!(
            "{head}password = \"twelve chars\"\nmutual_userid = \"t\"\nmutual_password = \"twelve chars\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("must differ"), "{e}");
        assert_eq!(e.line, Some(13), "{e}");
        let e = parse(&head).unwrap_err();
        assert!(
            e.message.contains("password (or password_file) is missing"),
            "{e}"
        );
        let e = parse(&format!(
            "{head}password = \"twelve chars\"\nmutual_password = \"another secret\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("needs a mutual_userid"), "{e}");
        let e = parse(&format!(
            "[iscsi]\nchap_algorithms = [\"SHA512\"]\n{TPG}mode = \"demo\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("SHA512") && e.line == Some(2), "{e}");
    }

    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from a file 123\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\npassword_file = \"{}\"\n",
            f.display()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{e}");
        assert_eq!(e.line, Some(12), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&text).unwrap();
        let a = c.target[0].tpg[0]
            .auth
            .as_ref()
            .unwrap()
            .resolved
            .clone()
            .unwrap();
        assert_eq!(a.initiator.secret.expose(), b"from a file 123");
        let e = parse(&text.replace("secret\"", "missing\"")).unwrap_err();
        assert!(e.message.contains("password_file"), "{e}");
    }

    #[test]
    fn portals() {
        assert_eq!(parse_portal("127.0.0.1:3261").unwrap().port(), 3261);
        assert_eq!(parse_portal("127.0.0.1").unwrap().port(), 3260);
        assert_eq!(parse_portal("[::1]:3262").unwrap().port(), 3262);
        assert_eq!(parse_portal("::1").unwrap(), "[::1]:3260".parse().unwrap());
        assert_eq!(
            parse_portal("localhost:3263").unwrap(),
            "127.0.0.1:3263".parse().unwrap()
        );
        assert!(parse_portal("storage.example.com:3260").is_err(), "no DNS");
        assert!(parse_portal("a").is_err());
        assert!(parse_portal("127.0.0.1:99999").is_err());
    }
}
