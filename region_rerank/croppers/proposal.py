"""The light learned cropper: a small policy that picks FULL or one proposal box, no VLM.

For each query the policy sees a set of actions -- FULL (the whole image) and a multi-scale
grid of proposal boxes (:func:`~region_rerank.proposals.grid_proposals`, plus optional
detector boxes) -- described by:

* the scorer's embedding of each view (one device-crop batch per query through
  :func:`~region_rerank.views.embed_views`), FULL being the full image's embedding;
* the box geometry (corners, centre, size, area, aspect, distances to the centre and the
  corners), normalised by the image size; FULL is always action 0, the whole-image box;
* the question embedding (``scorer.embed_texts``).

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

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.boxes import clamp_box
from region_rerank.checksums import sha256_of
from region_rerank.croppers.base import BaseCropper
from region_rerank.errors import ConfigError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions
from region_rerank.proposals import grid_proposals
from region_rerank.types import Box, CropDecision, Query

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
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

WEIGHTS_PATH = (
    Path(__file__).resolve().parent.parent / "demo" / "weights" / "proposal_policy.safetensors"
)
GEOMETRY_DIM = 16
_CONTEXT_DIM = 6
#: A detector: ``(image, question) -> boxes`` in pixels ``(x1, y1, x2, y2)`` or :class:`Box`.
Detector = Callable[["Image.Image", str], Sequence[Any]]


@dataclass(frozen=True)
class PolicyArch:
    """Architecture and proposal settings of a policy (saved with its weights).

    Attributes:
        dim: Embedding dimension of the scorer.
        hidden: Width of the per-action tokens.
        heads: Attention heads (must divide ``hidden``).
        scales: Grid proposal sides as fractions of the shorter image side.
        overlap: Overlap of neighbouring grid proposals.
        scorer: Name of the scorer the policy was trained with (its features).
    """

    dim: int = 384
    hidden: int = 64
    heads: int = 4
    scales: tuple[float, ...] = (0.3, 0.45, 0.6)
    overlap: float = 0.5
    scorer: str = "demo"

    def __post_init__(self) -> None:
        check_range("dim", self.dim, 1)
        check_range("hidden", self.hidden, 1)
        check_range("heads", self.heads, 1)
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        for s in self.scales:
            check_range("scales", s, 0.0, 1.0, low_inclusive=False)
        check_range("overlap", self.overlap, 0.0, 0.9)


@dataclass(frozen=True)
class ProposalPolicyConfig:
    """Inference settings of :class:`ProposalPolicyCropper`.

    Attributes:
        batch_size: View crops per scorer forward pass.
        max_detector_boxes: Detector boxes kept per image (highest first as returned).
    """

    batch_size: int = 64
    max_detector_boxes: int = 16

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, 1)
        check_range("max_detector_boxes", self.max_detector_boxes, 0)


@dataclass(frozen=True, eq=False)
class PolicyInputs:
    """Padded policy inputs for a batch of queries (action 0 is FULL).

    Attributes:
        question: ``B x D`` question embeddings.
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


def box_geometry(box: Box | None, image_size: tuple[int, int]) -> list[float]:
    """The ``GEOMETRY_DIM`` geometry features of ``box`` normalised by the image size:
    corners, centre, width, height, area, log area, log aspect, distance of the centre to
    the image centre and to the four corners. ``None`` (FULL) is the whole-image box."""
    w, h = float(image_size[0]), float(image_size[1])
    x1, y1, x2, y2 = (
        (0.0, 0.0, 1.0, 1.0) if box is None else (box.x1 / w, box.y1 / h, box.x2 / w, box.y2 / h)
    )
    bw, bh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    corners = [math.hypot(cx - a, cy - b) for a, b in ((0, 0), (1, 0), (0, 1), (1, 1))]
    aspect = math.log(max(bw * w, 1e-6) / max(bh * h, 1e-6))
    return [
        x1, y1, x2, y2, cx, cy, bw, bh, bw * bh, math.log(max(bw * bh, 1e-6)), aspect,
        math.hypot(cx - 0.5, cy - 0.5), *corners,
    ]  # fmt: skip


