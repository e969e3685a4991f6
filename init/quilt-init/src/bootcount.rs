//! The boot loader's half of the A/B fallback: systemd-boot's Automatic
//! Boot Assessment (docs/images.md).
//!
//! Each slot has an entry on the ESP, `loader/entries/quilt-a.conf`; a slot
//! on trial has a counting one, `quilt-b+3-0.conf`, which systemd-boot
//! renames before each boot (`+2-1`, ...). An entry at `+0-N` is bad and
//! boots last, so a slot whose kernel or stage 1 never gets as far as
//! quilt-init is left behind by the boot loader alone. The entry passes
//! `quilt.slot=a|b` on the kernel command line; quilt-init then:
//!
//! - in stage 1, before choosing: if the boot state has a trial for a slot
//!   the boot loader has marked bad, and the boot loader started the other
//!   slot, the trial is over (`bootloader-fallback`; the boot state then
//!   records the fallback as for any failed trial);
//! - in stage 1, after choosing: if it chose a slot other than the one the
//!   boot loader started (a trial that used up quilt-init's own tries), it
//!   marks the started slot's entry bad, so the next boot loads the chosen
//!   slot's kernel again (`bootloader-marked-bad`);
//! - in stage 2, when a trial is committed: renames the slot's entry to its
//!   plain name, which systemd-boot never counts (`bootloader-blessed`).
//!
//! Without `quilt.slot=` (QEMU `-kernel` boots, other boot loaders) or
//! without a partition named `esp`, nothing here happens. The ESP is found
//! by its GPT name (`PARTNAME=esp` in `/sys/class/block/*/uevent`) and
//! mounted only for the moment of a check or rename.

use crate::event;
use quilt_slots::{Slot, State};

const ESP_MOUNT: &str = "/run/quilt-esp";
const ENTRIES: &str = "loader/entries";

/// A slot's entry file name: `quilt-b.conf` or `quilt-b+2-1.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryName {
    pub slot: Slot,
    /// `(tries left, tries done)` when counting.
    pub count: Option<(u32, u32)>,
}

impl EntryName {
    /// Parse a file name in `loader/entries`.
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_suffix(".conf")?.strip_prefix("quilt-")?;
        let (slot, count) = match stem.split_once('+') {
            None => (stem, None),
            Some((slot, c)) => {
                let (left, done) = c.split_once('-').unwrap_or((c, "0"));
                (slot, Some((left.parse().ok()?, done.parse().ok()?)))
            }
        };
        Some(EntryName {
            slot: Slot::parse(slot)?,
            count,
        })
    }

    /// The boot loader has given up on it.
    pub fn bad(&self) -> bool {
        matches!(self.count, Some((0, _)))
    }

    /// The file name.
    pub fn file(&self) -> String {
        match self.count {
            None => format!("quilt-{}.conf", self.slot.name()),
            Some((l, d)) => format!("quilt-{}+{l}-{d}.conf", self.slot.name()),
        }
    }
}

/// Stage 1, before choosing: the state with a trial the boot loader has
/// already given up on (its entry bad, the other slot started) turned into
/// a failed trial. Pure: `loader` is the slot the boot loader started,
/// `entries` the entry names on the ESP.
pub fn reconcile_state(state: State, loader: Slot, entries: &[EntryName]) -> Option<State> {
    let trial = state.trying.filter(|_| state.tries_left > 0)?;
    let gave_up = entries.iter().any(|e| e.slot == trial && e.bad());
    (loader != trial && gave_up).then(|| quilt_slots::give_up(state))
}

/// The slot in `quilt.slot=` on the kernel command line.
fn loader_slot() -> Option<Slot> {
    let text = crate::mounts::read_bounded("/proc/cmdline").ok()?;
    let slot = Slot::parse(crate::cmdline::parse(&text).slot?);
    slot
}

/// `/dev/NAME` of the partition whose GPT name is `esp`.
fn esp_device() -> Option<String> {
    for e in std::fs::read_dir("/sys/class/block").ok()?.flatten() {
        let uevent = std::fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
        if uevent.lines().any(|l| l == "PARTNAME=esp") {
            let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            return Some(format!("/dev/{dev}"));
        }
    }
    None
}

/// The ESP, mounted for the life of this value.
struct Esp;

impl Esp {
    fn mount() -> Option<Esp> {
        use rustix::mount::{mount, MountFlags};
        let dev = esp_device()?;
        let _ = rustix::fs::mkdir(ESP_MOUNT, rustix::fs::Mode::from_raw_mode(0o700));
        match mount(
            dev.as_str(),
            ESP_MOUNT,
            "vfat",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"codepage=437,iocharset=ascii"),
        ) {
            Ok(()) => Some(Esp),
            Err(e) => {
                event!(
                    "event=bootloader-esp-unmountable dev={} error=\"{}\"",
                    dev,
                    e
                );
                None
            }
        }
    }

    fn entries(&self) -> Vec<EntryName> {
        std::fs::read_dir(format!("{ESP_MOUNT}/{ENTRIES}"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| EntryName::parse(e.file_name().to_str()?))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rename `from` to `to` and make it stick (FAT has no journal).
    fn rename(&self, from: &EntryName, to: &EntryName) -> std::io::Result<()> {
        let dir = format!("{ESP_MOUNT}/{ENTRIES}");
        std::fs::rename(
            format!("{dir}/{}", from.file()),
            format!("{dir}/{}", to.file()),
        )?;
        let d = std::fs::File::open(&dir)?;
        rustix::fs::syncfs(&d)?;
        Ok(())
    }
}

impl Drop for Esp {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(ESP_MOUNT, rustix::mount::UnmountFlags::empty());
    }
}

