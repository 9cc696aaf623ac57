//! The overlay snapshotter: each snapshot is an overlayfs layer.
//!
//! Layout: `<root>/metadata.db`, `<root>/snapshots/<id>/fs` (the layer: the upperdir while
//! active) and `<root>/snapshots/<id>/work` (overlay's workdir, active snapshots only).
//!
//! Mounts, exactly as containerd's (1.7):
//! - no parent: a `bind` of `fs` (`rw`, or `ro` for a view), with `rbind`;
//! - a view on one parent: a `ro` `bind` of the parent's `fs`;
//! - otherwise `overlay` with `index=off` (when the kernel has the `index` parameter and
//!   the user did not set it), `userxattr` (in a user namespace), `workdir=`/`upperdir=`
//!   for an active snapshot and `lowerdir=` the parents' `fs`, newest first. Long
//!   `lowerdir=` lists are mounted from their common directory with relative paths by
//!   [`crate::mount::mount_all`] (128 layers and more).
//!
//! ## For differs: finding the upper layer without mounting
//! For an active snapshot's mounts, [`upperdir`] returns where its changes live:
//! - a single `overlay` mount: its `upperdir=` option (the changes only; whiteouts are
//!   overlay's: char device 0/0 and `trusted.overlay.opaque`), lowers in `lowerdir=`;
//! - a single `rw` `bind` mount: its source. With the overlay backend that is a snapshot
//!   without parent, so the directory *is* the diff; with the native backend it is the
//!   complete tree, so a differ must compare it with the parent's view (containerd's
//!   walking differ does that for every bind). Applying a layer into the source is right
//!   in both cases (use real files/whiteout deletions, not overlay whiteouts, for binds).
//!
//! With [`OverlayOptions::upperdir_label`], `stat`/`walk`/`update` also report the label
//! `containerd.io/snapshot/overlay.upperdir` = the snapshot's `fs` directory.

use crate::Mount;
use crate::base::{Base, blocking};
use crate::snapshotter::{Info, Kind, Snapshotter, Usage};
use crate::storage::Snapshot;
use async_trait::async_trait;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::{Damage, Error, Labels, Result};

/// The label containerd's overlay snapshotter sets to a snapshot's upper directory.
pub const UPPERDIR_LABEL: &str = "containerd.io/snapshot/overlay.upperdir";

/// Options of the overlay snapshotter.
#[derive(Debug, Clone, Default)]
pub struct OverlayOptions {
    /// Leave removed snapshots' directories for [`Snapshotter::cleanup`] (containerd's
    /// `AsynchronousRemove`) instead of deleting them in `remove`.
    pub async_remove: bool,
    /// Report [`UPPERDIR_LABEL`] in infos (containerd's `WithUpperdirLabel`).
    pub upperdir_label: bool,
    /// Extra options for every overlay mount (containerd's `WithMountOptions`).
    pub mount_options: Vec<String>,
}

/// The overlay snapshotter. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    base: Arc<Base>,
    opts: Arc<OverlayOptions>,
    auto_options: Arc<Vec<String>>,
}

/// Whether this process runs in a user namespace (then overlay needs `userxattr`).
fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Checks that overlayfs can be mounted with upper and work directories under `dir`
/// (which must exist), by mounting a tiny overlay there and unmounting it.
///
/// # Errors
/// `Io` (or `NotImplemented` when overlayfs is unknown to the kernel) describing why not.
pub fn supported(dir: &Path) -> Result<()> {
    let t = tempfile::Builder::new()
        .prefix("overlay-check-")
        .tempdir_in(dir)
        .map_err(|e| Error::io(format!("create directory in {}", dir.display()), e))?;
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(t.path().join(d))
            .map_err(|e| Error::io(format!("create {d} in {}", t.path().display()), e))?;
    }
    let p = |d: &str| t.path().join(d).to_string_lossy().into_owned();
    let m = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("lowerdir={}", p("lower")),
            format!("upperdir={}", p("upper")),
            format!("workdir={}", p("work")),
        ],
    };
    let merged = t.path().join("merged");
    crate::mount::mount_all(&[m], &merged).map_err(|e| {
        if e.message().contains("No such device") {
            Error::not_implemented("overlayfs is not available in this kernel")
        } else {
            e
        }
    })?;
    crate::mount::unmount_all(&merged)
}

