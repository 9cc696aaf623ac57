//! containerd's `MetaStoreSuite` (core/snapshots/storage/metastore_test.go), case by case.

use super::*;
use strata_content::ErrorKind;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Db {
    _dir: tempfile::TempDir,
    ms: MetaStore,
}

fn empty() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let ms = MetaStore::open(&dir.path().join("metadata.db")).unwrap();
    Db { _dir: dir, ms }
}

/// containerd's `basePopulate`: committed-1, committed-2 (on committed-1), active-1,
/// active-2 (on committed-1), active-3 (on committed-2, labelled), view-1, view-2
/// (on committed-1).
fn populated() -> Db {
    let d = empty();
    d.ms.write(|tx| {
        tx.create_snapshot(Kind::Active, "committed-tmp-1", "", &Labels::new())?;
        tx.commit_active(
            "committed-tmp-1",
            "committed-1",
            Some(Usage { size: 1, inodes: 1 }),
            &Labels::new(),
        )?;
        tx.create_snapshot(
            Kind::Active,
            "committed-tmp-2",
            "committed-1",
            &Labels::new(),
        )?;
        tx.commit_active(
            "committed-tmp-2",
            "committed-2",
            Some(Usage { size: 2, inodes: 2 }),
            &Labels::new(),
        )?;
        tx.create_snapshot(Kind::Active, "active-1", "", &Labels::new())?;
        tx.create_snapshot(Kind::Active, "active-2", "committed-1", &Labels::new())?;
        tx.create_snapshot(
            Kind::Active,
            "active-3",
            "committed-2",
            &labels(&[("x", "1")]),
        )?;
        tx.create_snapshot(Kind::View, "view-1", "", &Labels::new())?;
        tx.create_snapshot(Kind::View, "view-2", "committed-1", &Labels::new())?;
        Ok(())
    })
    .unwrap();
    d
}

fn kind_of<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

#[test]
fn get_info() {
    let d = populated();
    let want = [
        ("committed-1", Kind::Committed, ""),
        ("committed-2", Kind::Committed, "committed-1"),
        ("active-1", Kind::Active, ""),
        ("active-2", Kind::Active, "committed-1"),
        ("active-3", Kind::Active, "committed-2"),
        ("view-1", Kind::View, ""),
        ("view-2", Kind::View, "committed-1"),
    ];
    d.ms.read(|tx| {
        for (key, kind, parent) in want {
            let (_, info, _) = tx.get_info(key)?;
            assert_eq!(
                (info.name.as_str(), info.kind, info.parent.as_str()),
                (key, kind, parent)
            );
        }
        let (_, a3, _) = tx.get_info("active-3")?;
        assert_eq!(a3.labels, labels(&[("x", "1")]));
        let (_, _, u) = tx.get_info("committed-2")?;
        assert_eq!(u, Some(Usage { size: 2, inodes: 2 }));
        Ok(())
    })
    .unwrap();
}

#[test]
fn get_info_not_exist_and_empty_db() {
    let d = populated();
    assert_eq!(
        kind_of(d.ms.read(|tx| tx.get_info("active-not-exist"))),
        ErrorKind::NotFound
    );
    let e = empty();
    assert_eq!(
        kind_of(e.ms.read(|tx| tx.get_info("active-1"))),
        ErrorKind::NotFound
    );
}

#[test]
fn walk() {
    let d = populated();
    let all = d.ms.read(|tx| tx.walk(&Filter::always())).unwrap();
    let names: Vec<_> = all.iter().map(|(_, i)| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "active-1",
            "active-2",
            "active-3",
            "committed-1",
            "committed-2",
            "view-1",
            "view-2"
        ]
    );
    let f = Filter::parse("kind==committed").unwrap();
    assert_eq!(d.ms.read(|tx| tx.walk(&f)).unwrap().len(), 2);
}

