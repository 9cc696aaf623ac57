//! Resolving a reference to the descriptor of its manifest or index.

use std::sync::Arc;

use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use strata_content::digest::sha256;
use strata_content::{Descriptor, Digest, Error, MediaType, Result};

use super::client::{Client, Req, Tried, repo_scope, status_error, try_next_host};
use super::{Fetcher, Pusher, RegistryOptions};
use crate::hosts::Capabilities;
use crate::media_types;
use crate::reference::Reference;

/// The largest manifest or index accepted, as containerd's `MaxManifestSize`
/// (`4 * 1048 * 1048` bytes, about 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1048 * 1048;

/// Resolves references and hands out fetchers and pushers; cheap to clone, shares the
/// HTTP connection pool and the token cache.
#[derive(Clone)]
pub struct Resolver {
    client: Arc<Client>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("opts", &self.client.opts)
            .finish()
    }
}

pub(crate) fn accept_header() -> String {
    media_types::RESOLVE_ACCEPT.join(", ")
}

impl Resolver {
    /// A resolver with `opts`.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed Docker config file; `Internal` when the HTTP
    /// client cannot be built.
    pub fn new(opts: RegistryOptions) -> Result<Self> {
        Ok(Resolver {
            client: Client::new(opts)?,
        })
    }

    /// The options this resolver was built with.
    pub fn options(&self) -> &RegistryOptions {
        &self.client.opts
    }

    /// A fetcher for `r`'s repository.
    pub fn fetcher(&self, r: &Reference) -> Fetcher {
        Fetcher::new(self.client.clone(), r.domain(), r.path())
    }

    /// A pusher for `r`'s repository (the registry itself, never a mirror).
    pub fn pusher(&self, r: &Reference) -> Pusher {
        Pusher::new(self.client.clone(), r.domain(), r.path())
    }

    /// Resolves `r` (its digest if it has one, else its tag, else `latest`) to the
    /// descriptor of the manifest or index, trying each host in order: HEAD, then GET
    /// when the HEAD lacks the digest or size. The digest comes from
    /// `Docker-Content-Digest` or from hashing the body.
    ///
    /// # Errors
    /// - `NotFound` when no host has the reference. When several hosts were tried, the
    ///   message names each (mirror or registry) with its error.
    /// - `NotImplemented` for a Docker schema 1 manifest.
    /// - `InvalidArgument` for a manifest over [`MAX_MANIFEST_SIZE`] or an unknown body.
    /// - `FailedPrecondition` when the body does not match the requested digest, or
    ///   authentication fails.
    /// - `Unavailable` when the registry cannot be reached.
    pub async fn resolve(&self, r: &Reference) -> Result<Descriptor> {
        // A tag needs a host trusted to resolve; a digest is verified, any puller does.
        let need = if r.digest().is_some() {
            Capabilities::PULL
        } else {
            Capabilities::PULL_RESOLVE
        };
        let hosts = self.client.hosts(r.domain(), need)?;
        let scopes = [repo_scope(r.path(), false)];
        let mut tried = Tried::new(format!("resolve {r}"));
        for host in &hosts {
            match self.resolve_on(host, &scopes, r).await {
                Ok(d) => return Ok(d),
                Err(e) if try_next_host(&e) => tried.push(host, e),
                Err(e) => return Err(e.context(format!("resolve {r} on {}", host.describe()))),
            }
        }
        Err(tried.finish())
    }

