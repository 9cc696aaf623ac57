//! Well-known label keys and label validation.
//!
//! Labels are `BTreeMap<String, String>` so listings and JSON output are deterministic.

use crate::{Error, Result};
use std::collections::BTreeMap;

/// A set of labels.
pub type Labels = BTreeMap<String, String>;

/// Any value: the object is a garbage-collection root.
pub const GC_ROOT: &str = "containerd.io/gc.root";
/// Prefix of content references: `containerd.io/gc.ref.content[.<name>|/<name>]=<digest>`.
pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix of snapshot references: `containerd.io/gc.ref.snapshot.<snapshotter>[/<name>]=<key>`.
pub const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// RFC 3339 expiry of a lease (or image): once past, the object is no longer a root.
pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// On a lease: keep its objects but do not follow their references.
pub const GC_FLAT: &str = "containerd.io/gc.flat";
/// On a layer blob: the DiffID (digest of the uncompressed layer).
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Prefix of `containerd.io/distribution.source.<host>=<repo,...>` labels on fetched blobs.
pub const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source.";

/// The most bytes a label key plus its value may take, as in containerd.
pub const MAX_LABEL_SIZE: usize = 4096;

/// Checks every label: a non-empty key, and key + value at most [`MAX_LABEL_SIZE`] bytes.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the key.
///
/// ```
/// use strata_content::labels::{validate, Labels};
/// let mut l = Labels::new();
/// l.insert("k".into(), "v".into());
/// assert!(validate(&l).is_ok());
/// l.insert("big".into(), "x".repeat(4094));
/// assert!(validate(&l).unwrap_err().is_invalid_argument());
/// ```
pub fn validate(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        validate_one(k, v)?;
    }
    Ok(())
}

/// Checks one label as [`validate`] does.
///
/// # Errors
/// As [`validate`].
pub fn validate_one(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument("label key is empty"));
    }
    if key.len() + value.len() > MAX_LABEL_SIZE {
        let shown: String = key.chars().take(64).collect();
        return Err(Error::invalid_argument(format!(
            "label key and value of {shown:?} are {} bytes, more than {MAX_LABEL_SIZE}",
            key.len() + value.len()
        )));
    }
    Ok(())
}
