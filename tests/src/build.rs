//! Things built or fetched once per test process: the kernel, PID 1, other
//! workspace binaries, busybox, and the scratch directory, per guest
//! architecture ([`Arch`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{HarnessError, Result};

/// The workspace root (where `Cargo.toml`, `qemu/` and `tools/` live).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// This process's scratch directory, `target/quilt-tests/<pid>/`. Images and
/// VM logs go here and are kept after the run for debugging; directories of
/// processes that no longer exist are removed the first time this is called.
pub fn work_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = target_dir().join("quilt-tests");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name();
                let stale = name
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if stale {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir)
            .map(|()| dir.clone())
            .map_err(|e| format!("creating {}: {e}", dir.display()))
    })
    .clone()
    .map_err(|detail| HarnessError::Setup {
        what: "creating the test scratch directory".into(),
        detail,
    })
}

/// A fresh, uniquely named directory under [`work_dir`].
pub(crate) fn unique_dir(prefix: &str) -> Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = work_dir()?.join(format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).map_err(HarnessError::io("creating", &dir))?;
    Ok(dir)
}

/// Run a command; on failure return its output as the error detail.
fn run(what: &str, cmd: &mut Command) -> std::result::Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} exited with {}\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// A guest CPU architecture: which kernel, QEMU, toolchain and busybox a
/// boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Arch {
    /// `qemu-system-x86_64 -M microvm`, the rustup toolchain.
    #[default]
    X86_64,
    /// `qemu-system-aarch64 -M virt -cpu cortex-a57` (always TCG), Debian's
    /// rustc-web cross toolchain (`tools/setup.sh --arm64`).
    Aarch64,
}

impl Arch {
    /// The name the scripts take (`qemu/fetch-kernel.sh aarch64`,
    /// `tools/build-init.sh --arch aarch64`) and `.cache/kernel/<name>/`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The Rust target triple the guest binaries are built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// What `file(1)` says about an ELF binary of this architecture.
    pub fn file_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Aarch64 => "ARM aarch64",
        }
    }
}

/// Debian's stock kernel, as unpacked by `qemu/fetch-kernel.sh`.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The image QEMU's `-kernel` boots: the ELF kernel on x86_64 (fast path
    /// on microvm), the raw arm64 `Image` on aarch64.
    pub vmlinux: PathBuf,
    /// The kernel as shipped (bzImage on x86_64, `Image` on aarch64).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>` tree with `modules.dep`.
    pub modules_dir: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
}

/// The x86_64 test kernel: [`kernel_for`]`(Arch::X86_64)`.
pub fn kernel() -> Result<Kernel> {
    kernel_for(Arch::X86_64)
}

/// The test kernel for `arch`; runs `qemu/fetch-kernel.sh <arch>` once per
/// process (it returns at once when `.cache/kernel/<arch>/` is complete).
pub fn kernel_for(arch: Arch) -> Result<Kernel> {
    static K: OnceLock<Mutex<HashMap<Arch, std::result::Result<Kernel, String>>>> = OnceLock::new();
    let mut map = K
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(arch)
        .or_insert_with(|| {
            let root = repo_root();
            run(
                "qemu/fetch-kernel.sh",
                Command::new(root.join("qemu/fetch-kernel.sh")).arg(arch.name()),
            )?;
            let dir = root.join(".cache/kernel").join(arch.name());
            let version = std::fs::read_to_string(dir.join("version"))
                .map_err(|e| format!("reading {}/version: {e}", dir.display()))?
                .trim()
                .to_owned();
            let boot = match arch {
                Arch::X86_64 => "vmlinux",
                Arch::Aarch64 => "Image",
            };
            Ok(Kernel {
                vmlinux: dir.join(boot),
                vmlinuz: dir.join("vmlinuz"),
                modules_dir: dir.join("modules"),
                version,
            })
        })
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: format!("fetching the {} kernel (qemu/fetch-kernel.sh)", arch.name()),
            detail,
        })
}

/// The x86_64 kernel `tools/build-kernel.sh x86_64` built from the
/// `kernel-config/` fragments (everything quilt needs built in, no modules).
#[derive(Debug, Clone)]
pub struct BuiltKernel {
    /// The ELF `vmlinux` QEMU microvm boots (PVH entry).
    pub vmlinux: PathBuf,
    /// Its release (`build/include/config/kernel.release` beside it), when
    /// the build tree is there.
    pub release: Option<String>,
}

/// The kernel [`BuiltKernel`] describes: `QUILT_BUILT_KERNEL` if set (a
/// relative path is taken from the repository root), else
/// `target/kernel/x86_64/vmlinux` in the repository. Never builds it (that
/// takes tens of minutes): when it is missing the error says to run
/// `tools/build-kernel.sh x86_64`.
pub fn built_kernel() -> Result<BuiltKernel> {
    let (vmlinux, from) = match std::env::var_os("QUILT_BUILT_KERNEL") {
        // Relative to the repository: cargo runs tests in tests/.
        Some(p) => (repo_root().join(p), "QUILT_BUILT_KERNEL"),
        None => (
            repo_root().join("target/kernel/x86_64/vmlinux"),
            "the default path",
        ),
    };
    if !vmlinux.is_file() {
        return Err(HarnessError::Setup {
            what: "finding the kernel built from kernel-config/".into(),
            detail: format!(
                "no kernel at {} ({from}): run `tools/build-kernel.sh x86_64` first \
                 (or set QUILT_BUILT_KERNEL to a vmlinux built from kernel-config/)",
                vmlinux.display()
            ),
        });
    }
    let release = vmlinux.parent().and_then(|dir| {
        std::fs::read_to_string(dir.join("build/include/config/kernel.release"))
            .ok()
            .map(|r| r.trim().to_owned())
    });
    Ok(BuiltKernel { vmlinux, release })
}

