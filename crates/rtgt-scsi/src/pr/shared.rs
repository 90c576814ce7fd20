//! A persistent reservation state shared by several daemons: the gateways
//! that export one LU (an RBD image) under one identity (issue 19).
//!
//! The state lives in a [`SharedPrStore`]: a versioned blob replaced by
//! compare-and-swap. A PERSISTENT RESERVE OUT reads the committed state,
//! applies the service action's rules to it (the same pure functions as a
//! local LU: `persistent_reservation`), and commits the result only if no
//! other gateway committed in between; else it reads again and redoes. So
//! every gateway enforces the one state, and a reservation taken through
//! one is a reservation through all of them.
//!
//! What a service action causes for other nexuses (unit attentions,
//! PREEMPT AND ABORT's aborts) is kept in the blob with the state, per
//! version (the last [`EFFECTS_KEPT`] commits), so a gateway that hears of
//! a commit (the store's watch) delivers to its own nexuses what each
//! commit since the one it had caused. The blob is text:
//!
//! ```text
//! rtgt-pr-shared 1
//! effect VERSION ua KEY ASC ASCQ PORT ISID NAME   (PORT, ISID: * for any)
//! effect VERSION abort PORT ISID NAME
//! state
//! ... the state as pr_store writes it (with its own checksum) ...
//! ```
//!
//! SPC-2 RESERVE/RELEASE stays local to each gateway (it is a reservation
//! of one I_T nexus, and every nexus is on one gateway).

use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex};

use crate::core::sense::Sense;
use crate::pr::persistent_reservation::{Effects, PrState, Target};
use crate::pr::pr_store;
use crate::pr::transport_id::InitiatorId;

const MAGIC: &str = "rtgt-pr-shared 1";

/// Commits whose effects the blob keeps.
pub const EFFECTS_KEPT: u64 = 16;

/// Where the shared state lives (a RADOS object, or memory in tests).
pub trait SharedPrStore: Send + Sync {
    /// The committed blob and its version; `(0, None)` before the first
    /// commit.
    fn read(&self) -> io::Result<(u64, Option<Vec<u8>>)>;
    /// Replace the blob if it is still at `version`: the new version, or
    /// `None` when another gateway committed first. Returns once the other
    /// gateways watching the store have been told (within a bounded wait).
    fn commit(&self, version: u64, data: &[u8]) -> io::Result<Option<u64>>;
    /// Call `changed` when another gateway commits.
    fn watch(&self, changed: Box<dyn Fn() + Send + Sync>);
    /// Where the state lives, for messages.
    fn describe(&self) -> String;
}

/// The effects of one commit, as the blob keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub version: u64,
    pub ua: Vec<(Sense, Target)>,
    pub abort: Vec<Target>,
}

impl Logged {
    pub fn of(version: u64, e: &Effects) -> Logged {
        Logged {
            version,
            ua: e
                .ua
                .iter()
                .flat_map(|(s, ts)| ts.iter().map(move |t| (*s, t.clone())))
                .collect(),
            abort: e.abort.clone(),
        }
    }

    /// Back into the shape `Reservations` resolves.
    pub fn effects(&self) -> Effects {
        let mut e = Effects::default();
        for (s, t) in &self.ua {
            match e.ua.iter_mut().find(|(x, _)| x == s) {
                Some((_, ts)) => ts.push(t.clone()),
                None => e.ua.push((*s, vec![t.clone()])),
            }
        }
        e.abort = self.abort.clone();
        e
    }
}

/// The shared blob decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shared {
    pub state: PrState,
    pub log: Vec<Logged>,
}

fn target_text(t: &Target) -> String {
    let port = t.port.map_or("*".to_string(), |p| p.to_string());
    let isid = t.who.isid.map_or("*".to_string(), |i| format!("{i:x}"));
    format!("{port} {isid} {}", t.who.name)
}

