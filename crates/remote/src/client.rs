//! The HTTP layer shared by the resolver, fetcher and pusher: hosts (mirrors, then the
//! registry), authorization, retries with backoff, and mapping HTTP statuses to errors.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use strata_content::{Error, ErrorKind, Result};
use tokio::sync::OwnedSemaphorePermit;

use crate::RegistryOptions;
use crate::auth::{Authorizer, CredentialsFn};
use crate::credentials::CredentialStore;
use crate::hosts::{self, Capabilities};
use crate::proxy::ProxyConfig;
use crate::retry;
use crate::tls::{Base, ClientCache, describe, is_certificate_error};

/// One endpoint serving the `/v2/` API for a registry, with the HTTP client for its
/// TLS settings.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, the key for credentials and tokens.
    pub host: String,
    /// The API root (`/v2`, `/prefix/v2`, or an overriding path).
    pub path: String,
    /// For a mirror: the upstream registry's domain, sent as `?ns=`.
    pub ns: Option<String>,
    /// Headers from `hosts.toml`, sent with every request.
    pub headers: HeaderMap,
    /// The client for this endpoint's TLS settings.
    pub http: reqwest::Client,
    /// Whether a client certificate is presented.
    pub client_cert: bool,
}

impl Host {
    /// The URL of `<path>/<repo>/<suffix>`.
    pub fn url(&self, repo: &str, suffix: &str) -> String {
        let ns = self.ns.as_deref();
        crate::hosts::api_url(&self.scheme, &self.host, &self.path, ns, repo, suffix)
    }

    /// Resolves a `Location` header (absolute, or a path on this host).
    pub fn location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}://{}{}", self.scheme, self.host, loc)
        }
    }

    /// A request builder for `req` on this endpoint's client, with its headers.
    pub fn request(&self, req: &Req) -> reqwest::RequestBuilder {
        self.http
            .request(req.method.clone(), &req.url)
            .headers(self.headers.clone())
            .headers(req.headers.clone())
    }

    /// `mirror HOST` or `registry HOST`, for errors.
    pub fn describe(&self) -> String {
        let role = if self.ns.is_some() {
            "mirror"
        } else {
            "registry"
        };
        format!("{role} {}://{}", self.scheme, self.host)
    }
}

/// The HTTP clients, options and authorizer of one resolver.
pub(crate) struct Client {
    clients: ClientCache,
    pub auth: Authorizer,
    pub opts: RegistryOptions,
}

