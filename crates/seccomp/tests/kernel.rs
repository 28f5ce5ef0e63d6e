//! Compiled filters loaded into the real kernel.
//!
//! Each test forks a child. The test process is multithreaded, so the child
//! does only async-signal-safe work: it sets no_new_privs, installs the
//! filter with `berth_seccomp::install` (which is built for exactly that
//! situation), makes raw syscalls and `_exit`s with a code the test checks.
//! Children are always reaped, and killed first if a test fails early.

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use berth_seccomp::notify::{self, Response};
use berth_seccomp::{compile, install, Filter, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
use serde_json::{json, Value};

const X32_BIT: i64 = 0x4000_0000;
/// getppid on x86 (i386).
const X86_GETPPID: u32 = 64;

fn filter(v: Value) -> Filter {
    let s = serde_json::from_value(v).expect("test profile parses");
    compile(&s).expect("profile compiles").filter
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exit(i32),
    Signal(i32),
}

/// A forked child, killed and reaped on drop unless waited for.
struct Child(libc::pid_t);

impl Child {
    fn wait(mut self) -> Outcome {
        let pid = std::mem::replace(&mut self.0, 0);
        wait_pid(pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
            wait_pid(self.0);
        }
    }
}

fn wait_pid(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR)
        );
    }
    if libc::WIFEXITED(status) {
        Outcome::Exit(libc::WEXITSTATUS(status))
    } else {
        Outcome::Signal(libc::WTERMSIG(status))
    }
}

/// Exit codes of the child harness itself.
const NNP_FAILED: i32 = 120;
const INSTALL_FAILED: i32 = 121;

/// Forks; the child sets no_new_privs, installs `f` and exits with
/// `body(listener)`. `body` must be async-signal-safe (raw syscalls only).
fn spawn(f: &Filter, body: impl Fn(Option<&OwnedFd>) -> i32) -> Child {
    // SAFETY: the child runs only async-signal-safe code (prctl, seccomp,
    // raw syscalls, _exit) and never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(NNP_FAILED);
            }
            let code = match install(f) {
                Ok(listener) => body(listener.as_ref()),
                Err(_) => INSTALL_FAILED,
            };
            libc::_exit(code);
        }
    }
    Child(pid)
}

fn run(f: &Filter, body: impl Fn(Option<&OwnedFd>) -> i32) -> Outcome {
    spawn(f, body).wait()
}

/// A raw syscall through libc: the result, or -errno.
fn sys(nr: i64, args: [u64; 6]) -> i64 {
    // SAFETY: the tests only make syscalls whose arguments are not pointers
    // the kernel writes through (or are null).
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if r == -1 {
        // SAFETY: errno of this thread.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        r
    }
}

