//! # strata-remote
//!
//! A client for the Docker Registry HTTP API v2 / OCI distribution spec, after containerd's
//! `remotes/docker`: image references, resolving them, fetching and pushing blobs and
//! manifests, authorization and credentials. It depends on `strata-content` only (for
//! `Digest`, `Descriptor` and the one `Error`), so it is usable alone; `strata-image`'s
//! Fetch and Push flows are built on it.
//!
//! - [`reference`](mod@reference): Docker-style references and their normalization.
//! - [`media_types`]: the manifest and index media types a client must know.
//! - [`Resolver`]: turns a [`Reference`](crate::reference::Reference) into the descriptor
//!   of its manifest or index (HEAD, then GET), and hands out [`Fetcher`]s and [`Pusher`]s.
//! - [`Fetcher`]: streams manifests and blobs by descriptor, from an offset, resuming a
//!   dropped connection with `Range: bytes=<offset>-`; a large blob comes over several
//!   connections at once, each a `Range` of it ([`ParallelDownload`]), still in order.
//! - [`Pusher`]: uploads blobs (skipping existing ones, mounting across repositories,
//!   monolithic or chunked) and manifests by tag or digest.
//! - [`auth`]: the `WWW-Authenticate` challenge parser, bearer tokens (cached per host and
//!   scope) and basic auth; [`docker_config`]: `~/.docker/config.json`;
//!   [`credentials`]: where credentials come from (config files, credential helpers).
//! - [`hosts`]: containerd's `hosts.toml` directories and the ordered endpoints of a
//!   registry (mirrors, then the server) with their capabilities, headers and TLS.
//! - [`TlsConfig`]: CAs, client certificates and `skip_verify` per host;
//!   [`ProxyConfig`]: `HTTP(S)_PROXY` / `NO_PROXY`.
//! - [`RegistryOptions`]: plain HTTP, mirrors (tried in order, the registry itself last),
//!   hosts directory, TLS, proxies, credentials and retry policy.
//!
//! Requests that fail transiently (connection errors, 5xx, 429, no response within
//! [`RegistryOptions::idle_timeout`]) are retried with jittered exponential backoff, or
//! after the registry's `Retry-After`; a download that stalls or drops resumes at its
//! offset. A host that answers 404 or stays unavailable falls back to the next host of
//! the list. Requests to one host are bounded process-wide
//! ([`RegistryOptions::max_requests_per_host`]).

#![warn(missing_docs)]

pub mod auth;
mod client;
pub mod credentials;
pub mod docker_config;
mod fetcher;
pub mod hosts;
pub mod media_types;
mod parallel;
mod proxy;
mod pusher;
pub mod reference;
mod resolver;
mod retry;
mod tls;

