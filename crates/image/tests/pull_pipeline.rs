//! The pipelined pull (fetch + unpack) against a real `docker-registry`, through a proxy
//! that counts and corrupts: layers are applied as they arrive, each blob is downloaded
//! once, bad bytes leave neither a snapshot nor a blob, and snapshots that exist are
//! neither fetched nor applied again.

mod registry_common;

use std::sync::Arc;

use registry_common::*;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Manager, Store};
use strata_image::leases::LeaseManager;
use strata_image::remote::RegistryOptions;
use strata_image::service::{FetchOptions, ImageService, PullOptions, PushOptions};
use strata_image::store::ImageStore;
use strata_snapshot::{Kind, Snapshotter};

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = std::time::Duration::from_millis(5);
    o.max_retries = 1;
    o
}

struct Root {
    _dir: tempfile::TempDir,
    content: LocalStore,
    sn: Arc<dyn Snapshotter>,
    svc: ImageService,
}

fn root() -> Root {
    let dir = tempfile::tempdir().unwrap();
    let content = LocalStore::open(dir.path().join("content")).unwrap();
    let images = ImageStore::open(dir.path().join("metadata.db")).unwrap();
    let leases = Arc::new(LeaseManager::open(dir.path().join("metadata.db")).unwrap());
    let sn = strata_snapshot::open("overlay", &dir.path().join("snapshots/overlay")).unwrap();
    let svc = ImageService::new(
        Arc::new(content.clone()) as Arc<dyn Store>,
        Arc::new(images),
    )
    .with_snapshotter("overlay", sn.clone())
    .with_leases(leases);
    Root {
        _dir: dir,
        content,
        sn,
        svc,
    }
}

fn pull_opts() -> PullOptions {
    PullOptions {
        fetch: FetchOptions {
            registry: reg_opts(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A registry with a three-layer image, a proxy in front; returns the remote ref (via the
/// proxy) and the layer descriptors.
async fn setup(name: &str) -> Option<(Registry, Proxy, String, Vec<Descriptor>)> {
    let reg = Registry::start(None).await?;
    let proxy = Proxy::start(&reg.addr).await;
    let src = Env::new();
    let (_m, layers) = build_image(&src, "local/p:1", &[4 << 20, 64 << 10, 1 << 20], 11).await;
    src.svc
        .push(
            "local/p:1",
            Some(&format!("{}/strata/{name}:1", reg.addr)),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let remote = format!("{}/strata/{name}:1", proxy.addr);
    Some((reg, proxy, remote, layers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_every_layer_downloading_each_once() {
    let Some((_reg, proxy, remote, layers)) = setup("pull1").await else {
        return;
    };
    let r = root();
    let pulled = r.svc.pull(&remote, pull_opts()).await.unwrap();
    assert_eq!((pulled.applied, pulled.existed), (3, 0));
    for l in &layers {
        assert_eq!(
            proxy.served(l.digest().digest()),
            l.size(),
            "layer {} served once",
            l.digest()
        );
        let info = r.content.info(l.digest()).await.unwrap();
        assert!(info.labels.contains_key("containerd.io/uncompressed"));
    }
    let top = pulled.chain_ids.last().unwrap().to_string();
    assert_eq!(r.sn.stat(&top).await.unwrap().kind, Kind::Committed);
    assert_eq!(
        r.sn.walk(&[]).await.unwrap().len(),
        3,
        "only the three ChainID snapshots"
    );
    // A view shows every layer's file.
    let mounts = r.sn.view("v", &top, Default::default()).await.unwrap();
    let names = tokio::task::spawn_blocking(move || {
        strata_snapshot::mount::with_temp_mount(&mounts, |root| {
            let mut n: Vec<String> = std::fs::read_dir(root)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        })
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(names, vec!["file0", "file1", "file2"]);
    // No lease is left behind by the pull.
    let leases = r.svc.leases().unwrap().list(&[]).await.unwrap();
    assert!(leases.is_empty(), "{leases:?}");

    // Pulling again fetches no layer and applies nothing.
    proxy.clear();
    let again = r.svc.pull(&remote, pull_opts()).await.unwrap();
    assert_eq!((again.applied, again.existed), (0, 3));
    for l in &layers {
        assert_eq!(
            proxy.served(l.digest().digest()),
            0,
            "layer {} not fetched again",
            l.digest()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_snapshots_skip_layer_fetch_unless_fetch_all() {
    let Some((_reg, proxy, remote, layers)) = setup("pull2").await else {
        return;
    };
    let r = root();
    r.svc.pull(&remote, pull_opts()).await.unwrap();
    // Drop the blobs (as "discard layers" would), keep the snapshots.
    for l in &layers {
        r.content.delete(l.digest()).await.unwrap();
    }
    proxy.clear();
    let p = r.svc.pull(&remote, pull_opts()).await.unwrap();
    assert_eq!((p.applied, p.existed), (0, 3));
    assert_eq!(proxy.served(layers[0].digest().digest()), 0);
    // With fetch_all the blobs come back (the image can be pushed or exported again).
    let p = r
        .svc
        .pull(
            &remote,
            PullOptions {
                fetch_all: true,
                ..pull_opts()
            },
        )
        .await
        .unwrap();
    assert_eq!((p.applied, p.existed), (0, 3));
    for l in &layers {
        assert!(
            r.content.info(l.digest()).await.is_ok(),
            "{} fetched",
            l.digest()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_layer_bytes_leave_no_snapshot_and_no_blob() {
    let Some((_reg, proxy, remote, layers)) = setup("pull3").await else {
        return;
    };
    let r = root();
    let hex = layers[0].digest().digest().to_string();
    proxy.set_rule(move |_m, path| {
        if path.contains(&hex) {
            Action::Corrupt(3 << 20)
        } else {
            Action::Forward
        }
    });
    let err = r.svc.pull(&remote, pull_opts()).await.unwrap_err();
    assert!(
        err.to_string().contains(layers[0].digest().digest()),
        "{err}"
    );
    assert!(
        r.content
            .info(layers[0].digest())
            .await
            .unwrap_err()
            .is_not_found()
    );
    let committed: Vec<_> =
        r.sn.walk(&[])
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.kind == Kind::Committed)
            .collect();
    assert!(
        committed.is_empty(),
        "no snapshot may be committed: {committed:?}"
    );
    let all = r.sn.walk(&[]).await.unwrap();
    assert!(all.is_empty(), "the extract snapshot is removed: {all:?}");
    // A clean re-pull succeeds.
    proxy.set_rule(|_, _| Action::Forward);
    let p = r.svc.pull(&remote, pull_opts()).await.unwrap();
    assert_eq!(p.applied, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_in_one_process_share_the_work() {
    let Some((_reg, proxy, remote, layers)) = setup("pull4").await else {
        return;
    };
    let r = root();
    let (a, b) = tokio::join!(
        r.svc.pull(&remote, pull_opts()),
        r.svc.pull(&remote, pull_opts())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.chain_ids, b.chain_ids);
    assert_eq!(a.applied + b.applied, 3, "each layer applied once");
    for l in &layers {
        assert_eq!(
            proxy.served(l.digest().digest()),
            l.size(),
            "{} downloaded once",
            l.digest()
        );
    }
    assert_eq!(r.sn.walk(&[]).await.unwrap().len(), 3);
}
