#!/bin/sh
# The demo's main act: task three signed Bun tools, each in a fresh
# container, through quilt-init's control socket, and show their results.
d=/usr/share/quilt/demo
echo "installed bundles run in containers; asking quilt-init to run them:"
# hello speaks the plain protocol (any stdin, any stdout); the SDK tools
# are called by the tool name their signed manifest lists and answer with
# an envelope, {"result": ...} or {"error": ...}.
for t in examples/hello examples/json-transform:transform examples/bun-apis:roundtrip; do
	bundle=${t%%:*}
	tool=${t#"$bundle"}
	tool=${tool#:}
	in="$d/$(basename "$bundle").json"
	echo "\$ quilt run $bundle${tool:+ $tool} --input $in"
	quilt run "$bundle" ${tool:+"$tool"} --input "$in"
	echo "(exit status $?)"
done
echo "and a client container talking to the calc service over the shared-memory bus:"
echo "\$ quilt run examples/bus-client measure --input $d/bus-client.json"
quilt run examples/bus-client measure --input "$d/bus-client.json"
echo "(exit status $?)"
echo "\$ quilt ps"
quilt ps