pub use auth::{Challenge, Credentials, CredentialsFn, parse_www_authenticate};
pub use credentials::CredentialSources;
pub use fetcher::{BlobStream, Fetcher};
pub use parallel::ParallelDownload;
pub use proxy::ProxyConfig;
pub use pusher::{PushStatus, Pusher};
pub use resolver::{MAX_MANIFEST_SIZE, Resolver};
pub use retry::MAX_RETRY_AFTER;
pub use tls::TlsConfig;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach registries.
///
/// ```
/// use strata_remote::RegistryOptions;
/// let opts = RegistryOptions::default().plain_http(true).mirror("127.0.0.1:5001");
/// assert_eq!(opts.mirrors, ["127.0.0.1:5001"]);
/// ```
#[derive(Clone)]
pub struct RegistryOptions {
    /// Use `http://` for every host (localhost and 127.0.0.0/8 always use it).
    pub plain_http: bool,
    /// Mirrors for pulls, tried in order before the registry itself: `host[:port]` or a
    /// URL `http(s)://host[:port][/prefix]` (the `/v2` API lives under the prefix).
    pub mirrors: Vec<String>,
    /// Explicit credentials by host; consulted before the Docker config.
    pub credentials: Option<CredentialsFn>,
    /// Read credentials from the files and helpers of `credential_sources` (Docker's
    /// `config.json`, containers' `auth.json`).
    pub docker_config: bool,
    /// Where credentials are read from (when `docker_config`).
    pub credential_sources: CredentialSources,
    /// containerd's hosts directory (`ctr --hosts-dir`): `DIR/<host[:port]>/hosts.toml`
    /// or `DIR/_default/`; see [`hosts`].
    pub hosts_dir: Option<PathBuf>,
    /// TLS settings for every host (`ctr --tlscacert/--tlscert/--tlskey/--skip-verify`);
    /// a host's `hosts.toml` settings are added to these.
    pub tls: TlsConfig,
    /// Proxies; `None` reads `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` when the
    /// resolver is built.
    pub proxy: Option<ProxyConfig>,
    /// Retries of a transiently failing request (and of a dropped or stalled download
    /// without progress) before giving up on a host.
    pub max_retries: u32,
    /// The first backoff delay; it doubles on each retry, with jitter. A `429` or `503`
    /// with `Retry-After` waits what the registry asks instead (at most
    /// [`MAX_RETRY_AFTER`]).
    pub retry_delay: Duration,
    /// The longest wait for a response's headers or for the next bytes of its body;
    /// then the connection is dropped and the request retried (a download resumes at
    /// its offset with `Range`). Default 30 s.
    pub idle_timeout: Duration,
    /// The longest a download may go without receiving a byte, across its retries,
    /// before it fails. Default 3 minutes.
    pub progress_timeout: Duration,
    /// Requests in flight to one host at most, shared by every pull and push of the
    /// process (the first client to reach a host sets its limit). A download counts
    /// until its body ends. Default 16.
    pub max_requests_per_host: usize,
    /// Downloading one large blob over several connections at once (ranged requests).
    pub parallel_download: ParallelDownload,
    /// Blobs larger than this are pushed in chunks of this size (PATCH); smaller ones in
    /// one PUT.
    pub push_chunk_size: u64,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            plain_http: false,
            mirrors: Vec::new(),
            credentials: None,
            docker_config: true,
            credential_sources: CredentialSources::default(),
            hosts_dir: None,
            tls: TlsConfig::default(),
            proxy: None,
            max_retries: 3,
            retry_delay: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(180),
            max_requests_per_host: 16,
            parallel_download: ParallelDownload::default(),
            push_chunk_size: 16 << 20,
            user_agent: format!("strata/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("plain_http", &self.plain_http)
            .field("mirrors", &self.mirrors)
            .field("credentials", &self.credentials.is_some())
            .field("docker_config", &self.docker_config)
            .field("credential_sources", &self.credential_sources)
            .field("hosts_dir", &self.hosts_dir)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .field("idle_timeout", &self.idle_timeout)
            .field("progress_timeout", &self.progress_timeout)
            .field("max_requests_per_host", &self.max_requests_per_host)
            .field("parallel_download", &self.parallel_download)
            .field("push_chunk_size", &self.push_chunk_size)
            .finish()
    }
}

impl RegistryOptions {
    /// Sets [`RegistryOptions::plain_http`].
    pub fn plain_http(mut self, yes: bool) -> Self {
        self.plain_http = yes;
        self
    }

    /// Appends a mirror.
    pub fn mirror(mut self, m: impl Into<String>) -> Self {
        self.mirrors.push(m.into());
        self
    }

    /// Uses `username`/`secret` for every host (an empty username with a secret is an
    /// identity token).
    pub fn credentials(mut self, username: &str, secret: &str) -> Self {
        let c = Credentials {
            username: username.to_string(),
            secret: secret.to_string(),
        };
        self.credentials = Some(Arc::new(move |_host: &str| Some(c.clone())));
        self
    }

    /// Sets [`RegistryOptions::docker_config`].
    pub fn docker_config(mut self, yes: bool) -> Self {
        self.docker_config = yes;
        self
    }

    /// Sets [`RegistryOptions::hosts_dir`].
    pub fn hosts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hosts_dir = Some(dir.into());
        self
    }

    /// Sets [`RegistryOptions::tls`].
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`RegistryOptions::proxy`].
    pub fn proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = Some(proxy);
        self
    }
}
