#!/usr/bin/env python3
"""Export the TEXT tower of the tiny random SigLIP / BLIP models (or, with --pretrained, of
a real checkpoint) whose image towers export_family.py writes (same builders, same seed, so the weights are the ones behind the
committed image_encoder.onnx), plus the tokenizer.json, reference embeddings and text.json.

  --family siglip   SiglipModel.get_text_features: text transformer, LAST-token pooling
                    (position 63: SigLIP needs padding="max_length", 64), then the head.
                    text_encoder.onnx: input_ids int64 [batch,64] -> text_embeds f32 [batch,D]
                    (no attention_mask input: SigLIP is run without one).
  --family blip     BlipForImageTextRetrieval ITC path (use_itm_head=False):
                    text_proj(text_encoder(input_ids, attention_mask)[0][:, 0]).
                    text_encoder.onnx: input_ids int64 [batch,seq], attention_mask int64
                    [batch,seq] -> text_embeds f32 [batch,D]  (batch and seq dynamic).

Outputs are projected and NOT L2-normalised.  torch.onnx.export(dynamo=False), opset 17,
do_constant_folding=True, traced at batch 2; onnx.checker (full_check); tract-onnx op check;
onnxruntime vs PyTorch on the tokenizer parity strings at batch 1 and 3 (fails at a cosine
below 0.9999 or above --tolerance).

SigLIP tiny caveat: export_family.SIGLIP_TINY gives the text tower hidden_size 16 and, by
SiglipTextConfig's default, projection_size 16, while the image embedding is 32 wide
(vision hidden_size): the two could not be compared.  Any change to the text config before
the model is built changes the vision weights too (same RNG stream), so the model is built
exactly as export_family builds it and then ONLY the text head is replaced by an
nn.Linear(16, 32) drawn from torch.Generator().manual_seed(seed + 3000) (weight normal
with the std of the head transformers' _init_weights made, bias 0: redraw_siglip_text_head)
and config.text_config.projection_size set to 32.  Every other weight is the committed
model's (checked: the image side is re-exported and compared with image_encoder.onnx).

BLIP tiny caveat: with transformers' init the random text tower maps every prompt to almost
the same direction (pairwise cosine ~0.99999, recorded in text.json); the embeddings test the
graph, not discrimination between labels.

Tokenization (what clip-edge does in Rust): tokenizers.Tokenizer.from_file(--tokenizer) with
truncation to the context length and padding to it (BLIP: 35, pad 0 '[PAD]'; SigLIP: 64,
pad 1 '</s>'); SigLIP first applies SiglipTokenizer.canonicalize_text (lowercase, drop
string.punctuation, collapse whitespace, strip), which transformers does outside
tokenizer.json.  See quantize/tests/fixtures/tokenizers/README.md.

--pretrained NAME_OR_DIR (a hub name, or a local directory: SiglipModel /
BlipForImageTextRetrieval.from_pretrained) exports a real checkpoint's text tower instead
(--size and --tokenizer are then ignored).  DIR/tokenizer.json comes from the checkpoint:
SigLIP: UdopConverter(SiglipTokenizer.from_pretrained(x)).converted() of its spiece.model,
padding/truncation cleared; context length = text_config.max_position_embeddings.  BLIP: the
checkpoint's tokenizer.json (else AutoTokenizer.from_pretrained(x).backend_tokenizer saved);
context length 35 (BLIP's max_txt_len; not in the checkpoint).  The pad id is the
tokenizer's.  It is compared with the checkpoint's transformers tokenizer on the parity
strings (recorded in text.json; differences are warned about).  If --out has
export_family's model.json (same family), its "text" section (tokenizer_file,
context_length, padding, attention_mask, pad_token_id: what clip-quantize reads) and
"text_encoder" entry are written, except under models/fixtures/.

Examples (from the repository root; offline):
  python3 models/export/export_text.py --family siglip --size tiny --out models/fixtures/siglip-tiny \\
      --tokenizer quantize/tests/fixtures/tokenizers/siglip/tokenizer.json
  python3 models/export/export_text.py --family blip --size tiny --out models/fixtures/blip-tiny \\
      --tokenizer quantize/tests/fixtures/tokenizers/blip/tokenizer.json
  python3 models/export/export_text.py --family siglip --pretrained ckpt/siglip-base-patch16-224 --out out/siglip-b16
  python3 models/export/export_text.py --family blip --pretrained Salesforce/blip-itm-base-coco --out out/blip-base
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import string
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import export_clip as ec  # noqa: E402
import export_family as ef  # noqa: E402
from export_family import build_blip, build_siglip  # noqa: E402

PARITY_DIR = ROOT / "quantize" / "tests" / "fixtures" / "tokenizers"
PROMPTS = ["a photo of a red circle.", "a photo of a dog", "café crème", "一只猫的照片"]
MIN_COSINE = 0.9999
FAMILY = {
    "siglip": dict(context_length=64, pad_token="</s>", pad_id=1, attention_mask=False,
                   dynamic_seq=False),
    "blip": dict(context_length=35, pad_token="[PAD]", pad_id=0, attention_mask=True,
                 dynamic_seq=True),
}


# ---------------------------------------------------------------------------
# Towers
# ---------------------------------------------------------------------------

class SiglipTextTower(nn.Module):
    """SiglipModel.get_text_features(input_ids).pooler_output (no attention mask)."""

    def __init__(self, model):
        super().__init__()
        self.text_model = model.text_model

    def forward(self, input_ids):
        return self.text_model(input_ids=input_ids).pooler_output


class BlipTextTower(nn.Module):
    """BlipForImageTextRetrieval's ITC text feature before its L2 normalisation."""

    def __init__(self, model):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.text_proj = model.text_proj

    def forward(self, input_ids, attention_mask):
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        return self.text_proj(hidden[:, 0, :])


