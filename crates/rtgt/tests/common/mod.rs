//! Helpers for the integration tests: start the real `rtgt` daemon on an
//! ephemeral loopback port, drive it with real initiators (libiscsi's tools,
//! and qemu-io / qemu-img with QEMU's libiscsi driver), stop it with SIGTERM.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const DEMO_IQN: &str = "iqn.2026-11.org.rtgt:demo";
pub const INITIATOR: &str = "iqn.2026-11.org.rtgt:itest-init";
const LISTEN_PREFIX: &str = "rtgt: listening on ";

/// A running `rtgt serve`; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub ports: Vec<u16>,
    stderr_path: PathBuf,
    /// The control socket (`--control`, a private one unless the test
    /// gives its own).
    pub control: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `rtgt --socket <this daemon's control socket> ARGS...` (the CLI).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rtgt"))
            .arg("--socket")
            .arg(&self.control)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// `rtgt serve` with the default target, on an ephemeral port.
    pub fn default_target() -> Daemon {
        Daemon::start(&["serve", "--listen", "127.0.0.1:0"])
    }

    /// `rtgt serve --config FILE --listen 127.0.0.1:0`.
    pub fn with_config(config: &Path) -> Daemon {
        let c = config.to_str().unwrap();
        Daemon::start(&["serve", "--config", c, "--listen", "127.0.0.1:0"])
    }

    /// Start the daemon with `args` and wait for its listening line(s).
    pub fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr");
        // Each daemon gets a control socket of its own (tests run many at
        // once; the default path is one per machine).
        let mut args: Vec<&str> = args.to_vec();
        let given = args.iter().position(|a| *a == "--control");
        let control = match given {
            Some(i) => PathBuf::from(args.get(i + 1).copied().unwrap_or_default()),
            None => dir.path().join("ctl.sock"),
        };
        let control_arg = control.to_str().unwrap().to_string();
        if given.is_none() && args.first() == Some(&"serve") {
            args.push("--control");
            args.push(&control_arg);
        }
        let args = &args[..];
        // stderr to a file: it can never block the daemon, and is shown on failure
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtgt"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn rtgt");
        // A thread keeps draining stdout so the daemon never blocks on it,
        // and hands over the ports of the listening lines.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = parse_listen_line(&line) {
                    let _ = tx.send(port);
                }
            }
        });
        let mut d = Daemon {
            child: Some(child),
            ports: Vec::new(),
            stderr_path,
            control,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.ports.is_empty() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(port) => d.ports.push(port),
                Err(_) => {
                    if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!(
                            "rtgt {args:?} exited ({st}) before listening; stderr:\n{}",
                            d.stderr()
                        );
                    }
                    if Instant::now() > deadline {
                        panic!(
                            "rtgt {args:?} printed no '{LISTEN_PREFIX}' line in 30 s; stderr:\n{}",
                            d.stderr()
                        );
                    }
                }
            }
        }
        // one line per bound portal: pick up the rest, printed right after the first
        while let Ok(port) = rx.recv_timeout(Duration::from_millis(300)) {
            d.ports.push(port);
        }
        // The control socket is bound right after the portals.
        while args.first() == Some(&"serve") && !d.control.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        d
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon already stopped").id()
    }

    /// iscsi://127.0.0.1:PORT/IQN/LUN
    pub fn url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/{iqn}/{lun}", self.port())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Send `sig` (TERM, INT) and wait up to `secs` for the daemon to exit.
    /// Returns its exit status, or None if it had to be killed.
    pub fn stop_with(&mut self, sig: &str, secs: u64) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGTERM, and require a clean exit 0 within 20 s.
    pub fn stop(&mut self) {
        let st = self.stop_with("TERM", 20);
        match st {
            Some(st) if st.code() == Some(0) => {}
            Some(st) => panic!(
                "rtgt exited with {st} on SIGTERM, expected 0; stderr:\n{}",
                self.stderr()
            ),
            None => panic!(
                "rtgt did not exit within 20 s of SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Is the process still there (not exited)?
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_with("TERM", 10);
    }
}

/// "rtgt: listening on 127.0.0.1:PORT" -> PORT
pub fn parse_listen_line(line: &str) -> Option<u16> {
    line.trim_end()
        .strip_prefix(LISTEN_PREFIX)?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// Absolute path of an executable on PATH, or a test failure naming the package.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH: install {package} (apt-get install -y {package})")
        })
}

/// A libiscsi-bin tool (iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-perf).
pub fn libiscsi(name: &str) -> PathBuf {
    tool(name, "libiscsi-bin")
}

/// Run a command to completion, killed after `secs`; returns its output.
pub fn run(cmd: &mut Command, secs: u64) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{desc} did not finish within {secs} s");
        }
    }
}

