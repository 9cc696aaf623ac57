//! Registry hosts: which endpoints serve a registry, for what, and how to reach them —
//! containerd's `hosts.toml` directories (`ctr --hosts-dir`, CRI's `config_path`), the
//! same files with the same meaning.
//!
//! For a registry `host[:port]`, the directory `DIR/host_port_/`, else `DIR/host:port/`,
//! else `DIR/_default/` is read. Its `hosts.toml` lists `[host."URL"]` endpoints tried in
//! order, then `server` (the registry itself when unset). Each has `capabilities`
//! (`pull`, `resolve`, `push`; all when unset), `ca` (a path or a list), `client` (a
//! certificate path, a `[cert, key]` pair, or a list of either), `skip_verify`, a
//! `[header]` table (string or list values) and `override_path`. Relative paths are
//! relative to the directory. Without a `hosts.toml`, Docker's `certs.d` layout applies:
//! `*.crt` files are CAs, `*.cert` files client certificates with the `*.key` of the same
//! stem.
//!
//! [`endpoints`] turns a registry and [`RegistryOptions`] into the ordered
//! [`Endpoint`]s: the option's mirrors, the `hosts.toml` hosts, the server. Resolving a
//! tag uses endpoints with `pull` and `resolve`, fetching by digest those with `pull`,
//! pushing those with `push`.
//!
//! Differences from containerd: a `hosts.toml` that does not parse is an error naming the
//! file (containerd logs it and falls back to the certificate files); `dial_timeout` is
//! accepted but not applied; of several `client` certificates the first is presented
//! (Go picks one by the server's CAs); an `http` host with TLS settings is spoken to over
//! HTTPS without containerd's fallback to plain HTTP.

use std::path::{Path, PathBuf};

use strata_content::{Error, Result};
use toml::{Table, Value};

use crate::RegistryOptions;
use crate::tls::TlsConfig;

/// What an endpoint may be used for (containerd's `HostCapabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Fetching manifests and blobs by digest.
    pub pull: bool,
    /// Resolving a tag to a digest (a trusted operation).
    pub resolve: bool,
    /// Pushing.
    pub push: bool,
}

impl Capabilities {
    /// Pull, resolve and push: a registry's own server.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
    /// Pull only: a public mirror.
    pub const PULL: Capabilities = Capabilities {
        pull: true,
        resolve: false,
        push: false,
    };
    /// Push only (what a push needs).
    pub const PUSH: Capabilities = Capabilities {
        pull: false,
        resolve: false,
        push: true,
    };
    /// Pull and resolve: a private mirror.
    pub const PULL_RESOLVE: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: false,
    };

    /// Whether every capability of `need` is here.
    pub fn has(self, need: Capabilities) -> bool {
        (self.pull || !need.pull) && (self.resolve || !need.resolve) && (self.push || !need.push)
    }
}

/// One `[host."URL"]` table or the `server` of a `hosts.toml`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// `http` or `https`; empty for the registry itself (no `server`).
    pub scheme: String,
    /// `host[:port]`; empty for the registry itself.
    pub host: String,
    /// The API root (`/v2`, `/prefix/v2`, or with `override_path` the URL's path as is).
    pub path: String,
    /// What the endpoint may be used for.
    pub capabilities: Capabilities,
    /// CA, client certificate and `skip_verify` settings.
    pub tls: TlsConfig,
    /// Headers sent with every request, in order (a list value gives several).
    pub headers: Vec<(String, String)>,
}

impl HostEntry {
    fn registry_itself() -> Self {
        HostEntry {
            scheme: String::new(),
            host: String::new(),
            path: "/v2".into(),
            capabilities: Capabilities::ALL,
            tls: TlsConfig::default(),
            headers: Vec::new(),
        }
    }
}

/// An endpoint serving the `/v2/` API for a registry, resolved for use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, the key for credentials and tokens.
    pub host: String,
    /// The API root: requests go to `<scheme>://<host><path>/<repo>/…`.
    pub path: String,
    /// What the endpoint may be used for.
    pub capabilities: Capabilities,
    /// TLS settings (the options' defaults merged with the host's own).
    pub tls: TlsConfig,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// For an endpoint other than the registry: the registry, sent as `?ns=`.
    pub ns: Option<String>,
}

