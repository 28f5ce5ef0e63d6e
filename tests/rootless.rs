//! Rootless berth: run by a real unprivileged user that each test creates
//! (and removes, with its /etc/subuid and /etc/subgid entries, even when
//! the test fails), with its own XDG_RUNTIME_DIR and no --root, on a copy
//! of the bundle that user owns.
//!
//! Real containers; the test process itself runs as root:
//! `cargo test -p berth --test rootless`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use berth_integration::serde_json::{self, json, Value};
use berth_integration::{
    berth_bin, cgroup_dirs_named, eventually, exec, mountinfo_mentioning, pid_alive, skip_if,
    Bundle, Opts, Out, Runtime,
};

static USERS: AtomicUsize = AtomicUsize::new(0);
/// useradd, usermod and userdel lock /etc/passwd and /etc/subuid; one at a
/// time in this process, and an flock across test processes.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn accounts<T>(f: impl FnOnce() -> T) -> T {
    let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = berth_integration::workspace().join("target/berth-test-cache");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("accounts.lock")).unwrap();
    // SAFETY: flock on a descriptor we own; released when it closes.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    f()
}

fn run_root(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user made for one test: no home, no subordinate ids unless asked,
/// removed on drop with everything it ran.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// Owned by the user: XDG_RUNTIME_DIR and a copy of berth.
    home: PathBuf,
    berth: PathBuf,
    ids: Mutex<Vec<String>>,
}

impl User {
    fn create(rt: &Runtime) -> User {
        let name = format!(
            "berth-t{}-{}",
            std::process::id(),
            USERS.fetch_add(1, Ordering::SeqCst)
        );
        accounts(|| {
            run_root(
                "useradd",
                &[
                    "-M",
                    "-U",
                    "-s",
                    "/usr/sbin/nologin",
                    "-K",
                    "SUB_UID_COUNT=0",
                    "-K",
                    "SUB_GID_COUNT=0",
                    &name,
                ],
            )
        });
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let home = rt.tempdir();
        let berth = home.join("berth");
        std::fs::copy(berth_bin(), &berth).expect("copy berth");
        std::fs::create_dir(home.join("xdg")).unwrap();
        chown_r(&home, uid, gid);
        User {
            name,
            uid,
            gid,
            home,
            berth,
            ids: Mutex::new(Vec::new()),
        }
    }

    fn xdg(&self) -> PathBuf {
        self.home.join("xdg")
    }

    /// Subordinate ids `first..first+65536` for uid and gid maps.
    fn add_subids(&self, first: u32) {
        let range = format!("{first}-{}", first + 65535);
        accounts(|| {
            run_root(
                "usermod",
                &["--add-subuids", &range, "--add-subgids", &range, &self.name],
            )
        });
    }

    /// A fresh, tracked container id.
    fn id(&self, rt: &Runtime) -> String {
        let id = rt.id();
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// `setpriv` to the user (its groups only) and run berth there, with a
    /// clean environment that has XDG_RUNTIME_DIR and no --root.
    fn command(&self, args: &[&str], cwd: Option<&Path>) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &self.uid.to_string()])
            .args(["--regid", &self.gid.to_string()])
            .args(["--init-groups", "--", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("USER={}", self.name))
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.xdg().display()))
            .arg(&self.berth)
            .args(args);
        c.current_dir(cwd.unwrap_or(&self.home));
        c
    }

    fn berth(&self, args: &[&str]) -> Out {
        exec(self.command(args, None), Opts::default())
    }

    /// Processes whose real uid is this user's.
    fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                });
            if uid == Some(self.uid) && pid_alive(pid) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for User {
    fn drop(&mut self) {
        for id in std::mem::take(&mut *self.ids.lock().unwrap()) {
            let _ = self.berth(&["delete", "--force", &id]);
        }
        // Whatever still runs as the user was started by this test.
        for pid in self.processes() {
            // SAFETY: kill(2) of a process this test started as the user.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        eventually(5, || self.processes().is_empty());
        accounts(|| {
            let _ = Command::new("userdel").arg(&self.name).status();
        });
    }
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    run_root(
        "chown",
        &["-R", &format!("{uid}:{gid}"), path.to_str().unwrap()],
    );
}

/// A bundle owned by `user`, whose config.json is `berth spec --rootless`
/// as that user wrote it.
fn rootless_bundle(rt: &Runtime, user: &User) -> Bundle {
    let mut b = rt.bundle();
    chown_r(b.path(), user.uid, user.gid);
    exec(
        user.command(&["spec", "--rootless"], Some(b.path())),
        Opts::default(),
    )
    .ok();
    b.config = serde_json::from_slice(&std::fs::read(b.path().join("config.json")).unwrap())
        .expect("spec wrote JSON");
    b
}

fn no_userns() -> bool {
    !Path::new("/usr/bin/newuidmap").exists() || !Path::new("/proc/self/ns/user").exists()
}

fn sh(b: &mut Bundle, script: &str) {
    b.set("/process/terminal", json!(false));
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
}

fn value<'a>(out: &'a Out, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in the output: {out}"))
}

