//! `linux.resources` written to a container's cgroup on v1, v2 and hybrid
//! hosts, for `create` and for `update`.
//!
//! A controller is used from cgroup v1 when the host mounts it there, else
//! from cgroup2 when the kernel offers it there (it is then enabled in
//! `cgroup.subtree_control` from the hierarchy's root down to the
//! container's parent). A setting whose controller or file the host lacks
//! is an error naming it, unless its value is the default. docs/cgroups.md
//! has the full table.
//!
//! Everything is resolved first (which directory, which file, which value,
//! whether the host has it), then written, so a setting the host can't
//! honour fails before any file changes. Files the kernel checks against
//! each other (v1 memory and memory+swap, cpu period, quota and burst,
//! realtime period and runtime) are written as a group, in whichever order
//! the kernel accepts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
};

use crate::{Cgroup, CgroupError, UNIFIED};

/// When resources are applied. `create` takes two calls: [`Mode::Create`]
/// before the container's first process joins the cgroup, and
/// [`Mode::Started`] once the init is in it and berth forks nothing more
/// there (the pids limit would count berth's own setup processes: with a
/// limit of 0 or 1, as runc allows, the init could not even be forked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything the config sets except `pids.limit`.
    Create,
    /// Only `pids.limit`.
    Started,
    /// `update`: everything the request sets (only that changes).
    Update,
}

const BASE: &str = "linux.resources";

/// One file write, and the setting it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    setting: String,
    file: PathBuf,
    value: String,
}

/// Writes that happen together; the kernel checks the files of a group
/// against each other, so their order may have to change.
type Group = Vec<Write>;

/// Where a controller lives for this container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    V1(PathBuf),
    V2(PathBuf),
}

impl Place {
    fn dir(&self) -> &Path {
        match self {
            Place::V1(d) | Place::V2(d) => d,
        }
    }

    fn is_v2(&self) -> bool {
        matches!(self, Place::V2(_))
    }
}

fn setting(name: &str) -> String {
    format!("{BASE}.{name}")
}

fn unsupported(name: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Unsupported {
        setting: setting(name),
        reason: reason.into(),
    }
}

/// A plan being built: the cgroup, the mode, and the groups of writes.
struct Plan<'a> {
    cg: &'a Cgroup,
    mode: Mode,
    groups: Vec<Group>,
}

impl Plan<'_> {
    fn write(&mut self, name: &str, dir: &Path, file: &str, value: impl Into<String>) {
        self.groups.push(vec![Write {
            setting: setting(name),
            file: dir.join(file),
            value: value.into(),
        }]);
    }

    fn group(&mut self, writes: Vec<(&str, &Path, String, String)>) {
        let group: Group = writes
            .into_iter()
            .map(|(name, dir, file, value)| Write {
                setting: setting(name),
                file: dir.join(file),
                value,
            })
            .collect();
        if !group.is_empty() {
            self.groups.push(group);
        }
    }

    /// The controller's directory, for the setting `name` (used in the
    /// error when the host has the controller nowhere). `v2` is the
    /// controller's cgroup2 name (`io` for `blkio`), `None` if cgroup2 has
    /// no such controller.
    fn place(&self, name: &str, v1: &str, v2: Option<&str>) -> Result<Place, CgroupError> {
        if let Some(dir) = self.cg.v1_controller_dir(v1) {
            return Ok(Place::V1(dir.to_path_buf()));
        }
        let Some(v2) = v2 else {
            return Err(unsupported(
                name,
                format!("the {v1} controller is not mounted on this host (it exists only in cgroup v1; cgroup2 has no equivalent)"),
            ));
        };
        let Some(unified) = self.cg.paths.get(UNIFIED) else {
            return Err(unsupported(
                name,
                format!("this host has no {v1} controller (not mounted as cgroup v1, and there is no cgroup2 hierarchy)"),
            ));
        };
        if enable_v2(unified, v2)? {
            Ok(Place::V2(unified.clone()))
        } else {
            Err(unsupported(
                name,
                format!(
                    "this host has no {v2} controller (not mounted as cgroup v1, not offered in cgroup2's cgroup.controllers above {})",
                    unified.display()
                ),
            ))
        }
    }

    /// A file the setting needs in `dir`, or why the host lacks it.
    fn need(&self, name: &str, dir: &Path, file: &str, why: &str) -> Result<(), CgroupError> {
        if dir.join(file).exists() {
            return Ok(());
        }
        Err(unsupported(
            name,
            format!("this host's cgroup has no {file} ({why})"),
        ))
    }
}

impl Cgroup {
    /// Write `res` (devices excepted: see [`Cgroup::apply_devices`]) to the
    /// cgroup's files. A setting this host cannot enforce is an error naming
    /// it (`linux.resources.memory.kernelTCP: ...`), unless its value is the
    /// default. Nothing is written unless every setting can be placed.
    pub fn apply_resources(&self, res: &LinuxResources, mode: Mode) -> Result<(), CgroupError> {
        let mut plan = Plan {
            cg: self,
            mode,
            groups: Vec::new(),
        };
        if mode == Mode::Started {
            if let Some(p) = res.pids() {
                pids(&mut plan, p.limit())?;
            }
            for group in &plan.groups {
                write_group(group)?;
            }
            return Ok(());
        }
        if let Some(c) = res.cpu() {
            cpuset(&mut plan, c)?;
        }
        if let Some(m) = res.memory() {
            memory(&mut plan, m)?;
        }
        if let Some(c) = res.cpu() {
            cpu(&mut plan, c)?;
        }
        if let Some(p) = res.pids() {
            if mode == Mode::Create {
                // Checked now, so a host without the controller fails
                // before the container exists; written by Mode::Started.
                if p.limit() != -1 {
                    plan.place("pids.limit", "pids", Some("pids"))?;
                }
            } else {
                pids(&mut plan, p.limit())?;
            }
        }
        if let Some(b) = res.block_io() {
            block_io(&mut plan, b)?;
        }
        if let Some(h) = res.hugepage_limits() {
            hugepages(&mut plan, h)?;
        }
        if let Some(n) = res.network() {
            network(&mut plan, n)?;
        }
        if let Some(r) = res.rdma() {
            rdma(&mut plan, r)?;
        }
        if let Some(u) = res.unified() {
            unified(&mut plan, u)?;
        }
        for group in &plan.groups {
            write_group(group)?;
        }
        Ok(())
    }

