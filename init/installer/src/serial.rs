//! Air-gapped installs over a serial line, as a service quilt-init
//! supervises: the boot config's `[update]` port is opened raw, and every
//! byte that arrives is fed to the `quilt-link` receiver, which asks
//! `quilt send` on the far end for what the store lacks and installs
//! through the store's full checks. The receiver is a pure state machine;
//! this loop moves bytes, keeps its clock ticking, logs what it decides,
//! and reports each newly installed bundle to quilt-init. It takes the
//! store's lock (and re-reads the store's state) for each piece it feeds,
//! so installs from other jobs between two pieces are never lost.

use crate::board::Board;
use crate::{catalog, event, jobs, out};
use quilt_link::receiver::Event;
use quilt_link::{Outcome, Receiver, ReceiverConfig};
use quilt_proto::installer::Report;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Re-check the receiver's timers this often while a transfer is on.
const TICK_MS: i32 = 100;
/// Wait this long for bytes when nothing is going on.
const IDLE_MS: i32 = 1000;
/// Retry opening a port that is not there yet this often.
const REOPEN_MS: u64 = 500;

/// Run the receiver on the configured port; returns only on a setup error.
pub fn run(board: &Board) -> std::process::ExitCode {
    let Some(cfg) = board.cfg.update.as_ref() else {
        event!("event=update-port-unavailable reason=\"no [update] in the boot config\"");
        return std::process::ExitCode::from(2);
    };
    let (mut store, lock) = match board.store() {
        Ok(s) => s,
        Err(r) => {
            event!(
                "event=update-port-unavailable port={} reason=\"{}\"",
                cfg.port,
                out::unquoted(&r.message)
            );
            return std::process::ExitCode::from(2);
        }
    };
    drop(lock);
    let port = open(cfg.port.as_str(), cfg.baud);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut buf = [0u8; 4096];
    loop {
        let busy = rx.busy() || !rx.pending().is_empty();
        let mut fds = [PollFd::new(&port, PollFlags::IN)];
        let timeout = if busy { TICK_MS } else { IDLE_MS };
        let ts = rustix::time::Timespec {
            tv_sec: i64::from(timeout / 1000),
            tv_nsec: i64::from(timeout % 1000) * 1_000_000,
        };
        let _ = poll(&mut fds, Some(&ts));
        for _ in 0..16 {
            let n = match rustix::io::read(&port, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let dir = std::path::Path::new(board.cfg.bundles.store.as_str());
            let Ok(_held) = crate::lock::lock(dir) else {
                break;
            };
            if let Err(e) = store.reload() {
                event!("event=update-store-unreadable error=\"{}\"", e);
                break;
            }
            let ctx = board.context();
            let mut storage = quilt_link::store::StoreStorage::new(&mut store, ctx);
            rx.feed(buf.get(..n).unwrap_or(&[]), now(), &mut storage);
            let installed = log_events(&mut rx, cfg.port.as_str());
            let any = !installed.is_empty();
            for (name, chunks_written) in installed {
                finish(&store, name, chunks_written);
            }
            if any {
                crate::out::store_usage(dir);
            }
        }
        rx.tick(now());
        flush(&port, &mut rx);
    }
}

/// A bundle the receiver installed: write its tree, the catalog, and tell
/// quilt-init (still under the store's lock).
fn finish(store: &quilt_store::Store, name: String, chunks_written: u32) {
    let header = match store.header(&name) {
        Ok(h) => h,
        Err(e) => {
            event!("event=bundle-unreadable name={} error=\"{}\"", name, e);
            return;
        }
    };
    if let Err(r) = jobs::write_tree(store, &name) {
        event!(
            "event=bundle-unreadable name={} error=\"{}\"",
            name,
            out::unquoted(&r.message)
        );
    }
    catalog::write(store);
    crate::out::report(&Report::Installed {
        name,
        version: header.version,
        chunks: header.chunk_count,
        chunks_written,
        already_installed: false,
    });
}

/// Open the port raw (the configured speed for a UART; a virtio port is
/// not a tty), waiting for it to appear.
fn open(path: &str, baud: u32) -> OwnedFd {
    use rustix::fs::{Mode, OFlags};
    let mut complained = false;
    loop {
        match rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(port) => {
                if let Ok(mut t) = rustix::termios::tcgetattr(&port) {
                    t.make_raw();
                    let _ = t.set_speed(baud);
                    if let Err(e) =
                        rustix::termios::tcsetattr(&port, rustix::termios::OptionalActions::Now, &t)
                    {
                        event!("event=update-port-raw-failed port={} error=\"{}\"", path, e);
                    }
                }
                event!("event=update-port-open port={}", path);
                return port;
            }
            Err(e) => {
                if !complained {
                    complained = true;
                    event!(
                        "event=update-port-unavailable port={} error=\"{}\" retry_ms={}",
                        path,
                        e,
                        REOPEN_MS
                    );
                }
                std::thread::sleep(Duration::from_millis(REOPEN_MS));
            }
        }
    }
}

fn flush(port: &OwnedFd, rx: &mut Receiver) {
    for _ in 0..64 {
        let pending = rx.pending();
        if pending.is_empty() {
            return;
        }
        match rustix::io::write(port, pending) {
            Ok(0) | Err(_) => return,
            Ok(n) => rx.consume(n),
        }
    }
}

/// One log line per receiver decision; the newly installed bundles and
/// the chunks each wrote.
fn log_events(rx: &mut Receiver, path: &str) -> Vec<(String, u32)> {
    let mut installed = Vec::new();
    while let Some(ev) = rx.poll_event() {
        match ev {
            Event::Offered {
                name,
                version,
                root,
            } => event!(
                "event=update-offered port={} name={} version={} root={}",
                path,
                name,
                version,
                root
            ),
            Event::Planned {
                need,
                held,
                chunks_need,
                chunks_held,
            } => event!(
                "event=update-planned need_bytes={} held_bytes={} chunks_need={} chunks_held={}",
                need,
                held,
                chunks_need,
                chunks_held
            ),
            Event::Finished { root, outcome } => match outcome {
                Outcome::Installed {
                    name,
                    version,
                    chunks_written,
                    already,
                    ..
                } => {
                    let s = rx.stats();
                    event!(
                        "event=bundle-installed name={} version={} chunks_written={} already={} via=serial root={} pieces={} payload_bytes={} crc_errors={} rerequests={}",
                        name,
                        version,
                        chunks_written,
                        already,
                        root,
                        s.pieces,
                        s.payload,
                        s.rx.crc_errors,
                        s.lost + s.timeouts
                    );
                    // Already installed: nothing changed, no tree is
                    // touched and nothing is staged again.
                    if !already {
                        installed.push((name, chunks_written));
                    }
                }
                Outcome::Refused { reason } => event!(
                    "event=bundle-refused via=serial root={} reason=\"{}\"",
                    root,
                    out::unquoted(&reason.to_string())
                ),
            },
        }
    }
    installed
}
