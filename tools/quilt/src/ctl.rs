//! Talking to a running quilt-init over its control socket: `quilt ping`,
//! `quilt ps`, `quilt run`, `quilt start|stop|restart`, `quilt logs`,
//! `quilt events`.

use anyhow::{bail, Context};
use quilt_control_client::{ClientError, Connection};
use quilt_proto::{Reply, Request};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when quilt-init refused or failed the request itself.
const REFUSED: u8 = 3;

/// Connect to quilt-init's control socket.
fn connect(socket: &Path) -> anyhow::Result<Connection> {
    Connection::connect(socket).map_err(|e| with_hint(e, socket))
}

/// A connect failure gets the usual causes; other errors stand as they are.
fn with_hint(e: ClientError, socket: &Path) -> anyhow::Error {
    if e.is_connect() {
        anyhow::Error::new(e).context(format!(
            "cannot reach {} (is this a Quilt board, and are you root?)",
            socket.display()
        ))
    } else {
        e.into()
    }
}

/// Standard input into a sealed memfd, from its start.
fn spool_stdin() -> anyhow::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "quilt-install",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let mut file = std::fs::File::from(fd);
    let n = std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .context("reading the bundle from standard input")?;
    if n == 0 {
        bail!("standard input was empty: pipe a .qb bundle into `quilt install -`");
    }
    let fd: rustix::fd::OwnedFd = file.into();
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .context("sealing the spooled bundle")?;
    Ok(fd)
}

/// Connect and send one request; replies are read with
/// [`Connection::next_reply`].
fn open(socket: &Path, req: &Request) -> anyhow::Result<Connection> {
    quilt_control_client::open(socket, req).map_err(|e| with_hint(e, socket))
}

/// Send one request, wait for its reply.
pub fn call(socket: &Path, req: &Request) -> anyhow::Result<Reply> {
    Ok(open(socket, req)?.next_reply()?)
}

