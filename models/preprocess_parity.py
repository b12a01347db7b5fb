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

  fixtures-families [--out DIR] [--families F,...]
      Regenerate runtime/core/tests/fixtures/preprocess/families/: for the inputs of
      ../manifest.json plus the crop-offset inputs in families/inputs/, each family's
      REFERENCE processor's 8-bit RGB image before rescale/normalise (exact PNG,
      families/<family>/<name>.expected.png), and in families/manifest.json the
      preprocessing (resize, resize_shortest_edge, crop_size, interpolation,
      crop_offset, mean, std) and per image the sha256 of the reference float32
      pixel_values (C order) for a bit-exact check of the normalised output:
        siglip      HF SiglipImageProcessor (PIL backend): squash 224, bicubic, mean/std 0.5
        blip        HF BlipImageProcessor (PIL backend): squash 384, bicubic, CLIP mean/std
        mobileclip  OpenCLIP's transform for MobileCLIP2-S0 (dfndr2b): torchvision
                    Resize(256, bilinear) on the PIL image, CenterCrop(256), mean 0, std 1
        openclip    OpenCLIP's transform for ViT-B-32 (laion2b_s34b_b79k): Resize(224,
                    bicubic), CenterCrop(224), CLIP mean/std
      Each 8-bit image is checked against an independent replica (PIL resize + crop at
      the stated offset) and its normalisation against the processor's own output,
      bit for bit.
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
FIXTURES = ROOT / "runtime" / "core" / "tests" / "fixtures" / "preprocess"
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


# ------------------------------------------------------------------- families
# The preprocessing fixtures live in runtime/core/tests/fixtures/preprocess/ (FIXTURES
# above still names the old runtime/tests/ location).
PREPROCESS_DIR = ROOT / "runtime" / "core" / "tests" / "fixtures" / "preprocess"
FAMILIES_DIR = PREPROCESS_DIR / "families"
HALF = [0.5, 0.5, 0.5]

# Per family: the reference, and the preprocessing in the keys the Rust side reads.
FAMILY_SPECS = {
    "siglip": dict(
        reference="transformers SiglipImageProcessorPil (SiglipImageProcessor, PIL backend)",
        preprocess=dict(resize="squash", resize_shortest_edge=224, crop_size=224,
                        interpolation="bicubic", crop_offset="floor", mean=HALF, std=HALF)),
    "blip": dict(
        reference="transformers BlipImageProcessorPil (BlipImageProcessor, PIL backend)",
        preprocess=dict(resize="squash", resize_shortest_edge=384, crop_size=384,
                        interpolation="bicubic", crop_offset="floor", mean=CLIP_MEAN,
                        std=CLIP_STD)),
    "mobileclip": dict(
        reference="open_clip image_transform_v2 for MobileCLIP2-S0 / dfndr2b (torchvision "
                  "Resize + CenterCrop on the PIL image, ToTensor, Normalize)",
        open_clip=("MobileCLIP2-S0", "dfndr2b"),
        preprocess=dict(resize="shortest_edge", resize_shortest_edge=256, crop_size=256,
                        interpolation="bilinear", crop_offset="round", mean=[0.0, 0.0, 0.0],
                        std=[1.0, 1.0, 1.0])),
    "openclip": dict(
        reference="open_clip image_transform_v2 for ViT-B-32 / laion2b_s34b_b79k (torchvision "
                  "Resize + CenterCrop on the PIL image, ToTensor, Normalize)",
        open_clip=("ViT-B-32", "laion2b_s34b_b79k"),
        preprocess=dict(resize="shortest_edge", resize_shortest_edge=224, crop_size=224,
                        interpolation="bicubic", crop_offset="round", mean=CLIP_MEAN,
                        std=CLIP_STD)),
}

