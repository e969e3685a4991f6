//! The gateway's signature profile: what every request to `quiltd` must
//! cover and carry, and signing a request that way (the one function
//! clients call).
//!
//! Covered: `@method`, `@path`, `@query`, `content-digest`; parameters
//! `created`, `nonce`, `keyid` (the client key's fingerprint) and
//! `alg="ed25519"`. `@authority` is left out on purpose: a board is often
//! reached through a forwarded port, so the host a client names is not the
//! one the board knows; TLS pinning already binds the board.

use crate::digest::content_digest;
use crate::sig::{self, Component, Covered, Message, Param, SigError};

/// Label of the one signature (any label is accepted when verifying).
pub const LABEL: &str = "quilt";
/// The only algorithm.
pub const ALG: &str = "ed25519";
/// Header carrying the body's digest.
pub const CONTENT_DIGEST: &str = "content-digest";

/// Components a gateway request must cover.
pub fn required() -> [Component; 4] {
    [
        Component::Method,
        Component::Path,
        Component::Query,
        Component::Header(CONTENT_DIGEST.to_owned()),
    ]
}

/// A signature that verifies may still fall short of the profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// A required component is not covered.
    #[error("the signature must cover {0}")]
    NotCovered(&'static str),
    /// A required parameter is absent.
    #[error("the signature must carry the {0} parameter")]
    MissingParam(&'static str),
    /// Another algorithm was named.
    #[error("alg {0:?} is not supported; use \"ed25519\"")]
    Alg(String),
    /// A nonce too short to be random, or too long to keep.
    #[error("nonce must be 16 to 64 characters")]
    NonceLength,
}

/// What the server needs from a signature that follows the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<'a> {
    /// `created`, UNIX seconds.
    pub created: i64,
    /// `expires`, if the client set one.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: &'a str,
    /// `keyid`: which authorized key signed.
    pub keyid: &'a str,
}

/// Checks `covered` against the profile.
pub fn check(covered: &Covered) -> Result<Claims<'_>, ProfileError> {
    for (c, name) in required()
        .iter()
        .zip(["@method", "@path", "@query", CONTENT_DIGEST])
    {
        if !covered.covers(c) {
            return Err(ProfileError::NotCovered(name));
        }
    }
    if let Some(alg) = covered.alg() {
        if alg != ALG {
            return Err(ProfileError::Alg(alg.to_owned()));
        }
    }
    let created = covered
        .created()
        .ok_or(ProfileError::MissingParam("created"))?;
    let nonce = covered.nonce().ok_or(ProfileError::MissingParam("nonce"))?;
    if !(16..=64).contains(&nonce.len()) {
        return Err(ProfileError::NonceLength);
    }
    let keyid = covered.keyid().ok_or(ProfileError::MissingParam("keyid"))?;
    Ok(Claims {
        created,
        expires: covered.expires(),
        nonce,
        keyid,
    })
}

/// The headers a signed gateway request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Content-Digest`.
    pub content_digest: String,
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

/// What a client signs.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute path, without the query.
    pub path: &'a str,
    /// Query without `?`, if any.
    pub query: Option<&'a str>,
    /// The body (empty for a GET).
    pub body: &'a [u8],
    /// UNIX seconds now.
    pub created: i64,
    /// A fresh random string, 16..=64 characters.
    pub nonce: &'a str,
}

/// Signs a request with the client key `seed` (its fingerprint is the
/// `keyid`).
pub fn sign_request(seed: &[u8; 32], req: &Outgoing<'_>) -> Result<SignedHeaders, SigError> {
    sign_with_digest(seed, req, content_digest(req.body))
}

