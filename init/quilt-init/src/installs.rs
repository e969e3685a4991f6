//! Installs, out of PID 1: every install, removal, USB stick and firmware
//! staging is a job for `quilt-install` (init/installer), one process per
//! job, one job at a time, in the `installer` cgroup with a memory limit,
//! under a seccomp filter, killed through its pidfd at its deadline. The
//! serial receiver is the same binary as a service of its own, restarted
//! when it exits. PID 1 reads only what they say: event lines on their
//! stdout (logged as its own, bounded per turn) and report frames on fd 3
//! (`quilt_proto::installer`), then the catalog they wrote. A crash, hang
//! or OOM of an installer is a failed job with a reason; PID 1 never
//! parses a bundle, never touches the store, and never waits on either.

use crate::clock::Millis;
use crate::event;
use crate::policy::ExitCode;
use crate::tokens::{JOB_OUT, JOB_REP, SERIAL_OUT, SERIAL_REP};
use quilt_proto::installer::{take_reports, Report, REPORT_FD};
use quilt_proto::ErrorCode;
use rustix::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::collections::VecDeque;
use std::ffi::CString;

/// Where images put the installer.
pub const INSTALLER: &str = "/usr/lib/quilt/quilt-install";
/// Jobs waiting behind the running one.
const MAX_QUEUE: usize = 16;
/// Bytes read from one pipe per loop turn.
const READ_PER_TURN: usize = 16 * 1024;
/// Longest event line kept (longer ones are cut).
const MAX_LINE: usize = 480;
/// Report bytes held before a frame completes.
const MAX_REPORT_BUF: usize = 64 * 1024;
/// The serial receiver is started again this long after it exited.
const SERIAL_BACKOFF_MS: u64 = 2000;
/// The cgroups, under quilt's.
const JOB_CGROUP: &str = "installer";
const SERIAL_CGROUP: &str = "installer-serial";
/// Boot waits for a job run at once ([`Installs::run_now`]) in steps this
/// long (the watchdog is fed between them).
const RUN_NOW_POLL_MS: i32 = 100;

/// What a job is for.
pub enum Job {
    /// Image bundles and trees at boot.
    Boot,
    /// `quilt install PATH`.
    File(String),
    /// `quilt install -`: the client's fd.
    Fd(OwnedFd),
    /// `quilt remove NAME`.
    Remove(String),
    /// A USB stick: its device name, whole disk or partition.
    Usb(String, bool),
    /// Firmware to the other slot.
    Stage(String),
}

impl Job {
    fn args(&self) -> Vec<String> {
        match self {
            Job::Boot => vec!["boot".into()],
            Job::File(p) => vec!["file".into(), p.clone()],
            Job::Fd(_) => vec!["fd".into()],
            Job::Remove(n) => vec!["remove".into(), n.clone()],
            Job::Usb(d, false) => vec!["usb".into(), d.clone()],
            Job::Usb(d, true) => vec!["usb".into(), d.clone(), "disk".into()],
            Job::Stage(n) => vec!["stage".into(), n.clone()],
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Job::Boot => "boot",
            Job::File(_) | Job::Fd(_) => "install",
            Job::Remove(_) => "remove",
            Job::Usb(..) => "usb",
            Job::Stage(_) => "stage",
        }
    }
}

/// Who asked for a job, and so who hears how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A control client (its slot), and whether its grant lets firmware
    /// it installs be staged.
    Client { client: usize, firmware: bool },
    /// quilt-init itself (boot, sticks, staging).
    Board,
    /// Staging firmware stranded by a power cut, which services wait for
    /// (the board reboots into it).
    Resume,
    /// The serial receiver.
    Serial,
}

/// [`MAX_QUEUE`] jobs wait already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl core::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{MAX_QUEUE} installs are waiting already; try again when they are done"
        )
    }
}

