//! Mount specifications returned by snapshotters, and helpers to mount them.
//!
//! A [`Mount`] is data (containerd's `mount.Mount`): a filesystem type, a source and
//! options such as `ro`, `rbind`, `lowerdir=…`. Callers with the privilege mount a
//! `[Mount]` at a target with [`mount_all`] (or scoped: [`with_temp_mount`],
//! [`MountGuard`]); the differ reads them to apply or diff without mounting.
//!
//! [`classify`] tells what a `[Mount]` is ([`Layout`]: a bind of a directory, an overlay of
//! layer directories, or something to mount); code that needs the directories behind
//! mounts asks it rather than reading `kind` and options itself.
//!
//! All helpers are synchronous (blocking system calls); call them from
//! `tokio::task::spawn_blocking` in async code.

mod layout;

pub use layout::{Layout, classify};

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use strata_content::{Error, Result};

/// One mount: `mount -t <type> -o <options> <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `bind`, `overlay`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The source: a directory for `bind`, `overlay` for overlay.
    pub source: String,
    /// Where to mount, relative to the mount root (usually empty: the root itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Options: `ro`, `rw`, `rbind`, `lowerdir=a:b`, `upperdir=…`, `workdir=…`, `index=off` …
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    /// The value of option `key=value`, if present (for example `upperdir`).
    ///
    /// ```
    /// use strata_snapshot::Mount;
    /// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
    ///     options: vec!["lowerdir=/a:/b".into(), "upperdir=/u".into()] };
    /// assert_eq!(m.option("upperdir"), Some("/u"));
    /// assert_eq!(m.option("workdir"), None);
    /// ```
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether the mount is read-only (`ro` option).
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// A bind mount of `source` (`rbind`, plus `ro` or `rw`), as snapshotters return it.
    ///
    /// ```
    /// use strata_snapshot::Mount;
    /// let m = Mount::bind("/s/1/fs", true);
    /// assert_eq!(m.options, ["ro", "rbind"]);
    /// assert!(m.is_readonly());
    /// ```
    pub fn bind(source: impl Into<String>, readonly: bool) -> Self {
        Mount {
            kind: "bind".into(),
            source: source.into(),
            target: String::new(),
            options: vec![if readonly { "ro" } else { "rw" }.into(), "rbind".into()],
        }
    }

    /// The `lowerdir=` directories of an overlay mount, newest (top) first.
    ///
    /// ```
    /// use strata_snapshot::Mount;
    /// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
    ///     options: vec!["lowerdir=/b:/a".into()] };
    /// assert_eq!(m.lowerdirs(), ["/b", "/a"]);
    /// ```
    pub fn lowerdirs(&self) -> Vec<&str> {
        self.option("lowerdir")
            .map(|l| l.split(':').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// This mount made read-only, as containerd's `WithReadonlyTempMount` does: a bind gets
    /// `ro`; an overlay with an `upperdir` becomes an overlay whose top lower layer is that
    /// upperdir (no upperdir/workdir), so nothing can be written through it.
    ///
    /// ```
    /// use strata_snapshot::Mount;
    /// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
    ///     options: vec!["index=off".into(), "workdir=/w".into(), "upperdir=/u".into(),
    ///                   "lowerdir=/b:/a".into()] };
    /// let ro = m.readonly();
    /// assert_eq!(ro.options, ["index=off", "lowerdir=/u:/b:/a"]);
    /// assert_eq!(Mount::bind("/x", false).readonly().options, ["ro", "rbind"]);
    /// ```
    pub fn readonly(&self) -> Mount {
        let mut m = self.clone();
        match self.layout() {
            Layout::Overlay {
                upperdir: Some(upper),
                lowerdirs,
                ..
            } => {
                let all: Vec<_> = std::iter::once(upper)
                    .chain(lowerdirs)
                    .map(|d| d.to_string_lossy())
                    .collect();
                m.options.retain(|o| {
                    !o.starts_with("upperdir=")
                        && !o.starts_with("workdir=")
                        && !o.starts_with("lowerdir=")
                        && o != "rw"
                });
                m.options.push(format!("lowerdir={}", all.join(":")));
            }
            Layout::Overlay { upperdir: None, .. } => {}
            _ => {
                m.options.retain(|o| o != "rw" && o != "ro");
                m.options.insert(0, "ro".into());
            }
        }
        m
    }
}

/// Mount flags and propagation parsed from options; the rest is the fs data string.
struct Parsed {
    flags: libc::c_ulong,
    propagation: libc::c_ulong,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Parsed {
    use libc::*;
    let mut p = Parsed {
        flags: 0,
        propagation: 0,
        data: Vec::new(),
    };
    for o in options {
        // (clear, flag)
        let f: Option<(bool, c_ulong)> = match o.as_str() {
            "async" => Some((true, MS_SYNCHRONOUS)),
            "atime" => Some((true, MS_NOATIME)),
            "bind" => Some((false, MS_BIND)),
            "defaults" => Some((false, 0)),
            "dev" => Some((true, MS_NODEV)),
            "diratime" => Some((true, MS_NODIRATIME)),
            "dirsync" => Some((false, MS_DIRSYNC)),
            "exec" => Some((true, MS_NOEXEC)),
            "mand" => Some((false, MS_MANDLOCK)),
            "noatime" => Some((false, MS_NOATIME)),
            "nodev" => Some((false, MS_NODEV)),
            "nodiratime" => Some((false, MS_NODIRATIME)),
            "noexec" => Some((false, MS_NOEXEC)),
            "nomand" => Some((true, MS_MANDLOCK)),
            "norelatime" => Some((true, MS_RELATIME)),
            "nostrictatime" => Some((true, MS_STRICTATIME)),
            "nosuid" => Some((false, MS_NOSUID)),
            "rbind" => Some((false, MS_BIND | MS_REC)),
            "relatime" => Some((false, MS_RELATIME)),
            "remount" => Some((false, MS_REMOUNT)),
            "ro" => Some((false, MS_RDONLY)),
            "rw" => Some((true, MS_RDONLY)),
            "strictatime" => Some((false, MS_STRICTATIME)),
            "suid" => Some((true, MS_NOSUID)),
            "sync" => Some((false, MS_SYNCHRONOUS)),
            _ => None,
        };
        if let Some((clear, flag)) = f {
            if clear {
                p.flags &= !flag;
            } else {
                p.flags |= flag;
            }
            continue;
        }
        let prop = match o.as_str() {
            "private" => Some(MS_PRIVATE),
            "rprivate" => Some(MS_PRIVATE | MS_REC),
            "shared" => Some(MS_SHARED),
            "rshared" => Some(MS_SHARED | MS_REC),
            "slave" => Some(MS_SLAVE),
            "rslave" => Some(MS_SLAVE | MS_REC),
            "unbindable" => Some(MS_UNBINDABLE),
            "runbindable" => Some(MS_UNBINDABLE | MS_REC),
            _ => None,
        };
        match prop {
            Some(f) => p.propagation |= f,
            None => p.data.push(o.clone()),
        }
    }
    p
}

fn sys_mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> std::io::Result<()> {
    let to_io = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let src = CString::new(source).map_err(to_io)?;
    let tgt = CString::new(target.as_os_str().as_bytes()).map_err(to_io)?;
    let ty = CString::new(fstype).map_err(to_io)?;
    let dat = CString::new(data).map_err(to_io)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            ty.as_ptr(),
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                dat.as_ptr().cast()
            },
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The longest common directory of absolute `dirs` (component-wise).
fn common_dir(dirs: &[&str]) -> PathBuf {
    let mut common: Vec<Component> = Path::new(dirs[0]).components().collect();
    for d in &dirs[1..] {
        let comps: Vec<Component> = Path::new(d).components().collect();
        let n = common
            .iter()
            .zip(comps.iter())
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(n);
    }
    // Never use a lower dir itself as the working directory: keep at least one component.
    let shortest = dirs
        .iter()
        .map(|d| Path::new(d).components().count())
        .min()
        .unwrap_or(0);
    if common.len() >= shortest {
        common.truncate(shortest.saturating_sub(1));
    }
    common.iter().collect()
}

/// Page size minus a margin, as containerd's limit for overlay option strings.
fn option_limit() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (if page > 0 { page as usize } else { 4096 }) - 512
}

/// Rewrites `lowerdir=` to paths relative to their common directory, returning that
/// directory and the new data options (containerd's `compactLowerdirOption`).
fn compact_lowerdir(data: &[String]) -> Option<(PathBuf, Vec<String>)> {
    let idx = data.iter().position(|o| o.starts_with("lowerdir="))?;
    let dirs: Vec<&str> = data[idx]["lowerdir=".len()..]
        .split(':')
        .filter(|s| !s.is_empty())
        .collect();
    if dirs.len() < 2 || dirs.iter().any(|d| !d.starts_with('/')) {
        return None;
    }
    let common = common_dir(&dirs);
    if common.as_os_str().len() <= 1 {
        return None;
    }
    let rel: Vec<String> = dirs
        .iter()
        .map(|d| {
            Path::new(d)
                .strip_prefix(&common)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let mut out = data.to_vec();
    out[idx] = format!("lowerdir={}", rel.join(":"));
    Some((common, out))
}

/// Runs `mount(2)` in a helper thread whose working directory is `dir` (the thread
/// unshares its filesystem context, so the process's cwd is untouched).
fn mount_in_dir(
    dir: &Path,
    fstype: &str,
    source: &str,
    target: &Path,
    flags: libc::c_ulong,
    data: String,
) -> std::io::Result<()> {
    let dir = dir.to_owned();
    let (fstype, source, target) = (fstype.to_owned(), source.to_owned(), target.to_owned());
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_FS) only affects the calling thread's fs context.
        if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::env::set_current_dir(&dir)?;
        sys_mount(&source, &target, &fstype, flags, &data)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("mount thread panicked")))
}

