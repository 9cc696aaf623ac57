//! Shared helpers of the end-to-end and crash tests: a strata root on disk (content,
//! images, leases, one snapshotter, the service over them), an independent orphan
//! checker (walks images, leases and containers itself rather than asking the GC), and
//! a tree reader that adds mtimes and hardlink groups to fstest's entries.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::content::local::LocalStore;
use strata::content::{Descriptor, Manager};
use strata::image::gc::Collector;
use strata::image::leases::LeaseManager;
use strata::image::service::ImageService;
use strata::image::store::ImageStore;
use strata::snapshot::mount::with_temp_mount;
use strata::snapshot::testsuite::fstest::{Entry, read_tree};
use strata::snapshot::{Kind, Snapshotter};

/// One strata root: the layout the CLI uses (`content/`, `metadata.db`,
/// `snapshots/<name>`).
pub struct Root {
    pub path: PathBuf,
    pub content: LocalStore,
    pub images: ImageStore,
    pub leases: Arc<LeaseManager>,
    pub sn: Arc<dyn Snapshotter>,
    pub sn_name: String,
    pub svc: ImageService,
}

impl Root {
    /// Opens (or creates) the root at `path` with snapshotter `sn_name`.
    pub fn open(path: &Path, sn_name: &str) -> Root {
        let content = LocalStore::open(path.join("content")).unwrap();
        let images = ImageStore::open(path.join("metadata.db")).unwrap();
        let leases = Arc::new(LeaseManager::open(path.join("metadata.db")).unwrap());
        let sn = strata::snapshot::open(sn_name, &path.join("snapshots").join(sn_name)).unwrap();
        let svc = ImageService::new(Arc::new(content.clone()), Arc::new(images.clone()))
            .with_snapshotter(sn_name, sn.clone())
            .with_leases(leases.clone());
        Root {
            path: path.to_path_buf(),
            content,
            images,
            leases,
            sn,
            sn_name: sn_name.to_string(),
            svc,
        }
    }

    pub fn collector(&self) -> Collector {
        Collector {
            content: self.content.clone(),
            images: self.images.clone(),
            leases: self.leases.clone(),
            snapshotters: vec![(self.sn_name.clone(), self.sn.clone())],
        }
    }

    /// Runs `f` on a read-only view of snapshot `parent` (through its real mounts).
    pub async fn with_view<R: Send + 'static>(
        &self,
        parent: &str,
        f: impl FnOnce(&Path) -> R + Send + 'static,
    ) -> R {
        let key = format!("e2e-view-{}", rand_suffix());
        let mounts = self
            .sn
            .view(&key, parent, Default::default())
            .await
            .unwrap();
        let r = tokio::task::spawn_blocking(move || with_temp_mount(&mounts, f).unwrap())
            .await
            .unwrap();
        self.sn.remove(&key).await.unwrap();
        r
    }

    /// The full tree of committed snapshot `chain` as seen through a view.
    pub async fn tree_of(&self, chain: &str) -> Tree {
        self.with_view(chain, full_tree).await
    }

    /// Deletes every lease (what their expiry does), for the strict GC check.
    pub async fn expire_all_leases(&self) {
        for l in self.leases.list(&[] as &[String]).await.unwrap() {
            self.leases.delete(&l.id).await.unwrap();
        }
    }
}

pub fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A tree: fstest's entries (type, mode, owner, rdev, contents/link target, xattrs),
/// plus mtimes and hardlink groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<PathBuf, Entry>,
    /// mtime (seconds, nanoseconds) of every non-directory entry.
    pub mtimes: BTreeMap<PathBuf, (i64, i64)>,
    /// mtime of directories (reported separately: whiteout handling may touch them).
    pub dir_mtimes: BTreeMap<PathBuf, (i64, i64)>,
    /// Sets of paths sharing one inode (regular files with more than one link).
    pub hardlinks: BTreeSet<Vec<PathBuf>>,
}

/// Reads `root` into a [`Tree`] (the root entry itself is left out).
pub fn full_tree(root: &Path) -> Tree {
    let mut entries = read_tree(root).unwrap();
    entries.remove(Path::new(""));
    let mut mtimes = BTreeMap::new();
    let mut dir_mtimes = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for p in entries.keys() {
        let md = std::fs::symlink_metadata(root.join(p)).unwrap();
        let t = (md.mtime(), md.mtime_nsec());
        if md.is_dir() {
            dir_mtimes.insert(p.clone(), t);
        } else {
            mtimes.insert(p.clone(), t);
        }
        if md.is_file() && md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(p.clone());
        }
    }
    let hardlinks = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Tree {
        entries,
        mtimes,
        dir_mtimes,
        hardlinks,
    }
}

