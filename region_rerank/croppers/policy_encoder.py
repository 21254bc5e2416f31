"""What the light policy reads: the features of each action's view and of the question.

Encoders are named by the spec recorded in a policy's weights
(:attr:`~region_rerank.croppers.proposal_net.PolicyArch.encoder`; specs are built by
:func:`region_rerank.croppers.encoder_specs.build_policy_encoder`):

* ``scorer`` -- :class:`ViewEncoder` over the re-ranking scorer itself: every proposal view
  is cropped and embedded by the scorer (the first policies). Its cost grows with the
  scorer, and the policy only works with the scorer it was trained with.
* ``dense:demo`` -- :class:`DenseRegionEncoder`: a fixed, small encoder independent of the
  scorer. One forward of a small CNN over the whole image at ``input_size`` pixels gives a
  feature map; every proposal box is pooled from it (RoI-align) and projected. The
  question goes through :class:`StaticWordEncoder`, a memoised bag of word vectors. Its
  cost is the same whatever the scorer, so one trained policy decides for any scorer.
* ``dense:demo:sentence`` -- the same views; the question through
  :class:`SentenceEncoder`, one pass of the full text model over the whole question (word
  order and context kept, at the cost of that pass on every new question).
* ``dense:clip:MODEL`` -- :class:`ClipDenseEncoder`: the same idea on real images, with a
  CLIP vision tower's patch grid (one forward, RoI-pooled) and CLIP's text tower.

Any other spec (``clip:MODEL``, ``st:MODEL``, ``demo``) is a :class:`ViewEncoder` over that
scorer, built from the spec: low-resolution crops through a small model of your choice.

Every encoder describes itself with :meth:`PolicyEncoder.card` (kind, models, weights
checksum, input size, dimension); the card is saved with the policy's weights and a policy
refuses to load with an encoder whose card differs.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from region_rerank._validate import check_range
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from region_rerank.types import Box

__all__ = [
    "PolicyEncoder",
    "ViewEncoder",
    "StaticWordEncoder",
    "SentenceEncoder",
    "DenseRegionEncoder",
    "ClipDenseEncoder",
    "check_encoder_card",
]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@runtime_checkable
class PolicyEncoder(Protocol):
    """Features of the views and questions the policy reads (CPU float tensors)."""

    @property
    def dim(self) -> int:
        """Feature dimension (the same for views and questions)."""
        ...

    @property
    def question_words(self) -> bool:
        """Questions come as word vectors (``B x T x dim``, zero-padded), else ``B x dim``."""
        ...

    def card(self) -> dict[str, Any]:
        """What the encoder is (saved with the weights, compared on load)."""
        ...

    def encode_questions(self, questions: Sequence[str]) -> torch.Tensor:
        """Normalised question features: ``B x dim``, or ``B x T x dim`` word vectors."""
        ...

    def encode_views(
        self, images: Sequence[Image.Image], views: Sequence[Sequence[Box | None]]
    ) -> list[torch.Tensor]:
        """Per image, ``len(views[i]) x dim`` normalised features (``None`` = full image)."""
        ...


class ViewEncoder:
    """Each view cropped and embedded by a bi-encoder scorer; questions by its text tower.

    Args:
        scorer: Any bi-encoder with ``embed_texts`` and images (the device crop path is
            used when it supports it).
        spec: How the scorer was named (recorded in the card).
        batch_size: Views per forward pass.
    """

    def __init__(self, scorer: Any, spec: str = "scorer", *, batch_size: int = 64) -> None:
        check_range("batch_size", batch_size, 1)
        self.scorer = scorer
        self.spec = spec
        self.batch_size = batch_size
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.scorer.embed_texts(["a"]).shape[1])
        return self._dim

    question_words = False

    def card(self) -> dict[str, Any]:
        return {"kind": "views", "spec": self.spec, "dim": self.dim}

    def encode_questions(self, questions: Sequence[str]) -> torch.Tensor:
        return self.scorer.embed_texts(list(questions)).float().cpu()

    def encode_views(
        self, images: Sequence[Image.Image], views: Sequence[Sequence[Box | None]]
    ) -> list[torch.Tensor]:
        from region_rerank.views import embed_views

        emb = embed_views(self.scorer, images, views, batch_size=self.batch_size)
        return [e.float().cpu() for e in emb]


class _TextModelQuestions:
    """A question encoder over a text model with ``encode(texts) -> N x D``, named in the
    card as ``kind:name``."""

    #: How the card names this kind of question encoder.
    kind = ""

    def __init__(self, model: Any, *, name: str = "all-MiniLM-L6-v2") -> None:
        self.model = model
        self.name = name
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """The text model's embedding dimension."""
        if self._dim is None:
            self._dim = int(self.model.encode(["a"]).shape[1])
        return self._dim


