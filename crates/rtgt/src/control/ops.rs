//! The changes the control API makes, as edits of the configuration
//! document. Each names what it could not find or what is in the way, so
//! that an API error tells the administrator what to do next; whatever a
//! file would refuse is refused afterwards by [`Doc::check`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::TpgMode;
use crate::config::{
    AclDoc, AuthDoc, BackstoreDoc, Doc, LunDoc, MappedLunDoc, SizeDoc, TargetDoc, TpgDoc, VhostDoc,
};

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The object (or its parent) does not exist.
    NotFound(String),
    /// It exists already, or something still uses it.
    Conflict(String),
    /// The request itself is wrong.
    Invalid(String),
}

pub type OpResult = Result<(), OpError>;

fn not_found<T>(what: String) -> Result<T, OpError> {
    Err(OpError::NotFound(what))
}

/// A new target. Unless `tpg` is false it gets portal group 1 in ACL mode,
/// as targetcli's `/iscsi create` gives tpg1.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub iqn: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default = "yes")]
    pub tpg: bool,
}

fn yes() -> bool {
    true
}

/// A new portal group; `tag` defaults to the lowest free one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTpg {
    #[serde(default)]
    pub tag: Option<u16>,
    /// Default acl: a group is never opened to every initiator silently.
    #[serde(default)]
    pub mode: Option<TpgMode>,
}

/// Attributes of a portal group to change; absent ones stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TpgPatch {
    #[serde(default)]
    pub mode: Option<TpgMode>,
    #[serde(default)]
    pub demo_read_only: Option<bool>,
    #[serde(default)]
    pub relative_port_id: Option<u16>,
    /// The ALUA state of the group's target port group (every tpg sharing
    /// that group changes with it).
    #[serde(default)]
    pub alua_state: Option<crate::config::AluaState>,
    /// PREF of the target port group (likewise shared).
    #[serde(default)]
    pub alua_preferred: Option<bool>,
    /// Move the tpg to another target port group (0: back to its tag).
    #[serde(default)]
    pub alua_group: Option<u16>,
}

/// Attributes of a backstore to change; absent ones stay. A size may only
/// grow while LUNs use it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackstorePatch {
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub size: Option<SizeDoc>,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub write_back: Option<bool>,
    #[serde(default)]
    pub removable: Option<bool>,
    #[serde(default)]
    pub thin: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[KMGTkmgt]?$")]
    pub sanitize_rate: Option<SizeDoc>,
    /// The LU's identity (`set wwn`); "" puts a field back to its default.
    /// Refused while LUNs use the backstore: hosts would see another disk
    /// behind a path they know.
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub naa: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPortal {
    /// "address:port" (3260 when left out).
    pub address: String,
}

/// A new LUN of a group; `lun` defaults to the lowest free number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLun {
    #[serde(default)]
    pub lun: Option<u64>,
    pub backstore: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A new ACL. With `map_all`, every LUN of the group is mapped to it under
/// its own number (targetcli's auto_add_mapped_luns); by default none is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAcl {
    pub initiator: String,
    #[serde(default)]
    pub auth: Option<AuthDoc>,
    #[serde(default)]
    pub map_all: bool,
}

/// A new mapped LUN; `mapped_lun` defaults to the lowest free number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMappedLun {
    #[serde(default)]
    pub mapped_lun: Option<u64>,
    pub tpg_lun: u64,
    #[serde(default)]
    pub read_only: bool,
}

fn lowest_free(used: impl Iterator<Item = u64>, from: u64) -> u64 {
    let mut v: Vec<u64> = used.collect();
    v.sort_unstable();
    let mut n = from;
    for u in v {
        if u == n {
            n += 1;
        } else if u > n {
            break;
        }
    }
    n
}

pub fn create_backstore(d: &mut Doc, b: BackstoreDoc) -> OpResult {
    if d.backstore(&b.name).is_some() {
        return Err(OpError::Conflict(format!(
            "backstore {:?} exists already: pick another name, or delete it first",
            b.name
        )));
    }
    d.backstore.push(b);
    Ok(())
}

fn backstore_mut<'a>(d: &'a mut Doc, name: &str) -> Result<&'a mut BackstoreDoc, OpError> {
    match d.backstore.iter_mut().find(|b| b.name == name) {
        Some(b) => Ok(b),
        None => not_found(format!("no backstore named {name:?}")),
    }
}

