//! Faults between us and a real `docker-registry`, injected by a proxy: dropped and
//! reset connections and stalled bodies (resumed with `Range`, within a fetch and across
//! fetches), wrong bytes, truncated bodies, 500s, 429 with `Retry-After`, oversized and
//! malformed manifests, schema 1.

mod registry_common;

use registry_common::*;
use strata_content::{Descriptor, IngestManager, Manager};
use strata_image::remote::{ParallelDownload, RegistryOptions};
use strata_image::service::{FetchOptions, PushOptions, ref_key};

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = std::time::Duration::from_millis(5);
    o
}

fn fetch_opts() -> FetchOptions {
    FetchOptions {
        registry: reg_opts(),
        ..Default::default()
    }
}

/// A registry with one image pushed, a proxy in front, and the big (1 MiB) layer.
async fn setup(name: &str) -> Option<(Registry, Proxy, String, Descriptor, Descriptor)> {
    setup_with(name, 1 << 20).await
}

/// As [`setup`], with a big layer of `big` bytes.
async fn setup_with(
    name: &str,
    big: usize,
) -> Option<(Registry, Proxy, String, Descriptor, Descriptor)> {
    let reg = Registry::start(None).await?;
    let proxy = Proxy::start(&reg.addr).await;
    let src = Env::new();
    let (manifest, layers) = build_image(&src, "local/f:1", &[big, 8 * 1024], 3).await;
    src.svc
        .push(
            "local/f:1",
            Some(&format!("{}/strata/{name}:1", reg.addr)),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let remote = format!("{}/strata/{name}:1", proxy.addr);
    Some((reg, proxy, remote, manifest, layers[0].clone()))
}

async fn no_blob_committed(env: &Env, d: &Descriptor) {
    let e = env.content.info(d.digest()).await.unwrap_err();
    assert!(
        e.is_not_found(),
        "{} must not be committed: {e}",
        d.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_resumes_within_one_fetch() {
    let Some((_reg, proxy, remote, _m, big)) = setup("resume1").await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    let mut first = true;
    let h = hex.clone();
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) && first {
            first = false;
            Action::CutAfter(300_000)
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    env.svc.fetch(&remote, fetch_opts()).await.unwrap();
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains(&hex))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].body_bytes, 300_000);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(proxy.served(&hex), big.size(), "every byte crossed once");
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_fetch_rerun_downloads_only_missing_bytes() {
    let Some((_reg, proxy, remote, _m, big)) = setup("resume2").await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    let h = hex.clone();
    let mut n = 0;
    // The first GET of the layer is cut after 400 kB; the registry then "goes away"
    // for that blob (every retry is cut at once), so the fetch fails.
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            n += 1;
            Action::CutAfter(if n == 1 { 400_000 } else { 0 })
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("stopped at byte 400000"), "{e}");
    no_blob_committed(&env, &big).await;
    let st = env.content.status(&ref_key(&big)).await.unwrap();
    assert_eq!(st.offset, 400_000);

    // Re-run with a healthy registry: only the missing bytes move.
    proxy.clear();
    proxy.set_rule(|_, _| Action::Forward);
    env.svc.fetch(&remote, fetch_opts()).await.unwrap();
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains(&hex))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=400000-"));
    assert_eq!(proxy.served(&hex), big.size() - 400_000);
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
    assert!(
        env.content
            .status(&ref_key(&big))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_is_not_committed() {
    let Some((_reg, proxy, remote, _m, big)) = setup("corrupt").await else {
        return;
    };
    let h = big.digest().digest().to_string();
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            Action::Corrupt(1234)
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");
    assert!(e.to_string().contains("bad content"), "{e}");
    no_blob_committed(&env, &big).await;
    // The bad bytes are not kept for a resume.
    assert!(
        env.content
            .status(&ref_key(&big))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        env.images.list::<&str>(&[]).await.unwrap().is_empty(),
        "no image record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_fails_cleanly() {
    let Some((_reg, proxy, remote, _m, big)) = setup("trunc").await else {
        return;
    };
    let h = big.digest().digest().to_string();
    let mut n = 0;
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            n += 1;
            Action::CutAfter(if n == 1 { big_half() } else { 0 })
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(
        e.to_string().contains(&big.digest().to_string()),
        "{e} names the blob"
    );
    no_blob_committed(&env, &big).await;
}

fn big_half() -> u64 {
    500_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_fail_after_retries() {
    let Some((_reg, proxy, remote, _m, big)) = setup("e500").await else {
        return;
    };
    let h = big.digest().digest().to_string();
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            Action::Status(500)
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    let tries = proxy
        .seen()
        .iter()
        .filter(|s| s.path.contains(&big.digest().digest().to_string()))
        .count();
    assert_eq!(tries, 4, "one try and three retries");
    no_blob_committed(&env, &big).await;

    // A transient 500 is retried and the fetch succeeds.
    proxy.clear();
    let h = big.digest().digest().to_string();
    let mut n = 0;
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            n += 1;
            if n == 1 {
                Action::Status(503)
            } else {
                Action::Forward
            }
        } else {
            Action::Forward
        }
    });
    env.svc.fetch(&remote, fetch_opts()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_schema1_manifests() {
    let Some((_reg, proxy, remote, manifest, _big)) = setup("bad").await else {
        return;
    };
    let env = Env::new();

    // A manifest over 4 MiB (HEAD says so; GET would send it).
    let huge = vec![b' '; 5 << 20];
    let hd = strata_content::digest::sha256(&huge).to_string();
    let h2 = huge.clone();
    proxy.set_rule(move |_, p| {
        if p.contains("/manifests/") {
            Action::Respond(
                vec![
                    (
                        "Content-Type".into(),
                        strata_image::media_types::OCI_MANIFEST.into(),
                    ),
                    ("Content-Length".into(), h2.len().to_string()),
                    ("Docker-Content-Digest".into(), hd.clone()),
                ],
                h2.clone(),
            )
        } else {
            Action::Forward
        }
    });
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(e.to_string().contains("limit"), "{e}");

    // Malformed JSON under a manifest type (no digest header: hashed from the body).
    let bad =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":"#
            .to_vec();
    let bd = strata_content::digest::sha256(&bad);
    let b2 = bad.clone();
    proxy.set_rule(move |_, p| {
        if p.contains("/manifests/") {
            Action::Respond(
                vec![
                    (
                        "Content-Type".into(),
                        strata_image::media_types::OCI_MANIFEST.into(),
                    ),
                    ("Content-Length".into(), b2.len().to_string()),
                ],
                b2.clone(),
            )
        } else {
            Action::Forward
        }
    });
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(e.to_string().contains("malformed"), "{e}");
    assert!(env.content.info(&bd).await.unwrap_err().is_not_found());

    // Schema 1.
    let s1 = br#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#.to_vec();
    proxy.set_rule(move |_, p| {
        if p.contains("/manifests/") {
            Action::Respond(
                vec![
                    (
                        "Content-Type".into(),
                        strata_image::media_types::DOCKER_SCHEMA1_MANIFEST_SIGNED.into(),
                    ),
                    ("Content-Length".into(), s1.len().to_string()),
                ],
                s1.clone(),
            )
        } else {
            Action::Forward
        }
    });
    let e = env.svc.fetch(&remote, fetch_opts()).await.unwrap_err();
    assert!(e.is_not_implemented(), "{e}");
    assert!(e.to_string().contains("schema 1"), "{e}");

    // Unknown tag → NotFound naming the reference.
    proxy.set_rule(|_, _| Action::Forward);
    let missing = remote.replace(":1", ":nope");
    let e = env.svc.fetch(&missing, fetch_opts()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(":nope"), "{e}");

    // Nothing was committed by any of the failures; the good image still pulls.
    assert!(env.content.walk(&[]).await.unwrap().is_empty());
    let img = env.svc.fetch(&remote, fetch_opts()).await.unwrap();
    assert_eq!(img.target.digest(), manifest.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_falls_back_to_registry() {
    let Some((reg, proxy, _remote, manifest, _)) = setup("mirror").await else {
        return;
    };
    // A mirror that fails everything, and one that is not listening.
    proxy.set_rule(|_, _| Action::Status(404));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut fo = fetch_opts();
    fo.registry = fo
        .registry
        .mirror(format!("http://{dead}"))
        .mirror(proxy.addr.clone());
    fo.registry.max_retries = 1;
    let env = Env::new();
    let img = env
        .svc
        .fetch(&format!("{}/strata/mirror:1", reg.addr), fo)
        .await
        .unwrap();
    assert_eq!(img.target.digest(), manifest.digest());
    assert!(
        proxy.seen().iter().any(|s| s.path.contains("ns=127.0.0.1")),
        "{:?}",
        proxy.seen()
    );
}

/// GETs of the blob `hex` the proxy saw, in order.
fn blob_gets(proxy: &Proxy, hex: &str) -> Vec<Seen> {
    proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains(hex))
        .collect()
}

/// A rule that applies `first` to the first GET of blob `hex` and forwards the rest.
fn first_get_of(hex: &str, first: Action) -> impl FnMut(&str, &str) -> Action + Send + 'static {
    let (hex, mut pending) = (hex.to_string(), Some(first));
    move |m, p| match (m == "GET" && p.contains(&hex), pending.take()) {
        (true, Some(a)) => a,
        (false, Some(a)) => {
            pending = Some(a);
            Action::Forward
        }
        _ => Action::Forward,
    }
}

/// A rule that applies `action()` to every GET of blob `hex` and forwards the rest.
fn every_get_of(
    hex: &str,
    action: impl Fn() -> Action + Send + 'static,
) -> impl FnMut(&str, &str) -> Action + Send + 'static {
    let hex = hex.to_string();
    move |m, p| match m == "GET" && p.contains(&hex) {
        true => action(),
        false => Action::Forward,
    }
}

/// The issue's field case: a blob download that stops sending after 1 MiB (the
/// connection stays open) completes, with the default settings, by dropping the
/// connection after the idle timeout and resuming with `Range`, in under 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_download_resumes_with_default_settings() {
    let Some((_reg, proxy, remote, _m, big)) = setup_with("stall", 3 << 20).await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    proxy.set_rule(first_get_of(&hex, Action::StallAfter(1 << 20)));
    let env = Env::new();
    let opts = FetchOptions {
        registry: RegistryOptions::default().docker_config(false),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    env.svc.fetch(&remote, opts).await.unwrap();
    let took = t.elapsed();
    assert!(took < std::time::Duration::from_secs(45), "took {took:?}");
    assert!(
        took >= RegistryOptions::default().idle_timeout,
        "took {took:?}"
    );
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].body_bytes, 1 << 20);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1048576-"));
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
}