class StaticWordEncoder(_TextModelQuestions):
    """A question as the normalised mean of its words' vectors; each word's vector is the
    text model's embedding of that word alone, computed once and memoised.

    A warm question costs a tokenising regex and a few dictionary lookups; a new word costs
    one batched pass of the text model. Synonyms stay close because each word goes through
    the full contextual model ("biggest" near "largest"); word order is not kept.

    Args:
        model: A text encoder with ``encode(texts) -> N x D`` normalised tensors (e.g. the
            demo MiniLM tower).
        name: The model's name in the card.
        max_words: Memoised words kept (least recently used dropped first).
    """

    kind = "static-words"

    def __init__(
        self, model: Any, *, name: str = "all-MiniLM-L6-v2", max_words: int = 50_000
    ) -> None:
        check_range("max_words", max_words, 1)
        super().__init__(model, name=name)
        self.max_words = max_words
        self._memo: OrderedDict[str, torch.Tensor] = OrderedDict()

    @staticmethod
    def words(text: str) -> list[str]:
        """The lower-cased words of ``text`` (letters and digits)."""
        return _WORD.findall(text.lower())

    def _vectors(self, words: Sequence[str]) -> list[torch.Tensor]:
        missing = sorted({w for w in words if w not in self._memo})
        if missing:
            emb = self.model.encode(missing).float().cpu()
            for w, e in zip(missing, emb):
                self._memo[w] = e
        out = []
        for w in words:
            self._memo.move_to_end(w)
            out.append(self._memo[w])
        while len(self._memo) > self.max_words:
            self._memo.popitem(last=False)
        return out

    def encode_words(self, texts: Sequence[str], max_words: int = 64) -> torch.Tensor:
        """``N x T x D``: each text's first ``max_words`` word vectors, zero-padded to the
        longest (``T`` at least 1; a text without words is all zeros)."""
        import torch

        split = [self.words(t)[:max_words] for t in texts]
        out = torch.zeros(len(texts), max([1, *map(len, split)]), self.dim)
        for i, words in enumerate(split):
            if words:
                out[i, : len(words)] = torch.stack(self._vectors(words))
        return out

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``N x D`` normalised question vectors (zeros for a text without words)."""
        import torch
        import torch.nn.functional as F

        out = [
            torch.stack(self._vectors(words)).mean(0) if words else torch.zeros(self.dim)
            for words in (self.words(t) for t in texts)
        ]
        return F.normalize(torch.stack(out), dim=-1) if out else torch.zeros(0, self.dim)


class SentenceEncoder(_TextModelQuestions):
    """A question as the text model's embedding of the whole question: one contextual pass
    per question, so word order and the words around each word count ("the lowest item" is
    not a bag of "lowest" and "item"). Nothing is memoised.

    Args:
        model: A text encoder with ``encode(texts) -> N x D`` normalised tensors (e.g. the
            demo MiniLM tower).
        name: The model's name in the card.
    """

    kind = "sentence"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``N x D`` normalised question vectors."""
        import torch

        if not texts:
            return torch.zeros(0, self.dim)
        return self.model.encode(list(texts)).float().cpu()


