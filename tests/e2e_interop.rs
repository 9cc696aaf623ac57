//! End-to-end interop against real peers (issue 6, item 7): an image with whiteouts, an
//! opaque dir, hardlinks, symlinks, owners, setuid and xattrs (user.* and
//! security.capability) is pushed to a real `docker-registry`; a fresh root pulls it
//! and the tree seen through a view's mounts must equal `umoci unpack` of the same image
//! (via `skopeo copy`). Then a container is changed and committed, pushed and exported:
//! skopeo + umoci read exactly the changed tree, and a re-pull by digest into another
//! fresh root gives the same ChainIDs. Needs root, docker-registry, skopeo and umoci.

mod e2e_common;
#[allow(unused_imports)]
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use e2e_common::*;
use registry_common::{Registry, noise, run};
use strata::content::Labels;
use strata::image::build::{BuiltLayer, ImageBuilder};
use strata::image::media_types as mt;
use strata::image::remote::RegistryOptions;
use strata::image::service::{
    CommitOptions, FetchOptions, IMAGE_LABEL, PullOptions, PushOptions, UnpackOptions,
};
use strata::snapshot::mount::with_temp_mount;

/// `security.capability` v2 with the effective flag and CAP_NET_RAW permitted.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = std::time::Duration::from_millis(10);
    o
}

fn pull_opts() -> PullOptions {
    PullOptions {
        fetch: FetchOptions {
            registry: reg_opts(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn push_opts() -> PushOptions {
    PushOptions {
        registry: reg_opts(),
        ..Default::default()
    }
}

/// Tar entries written with the `tar` crate (LayerBuilder has no xattrs).
struct Tar {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
            mtime,
        }
    }
    fn head(&self, kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }
    fn xattrs(&mut self, x: &[(&str, &[u8])]) -> &mut Self {
        if !x.is_empty() {
            let recs: Vec<(String, &[u8])> = x
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            self.b
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        self
    }
    fn dir(&mut self, p: &str, mode: u32, uid: u64) -> &mut Self {
        let mut h = self.head(tar::EntryType::Directory, mode, uid, 0);
        self.b
            .append_data(&mut h, format!("{p}/"), std::io::empty())
            .unwrap();
        self
    }
    fn file(&mut self, p: &str, mode: u32, uid: u64, data: &[u8]) -> &mut Self {
        let mut h = self.head(tar::EntryType::Regular, mode, uid, data.len() as u64);
        self.b.append_data(&mut h, p, data).unwrap();
        self
    }
    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        let mut h = self.head(tar::EntryType::Symlink, 0o777, 0, 0);
        self.b.append_link(&mut h, p, target).unwrap();
        self
    }
    fn hardlink(&mut self, p: &str, target: &str) -> &mut Self {
        let mut h = self.head(tar::EntryType::Link, 0o644, 0, 0);
        self.b.append_link(&mut h, p, target).unwrap();
        self
    }
    fn finish(self, gzip: bool) -> BuiltLayer {
        use std::io::Write;
        let raw = self.b.into_inner().unwrap();
        let diff_id = strata::content::digest::sha256(&raw);
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw).unwrap();
            BuiltLayer {
                bytes: gz.finish().unwrap(),
                media_type: mt::OCI_LAYER_GZIP,
                diff_id,
            }
        } else {
            BuiltLayer {
                bytes: raw,
                media_type: mt::OCI_LAYER,
                diff_id,
            }
        }
    }
}

/// Three layers exercising what a layer can say.
fn layers() -> Vec<BuiltLayer> {
    let mut l1 = Tar::new(1_600_000_000);
    l1.dir("etc", 0o755, 0)
        .file("etc/passwd", 0o644, 0, b"root:x:0:0::/root:/bin/sh\n")
        .symlink("etc/rel", "../data/a.txt")
        .dir("usr", 0o755, 0)
        .dir("usr/bin", 0o755, 0)
        .xattrs(&[("security.capability", &CAP_NET_RAW)])
        .file("usr/bin/ping", 0o755, 0, b"\x7fELF ping")
        .file("usr/bin/su", 0o4755, 0, b"\x7fELF su")
        .symlink("usr/bin/sh", "/bin/busybox")
        .dir("data", 0o755, 0)
        .xattrs(&[("user.note", b"hello"), ("user.empty", b"")])
        .file("data/a.txt", 0o644, 0, b"a\n")
        .file("data/big.bin", 0o644, 0, &noise(1 << 20, 7))
        .file("data/del.txt", 0o644, 0, b"to be deleted\n")
        .file("data/h1", 0o644, 0, b"linked\n")
        .hardlink("data/h2", "data/h1")
        .dir("opt", 0o755, 0)
        .dir("opt/keep", 0o755, 0)
        .file("opt/keep/old1", 0o644, 0, b"1")
        .dir("opt/keep/sub", 0o700, 0)
        .file("opt/keep/sub/old2", 0o644, 0, b"2")
        .dir("home", 0o755, 0)
        .dir("home/user", 0o750, 1000)
        .file("home/user/.profile", 0o600, 1000, b"export A=1\n")
        .dir("gone", 0o755, 0)
        .file("gone/x", 0o644, 0, b"x");
    let mut l2 = Tar::new(1_650_000_000);
    l2.file("data/.wh.del.txt", 0o644, 0, b"")
        .file(".wh.gone", 0o644, 0, b"")
        .file("opt/keep/.wh..wh..opq", 0o644, 0, b"")
        .file("opt/keep/new", 0o640, 0, b"new")
        .file("etc/passwd", 0o644, 0, b"root:x:0:0::/root:/bin/bash\n")
        .dir("data", 0o775, 0)
        .xattrs(&[("user.note", b"changed")])
        .file("data/a.txt", 0o600, 0, b"a2\n")
        .dir("bin2", 0o755, 0)
        .file("bin2/x", 0o755, 0, b"same inode")
        .hardlink("bin2/y", "bin2/x")
        .hardlink("bin2/z", "bin2/x");
    let mut l3 = Tar::new(1_700_000_000);
    l3.symlink("data/latest", "a.txt")
        .xattrs(&[("user.a", b"1"), ("user.b", b"2")])
        .file("home/user/notes", 0o644, 1000, &noise(200_000, 3));
    vec![l1.finish(true), l2.finish(false), l3.finish(true)]
}

