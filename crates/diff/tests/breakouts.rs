//! Port of containerd's `pkg/archive/tar_test.go` `TestBreakouts`: every case with the
//! same expected outcome, plus a check that nothing outside the root changed.

mod common;

use common::{Sandbox, Tar, apply_tar, root_stat};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use strata_content::ErrorKind;

const EXPECTED: &[u8] = b"unbroken";

type Check = Box<dyn Fn(&std::path::Path)>;

fn unbroken() -> Check {
    Box::new(|root| {
        assert_eq!(fs::read(root.join("etc/unbroken")).unwrap(), EXPECTED);
    })
}

fn same_file(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| {
        let sa = root_stat(root, a).unwrap();
        let sb = root_stat(root, b).unwrap();
        assert_eq!(sa, sb, "{a} and {b} should be the same file");
    })
}

fn not_same_file(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| {
        let sa = root_stat(root, a).unwrap();
        let sb = root_stat(root, b).unwrap();
        assert_ne!(sa, sb, "{a} and {b} should differ");
    })
}

fn file_value(p: &'static str, v: &'static [u8]) -> Check {
    Box::new(move |root| assert_eq!(fs::read(root.join(p)).unwrap(), v, "{p}"))
}

fn not_exists(p: &'static str) -> Check {
    Box::new(move |root| assert!(fs::symlink_metadata(root.join(p)).is_err(), "{p} exists"))
}

fn same_symlink(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| {
        let ta = fs::read_link(root.join(a.trim_start_matches('/'))).unwrap();
        let tb = fs::read_link(root.join(b.trim_start_matches('/'))).unwrap();
        assert_eq!(ta, tb);
    })
}

fn all(cs: Vec<Check>) -> Check {
    Box::new(move |root| cs.iter().for_each(|c| c(root)))
}

/// Runs one case: `prep` builds the initial root, `tar` is applied, then either the error
/// kind or `check` is verified, and the outside of the root must be unchanged.
fn run(
    prep: impl FnOnce(&std::path::Path),
    tar: impl FnOnce(&Sandbox) -> Vec<u8>,
    want_err: bool,
    check: Check,
) {
    let mut sb = Sandbox::new();
    prep(&sb.root);
    let data = tar(&sb);
    sb.seal();
    let host_passwd = fs::read("/etc/passwd").ok();
    let res = apply_tar(&sb.root, &data);
    if want_err {
        let e = res.expect_err("expected invalid archive");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("invalid archive"), "{e}");
    } else {
        res.expect("apply");
        check(&sb.root);
    }
    sb.check_outside();
    assert_eq!(
        fs::read("/etc/passwd").ok(),
        host_passwd,
        "host /etc/passwd changed"
    );
    assert!(
        !std::path::Path::new("/etc/unbroken").exists(),
        "wrote host /etc/unbroken"
    );
}

fn none(_: &std::path::Path) {}

fn etc_passwd(content: &'static [u8]) -> impl FnOnce(&std::path::Path) {
    move |r| {
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), content).unwrap();
    }
}

macro_rules! case {
    ($name:ident, $prep:expr, |$t:ident| $build:block, err) => {
        #[test]
        fn $name() {
            run(
                $prep,
                |_| {
                    let mut $t = Tar::new();
                    $build;
                    $t.finish()
                },
                true,
                Box::new(|_| {}),
            );
        }
    };
    ($name:ident, $prep:expr, |$t:ident| $build:block, $check:expr) => {
        #[test]
        fn $name() {
            run(
                $prep,
                |_| {
                    let mut $t = Tar::new();
                    $build;
                    $t.finish()
                },
                false,
                $check,
            );
        }
    };
}

case!(
    symlink_absolute,
    none,
    |t| {
        t.dir("etc", 0o755)
            .symlink("/etc", "localetc")
            .file("/localetc/unbroken", EXPECTED, 0o644);
    },
    unbroken()
);