/// A static busybox for `arch` guests, from `qemu/fetch-busybox.sh`: the
/// host's `/bin/busybox` (busybox-static) on x86_64, Debian's
/// `busybox-static:arm64` unpacked into `.cache/busybox/aarch64/` on aarch64.
pub fn busybox_for(arch: Arch) -> Result<PathBuf> {
    static B: OnceLock<FetchCache> = OnceLock::new();
    fetched(
        &B,
        "qemu/fetch-busybox.sh",
        arch,
        &format!("busybox for {}", arch.name()),
    )
}

/// The Debian sysroot the Bun runtime layer takes its glibc from for `arch`
/// guests, from `qemu/fetch-sysroot.sh`: `/` on x86_64, Debian's
/// `libc6:arm64` unpacked into `.cache/sysroot/aarch64/` on aarch64.
pub fn sysroot_for(arch: Arch) -> Result<PathBuf> {
    static S: OnceLock<FetchCache> = OnceLock::new();
    fetched(
        &S,
        "qemu/fetch-sysroot.sh",
        arch,
        &format!("the {} sysroot", arch.name()),
    )
}

type FetchCache = Mutex<HashMap<Arch, std::result::Result<PathBuf, String>>>;

/// Run a `qemu/fetch-*.sh ARCH` script once per process and arch, and take
/// the path it prints on its last line.
fn fetched(
    cache: &'static OnceLock<FetchCache>,
    script: &str,
    arch: Arch,
    what: &str,
) -> Result<PathBuf> {
    let mut map = cache
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(arch)
        .or_insert_with(|| {
            let out = run(
                script,
                Command::new(repo_root().join(script)).arg(arch.name()),
            )?;
            out.lines()
                .last()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{script} printed no path"))
        })
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: format!("fetching {what} ({script})"),
            detail,
        })
}

type BuildCache = Mutex<HashMap<(String, String), std::result::Result<PathBuf, String>>>;

fn cached_build(
    cache: &'static OnceLock<BuildCache>,
    key: (String, String),
    what: impl FnOnce() -> String,
    build: impl FnOnce() -> std::result::Result<PathBuf, String>,
) -> Result<PathBuf> {
    let cache = cache.get_or_init(Default::default);
    // Holding the lock while building serializes builds in this process,
    // which cargo's own target-dir lock would do anyway.
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(build)
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: what(),
            detail,
        })
}

/// A static x86_64 release binary for the guest: [`guest_binary_for`]
/// `(Arch::X86_64, ..)`.
pub fn guest_binary(package: &str, bin: &str) -> Result<PathBuf> {
    guest_binary_for(Arch::X86_64, package, bin)
}

/// A static release binary for `arch` guests, built once per process with
/// `tools/build-init.sh --arch <arch> -p <package> --bin <bin>` (aarch64:
/// Debian's cross toolchain, artifacts in `target/debian-rustc/`).
pub fn guest_binary_for(arch: Arch, package: &str, bin: &str) -> Result<PathBuf> {
    static CACHE: OnceLock<BuildCache> = OnceLock::new();
    cached_build(
        &CACHE,
        (format!("{}/{package}", arch.name()), bin.to_owned()),
        || format!("building {package} ({bin}) for {}", arch.name()),
        || {
            let out = run(
                "tools/build-init.sh",
                Command::new(repo_root().join("tools/build-init.sh")).args([
                    "--arch",
                    arch.name(),
                    "-p",
                    package,
                    "--bin",
                    bin,
                ]),
            )?;
            out.lines()
                .last()
                .map(PathBuf::from)
                .ok_or_else(|| "tools/build-init.sh printed no path".to_owned())
        },
    )
}

/// PID 1: `target/x86_64-unknown-linux-gnu/release/quilt-init`, statically
/// linked, built once per process.
pub fn quilt_init_binary() -> Result<PathBuf> {
    quilt_init_binary_for(Arch::X86_64)
}

/// PID 1 for `arch` guests (aarch64:
/// `target/debian-rustc/aarch64-unknown-linux-gnu/release/quilt-init`).
pub fn quilt_init_binary_for(arch: Arch) -> Result<PathBuf> {
    guest_binary_for(arch, "quilt-init", "quilt-init")
}

/// A shared library of a workspace crate (`crate-type = ["cdylib"]`), for
/// x86_64 guests whose runtime layer carries the host's glibc: built once
/// per process in the release profile; returns `target/release/<file>`.
pub fn host_cdylib(package: &str, file: &str) -> Result<PathBuf> {
    static CACHE: OnceLock<BuildCache> = OnceLock::new();
    cached_build(
        &CACHE,
        (package.to_owned(), file.to_owned()),
        || format!("building {package} ({file})"),
        || {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            run(
                "cargo build",
                Command::new(cargo).current_dir(repo_root()).args([
                    "build",
                    "--release",
                    "-p",
                    package,
                    "--lib",
                ]),
            )?;
            let path = target_dir().join("release").join(file);
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("{} was not produced", path.display()))
            }
        },
    )
}

/// A host-side workspace binary (e.g. the `quilt` CLI), built once per
/// process in the dev profile (it shares artifacts with the test build).
pub fn host_binary(package: &str, bin: &str) -> Result<PathBuf> {
    static CACHE: OnceLock<BuildCache> = OnceLock::new();
    cached_build(
        &CACHE,
        (package.to_owned(), bin.to_owned()),
        || format!("building {package} ({bin})"),
        || {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            run(
                "cargo build",
                Command::new(cargo)
                    .current_dir(repo_root())
                    .args(["build", "-p", package, "--bin", bin]),
            )?;
            let path = target_dir().join("debug").join(bin);
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("{} was not produced", path.display()))
            }
        },
    )
}
