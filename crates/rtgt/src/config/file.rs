//! The configuration file: TOML text read into the model, every error
//! named by FILE:LINE. The rules are not here ([`super::validate`] has
//! them); this layer only knows where in the text each value is.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Doc;
use super::validate::{self, Invalid, Seg};
use super::values::{DEMO_IQN, ISCSI_PORT};
use crate::model::Model;

/// A configuration error, located in its file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The text of a file, for turning positions into lines.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the value at `at`, or of the nearest enclosing table
    /// the text has (a value that was left out is reported where it
    /// belongs).
    fn line_at(&self, at: &[Seg]) -> Option<usize> {
        use toml_edit::{Item, Table, Value};
        enum Cur<'a> {
            Item(&'a Item),
            Table(&'a Table),
            Value(&'a Value),
        }
        let doc = toml_edit::ImDocument::parse(self.text).ok()?;
        let mut cur = Cur::Table(doc.as_table());
        let mut best = None;
        for seg in at {
            let next = match (&cur, seg) {
                (Cur::Table(t), Seg::Key(k)) => t.get(k).map(Cur::Item),
                (Cur::Item(Item::Table(t)), Seg::Key(k)) => t.get(k).map(Cur::Item),
                (Cur::Item(Item::Value(Value::InlineTable(t))), Seg::Key(k))
                | (Cur::Value(Value::InlineTable(t)), Seg::Key(k)) => t.get(k).map(Cur::Value),
                (Cur::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(*i).map(Cur::Table),
                (Cur::Item(Item::Value(Value::Array(a))), Seg::Index(i))
                | (Cur::Value(Value::Array(a)), Seg::Index(i)) => a.get(*i).map(Cur::Value),
                _ => None,
            };
            let Some(next) = next else { break };
            let span = match next {
                Cur::Item(Item::Value(v)) | Cur::Value(v) => v.span(),
                Cur::Item(Item::Table(t)) | Cur::Table(t) => t.span(),
                Cur::Item(Item::ArrayOfTables(a)) => a.span(),
                Cur::Item(Item::None) => None,
            };
            best = span.or(best);
            cur = next;
        }
        best.map(|s| self.line_of(s.start))
    }

    fn error(&self, e: Invalid) -> ConfigError {
        let line = self.line_at(&e.at);
        let related = match &e.related {
            Some(r) => match self.line_at(r) {
                Some(l) => format!(" (line {l})"),
                None => String::new(),
            },
            None => String::new(),
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            message: e.message.replace("{related}", &related),
        }
    }
}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<Model, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let model = parse(path, &text)?;
    check_private(path, &text, &model.doc)?;
    Ok(model)
}

/// Secrets in the file itself: the file is held to the rule of a
/// password file (`doc` is what `text`, the file at `path`, holds).
pub fn check_private(path: &Path, text: &str, doc: &Doc) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let Some((at, key)) = validate::inline_secrets(doc).into_iter().next() else {
        return Ok(());
    };
    let src = Source { file: path, text };
    Err(ConfigError {
        file: path.to_path_buf(),
        line: src.line_at(&at),
        message: format!(
            "inline {key} in a file readable by group or others (mode {mode:04o}): \
             chmod 600 {}, or move the secret to a {key}_file",
            path.display()
        ),
    })
}

/// The model in config text, unchecked; `file` names it in errors.
pub fn read(file: &Path, text: &str) -> Result<Doc, ConfigError> {
    let src = Source { file, text };
    toml::from_str::<Doc>(text).map_err(|e| {
        let mut message = e.message().to_string();
        // The one required key whose absence deserves the reason.
        if message.contains("missing field `mode`") {
            message = "a tpg needs a mode: mode = \"acl\" (only initiators with an `acl` entry) \
                       or mode = \"demo\" (any initiator, every LUN)"
                .into();
        }
        ConfigError {
            file: file.to_path_buf(),
            line: e.span().map(|s| src.line_of(s.start)),
            message,
        }
    })
}

/// Parse and validate config text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Model, ConfigError> {
    let doc = read(file, text)?;
    // Errors point into the text as written, so check before sorting
    // (the secrets are kept by name, not position).
    let mut model = validate::validate(&doc).map_err(|e| Source { file, text }.error(e))?;
    model.doc.canonicalize();
    Ok(model)
}

