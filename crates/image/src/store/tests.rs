//! After containerd's `core/metadata/images_test.go`.

use super::*;
use crate::media_types as mt;
use std::collections::HashMap;
use strata_content::digest::sha256;
use strata_content::{ErrorKind, Labels};

fn open() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path().join("meta").join("metadata.db")).unwrap();
    (dir, s)
}

fn target(data: &str, media_type: &str) -> Descriptor {
    Descriptor::new(
        media_type.into(),
        data.len() as u64,
        sha256(data.as_bytes()),
    )
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn annotations(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn image(name: &str, t: Descriptor, l: &[(&str, &str)]) -> Image {
    let mut i = Image::new(name, t);
    i.labels = labels(l);
    i
}

async fn listed(s: &ImageStore, f: &[&str]) -> Vec<String> {
    s.list(f)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

#[tokio::test]
async fn list_with_filters() {
    let (_dir, s) = open();
    let mut names = Vec::new();
    for i in 0..10 {
        let name = format!("image-{i}");
        let mt = if i % 2 == 0 {
            mt::OCI_INDEX
        } else {
            mt::DOCKER_MANIFEST
        };
        let mut t = target(&format!("target {i}"), mt);
        t.set_annotations(annotations(&[(
            "org.opencontainers.image.ref.name",
            &i.to_string(),
        )]));
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        let created = s
            .create(image(
                &name,
                t,
                &[("parity", parity), ("idx", &i.to_string())],
            ))
            .await
            .unwrap();
        assert_eq!(created.created_at, created.updated_at);
        names.push(name);
    }
    assert_eq!(listed(&s, &[]).await, names);
    assert_eq!(listed(&s, &[""]).await, names);
    assert_eq!(listed(&s, &["name==image-3"]).await, ["image-3"]);
    assert_eq!(
        listed(&s, &["labels.parity==even,labels.idx~=^[0-4]$"]).await,
        ["image-0", "image-2", "image-4"]
    );
    assert_eq!(
        listed(&s, &["labels.idx==1", "labels.idx==7"]).await,
        ["image-1", "image-7"]
    );
    let d = sha256(b"target 5").to_string();
    assert_eq!(
        listed(&s, &[&format!("target.digest=={d}")]).await,
        ["image-5"]
    );
    assert_eq!(
        listed(&s, &[&format!("target.mediatype=={}", mt::DOCKER_MANIFEST)])
            .await
            .len(),
        5
    );
    assert_eq!(
        listed(
            &s,
            &[r#"annotations."org.opencontainers.image.ref.name"==9"#]
        )
        .await,
        ["image-9"]
    );
    assert_eq!(listed(&s, &["labels.missing"]).await, Vec::<String>::new());
    let e = s.list(&["labels.\"unterminated"]).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");

    // Namespaces are separate.
    let other = s.namespace("other");
    assert!(other.list::<&str>(&[]).await.unwrap().is_empty());
    other
        .create(image("image-0", target("x", mt::OCI_MANIFEST), &[]))
        .await
        .unwrap();
    assert_eq!(other.list::<&str>(&[]).await.unwrap().len(), 1);
    assert_eq!(
        s.get("image-0").await.unwrap().target.media_type().as_ref(),
        mt::OCI_INDEX
    );
    assert_eq!(
        other
            .get("image-0")
            .await
            .unwrap()
            .target
            .media_type()
            .as_ref(),
        mt::OCI_MANIFEST
    );
    assert_eq!(other.current_namespace(), "other");
    let all = s.all_images().await.unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(
        (all[0].0.as_str(), all[0].1.name.as_str()),
        ("default", "image-0")
    );
    assert_eq!(
        (all[10].0.as_str(), all[10].1.name.as_str()),
        ("other", "image-0")
    );
    assert_eq!(s.namespaces().await.unwrap(), ["default", "other"]);
}

#[tokio::test]
async fn create_validation_and_duplicates() {
    let (_dir, s) = open();
    let t = target("m", mt::OCI_MANIFEST);
    let e = s.create(image("", t.clone(), &[])).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    let mut zero = t.clone();
    zero.set_size(0);
    let e = s.create(image("a", zero, &[])).await.unwrap_err();
    assert!(
        e.is_invalid_argument() && e.to_string().contains("size"),
        "{e}"
    );
    let e = s
        .create(image("a", target("m", ""), &[]))
        .await
        .unwrap_err();
    assert!(
        e.is_invalid_argument() && e.to_string().contains("media type"),
        "{e}"
    );
    let big = "x".repeat(5000);
    let e = s
        .create(image("a", t.clone(), &[("k", &big)]))
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(
        s.list::<&str>(&[]).await.unwrap().is_empty(),
        "nothing was created"
    );
    // An invalid digest cannot even be built into a descriptor.
    assert!(strata_content::digest::parse("sha256:zz").is_err());

    let created = s
        .create(image("a", t.clone(), &[("k", "v"), ("empty", "")]))
        .await
        .unwrap();
    assert_eq!(
        created.labels,
        labels(&[("k", "v")]),
        "empty values are dropped"
    );
    let e = s.create(image("a", t.clone(), &[])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("\"a\""), "{e}");
    let got = s.get("a").await.unwrap();
    assert_eq!(got, created);
    assert!(s.get("b").await.unwrap_err().is_not_found());
    assert!(
        s.namespace("")
            .get("a")
            .await
            .unwrap_err()
            .is_invalid_argument()
    );
}

#[tokio::test]
async fn update_fieldpaths() {
    let (_dir, s) = open();
    let mut t = target("m", mt::OCI_MANIFEST);
    t.set_annotations(annotations(&[("a", "1"), ("b", "2")]));
    let orig = s
        .create(image("img", t.clone(), &[("foo", "bar"), ("baz", "boo")]))
        .await
        .unwrap();

    // Touch: no changes, updated_at moves, created_at stays.
    let touched = s.update(orig.clone(), &[]).await.unwrap();
    assert_eq!(touched.created_at, orig.created_at);
    assert!(touched.updated_at > orig.updated_at);
    assert_eq!(touched.labels, orig.labels);

    // Replace all labels.
    let mut upd = orig.clone();
    upd.labels = labels(&[("for", "bar"), ("boo", "boo")]);
    let got = s.update(upd.clone(), &["labels".into()]).await.unwrap();
    assert_eq!(got.labels, labels(&[("for", "bar"), ("boo", "boo")]));

    // One label, set and deleted.
    let mut upd = orig.clone();
    upd.labels = labels(&[("foo", "baz"), ("ignored", "x")]);
    let got = s
        .update(upd, &["labels.foo".into(), "labels.boo".into()])
        .await
        .unwrap();
    assert_eq!(got.labels, labels(&[("for", "bar"), ("foo", "baz")]));

    // Annotations of the target: all, then one.
    let mut upd = orig.clone();
    upd.target.set_annotations(annotations(&[("c", "3")]));
    let got = s.update(upd, &["annotations".into()]).await.unwrap();
    assert_eq!(got.target.annotations(), &annotations(&[("c", "3")]));
    assert_eq!(got.target.digest(), orig.target.digest());
    let mut upd = orig.clone();
    upd.target
        .set_annotations(annotations(&[("d", "4"), ("c", "")]));
    let got = s
        .update(upd, &["annotations.d".into(), "annotations.c".into()])
        .await
        .unwrap();
    assert_eq!(got.target.annotations(), &annotations(&[("d", "4")]));

    // Target as a unit (labels untouched).
    let mut upd = orig.clone();
    upd.target = target("other", mt::OCI_INDEX);
    upd.labels = Labels::new();
    let got = s.update(upd.clone(), &["target".into()]).await.unwrap();
    assert_eq!(got.target, upd.target);
    assert_eq!(got.labels, labels(&[("for", "bar"), ("foo", "baz")]));

    // No fieldpaths: replace everything.
    let mut upd = orig.clone();
    upd.target = target("third", mt::DOCKER_MANIFEST);
    upd.labels = labels(&[("only", "this")]);
    let got = s.update(upd.clone(), &[]).await.unwrap();
    assert_eq!(
        (got.target.clone(), got.labels.clone()),
        (upd.target, upd.labels)
    );
    assert_eq!(s.get("img").await.unwrap(), got);

    // Errors leave the record alone.
    let e = s.update(orig.clone(), &["name".into()]).await.unwrap_err();
    assert!(
        e.is_invalid_argument() && e.to_string().contains("\"name\""),
        "{e}"
    );
    let e = s
        .update(orig.clone(), &["createdat".into()])
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    let mut bad = orig.clone();
    bad.target.set_size(0);
    let e = s.update(bad.clone(), &["target".into()]).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(s.update(bad, &[]).await.unwrap_err().is_invalid_argument());
    assert_eq!(s.get("img").await.unwrap(), got);
    let e = s
        .update(image("nope", target("m", mt::OCI_MANIFEST), &[]), &[])
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = s
        .update(image("", target("m", mt::OCI_MANIFEST), &[]), &[])
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
}

#[tokio::test]
async fn delete_with_and_without_target() {
    let (_dir, s) = open();
    let t = target("m", mt::OCI_MANIFEST);
    s.create(image("img", t.clone(), &[])).await.unwrap();
    s.namespace("ns2")
        .create(image("img", t.clone(), &[]))
        .await
        .unwrap();
    let e = s.delete("img", Some(&sha256(b"other"))).await.unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().contains("has target"),
        "{e}"
    );
    assert!(s.get("img").await.is_ok());
    s.delete("img", Some(t.digest())).await.unwrap();
    assert!(s.get("img").await.unwrap_err().is_not_found());
    assert!(s.delete("img", None).await.unwrap_err().is_not_found());
    // The other namespace keeps its record.
    assert!(s.namespace("ns2").get("img").await.is_ok());
    let all = s.all_images().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].0.as_str(), all[0].1.name.as_str()), ("ns2", "img"));
    assert_eq!(s.namespaces().await.unwrap(), ["ns2"]);
    s.namespace("ns2").delete("img", None).await.unwrap();
    assert!(s.all_images().await.unwrap().is_empty());
}

#[tokio::test]
async fn persists_and_shares_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    {
        let s = ImageStore::open(&path).unwrap();
        s.create(image("kept", target("m", mt::OCI_MANIFEST), &[("a", "b")]))
            .await
            .unwrap();
    }
    // Reopened, and opened twice at once (two connections on one WAL database).
    let s1 = ImageStore::open(&path).unwrap();
    let s2 = ImageStore::open(&path).unwrap();
    assert_eq!(s1.get("kept").await.unwrap().labels, labels(&[("a", "b")]));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        tasks.push(tokio::spawn(async move {
            s.create(image(
                &format!("c{i}"),
                target(&format!("t{i}"), mt::OCI_MANIFEST),
                &[],
            ))
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s2.list::<&str>(&[]).await.unwrap().len(), 21);
    // Concurrent creates of one name: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        tasks.push(tokio::spawn(async move {
            s.create(image("race", target("r", mt::OCI_MANIFEST), &[]))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(ok, 1);
}
