//! strata's [`Error`] to and from gRPC [`Status`], as containerd's `errdefs.ToGRPC` and
//! `errdefs.FromGRPC` do it, so that containerd's clients map a code back to the same kind.
//!
//! | [`ErrorKind`] | gRPC code |
//! |---|---|
//! | `InvalidArgument` | `InvalidArgument` |
//! | `NotFound` | `NotFound` |
//! | `AlreadyExists` | `AlreadyExists` |
//! | `FailedPrecondition` | `FailedPrecondition` |
//! | `Unavailable` | `Unavailable` |
//! | `NotImplemented` | `Unimplemented` |
//! | `Cancelled` | `Canceled` |
//! | `Io`, `Internal` | `Unknown` |
//!
//! The status message is the error's text ending in the kind's name (`blob sha256:…: not
//! found`), which is what containerd sends and what `FromGRPC` strips again.

use strata_content::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code containerd's `errdefs.ToGRPC` gives an error of `kind`.
///
/// ```
/// use strata_content::ErrorKind;
/// use tonic::Code;
/// assert_eq!(strata_grpc::errors::code_of(ErrorKind::NotImplemented), Code::Unimplemented);
/// assert_eq!(strata_grpc::errors::code_of(ErrorKind::Io), Code::Unknown);
/// ```
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::NotImplemented => Code::Unimplemented,
        ErrorKind::Cancelled => Code::Cancelled,
        _ => Code::Unknown,
    }
}

/// The kind containerd's `errdefs.FromGRPC` gives a status `code` (`Unknown` and codes
/// containerd does not classify become [`ErrorKind::Internal`]).
pub fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument => ErrorKind::InvalidArgument,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::Unimplemented => ErrorKind::NotImplemented,
        Code::Cancelled | Code::DeadlineExceeded => ErrorKind::Cancelled,
        _ => ErrorKind::Internal,
    }
}

/// `err` as a gRPC status (containerd's `ToGRPC`): the code of its kind and its full text
/// (message, cause, kind) as the status message.
///
/// ```
/// use strata_content::Error;
/// let st = strata_grpc::to_status(Error::not_found("snapshot \"k\""));
/// assert_eq!(st.code(), tonic::Code::NotFound);
/// assert_eq!(st.message(), "snapshot \"k\": not found");
/// ```
pub fn to_status(err: Error) -> Status {
    let code = code_of(err.kind());
    let text = match std::error::Error::source(&err) {
        Some(cause) => format!("{} ({cause}): {}", err.message(), err.kind()),
        None => format!("{}: {}", err.message(), err.kind()),
    };
    Status::new(code, text)
}

/// A gRPC status as strata's error (containerd's `FromGRPC`): the kind of its code, and its
/// message without the kind's name that [`to_status`] appended.
///
/// ```
/// use tonic::{Code, Status};
/// let e = strata_grpc::from_status(&Status::new(Code::AlreadyExists, "snapshot \"k\": already exists"));
/// assert!(e.is_already_exists());
/// assert_eq!(e.message(), "snapshot \"k\"");
/// ```
pub fn from_status(status: &Status) -> Error {
    let kind = kind_of(status.code());
    let msg = status.message();
    let suffix = format!(": {kind}");
    let msg = msg.strip_suffix(suffix.as_str()).unwrap_or(msg);
    Error::new(kind, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [(ErrorKind, Code); 9] = [
        (ErrorKind::InvalidArgument, Code::InvalidArgument),
        (ErrorKind::NotFound, Code::NotFound),
        (ErrorKind::AlreadyExists, Code::AlreadyExists),
        (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
        (ErrorKind::Unavailable, Code::Unavailable),
        (ErrorKind::NotImplemented, Code::Unimplemented),
        (ErrorKind::Cancelled, Code::Cancelled),
        (ErrorKind::Io, Code::Unknown),
        (ErrorKind::Internal, Code::Unknown),
    ];

    #[test]
    fn every_kind_maps_to_containerds_code() {
        for (kind, code) in KINDS {
            let st = to_status(Error::new(kind, "blob sha256:ab"));
            assert_eq!(st.code(), code, "{kind:?}");
            assert_eq!(st.message(), format!("blob sha256:ab: {kind}"));
        }
    }

    #[test]
    fn classified_kinds_round_trip_with_their_message() {
        for (kind, _) in &KINDS[..7] {
            let back = from_status(&to_status(Error::new(*kind, "ingest ref r1")));
            assert_eq!(back.kind(), *kind);
            assert_eq!(back.message(), "ingest ref r1");
        }
    }

    #[test]
    fn cause_is_kept_in_the_message() {
        let io = std::io::Error::other("disk on fire");
        let st = to_status(Error::internal("write blob").with_source(io));
        assert_eq!(st.message(), "write blob (disk on fire): internal error");
    }

    #[test]
    fn unclassified_codes_become_internal_and_deadline_cancelled() {
        assert_eq!(kind_of(Code::DataLoss), ErrorKind::Internal);
        assert_eq!(kind_of(Code::OutOfRange), ErrorKind::Internal);
        assert_eq!(kind_of(Code::DeadlineExceeded), ErrorKind::Cancelled);
        let e = from_status(&Status::new(Code::Unknown, "boom"));
        assert_eq!(e.message(), "boom");
    }
}
