//! # strata-content
//!
//! strata's content-addressed blob store, with the semantics of containerd's content
//! store: blobs named by digest, written through resumable ingests that survive a crash,
//! verified at commit, labelled, listed with containerd's filter syntax, and shared across
//! namespaces.
//!
//! **Its place in strata**: the bottom crate. Every other crate depends on it: the image
//! service fetches registry blobs into a [`Store`], the differ reads layers from it and
//! writes new ones into it, and all of them use its [`Error`] (a containerd-style
//! [`ErrorKind`] and a message naming the object), its [`filters`] language and its
//! [`sqlite`] plumbing. The lifecycle rules every backend keeps are written on [`Store`].
//!
//! ## Contents
//! - [`error`]: [`Error`] and [`ErrorKind`], the one error type of strata.
//! - [`damage`]: [`Damage`], what consistency checks report.
//! - [`digest`]: digests and incremental sha256.
//! - [`labels`]: well-known label keys (GC references, `uncompressed` …) and validation.
//! - [`filters`]: containerd's `field==value,labels."k"~=re` filters.
//! - [`store`]: the interfaces [`Provider`], [`Ingester`], [`Writer`], [`Manager`],
//!   [`IngestManager`] and [`Store`], with the lifecycle invariants.
//! - [`helpers`]: `write_blob`, `read_blob`, `copy` (resume-aware) and `open_writer`.
//! - [`local`]: the filesystem + SQLite store ([`local::LocalStore`]).
//! - [`sqlite`]: shared plumbing, not the content interface: how every strata crate opens
//!   its SQLite database (WAL, busy timeout, retry) and stores times and labels in it.
//! - [`time_format`]: serde helpers writing times as RFC 3339 with nanoseconds.
//! - `testsuite` (cargo feature `testsuite`, off by default): the conformance suite any
//!   [`Store`] backend can run.
//!
//! ## Example
//! Store a blob, read it back, label it and find it by its label; another namespace does
//! not see it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use strata_content::{Descriptor, Info, Labels, Manager, MediaType, digest, helpers};
//! use strata_content::local::LocalStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalStore::open(dir.path())?;
//! let data = b"hello, strata";
//! let desc = Descriptor::new(MediaType::Other("text/plain".into()), data.len() as u64, digest::sha256(data));
//!
//! // Ingest under a ref, verified against the descriptor's size and digest at commit.
//! helpers::write_blob(&store, "hello", &data[..], &desc, Labels::new()).await?;
//! assert_eq!(helpers::read_blob(&store, &desc).await?, data);
//!
//! let labels = Labels::from([("app".to_string(), "demo".to_string())]);
//! store.update(Info::for_update(desc.digest().clone(), labels), &[]).await?;
//! let found = store.walk(&[r#"labels.app==demo"#.to_string()]).await?;
//! assert_eq!(found[0].digest, *desc.digest());
//! assert!(store.namespace("other").info(desc.digest()).await.unwrap_err().is_not_found());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod damage;
pub mod digest;
pub mod error;
pub mod filters;
pub mod helpers;
pub mod labels;
pub mod local;
pub mod sqlite;
pub mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod time_format;

pub use damage::Damage;
pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use labels::Labels;
pub use oci_spec::image::{Descriptor, MediaType};
pub use store::{
    Info, IngestManager, Ingester, Manager, Provider, ReaderAt, Status, Store, Writer, WriterOpts,
};
