//! `Content-Digest` (RFC 9530) with `sha-256`: what a signed request says
//! its body is, so the signature (which covers the field) covers the body.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Why a `Content-Digest` field was refused.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Not an RFC 8941 dictionary.
    #[error("content-digest is not a structured-field dictionary")]
    Syntax(#[source] sfv::Error),
    /// No `sha-256` member, or it is not a byte sequence.
    #[error("content-digest has no sha-256=:<base64>: member")]
    NoSha256,
    /// The `sha-256` member is not 32 bytes long.
    #[error("content-digest's sha-256 is {0} bytes; a SHA-256 digest is 32")]
    Length(usize),
    /// The body hashes to something else.
    #[error("content-digest does not match the body")]
    Mismatch,
}

/// The field value for `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let mut h = Hasher::default();
    h.update(body);
    h.field()
}

/// The field value for a body that is hashed in pieces (a file streamed
/// to the board): feed it with [`Hasher::update`], then [`Hasher::field`].
#[derive(Debug, Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// The next piece.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// `sha-256=:<base64>:` of all the pieces.
    pub fn field(self) -> String {
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(self.0.finalize())
        )
    }
}

/// Checks a received field against the body it came with. Other
/// algorithms may be listed too; `sha-256` must be there and match.
pub fn check(field: &str, body: &[u8]) -> Result<(), DigestError> {
    Claimed::parse(field)?.check(body)
}

/// What a `Content-Digest` field says the body hashes to, for a body that
/// is checked later: one streamed past the signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed([u8; 32]);

impl Claimed {
    /// The field's `sha-256` member. Other algorithms may be listed too.
    pub fn parse(field: &str) -> Result<Claimed, DigestError> {
        let dict: sfv::Dictionary = sfv::Parser::new(field)
            .parse()
            .map_err(DigestError::Syntax)?;
        let Some(sfv::ListEntry::Item(sfv::Item {
            bare_item: sfv::BareItem::ByteSequence(claimed),
            ..
        })) = dict.get("sha-256")
        else {
            return Err(DigestError::NoSha256);
        };
        <[u8; 32]>::try_from(claimed.as_slice())
            .map(Claimed)
            .map_err(|_| DigestError::Length(claimed.len()))
    }

    /// Checks a whole body.
    pub fn check(&self, body: &[u8]) -> Result<(), DigestError> {
        let mut s = self.clone().stream();
        s.update(body);
        s.finish()
    }

    /// A hasher for a body that arrives in pieces.
    pub fn stream(self) -> Streaming {
        Streaming {
            want: self,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

/// A body being hashed as it arrives, to be held to its [`Claimed`]
/// digest once it has all come.
#[derive(Debug, Clone)]
pub struct Streaming {
    want: Claimed,
    hasher: Sha256,
    len: u64,
}

impl Streaming {
    /// The next piece.
    pub fn update(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.len += piece.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has come yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether what came is what was claimed.
    pub fn finish(self) -> Result<(), DigestError> {
        if self.hasher.finalize().as_slice() == self.want.0.as_slice() {
            Ok(())
        } else {
            Err(DigestError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530's own example: `{"hello": "world"}` and a newline.
    #[test]
    fn matches_rfc_9530_example() {
        let body = b"{\"hello\": \"world\"}\n";
        assert_eq!(
            content_digest(body),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
        check(&content_digest(body), body).unwrap();
    }

    #[test]
    fn a_body_streamed_in_pieces_checks_like_a_whole_one() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let claimed = Claimed::parse(&content_digest(&body)).unwrap();
        let mut s = claimed.clone().stream();
        for piece in body.chunks(7_777) {
            s.update(piece);
        }
        assert_eq!(s.len(), 100_000);
        let mut h = Hasher::default();
        for piece in body.chunks(1_000) {
            h.update(piece);
        }
        assert_eq!(h.field(), content_digest(&body));
        s.finish().unwrap();
        let mut s = claimed.stream();
        s.update(&body[..99_999]);
        assert!(matches!(s.finish(), Err(DigestError::Mismatch)));
        // A sha-256 member of the wrong length is refused as such.
        assert!(matches!(
            Claimed::parse("sha-256=:AAAA:"),
            Err(DigestError::Length(3))
        ));
    }

    #[test]
    fn refuses_mismatch_absence_and_junk() {
        assert!(matches!(
            check(&content_digest(b"a"), b"b"),
            Err(DigestError::Mismatch)
        ));
        assert!(matches!(
            check("sha-512=:AAAA:", b""),
            Err(DigestError::NoSha256)
        ));
        assert!(matches!(
            check("sha-256=\"x\"", b""),
            Err(DigestError::NoSha256)
        ));
        assert!(matches!(check("((", b""), Err(DigestError::Syntax(_))));
    }
}
