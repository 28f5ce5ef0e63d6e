//! Arbitrary bytes as a layer tar, unpacked in both whiteout modes into a
//! directory that has a sibling: whatever the tar says, nothing may appear
//! outside the layer directory, and a refusal is an error, never a panic.
#![no_main]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::unpack::{unpack, Whiteouts};
use libfuzzer_sys::fuzz_target;

static RUN: AtomicU64 = AtomicU64::new(0);

/// The names directly in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("berth-fuzz-unpack-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let layer = base.join("a/b/layer");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::write(base.join("a/b/canary"), b"c").unwrap();
    std::fs::write(layer.join("lower"), b"l").unwrap();
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        let _ = unpack(data, &layer, mode, "sha256:fuzz");
        assert_eq!(names(&base), ["a"], "wrote beside a/");
        assert_eq!(names(&base.join("a")), ["b"], "wrote beside a/b/");
        assert_eq!(
            names(&base.join("a/b")),
            ["canary", "layer"],
            "wrote beside the layer"
        );
        assert_eq!(
            std::fs::read(base.join("a/b/canary")).unwrap(),
            b"c",
            "changed the canary"
        );
    }
    std::fs::remove_dir_all(&base).unwrap();
});
