//! `quilt image …`: assemble what a board or QEMU boots.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use quilt_imagekit::{add_busybox, add_tree, is_static_elf, Initramfs, ModuleTree};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Build an initramfs (uncompressed newc cpio: fastest to unpack under
    /// emulation) with quilt-init as /init.
    ///
    /// The boot config is compiled and checked on the way in, and the
    /// kernel modules it lists are added with their dependencies and a
    /// trimmed modules.dep, so the image boots with exactly what the config
    /// needs. Example:
    ///
    ///   quilt image initramfs --init target/x86_64-unknown-linux-gnu/release/quilt-init \
    ///     --config rootfs/etc/quilt/boot.toml --rootfs rootfs \
    ///     --modules .cache/kernel/x86_64/modules --busybox /bin/busybox --out initrd.cpio
    #[command(verbatim_doc_comment)]
    Initramfs {
        #[command(flatten)]
        root: Box<RootArgs>,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
    },
    // Help text: the doc comment on `disk_cmd::DiskArgs`.
    Disk(Box<crate::disk_cmd::DiskArgs>),
    // Help text: the doc comment on `flash::FlashArgs`.
    Flash(crate::flash::FlashArgs),
    /// Make a root image checkable by dm-verity, for a firmware bundle.
    ///
    /// Appends the image's SHA-256 hash tree to IMAGE in place (padded to
    /// 4 KiB blocks; the kernel's format 1, no salt, no superblock) and
    /// writes IMAGE.verity with its block count and root hash. Pack both
    /// into the firmware bundle: the root hash is then signed with it, the
    /// board records it in its boot state when it stages the update, and
    /// stage 1 mounts that slot only through dm-verity, so a slot altered
    /// on the medium afterwards fails to mount and the board falls back.
    /// Example:
    ///
    ///   mksquashfs rootfs/ fw/rootfs.squashfs
    ///   quilt image verity fw/rootfs.squashfs     # also writes fw/rootfs.squashfs.verity
    ///   quilt bundle pack fw --out firmware.qb && quilt bundle sign firmware.qb --key release.key
    #[command(verbatim_doc_comment)]
    Verity {
        /// The root image (a squashfs); changed in place.
        image: PathBuf,
    },
}

/// Where quilt-init starts the installer from (init/quilt-init/src/installs.rs).
pub const INSTALLER: &str = "/usr/lib/quilt/quilt-install";

/// Where boot configs start quilt-net from (docs/network.md).
pub const NET: &str = "/usr/lib/quilt/quilt-net";

/// What goes into a root: the initramfs, or a disk image's root slot.
#[derive(Args)]
pub struct RootArgs {
    /// The static quilt-init binary (tools/build-init.sh builds it).
    #[arg(long)]
    pub init: PathBuf,
    /// The static installer quilt-init starts for every install, put at
    /// /usr/lib/quilt/quilt-install [default: quilt-install beside --init,
    /// where tools/build-init.sh puts it].
    #[arg(long)]
    pub installer: Option<PathBuf>,
    /// The static network bring-up service (static addresses, DHCPv4),
    /// put at /usr/lib/quilt/quilt-net [default: quilt-net beside --init,
    /// where tools/build-init.sh puts it, if it is there].
    #[arg(long)]
    pub net: Option<PathBuf>,
    /// TOML boot config; compiled to /etc/quilt/boot.bin.
    #[arg(long)]
    pub config: PathBuf,
    /// Directory trees copied in as they are (repeatable; later wins).
    #[arg(long)]
    pub rootfs: Vec<PathBuf>,
    /// A kernel's /lib/modules/<version> tree; needed if the config
    /// lists modules.
    #[arg(long)]
    pub modules: Option<PathBuf>,
    /// Kernel release the modules belong to (default: the `version`
    /// file next to --modules, as qemu/fetch-kernel.sh writes it).
    #[arg(long)]
    pub kernel_version: Option<String>,
    /// A static busybox to add with its applet links.
    #[arg(long)]
    pub busybox: Option<PathBuf>,
    /// A `bun` binary: its read-only runtime layer (bun, the glibc
    /// files it needs, mount points) goes to /usr/lib/quilt/runtime/bun,
    /// the root of every tool container.
    #[arg(long)]
    pub bun: Option<PathBuf>,
    /// libquiltbus.so for the board (`tools/build-init.sh --cdylib
    /// libquiltbus.so -p quilt-bus-ffi`): with it, the runtime layer
    /// carries the `quilt-bus` package at /node_modules/quilt-bus, so
    /// tools `import ... from "quilt-bus"` (needs --bun).
    #[arg(long, requires = "bun")]
    pub bus_lib: Option<PathBuf>,
    /// The tool SDK directory (the repository's init/tool-sdk, after `bun
    /// install --frozen-lockfile` there): the runtime layer carries
    /// @quilt/tool and its validator at /node_modules, so tools packed
    /// without `quilt build` can `import ... from "@quilt/tool"`
    /// (needs --bun).
    #[arg(long, requires = "bun", value_name = "DIR")]
    pub tool_sdk: Option<PathBuf>,
    /// Where the Bun layer's glibc comes from when the board is another
    /// architecture than this host (qemu/fetch-sysroot.sh aarch64 unpacks
    /// Debian's libc6:arm64); default `/`.
    #[arg(long, requires = "bun")]
    pub sysroot: Option<PathBuf>,
    /// Signed bundles (.qb) to ship; quilt-init installs at boot those
    /// the trust store accepts (repeatable).
    #[arg(long = "bundle", value_name = "FILE.qb")]
    pub bundles: Vec<PathBuf>,
    /// A trust dir (*.pub and an optional policy) for /etc/quilt/trust.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Extra files as HOST:GUEST[:MODE] (mode in octal, default 0755).
    #[arg(long = "add", value_name = "HOST:GUEST[:MODE]")]
    pub add: Vec<String>,
}

