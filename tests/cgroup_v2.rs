//! berth's cgroup v2 code on a real cgroup2 hierarchy, on a hybrid host.
//!
//! THIS TEST CHANGES THE HOST'S CGROUP LAYOUT WHILE IT RUNS. It takes an
//! exclusive flock on /run/berth-cgroup-layout.lock, moves the free v1
//! controllers to cgroup2 with `hack/cgroup-layout.sh v2-controllers`, runs
//! every scenario in two layouts, and always puts the layout back with
//! `hack/cgroup-layout.sh restore` (on success, on a failed scenario, on a
//! panic, and on SIGINT/SIGTERM/SIGHUP). After a run killed with SIGKILL,
//! heal the host with `hack/cgroup-layout.sh restore`.
//!
//! Layouts:
//! - **hybrid**: the host as it is once controllers moved: memory, devices,
//!   freezer, cpuacct and name=systemd on v1, the moved ones on cgroup2 at
//!   /sys/fs/cgroup/unified. berth must use both and write each limit where
//!   its controller lives.
//! - **pure-v2**: every berth command runs in a helper mount namespace where
//!   the v1 mounts are gone and a fresh cgroup2 is mounted on /sys/fs/cgroup
//!   (`nsenter --mount=/proc/HELPER/ns/mnt`), so berth sees a v2-only host:
//!   devices through an eBPF program, pause through cgroup.freeze, and any
//!   setting whose controller cgroup2 lacks is an error naming it.
//!
//! Which controllers can move depends on the host: one whose v1 hierarchy is
//! held by a process we cannot see stays on v1 (the script says which), and
//! a scenario then checks the other side: the v1 file in the hybrid layout,
//! the error naming the setting in the pure-v2 one. Each result line says
//! which was checked. See docs/testing-cgroups.md.
//!
//! Run alone: `cargo test --release -p berth --test cgroup_v2` (as root).
//! Arguments that are not flags filter the scenarios by substring.

use berth_integration::serde_json::json;
use berth_integration::{
    cgroup_dirs_named, eventually, exec, pid_alive, workspace, Bundle, Opts, Out, Runtime,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOCK: &str = "/run/berth-cgroup-layout.lock";
/// Every container id and cgroup this binary makes starts with this, which is
/// what `hack/cgroup-layout.sh restore` removes after a killed run.
const NAME: &str = "cgv2";
const MOVE: &[&str] = &["pids", "cpu", "cpuset", "blkio", "hugetlb"];

// ---------------------------------------------------------------- layout ---

fn script() -> PathBuf {
    workspace().join("hack/cgroup-layout.sh")
}

fn layout_script(arg: &str) -> Out {
    let mut c = Command::new("bash");
    // Its own process group: a Ctrl-C meant for the test must not kill a
    // restore half-way.
    c.arg(script()).arg(arg).process_group(0);
    exec(
        c,
        Opts {
            timeout: Duration::from_secs(120),
            env: vec![("BERTH_CGROUP_LAYOUT_LOCKED".into(), "1".into())],
            ..Default::default()
        },
    )
}

static RESTORED: AtomicBool = AtomicBool::new(true);
static HELPER_PID: AtomicI32 = AtomicI32::new(0);
static RESTORE_LOCK: Mutex<()> = Mutex::new(());

/// Put the layout back (once; later calls do nothing).
fn restore() {
    let _g = RESTORE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if RESTORED.swap(true, Ordering::SeqCst) {
        return;
    }
    let helper = HELPER_PID.swap(0, Ordering::SeqCst);
    if helper > 0 {
        // SAFETY: kill(2) of our own helper child by pid.
        unsafe { libc::kill(helper, libc::SIGKILL) };
    }
    let o = layout_script("restore");
    if !o.success() {
        eprintln!(
            "cgroup_v2: RESTORING THE CGROUP LAYOUT FAILED; run `hack/cgroup-layout.sh restore`: {o}"
        );
    }
}

/// Restores the layout when dropped (also while unwinding).
struct LayoutGuard;
impl Drop for LayoutGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// An exclusive flock on [`LOCK`], held until the process ends.
fn take_lock() -> fs::File {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOCK)
        .unwrap_or_else(|e| panic!("open {LOCK}: {e}"));
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("cgroup_v2: waiting for {LOCK} (another run changes the cgroup layout)");
        // SAFETY: as above, blocking.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
    f
}

/// Block SIGINT, SIGTERM and SIGHUP in every thread (call before any thread
/// exists) and return the set. Children get an empty mask from std.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// A thread that waits for the blocked signals, restores the layout, exits.
fn restore_on_signal(set: libc::sigset_t) {
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: set is an initialised sigset_t; sig is a valid out pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        eprintln!("cgroup_v2: signal {sig}: restoring the cgroup layout");
        restore();
        std::process::exit(128 + sig);
    });
}

/// The cgroup mounts as (mountpoint, fstype, source, mount options,
/// superblock options, shared?), sorted: what a restore must reproduce.
fn cgroup_mount_set() -> Vec<String> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v: Vec<String> = mi
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if !matches!(post.first(), Some(&"cgroup") | Some(&"cgroup2")) {
                return None;
            }
            let shared = pre[6..].iter().any(|o| o.starts_with("shared:"));
            Some(format!(
                "{} {} {} {} {} shared={shared}",
                pre[4], post[0], post[1], pre[5], post[2]
            ))
        })
        .collect();
    v.sort();
    v
}

/// /proc/cgroups: controller -> hierarchy id.
fn hierarchy_ids() -> BTreeMap<String, u32> {
    fs::read_to_string("/proc/cgroups")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.parse().ok()?))
        })
        .collect()
}

/// The first cgroup2 mount point in our mount namespace.
fn cgroup2_mount() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
    })
}

/// The mount point of the v1 hierarchy holding `ctrl` in our namespace.
fn v1_mount(ctrl: &str) -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let post: Vec<&str> = post.split(' ').collect();
        (post[0] == "cgroup" && post[2].split(',').any(|o| o == ctrl))
            .then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
    })
}

fn v2_name(v1: &str) -> &str {
    if v1 == "blkio" {
        "io"
    } else {
        v1
    }
}

