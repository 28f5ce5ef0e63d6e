//! `linux.resources` and `linux.cgroupsPath`: what berth accepts before any
//! cgroup is touched.
//!
//! Two passes, as for the rest of the config. The untyped pass ([`raw`])
//! runs on the JSON before oci-spec's typed parse: a negative number in an
//! unsigned field, a number too large for its field, a fraction or a string
//! where a number belongs would otherwise stop the parse with one serde
//! message. It reports each such field by its path and removes it, so the
//! typed parse and the typed checks still run. The typed pass ([`check`])
//! checks the ranges the kernel accepts and the runtime spec defines.
//!
//! Paths are always as in config.json (`linux.resources.memory.limit`),
//! also for a resources file given to `update -r`, so a setting has the same
//! name in every message whichever way it came in.
//!
//! Conventions (runc's, which containerd, CRI-O and podman rely on): for
//! memory limits, cpu quota and realtime runtime, `-1` means unlimited and
//! `0` leaves the setting as it is; for cpu shares and period, realtime
//! period, and blockIO weights, `0` leaves it as it is. `pids.limit` follows
//! runtime-spec 1.3 and runc 1.4: `-1` is unlimited and `0` is a limit of
//! zero; a `pids` object without `limit` sets nothing.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxWeightDevice};
use serde_json::{Map, Value};

use crate::error::{BundleError, Problem, Validation};
use crate::jsonpath::{field, index, key, Removed};

/// Where the resources live in config.json; every path starts here.
pub(crate) const BASE: &str = "linux.resources";

/// The kernel's largest CFS quota and burst, in microseconds (it keeps
/// bandwidth in 44 bits of microseconds).
pub const CFS_MAX_US: i64 = (1 << 44) - 1;

/// cgroup v1 `cpu.shares` bounds the kernel enforces (it clamps, runc refuses).
pub const SHARES_MIN: u64 = 2;
pub const SHARES_MAX: u64 = 262_144;

/// `cpu.cfs_period_us` / the period in `cpu.max`: 1 ms to 1 s.
pub const PERIOD_MIN: u64 = 1_000;
pub const PERIOD_MAX: u64 = 1_000_000;

/// blkio / BFQ weights.
pub const BLKIO_WEIGHT_MIN: u16 = 10;
pub const BLKIO_WEIGHT_MAX: u16 = 1_000;

/// cgroup2 files in the container's own directory that `unified` may not
/// write: they move processes, change which controllers exist below, or
/// belong to berth's own commands (pause, kill --all).
pub const UNIFIED_RESERVED: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "cgroup.type",
    "cgroup.kill",
    "cgroup.freeze",
    "cgroup.controllers",
    "cgroup.events",
    "cgroup.stat",
];

#[derive(Clone, Copy)]
enum Int {
    I64,
    U64,
    U32,
    U16,
}

impl Int {
    fn range(self) -> (i128, i128) {
        match self {
            Int::I64 => (i64::MIN.into(), i64::MAX.into()),
            Int::U64 => (0, u64::MAX.into()),
            Int::U32 => (0, u32::MAX.into()),
            Int::U16 => (0, u16::MAX.into()),
        }
    }
}

const MEMORY: &[(&str, Int)] = &[
    ("limit", Int::I64),
    ("reservation", Int::I64),
    ("swap", Int::I64),
    ("kernel", Int::I64),
    ("kernelTCP", Int::I64),
    ("swappiness", Int::U64),
];

const CPU: &[(&str, Int)] = &[
    ("shares", Int::U64),
    ("quota", Int::I64),
    ("burst", Int::U64),
    ("period", Int::U64),
    ("realtimeRuntime", Int::I64),
    ("realtimePeriod", Int::U64),
    ("idle", Int::I64),
];

const WEIGHT_DEVICE: &[(&str, Int)] = &[
    ("major", Int::I64),
    ("minor", Int::I64),
    ("weight", Int::U16),
    ("leafWeight", Int::U16),
];

const THROTTLE_DEVICE: &[(&str, Int)] =
    &[("major", Int::I64), ("minor", Int::I64), ("rate", Int::U64)];

const THROTTLES: &[&str] = &[
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
];

