//! Persistence of a logical unit's persistent reservation state for APTPL
//! (Activate Persist Through Power Loss, SPC-4 5.13.5).
//!
//! The one place in the core that touches files; it only ever reads and
//! writes one file per LU, `pr-<NAA>.state`, in the state directory the LU
//! was configured with ([`crate::LuConfig::state_dir`]).
//!
//! Writing is atomic: the new state goes to `<file>.tmp`, which is fsynced,
//! renamed over the file, and the directory is fsynced. A crash at any point
//! leaves either the old or the new state. When APTPL is no longer active
//! the file is removed (the state must not survive a restart).
//!
//! The format is versioned text closed by an `end` line carrying an FNV-1a
//! checksum of everything before it. A file that does not parse, lacks the
//! `end` line or fails the checksum is refused: the LU is not created and
//! the error names the file. Silently starting without the registrations
//! would drop a cluster's fencing and let a fenced-off node write, so the
//! operator has to look (and remove or restore the file) instead. A stray
//! `.tmp` file, left by a crash before the rename, is ignored and replaced
//! by the next write.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::persistent_reservation::{PrState, PrType, Registration, Reservation};
use crate::transport_id::InitiatorId;

const MAGIC: &str = "rtgt-pr-state 1";

/// The persistent reservation state file of an LU could not be used.
#[derive(Debug, thiserror::Error)]
#[error("persistent reservation state {}: {reason}", path.display())]
pub struct PrStateError {
    pub path: PathBuf,
    pub reason: String,
}

/// The state file of the LU with NAA identifier `naa` in `dir`.
pub(crate) fn state_path(dir: &Path, naa: u64) -> PathBuf {
    dir.join(format!("pr-{naa:016x}.state"))
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Write `st` to `path` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn save(path: &Path, st: &PrState) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(encode(st).as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Remove the state file (APTPL no longer active).
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The saved state, `None` when there is no file.
pub(crate) fn load(path: &Path) -> Result<Option<PrState>, PrStateError> {
    let err = |reason: String| PrStateError {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| err("not UTF-8: the file is corrupt".into()))?;
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
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir.path().join("sub"), 0x5001_4050_0000_0001);
        assert!(load(&path).unwrap().is_none());
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(sample()));
        // A leftover temp file (crash before rename) does not matter.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        fs::write(&tmp, "garbage").unwrap();
        assert_eq!(load(&path).unwrap(), Some(sample()));
        let mut st = sample();
        st.generation = 8;
        save(&path, &st).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().generation, 8);
        remove(&path).unwrap();
        assert!(load(&path).unwrap().is_none());
        remove(&path).unwrap();
        // Garbage is refused with the file's name in the message.
        fs::write(&path, "hello\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.to_string().contains("pr-5001405000000001.state"), "{e}");
    }
}
