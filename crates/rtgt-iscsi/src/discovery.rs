//! Text Requests in full feature phase (RFC 7143 11.10, 11.11) and
//! SendTargets (RFC 7143 appendix C / 13.3), sans I/O.
//!
//! [`TextExchange`] runs the PDU-level part of a text exchange on one
//! connection: requests whose text spans several PDUs (C bit, answered
//! with empty responses carrying a Target Transfer Tag), and answers
//! longer than the initiator's MaxRecvDataSegmentLength (C bit in our
//! responses, the initiator fetching the rest with empty requests quoting
//! our TTT). What the answer says is up to a closure; [`answer_text`] is
//! the one for SendTargets and the full-feature-phase keys.

use std::net::SocketAddr;

use crate::negotiation::{respond_ffp_key, FfpAnswer, SessionType, REJECT};
use crate::pdu::{op, reject, Bhs, RESERVED_TAG};
use crate::text::{self, Pair, TextAccumulator, TextSegmenter};

/// A target and the portals it can be reached through, as the driver
/// gets them from the configuration (only the targets the initiator may
/// see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPortals {
    pub name: String,
    /// Portal address and its Target Portal Group Tag.
    pub portals: Vec<(SocketAddr, u16)>,
}

/// `TargetAddress` value: `host:port,tpgt`, IPv6 addresses in brackets.
/// An unspecified address (a portal listening on 0.0.0.0 or ::) is
/// replaced by `local`, the address the initiator reached us at, when
/// known.
pub fn target_address(addr: SocketAddr, tpgt: u16, local: Option<SocketAddr>) -> String {
    let ip = match local {
        Some(l) if addr.ip().is_unspecified() => l.ip(),
        _ => addr.ip(),
    };
    // SocketAddr's Display brackets IPv6 addresses.
    format!("{},{}", SocketAddr::new(ip, addr.port()), tpgt)
}

fn push_target(out: &mut Vec<Pair>, t: &TargetPortals, local: Option<SocketAddr>) {
    out.push(("TargetName".into(), t.name.clone()));
    for &(addr, tpgt) in &t.portals {
        out.push(("TargetAddress".into(), target_address(addr, tpgt, local)));
    }
}

/// The answer to `SendTargets=<value>`.
///
/// * `All`: every target, in a discovery session. In a normal session
///   `All` "MUST NOT be supported": answered `SendTargets=Reject`.
/// * `<target name>`: that target if it is known (in a normal session,
///   only the session's own target); nothing otherwise.
/// * empty: the session's target in a normal session; nothing in a
///   discovery session (no target is logged in).
pub fn send_targets(
    value: &str,
    session_type: SessionType,
    session_target: Option<&str>,
    targets: &[TargetPortals],
    local: Option<SocketAddr>,
) -> Vec<Pair> {
    let mut out = Vec::new();
    let wanted: Option<&str> = match (session_type, value) {
        (SessionType::Discovery, "All") => {
            for t in targets {
                push_target(&mut out, t, local);
            }
            return out;
        }
        (SessionType::Normal, "All") => {
            out.push(("SendTargets".into(), REJECT.into()));
            return out;
        }
        (SessionType::Discovery, "") => None,
        (SessionType::Normal, "") => session_target,
        (SessionType::Discovery, name) => Some(name),
        (SessionType::Normal, name) => session_target.filter(|s| *s == name),
    };
    if let Some(name) = wanted {
        if let Some(t) = targets.iter().find(|t| t.name == name) {
            push_target(&mut out, t, local);
        }
    }
    out
}

/// What a full-feature-phase Text Request may touch.
#[derive(Debug, Clone, Copy)]
pub struct TextContext<'a> {
    pub session_type: SessionType,
    /// The session's target (normal sessions).
    pub session_target: Option<&'a str>,
    /// Targets visible to this initiator, with their portals.
    pub targets: &'a [TargetPortals],
    /// Local address of the connection (to fill in wildcard portals).
    pub local_addr: Option<SocketAddr>,
}

/// The answer to a full-feature-phase text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextAnswer {
    pub pairs: Vec<Pair>,
    /// The initiator declared a new MaxRecvDataSegmentLength: from now on
    /// our data segments must not exceed it.
    pub max_send_dsl: Option<u32>,
}

