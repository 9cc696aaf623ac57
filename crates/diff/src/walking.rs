//! containerd's `diff.Applier` / `diff.Comparer` interfaces and the walking differ.
//!
//! Apply targets follow containerd's `apply_linux.go`: a single `bind` mount (or a plain
//! directory) is applied into its source; a single `overlay` mount with an `upperdir` is
//! applied straight into the upperdir with whiteouts converted to overlay form and the
//! lowerdirs consulted for implied parents (no mount); anything else is mounted on a
//! temporary directory.
//!
//! Compare uses the overlay fast path (the upperdir alone) when the upper mount is an
//! overlay whose lowerdirs are exactly the lower tree (and [`DiffOpts::double_walk`] is
//! off); otherwise it double-walks both trees, mounting them read-only where needed. The
//! tar is produced on a blocking thread, compressed on another, and streamed into the
//! content store.

use crate::apply::{ApplyOptions, ApplyStats, OverlayOptions, Progress, apply_layer};
use crate::compare::{self, ChangeWriter, WriterOptions};
use crate::compression::{Compression, Encoding, OCI_LAYER, encoder};
use crate::pipeline::CHUNK;
use crate::readers::ReadAt;
use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use strata_content::{
    Descriptor, Error, Info, Labels, MediaType, Result, Store, WriterOpts, labels,
};
use strata_snapshot::Mount;
use strata_snapshot::mount::{Layout, classify, with_temp_mount};

/// Options of [`Applier::apply`].
#[derive(Clone, Default)]
pub struct ApplyOpts {
    /// Called with the uncompressed bytes read so far.
    pub progress: Option<Progress>,
    /// `syncfs` the target after applying (containerd's `WithSyncFs`).
    pub sync_fs: bool,
}

/// Options of [`Comparer::compare`].
#[derive(Clone, Default)]
pub struct DiffOpts {
    /// Media type of the result: OCI `…tar`, `…tar+gzip` (default) or `…tar+zstd`.
    pub media_type: Option<String>,
    /// Compression level (gzip default 1, zstd default 3).
    pub level: Option<i32>,
    /// zstd worker threads (0: single-threaded).
    pub zstd_threads: u32,
    /// The content ingest ref (default: a random one). An existing ingest is truncated.
    pub reference: Option<String>,
    /// Labels for the blob (`containerd.io/uncompressed` is added).
    pub labels: Labels,
    /// Clamp mtimes to this Unix time (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Called with the uncompressed bytes written so far.
    pub progress: Option<Progress>,
    /// Receives the uncompressed tar chunk by chunk as it is produced (bounded: a slow
    /// receiver slows the diff; a dropped one is ignored), so a caller can apply the new
    /// layer while it is being compressed and stored (commit does, through a
    /// [`ChannelReader`](crate::ChannelReader)).
    pub tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    /// Always double-walk the (mounted) trees, even where the overlay fast path applies:
    /// containerd 1.6's behaviour, for comparisons and for upperdirs not to be trusted.
    pub double_walk: bool,
}

/// Applies a layer blob onto mounts (containerd's `diff.Applier`).
#[async_trait]
pub trait Applier: Send + Sync {
    /// Applies the content `desc` onto `mounts` and returns the descriptor of the
    /// uncompressed layer: media type `application/vnd.oci.image.layer.v1.tar`, digest =
    /// DiffID, size = uncompressed size.
    ///
    /// # Errors
    /// `NotImplemented` for unsupported media types; `NotFound` when the blob is missing;
    /// `InvalidArgument` for malformed layers; `Io` for filesystem or mount failures.
    async fn apply(
        &self,
        desc: &Descriptor,
        mounts: &[Mount],
        opts: ApplyOpts,
    ) -> Result<Descriptor>;
}

/// Computes a layer from two mounted trees (containerd's `diff.Comparer`).
#[async_trait]
pub trait Comparer: Send + Sync {
    /// Writes the changes from `lower` to `upper` as a layer blob into the content store and
    /// returns its descriptor. The blob gets the label `containerd.io/uncompressed=<DiffID>`
    /// even if it already existed.
    ///
    /// # Errors
    /// `NotImplemented` for unsupported media types; `Io` for unreadable trees or mount
    /// failures; content store errors.
    async fn compare(&self, lower: &[Mount], upper: &[Mount], opts: DiffOpts)
    -> Result<Descriptor>;
}

