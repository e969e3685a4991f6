//! The configuration types. Field order is the wire order: append only.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Most services one board config may declare.
pub const MAX_SERVICES: usize = 24;
/// Most argv/env entries per service.
pub const MAX_ARGS: usize = 12;
/// Most dependencies per service.
pub const MAX_AFTER: usize = 8;
/// Most kernel modules loaded at boot.
pub const MAX_MODULES: usize = 32;

/// A service or module name.
pub type Name = String<32>;
/// One argv or env entry.
pub type Arg = String<256>;
/// An absolute path.
pub type Path = String<128>;

fn default_grace_ms() -> u32 {
    5000
}

/// Everything quilt-init needs to bring a board up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Hostname set at boot; `quilt.hostname=` on the command line wins.
    #[serde(default)]
    pub hostname: Option<String<64>>,
    /// Kernel modules to load (by name, dependencies first from `modules.dep`).
    #[serde(default)]
    pub modules: Vec<Name, MAX_MODULES>,
    /// What Ctrl-Alt-Del (SIGINT to PID 1) does.
    #[serde(default)]
    pub ctrl_alt_del: PowerAction,
    /// How long services get between SIGTERM and `cgroup.kill` at shutdown.
    #[serde(default = "default_grace_ms")]
    pub shutdown_grace_ms: u32,
    /// What to do when boot cannot continue.
    #[serde(default)]
    pub fatal: Fatal,
    /// Hardware watchdog handling.
    #[serde(default)]
    pub watchdog: Watchdog,
    /// Supervised services, started in dependency order.
    #[serde(default, rename = "service")]
    pub services: Vec<Service, MAX_SERVICES>,
    /// Where signed bundles come from and where they run.
    #[serde(default)]
    pub bundles: Bundles,
    /// Shared-memory bus channels quilt-init creates at boot; containers
    /// reach one only through a `bus:<topic>:pub|sub` token.
    #[serde(default, rename = "bus")]
    pub channels: Vec<Channel, MAX_CHANNELS>,
    /// Counted resources (`llm:<name>` tokens acquire units of them).
    #[serde(default, rename = "resource")]
    pub resources: Vec<Resource, MAX_RESOURCES>,
    /// Air-gapped installs over a serial line (`quilt send`).
    #[serde(default)]
    pub update: Option<Update>,
    /// Pods: bundle services sharing network and IPC namespaces and volumes.
    #[serde(default, rename = "pod")]
    pub pods: Vec<Pod, MAX_PODS>,
    /// TCP destinations containers may reach with a `net:<ipv4>:<port>`
    /// token (both the signed token and this allow-list are needed).
    #[serde(default, rename = "net")]
    pub net: Vec<NetAllow, MAX_NET>,
    /// Air-gapped installs from USB mass storage.
    #[serde(default)]
    pub usb: Option<Usb>,
    /// A/B root slots with automatic fallback (docs/updates.md).
    #[serde(default)]
    pub slots: Option<Slots>,
    /// Board-wide bounds on tool containers.
    #[serde(default)]
    pub containers: Containers,
}

/// Board-wide bounds on tool containers (docs/containers.md "Ceilings"):
/// what a bundle's manifest leaves unset (or 0) gets the `default_*`, what
/// it asks for is clamped to the `max_*`; unset never means unlimited. All
/// runs together (and their children) live under one cgroup bounded by
/// the `runs_*`, so they cannot starve the services or PID 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Containers {
    /// `memory.max` (MiB) when the manifest sets none.
    #[serde(default = "default_memory_mib")]
    pub default_memory_mib: u32,
    /// The most `memory.max` (MiB) a manifest gets.
    #[serde(default = "max_memory_mib")]
    pub max_memory_mib: u32,
    /// `pids.max` when the manifest sets none.
    #[serde(default = "default_tasks")]
    pub default_tasks: u32,
    /// The most `pids.max` a manifest gets.
    #[serde(default = "max_tasks")]
    pub max_tasks: u32,
    /// `cpu.max` (percent of one CPU) when the manifest sets none.
    #[serde(default = "default_cpu_percent")]
    pub default_cpu_percent: u32,
    /// The most `cpu.max` (percent of one CPU) a manifest gets.
    #[serde(default = "max_cpu_percent")]
    pub max_cpu_percent: u32,
    /// `RLIMIT_NOFILE` when the manifest sets none.
    #[serde(default = "default_open_files")]
    pub default_open_files: u32,
    /// The most `RLIMIT_NOFILE` a manifest gets.
    #[serde(default = "max_open_files")]
    pub max_open_files: u32,
    /// `memory.max` (MiB) of all runs together; absent: half the RAM.
    #[serde(default)]
    pub runs_memory_mib: Option<u32>,
    /// `pids.max` of all runs together.
    #[serde(default = "runs_tasks")]
    pub runs_tasks: u32,
    /// `cpu.max` of all runs together (percent of one CPU); absent: every
    /// CPU but a quarter of one, kept for the services and PID 1.
    #[serde(default)]
    pub runs_cpu_percent: Option<u32>,
}

