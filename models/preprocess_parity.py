#!/usr/bin/env python3
"""Parity between clip-edge preprocessing and Hugging Face CLIPImageProcessor.

Reference: HF ``CLIPImageProcessor`` with CLIP defaults and the **PIL backend**
(transformers 4.x ``CLIPImageProcessor``; transformers 5.x ``CLIPImageProcessorPil``,
because 5.x's ``CLIPImageProcessor`` is the torchvision backend, which resizes
differently). It is constructed directly, no hub download. Images are loaded as
``PIL.Image.open(p).convert("RGB")`` (alpha dropped, like OpenAI CLIP and HF 4.x;
HF 5.x would composite transparency onto white), except 16-bit grayscale (PIL mode
``I;16``), whose ``convert("RGB")`` clips every value above 255; there we take the
high byte (``v >> 8``), the same rule PIL applies to 16-bit RGB and the one
clip-edge's loader uses.

Subcommands:

  fixtures [--out DIR]
      Regenerate runtime/core/tests/fixtures/preprocess/: small inputs (skimage.data
      photos, cropped/rescaled to varied shapes and modes) plus, for each, the HF
      224x224 crop as an exact RGB PNG (<name>.expected.png). Also writes
      manifest.json.

  random --out DIR [--count N] [--seed S]
      Random extra cases (random sizes/aspect ratios/crops of the skimage photos,
      PNG only) in the same layout, for the Rust test's CLIP_EDGE_PARITY_DIR.

  compare --binary PATH DIR_OR_IMAGES...
      Run ``clip-edge preprocess IMAGE --out X.npy`` for every image and report the
      max / mean absolute difference against HF's pixel_values, per image and overall.

  reference IMAGE --out X.npy
      Write HF's [1,3,224,224] float32 pixel_values for one image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "runtime" / "tests" / "fixtures" / "preprocess"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


# --------------------------------------------------------------------------- HF side
def hf_processor():
    """CLIP image processor with the PIL backend and CLIP defaults."""
    try:  # transformers >= 5
        from transformers.models.clip.image_processing_pil_clip import (
            CLIPImageProcessorPil as Proc,
        )
    except ImportError:  # transformers 4.x: CLIPImageProcessor is PIL-based
        from transformers import CLIPImageProcessor as Proc
    return Proc(
        do_resize=True,
        size={"shortest_edge": 224},
        resample=3,  # PIL.Image.BICUBIC
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def pil_load_rgb(path: Path) -> Image.Image:
    """PIL's open + convert("RGB"), with the high byte for 16-bit grayscale."""
    im = Image.open(path)
    if im.mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), mode="L").convert("RGB")
    return im.convert("RGB")


_PROC = None


def hf_pixel_values(path: Path) -> np.ndarray:
    """HF pixel_values, float32 [1, 3, 224, 224]."""
    global _PROC
    if _PROC is None:
        _PROC = hf_processor()
    pv = _PROC(images=pil_load_rgb(path), return_tensors="np")["pixel_values"]
    return np.asarray(pv, dtype=np.float32)


def pixel_values_to_u8(pv: np.ndarray) -> np.ndarray:
    """Invert HF normalisation exactly: [1,3,H,W] float32 -> HxWx3 uint8."""
    mean = np.array(CLIP_MEAN, dtype=np.float64)[:, None, None]
    std = np.array(CLIP_STD, dtype=np.float64)[:, None, None]
    x = (pv[0].astype(np.float64) * std + mean) * 255.0
    u = np.rint(x)
    err = np.abs(x - u).max()
    if err > 1e-3:
        raise SystemExit(f"pixel_values are not an exact u8 image (max off-grid {err})")
    return np.clip(u, 0, 255).astype(np.uint8).transpose(1, 2, 0)


# ------------------------------------------------------------------------ fixtures
def _photos():
    import skimage.data as d

    return {
        "astronaut": d.astronaut(),  # 512x512 RGB
        "coffee": d.coffee(),  # 400x600 RGB
        "chelsea": d.chelsea(),  # 300x451 RGB
        "rocket": d.rocket(),  # 427x640 RGB
        "camera": d.camera(),  # 512x512 L
    }


