//! # strata-content
//!
//! strata's content-addressed blob store, with the semantics of containerd's content
//! store: blobs named by digest, written through resumable ingests that survive a crash,
//! verified at commit, labelled, listed with containerd's filter syntax, and shared across
//! namespaces. This crate also owns the [`Error`] type and the [`filters`] language that
//! every strata crate reuses.
//!
//! ## Contents
//! - [`error`]: [`Error`] and [`ErrorKind`], the one error type of strata.
//! - [`digest`]: digests and incremental sha256.
//! - [`labels`]: well-known label keys (GC references, `uncompressed` …) and validation.
//! - [`filters`]: containerd's `field==value,labels."k"~=re` filters.
//! - [`store`]: the interfaces [`Provider`], [`Ingester`], [`Writer`], [`Manager`],
//!   [`IngestManager`] and [`Store`].
//! - [`helpers`]: `write_blob`, `read_blob`, `copy` (resume-aware) and `open_writer`.
//! - [`local`]: the filesystem + SQLite store ([`local::LocalStore`]).
//! - [`sqlite`]: shared plumbing, not the content interface: how every strata crate opens
//!   its SQLite database (WAL, busy timeout, retry) and stores times and labels in it.
//! - `testsuite` (cargo feature `testsuite`, off by default): the conformance suite any
//!   [`Store`] backend can run.

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

pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use labels::Labels;
pub use oci_spec::image::{Descriptor, MediaType};
pub use store::{
    Info, IngestManager, Ingester, Manager, Provider, ReaderAt, Status, Store, Writer, WriterOpts,
};
