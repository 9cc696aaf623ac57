//! One large blob over several connections: `Range` requests fetched ahead, bytes yielded
//! in order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use strata_content::{Descriptor, Error, Result};

use crate::fetcher::{BlobStream, Fetcher};

/// The smallest range [`ParallelDownload::chunk_size`] is raised to.
const MIN_CHUNK: u64 = 64 << 10;

/// Downloading one large blob as several `Range` requests at once.
///
/// A download of at least `threshold` bytes (counted from the offset it starts at) is
/// split into ranges of `chunk_size`; up to `connections` of them are in flight at once.
/// The stream still yields the blob's bytes in order, so the content store writes and
/// hashes a growing prefix, and an interrupted download resumes from it as before. The
/// first range shows whether the registry honours `Range`: a `200` instead of a `206`
/// turns the download into one plain stream over that response. Each range resumes on
/// its own after a dropped or stalled connection, as a whole download does. At most
/// `connections` requests are open per download, and as many ranges are buffered.
///
/// ```
/// use strata_remote::{ParallelDownload, RegistryOptions};
/// let mut opts = RegistryOptions::default();
/// opts.parallel_download = ParallelDownload { connections: 8, ..Default::default() };
/// assert_eq!(opts.parallel_download.threshold, 64 << 20);
/// assert!(!ParallelDownload::off().applies(1 << 40));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelDownload {
    /// Downloads shorter than this use one connection. Default 64 MiB.
    pub threshold: u64,
    /// The size of each range (at least 64 KiB). Default 4 MiB.
    pub chunk_size: u64,
    /// Connections per download; 1 turns ranged downloads off. Default 4.
    pub connections: usize,
}

impl Default for ParallelDownload {
    fn default() -> Self {
        ParallelDownload {
            threshold: 64 << 20,
            chunk_size: 4 << 20,
            connections: 4,
        }
    }
}

impl ParallelDownload {
    /// One connection per download.
    pub fn off() -> Self {
        ParallelDownload {
            connections: 1,
            ..Default::default()
        }
    }

    /// Whether a download of `len` bytes is split into ranges.
    pub fn applies(&self, len: u64) -> bool {
        self.connections > 1 && len >= self.threshold && len > self.chunk()
    }

    fn chunk(&self) -> u64 {
        self.chunk_size.max(MIN_CHUNK)
    }
}

/// Bytes `offset..` of `desc` over up to `p.connections` connections, in order.
pub(crate) async fn fetch(
    f: &Fetcher,
    desc: &Descriptor,
    offset: u64,
    p: &ParallelDownload,
) -> Result<BlobStream> {
    let size = desc.size();
    let chunk = p.chunk();
    let head_end = (offset + chunk).min(size);
    let head = f.open(desc, offset, head_end).await?;
    if !head.partial {
        tracing::debug!(
            "{}/{} ignores Range: {} comes over one connection",
            f.domain(),
            f.repository(),
            desc.digest()
        );
        return Ok(f.range_stream(desc, offset, size, Some(head)));
    }
    let ranges = (head_end..size)
        .step_by(chunk as usize)
        .map(|a| (a, (a + chunk).min(size)))
        .collect();
    let mut ahead = Ahead {
        fetcher: f.clone(),
        desc: desc.clone(),
        ranges,
        in_flight: VecDeque::new(),
        ahead: p.connections - 1,
        failed: false,
    };
    // Start the ranges after the head now: they download while the head streams.
    ahead.top_up();
    let rest = futures::stream::unfold(ahead, |mut a| async move {
        if a.failed {
            return None;
        }
        let next = a.in_flight.pop_front()?;
        a.top_up();
        let r = next.await;
        a.failed = r.is_err();
        let items: Vec<Result<Bytes>> = match r {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        Some((futures::stream::iter(items), a))
    })
    .flatten();
    Ok(Box::pin(
        f.range_stream(desc, offset, head_end, Some(head))
            .chain(rest),
    ))
}

/// The ranges of one download not yet yielded: spawned ones in order, then the rest.
struct Ahead {
    fetcher: Fetcher,
    desc: Descriptor,
    ranges: VecDeque<(u64, u64)>,
    in_flight: VecDeque<Spawned>,
    /// How many ranges run ahead of the one being yielded (or awaited): `connections - 1`.
    ahead: usize,
    failed: bool,
}

impl Ahead {
    /// Spawns ranges until [`Ahead::ahead`] are in flight.
    fn top_up(&mut self) {
        while self.in_flight.len() < self.ahead {
            let Some((a, b)) = self.ranges.pop_front() else {
                return;
            };
            let s = self.fetcher.range_stream(&self.desc, a, b, None);
            self.in_flight
                .push_back(Spawned(tokio::spawn(read_all(s, (b - a) as usize))));
        }
    }
}

/// The size of the pieces a buffered range is yielded in (what consumers queue).
const PIECE: usize = 256 << 10;

/// A range's bytes in one buffer of exactly its length (the network's chunks would keep
/// their larger receive buffers alive while the range waits its turn), yielded as
/// [`PIECE`]-sized slices of it.
async fn read_all(mut s: BlobStream, len: usize) -> Result<Vec<Bytes>> {
    let mut buf = bytes::BytesMut::with_capacity(len);
    while let Some(b) = s.next().await {
        buf.extend_from_slice(&b?);
    }
    let buf = buf.freeze();
    Ok((0..buf.len())
        .step_by(PIECE)
        .map(|i| buf.slice(i..(i + PIECE).min(buf.len())))
        .collect())
}

/// A range download running on its own task; aborted when dropped (the download was
/// abandoned).
struct Spawned(tokio::task::JoinHandle<Result<Vec<Bytes>>>);

impl Drop for Spawned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for Spawned {
    type Output = Result<Vec<Bytes>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|e| Err(Error::unavailable(format!("range download task: {e}"))))
        })
    }
}
