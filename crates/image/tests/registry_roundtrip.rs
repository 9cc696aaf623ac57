//! Push, pull and pull-back against a real `docker-registry`, through a counting proxy:
//! chunked and monolithic uploads, cross-repository mounts, GC and source labels,
//! progress, concurrent fetches of one image, platform selection.

mod registry_common;

use std::sync::{Arc, Mutex};

use registry_common::*;
use strata_content::labels::DISTRIBUTION_SOURCE;
use strata_content::{Descriptor, Manager, Provider};
use strata_image::remote::RegistryOptions;
use strata_image::service::{FetchOptions, ProgressState, PushOptions};

type Teed = (String, tokio::task::JoinHandle<Vec<u8>>);

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = std::time::Duration::from_millis(10);
    o
}

fn fetch_opts() -> FetchOptions {
    FetchOptions {
        registry: reg_opts(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_pull_back() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let proxy = Proxy::start(&reg.addr).await;
    let src = Env::new();
    // One layer over the chunk size (pushed with PATCH), one under it.
    let (manifest, layers) = build_image(&src, "local/app:1", &[300 * 1024, 10 * 1024], 1).await;
    let remote = format!("{}/strata/app:v1", proxy.addr);
    let mut popts = PushOptions {
        registry: reg_opts(),
        ..Default::default()
    };
    popts.registry.push_chunk_size = 128 * 1024;
    let pushed = src
        .svc
        .push("local/app:1", Some(&remote), popts.clone())
        .await
        .unwrap();
    assert_eq!(pushed.digest(), manifest.digest());
    let patches = proxy.seen().iter().filter(|s| s.method == "PATCH").count();
    assert!(
        patches >= 3,
        "the big layer went in chunks: {:?}",
        proxy.seen()
    );

    // Pushing again uploads nothing.
    proxy.clear();
    src.svc
        .push("local/app:1", Some(&remote), popts.clone())
        .await
        .unwrap();
    assert!(
        !proxy
            .seen()
            .iter()
            .any(|s| s.method == "PATCH" || s.method == "POST"),
        "{:?}",
        proxy.seen()
    );

    // Pull into a fresh store.
    let dst = Env::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let mut fo = fetch_opts();
    fo.progress = Some(Arc::new(move |p: &strata_image::service::Progress| {
        ev.lock().unwrap().push((
            p.descriptor.digest().to_string(),
            p.state,
            p.offset,
            p.total,
        ));
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    fo.on_blob = Some(tx);
    // Tee the layers: collect their bytes while they download.
    let teed: Arc<Mutex<Vec<Teed>>> = Arc::default();
    let t2 = teed.clone();
    fo.tee = Some(Arc::new(move |d: &Descriptor, offset: u64| {
        assert_eq!(offset, 0);
        if !strata_image::media_types::is_layer(d.media_type().as_ref()) {
            return None;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
        let h = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(c) = rx.recv().await {
                all.extend_from_slice(&c);
            }
            all
        });
        t2.lock().unwrap().push((d.digest().to_string(), h));
        Some(tx)
    }));
    let img = dst.svc.fetch(&remote, fo).await.unwrap();
    let teed = std::mem::take(&mut *teed.lock().unwrap());
    assert_eq!(teed.len(), 2, "both layers teed");
    for (digest, h) in teed {
        let bytes = h.await.unwrap();
        assert_eq!(strata_content::digest::sha256(&bytes).to_string(), digest);
    }
    assert_eq!(img.name, remote);
    assert_eq!(img.target.digest(), manifest.digest());
    assert_eq!(dst.images.get(&remote).await.unwrap().target, img.target);
    let mut notified = Vec::new();
    while let Ok(e) = rx.try_recv() {
        assert_eq!(e.state, ProgressState::Done);
        notified.push(e.descriptor.digest().clone());
    }
    assert_eq!(notified.len(), 4, "manifest, config, 2 layers");
    for l in &layers {
        let a = strata_content::helpers::read_blob(src.content.as_ref(), l)
            .await
            .unwrap();
        let b = strata_content::helpers::read_blob(dst.content.as_ref(), l)
            .await
            .unwrap();
        assert_eq!(a, b);
        let info = dst.content.info(l.digest()).await.unwrap();
        assert_eq!(
            info.labels[&format!("{DISTRIBUTION_SOURCE}{}", proxy.addr)],
            "strata/app"
        );
        let evs = events.lock().unwrap();
        let done = evs
            .iter()
            .find(|e| e.0 == l.digest().to_string() && e.1 == ProgressState::Done)
            .unwrap();
        assert_eq!((done.2, done.3), (l.size(), l.size()));
        assert!(
            evs.iter()
                .any(|e| e.0 == l.digest().to_string() && e.1 == ProgressState::Downloading)
        );
    }
    // GC refs on the manifest.
    let minfo = dst.content.info(manifest.digest()).await.unwrap();
    assert_eq!(
        minfo.labels["containerd.io/gc.ref.content.l.0"],
        layers[0].digest().to_string()
    );
    assert_eq!(
        minfo.labels["containerd.io/gc.ref.content.l.1"],
        layers[1].digest().to_string()
    );
    assert!(
        minfo
            .labels
            .contains_key("containerd.io/gc.ref.content.config")
    );

    // A second fetch transfers nothing and reports Exists.
    proxy.clear();
    events.lock().unwrap().clear();
    let mut fo = fetch_opts();
    let ev = events.clone();
    fo.progress = Some(Arc::new(move |p: &strata_image::service::Progress| {
        ev.lock().unwrap().push((
            p.descriptor.digest().to_string(),
            p.state,
            p.offset,
            p.total,
        ));
    }));
    dst.svc.fetch(&remote, fo).await.unwrap();
    assert_eq!(proxy.served("/blobs/"), 0, "{:?}", proxy.seen());
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.1 == ProgressState::Exists)
    );

    // Push back to another repository: blobs are mounted, not uploaded.
    proxy.clear();
    let back = format!("{}/strata/back:v2", proxy.addr);
    dst.svc
        .push(&remote, Some(&back), popts.clone())
        .await
        .unwrap();
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "POST" && s.path.contains("mount=")),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "PATCH" || s.method == "PUT" && s.path.contains("uploads")),
        "{seen:?}"
    );
    // And pulled by digest from there.
    let third = Env::new();
    let by_digest = format!("{}/strata/back@{}", reg.addr, manifest.digest());
    let img = third.svc.fetch(&by_digest, fetch_opts()).await.unwrap();
    assert_eq!(img.target.digest(), manifest.digest());
    let cfg_bytes = third.content.reader_at(&img.target).await.unwrap().size();
    assert_eq!(cfg_bytes, manifest.size());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_share_work() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let proxy = Proxy::start(&reg.addr).await;
    let src = Env::new();
    let (_, layers) = build_image(&src, "local/c:1", &[512 * 1024, 256 * 1024, 64 * 1024], 7).await;
    let remote = format!("{}/strata/c:1", proxy.addr);
    let popts = PushOptions {
        registry: reg_opts(),
        ..Default::default()
    };
    src.svc
        .push("local/c:1", Some(&remote), popts)
        .await
        .unwrap();
    proxy.clear();
    let dst = Arc::new(Env::new());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let dst = dst.clone();
        let remote = remote.clone();
        tasks.push(tokio::spawn(async move {
            dst.svc.fetch(&remote, fetch_opts()).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Each layer crossed the wire once.
    for l in &layers {
        let hex = l.digest().digest().to_string();
        assert_eq!(proxy.served(&hex), l.size(), "{hex}: {:?}", proxy.seen());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_platform_selection() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let src = Env::new();
    let (m1, l1) = build_image(&src, "local/p:amd", &[4096], 11).await;
    let (m2, l2) = build_image(&src, "local/p:arm", &[4096], 12).await;
    let mut d1 = m1.clone();
    d1.set_platform(Some(strata_image::platforms::default_spec().to_oci()));
    let other = strata_image::platforms::Platform::new("linux", "s390x", "");
    let mut d2 = m2.clone();
    d2.set_platform(Some(other.to_oci()));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": strata_image::media_types::OCI_INDEX,
        "manifests": [d2, d1],
    });
    let raw = serde_json::to_vec(&index).unwrap();
    let idx = Descriptor::new(
        strata_image::media_types::OCI_INDEX.into(),
        raw.len() as u64,
        strata_content::digest::sha256(&raw),
    );
    strata_content::helpers::write_blob(
        src.content.as_ref(),
        "idx",
        raw.as_slice(),
        &idx,
        Default::default(),
    )
    .await
    .unwrap();
    src.images
        .create(strata_image::image::Image::new(
            "local/p:multi",
            idx.clone(),
        ))
        .await
        .unwrap();
    let remote = format!("{}/strata/p:multi", reg.addr);
    src.svc
        .push(
            "local/p:multi",
            Some(&remote),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Host platform only.
    let a = Env::new();
    a.svc.fetch(&remote, fetch_opts()).await.unwrap();
    assert!(a.content.info(l1[0].digest()).await.is_ok());
    assert!(
        a.content
            .info(l2[0].digest())
            .await
            .unwrap_err()
            .is_not_found()
    );
    let iinfo = a.content.info(idx.digest()).await.unwrap();
    assert!(
        iinfo
            .labels
            .contains_key("containerd.io/gc.ref.content.m.0"),
        "{:?}",
        iinfo.labels
    );

    // Explicit other platform.
    let b = Env::new();
    let mut fo = fetch_opts();
    fo.platforms = strata_image::service::PlatformSelection::Only(vec![other]);
    b.svc.fetch(&remote, fo).await.unwrap();
    assert!(b.content.info(l2[0].digest()).await.is_ok());
    assert!(
        b.content
            .info(l1[0].digest())
            .await
            .unwrap_err()
            .is_not_found()
    );

    // All.
    let c = Env::new();
    let mut fo = fetch_opts();
    fo.platforms = strata_image::service::PlatformSelection::All;
    c.svc.fetch(&remote, fo).await.unwrap();
    assert!(c.content.info(l1[0].digest()).await.is_ok());
    assert!(c.content.info(l2[0].digest()).await.is_ok());

    // No match.
    let d = Env::new();
    let mut fo = fetch_opts();
    fo.platforms = strata_image::service::PlatformSelection::Only(vec![
        strata_image::platforms::Platform::new("windows", "arm", "v5"),
    ]);
    let e = d.svc.fetch(&remote, fo).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("no match for platform"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_holds_its_lease() {
    use strata_image::leases::{LeaseManager, LeaseOpts};
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let src = Env::new();
    let (manifest, layers) = build_image(&src, "local/l:1", &[10_000, 20_000], 51).await;
    let remote = format!("{}/strata/l:1", reg.addr);
    src.svc
        .push(
            "local/l:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dst = Env::new();
    let leases = Arc::new(LeaseManager::open(dst.dir.path().join("metadata.db")).unwrap());
    let lease = leases
        .create(LeaseOpts::default().id("pull-1"))
        .await
        .unwrap();
    let mut fo = fetch_opts();
    fo.lease = Some((leases.clone(), lease.id.clone()));
    dst.svc.fetch(&remote, fo).await.unwrap();
    let res = leases.list_resources("pull-1").await.unwrap();
    let has = |kind: &str, id: &str| res.iter().any(|r| r.kind == kind && r.id == id);
    assert!(has("images", &remote), "{res:?}");
    for d in layers.iter().chain([&manifest]) {
        assert!(has("content", d.digest().as_ref()), "{res:?}");
        assert!(
            has("ingests", &strata_image::service::ref_key(d)),
            "{res:?}"
        );
    }
}
