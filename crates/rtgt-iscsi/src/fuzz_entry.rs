//! Fuzz entry points of the iSCSI fabric (`fuzz/` at the repository root
//! runs them under libFuzzer; `crates/rtgt/tests/fuzz_corpus.rs` replays
//! the committed seed corpus through them on the stable toolchain).
//!
//! Each entry point takes arbitrary bytes and must not panic on any input;
//! the assertions in here are invariants, and a failed one is a finding.
//!
//! - [`pdu`]: PDU framing ([`PduReader`], digests on and off, the three ways
//!   of reading a data segment) and text parsing.
//! - [`login`]: the login state machine ([`Login::step`]) over a sequence of
//!   Login Requests, with AuthMethod None or CHAP (the harness can answer
//!   the target's challenge correctly, so the fuzzer gets past CHAP), key
//!   negotiation ([`Negotiator`]) and text accumulation / segmentation.
//! - [`ffp`]: the full feature phase ([`Ffp`]) of one connection over a RAM
//!   LU, the bytes being the PDU stream after login; afterwards no command
//!   may hold a window slot or a task, and what the target sent must frame
//!   with the right digests and StatSN sequence.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtgt_scsi::access::{ChapAuth, Credential, Secret};
use rtgt_scsi::fuzz_entry::{block_on, nexus_for, ram_lu, task_set_drained, BLOCK};
use tokio::io::AsyncWrite;

use crate::chap::{
    decode_binary, encode_hex, Challenges, Chap, ChapAlgorithm, ChapSettings, DEFAULT_ALGORITHMS,
};
use crate::discovery::{TargetPortals, TextExchange};
use crate::ffp::{Ffp, FfpParams, Liveness, TextService};
use crate::login::{
    AuthPolicy, Login, LoginConfig, LoginRequest, Lookup, Step, TargetDirectory, TargetInfo,
    LOGIN_MAX_DSL, STAGE_FULL_FEATURE,
};
use crate::negotiation::{
    respond_ffp_key, Digest, FfpAnswer, NegotiationConfig, Negotiator, SessionParams, SessionType,
    MAX_DATA_LEN, MIN_DATA_LEN,
};
use crate::outbox::Outbox;
use crate::pdu::{self, op, Bhs, BHS_LEN, RESERVED_TAG};
use crate::text::{self, TextAccumulator, TextSegmenter, MAX_TEXT_LEN};
use crate::wire::{
    encode_simple, sn_lt, Digests, PduReader, PduWriter, ReadError, SendLimits, Window,
};

/// Longer inputs are ignored (keeps every run small).
pub const MAX_INPUT: usize = 64 * 1024;

/// The target the harness serves, and its portal.
pub const TARGET: &str = "iqn.2026-11.org.rtgt:fuzz";
pub const INITIATOR: &str = "iqn.1994-05.com.redhat:fuzz";
pub const PORTAL: &str = "127.0.0.1:3260";
/// CHAP credentials of the harness' targets.
pub const CHAP_USER: &str = "fuzzuser";
pub const CHAP_SECRET: &[u8] = b"fuzz-secret-1234";
pub const CHAP_MUTUAL_USER: &str = "fuzztarget";
pub const CHAP_MUTUAL_SECRET: &[u8] = b"fuzz-mutual-5678";
/// The challenge the harness sends for mutual CHAP.
pub const MUTUAL_CHALLENGE: [u8; 16] = *b"0123456789abcdef";

/// First CmdSN of the full feature phase in [`ffp`].
pub const FFP_FIRST_CMDSN: u32 = 1;
/// First StatSN the target sends in [`ffp`].
pub const FFP_FIRST_STATSN: u32 = 1;

fn portal() -> SocketAddr {
    PORTAL.parse().unwrap_or_else(|e| panic!("{PORTAL}: {e}"))
}

/// An in-memory reader that counts what was taken from it.
struct Counted<'a> {
    data: &'a [u8],
    pos: Arc<AtomicU32>,
}

