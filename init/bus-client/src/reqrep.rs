//! Request/reply over two block-mode channels (requests one way, replies
//! the other), matched by correlation id.

use crate::{Error, Kind, Publisher, Sample, Subscriber};
use std::time::{Duration, Instant};

/// The asking side: publishes requests, subscribes to replies.
pub struct Requester {
    requests: Publisher,
    replies: Subscriber,
    next_corr: u64,
}

impl Requester {
    /// Pairs a publisher on the request channel with a subscriber on the
    /// reply channel.
    pub fn new(requests: Publisher, replies: Subscriber) -> Self {
        Self {
            requests,
            replies,
            next_corr: 1,
        }
    }

    /// Sends a request; returns its correlation id.
    pub fn request(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<u64, Error> {
        let corr = self.next_corr;
        self.requests.send(bytes, corr, Kind::Request, timeout)?;
        self.next_corr = corr.wrapping_add(1).max(1);
        Ok(corr)
    }

    /// Loans a request slot to fill in place; finish with
    /// [`Requester::send_loaned`].
    pub fn loan(&mut self, timeout: Option<Duration>) -> Result<&mut [u8], Error> {
        self.requests.loan_wait(timeout)
    }

    /// Publishes the loaned request's first `len` bytes; returns its
    /// correlation id.
    pub fn send_loaned(&mut self, len: usize) -> Result<u64, Error> {
        let corr = self.next_corr;
        self.requests.publish_as(len, corr, Kind::Request)?;
        self.next_corr = corr.wrapping_add(1).max(1);
        Ok(corr)
    }

    /// Waits for the reply to `corr`. Replies to other (abandoned)
    /// requests are released and skipped.
    pub fn wait_reply(
        &mut self,
        corr: u64,
        timeout: Option<Duration>,
    ) -> Result<Sample<'_>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = match deadline {
                None => None,
                Some(d) => Some(
                    d.checked_duration_since(Instant::now())
                        .ok_or(Error::Timeout)?,
                ),
            };
            let raw = self.replies.wait_raw(left)?;
            if raw.kind == Kind::Reply && raw.corr == corr {
                return Ok(Sample::new(&mut self.replies, raw));
            }
            self.replies.consume(&raw)?;
        }
    }

    /// Request then wait for its reply.
    pub fn call(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<Sample<'_>, Error> {
        let corr = self.request(bytes, timeout)?;
        self.wait_reply(corr, timeout)
    }
}

/// The answering side: subscribes to requests, publishes replies.
pub struct Responder {
    requests: Subscriber,
    replies: Publisher,
}

impl Responder {
    /// Pairs a subscriber on the request channel with a publisher on the
    /// reply channel.
    pub fn new(requests: Subscriber, replies: Publisher) -> Self {
        Self { requests, replies }
    }

    /// Both endpoints, for callers that need finer control.
    pub fn parts(&mut self) -> (&mut Subscriber, &mut Publisher) {
        (&mut self.requests, &mut self.replies)
    }

    /// Answers one request: `handle(request, reply_slot)` writes the reply
    /// in place and returns its length (cut to the slot). Both sides stay
    /// zero-copy. Returns the request's correlation id. Non-request
    /// messages are released and skipped.
    pub fn serve_one(
        &mut self,
        timeout: Option<Duration>,
        handle: impl FnOnce(&[u8], &mut [u8]) -> usize,
    ) -> Result<u64, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let raw = loop {
            let left = match deadline {
                None => None,
                Some(d) => Some(
                    d.checked_duration_since(Instant::now())
                        .ok_or(Error::Timeout)?,
                ),
            };
            let raw = self.requests.wait_raw(left)?;
            if raw.kind == Kind::Request {
                break raw;
            }
            self.requests.consume(&raw)?;
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let reply = self.replies.loan_wait(left)?;
        // SAFETY: ptr/len lie in the request channel's read-only mapping,
        // owned by self.requests, which is not touched until consume below.
        let request = unsafe { core::slice::from_raw_parts(raw.ptr, raw.len) };
        let len = handle(request, reply).min(self.replies.slot_size());
        if !self.requests.validate(&raw) {
            self.requests.consume(&raw)?;
            return Err(Error::Overwritten { seq: raw.seq });
        }
        self.replies.publish_as(len, raw.corr, Kind::Reply)?;
        self.requests.consume(&raw)?;
        Ok(raw.corr)
    }
}
