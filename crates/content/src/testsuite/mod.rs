//! The content store conformance suite: containerd's `core/content/testsuite`, case by
//! case, for any [`Store`] backend.
//!
//! A backend test provides a factory that makes a fresh, empty [`Subject`] per case and
//! runs [`run_all`], or one `#[tokio::test]` per case calling the case function
//! directly. Cases panic (with a message naming what differed) on failure, as tests do.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use strata_content::{local::LocalStore, testsuite::{self, Subject}};
//! testsuite::run_all(|| async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = LocalStore::open(dir.path()).unwrap();
//!     Subject {
//!         store: Arc::new(store.clone()),
//!         other_namespace: Some(Arc::new(store.namespace("other"))),
//!         guard: Box::new(dir),
//!     }
//! })
//! .await;
//! # }
//! ```
//!
//! Multi-process properties (a writer killed with SIGKILL, two processes on one root)
//! are backend specific and tested beside the backend (`tests/local_*.rs`).

mod resume;

pub use resume::{
    resume_copy, resume_copy_reader_at, resume_copy_seeker, resume_discard, resume_truncate,
};

use crate::digest::{Digest, sha256};
use crate::helpers;
use crate::labels::{GC_ROOT, Labels};
use crate::store::{Info, Status, Store, Writer, WriterOpts};
use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// One store under test.
pub struct Subject {
    /// The store, in its first namespace.
    pub store: Arc<dyn Store>,
    /// The same backing store seen from a second namespace, for the cross-namespace
    /// cases (shared content policy); `None` skips them.
    pub other_namespace: Option<Arc<dyn Store>>,
    /// Kept alive until the case ends (for example the temporary directory).
    pub guard: Box<dyn Any + Send + Sync>,
}

/// The names of all cases, in containerd's order.
pub const CASES: &[&str] = &[
    "Writer",
    "UpdateStatus",
    "CommitExists",
    "Resume",
    "ResumeTruncate",
    "ResumeDiscard",
    "ResumeCopy",
    "ResumeCopySeeker",
    "ResumeCopyReaderAt",
    "SmallBlob",
    "Labels",
    "CommitErrorState",
    "CrossNamespaceShare",
    "CrossNamespaceAppend",
];

/// Runs every case in [`CASES`], each on a fresh subject from `factory`.
///
/// # Panics
/// When a case fails.
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Subject>,
{
    for name in CASES {
        run_case(name, factory().await).await;
    }
}

/// Runs the case called `name` (one of [`CASES`]) on `s`.
///
/// # Panics
/// When the case fails or `name` is unknown.
pub async fn run_case(name: &str, s: Subject) {
    match name {
        "Writer" => writer(&s).await,
        "UpdateStatus" => update_status(&s).await,
        "CommitExists" => commit_exists(&s).await,
        "Resume" => resume(&s).await,
        "ResumeTruncate" => resume_truncate(&s).await,
        "ResumeDiscard" => resume_discard(&s).await,
        "ResumeCopy" => resume_copy(&s).await,
        "ResumeCopySeeker" => resume_copy_seeker(&s).await,
        "ResumeCopyReaderAt" => resume_copy_reader_at(&s).await,
        "SmallBlob" => small_blob(&s).await,
        "Labels" => labels(&s).await,
        "CommitErrorState" => commit_error_state(&s).await,
        "CrossNamespaceShare" => cross_namespace_share(&s).await,
        "CrossNamespaceAppend" => cross_namespace_append(&s).await,
        other => panic!("unknown content suite case {other:?}"),
    }
}

static SEED: AtomicU64 = AtomicU64::new(1);

/// Deterministic pseudo-random content of `size` bytes (a new sequence per call) and
/// its digest.
pub fn create_content(size: usize) -> (Vec<u8>, Digest) {
    let mut x = SEED
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(size);
    let d = sha256(&out);
    (out, d)
}

/// A descriptor with `digest` and `size` (a layer media type; the store ignores it).
pub fn descriptor(digest: &Digest, size: u64) -> Descriptor {
    DescriptorBuilder::default()
        .media_type(MediaType::ImageLayer)
        .digest(digest.clone())
        .size(size)
        .build()
        .expect("valid descriptor")
}

fn gc_labels() -> Labels {
    let mut l = Labels::new();
    l.insert(
        GC_ROOT.to_string(),
        humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    );
    l
}

fn opts(reference: &str, size: Option<u64>, digest: Option<&Digest>) -> WriterOpts {
    WriterOpts {
        reference: reference.to_string(),
        expected: digest.cloned(),
        total: size,
    }
}

