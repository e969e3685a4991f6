//! One test per TUF attack class that the format and trust layer defend
//! against (rollback and fast-forward need persisted state and are tested in
//! quilt-store). Each test fails if its defence is removed.

mod common;
use common::*;
use quilt_bundle::envelope::{Envelope, MAGIC_BUNDLE};
use quilt_bundle::{BundleReader, Context, Error, SecretKey, Source, SourceError, CHUNK_MAX};

#[test]
fn arbitrary_installation_unsigned_or_unknown_key_is_refused() {
    let good = key(1);
    let t = trust(&[&good], "");
    let p = packed("agents/a", 1);
    assert!(matches!(
        verify(&p.to_qb(&[]).unwrap(), &t, &Context::default()),
        Err(Error::Unsigned { .. })
    ));
    let err = verify(&p.to_qb(&[&key(9)]).unwrap(), &t, &Context::default()).unwrap_err();
    assert!(matches!(err, Error::UnknownSigner { .. }));
    assert!(
        err.to_string().contains("add its .pub to the trust dir"),
        "{err}"
    );
    verify(&p.to_qb(&[&good]).unwrap(), &t, &Context::default()).unwrap();
}

#[test]
fn key_compromise_below_threshold_is_refused() {
    let (a, b, c) = (key(1), key(2), key(3));
    let t = trust(&[&a, &b, &c], "rule firmware 2\nrule agents/* 1");
    let fw = packed("firmware", 1);
    // One stolen key, alone or together with keys the device does not trust.
    for signers in [vec![&a], vec![&a, &key(8)]] {
        let e = verify(&fw.to_qb(&signers).unwrap(), &t, &Context::default()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BelowThreshold {
                    have: 1,
                    need: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
    // The same stolen key twice does not count twice.
    let mut qb = fw.to_qb(&[&a]).unwrap();
    let (mut env, len) = quilt_bundle::reader::parse_envelope(&qb).unwrap();
    env.sigs.push(env.sigs[0]);
    let mut prefix = Vec::new();
    env.encode_into(&MAGIC_BUNDLE, &mut prefix).unwrap();
    qb.splice(..len, prefix);
    assert!(matches!(
        verify(&qb, &t, &Context::default()),
        Err(Error::DuplicateSigner { .. })
    ));
    verify(&fw.to_qb(&[&a, &c]).unwrap(), &t, &Context::default()).unwrap();
    // The agents/* rule lets one key through, as configured.
    verify(
        &packed("agents/x", 1).to_qb(&[&b]).unwrap(),
        &t,
        &Context::default(),
    )
    .unwrap();
}

/// A source that serves `data` and then endless `A`s, counting what it hands out.
struct Endless<'a> {
    data: &'a [u8],
    served: u64,
}

impl Source for Endless<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        let n = if self.data.is_empty() {
            buf.fill(b'A');
            buf.len()
        } else {
            (&mut self.data).read(buf)?
        };
        self.served += n as u64;
        Ok(n)
    }
}

