//! The native snapshotter: every snapshot is a complete directory tree.
//!
//! Layout: `<root>/metadata.db`, `<root>/snapshots/<id>/` (the tree itself). `prepare` and
//! `view` on a parent copy the parent's tree ([`crate::copy::copy_dir`]: reflinks where the
//! filesystem has them). Mounts are a `bind` of the directory (`ro` for views). Works on
//! any filesystem and without overlayfs; slower than overlay for deep chains.

use crate::base::{Base, blocking};
use crate::snapshotter::{Info, Kind, Snapshotter, Usage};
use crate::{Mount, copy, du};
use async_trait::async_trait;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::{Error, Labels, Result};

/// The native snapshotter. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct NativeSnapshotter {
    base: Arc<Base>,
}

impl NativeSnapshotter {
    /// Opens (creating if needed) a native snapshotter rooted at `root`.
    ///
    /// # Errors
    /// `Io` when the root cannot be created; metastore errors.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Ok(NativeSnapshotter {
            base: Base::open(root.as_ref())?,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.base.root
    }

    /// The directory holding snapshot `key`'s tree (active or view).
    ///
    /// # Errors
    /// As [`Snapshotter::mounts`].
    pub fn snapshot_dir(&self, key: &str) -> Result<PathBuf> {
        let s = self.base.ms.read(|tx| tx.get_snapshot(key))?;
        Ok(self.base.dir(s.id))
    }

    fn mounts_of(&self, id: u64, kind: Kind) -> Vec<Mount> {
        vec![Mount::bind(
            self.base.dir(id).to_string_lossy().into_owned(),
            kind == Kind::View,
        )]
    }

    async fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let this = self.clone();
        let (key, parent) = (key.to_owned(), parent.to_owned());
        blocking(move || {
            let base = this.base.clone();
            let s = base.create(kind, &key, &parent, &labels, |tmp, parents| {
                match parents.first() {
                    Some(p) => copy::copy_dir(&base.dir(*p), tmp),
                    None => std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e)),
                }
            })?;
            Ok(this.mounts_of(s.id, s.kind))
        })
        .await
    }
}

#[async_trait]
impl Snapshotter for NativeSnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        let (b, key) = (self.base.clone(), key.to_owned());
        blocking(move || Ok(b.ms.read(|tx| tx.get_info(&key))?.1)).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let (b, fp) = (self.base.clone(), fieldpaths.to_vec());
        blocking(move || b.ms.write(|tx| tx.update_info(&info, &fp))).await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let (b, key) = (self.base.clone(), key.to_owned());
        blocking(move || {
            let (id, info, usage) = b.ms.read(|tx| tx.get_info(&key))?;
            if info.kind == Kind::Active {
                du::disk_usage(&b.dir(id))
            } else {
                Ok(usage)
            }
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || {
            let s = this.base.ms.read(|tx| tx.get_snapshot(&key))?;
            Ok(this.mounts_of(s.id, s.kind))
        })
        .await
    }

    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels).await
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels).await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (b, name, key) = (self.base.clone(), name.to_owned(), key.to_owned());
        blocking(move || b.commit(&name, &key, &labels, |id| du::disk_usage(&b.dir(id)))).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let (b, key) = (self.base.clone(), key.to_owned());
        blocking(move || b.remove(&key, false)).await
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let (b, f) = (self.base.clone(), filters.to_vec());
        blocking(move || Ok(b.walk(&f)?.into_iter().map(|(_, i)| i).collect())).await
    }

    async fn cleanup(&self) -> Result<()> {
        let b = self.base.clone();
        blocking(move || b.cleanup()).await
    }

    async fn close(&self) -> Result<()> {
        self.base.ms.close();
        Ok(())
    }
}