impl Endpoint {
    /// The URL of `<path>/<repo>/<suffix>`.
    ///
    /// ```
    /// # use strata_remote::hosts::{Capabilities, Endpoint};
    /// let e = Endpoint {
    ///     scheme: "https".into(), host: "mirror.example".into(), path: "/v2".into(),
    ///     capabilities: Capabilities::PULL, tls: Default::default(), headers: vec![],
    ///     ns: Some("docker.io".into()),
    /// };
    /// assert_eq!(e.url("library/a", "blobs/sha256:00"),
    ///            "https://mirror.example/v2/library/a/blobs/sha256:00?ns=docker.io");
    /// ```
    pub fn url(&self, repo: &str, suffix: &str) -> String {
        api_url(
            &self.scheme,
            &self.host,
            &self.path,
            self.ns.as_deref(),
            repo,
            suffix,
        )
    }
}

/// Whether `host` (`name[:port]`) is localhost or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() > 1 {
        host
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The directory of `DIR` configuring `host`: `host_port_`, `host:port`, then
/// `_default`; `None` when none exists.
pub fn host_dir(root: &Path, host: &str) -> Option<PathBuf> {
    let mut names = Vec::new();
    if let Some((h, p)) = host.rsplit_once(':')
        && !h.is_empty()
    {
        names.push(format!("{h}_{p}_"));
    }
    names.push(host.to_string());
    names.push("_default".to_string());
    names.into_iter().map(|n| root.join(n)).find(|p| p.is_dir())
}

/// Reads one host directory: its `hosts.toml`, or the Docker certificate files when it
/// has none (or an empty one).
///
/// # Errors
/// `Io` when the directory or file cannot be read; `InvalidArgument` naming the file
/// when `hosts.toml` is malformed.
pub fn load_host_dir(dir: &Path) -> Result<Vec<HostEntry>> {
    let file = dir.join("hosts.toml");
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => {
            parse_hosts_toml(&text, dir).map_err(|e| e.context(file.display()))
        }
        Ok(_) => load_cert_files(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => load_cert_files(dir),
        Err(e) => Err(Error::io(format!("read {}", file.display()), e)),
    }
}

/// Docker's `certs.d/<host>/` layout: `*.crt` CAs, `*.cert` + `*.key` client pairs, for
/// the registry itself.
///
/// # Errors
/// `Io` when the directory cannot be listed.
pub fn load_cert_files(dir: &Path) -> Result<Vec<HostEntry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut entry = HostEntry::registry_itself();
    for n in &names {
        if n.ends_with(".crt") {
            entry.tls.ca.push(dir.join(n));
        } else if let Some(stem) = n.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            let key = key.exists().then_some(key);
            entry.tls.client.push((dir.join(n), key));
        }
    }
    Ok(vec![entry])
}

/// Parses a `hosts.toml`: the `[host."URL"]` entries in file order, then the server
/// (the registry itself when `server` is unset). Relative paths are joined to `base`.
///
/// # Errors
/// `InvalidArgument` for malformed TOML, an unknown capability, a value of the wrong
/// type, or a URL that does not parse.
///
/// ```
/// # use std::path::Path;
/// use strata_remote::hosts::{parse_hosts_toml, Capabilities};
/// let h = parse_hosts_toml(r#"
/// server = "https://registry-1.docker.io"
/// [host."https://mirror.example"]
///   capabilities = ["pull"]
/// "#, Path::new("/etc/containerd/certs.d/docker.io")).unwrap();
/// assert_eq!(h[0].host, "mirror.example");
/// assert_eq!(h[0].capabilities, Capabilities::PULL);
/// assert_eq!(h[1].host, "registry-1.docker.io");
/// assert_eq!(h[1].path, "/v2");
/// ```
pub fn parse_hosts_toml(text: &str, base: &Path) -> Result<Vec<HostEntry>> {
    let doc: Table = text
        .parse()
        .map_err(|e| Error::invalid_argument("malformed TOML").with_source(e))?;
    let mut out = Vec::new();
    if let Some(hosts) = doc.get("host") {
        let hosts = hosts
            .as_table()
            .ok_or_else(|| Error::invalid_argument("\"host\" is not a table"))?;
        for (url, v) in hosts {
            let t = v
                .as_table()
                .ok_or_else(|| Error::invalid_argument(format!("host {url:?} is not a table")))?;
            out.push(
                parse_entry(Some(url.as_str()), t, base)
                    .map_err(|e| e.context(format!("host {url:?}")))?,
            );
        }
    }
    let server = match doc.get("server") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid_argument("\"server\" is not a string")),
    };
    out.push(parse_entry(server, &doc, base).map_err(|e| e.context("server"))?);
    Ok(out)
}

