//! The local store's metadata database (`<root>/metadata.db`, SQLite in WAL mode).
//!
//! Two tables:
//! - `blobs(namespace, digest, size, created_ns, updated_ns, labels)`: one row per blob
//!   committed in a namespace (labels as a JSON object). The bytes are shared: a file in
//!   `blobs/sha256/` exists while at least one row names its digest.
//! - `ingests(namespace, ref, key, expected, total, started_ns)`: one row per ingest; its
//!   bytes live in `ingest/<key>/data`.
//!
//! Every function here is blocking; callers run them in `spawn_blocking`. Writes use
//! `BEGIN IMMEDIATE` so concurrent processes serialize on the database lock (with a long
//! `busy_timeout`, never surfacing `SQLITE_BUSY`).

use crate::digest::{self, Digest};
use crate::labels::Labels;
use crate::sqlite::{self, from_nanos, labels_to_json, to_nanos, with_retry};
use crate::store::Info;
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::time::SystemTime;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    namespace  TEXT NOT NULL,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_by_digest ON blobs(digest);
CREATE TABLE IF NOT EXISTS ingests (
    namespace  TEXT NOT NULL,
    ref        TEXT NOT NULL,
    key        TEXT NOT NULL,
    expected   TEXT,
    total      INTEGER NOT NULL DEFAULT 0,
    started_ns INTEGER NOT NULL,
    PRIMARY KEY (namespace, ref)
) WITHOUT ROWID;
";

/// An ingest row.
#[derive(Debug, Clone)]
pub(crate) struct IngestRow {
    pub namespace: String,
    pub reference: String,
    pub key: String,
    pub expected: Option<Digest>,
    pub total: u64,
    pub started_at: SystemTime,
}

/// Opens (creating if needed) the database at `path`, with [`crate::sqlite`]'s policy.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let conn = sqlite::open(path, "content metadata database")?;
    sqlite::ensure_schema(&conn, "ingests", SCHEMA).map_err(|e| {
        Error::db(
            format!(
                "create the schema of content metadata database {}",
                path.display()
            ),
            e,
        )
    })?;
    Ok(conn)
}

fn parse_labels(s: &str, digest: &str) -> Result<Labels> {
    sqlite::labels_from_json(s).map_err(|e| {
        Error::internal(format!("labels of blob {digest} in the database")).with_source(e)
    })
}

fn row_to_info(
    digest: String,
    size: i64,
    created: i64,
    updated: i64,
    labels: String,
) -> Result<Info> {
    let labels = parse_labels(&labels, &digest)?;
    Ok(Info {
        digest: digest::parse(&digest).map_err(|e| e.context("digest in the database"))?,
        size: size as u64,
        created_at: from_nanos(created),
        updated_at: from_nanos(updated),
        labels,
    })
}

