//! cgroup v2 device control: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE)
//! built from the device rules and attached to the container's cgroup.
//!
//! cgroup2 has no devices controller: the kernel runs the programs attached
//! to a cgroup (and its ancestors) on every open and mknod of a device node
//! and refuses the access unless each program returns 1. The program berth
//! builds gives the v1 list semantics: rules are read in order, and for each
//! access bit (m, r, w) the last rule that names the device and that bit
//! decides; a bit no rule names is denied. See docs/cgroups-v2-devices.md.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{CgroupError, DeviceRule};

// ---- eBPF instruction encoding (linux/bpf.h, linux/bpf_common.h) ----

const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;

const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;

const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;

const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;

const BPF_JEQ: u8 = 0x10;
const BPF_JSET: u8 = 0x40;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

// Values in access_type: (access << 16) | type.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Registers the program uses. R1 holds the context on entry, R0 the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Reg {
    R0 = 0,
    R1 = 1,
    /// The access bits still to decide.
    Access = 2,
    /// BPF_DEVCG_DEV_BLOCK or BPF_DEVCG_DEV_CHAR.
    Type = 3,
    Major = 4,
    Minor = 5,
}

/// One 8-byte eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst: dst as u8,
            src: src as u8,
            off,
            imm,
        }
    }

    /// The kernel's `struct bpf_insn`: code, dst_reg:4 | src_reg:4 (dst in
    /// the low nibble on little-endian), off, imm, in host byte order.
    fn encode(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

/// A forward-jump target, bound to a position later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// A program under construction: instructions, and jumps that wait for
/// their label's position.
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (index of a jump, its target)
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }

    /// `dst = *(u32 *)(R1 + off)`
    fn load_ctx(&mut self, dst: Reg, off: i16) {
        self.emit(Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, Reg::R1, off, 0));
    }

    /// `dst = src` (32 bits, upper half zeroed)
    fn mov32(&mut self, dst: Reg, src: Reg) {
        self.emit(Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0));
    }

    /// `dst &= imm` (32 bits)
    fn and32(&mut self, dst: Reg, imm: u32) {
        self.emit(Insn::new(
            BPF_ALU | BPF_AND | BPF_K,
            dst,
            Reg::R0,
            0,
            imm as i32,
        ));
    }

    /// `dst >>= imm` (32 bits, logical)
    fn rsh32(&mut self, dst: Reg, imm: u32) {
        self.emit(Insn::new(
            BPF_ALU | BPF_RSH | BPF_K,
            dst,
            Reg::R0,
            0,
            imm as i32,
        ));
    }

    /// `R0 = imm; exit`
    fn ret(&mut self, imm: i32) {
        self.emit(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            Reg::R0,
            Reg::R0,
            0,
            imm,
        ));
        self.emit(Insn::new(BPF_JMP | BPF_EXIT, Reg::R0, Reg::R0, 0, 0));
    }

    /// `if (u32)dst <op> imm goto target` (op: BPF_JEQ, BPF_JNE, BPF_JSET)
    fn jump32(&mut self, op: u8, dst: Reg, imm: u32, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.emit(Insn::new(
            BPF_JMP32 | op | BPF_K,
            dst,
            Reg::R0,
            0,
            imm as i32,
        ));
    }

    /// Resolve the jumps. Every jump goes forward, so the program ends.
    fn finish(mut self) -> Result<Vec<Insn>, String> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].ok_or("internal error: a jump to an unbound label")?;
            if target <= at {
                return Err("internal error: a backward jump".into());
            }
            let off = i16::try_from(target - at - 1)
                .map_err(|_| format!("{} rules make a jump too long for eBPF", self.insns.len()))?;
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

/// The access bits an access string ("rwm" subset) names.
fn access_bits(access: &str) -> Result<u32, String> {
    access.chars().try_fold(0, |bits, c| match c {
        'm' => Ok(bits | ACC_MKNOD),
        'r' => Ok(bits | ACC_READ),
        'w' => Ok(bits | ACC_WRITE),
        _ => Err(format!("access {access:?}: {c:?} is not one of r, w, m")),
    })
}

fn device_number(v: Option<i64>, what: &str) -> Result<Option<u32>, String> {
    v.map(|n| u32::try_from(n).map_err(|_| format!("{what} {n} is not a device number")))
        .transpose()
}

