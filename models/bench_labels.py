#!/usr/bin/env python3
"""Time `clip-quantize labels` on ImageNet-1k x imagenet80, with ONNX Runtime beside it.

    python models/bench_labels.py --text-model /tmp/b32/text_encoder.onnx [--every 10]
        [--template-every 10] [--threads 2] [--ort-batch 80] [--no-ort] [--no-prefix-cache]
        [--json]

The labels are ImageNet-1k's class names as OpenCLIP ships them
(`open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES`; its two repeated names get a
suffix, as `clip-quantize` refuses duplicates), every `--every`-th of them, each
through OpenAI's 80 templates (every `--template-every`-th of them: all 1,000 labels
through 8 templates is as many prompts as 100 through 80, with as many labels per
template as the whole set). The same prompts go through

- `target/release/clip-quantize labels --threads N` (its own "embedded ... in" line
  gives the embedding time; the rest of the wall time is loading; with
  `--no-prefix-cache`, every prompt runs whole), and
- ONNX Runtime, CPU provider, N intra-op threads, full graph optimisation, batches of
  `--ort-batch` prompts padded to 77 tokens, tokenized by OpenCLIP's tokenizer (the
  one ours is tested against), the table averaged the same way.

Prints prompts per second for both, their ratio, the peak RSS of `clip-quantize`, and
the largest difference between the two label tables. quantize/README.md#label-tables-
at-scale has the figures.
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def imagenet_labels(every: int) -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    seen: dict[str, int] = {}
    labels = []
    for name in IMAGENET_CLASSNAMES:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return labels[::every]


def templates(every: int) -> list[str]:
    lines = (ROOT / "models/templates/imagenet80.txt").read_text().splitlines()
    return lines[::every]


def run_ours(model: Path, labels_txt: Path, templates_txt: Path, out: Path, threads: int,
             prefix_cache: bool) -> dict:
    exe = ROOT / "target/release/clip-quantize"
    cmd = [str(exe), "labels", "--text-model", str(model), "--labels", str(labels_txt),
           "--templates", str(templates_txt), "--threads", str(threads), "--out", str(out)]
    if not prefix_cache:
        cmd.append("--no-prefix-cache")
    t0 = time.perf_counter()
    # Peak RSS from the child's own /proc VmHWM, polled: getrusage's ru_maxrss also
    # counts this (large, torch-importing) process's pages when the child was
    # vforked from it.
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak_kb = 0
        while child.poll() is None:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                peak_kb = max(peak_kb, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            time.sleep(0.1)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        sys.exit(f"clip-quantize failed:\n{stderr}")
    m = re.search(r"embedded (\d+) prompts in ([\d.]+) s .*thread\(s\), (.*)\)", stderr)
    if not m:
        sys.exit(f"no timing line in clip-quantize's output:\n{stderr}")
    prompts, seconds = int(m.group(1)), float(m.group(2))
    return {
        "prompts": prompts,
        "embed_s": seconds,
        "load_s": wall - seconds,
        "prompts_per_s": prompts / seconds,
        "peak_rss_mb": peak_kb / 1024,
        "how": m.group(3),
    }


def run_ort(model: Path, labels: list[str], template_every: int, threads: int,
            batch: int) -> tuple[dict, np.ndarray]:
    import onnxruntime as ort
    import open_clip
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    ours = templates(template_every)
    theirs = OPENAI_IMAGENET_TEMPLATES[::template_every]
    if [t("{}") for t in theirs] != ours:
        sys.exit("models/templates/imagenet80.txt is not OpenCLIP's OPENAI_IMAGENET_TEMPLATES")

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    names = [i.name for i in sess.get_inputs()]
    prompts = [(k, t(label)) for k, label in enumerate(labels) for t in theirs]
    sums = None
    t0 = time.perf_counter()
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        ids = tokenizer([p for _, p in chunk]).numpy().astype(np.int64)
        feed = {"input_ids": ids}
        if "attention_mask" in names:
            feed["attention_mask"] = (np.arange(77)[None, :] <= ids.argmax(-1)[:, None]).astype(np.int64)
        (emb,) = sess.run(None, feed)[:1]
        emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
        if sums is None:
            sums = np.zeros((len(labels), emb.shape[1]), np.float64)
        for (k, _), e in zip(chunk, emb):
            sums[k] += e
    seconds = time.perf_counter() - t0
    table = sums / np.linalg.norm(sums, axis=-1, keepdims=True)
    return {
        "prompts": len(prompts),
        "embed_s": seconds,
        "load_s": load_s,
        "prompts_per_s": len(prompts) / seconds,
        "batch": batch,
    }, table.astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--text-model", required=True, type=Path)
    p.add_argument("--every", type=int, default=1, help="take every N-th class (default 1: all 1000)")
    p.add_argument("--template-every", type=int, default=1,
                   help="take every N-th template (default 1: all 80)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ort-batch", type=int, default=80)
    p.add_argument("--no-ort", action="store_true", help="time clip-quantize only")
    p.add_argument("--no-prefix-cache", action="store_true",
                   help="run every prompt whole in clip-quantize (no cached template prefixes)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    labels = imagenet_labels(a.every)
    with tempfile.TemporaryDirectory() as tmp:
        labels_txt = Path(tmp) / "labels.txt"
        labels_txt.write_text("\n".join(labels) + "\n")
        out = Path(tmp) / "labels.safetensors"
        templates_txt = Path(tmp) / "templates.txt"
        templates_txt.write_text("\n".join(templates(a.template_every)) + "\n")
        ours = run_ours(a.text_model, labels_txt, templates_txt, out, a.threads,
                        not a.no_prefix_cache)
        from safetensors.numpy import load_file
        our_table = load_file(str(out))["embeddings"]
    result = {"labels": len(labels), "threads": a.threads, "clip_quantize": ours}
    if not a.no_ort:
        ort_stats, ort_table = run_ort(a.text_model, labels, a.template_every, a.threads,
                                       a.ort_batch)
        result["onnxruntime"] = ort_stats
        result["speedup_vs_ort"] = ours["prompts_per_s"] / ort_stats["prompts_per_s"]
        result["max_table_difference"] = float(np.abs(our_table - ort_table).max())
    if a.json:
        print(json.dumps(result))
        return
    count = len(templates(a.template_every))
    print(f"{len(labels)} labels x {count} templates = {ours['prompts']} prompts, "
          f"{a.threads} thread(s)")
    print(f"clip-quantize: {ours['embed_s']:.1f} s ({ours['prompts_per_s']:.0f} prompts/s; "
          f"load {ours['load_s']:.1f} s; peak RSS {ours['peak_rss_mb']:.0f} MB; "
          f"{ours['how']})")
    if not a.no_ort:
        o = result["onnxruntime"]
        print(f"onnxruntime:   {o['embed_s']:.1f} s ({o['prompts_per_s']:.0f} prompts/s; load "
              f"{o['load_s']:.1f} s; batches of {o['batch']} at 77 tokens)")
        print(f"clip-quantize / onnxruntime: {result['speedup_vs_ort']:.2f}x the prompts per second; "
              f"label tables differ by at most {result['max_table_difference']:.1e}")


if __name__ == "__main__":
    main()
