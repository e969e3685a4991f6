//! Two real processes on one channel: request/reply in order without
//! loss, and a publisher killed in the middle of a write.
//!
//! The child is this test binary re-run with `--exact child_entry` and
//! `QUILT_BUS_CHILD` set; channel fds are inherited (dup'ed without
//! CLOEXEC) and named in `QUILT_BUS_FDS`.

use quilt_bus_client::{
    create_channel, BusError, Config, Error, Kind, Mode, Publisher, PublisherOptions, Requester,
    Responder, Subscriber, Wait,
};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROUNDS: u64 = 10_000;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn spawn_child(role: &str, fds: &[BorrowedFd<'_>]) -> (Child, Vec<OwnedFd>) {
    // dup() clears CLOEXEC: the child inherits exactly these numbers.
    let dups: Vec<OwnedFd> = fds.iter().map(|fd| rustix::io::dup(fd).unwrap()).collect();
    let list: Vec<String> = dups.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("QUILT_BUS_CHILD", role)
        .env("QUILT_BUS_FDS", list.join(","))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    (child, dups)
}

fn child_fds() -> Vec<BorrowedFd<'static>> {
    let list = std::env::var("QUILT_BUS_FDS").unwrap();
    list.split(',')
        .map(|n| {
            let fd: RawFd = n.parse().unwrap();
            // SAFETY: the parent passed these fds open across exec and
            // nothing in this process closes them.
            unsafe { BorrowedFd::borrow_raw(fd) }
        })
        .collect()
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i as usize).wrapping_mul(31).wrapping_add(j) as u8)
        .collect()
}

/// Runs the child side when re-executed; a no-op in the normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var("QUILT_BUS_CHILD") else {
        return;
    };
    let fds = child_fds();
    match role.as_str() {
        // fds: request data (ro), request sub 0, reply data (rw), reply sub 0 (ro)
        "responder" => {
            let requests = Subscriber::open(fds[0], fds[1], Wait::Futex).unwrap();
            println!("READY");
            let replies = Publisher::open(fds[2], &[fds[3]], PublisherOptions::default()).unwrap();
            let mut server = Responder::new(requests, replies);
            for _ in 0..ROUNDS {
                server
                    .serve_one(TIMEOUT, |req, rep| {
                        // Reply: the request reversed.
                        for (d, s) in rep.iter_mut().zip(req.iter().rev()) {
                            *d = *s;
                        }
                        req.len()
                    })
                    .unwrap();
            }
        }
        // fds: data (rw), sub 0 (ro), sub 1 (ro)
        "dying-publisher" => {
            let mut p = Publisher::open(
                fds[0],
                &fds[1..],
                PublisherOptions {
                    token: Some(0xdead),
                    ..PublisherOptions::default()
                },
            )
            .unwrap();
            for i in 0..5 {
                p.send(&payload(i, 100), i, Kind::Data, TIMEOUT).unwrap();
            }
            let slot = p.loan().unwrap();
            slot[..50].copy_from_slice(&payload(5, 50));
            println!("HALF");
            // Wait for the parent's SIGKILL, mid-write.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn wait_for_line(child: &mut Child, want: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines.next().expect("child exited early").unwrap();
        // libtest prints "test child_entry ... " without a newline first.
        if line.trim_end().ends_with(want) {
            return;
        }
    }
}

#[test]
fn ten_thousand_requests_across_processes_in_order() {
    let cfg = |id| Config {
        capacity: 8,
        slot_size: 256,
        mode: Mode::Block,
        max_subscribers: 1,
        channel_id: id,
    };
    let req = create_channel("req", &cfg(1)).unwrap();
    let rep = create_channel("rep", &cfg(2)).unwrap();
    let req_data_ro = req.data_read_only().unwrap();
    let rep_subs_ro = rep.subscribers_read_only().unwrap();
    let (mut child, _dups) = spawn_child(
        "responder",
        &[
            req_data_ro.as_fd(),
            req.subscribers[0].as_fd(),
            rep.data.as_fd(),
            rep_subs_ro[0].as_fd(),
        ],
    );
    // The responder must be subscribed before the first request, or it
    // starts after it.
    wait_for_line(&mut child, "READY");
    let req_subs_ro = req.subscribers_read_only().unwrap();
    let publisher = Publisher::open(&req.data, &req_subs_ro, PublisherOptions::default()).unwrap();
    let subscriber = Subscriber::open(
        rep.data_read_only().unwrap(),
        &rep.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let mut client = Requester::new(publisher, subscriber);
    for i in 0..ROUNDS {
        let body = payload(i, 1 + (i as usize % 200));
        let corr = client.request(&body, TIMEOUT).unwrap();
        let reply = client.wait_reply(corr, TIMEOUT).unwrap();
        assert_eq!(reply.corr(), corr);
        assert_eq!(reply.kind(), Kind::Reply);
        let want: Vec<u8> = body.iter().rev().copied().collect();
        assert_eq!(reply.bytes(), &want[..], "reply {i}");
        assert!(reply.is_valid());
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn publisher_killed_mid_write_never_exposes_a_torn_message() {
    let cfg = Config {
        capacity: 16,
        slot_size: 128,
        mode: Mode::Block,
        max_subscribers: 2,
        channel_id: 3,
    };
    let ch = create_channel("dying", &cfg).unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let mut s0 = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let mut s1 =
        Subscriber::open(ch.data_read_only().unwrap(), &ch.subscribers[1], Wait::Spin).unwrap();
    let (mut child, _dups) = spawn_child(
        "dying-publisher",
        &[ch.data.as_fd(), subs_ro[0].as_fd(), subs_ro[1].as_fd()],
    );
    wait_for_line(&mut child, "HALF");
    child.kill().unwrap();
    child.wait().unwrap();

    for s in [&mut s0, &mut s1] {
        for i in 0..5 {
            let m = s.receive_wait(TIMEOUT).unwrap();
            assert_eq!((m.seq(), m.corr()), (i, i));
            assert_eq!(m.bytes(), &payload(i, 100)[..]);
            assert!(m.is_valid());
        }
        // The half-written sixth message is not visible.
        assert!(s.receive().unwrap().is_none());
        assert!(matches!(
            s.receive_wait(Some(Duration::from_millis(20))),
            Err(Error::Timeout)
        ));
    }

    // The dead publisher still holds the WRITER word: a plain open is
    // refused, a takeover (the owner reaped the old one) recovers.
    let refused = Publisher::open(&ch.data, &subs_ro, PublisherOptions::default());
    assert!(matches!(
        refused,
        Err(Error::Bus(BusError::WriterBusy { holder: 0xdead }))
    ));
    let mut p = Publisher::open(
        &ch.data,
        &subs_ro,
        PublisherOptions {
            takeover: true,
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    assert_eq!(p.next_seq(), 5);
    for i in 5..40 {
        p.send(&payload(i, 120), i, Kind::Data, TIMEOUT).unwrap();
        for s in [&mut s0, &mut s1] {
            let m = s.receive_wait(TIMEOUT).unwrap();
            assert_eq!((m.seq(), m.corr()), (i, i));
            assert_eq!(m.bytes(), &payload(i, 120)[..]);
        }
    }
    assert_eq!((s0.lost(), s1.lost()), (0, 0));
}
