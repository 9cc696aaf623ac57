//! The protobuf messages, server traits and clients generated at build time from
//! strata's own description of containerd 1.6's API (`crates/grpc/proto/`).
//!
//! The module tree mirrors the protobuf packages under `containerd.`:
//! [`types`] (`Mount`, `Descriptor`), [`services::snapshots::v1`] and
//! [`services::content::v1`]. Well-known types map to [`prost_types`] (`Timestamp`,
//! `FieldMask`) and `google.protobuf.Empty` to `()`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `containerd.types`: `Mount` and `Descriptor`.
pub mod types {
    include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
}

/// `containerd.services.*`.
pub mod services {
    /// `containerd.services.snapshots`.
    pub mod snapshots {
        /// `containerd.services.snapshots.v1`: the `Snapshots` service.
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.snapshots.v1.rs"
            ));
        }
    }
    /// `containerd.services.content`.
    pub mod content {
        /// `containerd.services.content.v1`: the `Content` service.
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.content.v1.rs"
            ));
        }
    }
}
