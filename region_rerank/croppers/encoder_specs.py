"""The light policy's encoder and detector specs: what ``PolicyArch.encoder`` names, built
into a :class:`~region_rerank.croppers.policy_encoder.PolicyEncoder`, and what
``PolicyArch.detector`` names (extra proposal boxes).

Encoders: ``scorer`` (the re-ranking scorer's own view embeddings), ``dense:demo`` (the
demo world's fixed encoder; ``dense:demo:sentence`` with sentence embeddings of the
question), ``dense:clip:MODEL`` and any scorer spec. Detectors: ``demo``
(the demo world's object detector). This is the one core module, with the scorer registry,
allowed to import the demo package, lazily, when a ``demo`` spec is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from region_rerank.croppers.policy_encoder import ClipDenseEncoder, PolicyEncoder, ViewEncoder
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    from region_rerank.model_options import ModelOptions

__all__ = [
    "SCORER_ENCODER",
    "DENSE_DEMO",
    "DENSE_DEMO_SENTENCE",
    "DEMO_DETECTOR",
    "build_policy_encoder",
    "build_proposal_detector",
]

#: The encoder spec meaning "the re-ranking scorer's own view embeddings".
SCORER_ENCODER = "scorer"
#: The scorer-independent encoder built on the demo image tower and MiniLM word vectors.
DENSE_DEMO = "dense:demo"
#: The same views; the question as MiniLM's embedding of the whole question.
DENSE_DEMO_SENTENCE = "dense:demo:sentence"


def build_policy_encoder(
    spec: str,
    scorer: Any = None,
    *,
    model_options: ModelOptions | None = None,
    batch_size: int = 64,
    question_words: bool = True,
) -> PolicyEncoder:
    """The encoder named by ``spec``.

    Args:
        spec: ``scorer`` (the given scorer's views), ``dense:demo``,
            ``dense:demo:sentence``, ``dense:clip:MODEL``
            (:class:`~region_rerank.croppers.policy_encoder.ClipDenseEncoder`), or a scorer
            spec (``demo``, ``clip:MODEL``, ``st:MODEL``...) whose views are the features.
        scorer: The re-ranking scorer (needed for ``scorer``; reused by
            ``dense:clip:MODEL`` when it is that CLIP model).
        model_options: Device / dtype of what is built.
        batch_size: Views per forward pass of a
            :class:`~region_rerank.croppers.policy_encoder.ViewEncoder`.
        question_words: ``dense:demo`` gives questions as word vectors (else their mean);
            ``dense:demo:sentence`` always gives one vector per question.

    Raises:
        ConfigError: ``scorer`` without a scorer, or an unknown ``dense:`` model.
    """
    from region_rerank.model_options import model_options_or_default
    from region_rerank.scorers.specs import build_scorer

    if spec == SCORER_ENCODER:
        if scorer is None:
            raise ConfigError(
                "the 'scorer' policy encoder needs the scorer the policy was trained with"
            )
        return ViewEncoder(scorer, spec, batch_size=batch_size)
    if spec in (DENSE_DEMO, DENSE_DEMO_SENTENCE):
        from region_rerank.demo.policy_encoder import demo_dense_encoder
        from region_rerank.device import resolve_device

        device = resolve_device(model_options_or_default(model_options).device)
        return demo_dense_encoder(
            device, words=question_words, sentence=spec == DENSE_DEMO_SENTENCE
        )
    if spec.startswith("dense:clip:"):
        model_id = spec.removeprefix("dense:clip:")
        same = scorer is not None and getattr(scorer, "name", None) == f"clip:{model_id}"
        clip = scorer if same else build_scorer(f"clip:{model_id}", model_options=model_options)
        return ClipDenseEncoder(clip)
    if spec.startswith("dense:"):
        raise ConfigError(
            f"unknown dense policy encoder {spec!r}; available: {DENSE_DEMO!r}, "
            f"{DENSE_DEMO_SENTENCE!r}, 'dense:clip:MODEL'"
        )
    return ViewEncoder(build_scorer(spec, model_options=model_options), spec, batch_size=batch_size)


#: The proposal-detector spec of the demo world's class-agnostic object detector.
DEMO_DETECTOR = "demo"


def build_proposal_detector(spec: str, *, model_options: ModelOptions | None = None) -> Any:
    """The proposal detector named by ``PolicyArch.detector``: ``""`` (none) or ``demo``
    (:class:`~region_rerank.demo.detector.DemoBoxDetector`, the demo world's
    class-agnostic object detector). A policy trained with a detector of your own is
    given that detector through ``ProposalPolicyCropper(detector=...)``.

    Raises:
        ConfigError: An unknown spec.
    """
    from region_rerank.model_options import model_options_or_default

    if not spec:
        return None
    if spec == DEMO_DETECTOR:
        from region_rerank.demo.detector import DemoBoxDetector
        from region_rerank.device import resolve_device

        return DemoBoxDetector(
            device=resolve_device(model_options_or_default(model_options).device)
        )
    raise ConfigError(
        f"unknown proposal detector {spec!r}; built in: {DEMO_DETECTOR!r}; pass your own "
        "detector as ProposalPolicyCropper(detector=...)"
    )