fn parse_entry(url: Option<&str>, t: &Table, base: &Path) -> Result<HostEntry> {
    let mut e = HostEntry::registry_itself();
    let override_path = flag(t, "override_path")?;
    if let Some(url) = url {
        let full = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("https://{url}")
        };
        let u = reqwest::Url::parse(&full)
            .map_err(|err| Error::invalid_argument(format!("URL {url:?}")).with_source(err))?;
        e.scheme = u.scheme().to_string();
        e.host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(Error::invalid_argument(format!("URL {url:?} has no host"))),
        };
        e.path = api_root(u.path(), override_path);
    }
    if let Some(caps) = t.get("capabilities") {
        e.capabilities = parse_capabilities(caps)?;
    }
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    if let Some(ca) = t.get("ca") {
        e.tls.ca = strings(ca, "ca")?.into_iter().map(abs).collect();
    }
    if let Some(client) = t.get("client") {
        e.tls.client = parse_client(client)?
            .into_iter()
            .map(|(c, k)| (abs(c), k.map(abs)))
            .collect();
    }
    e.tls.skip_verify = flag(t, "skip_verify")?;
    if let Some(h) = t.get("header") {
        let h = h
            .as_table()
            .ok_or_else(|| Error::invalid_argument("\"header\" is not a table"))?;
        for (k, v) in h {
            for value in strings(v, &format!("header {k:?}"))? {
                e.headers.push((k.clone(), value));
            }
        }
    }
    Ok(e)
}

/// The API root of a URL path: cleaned, with `/v2` appended unless it ends so or
/// `override_path` is set.
fn api_root(path: &str, override_path: bool) -> String {
    let clean: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let mut p = if clean.is_empty() {
        String::new()
    } else {
        format!("/{}", clean.join("/"))
    };
    if !override_path && !p.ends_with("/v2") {
        p.push_str("/v2");
    }
    p
}

fn flag(t: &Table, key: &str) -> Result<bool> {
    match t.get(key) {
        None => Ok(false),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(Error::invalid_argument(format!("{key:?} is not a boolean"))),
    }
}

fn parse_capabilities(v: &Value) -> Result<Capabilities> {
    let mut c = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };
    for s in strings(v, "capabilities")? {
        match s.to_ascii_lowercase().as_str() {
            "pull" => c.pull = true,
            "resolve" => c.resolve = true,
            "push" => c.push = true,
            "referrers" => {}
            other => {
                return Err(Error::invalid_argument(format!(
                    "unknown capability {other:?}"
                )));
            }
        }
    }
    Ok(c)
}

/// A string, or an array of strings.
fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    let wrong = || Error::invalid_argument(format!("{what} is not a string or a list of strings"));
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(wrong))
            .collect(),
        _ => Err(wrong()),
    }
}

/// `client`: a path, or a list of paths and `[cert, key]` pairs (an empty key means the
/// key is in the certificate file).
fn parse_client(v: &Value) -> Result<Vec<(String, Option<String>)>> {
    let items = match v {
        Value::String(s) => return Ok(vec![(s.clone(), None)]),
        Value::Array(a) => a,
        _ => {
            return Err(Error::invalid_argument(
                "\"client\" is not a path or a list",
            ));
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) => out.push((s.clone(), None)),
            Value::Array(_) => {
                let pair = strings(item, "client pair")?;
                let [cert, key] = <[String; 2]>::try_from(pair).map_err(|p| {
                    Error::invalid_argument(format!("client pair {p:?} is not [cert, key]"))
                })?;
                out.push((cert, Some(key).filter(|k| !k.is_empty())));
            }
            _ => {
                return Err(Error::invalid_argument(
                    "a \"client\" item is not a path or a pair",
                ));
            }
        }
    }
    Ok(out)
}

