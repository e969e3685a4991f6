//! One QEMU guest: start, watch its two serial channels, stop.
//!
//! Wiring (QEMU 7.2, `-M microvm`):
//! - console: `-chardev file,id=con,path=<dir>/console.log -serial chardev:con`
//!   is microvm's built-in ISA UART at 0x3f8, `ttyS0` in the guest.
//! - result channel: microvm creates only that one UART, so a second `-serial`
//!   is ignored; we add a second 16550 explicitly with
//!   `-chardev file,id=chan,path=<dir>/channel.log
//!    -device isa-serial,chardev=chan,iobase=0x2f8,irq=3`. The kernel's 8250
//!   driver probes the legacy port, so it is `/dev/ttyS1` with no module and
//!   no PCI (checked by the harness self-test).
//!
//! Wiring on aarch64 (QEMU 7.2, `-M virt -cpu cortex-a57`, always TCG):
//! - console: the PL011 (`-serial chardev:con`), `ttyAMA0` in the guest.
//! - result channel: `virt` has a single non-secure PL011 (a second `-serial`
//!   is ignored on 7.2), and `virtio_console`/`virtio_mmio` are modules in
//!   Debian's arm64 kernel, which quilt-init would only load if each test
//!   config listed them. What is built in is the PCIe host bridge and
//!   `8250_pci`, so we add QEMU's two-port PCI 16550 card,
//!   `-device pci-serial-2x,chardev1=nul,chardev2=chan`: its ports become
//!   `ttyS0` (to a null chardev) and `ttyS1` (the channel), so the guest
//!   writes to `/dev/ttyS1` on both architectures and the test scripts are
//!   the same.
//! - network ([`VmOpts::user_net`], both architectures): `-netdev user`
//!   (QEMU's built-in DHCP server, gateway and DNS; `hostfwd` from
//!   127.0.0.1 to guest ports) on `-device virtio-net-device`, the
//!   virtio-mmio transport both machines have without PCI.
//! - monitor ([`VmOpts::monitor`]): a QMP socket,
//!   `-qmp unix:<dir>/qmp.sock,server=on,wait=off`, for hot-plug during the
//!   test; [`Vm::monitor`] runs HMP commands through it
//!   (`human-monitor-command`), [`Vm::qmp`] QMP ones.
//! - `-no-reboot` always: a guest reboot ends QEMU, so does `panic=-1`
//!   (kernel panic → immediate reboot → QEMU exits 0; [`Exit::end`] tells a
//!   panic from a power-off by the console text).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::build::{kernel_for, unique_dir, Arch};
use crate::{HarnessError, Result};

/// How many console lines an error carries.
const TAIL_LINES: usize = 40;
const POLL: Duration = Duration::from_millis(20);

/// CPU emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when [`kvm_usable`], else TCG. `QUILT_ACCEL=tcg|kvm` overrides.
    Auto,
    Kvm,
    Tcg,
}

/// Options for [`Vm::boot`].
#[derive(Debug, Clone)]
pub struct VmOpts {
    /// Guest RAM in MiB.
    pub mem_mb: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// Appended to the kernel command line after the harness's own
    /// `console=ttyS0 quiet panic=-1 tsc_early_khz=...`.
    pub append: String,
    /// Extra QEMU arguments, e.g. `["-device", "i6300esb"]` (with `pcie`).
    pub extra_args: Vec<String>,
    /// `-M microvm,pcie=on`: a PCIe host bridge (ECAM via ACPI), needed for
    /// PCI devices such as `i6300esb`. Off by default: the kernel then skips
    /// PCI probing, which boots a little faster.
    pub pcie: bool,
    pub accel: Accel,
    /// Hard cap on the VM's life: every wait ends by then, and QEMU is
    /// killed when a wait runs into it.
    pub timeout: Duration,
    /// Boot this kernel (x86_64: ELF; aarch64: `Image`) instead of the
    /// cached Debian one.
    pub kernel: Option<PathBuf>,
    /// Guest architecture; the image must be built for the same one
    /// ([`crate::ImageBuilder::for_arch`]). aarch64 always runs under TCG,
    /// and ignores [`Self::pcie`] (`virt` always has PCIe).
    pub arch: Arch,
    /// A QMP socket for [`Vm::monitor`] and [`Vm::qmp`] (hot-plug).
    pub monitor: bool,
    /// A virtio-net NIC on QEMU's user-mode network ([`Self::user_net`]),
    /// with these guest TCP ports forwarded from the host.
    pub user_net: Option<Vec<u16>>,
}

