//! `quilt send`: push a bundle to a board over a serial line (the
//! air-gapped update link, docs/update-link.md). The board asks for what it
//! lacks; this end serves byte ranges of the file and shows progress.

use anyhow::{bail, Context as _};
use clap::Args;
use embedded_io::{ErrorType, Read, ReadReady, Write};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quilt_link::blocking::{self, RunError};
use quilt_link::sender::{BundleFile, ReadError, SenderState};
use quilt_link::{Outcome, Sender, SenderConfig};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::termios::{self, OptionalActions};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Send a bundle to a board over a serial line and install it there.
///
/// The board (quilt-init listening on its update port) checks the bundle's
/// signatures and version rules before it asks for any content, then asks
/// only for the chunks it does not already hold, and installs only after
/// the whole bundle verifies. Corrupted frames are detected (CRC-32C) and
/// asked for again.
///
/// Resume: if the link drops or either end restarts, run the same command
/// again; the board keeps every chunk it has verified and asks only for
/// the rest.
///
/// DEV is a serial device (/dev/ttyUSB0, /dev/ttyS1; set to raw mode at
/// --baud), a pty, or a Unix socket, e.g. QEMU's
///   -chardev socket,id=upd,path=/tmp/upd.sock,server=on,wait=off
///   -device virtconsole,chardev=upd          (or -serial unix:/tmp/upd.sock,server,nowait)
/// then `quilt send --port /tmp/upd.sock tool.qb`.
///
/// Exit status: 0 installed (or already installed), 3 refused by the board
/// (the reason is printed; nothing was installed), 1 any other failure.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SendArgs {
    /// The bundle to send (from `quilt bundle pack` and `sign`).
    #[arg(value_name = "FILE.qb")]
    file: PathBuf,
    /// Serial device, pty or Unix socket connected to the board.
    #[arg(long, value_name = "DEV")]
    port: PathBuf,
    /// Line rate for a serial device (ignored for sockets and ptys).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Give up after this many seconds without hearing from the board.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Largest piece the board should ask for, in bytes (it may ask for less;
    /// smaller pieces cost less to re-send on a noisy line).
    #[arg(long, default_value_t = quilt_link::MAX_PIECE, value_name = "BYTES")]
    piece: u32,
    /// No progress bar; print one summary line at the end.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let cfg = SenderConfig {
        max_piece: args.piece.clamp(64, quilt_link::MAX_PIECE),
        ..SenderConfig::default()
    };
    let mut sender = Sender::new(Qb(file), len, cfg).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; pack and sign it with `quilt bundle pack` and `quilt bundle sign`",
            args.file.display()
        )
    })?;
    let (name, version) = (
        sender.info().header.name.clone(),
        sender.info().header.version,
    );
    let mut port = Port::open(&args.port, args.baud)?;

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(format!("{name} v{version}: waiting for the board"));
        b
    };

    let start = Instant::now();
    let clock = move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let timeout_ms = args.timeout.saturating_mul(1000);
    let mut last_heard = (0u64, 0u64);
    let mut planned = false;
    let mut base = 0u64;
    let result = blocking::run(&mut sender, &mut port, clock, |s| {
        let now = clock();
        let st = s.stats();
        if st.rx.frames_ok != last_heard.0 {
            last_heard = (st.rx.frames_ok, now);
        } else if now.saturating_sub(last_heard.1) > timeout_ms {
            return false;
        }
        if !planned {
            if let Some((need, held)) = s.plan() {
                planned = true;
                // Progress counts what is still to fetch; what the board
                // already held is said once.
                base = st.payload;
                bar.set_length(st.payload + need);
                bar.set_message(format!(
                    "{name} v{version}: board holds {}, sending {}",
                    human(held),
                    human(need)
                ));
            } else if *s.state() == SenderState::Offered {
                bar.set_message(format!("{name} v{version}: offered"));
            }
        }
        bar.set_position(st.payload.max(base));
        true
    });
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let st = sender.stats();
    match result {
        Ok(()) => {}
        Err(RunError::Stopped) => {
            let what = if st.rx.frames_ok == 0 {
                format!(
                    "no answer from the board on {} in {}s; check the port, --baud, and that the board listens for updates there",
                    args.port.display(),
                    args.timeout
                )
            } else {
                format!(
                    "the board went quiet for {}s after {} of {}; run the same command again to resume",
                    args.timeout,
                    human(st.payload),
                    human(len)
                )
            };
            bail!("{what}");
        }
        Err(RunError::Closed) => bail!(
            "the link on {} closed after {}; reconnect and run the same command again to resume",
            args.port.display(),
            human(st.payload)
        ),
        Err(RunError::Io(e)) => bail!(
            "{}: {e}; reconnect and run the same command again to resume",
            args.port.display()
        ),
    }
    if sender.file_error() {
        bail!(
            "reading {} failed during the transfer; was it changed or removed?",
            args.file.display()
        );
    }
    let secs = elapsed.as_secs_f64().max(1e-3);
    let summary = format!(
        "sent {} ({} on the line, {:.1}% payload) in {:.1}s, {}/s",
        human(st.payload),
        human(st.wire_out),
        100.0 * st.payload as f64 / st.wire_out.max(1) as f64,
        secs,
        human((st.wire_out as f64 / secs) as u64)
    );
    match sender.state() {
        SenderState::Done(Outcome::Installed {
            already: true,
            name,
            version,
            ..
        }) => {
            println!("{name} version {version} is already installed on the board; nothing sent");
            Ok(ExitCode::SUCCESS)
        }
        SenderState::Done(Outcome::Installed { name, version, .. }) => {
            // What the board held when this run started (shared chunks, an
            // earlier attempt), as its plan said.
            let held = match sender.plan() {
                Some((_, held)) => format!("; the board already held {}", human(held)),
                None => String::new(),
            };
            println!("installed {name} version {version}: {summary}{held}");
            Ok(ExitCode::SUCCESS)
        }
        SenderState::Done(Outcome::Refused { reason }) => {
            eprintln!("quilt: the board refused {name} version {version}: {reason}");
            Ok(ExitCode::from(3))
        }
        _ => bail!("the transfer stopped before the board answered; run the same command again"),
    }
}

