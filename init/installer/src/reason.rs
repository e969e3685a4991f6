//! Which [`RefusalReason`] a store refusal is counted under: the few kinds
//! `/metrics` labels refusals with (the message keeps the detail).

use quilt_bundle::Error as B;
use quilt_proto::installer::RefusalReason as R;
use quilt_store::StoreError as S;

/// The reason counted for a store error.
pub fn of_store(e: &S) -> R {
    match e {
        S::Bundle(b) => of_bundle(b),
        S::NoKeys { .. } | S::TrustFile { .. } => R::Trust,
        S::Rollback { .. }
        | S::FastForward { .. }
        | S::VersionReuse { .. }
        | S::PermitReplayed { .. }
        | S::PermitMismatch { .. } => R::Version,
        S::NotInstalled { .. } => R::NotFound,
        S::WrongChunk { .. } => R::Tampered,
        S::Io { .. }
        | S::Read { .. }
        | S::CorruptState { .. }
        | S::RecordName { .. }
        | S::BadChunk { .. } => R::Io,
        _ => R::Other,
    }
}

/// The reason counted for a refusal of the format layer.
pub fn of_bundle(e: &B) -> R {
    match e {
        B::Unsigned { .. } => R::Unsigned,
        B::UnknownSigner { .. } => R::UnknownSigner,
        B::BadSignature { .. } | B::DuplicateSigner { .. } | B::TooManySignatures { .. } => {
            R::BadSignature
        }
        B::BelowThreshold { .. } => R::BelowThreshold,
        B::RootMismatch { .. } | B::ChunkMismatch { .. } | B::ManifestMismatch { .. } => {
            R::Tampered
        }
        B::TooLarge { .. } => R::TooLarge,
        B::WrongArch { .. }
        | B::WrongBoard { .. }
        | B::NotBoardFirmware { .. }
        | B::FirmwareRuntime { .. } => R::WrongDevice,
        B::NotYetValid { .. } | B::Expired { .. } => R::Expired,
        B::StaleTrust { .. }
        | B::BadKeyFile { .. }
        | B::BadPolicy { .. }
        | B::UnreachableThreshold { .. } => R::Trust,
        B::PermitMismatch { .. } => R::Version,
        B::Source => R::Io,
        _ => R::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_bundle::{Hash, KeyId};

    #[test]
    fn trust_failures_are_told_apart_from_damage_and_version_rules() {
        let key = KeyId([7; 8]);
        let cases = [
            (S::Bundle(B::Unsigned { what: "bundle" }), R::Unsigned),
            (
                S::Bundle(B::UnknownSigner {
                    what: "bundle",
                    key,
                }),
                R::UnknownSigner,
            ),
            (
                S::Bundle(B::BadSignature { index: 0, key }),
                R::BadSignature,
            ),
            (
                S::Bundle(B::BelowThreshold {
                    what: "bundle",
                    name: "b".into(),
                    have: 1,
                    need: 2,
                }),
                R::BelowThreshold,
            ),
            (
                S::Bundle(B::ChunkMismatch {
                    index: 3,
                    expected: Hash::default(),
                }),
                R::Tampered,
            ),
            (S::Bundle(B::BadMagic { what: "bundle" }), R::Malformed),
            (
                S::Bundle(B::WrongArch {
                    device: "x86_64".into(),
                }),
                R::WrongDevice,
            ),
            (
                S::Rollback {
                    name: "b".into(),
                    installed: 2,
                    offered: 1,
                },
                R::Version,
            ),
            (S::NotInstalled { name: "b".into() }, R::NotFound),
            (
                S::Read {
                    source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                },
                R::Io,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(of_store(&e), want, "{e}");
        }
    }
}