/// `quilt start|stop|restart NAME`.
pub fn service(
    socket: &Path,
    name: &str,
    verb: quilt_proto::ServiceVerb,
) -> anyhow::Result<ExitCode> {
    let req = Request::Service {
        name: name.into(),
        verb,
    };
    match call(socket, &req)? {
        Reply::ServiceState { name, state } => {
            println!("{name}: {state}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt install FILE.qb|-` (on the board): through the trust store, as
/// at boot. The bundle goes over as an open fd (a stream is spooled into a
/// memfd first: quilt-init takes only fds whose reads cannot stall it).
pub fn install(socket: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let fd: rustix::fd::OwnedFd = if file == Path::new("-") {
        spool_stdin()?
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("{}: cannot open the bundle file", file.display()))?
            .into()
    };
    let mut conn = connect(socket)?;
    conn.send_with_fd(&Request::InstallFd, rustix::fd::AsFd::as_fd(&fd))
        .context("sending the bundle's fd")?;
    match conn.next_reply()? {
        Reply::Installed {
            name,
            version,
            already_installed: true,
            ..
        } => {
            println!(
                "{name} version {version} is already installed (same signed root); the file's content was not read"
            );
            Ok(ExitCode::SUCCESS)
        }
        Reply::Installed {
            name,
            version,
            chunks,
            chunks_written,
            ..
        } => {
            println!(
                "installed {name} version {version} ({chunks} chunks, {chunks_written} new to the store)"
            );
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt remove NAME`.
pub fn remove(socket: &Path, name: &str) -> anyhow::Result<ExitCode> {
    match call(socket, &Request::Remove { name: name.into() })? {
        Reply::Removed { name } => {
            println!("removed {name}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt bundles [--json]`: installed bundles and the trust store.
pub fn bundles(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match call(socket, &Request::Bundles)? {
        Reply::Bundles {
            bundles,
            keys,
            policy,
        } => {
            if json {
                let v = serde_json::json!({
                    "bundles": bundles.iter().map(|b| serde_json::json!({
                        "name": b.name, "version": b.version, "root": b.root,
                        "tokens": b.tokens, "files": b.files, "total_size": b.total_size,
                    })).collect::<Vec<_>>(),
                    "trust": {"keys": keys, "policy": policy},
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<28} {:>8}  {:<16}  tokens", "BUNDLE", "VERSION", "ROOT");
                for b in &bundles {
                    println!(
                        "{:<28} {:>8}  {:<16}  {}",
                        b.name,
                        b.version,
                        b.root.get(..16).unwrap_or(&b.root),
                        if b.tokens.is_empty() {
                            "-".to_string()
                        } else {
                            b.tokens.join(",")
                        }
                    );
                }
                println!("trusted keys: {}", keys.join(", "));
                print!("policy:\n{policy}");
            }
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt stats [--json]`: quilt-init's figures and counters.
pub fn stats(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = match call(socket, &Request::Stats)? {
        Reply::Stats(s) => s,
        other => return refused(other),
    };
    let map = |l: &[(String, u64)]| -> serde_json::Map<String, serde_json::Value> {
        l.iter().map(|(k, n)| (k.clone(), (*n).into())).collect()
    };
    if json {
        let v = serde_json::json!({
            "init_rss_bytes": s.init_rss_bytes,
            "init_fds": s.init_fds,
            "runs": map(&s.runs),
            "installs": map(&s.installs),
            "refusals": map(&s.refusals),
            "store": s.store.map(|u| serde_json::json!({"chunks": u.chunks, "bytes": u.bytes})),
            "service_oom_kills": map(&s.service_oom_kills),
            "bus": s.bus.iter().map(|c| serde_json::json!({
                "topic": c.topic, "published": c.published, "subscribers": c.subscribers,
                "lag_max": c.lag_max, "lost": c.lost,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let line = |l: &[(String, u64)]| {
        l.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "quilt-init: {} kB resident, {} open fds",
        s.init_rss_bytes / 1024,
        s.init_fds
    );
    println!("runs ended: {}", line(&s.runs));
    println!("bundles offered: {}", line(&s.installs));
    if !s.refusals.is_empty() {
        println!("refused because: {}", line(&s.refusals));
    }
    match s.store {
        Some(u) => println!("store: {} chunks, {} kB", u.chunks, u.bytes.div_ceil(1024)),
        None => println!("store: not measured yet (no install job has run)"),
    }
    println!("OOM kills: {}", line(&s.service_oom_kills));
    println!(
        "{:<24} {:>12} {:>11} {:>8} {:>8}",
        "CHANNEL", "PUBLISHED", "SUBSCRIBERS", "LAG", "LOST"
    );
    for c in &s.bus {
        println!(
            "{:<24} {:>12} {:>11} {:>8} {:>8}",
            c.topic, c.published, c.subscribers, c.lag_max, c.lost
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt tokens [--json]`: counted resources in use, and the tokens each
/// installed bundle holds.
pub fn tokens(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let resources = match call(socket, &Request::Resources)? {
        Reply::Resources(r) => r,
        other => return refused(other),
    };
    let bundles = match call(socket, &Request::Bundles)? {
        Reply::Bundles { bundles, .. } => bundles,
        // A board without a trust store still has resources to show.
        Reply::Error { .. } => Vec::new(),
        other => return refused(other),
    };
    if json {
        let v = serde_json::json!({
            "resources": resources.iter().map(|r| serde_json::json!({
                "name": r.name, "capacity": r.capacity, "used": r.used, "waiting": r.waiting,
            })).collect::<Vec<_>>(),
            "bundles": bundles.iter().map(|b| serde_json::json!({
                "name": b.name, "tokens": b.tokens,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>8} {:>6} {:>8}",
        "RESOURCE", "CAPACITY", "USED", "WAITING"
    );
    for r in &resources {
        println!(
            "{:<24} {:>8} {:>6} {:>8}",
            r.name, r.capacity, r.used, r.waiting
        );
    }
    println!();
    for b in &bundles {
        let t = if b.tokens.is_empty() {
            "-".to_string()
        } else {
            b.tokens.join(" ")
        };
        println!("{:<28} {t}", b.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt pods [--json]`: each pod with its members' states and volumes.
pub fn pods(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let pods = match call(socket, &Request::Pods)? {
        Reply::Pods(p) => p,
        other => return refused(other),
    };
    let services = match call(socket, &Request::List)? {
        Reply::Services(s) => s,
        other => return refused(other),
    };
    let state = |m: &str| {
        services
            .iter()
            .find(|s| s.name == m)
            .map_or("?", |s| s.state.as_str())
            .to_string()
    };
    if json {
        let v: Vec<serde_json::Value> = pods
            .iter()
            .map(|(name, members, volumes)| {
                serde_json::json!({
                    "name": name,
                    "members": members.iter().map(|m| serde_json::json!({"name": m, "state": state(m)})).collect::<Vec<_>>(),
                    "volumes": volumes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (name, members, volumes) in &pods {
        let m: Vec<String> = members
            .iter()
            .map(|m| format!("{m} ({})", state(m)))
            .collect();
        println!(
            "{name:<16} {}  volumes: {}",
            m.join(", "),
            volumes.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt slots [--json]`: the A/B boot state.
pub fn slots(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = match call(socket, &Request::Slots)? {
        Reply::Slots(s) => s,
        other => return refused(other),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let firmware = |v: u64| match v {
        0 => "the factory image".to_string(),
        v => format!("firmware {v}"),
    };
    println!(
        "booted    {}",
        match (&s.booted, s.trial) {
            (Some(b), true) => format!("{b}, on trial until its health check passes"),
            (Some(b), false) => b.clone(),
            (None, _) => "not from a slot".into(),
        }
    );
    println!("primary   {} ({})", s.primary, firmware(s.primary_version));
    match &s.trying {
        Some(t) => println!(
            "trying    {t} (firmware {}, {} boot(s) left)",
            s.trying_version, s.tries_left
        ),
        None => println!("trying    nothing"),
    }
    if s.failed_version > 0 {
        println!(
            "fell back firmware {} ({} fallback(s) so far); offer it again to retry it",
            s.failed_version, s.fallbacks
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt logs NAME [-f]`: the retained output, then (with `follow`)
/// everything new until interrupted.
pub fn logs(socket: &Path, name: &str, follow: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut conn = open(
        socket,
        &Request::Logs {
            name: name.into(),
            follow,
        },
    )?;
    let mut out = std::io::stdout().lock();
    loop {
        match conn.next_reply()? {
            Reply::Log { missed, data } => {
                if missed > 0 {
                    eprintln!("quilt: … {missed} bytes of output were not kept …");
                }
                out.write_all(&data)?;
                out.flush()?;
            }
            other => return refused(other),
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `quilt events [--json]`: every event line as it is logged, until
/// interrupted.
pub fn events(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = open(socket, &Request::Events)?;
    loop {
        match conn.next_reply()? {
            Reply::Event { line } => {
                if json {
                    println!("{}", event_json(&line));
                } else {
                    println!("{line}");
                }
            }
            other => return refused(other),
        }
    }
}

/// `quilt: t=1.5 event=x a=b c="d e"` as a JSON object of its fields.
fn event_json(line: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let rest = line.strip_prefix("quilt: ").unwrap_or(line);
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v = chars.by_ref().take_while(|&c| c != '"').collect();
            v
        } else {
            chars.by_ref().take_while(|&c| c != ' ').collect()
        };
        map.insert(key, serde_json::Value::String(value));
    }
    serde_json::Value::Object(map)
}

fn refused(reply: Reply) -> anyhow::Result<ExitCode> {
    match reply {
        Reply::Error { code, message } => {
            eprintln!("quilt: refused ({code:?}): {message}");
            Ok(ExitCode::from(REFUSED))
        }
        other => bail!("unexpected reply: {other:?}"),
    }
}

/// `quilt ping --count N`: N pings, each timed from connect to answer;
/// prints `pings=N answered=N p50_us=… p99_us=… max_us=…` (or JSON with
/// every time).
pub fn ping_many(
    socket: &Path,
    count: u32,
    interval_ms: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut took = Vec::with_capacity(count as usize);
    let mut failed = 0u32;
    for i in 0..count {
        let t0 = std::time::Instant::now();
        match call(socket, &Request::Ping) {
            Ok(Reply::Pong { .. }) => took.push(t0.elapsed().as_micros() as u64),
            Ok(other) => {
                failed += 1;
                eprintln!("quilt: ping {i}: unexpected reply {other:?}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("quilt: ping {i}: {e:#}");
            }
        }
        if interval_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(interval_ms));
        }
    }
    let each = took.clone();
    took.sort_unstable();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    let max = took.last().copied().unwrap_or(0);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "pings": count,
                "answered": took.len(),
                "p50_us": at(0.50),
                "p99_us": at(0.99),
                "max_us": max,
                "each_us": each,
            })
        );
    } else {
        println!(
            "pings={count} answered={} p50_us={} p99_us={} max_us={max}",
            took.len(),
            at(0.50),
            at(0.99),
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `quilt ping`.
pub fn ping(socket: &Path) -> anyhow::Result<ExitCode> {
    match call(socket, &Request::Ping)? {
        Reply::Pong { server } => {
            println!("quilt-init {server}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt ps [--json]`.
pub fn ps(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let services = match call(socket, &Request::List)? {
        Reply::Services(s) => s,
        other => return refused(other),
    };
    if json {
        let v: Vec<serde_json::Value> = services
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "state": s.state, "pid": s.pid, "restarts": s.restarts,
                    "uptime_ms": s.uptime_ms, "memory_bytes": s.memory_bytes,
                    "bundle": s.bundle, "cpu_usec": s.cpu_usec, "pids": s.pids,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<20} {:<9} {:>7} {:>8} {:>10} {:>10} {:>9} {:>5}  BUNDLE",
            "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "MEMORY", "CPU", "PIDS"
        );
        for s in services {
            let pid = s.pid.map_or("-".into(), |p| p.to_string());
            let up = s
                .uptime_ms
                .map_or("-".into(), |u| format!("{:.1}s", u as f64 / 1000.0));
            let mem = s
                .memory_bytes
                .map_or("-".into(), |m| format!("{:.1}MiB", m as f64 / 1048576.0));
            let cpu = s
                .cpu_usec
                .map_or("-".into(), |u| format!("{:.2}s", u as f64 / 1e6));
            let pids = s.pids.map_or("-".into(), |p| p.to_string());
            println!(
                "{:<20} {:<9} {:>7} {:>8} {:>10} {:>10} {:>9} {:>5}  {}",
                s.name,
                s.state,
                pid,
                s.restarts,
                up,
                mem,
                cpu,
                pids,
                s.bundle.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt run BUNDLE [--input FILE]`: prints the tool's stdout, its stderr
/// tail on stderr, and exits with its status.
pub fn run(
    socket: &Path,
    bundle: &str,
    input: Option<&PathBuf>,
    timeout_ms: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let req = Request::Run {
        bundle: bundle.into(),
        input: read_input(input)?,
        timeout_ms,
    };
    show_result(socket, &req, bundle, json)
}

/// The tools installed bundle `name` declares, from its signed manifest in
/// the board's store. quilt-init checked the signatures when it installed
/// the bundle and reports the root; the record's manifest must hash to
/// that root, so what is read here is what was signed.
fn installed_tools(
    socket: &Path,
    store: &Path,
    name: &str,
) -> anyhow::Result<Vec<quilt_bundle::ToolDef>> {
    let root = match call(socket, &Request::Bundles)? {
        Reply::Bundles { bundles, .. } => bundles
            .into_iter()
            .find(|b| b.name == name)
            .map(|b| b.root)
            .with_context(|| format!("{name} is not installed (`quilt bundles` lists what is)"))?,
        Reply::Error { code, message } => {
            bail!("quilt-init refused to list bundles ({code:?}): {message}")
        }
        other => bail!("unexpected reply: {other:?}"),
    };
    // The record is `bundles/<root>`, or `bundles/<name as a path>@<root>`
    // in stores that key records by name too; either way it must be
    // `name`'s and hash to `root`.
    let dir = store.join("bundles");
    let suffix = format!("@{root}");
    let mut candidates = vec![dir.join(&root)];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        candidates.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .map(|e| e.path()),
        );
    }
    for path in candidates.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let bad = |e: quilt_bundle::Error| anyhow::anyhow!("{}: {e}", path.display());
        let (env, rest) = quilt_bundle::envelope::Envelope::parse(
            &quilt_bundle::envelope::MAGIC_BUNDLE,
            "bundle record",
            &bytes,
        )
        .map_err(bad)?;
        let header = quilt_bundle::Header::decode(&env.body).map_err(bad)?;
        if header.name != name {
            continue;
        }
        let manifest = quilt_bundle::Manifest::decode(rest).map_err(bad)?;
        manifest.validate().map_err(bad)?;
        let computed = quilt_bundle::manifest::bundle_root(rest, &manifest.chunk_order());
        if computed != header.root || computed.to_string() != root {
            bail!(
                "{}: the manifest does not hash to the root quilt-init installed ({root}); the store is damaged, run fsck",
                path.display()
            );
        }
        return Ok(manifest.tools);
    }
    bail!(
        "no record of {name} (root {root}) in {} (is --store the board's store?)",
        dir.display()
    )
}

fn tool_json(t: &quilt_bundle::ToolDef) -> serde_json::Value {
    let schema = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.into()));
    serde_json::json!({
        "name": t.name,
        "description": t.description,
        "input": schema(&t.input),
        "output": t.output.as_deref().map(schema),
    })
}

/// `quilt run BUNDLE --tools`: the signed tool list as JSON.
pub fn list_tools(socket: &Path, store: &Path, bundle: &str) -> anyhow::Result<ExitCode> {
    let tools = installed_tools(socket, store, bundle)?;
    let v: Vec<_> = tools.iter().map(tool_json).collect();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

/// `quilt run BUNDLE TOOL [--input FILE]`: checks TOOL against the signed
/// manifest and the input is JSON, then sends `{"tool","input"}`. The
/// schema itself is applied by the SDK inside the container, before the
/// tool's code runs; quilt-init only passes bytes.
pub fn run_tool(
    socket: &Path,
    store: &Path,
    bundle: &str,
    tool: &str,
    input: Option<&PathBuf>,
    timeout_ms: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let tools = installed_tools(socket, store, bundle)?;
    if tools.is_empty() {
        bail!("{bundle} declares no tools (it was not built with `quilt build`); run it without a tool name");
    }
    if !tools.iter().any(|t| t.name == tool) {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "{bundle} has no tool {tool:?}; it has: {} (`quilt run {bundle} --tools` shows their schemas)",
            names.join(", ")
        );
    }
    let raw = read_input(input)?;
    let value: serde_json::Value = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&raw)
            .context("the input is not JSON; pass a JSON object with --input FILE")?
    };
    let req = Request::Run {
        bundle: bundle.into(),
        input: serde_json::to_vec(&serde_json::json!({"tool": tool, "input": value}))?,
        timeout_ms,
    };
    show_result(socket, &req, bundle, json)
}

/// `quilt exec SERVICE -- ARGV...`: a process inside a running service's
/// container, its output and exit status as for `quilt run`.
pub fn exec(
    socket: &Path,
    service: &str,
    argv: Vec<String>,
    input: Option<&PathBuf>,
    timeout_ms: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let req = Request::Exec {
        service: service.into(),
        argv,
        input: read_input(input)?,
        timeout_ms,
    };
    show_result(socket, &req, service, json)
}

/// `--input FILE` (`-`: stdin), or nothing.
fn read_input(input: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    Ok(match input {
        Some(p) if p.as_os_str() == "-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
            v
        }
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => Vec::new(),
    })
}

/// Send a `Run` or `Exec`, print its result, exit with its status.
fn show_result(socket: &Path, req: &Request, what: &str, json: bool) -> anyhow::Result<ExitCode> {
    let bundle = what;
    let r = match call(socket, req)? {
        Reply::Ran(r) => r,
        other => return refused(other),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "status": r.status, "oom_killed": r.oom_killed, "timed_out": r.timed_out,
                "stdout": String::from_utf8_lossy(&r.stdout), "stdout_truncated": r.stdout_truncated,
                "stderr_tail": String::from_utf8_lossy(&r.stderr_tail), "micros": r.micros,
            })
        );
    } else {
        use std::io::Write;
        std::io::stdout().write_all(&r.stdout)?;
        std::io::stderr().write_all(&r.stderr_tail)?;
        if r.oom_killed {
            eprintln!("quilt: {bundle} was killed: out of memory (its memory limit)");
        }
        if r.timed_out {
            eprintln!("quilt: {bundle} was killed at its deadline");
        }
        if r.stdout_truncated {
            eprintln!("quilt: output cut at {} bytes", quilt_proto::MAX_OUTPUT);
        }
    }
    Ok(ExitCode::from(u8::try_from(r.status).unwrap_or(255)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_lines_become_json_objects() {
        let v = super::event_json(
            r#"quilt: t=2.5 event=service-exit name=db status=1 error="no such file""#,
        );
        assert_eq!(v["t"], "2.5");
        assert_eq!(v["event"], "service-exit");
        assert_eq!(v["status"], "1");
        assert_eq!(v["error"], "no such file");
    }
}
