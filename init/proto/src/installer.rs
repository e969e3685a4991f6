//! Between PID 1 and `quilt-install`, the process that does every install
//! (init/installer): what a job reports, and the catalog of installed
//! bundles it leaves for PID 1.
//!
//! PID 1 never reads bundle bytes or the store: it starts an installer per
//! job (or the serial receiver as a service), reads its [`Report`]s from
//! fd 3 as [`frames`](encode_report), and after each job reads the
//! [`Catalog`] the installer wrote at [`CATALOG`]: every installed
//! bundle's signed header and the tree it was written out to.

use crate::ErrorCode;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The runtime of a firmware bundle: its entry is a root image for the
/// other A/B slot, not a tool (what the installer stages, and quilt-init
/// never runs).
pub const FIRMWARE: &str = "firmware";

/// Where the installer writes the catalog (tmpfs: rebuilt at every boot).
pub const CATALOG: &str = "/run/quilt/catalog";
/// Largest catalog PID 1 reads.
pub const MAX_CATALOG: usize = 4 << 20;
/// Where the installer writes the [`ToolIndex`] (0644: signed, public
/// metadata). PID 1 never reads it; quiltd does, to list tools.
pub const TOOL_INDEX: &str = "/run/quilt/tools";
/// Largest tool index written or read: past it the installer leaves the
/// largest bundles' tool lists out (and says so) rather than fail.
pub const MAX_TOOL_INDEX: usize = 8 << 20;
/// Largest report frame body.
pub const MAX_REPORT: usize = 16 * 1024;
/// The fd a job's reports go to.
pub const REPORT_FD: u8 = 3;

/// One thing a job did, in the order it did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// A bundle is installed (`already_installed`: it was, and nothing
    /// changed).
    Installed {
        /// Bundle name.
        name: String,
        /// Its version.
        version: u64,
        /// Chunks it has.
        chunks: u32,
        /// Chunks written.
        chunks_written: u32,
        /// It was installed before this offer.
        already_installed: bool,
    },
    /// A bundle was removed.
    Removed {
        /// Bundle name.
        name: String,
    },
    /// Firmware that is in the store but not in a slot (power was lost
    /// between its install and its staging): stage it.
    Pending {
        /// Bundle name.
        name: String,
    },
    /// Firmware written to the other slot, checked and staged.
    Staged {
        /// Bundle name.
        name: String,
        /// Its version.
        version: u64,
        /// The config asks for a reboot into it.
        reboot: bool,
    },
    /// The job's request, or one bundle of a stick, was refused or
    /// failed: nothing changed.
    Refused {
        /// For the client.
        code: ErrorCode,
        /// Which check refused it, as counted.
        reason: RefusalReason,
        /// What and why, and what to do next.
        message: String,
    },
    /// What the store holds after the job (PID 1 keeps the last for
    /// `Stats`: it never walks the store itself).
    Store(StoreUsage),
}

/// The store's content on disk: its chunk files, each held once however
/// many bundles share it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUsage {
    /// Chunk files.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Why an install was refused, in few enough kinds to count (the message
/// says the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// No signature at all.
    Unsigned,
    /// Signed only by keys the trust store does not hold.
    UnknownSigner,
    /// A signature that does not verify (or a signer twice).
    BadSignature,
    /// Fewer trusted signatures than the policy's threshold.
    BelowThreshold,
    /// Content that does not hash to what was signed.
    Tampered,
    /// Bytes that do not parse as a bundle, or break its rules.
    Malformed,
    /// Over a format cap.
    TooLarge,
    /// Built for another architecture or board, or firmware where a tool
    /// was expected (or the reverse).
    WrongDevice,
    /// Not yet valid, or expired.
    Expired,
    /// Version rules: rollback, a jump too far, a reused version, a
    /// downgrade permit that does not fit.
    Version,
    /// The board's trust store is missing or refuses its own files.
    Trust,
    /// No such bundle (a removal).
    NotFound,
    /// Reading the input or the store failed.
    Io,
    /// Anything else (the message says what).
    Other,
}

impl RefusalReason {
    /// Every reason, in the order counters keep them.
    pub const ALL: [RefusalReason; 14] = [
        RefusalReason::Unsigned,
        RefusalReason::UnknownSigner,
        RefusalReason::BadSignature,
        RefusalReason::BelowThreshold,
        RefusalReason::Tampered,
        RefusalReason::Malformed,
        RefusalReason::TooLarge,
        RefusalReason::WrongDevice,
        RefusalReason::Expired,
        RefusalReason::Version,
        RefusalReason::Trust,
        RefusalReason::NotFound,
        RefusalReason::Io,
        RefusalReason::Other,
    ];

