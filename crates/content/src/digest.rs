//! Digests: parsing, computing and streaming sha256.
//!
//! strata uses oci-spec's [`Digest`] (strict: lowercase hex of the right length, safe as a
//! file name). [`Digester`] hashes a stream incrementally; [`sha256`] hashes a buffer.
//!
//! ```
//! use strata_content::digest::{sha256, Digester};
//! let d = sha256(b"hello");
//! assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
//! let mut s = Digester::new();
//! s.update(b"hel");
//! s.update(b"lo");
//! assert_eq!(s.digest(), d);
//! ```

pub use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::Digest as _;

use crate::{Error, Result};

/// The sha256 digest of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    let mut d = Digester::new();
    d.update(data);
    d.digest()
}

/// Parses a digest string (`sha256:<64 hex>`).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the input.
pub fn parse(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| Error::invalid_argument(format!("invalid digest {s:?}")).with_source(e))
}

/// Checks that `d` uses an algorithm strata can verify (sha256).
///
/// # Errors
/// [`ErrorKind::NotImplemented`](crate::ErrorKind::NotImplemented) for other algorithms.
pub fn require_sha256(d: &Digest) -> Result<()> {
    match d.algorithm() {
        DigestAlgorithm::Sha256 => Ok(()),
        other => Err(Error::not_implemented(format!(
            "digest algorithm {other} of {d}"
        ))),
    }
}

/// An incremental sha256 hasher producing a [`Digest`]. Cloning it snapshots the state.
#[derive(Clone, Default)]
pub struct Digester {
    inner: sha2::Sha256,
}

impl Digester {
    /// A hasher over no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The digest of the bytes fed so far (the hasher keeps going).
    pub fn digest(&self) -> Digest {
        from_hex(&hex::encode(self.inner.clone().finalize()))
    }
}

/// Builds a sha256 [`Digest`] from 64 lowercase hex characters.
///
/// # Panics
/// If `hex` is not 64 lowercase hex characters (callers pass hasher output).
pub fn from_hex(hex: &str) -> Digest {
    format!("sha256:{hex}")
        .parse()
        .expect("sha256 hex is a valid digest")
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digester({})", self.digest())
    }
}
