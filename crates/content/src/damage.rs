//! [`Damage`]: what a consistency check (`strata check`, a store's `check`) found wrong.

use std::fmt;

/// One thing a consistency check found wrong: what kind of object, which one, and what
/// is wrong with it.
///
/// ```
/// let d = strata_content::Damage::new("blob", "sha256:ab…", "3 bytes on disk, 5 recorded");
/// assert_eq!(d.to_string(), "blob sha256:ab…: 3 bytes on disk, 5 recorded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Damage {
    /// The kind of object: `blob`, `ingest`, `snapshot`, `directory`, `image`, `label` …
    pub kind: String,
    /// Which one: a digest, a key, a name, a path.
    pub id: String,
    /// What is wrong.
    pub problem: String,
}

impl Damage {
    /// A finding about the `kind` object `id`.
    pub fn new(kind: impl Into<String>, id: impl Into<String>, problem: impl Into<String>) -> Self {
        Damage {
            kind: kind.into(),
            id: id.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.id, self.problem)
    }
}
