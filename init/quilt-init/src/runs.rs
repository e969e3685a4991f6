//! Ephemeral tool runs: a bundle's entry in a fresh container, input on
//! stdin (a sealed-in memfd, so PID 1 never blocks writing it), stdout
//! collected up to a cap, a stderr tail kept, a deadline enforced with
//! `cgroup.kill`. When the process is reaped and both pipes are drained,
//! the result is handed back and the container's cgroup is removed:
//! nothing of the run is left behind.

use crate::bundles::Tools;
use crate::bus::Bus;

/// What runs are made from: the installed bundles and the bus channels.
#[derive(Clone, Copy)]
pub struct Board<'a> {
    /// Installed bundles, if the board has a trust store.
    pub tools: Option<&'a Tools>,
    /// Bus channels.
    pub bus: &'a Bus,
    /// Where `net:` tokens may reach.
    pub net: &'a [quilt_config::NetAllow],
}
use crate::caller::{Parent, Spawner};
use crate::cgroup;
use crate::clock::Millis;
use crate::event;
use crate::policy::ExitCode;
use crate::ring::Ring;
use quilt_proto::{Reply, RunResult, MAX_OUTPUT};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::HashMap;

/// Most runs in flight at once.
pub const MAX_RUNS: usize = crate::tokens::RUNS;
/// Default deadline of a run.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest deadline a client may ask for.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Epoll token base (crate::tokens::RUN): stdout is `TOKEN + 2·slot`,
/// stderr `TOKEN + 2·slot + 1`.
const TOKEN: u64 = crate::tokens::RUN;
/// How deep containers may spawn containers (a top-level run is depth 0).
pub const MAX_DEPTH: u8 = 3;
/// Most children one container may have running at once.
pub const MAX_CHILDREN: usize = 8;
/// Runs one family (a container that spawns, and all its descendants)
/// may hold at once, so that no container takes every run slot.
pub const MAX_FAMILY: usize = MAX_RUNS / 4;
/// Most results of spawned runs kept for a `Wait` that has not come yet.
const MAX_KEPT: usize = 2 * MAX_RUNS;

/// A request to start a run, as the control server decoded it.
pub struct Ask {
    /// Installed bundle name.
    pub bundle: String,
    /// Its stdin.
    pub input: Vec<u8>,
    /// Deadline asked for (0 = default).
    pub timeout_ms: u32,
    /// The control client asking.
    pub client: usize,
    /// Answer with the id now and keep the result for `Wait`.
    pub detached: bool,
    /// The container asking, when one is (the run becomes its child).
    pub parent: Option<Parent>,
}

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
    /// Spawned: the result waits for `Wait` (from `waiter`, once asked).
    detached: bool,
    waiter: Option<usize>,
    /// The run that spawned it.
    parent: Option<u64>,
    /// Holds a `spawn` token: the process lives in `<cgroup>/main`, its
    /// children under `<cgroup>/kids`.
    family: bool,
    cgroup: String,
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
    /// How its container's setup went, until the report has come.
    setup: Option<Setup>,
}

/// A run's setup report, read when its pipe is readable.
enum Setup {
    /// A container of its own.
    Launch(quilt_container::SetupReport),
    /// An exec into a service's container: until the middle process says
    /// which process execs, the run's pid is the middle's.
    Enter(quilt_container::EnterReport),
}

/// A reply for the control server to deliver (a run ended).
pub struct Done {
    /// The client slot that asked.
    pub client: usize,
    /// `Ran` or `Finished`.
    pub reply: Reply,
}

