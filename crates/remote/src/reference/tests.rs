//! Vectors from docker/distribution's `reference_test.go` and `normalize_test.go`.

use super::*;

const F64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn ok(input: &str, domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>) {
    let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(r.domain(), domain, "{input}");
    assert_eq!(r.path(), path, "{input}");
    assert_eq!(r.tag(), tag, "{input}");
    assert_eq!(
        r.digest().map(|d| d.to_string()).as_deref(),
        digest,
        "{input}"
    );
    assert_eq!(r.to_string(), input, "round trip of {input}");
}

fn bad(input: &str, why: &str) {
    let e = Reference::parse(input).expect_err(input);
    assert!(e.is_invalid_argument(), "{input}: {e}");
    assert!(e.to_string().contains(why), "{input}: {e} lacks {why:?}");
}

#[test]
fn parse_vectors() {
    let d = format!("sha256:{F64}");
    ok("test_com", "", "test_com", None, None);
    ok("test.com:tag", "", "test.com", Some("tag"), None);
    ok("test.com:5000", "", "test.com", Some("5000"), None);
    ok("test.com/repo:tag", "test.com", "repo", Some("tag"), None);
    ok("test:5000/repo", "test:5000", "repo", None, None);
    ok("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None);
    ok(
        &format!("test:5000/repo@{d}"),
        "test:5000",
        "repo",
        None,
        Some(&d),
    );
    ok(
        &format!("test:5000/repo:tag@{d}"),
        "test:5000",
        "repo",
        Some("tag"),
        Some(&d),
    );
    ok(&format!("repo@{d}"), "", "repo", None, Some(&d));
    ok(
        "lowercase:Uppercase",
        "",
        "lowercase",
        Some("Uppercase"),
        None,
    );
    ok(
        "sub-dom1.foo.com/bar/baz/quux",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        None,
        None,
    );
    ok(
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        Some("some-long-tag"),
        None,
    );
    ok(
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        Some("test.example.com"),
        None,
    );
    ok(
        "xn--n3h.com/myimage:xn--n3h.com",
        "xn--n3h.com",
        "myimage",
        Some("xn--n3h.com"),
        None,
    );
    ok("foo_bar.com:8080", "", "foo_bar.com", Some("8080"), None);
    ok(
        "foo/foo_bar.com:8080",
        "",
        "foo/foo_bar.com",
        Some("8080"),
        None,
    );
    ok("192.168.1.1", "", "192.168.1.1", None, None);
    ok("192.168.1.1:tag", "", "192.168.1.1", Some("tag"), None);
    ok("192.168.1.1:5000", "", "192.168.1.1", Some("5000"), None);
    ok("192.168.1.1/repo", "192.168.1.1", "repo", None, None);
    ok(
        "192.168.1.1:5000/repo",
        "192.168.1.1:5000",
        "repo",
        None,
        None,
    );
    ok("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None);
    ok(
        "[2001:db8::1]:5000/repo",
        "[2001:db8::1]:5000",
        "repo",
        None,
        None,
    );
    ok(
        "[2001:db8::1]:5000/repo:tag",
        "[2001:db8::1]:5000",
        "repo",
        Some("tag"),
        None,
    );
    ok(
        "[2001:db8:1:2:3:4:5:6]/repo:tag",
        "[2001:db8:1:2:3:4:5:6]",
        "repo",
        Some("tag"),
        None,
    );
    ok(
        "[2001:db8::]:5000/repo",
        "[2001:db8::]:5000",
        "repo",
        None,
        None,
    );
    ok("[::1]:5000/repo", "[::1]:5000", "repo", None, None);
    ok("localhost/repo", "localhost", "repo", None, None);
    ok("a__b/c--d/e.f_g", "", "a__b/c--d/e.f_g", None, None);
    let long_ok = format!("{}a", "a/".repeat(127));
    ok(
        &format!("{long_ok}:tag-puts-this-over-max"),
        "",
        &long_ok,
        Some("tag-puts-this-over-max"),
        None,
    );
}

#[test]
fn parse_errors() {
    bad("", "empty");
    bad(":justtag", "empty");
    bad(&format!("@sha256:{F64}"), "empty");
    bad(&format!("validname@invaliddigest:{F64}"), "digest");
    bad("validname@sha256:fff", "digest");
    bad("Uppercase:tag", "lowercase");
    bad("test:5000/Uppercase/lowercase:tag", "lowercase");
    bad(&format!("{}a:tag", "a/".repeat(128)), "255");
    bad("aa/asdf$$^/aa", "invalid");
    bad("[2001:db8::1]:tag", "invalid");
    bad("[fe80::1%eth0]:5000/repo", "invalid");
    bad("[fe80::1%@invalidzone]:5000/repo", "invalid");
    bad("2001:db8::1:5000/repo", "invalid");
    bad("repo:-tag", "tag");
    bad(&format!("repo:{}", "t".repeat(129)), "tag");
    bad("a//b", "invalid");
    bad("a/", "invalid");
    bad("-a", "invalid");
    bad("a-", "invalid");
}

#[test]
fn normalized_valid() {
    for (input, full) in [
        ("docker/docker", "docker.io/docker/docker"),
        ("library/debian", "docker.io/library/debian"),
        ("debian", "docker.io/library/debian"),
        ("docker.io/docker/docker", "docker.io/docker/docker"),
        ("docker.io/library/debian", "docker.io/library/debian"),
        ("docker.io/debian", "docker.io/library/debian"),
        ("index.docker.io/docker/docker", "docker.io/docker/docker"),
        ("index.docker.io/library/debian", "docker.io/library/debian"),
        ("index.docker.io/debian", "docker.io/library/debian"),
        (
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/docker/docker",
        ),
        (
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/library/debian",
        ),
        ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
        ("192.168.0.1", "docker.io/library/192.168.0.1"),
        ("192.168.0.1:80", "docker.io/library/192.168.0.1:80"),
        ("192.168.0.1:8/debian", "192.168.0.1:8/debian"),
        ("192.168.0.2:25000/debian", "192.168.0.2:25000/debian"),
        ("localhost/debian:12", "localhost/debian:12"),
        (
            "localhost:5000/a/b@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "localhost:5000/a/b@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        ),
        (
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        ),
    ] {
        let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.to_string(), full, "{input}");
        let again: Reference = full.parse().unwrap();
        assert_eq!(again, r, "{full} is stable under normalization");
    }
}

#[test]
fn normalized_invalid() {
    for input in [
        "https://github.com/docker/docker",
        "docker/Docker",
        "-docker",
        "-docker/docker",
        "-docker.io/docker/docker",
        "docker///docker",
        "docker.io/docker/Docker",
        "docker.io/docker///docker",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "",
        "Uppercase:tag",
    ] {
        let e = Reference::parse_normalized(input).expect_err(input);
        assert!(e.is_invalid_argument(), "{input}: {e}");
        assert!(
            e.to_string().contains(&format!("{input:?}")),
            "{e} names the input"
        );
    }
}

#[test]
fn familiar_and_defaults() {
    let cases = [
        ("docker.io/library/ubuntu", "ubuntu"),
        ("docker.io/foo/bar", "foo/bar"),
        ("docker.io/library/foo/bar", "library/foo/bar"),
        ("localhost:5000/foo:t", "localhost:5000/foo:t"),
        ("ubuntu:22.04", "ubuntu:22.04"),
        // Found by fuzzing: the short form must not turn a path into a domain.
        ("docker.io/c.uer.i/u", "docker.io/c.uer.i/u"),
        ("docker.io/localhost/u", "docker.io/localhost/u"),
        // Found by fuzzing: a bare 64-hex name is an image ID, not a repository.
        (
            "library/0000000000129000001000000000000000000012900000000000001296137280",
            "library/0000000000129000001000000000000000000012900000000000001296137280",
        ),
    ];
    for (full, fam) in cases {
        let r = Reference::parse_normalized(full).unwrap();
        assert_eq!(r.familiar(), fam);
        assert_eq!(
            Reference::parse_normalized(fam).unwrap(),
            r,
            "{fam} round trips"
        );
    }
    let r = Reference::parse_normalized("busybox").unwrap();
    assert_eq!(r.object(), "latest");
    let r = r.with_default_tag();
    assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    let d: Digest = format!("sha256:{F64}").parse().unwrap();
    let r = r.with_digest(d.clone());
    assert_eq!(r.object(), d.to_string());
    // A digest reference does not get a default tag.
    let r = Reference::parse_normalized(&format!("busybox@{d}"))
        .unwrap()
        .with_default_tag();
    assert_eq!(r.tag(), None);
    assert_eq!(
        r.with_tag("v1").unwrap().to_string(),
        "docker.io/library/busybox:v1"
    );
    assert!(r.with_tag("-x").unwrap_err().is_invalid_argument());
}
