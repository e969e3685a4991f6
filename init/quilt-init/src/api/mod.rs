//! The control API: what each request does. A request from the control
//! socket is authorised as it arrives ([`authorize`]: one place decides
//! who may do what) into one [`Call`], queued, and handled on the loop
//! turn's [`Api::serve`] against the supervisor, runs, installs and the
//! counted-resource ledger, which the API owns. Every failure is an
//! [`ApiError`], turned into the client's error reply in one place.
//! [`Api::deliver`] sends what became ready since: finished runs, followed
//! output, event lines, grants of resources whose holders went away.
//!
//! It does no socket I/O of its own: the control socket reads, frames and
//! sends (`crate::control`).

pub mod authorize;
pub mod error;

pub use authorize::Denied;
pub use error::ApiError;

use crate::bundles::Tools;
use crate::caller::Parent;
use crate::clock::Millis;
use crate::control::{Control, Incoming};
use crate::event;
use crate::installs::{Installs, Job, Origin};
use crate::ledger::{Grant, Ledger, Outcome};
use crate::runs::Runs;
use crate::supervisor::Supervisor;
use quilt_proto::{Reply, ServiceVerb};
use rustix::fd::OwnedFd;

/// A request its caller may make, as [`authorize::authorize`] let it
/// through.
#[derive(Debug)]
pub enum Call {
    /// Liveness and version.
    Ping,
    /// List services and runs.
    List,
    /// Start a run; its result is sent later (`detached`: its id now,
    /// the result on `Wait`).
    Run {
        bundle: String,
        input: Vec<u8>,
        timeout_ms: u32,
        detached: bool,
        /// The container asking, whose child the run becomes.
        parent: Option<Parent>,
    },
    /// Answer with the result of run `id` when it ends.
    Wait { id: u64 },
    /// Stop run `id`.
    Stop { id: u64 },
    /// Start, stop or restart a service.
    Service { name: String, verb: ServiceVerb },
    /// Send a service's retained output (and keep following it).
    Logs { name: String, follow: bool },
    /// Send every event line from now on.
    Events,
    /// Install the bundle file at `path` (`firmware`: stage it, if it is
    /// the board's firmware).
    Install { path: String, firmware: bool },
    /// Install the bundle whose fd came with the message (if one did).
    InstallFd { fd: Option<OwnedFd>, firmware: bool },
    /// Remove an installed bundle.
    Remove { name: String },
    /// List installed bundles.
    Bundles,
    /// Take units of a counted resource for container `holder`.
    Acquire {
        holder: u64,
        resource: String,
        units: u32,
    },
    /// Give them back.
    Release {
        holder: u64,
        resource: String,
        units: u32,
    },
    /// quilt-init's figures and counters.
    Stats,
    /// List counted resources.
    Resources,
    /// List pods.
    Pods,
    /// The A/B boot state.
    Slots,
    /// Run a process inside a service's container.
    Exec {
        service: String,
        argv: Vec<String>,
        input: Vec<u8>,
        timeout_ms: u32,
        /// The asking container's tokens (`None`: the operator); the
        /// target's bundle may hold no token beyond them.
        holder: Option<Vec<String>>,
    },
}

/// What the handler acts on: the parts of PID 1 the event loop owns.
pub struct Parts<'a> {
    /// Services.
    pub sup: &'a mut Supervisor,
    /// Runs in flight.
    pub runs: &'a mut Runs,
    /// Installed bundles, if the board has a trust store.
    pub tools: Option<&'a Tools>,
    /// Install jobs.
    pub installs: &'a mut Installs,
    /// The root slot booted (A/B boards).
    pub booted: Option<crate::slots::Booted>,
}

/// The API's own state.
pub struct Api {
    /// Counted resources (`llm:<name>` tokens).
    ledger: Ledger,
    /// Requests authorised (or refused) as they came in, in order, with
    /// the client slot that sent each.
    queue: Vec<(usize, Result<Call, ApiError>)>,
}

impl Api {
    /// An API over the counted resources in `ledger`.
    pub fn new(ledger: Ledger) -> Api {
        Api {
            ledger,
            queue: Vec::new(),
        }
    }

    /// A message read from a client: authorise it now (a refusal's event
    /// line is written as it comes in, an event subscription starts at
    /// once), handle it on the next [`Api::serve`].
    pub fn receive(&mut self, ctl: &mut Control, msg: Incoming) {
        let (client, call) = match msg {
            Incoming::Malformed { client, error } => (client, Err(ApiError::Malformed(error))),
            Incoming::NotAdmitted { client } => (client, Err(ApiError::Denied(Denied::NotRoot))),
            Incoming::Request {
                client,
                request,
                fd,
            } => {
                let Some(caller) = ctl.caller(client) else {
                    return;
                };
                match authorize::authorize(caller, request, fd) {
                    Ok(Call::Events) => {
                        ctl.subscribe(client);
                        return;
                    }
                    Ok(call) => (client, Ok(call)),
                    Err(why) => {
                        why.log();
                        (client, Err(ApiError::Denied(why)))
                    }
                }
            }
        };
        self.queue.push((client, call));
    }

