//! A sandbox directory with canaries beside the fuzzed roots: a file, a directory and a
//! symlink to it. `check` asserts that nothing outside the roots changed.
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
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

pub fn sandbox() -> &'static Sandbox {
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

/// A fresh root inside the sandbox (named `root…`: the canary walk skips it).
pub fn root() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("root").tempdir_in(sandbox().dir.path()).unwrap()
}

/// Asserts the canaries are untouched, then makes `root` removable even if the layer
/// dropped permissions, and removes it.
pub fn check(root: tempfile::TempDir) {
    let sb = sandbox();
    assert!(state(sb.dir.path()) == sb.before, "something outside the root changed");
    make_removable(root.path());
    drop(root);
}

/// Gives the owner rwx on every directory under `dir` (a layer may have dropped them),
/// never following symlinks.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = std::fs::symlink_metadata(dir) else { return };
    if !md.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(md.mode() | 0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            make_removable(&e.path());
        }
    }
}