/// A request that can be sent again (retries, re-authorization).
pub(crate) struct Req {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Req {
    pub fn new(method: Method, url: String) -> Self {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub fn header(mut self, k: reqwest::header::HeaderName, v: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(v) {
            self.headers.insert(k, v);
        }
        self
    }

    pub fn body(mut self, b: Bytes) -> Self {
        self.body = Some(b);
        self
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

impl Client {
    /// Builds the client cache (rustls, system roots plus the configured CAs) and the
    /// authorizer.
    ///
    /// # Errors
    /// `Internal` when the TLS backend cannot be initialized; `InvalidArgument` for a
    /// malformed credentials file, proxy URL or certificate given in the options.
    pub fn new(opts: RegistryOptions) -> Result<Arc<Self>> {
        let proxy = opts.proxy.clone().unwrap_or_else(ProxyConfig::from_env);
        let clients = ClientCache::new(Base {
            user_agent: opts.user_agent.clone(),
            proxy,
        });
        let http = clients.get("the token server", &opts.tls)?;
        let mut creds: Vec<CredentialsFn> = Vec::new();
        if let Some(c) = &opts.credentials {
            creds.push(c.clone());
        }
        let store = if opts.docker_config {
            Some(Arc::new(CredentialStore::load(&opts.credential_sources)?))
        } else {
            None
        };
        Ok(Arc::new(Client {
            auth: Authorizer::new(http, creds, store),
            clients,
            opts,
        }))
    }

    /// The endpoints of `domain` that have the capabilities `need`, in order (see
    /// [`hosts::endpoints`]).
    ///
    /// # Errors
    /// As [`hosts::endpoints`]; TLS files that cannot be loaded; `NotFound` when no
    /// endpoint has `need`.
    pub fn hosts(&self, domain: &str, need: Capabilities) -> Result<Vec<Host>> {
        let mut out = Vec::new();
        for e in hosts::endpoints(domain, &self.opts)? {
            if !e.capabilities.has(need) {
                continue;
            }
            let mut headers = HeaderMap::new();
            for (k, v) in &e.headers {
                let name = HeaderName::from_bytes(k.as_bytes());
                let value = HeaderValue::from_str(v);
                match (name, value) {
                    (Ok(n), Ok(v)) => {
                        headers.append(n, v);
                    }
                    _ => {
                        return Err(Error::invalid_argument(format!(
                            "{}: header {k:?}: {v:?} is not a valid HTTP header",
                            e.host
                        )));
                    }
                }
            }
            let http = self.clients.get(&e.host, &e.tls)?;
            self.auth.set_client(&e.host, &http);
            out.push(Host {
                http,
                client_cert: !e.tls.client.is_empty(),
                scheme: e.scheme,
                host: e.host,
                path: e.path,
                ns: e.ns,
                headers,
            });
        }
        if out.is_empty() {
            return Err(Error::not_found(format!(
                "{domain}: no registry host with capabilities {need:?}"
            )));
        }
        Ok(out)
    }

    /// Sends `req` to `host` with authorization, retrying transient failures with
    /// exponential backoff and re-authorizing once on a 401. Returns any response whose
    /// status is not 401, 429 or 5xx (those become errors after the retries).
    ///
    /// # Errors
    /// As [`Client::send_held`].
    pub async fn send(&self, host: &Host, scopes: &[String], req: &Req) -> Result<Response> {
        self.send_held(host, scopes, req).await.map(|(r, _)| r)
    }

    /// As [`Client::send`], also returning the host's request permit, to hold while the
    /// response body is read (downloads).
    ///
    /// A transient failure — a connection error, no response headers within
    /// [`RegistryOptions::idle_timeout`], a 5xx or a 429 — is retried up to
    /// `max_retries` times after a jittered exponential backoff, or after the
    /// `Retry-After` a 429/503 asks for (capped at [`MAX_RETRY_AFTER`](crate::MAX_RETRY_AFTER)).
    /// The permit is given back while waiting.
    ///
    /// # Errors
    /// `Unavailable` for connection errors, timeouts, 5xx and 429 after the retries;
    /// `FailedPrecondition` for a 401/403 that authorization cannot fix.
    pub async fn send_held(
        &self,
        host: &Host,
        scopes: &[String],
        req: &Req,
    ) -> Result<(Response, OwnedSemaphorePermit)> {
        let limit = retry::host_limit(&host.host, self.opts.max_requests_per_host);
        let mut attempt = 0u32;
        let mut reauthorized = false;
        loop {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("host request limit closed"))?;
            let outcome = self.attempt(host, scopes, req, !reauthorized).await?;
            let wait = match outcome {
                Attempt::Done(resp) => return Ok((resp, permit)),
                Attempt::Reauthorize => {
                    reauthorized = true;
                    continue;
                }
                Attempt::Retry(why, after) if attempt < self.opts.max_retries => {
                    tracing::debug!("{}: {why}; retrying", req.what());
                    after.unwrap_or_else(|| retry::backoff(self.opts.retry_delay, attempt))
                }
                Attempt::Retry(why, _) => return Err(why),
            };
            drop(permit);
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// One try of `req` on `host`; a 401 with a new challenge asks to re-authorize when
    /// `may_reauthorize`, else it is an error.
    async fn attempt(
        &self,
        host: &Host,
        scopes: &[String],
        req: &Req,
        may_reauthorize: bool,
    ) -> Result<Attempt> {
        let mut b = host.request(req);
        if let Some(a) = self.auth.authorize(&host.host, scopes).await? {
            b = b.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone());
        }
        let idle = self.opts.idle_timeout;
        let resp = match tokio::time::timeout(idle, b.send()).await {
            Err(_) => {
                let e = Error::unavailable(format!("{}: no response within {idle:?}", req.what()));
                return Ok(Attempt::Retry(e, None));
            }
            Ok(Err(e)) => return Ok(Attempt::Retry(transport_error(host, req, &e), None)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut key = scopes.to_vec();
            key.sort();
            if may_reauthorize
                && self
                    .auth
                    .add_challenge(&host.host, challenge.as_deref(), &key.join(" "))
            {
                return Ok(Attempt::Reauthorize);
            }
            return Err(status_error(req, resp).await);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let after = retry::retry_after(resp.headers(), std::time::SystemTime::now());
            return Ok(Attempt::Retry(status_error(req, resp).await, after));
        }
        Ok(Attempt::Done(resp))
    }
}

/// What one try of a request came to.
enum Attempt {
    /// A response to return.
    Done(Response),
    /// A 401 with a new challenge: authorize again and resend at once.
    Reauthorize,
    /// A transient failure: retry after the given delay (else the backoff).
    Retry(Error, Option<std::time::Duration>),
}

/// An error for a request that got no response, naming the endpoint and the innermost
/// cause (a certificate problem, a refused connection).
pub(crate) fn transport_error(host: &Host, req: &Req, e: &reqwest::Error) -> Error {
    // reqwest's own message repeats the URL; its causes say what happened.
    let cause = match std::error::Error::source(e) {
        Some(inner) => describe(inner),
        None => describe(e),
    };
    let what = if is_certificate_error(&cause) {
        format!("TLS with {}", host.describe())
    } else {
        host.describe()
    };
    let refused = ["closed", "reset", "CertificateRequired", "BadCertificate"]
        .iter()
        .any(|w| cause.contains(w));
    let hint = if host.scheme == "https" && !host.client_cert && refused {
        " (a server that requires a client certificate closes the connection so: see \
         --tlscert/--tlskey or `client` in hosts.toml)"
    } else {
        ""
    };
    Error::unavailable(format!("{}: {what}: {cause}{hint}", req.what()))
}

/// The failures of one operation across the hosts it tried.
pub(crate) struct Tried {
    what: String,
    failures: Vec<String>,
    last: Option<Error>,
}

impl Tried {
    pub fn new(what: impl Into<String>) -> Self {
        Tried {
            what: what.into(),
            failures: Vec::new(),
            last: None,
        }
    }

    /// Records that `host` failed with `e`.
    pub fn push(&mut self, host: &Host, e: Error) {
        tracing::debug!("{} on {}: {e}", self.what, host.host);
        self.failures.push(format!("{}: {e}", host.describe()));
        self.last = Some(e);
    }

    /// The error after every host failed: the last failure's kind, naming each host
    /// tried (mirrors and the registry) and its error.
    pub fn finish(self) -> Error {
        match self.last {
            None => Error::not_found(format!("{}: no registry host", self.what)),
            Some(e) if self.failures.len() == 1 => e.context(self.what),
            Some(e) => Error::new(
                e.kind(),
                format!("{}: tried {}", self.what, self.failures.join("; ")),
            ),
        }
    }
}

/// An error for an unexpected response, naming the request, the status and the start
/// of the registry's error body.
pub(crate) async fn status_error(req: &Req, resp: Response) -> Error {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(512)])
        .trim()
        .to_string();
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::FailedPrecondition,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => ErrorKind::NotImplemented,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::Unavailable,
        s if s.is_server_error() => ErrorKind::Unavailable,
        s if s.is_client_error() => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    };
    let what = if status == StatusCode::UNAUTHORIZED {
        " (unauthorized: check credentials)"
    } else if status == StatusCode::BAD_REQUEST
        && req.url.starts_with("http://")
        && (snippet.contains("HTTPS") || req.method == Method::HEAD)
    {
        // Go's servers answer plain HTTP on a TLS port with 400 (and HEAD has no body).
        " (if the registry serves HTTPS, configure TLS for it: --tlscacert, --skip-verify \
         or a hosts.toml with an https server)"
    } else {
        ""
    };
    let detail = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {snippet}")
    };
    Error::new(kind, format!("{}: HTTP {status}{what}{detail}", req.what()))
}

/// Whether a failure on one host should fall back to the next one.
pub(crate) fn try_next_host(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::Io
    )
}