impl tokio::io::AsyncRead for Counted<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let at = self.pos.load(Ordering::Relaxed) as usize;
        let rest = &self.data[at..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.pos.fetch_add(n as u32, Ordering::Relaxed);
        std::task::Poll::Ready(Ok(()))
    }
}

/// Bytes a PDU occupies on the wire.
fn wire_len(bhs: &Bhs, hd: bool, dd: bool) -> usize {
    let dl = bhs.data_len();
    BHS_LEN
        + bhs.ahs_len()
        + if hd { 4 } else { 0 }
        + if dl > 0 {
            pdu::padded(dl) + if dd { 4 } else { 0 }
        } else {
            0
        }
}

/// Text that parses must survive encode + parse unchanged.
fn check_text(data: &[u8]) {
    if let Ok(pairs) = text::parse(data) {
        let again = text::encode(&pairs);
        assert_eq!(
            text::parse(&again).ok().as_ref(),
            Some(&pairs),
            "text does not survive encode + parse"
        );
    }
}

/// PDU framing: byte 0 bit 0 header digests, bit 1 data digests, bit 2 the
/// full feature phase's 256 KiB MaxRecvDataSegmentLength instead of the
/// login's 8 KiB; the rest is the received byte stream. Every PDU read
/// must consume exactly its wire length, and a PDU read whole must
/// re-encode to the same header and data.
pub fn pdu(data: &[u8]) {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let ctl = data[0];
    let (hd, dd) = (ctl & 1 != 0, ctl & 2 != 0);
    let max_data = if ctl & 4 != 0 {
        256 * 1024
    } else {
        LOGIN_MAX_DSL
    };
    let pos = Arc::new(AtomicU32::new(0));
    let src = Counted {
        data: &data[1..],
        pos: pos.clone(),
    };
    let digests = Arc::new(Digests::default());
    digests.header.store(hd, Ordering::Relaxed);
    digests.data.store(dd, Ordering::Relaxed);
    let mut reader = PduReader::new(src, digests);
    reader.max_data = max_data;
    block_on(async {
        for _ in 0..1024 {
            let start = pos.load(Ordering::Relaxed) as usize;
            let inc = match reader.read_header().await {
                Ok(i) => i,
                Err(_) => break,
            };
            let bhs = inc.bhs;
            assert_eq!(inc.ahs.len(), bhs.ahs_len(), "AHS length");
            assert!(bhs.data_len() <= max_data, "data segment over the limit");
            let dl = bhs.data_len();
            // The way of reading the data segment, from the header.
            let how = bhs.0[47] % 3;
            let read = match how {
                0 => reader.read_data_vec(&inc).await.map(Some),
                1 => reader.skip_data(&inc).await.map(|_| None),
                _ => {
                    let mut v = vec![0u8; usize::from(bhs.0[46]).min(dl)];
                    reader.read_data_prefix(&inc, &mut v).await.map(|_| None)
                }
            };
            let end = pos.load(Ordering::Relaxed) as usize;
            match read {
                Ok(d) => {
                    assert_eq!(
                        end - start,
                        wire_len(&bhs, hd, dd),
                        "PDU {bhs:?} consumed a different length"
                    );
                    if let Some(d) = d {
                        assert_eq!(d.len(), dl);
                        if bhs.ahs_len() == 0 {
                            roundtrip(&bhs, &d).await;
                        }
                        check_text(&d);
                        match bhs.opcode() {
                            op::LOGIN_REQ => {
                                let r = LoginRequest::from_bhs(&bhs, d);
                                assert_eq!(r.itt, bhs.itt());
                            }
                            op::TEXT_REQ => {
                                let r = crate::discovery::TextRequest::from_bhs(&bhs, d);
                                assert_eq!(r.ttt, bhs.ttt());
                            }
                            _ => {}
                        }
                    }
                }
                Err(ReadError::DataDigest(b)) => {
                    assert_eq!(b, bhs, "data digest error names another PDU");
                    assert!(dd, "data digest error with data digests off");
                    assert_eq!(end - start, wire_len(&bhs, hd, dd), "bad digest length");
                }
                Err(_) => break,
            }
        }
    });
}

