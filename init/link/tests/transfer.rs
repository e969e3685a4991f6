//! End to end over the simulated line into a real store: install, resume
//! after a cut (with and without a reboot), corruption on the line, a
//! tampered bundle, dedup between versions.

mod common;

use common::*;
use quilt_bundle::Context;
use quilt_link::sim::{Dir, Line};
use quilt_link::{Outcome, Receiver, ReceiverConfig};
use quilt_store::Store;

const BAUD: u32 = 115_200;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, trust(&[&key(1)])).unwrap()
}

#[test]
fn a_signed_bundle_arrives_installs_and_materializes() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let qb = tool("agents/a", 1, 0, 150_000, &key(1));
    let r = send(&qb, &mut store, BAUD);
    assert!(r.sim.finished, "{:?}", r.sim);
    match &r.outcome {
        Some(Outcome::Installed {
            name,
            version,
            already,
            ..
        }) => assert_eq!((name.as_str(), *version, *already), ("agents/a", 1, false)),
        o => panic!("{o:?}"),
    }
    assert_eq!(store.get("agents/a").unwrap().version, 1);
    let dest = d.path().join("out");
    store.materialize("agents/a", &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("lib/big.bin")).unwrap(),
        noise(150_000, 1)
    );
    assert!(store.fsck().unwrap().problems.is_empty());
    // Every byte of the file crossed once; framing costs little.
    assert_eq!(r.tx.payload, qb.len() as u64);
    let eff = qb.len() as f64 / r.sim.bytes_a_to_b as f64;
    assert!(eff > 0.98, "efficiency {eff}");
    // Nothing is left staged once installed.
    let root = quilt_bundle::reader::parse_envelope(&qb).unwrap().0;
    let root = quilt_bundle::Header::decode(&root.body).unwrap().root;
    assert!(store.staged(&root).is_none());
}

#[test]
fn a_second_offer_of_an_installed_bundle_fetches_no_content() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let qb = tool("agents/a", 1, 0, 100_000, &key(1));
    let mut rx = Receiver::new(ReceiverConfig::default());
    let clean = &mut quilt_link::sim::clean;
    assert!(installed(
        &run(&qb, &mut store, &mut rx, Line::new(0), clean, &mut |_| {
            false
        })
        .outcome
    ));
    // The same receiver (a sender that missed the Result comes back) and a
    // fresh one (after a reboot) both answer without fetching content.
    let same = run(&qb, &mut store, &mut rx, Line::new(0), clean, &mut |_| {
        false
    });
    assert!(matches!(
        same.outcome,
        Some(Outcome::Installed { already: true, .. })
    ));
    assert!(same.tx.payload < 2_000, "{:?}", same.tx);
    let again = send(&qb, &mut store, 0);
    assert!(matches!(
        again.outcome,
        Some(Outcome::Installed { already: true, .. })
    ));
    assert!(again.tx.payload < 2_000, "{:?}", again.tx);
}

fn cut_at(limit: u64) -> impl FnMut(&quilt_link::sim::SimReport) -> bool {
    move |r| r.bytes_a_to_b >= limit
}

#[test]
fn a_cut_transfer_resumes_after_a_reboot_and_sends_less() {
    let d = tempfile::tempdir().unwrap();
    let qb = tool("agents/a", 1, 0, 300_000, &key(1));
    let half = qb.len() as u64 / 2;
    let first = {
        let mut store = open(d.path());
        let mut rx = Receiver::new(ReceiverConfig::default());
        let r = run(
            &qb,
            &mut store,
            &mut rx,
            Line::new(BAUD),
            &mut quilt_link::sim::clean,
            &mut cut_at(half),
        );
        assert!(r.outcome.is_none(), "{:?}", r.outcome);
        assert!(store.installed().is_empty());
        r
    };
    // Power cycle: a new store handle and a new receiver; only the disk stays.
    let mut store = open(d.path());
    assert!(store.installed().is_empty());
    let second = send(&qb, &mut store, BAUD);
    assert!(installed(&second.outcome), "{:?}", second.outcome);
    assert!(
        second.sim.bytes_a_to_b < qb.len() as u64 * 7 / 10,
        "resume sent {} of {}",
        second.sim.bytes_a_to_b,
        qb.len()
    );
    // Whole chunks survive a reboot; at most the chunks in flight are lost.
    assert!(
        first.sim.bytes_a_to_b + second.sim.bytes_a_to_b < qb.len() as u64 + 2 * 256 * 1024,
        "{} + {}",
        first.sim.bytes_a_to_b,
        second.sim.bytes_a_to_b
    );
    store
        .materialize("agents/a", &d.path().join("out"))
        .unwrap();
}