/// Run and require exit 0; returns stdout.
pub fn run_ok(cmd: &mut Command, secs: u64) -> String {
    let desc = format!("{cmd:?}");
    let out = run(cmd, secs);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------- QEMU
// libiscsi-bin has no tool that writes arbitrary data, so data goes through
// QEMU's libiscsi block driver: qemu-io writes (one request of the whole
// size), qemu-img convert reads back (2 MiB requests, several in flight).
// Debian 12's qemu-utils 7.2 + qemu-block-extra are unpacked (not installed)
// by .ci/qemu72.sh, as docs/benchmarking.md describes; RTGT_QEMU72 overrides the place.

pub struct Qemu {
    bin: PathBuf,
    modules: PathBuf,
}

impl Qemu {
    pub fn find() -> Qemu {
        let dir =
            PathBuf::from(std::env::var("RTGT_QEMU72").unwrap_or_else(|_| "/tmp/qemu72".into()));
        let q = Qemu {
            bin: dir.join("root/usr/bin"),
            modules: dir.join("root/usr/lib/x86_64-linux-gnu/qemu"),
        };
        if !q.bin.join("qemu-io").is_file() || !q.modules.join("block-iscsi.so").is_file() {
            panic!(
                "qemu-io/qemu-img 7.2 with the iSCSI driver not found under {}: \
                 run `bash .ci/qemu72.sh {}` (needs apt; CI does it) or set RTGT_QEMU72",
                dir.display(),
                dir.display()
            );
        }
        q
    }

    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("QEMU_MODULE_DIR", &self.modules);
        c
    }

    /// Write `data` at byte `offset` of the LUN at `url`, as one request.
    pub fn write(&self, url: &str, offset: u64, data: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, data).unwrap();
        let op = format!("write -s {} {offset} {}", src.display(), data.len());
        let out = run_ok(self.cmd("qemu-io").args(["-f", "raw", "-c", &op, url]), 120);
        assert!(
            out.contains(&format!("wrote {0}/{0} bytes", data.len())),
            "qemu-io {op}: {out}"
        );
    }

    /// Fill [offset, offset+len) with `byte` (qemu does read-modify-write when unaligned).
    pub fn write_pattern(&self, url: &str, offset: u64, len: u64, byte: u8) {
        let op = format!("write -P {byte} {offset} {len}");
        run_ok(self.cmd("qemu-io").args(["-f", "raw", "-c", &op, url]), 120);
    }

    /// Check that [offset, offset+len) holds only `byte`.
    pub fn check_pattern(&self, url: &str, offset: u64, len: u64, byte: u8) {
        let op = format!("read -P {byte} {offset} {len}");
        let out = run_ok(self.cmd("qemu-io").args(["-f", "raw", "-c", &op, url]), 120);
        assert!(
            !out.contains("Pattern verification failed"),
            "qemu-io {op}: {out}"
        );
        assert!(
            out.contains(&format!("read {0}/{0} bytes", len)),
            "qemu-io {op}: {out}"
        );
    }

    /// Read `len` bytes at `offset` (both multiples of 512) of LUN `lun` of `iqn`.
    pub fn read(&self, port: u16, iqn: &str, lun: u32, offset: u64, len: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("dst");
        let opts = format!(
            "driver=raw,offset={offset},size={len},file.driver=iscsi,file.transport=tcp,\
             file.portal=127.0.0.1:{port},file.target={iqn},file.lun={lun}"
        );
        run_ok(
            self.cmd("qemu-img")
                .args(["convert", "--image-opts", "-O", "raw", &opts])
                .arg(&dst),
            120,
        );
        let mut v = Vec::new();
        File::open(&dst).unwrap().read_to_end(&mut v).unwrap();
        v
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Compare without dumping megabytes into the failure message.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: read {} bytes, wrote {}",
        got.len(),
        want.len()
    );
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: data differs first at byte {i} (got {:#04x}, wrote {:#04x})",
            got[i], want[i]
        );
    }
}

/// Sizes for the write/read-back tests: one block up to several MiB, some
/// not powers of two, all multiples of 512.  Offsets keep them apart.
pub const SIZES: &[u64] = &[
    512,
    4096,
    65536,
    262_144 + 512,
    1 << 20,
    3 * (1 << 20) + 4096,
    8 << 20,
];

/// Byte offset where the test data of `SIZES[i]` lives: 16 MiB apart, plus an
/// odd number of blocks so that they do not all start on a big boundary.
pub fn offset_of(i: usize) -> u64 {
    (i as u64) * (16 << 20) + (i as u64) * 7 * 512
}

/// Write every size in SIZES, then read each back and compare.
/// Returns what was written, to check again later (after a restart).
pub fn write_and_verify_sizes(
    q: &Qemu,
    d: &Daemon,
    iqn: &str,
    lun: u32,
    seed: u64,
) -> Vec<(u64, Vec<u8>)> {
    let url = d.url(iqn, lun);
    let written: Vec<(u64, Vec<u8>)> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &size)| (offset_of(i), random_bytes(size as usize, seed + i as u64)))
        .collect();
    for (off, data) in &written {
        q.write(&url, *off, data);
    }
    verify(q, d, iqn, lun, &written);
    written
}

pub fn verify(q: &Qemu, d: &Daemon, iqn: &str, lun: u32, written: &[(u64, Vec<u8>)]) {
    for (off, data) in written {
        let got = q.read(d.port(), iqn, lun, *off, data.len() as u64);
        assert_same(
            &format!("{iqn} LUN {lun}: {} bytes at {off}", data.len()),
            &got,
            data,
        );
    }
}

/// A loop device over a file, detached on drop; None (and a loud message)
/// where loop devices cannot be had (not root, no losetup, no /dev/loop*).
pub struct LoopDev {
    pub dev: String,
}

impl LoopDev {
    pub fn new(file: &Path) -> Option<LoopDev> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(LoopDev {
                dev: String::from_utf8_lossy(&o.stdout).trim().to_string(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED-ENVIRONMENT: losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED-ENVIRONMENT: losetup not runnable: {e}");
                None
            }
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

pub mod iscsi_login;
pub mod scsi_client;
pub mod vhost_frontend;

/// One HTTP/1.1 request on the control socket: status and body.
pub fn http(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: rtgt\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut b = String::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            b.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        b
    } else {
        rest.to_string()
    };
    (status, body)
}

/// Write a configuration file readable by its owner only, as one holding
/// inline CHAP secrets must be.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
