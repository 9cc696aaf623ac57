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
    root_with("overlay")
}

fn root_with(snapshotter: &str) -> Root {
    let dir = tempfile::tempdir().unwrap();
    let content = LocalStore::open(dir.path().join("content")).unwrap();
    let images = ImageStore::open(dir.path().join("metadata.db")).unwrap();
    let leases = Arc::new(LeaseManager::open(dir.path().join("metadata.db")).unwrap());
    let sn = strata_snapshot::open(
        snapshotter,
        &dir.path().join(format!("snapshots/{snapshotter}")),
    )
    .unwrap();
    let svc = ImageService::new(
        Arc::new(content.clone()) as Arc<dyn Store>,
        Arc::new(images),
    )
    .with_snapshotter(snapshotter, sn.clone())
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
    assert_eq!(
        pulled.streamed, 3,
        "overlay: every layer applied from its download stream, in parallel"
    );
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

/// A tree as (path, kind, mode, owner, content or link target), dir mtimes left out.
fn tree(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                format!(
                    "{} nlink={} mtime={}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()),
                    m.nlink(),
                    m.mtime()
                )
            };
            out.push(format!(
                "{} {:o} {}:{} {what}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid()
            ));
        }
    }
    out.sort();
    out
}

/// [`tree`] of committed snapshot `name`, through a view of it.
async fn tree_of(sn: &dyn Snapshotter, name: &str) -> Vec<String> {
    let mounts = sn.view("v", name, Default::default()).await.unwrap();
    tokio::task::spawn_blocking(move || {
        strata_snapshot::mount::with_temp_mount(&mounts, tree).unwrap()
    })
    .await
    .unwrap()
}

/// Layers that cannot be applied alone: directories implied by a later layer (and the
/// parent of a whiteout) must take the lower layer's metadata, and a hardlink to a file
/// of a lower layer needs that file. The overlay pull (parallel, rebased) gives the same
/// tree as the native pull (in order, into a full copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pull_settles_implied_dirs_and_lower_hardlinks() {
    use strata_image::build::LayerBuilder;
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let mut l0 = LayerBuilder::new();
    l0.mtime(1_600_000_000).owner(0, 0);
    l0.dir("etc", 0o750).unwrap();
    l0.file("etc/file", 0o644, b"base").unwrap();
    l0.owner(5, 6);
    l0.dir("opt", 0o701).unwrap();
    l0.file("opt/x", 0o600, b"x").unwrap();
    let mut l1 = LayerBuilder::new();
    l1.mtime(1_600_000_100);
    l1.file("etc/new", 0o644, b"new").unwrap(); // etc implied
    l1.whiteout("opt/x").unwrap(); // opt implied, as a whiteout's parent
    l1.file("fresh/deep/f", 0o644, b"f").unwrap(); // in no lower
    let mut l2 = LayerBuilder::new();
    l2.mtime(1_600_000_200);
    l2.hardlink("alias", "etc/file").unwrap(); // a file of layer 0
    l2.file("top", 0o644, b"top").unwrap();
    let layers = [
        l0.finish_gzip().unwrap(),
        l1.finish_gzip().unwrap(),
        l2.finish_gzip().unwrap(),
    ];
    let remote = push_layers(&reg, "implied", &layers).await;
    let mut trees = Vec::new();
    for sn in ["overlay", "native"] {
        let r = root_with(sn);
        let pulled = r.svc.pull(&remote, pull_opts()).await.unwrap();
        assert_eq!(pulled.applied, 3, "{sn}");
        if sn == "overlay" {
            assert_eq!(
                pulled.streamed, 2,
                "the hardlink layer is applied again, in order, from its blob"
            );
        }
        let top = pulled.chain_ids.last().unwrap().to_string();
        assert_eq!(r.sn.walk(&[]).await.unwrap().len(), 3, "{sn}: no leftovers");
        trees.push(tree_of(r.sn.as_ref(), &top).await);
    }
    let want = [
        "alias 100644 0:0 base nlink=2 mtime=1600000000",
        "etc 40750 0:0 dir",
        "etc/file 100644 0:0 base nlink=2 mtime=1600000000",
        "etc/new 100644 0:0 new nlink=1 mtime=1600000100",
        "fresh 40755 0:0 dir",
        "fresh/deep 40755 0:0 dir",
        "fresh/deep/f 100644 0:0 f nlink=1 mtime=1600000100",
        "opt 40701 5:6 dir",
        "top 100644 0:0 top nlink=1 mtime=1600000200",
    ];
    assert_eq!(trees[0], want, "overlay");
    assert_eq!(trees[1], want, "native");
}

