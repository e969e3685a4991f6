//! A channel's figures read through its fds with `pread` (no mapping): for
//! PID 1's metrics, which must not map or parse more than a few header
//! words per channel.

use quilt_bus::stats::{self, SubscriberFigures, DATA_STATS_BYTES, SUB_STATS_BYTES};
use rustix::fd::BorrowedFd;

/// What [`channel`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFigures {
    /// Messages published so far.
    pub published: u64,
    /// Each subscriber slot's figures, in slot order (a slot whose region
    /// could not be read is left out).
    pub subscribers: Vec<SubscriberFigures>,
}

impl ChannelFigures {
    /// Messages the furthest-behind active subscriber has still to read.
    pub fn lag_max(&self) -> u64 {
        self.subscribers
            .iter()
            .filter(|s| s.active)
            .map(|s| self.published.saturating_sub(s.cursor))
            .max()
            .unwrap_or(0)
    }

    /// Messages lost by all subscribers (drop-oldest overwrites).
    pub fn lost(&self) -> u64 {
        self.subscribers.iter().map(|s| s.lost).sum()
    }
}

fn head<const N: usize>(fd: BorrowedFd<'_>) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
    (n == N).then_some(buf)
}

/// The figures of the channel whose data region is `data` and whose
/// subscriber regions are `subscribers`; `None` if the data region cannot
/// be read or is not one.
pub fn channel(data: BorrowedFd<'_>, subscribers: &[BorrowedFd<'_>]) -> Option<ChannelFigures> {
    let published = stats::published(&head::<DATA_STATS_BYTES>(data)?)?;
    let subscribers = subscribers
        .iter()
        .filter_map(|fd| stats::subscriber(&head::<SUB_STATS_BYTES>(*fd)?))
        .collect();
    Some(ChannelFigures {
        published,
        subscribers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create_channel, Config, Mode, Publisher, PublisherOptions, Subscriber, Wait};
    use rustix::fd::AsFd;

    #[test]
    fn a_live_channel_reports_what_was_published_and_how_far_behind_readers_are() {
        let cfg = Config {
            capacity: 8,
            slot_size: 64,
            mode: Mode::DropOldest,
            max_subscribers: 2,
            channel_id: 0,
        };
        let fds = create_channel("figures", &cfg).unwrap();
        let subs: Vec<BorrowedFd<'_>> = fds.subscribers.iter().map(|f| f.as_fd()).collect();
        let before = channel(fds.data.as_fd(), &subs).unwrap();
        assert_eq!(before.published, 0);
        assert_eq!(before.lag_max(), 0);

        let mut sub =
            Subscriber::open(fds.data.as_fd(), fds.subscribers[0].as_fd(), Wait::Spin).unwrap();
        let mut publ = Publisher::open(
            fds.data.as_fd(),
            &fds.subscribers,
            PublisherOptions::default(),
        )
        .unwrap();
        for _ in 0..3 {
            publ.loan().unwrap()[0] = 1;
            publ.publish(1).unwrap();
        }
        let mid = channel(fds.data.as_fd(), &subs).unwrap();
        assert_eq!(mid.published, 3);
        assert_eq!(mid.lag_max(), 3, "{mid:?}");
        while sub.receive().unwrap().is_some() {}
        let after = channel(fds.data.as_fd(), &subs).unwrap();
        assert_eq!(after.lag_max(), 0, "{after:?}");
        assert_eq!(after.lost(), 0);

        let not_bus = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert_eq!(channel(not_bus.as_fd(), &[]), None);
    }
}
