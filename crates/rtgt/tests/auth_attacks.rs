//! CHAP and the login phase tried as an attacker would, from outside: a
//! raw iSCSI client of its own (sharing no code with the daemon) that
//! stops wherever it likes, from many loopback source addresses
//! (127.0.0.0/8 all reaches the daemon on 127.0.0.1), against the real
//! daemon. One test per way in which CHAP could be defeated:
//!
//! 1. a secret configured for both an initiator and the target (refused by
//!    `rtgt check` and the control API);
//! 2. a reflection after flushing the guard's record of outstanding
//!    challenges with a flood of half-open logins;
//! 3. online guessing at full speed (paced per initiator name and source,
//!    not for the legitimate host elsewhere; lockout);
//! 4. unbounded logins before authentication (global, per network, per
//!    initiator name, security-stage deadline);
//! 5. inline secrets in a world-readable file;
//! 6. a short initiator challenge.

mod common;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::iscsi_login::{chap_response, from_binary, to_hex};
use common::Daemon;

const IQN: &str = "iqn.2026-11.org.rtgt:guarded";
const OW2: &str = "iqn.1994-05.com.example:ow2";
const MU2: &str = "iqn.1994-05.com.example:mu2";
const OW2_SECRET: &str = "ow2-secret-S1";
const MU2_SECRET: &str = "mu2-secret-S2";
const MU2_TARGET_SECRET: &str = "mu2-target-S3";
const OPEN: &str = "iqn.2026-11.org.rtgt:open";
const OPEN_SECRET: &str = "open-group-S4";
const MD5: u8 = 5;

/// ow2 (one-way CHAP) and mu2 (mutual CHAP) on one target, in `dir`, mode
/// 0600 (the file holds inline secrets). `iscsi` goes into `[iscsi]`.
fn config(dir: &Path, iscsi: &str) -> PathBuf {
    let text = format!(
        r#"[iscsi]
{iscsi}
[[backstore]]
name = "ram0"
type = "ramdisk"
size = "16M"

[[target]]
iqn = "{IQN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "acl"

[[target.tpg.lun]]
lun = 0
backstore = "ram0"

[[target.tpg.acl]]
initiator = "{OW2}"
[target.tpg.acl.auth]
userid = "ow2"
password = "{OW2_SECRET}"
[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0

[[target.tpg.acl]]
initiator = "{MU2}"
[target.tpg.acl.auth]
userid = "mu2"
password = "{MU2_SECRET}"
mutual_userid = "tgt"
mutual_password = "{MU2_TARGET_SECRET}"
[[target.tpg.acl.mapped_lun]]
mapped_lun = 0
tpg_lun = 0

# Any initiator name, one group CHAP credential: what a flood of names
# can get challenges from.
[[target]]
iqn = "{OPEN}"

[[target.tpg]]
tag = 1
portals = ["127.0.0.1:0"]
mode = "demo"
[target.tpg.auth]
userid = "anyone"
password = "{OPEN_SECRET}"
"#
    );
    let p = dir.join("rtgt.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn start(dir: &Path, iscsi: &str, flags: &[&str]) -> Daemon {
    let cfg = config(dir, iscsi);
    let mut args = vec!["serve", "--config", cfg.to_str().unwrap()];
    args.extend(["--listen", "127.0.0.1:0"]);
    args.extend(flags);
    Daemon::start(&args)
}

// ---- a raw login client ----

/// Open file descriptors the test may use: as many as the hard limit
/// allows (the floods below hold a thousand connections and more).
fn raise_fd_limit() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write/read the struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
                l.rlim_cur = l.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            }
        }
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A TCP connection to the daemon from source address `src`.
fn connect_from(src: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    let s = runtime().block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
        tokio::time::timeout(
            Duration::from_secs(10),
            sock.connect(SocketAddr::from(([127, 0, 0, 1], port))),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))?
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

type Keys = Vec<(String, String)>;

