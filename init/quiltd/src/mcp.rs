//! The board as an MCP server (rmcp, the official Rust SDK), served over
//! Streamable HTTP at `/mcp` behind the same authentication as the rest of
//! the API ([`crate::api`]: a signed request, or a bearer token from
//! [`crate::tokens`]).
//!
//! Tools: every tool an installed bundle declares in its signed manifest
//! ([`crate::tools`]), with its description and input (and output, where
//! it is an object) JSON Schema; `tools/call` runs it in a container
//! through quilt-init (`Run`, the SDK's `{"tool", "input"}` envelope on
//! stdin) and returns its result as structured content, a tool's own
//! error or a failed run as a tool error with the reason. Operators also
//! get `board.services` and `board.service` (start/stop/restart); agents
//! do not see them.
//!
//! Revision: 2025-11-25, the newest both rmcp and the official TypeScript
//! SDK speak; older ones are negotiated down. Stateless: every POST stands
//! alone (no session to lose when quiltd restarts).

use crate::api::AppState;
use crate::auth::Caller;
use crate::clients::Role;
use crate::metrics::Outcome;
use crate::tools::Tool as BoardTool;
use axum::http::request::Parts;
use quilt_proto::{Reply, Request as Ctl, RunResult, ServiceVerb};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// The newest MCP revision quiltd speaks (see the module doc).
pub const REVISION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Operator tool: list services.
const SERVICES: &str = "board.services";
/// Operator tool: start, stop or restart a service.
const SERVICE: &str = "board.service";

/// One MCP server instance (rmcp makes one per request: stateless).
#[derive(Clone)]
pub struct Board {
    state: Arc<AppState>,
}

impl Board {
    /// Over the gateway's shared state.
    pub fn new(state: Arc<AppState>) -> Board {
        Board { state }
    }
}

/// Who is calling: the caller the authentication middleware put on the
/// HTTP request rmcp hands through.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("unauthenticated", None))
}

/// A schema text as a JSON object, `None` if it is not one.
fn schema_object(text: &str) -> Option<JsonObject> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

/// A bundle's tool as MCP lists it; `None` when its input schema is not a
/// JSON object of type "object" (MCP requires that).
pub fn mcp_tool(t: &BoardTool) -> Option<Tool> {
    let input = schema_object(&t.input).filter(|o| o.get("type") == Some(&json!("object")))?;
    let mut tool = Tool::new(t.mcp_name.clone(), t.description.clone(), input)
        .with_title(format!("{} ({} v{})", t.name, t.bundle, t.version));
    // MCP output schemas must be objects too; a tool whose result is a
    // string or array gets its result as {"result": …} and no schema.
    if let Some(out) = t
        .output
        .as_deref()
        .and_then(schema_object)
        .filter(|o| o.get("type") == Some(&json!("object")))
    {
        tool = tool.with_raw_output_schema(Arc::new(out));
    }
    Some(tool)
}

fn object(v: Value) -> JsonObject {
    match v {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    }
}

fn operator_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            SERVICES,
            "Operator: the board's supervised services, with state, restarts, memory and CPU.",
            object(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        ),
        Tool::new(
            SERVICE,
            "Operator: start, stop or restart one supervised service.",
            object(json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "service name (board.services lists them)"},
                    "action": {"type": "string", "enum": ["start", "stop", "restart"]}
                },
                "required": ["name", "action"],
                "additionalProperties": false
            })),
        ),
    ]
}

/// A run's outcome as an MCP tool result. The SDK's envelope
/// `{"result": …}` is a success (structured: the result when it is an
/// object, else `{"result": …}`); `{"error": {code, message}}` is a tool
/// error; so is a non-zero exit, an OOM kill or a timeout, with the
/// reason and the stderr tail.
pub fn tool_result(r: &RunResult) -> CallToolResult {
    let stdout: Option<Value> = serde_json::from_slice(&r.stdout).ok();
    if let Some(err) = stdout.as_ref().and_then(|v| v.get("error")) {
        let code = err.get("code").and_then(Value::as_str).unwrap_or("error");
        let message = err.get("message").and_then(Value::as_str).unwrap_or("");
        let text = format!("{code}: {message}");
        let mut out = CallToolResult::structured_error(json!({ "error": err }));
        out.content = vec![ContentBlock::text(text)];
        return out;
    }
    let failed = if r.oom_killed {
        Some("the tool was killed: out of memory (its bundle's memory limit)".to_owned())
    } else if r.timed_out {
        Some("the tool was killed: it ran past its deadline".to_owned())
    } else if r.status != 0 {
        Some(format!("the tool exited with status {}", r.status))
    } else {
        None
    };
    if let Some(why) = failed {
        let tail = String::from_utf8_lossy(&r.stderr_tail);
        let tail = tail.trim();
        let text = if tail.is_empty() {
            why
        } else {
            format!("{why}; stderr ends: {tail}")
        };
        return CallToolResult::error(vec![ContentBlock::text(text)]);
    }
    match stdout {
        Some(v) => {
            let result = match v {
                Value::Object(mut o) if o.contains_key("result") => {
                    o.remove("result").unwrap_or(Value::Null)
                }
                other => other,
            };
            match result {
                Value::Object(_) => CallToolResult::structured(result),
                other => {
                    let text = other.to_string();
                    let mut out = CallToolResult::structured(json!({ "result": other }));
                    out.content = vec![ContentBlock::text(text)];
                    out
                }
            }
        }
        None => CallToolResult::success(vec![ContentBlock::text(
            String::from_utf8_lossy(&r.stdout).into_owned(),
        )]),
    }
}

