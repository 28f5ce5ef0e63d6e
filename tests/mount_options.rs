//! Mount options beyond the plain flags: the recursive `r*` options (applied
//! with mount_setattr to a mount and everything below it) and `tmpcopyup`.
//!
//! Real containers, as root: `cargo test -p berth --test mount_options`.

use berth_integration::serde_json::json;
use berth_integration::Runtime;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A host directory with a tmpfs mounted at `sub/`, unmounted on drop.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(rt: &Runtime) -> Tree {
        let dir = rt.tempdir().join("tree");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let target = CString::new(dir.join("sub").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated strings; a plain tmpfs mount.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tree { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let target = CString::new(self.dir.join("sub").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: unmount what `new` mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Run `sh -c script` in a container with `tree` bound at /data with `options`.
fn run_with(rt: &Runtime, tree: &Tree, options: &[&str], script: &str) -> String {
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": tree.path(), "options": options}),
    );
    b.set("/process/args", json!(["sh", "-c", script]));
    b.write();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).ok().stdout
}

const TRY_WRITES: &str =
    "touch /data/top 2>/dev/null && echo top=rw || echo top=ro; touch /data/sub/x 2>/dev/null && echo sub=rw || echo sub=ro";

#[test]
fn rro_makes_submounts_read_only_and_ro_does_not() {
    let rt = Runtime::new("rro");
    let tree = Tree::new(&rt);
    let plain = run_with(&rt, &tree, &["rbind", "ro"], TRY_WRITES);
    assert!(
        plain.contains("top=ro") && plain.contains("sub=rw"),
        "ro: {plain}"
    );
    let recursive = run_with(&rt, &tree, &["rbind", "rro"], TRY_WRITES);
    assert!(
        recursive.contains("top=ro") && recursive.contains("sub=ro"),
        "rro: {recursive}"
    );
    // The host's mounts stay writable.
    std::fs::write(tree.path().join("sub/host"), "x").expect("host submount still writable");
}

#[test]
fn rnoexec_and_rnosuid_reach_the_submount() {
    let rt = Runtime::new("rnoexec");
    let tree = Tree::new(&rt);
    let out = run_with(
        &rt,
        &tree,
        &["rbind", "rnoexec", "rnosuid"],
        "grep ' /data/sub ' /proc/self/mountinfo",
    );
    let line = out.lines().next().unwrap_or_default();
    let opts = line.split(' ').nth(5).unwrap_or_default();
    assert!(opts.split(',').any(|o| o == "noexec"), "{line}");
    assert!(opts.split(',').any(|o| o == "nosuid"), "{line}");
}

#[test]
fn tmpcopyup_copies_the_directory_into_the_tmpfs() {
    let rt = Runtime::new("tmpcopyup");
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "mode=755"]}),
    );
    b.set(
        "/process/args",
        json!(["sh", "-c", "grep -c '^root:' /etc/passwd; echo new > /etc/berth-new && echo wrote; grep ' /etc ' /proc/self/mountinfo | cut -d' ' -f9"]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["1", "wrote", "tmpfs"], "{out}");
    // The write landed in the tmpfs, not in the bundle's rootfs.
    assert!(!b.rootfs().join("etc/berth-new").exists());
}
