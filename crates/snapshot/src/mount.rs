//! Mount specifications returned by snapshotters, and helpers to mount them.
//!
//! A [`Mount`] is data (containerd's `mount.Mount`): a filesystem type, a source and
//! options such as `ro`, `rbind`, `lowerdir=…`. Callers with the privilege mount a
//! `[Mount]` at a target; the differ reads them to apply or diff without mounting.

use serde::{Deserialize, Serialize};

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
        self.options.iter().find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether the mount is read-only (`ro` option).
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}
