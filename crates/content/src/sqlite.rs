//! Shared SQLite plumbing for strata's metadata databases.
//!
//! Not part of the content store's interface: this is the one place where strata opens a
//! SQLite database and converts its columns, used by the content store's
//! `<root>/content/metadata.db`, each snapshotter's metastore and the image and lease
//! database. It lives in this crate because every other strata crate depends on it.
//!
//! The policy, the same for every database:
//! - **WAL** journal and `synchronous=NORMAL`: a commit is atomic and survives a process
//!   crash; callers that must survive a power loss raise `synchronous` for that commit.
//! - **Foreign keys** enforced.
//! - A **busy timeout** of [`BUSY_TIMEOUT`], so concurrent processes wait for the write lock
//!   instead of failing, and [`with_retry`] for the cases where SQLite reports `BUSY` without
//!   calling its busy handler (WAL recovery, a lock upgrade).
//! - **Times** as signed nanoseconds since the Unix epoch ([`to_nanos`], [`from_nanos`]).
//! - **Labels** as a JSON object ([`labels_to_json`], [`labels_from_json`]).
//!
//! ```
//! use strata_content::sqlite;
//! # fn main() -> strata_content::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let conn = sqlite::open(&dir.path().join("db/metadata.db"), "example database")?;
//! let t = sqlite::write_tx(&conn, "insert a row", |tx| {
//!     tx.execute_batch("CREATE TABLE t (at INTEGER)")
//!         .and_then(|_| tx.execute("INSERT INTO t VALUES (?1)", [sqlite::to_nanos(std::time::UNIX_EPOCH)]))
//!         .map_err(|e| strata_content::Error::db("insert a row", e))
//! })?;
//! assert_eq!(t, 1);
//! # Ok(()) }
//! ```

use crate::{Error, Labels, Result};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a connection waits for another connection's lock before SQLite reports `BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`with_retry`] keeps retrying an operation that SQLite reports busy.
const RETRY_DEADLINE: Duration = Duration::from_secs(120);

/// Opens (creating it and its parent directory if needed) the database at `path`, in WAL
/// mode with `synchronous=NORMAL`, foreign keys on and a [`BUSY_TIMEOUT`]. `what` names
/// the database in error messages (e.g. `"snapshot metastore"`).
///
/// # Errors
/// `Io` when the parent directory cannot be created; `Internal` (or `Unavailable` when the
/// database stays locked) when it cannot be opened or configured.
pub fn open(path: &Path, what: &str) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create directory {} for {what}", dir.display()), e))?;
    }
    let ctx = || format!("open {what} {}", path.display());
    let conn = Connection::open(path).map_err(|e| Error::db(ctx(), e))?;
    persist_wal(&conn);
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| Error::db(ctx(), e))?;
    with_retry(|| {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")
    })
    .map_err(|e| Error::db(ctx(), e))?;
    Ok(conn)
}

/// Creates the tables of `schema` unless `table` exists: opening an existing database
/// writes nothing (so it works on a full or read-only filesystem). `schema` runs in one
/// `IMMEDIATE` transaction, retried while the database is busy.
///
/// # Errors
/// SQLite's errors reading the catalogue or creating the schema.
pub fn ensure_schema(conn: &Connection, table: &str, schema: &str) -> rusqlite::Result<()> {
    let exists = |c: &Connection| {
        c.query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .map(|()| true)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(false),
            e => Err(e),
        })
    };
    if with_retry(|| exists(conn))? {
        return Ok(());
    }
    with_retry(|| conn.execute_batch(&format!("BEGIN IMMEDIATE; {schema}; COMMIT;"))).inspect_err(
        |_| {
            let _ = conn.execute_batch("ROLLBACK");
        },
    )
}

