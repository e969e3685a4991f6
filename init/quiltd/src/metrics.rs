//! `/metrics`: the board in the Prometheus text format (0.0.4), with the
//! official `prometheus-client` crate.
//!
//! Two kinds of figures. What quiltd itself sees, kept as it happens:
//! tool runs through the gateway (REST and MCP) by outcome, their latency
//! as a histogram, and refused requests by reason. And what quilt-init
//! reports, asked at every scrape through the control socket (`List`,
//! `Bundles`, `Stats`): per service its state, restarts, CPU, memory,
//! tasks and OOM kills (its cgroup's figures), the installed bundles and
//! their bytes, every run and install job on the board by outcome, the
//! bus channels' messages, subscribers, lag and losses, and quilt-init's
//! own RSS and open fds. A scrape therefore costs three control calls;
//! quilt-init being down is `quilt_init_up 0`, not a failed scrape.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use quilt_proto::{BoardStats, BundleInfo, ServiceInfo};
use std::sync::atomic::AtomicU64;

/// Labels as name/value pairs.
type Labels = Vec<(&'static str, String)>;

/// How a gateway tool run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0, not killed.
    Ok,
    /// Non-zero exit or the tool's own error.
    Failed,
    /// Killed for memory.
    Oom,
    /// Killed at its deadline.
    Timeout,
    /// quilt-init refused it (not installed, busy, not granted).
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Oom => "oom",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
        }
    }

    /// Of a finished run.
    pub fn of(r: &quilt_proto::RunResult) -> Outcome {
        if r.oom_killed {
            Outcome::Oom
        } else if r.timed_out {
            Outcome::Timeout
        } else if r.status != 0 {
            Outcome::Failed
        } else {
            Outcome::Ok
        }
    }
}

/// What quiltd counts as it goes.
#[derive(Debug)]
pub struct Metrics {
    runs: Family<Labels, Counter>,
    run_seconds: Family<Labels, Histogram>,
    refusals: Family<Labels, Counter>,
    installs: Family<Labels, Counter>,
}

fn run_histogram() -> Histogram {
    // 5 ms to ~41 s: a warm run is tens of ms, a cold Bun start under
    // emulation seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(run_histogram),
            refusals: Family::default(),
            installs: Family::default(),
        }
    }
}

/// What quilt-init said at scrape time (`None`: it did not answer).
#[derive(Debug, Default)]
pub struct Board {
    /// `List`.
    pub services: Option<Vec<ServiceInfo>>,
    /// `Bundles`.
    pub bundles: Option<Vec<BundleInfo>>,
    /// Tools in the tool index.
    pub tools: Option<usize>,
    /// `Stats`.
    pub stats: Option<BoardStats>,
}

impl Metrics {
    /// A gateway run of `via` ("rest" or "mcp") ended as `outcome` after
    /// `seconds`.
    pub fn run(&self, via: &'static str, outcome: Outcome, seconds: f64) {
        let labels = vec![
            ("via", via.to_owned()),
            ("outcome", outcome.as_str().to_owned()),
        ];
        self.runs.get_or_create(&labels).inc();
        self.run_seconds
            .get_or_create(&vec![("via", via.to_owned())])
            .observe(seconds);
    }

    /// A bundle install through the gateway ended as `outcome` (`Ok` or
    /// `Refused` by the board).
    pub fn install(&self, outcome: Outcome) {
        self.installs
            .get_or_create(&vec![("outcome", outcome.as_str().to_owned())])
            .inc();
    }

