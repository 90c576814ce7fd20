//! LIO, as targetcli and rtslib-fb save it (`saveconfig.json`):
//! `storage_objects`, `targets` (iSCSI ones) with their TPGs, portals,
//! LUNs and node ACLs, and the iSCSI fabric module's discovery auth.
//!
//! The identity each LU had under LIO is kept: vendor "LIO-ORG", the
//! storage object's name as product (emulate_model_alias, targetcli's
//! default; else the backend's product name), revision "4.0", the storage object's `wwn` as
//! unit serial (VPD 80h), and the NAA 6 designator LIO derives from that
//! serial (VPD 83h), so multipath WWIDs stay the same.
//!
//! ALUA: LIO keeps target port groups per storage object (`alua_tpgs`) and
//! puts each LUN of a tpg in one (`alua_tg_pt_gp_name`); rtgt has one
//! group per tpg. A tpg whose LUNs are all in one group other than LIO's
//! untouched `default_tg_pt_gp` gets that group's ID, state and preferred
//! bit; LUNs in different groups are reported, as are IDs that two tpgs
//! would share with different states.

use serde_json::Value;

use super::{backstore_name, fail, is_block_device, ImportError, Imported};
use crate::config::{
    AclDoc, AluaState, AuthDoc, BackstoreDoc, BackstoreKind, LunDoc, MappedLunDoc, SizeDoc,
    TargetDoc, TpgDoc, TpgMode,
};

/// One of LIO's ALUA target port groups (an entry of `alua_tpgs`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct LioGroup {
    id: u16,
    state: AluaState,
    preferred: bool,
    /// `alua_access_type` has the explicit bit (SET TARGET PORT GROUPS).
    explicit: bool,
    trans_delay_ms: u32,
}

impl LioGroup {
    /// LIO's `default_tg_pt_gp` as it is before anyone touches it: what
    /// rtgt's default is too (the TPGS bits aside).
    fn untouched(&self) -> bool {
        self.id == 0 && self.state == AluaState::ActiveOptimized && !self.preferred
    }
}

/// Storage object path and group name -> the group.
type Groups = std::collections::HashMap<(String, String), LioGroup>;

fn alua_groups(
    out: &mut Imported,
    so: &At<'_>,
    so_path: &str,
    groups: &mut Groups,
) -> Result<(), ImportError> {
    for g in so.get("alua_tpgs").list()? {
        let name = g.get("name").str()?.to_string();
        let id = g.get("tg_pt_gp_id").u64().unwrap_or(0);
        let id = u16::try_from(id)
            .or_else(|_| fail(g.get("tg_pt_gp_id").path, "tg_pt_gp_id must be 0..65535"))?;
        let code = g.get("alua_access_state").u64().unwrap_or(0);
        let state = match code {
            0 => AluaState::ActiveOptimized,
            1 => AluaState::ActiveNonOptimized,
            2 => AluaState::Standby,
            3 => AluaState::Unavailable,
            0xe => AluaState::Offline,
            other => {
                out.note(&g.path, format!("ALUA group {name:?}: state {other} (LBA dependent or transitioning) has no rtgt equivalent: imported as active_optimized"));
                AluaState::ActiveOptimized
            }
        };
        groups.insert(
            (so_path.to_string(), name),
            LioGroup {
                id,
                state,
                preferred: g.get("preferred").flag(),
                explicit: g.get("alua_access_type").u64().unwrap_or(3) & 2 != 0,
                trans_delay_ms: g
                    .get("trans_delay_msecs")
                    .u64()
                    .map_or(0, |v| v.min(u32::MAX.into()) as u32),
            },
        );
    }
    Ok(())
}

/// LIO's IEEE company ID (Linux-IO), the default of `company_id`.
const LIO_COMPANY_ID: u32 = 0x001405;

/// The NAA 6 designator LIO reports for a unit serial: NAA 6, the company
/// ID, then the serial's hex digits (others skipped) as 25 nibbles of
/// vendor-specific identifier, zero-filled (spc_gen_naa_6h_vendor_specific
/// in the kernel's target_core_spc.c).
pub fn lio_naa(company_id: u32, serial: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 0x60 | ((company_id >> 20) & 0xf) as u8;
    b[1] = (company_id >> 12) as u8;
    b[2] = (company_id >> 4) as u8;
    b[3] = ((company_id & 0xf) << 4) as u8;
    let mut nibbles = serial.chars().filter_map(|c| c.to_digit(16));
    // Byte 3's low nibble, then bytes 4..15 whole.
    if let Some(v) = nibbles.next() {
        b[3] |= v as u8;
    }
    for byte in b.iter_mut().skip(4) {
        let Some(hi) = nibbles.next() else { break };
        *byte = (hi as u8) << 4;
        let Some(lo) = nibbles.next() else { break };
        *byte |= lo as u8;
    }
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A field of an object: where it is, for messages.
struct At<'a> {
    v: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    fn get(&self, k: &str) -> At<'a> {
        At {
            v: self.v.get(k).unwrap_or(&Value::Null),
            path: format!("{}.{k}", self.path),
        }
    }
    fn present(&self) -> bool {
        !self.v.is_null()
    }
    fn str(&self) -> Result<&'a str, ImportError> {
        self.v
            .as_str()
            .map_or_else(|| fail(&self.path, "expected a string"), Ok)
    }
    fn opt_str(&self) -> Option<&'a str> {
        self.v.as_str().filter(|s| !s.is_empty())
    }
    fn u64(&self) -> Result<u64, ImportError> {
        self.v
            .as_u64()
            .map_or_else(|| fail(&self.path, "expected a whole number"), Ok)
    }
    fn flag(&self) -> bool {
        match self.v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_u64().is_some_and(|n| n != 0),
            Value::String(s) => s == "1" || s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
    fn list(&self) -> Result<Vec<At<'a>>, ImportError> {
        match self.v {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| At {
                    v,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => fail(&self.path, "expected a list"),
        }
    }
}

