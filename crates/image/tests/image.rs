//! Sources, manifest resolution and layer verification on real files.

mod common;

use std::path::Path;

use berth_image::{layer, resolve, Digest, ImageError, Platform, Source, SourceKind, Whiteouts};
use common::*;
use serde_json::json;

fn small_layer() -> Vec<u8> {
    Tar::new()
        .dir("etc", 0o755)
        .file("etc/hello", b"hello\n")
        .build()
}

fn host() -> Platform {
    Platform::host()
}

fn apply_all(src: &Source, name: Option<&str>, dest: &Path) -> berth_image::Result<()> {
    let r = resolve(src, &host(), name)?;
    for l in &r.layers {
        layer::apply(src, l, dest, Whiteouts::Apply)?;
    }
    Ok(())
}

#[test]
fn layout_dir_resolves_and_applies() {
    let t = tmp();
    let tar = small_layer();
    simple_layout(&t.path().join("img"), tar.clone(), gzip(&tar), OCI_LAYER_GZ);
    let src = Source::open(&t.path().join("img")).unwrap();
    assert_eq!(src.kind(), SourceKind::Layout);
    let r = resolve(&src, &host(), None).unwrap();
    assert_eq!(r.layers.len(), 1);
    assert_eq!(r.layers[0].diff_id, Digest::sha256_of(&tar));
    assert_eq!(r.layers[0].media_type, OCI_LAYER_GZ);
    assert_eq!(r.manifest_digest, Digest::sha256_of(&r.manifest_json));
    assert_eq!(r.config_digest, Digest::sha256_of(&r.config_json));
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let stats = layer::apply(&src, &r.layers[0], &dest, Whiteouts::Overlay).unwrap();
    assert_eq!(stats.entries, 2);
    assert_eq!(stats.bytes, 6);
    assert_eq!(std::fs::read(dest.join("etc/hello")).unwrap(), b"hello\n");
}

#[test]
fn oci_archive_read_in_place() {
    let t = tmp();
    let tar = small_layer();
    simple_layout(
        &t.path().join("img"),
        tar.clone(),
        zstd(&tar),
        OCI_LAYER_ZST,
    );
    let archive = t.path().join("img.tar");
    tar_of_dir(&t.path().join("img"), &archive);
    let src = Source::open(&archive).unwrap();
    assert_eq!(src.kind(), SourceKind::OciArchive);
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    apply_all(&src, None, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("etc/hello")).unwrap(), b"hello\n");
}

