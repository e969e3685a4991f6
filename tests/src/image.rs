//! Initramfs assembly for a test boot.

use std::path::{Path, PathBuf};
use std::process::Command;

use quilt_imagekit::{Initramfs, ModuleTree};

use crate::build::{guest_binary, kernel, quilt_init_binary, unique_dir};
use crate::{HarnessError, Result};

/// Where Debian's busybox-static puts its binary (tools/setup.sh installs it).
const HOST_BUSYBOX: &str = "/bin/busybox";

/// Builds a test initramfs. Methods chain by value and never fail on the
/// spot: the first error is kept and returned by [`ImageBuilder::build`], so
/// a test reads as one expression. Later entries replace earlier ones at the
/// same path.
#[derive(Debug)]
pub struct ImageBuilder {
    image: Initramfs,
    quilt_init: bool,
    modules: Vec<String>,
    error: Option<HarnessError>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// Base directories plus quilt-init at `/init` (built by
    /// [`quilt_init_binary`] when [`Self::build`] runs, unless the test put
    /// its own `/init` in).
    pub fn new() -> Self {
        let mut b = Self::empty();
        b.quilt_init = true;
        b
    }

    /// Base directories only (`/dev /proc /sys /run /tmp /etc/quilt`), no
    /// `/init`: for tests that boot something other than quilt-init.
    pub fn empty() -> Self {
        let mut b = Self {
            image: Initramfs::new(),
            quilt_init: false,
            modules: Vec::new(),
            error: None,
        };
        for d in ["/dev", "/proc", "/sys", "/run", "/etc/quilt"] {
            b = b.dir(d);
        }
        b.step(|img| img.dir_mode("/tmp", 0o1777).map(drop))
    }

    fn step(
        mut self,
        f: impl FnOnce(&mut Initramfs) -> std::result::Result<(), quilt_imagekit::ImageError>,
    ) -> Self {
        if self.error.is_none() {
            if let Err(e) = f(&mut self.image) {
                self.error = Some(e.into());
            }
        }
        self
    }

    /// Compile a boot config (`quilt_config::compile`) into
    /// `/etc/quilt/boot.bin`.
    pub fn config_toml(mut self, text: &str) -> Self {
        match quilt_config::compile(text) {
            Ok(bin) => self.bytes("/etc/quilt/boot.bin", bin, 0o644),
            Err(e) => {
                self.error.get_or_insert(e.into());
                self
            }
        }
    }

    /// Copy a host file to `dst` with permission bits `mode`.
    pub fn file(self, dst: &str, src: impl AsRef<Path>, mode: u32) -> Self {
        let src = src.as_ref().to_path_buf();
        self.step(|img| img.file(dst, src, mode).map(drop))
    }

    /// A file with the given contents.
    pub fn bytes(self, dst: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.step(|img| img.bytes(dst, data, mode).map(drop))
    }

    /// A static binary of this workspace, built for the guest with
    /// `tools/build-init.sh -p <package> --bin <bin>` (e.g. an in-guest
    /// checker program), copied to `dst` with mode 0755.
    pub fn guest_bin(mut self, dst: &str, package: &str, bin: &str) -> Self {
        match guest_binary(package, bin) {
            Ok(path) => self.file(dst, path, 0o755),
            Err(e) => {
                self.error.get_or_insert(e);
                self
            }
        }
    }

    /// A symlink `dst -> target`.
    pub fn symlink(self, dst: &str, target: &str) -> Self {
        self.step(|img| img.symlink(dst, target).map(drop))
    }

    /// A directory (mode 0755).
    pub fn dir(self, dst: &str) -> Self {
        self.step(|img| img.dir(dst).map(drop))
    }

    /// `/bin/busybox` from Debian's busybox-static, with a `/bin/<applet>`
    /// symlink for every applet it has (sh, sleep, kill, insmod, poweroff,
    /// ...). Kernel-started `/init` scripts get no `PATH`; busybox `sh`
    /// defaults to `/sbin:/usr/sbin:/bin:/usr/bin`, so plain names work.
    pub fn busybox(mut self) -> Self {
        let list = Command::new(HOST_BUSYBOX).arg("--list").output();
        let applets = match list {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => {
                self.error.get_or_insert(HarnessError::Setup {
                    what: format!("{HOST_BUSYBOX} --list"),
                    detail: format!("exited with {}", out.status),
                });
                return self;
            }
            Err(source) => {
                self.error.get_or_insert(HarnessError::Spawn {
                    program: format!("{HOST_BUSYBOX} (busybox-static)"),
                    source,
                });
                return self;
            }
        };
        if !has_no_interpreter(Path::new(HOST_BUSYBOX)) {
            self.error.get_or_insert(HarnessError::Setup {
                what: format!("checking {HOST_BUSYBOX}"),
                detail: "it is dynamically linked (Debian's `busybox`); the guest has no \
                         libc: install busybox-static (tools/setup.sh)"
                    .into(),
            });
            return self;
        }
        self = self.file("/bin/busybox", HOST_BUSYBOX, 0o755);
        for applet in applets.lines().map(str::trim) {
            if applet.is_empty() || applet == "busybox" || applet.contains('/') {
                continue;
            }
            self = self.symlink(&format!("/bin/{applet}"), "busybox");
        }
        self
    }

    /// These kernel modules and their dependencies under
    /// `/lib/modules/<version>/`, with a `modules.dep` listing exactly them
    /// in load order (see `quilt_imagekit::ModuleClosure`).
    pub fn modules(mut self, names: &[&str]) -> Self {
        self.modules.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// Resolve modules, add quilt-init if needed, write the archive to a new
    /// file under the test scratch dir and return its path.
    pub fn build(mut self) -> Result<PathBuf> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.modules.is_empty() {
            let k = kernel()?;
            let tree = ModuleTree::open(&k.modules_dir, &k.version)?;
            let names: Vec<&str> = self.modules.iter().map(String::as_str).collect();
            tree.closure(&names)?.add_to(&mut self.image)?;
        }
        if self.quilt_init && !self.image.contains("/init") {
            self.image.file("/init", quilt_init_binary()?, 0o755)?;
        }
        let path = unique_dir("image")?.join("initrd.cpio");
        self.image.write_file(&path)?;
        Ok(path)
    }
}

/// Whether an ELF64 little-endian file has no `PT_INTERP` program header,
/// i.e. runs without a dynamic loader. Unreadable or non-ELF64 files count as
/// "no".
fn has_no_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| {
        data.get(o..o + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // "\x7fELF", class 2 (64-bit), data 1 (little-endian).
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum))
        .all(|i| u32_at(phoff + i * usize::from(phentsize)).is_some_and(|t| t != PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_elf() {
        // The test binary itself is dynamically linked (default gnu target).
        let me = std::env::current_exe().unwrap_or_default();
        assert!(!has_no_interpreter(&me));
        if Path::new(HOST_BUSYBOX).exists() {
            assert!(has_no_interpreter(Path::new(HOST_BUSYBOX)));
        }
        assert!(!has_no_interpreter(Path::new("/nonexistent")));
    }
}