// ------------------------------------------------------- pure-v2 helper ---

/// A process in its own mount namespace where /sys/fs/cgroup is a fresh
/// cgroup2 mount and no v1 hierarchy is mounted, plus a wrapper script that
/// runs berth in that namespace. Killed on drop (and by PDEATHSIG with us).
struct PureV2View {
    child: Child,
    dir: PathBuf,
    wrapper: PathBuf,
}

impl PureV2View {
    fn start(berth: &Path) -> PureV2View {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(
                "umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup \
                 && echo ready && exec sleep 100000",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only sets our death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn unshare for the pure-v2 view");
        HELPER_PID.store(child.id() as i32, Ordering::SeqCst);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the pure-v2 mount namespace failed");
        let mi = fs::read_to_string(format!("/proc/{}/mountinfo", child.id())).unwrap();
        let cg: Vec<&str> = mi.lines().filter(|l| l.contains(" - cgroup")).collect();
        assert!(
            cg.len() == 1 && cg[0].contains(" /sys/fs/cgroup ") && cg[0].contains(" - cgroup2 "),
            "the helper namespace should show only cgroup2 on /sys/fs/cgroup: {cg:?}"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-test-cgv2-view-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let wrapper = dir.join("berth");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec nsenter --mount=/proc/{}/ns/mnt -- {} \"$@\"\n",
                child.id(),
                berth.display()
            ),
        )
        .unwrap();
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        PureV2View {
            child,
            dir,
            wrapper,
        }
    }
}

impl Drop for PureV2View {
    fn drop(&mut self) {
        HELPER_PID.store(0, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- context ---

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    Hybrid,
    PureV2,
}

/// Where a controller is for the container in this layout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    V2,
    V1,
    Missing,
}

struct Ctx {
    layout: Layout,
    /// The cgroup2 root as this (host) process sees it.
    cg2: PathBuf,
    /// cgroup2 names of the controllers cgroup2 has.
    v2: BTreeSet<String>,
    /// The berth to run (the nsenter wrapper in the pure-v2 layout).
    berth: PathBuf,
}

impl Ctx {
    fn runtime(&self) -> Runtime {
        let mut rt = Runtime::new(NAME);
        rt.bin = self.berth.clone();
        rt
    }

    fn place(&self, v1: &str) -> Place {
        if self.v2.contains(v2_name(v1)) {
            Place::V2
        } else if self.layout == Layout::Hybrid && v1_mount(v1).is_some() {
            Place::V1
        } else {
            Place::Missing
        }
    }

    /// The process's cgroup2 directory, from /proc/PID/cgroup.
    fn cg2_of(&self, pid: i32) -> PathBuf {
        let rel = proc_cgroup(pid)
            .into_iter()
            .find_map(|(c, p)| c.is_empty().then_some(p))
            .unwrap_or_else(|| panic!("{pid} has no cgroup2 line"));
        self.cg2.join(rel.trim_start_matches('/'))
    }

    /// The process's directory in the v1 hierarchy holding `ctrl`.
    fn v1_of(&self, pid: i32, ctrl: &str) -> PathBuf {
        let mp = v1_mount(ctrl).unwrap_or_else(|| panic!("no v1 {ctrl} mounted"));
        let rel = proc_cgroup(pid)
            .into_iter()
            .find_map(|(c, p)| c.split(',').any(|x| x == ctrl).then_some(p))
            .unwrap_or_else(|| panic!("{pid} has no {ctrl} line"));
        mp.join(rel.trim_start_matches('/'))
    }

    /// The directory holding `ctrl`'s files for `pid`.
    fn dir_of(&self, pid: i32, ctrl: &str) -> PathBuf {
        match self.place(ctrl) {
            Place::V2 => self.cg2_of(pid),
            Place::V1 => self.v1_of(pid, ctrl),
            Place::Missing => panic!("{ctrl} is nowhere"),
        }
    }
}

/// /proc/PID/cgroup as (controllers, path); cgroup2 has empty controllers.
fn proc_cgroup(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"))
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

#[track_caller]
fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Cgroup directories named after `id` anywhere under /sys/fs/cgroup.
fn leftovers(id: &str) -> Vec<PathBuf> {
    cgroup_dirs_named(id)
}

#[track_caller]
fn assert_no_leftovers(rt: &Runtime, id: &str) {
    assert!(
        eventually(5, || leftovers(id).is_empty()),
        "cgroup directories left for {id}: {:?}",
        leftovers(id)
    );
    assert!(
        !rt.root().join(id).exists(),
        "state directory left for {id}"
    );
}

/// `delete --force`, then nothing of the container may be left.
#[track_caller]
fn finish(rt: &Runtime, id: &str) {
    rt.run(&["delete", "--force", id]).ok();
    assert_no_leftovers(rt, id);
}

/// `create` must fail with an error naming `needle`, leaving nothing behind.
#[track_caller]
fn refused(rt: &Runtime, b: &Bundle, needle: &str) {
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    if o.success() {
        let _ = rt.run(&["delete", "--force", &id]);
        panic!("create succeeded although {needle} cannot be honoured here: {o}");
    }
    assert!(
        o.stderr.contains(needle),
        "the error does not name {needle}: {o}"
    );
    assert_no_leftovers(rt, &id);
}

/// A bundle whose process sleeps (berth-probe sleep) after `patch`.
fn sleeper(rt: &Runtime, patch: impl FnOnce(&mut Bundle)) -> (Bundle, String) {
    let mut b = rt.bundle();
    patch(&mut b);
    let id = rt.start_sleeper(&mut b);
    (b, id)
}

// -------------------------------------------------------------- scenarios ---

type Note = String;

fn placement(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let (_b, id) = sleeper(&rt, |_| {});
    let pid = rt.pid(&id);
    let dir = cx.cg2_of(pid);
    assert!(
        dir.ends_with(&id),
        "the cgroup2 directory {} is not named after {id}",
        dir.display()
    );
    let procs = read(dir.join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{pid} not in {}/cgroup.procs: {procs:?}",
        dir.display()
    );
    let mut v1 = Vec::new();
    if cx.layout == Layout::Hybrid {
        for ctrl in ["memory", "devices", "freezer", "cpuacct", "pids", "cpu"] {
            if cx.place(ctrl) != Place::V1 {
                continue;
            }
            let d = cx.v1_of(pid, ctrl);
            assert!(
                d.ends_with(&id),
                "v1 {ctrl}: {pid} is in {}, not in a cgroup named {id}",
                d.display()
            );
            v1.push(ctrl);
        }
    }
    finish(&rt, &id);
    if v1.is_empty() {
        "init in its cgroup2 directory".into()
    } else {
        format!("init in its cgroup2 directory and in v1 {}", v1.join(","))
    }
}

fn pids_limit(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let mut b = rt.bundle();
    b.set("/linux/resources/pids", json!({ "limit": 10 }));
    if cx.place("pids") == Place::Missing {
        refused(&rt, &b, "linux.resources.pids.limit");
        return "pids not on cgroup2: refused naming linux.resources.pids.limit".into();
    }
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            // ash gives up on a failed fork: the loop runs in a subshell.
            "(i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done) 2>/tmp/err; \
             echo done >/tmp/done"
        ]),
    );
    let id = rt.id();
    rt.create(&b, &id);
    let pid = rt.pid(&id);
    let dir = cx.dir_of(pid, "pids");
    assert_eq!(read(dir.join("pids.max")), "10", "in {}", dir.display());
    rt.run(&["start", &id]).ok();
    let done = b.rootfs().join("tmp/done");
    assert!(
        eventually(10, || done.exists()),
        "the fork loop never ended"
    );
    let err = fs::read_to_string(b.rootfs().join("tmp/err")).unwrap_or_default();
    finish(&rt, &id);
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "20 forks under pids.max 10 all succeeded (stderr {err:?})"
    );
    format!(
        "pids.max=10 in {:?} pids, fork over it fails",
        cx.place("pids")
    )
}

