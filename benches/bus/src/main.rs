//! Process-to-process benchmark of the Quilt bus against iceoryx2, a Unix
//! domain socket pair and a pipe pair, with memcpy bandwidth as reference.
//!
//! Every measurement runs two processes: this binary and a re-executed
//! copy (`child ...`), each pinned to its own core when the machine has
//! two. Latency is ping-pong: the parent sends a message of N bytes, the
//! child answers with N bytes; one-way latency is half the round trip.
//! Throughput: the parent streams messages, the child acknowledges the
//! last one; bytes / elapsed.
//!
//! What every transport does per message, so the rows compare:
//! * sender: produces the whole payload (a copy of N bytes from a source
//!   buffer into the loaned slot, or `write` of N bytes for sockets/pipes),
//!   with a sequence number in the first 8 bytes;
//! * receiver: zero-copy transports (bus, iceoryx2) read the sequence
//!   number and the last byte in place; sockets/pipes must `read` all N.
//!
//! Usage: `quilt-bus-bench [--quick]` prints one table.

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;
use quilt_bus_client::{
    create_channel, Config, Kind, Mode, Publisher, PublisherOptions, Subscriber, Wait,
};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [64, 4096, 1 << 20];

fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|s| s.parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    }
}
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
/// Whether the parent pinned itself to CPU 0 (children then pin to 1).
static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Polls before a spin-then-futex endpoint sleeps (tens of microseconds).
const HYBRID_SPINS: u32 = 20_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    BusSpin,
    BusFutex,
    BusHybrid,
    IoxSpin,
    IoxEvent,
    Uds,
    Pipe,
}

impl Transport {
    const ALL: [Self; 7] = [
        Self::BusSpin,
        Self::BusFutex,
        Self::BusHybrid,
        Self::IoxSpin,
        Self::IoxEvent,
        Self::Uds,
        Self::Pipe,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::BusSpin => "quilt-bus",
            Self::BusFutex => "quilt-bus",
            Self::BusHybrid => "quilt-bus",
            Self::IoxSpin => "iceoryx2",
            Self::IoxEvent => "iceoryx2",
            Self::Uds => "unix socket",
            Self::Pipe => "pipe",
        }
    }

    fn mode(self) -> &'static str {
        match self {
            Self::BusSpin | Self::IoxSpin => "busy-poll",
            Self::BusFutex | Self::IoxEvent | Self::Uds | Self::Pipe => "blocking",
            Self::BusHybrid => "spin 20k, then block",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::BusSpin => "bus-spin",
            Self::BusFutex => "bus-futex",
            Self::BusHybrid => "bus-hybrid",
            Self::IoxSpin => "iox-spin",
            Self::IoxEvent => "iox-event",
            Self::Uds => "uds",
            Self::Pipe => "pipe",
        }
    }

    fn from_tag(tag: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|t| t.tag() == tag)
            .expect("transport tag")
    }
}

/// One side of a two-way link.
trait Link {
    /// Sends a message of `size` bytes whose first 8 bytes are `seq`.
    fn send(&mut self, seq: u64, size: usize);
    /// Receives one message; returns its sequence number.
    fn recv(&mut self) -> u64;
}

fn fill_source(size: usize) -> Vec<u8> {
    (0..size.max(8)).map(|i| (i * 7 + 1) as u8).collect()
}

// ---------------------------------------------------------------- quilt-bus

struct BusLink {
    tx: Publisher,
    rx: Subscriber,
    src: Vec<u8>,
}

impl Link for BusLink {
    fn send(&mut self, seq: u64, size: usize) {
        let slot = self.tx.loan_wait(TIMEOUT).expect("bus loan");
        slot[..size].copy_from_slice(&self.src[..size]);
        slot[..8].copy_from_slice(&seq.to_le_bytes());
        self.tx
            .publish_as(size, 0, Kind::Data)
            .expect("bus publish");
    }

