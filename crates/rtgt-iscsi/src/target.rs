//! The iSCSI fabric's view of the configuration: targets, their portal
//! groups, portals and LUN maps. Built by the daemon from its config model
//! and swapped whole on live changes.

use std::net::SocketAddr;
use std::sync::Arc;

use rtgt_scsi::{LunMap, TargetPort};

/// A target portal group: a set of portals and what initiators see there.
#[derive(Clone)]
pub struct PortalGroup {
    pub tag: u16,
    pub portals: Vec<SocketAddr>,
    pub luns: Arc<LunMap>,
    /// Any initiator may log in (no ACLs).
    pub open_access: bool,
    /// Initiator names allowed when `open_access` is false.
    pub allowed_initiators: Vec<String>,
    /// The SCSI target port this group forms.
    pub port: Arc<TargetPort>,
}

/// One iSCSI target (an IQN).
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub alias: Option<String>,
    pub groups: Vec<PortalGroup>,
}

impl Target {
    /// The portal group that serves a connection which arrived on
    /// `local`: the group listing that address (or its port on a wildcard
    /// address).
    pub fn group_for(&self, local: SocketAddr) -> Option<&PortalGroup> {
        self.groups.iter().find(|g| {
            g.portals
                .iter()
                .any(|p| *p == local || (p.ip().is_unspecified() && p.port() == local.port()))
        })
    }
}

/// Every target the fabric serves.
#[derive(Clone, Default)]
pub struct Targets {
    pub targets: Vec<Target>,
}

impl Targets {
    pub fn find(&self, name: &str) -> Option<&Target> {
        // iSCSI names are case-insensitive (RFC 3722 normalises to lower case).
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

/// Build the SCSI target port of a portal group.
pub fn target_port(target_name: &str, tag: u16, relative_port_id: u16) -> Arc<TargetPort> {
    Arc::new(TargetPort {
        name: format!("{},t,0x{:04x}", target_name, tag),
        target_name: target_name.to_string(),
        relative_port_id,
        port_group: tag,
    })
}
