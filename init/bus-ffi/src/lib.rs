//! `libquiltbus.so`: the C ABI of the shared-memory bus, for Bun tools
//! through `bun:ffi` (the `quilt-bus` package in `js/`) or any C caller.
//!
//! A container receives its channels from `quilt-init` as inherited fds
//! named in `QUILT_BUS` (see [`spec`]). [`qbus_open`] finds the topic and
//! role there, maps the memfds through `quilt-bus-client` and returns an
//! opaque handle; everything after that is plain integers and pointers
//! into the shared mapping, so the caller reads and writes payloads in
//! place (no copy):
//!
//! * publisher: [`qbus_loan`] → write the slot → [`qbus_publish`];
//! * subscriber: [`qbus_wait`] / [`qbus_peek`] → read the payload →
//!   [`qbus_validate`] (drop-oldest channels) → [`qbus_consume`].
//!
//! Errors are negative return codes (`QBUS_*`) plus a thread-local message
//! ([`qbus_last_error`]). Nothing here panics by design; every entry point
//! also catches unwinding so a bug reports [`QBUS_INTERNAL`] instead of
//! unwinding into C (release builds abort on panic).
//!
//! Boundaries: a handle is used from one thread at a time; a subscriber
//! holds at most one message (the one peeked last) until it is consumed;
//! pointers handed out are valid until `qbus_consume` (received
//! messages), `qbus_publish` (loaned slots) or `qbus_close` (everything).
//! The header for C callers is `include/quiltbus.h`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod spec;

use core::ffi::{c_char, CStr};
use quilt_bus_client::{BusError, Kind, Publisher, PublisherOptions, RawSample, Subscriber, Wait};
use spec::{Role, SpecError};
use std::cell::RefCell;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

/// Bumped on any incompatible change of the functions or [`QbusSample`].
pub const QBUS_ABI_VERSION: u32 = 1;

/// Success.
pub const QBUS_OK: i32 = 0;
/// Nothing arrived (or no space freed up) before the timeout.
pub const QBUS_TIMEOUT: i32 = -1;
/// Block mode, timeout 0: a subscriber has not consumed the oldest slot.
pub const QBUS_FULL: i32 = -2;
/// This publisher was replaced by another one (a takeover); close it.
pub const QBUS_EVICTED: i32 = -3;
/// `qbus_publish` without a preceding `qbus_loan`.
pub const QBUS_NO_LOAN: i32 = -4;
/// The length exceeds the slot size.
pub const QBUS_TOO_LONG: i32 = -5;
/// A bad argument: null handle or pointer, unknown kind, a sample that is
/// not the one held, nothing held.
pub const QBUS_INVALID: i32 = -6;
/// A malformed message was skipped (buggy or hostile publisher); call
/// again for the next one.
pub const QBUS_CORRUPT: i32 = -7;
/// A publisher call on a subscriber handle or the reverse.
pub const QBUS_WRONG_ROLE: i32 = -8;
/// A system call failed (futex, ...).
pub const QBUS_SYSTEM: i32 = -9;
/// A bug in this library (a caught panic).
pub const QBUS_INTERNAL: i32 = -10;

/// Role numbers of [`qbus_open`].
pub const QBUS_PUB: u32 = 0;
/// See [`QBUS_PUB`].
pub const QBUS_SUB: u32 = 1;

/// A received message as C sees it. `ptr`/`len` point into the read-only
/// shared mapping; the bytes are the message only if [`qbus_validate`]
/// says so after reading (always, in block mode).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QbusSample {
    /// Sequence number on the channel.
    pub seq: u64,
    /// Correlation id (request/reply).
    pub corr: u64,
    /// Address of the first payload byte.
    pub ptr: u64,
    /// Payload length.
    pub len: u64,
    /// 0 data, 1 request, 2 reply.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
}

/// An open endpoint; opaque to C.
pub struct QbusHandle {
    topic: String,
    role: Role,
    endpoint: Endpoint,
}

enum Endpoint {
    Pub(Publisher),
    Sub {
        sub: Subscriber,
        /// The message last peeked and not yet consumed.
        held: Option<RawSample>,
    },
}

