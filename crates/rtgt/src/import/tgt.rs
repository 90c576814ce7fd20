//! tgt, as tgt-admin reads it (`/etc/tgt/targets.conf` with its `include`
//! globs, Config::General syntax) and what `tgt-admin --dump` prints:
//! `<target IQN> … </target>` blocks with `backing-store` LUNs,
//! `initiator-name` ACLs, `incominguser` / `outgoinguser` CHAP,
//! `incomingdiscoveryuser` / `outgoingdiscoveryuser`, and the identity
//! keys `vendor_id`, `product_id`, `product_rev`, `scsi_sn`, `scsi_id`.
//!
//! Numbering as tgt-admin does it (scripts/tgt-admin): targets get their
//! tid in the sorted order of their names (one more than the largest so
//! far; `controller_tid` sets one), a target's backing stores their LUNs
//! from 1 (LUN 0 is tgt's controller) in the sorted order of their paths,
//! the numbers given with `lun` kept free for their stores.
//!
//! Identity as tgt derives it (usr/spc.c): vendor "IET", product
//! "VIRTUAL-DISK", revision "0001", serial "beaf" + tid + LUN in decimal,
//! scsi_id "IET     " + tid and LUN as 4 hex digits each. Its VPD 83h holds
//! a T10 vendor ID designator (the scsi_id), an NAA 3 (tid << 32 | LUN)
//! and (since tgt 1.0.45, 2014) an NAA 6 made from the scsi_id
//! ([`naa6_from_scsi_id`]): udev and multipath take the NAA 6 first, and
//! rtgt reports exactly it, so the WWID stays.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::{backstore_name, fail, is_block_device, ImportError, Imported};
use crate::config::{
    AclDoc, AuthDoc, BackstoreDoc, BackstoreKind, LunDoc, MappedLunDoc, TargetDoc, TpgDoc, TpgMode,
};

/// The placeholder `tgt-admin --dump` prints for every password.
const DUMP_PLACEHOLDER: &str = "PLEASE_CORRECT_THE_PASSWORD";

/// tgt's NAA 6 designator: every character of the scsi_id read as one hex
/// digit (any other character as 0), the last 32 of them as a 128-bit
/// number, its top four bits replaced by 6 (update_vpd_83 in usr/spc.c).
pub fn naa6_from_scsi_id(scsi_id: &str) -> String {
    let mut v: u128 = 0;
    for c in scsi_id.chars() {
        v = (v << 4) | c.to_digit(16).unwrap_or(0) as u128;
    }
    v = (v & !(0xfu128 << 124)) | (6u128 << 124);
    format!("{v:032x}")
}

/// One line (`key value`) or block (`<key value> … </key>`), where it is.
#[derive(Debug, Clone)]
struct Item {
    key: String,
    value: String,
    at: String,
    children: Option<Vec<Item>>,
}

fn parse(file: &Path, text: &str, depth: usize) -> Result<Vec<Item>, ImportError> {
    let shown = file.display().to_string();
    if depth > 8 {
        return fail(&shown, "include nested too deeply");
    }
    let mut stack: Vec<(Item, Vec<Item>)> = Vec::new();
    let mut top: Vec<Item> = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    fn push(stack: &mut [(Item, Vec<Item>)], top: &mut Vec<Item>, it: Item) {
        match stack.last_mut() {
            Some((_, c)) => c.push(it),
            None => top.push(it),
        }
    }
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = strip_comment(raw);
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(&line);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        let at = format!("{shown}:{start}");
        if line.is_empty() {
            continue;
        }
        if let Some(close) = line.strip_prefix("</") {
            let name = close.trim_end_matches('>').trim();
            match stack.pop() {
                Some((mut open, children)) if open.key.eq_ignore_ascii_case(name) => {
                    open.children = Some(children);
                    push(&mut stack, &mut top, open);
                }
                Some((open, _)) => {
                    return fail(
                        at,
                        format!(
                            "</{name}> closes <{} {}> of {}",
                            open.key, open.value, open.at
                        ),
                    )
                }
                None => return fail(at, format!("</{name}> without a block to close")),
            }
            continue;
        }
        if let Some(open) = line.strip_prefix('<') {
            let Some(inner) = open.strip_suffix('>') else {
                return fail(at, "a block's first line must end with '>'");
            };
            let (key, value) = split_kv(inner.trim_end_matches('/'));
            if key.is_empty() {
                return fail(at, "a block needs a name");
            }
            let it = Item {
                key,
                value,
                at,
                children: None,
            };
            if inner.ends_with('/') {
                let it = Item {
                    children: Some(Vec::new()),
                    ..it
                };
                push(&mut stack, &mut top, it);
            } else {
                stack.push((it, Vec::new()));
            }
            continue;
        }
        let (key, value) = split_kv(line);
        if key.eq_ignore_ascii_case("include") {
            for f in glob(file, &value) {
                let t = std::fs::read_to_string(&f)
                    .or_else(|e| fail(&at, format!("include {}: {e}", f.display())))?;
                for it in parse(&f, &t, depth + 1)? {
                    push(&mut stack, &mut top, it);
                }
            }
            continue;
        }
        let it = Item {
            key,
            value,
            at,
            children: None,
        };
        push(&mut stack, &mut top, it);
    }
    if let Some((open, _)) = stack.pop() {
        return fail(
            open.at.clone(),
            format!("<{} {}> is not closed", open.key, open.value),
        );
    }
    Ok(top)
}

