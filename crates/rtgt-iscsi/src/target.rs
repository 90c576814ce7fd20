//! The iSCSI fabric's view of the configuration: targets, their portal
//! groups and portals, discovery authentication. Built by the daemon from
//! its model and swapped whole on live changes; who may use a group, and
//! which LUNs each initiator sees, is the core's access model
//! ([`rtgt_scsi::access::PortGroup`]), shared with every other fabric.

use std::net::SocketAddr;
use std::sync::Arc;

use rtgt_scsi::access::{ChapAuth, PortGroup};
use rtgt_scsi::TargetPort;

use crate::chap::ChapSettings;

/// A target portal group: a set of portals and the core's port group
/// behind them.
#[derive(Clone)]
pub struct PortalGroup {
    pub tag: u16,
    pub portals: Vec<SocketAddr>,
    pub group: Arc<PortGroup>,
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

/// Every target the fabric serves, and the fabric-wide settings that may
/// change with them.
#[derive(Clone, Default)]
pub struct Targets {
    pub targets: Vec<Target>,
    /// CHAP required of discovery sessions.
    pub discovery_auth: Option<ChapAuth>,
    /// CHAP algorithms and the shortest initiator challenge accepted.
    pub chap: ChapSettings,
}

impl Targets {
    pub fn find(&self, name: &str) -> Option<&Target> {
        // iSCSI names are case-insensitive (RFC 3722 normalises to lower case).
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

/// The name the core's access model knows an iSCSI initiator by: iSCSI
/// names compare case-insensitively, the core compares exactly.
pub fn initiator_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Build the SCSI target port of a portal group, a member of the ALUA
/// target port group `group`.
pub fn target_port(
    target_name: &str,
    tag: u16,
    relative_port_id: u16,
    group: std::sync::Arc<rtgt_scsi::alua::TargetPortGroup>,
) -> TargetPort {
    TargetPort {
        name: format!("{},t,0x{:04x}", target_name, tag),
        target_name: target_name.to_string(),
        relative_port_id,
        group,
    }
}