#[test]
fn get_snapshot() {
    let d = populated();
    d.ms.read(|tx| {
        let c1 = tx.get_info("committed-1")?.0;
        let c2 = tx.get_info("committed-2")?.0;
        let a3 = tx.get_snapshot("active-3")?;
        assert_eq!(
            (a3.kind, a3.parent_ids.clone()),
            (Kind::Active, vec![c2, c1])
        );
        let v2 = tx.get_snapshot("view-2")?;
        assert_eq!((v2.kind, v2.parent_ids.clone()), (Kind::View, vec![c1]));
        assert!(tx.get_snapshot("active-1")?.parent_ids.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn get_snapshot_not_exist_committed_empty() {
    let d = populated();
    assert_eq!(
        kind_of(d.ms.read(|tx| tx.get_snapshot("active-not-exist"))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(d.ms.read(|tx| tx.get_snapshot("committed-1"))),
        ErrorKind::FailedPrecondition
    );
    let e = empty();
    assert_eq!(
        kind_of(e.ms.read(|tx| tx.get_snapshot("active-1"))),
        ErrorKind::NotFound
    );
}

#[test]
fn create_active() {
    let d = empty();
    d.ms.write(|tx| {
        let a = tx.create_snapshot(Kind::Active, "active-1", "", &Labels::new())?;
        assert_eq!((a.kind, a.parent_ids.len()), (Kind::Active, 0));
        let id = tx.commit_active("active-1", "committed-1", None, &Labels::new())?;
        assert_eq!(id, a.id, "commit keeps the id");
        let b = tx.create_snapshot(Kind::Active, "active-2", "committed-1", &Labels::new())?;
        assert_eq!(b.parent_ids, vec![a.id]);
        assert!(b.id > a.id);
        let v = tx.create_snapshot(Kind::View, "view-1", "committed-1", &Labels::new())?;
        assert_eq!((v.kind, v.parent_ids.clone()), (Kind::View, vec![a.id]));
        Ok(())
    })
    .unwrap();
}

#[test]
fn create_active_not_exist_exist_from_active() {
    let d = populated();
    let create = |key: &str, parent: &str| {
        d.ms.write(|tx| tx.create_snapshot(Kind::Active, key, parent, &Labels::new()))
    };
    assert_eq!(
        kind_of(create("active-x", "does-not-exist")),
        ErrorKind::NotFound
    );
    assert_eq!(kind_of(create("active-1", "")), ErrorKind::AlreadyExists);
    assert_eq!(kind_of(create("committed-1", "")), ErrorKind::AlreadyExists);
    assert_eq!(
        kind_of(create("view-1", "committed-1")),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind_of(create("active-x", "active-1")),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(create("active-x", "view-1")),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.create_snapshot(Kind::Committed, "c", "", &Labels::new()))),
        ErrorKind::InvalidArgument
    );
    // A failed write leaves nothing behind.
    assert_eq!(
        kind_of(d.ms.read(|tx| tx.get_info("active-x"))),
        ErrorKind::NotFound
    );
}

#[test]
fn commit() {
    let d = populated();
    d.ms.write(|tx| {
        let id = tx.get_info("active-1")?.0;
        let l = labels(&[("k", "v")]);
        assert_eq!(
            tx.commit_active(
                "active-1",
                "committed-x",
                Some(Usage { size: 7, inodes: 3 }),
                &l
            )?,
            id
        );
        Ok(())
    })
    .unwrap();
    d.ms.read(|tx| {
        assert!(
            tx.get_info("active-1").unwrap_err().is_not_found(),
            "active key must disappear"
        );
        assert!(tx.get_snapshot("active-1").unwrap_err().is_not_found());
        let (_, info, u) = tx.get_info("committed-x")?;
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(info.labels, labels(&[("k", "v")]));
        assert_eq!(u, Some(Usage { size: 7, inodes: 3 }));
        Ok(())
    })
    .unwrap();
}

#[test]
fn commit_misuse() {
    let d = populated();
    let commit = |key: &str, name: &str| {
        d.ms.write(|tx| tx.commit_active(key, name, None, &Labels::new()))
    };
    assert_eq!(
        kind_of(commit("active-not-exist", "committed-x")),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(commit("active-1", "committed-1")),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind_of(commit("committed-1", "committed-x")),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        kind_of(commit("view-1", "committed-x")),
        ErrorKind::FailedPrecondition
    );
    // Nothing changed.
    d.ms.read(|tx| {
        assert_eq!(tx.get_info("active-1")?.1.kind, Kind::Active);
        assert_eq!(tx.get_info("view-1")?.1.kind, Kind::View);
        assert!(tx.get_info("committed-x").unwrap_err().is_not_found());
        Ok(())
    })
    .unwrap();
}

#[test]
fn remove() {
    let d = populated();
    for key in ["active-1", "view-1", "active-3"] {
        let (_, kind) = d.ms.write(|tx| tx.remove(key)).unwrap();
        assert_ne!(kind, Kind::Committed);
        assert!(d.ms.read(|tx| tx.get_info(key)).unwrap_err().is_not_found());
    }
    let (_, k) = d.ms.write(|tx| tx.remove("committed-2")).unwrap();
    assert_eq!(k, Kind::Committed);
}

#[test]
fn remove_not_exist_and_with_children() {
    let d = populated();
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.remove("active-not-exist"))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.remove("committed-1"))),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.remove("committed-2"))),
        ErrorKind::FailedPrecondition
    );
    assert!(d.ms.read(|tx| tx.get_info("committed-1")).is_ok());
}