/// Keeps the `-wal` and `-shm` files when the last connection closes (SQLite's
/// persistent WAL): opening the database again then needs no new disk space, so a full
/// filesystem can still be read (and, with space released, cleaned up).
fn persist_wal(conn: &Connection) {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: a live connection handle, the "main" database, and an int argument as
    // SQLITE_FCNTL_PERSIST_WAL expects; a failure only leaves the default behaviour.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::ffi::c_int).cast(),
        );
    }
}

/// Whether `e` is SQLite's `BUSY` or `LOCKED`.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs `f`, retrying with a growing pause (2 ms to 100 ms) while SQLite reports the
/// database busy or locked, for up to two minutes. The busy handler already waits for
/// locks; this covers the cases where SQLite returns `BUSY` without calling it.
///
/// # Errors
/// `f`'s last error: any error that is not `BUSY`/`LOCKED` at once, `BUSY` after the
/// deadline.
pub fn with_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut delay = Duration::from_millis(2);
    let deadline = Instant::now() + RETRY_DEADLINE;
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() <= deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Begins a transaction with `behavior` (retried while busy, see [`with_retry`]). `what`
/// names the operation in errors. The transaction rolls back when dropped uncommitted.
///
/// # Errors
/// `Unavailable` when the database stays locked, `Internal` otherwise.
pub fn begin<'c>(
    conn: &'c Connection,
    behavior: TransactionBehavior,
    what: &str,
) -> Result<Transaction<'c>> {
    with_retry(|| Transaction::new_unchecked(conn, behavior))
        .map_err(|e| Error::db(format!("{what}: begin transaction"), e))
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits it; `f`'s error rolls back.
/// Immediate transactions take the write lock at once, so concurrent writers (in this or
/// another process) serialize instead of failing on a lock upgrade.
///
/// # Errors
/// `f`'s error, or a database error naming `what`.
pub fn write_tx<T>(
    conn: &Connection,
    what: &str,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = begin(conn, TransactionBehavior::Immediate, what)?;
    let out = f(&tx)?;
    tx.commit()
        .map_err(|e| Error::db(format!("{what}: commit transaction"), e))?;
    Ok(out)
}

/// Whether `e` is a constraint violation (a duplicate key, a foreign key in use …).
pub fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// `t` as nanoseconds since the Unix epoch; times before the epoch are 0.
pub fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The inverse of [`to_nanos`]; negative values are the epoch.
pub fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

/// `labels` as a JSON object.
pub fn labels_to_json(labels: &Labels) -> String {
    serde_json::to_string(labels).expect("a map of strings serializes")
}

/// Labels from a JSON object written by [`labels_to_json`].
///
/// # Errors
/// serde's error when `s` is not a JSON object of strings; callers decide whether that is
/// corruption (`Internal`) or means no labels.
pub fn labels_from_json(s: &str) -> serde_json::Result<Labels> {
    serde_json::from_str(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_and_clamp() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(from_nanos(to_nanos(t)), t);
        assert_eq!(to_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(from_nanos(-5), UNIX_EPOCH);
    }

    #[test]
    fn open_sets_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("a/b/m.db"), "test database").unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn write_tx_rolls_back_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("m.db"), "test database").unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        let err = write_tx(&conn, "insert twice", |tx| {
            tx.execute("INSERT INTO t VALUES (1)", [])
                .map_err(|e| Error::db("first", e))?;
            tx.execute("INSERT INTO t VALUES (1)", [])
                .map_err(|e| Error::db("second", e))
        })
        .unwrap_err();
        assert!(err.to_string().contains("second"), "{err}");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn constraint_is_recognized() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE); INSERT INTO t VALUES (1);")
            .unwrap();
        let e = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(is_constraint(&e));
        assert!(!is_busy(&e));
    }

    #[test]
    fn labels_round_trip() {
        let labels = Labels::from([("a".to_string(), "b".to_string())]);
        assert_eq!(labels_from_json(&labels_to_json(&labels)).unwrap(), labels);
        assert!(labels_from_json("[]").is_err());
    }
}
