#!/bin/sh
# Build the fuzz targets and run each for a bounded time (default 180 s),
# seeded from fuzz/seeds/. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")"
secs=${1:-180}
[ $# -gt 0 ] && shift
targets=${*:-header manifest reader control bus_layout link_frame uevent dhcp_reply gateway_signature}
cargo +nightly fuzz build
cargo +nightly fuzz build -O dhcp_reply
for t in $targets; do
    mkdir -p "corpus/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    # dhcp_reply: as shipped, without dhcproto's debug assertions (see the target).
    opt=
    [ "$t" = dhcp_reply ] && opt=-O
    # shellcheck disable=SC2086 # $opt is empty or one flag
    cargo +nightly fuzz run $opt "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536
done
