//! Overlay upperdir mode: containerd's overlay apply cases, implied parent directories
//! (with the lowerdirs up front, or afterwards through `inherit_dirs` for layers applied
//! in parallel), whiteouts that hide nothing (pruned, or overlayfs would list them), and
//! hardlinks to files of lower layers (copied up, as overlayfs would).

mod common;

use common::{Tar, file, mkdir, overlay_whiteout, snapshot, xattr_set};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_content::ErrorKind;
use strata_diff::{
    ApplyOptions, Compression, OverlayOptions, apply_layer, inherit_dirs, prune_whiteouts,
};

fn walkdir(r: &Path) -> Vec<String> {
    snapshot(r)
        .keys()
        .map(|k| k.to_string_lossy().into_owned())
        .collect()
}
fn overlay_opts(parents: Vec<PathBuf>) -> ApplyOptions {
    ApplyOptions {
        overlay: Some(OverlayOptions { parents }),
        ..Default::default()
    }
}

/// lower (l), upper (u), work (w) and merged (m) directories in a temp dir.
struct Dirs {
    _t: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let x = t.path().join(n);
            fs::create_dir(&x).unwrap();
            x
        };
        let (lower, upper, work, merged) = (d("l"), d("u"), d("w"), d("m"));
        Dirs {
            _t: t,
            lower,
            upper,
            work,
            merged,
        }
    }

    /// Mounts lower+upper, runs `f` on the merged view, unmounts.
    fn merged<R>(&self, f: impl FnOnce(&Path) -> R) -> R {
        let m = strata_snapshot::Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", self.lower.display()),
                format!("upperdir={}", self.upper.display()),
                format!("workdir={}", self.work.display()),
            ],
        };
        let g = strata_snapshot::mount::MountGuard::mount(&[m], &self.merged).unwrap();
        let r = f(&self.merged);
        g.unmount().unwrap();
        r
    }
}