/// The untyped pass over `linux.resources` (found in `config`): numbers
/// that don't fit their field and required fields that are missing.
/// Offending fields are removed so the typed parse can go on.
pub(crate) fn raw(config: &mut Value, out: &mut Validation) {
    let Some(res) = config
        .get_mut("linux")
        .and_then(|l| l.get_mut("resources"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(m) = object(res, "memory") {
        ints(m, MEMORY, &field(BASE, "memory"), out);
    }
    if let Some(c) = object(res, "cpu") {
        let at = field(BASE, "cpu");
        ints(c, CPU, &at, out);
        strings(c, &["cpus", "mems"], &at, out);
    }
    pids(res, out);
    if let Some(b) = object(res, "blockIO") {
        let at = field(BASE, "blockIO");
        ints(
            b,
            &[("weight", Int::U16), ("leafWeight", Int::U16)],
            &at,
            out,
        );
        devices(b, "weightDevice", WEIGHT_DEVICE, &at, out);
        for name in THROTTLES {
            devices(b, name, THROTTLE_DEVICE, &at, out);
        }
    }
    if let Some(list) = res.get_mut("hugepageLimits").and_then(Value::as_array_mut) {
        let at = field(BASE, "hugepageLimits");
        for (i, entry) in list.iter_mut().enumerate() {
            let Some(e) = entry.as_object_mut() else {
                continue;
            };
            let here = index(&at, i);
            ints(e, &[("limit", Int::I64)], &here, out);
            strings(e, &["pageSize"], &here, out);
            required(e, &["pageSize", "limit"], &here, out);
        }
    }
    if let Some(n) = object(res, "network") {
        let at = field(BASE, "network");
        ints(n, &[("classID", Int::U32)], &at, out);
        if let Some(list) = n.get_mut("priorities").and_then(Value::as_array_mut) {
            let at = field(&at, "priorities");
            for (i, entry) in list.iter_mut().enumerate() {
                let Some(e) = entry.as_object_mut() else {
                    continue;
                };
                let here = index(&at, i);
                ints(e, &[("priority", Int::U32)], &here, out);
                strings(e, &["name"], &here, out);
                required(e, &["name", "priority"], &here, out);
            }
        }
    }
    if let Some(r) = object(res, "rdma") {
        let at = field(BASE, "rdma");
        for (dev, limits) in r.iter_mut() {
            if let Some(l) = limits.as_object_mut() {
                let here = key(&at, dev);
                ints(
                    l,
                    &[("hcaHandles", Int::U32), ("hcaObjects", Int::U32)],
                    &here,
                    out,
                );
            }
        }
    }
    if let Some(u) = object(res, "unified") {
        let at = field(BASE, "unified");
        let bad: Vec<String> = u
            .iter()
            .filter(|(_, v)| !v.is_string())
            .map(|(k, _)| k.clone())
            .collect();
        for k in bad {
            out.problem(
                key(&at, &k),
                format!(
                    "must be a string (the file's content), got {}",
                    shown(&u[&k])
                ),
            );
            u.remove(&k);
        }
    }
}

fn object<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(name).and_then(Value::as_object_mut)
}

/// A JSON value quoted for a one-line message (strings escaped, long ones cut).
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Checks that each named number fits its field; removes the ones that don't.
fn ints(obj: &mut Map<String, Value>, fields: &[(&str, Int)], at: &str, out: &mut Validation) {
    for (name, kind) in fields {
        let Some(v) = obj.get(*name) else { continue };
        if v.is_null() {
            continue;
        }
        if let Some(msg) = int_problem(v, *kind) {
            out.problem(field(at, name), msg);
            obj.remove(*name);
        }
    }
}

fn int_problem(v: &Value, kind: Int) -> Option<String> {
    let (min, max) = kind.range();
    let Value::Number(n) = v else {
        return Some(format!("expected an integer, got {}", shown(v)));
    };
    let value: Option<i128> = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    match value {
        Some(x) if x < 0 && min == 0 => {
            Some(format!("{x} is negative; this field takes 0 to {max}"))
        }
        Some(x) if x < min || x > max => Some(format!("{x} is out of range ({min} to {max})")),
        Some(_) => None,
        None => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                Some(format!("{n} is not an integer"))
            } else {
                Some(format!("{n} is out of range ({min} to {max})"))
            }
        }
    }
}

/// Fields that must be strings when present.
fn strings(obj: &mut Map<String, Value>, names: &[&str], at: &str, out: &mut Validation) {
    for name in names {
        let Some(v) = obj.get(*name) else { continue };
        if v.is_null() || v.is_string() {
            continue;
        }
        out.problem(
            field(at, name),
            format!("expected a string, got {}", shown(v)),
        );
        obj.remove(*name);
    }
}

