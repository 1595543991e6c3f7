//! oxcd storage.
