//! `rtgt serve`: open the backstores, bind the portals, run the fabric and
//! shut down cleanly on SIGINT / SIGTERM.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rtgt_backstore::{Backstore, BlockIo, FileIo, FileIoOptions, RamDisk};
use rtgt_iscsi::server::{self, Server, Settings};
use rtgt_iscsi::target::{self, PortalGroup, Target, Targets};
use rtgt_scsi::{LogicalUnit, LuConfig, LunMap, MappedLun};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{self, BackstoreKind, Config};

/// The configured path (validation made sure file kinds have one).
fn path_of(b: &config::Backstore) -> PathBuf {
    b.path
        .as_ref()
        .map(|p| p.get_ref().clone())
        .unwrap_or_default()
}

/// Open one backstore as its config describes.
pub fn open_backstore(b: &config::Backstore) -> Result<Arc<dyn Backstore>> {
    let name = b.name.get_ref();
    let block_size = b.block_size.as_ref().map(|s| *s.get_ref()).unwrap_or(512);
    Ok(match b.kind {
        BackstoreKind::Ramdisk => {
            let size = b.size.as_ref().map(|s| s.get_ref().0).unwrap_or(0);
            Arc::new(
                RamDisk::try_new(size, block_size)
                    .with_context(|| format!("backstore {name:?}"))?,
            )
        }
        BackstoreKind::Fileio => {
            let path = path_of(b);
            Arc::new(
                FileIo::open(FileIoOptions {
                    path: path.clone(),
                    size: b.size.as_ref().map(|s| s.get_ref().0),
                    block_size,
                    write_back: b.write_back.unwrap_or(true),
                })
                .with_context(|| format!("backstore {name:?}: cannot open {}", path.display()))?,
            )
        }
        BackstoreKind::Blockio => {
            let path = path_of(b);
            Arc::new(
                BlockIo::open(&path).with_context(|| {
                    format!("backstore {name:?}: cannot open {}", path.display())
                })?,
            )
        }
    })
}

/// Build the fabric's targets from the config (with the bound portals).
pub fn build_targets(cfg: &Config, lus: &HashMap<String, Arc<LogicalUnit>>) -> Result<Targets> {
    let mut targets = Vec::new();
    let mut relative_port = 1u16;
    for t in &cfg.target {
        let name = t.iqn.get_ref().clone();
        let mut groups = Vec::new();
        for g in &t.tpg {
            let tag = *g.tag.get_ref();
            let mut luns = BTreeMap::new();
            for l in &g.lun {
                let lu = lus[l.backstore.get_ref()].clone();
                luns.insert(
                    *l.lun.get_ref(),
                    MappedLun {
                        lu,
                        read_only: l.read_only,
                    },
                );
            }
            let portals = g
                .portals
                .iter()
                .map(|p| config::parse_portal(p.get_ref()).map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            groups.push(PortalGroup {
                tag,
                portals,
                luns: Arc::new(LunMap { luns }),
                open_access: g.open_access,
                allowed_initiators: g
                    .acl
                    .iter()
                    .map(|a| a.initiator.get_ref().clone())
                    .collect(),
                port: target::target_port(&name, tag, relative_port),
            });
            relative_port = relative_port.wrapping_add(1).max(1);
        }
        targets.push(Target {
            name,
            alias: t.alias.clone(),
            groups,
        });
    }
    Ok(Targets { targets })
}

/// Run the daemon until SIGINT or SIGTERM.
pub async fn serve(
    mut cfg: Config,
    listen: Vec<SocketAddr>,
    state_dir: Option<PathBuf>,
    settings: Settings,
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

    // Backstores and their logical units.
    let mut lus = HashMap::new();
    let mut stores = Vec::new();
    for b in &cfg.backstore {
        let store = open_backstore(b)?;
        let mut lu = LuConfig::new(b.name.get_ref(), store.clone());
        lu.read_only = b.read_only;
        lu.state = state.clone();
        if let Some(thin) = b.thin {
            lu.thin = thin;
        }
        lu.removable = b.removable;
        lu.physical_block_size = b.physical_block_size.as_ref().map(|p| *p.get_ref());
        let lu =
            LogicalUnit::open(lu).with_context(|| format!("backstore {:?}", b.name.get_ref()))?;
        lus.insert(b.name.get_ref().clone(), lu);
        stores.push((b.name.get_ref().clone(), store));
    }

    // Bind every distinct portal; `--listen` replaces them all.
    let overridden = !listen.is_empty();
    let wanted: Vec<SocketAddr> = if listen.is_empty() {
        let mut v = Vec::new();
        for t in &cfg.target {
            for g in &t.tpg {
                for p in &g.portals {
                    let a = config::parse_portal(p.get_ref()).map_err(anyhow::Error::msg)?;
                    if !v.contains(&a) {
                        v.push(a);
                    }
                }
            }
        }
        v
    } else {
        listen
    };
    if wanted.is_empty() {
        bail!("no portals to listen on: give a target portal group a portal, or use --listen");
    }
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for a in &wanted {
        let l = server::bind(*a)
            .await
            .with_context(|| format!("cannot listen on {a}"))?;
        let actual = l.local_addr()?;
        bound.push((*a, actual));
        listeners.push(l);
    }
    // Portals with port 0 become the port actually bound.
    for t in &mut cfg.target {
        for g in &mut t.tpg {
            if overridden
                || g.portals.is_empty()
                || !bound.iter().any(|(w, _)| {
                    g.portals
                        .iter()
                        .any(|p| config::parse_portal(p.get_ref()).ok() == Some(*w))
                })
            {
                // Under --listen, and for a group without a bound portal,
                // the group is served on every bound portal.
                g.portals = bound
                    .iter()
                    .map(|(_, a)| toml::Spanned::new(0..0, a.to_string()))
                    .collect();
            } else {
                for p in &mut g.portals {
                    let a = config::parse_portal(p.get_ref()).ok();
                    if let Some((_, actual)) = bound.iter().find(|(w, _)| Some(*w) == a) {
                        *p = toml::Spanned::new(0..0, actual.to_string());
                    }
                }
            }
        }
    }
    let targets = build_targets(&cfg, &lus)?;
    let server = Server::new(targets, settings);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = Vec::new();
    for l in listeners {
        let addr = l.local_addr()?;
        println!("rtgt: listening on {addr}");
        accept_tasks.push(tokio::spawn(server.clone().serve(l, stop_rx.clone())));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    server.shutdown(Duration::from_secs(10)).await;
    for (name, store) in stores {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("flushing backstore {name}: {e}"),
            Err(e) => tracing::error!("flushing backstore {name}: {e}"),
        }
    }
    Ok(())
}
