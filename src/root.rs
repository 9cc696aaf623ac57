//! [`Root`]: the one wiring of a strata state directory.
//!
//! A state directory holds everything strata keeps (see `ARCHITECTURE.md`, "On-disk
//! layout"):
//!
//! ```text
//! <root>/content/                 the content store (blobs, ingests, metadata.db)
//! <root>/snapshots/<snapshotter>/ one directory per snapshotter (overlay, native)
//! <root>/metadata.db              image records and leases
//! ```
//!
//! [`Root::open`] opens them all for one namespace and wires the image service over them
//! with a lease manager, so every flow is protected against garbage collection while it
//! runs. Opening writes nothing when the directory exists (listings work on a full or
//! read-only disk) except an 8 MiB `reserve` file, made while there is room and released
//! by the operations that free space ([`Root::freeing_space`]). The CLI, the examples, the tests and the gRPC server open state directories
//! only through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_content::local::LocalStore;
use strata_content::{Descriptor, Error, Labels, Result};
use strata_image::check::{CheckOptions, CheckReport};
use strata_image::gc::{Collector, GcStats};
use strata_image::image::Image;
use strata_image::leases::LeaseManager;
use strata_image::reference::normalize;
use strata_image::service::{
    CommitOptions, Committed, IMAGE_LABEL, ImageService, PullOptions, Pulled, PushOptions,
    UnpackOptions, Unpacked,
};
use strata_image::store::ImageStore;
use strata_snapshot::mount::{MountGuard, with_temp_mount};
use strata_snapshot::{Mount, Snapshotter};

/// How to open a [`Root`].
#[derive(Debug, Clone)]
pub struct RootOptions {
    /// The namespace of content, images and leases (snapshots are shared, as in a
    /// containerd snapshotter); default `default`.
    pub namespace: String,
    /// The snapshotter: `overlay` or `native`; `None` picks the one the directory
    /// already uses (overlay first), else overlay where overlayfs mounts there, else
    /// native.
    pub snapshotter: Option<String>,
}

impl Default for RootOptions {
    fn default() -> Self {
        RootOptions {
            namespace: "default".into(),
            snapshotter: None,
        }
    }
}

/// A strata state directory, opened: the content store, the image records, the leases,
/// a snapshotter and the [`ImageService`] over them, for one namespace.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. Several processes may
/// open the same directory at once (the stores lock across processes).
///
/// ```no_run
/// # async fn run() -> strata::content::Result<()> {
/// // Needs root for mounts, and a registry at 127.0.0.1:5000 (loopback is plain HTTP).
/// let root = strata::Root::open("/var/lib/strata")?;
/// root.pull("127.0.0.1:5000/debian:minbase", Default::default()).await?;
/// root.prepare_container("ctr1", "127.0.0.1:5000/debian:minbase").await?;
/// root.with_mounted("ctr1", |dir| std::fs::write(dir.join("hello.txt"), "hi"))
///     .await?
///     .map_err(|e| strata::content::Error::io("write hello.txt", e))?;
/// let c = root.commit("ctr1", "127.0.0.1:5000/app:1", Default::default()).await?;
/// root.push(&c.image.name, None, Default::default()).await?;
/// # Ok(()) }
/// ```
pub struct Root {
    path: PathBuf,
    namespace: String,
    content: LocalStore,
    images: ImageStore,
    leases: Arc<LeaseManager>,
    snapshotter: (String, Arc<dyn Snapshotter>),
    service: ImageService,
}

impl Root {
    /// Opens (creating what is missing) the state directory `dir` with the default
    /// options: namespace `default`; the snapshotter the directory already uses, else
    /// overlay where it mounts, else native.
    ///
    /// # Errors
    /// I/O and database errors opening the stores, naming the path.
    pub fn open(dir: impl AsRef<Path>) -> Result<Root> {
        Root::open_with(dir, RootOptions::default())
    }

