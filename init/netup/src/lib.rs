//! `quilt-net`: a board's IPv4 bring-up, run by quilt-init as an ordinary
//! supervised service, never inside PID 1.
//!
//! It brings `lo` and one interface up and gives the interface an address,
//! a netmask, a default route and DNS servers, either from its command line
//! (`static`) or from a DHCPv4 server (`dhcp`), whose lease it then keeps:
//! renewed at T1, rebound at T2, dropped and sought again at expiry or on a
//! NAK. The DHCP wire format is `dhcproto`'s; what this crate adds is the
//! client's decisions, kept pure where they can be ([`dhcp`], [`lease`],
//! [`cli`]) and unit- and property-tested, and a thin layer of syscalls
//! ([`iface`]: the ioctls busybox's `ifconfig` and `route` make; [`client`]:
//! one UDP socket).
//!
//! It says what it did as one `event=... key=value` line per state change
//! on stdout, which quilt-init logs as the service's output.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cli;
pub mod client;
pub mod dhcp;
pub mod error;
pub mod event;
pub mod iface;
pub mod lease;
pub mod ready;
pub mod resolv;