    /// The directory of the v1 hierarchy holding `controller`.
    fn v1_controller_dir(&self, controller: &str) -> Option<&Path> {
        self.paths
            .iter()
            .find(|(k, _)| k.as_str() != UNIFIED && k.split(',').any(|c| c == controller))
            .map(|(_, p)| p.as_path())
    }
}

fn pids(plan: &mut Plan<'_>, limit: i64) -> Result<(), CgroupError> {
    let value = if limit < 0 {
        "max".to_string()
    } else {
        limit.to_string()
    };
    match plan.place("pids.limit", "pids", Some("pids")) {
        Ok(place) => plan.write("pids.limit", place.dir(), "pids.max", value),
        Err(_) if limit == -1 => {} // unlimited: nothing to enforce
        Err(e) => return Err(e),
    }
    Ok(())
}

fn cpuset(plan: &mut Plan<'_>, c: &LinuxCpu) -> Result<(), CgroupError> {
    for (name, file, value) in [
        ("cpu.mems", "cpuset.mems", c.mems()),
        ("cpu.cpus", "cpuset.cpus", c.cpus()),
    ] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let place = plan.place(name, "cpuset", Some("cpuset"))?;
        plan.write(name, place.dir(), file, value);
    }
    Ok(())
}

/// A limit in bytes as cgroup v1 writes it (-1 is unlimited).
fn v1_bytes(v: i64) -> String {
    v.to_string()
}

/// A limit in bytes as cgroup v2 writes it ("max" is unlimited).
fn v2_bytes(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// A v1 or v2 limit file's content as bytes (`None`: unlimited).
fn read_limit(file: &Path) -> Result<Option<u64>, CgroupError> {
    let text = fs::read_to_string(file).map_err(|source| CgroupError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    // v1 reports "unlimited" as the largest page-aligned i64.
    Ok(text
        .parse::<u64>()
        .ok()
        .filter(|v| *v < (i64::MAX as u64) & !0xfff))
}

/// cgroup v2 `memory.swap.max` for the runtime spec's swap (memory plus
/// swap) and memory limits, both in bytes (`-1` unlimited): the swap
/// allowed beyond the memory limit.
pub fn v2_swap_max(swap: i64, limit: Option<u64>) -> Result<String, String> {
    if swap < 0 {
        return Ok("max".into());
    }
    let Some(limit) = limit else {
        return Err("on cgroup v2 it needs a memory limit: memory.swap.max holds the swap allowed beyond memory.max, and memory is unlimited".into());
    };
    let swap = swap as u64;
    if swap < limit {
        return Err(format!(
            "{swap} is less than the memory limit {limit}: swap limits memory plus swap"
        ));
    }
    Ok((swap - limit).to_string())
}

fn memory(plan: &mut Plan<'_>, m: &LinuxMemory) -> Result<(), CgroupError> {
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    let (limit, reservation, swap) = (set(m.limit()), set(m.reservation()), set(m.swap()));
    let kernel_tcp = set(m.kernel_tcp());
    #[allow(deprecated)] // read to refuse it
    let kernel = m.kernel().filter(|k| !matches!(k, 0 | -1));
    if let Some(k) = kernel {
        return Err(unsupported(
            "memory.kernel",
            format!("{k}: kernel memory limits are not enforced by Linux any more (deprecated by the runtime spec); leave it unset"),
        ));
    }
    let oom_off = m.disable_oom_killer();
    let hierarchy = m.use_hierarchy();
    let wanted: Option<&str> = [
        (limit.is_some_and(|v| v != -1), "memory.limit"),
        (reservation.is_some_and(|v| v != -1), "memory.reservation"),
        (swap.is_some_and(|v| v != -1), "memory.swap"),
        (kernel_tcp.is_some_and(|v| v != -1), "memory.kernelTCP"),
        (m.swappiness().is_some(), "memory.swappiness"),
        (oom_off == Some(true), "memory.disableOOMKiller"),
        (hierarchy == Some(false), "memory.useHierarchy"),
    ]
    .iter()
    .find(|(on, _)| *on)
    .map(|(_, name)| *name);
    let any = limit.is_some() || reservation.is_some() || swap.is_some() || kernel_tcp.is_some();
    let place = match (wanted, any) {
        (Some(name), _) => plan.place(name, "memory", Some("memory"))?,
        // Only defaults: use the controller if there is one.
        (None, true) => match plan.place("memory.limit", "memory", Some("memory")) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        },
        (None, false) => return Ok(()),
    };
    let dir = place.dir().to_path_buf();
    if plan.mode == Mode::Update && m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|l| *l > 0) {
            let usage = if place.is_v2() {
                "memory.current"
            } else {
                "memory.usage_in_bytes"
            };
            let file = dir.join(usage);
            let used = fs::read_to_string(&file)
                .map_err(|source| CgroupError::Read {
                    path: file.clone(),
                    source,
                })?
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
            if used > l as u64 {
                return Err(unsupported(
                    "memory.limit",
                    format!("{l} is below the container's current memory use of {used} bytes ({}); checkBeforeUpdate refuses it", file.display()),
                ));
            }
        }
    }
    if place.is_v2() {
        memory_v2(plan, m, &dir, limit, reservation, swap, kernel_tcp)
    } else {
        memory_v1(plan, m, &dir, limit, reservation, swap, kernel_tcp)
    }
}

