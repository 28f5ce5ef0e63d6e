//! Images through the CLI: a test's runtime whose every command names the
//! test's image store (`--store`, `--storage-driver`, `--storage-opt`),
//! and edits of the bundles `bundle create` makes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{Opts, Out, Runtime};

/// A test's runtime and image store.
pub struct StoreCli {
    pub rt: Runtime,
    /// The test's temp dir (removed with the runtime).
    pub tmp: PathBuf,
    /// The store (default: `tmp/store`).
    pub store: PathBuf,
    pub driver: &'static str,
    /// `--storage-opt` values (`KEY=VALUE`).
    pub opts: Vec<String>,
    /// How long one command may take.
    pub timeout: Duration,
}

impl StoreCli {
    pub fn new(rt: Runtime, driver: &'static str) -> StoreCli {
        let tmp = rt.tempdir();
        StoreCli {
            store: tmp.join("store"),
            rt,
            tmp,
            driver,
            opts: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// `--store S --storage-driver D [--storage-opt O]... ARGS`.
    pub fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "--store",
            self.store.to_str().unwrap(),
            "--storage-driver",
            self.driver,
        ];
        for o in &self.opts {
            v.extend(["--storage-opt", o.as_str()]);
        }
        v.extend_from_slice(args);
        v
    }

    /// `berth --root R --store S --storage-driver D ... ARGS`.
    pub fn berth(&self, args: &[&str]) -> Out {
        self.rt.run_opts(
            &self.args(args),
            Opts {
                timeout: self.timeout,
                ..Default::default()
            },
        )
    }

    /// `image import PATH --name NAME`.
    pub fn import(&self, path: &Path, name: &str) -> Out {
        self.berth(&["image", "import", path.to_str().unwrap(), "--name", name])
    }

    /// `bundle create --image IMAGE` into `tmp/bundle-TAG` (must succeed).
    pub fn bundle(&self, image: &str, tag: &str) -> PathBuf {
        let dir = self.tmp.join(format!("bundle-{tag}"));
        self.berth(&["bundle", "create", "--image", image, dir.to_str().unwrap()])
            .ok();
        dir
    }
}

pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Edit a bundle's config.json.
pub fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let p = bundle.join("config.json");
    let mut v = read_json(&p);
    f(&mut v);
    write_json(&p, &v);
}