/// The native snapshotter rebases too (a copy of the parent's tree, into which the layer,
/// applied on its own, is moved): opaque directories, whiteouts of directories and of
/// hardlinked files, a file replacing a directory and the reverse, an existing directory
/// changing owner and mode, whiteouts inside a new and an opaque directory and hardlinks
/// within a layer give the same tree as fetch + unpack, which applies each layer in order
/// onto a full copy of its parent; overlay agrees (every name it lists can be stat'ed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_parallel_pull_matches_an_in_order_unpack() {
    use strata_image::build::LayerBuilder;
    use strata_image::service::UnpackOptions;
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let mut l0 = LayerBuilder::new();
    l0.mtime(1_600_000_000).owner(0, 0);
    l0.file("var/a", 0o644, b"a").unwrap();
    l0.file("var/sub/b", 0o644, b"b").unwrap();
    l0.file("was_file", 0o644, b"f").unwrap();
    l0.file("was_dir/inner", 0o644, b"i").unwrap();
    l0.file("gone/deep/f", 0o644, b"g").unwrap();
    l0.dir("keep", 0o755).unwrap();
    l0.file("keep/old", 0o644, b"old").unwrap();
    let mut l1 = LayerBuilder::new();
    l1.mtime(1_600_000_100).owner(0, 0);
    l1.opaque("var").unwrap();
    l1.whiteout("var/a").unwrap(); // hides nothing: var is opaque
    l1.file("var/new", 0o644, b"n").unwrap();
    l1.file("was_dir", 0o600, b"now a file").unwrap();
    l1.dir("was_file", 0o711).unwrap();
    l1.file("was_file/child", 0o644, b"c").unwrap();
    l1.whiteout("gone").unwrap();
    l1.file("newdir/a", 0o644, b"a").unwrap();
    l1.whiteout("newdir/ghost").unwrap();
    l1.file("links/orig", 0o644, b"o").unwrap();
    l1.hardlink("links/alias", "links/orig").unwrap();
    l1.hardlink("links/alias2", "links/orig").unwrap();
    l1.symlink("lnk", "keep/old").unwrap();
    l1.owner(7, 8);
    l1.dir("keep", 0o700).unwrap();
    l1.file("keep/added", 0o640, b"added").unwrap();
    let mut l2 = LayerBuilder::new();
    l2.mtime(1_600_000_200).owner(0, 0);
    l2.whiteout("links/alias").unwrap();
    l2.file("keep/old", 0o644, b"replaced").unwrap();
    l2.file("var/sub/b", 0o644, b"back").unwrap();
    let layers = [
        l0.finish_gzip().unwrap(),
        l1.finish_gzip().unwrap(),
        l2.finish_gzip().unwrap(),
    ];
    let remote = push_layers(&reg, "rebase", &layers).await;
    let mut trees = Vec::new();
    for (sn, in_order) in [("native", true), ("native", false), ("overlay", false)] {
        let r = root_with(sn);
        let (top, streamed) = if in_order {
            let fetch = FetchOptions {
                registry: reg_opts(),
                ..Default::default()
            };
            let image = r.svc.fetch(&remote, fetch).await.unwrap();
            let u = r
                .svc
                .unpack(&image, UnpackOptions::default())
                .await
                .unwrap();
            assert_eq!(u.applied, 3);
            (u.chain_ids.last().unwrap().to_string(), 0)
        } else {
            let pulled = r.svc.pull(&remote, pull_opts()).await.unwrap();
            assert_eq!(pulled.applied, 3, "{sn}");
            (
                pulled.chain_ids.last().unwrap().to_string(),
                pulled.streamed,
            )
        };
        if !in_order {
            assert_eq!(streamed, 3, "{sn}: every layer applied from its stream");
        }
        let infos = r.sn.walk(&[]).await.unwrap();
        assert_eq!(infos.len(), 3, "{sn}: no leftovers");
        assert!(infos.iter().all(|i| i.kind == Kind::Committed));
        let dirs = std::fs::read_dir(r._dir.path().join(format!("snapshots/{sn}/snapshots")))
            .unwrap()
            .count();
        assert_eq!(dirs, 3, "{sn}: one directory per snapshot");
        trees.push(tree_of(r.sn.as_ref(), &top).await);
    }
    let want = [
        "keep 40700 7:8 dir",
        "keep/added 100640 7:8 added nlink=1 mtime=1600000100",
        "keep/old 100644 0:0 replaced nlink=1 mtime=1600000200",
        "links 40755 0:0 dir",
        "links/alias2 100644 0:0 o nlink=2 mtime=1600000100",
        "links/orig 100644 0:0 o nlink=2 mtime=1600000100",
        "lnk 120777 0:0 -> keep/old",
        "newdir 40755 0:0 dir",
        "newdir/a 100644 0:0 a nlink=1 mtime=1600000100",
        "var 40755 0:0 dir",
        "var/new 100644 0:0 n nlink=1 mtime=1600000100",
        "var/sub 40755 0:0 dir",
        "var/sub/b 100644 0:0 back nlink=1 mtime=1600000200",
        "was_dir 100600 0:0 now a file nlink=1 mtime=1600000100",
        "was_file 40711 0:0 dir",
        "was_file/child 100644 0:0 c nlink=1 mtime=1600000100",
    ];
    assert_eq!(trees[0], want, "native, in order");
    assert_eq!(trees[1], want, "native, in parallel");
    // overlayfs reports the link count of the lower layer's inode (alias is whited out
    // above it, not unlinked).
    let want_overlay: Vec<String> = want
        .iter()
        .map(|l| match l.strip_prefix("links/") {
            Some(_) => l.replace("nlink=2", "nlink=3"),
            None => l.to_string(),
        })
        .collect();
    assert_eq!(trees[2], want_overlay, "overlay");
}

