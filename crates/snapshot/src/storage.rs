//! The metastore: snapshot records in SQLite, with containerd's rules
//! (`core/snapshots/storage`).
//!
//! One `metadata.db` per snapshotter root (WAL). Schema (`user_version` 1):
//!
//! ```sql
//! snapshots(id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused; names snapshots/<id>
//!           key TEXT UNIQUE,                       -- one keyspace: active, view, committed
//!           kind INTEGER,                          -- 1 view, 2 active, 3 committed
//!           parent_id INTEGER REFERENCES snapshots(id),
//!           labels TEXT,                           -- JSON object
//!           created INTEGER, updated INTEGER,      -- unix nanoseconds
//!           size INTEGER, inodes INTEGER)          -- usage of a committed snapshot;
//!                                                  -- -1: not measured yet
//! ```
//!
//! Commits are atomic and crash-safe (WAL); removals are also fsynced before the
//! directory goes ([`MetaStore::write_durable`]).
//!
//! Backends run each mutation in one [`MetaStore::write`] transaction (`BEGIN IMMEDIATE`)
//! together with the directory rename that makes it visible, so a crash leaves either the
//! old or the new state; directories no record owns are removed by `cleanup`.

use crate::snapshotter::{Info, Kind, Usage};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
use strata_content::filters::Filter;
use strata_content::sqlite::{self, from_nanos, labels_to_json, to_nanos};
use strata_content::{Error, Labels, Result};

/// The storage view of a snapshot needed to build mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's id (its directory name under `snapshots/`).
    pub id: u64,
    /// Active or View.
    pub kind: Kind,
    /// The ids of the parent chain, immediate parent first.
    pub parent_ids: Vec<u64>,
}

/// The SQLite metastore of one snapshotter.
#[derive(Debug)]
pub struct MetaStore {
    conn: Mutex<Option<Connection>>,
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Normal,
    Full,
}

/// A transaction on the metastore; all record operations go through it.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn db(msg: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let msg = msg.into();
    move |e| Error::db(msg, e)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
  parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
  labels TEXT NOT NULL DEFAULT '{}',
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
PRAGMA user_version = 1;
";

impl MetaStore {
    /// Opens (creating if needed) the database at `path` with
    /// [`strata_content::sqlite`]'s policy (WAL, busy timeout, foreign keys).
    ///
    /// # Errors
    /// `Internal`/`Io` when the database cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = sqlite::open(path, "snapshot metastore")?;
        let what = format!("create the schema of snapshot metastore {}", path.display());
        sqlite::ensure_schema(&conn, "snapshots", SCHEMA).map_err(db(what))?;
        Ok(MetaStore {
            conn: Mutex::new(Some(conn)),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the database; later calls fail with `FailedPrecondition`. Idempotent.
    pub fn close(&self) {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        g.take();
    }

    fn run<T>(
        &self,
        behavior: TransactionBehavior,
        commit: Option<Durability>,
        f: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = g
            .as_mut()
            .ok_or_else(|| Error::failed_precondition("snapshot metastore is closed"))?;
        if let Some(sync) = commit {
            let mode = if sync == Durability::Full {
                "FULL"
            } else {
                "NORMAL"
            };
            conn.pragma_update(None, "synchronous", mode)
                .map_err(db("set snapshot metastore synchronous mode"))?;
        }
        // BEGIN IMMEDIATE can report BUSY past busy_timeout under contention from other
        // processes: `begin` retries rather than surfacing it.
        let tx = Tx {
            tx: sqlite::begin(conn, behavior, "snapshot metastore")?,
        };
        let out = f(&tx)?;
        if commit.is_some() {
            tx.tx
                .commit()
                .map_err(db("commit snapshot metastore transaction"))?;
        }
        Ok(out)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committing when it returns
    /// `Ok` and rolling back otherwise. The commit is atomic and survives a process
    /// crash; it is not fsynced (WAL, `synchronous=NORMAL`), so a power loss may roll it
    /// back (use [`MetaStore::write_durable`] before deleting data the old state needs).
    ///
    /// # Errors
    /// `f`'s error, or a database error.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.run(TransactionBehavior::Immediate, Some(Durability::Normal), f)
    }

    /// As [`MetaStore::write`], and the commit is on disk when this returns (fsync).
    ///
    /// # Errors
    /// `f`'s error, or a database error.
    pub fn write_durable<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.run(TransactionBehavior::Immediate, Some(Durability::Full), f)
    }

    /// Runs `f` in a read transaction (a consistent snapshot of the records).
    ///
    /// # Errors
    /// `f`'s error, or a database error.
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.run(TransactionBehavior::Deferred, None, f)
    }
}

