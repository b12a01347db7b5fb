#!/usr/bin/env python3
"""End-to-end check of the --pretrained paths of export_family.py / export_text.py without a
download (offline; everything is written under /tmp, nothing under models/fixtures/).

For each family it
  1. exports the tiny RANDOM model the usual way (export_family --size tiny, export_text
     --size tiny --tokenizer <fixture tokenizer.json>) to WORK/rand-<family>;
  2. saves the same random weights as a local checkpoint:
       siglip      CKPT/ckpt-siglip: SiglipModel.save_pretrained (the random text head already
                   redrawn as export_text does) + SiglipTokenizer(spiece.model of
                   quantize/tests/fixtures/tokenizers/siglip) + SiglipImageProcessor
       blip        CKPT/ckpt-blip: BlipForImageTextRetrieval.save_pretrained + BertTokenizerFast
                   (the fixture's blip/tokenizer.json, [DEC] bos, [ENC]) + BlipImageProcessor
       mobileclip  CKPT/ckpt-mobileclip/mobileclip-tiny.pt: the tiny OpenCLIP model's state_dict
                   (unfused, before reparameterize), loaded back through open_clip
                   pretrained=<file> with --openclip-model <the tiny model config .json> (the
                   tiny FastViT is not MobileCLIP2-S0's architecture, so open_clip's built-in
                   MobileCLIP2-S0 config cannot load it) and the hub's open_clip_config.json
                   beside it (its preprocess_cfg);
  3. exports them with --pretrained to WORK/pre-<family> (image, and text for siglip/blip);
  4. compares, failing (exit 1) on any mismatch:
       * onnxruntime outputs of pre vs rand image_encoder.onnx (seeded inputs, batch 3) and
         of the reference-image embeddings, max abs diff <= 1e-5;
       * the same for text_encoder.onnx on the tokenizer parity strings;
       * the checkpoint-made tokenizer.json vs the fixture tokenizer.json (ids and attention
         mask on every parity string, SigLIP after canonicalize_text) and vs
         quantize/tests/fixtures/tokenizers/parity.json's expected ids;
       * model.json: logit_scale, logit_bias, image_size, embed_dim, scoring, preprocess
         (the checkpoint processor's) equal to the random export's; "pretrained" is the
         checkpoint; the "text" section clip-quantize reads (tokenizer_file, context_length,
         pad_token_id, attention_mask) and text_encoder's sha256.

--break scales every checkpoint weight by 1.001 before saving (and uses separate
directories): every ONNX comparison and the SigLIP / MobileCLIP logit scale (and SigLIP
bias) must then fail, and the script exits 1 (BLIP's scale is 1/0.07 either way: no temp in
a transformers checkpoint).  That is how it is shown to be able to fail.

  python3 models/export/check_pretrained.py            # exit 0, prints the figures
  python3 models/export/check_pretrained.py --break    # must exit 1
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import export_family as ef  # noqa: E402
import export_text as et  # noqa: E402

TOK_DIR = ROOT / "quantize" / "tests" / "fixtures" / "tokenizers"
TOL = 1e-5
FAILURES: list[str] = []


def check(name: str, ok: bool, detail: str = ""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILURES.append(name)


def _perturb(model, on: bool):
    if on:
        with torch.no_grad():
            for p in model.parameters():
                if p.is_floating_point():
                    p.mul_(1.001)


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------

def make_siglip_ckpt(d: Path, brk: bool):
    from transformers import SiglipImageProcessor, SiglipTokenizer
    model, _, _ = et.build_model("siglip", "tiny", 0)
    et.redraw_siglip_text_head(model, 0)  # as export_text does for the random model
    _perturb(model, brk)
    model.save_pretrained(str(d))
    SiglipTokenizer(vocab_file=str(TOK_DIR / "siglip" / "spiece.model")).save_pretrained(str(d))
    S = int(model.config.vision_config.image_size)
    SiglipImageProcessor(do_resize=True, size={"height": S, "width": S}, resample=3,
                         do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                         image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(str(d))


def make_blip_ckpt(d: Path, brk: bool):
    from transformers import BertTokenizerFast, BlipImageProcessor
    model, _, _ = et.build_model("blip", "tiny", 0)
    _perturb(model, brk)
    model.save_pretrained(str(d))
    tok = BertTokenizerFast(tokenizer_file=str(TOK_DIR / "blip" / "tokenizer.json"),
                            do_lower_case=True, unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                            bos_token="[DEC]", model_max_length=512)
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.save_pretrained(str(d))
    S = int(model.config.vision_config.image_size)
    BlipImageProcessor(do_resize=True, size={"height": S, "width": S}, resample=3,
                       do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                       image_mean=ef.OPENAI_MEAN, image_std=ef.OPENAI_STD).save_pretrained(str(d))


def make_mobileclip_ckpt(d: Path, brk: bool) -> tuple[Path, Path]:
    """The tiny model exactly as export_family.build_mobileclip makes it (same seed, same
    order: config, manual_seed, create, perturb_mobileclip), saved before reparameterize."""
    import open_clip
    ef.register_mci_tiny()
    oc_cfg = ef.mobileclip_open_clip_config("tiny")
    build = d / "build"
    build.mkdir(parents=True, exist_ok=True)
    (build / "open_clip_config.json").write_text(json.dumps(oc_cfg, indent=2) + "\n")
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(
        f"local-dir:{build}", load_weights=False, pretrained_text=False)
    model.eval()
    ef.perturb_mobileclip(model.visual, 0, int(oc_cfg["model_cfg"]["vision_cfg"]["image_size"]))
    _perturb(model, brk)
    pt = d / "mobileclip-tiny.pt"
    torch.save(model.state_dict(), pt)
    (d / "open_clip_config.json").write_text(json.dumps(oc_cfg, indent=2) + "\n")  # hub layout
    cfg = d / "mobileclip2-s0-clip-edge-tiny.json"  # bare model config for --openclip-model
    cfg.write_text(json.dumps(oc_cfg["model_cfg"], indent=2) + "\n")
    shutil.rmtree(build)
    return pt, cfg


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------

def _run(path: Path, feed: dict) -> np.ndarray:
    return ef._session(path).run(None, feed)[0]


def compare_image(fam: str, rand: Path, pre: Path):
    mj = json.loads((rand / "model.json").read_text())
    S = mj["image_size"]
    x = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(123)).numpy()
    a, b = _run(rand / "image_encoder.onnx", {"pixel_values": x}), \
        _run(pre / "image_encoder.onnx", {"pixel_values": x})
    d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    check(f"{fam} image_encoder.onnx pre vs rand", d <= TOL,
          f"max|diff| {d:.3e} on {list(a.shape)} (max|out| {float(np.abs(a).max()):.3e})")
    ea, eb = np.load(rand / "ort_image_embeds.npy"), np.load(pre / "ort_image_embeds.npy")
    d = float(np.abs(ea - eb).max()) if ea.shape == eb.shape else float("inf")
    check(f"{fam} reference-image embeddings (checkpoint's processor) pre vs rand", d <= TOL,
          f"max|diff| {d:.3e} on {list(ea.shape)}")


def _close(a, b, tol=1e-9) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def compare_model_json(fam: str, rand: Path, pre: Path, ckpt: str, text: bool):
    r = json.loads((rand / "model.json").read_text())
    p = json.loads((pre / "model.json").read_text())
    for k in ("logit_scale", "logit_bias", "image_size", "embed_dim", "scoring", "preprocess"):
        check(f"{fam} model.json {k}", _close(r[k], p[k]),
              f"pre {json.dumps(p[k])}" + ("" if _close(r[k], p[k]) else f" rand {json.dumps(r[k])}"))
    check(f"{fam} model.json pretrained", p["pretrained"] == ckpt and p["random_init"] is None,
          f"pretrained={p['pretrained']!r} random_init={p['random_init']!r}")
    check(f"{fam} model.json image_encoder sha256",
          p["image_encoder"]["sha256"] == ef.ec.sha256(pre / "image_encoder.onnx"))
    if not text:
        return
    f = et.FAMILY[fam]
    t = p.get("text") or {}
    want = dict(exported=True, tokenizer_file="tokenizer.json",
                context_length=f["context_length"], padding="max_length",
                attention_mask=f["attention_mask"], pad_token_id=f["pad_id"])
    got = {k: t.get(k) for k in want}
    check(f"{fam} model.json text section", got == want, json.dumps(got))
    te = p.get("text_encoder") or {}
    check(f"{fam} model.json text_encoder", te.get("file") == "text_encoder.onnx" and
          te.get("sha256") == ef.ec.sha256(pre / "text_encoder.onnx"),
          f"file={te.get('file')} sha256 {str(te.get('sha256'))[:12]}…")


def _tokenize_from_model_json(fam: str, d: Path):
    t = json.loads((d / "model.json").read_text())["text"]
    spec = dict(et.FAMILY[fam], context_length=t["context_length"], pad_id=t["pad_token_id"],
                pad_token=t.get("pad_token", et.FAMILY[fam]["pad_token"]))
    return et.make_tokenize(fam, d / t["tokenizer_file"], spec)


def compare_text(fam: str, rand: Path, pre: Path):
    texts = et.parity_texts() + et.PROMPTS
    tok_pre = _tokenize_from_model_json(fam, pre)
    tok_fix = et.make_tokenize(fam, TOK_DIR / fam / "tokenizer.json")
    (ip, mp), (ifx, mfx) = tok_pre(texts), tok_fix(texts)
    n_bad = int(sum((a != b).any() or (c != e).any() for a, b, c, e in zip(ip, ifx, mp, mfx)))
    check(f"{fam} tokenizer.json (from checkpoint) vs fixture tokenizer.json", n_bad == 0,
          f"{len(texts) - n_bad}/{len(texts)} strings give identical ids + mask "
          f"[{ip.shape[1]} positions]")
    cases = [c for c in json.loads((TOK_DIR / "parity.json").read_text())["cases"]
             if c["family"] == fam]
    ids, mask = tok_pre([c["text"] for c in cases])
    n_bad = sum(list(r) != c["input_ids"] or list(m) != c["attention_mask"]
                for c, r, m in zip(cases, ids, mask))
    check(f"{fam} tokenizer.json (from checkpoint) vs parity.json", n_bad == 0,
          f"{len(cases) - n_bad}/{len(cases)} cases")
    tj = json.loads((pre / "text.json").read_text())
    vs = (tj.get("tokenizer_from_checkpoint") or {}).get("vs_transformers") or {}
    check(f"{fam} tokenizer.json vs the checkpoint's transformers tokenizer (export_text)",
          vs.get("strings", 0) > 0 and not vs.get("differing"),
          f"{vs.get('strings', 0) - len(vs.get('differing', []))}/{vs.get('strings', 0)} strings")
    feed_names = ["input_ids"] + (["attention_mask"] if et.FAMILY[fam]["attention_mask"] else [])
    ids, mask = tok_fix(texts)
    feed = {"input_ids": ids, "attention_mask": mask}
    feed = {k: feed[k] for k in feed_names}
    a, b = _run(rand / "text_encoder.onnx", feed), _run(pre / "text_encoder.onnx", feed)
    d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    check(f"{fam} text_encoder.onnx pre vs rand", d <= TOL,
          f"max|diff| {d:.3e} on {list(a.shape)} (max|out| {float(np.abs(a).max()):.3e})")


# ---------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=None,
                   help="exports go here (default /tmp/check-pretrained, with --break "
                        "/tmp/check-pretrained-break)")
    p.add_argument("--ckpt-root", type=Path, default=None,
                   help="checkpoints go to CKPT_ROOT/ckpt-<family> (default /tmp; with --break "
                        "the work dir)")
    p.add_argument("--families", default="siglip,blip,mobileclip")
    p.add_argument("--break", dest="brk", action="store_true",
                   help="scale every checkpoint weight by 1.001: the check must fail")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    work = a.work or Path("/tmp/check-pretrained-break" if a.brk else "/tmp/check-pretrained")
    ckroot = a.ckpt_root or (work if a.brk else Path("/tmp"))
    fixtures = (ROOT / "models" / "fixtures").resolve()
    for d in (work, ckroot):
        if d.resolve().is_relative_to(fixtures):
            raise SystemExit("refusing to write under models/fixtures/")
    work.mkdir(parents=True, exist_ok=True)
    for fam in a.families.split(","):
        print(f"\n===== {fam} =====", flush=True)
        rand, pre, ck = work / f"rand-{fam}", work / f"pre-{fam}", ckroot / f"ckpt-{fam}"
        for d in (rand, pre, ck):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        ef.main(["--family", fam, "--size", "tiny", "--out", str(rand)])
        if fam != "mobileclip":
            et.main(["--family", fam, "--size", "tiny", "--out", str(rand), "--skip-image-check",
                     "--tokenizer", str(TOK_DIR / fam / "tokenizer.json")])
        if fam == "siglip":
            make_siglip_ckpt(ck, a.brk)
            x, extra = str(ck), []
        elif fam == "blip":
            make_blip_ckpt(ck, a.brk)
            x, extra = str(ck), []
        else:
            pt, cfg = make_mobileclip_ckpt(ck, a.brk)
            x, extra = str(pt), ["--openclip-model", str(cfg)]
        print(f"checkpoint: {x}: {sorted(f.name for f in Path(ck).iterdir())}", flush=True)
        ef.main(["--family", fam, "--pretrained", x, "--out", str(pre)] + extra)
        if fam != "mobileclip":
            et.main(["--family", fam, "--pretrained", x, "--out", str(pre)])
        print(f"\n----- {fam}: pretrained vs random -----")
        compare_image(fam, rand, pre)
        compare_model_json(fam, rand, pre, x, text=fam != "mobileclip")
        if fam != "mobileclip":
            compare_text(fam, rand, pre)
    print(f"\n{len(FAILURES)} failure(s) ({time.time() - t0:.0f}s)"
          + (f": {FAILURES}" if FAILURES else ""))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
