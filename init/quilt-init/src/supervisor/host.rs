//! The supervisor's hands: what it holds of each service in the world
//! (output pipe, readiness pipe, cgroup, prepared container, bus tokens,
//! control grant, pod place) and how the machine's effects are carried
//! out with it: spawning plain services, launching containers through
//! `crate::launcher`, signalling and killing cgroups, and the log lines
//! the machine's notes stand for.

use super::machine::{Effect, Event, Host, Note, Probe};
use crate::bundles::Tools;
use crate::bus::Bus;
use crate::cgroup;
use crate::event;
use crate::grants::{control_grant, ControlGrant};
use crate::output::Output;
use crate::plan::{container_plan, merged_limits, ContainerPlan, Role};
use crate::pods::{pod_role, PodRole, Pods};
use crate::power::action_name;
use crate::refusal::PlanRefusal;
use crate::spawn;
use quilt_bundle::tokens::BusRole;
use quilt_config::{BootConfig, Ready, MAX_SERVICES};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::process::{kill_process, Pid, Signal};
use std::ffi::CString;
use std::rc::Rc;

/// What the host holds of one service.
pub struct Svc {
    /// Output capture (None if the pipe could not be made).
    pub output: Option<Output>,
    /// Readiness pipe of the current incarnation.
    pub ready_pipe: Option<OwnedFd>,
    cgroup: Option<OwnedFd>,
    oom_seen: u64,
    /// For a bundle service: the prepared container, or why there is none.
    pub container: Option<Result<ContainerPlan, PlanRefusal>>,
    /// Its bundle's bus tokens (topic, role).
    bus_wants: Vec<(String, BusRole)>,
    /// What its bundle's tokens let it ask over a control socket.
    control: Option<ControlGrant>,
    /// Its processes live in `<name>/main`, its children in `<name>/kids`.
    family: bool,
    /// Its place in a pod (fixed by the config).
    pub pod: Option<PodRole>,
    /// The current incarnation's way to exec, until it reports.
    setup: Option<Setup>,
}

/// A started process whose exec report has not come yet.
struct Setup {
    pid: i32,
    report: Report,
    /// How it was placed, for the start line.
    how: &'static str,
}

/// A plain service's exec report, or a container's setup report.
enum Report {
    Plain(spawn::ExecReport),
    Container(quilt_container::SetupReport),
}

/// What the supervisor wants the event loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Watch this fd for readability under this token. There is no
    /// "unwatch": every watched fd has a single reference, and closing it
    /// removes it from the epoll set (epoll(7)).
    Watch(i32, u64),
}

