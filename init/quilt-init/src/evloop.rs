//! The one event loop: epoll over the signalfd, one timerfd armed for the
//! nearest deadline, and the services' pipes. Nothing in PID 1 blocks
//! anywhere else once boot is done.

use crate::bundles::Tools;
use crate::clock::Millis;
use crate::control::{self, Action, Control};
use crate::event;
use crate::installs::{self, Installs, Job, Origin};
use crate::ledger::{Ledger, Outcome};
use crate::policy::ExitCode;
use crate::runs::Runs;
use crate::signals;
use crate::supervisor::{self, Request, Supervisor};
use crate::tokens::{self, Source};
use crate::usb::Usb;
use crate::watchdog::Watchdog;
use core::mem::MaybeUninit;
use quilt_config::PowerAction;
use quilt_proto::installer::Report;
use quilt_proto::Reply;
use rustix::event::epoll;
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::process::WaitOptions;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

/// Everything the loop owns.
pub struct Loop {
    epoll: OwnedFd,
    sigfd: OwnedFd,
    timer: OwnedFd,
    sup: Supervisor,
    watchdog: Option<Watchdog>,
    /// Test hook: wedge the loop at this time (see `quilt.debug.hang_after`).
    hang_at: Option<Millis>,
    control: Option<Control>,
    runs: Runs,
    tools: Option<Tools>,
    actions: Vec<Action>,
    /// Counted resources (`llm:<name>` tokens).
    ledger: Ledger,
    /// Install jobs and the serial receiver, out of PID 1.
    installs: Installs,
    /// TCP relays for `net:` tokens.
    relay: crate::net::Relay,
    /// The root slot booted (A/B boards).
    booted: Option<crate::slots::Booted>,
    /// This boot is a slot's trial: commit or fail it.
    trial: Option<crate::slots::Trial>,
    /// Installs from USB sticks, when the config enables them.
    usb: Option<Usb>,
    /// Services wait: stranded firmware is being staged, and the board
    /// reboots into it once it is.
    hold_services: bool,
}

