//! Pausing a container: the v1 freezer controller, or cgroup2's cgroup.freeze.

use crate::{Cgroup, CgroupError};

impl Cgroup {
    /// Freeze every process in the cgroup, waiting until the kernel says it is frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        Err(CgroupError::NoFreezer)
    }

    /// Thaw a frozen cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        Err(CgroupError::NoFreezer)
    }

    /// Whether the cgroup is frozen (false when there is no freezer).
    pub fn is_frozen(&self) -> bool {
        false
    }
}
