//! `image`, `bundle` and `snapshot`: the layer store commands.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use berth_backends::images::SnapshotOp;
use berth_backends::Runtime;
use berth_storage::Store;

use crate::cli::{BundleCmd, Cli, ImageCmd, ListFormat, SnapshotCmd};

fn open_store(cli: &Cli, rt: &Runtime) -> Result<Store> {
    let cfg = berth_backends::store_config(&cli.storage_flags(), &rt.config)?;
    let root = cfg.root.clone();
    Store::open(cfg).with_context(|| format!("open the image store {}", root.display()))
}

pub fn image(cli: &Cli, rt: &Runtime, cmd: &ImageCmd) -> Result<()> {
    let store = open_store(cli, rt)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCmd::Import(a) => {
            let img = store
                .import(&a.path, a.name.as_deref())
                .with_context(|| format!("import {}", a.path.display()))?;
            writeln!(out, "{} {}", img.name, img.manifest)?;
        }
        ImageCmd::Ls(a) => {
            let images = store.images()?;
            if a.quiet {
                for i in &images {
                    writeln!(out, "{}", i.name)?;
                }
                return Ok(());
            }
            match a.format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&images)?)?,
                ListFormat::Table => {
                    let mut rows = vec![[
                        "NAME".to_string(),
                        "MANIFEST".into(),
                        "LAYERS".into(),
                        "SIZE".into(),
                        "IMPORTED".into(),
                    ]];
                    for i in &images {
                        rows.push([
                            i.name.clone(),
                            i.manifest.hex()[..12].to_string(),
                            i.layers.len().to_string(),
                            human_size(i.size),
                            i.imported.clone(),
                        ]);
                    }
                    write!(out, "{}", crate::table(&rows))?;
                }
            }
        }
        ImageCmd::Inspect(a) => {
            let img = store.image(&a.image)?;
            let config = store.image_config(&img)?;
            let mut v = serde_json::to_value(&img)?;
            v["imageConfig"] = serde_json::to_value(&config)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        ImageCmd::Rm(a) => {
            for r in &a.images {
                let img = store
                    .remove_image(r)
                    .with_context(|| format!("remove image {r}"))?;
                writeln!(out, "{}", img.name)?;
            }
        }
    }
    Ok(())
}

pub fn bundle(cli: &Cli, rt: &Runtime, cmd: &BundleCmd) -> Result<()> {
    let BundleCmd::Create(a) = cmd;
    let store = open_store(cli, rt)?;
    let spec = berth_backends::images::bundle_spec(&store, &a.image, a.tty, &*rt.warn)
        .with_context(|| format!("bundle create {}", a.dir.display()))?;
    let rootfs = a.dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).with_context(|| format!("create {}", rootfs.display()))?;
    crate::write_config(&a.dir, &spec)
}

pub fn snapshot(rt: &Runtime, cmd: &SnapshotCmd) -> Result<()> {
    let (id, op) = match cmd {
        SnapshotCmd::Create(a) => (
            &a.id,
            SnapshotOp::Create {
                name: a.name.as_deref().unwrap_or(""),
                keep_last: a.keep_last,
            },
        ),
        SnapshotCmd::List(a) => (&a.id, SnapshotOp::List),
        SnapshotCmd::Restore(a) => (&a.id, SnapshotOp::Restore { name: &a.name }),
        SnapshotCmd::Delete(a) => (&a.id, SnapshotOp::Delete { name: &a.name }),
    };
    let default_name;
    let op = match op {
        SnapshotOp::Create {
            name: "",
            keep_last,
        } => {
            default_name = timestamp_name(&berth_state::now_rfc3339());
            SnapshotOp::Create {
                name: &default_name,
                keep_last,
            }
        }
        op => op,
    };
    if matches!(
        op,
        SnapshotOp::Create {
            keep_last: Some(0),
            ..
        }
    ) {
        return Err(anyhow!("--keep-last must be at least 1"));
    }
    let what = match &op {
        SnapshotOp::Create { name, .. } => format!("snapshot {name} of container {id}"),
        SnapshotOp::List => format!("list snapshots of container {id}"),
        SnapshotOp::Restore { name } => format!("restore container {id} to snapshot {name}"),
        SnapshotOp::Delete { name } => format!("delete snapshot {name} of container {id}"),
    };
    let list = matches!(op, SnapshotOp::List);
    let snaps = rt.snapshot(id, op).context(what)?;
    if let (true, SnapshotCmd::List(a)) = (list, cmd) {
        let mut out = std::io::stdout().lock();
        match a.format {
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&snaps)?)?,
            ListFormat::Table => {
                writeln!(out, "{:<32} CREATED", "NAME")?;
                for s in &snaps {
                    writeln!(out, "{:<32} {}", s.name, s.created)?;
                }
            }
        }
    }
    Ok(())
}

/// `2026-11-22T09:40:01.123Z` → `20261122T094001Z`.
fn timestamp_name(rfc3339: &str) -> String {
    let secs = rfc3339.split('.').next().unwrap_or(rfc3339);
    let mut s: String = secs.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    s.push('Z');
    s
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_snapshot_names_and_sizes() {
        assert_eq!(
            super::timestamp_name("2026-11-22T09:40:01.123456789Z"),
            "20261122T094001Z"
        );
        assert_eq!(super::human_size(999), "999B");
        assert_eq!(super::human_size(215_000_000), "215.0MB");
    }
}
