use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness step failed. `Debug` prints the same text as `Display`, so
/// `unwrap()` and a test returning `Err` both show the console tail readably.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A prerequisite step (kernel download, cargo build) failed; `detail`
    /// carries its output.
    #[error("{what} failed: {detail}")]
    Setup { what: String, detail: String },
    /// A file operation of the harness itself.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// QEMU (or another tool) could not be started.
    #[error("starting {program}; is it installed? run tools/setup.sh")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// Assembling the initramfs failed.
    #[error("building image")]
    Image(#[from] quilt_imagekit::ImageError),
    /// Resolving or copying kernel modules failed.
    #[error("adding kernel modules")]
    Modules(#[from] quilt_imagekit::ModuleError),
    /// The boot config TOML did not compile.
    #[error("compiling boot config: {0}")]
    Config(#[from] quilt_config::CompileError),
    /// A regex pattern did not compile.
    #[error("bad pattern")]
    Pattern(#[from] regex::Error),
    /// Nothing matched before the deadline (QEMU has been killed if the VM's
    /// overall timeout was reached).
    #[error("timed out after {after:?} waiting for {waited_for}\n{tail}")]
    Timeout {
        waited_for: String,
        after: Duration,
        tail: String,
    },
    /// A QEMU monitor command failed or got no answer ([`crate::Vm::monitor`]).
    #[error("qemu monitor: {command}: {detail}")]
    Monitor { command: String, detail: String },
    /// QEMU ended before the pattern showed up.
    #[error("qemu exited ({status}) while waiting for {waited_for}\n{tail}")]
    Exited {
        waited_for: String,
        status: ExitStatus,
        tail: String,
    },
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

impl HarnessError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| HarnessError::Io { op, path, source }
    }
}
