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
//! | `bus:<topic>:pub` / `bus:<topic>:sub` | publishing to / subscribing to a bus channel the board declares |
//! | `fs:<volume>:ro` / `fs:<volume>:rw` | a named volume of its pod at `/run/volumes/<volume>`, read-only or writable |
//! | `exec:<service>` | starting a process inside that supervised service's container |
//! | `llm:<name>` | acquiring units of a counted resource the board declares (`[[resource]]`), with deadlock detection |
//! | `spawn` / `spawn:<bundle>` | starting child containers (of any installed bundle / of that one) over its own control socket, nested under its cgroup |
//! | `net:<ipv4>:<port>` | TCP connections to that one address, relayed by PID 1 from the same address inside the container (which otherwise has loopback only); the board must allow the destination too |

use crate::error::Error;
use crate::manifest::check_path;
use alloc::string::ToString;

/// Capabilities a token may keep, by the name after `cap:` and number.
/// Each was reviewed against what it unlocks inside a container
/// (docs/containers.md, "Capability tokens"). Those that would undo the
/// container (sys_admin, sys_module, sys_ptrace, sys_chroot, setuid/setgid,
/// setpcap, mknod, sys_rawio, bpf, ...) never had a token, and these were
/// removed because no rule around them could make them safe:
/// `chown`, `fowner` and `dac_override` bypass the file permissions that
/// keep a bus subscriber's memfd read-only and the kernel's root-only
/// files (`/proc/sysrq-trigger`) shut; `sys_nice` gives real-time
/// scheduling, which `cpu.max` does not bound; `sys_resource` lifts the
/// kernel's per-user limits (keyrings, message queues, pipe buffers) that
/// all containers share. A bundle still asking for one is refused
/// ([`REMOVED_CAPS`]).
pub const CAPS: &[(&str, u8)] = &[
    ("kill", 5),
    ("net_bind_service", 10),
    ("net_broadcast", 11),
    ("net_admin", 12),
    ("net_raw", 13),
    ("ipc_lock", 14),
];

