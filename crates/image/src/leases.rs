//! Leases: hold content, ingests, images and snapshots against garbage collection.
//!
//! After containerd's `leases` package. A lease is an id, a creation time and labels; an
//! expiring lease carries `containerd.io/gc.expire=<RFC 3339>`. Resources are added to a
//! lease by type: `content` (a digest), `ingests` (an ingest ref), `images` (an image name)
//! and `snapshots/<snapshotter>` (a snapshot key). While a lease exists and has not expired,
//! [`gc`](crate::gc) keeps everything it holds and everything that references.
//!
//! Leases are namespaced, like images and content records, and live in the shared metadata
//! database (`<root>/metadata.db`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use strata_image::leases::{LeaseManager, LeaseOpts, Resource};
//! let dir = tempfile::tempdir().unwrap();
//! let leases = LeaseManager::open(dir.path().join("metadata.db"))?;
//! let lease = leases.create(LeaseOpts::default().id("pull-1")).await?;
//! leases.add_resource(&lease.id, &Resource::content("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")).await?;
//! assert_eq!(leases.list_resources("pull-1").await?.len(), 1);
//! leases.delete("pull-1").await?;
//! # Ok(()) }
//! ```

use crate::metadb as sqlite;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use strata_content::filters::{Adaptor, Filter, label_field};
use strata_content::labels::{self, Labels};
use strata_content::{Error, Result};

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Its id, unique in the namespace.
    pub id: String,
    /// When it was created.
    #[serde(with = "strata_content::time_format")]
    pub created_at: SystemTime,
    /// Its labels (`containerd.io/gc.expire`, `containerd.io/gc.flat` …).
    #[serde(default)]
    pub labels: Labels,
}

impl Lease {
    /// When the lease expires, from its `containerd.io/gc.expire` label.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.labels
            .get(labels::GC_EXPIRE)
            .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
    }

    /// Whether the lease has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|t| t <= now)
    }

    /// Whether the lease was taken by a process ([`LeaseOpts::owned_by_this_process`])
    /// that is gone: no process has its pid, or the one that has it started at another
    /// time. A lease whose owner is gone protects nothing: GC treats it as expired.
    pub fn owner_gone(&self) -> bool {
        let Some(pid) = self.labels.get(OWNER_PID) else {
            return false;
        };
        let start = self.labels.get(OWNER_START).map(String::as_str);
        match pid.parse::<u32>().ok().map(process_start) {
            Some(Some(now)) => start.is_some_and(|s| s != now),
            _ => true,
        }
    }
}

