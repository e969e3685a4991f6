//! The supervisor's decisions, with no syscall in them: when a service
//! starts (its `after` services ready, its pod's first member started),
//! how it is restarted (policy, crash-loop backoff), how an operator's
//! start, stop and restart go, and how the board shuts down (reverse
//! dependency order, grace, kill, give up). Each transition is
//! `(state, event) -> effects`: [`Machine::step`] and [`Machine::operate`]
//! change only the machine and return [`Effect`]s, which a [`Host`] carries
//! out (the real one in `supervisor::host`, a recording fake in the tests).
//! What it must know of the world (is a cgroup empty, is a ready file
//! there) it asks a [`Probe`].

use crate::clock::Millis;
use crate::policy::{self, ExitCode};
use quilt_config::{BootConfig, PowerAction, Ready, StartOrder, MAX_SERVICES};
use quilt_proto::ServiceVerb;
use std::rc::Rc;

/// How often to look for a ready file or a drained cgroup.
pub const POLL_MS: u64 = 20;
/// Beyond the grace period, how long a shutdown may wait for processes
/// that survive `cgroup.kill` before init goes down without them.
pub const SHUTDOWN_SLACK_MS: u64 = 5_000;

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its `after` services to be ready.
    Waiting,
    /// Running since `since`.
    Running {
        pid: i32,
        since: Millis,
        ready: bool,
    },
    /// Crashed; will start again at `until`.
    Backoff { until: Millis },
    /// Asked to stop; `pid` is the main process until it is reaped.
    Stopping {
        pid: Option<i32>,
        kill_at: Millis,
        killed: bool,
        since: Millis,
    },
    /// Exited and will not be restarted.
    Done,
    /// Stopped at shutdown (or by the operator).
    Stopped,
}

/// What happened, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The loop woke: start what can start, advance stops and shutdown.
    Tick,
    /// An [`Effect::Start`] made a process, on its way to exec.
    Spawned { service: usize, pid: i32 },
    /// An [`Effect::Start`] made no process at all.
    StartFailed { service: usize },
    /// The process reported its way to exec: `failed` when its setup or
    /// exec failed (it exits at once then).
    SetupEnded { service: usize, failed: bool },
    /// The service said it is ready (a line on its readiness fd).
    Ready { service: usize },
    /// A child was reaped (any child: orphans are counted).
    Exited {
        pid: i32,
        code: ExitCode,
        /// Its cgroup saw an OOM kill since its last exit.
        oom_killed: bool,
    },
    /// Begin an orderly shutdown ending in this action.
    Shutdown(PowerAction),
}

/// What the machine asks the world, read-only.
pub trait Probe {
    /// Whether service `i`'s cgroup still holds processes.
    fn populated(&self, service: usize) -> bool;
    /// Whether service `i`'s ready file exists.
    fn ready_file(&self, service: usize) -> bool;
}

/// What the machine wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Start service `i`; answer with [`Event::Spawned`] (and later
    /// [`Event::SetupEnded`]) or [`Event::StartFailed`].
    Start(usize),
    /// SIGTERM to its cgroup and its main process.
    Term { service: usize, pid: i32 },
    /// `cgroup.kill` and SIGKILL to its main process, if it has one.
    Kill { service: usize, pid: Option<i32> },
    /// Kill what an ended incarnation left in its cgroup, if anything.
    Sweep(usize),
    /// Remove its cgroup (stopped at shutdown).
    RemoveCgroup(usize),
    /// Stop watching its readiness fd.
    ForgetReadyPipe(usize),
    /// Log the last line it printed (it failed).
    ExitTail(usize),
    /// Log a state change.
    Note(Note),
}

