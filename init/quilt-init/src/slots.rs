//! A/B root slots on the device (docs/updates.md); the rules themselves are
//! the pure `quilt_slots` crate.
//!
//! - Stage 1, quilt-init in the initramfs: read the boot state, decide,
//!   write the new state *before* booting, mount the chosen slot read-only
//!   and exec its init (`QUILT_SLOT=a|b`, `QUILT_TRIAL=0|1` in its
//!   environment). A trial slot that does not even mount falls back at once.
//! - Stage 2, quilt-init from the slot: mount the data partition; on a
//!   trial, commit the slot once the health service exits 0, or give up
//!   (and reboot into the previous slot) when it fails or the deadline
//!   passes.
//! - A firmware bundle (runtime `firmware`, its entry a root image) once
//!   installed is staged by the installer (init/installer/src/stage.rs),
//!   never by PID 1.

use crate::event;
use quilt_config::Slots as Cfg;
use quilt_slots::{Slot, State};

/// The slot this quilt-init was started from (stage 2).
#[derive(Debug, Clone, Copy)]
pub struct Booted {
    /// Which.
    pub slot: Slot,
    /// On trial: must report healthy.
    pub trial: bool,
}

/// Set by stage 1 for stage 2; `None` in the initramfs.
pub fn booted() -> Option<Booted> {
    let slot = Slot::parse(std::env::var("QUILT_SLOT").ok()?.as_str())?;
    let trial = std::env::var("QUILT_TRIAL").is_ok_and(|t| t == "1");
    Some(Booted { slot, trial })
}

fn device(cfg: &Cfg, slot: Slot) -> &str {
    match slot {
        Slot::A => cfg.a.as_str(),
        Slot::B => cfg.b.as_str(),
    }
}

/// The current record and the copy it is in (`None`: blank or both torn).
fn read_state(cfg: &Cfg) -> std::io::Result<Option<(State, usize)>> {
    quilt_slots::file::read(cfg.state.as_str())
}

/// Write `s` into the copy the current record is not in, and sync.
fn write_state(cfg: &Cfg, s: &State, current_copy: Option<usize>) -> std::io::Result<()> {
    quilt_slots::file::write(cfg.state.as_str(), s, current_copy)
}

/// Why the boot-state record on `device` could not be read or updated.
#[derive(Debug)]
pub enum StateError {
    Read {
        device: String,
        err: std::io::Error,
    },
    Update {
        device: String,
        err: quilt_slots::file::UpdateError,
    },
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StateError::Read { device, err } => {
                write!(f, "reading the boot state on {device}: {err}")
            }
            StateError::Update { device, err } => write!(f, "{device}: {err}"),
        }
    }
}

/// Read, change, write the boot state (stage 2).
fn update_state(
    cfg: &Cfg,
    change: impl FnOnce(State) -> Option<State>,
) -> Result<State, StateError> {
    quilt_slots::file::update(cfg.state.as_str(), change).map_err(|err| StateError::Update {
        device: cfg.state.to_string(),
        err,
    })
}

fn wait_for(path: &str, ms: u64) -> bool {
    for _ in 0..ms / 20 {
        if std::path::Path::new(path).exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::path::Path::new(path).exists()
}

const SYSROOT: &str = "/sysroot";

/// Why a slot did not mount.
#[derive(Debug)]
enum MountError {
    /// Its dm-verity device could not be made.
    Verity(crate::dm::DmError),
    /// dm-verity refused a block: the slot is not the image its root hash
    /// names.
    Corrupt(rustix::io::Errno),
    /// The mount itself failed.
    Mount(rustix::io::Errno),
}

impl core::fmt::Display for MountError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MountError::Verity(e) => write!(f, "setting up dm-verity: {e}"),
            MountError::Corrupt(e) => write!(
                f,
                "dm-verity: its data does not match the root hash in the boot state, the slot was altered after it was written ({e})"
            ),
            MountError::Mount(e) => write!(f, "{e}"),
        }
    }
}

/// Mount `slot` read-only at /sysroot: through a dm-verity device when
/// the boot state holds its root hash (`verity`), else the partition.
fn mount_slot(
    cfg: &Cfg,
    slot: Slot,
    verity: Option<quilt_slots::Verity>,
) -> Result<(), MountError> {
    use rustix::mount::{mount, MountFlags};
    let _ = rustix::fs::mkdir(SYSROOT, rustix::fs::Mode::from_raw_mode(0o755));
    let part = device(cfg, slot);
    let name = match slot {
        Slot::A => "quilt-slot-a",
        Slot::B => "quilt-slot-b",
    };
    let dev = match verity {
        Some(v) => {
            let node = crate::dm::open_verity(name, part, &v).map_err(MountError::Verity)?;
            event!(
                "event=slot-verity slot={} dev={} data_blocks={} root={}",
                slot.name(),
                node,
                v.data_blocks,
                quilt_bundle::hex::encode(v.root.get(..8).unwrap_or(&[]))
            );
            node
        }
        None => part.to_owned(),
    };
    match mount(
        dev.as_str(),
        SYSROOT,
        cfg.fstype.as_str(),
        MountFlags::RDONLY | MountFlags::NODEV,
        None,
    ) {
        Ok(()) => Ok(()),
        Err(e) if verity.is_some() => {
            let corrupt = crate::dm::corrupted(name) == Some(true);
            crate::dm::remove(name);
            Err(if corrupt {
                MountError::Corrupt(e)
            } else {
                MountError::Mount(e)
            })
        }
        Err(e) => Err(MountError::Mount(e)),
    }
}