/// An x86 (i386) syscall through `int 0x80` from this 64-bit process.
fn int80(nr: u32, a: u32, b: u32) -> i32 {
    let ret: u64;
    // SAFETY: a compat syscall with register arguments; rbx is LLVM's, so it
    // is swapped in and out around the call.
    unsafe {
        asm!(
            "xchg rbx, {a}",
            "int 0x80",
            "xchg rbx, {a}",
            a = inout(reg) u64::from(a) => _,
            inlateout("rax") u64::from(nr) => ret,
            in("rcx") u64::from(b),
            in("rdx") 0u64,
            in("rsi") 0u64,
            in("rdi") 0u64,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    ret as u32 as i32
}

fn allow_all_but(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
}

#[test]
fn denied_syscall_fails_with_the_errno_asked_for() {
    let f = filter(allow_all_but(json!([
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOMSG},
        {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO"}]))); // EPERM
    let out = run(&f, |_| {
        let ppid = sys(libc::SYS_getppid, [0; 6]);
        let pgrp = sys(libc::SYS_getpgrp, [0; 6]);
        let pid = sys(libc::SYS_getpid, [0; 6]);
        if ppid != -i64::from(libc::ENOMSG) {
            return 1;
        }
        if pgrp != -i64::from(libc::EPERM) {
            return 2;
        }
        if pid <= 0 {
            return 3;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

#[test]
fn default_errno_ret_and_enosys_above_the_profile() {
    // Only what the child needs is allowed; the highest listed number is
    // exit_group (231).
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::ENOTSUP,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["exit_group", "exit", "getppid"], "action": "SCMP_ACT_ALLOW"}]}),
    );
    let out = run(&f, |_| {
        if sys(libc::SYS_getppid, [0; 6]) <= 0 {
            return 1;
        }
        if sys(libc::SYS_getpid, [0; 6]) != -i64::from(libc::ENOTSUP) {
            return 2;
        }
        // clone3 (435) is above the profile: ENOSYS, so libc would fall back.
        if sys(libc::SYS_clone3, [0; 6]) != -i64::from(libc::ENOSYS) {
            return 3;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

/// For each operator: a rule on getppid with a 64-bit value, and arguments
/// on either side of it, in the high and the low word. getppid ignores its
/// arguments, but the filter sees the raw registers.
#[test]
fn argument_filters_hit_only_matching_arguments() {
    const V: u64 = 0x0000_0001_8000_0005;
    /// Operator, value, valueTwo, and (argument, whether the rule hits).
    type Case = (&'static str, u64, u64, &'static [(u64, bool)]);
    let cases: &[Case] = &[
        (
            "SCMP_CMP_EQ",
            V,
            0,
            &[
                (V, true),
                (V & 0xffff_ffff, false),
                (V + (1 << 32), false),
                (V + 1, false),
            ],
        ),
        (
            "SCMP_CMP_NE",
            V,
            0,
            &[
                (V, false),
                (V & 0xffff_ffff, true),
                (V ^ (1 << 40), true),
                (V - 1, true),
            ],
        ),
        (
            "SCMP_CMP_LT",
            V,
            0,
            &[
                (V - 1, true),
                (V, false),
                (V + 1, false),
                (0xffff_ffff, true),
                (2 << 32, false),
                (1 << 32 | 0x8000_0004, true),
            ],
        ),
        (
            "SCMP_CMP_LE",
            V,
            0,
            &[
                (V - 1, true),
                (V, true),
                (V + 1, false),
                (0xffff_ffff_ffff, false),
                (0, true),
            ],
        ),
        (
            "SCMP_CMP_GT",
            V,
            0,
            &[
                (V - 1, false),
                (V, false),
                (V + 1, true),
                (2 << 32, true),
                (0xffff_ffff, false),
                (u64::MAX, true),
            ],
        ),
        (
            "SCMP_CMP_GE",
            V,
            0,
            &[
                (V - 1, false),
                (V, true),
                (V + 1, true),
                (1 << 32 | 0x8000_0006, true),
                (1 << 32 | 5, false),
            ],
        ),
        // (arg & 0xf0000000_0000000f) == 0x10000000_00000005
        (
            "SCMP_CMP_MASKED_EQ",
            0xf000_0000_0000_000f,
            0x1000_0000_0000_0005,
            &[
                (0x1000_0000_0000_0005, true),
                (0x1fff_ffff_ffff_fff5, true),
                (0x2000_0000_0000_0005, false),
                (0x1000_0000_0000_0006, false),
                (5, false),
            ],
        ),
    ];
    for (op, value, value_two, probes) in cases {
        let f = filter(allow_all_but(
            json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EBADMSG,
            "args": [{"index": 3, "value": value, "valueTwo": value_two, "op": op}]}]),
        ));
        let out = run(&f, |_| {
            for (i, (arg, hit)) in probes.iter().enumerate() {
                let r = sys(libc::SYS_getppid, [0, 0, 0, *arg, 0, 0]);
                let denied = r == -i64::from(libc::EBADMSG);
                if denied != *hit || (!denied && r <= 0) {
                    return 10 + i as i32;
                }
            }
            0
        });
        assert_eq!(out, Outcome::Exit(0), "{op}: exit 10+i = probe i disagrees");
    }
}

#[test]
fn conditions_on_different_arguments_are_anded() {
    let f = filter(allow_all_but(
        json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
        "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
                 {"index": 5, "value": 1u64 << 63, "op": "SCMP_CMP_GE"}]}]),
    ));
    let out = run(&f, |_| {
        let eperm = -i64::from(libc::EPERM);
        if sys(libc::SYS_getppid, [7, 0, 0, 0, 0, 1 << 63]) != eperm {
            return 1;
        }
        if sys(libc::SYS_getppid, [7, 0, 0, 0, 0, 5]) <= 0 {
            return 2;
        }
        if sys(libc::SYS_getppid, [8, 0, 0, 0, 0, u64::MAX]) <= 0 {
            return 3;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

#[test]
fn three_architectures_in_one_filter() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
            "args": [{"index": 0, "value": 0x1_0000_0002u64, "op": "SCMP_CMP_EQ"}]}]}));
    let out = run(&f, |_| {
        let exdev = -i64::from(libc::EXDEV);
        // x86_64: a 64-bit comparison.
        if sys(libc::SYS_getppid, [0x1_0000_0002, 0, 0, 0, 0, 0]) != exdev {
            return 1;
        }
        if sys(libc::SYS_getppid, [2, 0, 0, 0, 0, 0]) <= 0 {
            return 2;
        }
        if sys(libc::SYS_getpid, [0; 6]) <= 0 {
            return 3;
        }
        // x86: the low word only (the value is truncated, as libseccomp does).
        if int80(X86_GETPPID, 2, 0) != -libc::EXDEV {
            return 4;
        }
        if int80(X86_GETPPID, 3, 0) <= 0 {
            return 5;
        }
        // x32: its own rule (this kernel has no x32 ABI, so an allowed x32
        // call fails with ENOSYS after the filter).
        if sys(X32_BIT | libc::SYS_getppid, [2, 0, 0, 0, 0, 0]) != exdev {
            return 6;
        }
        if sys(X32_BIT | libc::SYS_getppid, [3, 0, 0, 0, 0, 0]) == exdev {
            return 7;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

#[test]
fn x86_syscall_is_killed_unless_x86_is_listed() {
    let rule =
        json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EUCLEAN}]);
    let with = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": rule}));
    let out = run(&with, |_| {
        if int80(X86_GETPPID, 0, 0) != -libc::EUCLEAN {
            return 1;
        }
        // x86 getpid (20) is not in the rules: allowed.
        if int80(20, 0, 0) <= 0 {
            return 2;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));

    let without = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rule}));
    let out = run(&without, |_| {
        int80(20, 0, 0);
        0
    });
    assert_eq!(out, Outcome::Signal(libc::SIGSYS), "bad architecture kills");
}

