//! containerd's overlay_test.go: the exact mounts, views, index option, upperdir label,
//! deferred removal; plus concurrent use of one root from two instances.

use super::*;

fn open(dir: &Path, opts: OverlayOptions) -> OverlaySnapshotter {
    OverlaySnapshotter::open(dir, opts).unwrap()
}

fn index_off() -> Vec<String> {
    if Path::new("/sys/module/overlay/parameters/index").exists() {
        vec!["index=off".into()]
    } else {
        vec![]
    }
}

#[tokio::test]
async fn mounts_and_commit() {
    let d = tempfile::tempdir().unwrap();
    let sn = open(d.path(), OverlayOptions::default());
    let m = sn.prepare("a", "", Labels::new()).await.unwrap();
    let fs1 = d.path().join("snapshots/1/fs");
    assert_eq!(m, vec![Mount::bind(fs1.to_str().unwrap(), false)]);
    assert!(d.path().join("snapshots/1/work").is_dir());
    std::fs::write(fs1.join("foo"), "hi").unwrap();
    let active = sn.usage("a").await.unwrap();
    sn.commit("base", "a", Labels::new()).await.unwrap();
    // Measured on first use after the commit, then stored: the same figure.
    let u = sn.usage("base").await.unwrap();
    assert!(u.inodes >= 2 && u.size > 0, "{u:?}");
    assert_eq!(u, active);
    std::fs::write(fs1.join("later"), vec![1u8; 100_000]).unwrap();
    assert_eq!(
        sn.usage("base").await.unwrap(),
        u,
        "stored, not walked again"
    );
    assert!(
        sn.mounts("base")
            .await
            .unwrap_err()
            .is_failed_precondition()
    );

    let m = sn.prepare("b", "base", Labels::new()).await.unwrap();
    let mut want = index_off();
    want.push(format!(
        "workdir={}",
        d.path().join("snapshots/2/work").display()
    ));
    want.push(format!(
        "upperdir={}",
        d.path().join("snapshots/2/fs").display()
    ));
    want.push(format!("lowerdir={}", fs1.display()));
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].kind.as_str(), m[0].source.as_str()),
        ("overlay", "overlay")
    );
    assert_eq!(m[0].options, want);
    assert_eq!(upperdir(&m).unwrap(), d.path().join("snapshots/2/fs"));
    assert_eq!(sn.mounts("b").await.unwrap(), m);
}

#[tokio::test]
async fn views() {
    let d = tempfile::tempdir().unwrap();
    let sn = open(d.path(), OverlayOptions::default());
    sn.prepare("a", "", Labels::new()).await.unwrap();
    sn.commit("base", "a", Labels::new()).await.unwrap();
    sn.prepare("b", "base", Labels::new()).await.unwrap();
    sn.commit("top", "b", Labels::new()).await.unwrap();
    let fs = |id: u32| d.path().join(format!("snapshots/{id}/fs"));

    let v = sn.view("v1", "base", Labels::new()).await.unwrap();
    assert_eq!(v, vec![Mount::bind(fs(1).to_str().unwrap(), true)]);
    assert!(
        !d.path().join("snapshots/3/work").exists(),
        "views have no workdir"
    );

    let v = sn.view("v2", "top", Labels::new()).await.unwrap();
    let mut want = index_off();
    want.push(format!("lowerdir={}:{}", fs(2).display(), fs(1).display()));
    assert_eq!(v[0].kind, "overlay");
    assert_eq!(v[0].options, want);
    assert_eq!(upperdir(&v), None);
}

#[tokio::test]
async fn configured_index_not_overridden() {
    let d = tempfile::tempdir().unwrap();
    let opts = OverlayOptions {
        mount_options: vec!["index=on".into()],
        ..Default::default()
    };
    let sn = open(d.path(), opts);
    sn.prepare("a", "", Labels::new()).await.unwrap();
    sn.commit("base", "a", Labels::new()).await.unwrap();
    let m = sn.prepare("b", "base", Labels::new()).await.unwrap();
    assert!(!m[0].options.iter().any(|o| o == "index=off"));
    assert_eq!(m[0].options.last().unwrap(), "index=on");
}

