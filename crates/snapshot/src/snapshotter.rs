//! The [`Snapshotter`] interface and its data types, after containerd's `snapshots` package.
//!
//! A snapshot is a directory tree identified by a key. [`Snapshotter::prepare`] makes an
//! *active* (writable) snapshot on top of a *committed* parent; [`Snapshotter::view`] makes
//! a read-only one; [`Snapshotter::commit`] turns an active snapshot into a committed one
//! under a new name (the active key disappears). Active and committed snapshots share one
//! keyspace. Callers get the filesystem through [`Mount`]s.

use crate::Mount;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;
use strata_content::filters::{Adaptor, label_field};
use strata_content::{Damage, Error, Labels, Result};

/// The kind of a snapshot. JSON: `"View"`, `"Active"`, `"Committed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A read-only snapshot of a committed parent; cannot be committed.
    View,
    /// A writable snapshot; can be committed.
    Active,
    /// An immutable snapshot that can be a parent.
    Committed,
}

impl Kind {
    /// The containerd name: `View`, `Active`, `Committed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "View",
            Kind::Active => "Active",
            Kind::Committed => "Committed",
        }
    }

    /// The lowercase form used by walk filters (`kind==active`).
    pub fn filter_name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }

    /// The integer stored in the metastore (containerd's values: 1, 2, 3).
    pub(crate) fn to_i64(self) -> i64 {
        match self {
            Kind::View => 1,
            Kind::Active => 2,
            Kind::Committed => 3,
        }
    }

    pub(crate) fn from_i64(v: i64) -> Result<Kind> {
        match v {
            1 => Ok(Kind::View),
            2 => Ok(Kind::Active),
            3 => Ok(Kind::Committed),
            _ => Err(Error::internal(format!(
                "bad snapshot kind {v} in metastore"
            ))),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Error;

    /// Case-insensitive, as containerd's `ParseKind`.
    ///
    /// ```
    /// use strata_snapshot::Kind;
    /// assert_eq!("active".parse::<Kind>().unwrap(), Kind::Active);
    /// assert_eq!("COMMITTED".parse::<Kind>().unwrap(), Kind::Committed);
    /// assert!("unknown".parse::<Kind>().unwrap_err().is_invalid_argument());
    /// ```
    fn from_str(s: &str) -> Result<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "view" => Ok(Kind::View),
            "active" => Ok(Kind::Active),
            "committed" => Ok(Kind::Committed),
            _ => Err(Error::invalid_argument(format!(
                "unknown snapshot kind {s:?}"
            ))),
        }
    }
}

/// What a snapshotter records about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Active, View or Committed.
    pub kind: Kind,
    /// The key (active/view) or name (committed).
    pub name: String,
    /// The parent's name, empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// When the snapshot was created (for a committed one: when it was committed).
    #[serde(with = "strata_content::time_format")]
    pub created: SystemTime,
    /// When its labels last changed.
    #[serde(with = "strata_content::time_format")]
    pub updated: SystemTime,
}

impl Info {
    /// An `Info` naming `name` with `labels`, for [`Snapshotter::update`] (the other
    /// fields are ignored).
    pub fn for_update(name: impl Into<String>, labels: Labels) -> Self {
        Info {
            kind: Kind::Active,
            name: name.into(),
            parent: String::new(),
            labels,
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        }
    }
}

impl Adaptor for Info {
    /// Fields `name`, `parent`, `kind` (`active`, `view`, `committed`), `labels.<key>`.
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" => Some(self.name.clone()),
            "parent" => Some(self.parent.clone()),
            "kind" => Some(self.kind.filter_name().to_owned()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

/// Disk usage of a snapshot, excluding its parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of disk used (allocated blocks, hardlinked inodes counted once).
    pub size: u64,
    /// Number of distinct inodes.
    pub inodes: u64,
}

/// A snapshotter: containerd's `snapshots.Snapshotter` (plus `Cleaner`).
///
/// Parents are named by their key; `""` means no parent. All methods are safe to call
/// concurrently; implementations run blocking work in `spawn_blocking`.
#[async_trait]
pub trait Snapshotter: Send + Sync {
    /// The info of snapshot `key`.
    ///
    /// # Errors
    /// `NotFound` when there is no such key.
    async fn stat(&self, key: &str) -> Result<Info>;

    /// Updates the labels of `info.name`: with no `fieldpaths` (or `labels`) the labels are
    /// replaced; `labels.<k>` sets (or, when absent from `info.labels`, removes) one
    /// label. Returns the new info (`updated` bumped, `created` unchanged).
    ///
    /// # Errors
    /// `NotFound` for a missing key; `InvalidArgument` for any other field path.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;

    /// The disk usage of `key` without its parents: computed now for an active
    /// snapshot; for a committed one, the usage of its (unchanging) tree, which a
    /// backend may measure at commit or on first use and then keeps.
    ///
    /// # Errors
    /// `NotFound` for a missing key.
    async fn usage(&self, key: &str) -> Result<Usage>;

