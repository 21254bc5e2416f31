"""Build croppers and scorers from short spec strings (used by the CLI and as defaults).

The specs are those of the registries, :data:`region_rerank.croppers.specs.CROPPERS` and
:data:`region_rerank.scorers.specs.SCORERS` (``region-rerank --help`` and the docs list them;
:func:`region_rerank.specs.markdown_table` renders them). This module is their public
entry point.
"""

from __future__ import annotations

from region_rerank.croppers.specs import CROPPERS, build_cropper, needs_scorer
from region_rerank.scorers.specs import SCORERS, build_scorer

__all__ = ["CROPPER_KINDS", "SCORER_KINDS", "build_cropper", "build_scorer", "needs_scorer"]

#: The cropper kinds, in registry order.
CROPPER_KINDS: tuple[str, ...] = tuple(CROPPERS)
#: The scorer kinds, in registry order.
SCORER_KINDS: tuple[str, ...] = tuple(SCORERS)