fn memory_v1(
    plan: &mut Plan<'_>,
    m: &LinuxMemory,
    dir: &Path,
    limit: Option<i64>,
    reservation: Option<i64>,
    swap: Option<i64>,
    kernel_tcp: Option<i64>,
) -> Result<(), CgroupError> {
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let has_memsw = dir.join(MEMSW).exists();
    // Unlimited memory means unlimited memory+swap too (as runc does),
    // unless swap is set.
    let swap = match (swap, limit) {
        (None, Some(-1)) if has_memsw => Some(-1),
        (s, _) => s,
    };
    let mut group = Vec::new();
    if let Some(l) = limit {
        group.push((
            "memory.limit",
            dir,
            "memory.limit_in_bytes".into(),
            v1_bytes(l),
        ));
    }
    if let Some(s) = swap {
        if !has_memsw {
            if s != -1 {
                plan.need(
                    "memory.swap",
                    dir,
                    MEMSW,
                    "swap accounting is off; boot the kernel with swapaccount=1",
                )?;
            }
        } else {
            if limit.is_none() && s > 0 {
                let current = read_limit(&dir.join("memory.limit_in_bytes"))?;
                match current {
                    None => {
                        return Err(unsupported(
                            "memory.swap",
                            format!("{s} limits memory plus swap, but the memory limit is unlimited: set memory.limit too"),
                        ))
                    }
                    Some(c) if c > s as u64 => {
                        return Err(unsupported(
                            "memory.swap",
                            format!("{s} is less than the current memory limit {c}: swap limits memory plus swap; set memory.limit too"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            group.push(("memory.swap", dir, MEMSW.into(), v1_bytes(s)));
        }
    }
    plan.group(group);
    if let Some(r) = reservation {
        plan.write(
            "memory.reservation",
            dir,
            "memory.soft_limit_in_bytes",
            v1_bytes(r),
        );
    }
    if let Some(k) = kernel_tcp {
        const TCP: &str = "memory.kmem.tcp.limit_in_bytes";
        if k != -1 {
            plan.need(
                "memory.kernelTCP",
                dir,
                TCP,
                "the kernel has no TCP memory accounting for cgroup v1",
            )?;
        }
        if dir.join(TCP).exists() {
            plan.write("memory.kernelTCP", dir, TCP, v1_bytes(k));
        }
    }
    if let Some(s) = m.swappiness() {
        plan.write("memory.swappiness", dir, "memory.swappiness", s.to_string());
    }
    match m.disable_oom_killer() {
        Some(true) => plan.write("memory.disableOOMKiller", dir, "memory.oom_control", "1"),
        Some(false) if plan.mode == Mode::Update => {
            plan.write("memory.disableOOMKiller", dir, "memory.oom_control", "0")
        }
        _ => {}
    }
    if m.use_hierarchy() == Some(false) {
        let file = dir.join("memory.use_hierarchy");
        let on = fs::read_to_string(&file).is_ok_and(|v| v.trim() == "1");
        if on {
            return Err(unsupported(
                "memory.useHierarchy",
                "false is not possible: this kernel always accounts memory hierarchically (memory.use_hierarchy is fixed at 1)",
            ));
        }
        plan.write("memory.useHierarchy", dir, "memory.use_hierarchy", "0");
    }
    Ok(())
}

fn memory_v2(
    plan: &mut Plan<'_>,
    m: &LinuxMemory,
    dir: &Path,
    limit: Option<i64>,
    reservation: Option<i64>,
    swap: Option<i64>,
    kernel_tcp: Option<i64>,
) -> Result<(), CgroupError> {
    if let Some(k) = kernel_tcp.filter(|k| *k != -1) {
        return Err(unsupported(
            "memory.kernelTCP",
            format!("{k}: cgroup v2 has no separate TCP memory limit (TCP buffers count toward memory.max)"),
        ));
    }
    if m.swappiness().is_some() {
        return Err(unsupported(
            "memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness (the memory controller is on cgroup2 here); leave it unset",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "memory.disableOOMKiller",
            "cgroup v2 cannot turn the OOM killer off for a cgroup (the memory controller is on cgroup2 here)",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "memory.useHierarchy",
            "false is not possible: cgroup v2 always accounts memory hierarchically",
        ));
    }
    const SWAP: &str = "memory.swap.max";
    let has_swap = dir.join(SWAP).exists();
    let swap_value = match (swap, limit) {
        (Some(s), _) if s != -1 && !has_swap => {
            plan.need(
                "memory.swap",
                dir,
                SWAP,
                "the kernel has no swap accounting for cgroup v2 (CONFIG_SWAP off or swapaccount=0)",
            )?;
            None
        }
        (Some(s), l) if has_swap => {
            let limit = match l {
                Some(l) if l > 0 => Some(l as u64),
                Some(_) => None,
                None => read_limit(&dir.join("memory.max"))?,
            };
            Some(v2_swap_max(s, limit).map_err(|r| unsupported("memory.swap", r))?)
        }
        // Unlimited memory means unlimited swap too (as runc does).
        (None, Some(-1)) if has_swap => Some("max".to_string()),
        _ => None,
    };
    if let Some(l) = limit {
        plan.write("memory.limit", dir, "memory.max", v2_bytes(l));
    }
    if let Some(v) = swap_value {
        plan.write("memory.swap", dir, SWAP, v);
    }
    if let Some(r) = reservation {
        plan.write("memory.reservation", dir, "memory.low", v2_bytes(r));
    }
    Ok(())
}

/// cgroup v1 `cpu.shares` as cgroup v2 `cpu.weight`: the mapping runc
/// and crun use since 2025, which keeps the defaults equal (1024 → 100)
/// and maps 2..=262144 onto 1..=10000 along a curve in log2(shares).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let l = (shares.clamp(2, 262_144) as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    // Rounding up, but not past an exact power of ten that float error
    // puts a hair above it.
    let w = (10f64.powf(exponent) - 1e-9).ceil() as u64;
    w.clamp(1, 10_000)
}

/// cgroup v2 `cpu.max` for a quota and period (`None`: unchanged): quota
/// -1 is "max"; a period alone keeps the current quota.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>, current: &str) -> String {
    let quota = match quota {
        Some(q) if q < 0 => "max".to_string(),
        Some(q) => q.to_string(),
        None => current
            .split_whitespace()
            .next()
            .unwrap_or("max")
            .to_string(),
    };
    match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    }
}

fn cpu(plan: &mut Plan<'_>, c: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = c.shares().filter(|s| *s != 0);
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0);
    let burst = c.burst();
    let rt_runtime = c.realtime_runtime().filter(|r| *r != 0);
    let rt_period = c.realtime_period().filter(|p| *p != 0);
    let idle = c.idle();
    let wanted = [
        (shares.is_some(), "cpu.shares"),
        (quota.is_some_and(|q| q != -1), "cpu.quota"),
        (period.is_some(), "cpu.period"),
        (burst.is_some_and(|b| b != 0), "cpu.burst"),
        (rt_runtime.is_some(), "cpu.realtimeRuntime"),
        (rt_period.is_some(), "cpu.realtimePeriod"),
        (idle.is_some_and(|i| i != 0), "cpu.idle"),
    ]
    .iter()
    .find(|(on, _)| *on)
    .map(|(_, name)| *name);
    let any = shares.is_some()
        || quota.is_some()
        || period.is_some()
        || burst.is_some()
        || rt_runtime.is_some()
        || rt_period.is_some()
        || idle.is_some();
    let place = match (wanted, any) {
        (Some(first), _) => plan.place(first, "cpu", Some("cpu"))?,
        // Only defaults (quota -1 lifting a limit on update, say): written
        // where there is a cpu controller, nothing to enforce where not.
        (None, true) => match plan.place("cpu.quota", "cpu", Some("cpu")) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        },
        (None, false) => return Ok(()),
    };
    let dir = place.dir().to_path_buf();
    let dir = dir.as_path();
    if place.is_v2() {
        if let Some(s) = shares {
            plan.write(
                "cpu.shares",
                dir,
                "cpu.weight",
                shares_to_weight(s).to_string(),
            );
        }
        let mut group = Vec::new();
        if quota.is_some() || period.is_some() {
            let current = if quota.is_none() {
                fs::read_to_string(dir.join("cpu.max")).unwrap_or_default()
            } else {
                String::new()
            };
            let name = if quota.is_some() {
                "cpu.quota"
            } else {
                "cpu.period"
            };
            group.push((
                name,
                dir,
                "cpu.max".into(),
                cpu_max(quota, period, &current),
            ));
        }
        if let Some(b) = burst {
            cpu_burst(plan, dir, "cpu.max.burst", b, &mut group)?;
        }
        plan.group(group);
        if rt_runtime.is_some() || rt_period.is_some() {
            let name = if rt_runtime.is_some() {
                "cpu.realtimeRuntime"
            } else {
                "cpu.realtimePeriod"
            };
            return Err(unsupported(
                name,
                "cgroup v2 has no realtime scheduling budget (the cpu controller is on cgroup2 here)",
            ));
        }
        if let Some(i) = idle {
            cpu_idle(plan, dir, i)?;
        }
        return Ok(());
    }
    if let Some(s) = shares {
        plan.write("cpu.shares", dir, "cpu.shares", s.to_string());
    }
    let mut group = Vec::new();
    if let Some(p) = period {
        group.push(("cpu.period", dir, "cpu.cfs_period_us".into(), p.to_string()));
    }
    if let Some(q) = quota {
        group.push(("cpu.quota", dir, "cpu.cfs_quota_us".into(), q.to_string()));
    }
    if let Some(b) = burst {
        cpu_burst(plan, dir, "cpu.cfs_burst_us", b, &mut group)?;
    }
    plan.group(group);
    let mut group = Vec::new();
    let rt = "the kernel was built without CONFIG_RT_GROUP_SCHED";
    if let Some(p) = rt_period {
        plan.need("cpu.realtimePeriod", dir, "cpu.rt_period_us", rt)?;
        group.push((
            "cpu.realtimePeriod",
            dir,
            "cpu.rt_period_us".into(),
            p.to_string(),
        ));
    }
    if let Some(r) = rt_runtime {
        plan.need("cpu.realtimeRuntime", dir, "cpu.rt_runtime_us", rt)?;
        group.push((
            "cpu.realtimeRuntime",
            dir,
            "cpu.rt_runtime_us".into(),
            r.to_string(),
        ));
    }
    plan.group(group);
    if let Some(i) = idle {
        cpu_idle(plan, dir, i)?;
    }
    Ok(())
}

/// `cpu.burst` into `file` (v1 cpu.cfs_burst_us, v2 cpu.max.burst), in the
/// period/quota group; a kernel without burst is an error unless it is 0.
fn cpu_burst<'a>(
    plan: &mut Plan<'_>,
    dir: &'a Path,
    file: &str,
    burst: u64,
    group: &mut Vec<(&'static str, &'a Path, String, String)>,
) -> Result<(), CgroupError> {
    if burst != 0 {
        plan.need(
            "cpu.burst",
            dir,
            file,
            "the kernel has no CFS burst (Linux 5.14 or later)",
        )?;
    }
    if dir.join(file).exists() {
        group.push(("cpu.burst", dir, file.into(), burst.to_string()));
    }
    Ok(())
}

