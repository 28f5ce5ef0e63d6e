//! `berth-probe`: runs inside a test container and prints ONE JSON object on
//! stdout describing what the process sees. It never panics on a missing /proc
//! entry: anything it cannot read is reported as `null`.
//!
//! Subcommands:
//!   berth-probe [report ARGS…]  everything (see `report()`); ARGS only show up in "args"
//!   berth-probe sysctl K...     {"sysctl": {K: value-or-null}}
//!   berth-probe stat P...       {"stat": {P: {type, mode, uid, gid, major, minor, target} | {errno}}}
//!   berth-probe write P         {"write": {"path": P, "ok": bool, "errno": N|null, "error": S|null}}
//!   berth-probe read P          {"read": {"path": P, "data": S|null, "errno": N|null}}
//!   berth-probe ls P            {"ls": {"path": P, "entries": [..]|null, "errno": N|null}}
//!   berth-probe exit N          exits with status N, prints nothing
//!   berth-probe sleep [SECS]    sleeps (default: forever), prints nothing; exits
//!                               128+N on SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2
//!   berth-probe echo TEXT...    prints TEXT joined by spaces and a newline (not JSON)
//!   berth-probe sched           {"sched": {policy, priority, nice, reset_on_fork, ioprio_class,
//!                               ioprio_level, personality, cpus}} of the process itself
//!   berth-probe call NAME ARG.. {"call": {"name", "ret", "errno"}}: one raw syscall by number
//!                               (NAME a number or one of getcwd, uname, mkdir, personality,
//!                               getpid, umask, sethostname, chdir); ARGs are integers (0x.. ok)
//!                               or, prefixed with '/', NUL-terminated path strings

use serde_json::{json, Map, Value};
use std::ffi::{CStr, CString};
use std::fs;
use std::io::Write;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn read_to_string(p: &str) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn readlink(p: &str) -> Option<String> {
    fs::read_link(p)
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

fn status_field(status: &Option<String>, key: &str) -> Value {
    let Some(s) = status else { return Value::Null };
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(key) {
            if let Some(v) = rest.strip_prefix(':') {
                return Value::String(v.trim().to_string());
            }
        }
    }
    Value::Null
}

fn utsname() -> (Value, Value) {
    // SAFETY: uname fills a zeroed, properly sized struct.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return (Value::Null, Value::Null);
        }
        let h = CStr::from_ptr(u.nodename.as_ptr())
            .to_string_lossy()
            .into_owned();
        let d = CStr::from_ptr(u.domainname.as_ptr())
            .to_string_lossy()
            .into_owned();
        (json!(h), json!(d))
    }
}

fn groups() -> Value {
    // SAFETY: first call asks for the count, second fills a buffer of that size.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n < 0 {
            return Value::Null;
        }
        let mut v = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, v.as_mut_ptr());
        if n < 0 {
            return Value::Null;
        }
        v.truncate(n as usize);
        json!(v)
    }
}

fn umask() -> Value {
    // Prefer /proc/self/status (no side effect); fall back to set-and-restore.
    let st = read_to_string("/proc/self/status");
    if let Value::String(s) = status_field(&st, "Umask") {
        if let Ok(v) = u32::from_str_radix(&s, 8) {
            return json!(format!("{:04o}", v));
        }
    }
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(old) };
    json!(format!("{:04o}", old))
}

fn rlimits() -> Value {
    let list: &[(&str, libc::__rlimit_resource_t)] = &[
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_STACK", libc::RLIMIT_STACK),
        ("RLIMIT_CORE", libc::RLIMIT_CORE),
        ("RLIMIT_RSS", libc::RLIMIT_RSS),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", libc::RLIMIT_NICE),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ];
    let mut m = Map::new();
    for (name, res) in list {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid struct.
        let v = if unsafe { libc::getrlimit(*res, &mut r) } == 0 {
            json!([r.rlim_cur, r.rlim_max])
        } else {
            Value::Null
        };
        m.insert(name.to_string(), v);
    }
    Value::Object(m)
}

fn namespaces() -> Value {
    let mut m = Map::new();
    if let Ok(rd) = fs::read_dir("/proc/self/ns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = format!("/proc/self/ns/{name}");
            m.insert(name, readlink(&p).map(Value::String).unwrap_or(Value::Null));
        }
    } else {
        return Value::Null;
    }
    Value::Object(m)
}

/// Undo mountinfo's octal escapes (\040 for space etc.).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Value {
    let Some(s) = read_to_string("/proc/self/mountinfo") else {
        return Value::Null;
    };
    let mut v = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < sep + 3 || sep < 6 {
            continue;
        }
        let split = |x: &str| -> Vec<String> { x.split(',').map(unescape).collect() };
        v.push(json!({
            "id": f[0].parse::<u64>().ok(),
            "parent": f[1].parse::<u64>().ok(),
            "dev": f[2],
            "root": unescape(f[3]),
            "mountpoint": unescape(f[4]),
            "options": split(f[5]),
            "propagation": f[6..sep].iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            "fstype": f[sep + 1],
            "source": unescape(f[sep + 2]),
            "super_options": f.get(sep + 3).map(|x| split(x)).unwrap_or_default(),
        }));
    }
    json!(v)
}

