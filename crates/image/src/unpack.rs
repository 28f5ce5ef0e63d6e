//! Safe tar unpacking into a layer directory. Every entry is created
//! relative to the layer's directory fd, parents opened without following
//! symlinks: an entry with `..`, an absolute path, a symlinked parent, or a
//! hardlink to something outside is refused with the blob and entry named.
//!
//! What each entry becomes:
//! - regular files (also `Continuous`): created `O_EXCL|O_NOFOLLOW` after
//!   removing whatever was at the path; all-zero 4 KiB blocks are skipped so
//!   files stay sparse; then owner, full mode (after the owner: chown clears
//!   set-id bits), xattrs (`security.capability` after chown too), times.
//! - GNU sparse files (old GNU format): the map is decoded by the framing
//!   reader under the tar crate (see `frame.rs`), each data block written
//!   at its offset and the size set with `ftruncate`, so holes are never
//!   read or written. A sparse file over [`SPARSE_MAX`] (1 TiB) is refused.
//!   PAX-format sparse files (`GNU.sparse.*` records) are not decoded: they
//!   unpack as the tar crate presents them.
//! - GNU long name/long link and PAX headers over [`META_MAX`] (1 MiB) are
//!   refused from their header, before their content is read.
//! - directories: made, or an existing one kept; their times are set after
//!   the last entry (later entries change them).
//! - symlinks, hardlinks (target under the same path rules, linked without
//!   following symlinks), character and block devices, FIFOs.
//! - xattrs come from PAX `SCHILY.xattr.NAME` records. Files and
//!   directories get them with `fsetxattr`; symlinks, devices and FIFOs
//!   with `lsetxattr` through `/proc/self/fd/PARENT/NAME`. Linux refuses
//!   `user.*` xattrs on anything but files and directories (EPERM), so such
//!   an xattr cannot exist on a Linux filesystem: it is skipped there. Any
//!   other refusal is an error. `trusted.overlay.*` from a tar is refused:
//!   it would change how overlayfs reads the layer.
//! - whiteouts: `.wh..wh..opq` and `.wh.NAME` per [`Whiteouts`]. Names
//!   with the `.wh..wh.` prefix (aufs metadata such as `.wh..wh.plnk`, and
//!   everything under them) are skipped as containerd does; any other
//!   `.wh.`-prefixed directory in a path is refused, and so is a whiteout
//!   of `.` or `..` (`.wh..`, `.wh...`): it would empty the directory, or
//!   the one above it (for the top level, outside the layer). Removing a
//!   path never takes `.` or `..` as a name either.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, ftruncate, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};

use crate::frame::{Framer, Shared, Sparse};
use crate::{ImageError, Result};

pub use crate::frame::{META_MAX, SPARSE_MAX};

/// What a whiteout (`.wh.NAME`, `.wh..wh..opq`) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Overlay's own: a 0/0 character device for `.wh.NAME`, the
    /// `trusted.overlay.opaque=y` xattr for an opaque directory.
    Overlay,
    /// Applied to the parent's contents already in `dest`: the path is
    /// deleted, an opaque directory emptied.
    Apply,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Bytes of file content written (for a GNU sparse file, the data the
    /// archive holds for it; its holes are not counted).
    pub bytes: u64,
}

const WH_PREFIX: &[u8] = b".wh.";
const WH_META: &[u8] = b".wh..wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
const BUF_SIZE: usize = 1 << 20;
const BLOCK: usize = 4096;

/// Unpack the uncompressed tar stream `tar` into the existing directory
/// `dest`. `blob` names the layer in errors. On error the caller removes
/// what was unpacked (it owns `dest`).
pub fn unpack(tar: impl Read, dest: &Path, mode: Whiteouts, blob: &str) -> Result<Stats> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::Io {
        what: format!("layer {blob}: open {}", dest.display()),
        source: e.into(),
    })?;
    let (tar, found) = Framer::new(tar);
    let mut u = Unpacker {
        root,
        mode,
        blob,
        buf: vec![0u8; BUF_SIZE],
        path: Vec::new(),
        link: Vec::new(),
        raw: Vec::new(),
        xattrs: Vec::new(),
        pax_mtime: None,
        cache: None,
        mine: HashMap::new(),
        dir_times: Vec::new(),
        stats: Stats::default(),
        found: found.clone(),
        sparse: None,
    };
    let mut ar = tar::Archive::new(tar);
    let stream_err = |source: io::Error, after: &[u8]| {
        if let Some(msg) = found.borrow_mut().refused.take() {
            return ImageError::Malformed {
                what: format!("layer {blob}"),
                msg,
            };
        }
        stream_err_io(blob, source, after)
    };
    let entries = ar.entries().map_err(|e| stream_err(e, b""))?;
    for e in entries {
        let mut e = match e {
            Ok(e) => e,
            Err(err) => return Err(stream_err(err, &u.raw)),
        };
        u.entry(&mut e)?;
    }
    u.finish()?;
    Ok(u.stats)
}

