//! The operator's endpoints beyond listing: start, stop or restart a
//! service; a service's output, retained or followed; quilt-init's events
//! as they happen; the A/B slots. Followed output and events are Server-Sent Events
//! streams (`text/event-stream`), one SSE event per control reply, read
//! from quilt-init by [`crate::control::Control::stream`].

use crate::api::{chain, refused, unexpected, ApiError, AppState};
use crate::control::ControlError;
use crate::replies;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use quilt_proto::{Reply, Request as Ctl, ServiceVerb};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// How long a stream's first reply is awaited before the stream starts
/// (so a refusal is an HTTP error, not an event).
const FIRST_REPLY: Duration = Duration::from_millis(500);

/// Errors every operator route may answer.
type E = crate::replies::ErrorReply;

/// Start, stop or restart a service (operator; grant `services`).
#[utoipa::path(post, path = "/v1/services/{name}/{action}", tag = "services",
    params(("name" = String, Path, description = "The service's name"),
        ("action" = String, Path, description = "`start`, `stop` or `restart`")),
    responses((status = 200, description = "The state after the request", body = replies::ServiceState),
        (status = 404, description = "`not-found` or `no-such-endpoint`", body = E),
        (status = "4XX", body = E), (status = "5XX", body = E)))]
pub async fn service(
    State(state): State<Arc<AppState>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<replies::ServiceState>, ApiError> {
    let verb = match action.as_str() {
        "start" => ServiceVerb::Start,
        "stop" => ServiceVerb::Stop,
        "restart" => ServiceVerb::Restart,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                format!("{other:?} is not start, stop or restart"),
            ))
        }
    };
    match state.control.call(Ctl::Service { name, verb }).await? {
        Reply::ServiceState { name, state } => Ok(Json(replies::ServiceState { name, state })),
        other => Err(unexpected(other)),
    }
}

/// The A/B boot state (operator; grant `slots`).
#[utoipa::path(get, path = "/v1/slots", tag = "firmware",
    responses((status = 200, body = replies::Slots), (status = "4XX", body = E), (status = "5XX", body = E)))]
pub async fn slots(State(state): State<Arc<AppState>>) -> Result<Json<replies::Slots>, ApiError> {
    match state.control.call(Ctl::Slots).await? {
        Reply::Slots(s) => Ok(Json(s.into())),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/services/{name}/logs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep the response open and send new output as it comes (SSE).
    #[serde(default)]
    pub follow: bool,
}

fn log(name: Option<String>, missed: u64, data: &[u8]) -> replies::Log {
    replies::Log {
        name,
        missed,
        text: String::from_utf8_lossy(data).into_owned(),
    }
}

/// A service's output: what its log ring holds, or with `follow=true` a
/// Server-Sent Events stream of `log` events (data: the same object
/// without `name`) until the client hangs up (operator; grant `logs`).
#[utoipa::path(get, path = "/v1/services/{name}/logs", tag = "services",
    params(("name" = String, Path, description = "The service's name"), LogsQuery),
    responses((status = 200, body = replies::Log),
        (status = 200, content_type = "text/event-stream", description = "with follow=true: `event: log`, `data: {\"missed\",\"text\"}`"),
        (status = 503, description = "`busy`: too many streams open", body = E),
        (status = "4XX", body = E), (status = "5XX", body = E)))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let req = Ctl::Logs {
        name: name.clone(),
        follow: q.follow,
    };
    if !q.follow {
        return match state.control.call(req).await? {
            Reply::Log { missed, data } => Ok(Json(log(Some(name), missed, &data)).into_response()),
            other => Err(unexpected(other)),
        };
    }
    sse(state.control.stream(req)?, |r| match r {
        Reply::Log { missed, data } => Some(
            Event::default()
                .event("log")
                .json_data(log(None, missed, &data)),
        ),
        _ => None,
    })
    .await
}

/// quilt-init's event lines from now on, as a Server-Sent Events stream of
/// `event` events (operator; grant `events`).
#[utoipa::path(get, path = "/v1/events", tag = "services",
    responses((status = 200, content_type = "text/event-stream", description = "`event: event`, data: an EventLine", body = replies::EventLine),
        (status = 503, description = "`busy`: too many streams open", body = E),
        (status = "4XX", body = E), (status = "5XX", body = E)))]
pub async fn events(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    sse(state.control.stream(Ctl::Events)?, |r| match r {
        Reply::Event { line } => Some(
            Event::default()
                .event("event")
                .json_data(replies::EventLine { line }),
        ),
        _ => None,
    })
    .await
}

/// A control stream as SSE. A refusal that comes first is an HTTP error;
/// one that comes later (or quilt-init going away) is a last `error`
/// event. `event` maps a reply to its SSE event (`None`: an unexpected
/// reply, which ends the stream).
async fn sse(
    mut rx: mpsc::Receiver<Result<Reply, ControlError>>,
    event: fn(Reply) -> Option<Result<Event, axum::Error>>,
) -> Result<Response, ApiError> {
    let first = match tokio::time::timeout(FIRST_REPLY, rx.recv()).await {
        Ok(Some(Ok(Reply::Error { code, message }))) => return Err(refused(code, message)),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(Some(Ok(r))) => Some(r),
        Ok(None) | Err(_) => None,
    };
    let error_event = |code: &str, message: String| {
        Event::default()
            .event("error")
            .json_data(json!({"error": code, "message": message}))
    };
    let to_event = move |item: Result<Reply, ControlError>| -> Result<Event, Infallible> {
        let e = match item {
            Ok(Reply::Error { code, message }) => error_event(&format!("{code:?}"), message),
            Ok(r) => event(r).unwrap_or_else(|| error_event("protocol", "unexpected reply".into())),
            Err(e) => error_event("control-unavailable", chain(&e)),
        };
        Ok(e.unwrap_or_else(|_| Event::default().event("error").data("{}")))
    };
    let head = tokio_stream::iter(first.map(Ok));
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = head.chain(rest).map(to_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
