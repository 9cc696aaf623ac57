//! Forward proxies for registry requests: `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`
//! (or their lowercase forms), or the same settings given in [`RegistryOptions`].
//!
//! The environment is read once, when a resolver is built; after that the settings are
//! explicit (the HTTP clients never look at the environment themselves). As Go's
//! `net/http` (and so containerd) does, settings from the environment never proxy
//! loopback hosts unless `NO_PROXY` is set, in which case it alone decides.
//!
//! [`RegistryOptions`]: crate::RegistryOptions

use strata_content::{Error, Result};

/// Which proxy each request goes through.
///
/// ```
/// use strata_remote::ProxyConfig;
/// let p = ProxyConfig::from_vars(|k| match k {
///     "HTTPS_PROXY" => Some("http://proxy.example:3128".to_string()),
///     _ => None,
/// });
/// assert_eq!(p.https.as_deref(), Some("http://proxy.example:3128"));
/// assert!(p.http.is_none());
/// assert!(p.no_proxy.contains("127.0.0.0/8"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProxyConfig {
    /// The proxy URL for `http://` registries.
    pub http: Option<String>,
    /// The proxy URL for `https://` registries (tunnelled with `CONNECT`).
    pub https: Option<String>,
    /// Hosts reached directly: comma-separated names (a leading `.` or `*.` matches
    /// subdomains), IP addresses and CIDR ranges, or `*` for all.
    pub no_proxy: String,
}

/// What `NO_PROXY` is when the environment does not set it.
const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";

impl ProxyConfig {
    /// No proxy at all.
    pub fn none() -> Self {
        ProxyConfig::default()
    }

    /// The settings of this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The settings of an environment given by `get` (`HTTP_PROXY`, `HTTPS_PROXY`,
    /// `NO_PROXY`, each also lowercase; empty values are unset).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            get(name)
                .or_else(|| get(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        let no_proxy = match get("NO_PROXY").or_else(|| get("no_proxy")) {
            Some(v) => v,
            None => LOOPBACK.to_string(),
        };
        ProxyConfig {
            http: var("HTTP_PROXY"),
            https: var("HTTPS_PROXY"),
            no_proxy,
        }
    }

    /// Applies the settings to a client builder (and turns off reqwest's own reading of
    /// the environment).
    ///
    /// # Errors
    /// `InvalidArgument` for a proxy URL that does not parse.
    pub(crate) fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
        b = b.no_proxy();
        let no = reqwest::NoProxy::from_string(&self.no_proxy);
        if let Some(u) = &self.http {
            let p = reqwest::Proxy::http(u).map_err(|e| bad(u, e))?;
            b = b.proxy(p.no_proxy(no.clone()));
        }
        if let Some(u) = &self.https {
            let p = reqwest::Proxy::https(u).map_err(|e| bad(u, e))?;
            b = b.proxy(p.no_proxy(no));
        }
        Ok(b)
    }
}

fn bad(url: &str, e: reqwest::Error) -> Error {
    Error::invalid_argument(format!("proxy URL {url:?}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vars() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let p = ProxyConfig::from_vars(env(&[("http_proxy", "http://p:1"), ("NO_PROXY", "")]));
        assert_eq!(p.http.as_deref(), Some("http://p:1"));
        assert_eq!(
            p.no_proxy, "",
            "an explicit empty NO_PROXY proxies loopback too"
        );
        let p = ProxyConfig::from_vars(env(&[("HTTP_PROXY", " "), ("no_proxy", "a.example")]));
        assert!(p.http.is_none());
        assert_eq!(p.no_proxy, "a.example");
        assert_eq!(ProxyConfig::from_vars(|_| None).no_proxy, LOOPBACK);
    }

    #[test]
    fn applies_and_rejects() {
        let ok = ProxyConfig {
            http: Some("http://127.0.0.1:3128".into()),
            https: Some("http://127.0.0.1:3128".into()),
            no_proxy: LOOPBACK.into(),
        };
        ok.apply(reqwest::Client::builder())
            .unwrap()
            .build()
            .unwrap();
        let bad = ProxyConfig {
            http: Some("::not a url".into()),
            ..Default::default()
        };
        let e = bad.apply(reqwest::Client::builder()).unwrap_err();
        assert!(
            e.is_invalid_argument() && e.to_string().contains("not a url"),
            "{e}"
        );
    }
}
