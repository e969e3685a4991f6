//! Ephemeral tool runs: a bundle's entry in a fresh container, input on
//! stdin (a sealed-in memfd, so PID 1 never blocks writing it), stdout
//! collected up to a cap, a stderr tail kept, a deadline enforced with
//! `cgroup.kill`. When the process is reaped and both pipes are drained,
//! the result is handed back and the container's cgroup is removed:
//! nothing of the run is left behind.

use crate::bundles::Tools;
use crate::cgroup;
use crate::clock::Millis;
use crate::event;
use crate::policy::ExitCode;
use crate::ring::Ring;
use quilt_proto::{RunResult, MAX_OUTPUT};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::HashMap;

/// Most runs in flight at once.
pub const MAX_RUNS: usize = 16;
/// Default deadline of a run.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest deadline a client may ask for.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Epoll token base: stdout is `TOKEN + 2·slot`, stderr `TOKEN + 2·slot + 1`.
pub const TOKEN: u64 = 0x800;

/// One run in flight.
struct Run {
    id: u64,
    /// Who gets the result (a control client slot; MAX while parked).
    client: usize,
    bundle: heapless::String<64>,
    /// Write end of a parked container's stdin.
    stdin: Option<OwnedFd>,
    /// Started ahead of demand, waiting for input.
    parked: bool,
    cgroup: heapless::String<32>,
    pid: i32,
    started: Millis,
    started_us: u64,
    deadline: Millis,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    out: Vec<u8>,
    truncated: bool,
    err_tail: Box<Ring<4096>>,
    exit: Option<ExitCode>,
    timed_out: bool,
}

/// A finished run, for the control server to deliver.
pub struct Done {
    /// The client slot that asked.
    pub client: usize,
    /// What happened.
    pub result: RunResult,
}

/// Why a run could not start.
pub struct StartError {
    /// Protocol code.
    pub code: quilt_proto::ErrorCode,
    /// What happened and what to do next.
    pub message: String,
}

fn err(code: quilt_proto::ErrorCode, message: String) -> StartError {
    StartError { code, message }
}

/// All runs in flight, and the prepared container of each bundle.
pub struct Runs {
    slots: Vec<Option<Run>>,
    plans: HashMap<String, quilt_container::Plan>,
    next_id: u64,
    /// fds to watch, drained by the event loop.
    pub watch: heapless::Vec<(i32, u64), 8>,
    /// Runs completed since the last call of [`Runs::take_done`].
    done: Vec<Done>,
    /// Runs started since boot.
    pub started: u64,
    /// Warm pools not refilled until then (their containers died parked).
    pool_pause: HashMap<String, Millis>,
}

/// Pause before refilling a pool whose containers died while parked.
const POOL_PAUSE_MS: u64 = 5_000;

impl Runs {
    /// No runs.
    pub fn new() -> Runs {
        Runs {
            slots: (0..MAX_RUNS).map(|_| None).collect(),
            plans: HashMap::new(),
            next_id: 1,
            watch: heapless::Vec::new(),
            done: Vec::new(),
            started: 0,
            pool_pause: HashMap::new(),
        }
    }

    /// Start `bundle` with `input` for control client `client`: hand the
    /// input to a parked warm container if one is waiting, else start a
    /// fresh one.
    pub fn start(
        &mut self,
        tools: Option<&Tools>,
        bundle: &str,
        input: &[u8],
        timeout_ms: u32,
        client: usize,
        now: Millis,
    ) -> Result<u64, StartError> {
        use quilt_proto::ErrorCode::*;
        let tools = tools.ok_or_else(|| {
            err(
                NotFound,
                "this board has no trusted bundles (trust store missing)".into(),
            )
        })?;
        tools.get(bundle).ok_or_else(|| {
            err(
                NotFound,
                format!(
                    "bundle {bundle:?} is not installed; `quilt bundle verify` it and install it"
                ),
            )
        })?;
        let timeout = match u64::from(timeout_ms) {
            0 => DEFAULT_TIMEOUT_MS,
            t => t.min(MAX_TIMEOUT_MS),
        };
        let parked = self.slots.iter().position(|r| {
            r.as_ref()
                .is_some_and(|r| r.parked && r.exit.is_none() && r.bundle == bundle)
        });
        if let Some(slot) = parked {
            if let Some(id) = self.dispatch(slot, input, client, now.after(timeout), now) {
                return Ok(id);
            }
        }
        self.launch(
            tools,
            bundle,
            Some(input),
            client,
            Some(now.after(timeout)),
            now,
        )
    }