struct Row {
    id: u64,
    kind: Kind,
    parent_id: Option<u64>,
}

/// The stored usage columns: negative means not measured yet.
fn usage_of(size: i64, inodes: i64) -> Option<Usage> {
    (size >= 0 && inodes >= 0).then_some(Usage {
        size: size as u64,
        inodes: inodes as u64,
    })
}

impl Tx<'_> {
    fn row(&self, key: &str) -> Result<Option<Row>> {
        self.tx
            .query_row(
                "SELECT id, kind, parent_id FROM snapshots WHERE key = ?1",
                [key],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(db(format!("read snapshot {key}")))?
            .map(|(id, k, p)| {
                Ok(Row {
                    id: id as u64,
                    kind: Kind::from_i64(k)?,
                    parent_id: p.map(|p| p as u64),
                })
            })
            .transpose()
    }

    fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, Info, Option<Usage>)> {
        let labels: String = r.get(4)?;
        let kind: i64 = r.get(2)?;
        Ok((
            r.get::<_, i64>(0)? as u64,
            Info {
                kind: Kind::from_i64(kind).unwrap_or(Kind::Active),
                name: r.get(1)?,
                parent: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                labels: sqlite::labels_from_json(&labels).unwrap_or_default(),
                created: from_nanos(r.get(5)?),
                updated: from_nanos(r.get(6)?),
            },
            usage_of(r.get(7)?, r.get(8)?),
        ))
    }

    const INFO_SELECT: &'static str = "SELECT s.id, s.key, s.kind, p.key, s.labels, s.created, \
        s.updated, s.size, s.inodes FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id";

    /// The id, info and stored usage of `key` (`None`: not measured yet).
    ///
    /// # Errors
    /// `NotFound` when there is no such snapshot.
    pub fn get_info(&self, key: &str) -> Result<(u64, Info, Option<Usage>)> {
        self.tx
            .query_row(
                &format!("{} WHERE s.key = ?1", Self::INFO_SELECT),
                [key],
                Self::info_row,
            )
            .optional()
            .map_err(db(format!("read snapshot {key}")))?
            .ok_or_else(|| Error::not_found(format!("snapshot {key}")))
    }

    /// All snapshots (id and info) matching `filter`, ordered by name.
    ///
    /// # Errors
    /// Database errors.
    pub fn walk(&self, filter: &Filter) -> Result<Vec<(u64, Info)>> {
        let mut st = self
            .tx
            .prepare(&format!("{} ORDER BY s.key", Self::INFO_SELECT))
            .map_err(db("walk snapshots"))?;
        let rows = st
            .query_map([], Self::info_row)
            .map_err(db("walk snapshots"))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, info, _) = r.map_err(db("walk snapshots"))?;
            if filter.matches(&info) {
                out.push((id, info));
            }
        }
        Ok(out)
    }

    /// Updates labels as [`Snapshotter::update`](crate::Snapshotter::update) describes.
    ///
    /// # Errors
    /// `NotFound` for a missing snapshot; `InvalidArgument` for other field paths or
    /// labels over the size limit.
    pub fn update_info(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        let (id, mut cur, _) = self.get_info(&info.name)?;
        if fieldpaths.is_empty() {
            cur.labels = info.labels.clone();
        } else {
            for fp in fieldpaths {
                if fp == "labels" {
                    cur.labels = info.labels.clone();
                } else if let Some(k) = fp.strip_prefix("labels.") {
                    match info.labels.get(k) {
                        Some(v) => cur.labels.insert(k.to_owned(), v.clone()),
                        None => cur.labels.remove(k),
                    };
                } else {
                    return Err(Error::invalid_argument(format!(
                        "cannot update {fp:?} field on snapshot {:?}",
                        info.name
                    )));
                }
            }
        }
        strata_content::labels::validate(&cur.labels)?;
        cur.updated = now();
        self.tx
            .execute(
                "UPDATE snapshots SET labels = ?1, updated = ?2 WHERE id = ?3",
                params![
                    labels_to_json(&cur.labels),
                    to_nanos(cur.updated),
                    id as i64
                ],
            )
            .map_err(db(format!("update snapshot {}", info.name)))?;
        Ok(cur)
    }

    fn parent_chain(&self, mut parent: Option<u64>) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        while let Some(p) = parent {
            ids.push(p);
            parent = self
                .tx
                .query_row(
                    "SELECT parent_id FROM snapshots WHERE id = ?1",
                    [p as i64],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(db(format!("read parent chain at id {p}")))?
                .map(|v| v as u64);
            if ids.len() > 100_000 {
                return Err(Error::internal("snapshot parent chain has a cycle"));
            }
        }
        Ok(ids)
    }

    /// The id, kind and parent chain of the active or view snapshot `key`.
    ///
    /// # Errors
    /// `NotFound` for a missing key; `FailedPrecondition` for a committed snapshot.
    pub fn get_snapshot(&self, key: &str) -> Result<Snapshot> {
        let row = self
            .row(key)?
            .ok_or_else(|| Error::not_found(format!("snapshot {key}")))?;
        if row.kind == Kind::Committed {
            return Err(Error::failed_precondition(format!(
                "snapshot {key} is committed, not active or view"
            )));
        }
        Ok(Snapshot {
            id: row.id,
            kind: row.kind,
            parent_ids: self.parent_chain(row.parent_id)?,
        })
    }

    /// Checks that `key` could be created as `kind` on `parent` (`""`: none) and returns
    /// the parent chain it would get (immediate parent first), without writing.
    ///
    /// # Errors
    /// As [`Tx::create_snapshot`].
    pub fn check_create(&self, kind: Kind, key: &str, parent: &str) -> Result<Vec<u64>> {
        if kind == Kind::Committed {
            return Err(Error::invalid_argument(format!(
                "snapshot {key}: kind must be Active or View"
            )));
        }
        if key.is_empty() {
            return Err(Error::invalid_argument("snapshot key must not be empty"));
        }
        if self.row(key)?.is_some() {
            return Err(Error::already_exists(format!("snapshot {key}")));
        }
        if parent.is_empty() {
            return Ok(Vec::new());
        }
        let p = self
            .row(parent)?
            .ok_or_else(|| Error::not_found(format!("parent snapshot {parent}")))?;
        if p.kind != Kind::Committed {
            return Err(Error::invalid_argument(format!(
                "parent {parent} is not a committed snapshot"
            )));
        }
        self.parent_chain(Some(p.id))
    }

    /// Creates an active or view record `key` on `parent` (`""`: none).
    ///
    /// # Errors
    /// `InvalidArgument` for kind Committed, an invalid label or a parent that is not
    /// committed; `AlreadyExists` for an existing key; `NotFound` for a missing parent.
    pub fn create_snapshot(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: &Labels,
    ) -> Result<Snapshot> {
        let parent_ids = self.check_create(kind, key, parent)?;
        strata_content::labels::validate(labels)?;
        let parent_id = parent_ids.first().copied();
        let t = to_nanos(now());
        self.tx
            .execute(
                "INSERT INTO snapshots (key, kind, parent_id, labels, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![
                    key,
                    kind.to_i64(),
                    parent_id.map(|p| p as i64),
                    labels_to_json(labels),
                    t
                ],
            )
            .map_err(db(format!("create snapshot {key}")))?;
        let id = self.tx.last_insert_rowid() as u64;
        Ok(Snapshot {
            id,
            kind,
            parent_ids,
        })
    }

    /// Commits active `key` as `name` with `labels` and its `usage` (`None`: to be
    /// measured on first use, see [`Tx::set_usage`]); returns the id (unchanged: the
    /// committed snapshot keeps the active one's directory).
    ///
    /// # Errors
    /// `AlreadyExists` when `name` exists; `NotFound` when `key` does not;
    /// `FailedPrecondition` when `key` is not active; `InvalidArgument` for bad labels.
    pub fn commit_active(
        &self,
        key: &str,
        name: &str,
        usage: Option<Usage>,
        labels: &Labels,
    ) -> Result<u64> {
        if name.is_empty() {
            return Err(Error::invalid_argument(
                "committed snapshot name must not be empty",
            ));
        }
        strata_content::labels::validate(labels)?;
        if self.row(name)?.is_some() {
            return Err(Error::already_exists(format!("committed snapshot {name}")));
        }
        let row = self
            .row(key)?
            .ok_or_else(|| Error::not_found(format!("active snapshot {key}")))?;
        if row.kind != Kind::Active {
            return Err(Error::failed_precondition(format!(
                "snapshot {key} is not active (it is {})",
                row.kind
            )));
        }
        let t = to_nanos(now());
        self.tx
            .execute(
                "UPDATE snapshots SET key = ?1, kind = ?2, labels = ?3, created = ?4, \
                 updated = ?4, size = ?5, inodes = ?6 WHERE id = ?7",
                params![
                    name,
                    Kind::Committed.to_i64(),
                    labels_to_json(labels),
                    t,
                    usage.map_or(-1, |u| u.size as i64),
                    usage.map_or(-1, |u| u.inodes as i64),
                    row.id as i64
                ],
            )
            .map_err(db(format!("commit snapshot {key} as {name}")))?;
        Ok(row.id)
    }

    /// Stores the measured `usage` of snapshot `id` (a no-op when it is gone).
    ///
    /// # Errors
    /// Database errors.
    pub fn set_usage(&self, id: u64, usage: Usage) -> Result<()> {
        self.tx
            .execute(
                "UPDATE snapshots SET size = ?1, inodes = ?2 WHERE id = ?3",
                params![usage.size as i64, usage.inodes as i64, id as i64],
            )
            .map_err(db(format!("store usage of snapshot {id}")))?;
        Ok(())
    }

    /// Gives active `key`, prepared without a parent, the committed parent `parent`
    /// (containerd 2.2's rebase: layers applied in parallel, committed in order).
    ///
    /// # Errors
    /// `NotFound` when `key` or `parent` is missing; `FailedPrecondition` when `key` is not
    /// active; `InvalidArgument` when `parent` is not committed or `key` already has
    /// another parent.
    pub fn set_parent(&self, key: &str, parent: &str) -> Result<()> {
        let row = self
            .row(key)?
            .ok_or_else(|| Error::not_found(format!("active snapshot {key}")))?;
        if row.kind != Kind::Active {
            return Err(Error::failed_precondition(format!(
                "snapshot {key} is not active (it is {})",
                row.kind
            )));
        }
        let p = self
            .row(parent)?
            .ok_or_else(|| Error::not_found(format!("parent snapshot {parent}")))?;
        if p.kind != Kind::Committed {
            return Err(Error::invalid_argument(format!(
                "parent {parent} is not committed"
            )));
        }
        match row.parent_id {
            Some(id) if id == p.id => return Ok(()),
            Some(_) => {
                return Err(Error::invalid_argument(format!(
                    "snapshot {key} already has a different parent than {parent}"
                )));
            }
            None => {}
        }
        self.tx
            .execute(
                "UPDATE snapshots SET parent_id = ?1 WHERE id = ?2",
                params![p.id as i64, row.id as i64],
            )
            .map_err(db(format!("rebase snapshot {key} onto {parent}")))?;
        Ok(())
    }

    /// Removes the record `key`; returns its id and kind.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `FailedPrecondition` when it has children.
    pub fn remove(&self, key: &str) -> Result<(u64, Kind)> {
        let row = self
            .row(key)?
            .ok_or_else(|| Error::not_found(format!("snapshot {key}")))?;
        let children: i64 = self
            .tx
            .query_row(
                "SELECT COUNT(*) FROM snapshots WHERE parent_id = ?1",
                [row.id as i64],
                |r| r.get(0),
            )
            .map_err(db(format!("count children of snapshot {key}")))?;
        if children > 0 {
            return Err(Error::failed_precondition(format!(
                "cannot remove snapshot {key} with {children} child snapshot(s)"
            )));
        }
        self.tx
            .execute("DELETE FROM snapshots WHERE id = ?1", [row.id as i64])
            .map_err(db(format!("remove snapshot {key}")))?;
        Ok((row.id, row.kind))
    }

    /// The ids of all records (directories named otherwise are garbage).
    ///
    /// # Errors
    /// Database errors.
    pub fn ids(&self) -> Result<HashSet<u64>> {
        let mut st = self
            .tx
            .prepare("SELECT id FROM snapshots")
            .map_err(db("list snapshot ids"))?;
        let rows = st
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(db("list snapshot ids"))?;
        rows.map(|r| r.map(|v| v as u64).map_err(db("list snapshot ids")))
            .collect()
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
