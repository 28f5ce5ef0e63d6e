//! Images through the CLI with the overlay and vfs drivers: `image
//! import|ls|inspect|rm`, `bundle create --image`, containers whose root
//! filesystem `create` assembles from the store (and `delete` takes down),
//! crash safety of that, and imports of malicious or broken images that
//! must fail without leaving anything in the store or outside it.
//!
//! Real containers, as root:
//! `cargo build --release && cargo test --release -p berth --test images`
//! (with BERTH_BIN, BERTH_TEST_ROOTFS, BERTH_PROBE as the harness documents).
//! Every test has its own `--root` and `--store` (under its own temp dir),
//! so they run in parallel; the harness's `Runtime` deletes the containers
//! (`delete --force`), detaches what is left mounted and removes the dirs
//! on drop, also when a test panics.

use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_integration::images::{edit_config, read_json, StoreCli};
use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder, Written};
use berth_integration::serde_json::json;
use berth_integration::storage::names_if_exists as names;
use berth_integration::{base_rootfs, eventually, host_mounts_under, Opts, Out, Runtime};

/// One test's runtime, store (`tmp/store`) and driver.
struct Env(StoreCli);

impl Deref for Env {
    type Target = StoreCli;
    fn deref(&self) -> &StoreCli {
        &self.0
    }
}

impl Env {
    fn new(name: &str, driver: &'static str) -> Env {
        Env(StoreCli::new(Runtime::new(name), driver))
    }

    fn containers_dir(&self) -> PathBuf {
        self.store.join("containers").join(self.driver)
    }

    fn layers_dir(&self) -> PathBuf {
        self.store.join("layers").join(self.driver)
    }

    /// Nothing of any container left: no mount under the temp dir (bundles
    /// and store), no writable layer, no container reference.
    #[track_caller]
    fn assert_no_container_left(&self) {
        let mounts = host_mounts_under(&self.tmp);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert_eq!(
            names(&self.containers_dir()),
            Vec::<String>::new(),
            "writable layers left in {}",
            self.containers_dir().display()
        );
        assert_eq!(
            names(&self.store.join("containers/refs")),
            Vec::<String>::new(),
            "container references left in the store"
        );
    }
}

/// Every path under `root` (relative, sorted), not following symlinks.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The busybox test rootfs as a gzip layer.
fn busybox() -> LayerBuilder {
    LayerBuilder::from_dir(&base_rootfs())
}

/// What the core image's command prints.
const REPORT: &str = "echo u=$(id -u) g=$(id -g) G=$(id -G) cwd=$(pwd) foo=$FOO \
     f=$(cat /etc/img-file) opq=$(ls /opq) data=$(ls /data); \
     if [ -e /etc/gone ]; then echo gone=present; else echo gone=absent; fi";

/// busybox (gzip), a zstd layer with files, and an uncompressed layer with
/// a whiteout (/etc/gone) and an opaque directory (/opq keeps only b).
fn core_image(user: &str) -> ImageBuilder {
    let user = user.to_string();
    ImageBuilder::new()
        .layer(busybox(), Compression::Gzip)
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/img-file", b"from-image\n", 0o644)
                .file("etc/gone", b"x\n", 0o644)
                .dir("data", 0o777)
                .dir("opq", 0o755)
                .file("opq/a", b"a\n", 0o644),
            Compression::Zstd,
        )
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .whiteout("etc/gone")
                .dir("opq", 0o755)
                .opaque("opq")
                .file("opq/b", b"b\n", 0o644),
            Compression::None,
        )
        .config(move |c| {
            *c = json!({
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": [REPORT],
                "Env": ["PATH=/bin:/sbin:/usr/bin", "FOO=bar"],
                "WorkingDir": "/data",
                "User": user,
                "Labels": {"org.example.label": "v1"},
            })
        })
}

/// A small image: `etc/img-file` says `content`, the command prints it.
fn small_image(content: &str) -> ImageBuilder {
    ImageBuilder::new()
        .layer(busybox(), Compression::Gzip)
        .layer(
            LayerBuilder::new().dir("etc", 0o755).file(
                "etc/img-file",
                format!("{content}\n").as_bytes(),
                0o644,
            ),
            Compression::Gzip,
        )
        .config(|c| *c = json!({"Cmd": ["/bin/cat", "/etc/img-file"]}))
}