    /// Hand `input` to a parked container: it has started Bun and is
    /// blocked reading stdin, so closing the pipe after the input lets it go.
    fn dispatch(
        &mut self,
        slot: usize,
        input: &[u8],
        client: usize,
        deadline: Millis,
        now: Millis,
    ) -> Option<u64> {
        let run = self.slots.get_mut(slot)?.as_mut()?;
        let stdin = run.stdin.take()?;
        // The pipe was sized above MAX_REQUEST, so the whole input fits.
        if rustix::io::write(&stdin, input).ok()? != input.len() {
            return None;
        }
        drop(stdin);
        run.parked = false;
        run.client = client;
        run.deadline = deadline;
        run.started = now;
        run.started_us = crate::clock::boot_micros();
        event!(
            "event=run-start id={} bundle={} input_bytes={} warm=1",
            run.id,
            run.bundle,
            input.len()
        );
        Some(run.id)
    }

    /// Keep every warm pool at its size. A pool whose containers die while
    /// parked is refilled only after a pause, so a broken bundle cannot
    /// turn the pool into a crash loop.
    pub fn replenish(&mut self, tools: Option<&Tools>, warm: &[quilt_config::Warm], now: Millis) {
        let Some(tools) = tools else { return };
        for w in warm {
            if self
                .pool_pause
                .get(w.bundle.as_str())
                .is_some_and(|&until| now < until)
            {
                continue;
            }
            let have = self
                .slots
                .iter()
                .flatten()
                .filter(|r| r.parked && r.exit.is_none() && r.bundle == w.bundle.as_str())
                .count();
            for _ in have..usize::from(w.count) {
                // Leave room for cold runs: a pool never takes the last slots.
                if self.slots.iter().filter(|r| r.is_none()).count() <= MAX_RUNS / 4 {
                    return;
                }
                if let Err(e) = self.launch(tools, &w.bundle, None, usize::MAX, None, now) {
                    event!(
                        "event=warm-pool-failed bundle={} error=\"{}\"",
                        w.bundle,
                        e.message
                    );
                    self.pool_pause
                        .insert(w.bundle.to_string(), now.after(POOL_PAUSE_MS));
                    break;
                }
            }
        }
    }

