//! berth-cgroups
