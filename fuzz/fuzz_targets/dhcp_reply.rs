//! quilt-net's judgement of a datagram on UDP port 68
//! (`init/netup/src/dhcp.rs`, over dhcproto's decoder): any bytes are
//! refused or taken, never a panic, and what is taken as an ACK is a
//! lease quilt-net can set. Run with `-O` (fuzz/run.sh does): dhcproto
//! debug-asserts option lengths, which hostile input trips in a debug
//! build, while the release build quilt-net ships returns an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quilt_netup::dhcp::{classify, Client, Reply};

fuzz_target!(|data: &[u8]| {
    // Take the xid and hardware address from the input itself, so the
    // fuzzer reaches past the "not ours" checks.
    let xid = data
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    let mut mac = [0u8; 6];
    if let Some(b) = data.get(28..34) {
        mac.copy_from_slice(b);
    }
    if let Ok(Reply::Ack(l)) = classify(data, Client { mac, xid }) {
        assert!(!l.addr.is_unspecified() && !l.addr.is_broadcast());
        assert!((1..=30).contains(&l.prefix));
        assert!(l.t1_s <= l.t2_s && l.t2_s <= l.lease_s);
        assert!(l.dns.len() <= 3);
    }
});