    /// A request refused for `reason` (the API's error code).
    pub fn refused(&self, reason: &'static str) {
        self.refusals
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// The text a scrape returns.
    pub fn render(&self, board: &Board) -> Result<String, std::fmt::Error> {
        let mut r = Registry::default();
        r.register(
            "quilt_gateway_runs",
            "Tool runs through the gateway, by way in (rest, mcp) and outcome",
            self.runs.clone(),
        );
        r.register(
            "quilt_gateway_run_duration_seconds",
            "Tool run latency through the gateway, request to reply",
            self.run_seconds.clone(),
        );
        r.register(
            "quilt_gateway_refusals",
            "Requests the gateway refused, by reason",
            self.refusals.clone(),
        );
        r.register(
            "quilt_gateway_installs",
            "Bundles installed through the gateway, by outcome (ok, refused by the board)",
            self.installs.clone(),
        );
        let up = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        up.set(i64::from(board.services.is_some()));
        r.register(
            "quilt_init_up",
            "Whether quilt-init answered this scrape",
            up,
        );
        if let Some(services) = &board.services {
            service_metrics(&mut r, services);
        }
        if let Some(bundles) = &board.bundles {
            let n = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            n.set(i64::try_from(bundles.len()).unwrap_or(i64::MAX));
            r.register("quilt_bundles_installed", "Installed bundles", n);
            let bytes = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            let sum: u64 = bundles.iter().map(|b| b.total_size).sum();
            bytes.set(i64::try_from(sum).unwrap_or(i64::MAX));
            r.register(
                "quilt_bundle_content_bytes",
                "Content bytes of the installed bundles (before chunk sharing)",
                bytes,
            );
        }
        if let Some(stats) = &board.stats {
            stats_metrics(&mut r, stats);
        }
        if let Some(tools) = board.tools {
            let n = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            n.set(i64::try_from(tools).unwrap_or(i64::MAX));
            r.register("quilt_tools", "Tools the installed bundles declare", n);
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r)?;
        Ok(out)
    }
}

/// A gauge set to `v`.
fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// A family of counters with one label, each set to its count.
fn counters(label: &'static str, counts: &[(String, u64)]) -> Family<Labels, Counter> {
    let f: Family<Labels, Counter> = Family::default();
    for (v, n) in counts {
        f.get_or_create(&vec![(label, v.clone())]).inc_by(*n);
    }
    f
}

fn stats_metrics(r: &mut Registry, s: &BoardStats) {
    r.register(
        "quilt_init_resident_bytes",
        "quilt-init's resident memory (VmRSS)",
        gauge(s.init_rss_bytes),
    );
    r.register(
        "quilt_init_open_fds",
        "quilt-init's open file descriptors",
        gauge(u64::from(s.init_fds)),
    );
    r.register(
        "quilt_runs",
        "Tool runs and execs on the board that ended, by outcome (all clients, not only the gateway)",
        counters("outcome", &s.runs),
    );
    r.register(
        "quilt_installs",
        "Bundles offered to the board's store, by outcome (all ways in: gateway, quilt install, sticks)",
        counters("outcome", &s.installs),
    );
    r.register(
        "quilt_install_refusals",
        "Bundles the board refused, by the check that refused them",
        counters("reason", &s.refusals),
    );
    if let Some(u) = s.store {
        r.register(
            "quilt_store_bytes",
            "Bytes of the bundle store's chunk files (each shared chunk once), as of the last install job",
            gauge(u.bytes),
        );
        r.register(
            "quilt_store_chunks",
            "Chunk files in the bundle store, as of the last install job",
            gauge(u.chunks),
        );
    }
    r.register(
        "quilt_service_oom_kills",
        "OOM kills in the service's cgroup",
        counters("service", &s.service_oom_kills),
    );
    let messages: Family<Labels, Counter> = Family::default();
    let lost: Family<Labels, Counter> = Family::default();
    let subscribers: Family<Labels, Gauge> = Family::default();
    let lag: Family<Labels, Gauge> = Family::default();
    for c in &s.bus {
        let l = vec![("topic", c.topic.clone())];
        messages.get_or_create(&l).inc_by(c.published);
        lost.get_or_create(&l).inc_by(c.lost);
        subscribers.get_or_create(&l).set(i64::from(c.subscribers));
        lag.get_or_create(&l)
            .set(i64::try_from(c.lag_max).unwrap_or(i64::MAX));
    }
    r.register(
        "quilt_bus_messages",
        "Messages published on the bus channel",
        messages,
    );
    r.register(
        "quilt_bus_lost_messages",
        "Messages the channel's subscribers lost to overwrites (drop-oldest)",
        lost,
    );
    r.register(
        "quilt_bus_subscribers",
        "Subscribers holding the channel now",
        subscribers,
    );
    r.register(
        "quilt_bus_lag_messages",
        "Messages the furthest-behind subscriber of the channel has still to read",
        lag,
    );
}

fn service_metrics(r: &mut Registry, services: &[ServiceInfo]) {
    let up: Family<Labels, Gauge> = Family::default();
    let restarts: Family<Labels, Counter> = Family::default();
    let cpu: Family<Labels, Counter<f64, AtomicU64>> = Family::default();
    let memory: Family<Labels, Gauge> = Family::default();
    let tasks: Family<Labels, Gauge> = Family::default();
    for s in services {
        let l = vec![("service", s.name.clone())];
        up.get_or_create(&l)
            .set(i64::from(matches!(s.state.as_str(), "running" | "ready")));
        restarts.get_or_create(&l).inc_by(u64::from(s.restarts));
        if let Some(us) = s.cpu_usec {
            cpu.get_or_create(&l).inc_by(us as f64 / 1e6);
        }
        if let Some(b) = s.memory_bytes {
            memory
                .get_or_create(&l)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        if let Some(p) = s.pids {
            tasks
                .get_or_create(&l)
                .set(i64::try_from(p).unwrap_or(i64::MAX));
        }
    }
    r.register("quilt_service_up", "1 while the service runs", up);
    r.register(
        "quilt_service_restarts",
        "Restarts of the service",
        restarts,
    );
    r.register(
        "quilt_service_cpu_seconds",
        "CPU time of the service's cgroup",
        cpu,
    );
    r.register(
        "quilt_service_memory_bytes",
        "Memory of the service's cgroup",
        memory,
    );
    r.register(
        "quilt_service_tasks",
        "Tasks in the service's cgroup",
        tasks,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_has_the_gateways_figures_and_the_boards() {
        let m = Metrics::default();
        m.run("rest", Outcome::Ok, 0.02);
        m.run("mcp", Outcome::Oom, 1.5);
        m.refused("stale");
        m.install(Outcome::Refused);
        let board = Board {
            services: Some(vec![ServiceInfo {
                name: "quiltd".into(),
                state: "running".into(),
                pid: Some(7),
                restarts: 2,
                uptime_ms: Some(1),
                memory_bytes: Some(4096),
                bundle: None,
                cpu_usec: Some(1_500_000),
                pids: Some(3),
            }]),
            bundles: None,
            tools: Some(4),
            stats: Some(BoardStats {
                init_rss_bytes: 2_097_152,
                init_fds: 31,
                runs: vec![("ok".into(), 5), ("oom".into(), 1)],
                installs: vec![("installed".into(), 2), ("refused".into(), 1)],
                refusals: vec![("unknown-signer".into(), 1)],
                store: Some(quilt_proto::installer::StoreUsage {
                    chunks: 12,
                    bytes: 52_428_800,
                }),
                service_oom_kills: vec![("quiltd".into(), 0)],
                bus: vec![quilt_proto::ChannelStats {
                    topic: "sensors".into(),
                    published: 10,
                    subscribers: 2,
                    lag_max: 3,
                    lost: 1,
                }],
            }),
        };
        let text = m.render(&board).unwrap();
        for want in [
            "quilt_gateway_runs_total{via=\"rest\",outcome=\"ok\"} 1",
            "quilt_gateway_runs_total{via=\"mcp\",outcome=\"oom\"} 1",
            "quilt_gateway_run_duration_seconds_bucket{via=\"rest\",le=\"0.04\"} 1",
            "quilt_gateway_refusals_total{reason=\"stale\"} 1",
            "quilt_gateway_installs_total{outcome=\"refused\"} 1",
            "quilt_init_up 1",
            "quilt_service_restarts_total{service=\"quiltd\"} 2",
            "quilt_service_cpu_seconds_total{service=\"quiltd\"} 1.5",
            "quilt_service_memory_bytes{service=\"quiltd\"} 4096",
            "quilt_tools 4",
            "quilt_init_resident_bytes 2097152",
            "quilt_init_open_fds 31",
            "quilt_runs_total{outcome=\"ok\"} 5",
            "quilt_runs_total{outcome=\"oom\"} 1",
            "quilt_installs_total{outcome=\"refused\"} 1",
            "quilt_install_refusals_total{reason=\"unknown-signer\"} 1",
            "quilt_store_bytes 52428800",
            "quilt_store_chunks 12",
            "quilt_service_oom_kills_total{service=\"quiltd\"} 0",
            "quilt_bus_messages_total{topic=\"sensors\"} 10",
            "quilt_bus_lost_messages_total{topic=\"sensors\"} 1",
            "quilt_bus_subscribers{topic=\"sensors\"} 2",
            "quilt_bus_lag_messages{topic=\"sensors\"} 3",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(
            !text.contains("quilt_bundles_installed"),
            "no Bundles answer, no figure"
        );
        let down = m.render(&Board::default()).unwrap();
        assert!(down.contains("quilt_init_up 0"), "{down}");
    }
}