/// `skopeo copy` of `remote` into a fresh OCI layout and `umoci unpack` of it; returns the
/// rootfs tree.
fn umoci_tree_of_remote(remote: &str, work: &Path) -> Tree {
    std::fs::create_dir_all(work).unwrap();
    let layout = work.join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg("--src-tls-verify=false")
        .arg(format!("docker://{remote}"))
        .arg(format!("oci:{}:img", layout.display())));
    umoci_tree(&layout, "img", &work.join("bundle"))
}

fn umoci_tree(layout: &Path, tag: &str, bundle: &Path) -> Tree {
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    full_tree(&bundle.join("rootfs"))
}

fn assert_same(what: &str, a: &Tree, b: &Tree, dir_mtimes: bool, nanos: bool) {
    let d = tree_diff(a, b, dir_mtimes, nanos);
    assert!(d.is_empty(), "{what}: trees differ:\n{}", d.join("\n"));
}

/// Ours (`a`) against umoci's (`b`): directory mtimes may be the apply time where a
/// later layer changed the directory without restating it (see `tree_diff_since`).
fn assert_same_as_umoci(what: &str, a: &Tree, b: &Tree, since: i64) {
    let d = tree_diff_since(a, b, true, true, Some(since));
    assert!(d.is_empty(), "{what}: trees differ:\n{}", d.join("\n"));
}

