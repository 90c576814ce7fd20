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
//! - [`chap`]: CHAP, target side ([`Chap`]), over one or two connections
//!   (and fillers) sharing a challenge record: success only with the right
//!   response, no answer to an outstanding (reflected) challenge, nothing
//!   left in the record, no secret in the output.

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

/// CHAP, target side: [`Chap`] driven through [`Authenticator::step`]
/// (`crate::login::Authenticator`) by a harness that can answer the
/// target's challenge correctly, with up to five connections sharing one
/// [`Challenges`] record.
///
/// Four control bytes, then rounds.
///
/// - Byte 0: bit 0 connection A does mutual CHAP; bit 1 a second
///   connection B shares the record; bit 2 B does mutual CHAP; bit 3 the
///   mutual secret is the initiator secret [`CHAP_SECRET`] (the
///   misconfiguration RFC 7143 9.2.1 is about, which makes a reflected
///   challenge's answer a valid response); bits 4-5 how many "filler"
///   connections (one-way CHAP, own credentials) take a challenge before
///   the rounds start; bit 6 B has its own initiator credentials instead
///   of A's.
/// - Byte 1: bits 0-3 the algorithms allowed (MD5, SHA1, SHA256,
///   SHA3-256); bit 4 the list is given twice (the second time reversed).
/// - Byte 2: `min_peer_challenge`: the byte itself below 0xc0, else
///   990 + (byte - 0xc0) (around the 1024-byte maximum).
/// - Byte 3: bits 0-1 the record's capacity minus 1 (1..=4).
///
/// Each round is `[flags, extra, len_hi, len_lo, text]`; `text` is
/// NUL-separated `key=value` items turned into strings lossily, a key of
/// the single byte 1..=5 standing for CHAP_A, CHAP_I, CHAP_C, CHAP_N,
/// CHAP_R. The harness then edits the list (setting a key replaces every
/// copy of it, or appends it):
///
/// - `flags`: bits 0-1 the connection the round goes to (modulo the
///   number of connections: A, B, fillers); bit 2 CHAP_R := the response
///   to the challenge that connection was sent (see `extra` bits 0-1);
///   bit 3 CHAP_N := its user; bit 4 CHAP_I / CHAP_C := a fresh mutual
///   challenge of `max(min_peer_challenge, 1)` bytes; bit 5 CHAP_I /
///   CHAP_C := the challenge the source connection (`extra` bits 6-7) was
///   sent, its own included (reflection); bit 6 (without bit 2) CHAP_R :=
///   the last CHAP_R the source connection output; bit 7 the connection
///   is dropped after the round.
/// - `extra`: bits 0-1 the response of bit 2 is 0 the right one, 1 for
///   the wrong CHAP_I, 2 with the mutual secret, 3 with its last byte
///   flipped; bits 2-3 harness-made binary values in lower-case hex,
///   upper-case hex, base64, unpadded base64; bit 4 the fresh challenge is
///   one byte short; bit 5 a dropped connection is replaced by a new one
///   (new `Chap`, same record) for this round, else the round is skipped;
///   bits 6-7 the source connection, as an offset from the round's one.
///
/// Invariants: no panic; `Success` only when the harness put the right
/// response (computed here with the md5 / sha1 / sha2 / sha3 crates) and
/// the configured user there, no key outside CHAP_N / CHAP_R / CHAP_I /
/// CHAP_C, each once, the mutual configuration matching, and the two
/// directions' secrets distinct; no CHAP_R output when the initiator's
/// CHAP_C is a challenge outstanding in the record; a mutual CHAP_R is
/// H(CHAP_I || mutual secret || CHAP_C) computed here, for a CHAP_C of
/// `min_peer_challenge..=1024` bytes, and CHAP_R is output on success
/// only; the record holds exactly the challenges of the connections
/// awaiting a response (never more than its capacity), a connection
/// refused for a full record gets `OutOfResources` and outputs nothing,
/// and after every `Chap` is dropped nothing is outstanding; no output
/// value, `Debug` or failure text contains a secret; the round-1 answer is
/// CHAP_A (the initiator's first allowed choice) / CHAP_I / CHAP_C of the
/// algorithm's challenge length; a round with only the harness' right
/// keys succeeds (and fails when the mutual configuration differs).
pub fn chap(data: &[u8]) {
    chap_harness::run(data);
}

