//! Attacks of the classes that broke runc, tried against real containers:
//! each test makes the attack and shows it fails, and says (or shows, with a
//! control run that leaves the protection out) what would happen if berth
//! were wrong.
//!
//! 1. Mount destinations symlinked or raced out of the rootfs
//!    (CVE-2021-30465), and symlinked mount sources.
//! 2. A host descriptor or working directory reachable from the container
//!    (CVE-2024-21626): process.cwd through /proc/self/fd, descriptors at exec.
//! 3. Masked and read-only paths the container could unmask or remount.
//! 4. Device nodes beyond the spec's list.
//!
//! Evidence is gathered on both sides: what the program sees, the host's
//! mount table and files, and the container's own mount table as it stands
//! before pivot_root (saved by a createRuntime hook, which runs on the host
//! at that moment): a mount the runtime misplaced onto a host path is visible
//! there even though pivot_root would hide it afterwards.
//!
//! Real containers, as root: `cargo test -p berth --test hardening`.

use berth_integration::serde_json::{json, Value};
use berth_integration::{
    find_mount, host_mounts_under, mount_points, mount_shared_tmpfs, pipe, recv_fd,
    saved_mount_tables, Bundle, Opts, Out, Runtime, DEFAULT_CONTAINER_CAPS,
};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

// ---- helpers ----

/// Every entry under `dir` (not following symlinks) with its type and, for
/// files, content: compared before and after to show a host tree untouched.
fn tree(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let what = if md.is_dir() {
                walk(root, &p, out);
                "dir".to_string()
            } else if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned()
            };
            out.push((rel, what));
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `p` (an absolute host path) as the same path inside `rootfs`.
fn inside(rootfs: &Path, p: &Path) -> PathBuf {
    rootfs.join(p.strip_prefix("/").unwrap())
}

/// `p` without its leading `/`, as text.
fn rel(p: &Path) -> String {
    p.strip_prefix("/").unwrap().display().to_string()
}

fn mkdirs(p: &Path) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Mount points at or below `dir` in any of the saved pre-pivot tables.
fn saved_mounts_under(tables: &[String], dir: &Path) -> Vec<PathBuf> {
    tables
        .iter()
        .flat_map(|t| mount_points(t))
        .filter(|mp| mp.starts_with(dir))
        .collect()
}

/// A container that could not be made must leave nothing: no state, and
/// nothing mounted under its bundle.
#[track_caller]
fn assert_clean_failure(rt: &Runtime, b: &Bundle, id: &str, out: &Out) {
    assert!(!out.timed_out, "timed out: {out}");
    assert!(rt.state(id).is_err(), "a failed run left state: {out}");
    let left = host_mounts_under(b.path());
    assert!(left.is_empty(), "mounts left on the host: {left:?}; {out}");
}

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// An `O_PATH` descriptor of a host directory, to hand to the runtime.
fn dir_fd(p: &Path) -> OwnedFd {
    let c = cstring(p);
    // SAFETY: open(2) with a valid C string; the descriptor is ours.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    assert!(
        fd >= 0,
        "open {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

fn fd_target(fd: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The descriptors in a probe report, as (number, target).
fn report_fds(r: &Value) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = r["fds"]
        .as_object()
        .unwrap_or_else(|| panic!("no fds in the report: {r}"))
        .iter()
        .map(|(n, t)| (n.parse().unwrap(), t.as_str().unwrap_or("").to_string()))
        .collect();
    v.sort();
    v
}

// ---- 1. mount destinations and sources (CVE-2021-30465 class) ----

/// Symlinks in the rootfs used as mount destinations: absolute, relative
/// with far too many `..`, a chain, one in the middle of the destination, one
/// to a file, and `..` in the destination itself. Each names a host
/// directory that also exists in the rootfs; every mount must land on the
/// rootfs's copy. Resolved on the host (a plain `mount` on rootfs + path),
/// each would cover the host's directory instead: the pre-pivot mount table
/// would list it and the container would not see the mount.
#[test]
fn symlinked_mount_destinations_land_in_the_rootfs() {
    let rt = Runtime::new("hd-symdst");
    let host = rt.tempdir();
    for d in ["a", "b", "c", "d", "g"] {
        mkdirs(&host.join(d));
        write(&host.join(d).join("host-marker"), "host\n");
    }
    write(&host.join("file"), "host\n");
    let host_before = tree(&host);
    let src = rt.tempdir();
    write(&src.join("from-source"), "source\n");
    write(&src.join("file.txt"), "source\n");

    let mut b = rt.bundle();
    let r = b.rootfs();
    for d in ["a", "b", "c", "d", "g"] {
        mkdirs(&inside(&r, &host.join(d)));
    }
    write(&inside(&r, &host.join("file")), "rootfs\n");
    let up = "../".repeat(20);
    let h = rel(&host);
    symlink(host.join("a"), r.join("l-abs")).unwrap();
    symlink(format!("{up}{h}/b"), r.join("l-rel")).unwrap();
    symlink("/l-chain2", r.join("l-chain1")).unwrap();
    symlink("l-chain3", r.join("l-chain2")).unwrap();
    symlink(format!("../../{h}/c"), r.join("l-chain3")).unwrap();
    symlink(&host, r.join("l-mid")).unwrap();
    symlink(host.join("file"), r.join("etc/l-file")).unwrap();

    let tmpfs = |dest: String| json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"});
    let bind = |dest: &str, s: &Path| json!({"destination": dest, "type": "bind", "source": s, "options": ["rbind"]});
    b.push("/mounts", tmpfs("/l-abs".into()));
    b.push("/mounts", bind("/l-rel", &src));
    b.push("/mounts", tmpfs("/l-chain1".into()));
    b.push("/mounts", bind("/l-mid/d", &src));
    b.push("/mounts", bind("/etc/l-file", &src.join("file.txt")));
    b.push("/mounts", tmpfs(format!("/../../..{}/g", host.display())));
    let saved = rt.tempdir();
    b.save_mounts_before_pivot(&saved);
    let report = rt.probe_in(&mut b, &[]);

    // Inside, every mount sits on the rootfs's copy of the host path.
    let at = |d: &str| {
        let mp = host.join(d);
        find_mount(&report, mp.to_str().unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "nothing mounted on {} in the container: {report}",
                    mp.display()
                )
            })
            .clone()
    };
    for d in ["a", "c", "g"] {
        assert_eq!(at(d)["fstype"], "tmpfs", "{d}: {}", at(d));
    }
    for d in ["b", "d"] {
        assert_eq!(at(d)["root"], json!(src), "{d}: {}", at(d));
    }
    assert_eq!(
        at("file")["root"],
        json!(src.join("file.txt")),
        "{}",
        at("file")
    );

    // The host's directory: nothing mounted, nothing changed; and the
    // container's own table never had a mount on it.
    assert!(host_mounts_under(&host).is_empty());
    assert_eq!(tree(&host), host_before, "the host directory changed");
    let tables = saved_mount_tables(&saved);
    assert_eq!(
        tables.len(),
        1,
        "the createRuntime hook did not save the table"
    );
    let misplaced = saved_mounts_under(&tables, &host);
    assert!(
        misplaced.is_empty(),
        "mounted on the host path: {misplaced:?}"
    );
}

