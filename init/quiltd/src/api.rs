//! The HTTP API (`/v1`, JSON, and MCP at `/mcp`) and the one place
//! requests are authorised: [`route_role`] says what each route needs,
//! [`authenticate`] (a middleware) reads the bounded body, verifies the
//! signature (or, on `/mcp` only, a bearer token) and role, and hands the
//! caller to the handlers. Handlers turn quilt-init's replies
//! into JSON; every error is a JSON object `{"error": code, "message": …}`.

use crate::auth::{Caller, Incoming, Refusal, Verifier};
use crate::clients::Role;
use crate::control::{Control, ControlError};
use crate::metrics::Outcome;
use crate::replies;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use quilt_gateway_auth::sig::Message;
use quilt_proto::{ErrorCode, Reply, Request as Ctl};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body: a tool's input must fit a control frame.
pub const MAX_BODY: usize = quilt_proto::MAX_REQUEST - 4096;
/// Deadline for a signed request's body, from its headers on. The body is
/// read before the signature can be checked (the digest covers it), so
/// without one an unauthenticated client that sends headers and then
/// stalls holds a connection slot for ever, and 256 of them shut
/// everyone out. 61,440 bytes in 10 s is 6 KB/s.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The control socket.
    pub control: Control,
    /// Who may call.
    pub verifier: Verifier,
    /// The board's clock, UNIX seconds (injected for tests).
    pub now: fn() -> i64,
    /// The installed tools (the installer's tool index).
    pub tools: crate::tools::Catalog,
    /// Live bearer tokens.
    pub tokens: crate::tokens::Tokens,
    /// What quiltd counts for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// The bearer token a Prometheus server scrapes `/metrics` with
    /// (`--metrics-token-file`), if any.
    pub metrics_token: Option<String>,
    /// Largest bundle `POST /v1/bundles` takes (`--max-install-bytes`).
    pub max_install: u64,
    /// One install streams at a time.
    pub installing: tokio::sync::Semaphore,
}

/// The board's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The route table: `None` for the unauthenticated probes.
pub fn route_role(method: &Method, path: &str) -> Option<Role> {
    match (method.as_str(), path) {
        ("GET", "/healthz" | "/readyz" | crate::openapi::PATH) => None,
        ("GET", "/v1/bundles" | "/v1/tools" | METRICS_PATH) => Some(Role::Agent),
        ("POST", "/v1/tokens") => Some(Role::Agent),
        // MCP: agents list and call tools; operator tools check the role
        // inside (crate::mcp).
        (_, MCP_PATH) => Some(Role::Agent),
        ("POST", p) if p.starts_with("/v1/tools/") && p.ends_with("/run") => Some(Role::Agent),
        ("GET", "/v1/services" | "/v1/events" | "/v1/slots") => Some(Role::Operator),
        ("POST", INSTALL_PATH) => Some(Role::Operator),
        ("GET" | "POST", p) if p.starts_with("/v1/services/") => Some(Role::Operator),
        // Anything else needs the most, so a new route is closed until
        // it is listed here.
        _ => Some(Role::Operator),
    }
}

/// Where bundles are installed from the request body: the one route whose
/// body streams past authentication (crate::install).
pub const INSTALL_PATH: &str = "/v1/bundles";

/// Where Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

/// Where MCP's Streamable HTTP endpoint is.
pub const MCP_PATH: &str = "/mcp";

/// The MCP endpoint: stateless Streamable HTTP with JSON replies (no
/// session to lose when quiltd restarts). Hosts are not checked: every
/// request is authenticated, and a browser cannot sign one.
fn mcp_service(
    state: &Arc<AppState>,
) -> StreamableHttpService<crate::mcp::Board, LocalSessionManager> {
    let state = Arc::clone(state);
    StreamableHttpService::new(
        move || Ok(crate::mcp::Board::new(Arc::clone(&state))),
        Arc::default(),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .disable_allowed_hosts()
            .with_max_request_body_bytes(MAX_BODY),
    )
}

