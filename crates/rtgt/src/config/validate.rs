//! Every rule of the configuration, stated once. A file, a change through
//! the control API, the CLI and an import are all checked here; a broken
//! rule is reported with the path of the value that breaks it, which the
//! file layer turns into FILE:LINE.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rtgt_scsi::access::{ChapAuth, Credential, Secret};
use rtgt_scsi::lu::identity;

use super::model::{AuthDoc, BackstoreDoc, Doc, LunDoc, VHOST_MAX_QUEUES};
use super::values::{
    check_iscsi_name, fault_errno, parse_portal, AluaState, BackstoreKind, TpgMode,
    MIN_SANITIZE_RATE,
};
use crate::model::{CredentialAt, Model};

/// One step of the way to a value: a key of a table or an index of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

impl From<&'static str> for Seg {
    fn from(k: &'static str) -> Seg {
        Seg::Key(k)
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

/// Where a value is: `target[0].tpg[1].lun[2].backstore`.
pub type At = Vec<Seg>;

/// Where a value is, as it reads: `target[0].tpg[1].lun[2].backstore`.
pub fn show_at(at: &[Seg]) -> String {
    let mut s = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A broken rule: where, and what is wrong. `related` is a second place
/// the message refers to (the other credential of a clash).
#[derive(Debug, Clone)]
pub struct Invalid {
    pub at: At,
    pub message: String,
    pub related: Option<At>,
}

impl Invalid {
    /// The message without a file to point into: the related place named
    /// by its path.
    pub fn text(&self) -> String {
        let related = match &self.related {
            Some(r) => format!(" ({})", show_at(r)),
            None => String::new(),
        };
        self.message.replace("{related}", &related)
    }
}

fn invalid<T>(at: At, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        at,
        message: message.into(),
        related: None,
    })
}

macro_rules! at {
    ($($s:expr),* $(,)?) => { vec![$(Seg::from($s)),*] };
}

/// The rest of a path below a place: `join(&here, &rel!["lun", 3])`.
macro_rules! rel {
    ($($s:expr),* $(,)?) => { [$(Seg::from($s)),*] };
}

fn join(base: &[Seg], rest: &[Seg]) -> At {
    base.iter().chain(rest).cloned().collect()
}

/// RFC 7143 12.1.3 wants CHAP secrets of at least 96 bits; open-iscsi and
/// the Windows initiator refuse longer than 16 or 256 bytes respectively.
const MIN_SECRET: usize = 12;
const MAX_SECRET: usize = 255;

