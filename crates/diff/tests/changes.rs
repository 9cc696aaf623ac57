//! Port of continuity's `fs/diff_test.go`: the changes computed by the double walk and
//! the overlay upperdir walk.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_diff::compare::{self, Change, ChangeKind};

fn create_dir(root: &Path, p: &str, mode: u32) {
    let full = root.join(p.trim_start_matches('/'));
    fs::create_dir_all(&full).unwrap();
    fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
}

fn create_file(root: &Path, p: &str, data: &[u8], mode: u32) {
    let full = root.join(p.trim_start_matches('/'));
    fs::write(&full, data).unwrap();
    fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
}

fn chtimes(root: &Path, p: &str, t: SystemTime) {
    let f = fs::File::options()
        .write(true)
        .open(root.join(p.trim_start_matches('/')))
        .unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn collect(lower: Option<&Path>, upper: &Path) -> Vec<(ChangeKind, PathBuf)> {
    let mut v = Vec::new();
    compare::changes(lower, upper, &mut |c: Change| {
        v.push((c.kind, c.path));
        Ok(())
    })
    .unwrap();
    v
}

use ChangeKind::{Add, Delete, Modify};

fn expect(pairs: &[(ChangeKind, &str)]) -> Vec<(ChangeKind, PathBuf)> {
    pairs.iter().map(|(k, p)| (*k, PathBuf::from(p))).collect()
}

/// continuity's `testDiffWithBase`.
fn with_base(l1: impl Fn(&Path), l2: impl Fn(&Path)) -> Vec<(ChangeKind, PathBuf)> {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    l1(t1.path());
    cp_a(t1.path(), t2.path());
    l2(t2.path());
    collect(Some(t1.path()), t2.path())
}

#[test]
fn simple_diff() {
    let got = with_base(
        |r| {
            create_dir(r, "/etc", 0o755);
            create_file(r, "/etc/hosts", b"mydomain 10.0.0.1", 0o644);
            create_file(r, "/etc/profile", b"PATH=/usr/bin", 0o644);
            create_file(r, "/etc/unchanged", b"PATH=/usr/bin", 0o644);
            create_file(r, "/etc/unexpected", b"#!/bin/sh", 0o644);
        },
        |r| {
            create_file(r, "/etc/hosts", b"mydomain 10.0.0.120", 0o644);
            create_file(r, "/etc/profile", b"PATH=/usr/bin", 0o666);
            create_dir(r, "/root", 0o700);
            create_file(r, "/root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644);
            fs::remove_file(r.join("etc/unexpected")).unwrap();
        },
    );
    assert_eq!(
        got,
        expect(&[
            (Modify, "etc/hosts"),
            (Modify, "etc/profile"),
            (Delete, "etc/unexpected"),
            (Add, "root"),
            (Add, "root/.bashrc"),
        ])
    );
}

#[test]
fn empty_file_diff() {
    let tt = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let got = with_base(
        |r| {
            create_dir(r, "/etc", 0o755);
            create_file(r, "/etc/empty", b"", 0o644);
            chtimes(r, "/etc/empty", tt);
        },
        |_| {},
    );
    assert_eq!(got, expect(&[]));
}

#[test]
fn nested_deletion() {
    let got = with_base(
        |r| {
            create_dir(r, "/d0", 0o755);
            create_dir(r, "/d1/d2", 0o755);
            create_file(r, "/d1/d2/f1", b"mydomain 10.0.0.1", 0o644);
        },
        |r| {
            fs::remove_dir_all(r.join("d0")).unwrap();
            fs::remove_dir_all(r.join("d1")).unwrap();
        },
    );
    assert_eq!(got, expect(&[(Delete, "d0"), (Delete, "d1")]));
}

#[test]
fn directory_replace() {
    let got = with_base(
        |r| {
            create_dir(r, "/dir1", 0o755);
            create_file(r, "/dir1/f1", b"#####", 0o644);
            create_dir(r, "/dir1/f2", 0o755);
            create_file(r, "/dir1/f2/f3", b"#!/bin/sh", 0o644);
        },
        |r| {
            create_file(r, "/dir1/f11", b"#New file here", 0o644);
            fs::remove_dir_all(r.join("dir1/f2")).unwrap();
            create_file(r, "/dir1/f2", b"Now file", 0o666);
        },
    );
    assert_eq!(got, expect(&[(Add, "dir1/f11"), (Modify, "dir1/f2")]));
}

fn remove_tree_case(with_dash: bool) {
    let got = with_base(
        |r| {
            create_dir(r, "/dir1/dir2/dir3", 0o755);
            create_file(r, "/dir1/f1", b"f1", 0o644);
            create_file(r, "/dir1/dir2/f2", b"f2", 0o644);
            if with_dash {
                create_dir(r, "/dir1-before", 0o755);
                create_file(r, "/dir1-before/f2", b"f2", 0o644);
            }
        },
        |r| fs::remove_dir_all(r.join("dir1")).unwrap(),
    );
    assert_eq!(got, expect(&[(Delete, "dir1")]));
}

#[test]
fn remove_directory_tree() {
    remove_tree_case(false);
}

#[test]
fn remove_directory_tree_with_dash() {
    remove_tree_case(true);
}

#[test]
fn file_replace() {
    let got = with_base(
        |r| create_file(r, "/dir1", b"a file, not a directory", 0o644),
        |r| {
            fs::remove_file(r.join("dir1")).unwrap();
            create_dir(r, "/dir1/dir2", 0o755);
            create_file(r, "/dir1/dir2/f1", b"also a file", 0o644);
        },
    );
    assert_eq!(
        got,
        expect(&[(Modify, "dir1"), (Add, "dir1/dir2"), (Add, "dir1/dir2/f1")])
    );
}

#[test]
fn parent_directory_permission() {
    let got = with_base(
        |r| {
            create_dir(r, "/dir1", 0o700);
            create_dir(r, "/dir2", 0o751);
            create_dir(r, "/dir3", 0o777);
        },
        |r| {
            create_dir(r, "/dir1/d", 0o700);
            create_file(r, "/dir1/d/f", b"irrelevant", 0o644);
            create_file(r, "/dir1/f", b"irrelevant", 0o644);
            create_file(r, "/dir2/f", b"irrelevant", 0o644);
            create_file(r, "/dir3/f", b"irrelevant", 0o644);
        },
    );
    assert_eq!(
        got,
        expect(&[
            (Add, "dir1/d"),
            (Add, "dir1/d/f"),
            (Add, "dir1/f"),
            (Add, "dir2/f"),
            (Add, "dir3/f"),
        ])
    );
}

#[test]
fn update_with_same_time() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tt = UNIX_EPOCH + Duration::from_secs(secs);
    let t1 = tt + Duration::from_nanos(5);
    let t2 = tt + Duration::from_nanos(6);
    let files = [
        ("/file-modified-time", b"1", t1, b"2", t2),
        ("/file-no-change", b"1", t1, b"1", t1),
        ("/file-same-time", b"1", t1, b"2", t1),
        ("/file-truncated-time-1", b"1", tt, b"1", t1),
        ("/file-truncated-time-2", b"1", tt, b"2", tt),
        ("/file-truncated-time-3", b"1", t1, b"1", tt),
    ];
    let got = with_base(
        |r| {
            for (p, d, t, _, _) in &files {
                create_file(r, p, *d, 0o644);
                chtimes(r, p, *t);
            }
        },
        |r| {
            for (p, _, _, d, t) in &files {
                create_file(r, p, *d, 0o644);
                chtimes(r, p, *t);
            }
        },
    );
    assert_eq!(
        got,
        expect(&[
            (Modify, "file-modified-time"),
            (Modify, "file-truncated-time-1"),
            (Modify, "file-truncated-time-2"),
            (Modify, "file-truncated-time-3"),
        ])
    );
}

#[test]
fn lchtimes() {
    for mtime_ns in [0u32, 42] {
        let got = with_base(
            |r| {
                create_file(r, "/foo", b"foo", 0o644);
                symlink("/foo", r.join("lnk0")).unwrap();
                let ts = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 424242,
                        tv_nsec: 42,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: mtime_ns as _,
                    },
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    r.join("lnk0"),
                    &ts,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .unwrap();
            },
            |_| {},
        );
        assert_eq!(got, expect(&[]), "mtime nsec {mtime_ns}");
    }
}

