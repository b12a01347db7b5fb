#!/usr/bin/env bash
# int8 on a ViT-B/32-sized image encoder with and without the outlier channels of a
# trained model, with and without smoothing: embedding cosine to fp32 on the shapes
# eval images (quantize/README.md, "Outlier channels").
#
#   models/bench_outliers.sh [WORKDIR]      (default /tmp/clip-edge-outliers)
#
# Exports the random HF ViT-B/32 twice (plain, and with 4 outlier channels per
# LayerNorm: models/export/outliers.py), quantizes each (dynamic) without smoothing,
# with smoothing without calibration images, and with smoothing calibrated on 32
# of the eval images, plus ONNX Runtime's quantize_dynamic for comparison, and
# evaluates each on all 150 eval images. Needs models/requirements.txt and
# `cargo build --release -p clip-quantize`. About 6 minutes and 3 GB of RAM on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/clip-edge-outliers}
q=$root/target/release/clip-quantize
images=$root/models/shapes/eval
mkdir -p "$work"
[[ -x $q ]] || { echo "bench_outliers: build clip-quantize first (cargo build --release -p clip-quantize)" >&2; exit 1; }

for kind in plain outliers; do
    if [[ ! -f $work/$kind/image_encoder.onnx ]]; then
        extra=()
        [[ $kind == outliers ]] && extra=(--outliers 4)
        python3 "$root/models/export/export_clip.py" --hf --random vit-b32 --image-only \
            "${extra[@]}" --out "$work/$kind" >/dev/null
    fi
done

cosine() { # fp32 int8
    "$q" eval --fp32 "$1" --int8 "$2" --images "$images" --json |
        python3 -c 'import json,sys; e=json.load(sys.stdin); print("%.5f / %.5f" % (e["cosine_mean"], e["cosine_min"]))'
}

printf '| model | %s | %s | %s | %s |\n' "no smoothing" "smoothing, no calibration (ranges from 2 pseudo-random images)" \
    "smoothing, calibrated (32 images)" "ONNX Runtime quantize_dynamic"
printf '| --- | --- | --- | --- | --- |\n'
for kind in plain outliers; do
    src=$work/$kind/image_encoder.onnx
    row="| $kind"
    for variant in off free calibrated; do
        case $variant in
            off) args=(--no-smooth) ;;
            free) args=() ;;
            calibrated) args=(--calibration "$images" --max-images 32) ;;
        esac
        out=$work/$kind-$variant.onnx
        "$q" quantize --model "$src" --out "$out" --report "$work/$kind-$variant.json" "${args[@]}" 2>/dev/null
        row+=" | $(cosine "$src" "$out")"
    done
    python3 -c "
from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic('$src', '$work/$kind-ort.onnx', weight_type=QuantType.QInt8)" 2>/dev/null
    row+=" | $(cosine "$src" "$work/$kind-ort.onnx") |"
    echo "$row"
done