/// Why a run, spawn or exec could not start, or a `Wait` or `Stop` found
/// nothing: one variant per failure, whose `Display` is the message the
/// client sees (what happened and what to do next).
#[derive(Debug)]
pub enum RunError {
    /// The board has no trust store, so no bundle is trusted.
    NoTrustStore,
    /// No such bundle is installed.
    NotInstalled { bundle: String },
    /// The asking container is at [`MAX_DEPTH`].
    TooDeep { run: u64 },
    /// The asking container has [`MAX_CHILDREN`] running.
    TooManyChildren,
    /// The asking container's family holds [`MAX_FAMILY`] runs.
    FamilyFull { root: u64 },
    /// The child's bundle holds a token its parent (`run`) does not.
    ExceedsParent {
        bundle: String,
        token: String,
        run: u64,
    },
    /// Every run slot is taken.
    Full,
    /// The bundle's container cannot be planned.
    Plan(crate::refusal::PlanRefusal),
    /// The plan was made but is gone (never expected).
    Unplanned,
    /// The run slot's ids do not fit the plan.
    Identity(quilt_container::PlanError),
    /// The run's cgroup could not be made.
    Cgroup { cg: String, err: std::io::Error },
    /// A pipe or memfd for its stdio could not be made (`what`).
    Setup {
        what: &'static str,
        err: rustix::io::Errno,
    },
    /// The container could not be started.
    Launch {
        bundle: String,
        err: crate::launcher::LaunchError,
    },
    /// The exec's argv or ids do not make a process.
    EnterPlan(quilt_container::PlanError),
    /// Entering the service's container failed.
    Enter(std::io::Error),
    /// `Wait`: no such run of this client's to wait for.
    NotWaitable { id: u64 },
    /// `Stop`: no such run of this client's is running.
    NotRunning { id: u64 },
}

impl RunError {
    /// The protocol code a client gets for it.
    pub fn code(&self) -> quilt_proto::ErrorCode {
        use quilt_proto::ErrorCode::*;
        match self {
            RunError::NoTrustStore
            | RunError::NotInstalled { .. }
            | RunError::NotWaitable { .. }
            | RunError::NotRunning { .. } => NotFound,
            RunError::TooDeep { .. } | RunError::ExceedsParent { .. } => Denied,
            RunError::TooManyChildren | RunError::FamilyFull { .. } | RunError::Full => Busy,
            RunError::Launch {
                err: crate::launcher::LaunchError::Bus(_),
                ..
            } => Busy,
            RunError::Plan(_)
            | RunError::Unplanned
            | RunError::Identity(_)
            | RunError::Cgroup { .. }
            | RunError::Setup { .. }
            | RunError::Launch { .. }
            | RunError::EnterPlan(_)
            | RunError::Enter(_) => Failed,
        }
    }
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RunError::NoTrustStore => {
                f.write_str("this board has no trusted bundles (trust store missing)")
            }
            RunError::NotInstalled { bundle } => write!(
                f,
                "bundle {bundle:?} is not installed; `quilt bundle verify` it and install it"
            ),
            RunError::TooDeep { run } => write!(
                f,
                "containers nest at most {MAX_DEPTH} deep; run {run} is at the limit"
            ),
            RunError::TooManyChildren => write!(
                f,
                "a container may have {MAX_CHILDREN} children running; wait for one"
            ),
            RunError::FamilyFull { root } => write!(
                f,
                "run {root} and its descendants already hold {MAX_FAMILY} runs, this board's quota per family; wait for one"
            ),
            RunError::ExceedsParent { bundle, token, run } => write!(
                f,
                "bundle {bundle:?} carries `{token}`, which run {run} does not hold: a child never holds more than its parent"
            ),
            RunError::Full => write!(
                f,
                "{MAX_RUNS} runs already in flight; retry when one finishes"
            ),
            RunError::Plan(why) => write!(f, "{why}"),
            RunError::Unplanned => f.write_str("no plan"),
            RunError::Identity(e) | RunError::EnterPlan(e) => write!(f, "{e}"),
            RunError::Cgroup { cg, err } => write!(f, "creating cgroup {cg}: {err}"),
            RunError::Setup { what, err } => write!(f, "{what}: {err}"),
            RunError::Launch { bundle, err } => write!(f, "bundle {bundle:?}: {err}"),
            RunError::Enter(e) => write!(f, "entering the container: {e}"),
            RunError::NotWaitable { id } => write!(
                f,
                "no run {id} spawned by this client (already collected, or never yours)"
            ),
            RunError::NotRunning { id } => {
                write!(f, "no running run {id} spawned by this client")
            }
        }
    }
}

/// All runs in flight, and the prepared container of each bundle.
pub struct Runs {
    slots: Vec<Option<Run>>,
    plans: HashMap<String, crate::plan::ContainerPlan>,
    next_id: u64,
    /// fds to watch, drained by the event loop.
    pub watch: heapless::Vec<(i32, u64), { 3 * MAX_RUNS }>,
    /// Runs completed since the last call of [`Runs::take_done`].
    done: Vec<Done>,
    /// Runs started since boot.
    pub started: u64,
    /// Runs ended since boot, by outcome.
    pub ended: crate::stats::RunCounts,
    /// Warm pools not refilled until then (their containers died parked).
    pool_pause: HashMap<String, Millis>,
    /// Results of spawned runs nobody waited for yet: (id, owner, result).
    kept: Vec<(u64, usize, RunResult)>,
    /// Container sockets to hand to the control server.
    pub adopt: Vec<(OwnedFd, Spawner)>,
    /// Listeners of started containers with `net:` tokens, for the relay.
    pub net_adopt: Vec<crate::net::NetAdopt>,
    /// Cgroups to remove once their children's are gone.
    cg_gc: Vec<String>,
}