    fn recv(&mut self) -> u64 {
        let m = self.rx.receive_wait(TIMEOUT).expect("bus receive");
        let b = m.bytes();
        let seq = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        std::hint::black_box(b[b.len() - 1]);
        seq
    }
}

/// Ring slots (and iceoryx2 subscriber buffer) per payload size.
fn bus_capacity(size: usize) -> u64 {
    if let Some(c) = std::env::var("BENCH_BIG_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        if size >= 1 << 20 {
            return c;
        }
    }
    if size >= 1 << 20 {
        4
    } else {
        64
    }
}

fn bus_options(t: Transport) -> (PublisherOptions, Wait) {
    match t {
        Transport::BusSpin => (
            PublisherOptions {
                wait: Wait::Spin,
                notify: false,
                ..PublisherOptions::default()
            },
            Wait::Spin,
        ),
        Transport::BusHybrid => {
            let wait = Wait::SpinThenFutex {
                spins: HYBRID_SPINS,
            };
            (
                PublisherOptions {
                    wait,
                    ..PublisherOptions::default()
                },
                wait,
            )
        }
        _ => (PublisherOptions::default(), Wait::Futex),
    }
}

// ----------------------------------------------------------------- iceoryx2

struct IoxLink {
    _node: Node<ipc::Service>,
    tx: iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    rx: iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
    events: Option<(
        iceoryx2::port::notifier::Notifier<ipc::Service>,
        iceoryx2::port::listener::Listener<ipc::Service>,
    )>,
    src: Vec<u8>,
}

impl IoxLink {
    fn new(base: &str, parent: bool, size: usize, blocking: bool) -> Self {
        let node = NodeBuilder::new()
            .create::<ipc::Service>()
            .expect("iceoryx2 node");
        let (out_name, in_name) = if parent { ("ab", "ba") } else { ("ba", "ab") };
        let pubsub = |suffix: &str| {
            let name: ServiceName = format!("{base}/{suffix}")
                .as_str()
                .try_into()
                .expect("name");
            node.service_builder(&name)
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(bus_capacity(size) as usize)
                .enable_safe_overflow(false)
                .open_or_create()
                .expect("iceoryx2 service")
        };
        let out_service = pubsub(out_name);
        let in_service = pubsub(in_name);
        let rx = in_service
            .subscriber_builder()
            .create()
            .expect("iceoryx2 subscriber");
        let tx = out_service
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .expect("iceoryx2 publisher");
        let events = blocking.then(|| {
            let event = |suffix: &str| {
                let name: ServiceName = format!("{base}/ev-{suffix}")
                    .as_str()
                    .try_into()
                    .expect("name");
                node.service_builder(&name)
                    .event()
                    .open_or_create()
                    .expect("iceoryx2 event")
            };
            let notifier = event(out_name)
                .notifier_builder()
                .create()
                .expect("iceoryx2 notifier");
            let listener = event(in_name)
                .listener_builder()
                .create()
                .expect("iceoryx2 listener");
            (notifier, listener)
        });
        Self {
            _node: node,
            tx,
            rx,
            events,
            src: fill_source(size),
        }
    }
}

impl Link for IoxLink {
    fn send(&mut self, seq: u64, size: usize) {
        let sample = self.tx.loan_slice_uninit(size).expect("iceoryx2 loan");
        let mut sample = sample.write_from_slice(&self.src[..size]);
        sample.payload_mut()[..8].copy_from_slice(&seq.to_le_bytes());
        sample.send().expect("iceoryx2 send");
        if let Some((notifier, _)) = &self.events {
            notifier.notify().expect("iceoryx2 notify");
        }
    }

    fn recv(&mut self) -> u64 {
        loop {
            if let Some(sample) = self.rx.receive().expect("iceoryx2 receive") {
                let b = sample.payload();
                let seq = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                std::hint::black_box(b[b.len() - 1]);
                return seq;
            }
            match &self.events {
                Some((_, listener)) => {
                    listener
                        .timed_wait(|_| {}, Duration::from_millis(100))
                        .expect("iceoryx2 wait");
                }
                None => std::hint::spin_loop(),
            }
        }
    }
}

