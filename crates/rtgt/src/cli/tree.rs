//! The object tree as targetcli users know it — `/backstores/<kind>/<name>`,
//! `/iscsi/<iqn>/tpg<N>/{luns,acls,portals}`, `/vhost/<name>/luns` — its
//! paths, and `ls`.

use std::collections::BTreeMap;

use crate::config::{self, Doc};

/// A place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Root,
    Backstores,
    Kind(String),
    Backstore(String, String),
    Iscsi,
    Target(String),
    Tpg(String, u16),
    Luns(String, u16),
    Lun(String, u16, u64),
    Portals(String, u16),
    Portal(String, u16, String),
    Acls(String, u16),
    Acl(String, u16, String),
    MappedLun(String, u16, String, u64),
    Vhost,
    VhostCtl(String),
    VhostLuns(String),
    VhostLun(String, u64),
}

pub const KINDS: [&str; 4] = ["blockio", "fileio", "ramdisk", "rbd"];

/// Join `path` to `cwd` and normalize (`.`, `..`, repeated `/`).
pub fn resolve(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        cwd.split('/').filter(|s| !s.is_empty()).collect()
    };
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn number(s: &str, prefix: &str) -> Option<u64> {
    s.strip_prefix(prefix).unwrap_or(s).parse().ok()
}

/// What an absolute, normalized path names; `None`: not a place in the tree.
pub fn parse(path: &str) -> Option<Node> {
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let tag = |s: &str| number(s, "tpg").and_then(|n| u16::try_from(n).ok());
    Some(match p.as_slice() {
        [] => Node::Root,
        ["backstores"] => Node::Backstores,
        ["backstores", k] if KINDS.contains(k) => Node::Kind(k.to_string()),
        ["backstores", k, n] if KINDS.contains(k) => Node::Backstore(k.to_string(), n.to_string()),
        ["iscsi"] => Node::Iscsi,
        ["iscsi", t] => Node::Target(t.to_string()),
        ["iscsi", t, g] => Node::Tpg(t.to_string(), tag(g)?),
        ["iscsi", t, g, "luns"] => Node::Luns(t.to_string(), tag(g)?),
        ["iscsi", t, g, "luns", l] => Node::Lun(t.to_string(), tag(g)?, number(l, "lun")?),
        ["iscsi", t, g, "portals"] => Node::Portals(t.to_string(), tag(g)?),
        ["iscsi", t, g, "portals", a] => Node::Portal(t.to_string(), tag(g)?, a.to_string()),
        ["iscsi", t, g, "acls"] => Node::Acls(t.to_string(), tag(g)?),
        ["iscsi", t, g, "acls", a] => Node::Acl(t.to_string(), tag(g)?, a.to_string()),
        ["iscsi", t, g, "acls", a, m] => Node::MappedLun(
            t.to_string(),
            tag(g)?,
            a.to_string(),
            number(m, "mapped_lun")?,
        ),
        ["vhost"] => Node::Vhost,
        ["vhost", n] => Node::VhostCtl(n.to_string()),
        ["vhost", n, "luns"] => Node::VhostLuns(n.to_string()),
        ["vhost", n, "luns", l] => Node::VhostLun(n.to_string(), number(l, "lun")?),
        _ => return None,
    })
}

/// One node of a drawn tree.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub summary: String,
    pub children: Vec<Item>,
}

fn item(name: impl Into<String>, summary: impl Into<String>, children: Vec<Item>) -> Item {
    Item {
        name: name.into(),
        summary: summary.into(),
        children,
    }
}

/// `1073741824` -> `1.0GiB`.
pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[u])
    }
}

fn plural(n: usize, one: &str) -> String {
    format!("{one}: {n}")
}

