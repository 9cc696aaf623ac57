//! One error type for all of strata, carrying a containerd-style kind.
//!
//! Every crate of the workspace returns [`Error`]. Callers branch on the kind
//! ([`Error::kind`] or the `is_*` helpers), never on the message. Messages say what
//! failed and name the digest, ref, key or path involved.

use std::fmt;

/// The class of an [`Error`], mirroring containerd's `errdefs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object (blob, ingest, snapshot, image, lease …) does not exist.
    NotFound,
    /// The object already exists; for content, the data is already committed.
    AlreadyExists,
    /// The resource is busy (for example an ingest ref locked by another writer); retry later.
    Unavailable,
    /// The system is not in a state that allows the operation (size or digest mismatch,
    /// removing a snapshot with children, committing a view …).
    FailedPrecondition,
    /// The caller passed something malformed (bad ref, digest, filter, field path, archive …).
    InvalidArgument,
    /// The operation or media type is not supported.
    NotImplemented,
    /// The operation was cancelled or a deadline passed.
    Cancelled,
    /// An I/O error from the operating system.
    Io,
    /// A bug or an unexpected state (database corruption, a broken invariant).
    Internal,
}

impl ErrorKind {
    /// A short lowercase name, as containerd prints it (`not found`, `already exists` …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotImplemented => "not implemented",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Io => "i/o error",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// strata's error: a [`ErrorKind`], a message naming the object involved, and an optional cause.
///
/// ```
/// use strata_content::{Error, ErrorKind};
/// let err = Error::not_found("blob sha256:abc");
/// assert!(err.is_not_found());
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_eq!(err.to_string(), "blob sha256:abc: not found");
/// ```
#[derive(thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result<T, strata_content::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message` (which should name the object involved).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with more context, keeping the kind and the cause.
    ///
    /// ```
    /// use strata_content::Error;
    /// let e = Error::not_found("blob sha256:abc").context("unpack layer 2");
    /// assert_eq!(e.to_string(), "unpack layer 2: blob sha256:abc: not found");
    /// assert!(e.is_not_found());
    /// ```
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind suffix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An I/O error with a message naming what was being done and where.
    pub fn io(message: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            _ => ErrorKind::Io,
        };
        Error::new(kind, message).with_source(err)
    }

    /// An error from the SQLite metadata database.
    pub fn db(message: impl Into<String>, err: rusqlite::Error) -> Self {
        let kind = match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ErrorKind::Unavailable
            }
            rusqlite::Error::QueryReturnedNoRows => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, message).with_source(err)
    }
}

macro_rules! constructors {
    ($($ctor:ident, $is:ident => $kind:ident;)*) => {
        impl Error {
            $(
                #[doc = concat!("An error of kind [`ErrorKind::", stringify!($kind), "`].")]
                pub fn $ctor(message: impl Into<String>) -> Self {
                    Error::new(ErrorKind::$kind, message)
                }
                #[doc = concat!("Whether the kind is [`ErrorKind::", stringify!($kind), "`].")]
                pub fn $is(&self) -> bool {
                    self.kind == ErrorKind::$kind
                }
            )*
        }
    };
}

constructors! {
    not_found, is_not_found => NotFound;
    already_exists, is_already_exists => AlreadyExists;
    unavailable, is_unavailable => Unavailable;
    failed_precondition, is_failed_precondition => FailedPrecondition;
    invalid_argument, is_invalid_argument => InvalidArgument;
    not_implemented, is_not_implemented => NotImplemented;
    cancelled, is_cancelled => Cancelled;
    internal, is_internal => Internal;
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.kind)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::NotFound => std::io::ErrorKind::NotFound,
            ErrorKind::AlreadyExists => std::io::ErrorKind::AlreadyExists,
            ErrorKind::InvalidArgument => std::io::ErrorKind::InvalidInput,
            ErrorKind::Unavailable => std::io::ErrorKind::WouldBlock,
            ErrorKind::NotImplemented => std::io::ErrorKind::Unsupported,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_object_kind_and_cause() {
        let io = std::io::Error::from_raw_os_error(libc_enospc());
        let e = Error::io("write ingest ref layer-1", io);
        assert_eq!(e.kind(), ErrorKind::Io);
        let s = e.to_string();
        assert!(
            s.starts_with("write ingest ref layer-1: i/o error: "),
            "{s}"
        );
    }

    #[test]
    fn io_not_found_maps_to_not_found() {
        let e = Error::io(
            "open blob",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(e.is_not_found());
        assert!(!e.is_already_exists());
    }

    #[test]
    fn round_trips_through_io_error() {
        let e: std::io::Error = Error::unavailable("ref x locked").into();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let inner = e.get_ref().unwrap().downcast_ref::<Error>().unwrap();
        assert!(inner.is_unavailable());
    }

    fn libc_enospc() -> i32 {
        28
    }
}
