//! berth-linux
