//! `rtgt` commands over the control API, named like the object tree the way
//! targetcli users type them (`rtgt /backstores/fileio create disk1 FILE
//! 10G`), and the interactive shell built on the same commands.
//!
//! Exit codes: 0 done; 1 the daemon refused (the message says why and what
//! to do); 2 the command line is wrong; 3 the daemon cannot be reached.

pub mod client;
pub mod shell;
pub mod tree;

use std::collections::BTreeMap;
use std::path::PathBuf;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use client::{seg, Client, ClientError};
use tree::Node;

use crate::config::Doc;

/// Why a command did not do what was asked.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The daemon refused (exit 1).
    Refused(String),
    /// The daemon cannot be reached (exit 3).
    Unreachable(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Refused(m) | CliError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Connect { .. } => CliError::Unreachable(e.to_string()),
            ClientError::Http(_) => CliError::Unreachable(e.to_string()),
        }
    }
}

fn usage<T>(m: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(m.into()))
}

/// The default control socket, as `rtgt serve` uses it.
pub fn default_socket() -> PathBuf {
    std::env::var_os("RTGT_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(crate::control::default_socket)
}

/// What commands run against, and how they print.
pub struct Ctx {
    pub client: Client,
    /// Print the API's JSON instead of text.
    pub json: bool,
    /// ANSI colour in `ls`.
    pub color: bool,
}

/// Commands that act on a node (the first word, or the second after a path).
pub const COMMANDS: [&str; 8] = ["ls", "create", "delete", "set", "get", "info", "help", "cd"];
/// Commands of the whole tree.
pub const GLOBAL: [&str; 5] = ["sessions", "saveconfig", "pwd", "exit", "status"];

impl Ctx {
    fn doc(&self) -> Result<Doc, CliError> {
        let a = self.client.get("/api/v1/tree")?;
        if a.status != StatusCode::OK {
            return Err(CliError::Refused(a.error_text()));
        }
        serde_json::from_slice(&a.body)
            .map_err(|e| CliError::Unreachable(format!("unexpected answer from rtgt: {e}")))
    }

    fn status(&self) -> Result<Value, CliError> {
        Ok(self.client.get("/api/v1/status")?.json())
    }

    /// The drawn tree (for `ls` and completion).
    pub fn tree(&self) -> Result<tree::Item, CliError> {
        Ok(tree::build(&self.doc()?, &self.status()?))
    }

    /// Send a change and print what it did.
    fn change(&self, method: Method, path: &str, body: Option<Value>) -> Result<String, CliError> {
        let a = match body {
            Some(b) => self.client.send_json(method, path, &b)?,
            None => self.client.call(method, path, None)?,
        };
        if !a.status.is_success() {
            return Err(CliError::Refused(a.error_text()));
        }
        if self.json {
            return Ok(String::from_utf8_lossy(&a.body).into_owned());
        }
        Ok(changes_text(&a.json()))
    }
}

/// `+ /path` lines (the changes as [`crate::config::Change`] shows them), or
/// a note that nothing changed.
pub fn changes_text(v: &Value) -> String {
    let list: Vec<crate::config::Change> =
        serde_json::from_value(v["changes"].clone()).unwrap_or_default();
    if list.is_empty() {
        return "nothing to change\n".into();
    }
    list.iter().map(|c| format!("{c}\n")).collect()
}

/// Arguments: positional words and `key=value` pairs.
struct Args {
    pos: Vec<String>,
    kv: BTreeMap<String, String>,
}

impl Args {
    fn parse(words: &[String]) -> Args {
        let mut pos = Vec::new();
        let mut kv = BTreeMap::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) if !k.is_empty() && !k.contains('/') => {
                    kv.insert(k.to_string(), v.to_string());
                }
                _ => pos.push(w.clone()),
            }
        }
        Args { pos, kv }
    }

    /// `key=value`, else the `i`th positional word.
    fn get(&self, key: &str, i: usize) -> Option<String> {
        self.kv
            .get(key)
            .cloned()
            .or_else(|| self.pos.get(i).cloned())
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.kv.remove(key)
    }

    fn finish(self, what: &str) -> Result<(), CliError> {
        if let Some(k) = self.kv.keys().next() {
            return usage(format!("{what}: unknown parameter {k:?} (see `help`)"));
        }
        Ok(())
    }
}

fn flag(v: &str) -> Result<bool, CliError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => usage(format!("{v:?} is not a yes/no value (1 or 0)")),
    }
}

fn size(v: &str) -> Result<Value, CliError> {
    crate::config::parse_size(v).map_err(CliError::Usage)?;
    Ok(Value::String(v.to_string()))
}

