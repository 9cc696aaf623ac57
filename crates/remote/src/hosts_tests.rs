//! Every example of containerd's `docs/hosts.md`, parsed and turned into endpoints.

use super::*;

const BASE: &str = "/etc/containerd/certs.d/docker.io";

fn parse(text: &str) -> Vec<HostEntry> {
    parse_hosts_toml(text, Path::new(BASE)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Writes `DIR/<name>/hosts.toml` and returns the endpoints for `domain`.
fn eps(dir: &Path, name: &str, toml: &str, domain: &str) -> Vec<Endpoint> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("hosts.toml"), toml).unwrap();
    let opts = RegistryOptions::default().hosts_dir(dir);
    endpoints(domain, &opts).unwrap()
}

#[test]
fn simple_default_for_docker() {
    let h = parse(
        r#"server = "https://docker.io"

[host."https://registry-1.docker.io"]
  capabilities = ["pull", "resolve"]
"#,
    );
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].scheme.as_str(), h[0].host.as_str(), h[0].path.as_str()),
        ("https", "registry-1.docker.io", "/v2")
    );
    assert_eq!(h[0].capabilities, Capabilities::PULL_RESOLVE);
    assert_eq!(h[1].host, "docker.io");
    assert_eq!(h[1].capabilities, Capabilities::ALL);
}

#[test]
fn local_mirror_for_docker() {
    let text = r#"server = "https://registry-1.docker.io"    # Exclude this to not use upstream

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]                  # Requires less trust, won't resolve tag to digest from this host
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"                 # Or absolute path /etc/containerd/certs.d/docker.io/docker-mirror.crt
"#;
    let h = parse(text);
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].host, "public-mirror.example.com");
    assert_eq!(h[0].capabilities, Capabilities::PULL);
    assert_eq!(h[1].host, "docker-mirror.internal");
    assert_eq!(h[1].tls.ca, [p(BASE).join("docker-mirror.crt")]);
    assert_eq!(h[2].host, "registry-1.docker.io");
    let dir = tempfile::tempdir().unwrap();
    let e = eps(dir.path(), "docker.io", text, "docker.io");
    let resolve: Vec<_> = e
        .iter()
        .filter(|e| e.capabilities.has(Capabilities::PULL_RESOLVE))
        .map(|e| e.host.as_str())
        .collect();
    assert_eq!(resolve, ["docker-mirror.internal", "registry-1.docker.io"]);
    assert_eq!(
        e[0].url("library/debian", "blobs/sha256:ab"),
        "https://public-mirror.example.com/v2/library/debian/blobs/sha256:ab?ns=docker.io"
    );
    assert_eq!(
        e[1].tls.ca,
        [dir.path().join("docker.io/docker-mirror.crt")],
        "relative to the hosts.toml directory"
    );
}

#[test]
fn default_mirror_for_all_registries() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[host."https://registry.example.com"]
  capabilities = ["pull", "resolve"]
"#;
    let e = eps(dir.path(), "_default", text, "quay.io");
    assert_eq!(e.len(), 2, "the upstream follows the hosts");
    assert_eq!(e[0].host, "registry.example.com");
    assert_eq!(e[0].ns.as_deref(), Some("quay.io"));
    assert_eq!((e[1].host.as_str(), e[1].ns.as_deref()), ("quay.io", None));
    assert_eq!(e[1].scheme, "https");
    let docker = endpoints(
        "docker.io",
        &RegistryOptions::default().hosts_dir(dir.path()),
    );
    assert_eq!(docker.unwrap()[1].host, "registry-1.docker.io");
}

#[test]
fn default_mirror_as_server_only() {
    let dir = tempfile::tempdir().unwrap();
    let e = eps(
        dir.path(),
        "_default",
        r#"server = "https://registry.example.com""#,
        "quay.io",
    );
    assert_eq!(e.len(), 1, "only the mirror; the upstream is not consulted");
    assert_eq!(e[0].host, "registry.example.com");
    assert_eq!(e[0].capabilities, Capabilities::ALL);
    assert_eq!(
        e[0].url("a/b", "manifests/1"),
        "https://registry.example.com/v2/a/b/manifests/1?ns=quay.io"
    );
}

