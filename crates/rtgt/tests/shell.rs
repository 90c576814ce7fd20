//! `rtgt shell` driven as a person drives it: in a real pseudo-terminal
//! (expectrl), keys typed one line at a time, TAB for completion, the Up
//! arrow for history, and every assertion made on what the screen shows.
//! The screen is a terminal emulator (vt100) fed with everything the shell
//! writes, so rustyline's redraws, cursor moves and colours end up as a
//! person would see them; it also answers the cursor-position queries a
//! real terminal answers.

mod common;

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::Daemon;
use expectrl::{Session, WaitStatus};

const COLS: u16 = 120;
/// Tall enough that the whole session stays on the screen (no scrolling),
/// so a row number found before a command still names that row after it.
const ROWS: u16 = 1000;
/// Per step: generous, so a loaded CI machine does not flake.
const WAIT: Duration = Duration::from_secs(10);

const TARGET: &str = "iqn.2026-11.org.example:sh";

const UP: &str = "\x1b[A";
const CTRL_U: &str = "\x15";
const CTRL_D: &str = "\x04";

/// A shell in a pty, and the screen it draws on.
struct Term {
    s: Session,
    vt: vt100::Parser,
    /// Everything the shell wrote, for the failure messages.
    raw: Vec<u8>,
    /// Where to look for the next cursor-position query in `raw`.
    cpr_scan: usize,
    eof: bool,
}

