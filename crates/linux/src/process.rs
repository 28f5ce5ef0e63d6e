//! Process attributes beyond ids and capabilities: personality, scheduler,
//! I/O priority, CPU affinity, LSM labels and the seccomp filter.
//!
//! [`Extras::build`] turns config.json into ready-to-use values before the
//! fork (a `sched_attr`, a `cpu_set_t`, a compiled BPF program, the bytes to
//! write to /proc); the init applies them with one syscall each.

use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, Spec,
};

use crate::lsm::{self, ExecLabel};
use crate::LinuxError;

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// The seccomp notify listener `create` hands the filter's descriptor to.
#[derive(Debug, Clone)]
pub struct NotifyListener {
    pub path: std::path::PathBuf,
    pub metadata: String,
}

#[derive(Default)]
pub struct Extras {
    /// personality(2) persona, applied right before exec.
    pub personality: Option<libc::c_ulong>,
    pub sched: Option<SchedAttr>,
    /// ioprio_set(2) value: class << 13 | level.
    pub ioprio: Option<libc::c_int>,
    pub lsm: Option<ExecLabel>,
    pub seccomp: Option<berth_seccomp::Filter>,
    /// Set when the filter has NOTIFY rules.
    pub notify: Option<NotifyListener>,
    /// execCPUAffinity, for processes `berth exec` starts (the runtime spec
    /// excludes the container's init): `initial` while the process joins
    /// the container's cgroup, `final` once it is in.
    pub affinity_initial: Option<CpuSet>,
    pub affinity_final: Option<CpuSet>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("personality", &self.personality)
            .field("sched", &self.sched)
            .field("ioprio", &self.ioprio)
            .field("lsm", &self.lsm)
            .field("seccomp", &self.seccomp.as_ref().map(|s| s.len()))
            .field("notify", &self.notify)
            .field("affinity_initial", &self.affinity_initial)
            .field("affinity_final", &self.affinity_final)
            .finish()
    }
}

/// A `cpu_set_t` (which has no Debug of its own).
#[derive(Clone, Copy)]
pub struct CpuSet(pub libc::cpu_set_t);

impl std::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<usize> = (0..8 * std::mem::size_of::<libc::cpu_set_t>())
            // SAFETY: c is below the set's size in bits.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
            .collect();
        write!(f, "CpuSet{cpus:?}")
    }
}

const IOPRIO_CLASS_SHIFT: i32 = 13;

impl Extras {
    pub fn build(spec: &Spec) -> Result<Extras, LinuxError> {
        let mut x = Extras::default();
        let process = spec.process().as_ref();
        let linux = spec.linux().as_ref();

        if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
            if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(plan_err(
                    "linux.personality.flags: no personality flags are supported",
                ));
            }
            x.personality = Some(match p.domain() {
                LinuxPersonalityDomain::PerLinux => 0x0000,
                LinuxPersonalityDomain::PerLinux32 => 0x0008,
            });
        }
        if let Some(s) = process.and_then(|p| p.scheduler().as_ref()) {
            x.sched = Some(sched_attr(s)?);
        }
        if let Some(io) = process.and_then(|p| p.io_priority().as_ref()) {
            let class = match io.class() {
                IOPriorityClass::IoprioClassRt => 1,
                IOPriorityClass::IoprioClassBe => 2,
                IOPriorityClass::IoprioClassIdle => 3,
            };
            if !(0..=7).contains(&io.priority()) {
                return Err(plan_err(format!(
                    "process.ioPriority.priority: {} is out of range (0-7)",
                    io.priority()
                )));
            }
            x.ioprio = Some(class << IOPRIO_CLASS_SHIFT | io.priority() as i32);
        }
        if let Some(a) = process.and_then(|p| p.exec_cpu_affinity().as_ref()) {
            let set = |list: &Option<String>, what| {
                list.as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|l| cpu_set(l, what))
                    .transpose()
            };
            x.affinity_initial = set(a.initial(), "process.execCPUAffinity.initial")?;
            x.affinity_final = set(a.cpu_affinity_final(), "process.execCPUAffinity.final")?;
        }
        let apparmor = process.and_then(|p| p.apparmor_profile().as_deref());
        let selinux = process.and_then(|p| p.selinux_label().as_deref());
        if apparmor.is_some_and(|a| !a.is_empty()) || selinux.is_some_and(|l| !l.is_empty()) {
            x.lsm = lsm::exec_label(apparmor, selinux, &lsm::Host::detect())?;
        }
        if let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) {
            let compiled = berth_seccomp::compile(s).map_err(|e| plan_err(e.to_string()))?;
            if compiled.filter.notify {
                refuse_self_notify(s)?;
                x.notify = Some(NotifyListener {
                    // compile() refuses NOTIFY without a listenerPath.
                    path: s.listener_path().clone().unwrap_or_default(),
                    metadata: s.listener_metadata().clone().unwrap_or_default(),
                });
            }
            x.seccomp = Some(compiled.filter);
        }
        Ok(x)
    }
}