/// `encode_simple` then a digest-less reader gives back the same PDU.
async fn roundtrip(bhs: &Bhs, data: &[u8]) {
    let wire = encode_simple(bhs, data);
    assert_eq!(wire.len(), wire_len(bhs, false, false));
    let mut r = PduReader::new(&wire[..], Arc::new(Digests::default()));
    r.max_data = 1 << 24;
    let inc = r
        .read_header()
        .await
        .unwrap_or_else(|e| panic!("re-encoded PDU: {e}"));
    assert_eq!(inc.bhs, *bhs, "re-encoded header");
    let d = r
        .read_data_vec(&inc)
        .await
        .unwrap_or_else(|e| panic!("re-encoded data: {e}"));
    assert_eq!(d, data, "re-encoded data");
}

/// The targets of [`login`]: [`TARGET`] (AuthMethod None, or CHAP), a
/// moved and a removed one; discovery with None or CHAP.
struct Directory {
    target_chap: Option<ChapAuth>,
    discovery_chap: Option<ChapAuth>,
    algorithms: Vec<ChapAlgorithm>,
    /// Whether the last lookup required authentication.
    required: std::cell::Cell<Option<bool>>,
}

impl Directory {
    fn policy(&self, auth: &Option<ChapAuth>, initiator: &str) -> AuthPolicy {
        self.required.set(Some(auth.is_some()));
        match auth {
            None => AuthPolicy::None,
            Some(a) => AuthPolicy::Required(Box::new(Chap::new(
                a.clone(),
                &ChapSettings {
                    algorithms: self.algorithms.clone(),
                    ..ChapSettings::default()
                },
                Challenges::new(4),
                initiator.to_string(),
            ))),
        }
    }
}

impl TargetDirectory for Directory {
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Lookup {
        match target_name {
            TARGET => Lookup::Found(TargetInfo {
                alias: Some("fuzz".into()),
                auth: self.policy(&self.target_chap, initiator_name),
            }),
            "iqn.2026-11.org.rtgt:moved" => Lookup::Moved {
                address: "192.0.2.1:3260,1".into(),
                permanent: false,
            },
            "iqn.2026-11.org.rtgt:gone" => Lookup::Removed,
            "iqn.2026-11.org.rtgt:busy" => Lookup::OutOfResources,
            "iqn.2026-11.org.rtgt:acl" => Lookup::NotAllowed,
            _ => Lookup::NotFound,
        }
    }
    fn lookup_discovery(&self, initiator_name: &str) -> Lookup {
        Lookup::Found(TargetInfo {
            alias: None,
            auth: self.policy(&self.discovery_chap, initiator_name),
        })
    }
    fn session_exists(&self, _initiator_name: &str, _isid: [u8; 6], tsih: u16) -> bool {
        tsih == 1
    }
}

fn chap_auth(mutual: bool) -> ChapAuth {
    ChapAuth {
        initiator: Credential {
            user: CHAP_USER.into(),
            secret: Secret::new(CHAP_SECRET),
        },
        mutual: mutual.then(|| Credential {
            user: CHAP_MUTUAL_USER.into(),
            secret: Secret::new(CHAP_MUTUAL_SECRET),
        }),
    }
}

/// The negotiation configuration [`login`] uses for config byte `ctl`.
fn login_negotiation(ctl: u8) -> NegotiationConfig {
    let mut n = NegotiationConfig {
        propose_missing: ctl & 0x08 == 0,
        immediate_data: ctl & 0x10 == 0,
        initial_r2t: ctl & 0x20 != 0,
        ..NegotiationConfig::default()
    };
    if ctl & 0x40 != 0 {
        n.header_digests = vec![Digest::Crc32c];
        n.data_digests = vec![Digest::Crc32c];
        n.max_burst_length = 16 * 1024;
        n.first_burst_length = 8 * 1024;
        n.max_recv_data_segment_length = 4096;
        n.max_outstanding_r2t = 1;
    }
    n
}

