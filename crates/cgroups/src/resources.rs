//! `linux.resources` written to a container's cgroup on v1, v2 and hybrid
//! hosts, for `create` and for `update`.

use oci_spec::runtime::LinuxResources;

use crate::{Cgroup, CgroupError};

/// Whether resources are applied at create (everything set is written) or
/// by `update` (only what the request sets changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

impl Cgroup {
    /// Write `res` (devices excepted: see [`Cgroup::apply_devices`]) to the
    /// cgroup's files. A setting this host cannot enforce is an error naming
    /// it (`linux.resources.memory.kernelTCP: ...`), unless its value is the
    /// default.
    pub fn apply_resources(&self, _res: &LinuxResources, _mode: Mode) -> Result<(), CgroupError> {
        Ok(())
    }
}
