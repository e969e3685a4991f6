//! `POST /v1/bundles`: a bundle installed from the request body. The body
//! is never held in quiltd's heap: it streams into a memfd while it is
//! hashed, is held to the `Content-Digest` the request's signature covers
//! (checked before the body by [`crate::auth::Verifier::verify_streamed`]),
//! then the memfd is sealed and handed to quilt-init as `InstallFd`, the
//! same trust-store install `quilt install` does on the board. One install
//! streams at a time, up to `--max-install-bytes`; a body that stalls for
//! [`IDLE`] is dropped. Whatever goes wrong before the hand-over leaves
//! the board untouched: the memfd is freed with the request.

use crate::api::{chain, unexpected, ApiError, AppState};
use crate::auth::Caller;
use crate::metrics::Outcome;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use quilt_gateway_auth::digest::Streaming;
use quilt_proto::Reply;
use rustix::fd::OwnedFd;
use rustix::fs::{MemfdFlags, SealFlags};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

/// Default largest bundle accepted (`--max-install-bytes`).
pub const DEFAULT_MAX_INSTALL: u64 = 256 << 20;
/// A body that sends nothing for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(30);

/// Why a streamed body was not handed over.
#[derive(Debug, thiserror::Error)]
enum SpoolError {
    #[error("making the memfd")]
    Memfd(#[source] rustix::io::Errno),
    #[error("writing the memfd")]
    Write(#[source] std::io::Error),
    #[error("sealing the memfd")]
    Seal(#[source] rustix::io::Errno),
}

impl From<SpoolError> for ApiError {
    fn from(e: SpoolError) -> ApiError {
        eprintln!("quiltd: event=install-spool-failed error=\"{}\"", chain(&e));
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "spool",
            format!("could not hold the bundle for the installer: {}", chain(&e)),
        )
    }
}

/// Install a signed bundle from the request body, streamed and held to
/// the signed `Content-Digest`, then installed by the board's trust store
/// (operator; grant `install`).
#[utoipa::path(post, path = "/v1/bundles", tag = "bundles",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A signed `.qb` bundle"),
    responses((status = 200, body = crate::replies::Installed),
        (status = 401, description = "`content-digest`: the body is not the one signed", body = crate::replies::ErrorReply),
        (status = 408, description = "`body-stalled`", body = crate::replies::ErrorReply),
        (status = 413, description = "`too-large`: over --max-install-bytes", body = crate::replies::ErrorReply),
        (status = 422, description = "`failed`: the trust store refused it, with its reason", body = crate::replies::ErrorReply),
        (status = 503, description = "`busy`: another install is streaming", body = crate::replies::ErrorReply),
        (status = "4XX", body = crate::replies::ErrorReply), (status = "5XX", body = crate::replies::ErrorReply)))]
pub async fn install(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(digest): Extension<Streaming>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<crate::replies::Installed>, ApiError> {
    let t0 = Instant::now();
    let max = state.max_install;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        state.metrics.refused("too-large");
        return Err(too_large(max));
    }
    let _one = state.installing.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "another bundle is being installed; try again when it is done",
        )
    })?;
    let fd = spool(&state, body, digest, max).await?;
    let installed = state.control.install_fd(fd).await?;
    let (name, version, chunks, chunks_written, already) = match installed {
        Reply::Installed {
            name,
            version,
            chunks,
            chunks_written,
            already_installed,
        } => (name, version, chunks, chunks_written, already_installed),
        other => {
            state.metrics.install(Outcome::Refused);
            let e = unexpected(other);
            eprintln!(
                "quiltd: event=install-refused client={} micros={}",
                caller.name,
                t0.elapsed().as_micros()
            );
            return Err(e);
        }
    };
    state.metrics.install(Outcome::Ok);
    eprintln!(
        "quiltd: event=bundle-installed client={} bundle={name} version={version} chunks={chunks} new={chunks_written} micros={}",
        caller.name,
        t0.elapsed().as_micros()
    );
    Ok(Json(crate::replies::Installed {
        name,
        version,
        chunks,
        chunks_written,
        already_installed: already,
        micros: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
    }))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("bundles are limited to {max} bytes on this board (quiltd --max-install-bytes)"),
    )
}

/// The body into a sealed memfd, hashed on the way and held to `digest`.
async fn spool(
    state: &AppState,
    body: Body,
    mut digest: Streaming,
    max: u64,
) -> Result<OwnedFd, ApiError> {
    let fd = rustix::fs::memfd_create(
        "quiltd-install",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(SpoolError::Memfd)?;
    let mut file = std::fs::File::from(fd);
    let mut stream = body.into_data_stream();
    loop {
        let piece = match tokio::time::timeout(IDLE, stream.next()).await {
            Ok(Some(Ok(piece))) => piece,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("the request body broke off: {}", chain(&e)),
                ))
            }
            Err(_) => {
                state.metrics.refused("body-stalled");
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-stalled",
                    format!(
                        "nothing of the body came for {} s after {} bytes",
                        IDLE.as_secs(),
                        digest.len()
                    ),
                ));
            }
        };
        if digest.len() + piece.len() as u64 > max {
            state.metrics.refused("too-large");
            return Err(too_large(max));
        }
        digest.update(&piece);
        // A memfd write is a copy into page cache: it does not wait on
        // a device.
        file.write_all(&piece).map_err(SpoolError::Write)?;
    }
    if digest.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty",
            "the request body must be a .qb bundle (`quilt bundle pack`)",
        ));
    }
    let len = digest.len();
    if let Err(e) = digest.finish() {
        state.metrics.refused("content-digest");
        eprintln!("quiltd: event=install-refused reason=content-digest bytes={len}");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "content-digest",
            format!("{e}: the {len} bytes that came are not the ones that were signed"),
        ));
    }
    let fd = OwnedFd::from(file);
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .map_err(SpoolError::Seal)?;
    Ok(fd)
}
