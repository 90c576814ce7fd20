//! tgt, as tgt-admin reads it (`/etc/tgt/targets.conf`, and what
//! `tgt-admin --dump` prints): `<target IQN> … </target>` blocks with
//! `backing-store` LUNs (numbered from 1, LUN 0 being tgt's controller),
//! `initiator-name` ACLs, `incominguser` / `outgoinguser` CHAP and the
//! identity keys `vendor_id`, `product_id`, `product_rev`, `scsi_sn`.

use super::{backstore_name, fail, is_block_device, ImportError, Imported};
use crate::config::{
    AclDoc, AuthDoc, BackstoreDoc, BackstoreKind, LunDoc, MappedLunDoc, TargetDoc, TpgDoc, TpgMode,
};

/// One `backing-store` and the options that apply to it.
#[derive(Default, Clone)]
struct Store {
    path: String,
    line: usize,
    opts: Vec<(String, String, usize)>,
}

#[derive(Default)]
struct Target {
    iqn: String,
    line: usize,
    stores: Vec<Store>,
    /// Options of the target (they apply to every LUN unless a
    /// `<backing-store>` block sets its own).
    opts: Vec<(String, String, usize)>,
}

/// The blocks and options of the file, with their lines.
fn parse(file: &str, text: &str) -> Result<Vec<Target>, ImportError> {
    let mut targets = Vec::new();
    let mut cur: Option<Target> = None;
    let mut store: Option<Store> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = || format!("{file}:{n}");
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("<target ") {
            if cur.is_some() {
                return fail(at(), "<target> inside a <target>");
            }
            let iqn = rest.trim_end_matches('>').trim();
            if iqn.is_empty() {
                return fail(at(), "<target> without a name");
            }
            cur = Some(Target {
                iqn: iqn.to_string(),
                line: n,
                ..Target::default()
            });
            continue;
        }
        if line == "</target>" {
            let Some(t) = cur.take() else {
                return fail(at(), "</target> without <target>");
            };
            if store.is_some() {
                return fail(at(), "</target> inside a <backing-store> block");
            }
            targets.push(t);
            continue;
        }
        let Some(t) = cur.as_mut() else {
            // Global settings: default-driver, include, ignore-errors.
            let key = line.split_whitespace().next().unwrap_or("");
            match key {
                "default-driver" if line.ends_with("iscsi") => {}
                _ => {
                    return fail(
                        at(),
                        format!("{key:?} outside a <target> is not read by this importer"),
                    )
                }
            }
            continue;
        };
        if let Some(rest) = line
            .strip_prefix("<backing-store ")
            .or(line.strip_prefix("<direct-store "))
        {
            store = Some(Store {
                path: rest.trim_end_matches('>').trim().to_string(),
                line: n,
                opts: vec![("direct".into(), line.starts_with("<direct").to_string(), n)],
            });
            continue;
        }
        if line == "</backing-store>" || line == "</direct-store>" {
            let Some(s) = store.take() else {
                return fail(at(), "closing a store block that was not opened");
            };
            t.stores.push(s);
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_string(), v.trim().to_string()),
            None => return fail(at(), format!("{line:?}: an option needs a value")),
        };
        match (&mut store, key.as_str()) {
            (Some(s), _) => s.opts.push((key, value, n)),
            (None, "backing-store" | "direct-store") => t.stores.push(Store {
                path: value,
                line: n,
                opts: vec![("direct".into(), (key == "direct-store").to_string(), n)],
            }),
            (None, _) => t.opts.push((key, value, n)),
        }
    }
    if cur.is_some() {
        return fail(
            format!("{file}:{}", text.lines().count()),
            "<target> is not closed",
        );
    }
    Ok(targets)
}