/// Stage 1: choose, mount and exec a slot. Returns only with the reason
/// nothing could be booted.
pub fn stage1(cfg: &Cfg) -> String {
    for dev in [&cfg.state, &cfg.a, &cfg.b] {
        if !wait_for(dev, 10_000) {
            event!("event=slot-device-missing dev={}", dev);
        }
    }
    let cur = match read_state(cfg) {
        Ok(c) => c,
        Err(e) => {
            event!(
                "event=slot-state-unreadable dev={} error=\"{}\"",
                cfg.state,
                e
            );
            None
        }
    };
    // A trial the boot loader already gave up on is over (bootcount.rs).
    let cur = cur.map(|(s, c)| (crate::bootcount::before_choosing(s).unwrap_or(s), c));
    let d = quilt_slots::decide(cur.map(|c| c.0));
    let mut state = cur.map_or(State::initial(), |c| c.0);
    if let Some(w) = d.write {
        match write_state(cfg, &w, cur.map(|c| c.1)) {
            Ok(()) => state = w,
            // Booting a trial without having spent its try could loop.
            Err(e) if d.trial => {
                return format!("cannot spend the trial slot's try on {}: {e}", cfg.state)
            }
            Err(e) => event!("event=slot-state-write-failed error=\"{}\"", e),
        }
    }
    if let Some(from) = d.fell_back_from {
        event!(
            "event=slot-fallback from={} to={} version={} reason=\"it did not report healthy\" fallbacks={}",
            from.name(),
            d.slot.name(),
            d.write.map_or(0, |w| w.failed_version),
            state.fallbacks
        );
    }
    event!(
        "event=slot-selected slot={} trial={} tries_left={} seq={} failed_version={}",
        d.slot.name(),
        u8::from(d.trial),
        state.tries_left,
        state.seq,
        state.failed_version
    );
    crate::bootcount::after_choosing(d.slot);
    let (slot, trial) = match mount_slot(cfg, d.slot, state.verity(d.slot)) {
        Ok(()) => (d.slot, d.trial),
        Err(e) if d.trial => {
            event!(
                "event=slot-fallback from={} to={} version={} reason=\"mount failed: {}\"",
                d.slot.name(),
                state.primary.name(),
                state.trying_version,
                e
            );
            // Record the fallback now, as the next boot would.
            let fallback = quilt_slots::decide(Some(quilt_slots::give_up(state))).write;
            if let Err(e) = update_state(cfg, |_| fallback) {
                event!("event=slot-state-write-failed error=\"{}\"", e);
            }
            match mount_slot(cfg, state.primary, state.verity(state.primary)) {
                Ok(()) => (state.primary, false),
                Err(e) => {
                    return format!("slot {} does not mount either: {e}", state.primary.name())
                }
            }
        }
        Err(e) => {
            // The committed slot is damaged: the other is the last resort.
            let other = d.slot.other();
            event!(
                "event=slot-mount-failed slot={} error=\"{}\" trying={}",
                d.slot.name(),
                e,
                other.name()
            );
            match mount_slot(cfg, other, state.verity(other)) {
                Ok(()) => (other, false),
                Err(e2) => {
                    return format!(
                        "neither root slot mounts ({}: {e}; {}: {e2})",
                        d.slot.name(),
                        other.name()
                    )
                }
            }
        }
    };
    switch_root(cfg, slot, trial)
}

/// Make the mounted slot the root and exec its init; returns only on
/// failure.
fn switch_root(cfg: &Cfg, slot: Slot, trial: bool) -> String {
    use rustix::mount::{mount_move, unmount, UnmountFlags};
    use std::os::unix::process::CommandExt;
    // The slot's init mounts its own early filesystems.
    for t in [
        "/dev/pts",
        "/dev/shm",
        "/sys/fs/cgroup",
        "/tmp",
        "/run",
        "/sys",
        "/proc",
        "/dev",
    ] {
        let _ = unmount(t, UnmountFlags::DETACH);
    }
    if let Err(e) = rustix::process::chdir(SYSROOT) {
        return format!("chdir {SYSROOT}: {e}");
    }
    if let Err(e) = mount_move(".", "/") {
        return format!("moving the slot over /: {e}");
    }
    if let Err(e) = rustix::process::chroot(".") {
        return format!("chroot into the slot: {e}");
    }
    let _ = rustix::process::chdir("/");
    let err = std::process::Command::new(cfg.init.as_str())
        .env_clear()
        .env("QUILT_SLOT", slot.name())
        .env("QUILT_TRIAL", if trial { "1" } else { "0" })
        .exec();
    format!("exec {} in slot {}: {err}", cfg.init, slot.name())
}