fn parse_target(port: &str, isid: &str, name: &str) -> Result<Target, String> {
    let port = match port {
        "*" => None,
        p => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
    };
    let isid = match isid {
        "*" => None,
        i => Some(u64::from_str_radix(i, 16).map_err(|_| format!("bad ISID {i:?}"))?),
    };
    if name.is_empty() {
        return Err("empty initiator name".into());
    }
    Ok(Target {
        who: InitiatorId {
            name: name.to_string(),
            isid,
        },
        port,
    })
}

pub(crate) fn encode(s: &Shared) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "{MAGIC}");
    for l in &s.log {
        for (sense, t) in &l.ua {
            let _ = writeln!(
                out,
                "effect {} ua {:x} {:x} {:x} {}",
                l.version,
                sense.key,
                sense.asc,
                sense.ascq,
                target_text(t)
            );
        }
        for t in &l.abort {
            let _ = writeln!(out, "effect {} abort {}", l.version, target_text(t));
        }
        if l.ua.is_empty() && l.abort.is_empty() {
            let _ = writeln!(out, "effect {} none", l.version);
        }
    }
    let _ = writeln!(out, "state");
    out.push_str(&pr_store::encode(&s.state));
    out.into_bytes()
}

pub(crate) fn decode(data: &[u8]) -> Result<Shared, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let Some(rest) = text.strip_prefix(MAGIC).and_then(|r| r.strip_prefix('\n')) else {
        return Err(format!("does not start with {MAGIC:?}"));
    };
    let Some(at) = rest
        .find("state\n")
        .filter(|&i| i == 0 || rest[..i].ends_with('\n'))
    else {
        return Err("no state line".into());
    };
    let (head, state) = (&rest[..at], &rest[at + "state\n".len()..]);
    let state = pr_store::decode(state)?;
    let mut log: Vec<Logged> = Vec::new();
    for (n, line) in head.lines().enumerate() {
        let bad = |why: String| format!("line {}: {why}", n + 2);
        let f: Vec<&str> = line.splitn(9, ' ').collect();
        if f.len() < 3 || f[0] != "effect" {
            return Err(bad(format!("unexpected {line:?}")));
        }
        let version: u64 = f[1].parse().map_err(|_| bad("bad version".into()))?;
        if log.last().is_none_or(|l| l.version != version) {
            log.push(Logged {
                version,
                ua: Vec::new(),
                abort: Vec::new(),
            });
        }
        let entry = log.last_mut().expect("pushed above");
        let hex = |s: &str| u8::from_str_radix(s, 16).map_err(|_| bad(format!("bad byte {s:?}")));
        match (f[2], f.len()) {
            ("none", 3) => {}
            ("ua", 9) => {
                let sense = Sense::new(hex(f[3])?, hex(f[4])?, hex(f[5])?);
                entry
                    .ua
                    .push((sense, parse_target(f[6], f[7], f[8]).map_err(bad)?));
            }
            ("abort", _) => {
                let g: Vec<&str> = line.splitn(6, ' ').collect();
                if g.len() != 6 {
                    return Err(bad(format!("unexpected {line:?}")));
                }
                entry
                    .abort
                    .push(parse_target(g[3], g[4], g[5]).map_err(bad)?);
            }
            _ => return Err(bad(format!("unexpected {line:?}"))),
        }
    }
    Ok(Shared { state, log })
}

/// One process's stand-in for a cluster: LUs opened on handles of one
/// `MemorySharedPr` share their state as gateways on one image would.
#[derive(Default)]
pub struct MemorySharedPr {
    inner: Mutex<MemInner>,
}

#[derive(Default)]
struct MemInner {
    version: u64,
    blob: Option<Vec<u8>>,
    watchers: Vec<(usize, Arc<dyn Fn() + Send + Sync>)>,
    handles: usize,
}

impl MemorySharedPr {
    pub fn new() -> Arc<MemorySharedPr> {
        Arc::new(MemorySharedPr::default())
    }

