//! containerd's `hosts.toml`: parsing never panics; every entry it yields has an absolute API
//! path and builds request URLs under it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata_image::remote::hosts::{Endpoint, parse_hosts_toml};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let base = Path::new("/etc/containerd/certs.d/example.com");
    let Ok(entries) = parse_hosts_toml(s, base) else { return };
    for e in entries {
        assert!(e.path.starts_with('/'), "API path {:?} is not absolute", e.path);
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
