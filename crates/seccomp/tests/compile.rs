//! Compiling profiles: errors, warnings, flags, and what the generated
//! program returns for each kind of syscall, computed with the crate's BPF
//! interpreter (`Filter::evaluate`). `kernel.rs` loads the same kinds of
//! filters into the kernel.

use berth_seccomp::{
    compile, Compiled, SeccompError, AUDIT_ARCH_I386 as I386, AUDIT_ARCH_X86_64 as X64,
};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_THREAD: u32 = libc::SECCOMP_RET_KILL_THREAD;
const X32_BIT: u32 = 0x4000_0000;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

fn build(v: Value) -> Compiled {
    compile(&profile(v)).expect("profile compiles")
}

fn error(v: Value) -> String {
    compile(&profile(v))
        .expect_err("profile is refused")
        .to_string()
}

const NR_GETPPID: u32 = 110;
const NR_GETPID: u32 = 39;

#[test]
fn errors_name_the_json_path() {
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]})),
        "linux.seccomp.architectures[1]: architecture SCMP_ARCH_AARCH64 is not supported by berth (supported: SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_NATIVE)"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]})),
        "linux.seccomp.syscalls[1].args[1].index: argument index 6 is out of range (a syscall has arguments 0 to 5)"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]})),
        "linux.seccomp.syscalls[0].names[1]: empty syscall name"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/l.sock"})),
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action (every syscall would wait for the listener; runc refuses it too)"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})),
        "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, the socket the notification fd is sent to"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})),
        "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, the socket the notification fd is sent to"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4096}]})),
        "linux.seccomp.syscalls[0].errnoRet: 4096 is out of range for SCMP_ACT_ERRNO (at most 4095)"
    );
    assert_eq!(
        error(json!({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 65536})),
        "linux.seccomp.defaultErrnoRet: 65536 is out of range for SCMP_ACT_TRACE (at most 65535)"
    );
}

#[test]
fn too_long_a_program_is_refused() {
    // 400 syscalls with six 64-bit range conditions each need far more than
    // 4096 instructions.
    let names = default_like_names();
    let args: Vec<Value> = (0..6)
        .map(|i| json!({"index": i, "value": 1u64 << 40, "op": "SCMP_CMP_LT"}))
        .collect();
    let e = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": names, "action": "SCMP_ACT_ALLOW", "args": args}]}),
    ))
    .unwrap_err();
    let SeccompError::TooLong { len } = e else {
        panic!("expected TooLong, got {e}")
    };
    assert!(len > 4096);
    assert!(
        e.to_string()
            .starts_with("linux.seccomp: the filter needs at least "),
        "{e}"
    );
}

/// So many rules that they cannot fit whatever their shape: refused before
/// the program is built.
#[test]
fn too_many_rules_are_refused_early() {
    let args: Vec<Value> = (0..5)
        .map(|v| json!({"index": 0, "value": v, "op": "SCMP_CMP_EQ"}))
        .collect();
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": default_like_names(), "action": "SCMP_ACT_ALLOW", "args": args}]})))
    .unwrap_err();
    assert!(
        matches!(e, SeccompError::TooLong { len } if len > 4096),
        "{e}"
    );
}