/// The whole tree, from the configuration and the live status (session
/// counts per group, capacities per backstore).
pub fn build(d: &Doc, status: &serde_json::Value) -> Item {
    let sessions: BTreeMap<(String, u64), u64> = status["tpgs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                (t["iqn"].as_str()?.to_ascii_lowercase(), t["tag"].as_u64()?),
                t["sessions"].as_u64()?,
            ))
        })
        .collect();
    let listening: BTreeMap<(String, u64), (Vec<String>, bool)> = status["tpgs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let addrs = t["listening"]
                .as_array()?
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            Some((
                (t["iqn"].as_str()?.to_ascii_lowercase(), t["tag"].as_u64()?),
                (addrs, t["portals_overridden"].as_bool().unwrap_or(false)),
            ))
        })
        .collect();
    let capacity: BTreeMap<String, u64> = status["backstores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            Some((
                b["name"].as_str()?.to_string(),
                b["capacity_bytes"].as_u64()?,
            ))
        })
        .collect();
    let mut kinds = Vec::new();
    for k in KINDS {
        let mut stores = Vec::new();
        for b in d
            .backstore
            .iter()
            .filter(|b| config::kind_name(b.kind) == k)
        {
            let size = capacity
                .get(&b.name)
                .copied()
                .or(b.size.map(|s| s.0))
                .map(human)
                .unwrap_or_else(|| "?".into());
            let mut s = match &b.path {
                Some(p) => format!("{} ({size})", p.display()),
                None => format!("({size})"),
            };
            if b.kind == crate::config::BackstoreKind::Fileio {
                s.push_str(if b.write_back.unwrap_or(true) {
                    " write-back"
                } else {
                    " write-thru"
                });
            }
            if b.read_only {
                s.push_str(" read-only");
            }
            let used = !d.backstore_users(&b.name).is_empty();
            s.push_str(if used { " activated" } else { " deactivated" });
            stores.push(item(&b.name, s, Vec::new()));
        }
        let n = stores.len();
        kinds.push(item(k, format!("Storage Objects: {n}"), stores));
    }
    let mut targets = Vec::new();
    for t in &d.target {
        let mut tpgs = Vec::new();
        for g in &t.tpg {
            let luns: Vec<Item> = g.lun.iter().map(|l| lun_item(d, l)).collect();
            let acls: Vec<Item> = g
                .acl
                .iter()
                .map(|a| {
                    let mapped: Vec<Item> = a
                        .mapped_lun
                        .iter()
                        .map(|m| {
                            let store = g
                                .lun
                                .iter()
                                .find(|l| l.lun == m.tpg_lun)
                                .map(|l| l.backstore.clone())
                                .unwrap_or_default();
                            let wp = if m.read_only { "(ro)" } else { "(rw)" };
                            item(
                                format!("mapped_lun{}", m.mapped_lun),
                                format!("lun{} {store} {wp}", m.tpg_lun),
                                Vec::new(),
                            )
                        })
                        .collect();
                    let auth = if a.auth.is_some() { ", auth: chap" } else { "" };
                    let n = mapped.len();
                    item(&a.initiator, format!("Mapped LUNs: {n}{auth}"), mapped)
                })
                .collect();
            let key = (t.iqn.to_ascii_lowercase(), u64::from(g.tag));
            let live = listening.get(&key);
            let overridden = live.is_some_and(|(_, o)| *o);
            let mut portals: Vec<Item> = g
                .portals
                .iter()
                .map(|p| {
                    let what = if overridden {
                        "not listening: replaced by --listen"
                    } else {
                        ""
                    };
                    item(p, what, Vec::new())
                })
                .collect();
            // What the daemon actually listens on, where the file does
            // not say it (--listen, or port 0 bound to a free port).
            for a in live.into_iter().flat_map(|(l, _)| l) {
                if !g.portals.iter().any(|p| p == a) {
                    let why = if overridden {
                        "listening (--listen)"
                    } else {
                        "listening"
                    };
                    portals.push(item(a, why, Vec::new()));
                }
            }
            let n_sess = sessions
                .get(&(t.iqn.to_ascii_lowercase(), g.tag as u64))
                .copied()
                .unwrap_or(0);
            let mode = match g.mode {
                crate::config::TpgMode::Demo if g.demo_read_only => "demo (read-only)",
                crate::config::TpgMode::Demo => "demo",
                crate::config::TpgMode::Acl => "acl",
            };
            let auth = if g.auth.is_some() { "chap" } else { "none" };
            // The group ID only where it is not the tag.
            let alua = format!(
                "alua: {}{}{}",
                g.alua_state.name(),
                if g.alua_preferred { ", preferred" } else { "" },
                match g.alua_group {
                    Some(id) if id != g.tag => format!(" (group {id})"),
                    _ => String::new(),
                }
            );
            let (nl, na, np) = (luns.len(), acls.len(), portals.len());
            tpgs.push(item(
                format!("tpg{}", g.tag),
                format!("mode: {mode}, auth: {auth}, {alua}, sessions: {n_sess}"),
                vec![
                    item("acls", plural(na, "ACLs"), acls),
                    item("luns", plural(nl, "LUNs"), luns),
                    item("portals", plural(np, "Portals"), portals),
                ],
            ));
        }
        let n = tpgs.len();
        targets.push(item(&t.iqn, plural(n, "TPGs"), tpgs));
    }
    let attached: BTreeMap<String, bool> = status["vhost"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?.to_string(), v["connected"].as_bool()?)))
        .collect();
    let vhosts: Vec<Item> = d
        .vhost
        .iter()
        .map(|v| {
            let luns: Vec<Item> = v.lun.iter().map(|l| lun_item(d, l)).collect();
            let name = v.name();
            let vm = match attached.get(&name) {
                Some(true) => "VM attached",
                _ => "no VM",
            };
            let n = luns.len();
            item(
                &name,
                format!(
                    "{}, initiator {}, {vm}, alua: {}",
                    v.socket.display(),
                    v.initiator(),
                    v.alua_state.name()
                ),
                vec![item("luns", plural(n, "LUNs"), luns)],
            )
        })
        .collect();
    let n = targets.len();
    let mut iscsi_summary = plural(n, "Targets");
    if d.iscsi.discovery_auth.is_some() {
        iscsi_summary.push_str(", discovery auth: chap");
    }
    item(
        "/",
        "",
        vec![
            item("backstores", "", kinds),
            item("iscsi", iscsi_summary, targets),
            item("vhost", plural(vhosts.len(), "Controllers"), vhosts),
        ],
    )
}

