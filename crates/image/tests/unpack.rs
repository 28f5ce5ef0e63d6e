//! Unpacking as root on the real filesystem: refusals (nothing written
//! outside the layer), preservation of owners, modes, xattrs, special
//! files, hardlinks, sparse files, long names, and both whiteout modes.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_image::unpack::unpack;
use berth_image::{ImageError, Whiteouts};
use common::*;
use tar::EntryType;

const BLOB: &str = "sha256:test";

/// A temp dir with `dest/` (the layer) and `outside/` next to it.
struct Scene {
    t: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let t = tmp();
        std::fs::create_dir(t.path().join("dest")).unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        Scene { t }
    }
    fn dest(&self) -> std::path::PathBuf {
        self.t.path().join("dest")
    }
    fn outside(&self) -> std::path::PathBuf {
        self.t.path().join("outside")
    }
    fn unpack(&self, tar: &[u8], mode: Whiteouts) -> berth_image::Result<berth_image::Stats> {
        unpack(tar, &self.dest(), mode, BLOB)
    }
}

fn entry_err(e: ImageError, entry: &str, msg: &str) {
    match &e {
        ImageError::Entry {
            blob,
            entry: en,
            msg: m,
        } => {
            assert_eq!(blob, BLOB);
            assert_eq!(en, entry, "{e}");
            assert!(m.contains(msg), "{e}");
        }
        _ => panic!("not an entry error: {e}"),
    }
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn dotdot_is_refused_and_nothing_lands_outside() {
    let s = Scene::new();
    let tar = Tar::new()
        .file("ok", b"fine")
        .raw(EntryType::Regular, b"../outside/x", b"", b"evil")
        .build();
    let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
    entry_err(e, "../outside/x", "path leaves the layer (..)");
    assert!(!s.outside().join("x").exists());
    // Hidden in the middle too.
    let tar = Tar::new()
        .raw(EntryType::Regular, b"a/../../outside/y", b"", b"evil")
        .build();
    let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
    entry_err(e, "a/../../outside/y", "(..)");
    assert!(!s.outside().join("y").exists());
}

#[test]
fn absolute_is_refused() {
    let s = Scene::new();
    let target = s.outside().join("abs");
    let name = target.as_os_str().as_bytes().to_vec();
    let tar = Tar::new()
        .raw(EntryType::Regular, &name, b"", b"evil")
        .build();
    let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
    entry_err(e, target.to_str().unwrap(), "absolute path");
    assert!(!target.exists());
}

#[test]
fn symlinked_parent_is_refused() {
    let s = Scene::new();
    let out = s.outside();
    let tar = Tar::new()
        .symlink("lnk", out.to_str().unwrap())
        .raw(EntryType::Regular, b"lnk/passwd", b"", b"evil")
        .build();
    let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
    entry_err(e, "lnk/passwd", "parent lnk is a symlink");
    assert!(!out.join("passwd").exists());
    // A relative symlink deeper down, and a directory through it.
    let s = Scene::new();
    let tar = Tar::new()
        .dir("a", 0o755)
        .symlink("a/up", "../../outside")
        .raw(EntryType::Directory, b"a/up/newdir/", b"", b"")
        .build();
    let e = s.unpack(&tar, Whiteouts::Apply).unwrap_err();
    entry_err(e, "a/up/newdir/", "parent a/up is a symlink");
    assert!(!s.outside().join("newdir").exists());
}

#[test]
fn hardlinks_out_of_the_layer_are_refused() {
    for target in [&b"../../etc/shadow"[..], b"/etc/shadow"] {
        let s = Scene::new();
        let tar = Tar::new()
            .raw(EntryType::Link, b"shadow", target, b"")
            .build();
        let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
        let shown = String::from_utf8_lossy(target);
        entry_err(
            e,
            "shadow",
            &format!("hardlink target {shown:?} leaves the layer"),
        );
        assert!(std::fs::symlink_metadata(s.dest().join("shadow")).is_err());
    }
    // Through a symlinked directory inside the layer.
    let s = Scene::new();
    std::fs::write(s.outside().join("secret"), b"s").unwrap();
    let tar = Tar::new()
        .symlink("out", s.outside().to_str().unwrap())
        .raw(EntryType::Link, b"copy", b"out/secret", b"")
        .build();
    let e = s.unpack(&tar, Whiteouts::Overlay).unwrap_err();
    entry_err(e, "copy", "parent out is a symlink");
    assert!(std::fs::symlink_metadata(s.dest().join("copy")).is_err());
    assert_eq!(
        std::fs::metadata(s.outside().join("secret"))
            .unwrap()
            .nlink(),
        1
    );
}

#[test]
fn whiteout_outside_is_refused() {
    let s = Scene::new();
    std::fs::write(s.outside().join("x"), b"keep").unwrap();
    let tar = Tar::new()
        .raw(EntryType::Regular, b"../outside/.wh.x", b"", b"")
        .build();
    let e = s.unpack(&tar, Whiteouts::Apply).unwrap_err();
    entry_err(e, "../outside/.wh.x", "(..)");
    assert!(s.outside().join("x").exists());
    let tar = Tar::new()
        .raw(EntryType::Regular, b"../.wh.outside", b"", b"")
        .build();
    let e = s.unpack(&tar, Whiteouts::Apply).unwrap_err();
    entry_err(e, "../.wh.outside", "(..)");
    assert!(s.outside().exists());
}

#[test]
fn ownership_modes_xattrs_and_special_files() {
    let s = Scene::new();
    let cap = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // v2: cap_net_bind_service
    let tar = Tar::new()
        .dir("./bin", 0o751)
        .file_owned("bin/suid", b"#!/bin/sh\n", 0o4755, 1234, 5678)
        .file_owned("bin/sgid-sticky", b"x", 0o3711, 0, 42)
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hi there"),
            ("SCHILY.xattr.security.capability", &cap),
        ])
        .file_owned("bin/ping", b"ELF", 0o755, 0, 0)
        .node("dev/null", EntryType::Char, 1, 3, 0o666)
        .node("dev/loop9", EntryType::Block, 7, 9, 0o660)
        .node("run/fifo", EntryType::Fifo, 0, 0, 0o620)
        .pax(&[("SCHILY.xattr.user.sym", b"skip")])
        .symlink("bin/sh", "busybox")
        .file("etc/passwd", b"root:x:0:0\n")
        .hardlink("etc/passwd-link", "etc/passwd")
        .symlink("etc/abs", "/nowhere/at/all")
        .hardlink("etc/abs-link", "etc/abs")
        .build();
    let st = s.unpack(&tar, Whiteouts::Overlay).unwrap();
    assert_eq!(st.entries, 12);
    let d = s.dest();
    let m = std::fs::metadata(d.join("bin/suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4755));
    let m = std::fs::metadata(d.join("bin/sgid-sticky")).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (42, 0o3711));
    assert_eq!(
        std::fs::metadata(d.join("bin")).unwrap().mode() & 0o7777,
        0o751
    );
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::metadata(d.join("bin")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        getxattr(&d.join("bin/ping"), "user.comment").unwrap(),
        b"hi there"
    );
    assert_eq!(
        getxattr(&d.join("bin/ping"), "security.capability").unwrap(),
        cap
    );
    let m = std::fs::symlink_metadata(d.join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!((m.rdev(), m.mode() & 0o7777), (libc::makedev(1, 3), 0o666));
    let m = std::fs::symlink_metadata(d.join("dev/loop9")).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), libc::makedev(7, 9));
    let m = std::fs::symlink_metadata(d.join("run/fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o620);
    assert_eq!(
        std::fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::symlink_metadata(d.join("bin/sh")).unwrap().mtime(),
        1_600_000_000
    );
    let a = std::fs::metadata(d.join("etc/passwd")).unwrap();
    let b = std::fs::metadata(d.join("etc/passwd-link")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    // A hardlink to a symlink links the symlink itself.
    let a = std::fs::symlink_metadata(d.join("etc/abs")).unwrap();
    let b = std::fs::symlink_metadata(d.join("etc/abs-link")).unwrap();
    assert!(b.file_type().is_symlink());
    assert_eq!(a.ino(), b.ino());
    // Parents made for entries without their own are 0755 root.
    let m = std::fs::metadata(d.join("dev")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755));
}

#[test]
fn sparse_and_long_names() {
    let s = Scene::new();
    let mut big = vec![0u8; 64 << 20];
    big[10 << 20] = 1;
    let long_name = format!("{}/file", "n".repeat(150));
    let deep: String = (0..30)
        .map(|i| format!("directory-{i:02}/"))
        .collect::<String>()
        + "leaf";
    assert!(deep.len() > 255);
    let pax_name = format!("{}.pax", "p".repeat(120));
    let tar = Tar::new()
        .file("sparse", &big)
        .file(&long_name, b"long")
        .file(&deep, b"deep")
        .pax(&[("path", pax_name.as_bytes())])
        .file("short", b"pax")
        .build();
    let st = s.unpack(&tar, Whiteouts::Overlay).unwrap();
    assert_eq!(st.bytes, (64 << 20) + 4 + 4 + 3);
    let m = std::fs::metadata(s.dest().join("sparse")).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
    let back = std::fs::read(s.dest().join("sparse")).unwrap();
    assert!(back == big);
    assert_eq!(std::fs::read(s.dest().join(&long_name)).unwrap(), b"long");
    assert_eq!(std::fs::read(s.dest().join(&deep)).unwrap(), b"deep");
    assert_eq!(std::fs::read(s.dest().join(&pax_name)).unwrap(), b"pax");
    assert!(!s.dest().join("short").exists());
}

#[test]
fn umask_does_not_change_modes() {
    let s = Scene::new();
    let tar = Tar::new()
        .dir("open", 0o777)
        .file_owned("open/all", b"x", 0o777, 0, 0)
        .build();
    s.unpack(&tar, Whiteouts::Overlay).unwrap();
    assert_eq!(
        std::fs::metadata(s.dest().join("open")).unwrap().mode() & 0o7777,
        0o777
    );
    assert_eq!(
        std::fs::metadata(s.dest().join("open/all")).unwrap().mode() & 0o7777,
        0o777
    );
}

#[test]
fn overlay_whiteouts() {
    let s = Scene::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.gone", b"")
        .file("var/.wh..wh..opq", b"")
        .file("var/new", b"n")
        .file(".wh..wh.plnk/123", b"aufs")
        .build();
    s.unpack(&tar, Whiteouts::Overlay).unwrap();
    let m = std::fs::symlink_metadata(s.dest().join("etc/gone")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!((m.rdev(), m.uid(), m.gid()), (0, 0, 0));
    assert!(!s.dest().join("etc/.wh.gone").exists());
    assert_eq!(
        getxattr(&s.dest().join("var"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(!s.dest().join("var/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(s.dest().join("var/new")).unwrap(), b"n");
    assert!(!s.dest().join(".wh..wh.plnk").exists());
}

#[test]
fn apply_whiteouts_and_replacement() {
    let s = Scene::new();
    let lower = Tar::new()
        .file("etc/gone", b"old")
        .file("etc/keep", b"keep")
        .file("tree/a/b/c", b"deep")
        .file("opq/lower1", b"1")
        .file("opq/sub/lower2", b"2")
        .file("opq/kept-sub/lower3", b"3")
        .dir("was-dir/inner", 0o755)
        .file("was-file", b"f")
        .build();
    s.unpack(&lower, Whiteouts::Apply).unwrap();
    let upper = Tar::new()
        .file("opq/early", b"e") // before the marker: kept
        .file("opq/kept-sub/mine", b"m") // into a lower directory
        .file("opq/.wh..wh..opq", b"")
        .file("opq/late", b"l")
        .file("etc/.wh.gone", b"")
        .file(".wh.tree", b"")
        .file("etc/.wh.never-was", b"")
        .file("nodir/.wh.x", b"")
        .file("was-dir", b"now a file")
        .dir("was-file", 0o700)
        .build();
    s.unpack(&upper, Whiteouts::Apply).unwrap();
    let d = s.dest();
    assert!(!d.join("etc/gone").exists());
    assert!(d.join("etc/keep").exists());
    assert!(!d.join("tree").exists());
    assert!(!d.join("opq/lower1").exists());
    assert!(!d.join("opq/sub").exists());
    assert!(!d.join("opq/kept-sub/lower3").exists());
    assert_eq!(std::fs::read(d.join("opq/kept-sub/mine")).unwrap(), b"m");
    assert_eq!(std::fs::read(d.join("opq/early")).unwrap(), b"e");
    assert_eq!(std::fs::read(d.join("opq/late")).unwrap(), b"l");
    assert!(!d.join("nodir").exists());
    assert_eq!(std::fs::read(d.join("was-dir")).unwrap(), b"now a file");
    assert!(std::fs::metadata(d.join("was-file")).unwrap().is_dir());
    assert!(getxattr(&d.join("opq"), "trusted.overlay.opaque").is_none());
    assert!(!d.join("etc/never-was").exists());
    assert!(!d.join("etc/.wh.gone").exists());
}

#[test]
fn replace_symlink_with_directory_does_not_follow() {
    let s = Scene::new();
    let tar = Tar::new()
        .symlink("d", s.outside().to_str().unwrap())
        .dir("d", 0o700)
        .file("d/inside", b"i")
        .build();
    s.unpack(&tar, Whiteouts::Apply).unwrap();
    assert!(std::fs::symlink_metadata(s.dest().join("d"))
        .unwrap()
        .is_dir());
    assert!(s.dest().join("d/inside").exists());
    assert!(!s.outside().join("inside").exists());
    // And the outside directory's mode was not changed through the link.
    assert_ne!(
        std::fs::metadata(s.outside()).unwrap().mode() & 0o777,
        0o700
    );
}

#[test]
fn trailing_garbage_and_truncated_tar() {
    let s = Scene::new();
    let tar = Tar::new().file("f", &[1u8; 5000]).build();
    let e = s.unpack(&tar[..1536], Whiteouts::Overlay).unwrap_err();
    assert!(e.to_string().contains(BLOB), "{e}");
    assert!(!matches!(e, ImageError::Entry { .. }), "{e}");
}

#[test]
fn pax_mtime_with_nanoseconds() {
    let s = Scene::new();
    let tar = Tar::new()
        .pax(&[("mtime", b"1700000000.25")])
        .file("f", b"x")
        .build();
    s.unpack(&tar, Whiteouts::Overlay).unwrap();
    let m = std::fs::metadata(s.dest().join("f")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
}

/// The names directly in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `top/p/dest` (the layer, with lower content in it), a canary beside
/// the layer (`top/p/canary`) and one beside its parent (`top/canary`).
struct Nest {
    t: tempfile::TempDir,
}

impl Nest {
    fn new() -> Nest {
        let t = tmp();
        let dest = t.path().join("p/dest");
        std::fs::create_dir_all(dest.join("a/sub")).unwrap();
        std::fs::write(dest.join("keep"), b"k").unwrap();
        std::fs::write(dest.join("a/keep"), b"ak").unwrap();
        std::fs::write(dest.join("a/sub/keep"), b"ask").unwrap();
        std::fs::write(t.path().join("p/canary"), b"beside").unwrap();
        std::fs::write(t.path().join("canary"), b"above").unwrap();
        Nest { t }
    }
    fn dest(&self) -> std::path::PathBuf {
        self.t.path().join("p/dest")
    }
    /// Nothing beside the layer or its parent changed, nor what was in it.
    fn check(&self, case: &str) {
        let top = self.t.path();
        assert_eq!(names(top), ["canary", "p"], "{case}: beside the parent");
        assert_eq!(
            names(&top.join("p")),
            ["canary", "dest"],
            "{case}: beside dest"
        );
        assert_eq!(
            std::fs::read(top.join("canary")).unwrap(),
            b"above",
            "{case}"
        );
        assert_eq!(
            std::fs::read(top.join("p/canary")).unwrap(),
            b"beside",
            "{case}"
        );
        let d = self.dest();
        assert_eq!(std::fs::read(d.join("keep")).unwrap(), b"k", "{case}");
        assert_eq!(std::fs::read(d.join("a/keep")).unwrap(), b"ak", "{case}");
        assert_eq!(
            std::fs::read(d.join("a/sub/keep")).unwrap(),
            b"ask",
            "{case}"
        );
    }
}

/// Finding 1: `.wh...` names `..` and `.wh..` names `.`: whiteouts that
/// would delete the layer's parent's contents or the layer's own.
#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    let cases: &[(&str, &str)] = &[
        (".wh...", "whiteout of \"..\""),
        ("./.wh...", "whiteout of \"..\""),
        (".wh...//", "whiteout of \"..\""),
        ("a/.wh...", "whiteout of \"..\""),
        ("a/sub/.wh...", "whiteout of \"..\""),
        (".wh..", "whiteout of \".\""),
        ("a/.wh..", "whiteout of \".\""),
        ("a/./.wh..", "whiteout of \".\""),
        // A `/` in the whiteout's name splits it: a whiteout directory.
        (".wh../keep", "whiteout name used as a directory"),
        (".wh.../p", "whiteout name used as a directory"),
        ("a/.wh.sub/keep", "whiteout name used as a directory"),
    ];
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        for kind in [EntryType::Regular, EntryType::Directory] {
            for (name, msg) in cases {
                let case = format!("{mode:?} {kind:?} {name:?}");
                let n = Nest::new();
                let tar = Tar::new()
                    .dir("a", 0o755)
                    .raw(kind, name.as_bytes(), b"", b"")
                    .file("after", b"not reached")
                    .build();
                let e = unpack(&tar[..], &n.dest(), mode, BLOB).unwrap_err();
                entry_err(e, name, msg);
                n.check(&case);
                assert!(!n.dest().join("after").exists(), "{case}");
            }
        }
    }
}

/// The same names through a PAX `path` record and a GNU long name (a
/// whiteout's name can come from either).
#[test]
fn whiteouts_of_dotdot_through_long_names_are_refused() {
    let long_dir = "d".repeat(120);
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        let n = Nest::new();
        let tar = Tar::new()
            .pax(&[("path", b"a/.wh...")])
            .file("short", b"")
            .build();
        let e = unpack(&tar[..], &n.dest(), mode, BLOB).unwrap_err();
        entry_err(e, "a/.wh...", "whiteout of \"..\"");
        n.check(&format!("{mode:?} pax"));

        let n = Nest::new();
        let name = format!("{long_dir}/.wh...");
        let tar = Tar::new().file(&name, b"").build();
        let e = unpack(&tar[..], &n.dest(), mode, BLOB).unwrap_err();
        entry_err(e, &name, "whiteout of \"..\"");
        n.check(&format!("{mode:?} gnu long name"));
    }
}

/// Runs `f` on a thread; panics if it takes longer than `secs` (a hang
/// detector with a generous bound, not a benchmark).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
}

/// Finding 3: a GNU sparse entry whose one data block sits at 2^62: the
/// hole before it must not be produced by reading zeros.
#[test]
fn sparse_entry_with_a_huge_hole_fails_fast() {
    let s = Scene::new();
    let off = 1u64 << 62;
    let tar = Tar::new()
        .sparse("huge", off + 512, &[(off, &[b'x'; 512])])
        .file("after", b"a")
        .build();
    let dest = s.dest();
    let r = within(60, move || {
        unpack(&tar[..], &dest, Whiteouts::Overlay, BLOB)
    });
    let e = r.unwrap_err();
    entry_err(e, "huge", "GNU sparse file of 4611686018427388416 bytes");
    assert!(!s.dest().join("huge").exists());
    assert!(!s.dest().join("after").exists());
}

/// A sparse file up to the bound is made with its holes, its data placed by
/// the map (extension headers too), owner and mode set, and the entries
/// after it read from the right place.
#[test]
fn sparse_entries_are_placed_by_their_map() {
    let s = Scene::new();
    const GIB: u64 = 1 << 30;
    let blocks: Vec<Vec<u8>> = (0..30u8)
        .map(|i| vec![b'a' + i % 26; 512 + i as usize])
        .collect();
    let chunks: Vec<(u64, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u64 * 7 * GIB + 4096, &d[..]))
        .collect();
    let real = 1u64 << 40; // the bound itself
    let long = format!("{}/sparse", "l".repeat(110));
    let tar = Tar::new()
        .sparse(&long, real, &chunks)
        .sparse(
            "tail-data",
            3 * 4096,
            &[(0, b"head"), (2 * 4096, &[b'z'; 4096])],
        )
        .sparse("empty", 0, &[])
        .sparse("all-hole", 5000, &[(5000, b"")])
        .file("after", b"after")
        .build();
    let dest = s.dest();
    let st = within(120, move || {
        unpack(&tar[..], &dest, Whiteouts::Overlay, BLOB)
    })
    .unwrap();
    assert_eq!(st.entries, 5);
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(s.dest().join(&long)).unwrap();
    let m = f.metadata().unwrap();
    assert_eq!(m.len(), real);
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (7, 8, 0o640));
    assert!(m.blocks() * 512 < 4 << 20, "{} blocks", m.blocks());
    for (off, data) in &chunks {
        let mut back = vec![0u8; data.len() + 8];
        f.read_exact_at(&mut back, *off - 4).unwrap();
        assert_eq!(&back[..4], &[0; 4], "hole before {off}");
        assert_eq!(&back[4..4 + data.len()], *data, "data at {off}");
        assert_eq!(&back[4 + data.len()..], &[0; 4], "hole after {off}");
    }
    let back = std::fs::read(s.dest().join("tail-data")).unwrap();
    let mut want = vec![0u8; 3 * 4096];
    want[..4].copy_from_slice(b"head");
    want[2 * 4096..].fill(b'z');
    assert!(back == want);
    assert_eq!(std::fs::metadata(s.dest().join("empty")).unwrap().len(), 0);
    assert_eq!(
        std::fs::read(s.dest().join("all-hole")).unwrap(),
        vec![0u8; 5000]
    );
    assert_eq!(std::fs::read(s.dest().join("after")).unwrap(), b"after");
}

/// Sparse maps that do not describe the archived data are refused, naming
/// the entry, before anything is made.
#[test]
fn bad_sparse_maps_are_refused() {
    /// (real size, archived data size, map, what the error says)
    type Case<'a> = (u64, u64, &'a [(u64, u64)], &'a str);
    let cases: &[Case] = &[
        (
            100,
            20,
            &[(50, 10), (40, 10)],
            "out of order or overlapping",
        ),
        (100, 20, &[(0, 15), (10, 5)], "out of order or overlapping"),
        (100, 20, &[(0, 10)], "lists 10 bytes of data"),
        (100, 10, &[(0, 10), (50, 10)], "more data than"),
        (100, 10, &[(95, 10)], "past the file's size (100 bytes)"),
        (
            (1 << 40) + 1,
            10,
            &[(0, 10)],
            "GNU sparse file of 1099511627777 bytes",
        ),
        (100, 10, &[(u64::MAX - 5, 10)], "overflows"),
    ];
    for (real, size, map, msg) in cases {
        let s = Scene::new();
        let data = vec![b'd'; *size as usize];
        let tar = Tar::new()
            .sparse_raw("bad", *real, *size, map, &data)
            .file("after", b"a")
            .build();
        let e = s.unpack(&tar, Whiteouts::Apply).unwrap_err();
        entry_err(e, "bad", msg);
        assert!(!s.dest().join("bad").exists(), "{msg}");
    }
}

/// Serves `head`, then `b'a'` up to `limit` bytes in all, counting what
/// was read: a tar that claims a huge entry without the test holding it.
struct Claims {
    head: Vec<u8>,
    pos: u64,
    limit: u64,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::io::Read for Claims {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.limit {
            return Err(std::io::Error::other("test reader: read past its limit"));
        }
        let n = (buf.len() as u64).min(self.limit - self.pos) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos as usize + i;
            *b = self.head.get(p).copied().unwrap_or(b'a');
        }
        self.pos += n as u64;
        self.served
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Finding 4: a GNU long name/long link or PAX header declaring 8 GiB is
/// refused from its header, without reading (and holding) its content.
#[test]
fn huge_long_name_and_pax_headers_are_refused_unread() {
    let huge = 8u64 << 30;
    for (flag, what) in [
        (b'L', "GNU long name"),
        (b'K', "GNU long link name"),
        (b'x', "PAX header"),
        (b'g', "PAX global header"),
    ] {
        let s = Scene::new();
        // A real entry first, so the refused header is not at byte 0.
        let mut head = Tar::new().file("first", b"1").build();
        head.truncate(head.len() - 1024); // no end marker
        let mut h = tar::Header::new_gnu();
        h.set_path("././@LongLink").unwrap();
        h.set_entry_type(EntryType::new(flag));
        h.set_size(huge);
        h.set_cksum();
        let at = head.len();
        head.extend_from_slice(h.as_bytes());
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = Claims {
            head,
            pos: 0,
            limit: 64 << 20,
            served: served.clone(),
        };
        let e = unpack(r, &s.dest(), Whiteouts::Apply, BLOB).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(BLOB), "{msg}");
        assert!(
            msg.contains(&format!("{what} of {huge} bytes")),
            "{what}: {msg}"
        );
        assert!(msg.contains(&format!("byte {at}")), "{msg}");
        let n = served.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n < 1 << 20, "{what}: read {n} bytes of the stream");
        assert_eq!(std::fs::read(s.dest().join("first")).unwrap(), b"1");
    }
}