def redraw_siglip_text_head(model, seed: int) -> dict:
    old = model.text_model.head
    d_img = int(model.config.vision_config.hidden_size)
    info = dict(in_features=old.in_features, old_out_features=old.out_features,
                new_out_features=d_img)
    if old.out_features == d_img:
        info["replaced"] = False
        return info
    g = torch.Generator().manual_seed(seed + 3000)
    head = nn.Linear(old.in_features, d_img)
    std = float(old.weight.std())  # the std transformers' _init_weights gave this head
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * std)
        head.bias.zero_()
    model.text_model.head = head.eval()
    model.config.text_config.projection_size = d_img
    info.update(replaced=True, generator_seed=seed + 3000,
                init=f"weight N(0, {std:.6g}^2) (the std of the head transformers' _init_weights "
                     "made), bias 0")
    return info


# ---------------------------------------------------------------------------
# Tokenization
# ---------------------------------------------------------------------------

def canonicalize_text(text: str) -> str:
    """transformers SiglipTokenizer.canonicalize_text (do_lower_case=True, no kept string)."""
    text = text.lower()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def make_tokenize(family: str, tokenizer_file: Path, fam: dict | None = None):
    from tokenizers import Tokenizer
    f = fam or FAMILY[family]
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.enable_truncation(max_length=f["context_length"])
    tok.enable_padding(length=f["context_length"], pad_id=f["pad_id"], pad_token=f["pad_token"])

    def tokenize(texts):
        if family == "siglip":
            texts = [canonicalize_text(t) for t in texts]
        encs = tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask
    return tokenize


def check_against_parity(family: str, tokenize) -> int:
    """The tokenization above reproduces quantize/tests/fixtures/tokenizers/parity.json."""
    p = PARITY_DIR / "parity.json"
    if not p.exists():
        return 0
    cases = [c for c in json.loads(p.read_text())["cases"] if c["family"] == family]
    ids, mask = tokenize([c["text"] for c in cases])
    for c, r, m in zip(cases, ids, mask):
        if list(r) != c["input_ids"] or list(m) != c["attention_mask"]:
            raise SystemExit(f"tokenization differs from parity.json on {c['text'][:40]!r}")
    return len(cases)