fn human(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// The bundle file, read at the offsets the board asks for.
struct Qb(File);

impl BundleFile for Qb {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.0.read_exact_at(buf, offset).map_err(|_| ReadError)
    }
}

/// A serial device, pty or Unix socket, as an `embedded-io` transport whose
/// reads time out after a short poll so the protocol's clock keeps running.
struct Port {
    fd: OwnedFd,
}

/// How long a read waits before reporting a timeout to the driver.
const READ_POLL: Duration = Duration::from_millis(50);

impl Port {
    fn open(path: &Path, baud: u32) -> anyhow::Result<Port> {
        let hint = "is the board connected and the path right? (QEMU: -chardev socket,path=PATH,server=on,wait=off)";
        let meta = std::fs::metadata(path)
            .with_context(|| format!("opening {}: {hint}", path.display()))?;
        if meta.file_type().is_socket() {
            let s = UnixStream::connect(path)
                .with_context(|| format!("connecting to {}: {hint}", path.display()))?;
            return Ok(Port { fd: s.into() });
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(path)
            .with_context(|| format!("opening {}: {hint}", path.display()))?;
        let fd: OwnedFd = f.into();
        if termios::isatty(&fd) {
            let mut t = termios::tcgetattr(&fd)
                .with_context(|| format!("reading terminal settings of {}", path.display()))?;
            t.make_raw();
            t.set_speed(baud).with_context(|| {
                format!(
                    "{baud} baud is not a rate {} supports; try 115200",
                    path.display()
                )
            })?;
            termios::tcsetattr(&fd, OptionalActions::Now, &t).with_context(|| {
                format!("setting {} to raw mode at {baud} baud", path.display())
            })?;
            // Whatever the board printed before we came is not ours to parse.
            let _ = termios::tcflush(&fd, termios::QueueSelector::IFlush);
        }
        Ok(Port { fd })
    }

    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl ErrorType for Port {
    type Error = io::Error;
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.wait(READ_POLL)? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match rustix::io::read(&self.fd, buf) {
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {
                Err(io::ErrorKind::TimedOut.into())
            }
            // A pty whose other side closed reads EIO: the line is gone.
            Err(rustix::io::Errno::IO) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl ReadReady for Port {
    fn read_ready(&mut self) -> io::Result<bool> {
        self.wait(Duration::ZERO)
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(&self.fd, buf) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        if termios::isatty(&self.fd) {
            let _ = termios::tcdrain(&self.fd);
        }
        Ok(())
    }
}