/// The API, with authentication in front of every route, and its OpenAPI
/// document: both come from [`routes`], so a route is in the document
/// exactly when it is served.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(crate::openapi::finish(doc));
    router
        .route(
            crate::openapi::PATH,
            get(move || {
                let doc = Arc::clone(&doc);
                async move { Json(doc) }
            }),
        )
        .route_service(MCP_PATH, mcp_service(&state))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ))
        .with_state(state)
}

/// Every documented route, each registered with its handler's
/// `#[utoipa::path]` (method, path, parameters, replies).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::Doc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(services))
        .routes(routes!(bundles, crate::install::install))
        .routes(routes!(tools))
        .routes(routes!(mint_token))
        .routes(routes!(run))
        .routes(routes!(crate::ops::logs))
        .routes(routes!(crate::ops::service))
        .routes(routes!(crate::ops::events))
        .routes(routes!(crate::ops::slots))
        .routes(routes!(metrics))
}

/// An error reply.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(replies::ErrorReply {
                error: self.code.into(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        if matches!(e, ControlError::TooManyStreams) {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string());
        }
        eprintln!("quiltd: event=control-failed error=\"{}\"", chain(&e));
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "control-unavailable",
            format!("quilt-init did not answer: {}", chain(&e)),
        )
    }
}

/// A refusal by quilt-init, mapped once.
pub(crate) fn refused(code: ErrorCode, message: String) -> ApiError {
    let (status, code) = match code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not-found"),
        ErrorCode::Denied => (StatusCode::FORBIDDEN, "denied-by-board"),
        ErrorCode::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        ErrorCode::Malformed | ErrorCode::TooLarge | ErrorCode::Version => {
            (StatusCode::BAD_GATEWAY, "protocol")
        }
        ErrorCode::Failed | ErrorCode::Deadlock => (StatusCode::UNPROCESSABLE_ENTITY, "failed"),
    };
    ApiError::new(status, code, message)
}