fn core(driver: &'static str) {
    let env = Env::new(&format!("core-{driver}"), driver);
    let layout = env.tmp.join("layout");
    let w = core_image("1000:1000").write_layout(&layout, "berth-test/core:1");

    // Import (the name from the layout's ref.name annotation).
    let out = env
        .berth(&["image", "import", layout.to_str().unwrap()])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("berth-test/core:1 {}", w.manifest)
    );
    assert_eq!(names(&env.layers_dir()).len(), 3, "one directory per layer");

    // Re-import: the same answer, nothing new in the store.
    let before = tree(&env.store);
    let again = env
        .berth(&["image", "import", layout.to_str().unwrap()])
        .ok();
    assert_eq!(again.stdout, out.stdout);
    assert_eq!(tree(&env.store), before, "re-import changed the store");

    // ls and inspect.
    let ls = env.berth(&["image", "ls", "-q"]).ok();
    assert_eq!(ls.stdout, "berth-test/core:1\n");
    let table = env.berth(&["image", "ls"]).ok();
    assert!(table.stdout.contains(&w.manifest[7..19]), "{table}");
    let js = env.berth(&["image", "ls", "--format", "json"]).ok().json();
    let rec = &js.as_array().unwrap()[0];
    assert_eq!(rec["name"], "berth-test/core:1");
    assert_eq!(rec["manifest"], w.manifest.as_str());
    assert_eq!(rec["config"], w.config.as_str());
    assert_eq!(rec["diff_ids"], json!(w.diff_ids));
    let insp = env
        .berth(&["image", "inspect", "berth-test/core:1"])
        .ok()
        .json();
    assert_eq!(insp["manifest"], w.manifest.as_str());
    assert_eq!(insp["imageConfig"]["config"]["WorkingDir"], "/data");
    assert_eq!(insp["imageConfig"]["config"]["User"], "1000:1000");
    // By digest prefix too.
    let by_digest = env.berth(&["image", "inspect", &w.manifest[7..19]]).ok();
    assert_eq!(by_digest.json()["name"], "berth-test/core:1");

    // bundle create: config.json from the image config, empty rootfs.
    let b1 = env.bundle("berth-test/core:1", "1");
    let cfg = read_json(&b1.join("config.json"));
    assert_eq!(cfg["process"]["args"], json!(["/bin/sh", "-c", REPORT]));
    assert_eq!(cfg["process"]["cwd"], "/data");
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    assert_eq!(cfg["process"]["user"]["gid"], 1000);
    assert_eq!(
        cfg["process"]["env"],
        json!(["PATH=/bin:/sbin:/usr/bin", "FOO=bar"])
    );
    assert_eq!(cfg["root"]["readonly"], false);
    let ann = &cfg["annotations"];
    assert_eq!(ann["run.berth.image"], "berth-test/core:1");
    assert_eq!(ann["run.berth.image.manifest"], w.manifest.as_str());
    assert_eq!(ann["org.example.label"], "v1");
    assert!(names(&b1.join("rootfs")).is_empty(), "rootfs not empty");
    // A second bundle into the same dir refuses to overwrite.
    let again = env.berth(&[
        "bundle",
        "create",
        "--image",
        "berth-test/core:1",
        b1.to_str().unwrap(),
    ]);
    again.fails();

    // run: the image's files, whiteout, opaque dir, env, cwd and user.
    let id = env.rt.id();
    let out = env
        .berth(&["run", "--bundle", b1.to_str().unwrap(), &id])
        .ok();
    assert_eq!(
        out.stdout,
        "u=1000 g=1000 G=1000 cwd=/data foo=bar f=from-image opq=b data=\ngone=absent\n",
        "{out}"
    );
    env.assert_no_container_left();
    assert!(
        names(&b1.join("rootfs")).is_empty(),
        "rootfs not empty after run"
    );

    // Two containers of the image: one's writes are not seen by the other.
    let b2 = env.bundle("berth-test/core:1", "2");
    edit_config(&b1, |c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0});
        c["process"]["args"] = json!([
            "/bin/sh",
            "-c",
            "echo written-by-c1 > /etc/img-file && touch /data/c1-only && rm /opq/b"
        ]);
    });
    let c1 = env.rt.id();
    env.berth(&["create", "--bundle", b1.to_str().unwrap(), &c1])
        .ok();
    let root1 = b1.join("rootfs");
    assert!(
        host_mounts_under(&root1).contains(&root1.display().to_string()),
        "create mounted nothing on {}",
        root1.display()
    );
    let key_dirs = names(&env.containers_dir());
    assert_eq!(key_dirs.len(), 1, "one writable layer: {key_dirs:?}");
    env.berth(&["start", &c1]).ok();
    env.rt.wait_stopped(&c1);
    assert_eq!(
        std::fs::read_to_string(root1.join("etc/img-file")).unwrap(),
        "written-by-c1\n",
        "the first container's write did not happen"
    );
    let c2 = env.rt.id();
    let out = env
        .berth(&["run", "--bundle", b2.to_str().unwrap(), &c2])
        .ok();
    assert_eq!(
        out.stdout,
        "u=1000 g=1000 G=1000 cwd=/data foo=bar f=from-image opq=b data=\ngone=absent\n",
        "the second container sees the first one's writes: {out}"
    );
    // The layers in the store are untouched.
    for p in tree(&env.layers_dir()) {
        if p.ends_with("etc/img-file") {
            assert_eq!(
                std::fs::read_to_string(env.layers_dir().join(&p)).unwrap(),
                "from-image\n",
                "layer file {p} changed"
            );
        }
    }

    // Snapshots: the overlay and vfs drivers cannot.
    let snap = env.berth(&["snapshot", "create", &c1, "s1"]).fails();
    assert!(
        snap.stderr
            .contains(&format!("the {driver} driver cannot take snapshots")),
        "{snap}"
    );
    assert_eq!(snap.stderr.trim().lines().count(), 1, "{snap}");
    let list = env.berth(&["snapshot", "list", &c1]).fails();
    assert!(list.stderr.contains("cannot"), "{list}");

    // delete takes it all down.
    env.berth(&["delete", &c1]).ok();
    env.assert_no_container_left();
    assert!(names(&root1).is_empty(), "rootfs not empty after delete");
    let st = env.berth(&["state", &c1]);
    st.fails();
}

