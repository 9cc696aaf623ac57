//! The services through a real tonic client over a unix socket in a temporary directory:
//! error codes as containerd's clients see them, the namespace header, a cut write stream,
//! reads with offset and size, and concurrent clients.

use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_content::digest::sha256;
use strata_grpc::api::services::content::v1::{
    self as capi, WriteAction, content_client::ContentClient,
};
use strata_grpc::api::services::snapshots::v1::{self as sapi, snapshots_client::SnapshotsClient};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A server on a socket in a temporary directory; stopped when dropped.
struct Server {
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<strata_content::Result<()>>>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sn = strata_snapshot::open("native", &dir.path().join("snapshots")).unwrap();
        let store = strata_content::local::LocalStore::open(dir.path().join("content")).unwrap();
        let (listener, file) =
            strata_grpc::socket::bind(&dir.path().join("s.sock"), 0o660).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _file = file;
            let shutdown = async {
                stopped.await.ok();
            };
            let svc = strata_grpc::SnapshotsService::new(sn);
            strata_grpc::serve(
                listener,
                svc,
                strata_grpc::ContentService::new(store),
                shutdown,
            )
            .await
        });
        Server {
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    async fn channel(&self) -> Channel {
        connect(self.sock()).await
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap()).await;
        res.expect("server stops within 10 s").unwrap().unwrap();
        assert!(!self.sock().exists(), "socket removed on exit");
    }
}

async fn connect(sock: PathBuf) -> Channel {
    strata_grpc::client::connect_unix(sock).await.unwrap()
}

/// `msg` in namespace `ns`; any header value, so that tests can send invalid ones.
fn ns<T>(ns: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    r
}

fn prepare(key: &str, parent: &str) -> sapi::PrepareSnapshotRequest {
    sapi::PrepareSnapshotRequest {
        snapshotter: "any".into(),
        key: key.into(),
        parent: parent.into(),
        ..Default::default()
    }
}

fn commit(name: &str, key: &str) -> sapi::CommitSnapshotRequest {
    sapi::CommitSnapshotRequest {
        snapshotter: "any".into(),
        name: name.into(),
        key: key.into(),
        ..Default::default()
    }
}

