//! What berth keeps in `state.json`, and the JSON shapes it prints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The OCI runtime-spec version reported when the stored config names none.
pub const DEFAULT_OCI_VERSION: &str = "1.2.1";

/// berth's own persisted record of one container (`state.json`, camelCase).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    /// The container init process in the runtime's pid namespace (0: none yet).
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat` when `pid` was recorded, to detect pid reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 UTC with fractional seconds (see [`crate::now_rfc3339`]).
    pub created: String,
    /// runc prints `""` unless rootless; berth keeps `""`.
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `"native"` or `"crun"` (or another backend's name).
    pub backend: String,
    /// Controller name, or `"unified"` on cgroup v2, to the absolute cgroup dir.
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// The cgroup existed before the container (it is shared): delete
    /// neither signals everything in it nor removes it.
    #[serde(default)]
    pub cgroup_shared: bool,
    /// The validated config.json, kept for `delete` (poststop hooks) and friends.
    #[serde(default)]
    pub config: serde_json::Value,
    /// What the root filesystem was assembled from (berth-storage's
    /// `RootfsRecord`), saved before anything is mounted or cloned so
    /// `delete --force` can take it down after a crash. None: the bundle
    /// brought its own rootfs directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<serde_json::Value>,
}

/// `state.json` as `state` and `list` need it: every field of [`Record`]
/// but the config, of which only `ociVersion` is read. Skipping the config
/// instead of building it as a JSON tree is most of the cost of `list`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BriefRecord {
    id: String,
    pid: i32,
    pid_start: u64,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    backend: String,
    #[serde(default)]
    cgroup_paths: BTreeMap<String, PathBuf>,
    #[serde(default)]
    cgroup_shared: bool,
    #[serde(default)]
    config: Option<ConfigVersion>,
    #[serde(default)]
    storage: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct ConfigVersion {
    #[serde(rename = "ociVersion")]
    oci_version: Option<String>,
}

impl From<BriefRecord> for Record {
    /// A [`Record`] whose `config` holds only `ociVersion` (when it had one).
    fn from(b: BriefRecord) -> Record {
        let config = match b.config.and_then(|c| c.oci_version) {
            Some(v) => serde_json::json!({ "ociVersion": v }),
            None => serde_json::Value::Null,
        };
        Record {
            id: b.id,
            pid: b.pid,
            pid_start: b.pid_start,
            bundle: b.bundle,
            rootfs: b.rootfs,
            created: b.created,
            owner: b.owner,
            annotations: b.annotations,
            backend: b.backend,
            cgroup_paths: b.cgroup_paths,
            cgroup_shared: b.cgroup_shared,
            config,
            storage: b.storage,
        }
    }
}

impl Record {
    /// `ociVersion` of the stored config, else [`DEFAULT_OCI_VERSION`].
    pub fn oci_version(&self) -> &str {
        self.config
            .get("ociVersion")
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_OCI_VERSION)
    }

    /// The `berth state` / `berth list --format json` object. As runc does,
    /// the pid is reported as 0 once the container is stopped.
    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: self.oci_version().to_string(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }

    /// The runtime-spec state object that hooks read on stdin.
    pub fn hook_state(&self, status: Status) -> HookState {
        HookState {
            oci_version: self.oci_version().to_string(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped || self.pid <= 0 {
                None
            } else {
                Some(self.pid)
            },
            bundle: self.bundle.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Container status as the OCI runtime spec names it (plus runc's `paused`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the five statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown container status {0:?} (expected creating, created, running, stopped or paused)")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "creating" => Status::Creating,
            "created" => Status::Created,
            "running" => Status::Running,
            "stopped" => Status::Stopped,
            "paused" => Status::Paused,
            _ => return Err(UnknownStatus(s.to_string())),
        })
    }
}

/// What `runc state ID` prints, field for field and in runc's order:
/// `ociVersion, id, pid, status, bundle, rootfs, created, annotations?, owner`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// The runtime-spec `state` object (what hooks get on stdin):
/// `ociVersion, id, status, pid?, bundle, annotations?`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct HookState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(id: &str) -> Record {
        Record {
            id: id.to_string(),
            pid: 4242,
            pid_start: 777,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-02T03:04:05.123456789Z".into(),
            owner: String::new(),
            annotations: BTreeMap::new(),
            backend: "native".into(),
            cgroup_paths: [("unified".to_string(), PathBuf::from("/sys/fs/cgroup/x"))].into(),
            cgroup_shared: false,
            storage: None,
            config: serde_json::json!({"ociVersion": "1.0.2-dev", "process": {"args": ["sh"]}}),
        }
    }

    #[test]
    fn record_is_camel_case_and_round_trips() {
        let rec = sample("c1");
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["pidStart"], 777);
        assert_eq!(v["cgroupPaths"]["unified"], "/sys/fs/cgroup/x");
        assert!(v.get("statusHint").is_none());
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn brief_record_is_the_record_with_only_the_config_version() {
        let mut rec = sample("c1");
        rec.storage = Some(serde_json::json!({"driver": "overlay"}));
        let bytes = serde_json::to_vec(&rec).unwrap();
        let brief: Record = serde_json::from_slice::<BriefRecord>(&bytes)
            .unwrap()
            .into();
        assert_eq!(brief.config, serde_json::json!({"ociVersion": "1.0.2-dev"}));
        assert_eq!(brief.oci_version(), rec.oci_version());
        assert_eq!(
            Record {
                config: rec.config.clone(),
                ..brief
            },
            rec
        );
        // A record saved before its config was known (null), or without one.
        rec.config = serde_json::Value::Null;
        let bytes = serde_json::to_vec(&rec).unwrap();
        let brief: Record = serde_json::from_slice::<BriefRecord>(&bytes)
            .unwrap()
            .into();
        assert_eq!(brief.oci_version(), DEFAULT_OCI_VERSION);
    }

    #[test]
    fn oci_state_matches_runc_shape() {
        let mut rec = sample("c1");
        let json = serde_json::to_string(&rec.oci_state(Status::Running)).unwrap();
        assert_eq!(
            json,
            r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":4242,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-02T03:04:05.123456789Z","owner":""}"#
        );
        rec.annotations.insert("k".into(), "v".into());
        rec.config = serde_json::Value::Null;
        let json = serde_json::to_string(&rec.oci_state(Status::Stopped)).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"ociVersion":"{DEFAULT_OCI_VERSION}","id":"c1","pid":0,"status":"stopped","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-02T03:04:05.123456789Z","annotations":{{"k":"v"}},"owner":""}}"#
            )
        );
    }

    #[test]
    fn hook_state_shape() {
        let rec = sample("c1");
        let json = serde_json::to_string(&rec.hook_state(Status::Created)).unwrap();
        assert_eq!(
            json,
            r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"created","pid":4242,"bundle":"/b"}"#
        );
        let json = serde_json::to_string(&rec.hook_state(Status::Stopped)).unwrap();
        assert!(!json.contains("pid"), "{json}");
    }

    #[test]
    fn status_text() {
        for s in [
            Status::Creating,
            Status::Created,
            Status::Running,
            Status::Stopped,
            Status::Paused,
        ] {
            assert_eq!(s.to_string().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("Running".parse::<Status>().is_err());
    }
}
