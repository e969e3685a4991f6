//! `quilt send` end to end: the real binary on one side of a pty (or a Unix
//! socket), a real receiver on a real store on the other. The test thread
//! plays the board: it reads the line, feeds quilt-link's receiver, writes
//! its answers back, and may cut or corrupt the line on the way.

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::{Context, Policy, SecretKey, Trust};
use quilt_link::receiver::ReceiverStats;
use quilt_link::store::StoreStorage;
use quilt_link::{Outcome, Receiver, ReceiverConfig};
use quilt_store::Store;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn key() -> SecretKey {
    SecretKey::from_seed([4; 32])
}

fn bundle(dir: &Path, version: u64, big: usize) -> PathBuf {
    let mut b = Builder::new();
    b.file(
        "main.ts",
        0o644,
        format!("console.log({version});\n").as_bytes(),
    );
    b.file("data.bin", 0o644, &noise(big, 3));
    b.file("var.bin", 0o644, &noise(30_000, version));
    let qb = b
        .finish(HeaderFields::new("agents/serial", version, "main.ts"))
        .unwrap()
        .to_qb(&[&key()])
        .unwrap();
    let path = dir.join(format!("v{version}.qb"));
    std::fs::write(&path, qb).unwrap();
    path
}

fn store(dir: &Path) -> Store {
    let trust = Trust::new(vec![key().public()], Policy::parse("").unwrap()).unwrap();
    Store::open(&dir.join("store"), trust).unwrap()
}

/// A pty pair: the master (the board's end) and the slave's path, which
/// `quilt send` opens. The slave is also held open here so the master does
/// not read EIO between two runs of the command.
struct Pty {
    master: OwnedFd,
    _slave: OwnedFd,
    path: PathBuf,
}

fn pty() -> Pty {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let path = PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap()
        .into();
    let mut t = rustix::termios::tcgetattr(&slave).unwrap();
    t.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t).unwrap();
    Pty {
        master,
        _slave: slave,
        path,
    }
}

