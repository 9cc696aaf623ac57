//! containerd's snapshotter conformance suite against both backends, with real mounts.

use std::path::Path;
use std::sync::Arc;
use strata_snapshot::Snapshotter;
use strata_snapshot::native::NativeSnapshotter;
use strata_snapshot::overlay::{OverlayOptions, OverlaySnapshotter};

strata_snapshot::snapshotter_suite!(native, "native", |root: &Path| {
    Ok(Arc::new(NativeSnapshotter::open(root)?) as Arc<dyn Snapshotter>)
});

strata_snapshot::snapshotter_suite!(overlay, "overlay", |root: &Path| {
    Ok(
        Arc::new(OverlaySnapshotter::open(root, OverlayOptions::default())?)
            as Arc<dyn Snapshotter>,
    )
});