fn map_lines(text: &str) -> Vec<Vec<u64>> {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect::<Vec<u64>>()
        })
        .filter(|f| f.len() == 3)
        .collect()
}

/// Nothing of container `id` is left: state directory, processes, mounts
/// of the bundle, cgroups.
#[track_caller]
fn nothing_left(user: &User, b: &Bundle, id: &str) {
    assert!(
        !user.xdg().join("berth").join(id).exists(),
        "state directory left in {}",
        user.xdg().display()
    );
    assert!(
        eventually(5, || user.processes().is_empty()),
        "processes of {} left: {:?}",
        user.name,
        user.processes()
    );
    assert!(
        mountinfo_mentioning(b.path_str()).is_empty(),
        "mounts left: {:?}",
        mountinfo_mentioning(b.path_str())
    );
    assert!(cgroup_dirs_named(id).is_empty(), "cgroups left");
}

/// `berth spec --rootless` runs as written (terminal and all): the shell
/// reads its commands from the pty and the exit status comes back.
#[test]
fn spec_rootless_runs_as_is() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-spec");
    let user = User::create(&rt);
    let b = rootless_bundle(&rt, &user);
    let id = user.id(&rt);
    let out = exec(
        user.command(&["run", &id], Some(b.path())),
        Opts {
            stdin: Some(
                b"echo uid=$(id -u) host=$(hostname); cat /proc/self/uid_map; exit 7\n".to_vec(),
            ),
            ..Default::default()
        },
    );
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(value(&out, "uid"), "0 host=container");
    assert!(
        map_lines(&out.stdout).contains(&vec![0, user.uid as u64, 1]),
        "{out}"
    );
    // No delegation here: the cgroups are left out, with the reason.
    assert!(
        out.stderr
            .contains("rootless: the container runs without the cgroups"),
        "{out}"
    );
    nothing_left(&user, &b, &id);
}

/// create, state, start, kill, delete as the user, with no --root: the
/// state lives in $XDG_RUNTIME_DIR/berth and goes away with the container.
#[test]
fn lifecycle_as_an_unprivileged_user() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-life");
    let user = User::create(&rt);
    let mut b = rootless_bundle(&rt, &user);
    b.set("/process/terminal", json!(false));
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = user.id(&rt);
    user.berth(&["create", "--bundle", b.path_str(), &id]).ok();
    let state_file = user.xdg().join("berth").join(&id).join("state.json");
    assert_eq!(std::fs::metadata(&state_file).unwrap().uid(), user.uid);
    let state: Value = user.berth(&["state", &id]).ok().json();
    assert_eq!(state["status"], "created", "{state}");
    let pid = state["pid"].as_i64().unwrap() as i32;
    // Seen from the host: the user's own uid, mapped to root inside.
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(map_lines(&uid_map), vec![vec![0, user.uid as u64, 1]]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(String::from));
    assert_eq!(host_uid, Some(user.uid.to_string()));
    user.berth(&["start", &id]).ok();
    let list = user.berth(&["list", "-q"]).ok();
    assert!(list.stdout.lines().any(|l| l == id), "{list}");
    assert!(eventually(10, || user.berth(&["state", &id]).json()
        ["status"]
        == "running"));
    user.berth(&["kill", &id, "KILL"]).ok();
    assert!(eventually(10, || user.berth(&["state", &id]).json()
        ["status"]
        == "stopped"));
    user.berth(&["delete", &id]).ok();
    user.berth(&["state", &id]).fails();
    nothing_left(&user, &b, &id);
}