fn quilt_send(port: &Path, file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(["send", "--quiet", "--timeout", "20", "--port"])
        .arg(port)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Plays the board on `fd` until `stop` says so (checked every round), or
/// 60 s pass. `fault` may change or drop each byte arriving from the host.
fn serve(
    fd: impl AsFd,
    rx: &mut Receiver,
    store: &mut Store,
    fault: &mut dyn FnMut(u64, u8) -> Option<u8>,
    stop: &mut dyn FnMut(&Receiver) -> bool,
) {
    let fd = fd.as_fd();
    let start = Instant::now();
    let mut storage = StoreStorage::new(store, Context::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    while start.elapsed() < Duration::from_secs(60) {
        let now = start.elapsed().as_millis() as u64;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        if poll(&mut fds, Some(&ts)).unwrap_or(0) > 0 {
            match rustix::io::read(fd, &mut buf) {
                Ok(n) if n > 0 => {
                    let mut got = Vec::with_capacity(n);
                    for &b in &buf[..n] {
                        if let Some(x) = fault(seen, b) {
                            got.push(x);
                        }
                        seen += 1;
                    }
                    rx.feed(&got, now, &mut storage);
                }
                Ok(_) | Err(rustix::io::Errno::IO) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => panic!("reading the board's end: {e}"),
            }
        }
        rx.tick(now);
        while !rx.pending().is_empty() {
            match rustix::io::write(fd, rx.pending()) {
                Ok(n) => rx.consume(n),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => panic!("writing the board's end: {e}"),
            }
        }
        if stop(rx) {
            return;
        }
    }
    panic!("the board's end gave up after 60 s: {:?}", rx.stats());
}

fn clean(_: u64, b: u8) -> Option<u8> {
    Some(b)
}

fn finish(child: Child) -> (bool, i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn done(rx: &Receiver) -> bool {
    rx.outcome().is_some() && rx.pending().is_empty()
}

fn rate(stats: &ReceiverStats, secs: f64) -> String {
    format!(
        "{} payload bytes, {} bytes on the line, {:.2}% payload, {:.2} MB/s",
        stats.payload,
        stats.rx.bytes,
        100.0 * stats.payload as f64 / stats.rx.bytes as f64,
        stats.rx.bytes as f64 / secs / 1e6
    )
}

#[test]
fn sends_over_a_pty_installs_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let qb = bundle(d.path(), 1, 1_000_000);
    let len = std::fs::metadata(&qb).unwrap().len();
    let mut s = store(d.path());
    let p = pty();
    let mut rx = Receiver::new(ReceiverConfig::default());
    let t = Instant::now();
    let child = quilt_send(&p.path, &qb);
    serve(&p.master, &mut rx, &mut s, &mut clean, &mut done);
    let secs = t.elapsed().as_secs_f64();
    let (ok, _, stdout, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("installed agents/serial version 1: sent "),
        "{stdout}"
    );
    assert_eq!(rx.stats().payload, len);
    assert_eq!(s.get("agents/serial").unwrap().version, 1);
    // The figure docs/update-link.md quotes for a pty at full speed.
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "pty, {build} build, spawn to install: {} in {secs:.2}s",
        rate(&rx.stats(), secs)
    );
}

#[test]
fn a_killed_send_resumes_and_corruption_is_resent() {
    let d = tempfile::tempdir().unwrap();
    let qb = bundle(d.path(), 1, 1_500_000);
    let len = std::fs::metadata(&qb).unwrap().len();
    let mut s = store(d.path());
    let p = pty();
    // First run: killed once the board has about half.
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut child = quilt_send(&p.path, &qb);
    serve(&p.master, &mut rx, &mut s, &mut clean, &mut |rx| {
        rx.stats().payload > len / 2
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(s.installed().is_empty());
    let first = rx.stats().payload;
    // The board reboots too: only its disk stays. Second run, with a bit
    // flipped every 20 000 bytes on the way in.
    drop(s);
    let mut s = store(d.path());
    let mut rx = Receiver::new(ReceiverConfig::default());
    let child = quilt_send(&p.path, &qb);
    let mut fault = |i: u64, b: u8| Some(if i % 20_000 == 19_999 { b ^ 0x04 } else { b });
    serve(&p.master, &mut rx, &mut s, &mut fault, &mut done);
    let (ok, _, stdout, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("the board already held"), "{stdout}");
    let second = rx.stats();
    assert!(second.rx.crc_errors > 0, "{second:?}");
    assert!(
        second.payload < len * 7 / 10,
        "resume fetched {} of {len} (first run {first})",
        second.payload
    );
    let dest = d.path().join("out");
    s.materialize("agents/serial", &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("data.bin")).unwrap(),
        noise(1_500_000, 3)
    );
}

#[test]
fn a_tampered_bundle_is_refused_over_a_unix_socket() {
    let d = tempfile::tempdir().unwrap();
    let good = bundle(d.path(), 1, 100_000);
    let mut s = store(d.path());
    let mut bytes = std::fs::read(bundle(d.path(), 2, 100_000)).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x80;
    let bad = d.path().join("bad.qb");
    std::fs::write(&bad, bytes).unwrap();

    let sock = d.path().join("upd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for (file, want_ok) in [(&good, true), (&bad, false)] {
        let child = quilt_send(&sock, file);
        let (conn, _) = listener.accept().unwrap();
        let mut rx = Receiver::new(ReceiverConfig::default());
        serve(&conn, &mut rx, &mut s, &mut clean, &mut done);
        let (ok, code, stdout, stderr) = finish(child);
        assert_eq!(ok, want_ok, "{stdout}{stderr}");
        if !want_ok {
            assert_eq!(code, 3);
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains("refused agents/serial version 2") && stderr.contains("tampered"),
                "{stderr}"
            );
            assert!(matches!(rx.outcome(), Some(Outcome::Refused { .. })));
        }
    }
    assert_eq!(s.get("agents/serial").unwrap().version, 1);
    assert!(s.fsck().unwrap().problems.is_empty());
}

#[test]
fn errors_say_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let qb = bundle(d.path(), 1, 1000);
    let out = Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(["send", "--port"])
        .arg(d.path().join("nope"))
        .arg(&qb)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is the board connected"), "{err}");

    // A port where nobody answers: a pty whose master end stays silent.
    let p = pty();
    let out = Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(["send", "--quiet", "--timeout", "1", "--port"])
        .arg(&p.path)
        .arg(&qb)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no answer from the board"), "{err}");
    assert!(err.contains("--baud"), "{err}");

    let not_qb = d.path().join("x.qb");
    std::fs::write(&not_qb, b"hello").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(["send", "--port"])
        .arg(&p.path)
        .arg(&not_qb)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a quilt bundle"), "{err}");
}