    /// Handle the calls received since the last turn, in order.
    pub fn serve(&mut self, ctl: &mut Control, parts: &mut Parts<'_>, now: Millis) {
        // Taken out and put back, so its buffer is reused every turn.
        let mut queue = core::mem::take(&mut self.queue);
        for (client, call) in queue.drain(..) {
            if let Err(e) = call.and_then(|call| self.handle(ctl, parts, client, call, now)) {
                ctl.send(client, &e.reply());
            }
        }
        self.queue = queue;
    }

    /// Send what became ready: finished runs, followed output, event
    /// lines; cancel the runs of clients that hung up, and grant what
    /// containers that went away were holding or waiting for.
    pub fn deliver(&mut self, ctl: &mut Control, parts: &mut Parts<'_>) {
        for done in parts.runs.take_done() {
            ctl.send(done.client, &done.reply);
        }
        for (client, name, pos) in ctl.followers() {
            if let Some((_, missed, data, next)) = parts.sup.output_since(&name, pos) {
                if !data.is_empty() || missed > 0 {
                    ctl.send(client, &Reply::Log { missed, data });
                    ctl.follow(client, &name, next);
                }
            }
        }
        ctl.publish_events();
        for slot in ctl.gone.iter() {
            parts.runs.cancel_client(*slot);
        }
        ctl.gone.clear();
        for run in core::mem::take(&mut ctl.gone_containers) {
            for g in self.ledger.forget(run) {
                deliver_grant(ctl, g);
            }
        }
    }

    /// Act on one call; its replies go to `client` (some come later, when
    /// a run or job ends).
    fn handle(
        &mut self,
        ctl: &mut Control,
        parts: &mut Parts<'_>,
        client: usize,
        call: Call,
        now: Millis,
    ) -> Result<(), ApiError> {
        match call {
            Call::Ping => ctl.send(
                client,
                &Reply::Pong {
                    server: env!("CARGO_PKG_VERSION").into(),
                },
            ),
            // Subscribed as it came in (see `receive`).
            Call::Events => {}
            Call::Stats => {
                let stats = quilt_proto::BoardStats {
                    init_rss_bytes: crate::stats::own_rss_bytes(),
                    init_fds: crate::stats::own_fds(),
                    runs: parts.runs.ended.list(),
                    installs: parts.installs.counts.list(),
                    refusals: parts.installs.counts.refusals(),
                    store: parts.installs.counts.store(),
                    service_oom_kills: parts.sup.oom_kills(),
                    bus: parts.sup.bus().stats(),
                };
                ctl.send(client, &Reply::Stats(stats));
            }
            Call::List => {
                let mut all = parts.sup.info(now);
                all.extend(parts.runs.info(now));
                ctl.send(client, &Reply::Services(all));
            }
            Call::Run {
                bundle,
                input,
                timeout_ms,
                detached,
                parent,
            } => {
                let board = crate::runs::Board {
                    tools: parts.tools,
                    bus: parts.sup.bus(),
                    net: &parts.sup.config().net,
                };
                let parent_id = parent.as_ref().map_or(0, |p| p.run);
                let ask = crate::runs::Ask {
                    bundle,
                    input,
                    timeout_ms,
                    client,
                    detached,
                    parent,
                };
                let id = parts.runs.start(board, &ask, now).map_err(ApiError::Run)?;
                event!(
                    "event=run-start id={} bundle={} input_bytes={} parent={}",
                    id,
                    ask.bundle,
                    ask.input.len(),
                    parent_id
                );
                if detached {
                    ctl.send(client, &Reply::Spawned { id });
                }
            }
            Call::Wait { id } => {
                if let Some(reply) = parts.runs.wait(client, id).map_err(ApiError::Run)? {
                    ctl.send(client, &reply);
                }
            }
            Call::Stop { id } => {
                let reply = parts.runs.stop(client, id).map_err(ApiError::Run)?;
                ctl.send(client, &reply);
            }
            Call::Service { name, verb } => {
                let state = parts
                    .sup
                    .operate(&name, verb, now)
                    .map_err(ApiError::Operate)?;
                ctl.send(
                    client,
                    &Reply::ServiceState {
                        name,
                        state: state.into(),
                    },
                );
            }
            Call::Logs { name, follow } => {
                let Some((_, missed, data, pos)) = parts.sup.output_since(&name, 0) else {
                    return Err(ApiError::NoLog { name });
                };
                ctl.send(client, &Reply::Log { missed, data });
                if follow {
                    ctl.follow(client, &name, pos);
                }
            }
            Call::Acquire {
                holder,
                resource,
                units,
            } => self.acquire(ctl, client, holder, resource, units)?,
            Call::Release {
                holder,
                resource,
                units,
            } => {
                let grants = self
                    .ledger
                    .release(holder, &resource, units)
                    .map_err(ApiError::Release)?;
                ctl.send(client, &Reply::Released { resource, units });
                for g in grants {
                    deliver_grant(ctl, g);
                }
            }
            Call::Exec {
                service,
                argv,
                input,
                timeout_ms,
                holder,
            } => {
                // A container's exec holds no token beyond its caller's.
                let target = parts
                    .sup
                    .config()
                    .services
                    .iter()
                    .find(|s| s.name.as_str() == service)
                    .and_then(|s| s.bundle.as_ref())
                    .and_then(|b| parts.tools?.get(b));
                if let Some(tool) = target {
                    authorize::exec_within(&service, holder.as_deref(), &tool.header.tokens)
                        .map_err(|why| {
                            why.log();
                            ApiError::Denied(why)
                        })?;
                }
                let target = parts
                    .sup
                    .container_target(&service)
                    .map_err(ApiError::ExecTarget)?;
                parts
                    .runs
                    .start_exec(&service, target, &argv, &input, timeout_ms, client, now)
                    .map_err(ApiError::Exec)?;
            }
            Call::Pods => {
                let pods = parts
                    .sup
                    .config()
                    .pods
                    .iter()
                    .map(|p| {
                        (
                            p.name.to_string(),
                            p.services.iter().map(|s| s.to_string()).collect(),
                            p.volumes.iter().map(|v| v.to_string()).collect(),
                        )
                    })
                    .collect();
                ctl.send(client, &Reply::Pods(pods));
            }
            Call::Slots => {
                let cfg = parts.sup.config().slots.as_ref().ok_or(ApiError::NoSlots)?;
                let reply = crate::slots::info(cfg, parts.booted).map_err(ApiError::SlotState)?;
                ctl.send(client, &reply);
            }
            Call::Resources => {
                let list = self
                    .ledger
                    .status()
                    .into_iter()
                    .map(
                        |(name, capacity, used, waiting)| quilt_proto::ResourceInfo {
                            name,
                            capacity,
                            used,
                            waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
                        },
                    )
                    .collect();
                ctl.send(client, &Reply::Resources(list));
            }
            Call::Bundles => {
                let tools = parts.tools.ok_or(ApiError::NoTrustStore)?;
                ctl.send(client, &tools.describe());
            }
            // Installs and removals answer when their job ends.
            Call::Install { path, firmware } => {
                parts.tools.ok_or(ApiError::NoTrustStore)?;
                if !path.starts_with('/') {
                    return Err(ApiError::RelativePath);
                }
                enqueue(parts, Job::File(path), client, firmware)?;
            }
            Call::InstallFd { fd, firmware } => {
                parts.tools.ok_or(ApiError::NoTrustStore)?;
                let fd = fd.ok_or(ApiError::NoFd)?;
                enqueue(parts, Job::Fd(fd), client, firmware)?;
            }
            Call::Remove { name } => {
                parts.tools.ok_or(ApiError::NoTrustStore)?;
                if parts.sup.uses_bundle(&name) || parts.runs.uses_bundle(&name) {
                    return Err(ApiError::BundleInUse { name });
                }
                enqueue(parts, Job::Remove(name), client, false)?;
            }
        }
        Ok(())
    }

