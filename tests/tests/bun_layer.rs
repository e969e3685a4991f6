//! Bun runs from the runtime layer alone, in QEMU, under quilt-init.
//!
//! The image holds the layer (`ImageBuilder::bun_runtime`: bin/bun, its
//! glibc closure and loader, etc/, mount points) and the example tools at
//! `/srv/app`. A root service builds a container-shaped root the way the
//! spawner does: the layer bind-mounted read-only onto itself, the tools
//! read-only at `app`, a tmpfs at `tmp`, `/proc` and `/dev` on top; then it
//! runs each example with `chroot LAYER /bin/bun /app/...` (the SDK
//! examples' sources find `@quilt/tool` in the layer) and reports on
//! `/dev/ttyS1`, timing `bun hello.ts` on the guest clock (µs). A second service,
//! as uid/gid 1000 and without chroot, runs Bun through the layer's own
//! loader (`ld-linux --library-path`), which only works if the layer's
//! symlinks are relative and its library closure complete.

use std::time::Duration;

use quilt_imagekit::BUN_LAYER_PREFIX;
use quilt_system_tests::{example_dir, ImageBuilder, Vm, VmOpts};

const BOOT: Duration = Duration::from_secs(240);
const RUNS: usize = 7;

/// The SDK's request to examples/json-transform (its one tool, by default).
const JSON_IN: &str =
    r#"{"input":{"items":[{"name":"b","category":"x","price":2,"qty":3},{"name":"a","price":1}]}}"#;
const JSON_OUT: &str = concat!(
    r#"{"result":{"count":2,"total":7,"categories":[{"category":"x","count":1,"qty":3,"total":6},"#,
    r#"{"category":"uncategorized","count":1,"qty":1,"total":1}],"items":["#,
    r#"{"name":"b","category":"x","price":2,"qty":3,"total":6},"#,
    r#"{"name":"a","category":"uncategorized","price":1,"qty":1,"total":1}]}}"#
);

fn layer_script() -> String {
    format!(
        r#"#!/bin/sh
L={BUN_LAYER_PREFIX}
say() {{ echo "$*" > /dev/ttyS1; }}
# Guest wall clock in microseconds (busybox adjtimex prints tv_sec and
# tv_usec; /proc/uptime only has 10 ms). Nothing steps the clock meanwhile.
us() {{
    adjtimex | {{
        while read -r k v _; do
            case "$k" in time.tv_sec:) s=$v ;; time.tv_usec:) u=$v ;; esac
        done
        echo $((s * 1000000 + u))
    }}
}}
mount --bind $L $L && mount -o remount,bind,ro $L || say fail=ro-bind
mount --bind /srv/app $L/app && mount -o remount,bind,ro $L/app || say fail=app-bind
mount -t tmpfs -o size=16m,mode=1777 tmpfs $L/tmp || say fail=tmpfs
mount -t proc proc $L/proc || say fail=proc
mount --bind /dev $L/dev || say fail=dev
if touch $L/probe 2>/dev/null; then say root=writable; else say root=read-only; fi
say "version=$(chroot $L /bin/bun --version 2>&1)"
t0=$(us)
t1=$(us)
say "clock overhead_us=$((t1 - t0))"
i=0
while [ $i -lt {RUNS} ]; do
    i=$((i + 1))
    t0=$(us)
    r=$(echo "{{\"n\":$i}}" | chroot $L /bin/bun /app/hello/hello.ts 2>&1)
    t1=$(us)
    say "hello run=$i us=$((t1 - t0)) out=$r"
done
# The SDK examples' sources, importing @quilt/tool from the layer's
# /node_modules; stdout is their envelope, stderr their log.
r=$(echo '{JSON_IN}' | chroot $L /bin/bun /app/json-transform/src/index.ts 2>/tmp/json.err)
rc=$?
say "json rc=$rc out=$r err=$(tr '\n' ' ' < /tmp/json.err)"
r=$(echo '{{' | chroot $L /bin/bun /app/json-transform/src/index.ts 2>/tmp/json.err)
rc=$?
say "json-bad rc=$rc out=$r err=$(tr '\n' ' ' < /tmp/json.err)"
r=$(echo '{{"tool":"roundtrip","input":{{"text":"quilt","delay_ms":50}}}}' | chroot $L /bin/bun /app/bun-apis/src/index.ts 2>/tmp/apis.err)
rc=$?
say "apis rc=$rc out=$r err=$(tr '\n' ' ' < /tmp/apis.err)"
say "tmp-left=$(ls -A $L/tmp | wc -l)"
touch /run/layer.done
"#
    )
}

