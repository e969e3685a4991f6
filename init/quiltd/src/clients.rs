//! The authorized-clients file: which client keys may call the gateway,
//! under which name and role. One line per key:
//!
//! ```text
//! # role     name     public key (BASE.pub of `quilt key gen --client`)
//! operator   alice    ed25519:3b6a27bc…
//! agent      ci-bot   ed25519:9f01e2d4…
//! ```
//!
//! `#` starts a comment. A bad line refuses the whole file, naming the line:
//! a typo must not silently lock a client out or let one in.

use quilt_gateway_auth::fingerprint::Fingerprint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The default place, beside the bundle trust store.
pub const DEFAULT_PATH: &str = "/etc/quilt/trust/authorized-clients";

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List bundles and their tools, run tools.
    Agent,
    /// Everything the gateway's control grant allows.
    Operator,
}

impl Role {
    /// Its name in the file and in replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
        }
    }

    /// Whether a holder of `self` may do what needs `need`.
    pub fn allows(self, need: Role) -> bool {
        self >= need
    }
}

/// One authorized client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its name (logs and replies).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its public key.
    pub public: [u8; 32],
}

/// What is wrong with one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// Not three words.
    #[error("expected `ROLE NAME ed25519:<64 hex>`")]
    Shape,
    /// Not `agent` or `operator`.
    #[error("role {0:?} is neither agent nor operator")]
    Role(String),
    /// A name with odd characters.
    #[error("name {0:?} must be 1-64 of [A-Za-z0-9._-]")]
    Name(String),
    /// The key does not parse.
    #[error("{0}")]
    Key(#[from] quilt_gateway_auth::keys::KeyError),
    /// The key is listed already.
    #[error("this key is already listed on line {0}")]
    DuplicateKey(usize),
    /// The name is taken.
    #[error("name {0:?} is already used on line {1}")]
    DuplicateName(String, usize),
}

/// Why the file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// It could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{path}:{line}: {error}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        error: LineError,
    },
}

/// The parsed file, keyed by the clients' key fingerprints (the `keyid`
/// their signatures carry).
#[derive(Debug, Default, Clone)]
pub struct Clients {
    by_keyid: HashMap<String, Client>,
}

impl Clients {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Clients, ClientsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Clients::parse(&text).map_err(|(line, error)| ClientsError::Line {
            path: path.to_owned(),
            line,
            error,
        })
    }

    /// Parses the text; the error names the 1-based line.
    pub fn parse(text: &str) -> Result<Clients, (usize, LineError)> {
        let mut by_keyid = HashMap::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut seen_keys: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let c = parse_line(line).map_err(|e| (n, e))?;
            if let Some(&first) = seen_keys.get(&c.public) {
                return Err((n, LineError::DuplicateKey(first)));
            }
            if let Some(&first) = seen_names.get(&c.name) {
                return Err((n, LineError::DuplicateName(c.name, first)));
            }
            seen_keys.insert(c.public, n);
            seen_names.insert(c.name.clone(), n);
            by_keyid.insert(Fingerprint::of_ed25519(&c.public).to_string(), c);
        }
        Ok(Clients { by_keyid })
    }

    /// The client whose key has this fingerprint.
    pub fn get(&self, keyid: &str) -> Option<&Client> {
        self.by_keyid.get(keyid)
    }

    /// How many clients.
    pub fn len(&self) -> usize {
        self.by_keyid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_keyid.is_empty()
    }
}

fn parse_line(line: &str) -> Result<Client, LineError> {
    let mut w = line.split_whitespace();
    let (Some(role), Some(name), Some(key), None) = (w.next(), w.next(), w.next(), w.next()) else {
        return Err(LineError::Shape);
    };
    let role = match role {
        "agent" => Role::Agent,
        "operator" => Role::Operator,
        other => return Err(LineError::Role(other.to_owned())),
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(LineError::Name(name.to_owned()));
    }
    let public = quilt_gateway_auth::keys::parse_public(key)?;
    Ok(Client {
        name: name.to_owned(),
        role,
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_gateway_auth::keys::public_text;

    fn key(b: u8) -> String {
        public_text(&[b; 32])
    }

    #[test]
    fn parses_roles_names_comments_and_blank_lines() {
        let text = format!(
            "# who may call\n\noperator alice {}  # laptop\nagent ci-bot {}\n",
            key(1),
            key(2)
        );
        let c = Clients::parse(&text).unwrap();
        assert_eq!(c.len(), 2);
        let alice = c
            .get(&Fingerprint::of_ed25519(&[1; 32]).to_string())
            .unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Operator));
        assert!(Role::Operator.allows(Role::Agent));
        assert!(!Role::Agent.allows(Role::Operator));
        assert!(Clients::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_refused_with_their_numbers() {
        let bad = |body: &str| Clients::parse(&format!("# head\n{body}\n")).unwrap_err();
        assert_eq!(bad("operator alice"), (2, LineError::Shape));
        assert_eq!(
            bad(&format!("root alice {}", key(1))),
            (2, LineError::Role("root".into()))
        );
        assert_eq!(
            bad(&format!("agent al/ice {}", key(1))),
            (2, LineError::Name("al/ice".into()))
        );
        assert!(matches!(bad("agent a ed25519:00"), (2, LineError::Key(_))));
        assert_eq!(
            bad(&format!("agent a {}\nagent b {}", key(1), key(1))),
            (3, LineError::DuplicateKey(2))
        );
        assert_eq!(
            bad(&format!("agent a {}\n\noperator a {}", key(1), key(2))),
            (4, LineError::DuplicateName("a".into(), 2))
        );
    }

    #[test]
    fn load_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authorized-clients");
        std::fs::write(&p, "agent x\n").unwrap();
        let e = Clients::load(&p).unwrap_err();
        assert!(matches!(e, ClientsError::Line { line: 1, .. }));
        assert!(e.to_string().contains("authorized-clients:1"));
    }
}
