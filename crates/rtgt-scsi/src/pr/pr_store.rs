//! Persistence of a logical unit's persistent reservation state for APTPL
//! (Activate Persist Through Power Loss, SPC-4 5.13.5).
//!
//! One blob per LU, `pr-<NAA>.state`, in the [`StateStore`] the LU was
//! configured with ([`crate::LuConfig::state`]); the store makes each save
//! atomic and durable. When APTPL is no longer active the blob is removed
//! (the state must not survive a restart).
//!
//! The format is versioned text closed by an `end` line carrying an FNV-1a
//! checksum of everything before it. A file that does not parse, lacks the
//! `end` line or fails the checksum is refused: the LU is not created and
//! the error names the file. Silently starting without the registrations
//! would drop a cluster's fencing and let a fenced-off node write, so the
//! operator has to look (and remove or restore the file) instead. A stray
//! temp file a store leaves behind after a crash is its own business.

use std::fmt::Write as _;
use std::io;

use crate::lu::state_store::StateStore;

use crate::pr::persistent_reservation::{PrState, PrType, Registration, Reservation};
use crate::pr::transport_id::InitiatorId;

const MAGIC: &str = "rtgt-pr-state 1";

/// The persistent reservation state file of an LU could not be used.
#[derive(Debug, thiserror::Error)]
#[error("persistent reservation state {location}: {reason}")]
pub struct PrStateError {
    /// Where the state lives (the store's description, e.g. a path).
    pub location: String,
    pub reason: String,
}

/// The state's name for the LU with NAA identifier `naa`.
pub(crate) fn state_name(naa: &crate::lu::Naa) -> String {
    format!("pr-{}.state", naa.hex())
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The file's text for `st`.
pub(crate) fn encode(st: &PrState) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{MAGIC}");
    let _ = writeln!(s, "generation {}", st.generation);
    let _ = writeln!(s, "aptpl {}", u8::from(st.aptpl));
    for r in &st.regs {
        let port = r.port.map_or("*".to_string(), |p| p.to_string());
        let isid = r.who.isid.map_or("*".to_string(), |i| format!("{i:x}"));
        let _ = writeln!(
            s,
            "reg {} {:016x} {port} {isid} {}",
            r.id, r.key, r.who.name
        );
    }
    if let Some(res) = st.res {
        let _ = writeln!(s, "res {} {}", res.ty as u8, res.holder);
    }
    let sum = fnv(s.as_bytes());
    let _ = writeln!(s, "end {sum:016x}");
    s
}

/// Parse the file's text.
pub(crate) fn decode(text: &str) -> Result<PrState, String> {
    let Some(stripped) = text.strip_suffix('\n') else {
        return Err("no end line: the file is truncated".into());
    };
    let start = stripped.rfind('\n').map_or(0, |i| i + 1);
    let (body, last) = (&text[..start], &stripped[start..]);
    let Some(sum) = last.strip_prefix("end ") else {
        return Err("no end line: the file is truncated".into());
    };
    let sum = u64::from_str_radix(sum, 16).map_err(|_| "malformed end line")?;
    if sum != fnv(body.as_bytes()) {
        return Err("checksum mismatch: the file is corrupt".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("not a state file (expected \"{MAGIC}\")"));
    }
    let mut st = PrState::default();
    for (n, line) in lines.enumerate() {
        let n = n + 2;
        let bad = |what: &str| format!("line {n}: {what}: {line:?}");
        let (kw, rest) = line.split_once(' ').ok_or_else(|| bad("malformed"))?;
        match kw {
            "generation" => st.generation = rest.parse().map_err(|_| bad("bad number"))?,
            "aptpl" => {
                st.aptpl = match rest {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad("bad flag")),
                }
            }
            "reg" => {
                let f: Vec<&str> = rest.splitn(5, ' ').collect();
                if f.len() != 5 || f[4].is_empty() {
                    return Err(bad("malformed registration"));
                }
                let id: u64 = f[0].parse().map_err(|_| bad("bad id"))?;
                let key = u64::from_str_radix(f[1], 16).map_err(|_| bad("bad key"))?;
                let port = match f[2] {
                    "*" => None,
                    p => Some(p.parse().map_err(|_| bad("bad port"))?),
                };
                let isid = match f[3] {
                    "*" => None,
                    i => Some(u64::from_str_radix(i, 16).map_err(|_| bad("bad ISID"))?),
                };
                if st.regs.iter().any(|r| r.id == id) {
                    return Err(bad("duplicate registration id"));
                }
                st.regs.push(Registration {
                    id,
                    key,
                    who: InitiatorId {
                        name: f[4].to_string(),
                        isid,
                    },
                    port,
                });
            }
            "res" => {
                let (ty, holder) = rest.split_once(' ').ok_or_else(|| bad("malformed"))?;
                let ty = ty
                    .parse::<u8>()
                    .ok()
                    .and_then(PrType::from_code)
                    .ok_or_else(|| bad("bad type"))?;
                let holder: u64 = holder.parse().map_err(|_| bad("bad holder"))?;
                if st.res.is_some() {
                    return Err(bad("two reservations"));
                }
                st.res = Some(Reservation { ty, holder });
            }
            _ => return Err(bad("unknown line")),
        }
    }
    if let Some(res) = st.res {
        if !res.ty.all_registrants() && !st.regs.iter().any(|r| r.id == res.holder) {
            return Err("the reservation holder is not registered".into());
        }
        if st.regs.is_empty() {
            return Err("a reservation without registrations".into());
        }
    }
    st.next_id = st.regs.iter().map(|r| r.id).max().unwrap_or(0) + 1;
    Ok(st)
}

