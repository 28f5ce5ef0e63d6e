//! `linux.seccomp` JSON → `oci_spec::runtime::LinuxSeccomp` →
//! `berth_seccomp::compile`.
//!
//! Beyond "no panic":
//! - an error is never `Internal` (a code generator bug), and errors and
//!   warnings are one line each (when the profile's strings are);
//! - a compiled program has 1 to 4096 instructions, only the ones seccomp
//!   accepts (loads of aligned `seccomp_data` words, AND, forward jumps, RET),
//!   every jump lands inside the program and the last instruction is a RET,
//!   so no path runs off the end;
//! - a syscall from an architecture outside the filter is killed;
//! - on x86_64 the program returns what the crate's documented semantics
//!   say, checked against the small model below for the syscalls the profile
//!   names, a few it doesn't, and arguments on both sides of every
//!   comparison value.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use berth_seccomp::{Filter, SeccompError, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// `AUDIT_ARCH_AARCH64`: an architecture no berth filter admits.
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_BIT: u32 = 0x4000_0000;
/// Most syscall numbers and argument vectors checked per input (the
/// interpreter is cheap, but a profile can name hundreds of syscalls).
const MAX_NRS: usize = 24;
const MAX_ARGS: usize = 24;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<LinuxSeccomp>(data) else {
        return;
    };
    // Without a backslash no JSON string holds a control character, so a
    // message quoting the profile has no reason to span lines.
    let plain = !data.contains(&b'\\');
    let one_line = |what: &str, msg: &str| {
        assert!(!msg.is_empty(), "empty {what}");
        assert!(
            !plain || !msg.contains('\n'),
            "{what} of several lines: {msg:?}"
        );
    };
    match berth_seccomp::compile(&profile) {
        Ok(compiled) => {
            check_program(&compiled.filter);
            check_semantics(&profile, &compiled.filter);
            for w in &compiled.warnings {
                one_line("warning", w);
            }
        }
        Err(SeccompError::Internal(what)) => panic!("internal compiler error: {what}"),
        Err(e) => one_line("error", &e.to_string()),
    }
});

// Classic BPF opcodes (linux/bpf_common.h) the seccomp verifier accepts and
// berth emits.
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// `sizeof(struct seccomp_data)`.
const SECCOMP_DATA_LEN: u32 = 64;

/// The structural checks the kernel's loader makes, and no path off the end.
fn check_program(f: &Filter) {
    let prog = f.instructions();
    assert!(!prog.is_empty(), "empty program");
    assert!(prog.len() <= 4096, "{} instructions", prog.len());
    assert_eq!(prog.len(), f.len());
    let last = prog.len() - 1;
    for (pc, insn) in prog.iter().enumerate() {
        let lands = |off: usize| {
            let to = pc + 1 + off;
            assert!(
                to <= last,
                "instruction {pc} ({:#x}) jumps to {to}, past the end ({last})",
                insn.code
            );
        };
        match insn.code {
            LD_W_ABS => assert!(
                insn.k < SECCOMP_DATA_LEN && insn.k % 4 == 0,
                "instruction {pc} loads offset {}",
                insn.k
            ),
            ALU_AND_K => {}
            JMP_JA => lands(insn.k as usize),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K => {
                lands(usize::from(insn.jt));
                lands(usize::from(insn.jf));
            }
            RET_K => {
                let action = insn.k & libc::SECCOMP_RET_ACTION_FULL;
                assert!(
                    RET_ACTIONS.contains(&action),
                    "instruction {pc} returns {:#x}",
                    insn.k
                );
            }
            code => panic!("instruction {pc} has opcode {code:#x}"),
        }
    }
    assert_eq!(prog[last].code, RET_K, "the last instruction is not a RET");
}

const RET_ACTIONS: &[u32] = &[
    libc::SECCOMP_RET_KILL_PROCESS,
    libc::SECCOMP_RET_KILL_THREAD,
    libc::SECCOMP_RET_TRAP,
    libc::SECCOMP_RET_ERRNO,
    libc::SECCOMP_RET_USER_NOTIF,
    libc::SECCOMP_RET_TRACE,
    libc::SECCOMP_RET_LOG,
    libc::SECCOMP_RET_ALLOW,
];

/// The return value of an action with its data, as the crate documents it:
/// ERRNO and TRACE carry `errnoRet` (EPERM when absent), others nothing.
fn action_value(a: LinuxSeccompAction, ret: Option<u32>) -> u32 {
    use LinuxSeccompAction::*;
    let data = ret.unwrap_or(libc::EPERM as u32);
    match a {
        ScmpActKill | ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        ScmpActTrap => libc::SECCOMP_RET_TRAP,
        ScmpActErrno => libc::SECCOMP_RET_ERRNO | data,
        ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
        ScmpActTrace => libc::SECCOMP_RET_TRACE | data,
        ScmpActLog => libc::SECCOMP_RET_LOG,
        ScmpActAllow => libc::SECCOMP_RET_ALLOW,
    }
}

