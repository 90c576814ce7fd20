pub mod config;
pub mod serve;
pub mod state;