/// A docker-save tar: manifest.json, <id>.json config, <id>/layer.tar.
fn docker_save(path: &Path, layers: &[Vec<u8>], arch: &str, tags: &[&str]) -> Digest {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let cd = Digest::sha256_of(&config);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let cfg_name = format!("{}.json", cd.hex());
    add(&cfg_name, &config);
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("layer{i}/layer.tar");
        add(&n, l);
        names.push(n);
    }
    let manifest = json!([{"Config": cfg_name, "RepoTags": tags, "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
    cd
}

#[test]
fn docker_save_resolves_and_applies() {
    let t = tmp();
    let l0 = small_layer();
    let l1 = Tar::new().file("etc/other", b"x").build();
    let path = t.path().join("save.tar");
    let cd = docker_save(
        &path,
        &[l0.clone(), l1.clone()],
        &host_arch(),
        &["busybox:latest"],
    );
    let src = Source::open(&path).unwrap();
    assert_eq!(src.kind(), SourceKind::DockerSave);
    let r = resolve(&src, &host(), None).unwrap();
    assert_eq!(r.ref_name.as_deref(), Some("busybox:latest"));
    assert_eq!(r.config_digest, cd);
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.layers[1].digest, Digest::sha256_of(&l1));
    assert_eq!(r.layers[1].size, Some(l1.len() as u64));
    assert_eq!(r.layers[1].media_type, OCI_LAYER);
    assert_eq!(r.manifest_digest, Digest::sha256_of(&r.manifest_json));
    // Deterministic: the same image resolves to the same manifest digest.
    let again = resolve(&src, &host(), Some("busybox:latest")).unwrap();
    assert_eq!(again.manifest_digest, r.manifest_digest);
    let m: serde_json::Value = serde_json::from_slice(&r.manifest_json).unwrap();
    assert_eq!(m["layers"][0]["digest"], digest_of(&l0));
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    apply_all(&src, None, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("etc/other")).unwrap(), b"x");
    assert_eq!(std::fs::read(dest.join("etc/hello")).unwrap(), b"hello\n");

    // Another platform's docker-save: NoPlatform naming what it is.
    let p2 = t.path().join("s390x.tar");
    docker_save(&p2, &[l0], "s390x", &[]);
    let e = resolve(&Source::open(&p2).unwrap(), &host(), None).unwrap_err();
    assert!(matches!(e, ImageError::NoPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/s390x"), "{e}");
}

#[test]
fn docker_save_layer_corrupt_is_digest_mismatch() {
    let t = tmp();
    let l0 = small_layer();
    let path = t.path().join("save.tar");
    docker_save(&path, std::slice::from_ref(&l0), &host_arch(), &["x:1"]);
    // Flip a byte of the file content inside the layer tar, in place.
    let mut bytes = std::fs::read(&path).unwrap();
    let pos = bytes.windows(6).position(|w| w == b"hello\n").unwrap();
    bytes[pos] = b'j';
    std::fs::write(&path, &bytes).unwrap();
    let src = Source::open(&path).unwrap();
    let r = resolve(&src, &host(), None).unwrap();
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let e = layer::apply(&src, &r.layers[0], &dest, Whiteouts::Apply).unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
}

#[test]
fn nested_index_and_platform_choice() {
    let t = tmp();
    let l = Layout::new(t.path());
    let tar_a = Tar::new().file("which", b"arm64").build();
    let tar_h = Tar::new().file("which", b"host").build();
    let other = if host_arch() == "arm64" {
        "s390x"
    } else {
        "arm64"
    };
    let ma = l.image("linux", other, &[(tar_a.clone(), tar_a, OCI_LAYER)]);
    let mh = l.image("linux", &host_arch(), &[(tar_h.clone(), tar_h, OCI_LAYER)]);
    let nested = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        with_platform(ma, "linux", other),
        with_platform(mh.clone(), "linux", &host_arch()),
    ]});
    let nd = l.blob(OCI_INDEX, &serde_json::to_vec(&nested).unwrap());
    l.index(vec![with_ref(nd, "latest")]);
    let src = Source::open(t.path()).unwrap();
    let r = resolve(&src, &host(), None).unwrap();
    assert_eq!(r.manifest_digest.as_str(), mh["digest"].as_str().unwrap());
    assert_eq!(r.ref_name.as_deref(), Some("latest"));
    // The ref name selects by tag part too.
    assert!(resolve(&src, &host(), Some("example.com/x:latest")).is_ok());
    let e = resolve(&src, &host(), Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image called \"nope\"") && e.contains("latest"),
        "{e}"
    );

    // A platform nothing has: NoPlatform listing both.
    let mips = Platform {
        os: "linux".into(),
        architecture: "mips64".into(),
        variant: None,
    };
    let e = resolve(&src, &mips, None).unwrap_err();
    let want = {
        let mut v = [format!("linux/{other}"), format!("linux/{}", host_arch())];
        v.sort();
        v.join(", ")
    };
    assert_eq!(
        e.to_string(),
        format!("no manifest for linux/mips64 in the image (it has: {want})")
    );
}

#[test]
fn descriptor_without_platform_uses_config_and_several_refs_need_a_name() {
    let t = tmp();
    let l = Layout::new(t.path());
    let t1 = Tar::new().file("n", b"one").build();
    let t2 = Tar::new().file("n", b"two").build();
    let m1 = l.image("linux", &host_arch(), &[(t1.clone(), t1, OCI_LAYER)]);
    let m2 = l.image("linux", &host_arch(), &[(t2.clone(), t2, OCI_LAYER)]);
    l.index(vec![
        with_ref(m1.clone(), "one"),
        with_ref(m2.clone(), "two"),
    ]);
    let src = Source::open(t.path()).unwrap();
    let e = resolve(&src, &host(), None).unwrap_err().to_string();
    assert!(
        e.contains("several images") && e.contains("one, two"),
        "{e}"
    );
    let r = resolve(&src, &host(), Some("two")).unwrap();
    assert_eq!(r.manifest_digest.as_str(), m2["digest"].as_str().unwrap());
    assert_eq!(r.ref_name.as_deref(), Some("two"));
    let r = resolve(&src, &host(), Some("img:one")).unwrap();
    assert_eq!(r.manifest_digest.as_str(), m1["digest"].as_str().unwrap());
}

