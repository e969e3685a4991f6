//! In-guest load for the control-socket test: 64 concurrent clients, the
//! server's cap: 63 send 10 000 malformed or oversized frames between them
//! (reading each error reply) while the 64th times `List` requests.
//! Prints `FLOOD key=value`.
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOCK: &str = "/run/quilt/control.sock";

fn connect() -> OwnedFd {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&fd, &SocketAddrUnix::new(SOCK).unwrap()).unwrap();
    fd
}

fn call(fd: &OwnedFd, frame: &[u8], buf: &mut [u8]) -> Option<quilt_proto::Reply> {
    rustix::net::send(fd, frame, SendFlags::NOSIGNAL).ok()?;
    let (_, n) = rustix::net::recv(fd, &mut *buf, RecvFlags::empty()).ok()?;
    quilt_proto::decode_reply(buf.get(..n)?).ok()
}

/// Five kinds of bad frame: junk, a lying varint, a foreign version, one
/// over the size cap, and a good request with a trailing byte.
fn garbage(i: usize) -> Vec<u8> {
    match i % 5 {
        0 => vec![0xff; 1 + i % 300],
        1 => b"QC\x01\x00\xff\xff\xff\xff\xff".to_vec(),
        2 => b"QC\x07\x00\x00".to_vec(),
        3 => vec![b'Q'; quilt_proto::MAX_REQUEST + 100],
        _ => {
            let mut f = quilt_proto::encode_request(&quilt_proto::Request::Ping).unwrap();
            f.push(0);
            f
        }
    }
}

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let timer = std::thread::spawn(move || {
        let fd = connect();
        let list = quilt_proto::encode_request(&quilt_proto::Request::List).unwrap();
        let mut buf = vec![0u8; quilt_proto::MAX_REPLY];
        let mut lat = Vec::new();
        while !s2.load(Ordering::Relaxed) {
            let t = Instant::now();
            match call(&fd, &list, &mut buf) {
                Some(quilt_proto::Reply::Services(_)) => lat.push(t.elapsed().as_micros() as u64),
                other => panic!("List during the flood answered {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        lat
    });
    let clients: Vec<OwnedFd> = (0..63).map(|_| connect()).collect();
    let mut buf = vec![0u8; quilt_proto::MAX_REPLY];
    let (mut refused, mut other) = (0u32, 0u32);
    let mut other_kinds = [0u32; 5];
    let mut first_other = String::new();
    let t = Instant::now();
    for i in 0..10_000 {
        let fd = &clients[i % clients.len()];
        match call(fd, &garbage(i), &mut buf) {
            Some(quilt_proto::Reply::Error { .. }) => refused += 1,
            r => {
                other += 1;
                other_kinds[i % 5] += 1;
                if first_other.is_empty() {
                    first_other = format!(
                        "kind {}: {r:?} ({})",
                        i % 5,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    }
    let flood_ms = t.elapsed().as_millis();
    stop.store(true, Ordering::Relaxed);
    let mut lat = timer.join().unwrap();
    lat.sort();
    let p = |q: usize| lat.get(lat.len() * q / 100).copied().unwrap_or(0);
    if other > 0 {
        println!("FLOOD-DEBUG other_by_kind={other_kinds:?} first={first_other}");
    }
    println!(
        "FLOOD sent=10000 refused={refused} other={other} flood_ms={flood_ms} list_n={} list_p50_us={} list_p99_us={} list_max_us={}",
        lat.len(),
        p(50),
        p(99),
        lat.last().copied().unwrap_or(0)
    );
}