/// Mounts one `m` at `target` (which must exist).
///
/// Binds (`bind`/`rbind`) honour `ro` with a read-only remount; propagation options
/// (`rprivate` …) are applied after mounting; an overlay whose option string exceeds
/// the page size has its `lowerdir=` rewritten relative to the lower dirs' common
/// directory and is mounted from there.
///
/// # Errors
/// `Io` naming the mount and target (`NotFound` when the target or source is missing,
/// `InvalidArgument` for paths with NUL bytes).
pub fn mount(m: &Mount, target: &Path) -> Result<()> {
    let p = parse_options(&m.options);
    let what = || format!("mount {} {} at {}", m.kind, m.source, target.display());
    let is_bind = p.flags & libc::MS_BIND != 0 || m.kind == "bind" || m.kind == "rbind";
    let mut flags = p.flags;
    if m.kind == "bind" {
        flags |= libc::MS_BIND;
    } else if m.kind == "rbind" {
        flags |= libc::MS_BIND | libc::MS_REC;
    }
    let data = p.data.join(",");
    let fstype = if is_bind { "none" } else { m.kind.as_str() };
    let target_abs = if target.is_absolute() {
        target.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(what(), e))?
            .join(target)
    };
    let res = if !is_bind && data.len() >= option_limit() {
        match compact_lowerdir(&p.data) {
            Some((dir, data)) => {
                mount_in_dir(&dir, fstype, &m.source, &target_abs, flags, data.join(","))
            }
            None => sys_mount(&m.source, &target_abs, fstype, flags, &data),
        }
    } else {
        sys_mount(&m.source, &target_abs, fstype, flags, &data)
    };
    res.map_err(|e| Error::io(what(), e))?;
    let undo = |e: std::io::Error, step: &str| {
        let _ = unmount_lazy(&target_abs);
        Error::io(format!("{}: {step}", what()), e)
    };
    if p.propagation != 0 {
        sys_mount("", &target_abs, "", p.propagation, "").map_err(|e| undo(e, "propagation"))?;
    }
    if is_bind && flags & libc::MS_RDONLY != 0 {
        let keep = flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME)
            | libc::MS_REC;
        sys_mount(
            "",
            &target_abs,
            "",
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
            "",
        )
        .map_err(|e| undo(e, "read-only remount"))?;
    }
    Ok(())
}

