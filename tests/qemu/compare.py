#!/usr/bin/env python3
"""Compare `clip-edge classify --json` output of an ARM build (under QEMU) to the host's.

usage: compare.py NAME HOST.jsonl GUEST.jsonl [--score-tol T] [--prob-tol P]
                  [--flip-tol F --max-flipped FRACTION] [--image-key KEY]

Each line is a JSON object with the image's path under KEY (`image` for
`classify --json`, `source` for the frames of `run --json`) and its `top` list.

Per image (same order, same paths): the same labels, in the same rank order (a swap is
accepted only between labels whose host scores differ by less than the score tolerance;
with more labels than --top-k, a label may fall off the end only by such a near-tie),
every score (cosine) within --score-tol and every prob (softmax of 100 x cosine, so
~25x more sensitive) within --prob-tol. Prints the max differences; exits 1 on any
failure, naming it.

Int8 bundles (--flip-tol, --max-flipped): a dynamically quantized model rounds its
activations to int8 at run time, and a last-bit difference in an fp32 value (x86 and
ARM fp32 kernels differ there: fp32 bundles agree to ~1e-6, not exactly) can move one
value across a rounding boundary. Most images then agree as closely as fp32 ones; a
few differ by up to ~1e-2 in score (boards/README.md#int8-on-arm-vs-the-host). Such a
"flipped" image passes if it has the host's top-1 label, every score within
--flip-tol, ranks swapped only between labels within --flip-tol of each other; at most
--max-flipped of the images may be flipped. A broken int8 kernel moves every image.
"""
import argparse
import json
import sys


def load(path, image_key):
    """The results of one run, each with its image's path under `image`."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"image": r[image_key], "top": r["top"]} for r in rows]


def compare_image(name, h, g, score_tol, prob_tol):
    """The differences between one image's host and guest results beyond the tolerances,
    with the image's max score and prob differences."""
    img = h["image"]
    errors = []
    hl = [t["label"] for t in h["top"]]
    gl = [t["label"] for t in g["top"]]
    hs = {t["label"]: t for t in h["top"]}
    gs = {t["label"]: t for t in g["top"]}
    # With more labels than --top-k, a label may drop out of one list only by a
    # near-tie with the other list's last score.
    for only, mine, other in ((set(hl) - set(gl), hs, g["top"]), (set(gl) - set(hl), gs, h["top"])):
        for lab in only:
            if not other or abs(mine[lab]["score"] - other[-1]["score"]) >= score_tol:
                errors.append(f"{img}: labels differ: host {hl} guest {gl}")
    common_h = [x for x in hl if x in gs]
    common_g = [x for x in gl if x in hs]
    for i, (x, y) in enumerate(zip(common_h, common_g)):
        if x != y and abs(hs[x]["score"] - hs[y]["score"]) >= score_tol:
            errors.append(f"{img}: rank {i + 1} is {y!r} on {name}, {x!r} on host")
    max_ds = max_dp = 0.0
    for lab in common_h:
        ds = abs(hs[lab]["score"] - gs[lab]["score"])
        dp = abs(hs[lab]["prob"] - gs[lab]["prob"])
        max_ds, max_dp = max(max_ds, ds), max(max_dp, dp)
        if ds > score_tol:
            errors.append(f"{img}: {lab!r} score {gs[lab]['score']} vs host {hs[lab]['score']} (|d|={ds:.3g})")
        if dp > prob_tol:
            errors.append(f"{img}: {lab!r} prob {gs[lab]['prob']} vs host {hs[lab]['prob']} (|d|={dp:.3g})")
    return errors, max_ds, max_dp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("host")
    ap.add_argument("guest")
    ap.add_argument("--score-tol", type=float, default=1e-4)
    ap.add_argument("--prob-tol", type=float, default=1e-3)
    ap.add_argument("--flip-tol", type=float, default=0.0,
                    help="int8: score tolerance of a flipped image (0: no image may flip)")
    ap.add_argument("--max-flipped", type=float, default=0.0,
                    help="int8: the largest fraction of images that may be flipped")
    ap.add_argument("--image-key", default="image",
                    help="the field naming the image (`source` for `run --json` frames)")
    a = ap.parse_args()
    host, guest = load(a.host, a.image_key), load(a.guest, a.image_key)
    errors = []
    if len(host) != len(guest) or not host:
        errors.append(f"{len(host)} host results, {len(guest)} guest results")
    max_ds = max_dp = 0.0
    flipped = []
    for h, g in zip(host, guest):
        img = h["image"]
        if g["image"] != img:
            errors.append(f"image order differs: {img} vs {g['image']}")
            continue
        strict, ds, dp = compare_image(a.name, h, g, a.score_tol, a.prob_tol)
        max_ds, max_dp = max(max_ds, ds), max(max_dp, dp)
        if not strict:
            continue
        if a.flip_tol > 0:
            loose, _, _ = compare_image(a.name, h, g, a.flip_tol, float("inf"))
            if h["top"] and g["top"] and h["top"][0]["label"] != g["top"][0]["label"]:
                loose.append(f"{img}: top-1 is {g['top'][0]['label']!r} on {a.name}, "
                             f"{h['top'][0]['label']!r} on host")
            if not loose:
                flipped.append((img, ds))
                continue
            strict = loose
        errors.extend(strict)
    if len(flipped) > a.max_flipped * len(host):
        errors.append(f"{len(flipped)} of {len(host)} images flipped (int8 rounding), "
                      f"more than {a.max_flipped:g} of them: "
                      + ", ".join(f"{img} (|d score| {d:.3g})" for img, d in flipped))
    status = "FAIL" if errors else "ok"
    flips = f", {len(flipped)} flipped (int8 rounding, tol {a.flip_tol:g})" if a.flip_tol > 0 else ""
    print(f"{status}: {a.name}: {len(host)} images, max |d score| = {max_ds:.3g} (tol {a.score_tol:g}), "
          f"max |d prob| = {max_dp:.3g} (tol {a.prob_tol:g}){flips}")
    for img, d in flipped:
        print(f"      flipped: {img}: max |d score| = {d:.3g}")
    for e in errors:
        print(f"  {a.name}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