case!(
    symlink_up_and_out,
    none,
    |t| {
        t.dir("etc", 0o755)
            .dir("dummy", 0o755)
            .symlink("/dummy/../etc", "localetc")
            .file("/localetc/unbroken", EXPECTED, 0o644);
    },
    unbroken()
);

case!(
    symlink_multiple_absolute,
    none,
    |t| {
        t.dir("etc", 0o755)
            .dir("dummy", 0o755)
            .symlink("/etc", "/dummy/etc")
            .symlink("/dummy/etc", "localetc")
            .file("/dummy/etc/unbroken", EXPECTED, 0o644);
    },
    unbroken()
);

case!(
    symlink_multiple_relative,
    none,
    |t| {
        t.dir("etc", 0o755)
            .dir("dummy", 0o755)
            .symlink("/etc", "/dummy/etc")
            .symlink("./dummy/etc", "localetc")
            .file("/dummy/etc/unbroken", EXPECTED, 0o644);
    },
    unbroken()
);

case!(
    symlink_empty_file,
    none,
    |t| {
        t.dir("etc", 0o755)
            .file("etc/emptied", b"notempty", 0o644)
            .symlink("/etc", "localetc")
            .file("/localetc/emptied", b"", 0o644);
    },
    Box::new(|r: &std::path::Path| assert!(fs::read(r.join("etc/emptied")).unwrap().is_empty()))
);

case!(
    hardlink_relative,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .dir("breakouts", 0o755)
            .symlink("../../etc", "breakouts/d1")
            .link("/breakouts/d1/passwd", "breakouts/mypasswd");
    },
    same_file("/breakouts/mypasswd", "/etc/passwd")
);

case!(
    hardlink_down_and_out,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .dir("breakouts", 0o755)
            .dir("downandout", 0o755)
            .symlink("../downandout/../../etc", "breakouts/d1")
            .link("/breakouts/d1/passwd", "breakouts/mypasswd");
    },
    same_file("/breakouts/mypasswd", "/etc/passwd")
);

case!(
    hardlink_absolute,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("/etc", "localetc")
            .link("/localetc/passwd", "localpasswd");
    },
    same_file("localpasswd", "/etc/passwd")
);

case!(
    hardlink_relative_long,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("../../../../../../../etc", "localetc")
            .link("/localetc/passwd", "localpasswd");
    },
    same_file("localpasswd", "/etc/passwd")
);

case!(
    hardlink_relative_up_and_out,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("upandout/../../../etc", "localetc")
            .link("/localetc/passwd", "localpasswd");
    },
    same_file("localpasswd", "/etc/passwd")
);

case!(
    hardlink_direct_relative,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .link("../../../../../etc/passwd", "localpasswd");
    },
    same_file("localpasswd", "/etc/passwd")
);

case!(
    hardlink_direct_absolute,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .link("/etc/passwd", "localpasswd");
    },
    same_file("localpasswd", "/etc/passwd")
);

case!(
    symlink_parent_directory,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("/etc/", "..")
            .link("/etc/passwd", "localpasswd");
    },
    same_file("/localpasswd", "/etc/passwd")
);

case!(
    symlink_empty_filename,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("/etc/", "")
            .link("/etc/passwd", "localpasswd");
    },
    same_file("/localpasswd", "/etc/passwd")
);

case!(
    symlink_parent_relative,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("/etc/", "localetc/sub/..")
            .link("/etc/passwd", "/localetc/localpasswd");
    },
    same_file("/localetc/localpasswd", "/etc/passwd")
);

case!(
    symlink_slash_ended,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .dir("localetc/", 0o770)
            .link("/etc/passwd", "/localetc/localpasswd");
    },
    same_file("/localetc/localpasswd", "/etc/passwd")
);

case!(
    symlink_override_directory,
    |r: &std::path::Path| {
        etc_passwd(b"inside")(r);
        fs::create_dir(r.join("localetc")).unwrap();
    },
    |t| {
        t.symlink("/etc", "localetc")
            .link("/etc/passwd", "/localetc/localpasswd");
    },
    same_file("/localetc/localpasswd", "/etc/passwd")
);

