//! Uploading blobs and manifests to a registry.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use strata_content::labels::DISTRIBUTION_SOURCE;
use strata_content::{Descriptor, Error, Labels, ReaderAt, Result};

use super::client::{Client, Host, Req, repo_scope, status_error};
use crate::hosts::Capabilities;
use crate::media_types;

/// What [`Pusher::push_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    /// The registry already had it.
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// Pushes content to one repository of a registry; cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    client: Arc<Client>,
    domain: String,
    repo: String,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pusher({}/{})", self.domain, self.repo)
    }
}

fn with_query(url: &str, kv: &str) -> String {
    format!("{url}{}{kv}", if url.contains('?') { '&' } else { '?' })
}

impl Pusher {
    pub(crate) fn new(client: Arc<Client>, domain: &str, repo: &str) -> Self {
        Pusher {
            client,
            domain: domain.to_string(),
            repo: repo.to_string(),
        }
    }

    /// The first endpoint with the `push` capability (the registry itself unless
    /// `hosts.toml` says otherwise).
    fn host(&self) -> Result<Host> {
        let mut hosts = self.client.hosts(&self.domain, Capabilities::PUSH)?;
        Ok(hosts.remove(0))
    }

    fn scopes(&self) -> Vec<String> {
        vec![repo_scope(&self.repo, true)]
    }

    /// Whether the registry has `desc` in this repository (HEAD on `/blobs/` or, for
    /// manifests and indexes, `/manifests/`).
    ///
    /// # Errors
    /// `Unavailable`/`FailedPrecondition` as for any request; a 404 is `Ok(false)`.
    pub async fn exists(&self, desc: &Descriptor) -> Result<bool> {
        let mt = desc.media_type().to_string();
        let kind = if media_types::is_manifest(&mt) || media_types::is_index(&mt) {
            "manifests"
        } else {
            "blobs"
        };
        let host = self.host()?;
        let req = Req::new(
            Method::HEAD,
            host.url(&self.repo, &format!("{kind}/{}", desc.digest())),
        );
        let resp = self.client.send(&host, &self.scopes(), &req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&req, resp).await),
        }
    }

    /// Uploads the blob `desc` read from `data`, unless the repository has it. When
    /// `labels` has `containerd.io/distribution.source.<this registry>=<repo,…>`, a
    /// cross-repository mount from those repositories is tried first. Blobs up to
    /// `push_chunk_size` go in one PUT, larger ones in PATCH chunks of that size.
    ///
    /// # Errors
    /// `InvalidArgument` when `data` is shorter than `desc.size()`; the registry's
    /// refusal (e.g. `InvalidArgument` for a digest it computed differently) or
    /// `Unavailable`.
    pub async fn push_blob(
        &self,
        desc: &Descriptor,
        data: Arc<dyn ReaderAt>,
        labels: &Labels,
    ) -> Result<PushStatus> {
        if self.exists(desc).await? {
            return Ok(PushStatus::Exists);
        }
        let host = self.host()?;
        let digest = desc.digest().to_string();
        let mut scopes = self.scopes();
        let sources: Vec<String> = labels
            .get(&format!("{DISTRIBUTION_SOURCE}{}", self.domain))
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != self.repo)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        scopes.extend(sources.iter().map(|s| repo_scope(s, false)));
        let base = host.url(&self.repo, "blobs/uploads/");
        let mut location = None;
        for from in &sources {
            let url = with_query(&base, &format!("mount={digest}&from={from}"));
            let req = Req::new(Method::POST, url).header(CONTENT_LENGTH, "0");
            match self.client.send(&host, &scopes, &req).await {
                Ok(resp) if resp.status() == StatusCode::CREATED => {
                    return Ok(PushStatus::Mounted);
                }
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    location = resp
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(|l| host.location(l));
                    break;
                }
                Ok(resp) => tracing::debug!("mount {digest} from {from}: HTTP {}", resp.status()),
                Err(e) => tracing::debug!("mount {digest} from {from}: {e}"),
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let req = Req::new(Method::POST, base).header(CONTENT_LENGTH, "0");
                let resp = self.client.send(&host, &scopes, &req).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(&req, resp).await);
                }
                upload_location(&host, &req, &resp)?
            }
        };
        let size = desc.size();
        let chunk = self.client.opts.push_chunk_size.max(1);
        if size <= chunk {
            let body = read_range(&data, 0, size, &digest).await?;
            let url = with_query(&location, &format!("digest={digest}"));
            let req = Req::new(Method::PUT, url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body);
            return self.finish(&host, &scopes, req).await;
        }
        let mut off = 0;
        while off < size {
            let n = chunk.min(size - off);
            let body = read_range(&data, off, n, &digest).await?;
            let req = Req::new(Method::PATCH, location.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    &format!("{off}-{}", off + n - 1),
                )
                .body(body);
            let resp = self.client.send(&host, &scopes, &req).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error(&req, resp)
                    .await
                    .context(format!("push {digest}")));
            }
            location = upload_location(&host, &req, &resp)?;
            off += n;
        }
        let url = with_query(&location, &format!("digest={digest}"));
        let req = Req::new(Method::PUT, url).header(CONTENT_LENGTH, "0");
        self.finish(&host, &scopes, req).await
    }

    async fn finish(&self, host: &Host, scopes: &[String], req: Req) -> Result<PushStatus> {
        let resp = self.client.send(host, scopes, &req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&req, resp).await);
        }
        Ok(PushStatus::Uploaded)
    }

    /// Puts a manifest or index (its exact bytes) under `reference`: a tag, or `None` for
    /// its digest. Skips a by-digest push when the registry already has it.
    ///
    /// # Errors
    /// `InvalidArgument` when `body` does not match `desc`'s size; the registry's refusal
    /// (e.g. a manifest referencing a missing blob) or `Unavailable`.
    pub async fn push_manifest(
        &self,
        desc: &Descriptor,
        body: Bytes,
        reference: Option<&str>,
    ) -> Result<PushStatus> {
        if body.len() as u64 != desc.size() {
            return Err(Error::invalid_argument(format!(
                "manifest {} is {} bytes, its descriptor says {}",
                desc.digest(),
                body.len(),
                desc.size()
            )));
        }
        if reference.is_none() && self.exists(desc).await? {
            return Ok(PushStatus::Exists);
        }
        let host = self.host()?;
        let object = reference
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest().to_string());
        let req = Req::new(
            Method::PUT,
            host.url(&self.repo, &format!("manifests/{object}")),
        )
        .header(CONTENT_TYPE, desc.media_type().as_ref())
        .body(body);
        self.finish(&host, &self.scopes(), req).await
    }
}

fn upload_location(host: &Host, req: &Req, resp: &reqwest::Response) -> Result<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| host.location(l))
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "{} {}: upload response has no Location",
                req.method, req.url
            ))
        })
}

async fn read_range(data: &Arc<dyn ReaderAt>, off: u64, n: u64, what: &str) -> Result<Bytes> {
    let data = data.clone();
    let what = what.to_string();
    let what2 = what.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let k = data
                .read_at(&mut buf[done..], off + done as u64)
                .map_err(|e| Error::io(format!("read {what} at {}", off + done as u64), e))?;
            if k == 0 {
                return Err(Error::invalid_argument(format!(
                    "{what} ends at {} before its size",
                    off + done as u64
                )));
            }
            done += k;
        }
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| Error::internal(format!("read {what2}: {e}")))?
}