fn num(v: &str, what: &str) -> Result<u64, CliError> {
    v.trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '_')
        .parse()
        .map_err(|_| CliError::Usage(format!("{what} {v:?} is not a number")))
}

fn tpg_base(iqn: &str, tag: u16) -> String {
    format!("/api/v1/targets/{}/tpgs/{tag}", seg(iqn))
}

/// CHAP settings from `userid= password= [mutual_userid= mutual_password=]`
/// (or `*_file=` for secrets in files).
fn auth_body(a: &mut Args) -> Result<Value, CliError> {
    let mut m = serde_json::Map::new();
    for k in [
        "userid",
        "password",
        "password_file",
        "mutual_userid",
        "mutual_password",
        "mutual_password_file",
    ] {
        if let Some(v) = a.take(k) {
            m.insert(k.into(), Value::String(v));
        }
    }
    if !m.contains_key("userid") {
        return usage("set auth needs userid=NAME and password=SECRET (or password_file=PATH); mutual CHAP adds mutual_userid= and mutual_password=");
    }
    Ok(Value::Object(m))
}

/// Whether every initiator of the group must pass CHAP: the group has
/// credentials, or it admits only ACLs and each has its own.
fn chap_required(g: &crate::config::TpgDoc) -> bool {
    g.auth.is_some()
        || (g.mode == crate::config::TpgMode::Acl
            && !g.acl.is_empty()
            && g.acl.iter().all(|a| a.auth.is_some()))
}

/// Help for the commands of a node.
pub fn help(node: &Node) -> String {
    let s = match node {
        Node::Root => "ls [PATH]            draw the tree\ncd PATH              (shell) move in the tree\nsessions             list sessions\nsaveconfig           save the running configuration to the --config file\n",
        Node::Backstores => "ls                   list backstores by kind: cd into ramdisk, fileio, blockio or rbd\n",
        Node::Kind(k) if k == "ramdisk" => "create NAME SIZE [read_only=1] [block_size=4096]\ndelete NAME\n",
        Node::Kind(k) if k == "fileio" => "create NAME FILE [SIZE] [write_back=0] [read_only=1] [block_size=4096]\n    (the file is created with SIZE if missing)\ndelete NAME\n",
        Node::Kind(k) if k == "rbd" => "create NAME POOL/IMAGE [ceph_conf=FILE] [keyring=FILE] [client=ID] [namespace=NS] [op_timeout=SECS] [read_only=1] [block_size=4096]\n    (a Ceph RBD image; its size is the image's)\ndelete NAME\n",
        Node::Kind(_) => "create NAME DEVICE [read_only=1]\ndelete NAME\n",
        Node::Backstore(..) => "info                 show the backstore\nset attribute size=SIZE|read_only=0/1|write_back=0/1|removable=0/1|thin=0/1|sanitize_rate=RATE\nset wwn vendor=V product=P revision=R serial=S naa=HEX   (the LU's identity; =\"\" for the default)\n",
        Node::Iscsi => "create IQN           a target with tpg1 (acl mode, no portal: it is served on every portal)\ndelete IQN\nset discovery_auth userid=.. password=..   (enable=0 to open discovery)\n",
        Node::Target(_) => "create [TAG]         a portal group\ndelete tpgTAG\ninfo\n",
        Node::Tpg(..) => "set attribute generate_node_acls=1|0 (demo or acl mode) demo_mode_write_protect=1|0 authentication=0\nset alua state=active_optimized|active_nonoptimized|standby|unavailable|offline [preferred=1|0] [group=ID]   (the target port group's, shared by the tpgs in it)\nset auth userid=.. password=.. [mutual_userid=.. mutual_password=..]\nget [attribute|auth]\ninfo\n",
        Node::Luns(..) => "create BACKSTORE [lun=N] [read_only=1]   BACKSTORE: a name or /backstores/KIND/NAME\ndelete lunN\n",
        Node::Portals(..) => "create IP [PORT]\ndelete IP [PORT]\n",
        Node::Acls(..) => "create INITIATOR_IQN [map_all=1]\ndelete INITIATOR_IQN\n",
        Node::Acl(..) => "create mapped_lun=N tpg_lun=M [write_protect=1]   (or: create N M)\ndelete mapped_lunN\nset auth userid=.. password=.. [mutual_userid=.. mutual_password=..]\nset attribute authentication=0   (the group's CHAP setting applies again)\ninfo\n",
        Node::Lun(..) | Node::Portal(..) | Node::MappedLun(..) | Node::VhostLun(..) => "info\n",
        Node::Vhost => "create NAME SOCKET [initiator=NAME] [num_queues=N] [wwn=naa.HEX]   a vhost-user-scsi controller: QEMU connects to SOCKET\ndelete NAME\n",
        Node::VhostCtl(_) => "info\n(its LUNs: cd luns)\n",
        Node::VhostLuns(_) => "create BACKSTORE [lun=N] [read_only=1]   the attached guest sees it appear\ndelete lunN\n",
    };
    s.to_string()
}