fn stream_err_io(blob: &str, source: io::Error, after: &[u8]) -> ImageError {
    ImageError::Io {
        what: if after.is_empty() {
            format!("layer {blob}: read the tar stream")
        } else {
            format!(
                "layer {blob}: read the tar stream after entry {:?}",
                String::from_utf8_lossy(after)
            )
        },
        source,
    }
}

/// Which directory fd an entry's parent is.
#[derive(Clone, Copy)]
enum Parent {
    Root,
    Cached,
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
}

struct Unpacker<'b> {
    /// `dest`, opened O_RDONLY|O_DIRECTORY.
    root: OwnedFd,
    mode: Whiteouts,
    blob: &'b str,
    /// Reused for file content.
    buf: Vec<u8>,
    /// The current entry's cleaned path (`a/b/c`, empty for the root).
    path: Vec<u8>,
    /// The current hardlink's cleaned target.
    link: Vec<u8>,
    /// The current entry's name as the tar has it (for messages).
    raw: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The entry's PAX `mtime` (sub-second precision), if it has one.
    pax_mtime: Option<TimeSpec>,
    /// The last parent directory opened: its path and an O_PATH fd.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Apply mode: paths this layer made (true) or put things into (false).
    mine: HashMap<Vec<u8>, bool>,
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    stats: Stats,
    /// What the framing reader found (GNU sparse maps).
    found: Shared,
    /// The current entry's GNU sparse map, when it is one.
    sparse: Option<Sparse>,
}

/// `raw` without `./` and empty components, into `out`; Err(why) for an
/// absolute path or a `..` component.
fn clean(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), &'static str> {
    out.clear();
    // "/" alone is the layer's root (umoci and GNU tar write it so when a
    // whole tree is archived from /); any other absolute path is refused.
    if raw.iter().all(|&b| b == b'/') && !raw.is_empty() {
        return Ok(());
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path leaves the layer");
    }
    if raw.contains(&0) {
        return Err("NUL byte in the path");
    }
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path leaves the layer (..)"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(())
}

/// (parent, last component) of a cleaned, non-empty path.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Open the directory `path` under `base` without following any symlink
/// and without leaving `base`.
fn open_beneath(base: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(beneath());
    openat2(base, path, how)
}

fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        let mut acc = 0u64;
        for w in c.chunks_exact(8) {
            acc |= u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Copy `r` into the new file `fd` from offset `base`, skipping all-zero
/// 4 KiB blocks (the file stays sparse; the caller sets its size). Returns
/// (bytes read, offset after the last byte written relative to `base`).
/// Errors come back as (true, e) for reading `r`, (false, e) for writing.
fn write_sparse(
    fd: &OwnedFd,
    r: &mut impl Read,
    buf: &mut [u8],
    base: u64,
) -> std::result::Result<(u64, u64), (bool, io::Error)> {
    let mut off: u64 = 0;
    let mut written_end: u64 = 0;
    loop {
        let n = crate::frame::read_full(r, buf).map_err(|e| (true, e))?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            if is_zero(&data[i..end]) {
                i = end;
                continue;
            }
            let start = i;
            i = end;
            while i < n {
                let end = (i + BLOCK).min(n);
                if is_zero(&data[i..end]) {
                    break;
                }
                i = end;
            }
            pwrite_all(fd, &data[start..i], base + off + start as u64).map_err(|e| (false, e))?;
            written_end = off + i as u64;
        }
        off += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok((off, written_end))
}

/// Write a GNU sparse entry's data (`r`: the map's blocks one after the
/// other) at the map's offsets, then set the file's size. Holes are
/// neither read nor written. Returns the data bytes read.
fn write_map(
    fd: &OwnedFd,
    r: &mut impl Read,
    buf: &mut [u8],
    s: &Sparse,
) -> std::result::Result<u64, (bool, io::Error)> {
    let mut total = 0;
    for &(off, len) in &s.map {
        let (n, _) = write_sparse(fd, &mut (&mut *r).take(len), buf, off)?;
        if n != len {
            return Err((
                true,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the tar ends inside the data block at offset {off}"),
                ),
            ));
        }
        total += n;
    }
    // Checked: real_size <= SPARSE_MAX, far below i64::MAX.
    ftruncate(fd, s.real_size as i64).map_err(|e| (false, e.into()))?;
    Ok(total)
}

