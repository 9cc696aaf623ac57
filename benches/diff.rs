//! strata-diff benchmarks: layer apply (MB/s and files/s on a generated layer, plain and
//! gzip) and compare (double walk and overlay-upperdir walk writing a tar to a sink).
//!
//! `cargo bench --bench diff`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use strata_diff::compare::{self, ChangeWriter, WriterOptions};
use strata_diff::{ApplyOptions, Compression, apply_layer};

const FILES: usize = 2000;

/// A layer of FILES files (1–32 KiB, pseudo-random sizes) in 50 directories, written by
/// strata's own tar writer from a generated tree.
fn layer() -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for d in 0..50 {
        std::fs::create_dir(t.path().join(format!("d{d}"))).unwrap();
    }
    for i in 0..FILES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 1024 + (seed % (31 * 1024)) as usize;
        let data: Vec<u8> = (0..size).map(|j| (j as u64 ^ seed) as u8).collect();
        std::fs::write(t.path().join(format!("d{}/f{i}", i % 50)), data).unwrap();
    }
    let mut cw = ChangeWriter::new(Vec::new(), t.path(), WriterOptions::default());
    compare::changes(None, t.path(), &mut |ch| cw.handle(ch)).unwrap();
    cw.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2_free_gzip();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn flate2_free_gzip() -> strata_diff::compression::Encoder<'static, Vec<u8>> {
    strata_diff::compression::encoder(
        Vec::new(),
        strata_diff::Encoding {
            compression: Compression::Gzip,
            level: Some(6),
            threads: 0,
        },
    )
    .unwrap()
}

fn bench_apply(c: &mut Criterion) {
    let plain = layer();
    let gz = gzip(&plain);
    let base = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("apply");
    g.sample_size(10);
    for (name, blob, comp) in [
        ("tar", &plain, Compression::None),
        ("tar+gzip", &gz, Compression::Gzip),
    ] {
        g.throughput(Throughput::Bytes(plain.len() as u64));
        g.bench_function(format!("{name}/bytes"), |b| {
            b.iter_batched(
                || tempfile::tempdir_in(base.path()).unwrap(),
                |dir| {
                    apply_layer(&blob[..], comp, dir.path(), &ApplyOptions::default()).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
        g.throughput(Throughput::Elements(FILES as u64));
        g.bench_function(format!("{name}/files"), |b| {
            b.iter_batched(
                || tempfile::tempdir_in(base.path()).unwrap(),
                |dir| {
                    apply_layer(&blob[..], comp, dir.path(), &ApplyOptions::default()).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn modify(upper: &Path) {
    for i in (0..FILES).step_by(10) {
        std::fs::write(upper.join(format!("d{}/f{i}", i % 50)), b"changed").unwrap();
    }
    for i in (5..FILES).step_by(20) {
        std::fs::remove_file(upper.join(format!("d{}/f{i}", i % 50))).unwrap();
    }
}

struct Sink;
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn bench_compare(c: &mut Criterion) {
    let plain = layer();
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for d in [&lower, &upper] {
        std::fs::create_dir(d).unwrap();
        apply_layer(&plain[..], Compression::None, d, &ApplyOptions::default()).unwrap();
    }
    modify(&upper);
    let mut g = c.benchmark_group("compare");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FILES as u64));
    g.bench_function("double-walk", |b| {
        b.iter(|| {
            let cw = RefCell::new(ChangeWriter::new(Sink, &upper, WriterOptions::default()));
            compare::walk::changes_with_links(
                Some(&lower),
                &upper,
                &mut |ch| cw.borrow_mut().handle(ch),
                &mut |p| cw.borrow_mut().unchanged(p),
            )
            .unwrap();
            cw.into_inner().finish().unwrap();
        })
    });
    // An upperdir holding only the changes (as overlayfs would have it).
    let ovl = t.path().join("ovl");
    std::fs::create_dir(&ovl).unwrap();
    for d in 0..50 {
        std::fs::create_dir(ovl.join(format!("d{d}"))).unwrap();
    }
    for i in (0..FILES).step_by(10) {
        std::fs::write(ovl.join(format!("d{}/f{i}", i % 50)), b"changed").unwrap();
    }
    g.bench_function("overlay-upperdir", |b| {
        b.iter(|| {
            let mut cw = ChangeWriter::new(Sink, &ovl, WriterOptions::default());
            compare::overlay::changes(&ovl, std::slice::from_ref(&lower), &mut |ch| cw.handle(ch))
                .unwrap();
            cw.finish().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_compare);
criterion_main!(benches);
