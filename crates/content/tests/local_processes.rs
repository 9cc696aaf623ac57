//! Multi-process properties of `LocalStore`: a writer killed with SIGKILL mid-ingest
//! resumes at its offset with no partial blob ever visible, and two processes on one
//! root never corrupt each other.
//!
//! The child processes are this test binary re-executed to run the ignored test
//! `child_process_entry` with `STRATA_CONTENT_CHILD` set (it does nothing without it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use strata_content::digest::{Digest, Digester, sha256};
use strata_content::local::LocalStore;
use strata_content::testsuite::descriptor;
use strata_content::{
    Error, IngestManager, Ingester, Labels, Manager, Provider, WriterOpts, helpers,
};

const MIB: usize = 1 << 20;
const BIG: usize = 64 * MIB;

/// Deterministic bytes: the 8-byte word at position `p` is a hash of `p / 8` and `seed`.
fn fill(buf: &mut [u8], start: usize, seed: u64) {
    assert_eq!(start % 8, 0);
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let mut z = ((start / 8 + i) as u64 ^ seed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let b = z.to_le_bytes();
        w.copy_from_slice(&b[..w.len()]);
    }
}

fn big_data(seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; BIG];
    fill(&mut v, 0, seed);
    v
}

const HELD_PREFIX: usize = 5 * MIB;

fn held_blob() -> Vec<u8> {
    let mut v = vec![0u8; 6 * MIB];
    fill(&mut v, 0, 7);
    v
}

fn small_blob(tag: &str) -> Vec<u8> {
    let mut v = format!("blob {tag} ").into_bytes();
    v.resize(8192 + tag.len() * 13, b'x');
    v
}

fn spawn_child(mode: &str, root: &Path, env: &[(&str, String)]) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("STRATA_CONTENT_CHILD", mode)
    .env("STRATA_CONTENT_ROOT", root)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let out = BufReader::new(child.stdout.take().expect("child stdout"));
    (child, out)
}

/// Reads child stdout until a line starting with `CHILD <word>`; returns its rest.
fn expect_line(out: &mut BufReader<ChildStdout>, word: &str) -> String {
    let prefix = format!("CHILD {word}");
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read child stdout");
        assert!(n > 0, "child exited before printing {prefix:?}");
        // libtest prints "test child_process_entry ... " before the first line.
        if let Some(at) = line.find(&prefix) {
            return line[at + prefix.len()..].trim().to_string();
        }
    }
}

async fn assert_nothing_visible(store: &LocalStore, d: &Digest) {
    assert!(
        store.info(d).await.unwrap_err().is_not_found(),
        "info of a partial blob"
    );
    assert!(
        store
            .reader_at(&descriptor(d, 0))
            .await
            .err()
            .unwrap()
            .is_not_found(),
        "reader_at of a partial blob"
    );
    assert!(
        store.walk(&[]).await.unwrap().is_empty(),
        "walk shows a partial blob"
    );
    assert!(
        store.blobs_on_disk().await.unwrap().is_empty(),
        "a partial blob is in blobs/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_resumes_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 42;
    let data = big_data(seed);
    let d = sha256(&data);
    let (mut child, mut out) = spawn_child(
        "ingest-slow",
        dir.path(),
        &[("SEED", seed.to_string()), ("DIGEST", d.to_string())],
    );
    expect_line(&mut out, "half");
    let store = LocalStore::open(dir.path()).unwrap();
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        assert_nothing_visible(&store, &d).await;
        let st = store.status("big").await.unwrap();
        assert!(st.offset <= BIG as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect_line(&mut out, "at");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was killed mid-write: {status:?}"
    );
    drop(store);

    // A fresh open of the store, as after a crash.
    let store = LocalStore::open(dir.path()).unwrap();
    assert_nothing_visible(&store, &d).await;
    let st = store.status("big").await.unwrap();
    assert!(
        st.offset >= 16 * MIB as u64 && st.offset < BIG as u64,
        "offset after kill: {}",
        st.offset
    );
    assert_eq!(st.total, BIG as u64);
    assert_eq!(st.expected.as_ref(), Some(&d));
    let listed = store
        .list_statuses(&["ref==big".to_string()])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].offset, st.offset);

    let mut w = store
        .writer(WriterOpts::new("big").expected(d.clone()).total(BIG as u64))
        .await
        .unwrap();
    let ws = w.status().await.unwrap();
    assert_eq!(
        ws.offset, st.offset,
        "the writer resumes at the stored offset"
    );
    let off = ws.offset as usize;
    assert_eq!(
        w.digest(),
        sha256(&data[..off]),
        "digest of the kept prefix"
    );
    for c in data[off..].chunks(MIB) {
        w.write(c).await.unwrap();
    }
    w.commit(BIG as u64, Some(d.clone()), Labels::new())
        .await
        .unwrap();
    let info = store.info(&d).await.unwrap();
    assert_eq!(info.size, BIG as u64);
    let back = helpers::read_blob(&store, &descriptor(&d, 0))
        .await
        .unwrap();
    assert_eq!(sha256(&back), d);
    assert!(store.list_statuses(&[]).await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_sees_the_ref_locked_and_commits_other_refs() {
    let dir = tempfile::tempdir().unwrap();
    let held = held_blob();
    let d_held = sha256(&held);
    let (mut child, mut out) = spawn_child("hold", dir.path(), &[("DIGEST", d_held.to_string())]);
    let pid = expect_line(&mut out, "locked");
    let store = LocalStore::open(dir.path()).unwrap();

    let e = store.writer(WriterOpts::new("held")).await.err().unwrap();
    assert!(e.is_unavailable(), "{e}");
    assert!(
        e.to_string().contains(&pid),
        "message names the holder pid {pid}: {e}"
    );
    let e = store.abort("held").await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let e =
        helpers::open_writer_timeout(&store, WriterOpts::new("held"), Duration::from_millis(200))
            .await
            .err()
            .unwrap();
    assert!(e.is_unavailable(), "{e}");
    // The writer buffers up to one 4 MiB chunk: at least 4 of the 5 MiB are on disk.
    let off = store.status("held").await.unwrap().offset;
    assert!(
        (4 * MIB as u64..=HELD_PREFIX as u64).contains(&off),
        "offset {off}"
    );
    assert!(store.info(&d_held).await.unwrap_err().is_not_found());

    // A different ref commits while the child holds its own.
    let other = small_blob("other");
    let d_other = sha256(&other);
    helpers::write_blob(
        &store,
        "other",
        &other[..],
        &descriptor(&d_other, other.len() as u64),
        Labels::new(),
    )
    .await
    .unwrap();

    // Let the child finish; the parent then waits for the ref with backoff.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            helpers::open_writer_timeout(&store, WriterOpts::new("held"), Duration::from_secs(30))
                .await
        })
    };
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    expect_line(&mut out, "committed");
    assert!(child.wait().unwrap().success());
    let w = waiter
        .await
        .unwrap()
        .expect("ref free after the child committed");
    assert_eq!(
        w.status().await.unwrap().offset,
        0,
        "a committed ref starts fresh"
    );
    w.close().await.unwrap();
    store.abort("held").await.unwrap();

    for (d, b) in [(&d_held, &held), (&d_other, &other)] {
        let got = helpers::read_blob(&store, &descriptor(d, 0)).await.unwrap();
        assert_eq!(&got, b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_never_corrupt_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|id| spawn_child("many", dir.path(), &[("ID", id.to_string())]))
        .collect();
    // The parent races with them on the common blobs.
    run_many(&store, 9).await;
    for (c, _) in &mut children {
        assert!(c.wait().unwrap().success(), "child failed");
    }
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for id in [0, 1, 9] {
        for i in 0..MANY {
            expected.push(small_blob(&format!("p{id}-{i}")));
        }
    }
    for i in 0..MANY {
        expected.push(small_blob(&format!("common-{i}")));
    }
    let listed = store.walk(&[]).await.unwrap();
    assert_eq!(listed.len(), expected.len(), "every blob committed once");
    for b in &expected {
        let d = sha256(b);
        let got = helpers::read_blob(&store, &descriptor(&d, 0))
            .await
            .unwrap();
        assert_eq!(&got, b, "bytes of {d}");
    }
    assert!(store.list_statuses(&[]).await.unwrap().is_empty());
    assert_eq!(store.blobs_on_disk().await.unwrap().len(), expected.len());
}