/// Stage 2: mount the data partition.
pub fn mount_data(cfg: &Cfg) {
    use rustix::mount::{mount, MountFlags};
    let Some(dev) = cfg.data.as_ref() else {
        return;
    };
    if !wait_for(dev, 10_000) {
        event!("event=data-device-missing dev={}", dev);
        return;
    }
    let _ = std::fs::create_dir_all(cfg.data_mount.as_str());
    match mount(
        dev.as_str(),
        cfg.data_mount.as_str(),
        cfg.data_fstype.as_str(),
        MountFlags::NOSUID | MountFlags::NODEV,
        None,
    ) {
        Ok(()) => event!("event=data-mounted dev={} at={}", dev, cfg.data_mount),
        Err(e) => event!(
            "event=data-mount-failed dev={} fstype={} error=\"{}\"",
            dev,
            cfg.data_fstype,
            e
        ),
    }
}

/// A trial in progress (stage 2).
pub struct Trial {
    slot: Slot,
    deadline: crate::clock::Millis,
    health: Option<String>,
}

/// What a trial is waiting for.
pub enum Verdict {
    /// Still waiting.
    Pending,
    /// Committed.
    Committed,
    /// Failed: reboot into the previous slot.
    Failed,
}

impl Trial {
    /// Start watching, if this boot is a trial.
    pub fn begin(cfg: &Cfg, booted: Option<Booted>, now: crate::clock::Millis) -> Option<Trial> {
        let b = booted.filter(|b| b.trial)?;
        event!(
            "event=slot-trial slot={} health={} deadline_s={}",
            b.slot.name(),
            cfg.health.as_deref().unwrap_or("boot-ready"),
            cfg.health_deadline_s
        );
        Some(Trial {
            slot: b.slot,
            deadline: now.after(u64::from(cfg.health_deadline_s) * 1000),
            health: cfg.health.as_ref().map(|h| h.to_string()),
        })
    }

    /// When to look again.
    pub fn deadline(&self) -> crate::clock::Millis {
        self.deadline
    }

    /// Judge with the health service's outcome (`Some(true)`: exited 0).
    pub fn judge(
        &self,
        cfg: &Cfg,
        outcome: impl Fn(&str) -> Option<bool>,
        now: crate::clock::Millis,
    ) -> Verdict {
        let ok = match &self.health {
            None => Some(true),
            Some(h) => outcome(h),
        };
        match ok {
            Some(true) => match update_state(cfg, |s| {
                (s.trying == Some(self.slot)).then(|| quilt_slots::commit(s, self.slot))
            }) {
                Ok(s) => {
                    event!(
                        "event=slot-committed slot={} seq={}",
                        self.slot.name(),
                        s.seq
                    );
                    crate::bootcount::bless(self.slot);
                    Verdict::Committed
                }
                Err(e) => {
                    event!(
                        "event=slot-commit-failed slot={} error=\"{}\"",
                        self.slot.name(),
                        e
                    );
                    Verdict::Failed
                }
            },
            Some(false) => self.fail(cfg, "the health service failed"),
            None if now >= self.deadline => self.fail(cfg, "not healthy by the deadline"),
            None => Verdict::Pending,
        }
    }

    fn fail(&self, cfg: &Cfg, why: &str) -> Verdict {
        let r = update_state(cfg, |s| Some(quilt_slots::give_up(s)));
        event!(
            "event=slot-unhealthy slot={} reason=\"{}\" state_written={}",
            self.slot.name(),
            why,
            u8::from(r.is_ok())
        );
        Verdict::Failed
    }
}

/// The boot state for `quilt slots`: the record (a blank one reads as the
/// initial state) and how this boot came up.
pub fn info(cfg: &Cfg, booted: Option<Booted>) -> Result<quilt_proto::Reply, StateError> {
    let s = read_state(cfg)
        .map_err(|err| StateError::Read {
            device: cfg.state.to_string(),
            err,
        })?
        .map_or(State::initial(), |c| c.0);
    Ok(quilt_proto::Reply::Slots(quilt_proto::SlotsInfo {
        booted: booted.map(|b| b.slot.name().into()),
        trial: booted.is_some_and(|b| b.trial),
        primary: s.primary.name().into(),
        primary_version: s.primary_version,
        trying: s.trying.map(|t| t.name().into()),
        trying_version: s.trying_version,
        tries_left: s.tries_left,
        failed_version: s.failed_version,
        fallbacks: s.fallbacks,
    }))
}
