//! Pacing of failed authentication, per (initiator name, source), so that
//! guessing a CHAP secret online is slow while the legitimate host — on
//! another address — logs in at once.
//!
//! After `n` failures of one key, its next proof is checked no sooner than
//! `delay(n) = min(base * 2^(n-1), max)` after the last one. Attempts of
//! one key made in parallel (several connections at once) queue behind each
//! other: each takes the next free slot and pushes the one after by its own
//! delay, so opening more connections does not buy more guesses. Optionally,
//! `lockout_after` failures refuse the key outright for `lockout`. A key's
//! failures are forgotten after [`FORGET_AFTER`] without one, or when it
//! succeeds.
//!
//! Sans I/O: callers pass the time and do the waiting. The table is
//! bounded; when it is full the key with the fewest failures goes first
//! (an attacker cannot flush their own, much-failed key by creating others).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A key's failures are forgotten after this long without a new one (or
/// the lockout, when that is longer).
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// How failed authentication is paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingConfig {
    /// Delay after the first failure (zero: no pacing).
    pub base: Duration,
    /// Longest delay between two attempts of one key.
    pub max: Duration,
    /// Failures after which the key is refused outright (0: never).
    pub lockout_after: u32,
    /// How long a locked-out key is refused.
    pub lockout: Duration,
    /// Keys remembered at once.
    pub capacity: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            lockout_after: 0,
            lockout: Duration::from_secs(15 * 60),
            capacity: 16384,
        }
    }
}

/// Who an attempt comes from: the initiator name (lower case) and the
/// source host ([`crate::gate::host_of`]: an IPv4 address, or an IPv6 /64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaceKey {
    name: String,
    source: IpAddr,
}

impl PaceKey {
    pub fn new(initiator_name: &str, peer: IpAddr) -> PaceKey {
        PaceKey {
            name: initiator_name.to_ascii_lowercase(),
            source: crate::gate::host_of(peer),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// No proof of this key is checked before then.
    next: Instant,
    locked_until: Option<Instant>,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Check the proof at this time (now, or later: wait until then).
    At(Instant),
    /// Refuse without checking: the key is locked out until then.
    Locked(Instant),
}

/// `min(base * 2^(n-1), max)`: the delay after `n` (>= 1) failures.
fn delay(cfg: &PacingConfig, n: u32) -> Duration {
    let shift = n.saturating_sub(1).min(31);
    cfg.base
        .saturating_mul(1u32 << shift)
        .min(cfg.max.max(cfg.base))
}

/// Failures are forgotten after this long without one.
fn forget_after(cfg: &PacingConfig) -> Duration {
    FORGET_AFTER.max(cfg.lockout)
}

/// The table of recent failures.
#[derive(Debug)]
pub struct Pacer {
    cfg: PacingConfig,
    entries: HashMap<PaceKey, Entry>,
}

impl Pacer {
    pub fn new(cfg: PacingConfig) -> Pacer {
        Pacer {
            cfg,
            entries: HashMap::new(),
        }
    }

    pub fn config(&self) -> &PacingConfig {
        &self.cfg
    }

    /// Delay after `n` (>= 1) failures.
    pub fn delay(&self, n: u32) -> Duration {
        delay(&self.cfg, n)
    }

    /// An attempt of `key` at `now` is about to be checked: when.
    pub fn admit(&mut self, key: &PaceKey, now: Instant) -> Admit {
        let forget = forget_after(&self.cfg);
        let Some(e) = self.entries.get_mut(key) else {
            return Admit::At(now);
        };
        if now.saturating_duration_since(e.last_failure) >= forget {
            self.entries.remove(key);
            return Admit::At(now);
        }
        if let Some(until) = e.locked_until.filter(|u| now < *u) {
            return Admit::Locked(until);
        }
        // Take the next slot and push the following one back, as if this
        // attempt failed too; a success removes the entry.
        let slot = e.next.max(now);
        e.next = slot + delay(&self.cfg, e.failures);
        Admit::At(slot)
    }

    /// The attempt of `key` failed at `now`.
    pub fn failed(&mut self, key: &PaceKey, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.cfg.capacity.max(1) {
            self.evict(now);
        }
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            next: now,
            locked_until: None,
        });
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        e.next = e.next.max(now + delay(&self.cfg, e.failures));
        if self.cfg.lockout_after > 0 && e.failures >= self.cfg.lockout_after {
            e.locked_until = Some(now + self.cfg.lockout);
        }
    }

    /// The attempt of `key` succeeded: its failures are forgotten.
    pub fn succeeded(&mut self, key: &PaceKey) {
        self.entries.remove(key);
    }