#[test]
fn corrupt_config_is_digest_mismatch_and_missing_blob() {
    let t = tmp();
    let tar = small_layer();
    let l = simple_layout(t.path(), tar.clone(), tar, OCI_LAYER);
    let src = Source::open(t.path()).unwrap();
    let r = resolve(&src, &host(), None).unwrap();
    let cfg = l.root.join("blobs/sha256").join(r.config_digest.hex());
    let mut bytes = std::fs::read(&cfg).unwrap();
    bytes[0] = b' ';
    std::fs::write(&cfg, &bytes).unwrap();
    let e = resolve(&src, &host(), None).unwrap_err();
    assert!(
        matches!(&e, ImageError::DigestMismatch { digest, .. } if *digest == r.config_digest),
        "{e}"
    );
    std::fs::remove_file(&cfg).unwrap();
    let e = resolve(&src, &host(), None).unwrap_err();
    assert!(
        matches!(&e, ImageError::MissingBlob(d) if *d == r.config_digest),
        "{e}"
    );
}

/// A layout whose single layer's descriptor says `size` and whose blob
/// file holds `stored`.
fn layer_with(
    t: &Path,
    tar: &[u8],
    stored: &[u8],
    desc_size: Option<u64>,
    mt: &str,
    diff: Option<String>,
) -> (Source, berth_image::LayerRef) {
    let l = simple_layout(t, tar.to_vec(), stored.to_vec(), mt);
    let src = Source::open(&l.root).unwrap();
    let mut r = resolve(&src, &host(), None).unwrap().layers.remove(0);
    if let Some(s) = desc_size {
        r.size = Some(s);
    }
    if let Some(d) = diff {
        r.diff_id = Digest::parse(&d).unwrap();
    }
    (src, r)
}

fn apply_err(src: &Source, l: &berth_image::LayerRef, t: &Path) -> ImageError {
    let dest = t.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    layer::apply(src, l, &dest, Whiteouts::Overlay).unwrap_err()
}

#[test]
fn size_mismatch_longer_and_shorter() {
    let tar = small_layer();
    for delta in [-1i64, 1] {
        let t = tmp();
        let size = (tar.len() as i64 + delta) as u64;
        let (src, l) = layer_with(t.path(), &tar, &tar, Some(size), OCI_LAYER, None);
        let e = apply_err(&src, &l, t.path());
        assert!(
            matches!(e, ImageError::SizeMismatch { expected, actual, .. }
                if expected == size && actual == tar.len() as u64),
            "{e}"
        );
    }
}

#[test]
fn corrupt_gzip_blob_is_reported_as_digest_mismatch() {
    let t = tmp();
    let tar = small_layer();
    let gz = gzip(&tar);
    let l = simple_layout(t.path(), tar, gz.clone(), OCI_LAYER_GZ);
    let src = Source::open(&l.root).unwrap();
    let r = resolve(&src, &host(), None).unwrap();
    // Corrupt the stored blob after resolving (same size).
    let p = l.root.join("blobs/sha256").join(r.layers[0].digest.hex());
    let mut bad = gz;
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let e = apply_err(&src, &r.layers[0], t.path());
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
}

#[test]
fn truncated_gzip_names_the_blob() {
    let t = tmp();
    let tar = Tar::new().file("big", &vec![7u8; 300_000]).build();
    let gz = gzip(&tar);
    let cut = gz[..gz.len() / 2].to_vec();
    // The descriptor describes the truncated blob: digest and size agree.
    let (src, l) = layer_with(t.path(), &tar, &cut, None, OCI_LAYER_GZ, None);
    let e = apply_err(&src, &l, t.path());
    let msg = e.to_string();
    assert!(msg.contains(l.digest.as_str()), "{msg}");
    assert!(matches!(e, ImageError::Io { .. }), "{msg}");
}