/// Config::General comments: '#' at the start or after white space,
/// unless written "\#".
fn strip_comment(line: &str) -> String {
    let mut out = String::new();
    let mut prev_space = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'#') {
            out.push('#');
            chars.next();
            prev_space = false;
            continue;
        }
        if c == '#' && prev_space {
            break;
        }
        prev_space = c.is_whitespace();
        out.push(c);
    }
    out.trim_end().to_string()
}

/// `key value`, `key = value`; surrounding double quotes removed.
fn split_kv(s: &str) -> (String, String) {
    let s = s.trim();
    let end = s
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(s.len());
    let (k, rest) = s.split_at(end);
    let v = rest.trim_start();
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    (k.to_string(), v.to_string())
}

/// The files an include names ('*' and '?' in its last component),
/// relative to the including file, sorted; none if the folder is missing
/// (as Config::General).
fn glob(from: &Path, pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(".")).join(p)
    };
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    if !name.contains(['*', '?']) {
        return vec![p];
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(&name, n)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn wildcard(p: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(p.as_bytes(), s.as_bytes())
}

/// Options, in order: (key, value, where).
type Opts = Vec<(String, String, String)>;

fn get<'a>(o: &'a Opts, k: &str) -> Option<&'a (String, String, String)> {
    o.iter().find(|(key, _, _)| key == k)
}

struct Store {
    path: String,
    at: String,
    lun: Option<u64>,
    opts: Opts,
    direct: bool,
}

/// Options of a backing-store (or of a target, for all its LUNs).
const LU_KEYS: &[&str] = &[
    "vendor_id",
    "product_id",
    "product_rev",
    "scsi_id",
    "scsi_sn",
    "readonly",
    "removable",
    "write-cache",
    "block-size",
    "lbppbe",
    "bs-type",
    "device-type",
    "params",
    "mode_page",
    "bsopts",
    "bsoflags",
    "sense_format",
    "online",
    "path",
    "la_lba",
    "optimal_xfer_gran",
    "optimal_xfer_len",
    "allow-in-use",
    "lun",
];
/// What rtgt has no setting for (tgt-admin passes them to tgtd).
const LU_NOT_CARRIED: &[&str] = &[
    "mode_page",
    "bsopts",
    "sense_format",
    "online",
    "path",
    "la_lba",
    "optimal_xfer_gran",
    "optimal_xfer_len",
];

fn account(v: &str, at: &str) -> Result<AuthDoc, ImportError> {
    let mut w = v.split_whitespace();
    let (Some(user), Some(pass)) = (w.next(), w.next()) else {
        return fail(at, "expected a user name and a password");
    };
    if pass == DUMP_PLACEHOLDER {
        return fail(
            at,
            format!("`tgt-admin --dump` does not show passwords: replace {DUMP_PLACEHOLDER} of user {user:?} with the real one"),
        );
    }
    Ok(AuthDoc {
        userid: user.to_string(),
        password: Some(pass.to_string()),
        ..AuthDoc::default()
    })
}

fn mutual(mut a: AuthDoc, m: AuthDoc) -> AuthDoc {
    a.mutual_userid = Some(m.userid);
    a.mutual_password = m.password;
    a
}

