//! The tokens a bundle asks for in its signed header, and what each one
//! means. A token grants something the default container withholds; the
//! signature over the header is what makes the request binding, and a
//! device refuses to start a bundle carrying a token it does not know
//! rather than run it with less (or more) than it was signed for.
//!
//! | token | grants |
//! |---|---|
//! | `userns` | a user namespace of its own: uid/gid 0..65535 inside map to an unprivileged host range |
//! | `cap:<name>` | keeps that one capability (see [`CAPS`]) |
//! | `write:<dir>` | a writable overlay over `/app/<dir>` (writes land in memory and vanish with the container) |

use crate::error::Error;
use crate::manifest::check_path;
use alloc::string::ToString;

/// Capabilities a token may keep, by the name after `cap:` and number.
/// Those that would undo the container (sys_admin, sys_module, sys_ptrace,
/// sys_chroot, setuid/setgid, setpcap, mknod, sys_rawio, bpf, ...) have no
/// token.
pub const CAPS: &[(&str, u8)] = &[
    ("chown", 0),
    ("dac_override", 1),
    ("fowner", 3),
    ("kill", 5),
    ("net_bind_service", 10),
    ("net_broadcast", 11),
    ("net_admin", 12),
    ("net_raw", 13),
    ("ipc_lock", 14),
    ("sys_nice", 23),
    ("sys_resource", 24),
];

/// One parsed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Run in a user namespace of its own.
    UserNs,
    /// Keep capability number `.1` (named `.0`).
    Cap(&'static str, u8),
    /// A writable overlay over this bundle directory (relative path).
    Write(&'a str),
}

impl<'a> Token<'a> {
    /// Parse one token string from a header.
    pub fn parse(s: &'a str) -> Result<Token<'a>, Error> {
        let bad = |reason| Error::BadToken {
            token: s.to_string(),
            reason,
        };
        if s == "userns" {
            return Ok(Token::UserNs);
        }
        if let Some(name) = s.strip_prefix("cap:") {
            return CAPS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(n, nr)| Token::Cap(n, nr))
                .ok_or_else(|| {
                    bad("names no capability a tool may keep (chown, dac_override, fowner, kill, net_bind_service, net_broadcast, net_admin, net_raw, ipc_lock, sys_nice, sys_resource)")
                });
        }
        if let Some(dir) = s.strip_prefix("write:") {
            return match check_path(dir) {
                Ok(()) => Ok(Token::Write(dir)),
                Err(_) => Err(bad("needs a relative directory of the bundle without `.` or `..`, e.g. `write:data`")),
            };
        }
        Err(bad(
            "is not one this firmware knows (userns, cap:<name>, write:<dir>)",
        ))
    }
}

/// Parse every token, stopping at the first bad one.
pub fn parse_all<'a, I>(tokens: I) -> Result<alloc::vec::Vec<Token<'a>>, Error>
where
    I: IntoIterator<Item = &'a str>,
{
    tokens.into_iter().map(Token::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_parse() {
        assert_eq!(Token::parse("userns"), Ok(Token::UserNs));
        assert_eq!(
            Token::parse("cap:net_bind_service"),
            Ok(Token::Cap("net_bind_service", 10))
        );
        assert_eq!(
            Token::parse("write:data/cache"),
            Ok(Token::Write("data/cache"))
        );
    }

    #[test]
    fn unknown_and_dangerous_tokens_are_refused() {
        for bad in [
            "cap:sys_admin",
            "cap:sys_module",
            "cap:",
            "write:",
            "write:../etc",
            "write:/etc",
            "write:a/./b",
            "root",
            "userns:0",
        ] {
            let e = Token::parse(bad).unwrap_err();
            assert!(
                matches!(e, Error::BadToken { ref token, .. } if token == bad),
                "{bad}: {e:?}"
            );
        }
    }
}
