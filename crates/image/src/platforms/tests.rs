//! Vectors after containerd's `platforms` tests (`platforms_test.go`, `compare_test.go`).

use super::*;

fn p(s: &str) -> Platform {
    parse(s).unwrap_or_else(|e| panic!("parse {s}: {e}"))
}

#[test]
fn parse_and_format() {
    let host = default_spec();
    let host_os = host.os.clone();
    let cases: Vec<(&str, Platform, String)> = vec![
        (
            "linux/amd64",
            Platform::new("linux", "amd64", ""),
            "linux/amd64".into(),
        ),
        (
            "linux/amd64/v2",
            Platform::new("linux", "amd64", "v2"),
            "linux/amd64/v2".into(),
        ),
        (
            "linux/amd64/v1",
            Platform::new("linux", "amd64", ""),
            "linux/amd64".into(),
        ),
        (
            "Linux/x86_64",
            Platform::new("linux", "amd64", ""),
            "linux/amd64".into(),
        ),
        (
            "linux/x86-64",
            Platform::new("linux", "amd64", ""),
            "linux/amd64".into(),
        ),
        (
            "linux/i386",
            Platform::new("linux", "386", ""),
            "linux/386".into(),
        ),
        (
            "linux/aarch64",
            Platform::new("linux", "arm64", ""),
            "linux/arm64".into(),
        ),
        (
            "linux/arm64",
            Platform::new("linux", "arm64", ""),
            "linux/arm64".into(),
        ),
        (
            "linux/arm64/v8",
            Platform::new("linux", "arm64", "v8"),
            "linux/arm64/v8".into(),
        ),
        (
            "linux/aarch64/v8",
            Platform::new("linux", "arm64", "v8"),
            "linux/arm64/v8".into(),
        ),
        (
            "linux/arm64/8",
            Platform::new("linux", "arm64", "v8"),
            "linux/arm64/v8".into(),
        ),
        (
            "linux/arm64/v9.0",
            Platform::new("linux", "arm64", "v9"),
            "linux/arm64/v9".into(),
        ),
        (
            "linux/arm64/v8.2",
            Platform::new("linux", "arm64", "v8.2"),
            "linux/arm64/v8.2".into(),
        ),
        (
            "linux/arm",
            Platform::new("linux", "arm", ""),
            "linux/arm".into(),
        ),
        (
            "linux/armhf",
            Platform::new("linux", "arm", ""),
            "linux/arm".into(),
        ),
        (
            "linux/armel",
            Platform::new("linux", "arm", "v6"),
            "linux/arm/v6".into(),
        ),
        (
            "linux/arm/v7",
            Platform::new("linux", "arm", "v7"),
            "linux/arm/v7".into(),
        ),
        (
            "linux/arm/7",
            Platform::new("linux", "arm", "v7"),
            "linux/arm/v7".into(),
        ),
        (
            "linux/arm/6",
            Platform::new("linux", "arm", "v6"),
            "linux/arm/v6".into(),
        ),
        (
            "linux/arm/v5",
            Platform::new("linux", "arm", "v5"),
            "linux/arm/v5".into(),
        ),
        (
            "linux/s390x",
            Platform::new("linux", "s390x", ""),
            "linux/s390x".into(),
        ),
        (
            "linux/ppc64le",
            Platform::new("linux", "ppc64le", ""),
            "linux/ppc64le".into(),
        ),
        (
            "darwin/arm64",
            Platform::new("darwin", "arm64", ""),
            "darwin/arm64".into(),
        ),
        (
            "macOS/arm64",
            Platform::new("darwin", "arm64", ""),
            "darwin/arm64".into(),
        ),
        (
            "amd64",
            Platform::new(&host_os, "amd64", ""),
            format!("{host_os}/amd64"),
        ),
        (
            "x86_64",
            Platform::new(&host_os, "amd64", ""),
            format!("{host_os}/amd64"),
        ),
        (
            "aarch64",
            Platform::new(&host_os, "arm64", ""),
            format!("{host_os}/arm64"),
        ),
        (
            "armhf",
            Platform::new(&host_os, "arm", ""),
            format!("{host_os}/arm"),
        ),
        (
            "armel",
            Platform::new(&host_os, "arm", "v6"),
            format!("{host_os}/arm/v6"),
        ),
    ];
    for (input, want, formatted) in cases {
        let got = p(input);
        assert_eq!(got, want, "parse {input}");
        assert_eq!(format(&got), formatted, "format {input}");
        // Formatting then parsing is stable.
        assert_eq!(p(&format(&got)), got, "round trip {input}");
        // A parsed platform matches itself.
        assert!(
            only(got.clone()).matches(&got),
            "only({input}) matches itself"
        );
    }
}