// ------------------------------------------------------------ sockets/pipes

struct FdLink {
    tx: std::fs::File,
    rx: std::fs::File,
    src: Vec<u8>,
    buf: Vec<u8>,
}

impl Link for FdLink {
    fn send(&mut self, seq: u64, size: usize) {
        self.src[..8].copy_from_slice(&seq.to_le_bytes());
        self.tx.write_all(&self.src[..size]).expect("write");
    }

    fn recv(&mut self) -> u64 {
        let n = self.buf.len();
        self.rx.read_exact(&mut self.buf[..n]).expect("read");
        u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"))
    }
}

// --------------------------------------------------------------- processes

/// What the parent prepared for the child: fds to inherit, and a closure
/// that builds the parent's own link once the child is ready.
struct Setup {
    child_fds: Vec<OwnedFd>,
    parent: Box<dyn FnOnce() -> Box<dyn Link>>,
}

fn setup(t: Transport, size: usize, iox_base: &str) -> Setup {
    match t {
        Transport::BusSpin | Transport::BusFutex | Transport::BusHybrid => {
            let cfg = Config {
                capacity: bus_capacity(size),
                slot_size: (size.max(8) as u64).next_multiple_of(8),
                mode: Mode::Block,
                max_subscribers: 1,
                channel_id: 0,
            };
            let ab = create_channel("bench-ab", &cfg).expect("channel");
            let ba = create_channel("bench-ba", &cfg).expect("channel");
            // Child: sub on ab, pub on ba.
            let child_fds = vec![
                ab.data_read_only().expect("ro"),
                rustix::io::dup(&ab.subscribers[0]).expect("dup"),
                rustix::io::dup(&ba.data).expect("dup"),
                ba.subscribers_read_only().expect("ro").remove(0),
            ];
            let (popts, wait) = bus_options(t);
            let rx = Subscriber::open(ba.data_read_only().expect("ro"), &ba.subscribers[0], wait)
                .expect("parent subscriber");
            let ab_subs = ab.subscribers_read_only().expect("ro");
            let tx = Publisher::open(&ab.data, &ab_subs, popts).expect("parent publisher");
            Setup {
                child_fds,
                parent: Box::new(move || {
                    Box::new(BusLink {
                        tx,
                        rx,
                        src: fill_source(size),
                    })
                }),
            }
        }
        Transport::IoxSpin | Transport::IoxEvent => {
            let base = iox_base.to_string();
            let blocking = t == Transport::IoxEvent;
            // Created before the child so the child's publisher sees our
            // subscriber; the parent's publisher connects on first send.
            let link = IoxLink::new(&base, true, size, blocking);
            Setup {
                child_fds: Vec::new(),
                parent: Box::new(move || Box::new(link)),
            }
        }
        Transport::Uds => {
            let (a, b) = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .expect("socketpair");
            let a2 = rustix::io::dup(&a).expect("dup");
            let b2 = rustix::io::dup(&b).expect("dup");
            drop(b);
            Setup {
                child_fds: vec![b2.try_clone().expect("dup"), b2],
                parent: Box::new(move || Box::new(fd_link(a, a2, size))),
            }
        }
        Transport::Pipe => {
            let (ab_r, ab_w) = rustix::pipe::pipe().expect("pipe");
            let (ba_r, ba_w) = rustix::pipe::pipe().expect("pipe");
            for fd in [&ab_r, &ab_w, &ba_r, &ba_w] {
                let _ = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20);
            }
            Setup {
                // Child reads ab, writes ba.
                child_fds: vec![ab_r, ba_w],
                parent: Box::new(move || Box::new(fd_link(ab_w, ba_r, size))),
            }
        }
    }
}

