//! `rtgt shell`: the tree as a place to move around in, in the manner of
//! targetcli — `cd`, `ls`, `create`, `delete`, `set`/`get`, `info`,
//! `saveconfig`, `exit` — with tab completion of paths, commands,
//! parameters and attribute names, history kept across runs, and colour on
//! terminals that have it. Every command is the one-shot command of the
//! same name ([`super::run`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::tree::{self, Node};
use super::{CliError, Ctx, COMMANDS, GLOBAL};

/// Where the shell keeps its history: `$RTGT_HISTORY`, else
/// `$XDG_STATE_HOME/rtgt/shell_history`, else `~/.local/state/rtgt/shell_history`.
pub fn history_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RTGT_HISTORY") {
        return Some(PathBuf::from(p));
    }
    Some(crate::state::user_dir()?.join("shell_history"))
}

struct ShellHelper<'a> {
    ctx: &'a Ctx,
    cwd: RefCell<String>,
    color: bool,
}

/// Parameters `create` and `set` take at each node, for completion.
fn parameters(node: &Node, words: &[&str]) -> Vec<&'static str> {
    let cmd = words.iter().find(|w| COMMANDS.contains(w)).copied();
    match (cmd, node) {
        (Some("create"), Node::Kind(k)) if k == "ramdisk" => vec![
            "name=",
            "size=",
            "read_only=",
            "block_size=",
            "sanitize_rate=",
        ],
        (Some("create"), Node::Kind(_)) => vec![
            "name=",
            "file_or_dev=",
            "size=",
            "write_back=",
            "read_only=",
            "block_size=",
        ],
        (Some("create"), Node::Luns(..)) => vec!["lun=", "read_only="],
        (Some("create"), Node::Acls(..)) => vec!["wwn=", "map_all="],
        (Some("create"), Node::Acl(..)) => vec!["mapped_lun=", "tpg_lun=", "write_protect="],
        (Some("create"), Node::Portals(..)) => vec!["ip_address=", "ip_port="],
        (Some("set"), _)
            if !words
                .iter()
                .any(|w| ["attribute", "auth", "discovery_auth", "wwn"].contains(w)) =>
        {
            match node {
                Node::Tpg(..) | Node::Acl(..) => vec!["attribute", "auth"],
                Node::Backstore(..) => vec!["attribute", "wwn"],
                Node::Iscsi => vec!["discovery_auth"],
                _ => vec![],
            }
        }
        (Some("set"), Node::Tpg(..)) if words.contains(&"attribute") => {
            vec![
                "generate_node_acls=",
                "demo_mode_write_protect=",
                "authentication=",
                "relative_port_id=",
            ]
        }
        (Some("set"), Node::Acl(..)) if words.contains(&"attribute") => vec!["authentication="],
        (Some("set"), Node::Backstore(..)) if words.contains(&"wwn") => {
            vec!["vendor=", "product=", "revision=", "serial=", "naa="]
        }
        (Some("set"), Node::Backstore(..)) => {
            vec![
                "size=",
                "read_only=",
                "write_back=",
                "removable=",
                "thin=",
                "sanitize_rate=",
            ]
        }
        (Some("set"), _) => vec![
            "userid=",
            "password=",
            "password_file=",
            "mutual_userid=",
            "mutual_password=",
            "enable=",
        ],
        (Some("get"), Node::Tpg(..)) => vec!["attribute", "auth"],
        _ => vec![],
    }
}

