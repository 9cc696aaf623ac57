//! Authentication against a real `docker-registry`: htpasswd basic auth (explicit
//! credentials and `~/.docker/config.json`), and the bearer-token flow with a token
//! server (in the test proxy) in front of the registry.

mod registry_common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use registry_common::*;
use strata_image::remote::RegistryOptions;
use strata_image::service::{FetchOptions, PushOptions};

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = std::time::Duration::from_millis(5);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth() {
    let Some(reg) = Registry::start(Some(("alice", "s3cret"))).await else {
        return;
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/a:1", &[20_000], 21).await;
    let remote = format!("{}/private/a:1", reg.addr);

    // No credentials: refused, with a clear message.
    let e = src
        .svc
        .push(
            "local/a:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");
    assert!(e.to_string().contains("401"), "{e}");

    // Wrong password: refused.
    let e = src
        .svc
        .push(
            "local/a:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts().credentials("alice", "nope"),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");

    // Right password: pushed and pulled.
    src.svc
        .push(
            "local/a:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts().credentials("alice", "s3cret"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dst = Env::new();
    let img = dst
        .svc
        .fetch(
            &remote,
            FetchOptions {
                registry: reg_opts().credentials("alice", "s3cret"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(img.target.digest(), manifest.digest());

    // Credentials from a Docker config file.
    let cfgdir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(
        cfgdir.path().join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}/v2/":{{"auth":"{auth}"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    // SAFETY: this binary's only other readers of DOCKER_CONFIG run after this point in
    // this same test (the other test disables the Docker config).
    unsafe { std::env::set_var("DOCKER_CONFIG", cfgdir.path()) };
    let third = Env::new();
    let mut ro = reg_opts();
    ro.docker_config = true;
    let img = third
        .svc
        .fetch(
            &remote,
            FetchOptions {
                registry: ro,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(img.target.digest(), manifest.digest());

    // skopeo reads what we pushed, with the same credentials.
    if have("skopeo") {
        let raw = run(std::process::Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
            &format!("docker://{remote}"),
        ]));
        assert_eq!(
            strata_content::digest::sha256(raw.as_bytes()),
            *manifest.digest()
        );
    }
}

#[derive(Default)]
struct TokenLog {
    posts: usize,
    gets: Vec<String>,
    denied: usize,
}

/// Puts a bearer-token gate on `proxy`: `/token` is the token server (POST answers 404
/// unless `oauth`; GET needs basic `bob:pw`), every `/v2/` request needs its token.
fn bearer_gate(proxy: &Proxy, oauth: bool) -> Arc<Mutex<TokenLog>> {
    let log = Arc::new(Mutex::new(TokenLog::default()));
    let l = log.clone();
    let realm = format!("http://{}/token", proxy.addr);
    let good_basic = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:pw")
    )
    .to_ascii_lowercase();
    proxy.set_gate(move |method, path, head| {
        let lower = head.to_ascii_lowercase();
        let token_json = br#"{"token":"tok-123","expires_in":300}"#.to_vec();
        if path.starts_with("/token") {
            if method == "POST" {
                l.lock().unwrap().posts += 1;
                if oauth {
                    return Some(Action::Reply(200, vec![("Content-Type".into(), "application/json".into())], token_json));
                }
                return Some(Action::Reply(404, vec![], vec![]));
            }
            l.lock().unwrap().gets.push(path.to_string());
            if lower.contains(&format!("authorization: {good_basic}")) {
                return Some(Action::Reply(200, vec![("Content-Type".into(), "application/json".into())], token_json));
            }
            return Some(Action::Reply(401, vec![], b"{}".to_vec()));
        }
        if lower.contains("authorization: bearer tok-123") {
            return None;
        }
        l.lock().unwrap().denied += 1;
        Some(Action::Reply(
            401,
            vec![(
                "WWW-Authenticate".into(),
                format!(r#"Bearer realm="{realm}",service="strata-test",scope="repository:strata/b:pull""#),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        ))
    });
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/b:1", &[30_000, 40_000, 50_000], 31).await;
    src.svc
        .push(
            "local/b:1",
            Some(&format!("{}/strata/b:1", reg.addr)),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let proxy = Proxy::start(&reg.addr).await;
    let remote = format!("{}/strata/b:1", proxy.addr);

    // Token by GET with basic auth after the OAuth POST answers 404; one token for the
    // whole pull (cached per host and scope).
    let log = bearer_gate(&proxy, false);
    let dst = Env::new();
    let fo = FetchOptions {
        registry: reg_opts().credentials("bob", "pw"),
        ..Default::default()
    };
    let img = dst.svc.fetch(&remote, fo).await.unwrap();
    assert_eq!(img.target.digest(), manifest.digest());
    {
        let l = log.lock().unwrap();
        assert_eq!(l.posts, 1, "one OAuth POST");
        assert_eq!(l.gets.len(), 1, "one token GET: {:?}", l.gets);
        assert!(l.gets[0].contains("service=strata-test"), "{:?}", l.gets);
        assert!(
            l.gets[0].contains("scope=repository%3Astrata%2Fb%3Apull"),
            "{:?}",
            l.gets
        );
        assert_eq!(l.denied, 1, "only the first request was challenged");
    }

    // OAuth POST accepted: no GET.
    let log = bearer_gate(&proxy, true);
    let dst = Env::new();
    let fo = FetchOptions {
        registry: reg_opts().credentials("bob", "pw"),
        ..Default::default()
    };
    dst.svc.fetch(&remote, fo).await.unwrap();
    assert_eq!(log.lock().unwrap().posts, 1);
    assert!(log.lock().unwrap().gets.is_empty());

    // Anonymous: the token server refuses, and the error says so.
    bearer_gate(&proxy, false);
    let dst = Env::new();
    let e = dst
        .svc
        .fetch(
            &remote,
            FetchOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");
    assert!(e.to_string().contains("token server"), "{e}");
}
