//! A small blocking iSCSI login client (RFC 7143), written independently
//! of the daemon's crates so that it cross-checks them: it logs in with
//! AuthMethod=None or CHAP (MD5, SHA1, SHA256, SHA3-256; one-way or
//! mutual; or, to test the target's defence, reflecting the target's own
//! challenge), negotiates a minimal operational stage, and can ask a
//! discovery session for SendTargets=All.
//!
//! Every read and write times out after 10 s, so a test never hangs.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;

/// What to log in as, and to what.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub initiator: String,
    /// None: a discovery session.
    pub target: Option<String>,
    /// None: AuthMethod=None.
    pub chap: Option<ClientChap>,
    pub isid: [u8; 6],
}

/// The initiator's side of CHAP.
#[derive(Debug, Clone)]
pub struct ClientChap {
    pub user: String,
    pub secret: Vec<u8>,
    /// The CHAP_A codes offered, in order of preference (5 MD5, 6 SHA1,
    /// 7 SHA256, 8 SHA3-256).
    pub algorithms: Vec<u8>,
    /// Mutual CHAP: the user name the target must answer with and the
    /// target's secret.
    pub mutual: Option<(String, Vec<u8>)>,
    /// Send the target's own CHAP_I / CHAP_C back as our mutual challenge
    /// (a reflection attack the target must refuse).
    pub reflect: bool,
}

/// How a login ended.
#[derive(Debug)]
pub struct LoginResult {
    /// Status-Class and Status-Detail of the last Login Response.
    pub class: u8,
    pub detail: u8,
    /// The CHAP_A value the target chose.
    pub chosen_algorithm: Option<u8>,
    /// Mutual CHAP: whether the target's CHAP_N and CHAP_R were right
    /// (None when no mutual CHAP took place). The login goes on even when
    /// they are wrong, so that a test sees both facts.
    pub target_verified: Option<bool>,
    /// On success, the connection, in full feature phase.
    pub stream: Option<TcpStream>,
}

impl LoginResult {
    pub fn succeeded(&self) -> bool {
        self.class == 0 && self.stream.is_some()
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);
const LOGIN_ITT: u32 = 0x0000_1000;
const FIRST_CMDSN: u32 = 1;
const RESERVED: u32 = 0xffff_ffff;
/// Bound on rounds of each stage, so that a confused target cannot make
/// the client loop.
const MAX_ROUNDS: usize = 16;

const OP_NOP_OUT: u8 = 0x00;
const OP_LOGIN_REQ: u8 = 0x03;
const OP_TEXT_REQ: u8 = 0x04;
const OP_NOP_IN: u8 = 0x20;
const OP_LOGIN_RSP: u8 = 0x23;
const OP_TEXT_RSP: u8 = 0x24;

/// Sequence numbers of the connections in full feature phase, keyed by
/// (local, peer) address, so that [`send_targets`] can carry on from the
/// login with only the stream in hand.
static SEQ: Mutex<Option<HashMap<(SocketAddr, SocketAddr), Seq>>> = Mutex::new(None);

#[derive(Debug, Clone, Copy)]
struct Seq {
    /// CmdSN of the next non-immediate command.
    cmdsn: u32,
    /// Last StatSN received + 1.
    exp_statsn: u32,
    next_itt: u32,
}

fn seq_key(s: &TcpStream) -> io::Result<(SocketAddr, SocketAddr)> {
    Ok((s.local_addr()?, s.peer_addr()?))
}

fn seq_get(s: &TcpStream) -> io::Result<Seq> {
    let key = seq_key(s)?;
    SEQ.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key).copied())
        .ok_or_else(|| invalid("stream did not come from iscsi_login::login"))
}

fn seq_put(s: &TcpStream, seq: Seq) -> io::Result<()> {
    let key = seq_key(s)?;
    SEQ.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, seq);
    Ok(())
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

// ---- PDUs ----