pub(crate) fn unexpected(reply: Reply) -> ApiError {
    match reply {
        Reply::Error { code, message } => refused(code, message),
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "protocol",
            format!("unexpected reply from quilt-init: {other:?}"),
        ),
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The middleware: bounded body, signature, role, then the handler.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let Some(need) = route_role(&parts.method, parts.uri.path()) else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    if let Some(token) = bearer(&parts.headers) {
        // The scrape token (Prometheus cannot sign requests), on /metrics
        // only.
        if parts.uri.path() == METRICS_PATH {
            let ok = state
                .metrics_token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
            if !ok {
                state.metrics.refused("bad-token");
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad-token",
                    "not this board's metrics token (--metrics-token-file)",
                ));
            }
            parts.extensions.insert(Caller {
                name: "metrics-token".into(),
                role: Role::Agent,
            });
            return Ok(next.run(Request::from_parts(parts, body)).await);
        }
        // Bearer tokens are for MCP clients that speak nothing else; the
        // rest of the API wants a signature on every request.
        if parts.uri.path() != MCP_PATH {
            state.metrics.refused("bearer-not-here");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bearer-not-here",
                format!("bearer tokens are accepted on {MCP_PATH} only; sign this request (`quilt call`)"),
            ));
        }
        let caller = state.tokens.check(token, (state.now)()).map_err(|e| {
            state.metrics.refused("bad-token");
            eprintln!(
                "quiltd: event=auth-refused reason=bad-token method={} path={} detail=\"{e}\"",
                parts.method,
                parts.uri.path()
            );
            ApiError::new(StatusCode::UNAUTHORIZED, "bad-token", e.to_string())
        })?;
        parts.extensions.insert(caller);
        return Ok(next.run(Request::from_parts(parts, body)).await);
    }
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let message = Message {
        method: parts.method.as_str(),
        // HTTP/1.1 carries the authority in Host, not in the target.
        authority: parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| parts.headers.get("host").and_then(|v| v.to_str().ok())),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
    };
    if parts.method == Method::POST && parts.uri.path() == INSTALL_PATH {
        // The body may be large: it is held to the signed digest as it
        // streams (crate::install), never buffered here.
        let (caller, claimed) = state
            .verifier
            .verify_streamed(&message, need, (state.now)())
            .map_err(|r| refusal(&state, &r, &parts.method, parts.uri.path()))?;
        drop(headers);
        parts.extensions.insert(caller);
        parts.extensions.insert(claimed.stream());
        return Ok(next.run(Request::from_parts(parts, body)).await);
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY));
    let bytes: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("request bodies are limited to {MAX_BODY} bytes"),
            ))
        }
        Err(_) => {
            state.metrics.refused("slow-body");
            eprintln!(
                "quiltd: event=auth-refused reason=slow-body method={} path={}",
                parts.method,
                parts.uri.path()
            );
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "slow-body",
                format!(
                    "the request body did not arrive within {} s of its headers",
                    BODY_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    let incoming = Incoming {
        message,
        body: &bytes,
    };
    let caller = state
        .verifier
        .verify(&incoming, need, (state.now)())
        .map_err(|r| refusal(&state, &r, &parts.method, parts.uri.path()))?;
    drop(headers);
    parts.extensions.insert(caller);
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// Equal, in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A refused request: counted, logged, and its reply.
fn refusal(state: &AppState, r: &Refusal, method: &Method, path: &str) -> ApiError {
    state.metrics.refused(r.code());
    eprintln!(
        "quiltd: event=auth-refused reason={} method={method} path={path} detail=\"{}\"",
        r.code(),
        chain(r)
    );
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    ApiError::new(status, r.code(), chain(r))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-such-endpoint",
        "no such endpoint; see docs/gateway.md for the API",
    )
}

/// Errors every authenticated route may answer.
type E = replies::ErrorReply;

/// Is the process serving?
#[utoipa::path(get, path = "/healthz", tag = "probes", security(()),
    responses((status = 200, body = replies::Health)))]
async fn healthz() -> Json<replies::Health> {
    Json(replies::Health { status: "ok" })
}

/// Does quilt-init answer quiltd's control socket?
#[utoipa::path(get, path = "/readyz", tag = "probes", security(()),
    responses((status = 200, body = replies::Ready),
        (status = 503, description = "`not-ready`: quilt-init does not answer", body = E)))]
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<replies::Ready>, ApiError> {
    match state.control.call(Ctl::Ping).await {
        Ok(Reply::Pong { server }) => Ok(Json(replies::Ready {
            status: "ready",
            quilt_init: server,
        })),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!(
                "quilt-init does not answer on {}: {}",
                state.control.socket().display(),
                chain(&e)
            ),
        )),
    }
}

/// The supervised services (operator; grant `list`).
#[utoipa::path(get, path = "/v1/services", tag = "services",
    responses((status = 200, body = replies::Services), (status = "4XX", body = E), (status = "5XX", body = E)))]
async fn services(
    State(state): State<Arc<AppState>>,
    Extension(_caller): Extension<Caller>,
) -> Result<Json<replies::Services>, ApiError> {
    match state.control.call(Ctl::List).await? {
        Reply::Services(list) => Ok(Json(replies::Services {
            services: list.iter().map(replies::Service::from).collect(),
        })),
        other => Err(unexpected(other)),
    }
}

/// The board in the Prometheus text format 0.0.4 (agent, or the scrape
/// token as `Authorization: Bearer`).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    security(("signature" = []), ("scrape_token" = [])),
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = "4XX", body = E)))]
async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (services, bundles, stats) = tokio::join!(
        state.control.call(Ctl::List),
        state.control.call(Ctl::Bundles),
        state.control.call(Ctl::Stats)
    );
    let board = crate::metrics::Board {
        services: match services {
            Ok(Reply::Services(s)) => Some(s),
            _ => None,
        },
        bundles: match bundles {
            Ok(Reply::Bundles { bundles, .. }) => Some(bundles),
            _ => None,
        },
        tools: state.tools.tools().ok().map(|t| t.len()),
        stats: match stats {
            Ok(Reply::Stats(s)) => Some(s),
            _ => None,
        },
    };
    let text = state.metrics.render(&board).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "encoding the metrics failed",
        )
    })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Every installed bundle's tools, from their signed manifests, with