/// Destinations that reach the host through /proc's magic links: a rootfs
/// symlink to /proc/self/root/..., /proc/1/root/..., /proc/thread-self/root,
/// /proc/self/cwd (the runtime runs in a host directory), such a link in the
/// middle of the destination, and destinations that spell the magic link
/// themselves; each once after /proc is mounted and once before. Followed,
/// each leads to the host directory (the init's root and cwd are the host's
/// until pivot_root). Each container must fail cleanly or mount inside the
/// rootfs, and the host directory must never get a mount.
#[test]
fn magic_link_destinations_never_reach_the_host() {
    let rt = Runtime::new("hd-magic");
    let host = rt.tempdir();
    mkdirs(&host.join("a"));
    write(&host.join("a/host-marker"), "host\n");
    let host_before = tree(&host);
    let src = rt.tempdir();
    write(&src.join("from-source"), "source\n");
    let h = rel(&host);
    let cases: Vec<(Option<String>, String)> = vec![
        (Some(format!("/proc/self/root/{h}/a")), "/l-magic".into()),
        (Some(format!("/proc/1/root/{h}/a")), "/l-magic".into()),
        (
            Some(format!("/proc/thread-self/root/{h}/a")),
            "/l-magic".into(),
        ),
        (Some("/proc/self/cwd/a".into()), "/l-magic".into()),
        (Some(format!("../proc/self/root/{h}")), "/l-magic/a".into()),
        (None, format!("/proc/self/root/{h}/a")),
        (None, "/proc/1/cwd/a".into()),
    ];
    let mut outcomes = Vec::new();
    for (link, dest) in &cases {
        for first in [false, true] {
            let mut b = rt.bundle();
            if let Some(l) = link {
                symlink(l, b.rootfs().join("l-magic")).unwrap();
            }
            let m =
                json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind"]});
            if first {
                b.config["mounts"].as_array_mut().unwrap().insert(0, m);
            } else {
                b.push("/mounts", m);
            }
            let saved = rt.tempdir();
            b.save_mounts_before_pivot(&saved);
            b.set("/process/args", json!(["/bin/true"]));
            b.write();
            let id = rt.id();
            let out = rt.run_opts(
                &["run", "--bundle", b.path_str(), &id],
                Opts {
                    cwd: Some(host.clone()),
                    ..Default::default()
                },
            );
            let case = format!("link {link:?}, destination {dest}, before /proc: {first}");
            if !out.success() {
                assert_clean_failure(&rt, &b, &id, &out);
            }
            assert!(
                host_mounts_under(b.path()).is_empty(),
                "{case}: mounts left: {out}"
            );
            let misplaced = saved_mounts_under(&saved_mount_tables(&saved), &host);
            assert!(
                misplaced.is_empty(),
                "{case}: mounted on the host path {misplaced:?}"
            );
            assert!(host_mounts_under(&host).is_empty(), "{case}: host mount");
            assert_eq!(
                tree(&host),
                host_before,
                "{case}: the host directory changed"
            );
            outcomes.push(format!(
                "{case}: {}",
                if out.success() { "ran" } else { "refused" }
            ));
        }
    }
    eprintln!("{}", outcomes.join("\n"));
}

