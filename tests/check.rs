//! `strata check` and `strata check --repair` on a damaged root: a corrupted blob byte, a
//! deleted snapshot directory, a dangling GC label, an orphan ingest directory and
//! bytes no record owns. The check names each, exits 1, repairs them, and is clean
//! afterwards; nothing referenced and whole is removed.

mod e2e_common;
mod example_bin;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use e2e_common::Root;
use strata::content::{Info, Labels, Manager};
use strata::image::build::{ImageBuilder, LayerBuilder};
use strata::image::check::CheckOptions;

fn strata_check(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(example_bin::example_bin("strata"))
        .arg("--root")
        .arg(root)
        .args(["--snapshotter", "native", "check"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An image with two layers, unpacked, and one container snapshot.
async fn healthy(root: &Root) {
    let mut a = LayerBuilder::new();
    a.dir("etc", 0o755)
        .unwrap()
        .file("etc/a", 0o644, b"a")
        .unwrap();
    let mut b = LayerBuilder::new();
    b.file("etc/b", 0o644, &vec![7u8; 100_000]).unwrap();
    ImageBuilder::new()
        .layer(a.finish_gzip().unwrap())
        .layer(b.finish_gzip().unwrap())
        .write(root.content(), root.images(), "check/img:1")
        .await
        .unwrap();
    root.prepare_container("ctr", "check/img:1").await.unwrap();
}

/// The newest snapshot directory (highest id) of the native snapshotter.
fn newest_snapshot_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("snapshots/native/snapshots");
    let ids = std::fs::read_dir(&dir).unwrap().filter_map(|e| {
        let e = e.unwrap();
        e.file_name().to_str()?.parse::<u64>().ok()
    });
    dir.join(ids.max().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_and_repairs_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path(), "native");
    healthy(&root).await;
    let clean = root.check(&CheckOptions::default()).await.unwrap();
    assert!(clean.is_clean(), "{:?}", clean.damage);
    assert!(
        clean.blobs >= 4 && clean.snapshots == 3 && clean.images == 1,
        "{clean:?}"
    );
    assert!(clean.labels >= 4, "{clean:?}");
    let (ok, out) = strata_check(dir.path(), &[]);
    assert!(ok, "{out}");

    // 1. A corrupted byte in the big layer's blob.
    let image = root.image("check/img:1").await.unwrap();
    let provider: &dyn strata::content::Provider = root.content();
    let m = strata::image::image::manifest(
        provider,
        &image.target,
        strata::image::platforms::default_arc().as_ref(),
    )
    .await
    .unwrap();
    let layer = m.manifest.layers()[1].clone();
    let blob = root.content().blob_path(layer.digest());
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    // 2. The container's directory is gone.
    std::fs::remove_dir_all(newest_snapshot_dir(dir.path())).unwrap();
    // 3. A dangling GC label on the manifest.
    let mut l = Labels::new();
    let nowhere = strata::content::digest::sha256(b"nowhere").to_string();
    l.insert("containerd.io/gc.ref.content.x".into(), nowhere.clone());
    let path = ["labels.containerd.io/gc.ref.content.x".to_string()];
    let update = Info::for_update(image.target.digest().clone(), l);
    root.content().update(update, &path).await.unwrap();
    // 4. An ingest directory without a record, and 5. bytes without a record.
    std::fs::create_dir_all(dir.path().join("content/ingest/orphan-key")).unwrap();
    let orphan = strata::content::digest::sha256(b"orphan");
    std::fs::write(root.content().blob_path(&orphan), b"orphan").unwrap();

    let quick = root
        .check(&CheckOptions {
            quick: true,
            repair: false,
        })
        .await
        .unwrap();
    let full = root.check(&CheckOptions::default()).await.unwrap();
    let kinds = |r: &strata::image::check::CheckReport| {
        let mut k: Vec<String> = r
            .damage
            .iter()
            .map(|d| format!("{} {}", d.kind, d.problem))
            .collect();
        k.sort();
        k
    };
    assert_eq!(full.damage.len(), 5, "{:#?}", full.damage);
    assert_eq!(
        quick.damage.len(),
        4,
        "sizes only: the flipped byte goes unseen: {:#?}",
        quick.damage
    );
    let has = |want: &str| full.damage.iter().any(|d| d.to_string().contains(want));
    assert!(
        has(&format!("blob {}: its bytes hash to", layer.digest())),
        "{:?}",
        kinds(&full)
    );
    assert!(has("snapshot ctr: its directory"), "{:?}", kinds(&full));
    assert!(
        has(&format!("points at {nowhere}, which is missing")),
        "{:?}",
        kinds(&full)
    );
    assert!(
        has("ingest orphan-key: no ingest record owns"),
        "{:?}",
        kinds(&full)
    );
    assert!(
        has(&format!("blob {orphan}: bytes that no record owns")),
        "{:?}",
        kinds(&full)
    );

    let (ok, out) = strata_check(dir.path(), &[]);
    assert!(!ok, "damage fails the check: {out}");
    assert!(out.contains("5 damaged"), "{out}");
    let (ok, out) = strata_check(dir.path(), &["--repair"]);
    assert!(ok, "{out}");
    // The bad layer's records go, and then the manifest's GC label to it (a second pass).
    assert!(out.contains("0 damaged, 6 repaired"), "{out}");
    let (ok, out) = strata_check(dir.path(), &[]);
    assert!(ok, "clean after repair: {out}");

    // What was whole stays: the image record and its unpacked snapshots.
    root.image("check/img:1").await.unwrap();
    assert_eq!(root.snapshotter().walk(&[]).await.unwrap().len(), 2);
    assert!(!root.content().blob_path(&orphan).exists());
}
