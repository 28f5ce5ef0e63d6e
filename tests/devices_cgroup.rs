//! Every container gets the device cgroup runc gives it: deny all, then the
//! config's rules, then the default devices. Without it, a container with
//! CAP_MKNOD could create and open the host's disks.
//!
//! Real containers, as root: `cargo test -p berth --test devices_cgroup`.

use berth_integration::serde_json::json;
use berth_integration::Runtime;

#[test]
fn default_rules_deny_everything_but_the_default_devices() {
    let rt = Runtime::new("devcg");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    // The container's devices cgroup, from the host.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .find_map(|l| l.split_once(":devices:").map(|(_, p)| p.to_string()))
        .expect("the init is in a devices cgroup");
    let list =
        std::fs::read_to_string(format!("/sys/fs/cgroup/devices{path}/devices.list")).unwrap();
    rt.run(&["delete", "--force", &id]).ok();
    let rules: Vec<&str> = list.lines().collect();
    assert!(
        !rules.contains(&"a *:* rwm"),
        "all devices allowed: {rules:?}"
    );
    for want in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:9 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ] {
        assert!(rules.contains(&want), "{want} missing: {rules:?}");
    }
}

#[test]
fn a_created_disk_node_cannot_be_opened() {
    let rt = Runtime::new("devcgmknod");
    let mut b = rt.bundle();
    for set in ["bounding", "effective", "permitted"] {
        b.push(&format!("/process/capabilities/{set}"), json!("CAP_MKNOD"));
    }
    // /dev/loop0-like block device 7:0 and /dev/mem-like char device 1:1.
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "mknod /tmp/blk b 7 0 && mknod /tmp/mem c 1 1 && echo made; \
                head -c1 /tmp/blk >/dev/null 2>&1 && echo blk-open; \
                head -c1 /tmp/mem >/dev/null 2>&1 && echo mem-open; echo done"
        ]),
    );
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]).ok().stdout;
    assert!(out.contains("made") && out.contains("done"), "{out}");
    assert!(!out.contains("blk-open"), "a block device opened: {out}");
    assert!(!out.contains("mem-open"), "/dev/mem opened: {out}");
}
