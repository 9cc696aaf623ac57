//! `examples/embed.rs` end to end against a real registry (Debian's docker-registry):
//! the example pulls `$REGISTRY/debian:minbase`, writes `/hello.txt` in a container,
//! commits and pushes `$REGISTRY/embed/test:1`, and prints the manifest digest. A fresh
//! root then pulls that image and sees the base's files plus `hello.txt`; skopeo sees
//! the same digest. Needs root (mounts) and docker-registry, skopeo.

mod e2e_common;
mod example_bin;
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::path::Path;
use std::process::Command;

use e2e_common::{Root, have, is_root};
use registry_common::{Registry, run};
use strata::image::build::{ImageBuilder, LayerBuilder};

/// Pushes a small image built by strata as `<registry>/debian:minbase`.
async fn push_base(work: &Path, registry: &str) {
    let src = Root::open(&work.join("src"), "native");
    let mut l = LayerBuilder::new();
    l.dir("etc", 0o755)
        .unwrap()
        .file("etc/os-release", 0o644, b"ID=embed-test\n")
        .unwrap();
    ImageBuilder::new()
        .layer(l.finish_gzip().unwrap())
        .write(src.content(), src.images(), "base:1")
        .await
        .unwrap();
    let remote = format!("{registry}/debian:minbase");
    src.push("base:1", Some(&remote), Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn embed_example_pulls_commits_and_pushes() {
    if !is_root() || !have("skopeo") {
        return;
    }
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    push_base(work.path(), &reg.addr).await;

    let out = Command::new(example_bin::example_bin("embed"))
        .env("STRATA_ROOT", work.path().join("state"))
        .env("REGISTRY", &reg.addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "embed failed: {stderr}");
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:"), "printed {digest:?}");

    // An independent reader: a fresh root pulls what the example pushed.
    let check = Root::open(&work.path().join("check"), "overlay");
    let image = format!("{}/embed/test:1", reg.addr);
    let pulled = check.pull(&image, Default::default()).await.unwrap();
    assert_eq!(pulled.image.target.digest().to_string(), digest);
    assert_eq!(pulled.chain_ids.len(), 2, "the base layer and the new one");
    let tree = check.tree_of(pulled.chain_ids[1].as_ref()).await;
    let file = |p: &str| tree.entries.get(Path::new(p)).map(|e| e.data.clone());
    assert_eq!(file("hello.txt").as_deref(), Some(&b"hello\n"[..]));
    assert_eq!(
        file("etc/os-release").as_deref(),
        Some(&b"ID=embed-test\n"[..])
    );

    // And skopeo reads the same manifest.
    let inspected = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ]));
    let d = strata::content::digest::sha256(inspected.as_bytes());
    assert_eq!(
        d.to_string(),
        digest,
        "skopeo's manifest bytes hash to the digest"
    );
}
