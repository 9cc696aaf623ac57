//! Unit tests of the local store's specifics (the shared conformance suite runs from
//! `tests/local_suite.rs`).

use super::*;
use crate::digest::sha256;
use oci_spec::image::{DescriptorBuilder, MediaType};
use std::os::unix::fs::PermissionsExt;

fn desc(d: &Digest, size: u64) -> Descriptor {
    DescriptorBuilder::default()
        .media_type(MediaType::ImageLayer)
        .digest(d.clone())
        .size(size)
        .build()
        .unwrap()
}

async fn put(s: &LocalStore, r: &str, data: &[u8]) -> Digest {
    let mut w = s.writer(WriterOpts::new(r)).await.unwrap();
    w.write(data).await.unwrap();
    let d = w.digest();
    w.commit(data.len() as u64, Some(d.clone()), Labels::new())
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn layout_and_read_only_blob() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    let data = vec![7u8; 9 << 20]; // more than two chunks
    let d = put(&s, "r", &data).await;
    let p = dir.path().join("blobs/sha256").join(d.digest());
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!(m.len(), data.len() as u64);
    assert_eq!(m.permissions().mode() & 0o777, 0o444);
    assert!(dir.path().join("metadata.db").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
    let ra = s.reader_at(&desc(&d, 0)).await.unwrap();
    assert_eq!(ra.size(), data.len() as u64);
    let mut b = [0u8; 4];
    assert_eq!(ra.read_at(&mut b, data.len() as u64 - 2).unwrap(), 2);
    let mut all = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s.reader(&desc(&d, 0)).await.unwrap(), &mut all)
        .await
        .unwrap();
    assert_eq!(sha256(&all), d);
}

#[tokio::test]
async fn partial_data_invisible_and_second_handle_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    let data = b"some bytes that are not yet committed";
    let d = sha256(data);
    let mut w = s
        .writer(
            WriterOpts::new("x")
                .expected(d.clone())
                .total(data.len() as u64),
        )
        .await
        .unwrap();
    w.write(&data[..10]).await.unwrap();
    // Another handle (same process, clone) on the same ref.
    let e = s.clone().writer(WriterOpts::new("x")).await.err().unwrap();
    assert!(e.is_unavailable(), "{e}");
    // Another store instance on the same root too.
    let s2 = LocalStore::open(dir.path()).unwrap();
    let e = s2.writer(WriterOpts::new("x")).await.err().unwrap();
    assert!(e.is_unavailable(), "{e}");
    assert!(s.info(&d).await.unwrap_err().is_not_found());
    assert!(
        s.reader_at(&desc(&d, 0))
            .await
            .err()
            .unwrap()
            .is_not_found()
    );
    assert!(s.walk(&[]).await.unwrap().is_empty());
    assert!(s.abort("x").await.unwrap_err().is_unavailable());
    w.close().await.unwrap();
    let st = s2.status("x").await.unwrap();
    assert_eq!(st.offset, 10);
    assert_eq!(st.total, data.len() as u64);
    assert_eq!(st.expected, Some(d.clone()));
    s2.abort("x").await.unwrap();
    assert!(s.status("x").await.unwrap_err().is_not_found());
    assert!(s.abort("x").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn refs_are_per_namespace_and_bytes_shared() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    let ns2 = s.namespace("ns2");
    let data = b"shared bytes";
    let d = put(&s, "r", data).await;
    // ns2: the writer starts at offset == total and commit links.
    let w = ns2
        .writer(WriterOpts::new("r").expected(d.clone()))
        .await
        .unwrap();
    let st = w.status().await.unwrap();
    assert_eq!((st.offset, st.total), (12, 12));
    assert_eq!(w.digest(), d);
    w.commit(12, Some(d.clone()), Labels::new()).await.unwrap();
    assert_eq!(ns2.info(&d).await.unwrap().size, 12);
    assert!(
        s.writer(WriterOpts::new("again").expected(d.clone()))
            .await
            .err()
            .unwrap()
            .is_already_exists()
    );
    // Delete from one namespace keeps the bytes; from both removes them.
    s.delete(&d).await.unwrap();
    assert!(s.info(&d).await.unwrap_err().is_not_found());
    assert!(s.blob_path(&d).exists());
    assert_eq!(s.blobs_on_disk().await.unwrap(), vec![d.clone()]);
    assert!(
        s.remove_blob_bytes(&d)
            .await
            .unwrap_err()
            .is_failed_precondition()
    );
    ns2.delete(&d).await.unwrap();
    assert!(!s.blob_path(&d).exists());
    assert!(ns2.delete(&d).await.unwrap_err().is_not_found());
    assert!(s.blobs_on_disk().await.unwrap().is_empty());
}

#[tokio::test]
async fn walk_filters_and_update_fieldpaths() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    let a = put(&s, "a", b"aaa").await;
    let b = put(&s, "b", b"bbbb").await;
    let mut l = Labels::new();
    l.insert("containerd.io/gc.root".into(), "x".into());
    l.insert("k".into(), "v".into());
    s.update(Info::for_update(a.clone(), l), &[]).await.unwrap();
    let got = s
        .walk(&[r#"labels."containerd.io/gc.root""#.to_string()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, a);
    let got = s
        .walk(&[format!("digest=={b}"), "labels.k==v".to_string()])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(s.walk(&["labels.k~=(".to_string()]).await.is_err());
    let i = s
        .update(
            Info::for_update(a.clone(), Labels::new()),
            &["labels.k".into()],
        )
        .await
        .unwrap();
    assert_eq!(i.labels.len(), 1);
    assert!(
        s.update(Info::for_update(a.clone(), Labels::new()), &["size".into()])
            .await
            .unwrap_err()
            .is_invalid_argument()
    );
    let mut big = Labels::new();
    big.insert("k".into(), "v".repeat(4096));
    assert!(
        s.update(Info::for_update(a.clone(), big), &[])
            .await
            .unwrap_err()
            .is_invalid_argument()
    );
}

/// Writers must work from any async context, including `Handle::block_on` inside
/// `spawn_blocking` (as a tar stream on a blocking thread would use them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_from_a_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path()).unwrap();
    let data = vec![3u8; 3 << 20];
    let d = sha256(&data);
    let s2 = s.clone();
    let data2 = data.clone();
    tokio::task::spawn_blocking(move || {
        let h = tokio::runtime::Handle::current();
        h.block_on(async {
            let mut w = s2.writer(WriterOpts::new("b")).await.unwrap();
            w.write(&data2).await.unwrap();
            w.commit(0, None, Labels::new()).await.unwrap();
        })
    })
    .await
    .unwrap();
    assert_eq!(s.info(&d).await.unwrap().size, data.len() as u64);
}

#[test]
fn large_writes_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let data = vec![5u8; 3 << 20];
        let d = put(&s, "c", &data).await;
        assert_eq!(s.info(&d).await.unwrap().size, data.len() as u64);
    });
}