    /// Its name in a metric label.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::Unsigned => "unsigned",
            RefusalReason::UnknownSigner => "unknown-signer",
            RefusalReason::BadSignature => "bad-signature",
            RefusalReason::BelowThreshold => "below-threshold",
            RefusalReason::Tampered => "tampered",
            RefusalReason::Malformed => "malformed",
            RefusalReason::TooLarge => "too-large",
            RefusalReason::WrongDevice => "wrong-device",
            RefusalReason::Expired => "expired",
            RefusalReason::Version => "version",
            RefusalReason::Trust => "trust",
            RefusalReason::NotFound => "not-found",
            RefusalReason::Io => "io",
            RefusalReason::Other => "other",
        }
    }

    /// Its place in [`RefusalReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An installed bundle as PID 1 runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Its signed header (checked by the installer at install).
    pub header: quilt_bundle::Header,
    /// Its tree, written out (`None`: not run, e.g. firmware).
    pub tree: Option<String>,
}

/// Everything installed, and the trust in force (for `quilt bundles`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Installed bundles.
    pub bundles: Vec<CatalogEntry>,
    /// The trusted keys, hex.
    pub keys: Vec<String>,
    /// The policy, as text.
    pub policy: String,
}

/// The tools of one installed, runnable bundle, from its signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolIndexEntry {
    /// Bundle name.
    pub bundle: String,
    /// Its version.
    pub version: u64,
    /// Its Merkle root (hex).
    pub root: String,
    /// Its tools, sorted by name (empty: it declares none).
    pub tools: Vec<quilt_bundle::ToolDef>,
    /// The list was left out to keep the index under [`MAX_TOOL_INDEX`].
    pub omitted: bool,
}

/// Every runnable bundle's tools, as the installer last wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolIndex {
    /// By bundle, in the store's order.
    pub bundles: Vec<ToolIndexEntry>,
}

/// The tool index's bytes, `None` over [`MAX_TOOL_INDEX`].
pub fn encode_tool_index(t: &ToolIndex) -> Option<Vec<u8>> {
    postcard::to_allocvec(t)
        .ok()
        .filter(|b| b.len() <= MAX_TOOL_INDEX)
}

/// A tool index from its bytes.
pub fn decode_tool_index(b: &[u8]) -> Option<ToolIndex> {
    if b.len() > MAX_TOOL_INDEX {
        return None;
    }
    postcard::from_bytes(b).ok()
}

/// A report as one frame: its body's length (u32, little-endian) and the
/// postcard body; `None` if it would exceed [`MAX_REPORT`].
pub fn encode_report(r: &Report) -> Option<Vec<u8>> {
    let body = postcard::to_allocvec(r).ok()?;
    if body.len() > MAX_REPORT {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

/// Why a report stream does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame claims more than [`MAX_REPORT`] bytes.
    TooLarge,
    /// A frame's body does not decode.
    Malformed,
}

/// Take the whole frames at the front of `buf`, leaving a partial one.
pub fn take_reports(buf: &mut Vec<u8>) -> Result<Vec<Report>, FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = buf.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_REPORT {
            return Err(FrameError::TooLarge);
        }
        let Some(body) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push(postcard::from_bytes(body).map_err(|_| FrameError::Malformed)?);
        at += 4 + len;
    }
    buf.drain(..at);
    Ok(out)
}

/// The catalog's bytes.
pub fn encode_catalog(c: &Catalog) -> Option<Vec<u8>> {
    postcard::to_allocvec(c).ok()
}

/// A catalog from its bytes.
pub fn decode_catalog(b: &[u8]) -> Option<Catalog> {
    postcard::from_bytes(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn every_refusal_reason_is_listed_once_at_its_index_with_its_own_label() {
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut labels: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }

    #[test]
    fn reports_come_back_whole_and_partial_frames_wait() {
        let a = Report::Removed {
            name: "a".to_string(),
        };
        let b = Report::Refused {
            code: ErrorCode::Failed,
            reason: RefusalReason::Tampered,
            message: "no".to_string(),
        };
        let mut stream = encode_report(&a).unwrap();
        let fb = encode_report(&b).unwrap();
        stream.extend_from_slice(&fb[..3]);
        assert_eq!(take_reports(&mut stream), Ok(vec![a]));
        assert_eq!(stream.len(), 3);
        stream.extend_from_slice(&fb[3..]);
        assert_eq!(take_reports(&mut stream), Ok(vec![b]));
        assert!(stream.is_empty());
        let mut huge = ((MAX_REPORT + 1) as u32).to_le_bytes().to_vec();
        assert_eq!(take_reports(&mut huge), Err(FrameError::TooLarge));
        let mut junk = vec![1, 0, 0, 0, 0xff];
        assert_eq!(take_reports(&mut junk), Err(FrameError::Malformed));
    }
}