/// Most reads of one run pipe per loop turn (16 KiB each).
const READS_PER_TURN: usize = 16;

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
            ended: crate::stats::RunCounts::default(),
            pool_pause: HashMap::new(),
            kept: Vec::new(),
            adopt: Vec::new(),
            net_adopt: Vec::new(),
            cg_gc: Vec::new(),
        }
    }

    /// The top of run `id`'s spawn tree: the first ancestor whose parent
    /// is not a run in flight (a top-level run, or a service's id).
    fn family_root(&self, id: u64) -> u64 {
        let mut at = id;
        for _ in 0..=MAX_DEPTH {
            match self
                .slots
                .iter()
                .flatten()
                .find(|r| r.id == at)
                .and_then(|r| r.parent)
            {
                Some(up) => at = up,
                None => break,
            }
        }
        at
    }

    /// Start `bundle` with `input` for control client `client`: hand the
    /// input to a parked warm container if one is waiting, else start a
    /// fresh one.
    pub fn start(&mut self, board: Board<'_>, ask: &Ask, now: Millis) -> Result<u64, RunError> {
        let (bundle, input, timeout_ms, client) = (
            ask.bundle.as_str(),
            &ask.input[..],
            ask.timeout_ms,
            ask.client,
        );
        let bus = board.bus;
        let tools = board.tools.ok_or(RunError::NoTrustStore)?;
        tools.get(bundle).ok_or_else(|| RunError::NotInstalled {
            bundle: bundle.to_owned(),
        })?;
        let timeout = match u64::from(timeout_ms) {
            0 => DEFAULT_TIMEOUT_MS,
            t => t.min(MAX_TIMEOUT_MS),
        };
        if let Some(p) = &ask.parent {
            if p.depth >= MAX_DEPTH {
                return Err(RunError::TooDeep { run: p.run });
            }
            let children = self
                .slots
                .iter()
                .flatten()
                .filter(|r| r.parent == Some(p.run) && r.exit.is_none())
                .count();
            if children >= MAX_CHILDREN {
                return Err(RunError::TooManyChildren);
            }
            let root = self.family_root(p.run);
            let family = self
                .slots
                .iter()
                .flatten()
                .filter(|r| {
                    r.exit.is_none() && r.parent.is_some_and(|q| self.family_root(q) == root)
                })
                .count();
            if family >= MAX_FAMILY {
                return Err(RunError::FamilyFull { root });
            }
            if let Some(token) = tools
                .get(bundle)
                .and_then(|t| crate::grants::uncovered_token(&p.tokens, &t.header.tokens))
            {
                event!(
                    "event=spawn-refused run={} child={} reason=exceeds-parent token={}",
                    p.run,
                    bundle,
                    token
                );
                return Err(RunError::ExceedsParent {
                    bundle: bundle.to_owned(),
                    token: token.to_owned(),
                    run: p.run,
                });
            }
        }
        // Warm containers are top-level; a child must be born in its
        // parent's cgroup, so it always starts cold.
        let parked = self.slots.iter().position(|r| {
            r.as_ref()
                .is_some_and(|r| r.parked && r.exit.is_none() && r.bundle == bundle)
        });
        if let (Some(slot), None) = (parked, &ask.parent) {
            if let Some(id) = self.dispatch(slot, input, client, now.after(timeout), now) {
                if let Some(Some(r)) = self.slots.get_mut(slot) {
                    r.detached = ask.detached;
                }
                return Ok(id);
            }
        }
        let id = self.launch(
            (tools, bus, board.net),
            bundle,
            Some(input),
            Some((client, now.after(timeout))),
            ask.parent.as_ref(),
            now,
        )?;
        if let Some(r) = self.slots.iter_mut().flatten().find(|r| r.id == id) {
            r.detached = ask.detached;
        }
        Ok(id)
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
    pub fn replenish(&mut self, board: Board<'_>, warm: &[quilt_config::Warm], now: Millis) {
        let Some(tools) = board.tools else { return };
        let bus = board.bus;
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
                if let Err(e) =
                    self.launch((tools, bus, board.net), &w.bundle, None, None, None, now)
                {
                    event!("event=warm-pool-failed bundle={} error=\"{}\"", w.bundle, e);
                    self.pool_pause
                        .insert(w.bundle.to_string(), now.after(POOL_PAUSE_MS));
                    break;
                }
            }
        }
    }

    /// Start a container for `bundle`. With `input`, it runs at once (input
    /// from a memfd) for `waiter` (client, deadline); without, it is parked
    /// on an empty stdin pipe.
    fn launch(
        &mut self,
        (tools, bus, net): (&Tools, &Bus, &[quilt_config::NetAllow]),
        bundle: &str,
        input: Option<&[u8]>,
        waiter: Option<(usize, Millis)>,
        parent: Option<&Parent>,
        now: Millis,
    ) -> Result<u64, RunError> {
        let Some(slot) = self.slots.iter().position(Option::is_none) else {
            return Err(RunError::Full);
        };
        if !self.plans.contains_key(bundle) {
            // The UTS name: the bundle's last path component, cut to fit.
            // Planned once per bundle; each launch gives it its slot's ids.
            let role = crate::plan::Role::run(hostname_of(bundle), slot);
            let plan = crate::plan::container_plan(&role, bundle, Some(tools), bus, None, net)
                .map_err(RunError::Plan)?;
            self.plans.insert(bundle.to_owned(), plan);
        }
        let plan = self.plans.get_mut(bundle).ok_or(RunError::Unplanned)?;
        let userns = plan.plan.identity().2.is_some();
        plan.plan
            .set_identity(crate::ids::of(crate::ids::Who::Run { slot }, userns))
            .map_err(RunError::Identity)?;
        let plan = &*plan;
        let id = self.next_id;
        self.next_id += 1;
        let cg = match parent {
            Some(p) => format!("{}/kids/{id}", p.cgroup),
            None => format!("runs/{id}"),
        };
        let limits =
            crate::plan::merged_limits(&quilt_config::Limits::default(), Some(bundle), Some(tools));
        let spawner = tools
            .get(bundle)
            .and_then(|t| crate::grants::control_grant(&t.header.tokens))
            .map(|grant| Spawner {
                run: id,
                bundle: bundle.to_owned(),
                grant,
                cgroup: cg.clone(),
                depth: parent.map_or(0, |p| p.depth + 1),
            });
        // A container that may spawn gets a family cgroup: its limits on
        // `<cg>`, itself in `<cg>/main`, its children under `<cg>/kids`,
        // so its limits bound them all and one cgroup.kill ends them all.
        let family = spawner
            .as_ref()
            .is_some_and(|s| s.grant.spawn_any || !s.grant.spawn_only.is_empty());
        // Until it is launched, a failure takes its cgroup away again.
        let unlaunched = Unlaunched(Some(&cg));
        let made = if family {
            cgroup::create_family(&cg, &limits)
        } else {
            cgroup::create(&cg, &limits)
        };
        let cg_fd = made.map_err(|e| RunError::Cgroup {
            cg: cg.clone(),
            err: e,
        })?;
        let fail =
            |what: &'static str, err: &rustix::io::Errno| RunError::Setup { what, err: *err };
        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        // stdin: the input in a memfd, or an empty pipe we keep the write end of.
        let (stdin, keep) = match input {
            Some(input) => (
                input_memfd(input).map_err(|e| fail("the input memfd", &e))?,
                None,
            ),
            None => {
                let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| fail("pipe", &e))?;
                rustix::pipe::fcntl_setpipe_size(&w, 2 * quilt_proto::MAX_REQUEST)
                    .map_err(|e| fail("sizing the input pipe", &e))?;
                (r, Some(w))
            }
        };
        let ((out_r, out_w), (err_r, err_w)) = output_pipes().map_err(|e| fail("pipe", &e))?;
        let wants = tools
            .get(bundle)
            .map(|t| crate::bus::wants(&t.header.tokens))
            .unwrap_or_default();
        let launched = crate::launcher::launch(&crate::launcher::Launch {
            plan,
            stdin: stdin.as_fd(),
            stdout: out_w.as_fd(),
            stderr: err_w.as_fd(),
            cgroup: cg_fd.as_fd(),
            bus,
            holder: id,
            wants: &wants,
            control: spawner.is_some(),
            pod: None,
        });
        drop((out_w, err_w, stdin, cg_fd));
        let mut sp = launched.map_err(|e| RunError::Launch {
            bundle: bundle.to_owned(),
            err: e,
        })?;
        unlaunched.keep();
        if let Some((net, listeners)) = sp.relay.take() {
            self.net_adopt.push((sp.pid, net, listeners));
        }
        // How its setup went is read when its report comes (on_setup).
        let _ = self.watch.push((
            rustix::fd::AsRawFd::as_raw_fd(&sp.report.fd()),
            crate::tokens::RUN_SETUP + slot as u64,
        ));
        self.watch_outputs(slot, &out_r, &err_r);
        let parked = keep.is_some();
        if parked {
            event!(
                "event=warm-parked id={} bundle={} pid={}",
                id,
                bundle,
                sp.pid
            );
        }
        if let (Some(fd), Some(s)) = (sp.control.take(), spawner) {
            self.adopt.push((fd, s));
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Run {
                id,
                detached: false,
                waiter: None,
                parent: parent.map(|p| p.run),
                family,
                client: waiter.map_or(usize::MAX, |(c, _)| c),
                bundle: heapless::String::try_from(bundle).unwrap_or_default(),
                cgroup: cg.clone(),
                pid: sp.pid,
                started: now,
                started_us: crate::clock::boot_micros(),
                deadline: waiter.map_or(Millis(u64::MAX), |(_, d)| d),
                stdin: keep,
                parked,
                stdout: Some(out_r),
                stderr: Some(err_r),
                out: Vec::new(),
                truncated: false,
                err_tail: Box::default(),
                exit: None,
                timed_out: false,
                setup: Some(Setup::Launch(sp.report)),
            });
        }
        self.started += 1;
        Ok(id)
    }

    /// Run slot `slot`'s setup report is readable: log where its setup
    /// failed, if it did, once the report is whole.
    pub fn on_setup(&mut self, slot: usize) {
        let Some(Some(run)) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(mut setup) = run.setup.take() else {
            return;
        };
        let failure = match &mut setup {
            Setup::Launch(r) => r.poll(),
            Setup::Enter(r) => r.poll(),
        };
        let Some(failure) = failure else {
            // Not whole yet: keep watching.
            run.setup = Some(setup);
            return;
        };
        // The setup pipe closes here, which takes it out of epoll.
        if let Setup::Enter(mut r) = setup {
            if let Some(Some(inner)) = r.inner() {
                run.pid = inner;
            }
            if let Some((stage, errno)) = failure {
                event!(
                    "event=exec-setup-failed id={} service={} stage={} error=\"{}\"",
                    run.id,
                    run.bundle,
                    stage.name(),
                    std::io::Error::from_raw_os_error(errno)
                );
            }
            event!(
                "event=exec-start id={} service={} pid={}",
                run.id,
                run.bundle,
                run.pid
            );
            return;
        }
        if let Some((stage, errno)) = failure {
            let step = self
                .plans
                .get(run.bundle.as_str())
                .map(|p| p.step(stage).to_string())
                .unwrap_or_default();
            event!(
                "event=run-setup-failed id={} bundle={} stage={} step=\"{}\" error=\"{}\"",
                run.id,
                run.bundle,
                stage.name(),
                step,
                std::io::Error::from_raw_os_error(errno)
            );
        }
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
        // Bounded work per turn: epoll is level-triggered, so what is left
        // is read on the next one.
        for _ in 0..READS_PER_TURN {
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
    pub fn on_exit(&mut self, pid: i32, code: ExitCode, bus: &Bus) -> bool {
        // An exec's middle process says which process execs before it
        // exits: learn that first, so the middle's exit is not taken for
        // the run's.
        for run in self.slots.iter_mut().flatten() {
            if let Some(Setup::Enter(r)) = run.setup.as_mut() {
                if let Some(Some(inner)) = r.inner() {
                    run.pid = inner;
                }
            }
        }
        let Some(slot) = self
            .slots
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.pid == pid && r.exit.is_none()))
        else {
            return false;
        };
        // It is gone, so an unread setup report is whole.
        self.on_setup(slot);
        if let Some(Some(run)) = self.slots.get_mut(slot) {
            run.exit = Some(code);
            bus.release(run.id);
            // Whatever the tool left running goes now, so the pipes hit EOF.
            if cgroup::populated(&run.cgroup) {
                cgroup::kill_all(&run.cgroup);
            }
        }
        self.finish_if_done(slot);
        true
    }

    /// Enforce deadlines; remove family cgroups whose children are gone.
    pub fn tick(&mut self, now: Millis) {
        self.cg_gc.retain(|cg| !remove_family(cg));
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

    /// The client that asked went away: stop its runs (a container's
    /// socket closes when it ends: its children go with it).
    pub fn cancel_client(&mut self, client: usize) {
        self.kept.retain(|(_, c, _)| *c != client);
        for run in self.slots.iter_mut().flatten() {
            if run.client == client {
                run.client = usize::MAX;
                if run.exit.is_none() {
                    event!(
                        "event=run-cancelled id={} pid={} reason=client-gone",
                        run.id,
                        run.pid
                    );
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
        // A family's own process is in `main`; kills of its children are
        // theirs to report.
        let own = if run.family {
            format!("{}/main", run.cgroup)
        } else {
            run.cgroup.clone()
        };
        let oom = cgroup::read_key(&own, "memory.events", "oom_kill").unwrap_or(0) > 0;
        if run.family {
            // Its children are being killed with it; their cgroups go
            // when they are reaped, then this one (retried on tick).
            cgroup::kill_all(&run.cgroup);
            if !remove_family(&run.cgroup) {
                self.cg_gc.push(run.cgroup.clone());
            }
        } else {
            cgroup::remove(&run.cgroup);
        }
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
        self.ended.add(&result);
        if !run.detached {
            self.done.push(Done {
                client: run.client,
                reply: Reply::Ran(result),
            });
        } else if let Some(w) = run.waiter {
            self.done.push(Done {
                client: w,
                reply: Reply::Finished { id: run.id, result },
            });
        } else if run.client != usize::MAX {
            if self.kept.len() >= MAX_KEPT {
                self.kept.remove(0);
            }
            self.kept.push((run.id, run.client, result));
        }
    }

    /// `Wait` from `client` for run `id`: the result now if it is kept,
    /// later if the run is still going, or why not.
    pub fn wait(&mut self, client: usize, id: u64) -> Result<Option<Reply>, RunError> {
        if let Some(k) = self
            .kept
            .iter()
            .position(|(i, c, _)| *i == id && *c == client)
        {
            let (id, _, result) = self.kept.remove(k);
            return Ok(Some(Reply::Finished { id, result }));
        }
        match self
            .slots
            .iter_mut()
            .flatten()
            .find(|r| r.id == id && r.client == client && r.detached)
        {
            Some(r) => {
                r.waiter = Some(client);
                Ok(None)
            }
            None => Err(RunError::NotWaitable { id }),
        }
    }

    /// `Stop` from `client`: kill run `id` (and its children) at once.
    pub fn stop(&mut self, client: usize, id: u64) -> Result<Reply, RunError> {
        match self
            .slots
            .iter_mut()
            .flatten()
            .find(|r| r.id == id && r.client == client && r.exit.is_none())
        {
            Some(r) => {
                event!("event=run-stop id={} pid={}", r.id, r.pid);
                cgroup::kill_all(&r.cgroup);
                Ok(Reply::Stopping { id })
            }
            None => Err(RunError::NotRunning { id }),
        }
    }

    /// Run `argv` inside the running container of service `service` (main
    /// pid `target`), in a cgroup of its own under the service's, so the
    /// service's limits bound it and a stop or deadline kills only it.
    #[allow(clippy::too_many_arguments)]
    pub fn start_exec(
        &mut self,
        service: &str,
        (target, uid, gid): (i32, u32, u32),
        argv: &[String],
        input: &[u8],
        timeout_ms: u32,
        client: usize,
        now: Millis,
    ) -> Result<u64, RunError> {
        let Some(slot) = self.slots.iter().position(Option::is_none) else {
            return Err(RunError::Full);
        };
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let plan = quilt_container::EnterPlan::new(
            &argv,
            &["PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp", "NO_COLOR=1"],
            "/",
            uid,
            gid,
        )
        .map_err(RunError::EnterPlan)?;
        let id = self.next_id;
        self.next_id += 1;
        let cg = format!("{service}/exec-{id}");
        let fail =
            |what: &'static str, err: &rustix::io::Errno| RunError::Setup { what, err: *err };
        // The service's cgroup enables no controllers for children, so a
        // child cgroup may sit beside its processes (and is bounded by it).
        rustix::fs::mkdir(
            cgroup::path(&cg, "").as_str(),
            rustix::fs::Mode::from_raw_mode(0o755),
        )
        .map_err(|e| fail("creating its cgroup", &e))?;
        let cg_fd = rustix::fs::open(
            cgroup::path(&cg, "").as_str(),
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            cgroup::remove(&cg);
            fail("opening its cgroup", &e)
        })?;
        let timeout = match u64::from(timeout_ms) {
            0 => DEFAULT_TIMEOUT_MS,
            t => t.min(MAX_TIMEOUT_MS),
        };
        let stdin = input_memfd(input).map_err(|e| fail("the input memfd", &e))?;
        let ((out_r, out_w), (err_r, err_w)) = output_pipes().map_err(|e| fail("pipe", &e))?;
        let stdio = quilt_container::Stdio {
            stdin: stdin.as_fd(),
            stdout: out_w.as_fd(),
            stderr: err_w.as_fd(),
            extra: &[],
        };
        let entered = quilt_container::start_enter(&plan, target, stdio, cg_fd.as_fd());
        drop((out_w, err_w, stdin, cg_fd));
        let sp = entered.map_err(|e| {
            cgroup::remove(&cg);
            RunError::Enter(e)
        })?;
        // Which process execs, and how, is read when its report comes
        // (on_setup logs `exec-start` then).
        event!(
            "event=exec-entering id={} service={} middle_pid={} argv0={}",
            id,
            service,
            sp.middle,
            plan.program()
        );
        let _ = self.watch.push((
            rustix::fd::AsRawFd::as_raw_fd(&sp.report.fd()),
            crate::tokens::RUN_SETUP + slot as u64,
        ));
        self.watch_outputs(slot, &out_r, &err_r);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Run {
                id,
                client,
                detached: false,
                waiter: None,
                parent: None,
                family: false,
                bundle: heapless::String::try_from(service).unwrap_or_default(),
                stdin: None,
                parked: false,
                cgroup: cg,
                pid: sp.middle,
                started: now,
                started_us: crate::clock::boot_micros(),
                deadline: now.after(timeout),
                stdout: Some(out_r),
                stderr: Some(err_r),
                out: Vec::new(),
                truncated: false,
                err_tail: Box::default(),
                exit: None,
                timed_out: false,
                setup: Some(Setup::Enter(sp.report)),
            });
        }
        self.started += 1;
        Ok(id)
    }

    /// Have the loop watch a run's stdout and stderr.
    fn watch_outputs(&mut self, slot: usize, out: &OwnedFd, err: &OwnedFd) {
        use rustix::fd::AsRawFd;
        for (fd, k) in [(out, 0), (err, 1)] {
            let _ = self
                .watch
                .push((fd.as_raw_fd(), TOKEN + 2 * slot as u64 + k));
        }
    }

    /// Every run's container as `ps` lists it: `run-<id>`, `warm` while
    /// parked, `exited` until its result is collected, else `running`.
    pub fn info(&self, now: Millis) -> Vec<quilt_proto::ServiceInfo> {
        self.slots
            .iter()
            .flatten()
            .map(|r| {
                let state = if r.parked {
                    "warm"
                } else if r.exit.is_some() {
                    "exited"
                } else {
                    "running"
                };
                quilt_proto::ServiceInfo {
                    name: format!("run-{}", r.id),
                    state: state.into(),
                    pid: r.exit.is_none().then_some(r.pid),
                    restarts: 0,
                    uptime_ms: Some(now.since(r.started)),
                    memory_bytes: cgroup::read_u64(&r.cgroup, "memory.current"),
                    bundle: Some(r.bundle.as_str().into()),
                    cpu_usec: cgroup::cpu_usec(&r.cgroup),
                    pids: cgroup::read_u64(&r.cgroup, "pids.current"),
                }
            })
            .collect()
    }

    /// Drop the prepared container of `bundle` (a new version was
    /// installed, or it was removed).
    pub fn forget_plan(&mut self, bundle: &str) {
        self.plans.remove(bundle);
    }

    /// Whether a run or parked container of `bundle` exists.
    pub fn uses_bundle(&self, bundle: &str) -> bool {
        self.slots.iter().flatten().any(|r| r.bundle == bundle)
    }

    /// Completed runs to deliver.
    pub fn take_done(&mut self) -> Vec<Done> {
        std::mem::take(&mut self.done)
    }
}

