//! `linux.resources` in real containers: every setting this host supports
//! shows in the container's cgroup files after `create`, the limits are
//! enforced where a test can see it, and settings that are wrong or that
//! the host can't enforce fail `create` with one line naming the setting,
//! leaving no cgroup directory and no state behind.
//!
//! Real containers, as root: `cargo test -p berth --test resources`.
//! Written for any layout (v1, v2, hybrid): the cgroup directories are
//! found from `/proc/<pid>/cgroup` and the mounts, and files a host lacks
//! are skipped with a note (the build machine is hybrid: v1 controllers,
//! an empty cgroup2 at /sys/fs/cgroup/unified).

use std::path::{Path, PathBuf};

use berth_integration::serde_json::{json, Value};
use berth_integration::{cgroup_dirs_named, Bundle, Out, Runtime};

/// Where each cgroup hierarchy is mounted: (controllers or "" for
/// cgroup2, mount point).
fn mounts() -> Vec<(String, PathBuf)> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mp = pre.split(' ').nth(4).unwrap_or_default();
        let post: Vec<&str> = post.split(' ').collect();
        match post[0] {
            "cgroup2" => out.push((String::new(), PathBuf::from(mp))),
            "cgroup" => out.push((post[2].to_string(), PathBuf::from(mp))),
            _ => {}
        }
    }
    out
}

/// The directory of `pid`'s cgroup holding `controller`: the v1 hierarchy
/// that has it, else cgroup2 (pass "" for the cgroup2 directory itself).
fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mounts = mounts();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let v1 = !ctrls.is_empty() && ctrls.split(',').any(|c| c == controller);
        let v2 = ctrls.is_empty()
            && (controller.is_empty() || {
                let (_, mp) = mounts.iter().find(|(o, _)| o.is_empty())?;
                mp.join(path.trim_start_matches('/'))
                    .join("cgroup.controllers")
                    .exists()
                    && std::fs::read_to_string(
                        mp.join(path.trim_start_matches('/'))
                            .join("cgroup.controllers"),
                    )
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|c| c == controller)
            });
        if !(v1 || v2) {
            continue;
        }
        let mp = mounts.iter().find(|(opts, _)| {
            if ctrls.is_empty() {
                opts.is_empty()
            } else {
                ctrls.split(',').all(|c| opts.split(',').any(|o| o == c))
            }
        })?;
        return Some(mp.1.join(path.trim_start_matches('/')));
    }
    None
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A block device of this host with its "major:minor", preferring a disk.
fn block_device() -> Option<(u32, u32)> {
    let mut devs: Vec<(String, String)> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            Some((name, dev.trim().to_string()))
        })
        .filter(|(n, _)| !n.starts_with("loop") && !n.starts_with("ram"))
        .collect();
    devs.sort_by_key(|(n, _)| {
        !(n.starts_with("vd") || n.starts_with("sd") || n.starts_with("nvme"))
    });
    let (maj, min) = devs.first()?.1.split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// Asserts `file` in `dir` reads `want`; a file the host lacks is noted.
#[track_caller]
fn expect(dir: &Option<PathBuf>, file: &str, want: &str) {
    let Some(dir) = dir else {
        eprintln!("note: no cgroup directory for {file} on this host");
        return;
    };
    match read(dir, file) {
        Some(got) => assert_eq!(got, want, "{}", dir.join(file).display()),
        None => eprintln!("note: {} is missing on this host", dir.join(file).display()),
    }
}

