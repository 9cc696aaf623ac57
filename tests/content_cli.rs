//! `strata content …` end to end: runs the `strata` example binary (found as
//! `example_bin` says).

mod example_bin;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn strata_bin() -> PathBuf {
    example_bin::example_bin("strata")
}

fn strata(root: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "strata failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn wrong_expected_digest_keeps_the_ingest_resumable_until_abort() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let good = format!("sha256:{}", sha256_hex(&data));
    let wrong = format!("sha256:{}", sha256_hex(b"something else"));

    let o = strata(
        root,
        &["content", "ingest", "layer-1", "--expected", &wrong],
        Some(&data),
    );
    assert!(!o.status.success(), "a wrong --expected must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&wrong),
        "stderr names the expected digest: {err}"
    );
    assert!(err.contains(&good), "stderr names the actual digest: {err}");

    let ls = ok(&strata(root, &["content", "ls", "-q"], None));
    assert!(ls.trim().is_empty(), "no blob was committed: {ls}");

    let active = ok(&strata(root, &["content", "active"], None));
    let line = active
        .lines()
        .find(|l| l.starts_with("layer-1\t"))
        .unwrap_or_else(|| panic!("layer-1 is listed as active: {active}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(cols[1], data.len().to_string(), "offset: {line}");

    // Filters on ref work.
    let none = ok(&strata(root, &["content", "active", "ref==other"], None));
    assert_eq!(none.lines().count(), 1, "header only: {none}");

    ok(&strata(root, &["content", "abort", "layer-1"], None));
    let active = ok(&strata(root, &["content", "active"], None));
    assert!(!active.contains("layer-1"), "aborted: {active}");
    let o = strata(root, &["content", "abort", "layer-1"], None);
    assert!(!o.status.success(), "abort of a missing ref fails");
}

#[test]
fn ingest_get_info_label_ls_rm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = b"hello, content store\n".repeat(1000);
    let d = format!("sha256:{}", sha256_hex(&data));
    let out = ok(&strata(
        root,
        &[
            "content",
            "ingest",
            "blob",
            "--size",
            &data.len().to_string(),
        ],
        Some(&data),
    ));
    assert_eq!(out.trim(), d);
    // Ingesting again (already exists) succeeds and prints the digest.
    let out = ok(&strata(
        root,
        &["content", "ingest", "again", "--expected", &d],
        Some(&data),
    ));
    assert_eq!(out.trim(), d);

    let got = strata(root, &["content", "get", &d], None);
    assert!(got.status.success());
    assert_eq!(got.stdout, data);

    let info: serde_json::Value =
        serde_json::from_str(&ok(&strata(root, &["content", "info", &d], None))).unwrap();
    assert_eq!(info["digest"], d.as_str());
    assert_eq!(info["size"], data.len() as u64);

    ok(&strata(root, &["content", "label", &d, "a=1", "b=2"], None));
    let out = ok(&strata(root, &["content", "label", &d, "a="], None));
    assert_eq!(out.trim(), "b=2");
    let ls = ok(&strata(root, &["content", "ls", "-q", "labels.b==2"], None));
    assert_eq!(ls.trim(), d);
    let ls = ok(&strata(root, &["content", "ls", "-q", "labels.a"], None));
    assert!(ls.trim().is_empty());
    let other_ns = ok(&strata(
        root,
        &["--namespace", "other", "content", "ls", "-q"],
        None,
    ));
    assert!(other_ns.trim().is_empty(), "namespaces are separate");

    ok(&strata(root, &["content", "rm", &d], None));
    assert!(
        !strata(root, &["content", "info", &d], None)
            .status
            .success()
    );
    assert!(!strata(root, &["content", "rm", &d], None).status.success());
}
