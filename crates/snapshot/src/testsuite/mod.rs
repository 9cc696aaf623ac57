//! The snapshotter conformance suite (containerd's `SnapshotterSuite`).

pub mod fstest;
