//! Adapts `std::io::Read` to the format crate's [`Source`], keeping the real
//! I/O error for the caller.

use quilt_bundle::{Source, SourceError};
use std::io::{self, Read};

/// A [`Source`] over any reader; the last I/O error is kept in `error`.
#[derive(Debug)]
pub struct ReadSource<R> {
    inner: R,
    /// The I/O error behind the last [`SourceError`], if any.
    pub error: Option<io::Error>,
}

impl<R: Read> ReadSource<R> {
    pub fn new(inner: R) -> Self {
        ReadSource { inner, error: None }
    }

    /// The reader inside.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> Source for ReadSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    return Err(SourceError);
                }
            }
        }
    }
}