/// The walking differ: applies from and writes layers to a content store.
#[derive(Clone)]
pub struct WalkingDiff {
    store: Arc<dyn Store>,
}

impl WalkingDiff {
    /// A differ over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        WalkingDiff { store }
    }
}

/// Applies `reader` onto `mounts` synchronously, choosing the target like
/// [`WalkingDiff`] does (bind → source, overlay → upperdir, else a temporary mount).
/// This is the entry point for streaming pulls that already have a reader.
///
/// # Errors
/// `InvalidArgument` for no mounts, a read-only mount (a view: with the native backend
/// it is its parent's own directory) or a malformed layer; `Io` for mount/filesystem
/// errors.
pub fn apply_to_mounts<R: Read + Send>(
    reader: R,
    compression: Compression,
    mounts: &[Mount],
    mut opts: ApplyOptions,
) -> Result<ApplyStats> {
    if let Some(m) = mounts.iter().find(|m| m.is_readonly()) {
        return Err(Error::invalid_argument(format!(
            "apply: the {} mount of {} is read-only",
            m.kind, m.source
        )));
    }
    match classify(mounts) {
        Layout::Empty => Err(Error::invalid_argument("apply: no mounts given")),
        Layout::Bind { source, .. } => apply_layer(reader, compression, source, &opts),
        Layout::Overlay {
            upperdir: Some(upper),
            lowerdirs,
            ..
        } => {
            let parents: Vec<PathBuf> = lowerdirs.into_iter().map(PathBuf::from).collect();
            opts.overlay = Some(OverlayOptions {
                parents: parents.clone(),
            });
            let stats = apply_layer(reader, compression, upper, &opts)?;
            crate::prune_whiteouts(upper, &parents, &stats.whiteouts)?;
            Ok(stats)
        }
        Layout::Overlay { upperdir: None, .. } | Layout::Other => {
            with_temp_mount(mounts, |root| apply_layer(reader, compression, root, &opts))?
        }
    }
}

#[async_trait]
impl Applier for WalkingDiff {
    async fn apply(
        &self,
        desc: &Descriptor,
        mounts: &[Mount],
        opts: ApplyOpts,
    ) -> Result<Descriptor> {
        let compression = Compression::from_media_type(desc.media_type().to_string().as_str())?;
        let ra = self.store.reader_at(desc).await?;
        let mounts = mounts.to_vec();
        let aopts = ApplyOptions {
            overlay: None,
            no_same_owner: false,
            progress: opts.progress,
            sync_fs: opts.sync_fs,
        };
        let stats = tokio::task::spawn_blocking(move || {
            apply_to_mounts(ReadAt::new(ra), compression, &mounts, aopts)
        })
        .await
        .map_err(|e| Error::internal(format!("apply task: {e}")))?
        .map_err(|e| e.context(format!("apply layer {}", desc.digest())))?;
        Ok(Descriptor::new(
            MediaType::from(OCI_LAYER),
            stats.size,
            stats.diff_id,
        ))
    }
}

/// Where the compare reads its trees from.
enum Plan {
    /// Overlay fast path: upperdir and its lowerdirs.
    Overlay(PathBuf, Vec<PathBuf>),
    /// Double walk of two mount sets.
    Walk(Vec<Mount>, Vec<Mount>),
}

/// The overlay fast path where it applies (unless `double_walk`): `upper` is one overlay
/// mount whose lowerdirs are exactly the directories `lower` shows. Else the double walk.
fn plan(lower: &[Mount], upper: &[Mount], double_walk: bool) -> Plan {
    if !double_walk
        && let Layout::Overlay {
            upperdir: Some(ud),
            lowerdirs,
            ..
        } = classify(upper)
        && classify(lower).dirs().as_ref() == Some(&lowerdirs)
    {
        return Plan::Overlay(
            ud.to_path_buf(),
            lowerdirs.into_iter().map(PathBuf::from).collect(),
        );
    }
    Plan::Walk(lower.to_vec(), upper.to_vec())
}

