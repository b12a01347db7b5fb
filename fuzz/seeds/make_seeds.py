"""Writes the seed corpora of the fuzz targets into fuzz/corpus/TARGET/ (committed).
Small inputs of every kind each target reads, so that mutations stay near valid
ones. The `nnef` target's seed is made by the smoke test from tiny_encoder.onnx.

    python3 fuzz/seeds/make_seeds.py
"""
import io
import shutil
import struct
from pathlib import Path

from PIL import Image

here = Path(__file__).resolve().parent
repo = here.parent.parent
corpus = here.parent / "corpus"


def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def image_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


rgb = Image.new("RGB", (8, 6))
for x in range(8):
    for y in range(6):
        rgb.putpixel((x, y), (x * 30, y * 40, (x + y) * 15))
jpeg = image_bytes(rgb, "JPEG", quality=80)

# Images as clip-edge decodes them (image_io::load_rgb8).
put("image", "rgb.png", image_bytes(rgb, "PNG"))
put("image", "rgba.png", image_bytes(rgb.convert("RGBA"), "PNG"))
put("image", "gray16.png", image_bytes(rgb.convert("L").convert("I;16"), "PNG"))
put("image", "palette.png", image_bytes(rgb.convert("P"), "PNG"))
put("image", "rgb.jpg", jpeg)
put("image", "gray.jpg", image_bytes(rgb.convert("L"), "JPEG"))
put("image", "rgb.bmp", image_bytes(rgb, "BMP"))
put("image", "rgb.webp", image_bytes(rgb, "WEBP", lossless=True))

# MJPEG streams (stdin:mjpeg, V4L2 MJPEG): JPEGs back to back, with junk between.
put("mjpeg", "two.mjpeg", jpeg + jpeg)
put("mjpeg", "junk.mjpeg", b"\x00\xff" + jpeg + b"junk\xff\xd9" + jpeg[: len(jpeg) // 2] + jpeg)

# Raw frames: [format (0 rgb24, 1 yuv420, 2 yuyv), width, height] then bytes.
put("raw_frames", "rgb24.bin", bytes([0, 4, 2]) + bytes(range(4 * 2 * 3)) * 2)
put("raw_frames", "yuv420.bin", bytes([1, 4, 2]) + bytes(range(12)) * 3)
put("raw_frames", "yuyv.bin", bytes([2, 4, 2]) + bytes(range(16)) * 2)

# Manifests, board profiles, label tables as the board reads them.
for name, path in [
    ("clip.toml", "models/shapes/bundle/bundle.toml"),
    ("blip.toml", "models/shapes-blip/bundle/bundle.toml"),
]:
    put("manifest", name, (repo / path).read_bytes())
for board in ["pi4", "pi5", "jetson-orin"]:
    put("board", f"{board}.toml", (repo / f"boards/{board}.toml").read_bytes())
put("labels", "shapes.safetensors", (repo / "models/shapes/bundle/labels.safetensors").read_bytes())
put("labels", "mobileclip.safetensors", (repo / "models/fixtures/mobileclip-tiny/labels.safetensors").read_bytes())

# Texts for the CLIP tokenizer (labels files, prompts).
for i, text in enumerate([
    "a photo of a red circle.",
    "Hello, World! ¡Olé! naïve café — “quotes” &amp; <b>tags</b>",
    "日本語のテキスト 🐱🐶 emoji",
    "a" * 300,
]):
    put("tokenizer", f"text{i}.txt", text.encode())

# Signature checks: a PEM public key, a NUL, then a 64-byte signature.
pem = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEATWu65TGl2tFgfGxDZuW/VUUXkcW7iY7eCmsS/eZkM4Y=\n-----END PUBLIC KEY-----\n"
put("signature", "key_and_sig.bin", pem + b"\x00" + bytes(range(64)))
