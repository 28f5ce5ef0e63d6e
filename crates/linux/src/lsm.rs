//! AppArmor and SELinux labels: `process.apparmorProfile`,
//! `process.selinuxLabel` and `linux.mountLabel`.
//!
//! The labels are written to the init's own /proc attributes (the LSM
//! applies them at the next execve) or added to mount data as `context=`.
//! A label asked for on a host whose LSM is off is an error at plan time:
//! the container never runs less confined than its config says.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::plan::{MountKind, MountStep};
use crate::LinuxError;

/// Which LSMs the host has enabled, and where the init finds the process
/// attributes (a directory of files, so tests can point it elsewhere).
#[derive(Debug, Clone)]
pub struct Host {
    pub apparmor: bool,
    pub selinux: bool,
    /// `/proc/thread-self/attr` in the container (same kernel as the host).
    pub attr_dir: PathBuf,
}

pub const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
pub const SELINUX_FS: &str = "/sys/fs/selinux";

impl Host {
    pub fn detect() -> Host {
        Host {
            apparmor: apparmor_enabled(),
            selinux: selinux_enabled(),
            attr_dir: PathBuf::from("/proc/thread-self/attr"),
        }
    }
}

/// AppArmor is on when the module says so and securityfs exposes it.
pub fn apparmor_enabled() -> bool {
    std::fs::read(APPARMOR_ENABLED).is_ok_and(|v| v.starts_with(b"Y"))
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// SELinux is on when selinuxfs is mounted (its `enforce` file exists,
/// permissive mode included).
pub fn selinux_enabled() -> bool {
    Path::new(SELINUX_FS).join("enforce").exists()
}

/// One attribute write the init makes before exec.
#[derive(Debug, Clone)]
pub struct AttrWrite {
    pub path: CString,
    pub data: Vec<u8>,
    /// The setting, for messages ("process.apparmorProfile").
    pub what: &'static str,
}

/// The attribute writes for the process's labels, in order.
#[derive(Debug, Clone, Default)]
pub struct ExecLabel {
    pub writes: Vec<AttrWrite>,
}

fn attr(dir: &Path, rel: &str, data: Vec<u8>, what: &'static str) -> Result<AttrWrite, LinuxError> {
    let p = dir.join(rel);
    Ok(AttrWrite {
        path: CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| LinuxError::Plan(format!("{what}: path contains a NUL byte")))?,
        data,
        what,
    })
}

fn no_nul(v: &str, what: &str) -> Result<(), LinuxError> {
    if v.contains('\0') {
        return Err(LinuxError::Plan(format!("{what}: contains a NUL byte")));
    }
    Ok(())
}

/// Plans the writes for `process.apparmorProfile` and `process.selinuxLabel`.
pub fn exec_label(
    apparmor: Option<&str>,
    selinux: Option<&str>,
    host: &Host,
) -> Result<Option<ExecLabel>, LinuxError> {
    let mut label = ExecLabel::default();
    if let Some(profile) = apparmor.filter(|p| !p.is_empty()) {
        const WHAT: &str = "process.apparmorProfile";
        no_nul(profile, WHAT)?;
        if !host.apparmor {
            return Err(LinuxError::Plan(format!(
                "{WHAT}: cannot apply profile {profile:?}: AppArmor is not enabled on this host ({APPARMOR_ENABLED} is missing or not \"Y\")"
            )));
        }
        // The AppArmor-specific directory exists since Linux 5.8 (LSM
        // stacking); the shared one is the fallback.
        let rel = if host.attr_dir.join("apparmor").is_dir() {
            "apparmor/exec"
        } else {
            "exec"
        };
        label.writes.push(attr(
            &host.attr_dir,
            rel,
            format!("exec {profile}").into_bytes(),
            WHAT,
        )?);
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        const WHAT: &str = "process.selinuxLabel";
        no_nul(l, WHAT)?;
        if !host.selinux {
            return Err(LinuxError::Plan(format!(
                "{WHAT}: cannot apply label {l:?}: SELinux is not enabled on this host (no selinuxfs at {SELINUX_FS})"
            )));
        }
        // Keys the process creates (its session keyring) get the label too.
        label.writes.push(attr(
            &host.attr_dir,
            "keycreate",
            l.as_bytes().to_vec(),
            WHAT,
        )?);
        label
            .writes
            .push(attr(&host.attr_dir, "exec", l.as_bytes().to_vec(), WHAT)?);
    }
    Ok((!label.writes.is_empty()).then_some(label))
}

