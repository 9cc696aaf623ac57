//! Interop with real peers: a layer strata applies gives the same tree as `umoci unpack`
//! and GNU `tar` for the same blobs; a layer strata's tar writer produces is applied by
//! umoci and GNU tar to the identical tree. Missing tools skip unless
//! STRATA_REQUIRE_PEERS=1.

mod common;

use common::{SnapOpts, Tar, have_tool, snapshot_with};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_diff::compare::{self, ChangeWriter, WriterOptions};
use strata_diff::{Compression, Encoding, apply_layer};
use tar::EntryType;

fn assert_same(a: BTreeMap<PathBuf, common::Node>, b: BTreeMap<PathBuf, common::Node>, what: &str) {
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!("{}: {:?} != {:?}", k.display(), a.get(k), b.get(k)));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

fn tree(root: &Path) -> BTreeMap<PathBuf, common::Node> {
    // Directory mtimes are not compared: tools differ in when they restore them around
    // whiteout removal; every other field (incl. file/symlink ns mtimes) is.
    snapshot_with(
        root,
        &SnapOpts {
            mtimes: true,
            dir_mtimes: false,
            xattr_filter: |k| k.starts_with("user."),
        },
    )
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = strata_diff::compression::encoder(Vec::new(), Encoding::default()).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha(data: &[u8]) -> String {
    strata_content::digest::sha256(data).to_string()
}

/// Writes an OCI layout with one image `latest` of the given (gzip) layers.
fn layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut strata_diff::compression::decoder(&l[..], Compression::Gzip).unwrap(),
            &mut plain,
        )
        .unwrap();
        diff_ids.push(sha(&plain));
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(l), "size": l.len()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": descs
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len(),
                        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn umoci_unpack(layers: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    layout(&t.path().join("oci"), layers);
    let bundle = t.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", t.path().join("oci").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (t, bundle.join("rootfs"))
}

fn gnu_tar_x(tar: &[u8], dest: &Path) {
    let mut c = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
            "-xpf",
            "-",
            "-C",
        ])
        .arg(dest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(tar).unwrap();
    assert!(c.wait().unwrap().success());
}

/// A base layer with the awkward cases: owners, setuid/sticky, ns mtimes, xattrs,
/// symlinks, hardlinks (incl. to a symlink), devices, fifos, PAX long names.
fn nasty_base() -> Vec<u8> {
    let long = format!("deep/{}/{}", "l".repeat(110), "f".repeat(120));
    let mut t = Tar::new();
    t.dir("bin", 0o755)
        .entry_full(
            EntryType::Regular,
            "bin/su",
            "",
            0o4755,
            0,
            0,
            b"#!su",
            &[("mtime", b"1700000000.5")],
        )
        .dir("tmp", 0o1777)
        .entry_full(
            EntryType::Directory,
            "home",
            "",
            0o750,
            1000,
            1000,
            b"",
            &[],
        )
        .entry_full(
            EntryType::Regular,
            "home/file",
            "",
            0o640,
            1000,
            100,
            b"owned",
            &[("SCHILY.xattr.user.note", b"hello")],
        )
        .link("home/file", "home/hard")
        .symlink("../bin/su", "home/su-link")
        .link("home/su-link", "home/link-to-symlink")
        .entry_full(EntryType::Char, "null", "", 0o666, 0, 0, b"", &[])
        .entry_full(EntryType::Fifo, "fifo", "", 0o600, 0, 0, b"", &[])
        .dir("deep", 0o755)
        .dir(&format!("deep/{}", "l".repeat(110)), 0o755)
        .file(&long, b"long", 0o644)
        .dir("opq", 0o755)
        .file("opq/lower", b"lower", 0o644)
        .dir("gone", 0o755)
        .file("gone/x", b"x", 0o644)
        .file("rm", b"rm", 0o644);
    t.finish()
}

/// A second layer: whiteouts, an opaque directory, a replaced file.
fn nasty_top() -> Vec<u8> {
    let mut t = Tar::new();
    t.file(".wh.gone", b"", 0)
        .file(".wh.rm", b"", 0)
        .dir("opq", 0o700)
        .file("opq/.wh..wh..opq", b"", 0)
        .file("opq/upper", b"upper", 0o644)
        .entry_full(
            EntryType::Regular,
            "home/file",
            "",
            0o600,
            1000,
            100,
            b"replaced",
            &[],
        );
    t.finish()
}

