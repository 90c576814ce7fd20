//! Target port groups: who may use a target port, and which LUNs each
//! initiator sees through it.
//!
//! A group is in demo mode (any initiator; every LUN of the group, all
//! read-only if so configured) or in ACL mode (only initiators with a node
//! ACL; each sees the LUNs its ACL maps, under the numbers the ACL gives
//! them, read-write or read-only). An initiator with an ACL in a demo-mode
//! group gets its ACL's map, as in LIO.
//!
//! The group is live: [`PortGroup::reconfigure`] recomputes the LUN map of
//! every nexus it opened, swaps the maps that changed (with REPORTED LUNS
//! DATA HAS CHANGED for their initiators) and revokes the nexuses whose
//! initiator lost its access or had its authentication changed.
//!
//! Initiator names are compared exactly: a fabric whose names are
//! case-insensitive (iSCSI) hands them over normalised. The core parses no
//! name syntax.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::access::ChapAuth;
use crate::{LogicalUnit, LunMap, MappedLun, Nexus, TargetPort};

/// Who may log in to a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpgMode {
    /// Any initiator, every LUN of the group (`read_only`: write-protected
    /// for initiators without an ACL).
    Demo { read_only: bool },
    /// Only initiators with a node ACL.
    Acl,
}

/// A LUN of the group.
#[derive(Clone)]
pub struct TpgLun {
    pub lu: Arc<LogicalUnit>,
    /// Write-protected for everyone who reaches it through this group.
    pub read_only: bool,
}

/// One LUN of an ACL: the group's LUN it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LunMapping {
    pub tpg_lun: u64,
    pub read_only: bool,
}

/// A node ACL: one initiator, its authentication, its LUNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAcl {
    /// Authentication required of this initiator (none: the group's).
    pub auth: Option<ChapAuth>,
    /// Mapped LUN number (what the initiator sees) -> the group's LUN.
    pub luns: BTreeMap<u64, LunMapping>,
}

/// Everything that decides access through a group.
#[derive(Clone)]
pub struct PortGroupConfig {
    pub mode: TpgMode,
    /// Authentication for initiators whose ACL sets none, and for every
    /// initiator admitted by demo mode.
    pub auth: Option<ChapAuth>,
    /// The group's LUNs by number.
    pub luns: BTreeMap<u64, TpgLun>,
    /// Node ACLs by initiator name.
    pub acls: BTreeMap<String, NodeAcl>,
}

impl PortGroupConfig {
    /// A demo-mode group without authentication.
    pub fn demo(luns: BTreeMap<u64, TpgLun>) -> PortGroupConfig {
        PortGroupConfig {
            mode: TpgMode::Demo { read_only: false },
            auth: None,
            luns,
            acls: BTreeMap::new(),
        }
    }

    /// The authentication an initiator must pass, `None` if it may not use
    /// the group at all.
    fn admission(&self, initiator: &str) -> Option<Admission> {
        match (self.acls.get(initiator), self.mode) {
            (Some(acl), _) => Some(Admission {
                auth: acl.auth.clone().or_else(|| self.auth.clone()),
            }),
            (None, TpgMode::Demo { .. }) => Some(Admission {
                auth: self.auth.clone(),
            }),
            (None, TpgMode::Acl) => None,
        }
    }

    /// The LUNs `initiator` sees (it must be admitted).
    fn lun_map(&self, initiator: &str) -> LunMap {
        let mut luns = BTreeMap::new();
        match (self.acls.get(initiator), self.mode) {
            (Some(acl), _) => {
                for (&mapped, m) in &acl.luns {
                    // A mapping whose group LUN is gone maps nothing.
                    if let Some(t) = self.luns.get(&m.tpg_lun) {
                        luns.insert(
                            mapped,
                            MappedLun {
                                lu: t.lu.clone(),
                                read_only: t.read_only || m.read_only,
                            },
                        );
                    }
                }
            }
            (None, TpgMode::Demo { read_only }) => {
                for (&n, t) in &self.luns {
                    luns.insert(
                        n,
                        MappedLun {
                            lu: t.lu.clone(),
                            read_only: t.read_only || read_only,
                        },
                    );
                }
            }
            (None, TpgMode::Acl) => {}
        }
        LunMap { luns }
    }
}

