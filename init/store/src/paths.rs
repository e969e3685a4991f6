//! The one map from a bundle's identity to the names it has on disk: its
//! record in the store, and the tree quilt-init writes out for its
//! containers. Everything that turns a bundle name into a path goes
//! through here, at boot and after installs alike.
//!
//! A legal bundle name ([`quilt_bundle::header::check_name`]) is made of
//! `[a-z0-9._-]` parts joined by `/`, no part empty or starting with `.`.
//! [`dir_name`] replaces each `/` with `+`, a byte no legal name holds, so
//! the map is injective and its result is one path component that is
//! never `.` or `..`; `@`, also never in a name, separates the name from
//! the version or root that follows. Two distinct names therefore never
//! share a record or a tree (proved by the property test below).

use quilt_bundle::Hash;
use std::path::{Path, PathBuf};

/// The byte that stands for `/` in a name's on-disk form.
const SLASH: char = '+';

/// `name` as one path component: `agents/weather` → `agents+weather`.
pub fn dir_name(name: &str) -> String {
    name.replace('/', SLASH.encode_utf8(&mut [0; 4]))
}

/// Where version `version` of bundle `name` is written out under `base`
/// (quilt-init's `/run/quilt/bundles`): `base/agents+weather@3`.
pub fn tree(base: &Path, name: &str, version: u64) -> PathBuf {
    base.join(format!("{}@{version}", dir_name(name)))
}

/// The file name of the store record of bundle `name` with Merkle root
/// `root` (under `<store>/bundles/`). Keyed by name as well as root: two
/// bundles with the same files under different names (and different
/// signed headers) have one root.
pub fn record(name: &str, root: &Hash) -> String {
    format!("{}@{root}", dir_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quilt_bundle::header::check_name;

    /// Legal names made of the characters that make collisions likely
    /// (`_`, `.`, `-` next to `/` separators), so that pairs like `a/b` and
    /// `a__b` come up often.
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec("[ab0_-][ab0_.-]{0,3}", 1..5).prop_map(|v| v.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn distinct_legal_names_share_no_path(a in name(), b in name(), va in 0u64..4, vb in 0u64..4) {
            prop_assume!(a != b);
            prop_assert!(check_name(&a).is_ok() && check_name(&b).is_ok());
            let base = Path::new("/run/quilt/bundles");
            prop_assert_ne!(tree(base, &a, va), tree(base, &b, vb));
            prop_assert_ne!(record(&a, &Hash([7; 32])), record(&b, &Hash([7; 32])));
            prop_assert_ne!(dir_name(&a), dir_name(&b));
            let p = tree(base, &a, va);
            prop_assert_eq!(p.parent(), Some(base));
            let last = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            prop_assert!(last != "." && last != ".." && !last.contains('/'));
        }
    }

    #[test]
    fn the_pairs_the_old_encoding_merged_stay_apart() {
        let base = Path::new("/b");
        for (a, b) in [("a/b", "a__b"), ("x/y/z", "x__y/z"), ("t/x", "t__x")] {
            assert!(check_name(a).is_ok() && check_name(b).is_ok());
            assert_ne!(tree(base, a, 1), tree(base, b, 1));
        }
        assert_eq!(
            tree(base, "agents/weather", 3),
            Path::new("/b/agents+weather@3")
        );
    }
}