/// Check `doc` and read its secrets: the model it describes.
pub fn validate(doc: &Doc) -> Result<Model, Invalid> {
    let mut secrets = BTreeMap::new();
    // Each credential: where, how messages name it, its key, whether it
    // has a mutual user.
    let mut places: Vec<(At, String, CredentialAt, bool)> = Vec::new();
    if let Some(algs) = &doc.iscsi.chap_algorithms {
        let here = at!["iscsi", "chap_algorithms"];
        if algs.is_empty() {
            return invalid(here, "chap_algorithms must name at least one algorithm");
        }
        for a in algs {
            if rtgt_iscsi::chap::ChapAlgorithm::from_name(a).is_none() {
                return invalid(
                    here,
                    format!("unknown CHAP algorithm {a:?} (SHA3-256, SHA256, SHA1 or MD5)"),
                );
            }
        }
    }
    if let Some(a) = &doc.iscsi.discovery_auth {
        let here = at!["iscsi", "discovery_auth"];
        secrets.insert(CredentialAt::Discovery, resolve(a, &here)?);
        places.push((
            here,
            "[iscsi.discovery_auth]".into(),
            CredentialAt::Discovery,
            a.mutual_userid.is_some(),
        ));
    }
    if let Some(m) = doc.iscsi.chap_min_challenge {
        let max = rtgt_iscsi::chap::MAX_PEER_CHALLENGE_LEN;
        if !(1..=max as u32).contains(&m) {
            return invalid(
                at!["iscsi", "chap_min_challenge"],
                format!("chap_min_challenge must be 1..{max} (bytes; default 16)"),
            );
        }
    }
    let mut names = HashSet::new();
    let mut serials = HashMap::new();
    let mut naas = HashMap::new();
    for (i, b) in doc.backstore.iter().enumerate() {
        backstore(i, b, &mut names, &mut serials, &mut naas)?;
    }
    let mut iqns = HashSet::new();
    let mut rtpis = HashSet::new();
    // ALUA group ID -> where it was first set, and its state.
    let mut alua_groups: HashMap<u16, (At, (AluaState, bool))> = HashMap::new();
    for (ti, t) in doc.target.iter().enumerate() {
        let iqn = &t.iqn;
        if let Err(why) = check_iscsi_name(iqn) {
            return invalid(
                at!["target", ti, "iqn"],
                format!("target name {iqn:?}: {why}"),
            );
        }
        let key = iqn.to_ascii_lowercase();
        if !iqns.insert(key.clone()) {
            return invalid(
                at!["target", ti, "iqn"],
                format!("duplicate target {iqn:?}"),
            );
        }
        let mut tags = HashSet::new();
        for (gi, g) in t.tpg.iter().enumerate() {
            let here = at!["target", ti, "tpg", gi];
            let tag = g.tag;
            if tag == 0 {
                return invalid(join(&here, &rel!["tag"]), "tpg tag must be 1..65535");
            }
            if !tags.insert(tag) {
                return invalid(
                    join(&here, &rel!["tag"]),
                    format!("duplicate tpg tag {tag} in target {iqn:?}"),
                );
            }
            for (pi, p) in g.portals.iter().enumerate() {
                if let Err(why) = parse_portal(p) {
                    return invalid(join(&here, &rel!["portals", pi]), why);
                }
            }
            if g.demo_read_only && g.mode != TpgMode::Demo {
                return invalid(
                    join(&here, &rel!["mode"]),
                    "demo_read_only applies to mode = \"demo\" only",
                );
            }
            if g.alua_group == Some(0) {
                return invalid(
                    join(&here, &rel!["alua_group"]),
                    "alua_group must be 1..65535",
                );
            }
            agree_alua(
                &mut alua_groups,
                g.alua_group_id(),
                (g.alua_state, g.alua_preferred),
                &here,
            )?;
            unique_rtpi(&mut rtpis, g.relative_port_id, &here)?;
            if let Some(a) = &g.auth {
                let place = CredentialAt::Tpg {
                    iqn: key.clone(),
                    tag,
                };
                let at = join(&here, &rel!["auth"]);
                secrets.insert(place.clone(), resolve(a, &at)?);
                places.push((
                    at,
                    format!("the auth of target {iqn:?} tpg {tag}"),
                    place,
                    a.mutual_userid.is_some(),
                ));
            }
            let luns = check_luns(&g.lun, &names, &here, &format!("tpg {tag}"))?;
            let mut initiators = HashSet::new();
            for (ai, acl) in g.acl.iter().enumerate() {
                let ahere = join(&here, &rel!["acl", ai]);
                let name = &acl.initiator;
                if let Err(why) = check_iscsi_name(name) {
                    return invalid(
                        join(&ahere, &rel!["initiator"]),
                        format!("initiator name {name:?}: {why}"),
                    );
                }
                if !initiators.insert(name.to_ascii_lowercase()) {
                    return invalid(
                        join(&ahere, &rel!["initiator"]),
                        format!("initiator {name:?} has two ACLs in tpg {tag}"),
                    );
                }
                let mut mapped = HashSet::new();
                for (mi, m) in acl.mapped_lun.iter().enumerate() {
                    let n = m.mapped_lun;
                    let at = join(&ahere, &rel!["mapped_lun", mi, "mapped_lun"]);
                    if n >= 16384 {
                        return invalid(at, format!("mapped_lun {n} is out of range (0..16383)"));
                    }
                    if !mapped.insert(n) {
                        return invalid(
                            at,
                            format!("mapped_lun {n} appears twice for initiator {name:?}"),
                        );
                    }
                    if !luns.contains(&m.tpg_lun) {
                        return invalid(
                            join(&ahere, &rel!["mapped_lun", mi, "tpg_lun"]),
                            format!("tpg {tag} has no LUN {}", m.tpg_lun),
                        );
                    }
                }
                if let Some(a) = &acl.auth {
                    let place = CredentialAt::Acl {
                        iqn: key.clone(),
                        tag,
                        initiator: name.to_ascii_lowercase(),
                    };
                    let at = join(&ahere, &rel!["auth"]);
                    secrets.insert(place.clone(), resolve(a, &at)?);
                    places.push((
                        at,
                        format!("the auth of ACL {name:?} (target {iqn:?} tpg {tag})"),
                        place,
                        a.mutual_userid.is_some(),
                    ));
                }
            }
        }
    }
    let mut vhost_names = HashSet::new();
    let mut sockets = HashSet::new();
    for (vi, v) in doc.vhost.iter().enumerate() {
        let here = at!["vhost", vi];
        let name = v.name();
        let name_at = if v.name.is_some() {
            join(&here, &rel!["name"])
        } else {
            join(&here, &rel!["socket"])
        };
        if let Err(why) = check_object_name(&name) {
            return invalid(
                name_at,
                format!("vhost controller name {name:?} {why} (set `name`)"),
            );
        }
        if !vhost_names.insert(name.clone()) {
            return invalid(
                name_at,
                format!("duplicate vhost controller {name:?} (give each its own `name`)"),
            );
        }
        if v.socket.as_os_str().is_empty() || v.socket.to_str().is_none() {
            return invalid(join(&here, &rel!["socket"]), "socket must be a UTF-8 path");
        }
        if !sockets.insert(v.socket.clone()) {
            return invalid(
                join(&here, &rel!["socket"]),
                format!(
                    "socket {} is used by another vhost controller",
                    v.socket.display()
                ),
            );
        }
        if let Some(i) = &v.initiator {
            if let Err(why) = check_iscsi_name(i) {
                return invalid(
                    join(&here, &rel!["initiator"]),
                    format!("initiator name {i:?}: {why}"),
                );
            }
        }
        if let Some(w) = &v.wwn {
            // The LU identity's own NAA parser, held to the 8-byte forms
            // (NAA 2, 3, 5) and to the `naa.` name prefix.
            let ok = w.len() >= 4
                && w[..4].eq_ignore_ascii_case("naa.")
                && w.parse::<rtgt_scsi::Naa>()
                    .is_ok_and(|n| n.as_bytes().len() == 8);
            if !ok {
                return invalid(
                    join(&here, &rel!["wwn"]),
                    format!("wwn {w:?} must be naa. and 16 hex digits, NAA type 2, 3 or 5"),
                );
            }
        }
        if let Some(q) = v.num_queues {
            if !(1..=VHOST_MAX_QUEUES).contains(&q) {
                return invalid(
                    join(&here, &rel!["num_queues"]),
                    format!("num_queues must be 1..{VHOST_MAX_QUEUES}"),
                );
            }
        }
        if v.alua_group == Some(0) {
            return invalid(
                join(&here, &rel!["alua_group"]),
                "alua_group must be 1..65535",
            );
        }
        agree_alua(
            &mut alua_groups,
            v.alua_group_id(),
            (v.alua_state, v.alua_preferred),
            &here,
        )?;
        unique_rtpi(&mut rtpis, v.relative_port_id, &here)?;
        check_luns(&v.lun, &names, &here, &format!("vhost controller {name:?}"))?;
    }
    check_secret_roles(&places, &secrets)?;
    Ok(Model {
        doc: doc.clone(),
        secrets,
    })
}

