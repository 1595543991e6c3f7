//! oxcd server.

pub mod config;