/// Why an installer process could not be started.
#[derive(Debug)]
pub enum StartFailure {
    /// An argument, the config path or an environment value holds a NUL.
    Nul,
    /// Its cgroup, a pipe or /dev/null could not be made (`what`).
    Setup {
        what: &'static str,
        err: std::io::Error,
    },
    /// The spawn itself failed.
    Spawn(std::io::Error),
    /// The child failed at `stage` before it ran the installer.
    Stage {
        stage: &'static str,
        errno: rustix::io::Errno,
    },
}

impl core::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartFailure::Nul => write!(f, "an argument holds a NUL"),
            StartFailure::Setup { what, err } => write!(f, "{what}: {err}"),
            StartFailure::Spawn(e) => write!(f, "starting {INSTALLER}: {e}"),
            StartFailure::Stage { stage, errno } => {
                write!(f, "starting {INSTALLER} failed at {stage}: {errno}")
            }
        }
    }
}

/// Why an install ended without a result of its own.
#[derive(Debug)]
pub enum InstallFailure {
    /// The installer could not be started.
    NotStarted(StartFailure),
    /// PID 1 killed it, for this reason.
    Killed(&'static str),
    /// Its cgroup's OOM killer stopped it.
    OutOfMemory,
    /// It died of this signal.
    Signal(i32),
    /// It exited with this status without a report.
    Exited(i32),
}

impl core::fmt::Display for InstallFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InstallFailure::NotStarted(e) => write!(f, "{e}"),
            InstallFailure::Killed(why) => write!(
                f,
                "the installer was killed: {why}; nothing was committed that did not finish"
            ),
            InstallFailure::OutOfMemory => write!(
                f,
                "the installer ran out of memory (its cgroup's memory.max, [bundles] installer_memory_mib) and was killed; the store keeps only what it committed"
            ),
            InstallFailure::Signal(n) => write!(
                f,
                "the installer died of signal {n}; the store keeps only what it committed"
            ),
            InstallFailure::Exited(c) => {
                write!(f, "the installer exited with status {c} without a result")
            }
        }
    }
}

/// A finished job (or a serial install).
pub struct Done {
    /// Who asked.
    pub origin: Origin,
    /// What it did, in order.
    pub reports: Vec<Report>,
    /// Why it ended without saying (crash, kill, OOM), if it did.
    pub failure: Option<InstallFailure>,
}

impl Done {
    /// The reply for the client: the first report that is one, or the
    /// failure.
    pub fn reply(&self) -> quilt_proto::Reply {
        for r in &self.reports {
            match r {
                Report::Installed {
                    name,
                    version,
                    chunks,
                    chunks_written,
                    already_installed,
                } => {
                    return quilt_proto::Reply::Installed {
                        name: name.clone(),
                        version: *version,
                        chunks: *chunks,
                        chunks_written: *chunks_written,
                        already_installed: *already_installed,
                    }
                }
                Report::Removed { name } => {
                    return quilt_proto::Reply::Removed { name: name.clone() }
                }
                Report::Refused { code, message, .. } => {
                    return quilt_proto::Reply::Error {
                        code: *code,
                        message: message.clone(),
                    }
                }
                Report::Pending { .. } | Report::Staged { .. } | Report::Store(_) => {}
            }
        }
        quilt_proto::Reply::Error {
            code: ErrorCode::Failed,
            message: match &self.failure {
                Some(f) => f.to_string(),
                None => "the installer ended without a result".into(),
            },
        }
    }
}

/// A running installer process.
struct Child {
    pid: i32,
    /// Whether it reached exec.
    exec: crate::spawn::ExecReport,
    pidfd: Option<OwnedFd>,
    out: OwnedFd,
    rep: OwnedFd,
    line: Vec<u8>,
    rep_buf: Vec<u8>,
    reports: Vec<Report>,
    deadline: Option<Millis>,
    killed: Option<&'static str>,
    cgroup: &'static str,
    oom_before: u64,
}