fn refused(code: quilt_proto::ErrorCode, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "the board refused: {message} ({code:?})"
    ))])
}

impl Board {
    async fn control(&self, req: Ctl) -> Result<Reply, McpError> {
        self.state.control.call(req).await.map_err(|e| {
            eprintln!("quiltd: event=control-failed error=\"{e}\"");
            McpError::internal_error(format!("quilt-init did not answer: {e}"), None)
        })
    }

    async fn run_tool(
        &self,
        who: &Caller,
        t: &BoardTool,
        args: JsonObject,
    ) -> Result<CallToolResult, McpError> {
        let input = serde_json::to_vec(&json!({"tool": t.name, "input": Value::Object(args)}))
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        let t0 = std::time::Instant::now();
        let reply = self
            .control(Ctl::Run {
                bundle: t.bundle.clone(),
                input,
                timeout_ms: 0,
            })
            .await?;
        let seconds = t0.elapsed().as_secs_f64();
        match reply {
            Reply::Ran(r) => {
                eprintln!(
                    "quiltd: event=mcp-call client={} tool={} status={} micros={}",
                    who.name, t.mcp_name, r.status, r.micros
                );
                let result = tool_result(&r);
                let outcome = match Outcome::of(&r) {
                    // The SDK's error envelope (exit 0) is a failed call too.
                    Outcome::Ok if result.is_error == Some(true) => Outcome::Failed,
                    o => o,
                };
                self.state.metrics.run("mcp", outcome, seconds);
                Ok(result)
            }
            Reply::Error { code, message } => {
                self.state.metrics.run("mcp", Outcome::Refused, seconds);
                Ok(refused(code, &message))
            }
            other => {
                self.state.metrics.run("mcp", Outcome::Refused, seconds);
                Err(McpError::internal_error(
                    format!("unexpected reply from quilt-init: {other:?}"),
                    None,
                ))
            }
        }
    }

    async fn operator_call(
        &self,
        name: &str,
        args: JsonObject,
    ) -> Result<CallToolResult, McpError> {
        if name == SERVICES {
            return match self.control(Ctl::List).await? {
                Reply::Services(list) => Ok(CallToolResult::structured(json!({
                    "services": list.iter().map(crate::replies::Service::from).collect::<Vec<_>>()
                }))),
                Reply::Error { code, message } => Ok(refused(code, &message)),
                other => Err(McpError::internal_error(
                    format!("unexpected reply: {other:?}"),
                    None,
                )),
            };
        }
        let service = args.get("name").and_then(Value::as_str);
        let verb = match args.get("action").and_then(Value::as_str) {
            Some("start") => Some(ServiceVerb::Start),
            Some("stop") => Some(ServiceVerb::Stop),
            Some("restart") => Some(ServiceVerb::Restart),
            _ => None,
        };
        let (Some(service), Some(verb)) = (service, verb) else {
            return Err(McpError::invalid_params(
                "board.service needs {\"name\": SERVICE, \"action\": \"start\"|\"stop\"|\"restart\"}",
                None,
            ));
        };
        match self
            .control(Ctl::Service {
                name: service.to_owned(),
                verb,
            })
            .await?
        {
            Reply::ServiceState { name, state } => Ok(CallToolResult::structured(
                json!({"name": name, "state": state}),
            )),
            Reply::Error { code, message } => Ok(refused(code, &message)),
            other => Err(McpError::internal_error(
                format!("unexpected reply: {other:?}"),
                None,
            )),
        }
    }
}

