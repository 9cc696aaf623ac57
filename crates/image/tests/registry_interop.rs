//! Interop with skopeo through a real `docker-registry`: what we push, skopeo copies to
//! an OCI layout and back unchanged; what skopeo pushes (from a layout we did not
//! write with strata), we pull with identical digests.

mod registry_common;

use std::process::Command;

use registry_common::*;
use strata_content::digest::sha256;
use strata_content::{Descriptor, Manager};
use strata_image::media_types as mt;
use strata_image::remote::RegistryOptions;
use strata_image::service::{FetchOptions, PushOptions};

fn reg_opts() -> RegistryOptions {
    RegistryOptions::default().docker_config(false)
}

fn skopeo(args: &[&str]) -> String {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").args(args);
    run(&mut c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_our_push_and_we_pull_skopeos() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    if !have("skopeo") {
        return;
    }
    let src = Env::new();
    let (manifest, layers) = build_image(&src, "local/s:1", &[200_000, 3_000], 41).await;
    let ours = format!("{}/strata/ours:1", reg.addr);
    src.svc
        .push(
            "local/s:1",
            Some(&ours),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // skopeo sees our exact manifest bytes.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{ours}"),
    ]);
    assert_eq!(sha256(raw.as_bytes()), *manifest.digest());

    // skopeo: registry → OCI layout → another repository.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = layout.display().to_string();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{ours}"),
        &format!("oci:{l}:ours"),
    ]);
    let blobs = layout_blobs(&layout);
    for d in layers.iter().chain([&manifest]) {
        assert!(
            blobs.contains(&d.digest().to_string()),
            "{} in skopeo's layout",
            d.digest()
        );
    }
    let back = format!("{}/strata/via-skopeo:1", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{l}:ours"),
        &format!("docker://{back}"),
    ]);
    let dst = Env::new();
    let img = dst
        .svc
        .fetch(
            &back,
            FetchOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        img.target.digest(),
        manifest.digest(),
        "round trip through skopeo keeps the digest"
    );
    for l in &layers {
        assert_eq!(dst.content.info(l.digest()).await.unwrap().size, l.size());
    }

    // An image written as an OCI layout by hand (not by strata), pushed by skopeo.
    let hand = dir.path().join("hand");
    std::fs::create_dir_all(hand.join("blobs/sha256")).unwrap();
    let write = |data: &[u8], media: &str| -> Descriptor {
        let d = Descriptor::new(media.into(), data.len() as u64, sha256(data));
        std::fs::write(hand.join("blobs/sha256").join(d.digest().digest()), data).unwrap();
        d
    };
    let (gz, raw_tar) = tar_gz(&[("hello.txt", b"hello from a hand-made layout\n".to_vec())]);
    let layer = write(&gz, mt::OCI_LAYER_GZIP);
    let cfg = serde_json::json!({
        "architecture": strata_image::platforms::default_spec().architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&raw_tar).to_string()]},
    });
    let cfg = write(&serde_json::to_vec(&cfg).unwrap(), mt::OCI_CONFIG);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "config": cfg, "layers": [layer]});
    let m = write(&serde_json::to_vec(&m).unwrap(), mt::OCI_MANIFEST);
    let mut md = serde_json::to_value(&m).unwrap();
    md["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "hand"});
    std::fs::write(
        hand.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [md]})).unwrap(),
    )
    .unwrap();
    std::fs::write(
        hand.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let theirs = format!("{}/skopeo/hand:1", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:hand", hand.display()),
        &format!("docker://{theirs}"),
    ]);
    let env = Env::new();
    let img = env
        .svc
        .fetch(
            &theirs,
            FetchOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(img.target.digest(), m.digest());
    for d in [&layer, &cfg] {
        let info = env.content.info(d.digest()).await.unwrap();
        assert_eq!(info.size, d.size());
    }
    let got = strata_content::helpers::read_blob(env.content.as_ref(), &layer)
        .await
        .unwrap();
    assert_eq!(got, gz);
}
