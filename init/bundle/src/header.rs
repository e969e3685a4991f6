//! The signed bundle header (postcard). Small and fixed in shape: it carries
//! the root that binds every byte of content, the sizes a reader enforces
//! (so it never reads past what was signed), and what the device needs to
//! decide whether to run the tool at all.

use crate::error::Error;
use crate::hash::Hash;
use crate::manifest::{check_path, Manifest, Summary};
use crate::{MAX_CHUNKS, MAX_MANIFEST};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The only header format version this crate reads.
pub const FORMAT_VERSION: u8 = 1;
/// Most architectures, boards or tokens in a list.
pub const MAX_LIST: usize = 32;
/// Longest name, token, architecture or board string.
pub const MAX_NAME: usize = 64;

/// Resource limits the device applies to the tool (cgroup v2 terms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `memory.max`, in MiB.
    pub memory_mib: u32,
    /// `cpu.max` as a percentage of one core.
    pub cpu_percent: u16,
    /// `pids.max`.
    pub tasks: u32,
    /// `RLIMIT_NOFILE`.
    pub open_files: u32,
    /// `io.max` `rbps`/`wbps` in MiB/s on every block device; 0 = no cap.
    pub io_mib_s: u32,
    /// `io.max` `riops`/`wiops` on every block device; 0 = no cap.
    pub io_iops: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 128,
            cpu_percent: 100,
            tasks: 64,
            open_files: 256,
            io_mib_s: 0,
            io_iops: 0,
        }
    }
}

/// The signed header. Field order is the wire order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT_VERSION`].
    pub format: u8,
    /// Bundle name, e.g. `agents/weather` or `firmware`; the policy key.
    pub name: String,
    /// Monotonic version; the device refuses to go backwards.
    pub version: u64,
    /// Merkle root over the manifest and every distinct chunk.
    pub root: Hash,
    /// Exact manifest length in bytes.
    pub manifest_len: u32,
    /// Number of distinct chunks in the chunk section.
    pub chunk_count: u32,
    /// Exact length of the chunk section in bytes.
    pub content_len: u64,
    /// Number of regular files.
    pub files: u32,
    /// Sum of all file sizes (before dedup).
    pub total_size: u64,
    /// Architectures it runs on (`uname -m` names); empty means any.
    pub arch: Vec<String>,
    /// Boards it is meant for; empty means any.
    pub boards: Vec<String>,
    /// Entrypoint, a regular file in the bundle.
    pub entry: String,
    /// Runtime that runs the entrypoint (`bun`).
    pub runtime: String,
    /// Resource limits.
    pub limits: Limits,
    /// Capability tokens the tool requests from the device.
    pub tokens: Vec<String>,
    /// Not valid before this UNIX time, where the device has a clock.
    pub not_before: Option<u64>,
    /// Not valid from this UNIX time on, where the device has a clock.
    pub expires: Option<u64>,
}