/// Build the program for `rules`.
///
/// The rules are emitted last first. `Access` starts as the requested bits;
/// a matching allow rule clears its bits (all cleared: allow), a matching
/// deny rule that names a bit still set denies. What is left when no rule
/// remains is denied. Rules before an `a` rule with all of `rwm` can never
/// decide anything, so they are not emitted.
fn program(rules: &[DeviceRule]) -> Result<Vec<Insn>, String> {
    let mut a = Asm::default();
    let deny = a.label();
    let allow = a.label();
    a.load_ctx(Reg::Access, CTX_ACCESS_TYPE);
    a.mov32(Reg::Type, Reg::Access);
    a.and32(Reg::Type, 0xffff);
    a.rsh32(Reg::Access, 16);
    a.load_ctx(Reg::Major, CTX_MAJOR);
    a.load_ctx(Reg::Minor, CTX_MINOR);
    for rule in rules.iter().rev() {
        let line = rule.line();
        let bits = access_bits(&rule.access).map_err(|e| format!("rule {line:?}: {e}"))?;
        let (kind, major, minor) = match rule.kind {
            'a' => (None, None, None),
            k @ ('b' | 'c') => (
                Some(if k == 'b' { DEV_BLOCK } else { DEV_CHAR }),
                device_number(rule.major, "major").map_err(|e| format!("rule {line:?}: {e}"))?,
                device_number(rule.minor, "minor").map_err(|e| format!("rule {line:?}: {e}"))?,
            ),
            k => return Err(format!("rule {line:?}: type {k:?} is not one of a, b, c")),
        };
        if bits == 0 {
            continue; // names no access: decides nothing
        }
        let next = a.label();
        if let Some(t) = kind {
            a.jump32(BPF_JNE, Reg::Type, t, next);
        }
        if let Some(m) = major {
            a.jump32(BPF_JNE, Reg::Major, m, next);
        }
        if let Some(m) = minor {
            a.jump32(BPF_JNE, Reg::Minor, m, next);
        }
        if rule.allow {
            a.and32(Reg::Access, !bits);
            a.jump32(BPF_JEQ, Reg::Access, 0, allow);
        } else {
            a.jump32(BPF_JSET, Reg::Access, bits, deny);
        }
        a.bind(next);
        if kind.is_none() && bits == ACC_ALL {
            break; // every device, every bit: decided here
        }
    }
    a.bind(deny);
    a.ret(0);
    // The verifier refuses code no path reaches: the allow exit only when
    // some rule jumps there.
    if a.fixups.iter().any(|&(_, l)| l == allow) {
        a.bind(allow);
        a.ret(1);
    }
    a.finish()
}

// ---- the bpf(2) system call ----

const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const BPF_PROG_DETACH: i32 = 9;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_PROG_QUERY: i32 = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The name berth gives its device programs, so a later `update` finds
/// (and replaces) only what berth attached.
const PROG_NAME: &[u8] = b"berth_dev";
/// No GPL-only helper is called, so the kernel accepts any license string.
const LICENSE: &CStr = c"Apache-2.0";

/// A `union bpf_attr`, filled field by field at the kernel's offsets. Its
/// size is below the kernel's; the kernel reads the rest as zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap())
    }
}

/// bpf(cmd, attr). The caller keeps every buffer the attr points to alive
/// (they are borrowed for the duration of the call by the functions below).
fn sys_bpf(cmd: i32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: attr is a valid, writable buffer of the size passed; the
    // pointers stored in it refer to buffers the calling function owns and
    // keeps alive until this call returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(r: i64) -> OwnedFd {
    // SAFETY: r is a file descriptor bpf(2) just returned to us and nothing
    // else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Load the program; on failure load it again with the verifier log on, and
/// return the log's last line with the error.
fn load(insns: &[Insn]) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.encode()).collect();
    let attempt = |log: &mut [u8], level: u32| {
        let mut attr = Attr::new();
        attr.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32(4, insns.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, LICENSE.as_ptr() as u64)
            .u32(24, level)
            .u32(28, log.len() as u32)
            // No log: a null buffer (an empty slice's pointer is not null).
            .u64(
                32,
                if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
            );
        attr.0[48..48 + PROG_NAME.len()].copy_from_slice(PROG_NAME);
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(owned_fd)
    };
    match attempt(&mut [], 0) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 1 << 20];
            if attempt(&mut log, 1).is_ok() {
                // Loads with the log on: the first failure was transient.
                return attempt(&mut [], 0);
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            // The last line is a summary ("processed N insns ..."); the
            // reason comes before it.
            let reason = text.lines().rev().find(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with("processed ") && !l.starts_with("verification time")
            });
            match reason {
                Some(last) => Err(io::Error::new(
                    first.kind(),
                    format!("{first}; verifier: {}", last.trim()),
                )),
                None => Err(first),
            }
        }
    }
}