/// A state change worth one log line (the host formats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The operator started it (it waits for its dependencies).
    OperatorStart(usize),
    /// Told to stop with SIGTERM.
    Stop {
        service: usize,
        pid: i32,
        operator: bool,
    },
    /// Stopped before it ran (waiting or backing off), by the operator.
    StoppedIdle(usize),
    /// Its stop finished.
    Stopped {
        service: usize,
        after_ms: u64,
        operator: bool,
    },
    /// The grace ran out: killed (`grace_ms` at shutdown).
    GraceKill {
        service: usize,
        grace_ms: Option<u64>,
    },
    /// Still not stopped when the shutdown gave up.
    Abandoned(usize),
    /// A shutdown began.
    ShutdownBegin { action: PowerAction, orphans: u64 },
    /// Ended for good with this status.
    Done { service: usize, status: i32 },
    /// Will start again after `delay_ms`.
    Backoff {
        service: usize,
        delay_ms: u64,
        failures: u32,
        restarts: u32,
    },
    /// Ready.
    Ready(usize),
    /// Exited while stopping (`shutdown` or an operator's stop).
    ExitWhileStopping {
        service: usize,
        pid: i32,
        status: i32,
        shutdown: bool,
    },
    /// Exited on its own.
    Exit {
        service: usize,
        pid: i32,
        status: i32,
        ran_ms: u64,
        oom_killed: bool,
    },
    /// The operator acted on a pod (config index) of `members` services.
    Pod {
        verb: ServiceVerb,
        pod: usize,
        members: usize,
    },
}

/// Carries effects out, and is the machine's [`Probe`].
pub trait Host: Probe {
    /// Do `effect`; a start answers with the event it led to.
    fn apply(&mut self, effect: Effect) -> Option<Event>;
}

/// Why an operator's start, stop or restart was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum OperateError {
    /// The board is on its way down.
    ShuttingDown,
    /// No service (or pod) by that name.
    NoService(String),
    /// `start` of a service that runs, waits or backs off already.
    AlreadyStarted(String),
    /// A pod member was refused.
    Pod {
        /// The pod.
        pod: String,
        /// Why its member was.
        member: Box<OperateError>,
    },
}

impl core::fmt::Display for OperateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OperateError::ShuttingDown => f.write_str("the board is shutting down"),
            OperateError::NoService(n) => {
                write!(f, "no service named {n:?}; `quilt ps` lists them")
            }
            OperateError::AlreadyStarted(n) => write!(f, "service {n:?} is already started"),
            OperateError::Pod { pod, member } => write!(f, "pod {pod:?}: {member}"),
        }
    }
}

/// What the machine keeps of one service.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// Consecutive quick failures (crate::policy::next_failures).
    failures: u32,
    restarts: u32,
    /// Start again once the operator's stop has finished (`restart`).
    restart_pending: bool,
    /// How its last run ended.
    last_exit: Option<ExitCode>,
}

/// Every service's state, and the shutdown in progress, if any.
pub struct Machine {
    cfg: Rc<BootConfig>,
    order: StartOrder,
    entries: heapless::Vec<Entry, MAX_SERVICES>,
    shutdown: Option<(PowerAction, Millis)>,
    /// A power action decided inside a tick (a one-shot that could not
    /// start), begun at its end.
    pending: Option<PowerAction>,
    /// Children reaped that were no service's main process.
    orphans: u64,
}

impl Machine {
    /// Every service waiting, in the config's start order.
    pub fn new(cfg: Rc<BootConfig>) -> Machine {
        let order = quilt_config::start_order(&cfg).unwrap_or_default();
        let entries = cfg
            .services
            .iter()
            .map(|_| Entry {
                state: State::Waiting,
                failures: 0,
                restarts: 0,
                restart_pending: false,
                last_exit: None,
            })
            .collect();
        Machine {
            cfg,
            order,
            entries,
            shutdown: None,
            pending: None,
            orphans: 0,
        }
    }

    /// The config in force.
    pub fn config(&self) -> &BootConfig {
        &self.cfg
    }

    /// Service `i`'s state.
    pub fn state(&self, i: usize) -> Option<State> {
        self.entries.get(i).map(|e| e.state)
    }

    /// How often service `i` has been restarted.
    pub fn restarts(&self, i: usize) -> u32 {
        self.entries.get(i).map_or(0, |e| e.restarts)
    }

    /// The service whose main process `pid` is.
    pub fn service_of(&self, pid: i32) -> Option<usize> {
        self.entries.iter().position(|e| match e.state {
            State::Running { pid: p, .. } => p == pid,
            State::Stopping { pid: Some(p), .. } => p == pid,
            _ => false,
        })
    }

    /// Whether the board is on its way down.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// The action of a shutdown that has stopped every service.
    pub fn finished(&self) -> Option<PowerAction> {
        let (action, _) = self.shutdown?;
        self.entries
            .iter()
            .all(|e| e.state == State::Stopped)
            .then_some(action)
    }

