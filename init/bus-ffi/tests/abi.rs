//! The C ABI in one process: open from a `QUILT_BUS` string, loan /
//! publish / wait / validate / consume, and every error code a caller can
//! provoke, with its message.

use quilt_bus_client::{create_channel, ChannelFds, Config, Mode};
use quiltbus::*;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::null_mut;

const SECOND: i64 = 1_000_000_000;

fn channel(name: &str, mode: Mode, capacity: u64) -> ChannelFds {
    let cfg = Config {
        capacity,
        slot_size: 64,
        mode,
        max_subscribers: 1,
        channel_id: 1,
    };
    create_channel(name, &cfg).unwrap()
}

/// The fds of one channel as `quilt-init` hands them out, kept open, and
/// the `QUILT_BUS` entries naming them.
struct Given {
    _fds: Vec<OwnedFd>,
    spec: String,
}

fn give(topic: &str, ch: &ChannelFds) -> Given {
    let data_ro = ch.data_read_only().unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let data_rw = ch.data.try_clone().unwrap();
    let own = ch.subscribers[0].try_clone().unwrap();
    let spec = format!(
        "{topic}:pub:{},{};{topic}:sub:{},{}",
        data_rw.as_raw_fd(),
        subs_ro[0].as_raw_fd(),
        data_ro.as_raw_fd(),
        own.as_raw_fd()
    );
    let mut fds = vec![data_rw, data_ro, own];
    fds.extend(subs_ro);
    Given { _fds: fds, spec }
}

fn open(spec: &str, topic: &str, role: u32) -> *mut QbusHandle {
    let spec = CString::new(spec).unwrap();
    let topic = CString::new(topic).unwrap();
    // SAFETY: two NUL-terminated strings.
    unsafe { qbus_open_spec(spec.as_ptr(), topic.as_ptr(), role, 100) }
}

fn last_error() -> String {
    let mut buf = vec![0u8; 512];
    // SAFETY: buf is writable for its length.
    let n = unsafe { qbus_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.min(511));
    String::from_utf8(buf).unwrap()
}

/// Loans, writes `bytes` in place, publishes; returns the code or seq.
fn send(p: *mut QbusHandle, bytes: &[u8], corr: u64, kind: u32, timeout_ns: i64) -> i64 {
    let mut ptr: *mut u8 = null_mut();
    let mut cap = 0u64;
    // SAFETY: p is a live handle; out pointers are locals.
    let rc = unsafe { qbus_loan(p, timeout_ns, &mut ptr, &mut cap) };
    if rc != QBUS_OK {
        return i64::from(rc);
    }
    assert_eq!(cap, 64);
    assert!(bytes.len() <= cap as usize);
    // SAFETY: the loaned slot has `cap` writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
    // SAFETY: live handle.
    unsafe { qbus_publish(p, bytes.len() as u64, corr, kind) }
}

/// Waits for a message and copies it out; consumes it.
fn recv(s: *mut QbusHandle, timeout_ns: i64) -> Result<(QbusSample, Vec<u8>), i32> {
    let mut m = QbusSample::default();
    // SAFETY: live handle, local out struct.
    let rc = unsafe { qbus_wait(s, timeout_ns, &mut m) };
    if rc != 1 {
        return Err(rc);
    }
    // SAFETY: ptr/len describe the held message in the live mapping.
    let bytes = unsafe { std::slice::from_raw_parts(m.ptr as *const u8, m.len as usize) }.to_vec();
    // SAFETY: live handle, the sample just filled.
    assert_eq!(unsafe { qbus_validate(s, &m) }, 1);
    // SAFETY: as above.
    assert_eq!(unsafe { qbus_consume(s, &m) }, QBUS_OK);
    Ok((m, bytes))
}

#[test]
fn publish_and_receive_in_place() {
    let ch = channel("abi", Mode::Block, 4);
    let given = give("t.abi", &ch);
    let s = open(&given.spec, "t.abi", QBUS_SUB);
    assert!(!s.is_null(), "{}", last_error());
    let p = open(&given.spec, "t.abi", QBUS_PUB);
    assert!(!p.is_null(), "{}", last_error());
    // SAFETY: live handles.
    unsafe {
        assert_eq!(qbus_slot_size(p), 64);
        assert_eq!(qbus_slot_size(s), 64);
        assert_eq!(qbus_abi_version(), QBUS_ABI_VERSION);
    }
    for i in 0..20u64 {
        let body = format!("message {i}");
        assert_eq!(send(p, body.as_bytes(), 100 + i, 1, SECOND), i as i64);
        let (m, bytes) = recv(s, SECOND).unwrap();
        assert_eq!((m.seq, m.corr, m.kind), (i, 100 + i, 1));
        assert_eq!(bytes, body.as_bytes());
    }
    // Nothing more: peek says 0, a short wait times out.
    let mut m = QbusSample::default();
    // SAFETY: live handles, local out struct.
    unsafe {
        assert_eq!(qbus_peek(s, &mut m), 0);
        assert_eq!(qbus_wait(s, 1_000_000, &mut m), QBUS_TIMEOUT);
        assert_eq!(last_error(), "timed out");
        assert_eq!(qbus_lost(s), 0);
        qbus_close(p);
        qbus_close(s);
    }
}

