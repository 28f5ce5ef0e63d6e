//! The backend seam: which engine runs a container, and the lifecycle
//! operations (create, start, state, kill, delete, run) every engine shares.
//!
//! A [`Backend`] is a small table of operations; `native` is berth's own
//! Linux implementation, `crun` hands the same bundle to crun with crun's
//! state kept inside berth's container directory. One backend knows nothing
//! of another. The choice comes from the config.json annotation
//! `run.berth.backend`, else `backend = "..."` in `/etc/berth/config.toml`,
//! else `native`.

pub mod criu;
mod crun;
pub mod exec;
mod foreground;
pub mod images;
mod native;
pub mod ops;

use std::path::{Path, PathBuf};

use berth_state::{Container, Record, Status};

pub use ops::{CreateOptions, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    #[error(transparent)]
    Bundle(#[from] berth_bundle::BundleError),
    #[error(transparent)]
    Linux(#[from] berth_linux::LinuxError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::CgroupError),
    #[error(transparent)]
    Storage(#[from] berth_storage::StorageError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// runc's wording, which clients match on.
    #[error("container not running")]
    NotRunning,
    #[error("cannot start a container in the {0} state")]
    CannotStart(Status),
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },
    #[error("{backend}: {op} failed: {detail}")]
    Engine {
        backend: &'static str,
        op: &'static str,
        detail: String,
    },
    #[error("{op} is not supported by the {backend} backend yet")]
    Unsupported {
        op: &'static str,
        backend: &'static str,
    },
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, BackendError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
    let what = what.into();
    move |source| BackendError::Io { what, source }
}

/// What `create` needs besides the bundle.
pub struct CreateRequest<'a> {
    pub container: &'a Container,
    pub bundle: &'a berth_bundle::Bundle,
    pub opts: &'a CreateOptions,
    /// Foreground `run`: keep the pty master instead of a console socket.
    pub keep_console: bool,
    /// Where warnings go (the CLI's logger).
    pub warn: &'a dyn Fn(&str),
}

pub struct Created {
    pub pid: i32,
    pub console_master: Option<std::os::fd::OwnedFd>,
}

/// One container engine. Operations other than the five of the OCI runtime
/// spec have default implementations that say the backend lacks them.
pub trait Backend {
    fn name(&self) -> &'static str;

    /// Create the container and leave it waiting for `start`. `rec` is saved
    /// by the backend as soon as it knows something `delete` will need.
    fn create(&self, req: &CreateRequest<'_>, rec: &mut Record) -> Result<Created>;

    fn start(&self, c: &Container, rec: &Record) -> Result<()>;

    /// Status from the live process; `dir` is the container's state
    /// directory (read without the lock).
    fn status(&self, dir: &Path, rec: &Record) -> Status;

    fn kill(&self, dir: &Path, rec: &Record, signal: i32, all: bool) -> Result<()>;

    /// Stop what still runs (the caller has checked `force` against the
    /// status) and release everything but the state directory.
    fn destroy(&self, c: &Container, rec: &Record) -> Result<()>;

    /// Run a process in the container; its exit status unless detached.
    fn exec(&self, _c: &Container, _rec: &Record, _req: &exec::ExecRequest<'_>) -> Result<i32> {
        Err(BackendError::Unsupported {
            op: "exec",
            backend: self.name(),
        })
    }
    fn pause(&self, _c: &Container, _rec: &Record) -> Result<()> {
        Err(BackendError::Unsupported {
            op: "pause",
            backend: self.name(),
        })
    }
    fn resume(&self, _c: &Container, _rec: &Record) -> Result<()> {
        Err(BackendError::Unsupported {
            op: "resume",
            backend: self.name(),
        })
    }
    /// Apply `resources` (already validated) to the running container.
    fn update(
        &self,
        _c: &Container,
        _rec: &Record,
        _resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        Err(BackendError::Unsupported {
            op: "update",
            backend: self.name(),
        })
    }
    /// Pids of every process in the container (`dir`: its state directory,
    /// read without the lock).
    fn ps(&self, _dir: &Path, _rec: &Record) -> Result<Vec<i32>> {
        Err(BackendError::Unsupported {
            op: "ps",
            backend: self.name(),
        })
    }
    /// Resource usage in runc's `events --stats` schema (the `data` object).
    fn stats(&self, _dir: &Path, _rec: &Record) -> Result<serde_json::Value> {
        Err(BackendError::Unsupported {
            op: "events",
            backend: self.name(),
        })
    }
    /// How many times the kernel's OOM killer killed in the container.
    fn oom_kills(&self, _dir: &Path, _rec: &Record) -> Result<u64> {
        Err(BackendError::Unsupported {
            op: "events",
            backend: self.name(),
        })
    }
}

/// The backend called `name` (one of `berth_bundle::BACKENDS`).
pub fn backend(name: &str) -> Result<Box<dyn Backend>> {
    match name {
        "native" => Ok(Box::new(native::Native)),
        "crun" => Ok(Box::new(crun::Crun::locate()?)),
        other => Err(BackendError::Invalid(format!(
            "unknown backend {other:?}; known: {}",
            berth_bundle::BACKENDS.join(", ")
        ))),
    }
}

/// The host-wide configuration file, `/etc/berth/config.toml` unless
/// `BERTH_CONFIG` names another.
pub fn config_path() -> PathBuf {
    std::env::var_os("BERTH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/berth/config.toml"))
}

/// The host config file as a TOML table (None when there is no file).
fn config_table(config: &Path) -> Result<Option<toml::Table>> {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("read {}", config.display()))(e)),
    };
    text.parse()
        .map(Some)
        .map_err(|e: toml::de::Error| BackendError::Config {
            path: config.to_path_buf(),
            msg: e.message().to_string(),
        })
}