/// A LUN: the backstore it exports.
fn lun_item(d: &Doc, l: &config::LunDoc) -> Item {
    let what = d
        .backstore(&l.backstore)
        .map(|b| {
            let mut s = format!("{}/{}", config::kind_name(b.kind), b.name);
            if let Some(p) = &b.path {
                s.push_str(&format!(" ({})", p.display()));
            }
            s
        })
        .unwrap_or_else(|| l.backstore.clone());
    let ro = if l.read_only { " read-only" } else { "" };
    item(format!("lun{}", l.lun), format!("{what}{ro}"), Vec::new())
}

/// The item at `path` in a built tree.
pub fn find<'a>(root: &'a Item, path: &str) -> Option<&'a Item> {
    let mut at = root;
    for p in path.split('/').filter(|s| !s.is_empty()) {
        at = at
            .children
            .iter()
            .find(|c| c.name == p || c.name.eq_ignore_ascii_case(p))?;
    }
    Some(at)
}

/// Draw `item` the way targetcli's `ls` does: one line per node, dots up to
/// a bracketed summary.
pub fn draw(item: &Item, color: bool, depth: Option<usize>) -> String {
    let mut out = String::new();
    draw_into(&mut out, item, "", "  ", color, depth.unwrap_or(usize::MAX));
    out
}

const WIDTH: usize = 78;

/// One line for `it` after `lead`, then its children after `inner` (with
/// a bar down to the last of them).
fn draw_into(out: &mut String, it: &Item, lead: &str, inner: &str, color: bool, depth: usize) {
    let head = format!("{lead}o- {}", it.name);
    let summary = if it.summary.is_empty() {
        String::new()
    } else {
        format!("[{}]", it.summary)
    };
    let used = head.chars().count() + summary.chars().count() + 2;
    let dots = if summary.is_empty() {
        String::new()
    } else {
        format!(" {} ", ".".repeat(WIDTH.saturating_sub(used).max(1)))
    };
    if color {
        out.push_str(&format!(
            "{lead}o- \x1b[1;34m{}\x1b[0m{dots}\x1b[32m{summary}\x1b[0m\n",
            it.name
        ));
    } else {
        out.push_str(&format!("{head}{dots}{summary}\n"));
    }
    if depth == 0 {
        return;
    }
    let n = it.children.len();
    for (i, c) in it.children.iter().enumerate() {
        let bar = if i + 1 == n { "  " } else { "| " };
        draw_into(out, c, inner, &format!("{inner}{bar}"), color, depth - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_a_shell() {
        assert_eq!(resolve("/iscsi", "iqn.x/tpg1"), "/iscsi/iqn.x/tpg1");
        assert_eq!(resolve("/iscsi/iqn.x/tpg1", ".."), "/iscsi/iqn.x");
        assert_eq!(
            resolve("/iscsi", "/backstores//fileio/"),
            "/backstores/fileio"
        );
        assert_eq!(resolve("/", "../.."), "/");
    }

    #[test]
    fn nodes_parse() {
        assert_eq!(parse("/"), Some(Node::Root));
        assert_eq!(
            parse("/backstores/fileio/d1"),
            Some(Node::Backstore("fileio".into(), "d1".into()))
        );
        assert_eq!(parse("/backstores/nope"), None);
        assert_eq!(
            parse("/iscsi/iqn.a:b/tpg2/acls/iqn.h:1/mapped_lun3"),
            Some(Node::MappedLun("iqn.a:b".into(), 2, "iqn.h:1".into(), 3))
        );
        assert_eq!(parse("/iscsi/iqn.a:b/tpgx"), None);
        assert_eq!(
            parse("/vhost/vm1/luns/lun2"),
            Some(Node::VhostLun("vm1".into(), 2))
        );
        assert_eq!(
            parse("/vhost/vm1/luns"),
            Some(Node::VhostLuns("vm1".into()))
        );
        assert_eq!(
            parse("/iscsi/iqn.a:b/tpg1/luns/lun7"),
            Some(Node::Lun("iqn.a:b".into(), 1, 7))
        );
    }

    #[test]
    fn draws_a_tree_with_summaries() {
        let root = item(
            "/",
            "",
            vec![
                item("a", "A: 1", vec![item("x", "leaf", Vec::new())]),
                item("b", "", Vec::new()),
            ],
        );
        let s = draw(&root, false, None);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[1].starts_with("  o- a ...") && lines[1].ends_with("[A: 1]"),
            "{s}"
        );
        assert!(
            lines[2].starts_with("  | o- x ...") && lines[2].ends_with("[leaf]"),
            "{s}"
        );
        assert_eq!(lines[3], "  o- b");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH + 2), "{s}");
        assert_eq!(draw(&root, false, Some(0)).lines().count(), 1);
    }
}
