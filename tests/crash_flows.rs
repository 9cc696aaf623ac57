//! kill -9 tests of Pull, Unpack and Commit (issue 6, "Must show"), and two processes
//! pulling one image into one root at once.
//!
//! Each case re-executes this test binary as a child (`crash_child`, selected by
//! `STRATA_CRASH_ROLE`) that runs one flow on a root on disk, and SIGKILLs it at a
//! point the parent observes from outside: a proxy in front of the real registry that
//! stalls after 4.5 MiB of a layer (mid-download, bytes on disk), an `extract-…` snapshot present (mid-apply), a first
//! ChainID committed (between layers), commit's layer ingest holding bytes (mid-diff),
//! the new ChainID committed with no image record yet (after commit, before the record),
//! or plain delays. Then, in-process and as a restart would: the flow re-runs and must
//! succeed with the same digests/ChainIDs; GC runs; an independent walk finds no orphan
//! (every blob, ingest and snapshot reachable from an image, a lease or a container, and
//! everything referenced present); with the leases expired, GC leaves exactly what the
//! images reach; the image unpacks with no work and its tree is the reference one.
//! Needs root (real mounts) and docker-registry.

mod e2e_common;
#[allow(unused_imports)]
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use e2e_common::*;
use registry_common::{Registry, noise};
use strata::content::{Digest, Labels};
use strata::image::build::{BuiltLayer, ImageBuilder, LayerBuilder};
use strata::image::check::CheckOptions;
use strata::image::identity::{chain_id_step, chain_ids};
use strata::image::remote::RegistryOptions;
use strata::image::service::{
    CommitOptions, FetchOptions, IMAGE_LABEL, PullOptions, PushOptions, UnpackOptions,
};
use strata::snapshot::mount::with_temp_mount;
use strata::snapshot::{Kind, Snapshotter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SN: &str = "overlay";

/// The snapshotter of a test root: native for roots named `…-native`, else overlay.
fn sn_of(root: &Path) -> &'static str {
    if root.to_string_lossy().ends_with("-native") {
        "native"
    } else {
        SN
    }
}
/// Response bytes after which the armed proxy stalls a connection.
/// Past the content writer's 4 MiB chunk, so the killed ingest has bytes on disk.
const STALL_AFTER: u64 = (4 << 20) + (512 << 10);

