//! Pausing a container: the v1 freezer controller, or cgroup2's cgroup.freeze.
//!
//! Which one: the v1 freezer hierarchy when the cgroup has a directory in
//! one (hybrid hosts mount it, and cgroup2 there usually holds no
//! processes' freezer state), else the cgroup2 directory.
//!
//! Freezing is asynchronous in both: the write starts it, the state file says
//! when every task has stopped. A v1 cgroup can stay FREEZING for a while
//! (a task in an uninterruptible sleep, a vfork parent waiting for its
//! child); writing FROZEN again, after a short thaw, lets such a task get
//! to a freezable point. Both waits are bounded: a cgroup that does not
//! freeze in time is thawed again and the error says so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{write, Cgroup, CgroupError, UNIFIED};

/// How long a freeze may take before berth gives up and thaws.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between reads of the state file.
const POLL: Duration = Duration::from_millis(1);
/// v1: after this many polls still FREEZING, thaw briefly and write FROZEN again.
const REFREEZE_EVERY: u32 = 50;

/// The freezer a cgroup uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Freezer {
    /// A v1 freezer hierarchy directory (freezer.state).
    V1(PathBuf),
    /// A cgroup2 directory (cgroup.freeze, cgroup.events).
    V2(PathBuf),
}

impl Cgroup {
    fn freezer(&self) -> Option<Freezer> {
        if let Some((_, dir)) = self
            .paths
            .iter()
            .find(|(k, _)| k.as_str() != UNIFIED && k.split(',').any(|c| c == "freezer"))
        {
            return Some(Freezer::V1(dir.clone()));
        }
        self.paths.get(UNIFIED).cloned().map(Freezer::V2)
    }

    /// Freeze every process in the cgroup, waiting until the kernel says it is frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer().ok_or(CgroupError::NoFreezer)? {
            Freezer::V1(dir) => freeze_v1(&dir),
            Freezer::V2(dir) => freeze_v2(&dir),
        }
    }

    /// Thaw a frozen cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer().ok_or(CgroupError::NoFreezer)? {
            Freezer::V1(dir) => thaw_v1(&dir),
            Freezer::V2(dir) => write(&dir.join("cgroup.freeze"), "0"),
        }
    }

    /// Whether the cgroup is frozen (false when there is no freezer). As with
    /// runc, a v1 cgroup still FREEZING is not paused yet.
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Some(Freezer::V1(dir)) => fs::read_to_string(dir.join("freezer.state"))
                .map(|s| v1_state(&s) == V1State::Frozen)
                .unwrap_or(false),
            Some(Freezer::V2(dir)) => fs::read_to_string(dir.join("cgroup.events"))
                .map(|s| v2_frozen(&s))
                .unwrap_or(false),
            None => false,
        }
    }
}

/// What v1 `freezer.state` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V1State {
    Thawed,
    Freezing,
    Frozen,
    Unknown,
}

fn v1_state(s: &str) -> V1State {
    match s.trim() {
        "THAWED" => V1State::Thawed,
        "FREEZING" => V1State::Freezing,
        "FROZEN" => V1State::Frozen,
        _ => V1State::Unknown,
    }
}

/// Whether cgroup2 `cgroup.events` says `frozen 1`.
fn v2_frozen(events: &str) -> bool {
    events.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some("frozen") && f.next() == Some("1")
    })
}

fn read_state(dir: &Path) -> Result<V1State, CgroupError> {
    let file = dir.join("freezer.state");
    fs::read_to_string(&file)
        .map(|s| v1_state(&s))
        .map_err(|source| CgroupError::Read { path: file, source })
}

fn freeze_v1(dir: &Path) -> Result<(), CgroupError> {
    let file = dir.join("freezer.state");
    write(&file, "FROZEN")?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut polls = 0u32;
    loop {
        let state = match read_state(dir) {
            Ok(s) => s,
            Err(e) => {
                let _ = thaw_v1(dir);
                return Err(e);
            }
        };
        match state {
            V1State::Frozen => return Ok(()),
            // Something thawed it under us (another berth resume, a
            // parent): freezing again is what was asked.
            V1State::Thawed | V1State::Freezing | V1State::Unknown => {}
        }
        if Instant::now() >= deadline {
            let _ = thaw_v1(dir);
            return Err(timed_out(&file, "FROZEN", state));
        }
        polls += 1;
        let refreeze = polls.is_multiple_of(REFREEZE_EVERY);
        if refreeze {
            // Let a task stuck on its way to the fridge run for a moment.
            let _ = write(&file, "THAWED");
            sleep(Duration::from_millis(10));
        }
        if refreeze || state == V1State::Thawed {
            if let Err(e) = write(&file, "FROZEN") {
                let _ = thaw_v1(dir);
                return Err(e);
            }
        }
        sleep(POLL);
    }
}

fn thaw_v1(dir: &Path) -> Result<(), CgroupError> {
    let file = dir.join("freezer.state");
    write(&file, "THAWED")?;
    // Thawing takes effect at once, but wait for the state file to agree so
    // a `state` right after `resume` never reads paused.
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        let state = read_state(dir)?;
        if state == V1State::Thawed {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(timed_out(&file, "THAWED", state));
        }
        sleep(POLL);
    }
}