impl Child {
    /// Read what is there (at most [`READ_PER_TURN`] per pipe): log the
    /// lines, decode the frames. `all`: the process is gone, read to EOF.
    fn pump(&mut self, all: bool) {
        let mut buf = [0u8; 4096];
        let mut budget = if all { usize::MAX } else { READ_PER_TURN };
        while budget > 0 {
            match rustix::io::read(&self.out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    for &b in buf.get(..n).unwrap_or(&[]) {
                        if b == b'\n' {
                            emit_line(&self.line);
                            self.line.clear();
                        } else if self.line.len() < MAX_LINE {
                            self.line.push(b);
                        }
                    }
                }
            }
        }
        if all && !self.line.is_empty() {
            emit_line(&self.line);
            self.line.clear();
        }
        let mut budget = if all { usize::MAX } else { READ_PER_TURN };
        while budget > 0 {
            match rustix::io::read(&self.rep, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.rep_buf.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    match take_reports(&mut self.rep_buf) {
                        Ok(r) => self.reports.extend(r),
                        Err(e) => {
                            event!(
                                "event=installer-report-refused pid={} error={:?}",
                                self.pid,
                                e
                            );
                            self.kill("its reports did not decode");
                            break;
                        }
                    }
                    if self.rep_buf.len() > MAX_REPORT_BUF {
                        self.kill("its reports ran over their bound");
                        break;
                    }
                }
            }
        }
    }

    fn kill(&mut self, why: &'static str) {
        if self.killed.is_some() {
            return;
        }
        self.killed = Some(why);
        let sent = self
            .pidfd
            .as_ref()
            .map(|p| rustix::process::pidfd_send_signal(p, rustix::process::Signal::KILL));
        if !matches!(sent, Some(Ok(()))) {
            // No pidfd (old kernel): the pid is still ours, it is not reaped.
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// Why it ended without a report, from how it exited.
    fn failure(&mut self, code: ExitCode) -> Option<InstallFailure> {
        if code.success() && self.killed.is_none() {
            return None;
        }
        // It is gone, so its exec report is complete.
        if let Some(Some((stage, errno))) = self.exec.poll() {
            return Some(InstallFailure::NotStarted(StartFailure::Stage {
                stage: stage.name(),
                errno: rustix::io::Errno::from_raw_os_error(errno),
            }));
        }
        let oom = crate::cgroup::read_key(self.cgroup, "memory.events", "oom_kill").unwrap_or(0)
            > self.oom_before;
        Some(match (self.killed, oom, code.0) {
            (Some(why), _, _) => InstallFailure::Killed(why),
            (None, true, _) => InstallFailure::OutOfMemory,
            (None, false, c) if c > 128 => InstallFailure::Signal(c - 128),
            (None, false, c) => InstallFailure::Exited(c),
        })
    }
}

/// Log one installer line as PID 1's own: event lines as they are,
/// anything else (a panic message) as an `installer-said` event.
fn emit_line(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    if text.starts_with("event=") && !text.chars().any(char::is_control) {
        event!("{}", text);
    } else {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() || c == '"' { '\'' } else { c })
            .collect();
        event!("event=installer-said text=\"{}\"", clean);
    }
}

/// The installer's jobs and the serial receiver.
pub struct Installs {
    config: String,
    memory_mib: u32,
    deadline_ms: u64,
    queue: VecDeque<(Job, Origin)>,
    running: Option<(Child, Origin)>,
    serial: Option<Child>,
    /// The serial receiver is wanted (the config has `[update]`).
    serial_wanted: bool,
    serial_restart: Millis,
    done: Vec<Done>,
    /// Fds to add to epoll, with their tokens.
    pub watch: Vec<(RawFd, u64)>,
    /// Finished jobs' reports since boot, by outcome.
    pub counts: crate::stats::InstallCounts,
}

