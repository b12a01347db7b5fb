#!/usr/bin/env python3
"""Train the tiny "shapes" BLIP (image-text contrastive path) from scratch, then export it.

Model: exactly transformers' ``BlipForImageTextRetrieval`` used with
``use_itm_head=False`` (BLIP's ITC head):

    image embedding = vision_proj(vision_model(pixel_values)[0][:, 0])
    text embedding  = text_proj(text_encoder(input_ids, attention_mask)[0][:, 0])
                      (BERT text encoder, CLS pooling, no cross-attention: no
                      encoder_hidden_states are passed)
    score           = cos(image, text) / temp, softmax over the labels

with tiny widths (see VISION / TEXT below) and BLIP's learnable temperature
``temp`` (init 0.07, clamped to [0.001, 0.5]; transformers' class has no such
parameter, so it is kept beside the model and written to model.json as
logit_scale = 1/temp).

Data: the procedurally generated coloured shapes of ../shapes/shapes_data.py
(imported, not copied), 30 labels "{colour} {shape}".  Training images are
rendered at random sizes/aspect ratios and squashed to 384x384 (PIL bicubic),
exactly BlipImageProcessor's resize; a pool is rendered once up front by worker
processes, then batches are sampled from it with a random horizontal flip.

Captions: the 8 templates of shapes_data.TEMPLATES (one of them is the zero-shot
template "a photo of a {}."), tokenised with the WordPiece tokenizer built here
(tokenizer.json, bert-base-uncased's pipeline, vocabulary trained on the
captions plus the inline English text of tok_corpus.py) through
``BertTokenizerFast(tokenizer_file=...)`` with padding="max_length",
max_length=35, truncation=True, as at inference time.

Loss: symmetric InfoNCE over image/caption similarities / temp with
label-aware soft targets (every caption of the same label in the batch is a
positive), as ../shapes/train.py.  AdamW, linear warm-up then cosine decay,
gradient clipping 1.0, one torch thread.

After training it exports image_encoder.onnx, text_encoder.onnx (opset 17,
torch.onnx.export(dynamo=False), eager attention), checks them against PyTorch
with onnxruntime, writes ort_image_embeds.npy for ../shapes/samples/*.png and
model.json, and runs eval_reference.py.

The shipped model was trained in two stages (seeds fixed; see README.md):
    python3 train.py --ckpt checkpoints/stage1.pt --no-export      # 3200 steps, pool 8000, seed 1234
    python3 train.py --init checkpoints/stage1.pt --seed 4321 --steps 1500 --warmup 100 --pool 6000
(the second run also exports, writes model.json and runs eval_reference.py).

Other examples (from this directory):
    python3 train.py --export-only         # re-export checkpoints/shapes_blip.pt
    python3 train.py --tokenizer-only      # only (re)build tokenizer.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = os.path.join(os.path.dirname(HERE), "shapes")
sys.path.insert(0, SHAPES)
sys.path.insert(0, HERE)

import shapes_data as sd  # noqa: E402  (../shapes/shapes_data.py)
import tok_corpus  # noqa: E402

IMAGE_SIZE = 384
VISION = dict(image_size=IMAGE_SIZE, patch_size=48, hidden_size=64, num_hidden_layers=4,
              num_attention_heads=4, intermediate_size=256, hidden_act="gelu",
              initializer_range=0.02)  # BlipVisionConfig's default 1e-10 cannot train
TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=35, hidden_act="gelu",
            pad_token_id=0, bos_token_id=2, sep_token_id=3, eos_token_id=3)
PROJECTION_DIM = 64          # image_text_hidden_size
CONTEXT_LENGTH = 35          # BLIP's max_length for retrieval text
TEMP_INIT, TEMP_MIN, TEMP_MAX = 0.07, 0.001, 0.5
ZS_TEMPLATE = "a photo of a {}."
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4
VOCAB_SIZE = 1000
OPSET = 17
TOKENIZER_FILE = os.path.join(HERE, "tokenizer.json")


# ---------------------------------------------------------------- tokenizer

def training_captions():
    return [[tpl.format(lab) for tpl in sd.TEMPLATES] for lab in sd.LABELS]


def build_tokenizer(path=TOKENIZER_FILE, vocab_size=VOCAB_SIZE):
    """bert-base-uncased's pipeline with a WordPiece vocabulary trained here."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    # strip_accents=None: follows lowercase (accents stripped), as bert-base-uncased.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    corpus = [c for row in training_captions() for c in row] + tok_corpus.lines()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=1,
                                        special_tokens=SPECIAL_TOKENS, continuing_subword_prefix="##",
                                        limit_alphabet=1000, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    ids = [tok.token_to_id(s) for s in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS))), ids
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.no_padding()
    tok.no_truncation()
    tok.save(path)
    # Every word of every training caption must be a whole token.
    for row in training_captions():
        for c in row:
            toks = tok.encode(c).tokens
            assert not any(t.startswith("##") or t == "[UNK]" for t in toks), (c, toks)
    print(f"wrote {path}: vocab {tok.get_vocab_size()}", flush=True)
    return tok.get_vocab_size()


