//! The registry client against real servers on loopback, configured as users configure
//! them: Debian's `docker-registry` serving TLS with a CA made here (given by option,
//! by a `hosts.toml` directory, by Docker's `certs.d` files), requiring client
//! certificates (mTLS), in its own `auth: token` mode with a token server that signs
//! real JWTs; credentials from a `docker-credential-*` helper named by `credHelpers`;
//! and a real forward proxy (`tinyproxy`).

mod registry_common;
// Only this test uses them (their crates are strata-image's dev-dependencies alone).
#[path = "registry_common/pki.rs"]
mod pki;
#[path = "registry_common/token_server.rs"]
mod token_server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pki::{Ca, Signer};
use registry_common::*;
use strata_content::Descriptor;
use strata_image::remote::{CredentialSources, ProxyConfig, RegistryOptions, TlsConfig};
use strata_image::service::{FetchOptions, PushOptions};
use token_server::{ISSUER, SERVICE, TokenServer};

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default()
        .docker_config(false)
        .proxy(ProxyConfig::none());
    o.retry_delay = Duration::from_millis(5);
    o.max_retries = 1;
    o
}

fn ca_opts(ca: &Path) -> RegistryOptions {
    reg_opts().tls(TlsConfig {
        ca: vec![ca.to_path_buf()],
        ..Default::default()
    })
}

