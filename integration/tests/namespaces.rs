//! Namespaces: new ones differ from the host's, joined ones (by path) match the
//! holder's; hostname and domainname in a new UTS namespace.

use berth_integration::serde_json::{json, Value};
use berth_integration::*;
use std::process::{Child, Command, Stdio};

/// A process holding namespaces made by util-linux `unshare`; killed on drop.
struct Holder(Child);
impl Holder {
    fn new(flags: &[&str]) -> Holder {
        let c = Command::new("unshare")
            .args(flags)
            .args(["sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let h = Holder(c);
        // Wait until unshare has exec'ed sleep (namespaces are in place).
        for _ in 0..500 {
            let comm =
                std::fs::read_to_string(format!("/proc/{}/comm", h.pid())).unwrap_or_default();
            if comm.trim() == "sleep" {
                return h;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("unshare holder did not start");
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn ns(&self, name: &str) -> String {
        std::fs::read_link(format!("/proc/{}/ns/{name}", self.pid()))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
    fn ns_path(&self, name: &str) -> String {
        format!("/proc/{}/ns/{name}", self.pid())
    }
}
impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ns_of(r: &Value, name: &str) -> String {
    r["namespaces"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no ns {name} in {}", r["namespaces"]))
        .to_string()
}

#[test]
fn default_namespaces_are_new() {
    let rt = Runtime::new("nsnew");
    let r = rt.probe(|_| {});
    for ns in ["pid", "net", "ipc", "uts", "mnt"] {
        assert_ne!(ns_of(&r, ns), host_ns(ns), "{ns} namespace is the host's");
    }
    // Not asked for: shared with the host.
    for ns in ["user", "cgroup"] {
        assert_eq!(
            ns_of(&r, ns),
            host_ns(ns),
            "{ns} namespace should be the host's"
        );
    }
    assert_eq!(r["pid"], 1, "not pid 1 in a new pid namespace");
}

#[test]
fn omitted_namespaces_are_shared() {
    let rt = Runtime::new("nsshared");
    let r = rt.probe(|b| {
        b.without_namespace("network");
        b.without_namespace("ipc");
        b.without_namespace("pid");
    });
    for ns in ["net", "ipc", "pid"] {
        assert_eq!(ns_of(&r, ns), host_ns(ns), "{ns}");
    }
    assert_ne!(r["pid"], 1);
}

#[test]
fn cgroup_namespace_new() {
    let rt = Runtime::new("nscgroup");
    let r = rt.probe(|b| {
        b.namespace("cgroup", None);
    });
    assert_ne!(ns_of(&r, "cgroup"), host_ns("cgroup"));
}

/// The init is moved into the container's cgroup while it mounts its root
/// filesystem, and makes its cgroup namespace only after that: the
/// namespace's root is the container's cgroup, so every hierarchy shows "/".
#[test]
fn cgroup_namespace_is_rooted_at_the_containers_cgroup() {
    let rt = Runtime::new("nscgroot");
    let mut b = rt.bundle();
    b.namespace("cgroup", None);
    b.set("/process/args", json!(["cat", "/proc/self/cgroup"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(!lines.is_empty(), "{o}");
    for l in lines {
        assert!(l.ends_with(":/"), "not the namespace root: {l}\n{o}");
    }
}

#[test]
fn user_namespace_new_with_mappings() {
    let rt = Runtime::new("nsuser");
    let r = rt.probe(|b| {
        b.namespace("user", None);
        b.set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
        );
        // sysfs cannot be mounted by a user namespace that does not own the
        // net namespace it would show; keep the default net ns (new, owned).
    });
    assert_ne!(ns_of(&r, "user"), host_ns("user"));
    assert_eq!(r["uid"], 0);
    assert_eq!(r["gid"], 0);
}

#[test]
fn user_namespace_mapping_seen_in_proc() {
    let rt = Runtime::new("nsusermap");
    let r = rt.probe_args(&["read", "/proc/self/uid_map"], |b| {
        b.namespace("user", None);
        b.set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 300000, "size": 1000}]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 300000, "size": 1000}]),
        );
    });
    let map = r["read"]["data"].as_str().unwrap();
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f, vec!["0", "300000", "1000"], "uid_map {map:?}");
}

#[test]
fn time_namespace_new() {
    // runc 1.1 does not know the time namespace (added in runc 1.2).
    berth_only!();
    let rt = Runtime::new("nstime");
    let r = rt.probe(|b| {
        b.namespace("time", None);
    });
    // The new time ns applies to children: /proc/self/ns/time of the
    // process after exec is the new one.
    assert_ne!(ns_of(&r, "time"), host_ns("time"));
}

#[test]
fn join_namespaces_by_path() {
    let rt = Runtime::new("nsjoin");
    let h = Holder::new(&["--net", "--ipc", "--uts", "--cgroup"]);
    let r = rt.probe(|b| {
        b.remove("/hostname");
        b.namespace("network", Some(&h.ns_path("net")));
        b.namespace("ipc", Some(&h.ns_path("ipc")));
        b.namespace("uts", Some(&h.ns_path("uts")));
        b.namespace("cgroup", Some(&h.ns_path("cgroup")));
    });
    for ns in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(ns_of(&r, ns), h.ns(ns), "{ns} not joined");
        assert_ne!(ns_of(&r, ns), host_ns(ns));
    }
}

#[test]
fn join_pid_namespace_of_container() {
    let rt = Runtime::new("nsjoinpid");
    let mut first = rt.bundle();
    let id = rt.start_sleeper(&mut first);
    let pid = rt.pid(&id);
    let target = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let r = rt.probe(|b| {
        b.namespace("pid", Some(&format!("/proc/{pid}/ns/pid")));
    });
    assert_eq!(ns_of(&r, "pid"), target);
    assert_ne!(r["pid"], 1, "joined pid ns but is its init");
}

#[test]
fn join_user_namespace_by_path() {
    let rt = Runtime::new("nsjoinuser");
    let h = Holder::new(&["--user", "--map-root-user", "--net"]);
    let r = rt.probe(|b| {
        b.namespace("user", Some(&h.ns_path("user")));
        b.namespace("network", Some(&h.ns_path("net")));
        // runc 1.1 insists on mappings even when joining; give the holder's own
        // (--map-root-user maps 0 to our uid 0).
        b.set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 0, "size": 1}]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 0, "size": 1}]),
        );
        // gid 5 (tty) is not mapped in that user namespace.
        b.set(
            "/mounts/2/options",
            json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]),
        );
    });
    assert_eq!(ns_of(&r, "user"), h.ns("user"));
    assert_eq!(ns_of(&r, "net"), h.ns("net"));
}

