//! The HTTP layer shared by the resolver, fetcher and pusher: hosts (mirrors, then the
//! registry), authorization, retries with backoff, and mapping HTTP statuses to errors.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use strata_content::{Error, ErrorKind, Result};
use tokio::sync::OwnedSemaphorePermit;

use super::RegistryOptions;
use super::auth::{Authorizer, CredentialsFn};
use super::docker_config::DockerConfig;
use super::retry;

/// One endpoint serving the `/v2/` API for a registry.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, the key for credentials and tokens.
    pub host: String,
    /// The path before `/v2` (empty or `/prefix`).
    pub prefix: String,
    /// For a mirror: the upstream registry's domain, sent as `?ns=`.
    pub ns: Option<String>,
}

impl Host {
    /// The URL of `/v2/<repo>/<suffix>`.
    pub fn url(&self, repo: &str, suffix: &str) -> String {
        let mut u = format!(
            "{}://{}{}/v2/{}/{}",
            self.scheme, self.host, self.prefix, repo, suffix
        );
        if let Some(ns) = &self.ns {
            u.push(if u.contains('?') { '&' } else { '?' });
            u.push_str("ns=");
            u.push_str(ns);
        }
        u
    }

    /// Resolves a `Location` header (absolute, or a path on this host).
    pub fn location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}://{}{}", self.scheme, self.host, loc)
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The HTTP client, options and authorizer of one resolver.
pub(crate) struct Client {
    pub http: reqwest::Client,
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
    /// Builds the HTTP client (rustls, system roots).
    ///
    /// # Errors
    /// `Internal` when the TLS backend cannot be initialized; `InvalidArgument` for a
    /// malformed Docker config.
    pub fn new(opts: RegistryOptions) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal("build HTTP client").with_source(e))?;
        let mut creds: Vec<CredentialsFn> = Vec::new();
        if let Some(c) = &opts.credentials {
            creds.push(c.clone());
        }
        if opts.docker_config {
            let cfg = DockerConfig::load_default()?;
            creds.push(Arc::new(move |h: &str| cfg.get(h)));
        }
        Ok(Arc::new(Client {
            auth: Authorizer::new(http.clone(), creds),
            http,
            opts,
        }))
    }

    fn scheme_for(&self, host: &str) -> &'static str {
        if self.opts.plain_http || is_loopback(host) {
            "http"
        } else {
            "https"
        }
    }

    /// The hosts for `domain`: mirrors first (when `pull`), then the registry itself.
    pub fn hosts(&self, domain: &str, pull: bool) -> Vec<Host> {
        let mut out = Vec::new();
        if pull {
            for m in &self.opts.mirrors {
                let (scheme, rest) = if let Some(r) = m.strip_prefix("https://") {
                    ("https", r)
                } else if let Some(r) = m.strip_prefix("http://") {
                    ("http", r)
                } else {
                    (
                        self.scheme_for(m.split('/').next().unwrap_or(m)),
                        m.as_str(),
                    )
                };
                let rest = rest.trim_end_matches('/');
                let (host, prefix) = match rest.split_once('/') {
                    Some((h, p)) => (h, format!("/{}", p.trim_end_matches("/v2"))),
                    None => (rest, String::new()),
                };
                let prefix = if prefix == "/" { String::new() } else { prefix };
                out.push(Host {
                    scheme: scheme.to_string(),
                    host: host.to_string(),
                    prefix,
                    ns: Some(domain.to_string()),
                });
            }
        }
        let host = if domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            domain
        };
        out.push(Host {
            scheme: self.scheme_for(host).to_string(),
            host: host.to_string(),
            prefix: String::new(),
            ns: None,
        });
        out
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
                Attempt::Retry(why, _) => return Err(why.context(host_context(host))),
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
        let mut b = self
            .http
            .request(req.method.clone(), &req.url)
            .headers(req.headers.clone());
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
            Ok(Err(e)) => {
                let e = Error::unavailable(req.what()).with_source(e);
                return Ok(Attempt::Retry(e, None));
            }
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

/// Names the endpoint in an error: `registry 127.0.0.1:5000` or `mirror m:5000 of docker.io`.
pub(crate) fn host_context(host: &Host) -> String {
    match &host.ns {
        Some(ns) => format!("mirror {} of {ns}", host.host),
        None => format!("registry {}", host.host),
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

    #[test]
    fn hosts_and_schemes() {
        let c = Client::new(
            RegistryOptions::default()
                .docker_config(false)
                .mirror("mirror.example")
                .mirror("http://m2:5000/prefix/v2/"),
        )
        .unwrap();
        let hs = c.hosts("docker.io", true);
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
        assert_eq!(c.hosts("docker.io", false).len(), 1);
        for (h, s) in [
            ("localhost:5000", "http"),
            ("127.0.0.1:5000", "http"),
            ("[::1]:5000", "http"),
            ("localhost", "http"),
            ("example.com", "https"),
            ("127.example.com:1", "https"),
        ] {
            assert_eq!(c.hosts(h, false)[0].scheme, s, "{h}");
        }
        assert_eq!(
            hs[2].location("/v2/a/blobs/uploads/u?x=1"),
            "https://registry-1.docker.io/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(hs[2].location("http://o/p"), "http://o/p");
    }
}
