//! A root on a full filesystem (a small tmpfs): a pull that runs out of space fails
//! naming the cause; listings, `image rm`, `gc` and `check` still work there and free
//! space; once space is back a re-pull completes, and `gc` leaves no scratch snapshot.
//! Needs root (mounts) and docker-registry.

mod e2e_common;
mod example_bin;
#[path = "../crates/image/tests/registry_common/mod.rs"]
mod registry_common;

use std::path::Path;
use std::process::Command;

use e2e_common::{Root, is_root};
use registry_common::{Registry, pull_opts_plain, push_built};

/// A tmpfs of `mib` MiB at a new directory; unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(self.path()).unwrap();
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Fills `fs` to the last byte with a file `fill` (returns its path).
fn fill(fs: &Tmpfs) -> std::path::PathBuf {
    let p = fs.path().join("fill");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", &format!("of={}", p.display())])
        .stderr(std::process::Stdio::null())
        .status();
    assert_eq!(fs.free(), 0, "the filesystem is full");
    p
}

fn cli(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(example_bin::example_bin("strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_reads_frees_and_recovers() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let small = push_built(&reg.addr, "full/small", &[2 << 20], 1).await;
    let big = push_built(&reg.addr, "full/big", &[6 << 20, 4 << 20, 64 << 10], 2).await;
    let fs = Tmpfs::mount(48);
    let dir = fs.path().join("root");
    let root = Root::open(&dir, "overlay");
    root.pull(&small, pull_opts_plain()).await.unwrap();

    // Room for part of the big image only: the pull fails, naming the cause.
    let filler = fill(&fs);
    std::fs::remove_file(&filler).unwrap();
    let keep_free = 9 << 20;
    let pad = fs.free() - keep_free;
    let f = std::fs::File::create(&filler).unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, pad).unwrap();
    drop(f);
    let e = root.pull(&big, pull_opts_plain()).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("No space left on device") || msg.contains("disk is full"),
        "{msg}"
    );

    // Completely full now: reads and the commands that free space still work.
    std::fs::remove_file(&filler).unwrap();
    fill(&fs);
    for args in [
        &["image", "ls"][..],
        &["snapshot", "ls"],
        &["content", "ls"],
        &["lease", "ls"],
    ] {
        let (ok, out) = cli(&dir, args);
        assert!(ok, "{args:?} on a full filesystem: {out}");
    }
    // The check runs too (what the failed pull left is for GC, not damage).
    let (ok, out) = cli(&dir, &["check", "--quick"]);
    assert!(
        ok && out.contains("0 damaged"),
        "check on a full filesystem: {out}"
    );
    let (ok, out) = cli(&dir, &["image", "ls", "-q"]);
    assert!(ok && out.contains("full/small"), "{out}");
    let before = fs.free();
    let (ok, out) = cli(&dir, &["image", "rm", &small]);
    assert!(ok, "image rm on a full filesystem: {out}");
    let (ok, out) = cli(&dir, &["gc"]);
    assert!(ok, "gc on a full filesystem: {out}");
    assert!(
        fs.free() > before + (2 << 20),
        "gc freed the small image's bytes"
    );

    // Space is back: the big image pulls whole; GC leaves no scratch snapshot; all checks.
    std::fs::remove_file(fs.path().join("fill")).unwrap();
    let p = root.pull(&big, pull_opts_plain()).await.unwrap();
    assert_eq!(p.chain_ids.len(), 3);
    // The failed pull could not delete its lease on the full disk: this process's GC
    // collects what it held (another process's GC would once this one is gone).
    root.gc().await.unwrap();
    let keys: Vec<String> = root
        .snapshotter()
        .walk(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(keys.iter().all(|k| !k.starts_with("extract-")), "{keys:?}");
    let (ok, out) = cli(&dir, &["check"]);
    assert!(ok, "check after recovery: {out}");
}

/// A bind mount of `src` at a new directory, remounted read-only; unmounted on drop.
struct ReadOnlyBind(tempfile::TempDir);

impl ReadOnlyBind {
    fn mount(src: &Path) -> ReadOnlyBind {
        let dir = tempfile::tempdir().unwrap();
        for args in [&["--bind"][..], &["-o", "remount,bind,ro"]] {
            let st = Command::new("mount")
                .args(args)
                .arg(src)
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "mount {args:?}");
        }
        ReadOnlyBind(dir)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Every listing and inspection works on a read-only bind of a root, after the process
/// that wrote it has closed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_work_on_a_read_only_bind() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let image = push_built(&reg.addr, "ro/img", &[1 << 20, 64 << 10], 3).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("root");
    let (top, config) = {
        let root = Root::open(&dir, "overlay");
        let p = root.pull(&image, pull_opts_plain()).await.unwrap();
        let top = p.chain_ids.last().unwrap().to_string();
        let sn = root.snapshotter();
        sn.view("ro-view", &top, Default::default()).await.unwrap();
        (top, p.image.target.digest().to_string())
    };
    let ro = ReadOnlyBind::mount(&dir);
    assert!(
        std::fs::write(ro.0.path().join("probe"), b"x").is_err(),
        "the bind is read-only"
    );
    let cases: [(&[&str], &str); 11] = [
        (&["image", "ls"], "ro/img"),
        (&["image", "inspect", &image], &config),
        (&["snapshot", "ls"], &top),
        (&["snapshot", "info", &top], &top),
        (&["snapshot", "usage", &top], ""),
        (&["snapshot", "mounts", "ro-view"], "lowerdir"),
        (&["content", "ls"], &config),
        (&["content", "info", &config], &config),
        (&["content", "active"], ""),
        (&["lease", "ls"], ""),
        (&["check", "--quick"], "0 damaged"),
    ];
    for (args, want) in cases {
        let (ok, out) = cli(ro.0.path(), args);
        assert!(
            ok && out.contains(want),
            "{args:?} on a read-only bind:\n{out}"
        );
    }
    let (ok, out) = cli(ro.0.path(), &["content", "get", &config]);
    assert!(ok && !out.is_empty(), "content get: {out}");
}
