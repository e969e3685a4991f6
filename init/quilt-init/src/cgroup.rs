//! cgroup v2: one leaf per service under `/sys/fs/cgroup/quilt/`.

use crate::event;
use quilt_config::Limits;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::io::Write;

/// Where quilt puts its cgroups.
pub const ROOT: &str = "/sys/fs/cgroup/quilt";

/// Parent of the ephemeral runs' cgroups.
const RUNS: &str = "/sys/fs/cgroup/quilt/runs";

/// Controllers quilt delegates to its services.
const CONTROLLERS: &str = "+cpu +memory +pids +io";

/// A path under the cgroup root, built without allocation.
pub type CgPath = heapless::String<160>;

/// `/sys/fs/cgroup/quilt/<name>[/<file>]`.
pub fn path(name: &str, file: &str) -> CgPath {
    let mut p = CgPath::new();
    let _ = p.push_str(ROOT);
    let _ = p.push('/');
    let _ = p.push_str(name);
    if !file.is_empty() {
        let _ = p.push('/');
        let _ = p.push_str(file);
    }
    p
}

/// Write a value to a cgroup control file.
pub fn write_file(path: &str, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// Create `/sys/fs/cgroup/quilt` (services) and `quilt/runs` (ephemeral
/// tool runs) and enable the controllers for their children. Controllers
/// the kernel lacks are skipped one by one.
pub fn init_root() {
    let _ = rustix::fs::mkdir(ROOT, Mode::from_raw_mode(0o755));
    let _ = rustix::fs::mkdir(RUNS, Mode::from_raw_mode(0o755));
    for parent in [
        "/sys/fs/cgroup/cgroup.subtree_control",
        "/sys/fs/cgroup/quilt/cgroup.subtree_control",
        "/sys/fs/cgroup/quilt/runs/cgroup.subtree_control",
    ] {
        if write_file(parent, CONTROLLERS).is_err() {
            for c in CONTROLLERS.split(' ') {
                if let Err(e) = write_file(parent, c) {
                    event!(
                        "event=cgroup-controller-unavailable controller={} file={} error={}",
                        c,
                        parent,
                        e
                    );
                }
            }
        }
    }
}

/// Bound all runs together (`quilt/runs`, crate::ceilings::runs), and say
/// with what.
pub fn bound_runs(l: &Limits) {
    apply_limits("runs", l);
    event!(
        "event=runs-bounded memory_max={} pids_max={} cpu_quota_us={}",
        l.memory_max.unwrap_or(0),
        l.pids_max.unwrap_or(0),
        l.cpu_quota_us.unwrap_or(0)
    );
}

/// Enable quilt's controllers for the children of cgroup `name` (a
/// container that spawns containers: its `main` and `kids` below it).
pub fn delegate(name: &str) {
    let file = path(name, "cgroup.subtree_control");
    if write_file(file.as_str(), CONTROLLERS).is_err() {
        for c in CONTROLLERS.split(' ') {
            let _ = write_file(file.as_str(), c);
        }
    }
}

/// Create a service's cgroup, apply its limits, and open it for
/// `CLONE_INTO_CGROUP`.
pub fn create(name: &str, limits: &Limits) -> std::io::Result<OwnedFd> {
    let dir = path(name, "");
    match rustix::fs::mkdir(dir.as_str(), Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    apply_limits(name, limits);
    Ok(rustix::fs::open(
        dir.as_str(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn apply_limits(name: &str, l: &Limits) {
    let mut v: heapless::String<48> = heapless::String::new();
    let mut set = |file: &str, value: core::fmt::Arguments<'_>| {
        v.clear();
        let _ = core::fmt::Write::write_fmt(&mut v, value);
        if let Err(e) = write_file(path(name, file).as_str(), &v) {
            event!(
                "event=cgroup-limit-failed service={} file={} value={} error={}",
                name,
                file,
                v,
                e
            );
        }
    };
    match l.memory_max {
        // A memory limit means RAM: swap must not stretch it.
        Some(m) => {
            set("memory.max", format_args!("{m}"));
            if std::path::Path::new(path(name, "memory.swap.max").as_str()).exists() {
                set("memory.swap.max", format_args!("0"));
            }
        }
        None => set("memory.max", format_args!("max")),
    }
    match l.pids_max {
        Some(p) => set("pids.max", format_args!("{p}")),
        None => set("pids.max", format_args!("max")),
    }
    let period = l.cpu_period_us.unwrap_or(100_000);
    match l.cpu_quota_us {
        Some(q) => set("cpu.max", format_args!("{q} {period}")),
        None => set("cpu.max", format_args!("max {period}")),
    }
    if l.io_bps.is_some() || l.io_iops.is_some() {
        apply_io_max(name, l.io_bps, l.io_iops);
    }
}

/// Most block devices given an `io.max` line.
const MAX_BLOCK_DEVICES: usize = 16;

/// `io.max` on every block device that does real I/O (loop and ram disks
/// are skipped: their I/O lands on another device or in memory).
fn apply_io_max(name: &str, bps: Option<u64>, iops: Option<u32>) {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return;
    };
    let mut line: heapless::String<96> = heapless::String::new();
    let file = path(name, "io.max");
    for dev in dir.flatten().take(MAX_BLOCK_DEVICES) {
        let dev_name = dev.file_name();
        let dev_name = dev_name.to_string_lossy();
        if dev_name.starts_with("loop") || dev_name.starts_with("ram") {
            continue;
        }
        let mut buf = [0u8; 32];
        let sys: heapless::String<64> = {
            let mut s = heapless::String::new();
            let _ = core::fmt::Write::write_fmt(&mut s, format_args!("/sys/block/{dev_name}/dev"));
            s
        };
        let Ok(n) = crate::mounts::read_into(sys.as_str(), &mut buf) else {
            continue;
        };
        let Some(majmin) = buf.get(..n).and_then(|b| core::str::from_utf8(b).ok()) else {
            continue;
        };
        line.clear();
        let b = |v: Option<u64>| v.map_or(CgValue::Max, CgValue::N);
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "{} rbps={} wbps={} riops={} wiops={}",
                majmin.trim(),
                b(bps),
                b(bps),
                b(iops.map(u64::from)),
                b(iops.map(u64::from))
            ),
        );
        if let Err(e) = write_file(file.as_str(), &line) {
            event!(
                "event=cgroup-limit-failed service={} file=io.max value=\"{}\" error={}",
                name,
                line,
                e
            );
        }
    }
}

/// A cgroup value or `max`.
enum CgValue {
    Max,
    N(u64),
}

impl core::fmt::Display for CgValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CgValue::Max => f.write_str("max"),
            CgValue::N(n) => write!(f, "{n}"),
        }
    }
}