fn default_memory_mib() -> u32 {
    256
}
fn max_memory_mib() -> u32 {
    1024
}
fn default_tasks() -> u32 {
    64
}
fn max_tasks() -> u32 {
    512
}
fn default_cpu_percent() -> u32 {
    100
}
fn max_cpu_percent() -> u32 {
    400
}
fn default_open_files() -> u32 {
    1024
}
fn max_open_files() -> u32 {
    65_536
}
fn runs_tasks() -> u32 {
    1024
}

impl Default for Containers {
    fn default() -> Self {
        Containers {
            default_memory_mib: default_memory_mib(),
            max_memory_mib: max_memory_mib(),
            default_tasks: default_tasks(),
            max_tasks: max_tasks(),
            default_cpu_percent: default_cpu_percent(),
            max_cpu_percent: max_cpu_percent(),
            default_open_files: default_open_files(),
            max_open_files: max_open_files(),
            runs_memory_mib: None,
            runs_tasks: runs_tasks(),
            runs_cpu_percent: None,
        }
    }
}

/// A/B root slots. In the initramfs, quilt-init picks a slot from the
/// boot-state partition, mounts it as the new root and execs `init` from
/// it; that quilt-init mounts `data`, and, when its slot is on trial,
/// commits it once `health` has exited 0 (or fails it at the deadline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// The boot-state partition (raw, two 64-byte records).
    pub state: Path,
    /// Root slot A's partition.
    pub a: Path,
    /// Root slot B's partition.
    pub b: Path,
    /// The root slots' filesystem (read-only).
    #[serde(default = "default_slot_fstype")]
    pub fstype: Name,
    /// The data partition (bundle store), mounted read-write.
    #[serde(default)]
    pub data: Option<Path>,
    /// Its filesystem.
    #[serde(default = "default_data_fstype")]
    pub data_fstype: Name,
    /// Where it is mounted.
    #[serde(default = "default_data_mount")]
    pub data_mount: Path,
    /// Boots a new slot gets to report healthy (1 = try once).
    #[serde(default = "default_tries")]
    pub tries: u8,
    /// The service whose exit with status 0 means "healthy" (none: reaching
    /// boot-ready is healthy).
    #[serde(default)]
    pub health: Option<Name>,
    /// A trial slot not healthy by then is failed (the board reboots into
    /// the previous slot).
    #[serde(default = "default_health_deadline")]
    pub health_deadline_s: u32,
    /// Reboot into a newly written slot at once.
    #[serde(default = "yes")]
    pub reboot_after_update: bool,
    /// What to exec in the slot.
    #[serde(default = "default_slot_init")]
    pub init: Path,
    /// The bundle names this board takes as its firmware (root images
    /// for the other slot). Only these are ever staged, and each needs
    /// the trust policy's firmware threshold; any other bundle declaring
    /// the `firmware` runtime is refused at install (docs/updates.md).
    #[serde(default)]
    pub firmware: Vec<String<64>, MAX_FIRMWARE>,
}

/// Most bundle names one board takes as firmware.
pub const MAX_FIRMWARE: usize = 2;

fn default_slot_fstype() -> Name {
    let mut n = Name::new();
    let _ = n.push_str("squashfs");
    n
}

fn default_data_fstype() -> Name {
    let mut n = Name::new();
    let _ = n.push_str("ext4");
    n
}

fn default_data_mount() -> Path {
    path_of("/data")
}

fn default_tries() -> u8 {
    1
}

fn default_health_deadline() -> u32 {
    120
}

fn default_slot_init() -> Path {
    path_of("/sbin/init")
}

/// Most `[[net]]` destinations.
pub const MAX_NET: usize = 16;

