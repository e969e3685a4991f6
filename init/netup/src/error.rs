//! Every way quilt-net fails, one variant per failed operation, with the
//! interface and the OS error.

use std::io;

/// A failure that ends quilt-net (the supervisor restarts it as the boot
/// config says). Refused packets are not errors: see [`crate::dhcp::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no interface {iface}: {source}; `ip link` on the board lists the ones it has")]
    NoInterface { iface: String, source: io::Error },
    #[error("interface name {0:?} is not 1-15 bytes of letters, digits, '.', '-' or '_'")]
    BadName(String),
    #[error("{op} on {iface}: {source}")]
    Ioctl {
        op: &'static str,
        iface: String,
        source: io::Error,
    },
    #[error("opening a socket for {what}: {source}")]
    Socket {
        what: &'static str,
        source: io::Error,
    },
    #[error("binding the DHCP client to udp port 68 on {iface}: {source} (is another DHCP client running?)")]
    Bind { iface: String, source: io::Error },
    #[error("sending a DHCP {what} on {iface}: {source}")]
    Send {
        what: &'static str,
        iface: String,
        source: io::Error,
    },
    #[error("receiving on {iface}: {source}")]
    Recv { iface: String, source: io::Error },
    #[error("encoding a DHCP {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("writing {path}: {source}")]
    Resolv { path: String, source: io::Error },
    #[error("writing the readiness fd {fd}: {source}")]
    Ready { fd: i32, source: io::Error },
}
