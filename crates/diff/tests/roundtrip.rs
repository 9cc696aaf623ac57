//! continuity's `fstest.FSSuite` as containerd's `TestDiffApply` runs it: each step is
//! applied to an expected tree and to a copy of the running base; the diff of base→copy
//! is written as a layer and applied onto the base, which must then equal the expected
//! tree. Run with the double walk and, for the suites where overlayfs copy-up keeps the
//! same semantics, with the overlay upperdir walk over a real overlay mount.

mod common;

use common::{SnapOpts, apply_tar, snapshot_with};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_diff::compare::{self, ChangeWriter, WriterOptions};
use strata_snapshot::Mount;
use strata_snapshot::mount::MountGuard;

type Step = Box<dyn Fn(&Path)>;

fn p(root: &Path, s: &str) -> PathBuf {
    root.join(s.trim_start_matches('/'))
}
fn create_dir(s: &'static str, mode: u32) -> impl Fn(&Path) {
    move |r| {
        fs::create_dir_all(p(r, s)).unwrap();
        fs::set_permissions(p(r, s), fs::Permissions::from_mode(mode)).unwrap();
    }
}
fn create_file(s: &'static str, data: &'static [u8], mode: u32) -> impl Fn(&Path) {
    move |r| {
        fs::write(p(r, s), data).unwrap();
        fs::set_permissions(p(r, s), fs::Permissions::from_mode(mode)).unwrap();
    }
}
fn link(old: &'static str, new: &'static str) -> impl Fn(&Path) {
    move |r| fs::hard_link(p(r, old), p(r, new)).unwrap()
}
fn sym(target: &'static str, new: &'static str) -> impl Fn(&Path) {
    move |r| symlink(target, p(r, new)).unwrap()
}
fn remove(s: &'static str) -> impl Fn(&Path) {
    move |r| fs::remove_file(p(r, s)).unwrap()
}
fn remove_all(s: &'static str) -> impl Fn(&Path) {
    move |r| fs::remove_dir_all(p(r, s)).unwrap()
}
fn rename(a: &'static str, b: &'static str) -> impl Fn(&Path) {
    move |r| {
        assert!(
            Command::new("mv")
                .arg(p(r, a))
                .arg(p(r, b))
                .status()
                .unwrap()
                .success()
        )
    }
}
fn chmod(s: &'static str, mode: u32) -> impl Fn(&Path) {
    move |r| fs::set_permissions(p(r, s), fs::Permissions::from_mode(mode)).unwrap()
}

macro_rules! apply {
    ($($f:expr),* $(,)?) => {{
        let fs: Vec<Box<dyn Fn(&Path)>> = vec![$(Box::new($f)),*];
        Box::new(move |r: &Path| fs.iter().for_each(|f| f(r))) as Step
    }};
}

fn base_applier() -> Step {
    apply!(
        create_dir("/etc/", 0o755),
        create_file("/etc/hosts", b"127.0.0.1 localhost", 0o644),
        link("/etc/hosts", "/etc/hosts.allow"),
        create_dir("/usr/local/lib", 0o755),
        create_file("/usr/local/lib/libnothing.so", &[0, 0], 0o755),
        sym("libnothing.so", "/usr/local/lib/libnothing.so.2"),
        create_dir("/home", 0o755),
        create_dir("/home/derek", 0o700),
    )
}

fn basic() -> Vec<Step> {
    vec![
        base_applier(),
        apply!(
            create_file("/etc/hosts", b"127.0.0.1 localhost.localdomain", 0o644),
            create_file("/etc/fstab", b"/dev/sda1\t/\text4\tdefaults 1 1\n", 0o600),
            create_file("/etc/badfile", b"", 0o666),
            create_file("/home/derek/.zshrc", b"#ZSH is just better\n", 0o640),
        ),
        apply!(
            remove("/etc/badfile"),
            rename("/home/derek", "/home/notderek")
        ),
        apply!(remove_all("/usr"), remove("/etc/hosts.allow")),
        apply!(
            remove_all("/home"),
            create_dir("/home/derek", 0o700),
            create_file("/home/derek/.bashrc", b"#not going away\n", 0o640),
            link("/etc/hosts", "/etc/hosts.allow"),
        ),
    ]
}