/// Ports that share a target port group ID share its state: the same
/// `alua_state` and `alua_preferred` wherever the ID is named.
fn agree_alua(
    groups: &mut HashMap<u16, (At, (AluaState, bool))>,
    id: u16,
    state: (AluaState, bool),
    here: &[Seg],
) -> Result<(), Invalid> {
    match groups.get(&id) {
        Some((first, s)) if *s != state => Err(Invalid {
            at: join(here, &rel!["alua_state"]),
            message: format!(
                "target port group {id} is {}{} here but {}{} where it was first set: ports in one ALUA group share its state (give this one its own alua_group, or the same alua_state and alua_preferred)",
                state.0.name(),
                if state.1 { " preferred" } else { "" },
                s.0.name(),
                if s.1 { " preferred" } else { "" },
            ),
            related: Some(first.clone()),
        }),
        Some(_) => Ok(()),
        None => {
            groups.insert(id, (join(here, &rel!["alua_state"]), state));
            Ok(())
        }
    }
}

/// An explicit relative port ID is 1..65535 and no other port's.
fn unique_rtpi(used: &mut HashSet<u16>, rtpi: Option<u16>, here: &[Seg]) -> Result<(), Invalid> {
    let Some(r) = rtpi else {
        return Ok(());
    };
    let at = join(here, &rel!["relative_port_id"]);
    if r == 0 {
        return invalid(at, "relative_port_id must be 1..65535");
    }
    if !used.insert(r) {
        return invalid(at, format!("relative_port_id {r} is used by another port"));
    }
    Ok(())
}

