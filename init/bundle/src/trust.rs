//! Trust: which keys may sign what, and the signed documents that change it.
//!
//! A [`Trust`] is a set of root keys and a [`Policy`]: how many of those keys
//! must sign a bundle of a given name (first matching rule wins), how many
//! must sign a trust update or a downgrade permit (`root-threshold`), and how
//! far one install may jump ahead in version (fast-forward defence).
//!
//! Policy text (`policy` in a trust dir), one directive a line, `#` comments:
//!
//! ```text
//! root-threshold 2        # trust updates and downgrade permits
//! default 1               # names no rule matches
//! max-version-step 1000   # refuse installs that jump further ahead
//! rule agents/* 1         # `*` only as the last character: prefix match
//! rule firmware 2
//! ```
//!
//! Firmware (a bundle the board's config names as its root image, see
//! [`Context::firmware`]) needs [`Policy::firmware_threshold_for`]: at
//! least `root-threshold`, unless a rule names that exact bundle (no `*`),
//! which is the policy saying otherwise explicitly. Replacing the root
//! filesystem and PID 1 is worth as much as changing who is trusted.

use crate::envelope::{Envelope, MAGIC_PERMIT, MAGIC_TRUST};
use crate::error::Error;
use crate::header::{check_name, Header};
use crate::sig::{self, PublicKey};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Default for `max-version-step`.
pub const DEFAULT_MAX_VERSION_STEP: u64 = 1000;
/// Most rules in a policy.
pub const MAX_RULES: usize = 64;
/// Most root keys.
pub const MAX_KEYS: usize = 32;

/// One per-name rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// An exact name, or a prefix followed by `*`.
    pub pattern: String,
    /// Signatures from distinct root keys required.
    pub threshold: u8,
}

impl Rule {
    fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.pattern == name,
        }
    }
}

/// Thresholds and limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Signatures needed on trust updates and downgrade permits.
    pub root_threshold: u8,
    /// Signatures needed on a bundle no rule matches.
    pub default_threshold: u8,
    /// Per-name rules, first match wins.
    pub rules: Vec<Rule>,
    /// Largest version increase one install may make.
    pub max_version_step: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            root_threshold: 1,
            default_threshold: 1,
            rules: Vec::new(),
            max_version_step: DEFAULT_MAX_VERSION_STEP,
        }
    }
}

impl Policy {
    /// Parses the policy text format described in the module docs.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut p = Policy::default();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let bad = |reason| Error::BadPolicy {
                line: line_no,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["root-threshold", n] => p.root_threshold = threshold(n).ok_or(bad("threshold must be 1-255"))?,
                ["default", n] => p.default_threshold = threshold(n).ok_or(bad("threshold must be 1-255"))?,
                ["max-version-step", n] => {
                    p.max_version_step = n
                        .parse()
                        .ok()
                        .filter(|&v: &u64| v > 0)
                        .ok_or(bad("max-version-step must be a positive integer"))?
                }
                ["rule", pattern, n] => {
                    let base = pattern.strip_suffix('*').unwrap_or(pattern);
                    if base.contains('*') {
                        return Err(bad("`*` may only end a pattern"));
                    }
                    let checkable = base.trim_end_matches('/');
                    if !checkable.is_empty() && check_name(checkable).is_err() {
                        return Err(bad("pattern is not a valid bundle name or prefix"));
                    }
                    if p.rules.len() >= MAX_RULES {
                        return Err(bad("more than 64 rules"));
                    }
                    p.rules.push(Rule {
                        pattern: (*pattern).to_string(),
                        threshold: threshold(n).ok_or(bad("threshold must be 1-255"))?,
                    });
                }
                _ => return Err(bad("expected `root-threshold N`, `default N`, `max-version-step N` or `rule PATTERN N`")),
            }
        }
        Ok(p)
    }

    /// The policy in its text form (parses back to itself).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "root-threshold {}\ndefault {}\nmax-version-step {}\n",
            self.root_threshold, self.default_threshold, self.max_version_step
        );
        for r in &self.rules {
            s.push_str(&format!("rule {} {}\n", r.pattern, r.threshold));
        }
        s
    }

    /// Signatures the firmware bundle `name` needs: what a rule naming
    /// exactly `name` says, else the larger of its usual threshold and
    /// `root-threshold` (a `default` or a prefix rule never lowers it).
    pub fn firmware_threshold_for(&self, name: &str) -> u8 {
        self.rules
            .iter()
            .find(|r| r.pattern == name)
            .map_or(self.threshold_for(name).max(self.root_threshold), |r| {
                r.threshold
            })
    }

    /// Signatures a bundle called `name` needs.
    pub fn threshold_for(&self, name: &str) -> u8 {
        self.rules
            .iter()
            .find(|r| r.matches(name))
            .map_or(self.default_threshold, |r| r.threshold)
    }

    fn check_reachable(&self, keys: usize) -> Result<(), Error> {
        let all = [
            ("root-threshold", self.root_threshold),
            ("default", self.default_threshold),
        ];
        for (rule, need) in all
            .iter()
            .map(|(r, n)| (r.to_string(), *n))
            .chain(self.rules.iter().map(|r| (r.pattern.clone(), r.threshold)))
        {
            if need == 0 {
                return Err(Error::BadPolicy {
                    line: 0,
                    reason: "thresholds must be at least 1",
                });
            }
            if usize::from(need) > keys {
                return Err(Error::UnreachableThreshold { rule, need, keys });
            }
        }
        Ok(())
    }
}