fn freeze_v2(dir: &Path) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.freeze");
    write(&control, "1")?;
    let events = dir.join("cgroup.events");
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        match fs::read_to_string(&events) {
            Ok(s) if v2_frozen(&s) => return Ok(()),
            Ok(_) => {}
            Err(source) => {
                let _ = write(&control, "0");
                return Err(CgroupError::Read {
                    path: events,
                    source,
                });
            }
        }
        if Instant::now() >= deadline {
            let _ = write(&control, "0");
            return Err(CgroupError::Read {
                path: events,
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cgroup not frozen {}s after writing 1 to cgroup.freeze; thawed it again",
                        FREEZE_TIMEOUT.as_secs()
                    ),
                ),
            });
        }
        sleep(POLL);
    }
}

fn timed_out(file: &Path, want: &str, state: V1State) -> CgroupError {
    let now = match state {
        V1State::Thawed => "THAWED",
        V1State::Freezing => "FREEZING",
        V1State::Frozen => "FROZEN",
        V1State::Unknown => "an unknown state",
    };
    let tail = if want == "FROZEN" {
        "; thawed it again"
    } else {
        ""
    };
    CgroupError::Write {
        path: file.to_path_buf(),
        value: want.to_string(),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!("still {now} after {}s{tail}", FREEZE_TIMEOUT.as_secs()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cg(pairs: &[(&str, &str)]) -> Cgroup {
        Cgroup {
            paths: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn picks_v1_freezer_before_cgroup2() {
        let c = cg(&[("freezer", "/f/x"), ("unified", "/u/x"), ("memory", "/m/x")]);
        assert_eq!(c.freezer(), Some(Freezer::V1("/f/x".into())));
        let c = cg(&[("unified", "/u/x"), ("memory", "/m/x")]);
        assert_eq!(c.freezer(), Some(Freezer::V2("/u/x".into())));
        let c = cg(&[("cpu,cpuacct", "/c/x"), ("memory", "/m/x")]);
        assert_eq!(c.freezer(), None);
        assert!(matches!(c.freeze(), Err(CgroupError::NoFreezer)));
        assert!(matches!(c.thaw(), Err(CgroupError::NoFreezer)));
        assert!(!c.is_frozen());
    }

    #[test]
    fn parses_states() {
        assert_eq!(v1_state("FROZEN\n"), V1State::Frozen);
        assert_eq!(v1_state("FREEZING\n"), V1State::Freezing);
        assert_eq!(v1_state("THAWED\n"), V1State::Thawed);
        assert_eq!(v1_state(""), V1State::Unknown);
        assert!(v2_frozen("populated 1\nfrozen 1\n"));
        assert!(!v2_frozen("populated 1\nfrozen 0\n"));
        assert!(!v2_frozen("populated 0\n"));
    }

    #[test]
    fn missing_directories_are_not_frozen() {
        let c = cg(&[("freezer", "/nonexistent/berth/x")]);
        assert!(!c.is_frozen());
        let c = cg(&[("unified", "/nonexistent/berth/x")]);
        assert!(!c.is_frozen());
    }

    /// A directory standing in for a v1 freezer cgroup whose kernel side
    /// freezes at once: the state file keeps what was written.
    #[test]
    fn v1_freeze_and_thaw_through_the_state_file() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("freezer.state"), "THAWED\n").unwrap();
        let c = Cgroup {
            paths: [("freezer".to_string(), d.path().to_path_buf())].into(),
        };
        assert!(!c.is_frozen());
        c.freeze().unwrap();
        assert!(c.is_frozen());
        c.thaw().unwrap();
        assert!(!c.is_frozen());
    }

    /// CPU ticks (utime + stime) of `pid` from /proc/PID/stat.
    fn ticks(pid: u32) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // Fields 14 and 15 of the line are 12 and 13 after "pid (comm) ".
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Freeze a real busy loop in a fresh cgroup under `root` and check it
    /// stops using CPU, then runs again after the thaw.
    fn freeze_for_real(key: &str, root: &str) {
        let root = Path::new(root);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !root.is_dir() {
            eprintln!("skipped: needs root and {}", root.display());
            return;
        }
        let dir = root.join(format!("berth-freeze-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let c = Cgroup {
            paths: [(key.to_string(), dir.clone())].into(),
        };
        let result = std::panic::catch_unwind(|| {
            c.add(child.id() as i32).unwrap();
            c.freeze().unwrap();
            assert!(c.is_frozen());
            let before = ticks(child.id());
            sleep(Duration::from_millis(300));
            assert_eq!(ticks(child.id()), before, "a frozen task ran");
            c.thaw().unwrap();
            assert!(!c.is_frozen());
            let before = ticks(child.id());
            sleep(Duration::from_millis(300));
            assert!(ticks(child.id()) > before, "the thawed task did not run");
        });
        let _ = c.thaw();
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::write(root.join("cgroup.procs"), std::process::id().to_string());
        // The child's pid left with it; the directory is empty now.
        for _ in 0..100 {
            if fs::remove_dir(&dir).is_ok() {
                break;
            }
            sleep(Duration::from_millis(10));
        }
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    #[test]
    fn freezes_a_real_v1_cgroup() {
        freeze_for_real("freezer", "/sys/fs/cgroup/freezer");
    }

    #[test]
    fn freezes_a_real_cgroup2_directory() {
        freeze_for_real("unified", "/sys/fs/cgroup/unified");
    }
}