/// Runs `f` with the directory of `mounts` (none: `None`; a bind: its source; else a
/// read-only temporary mount).
fn with_dir<R>(mounts: &[Mount], f: impl FnOnce(Option<&Path>) -> Result<R>) -> Result<R> {
    match classify(mounts) {
        Layout::Empty => f(None),
        Layout::Bind { source, .. } => f(Some(source)),
        Layout::Overlay { .. } | Layout::Other => {
            let ro: Vec<Mount> = mounts.iter().map(|m| m.readonly()).collect();
            with_temp_mount(&ro, |d| f(Some(d)))?
        }
    }
}

/// Buffers bytes into `CHUNK`-sized messages for the next stage.
struct ChunkSink<F: FnMut(Vec<u8>) -> io::Result<()>> {
    buf: Vec<u8>,
    send: F,
}

impl<F: FnMut(Vec<u8>) -> io::Result<()>> Write for ChunkSink<F> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 64 * 1024));
            (self.send)(full)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            (self.send)(rest)?;
        }
        Ok(())
    }
}

/// Sends one buffer to the next pipeline stage.
type SendFn<'p> = Box<dyn FnMut(Vec<u8>) -> io::Result<()> + 'p>;

/// The uncompressed side: hashes (DiffID), counts, reports progress, forwards.
struct HashSink<'p> {
    sha: Sha256,
    size: u64,
    tx: ChunkSink<SendFn<'p>>,
    progress: Option<&'p (dyn Fn(u64) + Send + Sync)>,
}

impl Write for HashSink<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.sha.update(b);
        self.size += b.len() as u64;
        if let Some(p) = self.progress {
            p(self.size);
        }
        self.tx.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tx.flush()
    }
}

/// Produces the layer for `plan` into `out` (compressed chunks); returns (DiffID hex, size).
fn produce(
    plan: Plan,
    enc: Encoding,
    wopts: WriterOptions,
    progress: Option<Progress>,
    tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    out: tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(String, u64)> {
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<bytes::Bytes>(4);
        let compressor = s.spawn(move || -> io::Result<()> {
            let sink = ChunkSink {
                buf: Vec::with_capacity(CHUNK + 64 * 1024),
                send: |v: Vec<u8>| {
                    out.blocking_send(v)
                        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer writer gone"))
                },
            };
            let mut e = encoder(sink, enc)?;
            for chunk in rx {
                e.write_all(&chunk)?;
            }
            e.finish()?.flush()
        });
        let tx2: SyncSender<bytes::Bytes> = tx;
        let mut tee = tee;
        let send: SendFn<'_> = Box::new(move |v| {
            let v = bytes::Bytes::from(v);
            if let Some(t) = &tee
                && t.blocking_send(v.clone()).is_err()
            {
                tee = None;
            }
            tx2.send(v)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "compressor gone"))
        });
        let mut hs = HashSink {
            sha: Sha256::new(),
            size: 0,
            tx: ChunkSink {
                buf: Vec::with_capacity(CHUNK + 64 * 1024),
                send,
            },
            progress: progress.as_deref().map(|p| p as _),
        };
        let walked = (|| -> Result<()> {
            match &plan {
                Plan::Overlay(upperdir, lowers) => {
                    let mut cw = ChangeWriter::new(&mut hs, upperdir, wopts);
                    compare::overlay::changes(upperdir, lowers, &mut |c| cw.handle(c))?;
                    cw.finish()?;
                }
                Plan::Walk(lower, upper) => with_dir(lower, |l| {
                    with_dir(upper, |u| {
                        let u =
                            u.ok_or_else(|| Error::invalid_argument("compare: no upper mounts"))?;
                        let cw = std::cell::RefCell::new(ChangeWriter::new(&mut hs, u, wopts));
                        compare::walk::changes_with_links(
                            l,
                            u,
                            &mut |c| cw.borrow_mut().handle(c),
                            &mut |p| cw.borrow_mut().unchanged(p),
                        )?;
                        cw.into_inner().finish()?;
                        Ok(())
                    })
                })?,
            }
            hs.flush().map_err(|e| Error::io("write layer", e))
        })();
        let diff_id = hex::encode(std::mem::take(&mut hs.sha).finalize());
        let size = hs.size;
        drop(hs);
        let comp = compressor
            .join()
            .map_err(|_| Error::internal("compressor thread panicked"))?;
        walked?;
        comp.map_err(|e| Error::io("compress layer", e))?;
        Ok((diff_id, size))
    })
}

