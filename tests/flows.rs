//! Cross-crate tests of the Unpack and Commit flows and of GC, on both snapshotters with
//! real mounts (run as root).

use std::path::Path;

use strata::content::{Manager, Provider};
use strata::image::build::{ImageBuilder, LayerBuilder};
use strata::image::service::{CommitOptions, ConfigChanges, IMAGE_LABEL, UnpackOptions};
use strata::snapshot::Kind;
use strata::snapshot::mount::with_temp_mount;
use strata::snapshot::testsuite::fstest::{check_directory_equal, read_tree};
use strata::{Root, RootOptions};

struct Env {
    _dir: tempfile::TempDir,
    root: Root,
}

impl std::ops::Deref for Env {
    type Target = Root;
    fn deref(&self) -> &Root {
        &self.root
    }
}

fn env(sn_name: &'static str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let opts = RootOptions {
        snapshotter: Some(sn_name.into()),
        ..Default::default()
    };
    let root = Root::open_with(dir.path(), opts).unwrap();
    Env { _dir: dir, root }
}

impl Env {
    /// Runs `f` on a read-only view of snapshot `parent`.
    async fn with_view<R: Send + 'static>(
        &self,
        parent: &str,
        f: impl FnOnce(&Path) -> R + Send + 'static,
    ) -> R {
        let key = format!("test-view-{parent}");
        let mounts = self
            .snapshotter()
            .view(&key, parent, Default::default())
            .await
            .unwrap();
        let r = tokio::task::spawn_blocking(move || with_temp_mount(&mounts, f).unwrap())
            .await
            .unwrap();
        self.snapshotter().remove(&key).await.unwrap();
        r
    }
}

/// Two layers: a base tree, then a change with a whiteout, an opaque dir, a symlink and a
/// hardlink.
async fn base_image(e: &Env, name: &str) -> strata::image::image::Image {
    let mut l1 = LayerBuilder::new();
    l1.dir("etc", 0o755)
        .unwrap()
        .file("etc/os-release", 0o644, b"NAME=strata\n")
        .unwrap()
        .dir("usr", 0o755)
        .unwrap()
        .dir("usr/share", 0o755)
        .unwrap()
        .dir("usr/share/doc", 0o755)
        .unwrap()
        .file("usr/share/doc/README", 0o644, b"read me\n")
        .unwrap()
        .file("usr/share/doc/old", 0o600, b"old\n")
        .unwrap()
        .dir("opt", 0o700)
        .unwrap()
        .file("opt/gone", 0o644, b"x")
        .unwrap()
        .dir("bin", 0o755)
        .unwrap()
        .file("bin/hello", 0o4755, b"#!/bin/sh\necho hello\n")
        .unwrap();
    let mut l2 = LayerBuilder::new();
    l2.mtime(1_700_000_000)
        .whiteout("usr/share/doc/old")
        .unwrap()
        .opaque("opt")
        .unwrap()
        .file("opt/new", 0o640, b"new")
        .unwrap()
        .symlink("bin/hi", "hello")
        .unwrap()
        .file("bin/tool", 0o755, b"tool")
        .unwrap()
        .hardlink("bin/tool2", "bin/tool")
        .unwrap();
    ImageBuilder::new()
        .layer(l1.finish_gzip().unwrap())
        .layer(l2.finish_plain().unwrap())
        .config("Cmd", serde_json::json!(["/bin/hello"]))
        .write(e.content(), e.images(), name)
        .await
        .unwrap()
}

