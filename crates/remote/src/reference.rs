//! Docker-style image references: `[domain[:port]/]path[:tag][@digest]`.
//!
//! Parsing follows docker/distribution's `reference` package: the grammar of
//! `reference.go` (lowercase path components separated by `.`, `_`, `__` or dashes; a
//! domain is the first component when it contains `.` or `:` or is `localhost`; tags are
//! `[\w][\w.-]{0,127}`; names at most 255 characters) and the normalization of
//! `normalize.go` ([`Reference::parse_normalized`]: `busybox` becomes
//! `docker.io/library/busybox`, `index.docker.io` becomes `docker.io`).
//!
//! ```
//! use strata_remote::reference::Reference;
//! let r = Reference::parse_normalized("busybox").unwrap().with_default_tag();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.familiar(), "busybox:latest");
//! let r = Reference::parse_normalized("127.0.0.1:5000/debian:multi").unwrap();
//! assert_eq!((r.domain(), r.path(), r.tag()), ("127.0.0.1:5000", "debian", Some("multi")));
//! ```

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use strata_content::digest::DigestAlgorithm;
use strata_content::{Digest, Error, Result};

/// The default registry of familiar names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy spelling of [`DEFAULT_DOMAIN`], normalized to it.
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The repository prefix of single-component names on [`DEFAULT_DOMAIN`].
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag added by [`Reference::with_default_tag`].
pub const DEFAULT_TAG: &str = "latest";
/// The longest name (domain and path) accepted.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

const DOMAIN_COMPONENT: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const PATH_COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";

static DOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!(r"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*");
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    Regex::new(&format!(r"^(?:{name}|{ipv6})(?::[0-9]+)?$")).expect("domain regex")
});
static PATH_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*$")).expect("path regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w][\w.-]{0,127}$").expect("tag regex"));
static DIGEST_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
        .expect("digest regex")
});
static ANCHORED_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").expect("id regex"));

/// A parsed image reference.
///
/// `domain` may be empty only for references parsed with [`Reference::parse`] that had
/// no domain component; [`Reference::parse_normalized`] always fills it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(input: &str, why: &str) -> Error {
    Error::invalid_argument(format!("invalid reference {input:?}: {why}"))
}

/// The name an image record gets for `name`: its normalized form with the default tag
/// (`debian` → `docker.io/library/debian:latest`), or `name` itself when it is not a
/// reference (local names such as `my image` stay as given). The CLI and
/// `strata::Root` name images this way.
///
/// ```
/// use strata_remote::reference::normalize;
/// assert_eq!(normalize("debian:minbase"), "docker.io/library/debian:minbase");
/// assert_eq!(normalize("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
/// ```
pub fn normalize(name: &str) -> String {
    Reference::parse_normalized(name)
        .map(|r| r.with_default_tag().to_string())
        .unwrap_or_else(|_| name.to_string())
}

impl Reference {
    /// Parses `s` exactly as written (docker's `reference.Parse`): no default domain,
    /// no `library/` prefix, no default tag.
    ///
    /// # Errors
    /// `InvalidArgument` naming the input and what is wrong with it (empty, bad format,
    /// uppercase repository, name too long, bad tag or digest).
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(s, "reference is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                if !DIGEST_RE.is_match(d) {
                    return Err(invalid(s, "invalid digest format"));
                }
                let digest: Digest = d
                    .parse()
                    .map_err(|_| invalid(s, "unsupported or malformed digest"))?;
                if matches!(digest.algorithm(), DigestAlgorithm::Other(_)) {
                    return Err(invalid(s, "unsupported digest algorithm"));
                }
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // The tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag
            && !TAG_RE.is_match(t)
        {
            return Err(invalid(s, "invalid tag format"));
        }
        if name.is_empty() {
            return Err(invalid(s, "repository name is empty"));
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                s,
                &format!(
                    "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
                ),
            ));
        }
        let (domain, path) = split_domain_raw(name);
        if !domain.is_empty() && !DOMAIN_RE.is_match(domain) {
            return Err(invalid(s, "invalid domain"));
        }
        if !PATH_RE.is_match(path) {
            if path.chars().any(|c| c.is_ascii_uppercase())
                && PATH_RE.is_match(&path.to_ascii_lowercase())
            {
                return Err(invalid(s, "repository name must be lowercase"));
            }
            return Err(invalid(s, "invalid reference format"));
        }
        Ok(Reference {
            domain: domain.to_string(),
            path: path.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parses a familiar or full reference and normalizes it (docker's
    /// `ParseNormalizedNamed`): a name without a domain gets `docker.io`,
    /// `index.docker.io` becomes `docker.io`, and a one-component path on `docker.io`
    /// gets `library/`.
    ///
    /// # Errors
    /// As [`Reference::parse`]; also `InvalidArgument` for a bare 64-hex identifier
    /// (which names an image ID, not a repository) and for uppercase in the repository.
    pub fn parse_normalized(s: &str) -> Result<Self> {
        if ANCHORED_ID_RE.is_match(s) {
            return Err(invalid(
                s,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = remainder.split(['@', ':']).next().unwrap_or_default();
        // `remainder` keeps its tag; check case only on the repository part.
        if remote_name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        let full = format!("{domain}/{remainder}");
        let r = Reference::parse(&full).map_err(|e| {
            Error::invalid_argument(e.message().replace(&format!("{full:?}"), &format!("{s:?}")))
        })?;
        if r.domain.is_empty() {
            return Err(invalid(s, "invalid reference format"));
        }
        Ok(r)
    }

    /// The registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full name, `domain/path` (just the path when there is no domain).
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag
    /// ([`DEFAULT_TAG`] when neither is set).
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// Adds [`DEFAULT_TAG`] when the reference has neither a tag nor a digest (docker's
    /// `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// The same repository with `tag` and no digest.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !TAG_RE.is_match(tag) {
            return Err(Error::invalid_argument(format!("invalid tag {tag:?}")));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository with `digest` (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The short form users type: `docker.io/library/x` → `x`, `docker.io/u/x` → `u/x`
    /// (docker's `FamiliarString`; unlike docker, `docker.io/a.b/x` stays whole so the
    /// short form always parses back to the same reference).
    pub fn familiar(&self) -> String {
        // A path whose first component looks like a domain keeps `docker.io/`, or the
        // short form would name another registry (`docker.io/a.b/c` is not `a.b/c`).
        let first_is_domain = self
            .path
            .split_once('/')
            .is_some_and(|(first, _)| is_domain_like(first));
        let mut name = if self.domain == DEFAULT_DOMAIN && !first_is_domain {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                // `library/<64 hex>` stays whole: a bare 64-hex name reads as an image ID.
                .filter(|rest| !rest.contains('/') && !ANCHORED_ID_RE.is_match(rest))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        };
        self.push_suffix(&mut name);
        name
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d.as_ref());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse_normalized(s)
    }
}

/// Splits at the first '/' when the first component looks like a domain.
fn split_domain_raw(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if is_domain_like(first) => (first, rest),
        _ => ("", name),
    }
}

fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// docker's `splitDockerDomain`: the domain (defaulted) and the remainder (path with tag
/// and digest).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest)) if is_domain_like(first) || first.to_ascii_lowercase() != first => {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests;