fn encode_keys(keys: &[(&str, &str)]) -> Vec<u8> {
    let mut d = Vec::new();
    for (k, v) in keys {
        d.extend_from_slice(k.as_bytes());
        d.push(b'=');
        d.extend_from_slice(v.as_bytes());
        d.push(0);
    }
    d
}

fn get<'a>(keys: &'a Keys, k: &str) -> Option<&'a str> {
    keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// A Login Response.
#[derive(Debug)]
struct Rsp {
    class: u8,
    detail: u8,
    transit: bool,
    nsg: u8,
    keys: Keys,
}

/// One connection's login, step by step.
struct Conn {
    s: TcpStream,
    isid: [u8; 6],
    exp_statsn: u32,
}

impl Conn {
    fn new(s: TcpStream, isid_tail: u16) -> Conn {
        let t = isid_tail.to_be_bytes();
        Conn {
            s,
            isid: [0x80, 0, 0, 0x01, t[0], t[1]],
            exp_statsn: 0,
        }
    }

    fn send(&mut self, csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> io::Result<()> {
        let data = encode_keys(keys);
        let mut b = [0u8; 48];
        b[0] = 0x43; // immediate Login Request
        b[1] = (if transit { 0x80 } else { 0 }) | (csg << 2) | nsg;
        let len = data.len() as u32;
        b[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        b[8..14].copy_from_slice(&self.isid);
        b[16..20].copy_from_slice(&0x1000u32.to_be_bytes());
        b[20..22].copy_from_slice(&1u16.to_be_bytes());
        b[24..28].copy_from_slice(&1u32.to_be_bytes());
        b[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        let mut pdu = b.to_vec();
        pdu.extend_from_slice(&data);
        pdu.resize(pdu.len().div_ceil(4) * 4, 0);
        self.s.write_all(&pdu)
    }

    fn recv(&mut self) -> io::Result<Rsp> {
        let mut h = [0u8; 48];
        self.s.read_exact(&mut h)?;
        if h[0] & 0x3f != 0x23 {
            return Err(io::Error::other(format!(
                "opcode {:#x}, not a Login Response",
                h[0]
            )));
        }
        let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
        let mut d = vec![0u8; len.div_ceil(4) * 4];
        self.s.read_exact(&mut d)?;
        d.truncate(len);
        let statsn = u32::from_be_bytes(h[24..28].try_into().unwrap());
        self.exp_statsn = statsn.wrapping_add(1);
        let keys = d
            .split(|&c| c == 0)
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let t = String::from_utf8_lossy(p);
                t.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Ok(Rsp {
            class: h[36],
            detail: h[37],
            transit: h[1] & 0x80 != 0,
            nsg: h[1] & 3,
            keys,
        })
    }

    fn round(&mut self, csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> io::Result<Rsp> {
        self.send(csg, nsg, transit, keys)?;
        self.recv()
    }
}

/// Where a CHAP login stopped: holding the target's challenge, or
/// refused with a status.
enum Started {
    Challenged {
        conn: Conn,
        id: u8,
        challenge: Vec<u8>,
    },
    Refused(u8, u8),
}

/// Connect from `src`, offer CHAP as `initiator`, ask for MD5: stop
/// holding the challenge.
fn start_chap(src: Ipv4Addr, port: u16, initiator: &str, isid: u16) -> io::Result<Started> {
    start_chap_to(src, port, IQN, initiator, isid)
}

fn start_chap_to(
    src: Ipv4Addr,
    port: u16,
    target: &str,
    initiator: &str,
    isid: u16,
) -> io::Result<Started> {
    let mut c = Conn::new(connect_from(src, port)?, isid);
    let r = c.round(
        0,
        1,
        false,
        &[
            ("InitiatorName", initiator),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP"),
        ],
    )?;
    if r.class != 0 {
        return Ok(Started::Refused(r.class, r.detail));
    }
    let r = c.round(0, 1, false, &[("CHAP_A", "5")])?;
    if r.class != 0 {
        return Ok(Started::Refused(r.class, r.detail));
    }
    let id: u8 = get(&r.keys, "CHAP_I")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no CHAP_I: {:?}", r.keys)))?;
    let challenge = get(&r.keys, "CHAP_C")
        .and_then(from_binary)
        .ok_or_else(|| io::Error::other(format!("no CHAP_C: {:?}", r.keys)))?;
    Ok(Started::Challenged {
        conn: c,
        id,
        challenge,
    })
}

/// The last round of CHAP: CHAP_N / CHAP_R (with `secret`) and, for
/// mutual CHAP, our CHAP_I / CHAP_C.
fn answer(
    conn: &mut Conn,
    user: &str,
    secret: &str,
    id: u8,
    challenge: &[u8],
    mutual: Option<(u8, &[u8])>,
) -> io::Result<Rsp> {
    let r = to_hex(&chap_response(MD5, id, secret.as_bytes(), challenge).unwrap());
    let (mi, mc);
    let mut keys = vec![("CHAP_N", user), ("CHAP_R", r.as_str())];
    if let Some((i, c)) = mutual {
        mi = i.to_string();
        mc = to_hex(c);
        keys.push(("CHAP_I", &mi));
        keys.push(("CHAP_C", &mc));
    }
    conn.round(0, 1, true, &keys)
}

/// After the security stage: the operational stage, then TEST UNIT READY
/// must be GOOD.
fn full_feature_and_tur(conn: &mut Conn) {
    let mut keys: Keys = [
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("ErrorRecoveryLevel", "0"),
        ("MaxRecvDataSegmentLength", "262144"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut sent: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    for _ in 0..4 {
        let list: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = conn.round(1, 3, true, &list).unwrap();
        assert_eq!((r.class, r.detail), (0, 0), "{r:?}");
        if r.transit && r.nsg == 3 {
            break;
        }
        // Accept what the target proposed (its value), answer nothing twice.
        keys = r
            .keys
            .iter()
            .filter(|(k, _)| !sent.contains(k) && k != "TargetPortalGroupTag")
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.split(',').next().unwrap_or_default().to_string(),
                )
            })
            .collect();
        sent.extend(keys.iter().map(|(k, _)| k.clone()));
    }
    let mut b = [0u8; 48];
    b[0] = 0x01; // SCSI Command
    b[1] = 0x80; // F, no data
                 // CDB at 32..48: TEST UNIT READY is all zeros. The first may report
                 // the unit attention of a new nexus; the next must be GOOD.
    for (n, itt) in [(1u32, 0x2000u32), (2, 0x2001), (3, 0x2002)] {
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[24..28].copy_from_slice(&n.to_be_bytes());
        b[28..32].copy_from_slice(&conn.exp_statsn.to_be_bytes());
        conn.s.write_all(&b).unwrap();
        loop {
            let mut h = [0u8; 48];
            conn.s.read_exact(&mut h).unwrap();
            let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
            let mut d = vec![0u8; len.div_ceil(4) * 4];
            conn.s.read_exact(&mut d).unwrap();
            if h[0] & 0x3f != 0x21 {
                continue;
            }
            conn.exp_statsn = u32::from_be_bytes(h[24..28].try_into().unwrap()).wrapping_add(1);
            assert_eq!(h[2], 0, "TEST UNIT READY: iSCSI response");
            match h[3] {
                0 => return,
                // CHECK CONDITION with sense key UNIT ATTENTION (fixed
                // format sense after the 2-byte length).
                2 if d.len() > 4 && d[4] & 0x0f == 6 => break,
                st => panic!("TEST UNIT READY: status {st:#x}, sense {d:02x?}"),
            }
        }
    }
    panic!("TEST UNIT READY never GOOD");
}

/// A whole CHAP login from `src`; its final security-stage response.
fn chap_login(src: Ipv4Addr, port: u16, initiator: &str, user: &str, secret: &str) -> Rsp {
    match start_chap(src, port, initiator, 7).unwrap() {
        Started::Refused(class, detail) => Rsp {
            class,
            detail,
            transit: false,
            nsg: 0,
            keys: Vec::new(),
        },
        Started::Challenged {
            mut conn,
            id,
            challenge,
        } => answer(&mut conn, user, secret, id, &challenge, None).unwrap(),
    }
}

fn metric(d: &Daemon, name_and_labels: &str) -> f64 {
    let (st, body) = common::http(&d.control, "GET", "/metrics", None);
    assert_eq!(st, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics:\n{body}"))
        .parse()
        .unwrap()
}

fn addr(b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, b, c, d)
}

// ---- 1. a secret in both roles ----

#[test]
fn check_and_the_api_refuse_a_secret_used_for_an_initiator_and_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), "");
    let text = std::fs::read_to_string(&good).unwrap();
    let check = |text: &str| {
        let f = dir.path().join("check.toml");
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_rtgt"))
            .arg("check")
            .arg(&f)
            .output()
            .unwrap()
    };
    let o = check(&text);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let group_auth =
        "[target.tpg.auth]\nuserid = \"grp\"\npassword = \"GROUP\"\n[[target.tpg.lun]]";
    let discovery = "[iscsi]\n[iscsi.discovery_auth]\nuserid = \"d\"\npassword = \"discovery-secret\"\nmutual_userid = \"dt\"\nmutual_password = \"DISC\"\n";
    for (case, text) in [
        (
            "ow2's initiator secret is mu2's mutual secret",
            text.replace(MU2_TARGET_SECRET, OW2_SECRET),
        ),
        (
            "the group secret is mu2's mutual secret",
            text.replacen("[[target.tpg.lun]]", group_auth, 1)
                .replace("GROUP", MU2_TARGET_SECRET),
        ),
        (
            "ow2's initiator secret is the discovery mutual secret",
            text.replace("[iscsi]\n", discovery)
                .replace("DISC", OW2_SECRET),
        ),
    ] {
        let o = check(&text);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{case}: rtgt check accepted it: {err}"
        );
        assert!(
            err.contains("RFC 7143 9.2.1") && err.contains("check.toml:"),
            "{case}: {err}"
        );
        assert!(
            !err.contains(OW2_SECRET) && !err.contains(MU2_TARGET_SECRET),
            "{case}: {err}"
        );
    }

    // The control API: the same change, made live, is refused and changes
    // nothing (mu2's mutual secret := ow2's secret).
    let d = start(dir.path(), "", &[]);
    let (st, before) = common::http(&d.control, "GET", "/api/v1/config?secrets=true", None);
    assert_eq!(st, 200, "{before}");
    assert!(before.contains(MU2_TARGET_SECRET), "{before}");
    let reused = before.replace(MU2_TARGET_SECRET, OW2_SECRET);
    let (st, body) = common::http(&d.control, "PUT", "/api/v1/config", Some(&reused));
    assert_eq!(st, 400, "API accepted the reuse: {body}");
    assert!(body.contains("RFC 7143 9.2.1"), "{body}");
    assert!(!body.contains(OW2_SECRET), "{body}");
    let (_, after) = common::http(&d.control, "GET", "/api/v1/config?secrets=true", None);
    assert_eq!(before, after, "a refused change changed the configuration");
    // And through the CLI, as an administrator types it.
    let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .arg("--socket")
        .arg(&d.control)
        .args([
            &format!("/iscsi/{IQN}/tpg1/acls/{OW2}"),
            "set",
            "auth",
            "userid=ow2",
            &format!("password={MU2_TARGET_SECRET}"),
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "CLI accepted the reuse: {err}");
    assert!(err.contains("RFC 7143 9.2.1"), "{err}");
}

