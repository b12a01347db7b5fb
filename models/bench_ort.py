#!/usr/bin/env python3
"""Time ONNX Runtime on image encoders, for side-by-side figures with `clip-edge bench`.

    python models/bench_ort.py [--threads 1] [--frames 20] MODEL.onnx [MODEL.onnx ...]

Runs each model on one [1,3,224,224] input (batch 1) with ONNX Runtime's CPU provider,
`--threads` intra-op threads, full graph optimisation; prints load time and the
p50/p90 of the per-frame latency and the process's peak RSS, and with --json one
JSON object per model. models/bench_compare.py runs it beside `clip-edge bench`.
"""
import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort


def bench(path: str, threads: int, frames: int) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    sess.run(None, {name: x})
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {
        "model": path,
        "threads": threads,
        "load_ms": load_ms,
        "encode_ms": {"p50": times[len(times) // 2], "p90": times[int((len(times) - 1) * 0.9)]},
        # Peak RSS of this Python process so far (interpreter and numpy included).
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    for m in a.models:
        r = bench(m, a.threads, a.frames)
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{m}: load {r['load_ms']:.0f} ms, encode p50 {r['encode_ms']['p50']:.2f} ms, "
                  f"p90 {r['encode_ms']['p90']:.2f} ms ({a.threads} thread(s))")


if __name__ == "__main__":
    main()
