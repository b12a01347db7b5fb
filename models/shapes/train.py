#!/usr/bin/env python3
"""Train the tiny "shapes" CLIP (Hugging Face CLIPModel architecture) from scratch.

Data: procedurally generated images of coloured shapes (see shapes_data.py),
captions like "a photo of a red triangle." tokenised with the OpenAI CLIP BPE.

Loss: CLIP's symmetric contrastive loss with a learnable logit scale, but with
label-aware targets: inside a batch every image/caption pair with the same
label is a positive (soft target spread evenly over the positives), so
duplicate labels in a batch do not fight each other.

To use both CPU cores well, a pool of training images is rendered up front by
worker processes (uint8, already resized/cropped to 224 like CLIPImageProcessor
does), then the training loop samples from it with random horizontal flips
(which preserve colour, shape class and uprightness).

After training, rows of the token-embedding table for tokens that never occur
in any training caption are set to zero, then the model is exported to ONNX
(see export.py).

Example:
    python3 train.py            # = --steps 1800 --pool 6000 --out .
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clip_bpe  # noqa: E402
import shapes_data as sd  # noqa: E402

VISION = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
              intermediate_size=256, patch_size=32, image_size=224, num_channels=3)
TEXT = dict(vocab_size=49408, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=77,
            bos_token_id=clip_bpe.SOT, eos_token_id=clip_bpe.EOT, pad_token_id=clip_bpe.PAD)
PROJECTION_DIM = 64

ZS_TEMPLATE = "a photo of a {}."


def build_model(vision=VISION, text=TEXT, projection_dim=PROJECTION_DIM, attn="eager"):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=dict(text), vision_config=dict(vision),
                     projection_dim=projection_dim, logit_scale_init_value=2.6592)
    cfg._attn_implementation = attn
    cfg.text_config._attn_implementation = attn
    cfg.vision_config._attn_implementation = attn
    return CLIPModel(cfg)


# ---------------------------------------------------------------- data pool

def _gen_chunk(args):
    seed, n = args
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=np.int64)
    imgs = np.empty((n, 224, 224, 3), dtype=np.uint8)
    for i in range(n):
        li, img = sd.random_train_image_u8(rng, nrng)
        labels[i] = li
        imgs[i] = img
    return labels, imgs


def make_pool(n: int, seed: int, workers: int, chunk: int = 250):
    jobs = []
    k = 0
    while k < n:
        m = min(chunk, n - k)
        jobs.append((seed * 1_000_003 + len(jobs), m))
        k += m
    labels = np.empty(n, dtype=np.int64)
    imgs = torch.empty((n, 3, 224, 224), dtype=torch.uint8)
    pos = 0
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        for lab, im in pool.imap(_gen_chunk, jobs):
            m = len(lab)
            labels[pos:pos + m] = lab
            imgs[pos:pos + m] = torch.from_numpy(im).permute(0, 3, 1, 2)
            pos += m
    return torch.from_numpy(labels), imgs


def make_val(n_per_class: int, seed: int):
    """Small in-training validation set (distinct seed from train pool and eval/)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    xs, ys = [], []
    for li, lab in enumerate(sd.LABELS):
        c, s = lab.split(" ")
        for _ in range(n_per_class):
            w = rng.randint(140, 360)
            h = rng.randint(120, 320)
            img = sd.render_eval(c, s, w, h, rng, nrng)
            xs.append(sd.to_tensor_224(img))
            ys.append(li)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