/// Topics open in this process, so one subscriber region is never driven
/// by two handles (they would fight over its cursor).
static OPEN: Mutex<Vec<(String, Role)>> = Mutex::new(Vec::new());

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Why opening failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("unknown role {0} (0 publisher, 1 subscriber)")]
    Role(u32),
    #[error("topic is null or not UTF-8")]
    Topic,
    #[error("QUILT_BUS is not set or not UTF-8: this process was given no bus channels")]
    NoEnv,
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{topic}:{role} is already open in this process")]
    AlreadyOpen { topic: String, role: Role },
    #[error("fd {fd} named in QUILT_BUS for {topic}:{role} is not open")]
    Fd {
        fd: i32,
        topic: String,
        role: Role,
        #[source]
        source: std::io::Error,
    },
    #[error("open {topic}:{role}")]
    Open {
        topic: String,
        role: Role,
        #[source]
        source: quilt_bus_client::Error,
    },
}

/// Records `e` and its sources as this thread's last error.
fn set_error(e: &dyn std::error::Error) {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    set_message(msg);
}

fn set_message(msg: String) {
    LAST_ERROR.with_borrow_mut(|m| *m = msg);
}

/// Runs `f`, turning a panic into `fallback` (never unwinds into C).
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        set_message("internal error in libquiltbus (panic); please report it".into());
        fallback
    })
}

/// Maps a client error to its code and records its message.
fn code(e: &quilt_bus_client::Error) -> i32 {
    use quilt_bus_client::Error as E;
    set_error(e);
    match e {
        E::Timeout => QBUS_TIMEOUT,
        E::NoLoan => QBUS_NO_LOAN,
        E::Bus(BusError::Full { .. }) => QBUS_FULL,
        E::Bus(BusError::Evicted { .. }) => QBUS_EVICTED,
        E::Bus(BusError::TooLong { .. }) => QBUS_TOO_LONG,
        E::Bus(BusError::Corrupt { .. }) => QBUS_CORRUPT,
        _ => QBUS_SYSTEM,
    }
}

fn invalid(msg: &str) -> i32 {
    set_message(msg.into());
    QBUS_INVALID
}

fn wrong_role(h: &QbusHandle, want: Role) -> i32 {
    set_message(format!("{}:{} is not a {want} handle", h.topic, h.role));
    QBUS_WRONG_ROLE
}

/// `timeout_ns`: negative waits forever, 0 does not wait.
fn timeout(timeout_ns: i64) -> Option<Duration> {
    u64::try_from(timeout_ns).ok().map(Duration::from_nanos)
}

