#!/bin/sh
# Fails on its first two runs (counted in /run), then succeeds.
n=$(cat /run/flaky.count 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /run/flaky.count
if [ "$n" -le 2 ]; then
	echo "attempt $n: failing on purpose"
	exit 1
fi
echo "attempt $n: fine now"