/// The runtime of a firmware bundle: its entry is a root image.
pub const FIRMWARE_RUNTIME: &str = "firmware";

/// The signatures `header` needs, after the firmware checks: a bundle is
/// firmware by the board's naming it, never by its own header's say-so.
fn firmware_rule(policy: &Policy, header: &Header, ctx: &Context<'_>) -> Result<u8, Error> {
    let declares = header.runtime == FIRMWARE_RUNTIME;
    let named = ctx.firmware.map(|names| names.contains(&header.name));
    match named {
        Some(false) if declares => Err(Error::NotBoardFirmware {
            name: header.name.clone(),
        }),
        Some(true) if !declares => Err(Error::FirmwareRuntime {
            name: header.name.clone(),
            runtime: header.runtime.clone(),
        }),
        _ if declares => Ok(policy.firmware_threshold_for(&header.name)),
        _ => Ok(policy.threshold_for(&header.name)),
    }
}

fn threshold(s: &str) -> Option<u8> {
    s.parse().ok().filter(|&n: &u8| n > 0)
}

/// What the device knows about itself when checking a bundle. `None` skips
/// the check: a board without a trustworthy clock passes `now: None` and so
/// cannot enforce expiry (see docs/trust.md, "freeze").
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    pub now: Option<u64>,
    pub arch: Option<&'a str>,
    pub board: Option<&'a str>,
    /// The bundle names this board takes as its firmware (its boot
    /// config's `[slots] firmware`); `None` skips that check (a host-side
    /// `quilt bundle verify`, which knows no board). A bundle declaring the
    /// `firmware` runtime under any other name is refused; one of these
    /// names needs [`Policy::firmware_threshold_for`] signatures.
    pub firmware: Option<&'a [String]>,
}

/// Root keys and the policy over them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    pub keys: Vec<PublicKey>,
    pub policy: Policy,
    /// Sequence of the trust update that produced this state (0: the image's).
    pub sequence: u64,
}

/// The signed body of a key-rotation document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustUpdate {
    pub format: u8,
    /// Must be above the device's current sequence (no replay of old updates).
    pub sequence: u64,
    pub keys: Vec<PublicKey>,
    pub policy: Policy,
    pub expires: Option<u64>,
}

/// The signed body of a downgrade permit: "installing `version` of `name`
/// is allowed even though a newer one was installed".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DowngradePermit {
    pub format: u8,
    pub name: String,
    pub version: u64,
    /// Per-name counter so one permit cannot be replayed after use.
    pub sequence: u64,
    pub expires: Option<u64>,
}

fn decode_exact<T: serde::de::DeserializeOwned + Serialize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, Error> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) if postcard::to_allocvec(&v).is_ok_and(|b| b == bytes) => Ok(v),
        Ok((_, [])) => Err(Error::NonCanonical { what }),
        Err(postcard::Error::DeserializeBadUtf8) => Err(Error::NotUtf8 { what }),
        _ => Err(Error::Malformed { what }),
    }
}

