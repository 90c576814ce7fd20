//! iSCSI text data segments (RFC 7143 section 6.1): `key=value\0` pairs,
//! as carried by Login and Text Requests and Responses.
//!
//! Besides parsing and encoding, this module holds the two pieces of the
//! continuation mechanism that Login and Text exchanges share:
//!
//! * [`TextAccumulator`]: the initiator sent its text over several PDUs
//!   (C bit = 1 on all but the last); collect it until C = 0.
//! * [`TextSegmenter`]: our answer is longer than the initiator accepts in
//!   one PDU; hand it out in chunks (C = 1 on all but the last), one per
//!   (empty) request of the initiator.

use std::fmt;

/// Longest key name (RFC 7143 6.1: "key names ... up to 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest simple value (RFC 7143 6.1: 255 bytes, delimiter excluded).
pub const MAX_VALUE_LEN: usize = 255;
/// Longest value of the keys that carry large binary values (the
/// authentication exchanges: CHAP_C, CHAP_R, SRP_*, KRB_*): an encoded
/// binary of up to 1024 bytes in base64 or hex fits comfortably.
pub const MAX_LARGE_VALUE_LEN: usize = 8192;
/// Most text we accept in one negotiation sequence (all PDUs of one
/// request together). RFC 7143 requires at least 8192 bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// What is wrong with a text data segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A pair without '=' (the string before the delimiter).
    MissingEquals(String),
    /// `=value` without a key.
    EmptyKey,
    /// Key or value not valid UTF-8.
    NotUtf8,
    /// Key name longer than [`MAX_KEY_LEN`] (its length).
    KeyTooLong(usize),
    /// Value longer than allowed for its key.
    ValueTooLong { key: String, len: usize },
    /// The text of one sequence exceeds [`MAX_TEXT_LEN`].
    TooLarge(usize),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::MissingEquals(s) => write!(f, "text pair without '=': {s:?}"),
            TextError::EmptyKey => write!(f, "text pair with an empty key"),
            TextError::NotUtf8 => write!(f, "text is not UTF-8"),
            TextError::KeyTooLong(n) => write!(f, "key of {n} bytes (max {MAX_KEY_LEN})"),
            TextError::ValueTooLong { key, len } => {
                write!(
                    f,
                    "value of {key} is {len} bytes (max {})",
                    max_value_len(key)
                )
            }
            TextError::TooLarge(n) => write!(f, "text of {n} bytes (max {MAX_TEXT_LEN})"),
        }
    }
}

impl std::error::Error for TextError {}

impl TextError {
    /// Login status (class, detail) to fail a login with: a malformed
    /// text is an initiator error (02/00); text we cannot hold is a
    /// target resource problem (03/02 OUT OF RESOURCES).
    pub fn login_status(&self) -> (u8, u8) {
        match self {
            TextError::TooLarge(_) => (3, 2),
            _ => (2, 0),
        }
    }
}

/// The longest value accepted for `key`.
pub fn max_value_len(key: &str) -> usize {
    if key == "CHAP_C"
        || key == "CHAP_R"
        || key.starts_with("SRP_")
        || key.starts_with("KRB_")
        || key.starts_with("SPKM_")
    {
        MAX_LARGE_VALUE_LEN
    } else {
        MAX_VALUE_LEN
    }
}

/// One `key=value` pair.
pub type Pair = (String, String);