#[test]
fn parse_lone_os_takes_host_arch() {
    let host = default_spec();
    let got = p("linux");
    assert_eq!(got.os, "linux");
    assert_eq!(got.architecture, host.architecture);
    let got = p("windows");
    assert_eq!(got.os, "windows");
    assert_eq!(got.architecture, host.architecture);
}

#[test]
fn parse_os_version() {
    let got = p("windows(10.0.17763)/amd64");
    assert_eq!(got.os, "windows");
    assert_eq!(got.os_version, "10.0.17763");
    assert_eq!(format(&got), "windows/amd64");
    assert_eq!(format_all(&got), "windows(10.0.17763)/amd64");
    assert_eq!(p(&format_all(&got)), got);
}

#[test]
fn parse_errors() {
    for bad in [
        "",
        "*",
        "linux/*",
        "*/amd64",
        "linux/arm/v7/extra",
        "nonsense",
        "linux//amd64",
        "linux/amd 64",
        "linux/amd64/",
        "windows(10.0/amd64",
        "windows()/amd64",
        "linux/ä",
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.is_invalid_argument(), "{bad}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn normalize_aliases() {
    let n = |a: &str, v: &str| normalize_arch(a, v);
    assert_eq!(n("x86_64", ""), ("amd64".into(), "".into()));
    assert_eq!(n("AMD64", "V1"), ("amd64".into(), "".into()));
    assert_eq!(n("amd64", "v3"), ("amd64".into(), "v3".into()));
    assert_eq!(n("aarch64", "v8.0"), ("arm64".into(), "".into()));
    assert_eq!(n("arm64", "9"), ("arm64".into(), "v9".into()));
    assert_eq!(n("arm", ""), ("arm".into(), "v7".into()));
    assert_eq!(n("arm", "8"), ("arm".into(), "v8".into()));
    assert_eq!(n("armhf", ""), ("arm".into(), "v7".into()));
    assert_eq!(n("armel", ""), ("arm".into(), "v6".into()));
    assert_eq!(n("i386", "whatever"), ("386".into(), "".into()));
    assert_eq!(n("riscv64", ""), ("riscv64".into(), "".into()));
    assert_eq!(normalize_os("MacOS"), "darwin");
    assert_eq!(normalize_os("Linux"), "linux");
    let q = normalize(&Platform::new("Linux", "aarch64", "8"));
    assert_eq!(q, Platform::new("linux", "arm64", ""));
}

fn check(matcher: &dyn Matcher, name: &str, yes: &[&str], no: &[&str]) {
    for s in yes {
        assert!(matcher.matches(&p(s)), "{name} should match {s}");
    }
    for s in no {
        assert!(!matcher.matches(&p(s)), "{name} should not match {s}");
    }
}

#[test]
fn only_matches_compatible_platforms() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "linux/amd64",
            &["linux/amd64", "linux/386"],
            &[
                "linux/amd64/v2",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/amd64/v2",
            &[
                "linux/amd64",
                "linux/amd64/v1",
                "linux/amd64/v2",
                "linux/386",
            ],
            &[
                "linux/amd64/v3",
                "linux/amd64/v4",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
            ],
        ),
        (
            "linux/386",
            &["linux/386"],
            &[
                "linux/amd64",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
            ],
        ),
        (
            "windows/amd64",
            &["windows/amd64", "windows(10.0.17763)/amd64"],
            &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
        ),
        (
            "linux/arm/v8",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v8",
                "linux/arm64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v6",
            &["linux/arm/v5", "linux/arm/v6"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v7",
                "linux/arm/v8",
            ],
        ),
        (
            "linux/arm/v5",
            &["linux/arm/v5"],
            &[
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64",
            ],
        ),
        (
            "linux/arm/v4",
            &["linux/arm/v4"],
            &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm64"],
        ),
        (
            "linux/arm64/v9",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "linux/arm64/v8.2",
                "linux/arm64/v8.3",
                "linux/arm64/v8.4",
                "linux/arm64/v8.5",
                "linux/arm64/v9",
                "linux/arm64/v9.0",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "windows/amd64",
                "windows/arm",
                "linux/arm64/v8.6",
            ],
        ),
        (
            "linux/arm64/v8.1",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                "windows/arm",
            ],
        ),
    ];
    for (platform, yes, no) in cases {
        check(&only(p(platform)), &format!("only({platform})"), yes, no);
    }
}

