"""The worst-case aspect-ratio figure of ``region-rerank bench speed``.

Every cropper has a per-query work bound that holds for any image (see the guarantees page
of the docs): the proposal grid has at most :func:`~region_rerank.proposals.max_grid_proposals`
boxes, detectors see at most ``max_side`` pixels a side. This figure checks the bound in
time: a re-rank of a query whose aspect ratio gives the most proposals (2:1) and of an
extreme one (1:10000), each over a square query with the same number of pixels, K=20
cached candidates, per cropper (medians of interleaved runs).
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

from region_rerank.bench.timing import paired_medians
from region_rerank.bench.workload import png_bytes
from region_rerank.types import Query

if TYPE_CHECKING:
    from region_rerank.bench.figures import Bench

__all__ = ["ASPECTS", "aspect_figure"]

#: Name -> (width, height) of the elongated query images.
ASPECTS: dict[str, tuple[int, int]] = {"2:1": (448, 224), "1:10000": (10, 100_000)}


def _scene(size: tuple[int, int], source: Any) -> bytes:
    """The demo scene ``source`` (PNG bytes) stretched to ``size``."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(source)) as img:
        return png_bytes(img.convert("RGB").resize(size, Image.Resampling.BILINEAR))


def aspect_figure(b: Bench) -> dict[str, Any]:
    """``worst_aspect_over_square``: the largest, over croppers and elongated shapes, of the
    median re-rank time of the elongated query over the square one of the same pixels."""
    base = b.world.queries[1]
    pool = b.world.pool(1, b.settings.pool_sizes[0])
    ratios: dict[str, dict[str, float]] = {}
    for shape, (w, h) in ASPECTS.items():
        side = round(math.sqrt(w * h))
        long_q = Query(_scene((w, h), base.image), base.question, id=f"aspect-{shape}")
        square_q = Query(_scene((side, side), base.image), base.question, id="aspect-square")
        for name in b.croppers:
            rr = b.reranker(name)
            rr.rerank(square_q, pool)  # candidates cached: the figure is the query side
            _, _, ratio = paired_medians(
                partial(rr.rerank, long_q, pool),
                partial(rr.rerank, square_q, pool),
                b.settings.repeats,
            )
            ratios.setdefault(name, {})[shape] = ratio
    return {
        "worst_aspect_over_square": max(r for by in ratios.values() for r in by.values()),
        "aspect_over_square": ratios,
    }
