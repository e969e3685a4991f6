//! The binary form: `MAGIC`, a little-endian u16 `VERSION`, a postcard body.

use crate::model::BootConfig;
use crate::validate::ConfigError;
use core::fmt;

/// First bytes of every compiled boot config.
pub const MAGIC: [u8; 4] = *b"QCFG";
/// Format version; bumped on any incompatible change.
pub const VERSION: u16 = 1;

/// Why a compiled config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header.
    Truncated,
    /// Not a compiled boot config at all.
    BadMagic,
    /// Written by a newer or older `quilt config compile`.
    Version(u16),
    /// The body does not decode or exceeds a capacity.
    Body(postcard::Error),
    /// Bytes left after the body.
    Trailing(usize),
    /// It decodes, but is inconsistent.
    Invalid(ConfigError),
    /// The output buffer is too small (encoding only).
    BufferTooSmall,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "file is shorter than the 6-byte header"),
            DecodeError::BadMagic => write!(f, "not a compiled boot config (bad magic)"),
            DecodeError::Version(v) => write!(
                f,
                "format version {v}, this build reads {VERSION}; recompile with a matching `quilt config compile`"
            ),
            DecodeError::Body(e) => write!(f, "body does not decode: {e}"),
            DecodeError::Trailing(n) => write!(f, "{n} trailing bytes after the config"),
            DecodeError::Invalid(e) => write!(f, "invalid config: {e}"),
            DecodeError::BufferTooSmall => write!(f, "output buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Decode and validate a compiled config.
pub fn decode(bytes: &[u8]) -> Result<BootConfig, DecodeError> {
    let (magic, rest) = bytes.split_at_checked(4).ok_or(DecodeError::Truncated)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let (ver, body) = rest.split_at_checked(2).ok_or(DecodeError::Truncated)?;
    let ver = u16::from_le_bytes([
        ver.first().copied().unwrap_or(0),
        ver.get(1).copied().unwrap_or(0),
    ]);
    if ver != VERSION {
        return Err(DecodeError::Version(ver));
    }
    let (cfg, tail): (BootConfig, &[u8]) =
        postcard::take_from_bytes(body).map_err(DecodeError::Body)?;
    if !tail.is_empty() {
        return Err(DecodeError::Trailing(tail.len()));
    }
    cfg.validate().map_err(DecodeError::Invalid)?;
    Ok(cfg)
}

/// Encode a config into `buf`, returning the used prefix.
pub fn encode<'a>(cfg: &BootConfig, buf: &'a mut [u8]) -> Result<&'a [u8], DecodeError> {
    cfg.validate().map_err(DecodeError::Invalid)?;
    let (head, body) = buf
        .split_at_mut_checked(6)
        .ok_or(DecodeError::BufferTooSmall)?;
    head[..4].copy_from_slice(&MAGIC);
    head[4..].copy_from_slice(&VERSION.to_le_bytes());
    let n = postcard::to_slice(cfg, body)
        .map_err(|_| DecodeError::BufferTooSmall)?
        .len();
    Ok(&buf[..6 + n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn sample() -> BootConfig {
        let mut s = Service {
            name: Name::try_from("demo").unwrap(),
            exec: heapless::Vec::new(),
            env: heapless::Vec::new(),
            cwd: None,
            uid: 0,
            gid: 0,
            after: heapless::Vec::new(),
            restart: Restart::OnFailure,
            backoff_ms: 100,
            backoff_max_ms: 1000,
            ready: Ready::Fd(3),
            limits: Limits::default(),
            console: true,
            on_exit: PowerAction::Ignore,
            bundle: None,
            input: None,
            control: heapless::Vec::new(),
        };
        s.exec.push(Arg::try_from("/bin/demo").unwrap()).unwrap();
        let mut c = BootConfig {
            hostname: None,
            modules: heapless::Vec::new(),
            ctrl_alt_del: PowerAction::Reboot,
            shutdown_grace_ms: 100,
            fatal: Fatal::default(),
            watchdog: Watchdog::default(),
            services: heapless::Vec::new(),
            bundles: Bundles::default(),
            channels: heapless::Vec::new(),
            resources: heapless::Vec::new(),
            update: None,
            pods: heapless::Vec::new(),
            net: heapless::Vec::new(),
            usb: Some(Usb::default()),
            slots: None,
            containers: Containers::default(),
        };
        c.services.push(s).unwrap();
        c
    }

    #[test]
    fn round_trip() {
        let cfg = sample();
        let mut buf = [0u8; 4096];
        let bytes = encode(&cfg, &mut buf).unwrap().to_vec();
        assert_eq!(decode(&bytes).unwrap(), cfg);
    }

    #[test]
    fn every_truncation_is_refused() {
        let cfg = sample();
        let mut buf = [0u8; 4096];
        let bytes = encode(&cfg, &mut buf).unwrap().to_vec();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn trailing_bytes_and_bad_headers_are_refused() {
        let cfg = sample();
        let mut buf = [0u8; 4096];
        let mut bytes = encode(&cfg, &mut buf).unwrap().to_vec();
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(DecodeError::Trailing(1)));
        bytes.pop();
        bytes[4] = 9;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(9)));
        bytes[0] = b'X';
        assert_eq!(decode(&bytes), Err(DecodeError::BadMagic));
    }
}
