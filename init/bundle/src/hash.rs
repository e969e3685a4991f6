//! SHA3-256 with RFC 6962 domain separation.
//!
//! A leaf is `SHA3-256(0x00 || data)` and an inner node is
//! `SHA3-256(0x01 || left || right)`, so no leaf can be passed off as a node
//! (second-preimage attacks on the tree). A chunk's name in the store is its
//! leaf hash.
//!
//! This module is the one place that picks the SHA3-256 implementation. With
//! the default `fast-hash` feature it is `keccak-asm`, OpenSSL's own
//! CRYPTOGAMS Keccak assembly behind the `digest` traits (verifying a bundle
//! is almost all hashing, and the portable Rust permutation runs at ~0.86x
//! of `openssl dgst -sha3-256`); without it, the pure-Rust `sha3` crate.
//! Both are FIPS 202 SHA3-256, so digests are identical either way (the
//! tests below and `tests/vectors.rs` check it).

use core::fmt;
#[cfg(feature = "fast-hash")]
use keccak_asm::{Digest as _, Sha3_256};
use serde::{Deserialize, Serialize};
#[cfg(all(feature = "crypto", not(feature = "fast-hash")))]
use sha3::{Digest as _, Sha3_256};

#[cfg(feature = "crypto")]
/// Which SHA3-256 implementation this build hashes with (for benchmarks and
/// `--version`-style reports).
pub const BACKEND: &str = if cfg!(feature = "fast-hash") {
    "keccak-asm"
} else {
    "sha3 (portable Rust)"
};

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

#[cfg(feature = "crypto")]
/// The leaf hash of `data`: a chunk's content address.
pub fn leaf(data: &[u8]) -> Hash {
    let mut h = Sha3_256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    Hash(h.finalize().into())
}

#[cfg(feature = "crypto")]
/// The hash of an inner node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha3_256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

#[cfg(feature = "crypto")]
/// Plain SHA3-256, used for the empty tree (RFC 6962: `MTH({}) = H()`) and
/// by the benchmark for the raw hash rate.
pub fn plain(data: &[u8]) -> Hash {
    let mut h = Sha3_256::new();
    h.update(data);
    Hash(h.finalize().into())
}

#[cfg(all(test, feature = "crypto"))]
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

    /// The fast backend must agree with the portable `sha3` crate on every
    /// length around the 136-byte rate and the buffering paths (a one-byte
    /// prefix, then the data), not only on the fixed vectors.
    #[cfg(feature = "fast-hash")]
    #[test]
    fn fast_backend_matches_sha3_crate() {
        use sha3::Digest as _;
        let data: alloc::vec::Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lens = (0..=300).chain([407, 408, 409, 1000, 4095, 4096]);
        for len in lens {
            let d = &data[..len];
            let mut want = sha3::Sha3_256::new();
            want.update([LEAF_PREFIX]);
            want.update(d);
            assert_eq!(
                leaf(d).0,
                <[u8; 32]>::from(want.finalize()),
                "leaf, {len} bytes"
            );
            assert_eq!(
                plain(d).0,
                <[u8; 32]>::from(sha3::Sha3_256::digest(d)),
                "plain, {len} bytes"
            );
        }
    }
}