    /// Opens the state directory `dir` with `opts`.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown snapshotter; I/O and database errors opening the
    /// stores.
    pub fn open_with(dir: impl AsRef<Path>, opts: RootOptions) -> Result<Root> {
        let path = dir.as_ref().to_path_buf();
        let ns = opts.namespace;
        let content = LocalStore::open(path.join("content"))?.namespace(&ns);
        let images = ImageStore::open(path.join("metadata.db"))?.namespace(&ns);
        let leases = Arc::new(LeaseManager::open(path.join("metadata.db"))?.namespace(ns.clone()));
        let sn_name = match opts.snapshotter {
            Some(n) => n,
            None => existing_snapshotter(&path)
                .unwrap_or_else(|| strata_snapshot::default_backend(&path.join("snapshots")))
                .to_string(),
        };
        let sn = strata_snapshot::open(&sn_name, &snapshotter_dir(&path, &sn_name))?;
        ensure_reserve(&path);
        let service = ImageService::new(Arc::new(content.clone()), Arc::new(images.clone()))
            .with_snapshotter(sn_name.clone(), sn.clone())
            .with_leases(leases.clone());
        Ok(Root {
            path,
            namespace: ns,
            content,
            images,
            leases,
            snapshotter: (sn_name, sn),
            service,
        })
    }

    /// The state directory a tool uses by default: `$STRATA_ROOT`, else
    /// `$XDG_DATA_HOME/strata`, else `~/.local/share/strata`.
    pub fn default_dir() -> PathBuf {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(r) = var("STRATA_ROOT") {
            return r.into();
        }
        if let Some(d) = var("XDG_DATA_HOME") {
            return PathBuf::from(d).join("strata");
        }
        let home = var("HOME").map_or_else(|| PathBuf::from("/var/lib"), PathBuf::from);
        home.join(".local/share/strata")
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The content store (this namespace).
    pub fn content(&self) -> &LocalStore {
        &self.content
    }

    /// The image records (this namespace).
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The leases (this namespace).
    pub fn leases(&self) -> &Arc<LeaseManager> {
        &self.leases
    }

    /// The snapshotter.
    pub fn snapshotter(&self) -> &Arc<dyn Snapshotter> {
        &self.snapshotter.1
    }

    /// The snapshotter's name (`overlay` or `native`).
    pub fn snapshotter_name(&self) -> &str {
        &self.snapshotter.0
    }

    /// The image service over these stores, for the flows' full options.
    pub fn service(&self) -> &ImageService {
        &self.service
    }

    /// The image record `name`, as given or normalized (`debian:minbase` finds
    /// `docker.io/library/debian:minbase`).
    ///
    /// # Errors
    /// `NotFound` naming the image.
    pub async fn image(&self, name: &str) -> Result<Image> {
        match self.images.get(name).await {
            Err(e) if e.is_not_found() && normalize(name) != name => {
                self.images.get(&normalize(name)).await
            }
            r => r,
        }
    }

    /// Pulls `reference` from its registry and unpacks it into the snapshotter
    /// ([`ImageService::pull`]).
    ///
    /// # Errors
    /// As [`ImageService::pull`]: registry, content, apply and snapshotter errors.
    pub async fn pull(&self, reference: &str, opts: PullOptions) -> Result<Pulled> {
        self.service.pull(reference, opts).await
    }

    /// Unpacks image `name` into snapshots named by ChainID ([`ImageService::unpack`]).
    ///
    /// # Errors
    /// `NotFound` for an unknown image; as [`ImageService::unpack`].
    pub async fn unpack(&self, name: &str) -> Result<Unpacked> {
        let image = self.image(name).await?;
        self.service.unpack(&image, UnpackOptions::default()).await
    }

    /// Prepares the container snapshot `key` (active, writable) on image `name`'s top
    /// snapshot, unpacking the image first if needed, and labels it with the image so
    /// that [`Root::commit`] knows its base. Returns its mounts.
    ///
    /// # Errors
    /// `NotFound` for an unknown image; `AlreadyExists` when `key` exists; unpack errors.
    pub async fn prepare_container(&self, key: &str, name: &str) -> Result<Vec<Mount>> {
        self.prepare_container_with(key, name, Labels::new()).await
    }

    /// As [`Root::prepare_container`], with more labels on the snapshot.
    ///
    /// # Errors
    /// As [`Root::prepare_container`].
    pub async fn prepare_container_with(
        &self,
        key: &str,
        name: &str,
        mut labels: Labels,
    ) -> Result<Vec<Mount>> {
        let image = self.image(name).await?;
        let unpacked = self
            .service
            .unpack(&image, UnpackOptions::default())
            .await?;
        let parent = unpacked.top().map(|d| d.to_string()).unwrap_or_default();
        labels.insert(IMAGE_LABEL.into(), image.name);
        self.snapshotter().prepare(key, &parent, labels).await
    }

    /// The mounts of snapshot `key`.
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.snapshotter().mounts(key).await
    }

