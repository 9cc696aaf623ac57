//! containerd's filter language: parsing never panics, and a parsed filter can be matched
//! against an object with labels and plain fields without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use strata_content::filters::{Adaptor, Filter, label_field};

struct Obj {
    labels: BTreeMap<String, String>,
}

impl Adaptor for Obj {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.split_first()? {
            (f, []) if f == "name" => Some("docker.io/library/debian:12".into()),
            (f, []) if f == "digest" => Some(format!("sha256:{}", "ab".repeat(32))),
            (f, rest) if f == "labels" => label_field(&self.labels, rest),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let obj = Obj {
        labels: BTreeMap::from([
            ("a".into(), "b".into()),
            ("containerd.io/gc.ref.content.l.0".into(), "sha256:00".into()),
            ("x.y".into(), String::new()),
        ]),
    };
    if let Ok(f) = Filter::parse(s) {
        let _ = f.matches(&obj);
    }
    // Several filters are OR-ed, as containerd's List takes them.
    let parts: Vec<&str> = s.split('\n').collect();
    if let Ok(f) = Filter::parse_all(&parts) {
        let _ = f.matches(&obj);
    }
});
