//! Helpers the drivers and the store share: names safe in a path or a
//! dataset name, snapshot names, the temporary names of half-made layers,
//! reading a file confined to a tree, the mount table and bind mounts,
//! and RFC 3339 times.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{io_err, Result, StorageError};

/// Refuse a name (a layer's hex, a container key) that would change the
/// path or dataset name it is put in; `usable_as` says what it must be
/// usable as in the error.
pub(crate) fn check_component(what: &str, s: &str, usable_as: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "{what} {s:?}: not usable as {usable_as} (letters, digits, _ - . :)"
        )))
    }
}
/// A snapshot name: `[A-Za-z0-9_.:-]`, at most 64 bytes, not starting
/// with '-'.
pub(crate) fn check_snapshot_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StorageError::Invalid(format!(
            "snapshot name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 characters");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name == "." || name == ".." {
        return bad("not a name");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return bad(&format!("{c:?} is not allowed (letters, digits, _ . : -)"));
    }
    Ok(())
}

/// The name a layer is made under before it is renamed to its hex:
/// `tmp-PID-N-` and the first 16 hex digits.
pub(crate) fn tmp_layer_name(hex: &str) -> String {
    format!(
        "{}-{}",
        crate::store::temp_suffix(),
        &hex[..hex.len().min(16)]
    )
}

/// Whether `name` is a [`tmp_layer_name`] of a process that is gone (it
/// crashed while it made the layer): what is left under it can go.
pub(crate) fn is_stale_tmp(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("tmp-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Read `path` of the tree at `root`, resolving every component (symlinks
/// included) inside `root`. None if it does not exist. Only a regular file
/// of at most [`crate::vfs::MAX_READ`] bytes is read (see
/// [`crate::vfs::read_regular`]).
pub(crate) fn read_in_root(root: &Path, path: &Path) -> Result<Option<Vec<u8>>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let shown = || format!("{} in {}", path.display(), root.display());
    let dir =
        std::fs::File::open(root).map_err(crate::io_err(format!("opening {}", root.display())))?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    // O_PATH: finding the file opens nothing (no FIFO blocks, no device
    // opens); read_regular checks what it is first.
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => return Ok(None),
        Err(e) => {
            return Err(StorageError::Io {
                what: format!("opening {}", shown()),
                source: e.into(),
            })
        }
    };
    crate::vfs::read_regular(fd, &shown()).map(Some)
}

/// Whether `dir` is a mount point: on another device than its parent,
/// or listed as one in /proc/self/mountinfo (a bind of the same fs).
pub(crate) fn is_mounted_here(dir: &Path) -> bool {
    let (Ok(me), Some(parent)) = (std::fs::symlink_metadata(dir), dir.parent()) else {
        return false;
    };
    if let Ok(up) = std::fs::metadata(parent) {
        if up.dev() != me.dev() {
            return true;
        }
    }
    mount_points().iter().any(|m| m == dir)
}

/// Mount points of /proc/self/mountinfo, octal escapes decoded; none if
/// it cannot be read.
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let Ok(s) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    s.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape_octal)
        .collect()
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
pub(crate) fn unescape_octal(b: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Refuse a rootfs mount target that is not an absolute path.
pub(crate) fn check_absolute_target(target: &Path) -> Result<()> {
    if target.is_absolute() {
        return Ok(());
    }
    Err(StorageError::Invalid(format!(
        "rootfs target {}: not an absolute path",
        target.display()
    )))
}

/// Bind-mount `src` at `target`.
pub(crate) fn bind(src: &Path, target: &Path) -> Result<()> {
    nix::mount::mount(
        Some(src),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        io_err(format!(
            "bind-mounting {} on {}",
            src.display(),
            target.display()
        ))(e.into())
    })
}

/// Now, as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub(crate) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}
pub(crate) fn rfc3339(unix: i64) -> String {
    let (days, rem) = (unix.div_euclid(86400), unix.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian), shifting
    // the year to start in March so the leap day is the year's last.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    /// `f()` on another thread; fails the test if it has not returned
    /// within 10 s (after `unblock`, which must let it return).
    fn within_10s<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
        unblock: impl FnOnce(),
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || tx.send(f()).unwrap());
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) => {
                h.join().unwrap();
                v
            }
            Err(_) => {
                unblock();
                let _ = h.join();
                panic!("still blocked after 10 s");
            }
        }
    }

    #[test]
    fn read_in_root_reads_only_small_regular_files() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        nix::unistd::mkfifo(&root.join("etc/passwd"), Mode::from_bits_truncate(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("to-fifo")).unwrap();
        mknod(
            &root.join("etc/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        let big = std::fs::File::create(root.join("big")).unwrap();
        big.set_len(crate::vfs::MAX_READ + 1).unwrap();
        let edge = std::fs::File::create(root.join("edge")).unwrap();
        edge.set_len(crate::vfs::MAX_READ).unwrap();

        assert_eq!(
            read_in_root(&root, Path::new("/etc/group"))
                .unwrap()
                .unwrap(),
            b"root:x:0:\n"
        );
        // A FIFO, directly or through a symlink: an error, at once.
        for p in ["/etc/passwd", "/to-fifo"] {
            let (r2, p2) = (root.clone(), p.to_string());
            let fifo = root.join("etc/passwd");
            let err = within_10s(
                move || read_in_root(&r2, Path::new(&p2)).map(|_| ()),
                || {
                    // Opening the write end lets a blocked reader go.
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&fifo);
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("not a regular file") && err.contains("FIFO"),
                "{err}"
            );
        }
        let err = read_in_root(&root, Path::new("etc/null"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("character device"), "{err}");
        let err = read_in_root(&root, Path::new("big"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("big") && err.contains("16 MiB"), "{err}");
        assert_eq!(
            read_in_root(&root, Path::new("edge"))
                .unwrap()
                .unwrap()
                .len() as u64,
            crate::vfs::MAX_READ
        );
        assert!(read_in_root(&root, Path::new("nope")).unwrap().is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