/// A port's LUNs: numbers in range and used once, backstores that exist.
/// Returns the numbers.
fn check_luns(
    luns: &[LunDoc],
    backstores: &HashSet<&str>,
    here: &[Seg],
    whose: &str,
) -> Result<HashSet<u64>, Invalid> {
    let mut seen = HashSet::new();
    for (li, lun) in luns.iter().enumerate() {
        let n = lun.lun;
        let at = join(here, &rel!["lun", li, "lun"]);
        if n >= 16384 {
            return invalid(at, format!("LUN {n} is out of range (0..16383)"));
        }
        if !seen.insert(n) {
            return invalid(at, format!("LUN {n} is mapped twice in {whose}"));
        }
        if !backstores.contains(lun.backstore.as_str()) {
            return invalid(
                join(here, &rel!["lun", li, "backstore"]),
                format!("no backstore named {:?}", lun.backstore),
            );
        }
    }
    Ok(seen)
}

/// A name that is one element of a tree path.
fn check_object_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be non-empty letters, digits, '-', '_' or '.'")
    }
}

/// The settings of an rbd backstore.
fn rbd(i: usize, b: &BackstoreDoc) -> Result<(), Invalid> {
    let here = |k: &'static str| at!["backstore", i, k];
    let name = &b.name;
    for (key, v) in [("pool", &b.pool), ("image", &b.image)] {
        match v {
            None => return invalid(here("name"), format!("rbd {name:?} needs {key} = \"...\"")),
            Some(v) if v.is_empty() || v.contains(['/', '@', '\0']) => {
                return invalid(
                    here(key),
                    format!("{key} {v:?} must be non-empty, without '/', '@' or NUL"),
                )
            }
            Some(_) => {}
        }
    }
    if let Some(ns) = &b.namespace {
        if ns.is_empty() || ns.contains(['/', '\0']) {
            return invalid(
                here("namespace"),
                format!("namespace {ns:?} must be non-empty, without '/' or NUL"),
            );
        }
    }
    if let Some(c) = &b.client {
        if c.is_empty() || c.starts_with("client.") || c.contains('\0') {
            return invalid(
                here("client"),
                format!("client {c:?} is the id alone (\"admin\" for client.admin)"),
            );
        }
    }
    if let Some(t) = b.op_timeout {
        if !(1..=3600).contains(&t) {
            return invalid(
                here("op_timeout"),
                format!("op_timeout {t} must be 1..3600 seconds"),
            );
        }
    }
    if b.path.is_some() {
        return invalid(
            here("path"),
            format!("rbd {name:?} takes pool and image, not a path"),
        );
    }
    if b.size.is_some() {
        return invalid(
            here("size"),
            "size is read from the image for rbd; remove it",
        );
    }
    Ok(())
}