fn write_req(
    action: WriteAction,
    reference: &str,
    offset: i64,
    data: &[u8],
) -> capi::WriteContentRequest {
    capi::WriteContentRequest {
        action: action as i32,
        r#ref: reference.into(),
        offset,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

/// Writes `data` as a blob in one write session in namespace `n`.
async fn write_blob(
    ch: Channel,
    n: &str,
    reference: &str,
    data: &[u8],
) -> capi::WriteContentResponse {
    let mut c = ContentClient::new(ch);
    let mut commit = write_req(WriteAction::Commit, reference, 0, data);
    commit.expected = sha256(data).to_string();
    commit.total = data.len() as i64;
    commit
        .labels
        .insert("strata.test/by".into(), reference.into());
    let reqs = futures::stream::iter([write_req(WriteAction::Stat, reference, 0, b""), commit]);
    let mut replies = c.write(ns(n, reqs)).await.unwrap().into_inner();
    let stat = replies.next().await.unwrap().unwrap();
    assert_eq!(stat.offset, 0);
    replies.next().await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_errors_carry_containerds_codes_and_messages() {
    let server = Server::start().await;
    let mut c = SnapshotsClient::new(server.channel().await);
    let stat = sapi::StatSnapshotRequest {
        snapshotter: "any".into(),
        key: "missing".into(),
    };
    let e = c.stat(stat).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("missing") && e.message().ends_with(": not found"),
        "{}",
        e.message()
    );
    let mounts = c
        .prepare(prepare("a", ""))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(
        c.prepare(prepare("a", "")).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(
        c.prepare(prepare("b", "nope")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.prepare(prepare("b", "a")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    c.commit(commit("base", "a")).await.unwrap();
    let view = sapi::ViewSnapshotRequest {
        snapshotter: "x".into(),
        key: "v".into(),
        parent: "base".into(),
        ..Default::default()
    };
    c.view(view).await.unwrap();
    assert_eq!(
        c.commit(commit("c2", "v")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let rm = sapi::RemoveSnapshotRequest {
        snapshotter: "x".into(),
        key: "base".into(),
    };
    let e = c.remove(rm).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let back = strata_grpc::from_status(&e);
    assert!(back.is_failed_precondition() && !back.message().ends_with("failed precondition"));
    let upd = sapi::UpdateSnapshotRequest {
        snapshotter: "x".into(),
        info: Some(sapi::Info {
            name: "base".into(),
            labels: [("l".into(), "1".into())].into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["labels.l".into()],
        }),
    };
    let info = c.update(upd).await.unwrap().into_inner().info.unwrap();
    assert_eq!(info.labels.get("l").map(String::as_str), Some("1"));
    assert_eq!(info.kind, sapi::Kind::Committed as i32);
    let list = sapi::ListSnapshotsRequest {
        snapshotter: "x".into(),
        filters: vec!["kind==view".into()],
    };
    let listed: Vec<_> = c.list(list).await.unwrap().into_inner().collect().await;
    let names: Vec<_> = listed
        .into_iter()
        .flat_map(|r| r.unwrap().info)
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["v"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_needs_the_namespace_header() {
    let server = Server::start().await;
    let mut c = ContentClient::new(server.channel().await);
    let d = sha256(b"x").to_string();
    let e = c
        .info(capi::InfoRequest { digest: d.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "namespace is required: failed precondition");
    let e = c
        .info(ns("bad/ns", capi::InfoRequest { digest: d.clone() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Namespaces are isolated: a blob written in one is not found in another.
    let done = write_blob(server.channel().await, "one", "r1", b"x").await;
    assert_eq!(done.digest, d);
    let info = c
        .info(ns("one", capi::InfoRequest { digest: d.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.info
            .unwrap()
            .labels
            .get("strata.test/by")
            .map(String::as_str),
        Some("r1")
    );
    let e = c
        .info(ns("two", capi::InfoRequest { digest: d.clone() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_write_stream_leaves_a_resumable_ingest_and_no_blob() {
    let server = Server::start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data).to_string();
    // A client that dies mid-stream: its runtime, connection and streams are dropped
    // while the session is open, so the server sees the connection cut.
    let (sock, want) = (server.sock(), d.clone());
    let first_part = data[..100_000].to_vec();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(start_and_abandon(sock, want, first_part));
    })
    .join()
    .unwrap();
    let mut c = ContentClient::new(server.channel().await);
    let status = wait_for_offset(&mut c, "cut", 100_000).await;
    assert_eq!(status.expected, d);
    let e = c
        .info(ns("n", capi::InfoRequest { digest: d.clone() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "no partial blob is visible");
    // Resume: a new session starts at the kept offset; a write at another offset is refused.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(write_req(WriteAction::Stat, "cut", 0, b""))
        .await
        .unwrap();
    let mut replies = c
        .write(ns("n", tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.next().await.unwrap().unwrap().offset, 100_000);
    tx.send(write_req(
        WriteAction::Write,
        "cut",
        100_000,
        &data[100_000..200_000],
    ))
    .await
    .unwrap();
    assert_eq!(replies.next().await.unwrap().unwrap().offset, 200_000);
    let mut fin = write_req(WriteAction::Commit, "cut", 200_000, &data[200_000..]);
    fin.expected = d.clone();
    fin.total = data.len() as i64;
    tx.send(fin).await.unwrap();
    let done = replies.next().await.unwrap().unwrap();
    assert_eq!(
        (done.offset, done.digest.as_str()),
        (data.len() as i64, d.as_str())
    );
    let read = capi::ReadContentRequest {
        digest: d.clone(),
        offset: 299_000,
        size: 0,
    };
    let parts: Vec<_> = c
        .read(ns("n", read))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    let tail: Vec<u8> = parts.into_iter().flat_map(|p| p.unwrap().data).collect();
    assert_eq!(tail, &data[299_000..]);
    let e = c
        .status(ns(
            "n",
            capi::StatusRequest {
                r#ref: "cut".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the ingest is gone after commit");
    server.shutdown().await;
}

/// Opens a write session expecting `d`, writes `part` and returns with the session open.
async fn start_and_abandon(sock: PathBuf, d: String, part: Vec<u8>) {
    let mut c = ContentClient::new(connect(sock).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut first = write_req(WriteAction::Stat, "cut", 0, b"");
    first.expected = d;
    tx.send(first).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut replies = c.write(ns("n", stream)).await.unwrap().into_inner();
    replies.next().await.unwrap().unwrap();
    tx.send(write_req(WriteAction::Write, "cut", 0, &part))
        .await
        .unwrap();
    assert_eq!(
        replies.next().await.unwrap().unwrap().offset,
        part.len() as i64
    );
    std::mem::forget(tx);
}

/// Polls the ingest's status until the cut session released it at `offset`.
async fn wait_for_offset(
    c: &mut ContentClient<Channel>,
    reference: &str,
    offset: i64,
) -> capi::Status {
    for _ in 0..200 {
        let req = ns(
            "n",
            capi::StatusRequest {
                r#ref: reference.into(),
            },
        );
        if let Ok(r) = c.status(req).await {
            let st = r.into_inner().status.unwrap();
            if st.offset == offset && lock_released(c, reference).await {
                return st;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("ingest {reference} never reached offset {offset} with its writer released");
}

/// Whether a new session can take the ingest (the old one closed its writer).
async fn lock_released(c: &mut ContentClient<Channel>, reference: &str) -> bool {
    let reqs = futures::stream::iter([write_req(WriteAction::Stat, reference, 0, b"")]);
    let Ok(r) = c.write(ns("n", reqs)).await else {
        return false;
    };
    // Reading to the end waits for the session to release the ingest again.
    let replies: Vec<_> = r.into_inner().collect().await;
    !replies.is_empty() && replies.iter().all(Result::is_ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once() {
    let server = Server::start().await;
    let sock = server.sock();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let sock = sock.clone();
            tokio::spawn(async move { client_work(&sock, i).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = ContentClient::new(server.channel().await);
    let listed: Vec<_> = c
        .list(ns("shared", capi::ListContentRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(listed.into_iter().flat_map(|r| r.unwrap().info).count(), 16);
    let mut s = SnapshotsClient::new(server.channel().await);
    let list = sapi::ListSnapshotsRequest {
        snapshotter: "x".into(),
        filters: vec!["kind==committed".into()],
    };
    let listed: Vec<_> = s.list(list).await.unwrap().into_inner().collect().await;
    assert_eq!(listed.into_iter().flat_map(|r| r.unwrap().info).count(), 16);
    server.shutdown().await;
}

/// One client: its own connection, a blob and a snapshot of its own.
async fn client_work(sock: &Path, i: u32) {
    let ch = connect(sock.to_owned()).await;
    let data = format!("blob number {i}").into_bytes();
    let done = write_blob(ch.clone(), "shared", &format!("ref-{i}"), &data).await;
    assert_eq!(done.digest, sha256(&data).to_string());
    let mut s = SnapshotsClient::new(ch);
    s.prepare(prepare(&format!("k{i}"), "")).await.unwrap();
    s.commit(commit(&format!("c{i}"), &format!("k{i}")))
        .await
        .unwrap();
    let u = sapi::UsageRequest {
        snapshotter: "x".into(),
        key: format!("c{i}"),
    };
    assert!(s.usage(u).await.unwrap().into_inner().inodes >= 1);
}