/// Capability tokens this firmware refuses although earlier ones took
/// them, and why (see [`CAPS`]).
pub const REMOVED_CAPS: &[(&str, &str)] = &[
    ("chown", "was removed from this firmware: it lets a tool chown any file it can see, the bus's read-only memfds included"),
    ("dac_override", "was removed from this firmware: it bypasses file permissions: a bus subscriber could reopen its memfd writable, and root-only files like /proc/sysrq-trigger open"),
    ("fowner", "was removed from this firmware: it lets a tool chmod any file it can see, the bus's read-only memfds included"),
    ("sys_nice", "was removed from this firmware: real-time scheduling escapes the container's cpu.max"),
    ("sys_resource", "was removed from this firmware: it lifts per-user kernel limits every container shares"),
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
    /// Access to a bus channel.
    Bus(&'a str, BusRole),
    /// Child containers: of any installed bundle (`None`) or of one.
    Spawn(Option<&'a str>),
    /// Units of a counted resource; the whole token (`llm:gpt`) names it.
    Counted(&'a str),
    /// A process inside the container of this supervised service.
    Exec(&'a str),
    /// A pod volume, writable or not.
    Fs(&'a str, bool),
    /// TCP to this IPv4 address and port.
    Net(core::net::SocketAddrV4),
}

/// What a bus token lets a container do on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusRole {
    /// Write messages (the channel's one publisher).
    Pub,
    /// Read messages (one of its subscribers).
    Sub,
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
                .ok_or_else(|| match REMOVED_CAPS.iter().find(|(n, _)| *n == name) {
                    Some((_, why)) => bad(why),
                    None => bad("names no capability a tool may keep (kill, net_bind_service, net_broadcast, net_admin, net_raw, ipc_lock)"),
                });
        }
        if let Some(dir) = s.strip_prefix("write:") {
            return match check_path(dir) {
                Ok(()) => Ok(Token::Write(dir)),
                Err(_) => Err(bad("needs a relative directory of the bundle without `.` or `..`, e.g. `write:data`")),
            };
        }
        if s == "spawn" {
            return Ok(Token::Spawn(None));
        }
        if let Some(name) = s.strip_prefix("spawn:") {
            return match crate::header::check_name(name) {
                Ok(()) => Ok(Token::Spawn(Some(name))),
                Err(_) => Err(bad("needs a bundle name, e.g. `spawn:examples/hello`")),
            };
        }
        if let Some(rest) = s.strip_prefix("fs:") {
            let (vol, mode) = rest.rsplit_once(':').unwrap_or((rest, ""));
            let writable = match mode {
                "rw" => true,
                "ro" => false,
                _ => return Err(bad("needs a mode: `fs:<volume>:ro` or `fs:<volume>:rw`")),
            };
            if !topic_like(vol) || vol.contains('.') {
                return Err(bad("names a volume outside [a-z0-9_-]{1,48}"));
            }
            return Ok(Token::Fs(vol, writable));
        }
        if let Some(name) = s.strip_prefix("exec:") {
            let ok = (1..=32).contains(&name.len())
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            return if ok {
                Ok(Token::Exec(name))
            } else {
                Err(bad("needs a service name, e.g. `exec:calc`"))
            };
        }
        if let Some(name) = s.strip_prefix("llm:") {
            return if topic_like(name) {
                Ok(Token::Counted(s))
            } else {
                Err(bad("names a resource outside [a-z0-9._-]{1,48}"))
            };
        }
        if let Some(rest) = s.strip_prefix("net:") {
            let (ip, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
            let ip = ip.parse::<core::net::Ipv4Addr>().ok();
            // Canonical text only (no leading zeros or `+`): one address,
            // one spelling, so the board's allow-list compares strings.
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && p.to_string() == port);
            return match (ip, port) {
                (Some(ip), Some(port)) if !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() => {
                    Ok(Token::Net(core::net::SocketAddrV4::new(ip, port)))
                }
                _ => Err(bad("needs an IPv4 address and a port, e.g. `net:10.0.2.2:8080` (host names need a resolver the board does not run)")),
            };
        }
        if let Some(rest) = s.strip_prefix("bus:") {
            let (topic, role) = rest.rsplit_once(':').unwrap_or((rest, ""));
            let role = match role {
                "pub" => BusRole::Pub,
                "sub" => BusRole::Sub,
                _ => return Err(bad("needs a role: `bus:<topic>:pub` or `bus:<topic>:sub`")),
            };
            if !topic_like(topic) {
                return Err(bad("names a topic outside [a-z0-9._-]{1,48}"));
            }
            return Ok(Token::Bus(topic, role));
        }
        Err(bad(
            "is not one this firmware knows (userns, cap:<name>, write:<dir>, bus:<topic>:pub|sub, spawn, spawn:<bundle>, llm:<name>, exec:<service>, fs:<volume>:ro|rw, net:<ipv4>:<port>)",
        ))
    }
}

/// `[a-z0-9._-]{1,48}`: bus topics and resource names.
fn topic_like(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
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
        assert_eq!(
            Token::parse("bus:calc.req:pub"),
            Ok(Token::Bus("calc.req", BusRole::Pub))
        );
        assert_eq!(
            Token::parse("bus:telemetry:sub"),
            Ok(Token::Bus("telemetry", BusRole::Sub))
        );
        assert_eq!(Token::parse("spawn"), Ok(Token::Spawn(None)));
        assert_eq!(Token::parse("llm:gpt"), Ok(Token::Counted("llm:gpt")));
        assert_eq!(Token::parse("exec:calc"), Ok(Token::Exec("calc")));
        assert_eq!(Token::parse("fs:shared:ro"), Ok(Token::Fs("shared", false)));
        assert_eq!(Token::parse("fs:cache:rw"), Ok(Token::Fs("cache", true)));
        assert_eq!(
            Token::parse("spawn:examples/hello"),
            Ok(Token::Spawn(Some("examples/hello")))
        );
        assert_eq!(
            Token::parse("net:10.0.2.2:8080"),
            Ok(Token::Net(core::net::SocketAddrV4::new(
                core::net::Ipv4Addr::new(10, 0, 2, 2),
                8080
            )))
        );
    }

    #[test]
    fn net_tokens_name_one_ipv4_destination() {
        for bad in [
            "net:example.com:80",
            "net:10.0.2.2",
            "net:10.0.2.2:0",
            "net:10.0.2.2:080",
            "net:10.0.2.2:+80",
            "net:10.0.2.2:65536",
            "net:0.0.0.0:80",
            "net:255.255.255.255:80",
            "net:224.0.0.1:80",
            "net:[::1]:80",
            "net:010.0.2.2:80",
        ] {
            assert!(
                matches!(Token::parse(bad), Err(Error::BadToken { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn capabilities_that_undo_other_guarantees_are_refused_with_the_reason() {
        for (cap, _) in REMOVED_CAPS {
            let t = alloc::format!("cap:{cap}");
            match Token::parse(&t) {
                Err(Error::BadToken { reason, .. }) => assert!(reason.starts_with("was removed")),
                other => panic!("{t}: {other:?}"),
            }
        }
        assert!(CAPS
            .iter()
            .all(|(n, _)| REMOVED_CAPS.iter().all(|(r, _)| r != n)));
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
            "bus:calc",
            "bus:calc:rw",
            "bus::pub",
            "bus:Calc:sub",
            "bus:a/b:pub",
            "spawn:",
            "spawn:../x",
            "spawns",
            "llm:",
            "llm:GPT",
            "exec:",
            "exec:a/b",
            "fs:shared",
            "fs:../x:rw",
            "fs:a.b:ro",
        ] {
            let e = Token::parse(bad).unwrap_err();
            assert!(
                matches!(e, Error::BadToken { ref token, .. } if token == bad),
                "{bad}: {e:?}"
            );
        }
    }
}