/// Run one command at `cwd`: `[PATH] COMMAND ARGS...`. Returns what to
/// print, and for `cd` the new directory.
pub fn run(ctx: &Ctx, cwd: &str, words: &[String]) -> Result<(String, Option<String>), CliError> {
    let Some(first) = words.first() else {
        return Ok((String::new(), None));
    };
    let (path, cmd, rest) =
        if COMMANDS.contains(&first.as_str()) || GLOBAL.contains(&first.as_str()) {
            (cwd.to_string(), first.as_str(), &words[1..])
        } else {
            let p = tree::resolve(cwd, first);
            match words.get(1) {
                Some(c) => (p, c.as_str(), &words[2..]),
                None => (p, "ls", &words[1..]),
            }
        };
    let Some(node) = tree::parse(&path) else {
        return usage(format!("no such path {path:?} (try `ls /`)"));
    };
    if rest.iter().any(|w| w == "--help" || w == "-h") || ["help", "--help", "-h"].contains(&cmd) {
        return Ok((help(&node), None));
    }
    let out = match cmd {
        "ls" => {
            let target = match rest.first() {
                Some(p) => tree::resolve(&path, p),
                None => path.clone(),
            };
            if ctx.json {
                let d = ctx.doc()?;
                return Ok((
                    serde_json::to_string_pretty(&d).unwrap_or_default() + "\n",
                    None,
                ));
            }
            let t = ctx.tree()?;
            let Some(it) = tree::find(&t, &target) else {
                return Err(CliError::Refused(format!("no such object {target:?}")));
            };
            tree::draw(it, ctx.color, None)
        }
        "cd" => {
            let target = match rest.first() {
                Some(p) => tree::resolve(&path, p),
                None => "/".into(),
            };
            let t = ctx.tree()?;
            if tree::parse(&target).is_none() || tree::find(&t, &target).is_none() {
                return Err(CliError::Refused(format!("no such object {target:?}")));
            }
            return Ok((String::new(), Some(target)));
        }
        "pwd" => format!("{path}\n"),
        "exit" => String::new(),
        "sessions" => sessions(ctx)?,
        "status" => serde_json::to_string_pretty(&ctx.status()?).unwrap_or_default() + "\n",
        "saveconfig" => {
            let a = ctx.client.call(Method::POST, "/api/v1/config/save", None)?;
            if !a.status.is_success() {
                return Err(CliError::Refused(a.error_text()));
            }
            "configuration saved\n".into()
        }
        "info" | "get" => info(ctx, &node, cmd, rest)?,
        "create" => create(ctx, &node, Args::parse(rest))?,
        "delete" => delete(ctx, &node, Args::parse(rest))?,
        "set" => set(ctx, &node, rest)?,
        other => {
            return usage(format!(
                "unknown command {other:?} at {path}; commands here:\n{}",
                help(&node)
            ))
        }
    };
    Ok((out, None))
}

