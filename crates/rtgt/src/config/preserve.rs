//! Saving without losing the administrator's layout: the new
//! configuration (canonical TOML, as [`crate::config::Doc::to_toml`] writes
//! it) is merged into the text of the file as it is, with a
//! format-preserving TOML editor, so comments, key order, blank lines and
//! the spelling of values that did not change stay; what changed is edited
//! in place, what is new is appended where it belongs, what is gone is
//! removed (with its comments).
//!
//! Objects in arrays of tables (`[[backstore]]`, `[[target]]`,
//! `[[target.tpg]]`, ...) are matched by their identity key (name, IQN,
//! tag, LUN, initiator), not by position, so reordering or removing one
//! does not move another's comments onto it.

use std::collections::HashMap;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

/// The keys that name an object in an array of tables.
const IDENTITY: [&str; 6] = ["name", "iqn", "tag", "lun", "initiator", "mapped_lun"];

/// `new_text` laid into `old_text`; None when either does not parse.
pub fn merge(old_text: &str, new_text: &str) -> Option<String> {
    let mut old: DocumentMut = old_text.parse().ok()?;
    merge_into(&mut old, new_text)?;
    Some(old.to_string())
}

/// `new_text` laid into the parsed file `old` (kept by the caller between
/// saves, so a save parses only the new text); None when it does not
/// parse.
pub fn merge_into(old: &mut DocumentMut, new_text: &str) -> Option<()> {
    let new: DocumentMut = new_text.parse().ok()?;
    merge_table(old.as_table_mut(), new.as_table());
    Some(())
}

/// Whether two values are the same, however spelled (`0x10` and `16`):
/// the file's spelling of an unchanged value stays. Compared without
/// rendering them, which a save of a thousand objects would feel.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        _ => bare(a) == bare(b),
    }
}

/// A value as TOML spells it, without its surrounding whitespace and
/// comments.
fn bare(v: &Value) -> String {
    let mut v = v.clone();
    v.decor_mut().clear();
    v.to_string()
}

fn identity(t: &Table) -> Option<(&'static str, String)> {
    IDENTITY.iter().find_map(|k| {
        t.get(k).and_then(Item::as_value).map(|v| {
            let id = match v {
                Value::String(s) => s.value().to_ascii_lowercase(),
                Value::Integer(i) => i.value().to_string(),
                v => bare(v).to_ascii_lowercase(),
            };
            (*k, id)
        })
    })
}

fn merge_table(old: &mut Table, new: &Table) {
    let gone: Vec<String> = old
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !new.contains_key(k))
        .collect();
    for k in gone {
        old.remove(&k);
    }
    for (k, n) in new.iter() {
        match (old.get_mut(k), n) {
            (Some(o), n) => merge_item(o, n),
            (None, n) => {
                old.insert(k, n.clone());
            }
        }
    }
}

fn merge_item(old: &mut Item, new: &Item) {
    match (old, new) {
        (Item::Value(o), Item::Value(n)) => {
            if !same(o, n) {
                // Edited in place: the comment after it stays.
                let decor = o.decor().clone();
                *o = n.clone();
                *o.decor_mut() = decor;
            }
        }
        (Item::Table(o), Item::Table(n)) => merge_table(o, n),
        (Item::ArrayOfTables(o), Item::ArrayOfTables(n)) => merge_array(o, n),
        (o, n) => *o = n.clone(),
    }
}