/// The real [`Host`]: services' pipes, cgroups and containers.
pub struct ServiceHost {
    pub cfg: Rc<BootConfig>,
    pub svcs: heapless::Vec<Svc, MAX_SERVICES>,
    dev_null: Option<OwnedFd>,
    first_exec_logged: bool,
    /// fds to watch, drained by the event loop.
    pub requests: heapless::Vec<Request, 64>,
    /// The board's bus channels.
    pub bus: Bus,
    /// Control sockets of started services, for the control server.
    pub adopt: Vec<(OwnedFd, crate::caller::Spawner)>,
    /// Listeners of started containers with `net:` tokens, for the relay.
    pub net_adopt: Vec<crate::net::NetAdopt>,
    pods: Pods,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl ServiceHost {
    /// Set up capture pipes, cgroups and container plans for every
    /// configured service.
    pub fn new(cfg: Rc<BootConfig>, tools: Option<&Tools>, bus: Bus) -> ServiceHost {
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
                    o.read.as_raw_fd(),
                    crate::tokens::SERVICE_OUT + i as u64,
                ));
            }
            let pod = pod_role(&cfg, &s.name);
            if let Some(p) = &pod {
                Pods::make_volumes(p);
            }
            let container = s.bundle.as_ref().map(|b| {
                let role = Role::service(s, i, pod.as_ref().map(|p| p.pod));
                container_plan(&role, b, tools, &bus, pod.as_ref(), &cfg.net)
            });
            let header = s.bundle.as_ref().and_then(|b| tools?.get(b));
            let bus_wants = header
                .map(|t| {
                    crate::bus::wants(&t.header.tokens)
                        .into_iter()
                        .map(|(topic, role)| (topic.to_owned(), role))
                        .collect()
                })
                .unwrap_or_default();
            let limits = merged_limits(&s.limits, s.bundle.as_deref(), tools);
            let control = header.and_then(|t| control_grant(&t.header.tokens));
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
                output,
                ready_pipe: None,
                cgroup,
                oom_seen: 0,
                container,
                bus_wants,
                control,
                family,
                pod,
                setup: None,
            });
        }
        let pods = Pods::new(&cfg);
        ServiceHost {
            cfg,
            svcs,
            dev_null: spawn::dev_null().ok(),
            first_exec_logged: false,
            requests,
            bus,
            adopt: Vec::new(),
            net_adopt: Vec::new(),
            pods,
        }
    }

    fn name(&self, i: usize) -> &str {
        self.cfg.services.get(i).map_or("?", |s| s.name.as_str())
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

    /// Output pipe of service `i` is readable.
    pub fn on_output(&mut self, i: usize) {
        let Some(svc) = self.cfg.services.get(i) else {
            return;
        };
        if let Some(o) = self.svcs.get_mut(i).and_then(|s| s.output.as_mut()) {
            o.drain(&svc.name, svc.console);
        }
    }

    /// Service `i`'s main process was reaped: give back its bus regions,
    /// drain what it printed last, and say whether its cgroup saw an OOM
    /// kill since its last exit.
    pub fn on_exit(&mut self, i: usize) -> bool {
        self.bus.release(crate::bus::SERVICE | i as u64);
        self.on_output(i);
        // Gone, so its report (if still unread) is whole: log it first.
        if let Some(mut setup) = self.svcs.get_mut(i).and_then(|s| s.setup.take()) {
            let _ = self.read_setup(i, &mut setup);
        }
        let name = self.name(i).to_owned();
        let Some(st) = self.svcs.get_mut(i) else {
            return false;
        };
        let own = match st.family {
            true => format!("{name}/main"),
            false => name,
        };
        let oom = cgroup::read_key(&own, "memory.events", "oom_kill").unwrap_or(0);
        let killed = oom > st.oom_seen;
        st.oom_seen = oom;
        st.ready_pipe = None;
        killed
    }

    /// Start service `i`: its tool in a container, or its command.
    fn start(&mut self, i: usize) -> Event {
        let failed = Event::StartFailed { service: i };
        if self.svcs.get(i).is_some_and(|s| s.container.is_some()) {
            return self.start_container(i).unwrap_or(failed);
        }
        let cfg = Rc::clone(&self.cfg);
        let Some(svc) = cfg.services.get(i) else {
            return failed;
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
        let Some(st) = self.svcs.get(i) else {
            return failed;
        };
        let (Some(out), Some(null)) = (st.output.as_ref(), self.dev_null.as_ref()) else {
            event!(
                "event=service-start-failed name={} error=no-output-or-devnull",
                svc.name
            );
            return failed;
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
                let how = if sp.into_cgroup {
                    "placement=clone3"
                } else {
                    "placement=procs"
                };
                if let (Some(r), Some(s)) = (ready_read, self.svcs.get_mut(i)) {
                    let _ = self.requests.push(Request::Watch(
                        r.as_raw_fd(),
                        crate::tokens::SERVICE_READY + i as u64,
                    ));
                    s.ready_pipe = Some(r);
                }
                self.watch_setup(i, sp.pid, Report::Plain(sp.report), how);
                Event::Spawned {
                    service: i,
                    pid: sp.pid,
                }
            }
            Err(e) => {
                event!("event=service-start-failed name={} error={}", svc.name, e);
                failed
            }
        }
    }

    /// Start a bundle service: its tool in a fresh container. `None`
    /// when no process was made.
    fn start_container(&mut self, i: usize) -> Option<Event> {
        let cfg = Rc::clone(&self.cfg);
        let svc = cfg.services.get(i)?;
        let name = svc.name.as_str();
        let fail = |why: &dyn core::fmt::Display| {
            event!("event=service-start-failed name={} error=\"{}\"", name, why);
            None
        };
        let pod = match self.svcs.get(i)?.pod.as_ref().map(|p| p.pod) {
            Some(p) => match self.pods.namespaces(&cfg, p) {
                Ok(fds) => Some(fds),
                Err(why) => return fail(&why),
            },
            None => None,
        };
        let st = self.svcs.get(i)?;
        let plan = match st.container.as_ref()? {
            Ok(p) => p,
            Err(why) => return fail(why),
        };
        let input = match svc.input.as_deref() {
            Some(path) => match rustix::fs::open(
                path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => Some(fd),
                Err(e) => return fail(&format_args!("input {path}: {e}")),
            },
            None => None,
        };
        let (Some(out), Some(null), Some(cg)) = (
            st.output.as_ref(),
            self.dev_null.as_ref(),
            st.cgroup.as_ref(),
        ) else {
            return fail(&"no output pipe, /dev/null or cgroup");
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
        let mut l = match launched {
            Ok(l) => l,
            Err(e) => return fail(&e),
        };
        if let Some((net, listeners)) = l.relay.take() {
            self.net_adopt.push((l.pid, net, listeners));
        }
        if let (Some(ours), Some(grant)) = (l.control.take(), st.control.as_ref()) {
            self.adopt.push((
                ours,
                crate::caller::Spawner {
                    run: holder,
                    bundle: svc.bundle.as_deref().unwrap_or("").to_string(),
                    grant: grant.clone(),
                    cgroup: name.to_string(),
                    depth: 0,
                },
            ));
        }
        self.watch_setup(
            i,
            l.pid,
            Report::Container(l.report),
            "placement=clone3 container=1",
        );
        Some(Event::Spawned {
            service: i,
            pid: l.pid,
        })
    }

    /// Keep a started process's report, and have the loop watch it.
    fn watch_setup(&mut self, i: usize, pid: i32, report: Report, how: &'static str) {
        let fd = match &report {
            Report::Plain(r) => r.fd().as_raw_fd(),
            Report::Container(r) => r.fd().as_raw_fd(),
        };
        if let Some(s) = self.svcs.get_mut(i) {
            let _ = self
                .requests
                .push(Request::Watch(fd, crate::tokens::SERVICE_SETUP + i as u64));
            s.setup = Some(Setup { pid, report, how });
        }
    }

    /// Service `i`'s setup report is readable: once it is whole, log how
    /// the start went and tell the machine.
    pub fn on_setup_report(&mut self, i: usize) -> Option<Event> {
        let mut setup = self.svcs.get_mut(i)?.setup.take()?;
        let Some(failed) = self.read_setup(i, &mut setup) else {
            // Not all there yet: keep watching.
            if let Some(s) = self.svcs.get_mut(i) {
                s.setup = Some(setup);
            }
            return None;
        };
        Some(Event::SetupEnded { service: i, failed })
    }

    /// Read a report without blocking; when it is whole, log the start
    /// (or where it failed) and say whether it failed.
    fn read_setup(&mut self, i: usize, setup: &mut Setup) -> Option<bool> {
        let name = self.name(i).to_owned();
        let pid = setup.pid;
        let failed = match &mut setup.report {
            Report::Plain(r) => {
                let failure = r.poll()?;
                if let Some((stage, errno)) = failure {
                    event!(
                        "event=service-exec-failed name={} pid={} stage={} error={}",
                        name,
                        pid,
                        stage.name(),
                        std::io::Error::from_raw_os_error(errno)
                    );
                }
                failure.is_some()
            }
            Report::Container(r) => {
                let failure = r.poll()?;
                if let Some((stage, errno)) = failure {
                    let step = self
                        .svcs
                        .get(i)
                        .and_then(|s| s.container.as_ref()?.as_ref().ok())
                        .map(|plan| plan.step(stage).to_string())
                        .unwrap_or_default();
                    event!(
                        "event=service-exec-failed name={} pid={} stage={} step=\"{}\" error=\"{}\"",
                        name,
                        pid,
                        stage.name(),
                        step,
                        std::io::Error::from_raw_os_error(errno)
                    );
                }
                failure.is_some()
            }
        };
        if !failed {
            self.log_started(&name, pid, setup.how);
        }
        Some(failed)
    }

    /// The start lines every successful exec logs (`first-exec` once per boot).
    fn log_started(&mut self, name: &str, pid: i32, how: &str) {
        if !self.first_exec_logged {
            self.first_exec_logged = true;
            event!("event=first-exec name={} pid={}", name, pid);
        }
        event!("event=service-start name={} pid={} {}", name, pid, how);
    }

    /// The log line a note stands for.
    fn note(&self, note: Note) {
        let n = |i| self.name(i);
        match note {
            Note::OperatorStart(i) => event!("event=service-operator verb=start name={}", n(i)),
            Note::Stop {
                service,
                pid,
                operator: true,
            } => event!(
                "event=service-stop name={} pid={} signal=TERM reason=operator",
                n(service),
                pid
            ),
            Note::Stop {
                service,
                pid,
                operator: false,
            } => event!(
                "event=service-stop name={} pid={} signal=TERM",
                n(service),
                pid
            ),
            Note::StoppedIdle(i) => {
                event!("event=service-stopped name={} reason=operator", n(i))
            }
            Note::Stopped {
                service,
                after_ms,
                operator,
            } => event!(
                "event=service-stopped name={} after_ms={}{}",
                n(service),
                after_ms,
                if operator { " reason=operator" } else { "" }
            ),
            Note::GraceKill {
                service,
                grace_ms: None,
            } => event!(
                "event=service-kill name={} reason=grace-expired",
                n(service)
            ),
            Note::GraceKill {
                service,
                grace_ms: Some(g),
            } => event!(
                "event=service-kill name={} reason=grace-expired grace_ms={}",
                n(service),
                g
            ),
            Note::Abandoned(i) => event!(
                "event=service-abandoned name={} reason=shutdown-timeout",
                n(i)
            ),
            Note::ShutdownBegin { action, orphans } => event!(
                "event=shutdown-begin action={} orphans_reaped={}",
                action_name(action),
                orphans
            ),
            Note::Done { service, status } => {
                event!("event=service-done name={} status={}", n(service), status)
            }
            Note::Backoff {
                service,
                delay_ms,
                failures,
                restarts,
            } => event!(
                "event=service-backoff name={} delay_ms={} failures={} restarts={}",
                n(service),
                delay_ms,
                failures,
                restarts
            ),
            Note::Ready(i) => event!("event=service-ready name={}", n(i)),
            Note::ExitWhileStopping {
                service,
                pid,
                status,
                shutdown,
            } => event!(
                "event=service-exit name={} pid={} status={} during={}",
                n(service),
                pid,
                status,
                if shutdown { "shutdown" } else { "stop" }
            ),
            Note::Exit {
                service,
                pid,
                status,
                ran_ms,
                oom_killed,
            } => event!(
                "event=service-exit name={} pid={} status={} ran_ms={}{}",
                n(service),
                pid,
                status,
                ran_ms,
                if oom_killed { " oom_killed=1" } else { "" }
            ),
            Note::Pod { verb, pod, members } => event!(
                "event=pod-operator verb={:?} name={} members={}",
                verb,
                self.cfg.pods.get(pod).map_or("?", |p| p.name.as_str()),
                members
            ),
        }
    }

    fn signal(&self, i: usize, pid: Option<i32>, sig: Signal) {
        let name = self.name(i);
        match sig {
            Signal::KILL => cgroup::kill_all(name),
            _ => cgroup::signal_all(name, sig),
        }
        if let Some(p) = pid.and_then(Pid::from_raw) {
            let _ = kill_process(p, sig);
        }
    }
}

impl Probe for ServiceHost {
    fn populated(&self, service: usize) -> bool {
        cgroup::populated(self.name(service))
    }

    fn ready_file(&self, service: usize) -> bool {
        match self.cfg.services.get(service).map(|s| &s.ready) {
            Some(Ready::File(path)) => std::path::Path::new(path.as_str()).exists(),
            _ => false,
        }
    }
}

impl Host for ServiceHost {
    fn apply(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Start(i) => return Some(self.start(i)),
            Effect::Term { service, pid } => self.signal(service, Some(pid), Signal::TERM),
            Effect::Kill { service, pid } => self.signal(service, pid, Signal::KILL),
            Effect::Sweep(i) => {
                if self.populated(i) {
                    cgroup::kill_all(self.name(i));
                }
            }
            Effect::RemoveCgroup(i) => cgroup::remove(self.name(i)),
            Effect::ForgetReadyPipe(i) => {
                if let Some(s) = self.svcs.get_mut(i) {
                    s.ready_pipe = None;
                }
            }
            Effect::ExitTail(i) => {
                let console = self.cfg.services.get(i).is_some_and(|s| s.console);
                if let (false, Some(o)) =
                    (console, self.svcs.get(i).and_then(|s| s.output.as_ref()))
                {
                    let mut tail = [0u8; 160];
                    let t = o.last_line(&mut tail);
                    event!(
                        "event=service-exit-tail name={} last_line={:?}",
                        self.name(i),
                        t
                    );
                }
            }
            Effect::Note(note) => self.note(note),
        }
        None
    }
}