/// A download that stalls on every try gives up after the retries, naming the blob,
/// the registry and why; the bytes so far stay in a resumable ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_stalling_every_time_fails_naming_the_registry() {
    let Some((_reg, proxy, remote, _m, big)) = setup("stall2").await else {
        return;
    };
    // 100 kB on the first try, then nothing on every retry.
    let (h, mut tries) = (big.digest().digest().to_string(), 0);
    proxy.set_rule(move |m, p| {
        if m == "GET" && p.contains(&h) {
            tries += 1;
            Action::StallAfter(if tries == 1 { 100_000 } else { 0 })
        } else {
            Action::Forward
        }
    });
    let env = Env::new();
    let mut opts = fetch_opts();
    opts.registry.idle_timeout = std::time::Duration::from_millis(300);
    let e = env.svc.fetch(&remote, opts).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no data for 300ms"), "{msg}");
    assert!(msg.contains(&proxy.addr), "names the registry: {msg}");
    assert!(msg.contains("stopped at byte 100000"), "{msg}");
    no_blob_committed(&env, &big).await;
    let st = env.content.status(&ref_key(&big)).await.unwrap();
    assert_eq!(st.offset, 100_000, "resumable from there");
}

/// A response whose headers never come is retried after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_registry_is_retried_after_the_idle_timeout() {
    let Some((_reg, proxy, remote, _m, big)) = setup("silent").await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    // Stalling before the head: the first try gets no response at all.
    proxy.set_gate({
        let (hex, mut first) = (hex.clone(), true);
        move |m, p, _| {
            if m == "GET" && p.contains(&hex) && std::mem::take(&mut first) {
                Some(Action::StallAfter(0))
            } else {
                None
            }
        }
    });
    let env = Env::new();
    let mut opts = fetch_opts();
    opts.registry.idle_timeout = std::time::Duration::from_millis(500);
    env.svc.fetch(&remote, opts).await.unwrap();
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].at - gets[0].at >= std::time::Duration::from_millis(500));
}

