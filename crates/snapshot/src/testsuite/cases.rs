//! The cases of the suite; each keeps the intent of containerd's `check*` function.

use super::Case;
use super::fstest::{self, Op, file};
use crate::mount::{Layout, MountGuard, classify};
use crate::{Info, Kind, Mount, Snapshotter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use strata_content::{Error, Labels, Result};

type R = Result<()>;

fn fail(msg: impl Into<String>) -> Error {
    Error::internal(msg)
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(fail(format!($($msg)+)));
        }
    };
}

fn gc_root() -> Labels {
    [("containerd.io/gc.root".to_string(), "testsuite".to_string())].into()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn io(e: std::io::Error) -> Error {
    Error::io("apply", e)
}

/// Mounts `mounts` at a fresh directory `work/<name>`.
fn mount(mounts: &[Mount], work: &Path, name: &str) -> Result<(MountGuard, PathBuf)> {
    ensure!(!mounts.is_empty(), "expected mounts to have entries");
    let target = work.join(name);
    std::fs::create_dir_all(&target).map_err(io)?;
    Ok((MountGuard::mount(mounts, &target)?, target))
}

/// Prepares `key` on `parent`, applies `ops` through its mounts, commits it as `name`.
async fn layer(
    sn: &dyn Snapshotter,
    work: &Path,
    key: &str,
    parent: &str,
    name: &str,
    ops: &[Op],
) -> R {
    let m = sn.prepare(key, parent, gc_root()).await?;
    let (g, t) = mount(&m, work, &format!("mnt-{key}"))?;
    fstest::apply(&t, ops).map_err(io)?;
    g.unmount()?;
    sn.commit(name, key, gc_root()).await
}

/// containerd's `checkSnapshots`: each applier becomes a committed layer, and a view of
/// it must equal the same appliers replayed on a flat directory.
async fn check_snapshots(sn: &dyn Snapshotter, work: &Path, prefix: &str, layers: &[Vec<Op>]) -> R {
    let flat = work.join(format!("{prefix}flat"));
    std::fs::create_dir_all(&flat).map_err(io)?;
    let mut parent = String::new();
    for (i, ops) in layers.iter().enumerate() {
        let name = format!("{prefix}committed-{i}");
        layer(
            sn,
            work,
            &format!("{prefix}preparing-{i}"),
            &parent,
            &name,
            ops,
        )
        .await?;
        fstest::apply(&flat, ops).map_err(io)?;
        let view = format!("{prefix}view-{i}");
        let m = sn.view(&view, &name, gc_root()).await?;
        let (g, t) = mount(&m, work, &format!("mnt-{view}"))?;
        fstest::check_directory_equal(&flat, &t).map_err(|e| fail(format!("layer {i}: {e}")))?;
        g.unmount()?;
        sn.remove(&view).await?;
        parent = name;
    }
    Ok(())
}

pub(super) async fn run(case: Case, sn: &dyn Snapshotter, work: &Path, backend: &str) -> R {
    match case {
        Case::Basic => basic(sn, work).await,
        Case::StatActive => stat_active(sn, work).await,
        Case::StatCommitted => stat_committed(sn, work).await,
        Case::Transitivity => transitivity(sn, work).await,
        Case::PrepareViewFailing => prepare_view_failing(sn).await,
        Case::Update => update(sn).await,
        Case::Remove => remove(sn).await,
        Case::Walk => walk(sn).await,
        Case::LayerFileUpdate => layer_file_update(sn, work).await,
        Case::RemoveDirectoryInLowerLayer => remove_dir_in_lower(sn, work).await,
        Case::Chown => chown(sn, work).await,
        Case::DirectoryPermissionOnCommit => dir_permission_on_commit(sn, work).await,
        Case::RemoveIntermediateSnapshot => remove_intermediate(sn).await,
        Case::DeletedFilesInChildSnapshot => deleted_files_in_child(sn, work).await,
        Case::MoveFileFromLowerLayer => move_file_from_lower(sn, work).await,
        Case::ViewReadonly => view_readonly(sn, work).await,
        Case::StatInWalk => stat_in_walk(sn).await,
        Case::CloseTwice => close_twice(sn).await,
        Case::RootPermission => root_permission(sn, work).await,
        Case::Rename => rename(sn, work, backend).await,
        Case::Layers128Mount => layers_128(sn, work).await,
    }
}

async fn basic(sn: &dyn Snapshotter, work: &Path) -> R {
    let initial = vec![
        file("foo", "foo\n", 0o777),
        Op::CreateDir("a", 0o755),
        Op::CreateDir("a/b", 0o755),
        Op::CreateDir("a/b/c", 0o755),
    ];
    let diff = vec![
        file("bar", "bar\n", 0o777),
        file("foo", "bar\n", 0o777),
        Op::RemoveAll("a/b"),
    ];
    layer(sn, work, "preparing", "", "committed", &initial).await?;
    let si = sn.stat("committed").await?;
    ensure!(
        si.parent.is_empty() && si.kind == Kind::Committed,
        "committed: {si:?}"
    );
    ensure!(
        sn.stat("preparing").await.is_err_and(|e| e.is_not_found()),
        "preparing should be gone after commit"
    );

    let m = sn.prepare("nextlayer", "committed", gc_root()).await?;
    let (g, next) = mount(&m, work, "next")?;
    let expect = work.join("expect-initial");
    std::fs::create_dir_all(&expect).map_err(io)?;
    fstest::apply(&expect, &initial).map_err(io)?;
    fstest::check_directory_equal(&expect, &next).map_err(fail)?;
    fstest::apply(&next, &diff).map_err(io)?;
    g.unmount()?;
    let ni = sn.stat("nextlayer").await?;
    ensure!(
        ni.parent == "committed" && ni.kind == Kind::Active,
        "nextlayer: {ni:?}"
    );
    sn.commit("committed-next", "nextlayer", gc_root()).await?;
    let si2 = sn.stat("committed-next").await?;
    ensure!(
        si2.parent == "committed" && si2.kind == Kind::Committed,
        "committed-next: {si2:?}"
    );
    ensure!(
        sn.stat("nextlayer").await.is_err(),
        "nextlayer should be gone after commit"
    );

    let walked: BTreeMap<String, Info> = sn
        .walk(&[])
        .await?
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect();
    ensure!(walked.get("committed") == Some(&si), "walk: {walked:?}");
    ensure!(
        walked.get("committed-next") == Some(&si2),
        "walk: {walked:?}"
    );

    let m = sn
        .view("nextnextlayer", "committed-next", gc_root())
        .await?;
    let (g, view) = mount(&m, work, "nextnext")?;
    fstest::apply(&expect, &diff).map_err(io)?;
    fstest::check_directory_equal(&expect, &view).map_err(fail)?;
    g.unmount()?;
    sn.remove("nextnextlayer").await?;
    let err = sn
        .remove("committed")
        .await
        .expect_err("remove of a parent must fail");
    ensure!(
        err.is_failed_precondition() && err.to_string().contains("remove"),
        "{err}"
    );
    sn.remove("committed-next").await?;
    sn.remove("committed").await
}

async fn stat_active(sn: &dyn Snapshotter, work: &Path) -> R {
    let m = sn.prepare("preparing", "", gc_root()).await?;
    let (g, t) = mount(&m, work, "preparing")?;
    std::fs::write(t.join("foo"), "foo\n").map_err(io)?;
    let si = sn.stat("preparing").await?;
    ensure!(
        si.name == "preparing" && si.kind == Kind::Active && si.parent.is_empty(),
        "{si:?}"
    );
    g.unmount()
}

async fn stat_committed(sn: &dyn Snapshotter, work: &Path) -> R {
    let m = sn.prepare("preparing", "", gc_root()).await?;
    let (g, t) = mount(&m, work, "preparing")?;
    std::fs::write(t.join("foo"), "foo\n").map_err(io)?;
    g.unmount()?;
    sn.commit("committed", "preparing", gc_root()).await?;
    let si = sn.stat("committed").await?;
    ensure!(
        si.name == "committed" && si.kind == Kind::Committed && si.parent.is_empty(),
        "{si:?}"
    );
    Ok(())
}

async fn transitivity(sn: &dyn Snapshotter, work: &Path) -> R {
    layer(
        sn,
        work,
        "preparing",
        "",
        "snapA",
        &[file("foo", "foo\n", 0o777)],
    )
    .await?;
    layer(
        sn,
        work,
        "next",
        "snapA",
        "snapB",
        &[file("foo", "foo bar\n", 0o777)],
    )
    .await?;
    let (a, b) = (sn.stat("snapA").await?, sn.stat("snapB").await?);
    let pb = sn.stat(&b.parent).await?;
    ensure!(
        a.parent.is_empty() && b.parent == "snapA" && pb.parent.is_empty(),
        "{a:?} {b:?}"
    );
    // The content is layered: the view of B sees B's foo.
    let m = sn.view("vb", "snapB", gc_root()).await?;
    let (g, t) = mount(&m, work, "vb")?;
    let content = std::fs::read_to_string(t.join("foo")).map_err(io)?;
    g.unmount()?;
    ensure!(content == "foo bar\n", "foo = {content:?}");
    Ok(())
}

async fn prepare_view_failing(sn: &dyn Snapshotter) -> R {
    sn.prepare("preparing", "", gc_root()).await?;
    sn.commit("snapA", "preparing", gc_root()).await?;
    sn.prepare("newlayer", "snapA", gc_root()).await?;
    let e = sn
        .view("newlayer", "snapA", gc_root())
        .await
        .expect_err("view on a prepared key");
    ensure!(e.is_already_exists(), "{e}");
    sn.prepare("prepLayer", "snapA", gc_root()).await?;
    let e = sn
        .prepare("prepLayer", "snapA", gc_root())
        .await
        .expect_err("prepare twice");
    ensure!(e.is_already_exists(), "{e}");
    sn.view("viewLayer", "snapA", gc_root()).await?;
    let e = sn
        .view("viewLayer", "snapA", gc_root())
        .await
        .expect_err("view twice");
    ensure!(e.is_already_exists(), "{e}");
    let e = sn
        .prepare("snapA", "", gc_root())
        .await
        .expect_err("prepare on a committed name");
    ensure!(e.is_already_exists(), "{e}");
    Ok(())
}

/// c1 (committed), c2 (committed on c1), a1 (active on c2), a2 (active), v1 (view on
/// c2), v2 (view).
async fn base_snapshots(sn: &dyn Snapshotter) -> R {
    sn.prepare("c1-a", "", gc_root()).await?;
    sn.commit("c1", "c1-a", gc_root()).await?;
    sn.prepare("c2-a", "c1", gc_root()).await?;
    sn.commit("c2", "c2-a", gc_root()).await?;
    sn.prepare("a1", "c2", gc_root()).await?;
    sn.prepare("a2", "", gc_root()).await?;
    sn.view("v1", "c2", gc_root()).await?;
    sn.view("v2", "", gc_root()).await?;
    Ok(())
}

async fn update(sn: &dyn Snapshotter) -> R {
    let t1 = SystemTime::now();
    base_snapshots(sn).await?;
    let t2 = SystemTime::now();
    let cases = [
        ("c1", Kind::Committed, ""),
        ("c2", Kind::Committed, "c1"),
        ("a1", Kind::Active, "c2"),
        ("a2", Kind::Active, ""),
        ("v1", Kind::View, "c2"),
        ("v2", Kind::View, ""),
    ];
    for (name, kind, parent) in cases {
        let st = sn.stat(name).await?;
        ensure!(
            st.created >= t1 && st.created <= t2,
            "{name}: created {:?}",
            st.created
        );
        ensure!(st.created == st.updated, "{name}: updated != created");
        ensure!(
            st.kind == kind && st.parent == parent && st.name == name,
            "{st:?}"
        );
        let created = st.created;
        let root = "2024-01-01T00:00:00Z";
        let mut expected = labels(&[
            ("l1", "v1"),
            ("l2", "v2"),
            ("l3", "v3"),
            ("containerd.io/gc.root", root),
        ]);
        let mut req = st.clone();
        req.parent = "doesnotexist".into();
        req.labels = expected.clone();
        let u1 = SystemTime::now();
        let st = sn.update(req, &[]).await?;
        let u2 = SystemTime::now();
        ensure!(st.created == created, "{name}: created changed");
        ensure!(
            st.updated >= u1 && st.updated <= u2,
            "{name}: updated {:?}",
            st.updated
        );
        ensure!(
            st.kind == kind && st.parent == parent && st.name == name,
            "{st:?}"
        );
        ensure!(st.labels == expected, "{name}: {:?}", st.labels);

        expected = labels(&[
            ("l1", "updated"),
            ("l3", "v3"),
            ("containerd.io/gc.root", root),
        ]);
        let mut req = st.clone();
        req.labels = labels(&[("l1", "updated"), ("l4", "v4")]);
        let st = sn
            .update(req, &["labels.l1".into(), "labels.l2".into()])
            .await?;
        ensure!(st.labels == expected, "{name}: {:?}", st.labels);

        expected = labels(&[("l4", "v4"), ("containerd.io/gc.root", root)]);
        let mut req = st.clone();
        req.labels = expected.clone();
        let st = sn.update(req, &["labels".into()]).await?;
        ensure!(st.labels == expected, "{name}: {:?}", st.labels);

        let mut req = st.clone();
        req.parent = "doesnotexist".into();
        let e = sn
            .update(req, &["parent".into()])
            .await
            .expect_err("immutable field");
        ensure!(e.is_invalid_argument(), "{name}: {e}");
    }
    Ok(())
}

async fn remove(sn: &dyn Snapshotter) -> R {
    sn.prepare("committed-a", "", gc_root()).await?;
    sn.commit("committed-1", "committed-a", gc_root()).await?;
    sn.prepare("reuse-1", "committed-1", gc_root()).await?;
    sn.remove("reuse-1").await?;
    sn.view("reuse-1", "committed-1", gc_root()).await?;
    sn.remove("reuse-1").await?;
    sn.prepare("reuse-1", "", gc_root()).await?;
    sn.remove("committed-1").await?;
    sn.commit("committed-1", "reuse-1", gc_root()).await?;
    let e = sn.remove("reuse-1").await.expect_err("removed key");
    ensure!(e.is_not_found(), "{e}");
    Ok(())
}

async fn walk(sn: &dyn Snapshotter) -> R {
    let l = |v: &str| labels(&[("l", v), ("containerd.io/gc.root", "check-walk")]);
    let opt = || labels(&[("containerd.io/gc.root", "check-walk")]);
    sn.prepare("a-np", "", opt()).await?;
    sn.prepare("p-tmp", "", opt()).await?;
    sn.commit("p", "p-tmp", opt()).await?;
    sn.prepare("a", "p", opt()).await?;
    sn.view("v", "p", opt()).await?;
    sn.prepare("p-wl-tmp", "", opt()).await?;
    sn.commit("p-wl", "p-wl-tmp", l("1")).await?;
    sn.prepare("a-wl", "p-wl", l("2")).await?;
    sn.view("v-wl", "p-wl", l("3")).await?;
    sn.prepare("a-np-wl", "", l("2")).await?;
    let matrix: [(&[&str], &[&str]); 10] = [
        (
            &["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"],
            &[r#"labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["a-np", "a", "a-wl", "a-np-wl"],
            &[r#"kind==active,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["v", "v-wl"],
            &[r#"kind==view,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["p", "p-wl"],
            &[r#"kind==committed,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (&["p", "a-np-wl"], &["name==p", "name==a-np-wl"]),
        (&["a-wl"], &["name==a-wl,labels.l"]),
        (&["a", "v"], &["parent==p"]),
        (
            &["a", "v", "a-wl", "v-wl"],
            &[r#"parent!="",labels."containerd.io/gc.root"==check-walk"#],
        ),
        (&["p-wl", "a-wl", "v-wl", "a-np-wl"], &["labels.l"]),
        (&["a-wl", "a-np-wl"], &["labels.l==2"]),
    ];
    for (i, (want, filters)) in matrix.iter().enumerate() {
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        let mut got: Vec<String> = sn
            .walk(&filters)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        got.sort();
        want.sort();
        ensure!(got == want, "[{i}] {filters:?}: got {got:?}, want {want:?}");
    }
    let e = sn
        .walk(&["name==".into(), "labels.\"unterminated".into()])
        .await;
    ensure!(
        e.is_err_and(|e| e.is_invalid_argument()),
        "malformed filter must be InvalidArgument"
    );
    Ok(())
}

async fn layer_file_update(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![
        Op::CreateDir("etc", 0o700),
        file("etc/hosts", "mydomain 10.0.0.1", 0o644),
        file("etc/profile", "PATH=/usr/bin", 0o644),
    ];
    let l2 = vec![
        file("etc/hosts", "mydomain 10.0.0.2", 0o644),
        file("etc/profile", "PATH=/usr/bin", 0o666),
        Op::CreateDir("root", 0o700),
        file("root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
    ];
    // containerd repeats across second boundaries to catch mtime-granularity bugs.
    for i in 0..3 {
        check_snapshots(sn, work, &format!("run{i}-"), &[l1.clone(), l2.clone()]).await?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        tokio::time::sleep(std::time::Duration::from_nanos(
            1_000_000_000 - now.subsec_nanos() as u64,
        ))
        .await;
    }
    Ok(())
}

async fn remove_dir_in_lower(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![Op::CreateDir("lib", 0o700), file("lib/hidden", "", 0o644)];
    let l2 = vec![
        Op::RemoveAll("lib"),
        Op::CreateDir("lib", 0o700),
        file("lib/not-hidden", "", 0o644),
    ];
    let l3 = vec![file("lib/newfile", "", 0o644)];
    check_snapshots(sn, work, "", &[l1, l2, l3]).await
}

async fn chown(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![
        Op::CreateDir("opt", 0o700),
        Op::CreateDir("opt/a", 0o700),
        Op::CreateDir("opt/a/b", 0o700),
        file("opt/a/b/file.txt", "hello", 0o644),
    ];
    let l2 = vec![
        Op::Chown("opt", 1, 1),
        Op::Chown("opt/a", 1, 1),
        Op::Chown("opt/a/b", 1, 1),
        Op::Chown("opt/a/b/file.txt", 1, 1),
    ];
    check_snapshots(sn, work, "", &[l1, l2]).await
}

async fn dir_permission_on_commit(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![
        Op::CreateDir("dir1", 0o700),
        Op::CreateDir("dir2", 0o700),
        Op::CreateDir("dir3", 0o700),
        Op::CreateDir("dir4", 0o700),
        file("dir4/f1", "...", 0o644),
        Op::CreateDir("dir5", 0o700),
        file("dir5/f1", "...", 0o644),
        Op::Chown("dir1", 1, 1),
        Op::Chown("dir2", 1, 1),
        Op::Chown("dir3", 1, 1),
        Op::Chown("dir5", 1, 1),
        Op::Chown("dir5/f1", 1, 1),
    ];
    let l2 = vec![
        Op::Chown("dir2", 0, 0),
        Op::RemoveAll("dir3"),
        Op::Chown("dir4", 1, 1),
        Op::Chown("dir4/f1", 1, 1),
    ];
    let l3 = vec![
        Op::CreateDir("dir3", 0o700),
        Op::Chown("dir3", 1, 1),
        Op::RemoveAll("dir5"),
        Op::CreateDir("dir5", 0o700),
        Op::Chown("dir5", 1, 1),
    ];
    check_snapshots(sn, work, "", &[l1, l2, l3]).await
}

async fn remove_intermediate(sn: &dyn Snapshotter) -> R {
    sn.prepare("base", "", gc_root()).await?;
    sn.commit("committed-base", "base", gc_root()).await?;
    sn.prepare("intermediate", "committed-base", gc_root())
        .await?;
    sn.commit("committed-inter", "intermediate", gc_root())
        .await?;
    sn.prepare("toplayer", "committed-inter", gc_root()).await?;
    let e = sn
        .remove("committed-inter")
        .await
        .expect_err("intermediate removal must fail");
    ensure!(e.is_failed_precondition(), "{e}");
    sn.remove("toplayer").await?;
    sn.remove("committed-inter").await?;
    sn.remove("committed-base").await
}

async fn deleted_files_in_child(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![
        file("foo", "foo\n", 0o777),
        file("foobar", "foobar\n", 0o777),
    ];
    let l2 = vec![Op::RemoveAll("foobar")];
    check_snapshots(sn, work, "", &[l1, l2, vec![]]).await
}

async fn move_file_from_lower(sn: &dyn Snapshotter, work: &Path) -> R {
    let l1 = vec![
        Op::CreateDir("dir1", 0o700),
        file("dir1/f1", "Hello", 0o644),
        Op::CreateDir("dir2", 0o700),
        file("dir2/f2", "...", 0o644),
    ];
    let l2 = vec![
        Op::CreateDir("dir3", 0o700),
        file("dir3/f1", "Hello", 0o644),
        Op::RemoveAll("dir1"),
        Op::Link("dir2/f2", "dir3/f2"),
        Op::RemoveAll("dir2/f2"),
    ];
    check_snapshots(sn, work, "", &[l1, l2]).await
}

async fn view_readonly(sn: &dyn Snapshotter, work: &Path) -> R {
    sn.prepare("preparing", "", gc_root()).await?;
    sn.commit("committed", "preparing", gc_root()).await?;
    let m = sn.view("view", "committed", gc_root()).await?;
    let (g, t) = mount(&m, work, "view-mount")?;
    let res = std::fs::write(t.join("testfile"), "testcontent");
    g.unmount()?;
    let e = match res {
        Ok(()) => return Err(fail("write into a view mount should fail (EROFS)")),
        Err(e) => e,
    };
    ensure!(
        e.raw_os_error() == Some(libc::EROFS),
        "expected EROFS, got {e}"
    );
    sn.remove("view").await?;
    sn.remove("committed").await
}

async fn stat_in_walk(sn: &dyn Snapshotter) -> R {
    let p = "stats-in-walk-";
    sn.prepare(&format!("{p}c1-a"), "", gc_root()).await?;
    sn.commit(&format!("{p}c1"), &format!("{p}c1-a"), gc_root())
        .await?;
    sn.prepare(&format!("{p}c2-a"), &format!("{p}c1"), gc_root())
        .await?;
    sn.commit(&format!("{p}c2"), &format!("{p}c2-a"), gc_root())
        .await?;
    sn.prepare(&format!("{p}a1"), &format!("{p}c2"), gc_root())
        .await?;
    sn.view(&format!("{p}v1"), &format!("{p}c2"), gc_root())
        .await?;
    let all = sn.walk(&[]).await?;
    ensure!(all.len() == 4, "walk: {all:?}");
    for si in all {
        let si2 = sn.stat(&si.name).await?;
        ensure!(si == si2, "stat in walk: {si:?} != {si2:?}");
    }
    Ok(())
}

async fn close_twice(sn: &dyn Snapshotter) -> R {
    sn.prepare("closeTwice-prepare", "", gc_root()).await?;
    sn.commit("closeTwice", "closeTwice-prepare", gc_root())
        .await?;
    sn.remove("closeTwice").await?;
    sn.close().await?;
    sn.close().await
}

async fn root_permission(sn: &dyn Snapshotter, work: &Path) -> R {
    use std::os::unix::fs::PermissionsExt;
    let m = sn.prepare("preparing", "", gc_root()).await?;
    let (g, t) = mount(&m, work, "preparing")?;
    let mode = std::fs::metadata(&t).map_err(io)?.permissions().mode() & 0o777;
    g.unmount()?;
    ensure!(mode == 0o755, "expected 0755, got {mode:o}");
    Ok(())
}

async fn rename(sn: &dyn Snapshotter, work: &Path, backend: &str) -> R {
    let l1 = vec![
        Op::CreateDir("dir1", 0o700),
        Op::CreateDir("somefiles", 0o700),
        file("somefiles/f1", "was here first!", 0o644),
        file("somefiles/f2", "nothing interesting", 0o644),
    ];
    let mut l2 = Vec::new();
    // overlayfs without redirect_dir cannot rename a lower directory (EXDEV).
    if backend != "overlay" {
        l2.push(Op::Rename("dir1", "dir2"));
    }
    l2.extend([
        file("somefiles/f1-overwrite", "new content 1", 0o644),
        Op::Rename("somefiles/f1-overwrite", "somefiles/f1"),
        Op::Rename("somefiles/f2", "somefiles/f3"),
    ]);
    check_snapshots(sn, work, "", &[l1, l2]).await
}

async fn layers_128(sn: &dyn Snapshotter, work: &Path) -> R {
    let mut appliers = vec![vec![
        file("bottom", "way at the bottom\n", 0o777),
        file("overwriteme", "FIRST!\n", 0o777),
        Op::CreateDir("addhere", 0o755),
        Op::CreateDir("onlyme", 0o755),
        file("onlyme/bottom", "bye!\n", 0o777),
    ]];
    for i in 1..=127 {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        appliers.push(vec![
            Op::CreateFile(
                "overwriteme",
                format!("{i} WAS HERE!\n").into_bytes(),
                0o777,
            ),
            Op::CreateFile(leak(format!("addhere/file-{i}")), b"same\n".to_vec(), 0o755),
            Op::RemoveAll("onlyme"),
            Op::CreateDir("onlyme", 0o755),
            Op::CreateFile(
                leak(format!("onlyme/file-{i}")),
                b"only me!\n".to_vec(),
                0o777,
            ),
        ]);
    }
    let flat = work.join("flat");
    std::fs::create_dir_all(&flat).map_err(io)?;
    let mut parent = String::new();
    for (i, ops) in appliers.iter().enumerate() {
        let key = format!("prepare-layer-{i}");
        let m = sn.prepare(&key, &parent, gc_root()).await?;
        let (g, t) = mount(&m, work, &key)?;
        fstest::check_directory_equal(&flat, &t)
            .map_err(|e| fail(format!("[layer {i}] before apply: {e}")))?;
        fstest::apply(&flat, ops).map_err(io)?;
        fstest::apply(&t, ops).map_err(io)?;
        fstest::check_directory_equal(&flat, &t)
            .map_err(|e| fail(format!("[layer {i}] after apply: {e}")))?;
        g.unmount()?;
        parent = format!("committed-{i}");
        sn.commit(&parent, &key, gc_root()).await?;
    }
    let m = sn.view("fullview", &parent, gc_root()).await?;
    if let Layout::Overlay { lowerdirs, .. } = classify(&m) {
        ensure!(lowerdirs.len() == 128, "expected 128 lower dirs");
    }
    let (g, t) = mount(&m, work, "fullview")?;
    fstest::check_directory_equal(&flat, &t).map_err(|e| fail(format!("fullview: {e}")))?;
    g.unmount()
}
