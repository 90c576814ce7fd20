//! docs/cli.md, the CLI reference, generated from the CLI's own
//! definitions: the clap command tree of `rtgt` and the help of each node
//! of the object tree (what `rtgt PATH help` prints). The test fails when
//! the file is stale; `UPDATE_DOCS=1 cargo test -p rtgt --bin rtgt
//! reference_docs` rewrites it.

use clap::CommandFactory;
use rtgt::cli::tree::Node;

fn command(out: &mut String, cmd: &clap::Command, path: &str) {
    let name = if path.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{path} {}", cmd.get_name())
    };
    out.push_str(&format!("\n## `{name}`\n\n"));
    if let Some(a) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{a}\n\n"));
    }
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    if !args.is_empty() {
        out.push_str("| argument | meaning | default |\n| --- | --- | --- |\n");
        for a in args {
            let flag = match (a.get_long(), a.get_value_names()) {
                (Some(l), Some(v)) if a.get_action().takes_values() => format!(
                    "`--{l} {}`",
                    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
                ),
                (Some(l), _) if a.get_action().takes_values() => {
                    format!("`--{l} {}`", a.get_id().as_str().to_uppercase())
                }
                (Some(l), _) => format!("`--{l}`"),
                (None, _) => format!("`{}`", a.get_id().as_str().to_uppercase()),
            };
            let mut help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !values.is_empty() {
                help.push_str(&format!(" ({})", values.join(", ")));
            }
            let default: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            out.push_str(&format!(
                "| {flag} | {} | {} |\n",
                help.replace('|', "\\|"),
                default.join(", ")
            ));
        }
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command(out, sub, &name);
    }
}

fn render() -> String {
    let mut out = String::from(
        "# CLI reference\n\nGenerated from the CLI's own definitions (`crates/rtgt/src/main.rs`, \
         `crates/rtgt/src/cli/mod.rs`); `rtgt --help`, `rtgt COMMAND --help` and \
         `rtgt PATH help` print the same.\n",
    );
    command(&mut out, &crate::Cli::command(), "");
    out.push_str("\n## Object tree commands (`rtgt PATH COMMAND …`)\n\n");
    out.push_str(
        "Every node of the tree takes `ls`, `help` and `cd` (in the shell); \
         these are the commands of each kind of node:\n",
    );
    let s = String::from;
    for (path, node) in [
        ("/", Node::Root),
        ("/backstores", Node::Backstores),
        ("/backstores/TYPE", Node::Kind(s("fileio"))),
        (
            "/backstores/TYPE/NAME",
            Node::Backstore(s("fileio"), s("NAME")),
        ),
        ("/iscsi", Node::Iscsi),
        ("/iscsi/IQN", Node::Target(s("IQN"))),
        ("/iscsi/IQN/tpgN", Node::Tpg(s("IQN"), 1)),
        ("/iscsi/IQN/tpgN/luns", Node::Luns(s("IQN"), 1)),
        ("/iscsi/IQN/tpgN/luns/lunN", Node::Lun(s("IQN"), 1, 0)),
        ("/iscsi/IQN/tpgN/portals", Node::Portals(s("IQN"), 1)),
        (
            "/iscsi/IQN/tpgN/portals/ADDR",
            Node::Portal(s("IQN"), 1, s("ADDR")),
        ),
        ("/iscsi/IQN/tpgN/acls", Node::Acls(s("IQN"), 1)),
        (
            "/iscsi/IQN/tpgN/acls/INITIATOR",
            Node::Acl(s("IQN"), 1, s("INITIATOR")),
        ),
        (
            "/iscsi/IQN/tpgN/acls/INITIATOR/mapped_lunN",
            Node::MappedLun(s("IQN"), 1, s("INITIATOR"), 0),
        ),
    ] {
        out.push_str(&format!(
            "\n### `{path}`\n\n```\n{}```\n",
            rtgt::cli::help(&node)
        ));
    }
    out
}

#[test]
fn cli_reference_is_current() {
    rtgt::config::reference::check_generated_doc(
        "cli.md",
        &render(),
        "cargo test -p rtgt --bin rtgt reference_docs",
    );
}