/// Negotiated values must lie within what the target configured (RFC 7143
/// result functions: Min, Max, OR, AND, list choice), or be the RFC
/// default of a key that was not negotiated.
fn check_params(
    cfg: &NegotiationConfig,
    s: &SessionParams,
    c: &crate::negotiation::ConnectionParams,
) {
    let d = SessionParams::default();
    let range = MIN_DATA_LEN..=MAX_DATA_LEN;
    assert!(
        range.contains(&s.max_burst_length),
        "MaxBurstLength {}",
        s.max_burst_length
    );
    assert!(
        range.contains(&s.first_burst_length),
        "FirstBurstLength {}",
        s.first_burst_length
    );
    assert!(
        range.contains(&c.max_send_dsl),
        "initiator MRDSL {}",
        c.max_send_dsl
    );
    assert_eq!(
        c.max_recv_dsl, cfg.max_recv_data_segment_length,
        "our MRDSL"
    );
    if s.session_type == SessionType::Normal {
        assert!(
            s.first_burst_length <= s.max_burst_length,
            "FirstBurstLength {} > MaxBurstLength {}",
            s.first_burst_length,
            s.max_burst_length
        );
        let min_ok = |v: u32, ours: u32, def: u32| v <= ours || v == def;
        assert!(
            min_ok(s.max_burst_length, cfg.max_burst_length, d.max_burst_length),
            "MaxBurstLength {} over ours",
            s.max_burst_length
        );
        assert!(
            min_ok(
                s.first_burst_length,
                cfg.first_burst_length,
                d.first_burst_length
            ) || s.first_burst_length <= s.max_burst_length,
            "FirstBurstLength {} over ours",
            s.first_burst_length
        );
        assert!(s.max_outstanding_r2t >= 1, "MaxOutstandingR2T 0");
        assert!(
            min_ok(
                u32::from(s.max_outstanding_r2t),
                u32::from(cfg.max_outstanding_r2t),
                u32::from(d.max_outstanding_r2t)
            ),
            "MaxOutstandingR2T {}",
            s.max_outstanding_r2t
        );
        assert!(
            s.error_recovery_level <= cfg.error_recovery_level,
            "ErrorRecoveryLevel"
        );
        assert!(
            (1..=cfg.max_connections).contains(&s.max_connections),
            "MaxConnections {}",
            s.max_connections
        );
        assert!(
            !s.immediate_data || cfg.immediate_data || d.immediate_data,
            "ImmediateData is AND"
        );
        assert!(
            min_ok(
                u32::from(s.default_time2retain),
                u32::from(cfg.default_time2retain),
                u32::from(d.default_time2retain)
            ),
            "DefaultTime2Retain is Min"
        );
    }
    for (got, offered) in [
        (c.header_digest, &cfg.header_digests),
        (c.data_digest, &cfg.data_digests),
    ] {
        assert!(
            got == Digest::None || offered.contains(&got),
            "digest {got:?} not offered"
        );
    }
}

/// The harness' CHAP answer to the target's CHAP_A / CHAP_I / CHAP_C.
fn chap_answer(resp: &[(String, String)], mutual: bool) -> Vec<(String, String)> {
    let get = |k: &str| resp.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let alg = get("CHAP_A")
        .and_then(crate::negotiation::parse_number)
        .and_then(ChapAlgorithm::from_code);
    let id = get("CHAP_I")
        .and_then(crate::negotiation::parse_number)
        .and_then(|i| u8::try_from(i).ok());
    let challenge = get("CHAP_C").and_then(decode_binary);
    let mut out = vec![("CHAP_N".to_string(), CHAP_USER.to_string())];
    if let (Some(alg), Some(id), Some(c)) = (alg, id, challenge) {
        out.push((
            "CHAP_R".into(),
            encode_hex(&alg.response(id, CHAP_SECRET, &c)),
        ));
    } else {
        out.push(("CHAP_R".into(), "0x00".into()));
    }
    if mutual {
        out.push(("CHAP_I".into(), "7".into()));
        out.push(("CHAP_C".into(), encode_hex(&MUTUAL_CHALLENGE)));
    }
    out
}