def load_tokenizer(path=TOKENIZER_FILE):
    from transformers import BertTokenizerFast
    return BertTokenizerFast(tokenizer_file=path)


def tokenize(tokenizer, texts):
    enc = tokenizer(list(texts), padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
                    return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


# ---------------------------------------------------------------- model

def build_model(vocab_size, attn="eager"):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    cfg = BlipConfig(text_config=dict(TEXT, vocab_size=vocab_size), vision_config=dict(VISION),
                     image_text_hidden_size=PROJECTION_DIM)
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = attn
    return BlipForImageTextRetrieval(cfg)


def image_embeds(model, pixel_values):
    return model.vision_proj(model.vision_model(pixel_values=pixel_values)[0][:, 0, :])


def text_embeds(model, input_ids, attention_mask):
    return model.text_proj(model.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0][:, 0, :])


class ImageTower(nn.Module):
    """BlipForImageTextRetrieval's ITC image feature before L2 normalisation."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.vision_proj = model.vision_proj

    def forward(self, pixel_values):
        return self.vision_proj(self.vision_model(pixel_values=pixel_values)[0][:, 0, :])


class TextTower(nn.Module):
    """BlipForImageTextRetrieval's ITC text feature (use_itm_head=False) before L2 normalisation."""

    def __init__(self, model):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.text_proj = model.text_proj

    def forward(self, input_ids, attention_mask):
        h = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        return self.text_proj(h[:, 0, :])


# ---------------------------------------------------------------- data

def blip_processor():
    from PIL import Image
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    return BlipImageProcessorPil(
        do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=Image.BICUBIC,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(sd.CLIP_MEAN), image_std=list(sd.CLIP_STD), do_convert_rgb=True)


def squash_u8(img):
    """BlipImageProcessor's resize: squash to 384x384, PIL bicubic -> uint8 HWC."""
    from PIL import Image
    return np.asarray(img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), dtype=np.uint8)


ASPECTS = [1.0, 1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3]


def random_train_image_u8(rng, nrng):
    li = rng.randrange(len(sd.LABELS))
    color, shape = sd.LABELS[li].split(" ")
    short = rng.randint(100, 320)
    ar = rng.choice(ASPECTS)
    w, h = (int(short * ar), short) if ar >= 1 else (short, int(short / ar))
    return li, squash_u8(sd.render(color, shape, w, h, rng, nrng))


def _gen_chunk(args):
    seed, n = args
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=np.int64)
    imgs = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        labels[i], imgs[i] = random_train_image_u8(rng, nrng)
    return labels, imgs


def make_pool(n, seed, workers, chunk=200):
    jobs, k = [], 0
    while k < n:
        m = min(chunk, n - k)
        jobs.append((seed * 1_000_003 + len(jobs), m))
        k += m
    labels = np.empty(n, dtype=np.int64)
    imgs = torch.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    pos = 0
    with mp.get_context("fork").Pool(workers) as pool:
        for lab, im in pool.imap(_gen_chunk, jobs):
            m = len(lab)
            labels[pos:pos + m] = lab
            imgs[pos:pos + m] = torch.from_numpy(im).permute(0, 3, 1, 2)
            pos += m
    return torch.from_numpy(labels), imgs


