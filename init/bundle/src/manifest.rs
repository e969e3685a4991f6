//! The manifest: every path in the bundle, its kind, mode and chunks.
//!
//! Entries are sorted by path bytes, so a tree has exactly one manifest and
//! duplicates cannot hide. [`Manifest::validate`] refuses everything a hostile
//! packer could use against the device: absolute paths, `.`/`..`, empty or
//! control-character components, setuid/setgid/sticky bits, symlinks that
//! leave the bundle or pass through other symlinks, entries whose parent is
//! not a directory of the bundle. Device nodes, fifos and sockets have no
//! representation at all. Names are `String`s, so non-UTF-8 fails to decode.

use crate::error::Error;
use crate::hash::{self, Hash};
use crate::{merkle, CHUNK_MAX, MAX_CHUNKS, MAX_ENTRIES};
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Longest path, in bytes.
pub const MAX_PATH: usize = 1024;
/// Longest path component, in bytes.
pub const MAX_COMPONENT: usize = 255;

/// One chunk of a file: its leaf hash and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: Hash,
    pub len: u32,
}

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// A directory with permission bits (`0o777` mask).
    Dir { mode: u16 },
    /// A regular file: permission bits, size and chunks in order.
    File {
        mode: u16,
        size: u64,
        chunks: Vec<ChunkRef>,
    },
    /// A symbolic link that must resolve inside the bundle.
    Symlink { target: String },
}

/// One path of the bundle (relative, `/`-separated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub node: Node,
}

/// The manifest itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// Totals the header must agree with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    pub files: u32,
    pub total_size: u64,
    pub chunk_count: u32,
    pub content_len: u64,
}

impl Manifest {
    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(self).map_err(|_| Error::Malformed { what: "manifest" })
    }

    /// Decodes a manifest that must fill `bytes` exactly. Does not validate.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match postcard::take_from_bytes::<Manifest>(bytes) {
            // One manifest, one byte string: postcard accepts padded
            // varints, so re-encode and compare.
            Ok((m, [])) if m.encode().is_ok_and(|b| b == bytes) => Ok(m),
            Ok((_, [])) => Err(Error::NonCanonical { what: "manifest" }),
            Ok(_) => Err(Error::Malformed { what: "manifest" }),
            Err(postcard::Error::DeserializeBadUtf8) => Err(Error::NotUtf8 { what: "manifest" }),
            Err(_) => Err(Error::Malformed { what: "manifest" }),
        }
    }

    fn lookup(&self, path: &str) -> Option<&Node> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|e| &e.node)
    }

    fn is_dir(&self, path: &str) -> bool {
        matches!(self.lookup(path), Some(Node::Dir { .. }))
    }

    /// Refuses hostile or inconsistent content; returns the totals.
    pub fn validate(&self) -> Result<Summary, Error> {
        if self.entries.len() > MAX_ENTRIES as usize {
            return Err(Error::TooLarge {
                what: "manifest entry count",
                size: self.entries.len() as u64,
                max: u64::from(MAX_ENTRIES),
            });
        }
        let mut summary = Summary::default();
        let mut prev: Option<&str> = None;
        for e in &self.entries {
            let path = e.path.as_str();
            check_path(path)?;
            if let Some(p) = prev {
                match p.as_bytes().cmp(path.as_bytes()) {
                    core::cmp::Ordering::Less => {}
                    core::cmp::Ordering::Equal => {
                        return Err(Error::DuplicatePath {
                            path: path.to_string(),
                        })
                    }
                    core::cmp::Ordering::Greater => {
                        return Err(Error::Unsorted {
                            path: path.to_string(),
                        })
                    }
                }
            }
            prev = Some(path);
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !self.is_dir(parent) {
                    return Err(Error::MissingParent {
                        path: path.to_string(),
                    });
                }
            }
            match &e.node {
                Node::Dir { mode } => check_mode(path, *mode)?,
                Node::File { mode, size, chunks } => {
                    check_mode(path, *mode)?;
                    let mut sum = 0u64;
                    for c in chunks {
                        if c.len == 0 || c.len > CHUNK_MAX {
                            return Err(Error::BadChunkLength {
                                path: path.to_string(),
                                len: c.len,
                            });
                        }
                        sum += u64::from(c.len);
                    }
                    if sum != *size {
                        return Err(Error::SizeMismatch {
                            path: path.to_string(),
                        });
                    }
                    summary.files += 1;
                    summary.total_size += size;
                }
                Node::Symlink { target } => self.check_symlink(path, target)?,
            }
        }
        let order = self.chunk_order();
        summary.chunk_count = u32::try_from(order.len()).unwrap_or(u32::MAX);
        if summary.chunk_count > MAX_CHUNKS {
            return Err(Error::TooLarge {
                what: "chunk count",
                size: order.len() as u64,
                max: u64::from(MAX_CHUNKS),
            });
        }
        summary.content_len = order.iter().map(|c| u64::from(c.len)).sum();
        Ok(summary)
    }

    fn check_symlink(&self, path: &str, target: &str) -> Result<(), Error> {
        let escapes = || Error::SymlinkEscapes {
            path: path.to_string(),
            target: target.to_string(),
        };
        if target.is_empty() || target.len() > MAX_PATH {
            return Err(escapes());
        }
        if target.chars().any(char::is_control) {
            return Err(Error::BadCharacter {
                path: path.to_string(),
            });
        }
        if target.starts_with('/') {
            return Err(escapes());
        }
        // Resolve lexically from the link's directory; every component we
        // pass *through* must be a real directory of the bundle, so a chain
        // of symlinks cannot climb out where the lexical walk stays inside.
        let mut stack: Vec<&str> = match path.rsplit_once('/') {
            Some((parent, _)) => parent.split('/').collect(),
            None => Vec::new(),
        };
        let mut comps = target
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .peekable();
        let mut resolved = String::new();
        while let Some(c) = comps.next() {
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(escapes());
                }
                continue;
            }
            stack.push(c);
            if comps.peek().is_some() {
                resolved.clear();
                for (i, s) in stack.iter().enumerate() {
                    if i > 0 {
                        resolved.push('/');
                    }
                    resolved.push_str(s);
                }
                if !self.is_dir(&resolved) {
                    return Err(escapes());
                }
            }
        }
        Ok(())
    }

    /// Distinct chunks in first-appearance order: the order of the `.qb`
    /// chunk section and of the Merkle leaves after the manifest leaf.
    pub fn chunk_order(&self) -> Vec<ChunkRef> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for e in &self.entries {
            if let Node::File { chunks, .. } = &e.node {
                for c in chunks {
                    if seen.insert(c.id) {
                        out.push(*c);
                    }
                }
            }
        }
        out
    }
}