/// Answer the keys of a complete full-feature-phase Text Request.
pub fn answer_text(keys: &[Pair], ctx: &TextContext<'_>) -> TextAnswer {
    let mut a = TextAnswer::default();
    for (k, v) in keys {
        if k == "SendTargets" {
            a.pairs.extend(send_targets(
                v,
                ctx.session_type,
                ctx.session_target,
                ctx.targets,
                ctx.local_addr,
            ));
            continue;
        }
        match respond_ffp_key(k, v) {
            FfpAnswer::Reply(p) => a.pairs.push(p),
            FfpAnswer::MaxSendDsl(n) => a.max_send_dsl = Some(n),
            FfpAnswer::Nothing => {}
        }
    }
    a
}

/// The fields of a Text Request PDU the exchange needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextRequest {
    pub final_bit: bool,
    pub cont: bool,
    pub itt: u32,
    pub ttt: u32,
    pub data: Vec<u8>,
}

/// The fields of a Text Response PDU decided here (the driver adds
/// StatSN, ExpCmdSN, MaxCmdSN; LUN is 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextResponse {
    pub final_bit: bool,
    pub cont: bool,
    pub itt: u32,
    pub ttt: u32,
    pub data: Vec<u8>,
}

impl TextRequest {
    /// Decode the fields from a Text Request BHS (RFC 7143 11.10).
    pub fn from_bhs(bhs: &Bhs, data: Vec<u8>) -> Self {
        TextRequest {
            final_bit: bhs.flags() & 0x80 != 0,
            cont: bhs.flags() & 0x40 != 0,
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            data,
        }
    }
}

impl TextResponse {
    /// The Text Response BHS (RFC 7143 11.11) with DataSegmentLength set;
    /// StatSN (24), ExpCmdSN (28) and MaxCmdSN (32) are left 0 for the
    /// driver.
    pub fn to_bhs(&self) -> Bhs {
        let mut b = Bhs::new(op::TEXT_RSP);
        let mut f = 0;
        if self.final_bit {
            f |= 0x80;
        }
        if self.cont {
            f |= 0x40;
        }
        b.set_flags(f);
        b.set_data_len(self.data.len());
        b.set_itt(self.itt);
        b.set_u32_at(20, self.ttt);
        b
    }
}

/// A Text Request to answer with a Reject PDU (reason code of
/// RFC 7143 11.17.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextReject {
    pub reason: u8,
    pub why: String,
}

fn rejected(reason: u8, why: impl Into<String>) -> TextReject {
    TextReject {
        reason,
        why: why.into(),
    }
}

#[derive(Debug)]
enum State {
    Idle,
    /// Collecting a request sent with C=1.
    Collecting {
        itt: u32,
        ttt: u32,
        acc: TextAccumulator,
    },
    /// Handing out a long answer.
    Sending {
        itt: u32,
        ttt: u32,
        seg: TextSegmenter,
    },
    /// Answered a request with F=0: the initiator goes on with more text
    /// under our TTT.
    Open {
        itt: u32,
        ttt: u32,
    },
}

/// Text exchange state of one connection.
#[derive(Debug)]
pub struct TextExchange {
    state: State,
    next_ttt: u32,
}

impl Default for TextExchange {
    fn default() -> Self {
        Self::new()
    }
}

impl TextExchange {
    pub fn new() -> Self {
        TextExchange {
            state: State::Idle,
            next_ttt: 1,
        }
    }

