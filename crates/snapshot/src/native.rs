//! The native snapshotter: every snapshot is a complete directory tree.
//!
//! Layout: `<root>/metadata.db`, `<root>/snapshots/<id>/` (the tree itself). `prepare` on
//! a parent copies the parent's tree ([`crate::copy::copy_dir`]: reflinks where the
//! filesystem has them); its mounts are a `bind` of its directory. A `view` copies
//! nothing: as in containerd, its mount is a read-only `bind` of its parent's directory
//! (committed snapshots never change, and a parent with children cannot be removed).
//! Works on any filesystem and without overlayfs; slower than overlay for deep chains.

use crate::base::{Base, blocking};
use crate::snapshotter::{Info, Kind, Snapshotter, Usage};
use crate::storage::Snapshot;
use crate::{Mount, copy, merge};
use async_trait::async_trait;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::{Damage, Error, Labels, Result};

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

    /// The directory holding snapshot `key`'s tree: its own for an active snapshot, its
    /// parent's for a view (an empty directory for a view without parent).
    ///
    /// # Errors
    /// As [`Snapshotter::mounts`].
    pub fn snapshot_dir(&self, key: &str) -> Result<PathBuf> {
        let s = self.base.ms.read(|tx| tx.get_snapshot(key))?;
        Ok(self.tree_of(&s))
    }

    fn tree_of(&self, s: &Snapshot) -> PathBuf {
        match (s.kind, s.parent_ids.first()) {
            (Kind::View, Some(p)) => self.base.dir(*p),
            _ => self.base.dir(s.id),
        }
    }

    fn mounts_of(&self, s: &Snapshot) -> Vec<Mount> {
        vec![Mount::bind(
            self.tree_of(s).to_string_lossy().into_owned(),
            s.kind == Kind::View,
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
                    Some(p) if kind == Kind::Active => copy::copy_dir(&base.dir(*p), tmp),
                    _ => std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e)),
                }
            })?;
            Ok(this.mounts_of(&s))
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
        blocking(move || b.usage(&key, |id| b.dir(id))).await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || {
            let s = this.base.ms.read(|tx| tx.get_snapshot(&key))?;
            Ok(this.mounts_of(&s))
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
        blocking(move || b.commit(&name, &key, &labels)).await
    }

    /// Native snapshots hold complete trees, so a rebase rebuilds `key`'s: a copy of
    /// `parent`'s tree ([`copy::copy_dir`]) into which `key`'s layer, applied in overlay
    /// form, is moved ([`merge::merge_layer`]). `key`'s tree is consumed by that, so a
    /// failure after the checks leaves `key` to be removed.
    fn can_rebase(&self) -> bool {
        true
    }

    async fn commit_rebase(
        &self,
        name: &str,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<()> {
        let b = self.base.clone();
        let (name, key, parent) = (name.to_owned(), key.to_owned(), parent.to_owned());
        blocking(move || {
            b.commit_rebuilt(&name, &key, &parent, &labels, |tmp, lower, layer| {
                copy::copy_dir(lower, tmp)?;
                merge::merge_layer(layer, tmp)
            })
        })
        .await
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

    async fn check(&self) -> Result<Vec<Damage>> {
        let b = self.base.clone();
        blocking(move || b.check()).await
    }

    async fn close(&self) -> Result<()> {
        self.base.ms.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A view copies nothing: it is a read-only bind of its parent's directory, which
    /// cannot be removed while the view exists.
    #[tokio::test]
    async fn view_binds_the_parent_read_only() {
        let d = tempfile::tempdir().unwrap();
        let sn = NativeSnapshotter::open(d.path()).unwrap();
        let m = sn.prepare("a", "", Labels::new()).await.unwrap();
        std::fs::write(Path::new(&m[0].source).join("f"), "x").unwrap();
        sn.commit("c", "a", Labels::new()).await.unwrap();
        let v = sn.view("v", "c", Labels::new()).await.unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_readonly());
        assert_eq!(v, sn.mounts("v").await.unwrap());
        let committed = std::fs::metadata(Path::new(&v[0].source).join("f")).unwrap();
        let active = sn.prepare("b", "c", Labels::new()).await.unwrap();
        let copied = std::fs::metadata(Path::new(&active[0].source).join("f")).unwrap();
        assert_ne!(committed.ino(), copied.ino(), "prepare copies");
        assert_eq!(
            sn.snapshot_dir("v").unwrap(),
            PathBuf::from(&v[0].source),
            "the view's tree is its parent's"
        );
        let wrote =
            crate::mount::with_temp_mount(&v, |root| std::fs::write(root.join("g"), "y")).unwrap();
        assert_eq!(
            wrote.unwrap_err().raw_os_error(),
            Some(libc::EROFS),
            "read-only"
        );
        sn.remove("b").await.unwrap();
        assert!(sn.remove("c").await.unwrap_err().is_failed_precondition());
        sn.remove("v").await.unwrap();
        sn.remove("c").await.unwrap();
        // A view without parent is an empty read-only directory of its own.
        let e = sn.view("empty", "", Labels::new()).await.unwrap();
        assert!(e[0].is_readonly());
        assert_eq!(std::fs::read_dir(&e[0].source).unwrap().count(), 0);
    }
}