/// cpu.weight for cpu.shares as runc >= 1.3.2 and crun >= 1.23 map it (the
/// curve in log2(shares) that keeps 1024 -> 100; older runc's linear mapping
/// gave 39 for 1024). 512 -> 59.
fn shares_to_weight(shares: u64) -> u64 {
    let l = (shares as f64).log2();
    let exp = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exp).ceil() as u64
}

fn cpu(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let set = json!({ "shares": 512, "quota": 20000, "period": 100000, "burst": 10000 });
    match cx.place("cpu") {
        Place::Missing => {
            for (key, v) in set.as_object().unwrap() {
                let mut b = rt.bundle();
                let mut one = json!({ key.as_str(): v });
                if key == "quota" {
                    one["period"] = json!(100000);
                }
                b.set("/linux/resources/cpu", one);
                refused(&rt, &b, &format!("linux.resources.cpu.{key}"));
            }
            "cpu not on cgroup2: shares, quota, period, burst each refused by name".into()
        }
        place => {
            let (_b, id) = sleeper(&rt, |b| {
                b.set("/linux/resources/cpu", set.clone());
            });
            let pid = rt.pid(&id);
            let dir = cx.dir_of(pid, "cpu");
            let note = if place == Place::V2 {
                let weight: u64 = read(dir.join("cpu.weight")).parse().unwrap();
                assert_eq!(weight, shares_to_weight(512), "cpu.weight for shares 512");
                assert_eq!(read(dir.join("cpu.max")), "20000 100000");
                assert_eq!(read(dir.join("cpu.max.burst")), "10000");
                format!("cgroup2 cpu.weight={weight}, cpu.max, cpu.max.burst")
            } else {
                assert_eq!(read(dir.join("cpu.shares")), "512");
                assert_eq!(read(dir.join("cpu.cfs_quota_us")), "20000");
                assert_eq!(read(dir.join("cpu.cfs_period_us")), "100000");
                assert_eq!(read(dir.join("cpu.cfs_burst_us")), "10000");
                "cpu on v1: cpu.shares, cfs quota/period/burst".to_string()
            };
            finish(&rt, &id);
            note
        }
    }
}

fn cpuset(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let online = read("/sys/devices/system/cpu/online");
    let cpu = if online.contains('1') { "1" } else { "0" };
    if cx.place("cpuset") == Place::Missing {
        for (key, v) in [("cpus", cpu), ("mems", "0")] {
            let mut b = rt.bundle();
            b.set("/linux/resources/cpu", json!({ key: v }));
            refused(&rt, &b, &format!("linux.resources.cpu.{key}"));
        }
        return "cpuset not on cgroup2: cpus and mems each refused by name".into();
    }
    let (_b, id) = sleeper(&rt, |b| {
        b.set("/linux/resources/cpu", json!({ "cpus": cpu, "mems": "0" }));
    });
    let pid = rt.pid(&id);
    let dir = cx.dir_of(pid, "cpuset");
    assert_eq!(read(dir.join("cpuset.cpus")), cpu);
    assert_eq!(read(dir.join("cpuset.mems")), "0");
    let status = read(format!("/proc/{pid}/status"));
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    finish(&rt, &id);
    assert_eq!(allowed, cpu, "the init's affinity");
    format!("cpuset.cpus={cpu} and affinity in {:?}", cx.place("cpuset"))
}