// ---- 2. reflection after a flood ----

/// The attack of issue 15, case 2: connection 1 starts a login as ow2
/// and holds the target's challenge C1; a flood of half-open CHAP logins
/// from 17 networks (250 connections from each of 127.0.1.1 ..
/// 127.0.17.1, each with a name of its own, to a group that challenges
/// any name) tries to push C1 out of the guard's record; then
/// connection 2 logs in as mu2 with mu2's own, right response and sends
/// (I1, C1) as its mutual challenge. The target must not answer it:
/// nothing is forgotten, the flood is turned away with 03/02 instead.
#[test]
fn a_flood_of_half_open_logins_cannot_flush_the_reflection_guard() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    // Time for the flood: the attack is about the record, not deadlines.
    // 100 logins per network (17 networks: 1700 held, the other 2550
    // refused), room in all for 2000, so that the reflecting login gets in.
    let d = start(
        dir.path(),
        "",
        &[
            "--security-timeout",
            "60",
            "--login-timeout",
            "60",
            "--max-logins",
            "2000",
            "--max-logins-per-network",
            "100",
        ],
    );
    let port = d.port();
    let (mut conn1, i1, c1) = match start_chap(addr(0, 0, 1), port, OW2, 1).unwrap() {
        Started::Challenged {
            conn,
            id,
            challenge,
        } => (conn, id, challenge),
        Started::Refused(c, dt) => panic!("ow2 refused {c:02x}/{dt:02x}"),
    };

    let flood: Vec<std::thread::JoinHandle<(Vec<Conn>, usize, usize)>> = (1..=17u8)
        .map(|net| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let (mut refused, mut other) = (0, 0);
                for i in 0..250u16 {
                    let name = format!("iqn.2026-11.org.flood:{net}-{i}");
                    match start_chap_to(addr(net, 0, 1), port, OPEN, &name, 100 + i) {
                        Ok(Started::Challenged { conn, .. }) => held.push(conn),
                        Ok(Started::Refused(3, 2)) => refused += 1,
                        Ok(Started::Refused(..)) | Err(_) => other += 1,
                    }
                }
                (held, refused, other)
            })
        })
        .collect();
    let mut held = Vec::new();
    let (mut refused, mut other) = (0, 0);
    for t in flood {
        let (h, r, o) = t.join().unwrap();
        held.extend(h);
        refused += r;
        other += o;
    }
    let cap = metric(&d, "rtgt_chap_challenges_capacity") as usize;
    let outstanding = metric(&d, "rtgt_chap_challenges_outstanding") as usize;
    eprintln!(
        "flood: {} challenged, {refused} refused 03/02, {other} other; record {outstanding}/{cap}",
        held.len()
    );
    assert!(outstanding <= cap, "record over its capacity");
    assert!(
        held.len() < cap,
        "{} challenges held with conn 1's: more than the record holds",
        held.len()
    );
    assert_eq!((held.len(), refused), (1700, 2550), "per-network bound");
    assert_eq!(other, 0, "flood connections ended otherwise than 03/02");
    assert!(metric(&d, "rtgt_login_failures_total{reason=\"login_limit\"}") >= refused as f64);

    // The reflection: mu2, right response, (I1, C1) as its challenge.
    let Started::Challenged {
        conn: mut conn2,
        id,
        challenge,
    } = start_chap(addr(0, 0, 2), port, MU2, 2).unwrap()
    else {
        panic!("mu2 refused while the flood is held (other networks' bounds)");
    };
    let r = answer(
        &mut conn2,
        "mu2",
        MU2_SECRET,
        id,
        &challenge,
        Some((i1, &c1)),
    )
    .unwrap();
    assert!(
        get(&r.keys, "CHAP_R").is_none(),
        "the target answered another connection's challenge: {:?}",
        r.keys
    );
    assert_eq!((r.class, r.detail), (2, 1), "{r:?}");
    assert_eq!(
        metric(
            &d,
            "rtgt_auth_failures_total{reason=\"reflected_challenge\"}"
        ),
        1.0
    );

    // The flood goes; connection 1, with the right secret, still logs in.
    drop(held);
    let r = answer(&mut conn1, "ow2", OW2_SECRET, i1, &c1, None).unwrap();
    assert_eq!((r.class, r.detail), (0, 0), "{r:?}");
    full_feature_and_tur(&mut conn1);
}

