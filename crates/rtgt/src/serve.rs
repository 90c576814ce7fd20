//! `rtgt serve`: open the backstores, bind the portals, run the fabric,
//! re-read the configuration on SIGHUP and apply only what changed, and
//! shut down cleanly on SIGINT / SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rtgt_backstore::{
    Backstore, BlockIo, FaultOp, FaultRule, Faulty, FileIo, FileIoOptions, RamDisk,
};
use rtgt_iscsi::server::{self, Server, Settings};
use rtgt_iscsi::target::{self, PortalGroup, Target, Targets};
use rtgt_scsi::access::{LunMapping, NodeAcl, PortGroup, PortGroupConfig, TpgLun, TpgMode};
use rtgt_scsi::alua::{Cause, TargetPortGroup, Tpgs};
use rtgt_scsi::{LogicalUnit, LuConfig};
use rtgt_vhost::SocketServer;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, BackstoreDoc, BackstoreKind, Change, Doc, TpgDoc};
use crate::model::{self, CredentialAt, Model};

/// Open one backstore as its spec describes.
pub fn open_backstore(name: &str, b: &BackstoreDoc) -> Result<Arc<dyn Backstore>> {
    let path = b.path.clone().unwrap_or_default();
    let store: Arc<dyn Backstore> = match b.kind {
        BackstoreKind::Ramdisk => Arc::new(
            RamDisk::try_new(b.size.map_or(0, |s| s.0), b.block_size())
                .with_context(|| format!("backstore {name:?}"))?,
        ),
        BackstoreKind::Fileio => Arc::new(
            FileIo::open(FileIoOptions {
                path: path.clone(),
                size: b.size.map(|s| s.0),
                block_size: b.block_size(),
                write_back: b.write_back.unwrap_or(true),
            })
            .with_context(|| format!("backstore {name:?}"))?,
        ),
        BackstoreKind::Blockio => {
            Arc::new(BlockIo::open(&path).with_context(|| format!("backstore {name:?}"))?)
        }
        BackstoreKind::Rbd => {
            rtgt_rbd::open(b.rbd_options()).with_context(|| format!("backstore {name:?}"))?
        }
    };
    let Some(f) = &b.faults else {
        return Ok(store);
    };
    tracing::warn!(
        "backstore {name:?} injects faults ({} rules, {} ms latency)",
        f.rule.len(),
        f.latency_ms
    );
    let bs = store.block_size() as u64;
    let rules = f
        .rule
        .iter()
        .map(|r| FaultRule {
            op: match r.op {
                config::FaultOp::Read => FaultOp::Read,
                config::FaultOp::Write => FaultOp::Write,
                config::FaultOp::Any => FaultOp::Any,
            },
            offset: r.lba.saturating_mul(bs),
            len: r.blocks.saturating_mul(bs),
            errno: config::fault_errno(&r.error).unwrap_or(libc::EIO),
        })
        .collect();
    Ok(Arc::new(Faulty::new(
        store,
        rules,
        Duration::from_millis(f.latency_ms),
    )))
}

/// An RBD image's shared reservation state as the core's seam.
struct RbdReservations(rtgt_rbd::SharedState);

