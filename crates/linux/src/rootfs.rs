//! Root filesystem set-up inside the container's mount namespace.
//!
//! Every destination is resolved beneath the rootfs with openat2(2)
//! RESOLVE_IN_ROOT, and mounted through its /proc/self/fd/N path, so a
//! symlink in the rootfs can never send a mount outside it. Missing
//! directories are created one component at a time, each resolved the same way.
//!
//! The rootfs itself is never looked up by path here: stage 1 made it the
//! working directory before the mount namespace existed, and the init clones
//! "." (open_tree) and attaches the clone on top of it. Bind sources that
//! `berth create` cloned before forking (a container with a user namespace,
//! or an idmapped mount; see `detached`) are attached with move_mount. So the
//! container's root never needs to walk the bundle's path on the host.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::detached;
use crate::plan::{Holder, MountKind, MountStep, Plan};
use crate::sys::{self, FdPath};

/// A failure with what was being done; formatted by the caller.
pub struct Failed {
    pub what: String,
    pub err: Option<io::Error>,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.err {
            Some(e) => write!(f, "{}: {}", self.what, e),
            None => f.write_str(&self.what),
        }
    }
}

pub type Res<T> = Result<T, Failed>;

pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Res<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Res<T> {
        self.map_err(|err| Failed {
            what: what(),
            err: Some(err),
        })
    }
}

const RESOLVE: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;

/// A NUL-terminated copy of `bytes` on the stack (paths are < PATH_MAX).
struct StackPath {
    buf: [u8; 4097],
}

impl StackPath {
    fn new(bytes: &[u8]) -> io::Result<StackPath> {
        if bytes.len() >= 4097 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let mut buf = [0u8; 4097];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(StackPath { buf })
    }
    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).expect("NUL-terminated")
    }
}

fn open_beneath(root: RawFd, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let p = StackPath::new(rel)?;
    sys::openat2(root, p.as_cstr(), flags, 0, RESOLVE)
}

/// Open directory `rel` beneath `root`, creating missing components (0755).
fn mkdir_beneath(root: RawFd, rel: &[u8]) -> io::Result<OwnedFd> {
    match open_beneath(root, rel, libc::O_PATH | libc::O_DIRECTORY) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let (parent, name) = split(rel);
    let parent_fd = if parent.is_empty() {
        open_beneath(root, b".", libc::O_PATH | libc::O_DIRECTORY)?
    } else {
        mkdir_beneath(root, parent)?
    };
    let name = StackPath::new(name)?;
    match sys::mkdirat(parent_fd.as_raw_fd(), name.as_cstr(), 0o755) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_beneath(root, rel, libc::O_PATH | libc::O_DIRECTORY)
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Open (creating if missing) the mount destination `rel` beneath `root`.
fn open_dest(root: RawFd, rel: &[u8], is_file: bool) -> io::Result<OwnedFd> {
    if !is_file {
        return mkdir_beneath(root, rel);
    }
    match open_beneath(root, rel, libc::O_PATH) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let (parent, name) = split(rel);
    let parent_fd = mkdir_beneath(root, if parent.is_empty() { b"." } else { parent })?;
    let name = StackPath::new(name)?;
    match sys::openat(
        parent_fd.as_raw_fd(),
        name.as_cstr(),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o644,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_beneath(root, rel, libc::O_PATH)
}

/// Stage 1, before it creates the mount namespace: the rootfs directory
/// becomes the working directory, which the new namespace carries over.
pub fn enter_rootfs_dir(plan: &Plan) -> Res<()> {
    let fd = plan.rootfs_dir.as_raw_fd();
    sys::fchdir(fd).ctx(|| format!("chdir to rootfs {}", plan.rootfs.to_string_lossy()))?;
    // A directory of the host's mount namespace: from here on the working
    // directory stands for it, and the init must never hold it (its ".."
    // leads out of the rootfs).
    // SAFETY: stage 1's copy of the descriptor; stage 1 never returns, so
    // the OwnedFd in its copy of the plan is never dropped.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Set the propagation of "/" and make the mount holding the rootfs private.
pub fn prepare(plan: &Plan) -> Res<()> {
    sys::mount(None, c"/", None, plan.root_propagation, None)
        .ctx(|| "set propagation of / (linux.rootfsPropagation)".into())?;
    // The mount holding the rootfs (possibly the rootfs itself) goes
    // private in this namespace: the container's mounts then never
    // propagate to the host, and pivot_root accepts the new root.
    let shared = plan.root_propagation & libc::MS_SHARED != 0;
    match &plan.rootfs_holder {
        None => Ok(()),
        // The working directory is the rootfs (see `enter_rootfs_dir`).
        Some(Holder::Rootfs) => sys::mount(None, c".", None, libc::MS_PRIVATE, None).ctx(|| {
            format!(
                "make the rootfs mount {} private",
                plan.rootfs.to_string_lossy()
            )
        }),
        Some(Holder::Above(holder)) => {
            match sys::mount(None, holder, None, libc::MS_PRIVATE, None) {
                // The container's root may not reach it (a bundle of mode
                // 0700 above a mount). With a user namespace the mounts of
                // this namespace are slaves of the host's unless the config
                // asks for shared propagation: nothing goes back to the host.
                Err(e) if e.raw_os_error() == Some(libc::EACCES) && plan.in_userns() && !shared => {
                    Ok(())
                }
                other => {
                    other.ctx(|| format!("make the mount at {} private", holder.to_string_lossy()))
                }
            }
        }
    }
}

/// Whether `path` is the root of a mount.
pub(crate) fn is_mount_root(path: &CStr) -> bool {
    // SAFETY: a zeroed statx is valid to be overwritten.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and stx writable.
    let r = unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), 0, 0, &mut stx) };
    r == 0 && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}

