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
    /// The body hashes to something else.
    #[error("content-digest does not match the body")]
    Mismatch,
}

/// The field value for `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(d)
    )
}

/// Checks a received field against the body it came with. Other
/// algorithms may be listed too; `sha-256` must be there and match.
pub fn check(field: &str, body: &[u8]) -> Result<(), DigestError> {
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
    if claimed.as_slice() == Sha256::digest(body).as_slice() {
        Ok(())
    } else {
        Err(DigestError::Mismatch)
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