pub fn import(file: &str, text: &str) -> Result<Imported, ImportError> {
    let items = parse(Path::new(file), text, 0)?;
    let mut out = Imported::default();
    let mut default_driver = "iscsi".to_string();
    // Targets by name, sorted (as tgt-admin walks them); duplicate blocks
    // merged (-MergeDuplicateBlocks).
    let mut targets: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    let mut disc: Option<(String, String)> = None;
    let mut disc_out: Option<(String, String)> = None;
    for it in items {
        match (it.key.as_str(), &it.children) {
            ("target", Some(c)) => {
                if it.value.is_empty() {
                    return fail(it.at, "<target> without a name");
                }
                targets
                    .entry(it.value.clone())
                    .or_default()
                    .extend(c.iter().cloned());
            }
            ("default-driver", None) => default_driver = it.value.clone(),
            ("ignore-errors" | "control-port", None) => {}
            ("incomingdiscoveryuser", None) => disc = Some((it.value, it.at)),
            ("outgoingdiscoveryuser", None) => disc_out = Some((it.value, it.at)),
            (k, _) => out.note(
                &it.at,
                format!("{k} is not carried over: rtgt has no such setting"),
            ),
        }
    }
    match (disc, disc_out) {
        (Some((v, at)), o) => {
            let mut a = account(&v, &at)?;
            if let Some((ov, oat)) = o {
                a = mutual(a, account(&ov, &oat)?);
            }
            out.doc.iscsi.discovery_auth = Some(a);
        }
        (None, Some((_, at))) => out.note(
            at,
            "outgoingdiscoveryuser without incomingdiscoveryuser: rtgt has no mutual-only CHAP; left out",
        ),
        (None, None) => {}
    }
    let mut serials = HashSet::new();
    let mut max_tid = 0u64;
    for (iqn, children) in &targets {
        let mut opts: Opts = Vec::new();
        let mut stores = Vec::new();
        let first = children
            .first()
            .map(|c| c.at.clone())
            .unwrap_or_else(|| file.to_string());
        for c in children {
            let direct = c.key == "direct-store";
            match (&c.children, c.key.as_str()) {
                (Some(inner), "backing-store" | "direct-store") => {
                    let so: Opts = inner
                        .iter()
                        .map(|x| (x.key.clone(), x.value.clone(), x.at.clone()))
                        .collect();
                    let lun = match get(&so, "lun") {
                        Some((_, v, at)) => Some(
                            v.parse::<u64>()
                                .or_else(|_| fail(at, format!("lun {v:?} is not a number")))?,
                        ),
                        None => None,
                    };
                    stores.push(Store {
                        path: c.value.clone(),
                        at: c.at.clone(),
                        lun,
                        opts: so,
                        direct,
                    });
                }
                (None, "backing-store" | "direct-store") => stores.push(Store {
                    path: c.value.clone(),
                    at: c.at.clone(),
                    lun: None,
                    opts: Vec::new(),
                    direct,
                }),
                (Some(_), k) => out.note(
                    &c.at,
                    format!("<{k}> is not carried over: tgt-admin knows no such block"),
                ),
                (None, _) => opts.push((c.key.clone(), c.value.clone(), c.at.clone())),
            }
        }
        let tid = match get(&opts, "controller_tid") {
            Some((_, v, at)) => v
                .parse::<u64>()
                .or_else(|_| fail(at, format!("controller_tid {v:?} is not a number")))?,
            None => max_tid + 1,
        };
        max_tid = max_tid.max(tid);
        let driver = get(&opts, "driver").map_or(default_driver.as_str(), |(_, v, _)| v.as_str());
        if driver != "iscsi" {
            out.note(
                &first,
                format!(
                    "target {iqn:?} (driver {driver}): rtgt serves iSCSI over TCP only; left out"
                ),
            );
            continue;
        }
        let mut initiators = Vec::new();
        let mut incoming = Vec::new();
        let mut outgoing = None;
        let mut restricted = false;
        for (k, v, at) in &opts {
            match k.as_str() {
                "initiator-name" => initiators.push(v.clone()),
                "initiator-address" => {
                    if !v.eq_ignore_ascii_case("ALL") {
                        restricted = true;
                        out.note(at, format!("initiator-address {v}: rtgt has no address ACLs; the target is open only to its initiator-name ACLs"));
                    }
                }
                "incominguser" => incoming.push((account(v, at)?, at.clone())),
                "outgoinguser" => {
                    if outgoing.is_none() {
                        outgoing = Some(account(v, at)?);
                    }
                }
                "driver" | "controller_tid" => {}
                k if LU_KEYS.contains(&k) => {}
                other => out.note(at, format!("{other} is not carried over: rtgt negotiates the iSCSI keys itself and has no such setting")),
            }
        }
        let auth = match incoming.as_slice() {
            [] => None,
            [(a, _), rest @ ..] => {
                for (_, at) in rest {
                    out.note(at, "a second incominguser: rtgt takes one CHAP user per portal group; only the first can log in");
                }
                Some(match &outgoing {
                    Some(m) => mutual(a.clone(), m.clone()),
                    None => a.clone(),
                })
            }
        };
        if auth.is_none() && outgoing.is_some() {
            out.note(
                &first,
                "outgoinguser without incominguser: rtgt has no mutual-only CHAP; left out",
            );
        }
        out.note(
            &first,
            format!("target {iqn}: tid {tid} assumed (tgt-admin numbers targets in the sorted order of their names on a fresh tgtd); the default serials and designators depend on it: compare `tgtadm --mode target --op show`"),
        );
        out.note(
            &first,
            format!("target {iqn}: LUN 0, tgt's controller LU (type 0Ch), is not carried over: rtgt answers REPORT LUNS and INQUIRY on LUN 0 itself"),
        );
        // Unique paths in sorted order (tgt-admin's hash keys); LUNs from
        // 1 around the numbers given with `lun`.
        stores.sort_by(|a, b| a.path.cmp(&b.path));
        stores.dedup_by(|a, b| a.path == b.path);
        let mut taken: BTreeSet<u64> = stores.iter().filter_map(|s| s.lun).collect();
        let target_lun = match get(&opts, "lun") {
            Some((_, v, at)) if stores.len() == 1 => Some(
                v.parse::<u64>()
                    .or_else(|_| fail(at, format!("lun {v:?} is not a number")))?,
            ),
            _ => None,
        };
        let mut luns = Vec::new();
        for s in &stores {
            let at = s.at.as_str();
            // A store's own options win over the target's.
            let opt = |k: &str| {
                get(&s.opts, k)
                    .or_else(|| get(&opts, k))
                    .map(|(_, v, at)| (v.clone(), at.clone()))
            };
            for (k, _, kat) in &s.opts {
                if !LU_KEYS.contains(&k.as_str()) {
                    out.note(
                        kat,
                        format!("{k} is not carried over: not a backing-store option"),
                    );
                }
            }
            if let Some((dt, dat)) = opt("device-type").filter(|(d, _)| d != "disk") {
                out.note(
                    dat,
                    format!(
                        "device-type {dt} of {}: rtgt serves disks only; left out",
                        s.path
                    ),
                );
                continue;
            }
            if let Some((bs, bat)) =
                opt("bs-type").filter(|(b, _)| !matches!(b.as_str(), "rdwr" | "aio" | "rbd"))
            {
                out.note(
                    bat,
                    format!("bs-type {bs} of {}: not in rtgt; left out", s.path),
                );
                continue;
            }
            if s.path.starts_with("NONE:") {
                out.note(
                    at,
                    format!(
                        "{}: a LUN without backing storage is not in rtgt; left out",
                        s.path
                    ),
                );
                continue;
            }
            if s.direct {
                out.note(at, format!("direct-store {}: SCSI pass-through is not in rtgt; imported as a blockio LU (the device's own INQUIRY data is not passed through)", s.path));
            }
            let lun = match s.lun.or(target_lun) {
                Some(l) => l,
                None => (1..).find(|n| !taken.contains(n)).unwrap_or(1),
            };
            taken.insert(lun);
            let rbd = opt("bs-type").is_some_and(|(b, _)| b == "rbd");
            let kind = if rbd {
                BackstoreKind::Rbd
            } else if s.direct || is_block_device(&s.path) {
                BackstoreKind::Blockio
            } else {
                BackstoreKind::Fileio
            };
            // bs_rbd: backing-store POOL/IMAGE (a bare IMAGE is in pool rbd).
            let rbd_image = match s.path.rsplit_once('/') {
                _ if !rbd => None,
                _ if s.path.contains('@') => {
                    out.note(
                        at,
                        format!(
                            "{}: an RBD snapshot (read-only) is not served by rtgt; left out",
                            s.path
                        ),
                    );
                    continue;
                }
                Some((pool, image))
                    if !pool.is_empty() && !image.is_empty() && !pool.contains('/') =>
                {
                    Some((pool.to_string(), image.to_string()))
                }
                None if !s.path.is_empty() => Some(("rbd".to_string(), s.path.clone())),
                _ => {
                    out.note(
                        at,
                        format!("{}: not an RBD image as POOL/IMAGE; left out", s.path),
                    );
                    continue;
                }
            };
            if !rbd && std::fs::metadata(&s.path).is_err() {
                out.note(
                    at,
                    format!(
                        "{} does not exist here: taken for a {} by its path",
                        s.path,
                        if kind == BackstoreKind::Blockio {
                            "block device"
                        } else {
                            "file"
                        }
                    ),
                );
            }
            let name = backstore_name(&mut out, at, &format!("tid{tid}-lun{lun}"));
            let mut b = BackstoreDoc::new(&name, kind);
            if let Some((pool, image)) = rbd_image {
                b.pool = Some(pool);
                b.image = Some(image);
            } else {
                b.path = Some(s.path.clone().into());
            }
            let flag =
                |k: &str| opt(k).is_some_and(|(v, _)| matches!(v.as_str(), "1" | "on" | "yes"));
            b.read_only = flag("readonly");
            b.removable = flag("removable");
            if kind == BackstoreKind::Fileio {
                b.write_back = Some(opt("write-cache").is_none_or(|(v, _)| v != "off"));
            }
            // tgt offers UNMAP only with thin_provisioning=1; rtgt by default.
            let mut thin = false;
            if let Some((p, pat)) = opt("params") {
                for kv in p.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                    match kv.split_once('=') {
                        Some(("thin_provisioning", v)) => thin = v.trim() == "1",
                        _ => out.note(
                            &pat,
                            format!("params {kv} is not carried over: rtgt has no such setting"),
                        ),
                    }
                }
            }
            b.thin = Some(thin);
            let mut bs = 512;
            if let Some((v, bat)) = opt("block-size") {
                match (kind, v.as_str()) {
                    (BackstoreKind::Fileio, "512" | "4096") => {
                        bs = if v == "4096" { 4096 } else { 512 };
                        b.block_size = (bs != 512).then_some(bs);
                    }
                    _ => out.note(bat, format!("block-size {v} is not carried over: rtgt serves 512 or 4096 byte blocks on files, the device's own on block devices")),
                }
            }
            if let Some((v, lat)) = opt("lbppbe") {
                match v.parse::<u32>() {
                    Ok(0) => {}
                    Ok(n) if n < 8 => b.physical_block_size = Some(bs << n),
                    _ => out.note(
                        lat,
                        format!("lbppbe {v} is not carried over: not a usable exponent"),
                    ),
                }
            }
            for k in LU_NOT_CARRIED.iter().filter(|k| !(rbd && **k == "bsopts")) {
                if let Some((v, kat)) = opt(k) {
                    out.note(
                        kat,
                        format!("{k} {v} is not carried over: rtgt has no such setting"),
                    );
                }
            }
            // bs_rbd's options: conf=FILE;id=CLIENT (tgt's own separator).
            if let Some((v, oat)) = opt("bsopts").filter(|_| rbd) {
                for kv in v.split(';').map(str::trim).filter(|x| !x.is_empty()) {
                    match kv.split_once('=') {
                        Some(("conf", f)) => b.ceph_conf = Some(f.into()),
                        Some(("id", c)) => b.client = Some(c.trim_start_matches("client.").into()),
                        _ => out.note(
                            &oat,
                            format!(
                                "bsopts {kv} is not carried over: rtgt's rbd takes conf and id"
                            ),
                        ),
                    }
                }
            }
            if let Some((v, fat)) = opt("bsoflags") {
                if kind == BackstoreKind::Fileio && v.split(':').any(|f| f == "sync") {
                    b.write_back = Some(false);
                } else {
                    out.note(fat, format!("bsoflags {v} is not carried over: rtgt opens its files its own way (block devices with O_DIRECT)"));
                }
            }
            // tgt's identity, so hosts see the same disk.
            b.vendor = Some(opt("vendor_id").map_or_else(|| "IET".into(), |(v, _)| v));
            b.product = Some(opt("product_id").map_or_else(|| "VIRTUAL-DISK".into(), |(v, _)| v));
            b.revision = Some(opt("product_rev").map_or_else(|| "0001".into(), |(v, _)| v));
            let mut serial = opt("scsi_sn").map_or_else(|| format!("beaf{tid}{lun}"), |(v, _)| v);
            serial = serial
                .chars()
                .take(36)
                .collect::<String>()
                .trim()
                .to_string();
            if !serials.insert(serial.clone()) {
                // A target-wide scsi_sn gave every LUN the same serial:
                // hosts took them for paths to one disk.
                let own = format!("{serial}-{lun}");
                out.note(at, format!("LU {}: serial {serial:?} is also another LU's (tgt reported both with it); it gets {own:?}", s.path));
                serial = own;
            }
            b.serial = Some(serial);
            let scsi_id: String = opt("scsi_id")
                .map_or_else(|| format!("IET     {tid:04x}{lun:04x}"), |(v, _)| v)
                .chars()
                .take(36)
                .collect();
            let naa = naa6_from_scsi_id(&scsi_id);
            out.note(
                at,
                format!(
                    "LU {} (LUN {lun}): VPD 83h keeps tgt's NAA 6 {naa} (WWID 3{naa}, what udev and multipath use); \
                     tgt's other designators, T10 vendor ID {scsi_id:?} and NAA 3 {:016x}, are not reported by rtgt \
                     (VPD 80h also loses tgt's leading spaces, which hosts trim)",
                    s.path,
                    (3u64 << 60) | ((tid & 0x0fff_ffff) << 32) | (lun & 0xffff_ffff),
                ),
            );
            b.naa = Some(naa);
            super::fit_identity(&mut out, at, &mut b);
            luns.push(LunDoc {
                lun,
                backstore: name,
                read_only: false,
            });
            out.doc.backstore.push(b);
        }
        let acls: Vec<AclDoc> = initiators
            .iter()
            .map(|i| AclDoc {
                initiator: i.clone(),
                auth: None,
                mapped_lun: luns
                    .iter()
                    .map(|l| MappedLunDoc {
                        mapped_lun: l.lun,
                        tpg_lun: l.lun,
                        read_only: false,
                    })
                    .collect(),
            })
            .collect();
        let mode = if acls.is_empty() && !restricted {
            TpgMode::Demo
        } else {
            TpgMode::Acl
        };
        out.doc.target.push(TargetDoc {
            iqn: iqn.clone(),
            alias: None,
            tpg: vec![TpgDoc {
                tag: 1,
                portals: vec!["0.0.0.0:3260".into()],
                mode,
                demo_read_only: false,
                relative_port_id: None,
                auth,
                lun: luns,
                acl: acls,
                ..TpgDoc::new(1, TpgMode::Demo)
            }],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclosed_and_unknown_are_located() {
        let e = import(
            "t.conf",
            "<target iqn.2001-04.com.example:a>\n  backing-store /x\n",
        )
        .unwrap_err();
        assert!(e.at.starts_with("t.conf:1"), "{e}");
        let e = import(
            "t.conf",
            "<target iqn.2001-04.com.example:a>\n</backing-store>\n",
        )
        .unwrap_err();
        assert_eq!(e.at, "t.conf:2");
    }

    #[test]
    fn an_rbd_lun_of_tgt_becomes_an_rbd_backstore_with_its_identity() {
        let conf = "<target iqn.2026-12.com.example:ceph>\n\
            <backing-store rbd/vm1>\n bs-type rbd\n bsopts \"conf=/etc/ceph/site.conf;id=client.iscsi\"\n scsi_sn vm1serial\n</backing-store>\n\
            <backing-store vm2>\n bs-type rbd\n</backing-store>\n\
            <backing-store rbd/vm3@snap1>\n bs-type rbd\n</backing-store>\n\
            </target>\n";
        let out = import("targets.conf", conf).unwrap();
        let d = &out.doc;
        let rbds: Vec<_> = d
            .backstore
            .iter()
            .filter(|b| b.kind == BackstoreKind::Rbd)
            .collect();
        assert_eq!(rbds.len(), 2, "{:?}", d.backstore);
        let b = rbds
            .iter()
            .find(|b| b.image.as_deref() == Some("vm1"))
            .unwrap();
        assert_eq!(b.pool.as_deref(), Some("rbd"));
        assert_eq!(
            b.ceph_conf.as_deref(),
            Some(std::path::Path::new("/etc/ceph/site.conf"))
        );
        assert_eq!(b.client.as_deref(), Some("iscsi"));
        assert_eq!(b.serial.as_deref(), Some("vm1serial"));
        assert!(b.path.is_none());
        let b2 = rbds
            .iter()
            .find(|b| b.image.as_deref() == Some("vm2"))
            .unwrap();
        assert_eq!(b2.pool.as_deref(), Some("rbd"));
        // The snapshot is left out, and said so.
        let notes = out
            .notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            notes.contains("vm3@snap1") && notes.contains("snapshot"),
            "{notes}"
        );
        assert!(!notes.contains("bsopts"), "{notes}");
        d.check().expect("the imported document is valid");
    }

    #[test]
    fn naa6_as_tgt_makes_it() {
        // tid 1, LUN 1: "IET     00010001", 'E' a hex digit, the rest of
        // "IET" and the spaces 0: the WWID 360000000000000000e00000000010001
        // that tgt's LUs have on Linux hosts.
        assert_eq!(
            naa6_from_scsi_id("IET     00010001"),
            "60000000000000000e00000000010001"
        );
        assert_eq!(
            naa6_from_scsi_id("IET     0002000a"),
            "60000000000000000e0000000002000a"
        );
        assert_eq!(
            naa6_from_scsi_id("ffffffffffffffffffffffffffffffff12"),
            "6fffffffffffffffffffffffffffff12"
        );
    }

    #[test]
    fn tids_and_luns_as_tgt_admin_assigns_them() {
        let mut out = import(
            "t.conf",
            "<target iqn.2001-04.com.example:b>\n  backing-store /nonexistent/z.img\n  backing-store /nonexistent/a.img\n</target>\n\
             <target iqn.2001-04.com.example:a>\n  <backing-store /nonexistent/y.img>\n    lun 1\n  </backing-store>\n  backing-store /nonexistent/x.img # a comment\n</target>\n",
        )
        .unwrap();
        out.doc.canonicalize();
        let luns = |iqn: &str| -> Vec<(u64, String, String)> {
            let t = out.doc.target.iter().find(|t| t.iqn == iqn).unwrap();
            t.tpg[0]
                .lun
                .iter()
                .map(|l| {
                    let b = out
                        .doc
                        .backstore
                        .iter()
                        .find(|b| b.name == l.backstore)
                        .unwrap();
                    (
                        l.lun,
                        b.path.clone().unwrap().display().to_string(),
                        b.serial.clone().unwrap(),
                    )
                })
                .collect()
        };
        // a sorts first: tid 1; y.img keeps its lun 1, x.img gets 2.
        assert_eq!(
            luns("iqn.2001-04.com.example:a"),
            [
                (1, "/nonexistent/y.img".into(), "beaf11".into()),
                (2, "/nonexistent/x.img".into(), "beaf12".into())
            ]
        );
        assert_eq!(
            luns("iqn.2001-04.com.example:b"),
            [
                (1, "/nonexistent/a.img".into(), "beaf21".into()),
                (2, "/nonexistent/z.img".into(), "beaf22".into())
            ]
        );
    }

    #[test]
    fn dump_placeholders_and_discovery() {
        let e = import("t.conf", "<target iqn.2001-04.com.example:a>\n incominguser joe PLEASE_CORRECT_THE_PASSWORD\n</target>\n").unwrap_err();
        assert_eq!(e.at, "t.conf:2");
        let out = import(
            "t.conf",
            "incomingdiscoveryuser disc disc-secret-01\noutgoingdiscoveryuser tgt tgt-secret-002\n",
        )
        .unwrap();
        let a = out.doc.iscsi.discovery_auth.unwrap();
        assert_eq!(
            (a.userid.as_str(), a.mutual_userid.as_deref()),
            ("disc", Some("tgt"))
        );
    }

    #[test]
    fn includes_comments_and_quotes() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(
            dir.join("conf.d/a.conf"),
            "<target iqn.2001-04.com.example:inc>\n backing-store /nonexistent/i.img\n</target>\n",
        )
        .unwrap();
        let main = dir.join("targets.conf");
        std::fs::write(&main, "include conf.d/*.conf\n").unwrap();
        let out = import(main.to_str().unwrap(), "include conf.d/*.conf\n").unwrap();
        assert_eq!(out.doc.target[0].iqn, "iqn.2001-04.com.example:inc");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(strip_comment("a b # c"), "a b");
        assert_eq!(strip_comment("a b\\#c"), "a b#c");
        assert_eq!(split_kv("key = \"v w\""), ("key".into(), "v w".into()));
        assert!(wildcard("*.conf", "a.conf") && !wildcard("*.conf", "a.conf~"));
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rtgt-tgt-import-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