impl Default for VmOpts {
    fn default() -> Self {
        Self {
            mem_mb: 512,
            cpus: 1,
            append: String::new(),
            extra_args: Vec::new(),
            pcie: false,
            accel: Accel::Auto,
            timeout: Duration::from_secs(120),
            kernel: None,
            arch: Arch::X86_64,
            monitor: false,
            user_net: None,
        }
    }
}

impl VmOpts {
    /// Add a QEMU device (`-device <spec>`), e.g. `"i6300esb"`. PCI devices
    /// also need [`Self::pcie`].
    pub fn device(mut self, spec: &str) -> Self {
        self.extra_args.push("-device".into());
        self.extra_args.push(spec.into());
        self
    }

    /// A virtio-net NIC (`virtio-net-device`, on the virtio-mmio transports
    /// both machines have; the guest loads `virtio_mmio` and `virtio_net`,
    /// and names it `eth0`) on QEMU's user-mode network: the guest's DHCP
    /// server gives it 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3. Each
    /// of `guest_ports` (TCP) is forwarded from a free port on the host's
    /// 127.0.0.1, which [`Vm::host_port`] returns.
    pub fn user_net(mut self, guest_ports: &[u16]) -> Self {
        self.user_net = Some(guest_ports.to_vec());
        self
    }

    /// Append words to the kernel command line.
    pub fn cmdline(mut self, words: &str) -> Self {
        if !self.append.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(words);
        self
    }
}

/// What [`Vm::wait_for_console`] and friends look for in a line.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// The line contains this text.
    Substring(String),
    /// The regex matches somewhere in the line.
    Regex(Regex),
}

impl Pattern {
    /// A regex pattern.
    pub fn regex(re: &str) -> Result<Self> {
        Ok(Pattern::Regex(Regex::new(re)?))
    }

    fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Substring(s) => line.contains(s.as_str()),
            Pattern::Regex(r) => r.is_match(line),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pattern::Substring(s) => format!("{s:?}"),
            Pattern::Regex(r) => format!("/{}/", r.as_str()),
        }
    }
}

impl From<&str> for Pattern {
    fn from(s: &str) -> Self {
        Pattern::Substring(s.to_owned())
    }
}

impl From<String> for Pattern {
    fn from(s: String) -> Self {
        Pattern::Substring(s)
    }
}

impl From<Regex> for Pattern {
    fn from(r: Regex) -> Self {
        Pattern::Regex(r)
    }
}

/// How the guest ended, read from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// `reboot: Power down` (e.g. `poweroff -f`, or PID 1 powering off).
    PowerOff,
    /// `reboot: Restarting system`.
    Reboot,
    /// `Kernel panic - not syncing` (PID 1 exited, or a real panic).
    Panic,
    /// None of these: QEMU was killed or crashed.
    Unknown,
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: ExitStatus,
    pub end: GuestEnd,
    /// Wall time from QEMU start to exit.
    pub wall: Duration,
}

impl Exit {
    /// QEMU exited 0 after the guest powered off.
    pub fn powered_off(&self) -> bool {
        self.status.success() && self.end == GuestEnd::PowerOff
    }
}

/// A captured output of the guest, read incrementally.
#[derive(Debug)]
struct Stream {
    name: &'static str,
    path: PathBuf,
    /// Bytes of the file already consumed by a successful wait.
    cursor: usize,
}

impl Stream {
    fn text(&self) -> String {
        let raw = std::fs::read(&self.path).unwrap_or_default();
        String::from_utf8_lossy(&raw).replace('\r', "")
    }

    /// The first not-yet-consumed line matching `pattern`; consumes up to and
    /// including it. A final line without `\n` counts only once QEMU is gone.
    fn scan(&mut self, pattern: &Pattern, finished: bool) -> Option<String> {
        // Only the unconsumed part is read, so long boots stay cheap to poll.
        let mut raw = Vec::new();
        let mut file = File::open(&self.path).ok()?;
        file.seek(SeekFrom::Start(self.cursor as u64)).ok()?;
        file.read_to_end(&mut raw).ok()?;
        let mut pos = 0;
        while pos < raw.len() {
            let rest = raw.get(pos..)?;
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(n) => (rest.get(..n)?, pos + n + 1),
                None if finished => (rest, raw.len()),
                None => return None,
            };
            let line = String::from_utf8_lossy(line).replace('\r', "");
            if pattern.matches(&line) {
                self.cursor += next;
                return Some(line);
            }
            pos = next;
        }
        None
    }
}

