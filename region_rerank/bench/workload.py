"""An in-memory slice of the demo world for the speed benchmark.

Query scenes and KB reference images are PNG-encoded bytes, as a RAG pipeline hands them
over (so decoding is part of every measured re-rank); candidate texts are the KB entries'
descriptions (~280 characters).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from region_rerank.errors import ConfigError
from region_rerank.types import Candidate, Query

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Workload", "make_workload", "png_bytes"]


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Workload:
    """Queries and a KB of candidates to draw pools from.

    Attributes:
        queries: Demo-world scenes (PNG bytes) with their questions.
        kb: One candidate per KB entity: its description and one reference image (PNG).
        canvas: ``(width, height)`` of the query scenes.
    """

    queries: list[Query]
    kb: list[Candidate]
    canvas: tuple[int, int]

    def pool(self, index: int, k: int) -> list[Candidate]:
        """The ``k`` candidates of query ``index``: a window of the KB that starts at a
        different place for each query (pools of different queries overlap partly)."""
        if k > len(self.kb):
            raise ConfigError(f"k={k} exceeds the {len(self.kb)} KB candidates")
        start = (index * 7) % len(self.kb)
        return [self.kb[(start + j) % len(self.kb)] for j in range(k)]


def make_workload(
    n_queries: int,
    n_entities: int,
    *,
    seed: int = 0,
    canvas: tuple[int, int] = (224, 224),
    kb_image_size: int = 112,
) -> Workload:
    """Generate ``n_queries`` query scenes and ``n_entities`` KB candidates (deterministic)."""
    from region_rerank.demo.entities import build_kb, reference_images
    from region_rerank.demo.scenes import SceneConfig, generate_queries

    kb = build_kb(n_entities)
    scenes = generate_queries(
        SceneConfig(seed=seed, n_queries=n_queries, canvas_size=canvas, split="bench"), kb
    )
    queries = [Query(png_bytes(s.image), s.question, id=s.id) for s in scenes]
    candidates = [
        Candidate(
            e.id,
            e.text,
            images=(png_bytes(reference_images(e, seed=seed, n=1, size=kb_image_size)[0]),),
        )
        for e in kb
    ]
    return Workload(queries, candidates, canvas)
