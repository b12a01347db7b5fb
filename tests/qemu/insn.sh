#!/usr/bin/env bash
# Guest instructions per frame of `clip-edge classify` under qemu-user, counted by the
# TCG plugin in tests/qemu-insn (deterministic; see /work/shared/qemu-insn/README.md).
#
#   tests/qemu/insn.sh CPU BUNDLE IMAGE [N [K]]
#
# CPU: an aarch64 QEMU CPU (cortex-a72 = SMLAL path, cortex-a76 = SDOT path; runs the
# static musl build) or an armv7 one (cortex-a15, cortex-a7...; runs the armv7 build with
# TRACT_CPU_ARM32_NEON=true; CLIP_EDGE_BIN overrides the aarch64 binary). Classifies IMAGE repeated N times (default 1) and N+K
# times (default K=4): per frame = (count(N+K) - count(N)) / K, which cancels start-up
# and model loading; load = count(N) - N x per frame. A frame is decode + preprocess +
# image encoder + scoring of one image.
#
# RUST_BACKTRACE / RUST_LIB_BACKTRACE are unset: with them, every error tract creates
# and discards while loading captures a backtrace, which on the static musl build (LLVM
# libunwind, scanning .eh_frame) costs ~1.5 G instructions of "load".
set -euo pipefail
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[[ $# -ge 3 ]] || { sed -n '2,13p' "$0" >&2; exit 2; }
cpu=$1 bundle=$2 image=$3 n=${4:-1} k=${5:-4}
plugin=$(tests/qemu-insn/build.sh)
source tests/qemu/arm-cpu.sh
arm_cpu "$cpu" insn

count() { # frames
    local imgs=() i
    for ((i = 0; i < $1; i++)); do imgs+=("$image"); done
    "${qemu[@]}" -plugin "$plugin" -d plugin "$bin" --threads "${THREADS:-1}" classify --bundle "$bundle" --json "${imgs[@]}" \
        2>&1 >/dev/null | sed -n 's/^insns: //p' | tail -1
}
c0=$(count "$n")
c1=$(count $((n + k)))
[[ -n $c0 && -n $c1 ]] || { echo "insn: no count from the plugin" >&2; exit 1; }
per=$(( (c1 - c0) / k ))
load=$(( c0 - n * per ))
printf "%s (%s), image %s\n" "$cpu" "$bin" "$image"
printf '  insns(%d frames) = %d\n  insns(%d frames) = %d\n' "$n" "$c0" $((n + k)) "$c1"
awk -v p="$per" -v l="$load" 'BEGIN { printf "  per frame        = %.0f (%.1f M)\n  load + start-up  = %.0f (%.1f M)\n", p, p / 1e6, l, l / 1e6 }'
