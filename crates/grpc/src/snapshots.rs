//! The `containerd.services.snapshots.v1.Snapshots` service over strata snapshotters.
//!
//! Keys, parents and labels are passed to the [`Snapshotter`] as containerd sends them
//! (containerd's metadata layer has already namespaced the keys, and labels such as
//! `containerd.io/snapshot.ref` are kept as given). Errors map to gRPC codes with
//! [`to_status`].

use crate::api::services::snapshots::v1 as api;
use crate::convert;
use crate::errors::to_status;
use api::snapshots_server::Snapshots;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_content::{Error, Result};
use strata_snapshot::Snapshotter;
use tonic::{Request, Response, Status};

/// The snapshots service: one snapshotter answering to any name, or several by name.
///
/// ```no_run
/// # async fn demo(sn: std::sync::Arc<dyn strata_snapshot::Snapshotter>) {
/// let svc = strata_grpc::SnapshotsService::new(sn);
/// let server = strata_grpc::api::services::snapshots::v1::snapshots_server::SnapshotsServer::new(svc);
/// # }
/// ```
#[derive(Clone)]
pub struct SnapshotsService {
    any: Option<Arc<dyn Snapshotter>>,
    named: BTreeMap<String, Arc<dyn Snapshotter>>,
}

impl SnapshotsService {
    /// Serves `sn` whatever snapshotter name a request carries (containerd sends the name
    /// its configuration gave the proxy plugin, which the server cannot know).
    pub fn new(sn: Arc<dyn Snapshotter>) -> Self {
        SnapshotsService {
            any: Some(sn),
            named: BTreeMap::new(),
        }
    }

    /// Serves each snapshotter under its name only; requests for other names fail with
    /// `InvalidArgument` "snapshotter not loaded".
    pub fn named(named: BTreeMap<String, Arc<dyn Snapshotter>>) -> Self {
        SnapshotsService { any: None, named }
    }

    /// The snapshotter a request names.
    ///
    /// # Errors
    /// `InvalidArgument` when no snapshotter has that name.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Snapshotter>> {
        self.named
            .get(name)
            .or(self.any.as_ref())
            .ok_or_else(|| Error::invalid_argument(format!("snapshotter not loaded: {name:?}")))
    }

    fn sn(&self, name: &str) -> Result<&Arc<dyn Snapshotter>, Status> {
        self.get(name).map_err(to_status)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        req: Request<api::PrepareSnapshotRequest>,
    ) -> Reply<api::PrepareSnapshotResponse> {
        let r = req.into_inner();
        let sn = self.sn(&r.snapshotter)?;
        let mounts = sn
            .prepare(&r.key, &r.parent, r.labels)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::PrepareSnapshotResponse {
            mounts: convert::mounts(mounts),
        }))
    }

    async fn view(
        &self,
        req: Request<api::ViewSnapshotRequest>,
    ) -> Reply<api::ViewSnapshotResponse> {
        let r = req.into_inner();
        let sn = self.sn(&r.snapshotter)?;
        let mounts = sn
            .view(&r.key, &r.parent, r.labels)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::ViewSnapshotResponse {
            mounts: convert::mounts(mounts),
        }))
    }

    async fn mounts(&self, req: Request<api::MountsRequest>) -> Reply<api::MountsResponse> {
        let r = req.into_inner();
        let mounts = self
            .sn(&r.snapshotter)?
            .mounts(&r.key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::MountsResponse {
            mounts: convert::mounts(mounts),
        }))
    }

    async fn commit(&self, req: Request<api::CommitSnapshotRequest>) -> Reply<()> {
        let r = req.into_inner();
        let sn = self.sn(&r.snapshotter)?;
        sn.commit(&r.name, &r.key, r.labels)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<api::RemoveSnapshotRequest>) -> Reply<()> {
        let r = req.into_inner();
        self.sn(&r.snapshotter)?
            .remove(&r.key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<api::StatSnapshotRequest>,
    ) -> Reply<api::StatSnapshotResponse> {
        let r = req.into_inner();
        let info = self
            .sn(&r.snapshotter)?
            .stat(&r.key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::StatSnapshotResponse {
            info: Some(convert::snapshot_info(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<api::UpdateSnapshotRequest>,
    ) -> Reply<api::UpdateSnapshotResponse> {
        let r = req.into_inner();
        let sn = self.sn(&r.snapshotter)?;
        let info = r.info.unwrap_or_default();
        if info.name.is_empty() {
            return Err(to_status(Error::invalid_argument(
                "update: snapshot name is empty",
            )));
        }
        let paths = convert::field_paths(r.update_mask);
        let given = strata_snapshot::Info::for_update(info.name, info.labels);
        let info = sn.update(given, &paths).await.map_err(to_status)?;
        Ok(Response::new(api::UpdateSnapshotResponse {
            info: Some(convert::snapshot_info(info)),
        }))
    }

    type ListStream = BoxStream<'static, Result<api::ListSnapshotsResponse, Status>>;

    async fn list(&self, req: Request<api::ListSnapshotsRequest>) -> Reply<Self::ListStream> {
        let r = req.into_inner();
        let infos = self
            .sn(&r.snapshotter)?
            .walk(&r.filters)
            .await
            .map_err(to_status)?;
        let to_msg = |c: Vec<strata_snapshot::Info>| api::ListSnapshotsResponse {
            info: c.into_iter().map(convert::snapshot_info).collect(),
        };
        Ok(Response::new(convert::batched(infos, to_msg)))
    }

    async fn usage(&self, req: Request<api::UsageRequest>) -> Reply<api::UsageResponse> {
        let r = req.into_inner();
        let u = self
            .sn(&r.snapshotter)?
            .usage(&r.key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::UsageResponse {
            size: convert::int64(u.size),
            inodes: convert::int64(u.inodes),
        }))
    }

    async fn cleanup(&self, req: Request<api::CleanupRequest>) -> Reply<()> {
        let r = req.into_inner();
        self.sn(&r.snapshotter)?
            .cleanup()
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }
}
