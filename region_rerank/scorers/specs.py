"""The scorer registry: every scorer spec the factory, the CLI and the docs know.

``clip[:MODEL]`` (CLIP, SigLIP, SigLIP2), ``st:MODEL`` (sentence-transformers bi-encoder),
``cross:MODEL`` (sentence-transformers cross-encoder), ``demo[:WEIGHTS]`` (the offline demo
scorer), ``fake`` (the deterministic test scorer). ``MODEL`` is a hub id or a local folder;
each component defines its own default model.
"""

from __future__ import annotations

from typing import Any

from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.spec_registry import BuildArgs, ComponentSpec, lookup

__all__ = ["SCORERS", "build_scorer"]


def _clip(a: BuildArgs) -> Any:
    from region_rerank.scorers.clip import DEFAULT_MODEL, ClipScorer

    return ClipScorer(a.arg or DEFAULT_MODEL, model_options=a.model_options)


def _st(a: BuildArgs) -> Any:
    from region_rerank.scorers.sentence_transformers import SentenceTransformerScorer

    return SentenceTransformerScorer(str(a.arg), model_options=a.model_options)


def _cross(a: BuildArgs) -> Any:
    from region_rerank.scorers.cross_encoder import CrossEncoderScorer

    return CrossEncoderScorer(str(a.arg), model_options=a.model_options)


def _demo(a: BuildArgs) -> Any:
    from region_rerank.demo.scorer import DemoScorer

    return DemoScorer(a.arg, model_options=a.model_options)


def _fake(a: BuildArgs) -> Any:
    from region_rerank.testing import FakeScorer

    return FakeScorer()


#: kind -> entry, in the order the help lists them.
SCORERS: dict[str, ComponentSpec] = {
    e.kind: e
    for e in (
        ComponentSpec("clip", "MODEL", False, False, "CLIP / SigLIP / SigLIP2 dual encoder", _clip),
        ComponentSpec("st", "MODEL", True, False, "sentence-transformers bi-encoder", _st),
        ComponentSpec(
            "cross",
            "MODEL",
            True,
            False,
            "sentence-transformers cross-encoder (re-rank only)",
            _cross,
        ),
        ComponentSpec(
            "demo", "WEIGHTS", False, False, "the offline demo scorer (MiniLM + small CNN)", _demo
        ),
        ComponentSpec(
            "fake", None, False, False, "deterministic colour-histogram test scorer", _fake
        ),
    )
}


def build_scorer(spec: str, *, model_options: ModelOptions | None = None) -> Any:
    """Build a scorer from ``spec`` (see :data:`SCORERS`).

    Args:
        spec: The scorer spec.
        model_options: How the scorer loads its model (defaults when ``None``).

    Raises:
        ConfigError: Unknown or malformed spec, or ``model_options`` not a ModelOptions.
        ModelLoadError: The model cannot be loaded (for scorers that load eagerly).
    """
    entry, arg = lookup(SCORERS, spec, "scorer")
    return entry.build(BuildArgs(arg, model_options=model_options_or_default(model_options)))