def make_val(n_per_class, seed):
    """In-training validation images (render_eval, own seed), preprocessed by BlipImageProcessorPil.
    Also checks that squash_u8 + normalisation equals the processor."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    proc = blip_processor()
    imgs, ys = [], []
    for li, lab in enumerate(sd.LABELS):
        c, s = lab.split(" ")
        for _ in range(n_per_class):
            w, h = rng.randint(140, 400), rng.randint(120, 320)
            imgs.append(sd.render_eval(c, s, w, h, rng, nrng))
            ys.append(li)
    x = torch.from_numpy(np.asarray(proc(images=imgs, return_tensors="np")["pixel_values"], dtype=np.float32))
    mine = normalise_u8(torch.from_numpy(np.stack([squash_u8(im) for im in imgs[:8]])).permute(0, 3, 1, 2))
    d = float((mine - x[:8]).abs().max())
    assert d < 1e-4, f"training preprocessing differs from BlipImageProcessorPil by {d}"
    return x, torch.tensor(ys), d


MEAN = torch.tensor(sd.CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(sd.CLIP_STD).view(1, 3, 1, 1)


NORM_A = (1 / 255) / STD  # (x/255 - mean)/std == x*NORM_A - NORM_B
NORM_B = MEAN / STD


def normalise_u8(x):
    return (x.float() * (1 / 255) - MEAN) / STD


@torch.no_grad()
def zero_shot_acc(model, val_x, val_y, zs_ids, zs_mask):
    was = model.training
    model.eval()
    t = F.normalize(text_embeds(model, zs_ids, zs_mask), dim=-1)
    preds = [(F.normalize(image_embeds(model, val_x[i:i + 60]), dim=-1) @ t.T).argmax(-1)
             for i in range(0, val_x.shape[0], 60)]
    model.train(was)
    return (torch.cat(preds) == val_y).float().mean().item()


# ---------------------------------------------------------------- training

def train(args, argv):
    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    # The WordPiece trainer is not bit-deterministic (tie order of equally frequent
    # pairs differs between runs; the caption tokens come out the same), so an
    # existing tokenizer.json is reused unless --rebuild-tokenizer is given.
    if args.rebuild_tokenizer or not os.path.exists(TOKENIZER_FILE):
        build_tokenizer()
    else:
        print(f"using existing {TOKENIZER_FILE}", flush=True)
    tokenizer = load_tokenizer()
    vocab = len(tokenizer.backend_tokenizer.get_vocab())
    flat = [c for row in training_captions() for c in row]
    cap_ids, cap_mask = tokenize(tokenizer, flat)
    L, T = len(sd.LABELS), len(sd.TEMPLATES)
    cap_ids = cap_ids.view(L, T, CONTEXT_LENGTH)
    cap_mask = cap_mask.view(L, T, CONTEXT_LENGTH)
    zs_ids, zs_mask = tokenize(tokenizer, [ZS_TEMPLATE.format(l) for l in sd.LABELS])
    used = sorted(set(cap_ids.flatten().tolist()))
    print(f"{L} labels x {T} templates; {len(used)} distinct token ids in captions; "
          f"longest caption {int(cap_mask.sum(-1).max())} tokens", flush=True)

    t0 = time.time()
    pool_y, pool_x = make_pool(args.pool, args.seed, args.workers)
    render_secs = time.time() - t0
    print(f"rendered pool of {args.pool} images in {render_secs:.1f}s ({pool_x.numel() / 2**30:.2f} GiB)", flush=True)
    val_x, val_y, pre_diff = make_val(4, args.seed + 777_777)
    print(f"val: {len(val_y)} images; squash+normalise vs BlipImageProcessorPil max abs {pre_diff:.2e}", flush=True)

    model = build_model(vocab, attn="eager")
    temp = nn.Parameter(torch.tensor(TEMP_INIT))
    prev_meta = None
    if args.init:
        ck0 = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(ck0["state_dict"])
        with torch.no_grad():
            temp.fill_(ck0["temp"])
        prev_meta = ck0.get("meta")
        print(f"initialised from {args.init} (temp {ck0['temp']:.4f})", flush=True)
    model.train()
    n_vis = sum(p.numel() for p in model.vision_model.parameters()) + sum(p.numel() for p in model.vision_proj.parameters())
    # text_encoder's cross-attention weights exist (BLIP's BERT is a decoder-capable
    # BertModel) but are unused on the ITC path and do not reach the ONNX.
    n_txt_used = sum(p.numel() for n, p in model.text_encoder.named_parameters() if "crossattention" not in n) + \
        sum(p.numel() for p in model.text_proj.parameters())
    print(f"params: vision+proj {n_vis / 1e6:.3f}M, text+proj (ITC path) {n_txt_used / 1e6:.3f}M, "
          f"model total incl. unused ITM/cross-attn {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M", flush=True)
    # Only the ITC path is trained.
    params = [(n, p) for n, p in model.named_parameters()
              if n.startswith(("vision_model.", "vision_proj.", "text_proj.")) or
              (n.startswith("text_encoder.") and "crossattention" not in n)]
    decay = [p for n, p in params if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "embeddings" not in n)] + [temp]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    xbuf = torch.empty((args.batch, 3, IMAGE_SIZE, IMAGE_SIZE))
    t_train = time.time()
    log = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        idx = torch.randint(0, args.pool, (args.batch,), generator=gen)
        y = pool_y[idx]
        x = pool_x[idx]
        if int(torch.randint(0, 2, (1,), generator=gen)):
            x = torch.flip(x, dims=[3])
        # normalise into a reused buffer (allocating 113 MB per step cost ~0.2 s)
        x = xbuf.copy_(x).mul_(NORM_A).sub_(NORM_B)
        tpl = torch.randint(0, T, (args.batch,), generator=gen)
        ie = F.normalize(image_embeds(model, x), dim=-1)
        te = F.normalize(text_embeds(model, cap_ids[y, tpl], cap_mask[y, tpl]), dim=-1)
        logits = ie @ te.T / temp
        pos = (y[:, None] == y[None, :]).float()
        target = pos / pos.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params] + [temp], 1.0)
        opt.step()
        with torch.no_grad():
            temp.clamp_(TEMP_MIN, TEMP_MAX)
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d} loss {loss.item():.4f} temp {temp.item():.4f} lr {lr_at(step):.2e} "
                  f"[{el:6.0f}s, {el / (step + 1):.3f}s/step]", flush=True)
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            acc = zero_shot_acc(model, val_x, val_y, zs_ids, zs_mask)
            log.append({"step": step + 1, "loss": round(loss.item(), 4), "temp": round(temp.item(), 5),
                        "val_zero_shot_top1": round(acc, 4), "seconds": round(time.time() - t_train, 1)})
            print(f"  val zero-shot top-1 @ {step + 1}: {acc * 100:.1f}%", flush=True)
        if args.max_minutes and time.time() - t_train > args.max_minutes * 60:
            print(f"stopping at step {step + 1}: --max-minutes {args.max_minutes} reached", flush=True)
            break
    train_secs = time.time() - t_train
    steps_done = step + 1

    meta = {
        "command": "python3 train.py " + " ".join(argv),
        "steps": steps_done, "steps_planned": args.steps, "batch_size": args.batch, "lr": args.lr,
        "weight_decay": args.wd, "warmup_steps": args.warmup,
        "schedule": "linear warm-up then cosine to 2% of peak",
        "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6), weight decay on matrices only, grad-clip 1.0",
        "loss": "symmetric InfoNCE on cosine/temp with label-aware soft targets; BLIP's learnable temp "
                f"(init {TEMP_INIT}, clamped to [{TEMP_MIN}, {TEMP_MAX}])",
        "final_temp": temp.item(),
        "pool_images": args.pool, "seed": args.seed, "threads": args.threads,
        "augmentation": "pool rendered at random sizes (short side 100-320, aspect 1:1..3:2 either way), "
                        "squashed to 384x384 PIL bicubic as BlipImageProcessor; random horizontal flip per batch",
        "templates": sd.TEMPLATES,
        "render_seconds": round(render_secs, 1),
        "train_seconds": round(train_secs, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "val": "120 images (4 per label, shapes_data.render_eval, seed %d), BlipImageProcessorPil" % (args.seed + 777_777),
        "log": log,
        "torch": torch.__version__.split("+")[0],
        "init_from": args.init,
        "previous_stage": prev_meta,
    }
    os.makedirs(os.path.dirname(args.ckpt), exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "temp": temp.item(), "vocab_size": vocab,
                "meta": meta}, args.ckpt)
    print(f"saved {args.ckpt}; training {train_secs / 60:.1f} min ({steps_done} steps)", flush=True)


# ---------------------------------------------------------------- export

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _graph_info(path):
    import collections
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)

    def dims(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "export"))
        from export_family import TRACT_ONNX_OPS
        unknown = sorted(set(ops) - TRACT_ONNX_OPS)
    except Exception as e:  # pragma: no cover
        print(f"(tract op list unavailable: {e})")
        unknown = None
    return dict(ops=dict(sorted(ops.items())), nodes=len(m.graph.node), tract_unknown_ops=unknown,
                inputs={i.name: dims(i) for i in m.graph.input},
                outputs={o.name: dims(o) for o in m.graph.output})


def export(ckpt_path, out_dir=HERE):
    import onnxruntime as ort
    import transformers
    from PIL import Image

    torch.set_grad_enabled(False)
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model = build_model(ck["vocab_size"], attn="eager")
    model.load_state_dict(ck["state_dict"])
    model.eval()
    img_t, txt_t = ImageTower(model).eval(), TextTower(model).eval()
    tokenizer = load_tokenizer(os.path.join(out_dir, "tokenizer.json"))
    img_path = os.path.join(out_dir, "image_encoder.onnx")
    txt_path = os.path.join(out_dir, "text_encoder.onnx")

    gen = torch.Generator().manual_seed(0)
    dummy_img = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    # traced at batch 2 with real padding (mask zeros), full context length
    d_ids, d_mask = tokenize(tokenizer, ["a photo of a red triangle.", "a blue star"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(img_t, (dummy_img,), img_path, dynamo=False,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True)
        torch.onnx.export(txt_t, (d_ids, d_mask), txt_path, dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "text_embeds": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True)
    gi, gt = _graph_info(img_path), _graph_info(txt_path)
    print("image graph:", gi["inputs"], gi["outputs"], gi["nodes"], "nodes; tract-unknown:", gi["tract_unknown_ops"])
    print("text graph:", gt["inputs"], gt["outputs"], gt["nodes"], "nodes; tract-unknown:", gt["tract_unknown_ops"])

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    si = ort.InferenceSession(img_path, so, providers=["CPUExecutionProvider"])
    st = ort.InferenceSession(txt_path, so, providers=["CPUExecutionProvider"])

    def cos_min(a, b):
        a, b = a.astype(np.float64), b.astype(np.float64)
        return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    par = {}
    # images: 3 val-like rendered images through the processor, batch 3 and batch 1
    proc = blip_processor()
    rng, nrng = random.Random(99), np.random.default_rng(99)
    imgs = [sd.render_eval(*sd.LABELS[k].split(" "), 300, 220, rng, nrng) for k in (0, 13, 27)]
    pv = np.asarray(proc(images=imgs, return_tensors="np")["pixel_values"], dtype=np.float32)
    ref = img_t(torch.from_numpy(pv)).numpy()
    got3 = si.run(["image_embeds"], {"pixel_values": pv})[0]
    got1 = np.concatenate([si.run(["image_embeds"], {"pixel_values": pv[i:i + 1]})[0] for i in range(3)])
    par["image_encoder"] = {
        "batch3_max_abs_diff_vs_torch": float(np.abs(got3 - ref).max()),
        "batch1_max_abs_diff_vs_torch": float(np.abs(got1 - ref).max()),
        "batch1_vs_batch3_max_abs_diff": float(np.abs(got1 - got3).max()),
        "min_cosine_vs_torch": cos_min(np.concatenate([got3, got1]), np.concatenate([ref, ref])),
        "max_abs_torch": float(np.abs(ref).max()),
    }
    # text: the 30 zero-shot prompts (batch 30), batch 3 and batch 1, at 35 tokens and
    # cut to 12 tokens (dynamic sequence axis), plus an unpadded odd prompt
    prompts = [ZS_TEMPLATE.format(l) for l in sd.LABELS]
    ids, mask = tokenize(tokenizer, prompts)
    ref_t = txt_t(ids, mask).numpy()
    got_t = st.run(["text_embeds"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    got_t3 = st.run(["text_embeds"], {"input_ids": ids[:3].numpy(), "attention_mask": mask[:3].numpy()})[0]
    got_t1 = np.concatenate([st.run(["text_embeds"], {"input_ids": ids[i:i + 1].numpy(),
                                                      "attention_mask": mask[i:i + 1].numpy()})[0] for i in range(3)])
    short = st.run(["text_embeds"], {"input_ids": ids[:, :12].numpy(), "attention_mask": mask[:, :12].numpy()})[0]
    ref_short = txt_t(ids[:, :12], mask[:, :12]).numpy()
    odd = "Crème brûlée, 12 cats & a 猫 on the sofa — a picture of an elephant wearing sunglasses"
    oi, om = tokenize(tokenizer, [odd, "x"])
    ref_odd = txt_t(oi, om).numpy()
    got_odd = st.run(["text_embeds"], {"input_ids": oi.numpy(), "attention_mask": om.numpy()})[0]
    # the ITC path of the whole BlipForImageTextRetrieval (use_itm_head=False)
    itm = model(input_ids=ids[:3], attention_mask=mask[:3], pixel_values=torch.from_numpy(pv),
                use_itm_head=False).itm_score.numpy()
    mine = (got3 / np.linalg.norm(got3, axis=1, keepdims=True)) @ (got_t3 / np.linalg.norm(got_t3, axis=1, keepdims=True)).T
    par["text_encoder"] = {
        "batch30_max_abs_diff_vs_torch": float(np.abs(got_t - ref_t).max()),
        "batch3_max_abs_diff_vs_torch": float(np.abs(got_t3 - ref_t[:3]).max()),
        "batch1_max_abs_diff_vs_torch": float(np.abs(got_t1 - ref_t[:3]).max()),
        "batch1_vs_batch3_max_abs_diff": float(np.abs(got_t1 - got_t3).max()),
        "seq12_max_abs_diff_vs_torch": float(np.abs(short - ref_short).max()),
        "seq12_vs_seq35_max_abs_diff": float(np.abs(short - got_t).max()),
        "long_prompt_max_abs_diff_vs_torch": float(np.abs(got_odd - ref_odd).max()),
        "min_cosine_vs_torch": cos_min(np.concatenate([got_t, got_t1, short, got_odd]),
                                       np.concatenate([ref_t, ref_t[:3], ref_short, ref_odd])),
        "max_abs_torch": float(np.abs(ref_t).max()),
    }
    par["onnx_cosines_vs_BlipForImageTextRetrieval_itm_score_max_abs_diff"] = float(np.abs(mine - itm).max())
    print("parity:", json.dumps(par, indent=1), flush=True)
    worst = max(v for d in par.values() if isinstance(d, dict) for k, v in d.items() if "diff" in k)
    worst = max(worst, par["onnx_cosines_vs_BlipForImageTextRetrieval_itm_score_max_abs_diff"])
    if worst > 1e-4:
        raise SystemExit(f"ONNX export mismatch {worst}")

    # reference embeddings for ../shapes/samples
    sample_dir = os.path.join(SHAPES, "samples")
    names = sorted(f for f in os.listdir(sample_dir) if f.endswith(".png"))
    spv = np.asarray(proc(images=[Image.open(os.path.join(sample_dir, f)).convert("RGB") for f in names],
                          return_tensors="np")["pixel_values"], dtype=np.float32)
    semb = si.run(["image_embeds"], {"pixel_values": spv})[0].astype(np.float32)
    np.save(os.path.join(out_dir, "ort_image_embeds.npy"), semb)
    tn = got_t / np.linalg.norm(got_t, axis=1, keepdims=True)
    sn = semb / np.linalg.norm(semb, axis=1, keepdims=True)
    spred = [sd.LABELS[i] for i in (sn @ tn.T).argmax(1)]
    sample_ok = [p.replace(" ", "_") + ".png" == n for p, n in zip(spred, names)]
    print("samples:", list(zip(names, spred)), flush=True)

    temp = float(ck["temp"])
    cfg = model.config
    vc, tc = cfg.vision_config, cfg.text_config
    vocab = tokenizer.backend_tokenizer.get_vocab()
    doc = {
        "format": "clip-edge-model/1",
        "family": "blip",
        "source": "hf",
        "model": "shapes-blip-tiny: tiny BLIP ITC (BlipForImageTextRetrieval, use_itm_head=False) "
                 "trained from scratch on procedurally generated coloured shapes",
        "hf_class": "BlipForImageTextRetrieval",
        "pretrained": None,
        "trained": "from scratch on ../shapes/shapes_data.py images (see training)",
        "embed_dim": PROJECTION_DIM,
        "image_size": IMAGE_SIZE,
        "logit_scale": 1.0 / temp,
        "logit_bias": None,
        "scoring": "softmax",
        "embeddings_normalized": False,
        "logit_scale_note": f"1/temp of the trained BLIP temperature (temp = {temp:.6f}); scores = "
                            "cosine(image_embeds, text_embeds) * logit_scale, softmax over labels",
        "preprocess": {"size": IMAGE_SIZE, "resize_shortest_edge": IMAGE_SIZE, "resize": "squash",
                       "interpolation": "bicubic", "crop": "none", "crop_offset": "floor",
                       "mean": list(sd.CLIP_MEAN), "std": list(sd.CLIP_STD)},
        "reference_processor": {"kind": "hf", "cls": type(proc).__name__, "module": type(proc).__module__,
                                "backend": "pil"},
        "opset": OPSET,
        "image_encoder": {"file": "image_encoder.onnx", "input": "pixel_values", "output": "image_embeds",
                          "input_shape": gi["inputs"]["pixel_values"], "output_shape": gi["outputs"]["image_embeds"],
                          "bytes": os.path.getsize(img_path), "sha256": _sha256(img_path)},
        "text_encoder": {"file": "text_encoder.onnx", "inputs": ["input_ids", "attention_mask"],
                         "output": "text_embeds",
                         "input_shapes": {k: v for k, v in gt["inputs"].items()},
                         "input_types": {"input_ids": "int64", "attention_mask": "int64"},
                         "output_shape": gt["outputs"]["text_embeds"],
                         "max_sequence": tc.max_position_embeddings,
                         "bytes": os.path.getsize(txt_path), "sha256": _sha256(txt_path)},
        "text": {"exported": True, "tokenizer_file": "tokenizer.json", "context_length": CONTEXT_LENGTH,
                 "padding": "max_length", "attention_mask": True, "pad_token_id": 0, "lowercase": True,
                 "pooling": "CLS",
                 "tokenizer": "WordPiece, bert-base-uncased pipeline (BertNormalizer lowercase + strip "
                              "accents, BertPreTokenizer, '##' continuation, [CLS] $A [SEP]), vocabulary "
                              "trained here",
                 "vocab_size": len(vocab),
                 "special_tokens": {s: vocab[s] for s in SPECIAL_TOKENS},
                 "truncation": True,
                 "load_with": "transformers.BertTokenizerFast(tokenizer_file='tokenizer.json')"},
        "labels_file": "../shapes/labels.txt",
        "zero_shot_template": ZS_TEMPLATE,
        "architecture": {
            "vision": {"width": vc.hidden_size, "layers": vc.num_hidden_layers, "heads": vc.num_attention_heads,
                       "mlp": vc.intermediate_size, "patch_size": vc.patch_size, "image_size": vc.image_size,
                       "act": vc.hidden_act, "layer_norm_eps": vc.layer_norm_eps,
                       "pooling": "CLS token of last_hidden_state (after post_layernorm)"},
            "text": {"width": tc.hidden_size, "layers": tc.num_hidden_layers, "heads": tc.num_attention_heads,
                     "mlp": tc.intermediate_size, "vocab_size": tc.vocab_size,
                     "max_position_embeddings": tc.max_position_embeddings, "act": tc.hidden_act,
                     "layer_norm_eps": tc.layer_norm_eps,
                     "pooling": "CLS token (position 0) of the BERT encoder's last_hidden_state; bidirectional "
                                "attention with the padding mask; no cross-attention"},
            "projection": {"vision_proj": [vc.hidden_size, PROJECTION_DIM], "text_proj": [tc.hidden_size, PROJECTION_DIM],
                           "bias": True},
            "params": {"image_tower": sum(p.numel() for p in img_t.parameters()),
                       "text_tower_itc": sum(p.numel() for n, p in txt_t.named_parameters() if "crossattention" not in n)},
            "attn_implementation": "eager",
            "config": cfg.to_diff_dict(),
        },
        "reference_images": names,
        "reference_embeddings": {
            "file": "ort_image_embeds.npy", "images_dir": "models/shapes/samples",
            "note": "onnxruntime image_embeds (float32 [6,64], unnormalised, rows in reference_images "
                    "order) of PIL.Image.open(f).convert('RGB') preprocessed by BlipImageProcessorPil",
            "zero_shot_predictions": spred, "all_correct": all(sample_ok)},
        "export": {"exporter": "torch.onnx.export(dynamo=False)", "do_constant_folding": True,
                   "traced_at_batch": 2, "torch_version": torch.__version__.split("+")[0],
                   "transformers_version": transformers.__version__,
                   "onnxruntime_version": ort.__version__,
                   "parity_vs_torch": par,
                   "image_ops": gi["ops"], "image_nodes": gi["nodes"],
                   "text_ops": gt["ops"], "text_nodes": gt["nodes"],
                   "tract_unknown_ops": {"image": gi["tract_unknown_ops"], "text": gt["tract_unknown_ops"]}},
        "training": ck["meta"],
    }
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    for p in (img_path, txt_path):
        print(f"wrote {p} ({os.path.getsize(p) / 1e6:.3f} MB)")
    return doc


def run_eval(out_dir):
    """eval_reference.py on ../shapes/eval; returns its JSON summary."""
    jpath = os.path.join(out_dir, "checkpoints", "eval.json")
    os.makedirs(os.path.dirname(jpath), exist_ok=True)
    r = subprocess.run([sys.executable, os.path.join(HERE, "eval_reference.py"), "--model-dir", out_dir,
                        "--json", jpath], capture_output=True, text=True)
    print(r.stdout, r.stderr, flush=True)
    if r.returncode != 0:
        raise SystemExit("eval_reference.py failed")
    with open(jpath) as f:
        res = json.load(f)
    wrong = [im for im in res["images"] if im["label"] != im["pred"]]
    return {"command": "python3 eval_reference.py", "dataset": "../shapes/eval (150 images, 5 per label)",
            "template": ZS_TEMPLATE, "top1": res["top1"], "correct": len(res["images"]) - len(wrong),
            "total": len(res["images"]), "colour_top1": res.get("colour_top1"),
            "shape_top1": res.get("shape_top1"),
            "errors": [f"{im['path']} -> {im['pred']}" for im in wrong]}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=7e-4)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--pool", type=int, default=8000, help="pre-rendered 384x384 training images")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the pool")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on the shared 2-core box)")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop training after this many minutes (0: off)")
    ap.add_argument("--ckpt", default=os.path.join(HERE, "checkpoints", "shapes_blip.pt"),
                    help="checkpoint (checkpoints/ is scratch, not part of the deliverable)")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--init", default=None,
                    help="continue from this checkpoint's weights and temp (use a new --seed for a fresh pool)")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--tokenizer-only", action="store_true", help="only (re)build tokenizer.json")
    ap.add_argument("--rebuild-tokenizer", action="store_true",
                    help="rebuild tokenizer.json before training (default: reuse it if present)")
    args = ap.parse_args(argv)
    if args.tokenizer_only:
        build_tokenizer()
        return
    if not args.export_only:
        train(args, argv)
    if not args.no_export:
        export(args.ckpt, args.out)
        ev = run_eval(args.out)
        mj = os.path.join(args.out, "model.json")
        with open(mj) as f:
            doc = json.load(f)
        doc["eval"] = ev
        with open(mj, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"eval top-1 {ev['top1'] * 100:.2f}% written to {mj}", flush=True)


if __name__ == "__main__":
    main()
