//! From an OCI `linux.seccomp` object to a classic-BPF program.
//!
//! Two passes. [`resolve`] checks the profile, applies runc's rules about
//! what is skipped, split or defaulted, and resolves every syscall name on
//! every architecture into per-ABI rule lists. [`generate`] lays those out as
//! BPF (the layout is described in the crate documentation).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::bpf::{AsmError, Cond, Label, Program, MAX_INSNS};
use crate::kernel;
use crate::syscalls;
use crate::{Compiled, Filter, SeccompError};

/// The kernel's `AUDIT_ARCH_*` values for the architectures berth filters.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// `seccomp_data` offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// The most syscalls one leaf of the dispatch tree compares one by one.
const LEAF: usize = 6;

/// The `SECCOMP_RET_*` a bad architecture gets: libseccomp's default
/// (`SCMP_ACT_KILL`, which is KILL_THREAD), which runc keeps.
const RET_BAD_ARCH: u32 = libc::SECCOMP_RET_KILL_THREAD;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// ERRNO data is capped at MAX_ERRNO by the kernel; TRACE data is 16 bits.
const MAX_ERRNO: u32 = 4095;
const MAX_TRACE_DATA: u32 = 0xffff;

/// The three ABIs a filter can name. x86_64 and x32 share `AUDIT_ARCH_X86_64`
/// and are told apart by `__X32_SYSCALL_BIT` in the syscall number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abi {
    X86_64,
    X32,
    X86,
}

impl Abi {
    pub(crate) fn oci_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::X86 => "SCMP_ARCH_X86",
        }
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => syscalls::X86_64,
            Abi::X32 => syscalls::X32,
            Abi::X86 => syscalls::X86,
        }
    }

    /// Whether arguments are compared on 64 bits. libseccomp compares only
    /// the low 32 bits on x86 and x32 (both are 32-bit ABIs to it), and so
    /// does berth.
    fn wide(self) -> bool {
        self == Abi::X86_64
    }
}

/// Looks a syscall name up in one ABI's table.
pub(crate) fn syscall_number(abi: Abi, name: &str) -> Option<u32> {
    let t = abi.table();
    t.binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| t[i].1)
}

/// x86 multiplexes the socket and SysV IPC calls through socketcall(2) and
/// ipc(2), whose first argument selects the call (linux/net.h SYS_*, and the
/// IPC call numbers of linux/ipc.h). libseccomp turns a rule on, say,
/// `socket` into a rule on the direct syscall (where x86 has one) and one on
/// socketcall with `arg0 == SYS_SOCKET`; berth does the same.
const X86_SOCKETCALL: u32 = 102;
const X86_IPC: u32 = 117;
const SOCKETCALL_SUBCALLS: &[(&str, u32)] = &[
    ("accept", 5),
    ("accept4", 18),
    ("bind", 2),
    ("connect", 3),
    ("getpeername", 7),
    ("getsockname", 6),
    ("getsockopt", 15),
    ("listen", 4),
    ("recv", 10),
    ("recvfrom", 12),
    ("recvmmsg", 19),
    ("recvmsg", 17),
    ("send", 9),
    ("sendmmsg", 20),
    ("sendmsg", 16),
    ("sendto", 11),
    ("setsockopt", 14),
    ("shutdown", 13),
    ("socket", 1),
    ("socketpair", 8),
];
const IPC_SUBCALLS: &[(&str, u32)] = &[
    ("msgctl", 14),
    ("msgget", 13),
    ("msgrcv", 12),
    ("msgsnd", 11),
    ("semctl", 3),
    ("semget", 2),
    ("semop", 1),
    ("semtimedop", 4),
    ("shmat", 21),
    ("shmctl", 24),
    ("shmdt", 22),
    ("shmget", 23),
];

fn subcall(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// One way a name reaches the kernel on an ABI: a syscall number, and for
/// x86's multiplexers the call number argument 0 must equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    nr: u32,
    subcall: Option<u32>,
}

fn targets(abi: Abi, name: &str) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(nr) = syscall_number(abi, name) {
        out.push(Target { nr, subcall: None });
    }
    if abi == Abi::X86 {
        if let Some(c) = subcall(SOCKETCALL_SUBCALLS, name) {
            out.push(Target {
                nr: X86_SOCKETCALL,
                subcall: Some(c),
            });
        }
        if let Some(c) = subcall(IPC_SUBCALLS, name) {
            out.push(Target {
                nr: X86_IPC,
                subcall: Some(c),
            });
        }
    }
    out
}

