//! The manifest: every path in the bundle, its kind, mode and chunks.
//!
//! Entries are sorted by path bytes, so a tree has exactly one manifest and
//! duplicates cannot hide. [`Manifest::validate`] refuses everything a hostile
//! packer could use against the device: absolute paths, `.`/`..`, empty or
//! control-character components, setuid/setgid/sticky bits, symlinks that
//! leave the bundle or pass through other symlinks, entries whose parent is
//! not a directory of the bundle. Device nodes, fifos and sockets have no
//! representation at all. Names are `String`s, so non-UTF-8 fails to decode.
//!
//! A manifest may end with a list of [`ToolDef`]s: the tools the bundle's
//! entry serves (name, description, JSON Schemas of input and output), so
//! they are bound by the root and signed with the rest. The list is written
//! only when non-empty, so manifests without tools keep their bytes. The
//! schemas are opaque text here: the device never parses them (nor any
//! tool input); `quilt build` checks them on the host and the tool's SDK
//! applies them inside the container.

use crate::error::Error;
#[cfg(feature = "crypto")]
use crate::hash;
use crate::hash::Hash;
#[cfg(feature = "crypto")]
use crate::merkle;
use crate::{CHUNK_MAX, MAX_CHUNKS, MAX_ENTRIES};
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

/// One tool a bundle serves: `{"tool": name, "input": …}` on its stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolDef {
    /// 1-64 of `A-Z a-z 0-9 _ . -`, not starting with a digit, `.` or `-`.
    pub name: String,
    /// What an agent reads to choose the tool; 1..=[`MAX_DESCRIPTION`] bytes.
    pub description: String,
    /// JSON Schema of the input, as JSON text (never parsed on the device).
    pub input: String,
    /// JSON Schema of the result, as JSON text, when the tool declares one.
    pub output: Option<String>,
}

/// Most tools in one bundle.
pub const MAX_TOOLS: usize = 256;
/// Longest tool description, in bytes.
pub const MAX_DESCRIPTION: usize = 4096;
/// Longest schema text, in bytes.
pub const MAX_SCHEMA: usize = 64 * 1024;

/// The manifest itself.
///
/// Encoded as `entries`, then `tools` only when there are any (postcard
/// has no optional trailing fields, so the encoding is written by hand).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// Sorted by name, unique; empty for bundles that declare no tools.
    pub tools: Vec<ToolDef>,
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
    /// The postcard encoding: the entries, then the tools if any.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let malformed = |_| Error::Malformed { what: "manifest" };
        let mut out = postcard::to_allocvec(&self.entries).map_err(malformed)?;
        if !self.tools.is_empty() {
            out.extend(postcard::to_allocvec(&self.tools).map_err(malformed)?);
        }
        Ok(out)
    }

    /// Decodes a manifest that must fill `bytes` exactly. Does not validate.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let fail = |e: postcard::Error| match e {
            postcard::Error::DeserializeBadUtf8 => Error::NotUtf8 { what: "manifest" },
            _ => Error::Malformed { what: "manifest" },
        };
        let (entries, rest) = postcard::take_from_bytes::<Vec<Entry>>(bytes).map_err(fail)?;
        let tools = if rest.is_empty() {
            Vec::new()
        } else {
            match postcard::take_from_bytes::<Vec<ToolDef>>(rest).map_err(fail)? {
                // An empty list is never written: `00` here is a stray byte.
                (t, []) if !t.is_empty() => t,
                _ => return Err(Error::Malformed { what: "manifest" }),
            }
        };
        let m = Manifest { entries, tools };
        // One manifest, one byte string: postcard accepts padded varints,
        // so re-encode and compare.
        if m.encode().is_ok_and(|b| b == bytes) {
            Ok(m)
        } else {
            Err(Error::NonCanonical { what: "manifest" })
        }
    }

    /// The tool called `name`, if the bundle declares it.
    pub fn tool(&self, name: &str) -> Option<&ToolDef> {
        self.tools
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.tools.get(i))
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
        self.check_tools()?;
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

    /// Names, lengths and order of the tool list (schemas stay opaque).
    fn check_tools(&self) -> Result<(), Error> {
        if self.tools.len() > MAX_TOOLS {
            return Err(Error::TooLarge {
                what: "tool count",
                size: self.tools.len() as u64,
                max: MAX_TOOLS as u64,
            });
        }
        let mut prev: Option<&str> = None;
        for t in &self.tools {
            let bad = |reason: &'static str| Error::BadTool {
                name: t.name.clone(),
                reason,
            };
            if !tool_name_ok(&t.name) {
                return Err(bad(
                    "has a bad name: use 1-64 of A-Z a-z 0-9 _ . - not starting with a digit, '.' or '-'",
                ));
            }
            if prev.is_some_and(|p| p >= t.name.as_str()) {
                return Err(bad("is out of order or appears twice"));
            }
            prev = Some(&t.name);
            if t.description.is_empty() || t.description.len() > MAX_DESCRIPTION {
                return Err(bad("needs a description of 1-4096 bytes"));
            }
            if t.description
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(bad("has control characters in its description"));
            }
            let schema_ok = |s: &str| !s.is_empty() && s.len() <= MAX_SCHEMA;
            if !schema_ok(&t.input) || !t.output.as_deref().is_none_or(schema_ok) {
                return Err(bad("has an empty schema or one over 64 KiB"));
            }
        }
        Ok(())
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
#[cfg(feature = "crypto")]
pub fn bundle_root(manifest_bytes: &[u8], order: &[ChunkRef]) -> Hash {
    let mut leaves = Vec::with_capacity(order.len() + 1);
    leaves.push(hash::leaf(manifest_bytes));
    leaves.extend(order.iter().map(|c| c.id));
    merkle::root(&leaves)
}