/// Bind sources that are symlinks in the bundle are followed once, on the
/// host, at create (a relative symlink to a directory, one to a file); the
/// destination gets the target's type; nothing is mounted on the source or
/// its target, and neither changes. A dangling source fails cleanly and is
/// not created.
#[test]
fn symlinked_bind_sources_resolve_once_on_the_host() {
    let rt = Runtime::new("hd-symsrc");
    let mut b = rt.bundle();
    let dir = b.path().to_path_buf();
    mkdirs(&dir.join("src-dir"));
    write(&dir.join("src-dir/from-source"), "source-marker\n");
    symlink("src-dir", dir.join("src-link")).unwrap();
    write(&dir.join("data.txt"), "data-marker\n");
    symlink("data.txt", dir.join("file-link")).unwrap();
    let before: Vec<_> = tree(&dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("rootfs") && p != Path::new("config.json"))
        .collect();
    b.push(
        "/mounts",
        json!({"destination": "/mnt/from-dir-link", "type": "bind", "source": "src-link", "options": ["rbind"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/from-file-link", "type": "bind",
               "source": dir.join("file-link"), "options": ["bind", "ro"]}),
    );
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "cat /mnt/from-dir-link/from-source /mnt/from-file-link; \
                [ -f /mnt/from-file-link ] && [ ! -L /mnt/from-file-link ] && echo is-a-file; \
                [ -d /mnt/from-dir-link ] && [ ! -L /mnt/from-dir-link ] && echo is-a-dir"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    for want in ["source-marker", "data-marker", "is-a-file", "is-a-dir"] {
        assert!(out.stdout.contains(want), "{want} missing: {out}");
    }
    assert!(
        host_mounts_under(&dir).is_empty(),
        "left mounted on the host"
    );
    let after: Vec<_> = tree(&dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("rootfs") && p != Path::new("config.json"))
        .collect();
    assert_eq!(after, before, "the bundle's sources changed");

    // A dangling source: a clean failure, and the runtime makes nothing.
    let mut b = rt.bundle();
    symlink("does-not-exist", b.path().join("dangling")).unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/mnt/x", "type": "bind", "source": "dangling", "options": ["rbind"]}),
    );
    b.set("/process/args", json!(["/bin/true"]));
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
    assert_clean_failure(&rt, &b, &id, &out);
    assert!(
        !b.path().join("does-not-exist").exists(),
        "the runtime created the dangling source's target"
    );
}

/// The race of CVE-2021-30465: while containers are created, a host thread
/// keeps exchanging (renameat2 RENAME_EXCHANGE) a bind destination
/// directory in the rootfs, and the parent directory of another, with
/// symlinks to host directories. The host directories are on a shared tmpfs
/// and the containers use `rootfsPropagation: rshared`, so a mount that
/// landed on them would also appear in the host's own table. Neither the
/// host nor any container's pre-pivot table may ever show a mount there.
/// A runtime that resolves the path and then mounts on the path (rather
/// than on a descriptor opened beneath the rootfs) loses this race.
#[test]
fn exchanging_destinations_with_symlinks_never_mounts_on_the_host() {
    let rt = Runtime::new("hd-race");
    let shared = rt.tempdir();
    mount_shared_tmpfs(&shared);
    let target = shared.join("target");
    let mid_target = shared.join("mid");
    mkdirs(&target);
    mkdirs(&mid_target.join("sub"));
    write(&target.join("host-marker"), "host\n");
    write(&mid_target.join("sub/host-marker"), "host\n");
    let host_before = tree(&shared);
    let src = rt.tempdir();
    write(&src.join("from-source"), "source\n");

    let mut b = rt.bundle();
    let r = b.rootfs();
    mkdirs(&r.join("vol"));
    mkdirs(&r.join("mid/sub"));
    symlink(&target, r.join("vol.swap")).unwrap();
    symlink(
        format!("{}{}", "../".repeat(12), rel(&mid_target)),
        r.join("mid.swap"),
    )
    .unwrap();
    // Resolved in the rootfs, the symlinks name these: there a mount is fine.
    mkdirs(&inside(&r, &target));
    mkdirs(&inside(&r, &mid_target.join("sub")));
    b.set("/linux/rootfsPropagation", json!("rshared"));
    b.push(
        "/mounts",
        json!({"destination": "/vol", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mid/sub", "type": "bind", "source": src, "options": ["rbind"]}),
    );
    let saved = rt.tempdir();
    b.save_mounts_before_pivot(&saved);
    b.set("/process/args", json!(["/bin/true"]));
    b.write();

    let stop = AtomicBool::new(false);
    let ran = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let host_leaks = std::sync::Mutex::new(Vec::new());
    let swaps = std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let pairs = [
                (cstring(&r.join("vol")), cstring(&r.join("vol.swap"))),
                (cstring(&r.join("mid")), cstring(&r.join("mid.swap"))),
            ];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (a, b) in &pairs {
                    // SAFETY: renameat2 with valid C strings in our own bundle.
                    let rc = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                }
                n += 1;
            }
            n
        });
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..15 {
                        let id = rt.id();
                        let out = rt.run_opts(
                            &["run", "--bundle", b.path_str(), &id],
                            Opts {
                                timeout: Duration::from_secs(30),
                                ..Default::default()
                            },
                        );
                        assert!(!out.timed_out, "{out}");
                        if out.success() {
                            ran.fetch_add(1, Ordering::Relaxed);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        let leaked: Vec<String> = host_mounts_under(&shared)
                            .into_iter()
                            .filter(|m| Path::new(m) != shared)
                            .collect();
                        if !leaked.is_empty() {
                            host_leaks.lock().unwrap().push((leaked, out.to_string()));
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap()
    });
    let (ran, refused) = (ran.into_inner(), refused.into_inner());
    let tables = saved_mount_tables(&saved);
    // Where the containers' binds landed, for the record: on the rootfs's
    // /vol or on its copy of the host path (the swap won the resolution).
    let count = |p: &Path| {
        tables
            .iter()
            .filter(|t| mount_points(t).iter().any(|m| m == p))
            .count()
    };
    eprintln!(
        "{swaps} exchanges; {ran} containers ran, {refused} refused; binds on /vol: {}, on \
         the rootfs copy of the host path: {}",
        count(&r.join("vol")),
        count(&inside(&r, &target)),
    );
    let host_leaks = host_leaks.into_inner().unwrap();
    assert!(host_leaks.is_empty(), "mounted on the host: {host_leaks:?}");
    let misplaced: Vec<_> = saved_mounts_under(&tables, &shared)
        .into_iter()
        .filter(|m| m != &shared)
        .collect();
    assert!(
        misplaced.is_empty(),
        "a container mounted on the host path: {misplaced:?}"
    );
    assert_eq!(tree(&shared), host_before, "the host directories changed");
    let left = host_mounts_under(b.path());
    assert!(left.is_empty(), "mounts left under the bundle: {left:?}");
    assert!(ran > 0, "no container ran: the race proved nothing");
    assert!(swaps > 0);
}