/// U-Boot for QEMU's arm64 `virt` machine, from Debian's `u-boot-qemu`.
pub const UBOOT_QEMU_ARM64: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// What starts a disk image in [`Vm::boot_disk`]: QEMU's firmware from
/// Debian's packages (`tools/setup.sh` installs them).
#[derive(Debug, Clone)]
pub enum Firmware {
    /// x86_64 UEFI (`ovmf`: OVMF_CODE_4M.fd). `vars`: a variable store to
    /// keep across boots (copied from OVMF_VARS_4M.fd when missing).
    Ovmf { vars: Option<PathBuf> },
    /// aarch64 UEFI (`qemu-efi-aarch64`: AAVMF_CODE.fd), `vars` likewise.
    Aavmf { vars: Option<PathBuf> },
    /// aarch64 U-Boot (`u-boot-qemu`: qemu_arm64/u-boot.bin).
    UBoot,
}

impl Firmware {
    /// The guest architecture it boots.
    pub fn arch(&self) -> Arch {
        match self {
            Firmware::Ovmf { .. } => Arch::X86_64,
            Firmware::Aavmf { .. } | Firmware::UBoot => Arch::Aarch64,
        }
    }

    /// UEFI code and variable-store template.
    fn uefi_files(&self) -> (&'static Path, &'static Path) {
        match self {
            Firmware::Aavmf { .. } => (
                Path::new("/usr/share/AAVMF/AAVMF_CODE.fd"),
                Path::new("/usr/share/AAVMF/AAVMF_VARS.fd"),
            ),
            _ => (
                Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            ),
        }
    }
}

/// A running (or finished) QEMU guest. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    dir: PathBuf,
    console: Stream,
    channel: Stream,
    started: Instant,
    deadline: Instant,
    exit: Option<(ExitStatus, Instant)>,
    command_line: String,
    accel: Accel,
    /// The QMP socket, when [`VmOpts::monitor`] asked for one.
    qmp_path: Option<PathBuf>,
    /// The QMP connection, made on first use.
    qmp: Option<BufReader<UnixStream>>,
    /// (guest port, host port) of [`VmOpts::user_net`].
    forwards: Vec<(u16, u16)>,
}

/// Whether `-accel kvm` can boot a stock kernel here: the CPU has vmx/svm,
/// `/dev/kvm` opens read-write, and it is not the nested `kvm_pvm` flavour
/// (which cannot boot an unmodified kernel).
pub fn kvm_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        hw && !Path::new("/sys/module/kvm_pvm").exists()
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok()
    })
}

/// Host TSC frequency in kHz from `/proc/cpuinfo` ("cpu MHz" × 1000). Passed
/// as `tsc_early_khz=`: without it microvm guests hang in TSC calibration in
/// about one boot in five.
pub fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    // Whole kHz; the value is far below f64's exact-integer range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((mhz * 1000.0) as u64)
}

fn resolve_accel(requested: Accel) -> Accel {
    match requested {
        Accel::Auto => match std::env::var("QUILT_ACCEL").as_deref() {
            Ok("tcg") => Accel::Tcg,
            Ok("kvm") => Accel::Kvm,
            _ if kvm_usable() => Accel::Kvm,
            _ => Accel::Tcg,
        },
        other => other,
    }
}

impl Vm {
    /// Start QEMU on `image` (an initramfs from [`crate::ImageBuilder`]).
    /// Boot `image` with `mem_mb` of RAM, wait until the guest powers
    /// itself off (a probe service's `on_exit = "poweroff"`), and return
    /// the VM and its result channel. Panics, with the console, if the
    /// guest did anything else by `timeout`.
    pub fn run_to_poweroff(image: &Path, mem_mb: u32, timeout: Duration) -> (Vm, String) {
        let mut vm = Vm::boot(
            image,
            VmOpts {
                mem_mb,
                timeout,
                ..VmOpts::default()
            },
        )
        .unwrap();
        let exit = vm.wait_exit(timeout).unwrap();
        assert!(exit.powered_off(), "{exit:?}\n{}", vm.console_text());
        let ch = vm.channel_text();
        (vm, ch)
    }

