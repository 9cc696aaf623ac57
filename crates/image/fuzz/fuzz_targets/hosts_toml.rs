//! containerd's `hosts.toml`: parsing never panics; every entry it yields has an absolute API
//! path (or an empty one: `override_path` on a URL without a path means the host's root) and
//! builds request URLs under it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata_image::remote::hosts::{Endpoint, parse_hosts_toml};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let base = Path::new("/etc/containerd/certs.d/example.com");
    let Ok(entries) = parse_hosts_toml(s, base) else { return };
    for e in entries {
        let p = &e.path;
        assert!(p.is_empty() || p.starts_with('/'), "API path {p:?} is not absolute");
        assert!(e.tls.ca.iter().all(|p| p.is_absolute()));
        let ep = Endpoint {
            scheme: e.scheme,
            host: e.host,
            path: e.path.clone(),
            capabilities: e.capabilities,
            tls: e.tls,
            headers: e.headers,
            ns: Some("example.com".into()),
        };
        let url = ep.url("library/debian", "manifests/12");
        assert!(url.contains(&format!("{}/library/debian/manifests/12", e.path)), "{url}");
    }
});