// ---- 2. host descriptors and working directory (CVE-2024-21626 class) ----

/// A host file the program must never read: its content, and the relative
/// path that reads it from any host directory (climbing to the host's /
/// first, which `..` does from a directory outside the process's root).
struct Secret {
    text: String,
    climb: String,
}

fn host_secret(rt: &Runtime) -> Secret {
    let dir = rt.tempdir();
    let text = format!("berth-host-secret-{}", std::process::id());
    write(&dir.join("secret"), &text);
    Secret {
        text,
        climb: format!("{}{}/secret", "../".repeat(24), rel(&dir)),
    }
}

/// Run one container from `b` with process.cwd `cwd` that prints its
/// working directory as the kernel sees it and tries to read the secret
/// through `..`; `fds` are handed to the runtime as 3, 4, ... (not passed
/// on). Returns whether it ran; panics if the program's cwd was on the host.
fn try_cwd(rt: &Runtime, b: &mut Bundle, secret: &Secret, cwd: &str, fds: Vec<OwnedFd>) -> bool {
    b.set("/process/cwd", json!(cwd));
    b.set(
        "/process/args",
        json!([
            "/bin/sh",
            "-c",
            format!(
                "readlink /proc/self/cwd; cat {} 2>/dev/null; true",
                secret.climb
            )
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run_opts(
        &["run", "--bundle", b.path_str(), &id],
        Opts {
            extra_fds: fds,
            ..Default::default()
        },
    );
    assert!(
        !out.stdout.contains(&secret.text),
        "cwd {cwd:?}: the program read a host file through its working directory: {out}"
    );
    if !out.success() {
        assert_clean_failure(rt, b, &id, &out);
        return false;
    }
    // Where it is: a directory of the container, never one of the host's
    // test directories (the bundle, the runtime root, the secret's).
    let seen = out.stdout.lines().next().unwrap_or("");
    assert!(
        !seen.starts_with("/tmp/berth-test") && !seen.contains("(unreachable)"),
        "cwd {cwd:?}: the program's working directory is {seen:?} on the host: {out}"
    );
    true
}

/// The working directories tried for descriptor `n`: through the magic
/// link as given, climbing out of it with `..` (the kernel resolves that
/// through the link, so a lexical clean-up of the path does not help), and
/// through a rootfs symlink `/l-fd{n}` to it.
fn cwds_through_fd(n: i32) -> Vec<String> {
    vec![
        format!("/proc/self/fd/{n}"),
        format!("/proc/self/fd/{n}/.."),
        format!("/proc/self/fd/{n}/../.."),
        format!("/proc/thread-self/fd/{n}/.."),
        format!("/proc/1/fd/{n}/.."),
        format!("/l-fd{n}/.."),
    ]
}

fn link_fds(b: &Bundle, range: std::ops::RangeInclusive<i32>) {
    for n in range {
        symlink(
            format!("/proc/self/fd/{n}"),
            b.rootfs().join(format!("l-fd{n}")),
        )
        .unwrap();
    }
}

/// process.cwd through /proc/self/fd/N for every descriptor the runtime
/// could hold while it sets up (0..=23). Each must fail cleanly or leave
/// the program inside the container. runc up to 1.1.11 held a host
/// directory there (CVE-2024-21626).
#[test]
fn cwd_through_proc_self_fd_stays_in_the_container() {
    let rt = Runtime::new("hd-cwdfd");
    let secret = host_secret(&rt);
    let mut b = rt.bundle();
    link_fds(&b, 0..=23);
    let mut ran = Vec::new();
    for n in 0..=23 {
        for cwd in cwds_through_fd(n) {
            if try_cwd(&rt, &mut b, &secret, &cwd, Vec::new()) {
                ran.push(cwd);
            }
        }
    }
    eprintln!("ran, inside the container: {ran:?}");
}

/// The same with host directories the runtime inherited from its caller
/// and was not asked to pass on (a caller's leaked descriptors: the host's
/// /, the bundle, the rootfs, the runtime's root) on fds 3..=6. The program
/// must never get one of them as its working directory.
#[test]
fn cwd_through_an_inherited_descriptor_stays_in_the_container() {
    let rt = Runtime::new("hd-cwdinh");
    let secret = host_secret(&rt);
    let mut b = rt.bundle();
    link_fds(&b, 3..=6);
    let dirs = [
        PathBuf::from("/"),
        b.path().to_path_buf(),
        b.rootfs(),
        rt.root().to_path_buf(),
    ];
    let mut escaped = Vec::new();
    for n in 3..=6 {
        for cwd in cwds_through_fd(n) {
            let fds = dirs.iter().map(|d| dir_fd(d)).collect();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                try_cwd(&rt, &mut b, &secret, &cwd, fds)
            }));
            if r.is_err() {
                escaped.push(cwd);
            }
        }
    }
    assert!(
        escaped.is_empty(),
        "the program's cwd was on the host with: {escaped:?}"
    );
}

