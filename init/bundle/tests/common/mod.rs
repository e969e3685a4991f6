//! Shared helpers for the bundle integration tests.
#![allow(dead_code)]

use quilt_bundle::pack::{Builder, HeaderFields, Packed};
use quilt_bundle::{BundleReader, Context, Error, Policy, SecretKey, Trust, CHUNK_MAX};

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

pub fn trust(keys: &[&SecretKey], policy: &str) -> Trust {
    Trust::new(
        keys.iter().map(|k| k.public()).collect(),
        Policy::parse(policy).unwrap(),
    )
    .unwrap()
}

/// A small tool: one dir, a few files (one bigger than a chunk), a symlink.
pub fn packed_with(
    name: &str,
    version: u64,
    big: &[u8],
    tweak: impl FnOnce(&mut HeaderFields),
) -> Packed {
    let mut b = Builder::new();
    b.dir("src", 0o755);
    b.file(
        "main.ts",
        0o644,
        b"import { run } from './src/app.ts';\nrun();\n",
    );
    b.file(
        "src/app.ts",
        0o644,
        b"export function run() { console.log('hi'); }\n",
    );
    b.file("src/data.bin", 0o644, big);
    b.symlink("src/entry.ts", "../main.ts");
    let mut f = HeaderFields::new(name, version, "main.ts");
    tweak(&mut f);
    b.finish(f).unwrap()
}

pub fn packed(name: &str, version: u64) -> Packed {
    packed_with(name, version, &pseudo_random(300_000, 7), |_| {})
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

/// Full verification of an in-memory `.qb`: header, manifest, every chunk, end.
pub fn verify(qb: &[u8], trust: &Trust, ctx: &Context<'_>) -> Result<(), Error> {
    let mut r = BundleReader::open(qb, trust, ctx)?;
    let mut buf = vec![0u8; CHUNK_MAX as usize];
    r.verify_rest(&mut buf)
}