impl Installs {
    /// Set up for the boot config at `config` (the installer reads it too).
    pub fn new(cfg: &quilt_config::BootConfig, config: &str) -> Installs {
        let have = std::path::Path::new(INSTALLER).exists();
        if !have {
            event!(
                "event=installer-missing path={} effect=\"no installs; build the image with tools/build-init.sh, which builds quilt-install beside quilt-init\"",
                INSTALLER
            );
        }
        Installs {
            config: config.to_owned(),
            memory_mib: cfg.bundles.installer_memory_mib,
            deadline_ms: u64::from(cfg.bundles.install_deadline_s) * 1000,
            queue: VecDeque::new(),
            running: None,
            serial: None,
            serial_wanted: have && cfg.update.is_some(),
            serial_restart: Millis(0),
            done: Vec::new(),
            watch: Vec::new(),
            counts: crate::stats::InstallCounts::default(),
        }
    }

    /// No serial receiver (the board has no trust store to install into).
    pub fn disable_serial(&mut self) {
        self.serial_wanted = false;
    }

    /// Queue `job`; refused when too many wait.
    pub fn enqueue(&mut self, job: Job, origin: Origin) -> Result<(), QueueFull> {
        if self.queue.len() >= MAX_QUEUE {
            event!("event=install-refused job={} reason=queue-full", job.name());
            return Err(QueueFull);
        }
        self.queue.push_back((job, origin));
        Ok(())
    }

    /// Start what is due, kill what is late.
    pub fn tick(&mut self, now: Millis) {
        if let Some((c, _)) = self.running.as_mut() {
            if c.deadline.is_some_and(|d| now >= d) {
                event!(
                    "event=installer-killed pid={} reason=deadline deadline_s={}",
                    c.pid,
                    self.deadline_ms / 1000
                );
                c.kill("it ran past its deadline ([bundles] install_deadline_s)");
            }
        }
        if self.running.is_none() {
            if let Some((job, origin)) = self.queue.pop_front() {
                match self.start(&job, JOB_CGROUP, Some(now.after(self.deadline_ms))) {
                    Ok(c) => {
                        self.watch.push((c.out.as_raw_fd(), JOB_OUT));
                        self.watch.push((c.rep.as_raw_fd(), JOB_REP));
                        self.running = Some((c, origin));
                    }
                    Err(why) => self.done.push(Done {
                        origin,
                        reports: Vec::new(),
                        failure: Some(InstallFailure::NotStarted(why)),
                    }),
                }
            }
        }
        if self.serial_wanted && self.serial.is_none() && now >= self.serial_restart {
            match self.start_serial() {
                Ok(c) => {
                    self.watch.push((c.out.as_raw_fd(), SERIAL_OUT));
                    self.watch.push((c.rep.as_raw_fd(), SERIAL_REP));
                    self.serial = Some(c);
                }
                Err(why) => {
                    event!("event=update-receiver-failed reason=\"{}\"", why);
                    self.serial_restart = now.after(SERIAL_BACKOFF_MS);
                }
            }
        }
    }

    fn start_serial(&mut self) -> Result<Child, StartFailure> {
        let args = vec!["serial".to_owned()];
        self.spawn(&args, None, SERIAL_CGROUP, None)
    }

    fn start(
        &mut self,
        job: &Job,
        cgroup: &'static str,
        deadline: Option<Millis>,
    ) -> Result<Child, StartFailure> {
        let input = match job {
            Job::Fd(fd) => Some(fd.as_fd()),
            _ => None,
        };
        let c = self.spawn(&job.args(), input, cgroup, deadline)?;
        event!("event=installer-start job={} pid={}", job.name(), c.pid);
        Ok(c)
    }

