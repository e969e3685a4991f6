//! HTTP Message Signatures (RFC 9421), the part a gateway needs: one
//! signature per request, algorithm `ed25519`, derived components
//! `@method`, `@authority`, `@path`, `@query`, and header fields by name.
//!
//! [`Signature::parse`] reads the `Signature-Input` and `Signature`
//! fields (RFC 8941 dictionaries, parsed by `sfv`); [`signature_base`]
//! rebuilds what was signed from the request; [`Signature::verify`] checks
//! it. Anything outside this subset (component parameters such as `;sf`
//! or `;req`, several signatures, unknown signature parameters) is refused
//! by name rather than half-supported.

use base64::Engine;
use core::fmt::Write;

/// Largest field value the parser looks at: a gateway signature is a few
/// hundred bytes; the cap bounds the work an unauthenticated peer causes.
pub const MAX_FIELD: usize = 4096;
/// Most components one signature may cover.
pub const MAX_COMPONENTS: usize = 16;

/// A request as the signature base sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `GET`, `POST`, … (as sent: methods are case-sensitive).
    pub method: &'a str,
    /// Host and port as the client addressed it, if known.
    pub authority: Option<&'a str>,
    /// The target's absolute path, without the query.
    pub path: &'a str,
    /// The query without its `?`; `None` when there is none.
    pub query: Option<&'a str>,
    /// Header fields (any case); a name given twice is combined with `, `.
    pub headers: &'a [(&'a str, &'a str)],
}

impl Message<'_> {
    fn header(&self, name: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for (k, v) in self.headers {
            if k.eq_ignore_ascii_case(name) {
                let v = v.trim();
                match &mut out {
                    Some(s) => {
                        s.push_str(", ");
                        s.push_str(v);
                    }
                    None => out = Some(v.to_owned()),
                }
            }
        }
        out
    }
}

/// One covered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// `@method`.
    Method,
    /// `@authority`.
    Authority,
    /// `@path`.
    Path,
    /// `@query` (`?` and the query; `?` alone when there is none).
    Query,
    /// A header field, by its lower-case name.
    Header(String),
}

impl Component {
    /// Its identifier, e.g. `@method` or `content-digest`.
    pub fn name(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::Authority => "@authority",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::Header(h) => h,
        }
    }

    fn from_name(name: &str) -> Result<Component, SigError> {
        Ok(match name {
            "@method" => Component::Method,
            "@authority" => Component::Authority,
            "@path" => Component::Path,
            "@query" => Component::Query,
            n if n.starts_with('@') => return Err(SigError::UnsupportedComponent(n.to_owned())),
            n if n.is_empty() || n.bytes().any(|b| !is_field_name_byte(b)) => {
                return Err(SigError::BadComponentName(n.to_owned()))
            }
            n => Component::Header(n.to_owned()),
        })
    }

    fn value(&self, m: &Message<'_>) -> Result<String, SigError> {
        let missing = || SigError::MissingComponent(self.name().to_owned());
        Ok(match self {
            Component::Method => m.method.to_owned(),
            Component::Authority => m.authority.ok_or_else(missing)?.to_ascii_lowercase(),
            Component::Path => {
                if m.path.is_empty() {
                    "/".to_owned()
                } else {
                    m.path.to_owned()
                }
            }
            Component::Query => format!("?{}", m.query.unwrap_or("")),
            Component::Header(h) => m.header(h).ok_or_else(missing)?,
        })
    }
}

/// Lower-case token characters: what a field name may hold here.
fn is_field_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One signature parameter, in the order the signer gave them (the order
/// is part of the signature base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `created`: UNIX seconds.
    Created(i64),
    /// `expires`: UNIX seconds.
    Expires(i64),
    /// `nonce`.
    Nonce(String),
    /// `alg`.
    Alg(String),
    /// `keyid`.
    KeyId(String),
    /// `tag`.
    Tag(String),
}

/// What a signature covers and its parameters: the `Signature-Input`
/// member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// Components, in order.
    pub components: Vec<Component>,
    /// Parameters, in order.
    pub params: Vec<Param>,
}

impl Covered {
    /// `created`, if given.
    pub fn created(&self) -> Option<i64> {
        self.params.iter().find_map(|p| match p {
            Param::Created(t) => Some(*t),
            _ => None,
        })
    }

    /// `expires`, if given.
    pub fn expires(&self) -> Option<i64> {
        self.params.iter().find_map(|p| match p {
            Param::Expires(t) => Some(*t),
            _ => None,
        })
    }