// ---- 3. online guessing ----

/// 50 wrong secrets for one (initiator name, source), one after another:
/// with the delay after a failure set to 20 ms doubling to 200 ms, at
/// least 0.02 + 0.04 + 0.08 + 0.16 + 45 * 0.2 = 9.3 s. Meanwhile the
/// right secret from another address logs in at once.
#[test]
fn guessing_is_paced_per_initiator_and_source_not_for_the_real_host() {
    fifty_guesses(
        &[
            "--auth-fail-delay-ms",
            "20",
            "--auth-fail-delay-max-ms",
            "200",
        ],
        Duration::from_millis(9300),
    );
}

/// The same with the defaults (100 ms doubling to 2 s): at least
/// 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 44 * 2 = 91.1 s, too long for every run
/// (`cargo test --release -p rtgt --test auth_attacks -- --ignored`).
#[test]
#[ignore = "takes a minute and a half; run by hand"]
fn guessing_with_the_default_pacing() {
    fifty_guesses(&[], Duration::from_millis(91_100));
}

fn fifty_guesses(flags: &[&str], at_least: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", flags);
    let port = d.port();
    let attacker = addr(0, 66, 66);
    let t0 = Instant::now();
    let mut real_host = None;
    for i in 0..50 {
        let r = chap_login(attacker, port, OW2, "ow2", &format!("guess-{i:08}"));
        assert_eq!((r.class, r.detail), (2, 1), "guess {i}: {r:?}");
        if i == 25 {
            // The legitimate host on another address, half-way through.
            let t = Instant::now();
            match start_chap(addr(0, 0, 10), port, OW2, 9).unwrap() {
                Started::Challenged {
                    mut conn,
                    id,
                    challenge,
                } => {
                    let r = answer(&mut conn, "ow2", OW2_SECRET, id, &challenge, None).unwrap();
                    assert_eq!((r.class, r.detail), (0, 0), "real host: {r:?}");
                    full_feature_and_tur(&mut conn);
                }
                Started::Refused(c, dt) => panic!("real host refused {c:02x}/{dt:02x}"),
            }
            real_host = Some(t.elapsed());
        }
    }
    let took = t0.elapsed();
    let real_host = real_host.unwrap();
    eprintln!("50 wrong logins: {took:?}; the real host's login: {real_host:?}");
    assert!(took >= at_least, "50 guesses in {took:?}");
    assert!(
        real_host < Duration::from_secs(2),
        "real host held up {real_host:?}"
    );
    assert_eq!(
        metric(&d, "rtgt_auth_failures_total{reason=\"wrong_response\"}"),
        50.0
    );
    assert!(metric(&d, "rtgt_auth_paced_sources") >= 1.0);
    // The daemon's log names the initiator and the source, and no secret.
    let log = d.stderr();
    assert!(
        log.contains("authentication failed") && log.contains("127.0.66.66") && log.contains(OW2),
        "{log}"
    );
    assert!(
        !log.contains("guess-000000") && !log.contains(OW2_SECRET),
        "{log}"
    );
}

