//! Bounds on connections in the login phase, before the initiator has
//! proved anything: in all, per source network (/24 of IPv4, /64 of
//! IPv6), and per initiator name. A connection holds a [`LoginTicket`]
//! from accept until its login completes or fails; one that finds a bound
//! full is answered 03/02 (out of resources), which initiators retry.
//!
//! Together with the security-phase deadline this bounds what an
//! unauthenticated peer can hold: `per_network` connections for a few
//! seconds each, from every network it has addresses in, and `global` in
//! all — and so also the outstanding CHAP challenges (one per connection),
//! for which the server sizes its record from `global`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Connections in the login phase, in all.
    pub global: usize,
    /// ...from one source network.
    pub per_network: usize,
    /// ...for one initiator name.
    pub per_initiator: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            global: 1024,
            per_network: 128,
            per_initiator: 16,
        }
    }
}

/// Which bound was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Global,
    Network,
    Initiator,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Full::Global => "connections in login",
            Full::Network => "connections in login from this network",
            Full::Initiator => "connections in login for this initiator name",
        })
    }
}

/// The host a source address stands for: an IPv4 address (IPv4-mapped
/// IPv6 ones too), or the /64 of an IPv6 one, since a host there has all
/// of its /64 to pick addresses from. Shared by the gate and the pacing of
/// failed authentication.
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = a.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

/// The network a source address counts against: the /24 of its IPv4
/// host, or its /64 (IPv6).
pub fn network_of(ip: IpAddr) -> IpAddr {
    match host_of(ip) {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o[3] = 0;
            IpAddr::V4(o.into())
        }
        v6 => v6,
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_network: HashMap<IpAddr, usize>,
    by_name: HashMap<String, usize>,
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

/// The counts, shared by every connection of a server.
#[derive(Debug)]
pub struct LoginGate {
    limits: LoginLimits,
    counts: Mutex<Counts>,
}

impl LoginGate {
    pub fn new(limits: LoginLimits) -> Arc<LoginGate> {
        Arc::new(LoginGate {
            limits: LoginLimits {
                global: limits.global.max(1),
                per_network: limits.per_network.max(1),
                per_initiator: limits.per_initiator.max(1),
            },
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        crate::lock(&self.counts)
    }

    /// A connection from `peer` enters the login phase.
    pub fn enter(self: &Arc<Self>, peer: IpAddr) -> Result<LoginTicket, Full> {
        let net = network_of(peer);
        let mut c = self.lock();
        if c.total >= self.limits.global {
            return Err(Full::Global);
        }
        let n = c.by_network.get(&net).copied().unwrap_or(0);
        if n >= self.limits.per_network {
            return Err(Full::Network);
        }
        c.total += 1;
        c.by_network.insert(net, n + 1);
        Ok(LoginTicket {
            gate: self.clone(),
            network: net,
            name: None,
        })
    }

    /// Connections in the login phase now.
    pub fn in_login(&self) -> usize {
        self.lock().total
    }
}

/// One connection's place in the login phase; given back when dropped.
#[derive(Debug)]
pub struct LoginTicket {
    gate: Arc<LoginGate>,
    network: IpAddr,
    name: Option<String>,
}

impl LoginTicket {
    /// The login names its initiator: count it against that name too
    /// (once; a later call with another name moves the count).
    pub fn name(&mut self, initiator_name: &str) -> Result<(), Full> {
        let key = initiator_name.to_ascii_lowercase();
        if self.name.as_deref() == Some(key.as_str()) {
            return Ok(());
        }
        let mut c = self.gate.lock();
        let n = c.by_name.get(&key).copied().unwrap_or(0);
        if n >= self.gate.limits.per_initiator {
            return Err(Full::Initiator);
        }
        if let Some(old) = self.name.take() {
            dec(&mut c.by_name, &old);
        }
        c.by_name.insert(key.clone(), n + 1);
        self.name = Some(key);
        Ok(())
    }
}

impl Drop for LoginTicket {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        c.total -= 1;
        dec(&mut c.by_network, &self.network);
        if let Some(n) = self.name.take() {
            dec(&mut c.by_name, &n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        assert_eq!(network_of(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(network_of(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(network_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(host_of(ip("192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(host_of(ip("::ffff:192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(host_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn each_bound_holds_and_tickets_give_back() {
        let g = LoginGate::new(LoginLimits {
            global: 5,
            per_network: 3,
            per_initiator: 2,
        });
        let a: Vec<_> = (1..=3)
            .map(|i| g.enter(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(g.enter(ip("10.0.0.200")).unwrap_err(), Full::Network);
        let mut b1 = g.enter(ip("10.0.1.1")).unwrap();
        let mut b2 = g.enter(ip("10.0.1.2")).unwrap();
        assert_eq!(g.enter(ip("10.0.2.1")).unwrap_err(), Full::Global);
        assert_eq!(g.in_login(), 5);
        b1.name("iqn.A").unwrap();
        b2.name("IQN.a").unwrap();
        let mut a0 = g.enter(ip("10.0.3.1"));
        assert_eq!(a0.as_ref().unwrap_err(), &Full::Global);
        drop(a);
        a0 = g.enter(ip("10.0.3.1"));
        let mut c = a0.unwrap();
        assert_eq!(c.name("iqn.a").unwrap_err(), Full::Initiator);
        c.name("iqn.b").unwrap();
        c.name("iqn.b").unwrap();
        drop(b1);
        c.name("iqn.a").unwrap();
        drop((b2, c));
        assert_eq!(g.in_login(), 0);
        let counts = g.lock();
        assert!(counts.by_network.is_empty() && counts.by_name.is_empty());
    }
}