/// The ~350 names of the default-shaped profile's allow list.
fn default_like_names() -> Vec<String> {
    let v: Value = serde_json::from_str(DEFAULT_LIKE).unwrap();
    v["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn warnings_for_what_has_no_effect() {
    let c = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["getppid", "no_such_call", "socketcall"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["no_such_call"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG", "errnoRet": 5},
            {"names": [], "action": "SCMP_ACT_ERRNO"}
        ]
    }));
    let w = c.warnings.join("\n");
    assert_eq!(
        c.warnings.len(),
        5,
        "one warning each, the unknown name once: {w}"
    );
    assert!(w.contains("linux.seccomp.syscalls[0].names[1]: syscall \"no_such_call\" is unknown on SCMP_ARCH_X86_64, SCMP_ARCH_X86; ignored"), "{w}");
    assert!(
        w.contains("linux.seccomp.listenerPath: no rule uses SCMP_ACT_NOTIFY"),
        "{w}"
    );
    assert!(w.contains("linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV has no effect without an SCMP_ACT_NOTIFY rule"), "{w}");
    assert!(
        w.contains(
            "linux.seccomp.syscalls[2].errnoRet: 5 is ignored: SCMP_ACT_LOG takes no return value"
        ),
        "{w}"
    );
    assert!(
        w.contains("linux.seccomp.syscalls[3].names: no syscall names"),
        "{w}"
    );
    // socketcall is x86-only: known on one listed architecture, no warning,
    // and it applies there.
    assert_eq!(
        c.filter.evaluate(I386, 102, [0; 6]),
        Some(errno(libc::EPERM))
    );
    assert!(!c.filter.notify);
    assert_eq!(
        c.filter.flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32,
        0
    );
}

#[test]
fn flags() {
    let flags = |v: Value| build(v).filter.flags;
    let spec = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
    let log = libc::SECCOMP_FILTER_FLAG_LOG as u32;
    let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    let killable = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;
    // Absent: runc's default, SPEC_ALLOW (this kernel has it).
    assert!(berth_seccomp::flag_available(
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
    ));
    assert_eq!(flags(json!({"defaultAction": "SCMP_ACT_ALLOW"})), spec);
    // Present but empty: none.
    assert_eq!(
        flags(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": []})),
        0
    );
    assert_eq!(
        flags(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]})),
        log,
        "TSYNC is accepted and not passed on"
    );
    let c = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/l",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(c.filter.notify);
    assert_eq!(c.filter.flags, listener | killable);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn tables_for_features() {
    for a in berth_seccomp::ACTIONS {
        assert!(berth_seccomp::action_available(a), "{a}");
        // Every listed action compiles, as a default (except NOTIFY) and in
        // a rule.
        let rule = build(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/l",
            "syscalls": [{"names": ["getppid"], "action": a}]}),
        );
        assert!(!rule.filter.is_empty());
        if *a != "SCMP_ACT_NOTIFY" {
            build(json!({"defaultAction": a}));
        }
    }
    assert!(!berth_seccomp::action_available("SCMP_ACT_FOO"));
    for f in berth_seccomp::FLAGS {
        assert!(berth_seccomp::flag_available(f), "{f}");
        build(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [f]}));
    }
    assert!(!berth_seccomp::flag_available("SECCOMP_FILTER_FLAG_FOO"));
    for op in berth_seccomp::OPERATORS {
        build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]}]}));
    }
    for arch in berth_seccomp::ARCHITECTURES {
        build(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]}));
    }
}