/// MAJ:MIN of the whole disk holding `/`.
fn root_disk() -> (u32, u32) {
    let mi = read("/proc/self/mountinfo");
    let dev = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap()
        .to_string();
    let sys = PathBuf::from(format!("/sys/dev/block/{dev}"));
    // A partition: the disk is its parent directory.
    let dev = if sys.join("partition").exists() {
        read(sys.join("../dev"))
    } else {
        dev
    };
    let (a, b) = dev.split_once(':').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn io(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let (major, minor) = root_disk();
    let throttle = json!([{ "major": major, "minor": minor, "rate": 1048576 }]);
    match cx.place("blkio") {
        Place::Missing => {
            let mut b = rt.bundle();
            b.set("/linux/resources/blockIO", json!({ "weight": 300 }));
            refused(&rt, &b, "linux.resources.blockIO.weight");
            let mut b = rt.bundle();
            b.set(
                "/linux/resources/blockIO",
                json!({ "throttleReadBpsDevice": throttle }),
            );
            refused(&rt, &b, "linux.resources.blockIO.throttleReadBpsDevice");
            "io not on cgroup2: weight and throttle each refused by name".into()
        }
        place => {
            let mut b = rt.bundle();
            b.set(
                "/linux/resources/blockIO",
                json!({ "weight": 300, "throttleReadBpsDevice": throttle }),
            );
            b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
            b.write();
            let id = rt.id();
            let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
            if !o.success() {
                // Only right when no weight file exists for this cgroup.
                assert!(
                    o.stderr.contains("linux.resources.blockIO.weight"),
                    "create failed: {o}"
                );
                assert_no_leftovers(&rt, &id);
                return "no I/O weight file: weight refused by name".into();
            }
            let pid = rt.pid(&id);
            let dir = cx.dir_of(pid, "blkio");
            // (file, the value blockIO.weight 300 must show there): BFQ's
            // weights are blkio's 10..1000 scale as is; cgroup2's io.weight
            // (1..10000) gets runc's linear mapping.
            let io_weight = 1 + (300 - 10) * 9999 / 990;
            let (weight_files, max) = if place == Place::V2 {
                (
                    [("io.bfq.weight", 300), ("io.weight", io_weight)],
                    ("io.max", format!("{major}:{minor} rbps=1048576")),
                )
            } else {
                (
                    [("blkio.bfq.weight", 300), ("blkio.weight", 300)],
                    (
                        "blkio.throttle.read_bps_device",
                        format!("{major}:{minor} 1048576"),
                    ),
                )
            };
            let weights: Vec<(&str, u32, String)> = weight_files
                .iter()
                .filter_map(|(f, want)| {
                    fs::read_to_string(dir.join(f)).ok().map(|v| (*f, *want, v))
                })
                .collect();
            let throttled = read(dir.join(max.0));
            finish(&rt, &id);
            assert!(
                !weights.is_empty(),
                "create succeeded but no weight file exists in {}",
                dir.display()
            );
            let written: Vec<&str> = weights
                .iter()
                .filter(|(_, want, v)| {
                    v.lines().any(|l| {
                        let l = l.trim();
                        l == format!("default {want}") || l == want.to_string()
                    })
                })
                .map(|(f, _, _)| *f)
                .collect();
            assert!(
                !written.is_empty(),
                "weight 300 not written (want io.bfq.weight 300 or io.weight {io_weight}): {weights:?}"
            );
            assert!(
                throttled.lines().any(|l| l.starts_with(&max.1)),
                "{} is {throttled:?}, want a line starting {:?}",
                max.0,
                max.1
            );
            format!("{place:?}: weight in {}, {}", written.join("+"), max.0)
        }
    }
}

fn hugetlb(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        return "no 2MB huge pages on this kernel: not checked".into();
    }
    let limit = json!([{ "pageSize": "2MB", "limit": 4194304 }]);
    if cx.place("hugetlb") == Place::Missing {
        let mut b = rt.bundle();
        b.set("/linux/resources/hugepageLimits", limit);
        refused(&rt, &b, "linux.resources.hugepageLimits");
        return "hugetlb not on cgroup2: refused by name".into();
    }
    let (_b, id) = sleeper(&rt, |b| {
        b.set("/linux/resources/hugepageLimits", limit.clone());
    });
    let pid = rt.pid(&id);
    let place = cx.place("hugetlb");
    let dir = cx.dir_of(pid, "hugetlb");
    let file = if place == Place::V2 {
        "hugetlb.2MB.max"
    } else {
        "hugetlb.2MB.limit_in_bytes"
    };
    // The reservation limit, where the kernel has it, as runc sets it: the
    // same value, so pages reserved but not yet faulted count too.
    let rsvd = file.replacen("2MB.", "2MB.rsvd.", 1);
    let v = read(dir.join(file));
    let r = fs::read_to_string(dir.join(&rsvd)).ok();
    finish(&rt, &id);
    assert_eq!(v, "4194304", "{file}");
    if let Some(r) = &r {
        assert_eq!(r.trim(), "4194304", "{rsvd}");
    }
    match r {
        Some(_) => format!("{file} and {rsvd} = 4194304 ({place:?})"),
        None => format!("{file}=4194304 ({place:?})"),
    }
}