    /// Mounts snapshot `key` at `target` (an existing directory) until the guard is
    /// dropped or [`MountGuard::unmount`]ed. Needs the privilege to mount.
    ///
    /// # Errors
    /// `NotFound` for an unknown key; mount errors naming the target.
    pub async fn mount(&self, key: &str, target: &Path) -> Result<MountGuard> {
        let mounts = self.mounts(key).await?;
        let target = target.to_path_buf();
        blocking(move || MountGuard::mount(&mounts, &target)).await?
    }

    /// Runs `f` on a blocking thread with snapshot `key` mounted at a temporary
    /// directory, then unmounts it (also when `f` panics).
    ///
    /// # Errors
    /// `NotFound` for an unknown key; mount and unmount errors. `f`'s own result is
    /// returned inside `Ok`.
    pub async fn with_mounted<R, F>(&self, key: &str, f: F) -> Result<R>
    where
        F: FnOnce(&Path) -> R + Send + 'static,
        R: Send + 'static,
    {
        let mounts = self.mounts(key).await?;
        blocking(move || with_temp_mount(&mounts, f)).await?
    }

    /// Commits the container snapshot `key` as image `new_ref` ([`ImageService::commit`]).
    ///
    /// # Errors
    /// As [`ImageService::commit`].
    pub async fn commit(&self, key: &str, new_ref: &str, opts: CommitOptions) -> Result<Committed> {
        self.service.commit(key, new_ref, opts).await
    }

    /// Pushes image `name` to its registry, or to `remote` ([`ImageService::push`]);
    /// returns the pushed root descriptor.
    ///
    /// # Errors
    /// `NotFound` for an unknown image; as [`ImageService::push`].
    pub async fn push(
        &self,
        name: &str,
        remote: Option<&str>,
        opts: PushOptions,
    ) -> Result<Descriptor> {
        let image = self.image(name).await?;
        self.service.push(&image.name, remote, opts).await
    }

    /// Removes the container snapshot `key`.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` when snapshots are based on it.
    pub async fn remove_container(&self, key: &str) -> Result<()> {
        self.freeing_space(self.snapshotter().remove(key)).await
    }

    /// Removes the image record `name` (its blobs and snapshots are left to [`Root::gc`]).
    ///
    /// # Errors
    /// `NotFound` naming the image.
    pub async fn remove_image(&self, name: &str) -> Result<()> {
        let image = self.image(name).await?;
        self.freeing_space(self.images.delete(&image.name, None))
            .await
    }

    /// A garbage collector over this directory: every namespace, every snapshotter that
    /// exists in it.
    ///
    /// # Errors
    /// Errors opening another snapshotter present in the directory.
    pub fn collector(&self) -> Result<Collector> {
        let mut snapshotters = vec![self.snapshotter.clone()];
        for name in strata_snapshot::BACKENDS {
            let dir = snapshotter_dir(&self.path, name);
            if name != self.snapshotter.0 && dir.join("metadata.db").exists() {
                snapshotters.push((name.to_string(), strata_snapshot::open(name, &dir)?));
            }
        }
        Ok(Collector {
            content: self.content.clone(),
            images: self.images.clone(),
            leases: self.leases.clone(),
            snapshotters,
        })
    }

    /// Removes every blob, ingest, snapshot and expired lease or image that nothing
    /// references (containerd's GC: mark from images, leases and `gc.root` labels).
    ///
    /// # Errors
    /// Store errors.
    pub async fn gc(&self) -> Result<GcStats> {
        let collector = self.collector()?;
        self.freeing_space(collector.collect()).await
    }

    /// Runs `f`, an operation that frees space (removals, GC), with the directory's
    /// reserve released: on a full filesystem the databases then have room to record the
    /// removals. The reserve (a `reserve` file of [`RESERVE_BYTES`], made when the
    /// directory is opened with room to spare) is made again afterwards.
    pub async fn freeing_space<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let reserve = self.path.join(RESERVE_FILE);
        let _ = std::fs::remove_file(&reserve);
        let out = f.await;
        ensure_reserve(&self.path);
        out
    }

    /// Checks everything in this directory — blobs (sizes, digests), ingests, snapshots
    /// against their directories, images, GC labels — and with `opts.repair` removes
    /// what no record owns and records that point at missing bytes
    /// ([`strata_image::check`]).
    ///
    /// # Errors
    /// Store errors while reading.
    pub async fn check(&self, opts: &CheckOptions) -> Result<CheckReport> {
        strata_image::check::check(&self.collector()?, opts).await
    }
}

