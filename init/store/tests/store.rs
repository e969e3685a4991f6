//! Store behaviour: dedup, crash safety, rollback and fast-forward
//! protection, permits, trust rotation, fsck and gc.

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::trust::{DowngradePermit, TrustUpdate};
use quilt_bundle::{Context, Policy, SecretKey, Trust};
use quilt_store::{Store, StoreError};
use std::path::Path;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn trust(keys: &[&SecretKey], policy: &str) -> Trust {
    Trust::new(
        keys.iter().map(|k| k.public()).collect(),
        Policy::parse(policy).unwrap(),
    )
    .unwrap()
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tool whose `lib.bin` changes with `variant`; `big.bin` stays the same.
fn tool(name: &str, version: u64, variant: u64, signers: &[&SecretKey]) -> Vec<u8> {
    let mut b = Builder::new();
    b.dir("lib", 0o755);
    b.file(
        "main.ts",
        0o644,
        format!("// v{version}\nconsole.log({variant});\n").as_bytes(),
    );
    b.file("lib/big.bin", 0o600, &noise(600_000, 1));
    b.file("lib/var.bin", 0o644, &noise(100_000, 100 + variant));
    b.symlink("entry.ts", "main.ts");
    b.finish(HeaderFields::new(name, version, "main.ts"))
        .unwrap()
        .to_qb(signers)
        .unwrap()
}

fn ctx() -> Context<'static> {
    Context::default()
}

/// The path of one chunk file of the store at `dir`.
fn some_chunk(dir: &Path) -> std::path::PathBuf {
    let fan = std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_dir(fan)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn open(dir: &Path, t: &Trust) -> Store {
    Store::open(dir, t.clone()).unwrap()
}

#[test]
fn install_dedups_and_materializes_the_exact_tree() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let r1 = s
        .install(&tool("agents/a", 1, 0, &[&k])[..], &ctx(), None)
        .unwrap();
    assert_eq!(r1.chunks_written, r1.chunks);
    assert_eq!(r1.bytes_reused, 0);
    let r2 = s
        .install(&tool("agents/a", 2, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    // big.bin is shared: only main.ts and var.bin chunks travel to disk.
    assert!(r2.bytes_reused >= 600_000, "{r2:?}");
    assert!(r2.bytes_written <= 100_100, "{r2:?}");
    // Another bundle sharing big.bin dedups against the first one too.
    let r3 = s
        .install(&tool("agents/b", 1, 9, &[&k])[..], &ctx(), None)
        .unwrap();
    assert!(r3.bytes_reused >= 600_000);
    // The store's usage counts each shared chunk once.
    let u = quilt_store::usage(d.path()).unwrap();
    assert_eq!(
        u.chunks,
        u64::from(r1.chunks_written + r2.chunks_written + r3.chunks_written)
    );
    assert_eq!(
        u.bytes,
        r1.bytes_written + r2.bytes_written + r3.bytes_written
    );

    let out = d.path().join("out");
    s.materialize("agents/a", &out).unwrap();
    assert_eq!(
        std::fs::read(out.join("lib/var.bin")).unwrap(),
        noise(100_000, 101)
    );
    assert_eq!(
        std::fs::read(out.join("lib/big.bin")).unwrap(),
        noise(600_000, 1)
    );
    assert_eq!(
        std::fs::read_link(out.join("entry.ts")).unwrap(),
        Path::new("main.ts")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("lib/big.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(s.fsck().unwrap().problems.is_empty());
}

#[test]
fn tampered_stream_writes_nothing_that_counts() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let mut qb = tool("agents/a", 1, 0, &[&k]);
    let n = qb.len();
    qb[n - 10] ^= 1;
    assert!(matches!(
        s.install(&qb[..], &ctx(), None),
        Err(StoreError::Bundle(_))
    ));
    assert!(s.installed().is_empty());
    assert!(s.highest_version("agents/a").is_none());
}

#[test]
fn rollback_is_refused_and_persists_across_reopen() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    {
        let mut s = open(d.path(), &t);
        s.install(&tool("agents/a", 5, 5, &[&k])[..], &ctx(), None)
            .unwrap();
    }
    let mut s = open(d.path(), &t);
    assert_eq!(s.highest_version("agents/a"), Some(5));
    let e = s
        .install(&tool("agents/a", 4, 4, &[&k])[..], &ctx(), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Rollback {
                installed: 5,
                offered: 4,
                ..
            }
        ),
        "{e}"
    );
    // Same version, different content: refused too.
    let e = s
        .install(&tool("agents/a", 5, 6, &[&k])[..], &ctx(), None)
        .unwrap_err();
    assert!(matches!(e, StoreError::VersionReuse { .. }), "{e}");
    // Same bundle again: a no-op.
    assert!(
        s.install(&tool("agents/a", 5, 5, &[&k])[..], &ctx(), None)
            .unwrap()
            .already_installed
    );
}

#[test]
fn downgrade_needs_a_permit_at_root_threshold_used_once() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (key(1), key(2));
    let t = trust(&[&a, &b], "root-threshold 2\ndefault 1");
    let mut s = open(d.path(), &t);
    s.install(&tool("agents/a", 5, 5, &[&a])[..], &ctx(), None)
        .unwrap();
    let old = tool("agents/a", 3, 3, &[&a]);
    let permit = |version, seq, signers: &[&SecretKey]| {
        DowngradePermit {
            format: 1,
            name: "agents/a".into(),
            version,
            sequence: seq,
            expires: None,
        }
        .sign(signers)
        .unwrap()
    };
    // One root key is not enough for a permit.
    let e = s
        .install(&old[..], &ctx(), Some(&permit(3, 1, &[&a])))
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Bundle(quilt_bundle::Error::BelowThreshold { .. })
        ),
        "{e}"
    );
    // A permit for another version does not apply.
    let e = s
        .install(&old[..], &ctx(), Some(&permit(2, 1, &[&a, &b])))
        .unwrap_err();
    assert!(matches!(e, StoreError::PermitMismatch { .. }), "{e}");
    let good = permit(3, 1, &[&a, &b]);
    let r = s.install(&old[..], &ctx(), Some(&good)).unwrap();
    assert_eq!(r.version, 3);
    assert_eq!(s.get("agents/a").unwrap().version, 3);
    // The highest version stays recorded.
    assert_eq!(s.highest_version("agents/a"), Some(5));
    // Back up to 5, then replaying the same permit is refused.
    s.install(&tool("agents/a", 5, 5, &[&a])[..], &ctx(), None)
        .unwrap();
    let e = s.install(&old[..], &ctx(), Some(&good)).unwrap_err();
    assert!(matches!(e, StoreError::PermitReplayed { .. }), "{e}");
}