async fn open(store: &dyn Store, o: WriterOpts) -> Box<dyn Writer> {
    let r = o.reference.clone();
    helpers::open_writer(store, o)
        .await
        .unwrap_or_else(|e| panic!("open writer {r}: {e}"))
}

/// Writes `data` in `chunk`-byte writes.
async fn write_chunked(w: &mut dyn Writer, data: &[u8], chunk: usize) {
    for c in data.chunks(chunk) {
        w.write(c).await.expect("write");
    }
}

fn between(what: &str, t: SystemTime, lo: SystemTime, hi: SystemTime) {
    assert!(
        t >= lo && t <= hi,
        "unexpected {what} {}, expected between {} and {}",
        humantime::format_rfc3339_nanos(t),
        humantime::format_rfc3339_nanos(lo),
        humantime::format_rfc3339_nanos(hi)
    );
}

#[allow(clippy::too_many_arguments)]
async fn check_status(
    w: &dyn Writer,
    reference: &str,
    offset: u64,
    total: u64,
    digest: &Digest,
    pre_start: SystemTime,
    post_start: SystemTime,
    pre_update: SystemTime,
    post_update: SystemTime,
) -> Status {
    let st = w.status().await.expect("writer status");
    assert_eq!(&w.digest(), digest, "writer digest");
    assert_eq!(st.reference, reference, "status ref");
    assert_eq!(st.offset, offset, "status offset of {reference}");
    assert_eq!(st.total, total, "status total of {reference}");
    between("started at", st.started_at, pre_start, post_start);
    between("updated at", st.updated_at, pre_update, post_update);
    st
}

#[allow(clippy::too_many_arguments)]
async fn check_info(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    labels: &Labels,
    c1: SystemTime,
    c2: SystemTime,
    u1: SystemTime,
    u2: SystemTime,
) -> Info {
    let info = store
        .info(digest)
        .await
        .unwrap_or_else(|e| panic!("info {digest}: {e}"));
    assert_eq!(&info.digest, digest, "info digest");
    assert_eq!(info.size, size, "info size of {digest}");
    between("created at", info.created_at, c1, c2);
    between("updated at", info.updated_at, u1, u2);
    assert_eq!(&info.labels, labels, "labels of {digest}");
    info
}

#[allow(clippy::too_many_arguments)]
async fn check_content(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    c1: SystemTime,
    c2: SystemTime,
    u1: SystemTime,
    u2: SystemTime,
) {
    check_info(store, digest, size, &Labels::new(), c1, c2, u1, u2).await;
    let b = helpers::read_blob(store, &descriptor(digest, 0))
        .await
        .unwrap_or_else(|e| panic!("read blob {digest}: {e}"));
    assert_eq!(b.len() as u64, size, "blob size of {digest}");
    assert_eq!(&sha256(&b), digest, "blob digest");
}

/// `Writer`: writers opened four ways (no descriptor, size only, digest only, both) and
/// a 32 MiB blob, each written in 32-byte writes and committed with no checks; the
/// digest, size, labels and times of each blob are checked.
pub async fn writer(s: &Subject) {
    let cs = &*s.store;
    let (c1, d1) = create_content(256);
    let (c2, d2) = create_content(256);
    let (c3, d3) = create_content(256);
    let (c4, d4) = create_content(256);
    let (c5, d5) = create_content(16 << 21);
    let cases = [
        (c1, d1.clone(), opts("c1", None, None)),
        (c2, d2, opts("c2", Some(256), None)),
        (c3, d3.clone(), opts("c3", None, Some(&d3))),
        (c4, d4.clone(), opts("c4", Some(256), Some(&d4))),
        (
            c5.clone(),
            d5.clone(),
            opts("c5", Some(c5.len() as u64), Some(&d5)),
        ),
    ];
    let labels = gc_labels();
    for (content, digest, o) in cases {
        let mut w = open(cs, o).await;
        write_chunked(&mut *w, &content, 32).await;
        assert_eq!(w.digest(), digest, "digest before commit");
        let pre = SystemTime::now();
        w.commit(0, None, labels.clone())
            .await
            .unwrap_or_else(|e| panic!("commit {digest}: {e}"));
        let post = SystemTime::now();
        check_info(
            cs,
            &digest,
            content.len() as u64,
            &labels,
            pre,
            post,
            pre,
            post,
        )
        .await;
    }
}