/// A comparison operator, with MASKED_EQ carrying its mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

/// One argument comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ArgCmp {
    index: u8,
    op: Op,
    value: u64,
}

/// One rule after resolution: all comparisons must hold for `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    conds: Vec<ArgCmp>,
    action: u32,
    wide: bool,
}

/// What [`generate`] needs: the checked profile, by ABI and syscall number.
#[derive(Debug)]
pub(crate) struct Resolved {
    default: u32,
    /// Listed ABIs (x86_64 always).
    abis: Vec<Abi>,
    /// Rules for each ABI's syscall numbers, in profile order.
    rules: BTreeMap<Abi, BTreeMap<u32, Vec<Rule>>>,
    /// The highest syscall number the profile names on each ABI, when the
    /// ENOSYS stub is wanted (see [`enosys_wanted`]).
    enosys_above: BTreeMap<Abi, u32>,
    flags: u32,
    notify: bool,
    warnings: Vec<String>,
}

/// The OCI name of an action.
pub(crate) fn action_name(a: LinuxSeccompAction) -> &'static str {
    match a {
        LinuxSeccompAction::ScmpActKill => "SCMP_ACT_KILL",
        LinuxSeccompAction::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActTrap => "SCMP_ACT_TRAP",
        LinuxSeccompAction::ScmpActErrno => "SCMP_ACT_ERRNO",
        LinuxSeccompAction::ScmpActNotify => "SCMP_ACT_NOTIFY",
        LinuxSeccompAction::ScmpActTrace => "SCMP_ACT_TRACE",
        LinuxSeccompAction::ScmpActLog => "SCMP_ACT_LOG",
        LinuxSeccompAction::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

/// The OCI name of a filter flag.
pub(crate) fn flag_name(f: LinuxSeccompFilterFlag) -> &'static str {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => "SECCOMP_FILTER_FLAG_LOG",
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => "SECCOMP_FILTER_FLAG_TSYNC",
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        }
    }
}

/// The OCI name of an architecture.
fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::ScmpArchNative => "SCMP_ARCH_NATIVE",
        Arch::ScmpArchX86 => "SCMP_ARCH_X86",
        Arch::ScmpArchX86_64 => "SCMP_ARCH_X86_64",
        Arch::ScmpArchX32 => "SCMP_ARCH_X32",
        Arch::ScmpArchArm => "SCMP_ARCH_ARM",
        Arch::ScmpArchAarch64 => "SCMP_ARCH_AARCH64",
        Arch::ScmpArchMips => "SCMP_ARCH_MIPS",
        Arch::ScmpArchMips64 => "SCMP_ARCH_MIPS64",
        Arch::ScmpArchMips64n32 => "SCMP_ARCH_MIPS64N32",
        Arch::ScmpArchMipsel => "SCMP_ARCH_MIPSEL",
        Arch::ScmpArchMipsel64 => "SCMP_ARCH_MIPSEL64",
        Arch::ScmpArchMipsel64n32 => "SCMP_ARCH_MIPSEL64N32",
        Arch::ScmpArchPpc => "SCMP_ARCH_PPC",
        Arch::ScmpArchPpc64 => "SCMP_ARCH_PPC64",
        Arch::ScmpArchPpc64le => "SCMP_ARCH_PPC64LE",
        Arch::ScmpArchS390 => "SCMP_ARCH_S390",
        Arch::ScmpArchS390x => "SCMP_ARCH_S390X",
        Arch::ScmpArchParisc => "SCMP_ARCH_PARISC",
        Arch::ScmpArchParisc64 => "SCMP_ARCH_PARISC64",
        Arch::ScmpArchRiscv64 => "SCMP_ARCH_RISCV64",
        Arch::ScmpArchLoongarch64 => "SCMP_ARCH_LOONGARCH64",
        Arch::ScmpArchM68k => "SCMP_ARCH_M68K",
        Arch::ScmpArchSh => "SCMP_ARCH_SH",
        Arch::ScmpArchSheb => "SCMP_ARCH_SHEB",
    }
}

fn flag_bit(f: LinuxSeccompFilterFlag) -> u32 {
    (match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        }
    }) as u32
}

