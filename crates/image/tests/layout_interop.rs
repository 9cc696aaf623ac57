//! Interop of OCI layout export/import with skopeo and umoci (real tools).
//!
//! Each test skips (with a message) when its tool is missing, unless
//! `STRATA_REQUIRE_PEERS=1`, in which case it fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use strata_content::digest::sha256;
use strata_content::helpers::write_blob;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Labels, Manager, Store};
use strata_image::image::{self, Image};
use strata_image::layout::{self, ExportOpts, ImportOpts};
use strata_image::media_types as mt;
use strata_image::platforms;
use strata_image::store::ImageStore;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{tool} is required (STRATA_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIP: {tool} not installed");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    store: LocalStore,
    images: ImageStore,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("content")).unwrap();
        let images = ImageStore::open(dir.path().join("metadata.db")).unwrap();
        Env { dir, store, images }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn arc(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn put(store: &LocalStore, media_type: &str, data: &[u8]) -> Descriptor {
    let d = Descriptor::new(media_type.into(), data.len() as u64, sha256(data));
    write_blob(store, &format!("t-{}", d.digest()), data, &d, Labels::new())
        .await
        .unwrap();
    d
}

/// A real two-layer gzip OCI image: `/hello.txt` and `/etc/motd`.
async fn real_image(e: &Env, name: &str) -> (Image, Vec<u8>, Descriptor) {
    let l1 = tar_of(&[("hello.txt", b"hello\n")]);
    let l2 = tar_of(&[("etc/", b""), ("etc/motd", b"strata was here\n")]);
    let mut layers = Vec::new();
    for l in [&l1, &l2] {
        layers.push(put(&e.store, mt::OCI_LAYER_GZIP, &gzip(l)).await);
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}},"history":[{{"created_by":"test"}},{{"created_by":"test"}}]}}"#,
        sha256(&l1),
        sha256(&l2)
    );
    let config = put(&e.store, mt::OCI_CONFIG, config.as_bytes()).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap();
    let md = put(&e.store, mt::OCI_MANIFEST, &manifest).await;
    let img = e.images.create(Image::new(name, md)).await.unwrap();
    (img, manifest, config)
}

#[tokio::test]
async fn skopeo_reads_and_copies_our_layout() {
    if !have("skopeo") {
        return;
    }
    let e = Env::new();
    let (img, raw, config) = real_image(&e, "example.com/strata/app:v1").await;
    let dir = e.path("layout");
    layout::export_dir(
        e.arc(),
        std::slice::from_ref(&img),
        &dir,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let oci = format!("oci:{}:v1", dir.display());
    let got_raw = run(Command::new("skopeo").args(["inspect", "--raw", &oci]));
    assert_eq!(
        got_raw.as_bytes(),
        raw.as_slice(),
        "skopeo sees our manifest bytes"
    );
    let info: serde_json::Value =
        serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &oci]))).unwrap();
    assert_eq!(info["Digest"], img.target.digest().to_string());
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);

    // The tar form too.
    let t = e.path("layout.tar");
    layout::export_tar(
        e.arc(),
        std::slice::from_ref(&img),
        &t,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&run(
        Command::new("skopeo").args(["inspect", &format!("oci-archive:{}:v1", t.display())])
    ))
    .unwrap();
    assert_eq!(info["Digest"], img.target.digest().to_string());
    // The same tar is a docker-archive too (our manifest.json), as `docker load` needs.
    let info: serde_json::Value = serde_json::from_str(&run(
        Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", t.display())])
    ))
    .unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2, "{info}");
    let mut archive = tar::Archive::new(std::fs::File::open(&t).unwrap());
    let docker_manifest: serde_json::Value = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|e| serde_json::from_reader(e).unwrap())
        .expect("manifest.json in the tar");
    assert_eq!(
        docker_manifest[0]["RepoTags"],
        serde_json::json!(["example.com/strata/app:v1"])
    );
    assert_eq!(
        docker_manifest[0]["Config"],
        format!("blobs/sha256/{}", config.digest().digest())
    );
    let from_docker = e.path("from-docker");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("docker-archive:{}", t.display()),
        &format!("oci:{}:d", from_docker.display()),
    ]));
    let e3 = Env::new();
    let r = layout::import(e3.arc(), &e3.images, &from_docker, &ImportOpts::default())
        .await
        .unwrap();
    let m = image::manifest(&e3.store, &r.images[0].target, &platforms::all())
        .await
        .unwrap();
    assert_eq!(m.manifest.config().digest(), config.digest());
    assert_eq!(m.manifest.layers().len(), 2);

    // skopeo copies it to another layout; we import that with identical digests.
    let copy = e.path("copy");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &oci,
        &format!("oci:{}:copied", copy.display()),
    ]));
    let e2 = Env::new();
    let r = layout::import(e2.arc(), &e2.images, &copy, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].name, "copied");
    assert_eq!(r.images[0].target.digest(), img.target.digest());
    let mut a: Vec<_> = e
        .store
        .walk(&[] as &[String])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    let b: Vec<_> = e2
        .store
        .walk(&[] as &[String])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    a.retain(|d| b.contains(d));
    assert_eq!(
        a.len(),
        4,
        "manifest, config and both layers arrived unchanged"
    );
}

