//! Client keys as text: the secret file `quilt call --key` reads and the
//! public form an authorized-clients line holds. Their tags differ from
//! bundle-signing keys' (`quilt-ed25519-…`), so neither kind is taken for
//! the other by mistake.

use core::fmt::Write;

/// First word of a client secret key file.
pub const SECRET_TAG: &str = "quilt-client-secret";
/// Prefix of a client public key.
pub const PUBLIC_PREFIX: &str = "ed25519:";

/// Why a key text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No `quilt-client-secret <64 hex>` line.
    #[error("not a client secret key (expected `{SECRET_TAG} <64 hex digits>`, from `quilt key gen --client`)")]
    NotSecret,
    /// Not `ed25519:<64 hex>`.
    #[error("not a client public key (expected `{PUBLIC_PREFIX}<64 hex digits>`)")]
    NotPublic,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let pair = core::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The public key of a seed.
pub fn public_of(seed: &[u8; 32]) -> [u8; 32] {
    *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)).pk
}

/// The text of a secret key file.
pub fn secret_file(seed: &[u8; 32]) -> String {
    format!(
        "# quilt gateway client key: keep it 0600; its public half goes into a board's authorized-clients\n{SECRET_TAG} {}\n",
        hex(seed)
    )
}

/// Parses a secret key file.
pub fn parse_secret(text: &str) -> Result<[u8; 32], KeyError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(KeyError::NotSecret)?;
    let mut w = line.split_whitespace();
    match (w.next(), w.next(), w.next()) {
        (Some(SECRET_TAG), Some(h), None) => unhex32(h).ok_or(KeyError::NotSecret),
        _ => Err(KeyError::NotSecret),
    }
}

/// `ed25519:<hex>`.
pub fn public_text(public: &[u8; 32]) -> String {
    format!("{PUBLIC_PREFIX}{}", hex(public))
}

/// Parses `ed25519:<hex>`.
pub fn parse_public(text: &str) -> Result<[u8; 32], KeyError> {
    text.trim()
        .strip_prefix(PUBLIC_PREFIX)
        .and_then(unhex32)
        .ok_or(KeyError::NotPublic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let seed = [0xa5; 32];
        assert_eq!(parse_secret(&secret_file(&seed)), Ok(seed));
        let pk = public_of(&seed);
        assert_eq!(parse_public(&public_text(&pk)), Ok(pk));
        assert_eq!(
            parse_secret("quilt-ed25519-secret 00"),
            Err(KeyError::NotSecret)
        );
        assert_eq!(parse_public("ed25519:zz"), Err(KeyError::NotPublic));
        assert_eq!(
            parse_public(&format!("ed25519:{}", "é".repeat(32))),
            Err(KeyError::NotPublic)
        );
    }
}