fn fds() -> Value {
    let Ok(rd) = fs::read_dir("/proc/self/fd") else {
        return Value::Null;
    };
    let mut m = Map::new();
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
    for n in names {
        let t = readlink(&format!("/proc/self/fd/{n}"));
        // The fd read_dir itself used is closed by now: skip what no longer resolves.
        if let Some(t) = t {
            m.insert(n, Value::String(t));
        }
    }
    Value::Object(m)
}

fn tty() -> Value {
    let mut m = Map::new();
    for fd in 0..3 {
        // SAFETY: isatty on any fd number is safe.
        let is = unsafe { libc::isatty(fd) } == 1;
        m.insert(format!("isatty{fd}"), json!(is));
    }
    // SAFETY: ttyname returns a static buffer or NULL; copied at once.
    let name = unsafe {
        let p = libc::ttyname(0);
        if p.is_null() {
            Value::Null
        } else {
            json!(CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    };
    m.insert("name".into(), name);
    Value::Object(m)
}

fn sysctl(keys: &[String]) -> Value {
    let mut m = Map::new();
    for k in keys {
        let p = format!("/proc/sys/{}", k.replace('.', "/"));
        m.insert(
            k.clone(),
            read_to_string(&p)
                .map(|s| json!(s.trim_end()))
                .unwrap_or(Value::Null),
        );
    }
    json!({ "sysctl": m })
}

fn stat_one(p: &str) -> Value {
    let Ok(c) = CString::new(p) else {
        return json!({"errno": libc::EINVAL});
    };
    // SAFETY: lstat writes into a zeroed struct of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return json!({ "errno": errno() });
    }
    let fmt = st.st_mode & libc::S_IFMT;
    let ty = match fmt {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown",
    };
    json!({
        "type": ty,
        "mode": format!("{:04o}", st.st_mode & 0o7777),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "major": libc::major(st.st_rdev),
        "minor": libc::minor(st.st_rdev),
        "target": if fmt == libc::S_IFLNK { readlink(p).map(Value::String).unwrap_or(Value::Null) } else { Value::Null },
    })
}

fn write_one(p: &str) -> Value {
    let r = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .and_then(|mut f| f.write_all(b"berth-probe\n"));
    match r {
        Ok(()) => json!({"path": p, "ok": true, "errno": null, "error": null}),
        Err(e) => {
            json!({"path": p, "ok": false, "errno": e.raw_os_error(), "error": e.to_string()})
        }
    }
}

fn report() -> Value {
    let status = read_to_string("/proc/self/status");
    let (hostname, domainname) = utsname();
    // SAFETY: these id getters cannot fail.
    let (uid, gid, euid, egid, pid, ppid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
            libc::getpid(),
            libc::getppid(),
        )
    };
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), json!(v.to_string_lossy())))
        .collect();
    json!({
        "uid": uid, "gid": gid, "euid": euid, "egid": egid,
        "groups": groups(),
        "umask": umask(),
        "cwd": std::env::current_dir().ok().map(|p| p.to_string_lossy().into_owned()),
        "args": std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "env": env,
        "hostname": hostname,
        "domainname": domainname,
        "pid": pid,
        "ppid": ppid,
        "capabilities": {
            "inheritable": status_field(&status, "CapInh"),
            "permitted": status_field(&status, "CapPrm"),
            "effective": status_field(&status, "CapEff"),
            "bounding": status_field(&status, "CapBnd"),
            "ambient": status_field(&status, "CapAmb"),
        },
        "no_new_privs": match status_field(&status, "NoNewPrivs") { Value::String(s) => json!(s == "1"), _ => Value::Null },
        "seccomp": match status_field(&status, "Seccomp") { Value::String(s) => s.parse::<u64>().ok().map(|x| json!(x)).unwrap_or(Value::Null), _ => Value::Null },
        "rlimits": rlimits(),
        "oom_score_adj": read_to_string("/proc/self/oom_score_adj").and_then(|s| s.trim().parse::<i64>().ok()),
        "namespaces": namespaces(),
        "mounts": mounts(),
        "fds": fds(),
        "tty": tty(),
    })
}

