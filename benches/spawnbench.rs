//! In-guest driver of `benches/spawn.rs`: times full container cycles on
//! the guest clock (CLOCK_MONOTONIC) and prints `BENCH key=value` lines.
//!
//! - `quilt`: quilt-container, the runtime inside quilt-init: create the
//!   cgroup, clone3 into all namespaces, build the read-only root, drop
//!   privileges, seccomp, exec, wait, remove the cgroup.
//! - `crun` / `runc`: `<runtime> run --bundle /bench/oci` of the same
//!   rootfs with the same namespace set (their own cgroup handling).
//! - `bare-bun` / `quilt-bun`: `bun hello.ts` started through the Bun
//!   layer's own loader with no isolation, against the same in a quilt
//!   container.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn median_p90(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

fn report(name: &str, us: Vec<f64>) {
    let n = us.len();
    let (m, p) = median_p90(us);
    println!("BENCH {name} n={n} median_us={m:.0} p90_us={p:.0}");
}

fn quilt_cycle(plan: &quilt_container::Plan, i: usize) -> f64 {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let t = Instant::now();
    let cg = format!("/sys/fs/cgroup/bench/q{i}");
    std::fs::create_dir(&cg).unwrap();
    let cgfd = std::fs::File::open(&cg).unwrap();
    use std::os::fd::AsFd;
    let stdio = quilt_container::Stdio {
        stdin: null.as_fd(),
        stdout: null.as_fd(),
        stderr: null.as_fd(),
        extra: &[],
    };
    let sp = quilt_container::spawn(plan, stdio, cgfd.as_fd()).unwrap();
    assert!(sp.failed.is_none(), "setup failed: {:?}", sp.failed);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(sp.pid, &mut status, 0) };
    drop(cgfd);
    std::fs::remove_dir(&cg).unwrap();
    let us = t.elapsed().as_secs_f64() * 1e6;
    assert_eq!(status, 0, "container exited with {status}");
    us
}

fn plan(layer: &str, argv: &[&str], binds: &[quilt_container::Bind<'_>]) -> quilt_container::Plan {
    std::fs::create_dir_all("/run/bench-root").unwrap();
    quilt_container::Plan::new(&quilt_container::Spec {
        hostname: "bench",
        layer: Path::new(layer),
        binds,
        tmp_bytes: 16 << 20,
        argv,
        env: &["PATH=/bin", "HOME=/tmp"],
        cwd: "/",
        uid: 1000,
        gid: 1000,
        new_net: true,
        nofile: 1024,
        staging: Path::new("/run/bench-root"),
        userns: None,
        caps: 0,
        overlays: &[],
        scratch: Path::new("/run/bench-scratch"),
        volumes: &[],
    })
    .unwrap()
}

fn oci_cycle(runtime: &str, i: usize) -> f64 {
    let t = Instant::now();
    let st = Command::new(runtime)
        // An initramfs root refuses pivot_root; both runtimes then need
        // --no-pivot (quilt-container falls back to the same by itself).
        .args([
            "run",
            "--no-pivot",
            "--bundle",
            "/bench/oci",
            &format!("{runtime}-{i}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let us = t.elapsed().as_secs_f64() * 1e6;
    assert!(st.success(), "{runtime} run failed: {st}");
    us
}

fn bare_bun(layer: &str) -> f64 {
    // The layer's own loader and libraries, no namespaces, no chroot: the
    // cheapest way to start the very same Bun.
    let t = Instant::now();
    let st = Command::new(format!(
        "{layer}/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    ))
    .args([
        "--library-path",
        &format!("{layer}/usr/lib/x86_64-linux-gnu"),
    ])
    .arg(format!("{layer}/bin/bun"))
    .arg("/bench/app/hello.ts")
    .env_clear()
    .env("HOME", "/tmp")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(st.success(), "bare bun: {st}");
    t.elapsed().as_secs_f64() * 1e6
}

/// The floor: a plain fork, exec and wait of the same `/bin/true`, with no
/// namespace, cgroup, mount or filter at all.
fn bare_true() -> f64 {
    let t = Instant::now();
    let st = Command::new("/bench/oci/rootfs/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "bare true: {st}");
    t.elapsed().as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    std::fs::create_dir_all("/sys/fs/cgroup/bench").unwrap();
    let _ = std::fs::write(
        "/sys/fs/cgroup/cgroup.subtree_control",
        "+memory +pids +cpu",
    );
    let true_plan = plan("/bench/oci/rootfs", &["/bin/true"], &[]);
    // Interleave so drift hits all three alike; first round is warm-up.
    let (mut q, mut c, mut r, mut f) = (vec![], vec![], vec![], vec![]);
    for i in 0..=n {
        let a = quilt_cycle(&true_plan, i);
        let b = oci_cycle("crun", i);
        let d = oci_cycle("runc", i);
        let e = bare_true();
        if i > 0 {
            q.push(a);
            c.push(b);
            r.push(d);
            f.push(e);
        }
    }
    report("quilt-true", q);
    report("crun-true", c);
    report("runc-true", r);
    report("bare-true", f);
    let layer = "/usr/lib/quilt/runtime/bun";
    let app = quilt_container::Bind {
        src: Path::new("/bench/app"),
        dst: "/app",
        writable: false,
    };
    let bun_plan = plan(layer, &["/bin/bun", "/app/hello.ts"], &[app]);
    let m = (n / 5).max(5);
    let (mut bare, mut qb) = (vec![], vec![]);
    for i in 0..=m {
        let a = bare_bun(layer);
        let b = quilt_cycle(&bun_plan, 100_000 + i);
        if i > 0 {
            bare.push(a);
            qb.push(b);
        }
    }
    report("bare-bun", bare);
    report("quilt-bun", qb);
    println!("BENCH done");
}
