//! A tool with npm dependencies (zod; debug, which brings ms), side by side
//! in one QEMU guest: built by `quilt build` into one file and its source
//! map, against the same project packed with its `node_modules` as tools
//! were before the SDK (issue 18's benchmark). Prints bundle size, file
//! count and the cold-run median of each, and the built/packed ratios.
//!
//! Run: `cargo bench -p quilt-system-tests --bench sdk` (cold runs per
//! variant: QUILT_SDK_RUNS, default 10, at least 10 for the issue's
//! figure). `bun add` needs the npm registry once.
//!
//! One warm-up run of each first (Bun's first start in the guest pays for
//! the page cache), then the runs alternate built, packed, built, ... so a
//! busy host slows both alike. The time is quilt-init's `micros` for the
//! run (`quilt run --json`): container start, Bun start, module load, the
//! call, exit and reap, on the guest clock. Every timed run must give the
//! right envelope or the bench fails. Under TCG absolute times are
//! emulation-inflated; the ratios are the point. Whether the two give the
//! same result is the test's (`tests/tests/sdk.rs`).

use quilt_system_tests::npm_tool::{self, NpmTool};
use quilt_system_tests::{Vm, VmOpts};
use std::time::Duration;

/// The median, averaging the two middle values of an even count.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let runs: usize = std::env::var("QUILT_SDK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tool = NpmTool::make().unwrap();
    let probe = format!(
        r#"#!/bin/sh
{inputs}echo "warm_built=$({built})" > /dev/ttyS1
echo "warm_packed=$({packed})" > /dev/ttyS1
for i in $(seq {runs}); do
	echo "bench_built=$({built})" > /dev/ttyS1
	echo "bench_packed=$({packed})" > /dev/ttyS1
done
"#,
        inputs = npm_tool::PROBE_INPUTS,
        built = npm_tool::RUN_BUILT,
        packed = npm_tool::RUN_PACKED,
    );
    let image = tool.image(&probe, &[]).unwrap();
    let t = Duration::from_secs(300 + 60 * runs as u64);
    let mut vm = Vm::boot(
        &image,
        VmOpts {
            mem_mb: 1024,
            timeout: t,
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(t).unwrap();
    let ch = vm.channel_text();
    assert!(exit.powered_off(), "{exit:?}\n{ch}");
    let want = npm_tool::want();
    let timed = |prefix: &str| -> Vec<f64> {
        let v: Vec<f64> = ch
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| {
                let run: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{prefix}{l}: {e}"));
                assert_eq!(run["status"], 0, "{run}");
                let env: serde_json::Value =
                    serde_json::from_str(run["stdout"].as_str().unwrap_or("").trim())
                        .unwrap_or_else(|e| panic!("no envelope in {run}: {e}"));
                assert_eq!(env, want, "{run}");
                run["micros"].as_f64().unwrap() / 1000.0
            })
            .collect();
        assert_eq!(v.len(), runs, "{prefix}\n{ch}");
        v
    };
    let (tb, tp) = (timed("bench_built="), timed("bench_packed="));
    let (sb, fb) = npm_tool::size_and_files(&tool.built).unwrap();
    let (sp, fp) = npm_tool::size_and_files(&tool.packed).unwrap();
    let (mb, mp) = (median(tb.clone()), median(tp.clone()));
    println!(
        "npm-dependency tool (zod, debug → ms), one QEMU guest ({:?}), {runs} interleaved cold runs each after a warm-up",
        vm.accel()
    );
    println!(
        "{:<34} {:>12} {:>6} {:>12} {:>10} {:>10}",
        "variant", "bytes", "files", "median ms", "min ms", "max ms"
    );
    for (name, size, files, m, t) in [
        ("quilt build (one file + map)", sb, fb, mb, &tb),
        ("packed node_modules", sp, fp, mp, &tp),
    ] {
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.iter().copied().fold(0.0, f64::max);
        println!("{name:<34} {size:>12} {files:>6} {m:>12.1} {min:>10.1} {max:>10.1}");
    }
    println!(
        "built/packed: size {:.3}, files {:.3}, cold-run median {:.3}",
        sb as f64 / sp as f64,
        fb as f64 / fp as f64,
        mb / mp
    );
}
