//! berth-seccomp: the OCI `linux.seccomp` object compiled to a classic-BPF
//! seccomp filter, in Rust, without libseccomp.
//!
//! - [`compile`] checks a profile and builds a [`Filter`] (plus warnings);
//! - [`install`] loads it, async-signal-safely, right before `execve`;
//! - [`notify`] is the supervisor side of `SCMP_ACT_NOTIFY`;
//! - [`ACTIONS`], [`OPERATORS`], [`ARCHITECTURES`], [`FLAGS`],
//!   [`flag_available`] and [`action_available`] are what `berth features`
//!   and the validator report, from the tables the compiler itself uses.
//!
//! # Why not seccompiler
//!
//! seccompiler (the rust-vmm filter compiler) builds a filter for one
//! architecture at a time and has no user-notification action. OCI profiles
//! routinely list x86_64, x86 and x32 together and may use
//! `SCMP_ACT_NOTIFY`, so berth generates the BPF itself. The program is small
//! and regular (below), and every branch is checked against the kernel by the
//! tests.
//!
//! # Semantics
//!
//! runc's behaviour (runc + libseccomp) wherever the OCI spec is silent:
//!
//! - **Architectures.** The native one (x86_64; berth builds filters on
//!   x86_64 hosts only) is always in the filter, as in libseccomp; the listed
//!   ones are added. `SCMP_ARCH_NATIVE` means x86_64. Any other architecture
//!   is an error. A syscall made through an ABI not in the filter gets
//!   libseccomp's bad-architecture action, `SECCOMP_RET_KILL_THREAD` (which
//!   kills the whole process when it is single-threaded).
//! - **x32.** x32 and x86_64 share `AUDIT_ARCH_X86_64`; x32 syscall numbers
//!   carry `__X32_SYSCALL_BIT`. Without x32 in the filter such a number is a
//!   bad architecture (never reaching x86_64 rules), except `-1`, which a
//!   tracer uses to skip a syscall and which gets the default action.
//! - **Names.** Resolved per architecture from tables generated from the
//!   kernel headers (`hack/gen-syscalls.sh`). A name unknown on an
//!   architecture is skipped there; a name unknown on every listed one is
//!   ignored with a warning (runc ignores it silently). On x86 the socket and
//!   SysV IPC calls also match through socketcall(2) / ipc(2) with argument 0
//!   equal to the call number, as libseccomp does (argument-0 conditions of
//!   such a rule are replaced by that test).
//! - **Actions.** `SCMP_ACT_KILL` is KILL_THREAD. ERRNO and TRACE without
//!   `errnoRet` use EPERM; `defaultErrnoRet` applies to an ERRNO/TRACE
//!   default. A value the kernel cannot return (an errno above 4095, trace
//!   data above 65535) is an error. `errnoRet` on another action is ignored
//!   with a warning. A rule whose action (with its value) equals the default
//!   is skipped, as runc does. NOTIFY as the default action is an error
//!   (runc refuses it), and so is NOTIFY without `listenerPath`;
//!   `listenerPath` without NOTIFY is ignored with a warning (runc ignores it).
//! - **Arguments.** The conditions of one rule are ANDed. When an argument
//!   index appears more than once in a rule, runc falls back to adding every
//!   condition as a rule of its own (ORed); so does berth. Comparisons are
//!   unsigned. On x86_64 they use all 64 bits; on x86 and x32, which
//!   libseccomp treats as 32-bit, only the low 32 bits of the argument and of
//!   the value (a larger value is truncated, as libseccomp does).
//!   `SCMP_CMP_MASKED_EQ` is `(arg & value) == valueTwo`, with `valueTwo`
//!   masked too. An argument index above 5 is an error.
//! - **Several rules for one syscall.** An unconditional rule decides alone
//!   (libseccomp keeps the first and drops narrower ones). Otherwise the
//!   rules are tried in profile order and the first whose conditions all
//!   hold decides; when none does, the default action applies.
//! - **ENOSYS for unknown syscalls.** Like runc's patch in front of the
//!   libseccomp filter: unless the default action is ALLOW, LOG or TRACE, a
//!   syscall numbered above the highest the profile names (for that
//!   architecture, among the architectures the profile lists) fails with
//!   ENOSYS instead of getting the default action, so that programs fall
//!   back from syscalls newer than the profile (glibc from clone3, say).
//! - **Flags.** `SECCOMP_FILTER_FLAG_LOG`, `_SPEC_ALLOW` and
//!   `_WAIT_KILLABLE_RECV` are passed to the kernel; one the running kernel
//!   lacks is an error. `_TSYNC` is accepted and ignored (the filter is loaded
//!   by a single-threaded process; runc ignores it too). When `flags` is
//!   absent, SPEC_ALLOW is used if the kernel has it, as runc does.
//!   `_NEW_LISTENER` is added when a rule uses NOTIFY; WAIT_KILLABLE_RECV
//!   without NOTIFY is dropped with a warning (the kernel would refuse it).
//!
//! # Layout of the generated program
//!
//! ```text
//!   ld  arch
//!   jeq AUDIT_ARCH_X86_64 → X86_64
//!   jeq AUDIT_ARCH_I386   → X86            (when x86 is listed)
//!   ret KILL_THREAD                        bad architecture
//! X86_64:
//!   ld  nr
//!   without x32:  jge X32_BIT → (jeq -1 → RULES, else ret KILL_THREAD)
//!                 jgt <highest x86_64 nr> → ENOSYS          (the stub)
//!   with x32:     jset X32_BIT → jgt <highest x32 nr> → ENOSYS
//!                 else           jgt <highest x86_64 nr> → ENOSYS
//!   ENOSYS: ret ERRNO(ENOSYS)
//!   RULES:  binary search on nr (jge) down to leaves of ≤ 6 jeq tests;
//!           no match: ret <default>
//!           each matched syscall: its rules, each a chain of argument
//!           tests (high word, then low word, per condition) ending in
//!           ret <action>; a failed test jumps to the next rule; after the
//!           last rule: ret <default>
//! X86:
//!   ld nr; jgt <highest x86 nr> → ret ERRNO(ENOSYS); the same tree.
//! ```
//!
//! Conditional BPF jumps reach 255 instructions; longer ones go through a
//! copy of the target `ret` or a `ja` placed right after the jump (see the
//! `bpf` module). The program is limited to the kernel's 4096 instructions;
//! a profile that needs more is an error.

