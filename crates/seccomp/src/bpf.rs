//! A tiny classic-BPF assembler: the handful of instructions a seccomp filter
//! needs, symbolic forward jumps, and the fix-up that keeps every conditional
//! jump within its 8-bit reach.
//!
//! Conditional jumps (`jeq`, `jgt`, `jge`, `jset`) encode their true and false
//! offsets in one byte each, so they reach at most 255 instructions ahead.
//! [`Program::assemble`] lays the program out, and wherever a target is
//! farther it inserts a stand-in right after the jump (which never falls
//! through, so nothing else can reach the new slot): a copy of the target when
//! the target is a `ret`, otherwise an unconditional `ja`, whose offset is 32
//! bits wide. A stand-in already in reach (an equal `ret`, or a `ja` to the
//! same place) is reused. Inserting only lengthens jumps, so the layout is
//! repeated until nothing is out of reach.

use libc::sock_filter;

// Opcode parts (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

/// The longest program the kernel loads (BPF_MAXINSNS).
pub(crate) const MAX_INSNS: usize = 4096;

/// Where a jump goes: a position named before it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// A conditional jump's test of the accumulator `A` against a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    /// `A == k`
    Eq,
    /// `A > k` (unsigned)
    Gt,
    /// `A >= k` (unsigned)
    Ge,
    /// `A & k != 0`
    Set,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Insn {
    /// `A = seccomp_data[off..off+4]`
    Load(u32),
    /// `A &= k`
    And(u32),
    /// `if A <cond> k goto t else goto f`
    Jump(Cond, u32, Label, Label),
    /// `goto l`
    Ja(Label),
    /// `return k`
    Ret(u32),
}

/// A program under construction: instructions plus label positions.
#[derive(Debug, Default)]
pub(crate) struct Program {
    insns: Vec<Insn>,
    /// Index of the instruction each label names (`None` until bound).
    labels: Vec<Option<usize>>,
}

/// Why a program could not be assembled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AsmError {
    /// More than [`MAX_INSNS`] instructions after long-jump fix-ups.
    TooLong(usize),
    /// A label never bound, or a jump backwards: a bug in the code generator.
    Internal(&'static str),
}