    /// Files go to a fresh directory under the test scratch dir:
    /// `console.log`, `channel.log`, `qemu.log` (QEMU's own stderr) and
    /// `cmdline.txt`.
    pub fn boot(image: &Path, opts: VmOpts) -> Result<Vm> {
        let arch = opts.arch;
        let vmlinux = match &opts.kernel {
            Some(k) => k.clone(),
            None => kernel_for(arch)?.vmlinux,
        };
        let dir = unique_dir("vm")?;
        let console_path = dir.join("console.log");
        let channel_path = dir.join("channel.log");
        // KVM cannot run another architecture's guest.
        let accel = match arch {
            Arch::X86_64 => resolve_accel(opts.accel),
            Arch::Aarch64 => Accel::Tcg,
        };

        let mut append = match arch {
            Arch::X86_64 => String::from("console=ttyS0 quiet panic=-1"),
            Arch::Aarch64 => String::from("console=ttyAMA0 quiet panic=-1"),
        };
        if arch == Arch::X86_64 {
            if let Some(khz) = host_tsc_khz() {
                append.push_str(&format!(" tsc_early_khz={khz}"));
            }
        }
        if !opts.append.is_empty() {
            append.push(' ');
            append.push_str(&opts.append);
        }
        // Extra words for every boot, for a tracing run (docs/containers.md:
        // `QUILT_VM_APPEND=loglevel=6` shows the seccomp trace's audit lines).
        if let Some(extra) = std::env::var_os("QUILT_VM_APPEND") {
            append.push(' ');
            append.push_str(&extra.to_string_lossy());
        }

        let (program, machine, cpu) = match arch {
            Arch::X86_64 if opts.pcie => ("qemu-system-x86_64", "microvm,pcie=on", "max"),
            Arch::X86_64 => ("qemu-system-x86_64", "microvm", "max"),
            // `-cpu max` is about 4x slower under TCG (pointer auth, SVE...).
            Arch::Aarch64 => ("qemu-system-aarch64", "virt", "cortex-a57"),
        };
        let path_arg = |p: &Path| p.to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "-M".into(),
            machine.into(),
            "-accel".into(),
            if accel == Accel::Kvm { "kvm" } else { "tcg" }.into(),
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            opts.cpus.to_string(),
            "-m".into(),
            opts.mem_mb.to_string(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-nic".into(),
            "none".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            path_arg(&vmlinux),
            "-initrd".into(),
            path_arg(image),
            "-append".into(),
            append,
            "-chardev".into(),
            format!("file,id=con,path={}", console_path.display()),
            "-serial".into(),
            "chardev:con".into(),
            "-chardev".into(),
            format!("file,id=chan,path={}", channel_path.display()),
        ];
        match arch {
            Arch::X86_64 => args.extend([
                "-device".into(),
                "isa-serial,chardev=chan,iobase=0x2f8,irq=3".into(),
            ]),
            Arch::Aarch64 => args.extend([
                "-chardev".into(),
                "null,id=nul".into(),
                "-device".into(),
                "pci-serial-2x,chardev1=nul,chardev2=chan".into(),
            ]),
        }
        let qmp_path = opts.monitor.then(|| dir.join("qmp.sock"));
        if let Some(q) = &qmp_path {
            args.extend([
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", q.display()),
            ]);
        }
        let mut forwards = Vec::new();
        if let Some(ports) = &opts.user_net {
            let mut netdev = String::from("user,id=n0");
            for &guest in ports {
                let host = free_host_port()?;
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
                forwards.push((guest, host));
            }
            args.extend([
                "-netdev".into(),
                netdev,
                "-device".into(),
                "virtio-net-device,netdev=n0".into(),
            ]);
        }
        args.extend(opts.extra_args.iter().cloned());

        let mut vm = Self::start(program, args, dir, opts.timeout, accel, qmp_path)?;
        vm.forwards = forwards;
        Ok(vm)
    }

