//! `quilt`: the host-side command line for Quilt boards.
//!
//! Each subcommand lives in its own module; this file only wires them up.

mod bundle;
mod call;
mod config_cmd;
mod ctl;
mod disk_cmd;
mod flash;
mod fsck;
mod image_cmd;
mod key;
mod mcp_proxy;
mod push;
mod sdk;
mod send;

use quilt::gateway;

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
    /// Start a TypeScript tool project: quilt.toml, package.json,
    /// tsconfig.json, src/index.ts with one @tool, src/index.test.ts, and the
    /// @quilt/tool SDK in vendor/quilt-tool; then `bun install` writes
    /// bun.lock (needs the npm registry for the SDK's one dependency).
    ///
    /// Next: `quilt test NAME`, `quilt build NAME --out NAME.qb`.
    #[command(verbatim_doc_comment)]
    New {
        /// The project directory to create; its name is the bundle's name.
        name: std::path::PathBuf,
        /// What to start from.
        #[arg(long, value_enum, default_value = "tool")]
        template: sdk::Template,
        /// Bun to run (default: $QUILT_BUN, else `bun` on PATH).
        #[arg(long)]
        bun: Option<std::path::PathBuf>,
        /// Do not run `bun install` (you run it before building).
        #[arg(long)]
        no_install: bool,
    },
    /// Build a TypeScript tool project into an unsigned bundle.
    ///
    /// Steps: `bun install --frozen-lockfile`; `bun build ENTRY --target=bun
    /// --minify --sourcemap=linked` into one index.js (npm dependencies
    /// inlined; `quilt-bus` left to the board's runtime layer); the built
    /// module loaded under Bun with QUILT_TOOL_DESCRIBE=1 (cleared
    /// environment, no stdin, no network, 30 s deadline) to read the tools its @tool
    /// decorators and defineTool calls registered; names and schemas
    /// checked; index.js, index.js.map and the tools packed into FILE.qb
    /// with the header fields of quilt.toml (`entry` names the source
    /// module; the bundle's entry is index.js). The same project gives the
    /// same bytes. Errors name the file and line.
    #[command(verbatim_doc_comment)]
    Build {
        /// The project directory (holds quilt.toml and bun.lock).
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE.qb")]
        out: std::path::PathBuf,
        /// Bun to run (default: $QUILT_BUN, else `bun` on PATH).
        #[arg(long)]
        bun: Option<std::path::PathBuf>,
        /// Skip `bun install --frozen-lockfile` (node_modules is current).
        #[arg(long)]
        no_install: bool,
    },
    /// Install a tool project's locked dependencies, run its `bun test`,
    /// then build it and call each tool with each of its `examples`
    /// (checking the results they give), or once with `{}`, through the
    /// real stdin/stdout envelope on this host, with no environment and no
    /// network (the rest of the container, limits and tokens are not
    /// emulated).
    Test {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// Bun to run (default: $QUILT_BUN, else `bun` on PATH).
        #[arg(long)]
        bun: Option<std::path::PathBuf>,
        /// Skip `bun install --frozen-lockfile` (node_modules is current).
        #[arg(long)]
        no_install: bool,
    },
    /// Run an installed bundle once in a fresh container on this board and
    /// print its result; exits with the tool's status (3: refused).
    ///
    /// With TOOL (bundles from `quilt build`): the tool must be one the
    /// bundle's signed manifest lists; the input (--input, default `{}`)
    /// must be JSON and is sent as {"tool": TOOL, "input": ...}; the
    /// tool's SDK checks it against the schema before the tool runs, and
    /// the result or error envelope is printed. `quilt run BUNDLE --tools`
    /// lists the tools with their schemas.
    #[command(verbatim_doc_comment)]
    Run {
        /// Installed bundle name.
        bundle: String,
        /// A tool the bundle declares.
        tool: Option<String>,
        /// List the bundle's tools (name, description, schemas) as JSON.
        #[arg(long, conflicts_with = "tool")]
        tools: bool,
        /// The board's bundle store (to read the signed manifest).
        #[arg(long, default_value = "/var/lib/quilt/store")]
        store: std::path::PathBuf,
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
    /// quilt-init's own figures (RSS, open fds) and its counters since
    /// boot: runs and install jobs by outcome, OOM kills per service, and
    /// each bus channel's messages, subscribers, lag and losses. quiltd's
    /// `/metrics` serves the same figures.
    Stats {
        /// JSON instead of text.
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
    /// Re-hash the board's bundle store, in this process (not PID 1's):
    /// every installed bundle's record and every chunk. Exit 0 when sound,
    /// 1 when something is wrong. With --repair, drop the chunks that do
    /// not match their ids and name the bundles that now lack one; offer
    /// each of those again (`quilt install FILE`, a USB stick, or `quilt
    /// send` from the host) and only the dropped chunks are fetched.
    /// Running containers keep their trees. Paths come from the board's
    /// boot config (/etc/quilt/boot.bin) unless given.
    Fsck(fsck::FsckArgs),
    /// One signed request to a board's gateway (quiltd), printing its JSON
    /// reply.
    ///
    /// The board is pinned by --board-key (what `quiltd identity` prints
    /// on it); the request is signed with --key (`quilt key gen --client`),
    /// whose public half the board's authorized-clients file must list.
    /// Exit 0 on success, 3 when the board refused or failed (its reason is
    /// printed), 1 when it could not be reached.
    #[command(verbatim_doc_comment)]
    Call(call::CallArgs),
    /// Be a board's MCP server on stdio: what an MCP client launches.
    ///
    /// Every message the client writes goes to the board's gateway as a
    /// signed request (--key), over TLS pinned to --board-key; replies come
    /// back on stdout. The board lists the tools of its installed bundles
    /// (and, for operator keys, board.services and board.service).
    ///
    /// An MCP client's config, e.g. Claude Desktop's:
    ///   "quilt-board": {"command": "quilt", "args": ["mcp",
    ///     "--board", "https://10.0.0.7:8443", "--key", "/home/me/.quilt/me.key",
    ///     "--board-key", "SHA256:…"]}
    /// Exit 1 at once if the board cannot be reached or its key is not the
    /// pinned one (the reason is on stderr, the client's server log).
    #[command(verbatim_doc_comment)]
    Mcp(mcp_proxy::McpArgs),
    /// Install a signed bundle on a board through its gateway (quiltd).
    ///
    /// The file streams to the board as it is read (a progress bar shows
    /// it), signed and pinned as `quilt call` is; the board holds it to the
    /// signed digest, then installs it through its trust store exactly as
    /// `quilt install` on the board would: signatures, threshold, version
    /// and architecture are checked there, and a refused bundle leaves the
    /// board as it was. Needs an operator key and a quiltd whose grant
    /// includes `install`. Exit 0 when installed (or already installed),
    /// 3 when the board refused (its reason is printed), 1 when it could
    /// not be reached. Air-gapped boards: `quilt send` over serial.
    #[command(verbatim_doc_comment)]
    Push(push::PushArgs),
    /// Mint a short-lived bearer token for the board's MCP endpoint.
    ///
    /// For MCP clients that speak Streamable HTTP with bearer auth only:
    /// point them at https://BOARD:PORT/mcp with `Authorization: Bearer
    /// TOKEN` (and pin the board's certificate key). The token is printed
    /// alone on stdout; it stands for this key's client and role, on /mcp
    /// only, until it expires (--ttl) or quiltd restarts. Prefer `quilt mcp`
    /// where the client can launch a command.
    #[command(verbatim_doc_comment)]
    Token(call::TokenArgs),
    /// Check that quilt-init answers, and its version.
    ///
    /// With --count, ask that many times and print how long each answer
    /// took as a summary (answered, p50, p99 and max in microseconds): a
    /// way to see whether PID 1 stays responsive while it is busy, e.g.
    /// during an install or a firmware update. Exit 1 if any ping failed.
    Ping {
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
        /// Pings to send (one prints the version, as without it).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Pause between pings, in milliseconds.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// With --count: the summary as JSON, with every answer's time
        /// (`each_us`), for scripts that merge several runs.
        #[arg(long)]
        json: bool,
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
        Cmd::Call(a) => call::run(&a),
        Cmd::Mcp(a) => mcp_proxy::run(&a),
        Cmd::Token(a) => call::token(&a),
        Cmd::Push(a) => push::run(&a),
        Cmd::New {
            name,
            template,
            bun,
            no_install,
        } => sdk::new(&name, template, bun.as_deref(), !no_install),
        Cmd::Build {
            dir,
            out,
            bun,
            no_install,
        } => sdk::build(&dir, &out, bun.as_deref(), !no_install),
        Cmd::Test {
            dir,
            bun,
            no_install,
        } => sdk::test(&dir, bun.as_deref(), !no_install),
        Cmd::Run {
            bundle,
            tool: Some(tool),
            input,
            timeout_ms,
            json,
            socket,
            store,
            ..
        } => ctl::run_tool(
            &socket,
            &store,
            &bundle,
            &tool,
            input.as_ref(),
            timeout_ms,
            json,
        ),
        Cmd::Run {
            bundle,
            tools: true,
            socket,
            store,
            ..
        } => ctl::list_tools(&socket, &store, &bundle),
        Cmd::Run {
            bundle,
            input,
            timeout_ms,
            json,
            socket,
            ..
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
        Cmd::Stats { json, socket } => ctl::stats(&socket, json),
        Cmd::Pods { json, socket } => ctl::pods(&socket, json),
        Cmd::Slots { json, socket } => ctl::slots(&socket, json),
        Cmd::Fsck(a) => fsck::run(&a),
        Cmd::Exec {
            service,
            argv,
            input,
            timeout_ms,
            json,
            socket,
        } => ctl::exec(&socket, &service, argv, input.as_ref(), timeout_ms, json),
        Cmd::Ping {
            socket,
            count,
            interval_ms,
            json,
        } if count > 1 => ctl::ping_many(&socket, count, interval_ms, json),
        Cmd::Ping { socket, .. } => ctl::ping(&socket),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quilt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