/// `429 Too Many Requests` with `Retry-After: 2` is retried after two seconds, not the
/// short backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_waits_for_retry_after() {
    let Some((_reg, proxy, remote, _m, big)) = setup("r429").await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.to_vec();
    let headers = vec![("Retry-After".to_string(), "2".to_string())];
    proxy.set_rule(first_get_of(&hex, Action::Reply(429, headers, body)));
    let env = Env::new();
    env.svc.fetch(&remote, fetch_opts()).await.unwrap();
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), 2, "{gets:?}");
    let waited = gets[1].at - gets[0].at;
    assert!(
        waited >= std::time::Duration::from_secs(2),
        "waited {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(10),
        "waited {waited:?}"
    );
}

/// A connection reset mid-body (RST, not a clean close) resumes with `Range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_resumes() {
    let Some((_reg, proxy, remote, _m, big)) = setup("reset").await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    proxy.set_rule(first_get_of(&hex, Action::ResetAfter(200_000)));
    let env = Env::new();
    env.svc.fetch(&remote, fetch_opts()).await.unwrap();
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        gets[0].body_bytes, 200_000,
        "the proxy sent this much, then RST"
    );
    // An RST may discard bytes the client had not read yet: it resumes from what it got.
    let from = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .map(|n| n.parse::<u64>().unwrap())
        .unwrap_or(0);
    assert!(from <= 200_000, "{gets:?}");
    assert_eq!(proxy.served(&hex), 200_000 + big.size() - from);
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
}

