//! berth-hooks
