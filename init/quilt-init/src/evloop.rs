//! The one event loop: epoll over the signalfd, one timerfd armed for the
//! nearest deadline, and the services' pipes. Nothing in PID 1 blocks
//! anywhere else once boot is done.

use crate::bundles::Tools;
use crate::clock::Millis;
use crate::control::{self, Action, Control};
use crate::event;
use crate::policy::ExitCode;
use crate::runs::{self, Runs};
use crate::signals;
use crate::supervisor::{self, Request, Supervisor, TOKEN_OUT, TOKEN_READY};
use crate::watchdog::Watchdog;
use core::mem::MaybeUninit;
use quilt_config::PowerAction;
use quilt_proto::Reply;
use rustix::event::epoll;
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::process::WaitOptions;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TIMER: u64 = 2;

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
}

impl Loop {
    /// Build the loop; failures here are fatal to boot, reported by caller.
    pub fn new(
        sup: Supervisor,
        watchdog: Option<Watchdog>,
        hang_after_s: Option<u32>,
        tools: Option<Tools>,
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
            epoll::EventData::new_u64(TOKEN_SIGNAL),
            epoll::EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &timer,
            epoll::EventData::new_u64(TOKEN_TIMER),
            epoll::EventFlags::IN,
        )?;
        let hang_at = hang_after_s.map(|s| Millis::now().after(u64::from(s) * 1000));
        let control = match Control::open() {
            Ok(c) => {
                epoll::add(
                    &epoll,
                    c.listener(),
                    epoll::EventData::new_u64(control::TOKEN_LISTEN),
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
        })
    }

    /// Run forever. Returns only the action of a finished shutdown.
    pub fn run(mut self) -> PowerAction {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 32];
        loop {
            let now = Millis::now();
            self.sup.tick(now);
            self.runs.tick(now);
            self.runs
                .replenish(self.tools.as_ref(), &self.sup.config().bundles.warm, now);
            self.serve(now);
            self.apply_requests();
            if let Some(w) = self.watchdog.as_mut() {
                w.tick(now);
            }
            if let Some(action) = self.sup.finished() {
                self.runs.kill_all();
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
                self.dispatch(ev.data.u64());
            }
        }
    }

    fn dispatch(&mut self, token: u64) {
        match token {
            TOKEN_SIGNAL => {
                while let Some(sig) = signals::next(&self.sigfd) {
                    self.on_signal(sig);
                }
            }
            TOKEN_TIMER => {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&self.timer, &mut b);
            }
            t if (TOKEN_OUT..TOKEN_READY).contains(&t) => {
                self.sup.on_output((t - TOKEN_OUT) as usize)
            }
            t if (TOKEN_READY..TOKEN_READY + 0x100).contains(&t) => {
                self.sup.on_ready_pipe((t - TOKEN_READY) as usize)
            }
            control::TOKEN_LISTEN => {
                if let Some(c) = self.control.as_mut() {
                    c.on_listen();
                }
            }
            t if (control::TOKEN_CLIENT..control::TOKEN_CLIENT + control::MAX_CLIENTS as u64)
                .contains(&t) =>
            {
                if let Some(c) = self.control.as_mut() {
                    c.on_client((t - control::TOKEN_CLIENT) as usize, &mut self.actions);
                }
            }
            t if (runs::TOKEN..runs::TOKEN + 2 * runs::MAX_RUNS as u64).contains(&t) => {
                self.runs.on_pipe(t)
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
                    if self.runs.on_exit(pid.as_raw_nonzero().get(), code) {
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
                Action::List(slot) => ctl.send(slot, &Reply::Services(self.sup.info(now))),
                Action::Run {
                    client,
                    bundle,
                    input,
                    timeout_ms,
                } => {
                    match self.runs.start(
                        self.tools.as_ref(),
                        &bundle,
                        &input,
                        timeout_ms,
                        client,
                        now,
                    ) {
                        Ok(id) => event!(
                            "event=run-start id={} bundle={} input_bytes={}",
                            id,
                            bundle,
                            input.len()
                        ),
                        Err(e) => ctl.send(client, &control::refuse(e.code, &e.message)),
                    }
                }
            }
        }
        for done in self.runs.take_done() {
            ctl.send(done.client, &Reply::Ran(done.result));
        }
        for slot in ctl.gone.iter() {
            self.runs.cancel_client(*slot);
        }
        ctl.gone.clear();
    }

    fn apply_requests(&mut self) {
        let extra = self
            .control
            .as_mut()
            .map(|c| core::mem::take(&mut c.watch))
            .unwrap_or_default();
        for (fd, token) in extra.iter().chain(self.runs.watch.iter()) {
            // SAFETY: as below; control and runs queue fds they own and keep
            // open until at least the end of this loop turn.
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

    fn arm_timer(&self, now: Millis) {
        let mut next = self.sup.deadline(now);
        if let Some(d) = self.runs.deadline() {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
        for d in [
            self.watchdog.as_ref().and_then(|w| w.feeder.deadline()),
            self.hang_at,
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(d, |n: Millis| n.min(d)));
        }
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