/// One destination the board lets containers reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetAllow {
    /// `a.b.c.d:port`, written as the token writes it.
    pub to: String<24>,
}

/// Most filesystem types tried on a USB device.
pub const MAX_FSTYPES: usize = 8;

/// A filesystem type as `mount(2)` takes it (`vfat`, `ext4`, `exfat`).
/// The same type as a service name, so decoding it adds no code to init.
pub type FsType = Name;

/// Installs from USB sticks: quilt-init watches kernel uevents, mounts a
/// USB block device that appears (read-only, nosuid, nodev, noexec), offers
/// every `*.qb` in its top directory to the store and unmounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usb {
    /// `false` keeps the section but ignores USB devices.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Filesystems tried in order; their modules (and the USB host and
    /// storage drivers) must be built in or listed in `modules`.
    #[serde(default = "default_fstypes")]
    pub fstypes: Vec<FsType, MAX_FSTYPES>,
    /// Where a device is mounted while its bundles are installed.
    #[serde(default = "default_usb_mountpoint")]
    pub mountpoint: Path,
}

fn default_fstypes() -> Vec<FsType, MAX_FSTYPES> {
    let mut v = Vec::new();
    for t in ["vfat", "ext4"] {
        let mut s = FsType::new();
        // Both fit: 4 bytes into 32, 2 entries into 8.
        let _ = s.push_str(t);
        let _ = v.push(s);
    }
    v
}

fn default_usb_mountpoint() -> Path {
    path_of("/run/quilt/usb")
}

impl Default for Usb {
    fn default() -> Self {
        Usb {
            enabled: true,
            fstypes: default_fstypes(),
            mountpoint: default_usb_mountpoint(),
        }
    }
}

/// Most pods.
pub const MAX_PODS: usize = 8;
/// Most services or volumes in a pod.
pub const MAX_POD_MEMBERS: usize = 8;

/// Bundle services that share a network and IPC namespace (the first
/// one's) and named volumes, started and stopped as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// `[a-z0-9_-]`, not a service's name.
    pub name: Name,
    /// Member services (bundle services), the first one creating the
    /// namespaces the others join.
    pub services: Vec<Name, MAX_POD_MEMBERS>,
    /// Volume names; a member reaches one with an `fs:<volume>:ro|rw`
    /// token, at `/run/volumes/<volume>`.
    #[serde(default)]
    pub volumes: Vec<Name, MAX_POD_MEMBERS>,
    /// Members share one PID namespace too (they see and may signal each
    /// other's processes, as their uid allows).
    #[serde(default)]
    pub pid: bool,
}

/// Where `quilt send` reaches the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// A serial line of its own (not the console): a UART such as
    /// `/dev/ttyS2`, or a virtio port such as `/dev/vport0p1`.
    pub port: Path,
    /// Line speed for a UART (ignored by virtio ports).
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

/// Most counted resources.
pub const MAX_RESOURCES: usize = 16;

/// A counted resource: at most `capacity` units held at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The token that reaches it, e.g. `llm:gpt`.
    pub name: String<64>,
    /// Units (1..=1024).
    pub capacity: u32,
}

/// Most bus channels.
pub const MAX_CHANNELS: usize = 16;
/// Most bytes of shared memory one channel may take (slots × slot size).
pub const MAX_CHANNEL_BYTES: u64 = 64 << 20;

/// One bus channel. Its size is fixed here, never by a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// `[a-z0-9._-]`, 1-48 bytes; request/reply pairs are `<x>.req`/`<x>.rep`.
    pub topic: String<48>,
    /// Messages the ring holds (1..=65536).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Bytes per message (8..=16 MiB, a multiple of 8).
    #[serde(default = "default_slot_size")]
    pub slot_size: u32,
    /// Back-pressure when a subscriber is a whole ring behind.
    #[serde(default)]
    pub mode: BusMode,
    /// Subscriber regions: how many containers may subscribe at once (1..=16).
    #[serde(default = "default_subscribers")]
    pub subscribers: u8,
}

/// Back-pressure of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusMode {
    /// The publisher waits (or is refused) until the slowest subscriber
    /// frees a slot: for commands.
    #[default]
    Block,
    /// The oldest message is overwritten: for telemetry.
    DropOldest,
}

fn default_slots() -> u32 {
    64
}

fn default_slot_size() -> u32 {
    4096
}

fn default_subscribers() -> u8 {
    4
}