MEAN = torch.tensor(sd.CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(sd.CLIP_STD).view(1, 3, 1, 1)


def normalise_u8(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - MEAN) / STD


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (drawn per step for the whole batch); keeps shapes upright."""
    if int(torch.randint(0, 2, (1,), generator=gen)):
        x = torch.flip(x, dims=[3])
    return x


# ---------------------------------------------------------------- model pieces

def image_embeds(model, pixel_values):
    pooled = model.vision_model(pixel_values=pixel_values).pooler_output
    return model.visual_projection(pooled)


def text_embeds(model, input_ids):
    pooled = model.text_model(input_ids=input_ids).pooler_output
    return model.text_projection(pooled)


@torch.no_grad()
def zero_shot_acc(model, val_x, val_y, class_ids):
    model.eval()
    t = F.normalize(text_embeds(model, class_ids), dim=-1)
    preds = []
    for i in range(0, val_x.shape[0], 128):
        e = F.normalize(image_embeds(model, val_x[i:i + 128]), dim=-1)
        preds.append((e @ t.T).argmax(-1))
    model.train()
    p = torch.cat(preds)
    return (p == val_y).float().mean().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1800, help="optimiser steps (default 1800)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--lr", type=float, default=7e-4, help="peak learning rate (default 7e-4)")
    ap.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    ap.add_argument("--warmup", type=int, default=150, help="linear warm-up steps (default 150)")
    ap.add_argument("--pool", type=int, default=6000, help="pre-rendered training images (default 6000)")
    ap.add_argument("--seed", type=int, default=1234, help="training seed (default 1234)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the pool (default 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a busy 2-core box one thread was ~10x faster)")
    ap.add_argument("--eval-every", type=int, default=250, help="in-training val every N steps")
    ap.add_argument("--out", default=HERE, help="output dir for ONNX/model.json (default: this dir)")
    ap.add_argument("--ckpt", default=None,
                    help="checkpoint path (default <out>/checkpoints/shapes_clip.pt, git-ignored)")
    ap.add_argument("--init", default=None,
                    help="start from the weights of this checkpoint (continued training; "
                         "use a new --seed so the pool holds fresh images)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    args = ap.parse_args(argv)

    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    # captions: every (label, template) pair
    captions = [[tpl.format(lab) for tpl in sd.TEMPLATES] for lab in sd.LABELS]
    flat = [c for row in captions for c in row]
    cap_ids = torch.from_numpy(clip_bpe.tokenize(flat))  # [L*T, 77]
    used_tokens = sorted(set(cap_ids.flatten().tolist()) - {clip_bpe.PAD})
    # Causal attention + EOT pooling: positions after EOT never influence the
    # pooled output, so training may cut the padding off (exactly equivalent).
    max_len = int((cap_ids != 0).sum(1).max())
    cap_ids_short = cap_ids[:, :max_len].contiguous().view(len(sd.LABELS), len(sd.TEMPLATES), max_len)
    zs_ids = torch.from_numpy(clip_bpe.tokenize([ZS_TEMPLATE.format(l) for l in sd.LABELS]))
    print(f"{len(sd.LABELS)} labels, {len(sd.TEMPLATES)} templates, {len(used_tokens)} distinct tokens, "
          f"max caption length {max_len}", flush=True)

    t0 = time.time()
    pool_y, pool_x = make_pool(args.pool, args.seed, args.workers)
    print(f"rendered pool of {args.pool} images in {time.time() - t0:.1f}s "
          f"({pool_x.numel() / 2**30:.2f} GiB)", flush=True)
    val_x, val_y = make_val(4, args.seed + 777_777)

    model = build_model(attn="sdpa")  # same weights/maths as eager; eager is used for export
    prev_meta = None
    if args.init:
        ck0 = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(ck0["state_dict"])
        prev_meta = ck0.get("meta", {}).get("training")
        print(f"initialised from {args.init}", flush=True)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params / 1e6:.2f}M (vision {sum(p.numel() for p in model.vision_model.parameters()) / 1e6:.2f}M)",
          flush=True)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in n or n == "logit_scale" else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    t_train = time.time()
    log = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        idx = torch.randint(0, args.pool, (args.batch,), generator=gen)
        y = pool_y[idx]
        x = normalise_u8(hflip(pool_x[idx], gen))
        tpl = torch.randint(0, len(sd.TEMPLATES), (args.batch,), generator=gen)
        ids = cap_ids_short[y, tpl]

        ie = F.normalize(image_embeds(model, x), dim=-1)
        te = F.normalize(text_embeds(model, ids), dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * ie @ te.T
        pos = (y[:, None] == y[None, :]).float()
        target = pos / pos.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100.0))

        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d} loss {loss.item():.4f} scale {scale.item():6.2f} lr {lr_at(step):.2e} "
                  f"[{el:6.0f}s, {el / (step + 1):.3f}s/step]", flush=True)
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            acc = zero_shot_acc(model, val_x, val_y, zs_ids)
            log.append({"step": step + 1, "loss": round(loss.item(), 4), "val_zero_shot_top1": round(acc, 4)})
            print(f"  val zero-shot top-1 @ {step + 1}: {acc * 100:.1f}%", flush=True)
    train_secs = time.time() - t_train

    # Zero the token-embedding rows that never occur in a training caption.
    with torch.no_grad():
        acc_before = zero_shot_acc(model, val_x, val_y, zs_ids)
        emb = model.text_model.embeddings.token_embedding.weight
        keep = torch.zeros(emb.shape[0], dtype=torch.bool)
        keep[used_tokens] = True
        emb[~keep] = 0.0
        acc_after = zero_shot_acc(model, val_x, val_y, zs_ids)
    print(f"zeroed {int((~keep).sum())} unused token-embedding rows "
          f"(val top-1 {acc_before * 100:.1f}% -> {acc_after * 100:.1f}%)", flush=True)

    meta = {
        "training": {
            "command": "python3 train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "steps": args.steps, "batch_size": args.batch, "lr": args.lr, "weight_decay": args.wd,
            "warmup_steps": args.warmup, "schedule": "linear warm-up then cosine to 2% of peak",
            "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6), grad-clip 1.0",
            "loss": "symmetric CLIP InfoNCE with label-aware soft targets, learnable logit scale (max 100)",
            "pool_images": args.pool, "seed": args.seed,
            "augmentation": "pool rendered at random sizes/aspects, resized+centre-cropped to 224; "
                            "random horizontal flip per batch at sample time",
            "templates": sd.TEMPLATES,
            "train_seconds": round(train_secs, 1),
            "total_seconds": round(time.time() - t_start, 1),
            "threads": args.threads,
            "log": log,
            "zeroed_token_rows": int((~keep).sum()),
            "used_token_ids": used_tokens,
            "init_from": args.init,
            "previous_stage": prev_meta,
        }
    }
    ckpt = args.ckpt or os.path.join(args.out, "checkpoints", "shapes_clip.pt")
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "vision": VISION, "text": TEXT,
                "projection_dim": PROJECTION_DIM, "meta": meta}, ckpt)
    print(f"saved checkpoint {ckpt}; training took {train_secs / 60:.1f} min", flush=True)

    if not args.no_export:
        import export
        export.export(ckpt, args.out)


if __name__ == "__main__":
    main()