class DenseRegionEncoder:
    """Proposal features from one dense forward: a CNN trunk over the whole image resized to
    ``input_size`` square, RoI-align of every box on its feature map, mean over the bins and
    the tower's projection into the text space; questions by :class:`StaticWordEncoder`.

    ``dense:demo`` is the demo image tower (its convolutional trunk and projection, frozen)
    and MiniLM word vectors (:func:`region_rerank.demo.policy_encoder.demo_dense_encoder`):
    about 1/10 of the work of embedding 62 crops with that tower.

    Args:
        tower: An ``nn.Sequential`` ending with ``AdaptiveAvgPool2d, Flatten, Linear`` (the
            demo tower's layout).
        text: The question encoder (:class:`StaticWordEncoder` or :class:`SentenceEncoder`).
        mean: Per-channel mean subtracted from the tower's input.
        std: Per-channel standard deviation the tower's input is divided by.
        input_size: Side of the square the image is resized to.
        stride: The trunk's total stride (16 for the demo tower).
        bins: RoI-align output side (``bins x bins``, averaged).
        tower_name: The image model's name in the card.
        tower_sha256: The image model's checksum in the card.
        device: Where the trunk runs.
        words: Give questions as word vectors (for a policy that pools them with learned
            attention, ``PolicyArch.question_words``; a :class:`StaticWordEncoder` only),
            else one vector per question. Default: word vectors from a
            :class:`StaticWordEncoder`, one vector from a :class:`SentenceEncoder`.

    Raises:
        ConfigError: A tower of another layout, or ``words`` with a question encoder
            that has no word vectors.
    """

    def __init__(
        self,
        tower: torch.nn.Module,
        text: StaticWordEncoder | SentenceEncoder,
        *,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        input_size: int = 160,
        stride: int = 16,
        bins: int = 2,
        tower_name: str = "demo-tower",
        tower_sha256: str | None = None,
        device: Any = "cpu",
        words: bool | None = None,
    ) -> None:
        import torch

        if words is None:
            words = isinstance(text, StaticWordEncoder)
        check_range("input_size", input_size, stride)
        check_range("bins", bins, 1)
        if words and not isinstance(text, StaticWordEncoder):
            raise ConfigError(
                f"words=True needs word vectors; a {type(text).__name__} gives one vector "
                "per question (use words=False)"
            )
        layers = list(tower.children())
        if len(layers) < 4 or not isinstance(layers[-1], torch.nn.Linear):
            raise ConfigError(
                "DenseRegionEncoder needs a tower laid out as trunk, AdaptiveAvgPool2d, "
                f"Flatten, Linear; got {type(tower).__name__} ending with {layers[-1:]}"
            )
        self.device = device
        self.trunk = (
            torch.nn.Sequential(*layers[:-3])
            .to(device)
            .eval()
            .to(memory_format=torch.channels_last)
        )
        self.head = layers[-1].to(device).eval()
        self.text = text
        self.input_size = input_size
        self.stride = stride
        self.bins = bins
        self.tower_name = tower_name
        self.tower_sha256 = tower_sha256
        self.mean, self.std = tuple(mean), tuple(std)
        self.words = words

    @property
    def dim(self) -> int:
        return int(self.head.out_features)

    @property
    def question_words(self) -> bool:
        return self.words

    def card(self) -> dict[str, Any]:
        return {
            "kind": "dense",
            "image": self.tower_name,
            "image_sha256": self.tower_sha256,
            "input_size": self.input_size,
            "bins": self.bins,
            "text": f"{self.text.kind}:{self.text.name}",
            "question": self._question_form(),
            "dim": self.dim,
        }

    def _question_form(self) -> str:
        if isinstance(self.text, StaticWordEncoder):
            return "words" if self.words else "mean"
        return self.text.kind

    def encode_questions(self, questions: Sequence[str]) -> torch.Tensor:
        if self.words and isinstance(self.text, StaticWordEncoder):
            return self.text.encode_words(questions)
        return self.text.encode(questions)

    def encode_views(
        self, images: Sequence[Image.Image], views: Sequence[Sequence[Box | None]]
    ) -> list[torch.Tensor]:
        import torch
        import torch.nn.functional as F

        if not images:
            return []
        s = self.input_size
        pixels = _squashed(images, (s, s), self.mean, self.std, self.device, "bilinear")
        rois = _rois(images, views, s, s)
        with torch.inference_mode():
            fmap = self.trunk(pixels.float().contiguous(memory_format=torch.channels_last))
            pooled = _pool(fmap, rois, self.bins, 1.0 / self.stride)
            emb = F.normalize(self.head(pooled).float(), dim=-1).cpu()
        return list(torch.split(emb, [len(v) for v in views]))