/// Filesystems whose mount data never gets a `context=` option: the kernel
/// labels proc, sysfs and mqueue itself, and bind mounts keep the source's
/// labels.
const UNLABELLED: &[&str] = &["proc", "sysfs", "mqueue"];

/// `data` with `context="<label>"` added, as SELinux's mount option wants it.
pub fn mount_data_with_label(data: Option<&str>, label: &str) -> String {
    match data {
        None | Some("") => format!("context=\"{label}\""),
        Some(d) => format!("{d},context=\"{label}\""),
    }
}

/// Applies `linux.mountLabel` to the planned mounts.
pub fn apply_mount_label(
    mounts: &mut [MountStep],
    label: Option<&str>,
    host: &Host,
) -> Result<(), LinuxError> {
    let Some(label) = label.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    const WHAT: &str = "linux.mountLabel";
    no_nul(label, WHAT)?;
    if !host.selinux {
        return Err(LinuxError::Plan(format!(
            "{WHAT}: cannot apply label {label:?}: SELinux is not enabled on this host (no selinuxfs at {SELINUX_FS})"
        )));
    }
    for m in mounts.iter_mut() {
        let fstype = m.fstype.as_deref().and_then(|t| t.to_str().ok());
        if !matches!(m.kind, MountKind::Fs) || fstype.is_some_and(|t| UNLABELLED.contains(&t)) {
            continue;
        }
        let data = m.data.as_deref().and_then(|d| d.to_str().ok());
        let new = mount_data_with_label(data, label);
        m.data = Some(
            CString::new(new)
                .map_err(|_| LinuxError::Plan(format!("{WHAT}: contains a NUL byte")))?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, apparmor_dir: bool) -> Host {
        if apparmor_dir {
            std::fs::create_dir_all(dir.join("apparmor")).unwrap();
        }
        Host {
            apparmor: true,
            selinux: true,
            attr_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn off_is_an_error_naming_the_setting() {
        let off = Host {
            apparmor: false,
            selinux: false,
            attr_dir: "/nonexistent".into(),
        };
        let e = exec_label(Some("berth-default"), None, &off).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "process.apparmorProfile: cannot apply profile \"berth-default\": AppArmor is not enabled"
            ),
            "{e}"
        );
        let e = exec_label(None, Some("system_u:system_r:container_t:s0"), &off).unwrap_err();
        assert!(e.to_string().starts_with("process.selinuxLabel: "), "{e}");
        assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
        let e = apply_mount_label(&mut [], Some("system_u:object_r:container_file_t:s0"), &off)
            .unwrap_err();
        assert!(e.to_string().starts_with("linux.mountLabel: "), "{e}");
        // Empty strings ask for nothing.
        assert!(exec_label(Some(""), Some(""), &off).unwrap().is_none());
    }

    #[test]
    fn writes_go_to_the_attribute_files() {
        // A stand-in for /proc/thread-self/attr: the formatting and the
        // files written are checked, not enforcement.
        let dir = tempfile::tempdir().unwrap();
        let h = host(dir.path(), true);
        let label = exec_label(Some("berth-default"), Some("u:r:t:s0:c1,c2"), &h)
            .unwrap()
            .unwrap();
        for w in &label.writes {
            std::fs::write(w.path.to_str().unwrap(), &w.data).unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("apparmor/exec"), "exec berth-default");
        assert_eq!(read("exec"), "u:r:t:s0:c1,c2");
        assert_eq!(read("keycreate"), "u:r:t:s0:c1,c2");

        // Without the AppArmor directory, the shared file.
        let dir = tempfile::tempdir().unwrap();
        let label = exec_label(Some("p"), None, &host(dir.path(), false))
            .unwrap()
            .unwrap();
        assert!(label.writes[0].path.to_str().unwrap().ends_with("/exec"));
        assert_eq!(label.writes[0].data, b"exec p");
    }

    #[test]
    fn mount_label_formatting() {
        assert_eq!(mount_data_with_label(None, "l:t"), "context=\"l:t\"");
        assert_eq!(
            mount_data_with_label(Some("size=64k,mode=755"), "s0:c1,c2"),
            "size=64k,mode=755,context=\"s0:c1,c2\""
        );
    }
}