/// their MCP names (agent).
#[utoipa::path(get, path = "/v1/tools", tag = "tools",
    responses((status = 200, body = replies::Tools), (status = "4XX", body = E), (status = "5XX", body = E)))]
async fn tools(State(state): State<Arc<AppState>>) -> Result<Json<replies::Tools>, ApiError> {
    let tools = state.tools.tools().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "tool-index",
            format!("the board's tool index: {}", chain(&e)),
        )
    })?;
    let schema = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
    let list = tools
        .iter()
        .map(|t| replies::Tool {
            bundle: t.bundle.clone(),
            version: t.version,
            name: t.name.clone(),
            mcp_name: t.mcp_name.clone(),
            description: t.description.clone(),
            input_schema: schema(&t.input),
            output_schema: t.output.as_deref().map(schema),
        })
        .collect();
    Ok(Json(replies::Tools { tools: list }))
}

/// A short-lived bearer token for the signing client, for `/mcp` only
/// (agent).
#[utoipa::path(post, path = "/v1/tokens", tag = "mcp",
    request_body(content = Option<replies::TokenAsk>, description = "`{\"ttl_s\": N}` or nothing"),
    responses((status = 200, body = replies::Token), (status = "4XX", body = E), (status = 503, body = E)))]
async fn mint_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<replies::Token>, ApiError> {
    let ask: replies::TokenAsk = if body.iter().all(u8::is_ascii_whitespace) {
        replies::TokenAsk::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-json",
                format!("expected {{\"ttl_s\": SECONDS}} or nothing: {e}"),
            )
        })?
    };
    let ttl = ask.ttl_s.unwrap_or(crate::tokens::DEFAULT_TTL);
    let m = state
        .tokens
        .mint(&caller, ttl, (state.now)())
        .map_err(|e| {
            let status = match e {
                crate::tokens::TokenError::Ttl(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, "token", e.to_string())
        })?;
    eprintln!(
        "quiltd: event=token-minted client={} role={} expires_at={}",
        caller.name,
        caller.role.as_str(),
        m.expires_at
    );
    Ok(Json(replies::Token {
        token: m.token,
        expires_at: m.expires_at,
        client: caller.name,
        role: caller.role.as_str(),
        use_on: MCP_PATH,
    }))
}

/// The installed bundles (agent; grant `bundles`).
#[utoipa::path(get, path = "/v1/bundles", tag = "bundles",
    responses((status = 200, body = replies::Bundles), (status = "4XX", body = E), (status = "5XX", body = E)))]
