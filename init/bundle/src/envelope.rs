//! The signed envelope shared by bundles, trust updates and downgrade permits:
//!
//! ```text
//! magic      8 bytes   (QUILTQB1 | QUILTTU1 | QUILTDP1)
//! body_len   u32 LE    (1 ..= MAX_HEADER)
//! body       body_len bytes, postcard; this is what is signed
//! sig_count  u8        (0 ..= MAX_SIGNATURES)
//! sigs       sig_count × (public key 32 bytes || ed25519 signature 64 bytes)
//! ```
//!
//! Signatures sit outside the body so signers can add theirs one at a time
//! without changing what the others signed.

use crate::error::Error;
use crate::sig::{PublicKey, SignatureEntry, SIGNATURE_ENTRY_LEN};
use crate::{MAX_HEADER, MAX_SIGNATURES};
use alloc::vec::Vec;

/// Magic of a `.qb` bundle.
pub const MAGIC_BUNDLE: [u8; 8] = *b"QUILTQB1";
/// Magic of a trust-update document.
pub const MAGIC_TRUST: [u8; 8] = *b"QUILTTU1";
/// Magic of a downgrade permit.
pub const MAGIC_PERMIT: [u8; 8] = *b"QUILTDP1";

/// A decoded envelope: the signed body and the signatures over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub body: Vec<u8>,
    pub sigs: Vec<SignatureEntry>,
}

impl Envelope {
    /// The encoded length of this envelope.
    pub fn encoded_len(&self) -> usize {
        8 + 4 + self.body.len() + 1 + self.sigs.len() * SIGNATURE_ENTRY_LEN
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, magic: &[u8; 8], out: &mut Vec<u8>) -> Result<(), Error> {
        let body_len = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        if body_len == 0 || body_len > MAX_HEADER {
            return Err(Error::TooLarge {
                what: "header",
                size: self.body.len() as u64,
                max: u64::from(MAX_HEADER),
            });
        }
        let count = u8::try_from(self.sigs.len()).unwrap_or(u8::MAX);
        if count > MAX_SIGNATURES {
            return Err(Error::TooManySignatures { count });
        }
        out.extend_from_slice(magic);
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&self.body);
        out.push(count);
        for s in &self.sigs {
            out.extend_from_slice(&s.key.0);
            out.extend_from_slice(&s.sig);
        }
        Ok(())
    }

    /// Parses an envelope at the start of `bytes`, returning it and the rest.
    pub fn parse<'a>(
        magic: &[u8; 8],
        what: &'static str,
        bytes: &'a [u8],
    ) -> Result<(Envelope, &'a [u8]), Error> {
        let mut cur = Cursor { bytes, offset: 0 };
        let m: [u8; 8] = cur.array(what)?;
        if &m != magic {
            return Err(Error::BadMagic { what });
        }
        let body_len = u32::from_le_bytes(cur.array(what)?);
        check_body_len(body_len)?;
        let body = cur.take(body_len as usize, what)?.to_vec();
        let [count] = cur.array::<1>(what)?;
        check_sig_count(count)?;
        let mut sigs = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let raw: [u8; SIGNATURE_ENTRY_LEN] = cur.array(what)?;
            sigs.push(entry_from_bytes(&raw));
        }
        Ok((Envelope { body, sigs }, cur.bytes))
    }

    /// Parses an envelope that must fill `bytes` exactly.
    pub fn parse_exact(magic: &[u8; 8], what: &'static str, bytes: &[u8]) -> Result<Self, Error> {
        let (env, rest) = Self::parse(magic, what, bytes)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes {
                offset: (bytes.len() - rest.len()) as u64,
            });
        }
        Ok(env)
    }
}

pub(crate) fn check_body_len(len: u32) -> Result<(), Error> {
    if len == 0 {
        return Err(Error::Malformed { what: "header" });
    }
    if len > MAX_HEADER {
        return Err(Error::TooLarge {
            what: "header",
            size: u64::from(len),
            max: u64::from(MAX_HEADER),
        });
    }
    Ok(())
}

pub(crate) fn check_sig_count(count: u8) -> Result<(), Error> {
    if count > MAX_SIGNATURES {
        return Err(Error::TooManySignatures { count });
    }
    Ok(())
}

pub(crate) fn entry_from_bytes(raw: &[u8; SIGNATURE_ENTRY_LEN]) -> SignatureEntry {
    let mut key = [0u8; 32];
    let mut sig = [0u8; 64];
    let (k, s) = raw.split_at(32);
    key.copy_from_slice(k);
    sig.copy_from_slice(s);
    SignatureEntry {
        key: PublicKey(key),
        sig,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    offset: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let (head, tail) = self.bytes.split_at_checked(n).ok_or(Error::Truncated {
            what,
            offset: self.offset + self.bytes.len() as u64,
        })?;
        self.bytes = tail;
        self.offset += n as u64;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::{SecretKey, DOMAIN_TRUST};
    use alloc::vec;

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let sk = SecretKey::from_seed([3; 32]);
        let env = Envelope {
            body: vec![1, 2, 3],
            sigs: vec![sk.sign(DOMAIN_TRUST, &[1, 2, 3])],
        };
        let mut out = Vec::new();
        env.encode_into(&MAGIC_TRUST, &mut out).unwrap();
        assert_eq!(out.len(), env.encoded_len());
        assert_eq!(Envelope::parse_exact(&MAGIC_TRUST, "t", &out).unwrap(), env);
        for n in 0..out.len() {
            assert!(Envelope::parse_exact(&MAGIC_TRUST, "t", &out[..n]).is_err());
        }
        assert!(matches!(
            Envelope::parse_exact(&MAGIC_BUNDLE, "t", &out),
            Err(Error::BadMagic { .. })
        ));
        out.push(0);
        assert!(matches!(
            Envelope::parse_exact(&MAGIC_TRUST, "t", &out),
            Err(Error::TrailingBytes { .. })
        ));
    }
}
