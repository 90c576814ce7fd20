//! The access model, shared by every fabric: target port groups in demo or
//! ACL mode, node ACLs with their mapped LUNs, and authentication settings.

pub mod auth;

pub use auth::{AuthError, ChapAuth, Credential, Secret};