/// A login over a sequence of Login Requests.
///
/// Byte 0 configures the target: bit 0 [`TARGET`] requires CHAP, bit 1
/// mutual CHAP, bit 2 discovery requires CHAP, bit 3 no proposals of
/// missing keys, bit 4 ImmediateData=No, bit 5 InitialR2T=Yes, bit 6 digests
/// required and small limits, bit 7 CHAP with MD5 only. Then records
/// `[flags, misc, len_hi, len_lo, text]`: `flags` is the BHS flags byte
/// (T, C, CSG, NSG); `misc` bit 0 appends the correct CHAP_N / CHAP_R for
/// the target's last challenge, bit 1 with it a mutual CHAP_I / CHAP_C,
/// bit 2 TSIH 1, bit 3 version-min 1, bit 4 another ISID, bit 5 another
/// ITT, bit 6 CID 1. Runs until the login completes or fails.
pub fn login(data: &[u8]) {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let ctl = data[0];
    let algorithms = if ctl & 0x80 != 0 {
        vec![ChapAlgorithm::Md5]
    } else {
        DEFAULT_ALGORITHMS.to_vec()
    };
    let dir = Directory {
        target_chap: (ctl & 1 != 0).then(|| chap_auth(ctl & 2 != 0)),
        discovery_chap: (ctl & 4 != 0).then(|| chap_auth(ctl & 2 != 0)),
        algorithms,
        required: std::cell::Cell::new(None),
    };
    let cfg = LoginConfig {
        portal_group_tag: 1,
        negotiation: login_negotiation(ctl),
    };
    let mut login = Login::new(cfg.clone());
    let mut rest = &data[1..];
    let mut last_resp: Vec<(String, String)> = Vec::new();
    let mut resp_acc = TextAccumulator::new();
    let mut authenticated_chap = false;
    for _ in 0..32 {
        if rest.len() < 4 {
            break;
        }
        let (flags, misc) = (rest[0], rest[1]);
        let n = (usize::from(rest[2]) << 8 | usize::from(rest[3])).min(rest.len() - 4);
        let mut text_data = rest[4..4 + n].to_vec();
        rest = &rest[4 + n..];
        side_checks(&text_data, misc);
        if misc & 1 != 0 {
            for (k, v) in chap_answer(&last_resp, misc & 2 != 0) {
                text::push_pair(&mut text_data, &k, &v);
            }
        }
        let req = LoginRequest {
            transit: flags & 0x80 != 0,
            cont: flags & 0x40 != 0,
            csg: (flags >> 2) & 3,
            nsg: flags & 3,
            version_max: 0,
            version_min: u8::from(misc & 0x08 != 0),
            isid: if misc & 0x10 != 0 {
                [0x80, 0, 0x23, 0xd0, 0, 2]
            } else {
                [0x80, 0, 0x23, 0xd0, 0, 1]
            },
            tsih: u16::from(misc & 0x04 != 0),
            itt: if misc & 0x20 != 0 { 0x1234 } else { 1 },
            cid: u16::from(misc & 0x40 != 0),
            cmdsn: 1,
            exp_statsn: 0,
            data: text_data,
        };
        let step = login.step(&req, &dir);
        let resp = step.response();
        assert_eq!(resp.itt, req.itt, "response ITT");
        assert_eq!(resp.isid, req.isid, "response ISID");
        assert!(
            resp.data.len() <= LOGIN_MAX_DSL,
            "login response of {} bytes",
            resp.data.len()
        );
        assert!(!(resp.transit && resp.cont), "response with T and C");
        // What the target says must parse.
        match resp_acc.push(&resp.data, resp.cont) {
            Ok(Some(all)) => {
                let parsed = text::parse(&all);
                assert!(parsed.is_ok(), "target sent unparsable text: {parsed:?}");
                last_resp = parsed.unwrap_or_default();
                if last_resp.iter().any(|(k, _)| k == "CHAP_R") {
                    authenticated_chap = true;
                }
            }
            Ok(None) => {}
            Err(e) => panic!("target's login text too long: {e}"),
        }
        match step {
            Step::Continue(r) => {
                assert_eq!((r.status_class, r.status_detail), (0, 0), "Continue status");
            }
            Step::Fail(r, f) => {
                assert_ne!(r.status_class, 0, "Fail with success status");
                assert_eq!((r.status_class, r.status_detail), f.status());
                break;
            }
            Step::Complete(r, outcome) => {
                assert_eq!((r.status_class, r.status_detail), (0, 0), "Complete status");
                assert!(
                    r.transit && r.nsg == STAGE_FULL_FEATURE,
                    "Complete without T / NSG 3"
                );
                assert!(!outcome.initiator_name.is_empty(), "no InitiatorName");
                if outcome.session_type == SessionType::Normal {
                    assert_eq!(outcome.target_name.as_deref(), Some(TARGET), "target");
                }
                let required = match outcome.session_type {
                    SessionType::Normal => dir.target_chap.is_some(),
                    SessionType::Discovery => dir.discovery_chap.is_some(),
                };
                if required {
                    assert_eq!(
                        outcome.auth_method, "CHAP",
                        "login completed without the required CHAP"
                    );
                }
                if ctl & 2 != 0 && required {
                    assert!(authenticated_chap, "mutual CHAP completed without CHAP_R");
                }
                check_params(&cfg.negotiation, &outcome.session, &outcome.connection);
                // Nothing more may be accepted.
                let again = login.step(&req, &dir);
                assert!(
                    matches!(again, Step::Fail(..)),
                    "login went on after completing"
                );
                break;
            }
        }
    }
}

