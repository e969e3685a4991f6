//! Supervised services: start in dependency order once their dependencies
//! are ready, restart with backoff, stop in reverse order at shutdown.

use crate::bundles::Tools;
use crate::bus::Bus;
use crate::cgroup;
use crate::clock::Millis;
use crate::event;
use crate::output::Output;
use crate::plan::{container_plan, merged_limits, ContainerPlan, Role};
use crate::policy::{self, ExitCode};
use crate::refusal::{PlanRefusal, PodRefusal, TargetRefusal};
use crate::spawn;
use quilt_bundle::tokens::BusRole;
use quilt_config::{BootConfig, PowerAction, Ready, MAX_SERVICES};
use rustix::fd::{AsFd, OwnedFd};
use std::ffi::CString;

/// How often to look for a ready file or a drained cgroup.
const POLL_MS: u64 = 20;
/// Beyond the grace period, how long a shutdown may wait for processes
/// that survive `cgroup.kill` before init goes down without them.
const SHUTDOWN_SLACK_MS: u64 = 5_000;

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
    /// Stopped at shutdown.
    Stopped,
}

/// One supervised service.
pub struct Svc {
    /// Current state.
    pub state: State,
    failures: u32,
    restarts: u32,
    /// Output capture (None if the pipe could not be made).
    pub output: Option<Output>,
    /// Readiness pipe of the current incarnation.
    pub ready_pipe: Option<OwnedFd>,
    cgroup: Option<OwnedFd>,
    oom_seen: u64,
    /// For a bundle service: the prepared container, or why there is none.
    container: Option<Result<ContainerPlan, PlanRefusal>>,
    /// Its bundle's bus tokens (topic, role).
    bus_wants: Vec<(String, BusRole)>,
    /// Start again once the operator's stop has finished (`restart`).
    restart_pending: bool,
    /// What its bundle's tokens let it ask over a control socket.
    control: Option<ControlGrant>,
    /// Its processes live in `<name>/main`, its children in `<name>/kids`.
    family: bool,
    /// Its place in a pod (fixed by the config).
    pod: Option<PodRole>,
    /// How its last run ended.
    last_exit: Option<ExitCode>,
}

/// What the supervisor wants the event loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Watch this fd for readability under this token. There is no
    /// "unwatch": every watched fd has a single reference, and closing it
    /// removes it from the epoll set (epoll(7)).
    Watch(i32, u64),
}

/// Why an operator's start, stop or restart was refused.
#[derive(Debug)]
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

/// All services and the shutdown in progress, if any.
pub struct Supervisor {
    cfg: Box<BootConfig>,
    order: quilt_config::StartOrder,
    svcs: heapless::Vec<Svc, MAX_SERVICES>,
    dev_null: Option<OwnedFd>,
    shutdown: Option<(PowerAction, Millis)>,
    first_exec_logged: bool,
    /// A power action decided outside `on_exit` (a one-shot that could not start).
    pending: Option<PowerAction>,
    /// Orphans reaped that were not any service's main process.
    pub orphans_reaped: u64,
    /// fds to (un)register, drained by the event loop.
    pub requests: heapless::Vec<Request, 64>,
    /// The board's bus channels.
    bus: Bus,
    /// Control sockets of started services, for the control server.
    pub adopt: Vec<(OwnedFd, crate::control::Spawner)>,
    /// Listeners of started containers with `net:` tokens, for the relay:
    /// (host pid, destinations, one listener each).
    pub net_adopt: Vec<NetAdopt>,
    /// Each pod's network and IPC namespaces, made when its first member
    /// starts and held for the boot, so a member that restarts joins them
    /// again (as its volumes last the boot).
    pod_ns: Vec<Option<PodNamespaces>>,
}

/// A pod's namespaces, held for the boot.
struct PodNamespaces {
    net: quilt_container::netns::NetNs,
    /// The PID namespace's holder (host pid) and the namespace, when the
    /// pod shares one.
    pid: Option<(i32, OwnedFd)>,
}

/// A pod's namespaces for one member's start (duplicated fds).
struct PodFds {
    net: OwnedFd,
    ipc: OwnedFd,
    pid: Option<OwnedFd>,
}