impl Loop {
    /// Build the loop; failures here are fatal to boot, reported by caller.
    pub fn new(
        sup: Supervisor,
        watchdog: Option<Watchdog>,
        hang_after_s: Option<u32>,
        tools: Option<Tools>,
        mut installs: Installs,
        hold_services: bool,
    ) -> std::io::Result<Loop> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let sigfd = signals::open()?;
        let timer = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &sigfd,
            epoll::EventData::new_u64(tokens::SIGNAL),
            epoll::EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &timer,
            epoll::EventData::new_u64(tokens::TIMER),
            epoll::EventFlags::IN,
        )?;
        let hang_at = hang_after_s.map(|s| Millis::now().after(u64::from(s) * 1000));
        let control = match Control::open() {
            Ok(c) => {
                epoll::add(
                    &epoll,
                    c.listener(),
                    epoll::EventData::new_u64(tokens::CONTROL_LISTEN),
                    epoll::EventFlags::IN,
                )?;
                event!("event=control-listening path={}", control::PATH);
                Some(c)
            }
            Err(e) => {
                event!(
                    "event=control-unavailable path={} error={}",
                    control::PATH,
                    e
                );
                None
            }
        };
        let ledger = Ledger::new(
            sup.config()
                .resources
                .iter()
                .map(|r| (r.name.as_str(), r.capacity)),
        );
        // A board that cannot watch for sticks still boots.
        let usb = sup
            .config()
            .usb
            .as_ref()
            .filter(|u| u.enabled)
            .and_then(|cfg| {
                let opened = Usb::open(cfg).and_then(|u| {
                    epoll::add(
                        &epoll,
                        u.fd(),
                        epoll::EventData::new_u64(tokens::USB),
                        epoll::EventFlags::IN,
                    )?;
                    Ok(u)
                });
                opened
                    .map_err(|e| event!("event=usb-unavailable error=\"{}\"", e))
                    .ok()
            });
        let booted = crate::slots::booted();
        if tools.is_none() {
            // No trust store: nothing to receive over serial either.
            installs.disable_serial();
        }
        let trial = sup
            .config()
            .slots
            .as_ref()
            .and_then(|c| crate::slots::Trial::begin(c, booted, Millis::now()));
        Ok(Loop {
            epoll,
            sigfd,
            timer,
            sup,
            watchdog,
            hang_at,
            control,
            runs: Runs::new(),
            tools,
            actions: Vec::new(),
            ledger,
            installs,
            relay: crate::net::Relay::default(),
            booted,
            trial,
            usb,
            hold_services,
        })
    }

    /// Run forever. Returns only the action of a finished shutdown.
    pub fn run(mut self) -> PowerAction {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 32];
        loop {
            let now = Millis::now();
            if !self.hold_services || self.sup.shutting_down() {
                self.sup.tick(now);
            }
            self.runs.tick(now);
            self.judge_trial(now);
            self.installs.tick(now);
            let board = crate::runs::Board {
                tools: self.tools.as_ref(),
                bus: self.sup.bus(),
                net: &self.sup.config().net,
            };
            self.runs
                .replenish(board, &self.sup.config().bundles.warm, now);
            self.serve(now);
            for done in self.installs.take_done() {
                self.install_done(done, now);
            }
            self.apply_requests();
            for (pid, to, fds) in self
                .sup
                .net_adopt
                .drain(..)
                .chain(self.runs.net_adopt.drain(..))
            {
                self.relay.adopt(&self.epoll, pid, &to, fds);
            }
            if let Some(w) = self.watchdog.as_mut() {
                w.tick(now);
            }
            if let Some(action) = self.sup.finished() {
                self.runs.kill_all();
                self.installs.kill_all();
                if let Some(w) = self.watchdog.as_mut() {
                    w.feeder.stop();
                }
                return action;
            }
            if self.hang_at.is_some_and(|h| now >= h) {
                event!("event=debug-hang reason=quilt.debug.hang_after");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            self.arm_timer(now);
            let ready = match epoll::wait(&self.epoll, &mut events, None) {
                Ok((ready, _)) => ready,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    event!("event=epoll-failed error={}", e);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };
            for ev in ready.iter() {
                self.dispatch(ev.data.u64(), ev.flags);
            }
        }
    }

    fn dispatch(&mut self, token: u64, flags: epoll::EventFlags) {
        match tokens::source(token) {
            Source::Signal => {
                while let Some(sig) = signals::next(&self.sigfd) {
                    self.on_signal(sig);
                }
            }
            Source::Timer => {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&self.timer, &mut b);
            }
            Source::ServiceOutput(i) => self.sup.on_output(i),
            Source::ServiceReady(i) => self.sup.on_ready_pipe(i),
            Source::ControlListen => {
                if let Some(c) = self.control.as_mut() {
                    c.on_listen();
                }
            }
            Source::ControlClient(k) => {
                if let Some(c) = self.control.as_mut() {
                    c.on_client(k, &mut self.actions);
                }
            }
            Source::Run(t) => self.runs.on_pipe(t),
            Source::Relay(t) => self.relay.on_event(&self.epoll, t, flags),
            Source::Installer(t) => self.installs.on_readable(t),
            Source::Usb => {
                let Some(u) = self.usb.as_mut() else {
                    return;
                };
                for dev in u.on_readable() {
                    if self.tools.is_none() {
                        event!(
                            "event=usb-skipped dev={} reason=\"this board has no trust store (/etc/quilt/trust), so no bundles\"",
                            dev.name
                        );
                        continue;
                    }
                    let job = Job::Usb(dev.name.to_string(), dev.disk);
                    if let Err(e) = self.installs.enqueue(job, Origin::Board) {
                        event!("event=usb-skipped dev={} reason=\"{}\"", dev.name, e);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_signal(&mut self, sig: i32) {
        let now = Millis::now();
        let action = match sig {
            libc::SIGCHLD => {
                self.reap(now);
                return;
            }
            libc::SIGTERM => PowerAction::Reboot,
            libc::SIGUSR1 => PowerAction::Halt,
            libc::SIGUSR2 | libc::SIGPWR => PowerAction::Poweroff,
            libc::SIGINT => self.sup.config().ctrl_alt_del,
            _ => {
                event!("event=signal-ignored signal={}", sig);
                return;
            }
        };
        event!(
            "event=signal signal={} action={}",
            sig,
            supervisor::action_name(action)
        );
        if action != PowerAction::Ignore {
            self.sup.begin_shutdown(action, now);
        }
    }

    /// Reap every exited child: services and re-parented orphans alike.
    fn reap(&mut self, now: Millis) {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let code = ExitCode::from_wait(status);
                    if self.installs.on_exit(pid.as_raw_nonzero().get(), code, now) {
                        continue;
                    }
                    self.relay.release(pid.as_raw_nonzero().get());
                    if self
                        .runs
                        .on_exit(pid.as_raw_nonzero().get(), code, self.sup.bus())
                    {
                        continue;
                    }
                    if let Some(action) = self.sup.on_exit(pid.as_raw_nonzero().get(), code, now) {
                        self.sup.begin_shutdown(action, now);
                    }
                }
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => {}
                // ECHILD: nothing left.
                Err(_) => break,
            }
        }
    }

    /// Act on decoded control requests and deliver finished runs.
    fn serve(&mut self, now: Millis) {
        let Some(ctl) = self.control.as_mut() else {
            return;
        };
        for action in self.actions.drain(..) {
            match action {
                Action::Reply(slot, reply) => ctl.send(slot, &reply),
                Action::List(slot) => {
                    let mut all = self.sup.info(now);
                    all.extend(self.runs.info(now));
                    ctl.send(slot, &Reply::Services(all));
                }
                Action::Run {
                    client,
                    bundle,
                    input,
                    timeout_ms,
                    detached,
                    parent,
                } => {
                    let board = crate::runs::Board {
                        tools: self.tools.as_ref(),
                        bus: self.sup.bus(),
                        net: &self.sup.config().net,
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
                    match self.runs.start(board, &ask, now) {
                        Ok(id) => {
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
                        Err(e) => ctl.send(client, &control::refuse(e.code, &e.message)),
                    }
                }
                Action::Wait { client, id } => match self.runs.wait(client, id) {
                    Ok(Some(reply)) => ctl.send(client, &reply),
                    Ok(None) => {}
                    Err(e) => ctl.send(client, &control::refuse(e.code, &e.message)),
                },
                Action::Stop { client, id } => match self.runs.stop(client, id) {
                    Ok(reply) => ctl.send(client, &reply),
                    Err(e) => ctl.send(client, &control::refuse(e.code, &e.message)),
                },
                Action::Service { client, name, verb } => {
                    match self.sup.operate(&name, verb, now) {
                        Ok(state) => ctl.send(
                            client,
                            &Reply::ServiceState {
                                name,
                                state: state.into(),
                            },
                        ),
                        Err(why) => ctl.send(
                            client,
                            &control::refuse(quilt_proto::ErrorCode::NotFound, &why.to_string()),
                        ),
                    }
                }
                Action::Acquire {
                    client,
                    holder,
                    resource,
                    units,
                } => match self.ledger.acquire(holder, &resource, units, client) {
                    Outcome::Granted => {
                        event!(
                            "event=resource-acquired run={} resource={} units={}",
                            holder,
                            resource,
                            units
                        );
                        ctl.send(client, &Reply::Acquired { resource, units });
                    }
                    Outcome::Queued => event!(
                        "event=resource-wait run={} resource={} units={}",
                        holder,
                        resource,
                        units
                    ),
                    Outcome::Deadlock(cycle) => {
                        let path: Vec<String> = cycle.iter().map(|h| h.to_string()).collect();
                        event!(
                            "event=deadlock-refused run={} resource={} cycle={}",
                            holder,
                            resource,
                            path.join(">")
                        );
                        ctl.send(
                            client,
                            &control::refuse(
                                quilt_proto::ErrorCode::Deadlock,
                                &format!(
                                    "waiting for {resource} would deadlock: run {holder} waits for run {}, which waits (through runs {}) for run {holder}; release what you hold and retry",
                                    cycle.first().copied().unwrap_or(0),
                                    path.join(" > ")
                                ),
                            ),
                        );
                    }
                    Outcome::Refused(why) => ctl.send(
                        client,
                        &control::refuse(quilt_proto::ErrorCode::Denied, &why.to_string()),
                    ),
                },
                Action::Release {
                    client,
                    holder,
                    resource,
                    units,
                } => match self.ledger.release(holder, &resource, units) {
                    Ok(grants) => {
                        ctl.send(client, &Reply::Released { resource, units });
                        for g in grants {
                            deliver_grant(ctl, g);
                        }
                    }
                    Err(why) => ctl.send(
                        client,
                        &control::refuse(quilt_proto::ErrorCode::NotFound, &why.to_string()),
                    ),
                },
                Action::Exec {
                    client,
                    service,
                    argv,
                    input,
                    timeout_ms,
                    holder,
                } => {
                    let beyond = holder.as_deref().and_then(|h| {
                        let bundle = self
                            .sup
                            .config()
                            .services
                            .iter()
                            .find(|s| s.name.as_str() == service)?
                            .bundle
                            .as_ref()?;
                        let tool = self.tools.as_ref()?.get(bundle)?;
                        crate::supervisor::uncovered_token(h, &tool.header.tokens)
                            .map(str::to_owned)
                    });
                    if let Some(token) = beyond {
                        event!(
                            "event=exec-refused target={} reason=exceeds-caller token={}",
                            service,
                            token
                        );
                        ctl.send(
                            client,
                            &control::refuse(
                                quilt_proto::ErrorCode::Denied,
                                &format!("service {service:?} runs with `{token}`, which the asking container does not hold: an exec never holds more than its caller"),
                            ),
                        );
                        continue;
                    }
                    let started = match self.sup.container_target(&service) {
                        Ok(target) => self
                            .runs
                            .start_exec(&service, target, &argv, &input, timeout_ms, client, now)
                            .map_err(|e| e.message),
                        Err(why) => Err(why.to_string()),
                    };
                    if let Err(why) = started {
                        ctl.send(
                            client,
                            &control::refuse(quilt_proto::ErrorCode::Failed, &why),
                        );
                    }
                }
                Action::Pods(client) => {
                    let pods = self
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
                Action::Slots(client) => {
                    let reply = match self.sup.config().slots.as_ref() {
                        Some(cfg) => crate::slots::info(cfg, self.booted).unwrap_or_else(|why| {
                            control::refuse(quilt_proto::ErrorCode::Failed, &why.to_string())
                        }),
                        None => control::refuse(
                            quilt_proto::ErrorCode::NotFound,
                            "this board has no A/B slots (its boot config has no [slots])",
                        ),
                    };
                    ctl.send(client, &reply);
                }
                Action::Resources(client) => {
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
                Action::Bundles {
                    client,
                    request,
                    fd,
                } => {
                    // Installs and removals answer when their job ends.
                    if let Some(reply) = bundles(
                        self.tools.as_ref(),
                        &self.runs,
                        &self.sup,
                        &mut self.installs,
                        client,
                        request,
                        fd,
                    ) {
                        ctl.send(client, &reply);
                    }
                }
                Action::Logs {
                    client,
                    name,
                    follow,
                } => match self.sup.output_since(&name, 0) {
                    Some((_, missed, data, pos)) => {
                        ctl.send(client, &Reply::Log { missed, data });
                        if follow {
                            ctl.follow(client, &name, pos);
                        }
                    }
                    None => ctl.send(
                        client,
                        &control::refuse(
                            quilt_proto::ErrorCode::NotFound,
                            &format!(
                                "no service named {name:?} with output; `quilt ps` lists them"
                            ),
                        ),
                    ),
                },
            }
        }
        let from_services: Vec<_> = self.sup.adopt.drain(..).collect();
        for (fd, spawner) in self.runs.adopt.drain(..).chain(from_services) {
            let run = spawner.run;
            if !ctl.adopt(fd, spawner) {
                event!("event=control-refused reason=too-many-clients run={}", run);
            }
        }
        for done in self.runs.take_done() {
            ctl.send(done.client, &done.reply);
        }
        for (client, name, pos) in ctl.followers() {
            if let Some((_, missed, data, next)) = self.sup.output_since(&name, pos) {
                if !data.is_empty() || missed > 0 {
                    ctl.send(client, &Reply::Log { missed, data });
                    ctl.follow(client, &name, next);
                }
            }
        }
        ctl.publish_events();
        for slot in ctl.gone.iter() {
            self.runs.cancel_client(*slot);
        }
        ctl.gone.clear();
        for run in core::mem::take(&mut ctl.gone_containers) {
            for g in self.ledger.forget(run) {
                deliver_grant(ctl, g);
            }
        }
    }

    fn apply_requests(&mut self) {
        let extra = self
            .control
            .as_mut()
            .map(|c| core::mem::take(&mut c.watch))
            .unwrap_or_default();
        let from_installs = core::mem::take(&mut self.installs.watch);
        for (fd, token) in extra
            .iter()
            .chain(self.runs.watch.iter())
            .chain(from_installs.iter())
        {
            // SAFETY: as below; control, runs and installs queue fds they own
            // and keep open until at least the end of this loop turn.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            if let Err(e) = epoll::add(
                &self.epoll,
                fd,
                epoll::EventData::new_u64(*token),
                epoll::EventFlags::IN,
            ) {
                event!("event=epoll-add-failed token={} error={}", token, e);
            }
        }
        self.runs.watch.clear();
        for r in self.sup.requests.iter() {
            match *r {
                Request::Watch(fd, token) => {
                    // SAFETY: the supervisor queued this while owning the fd, and
                    // requests are applied in the same loop turn, before any
                    // other supervisor call could close it.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    if let Err(e) = epoll::add(
                        &self.epoll,
                        fd,
                        epoll::EventData::new_u64(token),
                        epoll::EventFlags::IN,
                    ) {
                        event!("event=epoll-add-failed token={} error={}", token, e);
                    }
                }
            }
        }
        self.sup.requests.clear();
    }

    /// An install job (or the serial receiver) finished: run what it
    /// installed from now on, stage firmware, answer the client.
    fn install_done(&mut self, done: installs::Done, now: Millis) {
        let changed = done.reports.iter().any(|r| {
            matches!(
                r,
                Report::Installed {
                    already_installed: false,
                    ..
                } | Report::Removed { .. }
            )
        });
        // The catalog first: staging decides from the new headers.
        if changed {
            if let Some(tools) = self.tools.as_mut() {
                tools.reload();
                for r in &done.reports {
                    match r {
                        Report::Installed {
                            name,
                            already_installed: false,
                            ..
                        } => {
                            self.runs.forget_plan(name);
                            self.sup.bundle_updated(name, tools);
                        }
                        Report::Removed { name } => self.runs.forget_plan(name),
                        _ => {}
                    }
                }
            }
        }
        for r in &done.reports {
            match r {
                Report::Installed {
                    name,
                    already_installed,
                    ..
                } => {
                    // Firmware offered again by an operator (already in
                    // the store) may still need staging: the slots decide
                    // by version. From a stick or the link, only new.
                    let operator = matches!(done.origin, Origin::Client(_));
                    if !already_installed || operator {
                        self.stage(name);
                    }
                }
                Report::Pending { name } => self.stage(name),
                Report::Staged {
                    name,
                    version,
                    reboot,
                } => {
                    if *reboot {
                        event!("event=update-reboot name={} version={}", name, version);
                        self.sup.begin_shutdown(PowerAction::Reboot, now);
                    }
                }
                Report::Removed { .. } | Report::Refused { .. } => {}
            }
        }
        if done.origin == Origin::Resume && self.hold_services {
            // Staged (and rebooting), or refused: either way, go on.
            self.hold_services = false;
            if let Some(f) = &done.failure {
                event!("event=update-resume-failed reason=\"{}\"", f);
            }
        }
        if let (Origin::Client(client), Some(ctl)) = (done.origin, self.control.as_mut()) {
            ctl.send(client, &done.reply());
        }
    }

    /// Firmware `name` is in the store: have the installer write it to the
    /// other slot (only what the board names as firmware, and never while
    /// the slot is on trial: the installer checks both again).
    fn stage(&mut self, name: &str) {
        let Some(tools) = self.tools.as_ref() else {
            return;
        };
        let is_root_image = tools
            .header(name)
            .is_some_and(|h| h.runtime == crate::bundles::FIRMWARE);
        if self.sup.config().slots.is_none() || !tools.is_firmware(name) || !is_root_image {
            return;
        }
        if let Err(e) = self
            .installs
            .enqueue(Job::Stage(name.to_owned()), Origin::Board)
        {
            event!("event=update-refused name={} reason=\"{}\"", name, e);
        }
    }

    /// A trial boot: commit the slot once healthy, or reboot into the
    /// previous one.
    fn judge_trial(&mut self, now: Millis) {
        let verdict = match (self.trial.as_ref(), self.sup.config().slots.as_ref()) {
            (Some(t), Some(cfg)) => t.judge(cfg, |h| self.sup.outcome(h), now),
            _ => return,
        };
        match verdict {
            crate::slots::Verdict::Pending => {}
            crate::slots::Verdict::Committed => {
                self.trial = None;
                if let Some(b) = self.booted.as_mut() {
                    b.trial = false;
                }
            }
            crate::slots::Verdict::Failed => {
                self.trial = None;
                self.sup.begin_shutdown(PowerAction::Reboot, now);
            }
        }
    }

    fn arm_timer(&self, now: Millis) {
        let next = [
            self.sup.deadline(now),
            self.runs.deadline(),
            self.installs.deadline(),
            self.trial.as_ref().map(|t| t.deadline()),
            self.watchdog.as_ref().and_then(|w| w.feeder.deadline()),
            self.hang_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An absolute deadline of exactly 0 would disarm the timer: use 1 ns.
        let value = next.map_or(zero, |d| {
            let t = d.max(Millis(0)).to_timespec();
            if t.tv_sec == 0 && t.tv_nsec == 0 {
                Timespec {
                    tv_sec: 0,
                    tv_nsec: 1,
                }
            } else {
                t
            }
        });
        let spec = Itimerspec {
            it_interval: zero,
            it_value: value,
        };
        if let Err(e) =
            rustix::time::timerfd_settime(&self.timer, TimerfdTimerFlags::ABSTIME, &spec)
        {
            event!("event=timer-failed error={}", e);
        }
    }
}

/// `Install`, `Remove` and `Bundles` from the operator: the reply now,
/// or `None` when a job will answer.
fn bundles(
    tools: Option<&Tools>,
    runs: &crate::runs::Runs,
    sup: &crate::supervisor::Supervisor,
    installs: &mut Installs,
    client: usize,
    request: quilt_proto::Request,
    fd: Option<OwnedFd>,
) -> Option<Reply> {
    use quilt_proto::{ErrorCode, Request};
    let Some(tools) = tools else {
        return Some(control::refuse(
            ErrorCode::NotFound,
            "this board has no trust store (/etc/quilt/trust), so no bundles",
        ));
    };
    let job = match (request, fd) {
        (Request::Bundles, _) => return Some(tools.describe()),
        (Request::Install { path }, _) if path.starts_with('/') => Job::File(path),
        (Request::Install { .. }, _) => {
            return Some(control::refuse(
                ErrorCode::Failed,
                "give the bundle's absolute path on the board",
            ))
        }
        (Request::InstallFd, Some(fd)) => Job::Fd(fd),
        (Request::InstallFd, None) => return Some(control::refuse(
            ErrorCode::Failed,
            "InstallFd came without an fd: pass the bundle's open fd with the message (SCM_RIGHTS)",
        )),
        (Request::Remove { name }, _) => {
            if sup.uses_bundle(&name) || runs.uses_bundle(&name) {
                return Some(control::refuse(
                    ErrorCode::Busy,
                    &format!("bundle {name:?} is in use (a service or a run); stop it first"),
                ));
            }
            Job::Remove(name)
        }
        _ => {
            return Some(control::refuse(
                ErrorCode::Malformed,
                "not a bundle request",
            ))
        }
    };
    installs
        .enqueue(job, Origin::Client(client))
        .err()
        .map(|e| control::refuse(ErrorCode::Busy, &e.to_string()))
}

/// A queued `Acquire` was granted: answer the container that asked.
fn deliver_grant(ctl: &mut Control, g: crate::ledger::Grant) {
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