    /// A gateway's view of the store (one per LU).
    pub fn handle(self: &Arc<Self>) -> Arc<dyn SharedPrStore> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.handles += 1;
        Arc::new(MemoryHandle {
            store: self.clone(),
            id: g.handles,
        })
    }

    /// Overwrite the blob behind the gateways' backs (corruption tests).
    pub fn put_raw(&self, data: Vec<u8>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.version += 1;
        g.blob = Some(data);
    }
}

struct MemoryHandle {
    store: Arc<MemorySharedPr>,
    id: usize,
}

impl SharedPrStore for MemoryHandle {
    fn read(&self) -> io::Result<(u64, Option<Vec<u8>>)> {
        let g = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok((g.version, g.blob.clone()))
    }

    fn commit(&self, version: u64, data: &[u8]) -> io::Result<Option<u64>> {
        let watchers = {
            let mut g = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.version != version {
                return Ok(None);
            }
            g.version += 1;
            g.blob = Some(data.to_vec());
            g.watchers
                .iter()
                .filter(|(id, _)| *id != self.id)
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>()
        };
        // Told with no lock held, as a cluster's notify: a watcher reads
        // the store again.
        for f in watchers {
            f();
        }
        Ok(Some(version + 1))
    }

    fn watch(&self, changed: Box<dyn Fn() + Send + Sync>) {
        let mut g = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.watchers.push((self.id, Arc::from(changed)));
    }

    fn describe(&self) -> String {
        "shared persistent reservation state (in memory)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::persistent_reservation::{UA_REGISTRATIONS_PREEMPTED, UA_RESERVATIONS_RELEASED};

    fn t(name: &str, port: Option<u16>, isid: Option<u64>) -> Target {
        Target {
            who: InitiatorId {
                name: name.into(),
                isid,
            },
            port,
        }
    }

    #[test]
    fn the_blob_round_trips_and_refuses_what_it_did_not_write() {
        let s = Shared {
            state: PrState {
                generation: 7,
                ..Default::default()
            },
            log: vec![
                Logged {
                    version: 3,
                    ua: vec![
                        (
                            UA_REGISTRATIONS_PREEMPTED,
                            t("iqn.a", Some(2), Some(0x23d000001)),
                        ),
                        (UA_RESERVATIONS_RELEASED, t("iqn.b", None, None)),
                    ],
                    abort: vec![t("iqn.a", Some(2), None)],
                },
                Logged {
                    version: 4,
                    ua: vec![],
                    abort: vec![],
                },
            ],
        };
        let blob = encode(&s);
        assert_eq!(decode(&blob).unwrap(), s);
        // Truncated, tampered state, garbage: refused.
        assert!(decode(&blob[..blob.len() - 3]).is_err());
        let text = String::from_utf8(blob.clone()).unwrap();
        assert!(decode(text.replace("generation 7", "generation 8").as_bytes()).is_err());
        assert!(decode(text.replace("effect 3 ua", "effect x ua").as_bytes()).is_err());
        assert!(decode(b"hello\nstate\n").is_err());
        assert!(decode(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_commit_on_a_stale_version_is_refused_and_the_others_are_told() {
        let store = MemorySharedPr::new();
        let (a, b) = (store.handle(), store.handle());
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t2 = told.clone();
        b.watch(Box::new(move || {
            t2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let told_a = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t3 = told_a.clone();
        a.watch(Box::new(move || {
            t3.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        assert_eq!(a.read().unwrap(), (0, None));
        assert_eq!(a.commit(0, b"one").unwrap(), Some(1));
        assert_eq!(
            told.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "b was told"
        );
        assert_eq!(
            told_a.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "not a itself"
        );
        // b still thinks version 0: refused, nothing changes.
        assert_eq!(b.commit(0, b"two").unwrap(), None);
        assert_eq!(b.read().unwrap(), (1, Some(b"one".to_vec())));
        assert_eq!(b.commit(1, b"two").unwrap(), Some(2));
        assert_eq!(told_a.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
