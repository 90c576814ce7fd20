//! The configuration document: every object the daemon serves, in the
//! shape of the TOML file, without the file's source positions.
//!
//! It is the one representation the management plane shares: the control
//! API sends and takes its objects as JSON, `rtgt config dump` and the saved
//! file are it as TOML, and `rtgt diff` / `apply` compare two of them
//! object by object. A document is turned into what runs by writing it as
//! TOML and reading that back with [`Config::parse`], so a change made
//! through the API meets exactly the checks a file does and what is saved
//! always loads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{self, BackstoreKind, Config, FaultOp, TpgMode};
use crate::model::Model;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Doc {
    #[serde(default, skip_serializing_if = "IscsiDoc::is_default")]
    pub iscsi: IscsiDoc,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backstore: Vec<BackstoreDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<TargetDoc>,
}

/// Settings of the iSCSI fabric as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IscsiDoc {
    /// CHAP algorithms accepted, strongest first (SHA3-256, SHA256, SHA1, MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_algorithms: Option<Vec<String>>,
    /// CHAP required of discovery sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_auth: Option<AuthDoc>,
    /// Shortest CHAP_C (bytes) accepted from an initiator (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_min_challenge: Option<u32>,
}

impl IscsiDoc {
    fn is_default(&self) -> bool {
        *self == IscsiDoc::default()
    }
}

/// CHAP credentials: what the initiator proves, and for mutual CHAP what
/// the target proves back. Each secret is given inline or as a file.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthDoc {
    pub userid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_userid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mutual_password_file: Option<PathBuf>,
}

impl fmt::Debug for AuthDoc {
    // Written out so that inline secrets never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthDoc")
            .field("userid", &self.userid)
            .field("mutual_userid", &self.mutual_userid)
            .finish_non_exhaustive()
    }
}

impl AuthDoc {
    /// Without the inline secrets (files stay: they name, not hold, them).
    fn redacted(&self) -> AuthDoc {
        AuthDoc {
            password: None,
            mutual_password: None,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackstoreDoc {
    /// Letters, digits, '-', '_' and '.'.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: BackstoreKind,
    /// Bytes, or a whole number with K, M, G or T ("10G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub size: Option<SizeDoc>,
    /// fileio: the image file; blockio: the block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// 512 or 4096 (read from the device for blockio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// fileio: cache writes until SYNCHRONIZE CACHE or FUA (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub removable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin: Option<bool>,
    /// SANITIZE OVERWRITE bytes per second ("100M"); absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub sanitize_rate: Option<SizeDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsDoc>,
    /// INQUIRY vendor, up to 8 printable ASCII characters (default "RTGT").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// INQUIRY product, up to 16 (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// INQUIRY revision, up to 4 (default "0001").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Unit serial number, VPD 80h (default: derived from the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// NAA designator, VPD 83h: 16 or 32 hex digits (default: NAA 3,
    /// locally assigned, derived from the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(0x)?([235][0-9a-fA-F]{15}|6[0-9a-fA-F]{31})$")]
    pub naa: Option<String>,
}

impl BackstoreDoc {
    /// A backstore with every optional setting left at its default.
    pub fn new(name: &str, kind: BackstoreKind) -> BackstoreDoc {
        BackstoreDoc {
            name: name.to_string(),
            kind,
            size: None,
            path: None,
            block_size: None,
            write_back: None,
            read_only: false,
            removable: false,
            physical_block_size: None,
            thin: None,
            sanitize_rate: None,
            faults: None,
            vendor: None,
            product: None,
            revision: None,
            serial: None,
            naa: None,
        }
    }
}

/// Injected faults (test rigs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsDoc {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rule: Vec<FaultRuleDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRuleDoc {
    pub op: FaultOp,
    pub lba: u64,
    pub blocks: u64,
    /// EIO, ENOSPC, ENXIO or ENODEV.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetDoc {
    pub iqn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpg: Vec<TpgDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TpgDoc {
    /// 1..65535.
    pub tag: u16,
    /// "address:port" (port 3260 when left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<String>,
    /// demo: any initiator sees every LUN; acl: only initiators with an ACL.
    pub mode: TpgMode,
    #[serde(default, skip_serializing_if = "is_false")]
    pub demo_read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_port_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lun: Vec<LunDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LunDoc {
    /// 0..16383.
    pub lun: u64,
    pub backstore: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclDoc {
    pub initiator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped_lun: Vec<MappedLunDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappedLunDoc {
    /// The LUN number the initiator sees (0..16383).
    pub mapped_lun: u64,
    /// The group's LUN it reaches.
    pub tpg_lun: u64,
    /// Write-protected for this initiator.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A byte count, written `"10G"` when a whole number of a unit, else as
/// digits; read from either form (or a plain integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeDoc(pub u64);

impl Serialize for SizeDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for SizeDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        config::Size::deserialize(d).map(|s| SizeDoc(s.0))
    }
}

/// `1073741824` -> `"1G"`; sizes that are no whole number of a unit stay digits.
/// The order people expect names in: runs of digits compare as numbers
/// (k10x2 before k10x10), letters without case; ties broken exactly, so
/// the order is total.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, run))
        })
    }
    let mut x = runs(a);
    let mut y = runs(b);
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Some((_, p)), Some((_, q))) => p
                .chars()
                .map(|c| c.to_ascii_lowercase())
                .cmp(q.chars().map(|c| c.to_ascii_lowercase())),
        };
        if ord.is_ne() {
            return ord;
        }
    }
}