fn unified(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let mut want = BTreeMap::from([("cgroup.max.descendants".to_string(), "7".to_string())]);
    if cx.v2.contains("pids") {
        want.insert("pids.max".into(), "7".into());
    }
    let mut b = rt.bundle();
    b.set("/linux/resources/unified", json!(want));
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    if cx.layout == Layout::Hybrid && !o.success() {
        // runc refuses `unified` unless the host is pure cgroup2; writing it
        // to the cgroup2 directory is fine too. Never ignore it silently.
        assert!(o.stderr.contains("linux.resources.unified"), "{o}");
        assert_no_leftovers(&rt, &id);
        return "hybrid: unified refused by name".into();
    }
    assert!(o.success(), "create with unified failed: {o}");
    let dir = cx.cg2_of(rt.pid(&id));
    let got: BTreeMap<String, String> = want
        .keys()
        .map(|k| (k.clone(), read(dir.join(k))))
        .collect();
    finish(&rt, &id);
    assert_eq!(got, want);
    let mut note = format!(
        "written: {}",
        want.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    if cx.layout == Layout::PureV2 && !cx.v2.contains("memory") {
        // A key whose controller cgroup2 lacks: an error naming it.
        let mut b = rt.bundle();
        b.set("/linux/resources/unified", json!({ "memory.high": "1G" }));
        refused(&rt, &b, "memory.high");
        note.push_str("; memory.high refused by name");
    }
    note
}

fn memory(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let limit = 64 << 20;
    match cx.place("memory") {
        Place::Missing => {
            let mut b = rt.bundle();
            b.set("/linux/resources/memory", json!({ "limit": limit }));
            refused(&rt, &b, "linux.resources.memory.limit");
            let mut b = rt.bundle();
            b.set("/linux/resources/memory", json!({ "reservation": limit }));
            refused(&rt, &b, "linux.resources.memory.reservation");
            "memory not on cgroup2: limit and reservation refused by name".into()
        }
        place => {
            let (_b, id) = sleeper(&rt, |b| {
                b.set(
                    "/linux/resources/memory",
                    json!({ "limit": limit, "reservation": limit / 2 }),
                );
            });
            let pid = rt.pid(&id);
            let dir = cx.dir_of(pid, "memory");
            let (lim, res) = if place == Place::V2 {
                ("memory.max", "memory.low")
            } else {
                ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
            };
            let got = (read(dir.join(lim)), read(dir.join(res)));
            finish(&rt, &id);
            assert_eq!(got, (limit.to_string(), (limit / 2).to_string()));
            format!("{place:?}: {lim}, {res}")
        }
    }
}

fn counter(b: &Bundle) -> Option<u64> {
    fs::read_to_string(b.rootfs().join("tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The counter after it settled: the same value twice, 300 ms apart.
fn counter_changes(b: &Bundle) -> bool {
    let first = counter(b);
    std::thread::sleep(Duration::from_millis(400));
    counter(b) != first
}

fn pause_resume(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let mut b = rt.bundle();
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i >/tmp/count.new; mv /tmp/count.new /tmp/count; \
             sleep 0.05; done"
        ]),
    );
    let id = rt.id();
    rt.create(&b, &id);
    rt.run(&["start", &id]).ok();
    let pid = rt.pid(&id);
    assert!(
        eventually(10, || counter(&b).is_some()),
        "the counter never started"
    );
    let v1_freezer = cx.layout == Layout::Hybrid && v1_mount("freezer").is_some();
    let cg2 = cx.cg2_of(pid);
    let v1dir = v1_freezer.then(|| cx.v1_of(pid, "freezer"));

    rt.run(&["pause", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    let frozen_files = match &v1dir {
        Some(d) => read(d.join("freezer.state")),
        None => format!(
            "cgroup.freeze={} {}",
            read(cg2.join("cgroup.freeze")),
            read(cg2.join("cgroup.events")).replace('\n', " ")
        ),
    };
    let moved_while_paused = counter_changes(&b);

    rt.run(&["resume", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    let thawed_files = match &v1dir {
        Some(d) => read(d.join("freezer.state")),
        None => format!(
            "cgroup.freeze={} {}",
            read(cg2.join("cgroup.freeze")),
            read(cg2.join("cgroup.events")).replace('\n', " ")
        ),
    };
    let moved_after = eventually(5, || counter_changes(&b));
    finish(&rt, &id);

    assert!(!moved_while_paused, "the counter advanced while paused");
    assert!(moved_after, "the counter did not advance after resume");
    if v1_freezer {
        assert_eq!(frozen_files, "FROZEN");
        assert_eq!(thawed_files, "THAWED");
        "v1 freezer.state FROZEN/THAWED, counter stopped and went on".into()
    } else {
        assert!(
            frozen_files.starts_with("cgroup.freeze=1") && frozen_files.contains("frozen 1"),
            "paused: {frozen_files}"
        );
        assert!(
            thawed_files.starts_with("cgroup.freeze=0") && thawed_files.contains("frozen 0"),
            "resumed: {thawed_files}"
        );
        "cgroup.freeze 1/0 and cgroup.events frozen 1/0, counter stopped and went on".into()
    }
}

/// Programs of `attach_type` attached directly to the cgroup directory.
fn bpf_programs(dir: &Path, attach_type: u32) -> Result<u32, std::io::Error> {
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
    }
    const BPF_PROG_QUERY: libc::c_long = 16;
    let f = fs::File::open(dir)?;
    let mut q = Query {
        target_fd: f.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    // SAFETY: q is a properly laid out, zero-padded bpf_attr prefix for
    // BPF_PROG_QUERY with no id buffer; the kernel writes only prog_cnt and
    // attach_flags inside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut q as *mut Query,
            std::mem::size_of::<Query>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(q.prog_cnt)
}

fn devices(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let mut b = rt.bundle();
    for set in ["bounding", "effective", "permitted"] {
        b.push(&format!("/process/capabilities/{set}"), json!("CAP_MKNOD"));
    }
    // Allowed read-only: c 1:200 (a minor the mem driver lacks, so an
    // allowed open fails with ENXIO and a denied one with EPERM; nothing is
    // ever read, written or created on the host). Not allowed: c 1:201,
    // b 239:0 (no such block driver) and c 1:1 (/dev/mem).
    b.push(
        "/linux/resources/devices",
        json!({ "allow": true, "type": "c", "major": 1, "minor": 200, "access": "r" }),
    );
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "mknod /tmp/ok c 1 200 && mknod /tmp/no c 1 201 && mknod /tmp/blk b 239 0 \
             && mknod /tmp/mem c 1 1 || exit 9; \
             r() { ( : <\"$1\" ) 2>&1 && echo opened; }; w() { ( : >\"$1\" ) 2>&1 && echo opened; }; \
             { echo \"ok-r: $(r /tmp/ok)\"; echo \"ok-w: $(w /tmp/ok)\"; echo \"no-r: $(r /tmp/no)\"; \
               echo \"blk-r: $(r /tmp/blk)\"; echo \"mem-r: $(r /tmp/mem)\"; \
               echo \"null-w: $(w /dev/null)\"; echo \"zero-r: $(r /dev/zero)\"; } >/tmp/out; \
             echo done >/tmp/done; sleep 1000"
        ]),
    );
    let id = rt.id();
    rt.create(&b, &id);
    let pid = rt.pid(&id);
    let cg2 = cx.cg2_of(pid);
    const BPF_CGROUP_DEVICE: u32 = 6;
    let progs = bpf_programs(&cg2, BPF_CGROUP_DEVICE);
    rt.run(&["start", &id]).ok();
    let done = b.rootfs().join("tmp/done");
    let finished = eventually(10, || done.exists());
    let out = fs::read_to_string(b.rootfs().join("tmp/out")).unwrap_or_default();
    finish(&rt, &id);
    assert!(
        finished,
        "the device checks never finished (mknod failed?): {out:?}"
    );
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no {k} line: {out:?}"))
            .to_string()
    };
    const EPERM: &str = "Operation not permitted";
    assert!(
        line("ok-r").contains("No such device or address"),
        "allowed c 1:200 r: want ENXIO, got {:?}",
        line("ok-r")
    );
    for k in ["ok-w", "no-r", "blk-r", "mem-r"] {
        assert!(
            line(k).contains(EPERM),
            "{k}: want EPERM, got {:?}",
            line(k)
        );
    }
    for k in ["null-w", "zero-r"] {
        assert_eq!(line(k), "opened", "{k}");
    }
    let mut note = "c 1:200 r allowed (ENXIO), its write, c 1:201, b 239:0 and c 1:1 denied (EPERM), defaults open".to_string();
    if cx.layout == Layout::PureV2 || v1_mount("devices").is_none() {
        let n = progs.unwrap_or_else(|e| panic!("BPF_PROG_QUERY on {}: {e}", cg2.display()));
        assert!(n >= 1, "no BPF_CGROUP_DEVICE program on {}", cg2.display());
        note.push_str(&format!("; {n} eBPF device program(s) on the cgroup2 dir"));
    } else {
        note.push_str("; through the v1 devices controller");
    }
    note
}

fn events_stats(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let pids = cx.place("pids") != Place::Missing;
    let huge = cx.place("hugetlb") == Place::V2;
    let (_b, id) = sleeper(&rt, |b| {
        if pids {
            b.set("/linux/resources/pids", json!({ "limit": 50 }));
        }
        if huge {
            b.set(
                "/linux/resources/hugepageLimits",
                json!([{ "pageSize": "2MB", "limit": 2097152 }]),
            );
        }
    });
    let pid = rt.pid(&id);
    // CPU time before and after, from the file berth should read.
    let cpu_ns = || -> u64 {
        if cx.layout == Layout::Hybrid && v1_mount("cpuacct").is_some() {
            read(cx.v1_of(pid, "cpuacct").join("cpuacct.usage"))
                .parse()
                .unwrap()
        } else {
            let stat = read(cx.cg2_of(pid).join("cpu.stat"));
            let us: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .parse()
                .unwrap();
            us * 1000
        }
    };
    let before = cpu_ns();
    let o = rt.run(&["events", "--stats", &id]);
    let after = cpu_ns();
    finish(&rt, &id);
    let v = o.ok().json();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], json!(id), "{v}");
    let d = &v["data"];
    let total = d["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    assert!(
        total > 0 && before <= total && total <= after,
        "cpu usage total {total} not within the file's {before}..={after}"
    );
    let mut note = format!("cpu total {total} ns");
    if pids {
        assert!(
            d["pids"]["current"].as_u64().unwrap_or(0) >= 1,
            "pids.current: {}",
            d["pids"]
        );
        assert_eq!(d["pids"]["limit"], 50, "{}", d["pids"]);
        note.push_str(", pids current/limit");
    } else {
        assert!(
            d["pids"]["current"].as_u64().unwrap_or(0) == 0,
            "pids reported without a pids controller: {}",
            d["pids"]
        );
        note.push_str(", no pids (none on cgroup2)");
    }
    if cx.place("memory") == Place::Missing {
        assert_eq!(
            d["memory"]["usage"]["usage"].as_u64().unwrap_or(0),
            0,
            "memory reported without a memory controller: {}",
            d["memory"]
        );
        note.push_str(", no memory");
    } else {
        assert!(
            d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
            "memory usage: {}",
            d["memory"]
        );
        note.push_str(", memory usage");
    }
    if huge {
        assert!(
            d["hugetlb"].get("2MB").is_some(),
            "hugetlb 2MB missing: {}",
            d["hugetlb"]
        );
        note.push_str(", hugetlb 2MB");
    }
    note
}

