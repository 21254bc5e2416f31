"""Deterministic fakes for users' tests and ours: :class:`FakeScorer` and :class:`FakeCropper`.

Both are real implementations of the public protocols (no mocking): the fake scorer embeds
images as coarse colour histograms and texts by colour words, so a red crop really is
closer to a candidate described as "red" than a blue one is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from region_rerank.boxes import CoordFrame, sanitize_box
from region_rerank.croppers.base import BaseCropper
from region_rerank.images import load_image
from region_rerank.scorers.base import BaseEmbeddingScorer, CandidateEmbeddingConfig, l2_normalize
from region_rerank.types import CropDecision, Query

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["FakeScorer", "FakeCropper", "COLOR_WORDS"]

_LEVELS = 3
#: colour word -> (r, g, b) quantised level in 0..2
COLOR_WORDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (2, 2, 2),
    "gray": (1, 1, 1),
    "grey": (1, 1, 1),
    "red": (2, 0, 0),
    "green": (0, 2, 0),
    "blue": (0, 0, 2),
    "yellow": (2, 2, 0),
    "cyan": (0, 2, 2),
    "magenta": (2, 0, 2),
    "orange": (2, 1, 0),
    "purple": (1, 0, 2),
    "pink": (2, 1, 2),
    "brown": (1, 0, 0),
    "navy": (0, 0, 1),
    "olive": (1, 1, 0),
    "teal": (0, 1, 1),
}


def _bin(rgb: tuple[int, int, int]) -> int:
    return rgb[0] * _LEVELS * _LEVELS + rgb[1] * _LEVELS + rgb[2]


class FakeScorer(BaseEmbeddingScorer):
    """A deterministic colour-histogram bi-encoder (27 dimensions, CPU, no model).

    Images embed as the normalised histogram of their pixels quantised to 3 levels per
    channel. Texts embed as the sum of the bins of the colour words they contain (words
    that are not colours hash to a bin with a small weight), so scores are meaningful.

    Args:
        candidate_config: Candidate image/text combination.
        fail_after: Raise ``RuntimeError`` once this many embedding calls have been made
            (for fault-injection tests); ``None`` never fails.
    """

    name = "fake"
    dim = _LEVELS**3

    def __init__(
        self,
        candidate_config: CandidateEmbeddingConfig | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.candidate_config = candidate_config or CandidateEmbeddingConfig()
        self.fail_after = fail_after
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError(f"FakeScorer failure injected after {self.fail_after} calls")

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import numpy as np
        import torch

        self._tick()
        rows = []
        for img in images:
            arr = np.asarray(load_image(img).resize((32, 32)), dtype=np.int64)
            q = np.minimum(arr * _LEVELS // 256, _LEVELS - 1)
            bins = q[..., 0] * _LEVELS * _LEVELS + q[..., 1] * _LEVELS + q[..., 2]
            rows.append(np.bincount(bins.ravel(), minlength=self.dim).astype(np.float32))
        return l2_normalize(torch.from_numpy(np.stack(rows)))

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        self._tick()
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in COLOR_WORDS:
                    out[i, _bin(COLOR_WORDS[word])] += 1.0
                else:
                    h = int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim
                    out[i, h] += 0.05
        return l2_normalize(out)


BoxSpec = tuple[float, float, float, float]


class FakeCropper(BaseCropper):
    """A deterministic cropper with scripted answers.

    Args:
        boxes: One box for every query, a mapping ``question -> box`` (questions absent
            from the mapping get FULL), or a callable ``query -> box | None``. ``None``
            means FULL.
        frame: Frame of the scripted boxes (default 0..1 relative to the image).
        raises: If set, :meth:`decide_batch` raises this exception (fault injection).
    """

    name = "fake"

    def __init__(
        self,
        boxes: BoxSpec | Mapping[str, BoxSpec | None] | Callable[[Query], Any] | None = None,
        *,
        frame: CoordFrame = CoordFrame.NORM_1,
        raises: BaseException | None = None,
    ) -> None:
        self.boxes = boxes
        self.frame = CoordFrame(frame)
        self.raises = raises
        self.calls = 0

    def _lookup(self, query: Query) -> Any:
        if callable(self.boxes):
            return self.boxes(query)
        if isinstance(self.boxes, Mapping):
            return self.boxes.get(query.question)
        return self.boxes

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        self.calls += 1
        if self.raises is not None:
            raise self.raises
        decisions = []
        for query in queries:
            spec = self._lookup(query)
            size = load_image(query.image).size
            if spec is None:
                decisions.append(CropDecision.full(image_size=size, source=self.name))
                continue
            box = sanitize_box(spec, size, frame=self.frame)
            if box is None:
                decisions.append(
                    CropDecision.full(
                        image_size=size,
                        source=self.name,
                        raw_output=repr(spec),
                        reason="malformed box",
                    )
                )
            else:
                decisions.append(
                    CropDecision.region(
                        box, image_size=size, source=self.name, raw_output=repr(spec)
                    )
                )
        return decisions