#[test]
fn block_mode_full_and_timeout() {
    let ch = channel("full", Mode::Block, 2);
    let given = give("t.full", &ch);
    let s = open(&given.spec, "t.full", QBUS_SUB);
    let p = open(&given.spec, "t.full", QBUS_PUB);
    assert!(send(p, b"a", 0, 0, 0) >= 0);
    assert!(send(p, b"b", 0, 0, 0) >= 0);
    assert_eq!(send(p, b"c", 0, 0, 0), i64::from(QBUS_FULL));
    assert!(last_error().contains("channel full"), "{}", last_error());
    assert_eq!(send(p, b"c", 0, 0, 2_000_000), i64::from(QBUS_TIMEOUT));
    // Consuming one frees a slot.
    assert_eq!(recv(s, SECOND).unwrap().1, b"a");
    assert_eq!(send(p, b"c", 0, 0, 0), 2);
    // SAFETY: live handles.
    unsafe {
        qbus_close(p);
        qbus_close(s);
    }
}

#[test]
fn drop_oldest_counts_lost_and_validation_fails_on_overwrite() {
    let ch = channel("drop", Mode::DropOldest, 2);
    let given = give("t.drop", &ch);
    let s = open(&given.spec, "t.drop", QBUS_SUB);
    let p = open(&given.spec, "t.drop", QBUS_PUB);
    assert_eq!(send(p, b"first", 0, 0, 0), 0);
    let mut m = QbusSample::default();
    // SAFETY: live handles, local out struct.
    unsafe {
        assert_eq!(qbus_peek(s, &mut m), 1);
        assert_eq!(m.seq, 0);
        // The publisher laps the held message.
        for _ in 0..3 {
            assert!(send(p, b"later", 0, 0, 0) >= 0);
        }
        assert_eq!(qbus_validate(s, &m), 0);
        assert_eq!(qbus_consume(s, std::ptr::null()), QBUS_OK);
        assert_eq!(qbus_peek(s, &mut m), 1);
        assert_eq!(m.seq, 2);
        assert_eq!(qbus_lost(s), 1);
        qbus_close(p);
        qbus_close(s);
    }
}

#[test]
fn errors_have_codes_and_messages() {
    let ch = channel("errs", Mode::Block, 4);
    let given = give("t.errs", &ch);

    assert!(open(&given.spec, "other", QBUS_SUB).is_null());
    let e = last_error();
    assert!(
        e.contains("no other:sub") && e.contains("t.errs:pub, t.errs:sub"),
        "{e}"
    );
    assert!(open(&given.spec, "Bad/Topic", QBUS_SUB).is_null());
    assert!(last_error().contains("bad topic"));
    assert!(open(&given.spec, "t.errs", 7).is_null());
    assert!(last_error().contains("unknown role 7"));
    assert!(open("t.errs:sub:900,901", "t.errs", QBUS_SUB).is_null());
    let e = last_error();
    assert!(e.contains("fd 900") && e.contains("not open"), "{e}");
    // An fd that is open but no memfd.
    let file = tempfile::tempfile().unwrap();
    let spec = format!("t.errs:sub:{0},{0}", file.as_raw_fd());
    assert!(open(&spec, "t.errs", QBUS_SUB).is_null());
    assert!(
        last_error().starts_with("open t.errs:sub: read seals"),
        "{}",
        last_error()
    );

    let s = open(&given.spec, "t.errs", QBUS_SUB);
    assert!(!s.is_null());
    assert!(open(&given.spec, "t.errs", QBUS_SUB).is_null());
    assert!(last_error().contains("already open"));
    let p = open(&given.spec, "t.errs", QBUS_PUB);
    let mut m = QbusSample::default();
    let mut ptr = null_mut();
    // SAFETY: live handles (or null, which is refused), local outs.
    unsafe {
        assert_eq!(qbus_wait(p, 0, &mut m), QBUS_WRONG_ROLE);
        assert!(last_error().contains("is not a sub handle"));
        assert_eq!(qbus_loan(s, 0, &mut ptr, null_mut()), QBUS_WRONG_ROLE);
        assert_eq!(qbus_publish(p, 1, 0, 0), i64::from(QBUS_NO_LOAN));
        assert_eq!(qbus_loan(p, 0, &mut ptr, null_mut()), QBUS_OK);
        assert_eq!(qbus_publish(p, 65, 0, 0), i64::from(QBUS_TOO_LONG));
        assert_eq!(qbus_publish(p, 1, 0, 9), i64::from(QBUS_INVALID));
        assert_eq!(qbus_publish(p, 1, 0, 0), 0);
        assert_eq!(qbus_consume(s, std::ptr::null()), QBUS_INVALID);
        assert!(last_error().contains("no message held"));
        assert_eq!(qbus_wait(s, SECOND, &mut m), 1);
        let stale = QbusSample { seq: 77, ..m };
        assert_eq!(qbus_consume(s, &stale), QBUS_INVALID);
        assert_eq!(qbus_consume(s, &m), QBUS_OK);
        assert_eq!(qbus_slot_size(null_mut()), i64::from(QBUS_INVALID));
        assert_eq!(qbus_lost(p), i64::from(QBUS_WRONG_ROLE));
        qbus_close(null_mut());
        qbus_close(s);
        // Closed topics can be opened again.
        let again = open(&given.spec, "t.errs", QBUS_SUB);
        assert!(!again.is_null());
        qbus_close(again);
        qbus_close(p);
    }
}

