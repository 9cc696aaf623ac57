//! What the benches share: where they make their scratch directories.

use std::path::PathBuf;

/// A fresh directory `strata-bench-<name>-*` under `$STRATA_BENCH_DIR` (default the
/// temp dir), so a bench can run on the filesystem under test.
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("STRATA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!("strata-bench-{name}-"))
        .tempdir_in(base)
        .unwrap()
}