/// One received PDU: its 48-byte header and its data segment (padding
/// removed).
struct Pdu {
    bhs: [u8; 48],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    fn flags(&self) -> u8 {
        self.bhs[1]
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bhs[at],
            self.bhs[at + 1],
            self.bhs[at + 2],
            self.bhs[at + 3],
        ])
    }
}

fn write_pdu(s: &mut TcpStream, mut bhs: [u8; 48], data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .ok()
        .filter(|l| *l < 1 << 24)
        .ok_or_else(|| invalid("data segment too long"))?;
    bhs[4] = 0; // no AHS
    bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    let mut buf = bhs.to_vec();
    buf.extend_from_slice(data);
    buf.resize(48 + data.len().div_ceil(4) * 4, 0);
    s.write_all(&buf)
}

fn read_pdu(s: &mut TcpStream) -> io::Result<Pdu> {
    let mut bhs = [0u8; 48];
    s.read_exact(&mut bhs)?;
    let ahs = usize::from(bhs[4]) * 4;
    let dsl = (usize::from(bhs[5]) << 16) | (usize::from(bhs[6]) << 8) | usize::from(bhs[7]);
    if dsl > 16 << 20 {
        return Err(invalid(format!("data segment of {dsl} bytes")));
    }
    let mut skip = vec![0u8; ahs];
    s.read_exact(&mut skip)?;
    let mut data = vec![0u8; dsl.div_ceil(4) * 4];
    s.read_exact(&mut data)?;
    data.truncate(dsl);
    Ok(Pdu { bhs, data })
}

// ---- text ----

fn encode_text(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn parse_text(data: &[u8]) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0).filter(|i| !i.is_empty()) {
        let s = std::str::from_utf8(item).map_err(|_| invalid("text not UTF-8"))?;
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| invalid(format!("text pair without '=': {s:?}")))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn pair(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// ---- CHAP helpers (independent of rtgt-iscsi's) ----

/// H(id || secret || challenge) with CHAP_A algorithm `alg`.
pub fn chap_response(alg: u8, id: u8, secret: &[u8], challenge: &[u8]) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(1 + secret.len() + challenge.len());
    m.push(id);
    m.extend_from_slice(secret);
    m.extend_from_slice(challenge);
    Some(match alg {
        5 => md5::Md5::digest(&m).to_vec(),
        6 => sha1::Sha1::digest(&m).to_vec(),
        7 => sha2::Sha256::digest(&m).to_vec(),
        8 => sha3::Sha3_256::digest(&m).to_vec(),
        _ => return None,
    })
}

/// `0x` and lower-case hex digits.
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// A binary value: `0x` hex or `0b` base64 (RFC 7143 6.1).
pub fn from_binary(s: &str) -> Option<Vec<u8>> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.is_ascii() {
            return None;
        }
        let h = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_string()
        };
        return (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
    }
    let b = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B"))?;
    let b = b.trim_end_matches('=');
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Unpredictable enough for a test initiator's challenges: a hash of the
/// clock, the process id, a counter and a random hasher seed.
fn pseudo_random(len: usize) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = Vec::new();
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut d = sha2::Sha256::new();
        d.update(h.finish().to_be_bytes());
        d.update(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|t| t.as_nanos())
                .unwrap_or(0)
                .to_be_bytes(),
        );
        d.update(std::process::id().to_be_bytes());
        out.extend_from_slice(&d.finalize());
    }
    out.truncate(len);
    out
}

// ---- login ----

/// One Login Response (its text possibly gathered from several PDUs).
struct LoginRsp {
    transit: bool,
    nsg: u8,
    class: u8,
    detail: u8,
    text: Vec<(String, String)>,
}

struct Client {
    s: TcpStream,
    isid: [u8; 6],
    tsih: u16,
    exp_statsn: u32,
    /// Keys we sent during the login (answers to them need no answer).
    sent: Vec<String>,
}