/// Bundle locations. Defaults match the image layout (`rootfs/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundles {
    /// `.qb` files shipped in the image, installed at boot if the trust
    /// store accepts them.
    #[serde(default = "default_bundle_dir")]
    pub dir: Path,
    /// The content-addressed store (on the data partition on boards).
    #[serde(default = "default_store")]
    pub store: Path,
    /// Trusted `*.pub` keys and `policy`.
    #[serde(default = "default_trust")]
    pub trust: Path,
    /// The Bun runtime layer: the read-only root of every tool container.
    #[serde(default = "default_runtime")]
    pub runtime: Path,
    /// Board name checked against a bundle's `boards` list.
    #[serde(default)]
    pub board: Option<Name>,
    /// Warm pools: pre-started, isolated containers per bundle, parked on
    /// an empty stdin so that a run skips Bun's start-up. Each serves one
    /// request and is replaced; none is ever reused.
    #[serde(default)]
    pub warm: Vec<Warm, MAX_WARM>,
    /// The installer (`quilt-install`, one process per install, out of
    /// PID 1) may use this much memory (`memory.max`, MiB); past it the
    /// kernel kills it and the install fails, nothing else.
    #[serde(default = "default_installer_memory_mib")]
    pub installer_memory_mib: u32,
    /// An install (or a stick, or staging firmware) still running after
    /// this many seconds is killed and fails.
    #[serde(default = "default_install_deadline_s")]
    pub install_deadline_s: u32,
}

fn default_installer_memory_mib() -> u32 {
    256
}

fn default_install_deadline_s() -> u32 {
    600
}

/// Most bundles with a warm pool.
pub const MAX_WARM: usize = 4;

/// One warm pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warm {
    /// Installed bundle name.
    pub bundle: String<64>,
    /// Containers kept waiting (1..=4).
    pub count: u8,
}

fn path_of(s: &str) -> Path {
    let mut p = Path::new();
    // All defaults are far below the capacity.
    let _ = p.push_str(s);
    p
}

fn default_bundle_dir() -> Path {
    path_of("/usr/share/quilt/bundles")
}

fn default_store() -> Path {
    path_of("/var/lib/quilt/store")
}

fn default_trust() -> Path {
    path_of("/etc/quilt/trust")
}

fn default_runtime() -> Path {
    path_of("/usr/lib/quilt/runtime/bun")
}

impl Default for Bundles {
    fn default() -> Self {
        Bundles {
            dir: default_bundle_dir(),
            store: default_store(),
            trust: default_trust(),
            runtime: default_runtime(),
            board: None,
            warm: Vec::new(),
            installer_memory_mib: default_installer_memory_mib(),
            install_deadline_s: default_install_deadline_s(),
        }
    }
}

/// A power state change PID 1 can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerAction {
    /// Do nothing.
    Ignore,
    /// Orderly shutdown, then restart.
    #[default]
    Reboot,
    /// Orderly shutdown, then halt the CPU.
    Halt,
    /// Orderly shutdown, then power off.
    Poweroff,
}

/// What happens after a fatal boot error has been printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fatal {
    /// `reboot`, `halt` or `poweroff` after `delay_s`; `ignore` waits forever.
    #[serde(default)]
    pub action: PowerAction,
    /// Seconds to leave the message on screen first.
    #[serde(default = "default_fatal_delay")]
    pub delay_s: u32,
    /// An emergency shell to exec instead, if it exists in the image.
    #[serde(default)]
    pub shell: Option<Path>,
}

fn default_fatal_delay() -> u32 {
    10
}

impl Default for Fatal {
    fn default() -> Self {
        Fatal {
            action: PowerAction::Reboot,
            delay_s: default_fatal_delay(),
            shell: None,
        }
    }
}

/// Watchdog settings. The device is used whenever it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    /// `false` leaves the device alone.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Device node.
    #[serde(default = "default_watchdog_dev")]
    pub device: Path,
    /// Timeout to program, in seconds; 0 keeps the driver's.
    #[serde(default)]
    pub timeout_s: u32,
}

fn ignore() -> PowerAction {
    PowerAction::Ignore
}

fn yes() -> bool {
    true
}

fn default_watchdog_dev() -> Path {
    let mut p = Path::new();
    // Fits: 13 bytes into 128.
    let _ = p.push_str("/dev/watchdog");
    p
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            enabled: true,
            device: default_watchdog_dev(),
            timeout_s: 0,
        }
    }
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the exit status.
    #[default]
    Always,
    /// Only after a non-zero exit or death by signal.
    OnFailure,
    /// Never: a one-shot.
    Never,
}