/// Fields the runtime spec marks REQUIRED in a list entry.
fn required(obj: &Map<String, Value>, names: &[&str], at: &str, out: &mut Validation) {
    for name in names {
        if obj.get(*name).is_none_or(Value::is_null) {
            out.problem(field(at, name), "required");
        }
    }
}

/// `pids.limit`: a `pids` object without a limit sets nothing (runtime-spec
/// 1.3 made the limit optional); oci-spec would read it as a limit of 0.
fn pids(res: &mut Map<String, Value>, out: &mut Validation) {
    let Some(p) = object(res, "pids") else {
        return;
    };
    ints(p, &[("limit", Int::I64)], &field(BASE, "pids"), out);
    if p.get("limit").is_none_or(Value::is_null) {
        res.remove("pids");
    }
}

fn devices(
    b: &mut Map<String, Value>,
    name: &str,
    fields: &[(&str, Int)],
    at: &str,
    out: &mut Validation,
) {
    let Some(list) = b.get_mut(name).and_then(Value::as_array_mut) else {
        return;
    };
    let at = field(at, name);
    for (i, entry) in list.iter_mut().enumerate() {
        let Some(e) = entry.as_object_mut() else {
            continue;
        };
        let here = index(&at, i);
        ints(e, fields, &here, out);
        required(e, &["major", "minor"], &here, out);
    }
}

/// The typed checks on `linux.resources`.
pub(crate) fn check(res: &LinuxResources, out: &mut Validation) {
    if let Some(m) = res.memory() {
        memory(m, &field(BASE, "memory"), out);
    }
    if let Some(c) = res.cpu() {
        cpu(c, &field(BASE, "cpu"), out);
    }
    if let Some(p) = res.pids() {
        if p.limit() < -1 {
            out.problem(
                field(BASE, "pids.limit"),
                format!(
                    "{} is negative: -1 means unlimited, else a number of processes",
                    p.limit()
                ),
            );
        }
    }
    if let Some(b) = res.block_io() {
        block_io(b, &field(BASE, "blockIO"), out);
    }
    hugepages(res, out);
    if let Some(n) = res.network() {
        let at = field(BASE, "network.priorities");
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            if let Some(msg) = name_problem(p.name(), "an interface name") {
                out.problem(field(&index(&at, i), "name"), msg);
            }
        }
    }
    if let Some(rdma) = res.rdma() {
        let mut names: Vec<&String> = rdma.keys().collect();
        names.sort();
        for dev in names {
            if let Some(msg) = name_problem(dev, "an RDMA device name") {
                out.problem(key(&field(BASE, "rdma"), dev), msg);
            }
        }
    }
    if let Some(unified) = res.unified() {
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for k in keys {
            let at = key(&field(BASE, "unified"), k);
            if let Some(msg) = unified_key_problem(k) {
                out.problem(&at, msg);
            } else if unified[k].contains('\0') {
                out.problem(&at, "the value contains a NUL byte");
            }
        }
    }
}

/// Bytes: -1 is unlimited, 0 leaves it unset, else positive.
fn bytes(v: Option<i64>, at: &str, out: &mut Validation) {
    if let Some(v) = v.filter(|v| *v < -1) {
        out.problem(
            at,
            format!("{v} is negative: -1 means unlimited, else a number of bytes"),
        );
    }
}

fn memory(m: &LinuxMemory, at: &str, out: &mut Validation) {
    bytes(m.limit(), &field(at, "limit"), out);
    bytes(m.reservation(), &field(at, "reservation"), out);
    bytes(m.swap(), &field(at, "swap"), out);
    bytes(m.kernel_tcp(), &field(at, "kernelTCP"), out);
    #[allow(deprecated)] // read to refuse it
    let kernel = m.kernel();
    if let Some(k) = kernel.filter(|k| !matches!(k, 0 | -1)) {
        out.problem(
            field(at, "kernel"),
            format!("{k}: kernel memory limits are deprecated by the runtime spec and not enforced by Linux (current kernels accept and ignore cgroup v1 memory.kmem.limit_in_bytes; cgroup v2 has no such limit); leave it unset"),
        );
    }
    if let Some(s) = m.swappiness().filter(|s| *s > 100) {
        out.problem(
            field(at, "swappiness"),
            format!("{s} is out of range (0 to 100)"),
        );
    }
    match (m.limit(), m.swap()) {
        (Some(limit), Some(swap)) if limit > 0 && swap > 0 && swap < limit => out.problem(
            field(at, "swap"),
            format!("{swap} is less than memory.limit {limit}: swap limits memory plus swap, so it must be at least the memory limit (or -1 for unlimited)"),
        ),
        (Some(-1), Some(swap)) if swap > 0 => out.problem(
            field(at, "swap"),
            format!("{swap} limits memory plus swap, but memory.limit is -1 (unlimited); set a memory limit no larger than it, or -1"),
        ),
        _ => {}
    }
}