#[test]
fn a_dropped_link_resumes_in_the_same_session_without_resending() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let qb = tool("agents/a", 1, 0, 300_000, &key(1));
    let mut rx = Receiver::new(ReceiverConfig::default());
    let first = run(
        &qb,
        &mut store,
        &mut rx,
        Line::new(BAUD),
        &mut quilt_link::sim::clean,
        &mut cut_at(qb.len() as u64 * 6 / 10),
    );
    assert!(first.outcome.is_none());
    // The cable is pulled and plugged back; `quilt send` is run again.
    rx.link_lost();
    let mut line = Line::new(BAUD);
    line.start_ms = first.sim.ms + 10_000;
    let second = run(
        &qb,
        &mut store,
        &mut rx,
        line,
        &mut quilt_link::sim::clean,
        &mut |_| false,
    );
    assert!(installed(&second.outcome), "{:?}", second.outcome);
    // The new sender is told what is left, for its progress bar.
    let (need, held) = second.plan.unwrap();
    assert!(
        need < qb.len() as u64 / 2 && held > 0,
        "need {need} held {held}"
    );
    assert!(
        need <= second.tx.payload,
        "need {need} > sent {:?}",
        second.tx
    );
    // The receiver kept its partial chunk in memory: the two runs together
    // carry the file once, plus framing and what was in flight at the cut.
    let total = first.tx.payload + second.tx.payload;
    assert!(
        total < qb.len() as u64 + 32 * 1024,
        "{total} payload bytes for a {}-byte file",
        qb.len()
    );
}

#[test]
fn corrupted_bytes_are_detected_and_sent_again() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let qb = tool("agents/a", 1, 0, 200_000, &key(1));
    let mut rx = Receiver::new(ReceiverConfig::default());
    // Flip a bit every ~7 KB towards the board and every 97 bytes back
    // (requests are small), and drop a byte now and then.
    let mut fault = |dir: Dir, i: u64, b: u8| match dir {
        Dir::AtoB if i % 7_001 == 5_000 => Some(b ^ 0x10),
        Dir::AtoB if i % 50_021 == 3 => None,
        Dir::BtoA if i % 97 == 40 => Some(b ^ 0x01),
        _ => Some(b),
    };
    let r = run(
        &qb,
        &mut store,
        &mut rx,
        Line::new(BAUD),
        &mut fault,
        &mut |_| false,
    );
    assert!(installed(&r.outcome), "{:?}", r.outcome);
    assert!(r.rx.rx.frames_bad >= 20, "{:?}", r.rx);
    assert!(r.tx.rx.frames_bad >= 5, "{:?}", r.tx);
    assert!(r.rx.lost + r.rx.timeouts > 0, "{:?}", r.rx);
    assert!(
        r.tx.payload > qb.len() as u64,
        "nothing was re-sent: {:?}",
        r.tx
    );
    let dest = d.path().join("out");
    store.materialize("agents/a", &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("lib/big.bin")).unwrap(),
        noise(200_000, 1)
    );
    assert!(store.fsck().unwrap().problems.is_empty());
}

fn state_bytes(dir: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(dir.join("state")).ok()
}

