//! Resource usage of a container's cgroup, in the shape of runc's
//! `events --stats` `data` object.
//!
//! Each controller is read from the hierarchy that holds it: a v1 hierarchy
//! naming it when the cgroup has one, else the cgroup2 directory. A
//! controller the cgroup has nowhere, or whose files are gone (the container
//! stopped meanwhile), is left at zero, which runc's encoding then omits
//! where its schema says `omitempty`. A file that exists but does not parse
//! is an error naming it.
//!
//! The JSON keys and which zero values are omitted follow runc's
//! `types/events.go`; the `max` of cgroup2 limits is reported as the largest
//! u64, as runc does, and v1 limits as the kernel prints them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::{Cgroup, CgroupError, UNIFIED};

/// v1 cpuacct.stat counts USER_HZ ticks; Linux fixes USER_HZ at 100.
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

impl Cgroup {
    /// The v1 directory of the hierarchy holding `controller`, if any.
    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.paths
            .iter()
            .find(|(k, _)| k.as_str() != UNIFIED && k.split(',').any(|c| c == controller))
            .map(|(_, p)| p.as_path())
    }

    fn v2_dir(&self) -> Option<&Path> {
        self.paths.get(UNIFIED).map(PathBuf::as_path)
    }

    /// Usage and limits from the cgroup's files, as runc's `events` schema.
    pub fn stats(&self) -> Result<Value, CgroupError> {
        let mut data = Map::new();
        data.insert("cpu".into(), self.cpu_stats()?);
        data.insert("cpuset".into(), self.cpuset_stats()?);
        data.insert("memory".into(), self.memory_stats()?);
        data.insert("pids".into(), self.pids_stats()?);
        data.insert("blkio".into(), self.blkio_stats()?);
        data.insert("hugetlb".into(), self.hugetlb_stats()?);
        data.insert("intel_rdt".into(), json!({}));
        data.insert("network_interfaces".into(), Value::Null);
        Ok(Value::Object(data))
    }

    /// How many processes the kernel's OOM killer killed in the cgroup
    /// (v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let file = if let Some(dir) = self.v1_dir("memory") {
            dir.join("memory.oom_control")
        } else if let Some(dir) = self.v2_dir() {
            dir.join("memory.events")
        } else {
            return Ok(0);
        };
        Ok(keyed(&file)?
            .and_then(|m| m.get("oom_kill").copied())
            .unwrap_or(0))
    }

    fn cpu_stats(&self) -> Result<Value, CgroupError> {
        let mut u = CpuUsage::default();
        let mut throttling = BTreeMap::new();
        if let Some(dir) = self.v1_dir("cpuacct") {
            u.total = number(&dir.join("cpuacct.usage"))?.unwrap_or(0);
            if let Some(s) = text(&dir.join("cpuacct.usage_percpu"))? {
                u.percpu = numbers(&s).map_err(|e| bad(&dir.join("cpuacct.usage_percpu"), e))?;
            }
            if let Some(m) = keyed(&dir.join("cpuacct.stat"))? {
                u.user = m.get("user").copied().unwrap_or(0) * NS_PER_TICK;
                u.kernel = m.get("system").copied().unwrap_or(0) * NS_PER_TICK;
            }
            let file = dir.join("cpuacct.usage_all");
            if let Some(s) = text(&file)? {
                (u.percpu_user, u.percpu_kernel) = usage_all(&s).map_err(|e| bad(&file, e))?;
            }
        } else if let Some(dir) = self.v2_dir() {
            if let Some(m) = keyed(&dir.join("cpu.stat"))? {
                let ns = |k: &str| m.get(k).copied().unwrap_or(0).saturating_mul(1000);
                u.total = ns("usage_usec");
                u.user = ns("user_usec");
                u.kernel = ns("system_usec");
            }
        }
        let throttle_source = match self.v1_dir("cpu") {
            Some(dir) => keyed(&dir.join("cpu.stat"))?.map(|m| (m, "throttled_time", 1)),
            None => match self.v2_dir() {
                Some(dir) => keyed(&dir.join("cpu.stat"))?.map(|m| (m, "throttled_usec", 1000)),
                None => None,
            },
        };
        if let Some((m, time_key, scale)) = throttle_source {
            let get = |k: &str| m.get(k).copied().unwrap_or(0);
            throttling.insert("periods", get("nr_periods"));
            throttling.insert("throttledPeriods", get("nr_throttled"));
            throttling.insert("throttledTime", get(time_key).saturating_mul(scale));
        }
        let mut usage = Map::new();
        put(&mut usage, "total", u.total);
        put_list(&mut usage, "percpu", &u.percpu);
        put_list(&mut usage, "percpu_kernel", &u.percpu_kernel);
        put_list(&mut usage, "percpu_user", &u.percpu_user);
        usage.insert("kernel".into(), u.kernel.into());
        usage.insert("user".into(), u.user.into());
        let mut thr = Map::new();
        for (k, v) in throttling {
            put(&mut thr, k, v);
        }
        Ok(json!({ "usage": usage, "throttling": thr }))
    }

    fn cpuset_stats(&self) -> Result<Value, CgroupError> {
        let mut out = Map::new();
        let mut flags: Vec<(&str, u64)> = Vec::new();
        let mut relax = 0i64;
        let (cpus, mems) = if let Some(dir) = self.v1_dir("cpuset") {
            for (key, file) in [
                ("cpu_exclusive", "cpuset.cpu_exclusive"),
                ("mem_hardwall", "cpuset.mem_hardwall"),
                ("mem_exclusive", "cpuset.mem_exclusive"),
                ("memory_migrate", "cpuset.memory_migrate"),
                ("memory_spread_page", "cpuset.memory_spread_page"),
                ("memory_spread_slab", "cpuset.memory_spread_slab"),
                ("memory_pressure", "cpuset.memory_pressure"),
                ("sched_load_balance", "cpuset.sched_load_balance"),
            ] {
                flags.push((key, number(&dir.join(file))?.unwrap_or(0)));
            }
            let file = dir.join("cpuset.sched_relax_domain_level");
            if let Some(s) = text(&file)? {
                relax = s.trim().parse().map_err(|_| bad(&file, "not an integer"))?;
            }
            (dir.join("cpuset.cpus"), dir.join("cpuset.mems"))
        } else if let Some(dir) = self.v2_dir() {
            (
                dir.join("cpuset.cpus.effective"),
                dir.join("cpuset.mems.effective"),
            )
        } else {
            (PathBuf::new(), PathBuf::new())
        };
        let list = |file: &Path| -> Result<Vec<u16>, CgroupError> {
            match text(file)? {
                Some(s) => cpu_list(&s).map_err(|e| bad(file, e)),
                None => Ok(vec![]),
            }
        };
        let cpus = if cpus.as_os_str().is_empty() {
            vec![]
        } else {
            list(&cpus)?
        };
        let mems = if mems.as_os_str().is_empty() {
            vec![]
        } else {
            list(&mems)?
        };
        if !cpus.is_empty() {
            out.insert("cpus".into(), json!(cpus));
        }
        if !mems.is_empty() {
            out.insert("mems".into(), json!(mems));
        }
        for key in [
            "cpu_exclusive",
            "mem_hardwall",
            "mem_exclusive",
            "memory_migrate",
            "memory_spread_page",
            "memory_spread_slab",
            "memory_pressure",
            "sched_load_balance",
        ] {
            let v = flags.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| *v);
            out.insert(key.into(), v.into());
        }
        out.insert("sched_relax_domain_level".into(), relax.into());
        Ok(Value::Object(out))
    }

    fn memory_stats(&self) -> Result<Value, CgroupError> {
        let mut raw = BTreeMap::new();
        let mut cache = 0;
        let (mut usage, mut swap, mut kernel, mut tcp) = Default::default();
        if let Some(dir) = self.v1_dir("memory") {
            raw = keyed(&dir.join("memory.stat"))?.unwrap_or_default();
            cache = raw.get("cache").copied().unwrap_or(0);
            usage = v1_memory(dir, "memory.")?;
            swap = v1_memory(dir, "memory.memsw.")?;
            kernel = v1_memory(dir, "memory.kmem.")?;
            tcp = v1_memory(dir, "memory.kmem.tcp.")?;
        } else if let Some(dir) = self.v2_dir() {
            if let Some(m) = keyed(&dir.join("memory.stat"))? {
                raw = m;
                cache = raw.get("file").copied().unwrap_or(0);
                usage = MemoryEntry {
                    usage: number(&dir.join("memory.current"))?.unwrap_or(0),
                    max: number(&dir.join("memory.peak"))?.unwrap_or(0),
                    limit: number(&dir.join("memory.max"))?.unwrap_or(u64::MAX),
                    failcnt: keyed(&dir.join("memory.events"))?
                        .and_then(|m| m.get("max").copied())
                        .unwrap_or(0),
                };
                // As v1's memsw: memory and swap together.
                if let Some(current) = number(&dir.join("memory.swap.current"))? {
                    let limit = number(&dir.join("memory.swap.max"))?.unwrap_or(u64::MAX);
                    swap = MemoryEntry {
                        usage: current.saturating_add(usage.usage),
                        max: 0,
                        limit: if limit == u64::MAX {
                            limit
                        } else {
                            limit.saturating_add(usage.limit)
                        },
                        failcnt: 0,
                    };
                }
            }
        }
        let mut out = Map::new();
        put(&mut out, "cache", cache);
        out.insert("usage".into(), usage.to_json());
        out.insert("swap".into(), swap.to_json());
        out.insert("kernel".into(), kernel.to_json());
        out.insert("kernelTCP".into(), tcp.to_json());
        if !raw.is_empty() {
            out.insert("raw".into(), json!(raw));
        }
        Ok(Value::Object(out))
    }

    fn pids_stats(&self) -> Result<Value, CgroupError> {
        let dir = self.v1_dir("pids").or_else(|| self.v2_dir());
        let mut out = Map::new();
        if let Some(dir) = dir {
            put(
                &mut out,
                "current",
                number(&dir.join("pids.current"))?.unwrap_or(0),
            );
            // "max" is no limit, which runc reports as 0 (omitted).
            let limit = number(&dir.join("pids.max"))?.unwrap_or(0);
            put(&mut out, "limit", if limit == u64::MAX { 0 } else { limit });
        }
        Ok(Value::Object(out))
    }

    fn blkio_stats(&self) -> Result<Value, CgroupError> {
        let mut bytes = Vec::new();
        let mut serviced = Vec::new();
        if let Some(dir) = self.v1_dir("blkio") {
            // The I/O scheduler's counters when it keeps them (BFQ; CFQ on
            // old kernels), else the throttling layer's, as runc reads them.
            for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
                let bfile = dir.join(format!("{prefix}io_service_bytes_recursive"));
                let sfile = dir.join(format!("{prefix}io_serviced_recursive"));
                let b = match text(&bfile)? {
                    Some(s) => blkio_v1(&s).map_err(|e| bad(&bfile, e))?,
                    None => vec![],
                };
                let s = match text(&sfile)? {
                    Some(s) => blkio_v1(&s).map_err(|e| bad(&sfile, e))?,
                    None => vec![],
                };
                if !b.is_empty() || !s.is_empty() || prefix == "blkio.throttle." {
                    (bytes, serviced) = (b, s);
                    break;
                }
            }
        } else if let Some(dir) = self.v2_dir() {
            let file = dir.join("io.stat");
            if let Some(s) = text(&file)? {
                (bytes, serviced) = io_stat(&s).map_err(|e| bad(&file, e))?;
            }
        }
        let mut out = Map::new();
        if !bytes.is_empty() {
            out.insert(
                "ioServiceBytesRecursive".into(),
                bytes.iter().map(BlkioEntry::to_json).collect(),
            );
        }
        if !serviced.is_empty() {
            out.insert(
                "ioServicedRecursive".into(),
                serviced.iter().map(BlkioEntry::to_json).collect(),
            );
        }
        Ok(Value::Object(out))
    }

    fn hugetlb_stats(&self) -> Result<Value, CgroupError> {
        let mut out = Map::new();
        if let Some(dir) = self.v1_dir("hugetlb") {
            for size in hugetlb_sizes(dir, ".usage_in_bytes")? {
                let f = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
                let mut e = Map::new();
                put(&mut e, "usage", number(&f("usage_in_bytes"))?.unwrap_or(0));
                put(
                    &mut e,
                    "max",
                    number(&f("max_usage_in_bytes"))?.unwrap_or(0),
                );
                e.insert("failcnt".into(), number(&f("failcnt"))?.unwrap_or(0).into());
                out.insert(size, Value::Object(e));
            }
        } else if let Some(dir) = self.v2_dir() {
            for size in hugetlb_sizes(dir, ".current")? {
                let f = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
                let mut e = Map::new();
                put(&mut e, "usage", number(&f("current"))?.unwrap_or(0));
                let failcnt = keyed(&f("events"))?
                    .and_then(|m| m.get("max").copied())
                    .unwrap_or(0);
                e.insert("failcnt".into(), failcnt.into());
                out.insert(size, Value::Object(e));
            }
        }
        Ok(Value::Object(out))
    }
}

