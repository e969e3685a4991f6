//! Container spawn cost inside one guest, side by side in the same run:
//! quilt-container (the runtime inside quilt-init) against `crun run` and
//! `runc run` (Debian's packages, copied into the guest with their
//! libraries) on the same static busybox rootfs and namespace set, and a
//! Bun tool in a quilt container against bare `bun` (no isolation); and the
//! floor, a bare fork+exec+wait of the same `/bin/true`.
//!
//! Run: `cargo bench -p quilt-system-tests --bench spawn` (N cycles:
//! QUILT_SPAWNS, default 50). Figures are guest CLOCK_MONOTONIC under QEMU
//! TCG: absolute numbers are emulation-inflated, ratios are the point.
//!
//! Differences in what each does: quilt also installs its two seccomp
//! filters (the allow-list and the deny filter) and empties the capability
//! bounding set; the OCI config given to crun
//! and runc has no seccomp profile and empty capability sets, and both use
//! --no-pivot (the initramfs root refuses pivot_root, as for quilt).

use quilt_imagekit::LibClosure;
use quilt_system_tests::{guest_binary, repo_root, ImageBuilder, Vm, VmOpts};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const OCI: &str = r#"{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": { "uid": 1000, "gid": 1000 },
    "args": ["/bin/true"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": { "bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": [] },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "bench",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=64k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
    { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=16m"] }
  ],
  "linux": {
    "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }]
  }
}
"#;

fn ensure_runtimes() {
    for (bin, pkg) in [("/usr/bin/crun", "crun"), ("/usr/sbin/runc", "runc")] {
        if !Path::new(bin).exists() {
            eprintln!("installing {pkg} (Debian) for the comparison");
            let ok = Command::new("apt-get")
                .args(["install", "-y", "-qq", pkg])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "could not install {pkg}; run `apt-get update` first");
        }
    }
}

fn with_libs(mut b: ImageBuilder, bin: &Path, guest: &str) -> ImageBuilder {
    let closure = LibClosure::resolve(bin, Path::new("/")).unwrap();
    if let Some(interp) = &closure.interp {
        b = b.file(interp, interp, 0o755);
    }
    for lib in &closure.libs {
        let name = Path::new(&lib.path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        b = b.file(
            &format!("/usr/lib/x86_64-linux-gnu/{name}"),
            &lib.path,
            0o755,
        );
    }
    b.file(guest, bin, 0o755)
}

fn main() {
    ensure_runtimes();
    let n: usize = std::env::var("QUILT_SPAWNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let driver = guest_binary("quilt-system-tests", "quilt-spawnbench").unwrap();
    let hello = repo_root().join("examples/hello/hello.ts");
    let mut b = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .file("/bin/spawnbench", &driver, 0o755)
        .bytes("/bench/oci/config.json", OCI, 0o644)
        .file("/bench/oci/rootfs/bin/busybox", "/bin/busybox", 0o755)
        .symlink("/bench/oci/rootfs/bin/true", "busybox")
        .file("/bench/app/hello.ts", &hello, 0o644);
    for d in ["tmp", "dev", "proc", "sys", "app", "run"] {
        b = b.dir(&format!("/bench/oci/rootfs/{d}"));
    }
    b = with_libs(b, Path::new("/usr/bin/crun"), "/usr/bin/crun");
    b = with_libs(b, Path::new("/usr/sbin/runc"), "/usr/bin/runc");
    let config = format!(
        "[[service]]\nname = \"bench\"\nexec = [\"/bin/spawnbench\", \"{n}\"]\nrestart = \"never\"\non_exit = \"poweroff\"\n"
    );
    let image = b.config_toml(&config).build().unwrap();
    let t = Duration::from_secs(1800);
    // Under TCG the default clocksource ticks in 4 ms steps; the TSC gives
    // microseconds.
    let opts = VmOpts {
        mem_mb: 1024,
        timeout: t,
        ..VmOpts::default()
    }
    .cmdline("clocksource=tsc tsc=reliable");
    let mut vm = Vm::boot(&image, opts).unwrap();
    let exit = vm.wait_exit(t).unwrap();
    let con = vm.console_text();
    let get = |name: &str| -> Option<(f64, f64, usize)> {
        let line = con
            .lines()
            .find(|l| l.contains(&format!("BENCH {name} ")))?;
        let f = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some((f("median_us=")?, f("p90_us=")?, f("n=")? as usize))
    };
    if !con.contains("BENCH done") {
        panic!(
            "benchmark did not finish ({exit:?}); console tail:\n{}",
            con.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!("container spawn -> exit inside one QEMU TCG guest (guest clock), same run");
    println!(
        "{:<34} {:>5} {:>12} {:>10} {:>12}",
        "what", "n", "median ms", "p90 ms", "vs quilt"
    );
    let (q, _, _) = get("quilt-true").unwrap();
    for (name, label) in [
        ("quilt-true", "quilt-container /bin/true"),
        ("crun-true", "crun run /bin/true"),
        ("runc-true", "runc run /bin/true"),
        ("bare-true", "fork+exec+wait /bin/true (floor)"),
    ] {
        let (m, p, n) = get(name).unwrap();
        println!(
            "{:<34} {:>5} {:>12.2} {:>10.2} {:>11.2}x",
            label,
            n,
            m / 1000.0,
            p / 1000.0,
            m / q
        );
    }
    let (bare, bp, bn) = get("bare-bun").unwrap();
    let (qb, qp, qn) = get("quilt-bun").unwrap();
    println!(
        "{:<34} {:>5} {:>12.2} {:>10.2}",
        "bare bun hello.ts (no isolation)",
        bn,
        bare / 1000.0,
        bp / 1000.0
    );
    println!(
        "{:<34} {:>5} {:>12.2} {:>10.2}",
        "bun hello.ts in a quilt container",
        qn,
        qb / 1000.0,
        qp / 1000.0
    );
    println!(
        "quilt/crun spawn ratio {:.3} (goal <= 0.2); container overhead on a Bun tool {:.1} ms",
        q / get("crun-true").unwrap().0,
        (qb - bare) / 1000.0
    );
}