fn create(ctx: &Ctx, node: &Node, mut a: Args) -> Result<String, CliError> {
    match node {
        Node::Kind(kind) => {
            let Some(name) = a.get("name", 0) else {
                return usage(format!("create needs a name:\n{}", help(node)));
            };
            a.take("name");
            let mut b = json!({ "name": name, "type": kind });
            match kind.as_str() {
                "ramdisk" => {
                    let Some(s) = a.get("size", 1) else {
                        return usage("a ramdisk needs a size: create NAME SIZE (e.g. 1G)");
                    };
                    b["size"] = size(&s)?;
                }
                "rbd" => {
                    let Some(spec) = a.get("image", 1) else {
                        return usage(format!("rbd needs its image:\n{}", help(node)));
                    };
                    a.take("image");
                    let Some((pool, image)) = spec.split_once('/') else {
                        return usage(format!("{spec:?}: give the image as POOL/IMAGE"));
                    };
                    b["pool"] = json!(pool);
                    b["image"] = json!(image);
                    for k in ["ceph_conf", "keyring"] {
                        if let Some(p) = a.take(k) {
                            let p = std::path::absolute(&p).unwrap_or_else(|_| PathBuf::from(&p));
                            b[k] = json!(p);
                        }
                    }
                    for k in ["client", "namespace"] {
                        if let Some(v) = a.take(k) {
                            b[k] = json!(v);
                        }
                    }
                    if let Some(v) = a.take("op_timeout") {
                        b["op_timeout"] = json!(num(&v, "op_timeout")?);
                    }
                }
                _ => {
                    let Some(p) = a.get("file_or_dev", 1).or_else(|| a.get("path", 1)) else {
                        return usage(format!("{kind} needs a path:\n{}", help(node)));
                    };
                    let p = std::path::absolute(&p).unwrap_or_else(|_| PathBuf::from(&p));
                    b["path"] = json!(p);
                    if kind == "fileio" {
                        if let Some(s) = a.get("size", 2) {
                            b["size"] = size(&s)?;
                        }
                    }
                }
            }
            for k in ["file_or_dev", "path", "size"] {
                a.take(k);
            }
            if let Some(v) = a.take("write_back") {
                b["write_back"] = json!(flag(&v)?);
            }
            if let Some(v) = a.take("read_only") {
                b["read_only"] = json!(flag(&v)?);
            }
            if let Some(v) = a.take("block_size") {
                b["block_size"] = json!(num(&v, "block_size")?);
            }
            if let Some(v) = a.take("sanitize_rate") {
                b["sanitize_rate"] = size(&v)?;
            }
            a.finish("create")?;
            ctx.change(Method::POST, "/api/v1/backstores", Some(b))
        }
        Node::Iscsi => {
            let Some(iqn) = a.get("wwn", 0) else {
                return usage(
                    "create needs the target's name: create iqn.2026-11.com.example:disk1",
                );
            };
            a.take("wwn");
            a.finish("create")?;
            ctx.change(Method::POST, "/api/v1/targets", Some(json!({ "iqn": iqn })))
        }
        Node::Target(iqn) => {
            let mut b = json!({});
            if let Some(t) = a.get("tag", 0) {
                b["tag"] = json!(num(&t, "tag")?);
            }
            a.take("tag");
            a.finish("create")?;
            ctx.change(
                Method::POST,
                &format!("/api/v1/targets/{}/tpgs", seg(iqn)),
                Some(b),
            )
        }
        Node::Luns(iqn, tag) => {
            let b = new_lun(node, a)?;
            ctx.change(
                Method::POST,
                &format!("{}/luns", tpg_base(iqn, *tag)),
                Some(b),
            )
        }
        Node::Portals(iqn, tag) => {
            let Some(ip) = a.get("ip_address", 0) else {
                return usage("create needs an address: create 0.0.0.0 [3260]");
            };
            let address = match a.get("ip_port", 1) {
                Some(port) if ip.contains(':') && !ip.starts_with('[') => format!("[{ip}]:{port}"),
                Some(port) => format!("{ip}:{port}"),
                None => ip,
            };
            a.take("ip_address");
            a.take("ip_port");
            a.finish("create")?;
            ctx.change(
                Method::POST,
                &format!("{}/portals", tpg_base(iqn, *tag)),
                Some(json!({ "address": address })),
            )
        }
        Node::Acls(iqn, tag) => {
            let Some(wwn) = a.get("wwn", 0) else {
                return usage(
                    "create needs the initiator's name: create iqn.1994-05.com.redhat:host1",
                );
            };
            a.take("wwn");
            let map_all = match a.take("map_all").or_else(|| a.take("add_mapped_luns")) {
                Some(v) => flag(&v)?,
                None => false,
            };
            a.finish("create")?;
            ctx.change(
                Method::POST,
                &format!("{}/acls", tpg_base(iqn, *tag)),
                Some(json!({ "initiator": wwn, "map_all": map_all })),
            )
        }
        Node::Acl(iqn, tag, wwn) => {
            let Some(tpg_lun) = a
                .get("tpg_lun", 1)
                .or_else(|| a.get("tpg_lun_or_backstore", 1))
            else {
                return usage("create needs mapped_lun=N tpg_lun=M (e.g. create mapped_lun=0 tpg_lun=1 write_protect=1)");
            };
            let mut b = json!({ "tpg_lun": num(&tpg_lun, "tpg_lun")? });
            if let Some(m) = a.get("mapped_lun", 0) {
                b["mapped_lun"] = json!(num(&m, "mapped_lun")?);
            }
            if let Some(v) = a.take("write_protect").or_else(|| a.take("read_only")) {
                b["read_only"] = json!(flag(&v)?);
            }
            for k in ["tpg_lun", "tpg_lun_or_backstore", "mapped_lun"] {
                a.take(k);
            }
            a.finish("create")?;
            ctx.change(
                Method::POST,
                &format!("{}/acls/{}/mapped_luns", tpg_base(iqn, *tag), seg(wwn)),
                Some(b),
            )
        }
        Node::Vhost => {
            let (Some(name), Some(socket)) = (a.get("name", 0), a.get("socket", 1)) else {
                return usage(format!("create needs a name and a socket:\n{}", help(node)));
            };
            let socket = std::path::absolute(&socket).unwrap_or_else(|_| PathBuf::from(&socket));
            let mut b = json!({ "name": name, "socket": socket });
            for k in ["initiator", "wwn"] {
                if let Some(v) = a.take(k) {
                    b[k] = json!(v);
                }
            }
            if let Some(v) = a.take("num_queues") {
                b["num_queues"] = json!(num(&v, "num_queues")?);
            }
            a.take("name");
            a.take("socket");
            a.finish("create")?;
            ctx.change(Method::POST, "/api/v1/vhost", Some(b))
        }
        Node::VhostLuns(name) => {
            let b = new_lun(node, a)?;
            ctx.change(
                Method::POST,
                &format!("/api/v1/vhost/{}/luns", seg(name)),
                Some(b),
            )
        }
        _ => usage(format!(
            "nothing to create here; commands here:\n{}",
            help(node)
        )),
    }
}