/// What a group admitted an initiator with: the authentication it had to
/// pass. Handed back to [`PortGroup::open_nexus`] when the login completes,
/// so that a later change of that authentication ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    auth: Option<ChapAuth>,
}

impl Admission {
    /// The authentication the initiator must pass, if any.
    pub fn auth(&self) -> Option<&ChapAuth> {
        self.auth.as_ref()
    }
}

/// Why a nexus cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("initiator {0:?} has no ACL in this portal group")]
    NoAcl(String),
    #[error("the authentication of initiator {0:?} changed during its login")]
    AuthChanged(String),
    #[error("the portal group was removed")]
    Removed,
}

struct Member {
    nexus: Weak<Nexus>,
    initiator: String,
    admission: Admission,
}

/// A target port group, live: its configuration can change while the
/// nexuses it opened run.
pub struct PortGroup {
    port: Arc<TargetPort>,
    config: RwLock<Arc<PortGroupConfig>>,
    /// Nexuses opened through the group, and `None` once it is removed.
    members: Mutex<Option<Vec<Member>>>,
}

impl PortGroup {
    pub fn new(port: TargetPort, config: PortGroupConfig) -> Arc<PortGroup> {
        let port = Arc::new(port);
        export(&port, &config, true);
        Arc::new(PortGroup {
            port,
            config: RwLock::new(Arc::new(config)),
            members: Mutex::new(Some(Vec::new())),
        })
    }

    /// The target port the group forms.
    pub fn port(&self) -> &Arc<TargetPort> {
        &self.port
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<PortGroupConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether `initiator` may use the group, and with which
    /// authentication. Fabrics also use it to decide what discovery shows.
    pub fn admit(&self, initiator: &str) -> Option<Admission> {
        self.config().admission(initiator)
    }

    /// Open the I_T nexus of an initiator that passed `admission` (the
    /// fabric's login), with its current LUN map.
    pub fn open_nexus(
        self: &Arc<Self>,
        initiator: &str,
        initiator_port: String,
        admission: &Admission,
    ) -> Result<Arc<Nexus>, AccessDenied> {
        let mut members = lock(&self.members);
        let Some(list) = members.as_mut() else {
            return Err(AccessDenied::Removed);
        };
        // Under the members lock: a reconfiguration either sees the new
        // member or happened before the map below is computed.
        let config = self.config();
        match config.admission(initiator) {
            None => return Err(AccessDenied::NoAcl(initiator.to_string())),
            Some(a) if a != *admission => {
                return Err(AccessDenied::AuthChanged(initiator.to_string()))
            }
            Some(_) => {}
        }
        let nexus = Nexus::new(
            initiator_port,
            self.port.clone(),
            Arc::new(config.lun_map(initiator)),
        );
        list.retain(|m| m.nexus.strong_count() > 0);
        list.push(Member {
            nexus: Arc::downgrade(&nexus),
            initiator: initiator.to_string(),
            admission: admission.clone(),
        });
        Ok(nexus)
    }

    /// Apply a new configuration to the group and to every nexus it
    /// opened: new LUN maps take effect at once (REPORTED LUNS DATA HAS
    /// CHANGED for those whose map changed); initiators that lost access,
    /// or whose authentication changed, have their nexuses revoked.
    pub fn reconfigure(&self, config: PortGroupConfig) {
        let config = Arc::new(config);
        let mut members = lock(&self.members);
        let old = match self.config.write() {
            Ok(mut c) => std::mem::replace(&mut *c, config.clone()),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), config.clone()),
        };
        let Some(list) = members.as_mut() else {
            return;
        };
        // New exports first, so that a LU kept through the change never
        // looks unexported to its target port group.
        export(&self.port, &config, true);
        export(&self.port, &old, false);
        list.retain(|m| {
            let Some(nexus) = m.nexus.upgrade() else {
                return false;
            };
            match config.admission(&m.initiator) {
                Some(a) if a == m.admission => {
                    nexus.set_luns(Arc::new(config.lun_map(&m.initiator)));
                    true
                }
                _ => {
                    tracing::info!(
                        initiator = %m.initiator,
                        port = %self.port.name,
                        "access changed: ending the session"
                    );
                    nexus.revoke();
                    false
                }
            }
        });
    }

    /// The group is gone: revoke every nexus it opened and refuse new ones.
    pub fn remove(&self) {
        let list = lock(&self.members).take();
        if list.is_some() {
            export(&self.port, &self.config(), false);
        }
        for m in list.into_iter().flatten() {
            if let Some(n) = m.nexus.upgrade() {
                n.revoke();
            }
        }
    }

    /// Nexuses of the group still open.
    pub fn nexus_count(&self) -> usize {
        lock(&self.members).as_ref().map_or(0, |l| {
            l.iter().filter(|m| m.nexus.strong_count() > 0).count()
        })
    }
}

