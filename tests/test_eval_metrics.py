"""Metrics of docs/method.md section 5 against hand-computed values (arithmetic in comments)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region_rerank.errors import ConfigError
from region_rerank.eval.metrics import (
    EvalRecord,
    compute_metrics,
    first_positive_rank,
    format_markdown_table,
    mrr,
    ndcg_at_k,
    recall_at_k,
)
from region_rerank.types import CropAction

L2_3 = 1.0 / math.log2(3)  # discount at rank 2 = 0.6309297535714575
L2_4 = 1.0 / math.log2(4)  # discount at rank 3 = 0.5
L2_5 = 1.0 / math.log2(5)  # discount at rank 4 = 0.43067655807339306


# ---------------------------------------------------------------- per-query functions


def test_first_positive_rank_cases() -> None:
    ranking = ["a", "b", "c"]
    assert first_positive_rank(ranking, {"a"}) == 1
    assert first_positive_rank(ranking, {"c"}) == 3  # positive at the last rank
    assert first_positive_rank(ranking, {"c", "b"}) == 2  # several positives: the first one
    assert first_positive_rank(ranking, {"z"}) is None  # no positive in the pool
    assert first_positive_rank([], {"a"}) is None
    assert first_positive_rank(ranking, []) is None
    assert first_positive_rank(ranking, ["b"]) == 2  # any collection works


def test_recall_at_k_including_k_larger_than_pool() -> None:
    ranking = ["a", "b", "c"]
    assert recall_at_k(ranking, {"c"}, 1) == 0.0
    assert recall_at_k(ranking, {"c"}, 2) == 0.0
    assert recall_at_k(ranking, {"c"}, 3) == 1.0  # last rank, k = pool size
    assert recall_at_k(ranking, {"c"}, 50) == 1.0  # k > pool: the whole pool counts
    assert recall_at_k(ranking, {"z"}, 50) == 0.0


@pytest.mark.parametrize("bad_k", [0, -1, 1.5, True, "3"])
def test_recall_rejects_bad_k(bad_k: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        recall_at_k(["a"], {"a"}, bad_k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive integer"):
        ndcg_at_k(["a"], {"a"}, bad_k)  # type: ignore[arg-type]


def test_reciprocal_rank() -> None:
    assert mrr(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert mrr(["a", "b", "c"], {"b", "c"}) == pytest.approx(1 / 2)
    assert mrr(["a", "b", "c"], {"a"}) == 1.0
    assert mrr(["a", "b", "c"], {"z"}) == 0.0  # absent -> 0


def test_ndcg_two_positives_whole_pool_and_cutoffs() -> None:
    ranking = ["a", "b", "c", "d"]
    pos = {"b", "d"}
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    # IDCG (2 positives) = 1 + 1/log2(3) = 1.63093 -> NDCG = 0.650921
    assert ndcg_at_k(ranking, pos) == pytest.approx((L2_3 + L2_5) / (1 + L2_3))
    assert ndcg_at_k(ranking, pos) == pytest.approx(0.650921, abs=1e-6)
    # k=2: DCG = 1/log2(3) = 0.63093; IDCG = 1 + 0.63093 -> 0.386853
    assert ndcg_at_k(ranking, pos, 2) == pytest.approx(0.386853, abs=1e-6)
    # k=1: nothing relevant at rank 1
    assert ndcg_at_k(ranking, pos, 1) == 0.0


def test_ndcg_positive_at_last_rank_of_twenty() -> None:
    ranking = [f"n{i}" for i in range(19)] + ["p"]
    # single positive at rank 20: DCG = 1/log2(21) = 0.2276702, IDCG = 1
    assert ndcg_at_k(ranking, {"p"}) == pytest.approx(0.2276702, abs=1e-7)
    assert ndcg_at_k(ranking, {"p"}, 10) == 0.0


def test_ndcg_missing_positives_and_k_larger_than_pool() -> None:
    ranking = ["a", "p"]
    # 3 positives, only p in the pool (rank 2). k=None -> cutoff = 2:
    # DCG = 0.6309298; IDCG = 1 + 0.6309298 = 1.6309298 -> 0.386853
    assert ndcg_at_k(ranking, {"p", "q", "r"}) == pytest.approx(0.386853, abs=1e-6)
    # k=5 > pool: IDCG over min(3, 5) = 3 ideal slots = 1 + 0.6309298 + 0.5 = 2.1309298
    # -> 0.6309298 / 2.1309298 = 0.296082
    assert ndcg_at_k(ranking, {"p", "q", "r"}, 5) == pytest.approx(0.296082, abs=1e-6)
    assert ndcg_at_k(ranking, {"z"}) == 0.0  # no positive in the pool
    assert ndcg_at_k(ranking, set()) == 0.0  # no positives at all
    assert ndcg_at_k([], {"p"}) == 0.0  # empty pool


def test_duplicate_ids_keep_positions_but_gain_once() -> None:
    # [p, a, p]: without de-duplication DCG would be 1 + 1/log2(4) = 1.5 > IDCG = 1.
    assert ndcg_at_k(["p", "a", "p"], {"p"}) == 1.0
    # [a, a, p]: duplicates occupy positions, so the positive is at rank 3.
    assert first_positive_rank(["a", "a", "p"], {"p"}) == 3
    assert mrr(["a", "a", "p"], {"p"}) == pytest.approx(1 / 3)
    assert ndcg_at_k(["a", "a", "p"], {"p"}) == pytest.approx(L2_4)  # 1/log2(4) = 0.5
    assert recall_at_k(["a", "a", "p"], {"p"}, 2) == 0.0


# ---------------------------------------------------------------- EvalRecord


def test_eval_record_defaults_and_normalisation() -> None:
    r = EvalRecord("q", ["a", "p"], {"p"}, decision_action=CropAction.REGION)  # type: ignore[arg-type]
    assert r.ranked_ids == ("a", "p")
    assert r.positives == frozenset({"p"})
    assert r.pool_size == 2
    assert r.decision_action == "REGION"
    assert r.is_crop and r.covered
    assert r.full_first is None  # positive in pool but full-image rank not given: unknown
    assert EvalRecord("q", ("a",), frozenset({"p"})).full_first is False  # no positive at all


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool_size": 3}, "pool_size=3"),
        ({"decision_action": "CROP"}, "decision_action"),
        ({"crop_area_fraction": 0.0}, "crop_area_fraction"),
        ({"crop_area_fraction": 1.5}, "crop_area_fraction"),
        ({"full_rank_first_positive": 0}, "full_rank_first_positive"),
        ({"full_rank_first_positive": 3}, "full_rank_first_positive"),
    ],
)
def test_eval_record_rejects_inconsistent_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalRecord("q", ("a", "p"), frozenset({"p"}), **kwargs)


def test_eval_record_full_rank_needs_a_positive_in_the_pool() -> None:
    with pytest.raises(ValueError, match="contains no positive"):
        EvalRecord("q", ("a", "b"), frozenset({"p"}), full_rank_first_positive=1)


# ---------------------------------------------------------------- compute_metrics


def _records() -> list[EvalRecord]:
    return [
        # r1: positive first under the crop ranking; FULL; full image ranked it first too
        EvalRecord("r1", ("p", "a", "b", "c"), frozenset({"p"}), None, "FULL", 1.0, 1, "templated"),
        # r2: REGION moved the positive from rank 4 (full) to rank 3
        EvalRecord(
            "r2", ("a", "b", "p", "c"), frozenset({"p"}), None, "REGION", 0.25, 4, "templated"
        ),
        # r3: no positive in the pool (not covered); REGION
        EvalRecord(
            "r3", ("a", "b", "c", "d"), frozenset({"p"}), None, "REGION", 0.5, None, "automatic"
        ),
        # r4: two positives at ranks 2 (q) and 3 (p); REGION; full image had one first
        EvalRecord(
            "r4", ("a", "q", "p", "b"), frozenset({"p", "q"}), None, "REGION", 0.75, 1, None
        ),
    ]


def test_compute_metrics_hand_computed() -> None:
    m = compute_metrics(_records(), ks=(1, 2, 10))
    assert m["num_queries"] == 4
    assert m["mean_pool_size"] == 4.0
    # first-positive ranks: r1=1, r2=3, r3=None, r4=2
    assert m["R@1"] == pytest.approx(1 / 4)  # r1
    assert m["R@2"] == pytest.approx(2 / 4)  # r1, r4
    assert m["R@10"] == pytest.approx(3 / 4)  # r1, r2, r4 (k > pool size)
    assert m["coverage"] == pytest.approx(3 / 4)  # R@poolsize: r3 has no positive
    assert m["num_covered"] == 3
    assert m["CondR@1"] == pytest.approx(1 / 3)  # 1 of the 3 covered queries
    assert m["CondR@2"] == pytest.approx(2 / 3)
    assert m["CondR@10"] == pytest.approx(1.0)
    assert m["CondR@2"] == pytest.approx(m["R@2"] / m["coverage"])
    # MRR = (1 + 1/3 + 0 + 1/2) / 4 = 1.8333 / 4 = 0.458333
    assert m["MRR"] == pytest.approx(0.4583333, abs=1e-7)
    # NDCG whole pool: r1 = 1; r2 = 1/log2(4) = 0.5; r3 = 0;
    # r4 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3) = 1.1309298 / 1.6309298 = 0.693426
    # mean = (1 + 0.5 + 0 + 0.693426) / 4 = 0.548357
    assert m["NDCG"] == pytest.approx(0.548357, abs=1e-6)
    assert m["NDCG@1"] == pytest.approx(0.25)  # only r1 has a positive at rank 1
    # NDCG@2: r1 = 1, r2 = 0, r3 = 0, r4 = 0.6309298 / 1.6309298 = 0.386853 -> 0.346713
    assert m["NDCG@2"] == pytest.approx(0.346713, abs=1e-6)
    assert m["crop_rate"] == pytest.approx(3 / 4)
    assert m["num_cropped"] == 3
    assert m["mean_crop_area"] == pytest.approx((0.25 + 0.5 + 0.75) / 3)  # 0.5
    # split: full-first = {r1 FULL, r4 REGION} -> 1/2; not first = {r2, r3} both REGION -> 1
    assert m["num_full_first"] == 2
    assert m["crop_rate_full_first"] == pytest.approx(0.5)
    assert m["num_full_not_first"] == 2
    assert m["crop_rate_full_not_first"] == pytest.approx(1.0)
    assert m["num_split_unknown"] == 0


def test_compute_metrics_by_question_type() -> None:
    by = compute_metrics(_records(), ks=(1,))["by_question_type"]
    assert sorted(by) == ["automatic", "templated"]  # r4 has no type: overall only
    t = by["templated"]  # r1, r2
    assert t["num_queries"] == 2
    assert t["R@1"] == pytest.approx(0.5)
    assert t["MRR"] == pytest.approx((1 + 1 / 3) / 2)  # 0.666667
    assert t["coverage"] == 1.0
    assert t["crop_rate"] == pytest.approx(0.5)
    assert t["mean_crop_area"] == pytest.approx(0.25)
    assert t["crop_rate_full_first"] == 0.0  # r1 kept FULL
    assert t["crop_rate_full_not_first"] == 1.0  # r2 cropped
    a = by["automatic"]  # r3 only: no positive in the pool
    assert a["R@1"] == 0.0 and a["coverage"] == 0.0 and a["MRR"] == 0.0
    assert a["CondR@1"] is None  # no covered query: undefined, reported as None
    assert a["mean_crop_area"] == 0.5
    assert "by_question_type" not in a


def test_compute_metrics_no_crops_and_unknown_split() -> None:
    recs = [EvalRecord("q", ("a", "p"), frozenset({"p"}))]  # full rank unknown
    m = compute_metrics(recs, ks=(1,))
    assert m["crop_rate"] == 0.0
    assert m["mean_crop_area"] is None  # no cropped query
    assert m["num_split_unknown"] == 1
    assert m["crop_rate_full_first"] is None and m["crop_rate_full_not_first"] is None
    assert m["by_question_type"] == {}


def test_compute_metrics_empty_and_bad_ks() -> None:
    with pytest.raises(ValueError, match="at least one"):
        compute_metrics([])
    with pytest.raises(ConfigError):
        compute_metrics(_records(), ks=(0,))


def test_compute_metrics_accepts_a_generator_and_dedups_ks() -> None:
    m = compute_metrics((r for r in _records()), ks=(2, 1, 2))
    assert [k for k in m if k.startswith("R@")] == ["R@1", "R@2"]


ids = st.sampled_from(["a", "b", "c", "d", "e", "p", "q"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(ids, min_size=1, max_size=8), st.frozensets(ids, max_size=3)),
        min_size=1,
        max_size=6,
    )
)
def test_metric_invariants(rows: list[tuple[list[str], frozenset[str]]]) -> None:
    recs = [EvalRecord(str(i), tuple(r), p) for i, (r, p) in enumerate(rows)]
    m = compute_metrics(recs, ks=(1, 3, 8))
    assert m["R@1"] <= m["R@3"] <= m["R@8"] == pytest.approx(m["coverage"])
    assert m["MRR"] <= m["coverage"] + 1e-12
    for k in (1, 3, 8):
        assert 0.0 <= m[f"NDCG@{k}"] <= 1.0 + 1e-12
        if m["num_covered"]:
            assert m[f"CondR@{k}"] == pytest.approx(m[f"R@{k}"] / m["coverage"])
    assert 0.0 <= m["NDCG"] <= 1.0 + 1e-12


# ---------------------------------------------------------------- Markdown table


def test_format_markdown_table_exact() -> None:
    results: dict[str, dict[str, Any]] = {
        "full image": {"num_queries": 4, "R@1": 0.25, "CondR@1": 1 / 3, "mean_crop_area": None},
        "vlm|crop": {"num_queries": 4, "R@1": 0.5},
    }
    table = format_markdown_table(results, ["num_queries", "R@1", "CondR@1", "mean_crop_area"])
    assert table == (
        "| method | num_queries | R@1 | CondR@1 | mean_crop_area |\n"
        "|---|---:|---:|---:|---:|\n"
        "| full image | 4 | 0.250 | 0.333 | - |\n"
        "| vlm\\|crop | 4 | 0.500 | - | - |\n"
    )


def test_format_markdown_table_default_columns_from_compute_metrics() -> None:
    m = compute_metrics(_records())
    table = format_markdown_table({"a": m}, digits=2)
    header = table.splitlines()[0]
    assert header == (
        "| method | num_queries | R@1 | R@5 | CondR@1 | coverage | MRR | NDCG | crop_rate "
        "| mean_crop_area |"
    )
    assert (
        table.splitlines()[2] == "| a | 4 | 0.25 | 0.75 | 0.33 | 0.75 | 0.46 | 0.55 | 0.75 | 0.50 |"
    )
    with pytest.raises(ValueError):
        format_markdown_table({})