#[test]
fn fast_forward_beyond_max_version_step_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "max-version-step 10");
    let mut s = open(d.path(), &t);
    s.install(&tool("agents/a", 1, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    let e = s
        .install(&tool("agents/a", 12, 2, &[&k])[..], &ctx(), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::FastForward {
                installed: 1,
                offered: 12,
                max_step: 10,
                ..
            }
        ),
        "{e}"
    );
    s.install(&tool("agents/a", 11, 3, &[&k])[..], &ctx(), None)
        .unwrap();
}

#[test]
fn key_rotation_takes_effect_and_persists() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(1), key(2), key(3));
    let t = trust(&[&a, &b], "root-threshold 2");
    let upd = |seq| TrustUpdate {
        format: 1,
        sequence: seq,
        keys: vec![b.public(), c.public()],
        policy: Policy {
            root_threshold: 2,
            ..Policy::default()
        },
        expires: None,
    };
    {
        let mut s = open(d.path(), &t);
        // Signed by one current key and the new ones: below current threshold.
        let e = s
            .apply_trust_update(&upd(1).sign(&[&b, &c]).unwrap(), &ctx())
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Bundle(quilt_bundle::Error::BelowThreshold { .. })
            ),
            "{e}"
        );
        s.apply_trust_update(&upd(1).sign(&[&a, &b, &c]).unwrap(), &ctx())
            .unwrap();
    }
    let mut s = open(d.path(), &t);
    assert_eq!(s.trust().sequence, 1);
    // The retired key no longer signs bundles; the new one does.
    let e = s
        .install(&tool("agents/a", 1, 1, &[&a])[..], &ctx(), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Bundle(quilt_bundle::Error::UnknownSigner { .. })
        ),
        "{e}"
    );
    s.install(&tool("agents/a", 1, 1, &[&c])[..], &ctx(), None)
        .unwrap();
    // Replaying the rotation is refused.
    let e = s
        .apply_trust_update(&upd(1).sign(&[&b, &c]).unwrap(), &ctx())
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Bundle(quilt_bundle::Error::StaleTrust { .. })
        ),
        "{e}"
    );
}

