//! berth-bundle