#[test]
fn parent_ids() {
    let d = empty();
    d.ms.write(|tx| {
        let mut parent = String::new();
        let mut ids = Vec::new();
        for i in 0..10 {
            let key = format!("active-{i}");
            let s = tx.create_snapshot(Kind::Active, &key, &parent, &Labels::new())?;
            let want: Vec<u64> = ids.iter().rev().copied().collect();
            assert_eq!(s.parent_ids, want);
            let name = format!("committed-{i}");
            ids.push(tx.commit_active(&key, &name, None, &Labels::new())?);
            parent = name;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn update_info_rules() {
    let d = populated();
    let before = d.ms.read(|tx| tx.get_info("active-3")).unwrap().1;
    let info = Info::for_update("active-3", labels(&[("y", "2")]));
    let after =
        d.ms.write(|tx| tx.update_info(&info, &["labels.y".into()]))
            .unwrap();
    assert_eq!(after.labels, labels(&[("x", "1"), ("y", "2")]));
    assert_eq!(after.created, before.created);
    assert!(after.updated > before.updated);
    let after =
        d.ms.write(|tx| tx.update_info(&info, &["labels.x".into()]))
            .unwrap();
    assert_eq!(
        after.labels,
        labels(&[("y", "2")]),
        "absent label in info removes it"
    );
    let after = d.ms.write(|tx| tx.update_info(&info, &[])).unwrap();
    assert_eq!(after.labels, labels(&[("y", "2")]));
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.update_info(&info, &["parent".into()]))),
        ErrorKind::InvalidArgument
    );
    let missing = Info::for_update("nope", Labels::new());
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.update_info(&missing, &[]))),
        ErrorKind::NotFound
    );
}

#[test]
fn ids_are_never_reused_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let first = {
        let ms = MetaStore::open(&path).unwrap();
        let s = ms
            .write(|tx| tx.create_snapshot(Kind::Active, "a", "", &Labels::new()))
            .unwrap();
        ms.write(|tx| tx.remove("a")).unwrap();
        s.id
    };
    let ms = MetaStore::open(&path).unwrap();
    let s = ms
        .write(|tx| tx.create_snapshot(Kind::Active, "a", "", &Labels::new()))
        .unwrap();
    assert!(s.id > first);
    assert_eq!(ms.read(|tx| tx.ids()).unwrap(), [s.id].into());
    ms.close();
    ms.close();
    assert!(ms.read(|tx| tx.ids()).unwrap_err().is_failed_precondition());
}

/// containerd's `Rebase` case: an active snapshot prepared without a parent takes one at
/// commit; the chain is then reported through the parent; misuse is typed.
#[test]
fn rebase() {
    let d = populated();
    d.ms.write(|tx| tx.set_parent("active-1", "committed-2"))
        .unwrap();
    // Idempotent with the same parent; another parent is refused.
    d.ms.write(|tx| tx.set_parent("active-1", "committed-2"))
        .unwrap();
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.set_parent("active-1", "committed-1"))),
        ErrorKind::InvalidArgument
    );
    d.ms.write(|tx| tx.commit_active("active-1", "rebased", None, &Labels::new()))
        .unwrap();
    let (_, info, _) = d.ms.read(|tx| tx.get_info("rebased")).unwrap();
    assert_eq!(info.parent, "committed-2");
    d.ms.write(|tx| tx.create_snapshot(Kind::Active, "on-rebased", "rebased", &Labels::new()))
        .unwrap();
    let chain =
        d.ms.read(|tx| tx.get_snapshot("on-rebased"))
            .unwrap()
            .parent_ids;
    assert_eq!(chain.len(), 3, "rebased, committed-2, committed-1");
    // A parent that is active, a missing parent or key, a non-active key.
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.set_parent("active-3", "active-2"))),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.set_parent("active-3", "nope"))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.set_parent("nope", "committed-1"))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(d.ms.write(|tx| tx.set_parent("view-1", "committed-1"))),
        ErrorKind::FailedPrecondition
    );
}

#[test]
fn usage_not_measured_until_set() {
    let d = populated();
    let id =
        d.ms.write(|tx| tx.commit_active("active-1", "lazy", None, &Labels::new()))
            .unwrap();
    assert_eq!(d.ms.read(|tx| tx.get_info("lazy")).unwrap().2, None);
    let u = Usage {
        size: 4096,
        inodes: 2,
    };
    d.ms.write(|tx| tx.set_usage(id, u)).unwrap();
    assert_eq!(d.ms.read(|tx| tx.get_info("lazy")).unwrap().2, Some(u));
    // Gone snapshots are a no-op.
    d.ms.write(|tx| tx.set_usage(9_999, u)).unwrap();
}