#[test]
fn a_crash_at_any_step_leaves_the_old_state_or_the_new() {
    let k = key(1);
    let t = trust(&[&k], "");
    let v1 = tool("agents/a", 1, 1, &[&k]);
    let v2 = tool("agents/a", 2, 2, &[&k]);
    let mut saw_old = false;
    let mut saw_new = false;
    // Step n fails for n = 1, 2, …, until an install runs through untouched.
    for n in 1.. {
        let d = tempfile::tempdir().unwrap();
        let completed = {
            let mut s = open(d.path(), &t);
            s.install(&v1[..], &ctx(), None).unwrap();
            s.fail_after_steps(Some(n));
            s.install(&v2[..], &ctx(), None).is_ok()
        };
        // "Reboot".
        let mut s = open(d.path(), &t);
        let v = s.get("agents/a").unwrap().version;
        assert!(v == 1 || v == 2);
        saw_old |= v == 1;
        saw_new |= v == 2;
        assert!(s.fsck().unwrap().problems.is_empty(), "n={n}");
        s.gc().unwrap();
        assert!(s.fsck().unwrap().problems.is_empty(), "n={n}");
        s.materialize("agents/a", &d.path().join("out")).unwrap();
        let main = std::fs::read_to_string(d.path().join("out/main.ts")).unwrap();
        assert!(main.starts_with(&format!("// v{v}\n")));
        assert!(std::fs::read_dir(d.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        if completed {
            break;
        }
    }
    assert!(saw_old && saw_new);
}

#[test]
fn fsck_finds_rot_and_gc_frees_unreferenced_chunks() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    s.install(&tool("agents/a", 1, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    s.install(&tool("agents/b", 1, 2, &[&k])[..], &ctx(), None)
        .unwrap();
    let report = s.fsck().unwrap();
    assert!(report.problems.is_empty());
    assert!(report.chunks_checked > 3 && report.bundles_checked == 2);

    // Rot one chunk file.
    let chunks = d.path().join("chunks");
    let fan = std::fs::read_dir(&chunks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = std::fs::read_dir(&fan)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    let report = s.fsck().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    // Missing is caught as well.
    std::fs::remove_file(&victim).unwrap();
    assert!(!s.fsck().unwrap().problems.is_empty());

    let d2 = tempfile::tempdir().unwrap();
    let mut s = open(d2.path(), &t);
    s.install(&tool("agents/a", 1, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    s.install(&tool("agents/b", 1, 2, &[&k])[..], &ctx(), None)
        .unwrap();
    assert_eq!(s.gc().unwrap(), quilt_store::GcReport::default());
    s.remove("agents/b").unwrap();
    let g = s.gc().unwrap();
    // b's own chunks (main.ts, var.bin) go; the shared big.bin stays.
    assert!(g.chunks_removed >= 2 && g.records_removed == 1, "{g:?}");
    assert!(g.bytes_removed < 600_000);
    assert!(s.fsck().unwrap().problems.is_empty());
    s.materialize("agents/a", &d2.path().join("a")).unwrap();
    // Removal keeps rollback protection.
    let e = s
        .install(&tool("agents/b", 1, 3, &[&k])[..], &ctx(), None)
        .unwrap_err();
    assert!(matches!(e, StoreError::VersionReuse { .. }), "{e}");
}

#[test]
fn a_corrupt_state_file_is_reported_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    s.install(&tool("agents/a", 1, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    let p = d.path().join("state");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n / 2] ^= 4;
    std::fs::write(&p, b).unwrap();
    assert!(matches!(
        Store::open(d.path(), t),
        Err(StoreError::CorruptState { .. })
    ));
}

#[test]
fn trust_dir_loads_keys_and_policy() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (key(1), key(2));
    std::fs::write(d.path().join("a.pub"), a.public().to_file()).unwrap();
    assert_eq!(
        quilt_store::trustdir::load(d.path()).unwrap().policy,
        Policy::default()
    );
    std::fs::write(d.path().join("policy"), "rule firmware 2\n").unwrap();
    let e = quilt_store::trustdir::load(d.path()).unwrap_err();
    assert!(e.to_string().contains("needs 2 signatures"), "{e}");
    std::fs::write(d.path().join("b.pub"), b.public().to_file()).unwrap();
    let t = quilt_store::trustdir::load(d.path()).unwrap();
    assert_eq!(t.keys.len(), 2);
    assert_eq!(t.policy.threshold_for("firmware"), 2);
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        quilt_store::trustdir::load(empty.path()),
        Err(StoreError::NoKeys { .. })
    ));
}

#[test]
fn the_example_policy_in_the_image_parses_as_documented() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../rootfs/etc/quilt/trust/policy"
    ))
    .unwrap();
    let p = Policy::parse(&text).unwrap();
    assert_eq!(p.root_threshold, 2);
    assert_eq!(p.threshold_for("agents/weather"), 1);
    assert_eq!(p.threshold_for("firmware"), 2);
    assert_eq!(p.threshold_for("trust"), 2);
    assert_eq!(p.threshold_for("other"), 2);
    let (a, b, c) = (key(1), key(2), key(3));
    // 2-of-3 is reachable with three keys, not with one.
    assert!(Trust::new(vec![a.public(), b.public(), c.public()], p.clone()).is_ok());
    assert!(Trust::new(vec![a.public()], p).is_err());
}