/// CHAP from LIO's `chap_*` / `discovery_*` keys (`prefix` is `chap_` or
/// `discovery_`); `None` when no user is set.
fn auth(o: &At<'_>, prefix: &str) -> Option<AuthDoc> {
    let k = |s: &str| o.get(&format!("{prefix}{s}")).opt_str().map(str::to_string);
    let userid = k("userid")?;
    let mutual_userid = k("mutual_userid");
    Some(AuthDoc {
        userid,
        password: k("password"),
        mutual_password: mutual_userid.as_ref().and(k("mutual_password")),
        mutual_userid,
        ..AuthDoc::default()
    })
}

pub fn import(file: &str, text: &str) -> Result<Imported, ImportError> {
    let root: Value = serde_json::from_str(text).or_else(|e| {
        fail(
            format!("{file}:{}", e.line()),
            format!("not JSON as targetcli saves it: {e}"),
        )
    })?;
    let root = At {
        v: &root,
        path: "$".into(),
    };
    if !root.v.is_object() {
        return fail("$", "expected the object targetcli saveconfig writes");
    }
    let mut out = Imported::default();
    for m in root.get("fabric_modules").list()? {
        let name = m.get("name").opt_str().unwrap_or_default();
        if name != "iscsi" {
            out.note(
                &m.path,
                format!("fabric module {name:?}: rtgt serves iSCSI only"),
            );
            continue;
        }
        if m.get("discovery_enable_auth").flag() {
            match auth(&m, "discovery_") {
                Some(a) => out.doc.iscsi.discovery_auth = Some(a),
                None => {
                    return fail(
                        &m.path,
                        "discovery_enable_auth is set without a discovery_userid: rtgt would leave discovery open",
                    )
                }
            }
        }
    }
    // Storage objects by their LIO path (/backstores/PLUGIN/NAME).
    let mut paths = std::collections::HashMap::new();
    let mut groups = Groups::new();
    for so in root.get("storage_objects").list()? {
        let plugin = so.get("plugin").str()?;
        let lio_name = so.get("name").str()?;
        let name = backstore_name(&mut out, &so.path, lio_name);
        let (kind, product) = match plugin {
            "fileio" => (
                if so.get("dev").opt_str().is_some_and(is_block_device) {
                    BackstoreKind::Blockio
                } else {
                    BackstoreKind::Fileio
                },
                "FILEIO",
            ),
            "block" | "iblock" => (BackstoreKind::Blockio, "IBLOCK"),
            "ramdisk" | "rd_mcp" => (BackstoreKind::Ramdisk, "RAMDISK-MCP"),
            // tcmu-runner's rbd handler (ceph-iscsi's gateways).
            "user"
                if so
                    .get("config")
                    .opt_str()
                    .is_some_and(|c| c.starts_with("rbd/")) =>
            {
                (BackstoreKind::Rbd, "TCMU device")
            }
            other => {
                out.note(
                    &so.path,
                    format!("storage object {lio_name:?} ({other}): rtgt has no {other} backstore; its LUNs are left out"),
                );
                continue;
            }
        };
        let mut b = BackstoreDoc::new(&name, kind);
        match kind {
            BackstoreKind::Ramdisk => {
                b.size = Some(SizeDoc(so.get("size").u64()?));
                if so.get("nullio").flag() {
                    out.note(&so.path, format!("ramdisk {lio_name:?} is nullio in LIO (reads zeroes, drops writes); rtgt's ramdisk keeps the data"));
                }
            }
            BackstoreKind::Fileio => {
                b.path = Some(so.get("dev").str()?.into());
                if so.get("size").present() {
                    b.size = Some(SizeDoc(so.get("size").u64()?));
                }
                b.write_back = Some(so.get("write_back").flag());
            }
            BackstoreKind::Blockio => {
                b.path = Some(so.get("dev").str()?.into());
                if plugin == "fileio" {
                    out.note(
                        &so.path,
                        format!("fileio {lio_name:?} is on a block device: imported as blockio"),
                    );
                }
            }
            BackstoreKind::Rbd => {
                // tcmu-runner's cfgstring: rbd/POOL/IMAGE[;key=value...]
                let cfg = so.get("config").str()?;
                let mut parts = cfg.split(';');
                let first = parts.next().unwrap_or_default();
                let spec = first.strip_prefix("rbd/").unwrap_or(first);
                let Some((pool, image)) = spec.split_once('/').filter(|(p, i)| {
                    !p.is_empty() && !i.is_empty() && !i.contains('/') && !i.contains('@')
                }) else {
                    out.note(
                        &so.path,
                        format!("storage object {lio_name:?}: {cfg:?} is not rbd/POOL/IMAGE; its LUNs are left out"),
                    );
                    continue;
                };
                b.pool = Some(pool.to_string());
                b.image = Some(image.to_string());
                for kv in parts.filter(|x| !x.is_empty()) {
                    match kv.split_once('=') {
                        Some(("conf", f)) => b.ceph_conf = Some(f.into()),
                        Some(("id", c)) => b.client = Some(c.trim_start_matches("client.").into()),
                        Some(("osd_op_timeout", t)) => match t.parse::<u32>() {
                            Ok(t) if (1..=3600).contains(&t) => b.op_timeout = Some(t),
                            _ => out.note(&so.path, format!("{lio_name:?}: osd_op_timeout {t} is not carried over (1..3600 seconds)")),
                        },
                        _ => out.note(&so.path, format!("{lio_name:?}: tcmu-runner option {kv} is not carried over")),
                    }
                }
            }
        }
        let attrs = so.get("attributes");
        if kind != BackstoreKind::Blockio {
            if let Ok(bs) = attrs.get("block_size").u64() {
                b.block_size = Some(bs as u32);
            }
        }
        if so.get("readonly").flag() {
            b.read_only = true;
        }
        if attrs.get("emulate_tpu").present() {
            b.thin = Some(attrs.get("emulate_tpu").flag());
        }
        // The identity LIO reported.
        b.vendor = Some(
            so.get("vendor")
                .opt_str()
                .or(attrs.get("vendor").opt_str())
                .unwrap_or("LIO-ORG")
                .to_string(),
        );
        // With emulate_model_alias (targetcli's default) LIO reports the
        // storage object's name as the product; without, the backend's.
        let alias =
            !attrs.get("emulate_model_alias").present() || attrs.get("emulate_model_alias").flag();
        let model: String = if alias {
            // dev_set_t10_wwn_model_alias copies into the 16-byte field
            // with its terminating NUL (strlcpy/snprintf of 16), so LIO
            // reports at most 15 characters of the name.
            lio_name.chars().take(15).collect()
        } else {
            product.to_string()
        };
        b.product = Some(
            so.get("product")
                .opt_str()
                .or(attrs.get("product").opt_str())
                .map_or(model, str::to_string),
        );
        b.revision = Some(
            so.get("revision")
                .opt_str()
                .or(attrs.get("revision").opt_str())
                .unwrap_or("4.0")
                .to_string(),
        );
        match so.get("wwn").opt_str() {
            Some(serial) => {
                let company = so
                    .get("company_id")
                    .opt_str()
                    .or(attrs.get("company_id").opt_str())
                    .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(LIO_COMPANY_ID);
                b.serial = Some(serial.to_string());
                b.naa = Some(hex(&lio_naa(company, serial)));
            }
            None => out.note(
                &so.path,
                format!("storage object {lio_name:?} has no wwn (unit serial): rtgt derives one, so hosts will see a new disk"),
            ),
        }
        super::fit_identity(&mut out, &so.path, &mut b);
        report_attributes(
            &mut out,
            &attrs,
            SO_SAME,
            SO_HANDLED,
            &format!("storage object {lio_name:?}"),
        );
        // targetcli names a tcmu-runner object by its handler: user:rbd.
        let so_path = match (plugin, so.get("config").opt_str()) {
            ("user", Some(cfg)) => {
                let handler = cfg.split('/').next().unwrap_or_default();
                format!("/backstores/user:{handler}/{lio_name}")
            }
            _ => format!("/backstores/{plugin}/{lio_name}"),
        };
        alua_groups(&mut out, &so, &so_path, &mut groups)?;
        paths.insert(so_path, name);
        out.doc.backstore.push(b);
    }
    for t in root.get("targets").list()? {
        let fabric = t.get("fabric").opt_str().unwrap_or("iscsi");
        let iqn = t.get("wwn").str()?;
        if fabric != "iscsi" {
            out.note(
                &t.path,
                format!("target {iqn:?} ({fabric}): rtgt serves iSCSI only"),
            );
            continue;
        }
        let mut target = TargetDoc {
            iqn: iqn.to_string(),
            alias: None,
            tpg: Vec::new(),
        };
        for g in t.get("tpgs").list()? {
            if let Some(g) = tpg(&mut out, &g, &paths, &groups)? {
                target.tpg.push(g);
            }
        }
        out.doc.target.push(target);
    }
    alua_agree(&mut out);
    Ok(out)
}