/// Objects the file has keep their place (and comments); new ones go
/// after them, in the new text's order. Merged in place: a thousand LUNs
/// are neither copied nor searched for one by one.
fn merge_array(old: &mut ArrayOfTables, new: &ArrayOfTables) {
    let mut news: Vec<Option<&Table>> = new.iter().map(Some).collect();
    let by_id: HashMap<(&'static str, String), usize> = new
        .iter()
        .enumerate()
        .filter_map(|(i, n)| identity(n).map(|id| (id, i)))
        .collect();
    // The new object each old one is, if any.
    let matched: Vec<Option<usize>> =
        old.iter()
            .enumerate()
            .map(|(i, o)| {
                let j = match identity(o) {
                    Some(id) => by_id.get(&id).copied(),
                    None => (i < news.len() && news[i].is_some_and(|n| identity(n).is_none()))
                        .then_some(i),
                };
                j.filter(|&j| news[j].take().is_some())
            })
            .collect();
    let mut keep = matched.iter();
    old.retain(|_| keep.next().is_some_and(Option::is_some));
    for (o, j) in old.iter_mut().zip(matched.iter().flatten()) {
        if let Some(n) = new.get(*j) {
            merge_table(o, n);
        }
    }
    for n in news.into_iter().flatten() {
        old.push(n.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"# My storage, written by hand.

[[backstore]]   # the database disk
name = "db"
type = "fileio"
path = "/srv/db.img"
size = "10G"      # grown in May

# scratch space
[[backstore]]
name = "scratch"
type = "ramdisk"
size = "1G"

[[target]]
iqn = "iqn.2026-11.org.example:store"

[[target.tpg]]
tag = 1
portals = ["0.0.0.0:3260"]   # all interfaces
mode = "acl"

[[target.tpg.lun]]
lun = 0
backstore = "db"

[[target.tpg.acl]]   # the database host
initiator = "iqn.1994-05.com.example:db1"
[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0
"#;

    #[test]
    fn nothing_changed_keeps_the_file_as_it_is() {
        // The canonical spelling of the same configuration, in another
        // order and without comments.
        let new = r#"
[[backstore]]
name = "scratch"
type = "ramdisk"
size = "1G"

[[backstore]]
name = "db"
type = "fileio"
path = "/srv/db.img"
size = "10G"

[[target]]
iqn = "iqn.2026-11.org.example:store"

[[target.tpg]]
tag = 1
portals = ["0.0.0.0:3260"]
mode = "acl"

[[target.tpg.lun]]
lun = 0
backstore = "db"

[[target.tpg.acl]]
initiator = "iqn.1994-05.com.example:db1"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0
"#;
        let merged = merge(OLD, new).unwrap();
        // Same content, the file's own order, every comment.
        assert!(
            merged.starts_with("# My storage, written by hand."),
            "{merged}"
        );
        for c in [
            "# the database disk",
            "# grown in May",
            "# scratch space",
            "# all interfaces",
            "# the database host",
        ] {
            assert!(merged.contains(c), "{c} lost:\n{merged}");
        }
        assert_eq!(merged, OLD);
    }

    #[test]
    fn changes_are_made_in_place_and_removals_take_their_comments() {
        let new = r#"
[[backstore]]
name = "db"
type = "fileio"
path = "/srv/db.img"
size = "20G"

[[backstore]]
name = "logs"
type = "ramdisk"
size = "2G"

[[target]]
iqn = "iqn.2026-11.org.example:store"

[[target.tpg]]
tag = 1
portals = ["0.0.0.0:3260"]
mode = "acl"

[[target.tpg.lun]]
lun = 0
backstore = "db"

[[target.tpg.acl]]
initiator = "iqn.1994-05.com.example:db1"

[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0
read_only = true
"#;
        let merged = merge(OLD, new).unwrap();
        assert!(
            merged.contains("size = \"20G\"      # grown in May"),
            "{merged}"
        );
        assert!(!merged.contains("scratch"), "{merged}");
        assert!(
            !merged.contains("# scratch space"),
            "removed with its object:\n{merged}"
        );
        assert!(merged.contains("name = \"logs\""), "{merged}");
        assert!(merged.contains("read_only = true"), "{merged}");
        assert!(merged.contains("# the database host"), "{merged}");
        // The new backstore comes after the file's own.
        assert!(merged.find("name = \"logs\"") > merged.find("name = \"db\""));
        // What it says is what was asked for.
        let a: toml::Value = toml::from_str(&merged).unwrap();
        let b: toml::Value = toml::from_str(new).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn unparsable_text_is_not_merged() {
        assert_eq!(merge("[[backstore", "a = 1"), None);
    }
}
