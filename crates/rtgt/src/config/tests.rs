//! The model, its TOML text and its diff, tested together.

use crate::config::*;
use std::path::Path;

const FILE: &str = r#"
[[backstore]]
name = "disk1"
type = "ramdisk"
size = "64M"

[[backstore]]
name = "a"
type = "ramdisk"
size = 1000960

[[target]]
iqn = "iqn.2026-11.org.example:t1"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:3260"]
mode = "acl"

[target.tpg.auth]
userid = "u"
password = "0123456789abcdef"

[[target.tpg.lun]]
lun = 1
backstore = "disk1"

[[target.tpg.lun]]
lun = 0
backstore = "a"

[[target.tpg.acl]]
initiator = "iqn.2026-11.org.example:host"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 1
read_only = true
"#;

fn doc(text: &str) -> Doc {
    crate::config::parse(Path::new("t.toml"), text).unwrap().doc
}

#[test]
fn toml_round_trip_is_exact_and_canonical() {
    let d = doc(FILE);
    assert_eq!(d.backstore[0].name, "a", "sorted by name");
    assert_eq!(d.target[0].tpg[0].lun[0].lun, 0, "sorted by number");
    let text = d.to_toml(true);
    assert!(text.contains("size = \"64M\""), "{text}");
    assert!(text.contains("size = \"1000960\""), "{text}");
    let again = doc(&text);
    assert_eq!(again, d);
    let model = d.check().unwrap();
    assert_eq!(
        model,
        crate::config::parse(Path::new("t.toml"), FILE).unwrap()
    );
}

#[test]
fn odd_strings_survive_the_writer() {
    let mut d = doc(FILE);
    let odd = "a\"b\\c\td\u{1}e é 👍";
    d.target[0].alias = Some(odd.into());
    d.target[0].tpg[0].auth.as_mut().unwrap().password = Some(format!("{odd}-long-enough"));
    let again = doc(&d.to_toml(true));
    assert_eq!(again.target[0].alias.as_deref(), Some(odd));
    assert_eq!(again, d);
}

#[test]
fn dump_hides_inline_secrets_unless_asked() {
    let d = doc(FILE);
    let hidden = d.to_toml(false);
    assert!(!hidden.contains("0123456789abcdef"), "{hidden}");
    assert!(hidden.contains("--secrets"));
    assert!(d.to_toml(true).contains("0123456789abcdef"));
}

#[test]
fn check_refuses_what_a_file_would() {
    let mut d = doc(FILE);
    d.target[0].tpg[0].lun.push(LunDoc {
        lun: 7,
        backstore: "nope".into(),
        read_only: false,
    });
    let e = d.check().unwrap_err();
    assert!(e.contains("no backstore named \"nope\""), "{e}");
}

#[test]
fn diff_is_object_by_object() {
    let a = doc(FILE);
    assert!(diff(&a, &a).is_empty());
    let mut b = a.clone();
    b.target[0].tpg[0].acl[0].mapped_lun[0].read_only = false;
    b.target[0].tpg[0].lun.remove(0);
    b.backstore.push(BackstoreDoc {
        size: Some(SizeDoc(1 << 20)),
        ..BackstoreDoc::new("new", BackstoreKind::Ramdisk)
    });
    b.target[0].tpg[0].auth.as_mut().unwrap().password = Some("another-secret-1".into());
    b.alua.explicit = true;
    let ch = diff(&a, &b);
    let shown: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
    let t = "/iscsi/iqn.2026-11.org.example:t1/tpg1";
    assert_eq!(
            shown,
            vec![
                format!("- {t}/luns/lun0"),
                "+ /alua".to_string(),
                "+ /backstores/ramdisk/new".to_string(),
                format!("~ {t}\n    auth: (secret) -> (secret)"),
                format!("~ {t}/acls/iqn.2026-11.org.example:host/mapped_lun0\n    read_only: true -> (unset)"),
            ]
        );
}

#[test]
fn names_sort_naturally() {
    use std::cmp::Ordering::*;
    let mut v = vec![
        "k10x100", "k10x2", "K10x10", "k10x1", "k9", "k010x3", "a", "",
    ];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        v,
        ["", "a", "k9", "k10x1", "k10x2", "k010x3", "K10x10", "k10x100"]
    );
    assert_eq!(natural_cmp("x01", "x1"), Less, "ties broken exactly");
    assert_eq!(natural_cmp("x1", "x1"), Equal);
    assert_eq!(
        natural_cmp("99999999999999999999999a", "100000000000000000000000a"),
        Less,
        "no overflow"
    );
    // The document lists backstores, targets and ACLs that way.
    let mut text = String::new();
    for n in ["k10x1", "k10x10", "k10x100", "k10x2"] {
        text.push_str(&format!(
            "[[backstore]]\nname = \"{n}\"\ntype = \"ramdisk\"\nsize = \"1M\"\n"
        ));
    }
    for t in ["iqn.2026-11.a:t10", "iqn.2026-11.a:t9"] {
        text.push_str(&format!("[[target]]\niqn = \"{t}\"\n"));
    }
    let d = doc(&text);
    let names: Vec<&str> = d.backstore.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["k10x1", "k10x2", "k10x10", "k10x100"]);
    let iqns: Vec<&str> = d.target.iter().map(|t| t.iqn.as_str()).collect();
    assert_eq!(iqns, ["iqn.2026-11.a:t9", "iqn.2026-11.a:t10"]);
}

#[test]
fn sizes_print_in_units() {
    assert_eq!(format_size(1 << 30), "1G");
    assert_eq!(format_size(10 << 30), "10G");
    assert_eq!(format_size(1536), "1536");
    assert_eq!(format_size(0), "0");
}
