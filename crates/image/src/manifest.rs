//! index.json → the manifest for this platform → its config and layers
//! (oci-spec's image types), or the same read from a docker-save
//! manifest.json (an OCI manifest is synthesised for it).

use std::collections::BTreeSet;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::source::DockerImage;
use crate::{compress, Digest, ImageError, Result, Source, SourceKind};

/// The platform to pick from an index: `linux/amd64` on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform berth runs on, in GOARCH names (x86_64 → amd64, aarch64 → arm64).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "powerpc" => "ppc",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            other => other, // s390x, riscv64, mips64, mips, sparc64 keep their names
        };
        let variant = (arch == "arm").then(|| "v7".to_string());
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant,
        }
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == arch
            && match (self.variant.as_deref(), variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn platform_name(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// One layer of the chosen manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The blob's digest (for docker-save tars: the diff_id).
    pub digest: Digest,
    /// The blob's size from the descriptor (None when the source has none).
    pub size: Option<u64>,
    pub media_type: String,
    /// The uncompressed layer's digest, from the config's rootfs.diff_ids.
    pub diff_id: Digest,
}

/// An image resolved to one manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest_digest: Digest,
    /// The manifest's bytes as stored (synthesised for docker-save).
    pub manifest_json: Vec<u8>,
    pub config_digest: Digest,
    pub config_json: Vec<u8>,
    pub config: oci_spec::image::ImageConfiguration,
    /// Bottom layer first.
    pub layers: Vec<LayerRef>,
    /// The name the source gives it: the index's
    /// `org.opencontainers.image.ref.name` annotation, or a docker RepoTag.
    pub ref_name: Option<String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Nested indexes deeper than this are refused (a loop, or abuse).
const MAX_DEPTH: usize = 8;

/// Pick the manifest for `platform` (and, when the source holds several
/// images, the one called `name`), read and verify it and its config.
pub fn resolve(src: &Source, platform: &Platform, name: Option<&str>) -> Result<Resolved> {
    match src.kind() {
        SourceKind::DockerSave => resolve_docker(src, platform, name),
        _ => resolve_oci(src, platform, name),
    }
}

/// The tag part of a reference (`latest` of `docker.io/library/x:latest`).
fn tag_of(r: &str) -> Option<&str> {
    let r = r.split_once('@').map(|(a, _)| a).unwrap_or(r);
    let (head, tag) = r.rsplit_once(':')?;
    // A ':' before the last '/' is a registry port, not a tag.
    (!tag.contains('/') && !head.is_empty()).then_some(tag)
}

/// Of the refs present, those `name` selects: equal, or `name`'s tag part
/// equal to a ref that is only a tag, or a ref whose tag part is `name`.
fn select_refs<'a>(refs: &BTreeSet<&'a str>, name: &str) -> Vec<&'a str> {
    if refs.contains(name) {
        return vec![refs.get(name).copied().unwrap()];
    }
    refs.iter()
        .copied()
        .filter(|r| Some(*r) == tag_of(name) || tag_of(r) == Some(name))
        .collect()
}

fn malformed(what: impl Into<String>, msg: impl Into<String>) -> ImageError {
    ImageError::Malformed {
        what: what.into(),
        msg: msg.into(),
    }
}

/// Narrow `items` (each with an optional ref name) to one image's.
fn pick_by_name<T>(
    items: Vec<(Option<String>, T)>,
    name: Option<&str>,
    what: &str,
) -> Result<Vec<(Option<String>, T)>> {
    let refs: BTreeSet<&str> = items.iter().filter_map(|(r, _)| r.as_deref()).collect();
    let list = || refs.iter().copied().collect::<Vec<_>>().join(", ");
    match name {
        Some(name) => {
            let chosen = select_refs(&refs, name);
            match chosen.len() {
                1 => {
                    let chosen = chosen[0].to_string();
                    Ok(items
                        .into_iter()
                        .filter(|(r, _)| r.as_deref() == Some(chosen.as_str()))
                        .collect())
                }
                0 if refs.is_empty() => Ok(items),
                0 => Err(malformed(
                    what,
                    format!("no image called {name:?} (it has: {})", list()),
                )),
                _ => Err(malformed(
                    what,
                    format!("{name:?} matches several images: {}", chosen.join(", ")),
                )),
            }
        }
        None if refs.len() > 1 => Err(malformed(
            what,
            format!("holds several images, name one: {}", list()),
        )),
        None => Ok(items),
    }
}

struct Candidate {
    desc: Descriptor,
    /// os/arch/variant from the descriptor, if it has a platform.
    platform: Option<(String, String, Option<String>)>,
}

fn parse_digest(s: &str, what: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| malformed(what, e.to_string()))
}

