//! strata-image: filled by a later change.