    /// The mounts of the active or view snapshot `key`.
    ///
    /// # Errors
    /// `NotFound` for a missing key; `FailedPrecondition` for a committed snapshot.
    async fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Creates the active snapshot `key` on committed `parent` (`""`: empty) and returns
    /// its mounts.
    ///
    /// # Errors
    /// `AlreadyExists` when `key` exists; `NotFound` when `parent` does not;
    /// `InvalidArgument` when `parent` is not committed.
    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Creates the read-only snapshot `key` of committed `parent` and returns its mounts.
    ///
    /// # Errors
    /// As [`Snapshotter::prepare`].
    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Commits active snapshot `key` as `name` with `labels` (labels are not inherited);
    /// `key` disappears and its tree no longer changes (so neither does its usage).
    ///
    /// # Errors
    /// `AlreadyExists` when `name` exists; `NotFound` when `key` does not;
    /// `FailedPrecondition` when `key` is not active (a view or committed).
    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;

    /// Whether this backend implements [`Snapshotter::commit_rebase`], so an unpacker may
    /// apply layers in parallel, each into a parentless snapshot (in overlay upperdir
    /// form: whiteouts as 0:0 character devices, `trusted.overlay.opaque=y`), and rebase
    /// them in order. Default `false`.
    fn can_rebase(&self) -> bool {
        false
    }

    /// Commits active `key`, which was prepared with no parent, as `name` on top of the
    /// committed `parent` (containerd 2.2's *rebase*): layers can then be applied in
    /// parallel, each into its own parentless snapshot, and committed in order. `key`'s
    /// directory holds its changes in overlay upperdir form. Overlay only records the
    /// parent (each snapshot's directory holds only its own changes); native builds the
    /// complete tree (a copy of the parent's, with the changes moved in).
    ///
    /// # Errors
    /// `NotImplemented` by default; otherwise as [`Snapshotter::commit`], plus
    /// `InvalidArgument` when `parent` is not committed or `key` already has another
    /// parent.
    async fn commit_rebase(
        &self,
        name: &str,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<()> {
        let _ = (name, key, parent, labels);
        Err(Error::not_implemented(
            "this snapshotter cannot rebase (commit onto a new parent)",
        ))
    }

    /// Removes snapshot `key` (any kind).
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `FailedPrecondition` when it has children.
    async fn remove(&self, key: &str) -> Result<()>;

    /// The infos of the snapshots that match any of `filters` (fields `name`, `parent`,
    /// `kind`, `labels.<k>`), ordered by name. No filters: all.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed filter.
    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>>;

    /// Removes directories that no snapshot record owns (left by a crash or by deferred
    /// removal).
    ///
    /// # Errors
    /// `Io` when a directory cannot be removed.
    async fn cleanup(&self) -> Result<()>;

    /// Checks the records against the directories, changing nothing (an fsck): a record
    /// whose directory is missing, a directory that no record owns (which [`cleanup`]
    /// removes). Empty when all is well; the default reports nothing.
    ///
    /// [`cleanup`]: Snapshotter::cleanup
    ///
    /// # Errors
    /// `Io` when the snapshots directory cannot be read; database errors.
    async fn check(&self) -> Result<Vec<Damage>> {
        Ok(Vec::new())
    }

    /// Releases resources. Calling it twice is fine; other calls after it may fail.
    ///
    /// # Errors
    /// None in the provided backends.
    async fn close(&self) -> Result<()>;
}

/// The key an unpacker uses for the active snapshot of layer `chain_id`:
/// `extract-<unix nanos>-<random> <chainID>` (containerd's `UnpackKeyFormat`).
///
/// ```
/// let k = strata_snapshot::unpack_key("sha256:abc");
/// assert!(k.starts_with("extract-") && k.ends_with(" sha256:abc"));
/// assert_eq!(strata_snapshot::unpack_key_chain_id(&k), Some("sha256:abc"));
/// ```
pub fn unpack_key(chain_id: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let rand: u32 = rand::random();
    format!("extract-{nanos}-{} {chain_id}", base64ish(rand))
}

/// The chain ID of an [`unpack_key`], if `key` has that form.
pub fn unpack_key_chain_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("extract-")?;
    let (_, chain) = rest.split_once(' ')?;
    Some(chain)
}

/// A short URL-safe token (containerd uses 9 random bytes in base64; any unique token works).
fn base64ish(v: u32) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut v = v as u64 | ((rand::random::<u16>() as u64) << 32);
    (0..8)
        .map(|_| {
            let c = A[(v & 63) as usize] as char;
            v >>= 6;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_content::filters::Filter;

    #[test]
    fn kind_json_and_filters() {
        assert_eq!(serde_json::to_string(&Kind::View).unwrap(), "\"View\"");
        let k: Kind = serde_json::from_str("\"Committed\"").unwrap();
        assert_eq!(k, Kind::Committed);
        let info = Info {
            kind: Kind::Active,
            name: "a".into(),
            parent: "p".into(),
            labels: [("l".to_string(), "2".to_string())].into(),
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        };
        for (f, want) in [
            ("kind==active", true),
            ("kind==committed", false),
            ("parent==p", true),
            ("name==a,labels.l==2", true),
            ("labels.l==3", false),
            ("labels.x", false),
        ] {
            assert_eq!(Filter::parse(f).unwrap().matches(&info), want, "{f}");
        }
        let j = serde_json::to_value(&info).unwrap();
        assert_eq!(j["kind"], "Active");
        assert_eq!(j["parent"], "p");
    }

    #[test]
    fn unpack_keys_are_unique() {
        assert_ne!(unpack_key("x"), unpack_key("x"));
        assert_eq!(unpack_key_chain_id("foo"), None);
    }
}
