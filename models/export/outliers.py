"""Function-preserving activation outliers for CLIP image towers.

Trained ViTs, CLIP among them, carry a few post-LayerNorm channels 10-100x larger
than the rest (RepQ-ViT, FQ-ViT, "Outlier Suppression"), largely through the
LayerNorm's gain and bias, and those channels are often offset from zero. A random
init has none of this, so int8 looks better on it than it is on a real checkpoint.

`inject_outliers` puts such channels into a model without changing what it
computes: for every LayerNorm whose output feeds only linear layers (the attention
input projections, the MLP's first linear, the final projection), it

- multiplies the gain and bias of a few channels by a factor c (10 to 100) and adds
  an offset d to the bias, so channel j of the LayerNorm output becomes c*x_j + d;
- divides the matching input rows of each following weight by c, and subtracts
  W[:, j] * d/c from its bias (layers without a bias get no offset).

So `W' (c x + d) + b' = W x + b`: the fp32 embedding is unchanged (to rounding), and
the activations the int8 matmuls see have the outliers of a trained model. The same
channels are chosen in every layer (trained models carry their outliers in a few
residual-stream dimensions), with a factor per layer.

This covers outliers that live in the channel axis. It does not cover heavy-tailed
post-GELU activations (fc2's input), which no function-preserving edit of a random
model produces honestly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

MIN_FACTOR = 10.0
MAX_FACTOR = 100.0
# The offset added to an outlier channel, in units of its own factor: the channel's
# values centre on +-OFFSET*c instead of 0.
OFFSET = 2.0


def _groups(tower, source: str):
    """(layer name, LayerNorm, [(linear weight [out,in] view setter, bias or None)])."""
    out = []
    if source == "hf":
        vm = tower.vision_model
        for i, layer in enumerate(vm.encoder.layers):
            a = layer.self_attn
            out.append((f"layers.{i}.layer_norm1", layer.layer_norm1,
                        [(a.q_proj.weight, a.q_proj.bias), (a.k_proj.weight, a.k_proj.bias),
                         (a.v_proj.weight, a.v_proj.bias)]))
            out.append((f"layers.{i}.layer_norm2", layer.layer_norm2,
                        [(layer.mlp.fc1.weight, layer.mlp.fc1.bias)]))
        proj = tower.visual_projection
        out.append(("post_layernorm", vm.post_layernorm, [(proj.weight, proj.bias)]))
    elif source == "openclip":
        v = tower.model.visual
        for i, block in enumerate(v.transformer.resblocks):
            attn = block.attn
            if not isinstance(attn, nn.MultiheadAttention):
                raise SystemExit(f"resblocks.{i}.attn is {type(attn).__name__}; only "
                                 "nn.MultiheadAttention is handled")
            out.append((f"resblocks.{i}.ln_1", block.ln_1, [(attn.in_proj_weight, attn.in_proj_bias)]))
            out.append((f"resblocks.{i}.ln_2", block.ln_2, [(block.mlp.c_fc.weight, block.mlp.c_fc.bias)]))
        if v.proj is None:
            raise SystemExit("visual.proj is None: no final projection to carry ln_post's outliers")
        # x @ proj: proj is [in, out], its transpose is a linear weight [out, in].
        out.append(("ln_post", v.ln_post, [(v.proj.T, None)]))
    else:
        raise ValueError(source)
    return out


@torch.no_grad()
def inject_outliers(tower: nn.Module, source: str, channels: int, seed: int) -> list[dict]:
    """Adds `channels` outlier channels to every LayerNorm feeding linear layers of
    the image `tower` (an export wrapper of export_clip.py); returns what was done,
    for model.json."""
    rng = np.random.default_rng(seed)
    groups = _groups(tower, source)
    width = groups[0][1].weight.shape[0]
    if not 0 < channels <= width:
        raise SystemExit(f"--outliers {channels}: the width is {width}")
    picked = sorted(int(c) for c in rng.choice(width, size=channels, replace=False))
    signs = rng.choice([-1.0, 1.0], size=channels)
    record = []
    for li, (name, ln, linears) in enumerate(groups):
        # log-uniform factors in [MIN, MAX]; the first channel of every other layer
        # gets the full MAX_FACTOR.
        logs = rng.uniform(math.log(MIN_FACTOR), math.log(MAX_FACTOR), size=channels)
        factors = np.exp(logs)
        if li % 2 == 0:
            factors[0] = MAX_FACTOR
        has_bias = all(b is not None for _, b in linears)
        entry = dict(layer=name, channels=picked, factors=[round(float(f), 3) for f in factors],
                     offsets=[])
        for j, c, s in zip(picked, factors, signs):
            c = float(c)
            d = float(s * OFFSET * c) if has_bias else 0.0
            ln.weight[j] *= c
            ln.bias[j] = ln.bias[j] * c + d
            for w, b in linears:
                col = w[:, j].clone() / c
                w[:, j] = col
                if d:
                    b -= col * d
            entry["offsets"].append(round(d, 3))
        record.append(entry)
    return record