fn credential(file: &str, n: usize, value: &str) -> Result<(String, String), ImportError> {
    let mut w = value.split_whitespace();
    match (w.next(), w.next()) {
        (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
        _ => fail(format!("{file}:{n}"), "expected a user name and a password"),
    }
}

pub fn import(file: &str, text: &str) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    let mut serials = std::collections::HashSet::new();
    for (tid, t) in parse(file, text)?.into_iter().enumerate() {
        let tid = tid + 1;
        let at = |n: usize| format!("{file}:{n}");
        let mut initiators = Vec::new();
        let mut incoming = Vec::new();
        let mut outgoing = None;
        let mut restricted = false;
        for (k, v, n) in &t.opts {
            match k.as_str() {
                "initiator-name" => initiators.push(v.clone()),
                "initiator-address" => {
                    if v != "ALL" {
                        restricted = true;
                        out.note(at(*n), format!("initiator-address {v}: rtgt has no address ACLs; the target is open only to its initiator-name ACLs"));
                    }
                }
                "incominguser" => incoming.push((credential(file, *n, v)?, *n)),
                "outgoinguser" => outgoing = Some(credential(file, *n, v)?),
                "vendor_id" | "product_id" | "product_rev" | "scsi_sn" | "scsi_id" | "lun"
                | "readonly" | "write-cache" | "bs-type" | "block-size" | "driver" => {}
                other => out.note(at(*n), format!("{other} is not carried over")),
            }
        }
        let auth = match incoming.as_slice() {
            [] => None,
            [((u, p), _), rest @ ..] => {
                for (_, n) in rest {
                    out.note(at(*n), "a second incominguser: rtgt takes one CHAP user per portal group; only the first can log in");
                }
                Some(AuthDoc {
                    userid: u.clone(),
                    password: Some(p.clone()),
                    mutual_userid: outgoing.as_ref().map(|(u, _)| u.clone()),
                    mutual_password: outgoing.as_ref().map(|(_, p)| p.clone()),
                    ..AuthDoc::default()
                })
            }
        };
        if auth.is_none() && outgoing.is_some() {
            out.note(
                at(t.line),
                "outgoinguser without incominguser: rtgt has no mutual-only CHAP; left out",
            );
        }
        let mut luns = Vec::new();
        let mut next = 1u64;
        for s in &t.stores {
            // A store's own options win over the target's.
            let opt = |k: &str| {
                s.opts
                    .iter()
                    .chain(t.opts.iter())
                    .find(|(key, _, _)| key == k)
                    .map(|(_, v, _)| v.clone())
            };
            if opt("direct").as_deref() == Some("true") {
                out.note(at(s.line), format!("direct-store {}: SCSI pass-through is not in rtgt; imported as a blockio LU (the device's own INQUIRY data is not passed through)", s.path));
            }
            if let Some(bs) = opt("bs-type").filter(|b| !matches!(b.as_str(), "rdwr" | "aio")) {
                out.note(
                    at(s.line),
                    format!("bs-type {bs} of {}: not in rtgt; left out", s.path),
                );
                continue;
            }
            let lun = match opt("lun") {
                Some(l) => l
                    .parse()
                    .or_else(|_| fail(at(s.line), format!("lun {l:?} is not a number")))?,
                None => next,
            };
            next = lun + 1;
            let kind = if is_block_device(&s.path) {
                BackstoreKind::Blockio
            } else {
                BackstoreKind::Fileio
            };
            let base = format!("tid{tid}-lun{lun}");
            let name = backstore_name(&mut out, &at(s.line), &base);
            let mut b = BackstoreDoc::new(&name, kind);
            b.path = Some(s.path.clone().into());
            if kind == BackstoreKind::Fileio {
                b.write_back = Some(opt("write-cache").as_deref() != Some("off"));
                if let Some(bs) = opt("block-size") {
                    b.block_size = bs.parse().ok();
                }
            }
            b.read_only = opt("readonly").as_deref() == Some("1");
            // tgt's defaults, so hosts see the same strings.
            b.vendor = Some(opt("vendor_id").unwrap_or_else(|| "IET".into()));
            b.product = Some(opt("product_id").unwrap_or_else(|| "VIRTUAL-DISK".into()));
            b.revision = Some(opt("product_rev").unwrap_or_else(|| "0001".into()));
            let mut serial = opt("scsi_sn").unwrap_or_else(|| format!("beaf{tid}{lun}"));
            if !serials.insert(serial.clone()) {
                // A target-wide scsi_sn gave every LUN the same serial:
                // hosts took them for paths to one disk.
                let own = format!("{serial}-{lun}");
                out.note(at(s.line), format!("LU {}: serial {serial:?} is also another LU's (tgt reported both with it); it gets {own:?}", s.path));
                serial = own;
            }
            b.serial = Some(serial);
            out.note(
                at(s.line),
                format!("LU {}: tgt's VPD 83h designator (scsi_id, T10 vendor ID) is not reproduced; rtgt reports an NAA, so a host that keys on the WWID (multipath) sees a new disk — set naa to keep one across later moves", s.path),
            );
            super::fit_identity(&mut out, &at(s.line), &mut b);
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
            iqn: t.iqn.clone(),
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
        assert!(e.at.starts_with("t.conf:2"), "{e}");
        let e = import("t.conf", "bogus 1\n").unwrap_err();
        assert_eq!(e.at, "t.conf:1");
    }
}
