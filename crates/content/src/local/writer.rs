//! The local store's [`Writer`]: buffered, pipelined, crash-resumable ingests.
//!
//! `write` hashes the bytes at once (so [`Writer::digest`] is always exact) and appends
//! them to a chunk buffer; a full chunk (1 MiB) is written with `pwrite` on the blocking
//! pool while the caller fills the next one, so hashing, the caller's reads and the
//! copy into the page cache overlap. At most one chunk is in flight per writer. The
//! on-disk offset is the data file's size; bytes still buffered when the process dies
//! are simply not there on resume, and the digest is recomputed from the file.

use super::{LocalStore, Shared, db, lock};
use crate::digest::{self, Digest, Digester};
use crate::labels::{self, Labels};
use crate::store::{Status, Writer, WriterOpts};
use crate::{Error, Result, sqlite};
use async_trait::async_trait;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::task::JoinHandle;

/// Bytes buffered before a `pwrite`.
const CHUNK: usize = 1 << 20;
/// Writes at least this large are hashed with `block_in_place` on a multi-thread runtime.
const HASH_OFFLOAD: usize = 256 << 10;

/// The directory name of an ingest: hex sha256 of `<namespace>/<ref>`.
pub(crate) fn ingest_key(ns: &str, reference: &str) -> String {
    digest::sha256(format!("{ns}/{reference}").as_bytes())
        .digest()
        .to_string()
}