# Which expected PNGs are written by default.  Every (family, image) pair is checked
# bit-exactly through expected_u8_sha256 / pixel_values_sha256 in the manifest; the
# PNGs (40-250 KB each; all of them: ~4.6 MB) are kept for the cases a mismatch is
# likeliest to need looking at: each torchvision family's floor-vs-round crop cases
# and, for the squash families, an extreme upscale and a downscale of both axes.
# `--png all` writes every one (for debugging a hash mismatch locally).
PNG_SUBSET = {
    "siglip": ["tiny", "odd_d7_portrait224"],
    "blip": ["tiny", "odd_d7_portrait224"],
    "mobileclip": ["odd_d3_landscape", "odd_d7_portrait256"],
    "openclip": ["odd_d3_landscape", "odd_d7_portrait224"],
}

# Extra inputs (families/inputs/) whose resized side minus the crop, d, is odd with
# floor(d/2) odd, so that floor (HF) and round-half-even (torchvision) crop offsets
# differ: d = 3 at both 224 and 256 (upscale, horizontal offset), and d = 7 at 256 /
# at 224 (downscale, vertical offset).  (w, h, source, note)
FAMILY_INPUTS = [
    ("odd_d3_landscape.png", (70, 69), "chelsea",
     "70x69 photo: d = 3 at 224 and 256 (x offset floor 1, round 2), upscale"),
    ("odd_d7_portrait256.png", (300, 309), "astronaut_x3",
     "300x309 (100x103 photo, nearest x3): d = 7 at 256 (y offset floor 3, round 4), "
     "d = 6 at 224; downscale"),
    ("odd_d7_portrait224.png", (300, 310), "coffee_x5",
     "300x310 (60x62 photo, nearest x5): d = 7 at 224 (y offset floor 3, round 4), "
     "d = 8 at 256; downscale"),
]


def make_family_inputs(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    p = _photos()
    cases = []
    for name, (w, h), src, note in FAMILY_INPUTS:
        if src == "chelsea":
            im = _rs(p["chelsea"][10:290, 60:344], w, h)
        elif src == "astronaut_x3":
            im = _rs(p["astronaut"][0:500, 100:400], w // 3, h // 3).resize((w, h), Image.NEAREST)
        else:
            im = _rs(p["coffee"][0:400, 150:520], w // 5, h // 5).resize((w, h), Image.NEAREST)
        assert im.size == (w, h)
        im.save(out / name, optimize=True)
        cases.append({"input": f"inputs/{name}", "kind": "rgb8", "note": note})
    return cases


def _open_clip_transform(name: str, tag: str):
    """OpenCLIP's eval transform for NAME with TAG's preprocessing, built as
    create_model_and_transforms builds it (PreprocessCfg defaults, the tag's values, the
    model config's image size), without building the model."""
    from dataclasses import asdict

    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), open_clip.get_pretrained_cfg(name, tag))
    cfg["size"] = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False), cfg


def _check_open_clip_transform(name: str, tag: str, transform) -> None:
    """The transform equals what create_model_and_transforms(NAME) gives with TAG's
    preprocessing (no weights are loaded; the tag's download is not needed)."""
    import open_clip

    pc = open_clip.get_pretrained_cfg(name, tag)
    _, _, ref = open_clip.create_model_and_transforms(
        name, pretrained=None, image_mean=pc["mean"], image_std=pc["std"],
        image_interpolation=pc["interpolation"], image_resize_mode=pc["resize_mode"],
        pretrained_text=False)
    if repr(ref) != repr(transform):
        raise SystemExit(f"open_clip transform mismatch for {name}:\n{ref}\n!=\n{transform}")