fn cpu_idle(plan: &mut Plan<'_>, dir: &Path, idle: i64) -> Result<(), CgroupError> {
    if !dir.join("cpu.idle").exists() {
        if idle == 0 {
            return Ok(());
        }
        plan.need(
            "cpu.idle",
            dir,
            "cpu.idle",
            "the kernel has no SCHED_IDLE cgroups (Linux 5.15 or later)",
        )?;
    }
    plan.write("cpu.idle", dir, "cpu.idle", idle.to_string());
    Ok(())
}

/// A blkio weight (10..=1000) as cgroup v2 `io.weight` (1..=10000), the
/// linear mapping runc and crun use.
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn block_io(plan: &mut Plan<'_>, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().filter(|w| *w != 0);
    let leaf = b.leaf_weight().filter(|w| *w != 0);
    let devices = b.weight_device().as_deref().unwrap_or_default();
    let throttles = [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "read_bps_device",
            "rbps",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "write_bps_device",
            "wbps",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "read_iops_device",
            "riops",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "write_iops_device",
            "wiops",
        ),
    ];
    let first = if weight.is_some() {
        Some("blockIO.weight".to_string())
    } else if leaf.is_some() {
        Some("blockIO.leafWeight".to_string())
    } else if !devices.is_empty() {
        Some("blockIO.weightDevice".to_string())
    } else {
        throttles
            .iter()
            .find(|(_, l, _, _)| l.as_ref().is_some_and(|l| !l.is_empty()))
            .map(|(n, _, _, _)| format!("blockIO.{n}"))
    };
    let Some(first) = first else { return Ok(()) };
    let place = plan.place(&first, "blkio", Some("io"))?;
    let dir = place.dir().to_path_buf();
    let dir = dir.as_path();
    if let Place::V2(_) = place {
        if let Some(l) = leaf {
            return Err(unsupported(
                "blockIO.leafWeight",
                format!(
                    "{l}: cgroup v2 has no leaf weights (the io controller is on cgroup2 here)"
                ),
            ));
        }
        let bfq = dir.join("io.bfq.weight").exists();
        if let Some(w) = weight {
            if bfq {
                plan.write("blockIO.weight", dir, "io.bfq.weight", w.to_string());
            } else {
                plan.need(
                    "blockIO.weight",
                    dir,
                    "io.weight",
                    "the kernel has neither BFQ nor the io.cost controller for proportional I/O weights",
                )?;
                plan.write(
                    "blockIO.weight",
                    dir,
                    "io.weight",
                    blkio_to_io_weight(w).to_string(),
                );
            }
        }
        for (i, d) in devices.iter().enumerate() {
            let name = format!("blockIO.weightDevice[{i}]");
            if let Some(l) = d.leaf_weight().filter(|l| *l != 0) {
                return Err(unsupported(
                    &format!("{name}.leafWeight"),
                    format!("{l}: cgroup v2 has no leaf weights"),
                ));
            }
            let Some(w) = d.weight().filter(|w| *w != 0) else {
                continue;
            };
            let (file, w) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                plan.need(
                    &format!("{name}.weight"),
                    dir,
                    "io.weight",
                    "the kernel has neither BFQ nor the io.cost controller for proportional I/O weights",
                )?;
                ("io.weight", blkio_to_io_weight(w))
            };
            plan.write(
                &format!("{name}.weight"),
                dir,
                file,
                format!("{}:{} {w}", d.major(), d.minor()),
            );
        }
        for (name, list, _, key) in throttles {
            for (i, d) in list.iter().flatten().enumerate() {
                let rate = if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                };
                plan.write(
                    &format!("blockIO.{name}[{i}]"),
                    dir,
                    "io.max",
                    format!("{}:{} {key}={rate}", d.major(), d.minor()),
                );
            }
        }
        return Ok(());
    }
    // cgroup v1: BFQ's files where the kernel has BFQ, else CFQ's.
    let bfq = dir.join("blkio.bfq.weight").exists();
    let no_weights = "the kernel has neither the BFQ nor the CFQ I/O scheduler's cgroup weights";
    if let Some(w) = weight {
        let file = if bfq {
            "blkio.bfq.weight"
        } else {
            "blkio.weight"
        };
        plan.need("blockIO.weight", dir, file, no_weights)?;
        plan.write("blockIO.weight", dir, file, w.to_string());
    }
    if let Some(l) = leaf {
        plan.need(
            "blockIO.leafWeight",
            dir,
            "blkio.leaf_weight",
            "leaf weights belonged to the CFQ scheduler, which Linux 5.0 removed",
        )?;
        plan.write(
            "blockIO.leafWeight",
            dir,
            "blkio.leaf_weight",
            l.to_string(),
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let name = format!("blockIO.weightDevice[{i}]");
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            let file = if bfq {
                "blkio.bfq.weight_device"
            } else {
                "blkio.weight_device"
            };
            plan.need(&format!("{name}.weight"), dir, file, no_weights)?;
            plan.write(
                &format!("{name}.weight"),
                dir,
                file,
                format!("{}:{} {w}", d.major(), d.minor()),
            );
        }
        if let Some(l) = d.leaf_weight().filter(|l| *l != 0) {
            plan.need(
                &format!("{name}.leafWeight"),
                dir,
                "blkio.leaf_weight_device",
                "leaf weights belonged to the CFQ scheduler, which Linux 5.0 removed",
            )?;
            plan.write(
                &format!("{name}.leafWeight"),
                dir,
                "blkio.leaf_weight_device",
                format!("{}:{} {l}", d.major(), d.minor()),
            );
        }
    }
    for (name, list, file, _) in throttles {
        let file = format!("blkio.throttle.{file}");
        for (i, d) in list.iter().flatten().enumerate() {
            let setting = format!("blockIO.{name}[{i}]");
            plan.need(
                &setting,
                dir,
                &file,
                "the kernel was built without CONFIG_BLK_DEV_THROTTLING",
            )?;
            plan.write(
                &setting,
                dir,
                &file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            );
        }
    }
    Ok(())
}

