//! The worked test vectors in docs/bundle-format.md, recomputed. If the
//! format changes, this fails until the document is updated with it
//! (`QUILT_PRINT_VECTORS=1 cargo test -p quilt-bundle --test vectors -- --nocapture`
//! prints the current values).

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::{hash, hex, merkle, BundleReader, Context, Policy, SecretKey, Trust};
use std::collections::BTreeMap;

fn computed() -> Vec<(&'static str, String)> {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let sk = SecretKey::from_seed(seed);
    let content = b"console.log(\"hello, quilt\");\n";
    let mut b = Builder::new();
    b.file("main.ts", 0o644, content);
    let p = b
        .finish(HeaderFields::new("examples/hello", 1, "main.ts"))
        .unwrap();
    let qb = p.to_qb(&[&sk]).unwrap();
    let (env, env_len) = quilt_bundle::reader::parse_envelope(&qb).unwrap();
    let (la, lb, lc) = (hash::leaf(b"a"), hash::leaf(b"b"), hash::leaf(b"c"));
    vec![
        ("sha3_256_empty", hash::plain(b"").to_string()),
        ("leaf_empty", hash::leaf(b"").to_string()),
        ("node_leaf_a_leaf_b", hash::node(&la, &lb).to_string()),
        ("mth_a_b_c", merkle::root(&[la, lb, lc]).to_string()),
        ("seed", hex::encode(&seed)),
        ("public_key", sk.public().to_hex()),
        ("chunk_leaf", hash::leaf(content).to_string()),
        ("manifest", hex::encode(&p.manifest_bytes)),
        ("manifest_leaf", hash::leaf(&p.manifest_bytes).to_string()),
        ("root", p.header.root.to_string()),
        ("header", hex::encode(&p.header_bytes)),
        ("signature", hex::encode(&env.sigs[0].sig)),
        ("envelope_len", env_len.to_string()),
        ("qb_len", qb.len().to_string()),
        ("qb_sha3_256", hash::plain(&qb).to_string()),
    ]
}

fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/bundle-format.md"
    ))
    .unwrap();
    let block = doc
        .split("```vectors\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/bundle-format.md has a ```vectors block");
    let mut out = BTreeMap::new();
    let mut key = String::new();
    for line in block.lines() {
        if let Some((k, v)) = line.split_once(" = ") {
            key = k.trim().to_string();
            out.insert(key.clone(), v.trim().to_string());
        } else if !line.trim().is_empty() {
            // Continuation of a long hex value.
            out.get_mut(&key).unwrap().push_str(line.trim());
        }
    }
    out
}

#[test]
fn documented_vectors_match_the_implementation() {
    let got = computed();
    if std::env::var_os("QUILT_PRINT_VECTORS").is_some() {
        for (k, v) in &got {
            println!("{k} = {v}");
        }
    }
    let doc = documented();
    for (k, v) in got {
        assert_eq!(
            doc.get(k),
            Some(&v),
            "docs/bundle-format.md vector `{k}` is stale"
        );
    }
}

#[test]
fn the_vector_bundle_verifies() {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let sk = SecretKey::from_seed(seed);
    let mut b = Builder::new();
    b.file("main.ts", 0o644, b"console.log(\"hello, quilt\");\n");
    let qb = b
        .finish(HeaderFields::new("examples/hello", 1, "main.ts"))
        .unwrap()
        .to_qb(&[&sk])
        .unwrap();
    let t = Trust::new(vec![sk.public()], Policy::default()).unwrap();
    let mut r = BundleReader::open(&qb[..], &t, &Context::default()).unwrap();
    let mut buf = vec![0u8; quilt_bundle::CHUNK_MAX as usize];
    r.verify_rest(&mut buf).unwrap();
}
