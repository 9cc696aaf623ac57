//! The content store interfaces, after containerd's `content` package.
//!
//! A [`Store`] is a [`Provider`] (read committed blobs), an [`Ingester`] (open
//! [`Writer`]s), a [`Manager`] (info, labels, walk, delete) and an [`IngestManager`]
//! (the status of in-progress ingests). Until [`Writer::commit`] succeeds, data is visible
//! only through the [`IngestManager`]; after it, only through the [`Provider`] and the
//! [`Manager`]. All traits are object safe: backends are used as `Arc<dyn Store>`.

use crate::Result;
use crate::digest::Digest;
use crate::labels::Labels;
use async_trait::async_trait;
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// What the store knows of a committed blob (per namespace: labels and times are the
/// namespace's own, the bytes are shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was committed in this namespace.
    #[serde(with = "crate::time_format")]
    pub created_at: SystemTime,
    /// When its labels last changed.
    #[serde(with = "crate::time_format")]
    pub updated_at: SystemTime,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

impl Info {
    /// An `Info` naming `digest` with `labels`, as passed to [`Manager::update`] (other
    /// fields are ignored by `update`).
    pub fn for_update(digest: Digest, labels: Labels) -> Self {
        Info {
            digest,
            size: 0,
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            labels,
        }
    }
}

/// The state of an in-progress ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The ingest's reference (the key under which it can be resumed).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// The expected total size, 0 when unknown.
    pub total: u64,
    /// The expected digest, when the writer was opened with one.
    pub expected: Option<Digest>,
    /// When the ingest started.
    #[serde(with = "crate::time_format")]
    pub started_at: SystemTime,
    /// When it last received bytes.
    #[serde(with = "crate::time_format")]
    pub updated_at: SystemTime,
}

/// Options for [`Ingester::writer`].
///
/// ```
/// use strata_content::WriterOpts;
/// let opts = WriterOpts::new("layer-sha256:abc").total(1024);
/// assert_eq!(opts.reference, "layer-sha256:abc");
/// ```
#[derive(Debug, Clone, Default)]
pub struct WriterOpts {
    /// The ingest reference; required. Reopening the same reference resumes the ingest.
    pub reference: String,
    /// The digest the data must have. If it is already committed, [`Ingester::writer`]
    /// fails at once with `AlreadyExists`.
    pub expected: Option<Digest>,
    /// The expected size (0 or `None`: unknown).
    pub total: Option<u64>,
}

impl WriterOpts {
    /// Options for the ingest `reference`.
    pub fn new(reference: impl Into<String>) -> Self {
        WriterOpts {
            reference: reference.into(),
            ..Default::default()
        }
    }

    /// Expects the digest and size of `desc`.
    pub fn descriptor(mut self, desc: &Descriptor) -> Self {
        self.expected = Some(desc.digest().clone());
        self.total = Some(desc.size());
        self
    }

    /// Expects `digest`.
    pub fn expected(mut self, digest: Digest) -> Self {
        self.expected = Some(digest);
        self
    }

    /// Expects `size` bytes.
    pub fn total(mut self, size: u64) -> Self {
        self.total = Some(size);
        self
    }
}

/// Random access to a committed blob.
pub trait ReaderAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at or past the end.
    ///
    /// # Errors
    /// The operating system's I/O error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;

    /// The blob's size in bytes.
    fn size(&self) -> u64;
}

/// Reads committed blobs.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Random access to the blob named by `desc.digest()` (only the digest is used).
    ///
    /// # Errors
    /// `NotFound` when the blob is not committed in this namespace.
    async fn reader_at(&self, desc: &Descriptor) -> Result<Arc<dyn ReaderAt>>;

    /// A sequential stream of the blob's bytes.
    ///
    /// # Errors
    /// As [`Provider::reader_at`].
    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn AsyncRead + Send + Unpin>>;
}

/// Writes one ingest. Obtained from [`Ingester::writer`]; holds the ingest's lock until it
/// is committed, closed or dropped.
#[async_trait]
pub trait Writer: Send {
    /// Appends `buf` (all of it) and updates the running digest.
    ///
    /// # Errors
    /// `Io` naming the ingest ref.
    async fn write(&mut self, buf: &[u8]) -> Result<()>;

    /// The digest of the bytes written so far.
    fn digest(&self) -> Digest;

    /// The ingest's current status.
    ///
    /// # Errors
    /// `Io` when the on-disk state cannot be read.
    async fn status(&self) -> Result<Status>;

    /// Discards the bytes written so far. Only `truncate(0)` is supported.
    ///
    /// # Errors
    /// `InvalidArgument` for any other size.
    async fn truncate(&mut self, size: u64) -> Result<()>;

