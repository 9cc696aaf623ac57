//! Applies arbitrary bytes as a layer (plain tar, gzip-wrapped tar, and raw bytes as gzip)
//! into a fresh root inside a sandbox directory; asserts no panic and that nothing outside
//! the root changed (the sandbox holds canary files, a canary directory and a symlink to
//! it beside the root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use strata_diff::{ApplyOptions, Compression, Encoding, apply_layer};

struct Sandbox {
    dir: tempfile::TempDir,
    before: BTreeMap<PathBuf, (u32, u32, u32, u64, i64, Vec<u8>)>,
}

fn state(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("root")) && d == dir {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let content = if md.is_file() {
                std::fs::read(&p).unwrap()
            } else if md.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else {
                Vec::new()
            };
            out.insert(p.clone(), (md.mode(), md.uid(), md.gid(), md.ino(), md.mtime(), content));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("strata-fuzz-").tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/passwd"), b"canary").unwrap();
        std::fs::write(p.join("canary"), b"canary").unwrap();
        std::os::unix::fs::symlink(p.join("etc"), p.join("etclink")).unwrap();
        let before = state(p);
        Sandbox { dir, before }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let sb = sandbox();
    let root = tempfile::Builder::new().prefix("root").tempdir_in(sb.dir.path()).unwrap();
    let opts = ApplyOptions::default();
    let _ = match mode % 3 {
        0 => apply_layer(rest, Compression::None, root.path(), &opts),
        1 => {
            let mut e = strata_diff::compression::encoder(
                Vec::new(),
                Encoding { compression: Compression::Gzip, level: Some(1), threads: 0 },
            )
            .unwrap();
            e.write_all(rest).unwrap();
            let gz = e.finish().unwrap();
            apply_layer(&gz[..], Compression::Gzip, root.path(), &opts)
        }
        _ => apply_layer(rest, Compression::Detect, root.path(), &opts),
    };
    let after = state(sb.dir.path());
    assert!(after == sb.before, "something outside the root changed");
    // Make the root removable even if the layer dropped permissions.
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+rwx").arg(root.path()).status();
    drop(root);
});
