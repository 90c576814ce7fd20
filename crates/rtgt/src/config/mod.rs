//! The configuration: one model ([`model`]) that the TOML file
//! ([`file`], [`toml_text`], [`preserve`]), the control API's JSON and its
//! OpenAPI schema, the CLI and the importers all read and write; every rule
//! about it in one place ([`validate`]); the syntax of single values
//! ([`values`]); two configurations compared object by object ([`diff`]).
//!
//! A change made through the API is checked by exactly the rules a file
//! is, and what is saved always loads.

pub mod diff;
pub mod file;
pub mod model;
pub mod preserve;
pub mod toml_text;
pub mod validate;
pub mod values;

#[cfg(test)]
mod tests;

/// docs/config.md, generated from the model (and the check the generated
/// docs share).
#[doc(hidden)]
pub mod reference;

pub use diff::{diff, Change, ChangeOp, Obj};
pub use file::{demo, load, parse, read, ConfigError};
pub use model::*;
pub use values::*;
