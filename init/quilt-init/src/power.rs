//! The last steps: sync, unmount, and the `reboot(2)` that ends the boot.
//! Nothing here returns; if the kernel refuses, init stays up and idle.

use crate::event;
use crate::mounts;
use quilt_config::PowerAction;
use rustix::system::RebootCommand;

/// Sync, unmount, then reboot/halt/power off. Never returns.
pub fn finish(action: PowerAction) -> ! {
    rustix::fs::sync();
    mounts::unmount_all();
    rustix::fs::sync();
    let cmd = match action {
        PowerAction::Reboot => RebootCommand::Restart,
        PowerAction::Halt => RebootCommand::Halt,
        // Ignore never reaches here; treat it as the safest stop.
        PowerAction::Poweroff | PowerAction::Ignore => RebootCommand::PowerOff,
    };
    event!("event={} ", action_name(action));
    if let Err(e) = rustix::system::reboot(cmd) {
        event!("event=reboot-failed error={}", e);
    }
    idle()
}

/// Reap forever without doing anything else: the end state when there is
/// nothing left to do but must not exit.
pub fn idle() -> ! {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
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