fn deletion() -> Vec<Step> {
    vec![
        apply!(
            create_dir("/test/somedir", 0o755),
            create_dir("/lib", 0o700),
            create_file("/lib/hidden", b"", 0o644),
        ),
        apply!(
            create_file("/test/a", b"", 0o644),
            create_file("/test/b", b"", 0o644),
            create_dir("/test/otherdir", 0o755),
            create_file("/test/otherdir/.empty", b"", 0o644),
            remove_all("/lib"),
            create_dir("/lib", 0o700),
            create_file("/lib/not-hidden", b"", 0o644),
        ),
        apply!(
            remove("/test/a"),
            remove("/test/b"),
            remove_all("/test/otherdir"),
            create_file("/lib/newfile", b"", 0o644),
        ),
    ]
}

fn update() -> Vec<Step> {
    vec![
        apply!(
            create_dir("/d1", 0o755),
            create_dir("/d2", 0o700),
            create_file("/d1/f1", b"something...", 0o644),
            create_file("/d1/f2", b"else...", 0o644),
            create_file("/d1/f3", b"entirely...", 0o644),
        ),
        apply!(
            create_file("/d1/f1", b"file content of a different length", 0o664),
            remove("/d1/f3"),
            create_file("/d1/f3", b"updated content", 0o664),
            chmod("/d1/f2", 0o766),
            chmod("/d2", 0o777),
        ),
    ]
}

fn directory_permission() -> Vec<Step> {
    vec![
        apply!(
            create_dir("/d1", 0o700),
            create_dir("/d2", 0o751),
            create_dir("/d3", 0o777)
        ),
        apply!(
            create_file("/d1/f", b"irrelevant", 0o644),
            create_dir("/d1/d", 0o700),
            create_file("/d1/d/f", b"irrelevant", 0o644),
            create_file("/d2/f", b"irrelevant", 0o644),
            create_file("/d3/f", b"irrelevant", 0o644),
        ),
    ]
}

fn parent_directory_permission() -> Vec<Step> {
    vec![
        apply!(
            create_dir("/d1", 0o700),
            create_dir("/d1/a", 0o700),
            create_dir("/d1/a/b", 0o700),
            create_dir("/d1/a/b/c", 0o700),
            create_file("/d1/a/b/f", b"content1", 0o644),
            create_dir("/d2", 0o751),
            create_dir("/d2/a/b", 0o751),
            create_dir("/d2/a/b/c", 0o751),
            create_file("/d2/a/b/f", b"content1", 0o644),
        ),
        apply!(
            create_file("/d1/a/b/f", b"content1", 0o644),
            chmod("/d1/a/b/c", 0o700),
            create_file("/d2/a/b/f", b"content2", 0o644),
            chmod("/d2/a/b/c", 0o751),
        ),
    ]
}

fn hardlink_unmodified() -> Vec<Step> {
    vec![
        base_applier(),
        apply!(create_file(
            "/etc/hosts",
            b"127.0.0.1 localhost.localdomain",
            0o644
        )),
        apply!(link("/etc/hosts", "/etc/hosts.deny")),
    ]
}

fn hardlink_before_unmodified() -> Vec<Step> {
    vec![
        base_applier(),
        apply!(create_file(
            "/etc/hosts",
            b"127.0.0.1 localhost.localdomain",
            0o644
        )),
        apply!(link("/etc/hosts", "/etc/before-hosts")),
    ]
}

fn hardlink_before_modified() -> Vec<Step> {
    vec![
        base_applier(),
        apply!(create_file(
            "/etc/hosts",
            b"127.0.0.1 localhost.localdomain",
            0o644
        )),
        apply!(
            remove("/etc/hosts"),
            create_file("/etc/hosts", b"127.0.0.1 localhost", 0o644),
            link("/etc/hosts", "/etc/before-hosts"),
        ),
    ]
}

