"""The cropper registry: every cropper spec the factory, the CLI, the re-ranker and the
docs know.

``full``, ``center[:FRACTION]``, ``random[:FRACTION]``, ``grounding[:MODEL]``,
``vlm[:MODEL]`` (``MODEL``: a hub id or a local folder; each cropper defines its default),
``text_match`` and ``proposal[:WEIGHTS]`` (these two score views with the re-ranker's
bi-encoder), ``fake`` (the scripted test cropper).
"""

from __future__ import annotations

from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.images import ImageLoadOptions
from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.spec_registry import BuildArgs, ComponentSpec, lookup, split_spec

__all__ = ["CROPPERS", "build_cropper", "needs_scorer"]


def _full(a: BuildArgs) -> Any:
    from region_rerank.croppers.full import FullImageCropper

    return FullImageCropper()


def _baseline(a: BuildArgs, kind: str) -> Any:
    from region_rerank.croppers.baselines import CenterCropper, RandomCropper

    try:
        fraction = float(a.arg) if a.arg else 0.5
    except ValueError as exc:
        raise ConfigError(f"{kind}:FRACTION needs a number, got {a.arg!r}") from exc
    cls = CenterCropper if kind == "center" else RandomCropper
    return cls(fraction, image_options=a.image_options)


def _grounding(a: BuildArgs) -> Any:
    from region_rerank.croppers.grounding import (
        DEFAULT_MODEL,
        GroundingCropper,
        GroundingCropperConfig,
    )

    return GroundingCropper(
        a.arg or DEFAULT_MODEL,
        model_options=a.model_options,
        config=GroundingCropperConfig(score_threshold=a.threshold),
        image_options=a.image_options,
    )


def _vlm(a: BuildArgs) -> Any:
    from region_rerank.croppers.vlm import DEFAULT_MODEL, VLMCropper

    return VLMCropper(
        a.arg or DEFAULT_MODEL, model_options=a.model_options, image_options=a.image_options
    )


def _text_match(a: BuildArgs) -> Any:
    from region_rerank.croppers.text_match import TextMatchCropper, TextMatchCropperConfig

    if a.scorer is None:
        raise ConfigError("the text_match cropper needs a bi-encoder scorer")
    margin = a.threshold if a.threshold is not None else 0.0
    return TextMatchCropper(
        a.scorer, TextMatchCropperConfig(margin=margin), image_options=a.image_options
    )


def _proposal(a: BuildArgs) -> Any:
    from region_rerank.croppers.proposal import (
        SHIPPED_WEIGHTS,
        ProposalPolicyConfig,
        ProposalPolicyCropper,
    )

    weights = SHIPPED_WEIGHTS.get(a.arg or "", a.arg)
    return ProposalPolicyCropper(
        a.scorer,
        weights,
        config=ProposalPolicyConfig(min_crop_confidence=a.threshold),
        model_options=a.model_options,
        image_options=a.image_options,
    )


def _fake(a: BuildArgs) -> Any:
    from region_rerank.testing import FakeCropper

    return FakeCropper()


#: kind -> entry, in the order the help lists them.
CROPPERS: dict[str, ComponentSpec] = {
    e.kind: e
    for e in (
        ComponentSpec("full", None, False, False, "always the full image (the baseline)", _full),
        ComponentSpec(
            "center", "FRACTION", False, False, "centred crop of FRACTION of each side (0.5)",
            lambda a: _baseline(a, "center"),
        ),
        ComponentSpec(
            "random", "FRACTION", False, False, "random crop of FRACTION of each side (0.5)",
            lambda a: _baseline(a, "random"),
        ),
        ComponentSpec(
            "grounding", "MODEL", False, False,
            "open-vocabulary detector (OWL-ViT, OWLv2, Grounding DINO); default OWLv2",
            _grounding,
        ),
        ComponentSpec(
            "vlm", "MODEL", False, False,
            "VLM crop policy (Qwen2-VL / 2.5-VL / 3-VL); default Qwen2.5-VL-3B", _vlm,
        ),
        ComponentSpec(
            "text_match", None, False, True,
            "training-free: the proposal most similar to the question, by the scorer",
            _text_match,
        ),
        ComponentSpec(
            "proposal", "WEIGHTS", False, True,
            "the light learned policy over proposals (shipped weights by default; "
            "proposal:dense the shipped scorer-independent ones, proposal:objects the ones "
            "with the demo detector's object boxes, proposal:dense-objects both, "
            "proposal:objects-retrieval the box policy trained for retrieval as well, "
            "proposal:paraphrased the default one trained on several wordings per question)",
            _proposal,
        ),
        ComponentSpec("fake", None, False, False, "scripted test cropper (always FULL)", _fake),
    )
}  # fmt: skip


def needs_scorer(spec: str) -> bool:
    """Whether the cropper of ``spec`` scores views with the re-ranker's scorer (unknown
    kinds: ``False``; building them raises)."""
    entry = CROPPERS.get(split_spec(spec)[0])
    return bool(entry and entry.needs_scorer)


def build_cropper(
    spec: str,
    *,
    model_options: ModelOptions | None = None,
    image_options: ImageLoadOptions | None = None,
    scorer: Any = None,
    threshold: float | None = None,
) -> Any:
    """Build a cropper from ``spec`` (see :data:`CROPPERS`).

    Args:
        spec: The cropper spec.
        model_options: How a model-backed cropper loads its model (defaults when ``None``).
        image_options: How the cropper decodes query images (defaults when ``None``).
        scorer: The bi-encoder used by the croppers that need one (``text_match``,
            ``proposal``; the latter builds the scorer its weights were trained with
            when none is given), or its spec (``"demo"``, ``"clip:MODEL"``...).
        threshold: Detector score threshold (``grounding``), similarity margin
            (``text_match``) or crop gate (``proposal``: the minimum probability of the
            chosen region); the cropper's default when ``None``.

    Raises:
        ConfigError: Unknown or malformed spec, or a missing scorer.
        ModelLoadError: The cropper's model cannot be loaded (croppers that load eagerly).
    """
    entry, arg = lookup(CROPPERS, spec, "cropper")
    options = model_options_or_default(model_options)
    if isinstance(scorer, str):
        from region_rerank.scorers.specs import build_scorer

        scorer = build_scorer(scorer, model_options=options)
    return entry.build(
        BuildArgs(
            arg,
            model_options=options,
            image_options=image_options,
            scorer=scorer,
            threshold=threshold,
        )
    )
