//! ed25519 keys and signatures (via `ed25519-compact`), their text files, and
//! the domain tags that keep a signature for one kind of document from being
//! replayed as a signature for another.

use crate::error::Error;
use crate::hex;
use alloc::string::String;
#[cfg(feature = "crypto")]
use alloc::vec::Vec;
use core::fmt;

/// Domain tag prefixed to a bundle header before signing.
pub const DOMAIN_BUNDLE: &[u8] = b"quilt/bundle-header/v1\0";
/// Domain tag prefixed to a trust-update document before signing.
pub const DOMAIN_TRUST: &[u8] = b"quilt/trust-update/v1\0";
/// Domain tag prefixed to a downgrade permit before signing.
pub const DOMAIN_PERMIT: &[u8] = b"quilt/downgrade-permit/v1\0";

/// First line word of a public key file.
pub const PUBLIC_TAG: &str = "quilt-ed25519-public";
/// First line word of a secret key file.
pub const SECRET_TAG: &str = "quilt-ed25519-secret";

/// A raw ed25519 public key.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PublicKey(pub [u8; 32]);

#[cfg(feature = "crypto")]
/// An ed25519 secret key seed (the public key is derived from it).
#[derive(Clone)]
pub struct SecretKey {
    seed: [u8; 32],
}

#[cfg(feature = "crypto")]
impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// How a key is named in messages: the first 8 bytes of the public key in hex.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

impl PublicKey {
    /// The short id used in messages and file names.
    pub fn id(&self) -> KeyId {
        let mut id = [0u8; 8];
        for (o, b) in id.iter_mut().zip(self.0.iter()) {
            *o = *b;
        }
        KeyId(id)
    }

    /// Full lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The text of a `.pub` file.
    pub fn to_file(&self) -> String {
        let mut s = String::from(PUBLIC_TAG);
        s.push(' ');
        s.push_str(&self.to_hex());
        s.push('\n');
        s
    }

    /// Parses a `.pub` file: `quilt-ed25519-public <64 hex>`; `#` lines ignored.
    pub fn from_file(text: &str) -> Result<Self, Error> {
        let hex = key_line(text, PUBLIC_TAG)?;
        let raw = hex::decode_array::<32>(hex).ok_or(Error::BadKeyFile {
            reason: "does not hold 64 hex digits after the tag",
        })?;
        Ok(PublicKey(raw))
    }
}

#[cfg(feature = "crypto")]
impl SecretKey {
    /// A key from a 32-byte seed (the caller supplies randomness).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey { seed }
    }

    fn pair(&self) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(self.seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.pair().pk)
    }

    /// Signs `domain || body` deterministically (RFC 8032).
    pub fn sign(&self, domain: &[u8], body: &[u8]) -> SignatureEntry {
        let mut msg = Vec::with_capacity(domain.len() + body.len());
        msg.extend_from_slice(domain);
        msg.extend_from_slice(body);
        let kp = self.pair();
        SignatureEntry {
            key: PublicKey(*kp.pk),
            sig: *kp.sk.sign(&msg, None),
        }
    }

    /// The text of a `.key` file.
    pub fn to_file(&self) -> String {
        let mut s = String::from("# quilt ed25519 secret key: keep it 0600 and off shared disks\n");
        s.push_str(SECRET_TAG);
        s.push(' ');
        s.push_str(&hex::encode(&self.seed));
        s.push('\n');
        s
    }

    /// Parses a `.key` file: `quilt-ed25519-secret <64 hex seed>`.
    pub fn from_file(text: &str) -> Result<Self, Error> {
        let hex = key_line(text, SECRET_TAG)?;
        let seed = hex::decode_array::<32>(hex).ok_or(Error::BadKeyFile {
            reason: "does not hold 64 hex digits after the tag",
        })?;
        Ok(SecretKey { seed })
    }
}