/// `UpdateStatus`: status after writes of 0, 64, 192 and 256 bytes: ref, offset,
/// total, digest of the prefix; started-at fixed, updated-at advancing.
pub async fn update_status(s: &Subject) {
    let cs = &*s.store;
    let (c1, d1) = create_content(256);
    let pre_start = SystemTime::now();
    let mut w = open(cs, opts("c1", Some(256), Some(&d1))).await;
    let post_start = SystemTime::now();
    let st = check_status(
        &*w,
        "c1",
        0,
        256,
        &sha256(b""),
        pre_start,
        post_start,
        pre_start,
        post_start,
    )
    .await;
    assert_eq!(st.expected.as_ref(), Some(&d1), "status expected digest");
    for (from, to) in [(0usize, 64usize), (64, 192), (192, 256)] {
        let pre = SystemTime::now();
        w.write(&c1[from..to]).await.expect("write");
        let post = SystemTime::now();
        check_status(
            &*w,
            "c1",
            to as u64,
            256,
            &sha256(&c1[..to]),
            pre_start,
            post_start,
            pre,
            post,
        )
        .await;
    }
    let labels = gc_labels();
    let pre = SystemTime::now();
    w.commit(0, None, labels.clone()).await.expect("commit");
    let post = SystemTime::now();
    check_info(cs, &d1, 256, &labels, pre, post, pre, post).await;
}

/// `CommitExists`: after `write_blob`, a writer committing the same bytes gets
/// `AlreadyExists`, with and without the expected digest.
pub async fn commit_exists(s: &Subject) {
    let cs = &*s.store;
    let (c1, d1) = create_content(256);
    helpers::write_blob(cs, "c1", &c1[..], &descriptor(&d1, 0), Labels::new())
        .await
        .expect("write blob");
    for (i, expected) in [Some(d1.clone()), None].into_iter().enumerate() {
        let mut w = open(cs, opts(&format!("c1-commitexists-{i}"), None, None)).await;
        w.write(&c1).await.expect("write");
        let e = w
            .commit(c1.len() as u64, expected, Labels::new())
            .await
            .expect_err("commit of existing content must fail");
        assert!(e.is_already_exists(), "({i}) unexpected error: {e}");
    }
}

/// `Resume`: write half, close, reopen: the status is identical (offset, total,
/// digest, times); write the rest and commit.
pub async fn resume(s: &Subject) {
    let cs = &*s.store;
    let (cb, dgst) = create_content(256);
    let (first, second) = cb.split_at(128);
    let pre_start = SystemTime::now();
    let mut w1 = open(cs, opts("cb", Some(256), Some(&dgst))).await;
    let post_start = SystemTime::now();
    let pre_update = post_start;
    w1.write(first).await.expect("write first half");
    let post_update = SystemTime::now();
    let d_first = sha256(first);
    let st1 = check_status(
        &*w1,
        "cb",
        128,
        256,
        &d_first,
        pre_start,
        post_start,
        pre_update,
        post_update,
    )
    .await;
    w1.close().await.expect("close first writer");

    let mut w2 = open(cs, opts("cb", Some(256), Some(&dgst))).await;
    let st2 = check_status(
        &*w2,
        "cb",
        128,
        256,
        &d_first,
        pre_start,
        post_start,
        pre_update,
        post_update,
    )
    .await;
    assert_eq!(st1, st2, "status after reopen");
    let pre_update = SystemTime::now();
    w2.write(second).await.expect("write second half");
    let post_update = SystemTime::now();
    check_status(
        &*w2,
        "cb",
        256,
        256,
        &dgst,
        pre_start,
        post_start,
        pre_update,
        post_update,
    )
    .await;
    let pre = SystemTime::now();
    w2.commit(0, None, Labels::new()).await.expect("commit");
    let post = SystemTime::now();
    check_info(cs, &dgst, 256, &Labels::new(), pre, post, pre, post).await;
}

/// `SmallBlob`: a 6-byte blob; reading `size + 1` bytes at offset 0 returns exactly 6.
pub async fn small_blob(s: &Subject) {
    let cs = &*s.store;
    let blob = b"foobar";
    let d = sha256(blob);
    let mut w = cs
        .writer(opts("SmallBlob", Some(6), Some(&d)))
        .await
        .expect("writer");
    w.write(blob).await.expect("write");
    w.commit(6, Some(d.clone()), Labels::new())
        .await
        .expect("commit");
    let ra = cs.reader_at(&descriptor(&d, 0)).await.expect("reader_at");
    assert_eq!(ra.size(), 6);
    let mut buf = vec![0u8; 7];
    let mut got = 0;
    loop {
        let n = ra.read_at(&mut buf[got..], got as u64).expect("read_at");
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, 6, "bytes read with a 7-byte window");
    assert_eq!(sha256(&buf[..got]), d);
    assert_eq!(ra.read_at(&mut buf, 6).expect("read at end"), 0);
}