/// Options that split downloads of 1 MiB and more into 1 MiB ranges over `connections`.
fn ranged_opts(connections: usize) -> FetchOptions {
    let mut o = fetch_opts();
    o.registry.parallel_download = ParallelDownload {
        threshold: 1 << 20,
        chunk_size: 1 << 20,
        connections,
    };
    o
}

/// `(start, end)` of each `Range: bytes=a-b` request (`a-`: to `size`), sorted.
fn ranges_of(gets: &[Seen], size: u64) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = gets
        .iter()
        .map(|g| {
            let r = g.range.as_deref().and_then(|r| r.strip_prefix("bytes="));
            let (a, b) = r.and_then(|r| r.split_once('-')).expect("a range");
            let end = if b.is_empty() {
                size
            } else {
                b.parse::<u64>().unwrap() + 1
            };
            (a.parse().unwrap(), end)
        })
        .collect();
    r.sort();
    r
}

/// The 1 MiB ranges of a blob of `size` bytes.
fn mib_ranges(size: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(1 << 20))
        .map(|i| (i << 20, ((i + 1) << 20).min(size)))
        .collect()
}

/// A big blob through a proxy that serves each connection at 4 MB/s: with four ranged
/// connections it comes in well under the time one connection needs, each byte range
/// asked once, and commits with its digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_blob_comes_over_parallel_ranges() {
    let Some((_reg, proxy, remote, _m, big)) = setup_with("ranges", 6 << 20).await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    proxy.set_rule(every_get_of(&hex, || Action::Throttle(4_000_000)));
    let mut took = Vec::new();
    for connections in [1, 4] {
        proxy.clear();
        let env = Env::new();
        let t = std::time::Instant::now();
        env.svc
            .fetch(&remote, ranged_opts(connections))
            .await
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(
            env.content.info(big.digest()).await.unwrap().size,
            big.size()
        );
        let gets = blob_gets(&proxy, &hex);
        if connections == 1 {
            assert_eq!(gets.len(), 1, "{gets:?}");
            assert_eq!(gets[0].range, None);
        } else {
            assert_eq!(ranges_of(&gets, big.size()), mib_ranges(big.size()));
            assert_eq!(proxy.served(&hex), big.size());
            let most = most_at_once(&gets);
            assert!((2..=connections).contains(&most), "{most} at once");
        }
    }
    eprintln!("one connection {:?}, four {:?}", took[0], took[1]);
    assert!(took[1] < took[0] * 6 / 10, "{took:?}");
}

/// A registry that ignores `Range` (answers 200 to the first range) gets one plain
/// download: the rest of that response is used, nothing is asked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_ignoring_ranges_gets_one_download() {
    let Some((_reg, proxy, remote, _m, big)) = setup_with("norange", 3 << 20).await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    proxy.set_rule(every_get_of(&hex, || Action::IgnoreRange));
    let env = Env::new();
    env.svc.fetch(&remote, ranged_opts(4)).await.unwrap();
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=0-1048575"));
    assert_eq!(gets[0].body_bytes, big.size());
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
}

/// One range whose connection is reset resumes alone, from where it stopped, to its own
/// end; the blob commits whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_range_resumes_alone() {
    let Some((_reg, proxy, remote, _m, big)) = setup_with("rangereset", 4 << 20).await else {
        return;
    };
    let hex = big.digest().digest().to_string();
    let (h, mut pending) = (hex.clone(), true);
    proxy.set_gate(move |m, p, head| {
        let third = head
            .to_ascii_lowercase()
            .contains("range: bytes=2097152-3145727");
        (m == "GET" && p.contains(&h) && third && std::mem::take(&mut pending))
            .then_some(Action::ResetAfter(100_000))
    });
    let env = Env::new();
    env.svc.fetch(&remote, ranged_opts(4)).await.unwrap();
    assert_eq!(
        env.content.info(big.digest()).await.unwrap().size,
        big.size()
    );
    let gets = blob_gets(&proxy, &hex);
    assert_eq!(gets.len(), mib_ranges(big.size()).len() + 1, "{gets:?}");
    let again = gets.iter().find(|g| {
        let r = g.range.as_deref().unwrap_or_default();
        r.starts_with("bytes=2") && r.ends_with("-3145727") && r != "bytes=2097152-3145727"
    });
    assert!(
        again.is_some(),
        "the reset range resumed from its offset: {gets:?}"
    );
    assert!(proxy.served(&hex) <= big.size() + 100_000);
}