/// The built-in default: a 1 GiB RAM disk as LUN 0 of the demo target on
/// 127.0.0.1:3260, open to any initiator.
pub fn demo() -> Model {
    let text = format!(
        r#"
[[backstore]]
name = "ram0"
type = "ramdisk"
size = "1G"

[[target]]
iqn = "{DEMO_IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:{ISCSI_PORT}"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "ram0"
"#
    );
    match parse(Path::new("<built-in>"), &text) {
        Ok(m) => m,
        // The text above is a constant; its own test checks it loads.
        Err(e) => unreachable!("built-in config: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::*;
    use crate::config::Doc;

    /// The configuration in `text` (in the file's order, as the old
    /// tests index it), or the error a file with it gets.
    fn parse(text: &str) -> Result<Doc, ConfigError> {
        super::parse(Path::new("test.toml"), text)?;
        read(Path::new("test.toml"), text)
    }

    #[test]
    fn lu_identity_is_checked_and_unique() {
        let two = |a: &str, b: &str| {
            parse(&format!(
                "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n{a}\n\
                 [[backstore]]\nname = \"b\"\ntype = \"ramdisk\"\nsize = \"1M\"\n{b}\n"
            ))
        };
        assert!(two(
            "naa = \"6001405a1b2c3d4e5f60718293a4b5c6\"",
            "serial = \"x1\""
        )
        .is_ok());
        for (a, b, line, what) in [
            (
                "naa = \"3000000000000001\"",
                "naa = \"0x3000000000000001\"",
                10,
                "same naa",
            ),
            ("serial = \"s1\"", "serial = \"s1\"", 10, "same serial"),
            ("vendor = \"NINECHARS\"", "", 5, "longer than 8"),
            ("product = \"seventeen chars!!\"", "", 5, "longer than 16"),
            ("revision = \"12345\"", "", 5, "longer than 4"),
            ("naa = \"5001405\"", "", 5, "16 or 32 hex digits"),
            ("serial = \" padded\"", "", 5, "spaces"),
        ] {
            let e = two(a, b).unwrap_err();
            assert_eq!(e.line, Some(line), "{a} / {b}: {e}");
            assert!(e.message.contains(what), "{a} / {b}: {e}");
        }
    }

    #[test]
    fn vhost_controllers_are_checked() {
        let base = "[[backstore]]\nname = \"r\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\
                    [[target]]\niqn = \"iqn.2026-12.a:t\"\n[[target.tpg]]\ntag = 1\nmode = \"demo\"\n";
        let with = |v: &str| parse(&format!("{base}{v}"));
        // Line 10 is the first line of the first [[vhost]].
        let ok = with(
            "[[vhost]]\nsocket = \"/run/vm1.sock\"\n[[vhost.lun]]\nlun = 0\nbackstore = \"r\"\n",
        )
        .unwrap();
        let v = &ok.vhost[0];
        assert_eq!(v.name(), "vm1", "named after the socket");
        assert!(v.initiator().starts_with("naa.3") && v.initiator().len() == 20);
        assert!(v.wwn().starts_with("naa.3") && v.wwn() != v.initiator());
        assert!(v.alua_group_id() >= 0x8000, "clear of the tpgs' tags");
        assert_eq!(v.num_queues(), 8);
        for (v, line, what) in [
            ("[[vhost]]\nsocket = \"/a.sock\"\n[[vhost]]\nsocket = \"/b/a.sock\"\n", 13, "duplicate vhost controller \"a\""),
            ("[[vhost]]\nsocket = \"/a.sock\"\n[[vhost]]\nname = \"b\"\nsocket = \"/a.sock\"\n", 14, "used by another vhost"),
            ("[[vhost]]\nsocket = \"/a.sock\"\nname = \"x/y\"\n", 12, "letters, digits"),
            ("[[vhost]]\nsocket = \"/a.sock\"\nnum_queues = 0\n", 12, "num_queues must be 1..62"),
            ("[[vhost]]\nsocket = \"/a.sock\"\nnum_queues = 63\n", 12, "num_queues must be 1..62"),
            ("[[vhost]]\nsocket = \"/a.sock\"\nwwn = \"naa.12\"\n", 12, "16 hex digits"),
            ("[[vhost]]\nsocket = \"/a.sock\"\ninitiator = \"vm one\"\n", 12, "initiator name"),
            ("[[vhost]]\nsocket = \"/a.sock\"\n[[vhost.lun]]\nlun = 0\nbackstore = \"nope\"\n", 14, "no backstore named \"nope\""),
            ("[[vhost]]\nsocket = \"/a.sock\"\n[[vhost.lun]]\nlun = 0\nbackstore = \"r\"\n[[vhost.lun]]\nlun = 0\nbackstore = \"r\"\n", 16, "mapped twice in vhost controller \"a\""),
            ("[[vhost]]\nsocket = \"/a.sock\"\nrelative_port_id = 7\n[[vhost]]\nsocket = \"/b.sock\"\nrelative_port_id = 7\n", 15, "used by another port"),
            // A vhost port in the tpg's ALUA group must agree with its state.
            ("[[vhost]]\nsocket = \"/a.sock\"\nalua_group = 1\nalua_state = \"standby\"\n", 13, "target port group 1"),
        ] {
            let e = with(v).unwrap_err();
            assert_eq!(e.line, Some(line), "{v}: {e}");
            assert!(e.message.contains(what), "{v}: {e}");
        }
        // ... and may share it when it does.
        assert!(with("[[vhost]]\nsocket = \"/a.sock\"\nalua_group = 1\n").is_ok());
    }

    #[test]
    fn demo_is_valid() {
        let c = demo().doc;
        assert_eq!(c.target[0].iqn, DEMO_IQN);
        assert_eq!(c.backstore[0].size.unwrap().0, 1 << 30);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12Q").is_err());
    }

    #[test]
    fn syntax_error_names_line() {
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().starts_with("test.toml:4:"), "{e}");
    }

    #[test]
    fn unknown_backstore_reference_names_line() {
        let text = "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\n[[target]]\niqn = \"iqn.2026-11.x:y\"\n[[target.tpg]]\ntag = 1\nmode = \"acl\"\n[[target.tpg.lun]]\nlun = 0\nbackstore = \"b\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("no backstore named \"b\""), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e =
            parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\ncolour = 3\n")
                .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn bad_values() {
        let e = parse(
            "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nblock_size = 1000\n",
        )
        .unwrap_err();
        assert!(e.message.contains("block_size 1000"), "{e}");
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"fileio\"\n").unwrap_err();
        assert!(e.message.contains("needs a path"), "{e}");
        let e = parse("[[target]]\niqn = \"bogus\"\n").unwrap_err();
        assert!(e.message.contains("iqn."), "{e}");
        let e = parse("[[target]]\niqn = \"iqn.2026-11.a:b\"\n[[target.tpg]]\ntag = 1\nportals = [\"1.2.3.4:notaport\"]\nmode = \"demo\"\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn lun_options() {
        let c = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nremovable = true\nphysical_block_size = 4096\nthin = false\n").unwrap();
        let b = &c.backstore[0];
        assert!(b.removable);
        assert_eq!(b.physical_block_size, Some(4096));
        assert_eq!(b.thin, Some(false));
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nphysical_block_size = 1000\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let e = parse("[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\nblock_size = 4096\nphysical_block_size = 512\n").unwrap_err();
        assert!(e.message.contains("physical_block_size 512"), "{e}");
    }

    #[test]
    fn sanitize_rate() {
        let head = "[[backstore]]\nname = \"a\"\ntype = \"ramdisk\"\nsize = \"1M\"\n";
        let rate = |text: &str| {
            parse(&format!("{head}{text}")).map(|c| c.backstore[0].sanitize_rate.map(|r| r.0))
        };
        assert_eq!(rate("").unwrap(), None);
        assert_eq!(rate("sanitize_rate = \"100M\"\n").unwrap(), Some(100 << 20));
        assert_eq!(rate("sanitize_rate = 2097152\n").unwrap(), Some(2 << 20));
        assert_eq!(rate("sanitize_rate = 0\n").unwrap(), Some(0));
        for (bad, says) in [
            ("20", "too slow"),
            ("\"512K\"", "too slow"),
            ("\"fast\"", "invalid size"),
            ("\"20Q\"", "unknown unit"),
            ("-1", "negative"),
            ("true", "expected a size"),
        ] {
            let e = rate(&format!("sanitize_rate = {bad}\n")).unwrap_err();
            assert_eq!(e.line, Some(5), "{bad}: {e}");
            assert!(e.to_string().starts_with("test.toml:5: "), "{e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    const TPG: &str = "[[backstore]]\nname = \"x\"\ntype = \"ramdisk\"\nsize = \"1M\"\n\
        [[target]]\niqn = \"iqn.2026-11.a:t\"\n[[target.tpg]]\ntag = 1\n";

    /// Two ACLs and a group credential, with the secrets given.
    fn three_credentials(
        group: &str,
        ow2: &str,
        mu2: &str,
        mu2_mutual: &str,
        disc_mutual: &str,
    ) -> String {
        format!(
            "[iscsi.discovery_auth]\nuserid = \"d\"\npassword = \"discovery-secret\"\n\
             mutual_userid = \"dt\"\nmutual_password = \"{disc_mutual}\"\n\
             {TPG}mode = \"acl\"\n\
             [target.tpg.auth]\nuserid = \"g\"\npassword = \"{group}\"\n\
             [[target.tpg.acl]]\ninitiator = \"iqn.1994-05.x:ow2\"\n\
             [target.tpg.acl.auth]\nuserid = \"ow2\"\npassword = \"{ow2}\"\n\
             [[target.tpg.acl]]\ninitiator = \"iqn.1994-05.x:mu2\"\n\
             [target.tpg.acl.auth]\nuserid = \"mu2\"\npassword = \"{mu2}\"\n\
             mutual_userid = \"tgt\"\nmutual_password = \"{mu2_mutual}\"\n"
        )
    }

    #[test]
    fn no_secret_authenticates_both_initiators_and_the_target() {
        let ok = three_credentials(
            "group-secret-1",
            "ow2-secret-123",
            "mu2-secret-123",
            "target-secret-1",
            "disc-target-secret",
        );
        parse(&ok).unwrap();
        // The same target secret for discovery and an ACL is no clash.
        parse(&three_credentials(
            "group-secret-1",
            "ow2-secret-123",
            "mu2-secret-123",
            "target-secret-1",
            "target-secret-1",
        ))
        .unwrap();
        for (case, text, line, places) in [
            (
                "ACL ow2's initiator secret is ACL mu2's mutual secret",
                three_credentials(
                    "group-secret-1",
                    "shared-secret-S",
                    "mu2-secret-123",
                    "shared-secret-S",
                    "disc-target-secret",
                ),
                28,
                ["ACL \"iqn.1994-05.x:mu2\"", "ACL \"iqn.1994-05.x:ow2\""],
            ),
            (
                "the group secret is an ACL's mutual secret",
                three_credentials(
                    "shared-secret-S",
                    "ow2-secret-123",
                    "mu2-secret-123",
                    "shared-secret-S",
                    "disc-target-secret",
                ),
                28,
                ["ACL \"iqn.1994-05.x:mu2\"", "tpg 1"],
            ),
            (
                "an ACL's initiator secret is the discovery mutual secret",
                three_credentials(
                    "group-secret-1",
                    "shared-secret-S",
                    "mu2-secret-123",
                    "target-secret-1",
                    "shared-secret-S",
                ),
                4,
                ["[iscsi.discovery_auth]", "ACL \"iqn.1994-05.x:ow2\""],
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, Some(line), "{case}: {e}");
            assert!(e.message.contains("RFC 7143 9.2.1"), "{case}: {e}");
            for p in places {
                assert!(e.message.contains(p), "{case}: {p} not in {e}");
            }
            assert!(!e.to_string().contains("shared-secret-S"), "{case}: {e}");
            // A change through the control API is validated the same way.
            let d: Doc = toml::from_str(&text).unwrap();
            let e = d.check().unwrap_err();
            assert!(
                e.contains("RFC 7143 9.2.1") && e.contains("userid)") && !e.contains("{related}"),
                "{case}: {e}"
            );
        }
    }

    #[test]
    fn inline_secrets_need_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from a file 123\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let head = format!("{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\n");
        let inline = format!("{head}password = \"twelve chars\"\n");
        let by_file = format!("{head}password_file = \"{}\"\n", secret.display());
        let f = dir.path().join("rtgt.toml");
        for (text, mode, ok) in [
            (&inline, 0o644, false),
            (&inline, 0o640, false),
            (&inline, 0o604, false),
            (&inline, 0o600, true),
            (&inline, 0o400, true),
            (&by_file, 0o644, true),
        ] {
            std::fs::write(&f, text).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            match load(&f) {
                Ok(_) => assert!(ok, "mode {mode:o} accepted"),
                Err(e) => {
                    assert!(!ok, "mode {mode:o}: {e}");
                    assert_eq!(e.line, Some(12), "{e}");
                    assert!(
                        e.message.contains("chmod 600") && e.message.contains("password_file"),
                        "{e}"
                    );
                    assert!(
                        e.to_string().starts_with(&format!("{}:12:", f.display())),
                        "{e}"
                    );
                    assert!(!e.to_string().contains("twelve chars"), "{e}");
                }
            }
        }
    }

    #[test]
    fn chap_min_challenge_is_checked() {
        let t = |v: &str| format!("[iscsi]\nchap_min_challenge = {v}\n{TPG}mode = \"demo\"\n");
        for (v, ok) in [
            ("16", true),
            ("1", true),
            ("1024", true),
            ("0", false),
            ("1025", false),
            ("-1", false),
        ] {
            match parse(&t(v)) {
                Ok(c) => {
                    assert!(ok, "{v} accepted");
                    assert_eq!(
                        c.iscsi.chap_min_challenge.map(|m| m.to_string()),
                        Some(v.to_string())
                    );
                }
                Err(e) => {
                    assert!(!ok, "{v}: {e}");
                    assert_eq!(e.line, Some(2), "{e}");
                }
            }
        }
    }

    #[test]
    fn tpg_mode_is_required() {
        // Reported at the group that lacks it.
        let e = parse(TPG).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("needs a mode"), "{e}");
        parse(&format!("{TPG}mode = \"acl\"\n")).unwrap();
        let e = parse(&format!("{TPG}mode = \"acl\"\ndemo_read_only = true\n")).unwrap_err();
        assert!(e.message.contains("demo_read_only"), "{e}");
        let e = parse(&format!("{TPG}mode = \"open\"\n")).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
    }

    #[test]
    fn acls_and_mapped_luns_are_checked() {
        let head = format!("{TPG}mode = \"acl\"\n[[target.tpg.lun]]\nlun = 3\nbackstore = \"x\"\n");
        let acl = "[[target.tpg.acl]]\ninitiator = \"iqn.2026-11.a:host\"\n";
        parse(&format!("{head}{acl}[[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 3\nread_only = true\n")).unwrap();
        let e = parse(&format!(
            "{head}{acl}[[target.tpg.acl.mapped_lun]]\nmapped_lun = 0\ntpg_lun = 4\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("no LUN 4"), "{e}");
        assert_eq!(e.line, Some(17), "{e}");
        let e = parse(&format!("{head}{acl}{acl}")).unwrap_err();
        assert!(e.message.contains("two ACLs"), "{e}");
        let e = parse(&format!("{head}[[target.tpg.acl]]\ninitiator = \"host\"\n")).unwrap_err();
        assert!(e.message.contains("iqn."), "{e}");
    }

    #[test]
    fn chap_secrets() {
        let head = format!("{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\n");
        let m = super::parse(
            Path::new("test.toml"),
            &format!("{head}password = \"twelve chars\"\n"),
        )
        .unwrap();
        let a = m.secrets.values().next().unwrap();
        assert_eq!(a.initiator.secret.expose(), b"twelve chars");
        // Errors name the line, never the secret.
        let e = parse(&format!("{head}password = \"short\"\n")).unwrap_err();
        assert!(
            e.message.contains("12 to 255") && !e.to_string().contains("short\""),
            "{e}"
        );
        assert!(
            !format!("{m:?}").contains("twelve chars"),
            "Debug leaks the secret"
        );
        let e = parse(&format!(
            "{head}password = \"twelve chars\"\nmutual_userid = \"t\"\nmutual_password = \"twelve chars\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("must differ"), "{e}");
        assert_eq!(e.line, Some(13), "{e}");
        let e = parse(&head).unwrap_err();
        assert!(
            e.message.contains("password (or password_file) is missing"),
            "{e}"
        );
        let e = parse(&format!(
            "{head}password = \"twelve chars\"\nmutual_password = \"another secret\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("needs a mutual_userid"), "{e}");
        let e = parse(&format!(
            "[iscsi]\nchap_algorithms = [\"SHA512\"]\n{TPG}mode = \"demo\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("SHA512") && e.line == Some(2), "{e}");
    }

    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from a file 123\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "{TPG}mode = \"demo\"\n[target.tpg.auth]\nuserid = \"u\"\npassword_file = \"{}\"\n",
            f.display()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{e}");
        assert_eq!(e.line, Some(12), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let m = super::parse(Path::new("test.toml"), &text).unwrap();
        let a = m.secrets.values().next().unwrap();
        assert_eq!(a.initiator.secret.expose(), b"from a file 123");
        let e = parse(&text.replace("secret\"", "missing\"")).unwrap_err();
        assert!(e.message.contains("password_file"), "{e}");
    }

    #[test]
    fn portals() {
        assert_eq!(parse_portal("127.0.0.1:3261").unwrap().port(), 3261);
        assert_eq!(parse_portal("127.0.0.1").unwrap().port(), 3260);
        assert_eq!(parse_portal("[::1]:3262").unwrap().port(), 3262);
        assert_eq!(parse_portal("::1").unwrap(), "[::1]:3260".parse().unwrap());
        assert_eq!(
            parse_portal("localhost:3263").unwrap(),
            "127.0.0.1:3263".parse().unwrap()
        );
        assert!(parse_portal("storage.example.com:3260").is_err(), "no DNS");
        assert!(parse_portal("a").is_err());
        assert!(parse_portal("127.0.0.1:99999").is_err());
    }
}