fn data_path(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// The status of an ingest from its row and data file (no writer needed).
pub(crate) fn status_of(sh: &Shared, row: &db::IngestRow) -> Result<Status> {
    let dir = sh.ingest.join(&row.key);
    let (mut offset, updated_at) = match std::fs::metadata(data_path(&dir)) {
        Ok(m) => (m.len(), m.modified().unwrap_or(row.started_at)),
        Err(_) => (0, row.started_at),
    };
    if offset == 0
        && let Some(size) = shared_size(sh, row.expected.as_ref(), row.total)?
    {
        offset = size;
    }
    Ok(Status {
        reference: row.reference.clone(),
        offset,
        total: row.total,
        expected: row.expected.clone(),
        started_at: row.started_at,
        updated_at,
    })
}

/// The size of `expected` if its bytes are committed (in any namespace) and match
/// `total` (0: any size): a writer for it can just link the existing blob.
fn shared_size(sh: &Shared, expected: Option<&Digest>, total: u64) -> Result<Option<u64>> {
    let Some(d) = expected else { return Ok(None) };
    let Some(size) = db::any_blob_size(&sh.conn(), d)? else {
        return Ok(None);
    };
    if (total != 0 && total != size) || !sh.blob_path(d).exists() {
        return Ok(None);
    }
    Ok(Some(size))
}

/// Aborts ingest `reference` of `ns`: removes its record and bytes.
pub(crate) fn abort(sh: &Shared, ns: &str, reference: &str) -> Result<()> {
    let key = ingest_key(ns, reference);
    let dir = sh.ingest.join(&key);
    let row = db::get_ingest(&sh.conn(), ns, reference)?;
    if row.is_none() && !dir.exists() {
        return Err(Error::not_found(format!("ingest ref {reference}")));
    }
    let lock = lock::try_lock(&dir, reference)?;
    let conn = sh.conn();
    sqlite::write_tx(&conn, &format!("abort ingest {reference}"), |tx| {
        db::delete_ingest(tx, ns, reference)
    })?;
    drop(conn);
    std::fs::remove_dir_all(&dir)
        .map_err(|e| Error::io(format!("remove ingest directory {}", dir.display()), e))?;
    drop(lock);
    Ok(())
}

fn hash_file(file: &File, len: u64, what: &str) -> Result<Digester> {
    let mut h = Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = file
            .read_at(&mut buf[..want], done)
            .map_err(|e| Error::io(format!("re-hash ingest {what}"), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h)
}

/// State produced by the blocking part of `open`.
struct Opened {
    dir: PathBuf,
    lock: lock::IngestLock,
    file: File,
    hasher: Digester,
    offset: u64,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
    shared: Option<u64>,
}

fn open_blocking(sh: &Shared, ns: &str, opts: &WriterOpts) -> Result<Opened> {
    let reference = &opts.reference;
    if reference.is_empty() {
        return Err(Error::invalid_argument("ingest ref must not be empty"));
    }
    if let Some(d) = &opts.expected {
        digest::require_sha256(d)?;
        if db::get_blob(&sh.conn(), ns, d)?.is_some() {
            return Err(Error::already_exists(format!("content {d}")));
        }
    }
    let key = ingest_key(ns, reference);
    let dir = sh.ingest.join(&key);
    let lock = lock::try_lock(&dir, reference)?;
    let data = data_path(&dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&data)
        .map_err(|e| Error::io(format!("open ingest data {}", data.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat ingest data {}", data.display()), e))?;
    let mut offset = meta.len();
    let want_total = opts.total.unwrap_or(0);
    let now = SystemTime::now();
    let existing = db::get_ingest(&sh.conn(), ns, reference)?;
    let (row, updated_at) = match existing {
        Some(r) if !(want_total != 0 && r.total != 0 && want_total != r.total) => {
            let updated = if offset > 0 {
                meta.modified().unwrap_or(now)
            } else {
                meta.modified().unwrap_or(r.started_at).max(r.started_at)
            };
            let row = db::IngestRow {
                expected: opts.expected.clone().or(r.expected.clone()),
                total: if want_total != 0 { want_total } else { r.total },
                ..r
            };
            (row, updated)
        }
        prev => {
            if let Some(r) = prev {
                tracing::warn!(
                    reference,
                    old_total = r.total,
                    new_total = want_total,
                    "ingest total changed; restarting it"
                );
            }
            // A new ingest (or one whose record was lost): start from nothing.
            if offset > 0 {
                file.set_len(0).map_err(|e| {
                    Error::io(format!("truncate ingest data {}", data.display()), e)
                })?;
                offset = 0;
            }
            let _ = std::fs::write(dir.join("ref"), format!("{ns}/{reference}"));
            let row = db::IngestRow {
                namespace: ns.to_string(),
                reference: reference.clone(),
                key,
                expected: opts.expected.clone(),
                total: want_total,
                started_at: now,
            };
            let _ = file.set_modified(now);
            (row, now)
        }
    };
    {
        let conn = sh.conn();
        sqlite::write_tx(&conn, &format!("record ingest {reference}"), |tx| {
            db::put_ingest(tx, &row)
        })?;
    }
    let shared = if offset == 0 {
        shared_size(sh, row.expected.as_ref(), row.total)?
    } else {
        None
    };
    let hasher = if offset > 0 {
        hash_file(&file, offset, reference)?
    } else {
        Digester::new()
    };
    Ok(Opened {
        dir,
        lock,
        file,
        hasher,
        offset,
        total: shared.unwrap_or(row.total),
        expected: row.expected,
        started_at: row.started_at,
        updated_at,
        shared,
    })
}

/// A writer on the local store. See the module docs.
pub(crate) struct LocalWriter {
    store: LocalStore,
    reference: String,
    dir: PathBuf,
    lock: Arc<lock::IngestLock>,
    file: Arc<File>,
    hasher: Digester,
    /// Bytes accepted by `write`.
    offset: u64,
    /// Bytes handed to `pwrite` (written or in flight).
    flushed: u64,
    total: u64,
    expected: Option<Digest>,
    started_at: SystemTime,
    updated_at: SystemTime,
    /// `Some(size)` while the writer only links an existing blob (no bytes of its own).
    shared: Option<u64>,
    buf: Vec<u8>,
    spare: Vec<u8>,
    inflight: Option<JoinHandle<(Vec<u8>, std::io::Result<()>)>>,
}

impl LocalWriter {
    pub(crate) async fn open(store: LocalStore, opts: WriterOpts) -> Result<LocalWriter> {
        let reference = opts.reference.clone();
        let o = store
            .blocking(move |sh, ns| open_blocking(sh, ns, &opts))
            .await?;
        Ok(LocalWriter {
            store,
            reference,
            dir: o.dir,
            lock: Arc::new(o.lock),
            file: Arc::new(o.file),
            hasher: o.hasher,
            offset: o.offset,
            flushed: o.offset,
            total: o.total,
            expected: o.expected,
            started_at: o.started_at,
            updated_at: o.updated_at,
            shared: o.shared,
            buf: Vec::new(),
            spare: Vec::new(),
            inflight: None,
        })
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("{what} ingest ref {}", self.reference), e)
    }

    /// Waits for the chunk in flight, keeping its buffer for reuse.
    async fn wait_inflight(&mut self) -> Result<()> {
        if let Some(h) = self.inflight.take() {
            let (mut buf, res) = h
                .await
                .map_err(|e| Error::internal("ingest write task failed").with_source(e))?;
            buf.clear();
            self.spare = buf;
            res.map_err(|e| self.io_err("write", e))?;
        }
        Ok(())
    }

    /// Sends the buffered bytes to `pwrite` (waiting for the previous chunk first).
    async fn flush_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wait_inflight().await?;
        let next = std::mem::take(&mut self.spare);
        let chunk = std::mem::replace(&mut self.buf, next);
        let at = self.flushed;
        self.flushed += chunk.len() as u64;
        let file = self.file.clone();
        let lock = self.lock.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let res = file.write_all_at(&chunk, at);
            if res.is_ok() {
                start_writeback(&file, at, chunk.len());
            }
            drop(lock);
            (chunk, res)
        }));
        Ok(())
    }

    /// Writes everything buffered and waits for it.
    async fn flush_all(&mut self) -> Result<()> {
        self.flush_chunk().await?;
        self.wait_inflight().await
    }

    /// Turns a linking writer into one with its own bytes: copies the existing blob.
    async fn materialize(&mut self) -> Result<()> {
        let Some(size) = self.shared else {
            return Ok(());
        };
        let digest = self
            .expected
            .clone()
            .expect("a shared writer has an expected digest");
        let file = self.file.clone();
        let reference = self.reference.clone();
        let hasher = self
            .store
            .blocking(move |sh, _| {
                let src_path = sh.blob_path(&digest);
                let mut src = File::open(&src_path)
                    .map_err(|e| Error::io(format!("open blob {}", src_path.display()), e))?;
                file.set_len(0)
                    .map_err(|e| Error::io(format!("truncate ingest {reference}"), e))?;
                let mut dst = &*file;
                std::io::Seek::seek(&mut dst, std::io::SeekFrom::Start(0))
                    .map_err(|e| Error::io(format!("seek ingest {reference}"), e))?;
                let n = std::io::copy(&mut src, &mut dst).map_err(|e| {
                    Error::io(format!("copy blob {digest} into ingest {reference}"), e)
                })?;
                if n != size {
                    return Err(Error::internal(format!(
                        "blob {digest} has {n} bytes, its record says {size}"
                    )));
                }
                hash_file(&file, size, &reference)
            })
            .await?;
        self.hasher = hasher;
        self.offset = size;
        self.flushed = size;
        self.shared = None;
        Ok(())
    }

    fn hash(&mut self, buf: &[u8]) {
        let offload = buf.len() >= HASH_OFFLOAD
            && tokio::runtime::Handle::try_current()
                .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
                .unwrap_or(false);
        if offload {
            tokio::task::block_in_place(|| self.hasher.update(buf));
        } else {
            self.hasher.update(buf);
        }
    }

    /// Flushes, syncs and stamps the data file's mtime with the last write time.
    async fn sync(&mut self) -> Result<()> {
        self.flush_all().await?;
        let file = self.file.clone();
        let updated = self.updated_at;
        let r = self.reference.clone();
        tokio::task::spawn_blocking(move || {
            file.sync_data()
                .map_err(|e| Error::io(format!("sync ingest ref {r}"), e))?;
            let _ = file.set_modified(updated);
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::internal("ingest sync task failed").with_source(e))?
    }
}

/// Starts (without waiting for) writeback of a written range, so the `fsync` at commit
/// has little left to do and dirty pages do not pile up. Best effort.
fn start_writeback(file: &File, at: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            at as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

enum CommitOutcome {
    Committed,
    Exists,
}

#[async_trait]
impl Writer for LocalWriter {
    async fn write(&mut self, mut buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.materialize().await?;
        self.hash(buf);
        self.offset += buf.len() as u64;
        self.updated_at = SystemTime::now();
        while !buf.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve(buf.len().clamp(64 << 10, CHUNK));
            }
            let room = CHUNK - self.buf.len();
            let n = room.min(buf.len());
            self.buf.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.buf.len() == CHUNK {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    fn digest(&self) -> Digest {
        match (&self.shared, &self.expected) {
            (Some(_), Some(d)) => d.clone(),
            _ => self.hasher.digest(),
        }
    }

    async fn status(&self) -> Result<Status> {
        Ok(Status {
            reference: self.reference.clone(),
            offset: self.shared.unwrap_or(self.offset),
            total: self.total,
            expected: self.expected.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        })
    }

    async fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(Error::invalid_argument(format!(
                "truncate ingest ref {} to {size}: only truncate(0) is supported",
                self.reference
            )));
        }
        if self.shared.take().is_none() {
            self.buf.clear();
            self.wait_inflight().await?;
            let file = self.file.clone();
            tokio::task::spawn_blocking(move || file.set_len(0))
                .await
                .map_err(|e| Error::internal("truncate task failed").with_source(e))?
                .map_err(|e| self.io_err("truncate", e))?;
        }
        self.hasher = Digester::new();
        self.offset = 0;
        self.flushed = 0;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        size: u64,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<()> {
        labels::validate(&labels)?;
        self.sync().await?;
        let actual_size = match self.shared {
            Some(s) => s,
            None => {
                let m = self.file.metadata().map_err(|e| self.io_err("stat", e))?;
                if m.len() != self.offset {
                    return Err(Error::internal(format!(
                        "ingest ref {}: data file has {} bytes, the writer wrote {}",
                        self.reference,
                        m.len(),
                        self.offset
                    )));
                }
                m.len()
            }
        };
        if size > 0 && size != actual_size {
            return Err(Error::failed_precondition(format!(
                "commit ingest ref {}: unexpected commit size {actual_size}, expected {size}",
                self.reference
            )));
        }
        let dgst = self.digest();
        if let Some(e) = &expected
            && *e != dgst
        {
            return Err(Error::failed_precondition(format!(
                "commit ingest ref {}: unexpected commit digest {dgst}, expected {e}",
                self.reference
            )));
        }
        let job = CommitJob {
            reference: self.reference.clone(),
            dir: self.dir.clone(),
            digest: dgst.clone(),
            size: actual_size,
            linking: self.shared.is_some(),
            labels,
        };
        let store = self.store.clone();
        // The lock stays held until the blocking part is done.
        let lock = self.lock.clone();
        drop(self);
        let res = store
            .blocking(move |sh, ns| {
                let out = job.run(sh, ns);
                drop(lock);
                out
            })
            .await?;
        match res {
            CommitOutcome::Committed => Ok(()),
            CommitOutcome::Exists => Err(Error::already_exists(format!("content {dgst}"))),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.sync().await
    }
}

/// The blocking part of a commit, after the size and digest were verified.
struct CommitJob {
    reference: String,
    dir: PathBuf,
    digest: Digest,
    size: u64,
    linking: bool,
    labels: Labels,
}

impl CommitJob {
    fn run(self, sh: &Shared, ns: &str) -> Result<CommitOutcome> {
        let data = data_path(&self.dir);
        let target = sh.blob_path(&self.digest);
        let d = &self.digest;
        let conn = sh.conn();
        let what = format!("commit ingest ref {} as {d}", self.reference);
        let renamed = std::cell::Cell::new(false);
        let outcome = sqlite::write_tx(&conn, &what, |tx| {
            db::delete_ingest(tx, ns, &self.reference)?;
            if db::get_blob(tx, ns, d)?.is_some() {
                return Ok(CommitOutcome::Exists);
            }
            if std::fs::symlink_metadata(&target).is_err() {
                if self.linking {
                    return Err(Error::failed_precondition(format!(
                        "{what}: the bytes of {d} were removed meanwhile; write them again"
                    )));
                }
                std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o444))
                    .map_err(|e| Error::io(format!("{what}: chmod {}", data.display()), e))?;
                std::fs::rename(&data, &target).map_err(|e| {
                    Error::io(format!("{what}: rename into {}", target.display()), e)
                })?;
                renamed.set(true);
                File::open(&sh.blobs)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(format!("{what}: sync {}", sh.blobs.display()), e))?;
            }
            db::insert_blob(tx, ns, d, self.size, SystemTime::now(), &self.labels)?;
            Ok(CommitOutcome::Committed)
        })
        .inspect_err(|_| {
            // The transaction rolled back (e.g. the disk is full): the ingest's record is
            // back, so its bytes go back too, and the ingest stays resumable.
            if renamed.get() {
                let _ = std::fs::rename(&target, &data);
            }
        })?;
        drop(conn);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "remove committed ingest directory");
        }
        Ok(outcome)
    }
}
