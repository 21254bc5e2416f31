"""Build croppers and scorers from short spec strings (used by the CLI and as defaults).

Cropper specs: ``"full"``, ``"center[:FRACTION]"``, ``"random[:FRACTION]"``,
``"grounding"`` / ``"grounding:MODEL"``, ``"vlm"`` / ``"vlm:MODEL"`` (``MODEL`` is a hub
id or a local folder), ``"text_match"`` (needs a bi-encoder scorer), ``"proposal"`` /
``"proposal:WEIGHTS"`` (the light learned policy; the shipped weights by default; it uses
the given scorer, else builds the scorer its weights were trained with).

Scorer specs: ``"clip"`` / ``"clip:MODEL"`` (CLIP, SigLIP, SigLIP2), ``"st:MODEL"``
(sentence-transformers bi-encoder), ``"cross:MODEL"`` (sentence-transformers
cross-encoder), ``"demo"`` / ``"demo:WEIGHTS"`` (the offline demo scorer), ``"fake"`` (the
deterministic test scorer).
"""

from __future__ import annotations

from typing import Any

from region_rerank.errors import ConfigError

__all__ = [
    "CROPPER_KINDS",
    "SCORER_KINDS",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_DETECTOR_MODEL",
    "DEFAULT_VLM_MODEL",
    "build_cropper",
    "build_scorer",
]

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_DETECTOR_MODEL = "google/owlv2-base-patch16-ensemble"
DEFAULT_VLM_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
CROPPER_KINDS = (
    "full",
    "center",
    "random",
    "grounding",
    "vlm",
    "text_match",
    "proposal",
    "fake",
)
SCORER_KINDS = ("clip", "st", "cross", "demo", "fake")


def _split(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, str | None]:
    kind, _, model = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        raise ConfigError(f"unknown {what} {spec!r}; use one of {[k + '[:MODEL]' for k in kinds]}")
    return kind, (model.strip() or None)


def build_cropper(
    spec: str,
    device: Any = "auto",
    dtype: Any = "auto",
    *,
    scorer: Any = None,
    threshold: float | None = None,
) -> Any:
    """Build a cropper from ``spec`` (see the module docstring).

    Args:
        spec: The cropper spec.
        device, dtype: Where the cropper's model runs.
        scorer: The bi-encoder used by ``"text_match"`` and ``"proposal"``.
        threshold: Detector score threshold (``"grounding"``) or similarity margin
            (``"text_match"``); the cropper's default when ``None``.
    """
    kind, model = _split(spec, CROPPER_KINDS, "cropper")
    if kind == "text_match":
        from region_rerank.croppers.text_match import TextMatchCropper, TextMatchCropperConfig

        if scorer is None:
            raise ConfigError("the text_match cropper needs a bi-encoder scorer")
        cfg_tm = TextMatchCropperConfig(margin=threshold if threshold is not None else 0.0)
        return TextMatchCropper(scorer, cfg_tm)
    if kind == "proposal":
        from region_rerank.croppers.proposal import ProposalPolicyCropper

        return ProposalPolicyCropper(scorer, model, device=device)
    if kind == "full":
        from region_rerank.croppers.full import FullImageCropper

        return FullImageCropper()
    if kind == "fake":
        from region_rerank.testing import FakeCropper

        return FakeCropper()
    if kind in ("center", "random"):
        from region_rerank.croppers.baselines import CenterCropper, RandomCropper

        fraction = float(model) if model else 0.5
        return CenterCropper(fraction) if kind == "center" else RandomCropper(fraction)
    if kind == "grounding":
        from region_rerank.croppers.grounding import GroundingCropper, GroundingCropperConfig

        cfg = GroundingCropperConfig(device=device, dtype=dtype, score_threshold=threshold)
        return GroundingCropper(model or DEFAULT_DETECTOR_MODEL, config=cfg)
    from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig

    return VLMCropper(
        model or DEFAULT_VLM_MODEL, config=VLMCropperConfig(device=device, dtype=dtype)
    )


def build_scorer(spec: str, device: Any = "auto", dtype: Any = "auto") -> Any:
    """Build a scorer from ``spec`` (see the module docstring)."""
    kind, model = _split(spec, SCORER_KINDS, "scorer")
    if kind == "fake":
        from region_rerank.testing import FakeScorer

        return FakeScorer()
    if kind == "demo":
        from region_rerank.demo.scorer import DemoScorer

        return DemoScorer(model, device=device)
    if kind == "clip":
        from region_rerank.scorers.clip import ClipScorer

        return ClipScorer(model or DEFAULT_CLIP_MODEL, device=device, dtype=dtype)
    if model is None:
        raise ConfigError(f"scorer spec {spec!r} needs a model: '{kind}:MODEL'")
    if kind == "st":
        from region_rerank.scorers.sentence_transformers import SentenceTransformerScorer

        return SentenceTransformerScorer(model, device=device)
    from region_rerank.scorers.cross_encoder import CrossEncoderScorer

    return CrossEncoderScorer(model, device=device)
