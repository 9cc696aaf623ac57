//! Snapshotter latencies: prepare, commit and remove on both backends, and native
//! prepare on a parent of 10,000 files (a full tree copy).
//!
//! `cargo bench --bench snapshot` (root; `STRATA_BENCH_DIR` chooses the filesystem,
//! default the system temp dir). For the ratio against `cp -a` of the same tree, see
//! `scripts/bench-snapshot.sh`.

mod common;

use common::bench_dir;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata::snapshot::Snapshotter;
use strata::snapshot::overlay::upperdir;

/// A deterministic tree of `n` files (100 B – 16 KiB) in `n / 25` nested directories.
fn gen_tree(root: &Path, n: usize) {
    let mut dirs = vec![root.to_owned()];
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..(n / 25).max(1) {
        let d = dirs[(next() as usize) % dirs.len()].join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        dirs.push(d);
    }
    for i in 0..n {
        let d = &dirs[(next() as usize) % dirs.len()];
        let size = 100 + (next() % 16_000) as usize;
        std::fs::write(d.join(format!("f{i}")), vec![(i % 251) as u8; size]).unwrap();
    }
}

/// A snapshotter with a committed parent "base" holding `files` files.
async fn setup(backend: &str, root: &Path, files: usize) -> Arc<dyn Snapshotter> {
    let sn = strata::snapshot::open(backend, root).unwrap();
    let m = sn.prepare("base-a", "", Default::default()).await.unwrap();
    gen_tree(&upperdir(&m).unwrap(), files);
    sn.commit("base", "base-a", Default::default())
        .await
        .unwrap();
    sn
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn key(p: &str) -> String {
    format!("{p}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

fn ops(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for backend in ["overlay", "native"] {
        let dir = bench_dir("snapshot");
        let sn = rt.block_on(setup(backend, dir.path(), 20));
        g.bench_function(BenchmarkId::new("prepare", backend), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let sn = sn.clone();
                async move {
                    let keys: Vec<String> = (0..iters).map(|_| key("p")).collect();
                    let t = Instant::now();
                    for k in &keys {
                        sn.prepare(k, "base", Default::default()).await.unwrap();
                    }
                    let el = t.elapsed();
                    for k in &keys {
                        sn.remove(k).await.unwrap();
                    }
                    el
                }
            })
        });
        g.bench_function(BenchmarkId::new("commit", backend), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let sn = sn.clone();
                async move {
                    let keys: Vec<(String, String)> =
                        (0..iters).map(|_| (key("c"), key("n"))).collect();
                    for (k, _) in &keys {
                        let m = sn.prepare(k, "base", Default::default()).await.unwrap();
                        std::fs::write(upperdir(&m).unwrap().join("new"), b"x").unwrap();
                    }
                    let t = Instant::now();
                    for (k, n) in &keys {
                        sn.commit(n, k, Default::default()).await.unwrap();
                    }
                    let el = t.elapsed();
                    for (_, n) in &keys {
                        sn.remove(n).await.unwrap();
                    }
                    el
                }
            })
        });
        g.bench_function(BenchmarkId::new("remove", backend), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let sn = sn.clone();
                async move {
                    let keys: Vec<String> = (0..iters).map(|_| key("r")).collect();
                    for k in &keys {
                        sn.prepare(k, "base", Default::default()).await.unwrap();
                    }
                    let t = Instant::now();
                    for k in &keys {
                        sn.remove(k).await.unwrap();
                    }
                    t.elapsed()
                }
            })
        });
        rt.block_on(sn.close()).unwrap();
    }
    g.finish();
}

fn native_10k(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = bench_dir("snapshot");
    let sn = rt.block_on(setup("native", dir.path(), 10_000));
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("native-prepare-10k-files", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let sn = sn.clone();
            async move {
                let mut el = Duration::ZERO;
                for _ in 0..iters {
                    let k = key("big");
                    let t = Instant::now();
                    sn.prepare(&k, "base", Default::default()).await.unwrap();
                    el += t.elapsed();
                    sn.remove(&k).await.unwrap();
                }
                el
            }
        })
    });
    g.finish();
}

criterion_group!(benches, ops, native_10k);
criterion_main!(benches);