/// The ALUA group of each tpg's LUNs (one for all of them, as rtgt has it).
fn tpg_alua(
    out: &mut Imported,
    g: &At<'_>,
    tag: u16,
    groups: &Groups,
    doc: &mut TpgDoc,
) -> Result<(), ImportError> {
    let mut used: Vec<(u64, String, LioGroup)> = Vec::new();
    for l in g.get("luns").list()? {
        let so = l.get("storage_object").str()?;
        let name = l
            .get("alua_tg_pt_gp_name")
            .opt_str()
            .unwrap_or("default_tg_pt_gp");
        if let Some(lg) = groups.get(&(so.to_string(), name.to_string())) {
            used.push((l.get("index").u64()?, name.to_string(), *lg));
        }
    }
    let Some((_, name, first)) = used.iter().find(|(_, _, lg)| !lg.untouched()).cloned() else {
        return Ok(());
    };
    let others: Vec<String> = used
        .iter()
        .filter(|(_, _, lg)| {
            (lg.id, lg.state, lg.preferred) != (first.id, first.state, first.preferred)
        })
        .map(|(lun, n, _)| format!("LUN {lun} in {n:?}"))
        .collect();
    if !others.is_empty() {
        out.note(&g.path, format!("tpg {tag}: its LUNs are in different ALUA groups, rtgt has one per tpg: all of them are now in {name:?} (ID {}, {}); {} moved", first.id, first.state, others.join(", ")));
    }
    doc.alua_state = first.state;
    doc.alua_preferred = first.preferred;
    if first.id != 0 && first.id != tag {
        doc.alua_group = Some(first.id);
    }
    if first.explicit {
        out.doc.alua.explicit = true;
    }
    out.doc.alua.transition_ms = out.doc.alua.transition_ms.max(first.trans_delay_ms);
    Ok(())
}

