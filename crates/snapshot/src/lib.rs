//! strata-snapshot: filled by a later change.