/// Without x32 in the filter an x32 syscall number must not reach the
/// x86_64 rules (nor the default ALLOW): it is a bad architecture.
#[test]
fn x32_syscall_does_not_pass_x86_64_rules() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []}));
    let out = run(&f, |_| {
        sys(X32_BIT | libc::SYS_getpid, [0; 6]);
        0
    });
    assert_eq!(out, Outcome::Signal(libc::SIGSYS));
}

#[test]
fn kill_process_kill_thread_and_trap() {
    for (action, want) in [
        ("SCMP_ACT_KILL_PROCESS", Outcome::Signal(libc::SIGSYS)),
        ("SCMP_ACT_KILL_THREAD", Outcome::Signal(libc::SIGSYS)),
        ("SCMP_ACT_KILL", Outcome::Signal(libc::SIGSYS)),
        ("SCMP_ACT_TRAP", Outcome::Signal(libc::SIGSYS)),
    ] {
        let f = filter(allow_all_but(
            json!([{"names": ["getppid"], "action": action}]),
        ));
        let out = run(&f, |_| {
            sys(libc::SYS_getppid, [0; 6]);
            0
        });
        assert_eq!(out, want, "{action} in a single-threaded process");
    }
}

/// In a process with two threads, KILL_THREAD ends only the thread that made
/// the call; KILL_PROCESS ends them all.
#[test]
fn kill_thread_spares_the_other_threads() {
    for (action, want) in [
        ("SCMP_ACT_KILL_THREAD", Outcome::Exit(42)),
        ("SCMP_ACT_KILL", Outcome::Exit(42)),
        ("SCMP_ACT_KILL_PROCESS", Outcome::Signal(libc::SIGSYS)),
    ] {
        let f = filter(allow_all_but(
            json!([{"names": ["getppid"], "action": action}]),
        ));
        let out = run(&f, |_| {
            // SAFETY: raw clone of a thread on a stack of its own (this
            // forked child's copy of the static), see raw_thread.
            unsafe { raw_thread_calls_getppid_then_waits() }
        });
        assert_eq!(out, want, "{action}");
    }
}