    /// Verifies and publishes the data as a blob, then releases the ingest.
    ///
    /// `size` 0 and `expected` `None` skip the corresponding check. The writer is closed
    /// whatever the outcome.
    ///
    /// # Errors
    /// - `FailedPrecondition` when the size or digest differs; the ingest's bytes stay
    ///   on disk, so reopening the ref resumes at the same offset.
    /// - `AlreadyExists` when the digest is already committed (the ingest is removed; the
    ///   helpers treat this as success).
    async fn commit(
        self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()>;

    /// Syncs and releases the ingest, keeping its bytes so it can be resumed.
    ///
    /// # Errors
    /// `Io` when the data cannot be synced.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// Opens writers for ingests.
#[async_trait]
pub trait Ingester: Send + Sync {
    /// Opens (or resumes) the ingest `opts.reference`.
    ///
    /// # Errors
    /// - `InvalidArgument` for an empty ref.
    /// - `AlreadyExists` when `opts.expected` is already committed in this namespace.
    /// - `Unavailable` while another writer (in this or another process) holds the ref.
    async fn writer(&self, opts: WriterOpts) -> Result<Box<dyn Writer>>;
}

/// Manages committed blobs.
#[async_trait]
pub trait Manager: Send + Sync {
    /// The blob's info.
    ///
    /// # Errors
    /// `NotFound` when the blob is not committed in this namespace.
    async fn info(&self, digest: &Digest) -> Result<Info>;

    /// Updates labels of `info.digest`. With no `fieldpaths` all labels are replaced;
    /// `labels` replaces them all too; `labels.<key>` sets (or, when absent or empty in
    /// `info`, deletes) one key. Returns the new info.
    ///
    /// # Errors
    /// `NotFound` for a missing blob; `InvalidArgument` for any other field path or a
    /// label over the size limit.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;

    /// The infos of the blobs that match any of `filters` (fields `digest`, `size`,
    /// `labels.<key>`), ordered by digest.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed filter.
    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>>;

    /// Removes the blob from this namespace (the bytes go when no namespace has it).
    ///
    /// # Errors
    /// `NotFound` when the blob is not committed in this namespace.
    async fn delete(&self, digest: &Digest) -> Result<()>;
}

/// Manages in-progress ingests.
#[async_trait]
pub trait IngestManager: Send + Sync {
    /// The status of the ingest `reference`.
    ///
    /// # Errors
    /// `NotFound` when no such ingest exists.
    async fn status(&self, reference: &str) -> Result<Status>;

    /// The statuses of ingests matching any of `filters` (field `ref`), ordered by ref.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed filter.
    async fn list_statuses(&self, filters: &[String]) -> Result<Vec<Status>>;

    /// Removes the ingest and its bytes.
    ///
    /// # Errors
    /// `NotFound` when no such ingest exists; `Unavailable` while a writer holds it.
    async fn abort(&self, reference: &str) -> Result<()>;
}

/// A complete content store: [`Provider`] + [`Ingester`] + [`Manager`] +
/// [`IngestManager`]. Every backend keeps these invariants (containerd's content store
/// semantics; the conformance suite, feature `testsuite`, checks them):
///
/// - **Ingest.** Bytes enter only through a [`Writer`] opened by [`Ingester::writer`] for
///   an ingest ref. At most one writer holds a ref at a time, across processes: a second
///   one gets `Unavailable` ([`crate::helpers::open_writer`] waits for it). An ingest
///   survives its writer's [`Writer::close`], drop or crash; reopening the ref resumes at
///   its offset (its [`Status::offset`] is the bytes it holds). [`IngestManager::abort`]
///   removes it.
/// - **Commit verifies.** [`Writer::commit`] checks the size and the digest of the bytes
///   (when given); a mismatch is `FailedPrecondition` and the ingest stays as it was,
///   resumable. On success the blob becomes visible with the commit's labels and the
///   ingest is gone.
/// - **No partial blob is ever visible.** Until a commit succeeds, its bytes are visible
///   only as an ingest ([`IngestManager`]); after it, only as a blob ([`Provider`],
///   [`Manager`]). Readers never see a blob whose size and digest were not verified, and a
///   crash at any point leaves either the ingest or the whole blob.
/// - **AlreadyExists** means the data is already there and is success for a caller that
///   wanted it stored: a writer opened with an expected digest committed in this namespace
///   fails at once with it, and a commit that finds its digest committed meanwhile returns
///   it (and removes the ingest).
/// - **Labels** belong to a blob in one namespace, are validated (size limit,
///   [`crate::labels::validate`]), set at commit and changed with [`Manager::update`]; the
///   `containerd.io/gc.*` labels are what garbage collection follows.
/// - **Namespaces.** Records (info, labels, times) are per namespace; the bytes are shared.
///   A blob committed in one namespace is `NotFound` in another until committed there too;
///   a writer there that expects its digest starts complete (offset = total) and its
///   commit only adds the record.
/// - **Delete** ([`Manager::delete`]) removes this namespace's record (`NotFound` when
///   there is none); the bytes go when no namespace records the blob any more.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
/// use strata_content::{digest, IngestManager, Ingester, Labels, Manager, Store, WriterOpts};
/// let dir = tempfile::tempdir().unwrap();
/// let local = strata_content::local::LocalStore::open(dir.path())?;
/// let store: &dyn Store = &local;
///
/// let mut w = store.writer(WriterOpts::new("greeting")).await?;
/// w.write(b"hello").await?;
/// // A wrong digest: FailedPrecondition, nothing visible, the ingest kept at offset 5.
/// let err = w.commit(5, Some(digest::sha256(b"hellO")), Labels::new()).await.unwrap_err();
/// assert!(err.is_failed_precondition());
/// assert!(store.info(&digest::sha256(b"hello")).await.unwrap_err().is_not_found());
/// assert_eq!(store.status("greeting").await?.offset, 5);
///
/// // Resume and commit with the right digest: the blob is visible, the ingest gone.
/// let w = store.writer(WriterOpts::new("greeting")).await?;
/// w.commit(5, Some(digest::sha256(b"hello")), Labels::new()).await?;
/// assert_eq!(store.info(&digest::sha256(b"hello")).await?.size, 5);
/// assert!(store.list_statuses(&[]).await?.is_empty());
///
/// // The same digest again: AlreadyExists at once.
/// let again = WriterOpts::new("again").expected(digest::sha256(b"hello"));
/// assert!(store.writer(again).await.err().unwrap().is_already_exists());
/// # Ok(()) }
/// ```
pub trait Store: Provider + Ingester + Manager + IngestManager {}

impl<T: Provider + Ingester + Manager + IngestManager + ?Sized> Store for T {}