    /// Failures recorded for `key`.
    pub fn failures(&self, key: &PaceKey) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }

    /// Keys with failures on record.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Make room for one key: drop the forgotten ones, or else the one
    /// with the fewest failures (the oldest of those).
    fn evict(&mut self, now: Instant) {
        let forget = forget_after(&self.cfg);
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) < forget);
        if self.entries.len() < before {
            return;
        }
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| e.locked_until.is_none_or(|u| u <= now))
            .min_by_key(|(_, e)| (e.failures, e.last_failure))
            .or_else(|| {
                self.entries
                    .iter()
                    .min_by_key(|(_, e)| (e.failures, e.last_failure))
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(base_ms: u64, max_ms: u64) -> PacingConfig {
        PacingConfig {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            ..PacingConfig::default()
        }
    }

    fn key(name: &str, ip: &str) -> PaceKey {
        PaceKey::new(name, ip.parse().unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = Pacer::new(cfg(100, 2000));
        let d: Vec<u64> = (1..=8).map(|n| p.delay(n).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(p.delay(u32::MAX), ms(2000), "no overflow");
    }

    /// Sequential guessing, one connection after another: the time 50
    /// wrong attempts take is the sum of the delays.
    #[test]
    fn fifty_sequential_failures_take_the_sum_of_the_delays() {
        let mut p = Pacer::new(PacingConfig::default());
        let k = key("iqn.x", "192.0.2.7");
        let start = Instant::now();
        let mut now = start;
        for _ in 0..50 {
            match p.admit(&k, now) {
                Admit::At(t) => now = now.max(t),
                Admit::Locked(_) => panic!("no lockout configured"),
            }
            p.failed(&k, now);
        }
        let took = now - start;
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 44 * 2 s before the 50th attempt.
        assert_eq!(took, ms(91_100), "{took:?}");
        assert_eq!(p.failures(&k), 50);
    }

    #[test]
    fn parallel_attempts_queue_behind_each_other() {
        let mut p = Pacer::new(cfg(100, 10_000));
        let k = key("iqn.x", "192.0.2.7");
        let t0 = Instant::now();
        for _ in 0..3 {
            p.failed(&k, t0);
        }
        // 3 failures: 400 ms; ten connections at once get ten slots.
        let slots: Vec<Duration> = (0..10)
            .map(|_| match p.admit(&k, t0) {
                Admit::At(t) => t - t0,
                Admit::Locked(_) => unreachable!(),
            })
            .collect();
        let want: Vec<Duration> = (0..10).map(|i| ms(400) * (i + 1)).collect();
        assert_eq!(slots, want);
    }

    #[test]
    fn other_sources_and_names_are_not_held_up() {
        let mut p = Pacer::new(cfg(100, 2000));
        let t0 = Instant::now();
        let attacker = key("iqn.victim", "192.0.2.66");
        for _ in 0..20 {
            p.failed(&attacker, t0);
        }
        assert!(matches!(p.admit(&attacker, t0), Admit::At(t) if t > t0));
        // The legitimate host, same name, another address: at once.
        assert_eq!(p.admit(&key("iqn.victim", "192.0.2.10"), t0), Admit::At(t0));
        // Another name from the attacker's address: at once.
        assert_eq!(p.admit(&key("iqn.other", "192.0.2.66"), t0), Admit::At(t0));
        // Names compare without case.
        assert!(matches!(p.admit(&key("IQN.VICTIM", "192.0.2.66"), t0), Admit::At(t) if t > t0));
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        assert_eq!(
            key("n", "2001:db8:1:2:aaaa::1"),
            key("n", "2001:db8:1:2:bbbb::2")
        );
        assert_ne!(key("n", "2001:db8:1:2::1"), key("n", "2001:db8:1:3::1"));
        assert_eq!(key("n", "::ffff:192.0.2.1"), key("n", "192.0.2.1"));
        assert_ne!(key("n", "192.0.2.1"), key("n", "192.0.2.2"));
    }

    #[test]
    fn success_and_time_forget_failures() {
        let mut p = Pacer::new(cfg(100, 2000));
        let k = key("iqn.x", "192.0.2.7");
        let t0 = Instant::now();
        p.failed(&k, t0);
        p.failed(&k, t0);
        p.succeeded(&k);
        assert_eq!(p.admit(&k, t0), Admit::At(t0));
        p.failed(&k, t0);
        let later = t0 + FORGET_AFTER;
        assert_eq!(p.admit(&k, later), Admit::At(later));
        assert_eq!(p.failures(&k), 0);
    }

    #[test]
    fn lockout_refuses_until_it_ends() {
        let mut p = Pacer::new(PacingConfig {
            lockout_after: 5,
            lockout: Duration::from_secs(60),
            ..cfg(10, 100)
        });
        let k = key("iqn.x", "192.0.2.7");
        let t0 = Instant::now();
        for _ in 0..4 {
            p.failed(&k, t0);
        }
        assert!(matches!(p.admit(&k, t0), Admit::At(_)));
        p.failed(&k, t0);
        assert_eq!(p.admit(&k, t0 + ms(500)), Admit::Locked(t0 + ms(60_000)));
        assert!(matches!(p.admit(&k, t0 + ms(60_000)), Admit::At(_)));
        // Another source is not locked out.
        assert_eq!(
            p.admit(&key("iqn.x", "192.0.2.8"), t0 + ms(1)),
            Admit::At(t0 + ms(1))
        );
    }

    #[test]
    fn a_full_table_keeps_the_most_failed_keys() {
        let mut p = Pacer::new(PacingConfig {
            capacity: 4,
            ..cfg(100, 2000)
        });
        let t0 = Instant::now();
        let target = key("iqn.victim", "192.0.2.66");
        for _ in 0..10 {
            p.failed(&target, t0);
        }
        // A flood of fresh keys, each failing once, does not push out the
        // key that failed ten times.
        for i in 0..1000 {
            p.failed(&key(&format!("iqn.flood{i}"), "192.0.2.66"), t0 + ms(i));
            assert!(p.len() <= 4);
        }
        assert_eq!(p.failures(&target), 10);
    }

    #[test]
    fn zero_base_means_no_pacing() {
        let mut p = Pacer::new(cfg(0, 0));
        let k = key("iqn.x", "192.0.2.7");
        let t0 = Instant::now();
        for _ in 0..10 {
            p.failed(&k, t0);
        }
        assert_eq!(p.admit(&k, t0), Admit::At(t0));
    }
}