/// The calls that carry the listener descriptor out of the init (sendto for
/// `Ready`, sendmsg for the descriptor) and `write` (refused by runc too):
/// a NOTIFY rule on one of them, for any arguments, would make the init wait
/// on a listener that does not have the descriptor yet.
const CARRY_LISTENER: &[&str] = &["sendto", "sendmsg", "write"];

fn refuse_self_notify(s: &oci_spec::runtime::LinuxSeccomp) -> Result<(), LinuxError> {
    use oci_spec::runtime::LinuxSeccompAction;
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        if rule.action() != LinuxSeccompAction::ScmpActNotify {
            continue;
        }
        if let Some(name) = rule
            .names()
            .iter()
            .find(|n| CARRY_LISTENER.contains(&n.as_str()))
        {
            return Err(plan_err(format!(
                "linux.seccomp.syscalls[{i}]: SCMP_ACT_NOTIFY on {name} is not supported: berth hands the listener to create with {name}-family calls after loading the filter, which would wait forever"
            )));
        }
    }
    Ok(())
}

fn plan_err(msg: impl Into<String>) -> LinuxError {
    LinuxError::Plan(msg.into())
}

fn sched_attr(s: &oci_spec::runtime::Scheduler) -> Result<SchedAttr, LinuxError> {
    use LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        P::SchedIso => {
            return Err(plan_err(
                "process.scheduler.policy: SCHED_ISO is not implemented by Linux",
            ))
        }
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6,
    } as u32;
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(plan_err(format!(
            "process.scheduler.nice: {nice} is out of range (-20 to 19)"
        )));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = policy == libc::SCHED_FIFO as u32 || policy == libc::SCHED_RR as u32;
    if realtime && !(1..=99).contains(&priority) {
        return Err(plan_err(format!(
            "process.scheduler.priority: {priority} is out of range for {:?} (1-99)",
            s.policy()
        )));
    }
    if !realtime && priority != 0 {
        return Err(plan_err(format!(
            "process.scheduler.priority: must be 0 for {:?} (a priority only applies to SCHED_FIFO and SCHED_RR)",
            s.policy()
        )));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy == 6 && !(runtime > 0 && runtime <= deadline && (period == 0 || deadline <= period)) {
        return Err(plan_err(format!(
            "process.scheduler: SCHED_DEADLINE needs 0 < runtime <= deadline <= period (got {runtime}, {deadline}, {period})"
        )));
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
        util_min: 0,
        util_max: 0,
    })
}

/// "0-3,7" → a cpu_set_t; every listed CPU must exist in a cpu_set_t.
pub fn cpu_set(list: &str, what: &str) -> Result<CpuSet, LinuxError> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    let bad = |why: &str| plan_err(format!("{what}: {list:?} is not a CPU list ({why})"));
    let mut any = false;
    for part in list.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (lo, hi): (usize, usize) = match (lo.parse(), hi.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(bad("expected N or N-M, comma-separated")),
        };
        if hi >= max {
            return Err(bad(&format!("CPU {hi} is beyond {}", max - 1)));
        }
        for cpu in lo..=hi {
            // SAFETY: cpu < max, the set's size in bits (checked above).
            unsafe { libc::CPU_SET(cpu, &mut set) };
            any = true;
        }
    }
    if !any {
        return Err(bad("empty"));
    }
    Ok(CpuSet(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let s = cpu_set("0-2,5", "x").unwrap();
        // SAFETY: c is a small CPU number, inside the set.
        let has = |c| unsafe { libc::CPU_ISSET(c, &s.0) };
        assert!(has(0) && has(1) && has(2) && !has(3) && !has(4) && has(5));
        for bad in ["", "a", "3-1", "1,,2", "99999"] {
            let e = cpu_set(bad, "process.execCPUAffinity.final").unwrap_err();
            assert!(
                e.to_string().starts_with("process.execCPUAffinity.final: "),
                "{e}"
            );
        }
    }

    fn sched(json: serde_json::Value) -> Result<SchedAttr, LinuxError> {
        sched_attr(&serde_json::from_value(json).unwrap())
    }

    #[test]
    fn scheduler_values() {
        let a = sched(serde_json::json!({"policy": "SCHED_BATCH", "nice": 5})).unwrap();
        assert_eq!((a.policy, a.nice, a.size), (3, 5, 56));
        let a = sched(
            serde_json::json!({"policy": "SCHED_RR", "priority": 10, "flags": ["SCHED_RESET_ON_FORK"]}),
        )
        .unwrap();
        assert_eq!((a.policy, a.priority, a.flags), (2, 10, 1));
        for bad in [
            serde_json::json!({"policy": "SCHED_FIFO"}),
            serde_json::json!({"policy": "SCHED_OTHER", "priority": 3}),
            serde_json::json!({"policy": "SCHED_OTHER", "nice": 40}),
            serde_json::json!({"policy": "SCHED_ISO"}),
            serde_json::json!({"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 5}),
        ] {
            let e = sched(bad.clone()).unwrap_err().to_string();
            assert!(e.starts_with("process.scheduler"), "{bad}: {e}");
        }
    }
}