async fn unpack_then_commit(sn_name: &'static str) {
    let e = env(sn_name);
    let image = base_image(&e, "base:1").await;
    let u = e
        .service()
        .unpack(&image, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!((u.applied, u.existed, u.chain_ids.len()), (2, 0, 2));
    let top = u.top().unwrap().to_string();
    assert_eq!(
        e.snapshotter().stat(&top).await.unwrap().kind,
        Kind::Committed
    );
    // The unpacked tree holds the merged layers.
    let tree = e.with_view(&top, |root| read_tree(root).unwrap()).await;
    let names: Vec<String> = tree.keys().map(|p| p.display().to_string()).collect();
    for want in [
        "etc/os-release",
        "usr/share/doc/README",
        "opt/new",
        "bin/hi",
        "bin/tool2",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing in {names:?}"
        );
    }
    for gone in ["usr/share/doc/old", "opt/gone"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} still present");
    }
    // Labels: DiffIDs on layers, the top snapshot on the config.
    let cfg = e.content().info(u.config.digest()).await.unwrap();
    assert_eq!(
        cfg.labels
            .get(&format!("containerd.io/gc.ref.snapshot.{sn_name}")),
        Some(&top)
    );
    // A second unpack does nothing.
    let again = e
        .service()
        .unpack(&image, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!((again.applied, again.existed), (0, 2));

    // A container: change files, commit.
    let mut labels = strata::content::Labels::new();
    labels.insert(IMAGE_LABEL.into(), "base:1".into());
    let mounts = e
        .snapshotter()
        .prepare("ctr-1", &top, labels)
        .await
        .unwrap();
    let m2 = mounts.clone();
    tokio::task::spawn_blocking(move || {
        with_temp_mount(&m2, |root| {
            std::fs::write(root.join("etc/motd"), b"welcome\n").unwrap();
            std::fs::write(root.join("etc/os-release"), b"NAME=changed\n").unwrap();
            std::fs::remove_file(root.join("usr/share/doc/README")).unwrap();
            std::fs::remove_dir_all(root.join("opt")).unwrap();
            std::os::unix::fs::symlink("/etc/motd", root.join("motd")).unwrap();
        })
        .unwrap()
    })
    .await
    .unwrap();
    let mut changes = ConfigChanges::default();
    changes.apply_instruction("ENV GREETING=hi").unwrap();
    let c = e
        .service()
        .commit(
            "ctr-1",
            "committed:1",
            CommitOptions {
                author: Some("tester".into()),
                message: Some("m".into()),
                changes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let new_chain = c.chain_id.clone().unwrap().to_string();
    assert_eq!(
        e.snapshotter().stat(&new_chain).await.unwrap().kind,
        Kind::Committed
    );
    // The committed image's snapshot equals the container's tree.
    let view_tree = e
        .with_view(&new_chain, |root| read_tree(root).unwrap())
        .await;
    let ctr_tree = tokio::task::spawn_blocking(move || {
        with_temp_mount(&mounts, |r| read_tree(r).unwrap()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(view_tree, ctr_tree);
    // Config: diff_ids + 1, history entry, env.
    let raw = strata::content::helpers::read_blob(e.content(), &c.config)
        .await
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        cfg["rootfs"]["diff_ids"][2],
        serde_json::json!(c.diff_id.as_ref().unwrap().to_string())
    );
    let hist = cfg["history"].as_array().unwrap();
    assert_eq!(hist.last().unwrap()["author"], "tester");
    assert_eq!(hist.last().unwrap()["comment"], "m");
    assert!(
        cfg["config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("GREETING=hi"))
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/bin/hello"]));
    // Unpacking the committed image finds every snapshot in place (no re-apply).
    let img = e
        .images()
        .get("docker.io/library/committed:1")
        .await
        .unwrap();
    let u2 = e
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!((u2.applied, u2.existed), (0, 3));
    assert_eq!(u2.top().unwrap().to_string(), new_chain);
}

#[tokio::test]
async fn unpack_then_commit_overlay() {
    unpack_then_commit("overlay").await;
}

#[tokio::test]
async fn unpack_then_commit_native() {
    unpack_then_commit("native").await;
}

#[tokio::test]
async fn empty_commit_makes_empty_layer_history_or_is_refused() {
    let e = env("overlay");
    let image = base_image(&e, "base:1").await;
    let u = e
        .service()
        .unpack(&image, UnpackOptions::default())
        .await
        .unwrap();
    let top = u.top().unwrap().to_string();
    let mut labels = strata::content::Labels::new();
    labels.insert(IMAGE_LABEL.into(), "base:1".into());
    e.snapshotter().prepare("ctr", &top, labels).await.unwrap();
    let refused = e
        .service()
        .commit(
            "ctr",
            "empty:1",
            CommitOptions {
                refuse_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(refused.is_failed_precondition(), "{refused}");
    let c = e
        .service()
        .commit("ctr", "empty:1", CommitOptions::default())
        .await
        .unwrap();
    assert!(c.layer.is_none());
    assert_eq!(c.chain_id.unwrap().to_string(), top);
    let raw = strata::content::helpers::read_blob(e.content(), &c.config)
        .await
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        cfg["history"].as_array().unwrap().last().unwrap()["empty_layer"],
        true
    );
}

#[tokio::test]
async fn diff_id_mismatch_fails_and_leaves_no_snapshot() {
    let e = env("overlay");
    let mut l = LayerBuilder::new();
    l.file("a", 0o644, b"a").unwrap();
    let mut layer = l.finish_gzip().unwrap();
    layer.diff_id = strata::content::digest::sha256(b"not the layer");
    let image = ImageBuilder::new()
        .layer(layer)
        .write(e.content(), e.images(), "bad:1")
        .await
        .unwrap();
    let err = e
        .service()
        .unpack(&image, UnpackOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_failed_precondition(), "{err}");
    assert!(err.to_string().contains("DiffID"), "{err}");
    assert!(
        e.snapshotter().walk(&[]).await.unwrap().is_empty(),
        "no snapshot may remain"
    );
}

#[tokio::test]
async fn concurrent_unpacks_of_one_image_both_succeed() {
    let e = env("overlay");
    let image = base_image(&e, "base:1").await;
    let (a, b) = tokio::join!(
        e.service().unpack(&image, UnpackOptions::default()),
        e.service().unpack(&image, UnpackOptions::default())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.top(), b.top());
    assert_eq!(a.applied + b.applied, 2, "each layer applied once");
    assert_eq!(e.snapshotter().walk(&[]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn gc_after_image_rm_collects_exactly_the_unreferenced() {
    let e = env("overlay");
    let a = base_image(&e, "a:1").await;
    let u = e
        .service()
        .unpack(&a, UnpackOptions::default())
        .await
        .unwrap();
    // A second image sharing nothing.
    let mut l = LayerBuilder::new();
    l.file("only-b", 0o644, b"b").unwrap();
    let b = ImageBuilder::new()
        .layer(l.finish_gzip().unwrap())
        .write(e.content(), e.images(), "b:1")
        .await
        .unwrap();
    let ub = e
        .service()
        .unpack(&b, UnpackOptions::default())
        .await
        .unwrap();
    // Nothing is garbage yet.
    let before = e.content().walk(&[]).await.unwrap().len();
    let stats = e.collector().unwrap().collect().await.unwrap();
    assert_eq!(
        (stats.content, stats.snapshots, stats.blobs_removed),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(e.content().walk(&[]).await.unwrap().len(), before);

    e.images().delete("a:1", None).await.unwrap();
    let stats = e.collector().unwrap().collect().await.unwrap();
    assert_eq!(stats.snapshots, 2, "{stats:?}");
    assert_eq!(
        stats.content, 4,
        "manifest, config and two layers of a: {stats:?}"
    );
    // a's objects are gone, b's remain and still read.
    assert!(
        e.content()
            .info(a.target.digest())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(!e.content().blob_path(a.target.digest()).exists());
    for c in &u.chain_ids {
        assert!(
            e.snapshotter()
                .stat(c.as_ref())
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
    assert!(e.content().reader_at(&b.target).await.is_ok());
    assert_eq!(
        e.snapshotter()
            .stat(ub.top().unwrap().as_ref())
            .await
            .unwrap()
            .kind,
        Kind::Committed
    );
    // An active container snapshot is kept (it stands in for a container) even with
    // its image gone; its parent chain too.
    e.snapshotter()
        .prepare("ctr", ub.top().unwrap().as_ref(), Default::default())
        .await
        .unwrap();
    e.images().delete("b:1", None).await.unwrap();
    let stats = e.collector().unwrap().collect().await.unwrap();
    assert_eq!(stats.snapshots, 0, "{stats:?}");
    assert!(e.snapshotter().stat("ctr").await.is_ok());
    // A leftover extract snapshot (a crashed unpack) with no lease is collected.
    e.snapshotter()
        .prepare("extract-1-2 sha256:x", "", Default::default())
        .await
        .unwrap();
    let stats = e.collector().unwrap().collect().await.unwrap();
    assert_eq!(stats.snapshots, 1, "{stats:?}");
}

#[tokio::test]
async fn discard_layers_lets_gc_reclaim_layer_blobs() {
    let e = env("overlay");
    let image = base_image(&e, "base:1").await;
    let u = e
        .service()
        .unpack(
            &image,
            UnpackOptions {
                discard_layers: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stats = e.collector().unwrap().collect().await.unwrap();
    assert_eq!(stats.content, 2, "the two layer blobs: {stats:?}");
    // The image still resolves and its snapshot is intact.
    assert!(e.content().info(image.target.digest()).await.is_ok());
    assert!(e.content().info(u.config.digest()).await.is_ok());
    assert_eq!(
        e.snapshotter()
            .stat(u.top().unwrap().as_ref())
            .await
            .unwrap()
            .kind,
        Kind::Committed
    );
}

#[test]
fn check_directory_equal_is_usable() {
    // Guards the helper this file relies on.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("f"), b"1").unwrap();
    assert!(check_directory_equal(a.path(), b.path()).is_err());
    std::fs::write(b.path().join("f"), b"1").unwrap();
    assert!(check_directory_equal(a.path(), b.path()).is_ok());
}