pub fn patch_backstore(d: &mut Doc, name: &str, p: BackstorePatch) -> OpResult {
    let users = d.backstore_users(name);
    let b = backstore_mut(d, name)?;
    let before = b.clone();
    for (field, value) in [
        (&mut b.vendor, p.vendor),
        (&mut b.product, p.product),
        (&mut b.revision, p.revision),
        (&mut b.serial, p.serial),
        (&mut b.naa, p.naa),
    ] {
        if let Some(v) = value {
            *field = (!v.is_empty()).then_some(v);
        }
    }
    let identity = |b: &BackstoreDoc| {
        (
            b.vendor.clone(),
            b.product.clone(),
            b.revision.clone(),
            b.serial.clone(),
            b.naa.clone(),
        )
    };
    if identity(b) != identity(&before) && !users.is_empty() {
        return Err(OpError::Conflict(format!(
            "backstore {name:?} is in use by {}: its hosts would see another disk on a path \
             they know; delete those LUNs first, or set the identity before exporting it",
            users.join(", ")
        )));
    }
    if let Some(s) = p.size {
        b.size = Some(s);
    }
    if let Some(v) = p.read_only {
        b.read_only = v;
    }
    if let Some(v) = p.write_back {
        b.write_back = Some(v);
    }
    if let Some(v) = p.removable {
        b.removable = v;
    }
    if let Some(v) = p.thin {
        b.thin = Some(v);
    }
    if let Some(v) = p.sanitize_rate {
        b.sanitize_rate = Some(v);
    }
    Ok(())
}

/// Refused while a LUN uses the backstore (its initiators would lose it
/// without being asked).
pub fn delete_backstore(d: &mut Doc, name: &str) -> OpResult {
    backstore_mut(d, name)?;
    let users = d.backstore_users(name);
    if !users.is_empty() {
        return Err(OpError::Conflict(format!(
            "backstore {name:?} is in use by {}: delete those LUNs first",
            users.join(", ")
        )));
    }
    d.backstore.retain(|b| b.name != name);
    Ok(())
}

pub fn create_target(d: &mut Doc, t: NewTarget) -> OpResult {
    if d.target(&t.iqn).is_some() {
        return Err(OpError::Conflict(format!(
            "target {:?} exists already",
            t.iqn
        )));
    }
    let tpg = if t.tpg {
        vec![TpgDoc::new(1, TpgMode::Acl)]
    } else {
        Vec::new()
    };
    d.target.push(TargetDoc {
        iqn: t.iqn,
        alias: t.alias,
        tpg,
    });
    Ok(())
}

pub fn delete_target(d: &mut Doc, iqn: &str) -> OpResult {
    target_mut(d, iqn)?;
    d.target.retain(|t| !t.iqn.eq_ignore_ascii_case(iqn));
    Ok(())
}

fn target_mut<'a>(d: &'a mut Doc, iqn: &str) -> Result<&'a mut TargetDoc, OpError> {
    match d.target_mut(iqn) {
        Some(t) => Ok(t),
        None => not_found(format!("no target {iqn:?}")),
    }
}

pub fn tpg_mut<'a>(d: &'a mut Doc, iqn: &str, tag: u16) -> Result<&'a mut TpgDoc, OpError> {
    let t = target_mut(d, iqn)?;
    match t.tpg.iter_mut().find(|g| g.tag == tag) {
        Some(g) => Ok(g),
        None => not_found(format!("target {iqn:?} has no tpg{tag}")),
    }
}

pub fn create_tpg(d: &mut Doc, iqn: &str, n: NewTpg) -> Result<u16, OpError> {
    let t = target_mut(d, iqn)?;
    let tag = match n.tag {
        Some(0) => return Err(OpError::Invalid("tpg tag must be 1..65535".into())),
        Some(tag) if t.tpg.iter().any(|g| g.tag == tag) => {
            return Err(OpError::Conflict(format!(
                "target {iqn:?} has a tpg{tag} already"
            )))
        }
        Some(tag) => tag,
        None => {
            let n = lowest_free(t.tpg.iter().map(|g| g.tag as u64), 1);
            u16::try_from(n).map_err(|_| OpError::Conflict("every tpg tag is taken".into()))?
        }
    };
    t.tpg.push(TpgDoc::new(tag, n.mode.unwrap_or(TpgMode::Acl)));
    Ok(tag)
}

pub fn delete_tpg(d: &mut Doc, iqn: &str, tag: u16) -> OpResult {
    tpg_mut(d, iqn, tag)?;
    target_mut(d, iqn)?.tpg.retain(|g| g.tag != tag);
    Ok(())
}

