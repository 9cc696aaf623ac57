//! Content store throughput: ingest (write + hash + fsync + commit) of 1 MiB, 64 MiB and
//! 1 GiB blobs, and reads (`reader_at` and the streaming reader) of committed blobs.
//!
//! `cargo bench --bench content` (set `STRATA_BENCH_DIR` to put the store on another
//! filesystem; default: the system temp dir). Each ingest sample writes a fresh ref and
//! deletes the blob afterwards (outside the timed part).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata::content::digest::sha256;
use strata::content::local::LocalStore;
use strata::content::{
    Descriptor, Ingester, Labels, Manager, MediaType, Provider, ReaderAt, WriterOpts,
};
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;

fn data(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for w in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        w.copy_from_slice(&b[..w.len()]);
    }
    v
}

fn store_dir() -> tempfile::TempDir {
    match std::env::var_os("STRATA_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("tempdir in STRATA_BENCH_DIR"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn ingest(store: &LocalStore, reference: &str, data: &[u8]) {
    let mut w = store.writer(WriterOpts::new(reference)).await.unwrap();
    for c in data.chunks(MIB) {
        w.write(c).await.unwrap();
    }
    w.commit(data.len() as u64, None, Labels::new())
        .await
        .unwrap();
}

fn bench_ingest(c: &mut Criterion) {
    let rt = runtime();
    let dir = store_dir();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("content/ingest");
    group.sample_size(10);
    for (name, size) in [("1MiB", MIB), ("64MiB", 64 * MIB), ("1GiB", 1024 * MIB)] {
        let buf = data(size);
        let digest = sha256(&buf);
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1024 * MIB {
            group.measurement_time(Duration::from_secs(30));
        } else {
            group.measurement_time(Duration::from_secs(5));
        }
        let mut n = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let start = Instant::now();
                        ingest(&store, &format!("bench-{n}"), &buf).await;
                        total += start.elapsed();
                        store.delete(&digest).await.unwrap();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let rt = runtime();
    let dir = store_dir();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("content/read");
    group.sample_size(10);
    for (name, size) in [("64MiB", 64 * MIB), ("1GiB", 1024 * MIB)] {
        let buf = data(size);
        let digest = sha256(&buf);
        rt.block_on(ingest(&store, name, &buf));
        drop(buf);
        let desc = Descriptor::new(MediaType::ImageLayer, size as u64, digest);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("reader_at", name), |b| {
            b.iter(|| {
                let ra: Arc<dyn ReaderAt> = rt.block_on(store.reader_at(&desc)).unwrap();
                let mut chunk = vec![0u8; MIB];
                let mut off = 0u64;
                loop {
                    let n = ra.read_at(&mut chunk, off).unwrap();
                    if n == 0 {
                        break;
                    }
                    off += n as u64;
                }
                assert_eq!(off, size as u64);
            })
        });
        group.bench_function(BenchmarkId::new("stream", name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut r = store.reader(&desc).await.unwrap();
                    let mut chunk = vec![0u8; MIB];
                    let mut total = 0usize;
                    loop {
                        let n = r.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    assert_eq!(total, size);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_ingest, bench_read);
criterion_main!(benches);
