"""OpenAI CLIP BPE tokenizer, loaded from the `openai-clip` pip package.

`import clip` would pull in torchvision, so the package's `simple_tokenizer.py`
is loaded directly by file path (it only needs ftfy and regex).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

CONTEXT_LENGTH = 77
SOT = 49406
EOT = 49407
PAD = 0


def _load_simple_tokenizer():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("openai-clip is not installed: pip install --no-deps openai-clip")
    pkg_dir = list(spec.submodule_search_locations)[0]
    path = os.path.join(pkg_dir, "simple_tokenizer.py")
    mspec = importlib.util.spec_from_file_location("_clip_simple_tokenizer", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod.SimpleTokenizer(os.path.join(pkg_dir, "bpe_simple_vocab_16e6.txt.gz"))


_TOK = None


def tokenizer():
    global _TOK
    if _TOK is None:
        _TOK = _load_simple_tokenizer()
        assert _TOK.encoder["<|startoftext|>"] == SOT
        assert _TOK.encoder["<|endoftext|>"] == EOT
    return _TOK


def tokenize(texts, context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """Same output as clip.tokenize: int64 [n, 77], SOT ... EOT then zero padding."""
    if isinstance(texts, str):
        texts = [texts]
    tok = tokenizer()
    out = np.full((len(texts), context_length), PAD, dtype=np.int64)
    for i, t in enumerate(texts):
        ids = [SOT] + tok.encode(t) + [EOT]
        if len(ids) > context_length:
            raise ValueError(f"text too long for context {context_length}: {t!r}")
        out[i, : len(ids)] = ids
    return out
