//! The snapshotter conformance suite: containerd's `SnapshotterSuite`
//! (core/snapshots/testsuite), case by case, with real mounts.
//!
//! Any backend runs it with [`snapshotter_suite!`](crate::snapshotter_suite), which
//! expands to one `#[tokio::test]` per [`Case`] (so cargo runs them in parallel):
//!
//! ```ignore
//! strata_snapshot::snapshotter_suite!(native, "native", |root: &std::path::Path| {
//!     Ok(std::sync::Arc::new(strata_snapshot::native::NativeSnapshotter::open(root)?) as _)
//! });
//! ```
//!
//! Each case gets a fresh directory (`$STRATA_SNAPSHOT_TEST_DIR`, else the system temp
//! dir) holding the snapshotter root and a work area. Every mount a case makes is held
//! by a [`MountGuard`](crate::mount::MountGuard), and when the case ends — passing,
//! failing or panicking — anything still mounted under its directory is detached
//! before the directory is removed. Needs root (mount, chown).

mod cases;
pub mod fstest;

use crate::Snapshotter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::Result;

/// Opens a snapshotter rooted at the given (existing, empty) directory.
pub type Factory = dyn Fn(&Path) -> Result<Arc<dyn Snapshotter>> + Send + Sync;

/// The cases of the suite (containerd's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Case {
    Basic,
    StatActive,
    StatCommitted,
    Transitivity,
    PrepareViewFailing,
    Update,
    Remove,
    Walk,
    LayerFileUpdate,
    RemoveDirectoryInLowerLayer,
    Chown,
    DirectoryPermissionOnCommit,
    RemoveIntermediateSnapshot,
    DeletedFilesInChildSnapshot,
    MoveFileFromLowerLayer,
    ViewReadonly,
    StatInWalk,
    CloseTwice,
    RootPermission,
    Rename,
    Layers128Mount,
}

impl Case {
    /// Every case, in containerd's order.
    pub const ALL: [Case; 21] = [
        Case::Basic,
        Case::StatActive,
        Case::StatCommitted,
        Case::Transitivity,
        Case::PrepareViewFailing,
        Case::Update,
        Case::Remove,
        Case::Walk,
        Case::LayerFileUpdate,
        Case::RemoveDirectoryInLowerLayer,
        Case::Chown,
        Case::DirectoryPermissionOnCommit,
        Case::RemoveIntermediateSnapshot,
        Case::DeletedFilesInChildSnapshot,
        Case::MoveFileFromLowerLayer,
        Case::ViewReadonly,
        Case::StatInWalk,
        Case::CloseTwice,
        Case::RootPermission,
        Case::Rename,
        Case::Layers128Mount,
    ];
}

/// The per-case directory; on drop, detaches every mount left under it, then removes it.
struct CaseDir {
    path: PathBuf,
}

impl CaseDir {
    fn new(backend: &str) -> std::io::Result<Self> {
        let base = std::env::var_os("STRATA_SNAPSHOT_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base)?;
        let path = tempfile::Builder::new()
            .prefix(&format!("snapshot-suite-{backend}-"))
            .tempdir_in(base)?
            .keep();
        Ok(CaseDir { path })
    }
}

/// Mount points at or under `dir`, deepest first (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

impl Drop for CaseDir {
    fn drop(&mut self) {
        let left = mounts_under(&self.path);
        for m in &left {
            let _ = crate::mount::unmount_lazy(m);
        }
        if left.is_empty() || mounts_under(&self.path).is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs one case against a snapshotter made by `factory`, in a fresh directory.
/// `backend` names the backend (`overlay` skips what overlayfs cannot do, as
/// containerd's suite does).
///
/// # Panics
/// When the case fails (these are tests); mounts are cleaned up first.
pub async fn run(case: Case, backend: &str, factory: &Factory) {
    let dir = CaseDir::new(backend).expect("create suite directory");
    let root = dir.path.join("root");
    let work = dir.path.join("work");
    std::fs::create_dir_all(&root).expect("create root");
    std::fs::create_dir_all(&work).expect("create work");
    let sn = factory(&root).expect("open snapshotter");
    let res = cases::run(case, sn.as_ref(), &work, backend).await;
    let _ = sn.close().await;
    if let Err(e) = res {
        panic!("{case:?} on {backend}: {e}");
    }
    let left = mounts_under(&dir.path);
    assert!(
        left.is_empty(),
        "{case:?} on {backend} leaked mounts: {left:?}"
    );
}

/// Expands to a module `$name` with one `#[tokio::test]` per [`Case`], each running
/// [`run`] with backend name `$backend` and the factory `$factory`
/// (`Fn(&Path) -> Result<Arc<dyn Snapshotter>>`).
#[macro_export]
macro_rules! snapshotter_suite {
    ($name:ident, $backend:expr, $factory:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn factory() -> &'static $crate::testsuite::Factory {
                static F: std::sync::OnceLock<Box<$crate::testsuite::Factory>> =
                    std::sync::OnceLock::new();
                F.get_or_init(|| Box::new($factory)).as_ref()
            }
            $crate::snapshotter_suite!(@cases $backend;
                basic Basic, stat_active StatActive, stat_committed StatCommitted,
                transitivity Transitivity, prepare_view_failing PrepareViewFailing,
                update Update, remove Remove, walk Walk, layer_file_update LayerFileUpdate,
                remove_directory_in_lower_layer RemoveDirectoryInLowerLayer, chown Chown,
                directory_permission_on_commit DirectoryPermissionOnCommit,
                remove_intermediate_snapshot RemoveIntermediateSnapshot,
                deleted_files_in_child_snapshot DeletedFilesInChildSnapshot,
                move_file_from_lower_layer MoveFileFromLowerLayer, view_readonly ViewReadonly,
                stat_in_walk StatInWalk, close_twice CloseTwice, root_permission RootPermission,
                rename Rename, layers_128_mount Layers128Mount);
        }
    };
    (@cases $backend:expr; $($fn:ident $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $fn() {
                $crate::testsuite::run($crate::testsuite::Case::$case, $backend, factory()).await;
            }
        )*
    };
}