async fn bundles(State(state): State<Arc<AppState>>) -> Result<Json<replies::Bundles>, ApiError> {
    match state.control.call(Ctl::Bundles).await? {
        Reply::Bundles { bundles, .. } => Ok(Json(replies::Bundles {
            bundles: bundles.into_iter().map(replies::Bundle::from).collect(),
        })),
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/tools/{bundle}/run` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// One tool of a bundle built with `quilt build`: the input goes in
    /// the SDK's envelope `{"tool", "input"}` (as `quilt run BUNDLE TOOL`).
    pub tool: Option<String>,
    /// Deadline in ms; 0 or absent: the board's default.
    pub timeout_ms: Option<u32>,
}

/// Run a tool from an installed bundle in a container of its own and
/// return its result; a tool that fails is still a 200 with its status
/// (agent; grant `run`).
#[utoipa::path(post, path = "/v1/tools/{bundle}/run", tag = "tools",
    params(("bundle" = String, Path, description = "The bundle's name, percent-encoded (`examples%2Fhello`)"), RunQuery),
    request_body(content = Option<serde_json::Value>, description = "The tool's JSON input (empty: `{}`)"),
    responses((status = 200, body = replies::Run),
        (status = 400, description = "`bad-json`", body = E),
        (status = 404, description = "`not-found`: no such bundle", body = E),
        (status = 503, description = "`busy`: no run slot", body = E),
        (status = "4XX", body = E), (status = "5XX", body = E)))]
async fn run(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(bundle): Path<String>,
    Query(q): Query<RunQuery>,
    body: Bytes,
) -> Result<Json<replies::Run>, ApiError> {
    let t0 = Instant::now();
    let input: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-json",
                format!("the request body must be the tool's JSON input: {e}"),
            )
        })?
    };
    let input = match &q.tool {
        Some(tool) => json!({"tool": tool, "input": input}),
        None => input,
    };
    let input = serde_json::to_vec(&input)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-json", e.to_string()))?;
    let req = Ctl::Run {
        bundle: bundle.clone(),
        input,
        timeout_ms: q.timeout_ms.unwrap_or(0),
    };
    let r = match state.control.call(req).await? {
        Reply::Ran(r) => r,
        other => {
            state
                .metrics
                .run("rest", Outcome::Refused, t0.elapsed().as_secs_f64());
            return Err(unexpected(other));
        }
    };
    state
        .metrics
        .run("rest", Outcome::of(&r), t0.elapsed().as_secs_f64());
    eprintln!(
        "quiltd: event=tool-run client={} bundle={bundle} status={} micros={}",
        caller.name, r.status, r.micros
    );
    Ok(Json(replies::Run::of(&r, t0.elapsed().as_micros())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_proto::RunResult;

    #[test]
    fn the_route_table_closes_what_it_does_not_list() {
        assert_eq!(route_role(&Method::GET, "/healthz"), None);
        assert_eq!(route_role(&Method::GET, "/readyz"), None);
        assert_eq!(route_role(&Method::GET, "/v1/bundles"), Some(Role::Agent));
        assert_eq!(
            route_role(&Method::POST, "/v1/tools/hello/run"),
            Some(Role::Agent)
        );
        assert_eq!(
            route_role(&Method::GET, "/v1/services"),
            Some(Role::Operator)
        );
        assert_eq!(route_role(&Method::POST, "/healthz"), Some(Role::Operator));
        assert_eq!(route_role(&Method::GET, "/v1/new"), Some(Role::Operator));
        assert_eq!(route_role(&Method::GET, "/v1/tools"), Some(Role::Agent));
        assert_eq!(route_role(&Method::POST, "/v1/tokens"), Some(Role::Agent));
        assert_eq!(route_role(&Method::POST, "/mcp"), Some(Role::Agent));
        assert_eq!(
            route_role(&Method::POST, INSTALL_PATH),
            Some(Role::Operator)
        );
    }

    #[test]
    fn run_results_parse_json_stdout_and_keep_text_otherwise() {
        let mut r = RunResult {
            status: 0,
            oom_killed: false,
            timed_out: false,
            stdout: br#"{"total":5}"#.to_vec(),
            stdout_truncated: false,
            stderr_tail: vec![b'x'; replies::STDERR_TAIL + 10],
            micros: 42,
        };
        let v = serde_json::to_value(replies::Run::of(&r, 50)).unwrap();
        assert_eq!(v["stdout"]["total"], 5);
        assert_eq!(v["stdout_json"], true);
        assert_eq!(v["ok"], true);
        assert_eq!(
            v["stderr_tail"].as_str().unwrap().len(),
            replies::STDERR_TAIL
        );
        r.stdout = b"plain".to_vec();
        r.oom_killed = true;
        r.status = 137;
        let v = serde_json::to_value(replies::Run::of(&r, 50)).unwrap();
        assert_eq!(v["stdout"], "plain");
        assert_eq!(v["ok"], false);
        assert_eq!(v["oom_killed"], true);
    }
}
