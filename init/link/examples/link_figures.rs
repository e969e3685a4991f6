//! Efficiency figures for docs/update-link.md: a real signed bundle sent
//! through the real sender and receiver into a real store, over the
//! simulated line (`quilt_link::sim`) at 115 200 baud and unlimited, for
//! several piece sizes, clean and with line errors.
//!
//! `cargo run --release -p quilt-link --example link_figures`
//!
//! efficiency = bundle bytes delivered / bytes on the line towards the
//! board; at a baud rate the line moves baud/10 bytes per second (8N1), so
//! the best possible time is qb_len × 10 / baud, and "vs raw" compares the
//! simulated transfer time with that.

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::{Context, Policy, SecretKey, Trust};
use quilt_link::receiver::Bound;
use quilt_link::sim::{Dir, Line};
use quilt_link::store::StoreStorage;
use quilt_link::{Outcome, Receiver, ReceiverConfig, Sender, SenderConfig};
use quilt_store::Store;

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

fn main() {
    let key = SecretKey::from_seed([1; 32]);
    let mut b = Builder::new();
    b.dir("lib", 0o755);
    b.file("main.ts", 0o644, b"import './lib/a.ts';\n");
    for i in 0..20 {
        b.file(
            &format!("lib/m{i:02}.ts"),
            0o644,
            &noise(2_000 + i * 300, i as u64),
        );
    }
    b.file("lib/data.bin", 0o644, &noise(1_000_000, 7));
    let qb = b
        .finish(HeaderFields::new("agents/bench", 1, "main.ts"))
        .unwrap()
        .to_qb(&[&key])
        .unwrap();
    let trust = Trust::new(vec![key.public()], Policy::parse("").unwrap()).unwrap();
    println!("bundle: {} bytes, 22 files", qb.len());
    println!(
        "{:>8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "baud", "piece", "errors", "payload", "wire", "back", "effic.", "time s", "raw s", "vs raw"
    );
    for baud in [115_200u32, 0] {
        for piece in [512u32, 1024, 2048, 4096, 8192] {
            for ber in [0u64, 20_000] {
                if baud == 0 && ber != 0 {
                    continue;
                }
                let d = tempfile::tempdir().unwrap();
                let mut store = Store::open(d.path(), trust.clone()).unwrap();
                let mut storage = StoreStorage::new(&mut store, Context::default());
                let mut rx = Receiver::new(ReceiverConfig {
                    max_piece: piece,
                    ..ReceiverConfig::default()
                });
                let mut tx =
                    Sender::new(qb.clone(), qb.len() as u64, SenderConfig::default()).unwrap();
                // One flipped bit per `ber` bytes, both ways.
                let mut fault = |_: Dir, i: u64, x: u8| {
                    Some(if ber > 0 && i % ber == ber / 2 {
                        x ^ 0x08
                    } else {
                        x
                    })
                };
                let mut bound = Bound {
                    receiver: &mut rx,
                    storage: &mut storage,
                };
                let r = Line::new(baud).run(&mut tx, &mut bound, &mut fault, &mut |_| false);
                assert!(
                    matches!(rx.outcome(), Some(Outcome::Installed { .. })),
                    "{:?}",
                    rx.outcome()
                );
                let eff = qb.len() as f64 / r.bytes_a_to_b as f64;
                let (time, raw, vs) = if baud > 0 {
                    let t = r.ms as f64 / 1000.0;
                    let raw = qb.len() as f64 * 10.0 / f64::from(baud);
                    (
                        format!("{t:.1}"),
                        format!("{raw:.1}"),
                        format!("{:.1}%", 100.0 * raw / t),
                    )
                } else {
                    ("-".into(), "-".into(), "-".into())
                };
                let errors = if ber > 0 {
                    format!("1/{ber}")
                } else {
                    "none".into()
                };
                println!(
                    "{:>8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>7.2}% {:>9} {:>9} {:>7}",
                    if baud > 0 {
                        baud.to_string()
                    } else {
                        "unlim.".into()
                    },
                    piece,
                    errors,
                    qb.len(),
                    r.bytes_a_to_b,
                    r.bytes_b_to_a,
                    100.0 * eff,
                    time,
                    raw,
                    vs
                );
            }
        }
    }
}