fn fd_link(tx: OwnedFd, rx: OwnedFd, size: usize) -> FdLink {
    FdLink {
        tx: tx.into(),
        rx: rx.into(),
        src: fill_source(size),
        buf: vec![0; size.max(8)],
    }
}

fn child_link(
    t: Transport,
    size: usize,
    fds: &[BorrowedFd<'static>],
    iox_base: &str,
) -> Box<dyn Link> {
    match t {
        Transport::BusSpin | Transport::BusFutex | Transport::BusHybrid => {
            let (popts, wait) = bus_options(t);
            let rx = Subscriber::open(fds[0], fds[1], wait).expect("child subscriber");
            let tx = Publisher::open(fds[2], &[fds[3]], popts).expect("child publisher");
            Box::new(BusLink {
                tx,
                rx,
                src: fill_source(size),
            })
        }
        Transport::IoxSpin | Transport::IoxEvent => Box::new(IoxLink::new(
            iox_base,
            false,
            size,
            t == Transport::IoxEvent,
        )),
        Transport::Uds => {
            let own = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().expect("dup");
            Box::new(fd_link(own(fds[0]), own(fds[1]), size))
        }
        Transport::Pipe => {
            let own = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().expect("dup");
            // fds: read ab, write ba.
            Box::new(fd_link(own(fds[1]), own(fds[0]), size))
        }
    }
}

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Clone, Copy)]
enum Kind2 {
    Latency,
    Throughput,
}

fn counts(kind: Kind2, size: usize, quick: bool) -> (u64, u64) {
    let scale = if quick { 10 } else { 1 };
    match kind {
        Kind2::Latency => {
            let n = if size >= 1 << 20 { 2_000 } else { 50_000 };
            (n / 10 / scale, n / scale)
        }
        Kind2::Throughput => {
            let n = ((1u64 << 30) / size as u64).clamp(1_000, 200_000);
            (0, n / scale)
        }
    }
}

/// Child: answers pings (latency) or drains a stream and acks (throughput).
fn run_child(args: &[String]) {
    set_log_level(LogLevel::Error);
    let t = Transport::from_tag(&args[0]);
    let size: usize = args[1].parse().expect("size");
    let kind = if args[2] == "lat" {
        Kind2::Latency
    } else {
        Kind2::Throughput
    };
    let total: u64 = args[3].parse().expect("count");
    let iox_base = &args[4];
    let fds: Vec<BorrowedFd<'static>> = std::env::var("BENCH_FDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|n| {
            let fd: RawFd = n.parse().expect("fd");
            // SAFETY: the parent passed these fds open across exec and
            // this process never closes them.
            unsafe { BorrowedFd::borrow_raw(fd) }
        })
        .collect();
    // The parent decided (its own mask is already narrowed to CPU 0).
    if std::env::var_os("BENCH_PIN").is_some() {
        pin(1);
    }
    let mut link = child_link(t, size, &fds, iox_base);
    println!("READY");
    std::io::stdout().flush().expect("flush");
    match kind {
        Kind2::Latency => {
            for i in 0..total {
                let seq = link.recv();
                assert_eq!(seq, i, "{t:?} lost or reordered a ping");
                link.send(seq, size);
            }
        }
        Kind2::Throughput => {
            for i in 0..total {
                let seq = link.recv();
                assert_eq!(seq, i, "{t:?} lost or reordered a message");
            }
            link.send(total, size);
        }
    }
    // Let the parent drain the last message before our endpoints go.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

struct Measured {
    one_way_ns: Option<[f64; 3]>,
    msgs_per_s: f64,
    bytes_per_s: f64,
}

