"""The light learned cropper: a small policy that picks FULL or one proposal box, no VLM.

For each query the policy sees a set of actions -- FULL (the whole image) and a multi-scale
grid of proposal boxes (:func:`~region_rerank.proposals.grid_proposals`, plus optional
detector boxes) -- described by:

* each view's features from the policy's encoder
  (:mod:`~region_rerank.croppers.policy_encoder`): either the scorer's embedding of each
  cropped view (``scorer``), or a fixed scorer-independent encoder (``dense:demo``: one
  CNN forward over the whole image, RoI-pooled per box); FULL is the whole image;
* the box geometry (corners, centre, size, area, aspect, distances to the centre and the
  corners), normalised by the image size; FULL is always action 0, the whole-image box;
* the question's features from the same encoder.

The policy network mixes them per action -- a projection of the view, of the
question-view elementwise product (a learned bilinear match), and of the geometry plus
in-image context features (question-view similarity, its z-score and rank among the
actions, similarity to the full image) modulated by the question (FiLM), so that "the
top-left object" or "the largest object" conditions the geometry -- then one masked
self-attention layer lets each proposal see the others (relations, "largest"), and a head
scores it. Greedy at inference (argmax, FULL when FULL wins); the trainer samples. Trained
with r-GRPO by :mod:`region_rerank.train.proposal_trainer`. Weights are safetensors with a
SHA-256 checksum verified on load; the shipped ones were trained with the demo scorer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.boxes import clamp_box
from region_rerank.croppers.base import BaseCropper
from region_rerank.croppers.encoder_specs import (
    SCORER_ENCODER,
    build_policy_encoder,
    build_proposal_detector,
)
from region_rerank.croppers.policy_encoder import PolicyEncoder, check_encoder_card
from region_rerank.croppers.proposal_net import (
    DENSE_OBJECTS_WEIGHTS_PATH,
    DENSE_WEIGHTS_PATH,
    GEOMETRY_DIM,
    OBJECTS_RETRIEVAL_WEIGHTS_PATH,
    OBJECTS_WEIGHTS_PATH,
    PARAPHRASED_WEIGHTS_PATH,
    SHIPPED_WEIGHTS,
    WEIGHTS_PATH,
    PolicyArch,
    box_geometry,
    build_policy_net,
    detector_geometry,
    geometry_dim,
    load_proposal_policy,
    resolve_policy_weights,
    save_proposal_policy,
)
from region_rerank.errors import ConfigError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions
from region_rerank.proposals import grid_proposals
from region_rerank.types import Box, CropDecision, Query

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DENSE_WEIGHTS_PATH",
    "OBJECTS_WEIGHTS_PATH",
    "DENSE_OBJECTS_WEIGHTS_PATH",
    "OBJECTS_RETRIEVAL_WEIGHTS_PATH",
    "PARAPHRASED_WEIGHTS_PATH",
    "SHIPPED_WEIGHTS",
    "GEOMETRY_DIM",
    "WEIGHTS_PATH",
    "PolicyArch",
    "PolicyInputs",
    "ProposalPolicyConfig",
    "ProposalPolicyCropper",
    "build_policy_net",
    "box_geometry",
    "save_proposal_policy",
    "load_proposal_policy",
]

logger = logging.getLogger(__name__)


def _same_scorer(recorded: str, scorer: Any) -> bool:
    """Whether ``scorer`` is the one recorded in the weights (its name, or the spec it was
    built from: ``st:MODEL`` for ``sentence-transformers:MODEL``)."""
    name = str(getattr(scorer, "name", ""))
    model = getattr(scorer, "model_id", None)
    return recorded == name or (model is not None and recorded.partition(":")[2] == model)


def _crop_gate(config: ProposalPolicyConfig, meta: dict[str, Any]) -> float:
    """The crop gate in force: the config's, else the weights' card's, else 0.

    Raises:
        ConfigError: The card records a gate outside [0, 1].
    """
    if config.min_crop_confidence is not None:
        return float(config.min_crop_confidence)
    gate = meta.get("min_crop_confidence", 0.0)
    if not isinstance(gate, (int, float)) or isinstance(gate, bool) or not 0.0 <= gate <= 1.0:
        raise ConfigError(f"the weights' card records min_crop_confidence={gate!r}, not in [0, 1]")
    return float(gate)


#: A detector: ``(image, question) -> boxes`` in pixels ``(x1, y1, x2, y2)`` or :class:`Box`.
Detector = Callable[["Image.Image", str], Sequence[Any]]


@dataclass(frozen=True)
class ProposalPolicyConfig:
    """Inference settings of :class:`ProposalPolicyCropper`.

    Attributes:
        batch_size: View crops per forward pass (encoders that embed crops).
        max_detector_boxes: Detector boxes kept per image (highest first as returned).
        min_crop_confidence: The crop gate: a REGION decision whose probability (softmax
            over the actions) is below it becomes FULL, so an unsure policy keeps the whole
            image. ``None``: the gate recorded in the weights' card
            (``min_crop_confidence``), 0 (no gate) when they record none.
    """

    batch_size: int = 64
    max_detector_boxes: int = 16
    min_crop_confidence: float | None = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, 1)
        check_range("max_detector_boxes", self.max_detector_boxes, 0)
        if self.min_crop_confidence is not None:
            check_range("min_crop_confidence", self.min_crop_confidence, 0.0, 1.0)


@dataclass(frozen=True, eq=False)
class PolicyInputs:
    """Padded policy inputs for a batch of queries (action 0 is FULL).

    Attributes:
        question: ``B x D`` question embeddings, or ``B x T x D`` word vectors.
        views: ``B x A x D`` view embeddings (row 0 the full image).
        geometry: ``B x A x GEOMETRY_DIM`` box geometry.
        mask: ``B x A`` True for real actions (False for padding).
        boxes: Per query, its REGION boxes (action ``i`` is ``boxes[i - 1]``).
        image_sizes: Per query, ``(width, height)``.
    """

    question: torch.Tensor
    views: torch.Tensor
    geometry: torch.Tensor
    mask: torch.Tensor
    boxes: list[list[Box]]
    image_sizes: list[tuple[int, int]]


class ProposalPolicyCropper(BaseCropper):
    """Pick FULL or the best proposal box with a small learned policy (no VLM).

    Args:
        scorer: The bi-encoder whose embeddings the policy reads; it must be the one the
            policy was trained with (the shipped weights: the demo scorer). Built from
            the weights' recorded scorer spec when ``None``.
        weights: A safetensors file (the shipped weights by default), or a ``(net, arch)``
            pair already in memory (used by the trainer).
        config: :class:`ProposalPolicyConfig`.
        detector: Optional ``(image, question) -> boxes`` adding proposals (pixels); by
            default the one the weights name (``arch.detector``), if any. A policy trained
            with a detector should be given one: without it, it sees only the grid.
        verify: Check the weights' SHA-256 checksum.
        model_options: For a scorer built from the weights' spec
            (:class:`~region_rerank.model_options.ModelOptions`; the policy network itself is
            tiny, loads from safetensors and runs where that scorer runs).
        image_options: How query images given as paths / bytes / arrays are decoded
            (:class:`~region_rerank.images.ImageLoadOptions`).
        encoder: The feature encoder (built from the weights' ``arch.encoder`` when
            ``None``); it must match the card saved with the weights.

    Raises:
        ConfigError: An encoder other than the one the weights were trained with.
    """

    name = "proposal"

    def __init__(
        self,
        scorer: Any = None,
        weights: str | Path | tuple[torch.nn.Module, PolicyArch] | None = None,
        *,
        config: ProposalPolicyConfig | None = None,
        detector: Detector | None = None,
        verify: bool = True,
        model_options: ModelOptions | None = None,
        image_options: ImageLoadOptions | None = None,
        encoder: PolicyEncoder | None = None,
    ) -> None:
        if isinstance(weights, tuple):
            self.net, self.arch = weights
            self.meta: dict[str, Any] = {}
        else:
            self.net, self.arch, self.meta = load_proposal_policy(weights, verify=verify)
        if self.arch.encoder == SCORER_ENCODER:
            if scorer is None:
                from region_rerank.scorers.specs import build_scorer

                scorer = build_scorer(self.arch.scorer, model_options=model_options)
            elif not _same_scorer(self.arch.scorer, scorer):
                logger.warning(
                    "ProposalPolicyCropper: weights were trained with the %r scorer, got %r",
                    self.arch.scorer,
                    getattr(scorer, "name", type(scorer).__name__),
                )
        self.config = config or ProposalPolicyConfig()
        self.min_crop_confidence = _crop_gate(self.config, self.meta)
        if encoder is None:
            encoder = build_policy_encoder(
                self.arch.encoder,
                scorer,
                model_options=model_options,
                batch_size=self.config.batch_size,
                question_words=self.arch.question_words,
            )
        check_encoder_card(self.meta.get("encoder"), encoder)
        self.arch.check_question_form(encoder)
        if encoder.dim != self.arch.dim:
            raise ConfigError(
                f"the policy encoder gives {encoder.dim}-dimensional features, the weights "
                f"expect {self.arch.dim}"
            )
        self.encoder: PolicyEncoder = encoder
        self.scorer = scorer
        self.image_options = image_options
        if detector is None and self.arch.detector:
            detector = build_proposal_detector(self.arch.detector, model_options=model_options)
            check_encoder_card(self.meta.get("detector"), detector, "proposal detector")
        self.detector = detector

    @property
    def card(self) -> dict[str, Any]:
        """What the weights say of themselves: architecture, encoder and training record
        (data, scorer, settings, validation metrics; empty for in-memory weights)."""
        return {"arch": dict(self.arch.__dict__), **self.meta}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        scorer: Any = None,
        *,
        config: ProposalPolicyConfig | None = None,
        detector: Detector | None = None,
        verify: bool = True,
        model_options: ModelOptions | None = None,
        image_options: ImageLoadOptions | None = None,
    ) -> ProposalPolicyCropper:
        """Load a trained policy: a weights file, the ``--out`` folder of ``region-rerank
        train proposal``, or a hub repository id holding ``proposal_policy.safetensors``
        and its ``.sha256``.

        Args:
            name_or_path: Where the weights are.
            scorer: The scorer the policy was trained with; built from the spec recorded
                in the weights (with ``model_options``) when ``None``.
            config: As for the constructor.
            detector: As for the constructor.
            verify: As for the constructor.
            model_options: As for the constructor.
            image_options: As for the constructor.

        Raises:
            ModelLoadError: No weights there (or the hub cannot be reached).
            ConfigError: A checksum mismatch or missing checksum (with ``verify``).
        """
        return cls(
            scorer,
            resolve_policy_weights(name_or_path),
            config=config,
            detector=detector,
            verify=verify,
            model_options=model_options,
            image_options=image_options,
        )

    def weights_digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the architecture and the network's weights:
        evaluation runs use it to tell retrained weights apart."""
        import hashlib

        h = hashlib.sha256(repr(sorted(self.arch.__dict__.items())).encode())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / copy support: the policy network is stored as its weights and rebuilt
        from ``arch`` on load (its class is built at run time)."""
        state = dict(self.__dict__)
        state["net"] = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        net = build_policy_net(state["arch"])
        net.load_state_dict(state["net"])
        state["net"] = net.eval()
        self.__dict__.update(state)

    def _boxes(self, image: Image.Image, question: str) -> tuple[list[Box], int]:
        """The grid proposals then the detector's boxes (clamped to the image), and how
        many of them come from the grid."""
        boxes = grid_proposals(image.size, self.arch.scales, self.arch.overlap)
        n_grid = len(boxes)
        if self.detector is not None and self.config.max_detector_boxes:
            extra = list(self.detector(image, question))[: self.config.max_detector_boxes]
            for b in extra:
                clamped = clamp_box(b.as_tuple() if isinstance(b, Box) else b, image.size)
                if clamped is not None:
                    boxes.append(clamped)
        return boxes, n_grid

    def policy_inputs(self, queries: Sequence[Query]) -> PolicyInputs:
        """Embed every view and the questions and build the padded policy inputs (the
        features used both at inference and when building training sets)."""
        import torch

        images = [load_image(q.image, self.image_options) for q in queries]
        found = [self._boxes(img, q.question) for img, q in zip(images, queries)]
        boxes = [b for b, _ in found]
        views = [[None, *b] for b in boxes]
        emb = self.encoder.encode_views(images, views)
        question = self.encoder.encode_questions([q.question for q in queries])
        n_act = max(len(v) for v in views)
        dim = question.shape[-1]
        view_t = torch.zeros(len(queries), n_act, dim)
        geo_t = torch.zeros(len(queries), n_act, geometry_dim(self.arch))
        mask = torch.zeros(len(queries), n_act, dtype=torch.bool)
        for i, (img, v, e) in enumerate(zip(images, views, emb)):
            view_t[i, : len(v)] = e.float().cpu()
            rows = [box_geometry(b, img.size) for b in v]
            geo_t[i, : len(v), :GEOMETRY_DIM] = torch.tensor(rows)
            first = 1 + found[i][1]  # FULL, then the grid, then the detector's boxes
            if self.arch.detector and len(v) > first:
                geo_t[i, first : len(v), GEOMETRY_DIM:] = torch.tensor(
                    detector_geometry(rows[first:])
                )
            mask[i, : len(v)] = True
        return PolicyInputs(question, view_t, geo_t, mask, boxes, [img.size for img in images])

    def logits(self, inputs: PolicyInputs) -> torch.Tensor:
        """``B x A`` action logits (``-inf`` on padding)."""
        import torch

        with torch.inference_mode():
            return self.net(inputs.question, inputs.views, inputs.geometry, inputs.mask).float()

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        if not queries:
            return []
        inputs = self.policy_inputs(queries)
        logits = self.logits(inputs)
        probs = logits.softmax(-1)
        out = []
        for i, size in enumerate(inputs.image_sizes):
            best = int(logits[i].argmax())
            p = float(probs[i, best])
            summary = f"action {best} of {int(inputs.mask[i].sum())}, p={p:.3f}"
            gated = best != 0 and p < self.min_crop_confidence
            if best == 0 or gated:
                reason = (
                    f"the policy's best region has p={p:.3f} < the crop gate "
                    f"{self.min_crop_confidence:g}"
                    if gated
                    else "the policy prefers the full image"
                )
                out.append(
                    CropDecision.full(
                        image_size=size,
                        confidence=float(probs[i, 0]) if gated else p,
                        source=self.name,
                        raw_output=summary,
                        reason=reason,
                    )
                )
            else:
                box = inputs.boxes[i][best - 1]
                out.append(
                    CropDecision.region(
                        box, image_size=size, confidence=p, source=self.name, raw_output=summary
                    )
                )
        return out