    /// Boot a whole disk image the way a board does: QEMU's UEFI firmware
    /// (OVMF on x86_64 `q35`, AAVMF on aarch64 `virt`) or U-Boot
    /// (`qemu_arm64`) finds the boot loader on the disk, which starts the
    /// kernel; no `-kernel`. The disk is `virtio-blk-pci` (`/dev/vda`), the
    /// console and the result channel are wired as in [`Self::boot`]
    /// (`ttyS0`/`ttyAMA0`, `/dev/ttyS1`); x86_64 uses KVM when
    /// [`VmOpts::accel`] allows it, aarch64 TCG. The firmware's variable
    /// store is a fresh copy in the VM's directory unless the [`Firmware`]'s
    /// `vars` names one to keep across boots (a reset of the board is then a new
    /// `boot_disk` on the same disk and store: `-no-reboot` as always).
    /// `opts.append`, `kernel` and `pcie` do not apply (the boot loader's
    /// entry holds the command line).
    pub fn boot_disk(disk: &Path, firmware: &Firmware, opts: VmOpts) -> Result<Vm> {
        let arch = firmware.arch();
        let dir = unique_dir("vm")?;
        let console_path = dir.join("console.log");
        let channel_path = dir.join("channel.log");
        let (program, machine, cpu) = match arch {
            Arch::X86_64 => ("qemu-system-x86_64", "q35", "max"),
            Arch::Aarch64 => ("qemu-system-aarch64", "virt", "cortex-a57"),
        };
        let accel = match arch {
            Arch::X86_64 => resolve_accel(opts.accel),
            Arch::Aarch64 => Accel::Tcg,
        };
        let mut args: Vec<String> = vec![
            "-M".into(),
            machine.into(),
            "-accel".into(),
            if accel == Accel::Kvm { "kvm" } else { "tcg" }.into(),
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            opts.cpus.to_string(),
            "-m".into(),
            opts.mem_mb.to_string(),
            "-no-user-config".into(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-chardev".into(),
            format!("file,id=con,path={}", console_path.display()),
            "-serial".into(),
            "chardev:con".into(),
            "-chardev".into(),
            format!("file,id=chan,path={}", channel_path.display()),
            "-drive".into(),
            format!("id=disk,file={},format=raw,if=none", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=disk".into(),
        ];
        match arch {
            Arch::X86_64 => args.extend([
                "-device".into(),
                "isa-serial,chardev=chan,iobase=0x2f8,irq=3".into(),
            ]),
            Arch::Aarch64 => args.extend([
                "-chardev".into(),
                "null,id=nul".into(),
                "-device".into(),
                "pci-serial-2x,chardev1=nul,chardev2=chan".into(),
            ]),
        }
        match firmware {
            Firmware::Ovmf { vars } | Firmware::Aavmf { vars } => {
                let (code, template) = firmware.uefi_files();
                let vars = match vars {
                    Some(v) => v.clone(),
                    None => dir.join("efivars.fd"),
                };
                if !vars.exists() {
                    std::fs::copy(template, &vars)
                        .map_err(HarnessError::io("copying", template))?;
                }
                args.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
                    "-drive".into(),
                    format!("if=pflash,format=raw,file={}", vars.display()),
                ]);
            }
            Firmware::UBoot => args.extend(["-bios".into(), UBOOT_QEMU_ARM64.into()]),
        }
        let qmp_path = opts.monitor.then(|| dir.join("qmp.sock"));
        if let Some(q) = &qmp_path {
            args.extend([
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", q.display()),
            ]);
        }
        args.extend(opts.extra_args.iter().cloned());
        Self::start(program, args, dir, opts.timeout, accel, qmp_path)
    }

