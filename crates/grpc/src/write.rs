//! One `Write` session of the content service: a bidirectional stream of stat, write and
//! commit actions on one ingest, with containerd's rules.
//!
//! - The first message names the ingest (`ref`) and may carry the expected digest and
//!   total; the session holds the ingest's writer (and so its lock) until it ends.
//! - Every reply carries the ingest's offset. A write or commit with a non-zero `offset`
//!   must be at the current offset (`OutOfRange` otherwise); offset 0 on a non-empty ingest
//!   restarts it.
//! - An `expected` digest that is already committed ends the session with `AlreadyExists`
//!   and removes the ingest.
//! - `commit` checks total and digest and publishes the blob with the message's labels.
//! - A stream that ends or is cut before a commit closes the writer, keeping the ingest's
//!   bytes on disk: a later session with the same ref resumes at its offset, and no partial
//!   blob is ever visible.

use crate::api::services::content::v1::{self as api, WriteAction};
use crate::convert;
use crate::errors::to_status;
use futures::stream::{BoxStream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use strata_content::{Digest, Error, Result, Store, Writer, WriterOpts, digest};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

type Sender = mpsc::Sender<Result<api::WriteContentResponse, Status>>;

/// Runs a write session over `requests` against `store` on a task of its own; the
/// returned stream yields its replies and, on failure, one error status.
pub fn session(
    store: Arc<dyn Store>,
    requests: Streaming<api::WriteContentRequest>,
) -> BoxStream<'static, Result<api::WriteContentResponse, Status>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(status) = run(store, requests, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// The session state: the writer (until committed) and what the client expects.
struct Session {
    store: Arc<dyn Store>,
    reference: String,
    writer: Option<Box<dyn Writer>>,
    total: u64,
    expected: Option<Digest>,
}

async fn run(
    store: Arc<dyn Store>,
    mut requests: Streaming<api::WriteContentRequest>,
    tx: &Sender,
) -> Result<(), Status> {
    let Some(mut req) = requests.message().await? else {
        return Ok(());
    };
    let mut s = Session::open(store, &req).await.map_err(to_status)?;
    loop {
        let commit = req.action == WriteAction::Commit as i32;
        let reply = match s.handle(req).await {
            Ok(reply) => reply,
            Err(status) => {
                s.close().await;
                return Err(status);
            }
        };
        if tx.send(Ok(reply)).await.is_err() || commit {
            break;
        }
        req = match requests.message().await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
    }
    s.close().await;
    Ok(())
}

impl Session {
    /// Opens (or resumes) the ingest the first message names.
    async fn open(store: Arc<dyn Store>, first: &api::WriteContentRequest) -> Result<Session> {
        if first.r#ref.is_empty() {
            return Err(Error::invalid_argument(
                "write: first message must have a reference",
            ));
        }
        let expected = parse_expected(&first.expected)?;
        let total = convert::non_negative(first.total, "write total")?;
        let opts = WriterOpts {
            reference: first.r#ref.clone(),
            expected: expected.clone(),
            total: (total > 0).then_some(total),
        };
        let writer = open_writer(&*store, opts).await?;
        Ok(Session {
            store,
            reference: first.r#ref.clone(),
            writer: Some(writer),
            total,
            expected,
        })
    }

    fn writer(&mut self) -> Result<&mut Box<dyn Writer>, Status> {
        self.writer.as_mut().ok_or_else(|| {
            to_status(Error::failed_precondition(format!(
                "write ingest ref {}: already committed",
                self.reference
            )))
        })
    }

    /// Handles one message and builds its reply.
    async fn handle(
        &mut self,
        req: api::WriteContentRequest,
    ) -> Result<api::WriteContentResponse, Status> {
        let ws = self.writer()?.status().await.map_err(to_status)?;
        if let Some(d) = parse_expected(&req.expected).map_err(to_status)? {
            self.refuse_if_committed(&d).await?;
            self.expected = Some(d);
        }
        if req.total > 0 {
            self.total = req.total as u64;
        }
        let mut reply = api::WriteContentResponse {
            action: req.action,
            offset: convert::int64(ws.offset),
            ..Default::default()
        };
        match WriteAction::try_from(req.action) {
            Ok(WriteAction::Stat) => {
                reply.digest = self.writer()?.digest().to_string();
                reply.started_at = Some(convert::timestamp(ws.started_at));
                reply.updated_at = Some(convert::timestamp(ws.updated_at));
                reply.total = convert::int64(self.total);
            }
            Ok(action @ (WriteAction::Write | WriteAction::Commit)) => {
                reply.offset = self.write(&req, ws.offset).await?;
                reply.digest = self.writer()?.digest().to_string();
                if action == WriteAction::Commit {
                    self.commit(req.labels).await?;
                }
            }
            Err(_) => {
                return Err(to_status(Error::invalid_argument(format!(
                    "write ingest ref {}: unknown action {}",
                    self.reference, req.action
                ))));
            }
        }
        Ok(reply)
    }

    /// Ends the session with `AlreadyExists` (removing the ingest) when `d` is committed.
    async fn refuse_if_committed(&mut self, d: &Digest) -> Result<(), Status> {
        if self.store.info(d).await.is_err() {
            return Ok(());
        }
        self.close().await;
        if let Err(e) = self.store.abort(&self.reference).await {
            tracing::debug!("abort ingest {} after AlreadyExists: {e}", self.reference);
        }
        Err(to_status(Error::already_exists(format!(
            "blob with expected digest {d} exists"
        ))))
    }

    /// Writes `req.data` at `offset` (the ingest's current one); returns the new offset.
    async fn write(&mut self, req: &api::WriteContentRequest, offset: u64) -> Result<i64, Status> {
        let at = convert::non_negative(req.offset, "write offset").map_err(to_status)?;
        let mut new_offset = offset;
        if at > 0 && at != offset {
            return Err(Status::out_of_range(format!(
                "write @{at} must occur at current offset {offset} of ingest ref {}",
                self.reference
            )));
        }
        let w = self.writer()?;
        if at == 0 && offset > 0 {
            w.truncate(0).await.map_err(to_status)?;
            new_offset = 0;
        }
        if !req.data.is_empty() {
            w.write(&req.data).await.map_err(to_status)?;
            new_offset += req.data.len() as u64;
        }
        Ok(convert::int64(new_offset))
    }

    async fn commit(&mut self, labels: strata_content::Labels) -> Result<(), Status> {
        let w = self
            .writer
            .take()
            .expect("writer present: checked by handle");
        w.commit(self.total, self.expected.clone(), labels)
            .await
            .map_err(to_status)
    }

    /// Releases the writer, keeping the ingest's bytes for a later session.
    async fn close(&mut self) {
        if let Some(w) = self.writer.take()
            && let Err(e) = w.close().await
        {
            tracing::warn!("close ingest ref {}: {e}", self.reference);
        }
    }
}

/// How long a session waits for an ingest that another session is releasing.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Opens the writer, waiting up to [`LOCK_WAIT`] while the ingest is locked: a client
/// that closes a session and at once resumes the ref (containerd's proxy writer does)
/// must not race the old session's release.
async fn open_writer(store: &dyn Store, opts: WriterOpts) -> Result<Box<dyn Writer>> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match store.writer(opts.clone()).await {
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            res => return res,
        }
    }
}

fn parse_expected(s: &str) -> Result<Option<Digest>> {
    if s.is_empty() {
        return Ok(None);
    }
    digest::parse(s).map(Some)
}
