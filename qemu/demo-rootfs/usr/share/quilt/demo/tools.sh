#!/bin/sh
# The demo's main act: task three signed Bun tools, each in a fresh
# container, through quilt-init's control socket, and show their results.
d=/usr/share/quilt/demo
echo "installed bundles run in containers; asking quilt-init to run them:"
for t in examples/hello examples/json-transform examples/bun-apis; do
	in="$d/$(basename "$t").json"
	echo "\$ quilt run $t --input $in"
	quilt run "$t" --input "$in"
	echo "(exit status $?)"
done
echo "and a client container talking to the calc service over the shared-memory bus:"
echo "\$ quilt run examples/bus-client --input $d/bus-client.json"
quilt run examples/bus-client --input "$d/bus-client.json"
echo "(exit status $?)"
echo "\$ quilt ps"
quilt ps
