"""Procedural "coloured shapes" data generator shared by train.py and make_eval.py.

An image shows exactly one shape of one colour on a low-saturation background
(flat grey / tinted grey, linear or radial gradient, or blotchy texture) with
mild noise.  Shape colours are strongly saturated; backgrounds never exceed a
saturation of ~0.18, so the background can never be mistaken for a shape colour.

Everything is driven by an explicit ``random.Random`` / ``numpy.random.Generator``
so the output is deterministic for a given seed.
"""

from __future__ import annotations

import colorsys
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Name -> base RGB.  Hues are far apart (red 0deg, orange ~30, yellow ~55,
# green ~125, blue ~225, purple ~285) so small jitter cannot cross classes.
COLORS = {
    "red": (215, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 25),
    "green": (30, 165, 50),
    "blue": (35, 70, 215),
    "purple": (135, 40, 175),
}
SHAPES = ["circle", "square", "triangle", "star", "cross"]

LABELS = [f"{c} {s}" for c in COLORS for s in SHAPES]

# Caption phrasings used in training.  The zero-shot template
# "a photo of a {}." is one of them on purpose.
TEMPLATES = [
    "a photo of a {}.",
    "a {}",
    "a picture of a {}.",
    "an image of a {}.",
    "a {} on a plain background.",
    "a drawing of a {}.",
    "a photo of the {}.",
    "{}",
]

# Shapes are drawn upright (triangle/star point up, square/cross axis-aligned)
# with a rotation jitter of +-MAX_ROTATION_DEG, and large (radius 27-45% of the
# short side).  With fully random rotations and radius 14-38% a tiny ViT/32
# trained from scratch on 2 CPU cores stayed at ~40% zero-shot top-1 (it learnt
# colour but hardly any shape): at 32-px patches a small shape is only 1-3
# patches wide.
MAX_ROTATION_DEG = 20.0

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _jitter_color(rgb, rng: random.Random):
    """Small hue/saturation/value jitter that keeps the colour name unambiguous."""
    r, g, b = (x / 255.0 for x in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + rng.uniform(-0.018, 0.018)) % 1.0
    s = min(1.0, max(0.55, s * rng.uniform(0.8, 1.05)))
    v = min(1.0, max(0.45, v * rng.uniform(0.75, 1.08)))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _bg_color(rng: random.Random):
    """A low-saturation colour (grey with a slight tint)."""
    h = rng.random()
    s = rng.uniform(0.0, 0.16)
    v = rng.uniform(0.12, 0.97)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _background(w: int, h: int, rng: random.Random, nrng: np.random.Generator):
    kind = rng.random()
    c1 = _bg_color(rng)
    if kind < 0.25:  # flat
        img = np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    elif kind < 0.55:  # linear gradient
        c2 = _bg_color(rng)
        ang = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xs / max(w - 1, 1)) * math.cos(ang) + (ys / max(h - 1, 1)) * math.sin(ang)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    elif kind < 0.7:  # radial gradient
        c2 = _bg_color(rng)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t = d / max(float(d.max()), 1e-6)
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    else:  # blotchy texture: low-res noise upsampled
        c2 = _bg_color(rng)
        gw, gh = rng.randint(3, 12), rng.randint(3, 12)
        small = nrng.random((gh, gw), dtype=np.float32)
        t = np.asarray(
            Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC),
            dtype=np.float32,
        ) / 255.0
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return img


def _star_points(cx, cy, r, rot, n=5, inner=0.45):
    pts = []
    for i in range(2 * n):
        rr = r if i % 2 == 0 else r * inner
        a = rot + i * math.pi / n - math.pi / 2
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _poly(cx, cy, r, rot, n):
    return [
        (cx + r * math.cos(rot + 2 * math.pi * i / n - math.pi / 2),
         cy + r * math.sin(rot + 2 * math.pi * i / n - math.pi / 2))
        for i in range(n)
    ]


def _cross_points(cx, cy, r, rot, arm=0.36):
    a = r * arm
    base = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r),
            (-a, a), (-r, a), (-r, -a), (-a, -a)]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, rot, fill):
    if shape == "circle":
        # slight ellipse allowed
        rx = r * 0.9
        ry = rx
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)
    elif shape == "square":
        draw.polygon(_poly(cx, cy, r * 0.95, rot + math.pi / 4, 4), fill=fill)
    elif shape == "triangle":
        draw.polygon(_poly(cx, cy, r, rot, 3), fill=fill)
    elif shape == "star":
        draw.polygon(_star_points(cx, cy, r, rot), fill=fill)
    elif shape == "cross":
        draw.polygon(_cross_points(cx, cy, r, rot), fill=fill)
    else:
        raise ValueError(shape)


