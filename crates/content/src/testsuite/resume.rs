//! The `Resume*` cases: an ingest written partly, closed, reopened and completed five
//! ways.

use super::{Subject, check_info, create_content, open, opts, write_chunked};
use crate::helpers;
use crate::labels::Labels;
use crate::store::ReaderAt;
use std::sync::Arc;
use std::time::SystemTime;

/// How a resumed writer is completed in the resume cases.
#[derive(Clone, Copy, Debug)]
enum ResumeHow {
    Truncate,
    Discard,
    Copy,
    CopySeeker,
    CopyReaderAt,
}

/// A [`ReaderAt`] over bytes (the suite's `io.SectionReader`).
struct BytesReaderAt(Vec<u8>);

impl ReaderAt for BytesReaderAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let len = self.0.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let n = ((len - offset) as usize).min(buf.len());
        buf[..n].copy_from_slice(&self.0[offset as usize..offset as usize + n]);
        Ok(n)
    }

    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A reader that is only `AsyncRead` (so `copy` must discard, not seek).
struct PlainReader<'a>(&'a [u8]);

impl tokio::io::AsyncRead for PlainReader<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

async fn check_resume(s: &Subject, how: ResumeHow) {
    let cs = &*s.store;
    for (i, size) in [500usize, 5000, 50000].into_iter().enumerate() {
        for (j, tp) in [0.0f64, 0.1, 0.5, 0.9, 1.0].into_iter().enumerate() {
            let (b, d) = create_content(size);
            let limit = (size as f64 * tp) as usize;
            let r = format!("ref-{i}-{j}");
            let mut w = open(cs, opts(&r, Some(size as u64), Some(&d))).await;
            w.write(&b[..limit]).await.expect("write prefix");
            w.close().await.expect("close");
            let mut w = open(cs, opts(&r, Some(size as u64), Some(&d))).await;
            let st = w.status().await.expect("status");
            assert_eq!(st.offset, limit as u64, "{how:?} {r}: offset after reopen");
            let n = size as u64;
            let pre = SystemTime::now();
            match how {
                ResumeHow::Truncate => {
                    w.truncate(0).await.expect("truncate");
                    write_chunked(&mut *w, &b, 1024).await;
                    w.commit(n, Some(d.clone()), Labels::new())
                        .await
                        .expect("commit");
                }
                ResumeHow::Discard => {
                    write_chunked(&mut *w, &b[limit..], 1024).await;
                    w.commit(n, Some(d.clone()), Labels::new())
                        .await
                        .expect("commit");
                }
                ResumeHow::Copy => {
                    helpers::copy(w, PlainReader(&b), n, Some(d.clone()), Labels::new())
                        .await
                        .expect("copy");
                }
                ResumeHow::CopySeeker => {
                    helpers::copy_seek(
                        w,
                        std::io::Cursor::new(b.clone()),
                        n,
                        Some(d.clone()),
                        Labels::new(),
                    )
                    .await
                    .expect("copy (seek)");
                }
                ResumeHow::CopyReaderAt => {
                    helpers::copy_reader_at(
                        w,
                        Arc::new(BytesReaderAt(b.clone())),
                        n,
                        Some(d.clone()),
                        Labels::new(),
                    )
                    .await
                    .expect("copy (reader at)");
                }
            }
            let post = SystemTime::now();
            check_info(cs, &d, n, &Labels::new(), pre, post, pre, post).await;
        }
    }
}

/// `ResumeTruncate`: sizes {500, 5000, 50000} × prefixes {0, 10, 50, 90, 100%}: after
/// reopening, the offset is the prefix; `truncate(0)`, rewrite all, commit.
pub async fn resume_truncate(s: &Subject) {
    check_resume(s, ResumeHow::Truncate).await
}

/// `ResumeDiscard`: as `ResumeTruncate`, continuing with the remainder.
pub async fn resume_discard(s: &Subject) {
    check_resume(s, ResumeHow::Discard).await
}

/// `ResumeCopy`: as `ResumeTruncate`, completing with [`helpers::copy`] from a plain
/// reader (which must discard the first `offset` bytes).
pub async fn resume_copy(s: &Subject) {
    check_resume(s, ResumeHow::Copy).await
}

/// `ResumeCopySeeker`: as `ResumeCopy` with a seekable reader ([`helpers::copy_seek`]).
pub async fn resume_copy_seeker(s: &Subject) {
    check_resume(s, ResumeHow::CopySeeker).await
}

/// `ResumeCopyReaderAt`: as `ResumeCopy` with a [`ReaderAt`]
/// ([`helpers::copy_reader_at`]).
pub async fn resume_copy_reader_at(s: &Subject) {
    check_resume(s, ResumeHow::CopyReaderAt).await
}