impl Client {
    fn login_bhs(&self, transit: bool, cont: bool, csg: u8, nsg: u8) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = 0x40 | OP_LOGIN_REQ; // immediate
        let mut f = (csg & 3) << 2;
        if transit {
            f |= 0x80 | (nsg & 3);
        }
        if cont {
            f |= 0x40;
        }
        b[1] = f;
        b[2] = 0; // VersionMax
        b[3] = 0; // VersionMin
        b[8..14].copy_from_slice(&self.isid);
        b[14..16].copy_from_slice(&self.tsih.to_be_bytes());
        b[16..20].copy_from_slice(&LOGIN_ITT.to_be_bytes());
        b[20..22].copy_from_slice(&1u16.to_be_bytes()); // CID
        b[24..28].copy_from_slice(&FIRST_CMDSN.to_be_bytes());
        b[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        b
    }

    /// The security stage without authentication: send `first` (which
    /// says AuthMethod=None), answer what the target asks until it
    /// transits or refuses, and return its last response.
    fn security_none(&mut self, first: &[(String, String)]) -> io::Result<LoginRsp> {
        let mut r = self.round(0, 1, true, first)?;
        let mut rounds = 0;
        while r.class == 0 && !r.transit {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(invalid("target never left the security stage"));
            }
            let answers = self.answers(&r.text);
            r = self.round(0, 1, true, &answers)?;
        }
        Ok(r)
    }

    /// Send one Login Request with `pairs` and read the response,
    /// fetching the rest of a response the target continues (C bit).
    fn round(
        &mut self,
        csg: u8,
        nsg: u8,
        transit: bool,
        pairs: &[(String, String)],
    ) -> io::Result<LoginRsp> {
        self.sent.extend(pairs.iter().map(|(k, _)| k.clone()));
        let bhs = self.login_bhs(transit, false, csg, nsg);
        write_pdu(&mut self.s, bhs, &encode_text(pairs))?;
        let mut text = Vec::new();
        loop {
            let p = read_pdu(&mut self.s)?;
            if p.opcode() != OP_LOGIN_RSP {
                return Err(invalid(format!(
                    "expected a Login Response, got opcode {:#04x}",
                    p.opcode()
                )));
            }
            if p.u32_at(16) != LOGIN_ITT {
                return Err(invalid("Login Response with a foreign ITT"));
            }
            if p.bhs[8..14] != self.isid {
                return Err(invalid("Login Response with a foreign ISID"));
            }
            let (class, detail) = (p.bhs[36], p.bhs[37]);
            let f = p.flags();
            if class != 0 {
                return Ok(LoginRsp {
                    transit: false,
                    nsg: 0,
                    class,
                    detail,
                    text: Vec::new(),
                });
            }
            self.exp_statsn = p.u32_at(24).wrapping_add(1);
            let rsp_csg = (f >> 2) & 3;
            if rsp_csg != csg {
                return Err(invalid(format!(
                    "Login Response for stage {rsp_csg}, we are in {csg}"
                )));
            }
            text.extend_from_slice(&p.data);
            if f & 0x40 != 0 {
                if f & 0x80 != 0 {
                    return Err(invalid("Login Response with both T and C"));
                }
                // More text to come: ask for it with an empty request.
                let bhs = self.login_bhs(transit, false, csg, nsg);
                write_pdu(&mut self.s, bhs, &[])?;
                continue;
            }
            let transit_rsp = f & 0x80 != 0;
            if transit_rsp {
                self.tsih = u16::from_be_bytes([p.bhs[14], p.bhs[15]]);
            }
            return Ok(LoginRsp {
                transit: transit_rsp,
                nsg: f & 3,
                class,
                detail,
                text: parse_text(&text)?,
            });
        }
    }

    /// Answers to the target's own proposals: accept them (the first
    /// value of a list). Declarations and answers to our keys need none.
    fn answers(&self, text: &[(String, String)]) -> Vec<(String, String)> {
        const DECLARATIVE: [&str; 5] = [
            "MaxRecvDataSegmentLength",
            "TargetAlias",
            "TargetPortalGroupTag",
            "TargetAddress",
            "TargetName",
        ];
        text.iter()
            .filter(|(k, v)| {
                !self.sent.contains(k)
                    && !DECLARATIVE.contains(&k.as_str())
                    && !k.starts_with("CHAP_")
                    && !["Reject", "Irrelevant", "NotUnderstood"].contains(&v.as_str())
            })
            .map(|(k, v)| pair(k, v.split(',').next().unwrap_or_default()))
            .collect()
    }
}