pub fn patch_tpg(d: &mut Doc, iqn: &str, tag: u16, p: TpgPatch) -> OpResult {
    let g = tpg_mut(d, iqn, tag)?;
    if let Some(m) = p.mode {
        g.mode = m;
        if m == TpgMode::Acl {
            g.demo_read_only = false;
        }
    }
    if let Some(v) = p.demo_read_only {
        g.demo_read_only = v;
    }
    if let Some(r) = p.relative_port_id {
        g.relative_port_id = Some(r);
    }
    if let Some(id) = p.alua_group {
        g.alua_group = (id != 0 && id != tag).then_some(id);
    }
    let id = g.alua_group_id();
    // A target port group has one state: set it on every tpg in it.
    for g in d.target.iter_mut().flat_map(|t| &mut t.tpg) {
        if g.alua_group_id() == id {
            if let Some(s) = p.alua_state {
                g.alua_state = s;
            }
            if let Some(v) = p.alua_preferred {
                g.alua_preferred = v;
            }
        }
    }
    Ok(())
}

pub fn set_tpg_auth(d: &mut Doc, iqn: &str, tag: u16, auth: Option<AuthDoc>) -> OpResult {
    tpg_mut(d, iqn, tag)?.auth = auth;
    Ok(())
}

pub fn create_portal(d: &mut Doc, iqn: &str, tag: u16, p: NewPortal) -> OpResult {
    let addr = crate::config::parse_portal(&p.address).map_err(OpError::Invalid)?;
    let g = tpg_mut(d, iqn, tag)?;
    let exists = g
        .portals
        .iter()
        .any(|q| crate::config::parse_portal(q).ok() == Some(addr));
    if exists {
        return Err(OpError::Conflict(format!(
            "tpg{tag} has portal {addr} already"
        )));
    }
    g.portals.push(addr.to_string());
    Ok(())
}

pub fn delete_portal(d: &mut Doc, iqn: &str, tag: u16, address: &str) -> OpResult {
    let addr = crate::config::parse_portal(address).map_err(OpError::Invalid)?;
    let g = tpg_mut(d, iqn, tag)?;
    let before = g.portals.len();
    g.portals
        .retain(|q| crate::config::parse_portal(q).ok() != Some(addr));
    if g.portals.len() == before {
        return not_found(format!("tpg{tag} has no portal {addr}"));
    }
    Ok(())
}

pub fn create_lun(d: &mut Doc, iqn: &str, tag: u16, n: NewLun) -> Result<u64, OpError> {
    if d.backstore(&n.backstore).is_none() {
        return not_found(format!(
            "no backstore named {:?}: create it under /backstores first",
            n.backstore
        ));
    }
    let g = tpg_mut(d, iqn, tag)?;
    let lun = match n.lun {
        Some(l) if g.lun.iter().any(|x| x.lun == l) => {
            return Err(OpError::Conflict(format!("tpg{tag} has a LUN {l} already")))
        }
        Some(l) => l,
        None => lowest_free(g.lun.iter().map(|l| l.lun), 0),
    };
    g.lun.push(LunDoc {
        lun,
        backstore: n.backstore,
        read_only: n.read_only,
    });
    Ok(lun)
}

pub fn create_vhost(d: &mut Doc, v: VhostDoc) -> OpResult {
    let name = v.name();
    if d.vhost(&name).is_some() {
        return Err(OpError::Conflict(format!(
            "vhost controller {name:?} exists already"
        )));
    }
    if let Some(o) = d.vhost.iter().find(|o| o.socket == v.socket) {
        return Err(OpError::Conflict(format!(
            "socket {} is vhost controller {:?}'s",
            v.socket.display(),
            o.name()
        )));
    }
    d.vhost.push(v);
    Ok(())
}

pub fn vhost_mut<'a>(d: &'a mut Doc, name: &str) -> Result<&'a mut VhostDoc, OpError> {
    match d.vhost_mut(name) {
        Some(v) => Ok(v),
        None => not_found(format!("no vhost controller {name:?}")),
    }
}

/// The controller goes: the VM attached to it is disconnected.
pub fn delete_vhost(d: &mut Doc, name: &str) -> OpResult {
    vhost_mut(d, name)?;
    d.vhost.retain(|v| v.name() != name);
    Ok(())
}

/// A LUN of a vhost controller; the attached guest sees it appear.
pub fn create_vhost_lun(d: &mut Doc, name: &str, n: NewLun) -> Result<u64, OpError> {
    if d.backstore(&n.backstore).is_none() {
        return not_found(format!(
            "no backstore named {:?}: create it under /backstores first",
            n.backstore
        ));
    }
    let v = vhost_mut(d, name)?;
    let lun = match n.lun {
        Some(l) if v.lun.iter().any(|x| x.lun == l) => {
            return Err(OpError::Conflict(format!(
                "vhost controller {name:?} has a LUN {l} already"
            )))
        }
        Some(l) => l,
        None => lowest_free(v.lun.iter().map(|l| l.lun), 0),
    };
    v.lun.push(LunDoc {
        lun,
        backstore: n.backstore,
        read_only: n.read_only,
    });
    Ok(lun)
}

