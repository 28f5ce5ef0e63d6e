//! Concurrent berth invocations on one `--root`: the per-container lock makes
//! exactly one of two simultaneous `create`s of an id win; different ids do
//! not get in each other's way.
//!
//! Real containers, as root: `cargo test -p berth --test concurrency`.

use berth_integration::serde_json::json;
use berth_integration::{Bundle, Out, Runtime};
use std::sync::{Arc, Barrier};

fn sleeper(rt: &Runtime) -> Bundle {
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    b.write();
    b
}

/// Run `create --bundle B ID` for each (bundle, id) at the same moment.
fn create_all(rt: &Runtime, jobs: &[(&Bundle, &str)]) -> Vec<Out> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(b, id)| {
                let barrier = barrier.clone();
                let cmd = rt.command(&["create", "--bundle", b.path_str(), id]);
                s.spawn(move || {
                    barrier.wait();
                    berth_integration::exec(cmd, Default::default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn same_id_twice_at_once_exactly_one_wins() {
    let rt = Runtime::new("race-same");
    // Separate bundles so the two creates share nothing but the id.
    let (b1, b2) = (sleeper(&rt), sleeper(&rt));
    for _round in 0..5 {
        let id = rt.id();
        let outs = create_all(&rt, &[(&b1, &id), (&b2, &id)]);
        let winners: Vec<&Out> = outs.iter().filter(|o| o.success()).collect();
        let losers: Vec<&Out> = outs.iter().filter(|o| !o.success()).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one create of {id} should succeed:\n{}\n{}",
            outs[0],
            outs[1]
        );
        let loser = losers[0];
        assert_eq!(loser.code, Some(1), "{loser}");
        assert!(
            loser.stderr.contains("container with id exists"),
            "the loser should say the id exists: {loser}"
        );
        // The winner's container is intact and usable.
        let st = rt.state(&id).unwrap_or_else(|o| panic!("{o}"));
        assert_eq!(st["status"], "created", "{st}");
        let pid = st["pid"].as_i64().unwrap() as i32;
        assert!(berth_integration::pid_alive(pid), "{st}");
        rt.run(&["delete", "--force", &id]).ok();
        assert!(!rt.root().join(&id).exists());
    }
}

#[test]
fn eight_ids_in_parallel_all_succeed() {
    let rt = Runtime::new("race-many");
    let bundles: Vec<Bundle> = (0..8).map(|_| sleeper(&rt)).collect();
    let ids: Vec<String> = (0..8).map(|_| rt.id()).collect();
    let jobs: Vec<(&Bundle, &str)> = bundles.iter().zip(ids.iter().map(|s| s.as_str())).collect();
    let outs = create_all(&rt, &jobs);
    for o in &outs {
        assert!(o.success(), "parallel create failed: {o}");
    }
    let list = rt.run(&["list", "-q"]).ok();
    let listed: Vec<&str> = list.stdout.lines().map(str::trim).collect();
    for id in &ids {
        assert!(
            listed.contains(&id.as_str()),
            "{id} missing from list -q: {list}"
        );
        assert_eq!(rt.status(id).as_deref(), Some("created"), "{id}");
    }
    assert_eq!(listed.len(), 8, "list -q shows exactly our 8: {list}");
    // Distinct containers: distinct init processes.
    let mut pids: Vec<i32> = ids.iter().map(|id| rt.pid(id)).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 8, "{pids:?}");
}
