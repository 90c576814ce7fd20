//! SCST, as scstadmin writes `/etc/scst.conf`: `HANDLER vdisk_fileio|
//! vdisk_blockio { DEVICE name { filename …; usn …; … } }` and `TARGET_DRIVER
//! iscsi { TARGET IQN { LUN n device; IncomingUser "u p"; GROUP g { LUN …;
//! INITIATOR name } } }`.

use super::{backstore_name, fail, ImportError, Imported};
use crate::config::{
    AclDoc, AuthDoc, BackstoreDoc, BackstoreKind, LunDoc, MappedLunDoc, TargetDoc, TpgDoc, TpgMode,
};

/// A block (`WORD NAME {`) or an attribute (`key value…`), with its line.
#[derive(Debug, Default)]
struct Node {
    key: String,
    args: Vec<String>,
    line: usize,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, k: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.key == k && c.children.is_empty())
            .and_then(|c| c.args.first().map(String::as_str))
    }
    fn all<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.key == k)
    }
}

/// Words of a line: quoted strings are one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A line without its comment: '#' outside double quotes (a secret may
/// hold one).
fn strip_comment(raw: &str) -> &str {
    let mut quoted = false;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &raw[..i],
            _ => {}
        }
    }
    raw
}

/// CRC32C (Castagnoli) as the kernel's crc32c(): the register starts at
/// `seed` and is not inverted at the end.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// SCST's device ID number (vdisk_gen_dev_id_num in scst_vdisk.c): the
/// setup_id in the high 32 bits, the CRC32C of the device name and its
/// terminating NUL in the low. The default usn is its hex, the default
/// t10_dev_id "%llx-NAME" of it.
pub fn dev_id_num(setup_id: u32, name: &str) -> u64 {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    ((setup_id as u64) << 32) | crc32c(0, &b) as u64
}

fn parse(file: &str, text: &str) -> Result<Node, ImportError> {
    let mut stack = vec![Node::default()];
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            if stack.len() < 2 {
                return fail(format!("{file}:{n}"), "'}' without a block to close");
            }
            let done = stack.pop().unwrap_or_default();
            if let Some(top) = stack.last_mut() {
                top.children.push(done);
            }
            continue;
        }
        let opens = line.ends_with('{');
        let mut w = words(line.trim_end_matches('{'));
        if w.is_empty() {
            return fail(format!("{file}:{n}"), "a block needs a name");
        }
        let key = w.remove(0);
        let node = Node {
            key,
            args: w,
            line: n,
            children: Vec::new(),
        };
        if opens {
            stack.push(node);
        } else if let Some(top) = stack.last_mut() {
            top.children.push(node);
        }
    }
    if stack.len() != 1 {
        let open = stack.last().map_or(0, |b| b.line);
        return fail(format!("{file}:{open}"), "this block is not closed");
    }
    Ok(stack.pop().unwrap_or_default())
}