#[test]
fn overlay_core() {
    core("overlay");
}

#[test]
fn vfs_core() {
    core("vfs");
}

/// The image's User as a name: uid and gid from its /etc/passwd, other
/// groups from its /etc/group; "name:group" takes the group from there.
fn named_user(driver: &'static str) {
    let env = Env::new(&format!("user-{driver}"), driver);
    let groups = std::fs::read_to_string(base_rootfs().join("etc/group")).unwrap()
        + "berthx:x:4242:berth\nother:x:4343:root,berth\n";
    let img = |user: &str| {
        let user = user.to_string();
        ImageBuilder::new()
            .layer(busybox(), Compression::Gzip)
            .layer(
                LayerBuilder::new()
                    .dir("etc", 0o755)
                    .file("etc/group", groups.as_bytes(), 0o644),
                Compression::Zstd,
            )
            .config(move |c| {
                *c = json!({
                    "Cmd": ["/bin/sh", "-c", "echo $(id -u) $(id -g) $(id -G)"],
                    "User": user,
                })
            })
    };
    for (user, want_user, want_out) in [
        (
            "berth",
            json!({"uid": 1000, "gid": 1000, "additionalGids": [4242, 4343]}),
            "1000 1000 1000 4242 4343\n",
        ),
        (
            "berth:berthx",
            json!({"uid": 1000, "gid": 4242}),
            "1000 4242 4242\n",
        ),
    ] {
        let layout = env.tmp.join(format!("layout-{user}"));
        img(user).write_layout(&layout, "x");
        let name = format!("berth-test/user:{}", user.replace(':', "-"));
        env.import(&layout, &name).ok();
        let b = env.bundle(&name, &user.replace(':', "-"));
        let cfg = read_json(&b.join("config.json"));
        let mut got = cfg["process"]["user"].clone();
        if let Some(g) = got.get_mut("additionalGids") {
            let mut v: Vec<u64> = g
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            v.sort();
            *g = json!(v);
        }
        assert_eq!(got, want_user, "User {user:?}");
        let id = env.rt.id();
        let out = env
            .berth(&["run", "--bundle", b.to_str().unwrap(), &id])
            .ok();
        assert_eq!(out.stdout, want_out, "User {user:?}: {out}");
    }
    // A user the image does not have: bundle create says so.
    let layout = env.tmp.join("layout-nobody");
    img("ghost").write_layout(&layout, "x");
    env.import(&layout, "berth-test/user:ghost").ok();
    let dir = env.tmp.join("bundle-ghost");
    let out = env
        .berth(&[
            "bundle",
            "create",
            "--image",
            "berth-test/user:ghost",
            dir.to_str().unwrap(),
        ])
        .fails();
    assert!(out.stderr.contains("\"ghost\""), "{out}");
    assert!(out.stderr.contains("/etc/passwd"), "{out}");
    env.assert_no_container_left();
}

