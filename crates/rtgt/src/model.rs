//! The validated configuration as the daemon runs it: the model (see
//! [`crate::config`]) with the secrets its credentials name read in, and
//! what the running target derives from it (relative port identifiers, the
//! addresses each group is served on).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rtgt_iscsi::chap::{
    ChapAlgorithm, ChapSettings, DEFAULT_ALGORITHMS, DEFAULT_MIN_PEER_CHALLENGE_LEN,
};
use rtgt_scsi::access::ChapAuth;

use crate::config::{parse_portal, Doc};

/// Where a credential of the configuration is; its secrets are kept by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CredentialAt {
    Discovery,
    /// A portal group's, by lower-cased IQN and tag.
    Tpg {
        iqn: String,
        tag: u16,
    },
    /// An ACL's, by lower-cased IQN, tag and lower-cased initiator name.
    Acl {
        iqn: String,
        tag: u16,
        initiator: String,
    },
}

/// A configuration that passed every rule, with the secrets read.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub doc: Doc,
    pub secrets: BTreeMap<CredentialAt, ChapAuth>,
}

impl Model {
    /// CHAP algorithms accepted (strongest first) and the shortest
    /// initiator challenge.
    pub fn chap(&self) -> ChapSettings {
        let i = &self.doc.iscsi;
        ChapSettings {
            algorithms: match &i.chap_algorithms {
                Some(list) => list
                    .iter()
                    .filter_map(|a| ChapAlgorithm::from_name(a))
                    .collect(),
                None => DEFAULT_ALGORITHMS.to_vec(),
            },
            min_peer_challenge: i
                .chap_min_challenge
                .map_or(DEFAULT_MIN_PEER_CHALLENGE_LEN, |m| m as usize),
        }
    }

    /// The resolved credential at `at`.
    pub fn auth(&self, at: &CredentialAt) -> Option<ChapAuth> {
        self.secrets.get(at).cloned()
    }

    /// Every distinct portal address, in order of appearance.
    pub fn portals(&self) -> Vec<SocketAddr> {
        let mut v = Vec::new();
        for t in &self.doc.target {
            for g in &t.tpg {
                for p in g.portals.iter().filter_map(|p| parse_portal(p).ok()) {
                    if !v.contains(&p) {
                        v.push(p);
                    }
                }
            }
        }
        v
    }

    /// The addresses each group is served on, by (lower-cased IQN, tag):
    /// `bound` (wanted, actual) instead of its own portals when
    /// `overridden` (`--listen`) or when none of its portals is bound;
    /// portals with port 0 become the port the listener got.
    pub fn served_on(
        &self,
        bound: &[(SocketAddr, SocketAddr)],
        overridden: bool,
    ) -> BTreeMap<(String, u16), Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
        let mut out = BTreeMap::new();
        for t in &self.doc.target {
            for g in &t.tpg {
                let mine: Vec<SocketAddr> = g
                    .portals
                    .iter()
                    .filter_map(|p| parse_portal(p).ok())
                    .filter_map(|p| bound.iter().find(|(w, _)| *w == p).map(|(_, a)| *a))
                    .collect();
                let on = if overridden || mine.is_empty() {
                    all.clone()
                } else {
                    mine
                };
                out.insert((t.iqn.to_ascii_lowercase(), g.tag), on);
            }
        }
        out
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
    // Every target port: each tpg, keyed (IQN, tag), and each vhost
    // controller (see `VhostDoc::port_key`).
    let ports: Vec<((String, u16), Option<u16>)> = model
        .doc
        .target
        .iter()
        .flat_map(|t| {
            let key = t.iqn.to_ascii_lowercase();
            t.tpg
                .iter()
                .map(move |g| ((key.clone(), g.tag), g.relative_port_id))
        })
        .chain(
            model
                .doc
                .vhost
                .iter()
                .map(|v| (v.port_key(), v.relative_port_id)),
        )
        .collect();
    for (id, explicit) in &ports {
        if let Some(r) = explicit {
            used.insert(*r);
            out.insert(id.clone(), *r);
        }
    }
    for (id, explicit) in ports {
        if explicit.is_some() {
            continue;
        }
        match current.get(&id) {
            Some(r) if !used.contains(r) => {
                used.insert(*r);
                out.insert(id, *r);
            }
            _ => pending.push(id),
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
        crate::config::parse(Path::new("t.toml"), text).unwrap()
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
}