/// Lists the differences between two trees (empty when equal). Directory mtimes are
/// compared only when `dir_mtimes` is set; nanoseconds only when `nanos` is set.
pub fn tree_diff(a: &Tree, b: &Tree, dir_mtimes: bool, nanos: bool) -> Vec<String> {
    tree_diff_since(a, b, dir_mtimes, nanos, None)
}

/// [`tree_diff`], except that a directory of `a` whose mtime is at or after `applied_after`
/// (Unix seconds) is accepted: containerd's applier (which strata follows) leaves the
/// mtime a directory gets when a later layer adds or removes a child without restating
/// the directory, while umoci restores the parent's metadata after each child.
pub fn tree_diff_since(
    a: &Tree,
    b: &Tree,
    dir_mtimes: bool,
    nanos: bool,
    applied_after: Option<i64>,
) -> Vec<String> {
    let t = |x: &(i64, i64)| if nanos { *x } else { (x.0, 0) };
    let mut out = Vec::new();
    for (p, ea) in &a.entries {
        match b.entries.get(p) {
            None => out.push(format!("{}: only in left", p.display())),
            Some(eb) if ea != eb => out.push(format!("{}: {}", p.display(), describe_diff(ea, eb))),
            _ => {}
        }
    }
    for p in b.entries.keys().filter(|p| !a.entries.contains_key(*p)) {
        out.push(format!("{}: only in right", p.display()));
    }
    for (p, ta) in &a.mtimes {
        if let Some(tb) = b.mtimes.get(p)
            && t(ta) != t(tb)
        {
            out.push(format!("{}: mtime {ta:?} != {tb:?}", p.display()));
        }
    }
    if dir_mtimes {
        for (p, ta) in &a.dir_mtimes {
            if let Some(tb) = b.dir_mtimes.get(p)
                && t(ta) != t(tb)
                && applied_after.is_none_or(|since| ta.0 < since)
            {
                out.push(format!("{}/: mtime {ta:?} != {tb:?}", p.display()));
            }
        }
    }
    if a.hardlinks != b.hardlinks {
        out.push(format!(
            "hardlink groups {:?} != {:?}",
            a.hardlinks, b.hardlinks
        ));
    }
    out
}

