//! Who is calling, decided once before any handler: the request's RFC 9421
//! signature is parsed, held to the gateway profile, checked for
//! freshness (±skew around `created`), its key looked up in the
//! authorized clients, its `Content-Digest` checked against the body, the
//! signature verified, the nonce recorded (after verification, so nobody
//! unauthenticated can fill the cache), and the client's role compared with
//! what the route needs. Pure over an injected clock.

use crate::clients::{Clients, Role};
use crate::nonce::{NonceCache, NonceError};
use quilt_gateway_auth::digest::{self, DigestError};
use quilt_gateway_auth::profile::{self, ProfileError};
use quilt_gateway_auth::sig::{Message, SigError, Signature};
use std::sync::Mutex;

/// Default freshness window, seconds each way.
pub const DEFAULT_SKEW: i64 = 60;
/// Nonces remembered at once.
pub const NONCE_CAPACITY: usize = 65_536;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its name from the authorized-clients file.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused. Each maps to one HTTP status and one stable
/// reason code (the JSON `error` field), in [`Refusal::status`] and
/// [`Refusal::code`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No signature, or one that does not parse or is outside the subset.
    #[error(transparent)]
    Signature(#[from] SigError),
    /// The signature misses what the profile needs.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// `created` (or `expires`) is outside the window.
    #[error("signature created at {created} is outside ±{skew} s of the board's clock ({now}); check both clocks")]
    Stale {
        /// The signature's `created`.
        created: i64,
        /// The board's clock.
        now: i64,
        /// The window.
        skew: i64,
    },
    /// `expires` has passed.
    #[error("signature expired at {expires} (board clock {now})")]
    Expired {
        /// The signature's `expires`.
        expires: i64,
        /// The board's clock.
        now: i64,
    },
    /// The key is not authorized.
    #[error("key {0} is not in this board's authorized-clients; add it there (`ROLE NAME ed25519:…` from `quilt key gen --client`)")]
    UnknownKey(String),
    /// `Content-Digest` missing or wrong.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The signature does not verify.
    #[error("signature does not verify for key {0}")]
    BadSignature(String),
    /// Replayed, or the cache is full.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// Authenticated, but the role does not allow this.
    #[error("{name} is {have}; this needs {need}")]
    Role {
        /// The caller.
        name: String,
        /// Its role.
        have: &'static str,
        /// The route's.
        need: &'static str,
    },
}

impl Refusal {
    /// 401 for anything about who is calling, 403 for a role too small,
    /// 503 when the replay cache is full.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Role { .. } => 403,
            Refusal::Nonce(NonceError::Full) => 503,
            _ => 401,
        }
    }

    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Signature(SigError::MissingField(_)) => "unsigned",
            Refusal::Signature(SigError::MissingComponent(_)) => "missing-component",
            Refusal::Signature(SigError::Invalid) | Refusal::BadSignature(_) => "bad-signature",
            Refusal::Signature(_) => "malformed-signature",
            Refusal::Profile(_) => "signature-profile",
            Refusal::Stale { .. } | Refusal::Expired { .. } => "stale",
            Refusal::UnknownKey(_) => "unknown-key",
            Refusal::Digest(_) => "content-digest",
            Refusal::Nonce(NonceError::Replayed) => "replayed",
            Refusal::Nonce(NonceError::Full) => "busy",
            Refusal::Role { .. } => "forbidden-role",
        }
    }
}

/// A request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The signature-relevant parts.
    pub message: Message<'a>,
    /// The whole body.
    pub body: &'a [u8],
}

/// The verifier: the authorized clients, the replay cache, the window.
#[derive(Debug)]
pub struct Verifier {
    clients: Clients,
    nonces: Mutex<NonceCache>,
    skew: i64,
}

impl Verifier {
    /// A verifier for `clients` with a window of `skew` seconds.
    pub fn new(clients: Clients, skew: i64, nonce_capacity: usize) -> Verifier {
        Verifier {
            clients,
            nonces: Mutex::new(NonceCache::new(nonce_capacity, skew)),
            skew,
        }
    }

    /// Decides who calls; `need` is the route's role, `now` the clock.
    pub fn verify(&self, req: &Incoming<'_>, need: Role, now: i64) -> Result<Caller, Refusal> {
        self.verify_inner(&req.message, Some(req.body), need, now)
            .map(|(caller, _)| caller)
    }