/// `create BACKSTORE [lun=N] [read_only=1]` in a `luns` folder (a tpg's or
/// a vhost controller's): the API's new LUN.
fn new_lun(node: &Node, mut a: Args) -> Result<Value, CliError> {
    let Some(store) = a.get("storage_object", 0).or_else(|| a.get("backstore", 0)) else {
        return usage(format!("create needs a backstore:\n{}", help(node)));
    };
    let name = store.rsplit('/').next().unwrap_or(&store).to_string();
    let mut b = json!({ "backstore": name });
    if let Some(l) = a.take("lun").or_else(|| a.pos.get(1).cloned()) {
        b["lun"] = json!(num(&l, "lun")?);
    }
    if let Some(v) = a.take("read_only").or_else(|| a.take("write_protect")) {
        b["read_only"] = json!(flag(&v)?);
    }
    a.take("storage_object");
    a.take("backstore");
    a.finish("create")?;
    Ok(b)
}

fn delete(ctx: &Ctx, node: &Node, a: Args) -> Result<String, CliError> {
    let first = a.pos.first().cloned();
    let need = |what: &str| CliError::Usage(format!("delete needs {what}:\n{}", help(node)));
    match node {
        Node::Kind(_) => {
            let n = a.get("name", 0).ok_or_else(|| need("a name"))?;
            ctx.change(
                Method::DELETE,
                &format!("/api/v1/backstores/{}", seg(&n)),
                None,
            )
        }
        Node::Iscsi => {
            let n = a.get("wwn", 0).ok_or_else(|| need("a target name"))?;
            ctx.change(
                Method::DELETE,
                &format!("/api/v1/targets/{}", seg(&n)),
                None,
            )
        }
        Node::Target(iqn) => {
            let t = a.get("tag", 0).ok_or_else(|| need("a tpg"))?;
            let t = u16::try_from(num(&t, "tag")?).map_err(|_| need("a tag 1..65535"))?;
            ctx.change(Method::DELETE, &tpg_base(iqn, t), None)
        }
        Node::Luns(iqn, tag) => {
            let l = a.get("lun", 0).ok_or_else(|| need("a LUN"))?;
            let l = num(&l, "lun")?;
            ctx.change(
                Method::DELETE,
                &format!("{}/luns/{l}", tpg_base(iqn, *tag)),
                None,
            )
        }
        Node::Portals(iqn, tag) => {
            let ip = a.get("ip_address", 0).ok_or_else(|| need("an address"))?;
            let address = match a.get("ip_port", 1) {
                Some(port) if ip.contains(':') && !ip.starts_with('[') => format!("[{ip}]:{port}"),
                Some(port) => format!("{ip}:{port}"),
                None => ip,
            };
            ctx.change(
                Method::DELETE,
                &format!("{}/portals/{}", tpg_base(iqn, *tag), seg(&address)),
                None,
            )
        }
        Node::Acls(iqn, tag) => {
            let w = a.get("wwn", 0).ok_or_else(|| need("an initiator name"))?;
            ctx.change(
                Method::DELETE,
                &format!("{}/acls/{}", tpg_base(iqn, *tag), seg(&w)),
                None,
            )
        }
        Node::Acl(iqn, tag, wwn) => {
            let m = a
                .get("mapped_lun", 0)
                .or(first)
                .ok_or_else(|| need("a mapped LUN"))?;
            let m = num(&m, "mapped_lun")?;
            ctx.change(
                Method::DELETE,
                &format!("{}/acls/{}/mapped_luns/{m}", tpg_base(iqn, *tag), seg(wwn)),
                None,
            )
        }
        Node::Vhost => {
            let n = a.get("name", 0).ok_or_else(|| need("a controller name"))?;
            ctx.change(Method::DELETE, &format!("/api/v1/vhost/{}", seg(&n)), None)
        }
        Node::VhostLuns(name) => {
            let l = a.get("lun", 0).ok_or_else(|| need("a LUN"))?;
            let l = num(&l, "lun")?;
            ctx.change(
                Method::DELETE,
                &format!("/api/v1/vhost/{}/luns/{l}", seg(name)),
                None,
            )
        }
        _ => usage(format!(
            "nothing to delete here (delete from the parent); commands here:\n{}",
            help(node)
        )),
    }
}

