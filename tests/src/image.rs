//! Initramfs assembly for a test boot.

use std::path::{Path, PathBuf};

use quilt_imagekit::{Initramfs, ModuleTree};

use crate::build::{
    busybox_for, guest_binary_for, kernel_for, quilt_init_binary_for, sysroot_for, unique_dir,
};
use crate::{Arch, HarnessError, Result};

/// `busybox` and a `/bin/<applet>` symlink per applet. A busybox of another
/// architecture cannot be asked for `--list`; `qemu/fetch-busybox.sh` puts
/// the list in an `applets` file next to it.
fn add_busybox(image: &mut Initramfs, busybox: &Path) -> std::result::Result<(), String> {
    let list = busybox.with_file_name("applets");
    if !list.exists() {
        return quilt_imagekit::add_busybox(image, busybox)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    if !quilt_imagekit::is_static_elf(busybox) {
        return Err("not a static ELF binary".into());
    }
    let applets =
        std::fs::read_to_string(&list).map_err(|e| format!("reading {}: {e}", list.display()))?;
    image
        .file("/bin/busybox", busybox, 0o755)
        .map_err(|e| e.to_string())?;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        image
            .symlink(&format!("/bin/{applet}"), "busybox")
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Builds a test initramfs. Methods chain by value and never fail on the
/// spot: the first error is kept and returned by [`ImageBuilder::build`], so
/// a test reads as one expression. Later entries replace earlier ones at the
/// same path.
#[derive(Debug)]
pub struct ImageBuilder {
    image: Initramfs,
    /// Which quilt-init, guest binaries, busybox and kernel modules go in.
    arch: Arch,
    quilt_init: bool,
    modules: Vec<String>,
    error: Option<HarnessError>,
}

/// Where quilt-init starts the installer from (init/quilt-init/src/installs.rs).
pub const INSTALLER: &str = "/usr/lib/quilt/quilt-install";

/// Where boot configs start quilt-net from (docs/network.md).
pub const NET: &str = "/usr/lib/quilt/quilt-net";

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// Base directories plus quilt-init at `/init` (built by
    /// [`crate::quilt_init_binary`] when [`Self::build`] runs, unless the test put
    /// its own `/init` in).
    pub fn new() -> Self {
        Self::for_arch(Arch::X86_64)
    }

    /// [`Self::new`] for an `arch` guest: quilt-init, [`Self::guest_bin`]s,
    /// [`Self::busybox`] and [`Self::modules`] are that architecture's (boot
    /// it with `VmOpts { arch, .. }`).
    pub fn for_arch(arch: Arch) -> Self {
        let mut b = Self::empty_for(arch);
        b.quilt_init = true;
        b
    }

    /// Base directories only (`/dev /proc /sys /run /tmp /etc/quilt`), no
    /// `/init`: for tests that boot something other than quilt-init.
    pub fn empty() -> Self {
        Self::empty_for(Arch::X86_64)
    }

    /// [`Self::empty`] for an `arch` guest.
    pub fn empty_for(arch: Arch) -> Self {
        let mut b = Self {
            image: Initramfs::new(),
            arch,
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
        match guest_binary_for(self.arch, package, bin) {
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

    /// `/bin/busybox` from Debian's busybox-static ([`crate::busybox_for`]:
    /// the host's on x86_64, `busybox-static:arm64` on aarch64), with a
    /// `/bin/<applet>` symlink for every applet it has (sh, sleep, kill,
    /// insmod, poweroff, ...). Kernel-started `/init` scripts get no `PATH`;
    /// busybox `sh` defaults to `/sbin:/usr/sbin:/bin:/usr/bin`, so plain
    /// names work.
    pub fn busybox(mut self) -> Self {
        let added = busybox_for(self.arch).and_then(|path| {
            add_busybox(&mut self.image, &path).map_err(|detail| HarnessError::Setup {
                what: format!("adding {} (busybox-static)", path.display()),
                detail,
            })
        });
        if let Err(e) = added {
            self.error.get_or_insert(e);
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
            let k = kernel_for(self.arch)?;
            let tree = ModuleTree::open(&k.modules_dir, &k.version)?;
            let names: Vec<&str> = self.modules.iter().map(String::as_str).collect();
            tree.closure(&names)?.add_to(&mut self.image)?;
        }
        if self.quilt_init && !self.image.contains("/init") {
            let init = quilt_init_binary_for(self.arch)?;
            // tools/build-init.sh builds the installer and quilt-net
            // beside PID 1.
            let installer = init.with_file_name("quilt-install");
            let net = init.with_file_name("quilt-net");
            self.image.file("/init", init, 0o755)?;
            if !self.image.contains(INSTALLER) {
                self.image.file(INSTALLER, installer, 0o755)?;
            }
            if !self.image.contains(NET) {
                self.image.file(NET, net, 0o755)?;
            }
        }
        let path = unique_dir("image")?.join("initrd.cpio");
        self.image.write_file(&path)?;
        Ok(path)
    }
}

/// `init/tool-sdk` with its validator installed from its lockfile (`bun
/// install --frozen-lockfile`, once per process; needs the npm registry
/// the first time).
pub fn tool_sdk_dir() -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::build::repo_root().join("init/tool-sdk");
        let bun = bun_binary().map_err(|e| e.to_string())?;
        let out = std::process::Command::new(&bun)
            .args(["install", "--frozen-lockfile"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("starting {}: {e}", bun.display()))?;
        if !out.status.success() {
            return Err(format!(
                "bun install --frozen-lockfile in {} exited with {}: {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        Ok(dir)
    })
    .clone()
    .map_err(|detail| HarnessError::Setup {
        what: "installing the tool SDK's dependencies".into(),
        detail,
    })
}

/// The host's Bun for x86_64 guests, from `tools/fetch-bun.sh` (the pinned
/// npm package, cached in `.cache/bun/x86_64/`); fetched once per process.
pub fn bun_binary() -> Result<PathBuf> {
    bun_binary_for(Arch::X86_64)
}

/// Bun for `arch` guests, from `tools/fetch-bun.sh <arch>` (cached in
/// `.cache/bun/<arch>/`); fetched once per process and architecture.
pub fn bun_binary_for(arch: Arch) -> Result<PathBuf> {
    type Cache =
        std::sync::Mutex<std::collections::HashMap<Arch, std::result::Result<PathBuf, String>>>;
    static BUN: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let mut map = BUN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(arch)
        .or_insert_with(|| {
            let script = crate::build::repo_root().join("tools/fetch-bun.sh");
            let out = std::process::Command::new(&script)
                .arg(arch.name())
                .output()
                .map_err(|e| format!("starting {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .map(PathBuf::from)
                .ok_or_else(|| "tools/fetch-bun.sh printed no path".to_owned())
        })
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: format!("fetching Bun for {} (tools/fetch-bun.sh)", arch.name()),
            detail,
        })
}

/// Bun tool images: the runtime layer, tool directories and signed bundles.
impl ImageBuilder {
    /// The Bun runtime layer (`quilt_imagekit::BunLayer`: `bin/bun`, its
    /// glibc closure, the loader, `etc/`, empty mount points) at
    /// `quilt_imagekit::BUN_LAYER_PREFIX`, built from the builder's
    /// architecture's [`bun_binary_for`] and glibc ([`crate::sysroot_for`]:
    /// the host's on x86_64, `libc6:arm64` unpacked on aarch64).
    pub fn bun_runtime(mut self) -> Self {
        let arch = self.arch;
        let added = bun_binary_for(arch).and_then(|bun| {
            let sysroot = sysroot_for(arch)?;
            quilt_imagekit::BunLayer::new(bun)
                .sysroot(sysroot)
                .add_to(&mut self.image)
                .map_err(|e| HarnessError::Setup {
                    what: "adding the Bun runtime layer".into(),
                    detail: error_chain(&e),
                })
        });
        if let Err(e) = added {
            self.error.get_or_insert(e);
        }
        self
    }

    /// The bus client package (`init/bus-ffi/js` and `libquiltbus.so`) at
    /// `/node_modules/quilt-bus/` of the runtime layer, where Bun resolves
    /// `import ... from "quilt-bus"` for any tool under `/app`. x86_64 only
    /// (the library is built for the host).
    pub fn bus_client(mut self) -> Self {
        let arch = self.arch;
        let added = crate::build::host_cdylib("quilt-bus-ffi", "libquiltbus.so").and_then(|lib| {
            // The layer again, now with the package and the library's own
            // closure (libgcc_s for Rust's std): the same paths are replaced.
            let mut layer =
                quilt_imagekit::BunLayer::new(bun_binary_for(arch)?).sysroot(sysroot_for(arch)?);
            let js = crate::build::repo_root().join("init/bus-ffi/js");
            let entries = std::fs::read_dir(&js).map_err(|e| HarnessError::Setup {
                what: format!("reading {}", js.display()),
                detail: e.to_string(),
            })?;
            for e in entries.flatten().filter(|e| e.path().is_file()) {
                let name = e.file_name().to_string_lossy().into_owned();
                layer = layer.file(&format!("/node_modules/quilt-bus/{name}"), e.path(), 0o444);
            }
            layer = layer.file("/node_modules/quilt-bus/libquiltbus.so", lib, 0o555);
            layer
                .add_to(&mut self.image)
                .map(|_| ())
                .map_err(|e| HarnessError::Setup {
                    what: "adding the bus client to the runtime layer".into(),
                    detail: error_chain(&e),
                })
        });
        if let Err(e) = added {
            self.error.get_or_insert(e);
        }
        self
    }

    /// The tool SDK (`init/tool-sdk`, [`tool_sdk_dir`]) and its validator at
    /// `/node_modules/@quilt/tool` and `/node_modules/@cfworker/json-schema`
    /// of the runtime layer, where Bun resolves `import ... from
    /// "@quilt/tool"` for any tool under `/app`.
    pub fn tool_sdk(mut self) -> Self {
        let arch = self.arch;
        let added = tool_sdk_dir().and_then(|dir| {
            let files = quilt_imagekit::tool_sdk_files(&dir).map_err(|e| HarnessError::Setup {
                what: "listing the tool SDK's files".into(),
                detail: error_chain(&e),
            })?;
            let mut layer =
                quilt_imagekit::BunLayer::new(bun_binary_for(arch)?).sysroot(sysroot_for(arch)?);
            for (path, host) in files {
                layer = layer.file(&path, host, 0o444);
            }
            layer
                .add_to(&mut self.image)
                .map(|_| ())
                .map_err(|e| HarnessError::Setup {
                    what: "adding the tool SDK to the runtime layer".into(),
                    detail: error_chain(&e),
                })
        });
        if let Err(e) = added {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Copy a host directory (e.g. `examples/hello`) to `dst`, keeping
    /// permission bits and symlinks.
    pub fn tree(mut self, dst: &str, src: impl AsRef<Path>) -> Self {
        if let Err(e) = copy_tree(&mut self.image, dst, src.as_ref()) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// `examples/<name>` packed, signed by the process's test key and
    /// verified ([`crate::signed_example`]), installed where quilt-init's
    /// `[bundles]` defaults look: `/usr/share/quilt/bundles/<name>.qb`, with
    /// the test key's `.pub` and policy in `/etc/quilt/trust/`.
    pub fn signed_example(self, name: &str) -> Self {
        self.signed_tool(name, &crate::bundles::example_dir(name))
    }

    /// Any tool directory (e.g. `tests/fixtures/tools/<name>`) packed and
    /// signed like [`Self::signed_example`], installed as `<name>.qb`.
    pub fn signed_tool(mut self, name: &str, dir: &Path) -> Self {
        match crate::bundles::signed_bundle(dir) {
            Ok(b) => {
                self = self.file(&format!("/usr/share/quilt/bundles/{name}.qb"), b.qb, 0o644);
                self.tree("/etc/quilt/trust", b.trust)
            }
            Err(e) => {
                self.error.get_or_insert(e);
                self
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn copy_tree(image: &mut Initramfs, dst: &str, src: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir(src).map_err(HarnessError::io("listing", src))?;
    image.dir(dst)?;
    for e in entries {
        let e = e.map_err(HarnessError::io("listing", src))?;
        let path = e.path();
        let to = format!(
            "{}/{}",
            dst.trim_end_matches('/'),
            e.file_name().to_string_lossy()
        );
        let meta = std::fs::symlink_metadata(&path).map_err(HarnessError::io("reading", &path))?;
        if meta.is_dir() {
            copy_tree(image, &to, &path)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(HarnessError::io("reading", &path))?;
            image.symlink(&to, &target.to_string_lossy())?;
        } else {
            image.file(&to, &path, meta.permissions().mode() & 0o7777)?;
        }
    }
    Ok(())
}
