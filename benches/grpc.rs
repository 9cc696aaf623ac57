//! Round trips to `strata serve`'s services over a unix socket: Stat, Mounts and Prepare
//! (plus Remove, untimed) of the overlay snapshotter, and content Info, through a tonic
//! client in the same process (the server on its own runtime threads).
//!
//! `cargo bench --bench grpc` (root; `STRATA_BENCH_DIR` chooses the filesystem, default
//! the system temp dir). The medians are in `target/criterion/grpc/*/new/estimates.json`.

mod common;

use common::bench_dir;
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_grpc::api::services::content::v1::{InfoRequest, content_client::ContentClient};
use strata_grpc::api::services::snapshots::v1 as sapi;
use strata_grpc::api::services::snapshots::v1::snapshots_client::SnapshotsClient;
use strata_grpc::tonic::transport::Channel;

/// Starts a server for `dir` on `rt` and returns a channel to it, with an active
/// snapshot `active` and a committed `base` in place.
fn start(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Channel {
    let sn = strata::snapshot::open("overlay", &dir.join("snapshots")).unwrap();
    let store = strata::content::local::LocalStore::open(dir.join("content")).unwrap();
    let sock = dir.join("s.sock");
    rt.block_on(async {
        let (listener, file) = strata_grpc::socket::bind(&sock, 0o660).unwrap();
        tokio::spawn(async move {
            let _file = file;
            let svc = strata_grpc::SnapshotsService::new(sn);
            let content = strata_grpc::ContentService::new(store);
            strata_grpc::serve(listener, svc, content, std::future::pending()).await
        });
        let ch = strata_grpc::client::connect_unix(sock).await.unwrap();
        let mut c = SnapshotsClient::new(ch.clone());
        c.prepare(prepare("base-active", "")).await.unwrap();
        let commit = sapi::CommitSnapshotRequest {
            name: "base".into(),
            key: "base-active".into(),
            ..Default::default()
        };
        c.commit(commit).await.unwrap();
        c.prepare(prepare("active", "base")).await.unwrap();
        ch
    })
}

fn prepare(key: &str, parent: &str) -> sapi::PrepareSnapshotRequest {
    sapi::PrepareSnapshotRequest {
        snapshotter: "overlay".into(),
        key: key.into(),
        parent: parent.into(),
        ..Default::default()
    }
}

fn round_trips(cr: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_dir("grpc");
    let ch = start(&rt, dir.path());
    let mut g = cr.benchmark_group("grpc");
    g.measurement_time(Duration::from_secs(5));
    let sn = SnapshotsClient::new(ch.clone());
    g.bench_function("stat", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = sn.clone();
            async move {
                let req = sapi::StatSnapshotRequest {
                    snapshotter: "overlay".into(),
                    key: "active".into(),
                };
                c.stat(req).await.unwrap()
            }
        })
    });
    g.bench_function("mounts", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = sn.clone();
            async move {
                let req = sapi::MountsRequest {
                    snapshotter: "overlay".into(),
                    key: "active".into(),
                };
                c.mounts(req).await.unwrap()
            }
        })
    });
    let n = AtomicU64::new(0);
    g.bench_function("prepare", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (mut c, start) = (sn.clone(), n.fetch_add(iters, Ordering::Relaxed));
            async move { timed_prepares(&mut c, start, iters).await }
        })
    });
    let content = ContentClient::new(ch);
    let digest = strata::content::digest::sha256(b"absent").to_string();
    g.bench_function("content_info_not_found", |b| {
        b.to_async(&rt).iter(|| {
            let (mut c, d) = (content.clone(), digest.clone());
            async move {
                let req =
                    strata_grpc::client::in_namespace("bench", InfoRequest { digest: d }).unwrap();
                c.info(req).await.unwrap_err()
            }
        })
    });
    g.finish();
}

/// Times `iters` Prepare calls on `base`; each new snapshot is removed untimed.
async fn timed_prepares(c: &mut SnapshotsClient<Channel>, start: u64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for i in start..start + iters {
        let key = format!("p{i}");
        let t = Instant::now();
        c.prepare(prepare(&key, "base")).await.unwrap();
        total += t.elapsed();
        let rm = sapi::RemoveSnapshotRequest {
            snapshotter: "overlay".into(),
            key,
        };
        c.remove(rm).await.unwrap();
    }
    total
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