#[test]
fn overlay_named_user() {
    named_user("overlay");
}

#[test]
fn vfs_named_user() {
    named_user("vfs");
}

/// OCI archives (gzip and zstd layers) and docker-save tars import and run.
fn formats(driver: &'static str) {
    let env = Env::new(&format!("fmt-{driver}"), driver);
    let archive = env.tmp.join("image.tar");
    let zstd = ImageBuilder::new()
        .layer(busybox(), Compression::Zstd)
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/img-file", b"archive\n", 0o644),
            Compression::Zstd,
        )
        .config(|c| *c = json!({"Cmd": ["/bin/cat", "/etc/img-file"]}));
    let w = zstd.write_archive(&archive, "berth-test/archive:1");
    let out = env
        .berth(&["image", "import", archive.to_str().unwrap()])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("berth-test/archive:1 {}", w.manifest)
    );

    let save = env.tmp.join("save.tar");
    small_image("docker").write_docker_save(&save, "berth-test/docker:2");
    let out = env.berth(&["image", "import", save.to_str().unwrap()]).ok();
    assert!(
        out.stdout.starts_with("berth-test/docker:2 sha256:"),
        "{out}"
    );
    let gz = env.tmp.join("gz.tar");
    small_image("gzip").write_archive(&gz, "x");
    env.import(&gz, "berth-test/gzip").ok();

    let ls = env.berth(&["image", "ls", "-q"]).ok();
    assert_eq!(
        ls.stdout,
        "berth-test/archive:1\nberth-test/docker:2\nberth-test/gzip:latest\n"
    );
    for (image, want) in [
        ("berth-test/archive:1", "archive\n"),
        ("berth-test/docker:2", "docker\n"),
        ("berth-test/gzip:latest", "gzip\n"),
    ] {
        let b = env.bundle(image, &image.replace([':', '/'], "-"));
        let id = env.rt.id();
        let out = env
            .berth(&["run", "--bundle", b.to_str().unwrap(), &id])
            .ok();
        assert_eq!(out.stdout, want, "{image}: {out}");
    }
    env.assert_no_container_left();
}

#[test]
fn overlay_archive_and_docker_save() {
    formats("overlay");
}

#[test]
fn vfs_archive_and_docker_save() {
    formats("vfs");
}

/// `image rm` of an image sharing its base layer with another: the other
/// keeps working; removing the last user of a layer removes it.
fn rm_shared(driver: &'static str) {
    let env = Env::new(&format!("rmshared-{driver}"), driver);
    for (name, content) in [("berth-test/a:1", "aaa"), ("berth-test/b:1", "bbb")] {
        let layout = env.tmp.join(format!("layout-{content}"));
        small_image(content).write_layout(&layout, "x");
        env.import(&layout, name).ok();
    }
    assert_eq!(names(&env.layers_dir()).len(), 3, "base shared, two tops");
    let out = env.berth(&["image", "rm", "berth-test/a:1"]).ok();
    assert_eq!(out.stdout, "berth-test/a:1\n");
    assert_eq!(names(&env.layers_dir()).len(), 2, "a's own layer removed");
    assert_eq!(
        env.berth(&["image", "ls", "-q"]).ok().stdout,
        "berth-test/b:1\n"
    );
    let b = env.bundle("berth-test/b:1", "b");
    let id = env.rt.id();
    let out = env
        .berth(&["run", "--bundle", b.to_str().unwrap(), &id])
        .ok();
    assert_eq!(out.stdout, "bbb\n");
    // An unknown name: an error naming it.
    let out = env.berth(&["image", "rm", "berth-test/nope:1"]).fails();
    assert!(out.stderr.contains("berth-test/nope:1"), "{out}");
    // The last image: its layers and blobs go.
    env.berth(&["image", "rm", "berth-test/b:1"]).ok();
    assert_eq!(names(&env.layers_dir()), Vec::<String>::new());
    assert_eq!(names(&env.store.join("blobs/sha256")), Vec::<String>::new());
    env.assert_no_container_left();
}

