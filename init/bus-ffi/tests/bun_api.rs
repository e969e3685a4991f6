//! The `quilt-bus` TypeScript API under the pinned Bun: `tests/js/api.ts`
//! exercises loan/publish/receive, back-pressure, drop-oldest validation,
//! request/reply and errors on channels created here.

mod common;

use common::*;
use quilt_bus_client::{create_channel, ChannelFds, Config, Mode};
use rustix::fd::AsFd;
use std::process::Stdio;
use std::time::Duration;

fn channel(name: &str, mode: Mode, capacity: u64) -> ChannelFds {
    let cfg = Config {
        capacity,
        slot_size: 64,
        mode,
        max_subscribers: 1,
        channel_id: 6,
    };
    create_channel(name, &cfg).unwrap()
}

#[test]
fn typescript_api() {
    let bun = bun();
    let tmp = scratch_root();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/api.ts");
    let dir = stage(tmp.path(), "api", &script);
    let channels = [
        ("t.block", channel("t.block", Mode::Block, 4)),
        ("t.drop", channel("t.drop", Mode::DropOldest, 2)),
        ("t.rr.req", channel("t.rr.req", Mode::Block, 4)),
        ("t.rr.rep", channel("t.rr.rep", Mode::Block, 4)),
    ];
    let read_only: Vec<_> = channels
        .iter()
        .map(|(_, ch)| {
            (
                ch.data_read_only().unwrap(),
                ch.subscribers_read_only().unwrap(),
            )
        })
        .collect();
    let mut entries = Vec::new();
    for ((topic, ch), (data_ro, subs_ro)) in channels.iter().zip(&read_only) {
        entries.push((*topic, "pub", vec![ch.data.as_fd(), subs_ro[0].as_fd()]));
        entries.push((
            *topic,
            "sub",
            vec![data_ro.as_fd(), ch.subscribers[0].as_fd()],
        ));
    }
    let (fds, spec) = hand_out(&entries);
    let child = spawn(&bun, &dir, &spec, Stdio::null());
    drop(fds);
    let (status, out) = finish(child, Duration::from_secs(60));
    assert!(status.success(), "api.ts exited {status}: {out}");
    assert_eq!(out.trim(), r#"{"ok":true}"#);
}
