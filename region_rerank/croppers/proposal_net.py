"""The light policy's network, its architecture record and its weights file.

:class:`PolicyArch` records the proposal settings and the network shape; it is saved with
the weights (safetensors metadata) next to a ``.sha256`` checksum verified on load.
:func:`resolve_policy_weights` finds a weights file from a path, a training output folder or
a hub repository id (``ProposalPolicyCropper.from_pretrained``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.checksums import checked_metadata, sha256_of
from region_rerank.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch

    from region_rerank.types import Box

__all__ = [
    "GEOMETRY_DIM",
    "WEIGHTS_NAME",
    "WEIGHTS_PATH",
    "DENSE_WEIGHTS_PATH",
    "OBJECTS_WEIGHTS_PATH",
    "DENSE_OBJECTS_WEIGHTS_PATH",
    "OBJECTS_RETRIEVAL_WEIGHTS_PATH",
    "PARAPHRASED_WEIGHTS_PATH",
    "SHIPPED_WEIGHTS",
    "PolicyArch",
    "build_policy_net",
    "geometry_dim",
    "detector_geometry",
    "DETECTOR_GEOMETRY_DIM",
    "box_geometry",
    "save_proposal_policy",
    "load_proposal_policy",
    "resolve_policy_weights",
]

logger = logging.getLogger(__name__)

#: The weights' file name in a training output folder or a hub repository.
WEIGHTS_NAME = "proposal_policy.safetensors"
WEIGHTS_PATH = (
    Path(__file__).resolve().parent.parent / "demo" / "weights" / "proposal_policy.safetensors"
)
#: The shipped scorer-independent policy (``dense:demo`` encoder).
DENSE_WEIGHTS_PATH = WEIGHTS_PATH.with_name("proposal_policy_dense.safetensors")
#: The shipped policy whose proposals include the demo detector's object boxes.
OBJECTS_WEIGHTS_PATH = WEIGHTS_PATH.with_name("proposal_policy_objects.safetensors")
#: The shipped scorer-independent policy with the demo detector's object boxes.
DENSE_OBJECTS_WEIGHTS_PATH = WEIGHTS_PATH.with_name("proposal_policy_dense_objects.safetensors")
#: The shipped detector-box policy trained for retrieval and re-ranking (reward weight 0.5).
OBJECTS_RETRIEVAL_WEIGHTS_PATH = WEIGHTS_PATH.with_name(
    "proposal_policy_objects_retrieval.safetensors"
)
#: The shipped default-architecture policy trained with paraphrase resampling
#: (``train proposal --resample-wording``).
PARAPHRASED_WEIGHTS_PATH = WEIGHTS_PATH.with_name("proposal_policy_paraphrased.safetensors")
#: Shipped weights by their ``proposal:NAME`` spec argument.
SHIPPED_WEIGHTS = {
    "dense": DENSE_WEIGHTS_PATH,
    "objects": OBJECTS_WEIGHTS_PATH,
    "dense-objects": DENSE_OBJECTS_WEIGHTS_PATH,
    "objects-retrieval": OBJECTS_RETRIEVAL_WEIGHTS_PATH,
    "paraphrased": PARAPHRASED_WEIGHTS_PATH,
}
GEOMETRY_DIM = 16
#: Extra geometry features of a policy with a detector: the detector-box flag, then each
#: detector box's rank among the image's detector boxes by centre x, centre y, area and
#: distance to each corner (0 = lowest, 1 = highest; zeros on FULL and grid boxes).
DETECTOR_GEOMETRY_DIM = 8
_CONTEXT_DIM = 6


@dataclass(frozen=True)
class PolicyArch:
    """Architecture and proposal settings of a policy (saved with its weights).

    Attributes:
        dim: Embedding dimension of the scorer.
        hidden: Width of the per-action tokens.
        heads: Attention heads (must divide ``hidden``).
        scales: Grid proposal sides as fractions of the shorter image side.
        overlap: Overlap of neighbouring grid proposals.
        scorer: Name of the scorer the policy was trained with (its rewards, and its
            features when ``encoder`` is ``scorer``).
        encoder: Spec of the policy's feature encoder
            (:func:`~region_rerank.croppers.policy_encoder.build_policy_encoder`):
            ``scorer`` (the scorer's own view embeddings) or a scorer-independent one
            such as ``dense:demo``.
        question_words: The encoder gives the question as word vectors (``B x T x D``,
            zero-padded), pooled by a learned attention over the words; otherwise one
            vector per question.
        detector: Spec of a detector whose boxes join the grid proposals (``""``: none;
            ``demo``: the demo world's object detector); every action then carries
            :data:`DETECTOR_GEOMETRY_DIM` more geometry features
            (:func:`detector_geometry`).
    """

    dim: int = 384
    hidden: int = 64
    heads: int = 4
    scales: tuple[float, ...] = (0.3, 0.45, 0.6)
    overlap: float = 0.5
    scorer: str = "demo"
    encoder: str = "scorer"
    question_words: bool = False
    detector: str = ""

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
        if not isinstance(self.detector, str):
            raise ConfigError(f"detector must be a spec string, got {self.detector!r}")

    def check_question_form(self, encoder: Any) -> None:
        """Raise :class:`ConfigError` unless ``encoder`` gives the question in the form this
        policy reads (word vectors or one vector, :attr:`question_words`)."""
        if encoder.question_words != self.question_words:
            raise ConfigError(
                f"the policy {'reads' if self.question_words else 'does not read'} "
                "question word vectors but the encoder "
                f"{'gives' if encoder.question_words else 'does not give'} them"
            )


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

        def __init__(
            self, dim: int, hidden: int, heads: int, geo_dim: int, ctx_dim: int, words: bool
        ):
            super().__init__()
            self.word_score = nn.Linear(dim, 1) if words else None
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
            question = self.pool_question(question)
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

        def pool_question(self, question: torch.Tensor) -> torch.Tensor:
            """``B x D`` as is; ``B x T x D`` word vectors (zero rows = padding) -> their
            attention-weighted, normalised mean (zeros for a question without words)."""
            if question.dim() == 2:
                if self.word_score is not None:
                    raise ValueError("this policy reads word vectors (B x T x D)")
                return question
            if self.word_score is None:
                raise ValueError("this policy reads one vector per question (B x D)")
            real = question.abs().sum(-1) > 0
            score = self.word_score(question).squeeze(-1).masked_fill(~real, float("-inf"))
            weight = torch.softmax(score, -1).nan_to_num(0.0)
            pooled = (weight[..., None] * question).sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return ProposalPolicyNet


def geometry_dim(arch: PolicyArch) -> int:
    """Geometry features per action: :data:`GEOMETRY_DIM`, plus
    :data:`DETECTOR_GEOMETRY_DIM` when the policy has a detector."""
    return GEOMETRY_DIM + (DETECTOR_GEOMETRY_DIM if arch.detector else 0)


def detector_geometry(geometry: list[list[float]]) -> list[list[float]]:
    """The :data:`DETECTOR_GEOMETRY_DIM` features of each detector box, from their
    :func:`box_geometry` rows: a flag (1), then its rank fraction among the detector boxes
    by centre x, centre y, area and distance to each of the four corners, so "the
    rightmost", "the smallest" or "the one nearest the top-left corner" is one feature."""
    columns = (4, 5, 8, 12, 13, 14, 15)  # cx, cy, area, distances to the four corners
    n = len(geometry)
    out = [[1.0] for _ in geometry]
    for c in columns:
        values = [row[c] for row in geometry]
        for i, v in enumerate(values):
            out[i].append(sum(u < v for u in values) / max(1, n - 1))
    return out


def build_policy_net(arch: PolicyArch | None = None) -> torch.nn.Module:
    """A fresh policy network for ``arch`` (uniform over the actions until trained)."""
    a = arch or PolicyArch()
    net: torch.nn.Module = _net_class()(
        a.dim, a.hidden, a.heads, geometry_dim(a), _CONTEXT_DIM, a.question_words
    )
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
    from safetensors.torch import load_file

    p = Path(path) if path is not None else WEIGHTS_PATH
    hint = "`region-rerank train proposal`"
    raw = checked_metadata(p, "proposal-policy weights", hint, verify)
    meta = {k: json.loads(v) for k, v in raw.items()}
    arch_d = meta.pop("arch", {})
    arch = PolicyArch(**{**arch_d, "scales": tuple(arch_d.get("scales", PolicyArch.scales))})
    net = build_policy_net(arch)
    net.load_state_dict(load_file(str(p)))
    return net.eval(), arch, meta


def resolve_policy_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """The weights file of ``name_or_path``: a ``.safetensors`` file, a folder holding
    :data:`WEIGHTS_NAME` (what ``region-rerank train proposal --out`` writes), or a hub
    repository id holding it (downloaded with its ``.sha256`` by ``huggingface_hub``,
    which honours ``HF_HUB_OFFLINE``).

    Raises:
        ModelLoadError: Nothing is found there.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / WEIGHTS_NAME).is_file():
            return p / WEIGHTS_NAME
        raise ModelLoadError(f"{str(p)!r} holds no {WEIGHTS_NAME}")
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")) or name.endswith(".safetensors"):
        raise ModelLoadError(
            f"proposal-policy weights not found: {name!r} is neither a file, a folder with "
            f"{WEIGHTS_NAME}, nor a hub repository id (org/name)"
        )
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(name, WEIGHTS_NAME))
        hf_hub_download(name, Path(WEIGHTS_NAME).with_suffix(".sha256").name)
    except Exception as exc:  # offline, missing repository or file: one typed error
        raise ModelLoadError(
            f"cannot fetch {WEIGHTS_NAME} from the hub repository {name!r}: {exc}"
        ) from exc
    return path