fn spawn(
    t: Transport,
    size: usize,
    kind: &str,
    total: u64,
    iox_base: &str,
    fds: &[OwnedFd],
) -> Child {
    // dup() without CLOEXEC: the child inherits exactly these.
    let dups: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| rustix::io::dup(fd).expect("dup"))
        .collect();
    let list: Vec<String> = dups.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "child",
            t.tag(),
            &size.to_string(),
            kind,
            &total.to_string(),
            iox_base,
        ])
        .env("BENCH_FDS", list.join(","))
        .env(
            if PIN.load(std::sync::atomic::Ordering::Relaxed) {
                "BENCH_PIN"
            } else {
                "BENCH_NO_PIN"
            },
            "1",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    drop(dups);
    let out = child.stdout.as_mut().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("child ready");
    assert_eq!(line.trim(), "READY", "child failed to start");
    child
}

fn finish(mut child: Child) {
    drop(child.stdin.take());
    let status = child.wait().expect("wait child");
    assert!(status.success(), "child failed: {status}");
}

fn measure(t: Transport, size: usize, quick: bool, run: u32) -> Measured {
    let pid = std::process::id();
    // Latency.
    let (warm, n) = counts(Kind2::Latency, size, quick);
    let base = format!("quilt-bench-{pid}-{run}-lat");
    let s = setup(t, size, &base);
    let child = spawn(t, size, "lat", warm + n, &base, &s.child_fds);
    drop(s.child_fds);
    let mut link = (s.parent)();
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..warm + n {
        let start = Instant::now();
        link.send(i, size);
        let seq = link.recv();
        let rtt = start.elapsed();
        assert_eq!(seq, i, "{t:?} lost or reordered a pong");
        if i >= warm {
            samples.push(rtt.as_nanos() as f64 / 2.0);
        }
    }
    drop(link);
    finish(child);
    samples.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let one_way = [pct(0.50), pct(0.99), pct(0.999)];

    // Throughput: one stream; main() repeats rounds and takes medians.
    let (_, n) = counts(Kind2::Throughput, size, quick);
    let base = format!("quilt-bench-{pid}-{run}-tput");
    let s = setup(t, size, &base);
    let child = spawn(t, size, "tput", n, &base, &s.child_fds);
    drop(s.child_fds);
    let mut link = (s.parent)();
    let start = Instant::now();
    for i in 0..n {
        link.send(i, size);
    }
    let ack = link.recv();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(ack, n);
    drop(link);
    finish(child);
    let msgs_per_s = n as f64 / elapsed;
    Measured {
        one_way_ns: Some(one_way),
        msgs_per_s,
        bytes_per_s: msgs_per_s * size as f64,
    }
}