impl rtgt_scsi::SharedPrStore for RbdReservations {
    fn read(&self) -> std::io::Result<(u64, Option<Vec<u8>>)> {
        let (v, data) = self.0.read()?;
        Ok((v, (!data.is_empty()).then_some(data)))
    }
    fn commit(&self, version: u64, data: &[u8]) -> std::io::Result<Option<u64>> {
        self.0.commit(version, data)
    }
    fn watch(&self, changed: Box<dyn Fn() + Send + Sync>) {
        if let Err(e) = self.0.watch(changed) {
            tracing::error!(state = %self.0.describe(), "cannot watch the shared reservation state (changes through other gateways are seen only at the next PERSISTENT RESERVE OUT here): {e}");
        }
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// A backstore and the logical unit over it.
struct Opened {
    spec: BackstoreDoc,
    store: Arc<dyn Backstore>,
    lu: Arc<LogicalUnit>,
}

/// Where a wanted portal address is served from.
enum Slot {
    /// The listener at this index of `Running::listeners`.
    Running(usize),
    Fresh(tokio::net::TcpListener),
}

/// A bound portal and its accept loop.
struct Listener {
    actual: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running target: what the applied model opened and bound.
struct Running {
    server: Arc<Server>,
    state: Option<Arc<dyn rtgt_scsi::StateStore>>,
    /// `--listen`: every group is served on these instead of its portals.
    listen: Vec<SocketAddr>,
    stores: BTreeMap<String, Opened>,
    groups: BTreeMap<(String, u16), Arc<PortGroup>>,
    relative_ports: BTreeMap<(String, u16), u16>,
    /// ALUA target port groups by ID (kept across changes: their ports
    /// hold them).
    alua: BTreeMap<u16, Arc<TargetPortGroup>>,
    /// Told when an initiator sets a state with SET TARGET PORT GROUPS, so
    /// that it is persisted (a flood of them coalesces into one save).
    explicit_changes: Arc<tokio::sync::Notify>,
    /// With the address asked for (port 0 stays 0 here; `--listen` may
    /// ask for the same one twice).
    listeners: Vec<(SocketAddr, Listener)>,
    /// vhost-user-scsi controllers by name.
    vhosts: BTreeMap<String, Vhost>,
}

/// A running vhost-user-scsi controller.
struct Vhost {
    spec: config::VhostDoc,
    group: Arc<PortGroup>,
    server: SocketServer,
}

/// A controller's socket bound, its port group still to be made: the
/// socket's front-ends are admitted once it is in the slot.
struct FreshVhost {
    server: SocketServer,
    slot: Arc<std::sync::OnceLock<Arc<PortGroup>>>,
}

impl Vhost {
    /// Same socket, queues, names, port and ALUA group: only its LUNs may
    /// differ, which the running controller takes live.
    fn keeps(&self, spec: &config::VhostDoc) -> bool {
        config::VhostDoc {
            lun: spec.lun.clone(),
            ..self.spec.clone()
        } == *spec
    }
}

impl Running {
    fn open_lu(&self, name: &str, spec: &BackstoreDoc) -> Result<Opened> {
        let store = open_backstore(name, spec)?;
        let mut lu = LuConfig::new(name, store.clone());
        lu.read_only = spec.read_only;
        lu.state = self.state.clone();
        if let Some(thin) = spec.thin {
            lu.thin = thin;
        }
        lu.removable = spec.removable;
        lu.physical_block_size = spec.physical_block_size;
        lu.sanitize_bytes_per_sec = spec.sanitize_rate.map_or(0, |r| r.0);
        for (field, value) in [
            (&mut lu.vendor, &spec.vendor),
            (&mut lu.product, &spec.product),
            (&mut lu.revision, &spec.revision),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
        lu.serial = spec.serial();
        lu.naa = spec.naa().map_err(anyhow::Error::msg)?;
        if spec.kind == BackstoreKind::Rbd {
            // Gateways on one image enforce one reservation state.
            let st = rtgt_rbd::SharedState::open(&spec.rbd_options())
                .with_context(|| format!("backstore {name:?}: the shared reservation state"))?;
            lu.shared_pr = Some(Arc::new(RbdReservations(st)));
        }
        let lu = LogicalUnit::open(lu).with_context(|| format!("backstore {name:?}"))?;
        // A medium resized from elsewhere (an RBD image): CAPACITY DATA
        // HAS CHANGED, as for a resize through rtgt.
        let weak = Arc::downgrade(&lu);
        store.watch_capacity(Box::new(move || {
            if let Some(lu) = weak.upgrade() {
                lu.capacity_changed();
            }
        }));
        Ok(Opened {
            spec: spec.clone(),
            store,
            lu,
        })
    }

    /// Make the running target serve `new`. Everything that can fail
    /// (opening backstores, binding portals) is done first: a model that
    /// cannot be served changes nothing.
    async fn apply(&mut self, new: &Model) -> Result<()> {
        // Portals.
        let overridden = !self.listen.is_empty();
        let wanted = if overridden {
            self.listen.clone()
        } else {
            new.portals()
        };
        if wanted.is_empty() && new.doc.vhost.is_empty() {
            bail!("no portals to listen on and no vhost controllers: give a target portal group a portal, or use --listen");
        }
        // A network portal belongs to one portal group of a target (RFC 7143
        // 4.4.1): two tpgs of one target both moved onto the --listen
        // portals would be one path claiming to be two.
        if overridden {
            if let Some(t) = new.doc.target.iter().find(|t| t.tpg.len() > 1) {
                bail!(
                    "target {} has {} tpgs, each a path of its own, but --listen serves every tpg on the same portals: give each tpg its `portals` and start without --listen",
                    t.iqn,
                    t.tpg.len()
                );
            }
        }
        // Each wanted address keeps a running listener asked for with it,
        // or gets a new one.
        let mut claimed = vec![false; self.listeners.len()];
        let mut slots: Vec<(SocketAddr, Slot)> = Vec::new();
        let mut bound = Vec::new();
        for a in &wanted {
            let running = self
                .listeners
                .iter()
                .enumerate()
                .position(|(i, (w, _))| !claimed[i] && w == a);
            let (slot, actual) = match running {
                Some(i) => {
                    claimed[i] = true;
                    (Slot::Running(i), self.listeners[i].1.actual)
                }
                None => {
                    let l = server::bind(*a)
                        .await
                        .with_context(|| format!("cannot listen on {a}"))?;
                    let actual = l.local_addr()?;
                    (Slot::Fresh(l), actual)
                }
            };
            slots.push((*a, slot));
            bound.push((*a, actual));
        }
        let served_on = new.served_on(&bound, overridden);

        // Backstores: keep those whose spec is unchanged, grow those that
        // only grew, open the others.
        let mut opened = BTreeMap::new();
        let mut grown = Vec::new();
        for spec in &new.doc.backstore {
            let name = &spec.name;
            match self.stores.get(name) {
                Some(o) if o.spec == *spec => {}
                Some(o) if o.spec.same_except_size(spec) => {
                    let want = spec.size.map_or(0, |s| s.0);
                    if want < o.store.capacity() {
                        bail!(
                            "backstore {name:?}: cannot shrink a LU in use from {} to {want} bytes (it would drop data); remove its LUNs first",
                            o.store.capacity()
                        );
                    }
                    let store = o.store.clone();
                    tokio::task::spawn_blocking(move || store.grow(want))
                        .await?
                        .with_context(|| {
                            format!("backstore {name:?}: cannot grow to {want} bytes")
                        })?;
                    grown.push(name.clone());
                }
                _ => {
                    opened.insert(name.clone(), self.open_lu(name, spec)?);
                }
            }
        }

        // vhost-user-scsi sockets: bound last of what can fail (binding
        // one may replace the socket file of the controller it replaces).
        let mut fresh_vhosts = BTreeMap::new();
        for v in &new.doc.vhost {
            let name = v.name();
            if self.vhosts.get(&name).is_some_and(|r| r.keeps(v)) {
                continue;
            }
            let slot = Arc::new(std::sync::OnceLock::<Arc<PortGroup>>::new());
            let initiator = v.initiator();
            let s = slot.clone();
            let open: rtgt_vhost::OpenNexus = Box::new(move || {
                let group = s.get()?;
                let admission = group.admit(&initiator)?;
                group
                    .open_nexus(&initiator, initiator.clone(), &admission)
                    .ok()
            });
            let ours = self.vhosts.values().any(|r| r.spec.socket == v.socket);
            let server = SocketServer::start(
                &v.socket,
                usize::from(v.num_queues()),
                // the per-CPU runtimes iSCSI connections run on, or this
                // one when there is one CPU
                rtgt_vhost::Runtimes::new(
                    self.server.runtimes(),
                    tokio::runtime::Handle::current(),
                ),
                open,
                ours,
            )
            .with_context(|| {
                format!(
                    "vhost controller {name:?}: cannot serve {}",
                    v.socket.display()
                )
            })?;
            fresh_vhosts.insert(name, FreshVhost { server, slot });
        }

        // Nothing can fail from here on.
        for name in grown {
            if let (Some(o), Some(spec)) = (self.stores.get_mut(&name), new.doc.backstore(&name)) {
                o.spec = spec.clone();
                // CAPACITY DATA HAS CHANGED for every nexus that reaches it.
                o.lu.capacity_changed();
            }
        }
        let mut dropped: Vec<(String, Opened)> = Vec::new();
        for (name, o) in std::mem::take(&mut self.stores) {
            if new.doc.backstore(&name).is_some() && !opened.contains_key(&name) {
                self.stores.insert(name, o);
            } else {
                dropped.push((name, o));
            }
        }
        self.stores.extend(opened);

        self.relative_ports = model::assign_relative_ports(new, &self.relative_ports);
        // ALUA target port groups: the ones still named are kept.
        let mut alua = BTreeMap::new();
        for (id, state, preferred) in alua_groups(&new.doc) {
            if alua.contains_key(&id) {
                continue;
            }
            let group = match self.alua.get(&id) {
                Some(a) => a.clone(),
                None => {
                    let a = TargetPortGroup::new(id, state.core(), preferred);
                    self.forward_explicit_changes(&a);
                    a
                }
            };
            alua.insert(id, group);
        }
        let mut groups = BTreeMap::new();
        let mut targets = Vec::new();
        for t in &new.doc.target {
            let key = t.iqn.to_ascii_lowercase();
            let mut portal_groups = Vec::new();
            for g in &t.tpg {
                let tag = g.tag;
                let id = (key.clone(), tag);
                let rtpi = self.relative_ports.get(&id).copied().unwrap_or(tag);
                let config = self.group_config(new, &key, g);
                let tpg = alua[&g.alua_group_id()].clone();
                let group = match self.groups.remove(&id) {
                    Some(old)
                        if old.port().relative_port_id == rtpi
                            && Arc::ptr_eq(&old.port().group, &tpg) =>
                    {
                        old.reconfigure(config);
                        old
                    }
                    old => {
                        if let Some(old) = old {
                            old.remove();
                        }
                        PortGroup::new(target::target_port(&t.iqn, tag, rtpi, tpg), config)
                    }
                };
                portal_groups.push(PortalGroup {
                    tag,
                    portals: served_on.get(&id).cloned().unwrap_or_default(),
                    group: group.clone(),
                });
                groups.insert(id, group);
            }
            targets.push(Target {
                name: t.iqn.clone(),
                alias: t.alias.clone(),
                groups: portal_groups,
            });
        }
        // Groups (and targets) no longer configured end their sessions.
        for (_, g) in std::mem::replace(&mut self.groups, groups) {
            g.remove();
        }
        // ALUA settings and states, once the ports export what they now
        // do: a state change reaches every nexus of the LUs concerned.
        let tpgs = if new.doc.alua.explicit {
            Tpgs::Both
        } else {
            Tpgs::Implicit
        };
        let settings = alua_groups(&new.doc);
        for (id, a) in &alua {
            let Some((_, state, preferred)) = settings.iter().find(|(i, ..)| i == id) else {
                continue;
            };
            a.set_tpgs(tpgs);
            a.set_transition_time(Duration::from_millis(new.doc.alua.transition_ms.into()));
            a.set_preferred(*preferred);
            a.set_state(state.core(), Cause::Implicit);
        }
        self.alua = alua;
        self.apply_vhosts(new, fresh_vhosts).await;
        self.server.set_targets(Targets {
            targets,
            discovery_auth: new.auth(&CredentialAt::Discovery),
            chap: new.chap(),
        });

        // Listeners: start the new ones, stop those no longer wanted.
        let mut old: Vec<Option<(SocketAddr, Listener)>> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(Some)
            .collect();
        for (a, slot) in slots {
            match slot {
                Slot::Running(i) => {
                    if let Some(l) = old.get_mut(i).and_then(Option::take) {
                        self.listeners.push(l);
                    }
                }
                Slot::Fresh(l) => {
                    let actual = l.local_addr()?;
                    let (stop, rx) = watch::channel(false);
                    let task = tokio::spawn(self.server.clone().serve(l, rx));
                    println!("rtgt: listening on {actual}");
                    self.listeners.push((a, Listener { actual, stop, task }));
                }
            }
        }
        for (_, l) in old.into_iter().flatten() {
            let _ = l.stop.send(true);
            let _ = l.task.await;
            tracing::info!("stopped listening on {}", l.actual);
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();

        // Backstores no longer used: flushed and closed once the commands
        // still running on them are done (they hold their own references).
        for (name, o) in dropped {
            flush(&name, o.store).await;
        }
        Ok(())
    }

    /// Serve the model's vhost-user-scsi controllers: those kept take their
    /// new LUNs live (the guest is told on the event queue), the fresh ones
    /// replace those they stand for, the others stop.
    async fn apply_vhosts(&mut self, new: &Model, mut fresh: BTreeMap<String, FreshVhost>) {
        let mut old = std::mem::take(&mut self.vhosts);
        let mut stopping = Vec::new();
        for v in &new.doc.vhost {
            let name = v.name();
            let config = self.vhost_group_config(v);
            if let Some(f) = fresh.remove(&name) {
                let rtpi = self.relative_ports.get(&v.port_key()).copied().unwrap_or(1);
                let wwn = v.wwn();
                let port = rtgt_scsi::TargetPort {
                    name: wwn.clone(),
                    target_name: wwn,
                    relative_port_id: rtpi,
                    group: self.alua[&v.alua_group_id()].clone(),
                };
                let group = PortGroup::new(port, config);
                let _ = f.slot.set(group.clone());
                if let Some(o) = old.remove(&name) {
                    stopping.push(o);
                }
                tracing::info!(
                    "vhost controller {name:?} on {} (initiator {})",
                    v.socket.display(),
                    v.initiator()
                );
                self.vhosts.insert(
                    name,
                    Vhost {
                        spec: v.clone(),
                        group,
                        server: f.server,
                    },
                );
            } else if let Some(mut r) = old.remove(&name) {
                r.group.reconfigure(config);
                let had: BTreeMap<u64, &str> = r
                    .spec
                    .lun
                    .iter()
                    .map(|l| (l.lun, l.backstore.as_str()))
                    .collect();
                let has: BTreeMap<u64, &str> = v
                    .lun
                    .iter()
                    .map(|l| (l.lun, l.backstore.as_str()))
                    .collect();
                for (&lun, b) in &had {
                    if has.get(&lun) != Some(b) {
                        r.server.lun_changed(lun as u16, false);
                    }
                }
                for (&lun, b) in &has {
                    if had.get(&lun) != Some(b) {
                        r.server.lun_changed(lun as u16, true);
                    }
                }
                r.spec = v.clone();
                self.vhosts.insert(name, r);
            }
        }
        stopping.extend(old.into_values());
        for o in stopping {
            o.group.remove();
            let _ = tokio::task::spawn_blocking(move || o.server.stop()).await;
        }
    }

    /// The core's configuration of a vhost controller's port: the VM is
    /// its one initiator and sees every LUN.
    fn vhost_group_config(&self, v: &config::VhostDoc) -> PortGroupConfig {
        PortGroupConfig::demo(self.port_luns(&v.lun))
    }

    /// A port's LUNs as the core takes them (those whose backstore is open).
    fn port_luns(&self, luns: &[config::LunDoc]) -> BTreeMap<u64, TpgLun> {
        luns.iter()
            .filter_map(|l| {
                let o = self.stores.get(&l.backstore)?;
                Some((
                    l.lun,
                    TpgLun {
                        lu: o.lu.clone(),
                        read_only: l.read_only,
                    },
                ))
            })
            .collect()
    }

    /// Send what initiators set on `group` with SET TARGET PORT GROUPS to
    /// be persisted (the task ends with the group).
    fn forward_explicit_changes(&self, group: &Arc<TargetPortGroup>) {
        let mut rx = group.subscribe();
        let tell = self.explicit_changes.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let c = *rx.borrow_and_update();
                if matches!(c.cause, Cause::Explicit { .. }) {
                    tell.notify_one();
                }
            }
        });
    }

    /// The core's configuration of one portal group.
    fn group_config(&self, model: &Model, iqn: &str, g: &TpgDoc) -> PortGroupConfig {
        let luns = self.port_luns(&g.lun);
        let acls = g
            .acl
            .iter()
            .map(|a| {
                let key = a.initiator.to_ascii_lowercase();
                let luns = a
                    .mapped_lun
                    .iter()
                    .map(|m| {
                        (
                            m.mapped_lun,
                            LunMapping {
                                tpg_lun: m.tpg_lun,
                                read_only: m.read_only,
                            },
                        )
                    })
                    .collect();
                let auth = model.auth(&CredentialAt::Acl {
                    iqn: iqn.to_string(),
                    tag: g.tag,
                    initiator: key.clone(),
                });
                (key, NodeAcl { auth, luns })
            })
            .collect();
        PortGroupConfig {
            mode: match g.mode {
                config::TpgMode::Demo => TpgMode::Demo {
                    read_only: g.demo_read_only,
                },
                config::TpgMode::Acl => TpgMode::Acl,
            },
            auth: model.auth(&CredentialAt::Tpg {
                iqn: iqn.to_string(),
                tag: g.tag,
            }),
            luns,
            acls,
        }
    }

    /// End every session, wait for in-flight commands, flush the backstores.
    async fn shutdown(&mut self) {
        for (_, l) in std::mem::take(&mut self.listeners) {
            let _ = l.stop.send(true);
            let _ = l.task.await;
        }
        self.server.shutdown(Duration::from_secs(10)).await;
        for (_, v) in std::mem::take(&mut self.vhosts) {
            v.group.remove();
            let _ = tokio::task::spawn_blocking(move || v.server.stop()).await;
        }
        for (name, o) in std::mem::take(&mut self.stores) {
            flush(&name, o.store).await;
        }
    }
}

/// Every ALUA target port group the document names, with its state and
/// preference (each port in one is given the same, see validate), tpgs
/// first, then vhost controllers.
fn alua_groups(doc: &Doc) -> Vec<(u16, config::AluaState, bool)> {
    doc.target
        .iter()
        .flat_map(|t| &t.tpg)
        .map(|g| (g.alua_group_id(), g.alua_state, g.alua_preferred))
        .chain(
            doc.vhost
                .iter()
                .map(|v| (v.alua_group_id(), v.alua_state, v.alua_preferred)),
        )
        .collect()
}

async fn flush(name: &str, store: Arc<dyn Backstore>) {
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("flushing backstore {name}: {e}"),
        Err(e) => tracing::error!("flushing backstore {name}: {e}"),
    }
}

/// What runs, the document it was made from, and where changes are saved:
/// the state the control API and SIGHUP change, one change at a time.
pub struct Live {
    running: Running,
    /// What runs: the configuration and the secrets it was served with.
    model: Model,
    /// `--config`: changes are saved here.
    config_path: Option<PathBuf>,
    /// The text last saved there (see [`Live::text_to_save`]).
    saved: Option<Saved>,
}

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeError {
    /// The document would not load from a file either.
    Invalid(String),
    /// It is valid but cannot be served (a portal that cannot be bound, a
    /// backstore that cannot be opened); nothing changed.
    Refused(String),
    /// It could not be saved, so it was undone.
    Unsaved(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Invalid(m) | ChangeError::Refused(m) | ChangeError::Unsaved(m) => {
                f.write_str(m)
            }
        }
    }
}

