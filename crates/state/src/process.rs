//! Is the container's process still the one we started?

use std::fs;

/// Whether a recorded process is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
}

/// The fields of `/proc/PID/stat` this crate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z, X, T, ...
    state: char,
    /// Field 22: start time in clock ticks after boot.
    start_time: u64,
}

/// Parse the text of `/proc/PID/stat`.
///
/// Field 2 (`comm`) is in parentheses and may itself contain spaces and `)`,
/// so the remaining fields are taken after the *last* `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `fields` now starts at field 3.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some(Stat { state, start_time })
}

fn read_stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let buf = read_small(std::path::Path::new(&format!("/proc/{pid}/stat")), 512).ok()?;
    parse_stat(std::str::from_utf8(&buf).ok()?)
}

/// The whole of a small file: open, read until EOF into a buffer of `hint`
/// bytes (grown if needed), close. `fs::read` would add a statx and, for
/// procfs (which reports size 0), grow its buffer from 32 bytes over several
/// reads: `list` does this for every container.
pub(crate) fn read_small(path: &std::path::Path, hint: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; hint];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), or
/// `None` if the process does not exist.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// `Alive` only if `pid` exists, started at `pid_start` (so the pid was not
/// reused) and is not a zombie (state `Z` or `X`).
pub fn liveness(pid: i32, pid_start: u64) -> Liveness {
    match read_stat(pid) {
        Some(s) if s.start_time == pid_start && !matches!(s.state, 'Z' | 'X') => Liveness::Alive,
        _ => Liveness::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn line(comm: &str, state: char, start: u64) -> String {
        // Fields 4..=21 are 18 numbers; field 22 is the start time.
        let filler: Vec<String> = (4..=21).map(|n| n.to_string()).collect();
        format!(
            "1234 ({comm}) {state} {} {start} 100 200\n",
            filler.join(" ")
        )
    }

    #[test]
    fn read_small_reads_past_its_hint_and_procfs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        fs::write(&p, &data).unwrap();
        assert_eq!(read_small(&p, 16).unwrap(), data);
        fs::write(&p, b"").unwrap();
        assert!(read_small(&p, 16).unwrap().is_empty());
        let stat = read_small(std::path::Path::new("/proc/self/stat"), 8).unwrap();
        assert!(parse_stat(std::str::from_utf8(&stat).unwrap()).is_some());
    }

    #[test]
    fn parses_awkward_comm() {
        for comm in ["sh", "a b", "x) R 1 2 (y", ")", "((("] {
            let s = parse_stat(&line(comm, 'S', 987_654)).unwrap();
            assert_eq!(
                s,
                Stat {
                    state: 'S',
                    start_time: 987_654
                },
                "{comm}"
            );
        }
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = pid_start_time(me).unwrap();
        assert_eq!(liveness(me, start), Liveness::Alive);
        assert_eq!(liveness(me, start + 1), Liveness::Dead, "wrong start time");
        assert_eq!(liveness(0, start), Liveness::Dead);
        assert_eq!(liveness(-5, start), Liveness::Dead);
    }

    #[test]
    fn reaped_child_is_dead() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = pid_start_time(pid).unwrap_or(0);
        child.wait().unwrap();
        assert_eq!(liveness(pid, start), Liveness::Dead);
    }

    #[test]
    fn zombie_child_is_dead() {
        let mut child = Command::new("sleep").arg("0.05").spawn().unwrap();
        let pid = child.id() as i32;
        let start = pid_start_time(pid).unwrap();
        assert_eq!(liveness(pid, start), Liveness::Alive);
        // Wait, without reaping, until the kernel shows it as a zombie.
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_stat(pid).map(|s| s.state) != Some('Z') {
            assert!(Instant::now() < deadline, "child never became a zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            pid_start_time(pid),
            Some(start),
            "zombie still has /proc entry"
        );
        assert_eq!(liveness(pid, start), Liveness::Dead);
        child.wait().unwrap();
    }
}