fn check_expiry(what: &'static str, expires: Option<u64>, ctx: &Context<'_>) -> Result<(), Error> {
    if let (Some(expires), Some(now)) = (expires, ctx.now) {
        if now >= expires {
            return Err(Error::Expired { what, expires, now });
        }
    }
    Ok(())
}

impl Trust {
    /// A trust store from root keys (duplicates dropped) and a policy whose
    /// every threshold these keys can meet.
    pub fn new(mut keys: Vec<PublicKey>, policy: Policy) -> Result<Self, Error> {
        keys.sort();
        keys.dedup();
        if keys.len() > MAX_KEYS {
            return Err(Error::BadPolicy {
                line: 0,
                reason: "more than 32 root keys",
            });
        }
        policy.check_reachable(keys.len())?;
        Ok(Trust {
            keys,
            policy,
            sequence: 0,
        })
    }

    /// Counts distinct trusted keys among `signers` (whose signatures the
    /// caller has already checked); refuses below `need`.
    fn authorise(
        &self,
        what: &'static str,
        name: &str,
        signers: &[PublicKey],
        need: u8,
    ) -> Result<(), Error> {
        let trusted = signers.iter().filter(|k| self.keys.contains(k)).count();
        if trusted >= usize::from(need) {
            return Ok(());
        }
        match signers.iter().find(|k| !self.keys.contains(k)) {
            Some(k) if trusted == 0 => Err(Error::UnknownSigner { what, key: k.id() }),
            _ => Err(Error::BelowThreshold {
                what,
                name: name.to_string(),
                have: trusted,
                need,
            }),
        }
    }

    /// Checks a bundle envelope: every signature verifies, enough trusted
    /// keys signed for the bundle's name, and the bundle suits this device
    /// and time. Returns the decoded header.
    pub fn verify_bundle(&self, env: &Envelope, ctx: &Context<'_>) -> Result<Header, Error> {
        // Signatures are checked over the raw bytes before anything is
        // decoded, so an unsigned header never reaches the decoder here.
        if env.sigs.is_empty() {
            return Err(Error::Unsigned { what: "bundle" });
        }
        let signers = sig::verify_all(sig::DOMAIN_BUNDLE, &env.body, &env.sigs)?;
        let header = Header::decode(&env.body)?;
        // A token this firmware does not know (or no longer grants) is
        // refused here, at install, not first when something runs it.
        for t in &header.tokens {
            crate::tokens::Token::parse(t)?;
        }
        let need = firmware_rule(&self.policy, &header, ctx)?;
        self.authorise("bundle", &header.name, &signers, need)?;
        check_compat(&header, ctx)?;
        if let (Some(nb), Some(now)) = (header.not_before, ctx.now) {
            if now < nb {
                return Err(Error::NotYetValid {
                    not_before: nb,
                    now,
                });
            }
        }
        check_expiry("bundle", header.expires, ctx)?;
        Ok(header)
    }

    /// Applies a key-rotation document: it must be signed by the current
    /// root threshold of current keys *and* by the new threshold of the new
    /// keys (so a typo cannot brick the device), and carry a higher sequence.
    pub fn apply_update(&self, doc: &[u8], ctx: &Context<'_>) -> Result<Trust, Error> {
        let env = Envelope::parse_exact(&MAGIC_TRUST, "trust update", doc)?;
        if env.sigs.is_empty() {
            return Err(Error::Unsigned {
                what: "trust update",
            });
        }
        let signers = sig::verify_all(sig::DOMAIN_TRUST, &env.body, &env.sigs)?;
        let upd: TrustUpdate = decode_exact(&env.body, "trust update")?;
        if upd.format != 1 {
            return Err(Error::UnsupportedFormat {
                what: "trust update",
                version: upd.format,
            });
        }
        self.authorise(
            "trust update",
            "trust",
            &signers,
            self.policy.root_threshold,
        )?;
        if upd.sequence <= self.sequence {
            return Err(Error::StaleTrust {
                current: self.sequence,
                update: upd.sequence,
            });
        }
        check_expiry("trust update", upd.expires, ctx)?;
        let mut next = Trust::new(upd.keys, upd.policy)?;
        next.sequence = upd.sequence;
        next.authorise(
            "trust update",
            "trust (new keys)",
            &signers,
            next.policy.root_threshold,
        )?;
        Ok(next)
    }

