//! The RFC 6962 Merkle tree hash over a list of leaf hashes, and inclusion
//! proofs so a single chunk can later be checked against a root alone.
//!
//! `MTH({}) = SHA3-256()`, `MTH({d}) = leaf`, and for `n > 1` with `k` the
//! largest power of two below `n`: `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))`.
//! The bundle tree's leaves are the manifest's leaf hash followed by every
//! distinct chunk's leaf hash in stream order.

use crate::hash::{self, Hash};
use alloc::vec::Vec;

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => hash::plain(b""),
        [one] => *one,
        _ => {
            let (l, r) = leaves.split_at(split(leaves.len()));
            hash::node(&root(l), &root(r))
        }
    }
}

/// The audit path for leaf `index` (RFC 6962 section 2.1.1), or `None` if
/// `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut idx) = (0usize, leaves.len(), index);
    let mut stack = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if idx < k {
            stack.push(root(leaves.get(lo + k..hi)?));
            hi = lo + k;
        } else {
            stack.push(root(leaves.get(lo..lo + k)?));
            lo += k;
            idx -= k;
        }
    }
    while let Some(h) = stack.pop() {
        path.push(h);
    }
    Some(path)
}

/// Checks an audit path (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = hash::node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = hash::node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| hash::leaf(&[i as u8])).collect()
    }

    #[test]
    fn shape_matches_rfc6962() {
        let l = leaves(3);
        assert_eq!(root(&l), hash::node(&hash::node(&l[0], &l[1]), &l[2]));
        let l = leaves(5);
        let left = hash::node(&hash::node(&l[0], &l[1]), &hash::node(&l[2], &l[3]));
        assert_eq!(root(&l), hash::node(&left, &l[4]));
        assert_eq!(root(&l[..1]), l[0]);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_wrong_ones_do_not() {
        for n in 1..20usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, &p, &r),
                    "n={n} i={i}"
                );
                let other = hash::leaf(b"other");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &p, &r));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(!verify_inclusion(&l[i], j as u64, n as u64, &p, &r) || l[i] == l[j]);
                }
            }
            assert!(inclusion_proof(&l, n).is_none());
        }
        assert!(!verify_inclusion(&hash::leaf(b""), 0, 0, &[], &root(&[])));
    }
}
