//! Streaming blobs into a content store during an import, with rollback.

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use strata_content::helpers::open_writer;
use strata_content::{Descriptor, Digest, Error, Labels, Result, Store, WriterOpts};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::leases::{LeaseManager, Resource};

const CHUNK: usize = 1 << 20;

/// Tracks the blobs an import committed so they can be removed if the import fails, and
/// holds every ingest and blob in a lease when one is given.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    new: Arc<Mutex<Vec<Digest>>>,
    lease: Option<(Arc<LeaseManager>, String)>,
}

impl Tracker {
    /// A tracker that adds what it touches to `lease`.
    pub(crate) fn with_lease(lease: Option<(Arc<LeaseManager>, String)>) -> Self {
        Tracker {
            new: Default::default(),
            lease,
        }
    }

    /// Adds `r` to the lease, if any.
    pub(crate) async fn hold(&self, r: Resource) -> Result<()> {
        if let Some((m, id)) = &self.lease {
            m.add_resource(id, &r).await?;
        }
        Ok(())
    }

    fn record(&self, d: Digest) {
        self.new.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }

    /// The digests committed so far.
    pub(crate) fn committed(&self) -> Vec<Digest> {
        self.new.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Deletes every blob this import committed (best effort; failures are logged).
    pub(crate) async fn rollback(&self, store: &dyn Store) {
        for d in self.committed() {
            if let Err(e) = store.delete(&d).await
                && !e.is_not_found()
            {
                tracing::warn!(digest = %d, error = %e, "import rollback: cannot delete blob");
            }
        }
    }

    /// Deletes the committed blobs not in `keep`.
    pub(crate) async fn remove_unreferenced(
        &self,
        store: &dyn Store,
        keep: &std::collections::HashSet<Digest>,
    ) {
        for d in self.committed() {
            if !keep.contains(&d)
                && let Err(e) = store.delete(&d).await
                && !e.is_not_found()
            {
                tracing::warn!(digest = %d, error = %e, "import: cannot delete unreferenced blob");
            }
        }
    }
}

fn ingest_ref(what: &str) -> String {
    format!("import-{what}")
}

/// Streams `reader` into `store` as the blob `desc` (digest and size verified at commit).
/// Returns without reading when the blob is already committed. On failure the ingest is
/// aborted, so nothing of it stays behind.
pub(crate) async fn ingest_expected<R: AsyncRead + Unpin>(
    store: &dyn Store,
    tracker: &Tracker,
    desc: &Descriptor,
    mut reader: R,
    origin: &str,
) -> Result<()> {
    tracker
        .hold(Resource::content(desc.digest().to_string()))
        .await?;
    if store.info(desc.digest()).await.is_ok() {
        return Ok(());
    }
    let reference = ingest_ref(desc.digest().digest());
    tracker.hold(Resource::ingest(&reference)).await?;
    let mut w = match open_writer(store, WriterOpts::new(&reference).descriptor(desc)).await {
        Err(e) if e.is_already_exists() => return Ok(()),
        other => other?,
    };
    let result = async {
        w.truncate(0).await?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(format!("read {origin}"), e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > desc.size() {
                return Err(Error::failed_precondition(format!(
                    "{origin}: more than the {} bytes of {}",
                    desc.size(),
                    desc.digest()
                )));
            }
            w.write(&buf[..n]).await?;
        }
        if total != desc.size() {
            return Err(Error::failed_precondition(format!(
                "{origin}: {total} bytes, but {} is {} bytes (truncated?)",
                desc.digest(),
                desc.size()
            )));
        }
        if &w.digest() != desc.digest() {
            return Err(Error::failed_precondition(format!(
                "{origin}: content has digest {}, not {}",
                w.digest(),
                desc.digest()
            )));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => match w
            .commit(desc.size(), Some(desc.digest().clone()), Labels::new())
            .await
        {
            Ok(()) => {
                tracker.record(desc.digest().clone());
                Ok(())
            }
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => {
                let _ = store.abort(&reference).await;
                Err(e.context(origin))
            }
        },
        Err(e) => {
            let _ = w.close().await;
            let _ = store.abort(&reference).await;
            Err(e)
        }
    }
}

/// Streams `reader` into `store` as a blob of unknown digest (named `origin` in errors)
/// and returns its digest and size.
pub(crate) async fn ingest_unknown<R: AsyncRead + Unpin>(
    store: &dyn Store,
    tracker: &Tracker,
    key: &str,
    mut reader: R,
    origin: &str,
) -> Result<(Digest, u64)> {
    let reference = ingest_ref(&strata_content::digest::sha256(key.as_bytes()).digest()[..32]);
    tracker.hold(Resource::ingest(&reference)).await?;
    let mut w = open_writer(store, WriterOpts::new(&reference)).await?;
    let result = async {
        w.truncate(0).await?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(format!("read {origin}"), e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            w.write(&buf[..n]).await?;
        }
        Ok(total)
    }
    .await;
    let total = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = w.close().await;
            let _ = store.abort(&reference).await;
            return Err(e);
        }
    };
    let digest = w.digest();
    tracker.hold(Resource::content(digest.to_string())).await?;
    match w.commit(total, Some(digest.clone()), Labels::new()).await {
        Ok(()) => tracker.record(digest.clone()),
        Err(e) if e.is_already_exists() => {}
        Err(e) => {
            let _ = store.abort(&reference).await;
            return Err(e.context(origin));
        }
    }
    Ok((digest, total))
}

/// Presents a blocking [`Read`] as an [`AsyncRead`]. Only for use on a blocking thread
/// (inside `Handle::block_on` from `spawn_blocking`), where blocking reads are fine.
pub(crate) struct BlockingRead<R>(pub R);

impl<R: Read + Unpin> AsyncRead for BlockingRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}