fn backstore<'a>(
    i: usize,
    b: &'a BackstoreDoc,
    names: &mut HashSet<&'a str>,
    serials: &mut HashMap<String, &'a str>,
    naas: &mut HashMap<rtgt_scsi::Naa, &'a str>,
) -> Result<(), Invalid> {
    let here = |k: &'static str| at!["backstore", i, k];
    let name = b.name.as_str();
    if let Err(why) = check_object_name(name) {
        return invalid(here("name"), format!("backstore name {name:?} {why}"));
    }
    if !names.insert(name) {
        return invalid(here("name"), format!("duplicate backstore name {name:?}"));
    }
    let block = b.block_size.unwrap_or(512);
    if let Some(bs) = b.block_size {
        if !matches!(bs, 512 | 4096) {
            return invalid(
                here("block_size"),
                format!("block_size {bs} is not supported (512 or 4096)"),
            );
        }
        if b.kind == BackstoreKind::Blockio {
            return invalid(
                here("block_size"),
                "block_size is read from the device for blockio; remove it",
            );
        }
    }
    let check_size = |n: u64| {
        if n == 0 || !n.is_multiple_of(block as u64) {
            return invalid(
                here("size"),
                format!("size {n} must be a non-zero multiple of the block size {block}"),
            );
        }
        Ok(())
    };
    match b.kind {
        BackstoreKind::Ramdisk => {
            let Some(size) = b.size else {
                return invalid(here("name"), format!("ramdisk {name:?} needs a size"));
            };
            if b.path.is_some() {
                return invalid(here("name"), format!("ramdisk {name:?} takes no path"));
            }
            check_size(size.0)?;
        }
        BackstoreKind::Fileio => {
            if b.path.is_none() {
                return invalid(here("name"), format!("fileio {name:?} needs a path"));
            }
            if let Some(size) = b.size {
                check_size(size.0)?;
            }
        }
        BackstoreKind::Blockio => {
            if b.path.is_none() {
                return invalid(here("name"), format!("blockio {name:?} needs a path"));
            }
            if b.size.is_some() {
                return invalid(
                    here("size"),
                    "size is read from the device for blockio; remove it",
                );
            }
        }
        BackstoreKind::Rbd => rbd(i, b)?,
    }
    if b.kind != BackstoreKind::Rbd {
        for (key, set) in [
            ("pool", b.pool.is_some()),
            ("image", b.image.is_some()),
            ("namespace", b.namespace.is_some()),
            ("ceph_conf", b.ceph_conf.is_some()),
            ("keyring", b.keyring.is_some()),
            ("client", b.client.is_some()),
            ("op_timeout", b.op_timeout.is_some()),
        ] {
            if set {
                return invalid(here(key), format!("{key} applies to rbd backstores only"));
            }
        }
    }
    if let Some(p) = b.physical_block_size {
        if p < block || !p.is_power_of_two() || p > 65536 {
            return invalid(
                here("physical_block_size"),
                format!("physical_block_size {p} must be a power of two from the block size ({block}) to 65536"),
            );
        }
    }
    if let Some(f) = &b.faults {
        for (ri, r) in f.rule.iter().enumerate() {
            if fault_errno(&r.error).is_none() {
                return invalid(
                    at!["backstore", i, "faults", "rule", ri, "error"],
                    format!("unknown error {:?} (EIO, ENOSPC, ENXIO or ENODEV)", r.error),
                );
            }
            if r.blocks == 0 {
                return invalid(
                    at!["backstore", i, "faults", "rule", ri, "blocks"],
                    "blocks must be at least 1",
                );
            }
        }
    }
    if let Some(rate) = b.sanitize_rate {
        let r = rate.0;
        if r != 0 && r < MIN_SANITIZE_RATE {
            return invalid(
                here("sanitize_rate"),
                format!(
                    "sanitize_rate {r} bytes per second is too slow (a sanitize would \
                     never end): give at least \"1M\" (bytes per second), or 0 for no limit"
                ),
            );
        }
    }
    if b.write_back.is_some() && b.kind != BackstoreKind::Fileio {
        return invalid(here("name"), "write_back applies to fileio backstores only");
    }
    for (key, v, max) in [
        ("vendor", &b.vendor, identity::VENDOR_LEN),
        ("product", &b.product, identity::PRODUCT_LEN),
        ("revision", &b.revision, identity::REVISION_LEN),
    ] {
        if let Some(v) = v {
            if let Err(e) = identity::check_ascii(key, v, max) {
                return invalid(here(key), e);
            }
        }
    }
    if let Some(s) = &b.serial {
        if let Err(e) = identity::check_serial(s) {
            return invalid(here("serial"), e);
        }
    }
    let naa = match b.naa() {
        Ok(n) => n,
        Err(e) => return invalid(here("naa"), e),
    };
    // Two LUs with one identity would be taken by hosts for two paths to
    // one disk (multipath would merge them).
    let serial = b.serial();
    let at = |k: &'static str, set: bool| here(if set { k } else { "name" });
    if let Some(other) = serials.insert(serial.clone(), name) {
        return invalid(
            at("serial", b.serial.is_some()),
            format!("backstores {other:?} and {name:?} have the same serial {serial:?}; each LU needs its own"),
        );
    }
    if let Some(other) = naas.insert(naa, name) {
        return invalid(
            at("naa", b.naa.is_some()),
            format!(
                "backstores {other:?} and {name:?} have the same naa {naa}; each LU needs its own"
            ),
        );
    }
    Ok(())
}

