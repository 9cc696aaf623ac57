use super::*;
use crate::image::Image;
use crate::media_types as mt;
use crate::platforms::{only, parse};
use crate::store::ImageStore;
use crate::test_fixtures::{TestManifest, put_index, put_manifest};
use std::path::Path;
use std::sync::Arc;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Digest, IngestManager, Manager, Store};

struct Env {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: LocalStore,
    images: ImageStore,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = LocalStore::open(root.join("content")).unwrap();
    let images = ImageStore::open(root.join("metadata.db")).unwrap();
    Env {
        _dir: dir,
        root,
        store,
        images,
    }
}

impl Env {
    fn arc(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
    async fn digests(&self) -> Vec<Digest> {
        self.store
            .walk(&[] as &[String])
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect()
    }
}

/// A two-platform index image and a single-manifest image.
async fn two_images(e: &Env) -> (Image, Image, Vec<TestManifest>) {
    let amd = put_manifest(&e.store, "linux/amd64", 2, false).await;
    let arm = put_manifest(&e.store, "linux/arm64", 1, false).await;
    let idx = put_index(
        &e.store,
        &[
            (amd.manifest.clone(), Some("linux/amd64")),
            (arm.manifest.clone(), Some("linux/arm64")),
        ],
        false,
    )
    .await;
    let single = put_manifest(&e.store, "linux/amd64", 3, true).await;
    let a = Image::new("example.com/multi:1.0", idx);
    let b = Image::new("docker.io/library/single:latest", single.manifest.clone());
    (a, b, vec![amd, arm, single])
}

async fn assert_same_images(src: &Env, dst: &Env, names: &[&str]) {
    for n in names {
        let want = src
            .images
            .get(n)
            .await
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        let got = dst
            .images
            .get(n)
            .await
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(got.target.digest(), want.target.digest(), "{n}");
        assert_eq!(got.target.media_type(), want.target.media_type(), "{n}");
        assert_eq!(got.target.size(), want.target.size(), "{n}");
        assert!(
            got.target.annotations().is_none(),
            "layout annotations are not kept"
        );
    }
    let a = src.digests().await;
    let b = dst.digests().await;
    assert_eq!(a, b, "same blobs");
}

#[tokio::test]
async fn dir_round_trip() {
    let src = env();
    let (a, b, parts) = two_images(&src).await;
    src.images.create(a.clone()).await.unwrap();
    src.images.create(b.clone()).await.unwrap();
    let out = src.root.join("layout");
    let entries = export_dir(
        src.arc(),
        &[a.clone(), b.clone()],
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 2);
    let ann = entries[0].annotations().clone().unwrap();
    assert_eq!(ann[REF_NAME_ANNOTATION], "1.0");
    assert_eq!(ann[IMAGE_NAME_ANNOTATION], "example.com/multi:1.0");
    assert_eq!(
        std::fs::read(out.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let blob = |d: &Descriptor| out.join("blobs/sha256").join(d.digest().digest());
    assert!(blob(&parts[1].layers[0]).is_file());
    assert_eq!(
        std::fs::read_dir(out.join("blobs/sha256")).unwrap().count(),
        src.digests().await.len()
    );

    let dst = env();
    let r = import(dst.arc(), &dst.images, &out, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!(r.images.len(), 2);
    assert_eq!(r.blobs_written, src.digests().await.len());
    assert_same_images(
        &src,
        &dst,
        &["example.com/multi:1.0", "docker.io/library/single:latest"],
    )
    .await;
    // Parents carry GC references to their children.
    let info = dst.store.info(a.target.digest()).await.unwrap();
    assert_eq!(
        info.labels.get("containerd.io/gc.ref.content.m.0"),
        Some(&parts[0].manifest.digest().to_string())
    );
    let info = dst.store.info(parts[2].manifest.digest()).await.unwrap();
    assert_eq!(
        info.labels.get("containerd.io/gc.ref.content.l.2"),
        Some(&parts[2].layers[2].digest().to_string())
    );
    // Importing again changes nothing and writes nothing.
    let r = import(dst.arc(), &dst.images, &out, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!((r.images.len(), r.blobs_written), (2, 0));
}

#[tokio::test]
async fn tar_round_trip_is_deterministic() {
    let src = env();
    let (a, b, _) = two_images(&src).await;
    src.images.create(a.clone()).await.unwrap();
    src.images.create(b.clone()).await.unwrap();
    let t1 = src.root.join("one.tar");
    let t2 = src.root.join("two.tar");
    export_tar(
        src.arc(),
        &[a.clone(), b.clone()],
        &t1,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    export_tar(
        src.arc(),
        &[a.clone(), b.clone()],
        &t2,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&t1).unwrap(), std::fs::read(&t2).unwrap());

    let dst = env();
    import(dst.arc(), &dst.images, &t1, &ImportOpts::default())
        .await
        .unwrap();
    assert_same_images(
        &src,
        &dst,
        &["example.com/multi:1.0", "docker.io/library/single:latest"],
    )
    .await;
    assert!(
        dst.store
            .list_statuses(&[] as &[String])
            .await
            .unwrap()
            .is_empty(),
        "no ingests left"
    );

    // gzip-compressed tar.
    let gz = src.root.join("one.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&t1).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let dst2 = env();
    let opts = ImportOpts {
        name: Some("renamed/base".into()),
        ..Default::default()
    };
    let r = import(dst2.arc(), &dst2.images, &gz, &opts).await.unwrap();
    let mut names: Vec<String> = r.images.iter().map(|i| i.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["renamed/base:1.0", "renamed/base:latest"]);
}

#[tokio::test]
async fn name_override_and_merge_into_existing_layout() {
    let src = env();
    let (a, b, _) = two_images(&src).await;
    let out = src.root.join("layout");
    export_dir(
        src.arc(),
        std::slice::from_ref(&a),
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    export_dir(
        src.arc(),
        std::slice::from_ref(&b),
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    // Re-exporting a replaces its entry instead of adding one.
    export_dir(
        src.arc(),
        std::slice::from_ref(&a),
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    let one = src.root.join("one");
    export_dir(
        src.arc(),
        std::slice::from_ref(&b),
        &one,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let dst = env();
    let opts = ImportOpts {
        name: Some("mine:v9".into()),
        ..Default::default()
    };
    let r = import(dst.arc(), &dst.images, &one, &opts).await.unwrap();
    assert_eq!(r.images[0].name, "mine:v9");
    assert_eq!(r.images[0].target.digest(), b.target.digest());
}

#[tokio::test]
async fn platform_filters() {
    let src = env();
    let (a, _, parts) = two_images(&src).await;
    // Drop the arm64 config: a partial (single-platform) pull.
    src.store.delete(parts[1].config.digest()).await.unwrap();
    let out = src.root.join("layout");
    let e = export_dir(
        src.arc(),
        std::slice::from_ref(&a),
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string()
            .contains(&parts[1].config.digest().to_string()),
        "{e}"
    );
    let opts = ExportOpts {
        platforms: Some(Arc::new(only(parse("linux/amd64").unwrap()))),
        ..Default::default()
    };
    export_dir(src.arc(), std::slice::from_ref(&a), &out, &opts)
        .await
        .unwrap();
    assert!(
        !out.join("blobs/sha256")
            .join(parts[1].manifest.digest().digest())
            .exists()
    );

    let dst = env();
    let e = import(dst.arc(), &dst.images, &out, &ImportOpts::default())
        .await
        .unwrap_err();
    assert!(
        e.is_not_found() || e.kind() == strata_content::ErrorKind::Io,
        "{e}"
    );
    assert!(dst.digests().await.is_empty(), "rolled back");
    let iopts = ImportOpts {
        platforms: Some(Arc::new(only(parse("linux/amd64").unwrap()))),
        ..Default::default()
    };
    let r = import(dst.arc(), &dst.images, &out, &iopts).await.unwrap();
    assert_eq!(r.images[0].target.digest(), a.target.digest());
    let m = crate::image::manifest(
        &dst.store,
        &r.images[0].target,
        &only(parse("linux/amd64").unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(m.descriptor.digest(), parts[0].manifest.digest());
}

async fn exported(src: &Env, name: &str) -> (std::path::PathBuf, Vec<TestManifest>) {
    let (a, b, parts) = two_images(src).await;
    let out = src.root.join(name);
    export_dir(src.arc(), &[a, b], &out, &ExportOpts::default())
        .await
        .unwrap();
    (out, parts)
}

async fn assert_rejected(dir_or_tar: &Path, want: &str) {
    let dst = env();
    let e = import(dst.arc(), &dst.images, dir_or_tar, &ImportOpts::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains(want), "{e} should mention {want}");
    assert!(
        dst.digests().await.is_empty(),
        "no committed blob after {e}"
    );
    assert!(
        dst.store
            .list_statuses(&[] as &[String])
            .await
            .unwrap()
            .is_empty(),
        "no ingest left"
    );
    assert!(
        dst.images.list(&[] as &[String]).await.unwrap().is_empty(),
        "no image record"
    );
}

#[tokio::test]
async fn bad_layouts_leave_nothing() {
    let src = env();
    // A blob whose bytes do not match its name (same length).
    let (out, parts) = exported(&src, "wrong-digest").await;
    let p = out
        .join("blobs/sha256")
        .join(parts[2].layers[1].digest().digest());
    let mut data = std::fs::read(&p).unwrap();
    data[0] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    assert_rejected(&out, "digest").await;

    // A truncated blob.
    let (out, parts) = exported(&src, "truncated").await;
    let p = out
        .join("blobs/sha256")
        .join(parts[2].layers[2].digest().digest());
    let data = std::fs::read(&p).unwrap();
    std::fs::write(&p, &data[..data.len() / 2]).unwrap();
    assert_rejected(&out, "truncated").await;

    // Malformed index.json and manifest.
    let (out, _) = exported(&src, "bad-index").await;
    std::fs::write(
        out.join("index.json"),
        b"{\"schemaVersion\":2,\"manifests\":[",
    )
    .unwrap();
    assert_rejected(&out, "index.json").await;
    let (out, parts) = exported(&src, "missing").await;
    std::fs::remove_file(
        out.join("blobs/sha256")
            .join(parts[1].config.digest().digest()),
    )
    .unwrap();
    assert_rejected(&out, parts[1].config.digest().as_ref()).await;
    let (out, _) = exported(&src, "bad-version").await;
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    assert_rejected(&out, "imageLayoutVersion").await;
    let empty = src.root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_rejected(&empty, "neither").await;

    // A tar with a corrupt blob entry.
    let (a, b, parts) = two_images(&src).await;
    let t = src.root.join("x.tar");
    export_tar(src.arc(), &[a, b], &t, &ExportOpts::default())
        .await
        .unwrap();
    let mut bytes = std::fs::read(&t).unwrap();
    let needle = format!("{}of linux/amd64", "layer 0 ");
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    bytes[pos] = b'X';
    std::fs::write(&t, &bytes).unwrap();
    assert_rejected(&t, "digest").await;
    // A tar cut short in the middle.
    let mut bytes = std::fs::read(src.root.join("x.tar")).unwrap();
    bytes.truncate(bytes.len() / 2 + 100);
    std::fs::write(&t, &bytes).unwrap();
    let _ = parts;
    let dst = env();
    let e = import(dst.arc(), &dst.images, &t, &ImportOpts::default())
        .await
        .unwrap_err();
    assert!(
        dst.digests().await.is_empty(),
        "no committed blob after {e}"
    );
}

/// Writes a `docker save`-style tar: `<id>/layer.tar` files (the second a symlink to the
/// first's bytes under another id, as old docker did for duplicates), `<cfg>.json`,
/// `manifest.json`, `repositories`.
fn docker_save_tar(path: &Path, gzip_second: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }
    let l1 = tar_of(&[("hello.txt", b"hello\n")]);
    let l2_plain = tar_of(&[("etc/os-release", b"ID=test\n")]);
    let l2 = if gzip_second {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&l2_plain).unwrap();
        e.finish().unwrap()
    } else {
        l2_plain.clone()
    };
    let d = |b: &[u8]| strata_content::digest::sha256(b).to_string();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}","{}"]}}}}"#,
        d(&l1),
        d(&l2_plain),
        d(&l1)
    );
    let cfg_name = format!(
        "{}.json",
        strata_content::digest::sha256(config.as_bytes()).digest()
    );
    let manifest = format!(
        r#"[{{"Config":"{cfg_name}","RepoTags":["busybox:1.0","example.com/x/y:2"],"Layers":["aaa/layer.tar","bbb/layer.tar","ccc/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("aaa/layer.tar", &l1);
    add("aaa/json", b"{}");
    add("aaa/VERSION", b"1.0");
    add("bbb/layer.tar", &l2);
    add(&cfg_name, config.as_bytes());
    add("repositories", b"{}");
    add("manifest.json", manifest.as_bytes());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "ccc/layer.tar", "../aaa/layer.tar")
        .unwrap();
    b.finish().unwrap();
    (config.into_bytes(), vec![l1, l2])
}

#[tokio::test]
async fn docker_save_import() {
    let e = env();
    let t = e.root.join("save.tar");
    let (config, layers) = docker_save_tar(&t, false);
    let r = import(e.arc(), &e.images, &t, &ImportOpts::default())
        .await
        .unwrap();
    let names: Vec<&str> = r.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1.0", "example.com/x/y:2"]
    );
    let target = r.images[0].target.clone();
    assert_eq!(target.media_type().as_ref(), mt::DOCKER_MANIFEST);
    let m = crate::image::manifest(&e.store, &target, &crate::platforms::all())
        .await
        .unwrap();
    // Config and layer bytes are kept exactly.
    assert_eq!(
        *m.manifest.config().digest(),
        strata_content::digest::sha256(&config)
    );
    assert_eq!(m.manifest.config().media_type().as_ref(), mt::DOCKER_CONFIG);
    let got: Vec<Digest> = m
        .manifest
        .layers()
        .iter()
        .map(|l| l.digest().clone())
        .collect();
    let want: Vec<Digest> = [&layers[0], &layers[1], &layers[0]]
        .iter()
        .map(|b| strata_content::digest::sha256(b))
        .collect();
    assert_eq!(got, want);
    assert!(
        m.manifest
            .layers()
            .iter()
            .all(|l| l.media_type().as_ref() == mt::DOCKER_LAYER)
    );
    // The manifest is containerd's importer's exact JSON.
    let raw = String::from_utf8(m.raw.clone()).unwrap();
    assert!(raw.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:"#), "{raw}");
    let info = e.store.info(&got[0]).await.unwrap();
    assert_eq!(
        info.labels.get(strata_content::labels::UNCOMPRESSED),
        Some(&got[0].to_string())
    );
    // Only the referenced blobs are kept (config, 2 layers, manifest).
    assert_eq!(e.digests().await.len(), 4);
    // Deterministic: another import into a fresh store builds the same manifest.
    let e2 = env();
    let r2 = import(e2.arc(), &e2.images, &t, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!(r2.images[0].target, target);

    // A gzip layer is typed as such.
    let t = e.root.join("save-gz.tar");
    docker_save_tar(&t, true);
    let e3 = env();
    let r = import(e3.arc(), &e3.images, &t, &ImportOpts::default())
        .await
        .unwrap();
    let m = crate::image::manifest(&e3.store, &r.images[0].target, &crate::platforms::all())
        .await
        .unwrap();
    assert_eq!(
        m.manifest.layers()[1].media_type().as_ref(),
        mt::DOCKER_LAYER_GZIP
    );
    assert_eq!(
        crate::image::rootfs(&e3.store, m.manifest.config())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn docker_save_errors() {
    let e = env();
    let t = e.root.join("save.tar");
    docker_save_tar(&t, false);
    // Unpack it to a directory and damage it in various ways.
    let dir = e.root.join("saved");
    tar::Archive::new(std::fs::File::open(&t).unwrap())
        .unpack(&dir)
        .unwrap();
    let dst = env();
    let r = import(dst.arc(), &dst.images, &dir, &ImportOpts::default())
        .await
        .unwrap();
    assert_eq!(r.images.len(), 2, "a docker save directory imports too");

    let mut layer = std::fs::read(dir.join("aaa/layer.tar")).unwrap();
    layer[0] ^= 1;
    std::fs::write(dir.join("bbb/layer.tar"), &layer).unwrap();
    assert_rejected(&dir, "diff_id").await;
    std::fs::write(dir.join("manifest.json"), b"[{\"Config\":").unwrap();
    assert_rejected(&dir, "manifest.json").await;
    std::fs::write(
        dir.join("manifest.json"),
        br#"[{"Config":"../../etc/passwd","Layers":[]}]"#,
    )
    .unwrap();
    assert_rejected(&dir, "unsafe path").await;
}

#[tokio::test]
async fn import_holds_everything_in_a_lease() {
    use crate::leases::{LeaseManager, LeaseOpts};
    let src = env();
    let (a, b, _) = two_images(&src).await;
    let out = src.root.join("layout");
    export_dir(
        src.arc(),
        &[a.clone(), b.clone()],
        &out,
        &ExportOpts::default(),
    )
    .await
    .unwrap();
    let dst = env();
    let leases = Arc::new(LeaseManager::open(dst.root.join("metadata.db")).unwrap());
    leases
        .create(LeaseOpts::default().id("import-1"))
        .await
        .unwrap();
    let opts = ImportOpts {
        lease: Some((leases.clone(), "import-1".into())),
        ..Default::default()
    };
    import(dst.arc(), &dst.images, &out, &opts).await.unwrap();
    let held = leases.list_resources("import-1").await.unwrap();
    for d in dst.digests().await {
        assert!(
            held.iter()
                .any(|r| r.kind == "content" && r.id == d.to_string()),
            "{d} is held"
        );
    }
    for n in [&a.name, &b.name] {
        assert!(
            held.iter().any(|r| r.kind == "images" && &r.id == n),
            "{n} is held"
        );
    }
    // A lease that does not exist fails the import before anything is written.
    let dst2 = env();
    let leases2 = Arc::new(LeaseManager::open(dst2.root.join("metadata.db")).unwrap());
    let opts = ImportOpts {
        lease: Some((leases2, "missing".into())),
        ..Default::default()
    };
    let e = import(dst2.arc(), &dst2.images, &out, &opts)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(dst2.digests().await.is_empty());
}

fn tar_file(t: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut a = tar::Archive::new(std::fs::File::open(t).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return Some(v);
        }
    }
    None
}

#[tokio::test]
async fn tar_export_has_a_docker_manifest() {
    let src = env();
    let (a, b, parts) = two_images(&src).await;
    let also_b = Image::new("example.com/other:2", b.target.clone());
    let t = src.root.join("x.tar");
    let opts = ExportOpts {
        platforms: Some(Arc::new(only(parse("linux/arm64").unwrap()))),
        ..Default::default()
    };
    export_tar(src.arc(), &[a.clone(), b.clone(), also_b], &t, &opts)
        .await
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&tar_file(&t, "manifest.json").unwrap()).unwrap();
    let entries = m.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{m}");
    let blob = |d: &Descriptor| format!("blobs/sha256/{}", d.digest().digest());
    // The index image contributes its arm64 manifest.
    assert_eq!(entries[0]["Config"], blob(&parts[1].config));
    assert_eq!(
        entries[0]["RepoTags"],
        serde_json::json!(["example.com/multi:1.0"])
    );
    assert_eq!(
        entries[0]["Layers"],
        serde_json::json!([blob(&parts[1].layers[0])])
    );
    // Two names for one manifest share an entry.
    assert_eq!(
        entries[1]["RepoTags"],
        serde_json::json!(["single:latest", "example.com/other:2"])
    );
    assert_eq!(entries[1]["Layers"].as_array().unwrap().len(), 3);

    let opts = ExportOpts {
        skip_docker_manifest: true,
        ..Default::default()
    };
    export_tar(src.arc(), &[b], &t, &opts).await.unwrap();
    assert!(tar_file(&t, "manifest.json").is_none());
    assert!(tar_file(&t, "index.json").is_some());
}