#[async_trait]
impl Comparer for WalkingDiff {
    async fn compare(
        &self,
        lower: &[Mount],
        upper: &[Mount],
        opts: DiffOpts,
    ) -> Result<Descriptor> {
        let media_type = opts
            .media_type
            .clone()
            .unwrap_or_else(|| crate::compression::OCI_LAYER_GZIP.to_string());
        let compression = match Compression::from_media_type(&media_type)? {
            c @ (Compression::None | Compression::Gzip | Compression::Zstd)
                if media_type.starts_with("application/vnd.oci.image.layer.v1.tar") =>
            {
                c
            }
            _ => {
                return Err(Error::not_implemented(format!(
                    "compare: unsupported media type {media_type}"
                )));
            }
        };
        let enc = Encoding {
            compression,
            level: opts.level,
            threads: opts.zstd_threads,
        };
        let reference = opts
            .reference
            .clone()
            .unwrap_or_else(|| format!("strata-diff-{:016x}", rand::random::<u64>()));
        let mut w =
            strata_content::helpers::open_writer(&*self.store, WriterOpts::new(&reference)).await?;
        if w.status().await?.offset > 0 {
            w.truncate(0).await?;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let p = plan(lower, upper, opts.double_walk);
        let wopts = WriterOptions {
            source_date_epoch: opts.source_date_epoch,
        };
        let progress = opts.progress.clone();
        let tee = opts.tee.clone();
        let task = tokio::task::spawn_blocking(move || produce(p, enc, wopts, progress, tee, tx));
        let mut size = 0u64;
        let mut write_err = None;
        while let Some(chunk) = rx.recv().await {
            if write_err.is_some() {
                continue;
            }
            size += chunk.len() as u64;
            if let Err(e) = w.write(&chunk).await {
                write_err = Some(e);
                rx.close();
            }
        }
        let produced = task
            .await
            .map_err(|e| Error::internal(format!("compare task: {e}")))?;
        let (diff_id_hex, _) = match (produced, write_err) {
            (Ok(v), None) => v,
            (Err(e), _) | (Ok(_), Some(e)) => {
                let _ = w.close().await;
                return Err(e);
            }
        };
        let digest = w.digest();
        let diff_id = strata_content::digest::from_hex(&diff_id_hex);
        let mut labels = opts.labels.clone();
        labels.insert(labels::UNCOMPRESSED.to_string(), diff_id.to_string());
        match w.commit(size, Some(digest.clone()), labels.clone()).await {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {
                let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
                self.store
                    .update(Info::for_update(digest.clone(), labels), &paths)
                    .await?;
            }
            Err(e) => return Err(e),
        }
        Ok(Descriptor::new(
            MediaType::from(media_type.as_str()),
            size,
            digest,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(upper: &str, lowers: &str) -> Mount {
        Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("workdir={upper}-work"),
                format!("upperdir={upper}"),
                format!("lowerdir={lowers}"),
            ],
        }
    }

    #[test]
    fn plan_picks_overlay_fast_path_only_for_matching_lowers() {
        let upper = [ov("/s/3", "/s/2:/s/1")];
        assert!(matches!(
            plan(&[ov("/s/2", "/s/1")], &upper, false),
            Plan::Overlay(u, l) if u == Path::new("/s/3") && l.len() == 2
        ));
        assert!(
            matches!(plan(&[ov("/s/2", "/s/1")], &upper, true), Plan::Walk(..)),
            "double_walk forces the walk"
        );
        assert!(matches!(
            plan(&[Mount::bind("/s/2", true)], &[ov("/s/3", "/s/2")], false),
            Plan::Overlay(..)
        ));
        assert!(matches!(
            plan(&[Mount::bind("/s/9", true)], &upper, false),
            Plan::Walk(..)
        ));
        assert!(matches!(
            plan(&[], &[Mount::bind("/s/1", false)], false),
            Plan::Walk(..)
        ));
    }
}