/// tpgs that share a group ID must agree on its state and preferred bit
/// (LIO's IDs are per storage object, rtgt's hold across targets): a tpg
/// that does not gets an ID no other tpg uses, and that is said.
fn alua_agree(out: &mut Imported) {
    let mut used: std::collections::BTreeSet<u16> = out
        .doc
        .target
        .iter()
        .flat_map(|t| &t.tpg)
        .map(TpgDoc::alua_group_id)
        .collect();
    let mut seen: std::collections::BTreeMap<u16, (AluaState, bool, String)> = Default::default();
    let mut notes = Vec::new();
    for t in &mut out.doc.target {
        for g in &mut t.tpg {
            let id = g.alua_group_id();
            let here = format!("{} tpg {}", t.iqn, g.tag);
            match seen.get(&id) {
                Some((s, p, who)) if (*s, *p) != (g.alua_state, g.alua_preferred) => {
                    let Some(free) = (1..=u16::MAX).find(|i| !used.contains(i)) else {
                        continue;
                    };
                    used.insert(free);
                    notes.push((here.clone(), format!("ALUA group ID {id} is {s} there but {} here (LIO's group IDs are per storage object; in rtgt tpgs with one ID are one group): this tpg gets ID {free} of its own, {who} keeps {id}", g.alua_state)));
                    g.alua_group = Some(free);
                    seen.insert(free, (g.alua_state, g.alua_preferred, here));
                }
                Some(_) => {}
                None => {
                    seen.insert(id, (g.alua_state, g.alua_preferred, here));
                }
            }
        }
    }
    for (at, what) in notes {
        out.note(at, what);
    }
}

/// Values of LIO attributes that rtgt behaves as anyway; any other value
/// changes behaviour and is named.
const SO_SAME: &[(&str, u64)] = &[
    ("emulate_3pc", 1),
    ("emulate_caw", 1),
    ("emulate_dpo", 1),
    ("emulate_fua_read", 1),
    ("emulate_fua_write", 1),
    ("emulate_pr", 1),
    ("emulate_rest_reord", 0),
    ("emulate_tas", 1),
    ("emulate_ua_intlck_ctrl", 0),
    ("enforce_pr_isids", 1),
    ("force_pr_aptpl", 0),
    ("is_nonrot", 0),
    ("pi_prot_format", 0),
    ("pi_prot_type", 0),
    ("pi_prot_verify", 0),
    ("alua_support", 1),
    ("pgr_support", 1),
];
/// Carried over by the importer, or LIO's own queueing and transfer limits.
const SO_HANDLED: &[&str] = &[
    "block_size",
    "emulate_model_alias",
    "emulate_tpu",
    "emulate_tpws",
    "emulate_write_cache",
    "hw_block_size",
    "hw_max_sectors",
    "hw_pi_prot_type",
    "hw_queue_depth",
    "max_unmap_block_desc_count",
    "max_unmap_lba_count",
    "max_write_same_len",
    "optimal_sectors",
    "queue_depth",
    "unmap_granularity",
    "unmap_granularity_alignment",
    "unmap_zeroes_data",
    "submit_type",
    "complete_type",
    "company_id",
    "vendor",
    "product",
    "revision",
];
const TPG_SAME: &[(&str, u64)] = &[
    ("default_erl", 0),
    ("demo_mode_discovery", 1),
    ("tpg_enabled_sendtargets", 1),
    ("t10_pi", 0),
    ("fabric_prot_type", 0),
    ("default_cmdsn_depth", 64),
];
const TPG_HANDLED: &[&str] = &[
    "authentication",
    "cache_dynamic_acls",
    "demo_mode_write_protect",
    "generate_node_acls",
    "login_keys_workaround",
    "login_timeout",
    "netif_timeout",
    "prod_mode_write_protect",
];
/// An ACL's timers and error-recovery knobs; `authentication` is read.
const ACL_HANDLED: &[&str] = &[
    "authentication",
    "dataout_timeout",
    "dataout_timeout_retries",
    "default_erl",
    "nopin_response_timeout",
    "nopin_timeout",
    "random_datain_pdu_offsets",
    "random_datain_seq_offsets",
    "random_r2t_offsets",
];
/// LIO's defaults of the login keys; other values are named.
const PARAMS_SAME: &[(&str, &str)] = &[
    ("AuthMethod", "CHAP,None"),
    ("DataDigest", "CRC32C,None"),
    ("HeaderDigest", "CRC32C,None"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
    ("DefaultTime2Retain", "20"),
    ("DefaultTime2Wait", "2"),
    ("ErrorRecoveryLevel", "0"),
    ("FirstBurstLength", "65536"),
    ("IFMarkInt", "Reject"),
    ("IFMarkInt", "2048~65535"),
    ("IFMarker", "No"),
    ("ImmediateData", "Yes"),
    ("InitialR2T", "Yes"),
    ("MaxBurstLength", "262144"),
    ("MaxConnections", "1"),
    ("MaxOutstandingR2T", "1"),
    ("MaxRecvDataSegmentLength", "8192"),
    ("MaxXmitDataSegmentLength", "262144"),
    ("OFMarkInt", "Reject"),
    ("OFMarkInt", "2048~65535"),
    ("OFMarker", "No"),
    ("TargetAlias", "LIO Target"),
];

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Name every attribute whose value changes behaviour and is not carried.
fn report_attributes(
    out: &mut Imported,
    attrs: &At<'_>,
    same: &[(&str, u64)],
    handled: &[&str],
    what: &str,
) {
    let Some(m) = attrs.v.as_object() else { return };
    for (k, v) in m {
        if handled.contains(&k.as_str()) {
            continue;
        }
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(*b as u64),
            _ => None,
        };
        if same.iter().any(|(name, x)| name == k && Some(*x) == n) {
            continue;
        }
        out.note(
            format!("{}.{k}", attrs.path),
            format!("{what}: attribute {k} = {} is not carried over: rtgt has no such setting (it behaves as LIO's default)", text_of(v)),
        );
    }
}

