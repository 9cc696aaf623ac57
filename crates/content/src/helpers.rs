//! Helpers over the content traits, after containerd's `content/helpers.go`.
//!
//! - [`open_writer`] / [`open_writer_timeout`]: open a writer, retrying while the ref is
//!   locked (`Unavailable`) with randomized exponential backoff (16 ms doubling to 2 s).
//! - [`write_blob`]: open + [`copy`] + commit; `AlreadyExists` counts as success.
//! - [`copy`], [`copy_seek`], [`copy_reader_at`]: resume-aware copies into a writer: they
//!   skip the bytes the ingest already has (by discarding, seeking or offsetting) and
//!   commit; a writer already holding all `size` bytes is committed without reading.
//! - [`read_blob`]: a whole blob into memory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use strata_content::{helpers, local::LocalStore, digest::sha256, Labels, Descriptor, MediaType};
//! use oci_spec::image::DescriptorBuilder;
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalStore::open(dir.path())?;
//! let data = b"{}";
//! let desc: Descriptor = DescriptorBuilder::default()
//!     .media_type(MediaType::ImageConfig).digest(sha256(data)).size(2u64).build().unwrap();
//! helpers::write_blob(&store, "config", &data[..], &desc, Labels::new()).await?;
//! helpers::write_blob(&store, "config", &data[..], &desc, Labels::new()).await?; // exists: ok
//! assert_eq!(helpers::read_blob(&store, &desc).await?, data);
//! # Ok(()) }
//! ```

use crate::digest::Digest;
use crate::labels::Labels;
use crate::store::{Ingester, Provider, ReaderAt, Writer, WriterOpts};
use crate::{Error, Result};
use oci_spec::image::Descriptor;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

/// Size of the copy buffer.
const COPY_BUF: usize = 1 << 20;

/// Opens a writer, retrying while the ref is locked by another writer.
///
/// Like containerd's `content.OpenWriter`: after each `Unavailable` it sleeps a random
/// time below a bound that starts at 16 ms and doubles up to 2048 ms. It retries until it
/// succeeds, fails otherwise, or the caller drops the future (wrap it in
/// `tokio::time::timeout`, or use [`open_writer_timeout`]).
///
/// # Errors
/// Any error of [`Ingester::writer`] other than `Unavailable` (notably `AlreadyExists`).
pub async fn open_writer<S: Ingester + ?Sized>(
    store: &S,
    opts: WriterOpts,
) -> Result<Box<dyn Writer>> {
    let mut bound_ms: u64 = 16;
    loop {
        match store.writer(opts.clone()).await {
            Err(e) if e.is_unavailable() => {
                let sleep = rand::random_range(0..bound_ms);
                tokio::time::sleep(Duration::from_millis(sleep)).await;
                if bound_ms < 2048 {
                    bound_ms *= 2;
                }
            }
            other => return other,
        }
    }
}