/// The LUN goes; the attached guest sees it go.
pub fn delete_vhost_lun(d: &mut Doc, name: &str, lun: u64) -> OpResult {
    let v = vhost_mut(d, name)?;
    if !v.lun.iter().any(|l| l.lun == lun) {
        return not_found(format!("vhost controller {name:?} has no LUN {lun}"));
    }
    v.lun.retain(|l| l.lun != lun);
    Ok(())
}

/// The LUN goes, and with it the mapped LUNs that reach it (their
/// initiators are told REPORTED LUNS DATA HAS CHANGED).
pub fn delete_lun(d: &mut Doc, iqn: &str, tag: u16, lun: u64) -> OpResult {
    let g = tpg_mut(d, iqn, tag)?;
    if !g.lun.iter().any(|l| l.lun == lun) {
        return not_found(format!("tpg{tag} has no LUN {lun}"));
    }
    g.lun.retain(|l| l.lun != lun);
    for a in &mut g.acl {
        a.mapped_lun.retain(|m| m.tpg_lun != lun);
    }
    Ok(())
}

pub fn create_acl(d: &mut Doc, iqn: &str, tag: u16, n: NewAcl) -> OpResult {
    let g = tpg_mut(d, iqn, tag)?;
    if g.acl
        .iter()
        .any(|a| a.initiator.eq_ignore_ascii_case(&n.initiator))
    {
        return Err(OpError::Conflict(format!(
            "tpg{tag} has an ACL for {:?} already",
            n.initiator
        )));
    }
    let mapped_lun = if n.map_all {
        g.lun
            .iter()
            .map(|l| MappedLunDoc {
                mapped_lun: l.lun,
                tpg_lun: l.lun,
                read_only: false,
            })
            .collect()
    } else {
        Vec::new()
    };
    g.acl.push(AclDoc {
        initiator: n.initiator,
        auth: n.auth,
        mapped_lun,
    });
    Ok(())
}

pub fn acl_mut<'a>(
    d: &'a mut Doc,
    iqn: &str,
    tag: u16,
    initiator: &str,
) -> Result<&'a mut AclDoc, OpError> {
    let g = tpg_mut(d, iqn, tag)?;
    match g
        .acl
        .iter_mut()
        .find(|a| a.initiator.eq_ignore_ascii_case(initiator))
    {
        Some(a) => Ok(a),
        None => not_found(format!("tpg{tag} has no ACL for {initiator:?}")),
    }
}

pub fn delete_acl(d: &mut Doc, iqn: &str, tag: u16, initiator: &str) -> OpResult {
    acl_mut(d, iqn, tag, initiator)?;
    tpg_mut(d, iqn, tag)?
        .acl
        .retain(|a| !a.initiator.eq_ignore_ascii_case(initiator));
    Ok(())
}

pub fn set_acl_auth(
    d: &mut Doc,
    iqn: &str,
    tag: u16,
    initiator: &str,
    auth: Option<AuthDoc>,
) -> OpResult {
    acl_mut(d, iqn, tag, initiator)?.auth = auth;
    Ok(())
}

pub fn create_mapped_lun(
    d: &mut Doc,
    iqn: &str,
    tag: u16,
    initiator: &str,
    n: NewMappedLun,
) -> Result<u64, OpError> {
    let g = tpg_mut(d, iqn, tag)?;
    if !g.lun.iter().any(|l| l.lun == n.tpg_lun) {
        return not_found(format!(
            "tpg{tag} has no LUN {}: create it under luns first",
            n.tpg_lun
        ));
    }
    let a = acl_mut(d, iqn, tag, initiator)?;
    let m = match n.mapped_lun {
        Some(m) if a.mapped_lun.iter().any(|x| x.mapped_lun == m) => {
            return Err(OpError::Conflict(format!(
                "{initiator:?} has a mapped LUN {m} already"
            )))
        }
        Some(m) => m,
        None => lowest_free(a.mapped_lun.iter().map(|m| m.mapped_lun), 0),
    };
    a.mapped_lun.push(MappedLunDoc {
        mapped_lun: m,
        tpg_lun: n.tpg_lun,
        read_only: n.read_only,
    });
    Ok(m)
}

