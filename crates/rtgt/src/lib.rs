pub mod config;
pub mod model;
pub mod serve;
pub mod state;