/// Which backend runs this container.
pub fn choose(spec: &oci_spec::runtime::Spec, config: &Path) -> Result<String> {
    if let Some(name) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(berth_bundle::BACKEND_ANNOTATION))
    {
        return Ok(name.clone());
    }
    let Some(table) = config_table(config)? else {
        return Ok("native".into());
    };
    match table.get("backend") {
        None => Ok("native".into()),
        Some(toml::Value::String(name)) if berth_bundle::BACKENDS.contains(&name.as_str()) => {
            Ok(name.clone())
        }
        Some(v) => Err(BackendError::Config {
            path: config.to_path_buf(),
            msg: format!(
                "backend = {v:?}: must be one of {}",
                berth_bundle::BACKENDS
                    .iter()
                    .map(|b| format!("\"{b}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// `--store`, `--storage-driver` and `--storage-opt` as given on the
/// command line (unset: from the config file, else the defaults).
#[derive(Debug, Default, Clone)]
pub struct StorageFlags {
    pub store: Option<PathBuf>,
    pub driver: Option<String>,
    /// `KEY=VALUE` each.
    pub options: Vec<String>,
}

/// The layer store and driver: flags first, then `store`,
/// `storage-driver` and `storage-opt` (an array of "KEY=VALUE") in the
/// config file, then /var/lib/berth and overlay. Options merge key by
/// key, the flag's value winning.
pub fn store_config(flags: &StorageFlags, config: &Path) -> Result<berth_storage::StoreConfig> {
    let table = config_table(config)?.unwrap_or_default();
    let bad = |key: &str, what: &str| BackendError::Config {
        path: config.to_path_buf(),
        msg: format!("{key}: {what}"),
    };
    let text = |key: &str| -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "must be a string")),
        }
    };
    let root = match &flags.store {
        Some(p) => p.clone(),
        None => text("store")?
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(berth_storage::DEFAULT_STORE)),
    };
    // Saved in each container's state: `delete` may run from elsewhere.
    let root = if root.is_absolute() {
        root
    } else {
        std::env::current_dir()
            .map_err(io_err("current directory"))?
            .join(root)
    };
    let driver = match &flags.driver {
        Some(d) => d.parse()?,
        None => match text("storage-driver")? {
            Some(d) => d
                .parse()
                .map_err(|e: berth_storage::StorageError| bad("storage-driver", &e.to_string()))?,
            None => berth_storage::DriverKind::Overlay,
        },
    };
    let mut options = std::collections::BTreeMap::new();
    match table.get("storage-opt") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for item in items {
                let Some(kv) = item.as_str() else {
                    return Err(bad(
                        "storage-opt",
                        "must be an array of \"KEY=VALUE\" strings",
                    ));
                };
                let (k, v) = split_opt(kv).map_err(|e| bad("storage-opt", &e))?;
                options.insert(k, v);
            }
        }
        Some(_) => {
            return Err(bad(
                "storage-opt",
                "must be an array of \"KEY=VALUE\" strings",
            ))
        }
    }
    for kv in &flags.options {
        let (k, v) =
            split_opt(kv).map_err(|e| BackendError::Invalid(format!("--storage-opt {e}")))?;
        options.insert(k, v);
    }
    Ok(berth_storage::StoreConfig {
        root,
        driver,
        options,
    })
}

