//! `quiltd`: the board's door for agents and operators. A supervised
//! service (non-root, own cgroup), never PID 1: it reaches quilt-init only
//! through the control socket its boot-config grant made
//! (`/run/quilt/control.d/<name>.sock`), and serves a signed HTTPS API.
//!
//! Modules: [`identity`] (the node key), [`tls`] (the certificate and
//! rustls), [`clients`] (the authorized-clients file), [`nonce`] (replay
//! cache), [`auth`] (deciding who calls), [`control`] (control calls off
//! the executor), [`api`] (routes and JSON), [`server`] (connections),
//! [`tools`] (the installed tools, named for MCP), [`mcp`] (the MCP
//! server), [`tokens`] (bearer tokens for MCP clients), [`ops`] (service
//! control, logs and events as Server-Sent Events), [`install`] (bundles
//! streamed from a request body to the installer), [`replies`] (the JSON
//! bodies as types), [`openapi`] (the OpenAPI document made from them).

mod api;
mod auth;
mod clients;
mod control;
mod identity;
mod install;
mod mcp;
mod metrics;
mod nonce;
mod openapi;
mod ops;
mod replies;
mod server;
mod tls;
mod tokens;
mod tools;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "quiltd",
    version,
    about = "Signed HTTPS gateway to a Quilt board"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API.
    Serve {
        /// Where the node key lives (made on first start): the data
        /// partition on A/B boards, /run on diskless images.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/quilt/quiltd")]
        state_dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Client keys and roles.
        #[arg(long, value_name = "FILE", default_value = clients::DEFAULT_PATH)]
        authorized_clients: PathBuf,
        /// The control socket the boot config grants this service.
        #[arg(
            long,
            value_name = "SOCKET",
            default_value = "/run/quilt/control.d/quiltd.sock"
        )]
        control: PathBuf,
        /// Freshness window for signatures, seconds each way.
        #[arg(long, default_value_t = auth::DEFAULT_SKEW)]
        skew: i64,
        /// The tool index quilt-install writes (the tools MCP lists).
        #[arg(long, value_name = "FILE", default_value = quilt_proto::installer::TOOL_INDEX)]
        tool_index: PathBuf,
        /// A secret (at least 32 characters, the file not readable by
        /// others) a Prometheus server sends as `Authorization: Bearer` to
        /// scrape /metrics; without it /metrics needs a signed request.
        #[arg(long, value_name = "FILE")]
        metrics_token_file: Option<PathBuf>,
        /// Largest bundle `POST /v1/bundles` takes, in bytes. The body is
        /// held in a memfd (memory charged to quiltd's cgroup) until the
        /// installer has read it, so keep this below the service's memory
        /// limit.
        #[arg(long, value_name = "BYTES", default_value_t = install::DEFAULT_MAX_INSTALL)]
        max_install_bytes: u64,
        /// Also serve the API over this serial line (a tty: a UART or a
        /// USB gadget port), for boards without a network: `quilt mcp
        /// --serial` and `quilt call --serial` on the other end, with the
        /// same TLS, pin and signatures. Nothing else may use the line.
        #[arg(long, value_name = "DEVICE")]
        serial: Option<PathBuf>,
        /// The serial line's rate.
        #[arg(long, default_value_t = 115_200)]
        serial_baud: u32,
    },
    /// Print the API's OpenAPI 3.1 document (JSON), generated from the
    /// code; a running quiltd serves the same at /v1/openapi.json.
    Openapi,
    /// Print the node key's fingerprint (what clients pin), making the key
    /// if there is none yet.
    Identity {
        /// As for `serve`.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/quilt/quiltd")]
        state_dir: PathBuf,
    },
}