class ClipDenseEncoder:
    """Proposal features from one dense forward of a CLIP vision tower: the whole image
    squashed to the model's input size, its patch tokens laid out as a grid, RoI-align of
    every box on that grid, then CLIP's final layer norm and visual projection; questions
    through CLIP's own text tower.

    One forward per image instead of one per proposal: with a ViT-B/16 about 1/60 of the
    work of embedding 62 crops with it, and nothing that grows with the re-ranking scorer.

    Args:
        clip: A :class:`~region_rerank.scorers.clip.ClipScorer` over a CLIP model (a
            ``vision_model`` with ``post_layernorm`` and a ``visual_projection``).
        bins: RoI-align output side (``bins x bins``, averaged).

    Raises:
        ConfigError: A model without that layout (SigLIP's attention-pooling head, ...).
    """

    def __init__(self, clip: Any, *, bins: int = 2) -> None:
        check_range("bins", bins, 1)
        model = clip.model
        vision = getattr(model, "vision_model", None)
        if vision is None or not hasattr(model, "visual_projection"):
            raise ConfigError(
                f"{clip.model_id!r} is not a CLIP model with a vision_model and a "
                "visual_projection; use it as a view encoder (its spec without 'dense:')"
            )
        spec = clip.image_spec
        self.clip = clip
        self.vision = vision
        self.projection = model.visual_projection
        self.patch = int(model.config.vision_config.patch_size)
        self.spec = spec
        self.bins = bins

    @property
    def dim(self) -> int:
        return int(self.projection.out_features)

    question_words = False

    def card(self) -> dict[str, Any]:
        return {
            "kind": "dense",
            "image": f"clip:{self.clip.model_id}",
            "image_revision": getattr(self.clip.model.config, "_commit_hash", None),
            "input_size": list(self.spec.size),
            "bins": self.bins,
            "text": f"clip:{self.clip.model_id}",
            "dim": self.dim,
        }

    def encode_questions(self, questions: Sequence[str]) -> torch.Tensor:
        return self.clip.embed_texts(list(questions)).float().cpu()

    def encode_views(
        self, images: Sequence[Image.Image], views: Sequence[Sequence[Box | None]]
    ) -> list[torch.Tensor]:
        import torch
        import torch.nn.functional as F

        if not images:
            return []
        device = self.clip.device
        dtype = next(self.vision.parameters()).dtype
        h, w = self.spec.size
        pixels = _squashed(images, (h, w), self.spec.mean, self.spec.std, device, "bicubic")
        rois = _rois(images, views, w, h)
        with torch.inference_mode():
            tokens = self.vision(pixel_values=pixels.to(dtype)).last_hidden_state[:, 1:]
            grid = tokens.transpose(1, 2).reshape(len(images), -1, h // self.patch, w // self.patch)
            pooled = _pool(grid.float(), rois, self.bins, 1.0 / self.patch)
            pooled = self.vision.post_layernorm(pooled.to(dtype))
            emb = F.normalize(self.projection(pooled).float(), dim=-1).cpu()
        return list(torch.split(emb, [len(v) for v in views]))


def _squashed(
    images: Sequence[Image.Image],
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    device: Any,
    interpolation: str,
) -> torch.Tensor:
    """Every whole image resized to ``size`` (``H x W``, aspect not kept) and normalised."""
    import torch

    from region_rerank.images import crop_resize, pil_to_tensor

    return torch.cat(
        [
            crop_resize(
                pil_to_tensor(img, device), [None], size,
                mean=tuple(mean), std=tuple(std), interpolation=interpolation,
            )
            for img in images
        ]
    )  # fmt: skip


def _rois(
    images: Sequence[Image.Image], views: Sequence[Sequence[Box | None]], w: int, h: int
) -> list[list[float]]:
    """RoI-align rows ``(image index, x1, y1, x2, y2)`` of every view, in the ``w x h``
    frame the images were squashed to (``None`` = the whole image)."""
    rois = []
    for i, (img, boxes) in enumerate(zip(images, views)):
        sx, sy = w / img.size[0], h / img.size[1]
        for b in boxes:
            if b is None:
                rois.append([float(i), 0.0, 0.0, float(w), float(h)])
            else:
                rois.append([float(i), b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy])
    return rois


def _pool(fmap: torch.Tensor, rois: list[list[float]], bins: int, scale: float) -> torch.Tensor:
    """``N x C``: every RoI of ``fmap`` (``B x C x H x W``) aligned to ``bins x bins`` and
    averaged."""
    import torch
    from torchvision.ops import roi_align

    boxes = torch.tensor(rois, dtype=torch.float32, device=fmap.device)
    pooled = roi_align(
        fmap.contiguous(), boxes, (bins, bins), spatial_scale=scale, sampling_ratio=2, aligned=True
    )
    return pooled.mean((2, 3))


def check_encoder_card(
    recorded: dict[str, Any] | None, encoder: Any, what: str = "policy encoder"
) -> None:
    """Raise when ``encoder`` (or a proposal detector: anything with ``card()``) is not
    the one a policy was trained with.

    Args:
        recorded: The card saved with the weights (``None``: weights without one, from
            before cards; nothing to compare).
        encoder: The encoder about to feed the policy.
        what: What it is, for the message.

    Raises:
        ConfigError: Naming every field that differs.
    """
    if not recorded or not hasattr(encoder, "card"):
        return
    actual = encoder.card()
    diff = {
        k: (recorded.get(k), actual.get(k))
        for k in sorted(set(recorded) | set(actual))
        if recorded.get(k) != actual.get(k)
    }
    if diff:
        detail = "; ".join(f"{k}: trained with {a!r}, got {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"incompatible {what} ({detail})")
