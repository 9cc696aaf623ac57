//! The `containerd.services.content.v1.Content` service over a namespaced content store.
//!
//! Every call is namespaced by the `containerd-namespace` header ([`crate::namespace`]);
//! [`Namespaces::store`] gives the store of that namespace. The bidirectional `Write`
//! stream lives in [`crate::write`].

use crate::api::services::content::v1 as api;
use crate::errors::to_status;
use crate::{convert, namespace, write};
use api::content_server::Content;
use futures::stream::{BoxStream, StreamExt};
use std::sync::Arc;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Digest, Error, MediaType, Result, Store, digest};
use tonic::{Request, Response, Status, Streaming};

/// The largest `data` of one `Read` response.
const READ_CHUNK: u64 = 1 << 20;

/// Content stores by namespace.
pub trait Namespaces: Send + Sync + 'static {
    /// The store of namespace `ns` (already validated as an identifier).
    fn store(&self, ns: &str) -> Arc<dyn Store>;
}

impl Namespaces for LocalStore {
    fn store(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(self.namespace(ns))
    }
}

/// The content service.
///
/// ```no_run
/// # fn demo() -> strata_content::Result<()> {
/// let store = strata_content::local::LocalStore::open("/var/lib/strata/content")?;
/// let svc = strata_grpc::ContentService::new(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ContentService {
    stores: Arc<dyn Namespaces>,
}

impl ContentService {
    /// A service over `stores` (for example a [`LocalStore`]).
    pub fn new(stores: impl Namespaces) -> Self {
        ContentService {
            stores: Arc::new(stores),
        }
    }

    /// The store of the namespace `req` names.
    fn store<T>(&self, req: &Request<T>) -> Result<Arc<dyn Store>, Status> {
        let ns = namespace::required(req.metadata()).map_err(to_status)?;
        Ok(self.stores.store(&ns))
    }
}

/// A descriptor naming only `digest`, which is all the store's readers look at.
fn by_digest(d: Digest) -> Descriptor {
    Descriptor::new(MediaType::Other(String::new()), 0, d)
}

fn parse_digest(s: &str) -> Result<Digest, Status> {
    digest::parse(s).map_err(to_status)
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(&self, req: Request<api::InfoRequest>) -> Reply<api::InfoResponse> {
        let store = self.store(&req)?;
        let d = parse_digest(&req.get_ref().digest)?;
        let info = store.info(&d).await.map_err(to_status)?;
        Ok(Response::new(api::InfoResponse {
            info: Some(convert::content_info(info)),
        }))
    }

    async fn update(&self, req: Request<api::UpdateRequest>) -> Reply<api::UpdateResponse> {
        let store = self.store(&req)?;
        let r = req.into_inner();
        let info = r.info.unwrap_or_default();
        let d = parse_digest(&info.digest)?;
        let paths = convert::field_paths(r.update_mask);
        let given = strata_content::Info::for_update(d, info.labels);
        let info = store.update(given, &paths).await.map_err(to_status)?;
        Ok(Response::new(api::UpdateResponse {
            info: Some(convert::content_info(info)),
        }))
    }

    type ListStream = BoxStream<'static, Result<api::ListContentResponse, Status>>;

    async fn list(&self, req: Request<api::ListContentRequest>) -> Reply<Self::ListStream> {
        let store = self.store(&req)?;
        let infos = store
            .walk(&req.get_ref().filters)
            .await
            .map_err(to_status)?;
        let to_msg = |c: Vec<strata_content::Info>| api::ListContentResponse {
            info: c.into_iter().map(convert::content_info).collect(),
        };
        Ok(Response::new(convert::batched(infos, to_msg)))
    }

    async fn delete(&self, req: Request<api::DeleteContentRequest>) -> Reply<()> {
        let store = self.store(&req)?;
        let d = parse_digest(&req.get_ref().digest)?;
        store.delete(&d).await.map_err(to_status)?;
        Ok(Response::new(()))
    }

    type ReadStream = BoxStream<'static, Result<api::ReadContentResponse, Status>>;

    async fn read(&self, req: Request<api::ReadContentRequest>) -> Reply<Self::ReadStream> {
        let store = self.store(&req)?;
        let r = req.into_inner();
        let d = parse_digest(&r.digest)?;
        let ra = store
            .reader_at(&by_digest(d.clone()))
            .await
            .map_err(to_status)?;
        let range = read_range(&d, ra.size(), r.offset, r.size).map_err(to_status)?;
        Ok(Response::new(read_stream(ra, range)))
    }

    async fn status(&self, req: Request<api::StatusRequest>) -> Reply<api::StatusResponse> {
        let store = self.store(&req)?;
        let st = store
            .status(&req.get_ref().r#ref)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::StatusResponse {
            status: Some(convert::content_status(st)),
        }))
    }

    async fn list_statuses(
        &self,
        req: Request<api::ListStatusesRequest>,
    ) -> Reply<api::ListStatusesResponse> {
        let store = self.store(&req)?;
        let sts = store
            .list_statuses(&req.get_ref().filters)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api::ListStatusesResponse {
            statuses: sts.into_iter().map(convert::content_status).collect(),
        }))
    }

    type WriteStream = BoxStream<'static, Result<api::WriteContentResponse, Status>>;

    async fn write(
        &self,
        req: Request<Streaming<api::WriteContentRequest>>,
    ) -> Reply<Self::WriteStream> {
        let store = self.store(&req)?;
        Ok(Response::new(write::session(store, req.into_inner())))
    }

    async fn abort(&self, req: Request<api::AbortRequest>) -> Reply<()> {
        let store = self.store(&req)?;
        store.abort(&req.get_ref().r#ref).await.map_err(to_status)?;
        Ok(Response::new(()))
    }
}

