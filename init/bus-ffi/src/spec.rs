//! The `QUILT_BUS` environment variable: which inherited fds belong to
//! which channel and role. `quilt-init` writes it; this is a pure parser
//! over the string, so it is tested without fds.
//!
//! `QUILT_BUS="<topic>:<role>:<fd>,<fd>...;<topic>:<role>:<fd>,..."`
//! * `pub`: the data memfd (read-write), then every subscriber region
//!   (read-only), in subscriber order;
//! * `sub`: the data memfd (read-only), then this subscriber's region
//!   (read-write).

use core::fmt;

/// Longest topic name.
pub const MAX_TOPIC: usize = 48;
/// Most fds one entry may name: the data fd and up to 64 subscribers.
pub const MAX_FDS: usize = 65;

/// Which end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The publisher (`pub`).
    Pub,
    /// A subscriber (`sub`).
    Sub,
}

impl Role {
    /// The C ABI's number: 0 publisher, 1 subscriber.
    pub fn from_u32(n: u32) -> Option<Self> {
        match n {
            0 => Some(Self::Pub),
            1 => Some(Self::Sub),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pub" => Some(Self::Pub),
            "sub" => Some(Self::Sub),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pub => "pub",
            Self::Sub => "sub",
        })
    }
}

/// Why `QUILT_BUS` (or a topic asked for) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A topic outside `[a-z0-9._-]{1,48}`.
    #[error("bad topic {topic:?}: want 1 to 48 of a-z 0-9 . _ -")]
    BadTopic {
        /// The topic.
        topic: String,
    },
    /// An entry of the variable is malformed.
    #[error("QUILT_BUS entry {entry:?} is malformed: {reason}")]
    BadEntry {
        /// The entry.
        entry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The same topic and role twice.
    #[error("QUILT_BUS names {topic}:{role} twice")]
    Duplicate {
        /// The topic.
        topic: String,
        /// The role.
        role: Role,
    },
    /// No entry for the topic and role asked for.
    #[error(
        "QUILT_BUS has no {topic}:{role} (it has: {available}); \
         does the tool's quilt.toml ask for the token bus:{topic}:{role}?"
    )]
    NotFound {
        /// The topic.
        topic: String,
        /// The role.
        role: Role,
        /// What the variable does name.
        available: String,
    },
}

/// One `<topic>:<role>:<fds>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The channel.
    pub topic: &'a str,
    /// Which end.
    pub role: Role,
    /// The inherited fds, in the order described in the module docs.
    pub fds: Vec<i32>,
}

/// Checks a topic name: `[a-z0-9._-]{1,48}`.
pub fn check_topic(topic: &str) -> Result<(), SpecError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC
        && topic
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::BadTopic {
            topic: topic.into(),
        })
    }
}

/// Parses the whole variable (every entry is checked, not only the one
/// asked for). Empty entries (a trailing `;`) are ignored.
pub fn parse(spec: &str) -> Result<Vec<Entry<'_>>, SpecError> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for text in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |reason| SpecError::BadEntry {
            entry: text.into(),
            reason,
        };
        let mut parts = text.splitn(3, ':');
        let (Some(topic), Some(role), Some(fds)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("want <topic>:<role>:<fd>,<fd>..."));
        };
        check_topic(topic)?;
        let role = Role::parse(role).ok_or_else(|| bad("role is neither pub nor sub"))?;
        let fds = fds
            .split(',')
            .map(|n| n.parse::<i32>().ok().filter(|fd| *fd >= 0))
            .collect::<Option<Vec<i32>>>()
            .ok_or_else(|| bad("fds must be non-negative integers"))?;
        match role {
            Role::Pub if fds.len() > MAX_FDS => return Err(bad("more than 65 fds")),
            Role::Sub if fds.len() != 2 => return Err(bad("sub wants exactly 2 fds")),
            _ => {}
        }
        if entries.iter().any(|e| e.topic == topic && e.role == role) {
            return Err(SpecError::Duplicate {
                topic: topic.into(),
                role,
            });
        }
        entries.push(Entry { topic, role, fds });
    }
    Ok(entries)
}

/// The fds of `topic` in `role`.
pub fn find(spec: &str, topic: &str, role: Role) -> Result<Vec<i32>, SpecError> {
    check_topic(topic)?;
    let entries = parse(spec)?;
    if let Some(e) = entries.iter().find(|e| e.topic == topic && e.role == role) {
        return Ok(e.fds.clone());
    }
    let available = if entries.is_empty() {
        "nothing".to_owned()
    } else {
        entries
            .iter()
            .map(|e| format!("{}:{}", e.topic, e.role))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(SpecError::NotFound {
        topic: topic.into(),
        role,
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_role() {
        let spec = "calc.req:pub:5,6;calc.rep:sub:7,8;";
        assert_eq!(find(spec, "calc.req", Role::Pub).unwrap(), vec![5, 6]);
        assert_eq!(find(spec, "calc.rep", Role::Sub).unwrap(), vec![7, 8]);
        let err = find(spec, "calc.req", Role::Sub).unwrap_err();
        assert!(matches!(err, SpecError::NotFound { .. }));
        assert!(
            err.to_string().contains("calc.req:pub, calc.rep:sub"),
            "{err}"
        );
    }

    #[test]
    fn publisher_without_subscribers_is_allowed() {
        assert_eq!(find("t:pub:3", "t", Role::Pub).unwrap(), vec![3]);
    }

    #[test]
    fn refuses_malformed_entries() {
        for spec in [
            "t:pub",
            "t:both:3",
            "t:pub:",
            "t:pub:3,-1",
            "t:pub:3,x",
            "t:sub:3",
            "t:sub:3,4,5",
            "T:pub:3",
            "t:pub:3;t:pub:4",
        ] {
            assert!(parse(spec).is_err(), "{spec}");
        }
        assert!(parse(&format!("{}:pub:1", "a".repeat(49))).is_err());
        assert!(parse(&format!("{}:pub:1", "a".repeat(48))).is_ok());
        let many = vec!["3"; 66].join(",");
        assert!(parse(&format!("t:pub:{many}")).is_err());
    }

    #[test]
    fn checks_the_topic_asked_for() {
        assert!(matches!(
            find("", "../x", Role::Pub),
            Err(SpecError::BadTopic { .. })
        ));
        assert!(matches!(
            find("", "x", Role::Pub),
            Err(SpecError::NotFound { .. })
        ));
    }
}