/// Guesses in parallel buy nothing: 16 connections at once from one
/// source wait their turns one after the other.
#[test]
fn parallel_guesses_from_one_source_queue_behind_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        dir.path(),
        "",
        &[
            "--auth-fail-delay-ms",
            "100",
            "--auth-fail-delay-max-ms",
            "300",
            "--security-timeout",
            "15",
        ],
    );
    let port = d.port();
    let src = addr(0, 77, 1);
    // Two failures first: from then on each try waits 200 ms, then 300.
    for i in 0..2 {
        let r = chap_login(src, port, OW2, "ow2", &format!("first-guess-{i}"));
        assert_eq!((r.class, r.detail), (2, 1));
    }
    let t0 = Instant::now();
    let tries: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let r = chap_login(src, port, OW2, "ow2", &format!("parallel-{i:02}"));
                (r.class, r.detail)
            })
        })
        .collect();
    for t in tries {
        assert_eq!(t.join().unwrap(), (2, 1));
    }
    let took = t0.elapsed();
    eprintln!("16 parallel guesses: {took:?}");
    // 16 slots, each at least 200 ms after the one before (the first
    // 200 ms after the last failure, just before t0).
    assert!(took >= Duration::from_millis(15 * 200), "{took:?}");
}

/// With a lockout configured, the (name, source) that failed too often is
/// refused even with the right secret; the same name elsewhere is not.
#[test]
fn lockout_refuses_the_guessing_source_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        dir.path(),
        "",
        &[
            "--auth-fail-delay-ms",
            "1",
            "--auth-lockout-after",
            "3",
            "--auth-lockout-secs",
            "600",
        ],
    );
    let port = d.port();
    let src = addr(0, 88, 1);
    for i in 0..3 {
        let r = chap_login(src, port, OW2, "ow2", &format!("lockout-guess-{i}"));
        assert_eq!((r.class, r.detail), (2, 1));
    }
    let r = chap_login(src, port, OW2, "ow2", OW2_SECRET);
    assert_eq!(
        (r.class, r.detail),
        (2, 1),
        "locked out, even with the secret"
    );
    assert_eq!(
        metric(&d, "rtgt_auth_failures_total{reason=\"locked_out\"}"),
        1.0
    );
    let r = chap_login(addr(0, 89, 1), port, OW2, "ow2", OW2_SECRET);
    assert_eq!((r.class, r.detail), (0, 0), "another source: {r:?}");
    // Another initiator from the locked-out source is not locked out.
    let Started::Challenged {
        mut conn,
        id,
        challenge,
    } = start_chap(src, port, MU2, 3).unwrap()
    else {
        panic!("mu2 refused");
    };
    let r = answer(
        &mut conn,
        "mu2",
        MU2_SECRET,
        id,
        &challenge,
        Some((1, &[0x33; 16])),
    )
    .unwrap();
    assert_eq!((r.class, r.detail), (0, 0), "{r:?}");
}