#[test]
fn zstd_and_gzip_and_plain_layers() {
    for (mt, f) in [
        (OCI_LAYER_ZST, zstd as fn(&[u8]) -> Vec<u8>),
        (OCI_LAYER_GZ, gzip),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", gzip),
        ("application/octet-stream", zstd),
        (OCI_LAYER, |b: &[u8]| b.to_vec()),
    ] {
        let t = tmp();
        let tar = small_layer();
        let (src, l) = layer_with(t.path(), &tar, &f(&tar), None, mt, None);
        let dest = t.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        layer::apply(&src, &l, &dest, Whiteouts::Overlay).unwrap();
        assert_eq!(
            std::fs::read(dest.join("etc/hello")).unwrap(),
            b"hello\n",
            "{mt}"
        );
    }
}

#[test]
fn diff_id_mismatch() {
    let t = tmp();
    let tar = small_layer();
    let wrong = digest_of(b"not this layer");
    let (src, l) = layer_with(
        t.path(),
        &tar,
        &gzip(&tar),
        None,
        OCI_LAYER_GZ,
        Some(wrong.clone()),
    );
    let e = apply_err(&src, &l, t.path());
    assert!(
        matches!(&e, ImageError::DiffIdMismatch { expected, actual, .. }
            if expected.as_str() == wrong && *actual == Digest::sha256_of(&tar)),
        "{e}"
    );
}

#[test]
fn bzip2_layer_is_unsupported() {
    let t = tmp();
    let tar = small_layer();
    let l = Layout::new(t.path());
    let m = l.image(
        "linux",
        &host_arch(),
        &[(
            tar.clone(),
            tar,
            "application/vnd.oci.image.layer.v1.tar+bzip2",
        )],
    );
    l.index(vec![m]);
    let src = Source::open(t.path()).unwrap();
    let e = resolve(&src, &host(), None).unwrap_err().to_string();
    assert!(e.contains("tar+bzip2"), "{e}");
}

#[test]
fn bad_layout_version_and_unknown_tar() {
    let t = tmp();
    let tar = small_layer();
    let l = simple_layout(t.path(), tar.clone(), tar, OCI_LAYER);
    std::fs::write(
        l.root.join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let e = Source::open(&l.root).err().unwrap().to_string();
    assert!(e.contains("2.0.0"), "{e}");
    let other = t.path().join("other.tar");
    std::fs::write(&other, Tar::new().file("x", b"y").build()).unwrap();
    let e = Source::open(&other).err().unwrap().to_string();
    assert!(e.contains("neither index.json"), "{e}");
}

#[test]
fn docker_save_symlinked_duplicate_layer() {
    // docker save writes a layer that appears twice once, the second
    // `layer.tar` a symlink to the first.
    let t = tmp();
    let l0 = small_layer();
    let diff = digest_of(&l0);
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff, diff]}
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(config.len() as u64);
    b.append_data(&mut h, "c.json", &config[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(l0.len() as u64);
    b.append_data(&mut h, "a/layer.tar", &l0[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "b/layer.tar", "../a/layer.tar")
        .unwrap();
    let m =
        json!([{"Config": "c.json", "RepoTags": null, "Layers": ["a/layer.tar", "b/layer.tar"]}]);
    let m = serde_json::to_vec(&m).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    b.append_data(&mut h, "manifest.json", &m[..]).unwrap();
    let path = t.path().join("dup.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let src = Source::open(&path).unwrap();
    let r = resolve(&src, &host(), None).unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.ref_name, None);
    let dest = t.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    apply_all(&src, None, &dest).unwrap();
    assert!(dest.join("etc/hello").exists());
}

#[test]
fn tar_with_index_and_manifest_json_is_an_oci_archive() {
    let t = tmp();
    let tar = small_layer();
    let img = t.path().join("img");
    simple_layout(&img, tar.clone(), gzip(&tar), OCI_LAYER_GZ);
    std::fs::write(img.join("manifest.json"), b"[]").unwrap();
    let archive = t.path().join("img.tar");
    tar_of_dir(&img, &archive);
    let src = Source::open(&archive).unwrap();
    assert_eq!(src.kind(), SourceKind::OciArchive);
    assert_eq!(resolve(&src, &host(), None).unwrap().layers.len(), 1);
}