#[test]
fn every_setting_is_in_the_cgroup_files() {
    let rt = Runtime::new("res-files");
    let mut b = rt.bundle();
    let mut res = json!({
        "memory": {
            "limit": 67108864, "reservation": 33554432, "swap": 134217728,
            "kernelTCP": 16777216, "swappiness": 10, "disableOOMKiller": true,
            "useHierarchy": true
        },
        "cpu": {
            "shares": 512, "quota": 20000, "period": 100000, "burst": 5000,
            "realtimePeriod": 100000, "realtimeRuntime": 1000,
            "cpus": "0", "mems": "0"
        },
        "pids": { "limit": 50 },
        "blockIO": { "weight": 300 },
        "hugepageLimits": [
            { "pageSize": "2MB", "limit": 4194304 },
            { "pageSize": "1GB", "limit": 0 }
        ],
        "unified": { "cgroup.max.depth": "3" }
    });
    if let Some((maj, min)) = block_device() {
        res["blockIO"]["throttleReadBpsDevice"] =
            json!([{ "major": maj, "minor": min, "rate": 1048576 }]);
        res["blockIO"]["throttleWriteIOPSDevice"] =
            json!([{ "major": maj, "minor": min, "rate": 100 }]);
    }
    b.set("/linux/resources", res);
    keep_only_host_supported(&mut b);
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let v1 = |c: &str| cgroup_dir(pid, c);
    let mem = v1("memory");
    let cpu = v1("cpu");
    if mem
        .as_ref()
        .is_some_and(|d| d.join("memory.limit_in_bytes").exists())
    {
        expect(&mem, "memory.limit_in_bytes", "67108864");
        expect(&mem, "memory.soft_limit_in_bytes", "33554432");
        expect(&mem, "memory.memsw.limit_in_bytes", "134217728");
        expect(&mem, "memory.kmem.tcp.limit_in_bytes", "16777216");
        expect(&mem, "memory.swappiness", "10");
        expect(&mem, "memory.use_hierarchy", "1");
        let oom = read(mem.as_ref().unwrap(), "memory.oom_control").unwrap();
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    } else {
        expect(&mem, "memory.max", "67108864");
        expect(&mem, "memory.low", "33554432");
        expect(&mem, "memory.swap.max", "67108864");
    }
    if cpu.as_ref().is_some_and(|d| d.join("cpu.shares").exists()) {
        expect(&cpu, "cpu.shares", "512");
        expect(&cpu, "cpu.cfs_period_us", "100000");
        expect(&cpu, "cpu.cfs_quota_us", "20000");
        expect(&cpu, "cpu.cfs_burst_us", "5000");
        expect(&cpu, "cpu.rt_period_us", "100000");
        expect(&cpu, "cpu.rt_runtime_us", "1000");
    } else {
        expect(&cpu, "cpu.weight", "59");
        expect(&cpu, "cpu.max", "20000 100000");
        expect(&cpu, "cpu.max.burst", "5000");
    }
    let cpuset = v1("cpuset");
    expect(&cpuset, "cpuset.cpus", "0");
    expect(&cpuset, "cpuset.mems", "0");
    expect(&v1("pids"), "pids.max", "50");
    let hugetlb = v1("hugetlb");
    if hugetlb
        .as_ref()
        .is_some_and(|d| d.join("hugetlb.2MB.limit_in_bytes").exists())
    {
        expect(&hugetlb, "hugetlb.2MB.limit_in_bytes", "4194304");
        expect(&hugetlb, "hugetlb.2MB.rsvd.limit_in_bytes", "4194304");
        expect(&hugetlb, "hugetlb.1GB.limit_in_bytes", "0");
        expect(&hugetlb, "hugetlb.1GB.rsvd.limit_in_bytes", "0");
    } else {
        expect(&hugetlb, "hugetlb.2MB.max", "4194304");
        expect(&hugetlb, "hugetlb.2MB.rsvd.max", "4194304");
    }
    let blkio = v1("blkio");
    if let Some(dir) = &blkio {
        if dir.join("blkio.bfq.weight").exists() {
            expect(&blkio, "blkio.bfq.weight", "300");
        }
        if let Some((maj, min)) = block_device() {
            expect(
                &blkio,
                "blkio.throttle.read_bps_device",
                &format!("{maj}:{min} 1048576"),
            );
            expect(
                &blkio,
                "blkio.throttle.write_iops_device",
                &format!("{maj}:{min} 100"),
            );
        }
    } else if let Some(io) = v1("io") {
        let max = read(&io, "io.max").unwrap_or_default();
        assert!(max.contains("rbps=1048576"), "{max}");
        assert!(max.contains("wiops=100"), "{max}");
    }
    expect(&cgroup_dir(pid, ""), "cgroup.max.depth", "3");
}

/// Takes out what this host can't have, so the test checks everything
/// the host does support (each is refused by its own test when missing).
fn keep_only_host_supported(b: &mut Bundle) {
    let cpu_v1 = mounts()
        .iter()
        .find(|(o, _)| o.split(',').any(|c| c == "cpu"))
        .map(|(_, mp)| mp.clone());
    let has = |p: Option<&PathBuf>, f: &str| p.is_some_and(|d| d.join(f).exists());
    if !has(cpu_v1.as_ref(), "cpu.rt_runtime_us") {
        b.remove("/linux/resources/cpu/realtimeRuntime");
        b.remove("/linux/resources/cpu/realtimePeriod");
    }
    let mem_v1 = mounts()
        .iter()
        .find(|(o, _)| o.split(',').any(|c| c == "memory"))
        .map(|(_, mp)| mp.clone());
    if mem_v1.is_none() {
        // v2: no swappiness, OOM killer switch or TCP limit.
        for f in ["swappiness", "disableOOMKiller", "kernelTCP"] {
            b.remove(&format!("/linux/resources/memory/{f}"));
        }
    } else if !has(mem_v1.as_ref(), "memory.memsw.limit_in_bytes") {
        b.remove("/linux/resources/memory/swap");
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists() {
        b.remove("/linux/resources/hugepageLimits/1");
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        b.remove("/linux/resources/hugepageLimits");
    }
}

#[test]
fn cpu_idle_is_written() {
    let rt = Runtime::new("res-idle");
    let mut b = rt.bundle();
    b.set("/linux/resources", json!({ "cpu": { "idle": 1 } }));
    let id = rt.start_sleeper(&mut b);
    let dir = cgroup_dir(rt.pid(&id), "cpu");
    expect(&dir, "cpu.idle", "1");
}

#[test]
fn a_fork_over_the_pids_limit_fails() {
    let rt = Runtime::new("res-pids");
    let mut b = rt.bundle();
    b.set("/linux/resources", json!({ "pids": { "limit": 4 } }));
    // sh plus three sleepers fill the limit; the fourth fork fails.
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "sleep 30 & sleep 30 & sleep 30 & if sleep 30 & then echo forked; fi; \
             wait $!; echo done"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("forked"), "a fifth process was forked: {out}");
    assert!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "{out}"
    );
}