/// As [`sign_request`] for a body hashed piece by piece as it is read
/// ([`crate::digest::Hasher`]), too large to hold: `content_digest` is
/// its field, and `req.body` is not looked at (leave it empty).
pub fn sign_with_digest(
    seed: &[u8; 32],
    req: &Outgoing<'_>,
    content_digest: String,
) -> Result<SignedHeaders, SigError> {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
    let keyid = crate::fingerprint::Fingerprint::of_ed25519(&kp.pk).to_string();
    let headers = [(CONTENT_DIGEST, content_digest.as_str())];
    let m = Message {
        method: req.method,
        authority: None,
        path: req.path,
        query: req.query,
        headers: &headers,
    };
    let covered = Covered {
        components: required().to_vec(),
        params: vec![
            Param::Created(req.created),
            Param::Nonce(req.nonce.to_owned()),
            Param::KeyId(keyid),
            Param::Alg(ALG.to_owned()),
        ],
    };
    let f = sig::sign(LABEL, &covered, &m, seed)?;
    Ok(SignedHeaders {
        content_digest,
        signature_input: f.input,
        signature: f.signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;
    use crate::sig::Signature;

    #[test]
    fn a_body_hashed_in_pieces_signs_as_the_whole_body_does() {
        let body = vec![7u8; 70_000];
        let whole = Outgoing {
            method: "POST",
            path: "/v1/bundles",
            query: None,
            body: &body,
            created: 1_700_000_000,
            nonce: "0123456789abcdef0123",
        };
        let mut h = crate::digest::Hasher::default();
        body.chunks(4096).for_each(|p| h.update(p));
        let streamed = sign_with_digest(&[5; 32], &Outgoing { body: &[], ..whole }, h.field());
        assert_eq!(streamed.unwrap(), sign_request(&[5; 32], &whole).unwrap());
    }

    #[test]
    fn a_signed_request_parses_follows_the_profile_and_verifies() {
        let seed = [5u8; 32];
        let pk = *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)).pk;
        let body = br#"{"a":1}"#;
        let out = Outgoing {
            method: "POST",
            path: "/v1/tools/hello/run",
            query: Some("x=1"),
            body,
            created: 1_700_000_000,
            nonce: "0123456789abcdef0123",
        };
        let h = sign_request(&seed, &out).unwrap();
        let s = Signature::parse(&h.signature_input, &h.signature).unwrap();
        let claims = check(&s.covered).unwrap();
        assert_eq!(claims.keyid, Fingerprint::of_ed25519(&pk).to_string());
        assert_eq!(claims.created, 1_700_000_000);
        let headers = [("Content-Digest", h.content_digest.as_str())];
        let m = Message {
            method: "POST",
            authority: Some("board:8443"),
            path: "/v1/tools/hello/run",
            query: Some("x=1"),
            headers: &headers,
        };
        s.verify(&m, &pk).unwrap();
        crate::digest::check(&h.content_digest, body).unwrap();
        let other = Message { query: None, ..m };
        assert!(s.verify(&other, &pk).is_err());
    }

    #[test]
    fn refuses_what_falls_short() {
        let c = |components: Vec<Component>, params: Vec<Param>| Covered { components, params };
        let all = required().to_vec();
        let good = vec![
            Param::Created(1),
            Param::Nonce("n".repeat(16)),
            Param::KeyId("k".into()),
        ];
        assert!(check(&c(all.clone(), good.clone())).is_ok());
        assert_eq!(
            check(&c(all[..3].to_vec(), good.clone())),
            Err(ProfileError::NotCovered(CONTENT_DIGEST))
        );
        assert_eq!(
            check(&c(all.clone(), good[1..].to_vec())),
            Err(ProfileError::MissingParam("created"))
        );
        let mut short = good.clone();
        short[1] = Param::Nonce("n".into());
        assert_eq!(
            check(&c(all.clone(), short)),
            Err(ProfileError::NonceLength)
        );
        let mut rsa = good.clone();
        rsa.push(Param::Alg("rsa-pss-sha512".into()));
        assert!(matches!(check(&c(all, rsa)), Err(ProfileError::Alg(_))));
    }
}

#[cfg(test)]
mod docs_example {
    use super::*;

    /// The worked example in docs/gateway.md, so the page stays true.
    #[test]
    fn docs_gateway_md_example() {
        let seed = [0x42u8; 32];
        let h = sign_request(
            &seed,
            &Outgoing {
                method: "POST",
                path: "/v1/tools/json-transform/run",
                query: Some("tool=sum"),
                body: br#"{"items":[2,3]}"#,
                created: 1_767_225_600,
                nonce: "6f1c0e4a9b2d7e35a8c4f0b1d2e3f405",
            },
        )
        .unwrap();
        assert_eq!(
            h.content_digest,
            "sha-256=:si2coRL7i9DV9O9tgyNwHIxJID2M88uTXERwgALfmxA=:"
        );
        assert_eq!(h.signature, "quilt=:c500rf8Fq6lOb2N+BVQkRCKuPPhURcXvK+irIBD0W23YwUUZh/bXfOhMZyAGycwrolPxwETEKAGvG7VwbfbSCQ==:");
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/gateway.md"
        ))
        .unwrap();
        let s = crate::sig::Signature::parse(&h.signature_input, &h.signature).unwrap();
        let headers = [(CONTENT_DIGEST, h.content_digest.as_str())];
        let m = Message {
            method: "POST",
            authority: None,
            path: "/v1/tools/json-transform/run",
            query: Some("tool=sum"),
            headers: &headers,
        };
        let base = crate::sig::signature_base(&s.covered, &m).unwrap();
        for text in [
            base.as_str(),
            h.signature_input.as_str(),
            h.signature.as_str(),
            h.content_digest.as_str(),
        ] {
            assert!(doc.contains(text), "docs/gateway.md lacks {text}");
        }
        assert!(doc.contains(&crate::keys::public_text(&crate::keys::public_of(&seed))));
    }
}
