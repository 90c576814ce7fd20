//! The access model, shared by every fabric: target port groups in demo or
//! ACL mode, node ACLs with their mapped LUNs, and authentication settings.
//! A fabric asks a [`PortGroup`] whether an initiator may log in (and with
//! which authentication), then opens the initiator's nexus through it; the
//! nexus sees exactly the LUNs its map gives it, and nothing reaches a
//! logical unit by any other route.

pub mod auth;
pub mod port_group;

pub use auth::{find_secret_in_both_roles, AuthError, ChapAuth, Credential, RoleClash, Secret};
pub use port_group::{
    AccessDenied, Admission, LunMapping, NodeAcl, PortGroup, PortGroupConfig, TpgLun, TpgMode,
};
