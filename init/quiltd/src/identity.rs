//! The node identity: an Ed25519 key made once from the kernel's RNG and
//! kept 0600 in the state directory (the data partition on A/B boards;
//! `/run` on diskless images, where it is new every boot). The HTTPS
//! certificate is made from it, so its fingerprint is what clients pin.

use quilt_gateway_auth::fingerprint::Fingerprint;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the key in the state directory.
pub const KEY_FILE: &str = "node.key";
/// First word of the key file.
const TAG: &str = "quilt-node-secret";

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The state directory could not be made.
    #[error("creating state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Others may read the key.
    #[error("{path} has mode {mode:03o}; the node key must be 0600 (chmod 600 it, and treat the key as leaked)")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a key file.
    #[error(
        "{path} is not a node key (`{TAG} <64 hex digits>`); move it away to make a new identity"
    )]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// The kernel RNG failed.
    #[error("reading the kernel RNG")]
    Random(#[source] rustix::io::Errno),
}

/// The board's key.
#[derive(Clone)]
pub struct Identity {
    seed: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Identity {
    /// From a seed.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let public = quilt_gateway_auth::keys::public_of(&seed);
        Identity { seed, public }
    }

    /// The public key.
    #[cfg(test)]
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// What clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_ed25519(&self.public)
    }

    /// PKCS#8 v1 DER of the key (RFC 8410), for the TLS stack.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        der
    }

    /// Loads the key from `state_dir`, making it (and the directory) on
    /// first start. Returns whether it was made now.
    pub fn load_or_create(state_dir: &Path) -> Result<(Identity, bool), IdentityError> {
        let path = state_dir.join(KEY_FILE);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(IdentityError::Mode { path, mode });
                }
                let text =
                    std::fs::read_to_string(&path).map_err(|source| IdentityError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let seed = parse(&text).ok_or(IdentityError::Format { path })?;
                Ok((Identity::from_seed(seed), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(state_dir)
                    .map_err(|source| IdentityError::StateDir {
                        path: state_dir.to_owned(),
                        source,
                    })?;
                let mut seed = [0u8; 32];
                random(&mut seed).map_err(IdentityError::Random)?;
                write_new(&path, &seed)?;
                Ok((Identity::from_seed(seed), true))
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }
}

/// Fills `buf` from the kernel's RNG. Blocks until the pool is
/// initialised, never returns weak bytes early.
pub fn random(buf: &mut [u8]) -> Result<(), rustix::io::Errno> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        got += rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(())
}

fn parse(text: &str) -> Option<[u8; 32]> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let hex = line.strip_prefix(TAG)?.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (o, pair) in seed.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(seed)
}

/// Writes the key to a temporary file (0600 from birth), syncs it and
/// renames it in place, so a power cut leaves no half key.
fn write_new(path: &Path, seed: &[u8; 32]) -> Result<(), IdentityError> {
    use std::fmt::Write as _;
    let werr = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text = format!("# quiltd node identity: never copy it off the board\n{TAG} ");
    for b in seed {
        let _ = write!(text, "{b:02x}");
    }
    text.push('\n');
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_then_loaded_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, made) = Identity::load_or_create(&state).unwrap();
        assert!(made);
        let meta = std::fs::metadata(state.join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let (b, made) = Identity::load_or_create(&state).unwrap();
        assert!(!made);
        assert_eq!(a.public(), b.public());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().to_string().starts_with("SHA256:"));
        // Another directory, another key.
        let (c, _) = Identity::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(a.public(), c.public());
    }

    #[test]
    fn a_readable_or_garbled_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Mode { mode: 0o644, .. })
        ));
        std::fs::write(&path, "junk").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Format { .. })
        ));
    }

    #[test]
    fn pkcs8_matches_rfc_8410_layout() {
        let id = Identity::from_seed([3; 32]);
        let der = id.pkcs8_der();
        assert_eq!(der.len(), 48);
        assert_eq!(&der[16..], &[3; 32]);
    }
}
