//! Supervised services: start in dependency order once their dependencies
//! are ready, restart with backoff, stop in reverse order at shutdown.
//! [`machine`] decides (a pure state machine), [`host`] acts (pipes,
//! cgroups, containers); [`Supervisor`] is what the event loop sees of
//! the two: it turns the loop's happenings into the machine's events and
//! answers the API's questions about services.

pub mod host;
pub mod machine;
#[cfg(test)]
mod tests;

use crate::bundles::Tools;
use crate::bus::Bus;
use crate::cgroup;
use crate::clock::Millis;
use crate::policy::ExitCode;
use crate::refusal::TargetRefusal;
pub use host::Request;
use host::ServiceHost;
pub use machine::OperateError;
use machine::{drive, Event, Machine, State};
use quilt_config::{BootConfig, PowerAction};
use rustix::fd::OwnedFd;
use std::rc::Rc;

/// All services and the shutdown in progress, if any.
pub struct Supervisor {
    machine: Machine,
    host: ServiceHost,
}

impl Supervisor {
    /// Set up capture pipes and cgroups for every configured service.
    pub fn new(cfg: Box<BootConfig>, tools: Option<&Tools>, bus: Bus) -> Supervisor {
        let cfg: Rc<BootConfig> = Rc::from(cfg);
        Supervisor {
            machine: Machine::new(Rc::clone(&cfg)),
            host: ServiceHost::new(cfg, tools, bus),
        }
    }

    fn drive(&mut self, event: Event, now: Millis) {
        drive(&mut self.machine, &mut self.host, event, now);
    }

    /// Start what can start, restart what is due, poll readiness, advance
    /// stops and shutdown. Called on every wake-up of the event loop.
    pub fn tick(&mut self, now: Millis) {
        self.drive(Event::Tick, now);
    }

    /// A child was reaped. False when it was no service's main process.
    pub fn on_exit(&mut self, pid: i32, code: ExitCode, now: Millis) -> bool {
        let service = self.machine.service_of(pid);
        let oom_killed = service.is_some_and(|i| self.host.on_exit(i));
        self.drive(
            Event::Exited {
                pid,
                code,
                oom_killed,
            },
            now,
        );
        service.is_some()
    }

    /// Begin an orderly shutdown ending in `action`.
    pub fn begin_shutdown(&mut self, action: PowerAction, now: Millis) {
        self.drive(Event::Shutdown(action), now);
    }