/// The size of a state directory's reserve file (see [`Root::freeing_space`]).
pub const RESERVE_BYTES: u64 = 8 << 20;
const RESERVE_FILE: &str = "reserve";

/// Makes `<root>/reserve` ([`RESERVE_BYTES`] of real blocks) if it is missing and fits;
/// on failure nothing is left behind. The blocks are allocated with `fallocate` (a
/// journalled metadata change: no data written, no fsync needed), or written as zeros
/// and synced where the filesystem cannot allocate.
fn ensure_reserve(root: &Path) {
    use std::io::Write;
    let path = root.join(RESERVE_FILE);
    if path.exists() {
        return;
    }
    let tmp = root.join(".reserve.tmp");
    let made = std::fs::File::create(&tmp).and_then(|mut f| {
        let flags = rustix::fs::FallocateFlags::empty();
        if rustix::fs::fallocate(&f, flags, 0, RESERVE_BYTES).is_ok() {
            return Ok(());
        }
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
            f.write_all(&zeros)?;
        }
        f.sync_all()
    });
    match made {
        Ok(()) => {
            let _ = std::fs::rename(&tmp, &path);
        }
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The snapshotter already in use under `root` (overlay first), if any: a directory
/// keeps its snapshotter without probing mounts again (which needs disk space).
fn existing_snapshotter(root: &Path) -> Option<&'static str> {
    strata_snapshot::BACKENDS
        .into_iter()
        .find(|n| snapshotter_dir(root, n).join("metadata.db").exists())
}

/// Where snapshotter `name` keeps its state under `root`.
fn snapshotter_dir(root: &Path, name: &str) -> PathBuf {
    root.join("snapshots").join(name)
}

/// Runs `f` on the blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("blocking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wires_one_namespace_and_finds_normalized_names() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RootOptions {
            namespace: "ns1".into(),
            snapshotter: Some("native".into()),
        };
        let root = Root::open_with(dir.path(), opts).unwrap();
        assert_eq!(root.snapshotter_name(), "native");
        assert_eq!(root.namespace(), "ns1");
        assert!(dir.path().join("content").is_dir());
        assert!(dir.path().join("snapshots/native/metadata.db").exists());
        let mut l = strata_image::build::LayerBuilder::new();
        l.file("hello", 0o644, b"hi").unwrap();
        strata_image::build::ImageBuilder::new()
            .layer(l.finish_gzip().unwrap())
            .write(root.content(), root.images(), "docker.io/library/x:latest")
            .await
            .unwrap();
        assert_eq!(
            root.image("x").await.unwrap().name,
            "docker.io/library/x:latest"
        );
        assert!(root.image("y").await.unwrap_err().is_not_found());
        // Another namespace does not see it.
        let other = Root::open_with(
            dir.path(),
            RootOptions {
                snapshotter: Some("native".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(other.image("x").await.unwrap_err().is_not_found());
        // A container on it, committed, and everything collected once removed.
        let mounts = root.prepare_container("c1", "x").await.unwrap();
        assert_eq!(mounts.len(), 1);
        let info = root.snapshotter().stat("c1").await.unwrap();
        assert_eq!(info.labels[IMAGE_LABEL], "docker.io/library/x:latest");
        std::fs::write(Path::new(&mounts[0].source).join("new"), b"1").unwrap();
        let c = root
            .commit("c1", "x:2", CommitOptions::default())
            .await
            .unwrap();
        assert_eq!(c.image.name, "docker.io/library/x:2");
        assert!(c.layer.is_some());
        root.remove_container("c1").await.unwrap();
        root.remove_image("x").await.unwrap();
        root.remove_image("x:2").await.unwrap();
        let stats = root.gc().await.unwrap();
        assert!(stats.snapshots >= 2, "{stats:?}");
        assert!(
            root.snapshotter()
                .stat(c.chain_id.unwrap().as_ref())
                .await
                .is_err()
        );
    }

    #[test]
    fn unknown_snapshotter_is_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RootOptions {
            snapshotter: Some("zfs".into()),
            ..Default::default()
        };
        let err = Root::open_with(dir.path(), opts).err().unwrap();
        assert!(err.is_invalid_argument(), "{err}");
    }
}
