"""Import the retrieval pools published by EchoSight and OMGM.

Both write one JSON object keyed by query id (``E-VQA_{i}`` with ``i`` the row index after
the question-type filter, or the InfoSeek ``data_id``; the ids the loaders of
:mod:`region_rerank.eval.datasets_evqa` and :mod:`region_rerank.eval.datasets_infoseek`
produce):

- **EchoSight** (``test/test_reranker.py --save_result``): ``{"retrieved_entries": [url],
  "retrieval_similarities": [float]}``, after re-ranking also ``"reranked_entries": [url]``
  (no scores) and ``"reranked_sections"``.
- **OMGM** (step-1 results): ``{"retrieved_entities": [{"url", "title"}],
  "retrieval_similarities": [float]}``.

The file is streamed (:func:`~region_rerank.eval.json_stream.iter_json_object`). Pools keep
their order; ``reranked`` pools, which carry no scores, get ``n, n-1, ..., 1`` so the order
survives. A repeated URL in a pool keeps its first place.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from region_rerank._validate import check_choice
from region_rerank.eval._rows import DatasetFormatError, RowIssues, RowProblem, get_number
from region_rerank.eval._schema import Pool
from region_rerank.eval.json_stream import iter_json_object

__all__ = ["ImportSummary", "PoolField", "import_pools", "iter_published_pools"]

#: Which list of an EchoSight record is imported.
PoolField = Literal["retrieved", "reranked"]
PathLike = str | os.PathLike[str]


@dataclass
class ImportSummary:
    """What :func:`import_pools` did.

    Attributes:
        pools: Pools imported.
        unknown_queries: Records whose query id is not in ``query_ids`` (left out).
        missing_queries: Ids of ``query_ids`` without a record (a few examples).
        missing_count: How many of ``query_ids`` have no record.
        skipped: Malformed records skipped (lenient mode).
    """

    pools: int = 0
    skipped: int = 0
    unknown_queries: int = 0
    missing_queries: list[str] = field(default_factory=list)
    missing_count: int = 0


def _urls(record: dict[str, Any], which: PoolField) -> list[str]:
    if which == "reranked":
        value = record.get("reranked_entries")
        if not isinstance(value, list):
            raise RowProblem("no 'reranked_entries' list (EchoSight re-ranked results)")
        items: list[Any] = value
    elif isinstance(record.get("retrieved_entries"), list):
        items = record["retrieved_entries"]
    elif isinstance(record.get("retrieved_entities"), list):
        items = [e.get("url") if isinstance(e, dict) else e for e in record["retrieved_entities"]]
    else:
        raise RowProblem("neither 'retrieved_entries' (EchoSight) nor 'retrieved_entities' (OMGM)")
    if not all(isinstance(u, str) and u for u in items):
        raise RowProblem("pool entries must be non-empty URL strings")
    return items


def _pool(record: Any, which: PoolField, kb_ids: Collection[str] | None) -> Pool:
    if not isinstance(record, dict):
        raise RowProblem(f"expected an object, got {type(record).__name__}")
    urls = _urls(record, which)
    if which == "reranked":
        scores = [float(len(urls) - i) for i in range(len(urls))]
    else:
        sims = record.get("retrieval_similarities")
        if not isinstance(sims, list) or len(sims) != len(urls):
            got = len(sims) if isinstance(sims, list) else type(sims).__name__
            raise RowProblem(
                f"'retrieval_similarities' must be a list as long as the pool ({len(urls)}), "
                f"got {got}"
            )
        scores = [get_number(s, f"retrieval_similarities[{i}]") for i, s in enumerate(sims)]
    pool: list[tuple[str, float]] = []
    seen: set[str] = set()
    for url, score in zip(urls, scores, strict=True):
        if url in seen:
            continue
        if kb_ids is not None and url not in kb_ids:
            raise RowProblem(f"pool names {url!r}, which is not in the KB")
        seen.add(url)
        pool.append((url, score))
    return tuple(pool)


def iter_published_pools(
    path: PathLike,
    *,
    which: PoolField = "retrieved",
    kb_ids: Collection[str] | None = None,
    issues: RowIssues | None = None,
) -> Iterator[tuple[str, Pool]]:
    """Yield ``(query id, pool)`` from an EchoSight / OMGM result file, in file order.

    Args:
        path: The JSON result file (plain or ``.gz``).
        which: ``"retrieved"`` (default) or EchoSight's ``"reranked"`` list.
        kb_ids: When given, a pool naming an id outside it is a malformed record.
        issues: Collector of malformed records (default: strict).

    Raises:
        DatasetFormatError: Invalid JSON, or a malformed record in strict mode.
    """
    check_choice("which", which, ("retrieved", "reranked"))
    p = Path(path)
    collector = issues if issues is not None else RowIssues(False)
    for qid, record in iter_json_object(p, desc=p.name):
        try:
            yield qid, _pool(record, which, kb_ids)
        except RowProblem as exc:
            collector.report(DatasetFormatError(p, None, f"query {qid!r}: {exc}"))


def import_pools(
    path: PathLike,
    *,
    query_ids: Collection[str] | None = None,
    kb_ids: Collection[str] | None = None,
    which: PoolField = "retrieved",
    lenient: bool = False,
) -> tuple[dict[str, Pool], ImportSummary]:
    """Read an EchoSight / OMGM result file into ``query id -> pool``.

    Args:
        path: The result file.
        query_ids: The dataset's query ids; records for other ids are counted and left out,
            and ids without a record are reported in the summary.
        kb_ids: The KB ids; a pool naming another id is a malformed record.
        which: ``"retrieved"`` or ``"reranked"``.
        lenient: Skip and count malformed records instead of raising.

    Returns:
        The pools and an :class:`ImportSummary`.
    """
    issues = RowIssues(lenient)
    summary = ImportSummary()
    pools: dict[str, Pool] = {}
    for qid, pool in iter_published_pools(path, which=which, kb_ids=kb_ids, issues=issues):
        if query_ids is not None and qid not in query_ids:
            summary.unknown_queries += 1
            continue
        pools[qid] = pool
    summary.pools = len(pools)
    summary.skipped = issues.skipped
    if query_ids is not None:
        missing = [q for q in query_ids if q not in pools]
        summary.missing_count = len(missing)
        summary.missing_queries = missing[:5]
    issues.log_summary(str(path))
    return pools, summary
