pub mod config;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod serve;
pub mod state;
