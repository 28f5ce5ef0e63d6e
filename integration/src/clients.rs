//! Fixtures for the real-client suites (`tests/containerd.rs`,
//! `tests/podman.rs`): a local busybox image as an OCI archive, and a
//! private containerd daemon.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::oci::{Compression, ImageBuilder, LayerBuilder};

/// Ref name of the busybox image whose process runs as root.
pub const BUSYBOX_TEST: &str = "busybox:test";
/// Ref name of the same image whose config sets `User` to `1000:1000`.
pub const BUSYBOX_USER: &str = "busybox:user";

/// Build `DIR/busybox.oci.tar`: an OCI archive holding the busybox test root
/// filesystem ([`crate::base_rootfs`]: static busybox, /etc/passwd with root,
/// berth (1000:1000) and nobody, /etc/group, /etc/hostname) as one gzip
/// layer, under two index entries: `busybox:test` (Cmd `sh`) and
/// `busybox:user` (Cmd `sh`, User `1000:1000`). Both share the layer blob.
/// The index annotation `org.opencontainers.image.ref.name` carries each
/// name. Returns the archive's path.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("busybox-layout");
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(&layout).expect("create busybox layout dir");
    let env = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let image = |user: Option<&str>| {
        let env = env.clone();
        let user = user.map(String::from);
        ImageBuilder::new()
            .layer(
                LayerBuilder::from_dir(&crate::base_rootfs()),
                Compression::Gzip,
            )
            .config(move |c| {
                c["Cmd"] = json!(["sh"]);
                c["Env"] = env;
                if let Some(u) = user {
                    c["User"] = json!(u);
                }
            })
    };
    // Two layouts in one directory: blobs are content-addressed, so the
    // second write only adds its manifest and config; the indexes merge.
    image(None).write_layout(&layout, BUSYBOX_TEST);
    let first = read_index(&layout);
    image(Some("1000:1000")).write_layout(&layout, BUSYBOX_USER);
    let mut index = read_index(&layout);
    let mut manifests = first["manifests"].as_array().cloned().unwrap_or_default();
    manifests.extend(index["manifests"].as_array().cloned().unwrap_or_default());
    index["manifests"] = Value::Array(manifests);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .expect("write merged index.json");
    let out = dir.join("busybox.oci.tar");
    crate::oci::tar_dir(&layout, &out);
    std::fs::remove_dir_all(&layout).expect("remove busybox layout dir");
    out
}

fn read_index(layout: &Path) -> Value {
    let p = layout.join("index.json");
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}
