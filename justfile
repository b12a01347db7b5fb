# clip-edge: every recipe a person runs. `just --list` shows them.
# Everything builds in release (tract is too slow in debug) into one target dir.

# Show the recipes.
default:
    @just --list

# Install what the tests need (Debian/Ubuntu, run as root or with sudo).
setup:
    bash tests/setup.sh

# The README's two commands in a minimal Debian chroot with the host's Rust (root; STAGE: setup, demo or all).
fresh-check STAGE="all":
    tests/fresh-check.sh {{STAGE}}

# Classify the bundled sample images with the bundled shapes model.
demo:
    cargo run --release -p clip-edge -- demo

# Build both binaries (host).
build:
    cargo build --release --workspace

# Every test on the host: unit, integration and end-to-end.
test: build
    cargo test --release --workspace
    # The board runtime without tract-onnx (NNEF bundles only; runtime/README.md) is what
    # `cross` builds and `test-qemu` tests on every ARM target: a host run of it would
    # rebuild the whole dependency tree with other features (5 min of CI) to test nothing more.

# Formatting and lints, as CI runs them; the vendored crates are their releases plus third_party/patches.
lint: check-patches
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# Rebuild a shapes model's bundles (fp32 and int8) from its committed exports (after retraining): models/shapes (CLIP) or models/shapes-blip (BLIP).
shapes-bundle DIR="models/shapes": build
    #!/usr/bin/env bash
    set -euo pipefail
    d={{DIR}}
    work=target/$(basename $d)
    mkdir -p $d/bundle $work
    ./target/release/clip-quantize labels --text-model $d/text_encoder.onnx --labels models/shapes/labels.txt --templates photo --out $d/bundle/labels.safetensors
    ./target/release/clip-quantize bundle --image-model $d/image_encoder.onnx --labels $d/bundle/labels.safetensors --out $d/bundle
    ./target/release/clip-quantize quantize --model $d/image_encoder.onnx --out $work/image_encoder.int8.onnx --calibration models/shapes/samples --report $work/int8-report.json
    ./target/release/clip-quantize bundle --image-model $work/image_encoder.int8.onnx --labels $d/bundle/labels.safetensors --out $d/bundle-int8

# ARM targets: static aarch64 (any aarch64 Linux), aarch64 glibc (Pi OS Bookworm,
# JetPack 6), 32-bit Pi OS. Linkers and QEMU runners: .cargo/config.toml.
arm_targets := "aarch64-unknown-linux-musl aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"

# The board builds read NNEF bundles only: no ONNX parser (runtime/README.md, Features).
# BOARD_FEATURES=clip-edge/onnx builds boards that also read `--format onnx` bundles.
board_features := env_var_or_default("BOARD_FEATURES", "")
board_feature_args := "--no-default-features" + if board_features == "" { "" } else { " --features " + board_features }

# Stripped `just cross` binaries (NNEF only) may not grow past these, in MB: about
# 1 MB above their size today (docs/perf.md#binary-size).
size_budget_mb := "aarch64-unknown-linux-musl=18.7 aarch64-unknown-linux-gnu=19.6 armv7-unknown-linux-gnueabihf=16.7"

