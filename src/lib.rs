//! # strata
//!
//! containerd's image storage core as a library: a content-addressed blob store
//! ([`content`]), snapshotters ([`snapshot`]), layer apply and compare ([`diff`]) and an
//! image service with Fetch, Unpack and Commit ([`image`]), in-process, with no daemon.
//!
//! This facade re-exports the four crates; see `ARCHITECTURE.md` for how they fit.

pub use strata_content as content;
pub use strata_diff as diff;
pub use strata_image as image;
pub use strata_snapshot as snapshot;
