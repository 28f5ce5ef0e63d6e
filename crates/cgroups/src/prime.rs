//! Starting the cgroup-migration grace period early.
//!
//! Moving a process into a cgroup (a write to `cgroup.procs`) takes the
//! kernel's global `cgroup_threadgroup_rwsem` for writing. Unless a hierarchy
//! is mounted with `favordynmods`, taking it first waits for an RCU grace
//! period (`rcu_sync_enter`): 5 to 15 ms on an idle machine, measured here,
//! during which the caller sleeps. A migration within about one grace period
//! of the previous one skips the wait. Every runtime's `create` and `exec`
//! pay it once, on their first write to `cgroup.procs`, after they have
//! parsed the bundle and forked.
//!
//! [`prime_migration`] makes that wait start at the top of the command
//! instead: a thread "moves" berth into the cgroup it already is in (a no-op
//! migration that still takes the lock), so the grace period runs while the
//! main thread reads config.json, validates it and builds the plan, and the
//! real migration later finds the lock cheap. If anything about it fails
//! (no permission, an unusual mount), nothing happens and the real migration
//! simply waits as before.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::Hierarchies;

/// Start the no-op migration in a background thread; the returned handle may
/// be dropped (the thread ends on its own within one grace period). `None`
/// when no hierarchy of `h` holding this process could be found.
pub fn prime_migration(h: &Hierarchies) -> Option<JoinHandle<io::Result<()>>> {
    let procs = own_procs_file(h)?;
    std::thread::Builder::new()
        .name("cgroup-prime".into())
        .stack_size(64 * 1024)
        .spawn(move || migrate_self(&procs))
        .ok()
}

/// `cgroup.procs` of this process's own cgroup in one hierarchy: the first
/// (cgroup2 preferred) whose mount shows the cgroup /proc/self/cgroup names.
fn own_procs_file(h: &Hierarchies) -> Option<PathBuf> {
    let mut list: Vec<_> = h.list.iter().collect();
    list.sort_by_key(|h| !h.is_unified());
    list.into_iter()
        .map(|h| {
            h.mountpoint
                .join(h.own.strip_prefix("/").unwrap_or(&h.own))
                .join("cgroup.procs")
        })
        .find(|p| p.is_file())
}

/// Write our pid to `procs` only if it lists us already: a mount that shows
/// another part of the hierarchy than /proc/self/cgroup suggests (a bind
/// mount, a foreign cgroup namespace) must not move berth anywhere.
fn migrate_self(procs: &std::path::Path) -> io::Result<()> {
    let pid = std::process::id().to_string();
    let listed = fs::read_to_string(procs)?;
    if !listed.lines().any(|l| l == pid) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not list this process", procs.display()),
        ));
    }
    fs::write(procs, pid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priming_leaves_this_process_where_it_was() {
        let before = fs::read_to_string("/proc/self/cgroup").unwrap();
        let h = Hierarchies::detect().unwrap();
        let handle = prime_migration(&h).expect("a hierarchy holding this process");
        handle.join().unwrap().expect("no-op migration written");
        assert_eq!(fs::read_to_string("/proc/self/cgroup").unwrap(), before);
    }

    #[test]
    fn a_procs_file_that_does_not_list_us_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let procs = dir.path().join("cgroup.procs");
        fs::write(&procs, "1\n2\n").unwrap();
        let err = migrate_self(&procs).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(fs::read_to_string(&procs).unwrap(), "1\n2\n");
    }
}
