//! Finding an example binary (`strata`, `embed`, …) from an integration test.
//!
//! `$STRATA_EXAMPLE_BIN` names the `strata` binary when set. Otherwise the test runs
//! `cargo build --example NAME` (same profile and target dir as the test, so a no-op
//! when `cargo test` already built the examples) and uses
//! `<target>/<profile>/examples/NAME`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The path of example `name`, built if needed (once per test process).
pub fn example_bin(name: &str) -> PathBuf {
    static BINS: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut bins = BINS.lock().unwrap();
    let bins = bins.get_or_insert_with(HashMap::new);
    if let Some(p) = bins.get(name) {
        return p.clone();
    }
    let path = match std::env::var_os("STRATA_EXAMPLE_BIN") {
        Some(p) if name == "strata" => PathBuf::from(p),
        _ => build(name),
    };
    bins.insert(name.to_string(), path.clone());
    path
}

fn build(name: &str) -> PathBuf {
    // <target>/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let target_dir = profile_dir.parent().expect("target dir");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo build --example");
    assert!(st.success(), "cargo build --example {name} failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}
