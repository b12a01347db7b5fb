#!/usr/bin/env python3
"""Compare `clip-edge classify --json` output of an ARM build (under QEMU) to the host's.

usage: compare.py NAME HOST.jsonl GUEST.jsonl [--score-tol T] [--prob-tol P]

Per image (same order, same paths): the same labels, in the same rank order (a swap is
accepted only between labels whose host scores differ by less than the score tolerance;
with more labels than --top-k, a label may fall off the end only by such a near-tie),
every score (cosine) within --score-tol and every prob (softmax of 100 x cosine, so
~25x more sensitive) within --prob-tol. Prints the max differences; exits 1 on any
failure, naming it.
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("host")
    ap.add_argument("guest")
    ap.add_argument("--score-tol", type=float, default=1e-4)
    ap.add_argument("--prob-tol", type=float, default=1e-3)
    a = ap.parse_args()
    host, guest = load(a.host), load(a.guest)
    errors = []
    if len(host) != len(guest) or not host:
        errors.append(f"{len(host)} host results, {len(guest)} guest results")
    max_ds = max_dp = 0.0
    for h, g in zip(host, guest):
        img = h["image"]
        if g["image"] != img:
            errors.append(f"image order differs: {img} vs {g['image']}")
            continue
        hl = [t["label"] for t in h["top"]]
        gl = [t["label"] for t in g["top"]]
        hs = {t["label"]: t for t in h["top"]}
        gs = {t["label"]: t for t in g["top"]}
        # With more labels than --top-k, a label may drop out of one list only by a
        # near-tie with the other list's last score.
        for only, mine, other in ((set(hl) - set(gl), hs, g["top"]), (set(gl) - set(hl), gs, h["top"])):
            for lab in only:
                if not other or abs(mine[lab]["score"] - other[-1]["score"]) >= a.score_tol:
                    errors.append(f"{img}: labels differ: host {hl} guest {gl}")
        common_h = [x for x in hl if x in gs]
        common_g = [x for x in gl if x in hs]
        for i, (x, y) in enumerate(zip(common_h, common_g)):
            if x != y and abs(hs[x]["score"] - hs[y]["score"]) >= a.score_tol:
                errors.append(f"{img}: rank {i + 1} is {y!r} on {a.name}, {x!r} on host")
        for lab in common_h:
            ds = abs(hs[lab]["score"] - gs[lab]["score"])
            dp = abs(hs[lab]["prob"] - gs[lab]["prob"])
            max_ds, max_dp = max(max_ds, ds), max(max_dp, dp)
            if ds > a.score_tol:
                errors.append(f"{img}: {lab!r} score {gs[lab]['score']} vs host {hs[lab]['score']} (|d|={ds:.3g})")
            if dp > a.prob_tol:
                errors.append(f"{img}: {lab!r} prob {gs[lab]['prob']} vs host {hs[lab]['prob']} (|d|={dp:.3g})")
    status = "FAIL" if errors else "ok"
    print(f"{status}: {a.name}: {len(host)} images, max |d score| = {max_ds:.3g} (tol {a.score_tol:g}), "
          f"max |d prob| = {max_dp:.3g} (tol {a.prob_tol:g})")
    for e in errors:
        print(f"  {a.name}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
