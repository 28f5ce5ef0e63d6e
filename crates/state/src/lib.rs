//! berth-state