/// Save `st` under `name`.
pub(crate) fn save(store: &dyn StateStore, name: &str, st: &PrState) -> io::Result<()> {
    store.save(name, encode(st).as_bytes())
}

/// Forget the saved state (APTPL no longer active).
pub(crate) fn remove(store: &dyn StateStore, name: &str) -> io::Result<()> {
    store.remove(name)
}

/// The saved state, `None` when there is none.
pub(crate) fn load(store: &dyn StateStore, name: &str) -> Result<Option<PrState>, PrStateError> {
    let err = |reason: String| PrStateError {
        location: store.describe(name),
        reason,
    };
    let Some(bytes) = store.load(name).map_err(|e| err(e.to_string()))? else {
        return Ok(None);
    };
    let text =
        String::from_utf8(bytes).map_err(|_| err("not UTF-8: the state is corrupt".into()))?;
    decode(&text).map(Some).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PrState {
        PrState {
            generation: 7,
            aptpl: true,
            regs: vec![
                Registration {
                    id: 3,
                    key: 0xdead_beef_0000_0001,
                    who: InitiatorId::from_port("iqn.a:b,i,0x23d000000001"),
                    port: Some(1),
                },
                Registration {
                    id: 9,
                    key: 2,
                    who: InitiatorId {
                        name: "iqn.c".into(),
                        isid: None,
                    },
                    port: None,
                },
            ],
            res: Some(Reservation {
                ty: PrType::WeRegistrantsOnly,
                holder: 3,
            }),
            next_id: 10,
        }
    }

    #[test]
    fn round_trip() {
        let st = sample();
        assert_eq!(decode(&encode(&st)).unwrap(), st);
        let empty = PrState {
            next_id: 1,
            ..PrState::default()
        };
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    #[test]
    fn torn_and_corrupt_files_are_refused() {
        let text = encode(&sample());
        // Every truncation is refused (a torn write never looks valid).
        for cut in 0..text.len() {
            assert!(decode(&text[..cut]).is_err(), "accepted a cut at {cut}");
        }
        // A flipped digit in a key fails the checksum.
        let bad = text.replacen("deadbeef", "deadbeee", 1);
        assert!(decode(&bad).unwrap_err().contains("checksum"));
        // A holder that is not registered.
        let mut st = sample();
        st.res = Some(Reservation {
            ty: PrType::ExclusiveAccess,
            holder: 42,
        });
        assert!(decode(&encode(&st)).is_err());
    }

    #[test]
    fn save_load_remove() {
        let store = crate::lu::state_store::MemoryStore::new();
        let name = state_name(&crate::lu::Naa::from_u64(0x5001_4050_0000_0001));
        assert_eq!(name, "pr-5001405000000001.state");
        assert!(load(&store, &name).unwrap().is_none());
        save(&store, &name, &sample()).unwrap();
        assert_eq!(load(&store, &name).unwrap(), Some(sample()));
        let mut st = sample();
        st.generation = 8;
        save(&store, &name, &st).unwrap();
        assert_eq!(load(&store, &name).unwrap().unwrap().generation, 8);
        remove(&store, &name).unwrap();
        assert!(load(&store, &name).unwrap().is_none());
        // Garbage is refused with the state's location in the message.
        store.put_raw(&name, b"hello\n".to_vec());
        let e = load(&store, &name).unwrap_err();
        assert!(
            e.to_string().contains("memory:pr-5001405000000001.state"),
            "{e}"
        );
    }
}