/// Negotiation and text checks beside the login: the keys as Text Request
/// keys in full feature phase, a non-leading [`Negotiator`] over them, and
/// segmentation + accumulation of the text.
fn side_checks(data: &[u8], misc: u8) {
    check_text(data);
    let Ok(pairs) = text::parse(data) else {
        return;
    };
    for (k, v) in &pairs {
        if let FfpAnswer::MaxSendDsl(n) = respond_ffp_key(k, v) {
            assert!((MIN_DATA_LEN..=MAX_DATA_LEN).contains(&n), "MRDSL {n}");
        }
    }
    let cfg = NegotiationConfig::default();
    let mut neg = Negotiator::new(cfg.clone(), misc & 0x80 != 0);
    if pairs
        .iter()
        .any(|(k, v)| k == "SessionType" && v == "Discovery")
    {
        neg.set_session_type(SessionType::Discovery);
    }
    let mut out = Vec::new();
    if neg.respond(&pairs, &mut out).is_ok() {
        neg.make_offers(&mut out);
        neg.declare(&mut out);
        let encoded = text::encode(&out);
        assert!(
            text::parse(&encoded).is_ok(),
            "negotiator answer does not parse"
        );
        let (s, c) = neg.finish();
        check_params(&cfg, &s, &c);
    }
    // Segment and reassemble.
    let max = usize::from(misc).max(1) * 7;
    let mut seg = TextSegmenter::new(data.to_vec());
    let mut acc = TextAccumulator::new();
    let mut whole = None;
    for _ in 0..=data.len() {
        let (chunk, more) = seg.next_chunk(max);
        assert!(chunk.len() <= max, "chunk of {} over {max}", chunk.len());
        assert_eq!(more, !seg.is_done());
        match acc.push(&chunk, more) {
            Ok(Some(all)) => {
                whole = Some(all);
                break;
            }
            Ok(None) => {}
            Err(_) => {
                assert!(data.len() > MAX_TEXT_LEN);
                return;
            }
        }
    }
    assert_eq!(
        whole.as_deref(),
        Some(data),
        "segmented text does not reassemble"
    );
}