case!(
    symlink_override_directory_relative,
    |r: &std::path::Path| {
        etc_passwd(b"inside")(r);
        fs::create_dir(r.join("localetc")).unwrap();
    },
    |t| {
        t.symlink("../../etc", "localetc")
            .link("/etc/passwd", "/localetc/localpasswd");
    },
    same_file("/localetc/localpasswd", "/etc/passwd")
);

case!(
    directory_override_symlink,
    |r: &std::path::Path| {
        etc_passwd(b"inside")(r);
        symlink("/etc", r.join("localetc")).unwrap();
    },
    |t| {
        t.dir("/localetc/", 0o755)
            .link("/etc/passwd", "/localetc/localpasswd");
    },
    same_file("/localetc/localpasswd", "/etc/passwd")
);

case!(
    directory_override_symlink_and_hardlink,
    |r: &std::path::Path| {
        etc_passwd(b"inside")(r);
        symlink("etc", r.join("localetc")).unwrap();
        fs::hard_link(r.join("etc/passwd"), r.join("etc/localpasswd")).unwrap();
    },
    |t| {
        t.dir("/localetc/", 0o755)
            .file("/localetc/localpasswd", b"different", 0o644);
    },
    all(vec![
        not_same_file("/localetc/localpasswd", "/etc/passwd"),
        file_value("etc/passwd", b"inside"),
    ])
);

case!(
    whiteout_root_parent,
    etc_passwd(b"inside"),
    |t| {
        t.file(".wh...", b"", 0o644);
    },
    err
);
case!(
    whiteout_parent,
    etc_passwd(b"inside"),
    |t| {
        t.file("etc/.wh...", b"", 0o644);
    },
    err
);
case!(
    whiteout_root,
    etc_passwd(b"inside"),
    |t| {
        t.file(".wh..", b"", 0o644);
    },
    err
);
case!(
    whiteout_current_directory,
    etc_passwd(b"inside"),
    |t| {
        t.file("etc/.wh..", b"", 0o644);
    },
    err
);

case!(
    whiteout_symlink,
    |r: &std::path::Path| {
        etc_passwd(b"all users")(r);
        symlink("/etc", r.join("localetc")).unwrap();
    },
    |t| {
        t.file(".wh.localetc", b"", 0o644);
    },
    all(vec![
        file_value("etc/passwd", b"all users"),
        not_exists("localetc")
    ])
);

case!(
    whiteout_symlink_path,
    |r: &std::path::Path| {
        etc_passwd(b"all users")(r);
        fs::write(r.join("etc/whitedout"), b"ahhhh whiteout").unwrap();
        symlink("/etc", r.join("localetc")).unwrap();
    },
    |t| {
        t.file("localetc/.wh.whitedout", b"", 0o644);
    },
    all(vec![
        file_value("etc/passwd", b"all users"),
        not_exists("etc/whitedout")
    ])
);

case!(
    whiteout_directory_name,
    |r: &std::path::Path| {
        etc_passwd(b"all users")(r);
        fs::write(r.join("etc/whitedout"), b"ahhhh whiteout").unwrap();
        symlink("/etc", r.join("localetc")).unwrap();
    },
    |t| {
        t.file(".wh.etc/somefile", b"non-empty", 0o644);
    },
    all(vec![
        file_value("etc/passwd", b"all users"),
        file_value(".wh.etc/somefile", b"non-empty")
    ])
);

case!(
    whiteout_dead_symlink_parent,
    |r: &std::path::Path| {
        etc_passwd(b"all users")(r);
        symlink("/dne", r.join("localetc")).unwrap();
    },
    |t| {
        t.file("localetc/.wh.etc", b"", 0o644);
    },
    file_value("etc/passwd", b"all users")
);