#[test]
fn a_pids_limit_of_zero_lets_the_init_run_but_not_fork() {
    // runtime-spec 1.3 / runc 1.4: 0 is a real limit. The init exists
    // before the limit is written, so it runs; it can't fork.
    let rt = Runtime::new("res-pids0");
    let mut b = rt.bundle();
    b.set("/linux/resources", json!({ "pids": { "limit": 0 } }));
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "echo running; if ls / >/dev/null; then echo forked; fi"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert!(
        out.stdout.contains("running"),
        "the init did not run: {out}"
    );
    assert!(
        !out.stdout.contains("forked"),
        "forked under pids.max 0: {out}"
    );
}

#[test]
fn a_process_over_the_memory_limit_is_oom_killed() {
    let rt = Runtime::new("res-oom");
    let mut b = rt.bundle();
    b.set(
        "/linux/resources",
        json!({ "memory": { "limit": 16777216, "swap": 16777216 } }),
    );
    // dd fills a 64 MiB buffer: four times the limit.
    b.set(
        "/process/args",
        json!(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert_eq!(
        out.code,
        Some(128 + libc::SIGKILL),
        "dd was not killed by SIGKILL: {out}"
    );
}

#[test]
fn cpuset_restricts_the_affinity() {
    let rt = Runtime::new("res-cpuset");
    let cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.effective_cpus")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cpuset.cpus.effective"))
        .unwrap_or_default();
    let last = cpus
        .trim()
        .rsplit([',', '-'])
        .next()
        .unwrap_or("0")
        .to_string();
    let report = rt.probe_args(&["sched"], |b| {
        b.set("/linux/resources", json!({ "cpu": { "cpus": last } }));
    });
    assert_eq!(report["sched"]["cpus"], json!(last), "{report}");
}

/// `create` fails with one line naming `setting` and mentioning `msg`, and
/// leaves no cgroup directory and no state.
#[track_caller]
fn refused(res_or_edit: impl FnOnce(&mut Bundle), setting: &str, msg: &str) -> Out {
    let rt = Runtime::new("res-bad");
    let mut b = rt.bundle();
    res_or_edit(&mut b);
    b.write();
    let id = rt.id();
    let out = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    // Warnings about the rest of the config are not the error.
    let err: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("berth: warning:") && !l.trim().is_empty())
        .collect();
    let err = err.join("\n");
    assert!(err.contains(setting), "{setting} not named: {out}");
    assert!(err.contains(msg), "{msg:?} not said: {out}");
    assert_eq!(err.lines().count(), 1, "not one line: {out}");
    assert_eq!(cgroup_dirs_named(&id), Vec::<PathBuf>::new(), "{out}");
    assert!(!rt.root().join(&id).exists(), "state left: {out}");
    out
}

fn resources(res: Value) -> impl FnOnce(&mut Bundle) {
    move |b| {
        b.set("/linux/resources", res);
    }
}

#[test]
fn negative_limits_are_refused() {
    refused(
        resources(json!({ "memory": { "limit": -5 } })),
        "linux.resources.memory.limit",
        "-5 is negative",
    );
    refused(
        resources(json!({ "cpu": { "shares": -1024 } })),
        "linux.resources.cpu.shares",
        "negative",
    );
}

#[test]
fn overflowing_limits_are_refused() {
    refused(
        resources(json!({ "pids": { "limit": 9223372036854775808u64 } })),
        "linux.resources.pids.limit",
        "out of range",
    );
    refused(
        resources(json!({ "blockIO": { "weight": 65536 } })),
        "linux.resources.blockIO.weight",
        "out of range",
    );
}

#[test]
fn bad_cpu_lists_are_refused() {
    refused(
        resources(json!({ "cpu": { "cpus": "0-1,x" } })),
        "linux.resources.cpu.cpus",
        "not a list",
    );
    refused(
        resources(json!({ "cpu": { "mems": "0 1" } })),
        "linux.resources.cpu.mems",
        "not a list",
    );
}

