//! The shared-memory bus as PID 1 runs it: every channel of the boot
//! config is created once at boot (sealed memfds, `quilt-bus-client`), and
//! each container is handed only the fds its bundle's `bus:<topic>:pub|sub`
//! tokens name. Identity is which fds a container was given, never what it
//! says: a publisher gets the data region read-write and the subscriber
//! regions read-only; a subscriber gets the data region read-only and one
//! subscriber region of its own, taken from a fixed table and given back
//! (and evicted, so a block-mode publisher stops waiting for it) when the
//! container ends.

use crate::event;
use crate::refusal::BusRefusal;
use core::cell::Cell;
use quilt_bundle::tokens::{BusRole, Token};
use quilt_config::{BusMode, Channel};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

/// Who holds a subscriber region: a service (`SERVICE | index`) or a run
/// (its id).
pub type Holder = u64;
/// Marks a service's holder id.
pub const SERVICE: Holder = 1 << 63;

/// One live channel.
struct Chan {
    topic: heapless::String<48>,
    data: OwnedFd,
    data_ro: OwnedFd,
    subs: Vec<OwnedFd>,
    subs_ro: Vec<OwnedFd>,
    holders: Vec<Cell<Option<Holder>>>,
}

/// Every channel of the board.
#[derive(Default)]
pub struct Bus {
    chans: Vec<Chan>,
}

/// The bus tokens of a bundle, in header order.
pub fn wants(tokens: &[String]) -> Vec<(&str, BusRole)> {
    tokens
        .iter()
        .filter_map(|t| match Token::parse(t) {
            Ok(Token::Bus(topic, role)) => Some((topic, role)),
            _ => None,
        })
        .collect()
}

fn role_name(r: BusRole) -> &'static str {
    match r {
        BusRole::Pub => "pub",
        BusRole::Sub => "sub",
    }
}

impl Bus {
    /// Each channel's figures, read from its regions' header words.
    pub fn stats(&self) -> Vec<quilt_proto::ChannelStats> {
        self.chans
            .iter()
            .filter_map(|c| {
                let subs: Vec<BorrowedFd<'_>> = c.subs.iter().map(AsFd::as_fd).collect();
                let f = quilt_bus_client::figures::channel(c.data.as_fd(), &subs)?;
                Some(quilt_proto::ChannelStats {
                    topic: c.topic.as_str().to_owned(),
                    published: f.published,
                    subscribers: u32::try_from(f.subscribers.iter().filter(|s| s.active).count())
                        .unwrap_or(u32::MAX),
                    lag_max: f.lag_max(),
                    lost: f.lost(),
                })
            })
            .collect()
    }

    /// Create the configured channels; one that cannot be made is logged
    /// and left out (containers asking for it are then refused).
    pub fn bring_up(cfg: &[Channel]) -> Bus {
        let mut chans = Vec::with_capacity(cfg.len());
        for c in cfg {
            match Self::create(c) {
                Ok(ch) => {
                    event!(
                        "event=bus-channel topic={} slots={} slot_size={} mode={} subscribers={}",
                        c.topic,
                        c.slots,
                        c.slot_size,
                        match c.mode {
                            BusMode::Block => "block",
                            BusMode::DropOldest => "drop-oldest",
                        },
                        c.subscribers
                    );
                    chans.push(ch);
                }
                Err(e) => event!("event=bus-channel-failed topic={} error=\"{}\"", c.topic, e),
            }
        }
        Bus { chans }
    }

