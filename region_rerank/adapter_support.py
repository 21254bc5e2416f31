"""What the LlamaIndex and LangChain adapters share: argument validation with the core's
rules (no coercion of ``True``, ``1.0`` or ``"2"``), ``on_error`` handling, the metadata keys
they write, and pickling of the reranker they hold."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from region_rerank._validate import check_choice, check_int
from region_rerank.errors import ConfigError
from region_rerank.model_options import ModelOptions
from region_rerank.reranker import CroppedReranker, RerankerConfig

__all__ = [
    "DECISION_KEY",
    "BOX_KEY",
    "FALLBACK_KEY",
    "RELEVANCE_SCORE_KEY",
    "RETRIEVAL_SCORE_KEY",
    "HIDDEN_KEYS",
    "check_top_n",
    "resolve_reranker",
]

#: Metadata keys written on every returned node / document.
DECISION_KEY = "region_rerank_decision"
BOX_KEY = "region_rerank_box"
FALLBACK_KEY = "region_rerank_fallback"
RELEVANCE_SCORE_KEY = "relevance_score"
#: Written only with ``keep_retrieval_score=True``.
RETRIEVAL_SCORE_KEY = "retrieval_score"
#: Keys kept out of the LLM- and embedding-visible content of LlamaIndex nodes.
HIDDEN_KEYS = (DECISION_KEY, BOX_KEY, FALLBACK_KEY, RETRIEVAL_SCORE_KEY)


def check_top_n(name: str, value: Any, low: int = 0) -> int | None:
    """``value`` if it is ``None`` or an ``int`` >= ``low`` (not a bool, float or string).

    Raises:
        ConfigError: Any other value, naming ``name``.
    """
    if value is not None:
        check_int(name, value, low)
    return value


def resolve_reranker(
    reranker: CroppedReranker | None,
    cropper: str | None,
    scorer: str | None,
    *,
    on_error: str | None = None,
    config: RerankerConfig | None = None,
    model_options: ModelOptions | None = None,
) -> CroppedReranker:
    """The reranker an adapter uses: the given one, or one built from the specs.

    Raises:
        ConfigError: Both a reranker and specs, an unknown ``on_error``, or an
            ``on_error`` that differs from the given reranker's own.
    """
    if on_error is not None:
        check_choice("on_error", on_error, ("fallback", "raise"))
    if reranker is None:
        cfg = config or RerankerConfig()
        if on_error is not None:
            cfg = replace(cfg, on_error=on_error)
        return CroppedReranker(cropper, scorer, config=cfg, model_options=model_options)
    if cropper is not None or scorer is not None:
        raise ConfigError("pass either reranker= or cropper=/scorer= specs, not both")
    if model_options is not None:
        raise ConfigError(
            "model_options= only applies to a reranker built from cropper=/scorer= specs; "
            "pass it to CroppedReranker(..., model_options=...) instead"
        )
    if on_error is not None and on_error != reranker.config.on_error:
        raise ConfigError(
            f"on_error={on_error!r} differs from the reranker's own "
            f"({reranker.config.on_error!r}): set it in its RerankerConfig"
        )
    return reranker