fn update(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let mut notes = Vec::new();
    let pids = cx.place("pids");
    let (_b, id) = sleeper(&rt, |b| {
        if pids != Place::Missing {
            b.set("/linux/resources/pids", json!({ "limit": 50 }));
        }
    });
    let pid = rt.pid(&id);
    let cg2 = cx.cg2_of(pid);
    let o = rt.run(&["update", "--pids-limit", "5", &id]);
    let pids_result = if pids == Place::Missing {
        (!o.success() && o.stderr.contains("pids"))
            .then_some(())
            .ok_or_else(|| format!("update --pids-limit without pids must fail naming it: {o}"))
    } else if !o.success() {
        Err(format!("update --pids-limit failed: {o}"))
    } else {
        let v = read(cx.dir_of(pid, "pids").join("pids.max"));
        (v == "5").then_some(()).ok_or(format!("pids.max is {v}"))
    };
    notes.push(format!("--pids-limit ({pids:?})"));

    let res = rt.tempdir().join("resources.json");
    let mut r = json!({});
    if cx.layout == Layout::PureV2 {
        r["unified"] = json!({ "cgroup.max.descendants": "3" });
    }
    if cx.place("hugetlb") != Place::Missing {
        r["hugepageLimits"] = json!([{ "pageSize": "2MB", "limit": 2097152 }]);
    }
    fs::write(&res, r.to_string()).unwrap();
    let o2 = rt.run(&["update", "-r", res.to_str().unwrap(), &id]);
    let mut file_result = Ok(());
    if o2.success() {
        if cx.layout == Layout::PureV2 {
            let v = read(cg2.join("cgroup.max.descendants"));
            if v != "3" {
                file_result = Err(format!("cgroup.max.descendants is {v} after update -r"));
            }
            notes.push("-r unified".into());
        }
        if cx.place("hugetlb") == Place::V2 {
            let v = read(cg2.join("hugetlb.2MB.max"));
            if v != "2097152" {
                file_result = Err(format!("hugetlb.2MB.max is {v} after update -r"));
            }
            notes.push("-r hugepageLimits".into());
        }
    } else {
        file_result = Err(format!("update -r {r} failed: {o2}"));
    }

    let o3 = rt.run(&["update", "--memory", "32m", &id]);
    let mem_result = match cx.place("memory") {
        Place::Missing => (!o3.success() && o3.stderr.contains("memory"))
            .then_some(())
            .ok_or_else(|| format!("update --memory without memory must fail naming it: {o3}")),
        place => {
            let file = if place == Place::V2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            if !o3.success() {
                Err(format!("update --memory failed: {o3}"))
            } else {
                let v = read(cx.dir_of(pid, "memory").join(file));
                (v == (32u64 << 20).to_string())
                    .then_some(())
                    .ok_or(format!("{file} is {v}"))
            }
        }
    };
    notes.push(format!("--memory ({:?})", cx.place("memory")));
    finish(&rt, &id);
    pids_result.unwrap();
    file_result.unwrap();
    mem_result.unwrap();
    notes.join(", ")
}