fn describe_diff(a: &Entry, b: &Entry) -> String {
    let mut d = Vec::new();
    if a.mode != b.mode {
        d.push(format!("mode {:o} != {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        d.push(format!("owner {}:{} != {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.rdev != b.rdev {
        d.push(format!("rdev {} != {}", a.rdev, b.rdev));
    }
    if a.data != b.data {
        d.push(format!(
            "data ({} bytes, sha256 {}) != ({} bytes, sha256 {})",
            a.data.len(),
            strata::content::digest::sha256(&a.data),
            b.data.len(),
            strata::content::digest::sha256(&b.data)
        ));
    }
    if a.xattrs != b.xattrs {
        d.push(format!("xattrs {:?} != {:?}", a.xattrs, b.xattrs));
    }
    d.join(", ")
}

/// What [`orphans`] found reachable.
#[derive(Debug, Default)]
pub struct Reach {
    pub content: BTreeSet<String>,
    pub snapshots: BTreeSet<String>,
    pub ingests: BTreeSet<String>,
}

const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";

/// Walks the root independently of the GC: from every image (manifests and indexes
/// parsed, configs' `gc.ref.snapshot.<sn>` label), every lease (when `leases` is set)
/// and every active non-scratch snapshot (a container), following `gc.ref.content*`
/// labels and snapshot parents. Returns the problems: unreachable blob records, blob
/// files without a record, ingests nothing holds, unreachable snapshots, and referenced
/// objects that are missing.
pub async fn orphans(r: &Root, leases: bool) -> (Vec<String>, Reach) {
    let mut problems = Vec::new();
    let mut reach = Reach::default();
    let snaps: BTreeMap<String, strata::snapshot::Info> =
        r.sn.walk(&[])
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
    let mut content_stack: Vec<(String, Option<String>)> = Vec::new();
    // (key, whether it must exist): a lease may name a snapshot key that its flow has
    // since committed or removed (containerd ignores those too).
    let mut snap_stack: Vec<(String, bool)> = Vec::new();
    for (_, img) in r.images.all_images().await.unwrap() {
        content_stack.push((
            img.target.digest().to_string(),
            Some(img.target.media_type().to_string()),
        ));
    }
    if leases {
        for l in r.leases.list(&[] as &[String]).await.unwrap() {
            for res in r.leases.list_resources(&l.id).await.unwrap() {
                match res.kind.as_str() {
                    "content" => content_stack.push((res.id, None)),
                    "ingests" => {
                        reach.ingests.insert(res.id);
                    }
                    "images" => {}
                    k if k == format!("snapshots/{}", r.sn_name) => {
                        snap_stack.push((res.id, false))
                    }
                    k => problems.push(format!("lease {} holds unknown kind {k}", l.id)),
                }
            }
        }
    }
    for (k, i) in &snaps {
        if i.kind != Kind::Committed && !k.starts_with("extract-") && !k.starts_with("commit-view-")
        {
            snap_stack.push((k.clone(), true));
        }
    }
    while let Some((d, media_type)) = content_stack.pop() {
        if !reach.content.insert(d.clone()) {
            continue;
        }
        let digest = strata::content::digest::parse(&d).unwrap();
        let info = match r.content.info(&digest).await {
            Ok(i) => i,
            Err(e) => {
                // A lease may name content that was never written (a crash before it).
                if media_type.is_some() {
                    problems.push(format!("referenced blob {d} is missing: {e}"));
                }
                continue;
            }
        };
        for (k, v) in &info.labels {
            if k.starts_with(GC_REF_CONTENT) {
                content_stack.push((v.clone(), Some(String::new())));
            }
            if k.strip_prefix("containerd.io/gc.ref.snapshot.") == Some(r.sn_name.as_str()) {
                snap_stack.push((v.clone(), true));
            }
        }
        let Some(mt) = media_type else { continue };
        if mt.contains("manifest") || mt.contains("index") || mt.is_empty() {
            let desc = Descriptor::new(mt.as_str().into(), info.size as u64, digest.clone());
            let raw = strata::content::helpers::read_blob(&r.content, &desc)
                .await
                .unwrap();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            let mut kids = Vec::new();
            if let Some(c) = v.get("config") {
                kids.push(c.clone());
            }
            for key in ["layers", "manifests"] {
                if let Some(a) = v.get(key).and_then(|a| a.as_array()) {
                    kids.extend(a.iter().cloned());
                }
            }
            for k in kids {
                if let (Some(d), Some(m)) = (k["digest"].as_str(), k["mediaType"].as_str()) {
                    let m = if m.contains("manifest") || m.contains("index") {
                        m.to_string()
                    } else {
                        "blob".to_string()
                    };
                    content_stack.push((d.to_string(), Some(m)));
                }
            }
        }
    }
    while let Some((k, must)) = snap_stack.pop() {
        if reach.snapshots.contains(&k) {
            continue;
        }
        match snaps.get(&k) {
            Some(i) => {
                reach.snapshots.insert(k.clone());
                if !i.parent.is_empty() {
                    snap_stack.push((i.parent.clone(), true));
                }
            }
            None if must => problems.push(format!("referenced snapshot {k} is missing")),
            None => {}
        }
    }
    for info in r.content.walk(&[]).await.unwrap() {
        if !reach.content.contains(info.digest.as_ref()) {
            problems.push(format!("orphan blob record {}", info.digest));
        }
    }
    let recorded: BTreeSet<String> = r
        .content
        .all_blob_records()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, d)| d.to_string())
        .collect();
    for d in r.content.blobs_on_disk().await.unwrap() {
        if !recorded.contains(d.as_ref()) {
            problems.push(format!("blob file {d} without a record"));
        }
    }
    for (_, st) in r.content.all_ingests().await.unwrap() {
        if !reach.ingests.contains(&st.reference) {
            problems.push(format!(
                "orphan ingest {} ({} bytes)",
                st.reference, st.offset
            ));
        }
    }
    // Ingest directories without a database row.
    if let Ok(rd) = std::fs::read_dir(r.path.join("content/ingest")) {
        let n = rd.count();
        let rows = r.content.all_ingests().await.unwrap().len();
        if n > rows {
            problems.push(format!(
                "{n} ingest directories on disk for {rows} ingest records"
            ));
        }
    }
    for k in snaps.keys() {
        if !reach.snapshots.contains(k) {
            problems.push(format!("orphan snapshot {k:?} ({:?})", snaps[k].kind));
        }
    }
    (problems, reach)
}

/// Whether `tool` is installed; prints a skip line, or panics under
/// `STRATA_REQUIRE_PEERS=1`.
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{tool} is required (STRATA_REQUIRE_PEERS=1) but missing");
        }
        eprintln!("SKIP: {tool} not installed");
    }
    found
}

/// Whether we can mount (root); otherwise skip (or fail under STRATA_REQUIRE_PEERS=1).
pub fn is_root() -> bool {
    let root = rustix_uid() == 0;
    if !root {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("these tests need root (real mounts)");
        }
        eprintln!("SKIP: not root");
    }
    root
}

fn rustix_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Sets an xattr on `p` (no symlink follow).
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let cn = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a live buffer.
    let rc = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// The `strata` example binary: `$STRATA_EXAMPLE_BIN` when set; otherwise built with
/// `cargo build --example strata` in this test's profile and target dir (a no-op when
/// `cargo test` already built it) at `<target>/<profile>/examples/strata`.
pub fn strata_example() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STRATA_EXAMPLE_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", "strata", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("run cargo build").success(),
            "cargo build --example strata failed"
        );
        let bin = profile_dir.join("examples").join("strata");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}
