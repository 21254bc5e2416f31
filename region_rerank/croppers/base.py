"""The cropper protocol: decide FULL or REGION for a query, one at a time or in batches."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from region_rerank.types import CropDecision, Query

__all__ = ["QueryCropper", "BaseCropper"]


@runtime_checkable
class QueryCropper(Protocol):
    """Anything that decides, from the query image and question only, whether to crop.

    Croppers never see the candidates (the method is candidate-agnostic). Boxes in the
    returned decisions are in pixels of the query image after :func:`load_image`
    (EXIF orientation applied).
    """

    name: str

    def decide(self, query: Query) -> CropDecision:
        """Decide for one query."""
        ...

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        """Decide for several queries, one decision per query, in order."""
        ...


class BaseCropper(abc.ABC):
    """Convenience base: implement :meth:`decide_batch`; :meth:`decide` calls it."""

    name: str = "cropper"

    def decide(self, query: Query) -> CropDecision:
        """Decide for one query (delegates to :meth:`decide_batch`)."""
        return self.decide_batch([query])[0]

    @abc.abstractmethod
    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        """Decide for several queries, one decision per query, in order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