fn credential(file: &str, n: &Node) -> Result<(String, String), ImportError> {
    // IncomingUser "name secret" (one quoted word) or two words.
    let joined = n.args.join(" ");
    let mut w = joined.split_whitespace();
    match (w.next(), w.next()) {
        (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
        _ => fail(
            format!("{file}:{}", n.line),
            "expected a user name and a password",
        ),
    }
}

pub fn import(file: &str, text: &str) -> Result<Imported, ImportError> {
    let root = parse(file, text)?;
    let at = |n: usize| format!("{file}:{n}");
    let mut out = Imported::default();
    let mut devices = std::collections::HashMap::new();
    // setup_id goes into every default serial and designator.
    let mut setup_id = 0u32;
    if let Some(v) = root.attr("setup_id") {
        let (digits, radix) = match v.strip_prefix("0x") {
            Some(h) => (h, 16),
            None => (v, 10),
        };
        setup_id = u32::from_str_radix(digits, radix).or_else(|_| {
            let line = root.all("setup_id").next().map_or(0, |n| n.line);
            fail(at(line), format!("setup_id {v:?} is not a number"))
        })?;
    }
    for h in root.all("HANDLER") {
        let handler = h.args.first().map(String::as_str).unwrap_or("");
        let (kind, vendor) = match handler {
            "vdisk_fileio" => (BackstoreKind::Fileio, "SCST_FIO"),
            "vdisk_blockio" => (BackstoreKind::Blockio, "SCST_BIO"),
            other => {
                for d in h.all("DEVICE") {
                    out.note(
                        at(d.line),
                        format!(
                            "device {:?} of handler {other}: not in rtgt; its LUNs are left out",
                            d.args.join(" ")
                        ),
                    );
                }
                continue;
            }
        };
        for d in h.all("DEVICE") {
            let Some(dev) = d.args.first() else {
                return fail(at(d.line), "DEVICE needs a name");
            };
            let name = backstore_name(&mut out, &at(d.line), dev);
            let mut b = BackstoreDoc::new(&name, kind);
            const KNOWN: &[&str] = &[
                "filename",
                "write_through",
                "blocksize",
                "read_only",
                "t10_vend_id",
                "prod_id",
                "prod_rev_lvl",
                "usn",
                "t10_dev_id",
                "naa_id",
                "eui64_id",
                "thin_provisioned",
                "nv_cache",
                "removable",
                "size",
                "size_mb",
                "o_direct",
                "threads_num",
                "threads_pool_type",
                "active",
                "async",
            ];
            for n in d
                .children
                .iter()
                .filter(|n| !KNOWN.contains(&n.key.as_str()))
            {
                out.note(
                    at(n.line),
                    format!(
                        "device {dev:?}: {} {} is not carried over: rtgt has no such setting",
                        n.key,
                        n.args.join(" ")
                    ),
                );
            }
            let Some(path) = d.attr("filename") else {
                return fail(at(d.line), format!("device {dev:?} has no filename"));
            };
            b.path = Some(path.into());
            if kind == BackstoreKind::Fileio {
                b.write_back = Some(d.attr("write_through") != Some("1"));
                if let Some(bs) = d.attr("blocksize") {
                    b.block_size = bs.parse().ok();
                }
            }
            b.read_only = d.attr("read_only") == Some("1");
            b.vendor = Some(d.attr("t10_vend_id").unwrap_or(vendor).to_string());
            b.product = Some(
                d.attr("prod_id")
                    .map(str::to_string)
                    .unwrap_or_else(|| dev.chars().take(16).collect()),
            );
            match d.attr("prod_rev_lvl") {
                Some(r) => b.revision = Some(r.to_string()),
                None => {
                    b.revision = Some("3110".into());
                    out.note(at(d.line), format!("device {dev:?}: revision \"3110\" assumed (SCST's default, which changes with its version): set revision if hosts saw another"));
                }
            }
            let id = dev_id_num(setup_id, dev);
            match d.attr("usn") {
                Some(s) => b.serial = Some(s.to_string()),
                None => {
                    b.serial = Some(format!("{id:x}"));
                    out.note(at(d.line), format!("device {dev:?} has no usn in the file: serial {id:x} derived from its name and setup_id as SCST 3.x does (older SCST hashed otherwise): compare /sys/kernel/scst_tgt/devices/{dev}/usn"));
                }
            }
            // VPD 83h: SCST sends a T10 vendor ID designator, then eui64_id
            // and naa_id if set, else the first 8 bytes of t10_dev_id as an
            // EUI-64 (its "compatibility mode").
            let t10: String = d
                .attr("t10_dev_id")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{id:x}-{dev}"))
                .chars()
                .take(25)
                .collect();
            match d.attr("naa_id") {
                Some(n) => {
                    b.naa = Some(n.trim_start_matches("0x").to_string());
                    if let Some(e) = d.attr("eui64_id") {
                        out.note(at(d.line), format!("device {dev:?}: SCST's EUI-64 designator {e} is not reported by rtgt (the NAA, which multipath prefers, is kept)"));
                    }
                }
                None => {
                    let eui = match d.attr("eui64_id") {
                        Some(e) => e.trim_start_matches("0x").to_string(),
                        None => t10
                            .bytes()
                            .chain(std::iter::repeat(0))
                            .take(8)
                            .map(|c| format!("{c:02x}"))
                            .collect(),
                    };
                    out.note(at(d.line), format!("device {dev:?}: multipath WWID will change: SCST reported an EUI-64 designator {eui} (WWID 2{eui}{}) and no NAA; rtgt reports only an NAA designator (set naa_id in SCST before the move, or accept a new WWID)", if d.attr("eui64_id").is_none() { ", the first 8 bytes of t10_dev_id" } else { "" }));
                }
            }
            out.note(at(d.line), format!("device {dev:?}: SCST's T10 vendor ID designator ({:?} + t10_dev_id {t10:?}) is not reported by rtgt", b.vendor.clone().unwrap_or_default()));
            // SCST offers UNMAP only with thin_provisioned 1; rtgt by default.
            b.thin = Some(d.attr("thin_provisioned") == Some("1"));
            if d.attr("nv_cache") == Some("1") {
                out.note(at(d.line), format!("device {dev:?}: nv_cache 1 made SCST ignore SYNCHRONIZE CACHE and FUA; rtgt makes them durable"));
            }
            if d.attr("removable") == Some("1") {
                b.removable = true;
            }
            super::fit_identity(&mut out, &at(d.line), &mut b);
            devices.insert(dev.clone(), name);
            out.doc.backstore.push(b);
        }
    }
    for drv in root.all("TARGET_DRIVER") {
        let driver = drv.args.first().map(String::as_str).unwrap_or("");
        if driver == "copy_manager" {
            out.note(
                at(drv.line),
                "target driver copy_manager is not carried over: rtgt's EXTENDED COPY is built in and works between the LUs an initiator has mapped",
            );
            continue;
        }
        if driver != "iscsi" {
            out.note(
                at(drv.line),
                format!("target driver {driver}: rtgt serves iSCSI only"),
            );
            continue;
        }
        // The driver's own attributes: IncomingUser / OutgoingUser are
        // discovery CHAP.
        let mut disc: Option<AuthDoc> = None;
        for n in drv.children.iter().filter(|n| n.children.is_empty()) {
            match n.key.as_str() {
                "enabled" | "TARGET" => {}
                "IncomingUser" => {
                    if disc.is_some() {
                        out.note(at(n.line), "a second discovery IncomingUser: rtgt takes one discovery credential; only the first can discover");
                        continue;
                    }
                    let (u, p) = credential(file, n)?;
                    disc = Some(AuthDoc {
                        userid: u,
                        password: Some(p),
                        ..AuthDoc::default()
                    });
                }
                "OutgoingUser" => {}
                k => out.note(
                    at(n.line),
                    format!(
                        "iscsi driver attribute {k} is not carried over: rtgt has no such setting"
                    ),
                ),
            }
        }
        if let Some(mut a) = disc {
            if let Some(o) = drv.all("OutgoingUser").find(|n| n.children.is_empty()) {
                let (u, p) = credential(file, o)?;
                a.mutual_userid = Some(u);
                a.mutual_password = Some(p);
            }
            out.doc.iscsi.discovery_auth = Some(a);
        } else if let Some(o) = drv.all("OutgoingUser").next() {
            out.note(at(o.line), "discovery OutgoingUser without IncomingUser: rtgt has no mutual-only CHAP; left out");
        }
        for t in drv.all("TARGET") {
            let Some(iqn) = t.args.first() else {
                return fail(at(t.line), "TARGET needs a name");
            };
            if t.attr("enabled") == Some("0") {
                out.note(at(t.line), format!("target {iqn:?} is disabled in SCST (enabled 0): left out, so that it stays closed"));
                continue;
            }
            for n in t.children.iter().filter(|n| n.children.is_empty()) {
                let k = n.key.as_str();
                if matches!(
                    k,
                    "enabled" | "rel_tgt_id" | "OutgoingUser" | "LUN" | "GROUP" | "allowed_portal"
                ) || k.starts_with("IncomingUser")
                {
                    continue;
                }
                out.note(
                    at(n.line),
                    format!("target attribute {k} {} is not carried over: rtgt negotiates the iSCSI keys itself and has no such setting", n.args.join(" ")),
                );
            }
            let mut t2 = target(&mut out, file, t, iqn, &devices)?;
            // allowed_portal: the portals the target is offered on.
            let mut portals = Vec::new();
            for p in t.all("allowed_portal") {
                let v = p.args.first().map(String::as_str).unwrap_or("");
                if v.parse::<std::net::IpAddr>().is_ok() {
                    portals.push(if v.contains(':') {
                        format!("[{v}]:3260")
                    } else {
                        format!("{v}:3260")
                    });
                } else {
                    // A pattern: keep the target off every address rather
                    // than offer it on all.
                    out.note(at(p.line), format!("allowed_portal {v:?}: rtgt portals are addresses, not patterns; the target gets none (add its portals)"));
                    portals.clear();
                    portals.push(String::new());
                    break;
                }
            }
            if !portals.is_empty() {
                portals.retain(|p| !p.is_empty());
                t2.tpg[0].portals = portals;
            }
            out.doc.target.push(t2);
        }
    }
    Ok(out)
}

fn target(
    out: &mut Imported,
    file: &str,
    t: &Node,
    iqn: &str,
    devices: &std::collections::HashMap<String, String>,
) -> Result<TargetDoc, ImportError> {
    let at = |n: usize| format!("{file}:{n}");
    let lun_of = |n: &Node| -> Result<(u64, String, bool), ImportError> {
        match n.args.as_slice() {
            [num, dev, ..] => Ok((
                num.parse()
                    .or_else(|_| fail(at(n.line), format!("LUN {num:?} is not a number")))?,
                dev.clone(),
                n.attr("read_only") == Some("1"),
            )),
            _ => fail(at(n.line), "LUN needs a number and a device"),
        }
    };
    let mut luns: Vec<LunDoc> = Vec::new();
    let mut add = |out: &mut Imported, dev: &str, line: usize, want: Option<u64>| -> Option<u64> {
        let Some(bs) = devices.get(dev) else {
            out.note(
                at(line),
                format!("LUN of device {dev:?}: that device was not carried over"),
            );
            return None;
        };
        if let Some(l) = luns.iter().find(|l| &l.backstore == bs) {
            return Some(l.lun);
        }
        let used: Vec<u64> = luns.iter().map(|l| l.lun).collect();
        let n = want
            .filter(|w| !used.contains(w))
            .unwrap_or_else(|| (0..).find(|n| !used.contains(n)).unwrap_or(0));
        luns.push(LunDoc {
            lun: n,
            backstore: bs.clone(),
            read_only: false,
        });
        Some(n)
    };
    let mut defaults = Vec::new();
    for l in t.all("LUN") {
        let (n, dev, ro) = lun_of(l)?;
        if let Some(tl) = add(out, &dev, l.line, Some(n)) {
            defaults.push((n, tl, ro));
        }
    }
    let mut acls = Vec::new();
    for g in t.all("GROUP") {
        let mut mapped = Vec::new();
        for l in g.all("LUN") {
            let (n, dev, ro) = lun_of(l)?;
            if let Some(tl) = add(out, &dev, l.line, None) {
                mapped.push(MappedLunDoc {
                    mapped_lun: n,
                    tpg_lun: tl,
                    read_only: ro,
                });
            }
        }
        for i in g.all("INITIATOR") {
            let Some(name) = i.args.first() else { continue };
            if name.contains('*') || name.contains('?') {
                out.note(
                    at(i.line),
                    format!("initiator pattern {name:?}: rtgt ACLs name one initiator; left out"),
                );
                continue;
            }
            acls.push(AclDoc {
                initiator: name.clone(),
                auth: None,
                mapped_lun: mapped.clone(),
            });
        }
    }
    let incoming: Vec<&Node> = t.all("IncomingUser").collect();
    let auth = match incoming.first() {
        None => None,
        Some(first) => {
            for n in &incoming[1..] {
                out.note(at(n.line), "a second IncomingUser: rtgt takes one CHAP user per portal group; only the first can log in");
            }
            let (u, p) = credential(file, first)?;
            let mutual = t
                .all("OutgoingUser")
                .next()
                .map(|n| credential(file, n))
                .transpose()?;
            Some(AuthDoc {
                userid: u,
                password: Some(p),
                mutual_userid: mutual.as_ref().map(|m| m.0.clone()),
                mutual_password: mutual.map(|m| m.1),
                ..AuthDoc::default()
            })
        }
    };
    // Demo mode would show every LUN of the group to everyone: only when
    // the target's own LUNs are all there is.
    let group_only = luns.len() > defaults.len();
    // With no default LUNs the target showed nothing to initiators outside
    // its groups: demo mode would show them the groups' devices.
    let mode = if !defaults.is_empty() && !group_only {
        TpgMode::Demo
    } else {
        if !defaults.is_empty() {
            out.note(at(t.line), format!("target {iqn:?}: its default LUNs were open to initiators outside every GROUP, but its groups add other devices: imported in acl mode, so those other initiators need an ACL now"));
        }
        TpgMode::Acl
    };
    if mode == TpgMode::Demo && defaults.iter().any(|d| d.2) {
        out.note(at(t.line), "read_only on a default LUN: rtgt makes the whole demo group read-only only with demo_read_only; the LUN is read-only for every initiator");
    }
    for l in &mut luns {
        if defaults.iter().any(|d| d.1 == l.lun && d.2) {
            l.read_only = true;
        }
    }
    // SCST's rel_tgt_id is the relative target port identifier hosts see
    // in VPD 83h; it is kept as relative_port_id. One that is not a port
    // number is named, and rtgt then assigns its own.
    let relative_port_id = match t.attr("rel_tgt_id") {
        None => None,
        Some(r) => match r.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                out.note(
                    at(t.line),
                    format!("rel_tgt_id {r:?} is not a port number 1-65535: rtgt assigns the relative port id"),
                );
                None
            }
        },
    };
    Ok(TargetDoc {
        iqn: iqn.to_string(),
        alias: None,
        tpg: vec![TpgDoc {
            tag: 1,
            portals: vec!["0.0.0.0:3260".into()],
            mode,
            demo_read_only: false,
            relative_port_id,
            auth,
            lun: luns,
            acl: acls,
            ..TpgDoc::new(1, TpgMode::Demo)
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_located() {
        let e = import(
            "s.conf",
            "HANDLER vdisk_fileio {\n DEVICE d {\n  filename /x\n }\n",
        )
        .unwrap_err();
        assert_eq!(e.at, "s.conf:1", "{e}");
        let e = import("s.conf", "}\n").unwrap_err();
        assert_eq!(e.at, "s.conf:1");
        assert_eq!(
            words("IncomingUser \"joe secret 1\""),
            ["IncomingUser", "joe secret 1"]
        );
        assert_eq!(
            strip_comment("IncomingUser \"joe se#cret\" # x"),
            "IncomingUser \"joe se#cret\" "
        );
    }

    #[test]
    fn crc32c_is_the_kernels() {
        // The standard check value, with the usual pre and post inversion.
        assert_eq!(crc32c(!0, b"123456789") ^ !0, 0xe306_9283);
        assert_eq!(dev_id_num(0x1234, "") >> 32, 0x1234);
    }

    #[test]
    fn default_serial_from_name_and_setup_id() {
        let out = import(
            "s.conf",
            "setup_id 0x1234\nHANDLER vdisk_fileio {\n DEVICE disk1 {\n  filename /nonexistent/d\n }\n}\n",
        )
        .unwrap();
        let b = &out.doc.backstore[0];
        assert_eq!(
            b.serial.clone().unwrap(),
            format!("{:x}", dev_id_num(0x1234, "disk1"))
        );
        assert!(b.serial.clone().unwrap().starts_with("1234"));
        assert_eq!(b.revision.as_deref(), Some("3110"));
        assert_eq!(b.thin, Some(false));
        assert!(out
            .notes
            .iter()
            .any(|n| n.what.contains("WWID will change")));
    }

    #[test]
    fn disabled_targets_discovery_chap_portals_and_unknown_attributes() {
        let out = import(
            "s.conf",
            "HANDLER vdisk_fileio {\n DEVICE d {\n  filename /nonexistent/d\n  cluster_mode 1\n }\n}\n\
             TARGET_DRIVER iscsi {\n enabled 1\n IncomingUser \"disc disc-secret-001\"\n iSNSServer 10.0.0.9\n\
              TARGET iqn.2006-10.net.vlnb:off {\n  enabled 0\n  LUN 0 d\n }\n\
              TARGET iqn.2006-10.net.vlnb:on {\n  allowed_portal 192.0.2.7\n  QueuedCommands 64\n  LUN 0 d\n }\n}\n",
        )
        .unwrap();
        assert_eq!(out.doc.target.len(), 1, "the disabled target stays closed");
        assert_eq!(out.doc.target[0].tpg[0].portals, ["192.0.2.7:3260"]);
        assert_eq!(
            out.doc
                .iscsi
                .discovery_auth
                .as_ref()
                .map(|a| a.userid.as_str()),
            Some("disc")
        );
        for name in ["enabled 0", "QueuedCommands", "iSNSServer", "cluster_mode"] {
            assert!(
                out.notes.iter().any(|n| n.what.contains(name)),
                "no note naming {name}"
            );
        }
    }

    #[test]
    fn a_group_of_patterns_only_does_not_open_its_devices() {
        let out = import(
            "s.conf",
            "HANDLER vdisk_fileio {\n DEVICE secret {\n  filename /nonexistent/s\n }\n}\n\
             TARGET_DRIVER iscsi {\n TARGET iqn.2006-10.net.vlnb:tgt {\n  GROUP g {\n   LUN 0 secret\n   INITIATOR iqn.1991-05.com.microsoft:*\n  }\n }\n}\n",
        )
        .unwrap();
        let g = &out.doc.target[0].tpg[0];
        assert_eq!(
            g.mode,
            TpgMode::Acl,
            "no initiator outside the group saw the device"
        );
        assert!(g.acl.is_empty());
    }
}