def render(color: str, shape: str, w: int, h: int, rng: random.Random,
           nrng: np.random.Generator, margin: float = 0.0) -> Image.Image:
    """Render one image of size (w, h).

    The shape is always placed inside the central square of side min(w, h), so a
    shortest-edge-resize + centre-crop keeps it.  Its radius is 27%..45% of that
    side (30%..42% in render_eval).  ``margin`` (fraction of the side) keeps it further from the crop edge.
    """
    side = min(w, h)
    ox, oy = (w - side) / 2.0, (h - side) / 2.0
    bg = _background(w, h, rng, nrng)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    # Draw at 2x then downsample for anti-aliasing.
    ss = 2
    layer = Image.new("L", (w * ss, h * ss), 0)
    d = ImageDraw.Draw(layer)
    r = side * rng.uniform(0.27, 0.45)
    lim = side / 2.0 - r - margin * side
    lim = max(lim, 0.0)
    cx = ox + side / 2.0 + rng.uniform(-lim, lim)
    cy = oy + side / 2.0 + rng.uniform(-lim, lim)
    rot = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    draw_shape(d, shape, cx * ss, cy * ss, r * ss, rot, 255)
    mask = layer.resize((w, h), Image.BILINEAR)
    fill = _jitter_color(COLORS[color], rng)
    # mild shading across the shape (lighting)
    solid = Image.new("RGB", (w, h), fill)
    img.paste(solid, (0, 0), mask)
    arr = np.asarray(img, dtype=np.float32)
    # optional soft shadow / brightness ramp over whole image
    if rng.random() < 0.3:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, 2 * math.pi)
        t = (xs / w) * math.cos(ang) + (ys / h) * math.sin(ang)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        arr = arr * (1.0 - rng.uniform(0.0, 0.25) * t[..., None])
    # mild noise: low amplitude per-pixel plus blotchy low-frequency noise
    sigma = rng.uniform(0.0, 7.0)
    if sigma > 0.5:
        arr = arr + nrng.normal(0, sigma, size=arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.25:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return out


def render_eval(color: str, shape: str, w: int, h: int, rng: random.Random,
                nrng: np.random.Generator) -> Image.Image:
    """Eval/sample images: same distribution, but noise kept mild/blotchy so PNGs compress."""
    side = min(w, h)
    ox, oy = (w - side) / 2.0, (h - side) / 2.0
    bg = _background(w, h, rng, nrng)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    ss = 2
    layer = Image.new("L", (w * ss, h * ss), 0)
    d = ImageDraw.Draw(layer)
    r = side * rng.uniform(0.30, 0.42)
    lim = max(side / 2.0 - r - 0.02 * side, 0.0)
    cx = ox + side / 2.0 + rng.uniform(-lim, lim)
    cy = oy + side / 2.0 + rng.uniform(-lim, lim)
    rot = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    draw_shape(d, shape, cx * ss, cy * ss, r * ss, rot, 255)
    mask = layer.resize((w, h), Image.BILINEAR)
    fill = _jitter_color(COLORS[color], rng)
    img.paste(Image.new("RGB", (w, h), fill), (0, 0), mask)
    arr = np.asarray(img, dtype=np.float32)
    # blotchy noise only (piecewise-constant cells of 8..16 px): keeps PNGs small,
    # unlike per-pixel noise which does not compress.
    cell = rng.randint(8, 16)
    gw, gh = max(2, -(-w // cell)), max(2, -(-h // cell))
    blot = nrng.normal(0, rng.uniform(2.0, 5.0), size=(gh, gw, 3)).astype(np.float32)
    blot_img = np.stack([
        np.asarray(Image.fromarray(blot[..., c]).resize((w, h), Image.NEAREST))
        for c in range(3)
    ], axis=-1)
    arr = arr + blot_img
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def resize_crop_224(img: Image.Image) -> np.ndarray:
    """Shortest-edge resize to 224 (bicubic) + centre crop 224 -> uint8 HWC."""
    w, h = img.size
    s = 224.0 / min(w, h)
    nw, nh = max(224, int(round(w * s))), max(224, int(round(h * s)))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - 224) // 2, (nh - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def to_tensor_224(img: Image.Image) -> np.ndarray:
    """resize_crop_224 + CLIP normalisation -> float32 CHW (close to CLIPImageProcessor)."""
    a = resize_crop_224(img).astype(np.float32) / 255.0
    a = (a - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return a.transpose(2, 0, 1).copy()


def random_train_image_u8(rng: random.Random, nrng: np.random.Generator):
    """Returns (label_index, uint8 HWC 224x224 array) for one training image.

    The image is rendered at a random size / aspect ratio (short side 100..320)
    and then resized/cropped to 224 like at inference time, so the model sees
    resampling blur at many scales.
    """
    li = rng.randrange(len(LABELS))
    color, shape = LABELS[li].split(" ")
    short = rng.randint(100, 320)
    ar = rng.choice([1.0, 1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9])
    if ar >= 1:
        w, h = int(short * ar), short
    else:
        w, h = short, int(short / ar)
    img = render(color, shape, w, h, rng, nrng)
    return li, resize_crop_224(img)
