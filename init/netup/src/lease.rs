//! A DHCP lease and its clock: what an ACK grants, read from the message
//! and checked, and which phase (bound, renewing, rebinding, expired) a
//! lease is in after some time, with RFC 2131's retransmission rules.
//! Pure: no socket, no clock of its own.

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, OptionCode};

use crate::cli::prefix_of;
use crate::dhcp::Refused;

/// A lease time of all ones: infinite (RFC 2132 9.2).
pub const INFINITE: u32 = u32::MAX;
/// At most this many DNS servers are kept (resolv.conf reads three).
pub const MAX_DNS: usize = 3;
/// RFC 2131 4.4.5: never retransmit a renewal sooner than this...
const MIN_RETRANSMIT: Duration = Duration::from_secs(60);
/// ...unless the phase ends sooner; and not in a busy loop then either.
const FLOOR: Duration = Duration::from_secs(1);

/// What a server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// The first router in the subnet, if the server named one.
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    /// Seconds; [`INFINITE`] for ever.
    pub lease_s: u32,
    pub t1_s: u32,
    pub t2_s: u32,
}

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before T1: nothing to do.
    Bound,
    /// T1..T2: ask the server that granted it, by unicast.
    Renewing,
    /// T2..expiry: ask any server, by broadcast.
    Rebinding,
    /// Gone: drop the address and start over.
    Expired,
}

/// The classful mask (RFC 2131 leaves it to the client when option 1 is missing).
fn classful(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// An address a server may hand out.
fn assignable(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
        && a.octets()[0] != 0
        && a.octets()[0] < 240
}

fn in_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let m = u32::from(crate::cli::netmask(prefix));
    u32::from(a) & m == u32::from(b) & m
}

impl Lease {
    /// The lease an ACK (already matched to our exchange) grants, from the
    /// server `server` (its option 54).
    pub fn from_ack(msg: &Message, server: Ipv4Addr) -> Result<Lease, Refused> {
        let addr = msg.yiaddr();
        if !assignable(addr) {
            return Err(Refused::BadAddress(addr));
        }
        let prefix = match msg.opts().get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => {
                let p = prefix_of(*m).ok_or(Refused::BadMask(*m))?;
                if !(1..=30).contains(&p) {
                    return Err(Refused::BadMask(*m));
                }
                p
            }
            _ => classful(addr),
        };
        let gateway = match msg.opts().get(OptionCode::Router) {
            Some(DhcpOption::Router(rs)) => rs
                .iter()
                .copied()
                .find(|r| assignable(*r) && *r != addr && in_subnet(*r, addr, prefix)),
            _ => None,
        };
        let dns = match msg.opts().get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(ds)) => ds
                .iter()
                .copied()
                .filter(|d| !d.is_unspecified() && !d.is_broadcast() && !d.is_multicast())
                .take(MAX_DNS)
                .collect(),
            _ => Vec::new(),
        };
        let lease_s = match msg.opts().get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(0)) => return Err(Refused::BadLease(0)),
            Some(DhcpOption::AddressLeaseTime(s)) => *s,
            // An ACK must carry one (RFC 2131 table 3).
            _ => return Err(Refused::NoLeaseTime),
        };
        let (t1_s, t2_s) = timers(
            lease_s,
            match msg.opts().get(OptionCode::Renewal) {
                Some(DhcpOption::Renewal(t)) => Some(*t),
                _ => None,
            },
            match msg.opts().get(OptionCode::Rebinding) {
                Some(DhcpOption::Rebinding(t)) => Some(*t),
                _ => None,
            },
        );
        Ok(Lease {
            addr,
            prefix,
            gateway,
            dns,
            server,
            lease_s,
            t1_s,
            t2_s,
        })
    }

    /// The phase `held` after the ACK.
    pub fn phase(&self, held: Duration) -> Phase {
        let s = held.as_secs();
        if self.lease_s == INFINITE {
            Phase::Bound
        } else if s >= u64::from(self.lease_s) {
            Phase::Expired
        } else if s >= u64::from(self.t2_s) {
            Phase::Rebinding
        } else if s >= u64::from(self.t1_s) {
            Phase::Renewing
        } else {
            Phase::Bound
        }
    }

    /// How long after `held` the next step is due: T1 when bound; when
    /// renewing or rebinding, half the time left in the phase but at least
    /// 60 s (RFC 2131 4.4.5), never past the phase's end, never under 1 s.
    pub fn next_step(&self, held: Duration) -> Duration {
        let at = |s: u32| Duration::from_secs(u64::from(s)).saturating_sub(held);
        let wait = match self.phase(held) {
            Phase::Bound if self.lease_s == INFINITE => Duration::from_secs(u64::from(u32::MAX)),
            Phase::Bound => at(self.t1_s),
            Phase::Renewing => retransmit(at(self.t2_s)),
            Phase::Rebinding => retransmit(at(self.lease_s)),
            Phase::Expired => Duration::ZERO,
        };
        wait.max(FLOOR)
    }
}