/// See [`Supervisor::net_adopt`].
pub type NetAdopt = (i32, Vec<std::net::SocketAddrV4>, Vec<OwnedFd>);

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Supervisor {
    /// Set up capture pipes and cgroups for every configured service.
    pub fn new(cfg: Box<BootConfig>, tools: Option<&Tools>, bus: Bus) -> Supervisor {
        let order = quilt_config::start_order(&cfg).unwrap_or_default();
        let mut svcs = heapless::Vec::new();
        let mut requests = heapless::Vec::new();
        for (i, s) in cfg.services.iter().enumerate() {
            let output = match Output::new() {
                Ok(o) => Some(o),
                Err(e) => {
                    event!("event=output-pipe-failed name={} error={}", s.name, e);
                    None
                }
            };
            if let Some(o) = &output {
                let _ = requests.push(Request::Watch(
                    raw(&o.read),
                    crate::tokens::SERVICE_OUT + i as u64,
                ));
            }
            let pod = pod_role(&cfg, &s.name);
            if let Some(p) = &pod {
                for (_, dir) in &p.volumes {
                    if std::fs::create_dir_all(dir).is_ok() {
                        // Members have uids of their own and the pod's
                        // group (crate::ids): the volume is the group's,
                        // and what a member makes in it stays the pod's.
                        use std::os::unix::fs::PermissionsExt;
                        let gid = crate::ids::PODS + p.pod as u32;
                        let _ = std::os::unix::fs::chown(dir, Some(0), Some(gid));
                        let _ =
                            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770));
                    }
                }
            }
            let container = s.bundle.as_ref().map(|b| {
                let role = Role::service(s, i, pod.as_ref().map(|p| p.pod));
                container_plan(&role, b, tools, &bus, pod.as_ref(), &cfg.net)
            });
            let bus_wants = s
                .bundle
                .as_ref()
                .and_then(|b| tools?.get(b))
                .map(|t| {
                    crate::bus::wants(&t.header.tokens)
                        .into_iter()
                        .map(|(topic, role)| (topic.to_owned(), role))
                        .collect()
                })
                .unwrap_or_default();
            let limits = merged_limits(&s.limits, s.bundle.as_deref(), tools);
            let control = s
                .bundle
                .as_ref()
                .and_then(|b| tools?.get(b))
                .and_then(|t| control_grant(&t.header.tokens));
            let family = control
                .as_ref()
                .is_some_and(|g| g.spawn_any || !g.spawn_only.is_empty());
            let made = if family {
                cgroup::create_family(&s.name, &limits)
            } else {
                cgroup::create(&s.name, &limits)
            };
            let cgroup = match made {
                Ok(fd) => Some(fd),
                Err(e) => {
                    event!("event=cgroup-create-failed name={} error={}", s.name, e);
                    None
                }
            };
            let _ = svcs.push(Svc {
                state: State::Waiting,
                failures: 0,
                restarts: 0,
                output,
                ready_pipe: None,
                cgroup,
                oom_seen: 0,
                container,
                bus_wants,
                restart_pending: false,
                control,
                family,
                pod,
                last_exit: None,
            });
        }
        let cfg_pods = cfg.pods.len();
        Supervisor {
            cfg,
            order,
            svcs,
            dev_null: spawn::dev_null().ok(),
            shutdown: None,
            first_exec_logged: false,
            pending: None,
            orphans_reaped: 0,
            requests,
            bus,
            adopt: Vec::new(),
            net_adopt: Vec::new(),
            pod_ns: (0..cfg_pods).map(|_| None).collect(),
        }
    }

    /// The board's bus channels (runs take subscriber slots from it too).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The operator's `start`, `stop` or `restart` of service `name`: the
    /// state it is in afterwards, or why not.
    pub fn operate(
        &mut self,
        name: &str,
        verb: quilt_proto::ServiceVerb,
        now: Millis,
    ) -> Result<&'static str, OperateError> {
        use quilt_proto::ServiceVerb::*;
        if self.shutdown.is_some() {
            return Err(OperateError::ShuttingDown);
        }
        // A pod goes as one: its members in order (stopped in reverse).
        if let Some(p) = self.cfg.pods.iter().find(|p| p.name == name).cloned() {
            let mut members: Vec<String> = p.services.iter().map(|s| s.to_string()).collect();
            if verb == Stop {
                members.reverse();
            }
            let mut last = "stopped";
            for m in &members {
                last = match self.operate(m, verb, now) {
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
            event!(
                "event=pod-operator verb={:?} name={} members={}",
                verb,
                name,
                members.len()
            );
            return Ok(last);
        }
        let i = self
            .cfg
            .service_index(name)
            .ok_or_else(|| OperateError::NoService(name.to_owned()))?;
        let grace = u64::from(self.cfg.shutdown_grace_ms);
        let st = self
            .svcs
            .get_mut(i)
            .ok_or_else(|| OperateError::NoService(name.to_owned()))?;
        match (verb, st.state) {
            (Start, State::Running { .. } | State::Waiting | State::Backoff { .. }) => {
                Err(OperateError::AlreadyStarted(name.to_owned()))
            }
            (Start, State::Stopping { .. }) => {
                st.restart_pending = true;
                Ok("stopping")
            }
            (Start | Restart, State::Done | State::Stopped) => {
                st.failures = 0;
                st.state = State::Waiting;
                event!("event=service-operator verb=start name={}", name);
                Ok("waiting")
            }
            (Stop | Restart, State::Running { pid, .. }) => {
                st.restart_pending = verb == Restart;
                st.state = State::Stopping {
                    pid: Some(pid),
                    kill_at: now.after(grace),
                    killed: false,
                    since: now,
                };
                event!(
                    "event=service-stop name={} pid={} signal=TERM reason=operator",
                    name,
                    pid
                );
                cgroup::signal_all(name, rustix::process::Signal::TERM);
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
                Ok("stopping")
            }
            (Stop, State::Waiting | State::Backoff { .. }) => {
                st.state = State::Stopped;
                event!("event=service-stopped name={} reason=operator", name);
                Ok("stopped")
            }
            (Restart, State::Waiting | State::Backoff { .. }) => {
                st.state = State::Waiting;
                Ok("waiting")
            }
            (Stop, State::Stopping { .. }) => {
                st.restart_pending = false;
                Ok("stopping")
            }
            (Restart, State::Stopping { .. }) => {
                st.restart_pending = true;
                Ok("stopping")
            }
            (Stop, State::Done | State::Stopped) => Ok("stopped"),
        }
    }

    /// An operator's stop in progress: kill at the grace, settle when the
    /// process is gone (and start again for a restart).
    fn advance_operator_stops(&mut self, now: Millis) {
        for (i, st) in self.svcs.iter_mut().enumerate() {
            let State::Stopping {
                pid,
                kill_at,
                killed,
                since,
            } = st.state
            else {
                continue;
            };
            let name = self.cfg.services.get(i).map_or("?", |s| s.name.as_str());
            if pid.is_none() && !cgroup::populated(name) {
                event!(
                    "event=service-stopped name={} after_ms={} reason=operator",
                    name,
                    now.since(since)
                );
                st.state = if st.restart_pending {
                    st.restart_pending = false;
                    State::Waiting
                } else {
                    State::Stopped
                };
            } else if !killed && now >= kill_at {
                event!("event=service-kill name={} reason=grace-expired", name);
                cgroup::kill_all(name);
                if let Some(p) = pid.and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
                st.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: true,
                    since,
                };
            }
        }
    }

    /// A new version of `bundle` was installed: its services get it at
    /// their next start.
    pub fn bundle_updated(&mut self, bundle: &str, tools: &Tools) {
        for (index, (svc, st)) in self
            .cfg
            .services
            .iter()
            .zip(self.svcs.iter_mut())
            .enumerate()
        {
            if svc.bundle.as_deref() == Some(bundle) {
                let role = Role::service(svc, index, st.pod.as_ref().map(|p| p.pod));
                let plan = container_plan(
                    &role,
                    bundle,
                    Some(tools),
                    &self.bus,
                    st.pod.as_ref(),
                    &self.cfg.net,
                );
                st.container = Some(plan);
            }
        }
    }

    /// The main pid of service `name`'s container, if it is a running
    /// bundle service, and the uid and gid its tool runs as (what an exec
    /// into it runs as too: the container's identity, no other; inside its
    /// user namespace if it has one, which the exec joins).
    pub fn container_target(&self, name: &str) -> Result<(i32, u32, u32), TargetRefusal> {
        let i = self
            .cfg
            .service_index(name)
            .ok_or_else(|| TargetRefusal::NoService {
                name: name.to_owned(),
            })?;
        let ids = self
            .svcs
            .get(i)
            .and_then(|s| s.container.as_ref()?.as_ref().ok())
            .map(|c| {
                let (uid, gid, _) = c.plan.identity();
                (uid, gid)
            });
        match (self.svcs.get(i).map(|s| s.state), ids) {
            (Some(State::Running { pid, .. }), Some((uid, gid))) => Ok((pid, uid, gid)),
            (Some(State::Running { .. }), None) => Err(TargetRefusal::NotAContainer {
                name: name.to_owned(),
            }),
            _ => Err(TargetRefusal::NotRunning {
                name: name.to_owned(),
            }),
        }
    }

    /// Whether a service that is not stopped or done runs `bundle`.
    pub fn uses_bundle(&self, bundle: &str) -> bool {
        self.cfg
            .services
            .iter()
            .zip(self.svcs.iter())
            .any(|(c, s)| {
                c.bundle.as_deref() == Some(bundle)
                    && !matches!(s.state, State::Stopped | State::Done)
            })
    }

    /// Service `name`'s index and its output since `pos`: bytes missed,
    /// new bytes, new position.
    pub fn output_since(&self, name: &str, pos: u64) -> Option<(usize, u64, Vec<u8>, u64)> {
        let i = self.cfg.service_index(name)?;
        let (missed, data, next) = self.svcs.get(i)?.output.as_ref()?.since(pos);
        Some((i, missed, data, next))
    }

    /// Services as the control API's `List` shows them.
    pub fn info(&self, now: Millis) -> Vec<quilt_proto::ServiceInfo> {
        self.cfg
            .services
            .iter()
            .zip(self.svcs.iter())
            .map(|(c, s)| {
                let (state, pid, uptime_ms) = match s.state {
                    State::Waiting => ("waiting", None, None),
                    State::Running { pid, since, .. } => {
                        ("running", Some(pid), Some(now.since(since)))
                    }
                    State::Backoff { .. } => ("backoff", None, None),
                    State::Stopping { pid, .. } => ("stopping", pid, None),
                    State::Done => ("done", None, None),
                    State::Stopped => ("stopped", None, None),
                };
                quilt_proto::ServiceInfo {
                    name: c.name.as_str().into(),
                    state: state.into(),
                    pid,
                    restarts: s.restarts,
                    uptime_ms,
                    memory_bytes: cgroup::read_u64(&c.name, "memory.current"),
                    bundle: c.bundle.as_ref().map(|b| b.as_str().into()),
                    cpu_usec: cgroup::cpu_usec(&c.name),
                    pids: cgroup::read_u64(&c.name, "pids.current"),
                }
            })
            .collect()
    }

    /// How service `name` ended for good: `Some(true)` done with status 0,
    /// `Some(false)` done with another status, `None` not done yet.
    pub fn outcome(&self, name: &str) -> Option<bool> {
        let s = self.svcs.get(self.cfg.service_index(name)?)?;
        match s.state {
            State::Done => Some(s.last_exit.is_some_and(|c| c.success())),
            _ => None,
        }
    }

    /// The config in force.
    pub fn config(&self) -> &BootConfig {
        &self.cfg
    }

    /// Pod members start in the pod's order: a later one once the first
    /// has been started (they all join the pod's held namespaces).
    fn pod_first_started(&self, i: usize) -> bool {
        match self.svcs.get(i).and_then(|s| s.pod.as_ref()) {
            Some(p) if !p.is_leader => self
                .svcs
                .get(p.leader)
                .is_some_and(|s| !matches!(s.state, State::Waiting)),
            _ => true,
        }
    }

    /// Service `i`'s pod's namespaces (net, IPC), made on first use;
    /// `None` when it is in no pod.
    fn pod_namespaces(&mut self, i: usize) -> Result<Option<PodFds>, PodRefusal> {
        let Some(p) = self.svcs.get(i).and_then(|s| s.pod.as_ref()).map(|p| p.pod) else {
            return Ok(None);
        };
        let (pod, share_pid) = self
            .cfg
            .pods
            .get(p)
            .map_or(("?", false), |p| (p.name.as_str(), p.pid));
        let slot = self.pod_ns.get_mut(p).ok_or(PodRefusal::NoSuchPod)?;
        let failed = |what, err| PodRefusal::Make {
            pod: pod.to_owned(),
            what,
            err,
        };
        if slot.is_none() {
            let net = quilt_container::netns::prepare(None, true, &[])
                .map_err(|e| failed("network and IPC namespaces", e))?;
            let pid = match share_pid {
                true => Some(
                    quilt_container::netns::pid_holder().map_err(|e| failed("PID namespace", e))?,
                ),
                false => None,
            };
            event!(
                "event=pod-namespaces pod={} pid_holder={}",
                pod,
                pid.as_ref().map_or(0, |(h, _)| *h)
            );
            *slot = Some(PodNamespaces { net, pid });
        }
        let ns = slot.as_ref().ok_or(PodRefusal::NoSuchPod)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| failed("namespace fd copies", e));
        let ipc = ns.net.ipc.as_ref().ok_or_else(|| PodRefusal::NoIpc {
            pod: pod.to_owned(),
        })?;
        Ok(Some(PodFds {
            net: dup(&ns.net.ns)?,
            ipc: dup(ipc)?,
            pid: ns.pid.as_ref().map(|(_, fd)| dup(fd)).transpose()?,
        }))
    }

    fn is_ready(&self, name: &str) -> bool {
        let Some(i) = self.cfg.service_index(name) else {
            return false;
        };
        match self.svcs.get(i).map(|s| s.state) {
            Some(State::Running { ready, .. }) => ready,
            // A one-shot that finished counts as satisfied.
            Some(State::Done) => true,
            _ => false,
        }
    }

    /// Start what can start, restart what is due, poll readiness, advance
    /// shutdown. Called on every wake-up of the event loop.
    pub fn tick(&mut self, now: Millis) {
        if self.shutdown.is_some() {
            self.advance_shutdown(now);
            return;
        }
        self.advance_operator_stops(now);
        for k in 0..self.order.len() {
            let Some(i) = self.order.get(k).map(|&i| usize::from(i)) else {
                continue;
            };
            let Some(svc) = self.cfg.services.get(i) else {
                continue;
            };
            let state = self.svcs.get(i).map(|s| s.state);
            match state {
                Some(State::Waiting)
                    if svc.after.iter().all(|d| self.is_ready(d)) && self.pod_first_started(i) =>
                {
                    self.start(i, now)
                }
                Some(State::Backoff { until }) if now >= until => {
                    if svc.after.iter().all(|d| self.is_ready(d)) {
                        self.start(i, now);
                    } else if let Some(s) = self.svcs.get_mut(i) {
                        s.state = State::Waiting;
                    }
                }
                Some(State::Running { ready: false, .. }) => {
                    if let Ready::File(path) = &svc.ready {
                        if std::path::Path::new(path.as_str()).exists() {
                            self.mark_ready(i);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(action) = self.pending.take() {
            self.begin_shutdown(action, now);
        }
    }

    /// A start that never reached exec: restart later, or give up for good
    /// as if it had exited 127.
    fn start_failed(&mut self, i: usize, now: Millis) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        if policy::should_restart(svc.restart, ExitCode(127)) {
            self.backoff(i, now, 0);
        } else {
            let (name, on_exit) = (svc.name.clone(), svc.on_exit);
            st_set(&mut self.svcs, i, State::Done);
            event!("event=service-done name={} status=127", name);
            if on_exit != PowerAction::Ignore {
                self.pending = Some(on_exit);
            }
        }
    }

    fn start(&mut self, i: usize, now: Millis) {
        if self.svcs.get(i).is_some_and(|s| s.container.is_some()) {
            self.start_container(i, now);
            return;
        }
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        let argv: heapless::Vec<CString, 16> = svc.exec.iter().map(|a| cstring(a)).collect();
        let mut envp: heapless::Vec<CString, 17> = heapless::Vec::new();
        if !svc.env.iter().any(|e| e.starts_with("PATH=")) {
            let _ = envp.push(cstring("PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
        }
        for e in &svc.env {
            let _ = envp.push(cstring(e));
        }
        let cwd = cstring(svc.cwd.as_deref().unwrap_or("/"));
        let procs = cstring(cgroup::path(&svc.name, "cgroup.procs").as_str());
        let ready_pipe = match svc.ready {
            Ready::Fd(n) => rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .ok()
                .map(|p| (p, n)),
            _ => None,
        };
        let Some(st) = self.svcs.get(i) else { return };
        let (Some(out), Some(null)) = (st.output.as_ref(), self.dev_null.as_ref()) else {
            event!(
                "event=service-start-failed name={} error=no-output-or-devnull",
                svc.name
            );
            self.backoff(i, now, 0);
            return;
        };
        let spec = spawn::Spec {
            argv: &argv,
            envp: &envp,
            cwd: &cwd,
            uid: svc.uid,
            gid: svc.gid,
            output: out.write.as_fd(),
            input: null.as_fd(),
            ready: ready_pipe.as_ref().map(|((_, w), n)| (w.as_fd(), *n)),
            cgroup: st.cgroup.as_ref().map(|c| c.as_fd()),
            cgroup_procs: &procs,
        };
        let result = spawn::spawn(&spec);
        // Our copy of the readiness write end must go, so EOF is seen.
        let ready_read = ready_pipe.map(|((r, _w), _)| r);
        match result {
            Ok(sp) => {
                let name = svc.name.clone();
                if let Some((stage, errno)) = sp.failed {
                    event!(
                        "event=service-exec-failed name={} pid={} stage={} error={}",
                        name,
                        sp.pid,
                        stage.name(),
                        std::io::Error::from_raw_os_error(errno)
                    );
                } else {
                    let how = if sp.into_cgroup {
                        "placement=clone3"
                    } else {
                        "placement=procs"
                    };
                    Self::log_started(&mut self.first_exec_logged, &name, sp.pid, how);
                }
                let ready_now = matches!(svc.ready, Ready::Started) && sp.failed.is_none();
                if let Some(s) = self.svcs.get_mut(i) {
                    s.state = State::Running {
                        pid: sp.pid,
                        since: now,
                        ready: false,
                    };
                    if let Some(r) = ready_read {
                        let _ = self.requests.push(Request::Watch(
                            raw(&r),
                            crate::tokens::SERVICE_READY + i as u64,
                        ));
                        s.ready_pipe = Some(r);
                    }
                }
                if ready_now {
                    self.mark_ready(i);
                }
            }
            Err(e) => {
                event!("event=service-start-failed name={} error={}", svc.name, e);
                self.start_failed(i, now);
            }
        }
    }

    /// Start a bundle service: its tool in a fresh container.
    fn start_container(&mut self, i: usize, now: Millis) {
        let pod = match self.pod_namespaces(i) {
            Ok(p) => p,
            Err(why) => {
                let name = self
                    .cfg
                    .services
                    .get(i)
                    .map(|s| s.name.as_str())
                    .unwrap_or("?");
                event!("event=service-start-failed name={} error=\"{}\"", name, why);
                self.start_failed(i, now);
                return;
            }
        };
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        let name = svc.name.clone();
        let Some(st) = self.svcs.get(i) else { return };
        let plan = match st.container.as_ref() {
            Some(Ok(p)) => p,
            Some(Err(why)) => {
                event!("event=service-start-failed name={} error=\"{}\"", name, why);
                self.start_failed(i, now);
                return;
            }
            None => return,
        };
        let input = match svc.input.as_deref() {
            Some(path) => match rustix::fs::open(
                path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    event!(
                        "event=service-start-failed name={} error=\"input {}: {}\"",
                        name,
                        path,
                        e
                    );
                    self.start_failed(i, now);
                    return;
                }
            },
            None => None,
        };
        let (Some(out), Some(null), Some(cg)) = (
            st.output.as_ref(),
            self.dev_null.as_ref(),
            st.cgroup.as_ref(),
        ) else {
            event!(
                "event=service-start-failed name={} error=\"no output pipe, /dev/null or cgroup\"",
                name
            );
            self.start_failed(i, now);
            return;
        };
        let wants: Vec<(&str, BusRole)> =
            st.bus_wants.iter().map(|(t, r)| (t.as_str(), *r)).collect();
        let holder = crate::bus::SERVICE | i as u64;
        let launched = crate::launcher::launch(&crate::launcher::Launch {
            plan,
            stdin: input.as_ref().map_or(null.as_fd(), |f| f.as_fd()),
            stdout: out.write.as_fd(),
            stderr: out.write.as_fd(),
            cgroup: cg.as_fd(),
            bus: &self.bus,
            holder,
            wants: &wants,
            control: st.control.is_some(),
            pod: pod.as_ref().map(|p| crate::launcher::PodJoin {
                net: p.net.as_fd(),
                ipc: p.ipc.as_fd(),
                pid: p.pid.as_ref().map(|fd| fd.as_fd()),
            }),
        });
        let spawned = match launched {
            Ok(mut l) => {
                if let Some((net, listeners)) = l.relay.take() {
                    self.net_adopt.push((l.pid, net, listeners));
                }
                if let (Some(ours), Some(grant)) = (l.control.take(), st.control.as_ref()) {
                    self.adopt.push((
                        ours,
                        crate::control::Spawner {
                            run: holder,
                            bundle: svc.bundle.as_deref().unwrap_or("").to_string(),
                            grant: grant.clone(),
                            cgroup: name.to_string(),
                            depth: 0,
                        },
                    ));
                }
                Ok(l)
            }
            Err(e) => Err(e),
        };
        match spawned {
            Ok(sp) => {
                if let Some((stage, errno)) = sp.failed {
                    let step = plan.step(stage);
                    event!(
                        "event=service-exec-failed name={} pid={} stage={} step=\"{}\" error=\"{}\"",
                        name,
                        sp.pid,
                        stage.name(),
                        step,
                        std::io::Error::from_raw_os_error(errno)
                    );
                } else {
                    Self::log_started(
                        &mut self.first_exec_logged,
                        &name,
                        sp.pid,
                        "placement=clone3 container=1",
                    );
                }
                let ok = sp.failed.is_none();
                st_set(
                    &mut self.svcs,
                    i,
                    State::Running {
                        pid: sp.pid,
                        since: now,
                        ready: false,
                    },
                );
                if ok {
                    self.mark_ready(i);
                }
            }
            Err(e) => {
                event!("event=service-start-failed name={} error=\"{}\"", name, e);
                self.start_failed(i, now);
            }
        }
    }

    /// The start lines every successful exec logs (`first-exec` once per boot).
    fn log_started(first_exec_logged: &mut bool, name: &str, pid: i32, how: &str) {
        if !*first_exec_logged {
            *first_exec_logged = true;
            event!("event=first-exec name={} pid={}", name, pid);
        }
        event!("event=service-start name={} pid={} {}", name, pid, how);
    }

    fn mark_ready(&mut self, i: usize) {
        let name = self
            .cfg
            .services
            .get(i)
            .map(|s| s.name.as_str())
            .unwrap_or("?");
        if let Some(s) = self.svcs.get_mut(i) {
            if let State::Running { ready, .. } = &mut s.state {
                if !*ready {
                    *ready = true;
                    event!("event=service-ready name={}", name);
                }
            }
            s.ready_pipe = None;
        }
    }

    /// A readiness pipe is readable: a newline means ready.
    pub fn on_ready_pipe(&mut self, i: usize) {
        let mut buf = [0u8; 64];
        let Some(p) = self.svcs.get(i).and_then(|s| s.ready_pipe.as_ref()) else {
            return;
        };
        match rustix::io::read(p, &mut buf) {
            Ok(n) if buf.get(..n).is_some_and(|b| b.contains(&b'\n')) => self.mark_ready(i),
            // EOF without a newline: the service closed it without saying
            // ready; stop watching and leave it not ready.
            Ok(0) | Err(_) => {
                if let Some(s) = self.svcs.get_mut(i) {
                    s.ready_pipe = None;
                }
            }
            Ok(_) => {}
        }
    }

    /// Output pipe of service `i` is readable.
    pub fn on_output(&mut self, i: usize) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        if let Some(o) = self.svcs.get_mut(i).and_then(|s| s.output.as_mut()) {
            o.drain(&svc.name, svc.console);
        }
    }

    /// A child was reaped. Returns the action to take if a service with
    /// `on_exit` has ended for good.
    pub fn on_exit(&mut self, pid: i32, code: ExitCode, now: Millis) -> Option<PowerAction> {
        let Some(i) = self.svcs.iter().position(|s| match s.state {
            State::Running { pid: p, .. } => p == pid,
            State::Stopping { pid: Some(p), .. } => p == pid,
            _ => false,
        }) else {
            self.orphans_reaped += 1;
            return None;
        };
        let svc = self.cfg.services.get(i)?.clone();
        self.bus.release(crate::bus::SERVICE | i as u64);
        // Drain what it printed last, before we log its exit.
        self.on_output(i);
        let own = match self.svcs.get(i).is_some_and(|s| s.family) {
            true => format!("{}/main", svc.name),
            false => svc.name.to_string(),
        };
        let oom = cgroup::read_key(&own, "memory.events", "oom_kill").unwrap_or(0);
        let st = self.svcs.get_mut(i)?;
        let oom_killed = oom > st.oom_seen;
        st.oom_seen = oom;
        st.ready_pipe = None;
        match st.state {
            State::Stopping {
                kill_at,
                killed,
                since,
                ..
            } => {
                st.state = State::Stopping {
                    pid: None,
                    kill_at,
                    killed,
                    since,
                };
                event!(
                    "event=service-exit name={} pid={} status={} during={}",
                    svc.name,
                    pid,
                    code.0,
                    if self.shutdown.is_some() {
                        "shutdown"
                    } else {
                        "stop"
                    }
                );
                None
            }
            State::Running { since, .. } => {
                let ran = now.since(since);
                event!(
                    "event=service-exit name={} pid={} status={} ran_ms={}{}",
                    svc.name,
                    pid,
                    code.0,
                    ran,
                    if oom_killed { " oom_killed=1" } else { "" }
                );
                if !code.success() && !svc.console {
                    if let Some(o) = self.svcs.get(i).and_then(|s| s.output.as_ref()) {
                        let mut tail = [0u8; 160];
                        let t = o.last_line(&mut tail);
                        event!(
                            "event=service-exit-tail name={} last_line={:?}",
                            svc.name,
                            t
                        );
                    }
                }
                // Leftovers of this incarnation go with it.
                if cgroup::populated(&svc.name) {
                    cgroup::kill_all(&svc.name);
                }
                if let Some(s) = self.svcs.get_mut(i) {
                    s.last_exit = Some(code);
                }
                if policy::should_restart(svc.restart, code) {
                    self.backoff(i, now, ran);
                    None
                } else {
                    st_set(&mut self.svcs, i, State::Done);
                    event!("event=service-done name={} status={}", svc.name, code.0);
                    (svc.on_exit != PowerAction::Ignore).then_some(svc.on_exit)
                }
            }
            _ => None,
        }
    }

    fn backoff(&mut self, i: usize, now: Millis, ran_ms: u64) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        let Some(st) = self.svcs.get_mut(i) else {
            return;
        };
        st.failures = policy::next_failures(st.failures, ran_ms);
        st.restarts = st.restarts.saturating_add(1);
        let delay = policy::backoff_ms(svc.backoff_ms, svc.backoff_max_ms, st.failures);
        st.state = State::Backoff {
            until: now.after(delay),
        };
        event!(
            "event=service-backoff name={} delay_ms={} failures={} restarts={}",
            svc.name,
            delay,
            st.failures,
            st.restarts
        );
    }

    /// Begin an orderly shutdown ending in `action`.
    pub fn begin_shutdown(&mut self, action: PowerAction, now: Millis) {
        if self.shutdown.is_some() {
            return;
        }
        event!(
            "event=shutdown-begin action={} orphans_reaped={}",
            action_name(action),
            self.orphans_reaped
        );
        self.shutdown = Some((action, now));
        self.advance_shutdown(now);
    }

    /// Whether the board is on its way down.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// The action of a shutdown that has finished stopping every service.
    pub fn finished(&self) -> Option<PowerAction> {
        let (action, _) = self.shutdown?;
        self.svcs
            .iter()
            .all(|s| matches!(s.state, State::Stopped))
            .then_some(action)
    }

    /// Run shutdown passes until nothing changes: a service that stopped
    /// in this pass may unblock the ones it depended on at once.
    fn advance_shutdown(&mut self, now: Millis) {
        if let Some((_, began)) = self.shutdown {
            let limit = u64::from(self.cfg.shutdown_grace_ms).saturating_add(SHUTDOWN_SLACK_MS);
            if now.since(began) >= limit {
                self.abandon_shutdown();
                return;
            }
        }
        for _ in 0..=MAX_SERVICES {
            let before: heapless::Vec<State, MAX_SERVICES> =
                self.svcs.iter().map(|s| s.state).collect();
            self.shutdown_pass(now);
            if self.svcs.iter().map(|s| s.state).eq(before.iter().copied()) {
                break;
            }
        }
    }

    /// The shutdown took longer than any grace allows (a process stuck in
    /// the kernel, say): stop waiting, so the board still goes down.
    fn abandon_shutdown(&mut self) {
        for i in 0..self.svcs.len() {
            let Some(name) = self.cfg.services.get(i).map(|s| s.name.clone()) else {
                continue;
            };
            if !matches!(self.svcs.get(i).map(|s| s.state), Some(State::Stopped)) {
                event!(
                    "event=service-abandoned name={} reason=shutdown-timeout",
                    name
                );
                cgroup::kill_all(&name);
                st_set(&mut self.svcs, i, State::Stopped);
            }
        }
    }

    fn shutdown_pass(&mut self, now: Millis) {
        let grace = u64::from(self.cfg.shutdown_grace_ms);
        let alive: heapless::Vec<bool, MAX_SERVICES> = self
            .svcs
            .iter()
            .map(|s| matches!(s.state, State::Running { .. } | State::Stopping { .. }))
            .collect();
        for k in (0..self.order.len()).rev() {
            let Some(i) = self.order.get(k).map(|&i| usize::from(i)) else {
                continue;
            };
            let Some(name) = self.cfg.services.get(i).map(|s| s.name.clone()) else {
                continue;
            };
            let Some(state) = self.svcs.get(i).map(|s| s.state) else {
                continue;
            };
            match state {
                State::Waiting | State::Backoff { .. } | State::Done => {
                    if cgroup::populated(&name) {
                        cgroup::kill_all(&name);
                    }
                    st_set(&mut self.svcs, i, State::Stopped);
                }
                State::Running { pid, .. } if policy::may_stop(&self.cfg, i, &alive) => {
                    event!("event=service-stop name={} pid={} signal=TERM", name, pid);
                    cgroup::signal_all(&name, rustix::process::Signal::TERM);
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                    }
                    st_set(
                        &mut self.svcs,
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
                        event!(
                            "event=service-kill name={} reason=grace-expired grace_ms={}",
                            name,
                            grace
                        );
                        cgroup::kill_all(&name);
                        if let Some(p) = pid.and_then(rustix::process::Pid::from_raw) {
                            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                        }
                        st_set(
                            &mut self.svcs,
                            i,
                            State::Stopping {
                                pid,
                                kill_at,
                                killed: true,
                                since,
                            },
                        );
                    } else if pid.is_none() && !cgroup::populated(&name) {
                        event!(
                            "event=service-stopped name={} after_ms={}",
                            name,
                            now.since(since)
                        );
                        cgroup::remove(&name);
                        st_set(&mut self.svcs, i, State::Stopped);
                    }
                }
                _ => {}
            }
        }
    }

    /// The earliest time the loop must wake even if nothing happens.
    pub fn deadline(&self, now: Millis) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut take = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some((_, began)) = self.shutdown {
            // Never sleep through a shutdown: at worst, wake at its limit.
            take(
                began
                    .after(u64::from(self.cfg.shutdown_grace_ms).saturating_add(SHUTDOWN_SLACK_MS)),
            );
        }
        for (i, s) in self.svcs.iter().enumerate() {
            match s.state {
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
}

/// Where pods' volumes live on the host (tmpfs `/run`: they last a boot).
pub const PODS: &str = "/run/quilt/pods";

/// A service's place in its pod.
#[derive(Debug, Clone)]
pub struct PodRole {
    /// The pod (index in the config).
    pub pod: usize,
    /// Its first member (a service index), started first.
    pub leader: usize,
    /// This service is that first member.
    pub is_leader: bool,
    /// (volume name, host directory).
    pub volumes: Vec<(String, std::path::PathBuf)>,
    /// The bundles of the other members (`None`: a member that runs no
    /// bundle), whose tokens bound what the shared network may reach.
    pub peers: Vec<Option<String>>,
}

/// The pod service `name` belongs to, if any.
pub fn pod_role(cfg: &BootConfig, name: &str) -> Option<PodRole> {
    let (pod, p) = cfg
        .pods
        .iter()
        .enumerate()
        .find(|(_, p)| p.services.iter().any(|s| s == name))?;
    let first = p.services.first()?;
    Some(PodRole {
        pod,
        is_leader: first == name,
        leader: cfg.service_index(first)?,
        volumes: p
            .volumes
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    std::path::Path::new(PODS)
                        .join(p.name.as_str())
                        .join(v.as_str()),
                )
            })
            .collect(),
        peers: p
            .services
            .iter()
            .filter(|s| *s != name)
            .map(|s| {
                cfg.services
                    .iter()
                    .find(|x| x.name == *s)
                    .and_then(|x| x.bundle.as_ref().map(|b| b.to_string()))
            })
            .collect(),
    })
}