fn exec_joins_cgroup(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let (_b, id) = sleeper(&rt, |_| {});
    let init = rt.pid(&id);
    let pidfile = rt.tempdir().join("exec.pid");
    let o = rt.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "/bin/berth-probe",
        "sleep",
    ]);
    let checked = (|| {
        if !o.success() {
            return Err(format!("exec failed: {o}"));
        }
        let pid: i32 = read(&pidfile)
            .parse()
            .map_err(|e| format!("pid file: {e}"))?;
        if !pid_alive(pid) {
            return Err(format!("exec'd {pid} is not running"));
        }
        let (a, b) = (proc_cgroup(init), proc_cgroup(pid));
        if a != b {
            return Err(format!("init cgroups {a:?}\nexec'd cgroups {b:?}"));
        }
        let procs = read(cx.cg2_of(init).join("cgroup.procs"));
        if !procs.lines().any(|l| l == pid.to_string()) {
            return Err(format!("{pid} not in the cgroup2 cgroup.procs {procs:?}"));
        }
        Ok(())
    })();
    finish(&rt, &id);
    checked.unwrap();
    "exec'd process in the init's cgroups (cgroup2 cgroup.procs and every v1 line)".into()
}

fn nested_path(cx: &Ctx) -> Note {
    let rt = cx.runtime();
    let top = format!("berth-test-{NAME}-nest-{}", std::process::id());
    let path = format!("/{top}/a/b");
    let huge = cx.place("hugetlb") == Place::V2;
    let (_b, id) = sleeper(&rt, |b| {
        b.set("/linux/cgroupsPath", json!(path));
        if huge {
            b.set(
                "/linux/resources/hugepageLimits",
                json!([{ "pageSize": "2MB", "limit": 2097152 }]),
            );
        }
    });
    let pid = rt.pid(&id);
    let dir = cx.cg2_of(pid);
    let checked = (|| {
        if dir != cx.cg2.join(&path[1..]) {
            return Err(format!("cgroup2 dir {} is not {path}", dir.display()));
        }
        if huge {
            let v = fs::read_to_string(dir.join("hugetlb.2MB.max")).map_err(|e| {
                format!("hugetlb.2MB.max in {path} ({e}): not enabled down the path?")
            })?;
            if v.trim() != "2097152" {
                return Err(format!("hugetlb.2MB.max is {v}"));
            }
        }
        Ok(())
    })();
    rt.run(&["delete", "--force", &id]).ok();
    let b_left = dir.exists();
    // Parents are not berth's to remove (runc leaves them too).
    for d in cgroup_dirs_named(&top) {
        for sub in [d.join("a/b"), d.join("a"), d.clone()] {
            let _ = fs::remove_dir(sub);
        }
    }
    checked.unwrap();
    assert!(!b_left, "delete left {}", dir.display());
    if huge {
        "absolute nested cgroupsPath; hugetlb enabled down the path".into()
    } else {
        "absolute nested cgroupsPath".into()
    }
}

fn crun_check(cx: &Ctx, want_ok: bool) -> Result<String, String> {
    if Command::new("crun").arg("--version").output().is_err() {
        return Ok("crun not installed: not checked".into());
    }
    let mut rt = cx.runtime();
    rt.bin = PathBuf::from("crun");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "exit", "0"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
    match (want_ok, o.success()) {
        (true, true) => Ok("crun runs a container".into()),
        (false, false) => Ok(format!(
            "crun refuses: {}",
            o.stderr.lines().last().unwrap_or("").trim()
        )),
        (true, false) => Err(format!("crun failed: {o}")),
        (false, true) => Err("crun ran a container although controllers are on cgroup2".into()),
    }
}

fn crun_refuses(cx: &Ctx) -> Note {
    crun_check(cx, false).unwrap()
}

// ----------------------------------------------------------------- runner ---

type Scenario = (&'static str, fn(&Ctx) -> Note);

const SCENARIOS: &[Scenario] = &[
    ("placement", placement),
    ("pids_limit", pids_limit),
    ("cpu", cpu),
    ("cpuset", cpuset),
    ("io", io),
    ("hugetlb", hugetlb),
    ("unified", unified),
    ("memory", memory),
    ("pause_resume", pause_resume),
    ("devices", devices),
    ("events_stats", events_stats),
    ("update", update),
    ("exec_joins_cgroup", exec_joins_cgroup),
    ("nested_path", nested_path),
];

static PANIC_MSG: Mutex<Option<String>> = Mutex::new(None);

struct Report {
    passed: usize,
    failed: Vec<(String, String)>,
}

impl Report {
    fn record(&mut self, name: &str, r: Result<String, String>) {
        match r {
            Ok(note) => {
                println!("test {name} ... ok ({note})");
                self.passed += 1;
            }
            Err(why) => {
                let first = why.lines().next().unwrap_or("").to_string();
                println!("test {name} ... FAILED: {first}");
                self.failed.push((name.to_string(), why));
            }
        }
    }
}

fn run_one(cx: &Ctx, f: fn(&Ctx) -> Note) -> Result<String, String> {
    *PANIC_MSG.lock().unwrap() = None;
    panic::catch_unwind(AssertUnwindSafe(|| f(cx))).map_err(|_| {
        PANIC_MSG
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| "panicked".into())
    })
}