    /// `Acquire`: granted now, queued (granted on a later release), or
    /// refused.
    fn acquire(
        &mut self,
        ctl: &mut Control,
        client: usize,
        holder: u64,
        resource: String,
        units: u32,
    ) -> Result<(), ApiError> {
        match self.ledger.acquire(holder, &resource, units, client) {
            Outcome::Granted => {
                event!(
                    "event=resource-acquired run={} resource={} units={}",
                    holder,
                    resource,
                    units
                );
                ctl.send(client, &Reply::Acquired { resource, units });
                Ok(())
            }
            Outcome::Queued => {
                event!(
                    "event=resource-wait run={} resource={} units={}",
                    holder,
                    resource,
                    units
                );
                Ok(())
            }
            Outcome::Deadlock(cycle) => {
                let path: Vec<String> = cycle.iter().map(|h| h.to_string()).collect();
                event!(
                    "event=deadlock-refused run={} resource={} cycle={}",
                    holder,
                    resource,
                    path.join(">")
                );
                Err(ApiError::Deadlock {
                    holder,
                    resource,
                    cycle,
                })
            }
            Outcome::Refused(why) => Err(ApiError::Acquire(why)),
        }
    }
}

/// Queue an operator's install job; it answers `client` when it ends
/// (`firmware`: firmware it installs may be staged).
fn enqueue(parts: &mut Parts<'_>, job: Job, client: usize, firmware: bool) -> Result<(), ApiError> {
    parts
        .installs
        .enqueue(job, Origin::Client { client, firmware })
        .map_err(ApiError::InstallQueue)
}

/// A queued `Acquire` was granted: answer the container that asked.
fn deliver_grant(ctl: &mut Control, g: Grant) {
    event!(
        "event=resource-acquired run={} resource={} units={} waited=1",
        g.holder,
        g.resource,
        g.units
    );
    ctl.send(
        g.client,
        &Reply::Acquired {
            resource: g.resource,
            units: g.units,
        },
    );
}
