use super::*;
use crate::platforms::{only, parse};
use crate::test_fixtures::{desc, open, put, put_index, put_manifest};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use strata_content::local::LocalStore;

fn digests(ds: &[Descriptor]) -> Vec<String> {
    ds.iter().map(|d| d.digest().to_string()).collect()
}

#[tokio::test]
async fn children_of_each_kind() {
    let (_dir, store) = open();
    for docker in [false, true] {
        let m = put_manifest(&store, "linux/amd64", 2, docker).await;
        let got = children(&store, &m.manifest).await.unwrap();
        let mut want = vec![m.config.clone()];
        want.extend(m.layers.clone());
        assert_eq!(got, want);
        let idx = put_index(&store, &[(m.manifest.clone(), Some("linux/amd64"))], docker).await;
        let got = children(&store, &idx).await.unwrap();
        assert_eq!(digests(&got), digests(std::slice::from_ref(&m.manifest)));
        assert_eq!(
            platforms::of_descriptor(&got[0]),
            Some(parse("linux/amd64").unwrap())
        );
        assert!(children(&store, &m.layers[0]).await.unwrap().is_empty());
        assert!(children(&store, &m.config).await.unwrap().is_empty());
    }
    // Unknown types have no children.
    let other = put(&store, "application/x-whatever", b"data").await;
    assert!(children(&store, &other).await.unwrap().is_empty());
}