#[test]
fn architectures_and_abis() {
    // Nothing listed: x86_64 only. x86 and x32 syscalls are a bad
    // architecture (KILL_THREAD), -1 gets the default.
    let f = build(json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7}]}))
    .filter;
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0; 6]), Some(errno(7)));
    assert_eq!(
        f.evaluate(X64, NR_GETPID, [0; 6]),
        Some(libc::SECCOMP_RET_LOG)
    );
    assert_eq!(
        f.evaluate(X64, X32_BIT | NR_GETPPID, [0; 6]),
        Some(KILL_THREAD)
    );
    assert_eq!(
        f.evaluate(X64, X32_BIT | NR_GETPID, [0; 6]),
        Some(KILL_THREAD)
    );
    assert_eq!(
        f.evaluate(X64, u32::MAX, [0; 6]),
        Some(libc::SECCOMP_RET_LOG)
    );
    assert_eq!(f.evaluate(I386, 64, [0; 6]), Some(KILL_THREAD));
    assert_eq!(f.evaluate(0xc000_00b7, 0, [0; 6]), Some(KILL_THREAD));

    // x86 alone still keeps x86_64 (libseccomp's native architecture).
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"], "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7}]}))
    .filter;
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0; 6]), Some(errno(7)));
    assert_eq!(f.evaluate(I386, 64, [0; 6]), Some(errno(7)));
    assert_eq!(f.evaluate(I386, 20, [0; 6]), Some(ALLOW));
    assert_eq!(
        f.evaluate(X64, X32_BIT | NR_GETPPID, [0; 6]),
        Some(KILL_THREAD)
    );

    // All three: x32 numbers reach x32 rules only.
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
        {"names": ["rt_sigaction"], "action": "SCMP_ACT_ERRNO", "errnoRet": 8}]}))
    .filter;
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0; 6]), Some(errno(7)));
    assert_eq!(
        f.evaluate(X64, X32_BIT | NR_GETPPID, [0; 6]),
        Some(errno(7))
    );
    assert_eq!(f.evaluate(I386, 64, [0; 6]), Some(errno(7)));
    // rt_sigaction: 13 on x86_64, 512 on x32 (13 is not an x32 syscall), 174 on x86.
    assert_eq!(f.evaluate(X64, 13, [0; 6]), Some(errno(8)));
    assert_eq!(f.evaluate(X64, X32_BIT | 512, [0; 6]), Some(errno(8)));
    assert_eq!(f.evaluate(X64, X32_BIT | 13, [0; 6]), Some(ALLOW));
    assert_eq!(f.evaluate(X64, 512, [0; 6]), Some(ALLOW));
    assert_eq!(f.evaluate(I386, 174, [0; 6]), Some(errno(8)));

    // A name only x86 has applies there and nowhere else.
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": [
        {"names": ["waitpid"], "action": "SCMP_ACT_ERRNO"}]}))
    .filter;
    assert_eq!(f.evaluate(I386, 7, [0; 6]), Some(errno(libc::EPERM)));
    assert_eq!(f.evaluate(X64, 7, [0; 6]), Some(ALLOW));
}