/// Parse a complete text (all PDUs of a sequence concatenated) into its
/// pairs, in order. Empty strings between delimiters (e.g. zero padding
/// counted into the data segment length) are skipped; a last pair that
/// lacks its terminating NUL is accepted.
pub fn parse(data: &[u8]) -> Result<Vec<Pair>, TextError> {
    if data.len() > MAX_TEXT_LEN {
        return Err(TextError::TooLarge(data.len()));
    }
    let mut out = Vec::new();
    for raw in data.split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(raw).map_err(|_| TextError::NotUtf8)?;
        let Some((k, v)) = s.split_once('=') else {
            return Err(TextError::MissingEquals(s.chars().take(80).collect()));
        };
        if k.is_empty() {
            return Err(TextError::EmptyKey);
        }
        if k.len() > MAX_KEY_LEN {
            return Err(TextError::KeyTooLong(k.len()));
        }
        if v.len() > max_value_len(k) {
            return Err(TextError::ValueTooLong {
                key: k.to_string(),
                len: v.len(),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Encode pairs as `key=value\0...`.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        push_pair(&mut out, k.as_ref(), v.as_ref());
    }
    out
}

/// Append one `key=value\0` to `buf`.
pub fn push_pair(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'=');
    buf.extend_from_slice(value.as_bytes());
    buf.push(0);
}

/// Collects the text of a request sent over several PDUs (C bit).
#[derive(Debug, Default)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    active: bool,
}

impl TextAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one PDU's data. Returns the complete text when `cont` is
    /// false (this PDU ends the sequence), `None` while more is to come.
    pub fn push(&mut self, data: &[u8], cont: bool) -> Result<Option<Vec<u8>>, TextError> {
        let total = self.buf.len() + data.len();
        if total > MAX_TEXT_LEN {
            self.reset();
            return Err(TextError::TooLarge(total));
        }
        if !cont {
            let mut all = std::mem::take(&mut self.buf);
            all.extend_from_slice(data);
            self.active = false;
            return Ok(Some(all));
        }
        self.buf.extend_from_slice(data);
        self.active = true;
        Ok(None)
    }

    /// Whether a sequence has started and not yet ended.
    pub fn in_progress(&self) -> bool {
        self.active
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }
}

/// Hands out a long text in chunks no longer than the peer's
/// MaxRecvDataSegmentLength. Chunks end at a pair boundary whenever a
/// whole pair fits, so that initiators that parse each PDU on its own
/// still see whole pairs; a single pair longer than the limit is split
/// (RFC 7143 allows a pair to span PDUs).
#[derive(Debug, Clone, Default)]
pub struct TextSegmenter {
    data: Vec<u8>,
    pos: usize,
}

impl TextSegmenter {
    pub fn new(data: Vec<u8>) -> Self {
        TextSegmenter { data, pos: 0 }
    }

    /// The next chunk, at most `max` bytes (at least 1 byte is always
    /// taken when anything remains; `max` 0 is treated as 1), and whether
    /// more remains after it (the C bit of the PDU carrying it).
    pub fn next_chunk(&mut self, max: usize) -> (Vec<u8>, bool) {
        let max = max.max(1);
        let rest = &self.data[self.pos..];
        if rest.len() <= max {
            self.pos = self.data.len();
            return (rest.to_vec(), false);
        }
        // Cut after the last NUL within the limit, if any.
        let cut = match rest[..max].iter().rposition(|&b| b == 0) {
            Some(i) => i + 1,
            None => max,
        };
        let chunk = rest[..cut].to_vec();
        self.pos += cut;
        (chunk, true)
    }

