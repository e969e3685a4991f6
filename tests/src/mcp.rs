//! A real MCP client for system tests: the official TypeScript SDK run by
//! Node.js (`tests/mcp-client`, installed once per process from its
//! lockfile by its `install.sh`). [`mcp_client`] runs it and returns what
//! it saw as JSON: the negotiated revision, the tools listed and each
//! call's result.

use crate::build::{repo_root, work_dir};
use crate::error::HarnessError;
use crate::Result;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The installed `client.mjs`.
pub fn mcp_client_script() -> Result<PathBuf> {
    static SCRIPT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            let dir = work_dir().map_err(|e| e.to_string())?.join("mcp-client");
            let out = Command::new(repo_root().join("tests/mcp-client/install.sh"))
                .arg(&dir)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            Ok(PathBuf::from(
                String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            ))
        })
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: "installing the MCP SDK client (tests/mcp-client/install.sh)".into(),
            detail,
        })
}

/// Runs the client (`stdio QUILT URL KEY PIN CALLS`, `http URL TOKEN PIN
/// CALLS` or `config CONFIG_JSON NAME CALLS`, see client.mjs) and returns
/// its JSON report and stderr.
pub fn mcp_client(args: &[&str]) -> Result<(serde_json::Value, String)> {
    let script = mcp_client_script()?;
    let out = Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| HarnessError::Setup {
            what: "running node (the MCP client)".into(),
            detail: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).map_err(|e| HarnessError::Setup {
        what: "reading the MCP client's report".into(),
        detail: format!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)),
    })?;
    Ok((v, stderr))
}

/// Checks that a client's report shows it connected and negotiated MCP
/// 2025-11-25 (the newest revision both official SDKs speak;
/// docs/gateway.md).
pub fn assert_mcp_connected(report: &serde_json::Value, stderr: &str) {
    assert!(report.get("failed").is_none(), "{report}\n{stderr}");
    assert_eq!(report["protocol"], "2025-11-25", "{report}");
}

/// The names of the tools a client's report lists, once
/// [`assert_mcp_connected`] holds.
pub fn mcp_listed<'a>(report: &'a serde_json::Value, stderr: &str) -> Vec<&'a str> {
    assert_mcp_connected(report, stderr);
    report["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools listed: {report}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

/// A call of `examples/text-tools`' `count` on a known text…
pub fn count_call() -> serde_json::Value {
    serde_json::json!({"name": "examples.text-tools__count", "arguments": {"text": "the cat and the hat", "top": 1}})
}

/// …and the check of its result in a client's report (`calls[i]`).
pub fn assert_counted(call: &serde_json::Value) {
    assert_eq!(call["result"]["isError"], false, "{call}");
    assert_eq!(
        call["result"]["structuredContent"],
        serde_json::json!({"words": 5, "lines": 1, "chars": 19, "top": [{"word": "the", "count": 2}]}),
        "{call}"
    );
}