#[test]
fn a_tampered_bundle_is_refused_with_nothing_installed() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let v1 = tool("agents/a", 1, 0, 100_000, &key(1));
    assert!(installed(&send(&v1, &mut store, 0).outcome));
    let before = state_bytes(d.path());
    let mut qb = tool("agents/a", 2, 1, 100_000, &key(1));
    let n = qb.len();
    qb[n - 10] ^= 0x01; // one content byte, in the last chunk
    let r = send(&qb, &mut store, BAUD);
    match &r.outcome {
        Some(Outcome::Refused { reason }) => {
            assert!(reason.contains("tampered"), "{reason}");
            assert!(reason.contains("chunk"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(store.get("agents/a").unwrap().version, 1);
    assert_eq!(state_bytes(d.path()), before, "state changed");
    assert!(store.fsck().unwrap().problems.is_empty());
    assert_eq!(
        std::fs::read_dir(d.path().join("incoming"))
            .unwrap()
            .count(),
        0
    );
    // The board still runs what it had.
    store
        .materialize("agents/a", &d.path().join("out"))
        .unwrap();
}

#[test]
fn an_untrusted_or_rolled_back_bundle_is_refused_before_any_content() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let stranger = tool("agents/a", 1, 0, 200_000, &key(9));
    let r = send(&stranger, &mut store, BAUD);
    match &r.outcome {
        Some(Outcome::Refused { reason }) => assert!(reason.contains("unknown"), "{reason}"),
        o => panic!("{o:?}"),
    }
    assert!(r.tx.payload < 2_000, "content was fetched: {:?}", r.tx);
    assert!(store.installed().is_empty());

    assert!(installed(
        &send(&tool("agents/a", 5, 0, 50_000, &key(1)), &mut store, 0).outcome
    ));
    let old = tool("agents/a", 4, 0, 200_000, &key(1));
    let r = send(&old, &mut store, BAUD);
    match &r.outcome {
        Some(Outcome::Refused { reason }) => assert!(reason.contains("roll"), "{reason}"),
        o => panic!("{o:?}"),
    }
    assert!(r.tx.payload < 2_000);
    assert_eq!(store.get("agents/a").unwrap().version, 5);
}

#[test]
fn a_new_version_sends_only_the_chunks_the_board_lacks() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let v1 = tool("agents/a", 1, 0, 400_000, &key(1));
    let v2 = tool("agents/a", 2, 1, 400_000, &key(1));
    assert!(installed(&send(&v1, &mut store, 0).outcome));
    let r = send(&v2, &mut store, BAUD);
    match &r.outcome {
        Some(Outcome::Installed {
            version,
            bytes_reused,
            ..
        }) => {
            assert_eq!(*version, 2);
            assert!(*bytes_reused >= 400_000, "{bytes_reused}");
        }
        o => panic!("{o:?}"),
    }
    // var.bin (60 KB) and main.ts travel; big.bin (400 KB) does not.
    assert!(r.tx.payload < 70_000, "{:?}", r.tx);
    assert!(r.sim.bytes_a_to_b < 72_000, "{:?}", r.sim);
    let dest = d.path().join("out");
    store.materialize("agents/a", &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("lib/var.bin")).unwrap(),
        noise(60_000, 101)
    );
}

#[test]
fn the_store_api_refuses_bytes_that_do_not_match_their_id() {
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let id = quilt_bundle::hash::leaf(b"good");
    assert!(store.put_chunk(&id, b"evil").is_err());
    assert!(!store.has_chunk(&id));
    assert!(store.put_chunk(&id, b"good").unwrap());
    assert!(store.has_chunk(&id));
    assert!(!store.put_chunk(&id, b"good").unwrap());
    let _ = Context::default();
}

#[test]
fn a_slow_line_sends_nothing_twice() {
    // At 9600 baud a 2 KiB piece takes 2.1 s, longer than the 1 s retry
    // timer: bytes arriving must count as life, or every piece is re-asked.
    let d = tempfile::tempdir().unwrap();
    let mut store = open(d.path());
    let qb = tool("agents/a", 1, 0, 20_000, &key(1));
    let r = send(&qb, &mut store, 9_600);
    assert!(installed(&r.outcome), "{:?}", r.outcome);
    assert_eq!(r.tx.payload, qb.len() as u64, "{:?}", r.tx);
    assert_eq!((r.rx.timeouts, r.rx.duplicates), (0, 0), "{:?}", r.rx);
}