fn set(ctx: &Ctx, node: &Node, rest: &[String]) -> Result<String, CliError> {
    let Some(group) = rest.first() else {
        return usage(format!(
            "set needs a group (attribute or auth):\n{}",
            help(node)
        ));
    };
    let mut a = Args::parse(&rest[1..]);
    match (node, group.as_str()) {
        (Node::Backstore(_, name), "attribute") => {
            let mut b = json!({});
            for k in ["read_only", "write_back", "removable", "thin"] {
                if let Some(v) = a.take(k) {
                    b[k] = json!(flag(&v)?);
                }
            }
            for k in ["size", "sanitize_rate"] {
                if let Some(v) = a.take(k) {
                    b[k] = size(&v)?;
                }
            }
            a.finish("set attribute")?;
            ctx.change(
                Method::PATCH,
                &format!("/api/v1/backstores/{}", seg(name)),
                Some(b),
            )
        }
        (Node::Backstore(_, name), "wwn") => {
            let mut b = json!({});
            for k in ["vendor", "product", "revision", "serial", "naa"] {
                if let Some(v) = a.take(k) {
                    b[k] = json!(v);
                }
            }
            a.finish("set wwn")?;
            ctx.change(
                Method::PATCH,
                &format!("/api/v1/backstores/{}", seg(name)),
                Some(b),
            )
        }
        (Node::Tpg(iqn, tag), "attribute") => {
            let mut b = json!({});
            let mut out = String::new();
            if let Some(v) = a.take("generate_node_acls") {
                b["mode"] = json!(if flag(&v)? { "demo" } else { "acl" });
            }
            if let Some(v) = a.take("demo_mode_write_protect") {
                b["demo_read_only"] = json!(flag(&v)?);
            }
            if let Some(v) = a.take("relative_port_id") {
                b["relative_port_id"] = json!(num(&v, "relative_port_id")?);
            }
            if let Some(v) = a.take("authentication") {
                if flag(&v)? {
                    // CHAP is required wherever credentials are set: the
                    // group's, or every ACL's own. Say which are missing.
                    let d = ctx.doc()?;
                    let Some(g) = d
                        .target(iqn)
                        .and_then(|t| t.tpg.iter().find(|g| g.tag == *tag))
                    else {
                        return Err(CliError::Refused(format!("no tpg{tag} in {iqn}")));
                    };
                    let missing: Vec<&str> = g
                        .acl
                        .iter()
                        .filter(|a| a.auth.is_none())
                        .map(|a| a.initiator.as_str())
                        .collect();
                    if !chap_required(g) {
                        return Err(CliError::Refused(format!(
                            "authentication=1 needs credentials: `set auth userid=NAME password=SECRET` on this tpg (every initiator), or on each ACL{}",
                            if missing.is_empty() {
                                String::new()
                            } else {
                                format!(" (none yet for: {})", missing.join(", "))
                            }
                        )));
                    }
                    out.push_str("CHAP is required for every initiator of this tpg already\n");
                } else {
                    out.push_str(&ctx.change(
                        Method::DELETE,
                        &format!("{}/auth", tpg_base(iqn, *tag)),
                        None,
                    )?);
                }
            }
            a.finish("set attribute")?;
            if b.as_object().is_some_and(|o| !o.is_empty()) {
                out.push_str(&ctx.change(Method::PATCH, &tpg_base(iqn, *tag), Some(b))?);
            }
            Ok(out)
        }
        (Node::Tpg(iqn, tag), "alua") => {
            let mut b = json!({});
            if let Some(v) = a.take("state") {
                if crate::config::AluaState::ALL.iter().all(|s| s.name() != v) {
                    return usage(format!(
                        "state={v}: one of {}",
                        crate::config::AluaState::ALL.map(|s| s.name()).join(", ")
                    ));
                }
                b["alua_state"] = json!(v);
            }
            if let Some(v) = a.take("preferred") {
                b["alua_preferred"] = json!(flag(&v)?);
            }
            if let Some(v) = a.take("group") {
                b["alua_group"] = json!(num(&v, "group")?);
            }
            a.finish("set alua")?;
            ctx.change(Method::PATCH, &tpg_base(iqn, *tag), Some(b))
        }
        (Node::Tpg(iqn, tag), "auth") => {
            let b = auth_body(&mut a)?;
            a.finish("set auth")?;
            ctx.change(
                Method::PUT,
                &format!("{}/auth", tpg_base(iqn, *tag)),
                Some(b),
            )
        }
        (Node::Acl(iqn, tag, wwn), "auth") => {
            let b = auth_body(&mut a)?;
            a.finish("set auth")?;
            ctx.change(
                Method::PUT,
                &format!("{}/acls/{}/auth", tpg_base(iqn, *tag), seg(wwn)),
                Some(b),
            )
        }
        (Node::Acl(iqn, tag, wwn), "attribute") => {
            match a.take("authentication") {
                Some(v) if !flag(&v)? => {}
                _ => return usage("set attribute authentication=0 clears this initiator's CHAP; set it with `set auth`"),
            }
            a.finish("set attribute")?;
            ctx.change(
                Method::DELETE,
                &format!("{}/acls/{}/auth", tpg_base(iqn, *tag), seg(wwn)),
                None,
            )
        }
        (Node::Iscsi, "discovery_auth") => {
            if let Some(v) = a.take("enable") {
                if !flag(&v)? {
                    a.finish("set discovery_auth")?;
                    return ctx.change(Method::DELETE, "/api/v1/discovery_auth", None);
                }
            }
            let b = auth_body(&mut a)?;
            a.finish("set discovery_auth")?;
            ctx.change(Method::PUT, "/api/v1/discovery_auth", Some(b))
        }
        _ => usage(format!(
            "cannot set {group:?} here; commands here:\n{}",
            help(node)
        )),
    }
}

