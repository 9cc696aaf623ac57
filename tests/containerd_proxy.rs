//! A stock containerd 1.6 (Debian's) with `strata serve` as its proxy snapshotter:
//! `ctr images pull --snapshotter strata` of a three-layer image (busybox, whiteouts, an
//! opaque dir, a hardlink) from a local `docker-registry`, `ctr run --rm --snapshotter
//! strata` printing what the container wrote, `ctr snapshots --snapshotter strata
//! ls|info|usage|rm` agreeing with `strata snapshot ls|info|usage`, and `ctr images mount
//! --snapshotter strata` showing the same tree as `strata image pull` and a mount.
//!
//! Needs root, containerd, ctr, runc, docker-registry and busybox-static; skips without
//! them, fails under `STRATA_REQUIRE_PEERS=1`.

mod e2e_common;
mod example_bin;
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata::image::build::{ImageBuilder, LayerBuilder};

const NS: &str = "strata-test";
const BUSYBOX: &str = "/bin/busybox";

/// A child process stopped with SIGTERM (then SIGKILL after 10 s) when dropped.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    /// Sends SIGTERM and waits; returns how long the process took to exit.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while t.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().unwrap().is_some() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{} did not stop within 10 s of SIGTERM", self.what);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn have_busybox() -> bool {
    let found = Path::new(BUSYBOX).exists();
    if !found {
        assert!(
            std::env::var("STRATA_REQUIRE_PEERS").as_deref() != Ok("1"),
            "busybox-static is required (STRATA_REQUIRE_PEERS=1) but missing"
        );
        eprintln!("SKIP: busybox-static not installed");
    }
    found
}

/// Waits until a connection to the unix socket `sock` succeeds.
fn wait_for_socket(sock: &Path) {
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "nothing accepts on {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds the test image in a strata root at `src` and pushes it to `reference`.
async fn push_test_image(src: &Path, reference: &str) {
    let content = strata::content::local::LocalStore::open(src.join("content"))
        .unwrap()
        .namespace("default");
    let images = strata::image::store::ImageStore::open(src.join("metadata.db"))
        .unwrap()
        .namespace("default");
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut base = LayerBuilder::new();
    base.mtime(1_700_000_000);
    base.dir("bin", 0o755)
        .unwrap()
        .file("bin/busybox", 0o755, &busybox)
        .unwrap();
    base.symlink("bin/sh", "busybox")
        .unwrap()
        .symlink("bin/cat", "busybox")
        .unwrap();
    base.dir("etc", 0o755)
        .unwrap()
        .file("etc/gone", 0o644, b"deleted above\n")
        .unwrap();
    base.dir("data", 0o755)
        .unwrap()
        .file("data/old", 0o644, b"hidden by opaque\n")
        .unwrap();
    base.dir("tmp", 0o1777).unwrap();
    let mut app = LayerBuilder::new();
    app.mtime(1_700_000_100);
    app.dir("etc/app", 0o755)
        .unwrap()
        .file("etc/app/a.txt", 0o644, b"hello\n")
        .unwrap();
    app.hardlink("etc/app/hl", "etc/app/a.txt")
        .unwrap()
        .whiteout("etc/gone")
        .unwrap();
    let mut top = LayerBuilder::new();
    top.mtime(1_700_000_200);
    top.opaque("data")
        .unwrap()
        .file("data/new", 0o600, b"new\n")
        .unwrap();
    ImageBuilder::new()
        .layer(base.finish_gzip().unwrap())
        .layer(app.finish_gzip().unwrap())
        .layer(top.finish_gzip().unwrap())
        .config("Cmd", serde_json::json!(["/bin/sh"]))
        .write(&content, &images, "strata-test/busybox:1")
        .await
        .unwrap();
    strata(
        src,
        &[
            "image",
            "push",
            "--plain-http",
            "strata-test/busybox:1",
            reference,
        ],
    );
}

/// Runs the strata CLI on `root` (overlay); its stdout.
fn strata(root: &Path, args: &[&str]) -> String {
    registry_common::run(
        Command::new(example_bin::example_bin("strata"))
            .arg("--root")
            .arg(root)
            .args(["--snapshotter", "overlay"])
            .args(args),
    )
}

/// containerd's config: its own root, state and sockets under `dir`, strata as proxy.
fn containerd_config(dir: &Path, strata_sock: &Path) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        "version = 2\nroot = \"{d}/ctd-root\"\nstate = \"{d}/ctd-state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{d}/ctd.sock\"\n[ttrpc]\n  address = \"{d}/ctd.sock.ttrpc\"\n\
         [debug]\n  level = \"warn\"\n\
         [proxy_plugins]\n  [proxy_plugins.strata]\n    type = \"snapshot\"\n    address = \"{}\"\n",
        strata_sock.display()
    );
    let p = dir.join("config.toml");
    std::fs::write(&p, conf).unwrap();
    p
}