    fn spawn(
        &self,
        args: &[String],
        input: Option<rustix::fd::BorrowedFd<'_>>,
        cgroup: &'static str,
        deadline: Option<Millis>,
    ) -> Result<Child, StartFailure> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let mut argv = vec![
            CString::new(INSTALLER).map_err(|_| StartFailure::Nul)?,
            CString::new("--config").map_err(|_| StartFailure::Nul)?,
            CString::new(self.config.as_str()).map_err(|_| StartFailure::Nul)?,
        ];
        for a in args {
            argv.push(CString::new(a.as_str()).map_err(|_| StartFailure::Nul)?);
        }
        let mut envp = vec![c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
        for key in ["QUILT_SLOT", "QUILT_TRIAL"] {
            if let Ok(v) = std::env::var(key) {
                envp.push(CString::new(format!("{key}={v}")).map_err(|_| StartFailure::Nul)?);
            }
        }
        let limits = quilt_config::Limits {
            memory_max: Some(u64::from(self.memory_mib) << 20),
            pids_max: Some(16),
            ..quilt_config::Limits::default()
        };
        // A fresh cgroup per process: what an earlier one left charged
        // (files it wrote to tmpfs) went to the parent with the old one.
        crate::cgroup::remove(cgroup);
        let cg = crate::cgroup::create(cgroup, &limits).map_err(|err| StartFailure::Setup {
            what: "creating its cgroup",
            err,
        })?;
        let oom_before = crate::cgroup::read_key(cgroup, "memory.events", "oom_kill").unwrap_or(0);
        let procs = CString::new(crate::cgroup::path(cgroup, "cgroup.procs").as_str())
            .map_err(|_| StartFailure::Nul)?;
        let pipe = |e: rustix::io::Errno| StartFailure::Setup {
            what: "pipe",
            err: e.into(),
        };
        let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(pipe)?;
        let (rep_r, rep_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(pipe)?;
        // The child's ends block: it waits for PID 1, never the reverse.
        let _ = rustix::fs::fcntl_setfl(&out_w, rustix::fs::OFlags::empty());
        let _ = rustix::fs::fcntl_setfl(&rep_w, rustix::fs::OFlags::empty());
        let null = crate::spawn::dev_null().map_err(|err| StartFailure::Setup {
            what: "/dev/null",
            err,
        })?;
        let spec = crate::spawn::Spec {
            argv: &argv,
            envp: &envp,
            cwd: c"/",
            uid: 0,
            gid: 0,
            output: out_w.as_fd(),
            input: input.unwrap_or(null.as_fd()),
            ready: Some((rep_w.as_fd(), REPORT_FD)),
            cgroup: Some(cg.as_fd()),
            cgroup_procs: &procs,
        };
        // Whether it reached exec is read when it ends (a failed exec
        // exits 127 at once): PID 1 does not wait for it here.
        let s = crate::spawn::spawn(&spec).map_err(StartFailure::Spawn)?;
        let pidfd = rustix::process::Pid::from_raw(s.pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        Ok(Child {
            pid: s.pid,
            exec: s.report,
            pidfd,
            out: out_r,
            rep: rep_r,
            line: Vec::new(),
            rep_buf: Vec::new(),
            reports: Vec::new(),
            deadline,
            killed: None,
            cgroup,
            oom_before,
        })
    }

    /// A pipe of theirs is readable.
    pub fn on_readable(&mut self, token: u64) {
        match token {
            JOB_OUT | JOB_REP => {
                if let Some((c, _)) = self.running.as_mut() {
                    c.pump(false);
                }
            }
            SERIAL_OUT | SERIAL_REP => {
                if let Some(c) = self.serial.as_mut() {
                    c.pump(false);
                    let reports = core::mem::take(&mut c.reports);
                    if !reports.is_empty() {
                        self.done.push(Done {
                            origin: Origin::Serial,
                            reports,
                            failure: None,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// `pid` exited: true if it was an installer.
    pub fn on_exit(&mut self, pid: i32, code: ExitCode, now: Millis) -> bool {
        if self.running.as_ref().is_some_and(|(c, _)| c.pid == pid) {
            if let Some((mut c, origin)) = self.running.take() {
                c.pump(true);
                let failure = if c.reports.is_empty() || c.killed.is_some() {
                    c.failure(code)
                } else {
                    None
                };
                crate::cgroup::remove(c.cgroup);
                event!(
                    "event=installer-exit pid={} status={} reports={}",
                    pid,
                    code.0,
                    c.reports.len()
                );
                if let Some(f) = &failure {
                    event!("event=install-failed pid={} reason=\"{}\"", pid, f);
                }
                self.done.push(Done {
                    origin,
                    reports: c.reports,
                    failure,
                });
            }
            return true;
        }
        if self.serial.as_ref().is_some_and(|c| c.pid == pid) {
            if let Some(mut c) = self.serial.take() {
                c.pump(true);
                let why = c
                    .failure(code)
                    .map_or_else(|| "it exited".to_owned(), |f| f.to_string());
                crate::cgroup::remove(c.cgroup);
                event!(
                    "event=update-receiver-exit pid={} status={} restart_ms={} reason=\"{}\"",
                    pid,
                    code.0,
                    SERIAL_BACKOFF_MS,
                    why
                );
                if !c.reports.is_empty() {
                    self.done.push(Done {
                        origin: Origin::Serial,
                        reports: c.reports,
                        failure: None,
                    });
                }
                self.serial_restart = now.after(SERIAL_BACKOFF_MS);
            }
            return true;
        }
        false
    }

    /// Finished jobs since the last call.
    pub fn take_done(&mut self) -> Vec<Done> {
        core::mem::take(&mut self.done)
    }

    /// When the loop must wake for this next.
    pub fn deadline(&self) -> Option<Millis> {
        let job = self.running.as_ref().and_then(|(c, _)| c.deadline);
        let queued = (!self.queue.is_empty() && self.running.is_none()).then(Millis::now);
        let serial = (self.serial_wanted && self.serial.is_none()).then_some(self.serial_restart);
        [job, queued, serial].into_iter().flatten().min()
    }

    /// Shutting down: stop everything, start nothing more.
    pub fn kill_all(&mut self) {
        self.serial_wanted = false;
        self.queue.clear();
        if let Some((c, _)) = self.running.as_mut() {
            c.kill("the board is shutting down");
        }
        if let Some(c) = self.serial.as_mut() {
            c.kill("the board is shutting down");
        }
    }

    /// At boot, before the loop and before any service: run `job` to its
    /// end (or its deadline), feeding the watchdog while it works. Its
    /// reports.
    pub fn run_now(
        &mut self,
        job: Job,
        watchdog: &mut Option<crate::watchdog::Watchdog>,
    ) -> Vec<Report> {
        let now = Millis::now();
        let name = job.name();
        let mut c = match self.start(&job, JOB_CGROUP, Some(now.after(self.deadline_ms))) {
            Ok(c) => c,
            Err(why) => {
                event!("event=install-failed job={} reason=\"{}\"", name, why);
                return Vec::new();
            }
        };
        let Some(pid) = rustix::process::Pid::from_raw(c.pid) else {
            return Vec::new();
        };
        loop {
            {
                use rustix::event::{poll, PollFd, PollFlags};
                let mut fds = [
                    PollFd::new(&c.out, PollFlags::IN),
                    PollFd::new(&c.rep, PollFlags::IN),
                ];
                let ts = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: i64::from(RUN_NOW_POLL_MS) * 1_000_000,
                };
                let _ = poll(&mut fds, Some(&ts));
            }
            c.pump(false);
            let now = Millis::now();
            if let Some(w) = watchdog.as_mut() {
                w.tick(now);
            }
            if c.deadline.is_some_and(|d| now >= d) {
                event!(
                    "event=installer-killed pid={} reason=deadline job={}",
                    c.pid,
                    name
                );
                c.kill("it ran past its deadline ([bundles] install_deadline_s)");
            }
            match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                Ok(Some((_, status))) => {
                    let code = ExitCode::from_wait(status);
                    c.pump(true);
                    if let Some(f) = c
                        .failure(code)
                        .filter(|_| c.reports.is_empty() || c.killed.is_some())
                    {
                        event!("event=install-failed job={} reason=\"{}\"", name, f);
                    }
                    event!(
                        "event=installer-exit pid={} status={} reports={}",
                        c.pid,
                        code.0,
                        c.reports.len()
                    );
                    crate::cgroup::remove(c.cgroup);
                    return c.reports;
                }
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return c.reports,
            }
        }
    }
}