#[test]
fn bypass_tls_verification() {
    let text = r#"server = "https://registry-1.docker.io"

[host."http://192.168.31.250:5000"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
"#;
    let h = parse(text);
    assert_eq!(h[0].scheme, "http");
    assert!(h[0].tls.skip_verify);
    assert_eq!(h[0].capabilities, Capabilities::ALL);
    let dir = tempfile::tempdir().unwrap();
    let e = eps(dir.path(), "docker.io", text, "docker.io");
    assert_eq!(
        (e[0].scheme.as_str(), e[0].host.as_str()),
        ("https", "192.168.31.250:5000"),
        "TLS settings on an http host other than port 80 mean https first, as containerd"
    );
    assert!(!e[1].tls.skip_verify);
}

#[test]
fn field_examples() {
    assert_eq!(
        parse(r#"server = "https://docker.io""#)[0].host,
        "docker.io"
    );
    let c = parse(r#"capabilities =  ["pull", "resolve", "push"]"#);
    assert_eq!(c[0].capabilities, Capabilities::ALL);
    assert_eq!(
        parse(r#"ca = "/etc/certs/mirror.pem""#)[0].tls.ca,
        [p("/etc/certs/mirror.pem")]
    );
    assert_eq!(
        parse(r#"ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]"#)[0]
            .tls
            .ca,
        [p("/etc/certs/test-1-ca.pem"), p("/etc/certs/special.pem")]
    );
    assert_eq!(
        parse(r#"client = "/etc/certs/client.pem""#)[0].tls.client,
        [(p("/etc/certs/client.pem"), None)]
    );
    assert_eq!(
        parse(r#"client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]"#)[0]
            .tls
            .client,
        [
            (p("/etc/certs/client-1.pem"), None),
            (p("/etc/certs/client-2.pem"), None)
        ]
    );
    let pairs = parse(
        r#"client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]"#,
    );
    assert_eq!(
        pairs[0].tls.client,
        [
            (
                p("/etc/certs/client.cert"),
                Some(p("/etc/certs/client.key"))
            ),
            (p("/etc/certs/client.pem"), None)
        ]
    );
    assert!(!parse("skip_verify = false")[0].tls.skip_verify);
    let hdr = |t: &str| parse(t)[0].headers.clone();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        hdr("[header]\n  x-custom-1 = \"custom header\""),
        [pair("x-custom-1", "custom header")]
    );
    assert_eq!(
        hdr("[header]\n  x-custom-1 = [\"custom header part a\",\"part b\"]"),
        [
            pair("x-custom-1", "custom header part a"),
            pair("x-custom-1", "part b")
        ]
    );
    assert_eq!(
        hdr(
            "[header]\n  x-custom-1 = \"custom header\"\n  x-custom-1-2 = \"another custom header\""
        ),
        [
            pair("x-custom-1", "custom header"),
            pair("x-custom-1-2", "another custom header")
        ]
    );
    // override_path: the server's URL path is the API root (without a server, the
    // registry itself keeps /v2, as in containerd).
    let o = parse("server = \"https://a.example/v2/upstream\"\noverride_path = true");
    assert_eq!(o[0].path, "/v2/upstream");
    let o = parse("server = \"https://a.example/api\"\noverride_path = true");
    assert_eq!(o[0].path, "/api");
    assert_eq!(
        parse("server = \"https://a.example/api\"")[0].path,
        "/api/v2"
    );
    assert_eq!(parse("override_path = true")[0].path, "/v2");
    // Found by fuzzing (an assertion of the target's, not a bug): a URL without a path and
    // override_path is the host's root.
    let o = parse("server = \"https://a.example\"\noverride_path = true");
    assert_eq!(o[0].path, "");
    // dial_timeout is accepted (and not applied).
    assert_eq!(parse(r#"dial_timeout = "1s""#).len(), 1);
}

#[test]
fn host_tables_in_order() {
    let h = parse(
        r#"[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://test-3.registry"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://non-compliant-mirror.registry/v2/upstream"]
  capabilities = ["pull"]
  override_path = true
"#,
    );
    let urls: Vec<String> = h
        .iter()
        .map(|e| format!("{}://{}{}", e.scheme, e.host, e.path))
        .collect();
    assert_eq!(
        urls,
        [
            "https://mirror.registry/v2",
            "https://mirror-bak.registry/us/v2",
            "http://mirror.registry/v2",
            "https://test-1.registry/v2",
            "https://test-2.registry/v2",
            "https://test-3.registry/v2",
            "https://non-compliant-mirror.registry/v2/upstream",
            ":///v2",
        ]
    );
    assert_eq!(h[0].headers.len(), 2);
    assert_eq!(h[0].tls.ca, [p("/etc/certs/mirror.pem")]);
    assert!(!h[0].tls.skip_verify && h[1].tls.skip_verify);
    assert_eq!(h[3].tls.ca.len(), 2);
    assert_eq!(h[3].tls.client.len(), 2);
    assert_eq!(h[4].capabilities, Capabilities::ALL, "unset means all");
    assert_eq!(h[5].tls.client.len(), 2);
    assert_eq!(h[6].capabilities, Capabilities::PULL);
    assert!(h[7].host.is_empty(), "no server: the registry itself");
}

#[test]
fn recursion_is_two_hosts() {
    // TOML tables are not nested by indentation: the "double mirror" is a second host.
    let h = parse(
        r#"[host."http://mirror.registry"]
  capabilities = ["pull"]
  [host."http://double-mirror.registry"]
    capabilities = ["pull"]
"#,
    );
    let hosts: Vec<&str> = h.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(hosts, ["mirror.registry", "double-mirror.registry", ""]);
}

#[test]
fn mirror_url_and_ns() {
    let dir = tempfile::tempdir().unwrap();
    let e = eps(
        dir.path(),
        "myregistry.io:5000",
        "[host.\"https://mymirror.io\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
        "myregistry.io:5000",
    );
    assert_eq!(
        e[0].url("image_name", "manifests/tag_name"),
        "https://mymirror.io/v2/image_name/manifests/tag_name?ns=myregistry.io:5000"
    );
    assert_eq!(
        e[1].url("image_name", "manifests/tag_name"),
        "https://myregistry.io:5000/v2/image_name/manifests/tag_name"
    );
}

#[test]
fn host_dir_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    assert_eq!(host_dir(r, "myregistry.io:5000"), None);
    std::fs::create_dir(r.join("_default")).unwrap();
    assert_eq!(host_dir(r, "myregistry.io:5000"), Some(r.join("_default")));
    std::fs::create_dir(r.join("myregistry.io:5000")).unwrap();
    assert_eq!(
        host_dir(r, "myregistry.io:5000"),
        Some(r.join("myregistry.io:5000"))
    );
    std::fs::create_dir(r.join("myregistry.io_5000_")).unwrap();
    assert_eq!(
        host_dir(r, "myregistry.io:5000"),
        Some(r.join("myregistry.io_5000_"))
    );
    assert_eq!(host_dir(r, "quay.io"), Some(r.join("_default")));
}

#[test]
fn docker_cert_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("reg.example:5000");
    std::fs::create_dir(&d).unwrap();
    for f in [
        "ca.crt",
        "client.cert",
        "client.key",
        "lone.cert",
        "notes.txt",
    ] {
        std::fs::write(d.join(f), "x").unwrap();
    }
    let opts = RegistryOptions::default().hosts_dir(dir.path());
    let e = endpoints("reg.example:5000", &opts).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].tls.ca, [d.join("ca.crt")]);
    assert_eq!(
        e[0].tls.client,
        [
            (d.join("client.cert"), Some(d.join("client.key"))),
            (d.join("lone.cert"), None)
        ]
    );
    // An empty hosts.toml also means the certificate files.
    std::fs::write(d.join("hosts.toml"), "\n").unwrap();
    assert_eq!(endpoints("reg.example:5000", &opts).unwrap(), e);
}

#[test]
fn loopback_server_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions::default().hosts_dir(dir.path());
    assert_eq!(
        endpoints("127.0.0.1:5000", &opts).unwrap()[0].scheme,
        "http"
    );
    let d = dir.path().join("127.0.0.1_5000_");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("hosts.toml"), "ca = \"ca.pem\"\n").unwrap();
    let e = endpoints("127.0.0.1:5000", &opts).unwrap();
    assert_eq!(
        (e[0].scheme.as_str(), e[0].tls.ca.clone()),
        ("https", vec![d.join("ca.pem")]),
        "a loopback host with TLS settings is HTTPS"
    );
}

#[test]
fn errors_name_the_problem() {
    let bad = |t: &str| parse_hosts_toml(t, Path::new("/")).unwrap_err().to_string();
    assert!(bad("capabilities = [\"fly\"]").contains("fly"));
    assert!(bad("ca = 1").contains("ca"));
    assert!(bad("client = [[\"a\"]]").contains("client pair"));
    assert!(bad("skip_verify = \"yes\"").contains("skip_verify"));
    assert!(bad("[header]\nx = 1").contains("header"));
    assert!(bad("server = [").contains("malformed TOML"));
    assert!(bad("[host.\"https://a\"]\ncapabilities = [\"pull\", 2]").contains("https://a"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts.toml"), "server = [").unwrap();
    let e = load_host_dir(dir.path()).unwrap_err();
    assert!(e.to_string().contains("hosts.toml"), "{e}");
}

#[test]
fn loopback_names() {
    for (h, yes) in [
        ("localhost:5000", true),
        ("127.0.0.1", true),
        ("127.1.2.3:80", true),
        ("[::1]:5000", true),
        ("::1", true),
        ("example.com", false),
        ("10.0.0.1:5000", false),
    ] {
        assert_eq!(is_loopback(h), yes, "{h}");
    }
}