#[tokio::test]
async fn umoci_unpacks_our_layout() {
    if !have("umoci") {
        return;
    }
    let e = Env::new();
    let (img, _, _) = real_image(&e, "example.com/strata/app:v2").await;
    let dir = e.path("layout");
    layout::export_dir(
        e.arc(),
        std::slice::from_ref(&img),
        &dir,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let bundle = e.path("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:v2", dir.display()),
        bundle.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(bundle.join("rootfs/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/motd")).unwrap(),
        b"strata was here\n"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"][0], "/bin/sh");
}

#[tokio::test]
async fn umoci_made_layout_imports_with_identical_digests() {
    if !have("umoci") {
        return;
    }
    let e = Env::new();
    let dir = e.path("umoci");
    let d = dir.to_str().unwrap();
    run(Command::new("umoci").args(["init", "--layout", d]));
    run(Command::new("umoci").args(["new", "--image", &format!("{d}:base")]));
    let bundle = e.path("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{d}:base"),
        bundle.to_str().unwrap(),
    ]));
    std::fs::write(bundle.join("rootfs/file.txt"), b"from umoci\n").unwrap();
    run(Command::new("umoci").args([
        "repack",
        "--image",
        &format!("{d}:base"),
        bundle.to_str().unwrap(),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let want = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let opts = ImportOpts {
        name: Some("local/umoci:base".into()),
        ..Default::default()
    };
    let r = layout::import(e.arc(), &e.images, &dir, &opts)
        .await
        .unwrap();
    assert_eq!(r.images[0].name, "local/umoci:base");
    assert_eq!(r.images[0].target.digest().to_string(), want);
    let m = image::manifest(&e.store, &r.images[0].target, &platforms::all())
        .await
        .unwrap();
    let diff_ids = image::rootfs(&e.store, m.manifest.config()).await.unwrap();
    assert_eq!(diff_ids.len(), m.manifest.layers().len());
    assert_eq!(diff_ids.len(), 1);
    let check = image::check(&e.store, &r.images[0].target, &platforms::all())
        .await
        .unwrap();
    assert!(check.available && check.missing.is_empty());
    // Every blob's bytes are umoci's, unchanged.
    for d in check.required {
        let p = dir.join("blobs/sha256").join(d.digest().digest());
        assert_eq!(sha256(&std::fs::read(&p).unwrap()), *d.digest());
        e.store.info(d.digest()).await.unwrap();
    }
}

#[tokio::test]
async fn skopeo_docker_archive_imports() {
    if !have("skopeo") {
        return;
    }
    let e = Env::new();
    let (img, _, config) = real_image(&e, "example.com/strata/app:v3").await;
    let dir = e.path("layout");
    layout::export_dir(
        e.arc(),
        std::slice::from_ref(&img),
        &dir,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let archive = e.path("docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci:{}:v3", dir.display()),
        &format!(
            "docker-archive:{}:example.com/saved/app:v3",
            archive.display()
        ),
    ]));
    let e2 = Env::new();
    let r = layout::import(e2.arc(), &e2.images, &archive, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].name, "example.com/saved/app:v3");
    let m = image::manifest(&e2.store, &r.images[0].target, &platforms::all())
        .await
        .unwrap();
    // The config bytes survive docker-archive unchanged; layers are stored uncompressed
    // there, so their digests are the DiffIDs.
    assert_eq!(m.manifest.config().digest(), config.digest());
    let diff_ids = image::rootfs(&e2.store, m.manifest.config()).await.unwrap();
    let layers: Vec<_> = m
        .manifest
        .layers()
        .iter()
        .map(|l| l.digest().clone())
        .collect();
    assert_eq!(layers, diff_ids);
    assert!(
        m.manifest
            .layers()
            .iter()
            .all(|l| l.media_type().as_ref() == mt::DOCKER_LAYER)
    );
}