#[test]
fn a_rotted_chunk_is_healed_by_the_next_install_that_carries_it() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    s.install(&tool("agents/a", 1, 1, &[&k])[..], &ctx(), None)
        .unwrap();
    // Rot every stored chunk in place (same length).
    let mut rotted = 0;
    for fan in std::fs::read_dir(d.path().join("chunks")).unwrap() {
        for c in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let p = c.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            b[0] ^= 0xff;
            std::fs::write(&p, b).unwrap();
            rotted += 1;
        }
    }
    assert_eq!(s.fsck().unwrap().problems.len(), rotted);
    // v2 shares big.bin: those chunks are rewritten, not trusted.
    let r = s
        .install(&tool("agents/a", 2, 2, &[&k])[..], &ctx(), None)
        .unwrap();
    assert_eq!(r.bytes_reused, 0, "{r:?}");
    s.gc().unwrap();
    assert!(s.fsck().unwrap().problems.is_empty());
    s.materialize("agents/a", &d.path().join("out")).unwrap();
}

#[test]
fn reoffering_an_installed_bundle_reads_only_its_checked_header() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let qb = tool("agents/a", 1, 1, &[&k]);
    s.install(&qb[..], &ctx(), None).unwrap();
    // A boot-time re-offer: signatures, manifest and root are still checked…
    let mut forged = qb.clone();
    forged[20] ^= 1;
    assert!(s.install(&forged[..], &ctx(), None).is_err());
    // …but the chunk section is not needed, so a cut copy is a no-op.
    let r = s.install(&qb[..qb.len() - 1000], &ctx(), None).unwrap();
    assert!(r.already_installed && r.chunks_written == 0);
}

/// Two bundles with the same files under different names (and different
/// tokens) have one Merkle root: each keeps its own signed header, and
/// removing one leaves the other whole.
#[test]
fn two_names_with_one_content_keep_their_own_headers() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let make = |name: &str, tokens: &[&str]| {
        let mut b = Builder::new();
        b.file("main.ts", 0o644, b"console.log(1);\n");
        let mut h = HeaderFields::new(name, 1, "main.ts");
        h.tokens = tokens.iter().map(|t| t.to_string()).collect();
        b.finish(h).unwrap().to_qb(&[&k]).unwrap()
    };
    s.install(&make("plain/tool", &[])[..], &ctx(), None)
        .unwrap();
    s.install(&make("other/tool", &["userns"])[..], &ctx(), None)
        .unwrap();
    let plain = s.header("plain/tool").unwrap();
    assert_eq!(plain.name, "plain/tool");
    assert!(plain.tokens.is_empty(), "{:?}", plain.tokens);
    assert_eq!(s.header("other/tool").unwrap().tokens, ["userns"]);
    s.remove("other/tool").unwrap();
    s.gc().unwrap();
    assert_eq!(s.header("plain/tool").unwrap().name, "plain/tool");
    assert!(s.fsck().unwrap().problems.is_empty());
}

/// A chunk lost from the store (deleted, or removed by `repair` because it
/// rotted) is fetched again by the next offer of the same bundle: an
/// "already installed" bundle is one whose chunks are all there.
#[test]
fn a_reoffer_refetches_chunks_the_store_lost() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let qb = tool("agents/a", 1, 1, &[&k]);
    s.install(&qb[..], &ctx(), None).unwrap();
    let lost = some_chunk(d.path());
    std::fs::remove_file(&lost).unwrap();
    assert_eq!(s.fsck().unwrap().problems.len(), 1);
    let r = s.install(&qb[..], &ctx(), None).unwrap();
    assert!(!r.already_installed && r.chunks_written == 1, "{r:?}");
    assert!(s.fsck().unwrap().problems.is_empty());
}

/// `repair` drops rotted chunks and names the bundles that need them; the
/// next offer of each fetches exactly what was dropped.
#[test]
fn repair_drops_rot_and_the_next_offer_heals_it() {
    let d = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], "");
    let mut s = open(d.path(), &t);
    let qb = tool("agents/a", 1, 1, &[&k]);
    s.install(&qb[..], &ctx(), None).unwrap();
    let rotten = some_chunk(d.path());
    let mut b = std::fs::read(&rotten).unwrap();
    b[0] ^= 0xff;
    std::fs::write(&rotten, b).unwrap();
    // Rot alone is invisible to a re-offer (the chunk file is there)…
    assert!(s.install(&qb[..], &ctx(), None).unwrap().already_installed);
    let r = s.repair().unwrap();
    assert_eq!(r.chunks_dropped, 1);
    assert_eq!(r.damaged, ["agents/a"]);
    // …after repair the offer fetches it again.
    let r = s.install(&qb[..], &ctx(), None).unwrap();
    assert_eq!((r.already_installed, r.chunks_written), (false, 1));
    assert!(s.fsck().unwrap().problems.is_empty());
    assert!(s.repair().unwrap().damaged.is_empty());
}