/// Pushes an image of `layers` (built with `LayerBuilder`) as `strata/{name}:1`.
async fn push_layers(
    reg: &Registry,
    name: &str,
    layers: &[strata_image::build::BuiltLayer],
) -> String {
    let src = Env::new();
    let mut b = strata_image::build::ImageBuilder::new();
    for l in layers {
        b = b.layer(l.clone());
    }
    b.write(src.content.as_ref(), &src.images, "local/x:1")
        .await
        .unwrap();
    let remote = format!("{}/strata/{name}:1", reg.addr);
    src.svc
        .push(
            "local/x:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    remote
}

fn noise_layer(name: &str, size: usize, seed: u64) -> strata_image::build::BuiltLayer {
    let mut l = strata_image::build::LayerBuilder::new();
    l.file(name, 0o644, &noise(size, seed)).unwrap();
    l.finish_gzip().unwrap()
}

/// A layer blob listed twice in one manifest (BuildKit's empty layer often is): one
/// download, one stream, and both layers applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_listed_twice_is_applied_twice() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let (a, b) = (noise_layer("a", 1 << 20, 1), noise_layer("b", 1 << 20, 2));
    let remote = push_layers(&reg, "twice", &[a.clone(), b, a]).await;
    let r = root();
    let p = r.svc.pull(&remote, pull_opts()).await.unwrap();
    assert_eq!((p.applied, p.existed, p.streamed), (3, 0, 2));
    assert_eq!(r.sn.walk(&[]).await.unwrap().len(), 3, "no leftovers");
}

/// Pulls that share layers, one applying in order (one missing layer) and one in
/// parallel, at the same time: both finish (no lock-order deadlock between a download
/// waiting for its reader and a layer task waiting for that download).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_and_parallel_pulls_of_shared_layers_both_finish() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let l: Vec<_> = (0..3)
        .map(|i| noise_layer(&format!("f{i}"), 3 << 20, 10 + i as u64))
        .collect();
    let base = push_layers(&reg, "base", &l[..1]).await;
    let v1 = push_layers(&reg, "v1", &l[..2]).await;
    let v2 = push_layers(&reg, "v2", &l[..3]).await;
    for _ in 0..3 {
        let r = root();
        r.svc.pull(&base, pull_opts()).await.unwrap();
        let both = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            tokio::join!(r.svc.pull(&v1, pull_opts()), r.svc.pull(&v2, pull_opts()))
        })
        .await
        .expect("both pulls finish");
        let (p1, p2) = (both.0.unwrap(), both.1.unwrap());
        assert_eq!(p1.chain_ids[..], p2.chain_ids[..2]);
        assert_eq!(
            p1.applied + p2.applied,
            2,
            "each missing layer applied once"
        );
        assert_eq!(r.sn.walk(&[]).await.unwrap().len(), 3);
    }
}
