//! SHA3-256 with RFC 6962 domain separation.
//!
//! A leaf is `SHA3-256(0x00 || data)` and an inner node is
//! `SHA3-256(0x01 || left || right)`, so no leaf can be passed off as a node
//! (second-preimage attacks on the tree). A chunk's name in the store is its
//! leaf hash.

use core::fmt;
use serde::{Deserialize, Serialize};
use sha3::{Digest as _, Sha3_256};

/// Domain byte for leaves.
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain byte for inner nodes.
pub const NODE_PREFIX: u8 = 0x01;

/// A SHA3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The first 8 bytes in hex and an ellipsis, for messages.
    pub fn short(&self) -> Short<'_> {
        Short(&self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Shortened hex form (16 hex digits and `…`).
pub struct Short<'a>(&'a [u8]);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// The leaf hash of `data`: a chunk's content address.
pub fn leaf(data: &[u8]) -> Hash {
    let mut h = Sha3_256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an inner node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha3_256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Plain SHA3-256, used only for the empty tree (RFC 6962: `MTH({}) = H()`).
pub fn plain(data: &[u8]) -> Hash {
    Hash(Sha3_256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn empty_sha3_matches_fips202() {
        assert_eq!(
            format!("{}", plain(b"")),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        let a = leaf(b"x");
        let b = leaf(b"y");
        let mut concat = [0u8; 64];
        concat[..32].copy_from_slice(&a.0);
        concat[32..].copy_from_slice(&b.0);
        // A leaf over the bytes of two children must not equal their parent.
        assert_ne!(leaf(&concat), node(&a, &b));
        assert_ne!(leaf(b""), plain(b""));
    }
}
