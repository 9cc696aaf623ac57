//! Many processes on one root: four workers loop, each running `strata` commands (one
//! process per command) — pulls, image removals and GC, containers prepared, committed
//! and removed, content ingested and removed — on one state directory for
//! `STRATA_STRESS_SECS` (default 30 s). Failures a concurrent removal explains
//! (not found, already exists, failed precondition) are fine; any other error fails the
//! test. At the end, after one GC, `strata check` is clean and every listed image unpacks.
//! Needs root (overlay mounts) and docker-registry.

mod e2e_common;
mod example_bin;
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_common::is_root;
use registry_common::{Registry, push_built};

/// Runs `strata --root ROOT ARGS` (stdin from `input`); returns `Err(stderr)` on failure.
fn strata(root: &Path, args: &[&str], input: Option<&[u8]>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(example_bin::example_bin("strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(data) = input {
        stdin.write_all(data).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr)),
    }
}

/// Whether a failed command's error is one that concurrent work explains.
fn explained(err: &str) -> bool {
    [
        "not found",
        "already exists",
        "failed precondition",
        "unavailable",
    ]
    .iter()
    .any(|k| err.contains(k))
}

/// One worker: runs its step `i` = 0, 1, 2 … until `until`; returns how many commands
/// succeeded and the unexplained failures.
fn worker(
    root: PathBuf,
    until: Instant,
    step: impl Fn(&Path, usize) -> Vec<Result<String, String>> + Send + 'static,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut i, mut ok, mut bad) = (0, 0, Vec::new());
        while Instant::now() < until {
            for r in step(&root, i) {
                match r {
                    Ok(_) => ok += 1,
                    Err(e) if !explained(&e) => bad.push(e),
                    Err(_) => {}
                }
            }
            i += 1;
        }
        (ok, bad)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_loop_on_one_root() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let a = push_built(&reg.addr, "stress/a", &[300 << 10, 100 << 10], 11).await;
    let b = push_built(&reg.addr, "stress/b", &[200 << 10], 12).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let secs = std::env::var("STRATA_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let until = Instant::now() + Duration::from_secs(secs);
    // The container worker's base: an image no other worker removes.
    strata(&root, &["image", "pull", &a], None).unwrap();
    strata(&root, &["image", "tag", &a, "stress-base"], None).unwrap();
    let (pa, pb, ra, rb) = (a.clone(), b.clone(), a.clone(), b.clone());
    let workers = vec![
        worker(root.clone(), until, move |r, i| {
            let img = if i % 2 == 0 { &pa } else { &pb };
            vec![strata(r, &["image", "pull", img], None)]
        }),
        worker(root.clone(), until, move |r, i| {
            let img = if i % 2 == 0 { &rb } else { &ra };
            vec![
                strata(r, &["image", "rm", img], None),
                strata(r, &["gc"], None),
            ]
        }),
        worker(root.clone(), until, |r, i| {
            let (ctr, new) = (format!("ctr-{i}"), format!("stress/commit:{}", i % 3));
            vec![
                strata(
                    r,
                    &["snapshot", "prepare", &ctr, "--from-image", "stress-base"],
                    None,
                ),
                strata(r, &["image", "commit", &ctr, &new], None),
                strata(r, &["snapshot", "rm", &ctr], None),
            ]
        }),
        worker(root.clone(), until, |r, i| {
            let data = format!("blob {i}").repeat(1000);
            let reference = format!("stress-{i}");
            let d = strata(r, &["content", "ingest", &reference], Some(data.as_bytes()));
            let rm = match &d {
                Ok(d) => strata(r, &["content", "rm", d.trim()], None),
                Err(_) => Ok(String::new()),
            };
            vec![d, rm]
        }),
    ];
    let mut rounds = Vec::new();
    for w in workers {
        let (n, bad) = w.join().unwrap();
        assert!(bad.is_empty(), "unexplained failures: {bad:#?}");
        rounds.push(n);
    }
    eprintln!("stress: commands that succeeded per worker {rounds:?} in {secs} s");
    assert!(
        rounds.iter().all(|n| *n > 0),
        "every worker got work done: {rounds:?}"
    );

    // Settled: one GC collects what the workers' failed operations left (a concurrent
    // removal can orphan a scratch snapshot or an ingest), then everything checks out.
    strata(&root, &["gc"], None).unwrap();
    let out = strata(&root, &["check"], None).unwrap_or_else(|e| panic!("check: {e}"));
    assert!(out.contains("0 damaged"), "{out}");
    let images = strata(&root, &["image", "ls", "-q"], None).unwrap();
    for name in images.lines() {
        strata(&root, &["image", "unpack", name], None)
            .unwrap_or_else(|e| panic!("unpack {name}: {e}"));
    }
    let out = strata(&root, &["check"], None).unwrap_or_else(|e| panic!("check after unpack: {e}"));
    assert!(out.contains("0 damaged"), "{out}");
}