fn reg_opts() -> RegistryOptions {
    let mut o = RegistryOptions::default().docker_config(false);
    o.retry_delay = Duration::from_millis(10);
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

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

// ---------------------------------------------------------------------------------------
// The child.

/// The child process's flow; does nothing unless run by a parent below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child role of the crash tests; they run it with STRATA_CRASH_ROLE set"]
async fn crash_child() {
    let Ok(role) = std::env::var("STRATA_CRASH_ROLE") else {
        return;
    };
    let path = PathBuf::from(env("STRATA_CRASH_ROOT"));
    let root = Root::open(&path, sn_of(&path));
    let reference = env("STRATA_CRASH_REF");
    match role.as_str() {
        "pull" => {
            let p = root.service().pull(&reference, pull_opts()).await.unwrap();
            println!(
                "RESULT applied={} existed={} top={}",
                p.applied,
                p.existed,
                p.chain_ids.last().unwrap()
            );
        }
        "unpack" => {
            let img = root.images().get(&reference).await.unwrap();
            let u = root
                .service()
                .unpack(&img, UnpackOptions::default())
                .await
                .unwrap();
            println!(
                "RESULT applied={} existed={} top={}",
                u.applied,
                u.existed,
                u.top().unwrap()
            );
        }
        "commit" => {
            let c = root
                .service()
                .commit("ctr", &reference, CommitOptions::default())
                .await
                .unwrap();
            println!("RESULT chain={}", c.chain_id.unwrap());
        }
        "push" => {
            // Pushes the image pulled as `STRATA_CRASH_REF` under a new name.
            let to = env("STRATA_CRASH_PUSH_TO");
            let opts = PushOptions {
                registry: reg_opts(),
                ..Default::default()
            };
            let d = root
                .service()
                .push(&reference, Some(&to), opts)
                .await
                .unwrap();
            println!("RESULT pushed={}", d.digest());
        }
        "gc" => {
            let s = root.collector().unwrap().collect().await.unwrap();
            println!("RESULT {s:?}");
        }
        r => panic!("unknown role {r}"),
    }
}

async fn spawn_child(role: &str, root: &Path, reference: &str) -> tokio::process::Child {
    spawn_child_env(role, root, reference, &[]).await
}

async fn spawn_child_env(
    role: &str,
    root: &Path,
    reference: &str,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STRATA_CRASH_ROLE", role)
        .env("STRATA_CRASH_ROOT", root)
        .env("STRATA_CRASH_REF", reference)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Kill points, observed from outside the child.

#[derive(Clone)]
enum KillAt {
    /// The stalling proxy holds a response after [`STALL_AFTER`] (then until the child's
    /// ingest has bytes on disk, at most 10 s).
    Stalled(Arc<AtomicBool>),
    /// An `extract-…` snapshot exists (a layer is being applied).
    Extracting,
    /// At least this many committed snapshots exist.
    Committed(usize),
    /// A content ingest holds bytes.
    IngestBytes,
    /// A committed snapshot whose parent is this one exists.
    ChildOf(String),
    /// The proxy has received more than this many request bytes (an upload is under way).
    Uploaded(Arc<AtomicU64>, u64),
    /// Fewer than this many files are left under `content/blobs/sha256`.
    FewerBlobs(usize),
    /// Fewer than this many snapshots are left.
    FewerSnapshots(usize),
    /// After this long.
    After(Duration),
}

/// Runs the child until `at` is observed (then SIGKILL: returns true) or it exits
/// (returns false, and it must have succeeded).
async fn run_until(mut child: tokio::process::Child, root: &Path, at: KillAt) -> bool {
    let name = sn_of(root);
    let sn = strata::snapshot::open(name, &root.join("snapshots").join(name)).unwrap();
    let start = Instant::now();
    loop {
        if let Some(_st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().await.unwrap();
            assert!(
                out.status.success(),
                "child failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return false;
        }
        let hit = match &at {
            KillAt::Stalled(flag) => {
                if flag.load(Ordering::SeqCst) {
                    // Let the writer put its first full chunk on disk (up to 10 s).
                    let t = Instant::now();
                    while ingest_bytes(root) == 0 && t.elapsed() < Duration::from_secs(10) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    true
                } else {
                    false
                }
            }
            KillAt::Extracting => walk(&sn)
                .await
                .iter()
                .any(|i| i.name.starts_with("extract-")),
            KillAt::Committed(n) => {
                walk(&sn)
                    .await
                    .iter()
                    .filter(|i| i.kind == Kind::Committed)
                    .count()
                    >= *n
            }
            KillAt::IngestBytes => ingest_bytes(root) > 0,
            KillAt::ChildOf(p) => walk(&sn)
                .await
                .iter()
                .any(|i| i.kind == Kind::Committed && &i.parent == p),
            KillAt::Uploaded(n, limit) => n.load(Ordering::SeqCst) > *limit,
            KillAt::FewerBlobs(n) => blob_files(root) < *n,
            KillAt::FewerSnapshots(n) => walk(&sn).await.len() < *n,
            KillAt::After(d) => start.elapsed() >= *d,
        };
        if hit {
            child.kill().await.unwrap();
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "child neither finished nor reached the kill point"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn walk(sn: &Arc<dyn Snapshotter>) -> Vec<strata::snapshot::Info> {
    // The child may be mid-transaction; a failed read just means "look again".
    sn.walk(&[]).await.unwrap_or_default()
}

fn blob_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("content/blobs/sha256")).map_or(0, |rd| rd.count())
}

fn ingest_bytes(root: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(root.join("content/ingest")) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
        .map(|m| m.len())
        .sum()
}

/// Unmounts temporary mounts over `root`'s snapshots that a killed child left (and
/// reports them). Only this root's: other tests of this process mount too.
fn leftover_mounts(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = root.display().to_string();
    let mut out = Vec::new();
    for line in info.lines() {
        let mp = line.split(' ').nth(4).unwrap_or_default();
        if mp.contains("strata-mount-") && line.contains(&root) {
            out.push(mp.to_string());
            let c = std::ffi::CString::new(mp).unwrap();
            // SAFETY: a valid path string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A registry with a stalling proxy, and the test image.

/// A TCP proxy that forwards everything, except that once `armed`, a connection that has
/// passed [`STALL_AFTER`] response bytes stops forwarding (holding the connection open) and
/// sets `stalled`.
struct StallProxy {
    addr: String,
    armed: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    /// Response bytes forwarded, all connections.
    served: Arc<AtomicU64>,
    /// Request bytes forwarded, all connections.
    received: Arc<AtomicU64>,
}

impl StallProxy {
    async fn start(upstream: String) -> StallProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let armed = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (a2, s2, v2, r2) = (
            armed.clone(),
            stalled.clone(),
            served.clone(),
            received.clone(),
        );
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let (a, s, v, up) = (a2.clone(), s2.clone(), v2.clone(), upstream.clone());
                let r = r2.clone();
                tokio::spawn(async move {
                    let Ok(u) = TcpStream::connect(&up).await else {
                        return;
                    };
                    let (mut cr, mut cw) = c.into_split();
                    let (mut ur, mut uw) = u.into_split();
                    let up_task = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = cr.read(&mut buf).await {
                            if uw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            r.fetch_add(n as u64, Ordering::SeqCst);
                        }
                        let _ = uw.shutdown().await;
                    });
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if a.load(Ordering::SeqCst) && sent + n as u64 > STALL_AFTER {
                            s.store(true, Ordering::SeqCst);
                            // Hold the connection: the client waits for the rest.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n as u64;
                        v.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let _ = cw.shutdown().await;
                    up_task.abort();
                });
            }
        });
        StallProxy {
            addr,
            armed,
            stalled,
            served,
            received,
        }
    }
}

/// Three layers: a thousand small files plus 256 KiB (slow to apply), one 5 MiB file
/// (long to download; uncompressed), five hundred small files.
fn test_layers() -> Vec<BuiltLayer> {
    let mut a = LayerBuilder::new();
    a.dir("many", 0o755).unwrap();
    for d in 0..10 {
        a.dir(&format!("many/{d}"), 0o755).unwrap();
        for f in 0..100 {
            a.file(
                &format!("many/{d}/{f}"),
                0o644,
                format!("file {d}/{f}\n").repeat(8).as_bytes(),
            )
            .unwrap();
        }
    }
    a.file("blob-a", 0o644, &noise(256 << 10, 11)).unwrap();
    let mut b = LayerBuilder::new();
    b.mtime(1_700_000_000)
        .file("blob-b", 0o600, &noise(5 << 20, 12))
        .unwrap()
        .whiteout("many/0/0")
        .unwrap();
    let mut c = LayerBuilder::new();
    c.dir("more", 0o755).unwrap();
    for f in 0..500 {
        c.file(&format!("more/{f}"), 0o644, format!("{f}").as_bytes())
            .unwrap();
    }
    vec![
        a.finish_gzip().unwrap(),
        b.finish_plain().unwrap(),
        c.finish_gzip().unwrap(),
    ]
}

struct Fixture {
    _reg: Registry,
    proxy: StallProxy,
    /// The image's reference through the proxy.
    remote: String,
    manifest: Digest,
    /// Total size of the image's layer blobs.
    bytes: u64,
    chains: Vec<Digest>,
    /// The image's tree, from a clean pull.
    tree: Tree,
    work: tempfile::TempDir,
}

/// Registry + proxy + the test image pushed + a clean reference pull. `None` to skip.
async fn fixture() -> Option<Fixture> {
    if !is_root() {
        return None;
    }
    let t0 = Instant::now();
    let reg = Registry::start(None).await?;
    let proxy = StallProxy::start(reg.addr.clone()).await;
    let work = tempfile::tempdir().unwrap();
    let src = Root::open(&work.path().join("src"), "native");
    let layers = test_layers();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let bytes = layers.iter().map(|l| l.bytes.len() as u64).sum();
    let mut b = ImageBuilder::new();
    for l in layers {
        b = b.layer(l);
    }
    let img = b
        .write(src.content(), src.images(), "crash/img:1")
        .await
        .unwrap();
    let remote = format!("{}/crash/img:1", proxy.addr);
    src.service()
        .push(
            "crash/img:1",
            Some(&remote),
            PushOptions {
                registry: reg_opts(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let clean = Root::open(&work.path().join("clean"), SN);
    let p = clean.service().pull(&remote, pull_opts()).await.unwrap();
    let chains = chain_ids(&diff_ids);
    assert_eq!(p.chain_ids, chains);
    let tree = clean.tree_of(chains.last().unwrap().as_ref()).await;
    eprintln!("fixture ready in {:?}", t0.elapsed());
    Some(Fixture {
        _reg: reg,
        proxy,
        remote,
        manifest: img.target.digest().clone(),
        bytes,
        chains,
        tree,
        work,
    })
}

// ---------------------------------------------------------------------------------------
// After a crash.

/// GC, then the independent orphan walk (leases are roots); then with every lease
/// expired, GC again and the walk with images and containers as the only roots. An
/// ingest left unleased may stay for `INGEST_EXPIRY`, but must then be collected: the
/// GC plan at now + that expiry must name it.
async fn assert_clean_after_gc(r: &Root, what: &str) {
    r.gc_collector().collect().await.unwrap();
    // The killed flow's lease is expired at once (its owner is gone): its ingests are
    // unleased, kept until INGEST_EXPIRY, and must be collected then.
    let (problems, _) = orphans(r, true).await;
    let problems = without_expiring_ingests(r, what, problems).await;
    assert!(
        problems.is_empty(),
        "{what}: after GC (leases as roots):\n{}",
        problems.join("\n")
    );
    r.expire_all_leases().await;
    r.gc_collector().collect().await.unwrap();
    let (problems, reach) = orphans(r, false).await;
    let problems = without_expiring_ingests(r, what, problems).await;
    assert!(
        problems.is_empty(),
        "{what}: after lease expiry and GC:\n{}",
        problems.join("\n")
    );
    // Every reachable blob reads back with its digest.
    for d in &reach.content {
        let digest = strata::content::digest::parse(d).unwrap();
        let bytes = std::fs::read(r.content().blob_path(&digest)).unwrap();
        assert_eq!(&strata::content::digest::sha256(&bytes), &digest, "{what}");
    }
}

/// `problems` less the orphan ingests that GC's plan at now + `INGEST_EXPIRY` removes
/// (unleased ingests stay roots until then).
async fn without_expiring_ingests(r: &Root, what: &str, problems: Vec<String>) -> Vec<String> {
    let later =
        r.gc_collector().world().await.unwrap().plan(
            SystemTime::now() + strata::image::gc::mark::INGEST_EXPIRY + Duration::from_secs(60),
        );
    let (waiting, problems): (Vec<String>, Vec<String>) = problems.into_iter().partition(|p| {
        p.starts_with("orphan ingest ")
            && later
                .ingests
                .iter()
                .any(|(_, i)| p.starts_with(&format!("orphan ingest {i} ")))
    });
    if !waiting.is_empty() {
        eprintln!("{what}: unleased ingests kept until INGEST_EXPIRY: {waiting:?}");
    }
    problems
}

/// The image record points at `manifest`, unpacks with nothing to do, and its top
/// snapshot holds `tree`.
async fn assert_image_whole(
    r: &Root,
    name: &str,
    manifest: &Digest,
    chains: &[Digest],
    tree: &Tree,
) {
    let img = r.images().get(name).await.unwrap();
    assert_eq!(img.target.digest(), manifest);
    let u = r
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!(&u.chain_ids, chains);
    assert_eq!((u.applied, u.existed), (0, chains.len()));
    let got = r.tree_of(chains.last().unwrap().as_ref()).await;
    let d = tree_diff(&got, tree, false, true);
    assert!(d.is_empty(), "{name}: tree differs:\n{}", d.join("\n"));
}

/// Kills a pull at `at`, then re-pulls in-process and checks everything.
async fn pull_crash_case(f: &Fixture, case: &str, at: KillAt, arm: bool) -> bool {
    let t0 = Instant::now();
    let root = f.work.path().join(case);
    std::fs::create_dir_all(&root).unwrap();
    f.proxy.stalled.store(false, Ordering::SeqCst);
    f.proxy.armed.store(arm, Ordering::SeqCst);
    let child = spawn_child("pull", &root, &f.remote).await;
    let killed = run_until(child, &root, at).await;
    f.proxy.armed.store(false, Ordering::SeqCst);
    let mounts = leftover_mounts(&root);
    let partial = ingest_bytes(&root);
    eprintln!("{case}: killed={killed} leftover temp mounts={mounts:?} ingest bytes={partial}");
    if arm {
        assert!(
            partial > 0,
            "{case}: the killed download left no partial ingest"
        );
    }
    let r = Root::open(&root, sn_of(&root));
    f.proxy.served.store(0, Ordering::SeqCst);
    let p = r.service().pull(&f.remote, pull_opts()).await.unwrap();
    if arm {
        // The re-pull resumed the killed ingest rather than starting over.
        let served = f.proxy.served.load(Ordering::SeqCst);
        assert!(
            served + partial <= f.bytes + (64 << 10),
            "{case}: re-pull fetched {served} bytes with {partial} on disk of {}",
            f.bytes
        );
    }
    assert_eq!(p.image.target.digest(), &f.manifest, "{case}");
    assert_eq!(p.chain_ids, f.chains, "{case}");
    assert_clean_after_gc(&r, case).await;
    assert_image_whole(&r, &p.image.name, &f.manifest, &f.chains, &f.tree).await;
    eprintln!("{case}: done in {:?}", t0.elapsed());
    killed
}

/// Pull killed mid-download, mid-apply, between layers, and repeatedly at delays; each
/// on its own root, re-pulled and checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_pull_at_each_point() {
    let Some(f) = fixture().await else { return };
    let stalled = f.proxy.stalled.clone();
    let killed = pull_crash_case(&f, "mid-download", KillAt::Stalled(stalled), true).await;
    assert!(killed, "the stalled download must have been killed");
    assert!(f.proxy.stalled.load(Ordering::SeqCst));
    let a = pull_crash_case(&f, "mid-apply", KillAt::Extracting, false).await;
    assert!(
        a,
        "the pull must have been killed while a layer was extracting"
    );
    let b = pull_crash_case(&f, "between-layers", KillAt::Committed(1), false).await;
    assert!(b, "the pull must have been killed after its first layer");
    let n = pull_crash_case(&f, "mid-apply-native", KillAt::Extracting, false).await;
    assert!(
        n,
        "the native pull must have been killed while a layer was extracting"
    );
    repeated_kills(&f).await;
}

async fn repeated_kills(f: &Fixture) {
    let root = f.work.path().join("delays");
    std::fs::create_dir_all(&root).unwrap();
    let jitter = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 40) as u64;
    let mut kills = 0;
    for ms in [100, 300, 600] {
        let child = spawn_child("pull", &root, &f.remote).await;
        if run_until(
            child,
            &root,
            KillAt::After(Duration::from_millis(ms + jitter)),
        )
        .await
        {
            kills += 1;
        }
        leftover_mounts(&root);
    }
    eprintln!("delays: {kills} of 3 children killed before finishing");
    assert!(kills >= 1);
    let r = Root::open(&root, SN);
    let p = r.service().pull(&f.remote, pull_opts()).await.unwrap();
    assert_eq!(p.chain_ids, f.chains);
    assert_clean_after_gc(&r, "delays").await;
    assert_image_whole(&r, &p.image.name, &f.manifest, &f.chains, &f.tree).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_unpack_mid_apply() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let layers = test_layers();
    let chains = chain_ids(&layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
    let (name, manifest) = {
        let r = Root::open(&root, SN);
        let mut b = ImageBuilder::new();
        for l in layers {
            b = b.layer(l);
        }
        let img = b
            .write(r.content(), r.images(), "local/img:1")
            .await
            .unwrap();
        (img.name, img.target.digest().clone())
    };
    // Reference tree from a clean root.
    let clean = Root::open(&work.path().join("clean"), SN);
    let mut b = ImageBuilder::new();
    for l in test_layers() {
        b = b.layer(l);
    }
    let img = b
        .write(clean.content(), clean.images(), "local/img:1")
        .await
        .unwrap();
    clean
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    let tree = clean.tree_of(chains.last().unwrap().as_ref()).await;

    let mut killed = 0;
    for at in [KillAt::Extracting, KillAt::Committed(2)] {
        let child = spawn_child("unpack", &root, &name).await;
        if run_until(child, &root, at).await {
            killed += 1;
        }
        eprintln!("unpack: leftover temp mounts {:?}", leftover_mounts(&root));
    }
    assert_eq!(killed, 2, "both kill points must be reached");
    let r = Root::open(&root, SN);
    let img = r.images().get(&name).await.unwrap();
    let u = r
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!(u.chain_ids, chains);
    assert!(u.applied >= 1 && u.existed >= 2, "{u:?}");
    assert_clean_after_gc(&r, "unpack").await;
    assert_image_whole(&r, &name, &manifest, &chains, &tree).await;
}

/// A root with the test image unpacked and a container "ctr" holding a large change.
async fn commit_root(path: &Path) -> (String, Digest) {
    let r = Root::open(path, SN);
    let mut b = ImageBuilder::new();
    for l in test_layers().into_iter().take(1) {
        b = b.layer(l);
    }
    let img = b
        .write(r.content(), r.images(), "local/base:1")
        .await
        .unwrap();
    let u = r
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    let top = u.top().unwrap().to_string();
    let mut labels = Labels::new();
    labels.insert(IMAGE_LABEL.into(), img.name.clone());
    let mounts = r.snapshotter().prepare("ctr", &top, labels).await.unwrap();
    tokio::task::spawn_blocking(move || {
        with_temp_mount(&mounts, |root| {
            std::fs::create_dir(root.join("changed")).unwrap();
            for i in 0..1000 {
                std::fs::write(root.join(format!("changed/{i}")), format!("{i}\n")).unwrap();
            }
            std::fs::write(root.join("changed/big"), noise(1 << 20, 5)).unwrap();
            std::fs::remove_dir_all(root.join("many/3")).unwrap();
            std::fs::write(root.join("many/4/4"), b"modified").unwrap();
        })
        .unwrap()
    })
    .await
    .unwrap();
    (top, img.target.digest().clone())
}

/// The container's tree (through its mounts).
async fn container_tree(r: &Root) -> Tree {
    let mounts = r.snapshotter().mounts("ctr").await.unwrap();
    tokio::task::spawn_blocking(move || with_temp_mount(&mounts, full_tree).unwrap())
        .await
        .unwrap()
}

async fn commit_crash_case(work: &Path, case: &str, at: impl Fn(&str) -> KillAt) -> bool {
    let root = work.join(case);
    let (top, _) = commit_root(&root).await;
    // The reference DiffID: a commit whose image is then removed and collected.
    let reference = {
        let r = Root::open(&root, SN);
        let c = r
            .service()
            .commit("ctr", "ref/first:1", CommitOptions::default())
            .await
            .unwrap();
        r.images().delete(&c.image.name, None).await.unwrap();
        r.gc_collector().collect().await.unwrap();
        assert!(
            r.snapshotter()
                .stat(c.chain_id.as_ref().unwrap().as_ref())
                .await
                .unwrap_err()
                .is_not_found()
        );
        c
    };
    let child = spawn_child("commit", &root, "crash/committed:1").await;
    let killed = run_until(child, &root, at(&top)).await;
    eprintln!(
        "{case}: killed={killed} leftover temp mounts {:?}",
        leftover_mounts(&root)
    );
    let r = Root::open(&root, SN);
    let c = r
        .service()
        .commit("ctr", "crash/committed:1", CommitOptions::default())
        .await
        .unwrap();
    assert_eq!(c.diff_id, reference.diff_id, "{case}");
    assert_eq!(c.chain_id, reference.chain_id, "{case}");
    assert_eq!(
        c.chain_id.as_ref().unwrap(),
        &chain_id_step(
            Some(&strata::content::digest::parse(&top).unwrap()),
            c.diff_id.as_ref().unwrap()
        )
    );
    assert_clean_after_gc(&r, case).await;
    let img = r.images().get(&c.image.name).await.unwrap();
    let u = r
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    assert_eq!((u.applied, u.existed), (0, 2));
    let got = r.tree_of(c.chain_id.as_ref().unwrap().as_ref()).await;
    let want = container_tree(&r).await;
    let d = tree_diff(&got, &want, false, false);
    assert!(
        d.is_empty(),
        "{case}: committed tree differs:\n{}",
        d.join("\n")
    );
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_commit_mid_diff() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let killed = commit_crash_case(work.path(), "mid-diff", |_| KillAt::IngestBytes).await;
    assert!(
        killed,
        "commit must have been killed while writing its layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_commit_after_snapshot_before_image_record() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let killed = commit_crash_case(work.path(), "after-snapshot", |top| {
        KillAt::ChildOf(top.to_string())
    })
    .await;
    // The window is a few writes long; report when the child won the race.
    eprintln!("after-snapshot kill point reached: {killed}");
}

/// Push killed mid-upload (2 MiB into its blob uploads) and after short delays, each to
/// a new repository: the re-run push completes with the same manifest, a fresh pull of
/// what the registry then serves is whole, and the pushing root is untouched (`check`
/// clean, the image whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_push_mid_upload() {
    let Some(f) = fixture().await else { return };
    let root = f.work.path().join("push");
    // Built here, not pulled: pulled blobs carry a source label, and the push would
    // mount them from the registry's other repository instead of uploading.
    let r = Root::open(&root, SN);
    let mut b = ImageBuilder::new();
    for l in test_layers() {
        b = b.layer(l);
    }
    let img = b
        .write(r.content(), r.images(), "crash/img:1")
        .await
        .unwrap();
    let manifest = img.target.digest().clone();
    let push_opts = || PushOptions {
        registry: reg_opts(),
        ..Default::default()
    };
    let mut kills = Vec::new();
    for (i, delay) in [None, Some(150), Some(400)].into_iter().enumerate() {
        let to = format!("{}/crash/pushed-{i}:1", f.proxy.addr);
        let at = match delay {
            None => KillAt::Uploaded(
                f.proxy.received.clone(),
                f.proxy.received.load(Ordering::SeqCst) + (2 << 20),
            ),
            Some(ms) => KillAt::After(Duration::from_millis(ms)),
        };
        let env = [("STRATA_CRASH_PUSH_TO", to.as_str())];
        let child = spawn_child_env("push", &root, "crash/img:1", &env).await;
        kills.push(run_until(child, &root, at).await);
        let d = r.service().push("crash/img:1", Some(&to), push_opts());
        assert_eq!(d.await.unwrap().digest(), &manifest, "push {i}");
        let fresh = Root::open(&f.work.path().join(format!("push-check-{i}")), SN);
        let q = fresh.service().pull(&to, pull_opts()).await.unwrap();
        assert_image_whole(&fresh, &q.image.name, &manifest, &f.chains, &f.tree).await;
    }
    eprintln!("push: killed {kills:?} (mid-upload, 150 ms, 400 ms)");
    assert!(kills[0], "the push must have been killed mid-upload");
    let report = r.check(&CheckOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    assert_clean_after_gc(&r, "push").await;
    assert_eq!(
        r.images().get("crash/img:1").await.unwrap().target.digest(),
        &manifest
    );
}

/// A root holding the fixture image (pulled, unpacked) and garbage: 300 unreferenced
/// blobs and 30 unreferenced committed snapshots. Returns the counts of blob files and
/// snapshots before and after a full GC would run.
async fn gc_garbage_root(f: &Fixture, path: &Path) -> ((usize, usize), (usize, usize)) {
    let r = Root::open(path, SN);
    r.service().pull(&f.remote, pull_opts()).await.unwrap();
    let keep = (blob_files(path), walk(r.snapshotter()).await.len());
    for i in 0..300u32 {
        let bytes = format!("garbage {i}").into_bytes();
        let desc = strata::content::Descriptor::new(
            "application/octet-stream".into(),
            bytes.len() as u64,
            strata::content::digest::sha256(&bytes),
        );
        let reference = format!("garbage-{i}");
        let content = r.content();
        strata::content::helpers::write_blob(content, &reference, &bytes[..], &desc, Labels::new())
            .await
            .unwrap();
    }
    let sn = r.snapshotter();
    for i in 0..30 {
        let key = format!("garbage-active-{i}");
        sn.prepare(&key, "", Default::default()).await.unwrap();
        let name = format!("garbage-{i}");
        sn.commit(&name, &key, Default::default()).await.unwrap();
    }
    let all = (blob_files(path), walk(sn).await.len());
    (all, keep)
}

/// GC killed while deleting blobs and while removing snapshots: the re-run GC removes
/// the rest and nothing else; the image stays whole and `check` is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_gc_mid_sweep() {
    let Some(f) = fixture().await else { return };
    type At = fn((usize, usize)) -> KillAt;
    let cases: [(&str, At); 2] = [
        ("gc-mid-content", |(blobs, _)| {
            KillAt::FewerBlobs(blobs - 20)
        }),
        ("gc-mid-snapshots", |(_, snaps)| {
            KillAt::FewerSnapshots(snaps - 3)
        }),
    ];
    let mut kills = Vec::new();
    for (case, at) in cases {
        let root = f.work.path().join(case);
        let (all, keep) = gc_garbage_root(&f, &root).await;
        let child = spawn_child("gc", &root, "").await;
        kills.push(run_until(child, &root, at(all)).await);
        let r = Root::open(&root, SN);
        r.gc_collector().collect().await.unwrap();
        let after = (blob_files(&root), walk(r.snapshotter()).await.len());
        assert_eq!(
            after, keep,
            "{case}: (blobs, snapshots) after the re-run GC"
        );
        let report = r.check(&CheckOptions::default()).await.unwrap();
        assert!(report.is_clean(), "{case}: {:?}", report.damage);
        assert_clean_after_gc(&r, case).await;
        let name = r.images().list(&[] as &[String]).await.unwrap()[0]
            .name
            .clone();
        assert_image_whole(&r, &name, &f.manifest, &f.chains, &f.tree).await;
    }
    eprintln!("gc: killed {kills:?} (mid-content, mid-snapshots)");
    assert!(kills[0], "GC must have been killed while deleting blobs");
}

/// Two processes pull one image into one root at once: both succeed, no lock error is
/// surfaced, each ChainID snapshot is made once and both end on the same top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_pull_one_image_into_one_root() {
    let Some(f) = fixture().await else { return };
    let root = f.work.path().join("concurrent");
    std::fs::create_dir_all(&root).unwrap();
    let a = spawn_child("pull", &root, &f.remote).await;
    let b = spawn_child("pull", &root, &f.remote).await;
    let (oa, ob) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    let mut tops = Vec::new();
    let mut applied = 0;
    for o in [oa.unwrap(), ob.unwrap()] {
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        assert!(o.status.success(), "a puller failed:\n{out}\n{err}");
        for bad in ["locked", "SQLITE_BUSY", "busy", "Unavailable"] {
            assert!(
                !out.contains(bad) && !err.contains(bad),
                "{bad}: {out}\n{err}"
            );
        }
        let line = out
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no RESULT line in {out}"));
        tops.push(line.split("top=").nth(1).unwrap().to_string());
        applied += line
            .split("applied=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap();
    }
    assert_eq!(tops[0], tops[1]);
    assert_eq!(tops[0], f.chains.last().unwrap().to_string());
    let r = Root::open(&root, SN);
    let snaps = r.snapshotter().walk(&[]).await.unwrap();
    let names: Vec<PathBuf> = snaps.iter().map(|s| PathBuf::from(&s.name)).collect();
    assert_eq!(
        snaps.len(),
        3,
        "one snapshot per ChainID, nothing else: {names:?}"
    );
    for c in &f.chains {
        assert_eq!(
            r.snapshotter().stat(c.as_ref()).await.unwrap().kind,
            Kind::Committed
        );
    }
    eprintln!("concurrent pulls applied {applied} layers in total (3 needed)");
    assert_clean_after_gc(&r, "concurrent").await;
    let name = r.images().list(&[] as &[String]).await.unwrap()[0]
        .name
        .clone();
    assert_image_whole(&r, &name, &f.manifest, &f.chains, &f.tree).await;
}

/// The orphan walk these tests rely on finds planted orphans of each kind (and nothing
/// on a clean root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_walk_finds_planted_orphans() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let r = Root::open(work.path(), SN);
    let mut l = LayerBuilder::new();
    l.file("a", 0o644, b"a").unwrap();
    let img = ImageBuilder::new()
        .layer(l.finish_gzip().unwrap())
        .write(r.content(), r.images(), "x:1")
        .await
        .unwrap();
    r.service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    let (p, reach) = orphans(&r, true).await;
    assert!(p.is_empty(), "{p:?}");
    assert_eq!((reach.content.len(), reach.snapshots.len()), (3, 1));
    // A blob, an ingest and a snapshot nothing references.
    strata::content::helpers::write_blob(
        r.content(),
        "stray",
        &b"stray"[..],
        &strata::content::Descriptor::new(
            "application/octet-stream".into(),
            5,
            strata::content::digest::sha256(b"stray"),
        ),
        Labels::new(),
    )
    .await
    .unwrap();
    {
        use strata::content::{Ingester, WriterOpts};
        let mut w = r.content().writer(WriterOpts::new("half")).await.unwrap();
        w.write(b"half").await.unwrap();
    }
    r.snapshotter()
        .prepare("extract-1-1 sha256:x", "", Labels::new())
        .await
        .unwrap();
    let (p, _) = orphans(&r, true).await;
    let text = p.join("\n");
    assert!(text.contains("orphan blob record sha256:"), "{text}");
    assert!(text.contains("orphan ingest half"), "{text}");
    assert!(text.contains("orphan snapshot \"extract-1-1"), "{text}");
    // A referenced snapshot that is missing.
    r.snapshotter()
        .remove("extract-1-1 sha256:x")
        .await
        .unwrap();
    r.images().delete(&img.name, None).await.unwrap();
    let top = strata::snapshot::Snapshotter::walk(r.snapshotter().as_ref(), &[])
        .await
        .unwrap()[0]
        .name
        .clone();
    r.snapshotter().remove(&top).await.unwrap();
    r.images().create(img.clone()).await.unwrap();
    let (p, _) = orphans(&r, true).await;
    assert!(
        p.iter().any(|p| p.starts_with("referenced snapshot")),
        "{p:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Regression test: commit must hold every ingest it opens (the layer's `commit-<nanos>`
// and the config's and manifest's `build-<digest>`) in its lease, or a kill -9 while one
// is written leaves an ingest nothing holds (found by
// `kill_commit_after_snapshot_before_image_record`; fixed in 4a78aea). It checks, at the
// moment each writer is opened, whether some lease holds its ref.

/// A content store that records, for every writer opened, whether a lease held the
/// ingest ref at that moment.
struct LeaseSpy {
    inner: strata::content::local::LocalStore,
    leases: Arc<strata::image::leases::LeaseManager>,
    seen: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

#[async_trait::async_trait]
impl strata::content::Provider for LeaseSpy {
    async fn reader_at(
        &self,
        desc: &strata::content::Descriptor,
    ) -> strata::content::Result<Arc<dyn strata::content::ReaderAt>> {
        self.inner.reader_at(desc).await
    }
    async fn reader(
        &self,
        desc: &strata::content::Descriptor,
    ) -> strata::content::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        self.inner.reader(desc).await
    }
}

#[async_trait::async_trait]
impl strata::content::Ingester for LeaseSpy {
    async fn writer(
        &self,
        opts: strata::content::WriterOpts,
    ) -> strata::content::Result<Box<dyn strata::content::Writer>> {
        let want = strata::image::leases::Resource::ingest(opts.reference.clone());
        let mut held = false;
        for l in self.leases.list(&[] as &[String]).await? {
            held |= self.leases.list_resources(&l.id).await?.contains(&want);
        }
        self.seen
            .lock()
            .unwrap()
            .push((opts.reference.clone(), held));
        self.inner.writer(opts).await
    }
}

#[async_trait::async_trait]
impl strata::content::Manager for LeaseSpy {
    async fn info(&self, d: &Digest) -> strata::content::Result<strata::content::Info> {
        self.inner.info(d).await
    }
    async fn update(
        &self,
        info: strata::content::Info,
        fieldpaths: &[String],
    ) -> strata::content::Result<strata::content::Info> {
        self.inner.update(info, fieldpaths).await
    }
    async fn walk(
        &self,
        filters: &[String],
    ) -> strata::content::Result<Vec<strata::content::Info>> {
        self.inner.walk(filters).await
    }
    async fn delete(&self, d: &Digest) -> strata::content::Result<()> {
        self.inner.delete(d).await
    }
}

#[async_trait::async_trait]
impl strata::content::IngestManager for LeaseSpy {
    async fn status(&self, reference: &str) -> strata::content::Result<strata::content::Status> {
        self.inner.status(reference).await
    }
    async fn list_statuses(
        &self,
        filters: &[String],
    ) -> strata::content::Result<Vec<strata::content::Status>> {
        self.inner.list_statuses(filters).await
    }
    async fn abort(&self, reference: &str) -> strata::content::Result<()> {
        self.inner.abort(reference).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_holds_every_ingest_it_opens_in_its_lease() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let r = Root::open(work.path(), SN);
    let mut l = LayerBuilder::new();
    l.file("a", 0o644, b"a").unwrap();
    let img = ImageBuilder::new()
        .layer(l.finish_gzip().unwrap())
        .write(r.content(), r.images(), "base:1")
        .await
        .unwrap();
    let u = r
        .service()
        .unpack(&img, UnpackOptions::default())
        .await
        .unwrap();
    let mut labels = Labels::new();
    labels.insert(IMAGE_LABEL.into(), img.name.clone());
    let mounts = r
        .snapshotter()
        .prepare("ctr", u.top().unwrap().as_ref(), labels)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        with_temp_mount(&mounts, |root| {
            std::fs::write(root.join("b"), b"b").unwrap()
        })
        .unwrap()
    })
    .await
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spy = LeaseSpy {
        inner: r.content().clone(),
        leases: r.leases().clone(),
        seen: seen.clone(),
    };
    let svc =
        strata::image::service::ImageService::new(Arc::new(spy), Arc::new(r.images().clone()))
            .with_snapshotter(SN, r.snapshotter().clone())
            .with_leases(r.leases().clone());
    svc.commit("ctr", "new:1", CommitOptions::default())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    // The layer ingest is held (the control) ...
    assert!(
        seen.iter()
            .any(|(r, held)| r.starts_with("commit-") && *held),
        "{seen:?}"
    );
    // ... and so must be every other write of the flow.
    let unheld: Vec<_> = seen.iter().filter(|(_, held)| !held).collect();
    assert!(
        unheld.is_empty(),
        "commit opened these ingests with no lease holding them: {unheld:?}"
    );
}

// Regression (found by these crash tests): an ingest directory with no database record
// must be removed by GC. kill -9 leaves one when it lands between
// `writer()` creating `ingest/<key>/` (lock, ref, data) and recording the ingest, or
// between a blob commit's transaction (row deleted, data renamed into blobs/) and
// `remove_dir_all` of the directory (`kill_commit_after_snapshot_before_image_record`
// hits the latter now and then). This test plants exactly what such a crash leaves and
// expects GC to remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_ingest_dirs_without_records() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let r = Root::open(work.path(), SN);
    // A real ingest, committed: its directory goes away (the normal path).
    strata::content::helpers::write_blob(
        r.content(),
        "normal",
        &b"normal"[..],
        &strata::content::Descriptor::new(
            "application/octet-stream".into(),
            6,
            strata::content::digest::sha256(b"normal"),
        ),
        Labels::new(),
    )
    .await
    .unwrap();
    let ingest = work.path().join("content/ingest");
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    // What a kill after the commit transaction leaves: the directory without its data
    // or record.
    let left = ingest.join("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&left).unwrap();
    std::fs::write(left.join("ref"), "default/build-sha256:x").unwrap();
    std::fs::write(left.join("lock"), "").unwrap();
    r.gc_collector().collect().await.unwrap();
    assert!(
        !left.exists(),
        "GC left an ingest directory that has no record: {}",
        left.display()
    );
}