fn strata_apply(layers: &[&[u8]]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for l in layers {
        apply_layer(*l, Compression::None, d.path(), &Default::default()).unwrap();
    }
    d
}

#[test]
fn strata_apply_matches_umoci_unpack() {
    if !have_tool("umoci") {
        return;
    }
    let (b, t) = (nasty_base(), nasty_top());
    let ours = strata_apply(&[&b, &t]);
    let (_keep, rootfs) = umoci_unpack(&[gz(&b), gz(&t)]);
    let (a, u) = (tree(ours.path()), tree(&rootfs));
    assert!(a.contains_key(Path::new("opq/upper")) && !a.contains_key(Path::new("opq/lower")));
    assert_eq!(a, u);
}

#[test]
fn strata_apply_matches_gnu_tar() {
    if !have_tool("tar") {
        return;
    }
    // GNU tar does not apply whiteouts, so compare the single base layer.
    let b = nasty_base();
    let ours = strata_apply(&[&b]);
    let theirs = tempfile::tempdir().unwrap();
    gnu_tar_x(&b, theirs.path());
    assert_eq!(tree(ours.path()), tree(theirs.path()));
}

fn diff(lower: Option<&Path>, upper: &Path) -> Vec<u8> {
    let cw = std::cell::RefCell::new(ChangeWriter::new(
        Vec::new(),
        upper,
        WriterOptions::default(),
    ));
    compare::walk::changes_with_links(lower, upper, &mut |c| cw.borrow_mut().handle(c), &mut |p| {
        cw.borrow_mut().unchanged(p)
    })
    .unwrap();
    cw.into_inner().finish().unwrap()
}

#[test]
fn strata_layers_are_applied_identically_by_umoci_and_gnu_tar() {
    if !have_tool("umoci") || !have_tool("tar") {
        return;
    }
    // Trees built by applying the nasty layers, then changed on disk.
    let base = strata_apply(&[&nasty_base()]);
    let changed = tempfile::tempdir().unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.path().display()))
            .arg(changed.path())
            .status()
            .unwrap()
            .success()
    );
    let c = changed.path();
    fs::remove_dir_all(c.join("gone")).unwrap();
    fs::remove_file(c.join("rm")).unwrap();
    fs::write(c.join("home/file"), b"rewritten through the hardlink").unwrap();
    fs::hard_link(c.join("home/file"), c.join("bin/another-link")).unwrap();
    fs::create_dir(c.join("newdir")).unwrap();
    std::os::unix::fs::symlink("/abs/target", c.join("newdir/abs")).unwrap();
    fs::write(c.join(format!("newdir/{}", "n".repeat(150))), b"long").unwrap();

    let l1 = diff(None, base.path());
    let l2 = diff(Some(base.path()), c);
    // umoci applies both layers to the changed tree.
    let (_keep, rootfs) = umoci_unpack(&[gz(&l1), gz(&l2)]);
    let strip = |m: BTreeMap<PathBuf, common::Node>| -> BTreeMap<PathBuf, common::Node> {
        // Our writer truncates mtimes to seconds (containerd's rule): compare seconds.
        m.into_iter()
            .map(|(k, mut v)| {
                v.mtime = v.mtime.map(|(s, _)| (s, 0));
                (k, v)
            })
            .collect()
    };
    assert_same(strip(tree(&rootfs)), strip(tree(c)), "umoci");
    // strata applies them to the same tree too.
    let ours = strata_apply(&[&l1, &l2]);
    assert_same(strip(tree(ours.path())), strip(tree(c)), "strata");
    // GNU tar extracts the base layer (no whiteouts in it) to the base tree.
    let theirs = tempfile::tempdir().unwrap();
    gnu_tar_x(&l1, theirs.path());
    assert_same(
        strip(tree(theirs.path())),
        strip(tree(base.path())),
        "gnu tar",
    );
}
