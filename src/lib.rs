//! # strata
//!
//! containerd's image storage core as a library, in-process, with no daemon: a
//! content-addressed blob store, snapshotters, layer apply and compare, and an image
//! service whose Fetch, Unpack and Commit follow containerd's flows.
//!
//! Start with [`Root`]: it opens a state directory (content, snapshots, images, leases)
//! and offers the common jobs — pull, prepare a container, mount, commit, push, remove,
//! garbage-collect. Everything else is one of the five crates below, re-exported; see
//! `ARCHITECTURE.md` for how they fit.
//!
//! | module | crate | job |
//! |---|---|---|
//! | [`content`] | `strata-content` | blobs, resumable ingests, labels, filters; the shared `Error` |
//! | [`snapshot`] | `strata-snapshot` | the `Snapshotter` trait, overlay and native backends, mounts |
//! | [`diff`] | `strata-diff` | apply layers (tar/gzip/zstd, whiteouts, beneath-root), compare trees |
//! | [`remote`] | `strata-remote` | references and the registry client (resolve, fetch, push, auth) |
//! | [`image`] | `strata-image` | images, OCI layouts, leases, GC, `ImageService` over all of them |
//! | [`root`] | this crate | [`Root`], the one wiring of a state directory |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::content::Result<()> {
//! use strata::{Root, RootOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let opts = RootOptions { snapshotter: Some("native".into()), ..Default::default() };
//! let root = Root::open_with(dir.path(), opts)?;
//! let mut layer = strata::image::build::LayerBuilder::new();
//! layer.file("hello.txt", 0o644, b"hello\n")?;
//! strata::image::build::ImageBuilder::new()
//!     .layer(layer.finish_gzip()?)
//!     .write(root.content(), root.images(), "example:1")
//!     .await?;
//! let mounts = root.prepare_container("ctr1", "example:1").await?;
//! // … run something on the container's mounts, then:
//! let committed = root.commit("ctr1", "example:2", Default::default()).await?;
//! assert_eq!(committed.image.name, "docker.io/library/example:2");
//! # let _ = mounts; Ok(()) }
//! ```
#![warn(missing_docs)]

pub use strata_content as content;
pub use strata_diff as diff;
pub use strata_image as image;
pub use strata_remote as remote;
pub use strata_snapshot as snapshot;

pub mod root;

pub use root::{Root, RootOptions};