fn info(ctx: &Ctx, node: &Node, cmd: &str, rest: &[String]) -> Result<String, CliError> {
    let d = ctx.doc()?;
    let v: Value = match node {
        Node::Backstore(_, n) => {
            let mut v = json!(d.backstore(n));
            // What hosts see, set or derived: what to pin before a move.
            if let Some(b) = d.backstore(n) {
                v["wwn"] = json!({
                    "serial": b.serial(),
                    "naa": b.naa().map(|n| n.hex()).unwrap_or_default(),
                });
            }
            v
        }
        Node::Target(t) => json!(d.target(t)),
        Node::Tpg(t, g) | Node::Luns(t, g) | Node::Acls(t, g) | Node::Portals(t, g) => {
            let tpg = d.target(t).and_then(|t| t.tpg.iter().find(|x| x.tag == *g));
            if cmd == "get" {
                let Some(tpg) = tpg else {
                    return Err(CliError::Refused(format!("no tpg{g} in {t}")));
                };
                let what = rest.first().map(String::as_str).unwrap_or("attribute");
                let text = match what {
                    "alua" => format!(
                        "state={}\npreferred={}\ngroup={}\n",
                        tpg.alua_state.name(),
                        u8::from(tpg.alua_preferred),
                        tpg.alua_group_id()
                    ),
                    "auth" => match &tpg.auth {
                        Some(a) => format!(
                            "userid={}\nmutual_userid={}\n",
                            a.userid,
                            a.mutual_userid.clone().unwrap_or_default()
                        ),
                        None => "authentication=0 (no CHAP at group level)\n".into(),
                    },
                    _ => format!(
                        "authentication={}\ngenerate_node_acls={}\ndemo_mode_write_protect={}\nrelative_port_id={}\n",
                        u8::from(chap_required(tpg)),
                        u8::from(tpg.mode == crate::config::TpgMode::Demo),
                        u8::from(tpg.demo_read_only),
                        tpg.relative_port_id.map(|r| r.to_string()).unwrap_or_else(|| "(derived)".into())
                    ),
                };
                return Ok(text);
            }
            json!(tpg)
        }
        Node::Acl(t, g, w) | Node::MappedLun(t, g, w, _) => json!(d
            .target(t)
            .and_then(|t| t.tpg.iter().find(|x| x.tag == *g))
            .and_then(|g| g.acl.iter().find(|a| a.initiator.eq_ignore_ascii_case(w)))),
        Node::Lun(t, g, l) => json!(d
            .target(t)
            .and_then(|t| t.tpg.iter().find(|x| x.tag == *g))
            .and_then(|g| g.lun.iter().find(|x| x.lun == *l))),
        Node::VhostCtl(n) | Node::VhostLuns(n) => json!(d.vhost(n)),
        Node::VhostLun(n, l) => json!(d.vhost(n).and_then(|v| v.lun.iter().find(|x| x.lun == *l))),
        _ => json!(d),
    };
    if v.is_null() {
        return Err(CliError::Refused("no such object".into()));
    }
    Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n")
}