fn failed(r: &LoginRsp, chosen: Option<u8>, verified: Option<bool>) -> LoginResult {
    LoginResult {
        class: r.class,
        detail: r.detail,
        chosen_algorithm: chosen,
        target_verified: verified,
        stream: None,
    }
}

/// Log in to the target on 127.0.0.1:`port`.
pub fn login(port: u16, opts: &LoginOptions) -> io::Result<LoginResult> {
    login_at(SocketAddr::from(([127, 0, 0, 1], port)), opts)
}

/// [`login`] to a portal at any address.
pub fn login_at(addr: SocketAddr, opts: &LoginOptions) -> io::Result<LoginResult> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut c = Client {
        s,
        isid: opts.isid,
        tsih: 0,
        exp_statsn: 0,
        sent: Vec::new(),
    };
    let mut chosen = None;
    let mut verified = None;

    // Security stage.
    let mut first = vec![pair("InitiatorName", opts.initiator.clone())];
    match &opts.target {
        Some(t) => first.push(pair("TargetName", t.clone())),
        None => first.push(pair("SessionType", "Discovery")),
    }
    let stage = match &opts.chap {
        None => {
            first.push(pair("AuthMethod", "None"));
            let r = c.security_none(&first)?;
            if r.class != 0 {
                return Ok(failed(&r, None, None));
            }
            r.nsg
        }
        Some(chap) => {
            first.push(pair("AuthMethod", "CHAP"));
            let r = c.round(0, 1, false, &first)?;
            if r.class != 0 {
                return Ok(failed(&r, None, None));
            }
            let offer: Vec<String> = chap.algorithms.iter().map(u8::to_string).collect();
            let r = c.round(0, 1, false, &[pair("CHAP_A", offer.join(","))])?;
            if r.class != 0 {
                return Ok(failed(&r, None, None));
            }
            let a = get(&r.text, "CHAP_A").ok_or_else(|| invalid("no CHAP_A from the target"))?;
            let alg: u8 = a
                .parse()
                .map_err(|_| invalid(format!("target's CHAP_A={a}")))?;
            if !chap.algorithms.contains(&alg) {
                return Err(invalid(format!("target chose CHAP_A={alg}, not offered")));
            }
            chosen = Some(alg);
            let id: u8 = get(&r.text, "CHAP_I")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| invalid("no valid CHAP_I from the target"))?;
            let challenge = get(&r.text, "CHAP_C")
                .and_then(from_binary)
                .ok_or_else(|| invalid("no valid CHAP_C from the target"))?;
            let resp = chap_response(alg, id, &chap.secret, &challenge)
                .ok_or_else(|| invalid(format!("unknown CHAP_A={alg}")))?;
            let mut keys = vec![
                pair("CHAP_N", chap.user.clone()),
                pair("CHAP_R", to_hex(&resp)),
            ];
            let mut ours = None;
            if chap.reflect {
                keys.push(pair("CHAP_I", id.to_string()));
                keys.push(pair("CHAP_C", to_hex(&challenge)));
                ours = Some((id, challenge.clone()));
            } else if chap.mutual.is_some() {
                let rnd = pseudo_random(33);
                let my_c = rnd[1..1 + challenge.len().clamp(16, 32)].to_vec();
                keys.push(pair("CHAP_I", rnd[0].to_string()));
                keys.push(pair("CHAP_C", to_hex(&my_c)));
                ours = Some((rnd[0], my_c));
            }
            let r = c.round(0, 1, true, &keys)?;
            if r.class != 0 {
                return Ok(failed(&r, chosen, None));
            }
            if let (Some((my_id, my_c)), Some((tuser, tsecret))) = (&ours, &chap.mutual) {
                let want = chap_response(alg, *my_id, tsecret, my_c);
                let got = get(&r.text, "CHAP_R").and_then(from_binary);
                verified = Some(get(&r.text, "CHAP_N") == Some(tuser.as_str()) && got == want);
            }
            let mut r = r;
            let mut rounds = 0;
            while r.class == 0 && !r.transit {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(invalid("target never left the security stage"));
                }
                let answers = c.answers(&r.text);
                r = c.round(0, 1, true, &answers)?;
            }
            if r.class != 0 {
                return Ok(failed(&r, chosen, verified));
            }
            r.nsg
        }
    };

    // Operational stage (unless the target went straight to full feature
    // phase, which it may not do when we asked for NSG=1, but be lenient).
    if stage == 1 {
        let mut keys = vec![
            pair("HeaderDigest", "None"),
            pair("DataDigest", "None"),
            pair("ErrorRecoveryLevel", "0"),
            pair("MaxRecvDataSegmentLength", "262144"),
        ];
        let mut rounds = 0;
        loop {
            let r = c.round(1, 3, true, &keys)?;
            if r.class != 0 {
                return Ok(failed(&r, chosen, verified));
            }
            if r.transit && r.nsg == 3 {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(invalid("target never left the operational stage"));
            }
            keys = c.answers(&r.text);
        }
    } else if stage != 3 {
        return Err(invalid(format!("target moved to stage {stage}")));
    }

    seq_put(
        &c.s,
        Seq {
            cmdsn: FIRST_CMDSN,
            exp_statsn: c.exp_statsn,
            next_itt: LOGIN_ITT + 1,
        },
    )?;
    Ok(LoginResult {
        class: 0,
        detail: 0,
        chosen_algorithm: chosen,
        target_verified: verified,
        stream: Some(c.s),
    })
}