/// The first of `child`'s tokens that `holder` does not hold, if any: a
/// container never gets through a child, an exec or a pod a power it
/// could not use itself. `spawn` covers every `spawn:<bundle>`; every
/// other token is covered only by itself.
pub fn uncovered_token<'a>(holder: &[String], child: &'a [String]) -> Option<&'a str> {
    child
        .iter()
        .find(|t| {
            let held = holder.iter().any(|h| h == *t);
            let spawn_any = t.starts_with("spawn:") && holder.iter().any(|h| h == "spawn");
            !(held || spawn_any)
        })
        .map(String::as_str)
}

/// What a bundle's tokens let its containers ask over a control socket
/// of their own: children (`spawn`, `spawn:<bundle>`) and counted
/// resources (`llm:<name>`). `None` when nothing: no socket at all.
pub(crate) fn control_grant(tokens: &[String]) -> Option<ControlGrant> {
    use quilt_bundle::tokens::Token;
    let mut g = ControlGrant {
        tokens: tokens.to_vec(),
        ..ControlGrant::default()
    };
    for t in tokens {
        match Token::parse(t) {
            Ok(Token::Spawn(None)) => g.spawn_any = true,
            Ok(Token::Spawn(Some(b))) => g.spawn_only.push(b.to_owned()),
            Ok(Token::Counted(r)) => g.counted.push(r.to_owned()),
            Ok(Token::Exec(s)) => g.exec.push(s.to_owned()),
            _ => {}
        }
    }
    (g.spawn_any || !g.spawn_only.is_empty() || !g.counted.is_empty() || !g.exec.is_empty())
        .then_some(g)
}