/// Big but bounded PAX headers (a 900 KiB record) still unpack; and the
/// framing follows a PAX `size` over the header's, so a tar stored inside a
/// file (its headers 512-aligned in the stream) is data, not headers.
#[test]
fn framing_follows_pax_sizes_and_file_content() {
    let s = Scene::new();
    // A tar with a huge long-name header, stored as a file's content.
    let mut inner = Vec::new();
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(EntryType::GNULongName);
    h.set_size(8 << 30);
    h.set_cksum();
    inner.extend_from_slice(h.as_bytes());
    inner.extend_from_slice(&[b'a'; 1024]);
    let big = vec![b'c'; 900 << 10];
    let mut t = Tar::new();
    t.file("inner.tar", &inner).pax(&[
        ("comment", &big),
        ("size", inner.len().to_string().as_bytes()),
    ]);
    // Header size 0, PAX size = the content's: the tar crate reads the
    // content; a framer that believed the header would take the inner
    // header for the next one.
    let mut h = tar::Header::new_ustar();
    h.set_path("pax-sized").unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(0);
    h.set_cksum();
    let mut tar = t.build();
    tar.truncate(tar.len() - 1024);
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&inner);
    let mut rest = Tar::new().file("after", b"after").build();
    tar.append(&mut rest);
    s.unpack(&tar, Whiteouts::Overlay).unwrap();
    assert_eq!(std::fs::read(s.dest().join("inner.tar")).unwrap(), inner);
    assert_eq!(std::fs::read(s.dest().join("pax-sized")).unwrap(), inner);
    assert_eq!(std::fs::read(s.dest().join("after")).unwrap(), b"after");
}