async fn push_base(reg: &Registry, work: &Path) -> String {
    let src = Root::open(&work.join("src"), "native");
    let mut b = ImageBuilder::new().config("Cmd", serde_json::json!(["/bin/sh"]));
    for l in layers() {
        b = b.layer(l);
    }
    b.write(src.content(), src.images(), "e2e/base:1")
        .await
        .unwrap();
    let remote = format!("{}/e2e/base:1", reg.addr);
    src.service()
        .push("e2e/base:1", Some(&remote), push_opts())
        .await
        .unwrap();
    remote
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_commit_push_interop_with_umoci_and_skopeo() {
    if !is_root() || !have("skopeo") || !have("umoci") {
        return;
    }
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let t0 = std::time::Instant::now();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let remote = push_base(&reg, work).await;

    // The peers' view of the base image.
    let (r2, w2) = (remote.clone(), work.join("umoci-base"));
    let peer_base = tokio::task::spawn_blocking(move || umoci_tree_of_remote(&r2, &w2))
        .await
        .unwrap();
    // Sanity: the features are there at all.
    let p = |s: &str| std::path::PathBuf::from(s);
    assert!(!peer_base.entries.contains_key(&p("data/del.txt")));
    assert!(!peer_base.entries.contains_key(&p("gone")));
    assert!(!peer_base.entries.contains_key(&p("opt/keep/old1")));
    assert!(peer_base.entries[&p("usr/bin/ping")].xattrs["security.capability"] == CAP_NET_RAW);
    assert!(
        peer_base
            .hardlinks
            .contains(&vec![p("bin2/x"), p("bin2/y"), p("bin2/z")])
    );

    // 1. Pull into a fresh root (overlay and native): same tree as umoci's.
    let a = Root::open(&work.join("a"), "overlay");
    let pulled = a.service().pull(&remote, pull_opts()).await.unwrap();
    assert_eq!((pulled.applied, pulled.chain_ids.len()), (3, 3));
    let top = pulled.chain_ids.last().unwrap().to_string();
    let ours = a.tree_of(&top).await;
    assert_same_as_umoci("overlay pull vs umoci unpack", &ours, &peer_base, since);

    let n = Root::open(&work.join("n"), "native");
    let pn = n.service().pull(&remote, pull_opts()).await.unwrap();
    assert_eq!(pn.chain_ids, pulled.chain_ids);
    let ours_native = n.tree_of(&top).await;
    assert_same_as_umoci(
        "native pull vs umoci unpack",
        &ours_native,
        &peer_base,
        since,
    );
    // Only directories a later layer touched without restating them may differ.
    let touched: Vec<_> = ours
        .dir_mtimes
        .iter()
        .filter(|(p, t)| peer_base.dir_mtimes.get(*p) != Some(*t))
        .map(|(p, _)| p.display().to_string())
        .collect();
    for d in &touched {
        assert!(
            ["data", "etc", "home", "home/user", "opt", "opt/keep"].contains(&d.as_str()),
            "directory {d} has an unexpected mtime"
        );
    }

    // 2. Change a container, commit, push.
    let mut labels = Labels::new();
    labels.insert(IMAGE_LABEL.into(), pulled.image.name.clone());
    let mounts = a.snapshotter().prepare("ctr", &top, labels).await.unwrap();
    let m2 = mounts.clone();
    let ctr_tree = tokio::task::spawn_blocking(move || {
        with_temp_mount(&m2, |root| {
            let j = |s: &str| root.join(s);
            std::fs::write(j("etc/added"), b"added\n").unwrap();
            set_xattr(&j("etc/added"), "user.origin", b"container");
            std::fs::write(j("etc/passwd"), b"root:x:0:0::/root:/bin/zsh\n").unwrap();
            std::fs::remove_file(j("data/big.bin")).unwrap();
            std::fs::remove_dir_all(j("opt/keep")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(j("usr/bin/su"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            std::fs::rename(j("home/user/notes"), j("home/user/notes.old")).unwrap();
            std::fs::hard_link(j("etc/added"), j("etc/added.link")).unwrap();
            std::os::unix::fs::symlink("added", j("etc/added.sym")).unwrap();
            std::fs::create_dir(j("newdir")).unwrap();
            std::fs::write(j("newdir/f"), noise(100_000, 9)).unwrap();
            full_tree(root)
        })
        .unwrap()
    })
    .await
    .unwrap();
    let c = a
        .service()
        .commit(
            "ctr",
            "e2e/changed:1",
            CommitOptions {
                author: Some("e2e".into()),
                message: Some("interop".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let new_chain = c.chain_id.clone().unwrap();
    let committed_tree = a.tree_of(new_chain.as_ref()).await;
    // The committed snapshot is the container's tree (the diff tar keeps whole seconds).
    assert_same(
        "committed snapshot vs container",
        &committed_tree,
        &ctr_tree,
        false,
        false,
    );
    let remote2 = format!("{}/e2e/changed:1", reg.addr);
    let pushed = a
        .service()
        .push(&c.image.name, Some(&remote2), push_opts())
        .await
        .unwrap();
    assert_eq!(pushed.digest(), c.image.target.digest());

    // 3. The peers read exactly the changed tree: from the registry ...
    let (r2, w2) = (remote2.clone(), work.join("umoci-changed"));
    let peer_changed = tokio::task::spawn_blocking(move || umoci_tree_of_remote(&r2, &w2))
        .await
        .unwrap();
    assert_same(
        "umoci unpack of our pushed commit vs committed snapshot",
        &peer_changed,
        &committed_tree,
        true,
        true,
    );
    assert_same(
        "umoci unpack of our pushed commit vs container",
        &peer_changed,
        &ctr_tree,
        false,
        false,
    );
    // ... and from our OCI layout export.
    let layout = work.join("export");
    let img = a.images().get(&c.image.name).await.unwrap();
    strata::image::layout::export_dir(
        Arc::new(a.content().clone()),
        std::slice::from_ref(&img),
        &layout,
        &Default::default(),
    )
    .await
    .unwrap();
    let tag = strata::image::layout::ref_name_for(&img.name);
    let bundle = work.join("bundle-export");
    let peer_export = tokio::task::spawn_blocking(move || umoci_tree(&layout, &tag, &bundle))
        .await
        .unwrap();
    assert_same(
        "umoci unpack of our export vs committed snapshot",
        &peer_export,
        &committed_tree,
        true,
        true,
    );

    // 4. Re-pull by digest into another fresh root: same ChainIDs, same tree.
    let b = Root::open(&work.join("b"), "overlay");
    let by_digest = format!("{}/e2e/changed@{}", reg.addr, pushed.digest());
    let pb = b.service().pull(&by_digest, pull_opts()).await.unwrap();
    let mut want = pulled.chain_ids.clone();
    want.push(new_chain.clone());
    assert_eq!(pb.chain_ids, want);
    assert_eq!(pb.applied, 4);
    let again = b.tree_of(new_chain.as_ref()).await;
    assert_same("re-pull by digest", &again, &committed_tree, true, true);
    // And the image unpacks in the original root without any work.
    let u = a
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!((u.applied, u.existed), (0, 4));
    eprintln!("e2e interop took {:?}", t0.elapsed());
}