#[test]
fn base_directory_changes() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    create_dir(r, "/etc", 0o755);
    create_file(r, "/etc/hosts", b"mydomain 10.0.0.1", 0o644);
    create_file(r, "/etc/profile", b"PATH=/usr/bin", 0o644);
    create_dir(r, "/root", 0o700);
    create_file(r, "/root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644);
    assert_eq!(
        collect(None, r),
        expect(&[
            (Add, "etc"),
            (Add, "etc/hosts"),
            (Add, "etc/profile"),
            (Add, "root"),
            (Add, "root/.bashrc"),
        ])
    );
}

/// continuity's `TestDiffDirChangeWithOverlayfs`, with an upperdir built by hand (as the
/// original does) and checked against the overlay walk.
#[test]
fn diff_dir_change_with_overlayfs() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    create_dir(b, "/dir1", 0o700);
    create_file(b, "/dir1/f", b"/dir1/f", 0o644);
    create_dir(b, "/dir1/d", 0o700);
    create_file(b, "/dir1/d/f", b"/dir1/d/f", 0o644);
    create_dir(b, "/dir2/d", 0o700);
    create_file(b, "/dir2/d/f", b"/dir2/d/f", 0o644);
    create_dir(b, "/dir3", 0o700);
    create_file(b, "/dir3/f", b"/dir3/f", 0o644);
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    create_dir(u, "/dir1", 0o700);
    create_file(u, "/dir1/f", b"/dir1/f-diff", 0o644);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("dir1/d"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    create_dir(u, "/dir2/d", 0o700);
    create_file(u, "/dir2/d/f", b"/dir2/d/f-diff", 0o644);
    create_dir(u, "/dir3", 0o700);
    rustix::fs::setxattr(
        u.join("dir3"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut got = Vec::new();
    compare::overlay::changes(u, &[b.to_path_buf()], &mut |c: Change| {
        got.push((c.kind, c.path));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        got,
        expect(&[
            (Modify, "dir1"),
            (Delete, "dir1/d"),
            (Modify, "dir1/f"),
            (Modify, "dir2"),
            (Modify, "dir2/d"),
            (Modify, "dir2/d/f"),
            (Modify, "dir3"),
            (Delete, "dir3/.wh..opq"),
        ])
    );
}
