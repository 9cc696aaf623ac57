//! Credentials from Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): the `auths` map, with either a base64 `auth` of
//! `user:password`, explicit `username`/`password`, or an `identitytoken`; and the names
//! of the credential helpers (`credsStore`, `credHelpers`), which
//! [`credentials`](crate::credentials) runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use strata_content::{Error, Result};

use super::auth::Credentials;

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: String,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
}

/// Credentials read from a Docker config file, by registry host.
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    by_host: HashMap<String, Credentials>,
    creds_store: Option<String>,
    helpers: HashMap<String, String>,
}

/// The default location of Docker's config file.
pub fn default_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The host a config key names: `https://index.docker.io/v1/` → `docker.io`,
/// `http://h:5000/v2/` → `h:5000`.
fn key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    canonical_host(&host)
}

fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    }
}

impl DockerConfig {
    /// Reads the config at the default path; a missing file gives no credentials.
    ///
    /// # Errors
    /// As [`DockerConfig::load`].
    pub fn load_default() -> Result<Self> {
        match default_path() {
            Some(p) if p.exists() => Self::load(&p),
            _ => Ok(Self::default()),
        }
    }

    /// Reads the config file at `path`.
    ///
    /// # Errors
    /// `Io` when it cannot be read; `InvalidArgument` when it is not valid JSON or an
    /// `auth` value is not base64 of `user:password`.
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path)
            .map_err(|e| Error::io(format!("read docker config {}", path.display()), e))?;
        Self::parse(&data).map_err(|e| e.context(format!("docker config {}", path.display())))
    }

    /// Parses config JSON.
    ///
    /// # Errors
    /// As [`DockerConfig::load`].
    pub fn parse(data: &[u8]) -> Result<Self> {
        let f: ConfigFile = serde_json::from_slice(data)
            .map_err(|e| Error::invalid_argument("malformed JSON").with_source(e))?;
        let mut by_host = HashMap::new();
        for (key, e) in f.auths {
            let creds = if !e.identitytoken.is_empty() {
                Credentials {
                    username: String::new(),
                    secret: e.identitytoken,
                }
            } else if !e.auth.is_empty() {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(e.auth.trim())
                    .map_err(|err| {
                        Error::invalid_argument(format!("auth of {key:?} is not base64"))
                            .with_source(err)
                    })?;
                let raw = String::from_utf8_lossy(&raw).into_owned();
                let (u, p) = raw.split_once(':').ok_or_else(|| {
                    Error::invalid_argument(format!("auth of {key:?} is not user:password"))
                })?;
                Credentials {
                    username: u.to_string(),
                    secret: p.to_string(),
                }
            } else if !e.username.is_empty() {
                Credentials {
                    username: e.username,
                    secret: e.password,
                }
            } else {
                continue;
            };
            by_host.insert(key_host(&key), creds);
        }
        let helpers = f
            .cred_helpers
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (key_host(&k), v))
            .collect();
        Ok(DockerConfig {
            by_host,
            creds_store: Some(f.creds_store).filter(|s| !s.is_empty()),
            helpers,
        })
    }

    /// The `credHelpers` entry for `host`: the helper's name (`ecr-login` for
    /// `docker-credential-ecr-login`).
    pub fn helper_for(&self, host: &str) -> Option<&str> {
        self.helpers
            .get(&canonical_host(&host.to_ascii_lowercase()))
            .map(String::as_str)
    }

    /// The `credsStore`: the helper for hosts without their own.
    pub fn creds_store(&self) -> Option<&str> {
        self.creds_store.as_deref()
    }

    /// The credentials for `host` (`host[:port]`; the Docker Hub aliases are one host).
    pub fn get(&self, host: &str) -> Option<Credentials> {
        self.by_host
            .get(&canonical_host(&host.to_ascii_lowercase()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000":{"username":"a","password":"b"},
            "http://reg.example:8080/v2/":{"identitytoken":"tok"},
            "empty.example":{}
        },"credsStore":"desktop"}"#;
        let c = DockerConfig::parse(json).unwrap();
        let hub = c.get("registry-1.docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.secret.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.get("docker.io"), Some(hub));
        assert_eq!(c.get("127.0.0.1:5000").unwrap().secret, "b");
        let t = c.get("reg.example:8080").unwrap();
        assert!(t.username.is_empty());
        assert_eq!(t.secret, "tok");
        assert!(c.get("empty.example").is_none());
        assert!(c.get("other").is_none());
        assert_eq!(c.creds_store(), Some("desktop"));
        assert_eq!(c.helper_for("docker.io"), None);
        let h = DockerConfig::parse(
            br#"{"credHelpers":{"https://index.docker.io/v1/":"hub","gcr.io":""}}"#,
        )
        .unwrap();
        assert_eq!(h.helper_for("registry-1.docker.io"), Some("hub"));
        assert_eq!(h.helper_for("gcr.io"), None);
        assert_eq!(h.creds_store(), None);
    }

    #[test]
    fn rejects_bad_auth() {
        let e = DockerConfig::parse(br#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap_err();
        assert!(e.is_invalid_argument());
        let e = DockerConfig::parse(br#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(e.to_string().contains("user:password"), "{e}");
        assert!(DockerConfig::parse(b"{").unwrap_err().is_invalid_argument());
    }

    #[test]
    fn loads_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, br#"{"auths":{"h:1":{"auth":"dTpw"}}}"#).unwrap();
        assert_eq!(
            DockerConfig::load(&p).unwrap().get("h:1").unwrap().username,
            "u"
        );
        assert!(
            DockerConfig::load(&dir.path().join("none"))
                .unwrap_err()
                .is_not_found()
        );
    }
}