fn split_opt(kv: &str) -> std::result::Result<(String, String), String> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{kv:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotation: Option<&str>) -> oci_spec::runtime::Spec {
        let mut spec = oci_spec::runtime::Spec::default();
        if let Some(a) = annotation {
            spec.set_annotations(Some(
                [(berth_bundle::BACKEND_ANNOTATION.to_string(), a.to_string())].into(),
            ));
        }
        spec
    }

    #[test]
    fn annotation_then_config_file_then_native() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        assert_eq!(choose(&spec_with(None), &cfg).unwrap(), "native");
        std::fs::write(&cfg, "backend = \"crun\"\n").unwrap();
        assert_eq!(choose(&spec_with(None), &cfg).unwrap(), "crun");
        assert_eq!(choose(&spec_with(Some("native")), &cfg).unwrap(), "native");
        std::fs::write(&cfg, "backend = \"lxd\"\n").unwrap();
        let e = choose(&spec_with(None), &cfg).unwrap_err().to_string();
        assert!(e.contains("must be one of \"native\", \"crun\""), "{e}");
        std::fs::write(&cfg, "backend = \n").unwrap();
        assert!(choose(&spec_with(None), &cfg)
            .unwrap_err()
            .to_string()
            .contains("config.toml"));
    }

    #[test]
    fn storage_flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        let none = StorageFlags::default();
        let c = store_config(&none, &cfg).unwrap();
        assert_eq!(c.root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.driver, berth_storage::DriverKind::Overlay);
        std::fs::write(
            &cfg,
            "store = \"/s\"\nstorage-driver = \"zfs\"\nstorage-opt = [\"zfs.dataset=a/b\", \"x=1\"]\n",
        )
        .unwrap();
        let c = store_config(&none, &cfg).unwrap();
        assert_eq!(c.root, PathBuf::from("/s"));
        assert_eq!(c.driver, berth_storage::DriverKind::Zfs);
        assert_eq!(c.options["zfs.dataset"], "a/b");
        let flags = StorageFlags {
            store: Some("/t".into()),
            driver: Some("vfs".into()),
            options: vec!["x=2".into()],
        };
        let c = store_config(&flags, &cfg).unwrap();
        let relative = StorageFlags {
            store: Some("rel/store".into()),
            ..Default::default()
        };
        assert_eq!(
            store_config(&relative, &cfg).unwrap().root,
            std::env::current_dir().unwrap().join("rel/store")
        );
        assert_eq!(
            (
                c.root,
                c.driver,
                c.options["x"].as_str(),
                c.options["zfs.dataset"].as_str()
            ),
            (
                PathBuf::from("/t"),
                berth_storage::DriverKind::Vfs,
                "2",
                "a/b"
            )
        );
        let bad = StorageFlags {
            options: vec!["novalue".into()],
            ..Default::default()
        };
        let e = store_config(&bad, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("--storage-opt \"novalue\": expected KEY=VALUE"),
            "{e}"
        );
        std::fs::write(&cfg, "storage-driver = \"ext9\"\n").unwrap();
        let e = store_config(&none, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("storage-driver: unknown storage driver \"ext9\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_backend_name_is_an_error() {
        let err = backend("lxd")
            .err()
            .expect("lxd is not a backend")
            .to_string();
        assert!(err.contains("known: native, crun"), "{err}");
        assert_eq!(backend("native").map(|b| b.name()).ok(), Some("native"));
    }
}