/// The bundle root: the Merkle tree hash over the manifest's leaf hash and
/// then every distinct chunk's leaf hash in stream order.
pub fn bundle_root(manifest_bytes: &[u8], order: &[ChunkRef]) -> Hash {
    let mut leaves = Vec::with_capacity(order.len() + 1);
    leaves.push(hash::leaf(manifest_bytes));
    leaves.extend(order.iter().map(|c| c.id));
    merkle::root(&leaves)
}

/// Checks one relative path against the hostile-path rules.
pub fn check_path(path: &str) -> Result<(), Error> {
    if path.is_empty() {
        return Err(Error::EmptyComponent {
            path: path.to_string(),
        });
    }
    if path.len() > MAX_PATH {
        return Err(Error::PathTooLong {
            path: path.to_string(),
        });
    }
    if path.starts_with('/') {
        return Err(Error::AbsolutePath {
            path: path.to_string(),
        });
    }
    if path.chars().any(char::is_control) {
        return Err(Error::BadCharacter {
            path: path.to_string(),
        });
    }
    for c in path.split('/') {
        if c.is_empty() {
            return Err(Error::EmptyComponent {
                path: path.to_string(),
            });
        }
        if c == "." || c == ".." {
            return Err(Error::DotComponent {
                path: path.to_string(),
            });
        }
        if c.len() > MAX_COMPONENT {
            return Err(Error::PathTooLong {
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

fn check_mode(path: &str, mode: u16) -> Result<(), Error> {
    if mode & !0o777 != 0 {
        return Err(Error::SpecialMode {
            path: path.to_string(),
            mode: u32::from(mode),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn dir(p: &str) -> Entry {
        Entry {
            path: p.into(),
            node: Node::Dir { mode: 0o755 },
        }
    }
    fn file(p: &str, data: &[u8]) -> Entry {
        let chunks = if data.is_empty() {
            vec![]
        } else {
            vec![ChunkRef {
                id: hash::leaf(data),
                len: data.len() as u32,
            }]
        };
        Entry {
            path: p.into(),
            node: Node::File {
                mode: 0o644,
                size: data.len() as u64,
                chunks,
            },
        }
    }
    fn link(p: &str, t: &str) -> Entry {
        Entry {
            path: p.into(),
            node: Node::Symlink { target: t.into() },
        }
    }
    fn m(entries: Vec<Entry>) -> Result<Summary, Error> {
        Manifest { entries }.validate()
    }

    #[test]
    fn a_sane_tree_validates_with_totals() {
        let s = m(vec![
            dir("src"),
            file("src/a.ts", b"aa"),
            file("src/b.ts", b"aa"),
            link("x", "src/a.ts"),
        ])
        .unwrap();
        assert_eq!(
            s,
            Summary {
                files: 2,
                total_size: 4,
                chunk_count: 1,
                content_len: 2
            }
        );
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert!(matches!(
            m(vec![file("/etc/passwd", b"x")]),
            Err(Error::AbsolutePath { .. })
        ));
        assert!(matches!(
            m(vec![file("../x", b"x")]),
            Err(Error::DotComponent { .. })
        ));
        assert!(matches!(
            m(vec![dir("a"), file("a/./x", b"x")]),
            Err(Error::DotComponent { .. })
        ));
        assert!(matches!(
            m(vec![file("a//x", b"x")]),
            Err(Error::EmptyComponent { .. })
        ));
        assert!(matches!(
            m(vec![file("", b"x")]),
            Err(Error::EmptyComponent { .. })
        ));
        assert!(matches!(
            m(vec![file("a\nb", b"x")]),
            Err(Error::BadCharacter { .. })
        ));
        assert!(matches!(
            m(vec![file("a\0b", b"x")]),
            Err(Error::BadCharacter { .. })
        ));
        assert!(matches!(
            m(vec![file("x", b"1"), file("x", b"2")]),
            Err(Error::DuplicatePath { .. })
        ));
        assert!(matches!(
            m(vec![file("y", b"1"), file("x", b"2")]),
            Err(Error::Unsorted { .. })
        ));
        assert!(matches!(
            m(vec![file("nodir/x", b"1")]),
            Err(Error::MissingParent { .. })
        ));
        assert!(matches!(
            m(vec![file("f", b"1"), file("f/x", b"1")]),
            Err(Error::MissingParent { .. })
        ));
        let long = "a".repeat(256);
        assert!(matches!(
            m(vec![file(&long, b"1")]),
            Err(Error::PathTooLong { .. })
        ));
    }

    #[test]
    fn special_modes_are_refused() {
        for mode in [0o4755u16, 0o2755, 0o1777, 0o100644] {
            let e = Entry {
                path: "x".into(),
                node: Node::File {
                    mode,
                    size: 0,
                    chunks: vec![],
                },
            };
            assert!(
                matches!(m(vec![e]), Err(Error::SpecialMode { .. })),
                "{mode:o}"
            );
        }
        let d = Entry {
            path: "d".into(),
            node: Node::Dir { mode: 0o4755 },
        };
        assert!(matches!(m(vec![d]), Err(Error::SpecialMode { .. })));
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(matches!(
            m(vec![link("x", "/etc/shadow")]),
            Err(Error::SymlinkEscapes { .. })
        ));
        assert!(matches!(
            m(vec![link("x", "..")]),
            Err(Error::SymlinkEscapes { .. })
        ));
        assert!(matches!(
            m(vec![dir("d"), link("d/x", "../../y")]),
            Err(Error::SymlinkEscapes { .. })
        ));
        assert!(m(vec![dir("d"), link("d/up", "..")]).is_ok());
        // d/up -> .. is fine alone, but walking through it to climb again is not.
        assert!(matches!(
            m(vec![dir("d"), link("d/up", ".."), link("d/x", "up/..")]),
            Err(Error::SymlinkEscapes { .. })
        ));
        assert!(matches!(
            m(vec![link("x", "")]),
            Err(Error::SymlinkEscapes { .. })
        ));
    }

    #[test]
    fn sizes_and_chunk_lengths_are_checked() {
        let mut f = file("x", b"abc");
        if let Node::File { size, .. } = &mut f.node {
            *size = 4;
        }
        assert!(matches!(m(vec![f]), Err(Error::SizeMismatch { .. })));
        let big = Entry {
            path: "x".into(),
            node: Node::File {
                mode: 0o644,
                size: u64::from(CHUNK_MAX) + 1,
                chunks: vec![ChunkRef {
                    id: Hash::default(),
                    len: CHUNK_MAX + 1,
                }],
            },
        };
        assert!(matches!(m(vec![big]), Err(Error::BadChunkLength { .. })));
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // Found by the manifest fuzzer: mode 88 written as `d8 00`.
        assert_eq!(
            Manifest::decode(&[1, 2, 113, 32, 0, 216, 0]),
            Err(Error::NonCanonical { what: "manifest" })
        );
        assert!(Manifest::decode(&[1, 2, 113, 32, 0, 88]).is_ok());
    }

    #[test]
    fn non_utf8_names_fail_to_decode() {
        let mut bytes = Manifest {
            entries: vec![file("ab", b"")],
        }
        .encode()
        .unwrap();
        let pos = bytes.iter().position(|&b| b == b'a').unwrap();
        bytes[pos] = 0xff;
        assert_eq!(
            Manifest::decode(&bytes),
            Err(Error::NotUtf8 { what: "manifest" })
        );
        let mut long = Manifest {
            entries: vec![file("ab", b"")],
        }
        .encode()
        .unwrap();
        long.push(0);
        assert!(matches!(
            Manifest::decode(&long),
            Err(Error::Malformed { .. })
        ));
    }
}