#[test]
fn only_strict_matches_one_platform() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "linux/amd64",
            &["linux/amd64"],
            &["linux/386", "linux/arm/v7", "linux/arm64"],
        ),
        (
            "windows(10.0.17763)/amd64",
            &["windows/amd64", "windows(10.0.17763)/amd64"],
            &["linux/amd64", "windows/arm", "windows(10.0.20348)/amd64"],
        ),
        (
            "linux/arm/v8",
            &["linux/arm/v8"],
            &["linux/arm", "linux/arm/v7", "linux/arm64"],
        ),
        (
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v7"],
            &["linux/arm/v6", "linux/arm/v8"],
        ),
        (
            "linux/arm64/v9",
            &["linux/arm64/v9", "linux/arm64/v9.0"],
            &[
                "linux/arm/v8",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "linux/arm/v9",
            ],
        ),
        (
            "linux/arm64/v8.1",
            &["linux/arm64/v8.1"],
            &["linux/arm64/v8", "linux/arm64"],
        ),
        (
            "linux/arm64",
            &["linux/arm64", "linux/arm64/v8"],
            &["linux/arm/v8", "linux/arm64/v9"],
        ),
    ];
    for (platform, yes, no) in cases {
        check(
            &only_strict(p(platform)),
            &format!("only_strict({platform})"),
            yes,
            no,
        );
    }
}

fn sorted(m: &dyn MatchComparer, input: &[&str]) -> Vec<String> {
    let mut ps: Vec<Platform> = input.iter().map(|s| p(s)).collect();
    ps.sort_by(|a, b| {
        if m.less(a, b) {
            std::cmp::Ordering::Less
        } else if m.less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    ps.iter().map(format).collect()
}

#[test]
fn ordering() {
    let m = only(p("linux/arm64"));
    assert_eq!(
        sorted(
            &m,
            &["linux/arm/v7", "linux/amd64", "linux/arm64", "linux/arm/v8"]
        ),
        ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/amd64"]
    );
    let m = only(p("linux/amd64/v3"));
    assert_eq!(
        sorted(
            &m,
            &[
                "linux/386",
                "linux/amd64",
                "linux/amd64/v2",
                "linux/amd64/v3"
            ]
        ),
        [
            "linux/amd64/v3",
            "linux/amd64/v2",
            "linux/amd64",
            "linux/386"
        ]
    );
    let m = ordered(vec![p("linux/s390x"), p("linux/amd64")]);
    assert_eq!(
        sorted(&m, &["linux/arm64", "linux/amd64", "linux/s390x"]),
        ["linux/s390x", "linux/amd64", "linux/arm64"]
    );
    assert!(!m.less(&p("linux/arm64"), &p("linux/riscv64")));
}

#[test]
fn any_and_all() {
    let m = any(vec![p("linux/s390x"), p("linux/amd64")]);
    check(
        &m,
        "any",
        &["linux/s390x", "linux/amd64"],
        &["linux/386", "linux/arm64"],
    );
    // No preference between matching platforms, matching before non-matching.
    assert!(!m.less(&p("linux/s390x"), &p("linux/amd64")));
    assert!(!m.less(&p("linux/amd64"), &p("linux/s390x")));
    assert!(m.less(&p("linux/amd64"), &p("linux/arm64")));
    assert!(!m.less(&p("linux/arm64"), &p("linux/amd64")));
    let a = all();
    check(&a, "all", &["linux/amd64", "windows/arm", "plan9/386"], &[]);
    assert!(!a.less(&p("linux/amd64"), &p("linux/arm64")));
}

#[test]
fn default_matches_host() {
    let host = default_spec();
    assert!(!host.os.is_empty() && !host.architecture.is_empty());
    assert!(default_matcher().matches(&host));
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(format(&host), "linux/amd64");
        assert!(default_matcher().matches(&p("linux/386")));
        assert!(!default_matcher().matches(&p("linux/arm64")));
    }
}

#[test]
fn oci_conversion() {
    let q = Platform {
        os: "linux".into(),
        architecture: "arm".into(),
        variant: "v7".into(),
        os_version: String::new(),
        os_features: vec!["f".into()],
    };
    let oci = q.to_oci();
    assert_eq!(oci.architecture().to_string(), "arm");
    assert_eq!(oci.variant().as_deref(), Some("v7"));
    assert_eq!(Platform::from_oci(&oci), q);
    let plain = Platform::new("linux", "amd64", "").to_oci();
    assert_eq!(plain.variant(), &None);
}
