//! containerd 1.6's own conformance suites against `strata serve`, over gRPC: the Go test
//! package in `crates/grpc/conformance/src/stratasuite` runs `snapshots/testsuite`
//! (native and overlay) and `content/testsuite` (`ContentSuite`,
//! `ContentCrossNSSharedSuite`) through containerd's proxy clients, one server per case.
//!
//! Needs root (the snapshot cases mount), Go and containerd's Go source (Debian's
//! `golang-go` and `golang-github-containerd-containerd-dev`); built in GOPATH mode, offline.
//! Skips without them, fails under `STRATA_REQUIRE_PEERS=1`.

mod e2e_common;
mod example_bin;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian installs containerd's Go source.
const GOCODE: &str = "/usr/share/gocode";

/// The cases each suite has in containerd 1.6 (upstream skips `Rename`).
const EXPECTED: [(&str, usize, &[&str]); 3] = [
    ("TestSnapshotterNative", 21, &["Rename"]),
    ("TestSnapshotterOverlay", 21, &["Rename"]),
    ("TestContent", 14, &[]),
];

/// Per top-level test: passed, failed and skipped subtests (by name).
#[derive(Debug, Default)]
struct Counts {
    passed: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
}

/// Reads `go test -v` output: `    --- PASS: TestX/Case (0.1s)` lines.
fn parse(out: &str, suite: &str) -> Counts {
    let mut c = Counts::default();
    for line in out.lines() {
        let Some((verdict, rest)) = line
            .trim_start()
            .strip_prefix("--- ")
            .and_then(|l| l.split_once(": "))
        else {
            continue;
        };
        let Some(case) = rest.strip_prefix(suite).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let case = case
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        match verdict {
            "PASS" => c.passed.push(case),
            "FAIL" => c.failed.push(case),
            "SKIP" => c.skipped.push(case),
            _ => {}
        }
    }
    c
}

fn have_gocode() -> bool {
    let found = Path::new(GOCODE)
        .join("src/github.com/containerd/containerd/snapshots/testsuite")
        .is_dir();
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "containerd's Go source is required (STRATA_REQUIRE_PEERS=1) but {GOCODE} lacks it"
            );
        }
        eprintln!("SKIP: golang-github-containerd-containerd-dev not installed");
    }
    found
}

/// Runs `go test -v stratasuite -args -test.root` with `bin` as the server.
fn go_test(bin: &Path) -> (bool, String) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let gopath = format!(
        "{}:{GOCODE}",
        here.join("crates/grpc/conformance").display()
    );
    let target = bin
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let out = Command::new("go")
        .args([
            "test",
            "-count=1",
            "-v",
            "-timeout",
            "15m",
            "stratasuite",
            "-args",
            "-test.root",
        ])
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .env("GOCACHE", target.join("go-build"))
        .env("STRATA_BIN", bin)
        .output()
        .expect("run go test");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn containerd_conformance_suites_pass_over_grpc() {
    if !(e2e_common::have("go") && have_gocode() && e2e_common::is_root()) {
        return;
    }
    let bin: PathBuf = example_bin::example_bin("strata");
    let (ok, out) = go_test(&bin);
    // Written straight to the stderr fd, past the test harness's capture, so CI logs show it.
    let mut err = std::io::stderr();
    let mut total = (0, 0, 0);
    for (suite, want, skips) in EXPECTED {
        let c = parse(&out, suite);
        writeln!(
            err,
            "containerd suite {suite}: {} passed, {} failed, {} skipped {:?}",
            c.passed.len(),
            c.failed.len(),
            c.skipped.len(),
            c.skipped
        )
        .unwrap();
        assert!(c.failed.is_empty(), "{suite} failed {:?}:\n{out}", c.failed);
        assert_eq!(
            c.passed.len() + c.skipped.len(),
            want,
            "{suite} case count:\n{out}"
        );
        assert_eq!(
            c.skipped, skips,
            "{suite} skipped other cases than upstream does:\n{out}"
        );
        total = (
            total.0 + c.passed.len(),
            total.1 + c.failed.len(),
            total.2 + c.skipped.len(),
        );
    }
    writeln!(
        err,
        "containerd suites over gRPC: {} cases passed, {} failed, {} skipped",
        total.0, total.1, total.2
    )
    .unwrap();
    assert!(ok, "go test failed:\n{out}");
}

#[test]
fn go_test_output_is_counted_per_suite() {
    let out = "--- PASS: TestContent (1s)\n    --- PASS: TestContent/Writer (0.1s)\n    \
               --- FAIL: TestContent/Labels (0.1s)\n    --- SKIP: TestSnapshotterNative/Rename (0s)\n";
    let c = parse(out, "TestContent");
    assert_eq!(
        (c.passed, c.failed),
        (vec!["Writer".to_owned()], vec!["Labels".to_owned()])
    );
    assert_eq!(parse(out, "TestSnapshotterNative").skipped, ["Rename"]);
}