pub fn format_size(n: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

fn auth_doc(a: &config::Auth) -> AuthDoc {
    AuthDoc {
        userid: a.userid.get_ref().clone(),
        password: a.password.as_ref().map(|p| p.get_ref().clone()),
        password_file: a.password_file.as_ref().map(|p| p.get_ref().clone()),
        mutual_userid: a.mutual_userid.as_ref().map(|p| p.get_ref().clone()),
        mutual_password: a.mutual_password.as_ref().map(|p| p.get_ref().clone()),
        mutual_password_file: a.mutual_password_file.as_ref().map(|p| p.get_ref().clone()),
    }
}

impl Doc {
    /// The document a validated file describes, in canonical order.
    pub fn from_config(c: &Config) -> Doc {
        let mut d = Doc {
            iscsi: IscsiDoc {
                chap_algorithms: c
                    .iscsi
                    .chap_algorithms
                    .as_ref()
                    .map(|a| a.get_ref().clone()),
                discovery_auth: c.iscsi.discovery_auth.as_ref().map(auth_doc),
                chap_min_challenge: c.iscsi.chap_min_challenge.as_ref().map(|m| *m.get_ref()),
            },
            backstore: c
                .backstore
                .iter()
                .map(|b| BackstoreDoc {
                    name: b.name.get_ref().clone(),
                    kind: b.kind,
                    size: b.size.as_ref().map(|s| SizeDoc(s.get_ref().0)),
                    path: b.path.as_ref().map(|p| p.get_ref().clone()),
                    block_size: b.block_size.as_ref().map(|s| *s.get_ref()),
                    write_back: b.write_back,
                    read_only: b.read_only,
                    removable: b.removable,
                    physical_block_size: b.physical_block_size.as_ref().map(|s| *s.get_ref()),
                    thin: b.thin,
                    sanitize_rate: b.sanitize_rate.as_ref().map(|s| SizeDoc(s.get_ref().0)),
                    vendor: b.vendor.as_ref().map(|v| v.get_ref().clone()),
                    product: b.product.as_ref().map(|v| v.get_ref().clone()),
                    revision: b.revision.as_ref().map(|v| v.get_ref().clone()),
                    serial: b.serial.as_ref().map(|v| v.get_ref().clone()),
                    naa: b.naa.as_ref().map(|v| v.get_ref().clone()),
                    faults: b.faults.as_ref().map(|f| FaultsDoc {
                        latency_ms: f.latency_ms,
                        rule: f
                            .rule
                            .iter()
                            .map(|r| FaultRuleDoc {
                                op: r.op,
                                lba: r.lba,
                                blocks: *r.blocks.get_ref(),
                                error: r.error.get_ref().clone(),
                            })
                            .collect(),
                    }),
                })
                .collect(),
            target: c
                .target
                .iter()
                .map(|t| TargetDoc {
                    iqn: t.iqn.get_ref().clone(),
                    alias: t.alias.clone(),
                    tpg: t
                        .tpg
                        .iter()
                        .map(|g| TpgDoc {
                            tag: *g.tag.get_ref(),
                            portals: g.portals.iter().map(|p| p.get_ref().clone()).collect(),
                            mode: g.mode.as_ref().map_or(TpgMode::Acl, |m| *m.get_ref()),
                            demo_read_only: g.demo_read_only,
                            relative_port_id: g.relative_port_id.as_ref().map(|r| *r.get_ref()),
                            auth: g.auth.as_ref().map(auth_doc),
                            lun: g
                                .lun
                                .iter()
                                .map(|l| LunDoc {
                                    lun: *l.lun.get_ref(),
                                    backstore: l.backstore.get_ref().clone(),
                                    read_only: l.read_only,
                                })
                                .collect(),
                            acl: g
                                .acl
                                .iter()
                                .map(|a| AclDoc {
                                    initiator: a.initiator.get_ref().clone(),
                                    auth: a.auth.as_ref().map(auth_doc),
                                    mapped_lun: a
                                        .mapped_lun
                                        .iter()
                                        .map(|m| MappedLunDoc {
                                            mapped_lun: *m.mapped_lun.get_ref(),
                                            tpg_lun: *m.tpg_lun.get_ref(),
                                            read_only: m.read_only,
                                        })
                                        .collect(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        d.canonicalize();
        d
    }

    /// Sort every list by its objects' identities, so that the saved file
    /// is stable (diffs in git show changes, not reorderings).
    pub fn canonicalize(&mut self) {
        self.backstore.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        self.target.sort_by(|a, b| natural_cmp(&a.iqn, &b.iqn));
        for t in &mut self.target {
            t.tpg.sort_by_key(|g| g.tag);
            for g in &mut t.tpg {
                g.lun.sort_by_key(|l| l.lun);
                g.acl
                    .sort_by(|a, b| natural_cmp(&a.initiator, &b.initiator));
                for a in &mut g.acl {
                    a.mapped_lun.sort_by_key(|m| m.mapped_lun);
                }
            }
        }
    }

    /// The document as the TOML file `rtgt serve --config` reads. Without
    /// `secrets`, inline CHAP secrets are left out (files are named).
    pub fn to_toml(&self, secrets: bool) -> String {
        let shown;
        let doc = if secrets {
            self
        } else {
            shown = self.redacted();
            &shown
        };
        let mut body = String::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(doc) {
            write_table(&mut body, "", &m);
        }
        let hidden = !secrets && *doc != *self;
        let mut out = String::from(
            "# rtgt configuration (written by rtgt; `rtgt serve --config` reads it)\n",
        );
        if hidden {
            out.push_str(
                "# Inline CHAP secrets are left out; `rtgt config dump --secrets` shows them.\n",
            );
        }
        out.push_str(&body);
        out
    }

    /// The document without inline CHAP secrets.
    pub fn redacted(&self) -> Doc {
        let mut d = self.clone();
        let hide = |a: &mut Option<AuthDoc>| {
            if let Some(x) = a {
                *x = x.redacted();
            }
        };
        hide(&mut d.iscsi.discovery_auth);
        for t in &mut d.target {
            for g in &mut t.tpg {
                hide(&mut g.auth);
                for a in &mut g.acl {
                    hide(&mut a.auth);
                }
            }
        }
        d
    }

    /// Check the document as a file would be checked; the model it
    /// describes, or what is wrong.
    pub fn check(&self) -> Result<Model, String> {
        let config = self
            .to_config()
            .validated(Path::new("<change>"))
            .map_err(|e| e.message)?;
        Ok(Model::from_config(&config))
    }

    /// The configuration this document describes, as if read from a file
    /// (without source positions), for [`Config::validated`].
    fn to_config(&self) -> Config {
        fn sp<T>(v: T) -> toml::Spanned<T> {
            toml::Spanned::new(0..0, v)
        }
        let auth = |a: &AuthDoc| config::Auth {
            userid: sp(a.userid.clone()),
            password: a.password.clone().map(sp),
            password_file: a.password_file.clone().map(sp),
            mutual_userid: a.mutual_userid.clone().map(sp),
            mutual_password: a.mutual_password.clone().map(sp),
            mutual_password_file: a.mutual_password_file.clone().map(sp),
            resolved: None,
        };
        Config {
            iscsi: config::Iscsi {
                chap_algorithms: self.iscsi.chap_algorithms.clone().map(sp),
                discovery_auth: self.iscsi.discovery_auth.as_ref().map(auth),
                chap_min_challenge: self.iscsi.chap_min_challenge.map(sp),
            },
            backstore: self
                .backstore
                .iter()
                .map(|b| config::Backstore {
                    name: sp(b.name.clone()),
                    kind: b.kind,
                    size: b.size.map(|s| sp(config::Size(s.0))),
                    path: b.path.clone().map(sp),
                    block_size: b.block_size.map(sp),
                    write_back: b.write_back,
                    read_only: b.read_only,
                    removable: b.removable,
                    physical_block_size: b.physical_block_size.map(sp),
                    thin: b.thin,
                    sanitize_rate: b.sanitize_rate.map(|s| sp(config::Size(s.0))),
                    vendor: b.vendor.clone().map(sp),
                    product: b.product.clone().map(sp),
                    revision: b.revision.clone().map(sp),
                    serial: b.serial.clone().map(sp),
                    naa: b.naa.clone().map(sp),
                    faults: b.faults.as_ref().map(|f| config::Faults {
                        latency_ms: f.latency_ms,
                        rule: f
                            .rule
                            .iter()
                            .map(|r| config::FaultRule {
                                op: r.op,
                                lba: r.lba,
                                blocks: sp(r.blocks),
                                error: sp(r.error.clone()),
                            })
                            .collect(),
                    }),
                })
                .collect(),
            target: self
                .target
                .iter()
                .map(|t| config::Target {
                    iqn: sp(t.iqn.clone()),
                    alias: t.alias.clone(),
                    tpg: t
                        .tpg
                        .iter()
                        .map(|g| config::Tpg {
                            tag: sp(g.tag),
                            portals: g.portals.iter().cloned().map(sp).collect(),
                            mode: Some(sp(g.mode)),
                            demo_read_only: g.demo_read_only,
                            relative_port_id: g.relative_port_id.map(sp),
                            auth: g.auth.as_ref().map(auth),
                            lun: g
                                .lun
                                .iter()
                                .map(|l| config::Lun {
                                    lun: sp(l.lun),
                                    backstore: sp(l.backstore.clone()),
                                    read_only: l.read_only,
                                })
                                .collect(),
                            acl: g
                                .acl
                                .iter()
                                .map(|a| config::Acl {
                                    initiator: sp(a.initiator.clone()),
                                    auth: a.auth.as_ref().map(auth),
                                    mapped_lun: a
                                        .mapped_lun
                                        .iter()
                                        .map(|m| config::MappedLun {
                                            mapped_lun: sp(m.mapped_lun),
                                            tpg_lun: sp(m.tpg_lun),
                                            read_only: m.read_only,
                                        })
                                        .collect(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn target(&self, iqn: &str) -> Option<&TargetDoc> {
        self.target.iter().find(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }

    pub fn target_mut(&mut self, iqn: &str) -> Option<&mut TargetDoc> {
        self.target
            .iter_mut()
            .find(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }

    pub fn backstore(&self, name: &str) -> Option<&BackstoreDoc> {
        self.backstore.iter().find(|b| b.name == name)
    }

    /// The LUNs that use backstore `name`, as tree paths.
    pub fn backstore_users(&self, name: &str) -> Vec<String> {
        let mut users = Vec::new();
        for t in &self.target {
            for g in &t.tpg {
                for l in g.lun.iter().filter(|l| l.backstore == name) {
                    users.push(format!("/iscsi/{}/tpg{}/luns/lun{}", t.iqn, g.tag, l.lun));
                }
            }
        }
        users
    }

    /// Every object by its path in the tree (`/backstores/fileio/disk1`,
    /// `/iscsi/<iqn>/tpg1/luns/lun0`, ...) with its own attributes (not its
    /// children), for comparing two documents object by object.
    pub fn objects(&self) -> BTreeMap<String, Obj<'_>> {
        let mut m = BTreeMap::new();
        if self.iscsi != IscsiDoc::default() {
            m.insert("/iscsi".to_string(), Obj::Iscsi(&self.iscsi));
        }
        for b in &self.backstore {
            m.insert(backstore_path(b), Obj::Backstore(b));
        }
        for t in &self.target {
            let tp = format!("/iscsi/{}", t.iqn.to_ascii_lowercase());
            m.insert(tp.clone(), Obj::Target(t));
            for g in &t.tpg {
                let gp = format!("{tp}/tpg{}", g.tag);
                m.insert(gp.clone(), Obj::Tpg(g));
                for p in &g.portals {
                    m.insert(format!("{gp}/portals/{p}"), Obj::Portal);
                }
                for l in &g.lun {
                    m.insert(format!("{gp}/luns/lun{}", l.lun), Obj::Lun(l));
                }
                for a in &g.acl {
                    let ap = format!("{gp}/acls/{}", a.initiator.to_ascii_lowercase());
                    m.insert(ap.clone(), Obj::Acl(a));
                    for ml in &a.mapped_lun {
                        m.insert(
                            format!("{ap}/mapped_lun{}", ml.mapped_lun),
                            Obj::MappedLun(ml),
                        );
                    }
                }
            }
        }
        m
    }
}

/// One object of a document, compared by its own attributes only.
#[derive(Debug, Clone, Copy)]
pub enum Obj<'a> {
    Iscsi(&'a IscsiDoc),
    Backstore(&'a BackstoreDoc),
    Target(&'a TargetDoc),
    Tpg(&'a TpgDoc),
    Portal,
    Lun(&'a LunDoc),
    Acl(&'a AclDoc),
    MappedLun(&'a MappedLunDoc),
}

impl Obj<'_> {
    /// Equal in its own attributes. The objects with children are taken
    /// apart field by field, so that a field added to them fails to
    /// compile here rather than go unnoticed by `diff`.
    fn same(&self, other: &Obj<'_>) -> bool {
        match (self, other) {
            (Obj::Iscsi(a), Obj::Iscsi(b)) => a == b,
            (Obj::Backstore(a), Obj::Backstore(b)) => a == b,
            (Obj::Target(a), Obj::Target(b)) => {
                let TargetDoc { iqn, alias, tpg: _ } = a;
                (iqn, alias) == (&b.iqn, &b.alias)
            }
            (Obj::Tpg(a), Obj::Tpg(b)) => {
                let TpgDoc {
                    tag,
                    portals: _,
                    mode,
                    demo_read_only,
                    relative_port_id,
                    auth,
                    lun: _,
                    acl: _,
                } = a;
                (tag, mode, demo_read_only, relative_port_id, auth)
                    == (
                        &b.tag,
                        &b.mode,
                        &b.demo_read_only,
                        &b.relative_port_id,
                        &b.auth,
                    )
            }
            (Obj::Portal, Obj::Portal) => true,
            (Obj::Lun(a), Obj::Lun(b)) => a == b,
            (Obj::Acl(a), Obj::Acl(b)) => {
                let AclDoc {
                    initiator,
                    auth,
                    mapped_lun: _,
                } = a;
                (initiator, auth) == (&b.initiator, &b.auth)
            }
            (Obj::MappedLun(a), Obj::MappedLun(b)) => a == b,
            _ => false,
        }
    }

    /// Its own attributes as JSON (children left out).
    fn json(&self) -> serde_json::Value {
        use serde_json::to_value;
        let v = match self {
            Obj::Iscsi(x) => to_value(x),
            Obj::Backstore(x) => to_value(x),
            Obj::Target(x) => to_value(x),
            Obj::Tpg(x) => to_value(x),
            Obj::Portal => Ok(serde_json::Value::Null),
            Obj::Lun(x) => to_value(x),
            Obj::Acl(x) => to_value(x),
            Obj::MappedLun(x) => to_value(x),
        };
        match v.unwrap_or(serde_json::Value::Null) {
            serde_json::Value::Object(mut o) => {
                for c in ["tpg", "lun", "acl", "portals", "mapped_lun"] {
                    o.remove(c);
                }
                serde_json::Value::Object(o)
            }
            v => v,
        }
    }
}

// The document is written as TOML here rather than by the `toml` crate's
// serializer, which takes about 10 ms for a thousand LUNs: the file is
// rewritten after every change, so that would be most of the cost of one.
// It goes through serde_json's value tree (field order kept), and the
// tests read what it writes back with the real parser.

/// Write the keys of `m`: plain values first, then tables, then arrays
/// of tables, so that every key lands in the table it belongs to.
fn write_table(out: &mut String, path: &str, m: &serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    let is_tables = |v: &Value| match v {
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    };
    for (k, v) in m {
        if v.is_null() || v.is_object() || is_tables(v) {
            continue;
        }
        out.push_str(&toml_key(k));
        out.push_str(" = ");
        write_value(out, v);
        out.push('\n');
    }
    let sub = |k: &str| {
        if path.is_empty() {
            toml_key(k)
        } else {
            format!("{path}.{}", toml_key(k))
        }
    };
    for (k, v) in m {
        if let Value::Object(t) = v {
            out.push_str(&format!("\n[{}]\n", sub(k)));
            write_table(out, &sub(k), t);
        }
    }
    for (k, v) in m {
        if let (true, Value::Array(a)) = (is_tables(v), v) {
            for t in a.iter().filter_map(Value::as_object) {
                out.push_str(&format!("\n[[{}]]\n", sub(k)));
                write_table(out, &sub(k), t);
            }
        }
    }
}

fn write_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => toml_string(out, s),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x);
            }
            out.push(']');
        }
        // Tables inside arrays of values do not occur in the document.
        Value::Object(_) | Value::Null => out.push_str("{}"),
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        let mut s = String::new();
        toml_string(&mut s, k);
        s
    }
}

/// A TOML basic string.
fn toml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where a backstore sits in the tree.
pub fn backstore_path(b: &BackstoreDoc) -> String {
    format!("/backstores/{}/{}", kind_name(b.kind), b.name)
}

pub fn kind_name(k: BackstoreKind) -> &'static str {
    match k {
        BackstoreKind::Ramdisk => "ramdisk",
        BackstoreKind::Fileio => "fileio",
        BackstoreKind::Blockio => "blockio",
    }
}

/// One difference between two documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub op: ChangeOp,
    /// The object's path in the tree.
    pub path: String,
    /// For `modify`: the attributes that differ, `name: old -> new`
    /// (secrets shown as `(secret)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
}

/// What a change does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Delete,
    Modify,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.op {
            ChangeOp::Create => '+',
            ChangeOp::Delete => '-',
            ChangeOp::Modify => '~',
        };
        write!(f, "{sign} {}", self.path)?;
        for a in &self.attributes {
            write!(f, "\n    {a}")?;
        }
        Ok(())
    }
}

/// What turns `from` into `to`, object by object: deletions (children
/// first), then creations (parents first), then modifications.
pub fn diff(from: &Doc, to: &Doc) -> Vec<Change> {
    let a = from.objects();
    let b = to.objects();
    let mut out = Vec::new();
    for p in a.keys().rev().filter(|p| !b.contains_key(*p)) {
        out.push(Change {
            op: ChangeOp::Delete,
            path: p.clone(),
            attributes: Vec::new(),
        });
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(Change {
            op: ChangeOp::Create,
            path: p.clone(),
            attributes: Vec::new(),
        });
    }
    for (p, new) in &b {
        let Some(old) = a.get(p) else { continue };
        if !old.same(new) {
            out.push(Change {
                op: ChangeOp::Modify,
                path: p.clone(),
                attributes: attribute_changes(&old.json(), &new.json()),
            });
        }
    }
    out
}

fn attribute_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |k: &str, v: Option<&serde_json::Value>| match v {
        None => "(unset)".to_string(),
        Some(_) if k.contains("auth") || k.contains("password") => "(secret)".to_string(),
        Some(v) => v.to_string(),
    };
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(k, o.get(k)), show(k, n.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[backstore]]
name = "disk1"
type = "ramdisk"
size = "64M"

[[backstore]]
name = "a"
type = "ramdisk"
size = 1000960

[[target]]
iqn = "iqn.2026-11.org.example:t1"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:3260"]
mode = "acl"

[target.tpg.auth]
userid = "u"
password = "0123456789abcdef"

[[target.tpg.lun]]
lun = 1
backstore = "disk1"

[[target.tpg.lun]]
lun = 0
backstore = "a"

[[target.tpg.acl]]
initiator = "iqn.2026-11.org.example:host"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 1
read_only = true
"#;

    fn doc(text: &str) -> Doc {
        Doc::from_config(&Config::parse(Path::new("t.toml"), text).unwrap())
    }

    #[test]
    fn toml_round_trip_is_exact_and_canonical() {
        let d = doc(FILE);
        assert_eq!(d.backstore[0].name, "a", "sorted by name");
        assert_eq!(d.target[0].tpg[0].lun[0].lun, 0, "sorted by number");
        let text = d.to_toml(true);
        assert!(text.contains("size = \"64M\""), "{text}");
        assert!(text.contains("size = \"1000960\""), "{text}");
        let again = doc(&text);
        assert_eq!(again, d);
        let model = d.check().unwrap();
        assert_eq!(
            model,
            Model::from_config(&Config::parse(Path::new("t.toml"), FILE).unwrap())
        );
    }

    #[test]
    fn odd_strings_survive_the_writer() {
        let mut d = doc(FILE);
        let odd = "a\"b\\c\td\u{1}e é 👍";
        d.target[0].alias = Some(odd.into());
        d.target[0].tpg[0].auth.as_mut().unwrap().password = Some(format!("{odd}-long-enough"));
        let again = doc(&d.to_toml(true));
        assert_eq!(again.target[0].alias.as_deref(), Some(odd));
        assert_eq!(again, d);
    }

    #[test]
    fn dump_hides_inline_secrets_unless_asked() {
        let d = doc(FILE);
        let hidden = d.to_toml(false);
        assert!(!hidden.contains("0123456789abcdef"), "{hidden}");
        assert!(hidden.contains("--secrets"));
        assert!(d.to_toml(true).contains("0123456789abcdef"));
    }

    #[test]
    fn check_refuses_what_a_file_would() {
        let mut d = doc(FILE);
        d.target[0].tpg[0].lun.push(LunDoc {
            lun: 7,
            backstore: "nope".into(),
            read_only: false,
        });
        let e = d.check().unwrap_err();
        assert!(e.contains("no backstore named \"nope\""), "{e}");
    }

    #[test]
    fn diff_is_object_by_object() {
        let a = doc(FILE);
        assert!(diff(&a, &a).is_empty());
        let mut b = a.clone();
        b.target[0].tpg[0].acl[0].mapped_lun[0].read_only = false;
        b.target[0].tpg[0].lun.remove(0);
        b.backstore.push(BackstoreDoc {
            size: Some(SizeDoc(1 << 20)),
            ..BackstoreDoc::new("new", BackstoreKind::Ramdisk)
        });
        b.target[0].tpg[0].auth.as_mut().unwrap().password = Some("another-secret-1".into());
        let ch = diff(&a, &b);
        let shown: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        let t = "/iscsi/iqn.2026-11.org.example:t1/tpg1";
        assert_eq!(
            shown,
            vec![
                format!("- {t}/luns/lun0"),
                "+ /backstores/ramdisk/new".to_string(),
                format!("~ {t}\n    auth: (secret) -> (secret)"),
                format!("~ {t}/acls/iqn.2026-11.org.example:host/mapped_lun0\n    read_only: true -> (unset)"),
            ]
        );
    }

    #[test]
    fn names_sort_naturally() {
        use std::cmp::Ordering::*;
        let mut v = vec![
            "k10x100", "k10x2", "K10x10", "k10x1", "k9", "k010x3", "a", "",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["", "a", "k9", "k10x1", "k10x2", "k010x3", "K10x10", "k10x100"]
        );
        assert_eq!(natural_cmp("x01", "x1"), Less, "ties broken exactly");
        assert_eq!(natural_cmp("x1", "x1"), Equal);
        assert_eq!(
            natural_cmp("99999999999999999999999a", "100000000000000000000000a"),
            Less,
            "no overflow"
        );
        // The document lists backstores, targets and ACLs that way.
        let mut text = String::new();
        for n in ["k10x1", "k10x10", "k10x100", "k10x2"] {
            text.push_str(&format!(
                "[[backstore]]\nname = \"{n}\"\ntype = \"ramdisk\"\nsize = \"1M\"\n"
            ));
        }
        for t in ["iqn.2026-11.a:t10", "iqn.2026-11.a:t9"] {
            text.push_str(&format!("[[target]]\niqn = \"{t}\"\n"));
        }
        let d = doc(&text);
        let names: Vec<&str> = d.backstore.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["k10x1", "k10x2", "k10x10", "k10x100"]);
        let iqns: Vec<&str> = d.target.iter().map(|t| t.iqn.as_str()).collect();
        assert_eq!(iqns, ["iqn.2026-11.a:t9", "iqn.2026-11.a:t10"]);
    }

    #[test]
    fn sizes_print_in_units() {
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(10 << 30), "10G");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
    }
}