#[test]
fn endless_data_is_never_read_past_the_signed_sizes() {
    let k = key(1);
    let t = trust(&[&k], "");
    let qb = packed("agents/a", 1).to_qb(&[&k]).unwrap();
    let mut src = Endless {
        data: &qb,
        served: 0,
    };
    let mut r = BundleReader::open(&mut src, &t, &Context::default()).unwrap();
    let mut buf = vec![0u8; CHUNK_MAX as usize];
    assert!(matches!(
        r.verify_rest(&mut buf),
        Err(Error::TrailingBytes { .. })
    ));
    drop(r);
    // Exactly the bundle, plus the one byte that proves there is more.
    assert_eq!(src.served, qb.len() as u64 + 1);

    // A huge header length is refused before anything past it is read.
    let mut evil = MAGIC_BUNDLE.to_vec();
    evil.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut src = Endless {
        data: &evil,
        served: 0,
    };
    assert!(matches!(
        BundleReader::open(&mut src, &t, &Context::default()),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(src.served, 12);
}

#[test]
fn mix_and_match_content_from_another_bundle_is_refused() {
    let k = key(1);
    let t = trust(&[&k], "");
    let a = packed_with("agents/a", 1, &pseudo_random(200_000, 1), |_| {});
    let b = packed_with("agents/a", 2, &pseudo_random(200_000, 2), |_| {});
    let qa = a.to_qb(&[&k]).unwrap();
    let qb = b.to_qb(&[&k]).unwrap();
    let (_, la) = quilt_bundle::reader::parse_envelope(&qa).unwrap();
    let (_, lb) = quilt_bundle::reader::parse_envelope(&qb).unwrap();
    // A's signed header with B's manifest and chunks.
    let mut mixed = qa[..la].to_vec();
    mixed.extend_from_slice(&qb[lb..]);
    let e = verify(&mixed, &t, &Context::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RootMismatch { .. } | Error::ManifestMismatch { .. } | Error::Malformed { .. }
        ),
        "{e}"
    );
    // A's header and manifest with one of B's chunks in place of A's (same length).
    let ma = a.manifest_bytes.len();
    let mut mixed = qa[..la + ma].to_vec();
    // Replace A's first data chunk by the same number of bytes of B's data.
    let b_data = pseudo_random(200_000, 2);
    let i = a
        .chunks
        .iter()
        .position(|(r, _)| b.chunks.iter().all(|(s, _)| s.id != r.id))
        .unwrap();
    for (j, (r, bytes)) in a.chunks.iter().enumerate() {
        mixed.extend_from_slice(if j == i {
            &b_data[..r.len as usize]
        } else {
            bytes
        });
    }
    assert!(matches!(
        verify(&mixed, &t, &Context::default()),
        Err(Error::ChunkMismatch { .. })
    ));
    assert!(verify(&mixed, &t, &Context::default()).is_err());
    // Header signatures do not transfer either: B's header with A's signature.
    let (env_a, _) = quilt_bundle::reader::parse_envelope(&qa).unwrap();
    let (mut env_b, _) = quilt_bundle::reader::parse_envelope(&qb).unwrap();
    env_b.sigs = env_a.sigs;
    let mut forged = Vec::new();
    env_b.encode_into(&MAGIC_BUNDLE, &mut forged).unwrap();
    forged.extend_from_slice(&qb[lb..]);
    assert!(matches!(
        verify(&forged, &t, &Context::default()),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn wrong_software_for_this_device_is_refused() {
    let k = key(1);
    let t = trust(&[&k], "");
    let p = packed_with("agents/a", 1, b"x", |f| {
        f.arch = vec!["aarch64".into()];
        f.boards = vec!["rpi4".into()];
    });
    let qb = p.to_qb(&[&k]).unwrap();
    let dev = |arch, board| Context {
        now: None,
        arch: Some(arch),
        board: Some(board),
        firmware: None,
    };
    assert!(matches!(
        verify(&qb, &t, &dev("x86_64", "rpi4")),
        Err(Error::WrongArch { .. })
    ));
    assert!(matches!(
        verify(&qb, &t, &dev("aarch64", "qemu-virt")),
        Err(Error::WrongBoard { .. })
    ));
    verify(&qb, &t, &dev("aarch64", "rpi4")).unwrap();
}

#[test]
fn freeze_expired_bundles_are_refused_where_a_clock_exists() {
    let k = key(1);
    let t = trust(&[&k], "");
    let p = packed_with("agents/a", 1, b"x", |f| {
        f.not_before = Some(1_000);
        f.expires = Some(2_000);
    });
    let qb = p.to_qb(&[&k]).unwrap();
    let at = |now| Context {
        now: Some(now),
        ..Context::default()
    };
    assert!(matches!(
        verify(&qb, &t, &at(2_000)),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(
        verify(&qb, &t, &at(999)),
        Err(Error::NotYetValid { .. })
    ));
    verify(&qb, &t, &at(1_500)).unwrap();
    // A clockless board cannot tell; documented in docs/trust.md.
    verify(&qb, &t, &Context::default()).unwrap();
}

#[test]
fn signatures_from_other_document_kinds_do_not_sign_bundles() {
    let k = key(1);
    let t = trust(&[&k], "");
    let p = packed("agents/a", 1);
    let qb = p.to_qb(&[]).unwrap();
    let (mut env, len) = quilt_bundle::reader::parse_envelope(&qb).unwrap();
    env.sigs
        .push(k.sign(quilt_bundle::sig::DOMAIN_TRUST, &env.body));
    let mut out = Vec::new();
    env.encode_into(&MAGIC_BUNDLE, &mut out).unwrap();
    out.extend_from_slice(&qb[len..]);
    assert!(matches!(
        verify(&out, &t, &Context::default()),
        Err(Error::BadSignature { .. })
    ));
    let _ = Envelope {
        body: vec![],
        sigs: vec![],
    };
}

/// Firmware is what the board names as firmware, signed at the root
/// threshold: a one-key signer under `default 1` can neither slip a root
/// image in under another name nor sign the board's own firmware alone.
#[test]
fn firmware_is_chosen_by_the_board_and_signed_at_the_root_threshold() {
    let (a, b) = (key(1), key(2));
    let t = trust(&[&a, &b], "root-threshold 2\ndefault 1\nrule agents/* 1");
    let names = ["firmware/board".to_string()];
    let board = Context {
        firmware: Some(&names),
        ..Context::default()
    };
    let fw = |name: &str, signers: &[&SecretKey]| {
        packed_with(name, 1, b"root image", |f| f.runtime = "firmware".into())
            .to_qb(signers)
            .unwrap()
    };
    // A firmware under a name the board does not give: refused, whoever signed.
    assert!(matches!(
        verify(&fw("agents/fw", &[&a, &b]), &t, &board),
        Err(Error::NotBoardFirmware { .. })
    ));
    // The board's firmware with one signature (`default 1` would pass it).
    assert!(matches!(
        verify(&fw("firmware/board", &[&a]), &t, &board),
        Err(Error::BelowThreshold { need: 2, .. })
    ));
    verify(&fw("firmware/board", &[&a, &b]), &t, &board).unwrap();
    // A tool under the firmware's name is not a firmware.
    let tool = packed_with("firmware/board", 1, b"x", |_| {})
        .to_qb(&[&a, &b])
        .unwrap();
    assert!(matches!(
        verify(&tool, &t, &board),
        Err(Error::FirmwareRuntime { .. })
    ));
    // Only a rule naming exactly that bundle may lower the threshold.
    let t1 = trust(&[&a, &b], "root-threshold 2\ndefault 1\nrule firmware/* 1");
    assert!(verify(&fw("firmware/board", &[&a]), &t1, &board).is_err());
    let t2 = trust(
        &[&a, &b],
        "root-threshold 2\ndefault 1\nrule firmware/board 1",
    );
    verify(&fw("firmware/board", &[&a]), &t2, &board).unwrap();
    // A host-side check (no board) still asks the root threshold.
    assert!(verify(&fw("agents/fw", &[&a]), &t, &Context::default()).is_err());
}