/// Check that `init` can be PID 1 of an initramfs.
pub fn check_init(init: &Path) -> anyhow::Result<()> {
    if !is_static_elf(init) {
        bail!(
            "{} is not a static 64-bit ELF; an initramfs has no libc. Build it with tools/build-init.sh",
            init.display()
        );
    }
    Ok(())
}

/// What an image build reports about its config.
#[derive(Debug, Clone)]
pub struct ConfigSummary {
    pub services: usize,
    pub modules: Vec<String>,
}

/// Compile and check a boot config (`origin` names it in errors). The
/// decoded config is large (fixed-capacity tables), so only a summary
/// leaves this frame.
pub fn compile_config(text: &str, origin: &Path) -> anyhow::Result<(Vec<u8>, ConfigSummary)> {
    let bin =
        quilt_config::compile(text).map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?;
    let cfg = Box::new(
        quilt_config::decode(&bin).map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?,
    );
    let summary = ConfigSummary {
        services: cfg.services.len(),
        modules: cfg.modules.iter().map(|m| m.as_str().to_owned()).collect(),
    };
    Ok((bin, summary))
}

/// Add the kernel modules `names` (with their dependencies and a trimmed
/// modules.dep) from `modules` to `img`.
pub fn add_modules(
    img: &mut Initramfs,
    names: &[&str],
    modules: Option<&Path>,
    kernel_version: Option<&str>,
) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let Some(dir) = modules else {
        bail!(
            "the config loads modules ({}); pass --modules DIR (a kernel's lib/modules/<version>)",
            names.join(", ")
        );
    };
    let version = match kernel_version {
        Some(v) => v.to_owned(),
        None => std::fs::read_to_string(dir.join("../version"))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {}/../version; pass --kernel-version", dir.display()))?,
    };
    let tree = ModuleTree::open(dir, &version)?;
    tree.closure(names)?.add_to(img)?;
    Ok(())
}

