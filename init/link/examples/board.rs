//! A board on the host: the link receiver on a real store, listening on a
//! Unix socket, for trying `quilt send` by hand (progress bar, Ctrl-C and
//! resume, refusals) without QEMU.
//!
//! ```sh
//! cargo run -p quilt-link --example board -- SOCKET STORE_DIR TRUST_DIR [BAUD]
//! quilt send --port SOCKET tool.qb
//! ```
//!
//! BAUD (default: unlimited) throttles what the board reads to baud/10
//! bytes per second, like a UART. The receiver outlives connections, as
//! quilt-init's does: a new `quilt send` after a cut resumes in memory;
//! restarting this program resumes from the store.

use quilt_bundle::Context;
use quilt_link::receiver::Event;
use quilt_link::store::StoreStorage;
use quilt_link::{Receiver, ReceiverConfig};
use quilt_store::Store;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [sock, store_dir, trust_dir, rest @ ..] = args.as_slice() else {
        eprintln!("usage: board SOCKET STORE_DIR TRUST_DIR [BAUD]");
        std::process::exit(2);
    };
    let baud: u64 = rest
        .first()
        .map_or(0, |b| b.parse().expect("BAUD is a number"));
    let trust = quilt_store::trustdir::load(&PathBuf::from(trust_dir)).expect("trust dir");
    let mut store = Store::open(&PathBuf::from(store_dir), trust).expect("store");
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).expect("bind");
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut rx = Receiver::new(ReceiverConfig::default());
    eprintln!("board: listening on {sock}");
    for conn in listener.incoming() {
        let mut conn = conn.expect("accept");
        conn.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        eprintln!("board: connected");
        let mut buf = vec![0u8; 64 * 1024];
        let mut budget = 0f64;
        let mut last = Instant::now();
        loop {
            let want = if baud == 0 {
                buf.len()
            } else {
                budget += last.elapsed().as_secs_f64() * baud as f64 / 10.0;
                budget = budget.min(baud as f64 / 10.0 / 10.0);
                last = Instant::now();
                if budget < 1.0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                (budget as usize).clamp(1, buf.len())
            };
            match conn.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    budget -= n as f64;
                    let mut storage = StoreStorage::new(&mut store, Context::default());
                    rx.feed(&buf[..n], now(), &mut storage);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    eprintln!("board: {e}");
                    break;
                }
            }
            rx.tick(now());
            if !rx.pending().is_empty() {
                match conn.write(rx.pending()) {
                    Ok(n) => rx.consume(n),
                    Err(_) => break,
                }
            }
            while let Some(ev) = rx.poll_event() {
                match ev {
                    Event::Offered { name, version, root } => {
                        eprintln!("board: offered name={name} version={version} root={}", root.short())
                    }
                    Event::Planned { need, held, chunks_need, chunks_held } => eprintln!(
                        "board: plan need={need} held={held} chunks_need={chunks_need} chunks_held={chunks_held}"
                    ),
                    Event::Finished { outcome, .. } => eprintln!("board: finished {outcome:?}"),
                }
            }
        }
        rx.link_lost();
        eprintln!("board: disconnected; stats {:?}", rx.stats());
    }
}