#[test]
fn a_second_publisher_takes_over() {
    let ch = channel("takeover", Mode::Block, 4);
    let given = give("t.take", &ch);
    let first = open(&given.spec, "t.take", QBUS_PUB);
    assert_eq!(send(first, b"x", 0, 0, 0), 0);
    // Same process, so the registry refuses; a restarted container is a
    // fresh process: simulate it by closing the registry entry only.
    let data = ch.data.try_clone().unwrap();
    let subs = ch.subscribers_read_only().unwrap();
    let spec = format!("t.take2:pub:{},{}", data.as_raw_fd(), subs[0].as_raw_fd());
    let second = open(&spec, "t.take2", QBUS_PUB);
    assert!(!second.is_null(), "{}", last_error());
    assert_eq!(send(first, b"y", 0, 0, 0), i64::from(QBUS_EVICTED));
    assert!(last_error().contains("replaced"));
    assert_eq!(send(second, b"z", 0, 0, 0), 1);
    // SAFETY: live handles.
    unsafe {
        qbus_close(first);
        qbus_close(second);
    }
}

#[test]
fn last_error_truncates_and_reports_full_length() {
    assert!(open("", "missing", QBUS_PUB).is_null());
    let full = last_error();
    let mut small = [0xffu8; 8];
    // SAFETY: small is writable for 8 bytes.
    let n = unsafe { qbus_last_error(small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(n, full.len());
    assert_eq!(&small[..7], &full.as_bytes()[..7]);
    assert_eq!(small[7], 0);
    // SAFETY: null buffer: length only.
    assert_eq!(unsafe { qbus_last_error(null_mut(), 0) }, full.len());
}

/// The C header and the TypeScript package restate the codes: keep them
/// in step with the library.
#[test]
fn header_and_typescript_agree_with_the_library() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(dir.join("include/quiltbus.h")).unwrap();
    let ts = std::fs::read_to_string(dir.join("js/index.ts")).unwrap();
    let dts = std::fs::read_to_string(dir.join("js/index.d.ts")).unwrap();
    let codes = [
        ("TIMEOUT", "Timeout", QBUS_TIMEOUT),
        ("FULL", "Full", QBUS_FULL),
        ("EVICTED", "Evicted", QBUS_EVICTED),
        ("NO_LOAN", "NoLoan", QBUS_NO_LOAN),
        ("TOO_LONG", "TooLong", QBUS_TOO_LONG),
        ("INVALID", "Invalid", QBUS_INVALID),
        ("CORRUPT", "Corrupt", QBUS_CORRUPT),
        ("WRONG_ROLE", "WrongRole", QBUS_WRONG_ROLE),
        ("SYSTEM", "System", QBUS_SYSTEM),
        ("INTERNAL", "Internal", QBUS_INTERNAL),
    ];
    for (c, js, value) in codes {
        assert!(
            header.contains(&format!("#define QBUS_{c} ({value})")),
            "quiltbus.h QBUS_{c}"
        );
        assert!(
            ts.contains(&format!("  {js}: {value},")),
            "index.ts Code.{js}"
        );
        assert!(
            dts.contains(&format!("readonly {js}: {value};")),
            "index.d.ts Code.{js}"
        );
    }
    let version = format!("#define QBUS_ABI_VERSION {QBUS_ABI_VERSION}");
    assert!(header.contains(&version));
    assert!(ts.contains(&format!("const ABI_VERSION = {QBUS_ABI_VERSION};")));
    assert_eq!(
        std::mem::size_of::<QbusSample>(),
        40,
        "index.ts reads a 40-byte sample"
    );
}