/// Stage 1, before choosing (see the module doc): `Some` replaces the
/// record read, `s`.
pub fn before_choosing(s: State) -> Option<State> {
    let loader = loader_slot()?;
    // Only a pending trial can have been given up on.
    s.trying.filter(|_| s.tries_left > 0)?;
    let esp = Esp::mount()?;
    let next = reconcile_state(s, loader, &esp.entries());
    if let (Some(n), Some(t)) = (next, s.trying) {
        event!(
            "event=bootloader-fallback from={} to={} version={} reason=\"the boot loader gave up on it\"",
            t.name(),
            loader.name(),
            n.trying_version
        );
    }
    next
}

/// Stage 1, after choosing `chosen` (see the module doc).
pub fn after_choosing(chosen: Slot) {
    let Some(loader) = loader_slot() else {
        return;
    };
    if loader == chosen {
        return;
    }
    let Some(esp) = Esp::mount() else {
        return;
    };
    let entries = esp.entries();
    // Only if the boot loader can start the chosen slot instead.
    if !entries.iter().any(|e| e.slot == chosen && !e.bad()) {
        return;
    }
    if let Some(e) = entries.iter().find(|e| e.slot == loader && !e.bad()) {
        let done = e.count.map_or(1, |(l, d)| l + d);
        let bad = EntryName {
            slot: loader,
            count: Some((0, done)),
        };
        match esp.rename(e, &bad) {
            Ok(()) => event!(
                "event=bootloader-marked-bad slot={} entry={}",
                loader.name(),
                bad.file()
            ),
            Err(err) => event!(
                "event=bootloader-rename-failed entry={} error=\"{}\"",
                e.file(),
                err
            ),
        }
    }
}

/// Stage 2, `slot` committed: its counting entry becomes a plain one.
pub fn bless(slot: Slot) {
    if loader_slot().is_none() {
        return;
    }
    let Some(esp) = Esp::mount() else {
        return;
    };
    for e in esp.entries() {
        if e.slot == slot && e.count.is_some() {
            let good = EntryName { slot, count: None };
            match esp.rename(&e, &good) {
                Ok(()) => event!(
                    "event=bootloader-blessed slot={} entry={} was={}",
                    slot.name(),
                    good.file(),
                    e.file()
                ),
                Err(err) => event!(
                    "event=bootloader-rename-failed entry={} error=\"{}\"",
                    e.file(),
                    err
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> EntryName {
        EntryName::parse(s).unwrap()
    }

    #[test]
    fn entry_names_round_trip() {
        for f in ["quilt-a.conf", "quilt-b+3-0.conf", "quilt-b+0-3.conf"] {
            assert_eq!(name(f).file(), f);
        }
        assert!(name("quilt-b+0-3.conf").bad());
        assert!(!name("quilt-b+1-2.conf").bad());
        assert!(!name("quilt-a.conf").bad());
        assert_eq!(name("quilt-b+2.conf").count, Some((2, 0)));
        for f in ["quilt-c.conf", "other.conf", "quilt-a+x-1.conf", "quilt-a"] {
            assert_eq!(EntryName::parse(f), None, "{f}");
        }
    }

    fn trial_b() -> State {
        quilt_slots::stage(State::initial(), Slot::B, 2, 1).unwrap()
    }

    #[test]
    fn a_trial_the_boot_loader_gave_up_on_fails() {
        let s = trial_b();
        let after = reconcile_state(
            s,
            Slot::A,
            &[name("quilt-a.conf"), name("quilt-b+0-1.conf")],
        )
        .unwrap();
        assert_eq!(after.tries_left, 0);
        let d = quilt_slots::decide(Some(after));
        assert_eq!(d.slot, Slot::A);
        assert_eq!(d.fell_back_from, Some(Slot::B));
    }

    #[test]
    fn otherwise_the_state_stands() {
        let s = trial_b();
        // The boot loader started the trial slot.
        assert_eq!(
            reconcile_state(s, Slot::B, &[name("quilt-b+0-1.conf")]),
            None
        );
        // Its entry still has tries (or there is none: an update that put
        // no kernel on the ESP keeps A's kernel).
        assert_eq!(
            reconcile_state(s, Slot::A, &[name("quilt-b+1-0.conf")]),
            None
        );
        assert_eq!(reconcile_state(s, Slot::A, &[name("quilt-a.conf")]), None);
        // No trial.
        assert_eq!(
            reconcile_state(State::initial(), Slot::A, &[name("quilt-b+0-1.conf")]),
            None
        );
    }
}
