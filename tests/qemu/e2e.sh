#!/usr/bin/env bash
# End to end under QEMU: the ARM builds of `clip-edge classify --json` against the host
# build, on one bundle and a set of images.
#
#   tests/qemu/e2e.sh [BUNDLE_DIR [IMAGE...]]
#
# Defaults: models/shapes/bundle and models/shapes/samples/*.png when the bundle is
# there; otherwise a bundle built from the hf-tiny fixtures (random weights) into
# target/qemu-e2e/, and the shapes samples (or the preprocess fixtures) as images.
# Needs the host build (`just build`) and the cross builds (`just cross`).
#
# Runs: static aarch64 (musl) at -cpu cortex-a72 (SMLAL/no-dotprod ISA) and cortex-a76
# (dotprod ISA), aarch64 gnu at cortex-a72 if built, armv7 at -cpu cortex-a15 with
# TRACT_CPU_ARM32_NEON=true. Each must give the host's labels in the host's order, with
# scores within SCORE_TOL (default 1e-4) and probs within PROB_TOL (default 1e-3), and
# must report the expected tract ISA (RUST_LOG=tract_linalg=debug: "ISA: aarch64",
# "ISA: aarch64,dotprod", "ISA: arm,neon"...). Prints the kernels that ran (QEMU -d in_asm
# mapped through nm: tests/qemu/kernels.py) unless KERNELS=0; if an int8 arm64 kernel
# ran, it must be the SDOT one (`*_i32_8x8_dot`) exactly when the ISA has dotprod.
# With EXPECT_INT8=1 an int8 kernel family must have run (arm64 `*_i32_8x8*` or the
# SADALP `*_i32_4x4_sadalp`, armv7 `armv7neon_mmm_i32_*`), and up to MAX_FLIPPED (default 1/3) of the images may differ
# from the host by an int8 rounding flip, within FLIP_TOL (default 2e-2) and with the
# host's top-1 (tests/qemu/compare.py; boards/README.md#int8-on-arm-vs-the-host). Fails loudly on any mismatch. RUST_BACKTRACE is unset for the runs (with it, tract's
# discarded load-time errors capture backtraces: ~1.5 G guest instructions on musl).
set -euo pipefail
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=target/qemu-e2e
mkdir -p "$out"
SCORE_TOL=${SCORE_TOL:-1e-4}
PROB_TOL=${PROB_TOL:-1e-3}
if [[ ${EXPECT_INT8:-0} == 1 ]]; then
    FLIP_TOL=${FLIP_TOL:-2e-2}
    MAX_FLIPPED=${MAX_FLIPPED:-0.34}
fi
FLIP_TOL=${FLIP_TOL:-0}
MAX_FLIPPED=${MAX_FLIPPED:-0}
KERNELS=${KERNELS:-1}

host=target/release/clip-edge
musl=target/aarch64-unknown-linux-musl/release/clip-edge
gnu=target/aarch64-unknown-linux-gnu/release/clip-edge
armv7=target/armv7-unknown-linux-gnueabihf/release/clip-edge
for b in "$host" "$musl" "$armv7"; do
    [[ -x $b ]] || { echo "e2e: missing $b (run \`just build\` and \`just cross\`)" >&2; exit 1; }
done