    /// Checks a downgrade permit at the root threshold and returns it.
    pub fn verify_permit(&self, doc: &[u8], ctx: &Context<'_>) -> Result<DowngradePermit, Error> {
        let env = Envelope::parse_exact(&MAGIC_PERMIT, "downgrade permit", doc)?;
        if env.sigs.is_empty() {
            return Err(Error::Unsigned {
                what: "downgrade permit",
            });
        }
        let signers = sig::verify_all(sig::DOMAIN_PERMIT, &env.body, &env.sigs)?;
        let p: DowngradePermit = decode_exact(&env.body, "downgrade permit")?;
        if p.format != 1 {
            return Err(Error::UnsupportedFormat {
                what: "downgrade permit",
                version: p.format,
            });
        }
        self.authorise(
            "downgrade permit",
            &p.name,
            &signers,
            self.policy.root_threshold,
        )?;
        check_expiry("downgrade permit", p.expires, ctx)?;
        Ok(p)
    }
}

fn check_compat(h: &Header, ctx: &Context<'_>) -> Result<(), Error> {
    if let Some(arch) = ctx.arch {
        if !h.arch.is_empty() && !h.arch.iter().any(|a| a == arch) {
            return Err(Error::WrongArch {
                device: arch.to_string(),
            });
        }
    }
    if let Some(board) = ctx.board {
        if !h.boards.is_empty() && !h.boards.iter().any(|b| b == board) {
            return Err(Error::WrongBoard {
                device: board.to_string(),
            });
        }
    }
    Ok(())
}

/// Builds a signed document envelope (trust update or permit) — host side.
pub fn sign_document(
    body: Vec<u8>,
    domain: &[u8],
    magic: &[u8; 8],
    signers: &[&crate::sig::SecretKey],
) -> Result<Vec<u8>, Error> {
    let sigs = signers.iter().map(|k| k.sign(domain, &body)).collect();
    let env = Envelope { body, sigs };
    let mut out = Vec::with_capacity(env.encoded_len());
    env.encode_into(magic, &mut out)?;
    Ok(out)
}

impl TrustUpdate {
    /// Decodes an update body (exact, canonical); does not check signatures.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        decode_exact(body, "trust update")
    }

    /// Encodes and signs this update.
    pub fn sign(&self, signers: &[&crate::sig::SecretKey]) -> Result<Vec<u8>, Error> {
        let body = postcard::to_allocvec(self).map_err(|_| Error::Malformed {
            what: "trust update",
        })?;
        sign_document(body, sig::DOMAIN_TRUST, &MAGIC_TRUST, signers)
    }
}