/// `rtgt sessions`: one block per session.
fn sessions(ctx: &Ctx) -> Result<String, CliError> {
    let a = ctx.client.get("/api/v1/sessions")?;
    if !a.status.is_success() {
        return Err(CliError::Refused(a.error_text()));
    }
    if ctx.json {
        return Ok(String::from_utf8_lossy(&a.body).into_owned() + "\n");
    }
    let v = a.json();
    let list = v["sessions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok("no sessions\n".into());
    }
    let mut out = String::new();
    for s in list {
        out.push_str(&format!(
            "{} ({}) -> {} tpg{}  isid {} tsih {}\n",
            s["initiator"].as_str().unwrap_or("?"),
            s["session_type"].as_str().unwrap_or("?"),
            s["target"].as_str().unwrap_or("?"),
            s["tpg"],
            s["isid"].as_str().unwrap_or("?"),
            s["tsih"],
        ));
        for c in s["connections"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  connection {}: {} -> {}\n",
                c["cid"],
                c["peer"].as_str().unwrap_or("?"),
                c["local"].as_str().unwrap_or("?")
            ));
        }
        let p = &s["params"];
        out.push_str(&format!(
            "  HeaderDigest={} DataDigest={} MaxRecvDataSegmentLength={} MaxBurstLength={} FirstBurstLength={} ImmediateData={} InitialR2T={}\n",
            p["header_digest"].as_str().unwrap_or("?"),
            p["data_digest"].as_str().unwrap_or("?"),
            p["max_recv_data_segment_length"],
            p["max_burst_length"],
            p["first_burst_length"],
            p["immediate_data"],
            p["initial_r2t"],
        ));
        for l in s["luns"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  lun{} -> {}{}\n",
                l["lun"],
                l["lu"].as_str().unwrap_or("?"),
                if l["read_only"].as_bool() == Some(true) {
                    " (ro)"
                } else {
                    ""
                }
            ));
        }
        let t = &s["totals"];
        out.push_str(&format!(
            "  commands {} (read {}, write {}), {} read, {} written, errors {}\n",
            t["commands"],
            t["read_commands"],
            t["write_commands"],
            tree::human(t["read_bytes"].as_u64().unwrap_or(0)),
            tree::human(t["written_bytes"].as_u64().unwrap_or(0)),
            t["errors"],
        ));
    }
    Ok(out)
}

/// `rtgt config dump`.
pub fn dump(ctx: &Ctx, secrets: bool) -> Result<String, CliError> {
    let path = if secrets {
        "/api/v1/config?secrets=true"
    } else {
        "/api/v1/config"
    };
    let a = ctx.client.get(path)?;
    if !a.status.is_success() {
        return Err(CliError::Refused(a.error_text()));
    }
    Ok(String::from_utf8_lossy(&a.body).into_owned())
}

/// `rtgt diff FILE` (`apply` false) and `rtgt apply FILE`.
pub fn apply(ctx: &Ctx, file: &std::path::Path, apply: bool) -> Result<String, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    // The rule `serve --config` holds a file to; the daemon checks the rest.
    if let Ok(doc) = crate::config::read(file, &text) {
        crate::config::file::check_private(file, &text, &doc)
            .map_err(|e| CliError::Refused(e.to_string()))?;
    }
    let name = seg(&file.display().to_string());
    let q = if apply {
        format!("/api/v1/config?name={name}")
    } else {
        format!("/api/v1/config?dry_run=true&name={name}")
    };
    let a = ctx
        .client
        .call(Method::PUT, &q, Some(("text/plain", text.into_bytes())))?;
    if !a.status.is_success() {
        return Err(CliError::Refused(a.error_text()));
    }
    if ctx.json {
        return Ok(String::from_utf8_lossy(&a.body).into_owned() + "\n");
    }
    let v = a.json();
    let mut out = changes_text(&v);
    if !apply && out != "nothing to change\n" {
        out.push_str("(not applied: `rtgt apply FILE` makes these changes)\n");
    }
    Ok(out)
}
