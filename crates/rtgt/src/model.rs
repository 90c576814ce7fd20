//! The object model: what the daemon serves, apart from the file syntax.
//!
//! Every object has a stable identity — a backstore its name, a target its
//! IQN, a portal group its tag, a LUN its number, an ACL its initiator name,
//! a mapped LUN its number — so that two models can be compared object by
//! object and only the difference applied to the running target (SIGHUP
//! today, the control API next).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use rtgt_iscsi::chap::{
    ChapAlgorithm, ChapSettings, DEFAULT_ALGORITHMS, DEFAULT_MIN_PEER_CHALLENGE_LEN,
};
use rtgt_scsi::access::ChapAuth;

use crate::config::{self, BackstoreKind, Config, TpgMode};

/// Everything the daemon serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// CHAP algorithms accepted (strongest first) and the shortest
    /// initiator challenge.
    pub chap: ChapSettings,
    /// CHAP required of discovery sessions.
    pub discovery_auth: Option<ChapAuth>,
    pub backstores: BTreeMap<String, BackstoreSpec>,
    /// By lower-cased IQN (iSCSI names compare case-insensitively).
    pub targets: BTreeMap<String, TargetSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackstoreSpec {
    pub kind: BackstoreKind,
    pub size: Option<u64>,
    pub path: Option<PathBuf>,
    pub block_size: u32,
    pub write_back: bool,
    pub read_only: bool,
    pub removable: bool,
    pub physical_block_size: Option<u32>,
    pub thin: Option<bool>,
    /// SANITIZE OVERWRITE bytes per second; `None` or 0: no limit.
    pub sanitize_rate: Option<u64>,
    /// Fault injection.
    pub faults: Option<config::Faults>,
    /// INQUIRY vendor, product, revision; serial; NAA (validated).
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub revision: Option<String>,
    pub serial: Option<String>,
    pub naa: Option<rtgt_scsi::Naa>,
}

