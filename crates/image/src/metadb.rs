//! Small helpers for the SQLite metadata database shared by images and leases.

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, SystemTime};
use strata_content::{Error, Labels, Result};

/// Opens `path` in WAL mode with a busy timeout and foreign keys on.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    let conn = Connection::open(path)
        .map_err(|e| Error::db(format!("open database {}", path.display()), e))?;
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
        .map_err(|e| Error::db(format!("configure database {}", path.display()), e))?;
    Ok(conn)
}

pub(crate) fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(crate) fn from_nanos(n: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

pub(crate) fn to_json(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn from_json(s: &str) -> Labels {
    serde_json::from_str(s).unwrap_or_default()
}

pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}