/// Escape sequences out: what a plain transcript of the bytes shows.
fn strip_ansi(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\x1b' {
            if c != '\r' {
                out.push(c);
            }
            continue;
        }
        match it.next() {
            Some('[') => {
                // CSI: parameters, then one final byte in @..~
                for c in it.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: up to BEL or ST
                while let Some(c) = it.next() {
                    if c == '\x07' || (c == '\x1b' && it.peek() == Some(&'\\')) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

impl Term {
    /// `rtgt --socket SOCKET shell`.
    fn spawn(socket: &Path, history: &Path) -> Term {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtgt"));
        cmd.arg("--socket").arg(socket).arg("shell");
        Term::spawn_cmd(cmd, history)
    }

    /// `cmd` in a pty on an xterm, with its history in `history`.
    fn spawn_cmd(mut cmd: Command, history: &Path) -> Term {
        cmd.env("TERM", "xterm")
            .env("RTGT_HISTORY", history)
            .env_remove("NO_COLOR");
        if !cmd.get_envs().any(|(k, _)| k == "RTGT_SOCKET") {
            cmd.env_remove("RTGT_SOCKET");
        }
        let mut s = Session::spawn(cmd).expect("spawn rtgt shell in a pty");
        s.get_process_mut()
            .set_window_size(COLS, ROWS)
            .expect("set the pty's window size");
        Term {
            s,
            vt: vt100::Parser::new(ROWS, COLS, 0),
            raw: Vec::new(),
            cpr_scan: 0,
            eof: false,
        }
    }

    /// Read whatever the shell has written so far into the screen, and
    /// answer its cursor-position queries (ESC [ 6 n) the way a terminal does.
    fn pump(&mut self) {
        let mut buf = [0u8; 8192];
        loop {
            match self.s.try_read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.vt.process(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EIO: the shell is gone and the pty closed
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        const CPR: &[u8] = b"\x1b[6n";
        while let Some(i) = self.raw[self.cpr_scan..]
            .windows(CPR.len())
            .position(|w| w == CPR)
        {
            self.cpr_scan += i + CPR.len();
            let (row, col) = self.vt.screen().cursor_position();
            let answer = format!("\x1b[{};{}R", row + 1, col + 1);
            self.s.write_all(answer.as_bytes()).unwrap();
            self.s.flush().unwrap();
        }
    }

    fn cursor(&self) -> (u16, u16) {
        self.vt.screen().cursor_position()
    }

    /// The text of one screen row, trailing blanks cut.
    fn row(&self, row: u16) -> String {
        self.vt
            .screen()
            .rows(0, COLS)
            .nth(row as usize)
            .unwrap_or_default()
            .trim_end()
            .to_string()
    }

    /// The screen from `from` down to the cursor's row.
    fn text_from(&self, from: u16) -> String {
        let to = self.cursor().0;
        self.vt
            .screen()
            .rows(0, COLS)
            .skip(from as usize)
            .take((to + 1).saturating_sub(from) as usize)
            .map(|r| r.trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What went wrong, with the screen and the plain transcript.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- screen (cursor at {:?}):\n{}\n--- transcript without escapes:\n{}",
            self.cursor(),
            self.vt.screen().contents().trim_end(),
            strip_ansi(&self.raw)
        );
    }

    /// Wait (up to WAIT) until `ok` holds of the screen.
    fn wait_until(&mut self, what: &str, ok: impl Fn(&Term) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if ok(self) {
                return;
            }
            if self.eof {
                self.fail(&format!("the shell ended while waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {what} within {WAIT:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the prompt of directory `cwd` on a row below `after` (or
    /// anywhere for None), the cursor just after it, nothing typed yet.
    fn wait_prompt(&mut self, cwd: &str, after: Option<u16>) {
        let prompt = format!("{cwd}>");
        self.wait_until(&format!("prompt {prompt:?}"), |t| {
            let (row, col) = t.cursor();
            after.is_none_or(|a| row > a)
                && t.row(row) == prompt
                && col as usize == prompt.chars().count() + 1
        });
    }

    fn type_keys(&mut self, keys: &str) {
        self.s.write_all(keys.as_bytes()).unwrap();
        self.s.flush().unwrap();
    }

    /// The line being edited (the cursor's row), as the screen shows it.
    fn line(&self) -> String {
        self.row(self.cursor().0)
    }

    /// Wait until the line being edited reads `want`.
    fn wait_line(&mut self, want: &str) {
        self.wait_until(&format!("input line {want:?}"), |t| t.line() == want);
    }

    /// Type `line` and Enter at the prompt of `cwd`; wait for the prompt of
    /// `cwd_after`. Returns what the screen shows from the command line
    /// down to (not including) the new prompt.
    fn command(&mut self, cwd: &str, line: &str, cwd_after: &str) -> String {
        self.wait_prompt(cwd, None);
        let start = self.cursor().0;
        self.type_keys(line);
        self.wait_line(&format!("{cwd}> {line}"));
        self.type_keys("\r");
        self.wait_prompt(cwd_after, Some(start));
        let end = self.cursor().0;
        let mut out = self.text_from(start);
        if let Some(i) = out.rfind('\n') {
            out.truncate(i);
        }
        assert!(end > start);
        out
    }

    /// Wait (up to WAIT) for the shell to end; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            match self.s.get_process().status() {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(other) => self.fail(&format!("the shell ended with {other:?}")),
                Err(e) => self.fail(&format!("waitpid: {e}")),
            }
            if Instant::now() > deadline {
                self.fail(&format!("the shell did not end within {WAIT:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Is the first character of `needle`'s first appearance on row `row`
    /// drawn in ANSI colour `idx`?
    fn coloured(&self, row: u16, needle: &str, idx: u8) -> bool {
        let text = self.row(row);
        let Some(at) = text.find(needle) else {
            return false;
        };
        let col = text[..at].chars().count() as u16;
        let cell = self.vt.screen().cell(row, col).unwrap();
        cell.fgcolor() == vt100::Color::Idx(idx)
    }

    /// The first row at or below `from` whose text contains `needle`.
    fn find_row(&self, from: u16, needle: &str) -> Option<u16> {
        (from..=self.cursor().0).find(|&r| self.row(r).contains(needle))
    }
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("rtgt.toml");
    std::fs::write(
        &path,
        r#"[[backstore]]
name = "ram0"
type = "ramdisk"
size = "64M"

[[target]]
iqn = "iqn.2026-11.org.rtgt:demo"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"

[[target.tpg.lun]]
lun = 0
backstore = "ram0"
"#,
    )
    .unwrap();
    path
}

/// Lines of `text` that contain `needle`.
fn has(text: &str, needle: &str) -> bool {
    text.lines().any(|l| l.contains(needle))
}

#[test]
fn shell_session_in_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    // An initiator is logged in the whole time: the shell shows it.
    let host = "iqn.2026-11.org.rtgt:shell-host";
    let logged_in = common::iscsi_login::login(
        d.port(),
        &common::iscsi_login::LoginOptions {
            initiator: host.into(),
            target: Some("iqn.2026-11.org.rtgt:demo".into()),
            chap: None,
            isid: [0x80, 0, 0, 0x5e, 0x11, 0x01],
        },
    )
    .unwrap();
    assert!(logged_in.succeeded());
    let history = dir.path().join("state/shell_history");
    let mut t = Term::spawn(&d.control, &history);

    // The greeting, then the prompt at the root, drawn in colour.
    t.wait_prompt("/", None);
    let greeting = t.text_from(0);
    assert!(greeting.contains("rtgt shell"), "greeting:\n{greeting}");
    let row = t.cursor().0;
    assert!(
        t.coloured(row, "/>", 4),
        "the prompt is not drawn in blue on a colour terminal (TERM=xterm)"
    );

    // ls: the tree, one line per node, summaries in brackets.
    let start = t.cursor().0;
    let out = t.command("/", "ls", "/");
    for name in [
        "o- /",
        "o- backstores",
        "o- ramdisk",
        "o- fileio",
        "o- blockio",
        "o- iscsi",
        "o- iqn.2026-11.org.rtgt:demo",
        "o- tpg1",
        "o- luns",
        "o- lun0",
    ] {
        assert!(has(&out, name), "ls shows no {name:?}:\n{out}");
    }
    assert!(has(&out, "[Targets: 1]"), "ls:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("o- ram0") && l.contains("[(64.0MiB) activated]")),
        "ls:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("o- tpg1")
            && l.contains("[mode: demo, auth: none, alua: active_optimized, sessions: 1]")),
        "ls:\n{out}"
    );
    let r = t.find_row(start, "o- backstores").unwrap();
    assert!(
        t.coloured(r, "backstores", 4),
        "ls draws node names without colour"
    );

    // A RAM disk.
    t.command("/", "cd /backstores/ramdisk", "/backstores/ramdisk");
    let out = t.command(
        "/backstores/ramdisk",
        "create r1 16M",
        "/backstores/ramdisk",
    );
    assert!(has(&out, "+ /backstores/ramdisk/r1"), "create r1:\n{out}");
    let out = t.command("/backstores/ramdisk", "ls", "/backstores/ramdisk");
    assert!(
        out.lines()
            .any(|l| l.contains("o- r1") && l.contains("(16.0MiB)")),
        "ls after create r1:\n{out}"
    );

    // delete completes the names of what is there.
    let out = t.command(
        "/backstores/ramdisk",
        "create tmp 1M",
        "/backstores/ramdisk",
    );
    assert!(has(&out, "+ /backstores/ramdisk/tmp"), "create tmp:\n{out}");
    t.type_keys("delete t");
    t.wait_line("/backstores/ramdisk> delete t");
    t.type_keys("\t");
    t.wait_line("/backstores/ramdisk> delete tmp");
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt("/backstores/ramdisk", Some(start));
    let out = t.text_from(start);
    assert!(has(&out, "- /backstores/ramdisk/tmp"), "delete tmp:\n{out}");
    // ... and a command after a path.
    t.type_keys("/iscsi cr");
    t.wait_line("/backstores/ramdisk> /iscsi cr");
    t.type_keys("\t");
    t.wait_line("/backstores/ramdisk> /iscsi create");
    t.type_keys(CTRL_U);
    t.wait_line("/backstores/ramdisk>");

    // A target, and a LUN on the new RAM disk.
    t.command("/backstores/ramdisk", "cd /iscsi", "/iscsi");
    let out = t.command("/iscsi", &format!("create {TARGET}"), "/iscsi");
    assert!(
        has(&out, &format!("+ /iscsi/{TARGET}")),
        "create target:\n{out}"
    );
    let luns = format!("/iscsi/{TARGET}/tpg1/luns");
    t.command("/iscsi", &format!("cd {TARGET}/tpg1/luns"), &luns);
    let out = t.command(&luns, "create r1", &luns);
    assert!(has(&out, &format!("+ {luns}/lun")), "create lun:\n{out}");
    let out = t.command(&luns, "ls", &luns);
    assert!(
        out.lines()
            .any(|l| l.contains("o- lun0") && l.contains("[ramdisk/r1]")),
        "ls of the LUNs:\n{out}"
    );

    // Tab completion of a path: the line on the screen becomes the path.
    t.wait_prompt(&luns, None);
    t.type_keys("cd /back");
    t.wait_line(&format!("{luns}> cd /back"));
    t.type_keys("\t");
    t.wait_line(&format!("{luns}> cd /backstores/"));
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt("/backstores", Some(start));

    // ... of a path under a target (IQNs have ':' and '.') and a group.
    t.type_keys("cd /iscsi/iqn.2026-11.org.ex");
    t.wait_line("/backstores> cd /iscsi/iqn.2026-11.org.ex");
    t.type_keys("\t");
    t.wait_line(&format!("/backstores> cd /iscsi/{TARGET}/"));
    t.type_keys("tp\t");
    t.wait_line(&format!("/backstores> cd /iscsi/{TARGET}/tpg1/"));
    let tpg = format!("/iscsi/{TARGET}/tpg1");
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt(&tpg, Some(start));

    // The group starts in acl mode.
    let out = t.command(&tpg, "get attribute", &tpg);
    assert!(has(&out, "generate_node_acls=0"), "get attribute:\n{out}");

    // ... of a parameter group and an attribute name.
    t.type_keys("set attr");
    t.wait_line(&format!("{tpg}> set attr"));
    t.type_keys("\t");
    t.wait_line(&format!("{tpg}> set attribute"));
    t.type_keys("gen");
    t.wait_line(&format!("{tpg}> set attribute gen"));
    t.type_keys("\t");
    t.wait_line(&format!("{tpg}> set attribute generate_node_acls="));
    t.type_keys("1");
    t.wait_line(&format!("{tpg}> set attribute generate_node_acls=1"));
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt(&tpg, Some(start));
    let out = t.text_from(start);
    assert!(
        has(&out, &format!("~ {tpg}")),
        "set attribute generate_node_acls=1:\n{out}"
    );
    let out = t.command(&tpg, "get attribute", &tpg);
    assert!(has(&out, "generate_node_acls=1"), "get attribute:\n{out}");
    assert!(has(&out, "authentication=0"), "get attribute:\n{out}");

    // ... of a command.
    t.type_keys("sess");
    t.wait_line(&format!("{tpg}> sess"));
    t.type_keys("\t");
    t.wait_line(&format!("{tpg}> sessions"));
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt(&tpg, Some(start));
    let out = t.text_from(start);
    assert!(
        has(
            &out,
            &format!("{host} (Normal) -> iqn.2026-11.org.rtgt:demo tpg1")
        ),
        "sessions:\n{out}"
    );

    // saveconfig writes the --config file, with the new objects in it.
    let out = t.command(&tpg, "saveconfig", &tpg);
    assert!(has(&out, "configuration saved"), "saveconfig:\n{out}");
    let saved: toml::Value = toml::from_str(&std::fs::read_to_string(&cfg).unwrap())
        .unwrap_or_else(|e| panic!("saved config does not parse: {e}"));
    let stores = saved["backstore"].as_array().unwrap();
    let r1 = stores
        .iter()
        .find(|b| b["name"].as_str() == Some("r1"))
        .unwrap_or_else(|| panic!("no backstore r1 in the saved config:\n{saved}"));
    assert_eq!(r1["type"].as_str(), Some("ramdisk"), "{saved}");
    let targets = saved["target"].as_array().unwrap();
    let sh = targets
        .iter()
        .find(|t| t["iqn"].as_str() == Some(TARGET))
        .unwrap_or_else(|| panic!("no target {TARGET} in the saved config:\n{saved}"));
    let g = &sh["tpg"].as_array().unwrap()[0];
    assert_eq!(g["mode"].as_str(), Some("demo"), "{saved}");
    let lun = &g["lun"].as_array().unwrap()[0];
    assert_eq!(lun["backstore"].as_str(), Some("r1"), "{saved}");
    assert!(
        targets
            .iter()
            .any(|t| t["iqn"].as_str() == Some("iqn.2026-11.org.rtgt:demo")),
        "{saved}"
    );

    // An error says so, in red, and the shell stays where it was.
    let start = t.cursor().0;
    let out = t.command(&tpg, "cd /nope", &tpg);
    assert!(
        has(&out, "error:") && has(&out, "/nope"),
        "cd /nope:\n{out}"
    );
    let r = t.find_row(start, "error:").unwrap();
    assert!(t.coloured(r, "error:", 1), "the error is not drawn in red");
    let out = t.command(&tpg, "pwd", &tpg);
    assert!(has(&out, &tpg), "pwd after the error:\n{out}");
    let out = t.command(&tpg, "cd /nope/deeper", &tpg);
    assert!(has(&out, "error:"), "cd /nope/deeper:\n{out}");

    // exit: status 0.
    t.wait_prompt(&tpg, None);
    t.type_keys("exit\r");
    let code = t.exit_code();
    assert_eq!(code, 0, "exit status of `exit`");

    // The history file holds the commands as typed (and as completed).
    let h = std::fs::read_to_string(&history)
        .unwrap_or_else(|e| panic!("history file {}: {e}", history.display()));
    let lines: Vec<&str> = h.lines().collect();
    for c in [
        "ls",
        "cd /backstores/ramdisk",
        "create r1 16M",
        &format!("create {TARGET}"),
        "cd /backstores/",
        "set attribute generate_node_acls=1",
        "saveconfig",
        "cd /nope",
        "exit",
    ] {
        assert!(lines.contains(&c), "history has no {c:?}:\n{h}");
    }

    // A second session sees the history: Up recalls the last commands.
    let mut t = Term::spawn(&d.control, &history);
    t.wait_prompt("/", None);
    t.type_keys(UP);
    t.wait_line("/> exit");
    t.type_keys(UP);
    t.wait_line("/> cd /nope/deeper");
    t.type_keys(UP);
    t.wait_line("/> pwd");
    // Enter runs the recalled command.
    let start = t.cursor().0;
    t.type_keys("\r");
    t.wait_prompt("/", Some(start));
    let out = t.text_from(start);
    assert!(has(&out, "/"), "pwd:\n{out}");
    // Ctrl-D on an empty line leaves too, with status 0.
    t.type_keys(UP);
    t.wait_line("/> pwd");
    t.type_keys(CTRL_U);
    t.wait_line("/>");
    t.type_keys(CTRL_D);
    assert_eq!(t.exit_code(), 0, "exit status after Ctrl-D");

    // The daemon is unharmed by all of it.
    d.stop();
}

/// `rtgt` with no arguments on a terminal is the shell (the socket from
/// RTGT_SOCKET); `quit` leaves it.
#[test]
fn bare_rtgt_on_a_terminal_is_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["serve", "--listen", "127.0.0.1:0"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtgt"));
    cmd.env("RTGT_SOCKET", &d.control);
    let mut t = Term::spawn_cmd(cmd, &dir.path().join("history"));
    let out = t.command("/", "ls /iscsi", "/");
    assert!(
        has(&out, "o- iqn.2026-11.org.rtgt:demo"),
        "ls /iscsi:\n{out}"
    );
    t.wait_prompt("/", None);
    t.type_keys("quit\r");
    assert_eq!(t.exit_code(), 0, "exit status of `quit`");
}

/// No daemon: the shell says so and what to do, and exits 3 (as the
/// one-shot commands do) instead of showing a prompt that cannot work.
#[test]
fn shell_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Term::spawn(&dir.path().join("no.sock"), &dir.path().join("history"));
    let code = t.exit_code();
    t.pump();
    let screen = t.vt.screen().contents();
    assert_eq!(code, 3, "exit status without a daemon:\n{screen}");
    assert!(
        screen.contains("no.sock"),
        "the message names no socket:\n{screen}"
    );
    assert!(
        !screen.contains("/>"),
        "a prompt without a daemon:\n{screen}"
    );
}

/// Every line that reaches the terminal runs, in order: one write() of 20
/// commands (typed ahead, or pasted by a terminal without bracketed
/// paste) creates all 18 backstores; then a bracketed paste of three
/// lines and Enter runs all three.
#[test]
fn typed_ahead_and_pasted_lines_all_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = Daemon::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let mut t = Term::spawn(&d.control, &dir.path().join("history"));
    t.wait_prompt("/", None);
    let mut burst = String::from("cd /backstores/ramdisk\r");
    for i in 1..=18 {
        burst.push_str(&format!("create burst{i} 1M\r"));
    }
    burst.push_str("cd /\r");
    t.type_keys(&burst);
    let names = |d: &Daemon| -> Vec<String> {
        let (_, body) = common::http(&d.control, "GET", "/api/v1/backstores", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["name"].as_str().map(str::to_string))
            .collect()
    };
    let want: Vec<String> = (1..=18).map(|i| format!("burst{i}")).collect();
    t.wait_until("18 backstores created", |_| {
        let n = names(&d);
        want.iter().all(|w| n.contains(w))
    });
    // ...and the last line of the burst ran too, after them.
    t.wait_until("the prompt back at /", |t| t.row(t.cursor().0) == "/>");
    t.type_keys("\x1b[200~cd /backstores/ramdisk\ncreate paste1 1M\ncreate paste2 1M\x1b[201~\r");
    t.wait_until("both pasted creates", |_| {
        let n = names(&d);
        n.contains(&"paste1".to_string()) && n.contains(&"paste2".to_string())
    });
    t.wait_prompt("/backstores/ramdisk", None);
}