#[test]
fn x86_socketcall_and_ipc_multiplexers() {
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"], "syscalls": [
        {"names": ["socket", "recv"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9},
        {"names": ["shmat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 10}]}))
    .filter;
    // socket(2) directly (359) and through socketcall(SYS_SOCKET = 1).
    assert_eq!(f.evaluate(I386, 359, [0; 6]), Some(errno(9)));
    assert_eq!(f.evaluate(I386, 102, [1, 0, 0, 0, 0, 0]), Some(errno(9)));
    // recv has no direct x86 syscall: only socketcall(SYS_RECV = 10).
    assert_eq!(f.evaluate(I386, 102, [10, 0, 0, 0, 0, 0]), Some(errno(9)));
    assert_eq!(f.evaluate(I386, 102, [3, 0, 0, 0, 0, 0]), Some(ALLOW));
    // shmat (397) and ipc(SHMAT = 21).
    assert_eq!(f.evaluate(I386, 397, [0; 6]), Some(errno(10)));
    assert_eq!(f.evaluate(I386, 117, [21, 0, 0, 0, 0, 0]), Some(errno(10)));
    assert_eq!(f.evaluate(I386, 117, [22, 0, 0, 0, 0, 0]), Some(ALLOW));
    // x86_64 has neither multiplexer.
    assert_eq!(f.evaluate(X64, 41, [0; 6]), Some(errno(9)));
    assert_eq!(f.evaluate(X64, 102, [1, 0, 0, 0, 0, 0]), Some(ALLOW));
}

/// What a comparison means (libseccomp's semantics): unsigned, 64-bit on
/// x86_64; the low 32 bits of argument and value on x86.
fn expected(op: &str, arg: u64, value: u64, value_two: u64, wide: bool) -> bool {
    let narrow = |x: u64| if wide { x } else { x & 0xffff_ffff };
    let (a, v, v2) = (narrow(arg), narrow(value), narrow(value_two));
    match op {
        "SCMP_CMP_NE" => a != v,
        "SCMP_CMP_LT" => a < v,
        "SCMP_CMP_LE" => a <= v,
        "SCMP_CMP_EQ" => a == v,
        "SCMP_CMP_GE" => a >= v,
        "SCMP_CMP_GT" => a > v,
        "SCMP_CMP_MASKED_EQ" => a & v == v2 & v,
        _ => unreachable!(),
    }
}

/// Values around the interesting 32-bit boundaries of both halves.
fn interesting(seed: &mut u64) -> u64 {
    const HALVES: [u32; 8] = [
        0,
        1,
        2,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffe,
        0xffff_ffff,
        5,
    ];
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let r = *seed;
    match r % 4 {
        0 => r,
        _ => {
            let hi = HALVES[(r >> 8) as usize % HALVES.len()];
            let lo = HALVES[(r >> 16) as usize % HALVES.len()];
            (u64::from(hi) << 32) | u64::from(lo)
        }
    }
}

#[test]
fn every_operator_on_64_and_32_bits() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for op in berth_seccomp::OPERATORS {
        for _ in 0..40 {
            let value = interesting(&mut seed);
            let value_two = interesting(&mut seed);
            let index = (seed % 6) as usize;
            let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                    "args": [{"index": index, "value": value, "valueTwo": value_two, "op": op}]}]}))
            .filter;
            let probe = |arg: u64| {
                let mut args = [0xdead_beef_u64; 6];
                args[index] = arg;
                for (arch, nr, wide) in [
                    (X64, NR_GETPPID, true),
                    (I386, 64, false),
                    (X64, X32_BIT | NR_GETPPID, false),
                ] {
                    let want = if expected(op, arg, value, value_two, wide) {
                        errno(3)
                    } else {
                        ALLOW
                    };
                    assert_eq!(
                        f.evaluate(arch, nr, args),
                        Some(want),
                        "{op} value {value:#x} valueTwo {value_two:#x} arg{index} = {arg:#x} on arch {arch:#x} nr {nr:#x}"
                    );
                }
            };
            for arg in [
                value,
                value.wrapping_add(1),
                value.wrapping_sub(1),
                value ^ (1 << 32),
                value ^ 1,
                value_two,
                value & value_two,
            ] {
                probe(arg);
            }
            for _ in 0..20 {
                probe(interesting(&mut seed));
            }
        }
    }
}

#[test]
fn conditions_and_or_split() {
    // Different indexes: ANDed.
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 2, "op": "SCMP_CMP_EQ"}]}]}))
    .filter;
    assert_eq!(
        f.evaluate(X64, NR_GETPPID, [1, 0, 2, 0, 0, 0]),
        Some(errno(1))
    );
    assert_eq!(f.evaluate(X64, NR_GETPPID, [1, 0, 3, 0, 0, 0]), Some(ALLOW));
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0, 0, 2, 0, 0, 0]), Some(ALLOW));
    // An index repeated: runc adds every condition as its own rule (ORed),
    // including the ones on other indexes.
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]}))
    .filter;
    for (args, hit) in [
        ([1, 0, 0, 0, 0, 0], true),
        ([5, 0, 0, 0, 0, 0], true),
        ([0, 9, 0, 0, 0, 0], true),
        ([2, 8, 0, 0, 0, 0], false),
    ] {
        let want = if hit { errno(1) } else { ALLOW };
        assert_eq!(f.evaluate(X64, NR_GETPPID, args), Some(want), "{args:?}");
    }
}