/// Read the secrets of one credential (inline or from their files) and
/// check them.
fn resolve(a: &AuthDoc, here: &[Seg]) -> Result<ChapAuth, Invalid> {
    let at = |k: &'static str| join(here, &rel![k]);
    if a.userid.is_empty() {
        return invalid(at("userid"), "userid is empty");
    }
    let secret = read_secret(
        &a.userid,
        &a.password,
        &a.password_file,
        "password",
        here,
        ("userid", "password", "password_file"),
    )?;
    let mutual = match (
        &a.mutual_userid,
        &a.mutual_password,
        &a.mutual_password_file,
    ) {
        (None, None, None) => None,
        (None, Some(_), _) => {
            return invalid(
                at("mutual_password"),
                "mutual_password needs a mutual_userid",
            )
        }
        (None, None, Some(_)) => {
            return invalid(
                at("mutual_password_file"),
                "mutual_password_file needs a mutual_userid",
            )
        }
        (Some(u), p, f) => {
            if u.is_empty() {
                return invalid(at("mutual_userid"), "mutual_userid is empty");
            }
            let s = read_secret(
                u,
                p,
                f,
                "mutual_password",
                here,
                ("mutual_userid", "mutual_password", "mutual_password_file"),
            )?;
            Some(Credential {
                user: u.clone(),
                secret: s,
            })
        }
    };
    let auth = ChapAuth {
        initiator: Credential {
            user: a.userid.clone(),
            secret,
        },
        mutual,
    };
    if let Err(e) = auth.validate() {
        let k = if a.mutual_userid.is_some() {
            "mutual_userid"
        } else {
            "userid"
        };
        return invalid(at(k), e.to_string());
    }
    Ok(auth)
}