/// The `SECCOMP_RET_*` value of an action, without data.
pub(crate) fn action_base(a: LinuxSeccompAction) -> u32 {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO,
        LinuxSeccompAction::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE,
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
    }
}

/// The full `SECCOMP_RET_*` value of an action with its errno / trace data.
/// ERRNO and TRACE without a value use EPERM, as runc does; a value the
/// kernel cannot return is an error.
fn action_value(
    a: LinuxSeccompAction,
    ret: Option<u32>,
    path: &str,
    ret_path: &str,
    warnings: &mut Vec<String>,
) -> Result<u32, SeccompError> {
    let base = action_base(a);
    let max = match a {
        LinuxSeccompAction::ScmpActErrno => MAX_ERRNO,
        LinuxSeccompAction::ScmpActTrace => MAX_TRACE_DATA,
        _ => {
            if let Some(v) = ret {
                warnings.push(format!(
                    "{ret_path}: {v} is ignored: {} takes no return value ({path})",
                    action_name(a)
                ));
            }
            return Ok(base);
        }
    };
    let v = ret.unwrap_or(libc::EPERM as u32);
    if v > max {
        return Err(SeccompError::ReturnValueRange {
            path: ret_path.to_string(),
            value: v,
            action: action_name(a),
            max,
        });
    }
    Ok(base | v)
}

/// runc prepends an ENOSYS stub unless the default action already lets
/// unknown syscalls through (ALLOW, LOG, and TRACE, whose tracer is expected
/// to cope with new syscalls).
fn enosys_wanted(default: LinuxSeccompAction) -> bool {
    !matches!(
        default,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    )
}

fn op_of(op: LinuxSeccompOperator, value_two: u64) -> Op {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
        LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
        LinuxSeccompOperator::ScmpCmpLe => Op::Le,
        LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
        LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
        LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
        // `value` is the mask, `valueTwo` the datum (libseccomp's order).
        LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq(value_two),
    }
}