// ---- discovery ----

/// SendTargets=All on a discovery session opened by [`login`]: each
/// target's name and its TargetAddress values ("host:port,tag"), in the
/// order the target sent them.
pub fn send_targets(stream: &mut TcpStream) -> io::Result<Vec<(String, Vec<String>)>> {
    let mut seq = seq_get(stream)?;
    let itt = seq.next_itt;
    seq.next_itt = seq.next_itt.wrapping_add(1);
    let mut ttt = RESERVED;
    let mut data = encode_text(&[pair("SendTargets", "All")]);
    let mut text = Vec::new();
    let mut requests = 0;
    'exchange: loop {
        requests += 1;
        if requests > 1024 {
            return Err(invalid("SendTargets response never ends"));
        }
        let mut b = [0u8; 48];
        b[0] = OP_TEXT_REQ;
        b[1] = 0x80; // F
        b[8..16].fill(0); // LUN
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&ttt.to_be_bytes());
        b[24..28].copy_from_slice(&seq.cmdsn.to_be_bytes());
        b[28..32].copy_from_slice(&seq.exp_statsn.to_be_bytes());
        write_pdu(stream, b, &data)?;
        seq.cmdsn = seq.cmdsn.wrapping_add(1);
        data.clear();
        loop {
            let p = read_pdu(stream)?;
            match p.opcode() {
                OP_NOP_IN => {
                    // A ping from the target: answer it (same TTT, data
                    // echoed); an unsolicited one without a TTT needs none.
                    let nttt = p.u32_at(20);
                    if nttt != RESERVED {
                        let mut n = [0u8; 48];
                        n[0] = 0x40 | OP_NOP_OUT;
                        n[1] = 0x80;
                        n[16..20].copy_from_slice(&RESERVED.to_be_bytes());
                        n[20..24].copy_from_slice(&nttt.to_be_bytes());
                        n[24..28].copy_from_slice(&seq.cmdsn.to_be_bytes());
                        n[28..32].copy_from_slice(&seq.exp_statsn.to_be_bytes());
                        write_pdu(stream, n, &p.data)?;
                    }
                }
                OP_TEXT_RSP => {
                    if p.u32_at(16) != itt {
                        return Err(invalid("Text Response with a foreign ITT"));
                    }
                    seq.exp_statsn = p.u32_at(24).wrapping_add(1);
                    text.extend_from_slice(&p.data);
                    let f = p.flags();
                    if f & 0x80 != 0 {
                        if f & 0x40 != 0 {
                            return Err(invalid("Text Response with both F and C"));
                        }
                        break 'exchange;
                    }
                    // More to come: an empty request with the target's TTT.
                    ttt = p.u32_at(20);
                    if ttt == RESERVED {
                        return Err(invalid("Text Response with F=0 and no TTT"));
                    }
                    continue 'exchange;
                }
                other => {
                    return Err(invalid(format!(
                        "unexpected opcode {other:#04x} during SendTargets"
                    )))
                }
            }
        }
    }
    seq_put(stream, seq)?;

    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in parse_text(&text)? {
        match k.as_str() {
            "TargetName" => out.push((v, Vec::new())),
            "TargetAddress" => match out.last_mut() {
                Some((_, addrs)) => addrs.push(v),
                None => return Err(invalid("TargetAddress before any TargetName")),
            },
            _ => {}
        }
    }
    Ok(out)
}

