//! oxcd server.