/// Inside: root, the hostname, the mounts of the rootless template, a
/// read-only root, and nothing of the host's root reachable for writing.
#[test]
fn rootless_container_sees_itself_as_root() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-inside");
    let user = User::create(&rt);
    let mut b = rootless_bundle(&rt, &user);
    sh(
        &mut b,
        "exec 2>/dev/null; echo uid=$(id -u) gid=$(id -g); echo host=$(hostname)
         echo proc=$(grep -c ' /proc proc ' /proc/mounts)
         echo pts=$(grep -c ' /dev/pts devpts ' /proc/mounts)
         echo null=$(echo x > /dev/null && echo ok)
         touch /rootfile; echo rootwrite=$?
         touch /dev/shm/x; echo shmwrite=$?
         echo x >> /sys/kernel/profiling; echo syswrite=$?",
    );
    // Device rules need root: not applied, and said so.
    b.set(
        "/linux/resources",
        json!({ "devices": [{ "allow": false, "access": "rwm" }] }),
    );
    b.write();
    let id = user.id(&rt);
    let out = user.berth(&["run", "--bundle", b.path_str(), &id]).ok();
    assert_eq!(value(&out, "uid"), "0 gid=0");
    assert_eq!(value(&out, "host"), "container");
    assert_eq!(value(&out, "proc"), "1");
    assert_eq!(value(&out, "pts"), "1");
    assert_eq!(value(&out, "null"), "ok");
    assert_ne!(value(&out, "rootwrite"), "0", "root.readonly");
    assert_eq!(value(&out, "shmwrite"), "0");
    assert_ne!(
        value(&out, "syswrite"),
        "0",
        "/sys is the host's, read-only"
    );
    assert!(
        out.stderr
            .contains("linux.resources.devices: not applied (uid"),
        "{out}"
    );
    nothing_left(&user, &b, &id);
}

/// Several ranges: the user's own id for root, its /etc/subuid range for
/// the rest, written by newuidmap/newgidmap.
#[test]
fn subordinate_ranges_go_through_newuidmap() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-subid");
    let user = User::create(&rt);
    let first = 2_000_000 + user.uid * 65536;
    user.add_subids(first);
    let mut b = rootless_bundle(&rt, &user);
    let maps = json!([
        { "containerID": 0, "hostID": user.uid, "size": 1 },
        { "containerID": 1, "hostID": first, "size": 65536 }
    ]);
    let gmaps = json!([
        { "containerID": 0, "hostID": user.gid, "size": 1 },
        { "containerID": 1, "hostID": first, "size": 65536 }
    ]);
    b.set("/linux/uidMappings", maps);
    b.set("/linux/gidMappings", gmaps);
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    let shared = user.home.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chown_r(&shared, user.uid, user.gid);
    b.push(
        "/mounts",
        json!({ "destination": "/shared", "type": "bind", "source": shared, "options": ["bind"] }),
    );
    sh(
        &mut b,
        "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map
         touch /shared/a && chown 1000:2000 /shared/a; echo chown=$?",
    );
    b.write();
    let id = user.id(&rt);
    let out = user.berth(&["run", "--bundle", b.path_str(), &id]).ok();
    let (umap, gmap) = out.stdout.split_once("--").unwrap();
    let u = user.uid as u64;
    let g = user.gid as u64;
    let f = first as u64;
    assert_eq!(map_lines(umap), vec![vec![0, u, 1], vec![1, f, 65536]]);
    assert_eq!(map_lines(gmap), vec![vec![0, g, 1], vec![1, f, 65536]]);
    assert_eq!(value(&out, "chown"), "0");
    let md = std::fs::metadata(shared.join("a")).unwrap();
    assert_eq!((md.uid(), md.gid()), (first + 999, first + 1999));
    nothing_left(&user, &b, &id);
}

/// A range the user was not given: newuidmap refuses, the error says
/// which mapping and where the ranges come from, on one line, and nothing
/// is left behind.
#[test]
fn mapping_outside_the_subordinate_ranges_is_refused() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-refused");
    let user = User::create(&rt);
    let first = 2_000_000 + user.uid * 65536;
    user.add_subids(first);
    let mut b = rootless_bundle(&rt, &user);
    b.set(
        "/linux/uidMappings",
        json!([
            { "containerID": 0, "hostID": user.uid, "size": 1 },
            { "containerID": 1, "hostID": first + 100_000, "size": 65536 }
        ]),
    );
    b.set("/process/terminal", json!(false));
    b.write();
    let id = user.id(&rt);
    let out = user
        .berth(&["create", "--bundle", b.path_str(), &id])
        .fails();
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.contains("warning"))
        .collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].contains(&format!(
            "linux.uidMappings: newuidmap refused mapping 0 {} 1, 1 {} 65536",
            user.uid,
            first + 100_000
        )) && errors[0].contains("/etc/subuid"),
        "{out}"
    );
    nothing_left(&user, &b, &id);
}

