//! `strata snapshot diff` end to end on real snapshotters (overlay and native): prepare,
//! write, commit, prepare a child, change it through a real mount, diff, and check the
//! layer with GNU tar and by applying it onto the parent's tree.
//!
//! Needs root (mounts) and GNU tar; skips otherwise unless `STRATA_REQUIRE_PEERS=1`.
//! The binary: `$STRATA_EXAMPLE_BIN`, else `cargo build --example strata` (see
//! tests/content_cli.rs).

mod example_bin;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn strata_bin() -> PathBuf {
    example_bin::example_bin("strata")
}

fn peers_required() -> bool {
    std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Root (for mounts) and GNU tar, or a printed skip (a failure under STRATA_REQUIRE_PEERS=1).
fn can_run() -> bool {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        assert!(!peers_required(), "snapshot diff tests need root (mounts)");
        eprintln!("SKIP: not root");
        return false;
    }
    let gnu = Command::new("tar")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"))
        .unwrap_or(false);
    if !gnu {
        assert!(
            !peers_required(),
            "GNU tar is required (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("SKIP: GNU tar not installed");
        return false;
    }
    let zstd = Command::new("zstd").arg("--version").output().is_ok();
    if !zstd {
        assert!(
            !peers_required(),
            "zstd is required (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("SKIP: zstd not installed");
    }
    zstd
}

struct Cli {
    root: PathBuf,
    snapshotter: &'static str,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["--snapshotter", self.snapshotter])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn strata")
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "strata {args:?} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.ok(args)).expect("JSON output")
    }

    /// Mounts snapshot `key` at `dir`, runs `f` on it, unmounts.
    fn with_mount(&self, key: &str, dir: &Path, f: impl FnOnce(&Path)) {
        fs::create_dir_all(dir).unwrap();
        self.ok(&["snapshot", "mount", key, dir.to_str().unwrap()]);
        f(dir);
        self.ok(&["snapshot", "unmount", dir.to_str().unwrap()]);
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(data), &mut out).unwrap();
    out
}

/// `tar -tv` of a tar (any compression GNU tar detects): name → the `ls -l` style line.
fn gnu_tar_list(file: &Path) -> BTreeMap<String, String> {
    let o = Command::new("tar").arg("-tvf").arg(file).output().unwrap();
    assert!(
        o.status.success(),
        "tar -tvf: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // perms owner size date time name [-> target | link to target]
            let name = l.split_whitespace().nth(5).unwrap().to_owned();
            (name, l.to_owned())
        })
        .collect()
}

/// Relative path → (mode, size, content hash or link target) of every entry below `root`.
fn tree(root: &Path) -> BTreeMap<String, (u32, u64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if md.is_dir() {
                stack.push(p.clone());
                String::new()
            } else if md.file_type().is_symlink() {
                fs::read_link(&p).unwrap().to_string_lossy().into_owned()
            } else {
                sha256_hex(&fs::read(&p).unwrap())
            };
            let size = if md.is_dir() { 0 } else { md.len() };
            out.insert(rel, (md.mode(), size, what));
        }
    }
    out
}

fn write_base(r: &Path) {
    fs::create_dir_all(r.join("etc/conf.d")).unwrap();
    fs::create_dir_all(r.join("gone/deep/er")).unwrap();
    fs::create_dir_all(r.join("keep")).unwrap();
    fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(r.join("etc/conf.d/a"), "a\n").unwrap();
    fs::write(r.join("etc/conf.d/b"), "b\n").unwrap();
    fs::write(r.join("gone/deep/er/f"), "f\n").unwrap();
    fs::write(r.join("keep/same"), "same\n").unwrap();
    fs::write(r.join("keep/mode"), "mode\n").unwrap();
    std::os::unix::fs::symlink("hosts", r.join("etc/link")).unwrap();
}