fn cpu(c: &LinuxCpu, at: &str, out: &mut Validation) {
    if let Some(s) = c
        .shares()
        .filter(|s| *s != 0 && !(SHARES_MIN..=SHARES_MAX).contains(s))
    {
        out.problem(
            field(at, "shares"),
            format!("{s} is out of range ({SHARES_MIN} to {SHARES_MAX}; 0 leaves it unset)"),
        );
    }
    if let Some(q) = c.quota() {
        let msg = match q {
            -1 | 0 => None,
            q if q < -1 => Some(format!(
                "{q} is negative: -1 means unlimited, else microseconds per period"
            )),
            q if q < PERIOD_MIN as i64 => Some(format!(
                "{q} is below the kernel's minimum of {PERIOD_MIN} microseconds"
            )),
            q if q > CFS_MAX_US => Some(format!(
                "{q} is above the kernel's maximum of {CFS_MAX_US} microseconds"
            )),
            _ => None,
        };
        if let Some(msg) = msg {
            out.problem(field(at, "quota"), msg);
        }
    }
    if let Some(p) = c
        .period()
        .filter(|p| *p != 0 && !(PERIOD_MIN..=PERIOD_MAX).contains(p))
    {
        out.problem(
            field(at, "period"),
            format!("{p} is out of the kernel's range ({PERIOD_MIN} to {PERIOD_MAX} microseconds; 0 leaves it unset)"),
        );
    }
    if let Some(b) = c.burst() {
        if b > CFS_MAX_US as u64 {
            out.problem(
                field(at, "burst"),
                format!("{b} is above the kernel's maximum of {CFS_MAX_US} microseconds"),
            );
        } else if let Some(q) = c.quota().filter(|q| *q > 0 && b > *q as u64) {
            out.problem(
                field(at, "burst"),
                format!("{b} is more than cpu.quota {q}: the kernel allows a burst of at most the quota"),
            );
        }
    }
    if let Some(r) = c.realtime_runtime() {
        if r < -1 {
            out.problem(
                field(at, "realtimeRuntime"),
                format!("{r} is negative: -1 means unlimited, else microseconds per period"),
            );
        } else if let Some(p) = c
            .realtime_period()
            .filter(|p| *p > 0 && r > 0 && r as u64 > *p)
        {
            out.problem(
                field(at, "realtimeRuntime"),
                format!("{r} is more than cpu.realtimePeriod {p}: a period's runtime can't exceed the period"),
            );
        }
    }
    if let Some(i) = c.idle().filter(|i| !matches!(i, 0 | 1)) {
        out.problem(
            field(at, "idle"),
            format!("{i} is not 0 (normal) or 1 (SCHED_IDLE)"),
        );
    }
    for (name, v) in [("cpus", c.cpus()), ("mems", c.mems())] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            if let Err(e) = parse_cpu_list(v) {
                out.problem(
                    field(at, name),
                    format!("{v:?} is not a list like \"0-3,5\": {e}"),
                );
            }
        }
    }
}

/// Parses a kernel cpu or memory-node list ("0-3,5", "0-7:2/4"), the
/// format of `cpuset.cpus`: comma-separated numbers and ranges, a range
/// optionally followed by `:used/group`. Returns the ranges.
pub fn parse_cpu_list(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let num = |t: &str| -> Result<u32, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{t:?} is not a number"));
        }
        t.parse::<u32>().map_err(|_| format!("{t} is too large"))
    };
    let mut ranges = Vec::new();
    for item in s.split(',') {
        if item.is_empty() {
            return Err("empty item".into());
        }
        let (range, stride) = match item.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(range)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} runs backwards"));
        }
        if let Some(stride) = stride {
            let (used, group) = stride
                .split_once('/')
                .ok_or_else(|| format!("{stride:?} is not used/group"))?;
            let (used, group) = (num(used)?, num(group)?);
            if used == 0 || group == 0 || used > group || !range.contains('-') {
                return Err(format!("bad stride {item:?}"));
            }
        }
        ranges.push((lo, hi));
    }
    Ok(ranges)
}

