//! The content conformance suite (`strata_content::testsuite`) against `LocalStore`,
//! one test per case.

use std::sync::Arc;
use strata_content::local::LocalStore;
use strata_content::testsuite::{self, Subject};

fn subject() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open store");
    Subject {
        store: Arc::new(store.clone()),
        other_namespace: Some(Arc::new(store.namespace("ns2"))),
        guard: Box::new(dir),
    }
}

macro_rules! cases {
    ($($name:ident => $case:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                testsuite::run_case($case, subject()).await;
            }
        )*

        #[test]
        fn every_case_has_a_test() {
            let mine = [$($case),*];
            assert_eq!(&mine[..], testsuite::CASES);
        }
    };
}

cases! {
    writer => "Writer",
    update_status => "UpdateStatus",
    commit_exists => "CommitExists",
    resume => "Resume",
    resume_truncate => "ResumeTruncate",
    resume_discard => "ResumeDiscard",
    resume_copy => "ResumeCopy",
    resume_copy_seeker => "ResumeCopySeeker",
    resume_copy_reader_at => "ResumeCopyReaderAt",
    small_blob => "SmallBlob",
    labels => "Labels",
    commit_error_state => "CommitErrorState",
    cross_namespace_share => "CrossNamespaceShare",
    cross_namespace_append => "CrossNamespaceAppend",
}

/// The same cases on a current-thread runtime (no `block_in_place` hashing path).
#[tokio::test(flavor = "current_thread")]
async fn all_cases_current_thread() {
    testsuite::run_all(|| async { subject() }).await;
}