/// With the defaults (100 ms doubling to 2 s), six wrong tries take at
/// least 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s.
#[test]
fn default_pacing_slows_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", &[]);
    let t0 = Instant::now();
    for i in 0..6 {
        let r = chap_login(
            addr(0, 99, 1),
            d.port(),
            OW2,
            "ow2",
            &format!("default-{i}"),
        );
        assert_eq!((r.class, r.detail), (2, 1));
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(3100), "{took:?}");
}

// ---- 4. logins before authentication ----

/// Connections that stop after the challenge: at most --max-logins in
/// all, --max-logins-per-network from one /24, --max-logins-per-initiator
/// for one name; the rest get 03/02 at once; the security deadline closes
/// the ones held; then a real login goes through.
#[test]
fn logins_before_authentication_are_bounded_and_expire() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        dir.path(),
        "",
        &[
            "--max-logins",
            "60",
            "--max-logins-per-network",
            "25",
            "--max-logins-per-initiator",
            "40",
            "--security-timeout",
            "3",
        ],
    );
    let port = d.port();
    let mut held = Vec::new();
    let mut refused = 0;
    // One network: 25 in, the rest refused.
    for i in 0..40u8 {
        match start_chap(addr(0, 5, 1 + i), port, OW2, i.into()).unwrap() {
            Started::Challenged { conn, .. } => held.push(conn),
            Started::Refused(3, 2) => refused += 1,
            Started::Refused(c, dt) => panic!("{c:02x}/{dt:02x}"),
        }
    }
    assert_eq!((held.len(), refused), (25, 15), "per network");
    // One initiator name from other networks: 40 for ow2 in all.
    for net in 6..=7u8 {
        for i in 0..20u8 {
            match start_chap(addr(0, net, 1 + i), port, OW2, 1000 + u16::from(i)).unwrap() {
                Started::Challenged { conn, .. } => held.push(conn),
                Started::Refused(3, 2) => refused += 1,
                Started::Refused(c, dt) => panic!("{c:02x}/{dt:02x}"),
            }
        }
    }
    assert_eq!((held.len(), refused), (40, 15 + 25), "per initiator name");
    // Another name fills the global bound: 60 in all.
    for net in 8..=10u8 {
        for i in 0..10u8 {
            match start_chap(addr(0, net, 1 + i), port, MU2, 2000 + u16::from(i)).unwrap() {
                Started::Challenged { conn, .. } => held.push(conn),
                Started::Refused(3, 2) => refused += 1,
                Started::Refused(c, dt) => panic!("{c:02x}/{dt:02x}"),
            }
        }
    }
    assert_eq!((held.len(), refused), (60, 40 + 10), "global");
    assert_eq!(metric(&d, "rtgt_logins_in_progress"), 60.0);
    assert_eq!(metric(&d, "rtgt_login_limit{scope=\"global\"}"), 60.0);
    assert_eq!(
        metric(&d, "rtgt_login_failures_total{reason=\"login_limit\"}"),
        50.0
    );

    // The security deadline (3 s) closes every held connection.
    let t0 = Instant::now();
    for c in &mut held {
        let mut b = [0u8; 1];
        match c.s.read(&mut b) {
            Ok(0) => {}
            Ok(_) => panic!("the target sent something to a stalled login"),
            Err(e) => panic!("held connection not closed: {e}"),
        }
    }
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&d, "rtgt_logins_in_progress") > 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&d, "rtgt_logins_in_progress"), 0.0);
    let r = chap_login(addr(0, 5, 1), port, OW2, "ow2", OW2_SECRET);
    assert_eq!((r.class, r.detail), (0, 0), "{r:?}");
}