fn weight(v: Option<u16>, at: &str, out: &mut Validation) {
    if let Some(w) = v.filter(|w| *w != 0 && !(BLKIO_WEIGHT_MIN..=BLKIO_WEIGHT_MAX).contains(w)) {
        out.problem(
            at,
            format!(
                "{w} is out of range ({BLKIO_WEIGHT_MIN} to {BLKIO_WEIGHT_MAX}; 0 leaves it unset)"
            ),
        );
    }
}

fn device_numbers(major: i64, minor: i64, at: &str, out: &mut Validation) {
    for (name, v) in [("major", major), ("minor", minor)] {
        if !(0..=i64::from(u32::MAX)).contains(&v) {
            out.problem(field(at, name), format!("{v} is not a device number"));
        }
    }
}

fn block_io(b: &LinuxBlockIo, at: &str, out: &mut Validation) {
    weight(b.weight(), &field(at, "weight"), out);
    weight(b.leaf_weight(), &field(at, "leafWeight"), out);
    let devices: &[LinuxWeightDevice] = b.weight_device().as_deref().unwrap_or_default();
    for (i, d) in devices.iter().enumerate() {
        let here = index(&field(at, "weightDevice"), i);
        device_numbers(d.major(), d.minor(), &here, out);
        weight(d.weight(), &field(&here, "weight"), out);
        weight(d.leaf_weight(), &field(&here, "leafWeight"), out);
    }
    let throttles = [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ];
    for (name, list) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            device_numbers(d.major(), d.minor(), &index(&field(at, name), i), out);
        }
    }
}

/// `"2MB"`, `"1GB"`, `"64KB"`: the names the hugetlb controller gives its
/// files. Returns the size in bytes.
pub fn parse_page_size(s: &str) -> Option<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let shift = match unit {
        "B" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        "PB" => 50,
        _ => return None,
    };
    if digits.is_empty() || digits.starts_with('0') {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn hugepages(res: &LinuxResources, out: &mut Validation) {
    let at = field(BASE, "hugepageLimits");
    let mut seen = Vec::new();
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        let here = index(&at, i);
        let size = h.page_size();
        if !size.is_empty() {
            match parse_page_size(size) {
                None => out.problem(
                    field(&here, "pageSize"),
                    format!("{size:?} is not a page size like \"2MB\" or \"1GB\""),
                ),
                Some(_) if seen.contains(&size) => out.problem(
                    field(&here, "pageSize"),
                    format!("{size} is limited more than once"),
                ),
                Some(_) => seen.push(size),
            }
        }
        bytes(Some(h.limit()), &field(&here, "limit"), out);
    }
}

/// A name written into a cgroup file line by line (an interface, an RDMA
/// device): no blanks, no control characters, nothing that splits a line.
fn name_problem(name: &str, what: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("must be {what}, not empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{name:?} is not {what}: it contains blanks or control characters"
        ));
    }
    None
}

/// A `unified` key names a file in the container's cgroup2 directory: a
/// plain `controller.file` name, and not one that would let the container
/// out of its cgroup or take berth's own controls.
pub fn unified_key_problem(k: &str) -> Option<String> {
    if k.is_empty() || k == "." || k == ".." || k.contains('/') || k.contains('\0') {
        return Some("not a file name in the cgroup directory (no '/', '.' or '..')".into());
    }
    if !k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || !k.contains('.')
        || k.starts_with('.')
    {
        return Some(
            "not a cgroup interface file name (expected \"<controller>.<file>\", e.g. \"memory.high\")"
                .into(),
        );
    }
    if UNIFIED_RESERVED.contains(&k) {
        return Some(format!(
            "{k} is not a resource limit: writing it would move processes, change the cgroup's controllers or take over berth's own pause/kill"
        ));
    }
    None
}

/// `linux.cgroupsPath` may not climb out of the hierarchy: a `..`
/// component is an error (the cgroup manager also cleans paths lexically,
/// as a second line of defence).
pub(crate) fn cgroups_path(path: &str, out: &mut Validation) {
    let at = "linux.cgroupsPath";
    if path.contains('\0') {
        out.problem(at, "contains a NUL byte");
        return;
    }
    if path.split(['/', ':']).any(|c| c == "..") {
        out.problem(
            at,
            format!("{path:?} has a \"..\" component: the container's cgroup must be inside the cgroup hierarchy, named without \"..\""),
        );
    }
}