#[test]
fn overlay_rm_shared_layer() {
    rm_shared("overlay");
}

#[test]
fn vfs_rm_shared_layer() {
    rm_shared("vfs");
}

/// `image rm` while a container uses the image: the layers it uses stay
/// and it keeps working; `create` of a bundle of a removed image fails
/// clearly and mounts nothing.
fn rm_in_use(driver: &'static str) {
    let env = Env::new(&format!("rmuse-{driver}"), driver);
    let layout = env.tmp.join("layout");
    small_image("in-use").write_layout(&layout, "x");
    env.import(&layout, "berth-test/use:1").ok();
    let b = env.bundle("berth-test/use:1", "use");
    let late = env.bundle("berth-test/use:1", "late");
    edit_config(&b, |c| {
        c["process"]["args"] = json!([
            "/bin/sh",
            "-c",
            "cat /etc/img-file > /result; ls /bin/busybox >> /result"
        ]);
    });
    let id = env.rt.id();
    env.berth(&["create", "--bundle", b.to_str().unwrap(), &id])
        .ok();
    let layers = names(&env.layers_dir());
    assert_eq!(layers.len(), 2);

    let rm = env.berth(&["image", "rm", "berth-test/use:1"]);
    eprintln!("image rm while a container uses the image: {rm}");
    assert_eq!(
        names(&env.layers_dir()),
        layers,
        "a layer a container uses was removed"
    );
    env.berth(&["start", &id]).ok();
    env.rt.wait_stopped(&id);
    assert_eq!(
        std::fs::read_to_string(b.join("rootfs/result")).unwrap(),
        "in-use\n/bin/busybox\n"
    );
    env.berth(&["delete", &id]).ok();
    env.assert_no_container_left();

    if rm.success() {
        // The image is gone: a bundle made from it cannot be created.
        let id = env.rt.id();
        let out = env
            .berth(&["create", "--bundle", late.to_str().unwrap(), &id])
            .fails();
        assert!(out.stderr.contains("berth-test/use:1"), "{out}");
        assert!(out.stderr.contains("removed"), "{out}");
        assert!(env.berth(&["state", &id]).fails().stderr.contains(&id));
        env.assert_no_container_left();
        assert!(names(&late.join("rootfs")).is_empty());
        if !names(&env.layers_dir()).is_empty() {
            eprintln!(
                "NOTE: layers of the removed image stay after its last container was deleted: {:?}",
                names(&env.layers_dir())
            );
        }
    }
}

#[test]
fn overlay_rm_while_in_use() {
    rm_in_use("overlay");
}

#[test]
fn vfs_rm_while_in_use() {
    rm_in_use("vfs");
}