bundle=${1:-}
[[ $# -gt 0 ]] && shift
images=("$@")
if [[ -z $bundle ]]; then
    if [[ -f models/shapes/bundle/bundle.toml ]]; then
        bundle=models/shapes/bundle
    else
        bundle=$out/hf-tiny-bundle
        if [[ ! -f $bundle/bundle.toml ]]; then
            echo "e2e: building the hf-tiny fixture bundle in $bundle"
            labels=models/shapes/labels.txt
            if [[ ! -f $labels ]]; then
                labels=$out/labels.txt
                printf '%s\n' circle square triangle star cross > "$labels"
            fi
            fx=models/fixtures/hf-tiny
            target/release/clip-quantize labels --text-model $fx/text_encoder.onnx \
                --labels "$labels" --templates photo --out $out/labels.safetensors
            target/release/clip-quantize bundle --image-model $fx/image_encoder.onnx \
                --labels $out/labels.safetensors --out "$bundle"
        fi
    fi
fi
if [[ ${#images[@]} -eq 0 ]]; then
    shopt -s nullglob
    images=(models/shapes/samples/*.png)
    [[ ${#images[@]} -gt 0 ]] || images=(runtime/core/tests/fixtures/preprocess/*.png runtime/core/tests/fixtures/preprocess/*.jpg)
    shopt -u nullglob
fi
echo "e2e: bundle $bundle, ${#images[@]} images, score tol $SCORE_TOL, prob tol $PROB_TOL"

args=(classify --bundle "$bundle" --json --top-k 16 "${images[@]}")
"$host" "${args[@]}" > $out/host.jsonl

fail=0
# run NAME EXPECTED_ISA BINARY QEMU-COMMAND...: the QEMU command (env assignments first,
# via `env`) gets the binary and the classify arguments appended.
run() {
    local name=$1 isa=$2 bin=$3; shift 3
    local t0=$SECONDS
    if ! RUST_LOG=warn,tract_linalg=debug "$@" "$bin" "${args[@]}" > $out/$name.jsonl 2> $out/$name.log; then
        echo "FAIL: $name: non-zero exit (log: $out/$name.log)"; tail -5 $out/$name.log; fail=1; return
    fi
    local got
    got=$(sed -n 's/.*tract_linalg::isa\] ISA: //p' $out/$name.log | head -1)
    if [[ $got != "$isa" ]]; then
        echo "FAIL: $name: tract ISA is '$got', expected '$isa'"; fail=1
    fi
    python3 tests/qemu/compare.py "$name" $out/host.jsonl $out/$name.jsonl \
        --score-tol "$SCORE_TOL" --prob-tol "$PROB_TOL" \
        --flip-tol "$FLIP_TOL" --max-flipped "$MAX_FLIPPED" || fail=1
    echo "      ISA: $got; $((SECONDS - t0)) s for ${#images[@]} images"
    if [[ $KERNELS != 0 ]]; then
        "$@" -d in_asm -D $out/$name.in_asm "$bin" classify --bundle "$bundle" --json "${images[0]}" \
            > /dev/null 2>&1 || true
        python3 tests/qemu/kernels.py "$bin" $out/$name.in_asm > $out/$name.kernels || true
        sed 's/^/      kernel: /' $out/$name.kernels
        rm -f $out/$name.in_asm
        # EXPECT_INT8=1: the bundle is int8, so tract's integer kernels must have run.
        if [[ ${EXPECT_INT8:-0} == 1 ]]; then
            local family='mmm_i32_(8x8|4x4_sadalp)'
            [[ $name == armv7* ]] && family='armv7neon_mmm_i32'
            if ! grep -qE "$family" $out/$name.kernels; then
                echo "FAIL: $name: no int8 kernel ($family) ran"; fail=1
            fi
        fi
        # An int8 bundle must use SDOT exactly when the CPU has it.
        if grep -qE 'arm64simd_mmm_i32_(8x8|4x4_sadalp)' $out/$name.kernels; then
            local dot=no want=no
            grep -q 'mmm_i32_8x8_dot' $out/$name.kernels && dot=yes
            [[ $isa == *dotprod* ]] && want=yes
            if [[ $dot != "$want" ]]; then
                echo "FAIL: $name: int8 SDOT kernel used: $dot, expected: $want"; fail=1
            fi
        fi
    fi
}

run aarch64-musl-cortex-a72 aarch64 "$musl" qemu-aarch64 -cpu cortex-a72
run aarch64-musl-cortex-a76 aarch64,dotprod "$musl" qemu-aarch64 -cpu cortex-a76
if [[ -x $gnu ]]; then
    run aarch64-gnu-cortex-a72 aarch64 "$gnu" qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu
fi
run armv7-cortex-a15 "${ARMV7_ISA:-arm,neon}" "$armv7" \
    env TRACT_CPU_ARM32_NEON=true qemu-arm -cpu cortex-a15 -L /usr/arm-linux-gnueabihf

if [[ $fail != 0 ]]; then
    echo "e2e: FAILED (outputs and logs in $out/)" >&2
    exit 1
fi
echo "e2e: all ARM builds agree with the host"