/// The byte range `[start, end)` a `Read` of `offset` and `size` (0: to the end) covers in
/// a blob of `len` bytes.
///
/// # Errors
/// `InvalidArgument` for a negative offset or size, or an offset past the end.
fn read_range(d: &Digest, len: u64, offset: i64, size: i64) -> Result<(u64, u64)> {
    let start = convert::non_negative(offset, "read offset")?;
    let size = convert::non_negative(size, "read size")?;
    if start > len {
        return Err(Error::invalid_argument(format!(
            "read of blob {d} at offset {start} is past its length {len}"
        )));
    }
    let end = if size == 0 {
        len
    } else {
        len.min(start.saturating_add(size))
    };
    Ok((start, end))
}

/// Streams `[start, end)` of `ra` in chunks of at most [`READ_CHUNK`] bytes, each read on the
/// blocking pool while the previous one is sent.
fn read_stream(
    ra: Arc<dyn strata_content::ReaderAt>,
    (start, end): (u64, u64),
) -> BoxStream<'static, Result<api::ReadContentResponse, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut offset = start;
        while offset < end {
            let want = (end - offset).min(READ_CHUNK) as usize;
            let ra = ra.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = ra.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let msg = match read {
                Ok(buf) if buf.is_empty() => break,
                Ok(buf) => {
                    let n = buf.len() as u64;
                    let msg = api::ReadContentResponse {
                        offset: convert::int64(offset),
                        data: buf.into(),
                    };
                    offset += n;
                    Ok(msg)
                }
                Err(e) => Err(to_status(Error::io(
                    format!("read blob at offset {offset}"),
                    e,
                ))),
            };
            let failed = msg.is_err();
            if tx.send(msg).await.is_err() || failed {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ranges_follow_offset_and_size() {
        let d = digest::sha256(b"x");
        assert_eq!(read_range(&d, 10, 0, 0).unwrap(), (0, 10));
        assert_eq!(read_range(&d, 10, 4, 3).unwrap(), (4, 7));
        assert_eq!(read_range(&d, 10, 4, 100).unwrap(), (4, 10));
        assert_eq!(read_range(&d, 10, 10, 0).unwrap(), (10, 10));
        assert!(read_range(&d, 10, 11, 0).unwrap_err().is_invalid_argument());
        assert!(read_range(&d, 10, -1, 0).unwrap_err().is_invalid_argument());
    }
}
