//! berth-backends
