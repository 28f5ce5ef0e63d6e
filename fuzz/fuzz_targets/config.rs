//! config.json bytes → `berth_bundle::parse` + `validate`, and the same bytes
//! through `berth_bundle::load` (what `create` runs) from a real bundle
//! directory.
//!
//! Beyond "no panic", the three entry points must agree:
//! - a spec `parse` accepts serializes, and its serialization parses again;
//! - `load` never accepts what `parse` rejects;
//! - what `load` accepts, `validate` accepts too;
//! - every error, problem and warning is one line (when the config's strings
//!   are).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The bundle directory of this fuzzing process, with an empty `rootfs/`;
/// each input is written to its config.json.
static BUNDLE: OnceLock<PathBuf> = OnceLock::new();

fn bundle_dir() -> &'static Path {
    BUNDLE.get_or_init(|| {
        // tmpfs if there is one: rewriting a file on ext4 costs a writeback.
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale(&tmp);
        let dir = tmp.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).expect("create the fuzz bundle");
        // SAFETY: registers an extern "C" fn taking nothing, which libc calls
        // at exit (libFuzzer exits through exit() when a bounded run ends).
        unsafe { libc::atexit(remove_bundle) };
        dir.canonicalize().expect("canonical bundle path")
    })
}

const PREFIX: &str = "berth-fuzz-";

/// Removes the bundles of fuzzing processes that are gone (a crash skips
/// the removal at exit), and one left with this process's pid.
fn remove_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && Path::new("/proc").join(pid).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

extern "C" fn remove_bundle() {
    if let Some(dir) = BUNDLE.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = bundle_dir();
    let parsed = berth_bundle::parse(data);
    let validation = parsed
        .as_ref()
        .ok()
        .map(|spec| berth_bundle::validate(spec, dir));
    if let Ok(spec) = &parsed {
        round_trip(spec);
    }

    std::fs::write(dir.join("config.json"), data).expect("write config.json");
    let loaded = berth_bundle::load(dir);

    // Without a backslash no JSON string holds a control character, so a
    // message quoting the config has no reason to span lines.
    if !data.contains(&b'\\') {
        let mut lines: Vec<String> = Vec::new();
        lines.extend(parsed.as_ref().err().map(ToString::to_string));
        lines.extend(loaded.as_ref().err().map(ToString::to_string));
        lines.extend(loaded.iter().flat_map(|b| b.warnings.iter().cloned()));
        if let Some(v) = &validation {
            lines.extend(v.problems.iter().map(ToString::to_string));
            lines.extend(v.warnings.iter().cloned());
        }
        for line in lines {
            assert!(!line.contains('\n'), "a message of several lines: {line:?}");
        }
    }
    if let Ok(loaded) = &loaded {
        assert!(
            parsed.is_ok(),
            "load accepted a config that parse rejects: {:?}",
            parsed.err()
        );
        let validation = validation.expect("parsed");
        assert!(
            validation.is_ok(),
            "load accepted a config that validate rejects: {:?}",
            validation.problems
        );
        assert_eq!(loaded.dir, dir);
        assert!(loaded.rootfs.is_absolute());
    }
});

/// A spec that parsed serializes, and what it serializes to parses again.
fn round_trip(spec: &oci_spec::runtime::Spec) {
    let json = serde_json::to_vec(spec).expect("a parsed spec serializes");
    if let Err(e) = berth_bundle::parse(&json) {
        panic!(
            "a parsed spec does not parse again after serializing: {e}\n{}",
            String::from_utf8_lossy(&json)
        );
    }
}
