//! `quilt`: the host-side command line for Quilt boards.
//!
//! Each subcommand lives in its own module; this file only wires them up.

mod bundle;
mod config_cmd;
mod ctl;
mod disk_cmd;
mod flash;
mod image_cmd;
mod key;
mod send;

use clap::{Parser, Subcommand};

/// Make keys, pack and sign bundles, compile boot configs and build images
/// for boards running quilt-init.
#[derive(Parser)]
#[command(name = "quilt", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make and inspect ed25519 signing keys.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Pack, sign, verify, inspect and diff bundles (.qb).
    #[command(subcommand)]
    Bundle(bundle::BundleCmd),
    /// Compile and check the boot configuration read by quilt-init.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Assemble bootable images: an initramfs for QEMU, a flashable disk
    /// image for a board.
    #[command(subcommand)]
    Image(image_cmd::ImageCmd),
    // Help text: the doc comment on `send::SendArgs`.
    Send(send::SendArgs),
    /// Run an installed bundle once in a fresh container on this board and
    /// print its result; exits with the tool's status (3: refused).
    Run {
        /// Installed bundle name.
        bundle: String,
        /// File fed to the tool on stdin (`-`: this stdin).
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Kill the tool after this many milliseconds (0: the board's default, 30 s).
        #[arg(long, default_value_t = 0)]
        timeout_ms: u32,
        /// Print status, output and timing as one JSON object.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// List the board's services with state, restarts, uptime and memory.
    Ps {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Start a stopped or finished service (it is not restarted by itself
    /// after `quilt stop`).
    Start {
        /// Service name (`quilt ps` lists them).
        name: String,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Stop a service: SIGTERM, then cgroup.kill after the shutdown grace;
    /// it stays stopped until `quilt start`.
    Stop {
        /// Service name.
        name: String,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Stop a service if it runs, then start it again.
    Restart {
        /// Service name.
        name: String,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// A service's output: the last 8 KiB quilt-init kept, and with -f
    /// everything it prints from then on (Ctrl-C to stop).
    Logs {
        /// Service name.
        name: String,
        /// Keep following new output.
        #[arg(short, long)]
        follow: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Print quilt-init's events as they happen: services starting,
    /// exiting (with status), OOM-killed, backing off; bundles installed
    /// or refused; runs (Ctrl-C to stop).
    Events {
        /// One JSON object per event instead of the raw line.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Install a signed bundle through the trust store (signatures,
    /// threshold, version, architecture), as at boot. The file is opened
    /// here and its fd handed to quilt-init, so any file you can read
    /// works; `-` reads the bundle from standard input (e.g. `ssh … cat
    /// x.qb | quilt install -`). From a host without a network, use
    /// `quilt send`.
    Install {
        /// The .qb file, or `-` for standard input.
        file: std::path::PathBuf,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Remove an installed bundle (refused while a service or run uses it).
    Remove {
        /// Bundle name.
        name: String,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Installed bundles (name, version, root, tokens) and the trust store.
    Bundles {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Counted resources (capacity, units in use, waiters) and the tokens
    /// each installed bundle holds.
    Tokens {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Run a command inside a running bundle service's container (its
    /// namespaces, root and cgroup; uid 1000, no capabilities, seccomp), e.g.
    /// `quilt exec calc -- /bin/bun --version`.
    Exec {
        /// Service name.
        service: String,
        /// Command and arguments (argv[0] a path inside the container).
        #[arg(last = true, required = true)]
        argv: Vec<String>,
        /// File fed on stdin (`-`: this stdin).
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Kill it after this many milliseconds (0: 30 s).
        #[arg(long, default_value_t = 0)]
        timeout_ms: u32,
        /// Print status, output and timing as one JSON object.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Pods (services sharing network, IPC and volumes) with their
    /// members' states; `quilt start|stop|restart POD` acts on all of them.
    Pods {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// The A/B firmware slots: which one runs, what is on trial, which
    /// version last fell back (offer it again with `quilt install` to
    /// retry it).
    Slots {
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Check that quilt-init answers, and its version.
    Ping {
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Key(c) => key::run(c),
        Cmd::Bundle(c) => bundle::run(c),
        Cmd::Config(c) => config_cmd::run(c),
        Cmd::Image(c) => image_cmd::run(c),
        Cmd::Send(a) => send::run(&a),
        Cmd::Run {
            bundle,
            input,
            timeout_ms,
            json,
            socket,
        } => ctl::run(&socket, &bundle, input.as_ref(), timeout_ms, json),
        Cmd::Ps { json, socket } => ctl::ps(&socket, json),
        Cmd::Start { name, socket } => {
            ctl::service(&socket, &name, quilt_proto::ServiceVerb::Start)
        }
        Cmd::Stop { name, socket } => ctl::service(&socket, &name, quilt_proto::ServiceVerb::Stop),
        Cmd::Restart { name, socket } => {
            ctl::service(&socket, &name, quilt_proto::ServiceVerb::Restart)
        }
        Cmd::Logs {
            name,
            follow,
            socket,
        } => ctl::logs(&socket, &name, follow),
        Cmd::Events { json, socket } => ctl::events(&socket, json),
        Cmd::Install { file, socket } => ctl::install(&socket, &file),
        Cmd::Remove { name, socket } => ctl::remove(&socket, &name),
        Cmd::Bundles { json, socket } => ctl::bundles(&socket, json),
        Cmd::Tokens { json, socket } => ctl::tokens(&socket, json),
        Cmd::Pods { json, socket } => ctl::pods(&socket, json),
        Cmd::Slots { json, socket } => ctl::slots(&socket, json),
        Cmd::Exec {
            service,
            argv,
            input,
            timeout_ms,
            json,
            socket,
        } => ctl::exec(&socket, &service, argv, input.as_ref(), timeout_ms, json),
        Cmd::Ping { socket } => ctl::ping(&socket),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quilt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