    /// Whether everything has been handed out.
    pub fn is_done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> Pair {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parse_pairs_in_order() {
        let data = b"InitiatorName=iqn.a\0SessionType=Normal\0X-foo=a=b\0";
        assert_eq!(
            parse(data).unwrap(),
            vec![
                p("InitiatorName", "iqn.a"),
                p("SessionType", "Normal"),
                p("X-foo", "a=b"),
            ]
        );
    }

    #[test]
    fn parse_skips_padding_and_accepts_missing_last_nul() {
        assert_eq!(
            parse(b"A=1\0\0\0B=\0C=3").unwrap(),
            vec![p("A", "1"), p("B", ""), p("C", "3")]
        );
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"\0\0\0\0").unwrap(), vec![]);
    }

    #[test]
    fn parse_rejects_malformed() {
        assert_eq!(
            parse(b"A=1\0Garbage\0"),
            Err(TextError::MissingEquals("Garbage".into()))
        );
        assert_eq!(parse(b"=1\0"), Err(TextError::EmptyKey));
        assert_eq!(parse(b"A=\xff\xfe\0"), Err(TextError::NotUtf8));
        let long_key = format!("{}=1\0", "K".repeat(64));
        assert_eq!(parse(long_key.as_bytes()), Err(TextError::KeyTooLong(64)));
        let ok_key = format!("{}=1\0", "K".repeat(63));
        assert_eq!(parse(ok_key.as_bytes()).unwrap().len(), 1);
        let long_val = format!("TargetName={}\0", "v".repeat(256));
        assert_eq!(
            parse(long_val.as_bytes()),
            Err(TextError::ValueTooLong {
                key: "TargetName".into(),
                len: 256
            })
        );
        let ok_val = format!("TargetName={}\0", "v".repeat(255));
        assert_eq!(parse(ok_val.as_bytes()).unwrap()[0].1.len(), 255);
        // Binary authentication values may be longer.
        let chap = format!("CHAP_C=0x{}\0", "ab".repeat(1024));
        assert_eq!(parse(chap.as_bytes()).unwrap()[0].1.len(), 2050);
        assert_eq!(
            parse(&vec![b'a'; MAX_TEXT_LEN + 1]),
            Err(TextError::TooLarge(MAX_TEXT_LEN + 1))
        );
    }

    #[test]
    fn error_status() {
        assert_eq!(TextError::NotUtf8.login_status(), (2, 0));
        assert_eq!(TextError::TooLarge(1).login_status(), (3, 2));
    }

    #[test]
    fn encode_bytes() {
        assert_eq!(
            encode(&[("A", "1"), ("Bb", "x,y")]),
            b"A=1\0Bb=x,y\0".to_vec()
        );
        let mut b = Vec::new();
        push_pair(&mut b, "K", "");
        assert_eq!(b, b"K=\0");
    }

    #[test]
    fn accumulate_until_c_clear() {
        let mut acc = TextAccumulator::new();
        assert!(!acc.in_progress());
        assert_eq!(acc.push(b"Initiator", true).unwrap(), None);
        assert!(acc.in_progress());
        assert_eq!(acc.push(b"Name=iqn.x\0Sess", true).unwrap(), None);
        let all = acc.push(b"ionType=Normal\0", false).unwrap().unwrap();
        assert_eq!(all, b"InitiatorName=iqn.x\0SessionType=Normal\0".to_vec());
        assert!(!acc.in_progress());
        // A fresh sequence starts empty.
        assert_eq!(acc.push(b"A=1\0", false).unwrap().unwrap(), b"A=1\0");
    }

    #[test]
    fn accumulate_limit() {
        let mut acc = TextAccumulator::new();
        acc.push(&vec![b'a'; MAX_TEXT_LEN], true).unwrap();
        assert_eq!(
            acc.push(b"b", false),
            Err(TextError::TooLarge(MAX_TEXT_LEN + 1))
        );
        assert!(!acc.in_progress());
    }

    #[test]
    fn segment_on_pair_boundaries() {
        let text = b"AAAA=1\0BBBB=2\0CCCC=3\0".to_vec(); // 3 x 7 bytes
        let mut s = TextSegmenter::new(text.clone());
        assert_eq!(s.next_chunk(16), (b"AAAA=1\0BBBB=2\0".to_vec(), true));
        assert_eq!(s.remaining(), 7);
        assert_eq!(s.next_chunk(16), (b"CCCC=3\0".to_vec(), false));
        assert!(s.is_done());
        // Fits at once.
        let mut s = TextSegmenter::new(text.clone());
        assert_eq!(s.next_chunk(21), (text, false));
    }

    #[test]
    fn segment_splits_long_pair() {
        let mut s = TextSegmenter::new(b"KEY=0123456789\0".to_vec());
        assert_eq!(s.next_chunk(6), (b"KEY=01".to_vec(), true));
        assert_eq!(s.next_chunk(6), (b"234567".to_vec(), true));
        assert_eq!(s.next_chunk(6), (b"89\0".to_vec(), false));
        // Empty text: one empty final chunk.
        let mut e = TextSegmenter::new(Vec::new());
        assert_eq!(e.next_chunk(8192), (Vec::new(), false));
    }
}