/// A tool name: `[A-Za-z_][A-Za-z0-9_.-]{0,63}`.
pub fn tool_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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

#[cfg(all(test, feature = "crypto"))]
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
        Manifest {
            entries,
            tools: Vec::new(),
        }
        .validate()
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
            tools: vec![],
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
            tools: vec![],
        }
        .encode()
        .unwrap();
        long.push(0);
        assert!(matches!(
            Manifest::decode(&long),
            Err(Error::Malformed { .. })
        ));
    }

    fn tool(name: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: "adds two numbers".into(),
            input: r#"{"type":"object"}"#.into(),
            output: None,
        }
    }

    fn with_tools(tools: Vec<ToolDef>) -> Manifest {
        Manifest {
            entries: vec![file("main.js", b"x")],
            tools,
        }
    }

    #[test]
    fn a_manifest_without_tools_keeps_its_bytes() {
        let m = with_tools(vec![]);
        let bytes = m.encode().unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&m.entries).unwrap());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn tools_round_trip_and_are_looked_up_by_name() {
        let mut b = tool("forecast");
        b.output = Some(r#"{"type":"number"}"#.into());
        let m = with_tools(vec![tool("add"), b.clone()]);
        m.validate().unwrap();
        let bytes = m.encode().unwrap();
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.tool("forecast"), Some(&b));
        assert_eq!(back.tool("nope"), None);
        // The tools are part of what the root binds.
        let plain = with_tools(vec![]).encode().unwrap();
        assert_ne!(
            bundle_root(&bytes, &m.chunk_order()),
            bundle_root(&plain, &m.chunk_order())
        );
    }

    #[test]
    fn an_explicit_empty_tool_list_is_refused() {
        let mut bytes = with_tools(vec![]).encode().unwrap();
        bytes.push(0);
        assert_eq!(
            Manifest::decode(&bytes),
            Err(Error::Malformed { what: "manifest" })
        );
    }

    #[test]
    fn bad_tool_definitions_are_refused() {
        let bad = |tools: Vec<ToolDef>| match with_tools(tools).validate() {
            Err(Error::BadTool { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(bad(vec![tool("b"), tool("a")]).contains("out of order"));
        assert!(bad(vec![tool("a"), tool("a")]).contains("twice"));
        for name in ["", "1a", "-a", ".a", "a b", "a/b", &"a".repeat(65)] {
            assert!(bad(vec![tool(name)]).contains("bad name"), "{name:?}");
        }
        let mut t = tool("a");
        t.description = String::new();
        assert!(bad(vec![t.clone()]).contains("description"));
        t.description = "bell\x07".into();
        assert!(bad(vec![t]).contains("control"));
        let mut t = tool("a");
        t.input = String::new();
        assert!(bad(vec![t.clone()]).contains("schema"));
        t.input = "x".repeat(MAX_SCHEMA + 1);
        assert!(bad(vec![t]).contains("schema"));
        let mut t = tool("a");
        t.output = Some(String::new());
        assert!(bad(vec![t]).contains("schema"));
        let mut t = tool("a_b.c-D9");
        t.description = "line one\nline two".into();
        with_tools(vec![t]).validate().unwrap();
        let many: Vec<_> = (0..=MAX_TOOLS)
            .map(|i| tool(&alloc::format!("t{i:04}")))
            .collect();
        assert!(matches!(
            with_tools(many).validate(),
            Err(Error::TooLarge { .. })
        ));
    }
}