/// Whether any process is left in the cgroup (`populated` in cgroup.events).
pub fn populated(name: &str) -> bool {
    let mut buf = [0u8; 256];
    match crate::mounts::read_into(path(name, "cgroup.events").as_str(), &mut buf) {
        Ok(n) => buf
            .get(..n)
            .and_then(|b| core::str::from_utf8(b).ok())
            .map(|t| t.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Kill every process in the cgroup at once (`cgroup.kill`, Linux 5.14+);
/// on older kernels, SIGKILL each listed pid.
pub fn kill_all(name: &str) {
    if write_file(path(name, "cgroup.kill").as_str(), "1").is_ok() {
        return;
    }
    signal_all(name, rustix::process::Signal::KILL);
}

/// Send a signal to every process in the cgroup.
/// (A service that spawns children keeps its own processes in `main`.)
pub fn signal_all(name: &str, sig: rustix::process::Signal) {
    for file in ["cgroup.procs", "main/cgroup.procs"] {
        let mut buf = [0u8; 4096];
        let Ok(n) = crate::mounts::read_into(path(name, file).as_str(), &mut buf) else {
            continue;
        };
        let text = buf
            .get(..n)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("");
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    }
}

/// A family cgroup for a container that spawns containers: its limits on
/// `name`, its own processes in `name/main` (whose fd is returned, for
/// CLONE_INTO_CGROUP), its children under `name/kids`, so one set of limits
/// bounds them all and one `cgroup.kill` ends them all.
pub fn create_family(name: &str, limits: &Limits) -> std::io::Result<OwnedFd> {
    drop(create(name, limits)?);
    delegate(name);
    let kids = format!("{name}/kids");
    drop(create(&kids, &Limits::default())?);
    delegate(&kids);
    create(&format!("{name}/main"), &Limits::default())
}

/// Remove an empty cgroup.
pub fn remove(name: &str) {
    let _ = rustix::fs::rmdir(path(name, "").as_str());
}

/// Read a counter such as `memory.events` `oom_kill`.
pub fn read_key(name: &str, file: &str, key: &str) -> Option<u64> {
    let mut buf = [0u8; 1024];
    let n = crate::mounts::read_into(path(name, file).as_str(), &mut buf).ok()?;
    let text = core::str::from_utf8(buf.get(..n)?).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Read a single-number control file such as `memory.current`.
/// CPU time used by cgroup `name` (`usage_usec` of `cpu.stat`).
pub fn cpu_usec(name: &str) -> Option<u64> {
    let mut buf = [0u8; 512];
    let n = crate::mounts::read_into(path(name, "cpu.stat").as_str(), &mut buf).ok()?;
    core::str::from_utf8(buf.get(..n)?)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()
}

/// A single-number cgroup file (`memory.current`, `pids.current`, ...).
pub fn read_u64(name: &str, file: &str) -> Option<u64> {
    let mut buf = [0u8; 64];
    let n = crate::mounts::read_into(path(name, file).as_str(), &mut buf).ok()?;
    core::str::from_utf8(buf.get(..n)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}