/// PATH through /proc/self/fd/N of a host directory the runtime inherited
/// (not passed on): no host program may run. (tests/fd_escape.rs does this
/// for the runtime's own descriptors.)
#[test]
fn path_through_an_inherited_descriptor_runs_no_host_program() {
    let rt = Runtime::new("hd-pathinh");
    let host = rt.tempdir();
    let mark = host.join("escaped");
    let tool = host.join("berth-escape-tool");
    write(
        &tool,
        &format!("#!/bin/sh\necho escaped > {}\n", mark.display()),
    );
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path: Vec<String> = (3..8)
        .flat_map(|n| {
            [
                format!("/proc/self/fd/{n}"),
                format!("/proc/self/fd/{n}/../{}", rel(&host)),
            ]
        })
        .collect();
    let mut b = rt.bundle();
    b.set(
        "/process/env",
        json!([format!("PATH={}:/bin", path.join(":"))]),
    );
    b.set("/process/args", json!(["berth-escape-tool"]));
    b.write();
    let id = rt.id();
    let fds = vec![
        dir_fd(&host),
        dir_fd(Path::new("/tmp")),
        dir_fd(Path::new("/")),
    ];
    let out = rt.run_opts(
        &["run", "--bundle", b.path_str(), &id],
        Opts {
            extra_fds: fds,
            ..Default::default()
        },
    );
    assert!(!out.success(), "a host program ran: {out}");
    assert!(
        !mark.exists(),
        "a host program ran from inside the container: {out}"
    );
}

/// Run the runtime through `sh` so that LISTEN_PID names the runtime's own
/// pid (socket activation), with LISTEN_FDS=`listen`.
fn run_with_listen_fds(
    rt: &Runtime,
    b: &Bundle,
    id: &str,
    listen: u32,
    extra: &[&str],
    fds: Vec<OwnedFd>,
) -> Out {
    let script = format!(
        "LISTEN_PID=$$ exec '{}' --root '{}' run {} --bundle '{}' '{}'",
        rt.bin.display(),
        rt.root().display(),
        extra.join(" "),
        b.path_str(),
        id
    );
    let mut c = std::process::Command::new("/bin/sh");
    c.args(["-c", &script]);
    berth_integration::exec(
        c,
        Opts {
            extra_fds: fds,
            env: vec![("LISTEN_FDS".into(), listen.to_string())],
            ..Default::default()
        },
    )
}

/// With LISTEN_FDS=2 and --preserve-fds 2 the program gets exactly stdio,
/// the two socket-activation descriptors and the two preserved ones, in
/// order, and not the sixth descriptor the runtime was given.
#[test]
fn exec_descriptors_with_preserve_fds_and_listen_fds() {
    let rt = Runtime::new("hd-listenpres");
    let b = rt.bundle();
    b.write();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..5).map(|_| pipe()).collect();
    let want: Vec<String> = pipes[..4].iter().map(|(r, _)| fd_target(r)).collect();
    let extra = fd_target(&pipes[4].0);
    let fds: Vec<OwnedFd> = pipes.iter().map(|(r, _)| r.try_clone().unwrap()).collect();
    let id = rt.id();
    let out = run_with_listen_fds(&rt, &b, &id, 2, &["--preserve-fds", "2"], fds).ok();
    let r = out.json();
    assert_eq!(r["env"]["LISTEN_FDS"], "2", "{r}");
    let fds = report_fds(&r);
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5, 6], "{fds:?}");
    for (i, t) in want.iter().enumerate() {
        assert_eq!(
            &fds[3 + i].1,
            t,
            "fd {} is not the one passed: {fds:?}",
            3 + i
        );
    }
    assert!(
        fds.iter().all(|(_, t)| t != &extra),
        "the unpreserved fd leaked: {fds:?}"
    );
}

