//! Piecewise installs (the serial link's storage side): offer checks before
//! content, staging that survives reopening, chunk dedup, and an install
//! that re-checks everything and commits nothing on failure.

use quilt_bundle::envelope::Envelope;
use quilt_bundle::pack::{Builder, HeaderFields, Packed};
use quilt_bundle::sig::DOMAIN_BUNDLE;
use quilt_bundle::{hash, Context, Policy, SecretKey, Trust};
use quilt_store::{Store, StoreError};
use std::path::Path;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn trust() -> Trust {
    Trust::new(vec![key(1).public()], Policy::parse("").unwrap()).unwrap()
}

fn packed(version: u64, fill: u8) -> Packed {
    let mut b = Builder::new();
    b.file(
        "main.ts",
        0o644,
        format!("console.log({version});\n").as_bytes(),
    );
    b.file("a.bin", 0o644, &vec![fill; 70_000]);
    b.file(
        "b.bin",
        0o644,
        &(0..90_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    );
    b.finish(HeaderFields::new("agents/s", version, "main.ts"))
        .unwrap()
}

fn envelope(p: &Packed, signer: &SecretKey) -> Envelope {
    Envelope {
        body: p.header_bytes.clone(),
        sigs: vec![signer.sign(DOMAIN_BUNDLE, &p.header_bytes)],
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, trust()).unwrap()
}

fn ctx() -> Context<'static> {
    Context::default()
}

/// Stages `p` and puts every chunk, as the link receiver would.
fn stage_all(s: &mut Store, p: &Packed) {
    s.stage(&envelope(p, &key(1)), &p.manifest_bytes).unwrap();
    for (c, bytes) in &p.chunks {
        s.put_chunk(&c.id, bytes).unwrap();
    }
}

#[test]
fn staged_parts_survive_reopen_and_install_checks_everything() {
    let d = tempfile::tempdir().unwrap();
    let p = packed(1, 7);
    let root = p.header.root;
    {
        let mut s = open(d.path());
        let h = s.check_offer(&envelope(&p, &key(1)), &ctx(), None).unwrap();
        assert_eq!(h.root, root);
        assert!(s.staged(&root).is_none());
        s.stage(&envelope(&p, &key(1)), &p.manifest_bytes).unwrap();
        let (c, bytes) = &p.chunks[0];
        assert!(!s.has_chunk(&c.id));
        assert!(s.put_chunk(&c.id, bytes).unwrap());
    }
    // A reboot: the staged manifest and the chunk are still there.
    let mut s = open(d.path());
    let staged = s.staged(&root).unwrap();
    assert_eq!(staged.manifest_bytes, p.manifest_bytes);
    assert!(s.has_chunk(&p.chunks[0].0.id));
    // gc keeps what a staged bundle references.
    let gc = s.gc().unwrap();
    assert_eq!(gc.chunks_removed, 0);
    assert!(s.has_chunk(&p.chunks[0].0.id));
    // Installing with chunks missing fails and commits nothing.
    match s.install_staged(&root, &ctx(), None) {
        Err(StoreError::BadChunk { id, .. }) => assert_eq!(id, p.chunks[1].0.id),
        r => panic!("{r:?}"),
    }
    assert!(s.installed().is_empty());
    for (c, bytes) in &p.chunks {
        s.put_chunk(&c.id, bytes).unwrap();
    }
    let r = s.install_staged(&root, &ctx(), None).unwrap();
    assert_eq!((r.version, r.chunks_written), (1, 0));
    assert_eq!(s.get("agents/s").unwrap().root, root);
    assert!(s.staged(&root).is_none(), "staging is cleared on install");
    let dest = d.path().join("out");
    s.materialize("agents/s", &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("a.bin")).unwrap(),
        vec![7u8; 70_000]
    );
}

#[test]
fn offers_are_refused_before_content_for_trust_and_version() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    let p = packed(5, 1);
    assert!(matches!(
        s.check_offer(&envelope(&p, &key(2)), &ctx(), None),
        Err(StoreError::Bundle(_))
    ));
    stage_all(&mut s, &p);
    s.install_staged(&p.header.root, &ctx(), None).unwrap();
    let old = packed(4, 2);
    assert!(matches!(
        s.check_offer(&envelope(&old, &key(1)), &ctx(), None),
        Err(StoreError::Rollback { .. })
    ));
}

#[test]
fn stage_refuses_a_manifest_that_is_not_the_signed_one() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    let p = packed(1, 1);
    let other = packed(1, 2);
    assert!(s
        .stage(&envelope(&p, &key(1)), &other.manifest_bytes)
        .is_err());
    assert!(s.staged(&p.header.root).is_none());
    assert!(matches!(
        s.install_staged(&p.header.root, &ctx(), None),
        Err(StoreError::NotStaged { .. })
    ));
}

#[test]
fn put_chunk_refuses_bytes_that_are_not_the_chunk() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    let id = hash::leaf(b"right");
    assert!(matches!(
        s.put_chunk(&id, b"wrong"),
        Err(StoreError::WrongChunk { .. })
    ));
    assert!(!s.has_chunk(&id));
    assert!(s.put_chunk(&id, b"right").unwrap());
    assert!(
        !s.put_chunk(&id, b"right").unwrap(),
        "second copy is deduplicated"
    );
}

#[test]
fn a_rotted_staged_chunk_is_caught_at_install() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    let p = packed(1, 3);
    stage_all(&mut s, &p);
    // Flip a byte of a stored chunk behind the store's back.
    let id = p.chunks[1].0.id.to_string();
    let path = d.path().join("chunks").join(&id[..2]).join(&id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(!s.has_chunk(&p.chunks[1].0.id));
    assert!(s.install_staged(&p.header.root, &ctx(), None).is_err());
    assert!(s.installed().is_empty());
    // Staging is kept so the link can fetch the chunk again and retry.
    assert!(s.staged(&p.header.root).is_some());
    s.put_chunk(&p.chunks[1].0.id, &p.chunks[1].1).unwrap();
    s.install_staged(&p.header.root, &ctx(), None).unwrap();
    // Then a discard of nothing staged is fine.
    s.discard_staged(&p.header.root).unwrap();
}

#[test]
fn a_crash_during_a_staged_install_leaves_the_old_state() {
    let d = tempfile::tempdir().unwrap();
    let p1 = packed(1, 4);
    let p2 = packed(2, 5);
    {
        let mut s = open(d.path());
        stage_all(&mut s, &p1);
        s.install_staged(&p1.header.root, &ctx(), None).unwrap();
        stage_all(&mut s, &p2);
        for n in 1..4 {
            s.fail_after_steps(Some(n));
            if s.install_staged(&p2.header.root, &ctx(), None).is_ok() {
                break;
            }
        }
    }
    let s = open(d.path());
    let v = s.get("agents/s").unwrap().version;
    assert!(v == 1 || v == 2);
    assert!(s.fsck().unwrap().problems.is_empty());
}