#[test]
fn several_rules_for_one_syscall() {
    // Conditional rules: first match in profile order, else the default.
    let f = build(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP",
         "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]}))
    .filter;
    assert_eq!(f.evaluate(X64, NR_GETPPID, [1, 1, 0, 0, 0, 0]), Some(ALLOW));
    assert_eq!(
        f.evaluate(X64, NR_GETPPID, [0, 1, 0, 0, 0, 0]),
        Some(libc::SECCOMP_RET_TRAP)
    );
    assert_eq!(
        f.evaluate(X64, NR_GETPPID, [0, 0, 0, 0, 0, 0]),
        Some(errno(1))
    );
    // An unconditional rule decides alone, wherever it is listed.
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL"}]}))
    .filter;
    assert_eq!(
        f.evaluate(X64, NR_GETPPID, [1, 0, 0, 0, 0, 0]),
        Some(errno(4))
    );
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0; 6]), Some(errno(4)));
    // A rule equal to the default is skipped, so it does not shadow a later
    // conditional one.
    let f = build(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}))
    .filter;
    assert_eq!(f.evaluate(X64, NR_GETPPID, [1, 0, 0, 0, 0, 0]), Some(ALLOW));
    assert_eq!(f.evaluate(X64, NR_GETPPID, [0; 6]), Some(errno(1)));
}

#[test]
fn actions_and_return_values() {
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 95,
        "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_KILL"},
        {"names": ["open"], "action": "SCMP_ACT_KILL_THREAD"},
        {"names": ["close"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["stat"], "action": "SCMP_ACT_TRAP"},
        {"names": ["fstat"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["lstat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
        {"names": ["poll"], "action": "SCMP_ACT_TRACE"},
        {"names": ["lseek"], "action": "SCMP_ACT_TRACE", "errnoRet": 1234},
        {"names": ["mmap"], "action": "SCMP_ACT_LOG"},
        {"names": ["exit_group"], "action": "SCMP_ACT_ALLOW"}]}),
    )
    .filter;
    let ret = |nr| f.evaluate(X64, nr, [0; 6]).unwrap();
    assert_eq!(ret(0), ALLOW);
    assert_eq!(ret(1), KILL_THREAD);
    assert_eq!(ret(2), KILL_THREAD);
    assert_eq!(ret(3), libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(ret(4), libc::SECCOMP_RET_TRAP);
    assert_eq!(ret(5), errno(libc::EPERM));
    assert_eq!(ret(6), errno(0));
    assert_eq!(ret(7), libc::SECCOMP_RET_TRACE | 1);
    assert_eq!(ret(8), libc::SECCOMP_RET_TRACE | 1234);
    assert_eq!(ret(9), libc::SECCOMP_RET_LOG);
    // Unlisted, below the highest listed number (exit_group, 231): the default.
    assert_eq!(ret(39), errno(95));
    // Above it: ENOSYS (runc's stub).
    assert_eq!(ret(232), errno(libc::ENOSYS));
    assert_eq!(ret(435), errno(libc::ENOSYS));
}

#[test]
fn enosys_stub_follows_runc() {
    let highest_is_getppid = |default: &str, archs: Value| {
        build(json!({"defaultAction": default, "architectures": archs,
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]}))
        .filter
    };
    // Not for a permissive default.
    for d in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
        let f = highest_is_getppid(d, json!(["SCMP_ARCH_X86_64"]));
        assert_ne!(
            f.evaluate(X64, 300, [0; 6]),
            Some(errno(libc::ENOSYS)),
            "{d}"
        );
    }
    // Only for the listed architectures: none listed, no stub.
    let f = highest_is_getppid("SCMP_ACT_KILL_PROCESS", json!([]));
    assert_eq!(
        f.evaluate(X64, 300, [0; 6]),
        Some(libc::SECCOMP_RET_KILL_PROCESS)
    );
    // Per ABI: each has its own highest number.
    let f = highest_is_getppid(
        "SCMP_ACT_KILL_PROCESS",
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    );
    let enosys = Some(errno(libc::ENOSYS));
    let kill = Some(libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(f.evaluate(X64, 111, [0; 6]), enosys);
    assert_eq!(f.evaluate(X64, 109, [0; 6]), kill);
    assert_eq!(f.evaluate(X64, X32_BIT | 111, [0; 6]), enosys);
    assert_eq!(f.evaluate(X64, X32_BIT | 109, [0; 6]), kill);
    assert_eq!(f.evaluate(I386, 65, [0; 6]), enosys);
    assert_eq!(f.evaluate(I386, 63, [0; 6]), kill);
    assert_eq!(
        f.evaluate(X64, NR_GETPPID, [0; 6]),
        Some(libc::SECCOMP_RET_TRAP)
    );
}