def _sha256(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _offsets(rw: int, rh: int, crop: int) -> dict:
    dx, dy = rw - crop, rh - crop
    floor = (dx // 2, dy // 2)
    rnd = (int(round(dx / 2.0)), int(round(dy / 2.0)))  # Python round: half to even
    return dict(d=[dx, dy], floor=list(floor), round=list(rnd))


def _normalise_like_hf(u8_chw: np.ndarray, mean, std) -> np.ndarray:
    """HF: u8 -> float64 * (1/255) -> float32; then (x - mean) / std in float32."""
    x = (u8_chw.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, dtype=np.float32)[:, None, None]
    s = np.array(std, dtype=np.float32)[:, None, None]
    return (x - m) / s


def _normalise_like_torchvision(u8_hwc: np.ndarray, mean, std) -> np.ndarray:
    """torchvision ToTensor + Normalize: u8 -> float32 / 255; (x - mean) / std in float32."""
    import torch

    x = torch.from_numpy(np.array(u8_hwc, copy=True)).permute(2, 0, 1).to(torch.float32).div(255)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return x.sub(m).div(s).numpy()


class _HfReference:
    def __init__(self, family: str, pre: dict):
        if family == "siglip":
            from transformers.models.siglip.image_processing_pil_siglip import (
                SiglipImageProcessorPil as Proc,
            )
        else:
            from transformers.models.blip.image_processing_pil_blip import (
                BlipImageProcessorPil as Proc,
            )
        n = pre["crop_size"]
        # The hub configs' values (google/siglip-base-patch16-224,
        # Salesforce/blip-itm-base-coco); constructed directly, no download.
        self.proc = Proc(do_resize=True, size={"height": n, "width": n}, resample=3,
                         do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                         image_mean=pre["mean"], image_std=pre["std"], do_convert_rgb=True)
        self.pre = pre

    def __call__(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray, dict]:
        n = self.pre["crop_size"]
        full = np.asarray(self.proc(images=img, return_tensors="np")["pixel_values"][0])
        assert full.dtype == np.float32 and full.shape == (3, n, n), (full.dtype, full.shape)
        # The processor's own resize with rescale / normalise off: the uint8 image.
        u8 = np.asarray(self.proc(images=img, do_rescale=False, do_normalize=False,
                                  return_tensors="np")["pixel_values"][0])
        assert u8.dtype == np.uint8 and u8.shape == (3, n, n), (u8.dtype, u8.shape)
        # Independent replica: PIL's resize to n x n, bicubic (squash: no crop).
        replica = np.asarray(img.resize((n, n), Image.BICUBIC)).transpose(2, 0, 1)
        assert np.array_equal(u8, replica), "HF resize != PIL resize((n, n), BICUBIC)"
        # The processor's rescale + normalise of that uint8 image is its output ...
        again = self.proc.normalize(self.proc.rescale(u8, 1 / 255), self.pre["mean"],
                                    self.pre["std"])
        assert again.dtype == np.float32 and np.array_equal(again.view(np.uint32),
                                                            full.view(np.uint32))
        # ... and so is the arithmetic documented in the manifest.
        ours = _normalise_like_hf(u8, self.pre["mean"], self.pre["std"])
        assert np.array_equal(ours.view(np.uint32), full.view(np.uint32))
        info = dict(resized_size=[n, n], crop_offset_xy=[0, 0])
        return u8.transpose(1, 2, 0), full, info


class _OpenClipReference:
    def __init__(self, family: str, spec: dict, check: bool):
        name, tag = spec["open_clip"]
        self.transform, self.cfg = _open_clip_transform(name, tag)
        if check:
            _check_open_clip_transform(name, tag, self.transform)
        pre = spec["preprocess"]
        assert self.cfg["resize_mode"] == "shortest"
        assert self.cfg["size"] == pre["crop_size"] == pre["resize_shortest_edge"]
        assert self.cfg["interpolation"] == pre["interpolation"]
        assert [float(x) for x in self.cfg["mean"]] == pre["mean"], self.cfg["mean"]
        assert [float(x) for x in self.cfg["std"]] == pre["std"], self.cfg["std"]
        steps = self.transform.transforms
        kinds = [type(t).__name__ for t in steps]
        assert kinds == ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor",
                         "Normalize"], kinds
        from torchvision.transforms import Compose

        self.to_u8 = Compose(steps[:3])  # Resize, CenterCrop, convert("RGB")
        self.pre = pre
        self.filter = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[pre["interpolation"]]

    def __call__(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray, dict]:
        n = self.pre["crop_size"]
        full = self.transform(img).numpy()
        assert full.dtype == np.float32 and full.shape == (3, n, n), (full.dtype, full.shape)
        u8 = np.asarray(self.to_u8(img))
        assert u8.dtype == np.uint8 and u8.shape == (n, n, 3), (u8.dtype, u8.shape)
        # ToTensor + Normalize of the uint8 image is the full transform's output.
        again = _normalise_like_torchvision(u8, self.pre["mean"], self.pre["std"])
        assert np.array_equal(again.view(np.uint32), full.view(np.uint32))
        # The same values come out of HF's arithmetic (float64 * (1/255) -> float32):
        # one normalisation rule serves every family.
        hf = _normalise_like_hf(u8.transpose(2, 0, 1), self.pre["mean"], self.pre["std"])
        assert np.array_equal(hf.view(np.uint32), full.view(np.uint32))
        # Independent replica: shortest side to n (long side truncated, as torchvision
        # and HF compute it), PIL resize (skipped when the size is unchanged), crop at
        # round-half-even offsets.
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(n * long / short)
        rw, rh = (n, new_long) if w <= h else (new_long, n)
        resized = img if (rw, rh) == (w, h) else img.resize((rw, rh), self.filter)
        off = _offsets(rw, rh, n)
        x, y = off["round"]
        replica = np.asarray(resized)[y:y + n, x:x + n]
        assert np.array_equal(u8, replica), "torchvision Resize+CenterCrop != PIL replica"
        fx, fy = off["floor"]
        floor_crop = np.asarray(resized)[fy:fy + n, fx:fx + n]
        differs = off["floor"] != off["round"]
        info = dict(resized_size=[rw, rh], crop_offset_xy=[x, y],
                    floor_crop_offset_xy=off["floor"], floor_round_differ=differs,
                    floor_crop_differs_from_expected=bool(not np.array_equal(floor_crop, u8)))
        return u8, full, info


def cmd_fixtures_families(args) -> None:
    out = Path(args.out)
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILY_SPECS))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {sorted(FAMILY_SPECS)}")
    base = json.loads((PREPROCESS_DIR / "manifest.json").read_text())
    cases = [{"input": f"../{c['input']}", "kind": c["kind"], "note": c["note"],
              "path": PREPROCESS_DIR / c["input"]} for c in base]
    for c in make_family_inputs(out / "inputs"):
        cases.append(dict(c, path=out / c["input"]))
    manifest = {
        "about": "Reference preprocessing of the families clip-edge supports besides HF "
                 "CLIP (../manifest.json). Made by models/preprocess_parity.py "
                 "fixtures-families. Paths are relative to this directory.",
        "loading": "PIL.Image.open(f).convert('RGB'), except 16-bit grayscale (mode I;16): "
                   "high byte (v >> 8), as ../manifest.json's fixtures",
        "expected": "<family>/<stem>.expected.png: the reference's 8-bit RGB image after "
                    "resize (and crop), before rescale/normalise; exact. Written for a few "
                    "images per family (null otherwise; `fixtures-families --png all` writes "
                    "all); every image has expected_u8_sha256, the sha256 of that image's "
                    "bytes (H x W x RGB, row-major)",
        "pixel_values_sha256": "sha256 of the reference processor's float32 pixel_values "
                               "[3,S,S], C order, little-endian bytes",
        "normalize_arithmetic": "x = float32(float64(u8) * (1/255)) (bit-identical to torchvision's "
                                "float32(u8) / 255f for all 256 values); then (x - float32(mean)) "
                                "/ float32(std) in float32",
        "versions": _versions(),
        "families": {},
    }
    for family in families:
        spec = FAMILY_SPECS[family]
        if "open_clip" in spec:
            ref = _OpenClipReference(family, spec, check=not args.no_check)
        else:
            ref = _HfReference(family, spec["preprocess"])
        fdir = out / family
        fdir.mkdir(parents=True, exist_ok=True)
        for f in fdir.glob("*.expected.png"):
            f.unlink()
        images, odd, same_as_clip, not_clip = [], [], [], []
        for c in cases:
            src = c["path"]
            u8, full, info = ref(pil_load_rgb(src))
            stem = Path(c["input"]).stem
            exp = fdir / f"{stem}.expected.png"
            expected = None
            if args.png == "all" or stem in PNG_SUBSET[family]:
                Image.fromarray(u8, mode="RGB").save(exp, optimize=True)
                expected = f"{family}/{exp.name}"
            with Image.open(src) as im:
                size, mode = list(im.size), im.mode
            if family == "openclip" and c["input"].startswith("../"):
                clip = np.asarray(Image.open(PREPROCESS_DIR / f"{stem}.expected.png").convert("RGB"))
                (same_as_clip if np.array_equal(clip, u8) else not_clip).append(stem)
            row = dict(input=c["input"], expected=expected, size=size,
                       pil_mode=mode, **info, expected_u8_sha256=_sha256(u8),
                       pixel_values_sha256=_sha256(full.astype("<f4")))
            images.append(row)
            if info.get("floor_round_differ"):
                odd.append(stem)
        if "open_clip" in spec:
            # The images meant to tell floor from round must do so in the pixels.
            seen = [r for r in images if r["floor_crop_differs_from_expected"]]
            assert len(seen) >= 2, f"{family}: only {len(seen)} image(s) tell floor from round"
        entry = dict(reference=spec["reference"], preprocess=spec["preprocess"], images=images)
        if "open_clip" in spec:
            entry["open_clip"] = dict(model=spec["open_clip"][0], pretrained_tag=spec["open_clip"][1],
                                      preprocess_cfg=ref.cfg, transform=repr(ref.transform))
            entry["floor_round_differ"] = odd
        manifest["families"][family] = entry
        kb = sum(f.stat().st_size for f in fdir.iterdir()) / 1024
        extra = f"; floor and round crop offsets differ for {', '.join(odd)}" if odd else ""
        print(f"{family}: {len(images)} images, {kb:.0f} KiB{extra}")
        if family == "openclip":
            print(f"  openclip == HF CLIP's ../*.expected.png for {len(same_as_clip)} of "
                  f"{len(same_as_clip) + len(not_clip)} (different: {', '.join(not_clip)})")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KiB in all)")


def _versions() -> dict:
    import PIL
    import torch
    import torchvision
    import transformers
    import open_clip

    return {"pillow": PIL.__version__, "transformers": transformers.__version__,
            "open_clip": open_clip.__version__, "torchvision": torchvision.__version__.split("+")[0],
            "torch": torch.__version__.split("+")[0], "numpy": np.__version__}


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
    ff = sub.add_parser("fixtures-families",
                        help="regenerate the SigLIP / BLIP / MobileCLIP / OpenCLIP fixtures")
    ff.add_argument("--out", default=str(FAMILIES_DIR))
    ff.add_argument("--families", default=",".join(FAMILY_SPECS),
                    help="comma-separated subset of " + ", ".join(FAMILY_SPECS))
    ff.add_argument("--png", choices=["subset", "all"], default="subset",
                    help="which expected PNGs to write (default: a few per family, see "
                         "PNG_SUBSET; every image is in the manifest's hashes either way)")
    ff.add_argument("--no-check", action="store_true",
                    help="skip building the OpenCLIP models to compare their transforms")
    args = ap.parse_args()
    if args.cmd == "fixtures-families":
        cmd_fixtures_families(args)
    elif args.cmd == "fixtures":
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
