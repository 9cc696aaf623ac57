use crate::Snapshotter;
use crate::native::NativeSnapshotter;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use strata_content::Labels;

/// Every entry under `root`: path, mode, owner and content (or link target).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                format!("{} n{}", std::fs::read_to_string(&p).unwrap(), m.nlink())
            } else {
                format!("rdev {}", m.rdev())
            };
            let rel = p.strip_prefix(root).unwrap().display();
            out.push(format!(
                "{rel} {:o} {}:{} {what}",
                m.mode(),
                m.uid(),
                m.gid()
            ));
        }
    }
    out.sort();
    out
}

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn mkdir(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An overlay whiteout (0:0 character device).
fn whiteout(root: &Path, rel: &str) {
    let p = root.join(rel);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

fn opaque(root: &Path, rel: &str) {
    let p = root.join(rel);
    rustix::fs::setxattr(&p, super::OPAQUE, b"y", rustix::fs::XattrFlags::empty()).unwrap();
}

fn dir_of(m: &[crate::Mount]) -> std::path::PathBuf {
    crate::overlay::upperdir(m).unwrap()
}

/// A native rebase builds the tree an in-order apply would: whiteouts delete (whole
/// directories too), opaque directories replace, a file replaces a directory and the
/// reverse, a merged directory takes the layer's owner and mode, markers inside a new
/// directory vanish, hardlinks within the layer survive; the parent is untouched and only
/// the snapshots' own directories are left.
#[tokio::test]
async fn native_rebase_merges_the_layer_into_a_copy_of_its_parent() {
    let d = tempfile::tempdir().unwrap();
    let sn = NativeSnapshotter::open(d.path()).unwrap();
    let base = dir_of(&sn.prepare("b", "", Labels::new()).await.unwrap());
    for f in [
        "var/a",
        "var/sub/b",
        "was_file",
        "was_dir/inner",
        "gone/deep/f",
        "keep/old",
        "rm",
    ] {
        write(&base, f, f);
    }
    sn.commit("base", "b", Labels::new()).await.unwrap();
    let before = listing(&base);

    let l = dir_of(&sn.prepare("l", "", Labels::new()).await.unwrap());
    write(&l, "var/new", "n");
    opaque(&l, "var");
    write(&l, "was_dir", "now a file");
    write(&l, "was_file/child", "c");
    whiteout(&l, "gone");
    whiteout(&l, "rm");
    whiteout(&l, "absent");
    write(&l, "newdir/a", "a");
    whiteout(&l, "newdir/ghost");
    mkdir(&l, "newdir/inner", 0o755);
    opaque(&l, "newdir/inner");
    write(&l, "links/orig", "o");
    std::fs::hard_link(l.join("links/orig"), l.join("links/alias")).unwrap();
    std::os::unix::fs::symlink("keep/old", l.join("lnk")).unwrap();
    mkdir(&l, "keep", 0o700);
    std::os::unix::fs::chown(l.join("keep"), Some(7), Some(8)).unwrap();
    write(&l, "keep/added", "added");
    sn.commit_rebase("top", "l", "base", Labels::new())
        .await
        .unwrap();

    assert_eq!(sn.stat("top").await.unwrap().parent, "base");
    let v = sn.view("v", "top", Labels::new()).await.unwrap();
    let got = listing(Path::new(&v[0].source));
    let want = [
        "keep 40700 7:8 dir",
        "keep/added 100644 0:0 added n1",
        "keep/old 100644 0:0 keep/old n1",
        "links 40755 0:0 dir",
        "links/alias 100644 0:0 o n2",
        "links/orig 100644 0:0 o n2",
        "lnk 120777 0:0 -> keep/old",
        "newdir 40755 0:0 dir",
        "newdir/a 100644 0:0 a n1",
        "newdir/inner 40755 0:0 dir",
        "var 40755 0:0 dir",
        "var/new 100644 0:0 n n1",
        "was_dir 100644 0:0 now a file n1",
        "was_file 40755 0:0 dir",
        "was_file/child 100644 0:0 c n1",
    ];
    assert_eq!(got, want);
    let mut x = [0u8; 2];
    let inner = Path::new(&v[0].source).join("newdir/inner");
    assert!(
        rustix::fs::getxattr(&inner, super::OPAQUE, &mut x).is_err(),
        "the marker of a new directory is removed"
    );
    let v = sn.view("vb", "base", Labels::new()).await.unwrap();
    assert_eq!(
        listing(Path::new(&v[0].source)),
        before,
        "the parent is untouched"
    );
    sn.remove("v").await.unwrap();
    sn.remove("vb").await.unwrap();
    let entries = std::fs::read_dir(d.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(entries, 2, "only the two snapshots' directories are left");
}

/// Misuse is refused before the layer is touched; rebasing onto the parent a snapshot
/// already has is a plain commit.
#[tokio::test]
async fn native_rebase_checks_before_it_moves_anything() {
    let d = tempfile::tempdir().unwrap();
    let sn = NativeSnapshotter::open(d.path()).unwrap();
    let b = dir_of(&sn.prepare("b", "", Labels::new()).await.unwrap());
    write(&b, "f", "base");
    sn.commit("base", "b", Labels::new()).await.unwrap();
    let l = dir_of(&sn.prepare("l", "", Labels::new()).await.unwrap());
    write(&l, "g", "layer");
    let e = sn
        .commit_rebase("base", "l", "base", Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    let e = sn
        .commit_rebase("x", "l", "missing", Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    sn.prepare("other", "", Labels::new()).await.unwrap();
    let e = sn
        .commit_rebase("x", "l", "other", Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert_eq!(listing(&l), ["g 100644 0:0 layer n1"], "untouched");

    let c = dir_of(&sn.prepare("c", "base", Labels::new()).await.unwrap());
    write(&c, "h", "child");
    sn.commit_rebase("child", "c", "base", Labels::new())
        .await
        .unwrap();
    let v = sn.view("v", "child", Labels::new()).await.unwrap();
    assert_eq!(
        listing(Path::new(&v[0].source)),
        ["f 100644 0:0 base n1", "h 100644 0:0 child n1"]
    );
    let e = sn
        .commit_rebase("y", "c2", "base", Labels::new())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}
