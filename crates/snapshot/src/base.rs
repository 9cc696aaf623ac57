//! What both backends share: the root layout, the metastore, and the crash-safe life
//! cycle of snapshot directories.
//!
//! Layout: `<root>/metadata.db`, `<root>/snapshots/<id>/…`. A snapshot directory is
//! built under a temporary name (`new-*`), then renamed to its id inside the write
//! transaction that creates the record; on removal the record goes first (one
//! transaction), then the directory (`rm-<id>`). A crash therefore leaves at worst a
//! directory that no record owns, which [`Base::cleanup`] deletes. Mutations hold a
//! shared `flock` on `snapshots/` and cleanup an exclusive one, so cleanup never sees a
//! directory that is still being built (also across processes).

use crate::du;
use crate::snapshotter::{Info, Kind, Usage};
use crate::storage::{MetaStore, Snapshot};
use rustix::fd::OwnedFd;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::filters::Filter;
use strata_content::{Damage, Error, Labels, Result};

/// Fault injection for crash tests: when `STRATA_SNAPSHOT_FAULT` names `point`, the
/// process aborts there (as a `kill -9` would stop it). Unset in normal use.
pub(crate) fn fault_point(point: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let f = FAULT.get_or_init(|| std::env::var("STRATA_SNAPSHOT_FAULT").ok());
    if f.as_deref() == Some(point) {
        std::process::abort();
    }
}

/// Runs blocking work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("snapshotter task failed: {e}")))?
}

#[derive(Debug)]
pub(crate) struct Base {
    pub root: PathBuf,
    pub snapshots: PathBuf,
    pub ms: MetaStore,
}

