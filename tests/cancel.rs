//! Cancelled and abandoned flows clean up after themselves: a pull whose future is
//! dropped, a CLI pull interrupted by SIGINT, and the leases of processes that are gone.
//! Needs root (overlay mounts) and docker-registry.

mod e2e_common;
mod example_bin;
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::process::Command;
use std::time::Duration;

use e2e_common::{Root, is_root};
use registry_common::{Action, Proxy, Registry, pull_opts_plain, push_built};
use strata::image::leases::{LeaseOpts, OWNER_PID, OWNER_START, Resource};
use strata::image::service::wait_for_cleanups;
use strata::snapshot::unpack_key;

/// A registry holding `strata/cancel:1` (a 3 MiB layer and a small one) behind a proxy
/// where every download of the big layer stalls after 1 MiB; returns the reference
/// through the proxy.
async fn stalling_registry() -> Option<(Registry, Proxy, String)> {
    let reg = Registry::start(None).await?;
    let proxy = Proxy::start(&reg.addr).await;
    push_built(&reg.addr, "strata/cancel", &[3 << 20, 64 << 10], 7).await;
    // A body stalls once 1 MiB of it was sent: only the big layer's ever gets there.
    proxy.set_rule(|m, p| match m == "GET" && p.contains("/blobs/") {
        true => Action::StallAfter(1 << 20),
        false => Action::Forward,
    });
    let through_proxy = format!("{}/strata/cancel:1", proxy.addr);
    Some((reg, proxy, through_proxy))
}

/// The flows' scratch snapshots (`extract-…`, `commit-view-…`) in `root`.
async fn scratch_snapshots(root: &Root) -> Vec<String> {
    let all = root.snapshotter().walk(&[]).await.unwrap();
    all.into_iter()
        .map(|i| i.name)
        .filter(|k| k.starts_with("extract-") || k.starts_with("commit-view-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pull_removes_its_scratch_snapshots_and_lease() {
    if !is_root() {
        return;
    }
    let Some((_reg, proxy, remote)) = stalling_registry().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path(), "overlay");
    let mut pull = Box::pin(root.pull(&remote, pull_opts_plain()));
    // Run the pull until it has scratch snapshots, then drop it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::select! {
            r = &mut pull => panic!("the pull ended: {:?}", r.map(|p| p.image.name)),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if !scratch_snapshots(&root).await.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scratch snapshot appeared"
        );
    }
    assert_eq!(root.leases().list(&[] as &[String]).await.unwrap().len(), 1);
    drop(pull);
    wait_for_cleanups().await;
    assert_eq!(scratch_snapshots(&root).await, Vec::<String>::new());
    assert!(
        root.leases()
            .list(&[] as &[String])
            .await
            .unwrap()
            .is_empty()
    );

    // The registry recovers: the same root pulls the image whole.
    proxy.set_rule(|_, _| Action::Forward);
    let p = root.pull(&remote, pull_opts_plain()).await.unwrap();
    assert_eq!(p.chain_ids.len(), 2);
    assert!(scratch_snapshots(&root).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pull_interrupted_by_sigint_cleans_up() {
    if !is_root() {
        return;
    }
    let Some((_reg, _proxy, remote)) = stalling_registry().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let strata = |args: &[&str]| {
        let mut c = Command::new(example_bin::example_bin("strata"));
        c.arg("--root")
            .arg(dir.path())
            .arg("--snapshotter")
            .arg("overlay");
        c.args(args);
        c
    };
    let mut child = strata(&["image", "pull", &remote]).spawn().unwrap();
    let root = Root::open(dir.path(), "overlay");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while scratch_snapshots(&root).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no scratch snapshot appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = std::time::Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(scratch_snapshots(&root).await.is_empty());
    let leases = strata(&["lease", "ls"]).output().unwrap();
    assert!(leases.status.success());
    assert_eq!(String::from_utf8_lossy(&leases.stdout), "", "no lease left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_collects_what_leases_of_gone_processes_held() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path(), "native");
    let leases = root.leases();
    let sn = root.snapshotter();
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id().to_string();
    child.wait().unwrap();
    let mut owner = strata::content::Labels::new();
    owner.insert(OWNER_PID.into(), gone);
    owner.insert(OWNER_START.into(), "1".into());
    let day = Duration::from_secs(24 * 3600);
    let dead = leases
        .create(LeaseOpts::default().expires_in(day).labels(owner))
        .await
        .unwrap();
    let alive = leases
        .create(LeaseOpts::default().expires_in(day).owned_by_this_process())
        .await
        .unwrap();
    let (k1, k2) = (unpack_key("sha256:dead"), unpack_key("sha256:alive"));
    for (lease, key) in [(&dead, &k1), (&alive, &k2)] {
        let r = Resource::snapshot(root.snapshotter_name(), key.clone());
        leases.add_resource(&lease.id, &r).await.unwrap();
        sn.prepare(key, "", Default::default()).await.unwrap();
    }
    let stats = root.gc().await.unwrap();
    assert_eq!(stats.leases, 1, "{stats:?}");
    assert!(sn.stat(&k1).await.unwrap_err().is_not_found());
    sn.stat(&k2).await.unwrap();
    let left: Vec<_> = leases.list(&[] as &[String]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, alive.id);
}