/// The label naming the pid of the process that owns a lease.
pub const OWNER_PID: &str = "strata.io/owner.pid";
/// The label holding the owner's start time (clock ticks after boot, from
/// `/proc/<pid>/stat`), so a reused pid is not mistaken for the owner.
pub const OWNER_START: &str = "strata.io/owner.start";

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` when there
/// is no such process.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

impl Adaptor for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" => Some(self.id.clone()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

/// A resource held by a lease: `kind` is `content`, `ingests`, `images` or
/// `snapshots/<snapshotter>`; `id` is a digest, ingest ref, image name or snapshot key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    /// The resource's id.
    pub id: String,
    /// The resource's type.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Resource {
    /// A content blob.
    pub fn content(digest: impl Into<String>) -> Self {
        Resource {
            id: digest.into(),
            kind: "content".into(),
        }
    }
    /// An in-progress ingest.
    pub fn ingest(reference: impl Into<String>) -> Self {
        Resource {
            id: reference.into(),
            kind: "ingests".into(),
        }
    }
    /// An image record.
    pub fn image(name: impl Into<String>) -> Self {
        Resource {
            id: name.into(),
            kind: "images".into(),
        }
    }
    /// A snapshot of `snapshotter`.
    pub fn snapshot(snapshotter: &str, key: impl Into<String>) -> Self {
        Resource {
            id: key.into(),
            kind: format!("snapshots/{snapshotter}"),
        }
    }

    /// Checks the type and id.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty id, a bad digest or `snapshots` without a
    /// snapshotter; `NotImplemented` for an unknown type.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(Error::invalid_argument(format!(
                "lease resource of type {:?} has an empty id",
                self.kind
            )));
        }
        match self.kind.as_str() {
            "content" => strata_content::digest::parse(&self.id).map(|_| ()),
            "ingests" | "images" => Ok(()),
            "snapshots" => Err(Error::invalid_argument(format!(
                "lease resource type {:?} needs a snapshotter (snapshots/<name>)",
                self.kind
            ))),
            k if k
                .strip_prefix("snapshots/")
                .is_some_and(|s| !s.is_empty() && !s.contains('/')) =>
            {
                Ok(())
            }
            k if k.starts_with("snapshots/") => Err(Error::invalid_argument(format!(
                "malformed lease resource type {k:?}"
            ))),
            k => Err(Error::not_implemented(format!("lease resource type {k:?}"))),
        }
    }
}

/// Options for [`LeaseManager::create`].
#[derive(Debug, Clone, Default)]
pub struct LeaseOpts {
    id: Option<String>,
    labels: Labels,
    expires_in: Option<Duration>,
}

impl LeaseOpts {
    /// Uses `id` instead of a random id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Sets labels.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }
    /// Expires the lease `d` from now (sets `containerd.io/gc.expire`).
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }

    /// Records this process as the lease's owner ([`OWNER_PID`], [`OWNER_START`]): once
    /// it is gone — killed, crashed — GC treats the lease as expired, whatever its
    /// expiry says. The flows take their own leases this way.
    pub fn owned_by_this_process(mut self) -> Self {
        let pid = std::process::id();
        if let Some(start) = process_start(pid) {
            self.labels.insert(OWNER_PID.into(), pid.to_string());
            self.labels.insert(OWNER_START.into(), start);
        }
        self
    }
}

/// Creates, lists and deletes leases and their resources, in one namespace.
/// Clones share the database; [`LeaseManager::namespace`] switches namespace.
#[derive(Clone)]
pub struct LeaseManager {
    conn: Arc<Mutex<Connection>>,
    namespace: String,
}

impl LeaseManager {
    /// Opens (creating if needed) the lease tables in the SQLite database at `path`, in
    /// namespace `default`.
    ///
    /// # Errors
    /// `Io`/`Internal` when the database cannot be opened or migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = sqlite::open(path.as_ref())?;
        strata_content::sqlite::ensure_schema(
            &conn,
            "lease_resources",
            "CREATE TABLE IF NOT EXISTS leases (
                namespace TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL,
                labels TEXT NOT NULL, PRIMARY KEY (namespace, id));
             CREATE TABLE IF NOT EXISTS lease_resources (
                namespace TEXT NOT NULL, lease TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                PRIMARY KEY (namespace, lease, kind, id),
                FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE);",
        )
        .map_err(|e| Error::db(format!("create lease tables in {}", path.as_ref().display()), e))?;
        Ok(LeaseManager {
            conn: Arc::new(Mutex::new(conn)),
            namespace: "default".into(),
        })
    }

    /// A handle on the same database for namespace `ns`.
    pub fn namespace(&self, ns: impl Into<String>) -> Self {
        LeaseManager {
            conn: self.conn.clone(),
            namespace: ns.into(),
        }
    }

    /// This handle's namespace.
    pub fn current_namespace(&self) -> &str {
        &self.namespace
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a lease.
    ///
    /// # Errors
    /// `AlreadyExists` when the id is taken; `InvalidArgument` for bad labels.
    pub async fn create(&self, opts: LeaseOpts) -> Result<Lease> {
        let id = opts.id.unwrap_or_else(random_id);
        if id.is_empty() {
            return Err(Error::invalid_argument("lease id is empty"));
        }
        let mut labels = opts.labels;
        if let Some(d) = opts.expires_in {
            let at = SystemTime::now() + d;
            labels.insert(
                labels::GC_EXPIRE.into(),
                humantime::format_rfc3339_seconds(at).to_string(),
            );
        }
        labels::validate(&labels)?;
        let lease = Lease {
            id,
            created_at: SystemTime::now(),
            labels,
        };
        let res = self.conn().execute(
            "INSERT INTO leases (namespace, id, created_at, labels) VALUES (?1, ?2, ?3, ?4)",
            params![
                self.namespace,
                lease.id,
                sqlite::to_nanos(lease.created_at),
                sqlite::to_json(&lease.labels)
            ],
        );
        match res {
            Ok(_) => Ok(lease),
            Err(e) if sqlite::is_constraint(&e) => Err(Error::already_exists(format!(
                "lease {:?} in namespace {:?}",
                lease.id, self.namespace
            ))),
            Err(e) => Err(Error::db(format!("create lease {:?}", lease.id), e)),
        }
    }

    /// Deletes a lease (its resources are released; GC reclaims them on its next run).
    ///
    /// # Errors
    /// `NotFound` when there is no such lease.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM lease_resources WHERE namespace=?1 AND lease=?2",
            params![self.namespace, id],
        )
        .map_err(|e| Error::db(format!("delete resources of lease {id:?}"), e))?;
        let n = conn
            .execute(
                "DELETE FROM leases WHERE namespace=?1 AND id=?2",
                params![self.namespace, id],
            )
            .map_err(|e| Error::db(format!("delete lease {id:?}"), e))?;
        if n == 0 {
            return Err(self.missing(id));
        }
        Ok(())
    }

    /// The leases matching any of `filters` (fields `id`, `labels.<key>`), ordered by id.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed filter.
    pub async fn list(&self, filters: &[String]) -> Result<Vec<Lease>> {
        let filter = Filter::parse_all(filters)?;
        Ok(self
            .all()?
            .into_iter()
            .filter(|l| filter.matches(l))
            .collect())
    }

    fn all(&self) -> Result<Vec<Lease>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, created_at, labels FROM leases WHERE namespace=?1 ORDER BY id")
            .map_err(|e| Error::db("list leases", e))?;
        let rows = st
            .query_map(params![self.namespace], |r| {
                Ok(Lease {
                    id: r.get(0)?,
                    created_at: sqlite::from_nanos(r.get(1)?),
                    labels: sqlite::from_json(&r.get::<_, String>(2)?),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| Error::db("list leases", e))?;
        Ok(rows)
    }

    fn exists(conn: &Connection, ns: &str, id: &str) -> Result<bool> {
        conn.query_row(
            "SELECT 1 FROM leases WHERE namespace=?1 AND id=?2",
            params![ns, id],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(|e| Error::db(format!("look up lease {id:?}"), e))
    }

    fn missing(&self, id: &str) -> Error {
        Error::not_found(format!("lease {id:?} in namespace {:?}", self.namespace))
    }

    /// Adds `resource` to lease `id` (adding it twice is fine).
    ///
    /// # Errors
    /// `NotFound` for a missing lease; as [`Resource::validate`] for a bad resource.
    pub async fn add_resource(&self, id: &str, resource: &Resource) -> Result<()> {
        resource.validate()?;
        let conn = self.conn();
        if !Self::exists(&conn, &self.namespace, id)? {
            return Err(self.missing(id));
        }
        conn.execute(
            "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, id) VALUES (?1, ?2, ?3, ?4)",
            params![self.namespace, id, resource.kind, resource.id],
        )
        .map_err(|e| Error::db(format!("add {} {:?} to lease {id:?}", resource.kind, resource.id), e))?;
        Ok(())
    }

    /// Removes `resource` from lease `id` (removing an absent resource is fine).
    ///
    /// # Errors
    /// `NotFound` for a missing lease; as [`Resource::validate`] for a bad resource.
    pub async fn delete_resource(&self, id: &str, resource: &Resource) -> Result<()> {
        resource.validate()?;
        let conn = self.conn();
        if !Self::exists(&conn, &self.namespace, id)? {
            return Err(self.missing(id));
        }
        conn.execute(
            "DELETE FROM lease_resources WHERE namespace=?1 AND lease=?2 AND kind=?3 AND id=?4",
            params![self.namespace, id, resource.kind, resource.id],
        )
        .map_err(|e| {
            Error::db(
                format!(
                    "remove {} {:?} from lease {id:?}",
                    resource.kind, resource.id
                ),
                e,
            )
        })?;
        Ok(())
    }

    /// The resources of lease `id`, ordered by type and id.
    ///
    /// # Errors
    /// `NotFound` for a missing lease.
    pub async fn list_resources(&self, id: &str) -> Result<Vec<Resource>> {
        let conn = self.conn();
        if !Self::exists(&conn, &self.namespace, id)? {
            return Err(self.missing(id));
        }
        Self::resources(&conn, &self.namespace, id)
    }

    fn resources(conn: &Connection, ns: &str, id: &str) -> Result<Vec<Resource>> {
        let mut st = conn
            .prepare("SELECT kind, id FROM lease_resources WHERE namespace=?1 AND lease=?2 ORDER BY kind, id")
            .map_err(|e| Error::db("list lease resources", e))?;
        st.query_map(params![ns, id], |r| {
            Ok(Resource {
                kind: r.get(0)?,
                id: r.get(1)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| Error::db(format!("list resources of lease {id:?}"), e))
    }

    /// Every lease of every namespace with its resources: the GC's view.
    ///
    /// # Errors
    /// `Internal` on a database error.
    pub fn snapshot_all(&self) -> Result<Vec<(String, Lease, Vec<Resource>)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT namespace, id, created_at, labels FROM leases ORDER BY namespace, id")
            .map_err(|e| Error::db("list all leases", e))?;
        let leases: Vec<(String, Lease)> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Lease {
                        id: r.get(1)?,
                        created_at: sqlite::from_nanos(r.get(2)?),
                        labels: sqlite::from_json(&r.get::<_, String>(3)?),
                    },
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| Error::db("list all leases", e))?;
        leases
            .into_iter()
            .map(|(ns, l)| {
                let res = Self::resources(&conn, &ns, &l.id)?;
                Ok((ns, l, res))
            })
            .collect()
    }
}

fn random_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{t}-{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn owners_that_are_gone_are_told_apart_from_living_ones() {
        let (_d, m) = mgr();
        let mine = m
            .create(LeaseOpts::default().owned_by_this_process())
            .await
            .unwrap();
        assert_eq!(mine.labels[OWNER_PID], std::process::id().to_string());
        assert!(!mine.owner_gone(), "this process is alive");
        // The same pid with another start time: the pid was reused.
        let mut reused = mine.clone();
        reused.labels.insert(OWNER_START.into(), "1".into());
        assert!(reused.owner_gone());
        // A process that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = mine.clone();
        dead.labels.insert(OWNER_PID.into(), pid.to_string());
        assert!(dead.owner_gone());
        // No owner: only its expiry counts.
        let plain = m.create(LeaseOpts::default()).await.unwrap();
        assert!(!plain.owner_gone());
    }

    fn mgr() -> (tempfile::TempDir, LeaseManager) {
        let d = tempfile::tempdir().unwrap();
        let m = LeaseManager::open(d.path().join("metadata.db")).unwrap();
        (d, m)
    }

    #[tokio::test]
    async fn create_list_delete() {
        let (_d, m) = mgr();
        let a = m.create(LeaseOpts::default().id("a")).await.unwrap();
        assert_eq!(a.id, "a");
        let b = m.create(LeaseOpts::default()).await.unwrap();
        assert!(!b.id.is_empty());
        assert!(
            m.create(LeaseOpts::default().id("a"))
                .await
                .unwrap_err()
                .is_already_exists()
        );
        let ids: Vec<_> = m
            .list(&[])
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&"a".to_string()));
        m.delete("a").await.unwrap();
        assert!(m.delete("a").await.unwrap_err().is_not_found());
        assert_eq!(m.list(&[]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn list_filters_by_id_and_labels() {
        let (_d, m) = mgr();
        let mut l = Labels::new();
        l.insert("purpose".into(), "pull".into());
        m.create(LeaseOpts::default().id("p1").labels(l.clone()))
            .await
            .unwrap();
        m.create(LeaseOpts::default().id("p2")).await.unwrap();
        let f = |s: &str| vec![s.to_string()];
        assert_eq!(m.list(&f("id==p2")).await.unwrap()[0].id, "p2");
        let got = m.list(&f("labels.purpose==pull")).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "p1");
        assert_eq!(m.list(&f("labels.purpose")).await.unwrap().len(), 1);
        assert!(m.list(&f("id=")).await.unwrap_err().is_invalid_argument());
    }

    #[tokio::test]
    async fn expiry_label() {
        let (_d, m) = mgr();
        let l = m
            .create(
                LeaseOpts::default()
                    .id("e")
                    .expires_in(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        let at = l.expires_at().unwrap();
        assert!(!l.is_expired(SystemTime::now()));
        assert!(l.is_expired(at + Duration::from_secs(1)));
        let listed = &m.list(&[]).await.unwrap()[0];
        assert_eq!(
            listed.labels.get(labels::GC_EXPIRE),
            l.labels.get(labels::GC_EXPIRE)
        );
    }

    #[tokio::test]
    async fn resources_like_containerd() {
        let (_d, m) = mgr();
        m.create(LeaseOpts::default().id("l")).await.unwrap();
        let dg = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        for r in [
            Resource::content(dg),
            Resource::ingest("layer-x"),
            Resource::image("img"),
            Resource::snapshot("overlay", "k"),
        ] {
            m.add_resource("l", &r).await.unwrap();
            m.add_resource("l", &r).await.unwrap(); // idempotent
        }
        assert_eq!(m.list_resources("l").await.unwrap().len(), 4);
        let bad = |kind: &str, id: &str| Resource {
            kind: kind.into(),
            id: id.into(),
        };
        assert!(
            m.add_resource("l", &bad("leases", "x"))
                .await
                .unwrap_err()
                .is_not_implemented()
        );
        assert!(
            m.add_resource("l", &bad("containers", "x"))
                .await
                .unwrap_err()
                .is_not_implemented()
        );
        assert!(
            m.add_resource("l", &bad("snapshots", "x"))
                .await
                .unwrap_err()
                .is_invalid_argument()
        );
        assert!(
            m.add_resource("l", &bad("content", "nope"))
                .await
                .unwrap_err()
                .is_invalid_argument()
        );
        assert!(
            m.add_resource("missing", &Resource::image("i"))
                .await
                .unwrap_err()
                .is_not_found()
        );
        m.delete_resource("l", &Resource::image("img"))
            .await
            .unwrap();
        m.delete_resource("l", &Resource::image("img"))
            .await
            .unwrap();
        assert_eq!(m.list_resources("l").await.unwrap().len(), 3);
        m.delete("l").await.unwrap();
        assert!(m.list_resources("l").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn namespaces_are_separate() {
        let (_d, m) = mgr();
        let other = m.namespace("other");
        m.create(LeaseOpts::default().id("x")).await.unwrap();
        other.create(LeaseOpts::default().id("x")).await.unwrap();
        other.delete("x").await.unwrap();
        assert_eq!(m.list(&[]).await.unwrap().len(), 1);
        assert_eq!(m.snapshot_all().unwrap().len(), 1);
    }
}