/// Bind the rootfs on itself (a recursive clone of the working directory,
/// attached on top of it) and return the new mount's root.
pub fn open_root(plan: &Plan) -> Res<OwnedFd> {
    let what = || format!("bind mount rootfs {}", plan.rootfs.to_string_lossy());
    let tree = detached::open_tree(
        libc::AT_FDCWD,
        c".",
        libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
    )
    .ctx(|| format!("{} (open_tree)", what()))?;
    detached::move_mount_to(tree.as_raw_fd(), libc::AT_FDCWD, c".")
        .ctx(|| format!("{} (move_mount)", what()))?;
    Ok(tree)
}

pub fn mount_all(plan: &Plan, root: RawFd) -> Res<()> {
    for m in &plan.mounts {
        mount_one(m, root, plan.root_propagation).map_err(|f| Failed {
            what: format!(
                "mount {}{:?} on {}: {}",
                m.fstype
                    .as_deref()
                    .map(|t| format!("type {} ", t.to_string_lossy()))
                    .unwrap_or_default(),
                source_name(m),
                m.display,
                f.what
            ),
            err: f.err,
        })?;
    }
    Ok(())
}

fn source_name(m: &MountStep) -> String {
    m.source
        .as_deref()
        .or(m.fstype.as_deref())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn mount_one(m: &MountStep, root: RawFd, root_propagation: libc::c_ulong) -> Res<()> {
    let target = open_dest(root, m.dest.as_bytes(), m.dest_is_file)
        .ctx(|| "resolve destination in rootfs".into())?;
    let old_dir = if m.tmpcopyup {
        Some(
            open_beneath(root, m.dest.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY)
                .ctx(|| "open directory for tmpcopyup".into())?,
        )
    } else {
        None
    };
    let at = FdPath::new(target.as_raw_fd());
    match &m.kind {
        MountKind::Bind { recursive } => {
            match &m.detached {
                Some(tree) => attach(tree.as_raw_fd(), &target, root_propagation)?,
                None => {
                    let src = m.source.as_deref().unwrap_or(c"");
                    let rec = if *recursive { libc::MS_REC } else { 0 };
                    sys::mount(Some(src), at.as_cstr(), None, libc::MS_BIND | rec, None)
                        .ctx(|| "bind".into())?;
                }
            }
            if m.flags != 0 {
                let mounted =
                    open_beneath(root, m.dest.as_bytes(), libc::O_PATH).ctx(|| "reopen".into())?;
                remount_bind(&FdPath::new(mounted.as_raw_fd()), m.flags)?;
            }
        }
        MountKind::Fs => {
            sys::mount(
                m.source.as_deref(),
                at.as_cstr(),
                m.fstype.as_deref(),
                m.flags,
                m.data.as_deref(),
            )
            .ctx(|| "mount".into())?;
        }
        MountKind::Cgroup { parts, v2_only } => {
            mount_cgroup(m, root, parts, *v2_only, at.as_cstr())?
        }
    }
    let mounted = open_beneath(root, m.dest.as_bytes(), libc::O_PATH).ctx(|| "reopen".into())?;
    let mounted_at = FdPath::new(mounted.as_raw_fd());
    if let Some(old) = old_dir {
        let new = open_beneath(root, m.dest.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY)
            .ctx(|| "reopen".into())?;
        copy_tree(old.as_raw_fd(), new.as_raw_fd()).ctx(|| "tmpcopyup".into())?;
    }
    for &p in &m.propagation {
        sys::mount(None, mounted_at.as_cstr(), None, p, None).ctx(|| "set propagation".into())?;
    }
    if m.attr_set != 0 || m.attr_clr != 0 {
        sys::mount_setattr_recursive(mounted.as_raw_fd(), m.attr_set, m.attr_clr)
            .ctx(|| "mount_setattr (recursive options)".into())?;
    }
    Ok(())
}

/// Attach a bind source `berth create` cloned (see `detached`) on `target`.
/// A clone of a shared host mount is the host mount's peer: it is made a
/// slave first, as a bind made inside this namespace would be, so that
/// mounts the container makes beneath it never reach the host; then it gets
/// the propagation of "/" the config asked for (linux.rootfsPropagation).
fn attach(tree: RawFd, target: &OwnedFd, root_propagation: libc::c_ulong) -> Res<()> {
    detached::move_mount(tree, target.as_raw_fd())
        .ctx(|| "attach the bind source (move_mount)".into())?;
    let at = FdPath::new(tree);
    sys::mount(
        None,
        at.as_cstr(),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .ctx(|| "make the bind a slave of its source".into())?;
    let kind = root_propagation & (libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_UNBINDABLE);
    if kind != 0 {
        sys::mount(None, at.as_cstr(), None, kind | libc::MS_REC, None)
            .ctx(|| "set propagation (linux.rootfsPropagation)".into())?;
    }
    Ok(())
}

/// Remount a bind mount with `flags`; in a user namespace the kernel locks
/// the flags the source carried, so on EPERM keep those and try again.
fn remount_bind(at: &FdPath, flags: libc::c_ulong) -> Res<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys::mount(None, at.as_cstr(), None, base | flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let locked = sys::mount_flags(at.as_cstr()).ctx(|| "statvfs".into())?;
            sys::mount(None, at.as_cstr(), None, base | flags | locked, None)
                .ctx(|| "remount".into())
        }
        other => other.ctx(|| "remount".into()),
    }
}

