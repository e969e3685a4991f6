#!/usr/bin/env bash
# Installs the MCP test client (the official TypeScript SDK, from this
# directory's lockfile) into DIR and prints the path of its client.mjs.
# Node.js 20 and npm are the machine's; `npm ci` runs only when DIR has no
# SDK yet. Usage: tests/mcp-client/install.sh DIR
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: install.sh DIR}"
mkdir -p "$dir"
cp "$src/package.json" "$src/package-lock.json" "$src/client.mjs" "$dir/"
if [[ ! -d $dir/node_modules/@modelcontextprotocol/sdk ]]; then
	(cd "$dir" && npm ci --no-audit --no-fund --silent >&2)
fi
echo "$dir/client.mjs"