/// A private, close-on-exec duplicate of an inherited fd; checks it is
/// open without assuming it (a bad number in `QUILT_BUS` is an error, not
/// undefined behaviour).
fn dup_inherited(fd: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads and writes no memory of ours; a number
    // that is not an open fd fails with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn open(spec: Option<&str>, topic: &str, role: Role, spins: u32) -> Result<QbusHandle, OpenError> {
    let spec = spec.ok_or(OpenError::NoEnv)?;
    let fds = spec::find(spec, topic, role)?;
    let fds = fds
        .iter()
        .map(|&fd| {
            dup_inherited(fd).map_err(|source| OpenError::Fd {
                fd,
                topic: topic.into(),
                role,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wait = match spins {
        0 => Wait::Futex,
        u32::MAX => Wait::Spin,
        spins => Wait::SpinThenFutex { spins },
    };
    let opened = match (role, fds.split_first()) {
        (Role::Pub, Some((data, subs))) => {
            // A restarted service replaces its dead predecessor; only the
            // holder of the pub token was given this fd at all.
            let options = PublisherOptions {
                token: None,
                takeover: true,
                wait,
                notify: true,
            };
            Publisher::open(data, subs, options).map(Endpoint::Pub)
        }
        (Role::Sub, Some((data, [own]))) => {
            Subscriber::open(data, own, wait).map(|sub| Endpoint::Sub { sub, held: None })
        }
        // spec::parse guarantees the counts; kept total anyway.
        _ => {
            let reason = "wrong number of fds";
            return Err(SpecError::BadEntry {
                entry: topic.into(),
                reason,
            }
            .into());
        }
    };
    let endpoint = opened.map_err(|source| OpenError::Open {
        topic: topic.into(),
        role,
        source,
    })?;
    Ok(QbusHandle {
        topic: topic.into(),
        role,
        endpoint,
    })
}

fn register(topic: &str, role: Role) -> Result<(), OpenError> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if open.iter().any(|(t, r)| t == topic && *r == role) {
        return Err(OpenError::AlreadyOpen {
            topic: topic.into(),
            role,
        });
    }
    open.push((topic.into(), role));
    Ok(())
}

fn unregister(topic: &str, role: Role) {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(t, r)| !(t == topic && *r == role));
}

/// The ABI version this library implements ([`QBUS_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn qbus_abi_version() -> u32 {
    QBUS_ABI_VERSION
}

/// Copies this thread's last error message into `buf` (at most `len - 1`
/// bytes, NUL-terminated) and returns the message's full length in bytes;
/// with a null `buf` or `len == 0` only returns the length.
///
/// # Safety
/// `buf` is null or valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn qbus_last_error(buf: *mut c_char, len: usize) -> usize {
    guard(0, || {
        LAST_ERROR.with_borrow(|msg| {
            if !buf.is_null() && len > 0 {
                let mut n = msg.len().min(len - 1);
                while !msg.is_char_boundary(n) {
                    n -= 1;
                }
                // SAFETY: the caller gave `len` writable bytes at `buf`;
                // we write n + 1 <= len of them, from a distinct String.
                unsafe {
                    core::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            msg.len()
        })
    })
}

/// Opens `topic` as publisher (`role` 0) or subscriber (1) from the fds
/// named in the environment variable `QUILT_BUS`. `spins`: polls before
/// sleeping in a futex when waiting (0: sleep at once, `u32::MAX`: never
/// sleep). A publisher takes over from a dead predecessor. Returns null on
/// error (see [`qbus_last_error`]); close with [`qbus_close`].
///
/// # Safety
/// `topic` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn qbus_open(topic: *const c_char, role: u32, spins: u32) -> *mut QbusHandle {
    let spec = std::env::var("QUILT_BUS").ok();
    // SAFETY: forwarded caller contract; a null spec means "unset".
    unsafe { open_checked(spec.as_deref(), topic, role, spins) }
}

/// [`qbus_open`] with the `QUILT_BUS` string given by the caller (`spec`;
/// null reads the environment variable).
///
/// # Safety
/// `spec` and `topic` are each null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn qbus_open_spec(
    spec: *const c_char,
    topic: *const c_char,
    role: u32,
    spins: u32,
) -> *mut QbusHandle {
    let spec = if spec.is_null() {
        std::env::var("QUILT_BUS").ok()
    } else {
        // SAFETY: non-null and NUL-terminated per the caller contract.
        unsafe { CStr::from_ptr(spec) }
            .to_str()
            .ok()
            .map(str::to_owned)
    };
    // SAFETY: forwarded caller contract.
    unsafe { open_checked(spec.as_deref(), topic, role, spins) }
}

/// # Safety
/// `topic` is null or a NUL-terminated string.
unsafe fn open_checked(
    spec: Option<&str>,
    topic: *const c_char,
    role: u32,
    spins: u32,
) -> *mut QbusHandle {
    guard(core::ptr::null_mut(), || {
        let result = (|| {
            let role = Role::from_u32(role).ok_or(OpenError::Role(role))?;
            if topic.is_null() {
                return Err(OpenError::Topic);
            }
            // SAFETY: non-null and NUL-terminated per the caller contract.
            let topic = unsafe { CStr::from_ptr(topic) }
                .to_str()
                .map_err(|_| OpenError::Topic)?;
            spec::check_topic(topic)?;
            register(topic, role)?;
            open(spec, topic, role, spins).inspect_err(|_| unregister(topic, role))
        })();
        match result {
            Ok(h) => Box::into_raw(Box::new(h)),
            Err(e) => {
                set_error(&e);
                core::ptr::null_mut()
            }
        }
    })
}

/// Closes a handle: a publisher releases the channel, a subscriber stops
/// counting for back-pressure. Every pointer obtained through it dies.
/// Null is ignored.
///
/// # Safety
/// `h` is null or a handle from `qbus_open*` not closed yet.
#[no_mangle]
pub unsafe extern "C" fn qbus_close(h: *mut QbusHandle) {
    guard((), || {
        if h.is_null() {
            return;
        }
        // SAFETY: from Box::into_raw in open_checked, not freed yet (contract).
        let h = unsafe { Box::from_raw(h) };
        unregister(&h.topic, h.role);
    });
}

/// # Safety
/// `h` is null or a live handle used by no other thread.
unsafe fn handle<'a>(h: *mut QbusHandle) -> Result<&'a mut QbusHandle, i32> {
    // SAFETY: caller contract.
    unsafe { h.as_mut() }.ok_or_else(|| invalid("null handle"))
}

