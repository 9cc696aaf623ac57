use super::*;
use crate::testsuite::fstest::{self, Op, file};
use std::os::unix::fs::MetadataExt;

/// A v2 `security.capability` value granting CAP_NET_BIND_SERVICE.
fn cap_net_bind() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // VFS_CAP_REVISION_2, effective
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted lo
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable lo
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted hi
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable hi
    v
}

fn build_rich_tree(root: &Path) {
    fstest::apply(
        root,
        &[
            Op::CreateDir("etc", 0o755),
            Op::CreateDir("etc/secret", 0o700),
            Op::CreateDir("tmp", 0o1777),
            file("etc/hosts", "127.0.0.1 localhost\n", 0o644),
            file("bin-suid", "#!/bin/sh\n", 0o4755),
            file("sgid", "x", 0o2750),
            file("etc/secret/key", "k", 0o600),
            Op::Chown("etc/secret/key", 1234, 5678),
            Op::Chown("etc/secret", 1234, 5678),
            Op::Chown("bin-suid", 0, 42),
            Op::Chmod("bin-suid", 0o4755),
            Op::Link("etc/hosts", "hosts-link"),
            Op::Link("etc/hosts", "etc/secret/hosts-link2"),
            Op::Symlink("../etc/hosts", "tmp/sym"),
            Op::Symlink("/nonexistent/dangling", "dangling"),
            Op::Chown("dangling", 7, 8),
            Op::SetXattr("etc/hosts", "user.color", b"blue".to_vec()),
            Op::SetXattr("etc/hosts", "trusted.t", b"\x00\x01bin".to_vec()),
            Op::SetXattr("etc", "trusted.overlay.opaque", b"y".to_vec()),
            Op::SetXattr("dangling", "trusted.sym", b"s".to_vec()),
            file("capbin", "ELF", 0o755),
            Op::SetXattr("capbin", "security.capability", cap_net_bind()),
            file("empty", "", 0o644),
        ],
    )
    .unwrap();
    // Devices and fifos.
    for (name, ft, dev) in [
        (
            "null",
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        ),
        ("fifo", rustix::fs::FileType::Fifo, 0),
        ("wh", rustix::fs::FileType::CharacterDevice, 0),
    ] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join(name),
            ft,
            Mode::from_bits_retain(0o640),
            dev,
        )
        .unwrap();
    }
    // A sparse file: 64 MiB with 2 bytes of data.
    let f = std::fs::File::create(root.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(b"a", 1 << 20).unwrap();
    f.write_at(b"z", (64 << 20) - 1).unwrap();
    // A bigger dense file.
    std::fs::write(root.join("dense"), vec![7u8; 300_000]).unwrap();
    // Nanosecond times on a file and directories (set last).
    let t = |s: i64, ns: i64| Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: s + 1,
            tv_nsec: ns as _,
        },
    };
    for (p, s) in [
        ("etc/hosts", 1_000_000_000),
        ("etc/secret", 1_100_000_000),
        ("etc", 1_200_000_000),
        ("", 1_300_000_000),
    ] {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join(p),
            &t(s, 123_456_789),
            AtFlags::empty(),
        )
        .unwrap();
    }
}

#[test]
fn copies_everything_faithfully() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_rich_tree(src.path());
    copy_dir(src.path(), dst.path()).unwrap();
    fstest::check_directory_equal(src.path(), dst.path()).unwrap();

    let md = |r: &Path, p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
    // Hardlinks stay hardlinks (and not to the source).
    let h = md(dst.path(), "etc/hosts");
    assert_eq!(h.nlink(), 3);
    assert_eq!(h.ino(), md(dst.path(), "hosts-link").ino());
    assert_eq!(h.ino(), md(dst.path(), "etc/secret/hosts-link2").ino());
    assert_ne!(h.ino(), md(src.path(), "etc/hosts").ino());
    // Nanosecond mtimes, directories after their children, including the root.
    for p in ["etc/hosts", "etc/secret", "etc", "", "dangling", "sparse"] {
        let (a, b) = (md(src.path(), p), md(dst.path(), p));
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "mtime of {p:?}"
        );
    }
    assert_eq!(md(dst.path(), "etc").mtime_nsec(), 123_456_789);
    // Sparse holes survive.
    let (a, b) = (md(src.path(), "sparse"), md(dst.path(), "sparse"));
    assert_eq!(b.len(), 64 << 20);
    assert!(
        b.blocks() <= a.blocks() + 16,
        "holes lost: {} vs {} blocks",
        b.blocks(),
        a.blocks()
    );
    // Setuid survives chown (chmod after chown), capabilities too.
    assert_eq!(md(dst.path(), "bin-suid").mode() & 0o7777, 0o4755);
    assert_eq!(md(dst.path(), "bin-suid").gid(), 42);
    assert_eq!(md(dst.path(), "null").rdev(), rustix::fs::makedev(1, 3));
}

#[test]
fn copies_a_wide_tree_in_parallel() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let dir = src.path().join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..25 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
        std::fs::hard_link(dir.join("f0"), src.path().join(format!("link{d}"))).unwrap();
    }
    copy_dir(src.path(), dst.path()).unwrap();
    fstest::check_directory_equal(src.path(), dst.path()).unwrap();
    let md = std::fs::metadata(dst.path().join("d7/sub/f0")).unwrap();
    assert_eq!(md.nlink(), 2);
}

#[test]
fn missing_source_is_not_found() {
    let dst = tempfile::tempdir().unwrap();
    let err = copy_dir(Path::new("/nonexistent/strata-src"), dst.path()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("/nonexistent/strata-src"));
}

/// Only what differs is changed, and a chown is followed by the mode again (it clears
/// setuid): owner and mode come out exact whatever the create mode and umask gave.
#[test]
fn set_owner_and_mode_fixes_what_differs() {
    use std::os::unix::fs::OpenOptionsExt;
    let d = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    type Case = (u32, Option<(u32, u32)>, u32); // create mode, owner wanted, mode wanted
    let cases: [Case; 4] = [
        (0o644, None, 0o644),
        (0o600, None, 0o666), // as if a umask had taken bits
        (0o755, None, 0o4755),
        (0o755, root.then_some((1000, 1001)), 0o6755),
    ];
    for (i, (create, owner, want)) in cases.into_iter().enumerate() {
        let p = d.path().join(format!("f{i}"));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(create)
            .open(&p)
            .unwrap();
        set_owner_and_mode(f.as_fd(), owner, want).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o7777, want, "case {i}");
        if let Some((u, g)) = owner {
            assert_eq!((md.uid(), md.gid()), (u, g), "case {i}");
        }
    }
}
