//! Applies layer blobs in order into a directory with strata-diff's streaming applier and
//! prints per-layer DiffID, size, entries, time and the process's peak RSS.
//!
//! ```text
//! cargo run --release --example apply_layer -- ROOT BLOB [BLOB...]
//! ```
//! The compression of each blob is sniffed from its magic bytes.

use std::time::Instant;
use strata_diff::{ApplyOptions, Compression, apply_layer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: apply_layer ROOT BLOB [BLOB...]");
        std::process::exit(2);
    }
    let root = std::path::Path::new(&args[0]);
    std::fs::create_dir_all(root).expect("create root");
    let all = Instant::now();
    for blob in &args[1..] {
        let t = Instant::now();
        let f = std::fs::File::open(blob).expect("open blob");
        match apply_layer(f, Compression::Detect, root, &ApplyOptions::default()) {
            Ok(s) => eprintln!(
                "{blob}: diff_id={} size={} entries={} in {:.3}s",
                s.diff_id,
                s.size,
                s.entries,
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("{blob}: {e}");
                std::process::exit(1);
            }
        }
    }
    let ru = rustix_free_maxrss();
    println!(
        "total {:.3}s peak_rss_kib {}",
        all.elapsed().as_secs_f64(),
        ru
    );
}

fn rustix_free_maxrss() -> i64 {
    // getrusage(RUSAGE_SELF).ru_maxrss in KiB.
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(-1)
}