async fn push(
    env: &Env,
    local: &str,
    remote: &str,
    registry: RegistryOptions,
) -> strata_content::Result<()> {
    env.svc
        .push(
            local,
            Some(remote),
            PushOptions {
                registry,
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
}

async fn pull(remote: &str, registry: RegistryOptions) -> strata_content::Result<Descriptor> {
    let dst = Env::new();
    let img = dst
        .svc
        .fetch(
            remote,
            FetchOptions {
                registry,
                ..Default::default()
            },
        )
        .await?;
    Ok(img.target)
}

/// `DIR/<host:port>/hosts.toml` with `text`; returns DIR.
fn hosts_dir(root: &Path, host: &str, text: &str) -> PathBuf {
    let dir = root.join("certs.d");
    std::fs::create_dir_all(dir.join(host)).unwrap();
    std::fs::write(dir.join(host).join("hosts.toml"), text).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_private_ca_and_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "test-ca");
    let server = ca.server("registry");
    let conf = RegistryConf {
        tls: Some((server.cert.clone(), server.key.clone())),
        htpasswd: Some(("alice".into(), "s3cret".into())),
        ..Default::default()
    };
    let Some(reg) = Registry::start_with(&conf).await else {
        return;
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/a:1", &[40_000, 3_000], 31).await;
    let remote = format!("{}/tls/a:1", reg.addr);

    // The CA by option (ctr --tlscacert): a loopback host with TLS settings is HTTPS.
    push(
        &src,
        "local/a:1",
        &remote,
        ca_opts(&ca.cert).credentials("alice", "s3cret"),
    )
    .await
    .unwrap();
    let got = pull(&remote, ca_opts(&ca.cert).credentials("alice", "s3cret")).await;
    assert_eq!(got.unwrap().digest(), manifest.digest());

    // The CA by a hosts.toml directory (relative path), and by Docker's certs.d files.
    let dir = hosts_dir(tmp.path(), &reg.addr, "ca = \"ca.pem\"\n");
    std::fs::copy(&ca.cert, dir.join(&reg.addr).join("ca.pem")).unwrap();
    let by_hosts = reg_opts().hosts_dir(&dir).credentials("alice", "s3cret");
    assert_eq!(
        pull(&remote, by_hosts).await.unwrap().digest(),
        manifest.digest()
    );
    let certs_d = tmp.path().join("docker-certs.d");
    std::fs::create_dir_all(certs_d.join(&reg.addr)).unwrap();
    std::fs::copy(&ca.cert, certs_d.join(&reg.addr).join("ca.crt")).unwrap();
    let by_certs = reg_opts()
        .hosts_dir(&certs_d)
        .credentials("alice", "s3cret");
    assert_eq!(
        pull(&remote, by_certs).await.unwrap().digest(),
        manifest.digest()
    );

    // Nothing configured: a loopback host is plain HTTP, and the error says what to do.
    let e = pull(&remote, reg_opts()).await.unwrap_err().to_string();
    assert!(e.contains("serves HTTPS") && e.contains(&reg.addr), "{e}");

    // HTTPS without the CA: a certificate error that names the host.
    let no_ca = hosts_dir(
        &tmp.path().join("no-ca"),
        &reg.addr,
        &format!("server = \"https://{}\"\n", reg.addr),
    );
    let e = pull(
        &remote,
        reg_opts().hosts_dir(no_ca).credentials("alice", "s3cret"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&reg.addr), "{e}");
    assert!(e.contains("certificate"), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A push without it fails the same way.
    let opts = reg_opts().tls(TlsConfig {
        ca: vec![
            tmp.path()
                .join("no-ca/certs.d")
                .join(&reg.addr)
                .join("hosts.toml"),
        ],
        ..Default::default()
    });
    let e = push(&src, "local/a:1", &remote, opts).await.unwrap_err();
    assert!(e.to_string().contains("CA certificate"), "{e}");
    // skip_verify gets through (and the password is still checked).
    let skip = reg_opts().tls(TlsConfig {
        skip_verify: true,
        ..Default::default()
    });
    let e = pull(&remote, skip.clone()).await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    let got = pull(&remote, skip.credentials("alice", "s3cret")).await;
    assert_eq!(got.unwrap().digest(), manifest.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "mtls-ca");
    let server = ca.server("registry");
    let client = ca.client("client");
    let conf = RegistryConf {
        tls: Some((server.cert.clone(), server.key.clone())),
        client_cas: vec![ca.cert.clone()],
        ..Default::default()
    };
    let Some(reg) = Registry::start_with(&conf).await else {
        return;
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/m:1", &[10_000], 41).await;
    let remote = format!("{}/mtls/m:1", reg.addr);
    let with_cert = |o: RegistryOptions| {
        o.tls(TlsConfig {
            ca: vec![ca.cert.clone()],
            client: vec![(client.cert.clone(), Some(client.key.clone()))],
            skip_verify: false,
        })
    };

    // Without a client certificate the handshake is refused.
    let e = push(&src, "local/m:1", &remote, ca_opts(&ca.cert))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&reg.addr), "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    // With it (ctr --tlscert/--tlskey), push and pull work.
    push(&src, "local/m:1", &remote, with_cert(reg_opts()))
        .await
        .unwrap();
    let got = pull(&remote, with_cert(reg_opts())).await.unwrap();
    assert_eq!(got.digest(), manifest.digest());

    // And from hosts.toml: `client = [[cert, key]]` next to `ca`.
    let text = format!(
        "ca = {:?}\nclient = [[{:?}, {:?}]]\n",
        ca.cert, client.cert, client.key
    );
    let dir = hosts_dir(tmp.path(), &reg.addr, &text);
    let got = pull(&remote, reg_opts().hosts_dir(dir)).await.unwrap();
    assert_eq!(got.digest(), manifest.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_anonymous_pull_and_scoped_push() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = Signer::new(tmp.path());
    let tokens = TokenServer::start(&signer, "bob", "hunter2").await;
    let conf = RegistryConf {
        token: Some(TokenConf {
            realm: tokens.realm.clone(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: signer.bundle.clone(),
        }),
        ..Default::default()
    };
    let Some(reg) = Registry::start_with(&conf).await else {
        return;
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/t:1", &[12_000], 51).await;
    let remote = format!("{}/team/t:1", reg.addr);

    // Anonymous: the token grants pull only, so the push is refused.
    let e = push(&src, "local/t:1", &remote, reg_opts())
        .await
        .unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");

    // Authenticated: the token server grants the push scope.
    push(
        &src,
        "local/t:1",
        &remote,
        reg_opts().credentials("bob", "hunter2"),
    )
    .await
    .unwrap();
    let pushed: Vec<_> = tokens
        .grants()
        .into_iter()
        .filter(|g| g.account.as_deref() == Some("bob"))
        .collect();
    assert!(
        pushed
            .iter()
            .any(|g| g.scopes.iter().any(|s| s == "repository:team/t:pull,push")),
        "{pushed:?}"
    );

    // Anonymous pull with a real, verified JWT.
    let before = tokens.grants().len();
    let got = pull(&remote, reg_opts()).await.unwrap();
    assert_eq!(got.digest(), manifest.digest());
    let anon: Vec<_> = tokens.grants()[before..].to_vec();
    assert!(
        !anon.is_empty() && anon.iter().all(|g| g.account.is_none()),
        "{anon:?}"
    );

    // Wrong password: the token server refuses, and the error says so.
    let e = pull(&remote, reg_opts().credentials("bob", "nope"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("token server"), "{e}");
}

fn helper_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_helper_from_docker_config() {
    let Some(reg) = Registry::start(Some(("carol", "pa55"))).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("helper.log");
    helper_script(
        &bin,
        "strata-test",
        &format!(
            "[ \"$1\" = get ] || exit 2\nread host\necho \"$host\" >> {}\n\
             echo '{{\"ServerURL\":\"'$host'\",\"Username\":\"carol\",\"Secret\":\"pa55\"}}'",
            log.display()
        ),
    );
    helper_script(&bin, "broken", "echo 'vault sealed' >&2; exit 1");
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{}},"credHelpers":{{"{}":"strata-test"}},"credsStore":"broken"}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let mut opts = reg_opts();
    opts.docker_config = true;
    opts.credential_sources = CredentialSources {
        docker_config: Some(config.clone()),
        auth_json: Some(tmp.path().join("no-auth.json")),
        helper_dir: Some(bin.clone()),
    };
    let src = Env::new();
    let (manifest, _) = build_image(&src, "local/h:1", &[8_000], 61).await;
    let remote = format!("{}/helped/h:1", reg.addr);
    push(&src, "local/h:1", &remote, opts.clone())
        .await
        .unwrap();
    assert_eq!(
        pull(&remote, opts.clone()).await.unwrap().digest(),
        manifest.digest()
    );
    let asked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(asked.lines().next(), Some(reg.addr.as_str()));
    assert_eq!(
        asked.lines().count(),
        1,
        "answers are cached per process: {asked}"
    );

    // A failing helper (the credsStore, for a host without its own) is named.
    std::fs::write(&config, br#"{"auths":{},"credsStore":"broken"}"#).unwrap();
    let e = pull(&remote, opts).await.unwrap_err().to_string();
    assert!(
        e.contains("docker-credential-broken") && e.contains("vault sealed"),
        "{e}"
    );
}

/// A `tinyproxy` on a free loopback port logging every request; killed on drop.
struct Tinyproxy {
    addr: String,
    log: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    async fn start() -> Option<Tinyproxy> {
        if !have("tinyproxy") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\nConnectPort 443\n",
                log.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let tp = Tinyproxy {
            addr: format!("127.0.0.1:{port}"),
            log,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&tp.addr).await.is_ok() {
                return Some(tp);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tinyproxy did not listen on {}", tp.addr);
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxy_from_http_proxy() {
    let Some(proxy) = Tinyproxy::start().await else {
        return;
    };
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let src = Env::new();
    let (manifest, layers) = build_image(&src, "local/p:1", &[9_000], 71).await;
    let remote = format!("{}/proxied/p:1", reg.addr);
    push(&src, "local/p:1", &remote, reg_opts()).await.unwrap();

    // HTTP_PROXY with an empty NO_PROXY: even loopback goes through the proxy.
    let url = format!("http://{}", proxy.addr);
    let env = ProxyConfig::from_vars(|k| match k {
        "HTTP_PROXY" => Some(url.clone()),
        "NO_PROXY" => Some(String::new()),
        _ => None,
    });
    let got = pull(&remote, reg_opts().proxy(env)).await.unwrap();
    assert_eq!(got.digest(), manifest.digest());
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    let blob = format!("/v2/proxied/p/blobs/{}", layers[0].digest());
    assert!(log.contains(&blob), "tinyproxy did not see {blob}:\n{log}");

    // Without NO_PROXY, loopback registries are reached directly (as Go's net/http).
    let direct = ProxyConfig::from_vars(|k| (k == "HTTP_PROXY").then(|| url.clone()));
    let seen = log.matches("/v2/").count();
    assert_eq!(pull(&remote, reg_opts().proxy(direct)).await.unwrap(), got);
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    assert_eq!(log.matches("/v2/").count(), seen, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pull_names_every_host_tried() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    // A mirror nobody listens on, then the registry, which lacks the image.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mirror = dead.local_addr().unwrap().to_string();
    drop(dead);
    let remote = format!("{}/absent/x:1", reg.addr);
    let e = pull(&remote, reg_opts().mirror(mirror.clone()))
        .await
        .unwrap_err();
    let s = e.to_string();
    assert!(s.contains(&format!("mirror http://{mirror}")), "{s}");
    assert!(s.contains(&format!("registry http://{}", reg.addr)), "{s}");
    assert!(
        e.is_not_found(),
        "the last host's answer decides the kind: {s}"
    );
}
