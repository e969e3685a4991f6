#!/bin/sh
# Bundle verification benchmark (issue 3): verifies a 256 MiB bundle next to
# `openssl dgst -sha3-256` on the same bytes, on one and two cores, and
# reports the bytes a one-file change in a 50 MiB tool costs to ship.
# See docs/bench-bundle.md. Extra arguments go to `quilt bundle bench`,
# e.g. `benches/bundle-verify.sh --runs 7 --size-mib 64`.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p quilt
exec ./target/release/quilt bundle bench "$@"