fn mount_cgroup(
    m: &MountStep,
    root: RawFd,
    parts: &[(std::ffi::CString, std::ffi::CString)],
    v2_only: bool,
    at: &CStr,
) -> Res<()> {
    // Bind `src` on the directory `name` beneath `dir`, then apply the flags
    // on the new mount (reopened by name, so it is the mount, not the dir under it).
    let bind = |src: &CStr, dir: RawFd, name: &CStr| -> Res<()> {
        let target = sys::openat(
            dir,
            name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .ctx(|| format!("open {}", name.to_string_lossy()))?;
        sys::mount(
            Some(src),
            FdPath::new(target.as_raw_fd()).as_cstr(),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .ctx(|| format!("bind {}", src.to_string_lossy()))?;
        if m.flags != 0 {
            let mounted = sys::openat(
                dir,
                name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .ctx(|| "reopen".into())?;
            remount_bind(&FdPath::new(mounted.as_raw_fd()), m.flags)?;
        }
        Ok(())
    };
    if v2_only {
        let Some((_, host)) = parts.first() else {
            return Ok(());
        };
        let (parent, name) = split(m.dest.as_bytes());
        let dir = open_beneath(
            root,
            if parent.is_empty() { b"." } else { parent },
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .ctx(|| "open parent".into())?;
        let name = StackPath::new(name).ctx(|| "name".into())?;
        return bind(host, dir.as_raw_fd(), name.as_cstr());
    }
    sys::mount(
        Some(c"tmpfs"),
        at,
        Some(c"tmpfs"),
        m.flags & !libc::MS_RDONLY,
        Some(c"mode=755"),
    )
    .ctx(|| "tmpfs".into())?;
    let base = open_beneath(root, m.dest.as_bytes(), libc::O_PATH | libc::O_DIRECTORY)
        .ctx(|| "reopen".into())?;
    for (name, host) in parts {
        sys::mkdirat(base.as_raw_fd(), name, 0o755)
            .ctx(|| format!("mkdir {}", name.to_string_lossy()))?;
        bind(host, base.as_raw_fd(), name)?;
        // Co-mounted controllers ("cpu,cpuacct") get a link per controller.
        let bytes = name.as_bytes();
        if bytes.contains(&b',') {
            for part in bytes.split(|&b| b == b',') {
                let link = StackPath::new(part).ctx(|| "link".into())?;
                let _ = sys::symlinkat(name, base.as_raw_fd(), link.as_cstr());
            }
        }
    }
    if m.flags & libc::MS_RDONLY != 0 {
        let fd = FdPath::new(base.as_raw_fd());
        sys::mount(
            None,
            fd.as_cstr(),
            None,
            libc::MS_REMOUNT | m.flags,
            Some(c"mode=755"),
        )
        .ctx(|| "remount cgroup tmpfs read-only".into())?;
    }
    Ok(())
}

fn open_path(p: &CStr) -> Res<OwnedFd> {
    sys::openat(libc::AT_FDCWD, p, libc::O_PATH, 0).ctx(|| format!("open {}", p.to_string_lossy()))
}

/// Copy a directory tree (files, dirs, symlinks) from `from` into `to`.
fn copy_tree(from: RawFd, to: RawFd) -> io::Result<()> {
    let dup = sys::openat(from, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let dir = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    for entry in dir {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = sys::fstatat(from, name, libc::AT_SYMLINK_NOFOLLOW)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                sys::mkdirat(to, name, st.st_mode & 0o7777)?;
                let f = sys::openat(
                    from,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                let t = sys::openat(
                    to,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                copy_tree(f.as_raw_fd(), t.as_raw_fd())?;
            }
            libc::S_IFREG => {
                let f = sys::openat(from, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let t = sys::openat(
                    to,
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    st.st_mode & 0o7777,
                )?;
                let mut src = std::fs::File::from(f);
                let mut dst = std::fs::File::from(t);
                io::copy(&mut src, &mut dst)?;
            }
            libc::S_IFLNK => {
                let mut buf = [0u8; 4097];
                // SAFETY: buf has room for the link target plus NUL.
                let n = unsafe {
                    libc::readlinkat(
                        from,
                        name.as_ptr(),
                        buf.as_mut_ptr() as *mut libc::c_char,
                        4096,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                let target = StackPath::new(&buf[..n as usize])?;
                sys::symlinkat(target.as_cstr(), to, name)?;
            }
            _ => continue,
        }
        let _ = sys::fchownat(to, name, st.st_uid, st.st_gid);
    }
    Ok(())
}

/// Create process.cwd inside the rootfs if it is missing, as runc does.
pub fn make_cwd(plan: &Plan, root: RawFd) -> Res<()> {
    let rel = crate::plan::relative_in_root(&plan.process.cwd.to_string_lossy());
    if rel == "." {
        return Ok(());
    }
    mkdir_beneath(root, rel.as_bytes())
        .map(drop)
        .ctx(|| format!("process.cwd: create {}", plan.process.cwd.to_string_lossy()))
}

/// Create the default and configured device nodes and /dev's links.
pub fn setup_dev(plan: &Plan, root: RawFd) -> Res<()> {
    if !plan.dev_setup && plan.devices.is_empty() {
        return Ok(());
    }
    let userns = plan.in_userns();
    for d in &plan.devices {
        let (parent, name) = split(d.path.as_bytes());
        let dir = mkdir_beneath(root, if parent.is_empty() { b"." } else { parent })
            .ctx(|| format!("create parent of device {}", d.display))?;
        let name = StackPath::new(name).ctx(|| d.display.clone())?;
        let name = name.as_cstr();
        match sys::unlinkat(dir.as_raw_fd(), name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(Failed {
                    what: format!("replace device {}", d.display),
                    err: Some(e),
                })
            }
        }
        if userns {
            // mknod is not allowed in a user namespace: bind the host's node.
            sys::openat(
                dir.as_raw_fd(),
                name,
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o644,
            )
            .ctx(|| format!("create device placeholder {}", d.display))?;
            let node = sys::openat(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .ctx(|| d.display.clone())?;
            sys::mount(
                Some(&d.host),
                FdPath::new(node.as_raw_fd()).as_cstr(),
                None,
                libc::MS_BIND,
                None,
            )
            .ctx(|| format!("bind device {} from the host", d.display))?;
        } else {
            sys::mknodat(dir.as_raw_fd(), name, d.mode, d.dev)
                .ctx(|| format!("mknod device {}", d.display))?;
            sys::fchownat(dir.as_raw_fd(), name, d.uid, d.gid)
                .ctx(|| format!("chown device {}", d.display))?;
        }
    }
    if plan.dev_setup {
        let dev = mkdir_beneath(root, b"dev").ctx(|| "create /dev".into())?;
        for (target, name) in &plan.dev_symlinks {
            match sys::symlinkat(target, dev.as_raw_fd(), name) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(Failed {
                        what: format!("symlink /dev/{}", name.to_string_lossy()),
                        err: Some(e),
                    })
                }
            }
        }
        // /dev/ptmx is the container's own devpts multiplexer.
        let _ = sys::unlinkat(dev.as_raw_fd(), c"ptmx");
        sys::symlinkat(c"pts/ptmx", dev.as_raw_fd(), c"ptmx").ctx(|| "symlink /dev/ptmx".into())?;
    }
    Ok(())
}

/// pivot_root into the rootfs and detach the old root; or, with
/// `--no-pivot`, move the rootfs over / and chroot.
pub fn enter(plan: &Plan, root: &OwnedFd) -> Res<()> {
    if plan.no_pivot {
        sys::fchdir(root.as_raw_fd()).ctx(|| "chdir to rootfs".into())?;
        let at = FdPath::new(root.as_raw_fd());
        sys::mount(Some(at.as_cstr()), c"/", None, libc::MS_MOVE, None)
            .ctx(|| "move rootfs to / (--no-pivot)".into())?;
        sys::chroot(c".").ctx(|| "chroot (--no-pivot)".into())?;
    } else {
        let old = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .ctx(|| "open /".into())?;
        sys::fchdir(root.as_raw_fd()).ctx(|| "chdir to rootfs".into())?;
        sys::pivot_root(c".", c".")
            .ctx(|| format!("pivot_root to {}", plan.rootfs.to_string_lossy()))?;
        sys::fchdir(old.as_raw_fd()).ctx(|| "chdir to old root".into())?;
        // Keep the unmount of the old root from propagating to the host.
        sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .ctx(|| "make old root rslave".into())?;
        sys::umount_detach(c".").ctx(|| "detach old root".into())?;
    }
    sys::chdir(c"/").ctx(|| "chdir /".into())?;
    if plan.root_propagation_set {
        sys::mount(None, c"/", None, plan.root_propagation, None)
            .ctx(|| "linux.rootfsPropagation: set propagation of the new root".into())?;
    }
    Ok(())
}

/// After pivot: sysctls, masked and read-only paths, read-only root.
pub fn finish(plan: &Plan) -> Res<()> {
    for s in &plan.sysctls {
        sys::write_file(&s.path, &s.value)
            .ctx(|| format!("linux.sysctl {}: write {}", s.key, s.path.to_string_lossy()))?;
    }
    for p in &plan.masked {
        mask(p).ctx(|| format!("linux.maskedPaths: mask {}", p.to_string_lossy()))?;
    }
    for p in &plan.readonly {
        readonly(p).map_err(|f| Failed {
            what: format!("linux.readonlyPaths: {} ({})", p.to_string_lossy(), f.what),
            err: f.err,
        })?;
    }
    if plan.readonly_root {
        remount_bind(&FdPath::new(open_path(c"/")?.as_raw_fd()), libc::MS_RDONLY).map_err(|f| {
            Failed {
                what: format!("root.readonly: remount / read-only ({})", f.what),
                err: f.err,
            }
        })?;
    }
    Ok(())
}

fn mask(path: &CStr) -> io::Result<()> {
    let st = match sys::fstatat(libc::AT_FDCWD, path, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        other => other?,
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(Some(c"tmpfs"), path, Some(c"tmpfs"), libc::MS_RDONLY, None)
    } else {
        // Never by path: a /dev/null the container swapped for a symlink
        // would turn every masked file into a view of its target (the
        // CVE-2025-31133 class). Open it without following, check it is
        // the null device, and bind that descriptor.
        let null = sys::openat(
            libc::AT_FDCWD,
            c"/dev/null",
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )?;
        let st = sys::fstatat(null.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "/dev/null is not the null device (1:3)",
            ));
        }
        let from = sys::FdPath::new(null.as_raw_fd());
        sys::mount(Some(from.as_cstr()), path, None, libc::MS_BIND, None)
    }
}

fn readonly(path: &CStr) -> Res<()> {
    match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        other => other.ctx(|| "bind".into())?,
    }
    remount_bind(&FdPath::new(open_path(path)?.as_raw_fd()), libc::MS_RDONLY)
}