/// The info of `digest` in `ns`, if committed there.
pub(crate) fn get_blob(conn: &Connection, ns: &str, digest: &Digest) -> Result<Option<Info>> {
    let d = digest.to_string();
    let row = with_retry(|| {
        conn.query_row(
            "SELECT size, created_ns, updated_ns, labels FROM blobs WHERE namespace=?1 AND digest=?2",
            params![ns, d],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()
    })
    .map_err(|e| Error::db(format!("look up blob {digest}"), e))?;
    row.map(|(s, c, u, l)| row_to_info(d, s, c, u, l))
        .transpose()
}

/// The size of `digest` as recorded in any namespace.
pub(crate) fn any_blob_size(conn: &Connection, digest: &Digest) -> Result<Option<u64>> {
    let d = digest.to_string();
    with_retry(|| {
        conn.query_row(
            "SELECT size FROM blobs WHERE digest=?1 LIMIT 1",
            params![d],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    })
    .map(|o| o.map(|s| s as u64))
    .map_err(|e| Error::db(format!("look up blob {digest}"), e))
}

/// Every blob committed in `ns`, ordered by digest.
pub(crate) fn list_blobs(conn: &Connection, ns: &str) -> Result<Vec<Info>> {
    let rows = with_retry(|| {
        let mut st = conn.prepare_cached(
            "SELECT digest, size, created_ns, updated_ns, labels FROM blobs WHERE namespace=?1 ORDER BY digest",
        )?;
        st.query_map(params![ns], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(|e| Error::db(format!("list blobs of namespace {ns}"), e))?;
    rows.into_iter()
        .map(|(d, s, c, u, l)| row_to_info(d, s, c, u, l))
        .collect()
}

/// Every `(namespace, digest)` pair recorded, for garbage collection.
pub(crate) fn all_blob_records(conn: &Connection) -> Result<Vec<(String, Digest)>> {
    let rows = with_retry(|| {
        let mut st = conn.prepare_cached("SELECT namespace, digest FROM blobs ORDER BY digest")?;
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(|e| Error::db("list all blob records", e))?;
    rows.into_iter()
        .map(|(ns, d)| Ok((ns, digest::parse(&d)?)))
        .collect()
}

/// Inserts a blob record in `tx`; `Ok(false)` when it already exists.
pub(crate) fn insert_blob(
    tx: &Transaction<'_>,
    ns: &str,
    digest: &Digest,
    size: u64,
    now: SystemTime,
    labels: &Labels,
) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT OR IGNORE INTO blobs (namespace, digest, size, created_ns, updated_ns, labels)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![
                ns,
                digest.to_string(),
                size as i64,
                to_nanos(now),
                labels_to_json(labels)
            ],
        )
        .map_err(|e| Error::db(format!("record blob {digest} in namespace {ns}"), e))?;
    Ok(n == 1)
}

/// Replaces the labels and updated time of a blob record; `Ok(false)` when missing.
pub(crate) fn set_labels(
    tx: &Transaction<'_>,
    ns: &str,
    digest: &Digest,
    labels: &Labels,
    now: SystemTime,
) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE blobs SET labels=?3, updated_ns=?4 WHERE namespace=?1 AND digest=?2",
            params![
                ns,
                digest.to_string(),
                labels_to_json(labels),
                to_nanos(now)
            ],
        )
        .map_err(|e| Error::db(format!("update labels of blob {digest}"), e))?;
    Ok(n == 1)
}

/// Deletes a blob record; returns whether it existed and how many namespaces still
/// reference the digest afterwards.
pub(crate) fn delete_blob(tx: &Transaction<'_>, ns: &str, digest: &Digest) -> Result<(bool, u64)> {
    let d = digest.to_string();
    let n = tx
        .execute(
            "DELETE FROM blobs WHERE namespace=?1 AND digest=?2",
            params![ns, d],
        )
        .map_err(|e| Error::db(format!("delete blob {digest} from namespace {ns}"), e))?;
    let left: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM blobs WHERE digest=?1",
            params![d],
            |r| r.get(0),
        )
        .map_err(|e| Error::db(format!("count references to blob {digest}"), e))?;
    Ok((n == 1, left as u64))
}

/// Whether any namespace references `digest`.
pub(crate) fn blob_referenced(tx: &Connection, digest: &Digest) -> Result<bool> {
    let n: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM blobs WHERE digest=?1",
            params![digest.to_string()],
            |r| r.get(0),
        )
        .map_err(|e| Error::db(format!("count references to blob {digest}"), e))?;
    Ok(n > 0)
}

fn row_to_ingest(r: &rusqlite::Row<'_>) -> rusqlite::Result<IngestRowRaw> {
    Ok(IngestRowRaw {
        namespace: r.get(0)?,
        reference: r.get(1)?,
        key: r.get(2)?,
        expected: r.get(3)?,
        total: r.get(4)?,
        started_ns: r.get(5)?,
    })
}

struct IngestRowRaw {
    namespace: String,
    reference: String,
    key: String,
    expected: Option<String>,
    total: i64,
    started_ns: i64,
}

impl IngestRowRaw {
    fn cook(self) -> Result<IngestRow> {
        Ok(IngestRow {
            expected: self
                .expected
                .as_deref()
                .map(digest::parse)
                .transpose()
                .map_err(|e| e.context(format!("expected digest of ingest {}", self.reference)))?,
            namespace: self.namespace,
            reference: self.reference,
            key: self.key,
            total: self.total as u64,
            started_at: from_nanos(self.started_ns),
        })
    }
}

const INGEST_COLS: &str = "namespace, ref, key, expected, total, started_ns";

/// The ingest `reference` of `ns`.
pub(crate) fn get_ingest(
    conn: &Connection,
    ns: &str,
    reference: &str,
) -> Result<Option<IngestRow>> {
    let sql = format!("SELECT {INGEST_COLS} FROM ingests WHERE namespace=?1 AND ref=?2");
    let raw = with_retry(|| {
        conn.query_row(&sql, params![ns, reference], row_to_ingest)
            .optional()
    })
    .map_err(|e| Error::db(format!("look up ingest {reference}"), e))?;
    raw.map(IngestRowRaw::cook).transpose()
}

/// The ingests of `ns` (all namespaces when `None`), ordered by ref.
pub(crate) fn list_ingests(conn: &Connection, ns: Option<&str>) -> Result<Vec<IngestRow>> {
    let raws = with_retry(|| {
        let rows = match ns {
            Some(ns) => {
                let mut st = conn.prepare_cached(&format!(
                    "SELECT {INGEST_COLS} FROM ingests WHERE namespace=?1 ORDER BY ref"
                ))?;
                st.query_map(params![ns], row_to_ingest)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let mut st = conn.prepare_cached(&format!(
                    "SELECT {INGEST_COLS} FROM ingests ORDER BY namespace, ref"
                ))?;
                st.query_map([], row_to_ingest)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    })
    .map_err(|e| Error::db("list ingests", e))?;
    raws.into_iter().map(IngestRowRaw::cook).collect()
}

/// Inserts or replaces an ingest row.
pub(crate) fn put_ingest(tx: &Transaction<'_>, row: &IngestRow) -> Result<()> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO ingests ({INGEST_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            row.namespace,
            row.reference,
            row.key,
            row.expected.as_ref().map(|d| d.to_string()),
            row.total as i64,
            to_nanos(row.started_at)
        ],
    )
    .map_err(|e| Error::db(format!("record ingest {}", row.reference), e))?;
    Ok(())
}

/// Deletes an ingest row; whether it existed.
pub(crate) fn delete_ingest(tx: &Transaction<'_>, ns: &str, reference: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM ingests WHERE namespace=?1 AND ref=?2",
            params![ns, reference],
        )
        .map_err(|e| Error::db(format!("delete ingest {reference}"), e))?;
    Ok(n == 1)
}