#[test]
fn rootless_needs_a_user_namespace() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-nouserns");
    let user = User::create(&rt);
    let mut b = rootless_bundle(&rt, &user);
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "user");
    b.remove("/linux/uidMappings");
    b.remove("/linux/gidMappings");
    b.set("/process/terminal", json!(false));
    b.write();
    let id = user.id(&rt);
    let out = user
        .berth(&["create", "--bundle", b.path_str(), &id])
        .fails();
    assert!(
        out.stderr.contains(&format!(
            "linux.namespaces: berth runs as uid {}, not root: a rootless container needs a user namespace",
            user.uid
        )),
        "{out}"
    );
    nothing_left(&user, &b, &id);
}

/// The cgroup2 mount point (a hybrid host mounts it at /sys/fs/cgroup/unified).
fn cgroup2_root() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split(' ').nth(4).map(PathBuf::from))
}

/// A cgroup2 directory delegated to a directory tree the user owns.
struct Delegated {
    dir: PathBuf,
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for sub in ["ctr", "launch"] {
            let _ = std::fs::remove_dir(self.dir.join(sub));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// linux.cgroupsPath naming a cgroup2 directory delegated to the user is
/// used (the hierarchies it may not write are left out with a warning).
#[test]
fn delegated_cgroup2_directory_is_used() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let Some(root) = cgroup2_root() else {
        skip_if!(true, "no cgroup2 hierarchy mounted");
        return;
    };
    // Dropped after the user (whose drop deletes the container).
    let name = format!("berth-test-deleg-{}", std::process::id());
    let deleg = Delegated {
        dir: root.join(&name),
    };
    std::fs::create_dir(&deleg.dir).unwrap();
    std::fs::create_dir(deleg.dir.join("launch")).unwrap();
    let rt = Runtime::new("rootless-deleg");
    let user = User::create(&rt);
    // Delegation: the directory and its interface files, as systemd does it.
    chown_r(&deleg.dir, user.uid, user.gid);
    let mut b = rootless_bundle(&rt, &user);
    b.set("/process/terminal", json!(false));
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.set("/linux/cgroupsPath", json!(format!("/{name}/ctr")));
    b.write();
    let id = user.id(&rt);
    // berth starts inside the delegated tree (moving a process between
    // cgroups needs write access to their common ancestor).
    let mut create = user.command(&["create", "--bundle", b.path_str(), &id], None);
    let launch = deleg.dir.join("launch/cgroup.procs");
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", launch.display()))
        .arg("sh")
        .arg(create.get_program())
        .args(create.get_args())
        .current_dir(&user.home);
    create = sh;
    let out = exec(create, Opts::default()).ok();
    assert!(
        out.stderr
            .contains("rootless: the container runs without the cgroups"),
        "v1 hierarchies are not delegated: {out}"
    );
    let pid = user.berth(&["state", &id]).ok().json()["pid"]
        .as_i64()
        .unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup.lines().any(|l| l == format!("0::/{name}/ctr")),
        "the container is not in the delegated cgroup: {cgroup}"
    );
    let procs = std::fs::read_to_string(deleg.dir.join("ctr/cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // kill --all finds it through the cgroup.
    user.berth(&["kill", "--all", &id, "KILL"]).ok();
    assert!(eventually(10, || user.berth(&["state", &id]).json()
        ["status"]
        == "stopped"));
    user.berth(&["delete", &id]).ok();
    assert!(
        eventually(5, || !deleg.dir.join("ctr").exists()),
        "delete left the container's cgroup"
    );
    nothing_left(&user, &b, &id);
}

/// `--rootless false`: a cgroup the user may not create is an error, as in
/// runc, and the failed create leaves nothing behind.
#[test]
fn rootless_false_makes_cgroup_permissions_an_error() {
    skip_if!(
        no_userns(),
        "no user namespaces or no newuidmap (apt-get install uidmap)"
    );
    let rt = Runtime::new("rootless-false");
    let user = User::create(&rt);
    let mut b = rootless_bundle(&rt, &user);
    b.set("/process/terminal", json!(false));
    b.write();
    let id = user.id(&rt);
    let out = user
        .berth(&[
            "--rootless",
            "false",
            "create",
            "--bundle",
            b.path_str(),
            &id,
        ])
        .fails();
    assert!(
        out.stderr.contains("create cgroup") && out.stderr.contains("Permission denied"),
        "{out}"
    );
    nothing_left(&user, &b, &id);
}