/// A run's stdin: `input` in a memfd, read from the start (PID 1 never
/// blocks writing it).
fn input_memfd(input: &[u8]) -> rustix::io::Result<OwnedFd> {
    let m = rustix::fs::memfd_create("quilt-input", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut rest = input;
    while !rest.is_empty() {
        let n = rustix::io::write(&m, rest)?;
        rest = rest.get(n..).unwrap_or(&[]);
    }
    rustix::fs::seek(&m, rustix::fs::SeekFrom::Start(0))?;
    Ok(m)
}

/// A run's stdout and stderr pipes, (read, write) each, read ends
/// non-blocking (the loop drains them), all close-on-exec.
type Pipe = (OwnedFd, OwnedFd);
fn output_pipes() -> rustix::io::Result<(Pipe, Pipe)> {
    let flags = rustix::pipe::PipeFlags::CLOEXEC;
    let out = rustix::pipe::pipe_with(flags)?;
    let err = rustix::pipe::pipe_with(flags)?;
    for fd in [&out.0, &err.0] {
        let fl = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok((out, err))
}

/// A run's cgroup while its launch may still fail: dropped before
/// [`Unlaunched::keep`], it removes the cgroup (and its family's).
struct Unlaunched<'a>(Option<&'a str>);

impl Unlaunched<'_> {
    /// The run is launched: its cgroup stays (until it ends).
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Unlaunched<'_> {
    fn drop(&mut self) {
        if let Some(cg) = self.0 {
            remove_family(cg);
        }
    }
}

