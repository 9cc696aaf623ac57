//! Layer identity: DiffIDs and ChainIDs, after image-spec's `identity` package.
//!
//! A layer's DiffID is the digest of its uncompressed tar. The ChainID of a stack of
//! layers names the filesystem they produce together, and is what snapshots are named:
//! `ChainID(L0) = DiffID(L0)`, `ChainID(L0…Ln) = sha256(ChainID(L0…Ln-1) + " " + DiffID(Ln))`.
//!
//! ```
//! use strata_image::identity::{chain_id, chain_ids};
//! use strata_content::digest::sha256;
//! let (a, b) = (sha256(b"a"), sha256(b"b"));
//! let ids = chain_ids(&[a.clone(), b.clone()]);
//! assert_eq!(ids[0], a);
//! assert_eq!(chain_id(&[a, b]), Some(ids[1].clone()));
//! ```

use strata_content::Digest;
use strata_content::digest::sha256;

/// The ChainIDs of every prefix of `diff_ids`: element `i` is the ChainID of layers
/// `0..=i`. Empty in, empty out.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => sha256(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The ChainID of the whole stack (`None` for no layers).
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    chain_ids(diff_ids).pop()
}

/// The ChainID of `parent` (a ChainID, or `None` for the bottom layer) plus `diff_id`.
pub fn chain_id_step(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => sha256(format!("{p} {diff_id}").as_bytes()),
    }
}

/// [`chain_ids`] over digest strings, without validating them (image-spec's test vectors
/// use short fake digests such as `sha256:a`).
pub fn chain_id_strings<S: AsRef<str>>(diff_ids: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.as_ref().to_string(),
            Some(parent) => sha256(format!("{parent} {}", d.as_ref()).as_bytes()).to_string(),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // image-spec identity/chainid_test.go TestChainID.
    #[test]
    fn image_spec_vectors() {
        let none: Vec<String> = chain_id_strings::<&str>(&[]);
        assert!(none.is_empty());
        assert_eq!(chain_id_strings(&["sha256:a"]), ["sha256:a"]);
        let ab = "sha256:970a948bffa8de94d6e22d747ba8c95030e6e546909f98f54e99a13005e173a8";
        assert_eq!(
            chain_id_strings(&["sha256:a", "sha256:b"]),
            ["sha256:a", ab]
        );
        let abc = "sha256:dee159b33409cefa3f6eda71539f006014283e9d9130c18a1dea7bd8a33c9b1b";
        assert_eq!(
            chain_id_strings(&["sha256:a", "sha256:b", "sha256:c"]),
            ["sha256:a", ab, abc]
        );
    }

    #[test]
    fn digests_agree_with_strings() {
        let ds: Vec<Digest> = [b"x".as_slice(), b"y", b"z"]
            .iter()
            .map(|b| sha256(b))
            .collect();
        let strs: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
        let ids = chain_ids(&ds);
        let sids = chain_id_strings(&strs);
        assert_eq!(ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(), sids);
        assert_eq!(ids[0], ds[0]);
        assert_eq!(chain_id(&ds), ids.last().cloned());
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id_step(None, &ds[0]), ids[0]);
        assert_eq!(chain_id_step(Some(&ids[1]), &ds[2]), ids[2]);
        // Order matters.
        assert_ne!(
            chain_id(&[ds[1].clone(), ds[0].clone()]),
            chain_id(&ds[..2])
        );
    }
}