mod chap_harness {
    use std::sync::Arc;

    use rtgt_scsi::access::{ChapAuth, Credential, Secret};
    use sha2::Digest as _;

    use super::{CHAP_MUTUAL_SECRET, CHAP_MUTUAL_USER, CHAP_SECRET, CHAP_USER, MAX_INPUT};
    use crate::chap::{
        decode_binary, Challenges, Chap, ChapAlgorithm, ChapFailure, ChapSettings,
        MAX_PEER_CHALLENGE_LEN,
    };
    use crate::login::{AuthStatus, Authenticator};
    use crate::negotiation::parse_number;
    use crate::text::Pair;

    /// B's own initiator credentials (byte 0 bit 6).
    const USER_B: &str = "fuzzuser-b";
    const SECRET_B: &[u8] = b"fuzz-secret-b-90";
    /// The fillers' credentials.
    const FILLER_USER: &str = "fuzzfiller";
    const FILLER_SECRET: &[u8] = b"fuzz-filler-0000";
    const MAX_ROUNDS: usize = 32;
    const ALGORITHMS: [ChapAlgorithm; 4] = [
        ChapAlgorithm::Md5,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha3_256,
    ];
    const KEY_NAMES: [&str; 5] = ["CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"];

    /// H(id || secret || challenge) for CHAP_A code `code`, independent of
    /// `ChapAlgorithm::response`.
    fn digest(code: u8, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(1 + secret.len() + challenge.len());
        m.push(id);
        m.extend_from_slice(secret);
        m.extend_from_slice(challenge);
        match code {
            5 => md5::Md5::digest(&m).to_vec(),
            6 => sha1::Sha1::digest(&m).to_vec(),
            7 => sha2::Sha256::digest(&m).to_vec(),
            8 => sha3::Sha3_256::digest(&m).to_vec(),
            _ => panic!("no CHAP algorithm {code}"),
        }
    }

    /// The length of the challenge the target must send for `code`: the
    /// digest size, at least 16 bytes.
    fn challenge_len(code: u8) -> usize {
        match code {
            5 => 16,
            6 => 20,
            _ => 32,
        }
    }

