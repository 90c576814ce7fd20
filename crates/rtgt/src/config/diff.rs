//! Two configurations compared object by object: what `rtgt diff` shows,
//! what `apply` and a SIGHUP change, what the control API reports.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::*;

impl Doc {
    /// Every object by its path in the tree (`/backstores/fileio/disk1`,
    /// `/iscsi/<iqn>/tpg1/luns/lun0`, ...) with its own attributes (not its
    /// children), for comparing two documents object by object.
    pub fn objects(&self) -> BTreeMap<String, Obj<'_>> {
        let mut m = BTreeMap::new();
        if self.iscsi != IscsiDoc::default() {
            m.insert("/iscsi".to_string(), Obj::Iscsi(&self.iscsi));
        }
        if self.alua != AluaDoc::default() {
            m.insert("/alua".to_string(), Obj::Alua(&self.alua));
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
        for v in &self.vhost {
            let vp = format!("/vhost/{}", v.name());
            m.insert(vp.clone(), Obj::Vhost(v));
            for l in &v.lun {
                m.insert(format!("{vp}/luns/lun{}", l.lun), Obj::Lun(l));
            }
        }
        m
    }
}

/// One object of a document, compared by its own attributes only.
#[derive(Debug, Clone, Copy)]
pub enum Obj<'a> {
    Iscsi(&'a IscsiDoc),
    Alua(&'a AluaDoc),
    Backstore(&'a BackstoreDoc),
    Target(&'a TargetDoc),
    Tpg(&'a TpgDoc),
    Portal,
    Lun(&'a LunDoc),
    Acl(&'a AclDoc),
    MappedLun(&'a MappedLunDoc),
    Vhost(&'a VhostDoc),
}

impl Obj<'_> {
    /// Equal in its own attributes. The objects with children are taken
    /// apart field by field, so that a field added to them fails to
    /// compile here rather than go unnoticed by `diff`.
    fn same(&self, other: &Obj<'_>) -> bool {
        match (self, other) {
            (Obj::Iscsi(a), Obj::Iscsi(b)) => a == b,
            (Obj::Alua(a), Obj::Alua(b)) => a == b,
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
                    alua_state,
                    alua_preferred,
                    alua_group,
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
                    && (alua_state, alua_preferred, alua_group)
                        == (&b.alua_state, &b.alua_preferred, &b.alua_group)
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
            (Obj::Vhost(a), Obj::Vhost(b)) => {
                let VhostDoc {
                    socket,
                    name,
                    initiator,
                    num_queues,
                    wwn,
                    relative_port_id,
                    alua_state,
                    alua_preferred,
                    alua_group,
                    lun: _,
                } = a;
                (socket, name, initiator, num_queues, wwn)
                    == (&b.socket, &b.name, &b.initiator, &b.num_queues, &b.wwn)
                    && (relative_port_id, alua_state, alua_preferred, alua_group)
                        == (
                            &b.relative_port_id,
                            &b.alua_state,
                            &b.alua_preferred,
                            &b.alua_group,
                        )
            }
            _ => false,
        }
    }

    /// Its own attributes as JSON (children left out).
    fn json(&self) -> serde_json::Value {
        use serde_json::to_value;
        let v = match self {
            Obj::Iscsi(x) => to_value(x),
            Obj::Alua(x) => to_value(x),
            Obj::Backstore(x) => to_value(x),
            Obj::Target(x) => to_value(x),
            Obj::Tpg(x) => to_value(x),
            Obj::Portal => Ok(serde_json::Value::Null),
            Obj::Lun(x) => to_value(x),
            Obj::Acl(x) => to_value(x),
            Obj::MappedLun(x) => to_value(x),
            Obj::Vhost(x) => to_value(x),
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