fn retransmit(left: Duration) -> Duration {
    (left / 2).max(MIN_RETRANSMIT).min(left)
}

/// T1 and T2: the server's when they make sense (T1 <= T2 <= lease),
/// else RFC 2131's defaults, 0.5 and 0.875 of the lease.
pub fn timers(lease_s: u32, t1: Option<u32>, t2: Option<u32>) -> (u32, u32) {
    let def1 = lease_s / 2;
    let def2 = u32::try_from(u64::from(lease_s) * 7 / 8).unwrap_or(lease_s);
    match (t1, t2) {
        (Some(a), Some(b)) if a <= b && b <= lease_s => (a, b),
        (Some(a), None) if a <= def2 => (a, def2),
        (None, Some(b)) if def1 <= b && b <= lease_s => (def1, b),
        _ => (def1, def2),
    }
}

/// Waits between DISCOVERs (and REQUESTs while selecting) when no answer
/// comes: 2, 4, 8, 16, 32, then 64 s for as long as it takes (RFC 2131
/// 4.1 starts at 4 s; a board on a quiet network gets its address sooner).
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(2u64 << attempt.min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(lease_s: u32) -> Lease {
        let (t1_s, t2_s) = timers(lease_s, None, None);
        Lease {
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: None,
            dns: vec![],
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_s,
            t1_s,
            t2_s,
        }
    }

    #[test]
    fn phases_follow_t1_t2_and_expiry() {
        let l = lease(1000);
        assert_eq!((l.t1_s, l.t2_s), (500, 875));
        let at = |s| l.phase(Duration::from_secs(s));
        assert_eq!(at(0), Phase::Bound);
        assert_eq!(at(499), Phase::Bound);
        assert_eq!(at(500), Phase::Renewing);
        assert_eq!(at(875), Phase::Rebinding);
        assert_eq!(at(1000), Phase::Expired);
        assert_eq!(
            lease(INFINITE).phase(Duration::from_secs(1 << 40)),
            Phase::Bound
        );
    }

    #[test]
    fn retransmissions_halve_but_keep_60s_and_stop_at_the_phase_end() {
        let l = lease(86400);
        assert_eq!(l.next_step(Duration::ZERO), Duration::from_secs(43200));
        // Renewing at T1: half of the 32400 s to T2.
        assert_eq!(
            l.next_step(Duration::from_secs(43200)),
            Duration::from_secs(16200)
        );
        // 100 s before T2: 60 s; 30 s before: the 30 s left.
        assert_eq!(
            l.next_step(Duration::from_secs(75500)),
            Duration::from_secs(60)
        );
        assert_eq!(
            l.next_step(Duration::from_secs(75570)),
            Duration::from_secs(30)
        );
        // Rebinding, 10 s before expiry: 10 s.
        assert_eq!(
            l.next_step(Duration::from_secs(86390)),
            Duration::from_secs(10)
        );
        assert_eq!(
            l.next_step(Duration::from_secs(86400)),
            Duration::from_secs(1)
        );
        let short = lease(4);
        assert_eq!(short.next_step(Duration::ZERO), Duration::from_secs(2));
    }

    #[test]
    fn the_servers_timers_are_kept_only_when_ordered() {
        assert_eq!(timers(100, Some(10), Some(20)), (10, 20));
        assert_eq!(timers(100, Some(30), Some(20)), (50, 87));
        assert_eq!(timers(100, Some(10), Some(200)), (50, 87));
        assert_eq!(timers(100, Some(90), None), (50, 87));
        assert_eq!(timers(100, None, Some(60)), (50, 60));
        assert_eq!(timers(INFINITE, None, None).0, INFINITE / 2);
    }

    #[test]
    fn backoff_doubles_to_64s() {
        let s: Vec<u64> = (0..8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(s, [2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(backoff(u32::MAX).as_secs(), 64);
    }
}