fn tpg(
    out: &mut Imported,
    g: &At<'_>,
    paths: &std::collections::HashMap<String, String>,
    groups: &Groups,
) -> Result<Option<TpgDoc>, ImportError> {
    let tag = g.get("tag").u64()?;
    let tag = u16::try_from(tag).or_else(|_| fail(g.get("tag").path, "tag must be 1..65535"))?;
    let attrs = g.get("attributes");
    let demo = attrs.get("generate_node_acls").flag();
    // CHAP is required with authentication=1, or when the only AuthMethod
    // offered is CHAP.
    let params = g.get("parameters");
    let auth_method = params.get("AuthMethod").opt_str().unwrap_or("CHAP,None");
    let chap = attrs.get("authentication").flag() || auth_method == "CHAP";
    if g.get("enable").present() && !g.get("enable").flag() {
        out.note(
            &g.path,
            format!("tpg {tag} is disabled in LIO: left out, so that it stays closed"),
        );
        return Ok(None);
    }
    report_attributes(out, &attrs, TPG_SAME, TPG_HANDLED, &format!("tpg {tag}"));
    if let Some(m) = params.v.as_object() {
        for (k, v) in m {
            let v = text_of(v);
            if k == "AuthMethod" && matches!(v.as_str(), "CHAP" | "None") {
                if v == "None" {
                    out.note(format!("{}.{k}", params.path), format!("tpg {tag}: AuthMethod = None (LIO never used CHAP here): rtgt requires CHAP wherever credentials are configured"));
                }
                continue;
            }
            if !PARAMS_SAME.iter().any(|(n, x)| n == k && *x == v) {
                out.note(format!("{}.{k}", params.path), format!("tpg {tag}: parameter {k} = {v} is not carried over: rtgt negotiates the iSCSI keys itself"));
            }
        }
    }
    let prod_wp = attrs.get("prod_mode_write_protect").flag();
    let mut portals = Vec::new();
    for p in g.get("portals").list()? {
        let ip = p.get("ip_address").str()?;
        let port = p.get("port").u64().unwrap_or(3260);
        if p.get("iser").flag() {
            out.note(
                &p.path,
                format!("portal {ip}:{port} is iSER: rtgt serves it over TCP"),
            );
        }
        portals.push(if ip.contains(':') {
            format!("[{}]:{port}", ip.trim_matches(|c| c == '[' || c == ']'))
        } else {
            format!("{ip}:{port}")
        });
    }
    let mut luns = Vec::new();
    for l in g.get("luns").list()? {
        let so = l.get("storage_object").str()?;
        let Some(backstore) = paths.get(so) else {
            out.note(
                &l.path,
                format!("LUN of {so:?}: that storage object was not carried over"),
            );
            continue;
        };
        luns.push(LunDoc {
            lun: l.get("index").u64()?,
            backstore: backstore.clone(),
            read_only: false,
        });
    }
    let tpg_auth = if chap { auth(g, "chap_") } else { None };
    let mut acls = Vec::new();
    for a in g.get("node_acls").list()? {
        let initiator = a.get("node_wwn").str()?.to_string();
        let auth_doc = auth(&a, "chap_");
        let a_attrs = a.get("attributes");
        report_attributes(
            out,
            &a_attrs,
            &[],
            ACL_HANDLED,
            &format!("ACL {initiator:?}"),
        );
        // Linux 5.16 and later: an ACL's own authentication (0 or 1)
        // overrides the tpg's; -1 inherits it.
        let chap = match a_attrs.get("authentication").v {
            Value::Number(n) if n.as_i64() == Some(0) => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            _ => chap,
        };
        if !chap && auth_doc.is_some() {
            // LIO asked for CHAP only where it was required.
            out.note(&a.path, format!("ACL {initiator:?} has CHAP credentials but LIO did not require CHAP (authentication=0): rtgt requires CHAP of it"));
        }
        let mut no_luns = false;
        if chap && auth_doc.is_none() {
            // LIO checks an ACL's own credentials only (the tpg's are for
            // initiators without an ACL): this one could never log in.
            if !demo {
                out.note(&a.path, format!("ACL {initiator:?} has no CHAP credentials but LIO required CHAP (it could not log in to LIO): left out, so it cannot log in now either"));
                continue;
            }
            out.note(&a.path, format!("ACL {initiator:?} has no CHAP credentials but LIO required CHAP (it could not log in to LIO): kept with no LUNs, so that it sees nothing"));
            no_luns = true;
        }
        if auth_doc.as_ref().is_some_and(|a| a.password.is_none()) {
            return fail(
                &a.path,
                format!("ACL {initiator:?}: chap_userid without chap_password"),
            );
        }
        let mut mapped = Vec::new();
        for m in a.get("mapped_luns").list()? {
            mapped.push(MappedLunDoc {
                mapped_lun: m.get("index").u64()?,
                tpg_lun: m.get("tpg_lun").u64()?,
                // prod_mode_write_protect: every ACL's LUNs read-only.
                read_only: m.get("write_protect").flag() || prod_wp,
            });
        }
        if no_luns {
            mapped.clear();
        }
        let known: Vec<u64> = luns.iter().map(|l| l.lun).collect();
        mapped.retain(|m| {
            let ok = known.contains(&m.tpg_lun);
            if !ok {
                out.note(
                    &a.path,
                    format!(
                        "mapped LUN {} of {initiator:?}: its tpg LUN {} was not carried over",
                        m.mapped_lun, m.tpg_lun
                    ),
                );
            }
            ok
        });
        acls.push(AclDoc {
            initiator,
            auth: auth_doc,
            mapped_lun: mapped,
        });
    }
    let mut mode = if demo { TpgMode::Demo } else { TpgMode::Acl };
    if demo && chap && tpg_auth.is_none() {
        out.note(&g.path, format!("tpg {tag}: demo mode with authentication=1 but no tpg CHAP credentials (only ACL initiators could log in): imported as acl mode"));
        mode = TpgMode::Acl;
    }
    let mut doc = TpgDoc {
        tag,
        portals,
        mode,
        demo_read_only: mode == TpgMode::Demo && attrs.get("demo_mode_write_protect").flag(),
        relative_port_id: None,
        auth: tpg_auth,
        lun: luns,
        acl: acls,
        ..TpgDoc::new(1, TpgMode::Demo)
    };
    tpg_alua(out, g, tag, groups, &mut doc)?;
    Ok(Some(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa_from_the_serial_as_lio_makes_it() {
        // 25 hex digits of the serial follow 6 001405.
        let n = lio_naa(LIO_COMPANY_ID, "a1b2c3d4-e5f6-4789-abcd-ef0123456789");
        assert_eq!(hex(&n), "6001405a1b2c3d4e5f64789abcdef012");
        // Short serials are zero-filled; non-hex characters skipped.
        assert_eq!(
            hex(&lio_naa(LIO_COMPANY_ID, "x1-2")),
            "60014051200000000000000000000000"
        );
        // Another company ID moves the nibbles.
        assert_eq!(&hex(&lio_naa(0xabcdef, "1"))[..8], "6abcdef1");
    }

    /// Read from a real LIO (Linux 6.1, targetcli-fb, the guest of
    /// ../shared/linux-initiator/lio-peer.sh) with libiscsi's iscsi-inq:
    /// serial 9f0a1cd2-3007-45a0-a8e0-5856628335be, NAA beginning
    /// 60014059f0a1cd23 and then a zero byte (iscsi-inq prints the
    /// designator as a C string, so it shows no more than that).
    #[test]
    fn naa_matches_a_real_lio() {
        let n = lio_naa(LIO_COMPANY_ID, "9f0a1cd2-3007-45a0-a8e0-5856628335be");
        assert_eq!(hex(&n[..9]), "60014059f0a1cd2300");
        assert_eq!(hex(&n), "60014059f0a1cd2300745a0a8e058566");
    }

    #[test]
    fn a_tcmu_rbd_object_of_ceph_iscsi_becomes_an_rbd_backstore_with_its_identity() {
        let json = r#"{"storage_objects": [
            {"plugin": "user", "name": "disk_1", "config": "rbd/rbd/disk_1;osd_op_timeout=30;conf=/etc/ceph/site.conf;id=client.iscsi",
             "size": 1073741824, "wwn": "6c3e5c8a-1f2b-4d6e-9a0b-123456789abc", "attributes": {}},
            {"plugin": "user", "name": "odd", "config": "rbd/no-image-here", "size": 512, "attributes": {}}
        ], "targets": [{"fabric": "iscsi", "wwn": "iqn.2026-12.com.example:ceph", "tpgs": [{"tag": 1, "enable": true,
            "attributes": {"generate_node_acls": 1}, "parameters": {}, "portals": [], "node_acls": [],
            "luns": [{"index": 0, "storage_object": "/backstores/user:rbd/disk_1"}]}]}]}"#;
        let out = import("saveconfig.json", json).unwrap();
        let b = out
            .doc
            .backstore
            .iter()
            .find(|b| b.kind == BackstoreKind::Rbd)
            .unwrap_or_else(|| panic!("no rbd backstore: {:?} {:?}", out.doc.backstore, out.notes));
        assert_eq!(
            (b.pool.as_deref(), b.image.as_deref()),
            (Some("rbd"), Some("disk_1"))
        );
        assert_eq!(b.op_timeout, Some(30));
        assert_eq!(b.client.as_deref(), Some("iscsi"));
        assert_eq!(
            b.ceph_conf.as_deref(),
            Some(std::path::Path::new("/etc/ceph/site.conf"))
        );
        // The identity LIO reported: its serial and NAA.
        assert_eq!(
            b.serial.as_deref(),
            Some("6c3e5c8a-1f2b-4d6e-9a0b-123456789abc")
        );
        assert!(
            b.naa.as_deref().is_some_and(|n| n.starts_with("6001405")),
            "{:?}",
            b.naa
        );
        assert_eq!(out.doc.backstore.len(), 1, "the malformed one is left out");
        // targetcli's path for it (user:rbd) finds it for the LUN.
        let lun = &out.doc.target[0].tpg[0].lun;
        assert_eq!(lun.len(), 1, "{:?}", out.notes);
        assert_eq!(lun[0].backstore, b.name);
        let notes = out
            .notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(notes.contains("rbd/no-image-here"), "{notes}");
        out.doc.check().expect("valid");
    }

    #[test]
    fn the_model_alias_is_cut_to_15_characters_as_lio_cuts_it() {
        let out = import(
            "s.json",
            r#"{"storage_objects": [{"plugin": "fileio", "name": "a-sixteen-chars!x", "dev": "/nonexistent/d",
                "size": 1048576, "wwn": "0d9f4c0e-8a9e-4bd6-9a4c-30d4e4f0b5a1", "attributes": {"emulate_model_alias": 1}}]}"#,
        )
        .unwrap();
        assert_eq!(
            out.doc.backstore[0].product.as_deref(),
            Some("a-sixteen-chars")
        );
    }

    fn tpg_of(tpg: &str) -> Imported {
        import(
            "s.json",
            &format!(r#"{{"storage_objects": [{{"plugin": "fileio", "name": "d", "dev": "/nonexistent/d", "size": 1048576,
                "wwn": "0d9f4c0e-8a9e-4bd6-9a4c-30d4e4f0b5a1", "attributes": {{"emulate_3pc": 0, "queue_depth": 128}}}}],
              "targets": [{{"fabric": "iscsi", "wwn": "iqn.2003-01.org.linux-iscsi.x:sn.1", "tpgs": [{tpg}]}}]}}"#),
        )
        .unwrap()
    }

    #[test]
    fn chap_required_by_authmethod_or_the_acl_keeps_acls_without_credentials_out() {
        let acl = r#""luns": [{"index": 0, "storage_object": "/backstores/fileio/d"}],
            "node_acls": [{"node_wwn": "iqn.1993-08.org.debian:01:a", "mapped_luns": [{"index": 0, "tpg_lun": 0}]}"#;
        // AuthMethod CHAP only: no login without CHAP, whatever authentication says.
        let out = tpg_of(&format!(
            r#"{{"tag": 1, "attributes": {{"authentication": 0}}, "parameters": {{"AuthMethod": "CHAP"}}, {acl}]}}"#
        ));
        assert!(
            out.doc.target[0].tpg[0].acl.is_empty(),
            "an ACL that could never log in is not opened"
        );
        // The ACL's own authentication = 1 (Linux 5.16+).
        let own = acl.replace(
            r#""node_wwn""#,
            r#""attributes": {"authentication": 1}, "node_wwn""#,
        );
        let out = tpg_of(&format!(
            r#"{{"tag": 1, "attributes": {{"authentication": 0}}, {own}]}}"#
        ));
        assert!(out.doc.target[0].tpg[0].acl.is_empty());
        // authentication = 0, CHAP,None: the ACL is open in LIO and stays so.
        let out = tpg_of(&format!(
            r#"{{"tag": 1, "attributes": {{"authentication": 0}}, {acl}]}}"#
        ));
        assert_eq!(out.doc.target[0].tpg[0].acl.len(), 1);
        // Attributes that change behaviour are named; LIO's limits are not.
        assert!(out.notes.iter().any(|n| n.what.contains("emulate_3pc = 0")));
        assert!(!out.notes.iter().any(|n| n.what.contains("queue_depth")));
    }

    #[test]
    fn alua_groups_become_the_tpgs_groups() {
        let gp = |name: &str, id: u16, state: u8, pref: u8, ty: u8, delay: u32| {
            format!(
                r#"{{"name": "{name}", "tg_pt_gp_id": {id}, "alua_access_state": {state}, "preferred": {pref},
                "alua_access_type": {ty}, "trans_delay_msecs": {delay}, "implicit_trans_secs": 0}}"#
            )
        };
        let so = |name: &str, groups: &[String]| {
            format!(
                r#"{{"plugin": "ramdisk", "name": "{name}", "size": 1048576, "wwn": "{name}-serial",
                "alua_tpgs": [{}]}}"#,
                groups.join(",")
            )
        };
        let lun = |so: &str, gp: &str| {
            format!(
                r#"{{"index": 0, "storage_object": "/backstores/ramdisk/{so}", "alua_tg_pt_gp_name": "{gp}"}}"#
            )
        };
        let tpg = |tag: u16, luns: &[String]| {
            format!(r#"{{"tag": {tag}, "luns": [{}]}}"#, luns.join(","))
        };
        let d = so(
            "d",
            &[
                gp("default_tg_pt_gp", 0, 0, 0, 3, 0),
                gp("sb", 5, 2, 0, 1, 0),
                gp("ao", 7, 0, 1, 3, 100),
            ],
        );
        // "e" has its own group 5, in another state: IDs are per storage object in LIO.
        let e = so(
            "e",
            &[
                gp("default_tg_pt_gp", 0, 0, 0, 3, 0),
                gp("other", 5, 1, 0, 1, 0),
            ],
        );
        let text = format!(
            r#"{{"storage_objects": [{d}, {e}], "targets": [
              {{"fabric": "iscsi", "wwn": "iqn.2003-01.org.linux-iscsi.x:sn.1", "tpgs": [{}, {}, {}]}},
              {{"fabric": "iscsi", "wwn": "iqn.2003-01.org.linux-iscsi.x:sn.2", "tpgs": [{}, {}]}}]}}"#,
            tpg(1, &[lun("d", "default_tg_pt_gp")]),
            tpg(2, &[lun("d", "sb")]),
            tpg(3, &[lun("d", "ao")]),
            tpg(1, &[lun("e", "other")]),
            // two LUNs in two groups: rtgt has one per tpg
            tpg(
                2,
                &[
                    lun("d", "ao"),
                    lun("e", "default_tg_pt_gp").replace("\"index\": 0", "\"index\": 1")
                ]
            ),
        );
        let out = import("s.json", &text).unwrap();
        let t = &out.doc.target;
        let view = |g: &TpgDoc| (g.alua_group_id(), g.alua_state, g.alua_preferred);
        assert_eq!(
            view(&t[0].tpg[0]),
            (1, AluaState::ActiveOptimized, false),
            "LIO's default: rtgt's"
        );
        assert_eq!(view(&t[0].tpg[1]), (5, AluaState::Standby, false));
        assert_eq!(view(&t[0].tpg[2]), (7, AluaState::ActiveOptimized, true));
        // group 5 is standby already; 1..4 is the first ID no tpg has
        assert_eq!(
            view(&t[1].tpg[0]),
            (2, AluaState::ActiveNonOptimized, false)
        );
        assert_eq!(view(&t[1].tpg[1]), (7, AluaState::ActiveOptimized, true));
        assert!(
            out.doc.alua.explicit,
            "LIO's alua_access_type 3 allows SET TARGET PORT GROUPS"
        );
        assert_eq!(out.doc.alua.transition_ms, 100);
        for what in [
            "ALUA group ID 5 is standby there but active_nonoptimized here",
            "different ALUA groups",
        ] {
            assert!(
                out.notes.iter().any(|n| n.what.contains(what)),
                "no note {what:?}: {:?}",
                out.notes
            );
        }
        out.doc.check().unwrap();
    }

    #[test]
    fn a_disabled_tpg_stays_closed_and_parameters_are_named() {
        let out = tpg_of(
            r#"{"tag": 1, "enable": false}, {"tag": 2, "attributes": {"prod_mode_write_protect": 1, "default_erl": 2},
            "parameters": {"MaxConnections": "4", "AuthMethod": "CHAP,None"}, "luns": [{"index": 0, "storage_object": "/backstores/fileio/d"}],
            "node_acls": [{"node_wwn": "iqn.1993-08.org.debian:01:a", "mapped_luns": [{"index": 0, "tpg_lun": 0}]}]}"#,
        );
        let t = &out.doc.target[0];
        assert_eq!(t.tpg.len(), 1);
        assert_eq!(t.tpg[0].tag, 2);
        assert!(
            t.tpg[0].acl[0].mapped_lun[0].read_only,
            "prod_mode_write_protect"
        );
        for name in ["disabled", "MaxConnections = 4", "default_erl = 2"] {
            assert!(
                out.notes.iter().any(|n| n.what.contains(name)),
                "no note naming {name}"
            );
        }
    }

    #[test]
    fn malformed_json_names_the_line() {
        let e = import("s.json", "{\n  \"targets\": [\n  }\n").unwrap_err();
        assert!(e.at.starts_with("s.json:3"), "{e}");
        let e = import(
            "s.json",
            "{\"storage_objects\": [{\"plugin\": \"fileio\"}]}",
        )
        .unwrap_err();
        assert_eq!(e.at, "$.storage_objects[0].name", "{e}");
    }
}
