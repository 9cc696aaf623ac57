//! Garbage collection: mark and sweep over content, ingests, images, snapshots and leases,
//! following containerd's `gc.ref.*` labels (see `docs/garbage-collection.md` upstream).
//!
//! - [`mark`]: the pure rules: roots, references, tricolour marking, the removal [`Plan`].
//! - [`sweep`]: the [`Collector`] that reads the real stores and removes what the plan lists.

pub mod mark;
pub mod sweep;

pub use mark::{Node, Plan, World, tricolor};
pub use sweep::{Collector, GcStats, is_scratch_key};
