//! Serving both services on a unix socket: [`serve`].

use crate::api::services::content::v1::content_server::ContentServer;
use crate::api::services::snapshots::v1::snapshots_server::SnapshotsServer;
use crate::{ContentService, SnapshotsService};
use std::future::Future;
use strata_content::{Error, Result};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// The largest message either side may send: 16 MiB (containerd's clients send writes of
/// up to 1 MiB and accept replies of up to 16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;

/// How long [`serve`] waits for the calls in flight once `shutdown` completed.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the snapshots and content services on `listener` until `shutdown` completes,
/// then stops accepting calls and waits up to [`GRACE`] for the calls in flight; calls
/// still open then are cut (a cut write session keeps its ingest, resumable; nothing
/// committed is touched).
///
/// # Errors
/// `Io` when the server fails (an accept error it cannot recover from).
///
/// # Example
/// ```no_run
/// # async fn demo(sn: std::sync::Arc<dyn strata_snapshot::Snapshotter>) -> strata_content::Result<()> {
/// let store = strata_content::local::LocalStore::open("/var/lib/strata/content")?;
/// let listener = tokio::net::UnixListener::bind("/run/strata.sock").unwrap();
/// strata_grpc::serve(
///     listener,
///     strata_grpc::SnapshotsService::new(sn),
///     strata_grpc::ContentService::new(store),
///     async { tokio::signal::ctrl_c().await.ok(); },
/// )
/// .await
/// # }
/// ```
pub async fn serve(
    listener: UnixListener,
    snapshots: SnapshotsService,
    content: ContentService,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let snapshots = SnapshotsServer::new(snapshots)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let content = ContentServer::new(content)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(snapshots)
        .add_service(content)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            stopped.await.ok();
        });
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => return res.map_err(serve_error),
        () = shutdown => { let _ = stop.send(()); }
    }
    match tokio::time::timeout(GRACE, server).await {
        Ok(res) => res.map_err(serve_error),
        Err(_) => {
            tracing::warn!("calls still open {GRACE:?} after shutdown were cut");
            Ok(())
        }
    }
}

fn serve_error(e: tonic::transport::Error) -> Error {
    Error::new(
        strata_content::ErrorKind::Io,
        "serve gRPC on the unix socket",
    )
    .with_source(e)
}