/// Pass 1: checks the profile and resolves names on every listed ABI.
pub(crate) fn resolve(s: &LinuxSeccomp) -> Result<Resolved, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedHost);
    }
    let mut warnings = Vec::new();

    // Architectures: libseccomp's filter always holds the native one, and
    // runc only adds to it. `listed` are the ones the profile names: runc's
    // ENOSYS stub covers only those.
    let mut abis = vec![Abi::X86_64];
    let mut listed = Vec::new();
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let abi = match a {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            other => {
                return Err(SeccompError::UnsupportedArch {
                    path: format!("linux.seccomp.architectures[{i}]"),
                    arch: arch_name(*other),
                })
            }
        };
        if !abis.contains(&abi) {
            abis.push(abi);
        }
        if !listed.contains(&abi) {
            listed.push(abi);
        }
    }
    abis.sort();

    // Default action.
    let default_action = s.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let default = action_value(
        default_action,
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
        &mut warnings,
    )?;
    kernel::require_action(default_action, "linux.seccomp.defaultAction")?;
    let mut checked = vec![default_action];
    // Every rule costs at least its `ret`: stop early on a profile that
    // cannot fit, before building it.
    let mut rule_count = 0usize;

    // Rules.
    let mut rules: BTreeMap<Abi, BTreeMap<u32, Vec<Rule>>> = BTreeMap::new();
    let mut highest: BTreeMap<Abi, u32> = BTreeMap::new();
    let mut notify_at = None;
    let mut known_anywhere = std::collections::BTreeSet::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let path = format!("linux.seccomp.syscalls[{i}]");
        let action = sc.action();
        let value = action_value(
            action,
            sc.errno_ret(),
            &format!("{path}.action"),
            &format!("{path}.errnoRet"),
            &mut warnings,
        )?;
        if action == LinuxSeccompAction::ScmpActNotify && notify_at.is_none() {
            notify_at = Some(format!("{path}.action"));
        }
        if !checked.contains(&action) {
            kernel::require_action(action, &format!("{path}.action"))?;
            checked.push(action);
        }

        // Conditions: each index at most once → one rule, all ANDed; an index
        // repeated → runc's older behaviour, every condition its own rule.
        let args = sc.args().as_deref().unwrap_or_default();
        let mut conds = Vec::with_capacity(args.len());
        let mut seen = [0usize; 6];
        for (j, a) in args.iter().enumerate() {
            let index = a.index();
            if index > 5 {
                return Err(SeccompError::ArgIndex {
                    path: format!("{path}.args[{j}].index"),
                    index,
                });
            }
            seen[index] += 1;
            conds.push(ArgCmp {
                index: index as u8,
                op: op_of(a.op(), a.value_two().unwrap_or(0)),
                value: a.value(),
            });
        }
        let groups: Vec<Vec<ArgCmp>> = if seen.iter().any(|&n| n > 1) {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };

        if sc.names().is_empty() {
            warnings.push(format!(
                "{path}.names: no syscall names; the entry has no effect"
            ));
        }
        for (j, name) in sc.names().iter().enumerate() {
            if name.is_empty() {
                return Err(SeccompError::EmptyName {
                    path: format!("{path}.names[{j}]"),
                });
            }
            let mut known = false;
            for &abi in &abis {
                for t in targets(abi, name) {
                    known = true;
                    if t.subcall.is_none() {
                        let h = highest.entry(abi).or_insert(0);
                        *h = (*h).max(t.nr);
                    }
                    // A rule that does what the default does is left out, as
                    // runc does (libseccomp refuses such rules).
                    if value == default {
                        continue;
                    }
                    let list = rules.entry(abi).or_default().entry(t.nr).or_default();
                    for g in &groups {
                        let mut conds = g.clone();
                        if let Some(call) = t.subcall {
                            // The multiplexer's argument 0 is the call number;
                            // libseccomp replaces any argument-0 condition.
                            conds.retain(|c| c.index != 0);
                            conds.insert(
                                0,
                                ArgCmp {
                                    index: 0,
                                    op: Op::Eq,
                                    value: u64::from(call),
                                },
                            );
                        }
                        list.push(Rule {
                            conds,
                            action: value,
                            wide: abi.wide(),
                        });
                        rule_count += 1;
                        if rule_count > MAX_INSNS {
                            return Err(SeccompError::TooLong { len: rule_count });
                        }
                    }
                }
            }
            if known {
                known_anywhere.insert(name.as_str());
            } else if !warnings_has_name(&warnings, name) {
                let listed: Vec<&str> = abis.iter().map(|a| a.oci_name()).collect();
                warnings.push(format!(
                    "{path}.names[{j}]: syscall {name:?} is unknown on {}; ignored",
                    listed.join(", ")
                ));
            }
        }
    }

    // Listener.
    let listener = s
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty());
    let notify = notify_at.is_some();
    if let Some(path) = notify_at {
        if !listener {
            return Err(SeccompError::NotifyWithoutListener { path });
        }
    } else if listener {
        warnings.push(
            "linux.seccomp.listenerPath: no rule uses SCMP_ACT_NOTIFY, so no listener is contacted"
                .to_string(),
        );
    }

    // Flags. Absent means runc's default: SPEC_ALLOW when the kernel has it.
    let mut flags = 0u32;
    match s.flags() {
        None => {
            if kernel::flag_bit_available(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32) {
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
            }
        }
        Some(list) => {
            for (i, &f) in list.iter().enumerate() {
                let path = format!("linux.seccomp.flags[{i}]");
                let bit = flag_bit(f);
                match f {
                    // Synchronising threads is moot: the filter is loaded by
                    // a single-threaded process just before exec (runc
                    // accepts and ignores it too). The kernel would refuse it
                    // next to NEW_LISTENER.
                    LinuxSeccompFilterFlag::SeccompFilterFlagTsync => continue,
                    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if !notify => {
                        warnings.push(format!(
                            "{path}: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV has no effect without an SCMP_ACT_NOTIFY rule; not passed to the kernel, which refuses it there"
                        ));
                        continue;
                    }
                    _ => {}
                }
                let probe = if f == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv {
                    bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32
                } else {
                    bit
                };
                if !kernel::flag_bit_available(probe) {
                    return Err(SeccompError::FlagUnsupported {
                        path,
                        flag: flag_name(f),
                    });
                }
                flags |= bit;
            }
        }
    }
    if notify {
        let bit = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
        if !kernel::flag_bit_available(bit) {
            return Err(SeccompError::FlagUnsupported {
                path: "linux.seccomp.syscalls".to_string(),
                flag: "SECCOMP_FILTER_FLAG_NEW_LISTENER",
            });
        }
        flags |= bit;
    }

    let enosys_above = if enosys_wanted(default_action) {
        highest.retain(|abi, _| listed.contains(abi));
        highest
    } else {
        BTreeMap::new()
    };
    Ok(Resolved {
        default,
        abis,
        rules,
        enosys_above,
        flags,
        notify,
        warnings,
    })
}

