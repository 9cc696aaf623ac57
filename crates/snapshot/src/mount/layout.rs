//! What a set of mounts is: the one place that reads a [`Mount`]'s type and options to
//! decide between a bind of a directory, an overlay of layer directories, or something
//! that must be mounted to be read.
//!
//! Snapshotters return `[Mount]`s (containerd's shape: strings); the differ, the overlay
//! snapshotter and the image service need to know which directories they show without
//! mounting them. They ask [`classify`] instead of comparing `kind` with `"overlay"`.

use super::Mount;
use std::path::Path;

/// The shape of a `[Mount]`, as [`classify`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout<'a> {
    /// No mounts at all.
    Empty,
    /// One bind (`bind`) mount of the directory `source`.
    Bind {
        /// The directory shown.
        source: &'a Path,
        /// Whether the mount has the `ro` option.
        readonly: bool,
    },
    /// One overlay mount.
    Overlay {
        /// The `lowerdir=` directories, top (newest) first.
        lowerdirs: Vec<&'a Path>,
        /// The `upperdir=` directory, where writes land (none for a read-only overlay).
        upperdir: Option<&'a Path>,
        /// The `workdir=` directory.
        workdir: Option<&'a Path>,
    },
    /// Anything else (several mounts, another filesystem type): mount it to read it.
    Other,
}

/// Classifies `mounts`; see [`Layout`].
///
/// ```
/// use std::path::Path;
/// use strata_snapshot::Mount;
/// use strata_snapshot::mount::{Layout, classify};
/// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
///     options: vec!["upperdir=/s/3/fs".into(), "lowerdir=/s/2/fs:/s/1/fs".into()] };
/// let Layout::Overlay { upperdir, lowerdirs, .. } = classify(std::slice::from_ref(&m)) else {
///     unreachable!()
/// };
/// assert_eq!(upperdir, Some(Path::new("/s/3/fs")));
/// assert_eq!(lowerdirs, [Path::new("/s/2/fs"), Path::new("/s/1/fs")]);
/// assert_eq!(classify(&[Mount::bind("/s/1/fs", true)]),
///            Layout::Bind { source: Path::new("/s/1/fs"), readonly: true });
/// assert_eq!(classify(&[]), Layout::Empty);
/// ```
pub fn classify(mounts: &[Mount]) -> Layout<'_> {
    match mounts {
        [] => Layout::Empty,
        [m] => m.layout(),
        _ => Layout::Other,
    }
}

impl Mount {
    /// This one mount's [`Layout`] (never [`Layout::Empty`]).
    pub fn layout(&self) -> Layout<'_> {
        match self.kind.as_str() {
            "bind" => Layout::Bind {
                source: Path::new(&self.source),
                readonly: self.is_readonly(),
            },
            "overlay" => Layout::Overlay {
                lowerdirs: self.lowerdirs().into_iter().map(Path::new).collect(),
                upperdir: self.option("upperdir").map(Path::new),
                workdir: self.option("workdir").map(Path::new),
            },
            _ => Layout::Other,
        }
    }
}

impl<'a> Layout<'a> {
    /// The directories whose merged view the mounts show, top first: a bind's source; an
    /// overlay's upperdir (when it has one) and then its lowerdirs. `None` for
    /// [`Layout::Empty`] and [`Layout::Other`].
    ///
    /// ```
    /// use std::path::Path;
    /// use strata_snapshot::Mount;
    /// use strata_snapshot::mount::classify;
    /// let m = Mount { kind: "overlay".into(), source: "overlay".into(), target: String::new(),
    ///     options: vec!["upperdir=/u".into(), "lowerdir=/b:/a".into()] };
    /// assert_eq!(classify(&[m]).dirs().unwrap(), [Path::new("/u"), Path::new("/b"), Path::new("/a")]);
    /// ```
    pub fn dirs(&self) -> Option<Vec<&'a Path>> {
        match self {
            Layout::Bind { source, .. } => Some(vec![*source]),
            Layout::Overlay {
                lowerdirs,
                upperdir,
                ..
            } => Some(upperdir.iter().chain(lowerdirs).copied().collect()),
            Layout::Empty | Layout::Other => None,
        }
    }

    /// Where writes through the mounts land without mounting: an overlay's upperdir, or a
    /// read-write bind's source. `None` otherwise.
    pub fn writable_dir(&self) -> Option<&'a Path> {
        match self {
            Layout::Overlay { upperdir, .. } => *upperdir,
            Layout::Bind {
                source,
                readonly: false,
            } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: kind.into(),
            target: String::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn empty_and_several_mounts() {
        assert_eq!(classify(&[]), Layout::Empty);
        let b = Mount::bind("/a", false);
        assert_eq!(classify(&[b.clone(), b]), Layout::Other);
        assert_eq!(classify(&[]).dirs(), None);
        assert_eq!(classify(&[]).writable_dir(), None);
    }

    #[test]
    fn bind_read_write_and_read_only() {
        let rw = [Mount::bind("/s/1/fs", false)];
        let ro = [Mount::bind("/s/1/fs", true)];
        assert_eq!(
            classify(&rw),
            Layout::Bind {
                source: Path::new("/s/1/fs"),
                readonly: false
            }
        );
        assert_eq!(classify(&rw).writable_dir(), Some(Path::new("/s/1/fs")));
        assert_eq!(classify(&ro).writable_dir(), None);
        assert_eq!(classify(&ro).dirs().unwrap(), [Path::new("/s/1/fs")]);
    }

    #[test]
    fn overlay_active_and_view() {
        let active = [mount(
            "overlay",
            &["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/b:/a"],
        )];
        assert_eq!(
            classify(&active),
            Layout::Overlay {
                lowerdirs: vec![Path::new("/b"), Path::new("/a")],
                upperdir: Some(Path::new("/u")),
                workdir: Some(Path::new("/w")),
            }
        );
        assert_eq!(classify(&active).writable_dir(), Some(Path::new("/u")));
        let view = [mount("overlay", &["lowerdir=/b:/a"])];
        let l = classify(&view);
        assert_eq!(l.writable_dir(), None);
        assert_eq!(l.dirs().unwrap(), [Path::new("/b"), Path::new("/a")]);
    }

    #[test]
    fn overlay_without_lowerdirs_and_other_types() {
        let m = [mount("overlay", &["upperdir=/u", "workdir=/w"])];
        assert_eq!(classify(&m).dirs().unwrap(), [Path::new("/u")]);
        assert_eq!(classify(&[mount("tmpfs", &[])]), Layout::Other);
        assert_eq!(classify(&[mount("rbind", &["ro"])]), Layout::Other);
        assert_eq!(classify(&[mount("tmpfs", &[])]).dirs(), None);
    }
}