/// One argument comparison on x86_64 (all 64 bits, unsigned).
#[derive(Clone, Copy, Debug)]
struct Cond {
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

impl Cond {
    fn holds(&self, args: &[u64; 6]) -> bool {
        use LinuxSeccompOperator::*;
        let (a, v) = (args[self.index], self.value);
        match self.op {
            ScmpCmpNe => a != v,
            ScmpCmpLt => a < v,
            ScmpCmpLe => a <= v,
            ScmpCmpEq => a == v,
            ScmpCmpGe => a >= v,
            ScmpCmpGt => a > v,
            // `value` is the mask, `valueTwo` (masked too) the datum.
            ScmpCmpMaskedEq => a & v == self.value_two & v,
        }
    }
}

/// One rule of a syscall after runc's splitting: conditions ANDed.
#[derive(Debug)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

/// The documented semantics on x86_64.
struct Model {
    default: u32,
    /// Every x86_64 number the profile names, with its rules in profile
    /// order; rules that do what the default does are left out, and an
    /// entry repeating an argument index becomes one rule per condition.
    rules: BTreeMap<u32, Vec<Rule>>,
}

impl Model {
    fn new(profile: &LinuxSeccomp) -> Self {
        let default = action_value(profile.default_action(), profile.default_errno_ret());
        let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
        for sc in profile.syscalls().iter().flatten() {
            let action = action_value(sc.action(), sc.errno_ret());
            let conds: Vec<Cond> = sc
                .args()
                .iter()
                .flatten()
                .map(|a| Cond {
                    index: a.index(),
                    op: a.op(),
                    value: a.value(),
                    value_two: a.value_two().unwrap_or(0),
                })
                .collect();
            let indices: BTreeSet<usize> = conds.iter().map(|c| c.index).collect();
            for nr in sc.names().iter().filter_map(|n| x86_64_nr(n)) {
                let list = rules.entry(nr).or_default();
                if action == default {
                    continue;
                }
                if indices.len() == conds.len() {
                    list.push(Rule {
                        conds: conds.clone(),
                        action,
                    });
                } else {
                    list.extend(conds.iter().map(|c| Rule {
                        conds: vec![*c],
                        action,
                    }));
                }
            }
        }
        Model { default, rules }
    }

    /// What the filter returns for a syscall the profile names: the first
    /// unconditional rule decides alone, else the first rule whose
    /// conditions all hold, else the default.
    fn named(&self, nr: u32, args: &[u64; 6]) -> u32 {
        let rules = self.rules.get(&nr).map_or(&[][..], |r| &r[..]);
        if let Some(r) = rules.iter().find(|r| r.conds.is_empty()) {
            return r.action;
        }
        rules
            .iter()
            .find(|r| r.conds.iter().all(|c| c.holds(args)))
            .map_or(self.default, |r| r.action)
    }
}

fn x86_64_nr(name: &str) -> Option<u32> {
    berth_seccomp::syscall_number(Arch::ScmpArchX86_64, name)
}

fn check_semantics(profile: &LinuxSeccomp, f: &Filter) {
    let eval = |arch, nr, args: [u64; 6]| {
        f.evaluate(arch, nr, args)
            .unwrap_or_else(|| panic!("no verdict for arch {arch:#x} nr {nr} args {args:?}"))
    };

    // Foreign architectures are killed; x86 runs whatever the program says.
    assert_eq!(
        eval(AUDIT_ARCH_AARCH64, 0, [0; 6]),
        libc::SECCOMP_RET_KILL_THREAD
    );
    eval(AUDIT_ARCH_I386, 102, [1, 0, 0, 0, 0, 0]);
    eval(AUDIT_ARCH_X86_64, X32_BIT | 39, [0; 6]);
    eval(AUDIT_ARCH_X86_64, u32::MAX, [0; 6]);

    let model = Model::new(profile);

    // The x86_64 numbers the profile names, and the argument vectors that
    // sit on both sides of each comparison value.
    let named = &model.rules;
    let mut args: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
    'outer: for sc in profile.syscalls().iter().flatten() {
        for a in sc.args().iter().flatten() {
            let i = a.index().min(5);
            for v in [
                a.value(),
                a.value().wrapping_sub(1),
                a.value().wrapping_add(1),
                a.value_two().unwrap_or(0),
                a.value() & a.value_two().unwrap_or(0),
            ] {
                if args.len() >= MAX_ARGS {
                    break 'outer;
                }
                let mut v6 = [0u64; 6];
                v6[i] = v;
                args.push(v6);
                // And the same value in every argument.
                args.push([v; 6]);
            }
        }
    }

    for &nr in named.keys().take(MAX_NRS) {
        for a in &args {
            let got = eval(AUDIT_ARCH_X86_64, nr, *a);
            let want = model.named(nr, a);
            assert_eq!(
                got, want,
                "x86_64 syscall {nr} with args {a:?}: the filter returns {got:#x}, the documented semantics {want:#x}"
            );
        }
    }

    // Syscalls the profile does not name: the default below the highest
    // named number; above it, the default or runc's ENOSYS stub.
    let highest = named.keys().next_back().copied();
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let unnamed = (0u32..)
        .step_by(37)
        .take_while(|n| *n < 1024)
        .filter(|n| !named.contains_key(n));
    for nr in unnamed {
        let got = eval(AUDIT_ARCH_X86_64, nr, [0; 6]);
        let below = highest.is_some_and(|h| nr < h);
        assert!(
            got == model.default || (!below && got == enosys),
            "x86_64 syscall {nr} (not in the profile, highest named {highest:?}): the filter returns {got:#x}, the default is {:#x}",
            model.default
        );
    }
}