fn hugepages(plan: &mut Plan<'_>, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for (i, h) in limits.iter().enumerate() {
        let name = format!("hugepageLimits[{i}]");
        let place = match plan.place(&name, "hugetlb", Some("hugetlb")) {
            Ok(p) => p,
            Err(_) if h.limit() == -1 => continue, // unlimited: nothing to enforce
            Err(e) => return Err(e),
        };
        let dir = place.dir().to_path_buf();
        let size = h.page_size();
        let (file, rsvd, value) = if place.is_v2() {
            (
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
                v2_bytes(h.limit()),
            )
        } else {
            (
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                v1_bytes(h.limit()),
            )
        };
        if !dir.join(&file).exists() {
            let sizes = hugepage_sizes(&dir);
            return Err(unsupported(
                &format!("{name}.pageSize"),
                format!(
                    "this host has no {size} huge pages (no {file} in {}; sizes here: {})",
                    dir.display(),
                    if sizes.is_empty() {
                        "none".to_string()
                    } else {
                        sizes.join(", ")
                    }
                ),
            ));
        }
        // Both the fault limit and, where the kernel has it, the
        // reservation limit (runtime-spec: reservations where supported).
        let mut group = vec![(name.as_str(), dir.as_path(), file, value.clone())];
        if dir.join(&rsvd).exists() {
            group.push((name.as_str(), dir.as_path(), rsvd, value));
        }
        plan.group(group);
    }
    Ok(())
}