fn change(r: &Path) {
    fs::remove_dir_all(r.join("gone")).unwrap();
    fs::remove_file(r.join("etc/conf.d/b")).unwrap();
    fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n::1 localhost\n").unwrap();
    fs::set_permissions(r.join("keep/mode"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(r.join("opt/new")).unwrap();
    fs::write(r.join("opt/new/file"), vec![7u8; 100_000]).unwrap();
    fs::hard_link(r.join("opt/new/file"), r.join("opt/new/link")).unwrap();
    std::os::unix::fs::symlink("../etc/hosts", r.join("opt/hosts")).unwrap();
}

fn diff_and_check(snapshotter: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        root: dir.path().join("root"),
        snapshotter,
    };
    let mnt = dir.path().join("mnt");
    cli.ok(&["snapshot", "prepare", "base"]);
    cli.with_mount("base", &mnt, write_base);
    cli.ok(&["snapshot", "commit", "base1", "base"]);
    cli.ok(&["snapshot", "prepare", "work", "base1"]);
    let mut expected = BTreeMap::new();
    cli.with_mount("work", &mnt, |m| {
        change(m);
        expected = tree(m);
    });

    // Default (overlay: the upperdir fast path), written out with -o.
    let out = dir.path().join("layer.tar.gz");
    let d = cli.json(&[
        "snapshot",
        "diff",
        "work",
        "--label",
        "x=y",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        d["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let blob = fs::read(&out).unwrap();
    assert_eq!(d["size"], blob.len() as u64);
    assert_eq!(d["digest"], format!("sha256:{}", sha256_hex(&blob)));
    let tar = gunzip(&blob);
    assert_eq!(d["diffID"], format!("sha256:{}", sha256_hex(&tar)));
    // The blob is in the content store, labelled with its DiffID and our label.
    let info: serde_json::Value =
        serde_json::from_slice(&cli.ok(&["content", "info", d["digest"].as_str().unwrap()]))
            .unwrap();
    assert_eq!(info["labels"]["containerd.io/uncompressed"], d["diffID"]);
    assert_eq!(info["labels"]["x"], "y");

    // GNU tar reads it: exactly the changed entries, whiteouts for the removed paths (one
    // for the removed directory tree), a hardlink for the second name of the new file.
    let list = gnu_tar_list(&out);
    let names: Vec<&str> = list.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".wh.gone",
            "etc/",
            "etc/conf.d/",
            "etc/conf.d/.wh.b",
            "etc/hosts",
            "keep/",
            "keep/mode",
            "opt/",
            "opt/hosts",
            "opt/new/",
            "opt/new/file",
            "opt/new/link",
        ],
        "{list:#?}"
    );
    assert!(list["keep/mode"].starts_with("-rw-------"), "{list:#?}");
    assert!(list["opt/hosts"].ends_with("-> ../etc/hosts"), "{list:#?}");
    assert!(
        list["opt/new/link"].ends_with("link to opt/new/file"),
        "{list:#?}"
    );
    let hosts = Command::new("tar")
        .arg("-xzOf")
        .arg(&out)
        .arg("etc/hosts")
        .output()
        .unwrap();
    assert_eq!(hosts.stdout, b"127.0.0.1 localhost\n::1 localhost\n");

    // Applied onto the parent's tree, the layer gives the changed tree.
    let applied = dir.path().join("applied");
    fs::create_dir(&applied).unwrap();
    write_base(&applied);
    strata::diff::apply_layer(
        &tar[..],
        strata::diff::Compression::None,
        &applied,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(tree(&applied), expected);

    // The forced double walk, an explicit PARENT and the committed snapshot (read through
    // a view) all give the identical layer; views are removed afterwards.
    let walked = cli.json(&["snapshot", "diff", "work", "--double-walk"]);
    assert_eq!(walked["digest"], d["digest"], "double walk == default");
    let explicit = cli.json(&["snapshot", "diff", "work", "base1", "--double-walk"]);
    assert_eq!(explicit["digest"], d["digest"]);
    cli.ok(&["snapshot", "commit", "done", "work"]);
    let committed = cli.json(&["snapshot", "diff", "done"]);
    assert_eq!(committed["digest"], d["digest"], "committed KEY");
    let ls = String::from_utf8(cli.ok(&["snapshot", "ls"])).unwrap();
    assert_eq!(ls.lines().count(), 3, "only base1 and done remain: {ls}");

    // zstd, and an empty PARENT (the whole tree), to stdout with `-o -`.
    let o = cli.run(&[
        "snapshot",
        "diff",
        "done",
        "",
        "--compression",
        "zstd",
        "-o",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let desc: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let full = zstd_decode(&o.stdout);
    assert_eq!(desc["diffID"], format!("sha256:{}", sha256_hex(&full)));
    let all = dir.path().join("full.tar");
    fs::write(&all, &full).unwrap();
    let list = gnu_tar_list(&all);
    assert!(list.contains_key("keep/same") && list.contains_key("opt/new/file"));
    assert!(
        !list.keys().any(|k| k.contains(".wh.")),
        "no whiteouts against an empty tree: {list:#?}"
    );

    // Errors name the snapshot.
    let o = cli.run(&["snapshot", "diff", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
}

fn zstd_decode(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-dcq"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let t = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().unwrap();
    t.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn snapshot_diff_overlay() {
    if can_run() {
        diff_and_check("overlay");
    }
}

#[test]
fn snapshot_diff_native() {
    if can_run() {
        diff_and_check("native");
    }
}
