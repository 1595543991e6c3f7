//! oxcd server.

pub mod config;
pub mod tls;