/// `create` of a bundle whose image was removed: a clear error, nothing
/// mounted, no container.
#[test]
fn create_after_image_removed() {
    let env = Env::new("gone", "overlay");
    let layout = env.tmp.join("layout");
    small_image("gone").write_layout(&layout, "x");
    env.import(&layout, "berth-test/gone:1").ok();
    let b = env.bundle("berth-test/gone:1", "gone");
    env.berth(&["image", "rm", "berth-test/gone:1"]).ok();
    let id = env.rt.id();
    let out = env
        .berth(&["create", "--bundle", b.to_str().unwrap(), &id])
        .fails();
    assert!(out.stderr.contains("\"berth-test/gone:1\""), "{out}");
    assert!(out.stderr.contains("removed from the store"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    env.berth(&["state", &id]).fails();
    env.assert_no_container_left();
    assert!(names(&b.join("rootfs")).is_empty());
}

/// A bundle with its own rootfs (no image annotation) is left alone.
#[test]
fn plain_rootfs_bundle_is_untouched() {
    let env = Env::new("plain", "overlay");
    let mut b = env.rt.bundle();
    b.set("/process/args", json!(["/bin/cat", "/etc/marker"]));
    b.write();
    let before = tree(&b.rootfs());
    let id = env.rt.id();
    let out = env.berth(&["run", "--bundle", b.path_str(), &id]).ok();
    assert_eq!(out.stdout, "rootfs\n");
    assert_eq!(tree(&b.rootfs()), before);
    assert!(host_mounts_under(&b.rootfs()).is_empty());
    assert_eq!(
        names(&env.store.join("containers/refs")),
        Vec::<String>::new()
    );
    assert_eq!(names(&env.containers_dir()), Vec::<String>::new());
}

/// BERTH_CONFIG's `store`, `storage-driver` and `storage-opt` are used
/// when there are no flags.
#[test]
fn config_file_names_store_and_driver() {
    let env = Env::new("cfgfile", "vfs");
    let cfg = env.tmp.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = {:?}\nstorage-driver = \"vfs\"\nstorage-opt = [\"unused.key=1\"]\n",
            env.store.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        env.rt.run_opts(
            args,
            Opts {
                timeout: Duration::from_secs(60),
                env: vec![("BERTH_CONFIG".into(), cfg.display().to_string())],
                ..Default::default()
            },
        )
    };
    let layout = env.tmp.join("layout");
    small_image("configured").write_layout(&layout, "x");
    run(&[
        "image",
        "import",
        layout.to_str().unwrap(),
        "--name",
        "berth-test/cfg:1",
    ])
    .ok();
    assert!(
        env.store.join("images.json").is_file(),
        "not imported into the configured store"
    );
    assert_eq!(
        names(&env.store.join("layers/vfs")).len(),
        2,
        "not the vfs driver"
    );
    assert!(
        !env.store.join("layers/overlay").exists()
            || names(&env.store.join("layers/overlay")).is_empty()
    );
    let b = env.tmp.join("bundle");
    run(&[
        "bundle",
        "create",
        "--image",
        "berth-test/cfg:1",
        b.to_str().unwrap(),
    ])
    .ok();
    let id = env.rt.id();
    run(&["create", "--bundle", b.to_str().unwrap(), &id]).ok();
    assert_eq!(names(&env.store.join("containers/vfs")).len(), 1);
    assert_eq!(
        std::fs::read_to_string(b.join("rootfs/etc/img-file")).unwrap(),
        "configured\n"
    );
    // delete needs no config: the state records the store.
    env.rt.run(&["delete", &id]).ok();
    env.assert_no_container_left();
    // A flag beats the file.
    let other = env.tmp.join("other-store");
    let out = run(&["--store", other.to_str().unwrap(), "image", "ls", "-q"]).ok();
    assert_eq!(out.stdout, "");
    assert!(other.join("containers/refs").is_dir());
}

/// SIGKILL berth while `create` runs (at several points, the last one
/// while a createRuntime hook runs, so the rootfs is mounted and the
/// container's process exists): `delete --force` then removes it all.
fn crash(driver: &'static str) {
    let env = Env::new(&format!("crash-{driver}"), driver);
    let layout = env.tmp.join("layout");
    small_image("crash").write_layout(&layout, "x");
    env.import(&layout, "berth-test/crash:1").ok();
    let hook_pid_file = env.tmp.join("hook.pid");
    let kill_hook = || {
        if let Ok(s) = std::fs::read_to_string(&hook_pid_file) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                // SAFETY: kill(2) on a pid our hook wrote; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_file(&hook_pid_file);
    };
    // Delays after spawning; None: wait until the hook runs.
    let points = [Some(0u64), Some(5), Some(20), Some(60), None];
    for (n, point) in points.into_iter().enumerate() {
        let b = env.bundle("berth-test/crash:1", &format!("c{n}"));
        edit_config(&b, |c| {
            c["hooks"] = json!({"createRuntime": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 30", hook_pid_file.display())],
            }]});
        });
        let id = env.rt.id();
        let mut cmd = env
            .rt
            .command(&env.args(&["create", "--bundle", b.to_str().unwrap(), &id]));
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        match point {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => {
                assert!(
                    eventually(20, || hook_pid_file.exists()),
                    "the createRuntime hook never ran"
                );
                let root = b.join("rootfs");
                assert!(
                    host_mounts_under(&root).contains(&root.display().to_string()),
                    "rootfs not mounted while the hook runs"
                );
                assert_eq!(names(&env.store.join("containers/refs")).len(), 1);
            }
        }
        child.kill().unwrap();
        let _ = child.wait();
        kill_hook();
        let del = env.berth(&["delete", "--force", &id]);
        assert!(
            del.success() || del.stderr.contains("does not exist"),
            "delete --force after a crash at {point:?}: {del}"
        );
        if point.is_none() {
            del.clone().ok();
        }
        env.assert_no_container_left();
        assert!(names(&b.join("rootfs")).is_empty());
    }
}

#[test]
fn overlay_crash_during_create() {
    crash("overlay");
}

#[test]
fn vfs_crash_during_create() {
    crash("vfs");
}