/// With a terminal (a console socket) and --preserve-fds 1: the program's
/// stdio is the container's pty, fd 3 the preserved pipe, and nothing else:
/// neither the console socket nor the pty master reaches it.
#[test]
fn exec_descriptors_with_a_terminal() {
    let rt = Runtime::new("hd-ttyfds");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.set("/process/args", json!(["/bin/berth-probe"]));
    b.write();
    let sock_path = rt.tempdir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().ok()?;
        recv_fd(&s).ok()
    });
    let (r1, _w1) = pipe();
    let preserved = fd_target(&r1);
    let id = rt.id();
    rt.run_opts(
        &[
            "create",
            "--bundle",
            b.path_str(),
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--preserve-fds",
            "1",
            &id,
        ],
        Opts {
            extra_fds: vec![r1],
            ..Default::default()
        },
    )
    .ok();
    let master = accept.join().unwrap().expect("no pty master received");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the program (the last holder of the pty) exits.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    rt.run(&["start", &id]).ok();
    rt.wait_stopped(&id);
    let text = reader.join().unwrap();
    let json_text = &text[text.find('{').unwrap_or(0)..text.rfind('}').map_or(0, |i| i + 1)];
    let r: Value = berth_integration::serde_json::from_str(json_text)
        .unwrap_or_else(|e| panic!("no report on the pty ({e}): {text:?}"));
    let fds = report_fds(&r);
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    for (n, t) in &fds[..3] {
        assert!(
            t.starts_with("/dev/pts/"),
            "fd {n} is {t}, not the pty: {fds:?}"
        );
    }
    assert_eq!(fds[3].1, preserved, "{fds:?}");
}

/// With every kind of hook configured (the runtime then syncs with the init
/// and runs hooks inside it) the program still gets only stdio and the one
/// preserved descriptor.
#[test]
fn exec_descriptors_with_hooks() {
    let rt = Runtime::new("hd-hookfds");
    let mut b = rt.bundle();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        b.push(&format!("/hooks/{kind}"), json!({"path": "/bin/true"}));
    }
    b.set("/process/args", json!(["/bin/berth-probe"]));
    b.write();
    let (r1, _w1) = pipe();
    let preserved = fd_target(&r1);
    let id = rt.id();
    let out = rt
        .run_opts(
            &["run", "--preserve-fds", "1", "--bundle", b.path_str(), &id],
            Opts {
                extra_fds: vec![r1],
                ..Default::default()
            },
        )
        .ok();
    let fds = report_fds(&out.json());
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[3].1, preserved, "{fds:?}");
}

// ---- 3. masked and read-only paths ----

/// The attacks, as a shell script: every line that works prints ESCAPED.
/// The masked files the script reads are in the default maskedPaths and
/// non-empty on this host (see `masked_content_exists_on_the_host`).
const UNMASK_SCRIPT: &str = r#"
try() { if "$@" 2>/dev/null; then echo "ESCAPED: $*"; fi; }
mkdir -p /tmp/p /tmp/s /tmp/b
try umount /proc/keys
try umount -l /proc/keys
try umount -l /proc/timer_list
try umount -l /sys/firmware
try mount -t tmpfs tmpfs /proc/acpi
try mount -o remount,rw /proc/acpi
try mount -o remount,rw /proc/sys
try mount -o remount,bind,rw /proc/sys
try mount -o remount,rw /sys
try mount -t proc proc /tmp/p
try mount -t sysfs sysfs /tmp/s
try mount --rbind /proc /tmp/b
try sh -c 'cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern'
if [ -e /proc/sysrq-trigger ]; then try sh -c 'echo h > /proc/sysrq-trigger'; fi
echo "keys=$(head -c 64 /proc/keys | wc -c)"
echo "keys-via-self=$(head -c 64 /proc/self/../keys | wc -c)"
echo "timer_list=$(head -c 64 /proc/timer_list | wc -c)"
echo "firmware=$(ls -A /sys/firmware | wc -l)"
echo done
"#;

/// The same from a user namespace the container makes for itself (nothing
/// stops it: no seccomp), where it holds every capability over a new mount
/// namespace. Only the kernel's locks on the mounts inherited from the
/// container stand in the way: masks cannot be unmounted, read-only cannot
/// be lifted, and a new proc or sysfs is refused while the container's has
/// masked parts (mount_too_revealing).
const USERNS_UNMASK_SCRIPT: &str = r#"
try() { if "$@" 2>/dev/null; then echo "ESCAPED: $*"; fi; }
mkdir -p /tmp/p /tmp/s
unshare -Ur true || { echo "no-userns"; exit 0; }
unshare -Urm sh -c 'umount /proc/keys 2>/dev/null; umount -l /proc/keys 2>/dev/null; echo "userns-keys=$(head -c 64 /proc/keys | wc -c)"'
unshare -Urm sh -c 'umount -l /sys/firmware 2>/dev/null; echo "userns-firmware=$(ls -A /sys/firmware | wc -l)"'
try unshare -Urmpf sh -c 'mount -t proc proc /tmp/p && echo "newproc-keys=$(head -c 64 /tmp/p/keys | wc -c)"'
try unshare -Urmn sh -c 'mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /tmp/s && echo "newsys-firmware=$(ls -A /tmp/s/firmware | wc -l)"'
try unshare -Urmu sh -c 'mount -o remount,bind,rw /proc/sys 2>/dev/null; echo berth-test > /proc/sys/kernel/hostname'
echo done
"#;

/// The masked files the attack scripts try to reveal have content on the
/// host; otherwise the scripts would read them empty whatever happened.
#[test]
fn masked_content_exists_on_the_host() {
    let keys = std::fs::read("/proc/keys").expect("/proc/keys on the host");
    assert!(!keys.is_empty(), "the host's /proc/keys is empty");
    let timers = std::fs::read("/proc/timer_list").expect("/proc/timer_list on the host");
    assert!(!timers.is_empty());
    assert!(std::fs::read_dir("/sys/firmware").unwrap().next().is_some());
}