fn pwrite_all(fd: &OwnedFd, mut data: &[u8], mut off: u64) -> io::Result<()> {
    while !data.is_empty() {
        match nix::sys::uio::pwrite(fd, data, off as i64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                data = &data[k..];
                off += k as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether `name` names an entry of a directory: not empty, `.` or `..`,
/// and without a `/`.
fn is_name(name: &[u8]) -> bool {
    !matches!(name, b"" | b"." | b"..") && !name.contains(&b'/')
}

/// Remove `name` in `dir` whatever it is; a directory with everything in
/// it, never following a symlink. Missing is fine. `name` must be a name
/// in `dir` (EINVAL for `.`, `..`, or a path): `..` would be the parent.
fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    if !is_name(name) {
        return Err(Errno::EINVAL);
    }
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(&sub)? {
        remove_all(sub.as_fd(), &child)?;
    }
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The names in a directory (without `.` and `..`).
fn list_dir(dir: &OwnedFd) -> nix::Result<Vec<Vec<u8>>> {
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Set an xattr on an open file or directory.
fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: fd is an open descriptor, name is NUL-terminated and value
    // points at value.len() readable bytes; the kernel only reads them.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Set an xattr on `path` itself (a symlink is not followed).
fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: path and name are NUL-terminated and value points at
    // value.len() readable bytes; the kernel only reads them.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// A PAX time (`1600000000` or `1600000000.123456789`; negative allowed).
fn parse_pax_time(v: &str) -> Option<TimeSpec> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    if v.starts_with('-') && nanos > 0 {
        // -1.5 is 1.5 s before the epoch: -2 s + 0.5 s.
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

fn cstring(b: &[u8]) -> Option<std::ffi::CString> {
    std::ffi::CString::new(b).ok()
}

impl Unpacker<'_> {
    fn err(&self, msg: impl Into<String>) -> ImageError {
        ImageError::Entry {
            blob: self.blob.to_string(),
            entry: String::from_utf8_lossy(&self.raw).into_owned(),
            msg: msg.into(),
        }
    }

    fn sys(&self, what: &str, e: Errno) -> ImageError {
        self.err(format!("{what}: {e}"))
    }

    fn parent_fd(&self, p: Parent) -> BorrowedFd<'_> {
        match (p, &self.cache) {
            (Parent::Cached, Some((_, fd))) => fd.as_fd(),
            _ => self.root.as_fd(),
        }
    }

    /// Open the parent directory `dir` (a cleaned path) safely, creating
    /// missing directories when `create`; None when missing and not
    /// `create`.
    fn parent(&mut self, dir: &[u8], create: bool) -> Result<Option<Parent>> {
        if dir.is_empty() {
            return Ok(Some(Parent::Root));
        }
        if let Some((p, _)) = &self.cache {
            if p == dir {
                return Ok(Some(Parent::Cached));
            }
        }
        // Below the cached directory: resolve only the rest from there.
        let (base, rest) = match &self.cache {
            Some((p, fd)) if dir.len() > p.len() && dir.starts_with(p) && dir[p.len()] == b'/' => {
                (fd.as_fd(), &dir[p.len() + 1..])
            }
            _ => (self.root.as_fd(), dir),
        };
        let fd = match open_beneath(base, rest, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(Errno::ENOENT) => {
                let fd = self.make_parents(dir)?;
                self.cache = Some((dir.to_vec(), fd));
                return Ok(Some(Parent::Cached));
            }
            Err(e) => return Err(self.parent_error(dir, e)),
        };
        self.cache = Some((dir.to_vec(), fd));
        Ok(Some(Parent::Cached))
    }

    /// Explain why `dir` could not be opened, naming the component.
    fn parent_error(&self, dir: &[u8], e: Errno) -> ImageError {
        if matches!(e, Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) {
            let mut end = 0;
            for comp in dir.split(|&b| b == b'/') {
                end += comp.len();
                let prefix = &dir[..end];
                match fstatat(self.root.as_fd(), prefix, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                        return self.err(format!(
                            "parent {} is a symlink",
                            String::from_utf8_lossy(prefix)
                        ))
                    }
                    Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
                        return self.err(format!(
                            "parent {} is not a directory",
                            String::from_utf8_lossy(prefix)
                        ))
                    }
                    _ => {}
                }
                end += 1;
            }
        }
        self.sys(&format!("open parent {}", String::from_utf8_lossy(dir)), e)
    }

    /// Create the missing directories of `dir` (0755, root-owned, as tar
    /// does), each opened beneath the one before. Returns `dir`'s O_PATH fd.
    fn make_parents(&mut self, dir: &[u8]) -> Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        let mut end = 0;
        for comp in dir.split(|&b| b == b'/') {
            end += comp.len();
            let base = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            let fd = match open_beneath(base, comp, OFlag::O_PATH) {
                Ok(fd) => {
                    if self.mode == Whiteouts::Apply {
                        self.mine.entry(dir[..end].to_vec()).or_insert(false);
                    }
                    fd
                }
                Err(Errno::ENOENT) => {
                    match mkdirat(base, comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(self.sys(
                                &format!("create parent {}", String::from_utf8_lossy(&dir[..end])),
                                e,
                            ))
                        }
                    }
                    let fd = open_beneath(base, comp, OFlag::O_RDONLY)
                        .map_err(|e| self.parent_error(&dir[..end], e))?;
                    // Exactly 0755 whatever the umask.
                    fchmod(&fd, Mode::from_bits_truncate(0o755))
                        .map_err(|e| self.sys("chmod parent", e))?;
                    if self.mode == Whiteouts::Apply {
                        self.mine.insert(dir[..end].to_vec(), true);
                    }
                    fd
                }
                Err(e) => return Err(self.parent_error(&dir[..end], e)),
            };
            cur = Some(fd);
            end += 1;
        }
        Ok(cur.expect("a non-empty path has a component"))
    }

    /// Apply mode: record `path` as made (`fresh`) or filled by this layer,
    /// and its ancestors as filled.
    fn mark(&mut self, fresh: bool) {
        if self.mode != Whiteouts::Apply {
            return;
        }
        let path = &self.path;
        if fresh {
            self.mine.insert(path.clone(), true);
        } else {
            self.mine.entry(path.clone()).or_insert(false);
        }
        let mut p: &[u8] = path;
        while let Some(i) = p.iter().rposition(|&b| b == b'/') {
            p = &p[..i];
            if self.mine.contains_key(p) {
                break;
            }
            self.mine.insert(p.to_vec(), false);
        }
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = e.header().entry_type();
        let pos = e.raw_header_position();
        self.sparse = match self.found.borrow_mut().sparse.take() {
            Some(s) if s.header_pos == pos => Some(s),
            _ => None,
        };
        self.raw.clear();
        self.raw.extend_from_slice(&e.path_bytes());
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.raw);
        let cleaned = clean(&raw, &mut self.path);
        self.raw = raw;
        cleaned.map_err(|m| self.err(m))?;

        // Whiteouts and aufs metadata.
        let (dir, name) = split(&self.path);
        let mut comps = self.path.split(|&b| b == b'/');
        if comps.clone().any(|c| c.starts_with(WH_META)) && name != WH_OPAQUE {
            return Ok(()); // aufs metadata (.wh..wh.plnk and friends)
        }
        if comps.any(|c| c.starts_with(WH_PREFIX) && c.as_ptr() != name.as_ptr()) {
            return Err(self.err("a whiteout name used as a directory"));
        }
        if name == WH_OPAQUE {
            self.stats.entries += 1;
            let dir = dir.to_vec();
            return self.opaque(&dir);
        }
        if let Some(target) = name.strip_prefix(WH_PREFIX) {
            if target.is_empty() {
                return Err(self.err("whiteout without a name"));
            }
            if !is_name(target) {
                return Err(self.err(format!(
                    "whiteout of {:?}: not a name in the directory",
                    String::from_utf8_lossy(target)
                )));
            }
            self.stats.entries += 1;
            let (dir, target) = (dir.to_vec(), target.to_vec());
            return self.whiteout(&dir, &target);
        }

        self.read_pax(e)?;
        let meta = self.meta(e)?;
        self.stats.entries += 1;

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => self.file(e, &meta),
            // The framer hands GNU sparse entries on as regular files; one
            // still marked sparse is not in GNU format, which the tar crate
            // refuses before this.
            T::GNUSparse => Err(self.err("GNU sparse entry not in GNU format")),
            T::Directory => self.directory(&meta),
            T::Symlink => self.symlink(e, &meta),
            T::Link => self.hardlink(e),
            T::Char | T::Block | T::Fifo => self.node(e, kind, &meta),
            other => Err(self.err(format!("entry type {other:?} cannot be unpacked"))),
        }
    }

    fn meta<R: Read>(&self, e: &tar::Entry<'_, R>) -> Result<Meta> {
        let h = e.header();
        let bad = |what: &str, err: io::Error| self.err(format!("bad {what} in the header: {err}"));
        let uid = h.uid().map_err(|err| bad("uid", err))?;
        let gid = h.gid().map_err(|err| bad("gid", err))?;
        let mode = h.mode().map_err(|err| bad("mode", err))?;
        let mtime = h.mtime().map_err(|err| bad("mtime", err))?;
        let uid = u32::try_from(uid).map_err(|_| self.err(format!("uid {uid} is out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| self.err(format!("gid {gid} is out of range")))?;
        Ok(Meta {
            uid,
            gid,
            mode: mode & 0o7777,
            mtime: self
                .pax_mtime
                .unwrap_or_else(|| TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0)),
        })
    }

    /// xattrs (and a precise mtime) from the entry's PAX records.
    fn read_pax<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        self.xattrs.clear();
        self.pax_mtime = None;
        let exts = match e.pax_extensions() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(err) => return Err(self.err(format!("bad PAX header: {err}"))),
        };
        for ext in exts {
            let ext = ext.map_err(|err| ImageError::Entry {
                blob: self.blob.to_string(),
                entry: String::from_utf8_lossy(&self.raw).into_owned(),
                msg: format!("bad PAX record: {err}"),
            })?;
            if ext.key_bytes() == b"mtime" {
                self.pax_mtime = ext.value().ok().and_then(parse_pax_time);
            } else if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                self.xattrs
                    .push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
        for (name, _) in &self.xattrs {
            if name.starts_with(b"trusted.overlay.") || name.contains(&0) || name.is_empty() {
                return Err(self.err(format!(
                    "xattr {:?} is not allowed in a layer",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        Ok(())
    }

    /// Set the entry's xattrs on an open file or directory.
    fn set_xattrs_fd(&self, fd: BorrowedFd<'_>) -> Result<()> {
        for (name, value) in &self.xattrs {
            let n = cstring(name).expect("checked: no NUL");
            fsetxattr(fd, &n, value).map_err(|e| {
                self.sys(&format!("set xattr {}", String::from_utf8_lossy(name)), e)
            })?;
        }
        Ok(())
    }

    /// Set the entry's xattrs on a symlink, device or FIFO `name` in `dir`.
    fn set_xattrs_at(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        if self.xattrs.is_empty() {
            return Ok(());
        }
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        let path = cstring(&path).ok_or_else(|| self.err("NUL byte in the path"))?;
        for (xname, value) in &self.xattrs {
            let n = cstring(xname).expect("checked: no NUL");
            match lsetxattr(&path, &n, value) {
                Ok(()) => {}
                // Linux keeps user.* xattrs to files and directories.
                Err(Errno::EPERM) if xname.starts_with(b"user.") => {}
                Err(e) => {
                    return Err(
                        self.sys(&format!("set xattr {}", String::from_utf8_lossy(xname)), e)
                    )
                }
            }
        }
        Ok(())
    }

    fn file<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, m: &Meta) -> Result<()> {
        if self.path.is_empty() {
            return Err(self.err("the layer's root must be a directory"));
        }
        if let Some(why) = self.sparse.as_mut().and_then(|s| s.problem.take()) {
            return Err(self.err(why));
        }
        let path = std::mem::take(&mut self.path);
        let r = self.file_inner(e, m, &path);
        self.path = path;
        r?;
        self.mark(true);
        Ok(())
    }

    fn file_inner<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        m: &Meta,
        path: &[u8],
    ) -> Result<()> {
        let (dir, name) = split(path);
        let p = self.parent(dir, true)?.expect("created");
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut removed = false;
        let fd = loop {
            let pfd = self.parent_fd(p);
            match openat(pfd, name, flags, Mode::from_bits_truncate(0o600)) {
                Ok(fd) => break fd,
                Err(Errno::EEXIST) if !removed => {
                    remove_all(pfd, name).map_err(|e| self.sys("remove what was there", e))?;
                    removed = true;
                }
                Err(e) => return Err(self.sys("create file", e)),
            }
        };
        if removed {
            self.cache = None;
        }
        let sparse = self.sparse.take();
        let written = match &sparse {
            None => write_sparse(&fd, e, &mut self.buf, 0).and_then(|(n, end)| {
                if end < n {
                    ftruncate(&fd, n as i64).map_err(|e| (false, e.into()))?;
                }
                Ok(n)
            }),
            Some(s) => write_map(&fd, e, &mut self.buf, s),
        };
        let n = written.map_err(|(reading, err)| {
            if reading {
                ImageError::Io {
                    what: format!(
                        "layer {}: entry {:?}: read content",
                        self.blob,
                        String::from_utf8_lossy(&self.raw)
                    ),
                    source: err,
                }
            } else {
                self.err(format!("write: {err}"))
            }
        })?;
        self.stats.bytes += n;
        fchown(&fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))
            .map_err(|e| self.sys("chown", e))?;
        fchmod(&fd, Mode::from_bits_truncate(m.mode)).map_err(|e| self.sys("chmod", e))?;
        self.set_xattrs_fd(fd.as_fd())?;
        futimens(&fd, &m.mtime, &m.mtime).map_err(|e| self.sys("set times", e))?;
        Ok(())
    }

    fn directory(&mut self, m: &Meta) -> Result<()> {
        let fresh;
        let fd = if self.path.is_empty() {
            fresh = false;
            openat(
                &self.root,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.sys("open the layer root", e))?
        } else {
            let path = std::mem::take(&mut self.path);
            let r = self.make_dir(&path);
            self.path = path;
            let (fd, f) = r?;
            fresh = f;
            fd
        };
        fchown(&fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))
            .map_err(|e| self.sys("chown", e))?;
        fchmod(&fd, Mode::from_bits_truncate(m.mode)).map_err(|e| self.sys("chmod", e))?;
        self.set_xattrs_fd(fd.as_fd())?;
        self.dir_times.push((self.path.clone(), m.mtime));
        if !self.path.is_empty() {
            self.mark(fresh);
        }
        Ok(())
    }

    /// Make the directory `path` or keep the one there; (fd, made it).
    fn make_dir(&mut self, path: &[u8]) -> Result<(OwnedFd, bool)> {
        let (dir, name) = split(path);
        let p = self.parent(dir, true)?.expect("created");
        let mut fresh = true;
        let pfd = self.parent_fd(p);
        match mkdirat(pfd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.sys("stat what is there", e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    fresh = false;
                } else {
                    remove_all(pfd, name).map_err(|e| self.sys("remove what was there", e))?;
                    mkdirat(pfd, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.sys("create directory", e))?;
                }
            }
            Err(e) => return Err(self.sys("create directory", e)),
        }
        let fd = openat(
            pfd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.sys("open directory", e))?;
        Ok((fd, fresh))
    }

    fn symlink<R: Read>(&mut self, e: &tar::Entry<'_, R>, m: &Meta) -> Result<()> {
        if self.path.is_empty() {
            return Err(self.err("the layer's root must be a directory"));
        }
        let target = e
            .link_name_bytes()
            .ok_or_else(|| self.err("symlink without a target"))?;
        if target.contains(&0) {
            return Err(self.err("NUL byte in the symlink target"));
        }
        let path = std::mem::take(&mut self.path);
        let r = self.symlink_inner(&target, m, &path);
        self.path = path;
        r?;
        self.mark(true);
        Ok(())
    }

    fn symlink_inner(&mut self, target: &[u8], m: &Meta, path: &[u8]) -> Result<()> {
        let (dir, name) = split(path);
        let p = self.parent(dir, true)?.expect("created");
        let pfd = self.parent_fd(p);
        let mut removed = false;
        loop {
            match symlinkat(target, pfd, name) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !removed => {
                    remove_all(pfd, name).map_err(|e| self.sys("remove what was there", e))?;
                    removed = true;
                }
                Err(e) => return Err(self.sys("create symlink", e)),
            }
        }
        self.finish_at(pfd, name, m, false)?;
        if removed {
            self.cache = None;
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of `name` in `pfd`,
    /// never following it.
    fn finish_at(&self, pfd: BorrowedFd<'_>, name: &[u8], m: &Meta, chmod: bool) -> Result<()> {
        fchownat(
            pfd,
            name,
            Some(Uid::from_raw(m.uid)),
            Some(Gid::from_raw(m.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.sys("chown", e))?;
        if chmod {
            // Just made by mknodat: not a symlink.
            fchmodat(
                pfd,
                name,
                Mode::from_bits_truncate(m.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| self.sys("chmod", e))?;
        }
        self.set_xattrs_at(pfd, name)?;
        utimensat(
            pfd,
            name,
            &m.mtime,
            &m.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.sys("set times", e))?;
        Ok(())
    }

    fn hardlink<R: Read>(&mut self, e: &tar::Entry<'_, R>) -> Result<()> {
        if self.path.is_empty() {
            return Err(self.err("the layer's root must be a directory"));
        }
        let raw_target = e
            .link_name_bytes()
            .ok_or_else(|| self.err("hardlink without a target"))?;
        let mut link = std::mem::take(&mut self.link);
        if let Err(why) = clean(&raw_target, &mut link) {
            self.link = link;
            return Err(self.err(format!(
                "hardlink target {:?} leaves the layer ({why})",
                String::from_utf8_lossy(&raw_target)
            )));
        }
        let path = std::mem::take(&mut self.path);
        let r = self.hardlink_inner(&link, &path, &raw_target);
        self.path = path;
        self.link = link;
        r?;
        self.mark(true);
        Ok(())
    }

    fn hardlink_inner(&mut self, target: &[u8], path: &[u8], raw_target: &[u8]) -> Result<()> {
        let shown = String::from_utf8_lossy(raw_target);
        if target.is_empty() {
            return Err(self.err(format!("hardlink target {shown:?} is the layer's root")));
        }
        let (tdir, tname) = split(target);
        let tfd = if tdir.is_empty() {
            None
        } else {
            match open_beneath(self.root.as_fd(), tdir, OFlag::O_PATH) {
                Ok(fd) => Some(fd),
                Err(Errno::ENOENT) => {
                    return Err(self.err(format!("hardlink target {shown:?} does not exist")))
                }
                Err(Errno::ELOOP) => {
                    return Err(self.err(format!(
                        "hardlink target {shown:?}: parent {} is a symlink",
                        String::from_utf8_lossy(tdir)
                    )))
                }
                Err(e) => return Err(self.sys(&format!("open hardlink target {shown:?}"), e)),
            }
        };
        let (dir, name) = split(path);
        let p = self.parent(dir, true)?.expect("created");
        let pfd = self.parent_fd(p);
        let tfd = tfd.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
        let mut removed = false;
        loop {
            // No AT_SYMLINK_FOLLOW: a symlink target is linked itself.
            match linkat(tfd, tname, pfd, name, AtFlags::empty()) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !removed => {
                    let a = fstatat(tfd, tname, AtFlags::AT_SYMLINK_NOFOLLOW);
                    let b = fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW);
                    if let (Ok(a), Ok(b)) = (a, b) {
                        if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
                            return Ok(()); // already that file
                        }
                    }
                    remove_all(pfd, name).map_err(|e| self.sys("remove what was there", e))?;
                    removed = true;
                }
                Err(Errno::ENOENT) => {
                    return Err(self.err(format!("hardlink target {shown:?} does not exist")))
                }
                Err(Errno::EPERM) => {
                    return Err(self.err(format!(
                        "hardlink target {shown:?}: cannot link to it (a directory?): EPERM"
                    )))
                }
                Err(e) => return Err(self.sys(&format!("link to {shown:?}"), e)),
            }
        }
        if removed {
            self.cache = None;
        }
        Ok(())
    }

    fn node<R: Read>(
        &mut self,
        e: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        m: &Meta,
    ) -> Result<()> {
        if self.path.is_empty() {
            return Err(self.err("the layer's root must be a directory"));
        }
        let (sflag, dev) = match kind {
            tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
            _ => {
                let h = e.header();
                let major = h
                    .device_major()
                    .map_err(|err| self.err(format!("bad device major: {err}")))?
                    .unwrap_or(0);
                let minor = h
                    .device_minor()
                    .map_err(|err| self.err(format!("bad device minor: {err}")))?
                    .unwrap_or(0);
                let f = if kind == tar::EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                (f, libc::makedev(major, minor))
            }
        };
        let path = std::mem::take(&mut self.path);
        let r = self.mknod(&path, sflag, dev, Some(m));
        self.path = path;
        r?;
        self.mark(true);
        Ok(())
    }

    /// mknodat `path` (replacing what is there); with `m`, its metadata.
    fn mknod(
        &mut self,
        path: &[u8],
        sflag: SFlag,
        dev: libc::dev_t,
        m: Option<&Meta>,
    ) -> Result<()> {
        let (dir, name) = split(path);
        if !is_name(name) {
            return Err(self.err(format!(
                "create node {:?}: not a name in the directory",
                String::from_utf8_lossy(name)
            )));
        }
        let p = self.parent(dir, true)?.expect("created");
        let pfd = self.parent_fd(p);
        let mut removed = false;
        loop {
            match mknodat(pfd, name, sflag, Mode::empty(), dev) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !removed => {
                    remove_all(pfd, name).map_err(|e| self.sys("remove what was there", e))?;
                    removed = true;
                }
                Err(e) => return Err(self.sys("create node", e)),
            }
        }
        if let Some(m) = m {
            self.finish_at(pfd, name, m, true)?;
        }
        if removed {
            self.cache = None;
        }
        Ok(())
    }

    /// `.wh.NAME` in `dir`.
    fn whiteout(&mut self, dir: &[u8], target: &[u8]) -> Result<()> {
        match self.mode {
            Whiteouts::Overlay => {
                let mut path = dir.to_vec();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(target);
                // Overlay's whiteout: a 0/0 character device, root-owned.
                self.mknod(&path, SFlag::S_IFCHR, 0, None)
            }
            Whiteouts::Apply => {
                let Some(p) = self.parent(dir, false)? else {
                    return Ok(()); // nothing below to delete
                };
                let pfd = self.parent_fd(p);
                remove_all(pfd, target).map_err(|e| {
                    self.sys(
                        &format!(
                            "remove {:?} for the whiteout",
                            String::from_utf8_lossy(target)
                        ),
                        e,
                    )
                })?;
                self.cache = None;
                Ok(())
            }
        }
    }

    /// `.wh..wh..opq` in `dir`.
    fn opaque(&mut self, dir: &[u8]) -> Result<()> {
        match self.mode {
            Whiteouts::Overlay => {
                let fd = if dir.is_empty() {
                    openat(
                        &self.root,
                        ".",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.sys("open the layer root", e))?
                } else {
                    let (fd, fresh) = self.make_dir(dir)?;
                    if fresh {
                        // Made here for the marker: 0755 like any parent.
                        fchmod(&fd, Mode::from_bits_truncate(0o755))
                            .map_err(|e| self.sys("chmod", e))?;
                    }
                    fd
                };
                fsetxattr(fd.as_fd(), c"trusted.overlay.opaque", b"y")
                    .map_err(|e| self.sys("set trusted.overlay.opaque", e))
            }
            Whiteouts::Apply => {
                let fd = if dir.is_empty() {
                    openat(
                        &self.root,
                        ".",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.sys("open the layer root", e))?
                } else {
                    match open_beneath(self.root.as_fd(), dir, OFlag::O_RDONLY) {
                        Ok(fd) => fd,
                        Err(Errno::ENOENT) => return Ok(()),
                        Err(e) => return Err(self.parent_error(dir, e)),
                    }
                };
                self.cache = None;
                let mut prefix = dir.to_vec();
                self.clear_lower(&fd, &mut prefix)
            }
        }
    }

    /// Remove from the directory `fd` (at `prefix`) everything this layer
    /// did not make; descend into directories it only put things into.
    fn clear_lower(&self, fd: &OwnedFd, prefix: &mut Vec<u8>) -> Result<()> {
        let names = list_dir(fd).map_err(|e| self.sys("list the opaque directory", e))?;
        let base = prefix.len();
        for n in names {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&n);
            match self.mine.get(prefix.as_slice()) {
                Some(true) => {}
                Some(false) => {
                    if let Ok(sub) = openat(
                        fd,
                        n.as_slice(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ) {
                        self.clear_lower(&sub, prefix)?;
                    }
                }
                None => remove_all(fd.as_fd(), &n).map_err(|e| {
                    self.sys(
                        &format!(
                            "remove {:?} under the opaque directory",
                            String::from_utf8_lossy(prefix)
                        ),
                        e,
                    )
                })?,
            }
            prefix.truncate(base);
        }
        Ok(())
    }

    /// Directory times, now that nothing more is created in them.
    fn finish(&mut self) -> Result<()> {
        for (path, t) in &self.dir_times {
            let fd = if path.is_empty() {
                None
            } else {
                match open_beneath(self.root.as_fd(), path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW) {
                    Ok(fd) => Some(fd),
                    // Removed or replaced by a later entry.
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
                    Err(e) => {
                        return Err(ImageError::Entry {
                            blob: self.blob.to_string(),
                            entry: String::from_utf8_lossy(path).into_owned(),
                            msg: format!("open to set times: {e}"),
                        })
                    }
                }
            };
            let fd = fd.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            futimens(fd, t, t).map_err(|e| ImageError::Entry {
                blob: self.blob.to_string(),
                entry: String::from_utf8_lossy(path).into_owned(),
                msg: format!("set times: {e}"),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second line of defence: whatever a caller passes, removing
    /// `..`, `.` or a path is refused and the parent keeps its contents.
    #[test]
    fn remove_all_refuses_dot_names() {
        let t = std::env::temp_dir().join(format!(
            "berth-image-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _g = Gone(t.clone());
        std::fs::create_dir_all(t.join("layer/sub")).unwrap();
        std::fs::write(t.join("canary"), b"c").unwrap();
        std::fs::write(t.join("layer/sub/f"), b"f").unwrap();
        let dir = openat(
            nix::fcntl::AT_FDCWD,
            &t.join("layer"),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        for name in [&b".."[..], b".", b"", b"sub/f", b"../canary"] {
            assert_eq!(
                remove_all(dir.as_fd(), name),
                Err(Errno::EINVAL),
                "{name:?}"
            );
        }
        assert!(t.join("canary").exists());
        assert!(t.join("layer/sub/f").exists());
        remove_all(dir.as_fd(), b"sub").unwrap();
        assert!(!t.join("layer/sub").exists());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(
            parse_pax_time("12.123456789999"),
            Some(TimeSpec::new(12, 123_456_789))
        );
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(TimeSpec::new(-2, 750_000_000))
        );
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.x"), None);
    }

    #[test]
    fn cleaning() {
        let mut out = Vec::new();
        assert_eq!(clean(b"./a//b/./c/", &mut out), Ok(()));
        assert_eq!(out, b"a/b/c");
        assert_eq!(clean(b"./", &mut out), Ok(()));
        assert!(out.is_empty());
        assert!(clean(b"a/../b", &mut out).is_err());
        assert!(clean(b"/a", &mut out).is_err());
        assert_eq!(clean(b"/", &mut out), Ok(()));
        assert!(out.is_empty(), "\"/\" alone is the root");
        assert!(clean(b"..", &mut out).is_err());
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert!(is_name(b"...") && is_name(b".wh.") && is_name(b"a"));
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"../x"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_zero(&[0u8; 4096]));
        let mut b = [0u8; 4096];
        b[4095] = 1;
        assert!(!is_zero(&b));
    }
}
