//! When boot cannot go on: say so plainly on the console, then do what the
//! config (or `quilt.fatal=`) says. Never returns.

use crate::event;
use crate::log;
use quilt_config::{Fatal, PowerAction};

/// Print `why` and take the fatal action.
pub fn fatal(why: core::fmt::Arguments<'_>, what_next: &str, cfg: &Fatal) -> ! {
    log::emit("quilt: ==================== FATAL BOOT ERROR ====================");
    event!("event=fatal error=\"{}\"", why);
    event!("event=fatal-hint hint=\"{}\"", what_next);
    if let Some(shell) = cfg.shell.as_deref() {
        if std::path::Path::new(shell).exists() {
            event!("event=fatal-shell path={}", shell);
            run_shell(shell);
        }
    }
    match cfg.action {
        PowerAction::Ignore => {
            event!("event=fatal-idle");
            crate::power::idle()
        }
        action => {
            event!(
                "event=fatal-action action={} in_s={}",
                crate::power::action_name(action),
                cfg.delay_s
            );
            std::thread::sleep(std::time::Duration::from_secs(u64::from(cfg.delay_s)));
            crate::power::finish(action)
        }
    }
}

/// Run an emergency shell on the console and wait for it to exit.
fn run_shell(shell: &str) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(shell);
    // SAFETY: setsid is async-signal-safe and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            let _ = rustix::process::setsid();
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let _ = child.wait();
        }
        Err(e) => event!("event=fatal-shell-failed path={} error={}", shell, e),
    }
}