/// One warning per unknown name, even when several entries list it.
fn warnings_has_name(warnings: &[String], name: &str) -> bool {
    let needle = format!("syscall {name:?} is unknown");
    warnings.iter().any(|w| w.contains(&needle))
}

/// Pass 2: the BPF program.
pub(crate) fn generate(r: Resolved) -> Result<Compiled, SeccompError> {
    let mut p = Program::new();
    let has = |a: Abi| r.abis.contains(&a);
    let empty = BTreeMap::new();

    // Architecture dispatch.
    let l64 = p.label();
    let l32 = p.label();
    let bad = p.label();
    p.load(OFF_ARCH);
    if has(Abi::X86) {
        let next = p.label();
        p.jump(Cond::Eq, AUDIT_ARCH_X86_64, l64, next);
        p.bind(next);
        p.jump(Cond::Eq, AUDIT_ARCH_I386, l32, bad);
    } else {
        p.jump(Cond::Eq, AUDIT_ARCH_X86_64, l64, bad);
    }
    p.bind(bad);
    p.ret(RET_BAD_ARCH);

    // x86_64, with x32 when listed.
    p.bind(l64);
    p.load(OFF_NR);
    let rules = p.label();
    let x32 = has(Abi::X32);
    let mut entries: BTreeMap<u32, &Vec<Rule>> = BTreeMap::new();
    for abi in [Abi::X86_64, Abi::X32] {
        if has(abi) {
            for (nr, list) in r.rules.get(&abi).unwrap_or(&empty) {
                entries.insert(*nr, list);
            }
        }
    }
    let max64 = r.enosys_above.get(&Abi::X86_64).copied();
    let maxx32 = r.enosys_above.get(&Abi::X32).copied();
    let enosys = p.label();
    if x32 {
        // Both ABIs share the rules; the stub tells them apart.
        let (s64, sx32) = (p.label(), p.label());
        p.jump(Cond::Set, syscalls::X32_BIT, sx32, s64);
        p.bind(s64);
        stub(&mut p, max64, enosys, rules);
        p.bind(sx32);
        stub(&mut p, maxx32, enosys, rules);
    } else {
        // An x32 syscall is a foreign ABI here: bad architecture, except the
        // -1 a tracer uses to skip a syscall (libseccomp lets it reach the
        // rules, and so the default action).
        let (high, s64, bad64) = (p.label(), p.label(), p.label());
        p.jump(Cond::Ge, syscalls::X32_BIT, high, s64);
        p.bind(high);
        p.jump(Cond::Eq, u32::MAX, rules, bad64);
        p.bind(bad64);
        p.ret(RET_BAD_ARCH);
        p.bind(s64);
        stub(&mut p, max64, enosys, rules);
    }
    p.bind(enosys);
    p.ret(RET_ENOSYS);
    p.bind(rules);
    let list: Vec<(u32, &Vec<Rule>)> = entries.into_iter().collect();
    tree(&mut p, &list, r.default);

    // x86.
    if has(Abi::X86) {
        p.bind(l32);
        p.load(OFF_NR);
        let (rules32, enosys32) = (p.label(), p.label());
        stub(
            &mut p,
            r.enosys_above.get(&Abi::X86).copied(),
            enosys32,
            rules32,
        );
        p.bind(enosys32);
        p.ret(RET_ENOSYS);
        p.bind(rules32);
        let list: Vec<(u32, &Vec<Rule>)> = r
            .rules
            .get(&Abi::X86)
            .unwrap_or(&empty)
            .iter()
            .map(|(nr, l)| (*nr, l))
            .collect();
        tree(&mut p, &list, r.default);
    }

    let prog = p.assemble().map_err(|e| match e {
        AsmError::TooLong(len) => SeccompError::TooLong { len },
        AsmError::Internal(what) => SeccompError::Internal(what),
    })?;
    Ok(Compiled {
        filter: Filter {
            prog,
            flags: r.flags,
            notify: r.notify,
        },
        warnings: r.warnings,
    })
}

