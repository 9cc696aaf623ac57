//! The namespace of a call, from the `containerd-namespace` gRPC metadata header, as
//! containerd's `namespaces.NamespaceRequired` reads and validates it.

use strata_content::{Error, Result};
use tonic::metadata::MetadataMap;

/// The metadata header that carries the namespace (containerd's `namespaces.GRPCHeader`).
pub const HEADER: &str = "containerd-namespace";

/// The longest namespace containerd accepts.
const MAX_LEN: usize = 76;

/// The namespace named by `metadata`.
///
/// # Errors
/// `FailedPrecondition` "namespace is required" when the header is missing or empty;
/// `InvalidArgument` when it is not an identifier (letters and digits, separated by
/// single `.`, `_` or `-`, at most 76 characters).
///
/// ```
/// let mut md = tonic::metadata::MetadataMap::new();
/// assert!(strata_grpc::namespace::required(&md).unwrap_err().is_failed_precondition());
/// md.insert("containerd-namespace", "k8s.io".parse().unwrap());
/// assert_eq!(strata_grpc::namespace::required(&md).unwrap(), "k8s.io");
/// ```
pub fn required(metadata: &MetadataMap) -> Result<String> {
    let ns = metadata
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ns.is_empty() {
        return Err(Error::failed_precondition("namespace is required"));
    }
    validate(ns)?;
    Ok(ns.to_owned())
}

/// Checks that `ns` is a containerd identifier.
///
/// # Errors
/// `InvalidArgument` naming the namespace and the rule it breaks.
pub fn validate(ns: &str) -> Result<()> {
    if ns.len() > MAX_LEN {
        return Err(Error::invalid_argument(format!(
            "namespace validation: identifier {ns:?} is longer than {MAX_LEN} characters"
        )));
    }
    let parts_ok = ns
        .split(['.', '_', '-'])
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !parts_ok {
        return Err(Error::invalid_argument(format!(
            "namespace validation: identifier {ns:?} must be letters and digits separated by single '.', '_' or '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(ns: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert(HEADER, ns.parse().unwrap());
        md
    }

    #[test]
    fn missing_or_empty_header_is_required() {
        for m in [MetadataMap::new(), md("")] {
            let e = required(&m).unwrap_err();
            assert!(e.is_failed_precondition());
            assert_eq!(e.message(), "namespace is required");
        }
    }

    #[test]
    fn identifiers_are_validated() {
        for ok in ["default", "k8s.io", "a-b_c.d", "x1"] {
            assert_eq!(required(&md(ok)).unwrap(), ok);
        }
        for bad in ["-a", "a..b", "a/b", "a b", &"x".repeat(77)] {
            assert!(
                required(&md(bad)).unwrap_err().is_invalid_argument(),
                "{bad}"
            );
        }
    }
}
