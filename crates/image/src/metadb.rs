//! The metadata database that images and leases share (`<root>/metadata.db`), opened with
//! [`strata_content::sqlite`]'s policy (WAL, busy timeout, retry, times in nanoseconds).

use rusqlite::Connection;
use std::path::Path;
use strata_content::sqlite;
use strata_content::{Labels, Result};

pub(crate) use strata_content::sqlite::{
    begin, from_nanos, is_constraint, labels_to_json as to_json, to_nanos,
};

/// Opens (creating it and its directory if needed) the database at `path`.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    sqlite::open(path, "image metadata database")
}

/// Labels read from a JSON column; unreadable labels read as none.
pub(crate) fn from_json(s: &str) -> Labels {
    sqlite::labels_from_json(s).unwrap_or_default()
}