#[repr(C, align(16))]
struct Stack([u8; 64 * 1024]);
static mut THREAD_STACK: Stack = Stack([0; 64 * 1024]);
/// Cleared by the kernel (CLONE_CHILD_CLEARTID) when the thread ends.
static THREAD_ALIVE: AtomicU32 = AtomicU32::new(0);

extern "C" fn thread_main() -> ! {
    sys(libc::SYS_getppid, [0; 6]);
    // Reached only if the filter let the call through.
    // SAFETY: ends this thread only.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!()
}

/// Starts a thread (raw clone, sharing everything) that calls getppid, waits
/// for it to end, then exits 42.
unsafe fn raw_thread_calls_getppid_then_waits() -> i32 {
    THREAD_ALIVE.store(1, Ordering::SeqCst);
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_CHILD_CLEARTID) as u64;
    let stack = std::ptr::addr_of_mut!(THREAD_STACK);
    let top = (stack as *mut u8).add(std::mem::size_of::<Stack>());
    let ctid = THREAD_ALIVE.as_ptr();
    let ret: i64;
    // SAFETY: clone(flags, stack, parent_tid, child_tid, tls). The new thread
    // starts on its own 16-byte aligned stack and calls thread_main, which
    // never returns; the parent continues with the thread id in rax.
    asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "call {f}",
        "ud2",
        "2:",
        f = in(reg) thread_main as extern "C" fn() -> !,
        inlateout("rax") libc::SYS_clone => ret,
        in("rdi") flags,
        in("rsi") top,
        in("rdx") 0u64,
        in("r10") ctid,
        in("r8") 0u64,
        out("rcx") _,
        out("r11") _,
    );
    if ret < 0 {
        return 90;
    }
    let timeout = libc::timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    while THREAD_ALIVE.load(Ordering::SeqCst) != 0 {
        libc::syscall(
            libc::SYS_futex,
            ctid,
            libc::FUTEX_WAIT,
            1u32,
            &timeout as *const libc::timespec,
        );
    }
    42
}

static TRAP_SIGNO: AtomicI32 = AtomicI32::new(0);
static TRAP_CODE: AtomicI32 = AtomicI32::new(0);
static TRAP_SYSCALL: AtomicI32 = AtomicI32::new(0);
static TRAP_ARCH: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigsys(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; for SIGSYS the _sigsys
    // member (call address, syscall number, arch) starts at offset 16.
    unsafe {
        let base = info as *const u8;
        TRAP_SIGNO.store(sig, Ordering::SeqCst);
        TRAP_CODE.store((*info).si_code, Ordering::SeqCst);
        TRAP_SYSCALL.store(*(base.add(24) as *const i32), Ordering::SeqCst);
        TRAP_ARCH.store(*(base.add(28) as *const u32), Ordering::SeqCst);
    }
}