/// Why quiltd could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Clients(#[from] clients::ClientsError),
    #[error("metrics token {path}: {why}")]
    MetricsToken { path: PathBuf, why: String },
    #[error("--skew must be 1..=3600 seconds, not {0}")]
    Skew(i64),
    #[error("writing the OpenAPI document")]
    Openapi(#[source] serde_json::Error),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Openapi => serde_json::to_string_pretty(&openapi::document())
            .map(|text| println!("{text}"))
            .map_err(StartError::Openapi),
        Cmd::Identity { state_dir } => identity::Identity::load_or_create(&state_dir)
            .map(|(id, _)| println!("{}", id.fingerprint()))
            .map_err(StartError::from),
        Cmd::Serve {
            state_dir,
            listen,
            authorized_clients,
            control,
            skew,
            tool_index,
            metrics_token_file,
            max_install_bytes,
            serial,
            serial_baud,
        } => serve(
            Paths {
                state_dir,
                clients: authorized_clients,
                control,
                tool_index,
                metrics_token: metrics_token_file,
                serial: serial.map(|p| (p, serial_baud)),
            },
            listen,
            skew,
            max_install_bytes,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            eprintln!("quiltd: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The files `serve` uses.
struct Paths {
    state_dir: PathBuf,
    clients: PathBuf,
    control: PathBuf,
    tool_index: PathBuf,
    metrics_token: Option<PathBuf>,
    /// A serial line to serve too, and its rate.
    serial: Option<(PathBuf, u32)>,
}

/// The scrape token: a secret only quiltd's uid can read.
fn read_metrics_token(path: &std::path::Path) -> Result<String, StartError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |why: String| StartError::MetricsToken {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:03o}: others may read it; chmod 600 it",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "must be one line of at least 32 printable characters (e.g. `head -c 32 /dev/urandom | base64`)".into(),
        ));
    }
    Ok(token.to_owned())
}

fn serve(paths: Paths, listen: SocketAddr, skew: i64, max_install: u64) -> Result<(), StartError> {
    let Paths {
        state_dir,
        clients: clients_path,
        control,
        tool_index,
        metrics_token,
        serial,
    } = paths;
    if !(1..=3600).contains(&skew) {
        return Err(StartError::Skew(skew));
    }
    let (id, made) = identity::Identity::load_or_create(&state_dir)?;
    let tls = tls::server_config(&id)?;
    let clients = clients::Clients::load(&clients_path)?;
    let metrics_token = metrics_token
        .as_deref()
        .map(read_metrics_token)
        .transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(control::MAX_IN_FLIGHT)
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(listen);
        eprintln!(
            "quiltd: event=listening addr={addr} board-key={} key-new={made} clients={} control={}",
            id.fingerprint(),
            clients.len(),
            control.display()
        );
        if clients.is_empty() {
            eprintln!(
                "quiltd: event=no-clients path={}: every signed request will be refused; add `ROLE NAME ed25519:…` lines",
                clients_path.display()
            );
        }
        let state = Arc::new(api::AppState {
            control: control::Control::new(control),
            verifier: auth::Verifier::new(clients, skew, auth::NONCE_CAPACITY),
            now: api::unix_now,
            tools: tools::Catalog::new(tool_index),
            tokens: tokens::Tokens::default(),
            metrics: metrics::Metrics::default(),
            metrics_token,
            max_install,
            installing: tokio::sync::Semaphore::new(1),
        });
        let app = api::router(state);
        if let Some((path, baud)) = serial {
            eprintln!(
                "quiltd: event=serial-listening path={} baud={baud}",
                path.display()
            );
            tokio::spawn(server::serve_serial(
                path,
                baud,
                Arc::clone(&tls),
                app.clone(),
            ));
        }
        // quilt-init stops a service with SIGTERM; an operator at a
        // terminal with ^C.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(StartError::Runtime)?;
        tokio::select! {
            () = server::serve(listener, tls, app) => {}
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r { eprintln!("quiltd: event=signal-failed error=\"{e}\""); }
            }
        }
        eprintln!("quiltd: event=stopping");
        Ok(())
    })
}
