//! Air-gapped installs over a serial line: the boot config's `[update]`
//! port is opened raw and non-blocking, and every byte that arrives is fed
//! to the `quilt-link` receiver, which asks `quilt send` on the far end for
//! what the store lacks and installs through the store's full checks. The
//! receiver is a pure state machine; this module only moves bytes, keeps
//! its clock ticking and logs what it decides.

use crate::bundles::Tools;
use crate::clock::Millis;
use crate::event;
use quilt_link::receiver::Event;
use quilt_link::{Outcome, Receiver, ReceiverConfig};
use rustix::fd::OwnedFd;

/// Re-check the receiver's timers this often while a transfer is on.
const TICK_MS: u64 = 100;

/// Retry opening a port that is not there yet this often.
const REOPEN_MS: u64 = 500;

/// The update port and its receiver.
pub struct Update {
    /// None until the device node exists (a virtio port appears shortly
    /// after its driver loads).
    port: Option<OwnedFd>,
    rx: Receiver,
    path: String,
    baud: u32,
    next_try: Millis,
    complained: bool,
}

impl Update {
    /// Set up for the configured port; it is opened by [`Update::poll_open`].
    pub fn new(cfg: &quilt_config::Update) -> Update {
        Update {
            port: None,
            rx: Receiver::new(ReceiverConfig::default()),
            path: cfg.port.to_string(),
            baud: cfg.baud,
            next_try: Millis(0),
            complained: false,
        }
    }

    /// Open the port if it is not open yet and it is time to try (raw,
    /// the configured speed for a UART; a virtio port is not a tty). The
    /// fd to watch, when it was opened now.
    pub fn poll_open(&mut self, now: Millis) -> Option<&OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        if self.port.is_some() || now < self.next_try {
            return None;
        }
        self.next_try = now.after(REOPEN_MS);
        let port = match rustix::fs::open(
            self.path.as_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                if !self.complained {
                    self.complained = true;
                    event!(
                        "event=update-port-unavailable port={} error=\"{}\" retry_ms={}",
                        self.path,
                        e,
                        REOPEN_MS
                    );
                }
                return None;
            }
        };
        if let Ok(mut t) = rustix::termios::tcgetattr(&port) {
            t.make_raw();
            let _ = t.set_speed(self.baud);
            if let Err(e) =
                rustix::termios::tcsetattr(&port, rustix::termios::OptionalActions::Now, &t)
            {
                event!(
                    "event=update-port-raw-failed port={} error=\"{}\"",
                    self.path,
                    e
                );
            }
        }
        event!("event=update-port-open port={}", self.path);
        self.port = Some(port);
        self.port.as_ref()
    }

    /// The port is readable: feed what came, send what the receiver has
    /// to say. Returns the name of a bundle it newly installed, if one was
    /// (a re-offer of an installed bundle returns none).
    pub fn on_readable(&mut self, tools: Option<&mut Tools>, now: Millis) -> Option<String> {
        let mut buf = [0u8; 4096];
        let mut installed = None;
        let port = self.port.as_ref()?;
        let Some(tools) = tools else {
            // No trust store: drain, so the line does not back up.
            while let Ok(n) = rustix::io::read(port, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            return None;
        };
        for _ in 0..16 {
            let Some(port) = self.port.as_ref() else {
                break;
            };
            let n = match rustix::io::read(port, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (store, ctx) = tools.store_and_context();
            let mut storage = quilt_link::store::StoreStorage::new(store, ctx);
            self.rx
                .feed(buf.get(..n).unwrap_or(&[]), now.0, &mut storage);
            if let Some(name) = self.log_events() {
                installed = Some(name);
            }
        }
        self.flush();
        installed
    }

    /// Timers: re-ask after a silence, keep writing.
    pub fn tick(&mut self, now: Millis) {
        self.rx.tick(now.0);
        self.flush();
    }

    /// When the loop must wake up for this next.
    pub fn deadline(&self, now: Millis) -> Option<Millis> {
        if self.port.is_none() {
            return Some(self.next_try);
        }
        (self.rx.busy() || !self.rx.pending().is_empty()).then(|| now.after(TICK_MS))
    }

    fn flush(&mut self) {
        let Some(port) = self.port.as_ref() else {
            return;
        };
        for _ in 0..64 {
            let pending = self.rx.pending();
            if pending.is_empty() {
                return;
            }
            match rustix::io::write(port, pending) {
                Ok(0) | Err(_) => return,
                Ok(n) => self.rx.consume(n),
            }
        }
    }

    /// One log line per receiver decision; the name of a newly installed
    /// bundle.
    fn log_events(&mut self) -> Option<String> {
        let mut installed = None;
        while let Some(ev) = self.rx.poll_event() {
            match ev {
                Event::Offered {
                    name,
                    version,
                    root,
                } => event!(
                    "event=update-offered port={} name={} version={} root={}",
                    self.path,
                    name,
                    version,
                    root
                ),
                Event::Planned {
                    need,
                    held,
                    chunks_need,
                    chunks_held,
                } => event!(
                    "event=update-planned need_bytes={} held_bytes={} chunks_need={} chunks_held={}",
                    need,
                    held,
                    chunks_need,
                    chunks_held
                ),
                Event::Finished { root, outcome } => match outcome {
                    Outcome::Installed {
                        name,
                        version,
                        chunks_written,
                        already,
                        ..
                    } => {
                        let s = self.rx.stats();
                        event!(
                            "event=bundle-installed name={} version={} chunks_written={} already={} via=serial root={} pieces={} payload_bytes={} crc_errors={} rerequests={}",
                            name,
                            version,
                            chunks_written,
                            already,
                            root,
                            s.pieces,
                            s.payload,
                            s.rx.crc_errors,
                            s.lost + s.timeouts
                        );
                        // Already installed: nothing changed, no tree
                        // is touched and nothing is staged again.
                        if !already {
                            installed = Some(name);
                        }
                    }
                    Outcome::Refused { reason } => event!(
                        "event=bundle-refused via=serial root={} reason=\"{}\"",
                        root,
                        reason
                    ),
                },
            }
        }
        installed
    }
}