impl BackstoreSpec {
    /// The same medium and LU, differing at most in size: the running LU is
    /// kept (and told of the new capacity) rather than replaced.
    pub fn same_except_size(&self, other: &BackstoreSpec) -> bool {
        BackstoreSpec {
            size: other.size,
            ..self.clone()
        } == *other
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub iqn: String,
    pub alias: Option<String>,
    pub tpgs: BTreeMap<u16, TpgSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TpgSpec {
    pub portals: Vec<SocketAddr>,
    pub mode: TpgMode,
    pub demo_read_only: bool,
    pub relative_port_id: Option<u16>,
    pub auth: Option<ChapAuth>,
    pub luns: BTreeMap<u64, LunSpec>,
    /// By lower-cased initiator name.
    pub acls: BTreeMap<String, AclSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunSpec {
    pub backstore: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AclSpec {
    pub initiator: String,
    pub auth: Option<ChapAuth>,
    /// Mapped LUN number -> the group's LUN.
    pub mapped: BTreeMap<u64, MappedSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedSpec {
    pub tpg_lun: u64,
    pub read_only: bool,
}

impl Model {
    /// The model a validated config describes.
    pub fn from_config(c: &Config) -> Model {
        let chap = ChapSettings {
            algorithms: match &c.iscsi.chap_algorithms {
                Some(list) => list
                    .get_ref()
                    .iter()
                    .filter_map(|a| ChapAlgorithm::from_name(a))
                    .collect(),
                None => DEFAULT_ALGORITHMS.to_vec(),
            },
            min_peer_challenge: c
                .iscsi
                .chap_min_challenge
                .as_ref()
                .map_or(DEFAULT_MIN_PEER_CHALLENGE_LEN, |m| *m.get_ref() as usize),
        };
        let auth = |a: &Option<config::Auth>| a.as_ref().and_then(|a| a.resolved.clone());
        let backstores = c
            .backstore
            .iter()
            .map(|b| {
                let spec = BackstoreSpec {
                    kind: b.kind,
                    size: b.size.as_ref().map(|s| s.get_ref().0),
                    path: b.path.as_ref().map(|p| p.get_ref().clone()),
                    block_size: b.block_size.as_ref().map(|s| *s.get_ref()).unwrap_or(512),
                    write_back: b.write_back.unwrap_or(true),
                    read_only: b.read_only,
                    removable: b.removable,
                    physical_block_size: b.physical_block_size.as_ref().map(|p| *p.get_ref()),
                    thin: b.thin,
                    sanitize_rate: b.sanitize_rate.as_ref().map(|r| r.get_ref().0),
                    faults: b.faults.clone(),
                    vendor: b.vendor.as_ref().map(|v| v.get_ref().clone()),
                    product: b.product.as_ref().map(|v| v.get_ref().clone()),
                    revision: b.revision.as_ref().map(|v| v.get_ref().clone()),
                    serial: b.serial.as_ref().map(|v| v.get_ref().clone()),
                    naa: b.naa.as_ref().and_then(|v| v.get_ref().parse().ok()),
                };
                (b.name.get_ref().clone(), spec)
            })
            .collect();
        let targets = c
            .target
            .iter()
            .map(|t| {
                let tpgs = t
                    .tpg
                    .iter()
                    .map(|g| {
                        let spec = TpgSpec {
                            portals: g
                                .portals
                                .iter()
                                .filter_map(|p| config::parse_portal(p.get_ref()).ok())
                                .collect(),
                            mode: g.mode.as_ref().map_or(TpgMode::Acl, |m| *m.get_ref()),
                            demo_read_only: g.demo_read_only,
                            relative_port_id: g.relative_port_id.as_ref().map(|r| *r.get_ref()),
                            auth: auth(&g.auth),
                            luns: g
                                .lun
                                .iter()
                                .map(|l| {
                                    (
                                        *l.lun.get_ref(),
                                        LunSpec {
                                            backstore: l.backstore.get_ref().clone(),
                                            read_only: l.read_only,
                                        },
                                    )
                                })
                                .collect(),
                            acls: g
                                .acl
                                .iter()
                                .map(|a| {
                                    let name = a.initiator.get_ref();
                                    let acl = AclSpec {
                                        initiator: name.clone(),
                                        auth: auth(&a.auth),
                                        mapped: a
                                            .mapped_lun
                                            .iter()
                                            .map(|m| {
                                                (
                                                    *m.mapped_lun.get_ref(),
                                                    MappedSpec {
                                                        tpg_lun: *m.tpg_lun.get_ref(),
                                                        read_only: m.read_only,
                                                    },
                                                )
                                            })
                                            .collect(),
                                    };
                                    (name.to_ascii_lowercase(), acl)
                                })
                                .collect(),
                        };
                        (*g.tag.get_ref(), spec)
                    })
                    .collect();
                let spec = TargetSpec {
                    iqn: t.iqn.get_ref().clone(),
                    alias: t.alias.clone(),
                    tpgs,
                };
                (t.iqn.get_ref().to_ascii_lowercase(), spec)
            })
            .collect();
        Model {
            chap,
            discovery_auth: auth(&c.iscsi.discovery_auth),
            backstores,
            targets,
        }
    }

    /// Every distinct portal address of the model, in order of appearance.
    pub fn portals(&self) -> Vec<SocketAddr> {
        let mut v = Vec::new();
        for t in self.targets.values() {
            for g in t.tpgs.values() {
                for p in &g.portals {
                    if !v.contains(p) {
                        v.push(*p);
                    }
                }
            }
        }
        v
    }

    /// Serve every portal group on `bound` instead of its own portals
    /// (`--listen`), or, per group, when none of its portals is bound.
    /// Portals with port 0 become the port the listener got.
    pub fn bind_portals(&mut self, bound: &[(SocketAddr, SocketAddr)], overridden: bool) {
        let all: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
        for t in self.targets.values_mut() {
            for g in t.tpgs.values_mut() {
                let mine: Vec<SocketAddr> = g
                    .portals
                    .iter()
                    .filter_map(|p| bound.iter().find(|(w, _)| w == p).map(|(_, a)| *a))
                    .collect();
                g.portals = if overridden || mine.is_empty() {
                    all.clone()
                } else {
                    mine
                };
            }
        }
    }
}

/// Relative target port identifiers, stable across restarts and config
/// changes: an explicit `relative_port_id`, else the one the group already
/// has, else one derived from the target name and tag (FNV-1a), moved to the
/// next free number on a collision. Persistent reservations are keyed on
/// them, so a group must not get another one because others were added.
pub fn assign_relative_ports(
    model: &Model,
    current: &BTreeMap<(String, u16), u16>,
) -> BTreeMap<(String, u16), u16> {
    let mut out = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    let mut pending = Vec::new();
    // Explicit ones first, then those already running, then new ones.
    for (key, t) in &model.targets {
        for (tag, g) in &t.tpgs {
            if let Some(r) = g.relative_port_id {
                used.insert(r);
                out.insert((key.clone(), *tag), r);
            }
        }
    }
    for (key, t) in &model.targets {
        for (tag, g) in &t.tpgs {
            if g.relative_port_id.is_some() {
                continue;
            }
            let id = (key.clone(), *tag);
            match current.get(&id) {
                Some(r) if !used.contains(r) => {
                    used.insert(*r);
                    out.insert(id, *r);
                }
                _ => pending.push(id),
            }
        }
    }
    for id in pending {
        let mut h: u32 = 0x811c_9dc5;
        for b in id.0.bytes().chain(id.1.to_be_bytes()) {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
        let mut r = (h % 0xffff) as u16 + 1;
        while used.contains(&r) {
            r = if r == u16::MAX { 1 } else { r + 1 };
        }
        used.insert(r);
        out.insert(id, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn model(text: &str) -> Model {
        Model::from_config(&Config::parse(Path::new("t.toml"), text).unwrap())
    }

    const TWO: &str = "[[target]]\niqn = \"iqn.2026-11.a:one\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n[[target.tpg]]\ntag = 2\nmode = \"demo\"\n";

    #[test]
    fn relative_ports_are_stable() {
        let a = model(TWO);
        let ra = assign_relative_ports(&a, &BTreeMap::new());
        assert_eq!(ra.len(), 2);
        assert_eq!(
            ra,
            assign_relative_ports(&a, &BTreeMap::new()),
            "deterministic"
        );
        // Adding a target does not move the ports of the others.
        let b = model(&format!(
            "{TWO}[[target]]\niqn = \"iqn.2026-11.a:two\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n"
        ));
        let rb = assign_relative_ports(&b, &ra);
        for (k, v) in &ra {
            assert_eq!(rb[k], *v);
        }
        let ids: std::collections::BTreeSet<_> = rb.values().collect();
        assert_eq!(ids.len(), 3, "unique");
        // An explicit one wins, and a running group that held it moves.
        let key = ("iqn.2026-11.a:one".to_string(), 1u16);
        let taken = ra[&key];
        let c = model(&format!(
            "{TWO}[[target]]\niqn = \"iqn.2026-11.a:two\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\nrelative_port_id = {taken}\n"
        ));
        let rc = assign_relative_ports(&c, &rb);
        assert_eq!(rc[&("iqn.2026-11.a:two".to_string(), 1)], taken);
        assert_ne!(rc[&key], taken);
    }

    #[test]
    fn acls_and_mapped_luns() {
        let m = model(
            "[[backstore]]\nname = \"x\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\
             [[target]]\niqn = \"iqn.2026-11.a:t\"\n[[target.tpg]]\ntag = 1\nmode = \"acl\"\n\
             [[target.tpg.lun]]\nlun = 4\nbackstore = \"x\"\n\
             [[target.tpg.acl]]\ninitiator = \"iqn.2026-11.a:Host\"\n\
             [[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 4\nread_only = true\n",
        );
        let g = &m.targets["iqn.2026-11.a:t"].tpgs[&1];
        assert_eq!(g.mode, TpgMode::Acl);
        let acl = &g.acls["iqn.2026-11.a:host"];
        assert_eq!(acl.initiator, "iqn.2026-11.a:Host");
        assert_eq!(
            acl.mapped[&0],
            MappedSpec {
                tpg_lun: 4,
                read_only: true
            }
        );
    }
}
