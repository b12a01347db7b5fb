#!/usr/bin/env bash
# Safe updates on the ARM builds under QEMU (boards/README.md, "Safe updates"): a board
# whose /opt/clip-edge/bundle is a plain directory gets the int8 shapes bundle through
# `clip-edge bundle install` (the directory adopted with renameat2 RENAME_EXCHANGE, the
# new bundle verified on one frame, the symlink switched), classifies with it, rolls
# back, and classifies with the old one. The host's tests/tests/bundle_updates.rs stops
# the install at every step; this checks the system calls on each ARM build.
#
#   tests/qemu/bundle_store.sh        (needs `just cross`)
set -euo pipefail
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source tests/qemu/arm-cpu.sh
img=models/shapes/samples/red_triangle.png
for cpu in cortex-a72 cortex-a15; do
    arm_cpu $cpu bundle_store
    store=$(mktemp -d "${TMPDIR:-/tmp}/clip-edge-store.XXXXXX")
    mkdir "$store/bundle"
    cp models/shapes/bundle/* "$store/bundle/"
    ce() { "${qemu[@]}" "$bin" "$@" 2>/dev/null; }
    old=$(ce classify --json --top-k 1 --bundle "$store/bundle" $img)
    ce bundle install models/shapes/bundle-int8 --root "$store" >/dev/null
    [[ -L $store/bundle ]] || { echo "bundle_store: $cpu: $store/bundle is not a symlink" >&2; exit 1; }
    status=$(ce bundle status --root "$store")
    new=$(ce classify --json --top-k 1 --bundle "$store/bundle" $img)
    [[ $new == *'"red triangle"'* ]] || { echo "bundle_store: $cpu: new bundle: $new" >&2; exit 1; }
    ce bundle rollback --root "$store" >/dev/null
    back=$(ce classify --json --top-k 1 --bundle "$store/bundle" $img)
    [[ $back == "$old" ]] || { echo "bundle_store: $cpu: after rollback: $back, expected $old" >&2; exit 1; }
    echo "bundle_store: $cpu ($bin): adopted, installed, rolled back;" $status
    rm -rf "$store"
done