pub fn delete_mapped_lun(
    d: &mut Doc,
    iqn: &str,
    tag: u16,
    initiator: &str,
    mapped: u64,
) -> OpResult {
    let a = acl_mut(d, iqn, tag, initiator)?;
    if !a.mapped_lun.iter().any(|m| m.mapped_lun == mapped) {
        return not_found(format!("{initiator:?} has no mapped LUN {mapped}"));
    }
    a.mapped_lun.retain(|m| m.mapped_lun != mapped);
    Ok(())
}

pub fn set_discovery_auth(d: &mut Doc, auth: Option<AuthDoc>) -> OpResult {
    d.iscsi.discovery_auth = auth;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackstoreKind;

    fn ram(name: &str) -> BackstoreDoc {
        BackstoreDoc {
            size: Some(SizeDoc(1 << 20)),
            ..BackstoreDoc::new(name, BackstoreKind::Ramdisk)
        }
    }

    const IQN: &str = "iqn.2026-11.org.example:t";
    const HOST: &str = "iqn.2026-11.org.example:host";

    fn setup() -> Doc {
        let mut d = Doc::default();
        create_backstore(&mut d, ram("r0")).unwrap();
        create_target(
            &mut d,
            NewTarget {
                iqn: IQN.into(),
                alias: None,
                tpg: true,
            },
        )
        .unwrap();
        d
    }

    #[test]
    fn a_tree_built_by_operations_checks() {
        let mut d = setup();
        let l = create_lun(
            &mut d,
            IQN,
            1,
            NewLun {
                lun: None,
                backstore: "r0".into(),
                read_only: false,
            },
        )
        .unwrap();
        assert_eq!(l, 0);
        create_acl(
            &mut d,
            IQN,
            1,
            NewAcl {
                initiator: HOST.into(),
                auth: None,
                map_all: true,
            },
        )
        .unwrap();
        assert_eq!(d.target[0].tpg[0].acl[0].mapped_lun.len(), 1);
        create_portal(
            &mut d,
            IQN,
            1,
            NewPortal {
                address: "127.0.0.1".into(),
            },
        )
        .unwrap();
        assert_eq!(d.target[0].tpg[0].portals, vec!["127.0.0.1:3260"]);
        d.check().unwrap();
    }

    #[test]
    fn refusals_name_what_to_do() {
        let mut d = setup();
        assert!(matches!(
            create_backstore(&mut d, ram("r0")),
            Err(OpError::Conflict(_))
        ));
        let e = create_lun(
            &mut d,
            IQN,
            1,
            NewLun {
                lun: Some(3),
                backstore: "nope".into(),
                read_only: false,
            },
        );
        assert!(
            matches!(e, Err(OpError::NotFound(m)) if m.contains("create it under /backstores"))
        );
        create_lun(
            &mut d,
            IQN,
            1,
            NewLun {
                lun: Some(3),
                backstore: "r0".into(),
                read_only: false,
            },
        )
        .unwrap();
        let e = delete_backstore(&mut d, "r0").unwrap_err();
        assert!(
            matches!(&e, OpError::Conflict(m) if m.contains("luns/lun3")),
            "{e:?}"
        );
        assert!(matches!(
            delete_tpg(&mut d, IQN, 9),
            Err(OpError::NotFound(_))
        ));
        assert!(matches!(
            create_portal(
                &mut d,
                IQN,
                1,
                NewPortal {
                    address: "x:y:z".into()
                }
            ),
            Err(OpError::Invalid(_))
        ));
    }

    #[test]
    fn deleting_a_lun_unmaps_it() {
        let mut d = setup();
        for _ in 0..2 {
            create_lun(
                &mut d,
                IQN,
                1,
                NewLun {
                    lun: None,
                    backstore: "r0".into(),
                    read_only: false,
                },
            )
            .unwrap();
        }
        create_acl(
            &mut d,
            IQN,
            1,
            NewAcl {
                initiator: HOST.into(),
                auth: None,
                map_all: true,
            },
        )
        .unwrap();
        delete_lun(&mut d, IQN, 1, 0).unwrap();
        let a = &d.target[0].tpg[0].acl[0];
        assert_eq!(a.mapped_lun.len(), 1);
        assert_eq!(a.mapped_lun[0].tpg_lun, 1);
        d.check().unwrap();
    }

    #[test]
    fn lowest_free_numbers() {
        assert_eq!(lowest_free([0, 1, 3].into_iter(), 0), 2);
        assert_eq!(lowest_free([].into_iter(), 1), 1);
        assert_eq!(lowest_free([2, 1].into_iter(), 1), 3);
    }
}