/// Ids of the device programs attached directly to the cgroup.
fn query(cgroup: &File) -> io::Result<Vec<u32>> {
    let mut cap = 64usize;
    loop {
        let mut ids = vec![0u32; cap];
        let mut attr = Attr::new();
        attr.u32(0, cgroup.as_raw_fd() as u32)
            .u32(4, BPF_CGROUP_DEVICE)
            .u64(16, ids.as_mut_ptr() as u64)
            .u32(24, cap as u32);
        match sys_bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                let n = (attr.get_u32(24) as usize).min(cap);
                ids.truncate(n);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && cap < 1 << 16 => {
                cap = (attr.get_u32(24) as usize).max(cap * 2);
            }
            Err(e) => return Err(e),
        }
    }
}

/// An fd for program `id`, and whether it is one of berth's device programs.
fn berth_program(id: u32) -> io::Result<Option<OwnedFd>> {
    let mut attr = Attr::new();
    attr.u32(0, id);
    let fd = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(r) => owned_fd(r),
        // Detached and freed since the query: nothing to replace.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // struct bpf_prog_info: type at 0, name[16] at 64.
    let mut info = [0u8; 80];
    let mut attr = Attr::new();
    attr.u32(0, fd.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let ty = u32::from_ne_bytes(info[0..4].try_into().unwrap());
    let name = &info[64..80];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(16)];
    Ok((ty == BPF_PROG_TYPE_CGROUP_DEVICE && name == PROG_NAME).then_some(fd))
}

fn attach(cgroup: &File, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI);
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

fn detach(cgroup: &File, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE);
    sys_bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

fn error(dir: &Path, what: String, source: io::Error) -> CgroupError {
    CgroupError::Write {
        path: dir.to_path_buf(),
        value: what,
        source,
    }
}

