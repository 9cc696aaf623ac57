//! Downloading manifests and blobs by descriptor, resumable.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use strata_content::{Descriptor, Error, Result};
use tokio::sync::OwnedSemaphorePermit;

use super::MAX_MANIFEST_SIZE;
use super::client::{Client, Req, Tried, repo_scope, status_error, try_next_host};
use super::resolver::accept_header;
use super::retry;
use crate::hosts::Capabilities;
use crate::media_types;

/// The bytes of a blob from some offset on, in order. Ends after exactly `size - offset`
/// bytes; an error item ends it early.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Fetches content of one repository; cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    client: Arc<Client>,
    domain: String,
    repo: String,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetcher({}/{})", self.domain, self.repo)
    }
}

pub(crate) struct Opened {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Bytes to drop from the body (the server ignored `Range`).
    skip: u64,
    /// The server answered `206 Partial Content` to a `Range` request.
    pub(crate) partial: bool,
    /// The host's request permit, held until the body ends.
    _permit: OwnedSemaphorePermit,
}

impl Fetcher {
    pub(crate) fn new(client: Arc<Client>, domain: &str, repo: &str) -> Self {
        Fetcher {
            client,
            domain: domain.to_string(),
            repo: repo.to_string(),
        }
    }

    /// The registry domain (`127.0.0.1:5000`, `docker.io`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path (`library/debian`).
    pub fn repository(&self) -> &str {
        &self.repo
    }

    /// Streams `desc`'s bytes from `offset` (`Range: bytes=<offset>-`). Manifests and
    /// indexes come from `/manifests/<digest>`, everything else from `/blobs/<digest>`;
    /// hosts are tried in order. When the connection drops mid-body, or no byte arrives
    /// for [`RegistryOptions::idle_timeout`](crate::RegistryOptions::idle_timeout), the
    /// stream reconnects at the current offset (up to `max_retries` times without
    /// progress, and for at most `progress_timeout` without a byte). The stream does not
    /// verify the digest: the content store's commit does.
    ///
    /// # Errors
    /// At once: `NotFound` when no host has the blob, `InvalidArgument` for a manifest
    /// over [`MAX_MANIFEST_SIZE`], `Unavailable` when no host answers. In the stream:
    /// `Unavailable` when the download cannot be resumed, `FailedPrecondition` when the
    /// server sends more than `desc.size()` bytes.
    pub async fn fetch(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let document = is_document(desc);
        if document && desc.size() > MAX_MANIFEST_SIZE {
            return Err(Error::invalid_argument(format!(
                "manifest {} is {} bytes, over the {MAX_MANIFEST_SIZE}-byte limit",
                desc.digest(),
                desc.size()
            )));
        }
        let size = desc.size();
        if offset > size {
            return Err(Error::invalid_argument(format!(
                "offset {offset} past the size {size} of {}",
                desc.digest()
            )));
        }
        if offset == size {
            return Ok(self.range_stream(desc, offset, size, None));
        }
        if !document {
            let p = &self.client.opts.parallel_download;
            if p.applies(size - offset) {
                return crate::parallel::fetch(self, desc, offset, p).await;
            }
        }
        let first = self.open(desc, offset, size).await?;
        Ok(self.range_stream(desc, offset, size, Some(first)))
    }

    /// Bytes `offset..end` of `desc`, continuing the response `first` if given, and
    /// resuming as [`Fetcher::fetch`] does.
    pub(crate) fn range_stream(
        &self,
        desc: &Descriptor,
        offset: u64,
        end: u64,
        first: Option<Opened>,
    ) -> BlobStream {
        let state = StreamState {
            fetcher: self.clone(),
            desc: desc.clone(),
            pos: offset,
            end,
            cur: first,
            retries: 0,
            last_progress: Instant::now(),
            done: offset == end,
        };
        Box::pin(futures::stream::unfold(state, next_chunk))
    }

    /// The whole blob in memory (for manifests, indexes and configs), at most `limit`
    /// bytes.
    ///
    /// # Errors
    /// As [`Fetcher::fetch`]; `InvalidArgument` when `desc.size()` exceeds `limit`.
    pub async fn fetch_bytes(&self, desc: &Descriptor, limit: u64) -> Result<Bytes> {
        if desc.size() > limit {
            return Err(Error::invalid_argument(format!(
                "{} is {} bytes, over the {limit}-byte limit",
                desc.digest(),
                desc.size()
            )));
        }
        let mut s = self.fetch(desc, 0).await?;
        let mut out = Vec::with_capacity(desc.size() as usize);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out.into())
    }

    /// One GET for bytes `offset..end` of `desc` (a `Range` header unless that is the
    /// whole blob), trying each host in order.
    pub(crate) async fn open(&self, desc: &Descriptor, offset: u64, end: u64) -> Result<Opened> {
        let kind = if is_document(desc) {
            "manifests"
        } else {
            "blobs"
        };
        let scopes = [repo_scope(&self.repo, false)];
        let mut tried = Tried::new(format!(
            "fetch {} from {}/{}",
            desc.digest(),
            self.domain,
            self.repo
        ));
        for host in self.client.hosts(&self.domain, Capabilities::PULL)? {
            let url = host.url(&self.repo, &format!("{kind}/{}", desc.digest()));
            let mut req = Req::new(Method::GET, url);
            if kind == "manifests" {
                let mt = desc.media_type().to_string();
                req = req.header(ACCEPT, &format!("{mt}, {}", accept_header()));
            }
            if end < desc.size() {
                req = req.header(RANGE, &format!("bytes={offset}-{}", end - 1));
            } else if offset > 0 {
                req = req.header(RANGE, &format!("bytes={offset}-"));
            }
            let res = match self.client.send_held(&host, &scopes, &req).await {
                Ok((resp, permit)) => check_response(&req, resp, offset, permit).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(o) => return Ok(o),
                Err(e) if try_next_host(&e) => tried.push(&host, e),
                Err(e) => return Err(e),
            }
        }
        Err(tried.finish())
    }
}