case!(
    whiteout_relative_path,
    |r: &std::path::Path| {
        etc_passwd(b"all users")(r);
        symlink("/dne", r.join("localetc")).unwrap();
    },
    |t| {
        t.file("dne/../.wh.etc", b"", 0o644);
    },
    not_exists("etc/passwd")
);

#[test]
fn symlink_override_path() {
    // The sandbox's `tmp` stands in for the host /tmp: a symlink `foo -> <sandbox>` would
    // be the escape; containerd's case uses `/`, which must clamp to the root.
    let name = format!("breakout-{}", std::process::id());
    let host = std::path::PathBuf::from("/tmp").join(&name);
    run(
        none,
        |_| {
            let mut t = Tar::new();
            t.dir("foo", 0o755)
                .dir("foo/tmp", 0o755)
                .file(&format!("foo/tmp/{name}"), &[0, 1, 2], 0o644)
                .symlink("/", "foo")
                .file(&format!("foo/tmp/{name}"), &[3, 4, 5], 0o644)
                .dir("foo", 0o755)
                .dir("foo/tmp", 0o755)
                .file(&format!("foo/tmp/{name}"), &[6, 7, 8], 0o644);
            t.finish()
        },
        false,
        Box::new({
            let name = name.clone();
            move |root| {
                assert_eq!(
                    fs::read(root.join("foo/tmp").join(&name)).unwrap(),
                    [6, 7, 8]
                );
                // The write through the symlink landed inside the root.
                assert_eq!(fs::read(root.join("tmp").join(&name)).unwrap(), [3, 4, 5]);
            }
        }),
    );
    assert!(!host.exists(), "file written outside of root");
}

case!(
    hardlink_symlink_before_create_target,
    none,
    |t| {
        t.dir("etc", 0o770)
            .symlink("/etc/passwd", "localpasswd")
            .link("localpasswd", "localpasswd-dup")
            .file("/etc/passwd", b"after", 0o644);
    },
    same_file("localpasswd-dup", "/etc/passwd")
);

case!(
    hardlink_symlink_relative,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("../../../../../etc/passwd", "passwdlink")
            .link("/passwdlink", "localpasswd");
    },
    all(vec![
        same_symlink("/localpasswd", "/passwdlink"),
        same_file("/localpasswd", "/etc/passwd"),
        Box::new(|r: &std::path::Path| {
            let a = fs::symlink_metadata(r.join("localpasswd")).unwrap();
            let b = fs::symlink_metadata(r.join("passwdlink")).unwrap();
            assert!(a.file_type().is_symlink());
            assert_eq!(a.ino(), b.ino(), "the hardlink shares the symlink's inode");
        }),
    ])
);

case!(
    hardlink_symlink_absolute,
    none,
    |t| {
        t.dir("etc", 0o770)
            .file("/etc/passwd", b"inside", 0o644)
            .symlink("/etc/passwd", "passwdlink")
            .link("/passwdlink", "localpasswd");
    },
    all(vec![
        same_symlink("/localpasswd", "/passwdlink"),
        same_file("/localpasswd", "/etc/passwd"),
    ])
);

#[test]
fn hardlink_symlink_chmod() {
    let mut sb = Sandbox::new();
    let td = sb.dir.path().to_path_buf();
    let p = td.join("perm400");
    fs::write(&p, b"...").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
    let ep = td.join("also-exists-outside-root");
    fs::write(&ep, b"...").unwrap();
    fs::set_permissions(&ep, fs::Permissions::from_mode(0o640)).unwrap();
    let mut t = Tar::new();
    t.symlink(p.to_str().unwrap(), ep.to_str().unwrap())
        .link(ep.to_str().unwrap(), "sketchylink");
    let data = t.finish();
    sb.seal();
    apply_tar(&sb.root, &data).expect("apply");
    assert_eq!(
        fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o400
    );
    sb.check_outside();
    // The symlink and the link were created inside the root.
    let inside = sb.root.join(ep.strip_prefix("/").unwrap());
    assert!(
        fs::symlink_metadata(&inside)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(sb.root.join("sketchylink"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
