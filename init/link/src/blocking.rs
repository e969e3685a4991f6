//! Drives an [`Endpoint`] over a blocking `embedded-io` transport: a host
//! tty, a socket, a microcontroller UART.
//!
//! The transport's `read` should return an error of kind
//! [`ErrorKind::TimedOut`] when nothing arrives within a short time (tens
//! of milliseconds); that is how the endpoint's clock gets to run while the
//! line is quiet. `read_ready` lets the loop keep writing while the peer
//! has nothing to say.

use crate::Endpoint;
use embedded_io::{Error as _, ErrorKind, Read, ReadReady, Write};

/// Why [`run`] stopped early.
#[derive(Debug)]
pub enum RunError<E> {
    /// The transport failed.
    Io(E),
    /// The line closed (read returned 0 or write wrote nothing).
    Closed,
    /// `stop` asked to stop (a deadline, a signal).
    Stopped,
}

/// Runs `ep` until it is finished: writes what it has, feeds what arrives,
/// ticks its clock. `clock` gives milliseconds; `step` is called after each
/// round and returns false to stop (progress bars, deadlines).
pub fn run<E, T>(
    ep: &mut E,
    io: &mut T,
    mut clock: impl FnMut() -> u64,
    mut step: impl FnMut(&E) -> bool,
) -> Result<(), RunError<T::Error>>
where
    E: Endpoint,
    T: Read + Write + ReadReady,
{
    let mut buf = [0u8; 4096];
    loop {
        let now = clock();
        ep.tick(now);
        // Write one batch, then look at the line before writing more, so a
        // request or a result never waits behind a long run of pieces.
        let out = ep.pending();
        if !out.is_empty() {
            let n = io.write(out).map_err(RunError::Io)?;
            if n == 0 {
                return Err(RunError::Closed);
            }
            ep.consume(n);
        }
        let idle = ep.pending().is_empty();
        if idle || io.read_ready().map_err(RunError::Io)? {
            match io.read(&mut buf) {
                Ok(0) => return Err(RunError::Closed),
                Ok(n) => ep.feed(buf.get(..n).unwrap_or_default(), clock()),
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(RunError::Io(e)),
            }
        }
        if ep.finished() {
            // Let the last frame (a Result) leave before returning.
            while !ep.pending().is_empty() {
                let n = io.write(ep.pending()).map_err(RunError::Io)?;
                if n == 0 {
                    return Err(RunError::Closed);
                }
                ep.consume(n);
            }
            io.flush().map_err(RunError::Io)?;
            return Ok(());
        }
        if !step(ep) {
            return Err(RunError::Stopped);
        }
    }
}