#[tokio::test]
async fn upperdir_label_is_reported_not_stored() {
    let d = tempfile::tempdir().unwrap();
    let sn = open(
        d.path(),
        OverlayOptions {
            upperdir_label: true,
            ..Default::default()
        },
    );
    sn.prepare("a", "", [("x".to_string(), "1".to_string())].into())
        .await
        .unwrap();
    let fs = d
        .path()
        .join("snapshots/1/fs")
        .to_string_lossy()
        .into_owned();
    let st = sn.stat("a").await.unwrap();
    assert_eq!(st.labels.get(UPPERDIR_LABEL), Some(&fs));
    let f = format!("labels.\"{UPPERDIR_LABEL}\"==\"{fs}\"");
    assert_eq!(sn.walk(&[f]).await.unwrap().len(), 1);
    let st = sn
        .update(Info::for_update("a", Labels::new()), &[])
        .await
        .unwrap();
    assert_eq!(
        st.labels.len(),
        1,
        "only the reported label: {:?}",
        st.labels
    );
    let plain = open(d.path(), OverlayOptions::default());
    assert!(plain.stat("a").await.unwrap().labels.is_empty());
}

#[tokio::test]
async fn async_remove_defers_to_cleanup() {
    let d = tempfile::tempdir().unwrap();
    let sn = open(
        d.path(),
        OverlayOptions {
            async_remove: true,
            ..Default::default()
        },
    );
    sn.prepare("a", "", Labels::new()).await.unwrap();
    let dir = d.path().join("snapshots/1");
    sn.remove("a").await.unwrap();
    assert!(sn.stat("a").await.unwrap_err().is_not_found());
    assert!(dir.exists(), "removal is deferred");
    sn.cleanup().await.unwrap();
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_use_from_two_instances() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path(), OverlayOptions::default());
    let b = open(d.path(), OverlayOptions::default());
    a.prepare("base-a", "", Labels::new()).await.unwrap();
    a.commit("base", "base-a", Labels::new()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let sn = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let (k, n) = (format!("k{i}"), format!("n{i}"));
            sn.prepare(&k, "base", Labels::new()).await?;
            sn.commit(&n, &k, Labels::new()).await?;
            if i % 3 == 0 {
                sn.cleanup().await?;
            }
            sn.remove(&n).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(b.walk(&[]).await.unwrap().len(), 1);
    let entries = std::fs::read_dir(d.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(entries, 1, "only the base directory is left");
}

/// containerd 2.2's rebase: two parentless snapshots, filled independently, committed in
/// order as a chain; the view of the top shows both layers, the parent is recorded, and
/// a snapshot that already has a parent cannot be rebased.
#[tokio::test]
async fn commit_rebase_builds_a_chain() {
    let d = tempfile::tempdir().unwrap();
    let sn = open(d.path(), OverlayOptions::default());
    assert!(sn.can_rebase());
    let mut uppers = Vec::new();
    for (key, file) in [("k1", "one"), ("k2", "two")] {
        let m = sn.prepare(key, "", Labels::new()).await.unwrap();
        let up = upperdir(&m).unwrap();
        std::fs::write(up.join(file), file).unwrap();
        uppers.push(up);
    }
    sn.commit("c1", "k1", Labels::new()).await.unwrap();
    sn.commit_rebase("c2", "k2", "c1", Labels::new())
        .await
        .unwrap();
    assert_eq!(sn.stat("c2").await.unwrap().parent, "c1");
    let m = sn.view("v", "c2", Labels::new()).await.unwrap();
    assert_eq!(
        m[0].lowerdirs(),
        vec![uppers[1].to_str().unwrap(), uppers[0].to_str().unwrap()]
    );
    let seen = crate::mount::with_temp_mount(&m, |root| {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    })
    .unwrap();
    assert_eq!(seen, ["one", "two"]);
    sn.prepare("k3", "c1", Labels::new()).await.unwrap();
    let e = sn
        .commit_rebase("c3", "k3", "c2", Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
}