// ---- bad inputs ----

/// A two-layer image: a small base and `top`.
fn with_top(top: LayerBuilder, c: Compression) -> ImageBuilder {
    ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/base", b"base\n", 0o644),
            Compression::Gzip,
        )
        .layer(top, c)
        .config(|c| *c = json!({"Cmd": ["/bin/true"]}))
}

/// Import `layout` and expect it to fail with every needle in one line
/// of error, the store exactly as before.
#[track_caller]
fn refused(env: &Env, what: &str, path: &Path, needles: &[&str]) -> Out {
    let before = tree(&env.store);
    let out = env.import(path, "berth-test/bad:1");
    assert!(
        !out.timed_out && out.code.is_some() && !out.success(),
        "{what}: import should fail: {out}"
    );
    for n in needles {
        assert!(out.stderr.contains(n), "{what}: error lacks {n:?}: {out}");
    }
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "{what}: not a one-line error: {out}"
    );
    assert_eq!(tree(&env.store), before, "{what}: the store changed");
    assert!(
        host_mounts_under(&env.store).is_empty(),
        "{what}: mounts left"
    );
    out
}

fn layout_of(env: &Env, tag: &str, img: &ImageBuilder) -> (PathBuf, Written) {
    let dir = env.tmp.join(format!("bad-{tag}"));
    let w = img.write_layout(&dir, "x");
    (dir, w)
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest[7..])
}

