pub mod config;
pub mod serve;