/// `nr > max` returns ENOSYS; anything else goes on to the rules. Without a
/// maximum (the profile names nothing on this ABI) there is no stub, as in
/// runc.
fn stub(p: &mut Program, max: Option<u32>, enosys: Label, rules: Label) {
    match max {
        Some(m) => p.jump(Cond::Gt, m, enosys, rules),
        None => p.ja(rules),
    }
}

/// A binary search on the syscall number (in the accumulator), down to
/// leaves of at most [`LEAF`] equality tests, each followed by the blocks of
/// its syscalls.
fn tree(p: &mut Program, list: &[(u32, &Vec<Rule>)], default: u32) {
    if list.len() <= LEAF {
        let blocks: Vec<Label> = list.iter().map(|_| p.label()).collect();
        for ((nr, _), l) in list.iter().zip(&blocks) {
            let next = p.label();
            p.jump(Cond::Eq, *nr, *l, next);
            p.bind(next);
        }
        p.ret(default);
        for ((_, rules), l) in list.iter().zip(&blocks) {
            p.bind(*l);
            syscall_block(p, rules, default);
        }
        return;
    }
    let mid = list.len() / 2;
    let (left, right) = (p.label(), p.label());
    p.jump(Cond::Ge, list[mid].0, right, left);
    p.bind(left);
    tree(p, &list[..mid], default);
    p.bind(right);
    tree(p, &list[mid..], default);
}

/// The rules of one syscall. An unconditional rule decides alone (the first
/// one, as libseccomp keeps it); otherwise rules are tried in profile order
/// and the first whose comparisons all hold decides; none → the default.
fn syscall_block(p: &mut Program, rules: &[Rule], default: u32) {
    if let Some(r) = rules.iter().find(|r| r.conds.is_empty()) {
        p.ret(r.action);
        return;
    }
    for r in rules {
        let next = p.label();
        for c in &r.conds {
            compare(p, c, r.wide, next);
        }
        p.ret(r.action);
        p.bind(next);
    }
    p.ret(default);
}

fn lo(v: u64) -> u32 {
    v as u32
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

/// One argument comparison: falls through when it holds, jumps to `fail`
/// when not. Wide comparisons use both halves of the argument (high word
/// first); narrow ones only the low word, with the value truncated to it as
/// libseccomp does on 32-bit ABIs.
fn compare(p: &mut Program, c: &ArgCmp, wide: bool, fail: Label) {
    let off_lo = OFF_ARGS + 8 * u32::from(c.index);
    let off_hi = off_lo + 4;
    let pass = p.label();
    let v = c.value;
    match c.op {
        Op::MaskedEq(datum) => {
            let mask = v;
            let datum = datum & mask;
            if wide && hi(mask) != 0 {
                let next = p.label();
                p.load(off_hi);
                p.and(hi(mask));
                let after = if lo(mask) != 0 { next } else { pass };
                p.jump(Cond::Eq, hi(datum), after, fail);
                p.bind(next);
            }
            if lo(mask) != 0 {
                p.load(off_lo);
                p.and(lo(mask));
                p.jump(Cond::Eq, lo(datum), pass, fail);
            }
        }
        Op::Eq | Op::Ne => {
            let (t, f) = if c.op == Op::Eq {
                (pass, fail)
            } else {
                (fail, pass)
            };
            if wide {
                let next = p.label();
                p.load(off_hi);
                p.jump(Cond::Eq, hi(v), next, f);
                p.bind(next);
            }
            p.load(off_lo);
            p.jump(Cond::Eq, lo(v), t, f);
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            // GT/GE hold when the argument is above; LT/LE are their
            // negations (LT = not GE, LE = not GT).
            let above = matches!(c.op, Op::Gt | Op::Ge);
            let (t, f) = if above { (pass, fail) } else { (fail, pass) };
            let low = if matches!(c.op, Op::Gt | Op::Le) {
                Cond::Gt
            } else {
                Cond::Ge
            };
            if wide {
                let (eq, next) = (p.label(), p.label());
                p.load(off_hi);
                p.jump(Cond::Gt, hi(v), t, eq);
                p.bind(eq);
                p.jump(Cond::Eq, hi(v), next, f);
                p.bind(next);
            }
            p.load(off_lo);
            p.jump(low, lo(v), t, f);
        }
    }
    p.bind(pass);
}