/// Payload bytes per slot, or a negative code.
///
/// # Safety
/// `h` is null or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn qbus_slot_size(h: *mut QbusHandle) -> i64 {
    guard(i64::from(QBUS_INTERNAL), || {
        // SAFETY: forwarded caller contract.
        match unsafe { handle(h) } {
            Ok(h) => match &h.endpoint {
                Endpoint::Pub(p) => p.slot_size() as i64,
                Endpoint::Sub { sub, .. } => sub.slot_size() as i64,
            },
            Err(c) => i64::from(c),
        }
    })
}

/// Subscriber: messages lost so far (overwritten in drop-oldest mode, or
/// malformed), or a negative code.
///
/// # Safety
/// `h` is null or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn qbus_lost(h: *mut QbusHandle) -> i64 {
    guard(i64::from(QBUS_INTERNAL), || {
        // SAFETY: forwarded caller contract.
        match unsafe { handle(h) } {
            Ok(h) => match &h.endpoint {
                Endpoint::Sub { sub, .. } => i64::try_from(sub.lost()).unwrap_or(i64::MAX),
                Endpoint::Pub(_) => i64::from(wrong_role(h, Role::Sub)),
            },
            Err(c) => i64::from(c),
        }
    })
}

/// Publisher: loans the next slot. `timeout_ns` 0 does not wait (block
/// mode: [`QBUS_FULL`]), negative waits forever, positive up to that long
/// ([`QBUS_TIMEOUT`]). On success stores the slot's address in `*out_ptr`
/// and its size in `*out_cap` (if not null); write up to that many bytes,
/// then [`qbus_publish`]. Loaning again before publishing returns the
/// same slot.
///
/// # Safety
/// `h` is null or a live handle used by no other thread; `out_ptr` and
/// `out_cap` are each null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn qbus_loan(
    h: *mut QbusHandle,
    timeout_ns: i64,
    out_ptr: *mut *mut u8,
    out_cap: *mut u64,
) -> i32 {
    guard(QBUS_INTERNAL, || {
        // SAFETY: forwarded caller contract.
        let h = match unsafe { handle(h) } {
            Ok(h) => h,
            Err(c) => return c,
        };
        let Endpoint::Pub(p) = &mut h.endpoint else {
            return wrong_role(h, Role::Pub);
        };
        let loaned = if timeout_ns == 0 {
            p.loan()
        } else {
            p.loan_wait(timeout(timeout_ns))
        };
        match loaned {
            Ok(slot) => {
                // SAFETY: each out pointer is null or writable (contract).
                unsafe {
                    if let Some(out) = out_ptr.as_mut() {
                        *out = slot.as_mut_ptr();
                    }
                    if let Some(out) = out_cap.as_mut() {
                        *out = slot.len() as u64;
                    }
                }
                QBUS_OK
            }
            Err(e) => code(&e),
        }
    })
}

/// Publisher: publishes the loaned slot's first `len` bytes with a
/// correlation id and kind (0 data, 1 request, 2 reply). Returns the
/// message's sequence number (>= 0) or a negative code.
///
/// # Safety
/// `h` is null or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn qbus_publish(h: *mut QbusHandle, len: u64, corr: u64, kind: u32) -> i64 {
    guard(i64::from(QBUS_INTERNAL), || {
        // SAFETY: forwarded caller contract.
        let h = match unsafe { handle(h) } {
            Ok(h) => h,
            Err(c) => return i64::from(c),
        };
        let Endpoint::Pub(p) = &mut h.endpoint else {
            return i64::from(wrong_role(h, Role::Pub));
        };
        let Some(kind) = Kind::from_word(u64::from(kind)) else {
            return i64::from(invalid("kind must be 0 (data), 1 (request) or 2 (reply)"));
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        match p.publish_as(len, corr, kind) {
            Ok(seq) => i64::try_from(seq).unwrap_or(i64::MAX),
            Err(e) => i64::from(code(&e)),
        }
    })
}

/// Subscriber: the next message without waiting. Returns 1 and fills
/// `*out` when there is one (held until [`qbus_consume`]; peeking again
/// returns it again), 0 when there is none, or a negative code.
///
/// # Safety
/// `h` is null or a live handle used by no other thread; `out` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn qbus_peek(h: *mut QbusHandle, out: *mut QbusSample) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { receive(h, 0, out) }
}