const MANY: usize = 25;

/// Writes `p<id>-<i>` and `common-<i>` blobs (the latter under per-process refs, so
/// processes race to commit the same digests).
async fn run_many(store: &LocalStore, id: u32) {
    for i in 0..MANY {
        for (r, tag) in [
            (format!("p{id}-{i}"), format!("p{id}-{i}")),
            (format!("c{id}-{i}"), format!("common-{i}")),
        ] {
            let b = small_blob(&tag);
            let d = sha256(&b);
            helpers::write_blob(
                store,
                &r,
                &b[..],
                &descriptor(&d, b.len() as u64),
                Labels::new(),
            )
            .await
            .unwrap_or_else(|e: Error| panic!("process {id} blob {tag}: {e}"));
        }
    }
}

/// The child side; does nothing unless `STRATA_CONTENT_CHILD` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process entry for the multi-process tests"]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("STRATA_CONTENT_CHILD") else {
        return;
    };
    let root = std::env::var("STRATA_CONTENT_ROOT").unwrap();
    let store = LocalStore::open(&root).unwrap();
    let var = |k: &str| std::env::var(k).unwrap();
    match mode.as_str() {
        "ingest-slow" => {
            let seed: u64 = var("SEED").parse().unwrap();
            let d: Digest = var("DIGEST").parse().unwrap();
            let mut w = store
                .writer(WriterOpts::new("big").expected(d).total(BIG as u64))
                .await
                .unwrap();
            let mut buf = vec![0u8; MIB];
            let mut h = Digester::new();
            for i in 0..BIG / MIB {
                fill(&mut buf, i * MIB, seed);
                h.update(&buf);
                w.write(&buf).await.unwrap();
                if i + 1 == 24 {
                    println!("CHILD half {}", (i + 1) * MIB);
                }
                if i + 1 >= 24 {
                    if i + 1 >= 28 {
                        println!("CHILD at {}", (i + 1) * MIB);
                    }
                    std::io::stdout().flush().unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // Not reached when the parent kills us in time.
            w.commit(BIG as u64, None, Labels::new()).await.unwrap();
            println!("CHILD done {}", h.digest());
        }
        "hold" => {
            let d: Digest = var("DIGEST").parse().unwrap();
            let b = held_blob();
            let mut w = store.writer(WriterOpts::new("held")).await.unwrap();
            w.write(&b[..HELD_PREFIX]).await.unwrap();
            println!("CHILD locked {}", std::process::id());
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            w.write(&b[HELD_PREFIX..]).await.unwrap();
            w.commit(b.len() as u64, Some(d), Labels::new())
                .await
                .unwrap();
            println!("CHILD committed");
        }
        "many" => {
            let id: u32 = var("ID").parse().unwrap();
            run_many(&store, id).await;
        }
        other => panic!("unknown child mode {other}"),
    }
    std::io::stdout().flush().unwrap();
}