/// Where an active snapshot's changes are, from its mounts (see the module docs): the
/// `upperdir=` of a single overlay mount, or the source of a single read-write bind.
///
/// ```
/// use strata_snapshot::{Mount, overlay::upperdir};
/// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
///     options: vec!["workdir=/s/3/work".into(), "upperdir=/s/3/fs".into(),
///                   "lowerdir=/s/2/fs:/s/1/fs".into()] };
/// assert_eq!(upperdir(&[m]).unwrap(), std::path::Path::new("/s/3/fs"));
/// assert_eq!(upperdir(&[Mount::bind("/s/1/fs", false)]).unwrap(), std::path::Path::new("/s/1/fs"));
/// assert_eq!(upperdir(&[Mount::bind("/s/1/fs", true)]), None);
/// ```
pub fn upperdir(mounts: &[Mount]) -> Option<PathBuf> {
    crate::mount::classify(mounts)
        .writable_dir()
        .map(Path::to_path_buf)
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) an overlay snapshotter rooted at `root`.
    ///
    /// # Errors
    /// `Io` when the root cannot be created; metastore errors. (Use [`supported`] to check
    /// that overlayfs works there.)
    pub fn open(root: impl AsRef<Path>, opts: OverlayOptions) -> Result<Self> {
        let base = Base::open(root.as_ref())?;
        let mut auto = Vec::new();
        let user_set_index = opts.mount_options.iter().any(|o| o.starts_with("index="));
        if !user_set_index && Path::new("/sys/module/overlay/parameters/index").exists() {
            auto.push("index=off".to_owned());
        }
        if in_user_namespace() && !opts.mount_options.iter().any(|o| o == "userxattr") {
            auto.push("userxattr".to_owned());
        }
        Ok(OverlaySnapshotter {
            base,
            opts: Arc::new(opts),
            auto_options: Arc::new(auto),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.base.root
    }

    /// The layer directory (`fs`, the upperdir while active) of snapshot `key`, any kind.
    ///
    /// # Errors
    /// `NotFound` for a missing key.
    pub fn upper_path(&self, key: &str) -> Result<PathBuf> {
        let (id, _, _) = self.base.ms.read(|tx| tx.get_info(key))?;
        Ok(self.fs(id))
    }

    fn fs(&self, id: u64) -> PathBuf {
        self.base.dir(id).join("fs")
    }

    fn mounts_of(&self, s: &Snapshot) -> Vec<Mount> {
        let path = |id: u64| self.fs(id).to_string_lossy().into_owned();
        if s.parent_ids.is_empty() {
            return vec![Mount::bind(path(s.id), s.kind == Kind::View)];
        }
        if s.kind == Kind::View && s.parent_ids.len() == 1 {
            return vec![Mount::bind(path(s.parent_ids[0]), true)];
        }
        let mut options: Vec<String> = self.auto_options.iter().cloned().collect();
        if s.kind == Kind::Active {
            options.push(format!(
                "workdir={}",
                self.base.dir(s.id).join("work").display()
            ));
            options.push(format!("upperdir={}", path(s.id)));
        }
        let lowers: Vec<String> = s.parent_ids.iter().map(|id| path(*id)).collect();
        options.push(format!("lowerdir={}", lowers.join(":")));
        options.extend(self.opts.mount_options.iter().cloned());
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options,
        }]
    }

    fn label(&self, id: u64, mut info: Info) -> Info {
        if self.opts.upperdir_label {
            info.labels.insert(
                UPPERDIR_LABEL.into(),
                self.fs(id).to_string_lossy().into_owned(),
            );
        }
        info
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
                let fs = tmp.join("fs");
                let mk = |p: &Path, mode: u32| {
                    std::fs::create_dir(p)
                        .and_then(|_| {
                            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                        })
                        .map_err(|e| Error::io(format!("create {}", p.display()), e))
                };
                mk(&fs, 0o755)?;
                if kind == Kind::Active {
                    mk(&tmp.join("work"), 0o711)?;
                }
                if let Some(p) = parents.first() {
                    // The new layer's root takes the owner of the parent's root.
                    let pfs = this.fs(*p);
                    let md = std::fs::metadata(&pfs)
                        .map_err(|e| Error::io(format!("stat {}", pfs.display()), e))?;
                    std::os::unix::fs::lchown(&fs, Some(md.uid()), Some(md.gid()))
                        .map_err(|e| Error::io(format!("chown {}", fs.display()), e))?;
                }
                Ok(())
            })?;
            Ok(this.mounts_of(&s))
        })
        .await
    }
}

#[async_trait]
impl Snapshotter for OverlaySnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || {
            let (id, info, _) = this.base.ms.read(|tx| tx.get_info(&key))?;
            Ok(this.label(id, info))
        })
        .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let (this, fp) = (self.clone(), fieldpaths.to_vec());
        blocking(move || {
            let mut info = info;
            if this.opts.upperdir_label {
                info.labels.remove(UPPERDIR_LABEL);
            }
            let (id, info) = this.base.ms.write(|tx| {
                let info = tx.update_info(&info, &fp)?;
                Ok((tx.get_info(&info.name)?.0, info))
            })?;
            Ok(this.label(id, info))
        })
        .await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || this.base.usage(&key, |id| this.fs(id))).await
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
        let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
        blocking(move || this.base.commit(&name, &key, &labels)).await
    }

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
        let (this, name, key, parent) = (
            self.clone(),
            name.to_owned(),
            key.to_owned(),
            parent.to_owned(),
        );
        blocking(move || this.base.commit_onto(&name, &key, Some(&parent), &labels)).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || this.base.remove(&key, this.opts.async_remove)).await
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let (this, f) = (self.clone(), filters.to_vec());
        blocking(move || {
            if !this.opts.upperdir_label {
                return Ok(this.base.walk(&f)?.into_iter().map(|(_, i)| i).collect());
            }
            // The label is part of what filters see.
            let filter = strata_content::filters::Filter::parse_all(&f)?;
            Ok(this
                .base
                .walk(&[])?
                .into_iter()
                .map(|(id, i)| this.label(id, i))
                .filter(|i| filter.matches(i))
                .collect())
        })
        .await
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
#[path = "overlay_tests.rs"]
mod tests;
