//! The board's tools as agents see them: read from the tool index the
//! installer writes beside its catalog (`quilt_proto::installer::
//! TOOL_INDEX`: every runnable bundle's tools from its signed manifest),
//! re-read when it changes, and named once for MCP.
//!
//! An MCP name is `<bundle with / as .>__<tool>` (`examples/text-tools`'s
//! `count` is `examples.text-tools__count`): MCP names allow only
//! `A-Z a-z 0-9 _ - .`, and a name must not change when another bundle is
//! installed. quiltd's own operator tools (board.*) have no `__`, so no
//! bundle's tool can take their names. A name over 128 bytes, or one two
//! bundles would share, is left out and logged.

use quilt_proto::installer::{decode_tool_index, ToolIndex, MAX_TOOL_INDEX};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Longest MCP tool name.
pub const MAX_NAME: usize = 128;

/// One tool of one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Its MCP name.
    pub mcp_name: String,
    /// The bundle.
    pub bundle: String,
    /// The bundle's version.
    pub version: u64,
    /// The tool's name in the bundle.
    pub name: String,
    /// From the manifest.
    pub description: String,
    /// JSON Schema of the input, as text.
    pub input: String,
    /// JSON Schema of the result, as text, if declared.
    pub output: Option<String>,
}

/// The MCP name of `tool` in `bundle`.
pub fn mcp_name(bundle: &str, tool: &str) -> String {
    format!("{}__{tool}", bundle.replace('/', "."))
}

/// The tools of an index, named; the names refused, with why.
pub fn from_index(index: &ToolIndex) -> (Vec<Tool>, Vec<(String, &'static str)>) {
    let mut tools: Vec<Tool> = Vec::new();
    let mut refused = Vec::new();
    for b in &index.bundles {
        for t in &b.tools {
            let name = mcp_name(&b.bundle, &t.name);
            if name.len() > MAX_NAME {
                refused.push((name, "longer than 128 bytes"));
            } else if tools.iter().any(|x| x.mcp_name == name) {
                refused.push((name, "another bundle's tool has this name"));
            } else {
                tools.push(Tool {
                    mcp_name: name,
                    bundle: b.bundle.clone(),
                    version: b.version,
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input: t.input.clone(),
                    output: t.output.clone(),
                });
            }
        }
    }
    (tools, refused)
}

/// Why the index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Opening or reading it failed (other than its absence).
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Over the bound, or not an index.
    #[error("{0} is not a tool index (or is over {MAX_TOOL_INDEX} bytes)")]
    Malformed(PathBuf),
}

#[derive(Debug, Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    tools: Arc<Vec<Tool>>,
}

/// The index file and the tools last read from it.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    cached: Mutex<Cached>,
}

impl Catalog {
    /// For the index at `path`.
    pub fn new(path: PathBuf) -> Catalog {
        Catalog {
            path,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The tools now: read again only when the file changed. No file yet
    /// (no install has run): no tools.
    pub fn tools(&self) -> Result<Arc<Vec<Tool>>, IndexError> {
        let io = |source| IndexError::Io {
            path: self.path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Arc::new(Vec::new()));
            }
            Err(e) => return Err(io(e)),
        };
        let stamp = (meta.modified().map_err(io)?, meta.len());
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.stamp == Some(stamp) {
            return Ok(Arc::clone(&cached.tools));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)
            .map_err(io)?
            .take(MAX_TOOL_INDEX as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let index =
            decode_tool_index(&bytes).ok_or_else(|| IndexError::Malformed(self.path.clone()))?;
        let (tools, refused) = from_index(&index);
        for (name, why) in refused {
            eprintln!("quiltd: event=tool-name-refused name={name} reason=\"{why}\"");
        }
        for b in index.bundles.iter().filter(|b| b.omitted) {
            eprintln!(
                "quiltd: event=tools-omitted bundle={} reason=\"the installer left its tool list out of an over-large index\"",
                b.bundle
            );
        }
        cached.stamp = Some(stamp);
        cached.tools = Arc::new(tools);
        Ok(Arc::clone(&cached.tools))
    }

    /// The tool called `mcp_name`.
    pub fn find(&self, mcp_name: &str) -> Result<Option<Tool>, IndexError> {
        Ok(self
            .tools()?
            .iter()
            .find(|t| t.mcp_name == mcp_name)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_bundle::ToolDef;
    use quilt_proto::installer::{encode_tool_index, ToolIndexEntry};

    fn def(name: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: format!("does {name}"),
            input: r#"{"type":"object"}"#.into(),
            output: None,
        }
    }

    fn entry(bundle: &str, tools: &[&str]) -> ToolIndexEntry {
        ToolIndexEntry {
            bundle: bundle.into(),
            version: 1,
            root: "00".into(),
            tools: tools.iter().map(|t| def(t)).collect(),
            omitted: false,
        }
    }

    #[test]
    fn names_are_qualified_and_clashes_are_left_out() {
        let index = ToolIndex {
            bundles: vec![
                entry("examples/text-tools", &["count", "slug"]),
                // "a.b" and "a/b" both become "a.b".
                entry("a/b", &["x"]),
                entry("a.b", &["x", "y"]),
                entry(&"n".repeat(130), &["z"]),
            ],
        };
        let (tools, refused) = from_index(&index);
        let names: Vec<&str> = tools.iter().map(|t| t.mcp_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "examples.text-tools__count",
                "examples.text-tools__slug",
                "a.b__x",
                "a.b__y"
            ]
        );
        assert_eq!(tools[2].bundle, "a/b");
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(
            refused[0],
            ("a.b__x".to_owned(), "another bundle's tool has this name")
        );
        assert_eq!(refused[1].1, "longer than 128 bytes");
    }

    #[test]
    fn the_index_is_read_again_only_when_it_changes_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tools");
        let cat = Catalog::new(path.clone());
        assert!(cat.tools().unwrap().is_empty(), "no index: no tools");
        let one = ToolIndex {
            bundles: vec![entry("t", &["a"])],
        };
        std::fs::write(&path, encode_tool_index(&one).unwrap()).unwrap();
        assert_eq!(cat.find("t__a").unwrap().unwrap().name, "a");
        let two = ToolIndex {
            bundles: vec![entry("t", &["a", "bb"])],
        };
        std::fs::write(&path, encode_tool_index(&two).unwrap()).unwrap();
        assert!(cat.find("t__bb").unwrap().is_some());
        std::fs::write(&path, b"\xff\xff\xff\xff\xff not an index").unwrap();
        assert!(matches!(cat.tools(), Err(IndexError::Malformed(_))));
    }
}
