//! Garbage collection: mark and sweep over content, ingests, images, snapshots and leases,
//! following containerd's `gc.ref.*` labels (see `docs/garbage-collection.md` upstream).
//!
//! - [`mark`]: the pure rules: roots, references, tricolour marking, the removal [`Plan`].

pub mod mark;

pub use mark::{Node, Plan, World, tricolor};
