"""The in-memory dataset types shared by every loader (re-exported by
:mod:`region_rerank.eval.datasets`, import them from there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from region_rerank.eval._rows import DatasetFormatError
from region_rerank.types import Box, Candidate, ImageLike, Query

__all__ = ["Pool", "KBEntry", "EvalQuery", "EvalDataset"]

#: A retrieved pool: ``(kb_id, retrieval score)`` pairs in retrieval order.
Pool = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class KBEntry:
    """One knowledge-base entry.

    Attributes:
        id: The KB key (E-VQA: the Wikipedia URL).
        text: Entry text (title + first sections), or ``None``.
        images: Entry images (paths, URLs or any :data:`ImageLike`).
        metadata: Extra fields (title, url...), read-only.
    """

    id: str
    text: str | None = None
    images: tuple[ImageLike, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def __hash__(self) -> int:
        return hash(self.id)

    def to_candidate(self, retrieval_score: float | None = None) -> Candidate:
        """This entry as a :class:`~region_rerank.types.Candidate` for the reranker."""
        return Candidate(
            id=self.id,
            text=self.text,
            images=self.images,
            metadata=self.metadata,
            retrieval_score=retrieval_score,
        )


@dataclass(frozen=True)
class EvalQuery:
    """One evaluation query.

    Attributes:
        id: Unique query id.
        image: The query image (path, URL or any :data:`ImageLike`).
        question: The question about the image.
        positives: KB ids that count as correct (may be empty).
        box: Ground-truth region in original-image pixels, when known.
        question_type: Benchmark question type, when known.
        metadata: Extra fields (answers, source dataset...), read-only.
    """

    id: str
    image: ImageLike
    question: str
    positives: frozenset[str] = frozenset()
    box: Box | None = None
    question_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positives", frozenset(self.positives))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def __hash__(self) -> int:
        return hash(self.id)

    def to_query(self) -> Query:
        """This query as a :class:`~region_rerank.types.Query` for croppers and rerankers."""
        return Query(image=self.image, question=self.question, id=self.id)


@dataclass(frozen=True, eq=False)
class EvalDataset:
    """A benchmark in memory.

    Attributes:
        name: Dataset name (used in reports).
        queries: The queries, in file order.
        kb: KB id -> entry.
        pools: Query id -> retrieved pool; may be empty or cover only some queries.
        skipped: Malformed rows skipped by a lenient loader.
        dropped: Rows left out on purpose, by reason (e.g. ``{"2_hop": 12}``).

    Raises:
        DatasetFormatError: Duplicate query ids, pools of unknown queries, or pool ids
            missing from the KB.
    """

    name: str
    queries: tuple[EvalQuery, ...]
    kb: Mapping[str, KBEntry]
    pools: Mapping[str, Pool] = field(default_factory=dict)
    skipped: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))
        object.__setattr__(self, "kb", MappingProxyType(dict(self.kb)))
        pools = {q: tuple((str(i), float(s)) for i, s in p) for q, p in self.pools.items()}
        object.__setattr__(self, "pools", MappingProxyType(pools))
        object.__setattr__(self, "dropped", MappingProxyType(dict(self.dropped)))
        ids: dict[str, EvalQuery] = {}
        for q in self.queries:
            if q.id in ids:
                raise DatasetFormatError(self.name, None, f"duplicate query id {q.id!r}")
            ids[q.id] = q
        object.__setattr__(self, "_by_id", ids)
        for qid, pool in pools.items():
            if qid not in ids:
                raise DatasetFormatError(self.name, None, f"pool for unknown query {qid!r}")
            missing = [cid for cid, _ in pool if cid not in self.kb]
            if missing:
                raise DatasetFormatError(
                    self.name, None, f"pool of query {qid!r} names unknown KB ids {missing[:5]}"
                )

    def __len__(self) -> int:
        return len(self.queries)

    def query(self, query_id: str) -> EvalQuery:
        """The query with this id (``KeyError`` when absent)."""
        by_id: dict[str, EvalQuery] = self.__dict__["_by_id"]
        return by_id[query_id]

    def candidates(self, query_id: str) -> list[Candidate]:
        """The query's pool as candidates, in retrieval order, with retrieval scores
        (an empty list when the query has no pool)."""
        return [self.kb[cid].to_candidate(score) for cid, score in self.pools.get(query_id, ())]