#[derive(Debug, Default)]
struct CpuUsage {
    total: u64,
    percpu: Vec<u64>,
    percpu_kernel: Vec<u64>,
    percpu_user: Vec<u64>,
    kernel: u64,
    user: u64,
}

/// One of runc's `MemoryEntry`s: `limit` and `failcnt` always, `usage` and
/// `max` when not zero.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct MemoryEntry {
    limit: u64,
    usage: u64,
    max: u64,
    failcnt: u64,
}

impl MemoryEntry {
    fn to_json(self) -> Value {
        let mut m = Map::new();
        m.insert("limit".into(), self.limit.into());
        put(&mut m, "usage", self.usage);
        put(&mut m, "max", self.max);
        m.insert("failcnt".into(), self.failcnt.into());
        Value::Object(m)
    }
}

/// `<prefix>usage_in_bytes`, `max_usage_in_bytes`, `failcnt`,
/// `limit_in_bytes` of a v1 memory cgroup; missing files (no swap
/// accounting, no kmem) read as zero.
fn v1_memory(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let f = |name: &str| dir.join(format!("{prefix}{name}"));
    Ok(MemoryEntry {
        usage: number(&f("usage_in_bytes"))?.unwrap_or(0),
        max: number(&f("max_usage_in_bytes"))?.unwrap_or(0),
        failcnt: number(&f("failcnt"))?.unwrap_or(0),
        limit: number(&f("limit_in_bytes"))?.unwrap_or(0),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BlkioEntry {
    major: u64,
    minor: u64,
    op: String,
    value: u64,
}

impl BlkioEntry {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "major", self.major);
        put(&mut m, "minor", self.minor);
        if !self.op.is_empty() {
            m.insert("op".into(), self.op.clone().into());
        }
        put(&mut m, "value", self.value);
        Value::Object(m)
    }
}

/// Insert `v` unless it is zero (Go's `omitempty`).
fn put(m: &mut Map<String, Value>, key: &str, v: u64) {
    if v != 0 {
        m.insert(key.into(), v.into());
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, v: &[u64]) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

/// A file's contents, or `None` when it does not exist (the controller is
/// not there, or the cgroup is gone).
fn text(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> CgroupError {
    CgroupError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    }
}

/// A one-number file; cgroup2's `max` is the largest u64.
fn number(path: &Path) -> Result<Option<u64>, CgroupError> {
    match text(path)? {
        Some(s) => value(s.trim())
            .map(Some)
            .ok_or_else(|| bad(path, format!("{:?} is not a number", s.trim()))),
        None => Ok(None),
    }
}

fn value(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// A flat keyed file (`key value` lines), or `None` when missing.
fn keyed(path: &Path) -> Result<Option<BTreeMap<String, u64>>, CgroupError> {
    match text(path)? {
        Some(s) => flat_keyed(&s).map(Some).map_err(|e| bad(path, e)),
        None => Ok(None),
    }
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events,
/// memory.oom_control).
fn flat_keyed(s: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v), None) = (f.next(), f.next(), f.next()) else {
            return Err(format!("line {line:?} is not \"key value\""));
        };
        let v = value(v).ok_or_else(|| format!("line {line:?}: {v:?} is not a number"))?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// Whitespace-separated numbers (cpuacct.usage_percpu).
fn numbers(s: &str) -> Result<Vec<u64>, String> {
    s.split_whitespace()
        .map(|n| n.parse().map_err(|_| format!("{n:?} is not a number")))
        .collect()
}

/// cpuacct.usage_all: a `cpu user system` header, then one line a CPU.
/// Returns (per-CPU user, per-CPU system) in nanoseconds.
fn usage_all(s: &str) -> Result<(Vec<u64>, Vec<u64>), String> {
    let mut user = Vec::new();
    let mut system = Vec::new();
    for line in s.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            return Err(format!("line {line:?} is not \"cpu user system\""));
        }
        let n = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        user.push(n(f[1])?);
        system.push(n(f[2])?);
    }
    Ok((user, system))
}

/// A cpuset list (`0-3,5`) as the numbers it names.
fn cpu_list(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let n = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| format!("{part:?} is not a CPU or node range"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (n(a)?, n(b)?);
                if a > b {
                    return Err(format!("{part:?} is a backwards range"));
                }
                out.extend(a..=b);
            }
            None => out.push(n(part)?),
        }
    }
    Ok(out)
}