/// A connection that sends nothing at all is closed at the security
/// deadline too.
#[test]
fn a_silent_connection_is_closed_at_the_security_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", &["--security-timeout", "2"]);
    let mut s = connect_from(addr(0, 0, 1), d.port()).unwrap();
    let t0 = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap(), 0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

// ---- 5. inline secrets in a readable file ----

#[test]
fn inline_secrets_in_a_file_others_can_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["check", cfg.to_str().unwrap()],
        vec![
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{}:", cfg.display())) && err.contains("chmod 600"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(OW2_SECRET), "{err}");
    }
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rtgt"))
        .arg("check")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success());
}

// ---- 6. short initiator challenges ----

#[test]
fn short_initiator_challenges_are_refused_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", &[]);
    for (len, ok) in [
        (1usize, false),
        (8, false),
        (15, false),
        (16, true),
        (64, true),
    ] {
        let Started::Challenged {
            mut conn,
            id,
            challenge,
        } = start_chap(addr(0, 0, 1), d.port(), MU2, len as u16).unwrap()
        else {
            panic!("refused");
        };
        let mine = vec![0x5au8; len];
        let r = answer(
            &mut conn,
            "mu2",
            MU2_SECRET,
            id,
            &challenge,
            Some((3, &mine)),
        )
        .unwrap();
        if ok {
            assert_eq!((r.class, r.detail), (0, 0), "{len}: {r:?}");
            let want = chap_response(MD5, 3, MU2_TARGET_SECRET.as_bytes(), &mine).unwrap();
            assert_eq!(get(&r.keys, "CHAP_R").and_then(from_binary), Some(want));
        } else {
            assert_eq!((r.class, r.detail), (2, 1), "{len}: {r:?}");
            assert!(
                get(&r.keys, "CHAP_R").is_none(),
                "{len}: answered {:?}",
                r.keys
            );
        }
    }
    assert_eq!(
        metric(&d, "rtgt_auth_failures_total{reason=\"challenge_length\"}"),
        3.0
    );
    // The minimum is the administrator's to lower.
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "chap_min_challenge = 8", &[]);
    let Started::Challenged {
        mut conn,
        id,
        challenge,
    } = start_chap(addr(0, 0, 1), d.port(), MU2, 1).unwrap()
    else {
        panic!("refused");
    };
    let r = answer(
        &mut conn,
        "mu2",
        MU2_SECRET,
        id,
        &challenge,
        Some((3, &[7; 8])),
    )
    .unwrap();
    assert_eq!((r.class, r.detail), (0, 0), "{r:?}");
}
