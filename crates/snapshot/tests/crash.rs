//! Crash consistency: a child process doing prepare/commit/rebase/view/remove is killed with
//! SIGKILL at random moments (and aborted at each injected fault point); after reopening,
//! every record owns its directory, and after `cleanup` every directory belongs to a
//! record, and the snapshotter keeps working.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use strata_snapshot::Snapshotter;
use strata_snapshot::native::NativeSnapshotter;
use strata_snapshot::overlay::{OverlayOptions, OverlaySnapshotter};
use strata_snapshot::storage::MetaStore;

const WORKER_ENV: &str = "STRATA_SNAPSHOT_CRASH_WORKER";

fn open(backend: &str, root: &Path) -> Arc<dyn Snapshotter> {
    match backend {
        "native" => Arc::new(NativeSnapshotter::open(root).unwrap()),
        _ => Arc::new(OverlaySnapshotter::open(root, OverlayOptions::default()).unwrap()),
    }
}

/// The writable directory of an active snapshot, from its mounts.
fn writable(m: &[strata_snapshot::Mount]) -> PathBuf {
    strata_snapshot::overlay::upperdir(m).expect("writable dir")
}

/// The child: loops over snapshot operations until killed.
#[tokio::test]
async fn crash_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return; // only runs as a child of the tests below
    };
    let (backend, root) = spec.split_once(':').unwrap();
    let sn = open(backend, Path::new(root));
    if sn.stat("base").await.is_err() {
        let _ = sn.remove("base-a").await;
        let m = sn.prepare("base-a", "", Default::default()).await.unwrap();
        for i in 0..60 {
            std::fs::write(writable(&m).join(format!("f{i}")), vec![b'x'; 3000]).unwrap();
        }
        sn.commit("base", "base-a", Default::default())
            .await
            .unwrap();
    }
    // Leftovers of an earlier run are in the way of fixed keys: clear them, children
    // (active and view snapshots) before the committed ones.
    let mut left = sn.walk(&[]).await.unwrap();
    left.sort_by_key(|i| i.kind == strata_snapshot::Kind::Committed);
    for info in left {
        if info.name != "base" {
            sn.remove(&info.name).await.unwrap();
        }
    }
    println!("ready");
    for i in 0u64.. {
        let (key, name, view) = (format!("a-{i}"), format!("c-{i}"), format!("v-{i}"));
        let m = sn.prepare(&key, "base", Default::default()).await.unwrap();
        std::fs::write(writable(&m).join("new"), i.to_string()).unwrap();
        sn.commit(&name, &key, Default::default()).await.unwrap();
        sn.view(&view, &name, Default::default()).await.unwrap();
        sn.remove(&view).await.unwrap();
        if i > 0 {
            sn.remove(&format!("c-{}", i - 1)).await.unwrap();
        }
        // A layer applied on its own, rebased onto base (native rebuilds the tree).
        let (key, name) = (format!("r-{i}"), format!("rc-{i}"));
        let m = sn.prepare(&key, "", Default::default()).await.unwrap();
        std::fs::write(writable(&m).join("f0"), i.to_string()).unwrap();
        sn.commit_rebase(&name, &key, "base", Default::default())
            .await
            .unwrap();
        sn.remove(&name).await.unwrap();
    }
}

/// Checks the invariants after a crash, then runs cleanup and checks again.
async fn check_consistent(backend: &str, root: &Path) {
    let ms = MetaStore::open(&root.join("metadata.db")).unwrap();
    let ids = ms.read(|tx| tx.ids()).unwrap();
    let infos = ms
        .read(|tx| tx.walk(&strata_content::filters::Filter::always()))
        .unwrap();
    ms.close();
    let dirs = |root: &Path| -> Vec<String> {
        std::fs::read_dir(root.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    for (id, info) in &infos {
        let dir = root.join("snapshots").join(id.to_string());
        let layer = if backend == "overlay" {
            dir.join("fs")
        } else {
            dir.clone()
        };
        assert!(layer.is_dir(), "record {info:?} (id {id}) has no directory");
        if !info.parent.is_empty() {
            assert!(
                infos.iter().any(|(_, p)| p.name == info.parent),
                "dangling parent"
            );
        }
    }
    let sn = open(backend, root);
    // Every record is usable.
    for (_, info) in &infos {
        let st = sn.stat(&info.name).await.unwrap();
        assert_eq!(&st, info);
        if info.kind != strata_snapshot::Kind::Committed {
            sn.mounts(&info.name).await.unwrap();
        }
    }
    sn.cleanup().await.unwrap();
    for d in dirs(root) {
        let owned = d.parse::<u64>().is_ok_and(|id| ids.contains(&id));
        assert!(owned, "cleanup left unowned {d} (records {ids:?})");
    }
    // And it keeps working.
    sn.prepare("after-crash", "", Default::default())
        .await
        .unwrap();
    sn.commit("after-crash-c", "after-crash", Default::default())
        .await
        .unwrap();
    sn.remove("after-crash-c").await.unwrap();
    sn.close().await.unwrap();
}

fn spawn_worker(backend: &str, root: &Path, fault: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "crash_worker",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(WORKER_ENV, format!("{backend}:{}", root.display()))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(f) = fault {
        cmd.env("STRATA_SNAPSHOT_FAULT", f);
    }
    cmd.spawn().unwrap()
}

/// Waits until the worker printed "ready" (its setup is done).
fn wait_ready(child: &mut std::process::Child) {
    use std::io::{BufRead, BufReader};
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    for l in lines.by_ref() {
        if l.unwrap().contains("ready") {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}

async fn kill_loop(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for round in 0..6u64 {
        let mut child = spawn_worker(backend, &root, None);
        wait_ready(&mut child);
        std::thread::sleep(Duration::from_millis(
            40 + round * 37 + rand::random::<u64>() % 60,
        ));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        check_consistent(backend, &root).await;
    }
    // Deterministic crashes in each window of the directory life cycle.
    let mut faults = vec![
        "create-after-populate",
        "create-after-rename",
        "commit-before-tx-commit",
        "remove-after-record",
        "remove-after-rename",
    ];
    if backend == "native" {
        faults.extend(["rebase-after-build", "rebase-after-rename"]);
    }
    for fault in faults {
        let mut child = spawn_worker(backend, &root, Some(fault));
        let mut waited = 0;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if waited > 600 {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{fault}: the worker never reached the fault point");
            }
            waited += 1;
            std::thread::sleep(Duration::from_millis(100));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc_sigabrt()),
            "{fault}: the worker should have aborted at the fault point, got {status}"
        );
        check_consistent(backend, &root).await;
    }
}

/// SIGABRT (the fault point aborts; a panic would exit with 101 instead).
fn libc_sigabrt() -> i32 {
    6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_operations_native() {
    if std::env::var_os(WORKER_ENV).is_none() {
        kill_loop("native").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_operations_overlay() {
    if std::env::var_os(WORKER_ENV).is_none() {
        kill_loop("overlay").await;
    }
}