#[tokio::test]
async fn children_errors() {
    let (_dir, store) = open();
    let s1 = desc(mt::DOCKER_SCHEMA1_MANIFEST_SIGNED, b"{}");
    let e = children(&store, &s1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
    assert!(e.to_string().contains("schema 1"), "{e}");

    let missing = desc(mt::OCI_MANIFEST, b"{}");
    assert!(children(&store, &missing).await.unwrap_err().is_not_found());

    let bad = put(&store, mt::OCI_MANIFEST, b"{\"schemaVersion\":2,").await;
    let e = children(&store, &bad).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(e.to_string().contains(&bad.digest().to_string()), "{e}");

    // A manifest's bytes under an index media type.
    let m = put_manifest(&store, "linux/amd64", 1, false).await;
    let raw = strata_content::helpers::read_blob(&store, &m.manifest)
        .await
        .unwrap();
    let as_index = put(&store, mt::OCI_INDEX, &raw).await;
    let e = children(&store, &as_index).await.unwrap_err();
    assert!(
        e.is_invalid_argument() && e.to_string().contains("found a manifest"),
        "{e}"
    );
}

fn recorder(seen: Arc<Mutex<Vec<String>>>, provider: LocalStore) -> Arc<dyn Handler> {
    Arc::new(handler_fn(move |d: Descriptor| {
        let seen = seen.clone();
        let provider = provider.clone();
        async move {
            seen.lock().unwrap().push(d.digest().to_string());
            children(&provider, &d).await
        }
    }))
}

#[tokio::test]
async fn walk_is_depth_first_and_skips() {
    let (_dir, store) = open();
    let a = put_manifest(&store, "linux/amd64", 2, false).await;
    let b = put_manifest(&store, "linux/arm64", 1, false).await;
    let idx = put_index(
        &store,
        &[
            (a.manifest.clone(), Some("linux/amd64")),
            (b.manifest.clone(), Some("linux/arm64")),
        ],
        false,
    )
    .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    walk(recorder(seen.clone(), store.clone()), vec![idx.clone()])
        .await
        .unwrap();
    let mut want = vec![idx.clone(), a.manifest.clone(), a.config.clone()];
    want.extend(a.layers.clone());
    want.extend([b.manifest.clone(), b.config.clone()]);
    want.extend(b.layers.clone());
    assert_eq!(*seen.lock().unwrap(), digests(&want));

    // skip_desc on a's manifest prunes its subtree only.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let skip = a.manifest.digest().clone();
    let inner = recorder(seen.clone(), store.clone());
    let h: Arc<dyn Handler> = Arc::new(handler_fn(move |d: Descriptor| {
        let inner = inner.clone();
        let skip = skip.clone();
        async move {
            let c = inner.handle(&d).await?;
            if d.digest() == &skip {
                Err(skip_desc())
            } else {
                Ok(c)
            }
        }
    }));
    walk(h, vec![idx.clone()]).await.unwrap();
    let got = seen.lock().unwrap().clone();
    assert!(got.contains(&a.manifest.digest().to_string()));
    assert!(!got.contains(&a.config.digest().to_string()));
    assert!(got.contains(&b.config.digest().to_string()));

    // Any other error stops the walk.
    let fail: Arc<dyn Handler> = Arc::new(handler_fn(|_d: Descriptor| async {
        Err(Error::internal("boom"))
    }));
    assert_eq!(walk(fail, vec![idx]).await.unwrap_err().message(), "boom");
}

#[tokio::test]
async fn handlers_chain_concatenates_and_stops() {
    let one = desc(mt::OCI_LAYER, b"1");
    let two = desc(mt::OCI_LAYER, b"2");
    let calls = Arc::new(AtomicUsize::new(0));
    let mk = |ret: Option<Descriptor>, stop: bool, calls: Arc<AtomicUsize>| -> Arc<dyn Handler> {
        Arc::new(handler_fn(move |_d: Descriptor| {
            let ret = ret.clone();
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if stop {
                    Err(stop_handler())
                } else {
                    Ok(ret.into_iter().collect())
                }
            }
        }))
    };
    let h = handlers(vec![
        mk(Some(one.clone()), false, calls.clone()),
        mk(Some(two.clone()), false, calls.clone()),
        mk(None, true, calls.clone()),
        mk(Some(one.clone()), false, calls.clone()),
    ]);
    let got = h.handle(&desc(mt::OCI_MANIFEST, b"m")).await.unwrap();
    assert_eq!(got, vec![one.clone(), two]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the handler after the stop is not called"
    );
    assert!(is_stop_handler(&stop_handler()) && !is_stop_handler(&skip_desc()));
    assert!(is_skip_desc(&skip_desc()) && !is_skip_desc(&Error::cancelled("x")));
    let failing = handlers(vec![Arc::new(handler_fn(|_d: Descriptor| async {
        Err(Error::not_found("gone"))
    }))]);
    assert!(failing.handle(&one).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_is_bounded_and_concurrent() {
    let leaves: Vec<Descriptor> = (0..8).map(|i| desc(mt::OCI_LAYER, &[i])).collect();
    let root = desc(mt::OCI_MANIFEST, b"root");
    let (running, peak, visited) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (r, p, v, l, rootd) = (
        running.clone(),
        peak.clone(),
        visited.clone(),
        leaves.clone(),
        root.clone(),
    );
    let h: Arc<dyn Handler> = Arc::new(handler_fn(move |d: Descriptor| {
        let (r, p, v, l, rootd) = (r.clone(), p.clone(), v.clone(), l.clone(), rootd.clone());
        async move {
            v.fetch_add(1, Ordering::SeqCst);
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(if d == rootd { l } else { vec![] })
        }
    }));
    dispatch(
        h.clone(),
        Some(Arc::new(Semaphore::new(3))),
        vec![root.clone()],
    )
    .await
    .unwrap();
    assert_eq!(visited.load(Ordering::SeqCst), 9);
    let pk = peak.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&pk),
        "peak concurrency {pk} should be bounded by 3 and > 1"
    );

    peak.store(0, Ordering::SeqCst);
    dispatch(h, None, vec![root]).await.unwrap();
    assert!(
        peak.load(Ordering::SeqCst) > 3,
        "unbounded dispatch runs all siblings at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_first_error_cancels_the_rest() {
    let slow_done = Arc::new(AtomicBool::new(false));
    let sd = slow_done.clone();
    let bad = desc(mt::OCI_LAYER, b"bad");
    let skip = desc(mt::OCI_LAYER, b"skip");
    let (b, s) = (bad.clone(), skip.clone());
    let h: Arc<dyn Handler> = Arc::new(handler_fn(move |d: Descriptor| {
        let (sd, b, s) = (sd.clone(), b.clone(), s.clone());
        async move {
            if d == b {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(Error::failed_precondition("bad blob"));
            }
            if d == s {
                return Err(skip_desc());
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            sd.store(true, Ordering::SeqCst);
            Ok(vec![])
        }
    }));
    let start = std::time::Instant::now();
    let slow = desc(mt::OCI_LAYER, b"slow");
    let e = dispatch(h.clone(), None, vec![slow, bad, skip.clone()])
        .await
        .unwrap_err();
    assert_eq!(e.message(), "bad blob");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the slow sibling was cancelled"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!slow_done.load(Ordering::SeqCst));
    // skip_desc alone is not an error.
    dispatch(h, None, vec![skip]).await.unwrap();
}

#[tokio::test]
async fn gc_labels_on_parents() {
    let (_dir, store) = open();
    let a = put_manifest(&store, "linux/amd64", 2, false).await;
    let b = put_manifest(&store, "linux/arm64", 1, true).await;
    let idx = put_index(
        &store,
        &[
            (a.manifest.clone(), Some("linux/amd64")),
            (b.manifest.clone(), Some("linux/arm64")),
        ],
        false,
    )
    .await;
    let provider: Arc<dyn Provider> = Arc::new(store.clone());
    let manager: Arc<dyn Manager> = Arc::new(store.clone());
    let h: Arc<dyn Handler> = Arc::new(set_children_labels(
        manager.clone(),
        Arc::new(children_handler(provider.clone())),
    ));
    walk(h, vec![idx.clone()]).await.unwrap();
    let l = |k: &str| format!("containerd.io/gc.ref.content.{k}");
    let info = store.info(idx.digest()).await.unwrap();
    assert_eq!(
        info.labels.get(&l("m.0")),
        Some(&a.manifest.digest().to_string())
    );
    assert_eq!(
        info.labels.get(&l("m.1")),
        Some(&b.manifest.digest().to_string())
    );
    let info = store.info(a.manifest.digest()).await.unwrap();
    assert_eq!(
        info.labels.get(&l("config")),
        Some(&a.config.digest().to_string())
    );
    assert_eq!(
        info.labels.get(&l("l.0")),
        Some(&a.layers[0].digest().to_string())
    );
    assert_eq!(
        info.labels.get(&l("l.1")),
        Some(&a.layers[1].digest().to_string())
    );
    assert_eq!(info.labels.len(), 3);
    let info = store.info(b.manifest.digest()).await.unwrap();
    assert_eq!(
        info.labels.get(&l("l.0")),
        Some(&b.layers[0].digest().to_string())
    );

    // The layer-less variant, on a fresh manifest.
    let c = put_manifest(&store, "linux/s390x", 2, false).await;
    let h: Arc<dyn Handler> = Arc::new(set_children_mapped_labels(
        manager,
        Arc::new(children_handler(provider)),
        child_gc_labels_filter_layers,
    ));
    walk(h, vec![c.manifest.clone()]).await.unwrap();
    let info = store.info(c.manifest.digest()).await.unwrap();
    assert_eq!(
        info.labels.keys().cloned().collect::<Vec<_>>(),
        vec![l("config")]
    );

    // Nested index and unknown children get plain numbered keys.
    let other = desc("application/x-other", b"x");
    let labels = children_labels(
        &[idx.clone(), other.clone(), a.config.clone()],
        child_gc_labels,
    );
    assert_eq!(labels.get(&l("0")), Some(&idx.digest().to_string()));
    assert_eq!(labels.get(&l("1")), Some(&other.digest().to_string()));
    assert_eq!(
        labels.get(&l("config")),
        Some(&a.config.digest().to_string())
    );
}

#[tokio::test]
async fn filter_and_limit_platforms() {
    let (_dir, store) = open();
    let arm = put_manifest(&store, "linux/arm64", 1, false).await;
    let amd = put_manifest(&store, "linux/amd64", 1, false).await;
    let none = put_manifest(&store, "linux/ppc64le", 1, false).await;
    let idx = put_index(
        &store,
        &[
            (none.manifest.clone(), None),
            (arm.manifest.clone(), Some("linux/arm64")),
            (amd.manifest.clone(), Some("linux/amd64")),
        ],
        true,
    )
    .await;
    let provider: Arc<dyn Provider> = Arc::new(store.clone());
    let base: Arc<dyn Handler> = Arc::new(children_handler(provider));

    let m = Arc::new(only(parse("linux/amd64").unwrap()));
    let filtered: Arc<dyn Handler> = Arc::new(filter_platforms(base.clone(), m.clone()));
    let got = filtered.handle(&idx).await.unwrap();
    assert_eq!(
        digests(&got),
        digests(&[none.manifest.clone(), amd.manifest.clone()])
    );

    let limited = limit_manifests(filtered.clone(), m.clone(), 1);
    assert_eq!(
        digests(&limited.handle(&idx).await.unwrap()),
        digests(std::slice::from_ref(&amd.manifest))
    );
    // n = 0: sorted, not cut; platform-less entries last.
    let sorted = limit_manifests(
        base.clone(),
        Arc::new(platforms::ordered(vec![
            parse("linux/amd64").unwrap(),
            parse("linux/arm64").unwrap(),
        ])),
        0,
    );
    assert_eq!(
        digests(&sorted.handle(&idx).await.unwrap()),
        digests(&[
            amd.manifest.clone(),
            arm.manifest.clone(),
            none.manifest.clone()
        ])
    );
    // Manifests are not limited.
    let lm = limit_manifests(base.clone(), m.clone(), 1);
    assert_eq!(lm.handle(&amd.manifest).await.unwrap().len(), 2);

    // Nothing matches: NotFound.
    let s390 = Arc::new(only(parse("linux/s390x").unwrap()));
    let idx2 = put_index(
        &store,
        &[(arm.manifest.clone(), Some("linux/arm64"))],
        false,
    )
    .await;
    let h = limit_manifests(Arc::new(filter_platforms(base, s390.clone())), s390, 1);
    let e = h.handle(&idx2).await.unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().contains("no match for platform"),
        "{e}"
    );
}