    fn new_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG || self.next_ttt == 0 {
            self.next_ttt = 1;
        }
        t
    }

    /// Whether an exchange is under way (the driver may drop it on
    /// logout / connection end).
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Process one Text Request. `max_send_dsl` is the initiator's
    /// MaxRecvDataSegmentLength; `answer` turns a complete text's pairs
    /// into the answer pairs (e.g. with [`answer_text`]).
    pub fn step<F>(
        &mut self,
        req: &TextRequest,
        max_send_dsl: u32,
        answer: F,
    ) -> Result<TextResponse, TextReject>
    where
        F: FnOnce(&[Pair]) -> Vec<Pair>,
    {
        if req.cont && req.final_bit {
            self.state = State::Idle;
            return Err(rejected(
                reject::PROTOCOL_ERROR,
                "Text Request with both F and C set",
            ));
        }
        let max = max_send_dsl as usize;
        if req.ttt == RESERVED_TAG {
            // A new exchange; any earlier one is abandoned.
            self.state = State::Idle;
            if req.cont {
                let mut acc = TextAccumulator::new();
                acc.push(&req.data, true)
                    .map_err(|e| rejected(reject::PROTOCOL_ERROR, e.to_string()))?;
                let ttt = self.new_ttt();
                self.state = State::Collecting {
                    itt: req.itt,
                    ttt,
                    acc,
                };
                return Ok(empty(req.itt, ttt));
            }
            return self.process(req, &req.data, max, answer);
        }

        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Err(rejected(
                reject::INVALID_PDU_FIELD,
                "unexpected Target Transfer Tag",
            )),
            State::Collecting { itt, ttt, mut acc } => {
                check_tags(req, itt, ttt)?;
                match acc.push(&req.data, req.cont) {
                    Err(e) => Err(rejected(reject::PROTOCOL_ERROR, e.to_string())),
                    Ok(None) => {
                        self.state = State::Collecting { itt, ttt, acc };
                        Ok(empty(itt, ttt))
                    }
                    Ok(Some(all)) => self.process(req, &all, max, answer),
                }
            }
            State::Sending { itt, ttt, mut seg } => {
                check_tags(req, itt, ttt)?;
                if !req.data.is_empty() || req.cont {
                    return Err(rejected(
                        reject::PROTOCOL_ERROR,
                        "text sent while the target's response is incomplete",
                    ));
                }
                let (chunk, more) = seg.next_chunk(max);
                Ok(self.respond_chunk(req, itt, ttt, chunk, more, Some(seg)))
            }
            State::Open { itt, ttt } => {
                check_tags(req, itt, ttt)?;
                if req.cont {
                    let mut acc = TextAccumulator::new();
                    acc.push(&req.data, true)
                        .map_err(|e| rejected(reject::PROTOCOL_ERROR, e.to_string()))?;
                    self.state = State::Collecting { itt, ttt, acc };
                    return Ok(empty(itt, ttt));
                }
                self.process(req, &req.data, max, answer)
            }
        }
    }

    fn process<F>(
        &mut self,
        req: &TextRequest,
        data: &[u8],
        max: usize,
        answer: F,
    ) -> Result<TextResponse, TextReject>
    where
        F: FnOnce(&[Pair]) -> Vec<Pair>,
    {
        let pairs =
            text::parse(data).map_err(|e| rejected(reject::PROTOCOL_ERROR, e.to_string()))?;
        let out = text::encode(&answer(&pairs));
        let mut seg = TextSegmenter::new(out);
        let (chunk, more) = seg.next_chunk(max);
        let ttt = if more || !req.final_bit {
            self.new_ttt()
        } else {
            RESERVED_TAG
        };
        Ok(self.respond_chunk(req, req.itt, ttt, chunk, more, Some(seg)))
    }

    fn respond_chunk(
        &mut self,
        req: &TextRequest,
        itt: u32,
        ttt: u32,
        chunk: Vec<u8>,
        more: bool,
        seg: Option<TextSegmenter>,
    ) -> TextResponse {
        if more {
            self.state = State::Sending {
                itt,
                ttt,
                seg: seg.unwrap_or_default(),
            };
            return TextResponse {
                final_bit: false,
                cont: true,
                itt,
                ttt,
                data: chunk,
            };
        }
        if req.final_bit {
            self.state = State::Idle;
            TextResponse {
                final_bit: true,
                cont: false,
                itt,
                ttt: RESERVED_TAG,
                data: chunk,
            }
        } else {
            // F=0 in the request: the initiator has more to say; a final
            // response now would be a protocol error.
            let ttt = if ttt == RESERVED_TAG {
                self.new_ttt()
            } else {
                ttt
            };
            self.state = State::Open { itt, ttt };
            TextResponse {
                final_bit: false,
                cont: false,
                itt,
                ttt,
                data: chunk,
            }
        }
    }
}

