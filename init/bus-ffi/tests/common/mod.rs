//! Running Bun against `libquiltbus.so` as a container would.

#![allow(dead_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The pinned Bun, fetched (once, cached) by `tools/fetch-bun.sh`.
pub fn bun() -> PathBuf {
    let out = Command::new(repo_root().join("tools/fetch-bun.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tools/fetch-bun.sh");
    assert!(
        out.status.success(),
        "tools/fetch-bun.sh failed ({}); Bun is needed for this test (tools/setup.sh installs npm)",
        out.status
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `libquiltbus.so` as cargo built it for this test run (the library
/// target is built with all its crate types before integration tests).
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [
        deps.join("libquiltbus.so"),
        deps.parent().unwrap().join("libquiltbus.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("libquiltbus.so next to the test binary; run `cargo build -p quilt-bus-ffi`")
}

/// A scratch root with `node_modules/quilt-bus` linked to the package, as
/// `/node_modules/quilt-bus` is in the runtime layer.
pub fn scratch_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("node_modules")).unwrap();
    std::os::unix::fs::symlink(
        repo_root().join("init/bus-ffi/js"),
        tmp.path().join("node_modules/quilt-bus"),
    )
    .unwrap();
    tmp
}

/// A tool directory under `root` holding `script` as `index.ts`.
pub fn stage(root: &Path, name: &str, script: &Path) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(script, dir.join("index.ts")).unwrap();
    dir
}

/// What `quilt-init` gives one container: inherited fds (dup() clears
/// CLOEXEC) and the `QUILT_BUS` entries naming them. Drop the fds once
/// the child is spawned.
pub fn hand_out(entries: &[(&str, &str, Vec<BorrowedFd<'_>>)]) -> (Vec<OwnedFd>, String) {
    let mut kept = Vec::new();
    let mut spec = Vec::new();
    for (topic, role, fds) in entries {
        let numbers: Vec<String> = fds
            .iter()
            .map(|fd| {
                let dup = rustix::io::dup(fd).unwrap();
                let n = dup.as_raw_fd().to_string();
                kept.push(dup);
                n
            })
            .collect();
        spec.push(format!("{topic}:{role}:{}", numbers.join(",")));
    }
    (kept, spec.join(";"))
}

/// `bun index.ts` in `dir` with the bus environment.
pub fn spawn(bun: &Path, dir: &Path, quilt_bus: &str, stdin: Stdio) -> Child {
    spawn_entry(bun, dir, "index.ts", quilt_bus, stdin)
}

/// `bun ENTRY` in `dir` with the bus environment.
pub fn spawn_entry(bun: &Path, dir: &Path, entry: &str, quilt_bus: &str, stdin: Stdio) -> Child {
    Command::new(bun)
        .arg(entry)
        .current_dir(dir)
        .env("QUILT_BUS", quilt_bus)
        .env("QUILT_BUS_LIB", cdylib())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit` (killing it after); its status and
/// stdout.
pub fn finish(mut child: Child, limit: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bun did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out)
}
