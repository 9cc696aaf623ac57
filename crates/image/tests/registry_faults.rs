//! Faults between us and a real `docker-registry`, injected by a proxy: dropped
//! connections (resumed with `Range`, within a fetch and across fetches), wrong bytes,
//! truncated bodies, 500s, oversized and malformed manifests, schema 1.

mod registry_common;

use registry_common::*;
use strata_content::{Descriptor, IngestManager, Manager};
use strata_image::remote::RegistryOptions;
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

/// A registry with one image pushed, a proxy in front, and the big layer.
async fn setup(name: &str) -> Option<(Registry, Proxy, String, Descriptor, Descriptor)> {
    let reg = Registry::start(None).await?;
    let proxy = Proxy::start(&reg.addr).await;
    let src = Env::new();
    let (manifest, layers) = build_image(&src, "local/f:1", &[1 << 20, 8 * 1024], 3).await;
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