#[test]
fn cpus_the_host_lacks_are_refused_by_the_kernel() {
    refused(
        resources(json!({ "cpu": { "cpus": "4000" } })),
        "linux.resources.cpu.cpus",
        "cpuset.cpus",
    );
}

#[test]
fn bad_device_rule_type_is_refused() {
    refused(
        resources(json!({ "devices": [{ "allow": true, "type": "q", "access": "r" }] })),
        "linux.resources.devices[0].type",
        "unknown device type",
    );
}

#[test]
fn cgroups_path_with_dotdot_is_refused() {
    refused(
        |b| {
            b.set("/linux/cgroupsPath", json!("/berth-test/../../escape"));
        },
        "linux.cgroupsPath",
        "\"..\"",
    );
}

#[test]
fn settings_the_host_lacks_are_refused() {
    let has_v1 = |c: &str| mounts().iter().any(|(o, _)| o.split(',').any(|x| x == c));
    if !has_v1("net_cls") {
        refused(
            resources(json!({ "network": { "classID": 1048577 } })),
            "linux.resources.network.classID",
            "net_cls controller is not mounted",
        );
    }
    if !has_v1("net_prio") {
        refused(
            resources(json!({ "network": { "priorities": [{ "name": "lo", "priority": 1 }] } })),
            "linux.resources.network.priorities",
            "net_prio controller is not mounted",
        );
    }
    if !has_v1("rdma") {
        refused(
            resources(json!({ "rdma": { "mlx5_0": { "hcaHandles": 1 } } })),
            "linux.resources.rdma",
            "rdma controller",
        );
    }
    if has_v1("memory") {
        // memory is a v1 controller here: cgroup2 has no memory files.
        refused(
            resources(json!({ "unified": { "memory.max": "1000000" } })),
            "linux.resources.unified[\"memory.max\"]",
            "mounted as cgroup v1",
        );
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-64kB").exists() {
        refused(
            resources(json!({ "hugepageLimits": [{ "pageSize": "64KB", "limit": 0 }] })),
            "linux.resources.hugepageLimits[0].pageSize",
            "no 64KB huge pages",
        );
    }
    refused(
        resources(json!({ "memory": { "kernel": 1048576 } })),
        "linux.resources.memory.kernel",
        "not enforced by Linux",
    );
}

#[test]
fn unified_keys_cannot_reach_outside() {
    refused(
        resources(json!({ "unified": { "cgroup.procs": "1" } })),
        "linux.resources.unified[\"cgroup.procs\"]",
        "not a resource limit",
    );
    refused(
        resources(json!({ "unified": { "../cgroup.subtree_control": "+memory" } })),
        "linux.resources.unified[\"../cgroup.subtree_control\"]",
        "not a file name",
    );
}

#[test]
fn a_write_the_kernel_refuses_names_file_value_and_errno() {
    let cpu_v1 = mounts()
        .into_iter()
        .find(|(o, _)| o.split(',').any(|c| c == "cpu"))
        .map(|(_, mp)| mp);
    let Some(cpu) = cpu_v1.filter(|d| d.join("cpu.rt_runtime_us").exists()) else {
        eprintln!("skipped: no v1 realtime cpu budget on this host");
        return;
    };
    // More realtime runtime than the root's budget.
    let root: i64 = read(&cpu, "cpu.rt_runtime_us").unwrap().parse().unwrap();
    let out = refused(
        resources(json!({ "cpu": { "realtimePeriod": 1000000, "realtimeRuntime": root + 10000 } })),
        "linux.resources.cpu.realtimeRuntime",
        "cpu.rt_runtime_us",
    );
    assert!(
        out.stderr.contains(&format!("\"{}\"", root + 10000)),
        "{out}"
    );
    assert!(
        out.stderr.contains("(EINVAL)") || out.stderr.contains("(EBUSY)"),
        "{out}"
    );
}

#[test]
fn systemd_cgroups_path_maps_to_systemds_layout() {
    let rt = Runtime::new("res-slice");
    let mut b = rt.bundle();
    let slice = format!("berthtest{}.slice", std::process::id());
    b.set(
        "/linux/cgroupsPath",
        json!(format!("{slice}:berth:x{}", std::process::id())),
    );
    b.set("/linux/resources", json!({ "pids": { "limit": 20 } }));
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let dir = cgroup_dir(pid, "pids").expect("a pids cgroup");
    let want = format!("/{slice}/berth-x{}.scope", std::process::id());
    assert!(dir.to_string_lossy().ends_with(&want), "{}", dir.display());
    expect(&Some(dir.clone()), "pids.max", "20");
    rt.run(&["delete", "--force", &id]).ok();
    assert!(!dir.exists(), "{} left", dir.display());
    for d in cgroup_dirs_named(&slice) {
        let _ = std::fs::remove_dir(d);
    }
}