/// How a service says it is ready, so that services `after` it may start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ready {
    /// Ready as soon as it has been exec'd.
    #[default]
    Started,
    /// s6 style: the service writes a line to this fd (3..=9).
    Fd(u8),
    /// The service creates this file.
    File(Path),
}

/// Resource limits written into the service's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `memory.max` in bytes.
    #[serde(default)]
    pub memory_max: Option<u64>,
    /// `cpu.max` quota in microseconds per `cpu_period_us`.
    #[serde(default)]
    pub cpu_quota_us: Option<u32>,
    /// `cpu.max` period; 100 ms when absent.
    #[serde(default)]
    pub cpu_period_us: Option<u32>,
    /// `pids.max`.
    #[serde(default)]
    pub pids_max: Option<u32>,
    /// `io.max` `rbps` and `wbps` on every block device, bytes per second.
    #[serde(default)]
    pub io_bps: Option<u64>,
    /// `io.max` `riops` and `wiops` on every block device.
    #[serde(default)]
    pub io_iops: Option<u32>,
}

fn default_backoff_ms() -> u32 {
    100
}

fn default_backoff_max_ms() -> u32 {
    30_000
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name: `[a-z0-9_-]`, also the cgroup's name.
    pub name: Name,
    /// argv; `exec[0]` is an absolute path. For a `bundle` service, extra
    /// arguments passed to the tool's entry.
    #[serde(default)]
    pub exec: Vec<Arg, MAX_ARGS>,
    /// `KEY=value` entries; the environment is otherwise empty but for PATH.
    #[serde(default)]
    pub env: Vec<Arg, MAX_ARGS>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<Path>,
    /// User id to run as.
    #[serde(default)]
    pub uid: u32,
    /// Group id to run as.
    #[serde(default)]
    pub gid: u32,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub after: Vec<Name, MAX_AFTER>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// First restart delay; doubles on each quick crash.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u32,
    /// Ceiling of the restart delay.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u32,
    /// Readiness notification.
    #[serde(default)]
    pub ready: Ready,
    /// cgroup limits.
    #[serde(default)]
    pub limits: Limits,
    /// Copy the service's output to the console as well as its log ring.
    #[serde(default = "yes")]
    pub console: bool,
    /// What PID 1 does once this service has exited for good (a one-shot
    /// "check, print, power off" job, or a service the board cannot live
    /// without).
    #[serde(default = "ignore")]
    pub on_exit: PowerAction,
    /// Run this installed bundle under Bun in its own container instead of
    /// `exec` on the host.
    #[serde(default)]
    pub bundle: Option<Name>,
    /// A file fed to the service on stdin (e.g. a tool's JSON input).
    #[serde(default)]
    pub input: Option<Path>,
    /// A control socket of its own, `/run/quilt/control.d/<name>.sock`
    /// (its uid's, mode 0600), that lets it ask PID 1 for these verbs
    /// and no others: how a gateway such as `quiltd`, which is not root,
    /// drives the board. Empty: no socket. Plain services only (a
    /// container's powers come from its signed tokens).
    #[serde(default)]
    pub control: Vec<Verb, MAX_VERBS>,
}

/// Most verbs one service's control socket may grant.
pub const MAX_VERBS: usize = 10;

/// What a service's own control socket lets it ask (`control = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// List services and runs (`ps`), pods and counted resources.
    List,
    /// Run, spawn, wait for and stop tools.
    Run,
    /// Read (and follow) a service's output.
    Logs,
    /// Subscribe to the event stream.
    Events,
    /// Start, stop and restart services.
    Services,
    /// List the installed bundles.
    Bundles,
    /// Install and remove bundles; firmware is installed but not staged
    /// without `firmware`.
    Install,
    /// Stage installed firmware to the other slot.
    Firmware,
    /// Read the A/B slot state.
    Slots,
    /// Start processes inside services' containers.
    Exec,
}

impl Verb {
    /// As written in the boot config.
    pub fn name(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Run => "run",
            Verb::Logs => "logs",
            Verb::Events => "events",
            Verb::Services => "services",
            Verb::Bundles => "bundles",
            Verb::Install => "install",
            Verb::Firmware => "firmware",
            Verb::Slots => "slots",
            Verb::Exec => "exec",
        }
    }
}