fn empty(itt: u32, ttt: u32) -> TextResponse {
    TextResponse {
        final_bit: false,
        cont: false,
        itt,
        ttt,
        data: Vec::new(),
    }
}

fn check_tags(req: &TextRequest, itt: u32, ttt: u32) -> Result<(), TextReject> {
    if req.ttt != ttt || req.itt != itt {
        return Err(rejected(
            reject::INVALID_PDU_FIELD,
            format!(
                "Text Request ITT {:#x} TTT {:#x} does not continue ITT {itt:#x} TTT {ttt:#x}",
                req.itt, req.ttt
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<TargetPortals> {
        vec![
            TargetPortals {
                name: "iqn.2026-11.org.rtgt:a".into(),
                portals: vec![
                    ("192.168.1.10:3260".parse().unwrap(), 1),
                    ("[fe80::1]:3261".parse().unwrap(), 2),
                ],
            },
            TargetPortals {
                name: "iqn.2026-11.org.rtgt:b".into(),
                portals: vec![("0.0.0.0:3260".parse().unwrap(), 1)],
            },
        ]
    }

    #[test]
    fn address_format() {
        assert_eq!(
            target_address("10.1.1.27:3260".parse().unwrap(), 1, None),
            "10.1.1.27:3260,1"
        );
        assert_eq!(
            target_address("[fce0::1]:3260".parse().unwrap(), 7, None),
            "[fce0::1]:3260,7"
        );
        assert_eq!(
            target_address(
                "0.0.0.0:3260".parse().unwrap(),
                1,
                Some("127.0.0.1:40000".parse().unwrap())
            ),
            "127.0.0.1:3260,1"
        );
        assert_eq!(
            target_address(
                "[::]:3260".parse().unwrap(),
                1,
                Some("[::1]:5555".parse().unwrap())
            ),
            "[::1]:3260,1"
        );
    }

    #[test]
    fn send_targets_all_in_discovery() {
        let local = Some("10.0.0.5:3260".parse().unwrap());
        let out = send_targets("All", SessionType::Discovery, None, &targets(), local);
        assert_eq!(
            text::encode(&out),
            b"TargetName=iqn.2026-11.org.rtgt:a\0\
TargetAddress=192.168.1.10:3260,1\0\
TargetAddress=[fe80::1]:3261,2\0\
TargetName=iqn.2026-11.org.rtgt:b\0\
TargetAddress=10.0.0.5:3260,1\0"
                .to_vec()
        );
    }

    #[test]
    fn send_targets_by_name_and_empty() {
        let t = targets();
        let out = send_targets(
            "iqn.2026-11.org.rtgt:b",
            SessionType::Discovery,
            None,
            &t,
            None,
        );
        assert_eq!(
            out,
            vec![
                (
                    "TargetName".to_string(),
                    "iqn.2026-11.org.rtgt:b".to_string()
                ),
                ("TargetAddress".to_string(), "0.0.0.0:3260,1".to_string()),
            ]
        );
        assert!(send_targets("iqn.none", SessionType::Discovery, None, &t, None).is_empty());
        assert!(send_targets("", SessionType::Discovery, None, &t, None).is_empty());
        // Normal session: empty means the session's target.
        let a = Some("iqn.2026-11.org.rtgt:a");
        let out = send_targets("", SessionType::Normal, a, &t, None);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].1, "iqn.2026-11.org.rtgt:a");
        // Its own name too, but no other target.
        assert_eq!(
            send_targets("iqn.2026-11.org.rtgt:a", SessionType::Normal, a, &t, None).len(),
            3
        );
        assert!(
            send_targets("iqn.2026-11.org.rtgt:b", SessionType::Normal, a, &t, None).is_empty()
        );
        // All is for discovery sessions.
        assert_eq!(
            send_targets("All", SessionType::Normal, a, &t, None),
            vec![("SendTargets".to_string(), "Reject".to_string())]
        );
    }

    #[test]
    fn answer_text_mixed_keys() {
        let t = targets();
        let ctx = TextContext {
            session_type: SessionType::Normal,
            session_target: Some("iqn.2026-11.org.rtgt:b"),
            targets: &t,
            local_addr: Some("127.0.0.1:3260".parse().unwrap()),
        };
        let keys = text::parse(
            b"SendTargets=\0MaxRecvDataSegmentLength=16384\0X-foo=1\0MaxBurstLength=512\0",
        )
        .unwrap();
        let a = answer_text(&keys, &ctx);
        assert_eq!(a.max_send_dsl, Some(16384));
        assert_eq!(
            text::encode(&a.pairs),
            b"TargetName=iqn.2026-11.org.rtgt:b\0TargetAddress=127.0.0.1:3260,1\0\
X-foo=NotUnderstood\0MaxBurstLength=Reject\0"
                .to_vec()
        );
    }

    fn treq(final_bit: bool, cont: bool, ttt: u32, data: &[u8]) -> TextRequest {
        TextRequest {
            final_bit,
            cont,
            itt: 0x55,
            ttt,
            data: data.to_vec(),
        }
    }

    fn echo(pairs: &[Pair]) -> Vec<Pair> {
        pairs.to_vec()
    }

    #[test]
    fn bhs_conversion() {
        let mut b = Bhs::new(op::TEXT_REQ);
        b.set_flags(0x40);
        b.set_itt(9);
        b.set_u32_at(20, 0x1234_5678);
        let r = TextRequest::from_bhs(&b, b"x".to_vec());
        assert_eq!(
            r,
            TextRequest {
                final_bit: false,
                cont: true,
                itt: 9,
                ttt: 0x1234_5678,
                data: b"x".to_vec()
            }
        );
        let b = TextResponse {
            final_bit: true,
            cont: false,
            itt: 9,
            ttt: RESERVED_TAG,
            data: vec![0; 5],
        }
        .to_bhs();
        let mut want = [0u8; 48];
        want[0] = 0x24;
        want[1] = 0x80;
        want[7] = 5;
        want[16..20].copy_from_slice(&[0, 0, 0, 9]);
        want[20..24].copy_from_slice(&[0xff; 4]);
        assert_eq!(b.0, want);
    }

    #[test]
    fn single_pdu_exchange() {
        let mut x = TextExchange::new();
        let r = x
            .step(&treq(true, false, RESERVED_TAG, b"A=1\0"), 8192, echo)
            .unwrap();
        assert_eq!(
            r,
            TextResponse {
                final_bit: true,
                cont: false,
                itt: 0x55,
                ttt: RESERVED_TAG,
                data: b"A=1\0".to_vec()
            }
        );
        assert!(!x.in_progress());
    }

    #[test]
    fn long_answer_in_chunks() {
        let t: Vec<TargetPortals> = (0..40)
            .map(|i| TargetPortals {
                name: format!("iqn.2026-11.org.rtgt:target-number-{i:03}"),
                portals: vec![("192.168.100.200:3260".parse().unwrap(), 1)],
            })
            .collect();
        let ctx = TextContext {
            session_type: SessionType::Discovery,
            session_target: None,
            targets: &t,
            local_addr: None,
        };
        let mut x = TextExchange::new();
        let r = x
            .step(
                &treq(true, false, RESERVED_TAG, b"SendTargets=All\0"),
                512,
                |k| answer_text(k, &ctx).pairs,
            )
            .unwrap();
        assert!(r.cont && !r.final_bit);
        assert_ne!(r.ttt, RESERVED_TAG);
        assert!(r.data.len() <= 512);
        assert_eq!(*r.data.last().unwrap(), 0);
        let ttt = r.ttt;
        let mut all = r.data;
        let mut rounds = 1;
        loop {
            let r = x
                .step(&treq(true, false, ttt, b""), 512, |_| panic!("no new text"))
                .unwrap();
            rounds += 1;
            all.extend_from_slice(&r.data);
            assert!(r.data.len() <= 512);
            if !r.cont {
                assert!(r.final_bit);
                assert_eq!(r.ttt, RESERVED_TAG);
                break;
            }
            assert!(!r.final_bit);
            assert_eq!(r.ttt, ttt);
        }
        let expected = text::encode(&send_targets("All", SessionType::Discovery, None, &t, None));
        assert_eq!(all, expected);
        assert!(rounds >= 6);
        assert!(!x.in_progress());
    }

    #[test]
    fn request_in_several_pdus() {
        let mut x = TextExchange::new();
        let r = x
            .step(&treq(false, true, RESERVED_TAG, b"SendTar"), 8192, echo)
            .unwrap();
        assert_eq!((r.final_bit, r.cont, r.data.len()), (false, false, 0));
        let ttt = r.ttt;
        assert_ne!(ttt, RESERVED_TAG);
        let r = x
            .step(&treq(false, true, ttt, b"gets=A"), 8192, echo)
            .unwrap();
        assert_eq!(
            (r.final_bit, r.cont, r.ttt, r.data.len()),
            (false, false, ttt, 0)
        );
        let r = x
            .step(&treq(true, false, ttt, b"ll\0"), 8192, echo)
            .unwrap();
        assert_eq!(r.data, b"SendTargets=All\0".to_vec());
        assert!(r.final_bit);
        assert_eq!(r.ttt, RESERVED_TAG);
    }

    #[test]
    fn f_zero_request_keeps_exchange_open() {
        let mut x = TextExchange::new();
        let r = x
            .step(&treq(false, false, RESERVED_TAG, b"A=1\0"), 8192, echo)
            .unwrap();
        assert!(!r.final_bit, "no F=1 answer to an F=0 request");
        assert_ne!(r.ttt, RESERVED_TAG);
        let r = x
            .step(&treq(true, false, r.ttt, b"B=2\0"), 8192, echo)
            .unwrap();
        assert!(r.final_bit);
        assert_eq!(r.data, b"B=2\0".to_vec());
    }

    #[test]
    fn protocol_violations_rejected() {
        let mut x = TextExchange::new();
        let e = x
            .step(&treq(true, true, RESERVED_TAG, b"A=1\0"), 8192, echo)
            .unwrap_err();
        assert_eq!(e.reason, reject::PROTOCOL_ERROR);
        let e = x
            .step(&treq(true, false, 1234, b""), 8192, echo)
            .unwrap_err();
        assert_eq!(e.reason, reject::INVALID_PDU_FIELD);
        let e = x
            .step(&treq(true, false, RESERVED_TAG, b"garbage\0"), 8192, echo)
            .unwrap_err();
        assert_eq!(e.reason, reject::PROTOCOL_ERROR);
        // Wrong TTT / ITT while continuing.
        let r = x
            .step(&treq(false, true, RESERVED_TAG, b"A="), 8192, echo)
            .unwrap();
        let e = x
            .step(
                &treq(true, false, r.ttt.wrapping_add(1), b"1\0"),
                8192,
                echo,
            )
            .unwrap_err();
        assert_eq!(e.reason, reject::INVALID_PDU_FIELD);
        let r = x
            .step(&treq(false, true, RESERVED_TAG, b"A="), 8192, echo)
            .unwrap();
        let mut bad = treq(true, false, r.ttt, b"1\0");
        bad.itt = 0x56;
        assert_eq!(
            x.step(&bad, 8192, echo).unwrap_err().reason,
            reject::INVALID_PDU_FIELD
        );
        // Text while our answer is pending.
        let mut x = TextExchange::new();
        let r = x
            .step(
                &treq(true, false, RESERVED_TAG, b"AAAA=1\0BBBB=2\0"),
                8,
                echo,
            )
            .unwrap();
        assert!(r.cont);
        let e = x
            .step(&treq(true, false, r.ttt, b"C=3\0"), 8, echo)
            .unwrap_err();
        assert_eq!(e.reason, reject::PROTOCOL_ERROR);
    }

    #[test]
    fn new_request_abandons_old_exchange() {
        let mut x = TextExchange::new();
        let r = x
            .step(
                &treq(true, false, RESERVED_TAG, b"AAAA=1\0BBBB=2\0"),
                8,
                echo,
            )
            .unwrap();
        assert!(r.cont);
        let old = r.ttt;
        let r = x
            .step(&treq(true, false, RESERVED_TAG, b"C=3\0"), 8, echo)
            .unwrap();
        assert_eq!(r.data, b"C=3\0".to_vec());
        assert!(r.final_bit);
        assert_eq!(
            x.step(&treq(true, false, old, b""), 8, echo)
                .unwrap_err()
                .reason,
            reject::INVALID_PDU_FIELD
        );
    }
}