/// The root described by `a`, with the boot config `text` (compiled from
/// `a.config`'s text, or a board's version of it) as /etc/quilt/boot.bin.
pub fn build_root(a: &RootArgs, text: &str) -> anyhow::Result<(Initramfs, ConfigSummary)> {
    check_init(&a.init)?;
    let (bin, cfg) = compile_config(text, &a.config)?;
    let mut img = Initramfs::new();
    for d in [
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/etc/quilt",
        "/var/lib/quilt",
    ] {
        img.dir(d)?;
    }
    img.dir_mode("/tmp", 0o1777)?;
    if let Some(bb) = &a.busybox {
        add_busybox(&mut img, bb).with_context(|| format!("adding {}", bb.display()))?;
    }
    for r in &a.rootfs {
        add_tree(&mut img, r).with_context(|| format!("adding tree {}", r.display()))?;
    }
    img.file("/init", &a.init, 0o755)?;
    let installer = a
        .installer
        .clone()
        .unwrap_or_else(|| a.init.with_file_name("quilt-install"));
    if !is_static_elf(&installer) {
        bail!(
            "{} is not a static 64-bit ELF (or is missing): quilt-init installs nothing itself and needs quilt-install beside it. Build both with tools/build-init.sh, or pass --installer",
            installer.display()
        );
    }
    img.file(INSTALLER, &installer, 0o755)?;
    // Optional: a board with no network needs no quilt-net, but one asked
    // for by name must be usable.
    let beside = a.init.with_file_name("quilt-net");
    match &a.net {
        Some(net) if !is_static_elf(net) => bail!(
            "{} is not a static 64-bit ELF (or is missing); build it with `tools/build-init.sh -p quilt-netup --bin quilt-net`",
            net.display()
        ),
        Some(net) => {
            img.file(NET, net, 0o755)?;
        }
        None if is_static_elf(&beside) => {
            img.file(NET, &beside, 0o755)?;
        }
        None => {}
    }
    img.bytes("/etc/quilt/boot.bin", bin, 0o644)?;
    let names: Vec<&str> = cfg.modules.iter().map(String::as_str).collect();
    add_modules(
        &mut img,
        &names,
        a.modules.as_deref(),
        a.kernel_version.as_deref(),
    )?;
    if let Some(bun) = &a.bun {
        let mut layer = quilt_imagekit::BunLayer::new(bun);
        if let Some(s) = &a.sysroot {
            layer = layer.sysroot(s);
        }
        if let Some(lib) = &a.bus_lib {
            for (name, text) in BUS_PACKAGE {
                layer = layer.bytes(&format!("/node_modules/quilt-bus/{name}"), *text, 0o444);
            }
            layer = layer.file("/node_modules/quilt-bus/libquiltbus.so", lib, 0o555);
        }
        if let Some(dir) = &a.tool_sdk {
            for (path, host) in quilt_imagekit::tool_sdk_files(dir)? {
                layer = layer.file(&path, host, 0o444);
            }
        }
        let report = layer
            .add_to(&mut img)
            .with_context(|| format!("adding the Bun runtime layer from {}", bun.display()))?;
        eprintln!(
            "bun runtime layer: {} files, {:.1} MiB",
            report.files.len(),
            report.total_bytes() as f64 / 1048576.0
        );
    }
    if let Some(dir) = &a.trust {
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            if e.file_type()?.is_file() {
                let name = e.file_name();
                img.file(
                    &format!("/etc/quilt/trust/{}", name.to_string_lossy()),
                    e.path(),
                    0o644,
                )?;
            }
        }
    }
    for qb in &a.bundles {
        let Some(name) = qb.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            bail!("--bundle {}: not a file name", qb.display());
        };
        img.file(&format!("/usr/share/quilt/bundles/{name}"), qb, 0o644)?;
    }
    for spec in &a.add {
        let mut parts = spec.splitn(3, ':');
        let (Some(host), Some(guest)) = (parts.next(), parts.next()) else {
            bail!("--add {spec:?}: expected HOST:GUEST[:MODE]");
        };
        let mode = match parts.next() {
            Some(m) => u32::from_str_radix(m, 8)
                .with_context(|| format!("--add {spec:?}: mode {m:?} is not octal"))?,
            None => 0o755,
        };
        img.file(guest, host, mode)?;
    }
    Ok((img, cfg))
}

pub fn run(cmd: ImageCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCmd::Initramfs { root, out } => {
            let text = std::fs::read_to_string(&root.config)
                .with_context(|| format!("reading {}", root.config.display()))?;
            let (img, cfg) = build_root(&root, &text)?;
            img.write_file(&out)?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "wrote {} ({:.1} MiB, {} services, {} modules)",
                out.display(),
                size as f64 / 1048576.0,
                cfg.services,
                cfg.modules.len()
            );
        }
        ImageCmd::Disk(args) => return crate::disk_cmd::run(&args),
        ImageCmd::Flash(args) => return crate::flash::run(&args),
        ImageCmd::Verity { image } => {
            let t = quilt_imagekit::verity::append_hash_tree(&image)?;
            let root = quilt_bundle::hex::encode(&t.root);
            let mut side = image.clone().into_os_string();
            side.push(".verity");
            let side = PathBuf::from(side);
            let name = image.file_name().unwrap_or_default().to_string_lossy();
            std::fs::write(
                &side,
                format!(
                    "# dm-verity of {name} (quilt image verity): its first data_blocks\n# 4 KiB blocks, the SHA-256 hash tree after them\ndata_blocks = {}\nroot = \"{root}\"\n",
                    t.data_blocks
                ),
            )
            .with_context(|| format!("writing {}", side.display()))?;
            eprintln!(
                "{}: {} data blocks + {} hash blocks, root {root}; wrote {}",
                image.display(),
                t.data_blocks,
                t.hash_blocks,
                side.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `quilt-bus` TypeScript package (init/bus-ffi/js), carried by the CLI
/// so an image always gets the wrapper matching its library's ABI.
const BUS_PACKAGE: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../init/bus-ffi/js/package.json"),
    ),
    (
        "index.ts",
        include_str!("../../../init/bus-ffi/js/index.ts"),
    ),
    (
        "index.d.ts",
        include_str!("../../../init/bus-ffi/js/index.d.ts"),
    ),
    (
        "README.md",
        include_str!("../../../init/bus-ffi/js/README.md"),
    ),
];