    /// As [`Self::verify`] for a request whose body is streamed past the
    /// check (an install): everything but the body is held to the
    /// signature now, and the body to the digest the signature covers
    /// once it has come ([`digest::Claimed::stream`]). The nonce is spent
    /// now, so a body that turns out not to match cannot be retried with
    /// the same signature either.
    pub fn verify_streamed(
        &self,
        m: &Message<'_>,
        need: Role,
        now: i64,
    ) -> Result<(Caller, digest::Claimed), Refusal> {
        self.verify_inner(m, None, need, now)
    }

    fn verify_inner(
        &self,
        m: &Message<'_>,
        body: Option<&[u8]>,
        need: Role,
        now: i64,
    ) -> Result<(Caller, digest::Claimed), Refusal> {
        let find = |name: &'static str| {
            m.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .ok_or(SigError::MissingField(name))
        };
        let sig = Signature::parse(find("signature-input")?, find("signature")?)?;
        let claims = profile::check(&sig.covered)?;
        if (now - claims.created).abs() > self.skew {
            return Err(Refusal::Stale {
                created: claims.created,
                now,
                skew: self.skew,
            });
        }
        if let Some(expires) = claims.expires {
            if expires < now {
                return Err(Refusal::Expired { expires, now });
            }
        }
        let client = self
            .clients
            .get(claims.keyid)
            .ok_or_else(|| Refusal::UnknownKey(claims.keyid.to_owned()))?;
        let claimed = digest::Claimed::parse(find(profile::CONTENT_DIGEST)?)?;
        if let Some(body) = body {
            claimed.check(body)?;
        }
        sig.verify(m, &client.public).map_err(|e| match e {
            SigError::Invalid => Refusal::BadSignature(claims.keyid.to_owned()),
            other => Refusal::Signature(other),
        })?;
        self.nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(claims.keyid, claims.nonce, claims.created, now)?;
        if !client.role.allows(need) {
            return Err(Refusal::Role {
                name: client.name.clone(),
                have: client.role.as_str(),
                need: need.as_str(),
            });
        }
        Ok((
            Caller {
                name: client.name.clone(),
                role: client.role,
            },
            claimed,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_gateway_auth::keys::public_text;
    use quilt_gateway_auth::profile::{sign_request, Outgoing, SignedHeaders};

    const OPERATOR: [u8; 32] = [1; 32];
    const AGENT: [u8; 32] = [2; 32];
    const STRANGER: [u8; 32] = [3; 32];
    const NOW: i64 = 1_800_000_000;

    fn verifier() -> Verifier {
        let pk = quilt_gateway_auth::keys::public_of;
        let text = format!(
            "operator op {}\nagent bot {}\n",
            public_text(&pk(&OPERATOR)),
            public_text(&pk(&AGENT))
        );
        Verifier::new(Clients::parse(&text).unwrap(), DEFAULT_SKEW, 16)
    }

    fn signed(seed: &[u8; 32], created: i64, nonce: &str, body: &[u8]) -> SignedHeaders {
        sign_request(
            seed,
            &Outgoing {
                method: "POST",
                path: "/v1/tools/hello/run",
                query: None,
                body,
                created,
                nonce,
            },
        )
        .unwrap()
    }

    fn check(v: &Verifier, h: &SignedHeaders, body: &[u8], need: Role) -> Result<Caller, Refusal> {
        let headers = [
            ("Signature-Input", h.signature_input.as_str()),
            ("Signature", h.signature.as_str()),
            ("Content-Digest", h.content_digest.as_str()),
        ];
        let req = Incoming {
            message: Message {
                method: "POST",
                authority: Some("board"),
                path: "/v1/tools/hello/run",
                query: None,
                headers: &headers,
            },
            body,
        };
        v.verify(&req, need, NOW)
    }

    const N1: &str = "nonce-0000000001";
    const N2: &str = "nonce-0000000002";

    #[test]
    fn a_good_request_passes_once() {
        let v = verifier();
        let h = signed(&OPERATOR, NOW, N1, b"{}");
        let c = check(&v, &h, b"{}", Role::Operator).unwrap();
        assert_eq!((c.name.as_str(), c.role), ("op", Role::Operator));
        let e = check(&v, &h, b"{}", Role::Operator).unwrap_err();
        assert_eq!((e.status(), e.code()), (401, "replayed"));
    }

    #[test]
    fn the_skew_window_is_inclusive_and_both_ways() {
        let v = verifier();
        for (i, created) in [NOW - 60, NOW + 60].into_iter().enumerate() {
            let h = signed(&AGENT, created, &format!("{N1}{i}"), b"");
            check(&v, &h, b"", Role::Agent).unwrap();
        }
        for created in [NOW - 61, NOW + 61] {
            let h = signed(&AGENT, created, N2, b"");
            let e = check(&v, &h, b"", Role::Agent).unwrap_err();
            assert!(matches!(e, Refusal::Stale { .. }), "{e:?}");
            assert_eq!(e.code(), "stale");
        }
    }

    #[test]
    fn roles_are_enforced_after_authentication() {
        let v = verifier();
        let h = signed(&AGENT, NOW, N1, b"");
        let e = check(&v, &h, b"", Role::Operator).unwrap_err();
        assert_eq!((e.status(), e.code()), (403, "forbidden-role"));
        let h = signed(&OPERATOR, NOW, N2, b"");
        check(&v, &h, b"", Role::Agent).unwrap();
    }

    #[test]
    fn unknown_keys_tampered_bodies_and_forgeries_are_refused() {
        let v = verifier();
        let h = signed(&STRANGER, NOW, N1, b"");
        assert_eq!(
            check(&v, &h, b"", Role::Agent).unwrap_err().code(),
            "unknown-key"
        );
        let h = signed(&AGENT, NOW, N1, b"{\"a\":1}");
        let e = check(&v, &h, b"{\"a\":2}", Role::Agent).unwrap_err();
        assert_eq!(e.code(), "content-digest");
        // A digest recomputed for the new body no longer matches the signature.
        let mut forged = signed(&AGENT, NOW, N1, b"{\"a\":1}");
        forged.content_digest = quilt_gateway_auth::digest::content_digest(b"{\"a\":2}");
        let e = check(&v, &forged, b"{\"a\":2}", Role::Agent).unwrap_err();
        assert!(matches!(e, Refusal::BadSignature(_)));
        // Refusals before verification leave the nonce usable.
        let h = signed(&AGENT, NOW, N1, b"");
        check(&v, &h, b"", Role::Agent).unwrap();
    }

    #[test]
    fn a_streamed_body_is_held_to_the_signed_digest_after_the_headers() {
        let v = verifier();
        let body = b"a bundle's bytes";
        let h = signed(&OPERATOR, NOW, N1, body);
        let headers = [
            ("Signature-Input", h.signature_input.as_str()),
            ("Signature", h.signature.as_str()),
            ("Content-Digest", h.content_digest.as_str()),
        ];
        let m = Message {
            method: "POST",
            authority: Some("board"),
            path: "/v1/tools/hello/run",
            query: None,
            headers: &headers,
        };
        let (caller, claimed) = v.verify_streamed(&m, Role::Operator, NOW).unwrap();
        assert_eq!(caller.name, "op");
        let mut s = claimed.clone().stream();
        s.update(body);
        s.finish().unwrap();
        let mut s = claimed.stream();
        s.update(b"other bytes");
        assert!(s.finish().is_err());
        // The nonce was spent with the headers.
        let e = v.verify_streamed(&m, Role::Operator, NOW).unwrap_err();
        assert_eq!(e.code(), "replayed");
        // And an agent may not stream to an operator's route.
        let h = signed(&AGENT, NOW, N2, body);
        let headers = [
            ("Signature-Input", h.signature_input.as_str()),
            ("Signature", h.signature.as_str()),
            ("Content-Digest", h.content_digest.as_str()),
        ];
        let m = Message {
            headers: &headers,
            ..m
        };
        let e = v.verify_streamed(&m, Role::Operator, NOW).unwrap_err();
        assert_eq!(e.code(), "forbidden-role");
    }

    #[test]
    fn unsigned_and_malformed_requests_say_so() {
        let v = verifier();
        let req = Incoming {
            message: Message {
                method: "GET",
                authority: None,
                path: "/v1/bundles",
                query: None,
                headers: &[],
            },
            body: b"",
        };
        let e = v.verify(&req, Role::Agent, NOW).unwrap_err();
        assert_eq!((e.status(), e.code()), (401, "unsigned"));
        let headers = [("signature-input", "x"), ("signature", "x=:AA==:")];
        let req = Incoming {
            message: Message {
                headers: &headers,
                ..req.message
            },
            ..req
        };
        let e = v.verify(&req, Role::Agent, NOW).unwrap_err();
        assert_eq!(e.code(), "malformed-signature");
    }
}