#[test]
fn join_nonexistent_namespace_path_fails() {
    let rt = Runtime::new("nsbadpath");
    let mut b = rt.bundle();
    b.namespace("network", Some("/proc/999999999/ns/net"));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
    assert!(rt.state(&id).is_err(), "{o}");
}

#[test]
fn hostname() {
    let rt = Runtime::new("uts");
    let r = rt.probe(|b| {
        b.set("/hostname", json!("berth-host-1"));
    });
    assert_eq!(r["hostname"], "berth-host-1");
    // The host's hostname is untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "berth-host-1");
}

// berth-only: runc 1.1 ignores `domainname` (runtime-spec 1.1 / runc 1.2).
#[test]
fn domainname() {
    berth_only!();
    let rt = Runtime::new("utsdomain");
    let r = rt.probe(|b| {
        b.set("/hostname", json!("berth-host-1"));
        b.set("/domainname", json!("berth.example"));
    });
    assert_eq!(r["hostname"], "berth-host-1");
    assert_eq!(r["domainname"], "berth.example");
    // The host's hostname is untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "berth-host-1");
}

#[test]
fn hostname_without_uts_namespace_fails() {
    let rt = Runtime::new("utsnone");
    let mut b = rt.bundle();
    b.without_namespace("uts");
    b.set("/hostname", json!("berth-should-not-set"));
    b.write();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(
        host.trim(),
        "berth-should-not-set",
        "the host's hostname was changed!"
    );
}