/// Mounts every mount of `mounts` in order at `target` (joined with each mount's own
/// `target`, when set). On failure, the mounts already made are unmounted again.
///
/// # Errors
/// As [`mount`].
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    let mut done: Vec<PathBuf> = Vec::new();
    for m in mounts {
        let t = if m.target.is_empty() {
            target.to_owned()
        } else {
            target.join(m.target.trim_start_matches('/'))
        };
        if let Err(e) = mount(m, &t) {
            for d in done.iter().rev() {
                let _ = unmount_lazy(d);
            }
            return Err(e);
        }
        done.push(t);
    }
    Ok(())
}

fn umount2(target: &Path, flags: libc::c_int) -> std::io::Result<()> {
    let t = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: t is a valid NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unmounts the top mount at `target`, retrying for up to ~1 s while it is busy.
///
/// # Errors
/// `InvalidArgument` when `target` is not a mount point, `NotFound` when it does not
/// exist, `Io` otherwise (for example still busy).
pub fn unmount(target: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match umount2(target, libc::UMOUNT_NOFOLLOW) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(Error::invalid_argument(format!(
                    "unmount {}: not a mount point",
                    target.display()
                ))
                .with_source(e));
            }
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e)),
        }
    }
}

/// Unmounts every mount stacked at `target` until it is no longer a mount point.
/// A target that is not mounted (or does not exist) is fine.
///
/// # Errors
/// `Io` when a mount stays busy.
pub fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..64 {
        match unmount(target) {
            Ok(()) => continue,
            Err(e) if e.is_invalid_argument() || e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal(format!(
        "unmount {}: more than 64 stacked mounts",
        target.display()
    )))
}

