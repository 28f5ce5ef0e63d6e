//! Checkpoint and restore through CRIU.