    /// The operator's `start`, `stop` or `restart` of service `name`: the
    /// state it is in afterwards, or why not.
    pub fn operate(
        &mut self,
        name: &str,
        verb: quilt_proto::ServiceVerb,
        now: Millis,
    ) -> Result<&'static str, OperateError> {
        let mut effects = Vec::new();
        let answer = self.machine.operate(name, verb, now, &mut effects);
        for e in effects {
            use machine::Host;
            if let Some(back) = self.host.apply(e) {
                self.drive(back, now);
            }
        }
        answer
    }

    /// A readiness pipe is readable: a newline means ready.
    pub fn on_ready_pipe(&mut self, i: usize, now: Millis) {
        let mut buf = [0u8; 64];
        let Some(p) = self.host.svcs.get(i).and_then(|s| s.ready_pipe.as_ref()) else {
            return;
        };
        match rustix::io::read(p, &mut buf) {
            Ok(n) if buf.get(..n).is_some_and(|b| b.contains(&b'\n')) => {
                self.drive(Event::Ready { service: i }, now)
            }
            // EOF without a newline: the service closed it without saying
            // ready; stop watching and leave it not ready.
            Ok(0) | Err(_) => {
                if let Some(s) = self.host.svcs.get_mut(i) {
                    s.ready_pipe = None;
                }
            }
            Ok(_) => {}
        }
    }

    /// Service `i`'s setup report is readable.
    pub fn on_setup_report(&mut self, i: usize, now: Millis) {
        if let Some(event) = self.host.on_setup_report(i) {
            self.drive(event, now);
        }
    }

    /// Output pipe of service `i` is readable.
    pub fn on_output(&mut self, i: usize) {
        self.host.on_output(i);
    }

    /// A new version of `bundle` was installed: its services get it at
    /// their next start.
    pub fn bundle_updated(&mut self, bundle: &str, tools: &Tools) {
        self.host.bundle_updated(bundle, tools);
    }

    /// The board's bus channels (runs take subscriber slots from it too).
    pub fn bus(&self) -> &Bus {
        &self.host.bus
    }

    /// The config in force.
    pub fn config(&self) -> &BootConfig {
        self.machine.config()
    }

    /// fds the loop must watch, queued since the last call.
    pub fn take_watches(&mut self) -> heapless::Vec<Request, 64> {
        core::mem::take(&mut self.host.requests)
    }

    /// Control sockets of services started since the last call.
    pub fn take_adopted(&mut self) -> Vec<(OwnedFd, crate::caller::Spawner)> {
        core::mem::take(&mut self.host.adopt)
    }

    /// Relay listeners of services started since the last call.
    pub fn take_net_adopted(&mut self) -> Vec<crate::net::NetAdopt> {
        core::mem::take(&mut self.host.net_adopt)
    }

    /// Whether the board is on its way down.
    pub fn shutting_down(&self) -> bool {
        self.machine.shutting_down()
    }

    /// The action of a shutdown that has finished stopping every service.
    pub fn finished(&self) -> Option<PowerAction> {
        self.machine.finished()
    }

    /// The earliest time the loop must wake even if nothing happens.
    pub fn deadline(&self, now: Millis) -> Option<Millis> {
        self.machine.deadline(now)
    }

    /// How service `name` ended for good: `Some(true)` done with status 0,
    /// `Some(false)` done with another status, `None` not done yet.
    pub fn outcome(&self, name: &str) -> Option<bool> {
        self.machine.outcome(name)
    }

    /// The main pid of service `name`'s container, if it is a running
    /// bundle service, and the uid and gid its tool runs as (what an exec
    /// into it runs as too: the container's identity, no other; inside its
    /// user namespace if it has one, which the exec joins).
    pub fn container_target(&self, name: &str) -> Result<(i32, u32, u32), TargetRefusal> {
        let i = self
            .config()
            .service_index(name)
            .ok_or_else(|| TargetRefusal::NoService {
                name: name.to_owned(),
            })?;
        let ids = self
            .host
            .svcs
            .get(i)
            .and_then(|s| s.container.as_ref()?.as_ref().ok())
            .map(|c| {
                let (uid, gid, _) = c.plan.identity();
                (uid, gid)
            });
        match (self.machine.state(i), ids) {
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
        self.config().services.iter().enumerate().any(|(i, c)| {
            c.bundle.as_deref() == Some(bundle)
                && !matches!(
                    self.machine.state(i),
                    Some(State::Stopped | State::Done) | None
                )
        })
    }

    /// Service `name`'s index and its output since `pos`: bytes missed,
    /// new bytes, new position.
    pub fn output_since(&self, name: &str, pos: u64) -> Option<(usize, u64, Vec<u8>, u64)> {
        let i = self.config().service_index(name)?;
        let (missed, data, next) = self.host.svcs.get(i)?.output.as_ref()?.since(pos);
        Some((i, missed, data, next))
    }

    /// Per service, the OOM kills in its cgroup so far.
    pub fn oom_kills(&self) -> Vec<(String, u64)> {
        self.config()
            .services
            .iter()
            .map(|c| {
                let n = cgroup::read_key(&c.name, "memory.events", "oom_kill").unwrap_or(0);
                (c.name.as_str().to_owned(), n)
            })
            .collect()
    }

    /// Services as the control API's `List` shows them.
    pub fn info(&self, now: Millis) -> Vec<quilt_proto::ServiceInfo> {
        self.config()
            .services
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (state, pid, uptime_ms) = match self.machine.state(i) {
                    Some(State::Waiting) | None => ("waiting", None, None),
                    Some(State::Running { pid, since, .. }) => {
                        ("running", Some(pid), Some(now.since(since)))
                    }
                    Some(State::Backoff { .. }) => ("backoff", None, None),
                    Some(State::Stopping { pid, .. }) => ("stopping", pid, None),
                    Some(State::Done) => ("done", None, None),
                    Some(State::Stopped) => ("stopped", None, None),
                };
                quilt_proto::ServiceInfo {
                    name: c.name.as_str().into(),
                    state: state.into(),
                    pid,
                    restarts: self.machine.restarts(i),
                    uptime_ms,
                    memory_bytes: cgroup::read_u64(&c.name, "memory.current"),
                    bundle: c.bundle.as_ref().map(|b| b.as_str().into()),
                    cpu_usec: cgroup::cpu_usec(&c.name),
                    pids: cgroup::read_u64(&c.name, "pids.current"),
                }
            })
            .collect()
    }
}