fn manifest(root: &Path) -> std::collections::BTreeMap<PathBuf, common::Node> {
    snapshot_with(
        root,
        &SnapOpts {
            mtimes: false,
            dir_mtimes: false,
            xattr_filter: |k| !k.starts_with("trusted.overlay.") && k != "security.selinux",
        },
    )
}

/// Double walk: base → copy (step applied) → layer → applied onto base.
fn suite_walk(steps: Vec<Step>) {
    let expected = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    for (i, step) in steps.iter().enumerate() {
        let work = tempfile::tempdir().unwrap();
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", base.path().display()))
                .arg(work.path())
                .status()
                .unwrap()
                .success()
        );
        step(work.path());
        step(expected.path());
        let cw = ChangeWriter::new(Vec::new(), work.path(), WriterOptions::default());
        let cw = std::cell::RefCell::new(cw);
        compare::walk::changes_with_links(
            Some(base.path()),
            work.path(),
            &mut |c| cw.borrow_mut().handle(c),
            &mut |p| cw.borrow_mut().unchanged(p),
        )
        .unwrap();
        let cw = cw.into_inner();
        let tar = cw.finish().unwrap();
        if std::env::var("DEBUG_TAR").is_ok() {
            fs::write(format!("/tmp/dbg-{i}.tar"), &tar).unwrap();
        }
        apply_tar(base.path(), &tar).unwrap();
        assert_eq!(manifest(expected.path()), manifest(base.path()), "step {i}");
    }
}

/// Overlay: each step is applied through a real overlay mount over the base; the upperdir
/// alone gives the layer, applied onto the base.
fn suite_overlay(steps: Vec<Step>) {
    let expected = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    for (i, step) in steps.iter().enumerate() {
        let t = tempfile::tempdir().unwrap();
        let (upper, work, merged) = (
            t.path().join("upper"),
            t.path().join("work"),
            t.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", base.path().display()),
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
            ],
        };
        let g = MountGuard::mount(&[m], &merged).unwrap();
        step(&merged);
        g.unmount().unwrap();
        step(expected.path());
        let mut cw = ChangeWriter::new(Vec::new(), &upper, WriterOptions::default());
        compare::overlay::changes(&upper, &[base.path().to_path_buf()], &mut |c| cw.handle(c))
            .unwrap();
        let tar = cw.finish().unwrap();
        apply_tar(base.path(), &tar).unwrap();
        assert_eq!(manifest(expected.path()), manifest(base.path()), "step {i}");
    }
}

#[test]
fn basic_walk() {
    suite_walk(basic());
}
#[test]
fn deletion_walk() {
    suite_walk(deletion());
}
#[test]
fn update_walk() {
    suite_walk(update());
}
#[test]
fn directory_permission_walk() {
    suite_walk(directory_permission());
}
#[test]
fn parent_directory_permission_walk() {
    suite_walk(parent_directory_permission());
}
#[test]
fn hardlink_unmodified_walk() {
    suite_walk(hardlink_unmodified());
}
#[test]
fn hardlink_before_unmodified_walk() {
    suite_walk(hardlink_before_unmodified());
}
#[test]
fn hardlink_before_modified_walk() {
    suite_walk(hardlink_before_modified());
}

// `Basic` and the hardlink suites are not run through overlayfs: copy-up breaks hard
// links (without index=on), so the merged view legitimately differs from the plain tree.
#[test]
fn deletion_overlay() {
    suite_overlay(deletion());
}
#[test]
fn update_overlay() {
    suite_overlay(update());
}
#[test]
fn directory_permission_overlay() {
    suite_overlay(directory_permission());
}
#[test]
fn parent_directory_permission_overlay() {
    suite_overlay(parent_directory_permission());
}