    async fn resolve_on(
        &self,
        host: &super::client::Host,
        scopes: &[String],
        r: &Reference,
    ) -> Result<Descriptor> {
        let url = host.url(r.path(), &format!("manifests/{}", r.object()));
        let head = Req::new(Method::HEAD, url.clone()).header(ACCEPT, &accept_header());
        let resp = self.client.send(host, scopes, &head).await?;
        if resp.status().is_success() {
            let h = resp.headers();
            let mt = content_type(h);
            let size = h
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let digest = match r.digest() {
                Some(d) => Some(d.clone()),
                None => h
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<Digest>().ok()),
            };
            if let (Some(mt), Some(size), Some(digest)) = (mt.clone(), size, digest)
                && size > 0
                && !generic_type(&mt)
            {
                check_type_and_size(r, &mt, size)?;
                return Ok(Descriptor::new(MediaType::from(mt.as_str()), size, digest));
            }
        } else if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
            return Err(status_error(&head, resp).await);
        }
        // GET the manifest to learn what HEAD did not tell.
        let get = Req::new(Method::GET, url).header(ACCEPT, &accept_header());
        let resp = self.client.send(host, scopes, &get).await?;
        if !resp.status().is_success() {
            return Err(status_error(&get, resp).await);
        }
        let mt = content_type(resp.headers());
        if let Some(n) = resp.content_length()
            && n > MAX_MANIFEST_SIZE
        {
            return Err(too_large(r, n));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| Error::unavailable(format!("read manifest of {r}")).with_source(e))?;
            if body.len() as u64 + chunk.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(too_large(r, body.len() as u64 + chunk.len() as u64));
            }
            body.extend_from_slice(&chunk);
        }
        let digest = sha256(&body);
        if let Some(want) = r.digest()
            && *want != digest
        {
            return Err(Error::failed_precondition(format!(
                "manifest of {r} has digest {digest}, not {want}"
            )));
        }
        if let Some(hd) = header_digest
            && hd.starts_with("sha256:")
            && hd != digest.to_string()
        {
            return Err(Error::failed_precondition(format!(
                "manifest of {r} has digest {digest}, but the registry says {hd}"
            )));
        }
        let mt = match mt.filter(|m| !generic_type(m)) {
            Some(m) => m,
            None => sniff_media_type(&body).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "{r}: the registry returned a body that is not a known manifest or index"
                ))
            })?,
        };
        check_type_and_size(r, &mt, body.len() as u64)?;
        Ok(Descriptor::new(
            MediaType::from(mt.as_str()),
            body.len() as u64,
            digest,
        ))
    }
}

fn too_large(r: &Reference, n: u64) -> Error {
    Error::invalid_argument(format!(
        "manifest of {r} is {n} bytes, over the {MAX_MANIFEST_SIZE}-byte limit"
    ))
}

fn content_type(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

fn generic_type(mt: &str) -> bool {
    matches!(
        mt,
        "application/json" | "text/plain" | "application/octet-stream"
    )
}

/// The media type of a manifest body without a useful `Content-Type`.
pub(crate) fn sniff_media_type(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Some(media_types::DOCKER_SCHEMA1_MANIFEST.to_string());
    }
    if v.get("manifests").is_some() {
        return Some(media_types::OCI_INDEX.to_string());
    }
    if v.get("config").is_some() || v.get("layers").is_some() {
        return Some(media_types::OCI_MANIFEST.to_string());
    }
    None
}

pub(crate) fn check_type_and_size(r: &impl std::fmt::Display, mt: &str, size: u64) -> Result<()> {
    if media_types::is_schema1(mt) {
        return Err(Error::not_implemented(format!(
            "{r}: media type {mt} (Docker schema 1) is not supported; re-push the image with a current client to convert it to schema 2 or OCI"
        )));
    }
    if !media_types::is_index(mt) && !media_types::is_manifest(mt) {
        return Err(Error::not_implemented(format!(
            "{r}: media type {mt} is not a manifest or index type strata can pull"
        )));
    }
    if size > MAX_MANIFEST_SIZE {
        return Err(Error::invalid_argument(format!(
            "manifest of {r} is {size} bytes, over the {MAX_MANIFEST_SIZE}-byte limit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap(),
            media_types::DOCKER_SCHEMA1_MANIFEST
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            media_types::OCI_INDEX
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"config":{}}"#).unwrap(),
            media_types::OCI_MANIFEST
        );
        assert!(sniff_media_type(b"not json").is_none());
    }

    #[test]
    fn schema1_and_size() {
        let e =
            check_type_and_size(&"r", media_types::DOCKER_SCHEMA1_MANIFEST_SIGNED, 10).unwrap_err();
        assert!(e.is_not_implemented());
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = check_type_and_size(&"r", media_types::OCI_MANIFEST, MAX_MANIFEST_SIZE + 1)
            .unwrap_err();
        assert!(e.is_invalid_argument());
        check_type_and_size(&"r", media_types::OCI_INDEX, MAX_MANIFEST_SIZE).unwrap();
    }
}