/// Tell each LU of `config` that `port` starts (or stops) exporting it.
fn export(port: &Arc<TargetPort>, config: &PortGroupConfig, start: bool) {
    for l in config.luns.values() {
        if start {
            crate::alua::attach(&l.lu, port);
        } else {
            crate::alua::detach(&l.lu, port);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves consistent data (every
    // update is a single assignment), so go on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Credential, Secret};
    use crate::api::Response;
    use crate::core::sense::Sense;
    use crate::testutil::{cmd, done, mem_lu, test_port};

    const TUR: [u8; 6] = [0; 6];
    const WRITE1: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const REPORT_LUNS: [u8; 12] = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    const MODE_SENSE6: [u8; 6] = [0x1a, 0, 0x3f, 0, 0xff, 0];
    const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 36, 0];

    async fn run(n: &Arc<Nexus>, lun: u64, cdb: &[u8], data: &[u8]) -> Response {
        match n.prepare(cmd(lun, cdb)) {
            Err(r) => r,
            Ok(p) => done(p.execute(data.to_vec()).await),
        }
    }

    fn sense(r: &Response) -> (u8, u16) {
        let s = Sense::decode(r.sense.as_ref().expect("sense")).expect("sense");
        (s.key, s.code())
    }

    /// TEST UNIT READY on `lun` until its unit attentions are gone.
    async fn clear_ua(n: &Arc<Nexus>, lun: u64) {
        for _ in 0..10 {
            if run(n, lun, &TUR, &[]).await.status == 0 {
                return;
            }
        }
        panic!("unit attention does not clear");
    }

    async fn report_luns(n: &Arc<Nexus>) -> Vec<u64> {
        let r = run(n, 0, &REPORT_LUNS, &[]).await;
        assert_eq!(r.status, 0);
        r.data[8..]
            .chunks(8)
            .map(|c| crate::api::decode_lun(c.try_into().unwrap()))
            .collect()
    }

    fn chap(user: &str) -> ChapAuth {
        ChapAuth {
            initiator: Credential {
                user: user.into(),
                secret: Secret::new(b"a secret of some length".to_vec()),
            },
            mutual: None,
        }
    }

    struct Seed {
        x: Arc<LogicalUnit>,
        y: Arc<LogicalUnit>,
        z: Arc<LogicalUnit>,
        group: Arc<PortGroup>,
    }

    /// The seed's case: A sees X and Y read-write, B sees Y read-only and
    /// Z read-write, under LUN numbers that differ from the group's.
    fn seed_config(
        x: &Arc<LogicalUnit>,
        y: &Arc<LogicalUnit>,
        z: &Arc<LogicalUnit>,
    ) -> PortGroupConfig {
        let tpg = |lu: &Arc<LogicalUnit>| TpgLun {
            lu: lu.clone(),
            read_only: false,
        };
        let map = |pairs: &[(u64, u64, bool)]| {
            pairs
                .iter()
                .map(|&(m, t, ro)| {
                    (
                        m,
                        LunMapping {
                            tpg_lun: t,
                            read_only: ro,
                        },
                    )
                })
                .collect()
        };
        PortGroupConfig {
            mode: TpgMode::Acl,
            auth: None,
            luns: [(10, tpg(x)), (11, tpg(y)), (12, tpg(z))]
                .into_iter()
                .collect(),
            acls: [
                (
                    "a".to_string(),
                    NodeAcl {
                        auth: None,
                        luns: map(&[(0, 10, false), (1, 11, false)]),
                    },
                ),
                (
                    "b".to_string(),
                    NodeAcl {
                        auth: None,
                        luns: map(&[(0, 11, true), (1, 12, false)]),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn seed() -> Seed {
        let (x, y, z) = (mem_lu(64, 512), mem_lu(64, 512), mem_lu(64, 512));
        let group = PortGroup::new(test_port(), seed_config(&x, &y, &z));
        Seed { x, y, z, group }
    }

    fn open(g: &Arc<PortGroup>, who: &str) -> Arc<Nexus> {
        let adm = g.admit(who).expect("admitted");
        g.open_nexus(who, format!("{who},i,0x1"), &adm).unwrap()
    }

    #[tokio::test]
    async fn acl_mode_maps_luns_per_initiator() {
        let s = seed();
        assert!(s.group.admit("c").is_none(), "no ACL, no login");
        let c = PortGroupConfig::demo(BTreeMap::new());
        assert!(c.admission("c").is_some(), "demo mode admits anyone");

        let a = open(&s.group, "a");
        let b = open(&s.group, "b");
        assert_eq!(report_luns(&a).await, vec![0, 1]);
        assert_eq!(report_luns(&b).await, vec![0, 1]);
        for lun in [0, 1] {
            clear_ua(&a, lun).await;
            clear_ua(&b, lun).await;
        }
        assert!(Arc::ptr_eq(&a.luns().luns[&1].lu, &s.y));
        assert!(Arc::ptr_eq(&b.luns().luns[&0].lu, &s.y));
        assert!(Arc::ptr_eq(&a.luns().luns[&0].lu, &s.x));
        assert!(Arc::ptr_eq(&b.luns().luns[&1].lu, &s.z));

        // A writes Y (its LUN 1); B reads it through its LUN 0 but may not
        // write it; B writes Z.
        let block = vec![0xa5u8; 512];
        assert_eq!(run(&a, 1, &WRITE1, &block).await.status, 0);
        assert_eq!(run(&b, 0, &READ1, &[]).await.data, block);
        let r = run(&b, 0, &WRITE1, &[0u8; 512]).await;
        assert_eq!(sense(&r), (0x07, 0x2700), "DATA PROTECT / WRITE PROTECTED");
        assert_eq!(
            run(&a, 1, &READ1, &[]).await.data,
            block,
            "refused write left no trace"
        );
        assert_eq!(run(&b, 1, &WRITE1, &block).await.status, 0);
        assert_eq!(
            run(&a, 0, &READ1, &[]).await.data,
            vec![0u8; 512],
            "X is not Z"
        );

        // MODE SENSE shows WP to B on Y only.
        let wp = |r: Response| r.data[2] & 0x80 != 0;
        assert!(wp(run(&b, 0, &MODE_SENSE6, &[]).await));
        assert!(!wp(run(&a, 1, &MODE_SENSE6, &[]).await));
        assert!(!wp(run(&b, 1, &MODE_SENSE6, &[]).await));

        // Unmapped LUNs: INQUIRY with peripheral qualifier 011b; other
        // commands LOGICAL UNIT NOT SUPPORTED.
        assert_eq!(run(&a, 2, &INQUIRY, &[]).await.data[0], 0x7f);
        assert_eq!(sense(&run(&a, 11, &READ1, &[]).await), (0x05, 0x2500));
    }

    #[tokio::test]
    async fn reservations_follow_the_lu_under_any_lun_number() {
        let s = seed();
        let a = open(&s.group, "a");
        let b = open(&s.group, "b");
        clear_ua(&a, 1).await;
        clear_ua(&b, 0).await;
        // A registers key 0xaa on Y (its LUN 1) and takes a WRITE EXCLUSIVE
        // reservation; B (Y is its LUN 0) reads the key and is held off.
        let mut reg = [0u8; 24];
        reg[8..16].copy_from_slice(&0xaau64.to_be_bytes());
        let out = |sa: u8, ty: u8| [0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(run(&a, 1, &out(0x00, 0), &reg).await.status, 0);
        let mut res = [0u8; 24];
        res[0..8].copy_from_slice(&0xaau64.to_be_bytes());
        assert_eq!(run(&a, 1, &out(0x01, 0x01), &res).await.status, 0);
        let r = run(&b, 0, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(
            &r.data[8..16],
            &0xaau64.to_be_bytes(),
            "B sees A's key on Y"
        );
        assert_eq!(run(&b, 0, &READ1, &[]).await.status, 0, "reads pass WE");
        // Z is not reserved.
        clear_ua(&b, 1).await;
        assert_eq!(run(&b, 1, &WRITE1, &[1u8; 512]).await.status, 0);
        let _ = (&s.x, &s.z);
    }

    #[tokio::test]
    async fn live_changes_reach_running_nexuses() {
        let s = seed();
        let a = open(&s.group, "a");
        let b = open(&s.group, "b");
        for lun in [0, 1] {
            clear_ua(&a, lun).await;
            clear_ua(&b, lun).await;
        }
        // A gets Z as LUN 5 as well.
        let mut cfg = seed_config(&s.x, &s.y, &s.z);
        cfg.acls.get_mut("a").unwrap().luns.insert(
            5,
            LunMapping {
                tpg_lun: 12,
                read_only: false,
            },
        );
        s.group.reconfigure(cfg.clone());
        let r = run(&a, 0, &TUR, &[]).await;
        assert_eq!(sense(&r), (0x06, 0x3f0e), "REPORTED LUNS DATA HAS CHANGED");
        assert_eq!(report_luns(&a).await, vec![0, 1, 5]);
        // Each LU reports it once (unit attentions are per LU).
        assert_eq!(sense(&run(&a, 5, &READ1, &[]).await), (0x06, 0x3f0e));
        assert_eq!(run(&a, 5, &READ1, &[]).await.status, 0);
        // B's map did not change: no unit attention, no revocation.
        assert_eq!(run(&b, 0, &TUR, &[]).await.status, 0);
        assert!(!b.is_revoked() && !a.is_revoked());

        // Removing a LUN from the group unmaps it for everyone who had it.
        cfg.luns.remove(&10);
        s.group.reconfigure(cfg.clone());
        assert_eq!(report_luns(&a).await, vec![1, 5]);
        assert_eq!(sense(&run(&a, 0, &READ1, &[]).await), (0x05, 0x2500));

        // Changing B's authentication ends B's session only.
        cfg.acls.get_mut("b").unwrap().auth = Some(chap("b"));
        s.group.reconfigure(cfg.clone());
        assert!(b.is_revoked());
        assert!(!a.is_revoked());
        tokio::time::timeout(std::time::Duration::from_secs(1), b.revoked())
            .await
            .expect("revoked() resolves");
        // A nexus opened with the old admission is refused.
        let stale = Admission { auth: None };
        assert_eq!(
            s.group.open_nexus("b", "b,i,0x2".into(), &stale).err(),
            Some(AccessDenied::AuthChanged("b".into()))
        );

        // Removing A's ACL ends A's session; removing the group refuses
        // new ones.
        cfg.acls.remove("a");
        s.group.reconfigure(cfg);
        assert!(a.is_revoked());
        assert!(s.group.admit("a").is_none());
        let b2 = open(&s.group, "b");
        s.group.remove();
        assert!(b2.is_revoked());
        let adm = s.group.admit("b").unwrap();
        assert_eq!(
            s.group.open_nexus("b", "b,i,0x3".into(), &adm).err(),
            Some(AccessDenied::Removed)
        );
    }

    #[tokio::test]
    async fn demo_mode_read_only_and_explicit_acls() {
        let lu = mem_lu(64, 512);
        let mut cfg = PortGroupConfig::demo(
            [(
                3,
                TpgLun {
                    lu: lu.clone(),
                    read_only: false,
                },
            )]
            .into_iter()
            .collect(),
        );
        cfg.mode = TpgMode::Demo { read_only: true };
        cfg.acls.insert(
            "writer".into(),
            NodeAcl {
                auth: None,
                luns: [(
                    0,
                    LunMapping {
                        tpg_lun: 3,
                        read_only: false,
                    },
                )]
                .into_iter()
                .collect(),
            },
        );
        let g = PortGroup::new(test_port(), cfg);
        let anyone = open(&g, "anyone");
        let writer = open(&g, "writer");
        assert_eq!(report_luns(&anyone).await, vec![3]);
        assert_eq!(report_luns(&writer).await, vec![0]);
        clear_ua(&anyone, 3).await;
        clear_ua(&writer, 0).await;
        assert_eq!(
            sense(&run(&anyone, 3, &WRITE1, &[0u8; 512]).await),
            (0x07, 0x2700)
        );
        assert_eq!(run(&writer, 0, &WRITE1, &[0u8; 512]).await.status, 0);
        assert_eq!(g.nexus_count(), 2);
        drop(anyone);
        assert_eq!(g.nexus_count(), 1);
    }

    #[tokio::test]
    async fn removing_a_lun_with_io_in_flight_completes_the_io() {
        use crate::testutil::MemStore;
        let store = Arc::new(MemStore::new(64, 512, 512, true));
        let lu = LogicalUnit::new(crate::LuConfig::new("gated", store.clone()));
        let luns: BTreeMap<u64, TpgLun> = [(
            0,
            TpgLun {
                lu: lu.clone(),
                read_only: false,
            },
        )]
        .into_iter()
        .collect();
        let g = PortGroup::new(test_port(), PortGroupConfig::demo(luns));
        let n = open(&g, "a");
        clear_ua(&n, 0).await;
        // A READ held inside the backstore...
        let (tx, rx) = std::sync::mpsc::channel();
        *store.gate.lock().unwrap() = Some(rx);
        let p = n.prepare(cmd(0, &READ1)).map_err(|_| ()).unwrap();
        let running = tokio::spawn(p.execute(Vec::new()));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // ...while the LUN is removed from the group.
        g.reconfigure(PortGroupConfig::demo(BTreeMap::new()));
        drop(lu);
        assert!(n.luns().luns.is_empty());
        tx.send(()).unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(2), running)
            .await
            .expect("the READ completes")
            .unwrap();
        assert!(
            matches!(r, crate::api::ExecOutcome::Done(ref r) if r.status == 0 && r.data.len() == 512)
        );
        // New commands find no LUN.
        assert_eq!(sense(&run(&n, 0, &READ1, &[]).await), (0x05, 0x2500));
    }

    #[test]
    fn which_authentication_applies() {
        let mut cfg = PortGroupConfig::demo(BTreeMap::new());
        cfg.auth = Some(chap("group"));
        cfg.acls.insert(
            "own".into(),
            NodeAcl {
                auth: Some(chap("own")),
                luns: BTreeMap::new(),
            },
        );
        cfg.acls.insert(
            "plain".into(),
            NodeAcl {
                auth: None,
                luns: BTreeMap::new(),
            },
        );
        let user = |who: &str, c: &PortGroupConfig| {
            c.admission(who)
                .map(|a| a.auth().map(|a| a.initiator.user.clone()))
        };
        // Demo mode: the group's CHAP for anyone without an ACL; an ACL's
        // own CHAP wins; an ACL without one falls back to the group's.
        assert_eq!(user("anyone", &cfg), Some(Some("group".into())));
        assert_eq!(user("own", &cfg), Some(Some("own".into())));
        assert_eq!(user("plain", &cfg), Some(Some("group".into())));
        cfg.mode = TpgMode::Acl;
        assert_eq!(user("anyone", &cfg), None);
        cfg.auth = None;
        assert_eq!(user("plain", &cfg), Some(None));
    }
}