    /// A binary value in one of the four encodings (`extra` bits 2-3).
    fn encode(bytes: &[u8], how: u8) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        match how & 3 {
            0 | 1 => {
                let upper = how & 3 == 1;
                s.push_str(if upper { "0X" } else { "0x" });
                for b in bytes {
                    if upper {
                        s.push_str(&format!("{b:02X}"));
                    } else {
                        s.push_str(&format!("{b:02x}"));
                    }
                }
            }
            _ => {
                s.push_str("0b");
                for chunk in bytes.chunks(3) {
                    let mut n = [0u8; 3];
                    n[..chunk.len()].copy_from_slice(chunk);
                    let v = u32::from(n[0]) << 16 | u32::from(n[1]) << 8 | u32::from(n[2]);
                    for i in 0..4 {
                        if i <= chunk.len() {
                            s.push(char::from(B64[(v >> (18 - 6 * i) & 63) as usize]));
                        } else if how & 3 == 2 {
                            s.push('=');
                        }
                    }
                }
            }
        }
        s
    }

    /// The round's text: NUL-separated items, `key=value` (no `=`: an
    /// empty value), a one-byte key 1..=5 standing for a CHAP key.
    fn parse_pairs(text: &[u8]) -> Vec<Pair> {
        text.split(|&b| b == 0)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (k, v) = match item.iter().position(|&b| b == b'=') {
                    Some(p) => (&item[..p], &item[p + 1..]),
                    None => (item, &[][..]),
                };
                let key = match k {
                    [n @ 1..=5] => KEY_NAMES[usize::from(*n - 1)].to_string(),
                    _ => String::from_utf8_lossy(k).into_owned(),
                };
                (key, String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    /// Replace every `key` of `keys` by `value`, or append it.
    fn set(keys: &mut Vec<Pair>, key: &str, value: &str) {
        let mut found = false;
        for (k, v) in keys.iter_mut() {
            if k == key {
                *v = value.to_string();
                found = true;
            }
        }
        if !found {
            keys.push((key.to_string(), value.to_string()));
        }
    }

    /// The values of `key` in `keys`.
    fn values<'a>(keys: &'a [Pair], key: &str) -> Vec<&'a str> {
        keys.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `key` if `keys` has it exactly once.
    fn single<'a>(keys: &'a [Pair], key: &str) -> Option<&'a str> {
        match values(keys, key)[..] {
            [v] => Some(v),
            _ => None,
        }
    }

    fn cred(user: &str, secret: &[u8]) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::new(secret),
        }
    }

    /// A challenge the target sent.
    #[derive(Clone)]
    struct Sent {
        code: u8,
        id: u8,
        challenge: Vec<u8>,
    }

    enum Phase {
        /// Waiting for CHAP_A.
        Initial,
        /// Challenge sent (and outstanding in the record).
        Awaiting(Sent),
        /// Succeeded or failed: every further round fails.
        Done,
    }

    /// One connection's CHAP and what the harness knows of it.
    struct Slot {
        auth: ChapAuth,
        peer: String,
        chap: Option<Chap>,
        phase: Phase,
        /// The last challenge it was sent, outstanding or not.
        last_sent: Option<Sent>,
        /// The last CHAP_R it output.
        last_r: Option<String>,
        /// It was refused for a full record (its later rounds may say
        /// `OutOfResources` again: the first failure sticks).
        refused: bool,
    }

    impl Slot {
        fn pending(&self) -> Option<&Sent> {
            match (&self.chap, &self.phase) {
                (Some(_), Phase::Awaiting(s)) => Some(s),
                _ => None,
            }
        }
    }

    /// What the harness did to a round's keys.
    struct Edits {
        /// The right response to the challenge awaiting an answer is in
        /// CHAP_R (every copy of it), put there by the harness.
        correct_response: bool,
        /// Only the harness' keys (CHAP_N, the right CHAP_R and, if
        /// `mutual_asked`, a fresh mutual challenge): Some(whether that
        /// challenge, if any, has an acceptable length).
        canonical: Option<bool>,
        /// The harness sent a fresh mutual CHAP_I / CHAP_C.
        mutual_asked: bool,
    }

    struct Harness {
        record: Arc<Challenges>,
        capacity: usize,
        settings: ChapSettings,
        slots: Vec<Slot>,
        /// Every secret configured, and its hex digits.
        secrets: Vec<(Vec<u8>, String)>,
    }

    pub(super) fn run(data: &[u8]) {
        if data.len() < 4 || data.len() > MAX_INPUT {
            return;
        }
        let (c0, c1, c2, c3) = (data[0], data[1], data[2], data[3]);
        let mutual_secret = if c0 & 0x08 != 0 {
            CHAP_SECRET
        } else {
            CHAP_MUTUAL_SECRET
        };
        let mutual = cred(CHAP_MUTUAL_USER, mutual_secret);
        let mut auths = vec![ChapAuth {
            initiator: cred(CHAP_USER, CHAP_SECRET),
            mutual: (c0 & 0x01 != 0).then(|| mutual.clone()),
        }];
        if c0 & 0x02 != 0 {
            auths.push(ChapAuth {
                initiator: if c0 & 0x40 != 0 {
                    cred(USER_B, SECRET_B)
                } else {
                    cred(CHAP_USER, CHAP_SECRET)
                },
                mutual: (c0 & 0x04 != 0).then(|| mutual.clone()),
            });
        }
        for _ in 0..(c0 >> 4) & 3 {
            auths.push(ChapAuth {
                initiator: cred(FILLER_USER, FILLER_SECRET),
                mutual: None,
            });
        }
        let mut algorithms: Vec<ChapAlgorithm> = ALGORITHMS
            .iter()
            .enumerate()
            .filter(|(i, _)| c1 >> i & 1 != 0)
            .map(|(_, a)| *a)
            .collect();
        if c1 & 0x10 != 0 {
            let again: Vec<ChapAlgorithm> = algorithms.iter().rev().copied().collect();
            algorithms.extend(again);
        }
        let settings = ChapSettings {
            algorithms,
            min_peer_challenge: if c2 < 0xc0 {
                usize::from(c2)
            } else {
                990 + usize::from(c2 - 0xc0)
            },
        };
        let capacity = usize::from(c3 & 3) + 1;
        let record = Challenges::new(capacity);
        assert_eq!(record.capacity(), capacity, "record capacity");
        let secrets = [CHAP_SECRET, CHAP_MUTUAL_SECRET, SECRET_B, FILLER_SECRET]
            .iter()
            .map(|s| (s.to_vec(), s.iter().map(|b| format!("{b:02x}")).collect()))
            .collect();
        let mut h = Harness {
            record,
            capacity,
            settings,
            slots: Vec::new(),
            secrets,
        };
        for (i, auth) in auths.into_iter().enumerate() {
            let peer = format!("iqn.1994-05.com.redhat:fuzz-{i}");
            let chap = Chap::new(auth.clone(), &h.settings, h.record.clone(), peer.clone());
            h.slots.push(Slot {
                auth,
                peer,
                chap: Some(chap),
                phase: Phase::Initial,
                last_sent: None,
                last_r: None,
                refused: false,
            });
        }
        let no_edits = Edits {
            correct_response: false,
            canonical: None,
            mutual_asked: false,
        };
        let first_filler = if c0 & 0x02 != 0 { 2 } else { 1 };
        for i in first_filler..h.slots.len() {
            h.step(i, &[("CHAP_A".into(), "8,7,6,5".into())], &no_edits);
        }

        let mut rest = &data[4..];
        for round in 0..MAX_ROUNDS {
            if rest.len() < 4 {
                break;
            }
            let (flags, extra) = (rest[0], rest[1]);
            let n = (usize::from(rest[2]) << 8 | usize::from(rest[3])).min(rest.len() - 4);
            let text = &rest[4..4 + n];
            rest = &rest[4 + n..];
            h.round(round, flags, extra, text);
        }

        let record = h.record.clone();
        drop(h);
        assert_eq!(
            record.outstanding(),
            0,
            "challenges left in the record after every Chap was dropped"
        );
    }

    impl Harness {
        fn round(&mut self, round: usize, flags: u8, extra: u8, text: &[u8]) {
            let n = self.slots.len();
            let t = usize::from(flags & 3) % n;
            let src = (t + usize::from(extra >> 6)) % n;
            if self.slots[t].chap.is_none() {
                if extra & 0x20 == 0 {
                    return;
                }
                let s = &mut self.slots[t];
                s.chap = Some(Chap::new(
                    s.auth.clone(),
                    &self.settings,
                    self.record.clone(),
                    s.peer.clone(),
                ));
                s.phase = Phase::Initial;
                s.refused = false;
                self.check_record();
            }
            let mut keys = parse_pairs(text);
            let from_fuzzer = keys.len();
            let how = (extra >> 2) & 3;
            if flags & 0x08 != 0 {
                let user = self.slots[t].auth.initiator.user.clone();
                set(&mut keys, "CHAP_N", &user);
            }
            let mut fresh_ok = false;
            if flags & 0x10 != 0 {
                let min = self.settings.min_peer_challenge.max(1);
                let len = if extra & 0x10 != 0 { min - 1 } else { min };
                let c: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(0x3b) ^ (round as u8) ^ 0xa5)
                    .collect();
                fresh_ok = len >= min && len <= MAX_PEER_CHALLENGE_LEN;
                set(&mut keys, "CHAP_I", &round.to_string());
                set(&mut keys, "CHAP_C", &encode(&c, how));
            }
            let reflect = flags & 0x20 != 0;
            if reflect {
                let s = &self.slots[src];
                if let Some(sent) = s.pending().or(s.last_sent.as_ref()).cloned() {
                    set(&mut keys, "CHAP_I", &sent.id.to_string());
                    set(&mut keys, "CHAP_C", &encode(&sent.challenge, how));
                }
            }
            let mut correct_response = false;
            if flags & 0x04 != 0 {
                let s = &self.slots[t];
                if let Some(sent) = s.pending().or(s.last_sent.as_ref()) {
                    let secret = s.auth.initiator.secret.expose();
                    let right = digest(sent.code, sent.id, secret, &sent.challenge);
                    let r = match extra & 3 {
                        0 => right.clone(),
                        1 => digest(sent.code, sent.id.wrapping_add(1), secret, &sent.challenge),
                        2 => digest(sent.code, sent.id, CHAP_MUTUAL_SECRET, &sent.challenge),
                        _ => {
                            let mut r = right.clone();
                            if let Some(last) = r.last_mut() {
                                *last ^= 1;
                            }
                            r
                        }
                    };
                    correct_response = s.pending().is_some() && r == right;
                    set(&mut keys, "CHAP_R", &encode(&r, how));
                }
            } else if flags & 0x40 != 0 {
                if let Some(r) = self.slots[src].last_r.clone() {
                    set(&mut keys, "CHAP_R", &r);
                }
            }
            let mutual_asked = flags & 0x10 != 0;
            let edits = Edits {
                correct_response,
                canonical: (from_fuzzer == 0 && flags & 0x08 != 0 && correct_response && !reflect)
                    .then_some(!mutual_asked || fresh_ok),
                mutual_asked,
            };
            self.step(t, &keys, &edits);
            if flags & 0x80 != 0 {
                let s = &mut self.slots[t];
                s.chap = None;
                s.phase = Phase::Done;
                self.check_record();
            }
        }

        /// The record holds exactly the challenges of the connections
        /// awaiting a response.
        fn check_record(&self) {
            let pending: Vec<&Sent> = self.slots.iter().filter_map(Slot::pending).collect();
            let n = self.record.outstanding();
            assert!(
                n <= self.capacity,
                "record holds {n} over {}",
                self.capacity
            );
            assert_eq!(n, pending.len(), "outstanding challenges in the record");
            for s in pending {
                assert!(
                    self.record.contains(&s.challenge),
                    "an outstanding challenge is missing from the record"
                );
            }
        }

        fn no_secret(&self, what: &str, s: &str) {
            let lower = s.to_ascii_lowercase();
            for (raw, hex) in &self.secrets {
                assert!(
                    !s.as_bytes().windows(raw.len()).any(|w| w == raw.as_slice()),
                    "{what} contains a secret"
                );
                assert!(
                    !lower.contains(hex.as_str()),
                    "{what} contains a secret in hex"
                );
            }
        }

        /// One round to connection `t`, and every check on its answer.
        fn step(&mut self, t: usize, keys: &[Pair], edits: &Edits) {
            self.check_record();
            let outstanding: Vec<Vec<u8>> = self
                .slots
                .iter()
                .filter_map(Slot::pending)
                .map(|s| s.challenge.clone())
                .collect();
            let count_before = outstanding.len();
            let reflected = values(keys, "CHAP_C")
                .into_iter()
                .filter_map(decode_binary)
                .any(|c| outstanding.contains(&c));
            let min_peer = self.settings.min_peer_challenge;
            let allowed = self.settings.algorithms.clone();

            let slot = &mut self.slots[t];
            let Some(chap) = slot.chap.as_mut() else {
                return;
            };
            let phase = std::mem::replace(&mut slot.phase, Phase::Done);
            assert_eq!(chap.method(), "CHAP");
            assert_eq!(
                chap.checks_proof_next(),
                matches!(phase, Phase::Awaiting(_)),
                "checks_proof_next"
            );
            let mut out = Vec::new();
            let st = chap.step(keys, &mut out);
            let debug = format!("{chap:?}");
            let reason = chap.failure_reason().map(|f| f.to_string());
            let label = chap.failure_label();
            let succeeded = chap.succeeded();
            let algorithm = chap.algorithm();
            let auth = slot.auth.clone();

            for (k, v) in &out {
                self.no_secret("output key", k);
                self.no_secret("output value", v);
            }
            self.no_secret("Debug", &debug);
            if let Some(r) = &reason {
                self.no_secret("failure reason", r);
            }
            if let Some(l) = label {
                assert!(ChapFailure::LABELS.contains(&l), "label {l}");
            }
            assert_eq!(
                succeeded,
                st == AuthStatus::Success,
                "succeeded() after {st:?}"
            );
            let out_r = values(&out, "CHAP_R");
            assert!(
                out_r.is_empty() || st == AuthStatus::Success,
                "CHAP_R output on {st:?}"
            );
            if reflected {
                assert!(
                    out_r.is_empty(),
                    "CHAP_R computed for an outstanding challenge"
                );
                assert_ne!(
                    st,
                    AuthStatus::Success,
                    "success with a reflected challenge"
                );
            }

            // Round 1 with nothing but a CHAP_A offering an allowed
            // algorithm must be answered, unless the record is full.
            let offer = match keys {
                [(k, v)] if k == "CHAP_A" => Some(v.as_str()),
                _ => None,
            };
            let first_allowed = offer.and_then(|v| {
                v.split(',')
                    .filter_map(parse_number)
                    .filter_map(ChapAlgorithm::from_code)
                    .find(|a| allowed.contains(a))
            });
            if let (Phase::Initial, Some(_)) = (&phase, first_allowed) {
                let want = if count_before < self.capacity {
                    AuthStatus::Continue
                } else {
                    AuthStatus::OutOfResources
                };
                assert_eq!(st, want, "round 1 with {count_before} outstanding");
            }

            let slot = &mut self.slots[t];
            if matches!(phase, Phase::Done) {
                assert!(
                    matches!(st, AuthStatus::Failure | AuthStatus::OutOfResources),
                    "{st:?} after the exchange ended"
                );
                assert!(out.is_empty(), "output after the exchange ended: {out:?}");
            }
            match st {
                AuthStatus::Continue => {
                    assert!(matches!(phase, Phase::Initial), "Continue after round 1");
                    let Some(alg) = first_allowed else {
                        panic!("Continue without a CHAP_A offering an allowed algorithm");
                    };
                    assert_eq!(algorithm, Some(alg), "algorithm()");
                    let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
                    assert_eq!(names, ["CHAP_A", "CHAP_I", "CHAP_C"], "round-1 answer");
                    assert_eq!(out[0].1, alg.code().to_string(), "CHAP_A answer");
                    let id: u8 = out[1].1.parse().unwrap_or_else(|_| panic!("CHAP_I"));
                    assert!(out[2].1.starts_with("0x"), "CHAP_C not hex");
                    let challenge = decode_binary(&out[2].1).unwrap_or_else(|| panic!("CHAP_C"));
                    assert_eq!(
                        challenge.len(),
                        challenge_len(alg.code()),
                        "challenge length"
                    );
                    assert!(count_before < self.capacity, "challenge over capacity");
                    let sent = Sent {
                        code: alg.code(),
                        id,
                        challenge,
                    };
                    slot.last_sent = Some(sent.clone());
                    slot.phase = Phase::Awaiting(sent);
                }
                AuthStatus::Success => {
                    let Phase::Awaiting(sent) = &phase else {
                        panic!("Success without a challenge awaiting its response");
                    };
                    assert!(
                        edits.correct_response,
                        "Success without the right response from the harness"
                    );
                    assert_eq!(
                        single(keys, "CHAP_N"),
                        Some(auth.initiator.user.as_str()),
                        "Success without the configured user"
                    );
                    const KNOWN: [&str; 4] = ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"];
                    for (k, _) in keys {
                        assert!(KNOWN.contains(&k.as_str()), "Success with key {k:?}");
                        assert_eq!(values(keys, k).len(), 1, "Success with {k} repeated");
                    }
                    match &auth.mutual {
                        None => {
                            assert!(out.is_empty(), "one-way success output {out:?}");
                            assert!(
                                values(keys, "CHAP_I").is_empty()
                                    && values(keys, "CHAP_C").is_empty(),
                                "one-way success with CHAP_I / CHAP_C"
                            );
                        }
                        Some(m) => {
                            assert_ne!(
                                m.secret.expose(),
                                auth.initiator.secret.expose(),
                                "mutual success with one secret for both directions"
                            );
                            let i = single(keys, "CHAP_I")
                                .and_then(parse_number)
                                .and_then(|i| u8::try_from(i).ok())
                                .unwrap_or_else(|| panic!("mutual success without CHAP_I"));
                            let c = single(keys, "CHAP_C")
                                .and_then(decode_binary)
                                .unwrap_or_else(|| panic!("mutual success without CHAP_C"));
                            assert!(
                                c.len() >= min_peer.max(1) && c.len() <= MAX_PEER_CHALLENGE_LEN,
                                "answered a CHAP_C of {} bytes (min {min_peer})",
                                c.len()
                            );
                            assert!(!outstanding.contains(&c), "answered an outstanding CHAP_C");
                            let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
                            assert_eq!(names, ["CHAP_N", "CHAP_R"], "mutual answer");
                            assert_eq!(out[0].1, m.user, "mutual CHAP_N");
                            assert!(out[1].1.starts_with("0x"), "CHAP_R not hex");
                            let want = digest(sent.code, i, m.secret.expose(), &c);
                            assert_eq!(
                                decode_binary(&out[1].1),
                                Some(want),
                                "mutual CHAP_R is not H(CHAP_I || secret || CHAP_C)"
                            );
                        }
                    }
                }
                AuthStatus::Failure => {
                    let reject = [("CHAP_A".to_string(), "Reject".to_string())];
                    assert!(
                        out.is_empty() || (matches!(phase, Phase::Initial) && out == reject),
                        "output on failure: {out:?}"
                    );
                    assert!(label.is_some(), "failure without a label");
                }
                AuthStatus::OutOfResources => {
                    assert!(out.is_empty(), "output on out of resources: {out:?}");
                    assert_eq!(label, Some("out_of_resources"));
                    if matches!(phase, Phase::Initial) {
                        assert_eq!(count_before, self.capacity, "out of resources with room");
                        slot.refused = true;
                    } else {
                        assert!(
                            matches!(phase, Phase::Done) && slot.refused,
                            "out of resources after round 1"
                        );
                    }
                }
            }
            // A round with just the harness' right keys.
            if let (Phase::Awaiting(_), Some(fresh_ok)) = (&phase, edits.canonical) {
                let ok = match &auth.mutual {
                    None => !edits.mutual_asked,
                    Some(m) => {
                        edits.mutual_asked
                            && fresh_ok
                            && m.secret.expose() != auth.initiator.secret.expose()
                    }
                };
                let want = if ok {
                    AuthStatus::Success
                } else {
                    AuthStatus::Failure
                };
                assert_eq!(st, want, "round with only the harness' keys");
            }
            if let Some(r) = out_r.first() {
                slot.last_r = Some(r.to_string());
            }
            self.check_record();
        }
    }
}
