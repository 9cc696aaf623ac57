//! Registry authentication: `WWW-Authenticate` challenges, bearer tokens and basic auth,
//! after containerd's `remotes/docker/authorizer.go` and `auth/`.
//!
//! On a 401 the client records the host's challenge ([`parse_www_authenticate`]). Later
//! requests to that host are authorized up front: `Basic` sends the credentials; `Bearer`
//! obtains a token from the challenge's realm for the request's scopes — with
//! credentials by OAuth2 POST (`grant_type=password` or `refresh_token`), falling back to
//! GET with basic auth when the server answers 404/405; without credentials by an
//! anonymous GET — and caches it per host and scope until it expires.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde::Deserialize;
use strata_content::{Error, Result};

use crate::credentials::CredentialStore;

/// A username and secret for a registry. An empty username with a secret means the
/// secret is an identity (refresh) token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username (empty for an identity token).
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// Looks up credentials by registry host (`host[:port]`).
pub type CredentialsFn = Arc<dyn Fn(&str) -> Option<Credentials> + Send + Sync>;

/// One authentication challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// The parameters, keys lowercased (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }
    fn token(&mut self) -> &str {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 7235:
/// `scheme param=value, param="quoted", Other …`). Malformed parts are skipped; the
/// parser never fails.
///
/// ```
/// use strata_remote::parse_www_authenticate;
/// let c = parse_www_authenticate(
///     r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull""#);
/// assert_eq!(c[0].scheme, "bearer");
/// assert_eq!(c[0].params["realm"], "https://auth.example/token");
/// assert_eq!(c[0].params["scope"], "repository:a:pull");
/// ```
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut cur = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        while matches!(cur.peek(), Some(b' ' | b'\t' | b',')) {
            cur.i += 1;
        }
        if cur.peek().is_none() {
            break;
        }
        let scheme = cur.token().to_ascii_lowercase();
        if scheme.is_empty() {
            // Not a token: skip one byte and look again.
            cur.i += 1;
            continue;
        }
        let mut ch = Challenge {
            scheme,
            params: BTreeMap::new(),
        };
        loop {
            cur.skip_ws();
            let save = cur.i;
            let key = cur.token().to_ascii_lowercase();
            cur.skip_ws();
            if key.is_empty() || cur.peek() != Some(b'=') {
                // A new challenge (or a token68, which we do not use): rewind.
                cur.i = save;
                if key.is_empty() {
                    // Skip junk up to the next comma.
                    while cur.peek().is_some_and(|c| c != b',') {
                        cur.i += 1;
                    }
                }
                break;
            }
            cur.i += 1;
            cur.skip_ws();
            let value = if cur.peek() == Some(b'"') {
                cur.quoted()
            } else {
                cur.token().to_string()
            };
            ch.params.insert(key, value);
            cur.skip_ws();
            if cur.peek() == Some(b',') {
                cur.i += 1;
                continue;
            }
            if cur.peek().is_some() && cur.peek() != Some(b',') {
                // Junk after a value (e.g. token68 padding): skip to the next comma.
                while cur.peek().is_some_and(|c| c != b',') {
                    cur.i += 1;
                }
            }
            if cur.peek().is_none() {
                break;
            }
        }
        out.push(ch);
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

struct CachedToken {
    token: String,
    valid_until: Instant,
}

/// Authorizes requests to registries; shared by every request of one [`Resolver`](super::Resolver).
pub(crate) struct Authorizer {
    http: reqwest::Client,
    creds: Vec<CredentialsFn>,
    store: Option<Arc<CredentialStore>>,
    /// The HTTP client of each registry host (its TLS settings), used for its token
    /// server too, as containerd does.
    host_clients: Mutex<HashMap<String, reqwest::Client>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    /// Serializes token fetches so concurrent requests share one token.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl Authorizer {
    pub(crate) fn new(
        http: reqwest::Client,
        creds: Vec<CredentialsFn>,
        store: Option<Arc<CredentialStore>>,
    ) -> Self {
        Authorizer {
            http,
            creds,
            store,
            host_clients: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Uses `http` (the client for `host`'s TLS settings) for `host`'s token server.
    pub(crate) fn set_client(&self, host: &str, http: &reqwest::Client) {
        self.host_clients
            .lock()
            .unwrap()
            .insert(host.to_string(), http.clone());
    }

    fn client_for(&self, host: &str) -> reqwest::Client {
        let clients = self.host_clients.lock().unwrap();
        clients.get(host).unwrap_or(&self.http).clone()
    }

    /// The explicit credentials for `host`, else the configured files' and helpers'.
    fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.creds.iter().find_map(|f| f(host)) {
            return Ok(Some(c));
        }
        match &self.store {
            Some(s) => s.get(host),
            None => Ok(None),
        }
    }

    /// Records the challenge of a 401 from `host`. Returns whether retrying with
    /// authorization can help (a usable challenge that differs from the one already
    /// tried, or a token that may have expired).
    pub(crate) fn add_challenge(&self, host: &str, header: Option<&str>, scope: &str) -> bool {
        let challenges = parse_www_authenticate(header.unwrap_or_default());
        let chosen = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.params.contains_key("realm"))
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
            .cloned();
        let Some(ch) = chosen else {
            return false;
        };
        // A failing credential helper is reported by `authorize`.
        if ch.scheme == "basic" && self.credentials(host).is_ok_and(|c| c.is_none()) {
            return false;
        }
        // Forget a token that was just refused.
        self.tokens
            .lock()
            .unwrap()
            .remove(&(host.to_string(), scope.to_string()));
        self.challenges.lock().unwrap().insert(host.to_string(), ch);
        true
    }

    /// The `Authorization` header for a request to `host` needing `scopes`, if the host
    /// has asked for authentication.
    ///
    /// # Errors
    /// `FailedPrecondition` when the token server refuses; `Unavailable` when it cannot
    /// be reached.
    pub(crate) async fn authorize(&self, host: &str, scopes: &[String]) -> Result<Option<String>> {
        let ch = self.challenges.lock().unwrap().get(host).cloned();
        let Some(ch) = ch else { return Ok(None) };
        match ch.scheme.as_str() {
            "basic" => Ok(self.credentials(host)?.map(|c| basic(&c))),
            "bearer" => {
                let mut all: Vec<String> = scopes.to_vec();
                if let Some(s) = ch.params.get("scope") {
                    all.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
                }
                all.sort();
                all.dedup();
                let key = (host.to_string(), all.join(" "));
                if let Some(t) = self.cached(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _guard = self.fetch_lock.lock().await;
                if let Some(t) = self.cached(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, ttl) = self.fetch_token(host, &ch, &all).await?;
                let ttl = ttl
                    .saturating_sub(Duration::from_secs(5))
                    .max(Duration::from_secs(1));
                self.tokens.lock().unwrap().insert(
                    key,
                    CachedToken {
                        token: token.clone(),
                        valid_until: Instant::now() + ttl,
                    },
                );
                Ok(Some(format!("Bearer {token}")))
            }
            _ => Ok(None),
        }
    }

    fn cached(&self, key: &(String, String)) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        tokens
            .get(key)
            .filter(|t| t.valid_until > Instant::now())
            .map(|t| t.token.clone())
    }

    async fn fetch_token(
        &self,
        host: &str,
        ch: &Challenge,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        let realm = ch.params.get("realm").cloned().unwrap_or_default();
        let url = reqwest::Url::parse(&realm).map_err(|e| {
            Error::invalid_argument(format!("bearer realm {realm:?} of {host}")).with_source(e)
        })?;
        let service = ch.params.get("service").cloned();
        let creds = self.credentials(host)?.filter(|c| !c.secret.is_empty());
        if let Some(c) = &creds {
            let mut form: Vec<(&str, String)> = vec![("client_id", "strata".into())];
            if c.username.is_empty() {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", c.secret.clone()));
            } else {
                form.push(("grant_type", "password".into()));
                form.push(("username", c.username.clone()));
                form.push(("password", c.secret.clone()));
            }
            if let Some(s) = &service {
                form.push(("service", s.clone()));
            }
            form.push(("scope", scopes.join(" ")));
            let resp = self
                .client_for(host)
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form_encode(&form))
                .send()
                .await
                .map_err(|e| {
                    Error::unavailable(format!("POST token from {realm} for {host}")).with_source(e)
                })?;
            match resp.status() {
                StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::BAD_REQUEST => {
                    // No OAuth2 endpoint: fall back to GET with basic auth.
                }
                s if s.is_success() => return parse_token(resp, &realm).await,
                s => {
                    return Err(Error::failed_precondition(format!(
                        "token server {realm} refused credentials for {host}: HTTP {s}"
                    )));
                }
            }
        }
        let mut get = url;
        {
            let mut q = get.query_pairs_mut();
            if let Some(s) = &service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.client_for(host).get(get);
        if let Some(c) = &creds {
            req = req.header(reqwest::header::AUTHORIZATION, basic(c));
        }
        let resp = req.send().await.map_err(|e| {
            Error::unavailable(format!("GET token from {realm} for {host}")).with_source(e)
        })?;
        if !resp.status().is_success() {
            return Err(Error::failed_precondition(format!(
                "token server {realm} for {host}: HTTP {}{}",
                resp.status(),
                if creds.is_none() {
                    " (no credentials)"
                } else {
                    ""
                }
            )));
        }
        parse_token(resp, &realm).await
    }
}

async fn parse_token(resp: reqwest::Response, realm: &str) -> Result<(String, Duration)> {
    let body = resp
        .bytes()
        .await
        .map_err(|e| Error::unavailable(format!("read token from {realm}")).with_source(e))?;
    let t: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid_argument(format!("token from {realm}")).with_source(e))?;
    let token = if t.token.is_empty() {
        t.access_token
    } else {
        t.token
    };
    if token.is_empty() {
        return Err(Error::invalid_argument(format!(
            "token server {realm} returned no token"
        )));
    }
    let ttl = Duration::from_secs(if t.expires_in == 0 { 60 } else { t.expires_in });
    Ok((token, ttl))
}

fn form_encode(pairs: &[(&str, String)]) -> String {
    let mut u = reqwest::Url::parse("http://form.invalid/").expect("static URL");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or_default().to_string()
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push", Basic realm="x y""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:samalba/my-app:pull,push");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].params["realm"], "x y");
    }

    #[test]
    fn parses_escapes_case_and_spacing() {
        let c = parse_www_authenticate(r#"BASIC  Realm = "a \"q\" b" , charset=UTF-8"#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], r#"a "q" b"#);
        assert_eq!(c[0].params["charset"], "UTF-8");
    }

    #[test]
    fn tolerates_junk() {
        for h in [
            "",
            ",,,",
            "Bearer",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "Negotiate abc==, Bearer realm=\"r\"",
            "\u{1F600} ==== ,, = x",
        ] {
            let _ = parse_www_authenticate(h);
        }
        let c = parse_www_authenticate("Negotiate abc==, Bearer realm=\"r\"");
        assert!(
            c.iter()
                .any(|c| c.scheme == "bearer" && c.params["realm"] == "r"),
            "{c:?}"
        );
        assert_eq!(parse_www_authenticate("Bearer")[0].params.len(), 0);
    }

    #[test]
    fn basic_header() {
        let c = Credentials {
            username: "u".into(),
            secret: "p".into(),
        };
        assert_eq!(basic(&c), "Basic dTpw");
        assert!(!format!("{c:?}").contains('p') || format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn challenge_recording() {
        let a = Authorizer::new(reqwest::Client::new(), vec![], None);
        // Basic without credentials cannot help.
        assert!(!a.add_challenge("h", Some("Basic realm=\"r\""), "s"));
        assert!(!a.add_challenge("h", None, "s"));
        assert!(a.add_challenge("h", Some("Bearer realm=\"http://127.0.0.1:1/t\""), "s"));
    }
}
