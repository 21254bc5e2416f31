"""``bench quality``: worlds per seed, the methods through the eval harness, and a report
whose means and standard deviations are those of its per-seed figures."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from region_rerank.bench.quality import REPORT_FORMAT, format_quality_table, run_quality
from region_rerank.cli import main
from region_rerank.errors import ConfigError
from region_rerank.reranker import RerankerConfig


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    work = tmp_path_factory.mktemp("bq")
    out = run_quality(
        [1, 2], n_test=10, methods=("center", "oracle"), work_dir=work, progress=False
    )
    return out, work


def test_the_report_aggregates_its_per_seed_figures(report: tuple[dict, Path]) -> None:
    rep, _ = report
    assert rep["format"] == REPORT_FORMAT and rep["seeds"] == [1, 2]
    assert list(rep["methods"]) == ["full", "center", "oracle"]
    for m in rep["methods"].values():
        for key in ("cond_r1", "r1", "r5", "mrr", "coverage", "crop_rate"):
            values = [m["per_seed"][s][key] for s in ("1", "2")]
            assert m[key] == pytest.approx(statistics.fmean(values))
            assert m[f"{key}_sd"] == pytest.approx(statistics.stdev(values))
        assert 0.0 <= m["cond_r1"] <= 1.0
    full, oracle = rep["methods"]["full"], rep["methods"]["oracle"]
    # Pools come from the full image, so every method sees the same coverage.
    assert rep["methods"]["center"]["coverage"] == full["coverage"] == oracle["coverage"]
    assert full["crop_rate"] == 0.0 and oracle["crop_rate"] == 1.0
    assert rep["gap_closed"]["full"]["mean"] == 0.0
    assert rep["gap_closed"]["oracle"]["mean"] == pytest.approx(1.0)


def test_subtypes_partition_the_queries(report: tuple[dict, Path]) -> None:
    rep, work = report
    full = rep["methods"]["full"]
    kinds = {k.split(":")[0] for k in full["per_subtype"]}
    assert kinds <= {"position", "size", "attribute", "relation"}
    n_covered = sum(
        full["per_seed"][s]["per_subtype_n"][k]
        for s in ("1", "2")
        for k in full["per_seed"][s]["per_subtype_n"]
    )
    total = sum(round(full["per_seed"][s]["coverage"] * rep["n_test"]) for s in ("1", "2"))
    assert n_covered == total
    # Recompute one sub-type's CondR@1 from the records written for seed 1.
    records = [
        json.loads(line)
        for line in next(work.glob("worlds-*/seed-1/report/records/oracle.jsonl")).open()
    ]
    queries = {
        q["id"]: q
        for q in map(json.loads, next(work.glob("worlds-*/seed-1/world/test/queries.jsonl")).open())
    }
    oracle_seed1 = rep["methods"]["oracle"]["per_seed"]["1"]["per_subtype"]
    for key, value in oracle_seed1.items():
        qtype, detail = key.split(":")
        rows = [
            r
            for r in records
            if queries[r["query_id"]]["question_type"] == qtype
            and queries[r["query_id"]]["detail"].split(":")[0] == detail
            and set(r["positives"]) & set(r["ranked_ids"])
        ]
        if not rows:
            assert value is None
            continue
        hits = sum(1 for r in rows if r["ranked_ids"][0] in r["positives"])
        assert value == pytest.approx(hits / len(rows))


def test_kept_first_counts_what_the_full_image_already_solved(report: tuple[dict, Path]) -> None:
    rep, work = report
    seed_dir = next(work.glob("worlds-*/seed-1/report/records"))

    def firsts(method: str) -> dict[str, bool]:
        rows = [json.loads(line) for line in (seed_dir / f"{method}.jsonl").open()]
        return {
            r["query_id"]: bool(r["ranked_ids"]) and r["ranked_ids"][0] in r["positives"]
            for r in rows
        }

    full, oracle = firsts("full"), firsts("oracle")
    solved = [q for q, ok in full.items() if ok]
    expected = sum(oracle[q] for q in solved) / len(solved) if solved else None
    assert rep["methods"]["oracle"]["per_seed"]["1"]["kept_first"] == pytest.approx(expected)
    assert rep["methods"]["full"]["per_seed"]["1"]["kept_first"] in (1.0, None)


def test_a_second_run_reuses_the_worlds(report: tuple[dict, Path]) -> None:
    rep, work = report
    world = next(work.glob("worlds-*/seed-1/world/test/queries.jsonl"))
    before = world.stat().st_mtime_ns
    again = run_quality(
        [1, 2], n_test=10, methods=("center", "oracle"), work_dir=work, progress=False
    )
    assert world.stat().st_mtime_ns == before
    assert again["methods"] == rep["methods"]


def test_the_table_shows_mean_and_sd(report: tuple[dict, Path]) -> None:
    rep, _ = report
    table = format_quality_table(rep)
    c = rep["methods"]["center"]
    assert f"| center | {c['cond_r1']:.3f} ± {c['cond_r1_sd']:.3f} |" in table


def test_the_command_writes_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "q.json"
    code = main(
        [
            "bench",
            "quality",
            "--seeds",
            "3",
            "--n-test",
            "6",
            "--methods",
            "oracle",
            "--phrasing",
            "heldout",
            "--balance-subtypes",
            "--fusion",
            "max",
            "--work",
            str(tmp_path / "w"),
            "--json",
            str(path),
        ]
    )
    assert code == 0
    rep = json.loads(path.read_text())
    assert rep["world"] == {"phrasing": "heldout", "balance_subtypes": True}
    assert rep["fusion"] == "max"
    (run,) = (tmp_path / "w").glob("worlds-*/seed-3/report-fusion-max/run.json")
    assert json.loads(run.read_text())["fingerprint"]["reranker"] == {"fusion": "max"}
    assert rep["methods"]["full"]["cond_r1_sd"] == 0.0  # one seed
    assert "| oracle |" in capsys.readouterr().out
    assert not math.isnan(rep["methods"]["oracle"]["mrr"])


def test_the_close_margin_reaches_the_run_and_the_json(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    args = ["bench", "quality", "--seeds", "3", "--n-test", "4", "--methods", "oracle",
            "--fusion", "blend", "--full-weight", "0.3", "--close-margin", "0.05",
            "--work", str(tmp_path / "w"), "--json", str(path)]  # fmt: skip
    assert main(args) == 0
    rep = json.loads(path.read_text())
    settings = {"fusion": "blend", "full_weight": 0.3, "close_margin": 0.05}
    assert rep["reranker"] == settings and rep["full_weight"] == 0.3
    (run,) = (tmp_path / "w").glob("worlds-*/seed-3/report-fusion-blend-0.3-close-0.05-1/run.json")
    assert json.loads(run.read_text())["fingerprint"]["reranker"] == settings


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], [True]])
def test_bad_seeds_are_config_errors(seeds: list[Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        run_quality(seeds, n_test=4, methods=("oracle",), work_dir=tmp_path)


def test_a_bad_fusion_weight_fails_before_any_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "w"
    assert main(["bench", "quality", "--seeds", "1", "--n-test", "4", "--methods", "oracle",
              "--fusion", "blend", "--close-margin", "0.05", "--close-full-weight", "2",
              "--work", str(work)]) == 2  # fmt: skip
    assert "close_full_weight=2.0 is out of range" in capsys.readouterr().err
    assert not work.exists()


def test_a_reserved_method_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        run_quality([1], n_test=4, methods=("full=center",), work_dir=tmp_path)


def test_each_scorer_gets_its_own_pools_and_records() -> None:
    from region_rerank.bench.quality import _report_name

    assert _report_name("demo", None) == "report"
    assert _report_name("demo", "fused") == "report-retrieve-fused"
    assert (
        _report_name("demo", "fused", RerankerConfig(fusion="max"))
        == "report-retrieve-fused-fusion-max"
    )
    blend = _report_name("demo", "fused", RerankerConfig(fusion="blend", full_weight=0.25))
    assert blend == "report-retrieve-fused-fusion-blend-0.25"
    assert blend != _report_name("demo", "fused", RerankerConfig(fusion="blend"))
    close = _report_name("demo", "fused", RerankerConfig(fusion="blend", close_margin=0.05))
    assert close == "report-retrieve-fused-fusion-blend-0.5-close-0.05-1"
    assert _report_name("demo", None, RerankerConfig(fusion="crop")) == "report"
    margin = _report_name(
        "demo", None, RerankerConfig(crop_margin=0.1)
    )  # other settings: their hash
    assert margin.startswith("report-") and margin != _report_name("demo", None)
    other = _report_name("demo:/tmp/tower.safetensors", None)
    assert other.startswith("report-") and other != _report_name("clip", None)