/// A profile shaped like the container engines' default ones: an allow list
/// of ~350 names on three architectures, a few argument-filtered entries,
/// EPERM by default. Every listed syscall is allowed on x86_64; unlisted
/// ones get EPERM; the program fits the kernel's limit.
#[test]
fn default_shaped_profile() {
    let names = default_like_names();
    assert!(names.len() >= 340, "{} names", names.len());
    let c = build(serde_json::from_str(DEFAULT_LIKE).unwrap());
    assert!(c.filter.len() <= 4096, "{} instructions", c.filter.len());
    // The arm-only names of the last entry are unknown everywhere here.
    assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
    assert!(
        c.warnings
            .iter()
            .all(|w| w.contains("is unknown on SCMP_ARCH_X86_64, SCMP_ARCH_X32, SCMP_ARCH_X86")),
        "{:#?}",
        c.warnings
    );
    for n in &names {
        if let Some(nr) = berth_seccomp::syscall_number(oci_spec::runtime::Arch::ScmpArchX86_64, n)
        {
            assert_eq!(c.filter.evaluate(X64, nr, [0; 6]), Some(ALLOW), "{n}");
        }
        if let Some(nr) = berth_seccomp::syscall_number(oci_spec::runtime::Arch::ScmpArchX86, n) {
            assert_eq!(c.filter.evaluate(I386, nr, [0; 6]), Some(ALLOW), "x86 {n}");
        }
    }
    for denied in [
        "mount",
        "umount2",
        "kexec_load",
        "init_module",
        "reboot",
        "bpf",
        "unshare",
    ] {
        let nr =
            berth_seccomp::syscall_number(oci_spec::runtime::Arch::ScmpArchX86_64, denied).unwrap();
        assert_eq!(
            c.filter.evaluate(X64, nr, [0; 6]),
            Some(errno(libc::EPERM)),
            "{denied}"
        );
    }
    // personality: allowed for the listed values only.
    assert_eq!(c.filter.evaluate(X64, 135, [0, 0, 0, 0, 0, 0]), Some(ALLOW));
    assert_eq!(
        c.filter.evaluate(X64, 135, [0x0040_0000, 0, 0, 0, 0, 0]),
        Some(errno(libc::EPERM))
    );
    // clone: allowed without namespace flags only.
    let newuser = libc::CLONE_NEWUSER as u64;
    assert_eq!(
        c.filter
            .evaluate(X64, 56, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
        Some(ALLOW)
    );
    assert_eq!(
        c.filter.evaluate(X64, 56, [newuser, 0, 0, 0, 0, 0]),
        Some(errno(libc::EPERM))
    );
    // clone3 answers ENOSYS so that libc falls back to clone.
    assert_eq!(
        c.filter.evaluate(X64, 435, [0; 6]),
        Some(errno(libc::ENOSYS))
    );
    // socket: any family except AF_VSOCK (40).
    assert_eq!(
        c.filter
            .evaluate(X64, 41, [libc::AF_INET as u64, 0, 0, 0, 0, 0]),
        Some(ALLOW)
    );
    assert_eq!(
        c.filter.evaluate(X64, 41, [40, 0, 0, 0, 0, 0]),
        Some(errno(libc::EPERM))
    );
    // Above every listed number: ENOSYS.
    assert_eq!(
        c.filter.evaluate(X64, 471, [0; 6]),
        Some(errno(libc::ENOSYS))
    );
}

pub const DEFAULT_LIKE: &str = include_str!("data/default-like.json");