impl DowngradePermit {
    /// Decodes a permit body (exact, canonical); does not check signatures.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        decode_exact(body, "downgrade permit")
    }

    /// Encodes and signs this permit.
    pub fn sign(&self, signers: &[&crate::sig::SecretKey]) -> Result<Vec<u8>, Error> {
        let body = postcard::to_allocvec(self).map_err(|_| Error::Malformed {
            what: "downgrade permit",
        })?;
        sign_document(body, sig::DOMAIN_PERMIT, &MAGIC_PERMIT, signers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::SecretKey;
    use alloc::vec;

    fn keys(n: u8) -> Vec<SecretKey> {
        (1..=n).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    #[test]
    fn policy_parses_and_round_trips() {
        let p = Policy::parse(
            "# demo\nroot-threshold 2\ndefault 1\nmax-version-step 50\nrule agents/* 1\nrule firmware 2 # fw\nrule trust 2\n",
        )
        .unwrap();
        assert_eq!(p.threshold_for("agents/weather"), 1);
        assert_eq!(p.threshold_for("firmware"), 2);
        assert_eq!(p.threshold_for("firmware2"), 1);
        assert_eq!(p.threshold_for("other"), 1);
        assert_eq!(Policy::parse(&p.to_text()).unwrap(), p);
        for bad in [
            "rule a*b 1",
            "rule x 0",
            "default",
            "bogus 1",
            "max-version-step 0",
            "rule ../x 1",
        ] {
            assert!(
                matches!(Policy::parse(bad), Err(Error::BadPolicy { line: 1, .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn unreachable_thresholds_are_refused() {
        let k = keys(1);
        let p = Policy::parse("rule firmware 2").unwrap();
        assert!(matches!(
            Trust::new(vec![k[0].public()], p),
            Err(Error::UnreachableThreshold {
                need: 2,
                keys: 1,
                ..
            })
        ));
    }

    fn update(seq: u64, new_keys: &[SecretKey], root: u8) -> TrustUpdate {
        TrustUpdate {
            format: 1,
            sequence: seq,
            keys: new_keys.iter().map(SecretKey::public).collect(),
            policy: Policy {
                root_threshold: root,
                ..Policy::default()
            },
            expires: None,
        }
    }

    #[test]
    fn rotation_needs_current_threshold_and_higher_sequence() {
        let k = keys(5);
        let trust = Trust::new(
            vec![k[0].public(), k[1].public(), k[2].public()],
            Policy {
                root_threshold: 2,
                ..Policy::default()
            },
        )
        .unwrap();
        let ctx = Context::default();
        let new = [k[2].clone(), k[3].clone(), k[4].clone()];
        let upd = update(1, &new, 2);
        // Only one current key: refused (key compromise below threshold).
        let doc = upd.sign(&[&k[0], &k[3], &k[4]]).unwrap();
        assert!(matches!(
            trust.apply_update(&doc, &ctx),
            Err(Error::BelowThreshold {
                have: 1,
                need: 2,
                ..
            })
        ));
        // Two current keys, but only one new key: refused.
        let doc = upd.sign(&[&k[0], &k[1], &k[3]]).unwrap();
        assert!(matches!(
            trust.apply_update(&doc, &ctx),
            Err(Error::BelowThreshold { .. })
        ));
        // Two current (0,2) and two new (2,3): accepted.
        let doc = upd.sign(&[&k[0], &k[2], &k[3]]).unwrap();
        let next = trust.apply_update(&doc, &ctx).unwrap();
        assert_eq!(next.sequence, 1);
        assert!(next.keys.contains(&k[4].public()) && !next.keys.contains(&k[0].public()));
        // Replaying it against the new state: stale.
        let doc2 = update(1, &new, 2).sign(&[&k[2], &k[3]]).unwrap();
        assert!(matches!(
            next.apply_update(&doc2, &ctx),
            Err(Error::StaleTrust { .. })
        ));
        // Old keys no longer count.
        let doc3 = update(2, &new, 2).sign(&[&k[0], &k[1]]).unwrap();
        assert!(matches!(
            next.apply_update(&doc3, &ctx),
            Err(Error::UnknownSigner { .. })
        ));
    }

    #[test]
    fn permits_are_checked_at_root_threshold_and_expire() {
        let k = keys(2);
        let trust = Trust::new(
            vec![k[0].public(), k[1].public()],
            Policy {
                root_threshold: 2,
                ..Policy::default()
            },
        )
        .unwrap();
        let p = DowngradePermit {
            format: 1,
            name: "x".into(),
            version: 3,
            sequence: 1,
            expires: Some(100),
        };
        let one = p.sign(&[&k[0]]).unwrap();
        assert!(trust.verify_permit(&one, &Context::default()).is_err());
        let two = p.sign(&[&k[0], &k[1]]).unwrap();
        assert_eq!(trust.verify_permit(&two, &Context::default()).unwrap(), p);
        let late = Context {
            now: Some(100),
            ..Context::default()
        };
        assert!(matches!(
            trust.verify_permit(&two, &late),
            Err(Error::Expired { .. })
        ));
        // A permit's signatures do not make a trust update.
        let mut forged = two.clone();
        forged[..8].copy_from_slice(&MAGIC_TRUST);
        assert!(trust.apply_update(&forged, &Context::default()).is_err());
    }
}