/// Collect every image manifest reachable from `index`, with the ref name
/// of the top-level descriptor it hangs under.
fn collect(
    src: &Source,
    index: &ImageIndex,
    inherited: Option<&str>,
    depth: usize,
    out: &mut Vec<(Option<String>, Candidate)>,
) -> Result<()> {
    for desc in index.manifests() {
        let ref_name = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
            .or(inherited);
        let mt = desc.media_type().to_string();
        let digest = parse_digest(desc.digest().as_ref(), "index")?;
        if mt == OCI_INDEX || mt == DOCKER_LIST {
            if depth >= MAX_DEPTH {
                return Err(malformed(
                    format!("index {digest}"),
                    format!("indexes nested more than {MAX_DEPTH} deep"),
                ));
            }
            let bytes = src.read_blob(&digest, Some(desc.size()))?;
            let nested = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| malformed(format!("index {digest}"), e.to_string()))?;
            collect(src, &nested, ref_name, depth + 1, out)?;
        } else if mt == OCI_MANIFEST || mt == DOCKER_MANIFEST {
            let platform = desc.platform().as_ref().map(|p| {
                (
                    p.os().to_string(),
                    p.architecture().to_string(),
                    p.variant().clone().filter(|v| !v.is_empty()),
                )
            });
            out.push((
                ref_name.map(str::to_string),
                Candidate {
                    desc: desc.clone(),
                    platform,
                },
            ));
        }
        // Anything else (artifacts, signatures) is not an image: skipped.
    }
    Ok(())
}

fn resolve_oci(src: &Source, platform: &Platform, name: Option<&str>) -> Result<Resolved> {
    let what = src.describe("index.json");
    let bytes = src.read_file("index.json")?;
    let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| malformed(&what, e.to_string()))?;
    if index.schema_version() != 2 {
        return Err(malformed(
            &what,
            format!("schemaVersion {} (2 expected)", index.schema_version()),
        ));
    }
    let mut all = Vec::new();
    collect(src, &index, None, 0, &mut all)?;
    if all.is_empty() {
        return Err(malformed(&what, "lists no image manifest"));
    }
    let cands = pick_by_name(all, name, &what)?;

    let mut available = BTreeSet::new();
    // Descriptors that name their platform first, the best (variant equal) first.
    let mut best: Option<(bool, &Candidate, &Option<String>)> = None;
    for (r, c) in &cands {
        if let Some((os, arch, variant)) = &c.platform {
            // buildkit's attestation manifests say unknown/unknown.
            if os != "unknown" {
                available.insert(platform_name(os, arch, variant.as_deref()));
            }
            if platform.matches(os, arch, variant.as_deref()) {
                let exact = variant.is_some() && variant == &platform.variant;
                if best.is_none() || (exact && !best.unwrap().0) {
                    best = Some((exact, c, r));
                }
            }
        }
    }
    if let Some((_, c, r)) = best {
        return load_manifest(src, &c.desc, platform, r.clone(), true);
    }
    // Then those without a platform: their config says.
    for (r, c) in &cands {
        if c.platform.is_none() {
            let resolved = load_manifest(src, &c.desc, platform, r.clone(), false)?;
            let cfg = &resolved.config;
            let (os, arch) = (cfg.os().to_string(), cfg.architecture().to_string());
            if platform.matches(&os, &arch, cfg.variant().as_deref()) {
                return Ok(resolved);
            }
            available.insert(platform_name(&os, &arch, cfg.variant().as_deref()));
        }
    }
    Err(ImageError::NoPlatform {
        wanted: platform.to_string(),
        available: available.into_iter().collect::<Vec<_>>().join(", "),
    })
}

/// Read the manifest `desc` points at and its config, verify and validate.
/// `check_platform`: the config's os/architecture must match `platform`
/// (the descriptor claimed they do).
fn load_manifest(
    src: &Source,
    desc: &Descriptor,
    platform: &Platform,
    ref_name: Option<String>,
    check_platform: bool,
) -> Result<Resolved> {
    let manifest_digest = parse_digest(desc.digest().as_ref(), "index")?;
    let manifest_json = src.read_blob(&manifest_digest, Some(desc.size()))?;
    let what = format!("manifest {manifest_digest}");
    let manifest = ImageManifest::from_reader(&manifest_json[..])
        .map_err(|e| malformed(&what, e.to_string()))?;
    if manifest.schema_version() != 2 {
        return Err(malformed(
            &what,
            format!("schemaVersion {} (2 expected)", manifest.schema_version()),
        ));
    }
    let cfg_desc = manifest.config();
    let cfg_mt = cfg_desc.media_type().to_string();
    if cfg_mt != OCI_CONFIG && cfg_mt != DOCKER_CONFIG {
        return Err(malformed(
            &what,
            format!("config media type {cfg_mt:?} is not an image config ({OCI_CONFIG})"),
        ));
    }
    let config_digest = parse_digest(cfg_desc.digest().as_ref(), &what)?;
    let config_json = src.read_blob(&config_digest, Some(cfg_desc.size()))?;
    let mut layers = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        let digest = parse_digest(l.digest().as_ref(), &format!("{what}: layers[{i}]"))?;
        layers.push((digest, Some(l.size()), l.media_type().to_string()));
    }
    let config = finish(
        &config_digest,
        &config_json,
        &what,
        platform,
        check_platform,
        &mut layers,
    )?;
    Ok(Resolved {
        manifest_digest,
        manifest_json,
        config_digest,
        config_json,
        layers: config.1,
        config: config.0,
        ref_name,
    })
}

