//! `WalkingDiff` over a real `LocalStore` with real mounts: Applier targets (bind → into
//! the directory, overlay → upperdir conversion) and Comparer (double walk, overlay fast
//! path, media types, uncompressed label, existing blob).

mod common;

use common::{SnapOpts, Tar, snapshot_with};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, ErrorKind, Manager, MediaType, Provider, Store, helpers};
use strata_diff::compression::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use strata_diff::{Applier, ApplyOpts, Comparer, Compression, DiffOpts, Encoding, WalkingDiff};
use strata_snapshot::Mount;
use strata_snapshot::mount::MountGuard;

fn store() -> (tempfile::TempDir, Arc<LocalStore>) {
    let d = tempfile::tempdir().unwrap();
    let s = LocalStore::open(d.path().join("content")).unwrap();
    (d, Arc::new(s))
}

fn manifest(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, common::Node> {
    snapshot_with(
        root,
        &SnapOpts {
            mtimes: false,
            dir_mtimes: false,
            xattr_filter: |k| !k.starts_with("trusted."),
        },
    )
}

async fn put(store: &LocalStore, data: &[u8], mt: &str) -> Descriptor {
    let desc = Descriptor::new(
        MediaType::from(mt),
        data.len() as u64,
        strata_content::digest::sha256(data),
    );
    helpers::write_blob(store, "test-layer", data, &desc, Default::default())
        .await
        .unwrap();
    desc
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = strata_diff::compression::encoder(Vec::new(), Encoding::default()).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1", 0o644)
        .file("etc/.wh.gone", b"", 0)
        .symlink("hosts", "etc/h");
    t.finish()
}

#[tokio::test]
async fn apply_into_bind_and_overlay_upperdir() {
    let (_d, s) = store();
    let wd = WalkingDiff::new(s.clone() as Arc<dyn Store>);
    let plain = layer();
    let desc = put(&s, &gz(&plain), OCI_LAYER_GZIP).await;

    // bind: applied into the source directory.
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("etc")).unwrap();
    fs::write(t.path().join("etc/gone"), b"x").unwrap();
    let out = wd
        .apply(
            &desc,
            &[Mount::bind(t.path().to_str().unwrap(), false)],
            ApplyOpts::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.media_type(), &MediaType::from(OCI_LAYER));
    assert_eq!(out.digest(), &strata_content::digest::sha256(&plain));
    assert_eq!(out.size(), plain.len() as u64);
    assert_eq!(fs::read(t.path().join("etc/hosts")).unwrap(), b"127.0.0.1");
    assert!(!t.path().join("etc/gone").exists());

    // A read-only bind (a view; with the native backend, the committed parent's own
    // directory) is refused, and nothing is written.
    let ro = tempfile::tempdir().unwrap();
    let e = wd
        .apply(
            &desc,
            &[Mount::bind(ro.path().to_str().unwrap(), true)],
            ApplyOpts::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(fs::read_dir(ro.path()).unwrap().count(), 0);

    // overlay with upperdir: whiteouts become 0:0 char devices in the upperdir, no mount.
    let o = tempfile::tempdir().unwrap();
    let (lower, upper, work) = (o.path().join("l"), o.path().join("u"), o.path().join("w"));
    for d in [&lower, &upper, &work] {
        fs::create_dir(d).unwrap();
    }
    fs::create_dir(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/gone"), "lower").unwrap(); // what the whiteout hides
    fs::set_permissions(
        lower.join("etc"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let m = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={}", lower.display()),
        ],
    };
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = progress.clone();
    let opts = ApplyOpts {
        progress: Some(Arc::new(move |n| {
            p2.store(n, std::sync::atomic::Ordering::SeqCst)
        })),
        sync_fs: true,
    };
    let out2 = wd.apply(&desc, &[m], opts).await.unwrap();
    assert_eq!(out2.digest(), out.digest());
    assert_eq!(
        progress.load(std::sync::atomic::Ordering::SeqCst),
        plain.len() as u64
    );
    let wh = fs::symlink_metadata(upper.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    // Unsupported media type and missing blob.
    let mut bad = desc.clone();
    bad.set_media_type(MediaType::from(
        "application/vnd.oci.image.layer.v1.tar+encrypted",
    ));
    let e = wd
        .apply(
            &bad,
            &[Mount::bind(t.path().to_str().unwrap(), false)],
            ApplyOpts::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
    let missing = Descriptor::new(
        MediaType::from(OCI_LAYER),
        3,
        strata_content::digest::sha256(b"abc"),
    );
    let e = wd
        .apply(
            &missing,
            &[Mount::bind(t.path().to_str().unwrap(), false)],
            ApplyOpts::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

fn base(r: &Path) {
    fs::create_dir_all(r.join("etc/sub")).unwrap();
    fs::write(r.join("etc/hosts"), b"a").unwrap();
    fs::write(r.join("etc/passwd"), b"root").unwrap();
    fs::write(r.join("etc/sub/x"), b"x").unwrap();
    fs::create_dir(r.join("opq")).unwrap();
    fs::write(r.join("opq/hidden"), b"h").unwrap();
}

fn change(r: &Path) {
    fs::write(r.join("etc/hosts"), b"changed").unwrap();
    fs::remove_file(r.join("etc/passwd")).unwrap();
    fs::remove_dir_all(r.join("etc/sub")).unwrap();
    fs::write(r.join("new"), b"new").unwrap();
    fs::remove_dir_all(r.join("opq")).unwrap();
    fs::create_dir(r.join("opq")).unwrap();
    fs::write(r.join("opq/fresh"), b"f").unwrap();
}

async fn read_layer(s: &LocalStore, desc: &Descriptor) -> Vec<u8> {
    let blob = helpers::read_blob(s, desc).await.unwrap();
    let c = Compression::from_media_type(desc.media_type().as_ref()).unwrap();
    let mut out = Vec::new();
    strata_diff::compression::decoder(&blob[..], c)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn compare_double_walk_media_types_and_labels() {
    let (_d, s) = store();
    let wd = WalkingDiff::new(s.clone() as Arc<dyn Store>);
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&upper).unwrap();
    base(&lower);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", lower.display()))
            .arg(&upper)
            .status()
            .unwrap()
            .success()
    );
    change(&upper);
    let lm = [Mount::bind(lower.to_str().unwrap(), true)];
    let um = [Mount::bind(upper.to_str().unwrap(), true)];
    for mt in [OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER] {
        let mut labels = strata_content::Labels::new();
        labels.insert("test".into(), mt.into());
        let desc = wd
            .compare(
                &lm,
                &um,
                DiffOpts {
                    media_type: Some(mt.into()),
                    labels,
                    reference: Some(format!("ref-{mt}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(desc.media_type(), &MediaType::from(mt));
        let info = s.info(desc.digest()).await.unwrap();
        assert_eq!(info.size, desc.size());
        let tar = read_layer(&s, &desc).await;
        assert_eq!(
            info.labels.get("containerd.io/uncompressed").unwrap(),
            &strata_content::digest::sha256(&tar).to_string()
        );
        assert_eq!(info.labels.get("test").unwrap(), mt);
        // The layer applied to a copy of lower gives upper.
        let dest = tempfile::tempdir().unwrap();
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", lower.display()))
                .arg(dest.path())
                .status()
                .unwrap()
                .success()
        );
        strata_diff::apply_layer(
            &tar[..],
            Compression::None,
            dest.path(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(manifest(dest.path()), manifest(&upper), "{mt}");
    }
    // Same diff again (blob exists): the label is still (re)set.
    let desc = wd.compare(&lm, &um, DiffOpts::default()).await.unwrap();
    let mut info = s.info(desc.digest()).await.unwrap();
    info.labels.clear();
    s.update(info, &["labels.containerd.io/uncompressed".to_string()])
        .await
        .unwrap();
    let again = wd.compare(&lm, &um, DiffOpts::default()).await.unwrap();
    assert_eq!(again.digest(), desc.digest(), "deterministic output");
    assert!(
        s.info(desc.digest())
            .await
            .unwrap()
            .labels
            .contains_key("containerd.io/uncompressed")
    );
    // Unsupported media type.
    let e = wd
        .compare(
            &lm,
            &um,
            DiffOpts {
                media_type: Some("application/x-foo".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
    let _ = s.reader_at(&desc).await.unwrap();
}

#[tokio::test]
async fn compare_overlay_fast_path_equals_double_walk_result() {
    let (_d, s) = store();
    let wd = WalkingDiff::new(s.clone() as Arc<dyn Store>);
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        t.path().join("l"),
        t.path().join("u"),
        t.path().join("w"),
        t.path().join("m"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    base(&lower);
    let ov = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={}", lower.display()),
        ],
    };
    let g = MountGuard::mount(std::slice::from_ref(&ov), &merged).unwrap();
    change(&merged);
    let expected = manifest(&merged);
    g.unmount().unwrap();
    let lm = [Mount::bind(lower.to_str().unwrap(), true)];
    // Fast path: upperdir only.
    let fast = wd
        .compare(
            &lm,
            std::slice::from_ref(&ov),
            DiffOpts {
                zstd_threads: 2,
                media_type: Some(OCI_LAYER_ZSTD.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for desc in [fast] {
        let tar = read_layer(&s, &desc).await;
        let dest = tempfile::tempdir().unwrap();
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", lower.display()))
                .arg(dest.path())
                .status()
                .unwrap()
                .success()
        );
        strata_diff::apply_layer(
            &tar[..],
            Compression::None,
            dest.path(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(manifest(dest.path()), expected);
    }
    // Double walk over the overlay (mounted read-only to a temp dir by the differ).
    let walked = wd
        .compare(&[], std::slice::from_ref(&ov), DiffOpts::default())
        .await
        .unwrap();
    let tar = read_layer(&s, &walked).await;
    let dest = tempfile::tempdir().unwrap();
    strata_diff::apply_layer(
        &tar[..],
        Compression::None,
        dest.path(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(manifest(dest.path()), expected);
}