/// containerd's `TestOverlayApply` / `TestOverlayApplyNoParents`: apply into an upperdir
/// with overlay whiteouts, then mount the overlay and check the merged view.
#[test]
fn overlay_apply() {
    for with_parents in [true, false] {
        let d = Dirs::new();
        let (lower, upper) = (&d.lower, &d.upper);
        mkdir(lower, "/etc", 0o750);
        file(lower, "/etc/hosts", b"lower", 0o644);
        file(lower, "/etc/gone", b"lower", 0o644);
        mkdir(lower, "/opq/sub", 0o755);
        file(lower, "/opq/hidden", b"h", 0o644);
        xattr_set(&lower.join("etc"), "user.keep", b"1");
        let mut tb = Tar::new();
        tb.file("etc/new", b"new", 0o644)
            .file("etc/.wh.gone", b"", 0)
            .dir("opq", 0o755)
            .file("opq/.wh..wh..opq", b"", 0)
            .file("opq/fresh", b"f", 0o644);
        let parents = if with_parents {
            vec![lower.clone()]
        } else {
            vec![]
        };
        apply_layer(
            &tb.finish()[..],
            Compression::None,
            upper,
            &overlay_opts(parents),
        )
        .unwrap();
        let wh = fs::symlink_metadata(upper.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert_eq!(
            common::xattr_get(&upper.join("opq"), "trusted.overlay.opaque"),
            b"y"
        );
        let etc = fs::metadata(upper.join("etc")).unwrap();
        if with_parents {
            assert_eq!(
                etc.mode() & 0o7777,
                0o750,
                "implied parent copies the lower's mode"
            );
            assert_eq!(common::xattr_get(&upper.join("etc"), "user.keep"), b"1");
        } else {
            assert_eq!(etc.mode() & 0o7777, 0o755);
        }
        let mut seen = d.merged(walkdir);
        seen.sort();
        assert_eq!(seen, ["etc", "etc/hosts", "etc/new", "opq", "opq/fresh"]);
    }
}

/// A lower tree and a layer that needs implied parents: `etc` (in the lower, mode 0750,
/// an xattr), `var/lib` (whiteout inside a lower-only dir) and `new/deep` (in no lower).
fn implied_case(d: &Dirs) -> Vec<u8> {
    mkdir(&d.lower, "/etc", 0o750);
    file(&d.lower, "/etc/hosts", b"lower", 0o644);
    mkdir(&d.lower, "/var/lib", 0o711);
    file(&d.lower, "/var/lib/gone", b"x", 0o644);
    xattr_set(&d.lower.join("etc"), "user.keep", b"1");
    let mut tb = Tar::new();
    tb.file("etc/new", b"new", 0o644)
        .file("var/lib/.wh.gone", b"", 0)
        .file("new/deep/f", b"f", 0o644)
        .dir("explicit", 0o700)
        .file("explicit/f", b"e", 0o644);
    tb.finish()
}

/// Applied with its lowerdirs, implied parents (also of whiteouts) copy the lower's
/// metadata; applied without, they are reported, and `inherit_dirs` afterwards gives the
/// very same upperdir.
#[test]
fn implied_parents_now_or_later() {
    let with = Dirs::new();
    let layer = implied_case(&with);
    let s = apply_layer(
        &layer[..],
        Compression::None,
        &with.upper,
        &overlay_opts(vec![with.lower.clone()]),
    )
    .unwrap();
    let mode = |r: &Path, n: &str| fs::metadata(r.join(n)).unwrap().mode() & 0o7777;
    assert_eq!(mode(&with.upper, "etc"), 0o750);
    assert_eq!(
        mode(&with.upper, "var/lib"),
        0o711,
        "parent of a whiteout copies the lower's mode"
    );
    assert_eq!(
        common::xattr_get(&with.upper.join("etc"), "user.keep"),
        b"1"
    );
    // Only the dirs no lower has are reported.
    let mut reported = s.implied_dirs.clone();
    reported.sort();
    assert_eq!(reported, [PathBuf::from("new"), PathBuf::from("new/deep")]);

    let later = Dirs::new();
    let layer = implied_case(&later);
    let s = apply_layer(
        &layer[..],
        Compression::None,
        &later.upper,
        &overlay_opts(vec![]),
    )
    .unwrap();
    let mut reported: Vec<String> = s
        .implied_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    reported.sort();
    assert_eq!(reported, ["etc", "new", "new/deep", "var", "var/lib"]);
    assert_eq!(
        mode(&later.upper, "etc"),
        0o755,
        "default before inheriting"
    );
    inherit_dirs(
        &later.upper,
        std::slice::from_ref(&later.lower),
        &s.implied_dirs,
    )
    .unwrap();
    assert_eq!(mode(&later.upper, "etc"), 0o750);
    assert_eq!(mode(&later.upper, "var/lib"), 0o711);
    assert_eq!(
        common::xattr_get(&later.upper.join("etc"), "user.keep"),
        b"1"
    );
    // The same tree. Directory mtimes differ by design: applied with its lowers, an
    // implied dir gets the lower's times before its children are created (containerd
    // does the same); inherited later, it keeps the lower's times.
    let strip = |r: &Path| {
        let mut m = common::snapshot_with(
            r,
            &common::SnapOpts {
                mtimes: true,
                dir_mtimes: false,
                xattr_filter: common::default_xattr_filter,
            },
        );
        for n in m.values_mut() {
            n.xattrs.retain(|(k, _)| !k.starts_with("trusted."));
            if n.kind == "char" {
                n.mtime = None; // whiteouts carry their creation time
            }
        }
        m
    };
    assert_eq!(strip(&with.upper), strip(&later.upper));
    // Times of inherited dirs are the lower's.
    let mt = |r: &Path, n: &str| fs::metadata(r.join(n)).unwrap().mtime();
    assert_eq!(mt(&later.upper, "etc"), mt(&later.lower, "etc"));
}

/// `inherit_dirs` skips directories that are gone or were never in any lower, and does
/// nothing without lowers.
#[test]
fn inherit_dirs_skips_what_is_not_there() {
    let d = Dirs::new();
    mkdir(&d.lower, "/a", 0o700);
    mkdir(&d.upper, "/b", 0o755);
    inherit_dirs(
        &d.upper,
        std::slice::from_ref(&d.lower),
        &[PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c/d")],
    )
    .unwrap();
    assert!(!d.upper.join("a").exists());
    assert_eq!(
        fs::metadata(d.upper.join("b")).unwrap().mode() & 0o7777,
        0o755
    );
    inherit_dirs(&d.upper, &[], &[PathBuf::from("b")]).unwrap();
}

/// A hardlink to a file of a lower layer: with the lowerdirs, the target is copied up
/// (content, mode, owner, xattrs, times) and linked, so the merged view has one inode
/// under both names; without them the layer is refused (the pull then applies it again,
/// in order, with its lowerdirs).
#[test]
fn hardlink_to_lower_file_copies_up() {
    let d = Dirs::new();
    mkdir(&d.lower, "/bin", 0o755);
    file(&d.lower, "/bin/tool", b"#!/bin/sh\necho hi\n", 0o755);
    std::os::unix::fs::lchown(d.lower.join("bin/tool"), Some(7), Some(8)).unwrap();
    fs::set_permissions(d.lower.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    xattr_set(&d.lower.join("bin/tool"), "user.tag", b"v");
    mkdir(&d.lower, "/gone", 0o755);
    file(&d.lower, "/gone/f", b"x", 0o644);
    let mut tb = Tar::new();
    tb.dir("usr", 0o755)
        .link("bin/tool", "usr/tool-alias")
        .file("gone/.wh.f", b"", 0);
    let layer = tb.finish();

    let bare = Dirs::new();
    mkdir(&bare.lower, "/bin", 0o755);
    file(&bare.lower, "/bin/tool", b"t", 0o755);
    let e = apply_layer(
        &layer[..],
        Compression::None,
        &bare.upper,
        &overlay_opts(vec![]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    apply_layer(
        &layer[..],
        Compression::None,
        &d.upper,
        &overlay_opts(vec![d.lower.clone()]),
    )
    .unwrap();
    let up = fs::symlink_metadata(d.upper.join("bin/tool")).unwrap();
    let alias = fs::symlink_metadata(d.upper.join("usr/tool-alias")).unwrap();
    assert_eq!(up.ino(), alias.ino());
    assert_eq!(up.mode() & 0o7777, 0o4755);
    assert_eq!((up.uid(), up.gid()), (7, 8));
    assert_eq!(
        common::xattr_get(&d.upper.join("bin/tool"), "user.tag"),
        b"v"
    );
    let low = fs::symlink_metadata(d.lower.join("bin/tool")).unwrap();
    assert_eq!(up.mtime(), low.mtime());
    let (same_inode, content) = d.merged(|m| {
        let a = fs::metadata(m.join("bin/tool")).unwrap();
        let b = fs::metadata(m.join("usr/tool-alias")).unwrap();
        (
            a.ino() == b.ino(),
            fs::read(m.join("usr/tool-alias")).unwrap(),
        )
    });
    assert!(same_inode);
    assert_eq!(content, b"#!/bin/sh\necho hi\n");

    // A hardlink to a whited-out lower file is still refused.
    let w = Dirs::new();
    mkdir(&w.lower, "/x", 0o755);
    file(&w.lower, "/x/f", b"x", 0o644);
    let mid = w.lower.parent().unwrap().join("mid");
    fs::create_dir_all(mid.join("x")).unwrap();
    overlay_whiteout(&mid.join("x/f"));
    let mut tb = Tar::new();
    tb.link("x/f", "y");
    let e = apply_layer(
        &tb.finish()[..],
        Compression::None,
        &w.upper,
        &overlay_opts(vec![mid.clone(), w.lower.clone()]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        fs::symlink_metadata(mid.join("x/f"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

/// Lookups through the lowerdirs follow the merged view: a whiteout, a symlink or an
/// opaque directory in a higher layer hides what the layers below have on that path —
/// for implied parents (no metadata from a deleted dir) and for copy-up (no resurrecting
/// a deleted file).
#[test]
fn lower_lookups_follow_the_merged_view() {
    let d = Dirs::new();
    let (low, top) = (d.lower.clone(), d.lower.parent().unwrap().join("top"));
    for (path, mode) in [("/wh/x", 0o700), ("/opq/b", 0o700), ("/sym/b", 0o700)] {
        mkdir(&low, path, mode);
        file(&low, &format!("{path}/f"), b"old", 0o644);
    }
    // top: wh/x whited out, opq opaque (and empty), sym a symlink.
    fs::create_dir_all(top.join("wh")).unwrap();
    overlay_whiteout(&top.join("wh/x"));
    fs::create_dir_all(top.join("opq")).unwrap();
    xattr_set(&top.join("opq"), "trusted.overlay.opaque", b"y");
    std::os::unix::fs::symlink("/elsewhere", top.join("sym")).unwrap();
    let parents = vec![top.clone(), low.clone()];

    // Implied parents under each: default metadata, reported.
    let mut tb = Tar::new();
    tb.file("wh/x/new", b"n", 0o644)
        .file("opq/b/new", b"n", 0o644);
    let s = apply_layer(
        &tb.finish()[..],
        Compression::None,
        &d.upper,
        &overlay_opts(parents.clone()),
    )
    .unwrap();
    for p in ["wh/x", "opq/b"] {
        assert_eq!(
            fs::metadata(d.upper.join(p)).unwrap().mode() & 0o7777,
            0o755,
            "{p} must not take the hidden lower dir's mode"
        );
        assert!(s.implied_dirs.contains(&PathBuf::from(p)), "{p} reported");
    }
    // Copy-up of a hidden file is refused like any hardlink to a missing file.
    for target in ["wh/x/f", "opq/b/f", "sym/b/f"] {
        let u = tempfile::tempdir().unwrap();
        let mut tb = Tar::new();
        tb.link(target, "alias");
        let e = apply_layer(
            &tb.finish()[..],
            Compression::None,
            u.path(),
            &overlay_opts(parents.clone()),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{target}: {e}");
        assert!(!u.path().join("alias").exists());
    }
    // Nothing left the upperdir: the symlink was not followed.
    assert!(!Path::new("/elsewhere").exists());
}

/// Whiteouts that hide nothing are removed once the lowerdirs are known: one inside a
/// directory of the layer's own and one below an opaque directory (overlayfs lists both,
/// and `stat` of them fails), one of a path no lower has; the one that hides a lower file
/// stays, as does an entry a later tar entry put in a whiteout's place. Checked on the
/// mounted overlay: every listed name can be stat'ed.
#[test]
fn prune_whiteouts_keeps_only_those_that_hide_something() {
    let d = Dirs::new();
    file(&d.lower, "/present", b"p", 0o644);
    mkdir(&d.lower, "/opq", 0o755);
    file(&d.lower, "/opq/x", b"x", 0o644);
    let mut tb = Tar::new();
    tb.file("newdir/a", b"a", 0o644)
        .file("newdir/.wh.ghost", b"", 0)
        .file(".wh.absent", b"", 0)
        .file(".wh.present", b"", 0)
        .file("opq/.wh..wh..opq", b"", 0)
        .file("opq/.wh.x", b"", 0)
        .file(".wh.back", b"", 0)
        .file("back", b"b", 0o644);
    let stats = apply_layer(
        &tb.finish()[..],
        Compression::None,
        &d.upper,
        &overlay_opts(vec![]),
    )
    .unwrap();
    let mut made: Vec<String> = stats
        .whiteouts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    made.sort();
    assert_eq!(made, ["absent", "back", "newdir/ghost", "opq/x", "present"]);
    // readdir, then lstat each name (d_type says which are directories to descend).
    fn listed_but_missing(m: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![m.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                if fs::symlink_metadata(e.path()).is_err() {
                    let rel = e.path().strip_prefix(m).unwrap().display().to_string();
                    out.push(rel);
                } else if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
    let leaks = ["newdir/ghost", "opq/x"];
    assert_eq!(d.merged(listed_but_missing), leaks, "what overlayfs lists");
    prune_whiteouts(&d.upper, std::slice::from_ref(&d.lower), &stats.whiteouts).unwrap();
    let mut left = walkdir(&d.upper);
    left.sort();
    assert_eq!(left, ["back", "newdir", "newdir/a", "opq", "present"]);
    assert!(d.merged(listed_but_missing).is_empty());
    let mut seen = d.merged(walkdir);
    seen.sort();
    assert_eq!(seen, ["back", "newdir", "newdir/a", "opq"]);
}
