//! The parts of the `quilt` CLI that other programs may use as a library:
//! today the gateway client ([`gateway::Board`]: pinned TLS, RFC 9421
//! signing, kept connections), which the system tests drive in-process
//! to put many concurrent agents on a board without a process per call.
//! Everything else is the command line's own (`main.rs` and its modules).

pub mod gateway;
