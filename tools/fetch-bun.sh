#!/usr/bin/env bash
# Install Bun, the runtime of every Quilt tool, from its npm package at a
# pinned version and print the path of the `bun` binary (the only line on
# stdout):
#   .cache/bun/<arch>/bin/bun        the binary from @oven/bun-linux-<cpu>
#   .cache/bun/<arch>/version        the pinned version, written last
#
# The image build copies this binary and its glibc closure into the
# read-only runtime layer (quilt_imagekit::runtime, docs/bun-runtime.md), and
# the host tests run the examples with it, so host and guest run the same
# Bun. The tarball is fetched with `npm pack` (which checks the registry's
# integrity field) and then checked again against the sha512 pinned below, so
# a republished or tampered package is refused rather than cached.
#
# Idempotent: a complete cache of the pinned version is left alone. Needs npm
# (tools/setup.sh installs it), tar and coreutils; no root.
#
# Usage: tools/fetch-bun.sh [x86_64|aarch64]
set -euo pipefail

# Bump all three together: `npm view @oven/bun-linux-x64@V dist.integrity`.
version=1.4.5
arch="${1:-x86_64}"
case "$arch" in
x86_64)
	package=@oven/bun-linux-x64
	integrity=sha512-IWX9BELoGHAUtMonkeSaNaZwXzRk+oDw6Mk+HBFXd3KHYIBNBsIGRupMZPcgNoDbJpLu6gAJjIoIVPZtt1aJ1g==
	;;
aarch64)
	package=@oven/bun-linux-aarch64
	integrity=sha512-4BXmsSKnjOrlGWqZV4x/oWa7AVoR+B6lCXddMzOAXBIm3t50eslg9wb66gmtW1AamEQ1l1CDvmmruysEhqOWMg==
	;;
*)
	echo "fetch-bun: unsupported arch '$arch' (supported: x86_64, aarch64)" >&2
	exit 2
	;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo_root/.cache/bun/$arch"
bun="$out/bin/bun"

complete() {
	[[ -x "$bun" && "$(cat "$out/version" 2>/dev/null)" == "$version" ]]
}
if complete; then
	echo "$bun"
	exit 0
fi

# Test binaries run in parallel; one download at a time, the others wait.
mkdir -p "$out"
exec 9>"$out.lock"
flock 9
if complete; then
	echo "$bun"
	exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
	echo "fetch-bun: npm not found; run tools/setup.sh" >&2
	exit 1
fi

tmp="$(mktemp -d "$out.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-bun: fetching $package@$version" >&2
# npm's own chatter goes to stderr so stdout stays the one path.
(cd "$tmp" && npm pack --silent "$package@$version" >&2)
tarballs=("$tmp"/*.tgz)
if [[ ${#tarballs[@]} -ne 1 || ! -f "${tarballs[0]}" ]]; then
	echo "fetch-bun: npm pack produced no single tarball in $tmp" >&2
	exit 1
fi

want="$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
got="$(sha512sum "${tarballs[0]}" | cut -d' ' -f1)"
if [[ "$want" != "$got" ]]; then
	echo "fetch-bun: $package@$version sha512 is $got, pinned $want; refusing it" >&2
	exit 1
fi

tar -xzf "${tarballs[0]}" -C "$tmp" package/bin/bun
mkdir -p "$out/bin"
chmod 0755 "$tmp/package/bin/bun"
mv -f "$tmp/package/bin/bun" "$bun"
echo "$version" >"$out/version.tmp"
mv -f "$out/version.tmp" "$out/version"
echo "fetch-bun: installed $("$bun" --version 2>/dev/null || echo "$version (not runnable on this host)") at $bun" >&2
echo "$bun"