/// `ctr -a SOCK -n NS args…`; its stdout.
fn ctr(dir: &Path, args: &[&str]) -> String {
    registry_common::run(
        Command::new("ctr")
            .arg("-a")
            .arg(dir.join("ctd.sock"))
            .args(["-n", NS])
            .args(args),
    )
}

/// Rows of a `KEY PARENT KIND` listing (header skipped).
fn rows(listing: &str) -> Vec<(String, String, String)> {
    listing
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [k, kind] => Some((k.to_string(), String::new(), kind.to_string())),
                [k, p, kind] => Some((k.to_string(), p.to_string(), kind.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// The backend key containerd gave snapshot `name` (`<ns>/<id>/<name>`), from strata's rows.
fn backend_key<'a>(
    strata_rows: &'a [(String, String, String)],
    name: &str,
) -> Option<&'a (String, String, String)> {
    strata_rows
        .iter()
        .find(|(k, _, _)| k.starts_with(&format!("{NS}/")) && k.ends_with(&format!("/{name}")))
}

fn report(line: &str) {
    // Past the harness's capture, so CI logs show it.
    std::io::stderr()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
}

fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|t| t.starts_with(&*dir.to_string_lossy()))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = Command::new("umount").arg("-l").arg(t).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_and_runs_with_strata_as_its_snapshotter() {
    let tools = ["containerd", "ctr", "runc"]
        .iter()
        .all(|t| e2e_common::have(t));
    if !(tools && have_busybox() && e2e_common::is_root()) {
        return;
    }
    let Some(reg) = registry_common::Registry::start(None).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reference = format!("{}/strata-test/busybox:1", reg.addr);
    push_test_image(&d.join("src"), &reference).await;

    let (sroot, ssock) = (d.join("strata"), d.join("strata.sock"));
    let serve = Command::new(example_bin::example_bin("strata"))
        .arg("--root")
        .arg(&sroot)
        .args(["--snapshotter", "overlay", "serve", "--address"])
        .arg(&ssock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Proc {
        child: serve,
        what: "strata serve",
    };
    wait_for_socket(&ssock);
    let conf = containerd_config(d, &ssock);
    let log = std::fs::File::create(d.join("containerd.log")).unwrap();
    let ctd = Command::new("containerd")
        .arg("--config")
        .arg(&conf)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut ctd = Proc {
        child: ctd,
        what: "containerd",
    };
    wait_for_socket(&d.join("ctd.sock"));

    let result = std::panic::AssertUnwindSafe(drive_containerd(d, &sroot, &reference));
    let outcome = futures::FutureExt::catch_unwind(result).await;
    ctd.stop();
    let took = serve.stop();
    unmount_under(d);
    if let Err(p) = outcome {
        let log = std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default();
        eprintln!("containerd.log:\n{log}");
        std::panic::resume_unwind(p);
    }
    assert!(!ssock.exists(), "strata serve removes its socket on exit");
    report(&format!("strata serve stopped {took:?} after SIGTERM"));
}

/// The containerd side of the test, with both daemons running.
async fn drive_containerd(d: &Path, sroot: &Path, reference: &str) {
    let t = Instant::now();
    ctr(
        d,
        &[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "strata",
            reference,
        ],
    );
    report(&format!(
        "ctr images pull --snapshotter strata {reference}: ok in {:?}",
        t.elapsed()
    ));
    let script = "echo hi from strata > /x; cat /x; cat /etc/app/hl; ls /data; test ! -e /etc/gone";
    let out = ctr(
        d,
        &[
            "run",
            "--rm",
            "--snapshotter",
            "strata",
            reference,
            "strata-run-1",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    report(&format!(
        "ctr run --rm --snapshotter strata {reference} strata-run-1 /bin/sh -c '{script}' printed: {out:?}"
    ));
    assert_eq!(out, "hi from strata\nhello\nnew\n");

    let theirs = rows(&ctr(d, &["snapshots", "--snapshotter", "strata", "ls"]));
    let ours = rows(&strata(sroot, &["snapshot", "ls"]));
    let committed: Vec<_> = theirs.iter().filter(|r| r.2 == "Committed").collect();
    assert_eq!(
        committed.len(),
        3,
        "one committed snapshot per layer: {theirs:?}"
    );
    for (name, parent, kind) in &theirs {
        let (key, their_parent, our_kind) = backend_key(&ours, name)
            .unwrap_or_else(|| panic!("{name} missing from strata's {ours:?}"));
        assert_eq!(our_kind, kind, "{key}");
        assert_eq!(parent.is_empty(), their_parent.is_empty(), "{key}");
        assert!(
            their_parent.ends_with(&format!("/{parent}")) || parent.is_empty(),
            "{key}: {their_parent} vs {parent}"
        );
    }
    assert_eq!(
        ours.iter().filter(|r| r.2 == "Committed").count(),
        3,
        "{ours:?}"
    );
    let top = committed
        .iter()
        .find(|r| !theirs.iter().any(|o| o.1 == r.0))
        .unwrap()
        .0
        .clone();
    let key = backend_key(&ours, &top).unwrap().0.clone();
    compare_info_and_usage(d, sroot, &top, &key);
    prepare_and_remove(d, sroot, &top).await;
    compare_mounted_trees(d, reference);
}

/// `ctr images mount --snapshotter strata` (containerd applied the layers into strata's
/// snapshots) shows the same tree as `strata image pull` and a mounted snapshot of it
/// (strata applied them): whiteouts, the opaque dir and the hardlink included.
fn compare_mounted_trees(d: &Path, reference: &str) {
    let (theirs, ours, own_root) = (
        d.join("mnt-ctr"),
        d.join("mnt-strata"),
        d.join("strata-own"),
    );
    for p in [&theirs, &ours] {
        std::fs::create_dir_all(p).unwrap();
    }
    let target = theirs.to_string_lossy().into_owned();
    ctr(
        d,
        &[
            "images",
            "mount",
            "--snapshotter",
            "strata",
            reference,
            &target,
        ],
    );
    strata(&own_root, &["image", "pull", "--plain-http", reference]);
    strata(
        &own_root,
        &["snapshot", "prepare", "tree", "--from-image", reference],
    );
    strata(
        &own_root,
        &["snapshot", "mount", "tree", &ours.to_string_lossy()],
    );
    let (a, b) = (e2e_common::full_tree(&theirs), e2e_common::full_tree(&ours));
    registry_common::run(Command::new("umount").arg(&ours));
    ctr(d, &["images", "unmount", &target]);
    let diff = e2e_common::tree_diff(&a, &b, false, true);
    assert!(diff.is_empty(), "ctr images mount vs strata: {diff:#?}");
    assert!(
        a.entries.contains_key(Path::new("data/new"))
            && !a.entries.contains_key(Path::new("data/old"))
    );
    assert!(!a.entries.contains_key(Path::new("etc/gone")));
    assert_eq!(a.hardlinks.len(), 1, "{:?}", a.hardlinks);
    report(&format!(
        "ctr images mount --snapshotter strata and strata image pull + mount give the same {} entries",
        a.entries.len()
    ));
}

/// `ctr snapshots info|usage` of `name` agree with `strata snapshot info|usage` of `key`.
fn compare_info_and_usage(d: &Path, sroot: &Path, name: &str, key: &str) {
    let theirs: serde_json::Value = serde_json::from_str(&ctr(
        d,
        &["snapshots", "--snapshotter", "strata", "info", name],
    ))
    .unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&strata(sroot, &["snapshot", "info", key])).unwrap();
    assert_eq!(theirs["Kind"], ours["kind"], "{theirs} vs {ours}");
    assert_eq!(theirs["Name"], name);
    let their_usage = ctr(d, &["snapshots", "--snapshotter", "strata", "usage", name]);
    let our_usage = strata(sroot, &["snapshot", "usage", key]);
    let inodes = |s: &str| {
        s.lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
    };
    assert_eq!(
        inodes(&their_usage),
        inodes(&our_usage),
        "{their_usage} vs {our_usage}"
    );
    report(&format!(
        "ctr snapshots info/usage {name} agree with strata snapshot info/usage {key}: {}",
        their_usage.trim()
    ));
}

/// A snapshot prepared through containerd appears in strata, and goes with `ctr snapshots rm`.
async fn prepare_and_remove(d: &Path, sroot: &Path, parent: &str) {
    ctr(
        d,
        &[
            "snapshots",
            "--snapshotter",
            "strata",
            "prepare",
            "strata-scratch",
            parent,
        ],
    );
    let ours = rows(&strata(sroot, &["snapshot", "ls"]));
    let (key, _, kind) = backend_key(&ours, "strata-scratch")
        .expect("prepared snapshot reaches strata")
        .clone();
    assert_eq!(kind, "Active");
    ctr(
        d,
        &[
            "snapshots",
            "--snapshotter",
            "strata",
            "rm",
            "strata-scratch",
        ],
    );
    let t = Instant::now();
    // containerd removes the backend snapshot in its garbage collection, soon after.
    while rows(&strata(sroot, &["snapshot", "ls"]))
        .iter()
        .any(|r| r.0 == key)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{key} still in strata 20 s after ctr snapshots rm"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