/// Parse and check the config against the manifest's layers; build the
/// LayerRefs.
fn finish(
    config_digest: &Digest,
    config_json: &[u8],
    manifest_what: &str,
    platform: &Platform,
    check_platform: bool,
    layers: &mut Vec<(Digest, Option<u64>, String)>,
) -> Result<(ImageConfiguration, Vec<LayerRef>)> {
    let cwhat = format!("config {config_digest}");
    let config = ImageConfiguration::from_reader(config_json)
        .map_err(|e| malformed(&cwhat, e.to_string()))?;
    if config.rootfs().typ() != "layers" {
        return Err(malformed(
            &cwhat,
            format!(
                "rootfs.type {:?} (\"layers\" expected)",
                config.rootfs().typ()
            ),
        ));
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(malformed(
            manifest_what,
            format!(
                "{} layers, but config {config_digest} lists {} diff_ids",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    if check_platform {
        let (os, arch) = (config.os().to_string(), config.architecture().to_string());
        if !platform.matches(&os, &arch, config.variant().as_deref()) {
            return Err(malformed(
                &cwhat,
                format!(
                    "is for {}, the index said {platform}",
                    platform_name(&os, &arch, config.variant().as_deref())
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (i, ((digest, size, media_type), diff_id)) in layers.drain(..).zip(diff_ids).enumerate() {
        let diff_id = parse_digest(diff_id, &format!("{cwhat}: rootfs.diff_ids[{i}]"))?;
        compress::for_media_type(&media_type, &digest)?;
        out.push(LayerRef {
            digest,
            size,
            media_type,
            diff_id,
        });
    }
    Ok((config, out))
}

fn resolve_docker(src: &Source, platform: &Platform, name: Option<&str>) -> Result<Resolved> {
    let what = src.describe("manifest.json");
    let images = src.docker_images();
    // Each image under each of its tags (untagged: once, without a name).
    let mut items: Vec<(Option<String>, &DockerImage)> = Vec::new();
    for img in images {
        if img.repo_tags.is_empty() {
            items.push((None, img));
        }
        for t in &img.repo_tags {
            items.push((Some(t.clone()), img));
        }
    }
    let mut chosen = pick_by_name(items, name, &what)?;
    // Several tags of one image are one image; several images need a name.
    let configs: BTreeSet<&str> = chosen.iter().map(|(_, i)| i.config.as_str()).collect();
    if configs.len() > 1 {
        return Err(malformed(
            &what,
            format!(
                "holds {} images, name one by a RepoTag (configs: {})",
                configs.len(),
                configs.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let (_, img) = chosen.remove(0);
    let img = img.clone();
    let ref_name = img.repo_tags.first().cloned();

    let config_json = src.read_blob(&img.config, Some(img.config_size))?;
    let mut layers: Vec<(Digest, Option<u64>, String)> = img
        .layers
        .iter()
        .map(|(d, size)| (d.clone(), Some(*size), OCI_LAYER.to_string()))
        .collect();
    let mwhat = format!("manifest.json image {}", img.config);
    let (config, layer_refs) = finish(
        &img.config,
        &config_json,
        &mwhat,
        platform,
        false,
        &mut layers,
    )?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if !platform.matches(&os, &arch, config.variant().as_deref()) {
        return Err(ImageError::NoPlatform {
            wanted: platform.to_string(),
            available: platform_name(&os, &arch, config.variant().as_deref()),
        });
    }
    // The synthesised manifest: fixed key order, no whitespace.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": img.config.as_str(),
            "size": img.config_size,
        },
        "layers": layer_refs.iter().map(|l| serde_json::json!({
            "mediaType": OCI_LAYER,
            "digest": l.digest.as_str(),
            "size": l.size.unwrap_or(0),
        })).collect::<Vec<_>>(),
    });
    let manifest_json = serde_json::to_vec(&manifest).expect("a JSON value serialises");
    Ok(Resolved {
        manifest_digest: Digest::sha256_of(&manifest_json),
        manifest_json,
        config_digest: img.config.clone(),
        config_json,
        config,
        layers: layer_refs,
        ref_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform() {
        let p = Platform::host();
        assert_eq!(p.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(p.architecture, "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(p.architecture, "arm64");
        assert_eq!(p.variant.is_some(), p.architecture == "arm");
    }

    #[test]
    fn tags_and_names() {
        assert_eq!(tag_of("docker.io/library/busybox:latest"), Some("latest"));
        assert_eq!(tag_of("localhost:5000/busybox"), None);
        assert_eq!(tag_of("busybox:1.36@sha256:abc"), Some("1.36"));
        assert_eq!(tag_of("latest"), None);
        let refs: BTreeSet<&str> = ["latest", "v2"].into_iter().collect();
        assert_eq!(select_refs(&refs, "busybox:v2"), vec!["v2"]);
        assert_eq!(select_refs(&refs, "latest"), vec!["latest"]);
        let refs: BTreeSet<&str> = ["busybox:latest", "alpine:3"].into_iter().collect();
        assert_eq!(select_refs(&refs, "3"), vec!["alpine:3"]);
        assert!(select_refs(&refs, "debian").is_empty());
    }
}