/// Whether `desc` is a manifest or an index (served from `/manifests/`, size-limited,
/// never split into ranges).
fn is_document(desc: &Descriptor) -> bool {
    let mt = desc.media_type().to_string();
    media_types::is_manifest(&mt) || media_types::is_index(&mt)
}

async fn check_response(
    req: &Req,
    resp: Response,
    offset: u64,
    permit: OwnedSemaphorePermit,
) -> Result<Opened> {
    let status = resp.status();
    let partial = status == StatusCode::PARTIAL_CONTENT;
    let skip = match status {
        StatusCode::OK => offset,
        StatusCode::PARTIAL_CONTENT => {
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let start = cr
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(Error::unavailable(format!(
                    "{} {}: asked for bytes from {offset}, got Content-Range {cr:?}",
                    req.method, req.url
                )));
            }
            0
        }
        _ => return Err(status_error(req, resp).await),
    };
    Ok(Opened {
        body: Box::pin(resp.bytes_stream()),
        skip,
        partial,
        _permit: permit,
    })
}

struct StreamState {
    fetcher: Fetcher,
    desc: Descriptor,
    pos: u64,
    /// Where this stream ends (the blob's size, or the end of a range).
    end: u64,
    cur: Option<Opened>,
    /// Reconnections since the last byte.
    retries: u32,
    /// When the last byte arrived (or the download started).
    last_progress: Instant,
    done: bool,
}

async fn next_chunk(mut st: StreamState) -> Option<(Result<Bytes>, StreamState)> {
    if st.done {
        return None;
    }
    let (size, end) = (st.desc.size(), st.end);
    let opts = &st.fetcher.client.opts;
    let (max_retries, delay) = (opts.max_retries, opts.retry_delay);
    let (idle, progress_timeout) = (opts.idle_timeout, opts.progress_timeout);
    loop {
        let why = match st.cur.as_mut() {
            None => match st.fetcher.open(&st.desc, st.pos, end).await {
                Ok(o) => {
                    st.cur = Some(o);
                    continue;
                }
                Err(e) if try_next_host(&e) => e.to_string(),
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            },
            Some(o) => match tokio::time::timeout(idle, o.body.next()).await {
                Err(_) => {
                    st.cur = None; // drops the stalled connection
                    format!("no data for {idle:?}")
                }
                Ok(Some(Ok(mut chunk))) => {
                    if o.skip > 0 {
                        let n = o.skip.min(chunk.len() as u64);
                        o.skip -= n;
                        chunk = chunk.slice(n as usize..);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if st.pos + chunk.len() as u64 > end {
                        if end == size {
                            st.done = true;
                            let e = Error::failed_precondition(format!(
                                "registry sent more than the {size} bytes of {}",
                                st.desc.digest()
                            ));
                            return Some((Err(e), st));
                        }
                        // A range's end: what follows belongs to the next range.
                        chunk.truncate((end - st.pos) as usize);
                    }
                    st.pos += chunk.len() as u64;
                    st.retries = 0;
                    st.last_progress = Instant::now();
                    if st.pos == end {
                        st.done = true;
                        st.cur = None;
                    }
                    return Some((Ok(chunk), st));
                }
                Ok(Some(Err(e))) => {
                    st.cur = None;
                    e.to_string()
                }
                Ok(None) => {
                    st.cur = None;
                    if st.pos == end {
                        st.done = true;
                        return None;
                    }
                    "connection closed early".to_string()
                }
            },
        };
        if st.retries >= max_retries || st.last_progress.elapsed() >= progress_timeout {
            st.done = true;
            let e = Error::unavailable(format!(
                "download of {} from {}/{} stopped at byte {} of {} ({} retries, {:?} without data): {why}",
                st.desc.digest(),
                st.fetcher.domain,
                st.fetcher.repo,
                st.pos,
                size,
                st.retries,
                st.last_progress.elapsed()
            ));
            return Some((Err(e), st));
        }
        tracing::info!(
            "download of {} interrupted at byte {}: {why}; resuming",
            st.desc.digest(),
            st.pos
        );
        tokio::time::sleep(retry::backoff(delay, st.retries)).await;
        st.retries += 1;
    }
}