fn key_line<'a>(text: &'a str, tag: &str) -> Result<&'a str, Error> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(Error::BadKeyFile { reason: "is empty" })?;
    let mut words = line.split_whitespace();
    if words.next() != Some(tag) {
        return Err(Error::BadKeyFile {
            reason:
                "does not start with the expected tag (is it a .pub given as .key, or the reverse?)",
        });
    }
    let hex = words.next().ok_or(Error::BadKeyFile {
        reason: "has a tag but no key",
    })?;
    if words.next().is_some() {
        return Err(Error::BadKeyFile {
            reason: "has extra words after the key",
        });
    }
    Ok(hex)
}

/// One signature as carried in an envelope: 32-byte key, 64-byte signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SignatureEntry {
    pub key: PublicKey,
    pub sig: [u8; 64],
}

/// Size of a [`SignatureEntry`] on the wire.
pub const SIGNATURE_ENTRY_LEN: usize = 96;

#[cfg(feature = "crypto")]
/// Verifies an ed25519 signature over `domain || body`. Every signature goes
/// through here, including the Wycheproof vectors (with an empty domain).
pub fn verify_raw(key: &[u8], domain: &[u8], body: &[u8], sig: &[u8]) -> bool {
    let Ok(pk) = ed25519_compact::PublicKey::from_slice(key) else {
        return false;
    };
    let Ok(sig) = ed25519_compact::Signature::from_slice(sig) else {
        return false;
    };
    let mut msg = Vec::with_capacity(domain.len() + body.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(body);
    pk.verify(&msg, &sig).is_ok()
}

/// Checks every signature (each must verify under the key it carries, and no
/// key may sign twice) and returns the signing keys.
#[cfg(feature = "crypto")]
pub fn verify_all(
    domain: &[u8],
    body: &[u8],
    sigs: &[SignatureEntry],
) -> Result<Vec<PublicKey>, Error> {
    let mut keys: Vec<PublicKey> = Vec::with_capacity(sigs.len());
    for (index, s) in sigs.iter().enumerate() {
        if keys.contains(&s.key) {
            return Err(Error::DuplicateSigner { key: s.key.id() });
        }
        if !verify_raw(&s.key.0, domain, body, &s.sig) {
            return Err(Error::BadSignature {
                index,
                key: s.key.id(),
            });
        }
        keys.push(s.key);
    }
    Ok(keys)
}

#[cfg(all(test, feature = "crypto"))]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_are_not_interchangeable() {
        let sk = SecretKey::from_seed([7; 32]);
        let pk = sk.public();
        assert_eq!(SecretKey::from_file(&sk.to_file()).unwrap().public(), pk);
        assert_eq!(PublicKey::from_file(&pk.to_file()).unwrap(), pk);
        assert!(matches!(
            PublicKey::from_file(&sk.to_file()),
            Err(Error::BadKeyFile { .. })
        ));
        assert!(matches!(
            SecretKey::from_file(&pk.to_file()),
            Err(Error::BadKeyFile { .. })
        ));
        assert!(PublicKey::from_file("quilt-ed25519-public abcd").is_err());
    }

    #[test]
    fn domain_separation_blocks_cross_document_replay() {
        let sk = SecretKey::from_seed([9; 32]);
        let s = sk.sign(DOMAIN_TRUST, b"body");
        assert!(verify_raw(&s.key.0, DOMAIN_TRUST, b"body", &s.sig));
        assert!(!verify_raw(&s.key.0, DOMAIN_BUNDLE, b"body", &s.sig));
        assert!(!verify_raw(&s.key.0, DOMAIN_PERMIT, b"body", &s.sig));
    }

    #[test]
    fn duplicate_signer_is_refused() {
        let sk = SecretKey::from_seed([1; 32]);
        let s = sk.sign(DOMAIN_BUNDLE, b"h");
        assert!(matches!(
            verify_all(DOMAIN_BUNDLE, b"h", &[s, s]),
            Err(Error::DuplicateSigner { .. })
        ));
        assert_eq!(
            verify_all(DOMAIN_BUNDLE, b"h", &[s]).unwrap(),
            [sk.public()]
        );
    }
}