/// Throughput repetitions (median reported).
fn reps() -> usize {
    std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn memcpy_bandwidth(size: usize) -> f64 {
    median((0..reps()).map(|_| memcpy_once(size)).collect())
}

fn memcpy_ring_bandwidth(size: usize) -> f64 {
    median((0..reps()).map(|_| memcpy_ring_once(size)).collect())
}

fn memcpy_once(size: usize) -> f64 {
    let src = fill_source(size);
    let mut dst = vec![0u8; size];
    let n = ((1u64 << 30) / size as u64).clamp(1_000, 2_000_000);
    for _ in 0..n / 10 {
        dst.copy_from_slice(std::hint::black_box(&src));
    }
    let start = Instant::now();
    for _ in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (n as f64 * size as f64) / start.elapsed().as_secs_f64()
}

/// memcpy into a rotating set of destinations as large as a bus ring
/// (capacity x size): the same cache footprint the bus works in.
fn memcpy_ring_once(size: usize) -> f64 {
    let src = fill_source(size);
    let slots = bus_capacity(size) as usize;
    let mut dst = vec![0u8; size * slots];
    let n = ((1u64 << 30) / size as u64).clamp(1_000, 2_000_000);
    let start = Instant::now();
    for i in 0..n as usize {
        let at = (i % slots) * size;
        dst[at..at + size].copy_from_slice(std::hint::black_box(&src[..size]));
        std::hint::black_box(&mut dst);
    }
    (n as f64 * size as f64) / start.elapsed().as_secs_f64()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn human_size(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn ns(v: f64) -> String {
    format!("{v:.0}")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        run_child(&args[1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    set_log_level(LogLevel::Error);
    let ncpu = cpus();
    if ncpu >= 2 {
        PIN.store(true, std::sync::atomic::Ordering::Relaxed);
        pin(0);
    }
    println!(
        "# quilt-bus benchmark: {} cpus (parent pinned to 0, child to 1: {}), {}, load average before: {} (one-way latency = RTT/2, ns)",
        ncpu,
        ncpu >= 2,
        if quick { "quick run" } else { "full run" },
        loadavg()
    );
    println!(
        "# every figure is the median over {} rounds (each round runs every transport once); msg/s, MB/s: one-way stream; ratios < 1 are better for latency, > 1 for MB/s",
        reps()
    );
    println!(
        "| payload | transport | mode | p50 | p99 | p99.9 | msg/s | MB/s | p50 vs iceoryx2 | p50 vs UDS | MB/s vs memcpy |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut run = 0;
    for size in sizes() {
        let memcpy = memcpy_bandwidth(size);
        let memcpy_ring = memcpy_ring_bandwidth(size);
        // Rounds over all transports in turn, medians per figure: a
        // transient (another process, a vCPU moved by the host) hits one
        // round of every transport instead of all rounds of one.
        let mut rounds: Vec<Vec<Measured>> = Transport::ALL.iter().map(|_| Vec::new()).collect();
        for _ in 0..reps() {
            for (k, t) in Transport::ALL.into_iter().enumerate() {
                run += 1;
                rounds[k].push(measure(t, size, quick, run));
            }
        }
        let results: Vec<(Transport, Measured)> = Transport::ALL
            .into_iter()
            .zip(rounds)
            .map(|(t, ms)| {
                let pct = |i: usize| {
                    median(
                        ms.iter()
                            .filter_map(|m| m.one_way_ns.map(|v| v[i]))
                            .collect(),
                    )
                };
                let msgs = median(ms.iter().map(|m| m.msgs_per_s).collect());
                (
                    t,
                    Measured {
                        one_way_ns: Some([pct(0), pct(1), pct(2)]),
                        msgs_per_s: msgs,
                        bytes_per_s: msgs * size as f64,
                    },
                )
            })
            .collect();
        let p50 = |want: Transport| {
            results
                .iter()
                .find(|(t, _)| *t == want)
                .and_then(|(_, m)| m.one_way_ns)
                .map(|v| v[0])
        };
        for (t, m) in &results {
            let [a, b, c] = m.one_way_ns.unwrap_or([f64::NAN; 3]);
            let iox = match t {
                Transport::BusSpin => p50(Transport::IoxSpin),
                Transport::BusFutex => p50(Transport::IoxEvent),
                _ => None,
            };
            let uds = match t {
                Transport::BusSpin
                | Transport::BusFutex
                | Transport::BusHybrid
                | Transport::IoxSpin
                | Transport::IoxEvent => p50(Transport::Uds),
                _ => None,
            };
            let ratio = |r: Option<f64>| r.map_or("".to_string(), |r| format!("{:.2}x", a / r));
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {:.2}x |",
                human_size(size),
                t.name(),
                t.mode(),
                ns(a),
                ns(b),
                ns(c),
                m.msgs_per_s,
                m.bytes_per_s / 1e6,
                ratio(iox),
                ratio(uds),
                m.bytes_per_s / memcpy,
            );
        }
        println!(
            "| {} | memcpy (one hot buffer) | reference | | | | {:.0} | {:.0} | | | 1.00x |",
            human_size(size),
            memcpy / size as f64,
            memcpy / 1e6
        );
        println!(
            "| {} | memcpy ({} rotating buffers) | reference | | | | {:.0} | {:.0} | | | {:.2}x |",
            human_size(size),
            bus_capacity(size),
            memcpy_ring / size as f64,
            memcpy_ring / 1e6,
            memcpy_ring / memcpy
        );
    }
    println!("# load average after: {}", loadavg());
}