/// `Labels`: commit with labels; `update` with no field paths replaces them all;
/// `update` with `labels.k3`, `labels.k1` changes only those (an absent key is deleted);
/// updated-at moves, created-at stays.
pub async fn labels(s: &Subject) {
    let cs = &*s.store;
    let (c1, d1) = create_content(256);
    let mut w = open(cs, opts("c1-checklabels", Some(256), Some(&d1))).await;
    w.write(&c1).await.expect("write");
    let root_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut labels: Labels = [("k1", "v1"), ("k2", "v2"), (GC_ROOT, root_time.as_str())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pre_commit = SystemTime::now();
    w.commit(0, None, labels.clone()).await.expect("commit");
    let post_commit = SystemTime::now();
    check_info(
        cs,
        &d1,
        256,
        &labels,
        pre_commit,
        post_commit,
        pre_commit,
        post_commit,
    )
    .await;

    labels.insert("k1".into(), "newvalue".into());
    labels.remove("k2");
    labels.insert("k3".into(), "v3".into());
    let pre = SystemTime::now();
    let got = cs
        .update(Info::for_update(d1.clone(), labels.clone()), &[])
        .await
        .expect("update");
    let post = SystemTime::now();
    assert_eq!(got.labels, labels, "labels returned by update");
    check_info(cs, &d1, 256, &labels, pre_commit, post_commit, pre, post).await;

    let partial: Labels = [("k1", "v1"), (GC_ROOT, root_time.as_str())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pre = SystemTime::now();
    cs.update(
        Info::for_update(d1.clone(), partial.clone()),
        &["labels.k3".to_string(), "labels.k1".to_string()],
    )
    .await
    .expect("update with field paths");
    let post = SystemTime::now();
    check_info(cs, &d1, 256, &partial, pre_commit, post_commit, pre, post).await;

    let e = cs
        .update(
            Info::for_update(d1.clone(), Labels::new()),
            &["size".into()],
        )
        .await
        .expect_err("update of a non-label field");
    assert!(e.is_invalid_argument(), "{e}");
    let mut big = Labels::new();
    big.insert("k".into(), "x".repeat(4096));
    let e = cs
        .update(Info::for_update(d1.clone(), big), &[])
        .await
        .expect_err("label over 4096 bytes");
    assert!(e.is_invalid_argument(), "{e}");
}

async fn check_ref_not_available(cs: &dyn Store, reference: &str) {
    match cs.writer(WriterOpts::new(reference)).await {
        Ok(_) => panic!("writer created with ref {reference}, expected it to be in use"),
        Err(e) => assert!(e.is_unavailable(), "expected unavailable, got {e}"),
    }
}

/// `CommitErrorState`: the lock and error state machine of one ref: `Unavailable` while
/// open; `AlreadyExists` for existing content (with and without digest); wrong digest
/// or size is `FailedPrecondition` and the bytes survive (a reopen commits them without
/// rewriting); after a commit the ref starts fresh; `truncate(0)` + `close` frees it.
pub async fn commit_error_state(s: &Subject) {
    let cs = &*s.store;
    let (c1, d1) = create_content(256);
    let (_, d2) = create_content(256);
    helpers::write_blob(cs, "c1", &c1[..], &descriptor(&d1, 0), Labels::new())
        .await
        .expect("write blob");
    let r = "c1-commiterror-state";
    let n1 = c1.len() as u64;

    let mut w = open(cs, WriterOpts::new(r)).await;
    w.write(&c1).await.expect("write");
    check_ref_not_available(cs, r).await;
    let e = w
        .commit(n1, Some(d1.clone()), Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_already_exists(), "commit existing: {e}");

    let mut w = open(cs, WriterOpts::new(r)).await;
    check_ref_not_available(cs, r).await;
    w.write(&c1).await.expect("write");
    let e = w.commit(n1, None, Labels::new()).await.unwrap_err();
    assert!(e.is_already_exists(), "commit existing without digest: {e}");

    let mut w = open(cs, WriterOpts::new(r)).await;
    check_ref_not_available(cs, r).await;
    let mut more = c1.clone();
    more.extend_from_slice(b"more");
    w.write(&more).await.expect("write");
    let e = w
        .commit(n1 + 4, Some(d2.clone()), Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_failed_precondition(), "wrong digest: {e}");
    assert!(
        e.to_string().contains(&d2.to_string()),
        "the error names the expected digest: {e}"
    );

    let w = open(cs, WriterOpts::new(r)).await;
    check_ref_not_available(cs, r).await;
    assert_eq!(
        w.status().await.expect("status").offset,
        n1 + 4,
        "bytes kept"
    );
    let e = w.commit(n1, None, Labels::new()).await.unwrap_err();
    assert!(e.is_failed_precondition(), "wrong size: {e}");

    let w = open(cs, WriterOpts::new(r)).await;
    check_ref_not_available(cs, r).await;
    w.commit(n1 + 4, None, Labels::new())
        .await
        .expect("commit of the surviving bytes");
    assert_eq!(
        cs.info(&sha256(&more)).await.expect("info").size,
        n1 + 4,
        "committed without rewriting"
    );

    let mut w = open(cs, WriterOpts::new(r)).await;
    assert_eq!(
        w.status().await.expect("status").offset,
        0,
        "fresh after commit"
    );
    w.write(&c1).await.expect("write");
    check_ref_not_available(cs, r).await;
    let e = w
        .commit(n1, Some(d1.clone()), Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_already_exists(), "{e}");

    let mut w = open(cs, WriterOpts::new(r)).await;
    check_ref_not_available(cs, r).await;
    w.truncate(0).await.expect("truncate");
    w.close().await.expect("close");

    let mut w = open(cs, WriterOpts::new(r)).await;
    w.truncate(0).await.expect("truncate");
    w.close().await.expect("close");
}

fn other_ns(s: &Subject, case: &str) -> Option<Arc<dyn Store>> {
    if s.other_namespace.is_none() {
        eprintln!("content suite: {case} skipped: no second namespace");
    }
    s.other_namespace.clone()
}

/// `CrossNamespaceShare` (shared policy): a blob in namespace 1; a writer in namespace 2
/// for the same digest starts at offset == total == size; its commit links the blob and
/// both namespaces read it.
pub async fn cross_namespace_share(s: &Subject) {
    let Some(cs2) = other_ns(s, "CrossNamespaceShare") else {
        return;
    };
    let cs = &*s.store;
    let size = 1000u64;
    let (b, d) = create_content(size as usize);
    let r = format!("ref-{size}");
    let t1 = SystemTime::now();
    helpers::write_blob(cs, &r, &b[..], &descriptor(&d, size), Labels::new())
        .await
        .expect("write blob");
    let w = open(&*cs2, opts(&r, Some(size), Some(&d))).await;
    let t2 = SystemTime::now();
    check_status(&*w, &r, size, size, &d, t1, t2, t1, t2).await;
    w.commit(size, Some(d.clone()), Labels::new())
        .await
        .expect("commit in namespace 2");
    let t3 = SystemTime::now();
    check_content(cs, &d, size, t1, t3, t1, t3).await;
    check_content(&*cs2, &d, size, t1, t3, t1, t3).await;
}

/// `CrossNamespaceAppend` (shared policy): the same pre-filled writer in namespace 2;
/// bytes are appended and committed as a new digest: the old digest stays in
/// namespace 1, the new one is in namespace 2.
pub async fn cross_namespace_append(s: &Subject) {
    let Some(cs2) = other_ns(s, "CrossNamespaceAppend") else {
        return;
    };
    let cs = &*s.store;
    let size = 1000u64;
    let (b, d) = create_content(size as usize);
    let r = format!("ref-{size}");
    let t1 = SystemTime::now();
    helpers::write_blob(cs, &r, &b[..], &descriptor(&d, size), Labels::new())
        .await
        .expect("write blob");
    let extra = b"appended bytes";
    let mut b2 = b.clone();
    b2.extend_from_slice(extra);
    let size2 = b2.len() as u64;
    let d2 = sha256(&b2);
    let mut w = open(&*cs2, opts(&r, Some(size), Some(&d))).await;
    let t2 = SystemTime::now();
    check_status(&*w, &r, size, size, &d, t1, t2, t1, t2).await;
    w.write(extra).await.expect("append");
    assert_eq!(w.digest(), d2, "digest after append");
    w.commit(size2, Some(d2.clone()), Labels::new())
        .await
        .expect("commit appended");
    let t3 = SystemTime::now();
    check_content(cs, &d, size, t1, t3, t1, t3).await;
    check_content(&*cs2, &d2, size2, t1, t3, t1, t3).await;
    assert!(
        cs.info(&d2).await.unwrap_err().is_not_found(),
        "the appended blob is not in namespace 1"
    );
    assert!(
        cs2.info(&d).await.unwrap_err().is_not_found(),
        "the original blob was not committed in namespace 2"
    );
}