# Not in CI: needs `cargo install cargo-afl`. An earlier run of the target is continued
# (its totals carry over); findings go to target/fuzz/TARGET/default/{crashes,hangs}.
# Fuzz one target of fuzz/src/lib.rs with AFL++ for EXECS runs or SECONDS; fails on a crash or hang.
fuzz TARGET EXECS="10000000" SECONDS="3600":
    #!/usr/bin/env bash
    set -euo pipefail
    (cd fuzz/afl && CARGO_TARGET_DIR=$PWD/../../target/afl cargo afl build --release)
    seeds=fuzz/corpus/{{TARGET}}
    if [[ "{{TARGET}}" == nnef ]]; then
        seeds=target/fuzz/seeds/nnef
        mkdir -p $seeds && cp fuzz/corpus/nnef/* $seeds/
        CLIP_EDGE_FUZZ_SEEDS_OUT=$PWD/$seeds cargo test --release -p clip-edge-fuzz --test smoke nnef
    fi
    mkdir -p target/fuzz
    AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        cargo afl fuzz -t 3000 -E {{EXECS}} -V {{SECONDS}} -i $seeds -o target/fuzz/{{TARGET}} \
        -- target/afl/release/fuzz_target {{TARGET}} >target/fuzz/{{TARGET}}.log 2>&1 || true
    stats=target/fuzz/{{TARGET}}/default/fuzzer_stats
    grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|stability) ' $stats
    if [[ $(grep -cE '^saved_(crashes|hangs) +: 0$' $stats) != 2 ]]; then
        echo "fuzz {{TARGET}}: crashes or hangs in target/fuzz/{{TARGET}}/default" >&2; exit 1
    fi

# Cross-build clip-edge for the ARM boards, or only TARGETS (needs `just setup`); prints binary sizes.
cross *TARGETS:
    #!/usr/bin/env bash
    set -euo pipefail
    targets="{{ if TARGETS == "" { arm_targets } else { TARGETS } }}"
    for t in $targets; do
        s=$SECONDS
        cargo build --release -p clip-edge --bin clip-edge {{board_feature_args}} --target $t
        echo "cross: $t built in $((SECONDS - s)) s"
    done
    for t in $targets; do
        b=${CARGO_TARGET_DIR:-target}/$t/release/clip-edge
        case $t in armv7*) strip=arm-linux-gnueabihf-strip ;; *) strip=aarch64-linux-gnu-strip ;; esac
        $strip -o $b.stripped $b && stripped=$(stat -c %s $b.stripped) && rm $b.stripped
        kind=$(file -b $b | grep -o 'statically linked\|dynamically linked')
        awk -v t=$t -v s=$(stat -c %s $b) -v x=$stripped -v k="$kind" \
            'BEGIN { printf "%-30s %5.1f MB, %5.1f MB stripped, %s\n", t, s / 1e6, x / 1e6, k }'
        # The size budget guards against code bloat coming back (a generic instantiated
        # per kernel or per type); it holds for the NNEF-only build.
        if [[ -z "{{board_features}}" ]]; then
            budget=$(echo "{{size_budget_mb}}" | tr ' ' '\n' | sed -n "s/^$t=//p")
            if [[ -n $budget ]] && awk -v x=$stripped -v b=$budget 'BEGIN { exit !(x / 1e6 > b) }'; then
                echo "cross: $t stripped is over its budget of $budget MB (docs/perf.md#binary-size; just crate-sizes $t)" >&2
                exit 1
            fi
        fi
    done

# The binary to put on a board, for the ARM boards or only TARGETS: profile `board` (LTO, panic=abort, stripped; docs/perf.md#binary-size).
board *TARGETS:
    #!/usr/bin/env bash
    set -euo pipefail
    targets="{{ if TARGETS == "" { arm_targets } else { TARGETS } }}"
    for t in $targets; do
        s=$SECONDS
        # No unwind tables: with panic=abort nothing unwinds, and a stripped binary's
        # backtrace would name nothing anyway (docs/perf.md#binary-size).
        cargo build --profile board -p clip-edge --bin clip-edge {{board_feature_args}} --target $t \
            --config "target.$t.rustflags = ['-C', 'force-unwind-tables=no']"
        b=${CARGO_TARGET_DIR:-target}/$t/board/clip-edge
        echo "board: $t built in $((SECONDS - s)) s: $b, $(stat -c %s $b | awk '{ printf "%.1f MB", $1 / 1e6 }')"
    done

# What each crate costs in TARGET's `just cross` binary (boards/crate_sizes.py; docs/perf.md#binary-size).
crate-sizes TARGET="aarch64-unknown-linux-musl":
    #!/usr/bin/env bash
    set -euo pipefail
    case {{TARGET}} in armv7*) nm=arm-linux-gnueabihf-nm ;; aarch64*) nm=aarch64-linux-gnu-nm ;; *) nm=nm ;; esac
    boards/crate_sizes.py ${CARGO_TARGET_DIR:-target}/{{TARGET}}/release/clip-edge --nm $nm

# Each vendored crate is its crates.io release plus its patch series, and Cargo.lock uses it (third_party/README.md).
check-patches:
    third_party/patches.sh check

# Tests of the patched vendored tract crates (third_party/README.md): one workspace
# (third_party/Cargo.toml), its dependencies built once per target into target/third_party.
test-vendored:
    #!/usr/bin/env bash
    set -euo pipefail
    export CARGO_TARGET_DIR=$PWD/target/third_party
    cd third_party
    s=$SECONDS
    # The crates under test at opt-level 1: their test builds are most of this recipe's
    # time (tract-linalg's alone about 3 min a target at 3, 18% less at 1), and their
    # tests run in seconds either way; the kernels under test are assembly.
    cfg=(--release --lib --features tract-linalg/multithread-mm
        --config 'profile.release.package.tract-linalg.opt-level=1'
        --config 'profile.release.package.tract-core.opt-level=1'
        --config 'profile.release.package.tract-data.opt-level=1')
    a76=(env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER="qemu-aarch64 -cpu cortex-a76")
    a72=(env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER="qemu-aarch64 -cpu cortex-a72")
    # Host (x86-64): tract-linalg's i8 packing (patches 0001, 0005, 0013: i8k4, i8k16),
    # x86-64 kernels (0006, 0007), the rayon dispatch with the thread pool built in as the
    # runtime has it (0009: chunk grids, thresholds, every row once), by-scalar steps over
    # runs of blocks (0012: multi_block); tract-data's f32 → int casts (0001) and broadcasts (0003).
    cargo test "${cfg[@]}" -p tract-linalg -p tract-data -- \
        i8k4 i8k16 x86_64 blocked_walk par_chunks chain_tests multi_block unicast by_scalar f32_to_int broadcast_to_shape
    # aarch64 (cortex-a76, dot product): tract-core's causal mask (0003), depthwise
    # convolutions channel-last and channel multipliers (0004: the plan is asserted where
    # the channel-last kernel exists), exact GELU in one NEON pass (0005), an i32 cast and
    # its per-channel dequantisation in one pass (0006); tract-data's NEON casts (0001);
    # tract-linalg's SDOT packing and kernel, depthwise kernels, element-wise steps.
    all=(-p tract-core -p tract-data -p tract-linalg --target aarch64-unknown-linux-musl)
    "${a76[@]}" cargo test "${cfg[@]}" "${all[@]}" -- \
        causal_mask_condition depth_wise gelu_exact dequant f32_to_int i8k4 i32_8x8 depthwise multi_block unicast by_scalar
    # cortex-a72 (no dot product): a constant operand without -128 admits the SMULL/SADALP
    # kernel and one with -128 keeps it out (tract-core 0007); the kernel itself (linalg 0013).
    "${a72[@]}" cargo test "${cfg[@]}" "${all[@]}" -- operand_without_i8_min sadalp i8k16
    # armv7: the VMLAL kernel (linalg 0008) and the VPADAL one (0013).
    cargo test "${cfg[@]}" -p tract-linalg --target armv7-unknown-linux-gnueabihf -- i32_8x4 sadalp i8k16
    echo "test-vendored: $((SECONDS - s)) s"

# ARM builds under QEMU: the board crates' tests per target, classify vs the host, each board profile at its CPU (kernel family, `run` vs the host), the vendored tract patches' tests.
test-qemu BUNDLE="" *IMAGES: build cross test-vendored
    #!/usr/bin/env bash
    set -euo pipefail
    # The board's crates (runtime/): the workstation's clip-quantize does not cross-build.
    board_crates="-p clip-edge -p clip-edge-core -p clip-edge-device -p clip-edge-bundle"
    for t in {{arm_targets}}; do
        s=$SECONDS
        cargo test --release $board_crates {{board_feature_args}} --target $t
        echo "test-qemu: $t tests in $((SECONDS - s)) s"
    done
    if [[ -n "{{BUNDLE}}" ]]; then
        tests/qemu/e2e.sh {{BUNDLE}} {{IMAGES}}
    else
        tests/qemu/e2e.sh models/shapes/bundle
        # int8: more images, as a few may flip a rounding (boards/README.md#int8-on-arm-vs-the-host).
        EXPECT_INT8=1 tests/qemu/e2e.sh models/shapes/bundle-int8 models/shapes/samples/*.png models/shapes/eval/*/000.png
        # The second family trained on shapes: BLIP (384x384 squash, its own WordPiece labels).
        tests/qemu/e2e.sh models/shapes-blip/bundle
        EXPECT_INT8=1 tests/qemu/e2e.sh models/shapes-blip/bundle-int8 models/shapes/samples/*.png models/shapes/eval/*/000.png
        # A convolutional tower: tiny MobileCLIP2 layout (random weights; label rows are its
        # reference image embeddings), whose depthwise and channel-multiplier convolutions run
        # channel-last on aarch64 (third_party tract-core 0004), fp32 and int8.
        mc=target/qemu-e2e/mobileclip-tiny
        rm -rf $mc && mkdir -p $mc
        target/release/clip-quantize bundle --image-model models/fixtures/mobileclip-tiny/image_encoder.onnx \
            --labels models/fixtures/mobileclip-tiny/labels.safetensors --out $mc/bundle
        target/release/clip-quantize quantize --model models/fixtures/mobileclip-tiny/image_encoder.onnx --out $mc/int8.onnx
        target/release/clip-quantize bundle --image-model $mc/int8.onnx \
            --labels models/fixtures/mobileclip-tiny/labels.safetensors --out $mc/bundle-int8
        tests/qemu/e2e.sh $mc/bundle runtime/core/tests/fixtures/preprocess/*.png
        EXPECT_INT8=1 tests/qemu/e2e.sh $mc/bundle-int8 runtime/core/tests/fixtures/preprocess/*.png
        # A hub's onnxruntime int8 (uint8 activations with run-time zero points), as bundled.
        hub=target/qemu-e2e/hub-int8
        mkdir -p $hub
        target/release/clip-quantize labels --text-model models/fixtures/hub-split/text_model.onnx \
            --labels models/shapes/labels.txt --out $hub/labels.safetensors
        target/release/clip-quantize bundle --image-model models/fixtures/hub-split/vision_model_quantized.onnx \
            --labels $hub/labels.safetensors --out $hub/bundle
        EXPECT_INT8=1 tests/qemu/e2e.sh $hub/bundle models/shapes/samples/*.png
        tests/qemu/boards.sh
        # Safe updates: `clip-edge bundle install|rollback` on each ARM build.
        tests/qemu/bundle_store.sh
        # A whole ARM machine: Debian's kernel, the vivid camera, the PL061 GPIO chip.
        tests/system/run.sh
    fi

# Debian's arm64 kernel and an initramfs made here; in `test-qemu` too (boards/README.md).
# Boot a whole ARM machine under QEMU: camera, unplug, GPIO and labels through real drivers.
test-system *CPUS: build (cross "aarch64-unknown-linux-musl")
    tests/system/run.sh {{CPUS}}

# Guest instructions per frame and for loading under QEMU (CPU: cortex-a72, cortex-a76, cortex-a15).
qemu-insn CPU BUNDLE IMAGE N="1" K="4":
    tests/qemu/insn.sh {{CPU}} {{BUNDLE}} {{IMAGE}} {{N}} {{K}}

# The same frame's guest instructions by function of the ARM binary, largest first (where a frame goes).
qemu-insn-profile CPU BUNDLE IMAGE K="2" TOP="40":
    tests/qemu/insn-profile.sh {{CPU}} {{BUNDLE}} {{IMAGE}} {{K}} {{TOP}}

# Install clip-edge as a systemd service on HOST (ssh, sudo) for BOARD: builds its target's board binary (`just board`), runs boards/deploy.sh.
deploy HOST BOARD="pi4" BUNDLE="models/shapes/bundle-int8":
    #!/usr/bin/env bash
    set -euo pipefail
    target=$(boards/deploy.sh --target {{BOARD}})
    just board $target
    CLIP_EDGE_BIN=${CARGO_TARGET_DIR:-target}/$target/board/clip-edge boards/deploy.sh {{HOST}} {{BOARD}} {{BUNDLE}}