/// The hugetlb page sizes a hugetlb cgroup directory has files for.
fn hugepage_sizes(dir: &Path) -> Vec<String> {
    let mut sizes: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("hugetlb.")?;
            let (size, file) = rest.split_once('.')?;
            matches!(file, "limit_in_bytes" | "max").then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

fn network(plan: &mut Plan<'_>, n: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(id) = n.class_id().filter(|id| *id != 0) {
        let place = plan.place("network.classID", "net_cls", None)?;
        plan.write(
            "network.classID",
            place.dir(),
            "net_cls.classid",
            id.to_string(),
        );
    }
    let priorities = n.priorities().as_deref().unwrap_or_default();
    if !priorities.is_empty() {
        let place = plan.place("network.priorities", "net_prio", None)?;
        for (i, p) in priorities.iter().enumerate() {
            plan.write(
                &format!("network.priorities[{i}]"),
                place.dir(),
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            );
        }
    }
    Ok(())
}

fn rdma(
    plan: &mut Plan<'_>,
    limits: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Result<(), CgroupError> {
    let mut devices: Vec<&String> = limits.keys().collect();
    devices.sort();
    for dev in devices {
        let l = &limits[dev];
        let mut parts = Vec::new();
        if let Some(h) = l.hca_handles() {
            parts.push(format!("hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            parts.push(format!("hca_object={o}"));
        }
        if parts.is_empty() {
            continue;
        }
        let name = format!("rdma[{dev:?}]");
        let place = plan.place(&name, "rdma", Some("rdma"))?;
        plan.write(
            &name,
            place.dir(),
            "rdma.max",
            format!("{dev} {}", parts.join(" ")),
        );
    }
    Ok(())
}

fn unified(
    plan: &mut Plan<'_>,
    keys: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut names: Vec<&String> = keys.keys().collect();
    names.sort();
    for k in names {
        let name = format!("unified[{k:?}]");
        // The validator's rule again: a caller that skipped validation still
        // can't write outside the container's own limits.
        if let Some(why) = berth_bundle::unified_key_problem(k) {
            return Err(unsupported(&name, why));
        }
        let Some(dir) = plan.cg.paths.get(UNIFIED).cloned() else {
            return Err(unsupported(
                &name,
                "this host has no cgroup2 hierarchy; unified keys are cgroup2 files",
            ));
        };
        let controller = k.split('.').next().unwrap_or_default();
        if controller != "cgroup" && !dir.join(k).exists() {
            let on_v1 = plan.cg.v1_controller_dir(controller).is_some()
                || (controller == "io" && plan.cg.v1_controller_dir("blkio").is_some());
            if on_v1 {
                return Err(unsupported(
                    &name,
                    format!("the {controller} controller is mounted as cgroup v1 on this host, so cgroup2 has no {k}; use the typed linux.resources settings instead"),
                ));
            }
            if !enable_v2(&dir, controller)? {
                return Err(unsupported(
                    &name,
                    format!("this host's cgroup2 hierarchy has no {controller} controller (not in cgroup.controllers above {})", dir.display()),
                ));
            }
        }
        if !dir.join(k).exists() {
            return Err(unsupported(
                &name,
                format!("{} has no file {k}", dir.display()),
            ));
        }
        plan.write(&name, &dir, k, keys[k].clone());
    }
    Ok(())
}

/// Whether `dir` is on a cgroup2 file system.
fn is_cgroup2(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn words(file: &Path) -> Result<Vec<String>, CgroupError> {
    match fs::read_to_string(file) {
        Ok(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
        Err(source) => Err(CgroupError::Read {
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// Makes cgroup2 `controller` available in `dir`: enabled in
/// `cgroup.subtree_control` of every ancestor from the hierarchy's root
/// down to `dir`'s parent. False if the kernel offers no such controller
/// there (it is bound to v1, or not built).
pub(crate) fn enable_v2(dir: &Path, controller: &str) -> Result<bool, CgroupError> {
    if dir.join("cgroup.controllers").exists()
        && words(&dir.join("cgroup.controllers"))?
            .iter()
            .any(|c| c == controller)
    {
        return Ok(true);
    }
    let mut chain: Vec<&Path> = dir.ancestors().skip(1).collect();
    // Keep the ancestors inside the cgroup2 mount, root first.
    chain.retain(|d| d.join("cgroup.controllers").exists() && is_cgroup2(d));
    chain.reverse();
    if chain.is_empty() {
        return Ok(false);
    }
    for d in &chain {
        if !words(&d.join("cgroup.controllers"))?
            .iter()
            .any(|c| c == controller)
        {
            return Ok(false);
        }
        let control = d.join("cgroup.subtree_control");
        if words(&control)?.iter().any(|c| c == controller) {
            continue;
        }
        let value = format!("+{controller}");
        fs::write(&control, &value).map_err(|source| {
            let hint = if source.raw_os_error() == Some(libc::EBUSY) {
                Some(format!("{} has processes of its own, and cgroup2 enables controllers only for cgroups whose processes live in leaves", d.display()))
            } else {
                None
            };
            CgroupError::Setting {
                setting: format!("enable the {controller} controller"),
                path: control.clone(),
                value,
                errno: source,
                hint,
            }
        })?;
    }
    Ok(dir.join("cgroup.controllers").exists()
        && words(&dir.join("cgroup.controllers"))?
            .iter()
            .any(|c| c == controller))
}

/// Writes a group: each file once, retrying the ones the kernel refused
/// while others in the group still succeed (the kernel checks memory
/// against memory+swap, quota against burst, and so on, so the right order
/// depends on the current values). The error is the last refusal.
fn write_group(group: &[Write]) -> Result<(), CgroupError> {
    let mut pending: Vec<&Write> = group.iter().collect();
    loop {
        let mut failed = Vec::new();
        let mut first_err = None;
        for w in &pending {
            if let Err(e) = fs::write(&w.file, &w.value) {
                first_err.get_or_insert((*w, e));
                failed.push(*w);
            }
        }
        let Some((w, source)) = first_err else {
            return Ok(());
        };
        if failed.len() == pending.len() {
            let hint = hint(w, &source);
            return Err(CgroupError::Setting {
                setting: w.setting.clone(),
                path: w.file.clone(),
                value: w.value.clone(),
                errno: source,
                hint,
            });
        }
        pending = failed;
    }
}

/// A likely reason for a refused write, from the file and the errno.
fn hint(w: &Write, e: &io::Error) -> Option<String> {
    let file = w.file.file_name()?.to_str()?;
    let errno = e.raw_os_error()?;
    let parent = |f: &str| {
        let p = w.file.parent()?.parent()?.join(f);
        let v = fs::read_to_string(p).ok()?;
        Some(v.trim().to_string())
    };
    match (file, errno) {
        ("memory.limit_in_bytes" | "memory.max", libc::EBUSY) => {
            Some("the container already uses more memory than that".into())
        }
        ("memory.limit_in_bytes", libc::EINVAL) => Some(
            "memory.memsw.limit_in_bytes is lower; memory+swap must be at least the memory limit (set linux.resources.memory.swap too)".into(),
        ),
        ("memory.memsw.limit_in_bytes", libc::EINVAL) => {
            Some("memory+swap must be at least the memory limit".into())
        }
        ("cpuset.cpus" | "cpuset.mems", libc::EINVAL | libc::ERANGE) => {
            let eff = if file == "cpuset.cpus" {
                "cpuset.effective_cpus"
            } else {
                "cpuset.effective_mems"
            };
            let have = parent(eff).or_else(|| parent(file)).unwrap_or_default();
            Some(format!("not within the parent cgroup's {file} ({have:?})"))
        }
        ("cpu.cfs_quota_us" | "cpu.cfs_period_us" | "cpu.max", libc::EINVAL) => Some(
            "the kernel refused the quota and period (beyond the parent's bandwidth, or below the burst)".into(),
        ),
        ("cpu.rt_runtime_us" | "cpu.rt_period_us", libc::EINVAL | libc::EBUSY) => Some(
            "the parent cgroup's realtime budget (its cpu.rt_runtime_us) leaves no room for it".into(),
        ),
        (f, libc::EOPNOTSUPP) if f.contains("bfq") => {
            let dev = w.value.split_whitespace().next().unwrap_or_default();
            Some(format!("block device {dev} does not use the BFQ I/O scheduler (see /sys/dev/block/{dev}/queue/scheduler)"))
        }
        (_, libc::ENODEV) => Some("no such block device on this host".into()),
        (_, libc::ENOENT) => Some("the host's cgroup has no such file".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn shares_map_to_weights() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        let mut last = 0;
        for s in [2, 3, 10, 100, 512, 1024, 2048, 4096, 65536, 262_144] {
            let w = shares_to_weight(s);
            assert!(w >= last && (1..=10_000).contains(&w), "{s} -> {w}");
            last = w;
        }
    }

    #[test]
    fn blkio_weights_map_to_io_weights() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(Some(50_000), Some(100_000), ""), "50000 100000");
        assert_eq!(cpu_max(Some(-1), Some(100_000), ""), "max 100000");
        assert_eq!(cpu_max(Some(20_000), None, ""), "20000");
        assert_eq!(cpu_max(None, Some(50_000), "30000 100000\n"), "30000 50000");
        assert_eq!(cpu_max(None, Some(50_000), "max 100000\n"), "max 50000");
    }

    #[test]
    fn v2_swap_is_beyond_the_limit() {
        assert_eq!(v2_swap_max(-1, None).unwrap(), "max");
        assert_eq!(
            v2_swap_max(3 << 20, Some(1 << 20)).unwrap(),
            (2 << 20).to_string()
        );
        assert_eq!(v2_swap_max(1 << 20, Some(1 << 20)).unwrap(), "0");
        assert!(v2_swap_max(1 << 20, None)
            .unwrap_err()
            .contains("needs a memory limit"));
        assert!(v2_swap_max(1 << 20, Some(2 << 20))
            .unwrap_err()
            .contains("less than the memory limit"));
    }

    #[test]
    fn limits_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.max");
        fs::write(&f, "max\n").unwrap();
        assert_eq!(read_limit(&f).unwrap(), None);
        fs::write(&f, "9223372036854771712\n").unwrap();
        assert_eq!(read_limit(&f).unwrap(), None);
        fs::write(&f, "1048576\n").unwrap();
        assert_eq!(read_limit(&f).unwrap(), Some(1 << 20));
    }

    /// A cgroup of plain directories standing in for v1 hierarchies: the
    /// plan and the writes are real file operations, the kernel's checks
    /// are not (the integration tests cover those).
    fn fake_v1(controllers: &[(&str, &[&str])]) -> (tempfile::TempDir, Cgroup) {
        let root = tempfile::tempdir().unwrap();
        let mut paths = BTreeMap::new();
        for (key, files) in controllers {
            let dir = root.path().join(key).join("c1");
            fs::create_dir_all(&dir).unwrap();
            for f in *files {
                fs::write(dir.join(f), "").unwrap();
            }
            paths.insert(key.to_string(), dir);
        }
        (root, Cgroup { paths })
    }

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    fn read(cg: &Cgroup, key: &str, file: &str) -> String {
        fs::read_to_string(cg.paths[key].join(file)).unwrap()
    }

    #[test]
    fn v1_files_get_the_values() {
        let (_root, cg) = fake_v1(&[
            (
                "memory",
                &[
                    "memory.limit_in_bytes",
                    "memory.memsw.limit_in_bytes",
                    "memory.soft_limit_in_bytes",
                    "memory.swappiness",
                ],
            ),
            (
                "cpu,cpuacct",
                &[
                    "cpu.shares",
                    "cpu.cfs_period_us",
                    "cpu.cfs_quota_us",
                    "cpu.cfs_burst_us",
                ],
            ),
            ("pids", &["pids.max"]),
            (
                "blkio",
                &["blkio.bfq.weight", "blkio.throttle.read_bps_device"],
            ),
        ]);
        fs::write(
            cg.paths["memory"].join("memory.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let r = res(serde_json::json!({
            "memory": { "limit": 1048576, "swap": 2097152, "reservation": 524288, "swappiness": 10 },
            "cpu": { "shares": 512, "quota": 20000, "period": 100000, "burst": 1000 },
            "pids": { "limit": -1 },
            "blockIO": { "weight": 300, "throttleReadBpsDevice": [{ "major": 8, "minor": 0, "rate": 4096 }] },
        }));
        cg.apply_resources(&r, Mode::Create).unwrap();
        assert_eq!(
            read(&cg, "pids", "pids.max"),
            "",
            "pids.limit before the init"
        );
        cg.apply_resources(&r, Mode::Started).unwrap();
        assert_eq!(read(&cg, "memory", "memory.limit_in_bytes"), "1048576");
        assert_eq!(
            read(&cg, "memory", "memory.memsw.limit_in_bytes"),
            "2097152"
        );
        assert_eq!(read(&cg, "memory", "memory.soft_limit_in_bytes"), "524288");
        assert_eq!(read(&cg, "memory", "memory.swappiness"), "10");
        assert_eq!(read(&cg, "cpu,cpuacct", "cpu.shares"), "512");
        assert_eq!(read(&cg, "cpu,cpuacct", "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cg, "cpu,cpuacct", "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&cg, "cpu,cpuacct", "cpu.cfs_burst_us"), "1000");
        assert_eq!(read(&cg, "pids", "pids.max"), "max");
        assert_eq!(read(&cg, "blkio", "blkio.bfq.weight"), "300");
        assert_eq!(
            read(&cg, "blkio", "blkio.throttle.read_bps_device"),
            "8:0 4096"
        );
    }

    #[test]
    fn missing_controllers_and_files_are_named_and_nothing_is_written() {
        let (_root, cg) = fake_v1(&[
            ("memory", &["memory.limit_in_bytes"]),
            ("cpu", &["cpu.shares"]),
        ]);
        let r = res(serde_json::json!({
            "memory": { "limit": 1048576 },
            "cpu": { "realtimeRuntime": 1000 },
        }));
        let e = cg
            .apply_resources(&r, Mode::Create)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.realtimeRuntime: this host's cgroup has no cpu.rt_runtime_us (the kernel was built without CONFIG_RT_GROUP_SCHED)"),
            "{e}"
        );
        assert_eq!(
            read(&cg, "memory", "memory.limit_in_bytes"),
            "",
            "written before the error"
        );
        let e = cg
            .apply_resources(
                &res(serde_json::json!({ "pids": { "limit": 10 } })),
                Mode::Create,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.pids.limit: this host has no pids controller"),
            "{e}"
        );
        let e = cg
            .apply_resources(
                &res(serde_json::json!({ "network": { "classID": 7 } })),
                Mode::Create,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.network.classID: the net_cls controller is not mounted"),
            "{e}"
        );
        // Defaults need nothing.
        let r = res(serde_json::json!({
            "pids": { "limit": -1 }, "network": { "classID": 0 },
            "cpu": { "shares": 0, "quota": -1, "idle": 0 }, "hugepageLimits": [{ "pageSize": "2MB", "limit": -1 }],
        }));
        cg.apply_resources(&r, Mode::Create).unwrap();
        let e = cg
            .apply_resources(
                &res(serde_json::json!({ "unified": { "memory.high": "5" } })),
                Mode::Create,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unified[\"memory.high\"]: this host has no cgroup2 hierarchy"),
            "{e}"
        );
    }

    #[test]
    fn update_writes_only_what_is_set() {
        let (_root, cg) = fake_v1(&[(
            "cpu",
            &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
        )]);
        fs::write(cg.paths["cpu"].join("cpu.shares"), "1024").unwrap();
        cg.apply_resources(
            &res(serde_json::json!({ "cpu": { "quota": 5000 } })),
            Mode::Update,
        )
        .unwrap();
        assert_eq!(read(&cg, "cpu", "cpu.shares"), "1024");
        assert_eq!(read(&cg, "cpu", "cpu.cfs_quota_us"), "5000");
        assert_eq!(read(&cg, "cpu", "cpu.cfs_period_us"), "");
    }

    #[test]
    fn unlimited_values_are_written_where_the_controller_is() {
        let (_root, cg) = fake_v1(&[
            ("cpu", &["cpu.cfs_quota_us"]),
            ("memory", &["memory.limit_in_bytes"]),
            ("pids", &["pids.max"]),
        ]);
        let r = res(serde_json::json!({
            "cpu": { "quota": -1 }, "memory": { "limit": -1 }, "pids": { "limit": -1 },
        }));
        cg.apply_resources(&r, Mode::Update).unwrap();
        assert_eq!(read(&cg, "cpu", "cpu.cfs_quota_us"), "-1");
        assert_eq!(read(&cg, "memory", "memory.limit_in_bytes"), "-1");
        assert_eq!(read(&cg, "pids", "pids.max"), "max");
    }

    #[test]
    fn write_errors_name_setting_file_value_and_errno() {
        let (_root, cg) = fake_v1(&[("pids", &["pids.max"])]);
        let file = cg.paths["pids"].join("pids.max");
        fs::remove_file(&file).unwrap();
        fs::create_dir(&file).unwrap(); // writing a directory: EISDIR
        let e = cg
            .apply_resources(
                &res(serde_json::json!({ "pids": { "limit": 3 } })),
                Mode::Started,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "linux.resources.pids.limit: write \"3\" to {}: ",
                file.display()
            )),
            "{e}"
        );
        assert!(e.contains("(EISDIR)"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn groups_retry_in_the_order_the_kernel_takes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        let blocked = dir.path().join("sub/blocked");
        let w = |file: &Path, v: &str| Write {
            setting: "s".into(),
            file: file.to_path_buf(),
            value: v.into(),
        };
        // The second write only works once the first made its directory:
        // here, a stand-in for "memsw first, then the limit".
        fs::write(&ok, "").unwrap();
        let e = write_group(&[w(&blocked, "1"), w(&ok, "2")]).unwrap_err();
        assert!(matches!(e, CgroupError::Setting { .. }));
        assert_eq!(fs::read_to_string(&ok).unwrap(), "2");
    }
}