mod bpf;
mod compile;
mod kernel;
pub mod notify;
mod syscalls;

use oci_spec::runtime::{Arch, LinuxSeccomp};
use thiserror::Error;

pub use kernel::install;

/// The actions berth accepts (OCI names, sorted).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument comparison operators berth accepts (OCI names, sorted).
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures a profile may list (besides `SCMP_ARCH_NATIVE`), sorted.
pub const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"];

/// The filter flags berth knows (OCI names). Whether the running kernel has
/// each: [`flag_available`].
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Whether the running kernel accepts filter flag `name` (one of [`FLAGS`]);
/// `false` for a name berth does not know.
pub fn flag_available(name: &str) -> bool {
    let bits = match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
        // The kernel only takes it together with NEW_LISTENER.
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => {
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        }
        _ => return false,
    };
    kernel::flag_bit_available(bits as u32)
}

/// Whether the running kernel knows action `name` (one of [`ACTIONS`]);
/// `false` for a name berth does not know.
pub fn action_available(name: &str) -> bool {
    let base = match name {
        "SCMP_ACT_ALLOW" => libc::SECCOMP_RET_ALLOW,
        "SCMP_ACT_ERRNO" => libc::SECCOMP_RET_ERRNO,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => libc::SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => libc::SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_LOG" => libc::SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => libc::SECCOMP_RET_USER_NOTIF,
        "SCMP_ACT_TRACE" => libc::SECCOMP_RET_TRACE,
        "SCMP_ACT_TRAP" => libc::SECCOMP_RET_TRAP,
        _ => return false,
    };
    kernel::action_base_available(base)
}

/// The number of syscall `name` on `arch` (x32 numbers include
/// `__X32_SYSCALL_BIT`), from the same tables the compiler uses. `None` for
/// a name the architecture lacks or an architecture berth does not filter.
pub fn syscall_number(arch: Arch, name: &str) -> Option<u32> {
    let abi = match arch {
        Arch::ScmpArchNative | Arch::ScmpArchX86_64 => compile::Abi::X86_64,
        Arch::ScmpArchX86 => compile::Abi::X86,
        Arch::ScmpArchX32 => compile::Abi::X32,
        _ => return None,
    };
    compile::syscall_number(abi, name)
}

/// A compiled profile.
#[derive(Debug)]
pub struct Compiled {
    /// The filter to [`install`].
    pub filter: Filter,
    /// Parts of the profile that have no effect (unknown syscall names, a
    /// `listenerPath` without NOTIFY rules, ...), one line each, with the
    /// JSON path.
    pub warnings: Vec<String>,
}