def parity_texts() -> list[str]:
    p = PARITY_DIR / "parity.json"
    if p.exists():
        seen = []
        for c in json.loads(p.read_text())["cases"]:
            if c["text"] not in seen:
                seen.append(c["text"])
        return seen
    return list(PROMPTS)


# ---------------------------------------------------------------------------
# Export + checks
# ---------------------------------------------------------------------------

def export(tower, family: str, example: dict, path: Path):
    names = list(example)
    dyn = {n: ({0: "batch", 1: "seq"} if FAMILY[family]["dynamic_seq"] else {0: "batch"})
           for n in names}
    dyn["text_embeds"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(tower, tuple(torch.from_numpy(example[n]) for n in names), str(path),
                          input_names=names, output_names=["text_embeds"], dynamic_axes=dyn,
                          opset_version=ec.OPSET, do_constant_folding=True, dynamo=False)


def check_graph(path: Path, family: str) -> dict:
    if not FAMILY[family]["dynamic_seq"]:
        return ef.check_graph(path)  # batch the only dynamic axis
    import collections
    import onnx
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    ins = {i.name: ec.describe_io(i) for i in m.graph.input}
    outs = {o.name: ec.describe_io(o) for o in m.graph.output}
    unknown = sorted(set(ops) - ef.TRACT_ONNX_OPS)
    if unknown:
        print(f"warning: {path.name} uses ops not in the tract-onnx list: {unknown}", file=sys.stderr)
    return dict(ops=dict(sorted(ops.items())), inputs=ins, outputs=outs,
                nodes=len(m.graph.node), tract_unknown_ops=unknown)


def run_ort(sess, family, ids, mask):
    feed = {"input_ids": ids}
    if FAMILY[family]["attention_mask"]:
        feed["attention_mask"] = mask
    return sess.run(None, feed)[0]


def run_torch(tower, family, ids, mask):
    with torch.no_grad():
        if FAMILY[family]["attention_mask"]:
            return tower(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        return tower(torch.from_numpy(ids)).numpy()


def verify_image_side(family: str, size: str, seed: int, out: Path, model) -> dict:
    """Same weights as the committed image_encoder.onnx: re-export the image side with
    export_family to a temp dir and compare both ONNX files, and the rebuilt PyTorch image
    tower, on the same inputs."""
    committed = out / "image_encoder.onnx"
    if not committed.exists():
        return dict(checked=False)
    S = int(model.config.vision_config.image_size)
    x = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(seed + 4000)).numpy()
    with tempfile.TemporaryDirectory() as d:
        ef.main(["--family", family, "--size", size, "--out", d, "--seed", str(seed)])
        fresh = ef._session(Path(d) / "image_encoder.onnx").run(None, {"pixel_values": x})[0]
    old = ef._session(committed).run(None, {"pixel_values": x})[0]
    tower = (ef.SiglipImageTower if family == "siglip" else ef.BlipImageTower)(model).eval()
    with torch.no_grad():
        pt = tower(torch.from_numpy(x)).numpy()
    res = dict(checked=True,
               max_abs_diff_reexport_vs_committed=float(np.abs(fresh - old).max()),
               max_abs_diff_torch_vs_committed=float(np.abs(pt - old).max()),
               min_cosine_torch_vs_committed=float(ef._cosines(pt, old).min()))
    print(f"image side: {res}")
    if res["max_abs_diff_reexport_vs_committed"] > 1e-5 or res["min_cosine_torch_vs_committed"] < 0.999999:
        raise SystemExit("rebuilt model does not match the committed image_encoder.onnx")
    return res


# ---------------------------------------------------------------------------
# Pretrained checkpoints (--pretrained NAME_OR_DIR)
# ---------------------------------------------------------------------------

def _cached(x: str, fname: str):
    from transformers.utils import cached_file
    try:
        return cached_file(x, fname, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except Exception:  # noqa: BLE001  (not there / offline)
        return None


def checkpoint_tokenizer(family: str, x: str, out: Path, model) -> tuple[Path, dict]:
    """Writes out/tokenizer.json from the checkpoint's tokenizer; returns its path and what
    it is (source, pad token and id, context length).
      blip:   the checkpoint's tokenizer.json (copied; padding/truncation cleared if it sets
              them), else AutoTokenizer.from_pretrained(x).backend_tokenizer saved.
      siglip: UdopConverter(SiglipTokenizer.from_pretrained(x)).converted() of its
              spiece.model, padding/truncation cleared (as make_parity.py makes the fixture)."""
    from tokenizers import Tokenizer
    dst = out / "tokenizer.json"
    if family == "siglip":
        from transformers import SiglipTokenizer
        from transformers.convert_slow_tokenizer import UdopConverter
        try:
            slow = SiglipTokenizer.from_pretrained(x)
        except Exception as e:  # noqa: BLE001
            raise SystemExit(
                f"{x}: SiglipTokenizer.from_pretrained failed ({type(e).__name__}: {e}). A SigLIP "
                "checkpoint needs its spiece.model; SigLIP 2 checkpoints ship Gemma's tokenizer "
                "(pad 0, no canonicalization) instead, which clip-edge's SigLIP text path does "
                "not implement") from e
        tok = UdopConverter(slow).converted()
        tok.no_padding()
        tok.no_truncation()
        tok.save(str(dst))
        pad_token, pad_id = str(slow.pad_token), int(slow.pad_token_id)
        source = (f"transformers.convert_slow_tokenizer.UdopConverter(SiglipTokenizer."
                  f"from_pretrained({x!r})).converted(), padding/truncation cleared")
        context_length = int(model.config.text_config.max_position_embeddings)
    else:
        f = _cached(x, "tokenizer.json")
        if f:
            tok = Tokenizer.from_file(f)
            if tok.padding is None and tok.truncation is None:
                if Path(f).resolve() != dst.resolve():
                    shutil.copyfile(f, dst)
                source = f"{x}: tokenizer.json (copied as is)"
            else:
                tok.no_padding()
                tok.no_truncation()
                tok.save(str(dst))
                source = f"{x}: tokenizer.json, padding/truncation cleared"
        else:
            from transformers import AutoTokenizer
            at = AutoTokenizer.from_pretrained(x)
            bt = getattr(at, "backend_tokenizer", None) or getattr(at, "_tokenizer", None)
            if bt is None:
                raise SystemExit(f"{x}: {type(at).__name__} has no tokenizers backend to save")
            bt = Tokenizer.from_str(bt.to_str())
            bt.no_padding()
            bt.no_truncation()
            bt.save(str(dst))
            source = (f"AutoTokenizer.from_pretrained({x!r}) ({type(at).__name__}) "
                      "backend_tokenizer, padding/truncation cleared")
        tok = Tokenizer.from_file(str(dst))
        pad_token = "[PAD]"
        try:
            from transformers import AutoTokenizer
            pad_token = str(AutoTokenizer.from_pretrained(x).pad_token or pad_token)
        except Exception:  # noqa: BLE001
            pass
        pad_id = tok.token_to_id(pad_token)
        if pad_id is None:
            raise SystemExit(f"{x}: pad token {pad_token!r} not in tokenizer.json")
        context_length = FAMILY["blip"]["context_length"]  # BLIP's max_txt_len, not in the checkpoint
    if pad_id != FAMILY[family]["pad_id"]:
        print(f"warning: {x}: pad id {pad_id} ({pad_token!r}), not {family}'s usual "
              f"{FAMILY[family]['pad_id']}; written to model.json text.pad_token_id",
              file=sys.stderr)
    info = dict(source=source, pad_token=pad_token, pad_token_id=int(pad_id),
                context_length=context_length)
    print(f"tokenizer: {source} -> {dst} (pad {pad_token!r}={pad_id}, {context_length} positions)")
    return dst, info


def compare_with_transformers(family: str, x: str, tokenize, fam: dict, texts) -> dict:
    """tokenizer.json as clip-edge uses it vs the checkpoint's transformers tokenizer
    (padding='max_length', truncation), on the parity strings.  Differences are printed
    and recorded, not fatal."""
    if family == "siglip":
        from transformers import SiglipTokenizer
        ref_tok = SiglipTokenizer.from_pretrained(x)
    else:
        from transformers import AutoTokenizer
        ref_tok = AutoTokenizer.from_pretrained(x)
    enc = ref_tok(list(texts), padding="max_length", max_length=fam["context_length"],
                  truncation=True)
    ids, mask = tokenize(list(texts))
    bad = [t[:40] for t, r, m, e, em in zip(texts, ids, mask, enc["input_ids"],
                                             enc["attention_mask"])
           if list(r) != list(e) or list(m) != list(em)]
    res = dict(reference=f"{type(ref_tok).__name__}.from_pretrained({x!r})(texts, "
                         f"padding='max_length', max_length={fam['context_length']}, "
                         "truncation=True)",
               strings=len(texts), differing=bad)
    if bad:
        print(f"WARNING: tokenizer.json differs from {type(ref_tok).__name__} on {len(bad)}/"
              f"{len(texts)} strings: {bad[:5]}", file=sys.stderr)
    else:
        print(f"tokenizer.json == {type(ref_tok).__name__} on all {len(texts)} strings")
    return res


def verify_image_side_pretrained(family: str, out: Path, model) -> dict:
    """The image_encoder.onnx in --out (export_family --pretrained) vs this model's image
    tower: same checkpoint."""
    path = out / "image_encoder.onnx"
    if not path.exists():
        return dict(checked=False)
    S = int(model.config.vision_config.image_size)
    x = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(4000)).numpy()
    got = ef._session(path).run(None, {"pixel_values": x})[0]
    tower = (ef.SiglipImageTower if family == "siglip" else ef.BlipImageTower)(model).eval()
    with torch.no_grad():
        pt = tower(torch.from_numpy(x)).numpy()
    res = dict(checked=True, max_abs_diff_torch_vs_onnx=float(np.abs(pt - got).max()),
               min_cosine_torch_vs_onnx=float(ef._cosines(pt, got).min()))
    print(f"image side: {res}")
    if res["min_cosine_torch_vs_onnx"] < 0.9999:
        raise SystemExit(f"{path} is not this checkpoint's image tower")
    return res


def update_model_json(out: Path, family: str, text_doc: dict):
    """Adds/updates the "text" section and "text_encoder" entry of export_family's
    model.json in --out (what clip-quantize's text_description.rs reads: family,
    text.tokenizer_file, text.context_length, text.pad_token_id).  The committed fixtures
    under models/fixtures/ are left alone."""
    mj = out / "model.json"
    if not mj.exists():
        return
    fixtures = (ROOT / "models" / "fixtures").resolve()
    if out.resolve().is_relative_to(fixtures):
        print(f"model.json: {mj} is a committed fixture; not updated")
        return
    doc = json.loads(mj.read_text())
    if doc.get("format") != "clip-edge-model/1" or doc.get("family") != family:
        print(f"warning: {mj} is not a clip-edge-model/1 {family} model.json; not updated",
              file=sys.stderr)
        return
    if doc.get("pretrained") != text_doc.get("pretrained"):
        print(f"warning: {mj} has pretrained={doc.get('pretrained')!r}, the text tower "
              f"{text_doc.get('pretrained')!r}", file=sys.stderr)
    te = text_doc["text_encoder"]
    old = doc.get("text") or {}
    doc["text"] = dict(
        exported=True, tokenizer_file=text_doc["tokenizer_file"],
        context_length=text_doc["context_length"], padding=text_doc["padding"],
        attention_mask=text_doc["attention_mask"], pad_token_id=text_doc["pad_token_id"],
        pad_token=text_doc["pad_token"], text_preprocessing=text_doc["text_preprocessing"],
        tokenizer_sha256=text_doc["tokenizer_sha256"],
        vocab_size=old.get("vocab_size"), tokenizer=old.get("tokenizer"), details="text.json")
    doc["text_encoder"] = dict(
        file=te["file"], inputs=list(te["inputs"]), output=te["output"]["name"],
        input_shape=next(iter(te["inputs"].values()))["shape"], output_shape=te["output"]["shape"],
        bytes=te["bytes"], sha256=te["sha256"])
    mj.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"model.json: text section and text_encoder written to {mj}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Examples" + __doc__.split("Examples", 1)[1])
    p.add_argument("--family", required=True, choices=["siglip", "blip"])
    p.add_argument("--size", default="tiny", choices=["tiny", "full"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="tokenizer.json to copy and use (random models; required without "
                        "--pretrained, ignored with it: the checkpoint's tokenizer is used)")
    p.add_argument("--pretrained", metavar="NAME_OR_DIR", default=None,
                   help="export the text tower of a real checkpoint (SiglipModel / "
                        "BlipForImageTextRetrieval .from_pretrained: hub name or local dir); "
                        "--size is then ignored and DIR/tokenizer.json is made from the "
                        "checkpoint's tokenizer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--skip-image-check", action="store_true")
    a = p.parse_args(argv)
    if a.pretrained is None and a.tokenizer is None:
        p.error("--tokenizer is required without --pretrained")
    if a.pretrained is not None and a.tokenizer is not None:
        print("note: --tokenizer is ignored with --pretrained (the checkpoint's tokenizer is "
              "used)", file=sys.stderr)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    t0 = time.time()
    fam = dict(FAMILY[a.family])
    a.out.mkdir(parents=True, exist_ok=True)

    tok_info = None
    if a.pretrained is not None:
        model, img_tower, meta, _ = ef.load_pretrained(a.family, a.pretrained, a.out)
        tokenizer_file, tok_info = checkpoint_tokenizer(a.family, a.pretrained, a.out, model)
        fam.update(context_length=tok_info["context_length"], pad_id=tok_info["pad_token_id"],
                   pad_token=tok_info["pad_token"])
        image_check = (dict(checked=False) if a.skip_image_check
                       else verify_image_side_pretrained(a.family, a.out, model))
    else:
        tokenizer_file = a.tokenizer
        model, img_tower, meta = build_model(a.family, a.size, a.seed)
        image_check = (dict(checked=False) if a.skip_image_check
                       else verify_image_side(a.family, a.size, a.seed, a.out, model))
    head_info = None
    if a.family == "siglip":
        if a.pretrained is None:
            head_info = redraw_siglip_text_head(model, a.seed)
        elif model.text_model.head.out_features != int(meta["embed_dim"]):
            raise SystemExit(f"{a.pretrained}: text head is {model.text_model.head.out_features} "
                             f"wide, the image embedding {meta['embed_dim']}")
        tower = SiglipTextTower(model).eval()
    else:
        tower = BlipTextTower(model).eval()
    D = int(meta["embed_dim"])

    tokenize = make_tokenize(a.family, tokenizer_file, fam)
    # parity.json holds the ids of the fixture tokenizers: only meaningful for them (a
    # checkpoint's tokenizer is compared with its transformers tokenizer instead).
    n_checked = check_against_parity(a.family, tokenize) if a.pretrained is None else 0
    if a.pretrained is not None:
        tok_info["vs_transformers"] = compare_with_transformers(a.family, a.pretrained, tokenize,
                                                                fam, parity_texts())
    texts = parity_texts()
    ids, mask = tokenize(texts)

    # The tower is the model's own computation.
    with torch.no_grad():
        ti, tm = torch.from_numpy(ids[:3]), torch.from_numpy(mask[:3])
        if a.family == "siglip":
            ref = model.get_text_features(input_ids=ti)
            ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
            assert torch.equal(tower(ti), ref), "SiglipTextTower != get_text_features"
        else:
            S = int(model.config.vision_config.image_size)
            pv = torch.randn(2, 3, S, S, generator=torch.Generator().manual_seed(a.seed + 7))
            out = model(input_ids=ti, attention_mask=tm, pixel_values=pv, use_itm_head=False)
            img = torch.nn.functional.normalize(ef.BlipImageTower(model)(pv), dim=-1)
            txt = torch.nn.functional.normalize(tower(ti, tm), dim=-1)
            d = float((img @ txt.t() - out.itm_score).abs().max())
            assert d < 1e-5, f"BlipTextTower disagrees with the ITC path ({d})"

    path = a.out / "text_encoder.onnx"
    ex = {"input_ids": ids[1:3]}
    if fam["attention_mask"]:
        ex["attention_mask"] = mask[1:3]
    export(tower, a.family, ex, path)
    info = check_graph(path, a.family)
    print(f"exported {path} ({path.stat().st_size / 1e6:.3f} MB, {info['nodes']} nodes) "
          f"inputs={info['inputs']} outputs={info['outputs']}")
    exp_in = ["batch", "seq"] if fam["dynamic_seq"] else ["batch", fam["context_length"]]
    want_in = {"input_ids": exp_in}
    if fam["attention_mask"]:
        want_in["attention_mask"] = exp_in
    if info["inputs"] != want_in or info["outputs"] != {"text_embeds": ["batch", D]}:
        raise SystemExit(f"unexpected I/O {info['inputs']} {info['outputs']}")

    sess = ef._session(path)
    rows = {}
    for b in (1, 3):
        diffs, coss = [], []
        for i in range(0, len(texts), b):
            sl = slice(i, i + b)
            got = run_ort(sess, a.family, ids[sl], mask[sl])
            ref = run_torch(tower, a.family, ids[sl], mask[sl])
            diffs.append(float(np.abs(got - ref).max()))
            coss.append(float(ef._cosines(got, ref).min()))
        rows[f"batch{b}"] = dict(max_abs_diff=max(diffs), min_cosine=min(coss), strings=len(texts))
        print(f"  batch={b}: max|onnx-torch|={max(diffs):.3e}  min cosine={min(coss):.9f}")
    extra = {}
    if fam["dynamic_seq"]:  # BLIP: unpadded lengths (seq dynamic)
        diffs, coss = [], []
        for t in texts[:6]:
            i1, m1 = tokenize([t])
            n = int(m1.sum())
            got = run_ort(sess, a.family, i1[:, :n], m1[:, :n])
            ref = run_torch(tower, a.family, i1[:, :n], m1[:, :n])
            padded = run_ort(sess, a.family, i1, m1)
            diffs.append(float(np.abs(got - ref).max()))
            coss.append(float(min(ef._cosines(got, ref).min(), ef._cosines(got, padded).min())))
        extra = dict(unpadded=dict(max_abs_diff=max(diffs), min_cosine_vs_torch_and_padded=min(coss)))
        print(f"  unpadded: {extra['unpadded']}")
    worst = max(r["max_abs_diff"] for r in rows.values())
    worst_cos = min(r["min_cosine"] for r in rows.values())
    if worst > a.tolerance or worst_cos < MIN_COSINE:
        raise SystemExit(f"parity failed: {worst} {worst_cos}")

    tok_dst = a.out / "tokenizer.json"
    if tokenizer_file.resolve() != tok_dst.resolve():
        shutil.copyfile(tokenizer_file, tok_dst)
    pids, pmask = tokenize(PROMPTS)
    emb = run_ort(sess, a.family, pids, pmask).astype(np.float32)
    np.save(a.out / "ort_text_embeds.npy", emb)
    with torch.no_grad():
        pt = run_torch(tower, a.family, pids, pmask)
    prompt_cos = float(ef._cosines(emb, pt).min())
    pair = ef._cosines(np.repeat(emb, len(emb), 0), np.tile(emb, (len(emb), 1))).reshape(
        len(emb), len(emb))
    off = ~np.eye(len(emb), dtype=bool)

    import onnx
    import onnxruntime
    import tokenizers
    import transformers
    doc = dict(
        format="clip-edge-text/1",
        family=a.family, size=None if a.pretrained else a.size, seed=a.seed,
        pretrained=a.pretrained, model=meta["model"], hf_class=meta["hf_class"],
        text_encoder=dict(
            file="text_encoder.onnx",
            inputs={k: dict(dtype="int64", shape=v) for k, v in info["inputs"].items()},
            output=dict(name="text_embeds", dtype="float32", shape=["batch", D]),
            embeddings_normalized=False,
            pooling=("last token (position context_length-1) then head" if a.family == "siglip"
                     else "first token ([CLS]) of text_encoder, then text_proj"),
            bytes=path.stat().st_size, sha256=ec.sha256(path), opset=ec.OPSET,
            ops=info["ops"], nodes=info["nodes"], tract_unknown_ops=info["tract_unknown_ops"]),
        tokenizer_file="tokenizer.json", tokenizer_sha256=ec.sha256(tok_dst),
        tokenizer_source=(tok_info["source"] if tok_info is not None
                          else str(a.tokenizer.resolve().relative_to(ROOT))
                          if a.tokenizer.resolve().is_relative_to(ROOT) else str(a.tokenizer)),
        tokenizer_from_checkpoint=tok_info,
        context_length=fam["context_length"], padding="max_length", truncation=True,
        attention_mask=fam["attention_mask"], pad_token=fam["pad_token"],
        pad_token_id=fam["pad_id"],
        text_preprocessing=("SiglipTokenizer.canonicalize_text before tokenizer.json: lowercase, "
                            "remove string.punctuation, re.sub(r'\\s+', ' '), strip"
                            if a.family == "siglip" else None),
        prompts=PROMPTS,
        prompt_input_ids=pids.tolist(),
        reference_embeddings=dict(
            file="ort_text_embeds.npy",
            note="onnxruntime embeddings float32 [N,D] of `prompts` (one row each, in order), "
                 "tokenized as above",
            min_cosine_vs_torch=prompt_cos,
            min_pairwise_cosine=float(pair[off].min()), max_pairwise_cosine=float(pair[off].max())),
        siglip_text_head=head_info,
        image_side_check=image_check,
        export=dict(exporter="torch.onnx.export(dynamo=False)", do_constant_folding=True,
                    traced_at_batch=2, tokenizer_cases_checked_against_parity_json=n_checked,
                    parity_inputs=f"the {len(texts)} strings of "
                                  "quantize/tests/fixtures/tokenizers/parity.json, tokenized as above",
                    parity_vs_torch=dict(**rows, **extra),
                    torch_version=torch.__version__.split("+")[0], onnx_version=onnx.__version__,
                    onnxruntime_version=onnxruntime.__version__,
                    transformers_version=transformers.__version__,
                    tokenizers_version=tokenizers.__version__),
    )
    (a.out / "text.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    update_model_json(a.out, a.family, doc)
    print(f"PARITY {a.family}-{a.pretrained or a.size} text: max|onnx-torch| {worst:.3e}, min cosine "
          f"{worst_cos:.9f}; {path.stat().st_size / 1e6:.3f} MB ({time.time() - t0:.1f}s)")


def build_model(family: str, size: str, seed: int):
    """export_family.build_siglip / build_blip, keeping the whole model: they return only
    the image tower, so the transformers class they instantiate is swapped, for the call,
    for a subclass that records its instance (same __init__, same RNG stream)."""
    import transformers
    cls_name = "SiglipModel" if family == "siglip" else "BlipForImageTextRetrieval"
    base = getattr(transformers, cls_name)
    made = []

    class Recording(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    Recording.__name__ = Recording.__qualname__ = cls_name
    owner = sys.modules[base.__module__]  # transformers' lazy module resolves names there
    setattr(owner, cls_name, Recording)
    setattr(transformers, cls_name, Recording)
    try:
        tower, meta, _ = (build_siglip if family == "siglip" else build_blip)(size, seed)
    finally:
        setattr(owner, cls_name, base)
        setattr(transformers, cls_name, base)
    assert len(made) == 1, made
    model = made[0].eval()
    assert tower.vision_model is model.vision_model
    return model, tower, meta


if __name__ == "__main__":
    main()