/// [`open_writer`] giving up after `timeout`.
///
/// # Errors
/// As [`open_writer`]; `Unavailable` naming the ref when the timeout passes while the
/// ref is still locked.
pub async fn open_writer_timeout<S: Ingester + ?Sized>(
    store: &S,
    opts: WriterOpts,
    timeout: Duration,
) -> Result<Box<dyn Writer>> {
    let reference = opts.reference.clone();
    match tokio::time::timeout(timeout, open_writer(store, opts)).await {
        Ok(r) => r,
        Err(_) => Err(Error::unavailable(format!(
            "ref {reference} still locked after {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// Writes the blob `desc` from `reader` under ingest `reference`, resuming a previous
/// partial ingest of the same ref, and commits it with `labels`.
///
/// `reader` yields the whole blob from its start (`&[u8]` works for in-memory data); the
/// bytes the ingest already has are read and discarded (use [`copy_seek`] to seek
/// instead). Succeeds without reading when the blob is already committed.
///
/// # Errors
/// `FailedPrecondition` when the data does not match `desc`'s size or digest (the
/// ingest stays resumable); `Io` for a read failure; errors of [`open_writer`].
pub async fn write_blob<S, R>(
    store: &S,
    reference: &str,
    reader: R,
    desc: &Descriptor,
    labels: Labels,
) -> Result<()>
where
    S: Ingester + ?Sized,
    R: AsyncRead + Unpin + Send,
{
    let w = match open_writer(store, WriterOpts::new(reference).descriptor(desc)).await {
        Err(e) if e.is_already_exists() => return Ok(()),
        other => other?,
    };
    copy(w, reader, desc.size(), Some(desc.digest().clone()), labels).await
}

/// Reads a whole blob into memory.
///
/// # Errors
/// `NotFound` when the blob is not committed; `Io` on a read failure or a short read.
pub async fn read_blob<P: Provider + ?Sized>(provider: &P, desc: &Descriptor) -> Result<Vec<u8>> {
    let ra = provider.reader_at(desc).await?;
    let digest = desc.digest().clone();
    tokio::task::spawn_blocking(move || {
        let size = ra.size() as usize;
        let mut buf = vec![0u8; size];
        let mut done = 0;
        while done < size {
            let n = ra
                .read_at(&mut buf[done..], done as u64)
                .map_err(|e| Error::io(format!("read blob {digest}"), e))?;
            if n == 0 {
                return Err(Error::io(
                    format!("read blob {digest}: {done} of {size} bytes"),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            done += n;
        }
        Ok(buf)
    })
    .await
    .map_err(|e| Error::internal("read task failed").with_source(e))?
}

/// Commits `w`, treating `AlreadyExists` as success.
async fn commit(
    w: Box<dyn Writer>,
    size: u64,
    expected: Option<Digest>,
    labels: Labels,
) -> Result<()> {
    match w.commit(size, expected, labels).await {
        Err(e) if e.is_already_exists() => Ok(()),
        other => other,
    }
}

/// The writer's offset, or `None` when it already has all `size` bytes (commit at once).
async fn resume_offset(w: &dyn Writer, size: u64) -> Result<Option<u64>> {
    let st = w.status().await?;
    if size > 0 && st.offset == size {
        return Ok(None);
    }
    if size > 0 && st.offset > size {
        return Err(Error::failed_precondition(format!(
            "ingest ref {} has {} bytes, more than the expected {size}",
            st.reference, st.offset
        )));
    }
    Ok(Some(st.offset))
}

/// Copies `reader` into `w` until EOF; checks the count against `size - offset`.
async fn pump<R: AsyncRead + Unpin + Send>(
    w: &mut dyn Writer,
    mut reader: R,
    offset: u64,
    size: u64,
) -> Result<()> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut copied = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("copy into content writer: read", e))?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).await?;
        copied += n as u64;
    }
    if size != 0 && copied < size - offset {
        return Err(Error::io(
            format!(
                "copy into content writer: read {copied} bytes, expected {}",
                size - offset
            ),
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(())
}

/// Copies `reader` into `w` and commits, like containerd's `content.Copy` with a plain
/// reader: `reader` yields the blob from its start and the first `offset` bytes (what the
/// ingest already has) are read and discarded. `size` 0 / `expected` `None` skip the
/// checks. `AlreadyExists` at commit counts as success.
///
/// # Errors
/// `FailedPrecondition` on a size or digest mismatch (the ingest stays resumable); `Io`
/// when the reader fails or ends early.
pub async fn copy<R: AsyncRead + Unpin + Send>(
    mut w: Box<dyn Writer>,
    mut reader: R,
    size: u64,
    expected: Option<Digest>,
    labels: Labels,
) -> Result<()> {
    let Some(offset) = resume_offset(&*w, size).await? else {
        return commit(w, size, expected, labels).await;
    };
    if offset > 0 {
        let skipped = tokio::io::copy(&mut (&mut reader).take(offset), &mut tokio::io::sink())
            .await
            .map_err(|e| Error::io("copy into content writer: skip resumed bytes", e))?;
        if skipped != offset {
            return Err(Error::io(
                format!("copy into content writer: skipped {skipped} of {offset} resumed bytes"),
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
    pump(&mut *w, reader, offset, size).await?;
    commit(w, size, expected, labels).await
}

/// [`copy`] from a seekable reader: seeks to the ingest's offset instead of reading.
///
/// # Errors
/// As [`copy`].
pub async fn copy_seek<R: AsyncRead + AsyncSeek + Unpin + Send>(
    mut w: Box<dyn Writer>,
    mut reader: R,
    size: u64,
    expected: Option<Digest>,
    labels: Labels,
) -> Result<()> {
    let Some(offset) = resume_offset(&*w, size).await? else {
        return commit(w, size, expected, labels).await;
    };
    reader
        .seek(SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::io(format!("copy into content writer: seek to {offset}"), e))?;
    pump(&mut *w, reader, offset, size).await?;
    commit(w, size, expected, labels).await
}

/// [`copy`] from a [`ReaderAt`] (for example another store's blob): reads from the
/// ingest's offset to `ra.size()`.
///
/// # Errors
/// As [`copy`].
pub async fn copy_reader_at(
    mut w: Box<dyn Writer>,
    ra: Arc<dyn ReaderAt>,
    size: u64,
    expected: Option<Digest>,
    labels: Labels,
) -> Result<()> {
    let Some(mut offset) = resume_offset(&*w, size).await? else {
        return commit(w, size, expected, labels).await;
    };
    let end = ra.size();
    let mut buf = vec![0u8; COPY_BUF];
    while offset < end {
        let ra2 = ra.clone();
        let want = ((end - offset) as usize).min(COPY_BUF);
        let (b, res) = tokio::task::spawn_blocking(move || {
            let r = ra2.read_at(&mut buf[..want], offset);
            (buf, r)
        })
        .await
        .map_err(|e| Error::internal("read task failed").with_source(e))?;
        buf = b;
        let n =
            res.map_err(|e| Error::io(format!("copy into content writer: read at {offset}"), e))?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).await?;
        offset += n as u64;
    }
    if size != 0 && offset < size {
        return Err(Error::io(
            format!("copy into content writer: source has {offset} of {size} bytes"),
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    commit(w, size, expected, labels).await
}
