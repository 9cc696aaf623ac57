//! Shared helpers for strata-diff's integration tests: a raw tar builder (names written
//! verbatim, `..` and absolute paths allowed), a sandbox with canaries outside the root,
//! and a tree snapshot for comparisons.
#![allow(dead_code)]

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use strata_diff::{ApplyOptions, ApplyStats, Compression, apply_layer};
use tar::{EntryType, Header};

/// Builds tar streams entry by entry.
#[derive(Default)]
pub struct Tar {
    pub out: Vec<u8>,
    pub mtime: u64,
}

impl Tar {
    pub fn new() -> Self {
        Tar {
            out: Vec::new(),
            mtime: 1_600_000_000,
        }
    }

    fn pax(&mut self, recs: &[(&str, &[u8])]) {
        if recs.is_empty() {
            return;
        }
        let mut data = Vec::new();
        for (k, v) in recs {
            let rest = 3 + k.len() + v.len();
            let mut len = rest + 1;
            while len.to_string().len() + rest > len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"PaxHeader");
        h.set_entry_type(EntryType::XHeader);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.raw(&h, &data);
    }

    fn raw(&mut self, h: &Header, data: &[u8]) {
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    /// Appends an entry; `pax` adds records (long names are put in PAX automatically).
    #[allow(clippy::too_many_arguments)]
    pub fn entry_full(
        &mut self,
        ty: EntryType,
        name: &str,
        link: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        let mut recs: Vec<(&str, &[u8])> = pax.to_vec();
        if name.len() > 100 {
            recs.push(("path", name.as_bytes()));
        }
        if link.len() > 100 {
            recs.push(("linkpath", link.as_bytes()));
        }
        self.pax(&recs);
        let mut h = Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            let n = name.len().min(100);
            u.name[..n].copy_from_slice(&name.as_bytes()[..n]);
            let l = link.len().min(100);
            u.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        }
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(self.mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.raw(&h, data);
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry_full(EntryType::Directory, name, "", mode, 0, 0, &[], &[])
    }
    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry_full(EntryType::Regular, name, "", mode, 0, 0, data, &[])
    }
    pub fn symlink(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry_full(EntryType::Symlink, name, target, 0o777, 0, 0, &[], &[])
    }
    pub fn link(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry_full(EntryType::Link, name, target, 0o644, 0, 0, &[], &[])
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.out);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// A temporary directory with `root/` (the apply target) and canaries beside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    before: BTreeMap<PathBuf, Node>,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-diff-test-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), b"canary passwd").unwrap();
        fs::write(dir.path().join("canary"), b"do not touch").unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        Sandbox {
            dir,
            root,
            before: BTreeMap::new(),
        }
    }

    /// Records the state outside the root (call after preparing it, before applying).
    pub fn seal(&mut self) {
        self.before = self.outside();
    }

    fn outside(&self) -> BTreeMap<PathBuf, Node> {
        let mut all = snapshot(self.dir.path());
        all.retain(|p, _| !p.starts_with("root") || p == Path::new("root"));
        all.remove(Path::new("root"));
        all
    }

    /// Panics if anything outside the root changed since [`Sandbox::seal`].
    pub fn check_outside(&self) {
        let now = self.outside();
        assert_eq!(self.before, now, "something outside the root changed");
    }
}

/// Applies a plain tar to `root`.
pub fn apply_tar(root: &Path, tar: &[u8]) -> strata_content::Result<ApplyStats> {
    apply_layer(tar, Compression::None, root, &ApplyOptions::default())
}

/// One node of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: String,
    pub link: String,
    pub rdev: u64,
    pub xattrs: Vec<(String, String)>,
    pub mtime: Option<(i64, i64)>,
    /// Index of the hardlink group (first path of the inode), for nlink > 1.
    pub hardlink: Option<PathBuf>,
}

pub struct SnapOpts {
    pub mtimes: bool,
    pub dir_mtimes: bool,
    pub xattr_filter: fn(&str) -> bool,
}

pub fn default_xattr_filter(k: &str) -> bool {
    !k.starts_with("security.selinux")
}

/// Snapshot of a tree (paths relative, root excluded), with mtimes of non-dirs.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot_with(
        root,
        &SnapOpts {
            mtimes: true,
            dir_mtimes: true,
            xattr_filter: default_xattr_filter,
        },
    )
}

pub fn snapshot_with(root: &Path, o: &SnapOpts) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            let content = if ft.is_file() {
                hex::encode(Sha256::digest(fs::read(&p).unwrap()))
            } else {
                String::new()
            };
            let link = if ft.is_symlink() {
                fs::read_link(&p).unwrap().to_string_lossy().into_owned()
            } else {
                String::new()
            };
            let mut xattrs = Vec::new();
            if let Ok(names) = xattr_list(&p) {
                for k in names {
                    if (o.xattr_filter)(&k) {
                        let v = xattr_get(&p, &k);
                        xattrs.push((k, hex::encode(v)));
                    }
                }
            }
            let hardlink = if !ft.is_dir() && md.nlink() > 1 {
                Some(
                    inodes
                        .entry((md.dev(), md.ino()))
                        .or_insert_with(|| r.clone())
                        .clone(),
                )
            } else {
                None
            };
            let want_mtime = o.mtimes && (!ft.is_dir() || o.dir_mtimes);
            out.insert(
                r.clone(),
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if ft.is_file() { md.size() } else { 0 },
                    content,
                    link,
                    rdev: md.rdev(),
                    xattrs,
                    mtime: want_mtime.then(|| (md.mtime(), md.mtime_nsec())),
                    hardlink,
                },
            );
            if ft.is_dir() {
                stack.push(r);
            }
        }
    }
    out
}

pub fn xattr_list(p: &Path) -> std::io::Result<Vec<String>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(p, &mut buf[..])?;
    let mut v: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

pub fn xattr_get(p: &Path, k: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::lgetxattr(p, k, &mut buf[..]).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// (dev, ino) of `path` resolved inside `root` like containerd's `fs.RootPath` (all
/// symlinks followed, clamped to the root).
pub fn root_stat(root: &Path, path: &str) -> std::io::Result<(u64, u64)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let r = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let p = path.trim_start_matches('/');
    let p = if p.is_empty() { "." } else { p };
    let fd = rustix::fs::openat2(&r, p, OFlags::PATH, Mode::empty(), ResolveFlags::IN_ROOT)?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether a peer tool is on PATH; if missing, panics under STRATA_REQUIRE_PEERS=1 and
/// otherwise prints a skip message and returns false.
pub fn have_tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("required peer tool {name} is missing (STRATA_REQUIRE_PEERS=1)");
        }
        eprintln!("SKIP: {name} not installed");
    }
    found
}

/// `root` joined with `s` (leading slashes ignored).
pub fn p(root: &Path, s: &str) -> PathBuf {
    root.join(s.trim_start_matches('/'))
}

/// `mkdir -p` of `s` under `r`, then chmod `mode`.
pub fn mkdir(r: &Path, s: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(p(r, s)).unwrap();
    fs::set_permissions(p(r, s), fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes file `s` under `r` with `data`, then chmod `mode`.
pub fn file(r: &Path, s: &str, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(p(r, s), data).unwrap();
    fs::set_permissions(p(r, s), fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets xattr `k` of the file or directory `path`.
pub fn xattr_set(path: &Path, k: &str, v: &[u8]) {
    rustix::fs::setxattr(path, k, v, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Creates an overlay whiteout (a 0:0 character device) at `path`.
pub fn overlay_whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
}
