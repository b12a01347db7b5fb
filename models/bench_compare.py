#!/usr/bin/env python3
"""Side-by-side figures: clip-edge (tract) and ONNX Runtime on the same models.

    python models/bench_compare.py [--threads 1 2] [--frames 20] [--rounds 3] \\
        NAME=BUNDLE_DIR:MODEL.onnx [NAME=BUNDLE_DIR:MODEL.onnx ...]

For each NAME, `clip-edge --threads T bench --bundle BUNDLE_DIR --json` times the
bundle's model in tract and `models/bench_ort.py` times MODEL.onnx (the ONNX file the
bundle was made from) in ONNX Runtime, each in its own process, interleaved over
--rounds rounds so that a busy machine slows both alike; the table shows each
figure's median over the rounds. Prints a Markdown table (README, "Speed"), or with
--json one object per (model, threads).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd: list) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def tract(bin_: str, bundle: str, threads: int, frames: int) -> dict:
    r = run_json([bin_, "--threads", str(threads), "bench", "--bundle", bundle,
                  "--frames", str(frames), "--json"])
    return {"load_ms": r["load_ms"], "first_result_ms": r["first_result_ms"],
            "encode_ms": r["encode_ms"]["p50"], "peak_rss_mb": r["peak_rss_mb"]}


def ort(model: str, threads: int, frames: int) -> dict:
    r = run_json([sys.executable, os.path.join(ROOT, "models", "bench_ort.py"), "--threads",
                  str(threads), "--frames", str(frames), "--json", model])
    return {"load_ms": r["load_ms"], "encode_ms": r["encode_ms"]["p50"],
            "peak_rss_mb": r["peak_rss_mb"]}


def median(rows: list, key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip-edge", default=os.path.join(ROOT, "target", "release", "clip-edge"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("models", nargs="+", metavar="NAME=BUNDLE_DIR:MODEL.onnx")
    a = ap.parse_args()
    models = []
    for spec in a.models:
        name, _, rest = spec.partition("=")
        bundle, _, onnx = rest.partition(":")
        if not (name and bundle and onnx):
            sys.exit(f"bad model spec {spec!r}: expected NAME=BUNDLE_DIR:MODEL.onnx")
        for path in (bundle, onnx):
            if not os.path.exists(path):
                sys.exit(f"{path}: not found")
        models.append((name, bundle, onnx))

    results = {(n, t): {"tract": [], "ort": []} for n, _, _ in models for t in a.threads}
    for rnd in range(a.rounds):
        for t in a.threads:
            for name, bundle, onnx in models:
                print(f"round {rnd + 1}/{a.rounds}: {name}, {t} thread(s)", file=sys.stderr)
                results[(name, t)]["tract"].append(tract(a.clip_edge, bundle, t, a.frames))
                results[(name, t)]["ort"].append(ort(onnx, t, a.frames))

    rows = []
    for (name, t), r in results.items():
        tr, on = r["tract"], r["ort"]
        rows.append({
            "model": name, "threads": t,
            "tract_load_ms": median(tr, "load_ms"),
            "tract_first_result_ms": median(tr, "first_result_ms"),
            "tract_encode_ms": median(tr, "encode_ms"),
            "tract_peak_rss_mb": median(tr, "peak_rss_mb"),
            "ort_load_ms": median(on, "load_ms"),
            "ort_encode_ms": median(on, "encode_ms"),
            "ort_peak_rss_mb": median(on, "peak_rss_mb"),
        })
    if a.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"| model | threads | tract encode ms (p50) | ORT encode ms (p50) | ORT time / tract time "
          f"| tract load / first result ms | ORT load ms | peak RSS MB, tract / ORT (Python) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['tract_encode_ms']:.1f} | {r['ort_encode_ms']:.1f} "
              f"| {r['ort_encode_ms'] / r['tract_encode_ms']:.2f} "
              f"| {r['tract_load_ms']:.0f} / {r['tract_first_result_ms']:.0f} | {r['ort_load_ms']:.0f} "
              f"| {r['tract_peak_rss_mb']:.0f} / {r['ort_peak_rss_mb']:.0f} |")
    print(f"\n{a.rounds} rounds, {a.frames} frames each; medians.")


if __name__ == "__main__":
    main()
