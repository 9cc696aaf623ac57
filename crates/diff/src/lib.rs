//! strata-diff: filled by a later change.
