#!/usr/bin/env bash
# Every board profile against its CPU under QEMU: the static aarch64 build, run with
# `--board NAME` at the profile's `cpu`, must
#   1. select the profile's `int8_kernel` for the int8 shapes bundle (`bench --json`
#      kernel names: SMLAL `arm64simd_mmm_i32_8x8`, SDOT `..._8x8_dot`), and
#   2. give the host's top labels from `clip-edge run --source dir:... --json`, with
#      scores within SCORE_TOL (default 1e-4) and probs within PROB_TOL (default 1e-3);
#      for an int8 bundle up to MAX_FLIPPED (default 1/3) of the frames may differ by an
#      int8 rounding flip, within FLIP_TOL (default 2e-2), with the host's top-1
#      (tests/qemu/compare.py; boards/README.md#int8-on-arm-vs-the-host).
#
#   tests/qemu/boards.sh [BUNDLE [IMAGE_DIR]]     (defaults: the int8 shapes bundle, samples)
#
# QEMU has no Cortex-A78AE (Jetson Orin): neoverse-n1 stands in for it, the same
# ARMv8.2 dot-product ISA. Profiles for other targets (armv7) are skipped, saying so.
# Needs `just build` and `just cross aarch64-unknown-linux-musl`.
set -euo pipefail
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bundle=${1:-models/shapes/bundle-int8}
images=${2:-models/shapes/samples}
SCORE_TOL=${SCORE_TOL:-1e-4}
PROB_TOL=${PROB_TOL:-1e-3}
if grep -q '^precision *= *"int8"' "$bundle/bundle.toml"; then
    FLIP_TOL=${FLIP_TOL:-2e-2}
    MAX_FLIPPED=${MAX_FLIPPED:-0.34}
fi
FLIP_TOL=${FLIP_TOL:-0}
MAX_FLIPPED=${MAX_FLIPPED:-0}
out=target/qemu-boards
mkdir -p $out
host=target/release/clip-edge
musl=target/aarch64-unknown-linux-musl/release/clip-edge
for b in "$host" "$musl"; do
    [[ -x $b ]] || { echo "boards: missing $b (run \`just build\` and \`just cross\`)" >&2; exit 1; }
done

# `key = "value"` or `key = value` from a profile's top level.
field() { sed -n "s/^$2 *= *\"\{0,1\}\([^\"#]*\)\"\{0,1\}.*/\1/p" "$1" | head -1 | tr -d ' '; }

run_args=(run --bundle "$bundle" --source "dir:$images" --json --top-k 3 --stable 1)
"$host" "${run_args[@]}" 2>/dev/null | grep '"type":"frame"' > $out/host.jsonl

fail=0
for profile in boards/*.toml; do
    name=$(basename "$profile" .toml)
    target=$(field "$profile" target)
    cpu=$(field "$profile" cpu)
    kernel=$(field "$profile" int8_kernel)
    if [[ $target != aarch64-* ]]; then
        echo "boards: $name: target $target is not aarch64; skipped"
        continue
    fi
    qcpu=$cpu
    [[ $cpu == cortex-a78ae ]] && qcpu=neoverse-n1
    qemu=(qemu-aarch64 -cpu "$qcpu")
    want=arm64simd_mmm_i32_8x8
    [[ $kernel == sdot ]] && want=arm64simd_mmm_i32_8x8_dot
    [[ $kernel == sadalp ]] && want=arm64simd_mmm_i32_4x4_sadalp
    kernels=$("${qemu[@]}" "$musl" --board "$name" bench --bundle "$bundle" --frames 1 --json 2>$out/$name.log |
        python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["kernels"]))') || {
        echo "FAIL: $name: bench under ${qemu[*]} failed (log: $out/$name.log)"; fail=1; continue; }
    # The exact kernel, not a prefix: the SMLAL name is a prefix of the SDOT one.
    if [[ " $kernels " != *" $want "* ]]; then
        echo "FAIL: $name: profile says int8_kernel = $kernel ($want) but -cpu $qcpu ran: $kernels"
        fail=1
    fi
    "${qemu[@]}" "$musl" --board "$name" "${run_args[@]}" 2>>$out/$name.log |
        grep '"type":"frame"' > $out/$name.jsonl || true
    if tests/qemu/compare.py "$name" $out/host.jsonl $out/$name.jsonl --image-key source \
        --score-tol "$SCORE_TOL" --prob-tol "$PROB_TOL" --flip-tol "$FLIP_TOL" --max-flipped "$MAX_FLIPPED"
    then
        echo "boards: $name (-cpu $qcpu, $kernel): ok, kernels: $kernels"
    else
        echo "FAIL: $name: run under -cpu $qcpu differs from the host (log: $out/$name.log)"
        fail=1
    fi
done
if [[ $fail != 0 ]]; then
    echo "boards: FAILED" >&2
    exit 1
fi
echo "boards: every profile's CPU runs its int8 kernel and agrees with the host"