fn wanted(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("cgroup_v2: skipped: needs root (it changes the host's cgroup layout)");
        if std::env::var_os("CI").is_some() {
            std::process::exit(1);
        }
        return;
    }
    let berth = berth_integration::berth_bin();
    assert!(berth.exists(), "{} not built", berth.display());
    if fs::metadata("/sys/fs/cgroup").is_ok() && cgroup2_mount().is_none() {
        println!("cgroup_v2: skipped: no cgroup2 mounted (pure v1 host)");
        return;
    }
    let set = block_signals();
    let _lock = take_lock();
    restore_on_signal(set);
    panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<String>() {
            Some(s) => s.clone(),
            None => info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        };
        let loc = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        *PANIC_MSG.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{msg}{loc}"));
    }));

    let pure_host = cgroup2_mount().as_deref() == Some(Path::new("/sys/fs/cgroup"));
    let mounts_before = cgroup_mount_set();
    let ids_before = hierarchy_ids();
    let cg2 = cgroup2_mount().unwrap();
    let subtree_before = read(cg2.join("cgroup.subtree_control"));
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    let started = Instant::now();

    let moved: Vec<String>;
    {
        RESTORED.store(false, Ordering::SeqCst);
        let _guard = LayoutGuard;
        // A hierarchy with cgroups besides its root is in use (another test
        // run's container): wait a little for it to be free.
        let deadline = Instant::now() + Duration::from_secs(30);
        let o = loop {
            let o = layout_script("v2-controllers");
            if o.code == Some(3)
                && o.stderr.contains("(only the root may exist)")
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            break o;
        };
        // 3: some controllers could not move (held on v1): the scenarios
        // check those on the v1 side.
        if !(o.success() || o.code == Some(3)) {
            report.record("layout::v2_controllers", Err(format!("{o}")));
            drop(_guard);
            finish_run(report, started);
        }
        let v2: BTreeSet<String> = read(cg2.join("cgroup.controllers"))
            .split_whitespace()
            .map(String::from)
            .collect();
        moved = MOVE
            .iter()
            .filter(|c| ids_before.get(**c).copied().unwrap_or(0) != 0 && v2.contains(v2_name(c)))
            .map(|c| c.to_string())
            .collect();
        println!(
            "cgroup_v2: cgroup2 controllers [{}] (moved from v1: [{}]); {}",
            v2.iter().cloned().collect::<Vec<_>>().join(" "),
            moved.join(" "),
            o.stderr
                .lines()
                .filter(|l| l.contains("not moved"))
                .map(|l| l.trim_start_matches("cgroup-layout: "))
                .collect::<Vec<_>>()
                .join("; ")
        );

        if moved.is_empty() && !pure_host {
            // The scenarios still run (v1 files, refusals in the pure view,
            // cgroup2's built-in files), but no cgroup2 limit file is written.
            let why =
                "no controller could be moved to cgroup2: cgroup2 limit files are not exercised";
            if std::env::var_os("CI").is_some() {
                report.record("layout::v2_controllers", Err(format!("{why}\n{o}")));
            } else {
                println!("cgroup_v2: NOTE: {why}");
            }
        }
        if !pure_host {
            let cx = Ctx {
                layout: Layout::Hybrid,
                cg2: cg2.clone(),
                v2: v2.clone(),
                berth: berth.clone(),
            };
            if !moved.is_empty() && wanted(&filters, "hybrid::crun_refuses") {
                report.record("hybrid::crun_refuses", run_one(&cx, crun_refuses));
            }
            for (name, f) in SCENARIOS {
                let full = format!("hybrid::{name}");
                if wanted(&filters, &full) {
                    report.record(&full, run_one(&cx, *f));
                }
            }
        }

        if SCENARIOS
            .iter()
            .any(|(n, _)| wanted(&filters, &format!("pure_v2::{n}")))
        {
            let view = (!pure_host).then(|| PureV2View::start(&berth));
            let cx = Ctx {
                layout: Layout::PureV2,
                cg2: cg2.clone(),
                v2,
                berth: view.as_ref().map_or(berth.clone(), |v| v.wrapper.clone()),
            };
            for (name, f) in SCENARIOS {
                let full = format!("pure_v2::{name}");
                if wanted(&filters, &full) {
                    report.record(&full, run_one(&cx, *f));
                }
            }
            drop(view);
        }
    } // restore

    if !pure_host {
        let restored = layout_script("status");
        let ids = hierarchy_ids();
        let lost: Vec<&String> = moved
            .iter()
            .filter(|c| ids.get(*c).copied().unwrap_or(0) == 0)
            .collect();
        report.record(
            "restore::hierarchies",
            if moved.is_empty() {
                Ok("nothing was moved".into())
            } else if lost.is_empty() {
                Ok(format!("{} back on v1", moved.join(", ")))
            } else {
                Err(format!("still not on v1: {lost:?}\n{restored}"))
            },
        );
        let mounts_after = cgroup_mount_set();
        report.record(
            "restore::mounts",
            if mounts_after == mounts_before {
                Ok(format!("{} cgroup mounts as before", mounts_after.len()))
            } else {
                Err(format!(
                    "cgroup mounts differ\nbefore: {mounts_before:#?}\nafter: {mounts_after:#?}"
                ))
            },
        );
        let subtree_after = read(cg2.join("cgroup.subtree_control"));
        report.record(
            "restore::subtree_control",
            if subtree_after == subtree_before {
                Ok(format!("cgroup2 root subtree_control [{subtree_after}]"))
            } else {
                Err(format!(
                    "cgroup2 root subtree_control [{subtree_after}], was [{subtree_before}]"
                ))
            },
        );
        if !moved.is_empty() && wanted(&filters, "restore::crun_runs") {
            let cx = Ctx {
                layout: Layout::Hybrid,
                cg2: cg2.clone(),
                v2: BTreeSet::new(),
                berth: berth.clone(),
            };
            let r = run_one(&cx, |cx| crun_check(cx, true).unwrap());
            report.record("restore::crun_runs", r);
        }
    }
    finish_run(report, started);
}

fn finish_run(report: Report, started: Instant) -> ! {
    if !report.failed.is_empty() {
        println!("\nfailures:");
        for (name, why) in &report.failed {
            println!("\n---- {name} ----\n{why}");
        }
        println!("\nfailures:");
        for (name, _) in &report.failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.2}s",
        if report.failed.is_empty() {
            "ok"
        } else {
            "FAILED"
        },
        report.passed,
        report.failed.len(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if report.failed.is_empty() { 0 } else { 1 });
}
