//! The DHCPv4 client's messages and its judgement of what comes back.
//! `dhcproto` owns the wire format; this module decides which requests to
//! build and whether a received datagram is a reply to us at all, and
//! which. Pure: bytes in, a [`Reply`] or a [`Refused`] reason out, so it is
//! property-tested and fuzzed over arbitrary input.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use crate::error::NetError;
use crate::lease::Lease;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// Largest datagram read; a longer one is cut and then fails to decode.
pub const MAX_PACKET: usize = 1500;

/// Why a received datagram was not taken. Each is logged once as
/// `event=net-refused reason="…"`, and the client goes on waiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a DHCP message ({0})")]
    Malformed(String),
    #[error("a BOOTREQUEST, not a reply")]
    NotAReply,
    #[error("hardware type/length {htype}/{hlen}, not Ethernet")]
    NotEthernet { htype: u8, hlen: u8 },
    #[error("transaction id {got:#010x}, ours is {want:#010x}")]
    WrongXid { got: u32, want: u32 },
    #[error("for hardware address {0}, not ours")]
    OtherClient(String),
    #[error("no DHCP message type (a plain BOOTP reply)")]
    NoMessageType,
    #[error("a DHCP {0} where a reply was expected")]
    Unexpected(String),
    #[error("no server identifier (option 54)")]
    NoServerId,
    #[error("address {0} cannot be assigned")]
    BadAddress(Ipv4Addr),
    #[error("subnet mask {0} is not a usable netmask")]
    BadMask(Ipv4Addr),
    #[error("lease time {0} s")]
    BadLease(u32),
    #[error("an ACK without a lease time")]
    NoLeaseTime,
    #[error("from server {got}, the lease is {want}'s")]
    OtherServer { got: Ipv4Addr, want: Ipv4Addr },
}

/// A reply to one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Offer {
        addr: Ipv4Addr,
        server: Ipv4Addr,
    },
    Ack(Lease),
    Nak {
        server: Ipv4Addr,
        message: Option<String>,
    },
}

/// Who we are on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub mac: [u8; 6],
    pub xid: u32,
}

/// Options every request asks for.
fn wanted() -> DhcpOption {
    DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ])
}

fn base(c: Client, kind: MessageType, ciaddr: Ipv4Addr, broadcast: bool) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(c.xid, ciaddr, z, z, z, &c.mac);
    m.set_opcode(Opcode::BootRequest).set_htype(HType::Eth);
    // Until the address is set, a unicast reply would be dropped by the
    // kernel (the socket is plain UDP): ask servers to broadcast.
    if broadcast {
        m.set_flags(Flags::default().set_broadcast());
    }
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&c.mac);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::MaxMessageSize(MAX_PACKET as u16));
    opts.insert(wanted());
    m
}

/// DHCPDISCOVER (broadcast).
pub fn discover(c: Client) -> Message {
    base(c, MessageType::Discover, Ipv4Addr::UNSPECIFIED, true)
}

/// DHCPREQUEST in SELECTING: take `addr` from `server` (broadcast).
pub fn request_offer(c: Client, addr: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = base(c, MessageType::Request, Ipv4Addr::UNSPECIFIED, true);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m
}

/// DHCPREQUEST in RENEWING (unicast to the server) or REBINDING
/// (broadcast): extend `addr`, which we hold, so `ciaddr` carries it.
pub fn request_extend(c: Client, addr: Ipv4Addr) -> Message {
    base(c, MessageType::Request, addr, false)
}

/// The message's bytes.
pub fn encode(m: &Message, what: &'static str) -> Result<Vec<u8>, NetError> {
    m.to_vec().map_err(|e| NetError::Encode {
        what,
        detail: e.to_string(),
    })
}

fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn type_name(t: MessageType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Judge a datagram received on port 68 during the exchange `c`: a reply
/// to it, or why not.
pub fn classify(bytes: &[u8], c: Client) -> Result<Reply, Refused> {
    let m = Message::from_bytes(bytes).map_err(|e| Refused::Malformed(e.to_string()))?;
    if m.opcode() != Opcode::BootReply {
        return Err(Refused::NotAReply);
    }
    // Checked before m.chaddr(), which slices by hlen and would panic past 16.
    if m.htype() != HType::Eth || usize::from(m.hlen()) != c.mac.len() {
        return Err(Refused::NotEthernet {
            htype: u8::from(m.htype()),
            hlen: m.hlen(),
        });
    }
    if m.xid() != c.xid {
        return Err(Refused::WrongXid {
            got: m.xid(),
            want: c.xid,
        });
    }
    let chaddr = m.chaddr();
    if chaddr != c.mac {
        return Err(Refused::OtherClient(mac_text(chaddr)));
    }
    let kind = m.opts().msg_type().ok_or(Refused::NoMessageType)?;
    let server = match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => return Err(Refused::NoServerId),
    };
    match kind {
        MessageType::Offer => {
            let addr = m.yiaddr();
            // The same checks an ACK gets, so a bad offer is not requested.
            Lease::from_ack(&m, server).or_else(|e| match e {
                // An offer need not carry a lease time we would refuse later.
                Refused::NoLeaseTime => Ok(Lease {
                    addr,
                    prefix: 0,
                    gateway: None,
                    dns: Vec::new(),
                    server,
                    lease_s: 0,
                    t1_s: 0,
                    t2_s: 0,
                }),
                e => Err(e),
            })?;
            Ok(Reply::Offer { addr, server })
        }
        MessageType::Ack => Lease::from_ack(&m, server).map(Reply::Ack),
        MessageType::Nak => {
            let message = match m.opts().get(OptionCode::Message) {
                Some(DhcpOption::Message(s)) => Some(s.chars().take(80).collect()),
                _ => None,
            };
            Ok(Reply::Nak { server, message })
        }
        other => Err(Refused::Unexpected(type_name(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const C: Client = Client {
        mac: MAC,
        xid: 0x1234_5678,
    };
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    /// What QEMU's user-mode DHCP server answers (libslirp's bootp.c).
    fn reply(kind: MessageType, xid: u32) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, Ipv4Addr::new(10, 0, 2, 15), SERVER, z, &MAC);
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(SERVER));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![SERVER]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        m
    }

    fn bytes(m: &Message) -> Vec<u8> {
        m.to_vec().unwrap()
    }

    #[test]
    fn slirps_offer_and_ack_are_taken() {
        assert_eq!(
            classify(&bytes(&reply(MessageType::Offer, C.xid)), C),
            Ok(Reply::Offer {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                server: SERVER
            })
        );
        let Ok(Reply::Ack(l)) = classify(&bytes(&reply(MessageType::Ack, C.xid)), C) else {
            panic!("ack refused");
        };
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.gateway, Some(SERVER));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!((l.lease_s, l.t1_s, l.t2_s), (86400, 43200, 75600));
    }

    #[test]
    fn foreign_and_bad_replies_are_refused_with_the_reason() {
        assert_eq!(
            classify(&bytes(&reply(MessageType::Ack, 7)), C),
            Err(Refused::WrongXid {
                got: 7,
                want: C.xid
            })
        );
        let mut other = reply(MessageType::Ack, C.xid);
        other.set_chaddr(&[1, 2, 3, 4, 5, 6]);
        assert!(matches!(
            classify(&bytes(&other), C),
            Err(Refused::OtherClient(_))
        ));
        let mut req = reply(MessageType::Ack, C.xid);
        req.set_opcode(Opcode::BootRequest);
        assert_eq!(classify(&bytes(&req), C), Err(Refused::NotAReply));
        let mut nolease = reply(MessageType::Ack, C.xid);
        nolease.opts_mut().remove(OptionCode::AddressLeaseTime);
        assert_eq!(classify(&bytes(&nolease), C), Err(Refused::NoLeaseTime));
        let mut bcast = reply(MessageType::Offer, C.xid);
        bcast.set_yiaddr(Ipv4Addr::BROADCAST);
        assert_eq!(
            classify(&bytes(&bcast), C),
            Err(Refused::BadAddress(Ipv4Addr::BROADCAST))
        );
        let mut mask = reply(MessageType::Ack, C.xid);
        mask.opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
        assert!(matches!(
            classify(&bytes(&mask), C),
            Err(Refused::BadMask(_))
        ));
        let mut noid = reply(MessageType::Offer, C.xid);
        noid.opts_mut().remove(OptionCode::ServerIdentifier);
        assert_eq!(classify(&bytes(&noid), C), Err(Refused::NoServerId));
        assert_eq!(
            classify(&bytes(&reply(MessageType::Discover, C.xid)), C),
            Err(Refused::Unexpected("discover".into()))
        );
        assert!(matches!(
            classify(b"\x02\x01", C),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn a_nak_is_a_reply() {
        let mut nak = reply(MessageType::Nak, C.xid);
        nak.opts_mut()
            .insert(DhcpOption::Message("wrong network".into()));
        assert_eq!(
            classify(&bytes(&nak), C),
            Ok(Reply::Nak {
                server: SERVER,
                message: Some("wrong network".into())
            })
        );
    }

    #[test]
    fn a_long_hardware_length_is_refused_not_sliced() {
        // dhcproto's Message::chaddr() slices 16 bytes by hlen: 17 would panic.
        let mut b = bytes(&reply(MessageType::Ack, C.xid));
        b[2] = 200;
        assert_eq!(
            classify(&b, C),
            Err(Refused::NotEthernet {
                htype: 1,
                hlen: 200
            })
        );
    }

    #[test]
    fn requests_say_what_they_are() {
        let d = Message::from_bytes(&encode(&discover(C), "discover").unwrap()).unwrap();
        assert_eq!(d.xid(), C.xid);
        assert!(d.flags().broadcast());
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        let r = request_offer(C, Ipv4Addr::new(10, 0, 2, 15), SERVER);
        assert_eq!(
            r.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 15)))
        );
        assert_eq!(
            r.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        let e = request_extend(C, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(e.ciaddr(), Ipv4Addr::new(10, 0, 2, 15));
        assert!(e.opts().get(OptionCode::ServerIdentifier).is_none());
    }

    proptest! {
        /// Arbitrary datagrams: refused or taken, never a panic.
        #[test]
        fn any_bytes_are_judged_without_panicking(b in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = classify(&b, C);
        }

        /// A real ACK with bytes changed anywhere: whatever is taken is
        /// still an assignable lease for our exchange.
        #[test]
        fn mutated_acks_give_only_sane_leases(
            edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
            cut in 200usize..400,
        ) {
            let mut b = bytes(&reply(MessageType::Ack, C.xid));
            for (i, v) in edits {
                if let Some(x) = b.get_mut(i) { *x = v; }
            }
            b.truncate(cut.max(240));
            if let Ok(Reply::Ack(l)) = classify(&b, C) {
                prop_assert!(!l.addr.is_unspecified() && !l.addr.is_broadcast());
                prop_assert!((1..=30).contains(&l.prefix));
                prop_assert!(l.t1_s <= l.t2_s && l.t2_s <= l.lease_s);
                prop_assert!(l.dns.len() <= crate::lease::MAX_DNS);
            }
        }
    }
}
