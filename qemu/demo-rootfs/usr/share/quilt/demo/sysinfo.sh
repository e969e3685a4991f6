#!/bin/sh
# One-shot: what the demo board looks like from inside a service.
echo "kernel $(uname -r) on $(hostname); PID 1 is $(cat /proc/1/comm)"
echo "my cgroup: $(cat /proc/self/cgroup)"
echo "controllers: $(cat /sys/fs/cgroup/quilt/cgroup.subtree_control)"
echo "mounts: $(awk '{print $2"("$3")"}' /proc/mounts | tr '\n' ' ')"
