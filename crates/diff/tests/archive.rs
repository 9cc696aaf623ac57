//! Ports of containerd's `pkg/archive/tar_test.go` (Unpack, BaseDiff, Symlinks,
//! RelativeSymlinks, TarWithXattr, ApplyTar, DiffTar, SourceDateEpoch, OverlayApply) and
//! apply behaviour checks (DiffID incl. trailing bytes, compression, whiteouts, PAX/GNU
//! long names, devices, sparse files, ns mtimes, setuid).

mod common;

use common::{SnapOpts, Tar, apply_tar, file, mkdir, p, snapshot, snapshot_with};
use std::cell::RefCell;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_content::ErrorKind;
use strata_diff::compare::{self, ChangeWriter, WriterOptions};
use strata_diff::{ApplyOptions, Compression, Encoding, apply_layer};
use tar::EntryType;

type Step = Box<dyn Fn(&Path)>;

fn chtimes(r: &Path, s: &str, t: SystemTime) {
    let f = fs::File::options().write(true).open(p(r, s)).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}
fn cp_a(from: &Path, to: &Path) {
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .unwrap()
            .success()
    );
}

fn no_mtimes(root: &Path) -> std::collections::BTreeMap<PathBuf, common::Node> {
    snapshot_with(
        root,
        &SnapOpts {
            mtimes: false,
            dir_mtimes: false,
            xattr_filter: common::default_xattr_filter,
        },
    )
}

/// Writes the diff lower→upper as a tar (double walk with hardlink tracking).
fn diff_tar(lower: Option<&Path>, upper: &Path, opts: WriterOptions) -> Vec<u8> {
    let cw = RefCell::new(ChangeWriter::new(Vec::new(), upper, opts));
    compare::walk::changes_with_links(lower, upper, &mut |c| cw.borrow_mut().handle(c), &mut |p| {
        cw.borrow_mut().unchanged(p)
    })
    .unwrap();
    cw.into_inner().finish().unwrap()
}

#[derive(Debug, PartialEq)]
enum E {
    Dir(String, u32),
    File(String, Vec<u8>, u32),
    Link(String, String),
    Whiteout(String),
}

fn entries(tar: &[u8]) -> Vec<(E, u64)> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header().clone();
        let mode = h.mode().unwrap();
        let mtime = h.mtime().unwrap();
        let base = name.rsplit('/').next().unwrap();
        let v = match h.entry_type() {
            EntryType::Directory => E::Dir(name, mode),
            EntryType::Link => E::Link(
                name,
                String::from_utf8(e.link_name_bytes().unwrap().into_owned()).unwrap(),
            ),
            EntryType::Regular if base.starts_with(".wh.") => {
                assert_eq!(h.size().unwrap(), 0);
                E::Whiteout(name.replacen(".wh.", "", 1))
            }
            EntryType::Regular => {
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                E::File(name, d, mode)
            }
            t => panic!("unexpected entry type {t:?}"),
        };
        out.push((v, mtime));
    }
    out
}

fn d(n: &str, m: u32) -> E {
    E::Dir(n.into(), m)
}
fn f(n: &str, c: &[u8], m: u32) -> E {
    E::File(n.into(), c.to_vec(), m)
}
fn l(n: &str, t: &str) -> E {
    E::Link(n.into(), t.into())
}
fn w(n: &str) -> E {
    E::Whiteout(n.into())
}

/// containerd's `makeDiffTarTest`: apply `a` to a dir, copy, apply `b`, diff.
fn diff_tar_case(a: impl Fn(&Path), b: impl Fn(&Path), opts: WriterOptions) -> Vec<(E, u64)> {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    a(t1.path());
    cp_a(t1.path(), t2.path());
    b(t2.path());
    entries(&diff_tar(Some(t1.path()), t2.path(), opts))
}

fn names(v: Vec<(E, u64)>) -> Vec<E> {
    v.into_iter().map(|(e, _)| e).collect()
}

