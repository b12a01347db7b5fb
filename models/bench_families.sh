#!/usr/bin/env bash
# The full-size random exports of each family other than CLIP (SigLIP B/16-224, BLIP
# base at 384, MobileCLIP2-S0 at 256), bundled fp32 and int8, with the int8 model's
# embedding cosine to fp32 on the shapes samples and, with INSN=1, QEMU guest
# instructions per frame on cortex-a76 and cortex-a72 (README, "Models other than CLIP").
#
#   models/bench_families.sh [WORKDIR]      (default /tmp/families)
#
# Needs models/requirements.txt, `cargo build --release -p clip-quantize -p clip-edge`
# and, for INSN=1, `just cross aarch64-unknown-linux-musl`. The exports take about 2 GB
# of disk; the instruction counts about 20 minutes on 2 cores (BLIP's 577 tokens at
# 384 are the longest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/families}
q=$root/target/release/clip-quantize
samples=$root/models/shapes/samples
[[ -x $q ]] || { echo "bench_families: build clip-quantize first" >&2; exit 1; }
mkdir -p "$work"

printf '| model | input | fp32 file | int8 file | int8 cosine to fp32 (mean / min) |\n| --- | --- | --- | --- | --- |\n'
for spec in siglip:siglip-b16 blip:blip-base mobileclip:mobileclip2-s0; do
    family=${spec%%:*} name=${spec#*:} dir=$work/${spec#*:}
    [[ -f $dir/image_encoder.onnx ]] ||
        python3 "$root/models/export/export_family.py" --family "$family" --size full --out "$dir" >/dev/null
    # A random label table of the model's dimension: the bundle needs one.
    python3 - "$dir" "$root/models/shapes/labels.txt" <<'PY'
import json, sys, numpy as np
from safetensors.numpy import save_file
d, labels = sys.argv[1], [l.strip() for l in open(sys.argv[2]) if l.strip()]
dim = json.load(open(f"{d}/model.json"))["embed_dim"]
e = np.random.default_rng(0).standard_normal((len(labels), dim)).astype(np.float32)
e /= np.linalg.norm(e, axis=1, keepdims=True)
save_file({"embeddings": e}, f"{d}/labels.safetensors", metadata={
    "format": "clip-edge-labels/1", "labels": json.dumps(labels),
    "templates": json.dumps(["{}"]), "text_model_sha256": "random"})
PY
    "$q" bundle --image-model "$dir/image_encoder.onnx" --labels "$dir/labels.safetensors" --out "$dir/B" 2>/dev/null
    "$q" quantize --model "$dir/image_encoder.onnx" --out "$dir/int8.onnx" >/dev/null 2>&1
    "$q" bundle --image-model "$dir/int8.onnx" --labels "$dir/labels.safetensors" --out "$dir/B8" 2>/dev/null
    cos=$("$q" eval --fp32 "$dir/image_encoder.onnx" --int8 "$dir/int8.onnx" --images "$samples" --json |
        python3 -c 'import json,sys; e=json.load(sys.stdin); print("%.5f / %.5f" % (e["cosine_mean"], e["cosine_min"]))')
    side=$(python3 -c "import json; print(json.load(open('$dir/model.json'))['image_size'])")
    mb() { awk -v s=$(stat -c %s "$1") 'BEGIN { printf "%.1f MB", s / 1e6 }'; }
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$side" "$(mb "$dir/B/model.nnef.tar")" "$(mb "$dir/B8/model.nnef.tar")" "$cos"
done

[[ ${INSN:-0} == 1 ]] || exit 0
printf '\n| model | fp32 A76 | int8 A76 | fp32 A72 | int8 A72 |\n| --- | --- | --- | --- | --- |\n'
for name in siglip-b16 blip-base mobileclip2-s0; do
    row="| $name"
    for cpu in cortex-a76 cortex-a72; do
        for b in B B8; do
            n=$("$root/tests/qemu/insn.sh" $cpu "$work/$name/$b" "$samples/red_triangle.png" 1 1 |
                sed -n 's/.*per frame *= [0-9]* (\(.*\))/\1/p')
            row="$row | $n"
        done
    done
    echo "$row |"
done
