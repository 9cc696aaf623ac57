//! [`Damage`]: what a consistency check (`strata check`, a store's `check`) found wrong.

use std::fmt;

/// One thing a consistency check found wrong: the object, and what is wrong with it.
///
/// ```
/// let d = strata_content::Damage::new("blob sha256:ab…", "size 3 on disk, 5 recorded");
/// assert_eq!(d.to_string(), "blob sha256:ab…: size 3 on disk, 5 recorded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Damage {
    /// The object, e.g. `blob sha256:…`, `snapshot <key> (overlay)`, `image <name>`.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

impl Damage {
    /// A finding about `object`.
    pub fn new(object: impl Into<String>, problem: impl Into<String>) -> Self {
        Damage {
            object: object.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}