impl Live {
    pub fn doc(&self) -> &Doc {
        &self.model.doc
    }

    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.running.server
    }

    /// Sessions open on each portal group, by (lower-cased IQN, tag).
    pub fn session_counts(&self) -> BTreeMap<(String, u16), usize> {
        self.running
            .groups
            .iter()
            .map(|(k, g)| (k.clone(), g.nexus_count()))
            .collect()
    }

    /// The addresses each portal group is served on now, by (lower-cased
    /// IQN, tag): its portals as bound (port 0 resolved), or the
    /// `--listen` addresses that replace them.
    pub fn listening(&self) -> BTreeMap<(String, u16), Vec<SocketAddr>> {
        let targets = self.running.server.targets();
        targets
            .targets
            .iter()
            .flat_map(|t| {
                t.groups
                    .iter()
                    .map(move |g| ((t.name.to_ascii_lowercase(), g.tag), g.portals.clone()))
            })
            .collect()
    }

    /// The access state of each ALUA target port group now, by ID.
    pub fn alua_states(&self) -> BTreeMap<u16, rtgt_scsi::alua::AccessState> {
        self.running
            .alua
            .iter()
            .map(|(id, g)| (*id, g.state()))
            .collect()
    }

    /// Each vhost controller's state now, by name: whether a VM is
    /// attached, and the relative port ID.
    pub fn vhost_state(&self) -> BTreeMap<String, (bool, u16)> {
        self.running
            .vhosts
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    (v.server.connected(), v.group.port().relative_port_id),
                )
            })
            .collect()
    }

    /// Whether `--listen` replaced the file's portals.
    pub fn portals_overridden(&self) -> bool {
        !self.running.listen.is_empty()
    }

    /// Capacity and block size of each open backstore, by name.
    pub fn backstore_state(&self) -> BTreeMap<String, (u64, u32)> {
        self.running
            .stores
            .iter()
            .map(|(n, o)| (n.clone(), (o.store.capacity(), o.store.block_size())))
            .collect()
    }

    /// Make the target serve `new`, changing only what differs, and save
    /// it when `save` (and a `--config` file) says so. Returns what
    /// changed; an identical document touches nothing.
    pub async fn replace(&mut self, mut new: Doc, save: bool) -> Result<Vec<Change>, ChangeError> {
        new.canonicalize();
        if new == self.model.doc {
            return Ok(Vec::new());
        }
        let model = new.check().map_err(ChangeError::Invalid)?;
        self.replace_model(model, save).await
    }

    /// [`Live::replace`] with a configuration already checked. Whether to
    /// act is decided on the whole model, secrets read from their files
    /// included (a changed password file is a change); the object by
    /// object difference only reports what that changes.
    pub async fn replace_model(
        &mut self,
        model: Model,
        save: bool,
    ) -> Result<Vec<Change>, ChangeError> {
        if model == self.model {
            return Ok(Vec::new());
        }
        let changes = config::diff(&self.model.doc, &model.doc);
        self.running
            .apply(&model)
            .await
            .map_err(|e| ChangeError::Refused(format!("{e:#}")))?;
        let old = std::mem::replace(&mut self.model, model);
        if save {
            if let Err(e) = self.save() {
                // What runs must be what comes back after a restart: undo.
                if let Err(e2) = self.running.apply(&old).await {
                    tracing::error!("undoing an unsaved change failed: {e2:#}");
                }
                self.model = old;
                return Err(ChangeError::Unsaved(e));
            }
        }
        Ok(changes)
    }

    /// The ALUA states initiators set with SET TARGET PORT GROUPS become
    /// the configuration's (and are saved), so that a restart keeps them.
    pub async fn persist_alua_states(&mut self) {
        let mut doc = self.model.doc.clone();
        let mut changed = false;
        let ports = doc
            .target
            .iter_mut()
            .flat_map(|t| &mut t.tpg)
            .map(|g| (g.alua_group_id(), &mut g.alua_state))
            .chain(
                doc.vhost
                    .iter_mut()
                    .map(|v| (v.alua_group_id(), &mut v.alua_state)),
            );
        for (id, state) in ports {
            let Some(a) = self.running.alua.get(&id) else {
                continue;
            };
            if let Some(s) = config::AluaState::from_core(a.wanted()) {
                if s != *state {
                    *state = s;
                    changed = true;
                }
            }
        }
        if changed {
            if let Err(e) = self.replace(doc, true).await {
                tracing::error!(
                    "cannot persist the ALUA states set by SET TARGET PORT GROUPS: {e}"
                );
            }
        }
    }

    /// Save the running document to the `--config` file.
    pub fn save(&mut self) -> Result<(), String> {
        let Some(path) = self.config_path.clone() else {
            return Ok(());
        };
        let text = self.text_to_save(&path);
        crate::save::save(&path, &text)
            .map_err(|e| format!("cannot save {}: {e}", path.display()))?;
        Ok(())
    }

    /// The configuration as it goes into `path`: laid into the file's
    /// current text (its comments and layout kept, see
    /// [`config::preserve`]) when that reads back as exactly this
    /// configuration, else the canonical text, so nothing is ever saved
    /// that would load differently. The file as last saved is kept parsed,
    /// so a save parses it again only when someone else changed it.
    fn text_to_save(&mut self, path: &std::path::Path) -> String {
        let canonical = self.model.doc.to_toml(true);
        let Ok(old) = std::fs::read_to_string(path) else {
            self.saved = None;
            return canonical;
        };
        // An empty file has nothing of anyone's either.
        if old.trim().is_empty() {
            self.saved = Some(Saved {
                text: canonical.clone(),
                parsed: None,
            });
            return canonical;
        }
        let mut parsed = match self.saved.take() {
            // The file is what rtgt wrote and holds nothing of anyone
            // else's: the canonical text is all there is to keep (and a
            // thousand changes through the API cost no parsing).
            Some(Saved { text, parsed: None }) if text == old => {
                self.saved = Some(Saved {
                    text: canonical.clone(),
                    parsed: None,
                });
                return canonical;
            }
            Some(Saved {
                text,
                parsed: Some(p),
            }) if text == old => p,
            _ => match old.parse::<toml_edit::DocumentMut>() {
                Ok(p) => p,
                Err(_) => return canonical,
            },
        };
        if config::preserve::merge_into(&mut parsed, &canonical).is_none() {
            return canonical;
        }
        let merged = parsed.to_string();
        let same = config::read(path, &merged).is_ok_and(|mut d| {
            d.canonicalize();
            d == self.model.doc
        });
        if !same {
            return canonical;
        }
        self.saved = Some(Saved {
            text: merged.clone(),
            parsed: Some(parsed),
        });
        merged
    }
}

