//! TLS settings of a registry endpoint and the HTTP clients built from them.
//!
//! Every client trusts the system roots (through rustls' platform verifier, which on
//! Linux reads the system store or, when set, `SSL_CERT_FILE` / `SSL_CERT_DIR`). A
//! [`TlsConfig`] adds CA bundles, a client certificate (mTLS) or `skip_verify` for one
//! host. One `reqwest::Client` is built per distinct configuration and cached, so
//! endpoints with the same settings share a connection pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use strata_content::{Error, Result};

use crate::proxy::ProxyConfig;

/// TLS settings for one registry endpoint, after containerd's `ca`, `client` and
/// `skip_verify` keys of `hosts.toml` (and `ctr`'s `--tlscacert`, `--tlscert`,
/// `--tlskey`, `--skip-verify`).
///
/// ```
/// use strata_remote::TlsConfig;
/// let mut t = TlsConfig::default();
/// assert!(!t.is_configured());
/// t.ca.push("/etc/certs/ca.pem".into());
/// assert!(t.is_configured());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// PEM files of extra CA certificates, trusted besides the system roots.
    pub ca: Vec<PathBuf>,
    /// Client certificates: `(certificate PEM, key PEM)`; a `None` key means the key is
    /// in the certificate file. The first pair is presented.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// Skip verifying the server's certificate chain and name.
    pub skip_verify: bool,
}

impl TlsConfig {
    /// Whether anything is set (a host with TLS configured is spoken to over HTTPS,
    /// loopback ones included).
    pub fn is_configured(&self) -> bool {
        !self.ca.is_empty() || !self.client.is_empty() || self.skip_verify
    }

    /// This configuration with `other`'s added: CAs and client pairs appended,
    /// `skip_verify` if either sets it (containerd applies a host's settings over the
    /// default TLS config the same way).
    pub fn merged(&self, other: &TlsConfig) -> TlsConfig {
        let mut out = self.clone();
        out.ca.extend(other.ca.iter().cloned());
        out.client.extend(other.client.iter().cloned());
        out.skip_verify |= other.skip_verify;
        out
    }
}

/// The settings every client of one resolver shares.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub user_agent: String,
    pub proxy: ProxyConfig,
}

/// `reqwest::Client`s by TLS configuration, built on first use.
pub(crate) struct ClientCache {
    base: Base,
    clients: Mutex<HashMap<TlsConfig, reqwest::Client>>,
}

impl ClientCache {
    pub fn new(base: Base) -> Self {
        ClientCache {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `tls`, used to reach `host` (named in errors).
    ///
    /// # Errors
    /// `InvalidArgument` naming the host and file when a CA or client certificate file
    /// cannot be read or parsed; `Internal` when the TLS backend refuses the settings.
    pub fn get(&self, host: &str, tls: &TlsConfig) -> Result<reqwest::Client> {
        if let Some(c) = self.clients.lock().unwrap().get(tls) {
            return Ok(c.clone());
        }
        let c = build(&self.base, host, tls)?;
        self.clients
            .lock()
            .unwrap()
            .entry(tls.clone())
            .or_insert(c.clone());
        Ok(c)
    }
}

fn read(host: &str, what: &str, p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::io(format!("{host}: read {what} {}", p.display()), e))
}

fn build(base: &Base, host: &str, tls: &TlsConfig) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(base.user_agent.clone())
        .connect_timeout(Duration::from_secs(30));
    b = base.proxy.apply(b)?;
    let mut roots = Vec::new();
    for p in &tls.ca {
        let pem = read(host, "CA certificate", p)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid_argument(format!("{host}: CA certificate {}", p.display()))
                .with_source(e)
        })?;
        if certs.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{host}: CA certificate {} holds no PEM certificate",
                p.display()
            )));
        }
        roots.extend(certs);
    }
    if !roots.is_empty() {
        b = b.tls_certs_merge(roots);
    }
    if let Some((cert, key)) = tls.client.first() {
        let mut pem = read(host, "client certificate", cert)?;
        if let Some(k) = key {
            pem.push(b'\n');
            pem.extend(read(host, "client key", k)?);
        }
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            Error::invalid_argument(format!(
                "{host}: client certificate {} (with its key)",
                cert.display()
            ))
            .with_source(e)
        })?;
        b = b.identity(id);
    }
    if tls.skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| Error::internal(format!("{host}: build HTTP client")).with_source(e))
}

/// A description of a transport error that names the innermost causes: the
/// certificate problem of a failed handshake (`invalid peer certificate: UnknownIssuer`),
/// the refused connection, the proxy's answer.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Whether a transport error's causes show a TLS problem (a certificate refused by
/// either side, a failed handshake, a TLS alert).
pub(crate) fn is_certificate_error(cause: &str) -> bool {
    let t = cause.to_ascii_lowercase();
    ["certificate", "handshake", "alert", "corrupt message"]
        .iter()
        .any(|w| t.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Base {
        Base {
            user_agent: "t".into(),
            proxy: ProxyConfig::none(),
        }
    }

    #[test]
    fn merges_and_caches() {
        let a = TlsConfig {
            ca: vec!["a".into()],
            ..Default::default()
        };
        let b = TlsConfig {
            client: vec![("c".into(), None)],
            skip_verify: true,
            ..Default::default()
        };
        let m = a.merged(&b);
        assert_eq!(m.ca, [PathBuf::from("a")]);
        assert_eq!(m.client.len(), 1);
        assert!(m.skip_verify && m.is_configured());
        let cache = ClientCache::new(base());
        cache.get("h", &TlsConfig::default()).unwrap();
        cache
            .get(
                "h",
                &TlsConfig {
                    skip_verify: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(cache.clients.lock().unwrap().len(), 2);
        cache.get("h", &TlsConfig::default()).unwrap();
        assert_eq!(cache.clients.lock().unwrap().len(), 2);
    }

    #[test]
    fn bad_files_name_host_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ClientCache::new(base());
        let missing = TlsConfig {
            ca: vec![dir.path().join("none.pem")],
            ..Default::default()
        };
        let e = cache.get("reg.example:5000", &missing).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().contains("reg.example:5000"), "{e}");
        assert!(e.to_string().contains("none.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = cache
            .get(
                "h",
                &TlsConfig {
                    ca: vec![junk.clone()],
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(
            e.is_invalid_argument() && e.to_string().contains("junk.pem"),
            "{e}"
        );
        let e = cache
            .get(
                "h",
                &TlsConfig {
                    client: vec![(junk, None)],
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("client certificate"), "{e}");
    }

    #[test]
    fn describes_chains() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = Error::unavailable("connect").with_source(inner);
        let d = describe(&outer);
        assert!(d.contains("UnknownIssuer"), "{d}");
        assert!(is_certificate_error(&d));
        assert!(!is_certificate_error("connection refused"));
    }
}