    /// Start a container for `bundle`. With `input`, it runs at once (input
    /// from a memfd); without, it is parked on an empty stdin pipe.
    fn launch(
        &mut self,
        tools: &Tools,
        bundle: &str,
        input: Option<&[u8]>,
        client: usize,
        deadline: Option<Millis>,
        now: Millis,
    ) -> Result<u64, StartError> {
        use quilt_proto::ErrorCode::*;
        let Some(slot) = self.slots.iter().position(Option::is_none) else {
            return Err(err(
                Busy,
                format!("{MAX_RUNS} runs already in flight; retry when one finishes"),
            ));
        };
        if !self.plans.contains_key(bundle) {
            let svc = quilt_config::Service {
                // The UTS name: the bundle's last path component, cut to fit.
                name: heapless::String::try_from(hostname_of(bundle)).unwrap_or_default(),
                ..crate::supervisor::blank_service()
            };
            let plan = crate::supervisor::container_plan(&svc, bundle, Some(tools))
                .map_err(|m| err(Failed, m))?;
            self.plans.insert(bundle.to_owned(), plan);
        }
        let plan = self
            .plans
            .get(bundle)
            .ok_or_else(|| err(Failed, "no plan".into()))?;
        let id = self.next_id;
        self.next_id += 1;
        let mut cg: heapless::String<32> = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(&mut cg, format_args!("runs/{id}"));
        let svc_like = quilt_config::Service {
            bundle: Some(heapless::String::try_from(bundle).unwrap_or_default()),
            ..crate::supervisor::blank_service()
        };
        let limits = crate::supervisor::merged_limits(&svc_like, Some(tools));
        let cg_fd = cgroup::create(&cg, &limits)
            .map_err(|e| err(Failed, format!("creating cgroup {cg}: {e}")))?;
        let fail = |what: &str, e: &dyn std::fmt::Display| err(Failed, format!("{what}: {e}"));
        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        // stdin: the input in a memfd, or an empty pipe we keep the write end of.
        let (stdin, keep) = match input {
            Some(input) => {
                let m = rustix::fs::memfd_create("quilt-input", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(|e| fail("memfd", &e))?;
                rustix::io::write(&m, input).map_err(|e| fail("writing input", &e))?;
                rustix::fs::seek(&m, rustix::fs::SeekFrom::Start(0))
                    .map_err(|e| fail("seek", &e))?;
                (m, None)
            }
            None => {
                let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| fail("pipe", &e))?;
                rustix::pipe::fcntl_setpipe_size(&w, 2 * quilt_proto::MAX_REQUEST)
                    .map_err(|e| fail("sizing the input pipe", &e))?;
                (r, Some(w))
            }
        };
        let (out_r, out_w) = rustix::pipe::pipe_with(flags).map_err(|e| fail("pipe", &e))?;
        let (err_r, err_w) = rustix::pipe::pipe_with(flags).map_err(|e| fail("pipe", &e))?;
        for fd in [&out_r, &err_r] {
            if let Ok(fl) = rustix::fs::fcntl_getfl(fd) {
                let _ = rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK);
            }
        }
        let stdio = quilt_container::Stdio {
            stdin: stdin.as_fd(),
            stdout: out_w.as_fd(),
            stderr: err_w.as_fd(),
        };
        let spawned = quilt_container::spawn(plan, stdio, cg_fd.as_fd());
        drop((out_w, err_w, stdin, cg_fd));
        let sp = match spawned {
            Ok(sp) => sp,
            Err(e) => {
                cgroup::remove(&cg);
                return Err(fail("clone3", &e));
            }
        };
        if let Some((stage, errno)) = sp.failed {
            event!(
                "event=run-setup-failed id={} bundle={} stage={} step=\"{}\" error=\"{}\"",
                id,
                bundle,
                stage.name(),
                plan.step(stage),
                std::io::Error::from_raw_os_error(errno)
            );
        }
        use rustix::fd::AsRawFd;
        let _ = self
            .watch
            .push((out_r.as_raw_fd(), TOKEN + 2 * slot as u64));
        let _ = self
            .watch
            .push((err_r.as_raw_fd(), TOKEN + 2 * slot as u64 + 1));
        let parked = keep.is_some();
        if parked {
            event!(
                "event=warm-parked id={} bundle={} pid={}",
                id,
                bundle,
                sp.pid
            );
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Run {
                id,
                client,
                bundle: heapless::String::try_from(bundle).unwrap_or_default(),
                cgroup: cg,
                pid: sp.pid,
                started: now,
                started_us: crate::clock::boot_micros(),
                deadline: deadline.unwrap_or(Millis(u64::MAX)),
                stdin: keep,
                parked,
                stdout: Some(out_r),
                stderr: Some(err_r),
                out: Vec::new(),
                truncated: false,
                err_tail: Box::default(),
                exit: None,
                timed_out: false,
            });
        }
        self.started += 1;
        Ok(id)
    }

    /// Stop every run and parked container (shutdown).
    pub fn kill_all(&mut self) {
        for run in self.slots.iter().flatten() {
            cgroup::kill_all(&run.cgroup);
        }
    }

    /// A run's pipe is readable.
    pub fn on_pipe(&mut self, token: u64) {
        let k = token.saturating_sub(TOKEN);
        let (slot, is_err) = ((k / 2) as usize, k % 2 == 1);
        let Some(Some(run)) = self.slots.get_mut(slot) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            let fd = if is_err {
                run.stderr.as_ref()
            } else {
                run.stdout.as_ref()
            };
            let Some(fd) = fd else { return };
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    // EOF: closing the fd also removes it from epoll.
                    if is_err {
                        run.stderr = None;
                    } else {
                        run.stdout = None;
                    }
                    break;
                }
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    if is_err {
                        run.err_tail.write(data);
                    } else {
                        let room = MAX_OUTPUT.saturating_sub(run.out.len());
                        run.out
                            .extend_from_slice(data.get(..n.min(room)).unwrap_or(&[]));
                        run.truncated |= n > room;
                    }
                }
                Err(_) => break,
            }
        }
        self.finish_if_done(slot);
    }

    /// A child was reaped; true if it was a run's.
    pub fn on_exit(&mut self, pid: i32, code: ExitCode) -> bool {
        let Some(slot) = self
            .slots
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.pid == pid && r.exit.is_none()))
        else {
            return false;
        };
        if let Some(Some(run)) = self.slots.get_mut(slot) {
            run.exit = Some(code);
            // Whatever the tool left running goes now, so the pipes hit EOF.
            if cgroup::populated(&run.cgroup) {
                cgroup::kill_all(&run.cgroup);
            }
        }
        self.finish_if_done(slot);
        true
    }

    /// Enforce deadlines.
    pub fn tick(&mut self, now: Millis) {
        for run in self.slots.iter_mut().flatten() {
            if run.exit.is_none() && !run.parked && !run.timed_out && now >= run.deadline {
                run.timed_out = true;
                event!("event=run-timeout id={} pid={}", run.id, run.pid);
                cgroup::kill_all(&run.cgroup);
            }
        }
    }

    /// The earliest deadline of a run still going.
    pub fn deadline(&self) -> Option<Millis> {
        self.slots
            .iter()
            .flatten()
            .filter(|r| r.exit.is_none() && !r.parked && !r.timed_out)
            .map(|r| r.deadline)
            .min()
    }

    /// The client that asked went away: stop its runs.
    pub fn cancel_client(&mut self, client: usize) {
        for run in self.slots.iter_mut().flatten() {
            if run.client == client {
                run.client = usize::MAX;
                if run.exit.is_none() {
                    cgroup::kill_all(&run.cgroup);
                }
            }
        }
    }

    fn finish_if_done(&mut self, slot: usize) {
        let ready = matches!(self.slots.get(slot), Some(Some(r)) if r.exit.is_some() && r.stdout.is_none() && r.stderr.is_none());
        if !ready {
            return;
        }
        let Some(run) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if run.parked {
            event!(
                "event=warm-died id={} bundle={} pid={} pause_ms={}",
                run.id,
                run.bundle,
                run.pid,
                POOL_PAUSE_MS
            );
            self.pool_pause
                .insert(run.bundle.to_string(), Millis::now().after(POOL_PAUSE_MS));
        }
        let now = Millis::now();
        let oom = cgroup::read_key(&run.cgroup, "memory.events", "oom_kill").unwrap_or(0) > 0;
        cgroup::remove(&run.cgroup);
        let status = run.exit.map_or(255, |c| c.0);
        event!(
            "event=run-done id={} pid={} status={} ms={} stdout_bytes={}{}{}",
            run.id,
            run.pid,
            status,
            now.since(run.started),
            run.out.len(),
            if oom { " oom_killed=1" } else { "" },
            if run.timed_out { " timed_out=1" } else { "" }
        );
        let (a, b) = run.err_tail.as_slices();
        let result = RunResult {
            status,
            oom_killed: oom,
            timed_out: run.timed_out,
            stdout: run.out,
            stdout_truncated: run.truncated,
            stderr_tail: [a, b].concat(),
            micros: crate::clock::boot_micros().saturating_sub(run.started_us),
        };
        self.done.push(Done {
            client: run.client,
            result,
        });
    }

    /// Completed runs to deliver.
    pub fn take_done(&mut self) -> Vec<Done> {
        std::mem::take(&mut self.done)
    }
}

/// A hostname for a run of `bundle`: its last path component, at most 32
/// bytes (cut on a character boundary).
fn hostname_of(bundle: &str) -> &str {
    let last = bundle.rsplit('/').next().unwrap_or(bundle);
    let mut end = last.len().min(32);
    while !last.is_char_boundary(end) {
        end -= 1;
    }
    last.get(..end).unwrap_or("tool")
}