impl ShellHelper<'_> {
    /// Paths that complete `word` (relative to the shell's directory).
    fn paths(&self, word: &str) -> Vec<String> {
        let Ok(t) = self.ctx.tree() else {
            return Vec::new();
        };
        let (dir, stem) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word),
        };
        let base = tree::resolve(&self.cwd.borrow(), if dir.is_empty() { "." } else { dir });
        let Some(at) = tree::find(&t, &base) else {
            return Vec::new();
        };
        let mut v: Vec<String> = at
            .children
            .iter()
            .filter(|c| c.name.starts_with(stem))
            .map(|c| format!("{dir}{}/", c.name))
            .collect();
        if "..".starts_with(stem) && !stem.is_empty() {
            v.push(format!("{dir}../"));
        }
        v
    }

    /// Names of the objects `delete` takes at `path` that start with `word`.
    fn children(&self, path: &str, word: &str) -> Vec<String> {
        let deletable = matches!(
            tree::parse(path),
            Some(
                Node::Kind(_)
                    | Node::Iscsi
                    | Node::Target(_)
                    | Node::Luns(..)
                    | Node::Portals(..)
                    | Node::Acls(..)
                    | Node::Acl(..)
            )
        );
        if !deletable {
            return Vec::new();
        }
        let Ok(t) = self.ctx.tree() else {
            return Vec::new();
        };
        match tree::find(&t, path) {
            Some(at) => at
                .children
                .iter()
                .filter(|c| c.name.starts_with(word))
                .map(|c| format!("{} ", c.name))
                .collect(),
            None => Vec::new(),
        }
    }

    fn candidates(&self, line: &str) -> (usize, Vec<String>) {
        let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &line[start..];
        let before: Vec<&str> = line[..start].split_whitespace().collect();
        let mut out = Vec::new();
        if before.is_empty() {
            for c in COMMANDS.iter().chain(GLOBAL.iter()) {
                if c.starts_with(word) {
                    out.push(format!("{c} "));
                }
            }
            out.extend(self.paths(word));
            return (start, out);
        }
        let cmd_is_first = COMMANDS.contains(&before[0]) || GLOBAL.contains(&before[0]);
        let path = if cmd_is_first {
            self.cwd.borrow().clone()
        } else {
            tree::resolve(&self.cwd.borrow(), before[0])
        };
        if !cmd_is_first && before.len() == 1 {
            for c in COMMANDS {
                if c.starts_with(word) {
                    out.push(format!("{c} "));
                }
            }
            return (start, out);
        }
        if matches!(before.last(), Some(&"cd") | Some(&"ls")) {
            return (start, self.paths(word));
        }
        // `delete NAME`: the names of what can be deleted here (backstores,
        // targets, tpgN, lunN, portals, initiators, mapped_lunN).
        let args = if cmd_is_first {
            &before[1..]
        } else {
            &before[2..]
        };
        let cmd = if cmd_is_first { before[0] } else { before[1] };
        if cmd == "delete" && args.is_empty() {
            return (start, self.children(&path, word));
        }
        if let Some(node) = tree::parse(&path) {
            for p in parameters(&node, &before) {
                if p.starts_with(word) {
                    out.push(if p.ends_with('=') {
                        p.to_string()
                    } else {
                        format!("{p} ")
                    });
                }
            }
        }
        (start, out)
    }
}

impl Completer for ShellHelper<'_> {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(self.candidates(&line[..pos]))
    }
}

impl Hinter for ShellHelper<'_> {
    type Hint = String;
}

impl Highlighter for ShellHelper<'_> {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        default: bool,
    ) -> Cow<'b, str> {
        if self.color && default {
            Cow::Owned(format!("\x1b[1;34m{prompt}\x1b[0m"))
        } else {
            Cow::Borrowed(prompt)
        }
    }
}

impl Validator for ShellHelper<'_> {}
impl Helper for ShellHelper<'_> {}

/// Run the shell until `exit` or end of input.
pub fn run(ctx: &Ctx) -> Result<(), CliError> {
    // Fail early, with the usual message, when the daemon is not there.
    ctx.tree()?;
    let mut rl: Editor<ShellHelper<'_>, DefaultHistory> =
        Editor::new().map_err(|e| CliError::Usage(format!("cannot start the shell: {e}")))?;
    rl.set_helper(Some(ShellHelper {
        ctx,
        cwd: RefCell::new("/".into()),
        color: ctx.color,
    }));
    let history = history_file();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("rtgt shell: `help` lists the commands of each node, tab completes, `exit` leaves.");
    loop {
        let cwd = rl
            .helper()
            .map(|h| h.cwd.borrow().clone())
            .unwrap_or_default();
        let input = match rl.readline(&format!("{cwd}> ")) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        };
        // A bracketed paste arrives as one input with the pasted line
        // breaks in it: each line is a command, run in order, as a shell
        // does.
        for line in input.lines() {
            if !run_line(ctx, &mut rl, history.as_deref(), line) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Run one command line of the shell; false when it was `exit`/`quit`.
fn run_line(
    ctx: &Ctx,
    rl: &mut Editor<ShellHelper<'_>, DefaultHistory>,
    history: Option<&std::path::Path>,
    line: &str,
) -> bool {
    let cwd = rl
        .helper()
        .map(|h| h.cwd.borrow().clone())
        .unwrap_or_default();
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return true;
    }
    let _ = rl.add_history_entry(line);
    if let Some(h) = history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(h);
    }
    if matches!(words[0].as_str(), "exit" | "quit") {
        return false;
    }
    match super::run(ctx, &cwd, &words) {
        Ok((out, cd)) => {
            print!("{out}");
            if let (Some(new), Some(h)) = (cd, rl.helper()) {
                *h.cwd.borrow_mut() = new;
            }
        }
        Err(e) => {
            if ctx.color {
                println!("\x1b[31merror:\x1b[0m {e}");
            } else {
                println!("error: {e}");
            }
        }
    }
    true
}