impl Program {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A new label, bound later with [`Program::bind`].
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Names the next instruction emitted.
    pub(crate) fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    pub(crate) fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Load(offset));
    }

    pub(crate) fn and(&mut self, k: u32) {
        self.insns.push(Insn::And(k));
    }

    pub(crate) fn jump(&mut self, cond: Cond, k: u32, t: Label, f: Label) {
        self.insns.push(Insn::Jump(cond, k, t, f));
    }

    pub(crate) fn ja(&mut self, l: Label) {
        self.insns.push(Insn::Ja(l));
    }

    pub(crate) fn ret(&mut self, k: u32) {
        self.insns.push(Insn::Ret(k));
    }

    fn pos(&self, l: Label) -> Result<usize, AsmError> {
        self.labels[l.0].ok_or(AsmError::Internal("a jump target was never placed"))
    }

    /// Inserts `insn` at `at`, moving every label at or after it along.
    fn insert(&mut self, at: usize, insn: Insn) -> Label {
        self.insns.insert(at, insn);
        for p in self.labels.iter_mut().flatten() {
            if *p >= at {
                *p += 1;
            }
        }
        self.labels.push(Some(at));
        Label(self.labels.len() - 1)
    }

    /// A label within conditional reach of the jump at `from` that behaves
    /// like `target`: the target itself, an equivalent instruction already in
    /// reach, or a stand-in inserted right after the jump.
    fn near(&mut self, from: usize, target: Label) -> Result<Label, AsmError> {
        let t = self.pos(target)?;
        if t <= from {
            return Err(AsmError::Internal("a jump goes backwards"));
        }
        if t - from - 1 <= 255 {
            return Ok(target);
        }
        let stand_in = match self.insns[t] {
            Insn::Ret(k) => Insn::Ret(k),
            _ => Insn::Ja(target),
        };
        let reach = (from + 1)..(from + 257).min(self.insns.len());
        for i in reach {
            let same = match (self.insns[i], stand_in) {
                (Insn::Ret(a), Insn::Ret(b)) => a == b,
                (Insn::Ja(a), Insn::Ja(b)) => self.pos(a)? == self.pos(b)?,
                _ => false,
            };
            if same {
                let l = self.label();
                self.labels[l.0] = Some(i);
                return Ok(l);
            }
        }
        Ok(self.insert(from + 1, stand_in))
    }

    /// Lays the program out and encodes it for the kernel.
    pub(crate) fn assemble(mut self) -> Result<Vec<sock_filter>, AsmError> {
        // Fix-ups only add instructions.
        if self.insns.len() > MAX_INSNS {
            return Err(AsmError::TooLong(self.insns.len()));
        }
        loop {
            // Back to front: a stand-in inserted for a late jump is then in
            // reach of the earlier jumps to the same place, which reuse it.
            // Insertions only move instructions after the current one.
            let mut changed = false;
            for i in (0..self.insns.len()).rev() {
                if let Insn::Jump(c, k, t, f) = self.insns[i] {
                    let nt = self.near(i, t)?;
                    let nf = self.near(i, f)?;
                    if nt != t || nf != f {
                        self.insns[i] = Insn::Jump(c, k, nt, nf);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
            if self.insns.len() > MAX_INSNS {
                return Err(AsmError::TooLong(self.insns.len()));
            }
        }
        if self.insns.len() > MAX_INSNS {
            return Err(AsmError::TooLong(self.insns.len()));
        }
        let mut out = Vec::with_capacity(self.insns.len());
        for (i, insn) in self.insns.iter().enumerate() {
            let rel = |l: Label| -> Result<usize, AsmError> {
                let p = self.pos(l)?;
                if p <= i {
                    return Err(AsmError::Internal("a jump goes backwards"));
                }
                Ok(p - i - 1)
            };
            let (code, jt, jf, k) = match *insn {
                Insn::Load(off) => (BPF_LD | BPF_W | BPF_ABS, 0, 0, off),
                Insn::And(k) => (BPF_ALU | BPF_AND | BPF_K, 0, 0, k),
                Insn::Ret(k) => (BPF_RET | BPF_K, 0, 0, k),
                Insn::Ja(l) => {
                    let off = u32::try_from(rel(l)?)
                        .map_err(|_| AsmError::Internal("a jump is too long"))?;
                    (BPF_JMP | BPF_JA, 0, 0, off)
                }
                Insn::Jump(c, k, t, f) => {
                    let op = match c {
                        Cond::Eq => BPF_JEQ,
                        Cond::Gt => BPF_JGT,
                        Cond::Ge => BPF_JGE,
                        Cond::Set => BPF_JSET,
                    };
                    let jt = u8::try_from(rel(t)?)
                        .map_err(|_| AsmError::Internal("a conditional jump is too long"))?;
                    let jf = u8::try_from(rel(f)?)
                        .map_err(|_| AsmError::Internal("a conditional jump is too long"))?;
                    (BPF_JMP | op | BPF_K, jt, jf, k)
                }
            };
            out.push(sock_filter { code, jt, jf, k });
        }
        Ok(out)
    }
}

/// Runs a program on one `seccomp_data` the way the kernel's classic-BPF
/// interpreter would, for the instructions this crate emits. Returns the
/// filter's verdict, or `None` for a malformed program (a jump past the end,
/// an instruction this crate never emits, running off the end).
///
/// Used by the tests to check every branch of a compiled program without
/// loading it; the kernel tests then show the kernel agrees.
pub fn evaluate(prog: &[sock_filter], nr: u32, arch: u32, ip: u64, args: &[u64; 6]) -> Option<u32> {
    let word = |off: u32| -> Option<u32> {
        Some(match off {
            0 => nr,
            4 => arch,
            8 => ip as u32,
            12 => (ip >> 32) as u32,
            16..=60 if off.is_multiple_of(4) => {
                let a = args[((off - 16) / 8) as usize];
                if (off - 16).is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => return None,
        })
    };
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = prog.get(pc)?;
        pc += 1;
        match insn.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => acc = word(insn.k)?,
            c if c == BPF_ALU | BPF_AND | BPF_K => acc &= insn.k,
            c if c == BPF_RET | BPF_K => return Some(insn.k),
            c if c == BPF_JMP | BPF_JA => pc = pc.checked_add(insn.k as usize)?,
            c if c & 0x07 == BPF_JMP => {
                let hit = match c & 0xf0 {
                    BPF_JEQ => acc == insn.k,
                    BPF_JGT => acc > insn.k,
                    BPF_JGE => acc >= insn.k,
                    BPF_JSET => acc & insn.k != 0,
                    _ => return None,
                };
                pc += usize::from(if hit { insn.jt } else { insn.jf });
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jumps_need_no_stand_in() {
        let mut p = Program::new();
        let yes = p.label();
        let no = p.label();
        p.load(0);
        p.jump(Cond::Eq, 7, yes, no);
        p.bind(yes);
        p.ret(1);
        p.bind(no);
        p.ret(2);
        let prog = p.assemble().unwrap();
        assert_eq!(prog.len(), 4);
        assert_eq!((prog[1].jt, prog[1].jf), (0, 1));
        assert_eq!(evaluate(&prog, 7, 0, 0, &[0; 6]), Some(1));
        assert_eq!(evaluate(&prog, 8, 0, 0, &[0; 6]), Some(2));
    }

    /// A jump over 600 instructions gets a stand-in; the far `ret` is copied,
    /// the far load is reached through `ja`.
    #[test]
    fn long_jumps_get_stand_ins() {
        for far_is_ret in [true, false] {
            let mut p = Program::new();
            let far = p.label();
            let near = p.label();
            p.load(0);
            p.jump(Cond::Eq, 1, far, near);
            p.bind(near);
            for _ in 0..600 {
                let next = p_next(&mut p);
                p.jump(Cond::Eq, 99, far, next);
            }
            p.ret(5);
            p.bind(far);
            if !far_is_ret {
                p.load(16);
            }
            p.ret(9);
            let prog = p.assemble().unwrap();
            assert_eq!(evaluate(&prog, 1, 0, 0, &[0; 6]), Some(9));
            assert_eq!(evaluate(&prog, 99, 0, 0, &[0; 6]), Some(9));
            assert_eq!(evaluate(&prog, 2, 0, 0, &[0; 6]), Some(5));
            // Stand-ins are shared: far fewer than one per jump.
            assert!(prog.len() < 600 + 20, "{} instructions", prog.len());
        }
    }

    fn p_next(p: &mut Program) -> Label {
        // A label bound to the instruction right after the jump being emitted.
        let l = p.label();
        p.labels[l.0] = Some(p.insns.len() + 1);
        l
    }

    #[test]
    fn too_long_is_reported() {
        let mut p = Program::new();
        for _ in 0..=MAX_INSNS {
            p.ret(0);
        }
        assert!(matches!(p.assemble(), Err(AsmError::TooLong(n)) if n == MAX_INSNS + 1));
    }

    #[test]
    fn unbound_label_is_internal_error() {
        let mut p = Program::new();
        let l = p.label();
        p.ja(l);
        assert!(matches!(p.assemble(), Err(AsmError::Internal(_))));
    }
}