/// Reads a resources file as `update -r` takes it (a `linux.resources`
/// object: `{"memory": {"limit": ...}, "cpu": {...}}`) and checks it as
/// config.json's resources are checked. Every failure, malformed JSON
/// included, is [`BundleError::Invalid`] with every problem found, paths as
/// in config.json (`linux.resources.memory.limit`; `line L column C` for a
/// JSON syntax error), so the caller can say "invalid resources: ...".
pub fn parse_resources(json: &[u8]) -> Result<LinuxResources, BundleError> {
    let inner = match crate::parse_value(json) {
        Ok(v) => v,
        Err(BundleError::Parse { at, msg }) => {
            return Err(BundleError::Invalid(vec![Problem::new(
                at,
                format!("not JSON: {msg}"),
            )]))
        }
        Err(e) => return Err(e),
    };
    if !inner.is_object() {
        return Err(BundleError::Invalid(vec![Problem::new(
            BASE,
            format!(
                "a resources file holds one JSON object, like config.json's linux.resources, not {}",
                shown(&inner)
            ),
        )]));
    }
    let mut wrapped = serde_json::json!({ "linux": { "resources": inner } });
    let mut out = Validation::default();
    let mut removed = Removed::default();
    crate::raw::device_rules(&mut wrapped, &mut out, &mut removed);
    raw(&mut wrapped, &mut out);
    let inner = wrapped["linux"]["resources"].take();
    let res: LinuxResources = match serde_path_to_error::deserialize(inner) {
        Ok(r) => r,
        Err(e) => {
            let path = removed.remap(&field(BASE, &crate::jsonpath::from_serde(e.path())));
            out.problem(path, crate::one_line(&e.inner().to_string()));
            return Err(BundleError::Invalid(out.problems));
        }
    };
    let mut typed = Validation::default();
    check(&res, &mut typed);
    out.problems
        .extend(typed.problems.into_iter().map(|p| Problem {
            path: removed.remap(&p.path),
            msg: p.msg,
        }));
    if out.is_ok() {
        Ok(res)
    } else {
        Err(BundleError::Invalid(out.problems))
    }
}

/// Checks resources built in code (from `update`'s flags, say) as
/// config.json's are checked.
pub fn check_resources(res: &LinuxResources) -> Result<(), BundleError> {
    let mut out = Validation::default();
    check(res, &mut out);
    if out.is_ok() {
        Ok(())
    } else {
        Err(BundleError::Invalid(out.problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5"), Ok(vec![(0, 3), (5, 5)]));
        assert_eq!(parse_cpu_list("7"), Ok(vec![(7, 7)]));
        assert!(parse_cpu_list("0-7:2/4").is_ok());
        for bad in [
            "", "0,", "a", "3-1", "0 -1", " 0", "0-", "-1", "0-3:5/4", "1:1/2", "0,,1",
        ] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size("2MB"), Some(2 << 20));
        assert_eq!(parse_page_size("1GB"), Some(1 << 30));
        assert_eq!(parse_page_size("64KB"), Some(64 << 10));
        for bad in ["2M", "MB", "02MB", "2mb", "2 MB", "", "1.5GB"] {
            assert_eq!(parse_page_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unified_keys() {
        assert_eq!(unified_key_problem("memory.high"), None);
        assert_eq!(unified_key_problem("cgroup.max.depth"), None);
        assert_eq!(unified_key_problem("io.bfq.weight"), None);
        for bad in [
            "",
            "..",
            "../memory.max",
            "a/memory.max",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.kill",
            "memory",
            ".hidden",
            "memory max",
        ] {
            assert!(unified_key_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn int_problems() {
        use serde_json::json;
        assert_eq!(int_problem(&json!(5), Int::U64), None);
        assert!(int_problem(&json!(-5), Int::U64)
            .unwrap()
            .contains("-5 is negative"));
        assert!(int_problem(&json!(70000), Int::U16)
            .unwrap()
            .contains("out of range (0 to 65535)"));
        assert!(int_problem(&json!(u64::MAX), Int::I64)
            .unwrap()
            .contains("out of range"));
        assert!(int_problem(&json!(1e30), Int::I64)
            .unwrap()
            .contains("out of range"));
        assert!(int_problem(&json!(1.5), Int::I64)
            .unwrap()
            .contains("not an integer"));
        assert!(int_problem(&json!("1"), Int::I64)
            .unwrap()
            .contains("expected an integer"));
    }
}