/// A seccomp filter ready to load.
#[derive(Clone)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2), including `NEW_LISTENER`
    /// when [`Filter::notify`] is set.
    pub flags: u32,
    /// Whether some rule uses `SCMP_ACT_NOTIFY`: [`install`] then returns the
    /// listener fd, which the runtime hands to the profile's `listenerPath`.
    pub notify: bool,
}

impl Filter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    /// Never true for a compiled filter; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }

    /// The program, as the kernel receives it.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.prog
    }

    /// What the filter returns (`SECCOMP_RET_*` with data) for one syscall,
    /// computed by a small classic-BPF interpreter instead of the kernel.
    /// For tests and fuzzing: it shows every branch of a program without
    /// loading it. `None` only for a malformed program, which the compiler
    /// never produces.
    pub fn evaluate(&self, arch: u32, nr: u32, args: [u64; 6]) -> Option<u32> {
        bpf::evaluate(&self.prog, nr, arch, 0, &args)
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.prog.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .finish()
    }
}

/// `AUDIT_ARCH_X86_64`, the `seccomp_data.arch` of x86_64 and x32 syscalls.
pub const AUDIT_ARCH_X86_64: u32 = compile::AUDIT_ARCH_X86_64;
/// `AUDIT_ARCH_I386`, the `seccomp_data.arch` of x86 syscalls.
pub const AUDIT_ARCH_I386: u32 = compile::AUDIT_ARCH_I386;

/// Why a profile cannot be compiled: one line, naming the JSON path.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("{path}: architecture {arch} is not supported by berth (supported: SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_NATIVE)")]
    UnsupportedArch { path: String, arch: &'static str },
    #[error("{path}: argument index {index} is out of range (a syscall has arguments 0 to 5)")]
    ArgIndex { path: String, index: usize },
    #[error("{path}: empty syscall name")]
    EmptyName { path: String },
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action (every syscall would wait for the listener; runc refuses it too)")]
    NotifyDefault,
    #[error("{path}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, the socket the notification fd is sent to")]
    NotifyWithoutListener { path: String },
    #[error("{path}: {flag} is not supported by the running kernel")]
    FlagUnsupported { path: String, flag: &'static str },
    #[error("{path}: {action} is not supported by the running kernel")]
    ActionUnsupported { path: String, action: &'static str },
    #[error("{path}: {value} is out of range for {action} (at most {max})")]
    ReturnValueRange {
        path: String,
        value: u32,
        action: &'static str,
        max: u32,
    },
    #[error("linux.seccomp: the filter needs at least {len} BPF instructions, more than the kernel's limit of 4096")]
    TooLong { len: usize },
    #[error("linux.seccomp: berth builds seccomp filters on x86_64 hosts only")]
    UnsupportedHost,
    #[error("linux.seccomp: internal error while generating the filter: {0}")]
    Internal(&'static str),
}

/// Compiles an OCI `linux.seccomp` object (see the crate documentation for
/// the semantics). Probes the running kernel for the flags and actions the
/// profile uses.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    compile::generate(compile::resolve(s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        for t in [syscalls::X86_64, syscalls::X86, syscalls::X32] {
            for w in t.windows(2) {
                assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
            }
        }
    }

    #[test]
    fn tables_agree_with_libc() {
        let x86_64 = |n| syscall_number(Arch::ScmpArchX86_64, n).map(i64::from);
        assert_eq!(x86_64("getppid"), Some(libc::SYS_getppid));
        assert_eq!(x86_64("clone3"), Some(libc::SYS_clone3));
        assert_eq!(x86_64("openat2"), Some(libc::SYS_openat2));
        assert_eq!(x86_64("mseal"), Some(462));
        assert_eq!(x86_64("open_tree_attr"), Some(467));
        assert_eq!(x86_64("map_shadow_stack"), Some(453));
        assert_eq!(x86_64("socketcall"), None);
        let x86 = |n| syscall_number(Arch::ScmpArchX86, n);
        assert_eq!(x86("getppid"), Some(64));
        assert_eq!(x86("socketcall"), Some(102));
        assert_eq!(x86("socket"), Some(359));
        assert_eq!(x86("cachestat"), Some(451));
        assert_eq!(x86("map_shadow_stack"), None);
        let x32 = |n| syscall_number(Arch::ScmpArchX32, n);
        assert_eq!(x32("getppid"), Some(0x4000_0000 | 110));
        assert_eq!(x32("rt_sigaction"), Some(0x4000_0000 | 512));
        assert_eq!(x32("futex_wake"), Some(0x4000_0000 | 454));
        assert_eq!(x32("map_shadow_stack"), None);
        assert_eq!(syscall_number(Arch::ScmpArchAarch64, "read"), None);
    }
}