/// Lazily detaches every mount at `target` (`MNT_DETACH`): they disappear from the
/// namespace now and are released when no longer busy. Not mounted is fine.
///
/// # Errors
/// `Io` for unexpected failures.
pub fn unmount_lazy(target: &Path) -> Result<()> {
    for _ in 0..64 {
        match umount2(target, libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {
                return Ok(());
            }
            Err(e) => return Err(Error::io(format!("detach {}", target.display()), e)),
        }
    }
    Ok(())
}

/// Mounts at a target and unmounts everything there when dropped (lazily detaching
/// if a plain unmount fails), even while unwinding from a panic.
///
/// ```no_run
/// # fn main() -> strata_content::Result<()> {
/// use strata_snapshot::{Mount, mount::MountGuard};
/// let g = MountGuard::mount(&[Mount::bind("/srv/data", true)], "/mnt/x".as_ref())?;
/// // … read /mnt/x …
/// g.unmount()?; // or just drop it
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    armed: bool,
}

impl MountGuard {
    /// Mounts `mounts` at `target` with [`mount_all`].
    ///
    /// # Errors
    /// As [`mount_all`].
    pub fn mount(mounts: &[Mount], target: &Path) -> Result<Self> {
        mount_all(mounts, target)?;
        Ok(MountGuard {
            target: target.to_owned(),
            armed: true,
        })
    }

    /// Where the mounts are.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (falls back to a lazy detach, which is also
    /// reported as the error).
    ///
    /// # Errors
    /// As [`unmount_all`].
    pub fn unmount(mut self) -> Result<()> {
        self.armed = false;
        unmount_all(&self.target).inspect_err(|_| {
            let _ = unmount_lazy(&self.target);
        })
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.armed && unmount_all(&self.target).is_err() {
            let _ = unmount_lazy(&self.target);
        }
    }
}

