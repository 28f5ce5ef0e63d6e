//! Containers from images: the config.json `bundle create --image` writes,
//! and snapshots of a container's writable layer.

use std::collections::HashMap;
use std::path::Path;

use berth_state::Status;
use berth_storage::{ImageRecord, RootfsRecord, Snapshot, Store};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Spec, User};

use crate::ops::{rootfs_record, Runtime};
use crate::{backend, BackendError, Result};

/// Annotations with this prefix are berth's settings (backend, image).
const BERTH_PREFIX: &str = "run.berth.";

/// PATH when the image sets none (the one container engines use).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config.json for a container of image `reference`: `berth spec`'s
/// defaults with the image's entrypoint + cmd, env, user, working
/// directory and labels (as annotations), a writable root at `rootfs`,
/// and the annotations that make `create` assemble it from the store.
pub fn bundle_spec(
    store: &Store,
    reference: &str,
    terminal: bool,
    warn: &dyn Fn(&str),
) -> Result<Spec> {
    let img = store.image(reference)?;
    let cfg = store.image_config(&img)?;
    let mut spec = berth_bundle::template(false);
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_readonly(Some(false));
    spec.set_root(Some(root));

    let c = cfg.config().clone().unwrap_or_default();
    let mut args: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    args.extend(c.cmd().clone().unwrap_or_default());
    if args.is_empty() {
        return Err(BackendError::Invalid(format!(
            "image {}: its config has neither Entrypoint nor Cmd: nothing to run",
            img.name
        )));
    }
    let mut env = c.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_terminal(Some(terminal));
    process.set_cwd(
        c.working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
            .into(),
    );
    process.set_user(image_user(store, &img, c.user().as_deref().unwrap_or(""))?);
    spec.set_process(Some(process));

    let mut annotations: HashMap<String, String> = c.labels().clone().unwrap_or_default();
    // berth's own annotations choose how the container runs: the image
    // author does not get to (edit config.json to set them).
    annotations.retain(|k, _| {
        let ours = k.starts_with(BERTH_PREFIX);
        if ours {
            warn(&format!(
                "image {}: label {k:?} not copied to the bundle's annotations ({BERTH_PREFIX}* are berth's settings)",
                img.name
            ));
        }
        !ours
    });
    annotations.extend(platform_annotations(&cfg));
    if let Some(sig) = c.stop_signal() {
        annotations.insert("org.opencontainers.image.stopSignal".into(), sig.clone());
    }
    annotations.insert(berth_storage::IMAGE_ANNOTATION.into(), img.name.clone());
    annotations.insert(
        berth_storage::MANIFEST_ANNOTATION.into(),
        img.manifest.to_string(),
    );
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

/// The image spec's conversion annotations for what the config says about
/// the image itself.
fn platform_annotations(cfg: &ImageConfiguration) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "org.opencontainers.image.os".to_string(),
            cfg.os().to_string(),
        ),
        (
            "org.opencontainers.image.architecture".to_string(),
            cfg.architecture().to_string(),
        ),
    ];
    if let Some(created) = cfg.created() {
        out.push(("org.opencontainers.image.created".into(), created.clone()));
    }
    if let Some(author) = cfg.author() {
        out.push(("org.opencontainers.image.author".into(), author.clone()));
    }
    out
}

/// The image's `User` ("", name, uid, uid:gid, name:group, …) as uid, gid
/// and the user's other groups, names looked up in the image's
/// /etc/passwd and /etc/group.
fn image_user(store: &Store, img: &ImageRecord, user: &str) -> Result<User> {
    let read = |path: &str| -> Result<String> {
        Ok(store
            .read_file(img, Path::new(path))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let (who, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let mut out = User::default();
    if who.is_empty() && group.is_none() {
        return Ok(out);
    }
    let passwd = read("/etc/passwd")?;
    // passwd: name:x:uid:gid:...
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == who || (who.parse::<u32>().is_ok() && f[2] == who)));
    let (uid, name, primary) = match (who.parse::<u32>(), &entry) {
        (Ok(uid), e) => (
            uid,
            e.as_ref().map(|f| f[0].to_string()),
            e.as_ref().and_then(|f| f[3].parse().ok()),
        ),
        (Err(_), Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| bad_user(img, user, "its uid in /etc/passwd is not a number"))?,
            Some(f[0].to_string()),
            f[3].parse().ok(),
        ),
        (Err(_), None) if who.is_empty() => (0, None, None),
        (Err(_), None) => {
            return Err(bad_user(
                img,
                user,
                &format!("no user {who:?} in the image's /etc/passwd"),
            ))
        }
    };
    let groups = read("/etc/group")?;
    // group: name:x:gid:member,member
    let group_fields: Vec<Vec<&str>> = groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_fields
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    bad_user(
                        img,
                        user,
                        &format!("no group {g:?} in the image's /etc/group"),
                    )
                })?,
        },
        None => primary.unwrap_or(0),
    };
    out.set_uid(uid);
    out.set_gid(gid);
    if let (Some(name), None) = (name, group) {
        let extra: Vec<u32> = group_fields
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect();
        if !extra.is_empty() {
            out.set_additional_gids(Some(extra));
        }
    }
    Ok(out)
}

fn bad_user(img: &ImageRecord, user: &str, why: &str) -> BackendError {
    BackendError::Invalid(format!("image {}: User {user:?}: {why}", img.name))
}

/// What a snapshot command does.
pub enum SnapshotOp<'a> {
    Create {
        name: &'a str,
        keep_last: Option<usize>,
    },
    List,
    Restore {
        name: &'a str,
    },
    Delete {
        name: &'a str,
    },
}

impl Runtime {
    /// `snapshot create|list|restore|delete` on a container whose rootfs
    /// berth assembled from an image. Snapshots are taken of a stopped or
    /// paused (or created) container; restore needs it stopped. Returns the
    /// snapshots for `List`.
    pub fn snapshot(&self, id: &str, op: SnapshotOp<'_>) -> Result<Vec<Snapshot>> {
        let c = self.root.open(id)?;
        let rec = c.load()?;
        let rootfs: RootfsRecord = rootfs_record(&rec)?.ok_or_else(|| {
            BackendError::Invalid(format!(
                "container {id} has no root filesystem from an image (its bundle names none): nothing to snapshot"
            ))
        })?;
        let status = backend(&rec.backend)?.status(c.dir(), &rec);
        let need = |ok: &[Status], what: &str| -> Result<()> {
            if ok.contains(&status) {
                Ok(())
            } else {
                Err(BackendError::Invalid(format!(
                    "cannot {what} container {id} while it is {status}: stop{} it first",
                    if ok.contains(&Status::Paused) {
                        " or pause"
                    } else {
                        ""
                    }
                )))
            }
        };
        match op {
            SnapshotOp::Create { name, keep_last } => {
                need(
                    &[Status::Created, Status::Stopped, Status::Paused],
                    "snapshot",
                )?;
                berth_storage::snapshot_create(&rootfs, name, keep_last)?;
                Ok(Vec::new())
            }
            SnapshotOp::List => Ok(berth_storage::snapshot_list(&rootfs)?),
            SnapshotOp::Restore { name } => {
                need(&[Status::Stopped], "restore a snapshot of")?;
                berth_storage::snapshot_restore(&rootfs, name)?;
                Ok(Vec::new())
            }
            SnapshotOp::Delete { name } => {
                berth_storage::snapshot_delete(&rootfs, name)?;
                Ok(Vec::new())
            }
        }
    }
}