    /// How service `name` ended for good: `Some(true)` done with status 0,
    /// `Some(false)` done with another status, `None` not done yet.
    pub fn outcome(&self, name: &str) -> Option<bool> {
        let e = self.entries.get(self.cfg.service_index(name)?)?;
        match e.state {
            State::Done => Some(e.last_exit.is_some_and(|c| c.success())),
            _ => None,
        }
    }

    /// One transition.
    pub fn step(&mut self, event: Event, now: Millis, probe: &impl Probe) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Tick => self.tick(now, probe, &mut out),
            Event::Spawned { service, pid } => self.set(
                service,
                State::Running {
                    pid,
                    since: now,
                    ready: false,
                },
            ),
            Event::SetupEnded { service, failed } => self.setup_ended(service, failed, &mut out),
            Event::StartFailed { service } => self.start_failed(service, now, &mut out),
            Event::Ready { service } => self.mark_ready(service, &mut out),
            Event::Exited {
                pid,
                code,
                oom_killed,
            } => self.exited(pid, code, oom_killed, now, probe, &mut out),
            Event::Shutdown(action) => self.begin_shutdown(action, now, probe, &mut out),
        }
        out
    }

    /// The operator's `start`, `stop` or `restart` of service (or pod)
    /// `name`: the state it is in afterwards, or why not. `out` gets the
    /// effects even when a pod member is refused part way.
    pub fn operate(
        &mut self,
        name: &str,
        verb: ServiceVerb,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<&'static str, OperateError> {
        use ServiceVerb::*;
        if self.shutdown.is_some() {
            return Err(OperateError::ShuttingDown);
        }
        // A pod goes as one: its members in order (stopped in reverse).
        if let Some(pod) = self.cfg.pods.iter().position(|p| p.name == name) {
            let mut members: Vec<String> = self
                .cfg
                .pods
                .get(pod)
                .map(|p| p.services.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            if verb == Stop {
                members.reverse();
            }
            let mut last = "stopped";
            for m in &members {
                last = match self.operate(m, verb, now, out) {
                    Ok(s) => s,
                    // Already started members are fine for a pod start.
                    Err(OperateError::AlreadyStarted(_)) if verb == Start => "running",
                    Err(e) => {
                        return Err(OperateError::Pod {
                            pod: name.to_owned(),
                            member: Box::new(e),
                        })
                    }
                };
            }
            out.push(Effect::Note(Note::Pod {
                verb,
                pod,
                members: members.len(),
            }));
            return Ok(last);
        }
        let i = self
            .cfg
            .service_index(name)
            .ok_or_else(|| OperateError::NoService(name.to_owned()))?;
        let grace = u64::from(self.cfg.shutdown_grace_ms);
        let e = self
            .entries
            .get_mut(i)
            .ok_or_else(|| OperateError::NoService(name.to_owned()))?;
        match (verb, e.state) {
            (Start, State::Running { .. } | State::Waiting | State::Backoff { .. }) => {
                Err(OperateError::AlreadyStarted(name.to_owned()))
            }
            (Start | Restart, State::Stopping { .. }) => {
                e.restart_pending = true;
                Ok("stopping")
            }
            (Start | Restart, State::Done | State::Stopped) => {
                e.failures = 0;
                e.state = State::Waiting;
                out.push(Effect::Note(Note::OperatorStart(i)));
                Ok("waiting")
            }
            (Stop | Restart, State::Running { pid, .. }) => {
                e.restart_pending = verb == Restart;
                e.state = State::Stopping {
                    pid: Some(pid),
                    kill_at: now.after(grace),
                    killed: false,
                    since: now,
                };
                out.push(Effect::Note(Note::Stop {
                    service: i,
                    pid,
                    operator: true,
                }));
                out.push(Effect::Term { service: i, pid });
                Ok("stopping")
            }
            (Stop, State::Waiting | State::Backoff { .. }) => {
                e.state = State::Stopped;
                out.push(Effect::Note(Note::StoppedIdle(i)));
                Ok("stopped")
            }
            (Restart, State::Waiting | State::Backoff { .. }) => {
                e.state = State::Waiting;
                Ok("waiting")
            }
            (Stop, State::Stopping { .. }) => {
                e.restart_pending = false;
                Ok("stopping")
            }
            (Stop, State::Done | State::Stopped) => Ok("stopped"),
        }
    }

    /// The earliest time the loop must wake even if nothing happens.
    pub fn deadline(&self, now: Millis) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut take = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some((_, began)) = self.shutdown {
            // Never sleep through a shutdown: at worst, wake at its limit.
            take(began.after(self.shutdown_limit()));
        }
        for (i, e) in self.entries.iter().enumerate() {
            match e.state {
                State::Backoff { until } => take(until),
                State::Stopping {
                    kill_at,
                    killed,
                    pid,
                    ..
                } => {
                    if !killed && pid.is_some() {
                        take(kill_at);
                    } else {
                        take(now.after(POLL_MS));
                    }
                }
                State::Running { ready: false, .. } => {
                    if matches!(
                        self.cfg.services.get(i).map(|c| &c.ready),
                        Some(Ready::File(_))
                    ) {
                        take(now.after(POLL_MS));
                    }
                }
                _ => {}
            }
        }
        next
    }

    fn shutdown_limit(&self) -> u64 {
        u64::from(self.cfg.shutdown_grace_ms).saturating_add(SHUTDOWN_SLACK_MS)
    }

    fn set(&mut self, i: usize, state: State) {
        if let Some(e) = self.entries.get_mut(i) {
            e.state = state;
        }
    }

    fn is_ready(&self, name: &str) -> bool {
        let Some(i) = self.cfg.service_index(name) else {
            return false;
        };
        match self.state(i) {
            Some(State::Running { ready, .. }) => ready,
            // A one-shot that finished counts as satisfied.
            Some(State::Done) => true,
            _ => false,
        }
    }

    fn deps_ready(&self, i: usize) -> bool {
        self.cfg
            .services
            .get(i)
            .is_some_and(|s| s.after.iter().all(|d| self.is_ready(d)))
    }

    /// Pod members start in the pod's order: a later one once the first
    /// has been started (they all join the pod's namespaces).
    fn pod_first_started(&self, i: usize) -> bool {
        let Some(name) = self.cfg.services.get(i).map(|s| &s.name) else {
            return true;
        };
        let leader = self
            .cfg
            .pods
            .iter()
            .find(|p| p.services.iter().any(|s| s == name))
            .and_then(|p| p.services.first());
        match leader.and_then(|l| self.cfg.service_index(l)) {
            Some(l) if l != i => !matches!(self.state(l), Some(State::Waiting)),
            _ => true,
        }
    }

    fn tick(&mut self, now: Millis, probe: &impl Probe, out: &mut Vec<Effect>) {
        if self.shutdown.is_some() {
            self.advance_shutdown(now, probe, out);
            return;
        }
        self.advance_operator_stops(now, probe, out);
        for k in 0..self.order.len() {
            let Some(i) = self.order.get(k).map(|&i| usize::from(i)) else {
                continue;
            };
            match self.state(i) {
                Some(State::Waiting) if self.deps_ready(i) && self.pod_first_started(i) => {
                    out.push(Effect::Start(i));
                }
                Some(State::Backoff { until }) if now >= until => {
                    if self.deps_ready(i) {
                        out.push(Effect::Start(i));
                    } else {
                        self.set(i, State::Waiting);
                    }
                }
                Some(State::Running { ready: false, .. }) => {
                    let by_file = matches!(
                        self.cfg.services.get(i).map(|s| &s.ready),
                        Some(Ready::File(_))
                    );
                    if by_file && probe.ready_file(i) {
                        self.mark_ready(i, out);
                    }
                }
                _ => {}
            }
        }
        if let Some(action) = self.pending.take() {
            self.begin_shutdown(action, now, probe, out);
        }
    }

    fn setup_ended(&mut self, i: usize, failed: bool, out: &mut Vec<Effect>) {
        if !matches!(self.state(i), Some(State::Running { .. })) {
            return;
        }
        // A container is ready once its tool is exec'd; a plain service
        // when its `ready` says.
        let ready_on_start = self
            .cfg
            .services
            .get(i)
            .is_some_and(|s| s.bundle.is_some() || matches!(s.ready, Ready::Started));
        if ready_on_start && !failed {
            self.mark_ready(i, out);
        }
    }

    /// A start that never reached exec: restart later, or give up for good
    /// as if it had exited 127.
    fn start_failed(&mut self, i: usize, now: Millis, out: &mut Vec<Effect>) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        if policy::should_restart(svc.restart, ExitCode(127)) {
            self.backoff(i, now, 0, out);
        } else {
            let on_exit = svc.on_exit;
            self.set(i, State::Done);
            out.push(Effect::Note(Note::Done {
                service: i,
                status: 127,
            }));
            if on_exit != PowerAction::Ignore {
                self.pending = Some(on_exit);
            }
        }
    }

    fn mark_ready(&mut self, i: usize, out: &mut Vec<Effect>) {
        if let Some(e) = self.entries.get_mut(i) {
            if let State::Running { ready, .. } = &mut e.state {
                if !*ready {
                    *ready = true;
                    out.push(Effect::Note(Note::Ready(i)));
                }
            }
            out.push(Effect::ForgetReadyPipe(i));
        }
    }

    fn exited(
        &mut self,
        pid: i32,
        code: ExitCode,
        oom_killed: bool,
        now: Millis,
        probe: &impl Probe,
        out: &mut Vec<Effect>,
    ) {
        let Some(i) = self.service_of(pid) else {
            self.orphans = self.orphans.saturating_add(1);
            return;
        };
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        let (restart, on_exit) = (svc.restart, svc.on_exit);
        let shutdown = self.shutdown.is_some();
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        match e.state {
            State::Stopping {
                kill_at,
                killed,
                since,
                ..
            } => {
                e.state = State::Stopping {
                    pid: None,
                    kill_at,
                    killed,
                    since,
                };
                out.push(Effect::Note(Note::ExitWhileStopping {
                    service: i,
                    pid,
                    status: code.0,
                    shutdown,
                }));
            }
            State::Running { since, .. } => {
                let ran_ms = now.since(since);
                e.last_exit = Some(code);
                out.push(Effect::Note(Note::Exit {
                    service: i,
                    pid,
                    status: code.0,
                    ran_ms,
                    oom_killed,
                }));
                if !code.success() {
                    out.push(Effect::ExitTail(i));
                }
                // Leftovers of this incarnation go with it.
                out.push(Effect::Sweep(i));
                if policy::should_restart(restart, code) {
                    self.backoff(i, now, ran_ms, out);
                } else {
                    self.set(i, State::Done);
                    out.push(Effect::Note(Note::Done {
                        service: i,
                        status: code.0,
                    }));
                    if on_exit != PowerAction::Ignore {
                        self.begin_shutdown(on_exit, now, probe, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn backoff(&mut self, i: usize, now: Millis, ran_ms: u64, out: &mut Vec<Effect>) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        let (initial, max) = (svc.backoff_ms, svc.backoff_max_ms);
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        e.failures = policy::next_failures(e.failures, ran_ms);
        e.restarts = e.restarts.saturating_add(1);
        let delay_ms = policy::backoff_ms(initial, max, e.failures);
        e.state = State::Backoff {
            until: now.after(delay_ms),
        };
        out.push(Effect::Note(Note::Backoff {
            service: i,
            delay_ms,
            failures: e.failures,
            restarts: e.restarts,
        }));
    }

    /// An operator's stop in progress: kill at the grace, settle when the
    /// process is gone (and start again for a restart).
    fn advance_operator_stops(&mut self, now: Millis, probe: &impl Probe, out: &mut Vec<Effect>) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let State::Stopping {
                pid,
                kill_at,
                killed,
                since,
            } = e.state
            else {
                continue;
            };
            if pid.is_none() && !probe.populated(i) {
                out.push(Effect::Note(Note::Stopped {
                    service: i,
                    after_ms: now.since(since),
                    operator: true,
                }));
                e.state = if e.restart_pending {
                    e.restart_pending = false;
                    State::Waiting
                } else {
                    State::Stopped
                };
            } else if !killed && now >= kill_at {
                out.push(Effect::Note(Note::GraceKill {
                    service: i,
                    grace_ms: None,
                }));
                out.push(Effect::Kill { service: i, pid });
                e.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: true,
                    since,
                };
            }
        }
    }

    fn begin_shutdown(
        &mut self,
        action: PowerAction,
        now: Millis,
        probe: &impl Probe,
        out: &mut Vec<Effect>,
    ) {
        if self.shutdown.is_some() {
            return;
        }
        out.push(Effect::Note(Note::ShutdownBegin {
            action,
            orphans: self.orphans,
        }));
        self.shutdown = Some((action, now));
        self.advance_shutdown(now, probe, out);
    }

    /// Run shutdown passes until nothing changes: a service that stopped
    /// in this pass may unblock the ones it depended on at once.
    fn advance_shutdown(&mut self, now: Millis, probe: &impl Probe, out: &mut Vec<Effect>) {
        if let Some((_, began)) = self.shutdown {
            if now.since(began) >= self.shutdown_limit() {
                self.abandon_shutdown(out);
                return;
            }
        }
        for _ in 0..=MAX_SERVICES {
            let before: heapless::Vec<State, MAX_SERVICES> =
                self.entries.iter().map(|e| e.state).collect();
            self.shutdown_pass(now, probe, out);
            if self
                .entries
                .iter()
                .map(|e| e.state)
                .eq(before.iter().copied())
            {
                break;
            }
        }
    }

    /// The shutdown took longer than any grace allows (a process stuck in
    /// the kernel, say): stop waiting, so the board still goes down.
    fn abandon_shutdown(&mut self, out: &mut Vec<Effect>) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.state != State::Stopped {
                out.push(Effect::Note(Note::Abandoned(i)));
                out.push(Effect::Kill {
                    service: i,
                    pid: None,
                });
                e.state = State::Stopped;
            }
        }
    }

    fn shutdown_pass(&mut self, now: Millis, probe: &impl Probe, out: &mut Vec<Effect>) {
        let grace = u64::from(self.cfg.shutdown_grace_ms);
        let alive: heapless::Vec<bool, MAX_SERVICES> = self
            .entries
            .iter()
            .map(|e| matches!(e.state, State::Running { .. } | State::Stopping { .. }))
            .collect();
        for k in (0..self.order.len()).rev() {
            let Some(i) = self.order.get(k).map(|&i| usize::from(i)) else {
                continue;
            };
            let Some(state) = self.state(i) else {
                continue;
            };
            match state {
                State::Waiting | State::Backoff { .. } | State::Done => {
                    out.push(Effect::Sweep(i));
                    self.set(i, State::Stopped);
                }
                State::Running { pid, .. } if policy::may_stop(&self.cfg, i, &alive) => {
                    out.push(Effect::Note(Note::Stop {
                        service: i,
                        pid,
                        operator: false,
                    }));
                    out.push(Effect::Term { service: i, pid });
                    self.set(
                        i,
                        State::Stopping {
                            pid: Some(pid),
                            kill_at: now.after(grace),
                            killed: false,
                            since: now,
                        },
                    );
                }
                State::Stopping {
                    pid,
                    kill_at,
                    killed,
                    since,
                } => {
                    if !killed && now >= kill_at {
                        out.push(Effect::Note(Note::GraceKill {
                            service: i,
                            grace_ms: Some(grace),
                        }));
                        out.push(Effect::Kill { service: i, pid });
                        self.set(
                            i,
                            State::Stopping {
                                pid,
                                kill_at,
                                killed: true,
                                since,
                            },
                        );
                    } else if pid.is_none() && !probe.populated(i) {
                        out.push(Effect::Note(Note::Stopped {
                            service: i,
                            after_ms: now.since(since),
                            operator: false,
                        }));
                        out.push(Effect::RemoveCgroup(i));
                        self.set(i, State::Stopped);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Feed `event` to the machine and carry its effects out through `host`,
/// with the events those lead to (a start's outcome), until nothing is
/// left. A start may let the services after it start at once (a pod's
/// next member, or a service whose dependency became ready), so the
/// machine gets another tick after any start (bounded by the number of
/// services).
pub fn drive(machine: &mut Machine, host: &mut impl Host, event: Event, now: Millis) {
    let mut queue = std::collections::VecDeque::from([event]);
    for _ in 0..=MAX_SERVICES {
        let mut started = false;
        while let Some(ev) = queue.pop_front() {
            started |= matches!(
                ev,
                Event::Spawned { .. } | Event::StartFailed { .. } | Event::SetupEnded { .. }
            );
            for effect in machine.step(ev, now, host) {
                if let Some(back) = host.apply(effect) {
                    queue.push_back(back);
                }
            }
        }
        if !started || machine.shutting_down() {
            return;
        }
        queue.push_back(Event::Tick);
    }
}