/// The process's own scheduling attributes, I/O priority, personality and
/// CPU affinity, as the kernel reports them.
fn sched() -> Value {
    // SAFETY: plain queries of the calling process.
    let policy = unsafe { libc::sched_getscheduler(0) };
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid out-pointer.
    let prio_ok = unsafe { libc::sched_getparam(0, &mut param) } == 0;
    // SAFETY: getpriority has no pointer arguments; -1 is a valid nice value,
    // errno tells failures apart (ignored here).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, self).
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, 0) };
    // SAFETY: personality(0xffffffff) only queries.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    let status = read_to_string("/proc/self/status");
    const RESET_ON_FORK: i32 = 0x4000_0000;
    json!({ "sched": {
        "policy": policy & !RESET_ON_FORK,
        "reset_on_fork": policy & RESET_ON_FORK != 0,
        "priority": if prio_ok { json!(param.sched_priority) } else { Value::Null },
        "nice": nice,
        "ioprio_class": if ioprio >= 0 { json!(ioprio >> 13) } else { Value::Null },
        "ioprio_level": if ioprio >= 0 { json!(ioprio & 0x1fff) } else { Value::Null },
        "personality": persona,
        "cpus": status_field(&status, "Cpus_allowed_list"),
    }})
}

/// One raw syscall, so seccomp tests see exactly the number and arguments
/// they filter on (libc wrappers may use a different syscall).
fn call(args: &[String]) -> Value {
    let name = args.first().cloned().unwrap_or_default();
    let nr = match name.as_str() {
        "getcwd" => libc::SYS_getcwd,
        "uname" => libc::SYS_uname,
        "mkdir" => libc::SYS_mkdir,
        "personality" => libc::SYS_personality,
        "getpid" => libc::SYS_getpid,
        "umask" => libc::SYS_umask,
        "sethostname" => libc::SYS_sethostname,
        "chdir" => libc::SYS_chdir,
        n => match n.parse() {
            Ok(v) => v,
            Err(_) => return json!({ "call": { "name": name, "error": "unknown syscall" } }),
        },
    };
    let mut keep = Vec::new();
    let mut a = [0 as libc::c_long; 6];
    let mut buf = [0u8; 4096];
    for (i, s) in args.iter().skip(1).take(6).enumerate() {
        a[i] = if s.starts_with('/') {
            let c = std::ffi::CString::new(s.as_str()).unwrap_or_default();
            let p = c.as_ptr() as libc::c_long;
            keep.push(c);
            p
        } else if s == "buf" {
            buf.as_mut_ptr() as libc::c_long
        } else if let Some(h) = s.strip_prefix("0x") {
            u64::from_str_radix(h, 16).unwrap_or(0) as libc::c_long
        } else {
            s.parse::<i64>().unwrap_or(0) as libc::c_long
        };
    }
    // SAFETY: the caller picks a syscall and arguments for a test; pointer
    // arguments point at live buffers above.
    let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    let err = if ret < 0 { errno() } else { 0 };
    json!({ "call": { "name": name, "ret": ret, "errno": err } })
}

fn print(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rest = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        Vec::new()
    };
    match args.get(1).map(String::as_str) {
        None | Some("report") => print(report()),
        Some("sysctl") => print(sysctl(&rest)),
        Some("stat") => {
            let m: Map<String, Value> = rest.iter().map(|p| (p.clone(), stat_one(p))).collect();
            print(json!({ "stat": m }))
        }
        Some("write") => {
            print(json!({ "write": write_one(rest.first().map(String::as_str).unwrap_or("")) }))
        }
        Some("read") => {
            let p = rest.first().cloned().unwrap_or_default();
            let v = match fs::read(&p) {
                Ok(d) => json!({"path": p, "data": String::from_utf8_lossy(&d), "errno": null}),
                Err(e) => json!({"path": p, "data": null, "errno": e.raw_os_error()}),
            };
            print(json!({ "read": v }))
        }
        Some("ls") => {
            let p = rest.first().cloned().unwrap_or_default();
            let v = match fs::read_dir(&p) {
                Ok(rd) => {
                    let mut e: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    e.sort();
                    json!({"path": p, "entries": e, "errno": null})
                }
                Err(e) => json!({"path": p, "entries": null, "errno": e.raw_os_error()}),
            };
            print(json!({ "ls": v }))
        }
        Some("exit") => std::process::exit(rest.first().and_then(|s| s.parse().ok()).unwrap_or(0)),
        Some("sleep") => {
            // As pid 1 of a pid namespace, a signal without a handler is ignored;
            // catch the usual termination signals so `kill TERM` ends the sleeper.
            extern "C" fn on_signal(sig: libc::c_int) {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(128 + sig) }
            }
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                // SAFETY: installing a handler that only calls _exit.
                unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
            }
            let secs: Option<u64> = rest.first().and_then(|s| s.parse().ok());
            match secs {
                Some(s) => std::thread::sleep(std::time::Duration::from_secs(s)),
                None => loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600))
                },
            }
        }
        Some("sched") => print(sched()),
        Some("call") => print(call(&rest)),
        Some("echo") => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", rest.join(" "));
        }
        Some(other) => {
            eprintln!("berth-probe: unknown subcommand {other:?}");
            std::process::exit(2)
        }
    }
}