#[test]
fn trap_delivers_sigsys_with_the_syscall() {
    let f = filter(allow_all_but(
        json!([{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]),
    ));
    // SAFETY: the handler is installed in the child only (fork copies the
    // disposition state from before the filter); sigaction is
    // async-signal-safe.
    let out = run(&f, |_| unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return 1;
        }
        sys(libc::SYS_getppid, [0; 6]);
        const SYS_SECCOMP: i32 = 1;
        if TRAP_SIGNO.load(Ordering::SeqCst) != libc::SIGSYS {
            return 2;
        }
        if TRAP_CODE.load(Ordering::SeqCst) != SYS_SECCOMP {
            return 3;
        }
        if TRAP_SYSCALL.load(Ordering::SeqCst) != libc::SYS_getppid as i32 {
            return 4;
        }
        if TRAP_ARCH.load(Ordering::SeqCst) != AUDIT_ARCH_X86_64 {
            return 5;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

#[test]
fn log_allows_and_flags_are_accepted() {
    for flags in [
        json!(["SECCOMP_FILTER_FLAG_LOG"]),
        json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
        json!([
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_TSYNC"
        ]),
        json!([]),
    ] {
        let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags,
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}));
        let out = run(&f, |_| {
            if sys(libc::SYS_getppid, [0; 6]) <= 0 {
                return 1;
            }
            0
        });
        assert_eq!(out, Outcome::Exit(0), "flags {flags}");
    }
}

/// Installing needs no_new_privs (or CAP_SYS_ADMIN): the error comes back
/// as the kernel's errno. Run with CAP_SYS_ADMIN dropped from the child's
/// effective set to see it.
#[test]
fn install_reports_the_kernels_error() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    // SAFETY: as in spawn, but without no_new_privs and with the capability
    // dropped through capset, a raw syscall.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            #[repr(C)]
            #[derive(Clone, Copy)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let mut h = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut d = [Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
                libc::_exit(1);
            }
            const CAP_SYS_ADMIN: u32 = 21;
            d[0].effective &= !(1 << CAP_SYS_ADMIN);
            if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
                libc::_exit(2);
            }
            let code = match install(&f) {
                Ok(_) => 3,
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => 0,
                Err(_) => 4,
            };
            libc::_exit(code);
        }
    }
    assert_eq!(Child(pid).wait(), Outcome::Exit(0));
}

/// NOTIFY: the child's getppid waits for the test, which reads the
/// notification and answers; the child sees the answer.
#[test]
fn notify_delivers_to_the_listener() {
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/unused.sock",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(f.notify);
    let mut pipe = [0; 2];
    // SAFETY: a pipe for the child to tell its listener's fd number.
    assert_eq!(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: both ends are new fds we own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let wr_fd = wr.as_raw_fd();
    let child = spawn(&f, |listener| {
        let Some(l) = listener else { return 1 };
        let n = l.as_raw_fd();
        // SAFETY: writes four bytes from a local.
        if unsafe { libc::write(wr_fd, (&n as *const i32).cast(), 4) } != 4 {
            return 2;
        }
        // Answered with a value, then an errno, then "continue".
        if sys(libc::SYS_getppid, [11, 0, 0, 0, 0, 0]) != 4242 {
            return 3;
        }
        if sys(libc::SYS_getppid, [22, 0, 0, 0, 0, 0]) != -i64::from(libc::ENOLINK) {
            return 4;
        }
        let real = sys(libc::SYS_getppid, [33, 0, 0, 0, 0, 0]);
        if real <= 0 || real == 4242 {
            return 5;
        }
        0
    });
    drop(wr);
    let mut n = 0i32;
    // SAFETY: reads four bytes into a local.
    let got = unsafe { libc::read(rd.as_raw_fd(), (&mut n as *mut i32).cast(), 4) };
    assert_eq!(got, 4, "the child reports its listener fd");
    let listener = take_fd(child.0, n);

    for (arg, response) in [
        (11, Response::Value(4242)),
        (22, Response::Errno(libc::ENOLINK)),
        (33, Response::Continue),
    ] {
        wait_readable(&listener, Duration::from_secs(10));
        let req = notify::recv(&listener).expect("notification");
        assert_eq!(req.nr, libc::SYS_getppid as i32);
        assert_eq!(req.arch, AUDIT_ARCH_X86_64);
        assert_eq!(req.args[0], arg);
        assert_eq!(req.pid, child.0 as u32);
        assert!(notify::id_valid(&listener, req.id).unwrap());
        notify::respond(&listener, req.id, response).expect("answer");
        // A second answer is refused: ENOENT once the child has taken the
        // first one, EINPROGRESS while it still has to.
        match notify::respond(&listener, req.id, Response::Value(0)) {
            Err(notify::NotifyError::Gone { .. }) => {}
            Err(notify::NotifyError::Send { source, .. })
                if source.raw_os_error() == Some(libc::EINPROGRESS) => {}
            other => panic!("second answer: {other:?}"),
        }
    }
    assert_eq!(child.wait(), Outcome::Exit(0));
    assert!(matches!(
        notify::respond(&listener, 1, Response::Errno(0)),
        Err(notify::NotifyError::BadErrno { .. })
    ));
}

/// The child's fd `n`, duplicated into this process with pidfd_getfd.
fn take_fd(pid: libc::pid_t, n: i32) -> OwnedFd {
    // SAFETY: pidfd_open and pidfd_getfd return new fds or -1.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0);
        assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(fd as i32)
    }
}