/// See [`control_grant`].
#[derive(Debug, Clone, Default)]
pub struct ControlGrant {
    /// Any installed bundle may be spawned.
    pub spawn_any: bool,
    /// These bundles may be spawned.
    pub spawn_only: Vec<String>,
    /// Counted resources it may acquire.
    pub counted: Vec<String>,
    /// Services it may exec into.
    pub exec: Vec<String>,
    /// Every token of its bundle: a child or an exec target may hold no
    /// other ([`uncovered_token`]).
    pub tokens: Vec<String>,
}

impl ControlGrant {
    /// Whether `bundle` may be spawned.
    pub fn may_spawn(&self, bundle: &str) -> bool {
        self.spawn_any || self.spawn_only.iter().any(|b| b == bundle)
    }

    /// Whether it may start processes in service `name`'s container.
    pub fn may_exec(&self, name: &str) -> bool {
        self.exec.iter().any(|s| s == name)
    }

    /// Whether it holds the token of resource `name`.
    pub fn may_acquire(&self, name: &str) -> bool {
        self.counted.iter().any(|r| r == name)
    }
}

fn st_set(svcs: &mut heapless::Vec<Svc, MAX_SERVICES>, i: usize, state: State) {
    if let Some(s) = svcs.get_mut(i) {
        s.state = state;
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use rustix::fd::AsRawFd;
    fd.as_raw_fd()
}

/// Lower-case name of an action, for logs.
pub fn action_name(a: PowerAction) -> &'static str {
    match a {
        PowerAction::Ignore => "ignore",
        PowerAction::Reboot => "reboot",
        PowerAction::Halt => "halt",
        PowerAction::Poweroff => "poweroff",
    }
}

#[cfg(test)]
mod tests {
    use super::uncovered_token;

    #[test]
    fn a_child_holds_only_what_its_holder_holds() {
        let v = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let parent = v(&["spawn", "bus:calc:sub", "net:10.0.2.2:80"]);
        assert_eq!(uncovered_token(&parent, &v(&[])), None);
        assert_eq!(
            uncovered_token(&parent, &v(&["bus:calc:sub", "spawn:x"])),
            None
        );
        assert_eq!(
            uncovered_token(&parent, &v(&["bus:calc:pub"])),
            Some("bus:calc:pub")
        );
        assert_eq!(uncovered_token(&parent, &v(&["userns"])), Some("userns"));
        assert_eq!(
            uncovered_token(&v(&["spawn:a"]), &v(&["spawn"])),
            Some("spawn"),
            "spawn:<one> does not cover spawn"
        );
        assert_eq!(
            uncovered_token(&v(&["spawn:a"]), &v(&["spawn:b"])),
            Some("spawn:b")
        );
    }
}