fn run_script(rt: &Runtime, script: &str, patch: impl FnOnce(&mut Bundle)) -> String {
    let mut b = rt.bundle();
    b.set_caps(DEFAULT_CONTAINER_CAPS);
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
    patch(&mut b);
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    assert!(
        out.stdout.contains("done"),
        "the script did not finish: {out}"
    );
    out.stdout
}

/// As container root with the default capabilities (no CAP_SYS_ADMIN): no
/// unmount, mount, remount or new proc/sysfs works, /proc/sys and
/// /proc/sysrq-trigger are not writable, and the masked content stays
/// hidden. A runtime that left CAP_SYS_ADMIN in the bounding set, or did
/// not mask, fails this.
#[test]
fn container_root_cannot_unmask_or_remount() {
    let rt = Runtime::new("hd-unmask");
    let out = run_script(&rt, UNMASK_SCRIPT, |_| {});
    assert!(!out.contains("ESCAPED"), "{out}");
    for want in ["keys=0", "keys-via-self=0", "timer_list=0", "firmware=0"] {
        assert!(out.lines().any(|l| l == want), "{want} missing: {out}");
    }
}

/// The same from a nested user namespace: see [`USERNS_UNMASK_SCRIPT`].
/// `nested_userns_unmasks_without_masks` shows the same script reveals
/// everything when the masks are left out.
#[test]
fn nested_userns_cannot_unmask_or_remount() {
    let rt = Runtime::new("hd-unmask-userns");
    let out = run_script(&rt, USERNS_UNMASK_SCRIPT, |_| {});
    assert!(
        !out.contains("no-userns"),
        "cannot create a user namespace here: {out}"
    );
    assert!(!out.contains("ESCAPED"), "{out}");
    for want in ["userns-keys=0", "userns-firmware=0"] {
        assert!(out.lines().any(|l| l == want), "{want} missing: {out}");
    }
}

/// Control for the test above: without maskedPaths and readonlyPaths the
/// very same script gets a new proc and sysfs showing the content, and
/// writes /proc/sys — so the attacks are real and only the masks stop them.
#[test]
fn nested_userns_unmasks_without_masks() {
    let rt = Runtime::new("hd-unmask-ctl");
    let out = run_script(&rt, USERNS_UNMASK_SCRIPT, |b| {
        b.set("/linux/maskedPaths", json!([]));
        b.set("/linux/readonlyPaths", json!([]));
    });
    assert!(
        !out.contains("no-userns"),
        "cannot create a user namespace here: {out}"
    );
    for want in ["newproc-keys=64", "ESCAPED: unshare -Urmu"] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "{want} missing: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("newsys-firmware=") && l != "newsys-firmware=0"),
        "{out}"
    );
}