impl Header {
    /// The postcard encoding: the bytes that are signed.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(self).map_err(|_| Error::Malformed { what: "header" })
    }

    /// Decodes and validates a header that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        // The format byte comes first, so a future version is named as such
        // rather than reported as garbage.
        if let Some(&v) = bytes.first() {
            if v != FORMAT_VERSION {
                return Err(Error::UnsupportedFormat {
                    what: "bundle header",
                    version: v,
                });
            }
        }
        let h = match postcard::take_from_bytes::<Header>(bytes) {
            // Signatures cover bytes, so a padded varint changes nothing a
            // signer did not sign; refusing it anyway keeps one header,
            // one encoding (no malleability for caches or logs keyed on it).
            Ok((h, [])) if h.encode().is_ok_and(|b| b == bytes) => h,
            Ok((_, [])) => return Err(Error::NonCanonical { what: "header" }),
            Ok(_) => return Err(Error::Malformed { what: "header" }),
            Err(postcard::Error::DeserializeBadUtf8) => {
                return Err(Error::NotUtf8 { what: "header" })
            }
            Err(_) => return Err(Error::Malformed { what: "header" }),
        };
        h.validate()?;
        Ok(h)
    }

    /// Checks field rules that do not need the manifest.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                what: "bundle header",
                version: self.format,
            });
        }
        check_name(&self.name)?;
        check_path(&self.entry)?;
        if self.manifest_len == 0 || self.manifest_len > MAX_MANIFEST {
            return Err(Error::TooLarge {
                what: "manifest",
                size: u64::from(self.manifest_len),
                max: u64::from(MAX_MANIFEST),
            });
        }
        if self.chunk_count > MAX_CHUNKS {
            return Err(Error::TooLarge {
                what: "chunk count",
                size: u64::from(self.chunk_count),
                max: u64::from(MAX_CHUNKS),
            });
        }
        let max_content = u64::from(self.chunk_count) * u64::from(crate::CHUNK_MAX);
        if self.content_len > max_content || self.content_len < u64::from(self.chunk_count) {
            return Err(Error::BadField {
                field: "content_len",
                reason: "does not fit the chunk count",
            });
        }
        if self.runtime.is_empty() || self.runtime.len() > MAX_NAME {
            return Err(Error::BadField {
                field: "runtime",
                reason: "must be 1-64 bytes",
            });
        }
        for (field, list) in [
            ("arch", &self.arch),
            ("boards", &self.boards),
            ("tokens", &self.tokens),
        ] {
            if list.len() > MAX_LIST {
                return Err(Error::BadField {
                    field,
                    reason: "has more than 32 items",
                });
            }
            if list
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control))
            {
                return Err(Error::BadField {
                    field,
                    reason: "has an empty, overlong or control-character item",
                });
            }
        }
        if let (Some(nb), Some(ex)) = (self.not_before, self.expires) {
            if ex <= nb {
                return Err(Error::BadField {
                    field: "expires",
                    reason: "is not after not_before",
                });
            }
        }
        Ok(())
    }

    /// Checks that a validated manifest agrees with this header.
    pub fn check_manifest(&self, manifest: &Manifest, summary: &Summary) -> Result<(), Error> {
        let pairs = [
            (
                "file count",
                u64::from(self.files),
                u64::from(summary.files),
            ),
            ("total size", self.total_size, summary.total_size),
            (
                "chunk count",
                u64::from(self.chunk_count),
                u64::from(summary.chunk_count),
            ),
            ("content length", self.content_len, summary.content_len),
        ];
        for (field, header, manifest) in pairs {
            if header != manifest {
                return Err(Error::ManifestMismatch {
                    field,
                    header,
                    manifest,
                });
            }
        }
        let is_file = manifest
            .entries
            .iter()
            .any(|e| e.path == self.entry && matches!(e.node, crate::Node::File { .. }));
        if !is_file {
            return Err(Error::MissingEntry {
                entry: self.entry.clone(),
            });
        }
        Ok(())
    }
}

/// Bundle names: 1-64 bytes of `a-z 0-9 - _ .`, parts separated by single
/// `/`, no part starting with `.`. Names key the policy and the rollback
/// table, so they must be unambiguous.
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = || Error::BadName {
        name: name.chars().take(80).collect(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad());
    }
    for part in name.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return Err(bad());
        }
        if !part
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    pub(crate) fn sample() -> Header {
        Header {
            format: FORMAT_VERSION,
            name: "agents/hello".to_string(),
            version: 1,
            root: Hash([1; 32]),
            manifest_len: 10,
            chunk_count: 1,
            content_len: 5,
            files: 1,
            total_size: 5,
            arch: vec![],
            boards: vec![],
            entry: "main.ts".to_string(),
            runtime: "bun".to_string(),
            limits: Limits::default(),
            tokens: vec![],
            not_before: None,
            expires: None,
        }
    }

    #[test]
    fn round_trip_and_exactness() {
        let h = sample();
        let b = h.encode().unwrap();
        assert_eq!(Header::decode(&b).unwrap(), h);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            Header::decode(&longer),
            Err(Error::Malformed { .. })
        ));
        let mut future = b;
        future[0] = 2;
        assert!(matches!(
            Header::decode(&future),
            Err(Error::UnsupportedFormat { version: 2, .. })
        ));
    }

    #[test]
    fn padded_varints_are_refused() {
        // Found by the header fuzzer: a limit of 0 written as `80 00`.
        let b = sample().encode().unwrap();
        let n = b.len();
        // The last three bytes are: tokens len, not_before, expires
        // (0, 0, 0); pad the tokens length.
        let mut padded = b[..n - 3].to_vec();
        padded.extend_from_slice(&[0x80, 0x00, 0, 0]);
        assert_eq!(
            Header::decode(&padded),
            Err(Error::NonCanonical { what: "header" })
        );
        assert!(Header::decode(&b).is_ok());
    }

    #[test]
    fn names_are_checked() {
        for ok in ["firmware", "agents/weather", "a.b_c-9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Agents",
            "a//b",
            "/a",
            "a/",
            "../x",
            "a/.x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caps_are_enforced() {
        let mut h = sample();
        h.manifest_len = MAX_MANIFEST + 1;
        assert!(matches!(h.validate(), Err(Error::TooLarge { .. })));
        let mut h = sample();
        h.content_len = u64::from(crate::CHUNK_MAX) + 1;
        assert!(matches!(h.validate(), Err(Error::BadField { .. })));
        let mut h = sample();
        h.entry = "../x".to_string();
        assert!(h.validate().is_err());
    }
}