/// Where the target's output goes in [`ffp`]: kept (up to a limit) and
/// framed afterwards.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<(Vec<u8>, bool)>>);

const SINK_LIMIT: usize = 8 << 20;

impl AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Ok(mut g) = self.0.lock() {
            if !g.1 && g.0.len() + buf.len() <= SINK_LIMIT {
                g.0.extend_from_slice(buf);
            } else {
                g.1 = true;
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The connection parameters [`ffp`] uses for config byte `ctl`.
pub fn ffp_params(ctl: u8) -> (FfpParams, u32) {
    let small = ctl & 0x40 != 0;
    let p = FfpParams {
        immediate_data: ctl & 0x04 != 0,
        initial_r2t: ctl & 0x08 != 0,
        first_burst: if small { 4096 } else { 65536 },
        max_burst: if small { 8192 } else { 262_144 },
        max_outstanding_r2t: if small { 1 } else { 4 },
        max_recv_dsl: if small { 8192 } else { 65536 },
    };
    let max_send_dsl = if small { 8192 } else { 65536 };
    (p, max_send_dsl)
}

/// The full feature phase of one connection over a 1 MiB RAM LU (LUN 0).
///
/// Byte 0: bit 0 header digests, bit 1 data digests, bit 2 ImmediateData,
/// bit 3 InitialR2T, bit 4 a discovery session (no SCSI), bit 5 a command
/// window of 4 instead of 128, bit 6 small burst and segment limits (see
/// [`ffp_params`]), bit 7 LUN 0 mapped read-only. The rest is the PDU
/// stream from the initiator, starting at CmdSN [`FFP_FIRST_CMDSN`].
/// After the stream ends the connection is torn down as the driver does;
/// then no command may hold a window slot or sit in the task set, and the
/// target's output must frame (digests, padding) with StatSN in sequence.
pub fn ffp(data: &[u8]) {
    if data.is_empty() || data.len() > MAX_INPUT {
        return;
    }
    let ctl = data[0];
    let (hd, dd) = (ctl & 1 != 0, ctl & 2 != 0);
    let discovery = ctl & 0x10 != 0;
    let depth = if ctl & 0x20 != 0 { 4 } else { 128 };
    let (params, max_send_dsl) = ffp_params(ctl);
    let max_burst = params.max_burst;
    let sink = Sink::default();
    block_on(async {
        let lu = ram_lu(1 << 20, BLOCK);
        let nexus = (!discovery).then(|| {
            nexus_for(
                &format!("{INITIATOR},i,0x80000023d001"),
                &[(0, &lu, ctl & 0x80 != 0)],
            )
        });
        let digests = Arc::new(Digests::default());
        digests.header.store(hd, Ordering::Relaxed);
        digests.data.store(dd, Ordering::Relaxed);
        let window = Window::new(FFP_FIRST_CMDSN, depth);
        let limits = Arc::new(SendLimits {
            max_send_dsl: AtomicU32::new(max_send_dsl),
            max_burst: AtomicU32::new(max_burst),
        });
        let (tx, rx) = Outbox::new(1 << 20);
        let mut writer = PduWriter::new(
            sink.clone(),
            digests.clone(),
            window.clone(),
            limits.clone(),
        );
        writer.stat_sn = FFP_FIRST_STATSN;
        let writer_task = tokio::spawn(writer.run(rx, tx.backlog().clone()));
        let text = TextService {
            session_type: if discovery {
                SessionType::Discovery
            } else {
                SessionType::Normal
            },
            session_target: (!discovery).then(|| TARGET.to_string()),
            targets: vec![
                TargetPortals {
                    name: TARGET.into(),
                    portals: vec![(portal(), 1), ("[::]:3260".parse().unwrap_or(portal()), 2)],
                },
                TargetPortals {
                    name: "iqn.2026-11.org.rtgt:other".into(),
                    portals: vec![("0.0.0.0:3261".parse().unwrap_or(portal()), 3)],
                },
            ],
            local: portal(),
            exchange: TextExchange::new(),
        };
        let liveness = Arc::new(Liveness::default());
        let mut ffp = Ffp::new(
            nexus.clone(),
            window.clone(),
            tx.clone(),
            params,
            liveness,
            text,
            limits,
        );
        let mut reader = PduReader::new(&data[1..], digests.clone());
        let ran = tokio::time::timeout(Duration::from_secs(20), ffp.run(&mut reader)).await;
        assert!(ran.is_ok(), "full feature phase stuck on a finite input");
        // Tear down as the connection driver does.
        drop(ffp);
        if let Some(n) = &nexus {
            n.close();
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(5);
        while window.outstanding() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            window.outstanding(),
            0,
            "command window slots leaked after the connection ended"
        );
        let w = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
        assert!(
            matches!(w, Ok(Ok(Ok(())))),
            "writer did not end cleanly once the connection ended"
        );
        assert!(
            task_set_drained(&lu).await,
            "a task stayed in the task set after the connection ended"
        );
    });
    let out = match sink.0.lock() {
        Ok(g) if !g.1 => g.0.clone(),
        _ => return,
    };
    check_output(&out, hd, dd, depth);
}

/// The target's byte stream: PDUs framed with the digests in force, only
/// target opcodes, StatSN advancing by one per status, a sane window.
fn check_output(out: &[u8], hd: bool, dd: bool, depth: u32) {
    let digests = Arc::new(Digests::default());
    digests.header.store(hd, Ordering::Relaxed);
    digests.data.store(dd, Ordering::Relaxed);
    let mut r = PduReader::new(out, digests);
    r.max_data = MAX_DATA_LEN as usize;
    let mut stat_sn = FFP_FIRST_STATSN;
    block_on(async {
        loop {
            let inc = match r.read_header().await {
                Ok(i) => i,
                Err(ReadError::Closed) => break,
                Err(e) => panic!("target output does not frame: {e}"),
            };
            let b = inc.bhs;
            assert!(
                matches!(
                    b.opcode(),
                    op::NOP_IN
                        | op::SCSI_RSP
                        | op::TMF_RSP
                        | op::TEXT_RSP
                        | op::DATA_IN
                        | op::LOGOUT_RSP
                        | op::R2T
                        | op::ASYNC_MSG
                        | op::REJECT
                ),
                "target sent opcode {:#04x}",
                b.opcode()
            );
            if let Err(e) = r.read_data_vec(&inc).await {
                panic!("target output data segment: {e}");
            }
            let carries_statsn = b.advances_statsn() || b.opcode() == op::R2T;
            if carries_statsn {
                assert_eq!(b.u32_at(24), stat_sn, "StatSN out of sequence in {b:?}");
            }
            if b.advances_statsn() {
                stat_sn = stat_sn.wrapping_add(1);
            }
            if b.opcode() != op::NOP_IN || b.itt() != RESERVED_TAG || carries_statsn {
                let (exp, max) = (b.u32_at(28), b.u32_at(32));
                if exp != 0 || max != 0 {
                    // MaxCmdSN - ExpCmdSN + 1 commands fit: 0..=depth.
                    let room = max.wrapping_sub(exp).wrapping_add(1);
                    assert!(
                        room <= depth,
                        "window of {room} over depth {depth} in {b:?}"
                    );
                    assert!(!sn_lt(max.wrapping_add(1), exp), "MaxCmdSN < ExpCmdSN - 1");
                }
            }
        }
    });
}