fn bad_inputs(driver: &'static str) {
    let env = Env::new(&format!("bad-{driver}"), driver);
    // A good image first: the store has layers a failed import must keep.
    let good = env.tmp.join("good");
    with_top(
        LayerBuilder::new().file("ok", b"ok", 0o644),
        Compression::Gzip,
    )
    .write_layout(&good, "x");
    env.import(&good, "berth-test/good:1").ok();
    let good_layers = names(&env.layers_dir());
    assert_eq!(good_layers.len(), 2);

    let outside = env.tmp.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, b"secret\n").unwrap();
    std::fs::write(outside.join("victim"), b"victim\n").unwrap();
    let up = "../".repeat(16);
    let out_rel = outside.to_str().unwrap().trim_start_matches('/');
    let top = || {
        LayerBuilder::new()
            .dir("d", 0o755)
            .file("d/f", &[7u8; 3000], 0o644)
    };

    // A layer blob whose content does not match its digest.
    let (dir, w) = layout_of(&env, "mismatch", &with_top(top(), Compression::None));
    let p = blob(&dir, &w.layers[1]);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[600] ^= 0xff; // inside d/f's content
    std::fs::write(&p, bytes).unwrap();
    refused(&env, "digest mismatch", &dir, &[&w.layers[1]]);

    // A truncated blob.
    let (dir, w) = layout_of(&env, "trunc", &with_top(top(), Compression::Gzip));
    let p = blob(&dir, &w.layers[1]);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    refused(&env, "truncated blob", &dir, &[&w.layers[1]]);

    // A missing blob.
    let (dir, w) = layout_of(&env, "missing", &with_top(top(), Compression::Gzip));
    std::fs::remove_file(blob(&dir, &w.layers[1])).unwrap();
    refused(&env, "missing blob", &dir, &[&w.layers[1]]);

    // The same as an OCI archive.
    let (dir, w) = layout_of(&env, "missing-ar", &with_top(top(), Compression::Zstd));
    std::fs::remove_file(blob(&dir, &w.layers[1])).unwrap();
    let ar = env.tmp.join("missing.tar");
    berth_integration::oci::tar_dir(&dir, &ar);
    refused(&env, "missing blob in an archive", &ar, &[&w.layers[1]]);

    // Only another platform in the index.
    let (dir, _) = layout_of(
        &env,
        "platform",
        &with_top(top(), Compression::Gzip).platform("linux", "arm64"),
    );
    refused(&env, "other platform", &dir, &["arm64"]);

    // `../` out of the layer.
    let escape = format!("{up}{out_rel}/escaped");
    let (dir, _) = layout_of(
        &env,
        "dotdot",
        &with_top(top().file(&escape, b"x", 0o644), Compression::Gzip),
    );
    refused(&env, "../ entry", &dir, &[&escape]);
    assert!(
        !outside.join("escaped").exists(),
        "../ entry written outside"
    );

    // An absolute symlink, then a file beneath it (new file, then the secret).
    for (tag, entry) in [("new", "lnk/evil"), ("existing", "lnk/secret")] {
        let (dir, _) = layout_of(
            &env,
            &format!("symlink-{tag}"),
            &with_top(
                top()
                    .symlink("lnk", outside.to_str().unwrap())
                    .file(entry, b"pwned\n", 0o644),
                Compression::Gzip,
            ),
        );
        refused(
            &env,
            &format!("file beneath a symlink ({tag})"),
            &dir,
            &[entry],
        );
    }
    assert!(
        !outside.join("evil").exists(),
        "file written through a symlink"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret\n");

    // A hardlink to a file outside, by `../` and by absolute path.
    for (tag, target) in [
        ("dotdot", format!("{up}{out_rel}/secret")),
        ("absolute", secret.display().to_string()),
    ] {
        let (dir, _) = layout_of(
            &env,
            &format!("hardlink-{tag}"),
            &with_top(top().hardlink("hl", &target), Compression::Gzip),
        );
        refused(
            &env,
            &format!("hardlink outside ({tag})"),
            &dir,
            &["\"hl\""],
        );
        let md = std::fs::metadata(&secret).unwrap();
        assert_eq!(md.nlink(), 1, "a link to the secret was made ({tag})");
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret\n");

    // A whiteout naming a path outside.
    let wh = format!("{up}{out_rel}/.wh.victim");
    let (dir, _) = layout_of(
        &env,
        "whiteout",
        &with_top(top().file(&wh, b"", 0o644), Compression::Gzip),
    );
    refused(&env, "whiteout outside", &dir, &[&wh]);
    assert!(
        outside.join("victim").exists(),
        "whiteout removed a file outside"
    );

    // A whiteout through a symlink a lower layer made: whatever the driver
    // decides, the file outside stays.
    let img = ImageBuilder::new()
        .layer(
            LayerBuilder::new().symlink("wl", outside.to_str().unwrap()),
            Compression::Gzip,
        )
        .layer(LayerBuilder::new().whiteout("wl/victim"), Compression::Gzip)
        .config(|c| *c = json!({"Cmd": ["/bin/true"]}));
    let (dir, _) = layout_of(&env, "whiteout-symlink", &img);
    let out = env.import(&dir, "berth-test/whsym:1");
    eprintln!("whiteout through a symlink: {out}");
    assert!(
        outside.join("victim").exists(),
        "whiteout through a symlink removed a file outside"
    );
    if out.success() {
        env.berth(&["image", "rm", "berth-test/whsym:1"]).ok();
    }

    assert_eq!(names(&env.layers_dir()), good_layers);
    assert_eq!(
        env.berth(&["image", "ls", "-q"]).ok().stdout,
        "berth-test/good:1\n"
    );
    assert_eq!(
        names(&outside),
        ["secret", "victim"],
        "something was created outside"
    );
}

#[test]
fn overlay_bad_inputs() {
    bad_inputs("overlay");
}

#[test]
fn vfs_bad_inputs() {
    bad_inputs("vfs");
}

/// `image rm` while a container uses the image keeps the layers for the
/// container; once that container is deleted nothing uses them, and they
/// must not stay in the store for ever: the store collects them at its
/// next change (delete itself does not; the next import or rm does).
#[test]
fn removed_images_layers_go_after_their_last_container() {
    let env = Env::new("rmgc", "overlay");
    let layout = env.tmp.join("layout");
    small_image("gc").write_layout(&layout, "x");
    env.import(&layout, "berth-test/gc:1").ok();
    let b = env.bundle("berth-test/gc:1", "gc");
    let id = env.rt.id();
    env.berth(&["create", "--bundle", b.to_str().unwrap(), &id])
        .ok();
    env.berth(&["image", "rm", "berth-test/gc:1"]).ok();
    assert_eq!(names(&env.layers_dir()).len(), 2, "layers in use removed");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_no_container_left();
    // Another image, sharing no layer.
    let other = env.tmp.join("other");
    ImageBuilder::new()
        .layer(
            LayerBuilder::new().file("only", b"x", 0o644),
            Compression::Gzip,
        )
        .config(|c| *c = json!({"Cmd": ["/only"]}))
        .write_layout(&other, "x");
    env.import(&other, "berth-test/other:1").ok();
    assert_eq!(
        names(&env.layers_dir()).len(),
        1,
        "the removed image's layers outlive its last container: {:?}",
        names(&env.layers_dir())
    );
}
