//! `SSL_CERT_FILE` is honoured: the system roots a registry client trusts can be
//! replaced by a file, as with OpenSSL and Go. Its own test binary, since it sets the
//! variable for the whole process.

#[path = "registry_common/pki.rs"]
mod pki;
mod registry_common;

use registry_common::*;
use strata_image::remote::{ProxyConfig, RegistryOptions};
use strata_image::service::{FetchOptions, PushOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_replaces_system_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(tmp.path(), "env-ca");
    let server = ca.server("registry");
    let conf = RegistryConf {
        tls: Some((server.cert.clone(), server.key.clone())),
        ..Default::default()
    };
    let Some(reg) = Registry::start_with(&conf).await else {
        return;
    };
    // HTTPS to the loopback registry by hosts.toml, with no CA of its own.
    let dir = tmp.path().join("certs.d");
    std::fs::create_dir_all(dir.join(&reg.addr)).unwrap();
    std::fs::write(
        dir.join(&reg.addr).join("hosts.toml"),
        format!("server = \"https://{}\"\n", reg.addr),
    )
    .unwrap();
    let opts = || {
        RegistryOptions::default()
            .docker_config(false)
            .proxy(ProxyConfig::none())
            .hosts_dir(&dir)
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/e:1", &[5_000], 81).await;
    let remote = format!("{}/env/e:1", reg.addr);
    let push = |registry: RegistryOptions| {
        src.svc.push(
            "local/e:1",
            Some(&remote),
            PushOptions {
                registry,
                ..Default::default()
            },
        )
    };
    let e = push(opts()).await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // SAFETY: the only test of this binary; no other thread reads the environment now.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca.cert) };
    push(opts()).await.unwrap();
    let dst = Env::new();
    let img = dst
        .svc
        .fetch(
            &remote,
            FetchOptions {
                registry: opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(img.target.digest(), manifest.digest());
}