    fn start(
        program: &str,
        args: Vec<String>,
        dir: PathBuf,
        timeout: Duration,
        accel: Accel,
        qmp_path: Option<PathBuf>,
    ) -> Result<Vm> {
        let console_path = dir.join("console.log");
        let channel_path = dir.join("channel.log");
        let command_line = std::iter::once(program.to_owned())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let cmdline_path = dir.join("cmdline.txt");
        std::fs::write(&cmdline_path, format!("{command_line}\n"))
            .map_err(HarnessError::io("writing", &cmdline_path))?;
        let log_path = dir.join("qemu.log");
        let log = File::create(&log_path).map_err(HarnessError::io("creating", &log_path))?;
        let log2 = log
            .try_clone()
            .map_err(HarnessError::io("duplicating", &log_path))?;

        let started = Instant::now();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: program.into(),
                source,
            })?;
        Ok(Vm {
            child,
            dir,
            console: Stream {
                name: "console",
                path: console_path,
                cursor: 0,
            },
            channel: Stream {
                name: "channel",
                path: channel_path,
                cursor: 0,
            },
            started,
            deadline: started + timeout,
            exit: None,
            command_line,
            accel,
            qmp_path,
            qmp: None,
            forwards: Vec::new(),
        })
    }

    /// The host port (on 127.0.0.1) that reaches `guest_port` of the
    /// guest, if [`VmOpts::user_net`] forwarded it.
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        self.forwards
            .iter()
            .find_map(|&(g, h)| (g == guest_port).then_some(h))
    }

    /// Run an HMP command (`drive_add`, `device_add`, `device_del`, `info
    /// usb`, ...) through QMP's `human-monitor-command` and return its
    /// output. HMP reports failures as text: output starting with `Error`
    /// is returned as an error. Needs [`VmOpts::monitor`].
    pub fn monitor(&mut self, command: &str) -> Result<String> {
        let reply = self.qmp(&serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": command },
        }))?;
        let text = reply.as_str().unwrap_or_default().replace('\r', "");
        if text.trim_start().starts_with("Error") {
            return Err(HarnessError::Monitor {
                command: command.into(),
                detail: text.trim_end().into(),
            });
        }
        Ok(text)
    }

    /// Send one QMP command (`{"execute": ..., "arguments": ...}`) and
    /// return its `return` value; asynchronous events in between are
    /// skipped. Needs [`VmOpts::monitor`].
    pub fn qmp(&mut self, command: &serde_json::Value) -> Result<serde_json::Value> {
        let what = command["execute"].as_str().unwrap_or("?").to_owned();
        let err = |detail: String| HarnessError::Monitor {
            command: what.clone(),
            detail,
        };
        if self.qmp.is_none() {
            let conn = self.qmp_connect().map_err(err)?;
            self.qmp = Some(conn);
        }
        let Some(conn) = self.qmp.as_mut() else {
            return Err(err("not connected".into()));
        };
        let line = format!("{command}\n");
        conn.get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| err(format!("sending: {e}")))?;
        let reply = qmp_read(conn).map_err(err);
        if reply.is_err() {
            // A broken or out-of-step connection is not reused.
            self.qmp = None;
        }
        let reply = reply?;
        match reply.get("return") {
            Some(r) => Ok(r.clone()),
            None => Err(err(reply["error"].to_string())),
        }
    }

    /// Connect (QEMU may still be creating the socket), read the greeting
    /// and leave capabilities negotiation.
    fn qmp_connect(&mut self) -> std::result::Result<BufReader<UnixStream>, String> {
        let path = self
            .qmp_path
            .clone()
            .ok_or("the VM was booted without VmOpts::monitor")?;
        let until = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= until || self.poll_exit().is_some() => {
                    return Err(format!("connecting to {}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(POLL),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut conn = BufReader::new(stream);
        let greeting = qmp_line(&mut conn)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("no QMP greeting: {greeting}"));
        }
        conn.get_mut()
            .write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
            .map_err(|e| e.to_string())?;
        qmp_read(&mut conn)?;
        Ok(conn)
    }

    /// This VM's directory (logs, command line).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The QEMU command line, shell-quoted.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The accelerator in use (never `Auto`).
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Wall time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the guest wrote to its console so far (`\r` removed).
    pub fn console_text(&self) -> String {
        self.console.text()
    }

    /// Everything the guest wrote to `/dev/ttyS1` so far.
    pub fn channel_text(&self) -> String {
        self.channel.text()
    }

    /// The `quilt:` lines of the console so far (see [`crate::quilt_events`]).
    pub fn events(&self) -> Vec<crate::Event> {
        crate::quilt_events(&self.console_text())
    }

    /// Wait for a console line matching `pattern` and return it. Only lines
    /// after the one an earlier successful wait matched are searched, so
    /// successive waits follow the boot in order.
    pub fn wait_for_console(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<String> {
        self.wait_for(false, &pattern.into(), timeout)
    }

    /// Like [`Self::wait_for_console`], on the result channel (`/dev/ttyS1`).
    pub fn wait_for_channel(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<String> {
        self.wait_for(true, &pattern.into(), timeout)
    }

    fn wait_for(&mut self, channel: bool, pattern: &Pattern, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let until = (start + timeout).min(self.deadline);
        loop {
            let finished = self.poll_exit().is_some();
            let stream = if channel {
                &mut self.channel
            } else {
                &mut self.console
            };
            if let Some(line) = stream.scan(pattern, finished) {
                return Ok(line);
            }
            let waited_for = format!("{} to show {}", stream.name, pattern.describe());
            if let Some(status) = self.poll_exit() {
                return Err(HarnessError::Exited {
                    waited_for,
                    status,
                    tail: self.tail(),
                });
            }
            if Instant::now() >= until {
                if Instant::now() >= self.deadline {
                    self.kill();
                }
                return Err(HarnessError::Timeout {
                    waited_for,
                    after: start.elapsed(),
                    tail: self.tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some((status, Instant::now()));
            }
        }
        self.exit.map(|(s, _)| s)
    }

    /// Wait for QEMU to exit (the guest powered off, rebooted or panicked).
    /// On timeout QEMU is killed and the error carries the console tail.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Exit> {
        let start = Instant::now();
        let until = (start + timeout).min(self.deadline);
        loop {
            if let Some(status) = self.poll_exit() {
                let at = self.exit.map_or_else(Instant::now, |(_, at)| at);
                return Ok(Exit {
                    status,
                    end: self.guest_end(),
                    wall: at.duration_since(self.started),
                });
            }
            if Instant::now() >= until {
                self.kill();
                return Err(HarnessError::Timeout {
                    waited_for: "qemu to exit (killed it)".into(),
                    after: start.elapsed(),
                    tail: self.tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn guest_end(&self) -> GuestEnd {
        let text = self.console_text();
        if text.contains("Kernel panic - not syncing") {
            GuestEnd::Panic
        } else if text.contains("reboot: Power down") {
            GuestEnd::PowerOff
        } else if text.contains("reboot: Restarting system") {
            GuestEnd::Reboot
        } else {
            GuestEnd::Unknown
        }
    }

    /// Kill QEMU now (idempotent).
    pub fn kill(&mut self) {
        if self.poll_exit().is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some((status, Instant::now()));
            }
        }
    }

    /// The last console lines, the channel's last lines and QEMU's stderr,
    /// for error messages.
    fn tail(&self) -> String {
        let mut out = format!(
            "--- last {TAIL_LINES} console lines ({}) ---\n",
            self.console.path.display()
        );
        let console = self.console_text();
        let lines: Vec<&str> = console.lines().collect();
        for l in lines.iter().skip(lines.len().saturating_sub(TAIL_LINES)) {
            out.push_str(l);
            out.push('\n');
        }
        let channel = self.channel_text();
        if !channel.is_empty() {
            out.push_str("--- last 10 channel lines ---\n");
            let lines: Vec<&str> = channel.lines().collect();
            for l in lines.iter().skip(lines.len().saturating_sub(10)) {
                out.push_str(l);
                out.push('\n');
            }
        }
        let qemu = std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        if !qemu.trim().is_empty() {
            out.push_str("--- qemu stderr ---\n");
            out.push_str(qemu.trim_end());
            out.push('\n');
        }
        out.push_str(&format!("--- qemu command ---\n{}", self.command_line));
        out
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One JSON line from QMP.
fn qmp_line(conn: &mut BufReader<UnixStream>) -> std::result::Result<serde_json::Value, String> {
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => Err("QMP connection closed".into()),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("bad QMP line {line:?}: {e}")),
        Err(e) => Err(format!("reading QMP: {e}")),
    }
}

/// The next reply (`return` or `error`), skipping events.
fn qmp_read(conn: &mut BufReader<UnixStream>) -> std::result::Result<serde_json::Value, String> {
    loop {
        let v = qmp_line(conn)?;
        if v.get("return").is_some() || v.get("error").is_some() {
            return Ok(v);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick;
/// its user binds it right after, so a clash is unlikely, not impossible).
pub fn free_host_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| HarnessError::Setup {
            what: "finding a free host port for QEMU's hostfwd".into(),
            detail: e.to_string(),
        })?;
    Ok(l.port())
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
