//! A tonic channel to a server on a unix socket, for Rust clients of [`crate::serve`]
//! (tests, benchmarks, tools) and for requests in a namespace.

use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use strata_content::{Error, Result};
use tonic::Request;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects to the gRPC server listening on the unix socket `path`. gRPC's `:authority`
/// is `localhost`, as containerd's clients send it for unix sockets.
///
/// # Errors
/// `Io` naming the socket when the connection fails.
///
/// # Example
/// ```no_run
/// # async fn demo() -> strata_content::Result<()> {
/// use strata_grpc::api::services::snapshots::v1::snapshots_client::SnapshotsClient;
/// let ch = strata_grpc::client::connect_unix("/run/strata.sock").await?;
/// let mut snapshots = SnapshotsClient::new(ch);
/// # Ok(()) }
/// ```
pub async fn connect_unix(path: impl Into<PathBuf>) -> Result<Channel> {
    let path = path.into();
    let shown = path.display().to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let p = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
    });
    Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            Error::new(
                strata_content::ErrorKind::Io,
                format!("connect to gRPC socket {shown}"),
            )
            .with_source(e)
        })
}

/// `msg` as a request in containerd namespace `ns` (the `containerd-namespace` header).
///
/// # Errors
/// `InvalidArgument` when `ns` is not a containerd identifier.
///
/// ```
/// let r = strata_grpc::client::in_namespace("default", ()).unwrap();
/// assert_eq!(r.metadata().get("containerd-namespace").unwrap(), "default");
/// assert!(strata_grpc::client::in_namespace("a/b", ()).is_err());
/// ```
pub fn in_namespace<T>(ns: &str, msg: T) -> Result<Request<T>> {
    crate::namespace::validate(ns)?;
    let mut r = Request::new(msg);
    let value = ns
        .parse()
        .map_err(|_| Error::invalid_argument(format!("namespace {ns:?} is not a header value")))?;
    r.metadata_mut().insert(crate::namespace::HEADER, value);
    Ok(r)
}
