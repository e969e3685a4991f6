//! Short-lived bearer tokens for MCP clients that speak only bearer auth
//! (Streamable HTTP). A client mints one with a signed request
//! (`POST /v1/tokens`, RFC 9421 with a fresh `created` and a single-use
//! nonce: the proof of key possession), and the token then stands for that
//! client and its role on `/mcp` only, until it expires.
//!
//! Tokens are 32 random bytes from the kernel's RNG; only their SHA-256 is
//! kept, in a table of [`CAPACITY`] entries (expired ones are dropped
//! first), in memory: a restart of quiltd ends them all.

use crate::auth::Caller;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens alive at once.
pub const CAPACITY: usize = 1024;
/// Default lifetime, seconds.
pub const DEFAULT_TTL: i64 = 600;
/// Longest lifetime a client may ask for, seconds.
pub const MAX_TTL: i64 = 3600;
/// What every token starts with (so it is recognisable in a leak scan).
pub const PREFIX: &str = "qbt_";

/// Why no token was minted or a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The table is full of live tokens.
    #[error("{CAPACITY} bearer tokens are alive; wait for some to expire")]
    Full,
    /// A lifetime outside 1..=MAX_TTL.
    #[error("ttl_s must be 1..={MAX_TTL} seconds, not {0}")]
    Ttl(i64),
    /// The kernel RNG failed.
    #[error("reading the kernel RNG failed")]
    Rng,
    /// Not a token this quiltd minted, or one that expired.
    #[error("bearer token unknown or expired; mint a new one with `quilt token`")]
    Unknown,
}

/// A minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token itself (shown once).
    pub token: String,
    /// When it ends, UNIX seconds.
    pub expires_at: i64,
}

/// The live tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    live: Mutex<HashMap<[u8; 32], (Caller, i64)>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// A token for `caller`, valid `ttl` seconds from `now`.
    pub fn mint(&self, caller: &Caller, ttl: i64, now: i64) -> Result<Minted, TokenError> {
        if !(1..=MAX_TTL).contains(&ttl) {
            return Err(TokenError::Ttl(ttl));
        }
        let mut raw = [0u8; 32];
        crate::identity::random(&mut raw).map_err(|_| TokenError::Rng)?;
        let token = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.len() >= CAPACITY {
            live.retain(|_, (_, until)| *until > now);
        }
        if live.len() >= CAPACITY {
            return Err(TokenError::Full);
        }
        let expires_at = now.saturating_add(ttl);
        live.insert(digest(&token), (caller.clone(), expires_at));
        Ok(Minted { token, expires_at })
    }

    /// Who `token` stands for at `now`.
    pub fn check(&self, token: &str, now: i64) -> Result<Caller, TokenError> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = digest(token);
        match live.get(&key) {
            Some((caller, until)) if *until > now => Ok(caller.clone()),
            Some(_) => {
                live.remove(&key);
                Err(TokenError::Unknown)
            }
            None => Err(TokenError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Role;

    fn bot() -> Caller {
        Caller {
            name: "bot".into(),
            role: Role::Agent,
        }
    }

    #[test]
    fn a_token_stands_for_its_client_until_it_expires() {
        let t = Tokens::default();
        let m = t.mint(&bot(), 60, 1000).unwrap();
        assert!(m.token.starts_with(PREFIX));
        assert_eq!(m.expires_at, 1060);
        assert_eq!(t.check(&m.token, 1059).unwrap(), bot());
        assert_eq!(t.check(&m.token, 1060), Err(TokenError::Unknown));
        assert_eq!(
            t.check(&m.token, 1000),
            Err(TokenError::Unknown),
            "gone once expired"
        );
        assert_eq!(t.check("qbt_forged", 1000), Err(TokenError::Unknown));
        let other = t.mint(&bot(), 60, 1000).unwrap();
        assert_ne!(other.token, m.token);
    }

    #[test]
    fn lifetimes_and_the_table_are_bounded() {
        let t = Tokens::default();
        assert_eq!(t.mint(&bot(), 0, 0), Err(TokenError::Ttl(0)));
        assert_eq!(
            t.mint(&bot(), MAX_TTL + 1, 0),
            Err(TokenError::Ttl(MAX_TTL + 1))
        );
        for _ in 0..CAPACITY {
            t.mint(&bot(), 10, 0).unwrap();
        }
        assert_eq!(t.mint(&bot(), 10, 5), Err(TokenError::Full));
        // Once they expire, room is made.
        t.mint(&bot(), 10, 10).unwrap();
    }
}
