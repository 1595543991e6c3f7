//! oxcd server.

pub mod config;
pub mod tls;
pub mod logging;
