//! The syntax of single values in the configuration: sizes, portals,
//! iSCSI names, the enumerations, fault errors. Shared by the file, the
//! control API, the CLI and the importers.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The default iSCSI port.
pub const ISCSI_PORT: u16 = 3260;
/// The built-in demo target.
pub const DEMO_IQN: &str = "iqn.2026-11.org.rtgt:demo";

/// Who may use a portal group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TpgMode {
    /// Any initiator, seeing every LUN of the group.
    Demo,
    /// Only initiators with an `acl` entry, seeing their mapped LUNs.
    Acl,
}

/// The asymmetric access state (ALUA) a target port group is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AluaState {
    /// Every command, the preferred path.
    #[default]
    ActiveOptimized,
    /// Every command, a path initiators use when no optimized one is left.
    #[serde(rename = "active_nonoptimized")]
    ActiveNonOptimized,
    /// Only INQUIRY, REPORT LUNS, MODE/LOG/PR commands, READ CAPACITY,
    /// REQUEST SENSE and the TARGET PORT GROUPS commands; others get NOT
    /// READY, TARGET PORT IN STANDBY STATE.
    Standby,
    /// Only INQUIRY, REPORT LUNS, REQUEST SENSE and the TARGET PORT GROUPS
    /// commands; others get NOT READY, TARGET PORT IN UNAVAILABLE STATE.
    Unavailable,
    /// Only INQUIRY, REPORT LUNS and REQUEST SENSE.
    Offline,
}

/// The name the file uses (the core's names are the same).
impl std::fmt::Display for AluaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core().fmt(f)
    }
}

impl AluaState {
    pub const ALL: [AluaState; 5] = [
        AluaState::ActiveOptimized,
        AluaState::ActiveNonOptimized,
        AluaState::Standby,
        AluaState::Unavailable,
        AluaState::Offline,
    ];

    pub fn core(self) -> rtgt_scsi::alua::AccessState {
        use rtgt_scsi::alua::AccessState as A;
        match self {
            AluaState::ActiveOptimized => A::ActiveOptimized,
            AluaState::ActiveNonOptimized => A::ActiveNonOptimized,
            AluaState::Standby => A::Standby,
            AluaState::Unavailable => A::Unavailable,
            AluaState::Offline => A::Offline,
        }
    }

    /// The state a group asked by SET TARGET PORT GROUPS is persisted as
    /// (None: Transitioning, which is never asked for).
    pub fn from_core(s: rtgt_scsi::alua::AccessState) -> Option<AluaState> {
        use rtgt_scsi::alua::AccessState as A;
        Some(match s {
            A::ActiveOptimized => AluaState::ActiveOptimized,
            A::ActiveNonOptimized => AluaState::ActiveNonOptimized,
            A::Standby => AluaState::Standby,
            A::Unavailable => AluaState::Unavailable,
            A::Offline => AluaState::Offline,
            A::Transitioning => return None,
        })
    }

    pub fn name(self) -> &'static str {
        self.core().name()
    }

    pub fn is_default(&self) -> bool {
        *self == AluaState::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackstoreKind {
    Ramdisk,
    Fileio,
    Blockio,
    /// A Ceph RBD image (`pool`, `image`, `ceph_conf`, ...).
    Rbd,
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