/// Writes the fuzz seeds that reproduce the review's findings 1, 3 and 4
/// into fuzz/corpus/unpack (run by hand: `cargo test -p berth-image --test
/// unpack -- --ignored write_fuzz_seeds`).
#[test]
#[ignore = "writes fuzz seeds into the source tree; run by hand"]
fn write_fuzz_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/unpack");
    let write = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    write(
        "seed-wh-dotdot-top.tar",
        &Tar::new()
            .raw(EntryType::Regular, b".wh...", b"", b"")
            .build(),
    );
    write(
        "seed-wh-dotdot-sub.tar",
        &Tar::new()
            .dir("a", 0o755)
            .raw(EntryType::Regular, b"a/.wh...", b"", b"")
            .build(),
    );
    write(
        "seed-wh-dot.tar",
        &Tar::new()
            .dir("a", 0o755)
            .raw(EntryType::Regular, b"a/.wh..", b"", b"")
            .raw(EntryType::Regular, b".wh..", b"", b"")
            .build(),
    );
    let off = 1u64 << 62;
    write(
        "seed-sparse-huge-hole.tar",
        &Tar::new()
            .sparse("huge", off + 16, &[(off, b"0123456789abcdef")])
            .build(),
    );
    let blocks: Vec<(u64, &[u8])> = (0..27u64).map(|i| (i * 8192 + 100, &b"data"[..])).collect();
    write(
        "seed-sparse-ext.tar",
        &Tar::new()
            .sparse("ext", 27 * 8192 + 100, &blocks)
            .file("after", b"a")
            .build(),
    );
    for (name, flag) in [
        ("seed-longname-huge.tar", b'L'),
        ("seed-pax-huge.tar", b'x'),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path("././@LongLink").unwrap();
        h.set_entry_type(EntryType::new(flag));
        h.set_size(8 << 30);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        t.extend_from_slice(&[b'n'; 1024]);
        write(name, &t);
    }
}