/// Remove a run's cgroup, with its `main` and `kids` if it has them; true
/// when it is gone (false while children's cgroups remain).
fn remove_family(cg: &str) -> bool {
    for sub in ["main", "kids"] {
        cgroup::remove(&format!("{cg}/{sub}"));
    }
    cgroup::remove(cg);
    !std::path::Path::new(cgroup::path(cg, "").as_str()).exists()
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

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_proto::ErrorCode;

    #[test]
    fn each_failure_keeps_its_wire_code() {
        let cases = [
            (RunError::NoTrustStore, ErrorCode::NotFound),
            (
                RunError::NotInstalled { bundle: "b".into() },
                ErrorCode::NotFound,
            ),
            (RunError::NotWaitable { id: 1 }, ErrorCode::NotFound),
            (RunError::NotRunning { id: 1 }, ErrorCode::NotFound),
            (RunError::TooDeep { run: 1 }, ErrorCode::Denied),
            (
                RunError::ExceedsParent {
                    bundle: "b".into(),
                    token: "t".into(),
                    run: 1,
                },
                ErrorCode::Denied,
            ),
            (RunError::TooManyChildren, ErrorCode::Busy),
            (RunError::FamilyFull { root: 1 }, ErrorCode::Busy),
            (RunError::Full, ErrorCode::Busy),
            (
                RunError::Launch {
                    bundle: "b".into(),
                    err: crate::launcher::LaunchError::Bus(crate::refusal::BusRefusal::NoChannel {
                        topic: "t".into(),
                    }),
                },
                ErrorCode::Busy,
            ),
            (
                RunError::Launch {
                    bundle: "b".into(),
                    err: crate::launcher::LaunchError::Socketpair(rustix::io::Errno::MFILE),
                },
                ErrorCode::Failed,
            ),
            (RunError::Unplanned, ErrorCode::Failed),
            (
                RunError::Setup {
                    what: "pipe",
                    err: rustix::io::Errno::MFILE,
                },
                ErrorCode::Failed,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    #[test]
    fn messages_are_the_ones_clients_always_got() {
        assert_eq!(
            RunError::NotWaitable { id: 7 }.to_string(),
            "no run 7 spawned by this client (already collected, or never yours)"
        );
        assert_eq!(
            RunError::ExceedsParent {
                bundle: "kid".into(),
                token: "exec:calc".into(),
                run: 3
            }
            .to_string(),
            "bundle \"kid\" carries `exec:calc`, which run 3 does not hold: a child never holds more than its parent"
        );
        assert_eq!(
            RunError::Full.to_string(),
            format!("{MAX_RUNS} runs already in flight; retry when one finishes")
        );
    }
}