/// One secret, given inline (`key`) or in a file (`key_file`); errors
/// name the key, never the secret.
fn read_secret(
    user: &str,
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    key: &str,
    here: &[Seg],
    keys: (&'static str, &'static str, &'static str),
) -> Result<Secret, Invalid> {
    let at = |k: &'static str| join(here, &rel![k]);
    let (where_, bytes) = match (inline, file) {
        (Some(_), Some(_)) => {
            return invalid(
                at(keys.2),
                format!("give either {key} or {key}_file, not both"),
            )
        }
        (None, None) => {
            return invalid(
                at(keys.0),
                format!("{key} (or {key}_file) is missing for user {user:?}"),
            )
        }
        (Some(p), None) => (at(keys.1), p.as_bytes().to_vec()),
        (None, Some(path)) => (
            at(keys.2),
            read_secret_file(path, key).or_else(|e| invalid(at(keys.2), e))?,
        ),
    };
    if bytes.len() < MIN_SECRET || bytes.len() > MAX_SECRET {
        let n = bytes.len();
        return invalid(
            where_,
            format!("the {key} of user {user:?} has {n} bytes; CHAP secrets need {MIN_SECRET} to {MAX_SECRET}"),
        );
    }
    Ok(Secret::new(bytes))
}

/// A password file: private, regular, small; one trailing newline is not
/// part of the secret.
fn read_secret_file(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{key}_file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{key}_file {} is readable by others (mode {mode:04o}): chmod 600 it",
            path.display()
        ));
    }
    // A secret is a small regular file: a FIFO or a device would block or
    // never end (and the control API waits for this).
    if !meta.is_file() {
        return Err(format!(
            "{key}_file {} is not a regular file",
            path.display()
        ));
    }
    let mut b = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET as u64 + 3).read_to_end(&mut b))
        .map_err(|e| format!("{key}_file {}: {e}", path.display()))?;
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    Ok(b)
}

/// RFC 7143 9.2.1, over every credential at once (each setting's own pair
/// is checked where it is read).
fn check_secret_roles(
    places: &[(At, String, CredentialAt, bool)],
    secrets: &BTreeMap<CredentialAt, ChapAuth>,
) -> Result<(), Invalid> {
    let resolved = places
        .iter()
        .enumerate()
        .filter_map(|(i, (_, _, p, _))| secrets.get(p).map(|s| (i, s)));
    let Some(clash) = rtgt_scsi::access::find_secret_in_both_roles(resolved) else {
        return Ok(());
    };
    let (ini_at, ini_place, _, _) = &places[clash.initiator];
    let (tgt_at, tgt_place, _, mutual_set) = &places[clash.target];
    Err(Invalid {
        at: join(
            tgt_at,
            &rel![if *mutual_set { "mutual_userid" } else { "userid" }],
        ),
        message: format!(
            "the mutual secret of {tgt_place} is also the initiator secret of {ini_place}{{related}}: \
             a secret that authenticates initiators must not authenticate the target (RFC 7143 9.2.1), \
             or a mutual login could be made to answer another initiator's challenge; give each its own secret"
        ),
        related: Some(join(ini_at, &rel!["userid"])),
    })
}

/// The inline secrets (`password`, `mutual_password`) of a configuration:
/// where each is.
pub fn inline_secrets(doc: &Doc) -> Vec<(At, &'static str)> {
    let mut out = Vec::new();
    let mut add = |a: &AuthDoc, here: At| {
        if a.password.is_some() {
            out.push((join(&here, &rel!["password"]), "password"));
        }
        if a.mutual_password.is_some() {
            out.push((join(&here, &rel!["mutual_password"]), "mutual_password"));
        }
    };
    if let Some(a) = &doc.iscsi.discovery_auth {
        add(a, at!["iscsi", "discovery_auth"]);
    }
    for (ti, t) in doc.target.iter().enumerate() {
        for (gi, g) in t.tpg.iter().enumerate() {
            if let Some(a) = &g.auth {
                add(a, at!["target", ti, "tpg", gi, "auth"]);
            }
            for (ai, acl) in g.acl.iter().enumerate() {
                if let Some(a) = &acl.auth {
                    add(a, at!["target", ti, "tpg", gi, "acl", ai, "auth"]);
                }
            }
        }
    }
    out
}
