//! `quilt-init`: PID 1 of a Quilt board.
//!
//! It mounts the early filesystems, reads its boot config, loads modules,
//! brings up cgroup v2, feeds the watchdog, supervises services, reaps every
//! zombie, and shuts the board down in order. It never returns from `main`
//! and never panics: every error is logged and handled, and the crate denies
//! the lints that would let a panic in.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod api;
mod boot;
mod bootcount;
mod bundles;
mod bus;
mod caller;
mod ceilings;
mod cgroup;
mod clock;
mod cmdline;
mod control;
mod dm;
mod evloop;
mod fatal;
mod grants;
mod ids;
mod installs;
mod launcher;
mod ledger;
mod log;
mod modules;
mod mounts;
mod net;
mod output;
mod plan;
mod pods;
mod policy;
mod power;
mod refusal;
mod ring;
mod runs;
mod signals;
mod slots;
mod spawn;
mod stats;
mod supervisor;
mod tokens;
mod uevent;
mod usb;
mod watchdog;

use clock::boot_micros;

fn main() {
    let entry_us = boot_micros();
    if rustix::process::getpid() != rustix::process::Pid::INIT {
        eprintln!(
            "quilt-init: must run as PID 1 (the kernel's init); it is a firmware init, not a tool"
        );
        std::process::exit(2);
    }
    // The kernel starts init with 022, but a quilt-init exec'd by another
    // (stage 1 into a slot) inherits what it had: say it. Files that must
    // be private (the seed) are created 0600 explicitly.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    mounts::mount_early();
    boot::console();
    event!(
        "event=pid1-entry entry_us={} version={}",
        entry_us,
        env!("CARGO_PKG_VERSION")
    );

    let text = mounts::read_bounded("/proc/cmdline").unwrap_or_default();
    let cl = cmdline::parse(&text);
    boot::report_cmdline(&cl);
    let cfg = boot::load_config(&cl);
    boot::hostname(&cl, &cfg);
    boot::clock_and_entropy();
    modules::load_all(cfg.modules.iter().map(|m| m.as_str()));
    if let Some(sc) = cfg.slots.as_ref() {
        match slots::booted() {
            // In the initramfs: pick a root slot and exec its init.
            None => {
                let why = slots::stage1(sc);
                fatal::fatal(
                    format_args!("cannot boot a root slot: {why}"),
                    "check the slot partitions named in [slots] and the boot-state partition",
                    &cfg.fatal,
                )
            }
            Some(b) => {
                event!(
                    "event=slot-booted slot={} trial={}",
                    b.slot.name(),
                    u8::from(b.trial)
                );
                slots::mount_data(sc);
            }
        }
    }
    cgroup::init_root();
    // Every run lives under quilt/runs: bound them all together.
    let ram = rustix::system::sysinfo();
    let ram_bytes = ram.totalram.saturating_mul(u64::from(ram.mem_unit));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let runs = ceilings::runs(&cfg.containers, ram_bytes, cpus);
    cgroup::bound_runs(&runs);
    // Ctrl-Alt-Del becomes SIGINT to us instead of an instant reboot.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);

    let mut wd = if cfg.watchdog.enabled {
        watchdog::Watchdog::open(&cfg.watchdog.device, cfg.watchdog.timeout_s)
    } else {
        None
    };
    let fatal_cfg = cfg.fatal.clone();
    let n = cfg.services.len();
    let _ = std::fs::create_dir_all(plan::STAGING);
    let _ = std::fs::create_dir_all(plan::SCRATCH);
    // Installs run in their own process (installs.rs); at boot PID 1 waits
    // for the first one, bounded and feeding the watchdog.
    let mut installs = installs::Installs::new(&cfg, boot::config_path(&cl));
    // A board with neither a trust store nor image bundles runs nothing
    // from bundles: no installer to start.
    let b = &cfg.bundles;
    let wanted = [b.trust.as_str(), b.dir.as_str()]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let boot_reports = if wanted {
        installs.run_now(installs::Job::Boot, &mut wd)
    } else {
        Vec::new()
    };
    let tools = bundles::Tools::load(&cfg);
    // Firmware the store took but no slot got (power was lost between the
    // two): staged first; services wait for it, as the board then reboots
    // into it.
    let mut resume = false;
    for r in boot_reports {
        if let quilt_proto::installer::Report::Pending { name } = r {
            resume |= installs
                .enqueue(installs::Job::Stage(name), installs::Origin::Resume)
                .is_ok();
        }
    }
    let bus = bus::Bus::bring_up(&cfg.channels);
    let sup = supervisor::Supervisor::new(cfg, tools.as_ref(), bus);
    let lp = match evloop::Loop::new(sup, wd, cl.hang_after_s, tools, installs, resume) {
        Ok(lp) => lp,
        Err(e) => fatal::fatal(
            format_args!("cannot set up the event loop: {e}"),
            "the kernel lacks epoll, signalfd or timerfd",
            &fatal_cfg,
        ),
    };
    event!("event=boot-ready services={}", n);
    let action = lp.run();
    power::finish(action)
}
