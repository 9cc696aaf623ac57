//! Test helpers for the registry tests: a real Debian `docker-registry` on a free
//! loopback port (killed on drop), a counting/cutting HTTP proxy in front of it, and
//! images built from real tar+gzip layers.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_content::digest::sha256;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Store};
use strata_image::image::Image;
use strata_image::media_types as mt;
use strata_image::service::ImageService;
use strata_image::store::ImageStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Whether `tool` is on PATH; when it is not, prints a skip message, or panics when
/// `STRATA_REQUIRE_PEERS=1`.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{tool} is required (STRATA_REQUIRE_PEERS=1) but missing");
        }
        eprintln!("SKIP: {tool} not installed");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` process with its own storage; killed on drop.
pub struct Registry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `auth` = (user, password) enables htpasswd basic auth.
    /// `None` when docker-registry is missing (and peers are not required).
    pub async fn start(auth: Option<(&str, &str)>) -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth_conf = String::new();
        if let Some((u, p)) = auth {
            let hash = bcrypt::hash(p, 4).unwrap();
            let hp = dir.path().join("htpasswd");
            std::fs::write(&hp, format!("{u}:{hash}\n")).unwrap();
            auth_conf = format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                hp.display()
            );
        }
        let conf = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n{auth_conf}",
            dir.path().join("data").display()
        );
        Some(Registry::spawn(dir, addr, &conf).await)
    }

    /// Starts a registry configured by `conf` (TLS, client certificates, token auth,
    /// htpasswd). `None` when docker-registry is missing (and peers are not required).
    pub async fn start_with(conf: &RegistryConf) -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n{}{}",
            dir.path().join("data").display(),
            conf.tls_yaml(),
            conf.auth_yaml(dir.path()),
        );
        Some(Registry::spawn(dir, addr, &yaml).await)
    }

    async fn spawn(dir: tempfile::TempDir, addr: String, conf: &str) -> Registry {
        let cp = dir.path().join("config.yml");
        std::fs::write(&cp, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cp)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            addr: addr.clone(),
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if TcpStream::connect(&addr).await.is_ok() {
                return reg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not listen on {addr}");
    }
}

/// How [`Registry::start_with`] configures a registry.
#[derive(Default)]
pub struct RegistryConf {
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require client certificates signed by these CAs (`http.tls.clientcas`).
    pub client_cas: Vec<PathBuf>,
    /// htpasswd basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// The registry's `auth: token` mode.
    pub token: Option<TokenConf>,
}

/// The `auth.token` settings of a registry.
pub struct TokenConf {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificates whose keys may sign tokens.
    pub rootcertbundle: PathBuf,
}

impl RegistryConf {
    fn tls_yaml(&self) -> String {
        let Some((cert, key)) = &self.tls else {
            return String::new();
        };
        let mut y = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        if !self.client_cas.is_empty() {
            y.push_str("    clientcas:\n");
            for c in &self.client_cas {
                y.push_str(&format!("      - {}\n", c.display()));
            }
        }
        y
    }

    fn auth_yaml(&self, dir: &Path) -> String {
        if let Some(t) = &self.token {
            return format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.rootcertbundle.display()
            );
        }
        let Some((u, p)) = &self.htpasswd else {
            return String::new();
        };
        let hp = dir.join("htpasswd");
        std::fs::write(&hp, format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap())).unwrap();
        format!(
            "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
            hp.display()
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Pass through.
    Forward,
    /// Pass the head and the first `n` body bytes, then drop the connection.
    CutAfter(u64),
    /// Pass the head and the first `n` body bytes, then send nothing more while keeping
    /// the connection open (a stalled download).
    StallAfter(u64),
    /// Pass the head and the first `n` body bytes, then reset the connection (RST).
    ResetAfter(u64),
    /// Pass through with one body byte flipped at offset `n`.
    Corrupt(u64),
    /// Answer with this status and an empty JSON error body.
    Status(u16),
    /// Answer 200 with these headers and body (for HEAD, headers only).
    Respond(Vec<(String, String)>, Vec<u8>),
    /// Answer with this status, headers and body.
    Reply(u16, Vec<(String, String)>, Vec<u8>),
    /// Pass through at this many body bytes per second (a per-connection limit, as
    /// CDNs impose).
    Throttle(u64),
    /// Forward without the `Range` header (a registry that ignores ranges).
    IgnoreRange,
}

/// One request seen by the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// When the request arrived.
    pub at: std::time::Instant,
    /// Response body bytes passed to the client.
    pub body_bytes: u64,
    /// When the proxy began passing on the last body bytes (or the proxied response
    /// ended, without a body): never after the client could have read them all. `None`
    /// while nothing was sent, and for answers the proxy made itself.
    pub done: Option<std::time::Instant>,
}

/// The most of `requests` that were open at one time (from arrival to the sending of
/// their last bytes).
pub fn most_at_once(requests: &[Seen]) -> usize {
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for r in requests {
        edges.push((r.at, 1));
        edges.push((r.done.unwrap_or_else(std::time::Instant::now), -1));
    }
    edges.sort();
    let (mut open, mut most) = (0, 0);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

type Rule = Box<dyn FnMut(&str, &str) -> Action + Send>;
type Gate = Box<dyn FnMut(&str, &str, &str) -> Option<Action> + Send>;

/// A one-request-per-connection HTTP proxy in front of a registry that counts response
/// body bytes per request and can cut, corrupt or replace responses.
pub struct Proxy {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    rule: Arc<Mutex<Rule>>,
    gate: Arc<Mutex<Option<Gate>>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Mutex<Rule>> =
            Arc::new(Mutex::new(Box::new(|_: &str, _: &str| Action::Forward)));
        let gate: Arc<Mutex<Option<Gate>>> = Arc::new(Mutex::new(None));
        let (s2, r2, g2, up) = (
            seen.clone(),
            rule.clone(),
            gate.clone(),
            upstream.to_string(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else { return };
                let (s, r, g, up) = (s2.clone(), r2.clone(), g2.clone(), up.clone());
                tokio::spawn(async move {
                    let _ = handle(c, &up, s, r, g).await;
                });
            }
        });
        Proxy {
            addr,
            seen,
            rule,
            gate,
        }
    }

    /// Sets the rule: `f(method, path)` → action.
    pub fn set_rule(&self, f: impl FnMut(&str, &str) -> Action + Send + 'static) {
        *self.rule.lock().unwrap() = Box::new(f);
    }

    /// Sets a gate `f(method, path, request head)` consulted before the rule: `Some`
    /// answers the request itself (e.g. an auth challenge or a token endpoint).
    pub fn set_gate(&self, f: impl FnMut(&str, &str, &str) -> Option<Action> + Send + 'static) {
        *self.gate.lock().unwrap() = Some(Box::new(f));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Body bytes served for GETs whose path contains `needle`.
    pub fn served(&self, needle: &str) -> u64 {
        self.seen()
            .iter()
            .filter(|s| s.method == "GET" && s.path.contains(needle))
            .map(|s| s.body_bytes)
            .sum()
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = find_head_end(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// `head` without the header lines starting with `prefix` (lowercase, with the colon).
fn without_header(head: &[u8], prefix: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let kept: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with(prefix))
        .collect();
    kept.join("\r\n").into_bytes()
}

/// Replaces any `Connection` header with `Connection: close`.
fn force_close(head: &[u8]) -> Vec<u8> {
    let kept = without_header(head, "connection:");
    let text = String::from_utf8_lossy(&kept);
    format!(
        "{}\r\nConnection: close\r\n\r\n",
        text.trim_end_matches("\r\n")
    )
    .into_bytes()
}

async fn handle(
    mut c: TcpStream,
    upstream: &str,
    seen: Arc<Mutex<Vec<Seen>>>,
    rule: Arc<Mutex<Rule>>,
    gate: Arc<Mutex<Option<Gate>>>,
) -> std::io::Result<()> {
    let (head, rest) = read_head(&mut c).await?;
    let text = String::from_utf8_lossy(&head).to_string();
    let mut first = text.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let range = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))
        .map(|l| l[6..].trim().to_string());
    let gated = gate
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|g| g(&method, &path, &text));
    let action = match gated {
        Some(a) => a,
        None => (rule.lock().unwrap())(&method, &path),
    };
    let idx = {
        let mut s = seen.lock().unwrap();
        s.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range,
            at: std::time::Instant::now(),
            body_bytes: 0,
            done: None,
        });
        s.len() - 1
    };
    match &action {
        Action::Status(code) => {
            let body = br#"{"errors":[{"code":"UNKNOWN","message":"injected by test proxy"}]}"#;
            let resp = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            c.write_all(resp.as_bytes()).await?;
            c.write_all(body).await?;
            return c.shutdown().await;
        }
        Action::Respond(headers, body) | Action::Reply(_, headers, body) => {
            let code = match &action {
                Action::Reply(code, _, _) => *code,
                _ => 200,
            };
            let mut resp = format!("HTTP/1.1 {code} X\r\nConnection: close\r\n");
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                resp.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            c.write_all(resp.as_bytes()).await?;
            if method != "HEAD" {
                c.write_all(body).await?;
                update(&seen, idx, |s| s.body_bytes = body.len() as u64);
            }
            return c.shutdown().await;
        }
        _ => {}
    }
    let mut u = TcpStream::connect(upstream).await?;
    let head = match action {
        Action::IgnoreRange => without_header(&head, "range:"),
        _ => head,
    };
    u.write_all(&force_close(&head)).await?;
    u.write_all(&rest).await?;
    let (mut cr, mut cw) = c.into_split();
    let (mut ur, mut uw) = u.into_split();
    let copier = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
    });
    let r = respond(&mut ur, &mut cw, action, &seen, idx).await;
    copier.abort();
    update(&seen, idx, |s| {
        s.done.get_or_insert_with(std::time::Instant::now);
    });
    r
}

/// Applies `f` to the record of request `idx`, unless a [`Proxy::clear`] dropped it.
fn update(seen: &Mutex<Vec<Seen>>, idx: usize, f: impl FnOnce(&mut Seen)) {
    if let Some(s) = seen.lock().unwrap().get_mut(idx) {
        f(s);
    }
}

/// Records that request `idx` is about to pass on body bytes, now (see [`Seen::done`]).
fn sending(seen: &Mutex<Vec<Seen>>, idx: usize) {
    update(seen, idx, |s| s.done = Some(std::time::Instant::now()));
}

async fn respond(
    ur: &mut tokio::net::tcp::OwnedReadHalf,
    cw: &mut tokio::net::tcp::OwnedWriteHalf,
    action: Action,
    seen: &Arc<Mutex<Vec<Seen>>>,
    idx: usize,
) -> std::io::Result<()> {
    // Response head.
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        let n = ur.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let mut body = buf.split_off(end);
    cw.write_all(&force_close(&buf)).await?;
    let mut sent = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        if !body.is_empty() {
            sending(seen, idx);
            match action {
                Action::CutAfter(n) | Action::StallAfter(n) | Action::ResetAfter(n) => {
                    let allowed = n.saturating_sub(sent).min(body.len() as u64) as usize;
                    cw.write_all(&body[..allowed]).await?;
                    sent += allowed as u64;
                    update(seen, idx, |s| s.body_bytes = sent);
                    if sent >= n {
                        return end_early(cw, &action).await;
                    }
                }
                Action::Throttle(rate) => {
                    for piece in body.chunks(16 << 10) {
                        sending(seen, idx);
                        cw.write_all(piece).await?;
                        sent += piece.len() as u64;
                        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                        tokio::time::sleep_until(started + due).await;
                    }
                }
                Action::Corrupt(at) => {
                    if at >= sent && at < sent + body.len() as u64 {
                        body[(at - sent) as usize] ^= 0xff;
                    }
                    cw.write_all(&body).await?;
                    sent += body.len() as u64;
                }
                _ => {
                    cw.write_all(&body).await?;
                    sent += body.len() as u64;
                }
            }
            update(seen, idx, |s| s.body_bytes = sent);
        }
        let n = ur.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body = tmp[..n].to_vec();
    }
    cw.shutdown().await
}

/// Ends a response mid-body as `action` says: close (FIN), stall for two minutes (the
/// client gives up first), or reset (RST, once the halves are dropped).
async fn end_early(
    cw: &mut tokio::net::tcp::OwnedWriteHalf,
    action: &Action,
) -> std::io::Result<()> {
    match action {
        Action::StallAfter(_) => {
            cw.flush().await?;
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(())
        }
        // A zero linger makes the close an RST and never blocks (the deprecation is
        // about non-zero lingers blocking the thread).
        #[allow(deprecated)]
        Action::ResetAfter(_) => cw.as_ref().set_linger(Some(Duration::ZERO)),
        _ => cw.shutdown().await,
    }
}

/// A content store and image store in a temp dir, with the service over them.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub content: Arc<LocalStore>,
    pub images: Arc<ImageStore>,
    pub svc: ImageService,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let content = Arc::new(LocalStore::open(dir.path().join("content")).unwrap());
        let images = Arc::new(ImageStore::open(dir.path().join("metadata.db")).unwrap());
        let svc = ImageService::new(content.clone() as Arc<dyn Store>, images.clone());
        Env {
            dir,
            content,
            images,
            svc,
        }
    }
}

/// A gzip-compressed tar with `files` (path, contents).
pub fn tar_gz(files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, p, data.as_slice()).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), raw)
}

/// Deterministic incompressible bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn put(store: &LocalStore, mt: &str, data: &[u8]) -> Descriptor {
    let d = Descriptor::new(mt.into(), data.len() as u64, sha256(data));
    strata_content::helpers::write_blob(
        store,
        &format!("test-{}", d.digest()),
        data,
        &d,
        Default::default(),
    )
    .await
    .unwrap();
    d
}

/// Builds a single-platform OCI image (linux/amd64 or the host) with layers of the given
/// sizes (bytes of incompressible file content) into `env` as `name`. Returns the
/// manifest descriptor and the layer descriptors.
pub async fn build_image(
    env: &Env,
    name: &str,
    layer_sizes: &[usize],
    seed: u64,
) -> (Descriptor, Vec<Descriptor>) {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, n) in layer_sizes.iter().enumerate() {
        let (gz, raw) = tar_gz(&[(&format!("file{i}"), noise(*n, seed + i as u64))]);
        diff_ids.push(sha256(&raw).to_string());
        layers.push(put(&env.content, mt::OCI_LAYER_GZIP, &gz).await);
    }
    let plat = strata_image::platforms::default_spec();
    let config = serde_json::json!({
        "architecture": plat.architecture, "os": plat.os,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config = put(
        &env.content,
        mt::OCI_CONFIG,
        &serde_json::to_vec(&config).unwrap(),
    )
    .await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    let manifest = put(
        &env.content,
        mt::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    env.images
        .create(Image::new(name, manifest.clone()))
        .await
        .unwrap();
    (manifest, layers)
}

/// Builds an image with layers of `sizes` bytes of noise (see [`build_image`]) and pushes
/// it to `<registry>/<repo>:1`; returns that reference.
pub async fn push_built(registry: &str, repo: &str, sizes: &[usize], seed: u64) -> String {
    let src = Env::new();
    build_image(&src, "local/built:1", sizes, seed).await;
    let remote = format!("{registry}/{repo}:1");
    let opts = strata_image::service::PushOptions {
        registry: no_docker_config(),
        ..Default::default()
    };
    src.svc
        .push("local/built:1", Some(&remote), opts)
        .await
        .unwrap();
    remote
}

/// Registry options that ignore the user's Docker config (tests run as root).
pub fn no_docker_config() -> strata_image::remote::RegistryOptions {
    strata_image::remote::RegistryOptions::default().docker_config(false)
}

/// Pull options over [`no_docker_config`].
pub fn pull_opts_plain() -> strata_image::service::PullOptions {
    let mut o = strata_image::service::PullOptions::default();
    o.fetch.registry = no_docker_config();
    o
}

/// Runs a command, panicking with its output on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every blob digest reachable in an OCI layout's blobs dir.
pub fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}