    fn create(c: &Channel) -> Result<Chan, quilt_bus_client::Error> {
        let cfg = quilt_bus_client::Config {
            capacity: u64::from(c.slots),
            slot_size: u64::from(c.slot_size),
            mode: match c.mode {
                BusMode::Block => quilt_bus_client::Mode::Block,
                BusMode::DropOldest => quilt_bus_client::Mode::DropOldest,
            },
            max_subscribers: u64::from(c.subscribers),
            channel_id: 0,
        };
        let fds = quilt_bus_client::create_channel(&c.topic, &cfg)?;
        let data_ro = fds.data_read_only()?;
        let subs_ro = fds.subscribers_read_only()?;
        let holders = fds.subscribers.iter().map(|_| Cell::new(None)).collect();
        Ok(Chan {
            topic: c.topic.clone(),
            data: fds.data,
            data_ro,
            subs: fds.subscribers,
            subs_ro,
            holders,
        })
    }

    fn chan(&self, topic: &str) -> Result<&Chan, BusRefusal> {
        self.chans
            .iter()
            .find(|c| c.topic == topic)
            .ok_or_else(|| BusRefusal::NoChannel {
                topic: topic.to_owned(),
            })
    }

    /// The `QUILT_BUS` value for these tokens: `topic:role:fd,fd...` joined
    /// by `;`, fds numbered from 3 in the order [`Bus::claim`] returns
    /// them, and how many fds that is. The same for every container of a
    /// bundle.
    pub fn env(&self, wants: &[(&str, BusRole)]) -> Result<(Option<String>, usize), BusRefusal> {
        if wants.is_empty() {
            return Ok((None, 0));
        }
        let mut next = 3usize;
        let mut parts = Vec::with_capacity(wants.len());
        for &(topic, role) in wants {
            let n = match role {
                BusRole::Pub => 1 + self.chan(topic)?.subs.len(),
                BusRole::Sub => {
                    self.chan(topic)?;
                    2
                }
            };
            let fds: Vec<String> = (next..next + n).map(|f| f.to_string()).collect();
            next += n;
            parts.push(format!("{topic}:{}:{}", role_name(role), fds.join(",")));
        }
        if next - 3 > quilt_container::MAX_EXTRA_FDS {
            return Err(BusRefusal::TooManyFds {
                need: next - 3,
                max: quilt_container::MAX_EXTRA_FDS,
            });
        }
        Ok((Some(format!("QUILT_BUS={}", parts.join(";"))), next - 3))
    }

    /// Take what `wants` needs for `holder` and return the fds in
    /// [`Bus::env`] order. All or nothing: on error nothing stays taken.
    pub fn claim(
        &self,
        holder: Holder,
        wants: &[(&str, BusRole)],
    ) -> Result<Vec<BorrowedFd<'_>>, BusRefusal> {
        let mut fds = Vec::new();
        for &(topic, role) in wants {
            let c = match self.chan(topic) {
                Ok(c) => c,
                Err(e) => {
                    self.release(holder);
                    return Err(e);
                }
            };
            match role {
                BusRole::Pub => {
                    fds.push(c.data.as_fd());
                    fds.extend(c.subs_ro.iter().map(|f| f.as_fd()));
                }
                BusRole::Sub => {
                    let free = c.holders.iter().position(|h| h.get().is_none());
                    let (Some(k), Some(sub)) = (free, free.and_then(|k| c.subs.get(k))) else {
                        self.release(holder);
                        return Err(BusRefusal::SubscribersFull {
                            topic: topic.to_owned(),
                            slots: c.subs.len(),
                        });
                    };
                    if let Some(h) = c.holders.get(k) {
                        h.set(Some(holder));
                    }
                    fds.push(c.data_ro.as_fd());
                    fds.push(sub.as_fd());
                }
            }
        }
        Ok(fds)
    }

    /// Give back every subscriber region `holder` took, evicting it so a
    /// block-mode publisher no longer waits for a container that is gone.
    pub fn release(&self, holder: Holder) {
        for c in &self.chans {
            for (h, fd) in c.holders.iter().zip(&c.subs) {
                if h.get() == Some(holder) {
                    if let Err(e) = quilt_bus_client::evict_subscriber(fd.as_fd()) {
                        event!("event=bus-evict-failed topic={} error=\"{}\"", c.topic, e);
                    }
                    h.set(None);
                }
            }
        }
    }
}