/// Mounts `mounts` on a fresh temporary directory, runs `f` with its path, then always
/// unmounts and removes the directory: on success, on error and on panic (the panic
/// is resumed afterwards). Containerd's `mount.WithTempMount`.
///
/// ```no_run
/// # fn main() -> strata_content::Result<()> {
/// use strata_snapshot::{Mount, mount::with_temp_mount};
/// let n = with_temp_mount(&[Mount::bind("/srv/data", true)], |root| {
///     std::fs::read_dir(root).map(|d| d.count())
/// })?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// Creating the directory or mounting (as [`mount_all`]), or unmounting afterwards;
/// `f`'s own result is returned inside `Ok`.
pub fn with_temp_mount<R>(mounts: &[Mount], f: impl FnOnce(&Path) -> R) -> Result<R> {
    let dir = tempfile::Builder::new()
        .prefix("strata-mount-")
        .tempdir()
        .map_err(|e| Error::io("create temporary mount point", e))?;
    let guard = MountGuard::mount(mounts, dir.path())?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(dir.path())));
    let un = guard.unmount();
    match out {
        Ok(r) => {
            un?;
            // Only remove the directory once nothing is mounted there.
            dir.close()
                .map_err(|e| Error::io("remove temporary mount point", e))?;
            Ok(r)
        }
        Err(p) => {
            if un.is_ok() {
                let _ = dir.close();
            } else {
                let _ = dir.keep();
            }
            std::panic::resume_unwind(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_mounted(p: &Path) -> bool {
        let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = p.to_str().unwrap();
        s.lines().any(|l| l.split(' ').nth(4) == Some(p))
    }

    #[test]
    fn bind_ro_rejects_writes_and_unmounts() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), b"x").unwrap();
        let src_s = src.path().to_str().unwrap().to_owned();
        let (seen, mounted_at) = with_temp_mount(&[Mount::bind(src_s, true)], |root| {
            let err = std::fs::write(root.join("g"), b"y").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
            (std::fs::read(root.join("f")).unwrap(), root.to_owned())
        })
        .unwrap();
        assert_eq!(seen, b"x");
        assert!(!is_mounted(&mounted_at));
        assert!(!mounted_at.exists());
    }

    #[test]
    fn temp_mount_unmounts_on_panic() {
        let src = tempfile::tempdir().unwrap();
        let src_s = src.path().to_str().unwrap().to_owned();
        let where_ = std::sync::Mutex::new(PathBuf::new());
        let r = std::panic::catch_unwind(|| {
            with_temp_mount(&[Mount::bind(src_s, false)], |root| {
                *where_.lock().unwrap() = root.to_owned();
                std::fs::write(root.join("w"), b"1").unwrap();
                panic!("boom");
            })
        });
        assert!(r.is_err());
        let p = where_.lock().unwrap().clone();
        assert!(!is_mounted(&p), "still mounted after panic");
        assert!(src.path().join("w").exists());
    }

    #[test]
    fn overlay_with_long_lowerdir_list_mounts() {
        let root = tempfile::tempdir().unwrap();
        // Deep common prefix so that the absolute option string exceeds a page.
        let base = root.path().join("a".repeat(60)).join("b".repeat(60));
        let mut lowers = Vec::new();
        for i in 0..80 {
            let d = base.join(format!("{i}")).join("fs");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
            std::fs::write(d.join("top"), i.to_string()).unwrap();
            lowers.push(d.to_str().unwrap().to_owned());
        }
        lowers.reverse(); // newest first
        let opt = format!("lowerdir={}", lowers.join(":"));
        assert!(opt.len() > 4096);
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![opt],
        };
        let cwd = std::env::current_dir().unwrap();
        with_temp_mount(&[m], |t| {
            assert_eq!(std::fs::read_to_string(t.join("top")).unwrap(), "79");
            assert_eq!(std::fs::read_to_string(t.join("f0")).unwrap(), "0");
            assert_eq!(std::fs::read_dir(t).unwrap().count(), 81);
        })
        .unwrap();
        assert_eq!(std::env::current_dir().unwrap(), cwd, "process cwd changed");
    }

    #[test]
    fn unmount_of_plain_dir_is_invalid_argument_and_unmount_all_ok() {
        let d = tempfile::tempdir().unwrap();
        assert!(unmount(d.path()).unwrap_err().is_invalid_argument());
        unmount_all(d.path()).unwrap();
        unmount_lazy(d.path()).unwrap();
    }

    #[test]
    fn mount_failure_names_target() {
        let d = tempfile::tempdir().unwrap();
        let err = mount_all(&[Mount::bind("/nonexistent/strata/x", false)], d.path()).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("/nonexistent/strata/x"));
    }

    #[test]
    fn common_dir_keeps_a_parent() {
        assert_eq!(
            common_dir(&["/r/s/1/fs", "/r/s/2/fs"]),
            PathBuf::from("/r/s")
        );
        assert_eq!(common_dir(&["/r/s/1", "/r/s/1"]), PathBuf::from("/r/s"));
    }
}