/// v1 blkio counters: `MAJ:MIN Op value` lines and a `Total value` line
/// (skipped).
fn blkio_v1(s: &str) -> Result<Vec<BlkioEntry>, String> {
    let mut out = Vec::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Total", _] => {}
            [dev, op, v] => {
                let (major, minor) = dev_numbers(dev)?;
                let value = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value,
                });
            }
            // A device with no I/O yet may print only its numbers.
            [dev] if dev.contains(':') => {}
            _ => return Err(format!("line {line:?} is not \"MAJ:MIN Op value\"")),
        }
    }
    Ok(out)
}

fn dev_numbers(dev: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{dev:?} is not MAJ:MIN");
    let (a, b) = dev.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// cgroup2 io.stat (`MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...`) as
/// runc reports it: bytes and operations, each as Read and Write entries.
fn io_stat(s: &str) -> Result<(Vec<BlkioEntry>, Vec<BlkioEntry>), String> {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (major, minor) = dev_numbers(f.next().unwrap_or(""))?;
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("{kv:?} in line {line:?} is not key=value"));
            };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            let value = v.parse().map_err(|_| format!("{kv:?} is not a number"))?;
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    Ok((bytes, ios))
}

/// The huge page sizes a hugetlb cgroup directory has files for
/// (`hugetlb.<size><suffix>`, not the `.rsvd.` ones), e.g. `["1GB", "2MB"]`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(pairs: &[(&str, &Path)]) -> Cgroup {
        Cgroup {
            paths: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_path_buf()))
                .collect(),
        }
    }

    fn files(dir: &Path, list: &[(&str, &str)]) {
        for (name, body) in list {
            fs::write(dir.join(name), body).unwrap();
        }
    }

    #[test]
    fn parsers() {
        let m = flat_keyed("cache 16384\nrss 1732608\nhierarchical_memory_limit max\n").unwrap();
        assert_eq!(m["cache"], 16384);
        assert_eq!(m["hierarchical_memory_limit"], u64::MAX);
        assert!(flat_keyed("cache x\n").is_err());
        assert!(flat_keyed("a 1 2\n").is_err());
        assert_eq!(numbers("1 2 3 \n").unwrap(), [1, 2, 3]);
        let (u, s) = usage_all("cpu user system\n0 10 20\n1 30 40\n").unwrap();
        assert_eq!((u, s), (vec![10, 30], vec![20, 40]));
        assert_eq!(cpu_list("0-3,5\n").unwrap(), [0, 1, 2, 3, 5]);
        assert_eq!(cpu_list("\n").unwrap(), Vec::<u16>::new());
        assert!(cpu_list("3-1").is_err());
        assert!(cpu_list("a").is_err());
        let b = blkio_v1("8:0 Read 4096\n8:0 Write 8192\n8:16\nTotal 12288\n").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
        assert!(blkio_v1("sda Read 1\n").is_err());
        let (bytes, ios) =
            io_stat("259:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n").unwrap();
        assert_eq!(
            bytes
                .iter()
                .map(|e| (e.op.as_str(), e.value))
                .collect::<Vec<_>>(),
            [("Read", 100), ("Write", 200)]
        );
        assert_eq!(ios[1].major, 259);
        assert_eq!(ios[1].value, 4);
        assert_eq!(value("max"), Some(u64::MAX));
    }

    #[test]
    fn v1_layout_in_runc_shape() {
        let t = tempfile::tempdir().unwrap();
        let (cpu, acct, mem, pids, blk, huge, cs) = (
            t.path().join("cpu"),
            t.path().join("cpuacct"),
            t.path().join("memory"),
            t.path().join("pids"),
            t.path().join("blkio"),
            t.path().join("hugetlb"),
            t.path().join("cpuset"),
        );
        for d in [&cpu, &acct, &mem, &pids, &blk, &huge, &cs] {
            fs::create_dir(d).unwrap();
        }
        files(
            &acct,
            &[
                ("cpuacct.usage", "5000\n"),
                ("cpuacct.usage_percpu", "3000 2000 \n"),
                ("cpuacct.stat", "user 3\nsystem 1\n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 2500 500\n1 1500 500\n",
                ),
            ],
        );
        files(
            &cpu,
            &[(
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 777\nnr_bursts 0\nburst_time 0\n",
            )],
        );
        files(
            &mem,
            &[
                ("memory.stat", "cache 4096\nrss 8192\n"),
                ("memory.usage_in_bytes", "12288\n"),
                ("memory.max_usage_in_bytes", "20480\n"),
                ("memory.failcnt", "0\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.usage_in_bytes", "12288\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        files(&pids, &[("pids.current", "3\n"), ("pids.max", "max\n")]);
        files(
            &blk,
            &[
                ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 512\nTotal 512\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\nTotal 1\n",
                ),
            ],
        );
        files(
            &huge,
            &[
                ("hugetlb.2MB.usage_in_bytes", "0\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "2097152\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
            ],
        );
        files(
            &cs,
            &[
                ("cpuset.cpus", "0-1\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.sched_load_balance", "1\n"),
                ("cpuset.sched_relax_domain_level", "-1\n"),
            ],
        );
        let c = cg(&[
            ("cpu", &cpu),
            ("cpuacct", &acct),
            ("memory", &mem),
            ("pids", &pids),
            ("blkio", &blk),
            ("hugetlb", &huge),
            ("cpuset", &cs),
            ("unified", &t.path().join("no-such-dir")),
        ]);
        let s = c.stats().unwrap();
        assert_eq!(
            s["cpu"],
            json!({
                "usage": {"total": 5000, "percpu": [3000, 2000],
                          "percpu_kernel": [500, 500], "percpu_user": [2500, 1500],
                          "kernel": 10_000_000u64, "user": 30_000_000u64},
                "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 777}
            })
        );
        assert_eq!(s["memory"]["cache"], 4096);
        assert_eq!(
            s["memory"]["usage"],
            json!({"limit": 9223372036854771712u64, "usage": 12288, "max": 20480, "failcnt": 0})
        );
        assert_eq!(s["memory"]["swap"]["usage"], 12288);
        assert_eq!(s["memory"]["kernel"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(s["memory"]["raw"]["rss"], 8192);
        assert_eq!(s["pids"], json!({"current": 3}));
        assert_eq!(
            s["blkio"],
            json!({
                "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 512}],
                "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1}]
            })
        );
        assert_eq!(s["hugetlb"], json!({"2MB": {"max": 2097152, "failcnt": 1}}));
        assert_eq!(s["cpuset"]["cpus"], json!([0, 1]));
        assert_eq!(s["cpuset"]["mems"], json!([0]));
        assert_eq!(s["cpuset"]["sched_load_balance"], 1);
        assert_eq!(s["cpuset"]["sched_relax_domain_level"], -1);
        assert_eq!(s["cpuset"]["cpu_exclusive"], 0);
        assert_eq!(s["intel_rdt"], json!({}));
        assert_eq!(s["network_interfaces"], Value::Null);
        assert_eq!(c.oom_kills().unwrap(), 2);
    }

    #[test]
    fn v2_layout_in_runc_shape() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        files(
            d,
            &[
                (
                    "cpu.stat",
                    "usage_usec 150\nuser_usec 100\nsystem_usec 50\nnr_periods 4\nnr_throttled 1\nthrottled_usec 9\n",
                ),
                ("cpuset.cpus.effective", "0-1\n"),
                ("cpuset.mems.effective", "0\n"),
                ("memory.stat", "anon 8192\nfile 4096\n"),
                ("memory.current", "12288\n"),
                ("memory.peak", "16384\n"),
                ("memory.max", "max\n"),
                ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
                ("memory.swap.current", "4096\n"),
                ("memory.swap.max", "max\n"),
                ("pids.current", "2\n"),
                ("pids.max", "100\n"),
                ("io.stat", "8:0 rbytes=1024 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n"),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.events", "max 3\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
            ],
        );
        let c = cg(&[("unified", d)]);
        let s = c.stats().unwrap();
        assert_eq!(
            s["cpu"],
            json!({
                "usage": {"total": 150_000, "kernel": 50_000, "user": 100_000},
                "throttling": {"periods": 4, "throttledPeriods": 1, "throttledTime": 9000}
            })
        );
        assert_eq!(
            s["memory"]["usage"],
            json!({"limit": u64::MAX, "usage": 12288, "max": 16384, "failcnt": 5})
        );
        assert_eq!(
            s["memory"]["swap"],
            json!({"limit": u64::MAX, "usage": 16384, "failcnt": 0})
        );
        assert_eq!(s["memory"]["cache"], 4096);
        assert_eq!(s["pids"], json!({"current": 2, "limit": 100}));
        assert_eq!(
            s["blkio"]["ioServiceBytesRecursive"],
            json!([{"major": 8, "op": "Read", "value": 1024}, {"major": 8, "op": "Write"}])
        );
        assert_eq!(
            s["hugetlb"],
            json!({"2MB": {"usage": 2097152, "failcnt": 3}})
        );
        assert_eq!(s["cpuset"]["cpus"], json!([0, 1]));
        assert_eq!(c.oom_kills().unwrap(), 1);
    }

    #[test]
    fn missing_everything_is_zero_and_bad_files_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let gone = t.path().join("gone");
        let c = cg(&[("memory", &gone), ("cpu,cpuacct", &gone)]);
        let s = c.stats().unwrap();
        assert_eq!(s["pids"], json!({}));
        assert_eq!(s["hugetlb"], json!({}));
        assert_eq!(s["cpu"]["usage"], json!({"kernel": 0, "user": 0}));
        assert_eq!(c.oom_kills().unwrap(), 0);
        assert_eq!(Cgroup::default().oom_kills().unwrap(), 0);

        let d = t.path().join("m");
        fs::create_dir(&d).unwrap();
        files(&d, &[("memory.usage_in_bytes", "lots\n")]);
        let err = cg(&[("memory", &d)]).stats().unwrap_err().to_string();
        assert!(
            err.contains("memory.usage_in_bytes") && err.contains("\"lots\" is not a number"),
            "{err}"
        );
    }

    /// This process's own cgroups on this host: every controller berth
    /// reads is there and parses.
    #[test]
    fn reads_this_hosts_own_cgroups() {
        let Ok(h) = crate::Hierarchies::detect() else {
            eprintln!("skipped: no cgroup hierarchy mounted");
            return;
        };
        let c = Cgroup {
            paths: h
                .list
                .iter()
                .map(|h| {
                    let rel = h.own.strip_prefix("/").unwrap_or(&h.own);
                    (h.key.clone(), h.mountpoint.join(rel))
                })
                .collect(),
        };
        let s = c.stats().unwrap();
        assert!(s["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(
            s["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
            "{s}"
        );
        c.oom_kills().unwrap();
    }
}