impl ServerHandler for Board {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(REVISION)
            .with_server_info(Implementation::new("quiltd", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools of signed bundles installed on a Quilt board; each call runs the tool \
                 in a fresh container on the board.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&REVISION))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = caller(&context)?;
        let tools = self.state.tools.tools().map_err(|e| {
            eprintln!("quiltd: event=tool-index-failed error=\"{e}\"");
            McpError::internal_error(format!("the board's tool index: {e}"), None)
        })?;
        let mut out: Vec<Tool> = tools
            .iter()
            .filter_map(|t| {
                let m = mcp_tool(t);
                if m.is_none() {
                    eprintln!(
                        "quiltd: event=tool-unlisted name={} reason=\"its input schema is not a JSON object of type object\"",
                        t.mcp_name
                    );
                }
                m
            })
            .collect();
        if who.role.allows(Role::Operator) {
            out.extend(operator_tools());
        }
        Ok(ListToolsResult::with_all_items(out))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let who = caller(&context)?;
        let args = request.arguments.unwrap_or_default();
        let name = request.name.as_ref();
        if name == SERVICES || name == SERVICE {
            if !who.role.allows(Role::Operator) {
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{name} is an operator tool; {} is {}",
                    who.name,
                    who.role.as_str()
                ))])
                .into());
            }
            return Ok(self.operator_call(name, args).await?.into());
        }
        let tool = self
            .state
            .tools
            .find(name)
            .map_err(|e| McpError::internal_error(format!("the board's tool index: {e}"), None))?
            .ok_or_else(|| {
                McpError::invalid_params(
                    format!("no tool {name} on this board (tools/list names them)"),
                    None,
                )
            })?;
        Ok(self.run_tool(&who, &tool, args).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(status: i32, stdout: &str) -> RunResult {
        RunResult {
            status,
            oom_killed: false,
            timed_out: false,
            stdout: stdout.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_tail: b"trace\n".to_vec(),
            micros: 1,
        }
    }

    #[test]
    fn envelopes_become_structured_results_and_tool_errors() {
        let r = tool_result(&ran(0, r#"{"result":{"words":3}}"#));
        assert_eq!(r.is_error, Some(false));
        assert_eq!(r.structured_content, Some(json!({"words": 3})));
        let r = tool_result(&ran(0, r#"{"result":"a-slug"}"#));
        assert_eq!(r.structured_content, Some(json!({"result": "a-slug"})));
        let r = tool_result(&ran(
            1,
            r#"{"error":{"code":"empty_slug","message":"no letters"}}"#,
        ));
        assert_eq!(r.is_error, Some(true));
        assert_eq!(
            r.structured_content,
            Some(json!({"error": {"code": "empty_slug", "message": "no letters"}}))
        );
        let text = serde_json::to_string(&r.content).unwrap();
        assert!(text.contains("empty_slug: no letters"), "{text}");
    }

    #[test]
    fn failed_runs_are_tool_errors_with_the_reason() {
        let mut r = ran(137, "");
        r.oom_killed = true;
        let t = tool_result(&r);
        assert_eq!(t.is_error, Some(true));
        let text = serde_json::to_string(&t.content).unwrap();
        assert!(
            text.contains("out of memory") && text.contains("trace"),
            "{text}"
        );
        let t = tool_result(&ran(2, "not json"));
        let text = serde_json::to_string(&t.content).unwrap();
        assert!(text.contains("status 2"), "{text}");
        let t = tool_result(&ran(0, "plain text"));
        assert_eq!(t.is_error, Some(false));
        assert_eq!(t.structured_content, None);
    }

    #[test]
    fn only_object_schemas_are_listed() {
        let mut t = BoardTool {
            mcp_name: "b__t".into(),
            bundle: "b".into(),
            version: 2,
            name: "t".into(),
            description: "d".into(),
            input: r#"{"type":"object","properties":{"x":{"type":"string"}}}"#.into(),
            output: Some(r#"{"type":"string"}"#.into()),
        };
        let m = mcp_tool(&t).unwrap();
        assert_eq!(m.name, "b__t");
        assert!(
            m.output_schema.is_none(),
            "a string result has no MCP schema"
        );
        t.output = Some(r#"{"type":"object"}"#.into());
        assert!(mcp_tool(&t).unwrap().output_schema.is_some());
        t.input = r#"{"type":"string"}"#.into();
        assert!(mcp_tool(&t).is_none());
        t.input = "not json".into();
        assert!(mcp_tool(&t).is_none());
    }
}
