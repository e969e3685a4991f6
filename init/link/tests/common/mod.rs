//! Shared fixtures: real signed bundles, a real store, the simulated line.
#![allow(dead_code)]

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::{Context, Policy, SecretKey, Trust};
use quilt_link::receiver::{Bound, ReceiverStats};
use quilt_link::sender::SenderStats;
use quilt_link::sim::{Dir, Line, SimReport};
use quilt_link::store::StoreStorage;
use quilt_link::{Outcome, Receiver, ReceiverConfig, Sender, SenderConfig};
use quilt_store::Store;

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

pub fn trust(keys: &[&SecretKey]) -> Trust {
    Trust::new(
        keys.iter().map(|k| k.public()).collect(),
        Policy::parse("").unwrap(),
    )
    .unwrap()
}

pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// A tool whose `lib/var.bin` changes with `variant`; `lib/big.bin` (`big`
/// bytes) is the same in every version, so versions share its chunks.
pub fn tool(name: &str, version: u64, variant: u64, big: usize, signer: &SecretKey) -> Vec<u8> {
    let mut b = Builder::new();
    b.dir("lib", 0o755);
    b.file(
        "main.ts",
        0o644,
        format!("// v{version}\nconsole.log({variant});\n").as_bytes(),
    );
    b.file("lib/big.bin", 0o600, &noise(big, 1));
    b.file("lib/var.bin", 0o644, &noise(60_000, 100 + variant));
    b.symlink("entry.ts", "main.ts");
    b.finish(HeaderFields::new(name, version, "main.ts"))
        .unwrap()
        .to_qb(&[signer])
        .unwrap()
}

/// One run of a sender for `qb` against a receiver on `store`.
pub struct Run {
    pub sim: SimReport,
    pub tx: SenderStats,
    pub rx: ReceiverStats,
    pub outcome: Option<Outcome>,
    /// `(need, held)` as the board's plan told this sender.
    pub plan: Option<(u64, u64)>,
}

pub fn run(
    qb: &[u8],
    store: &mut Store,
    rx: &mut Receiver,
    line: Line,
    fault: &mut dyn FnMut(Dir, u64, u8) -> Option<u8>,
    cut: &mut dyn FnMut(&SimReport) -> bool,
) -> Run {
    let mut storage = StoreStorage::new(store, Context::default());
    let mut tx = Sender::new(qb.to_vec(), qb.len() as u64, SenderConfig::default()).unwrap();
    let mut b = Bound {
        receiver: rx,
        storage: &mut storage,
    };
    let sim = line.run(&mut tx, &mut b, fault, cut);
    Run {
        sim,
        tx: tx.stats(),
        rx: rx.stats(),
        outcome: rx.outcome().cloned(),
        plan: tx.plan(),
    }
}

/// A clean, uncut transfer with a fresh receiver at `baud` (0: unlimited).
pub fn send(qb: &[u8], store: &mut Store, baud: u32) -> Run {
    let mut rx = Receiver::new(ReceiverConfig::default());
    run(
        qb,
        store,
        &mut rx,
        Line::new(baud),
        &mut quilt_link::sim::clean,
        &mut |_| false,
    )
}

pub fn installed(outcome: &Option<Outcome>) -> bool {
    matches!(outcome, Some(Outcome::Installed { .. }))
}