// ---- login with chosen operational keys ----

/// Log in to `target` like [`login`] with AuthMethod=None, but offer
/// `keys` in the operational stage instead of the minimal set (the
/// target's own proposals are accepted as they are, as [`login`] does).
/// Returns the connection in full feature phase (first command: CmdSN 1)
/// and every key=value the target sent in the operational stage, in
/// order: its answers to `keys`, its proposals and its declarations
/// (such as its MaxRecvDataSegmentLength). A refused login is an error
/// naming the status.
pub fn login_with_keys(
    port: u16,
    initiator: &str,
    target: &str,
    isid: [u8; 6],
    keys: &[(&str, &str)],
) -> io::Result<(TcpStream, Vec<(String, String)>)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut c = Client {
        s,
        isid,
        tsih: 0,
        exp_statsn: 0,
        sent: Vec::new(),
    };
    let refused = |r: &LoginRsp| {
        invalid(format!(
            "login of {initiator} refused: status {:02x}/{:02x}",
            r.class, r.detail
        ))
    };
    let first = vec![
        pair("InitiatorName", initiator),
        pair("TargetName", target),
        pair("AuthMethod", "None"),
    ];
    let r = c.security_none(&first)?;
    if r.class != 0 {
        return Err(refused(&r));
    }
    let mut theirs = Vec::new();
    if r.nsg == 1 {
        let mut offer: Vec<(String, String)> = keys.iter().map(|(k, v)| pair(k, *v)).collect();
        let mut rounds = 0;
        loop {
            let r = c.round(1, 3, true, &offer)?;
            if r.class != 0 {
                return Err(refused(&r));
            }
            theirs.extend(r.text.iter().cloned());
            if r.transit && r.nsg == 3 {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(invalid("target never left the operational stage"));
            }
            offer = c.answers(&r.text);
        }
    } else if r.nsg != 3 {
        return Err(invalid(format!("target moved to stage {}", r.nsg)));
    }
    seq_put(
        &c.s,
        Seq {
            cmdsn: FIRST_CMDSN,
            exp_statsn: c.exp_statsn,
            next_itt: LOGIN_ITT + 1,
        },
    )?;
    Ok((c.s, theirs))
}
