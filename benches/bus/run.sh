#!/bin/sh
# Builds the bus benchmark in release and prints one Markdown table:
# quilt-bus (busy-poll, futex, spin-then-futex) next to iceoryx2 0.10
# (busy-poll, event-driven), a Unix socket pair and a pipe pair, plus
# memcpy bandwidth. Two processes, pinned to CPUs 0 and 1 when there are
# two. Busy-poll figures are only meaningful on an otherwise idle machine:
# the table prints the load average before and after.
#
# Usage: benches/bus/run.sh [--quick]
#   BENCH_SIZES=64,4096   only these payload sizes
set -eu
cd "$(dirname "$0")"
cargo build --release --quiet
load=$(cut -d' ' -f1 /proc/loadavg)
if awk "BEGIN { exit !($load > 0.5) }"; then
    echo "warning: load average $load; latencies will include other work" >&2
fi
exec ./target/release/quilt-bus-bench "$@"
