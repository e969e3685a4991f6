//! The one event loop: epoll over the signalfd, one timerfd armed for the
//! nearest deadline, and the services' pipes. Nothing in PID 1 blocks
//! anywhere else once boot is done. Each turn it ticks the supervisor,
//! runs and installs, hands control requests to the API (`crate::api`)
//! and its per-turn deliveries, reaps, applies fd watches and acts on
//! finished install jobs.

use crate::api::{Api, Parts};
use crate::bundles::Tools;
use crate::clock::Millis;
use crate::control::{self, Control};
use crate::event;
use crate::installs::{self, Installs, Job, Origin};
use crate::ledger::Ledger;
use crate::policy::ExitCode;
use crate::runs::Runs;
use crate::signals;
use crate::supervisor::{Request, Supervisor};
use crate::tokens::{self, Source};
use crate::usb::Usb;
use crate::watchdog::Watchdog;
use core::mem::MaybeUninit;
use quilt_config::PowerAction;
use quilt_proto::installer::Report;
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
    /// The control API (it owns the counted resources' ledger).
    api: Api,
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
            Ok(mut c) => {
                epoll::add(
                    &epoll,
                    c.listener(),
                    epoll::EventData::new_u64(tokens::CONTROL_LISTEN),
                    epoll::EventFlags::IN,
                )?;
                event!("event=control-listening path={}", control::PATH);
                open_granted(&mut c, sup.config());
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
            api: Api::new(ledger),
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
                .take_net_adopted()
                .into_iter()
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
            Source::ServiceReady(i) => self.sup.on_ready_pipe(i, Millis::now()),
            Source::ServiceSetup(i) => self.sup.on_setup_report(i, Millis::now()),
            Source::ControlListen => {
                if let Some(c) = self.control.as_mut() {
                    c.on_listen(None);
                }
            }
            Source::ControlGranted(i) => {
                if let Some(c) = self.control.as_mut() {
                    c.on_listen(Some(i));
                }
            }
            Source::ControlClient(k) => {
                if let Some(c) = self.control.as_mut() {
                    for _ in 0..control::BATCH {
                        let Some(msg) = c.read(k) else { break };
                        self.api.receive(c, msg);
                    }
                }
            }
            Source::Run(t) => self.runs.on_pipe(t),
            Source::RunSetup(slot) => self.runs.on_setup(slot),
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
            crate::power::action_name(action)
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
                    self.sup.on_exit(pid.as_raw_nonzero().get(), code, now);
                }
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => {}
                // ECHILD: nothing left.
                Err(_) => break,
            }
        }
    }

    /// Have the API handle this turn's control requests, give the
    /// control socket the containers started meanwhile, and deliver what
    /// became ready.
    fn serve(&mut self, now: Millis) {
        let Some(ctl) = self.control.as_mut() else {
            return;
        };
        let mut parts = Parts {
            sup: &mut self.sup,
            runs: &mut self.runs,
            tools: self.tools.as_ref(),
            installs: &mut self.installs,
            booted: self.booted,
        };
        self.api.serve(ctl, &mut parts, now);
        let from_services = parts.sup.take_adopted();
        for (fd, spawner) in parts.runs.adopt.drain(..).chain(from_services) {
            let run = spawner.run;
            if !ctl.adopt(fd, spawner) {
                event!("event=control-refused reason=too-many-clients run={}", run);
            }
        }
        self.api.deliver(ctl, &mut parts);
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
        for r in self.sup.take_watches().iter() {
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
    }

    /// An install job (or the serial receiver) finished: run what it
    /// installed from now on, stage firmware, answer the client.
    fn install_done(&mut self, done: installs::Done, now: Millis) {
        for r in &done.reports {
            self.installs.counts.add(r);
        }
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
                    let operator = matches!(done.origin, Origin::Client { .. });
                    if !already_installed || operator {
                        self.stage(name, done.origin);
                    }
                }
                Report::Pending { name } => self.stage(name, done.origin),
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
                Report::Removed { .. } | Report::Refused { .. } | Report::Store(_) => {}
            }
        }
        if done.origin == Origin::Resume && self.hold_services {
            // Staged (and rebooting), or refused: either way, go on.
            self.hold_services = false;
            if let Some(f) = &done.failure {
                event!("event=update-resume-failed reason=\"{}\"", f);
            }
        }
        if let (Origin::Client { client, .. }, Some(ctl)) = (done.origin, self.control.as_mut()) {
            ctl.send(client, &done.reply());
        }
    }

    /// Firmware `name` is in the store: have the installer write it to the
    /// other slot (only what the board names as firmware, and never while
    /// the slot is on trial: the installer checks both again).
    fn stage(&mut self, name: &str, origin: Origin) {
        let Some(tools) = self.tools.as_ref() else {
            return;
        };
        let is_root_image = tools
            .header(name)
            .is_some_and(|h| h.runtime == crate::bundles::FIRMWARE);
        if self.sup.config().slots.is_none() || !tools.is_firmware(name) || !is_root_image {
            return;
        }
        if let Origin::Client {
            firmware: false, ..
        } = origin
        {
            event!(
                "event=update-refused name={} reason=\"installed, but not staged: the control grant it came through has no `firmware` verb; an operator (root) can install it again to stage it\"",
                name
            );
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

/// Services whose boot config grants them verbs get a control socket of
/// their own; one that cannot be made is logged, and the service starts
/// without it.
fn open_granted(ctl: &mut Control, cfg: &quilt_config::BootConfig) {
    for (i, s) in cfg.services.iter().enumerate() {
        if s.control.is_empty() {
            continue;
        }
        let verbs: Vec<&str> = s.control.iter().map(|v| v.name()).collect();
        match ctl.open_granted(i, s) {
            Ok(path) => event!(
                "event=control-granted name={} path={} uid={} verbs={}",
                s.name,
                path.display(),
                s.uid,
                verbs.join(",")
            ),
            Err(e) => event!("event=control-grant-failed name={} error=\"{}\"", s.name, e),
        }
    }
}