/// The text last saved to the `--config` file, and unless it is the
/// canonical text, the same parsed for the next merge.
struct Saved {
    text: String,
    parsed: Option<toml_edit::DocumentMut>,
}

/// Run the daemon until SIGINT or SIGTERM. With `config_path`, SIGHUP
/// re-reads that file and applies the difference (a file that does not
/// validate changes nothing), and changes made through the control API are
/// saved to it.
pub async fn serve(
    cfg: Model,
    config_path: Option<PathBuf>,
    listen: Vec<SocketAddr>,
    state_dir: Option<PathBuf>,
    settings: Settings,
    control: crate::control::Options,
) -> Result<()> {
    // Persistent state (APTPL) needs a directory; without one the target
    // still runs, and refuses APTPL requests rather than lose them.
    let state: Option<Arc<dyn rtgt_scsi::StateStore>> = match state_dir {
        None => None,
        Some(d) => match crate::state::DirStore::open(&d) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(
                    "state directory {}: {e}; persistent reservations will not survive a restart (APTPL refused)",
                    d.display()
                );
                None
            }
        },
    };
    let explicit_changes = Arc::new(tokio::sync::Notify::new());
    let mut running = Running {
        server: Server::new(Targets::default(), settings)
            .map_err(|e| anyhow::anyhow!("cannot start the connection runtimes: {e}"))?,
        state,
        listen,
        stores: BTreeMap::new(),
        groups: BTreeMap::new(),
        relative_ports: BTreeMap::new(),
        alua: BTreeMap::new(),
        explicit_changes: explicit_changes.clone(),
        listeners: Vec::new(),
        vhosts: BTreeMap::new(),
    };
    running.apply(&cfg).await?;
    // A file that is exactly the canonical text of what it loads as has
    // nothing of its own to keep.
    let saved = Some(Saved {
        text: cfg.doc.to_toml(true),
        parsed: None,
    });
    let live = Arc::new(tokio::sync::Mutex::new(Live {
        running,
        model: cfg,
        config_path: config_path.clone(),
        saved,
    }));
    let control = crate::control::start(live.clone(), control).await?;

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Every portal listens, the control socket answers and a reload
    // (SIGHUP) is handled: ready.
    crate::notify::ready();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                crate::notify::reloading();
                reload(&mut *live.lock().await, config_path.as_deref()).await;
                crate::notify::ready();
            }
            _ = explicit_changes.notified() => {
                live.lock().await.persist_alua_states().await;
            }
        }
    }
    crate::notify::stopping();
    tracing::info!("shutting down");
    control.stop().await;
    live.lock().await.running.shutdown().await;
    Ok(())
}

/// SIGHUP: re-read the file and apply it, or say why not (on stderr, which
/// is where an administrator watching the daemon looks).
async fn reload(live: &mut Live, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        eprintln!("rtgt: SIGHUP ignored: serving the built-in default, no file to re-read");
        return;
    };
    let model = match config::load(path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtgt: reload refused, configuration unchanged: {e}");
            return;
        }
    };
    match live.replace_model(model, false).await {
        Ok(changes) => eprintln!(
            "rtgt: reloaded {} ({} change{})",
            path.display(),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        ),
        Err(e) => eprintln!("rtgt: reload refused, configuration unchanged: {e}"),
    }
}
