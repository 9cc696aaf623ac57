//! Serde helpers: `SystemTime` as an RFC 3339 string with nanoseconds (as containerd prints).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::SystemTime;

/// Serializes `t` as RFC 3339 UTC with nanoseconds.
///
/// # Errors
/// The serializer's error.
pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_nanos(*t).to_string())
}

/// Parses an RFC 3339 timestamp.
///
/// # Errors
/// A serde error naming the bad timestamp.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_rfc3339(&s)
        .map_err(|e| serde::de::Error::custom(format!("bad timestamp {s:?}: {e}")))
}

/// `t` as RFC 3339 UTC with whole seconds, for listings (`2026-11-25T01:02:03Z`).
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