/// Subscriber: the next message, waiting up to `timeout_ns` (negative:
/// forever, 0: not at all). Returns 1 and fills `*out`, or
/// [`QBUS_TIMEOUT`], or another negative code.
///
/// # Safety
/// As [`qbus_peek`].
#[no_mangle]
pub unsafe extern "C" fn qbus_wait(
    h: *mut QbusHandle,
    timeout_ns: i64,
    out: *mut QbusSample,
) -> i32 {
    // SAFETY: forwarded caller contract.
    match unsafe { receive(h, timeout_ns, out) } {
        0 => {
            set_message("timed out".into());
            QBUS_TIMEOUT
        }
        n => n,
    }
}

/// # Safety
/// As [`qbus_peek`].
unsafe fn receive(h: *mut QbusHandle, timeout_ns: i64, out: *mut QbusSample) -> i32 {
    guard(QBUS_INTERNAL, || {
        // SAFETY: forwarded caller contract.
        let h = match unsafe { handle(h) } {
            Ok(h) => h,
            Err(c) => return c,
        };
        let Endpoint::Sub { sub, held } = &mut h.endpoint else {
            return wrong_role(h, Role::Sub);
        };
        let got = if timeout_ns == 0 {
            sub.peek_raw()
        } else {
            sub.wait_raw(timeout(timeout_ns)).map(Some)
        };
        match got {
            Ok(Some(raw)) => {
                *held = Some(raw);
                // SAFETY: `out` is null or writable (contract).
                if let Some(out) = unsafe { out.as_mut() } {
                    *out = QbusSample {
                        seq: raw.seq,
                        corr: raw.corr,
                        ptr: raw.ptr as u64,
                        len: raw.len as u64,
                        kind: raw.kind.word() as u32,
                        reserved: 0,
                    };
                }
                1
            }
            Ok(None) => 0,
            Err(e) => code(&e),
        }
    })
}

/// The held sample, checked against `sample` (null: whichever is held).
///
/// # Safety
/// `sample` is null or valid for one read.
unsafe fn held(held: &Option<RawSample>, sample: *const QbusSample) -> Result<&RawSample, i32> {
    let Some(raw) = held else {
        return Err(invalid("no message held: peek or wait first"));
    };
    // SAFETY: `sample` is null or readable (contract).
    if let Some(s) = unsafe { sample.as_ref() } {
        if s.seq != raw.seq {
            return Err(invalid(
                "sample is not the message held (already consumed?)",
            ));
        }
    }
    Ok(raw)
}

/// Subscriber: whether the bytes read from the held message since it was
/// peeked were the message: 1 yes, 0 overwritten meanwhile (drop-oldest;
/// discard what was read), or a negative code. `sample` may be null.
///
/// # Safety
/// `h` is null or a live handle used by no other thread; `sample` is null
/// or valid for one read.
#[no_mangle]
pub unsafe extern "C" fn qbus_validate(h: *mut QbusHandle, sample: *const QbusSample) -> i32 {
    guard(QBUS_INTERNAL, || {
        // SAFETY: forwarded caller contract.
        let h = match unsafe { handle(h) } {
            Ok(h) => h,
            Err(c) => return c,
        };
        let Endpoint::Sub { sub, held: slot } = &h.endpoint else {
            return wrong_role(h, Role::Sub);
        };
        // SAFETY: forwarded caller contract.
        match unsafe { held(slot, sample) } {
            Ok(raw) => i32::from(sub.validate(raw)),
            Err(c) => c,
        }
    })
}

/// Subscriber: releases the held message (block mode: frees its slot);
/// the next peek moves on. Its pointer must not be used afterwards.
/// `sample` may be null.
///
/// # Safety
/// As [`qbus_validate`].
#[no_mangle]
pub unsafe extern "C" fn qbus_consume(h: *mut QbusHandle, sample: *const QbusSample) -> i32 {
    guard(QBUS_INTERNAL, || {
        // SAFETY: forwarded caller contract.
        let h = match unsafe { handle(h) } {
            Ok(h) => h,
            Err(c) => return c,
        };
        let Endpoint::Sub { sub, held: slot } = &mut h.endpoint else {
            return wrong_role(h, Role::Sub);
        };
        // SAFETY: forwarded caller contract.
        let raw = match unsafe { held(slot, sample) } {
            Ok(raw) => *raw,
            Err(c) => return c,
        };
        *slot = None;
        match sub.consume(&raw) {
            Ok(()) => QBUS_OK,
            Err(e) => code(&e),
        }
    })
}