/// The entries configured for `domain`: the host directory's (when `opts.hosts_dir` is
/// set and has one), else the registry itself.
fn configured(domain: &str, opts: &RegistryOptions) -> Result<Vec<HostEntry>> {
    match opts.hosts_dir.as_deref().and_then(|d| host_dir(d, domain)) {
        Some(dir) => load_host_dir(&dir),
        None => Ok(vec![HostEntry::registry_itself()]),
    }
}

/// A `RegistryOptions::mirrors` item: `host[:port]` (its scheme decided by the host, as
/// for the registry itself) or `http(s)://host[:port][/prefix]`.
fn legacy_mirror(m: &str) -> Result<HostEntry> {
    let mut e = parse_entry(Some(m), &Table::new(), Path::new("/"))
        .map_err(|e| e.context(format!("mirror {m:?}")))?;
    if !m.starts_with("http://") && !m.starts_with("https://") {
        e.scheme.clear();
    }
    e.capabilities = Capabilities::PULL_RESOLVE;
    Ok(e)
}

/// The endpoints for registry `domain`, in the order to try them: the options'
/// mirrors, then the `hosts.toml` hosts, then the server.
///
/// The registry itself is `registry-1.docker.io` for `docker.io`. Its scheme is `http`
/// with `plain_http`, or for a loopback host without TLS settings, else `https`. An
/// `http` endpoint with TLS settings (from `hosts.toml` or [`RegistryOptions::tls`]) and
/// a port other than 80 is spoken to over `https`, as containerd tries first.
///
/// # Errors
/// As [`load_host_dir`], and `InvalidArgument` for a mirror that does not parse.
pub fn endpoints(domain: &str, opts: &RegistryOptions) -> Result<Vec<Endpoint>> {
    let mut entries = Vec::new();
    for m in &opts.mirrors {
        entries.push(legacy_mirror(m)?);
    }
    entries.extend(configured(domain, opts)?);
    Ok(entries
        .into_iter()
        .map(|e| endpoint(domain, opts, e))
        .collect())
}

fn endpoint(domain: &str, opts: &RegistryOptions, e: HostEntry) -> Endpoint {
    let tls = opts.tls.merged(&e.tls);
    let itself = e.host.is_empty();
    let host = match (itself, domain) {
        (true, "docker.io") => "registry-1.docker.io".to_string(),
        (true, _) => domain.to_string(),
        (false, _) => e.host,
    };
    let port_80 = host.rsplit_once(':').is_some_and(|(_, p)| p == "80");
    let scheme = match e.scheme.as_str() {
        "" if opts.plain_http => "http",
        "" if is_loopback(&host) && !tls.is_configured() => "http",
        "" => "https",
        "http" if tls.is_configured() && !port_80 => "https",
        s => s,
    }
    .to_string();
    let ns = (!itself && host != domain).then(|| domain.to_string());
    Endpoint {
        scheme,
        host,
        path: e.path,
        capabilities: e.capabilities,
        tls,
        headers: e.headers,
        ns,
    }
}

/// `<scheme>://<host><path>/<repo>/<suffix>`, with `?ns=<ns>` (or `&ns=`) for a mirror.
pub(crate) fn api_url(
    scheme: &str,
    host: &str,
    path: &str,
    ns: Option<&str>,
    repo: &str,
    suffix: &str,
) -> String {
    let mut u = format!("{scheme}://{host}{path}/{repo}/{suffix}");
    if let Some(ns) = ns {
        u.push(if u.contains('?') { '&' } else { '?' });
        u.push_str("ns=");
        u.push_str(ns);
    }
    u
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
