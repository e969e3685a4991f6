//! `quilt mcp`: a local MCP stdio server that is a board. An MCP client
//! (Claude Desktop, an agent framework, the SDKs' stdio transports)
//! launches it; every JSON-RPC message it reads on stdin goes to the
//! board's Streamable HTTP endpoint (`/mcp`) as its own signed, pinned
//! request ([`crate::gateway`]), and every reply comes back on stdout, one
//! message per line. The client never holds a bearer token; the key stays
//! in its file.
//!
//! Messages are forwarded concurrently (a slow tool call does not hold up
//! a ping); replies are written whole, one at a time. A refusal by the
//! board (an unknown key, a wrong role) reaches the client as a JSON-RPC
//! error on the request that caused it, and is printed on stderr, which
//! MCP clients keep as the server's log.

use crate::call::BoardArgs;
use crate::gateway::{hint, Answer, Board};
use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Where quiltd serves MCP.
const MCP_PATH: &str = "/mcp";
/// Longest message read from the client (quiltd takes no more).
const MAX_LINE: usize = 60 * 1024;

#[derive(Args)]
pub struct McpArgs {
    #[command(flatten)]
    board: BoardArgs,
}

/// JSON-RPC's error for a message the board did not take.
fn rpc_error(id: &Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The messages in a reply: a JSON body is one message (or a batch); an
/// event stream carries one per `data:` event.
pub fn messages(a: &Answer) -> Vec<Value> {
    if a.content_type.starts_with("text/event-stream") {
        let text = String::from_utf8_lossy(&a.body);
        let mut out = Vec::new();
        let mut data = String::new();
        for line in text.lines().chain(std::iter::once("")) {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if line.is_empty() && !data.is_empty() {
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    out.push(v);
                }
                data.clear();
            }
        }
        out
    } else if a.body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match serde_json::from_slice::<Value>(&a.body) {
            Ok(Value::Array(batch)) => batch,
            Ok(v) => vec![v],
            Err(_) => Vec::new(),
        }
    }
}

struct Proxy {
    board: Board,
    /// The revision `initialize` agreed, sent on every later request.
    revision: Mutex<Option<String>>,
    out: tokio::sync::Mutex<tokio::io::Stdout>,
}

impl Proxy {
    async fn write(&self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        let mut out = self.out.lock().await;
        // A client that went away ends the process through stdin's EOF.
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.flush().await;
    }

    async fn forward(&self, msg: Value) {
        let id = msg.get("id").cloned();
        let is_initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let revision = self.revision.lock().ok().and_then(|r| r.clone());
        let mut headers = vec![("accept", "application/json, text/event-stream")];
        if let Some(r) = revision.as_deref() {
            headers.push(("mcp-protocol-version", r));
        }
        let body = msg.to_string().into_bytes();
        let answer = match self.board.request("POST", MCP_PATH, body, &headers).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("quilt mcp: {e:#}");
                if let Some(id) = id {
                    self.write(&rpc_error(
                        &id,
                        -32000,
                        format!("the board could not be reached: {e:#}"),
                    ))
                    .await;
                }
                return;
            }
        };
        if !answer.status.is_success() {
            let reply: Option<Value> = serde_json::from_slice(&answer.body).ok();
            let code = reply
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = reply
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
            let said = format!(
                "the board answered {}: {text}{}",
                answer.status,
                hint(code, self.board.seed())
            );
            eprintln!("quilt mcp: {said}");
            // A JSON-RPC error from the board's MCP layer is passed on as
            // it is; anything else becomes one on the request.
            let passed = messages(&answer);
            if !passed.is_empty() && passed.iter().all(|m| m.get("jsonrpc").is_some()) {
                for m in passed {
                    self.write(&m).await;
                }
            } else if let Some(id) = id {
                self.write(&rpc_error(&id, -32001, said)).await;
            }
            return;
        }
        for m in messages(&answer) {
            if is_initialize {
                if let Some(v) = m.pointer("/result/protocolVersion").and_then(Value::as_str) {
                    if let Ok(mut r) = self.revision.lock() {
                        *r = Some(v.to_owned());
                    }
                }
            }
            self.write(&m).await;
        }
    }
}

/// `quilt mcp --board … --key … --board-key …`.
pub fn run(a: &McpArgs) -> anyhow::Result<ExitCode> {
    let board = a.board.open()?;
    crate::call::runtime()?.block_on(async move {
        // Fail now, with the reason, rather than on the client's first
        // message: an unreachable board or a wrong pin is the usual
        // mistake in an MCP client's config.
        let probe = board.request("GET", "/healthz", Vec::new(), &[]).await?;
        anyhow::ensure!(
            probe.status.is_success(),
            "the board's /healthz answered {}",
            probe.status
        );
        eprintln!(
            "quilt mcp: connected to {} (key pinned); serving MCP on stdio",
            board.describe()
        );
        let proxy = Arc::new(Proxy {
            board,
            revision: Mutex::new(None),
            out: tokio::sync::Mutex::new(tokio::io::stdout()),
        });
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(line) = lines.next_line().await.context("reading stdin")? {
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > MAX_LINE {
                eprintln!(
                    "quilt mcp: a message of {} bytes is over {MAX_LINE}; dropped",
                    line.len()
                );
                let id = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                if let Some(id) = id {
                    proxy
                        .write(&rpc_error(
                            &id,
                            -32600,
                            format!("message over {MAX_LINE} bytes"),
                        ))
                        .await;
                }
                continue;
            }
            let msg: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    proxy
                        .write(&rpc_error(
                            &Value::Null,
                            -32700,
                            format!("parse error: {e}"),
                        ))
                        .await;
                    continue;
                }
            };
            // `initialize` first and alone: later messages carry the
            // revision it agrees.
            if msg.get("method").and_then(Value::as_str) == Some("initialize") {
                proxy.forward(msg).await;
                continue;
            }
            let p = Arc::clone(&proxy);
            tasks.spawn(async move { p.forward(msg).await });
            while tasks.try_join_next().is_some() {}
        }
        // stdin closed: finish what is in flight, then go.
        while tasks.join_next().await.is_some() {}
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ct: &str, body: &str) -> Answer {
        Answer {
            status: hyper::StatusCode::OK,
            content_type: ct.into(),
            body: hyper::body::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn replies_in_json_and_in_event_streams_come_out_as_messages() {
        let m = messages(&answer(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        ));
        assert_eq!(m, vec![json!({"jsonrpc":"2.0","id":1,"result":{}})]);
        let sse = "id: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
        let m = messages(&answer("text/event-stream", sse));
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[1]["id"], 2);
        assert!(messages(&answer("application/json", "")).is_empty());
        let batch = messages(&answer("application/json", r#"[{"id":1},{"id":2}]"#));
        assert_eq!(batch.len(), 2);
    }
}
