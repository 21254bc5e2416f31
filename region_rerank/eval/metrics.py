"""Retrieval metrics over re-ranked pools, exactly as docs/method.md section 5.

Per-query functions take a ranked list of ids (best first, the *whole* re-ranked pool) and
the set of positive ids:

- :func:`first_positive_rank`: 1-based rank of the first positive, ``None`` when absent.
- :func:`recall_at_k`: 1.0 when a positive is in the top ``k``, else 0.0.
- :func:`mrr`: the reciprocal rank ``1 / rank`` of the first positive (0.0 when absent);
  its mean over queries is the MRR.
- :func:`ndcg_at_k`: NDCG with binary relevance and the standard ``1 / log2(rank + 1)``
  discount, over the top ``k`` or the whole pool (``k=None``).

Duplicate ids in a ranking keep their positions (a pool really had that many entries), but
a positive id earns NDCG gain only at its first occurrence, so NDCG never exceeds 1.

:func:`compute_metrics` aggregates :class:`EvalRecord` objects into R@K, CondR@K with its
coverage, MRR, NDCG@K, crop rate, mean crop area and the crop-rate split by whether the
full image already ranked a positive first, overall and per question type.
:func:`format_markdown_table` renders several methods' results side by side.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.types import CropAction

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_COLUMNS",
    "EvalRecord",
    "first_positive_rank",
    "recall_at_k",
    "mrr",
    "ndcg_at_k",
    "compute_metrics",
    "format_markdown_table",
]

#: Cut-offs reported by default (the paper's pools hold 20 candidates).
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)

#: Columns of :func:`format_markdown_table` when none are given.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "num_queries",
    "R@1",
    "R@5",
    "CondR@1",
    "coverage",
    "MRR",
    "NDCG",
    "crop_rate",
    "mean_crop_area",
)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k={k!r} is not allowed; k must be a positive integer")


def first_positive_rank(ranked_ids: Sequence[str], positives: Collection[str]) -> int | None:
    """1-based rank of the first positive in ``ranked_ids``, or ``None`` when there is none.

    Args:
        ranked_ids: Candidate ids, best first.
        positives: Ids that count as correct.

    Returns:
        The rank (1 = top) or ``None``.
    """
    pos = positives if isinstance(positives, (set, frozenset)) else set(positives)
    for rank, cid in enumerate(ranked_ids, start=1):
        if cid in pos:
            return rank
    return None


def recall_at_k(ranked_ids: Sequence[str], positives: Collection[str], k: int) -> float:
    """1.0 when a positive is among the top ``k`` ids, else 0.0.

    ``k`` larger than the ranking simply looks at the whole ranking.

    Raises:
        ConfigError: ``k`` is not a positive integer.
    """
    _check_k(k)
    rank = first_positive_rank(ranked_ids, positives)
    return 1.0 if rank is not None and rank <= k else 0.0


def mrr(ranked_ids: Sequence[str], positives: Collection[str]) -> float:
    """Reciprocal rank of the first positive (0.0 when absent); average it for the MRR."""
    rank = first_positive_rank(ranked_ids, positives)
    return 0.0 if rank is None else 1.0 / rank


def ndcg_at_k(ranked_ids: Sequence[str], positives: Collection[str], k: int | None = None) -> float:
    """NDCG with binary relevance over the top ``k`` (the whole ranking when ``k=None``).

    ``DCG = sum over positions i <= k holding a positive (first occurrence) of
    1 / log2(i + 1)``; the ideal DCG puts all ``len(positives)`` distinct positives first:
    ``sum_{i=1}^{min(|positives|, cutoff)} 1 / log2(i + 1)`` with ``cutoff = k`` (or the
    ranking length when ``k=None``). Positives missing from the ranking therefore lower the
    score, as in TREC. No positives at all gives 0.0.

    Raises:
        ConfigError: ``k`` is given and not a positive integer.
    """
    if k is not None:
        _check_k(k)
    pos = frozenset(positives)
    cutoff = len(ranked_ids) if k is None else k
    if not pos or cutoff == 0:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for i, cid in enumerate(ranked_ids[:cutoff], start=1):
        if cid in pos and cid not in seen:
            seen.add(cid)
            dcg += 1.0 / math.log2(i + 1)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(pos), cutoff) + 1))
    return dcg / ideal


@dataclass(frozen=True)
class EvalRecord:
    """The outcome of one query under one method, as :func:`compute_metrics` consumes it.

    Attributes:
        query_id: The query's id.
        ranked_ids: The whole re-ranked pool, best first.
        positives: Ids counted as correct.
        pool_size: Number of pool entries; defaults to ``len(ranked_ids)`` and must equal it
            (rankings are never truncated, otherwise coverage would be wrong).
        decision_action: ``"FULL"`` or ``"REGION"`` (a :class:`CropAction` is accepted).
        crop_area_fraction: Crop area over image area, in (0, 1] (1.0 for FULL).
        full_rank_first_positive: Rank of the first positive under the *full-image*
            ranking of the same pool. ``None`` means "no positive in the pool" when the pool
            has none, and "unknown" otherwise (the record then leaves the crop-rate split).
        question_type: Benchmark question type for the per-type breakdown, if any.

    Raises:
        ValueError: Inconsistent values (the message names the field).
    """

    query_id: str
    ranked_ids: tuple[str, ...]
    positives: frozenset[str]
    pool_size: int | None = None
    decision_action: str = "FULL"
    crop_area_fraction: float = 1.0
    full_rank_first_positive: int | None = None
    question_type: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranked_ids", tuple(str(i) for i in self.ranked_ids))
        object.__setattr__(self, "positives", frozenset(str(p) for p in self.positives))
        n = len(self.ranked_ids)
        if self.pool_size is None:
            object.__setattr__(self, "pool_size", n)
        elif self.pool_size != n:
            raise ConfigError(
                f"EvalRecord {self.query_id!r}: pool_size={self.pool_size} but ranked_ids has "
                f"{n} ids; pass the whole re-ranked pool"
            )
        try:
            action = CropAction(self.decision_action).value
        except ValueError:
            raise ConfigError(
                f"EvalRecord {self.query_id!r}: decision_action={self.decision_action!r}; "
                "allowed 'FULL' or 'REGION'"
            ) from None
        object.__setattr__(self, "decision_action", action)
        area = self.crop_area_fraction
        if not isinstance(area, (int, float)) or not (0.0 < area <= 1.0 + 1e-9):
            raise ConfigError(
                f"EvalRecord {self.query_id!r}: crop_area_fraction={area!r} must be in (0, 1]"
            )
        full = self.full_rank_first_positive
        if full is not None:
            if not isinstance(full, int) or isinstance(full, bool) or not 1 <= full <= n:
                raise ConfigError(
                    f"EvalRecord {self.query_id!r}: full_rank_first_positive={full!r} must be "
                    f"None or an integer in [1, {n}]"
                )
            if not self.covered:
                raise ConfigError(
                    f"EvalRecord {self.query_id!r}: full_rank_first_positive={full} but the "
                    "pool contains no positive (the full ranking uses the same pool)"
                )

    @property
    def covered(self) -> bool:
        """True when the pool contains at least one positive."""
        return any(cid in self.positives for cid in self.ranked_ids)

    @property
    def is_crop(self) -> bool:
        return self.decision_action == CropAction.REGION.value

    @property
    def full_first(self) -> bool | None:
        """Whether the full image ranked a positive first (``None`` when unknown)."""
        if self.full_rank_first_positive is not None:
            return self.full_rank_first_positive == 1
        return None if self.covered else False


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


def _aggregate(records: Sequence[EvalRecord], ks: Sequence[int]) -> dict[str, Any]:
    n = len(records)
    covered = [r for r in records if r.covered]
    out: dict[str, Any] = {
        "num_queries": n,
        "mean_pool_size": sum(len(r.ranked_ids) for r in records) / n,
    }
    for k in ks:
        out[f"R@{k}"] = sum(recall_at_k(r.ranked_ids, r.positives, k) for r in records) / n
    # coverage = R@poolsize: share of queries whose pool holds a positive.
    out["coverage"] = len(covered) / n
    out["num_covered"] = len(covered)
    for k in ks:
        out[f"CondR@{k}"] = _mean(recall_at_k(r.ranked_ids, r.positives, k) for r in covered)
    out["MRR"] = sum(mrr(r.ranked_ids, r.positives) for r in records) / n
    for k in ks:
        out[f"NDCG@{k}"] = sum(ndcg_at_k(r.ranked_ids, r.positives, k) for r in records) / n
    out["NDCG"] = sum(ndcg_at_k(r.ranked_ids, r.positives) for r in records) / n
    cropped = [r for r in records if r.is_crop]
    out["crop_rate"] = len(cropped) / n
    out["num_cropped"] = len(cropped)
    out["mean_crop_area"] = _mean(r.crop_area_fraction for r in cropped)
    first = [r for r in records if r.full_first is True]
    not_first = [r for r in records if r.full_first is False]
    out["crop_rate_full_first"] = _mean(1.0 if r.is_crop else 0.0 for r in first)
    out["num_full_first"] = len(first)
    out["crop_rate_full_not_first"] = _mean(1.0 if r.is_crop else 0.0 for r in not_first)
    out["num_full_not_first"] = len(not_first)
    out["num_split_unknown"] = n - len(first) - len(not_first)
    return out


def compute_metrics(
    records: Iterable[EvalRecord], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, Any]:
    """Aggregate per-query records into the docs/method.md section 5 metrics.

    Args:
        records: One :class:`EvalRecord` per query (at least one).
        ks: Cut-offs for R@K, CondR@K and NDCG@K (positive integers; a ``k`` larger than a
            pool counts the whole pool).

    Returns:
        A JSON-friendly dict. Rates are fractions in [0, 1]; a rate whose denominator is
        empty is ``None``. Keys:

        - ``num_queries``, ``mean_pool_size``
        - ``R@k`` for each k; ``coverage`` (= R@poolsize, share of queries whose pool holds
          a positive) and ``num_covered``
        - ``CondR@k``: R@k over covered queries only (= ``R@k / coverage``)
        - ``MRR``; ``NDCG@k`` for each k and ``NDCG`` over the whole pool
        - ``crop_rate``, ``num_cropped``, ``mean_crop_area`` (over cropped queries)
        - ``crop_rate_full_first`` / ``num_full_first``: queries where the full image
          already ranked a positive first; ``crop_rate_full_not_first`` /
          ``num_full_not_first``: the others; ``num_split_unknown``: records whose
          full-image rank was not given although their pool holds a positive
        - ``by_question_type``: the same keys (without this one) per question type;
          records with ``question_type=None`` appear only in the overall numbers.

    Raises:
        ValueError: ``records`` is empty (averages over no queries are undefined).
        ConfigError: A ``k`` is not a positive integer.
    """
    recs = list(records)
    if not recs:
        raise ConfigError("compute_metrics needs at least one EvalRecord; got none")
    for k in ks:
        _check_k(k)
    kk = sorted(set(ks))
    out = _aggregate(recs, kk)
    groups: dict[str, list[EvalRecord]] = {}
    for r in recs:
        if r.question_type is not None:
            groups.setdefault(r.question_type, []).append(r)
    out["by_question_type"] = {qt: _aggregate(groups[qt], kk) for qt in sorted(groups)}
    return out


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def format_markdown_table(
    results: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    digits: int = 3,
) -> str:
    """Render several methods' metrics as a GitHub Markdown table, one row per method.

    Args:
        results: Method name -> metrics dict (as returned by :func:`compute_metrics`).
        columns: Metric keys to show, in order (default :data:`DEFAULT_COLUMNS`, keeping
            only keys that at least one method has). Missing or ``None`` values show ``-``.
        digits: Decimals for float values.

    Returns:
        The table text, ending with a newline.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ConfigError("format_markdown_table needs at least one method's results")
    if columns is None:
        cols = [c for c in DEFAULT_COLUMNS if any(c in m for m in results.values())]
    else:
        cols = list(columns)
    header = ["method", *cols]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|",
    ]
    for name, metrics in results.items():
        cells = [_cell(str(name), digits)] + [_cell(metrics.get(c), digits) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