/// Masking binds /dev/null over a masked file. When /dev comes from a
/// directory the container's side controls (here a bind-mounted bundle
/// directory) its `null` may be a symlink to /proc/sys/kernel/core_pattern;
/// followed, every masked file becomes a writable view of the host's core
/// pattern (the CVE-2025-31133 class: writing it makes the host run a
/// program of the container's choosing as root). The runtime must refuse
/// or mask with a real null device: the masked files read empty, cannot be
/// opened for writing, and core_pattern is mounted nowhere. Nothing is
/// ever written: the check opens for appending and writes nothing.
/// (runc 1.1.5, Debian 12's, predates the fix (1.2.8) and fails this.)
#[test]
fn masking_never_binds_a_symlinked_dev_null() {
    berth_integration::berth_only!();
    let rt = Runtime::new("hd-devnull");
    let mut b = rt.bundle();
    b.set_caps(DEFAULT_CONTAINER_CAPS);
    let dev = b.path().join("dev");
    mkdirs(&dev);
    symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let mounts: Vec<Value> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["destination"].as_str().unwrap_or("").starts_with("/dev"))
        .cloned()
        .chain([
            json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
        ])
        .collect();
    b.set("/mounts", json!(mounts));
    b.set(
        "/process/args",
        json!([
            "/bin/sh",
            "-c",
            "for f in /proc/keys /proc/timer_list; do \
                echo \"$f=$(head -c 64 $f | wc -c)\"; \
                ( : >> $f ) && echo \"WRITABLE $f\"; done; \
                grep -c core_pattern /proc/self/mountinfo; echo done"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    if !out.success() {
        // Refusing such a /dev/null is fine.
        assert_clean_failure(&rt, &b, &id, &out);
        return;
    }
    let text = &out.stdout;
    assert!(text.contains("done"), "{out}");
    assert!(
        !text.contains("WRITABLE"),
        "a masked file is writable: {out}"
    );
    for want in ["/proc/keys=0", "/proc/timer_list=0"] {
        assert!(text.lines().any(|l| l == want), "{want} missing: {out}");
    }
    assert!(
        text.lines().any(|l| l == "0"),
        "core_pattern is mounted: {out}"
    );
}

// ---- 4. device nodes ----

/// /dev is a tmpfs of the container's own (not the host's devtmpfs) holding
/// only the default devices, the config's linux.devices and the usual
/// links and mount points; no block device, no /dev/console without a
/// terminal, and a devpts of its own that does not show the host's ptys.
#[test]
fn dev_holds_only_the_listed_devices() {
    let rt = Runtime::new("hd-devlist");
    // A host pty that must not show in the container's /dev/pts.
    let host_pty = nix::pty::openpty(None, None).expect("openpty");
    let host_pts =
        std::fs::read_link(format!("/proc/self/fd/{}", host_pty.slave.as_raw_fd())).unwrap();
    let mut b = rt.bundle();
    b.push(
        "/linux/devices",
        json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600}),
    );
    b.push(
        "/linux/devices",
        json!({"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o600}),
    );
    b.set(
        "/process/args",
        json!([
            "/bin/sh",
            "-c",
            "find /dev /dev/pts -xdev | while read -r f; do \
                stat -c '%n|%F|%t:%T' \"$f\"; done; \
                grep ' /dev ' /proc/self/mountinfo"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).ok().stdout;
    let mut devices = Vec::new();
    for line in out.lines().filter(|l| l.contains('|')) {
        let f: Vec<&str> = line.split('|').collect();
        assert!(!f[1].contains("block"), "a block device in /dev: {line}");
        if f[1].contains("character") {
            devices.push(format!("{} {}", f[0], f[2]));
        }
    }
    devices.sort();
    devices.dedup();
    // stat's %t:%T are hex.
    let want = [
        "/dev/full 1:7",
        "/dev/fuse a:e5",
        "/dev/net/tun a:c8",
        "/dev/null 1:3",
        "/dev/pts/ptmx 5:2",
        "/dev/random 1:8",
        "/dev/tty 5:0",
        "/dev/urandom 1:9",
        "/dev/zero 1:5",
    ];
    assert_eq!(devices, want, "{out}");
    assert!(
        !out.contains("/dev/console|"),
        "/dev/console without a terminal: {out}"
    );
    let pts_name = host_pts.display().to_string();
    assert!(
        !out.contains(&format!("{pts_name}|")),
        "the host's {pts_name} is visible: {out}"
    );
    let dev_mount = out
        .lines()
        .find(|l| l.contains(" /dev "))
        .expect("/dev in mountinfo");
    assert!(
        dev_mount.contains(" - tmpfs "),
        "/dev is not a tmpfs: {dev_mount}"
    );
}

/// With CAP_MKNOD (in the default set) container root may make nodes for
/// any device, on a file system that allows devices, but the device cgroup
/// lets it open none beyond the list: the host's root disk, /dev/mem,
/// /dev/kmsg, the console, a virtual terminal, a serial port, fuse, the
/// loop control. A host pty (136:N is allowed, as in runc) opens nothing
/// either: the kernel only opens a pty slave from its own devpts. A node
/// for an allowed device (1:3) does open: the open failures are the
/// cgroup's doing, not the file system's. Without CAP_MKNOD nothing can be
/// made at all. (tests/devices_cgroup.rs checks the rules and 7:0, 1:1.)
#[test]
fn nodes_beyond_the_list_cannot_be_opened() {
    let rt = Runtime::new("hd-mknod");
    let host_pty = nix::pty::openpty(None, None).expect("openpty");
    let host_pts =
        std::fs::read_link(format!("/proc/self/fd/{}", host_pty.slave.as_raw_fd())).unwrap();
    let pts_minor: u32 = host_pts
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The block device the host's / is on, from the host's mount table.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_dev = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap()
        .replace(':', " ");
    let nodes = [
        ("rootdisk", format!("b {root_dev}")),
        ("sda", "b 8 0".into()),
        ("mem", "c 1 1".into()),
        ("kmem", "c 1 2".into()),
        ("kmsg", "c 1 11".into()),
        ("console", "c 5 1".into()),
        ("tty1", "c 4 1".into()),
        ("ttyS0", "c 4 64".into()),
        ("fuse", "c 10 229".into()),
        ("loop-control", "c 10 237".into()),
        ("hostpty", format!("c 136 {pts_minor}")),
        ("null-again", "c 1 3".into()),
    ];
    let mut script = String::from("for d in /dev /tmp; do\n");
    for (name, spec) in &nodes {
        script.push_str(&format!(
            "  mknod $d/n-{name} {spec} 2>/dev/null && echo \"made $d {name}\"\n  \
             ( : < $d/n-{name} ) 2>/dev/null && echo \"opened $d {name}\"\n"
        ));
    }
    script.push_str("done\necho done\n");

    let with_mknod = run_script(&rt, &script, |_| {});
    for (name, _) in &nodes {
        for d in ["/dev", "/tmp"] {
            assert!(
                with_mknod.contains(&format!("made {d} {name}\n")),
                "mknod {d} {name}: {with_mknod}"
            );
            let opened = with_mknod.contains(&format!("opened {d} {name}\n"));
            assert_eq!(opened, *name == "null-again", "{d}/{name}: {with_mknod}");
        }
    }

    let caps: Vec<&str> = DEFAULT_CONTAINER_CAPS
        .iter()
        .copied()
        .filter(|c| *c != "CAP_MKNOD")
        .collect();
    let without = run_script(&rt, &script, |b| {
        b.set_caps(&caps);
    });
    assert!(
        !without.contains("made"),
        "mknod without CAP_MKNOD: {without}"
    );
    assert!(!without.contains("opened"), "{without}");
}