/// Build the program for `rules` (in order; the last matching rule wins, as
/// with the v1 lists) and attach it to the cgroup2 directory `dir`,
/// replacing a program berth attached there before.
///
/// The new program is attached before the old ones are detached, so the
/// cgroup is never without one.
pub fn attach_device_program(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let what = format!("eBPF device program ({} rules)", rules.len());
    let insns = program(rules).map_err(|e| {
        error(
            dir,
            what.clone(),
            io::Error::new(io::ErrorKind::InvalidInput, e),
        )
    })?;
    let cgroup = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
    let ctx = |step: &str, e: io::Error| {
        error(
            dir,
            what.clone(),
            io::Error::new(e.kind(), format!("{step}: {e}")),
        )
    };
    let mut old = Vec::new();
    for id in query(&cgroup).map_err(|e| ctx("BPF_PROG_QUERY", e))? {
        if let Some(fd) = berth_program(id).map_err(|e| ctx("BPF_PROG_GET_FD_BY_ID", e))? {
            old.push(fd);
        }
    }
    let prog = load(&insns).map_err(|e| ctx("BPF_PROG_LOAD", e))?;
    attach(&cgroup, &prog).map_err(|e| ctx("BPF_PROG_ATTACH", e))?;
    for fd in &old {
        if let Err(e) = detach(&cgroup, fd) {
            // The new program stays; both run until this is fixed, and
            // together they allow only what both allow.
            return Err(ctx("BPF_PROG_DETACH of the previous program", e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        acc: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: acc.into(),
        }
    }

    /// Run `prog` on a device context: an interpreter for the instructions
    /// [`program`] emits, decoding them from their byte encoding.
    fn run(prog: &[Insn], ty: u32, major: u32, minor: u32, access: u32) -> u64 {
        let ctx = [(access << 16) | ty, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps <= prog.len(), "ran longer than the program: a loop");
            let b = prog[pc].encode();
            let code = b[0];
            let (dst, src) = ((b[1] & 0x0f) as usize, (b[1] >> 4) as usize);
            let off = i16::from_ne_bytes([b[2], b[3]]);
            let imm = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            pc += 1;
            let cond32 = |op: u8, v: u64| {
                let (a, k) = (v as u32, imm as u32);
                match op {
                    BPF_JEQ => a == k,
                    BPF_JNE => a != k,
                    BPF_JSET => a & k != 0,
                    _ => panic!("unexpected jump op {op:#x}"),
                }
            };
            match code {
                c if c == BPF_LDX | BPF_MEM | BPF_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    assert!(off >= 0 && off % 4 == 0 && off < 12, "ctx offset {off}");
                    r[dst] = ctx[off as usize / 4] as u64;
                }
                c if c == BPF_ALU | BPF_MOV | BPF_X => r[dst] = r[src] as u32 as u64,
                c if c == BPF_ALU | BPF_AND | BPF_K => r[dst] = (r[dst] as u32 & imm as u32) as u64,
                c if c == BPF_ALU | BPF_RSH | BPF_K => {
                    r[dst] = ((r[dst] as u32) >> (imm as u32)) as u64
                }
                c if c == BPF_ALU64 | BPF_MOV | BPF_K => r[dst] = imm as i64 as u64,
                c if c == BPF_JMP | BPF_EXIT => return r[0],
                c if c & 0x07 == BPF_JMP32 && c & 0x08 == BPF_K => {
                    if cond32(c & 0xf0, r[dst]) {
                        assert!(off >= 0, "backward jump");
                        pc = (pc as i64 + off as i64) as usize;
                    }
                }
                c => panic!("instruction {c:#x} outside the emitted subset"),
            }
        }
    }

    /// The v1 list semantics, directly: each requested bit is decided by the
    /// last rule naming the device and the bit; unnamed bits are denied.
    fn reference(rules: &[DeviceRule], ty: u32, major: u32, minor: u32, access: u32) -> bool {
        [ACC_MKNOD, ACC_READ, ACC_WRITE]
            .into_iter()
            .filter(|b| access & b != 0)
            .all(|bit| {
                rules
                    .iter()
                    .rev()
                    .find(|r| {
                        let kind_ok = match r.kind {
                            'a' => true,
                            'b' => ty == DEV_BLOCK,
                            _ => ty == DEV_CHAR,
                        };
                        let n = |v: Option<i64>, want: u32| {
                            r.kind == 'a' || v.is_none_or(|v| v == want as i64)
                        };
                        kind_ok
                            && n(r.major, major)
                            && n(r.minor, minor)
                            && access_bits(&r.access).unwrap() & bit != 0
                    })
                    .is_some_and(|r| r.allow)
            })
    }

    fn verdict(rules: &[DeviceRule], ty: u32, major: u32, minor: u32, acc: &str) -> bool {
        let p = program(rules).unwrap();
        let v = run(&p, ty, major, minor, access_bits(acc).unwrap());
        assert!(v <= 1);
        v == 1
    }

    fn runc_defaults() -> Vec<DeviceRule> {
        let mut rules = vec![rule(false, 'a', None, None, "rwm")];
        rules.extend(crate::default_device_rules());
        rules
    }

    #[test]
    fn default_rules() {
        let rules = runc_defaults();
        let c = DEV_CHAR;
        assert!(verdict(&rules, c, 1, 3, "rw"));
        assert!(verdict(&rules, c, 1, 3, "rwm"));
        assert!(verdict(&rules, c, 136, 7, "rw"), "c 136:* rwm");
        assert!(verdict(&rules, c, 5, 2, "r"));
        assert!(!verdict(&rules, c, 1, 1, "r"), "/dev/mem");
        assert!(verdict(&rules, c, 1, 1, "m"), "c *:* m");
        assert!(verdict(&rules, DEV_BLOCK, 8, 0, "m"), "b *:* m");
        assert!(!verdict(&rules, DEV_BLOCK, 8, 0, "r"));
        assert!(
            !verdict(&rules, DEV_BLOCK, 8, 0, "rm"),
            "r is denied even with m allowed"
        );
        assert!(
            !verdict(&rules, DEV_BLOCK, 1, 3, "r"),
            "a block 1:3 is not /dev/null"
        );
        assert!(!verdict(&[], c, 1, 3, "r"), "no rules: default deny");
    }

    #[test]
    fn last_match_and_partial_access() {
        let c = DEV_CHAR;
        // deny a bit after allowing the device
        let rules = [
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ];
        assert!(verdict(&rules, c, 1, 3, "r"));
        assert!(verdict(&rules, c, 1, 3, "m"));
        assert!(!verdict(&rules, c, 1, 3, "w"));
        assert!(!verdict(&rules, c, 1, 3, "rw"));
        // allow a partial access after denying all
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "r"),
        ];
        assert!(verdict(&rules, c, 1, 3, "r"));
        assert!(!verdict(&rules, c, 1, 3, "rw"));
        // allow all after denying all: everything
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'a', None, None, "rwm"),
        ];
        assert!(verdict(&rules, DEV_BLOCK, 8, 0, "rwm"));
        // deny all last: nothing, whatever came before
        let rules = [
            rule(true, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'a', None, None, "rwm"),
        ];
        assert!(!verdict(&rules, c, 1, 3, "r"));
        assert_eq!(
            program(&rules).unwrap().len(),
            6 + 1 + 2,
            "earlier rules not emitted"
        );
        // wildcards
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', None, Some(5), "rw"),
            rule(true, 'b', Some(8), None, "r"),
        ];
        assert!(verdict(&rules, c, 7, 5, "rw"));
        assert!(!verdict(&rules, c, 7, 6, "r"));
        assert!(verdict(&rules, DEV_BLOCK, 8, 99, "r"));
        assert!(!verdict(&rules, DEV_BLOCK, 8, 99, "w"));
        assert!(!verdict(&rules, DEV_BLOCK, 9, 0, "r"));
        // a rule with an empty access decides nothing
        let rules = [
            rule(true, 'c', Some(1), Some(3), ""),
            rule(false, 'c', Some(1), Some(3), ""),
        ];
        assert!(!verdict(&rules, c, 1, 3, "r"));
        // device numbers above i32::MAX compare as u32
        let rules = [rule(true, 'c', Some(1), Some(u32::MAX as i64), "r")];
        assert!(verdict(&rules, c, 1, u32::MAX, "r"));
        assert!(!verdict(&rules, c, 1, u32::MAX - 1, "r"));
    }

    #[test]
    fn bad_rules_are_errors() {
        let err = program(&[rule(true, 'x', None, None, "r")]).unwrap_err();
        assert!(err.contains("type 'x'"), "{err}");
        let err = program(&[rule(true, 'c', Some(1), Some(3), "rq")]).unwrap_err();
        assert!(err.contains("\"c 1:3 rq\"") && err.contains("'q'"), "{err}");
        let err = program(&[rule(true, 'c', Some(-1), Some(3), "r")]).unwrap_err();
        assert!(err.contains("major -1"), "{err}");
        let err = program(&[rule(true, 'b', Some(1), Some(1 << 32), "r")]).unwrap_err();
        assert!(err.contains("minor 4294967296"), "{err}");
    }

    /// Random rule lists against the reference semantics, every device and
    /// access of a small domain.
    #[test]
    fn agrees_with_the_v1_semantics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let accs = ["r", "w", "m", "rw", "rm", "wm", "rwm"];
        for _ in 0..400 {
            let len = next(8) as usize;
            let rules: Vec<DeviceRule> = (0..len)
                .map(|_| {
                    let kind = ['a', 'b', 'c', 'c'][next(4) as usize];
                    let major = [None, Some(1), Some(2)][next(3) as usize];
                    let minor = [None, Some(3), Some(4)][next(3) as usize];
                    rule(next(2) == 0, kind, major, minor, accs[next(7) as usize])
                })
                .collect();
            let p = program(&rules).unwrap();
            for ty in [DEV_BLOCK, DEV_CHAR] {
                for major in 1..=3 {
                    for minor in 3..=5 {
                        for access in 1..=7 {
                            let want = reference(&rules, ty, major, minor, access);
                            let got = run(&p, ty, major, minor, access);
                            assert_eq!(
                                got == 1,
                                want,
                                "rules {:?}, device {ty} {major}:{minor} access {access}",
                                rules
                                    .iter()
                                    .map(|r| (r.allow, r.line()))
                                    .collect::<Vec<_>>()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn encoding() {
        // r2 = *(u32 *)(r1 + 0): code 0x61, dst 2, src 1.
        let i = Insn::new(BPF_LDX | BPF_MEM | BPF_W, Reg::Access, Reg::R1, 0, 0);
        assert_eq!(i.encode(), [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        // r0 = 1; exit
        let mut a = Asm::default();
        a.ret(1);
        let p = a.finish().unwrap();
        assert_eq!(p[0].encode(), [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(p[1].encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    // ---- on this host's cgroup2, as root ----

    /// Fork a child that waits for a byte on `go`, then opens /dev/null,
    /// /dev/zero and /dev/full and exits with a bit set for each open that
    /// failed with EPERM (1, 2, 4), or 64 if any failed otherwise.
    fn spawn_opener(go: &OwnedFd) -> libc::pid_t {
        let paths: [&CStr; 3] = [c"/dev/null", c"/dev/zero", c"/dev/full"];
        let fd = go.as_raw_fd();
        // SAFETY: the child calls only read, open, close and _exit (all
        // async-signal-safe) on data prepared before the fork, and never
        // returns into Rust code.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let mut b = 0u8;
                libc::read(fd, &mut b as *mut u8 as *mut libc::c_void, 1);
                let mut code = 0;
                for (i, p) in paths.iter().enumerate() {
                    let f = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if f >= 0 {
                        libc::close(f);
                    } else if *libc::__errno_location() == libc::EPERM {
                        code |= 1 << i;
                    } else {
                        code |= 64;
                    }
                }
                libc::_exit(code);
            }
            pid
        }
    }

    /// Run an opener inside `dir` and return its exit code.
    fn opens_in(dir: &Path) -> i32 {
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: fds has room for the two descriptors pipe2 writes.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both fds were just created and are owned by no one else.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let pid = spawn_opener(&r);
        assert!(pid > 0);
        let moved = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        let mut f = File::from(w);
        let _ = io::Write::write_all(&mut f, b"x");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        moved.unwrap();
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    /// The kernel's verifier accepts what [`program`] emits for every
    /// shape of rule list (needs CAP_BPF or CAP_SYS_ADMIN: root).
    #[test]
    fn the_verifier_accepts_the_programs() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading a program needs root");
            return;
        }
        let all = |allow| rule(allow, 'a', None, None, "rwm");
        let mut lists = vec![
            vec![],
            vec![all(false)],
            vec![all(true)],
            vec![all(false), all(true)],
            vec![all(true), all(false)],
            vec![rule(false, 'c', Some(1), Some(3), "w")],
            runc_defaults(),
        ];
        let mut seed = 7u64;
        for _ in 0..50 {
            let mut r = Vec::new();
            for _ in 0..(seed % 6) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (seed >> 33) as usize;
                r.push(rule(
                    k & 1 == 0,
                    ['a', 'b', 'c'][k % 3],
                    [None, Some(1)][(k >> 2) & 1],
                    [None, Some(3)][(k >> 3) & 1],
                    ["r", "w", "m", "rwm"][(k >> 4) % 4],
                ));
            }
            seed = seed.wrapping_add(3);
            lists.push(r);
        }
        for rules in &lists {
            let p = program(rules).unwrap();
            if let Err(e) = load(&p) {
                panic!(
                    "{:?}: {e}",
                    rules
                        .iter()
                        .map(|r| (r.allow, r.line()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn attached_program_confines_a_real_process() {
        let root = Path::new("/sys/fs/cgroup/unified");
        let v2 = if root.join("cgroup.controllers").exists() {
            root
        } else {
            Path::new("/sys/fs/cgroup")
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !v2.join("cgroup.controllers").exists() {
            eprintln!("skipped: needs root and a cgroup2 mount");
            return;
        }
        let dir = v2.join(format!("berth-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let result = std::panic::catch_unwind(|| {
            let c = |minor| rule(true, 'c', Some(1), Some(minor), "rwm");
            let deny_all = rule(false, 'a', None, None, "rwm");
            attach_device_program(&dir, &[deny_all.clone(), c(3), c(5)]).unwrap();
            assert_eq!(opens_in(&dir), 4, "only /dev/full (1:7) is refused");
            // Re-apply with /dev/full allowed: the old program goes.
            attach_device_program(&dir, &[deny_all.clone(), c(3), c(5), c(7)]).unwrap();
            assert_eq!(opens_in(&dir), 0, "all three open");
            let cg = File::open(&dir).unwrap();
            assert_eq!(query(&cg).unwrap().len(), 1, "exactly one program attached");
            attach_device_program(&dir, &[deny_all]).unwrap();
            assert_eq!(opens_in(&dir), 7, "nothing opens");
            assert_eq!(query(&cg).unwrap().len(), 1);
        });
        for _ in 0..100 {
            if std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
