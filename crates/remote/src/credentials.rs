//! Where registry credentials come from, after the Docker CLI and containers/image:
//! `${XDG_RUNTIME_DIR}/containers/auth.json` (or `$REGISTRY_AUTH_FILE`), then Docker's
//! `config.json`. In each file, as the Docker CLI does: the `credHelpers` entry for the
//! host, else the `credsStore`, else the `auths` entry.
//!
//! A credential helper is the program `docker-credential-<name>`: `get` with the
//! registry host on stdin prints `{"ServerURL", "Username", "Secret"}`; a `Username`
//! of `<token>` means the secret is an identity token (used as an OAuth2 refresh
//! token). A helper that answers "credentials not found" gives none; one that fails
//! otherwise is an error naming it. Answers are cached per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use strata_content::{Error, Result};

use crate::auth::Credentials;
use crate::docker_config::{self, DockerConfig};

/// Where to look for credentials; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSources {
    /// Docker's config file; `None` for `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// containers' `auth.json`; `None` for `$REGISTRY_AUTH_FILE`, else
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`.
    pub auth_json: Option<PathBuf>,
    /// The directory holding the `docker-credential-*` helpers; `None` searches `PATH`.
    pub helper_dir: Option<PathBuf>,
}

impl CredentialSources {
    fn auth_json_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.auth_json {
            return Some(p.clone());
        }
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
            return Some(p.into());
        }
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|p| !p.is_empty())
            .map(|d| PathBuf::from(d).join("containers/auth.json"))
    }
}

/// The credentials of the configured files and helpers.
#[derive(Debug, Default)]
pub struct CredentialStore {
    files: Vec<DockerConfig>,
    helper_dir: Option<PathBuf>,
}

impl CredentialStore {
    /// Reads the files of `sources`; missing files give no credentials.
    ///
    /// # Errors
    /// As [`DockerConfig::load`] for a file that exists but cannot be read or parsed.
    pub fn load(sources: &CredentialSources) -> Result<Self> {
        let mut files = Vec::new();
        let docker = sources
            .docker_config
            .clone()
            .or_else(docker_config::default_path);
        for p in [sources.auth_json_path(), docker].into_iter().flatten() {
            if p.exists() {
                files.push(DockerConfig::load(&p)?);
            }
        }
        Ok(CredentialStore {
            files,
            helper_dir: sources.helper_dir.clone(),
        })
    }

    /// A store over already parsed configs (tried in order).
    pub fn from_configs(files: Vec<DockerConfig>, helper_dir: Option<PathBuf>) -> Self {
        CredentialStore { files, helper_dir }
    }

    /// The credentials for `host` (`host[:port]`).
    ///
    /// # Errors
    /// `FailedPrecondition` naming the helper when a credential helper cannot be run or
    /// fails.
    pub fn get(&self, host: &str) -> Result<Option<Credentials>> {
        for f in &self.files {
            if let Some(helper) = f.helper_for(host) {
                return run_cached(helper, self.helper_dir.as_deref(), host);
            }
            if let Some(store) = f.creds_store() {
                return run_cached(store, self.helper_dir.as_deref(), host);
            }
            if let Some(c) = f.get(host) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

type HelperKey = (String, Option<PathBuf>, String);
type HelperAnswer = std::result::Result<Option<Credentials>, String>;

fn cache() -> &'static Mutex<HashMap<HelperKey, Arc<OnceLock<HelperAnswer>>>> {
    static CACHE: OnceLock<Mutex<HashMap<HelperKey, Arc<OnceLock<HelperAnswer>>>>> =
        OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Runs a helper once per (helper, directory, host) in this process.
fn run_cached(helper: &str, dir: Option<&Path>, host: &str) -> Result<Option<Credentials>> {
    let key = (
        helper.to_string(),
        dir.map(Path::to_path_buf),
        host.to_string(),
    );
    let cell = cache().lock().unwrap().entry(key).or_default().clone();
    let ans =
        cell.get_or_init(|| run_helper(helper, dir, host).map_err(|e| e.message().to_string()));
    ans.clone().map_err(Error::failed_precondition)
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The server URL a helper is asked about: Docker Hub's historical key, else the host.
fn server_url(host: &str) -> String {
    match host {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

/// Runs `docker-credential-<helper> get` for `host`.
///
/// # Errors
/// `FailedPrecondition` naming the helper when it cannot be started, fails (other than
/// with "credentials not found") or prints something other than its JSON answer.
pub fn run_helper(helper: &str, dir: Option<&Path>, host: &str) -> Result<Option<Credentials>> {
    let prog = format!("docker-credential-{helper}");
    let path = dir
        .map(|d| d.join(&prog))
        .unwrap_or_else(|| prog.clone().into());
    let fail = |what: String| {
        Error::failed_precondition(format!("credential helper {prog} for {host}: {what}"))
    };
    let mut child = Command::new(&path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", path.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        // A helper that exits without reading stdin is judged by its exit status.
        let _ = stdin.write_all(server_url(host).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("wait: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let msg = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("{}: {}", out.status, msg.trim())));
    }
    let ans: HelperOutput =
        serde_json::from_str(&stdout).map_err(|e| fail(format!("unreadable answer ({e})")))?;
    if ans.username == "<token>" {
        return Ok(Some(Credentials {
            username: String::new(),
            secret: ans.secret,
        }));
    }
    Ok(Some(Credentials {
        username: ans.username,
        secret: ans.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn helper(dir: &Path, name: &str, script: &str) {
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn helpers_store_and_auths() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "good",
            r#"read h; echo "{\"ServerURL\":\"$h\",\"Username\":\"u-$h\",\"Secret\":\"s\"}""#,
        );
        helper(
            dir.path(),
            "tok",
            r#"read h; echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#,
        );
        helper(
            dir.path(),
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        helper(dir.path(), "broken", "echo 'keychain locked' >&2; exit 3");
        let cfg = DockerConfig::parse(
            br#"{"auths":{"plain.example":{"auth":"dTpw"}},
                 "credHelpers":{"a.example":"good","t.example":"tok","n.example":"none","b.example":"broken","plain.example":"good"},
                 "credsStore":"good"}"#,
        )
        .unwrap();
        let s = CredentialStore::from_configs(vec![cfg], Some(dir.path().to_path_buf()));
        let files = DockerConfig::parse(br#"{"auths":{"plain.example":{"auth":"dTpw"}}}"#);
        let plain = CredentialStore::from_configs(vec![files.unwrap()], None);
        assert_eq!(plain.get("plain.example").unwrap().unwrap().username, "u");
        let c = s.get("a.example").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("u-a.example", "s")
        );
        let t = s.get("t.example").unwrap().unwrap();
        assert!(t.username.is_empty(), "an identity token");
        assert_eq!(t.secret, "refresh");
        assert_eq!(s.get("n.example").unwrap(), None);
        let e = s.get("b.example").unwrap_err();
        assert!(e.to_string().contains("docker-credential-broken"), "{e}");
        assert!(e.to_string().contains("keychain locked"), "{e}");
        // credHelpers and credsStore win over auths.
        assert_eq!(
            s.get("plain.example").unwrap().unwrap().username,
            "u-plain.example"
        );
        let hub = s.get("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "u-https://index.docker.io/v1/");
    }

    #[test]
    fn missing_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DockerConfig::parse(br#"{"credsStore":"absent"}"#).unwrap();
        let s = CredentialStore::from_configs(vec![cfg], Some(dir.path().to_path_buf()));
        let e = s.get("h.example").unwrap_err();
        assert!(e.is_failed_precondition());
        assert!(e.to_string().contains("docker-credential-absent"), "{e}");
    }

    #[test]
    fn auth_json_first() {
        let dir = tempfile::tempdir().unwrap();
        let aj = dir.path().join("auth.json");
        let dc = dir.path().join("config.json");
        std::fs::write(&aj, br#"{"auths":{"h:1":{"auth":"YTpi"}}}"#).unwrap();
        std::fs::write(
            &dc,
            br#"{"auths":{"h:1":{"auth":"dTpw"},"o:2":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let s = CredentialStore::load(&CredentialSources {
            docker_config: Some(dc),
            auth_json: Some(aj),
            helper_dir: None,
        })
        .unwrap();
        assert_eq!(s.get("h:1").unwrap().unwrap().username, "a");
        assert_eq!(s.get("o:2").unwrap().unwrap().username, "u");
        assert_eq!(s.get("none").unwrap(), None);
    }
}