fn as_user_script() -> String {
    format!(
        r#"#!/bin/sh
L={BUN_LAYER_PREFIX}
echo "asuser uid=$(id -u) gid=$(id -g)"
echo "asuser out=$($L/lib64/ld-linux-x86-64.so.2 --library-path $L/lib/x86_64-linux-gnu \
    $L/bin/bun /srv/app/hello/hello.ts < /dev/null 2>&1)"
"#
    )
}

const CONFIG: &str = r#"
[[service]]
name = "layer"
exec = ["/bin/layer.sh"]
restart = "never"
ready = { file = "/run/layer.done" }

[[service]]
name = "asuser"
exec = ["/bin/asuser.sh"]
uid = 1000
gid = 1000
after = ["layer"]
restart = "never"
on_exit = "poweroff"
"#;

#[test]
fn bun_runs_from_the_read_only_runtime_layer() {
    let mut image = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .config_toml(CONFIG)
        .bytes("/bin/layer.sh", layer_script(), 0o755)
        .bytes("/bin/asuser.sh", as_user_script(), 0o755)
        // @quilt/tool for the SDK examples' sources, as a tool packed
        // without `quilt build` finds it.
        .tool_sdk();
    for ex in ["hello", "json-transform", "bun-apis"] {
        image = image.tree(&format!("/srv/app/{ex}"), example_dir(ex));
    }
    let image = image.build().unwrap();
    let mut vm = Vm::boot(
        &image,
        VmOpts {
            // Bun wants more than the kernel's share of 128 MiB.
            mem_mb: 512,
            timeout: BOOT,
            // The TSC as clocksource: otherwise the TCG guest's clock
            // moves in 4 ms jiffies, too coarse for start-up times.
            append: "clocksource=tsc tsc=reliable".into(),
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    let ch = vm.channel_text();
    let console = vm.console_text();
    assert!(
        exit.powered_off(),
        "{exit:?}\n--- channel ---\n{ch}\n--- console ---\n{console}"
    );
    let has = |needle: &str| assert!(ch.contains(needle), "channel lacks {needle:?}:\n{ch}");
    assert!(!ch.contains("fail="), "a mount failed:\n{ch}");
    has("root=read-only");
    has("version=1.4.5");

    let mut times = Vec::new();
    for i in 1..=RUNS {
        let line = ch
            .lines()
            .find(|l| l.starts_with(&format!("hello run={i} ")))
            .unwrap_or_else(|| panic!("no hello run {i}:\n{ch}"));
        assert!(
            line.ends_with(&format!(r#"out={{"hello":"quilt","input":{{"n":{i}}}}}"#)),
            "{line}"
        );
        let us: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("us="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no us= in {line}"));
        times.push(us as f64 / 1000.0);
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    // Each interval includes one clock read (the tail of the first and the
    // head of the second); the back-to-back reads measure that.
    let overhead = ch
        .lines()
        .find_map(|l| l.strip_prefix("clock overhead_us="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |us| us / 1000.0);
    println!(
        "bun hello.ts in the guest ({:?}): median {:.1} ms, min {:.1} ms, max {:.1} ms, \
         first {first:.1} ms (clock reads of {overhead:.1} ms taken out); raw runs {times:.1?}",
        vm.accel(),
        times[RUNS / 2] - overhead,
        times[0] - overhead,
        times[RUNS - 1] - overhead,
        first = first - overhead,
    );

    has(&format!("json rc=0 out={JSON_OUT} err="));
    has(r#"json-bad rc=2 out={"error":{"code":"bad_request","message":"the request is not JSON"#);
    let apis = ch
        .lines()
        .find(|l| l.starts_with("apis "))
        .unwrap_or_else(|| panic!("no apis line:\n{ch}"));
    for want in [
        r#"apis rc=0 out={"result":{"#,
        r#""roundtrip":true"#,
        r#""removed":true"#,
        r#""bytes":5"#,
        r#""timer_ok":true"#,
        // SHA-256("quilt")
        r#""sha256":"b8b2eacffb5d4d4065e73890ca0f4919b710a403c5855c4edc9a5c48cfe45398""#,
    ] {
        assert!(apis.contains(want), "apis lacks {want}: {apis}");
    }
    has("tmp-left=0");

    // Without chroot, as uid 1000, through the layer's own loader.
    assert!(
        console.contains("[asuser] asuser uid=1000 gid=1000"),
        "{console}"
    );
    assert!(
        console.contains(r#"[asuser] asuser out={"hello":"quilt","input":null}"#),
        "{console}"
    );
}