fn wait_readable(fd: &OwnedFd, timeout: Duration) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    assert_eq!(r, 1, "no notification within {timeout:?}");
}

/// A default-shaped profile (tests/data/default-like.json: ~350 names
/// allowed on three architectures, argument-filtered clone, personality and
/// socket, EPERM by default) loads and lets a normal process work while the
/// unlisted syscalls fail.
#[test]
fn default_shaped_profile_loads_and_enforces() {
    let v: Value =
        serde_json::from_str(include_str!("data/default-like.json")).expect("profile parses");
    let f = filter(v);
    let out = run(&f, |_| {
        let eperm = -i64::from(libc::EPERM);
        if sys(libc::SYS_getpid, [0; 6]) <= 0 || sys(libc::SYS_getppid, [0; 6]) <= 0 {
            return 1;
        }
        // mount(2), unshare(2): not listed → EPERM.
        if sys(libc::SYS_mount, [0; 6]) != eperm {
            return 2;
        }
        if sys(libc::SYS_unshare, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]) != eperm {
            return 3;
        }
        // socket: AF_UNIX allowed (a real fd), AF_VSOCK (40) refused.
        let s = sys(
            libc::SYS_socket,
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
        );
        if s < 0 {
            return 4;
        }
        sys(libc::SYS_close, [s as u64, 0, 0, 0, 0, 0]);
        if sys(libc::SYS_socket, [40, libc::SOCK_STREAM as u64, 0, 0, 0, 0]) != eperm {
            return 5;
        }
        // clone with a namespace flag: refused by the MASKED_EQ rule.
        if sys(
            libc::SYS_clone,
            [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0],
        ) != eperm
        {
            return 6;
        }
        // clone3: ENOSYS (its own rule), so libc falls back to clone.
        if sys(libc::SYS_clone3, [0; 6]) != -i64::from(libc::ENOSYS) {
            return 7;
        }
        // A syscall newer than the profile: ENOSYS.
        if sys(471, [0; 6]) != -i64::from(libc::ENOSYS) {
            return 8;
        }
        // x86 through int 0x80: allowed and denied the same way.
        if int80(20, 0, 0) <= 0 {
            return 9;
        }
        if int80(21, 0, 0) != -libc::EPERM {
            // x86 mount
            return 10;
        }
        0
    });
    assert_eq!(out, Outcome::Exit(0));
}

/// The x86 lookups the kernel tests rely on.
#[test]
fn x86_numbers() {
    use oci_spec::runtime::Arch;
    assert_eq!(
        berth_seccomp::syscall_number(Arch::ScmpArchX86, "getppid"),
        Some(X86_GETPPID)
    );
    assert_eq!(
        berth_seccomp::syscall_number(Arch::ScmpArchX86, "getpid"),
        Some(20)
    );
    assert_eq!(
        berth_seccomp::syscall_number(Arch::ScmpArchX86, "mount"),
        Some(21)
    );
    let _ = AUDIT_ARCH_I386;
}
