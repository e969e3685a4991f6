//! One-time bring-up between the early mounts and the event loop:
//! console, config, hostname, entropy and clock, modules, cgroups.

use crate::cmdline::Cmdline;
use crate::event;
use crate::fatal::fatal;
use crate::mounts;
use quilt_config::{BootConfig, Fatal};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};

/// Default location of the compiled boot config.
pub const DEFAULT_CONFIG: &str = "/etc/quilt/boot.bin";
/// Largest config file read.
const MAX_CONFIG: usize = 64 * 1024;
/// Clocks without an RTC start at 1970; never run earlier than this
/// (2026-01-01), so certificates' not-before checks behave.
const EPOCH_FLOOR: i64 = 1_767_225_600;
/// Seed file carried across boots where a data partition exists.
const SEED: &str = "/var/lib/quilt/random-seed";

/// Put the console on fds 0-2 and hand a copy to the logger.
pub fn console() {
    let Ok(fd) = rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY, Mode::empty())
    else {
        return;
    };
    for n in 0..3 {
        // SAFETY: 0..3 are the standard fds; dup2 over them is what we want,
        // and the OwnedFd is forgotten so it never closes them.
        let mut target = unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(n) };
        let _ = rustix::io::dup2(&fd, &mut target);
        core::mem::forget(target);
    }
    // The log's own open file description, non-blocking: O_NONBLOCK on
    // the one fds 0-2 share would reach every program that inherits them.
    if let Ok(log) = rustix::fs::open(
        "/dev/console",
        OFlags::WRONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        crate::log::set_console(log);
    }
    if let Ok(k) = rustix::fs::open("/dev/kmsg", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        crate::log::set_kmsg(k);
    }
    // PID 1 starts in no session; a new one keeps services' setsid apart.
    let _ = rustix::process::setsid();
}

/// Log what the command line asked that init will not do.
pub fn report_cmdline(c: &Cmdline<'_>) {
    for k in &c.unknown {
        event!("event=cmdline-unknown param={}", k);
    }
    for k in &c.invalid {
        event!("event=cmdline-invalid param={}", k);
    }
}

/// Read, decode and validate the boot config, or stop here with a clear
/// message: a board whose config is missing or corrupt must not run half
/// its services.
/// Where the boot config is read from (`quilt.config=` or the default).
pub fn config_path<'a>(c: &Cmdline<'a>) -> &'a str {
    c.config.unwrap_or(DEFAULT_CONFIG)
}

pub fn load_config(c: &Cmdline<'_>) -> Box<BootConfig> {
    let path = config_path(c);
    let mut fallback = Fatal::default();
    if let Some(a) = c.fatal {
        fallback.action = a;
    }
    if let Some(d) = c.fatal_delay_s {
        fallback.delay_s = d;
    }
    let mut buf = vec![0u8; MAX_CONFIG + 1];
    let n = match mounts::read_into(path, &mut buf) {
        Ok(n) => n,
        Err(e) => fatal(
            format_args!("cannot read boot config {path}: {e}"),
            "build the image with `quilt config compile` or pass quilt.config=PATH",
            &fallback,
        ),
    };
    if n > MAX_CONFIG {
        fatal(
            format_args!("boot config {path} is larger than {MAX_CONFIG} bytes"),
            "recompile it with `quilt config compile`",
            &fallback,
        );
    }
    match quilt_config::decode(buf.get(..n).unwrap_or(&[])) {
        Ok(cfg) => {
            let mut cfg = Box::new(cfg);
            if let Some(a) = c.fatal {
                cfg.fatal.action = a;
            }
            if let Some(d) = c.fatal_delay_s {
                cfg.fatal.delay_s = d;
            }
            cfg
        }
        Err(e) => fatal(
            format_args!("boot config {path} refused: {e}"),
            "check it on the host with `quilt config check`",
            &fallback,
        ),
    }
}

/// Set the hostname from the command line or the config.
pub fn hostname(c: &Cmdline<'_>, cfg: &BootConfig) {
    let Some(name) = c.hostname.or(cfg.hostname.as_deref()) else {
        return;
    };
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => event!("event=hostname name={}", name),
        Err(e) => event!("event=hostname-failed name={} error={}", name, e),
    }
}

/// Move a clock without an RTC past the floor, and mix a saved seed into
/// the entropy pool (no credit is claimed: the kernel decides).
pub fn clock_and_entropy() {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    if now.tv_sec < EPOCH_FLOOR {
        let t = rustix::time::Timespec {
            tv_sec: EPOCH_FLOOR,
            tv_nsec: 0,
        };
        match rustix::time::clock_settime(rustix::time::ClockId::Realtime, t) {
            Ok(()) => event!("event=clock-floor set_to={}", EPOCH_FLOOR),
            Err(e) => event!("event=clock-floor-failed error={}", e),
        }
    }
    let mut seed = [0u8; 512];
    if let Ok(n) = mounts::read_into(SEED, &mut seed) {
        if let Ok(fd) = rustix::fs::open(
            "/dev/urandom",
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::io::write(&fd, seed.get(..n).unwrap_or(&[]));
            event!("event=entropy-seeded bytes={}", n);
        }
        // Replace it at once so the same seed is never used twice.
        let mut fresh = [0u8; 512];
        if rustix::rand::getrandom(&mut fresh, rustix::rand::GetRandomFlags::NONBLOCK).is_ok() {
            if let Err(e) = write_secret(SEED, &fresh) {
                event!("event=entropy-save-failed path={} error=\"{}\"", SEED, e);
            }
        }
    }
}

/// Write a secret (the seed) readable by root alone: 0600 whatever the
/// file's mode was before, set on the open fd before any byte is written.
fn write_secret(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}
