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

fn parse(file: &str, text: &str) -> Result<Node, ImportError> {
    let mut stack = vec![Node::default()];
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
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
            if let Some(r) = d.attr("prod_rev_lvl") {
                b.revision = Some(r.to_string());
            }
            match d.attr("usn") {
                Some(s) => b.serial = Some(s.to_string()),
                None => out.note(at(d.line), format!("device {dev:?} has no usn in the file: SCST derived one; rtgt derives another (set serial to what hosts saw)")),
            }
            match d.attr("naa_id") {
                Some(n) => b.naa = Some(n.trim_start_matches("0x").to_string()),
                None => out.note(at(d.line), format!("device {dev:?}: SCST's VPD 83h designators (t10_dev_id, eui64_id) are not reproduced; rtgt reports an NAA, so a host that keys on the WWID sees a new disk")),
            }
            super::fit_identity(&mut out, &at(d.line), &mut b);
            devices.insert(dev.clone(), name);
            out.doc.backstore.push(b);
        }
    }
    for drv in root.all("TARGET_DRIVER") {
        let driver = drv.args.first().map(String::as_str).unwrap_or("");
        if driver == "copy_manager" {
            continue;
        }
        if driver != "iscsi" {
            out.note(
                at(drv.line),
                format!("target driver {driver}: rtgt serves iSCSI only"),
            );
            continue;
        }
        for t in drv.all("TARGET") {
            let Some(iqn) = t.args.first() else {
                return fail(at(t.line), "TARGET needs a name");
            };
            let t = target(&mut out, file, t, iqn, &devices)?;
            out.doc.target.push(t);
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
    let mode = if acls.is_empty() || (!defaults.is_empty() && !group_only) {
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
    if t.attr("rel_tgt_id").is_some() {
        out.note(
            at(t.line),
            "rel_tgt_id: rtgt derives the relative port id (set relative_port_id to keep it)",
        );
    }
    Ok(TargetDoc {
        iqn: iqn.to_string(),
        alias: None,
        tpg: vec![TpgDoc {
            tag: 1,
            portals: vec!["0.0.0.0:3260".into()],
            mode,
            demo_read_only: false,
            relative_port_id: t.attr("rel_tgt_id").and_then(|r| r.parse().ok()),
            auth,
            lun: luns,
            acl: acls,
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
    }
}
