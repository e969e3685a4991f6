//! The board key's fingerprint: `SHA256:` and the standard base64 (with
//! padding) of the SHA-256 of the key's DER `SubjectPublicKeyInfo`.
//!
//! Hashing the SPKI rather than the raw 32 bytes (ssh hashes its own key
//! blob) makes the same base64 a curl pin: `curl --pinnedpubkey
//! sha256//<base64>`. An Ed25519 SPKI is a fixed 12-byte prefix and the
//! raw key, so it is exactly as strong.

use base64::Engine;
use core::fmt;
use sha2::{Digest, Sha256};

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410), before the
/// 32 key bytes.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER `SubjectPublicKeyInfo` of an Ed25519 public key.
pub fn ed25519_spki(public: &[u8; 32]) -> [u8; 44] {
    let mut out = [0u8; 44];
    let (head, tail) = out.split_at_mut(ED25519_SPKI_PREFIX.len());
    head.copy_from_slice(&ED25519_SPKI_PREFIX);
    tail.copy_from_slice(public);
    out
}

/// The raw key of an Ed25519 SPKI, `None` for any other key type.
pub fn ed25519_from_spki(spki: &[u8]) -> Option<[u8; 32]> {
    let key = spki.strip_prefix(ED25519_SPKI_PREFIX.as_slice())?;
    key.try_into().ok()
}

/// SHA-256 of a DER `SubjectPublicKeyInfo`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// A fingerprint that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("board key fingerprint must be SHA256:<base64 of 32 bytes> (as `quiltd identity` prints) or sha256//<base64>")]
pub struct BadFingerprint;

impl Fingerprint {
    /// Of any SPKI (what a client sees in the certificate).
    pub fn of_spki(spki: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki).into())
    }

    /// Of an Ed25519 public key.
    pub fn of_ed25519(public: &[u8; 32]) -> Fingerprint {
        Fingerprint::of_spki(&ed25519_spki(public))
    }

    /// The base64 alone, as curl's `--pinnedpubkey sha256//…` wants it.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses `SHA256:<b64>` or curl's `sha256//<b64>`.
    pub fn parse(s: &str) -> Result<Fingerprint, BadFingerprint> {
        let b64 = s
            .trim()
            .strip_prefix("SHA256:")
            .or_else(|| s.trim().strip_prefix("sha256//"))
            .ok_or(BadFingerprint)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| BadFingerprint)?;
        Ok(Fingerprint(bytes.try_into().map_err(|_| BadFingerprint)?))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", self.base64())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_forms_and_refuses_others() {
        let fp = Fingerprint::of_ed25519(&[7; 32]);
        let s = fp.to_string();
        assert!(s.starts_with("SHA256:") && s.ends_with('='));
        assert_eq!(Fingerprint::parse(&s), Ok(fp));
        assert_eq!(
            Fingerprint::parse(&format!("sha256//{}", fp.base64())),
            Ok(fp)
        );
        assert_eq!(Fingerprint::parse("SHA256:AAAA"), Err(BadFingerprint));
        assert_eq!(Fingerprint::parse(&fp.base64()), Err(BadFingerprint));
    }

    #[test]
    fn spki_round_trips_and_only_ed25519_is_taken() {
        let spki = ed25519_spki(&[9; 32]);
        assert_eq!(ed25519_from_spki(&spki), Some([9; 32]));
        let mut other = spki;
        other[8] = 0x71; // Ed448's OID ends in 0x71
        assert_eq!(ed25519_from_spki(&other), None);
        assert_eq!(ed25519_from_spki(&spki[..43]), None);
    }

    /// RFC 8410's example public key and the SPKI it gives there.
    #[test]
    fn matches_rfc_8410_spki() {
        let spki = base64::engine::general_purpose::STANDARD
            .decode("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=")
            .unwrap();
        let key: [u8; 32] = spki[12..].try_into().unwrap();
        assert_eq!(ed25519_spki(&key).as_slice(), spki.as_slice());
    }
}