def _masked_stats(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z-score and rank fraction (0 = best) of ``x`` (``B x A``) among the real actions."""
    m = mask.float()
    n = m.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(-1, keepdim=True) / n
    var = (((x - mean) * m) ** 2).sum(-1, keepdim=True) / n
    z = (x - mean) / (var.sqrt() + 1e-6)
    above = ((x[:, None, :] > x[:, :, None]) & mask[:, None, :]).float().sum(-1)
    return z * m, above / n


@functools.cache
def _net_class() -> type:
    """The policy network class (defined on first use so importing needs no torch)."""
    import torch
    from torch import nn

    class ProposalPolicyNet(nn.Module):
        """Per-action tokens (view, question x view, question-conditioned geometry and
        context) -> one masked self-attention layer -> a scoring head (zero-initialised:
        the untrained policy is uniform)."""

        def __init__(self, dim: int, hidden: int, heads: int, geo_dim: int, ctx_dim: int):
            super().__init__()
            self.q_proj = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden))
            self.v_proj = nn.Linear(dim, hidden)
            self.qv_proj = nn.Linear(dim, hidden)
            self.geo = nn.Sequential(
                nn.Linear(geo_dim + ctx_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
            )
            self.film = nn.Linear(hidden, 2 * hidden)
            self.norm1 = nn.LayerNorm(hidden)
            self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.norm2 = nn.LayerNorm(hidden)
            self.mlp = nn.Sequential(
                nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
            )
            self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU())
            self.out = nn.Linear(hidden, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(
            self,
            question: torch.Tensor,
            views: torch.Tensor,
            geometry: torch.Tensor,
            mask: torch.Tensor,
        ) -> torch.Tensor:
            sim = torch.einsum("bad,bd->ba", views, question)
            to_full = torch.einsum("bad,bd->ba", views, views[:, 0])
            z_sim, rank_sim = _masked_stats(sim, mask)
            z_full, _ = _masked_stats(to_full, mask)
            ctx = torch.stack([sim, z_sim, rank_sim, sim - sim[:, :1], to_full, z_full], -1)
            q = self.q_proj(question)
            gamma, beta = self.film(q).chunk(2, -1)
            g = self.geo(torch.cat([geometry, ctx], -1)) * (1 + gamma[:, None]) + beta[:, None]
            x = self.v_proj(views) + self.qv_proj(views * question[:, None]) + g
            h = self.norm1(x)
            x = x + self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)[0]
            x = x + self.mlp(self.norm2(x))
            feats = torch.cat([x, q[:, None].expand(-1, x.shape[1], -1)], -1)
            logits = self.out(self.head(feats)).squeeze(-1)
            return logits.masked_fill(~mask, float("-inf"))

    return ProposalPolicyNet


def build_policy_net(arch: PolicyArch | None = None) -> torch.nn.Module:
    """A fresh policy network for ``arch`` (uniform over the actions until trained)."""
    a = arch or PolicyArch()
    net: torch.nn.Module = _net_class()(a.dim, a.hidden, a.heads, GEOMETRY_DIM, _CONTEXT_DIM)
    return net


def save_proposal_policy(
    net: torch.nn.Module, arch: PolicyArch, path: str | Path, meta: dict[str, Any] | None = None
) -> str:
    """Save ``net`` as safetensors (``arch`` and ``meta`` as JSON metadata) plus a
    ``.sha256`` file; return the checksum."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    arch_json = {**arch.__dict__, "scales": list(arch.scales)}
    info = {"arch": json.dumps(arch_json), **{k: json.dumps(v) for k, v in (meta or {}).items()}}
    save_file(state, str(p), metadata=info)
    digest = sha256_of(p)
    p.with_suffix(".sha256").write_text(digest + "\n")
    return digest


def load_proposal_policy(
    path: str | Path | None = None, *, verify: bool = True
) -> tuple[torch.nn.Module, PolicyArch, dict[str, Any]]:
    """Load a policy (the shipped weights by default) in eval mode.

    Returns:
        ``(net, arch, metadata)``.

    Raises:
        ConfigError: Missing weights or checksum, or a checksum mismatch.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path) if path is not None else WEIGHTS_PATH
    if not p.is_file():
        raise ConfigError(
            f"proposal-policy weights not found at {str(p)!r}; train them with "
            "`python scripts/train_proposal_policy.py`"
        )
    if verify:
        checksum = p.with_suffix(".sha256")
        if not checksum.is_file():
            raise ConfigError(f"checksum file {str(checksum)!r} is missing")
        expected, actual = checksum.read_text().strip(), sha256_of(p)
        if actual != expected:
            raise ConfigError(
                f"checksum mismatch for {str(p)!r}: expected {expected}, got {actual}"
            )
    with safe_open(str(p), framework="pt") as fh:
        raw = fh.metadata() or {}
    meta = {k: json.loads(v) for k, v in raw.items()}
    arch_d = meta.pop("arch", {})
    arch = PolicyArch(**{**arch_d, "scales": tuple(arch_d.get("scales", PolicyArch.scales))})
    net = build_policy_net(arch)
    net.load_state_dict(load_file(str(p)))
    return net.eval(), arch, meta


class ProposalPolicyCropper(BaseCropper):
    """Pick FULL or the best proposal box with a small learned policy (no VLM).

    Args:
        scorer: The bi-encoder whose embeddings the policy reads; it must be the one the
            policy was trained with (the shipped weights: the demo scorer). Built from
            the weights' recorded scorer spec when ``None``.
        weights: A safetensors file (the shipped weights by default), or a ``(net, arch)``
            pair already in memory (used by the trainer).
        config: :class:`ProposalPolicyConfig`.
        detector: Optional ``(image, question) -> boxes`` adding proposals (pixels).
        verify: Check the weights' SHA-256 checksum.
        model_options: For a scorer built from the weights' spec
            (:class:`~region_rerank.model_options.ModelOptions`; the policy network itself is
            tiny, loads from safetensors and runs where that scorer runs).
        image_options: How query images given as paths / bytes / arrays are decoded
            (:class:`~region_rerank.images.ImageLoadOptions`).
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
    ) -> None:
        if isinstance(weights, tuple):
            self.net, self.arch = weights
            self.meta: dict[str, Any] = {}
        else:
            self.net, self.arch, self.meta = load_proposal_policy(weights, verify=verify)
        if scorer is None:
            from region_rerank.scorers.specs import build_scorer

            scorer = build_scorer(self.arch.scorer, model_options=model_options)
        elif getattr(scorer, "name", None) != self.arch.scorer:
            logger.warning(
                "ProposalPolicyCropper: weights were trained with the %r scorer, got %r",
                self.arch.scorer,
                getattr(scorer, "name", type(scorer).__name__),
            )
        self.scorer = scorer
        self.config = config or ProposalPolicyConfig()
        self.image_options = image_options
        self.detector = detector

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

    def _boxes(self, image: Image.Image, question: str) -> list[Box]:
        boxes = grid_proposals(image.size, self.arch.scales, self.arch.overlap)
        if self.detector is not None and self.config.max_detector_boxes:
            extra = list(self.detector(image, question))[: self.config.max_detector_boxes]
            for b in extra:
                clamped = clamp_box(b.as_tuple() if isinstance(b, Box) else b, image.size)
                if clamped is not None:
                    boxes.append(clamped)
        return boxes

    def policy_inputs(self, queries: Sequence[Query]) -> PolicyInputs:
        """Embed every view and the questions and build the padded policy inputs (the
        features used both at inference and when building training sets)."""
        import torch

        from region_rerank.views import embed_views

        images = [load_image(q.image, self.image_options) for q in queries]
        boxes = [self._boxes(img, q.question) for img, q in zip(images, queries)]
        views = [[None, *b] for b in boxes]
        emb = embed_views(self.scorer, images, views, batch_size=self.config.batch_size)
        question = self.scorer.embed_texts([q.question for q in queries]).float().cpu()
        n_act = max(len(v) for v in views)
        dim = question.shape[1]
        view_t = torch.zeros(len(queries), n_act, dim)
        geo_t = torch.zeros(len(queries), n_act, GEOMETRY_DIM)
        mask = torch.zeros(len(queries), n_act, dtype=torch.bool)
        for i, (img, v, e) in enumerate(zip(images, views, emb)):
            view_t[i, : len(v)] = e.float().cpu()
            geo_t[i, : len(v)] = torch.tensor([box_geometry(b, img.size) for b in v])
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
            if best == 0:
                out.append(
                    CropDecision.full(
                        image_size=size,
                        confidence=p,
                        source=self.name,
                        raw_output=summary,
                        reason="the policy prefers the full image",
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