/// `repository:<repo>:<actions>`.
pub(crate) fn repo_scope(repo: &str, push: bool) -> String {
    format!(
        "repository:{repo}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(opts: RegistryOptions) -> Arc<Client> {
        Client::new(opts.docker_config(false).proxy(ProxyConfig::none())).unwrap()
    }

    #[test]
    fn hosts_and_schemes() {
        let c = client(
            RegistryOptions::default()
                .mirror("mirror.example")
                .mirror("http://m2:5000/prefix/v2/"),
        );
        let hs = c.hosts("docker.io", Capabilities::PULL).unwrap();
        assert_eq!(hs.len(), 3);
        assert_eq!(
            hs[0].url("library/a", "manifests/x"),
            "https://mirror.example/v2/library/a/manifests/x?ns=docker.io"
        );
        assert_eq!(
            hs[1].url("a", "blobs/d"),
            "http://m2:5000/prefix/v2/a/blobs/d?ns=docker.io"
        );
        assert_eq!(
            hs[2].url("a", "blobs/d"),
            "https://registry-1.docker.io/v2/a/blobs/d"
        );
        assert_eq!(hs[0].describe(), "mirror https://mirror.example");
        assert_eq!(hs[2].describe(), "registry https://registry-1.docker.io");
        assert_eq!(c.hosts("docker.io", Capabilities::ALL).unwrap().len(), 1);
        for (h, s) in [
            ("localhost:5000", "http"),
            ("127.0.0.1:5000", "http"),
            ("[::1]:5000", "http"),
            ("localhost", "http"),
            ("example.com", "https"),
            ("127.example.com:1", "https"),
        ] {
            assert_eq!(c.hosts(h, Capabilities::PUSH).unwrap()[0].scheme, s, "{h}");
        }
        assert_eq!(
            hs[2].location("/v2/a/blobs/uploads/u?x=1"),
            "https://registry-1.docker.io/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(hs[2].location("http://o/p"), "http://o/p");
    }

    #[test]
    fn loopback_with_tls_is_https() {
        let tls = crate::TlsConfig {
            skip_verify: true,
            ..Default::default()
        };
        let c = client(RegistryOptions::default().tls(tls));
        let h = c.hosts("127.0.0.1:5000", Capabilities::PULL).unwrap();
        assert_eq!(h[0].scheme, "https");
        let c = client(RegistryOptions::default().plain_http(true));
        assert_eq!(
            c.hosts("example.com", Capabilities::PULL).unwrap()[0].scheme,
            "http"
        );
    }

    #[test]
    fn hosts_dir_headers_and_capabilities() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("reg.example_5000_");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("hosts.toml"),
            r#"
[host."https://pull-only.example"]
  capabilities = ["pull"]
  [host."https://pull-only.example".header]
    x-a = ["1", "2"]
"#,
        )
        .unwrap();
        let c = client(RegistryOptions::default().hosts_dir(dir.path()));
        let pull = c.hosts("reg.example:5000", Capabilities::PULL).unwrap();
        assert_eq!(pull.len(), 2);
        assert_eq!(pull[0].headers.get_all("x-a").iter().count(), 2);
        let resolve = c
            .hosts("reg.example:5000", Capabilities::PULL_RESOLVE)
            .unwrap();
        assert_eq!(resolve.len(), 1);
        assert_eq!(resolve[0].host, "reg.example:5000");
        std::fs::write(
            d.join("hosts.toml"),
            "[host.\"https://m\"]\ncapabilities = [\"fly\"]\n",
        )
        .unwrap();
        let e = c.hosts("reg.example:5000", Capabilities::PULL).unwrap_err();
        assert!(e.to_string().contains("hosts.toml"), "{e}");
    }

    #[test]
    fn tried_names_every_host() {
        let c = client(RegistryOptions::default().mirror("m.example"));
        let hs = c.hosts("r.example", Capabilities::PULL).unwrap();
        let mut t = Tried::new("resolve r.example/a:1");
        t.push(&hs[0], Error::not_found("m"));
        t.push(&hs[1], Error::unavailable("r"));
        let e = t.finish();
        assert!(e.is_unavailable());
        let s = e.to_string();
        assert!(
            s.contains("mirror https://m.example") && s.contains("registry https://r.example"),
            "{s}"
        );
    }
}