/// A held `flock` on `snapshots/` (released on drop).
pub(crate) struct DirLock(#[allow(dead_code)] OwnedFd);

impl Base {
    pub fn open(root: &Path) -> Result<Arc<Self>> {
        let snapshots = root.join("snapshots");
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| Error::io(format!("create {}", snapshots.display()), e))?;
        let ms = MetaStore::open(&root.join("metadata.db"))?;
        Ok(Arc::new(Base {
            root: root.to_owned(),
            snapshots,
            ms,
        }))
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    fn lock(&self, op: FlockOperation) -> Result<DirLock> {
        let what = || format!("lock {}", self.snapshots.display());
        let fd = rustix::fs::open(
            &self.snapshots,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(what(), e.into()))?;
        rustix::fs::flock(&fd, op).map_err(|e| Error::io(what(), e.into()))?;
        Ok(DirLock(fd))
    }

    /// A directory to build a snapshot's tree in: `snapshots/new-*`, removed when dropped
    /// unless kept (cleanup removes it after a crash).
    fn new_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("new-")
            .tempdir_in(&self.snapshots)
            .map_err(|e| {
                let at = self.snapshots.display();
                Error::io(format!("create directory in {at}"), e)
            })
    }

    /// Creates snapshot `key`: validates, builds its directory under a temporary name
    /// with `populate(tmp, parent_ids)`, then records it and renames the directory to
    /// its id in one transaction.
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: &Labels,
        populate: impl FnOnce(&Path, &[u64]) -> Result<()>,
    ) -> Result<Snapshot> {
        strata_content::labels::validate(labels)?;
        let _lock = self.lock(FlockOperation::LockShared)?;
        let parents = self.ms.read(|tx| tx.check_create(kind, key, parent))?;
        let tmp = self.new_dir()?;
        populate(tmp.path(), &parents).map_err(|e| e.context(format!("prepare snapshot {key}")))?;
        fault_point("create-after-populate");
        let s = self.ms.write(|tx| {
            let s = tx.create_snapshot(kind, key, parent, labels)?;
            if s.parent_ids != parents {
                return Err(Error::failed_precondition(format!(
                    "parent {parent} of snapshot {key} changed while preparing"
                )));
            }
            let target = self.dir(s.id);
            // A directory left by a crash between rename and commit may carry this id.
            if target.exists() {
                let _ = std::fs::remove_dir_all(&target);
            }
            std::fs::rename(tmp.path(), &target).map_err(|e| {
                Error::io(format!("rename snapshot dir to {}", target.display()), e)
            })?;
            fault_point("create-after-rename");
            Ok(s)
        })?;
        // The temporary path is gone (renamed); nothing to clean.
        let _ = tmp.keep();
        Ok(s)
    }

    /// Commits active `key` as `name`. Its usage is measured on first use
    /// ([`Base::usage`]): the committed tree never changes, so the figure is the same,
    /// and a pull does not walk every layer it unpacks.
    pub fn commit(&self, name: &str, key: &str, labels: &Labels) -> Result<()> {
        self.commit_onto(name, key, None, labels)
    }

    /// [`Base::commit`], first giving `key` the parent `parent` when set (rebase).
    pub fn commit_onto(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        labels: &Labels,
    ) -> Result<()> {
        let _lock = self.lock(FlockOperation::LockShared)?;
        self.ms.write(|tx| {
            if let Some(p) = parent {
                tx.set_parent(key, p)?;
            }
            tx.commit_active(key, name, None, labels)?;
            fault_point("commit-before-tx-commit");
            Ok(())
        })
    }

    /// Commits active `key`, prepared without a parent, as `name` onto the committed
    /// `parent` with a directory rebuilt for the purpose: `build(tmp, parent_dir,
    /// key_dir)` makes it under a temporary name (it may consume `key_dir`), then the
    /// transaction that commits swaps it in for `key`'s directory. The misuses
    /// [`Base::commit_onto`] reports are checked before anything is built, so they leave
    /// `key` as it was; when `key` already has `parent` as its parent, this is
    /// [`Base::commit`]. A crash leaves at worst directories no record owns.
    pub fn commit_rebuilt(
        &self,
        name: &str,
        key: &str,
        parent: &str,
        labels: &Labels,
        build: impl FnOnce(&Path, &Path, &Path) -> Result<()>,
    ) -> Result<()> {
        let (id, parent_id) = self.check_rebase(name, key, parent)?;
        let Some(parent_id) = parent_id else {
            return self.commit(name, key, labels);
        };
        let _lock = self.lock(FlockOperation::LockShared)?;
        let tmp = self.new_dir()?;
        let (dir, old) = (self.dir(id), self.snapshots.join(format!("rm-{id}")));
        build(tmp.path(), &self.dir(parent_id), &dir)
            .map_err(|e| e.context(format!("rebase snapshot {key} onto {parent}")))?;
        fault_point("rebase-after-build");
        self.ms.write(|tx| {
            tx.set_parent(key, parent)?;
            tx.commit_active(key, name, None, labels)?;
            let rename = |from: &Path, to: &Path| {
                std::fs::rename(from, to).map_err(|e| {
                    Error::io(format!("rename {} to {}", from.display(), to.display()), e)
                })
            };
            rename(&dir, &old)?;
            rename(tmp.path(), &dir)?;
            fault_point("rebase-after-rename");
            Ok(())
        })?;
        let _ = tmp.keep();
        // Committed: what is left of the layer's directory is cleanup's if this fails.
        if let Err(e) = remove_tree(&old) {
            tracing::debug!(path = %old.display(), "left for cleanup: {e}");
        }
        Ok(())
    }

    /// Checks that active `key` can be committed as `name` onto committed `parent`;
    /// returns `key`'s id and `parent`'s id, `None` for the latter when `key` already
    /// has that parent.
    fn check_rebase(&self, name: &str, key: &str, parent: &str) -> Result<(u64, Option<u64>)> {
        self.ms.read(|tx| {
            match tx.get_info(name) {
                Ok(_) => return Err(Error::already_exists(format!("committed snapshot {name}"))),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            let s = tx.get_snapshot(key)?;
            if s.kind != Kind::Active {
                return Err(Error::failed_precondition(format!(
                    "snapshot {key} is not active"
                )));
            }
            let (parent_id, p, _) = tx.get_info(parent)?;
            if p.kind != Kind::Committed {
                return Err(Error::invalid_argument(format!(
                    "parent {parent} is not committed"
                )));
            }
            match s.parent_ids.first() {
                None => Ok((s.id, Some(parent_id))),
                Some(&id) if id == parent_id => Ok((s.id, None)),
                Some(_) => Err(Error::invalid_argument(format!(
                    "snapshot {key} already has a different parent than {parent}"
                ))),
            }
        })
    }

    /// The usage of `key`: measured now for an active snapshot (in `tree(id)`), the
    /// stored figure for the others, measured and stored on first use for a committed
    /// snapshot (storing is best effort: a read-only state directory still answers).
    pub fn usage(&self, key: &str, tree: impl Fn(u64) -> PathBuf) -> Result<Usage> {
        let (id, info, stored) = self.ms.read(|tx| tx.get_info(key))?;
        match (info.kind, stored) {
            (Kind::Active, _) => du::disk_usage(&tree(id)),
            (_, Some(u)) => Ok(u),
            (Kind::Committed, None) => {
                let u = du::disk_usage(&tree(id))?;
                if let Err(e) = self.ms.write(|tx| tx.set_usage(id, u)) {
                    tracing::debug!(key, "usage measured but not stored: {e}");
                }
                Ok(u)
            }
            (_, None) => Ok(Usage::default()),
        }
    }

    /// Removes the record of `key`, then its directory (unless `defer`, which leaves the
    /// directory to [`Base::cleanup`]).
    pub fn remove(&self, key: &str, defer: bool) -> Result<()> {
        let _lock = self.lock(FlockOperation::LockShared)?;
        // Durable: after a power loss the record must not come back without its directory.
        let (id, _) = self.ms.write_durable(|tx| tx.remove(key))?;
        fault_point("remove-after-record");
        if defer {
            return Ok(());
        }
        let dir = self.dir(id);
        let rm = self.snapshots.join(format!("rm-{id}"));
        match std::fs::rename(&dir, &rm) {
            Ok(()) => {
                fault_point("remove-after-rename");
                remove_tree(&rm)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("remove snapshot dir {}", dir.display()),
                e,
            )),
        }
    }

    /// Deletes every entry of `snapshots/` that no record owns.
    pub fn cleanup(&self) -> Result<()> {
        let _lock = self.lock(FlockOperation::LockExclusive)?;
        let ids = self.ms.read(|tx| tx.ids())?;
        let rd = std::fs::read_dir(&self.snapshots)
            .map_err(|e| Error::io(format!("read {}", self.snapshots.display()), e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(format!("read {}", self.snapshots.display()), e))?;
            let owned = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| ids.contains(&id));
            if !owned {
                tracing::debug!(path = %e.path().display(), "removing unowned snapshot dir");
                remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// What [`Snapshotter::check`](crate::Snapshotter::check) reports: records whose
    /// `snapshots/<id>` directory is missing, and directories no record owns (under the
    /// shared lock, so a directory being built is not reported).
    pub fn check(&self) -> Result<Vec<Damage>> {
        let _lock = self.lock(FlockOperation::LockShared)?;
        let records = self.walk(&[])?;
        let mut damage = Vec::new();
        for (id, info) in &records {
            let dir = self.snapshots.join(id.to_string());
            if !dir.is_dir() {
                let problem = format!("its directory {} is missing", dir.display());
                damage.push(Damage::new("snapshot", info.name.clone(), problem));
            }
        }
        let ids: std::collections::HashSet<u64> = records.iter().map(|(id, _)| *id).collect();
        let rd = std::fs::read_dir(&self.snapshots)
            .map_err(|e| Error::io(format!("read {}", self.snapshots.display()), e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(format!("read {}", self.snapshots.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.parse::<u64>().is_ok_and(|id| ids.contains(&id)) {
                let path = e.path().display().to_string();
                damage.push(Damage::new("directory", path, "no snapshot record owns it"));
            }
        }
        Ok(damage)
    }

    pub fn walk(&self, filters: &[String]) -> Result<Vec<(u64, Info)>> {
        let f = Filter::parse_all(filters)?;
        self.ms.read(|tx| tx.walk(&f))
    }
}

/// `rm -rf` that tolerates a missing path.
pub(crate) fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat {}", p.display()), e)),
        Ok(md) if !md.is_dir() => {
            return std::fs::remove_file(p)
                .map_err(|e| Error::io(format!("remove {}", p.display()), e));
        }
        Ok(_) => {}
    }
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
    }
}