    /// `nonce`, if given.
    pub fn nonce(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            Param::Nonce(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// `keyid`, if given.
    pub fn keyid(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            Param::KeyId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// `alg`, if given.
    pub fn alg(&self) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            Param::Alg(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Whether `c` is covered.
    pub fn covers(&self, c: &Component) -> bool {
        self.components.contains(c)
    }

    /// The serialized inner list with parameters: the `Signature-Input`
    /// member value and the `@signature-params` line of the base.
    pub fn serialize(&self) -> String {
        let mut s = String::from("(");
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            push_sf_string(&mut s, c.name());
        }
        s.push(')');
        for p in &self.params {
            match p {
                Param::Created(t) => {
                    let _ = write!(s, ";created={t}");
                }
                Param::Expires(t) => {
                    let _ = write!(s, ";expires={t}");
                }
                Param::Nonce(v) => push_param(&mut s, "nonce", v),
                Param::Alg(v) => push_param(&mut s, "alg", v),
                Param::KeyId(v) => push_param(&mut s, "keyid", v),
                Param::Tag(v) => push_param(&mut s, "tag", v),
            }
        }
        s
    }
}

fn push_param(s: &mut String, key: &str, v: &str) {
    s.push(';');
    s.push_str(key);
    s.push('=');
    push_sf_string(s, v);
}

/// An RFC 8941 string (the parser has already refused anything that is
/// not printable ASCII).
fn push_sf_string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
}

/// Why a signature was refused. The server's reply names the variant.
#[derive(Debug, thiserror::Error)]
pub enum SigError {
    /// A field is missing.
    #[error("no {0} header: sign the request (RFC 9421)")]
    MissingField(&'static str),
    /// A field is longer than [`MAX_FIELD`].
    #[error("{0} header is longer than {MAX_FIELD} bytes")]
    FieldTooLong(&'static str),
    /// A field is not an RFC 8941 dictionary.
    #[error("{field} is not a structured-field dictionary")]
    Syntax {
        /// Which field.
        field: &'static str,
        /// What sfv said.
        #[source]
        source: sfv::Error,
    },
    /// Zero or several signatures: a gateway request carries exactly one.
    #[error("{0} must hold exactly one signature")]
    NotOne(&'static str),
    /// `Signature` has no member of the label `Signature-Input` uses.
    #[error("signature and signature-input use different labels")]
    LabelMismatch,
    /// The `Signature-Input` member is not an inner list.
    #[error("signature-input member is not an inner list of components")]
    NotInnerList,
    /// The `Signature` member is not a byte sequence.
    #[error("signature member is not a byte sequence")]
    NotBytes,
    /// A component identifier is not a string.
    #[error("a covered component is not a string")]
    ComponentNotString,
    /// A component carries parameters (`;sf`, `;key`, `;req`, …).
    #[error("component {0} has parameters, which this server does not support")]
    ComponentParams(String),
    /// A derived component outside the subset.
    #[error("derived component {0} is not supported")]
    UnsupportedComponent(String),
    /// Not a lower-case field name.
    #[error("component {0:?} is not a lower-case field name")]
    BadComponentName(String),
    /// A component listed twice.
    #[error("component {0} is covered twice")]
    DuplicateComponent(String),
    /// Too many components.
    #[error("more than {MAX_COMPONENTS} covered components")]
    TooManyComponents,
    /// A parameter outside RFC 9421's list.
    #[error("unknown signature parameter {0}")]
    UnknownParam(String),
    /// A parameter of the wrong type or given twice.
    #[error("signature parameter {0} has the wrong type")]
    ParamType(&'static str),
    /// The covered component is not in the request.
    #[error("covered component {0} is not in the request")]
    MissingComponent(String),
    /// Not 64 bytes.
    #[error("an ed25519 signature is 64 bytes")]
    SignatureLength,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Invalid,
}

/// A parsed signature: its label, what it covers, the 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The dictionary key (e.g. `sig1`).
    pub label: String,
    /// Components and parameters.
    pub covered: Covered,
    /// The ed25519 signature.
    pub bytes: [u8; 64],
}

fn dictionary(field: &'static str, value: &str) -> Result<sfv::Dictionary, SigError> {
    if value.len() > MAX_FIELD {
        return Err(SigError::FieldTooLong(field));
    }
    let d: sfv::Dictionary = sfv::Parser::new(value)
        .parse()
        .map_err(|source| SigError::Syntax { field, source })?;
    if d.len() != 1 {
        return Err(SigError::NotOne(field));
    }
    Ok(d)
}

impl Signature {
    /// Parses the `Signature-Input` and `Signature` field values.
    pub fn parse(input: &str, signature: &str) -> Result<Signature, SigError> {
        let inputs = dictionary("signature-input", input)?;
        let sigs = dictionary("signature", signature)?;
        let (label, entry) = inputs.first().ok_or(SigError::NotOne("signature-input"))?;
        let sfv::ListEntry::InnerList(list) = entry else {
            return Err(SigError::NotInnerList);
        };
        let Some(sfv::ListEntry::Item(sfv::Item {
            bare_item: sfv::BareItem::ByteSequence(bytes),
            ..
        })) = sigs.get(label.as_str())
        else {
            return Err(if sigs.contains_key(label.as_str()) {
                SigError::NotBytes
            } else {
                SigError::LabelMismatch
            });
        };
        let bytes: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SigError::SignatureLength)?;
        if list.items.len() > MAX_COMPONENTS {
            return Err(SigError::TooManyComponents);
        }
        let mut components = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let sfv::BareItem::String(name) = &item.bare_item else {
                return Err(SigError::ComponentNotString);
            };
            if !item.params.is_empty() {
                return Err(SigError::ComponentParams(name.as_str().to_owned()));
            }
            let c = Component::from_name(name.as_str())?;
            if components.contains(&c) {
                return Err(SigError::DuplicateComponent(c.name().to_owned()));
            }
            components.push(c);
        }
        let mut params = Vec::with_capacity(list.params.len());
        for (k, v) in &list.params {
            let int = |name| match v {
                sfv::BareItem::Integer(i) => Ok(i64::from(*i)),
                _ => Err(SigError::ParamType(name)),
            };
            let string = |name| match v {
                sfv::BareItem::String(s) => Ok(s.as_str().to_owned()),
                _ => Err(SigError::ParamType(name)),
            };
            params.push(match k.as_str() {
                "created" => Param::Created(int("created")?),
                "expires" => Param::Expires(int("expires")?),
                "nonce" => Param::Nonce(string("nonce")?),
                "alg" => Param::Alg(string("alg")?),
                "keyid" => Param::KeyId(string("keyid")?),
                "tag" => Param::Tag(string("tag")?),
                other => return Err(SigError::UnknownParam(other.to_owned())),
            });
        }
        Ok(Signature {
            label: label.as_str().to_owned(),
            covered: Covered { components, params },
            bytes,
        })
    }

    /// Verifies against `public` over the base rebuilt from `m`.
    pub fn verify(&self, m: &Message<'_>, public: &[u8; 32]) -> Result<(), SigError> {
        let base = signature_base(&self.covered, m)?;
        let pk = ed25519_compact::PublicKey::new(*public);
        let sig = ed25519_compact::Signature::new(self.bytes);
        pk.verify(base.as_bytes(), &sig)
            .map_err(|_| SigError::Invalid)
    }
}

/// The signature base (RFC 9421 §2.5): one line per covered component,
/// then the `@signature-params` line; no trailing newline.
pub fn signature_base(covered: &Covered, m: &Message<'_>) -> Result<String, SigError> {
    let mut base = String::with_capacity(256);
    for c in &covered.components {
        let v = c.value(m)?;
        push_sf_string(&mut base, c.name());
        base.push_str(": ");
        base.push_str(&v);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&covered.serialize());
    Ok(base)
}

/// The two fields of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFields {
    /// `Signature-Input` value.
    pub input: String,
    /// `Signature` value.
    pub signature: String,
}

/// Signs `m` with `seed`'s key, covering `covered`, under `label`.
pub fn sign(
    label: &str,
    covered: &Covered,
    m: &Message<'_>,
    seed: &[u8; 32],
) -> Result<SignatureFields, SigError> {
    let base = signature_base(covered, m)?;
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
    let sig = kp.sk.sign(base.as_bytes(), None);
    Ok(SignatureFields {
        input: format!("{label}={}", covered.serialize()),
        signature: format!(
            "{label}=:{}:",
            base64::engine::general_purpose::STANDARD.encode(*sig)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9421 Appendix B.1.4: `test-key-ed25519` (PKCS#8 and SPKI).
    const RFC_PRIVATE: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
    const RFC_PUBLIC: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn rfc_keys() -> ([u8; 32], [u8; 32]) {
        let seed: [u8; 32] = b64(RFC_PRIVATE)[16..].try_into().unwrap();
        let public = crate::fingerprint::ed25519_from_spki(&b64(RFC_PUBLIC)).unwrap();
        (seed, public)
    }

    /// RFC 9421 Appendix B.2's test request.
    const HEADERS: &[(&str, &str)] = &[
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        (
            "Content-Digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("Content-Length", "18"),
    ];

    fn rfc_message() -> Message<'static> {
        Message {
            method: "POST",
            authority: Some("example.com"),
            path: "/foo",
            query: Some("param=Value&Pet=dog"),
            headers: HEADERS,
        }
    }

    const B26_INPUT: &str = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
    const B26_SIGNATURE: &str = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";
    const B26_BASE: &str = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@method\": POST\n\
\"@path\": /foo\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"content-length\": 18\n\
\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";

    #[test]
    fn rfc_9421_b_2_6_base_signature_and_verification() {
        let (seed, public) = rfc_keys();
        let s = Signature::parse(B26_INPUT, B26_SIGNATURE).unwrap();
        assert_eq!(s.label, "sig-b26");
        assert_eq!(s.covered.created(), Some(1618884473));
        assert_eq!(s.covered.keyid(), Some("test-key-ed25519"));
        let m = rfc_message();
        assert_eq!(signature_base(&s.covered, &m).unwrap(), B26_BASE);
        s.verify(&m, &public).unwrap();
        // Ed25519 is deterministic: signing the same base gives the RFC's bytes.
        let fields = sign("sig-b26", &s.covered, &m, &seed).unwrap();
        assert_eq!(fields.input, B26_INPUT);
        assert_eq!(fields.signature, B26_SIGNATURE);
    }

    #[test]
    fn a_changed_request_or_key_does_not_verify() {
        let (_, public) = rfc_keys();
        let s = Signature::parse(B26_INPUT, B26_SIGNATURE).unwrap();
        let mut m = rfc_message();
        m.method = "GET";
        assert!(matches!(s.verify(&m, &public), Err(SigError::Invalid)));
        let m = rfc_message();
        assert!(matches!(s.verify(&m, &[1; 32]), Err(SigError::Invalid)));
        let no_date: Vec<_> = HEADERS.iter().copied().filter(|h| h.0 != "Date").collect();
        let m = Message {
            headers: &no_date,
            ..rfc_message()
        };
        assert!(matches!(
            s.verify(&m, &public),
            Err(SigError::MissingComponent(c)) if c == "date"
        ));
    }

    #[test]
    fn refuses_what_is_outside_the_subset() {
        let sig = B26_SIGNATURE;
        let input = |s: &str| format!("sig-b26={s}");
        let e = |i: &str, s: &str| Signature::parse(i, s).unwrap_err();
        assert!(matches!(e("", sig), SigError::NotOne(_)));
        assert!(matches!(e("a=(), b=()", sig), SigError::NotOne(_)));
        assert!(matches!(e("((", sig), SigError::Syntax { .. }));
        assert!(matches!(e(&input("1"), sig), SigError::NotInnerList));
        assert!(matches!(e("x=()", sig), SigError::LabelMismatch));
        assert!(matches!(e(&input("()"), "sig-b26=1"), SigError::NotBytes));
        assert!(matches!(
            e(&input("()"), "sig-b26=:AAAA:"),
            SigError::SignatureLength
        ));
        assert!(matches!(
            e(&input("(a)"), sig),
            SigError::ComponentNotString
        ));
        assert!(matches!(
            e(&input("(\"a\";sf)"), sig),
            SigError::ComponentParams(_)
        ));
        assert!(matches!(
            e(&input("(\"@target-uri\")"), sig),
            SigError::UnsupportedComponent(_)
        ));
        assert!(matches!(
            e(&input("(\"Date\")"), sig),
            SigError::BadComponentName(_)
        ));
        assert!(matches!(
            e(&input("(\"a\" \"a\")"), sig),
            SigError::DuplicateComponent(_)
        ));
        assert!(matches!(
            e(&input("();foo=1"), sig),
            SigError::UnknownParam(_)
        ));
        assert!(matches!(
            e(&input("();created=\"1\""), sig),
            SigError::ParamType("created")
        ));
        let long = format!("sig-b26=(\"{}\")", "a".repeat(MAX_FIELD));
        assert!(matches!(e(&long, sig), SigError::FieldTooLong(_)));
        let many: Vec<String> = (0..=MAX_COMPONENTS).map(|i| format!("\"h{i}\"")).collect();
        assert!(matches!(
            e(&input(&format!("({})", many.join(" "))), sig),
            SigError::TooManyComponents
        ));
    }

    #[test]
    fn query_and_path_follow_the_rfc() {
        let m = Message {
            method: "GET",
            authority: None,
            path: "",
            query: None,
            headers: &[],
        };
        let c = Covered {
            components: vec![Component::Path, Component::Query],
            params: vec![Param::Nonce("a\"b".into())],
        };
        assert_eq!(
            signature_base(&c, &m).unwrap(),
            "\"@path\": /\n\"@query\": ?\n\"@signature-params\": (\"@path\" \"@query\");nonce=\"a\\\"b\""
        );
    }

    proptest::proptest! {
        /// Whatever the fields hold, parsing ends in a value or an error.
        #[test]
        fn parse_never_panics(a in ".{0,200}", b in ".{0,200}") {
            let _ = Signature::parse(&a, &b);
        }
    }
}