#[test]
fn diff_tar_empty_diff() {
    assert!(
        diff_tar_case(
            |r| mkdir(r, "/etc", 0o755),
            |_| {},
            WriterOptions::default()
        )
        .is_empty()
    );
}

#[test]
fn diff_tar_parent_inclusion() {
    let got = diff_tar_case(
        |r| {
            mkdir(r, "/d1", 0o755);
            mkdir(r, "/d2", 0o770);
        },
        |r| {
            mkdir(r, "/d1/d", 0o700);
            file(r, "/d2/f", b"ok", 0o644);
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![
            d("d1/", 0o755),
            d("d1/d/", 0o700),
            d("d2/", 0o770),
            f("d2/f", b"ok", 0o644)
        ]
    );
}

#[test]
fn diff_tar_hardlink_parent_inclusion() {
    let got = diff_tar_case(
        |r| {
            mkdir(r, "/d1", 0o755);
            file(r, "/d1/f1", b"link me", 0o644);
            mkdir(r, "/d2", 0o755);
            file(r, "/d2/f1", b"link me", 0o644);
            mkdir(r, "/d3", 0o755);
            mkdir(r, "/d4", 0o755);
            file(r, "/d4/f1", b"link me", 0o644);
            mkdir(r, "/d5", 0o755);
            file(r, "/d5/f1", b"link me", 0o644);
            mkdir(r, "/d6", 0o755);
            fs::hard_link(p(r, "/d1/f1"), p(r, "/d6/l1")).unwrap();
            fs::hard_link(p(r, "/d5/f1"), p(r, "/d6/l2")).unwrap();
        },
        |r| {
            fs::hard_link(p(r, "/d1/f1"), p(r, "/d2/l1")).unwrap();
            fs::hard_link(p(r, "/d4/f1"), p(r, "/d3/l1")).unwrap();
            fs::remove_file(p(r, "/d6/l1")).unwrap();
            fs::remove_file(p(r, "/d6/l2")).unwrap();
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![
            d("d2/", 0o755),
            f("d2/l1", b"link me", 0o644),
            d("d1/", 0o755),
            l("d1/f1", "d2/l1"),
            d("d3/", 0o755),
            f("d3/l1", b"link me", 0o644),
            d("d4/", 0o755),
            l("d4/f1", "d3/l1"),
            d("d6/", 0o755),
            w("d6/l1"),
            w("d6/l2"),
        ]
    );
}

#[test]
fn diff_tar_update_directory_permission() {
    let got = diff_tar_case(
        |r| {
            mkdir(r, "/d1", 0o755);
            mkdir(r, "/d2", 0o770);
        },
        |r| {
            fs::set_permissions(p(r, "/d1"), fs::Permissions::from_mode(0o777)).unwrap();
            mkdir(r, "/d1/d", 0o700);
            file(r, "/d2/f", b"ok", 0o644);
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![
            d("d1/", 0o777),
            d("d1/d/", 0o700),
            d("d2/", 0o770),
            f("d2/f", b"ok", 0o644)
        ]
    );
}

#[test]
fn diff_tar_hardlink_updated_parent() {
    let got = diff_tar_case(
        |r| {
            for x in ["d1", "d2", "d3"] {
                mkdir(r, x, 0o755);
                file(r, &format!("{x}/f1"), b"link me", 0o644);
            }
            mkdir(r, "/d4", 0o755);
        },
        |r| {
            fs::set_permissions(p(r, "/d1"), fs::Permissions::from_mode(0o777)).unwrap();
            fs::hard_link(p(r, "/d1/f1"), p(r, "/d2/l1")).unwrap();
            fs::set_permissions(p(r, "/d4"), fs::Permissions::from_mode(0o777)).unwrap();
            fs::hard_link(p(r, "/d3/f1"), p(r, "/d4/l1")).unwrap();
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![
            d("d1/", 0o777),
            d("d2/", 0o755),
            f("d2/l1", b"link me", 0o644),
            l("d1/f1", "d2/l1"),
            d("d4/", 0o777),
            f("d4/l1", b"link me", 0o644),
            d("d3/", 0o755),
            l("d3/f1", "d4/l1"),
        ]
    );
}

#[test]
fn diff_tar_whiteout_includes_parents() {
    let got = diff_tar_case(
        |r| {
            for x in ["d1", "d2", "d3", "d4", "d5"] {
                mkdir(r, x, 0o755);
                file(r, &format!("{x}/f1"), b"content", 0o644);
            }
            file(r, "/d2/f2", b"content", 0o644);
        },
        |r| {
            fs::remove_file(p(r, "/d1/f1")).unwrap();
            fs::remove_file(p(r, "/d2/f1")).unwrap();
            fs::set_permissions(p(r, "/d2/f2"), fs::Permissions::from_mode(0o777)).unwrap();
            fs::remove_file(p(r, "/d3/f1")).unwrap();
            file(r, "/d3/f2", b"content", 0o644);
            fs::remove_file(p(r, "/d4/f1")).unwrap();
            file(r, "/d4/f0", b"content", 0o644);
            fs::remove_dir_all(p(r, "/d5")).unwrap();
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![
            d("d1/", 0o755),
            w("d1/f1"),
            d("d2/", 0o755),
            w("d2/f1"),
            f("d2/f2", b"content", 0o777),
            d("d3/", 0o755),
            w("d3/f1"),
            f("d3/f2", b"content", 0o644),
            d("d4/", 0o755),
            f("d4/f0", b"content", 0o644),
            w("d4/f1"),
            w("d5"),
        ]
    );
}

#[test]
fn diff_tar_whiteout_parent_removal() {
    let got = diff_tar_case(
        |r| {
            mkdir(r, "/d1", 0o755);
            mkdir(r, "/d2", 0o755);
            file(r, "/d2/f1", b"content", 0o644);
        },
        |r| {
            fs::remove_dir_all(p(r, "/d1")).unwrap();
            fs::remove_dir_all(p(r, "/d2")).unwrap();
            mkdir(r, "/d3", 0o755);
        },
        WriterOptions::default(),
    );
    assert_eq!(names(got), vec![w("d1"), w("d2"), d("d3/", 0o755)]);
}

#[test]
fn diff_tar_ignore_sockets() {
    let got = diff_tar_case(
        |r| file(r, "/f1", b"content", 0o644),
        |r| {
            file(r, "/f2", b"content", 0o644);
            let _s = std::os::unix::net::UnixListener::bind(p(r, "/s0")).unwrap();
            file(r, "/f3", b"content", 0o644);
        },
        WriterOptions::default(),
    );
    assert_eq!(
        names(got),
        vec![f("f2", b"content", 0o644), f("f3", b"content", 0o644)]
    );
}

#[test]
fn source_date_epoch() {
    let sde = 1_642_941_296i64; // 2022-01-23T12:34:56Z
    let past = 1_640_995_200u64; // 2022-01-01T00:00:00Z
    let run = || {
        diff_tar_case(
            |r| file(r, "/f1", b"content", 0o644),
            |r| {
                fs::remove_file(p(r, "/f1")).unwrap();
                file(r, "/f2", b"content2", 0o644);
                chtimes(r, "/f2", UNIX_EPOCH + Duration::from_secs(past));
                file(r, "/f3", b"content3", 0o644);
            },
            WriterOptions {
                source_date_epoch: Some(sde),
            },
        )
    };
    let got = run();
    assert_eq!(
        got,
        vec![
            (w("f1"), 0),
            (f("f2", b"content2", 0o644), past),
            (f("f3", b"content3", 0o644), sde as u64),
        ]
    );
    // Reproducible: a second run from fresh trees gives identical entries.
    assert_eq!(run(), got);
}

/// containerd's `testDiffApply`: base→(base+change) diff applied onto a copy of the base.
fn diff_apply(base: impl Fn(&Path), change: impl Fn(&Path)) {
    let td = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    base(td.path());
    change(td.path());
    base(dest.path());
    let tar = diff_tar(Some(dest.path()), td.path(), WriterOptions::default());
    apply_tar(dest.path(), &tar).unwrap();
    assert_eq!(no_mtimes(td.path()), no_mtimes(dest.path()));
}

fn base_fs(r: &Path) {
    mkdir(r, "/etc", 0o755);
    file(r, "/etc/hosts", b"127.0.0.1 localhost", 0o644);
    fs::hard_link(p(r, "/etc/hosts"), p(r, "/etc/hosts.allow")).unwrap();
    mkdir(r, "/usr/local/lib", 0o755);
    file(r, "/usr/local/lib/libnothing.so", &[0, 0], 0o755);
    symlink("libnothing.so", p(r, "/usr/local/lib/libnothing.so.2")).unwrap();
    mkdir(r, "/home/derek", 0o700);
}

#[test]
fn relative_symlinks() {
    let cases: Vec<Step> = vec![
        Box::new(|r| {
            symlink("../other", p(r, "/home/derek/other")).unwrap();
            symlink("../../etc", p(r, "/home/derek/etc")).unwrap();
            symlink("up/../../other", p(r, "/home/derek/updown")).unwrap();
        }),
        Box::new(|r| symlink("../../../breakout", p(r, "/home/derek/breakout")).unwrap()),
        Box::new(|r| symlink("../../breakout", p(r, "/breakout")).unwrap()),
        Box::new(|r| symlink("etc/../../upandout", p(r, "/breakout")).unwrap()),
        Box::new(|r| symlink("derek/../../../downandout", p(r, "/home/breakout")).unwrap()),
        Box::new(|r| symlink("/etc", p(r, "localetc")).unwrap()),
    ];
    for c in cases {
        // testDiffApply of (base + links) against an empty tree, and against the base.
        let td = tempfile::tempdir().unwrap();
        base_fs(td.path());
        c(td.path());
        let dest = tempfile::tempdir().unwrap();
        apply_tar(
            dest.path(),
            &diff_tar(None, td.path(), WriterOptions::default()),
        )
        .unwrap();
        assert_eq!(no_mtimes(td.path()), no_mtimes(dest.path()));
        diff_apply(base_fs, &c);
    }
}

#[test]
fn symlinks() {
    type Pair = (Box<dyn Fn(&Path)>, Box<dyn Fn(&Path)>);
    let cases: Vec<Pair> = vec![
        (
            Box::new(|r| {
                mkdir(r, "/bin", 0o755);
                file(r, "/bin/superbinary", &[0, 0], 0o755);
                symlink("../bin/superbinary", p(r, "/bin/other1")).unwrap();
            }),
            Box::new(|r| {
                fs::remove_file(p(r, "/bin/other1")).unwrap();
                symlink("/bin/superbinary", p(r, "/bin/other1")).unwrap();
                symlink("../bin/superbinary", p(r, "/bin/other2")).unwrap();
                symlink("superbinary", p(r, "/bin/other3")).unwrap();
            }),
        ),
        (
            Box::new(|r| {
                mkdir(r, "/bin", 0o755);
                mkdir(r, "/sbin", 0o755);
                file(r, "/sbin/superbinary", &[0, 0], 0o755);
                symlink("/sbin/superbinary", p(r, "/bin/superbinary")).unwrap();
                symlink("../bin/superbinary", p(r, "/bin/other1")).unwrap();
            }),
            Box::new(|r| {
                fs::remove_file(p(r, "/bin/other1")).unwrap();
                symlink("/bin/superbinary", p(r, "/bin/other1")).unwrap();
                symlink("superbinary", p(r, "/bin/other2")).unwrap();
            }),
        ),
        (
            Box::new(|r| {
                mkdir(r, "/bin", 0o755);
                mkdir(r, "/sbin", 0o755);
                file(r, "/sbin/superbinary", &[0, 0], 0o755);
                symlink("../sbin/superbinary", p(r, "/bin/superbinary")).unwrap();
                symlink("../bin/superbinary", p(r, "/bin/other1")).unwrap();
            }),
            Box::new(|r| {
                fs::remove_file(p(r, "/bin/other1")).unwrap();
                symlink("/bin/superbinary", p(r, "/bin/other1")).unwrap();
            }),
        ),
        (
            // A symlink replaced by a directory.
            Box::new(|r| {
                mkdir(r, "/bin", 0o755);
                symlink("/etc", p(r, "/bin/dir")).unwrap();
            }),
            Box::new(|r| {
                fs::remove_file(p(r, "/bin/dir")).unwrap();
                mkdir(r, "/bin/dir", 0o755);
                file(r, "/bin/dir/f", b"x", 0o644);
            }),
        ),
    ];
    for (a, b) in cases {
        diff_apply(&a, &b);
    }
}

#[test]
fn unpack_gnu_tar_of_tree() {
    if !common::have_tool("tar") {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    base_fs(td.path());
    symlink("/etc", p(td.path(), "localetc")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p(td.path(), "fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-cf", "-", "-C"])
        .arg(td.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dest = tempfile::tempdir().unwrap();
    apply_tar(dest.path(), &out.stdout).unwrap();
    assert_eq!(snapshot(td.path()), snapshot(dest.path()));
}

#[test]
fn base_diff_extracted_by_gnu_tar() {
    if !common::have_tool("tar") {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    base_fs(td.path());
    let tar = diff_tar(None, td.path(), WriterOptions::default());
    let dest = tempfile::tempdir().unwrap();
    let mut c = Command::new("tar")
        .arg("-xf")
        .arg("-")
        .arg("-C")
        .arg(dest.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(no_mtimes(td.path()), no_mtimes(dest.path()));
}

#[test]
fn tar_with_xattr() {
    for (k, v) in [
        ("user.key", &b"value"[..]),
        (
            "security.selinux",
            &b"unconfined_u:object_r:default_t:s0\0"[..],
        ),
    ] {
        let dest = tempfile::tempdir().unwrap();
        let mut t = Tar::new();
        t.entry_full(
            EntryType::Regular,
            "/file",
            "",
            0o755,
            0,
            0,
            b"",
            &[(&format!("SCHILY.xattr.{k}"), v)],
        );
        apply_tar(dest.path(), &t.finish()).unwrap();
        let got = common::xattr_get(&dest.path().join("file"), k);
        // security.selinux may be rejected or rewritten by an LSM-less kernel; user.* must stick.
        if k.starts_with("user.") || !got.is_empty() {
            assert_eq!(got, v, "{k}");
        }
    }
    // trusted.* from an archive is refused (not applied, not an error).
    let dest = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.entry_full(
        EntryType::Regular,
        "f",
        "",
        0o644,
        0,
        0,
        b"",
        &[("SCHILY.xattr.trusted.overlay.opaque", b"y")],
    );
    apply_tar(dest.path(), &t.finish()).unwrap();
    assert!(common::xattr_get(&dest.path().join("f"), "trusted.overlay.opaque").is_empty());
}

#[test]
fn apply_tar_directory_creation() {
    let dest = tempfile::tempdir().unwrap();
    mkdir(dest.path(), "/etc", 0o755);
    let mut t = Tar::new();
    t.dir("/etc/subdir", 0o755)
        .dir("/etc/subdir2/", 0o755)
        .dir("/etc/subdir2/more", 0o755)
        .dir("/other/noparent-1/1", 0o755)
        .dir("/other/noparent-2/2/", 0o755);
    apply_tar(dest.path(), &t.finish()).unwrap();
    for x in [
        "etc/subdir",
        "etc/subdir2",
        "etc/subdir2/more",
        "other/noparent-1/1",
        "other/noparent-2/2",
    ] {
        assert!(dest.path().join(x).is_dir(), "{x}");
    }
}

#[test]
fn diff_id_covers_trailing_bytes_and_compression() {
    let mut t = Tar::new();
    t.dir("a", 0o755).file("a/b", b"hello", 0o600);
    let mut plain = t.finish();
    plain.extend_from_slice(&[0u8; 4096]); // trailing padding after the end marker
    let want = strata_content::digest::sha256(&plain);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut e = strata_diff::compression::encoder(
            Vec::new(),
            Encoding {
                compression: c,
                level: None,
                threads: 0,
            },
        )
        .unwrap();
        e.write_all(&plain).unwrap();
        let blob = e.finish().unwrap();
        for mode in [c, Compression::Detect] {
            let dest = tempfile::tempdir().unwrap();
            let st = apply_layer(&blob[..], mode, dest.path(), &ApplyOptions::default()).unwrap();
            assert_eq!(st.diff_id, want, "{c:?}/{mode:?}");
            assert_eq!(st.size, plain.len() as u64);
            assert_eq!(st.entries, 2);
            assert_eq!(fs::read(dest.path().join("a/b")).unwrap(), b"hello");
        }
    }
    // Corrupt compressed data is an InvalidArgument, not a panic.
    let dest = tempfile::tempdir().unwrap();
    let e = apply_layer(
        &[0x1f, 0x8b, 8, 0, 1, 2, 3][..],
        Compression::Gzip,
        dest.path(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let dest = tempfile::tempdir().unwrap();
    let r = dest.path();
    mkdir(r, "/a/keep", 0o755);
    file(r, "/a/old", b"old", 0o644);
    file(r, "/a/keep/old", b"old", 0o644);
    file(r, "/gone", b"x", 0o644);
    mkdir(r, "/gonedir/sub", 0o755);
    let mut t = Tar::new();
    // Entries of this layer before the opaque marker survive it.
    t.dir("a", 0o755)
        .dir("a/keep", 0o700)
        .file("a/keep/new", b"new", 0o644)
        .file("a/.wh..wh..opq", b"", 0)
        .file("a/later", b"later", 0o644)
        .file(".wh.gone", b"", 0)
        .file(".wh.gonedir", b"", 0)
        .file(".wh..wh.plnk", b"", 0)
        .file(".wh.missing", b"", 0);
    apply_tar(r, &t.finish()).unwrap();
    let mut names: Vec<String> = walkdir(r);
    names.sort();
    assert_eq!(names, ["a", "a/keep", "a/keep/new", "a/later"]);
    assert_eq!(
        fs::metadata(r.join("a/keep")).unwrap().mode() & 0o777,
        0o700
    );
}

fn walkdir(r: &Path) -> Vec<String> {
    snapshot(r)
        .keys()
        .map(|k| k.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn replace_rules_and_metadata() {
    let dest = tempfile::tempdir().unwrap();
    let r = dest.path();
    mkdir(r, "/dir", 0o755);
    file(r, "/dir/inner", b"x", 0o644);
    file(r, "/file", b"x", 0o644);
    mkdir(r, "/merged", 0o700);
    file(r, "/merged/kept", b"k", 0o644);
    let mut t = Tar::new();
    let long = format!("{}/{}", "d".repeat(120), "n".repeat(150));
    t.file("dir", b"now a file", 0o4755) // existing dir replaced by a file (setuid kept)
        .dir("file", 0o1777) // existing file replaced by a dir (sticky)
        .dir("merged", 0o755) // dirs merge
        .entry_full(
            EntryType::Regular,
            "owned",
            "",
            0o2750,
            1234,
            5678,
            b"o",
            &[("mtime", b"1700000000.123456789")],
        )
        .entry_full(
            EntryType::Symlink,
            "lnk",
            "/nowhere",
            0o777,
            42,
            43,
            b"",
            &[],
        )
        .entry_full(EntryType::Char, "null", "", 0o666, 0, 0, b"", &[])
        .entry_full(EntryType::Fifo, "fifo", "", 0o600, 0, 0, b"", &[])
        .file(&long, b"long", 0o644)
        .link(&long, "shortlink");
    // GNU long name too (tar crate's builder emits GNU 'L' records for long names).
    let mut gnu = tar::Builder::new(Vec::new());
    let gname = format!("{}/g", "x".repeat(200));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_entry_type(EntryType::Regular);
    gnu.append_data(&mut h, &gname, &b"gnu"[..]).unwrap();
    let gnu = gnu.into_inner().unwrap();
    let mut data = t.out.clone();
    data.extend_from_slice(&gnu);
    apply_tar(r, &data).unwrap();
    let md = |x: &str| fs::symlink_metadata(r.join(x)).unwrap();
    assert!(md("dir").is_file());
    assert_eq!(md("dir").mode() & 0o7777, 0o4755);
    assert!(md("file").is_dir());
    assert_eq!(md("file").mode() & 0o7777, 0o1777);
    assert_eq!(fs::read(r.join("merged/kept")).unwrap(), b"k");
    assert_eq!(md("merged").mode() & 0o7777, 0o755);
    let o = md("owned");
    assert_eq!((o.uid(), o.gid(), o.mode() & 0o7777), (1234, 5678, 0o2750));
    assert_eq!((o.mtime(), o.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!((md("lnk").uid(), md("lnk").gid()), (42, 43));
    assert_eq!(fs::read_link(r.join("lnk")).unwrap(), Path::new("/nowhere"));
    assert!(md("null").file_type().is_char_device());
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(md("fifo").mode() & 0o7777, 0o600);
    assert_eq!(fs::read(r.join(&long)).unwrap(), b"long");
    assert_eq!(md("shortlink").ino(), md(&long).ino());
    assert_eq!(fs::read(r.join(&gname)).unwrap(), b"gnu");
}

#[test]
fn sparse_files_from_gnu_tar() {
    if !common::have_tool("tar") {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let f = fs::File::create(td.path().join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    let mut f = f;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(4 << 20)).unwrap();
    f.write_all(b"middle").unwrap();
    drop(f);
    for fmt in ["gnu", "posix"] {
        let out = Command::new("tar")
            .args(["--sparse", &format!("--format={fmt}"), "-cf", "-", "-C"])
            .arg(td.path())
            .arg("sparse")
            .output()
            .unwrap();
        assert!(out.status.success());
        let dest = tempfile::tempdir().unwrap();
        apply_tar(dest.path(), &out.stdout).unwrap();
        let got = fs::read(dest.path().join("sparse")).unwrap();
        assert_eq!(got.len(), 8 << 20, "{fmt}");
        assert_eq!(&got[4 << 20..(4 << 20) + 6], b"middle");
        assert!(got[..4 << 20].iter().all(|b| *b == 0));
    }
}

#[test]
fn invalid_archives() {
    // Unknown entry type, hardlink to a missing target, hardlink to the root.
    for t in [
        {
            let mut t = Tar::new();
            t.entry_full(EntryType::new(b'Z'), "x", "", 0o644, 0, 0, b"", &[]);
            t.finish()
        },
        {
            let mut t = Tar::new();
            t.link("missing", "x");
            t.finish()
        },
        {
            let mut t = Tar::new();
            t.link("/", "x");
            t.finish()
        },
    ] {
        let dest = tempfile::tempdir().unwrap();
        let e = apply_tar(dest.path(), &t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
}

/// Headers as some writers leave them: numeric fields all NUL (read as 0, as Go's
/// archive/tar does), and PAX `uid`/`gid` records overriding the header's ids.
#[test]
fn blank_numeric_fields_and_pax_ids() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(2);
    h.set_mode(0o640);
    {
        let old = h.as_old_mut();
        old.uid = [0; 8];
        old.gid = [0; 8];
        old.mtime = [0; 12];
    }
    h.set_cksum();
    b.append_data(&mut h, "blank", &b"hi"[..]).unwrap();
    b.append_pax_extensions([("uid", &b"3000000"[..]), ("gid", &b"3000001"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(1);
    h.set_gid(1);
    h.set_cksum();
    b.append_data(&mut h, "big-ids", &b"x"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    apply_layer(
        &data[..],
        Compression::None,
        dir.path(),
        &ApplyOptions::default(),
    )
    .unwrap();
    let m = fs::metadata(dir.path().join("blank")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
        (0, 0, 0o640, 0)
    );
    let m = fs::metadata(dir.path().join("big-ids")).unwrap();
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
}