def _rs(arr: np.ndarray, w: int, h: int) -> Image.Image:
    return Image.fromarray(arr).resize((w, h), Image.LANCZOS)


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (PIL cannot write 16-bit RGB)."""
    import struct
    import zlib

    arr = np.asarray(arr, dtype=np.uint16)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(t + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
    path.write_bytes(png + chunk(b"IEND", b""))


def make_fixture_inputs(out: Path) -> list[dict]:
    """Write the input images; returns manifest entries."""
    rng = np.random.default_rng(1234)
    p = _photos()
    cases = []

    def add(name, kind, note):
        cases.append({"input": name, "kind": kind, "note": note})

    # Portrait RGB, mild downscale on both axes (240 -> 224).
    # Tall portrait, both axes shrink; height by > 2x as many pixels as width, so
    # Pillow >= 13 runs the vertical pass first.
    _rs(p["astronaut"][0:512, 150:380], 232, 500).save(out / "portrait_rgb.png")
    add("portrait_rgb.png", "rgb8", "tall portrait 232x500, downscale x1.04, vertical pass first")
    # Landscape JPEG, strong downscale (x2.7: support scaled by the factor).
    Image.fromarray(p["coffee"]).crop((0, 0, 600, 400)).resize((604, 400), Image.LANCZOS).save(
        out / "landscape.jpg", quality=88
    )
    add("landscape.jpg", "jpeg", "landscape 604x400 JPEG q88, downscale x1.79")
    # Small landscape: upscale.
    _rs(p["chelsea"], 96, 64).save(out / "small_upscale.png")
    add("small_upscale.png", "rgb8", "96x64, upscale x3.5")
    # Tiny: extreme upscale.
    Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(out / "tiny.png")
    add("tiny.png", "rgb8", "7x5 random, upscale x44.8")
    # Width already 224: horizontal pass skipped.
    _rs(p["rocket"][60:400, 100:330], 224, 331).save(out / "width224.png")
    add("width224.png", "rgb8", "224x331, only the vertical pass runs")
    # Panorama: very wide, upscale of both axes, crop keeps a small part.
    _rs(p["coffee"][150:250], 420, 70).save(out / "panorama.png")
    add("panorama.png", "rgb8", "420x70 panorama")
    # Grayscale (mode L).
    _rs(p["camera"], 262, 300).save(out / "gray.png")
    add("gray.png", "gray8", "mode L 262x300, both axes shrink, horizontal pass first")
    # RGBA with varied alpha, including fully transparent pixels with colour.
    rgb = np.asarray(_rs(p["chelsea"][20:280, 60:400], 210, 160))
    yy, xx = np.mgrid[0:160, 0:210]
    alpha = ((xx * 255) // 209).astype(np.uint8)
    alpha[:, :40] = 0
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(out / "rgba.png")
    add("rgba.png", "rgba8", "RGBA 210x160, alpha dropped not composited")
    # Palette.
    _rs(p["coffee"], 231, 160).quantize(colors=48).save(out / "palette.png")
    add("palette.png", "palette", "mode P 231x160, 48 colours")
    # 16-bit RGB with a patterned low byte (checks truncation to the high byte, not
    # rounding; a pattern compresses far better than noise).
    def low_byte(shape):
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        lo = ((xx * 37 + yy * 11) % 256).astype(np.uint16)
        return lo[..., None] if len(shape) == 3 else lo

    base = np.asarray(_rs(p["astronaut"][100:400, 150:420], 120, 160)).astype(np.uint16)
    write_png16(out / "rgb16.png", base * 256 + low_byte(base.shape))
    add("rgb16.png", "rgb16", "16-bit RGB PNG 120x160 (PIL: high byte)")
    # 16-bit grayscale (PIL mode I;16).
    base = np.asarray(_rs(p["camera"][0:400, 50:450], 230, 230)).astype(np.uint16)
    write_png16(out / "gray16.png", base * 256 + low_byte(base.shape))
    add("gray16.png", "gray16", "16-bit gray PNG 230x230 (PIL clips; reference uses high byte)")
    return cases


def write_expected(out: Path, cases: list[dict]) -> None:
    for c in cases:
        src = out / c["input"]
        u8 = pixel_values_to_u8(hf_pixel_values(src))
        exp = src.with_name(src.stem + ".expected.png")
        Image.fromarray(u8, mode="RGB").save(exp, optimize=True)
        c["expected"] = exp.name
        with Image.open(src) as im:
            c["size"] = list(im.size)
            c["pil_mode"] = im.mode
    (out / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")


def cmd_fixtures(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file():
            f.unlink()
    cases = make_fixture_inputs(out)
    write_expected(out, cases)
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {len(cases)} fixtures to {out} ({total / 1024:.0f} KiB)")


def cmd_random(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    photos = list(_photos().values())
    cases = []
    for i in range(args.count):
        arr = photos[rng.integers(len(photos))]
        h, w = arr.shape[:2]
        y0, x0 = rng.integers(0, h // 3), rng.integers(0, w // 3)
        sub = arr[y0 : y0 + rng.integers(h // 3, h - y0 + 1), x0 : x0 + rng.integers(w // 3, w - x0 + 1)]
        tw = int(rng.choice([rng.integers(1, 64), rng.integers(64, 400), rng.integers(400, 1500)]))
        th = int(max(1, tw * rng.uniform(0.2, 4.0)))
        im = Image.fromarray(sub).resize((tw, th), Image.BILINEAR)
        if im.mode == "L" and rng.random() < 0.5:
            im = im.convert("RGB")
        name = f"rand{i:03d}.png"
        im.save(out / name)
        cases.append({"input": name, "kind": "random", "note": f"{tw}x{th}"})
    write_expected(out, cases)
    print(f"wrote {len(cases)} random cases to {out}")


# ------------------------------------------------------------------------- compare
def _images(items: list[str]) -> list[Path]:
    files = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            files += sorted(
                f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and ".expected." not in f.name
            )
        else:
            files.append(p)
    return files


def cmd_compare(args) -> int:
    files = _images(args.images)
    if not files:
        print("no images found", file=sys.stderr)
        return 2
    worst, total_abs, total_n, failures = 0.0, 0.0, 0, 0
    print(f"{'image':40s} {'max_abs':>10s} {'mean_abs':>10s} {'u8_diff_px':>10s}")
    with tempfile.TemporaryDirectory() as td:
        for f in files:
            npy = Path(td) / (f.stem + ".npy")
            r = subprocess.run(
                [args.binary, "preprocess", str(f), "--out", str(npy)], capture_output=True, text=True
            )
            if r.returncode != 0:
                print(f"{f.name:40s} clip-edge failed: {r.stderr.strip()[:200]}")
                failures += 1
                continue
            ours = np.load(npy).astype(np.float32)
            ref = hf_pixel_values(f)
            if ours.shape != ref.shape:
                print(f"{f.name:40s} shape {ours.shape} != {ref.shape}")
                failures += 1
                continue
            d = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
            # Differences in u8 code values (one code = ~0.015 after normalisation).
            ucount = int((np.abs(d) > 1e-4).any(axis=1).sum())
            print(f"{f.name:40s} {d.max():10.3g} {d.mean():10.3g} {ucount:10d}")
            worst = max(worst, float(d.max()))
            total_abs += float(d.sum())
            total_n += d.size
    if total_n:
        print(f"{'OVERALL':40s} {worst:10.3g} {total_abs / total_n:10.3g}")
    if failures:
        print(f"{failures} image(s) failed", file=sys.stderr)
    return 1 if failures or worst > args.tolerance else 0


def cmd_reference(args) -> None:
    np.save(args.out, hf_pixel_values(Path(args.image)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="regenerate the committed test fixtures")
    f.add_argument("--out", default=str(FIXTURES))
    r = sub.add_parser("random", help="random extra parity cases")
    r.add_argument("--out", required=True)
    r.add_argument("--count", type=int, default=40)
    r.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare", help="compare a clip-edge binary against HF")
    c.add_argument("--binary", required=True, help="path of the clip-edge binary")
    c.add_argument("--tolerance", type=float, default=1e-5, help="max abs diff allowed")
    c.add_argument("images", nargs="+", help="image files or directories")
    ref = sub.add_parser("reference", help="HF pixel_values of one image as .npy")
    ref.add_argument("image")
    ref.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "fixtures":
        cmd_fixtures(args)
    elif args.cmd == "random":
        cmd_random(args)
    elif args.cmd == "compare":
        return cmd_compare(args)
    else:
        cmd_reference(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
