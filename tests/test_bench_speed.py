"""The speed benchmark harness: its CLI runs end to end in quick mode and writes a JSON
report with every figure, sane values and a cache that kept its byte bound. Speed targets
are not asserted here (shared machines are noisy): they are measured by full runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from region_rerank.bench.cache_memory import measure_cache_memory
from region_rerank.bench.speed import FIGURES, TARGETS, SpeedSettings
from region_rerank.bench.timing import ForwardTimer, median_seconds
from region_rerank.cli import main
from region_rerank.errors import ConfigError
from region_rerank.index import faiss_available


def test_quick_run_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "speed.json"
    assert main(["bench", "speed", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    figures = report["figures"]
    for key in FIGURES:
        assert f"`{key}`" in printed
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
    for key in TARGETS:
        assert figures[key] > 0, key
    assert 0.0 <= figures["non_model_overhead"] < 1.0
    assert figures["light_cropper_over_floor"] >= 1.0
    assert figures["tensor_crop_mean_abs_diff"] < 1e-3  # same pixels as the processor
    ratios = figures["cropper_cost_ratio"]
    croppers = {"full", "center", "random", "text_match", "proposal", "proposal_dense"}
    shipped = {
        "proposal_objects",
        "proposal_dense_objects",
        "proposal_objects_retrieval",
        "proposal_paraphrased",
    }
    assert set(ratios) == croppers | shipped
    assert figures["dense_cropper_cost_ratio"] == ratios["proposal_dense"]
    flops = figures["light_cropper_gflops"]  # one dense forward vs 62 crops through the scorer
    assert flops["proposal_paraphrased"] == flops["proposal"]  # the same architecture
    assert 0 < flops["proposal_dense"] < flops["proposal"] / 5
    assert flops["proposal_objects"] > flops["proposal"]  # a detector forward, more views
    # one dense forward and one detector forward, still far below the scorer's views
    assert flops["proposal_dense"] < flops["proposal_dense_objects"] < flops["proposal"] / 3
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert set(figures["cropper_cost_k100_over_k20"]) == set(ratios)
    growth = figures["search_10x_kb"]
    assert "torch" in growth and all(math.isfinite(v) and v > 0 for v in growth.values())
    if faiss_available():
        assert set(growth) == {"torch", "faiss", "faiss_hnsw"}
        assert figures["hnsw_search_10x_kb"] == growth["faiss_hnsw"]
        hnsw = figures["search_kb_hnsw"]
        assert hnsw["index"] == "HNSW32,Flat" and hnsw["entries"] == 20_000
        assert 0.0 <= hnsw["planted_recall_at_20"] <= 1.0 and hnsw["build_seconds"] > 0
    assert figures["retrieve_seconds"]["view"] > 0 and figures["retrieve_seconds"]["full"] > 0
    # The cache: every entry held under a large bound, the half bound evicted and held.
    full, half = figures["cache_full_bound"], figures["cache_half_bound"]
    n = report["settings"]["cache_entries"]
    assert full["entries_held"] == n and full["bytes_held"] == n * 384 * 4
    assert half["evictions"] > 0 and half["max_bytes_held"] <= half["max_bytes"]
    assert figures["cache_bound_held"] is True and figures["cache_peak_mb"] >= 0
    models = report["models"]
    assert models["text_tower_params"] > 10**7 and models["image_tower_params"] > 10**5
    assert report["machine"]["cores"] >= 1 and report["settings"]["repeats"] == 1


def test_quick_run_times_a_cropper_of_your_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from region_rerank.croppers.proposal import DENSE_WEIGHTS_PATH

    out = tmp_path / "speed.json"
    mine = f"mine=proposal:{DENSE_WEIGHTS_PATH}"
    assert main(["bench", "speed", "--quick", "--json", str(out), "--cropper", mine]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert math.isfinite(figures["cropper_cost_ratio"]["mine"])
    assert figures["cropper_s"]["mine"] > 0
    # the same weights as the shipped proposal_dense: the same FLOPs per decision
    flops = figures["light_cropper_gflops"]
    assert flops["mine"] == pytest.approx(flops["proposal_dense"])
    capsys.readouterr()
    assert main(["bench", "speed", "--quick", "--cropper", "full=center"]) == 2
    assert "taken by a built-in one" in capsys.readouterr().err


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="repeats"):
        SpeedSettings(repeats=0)
    with pytest.raises(ConfigError, match="pool_sizes"):
        SpeedSettings(pool_sizes=(100, 20))
    with pytest.raises(ConfigError, match="given twice"):
        SpeedSettings(croppers=(("a", "center"), ("a", "random")))
    with pytest.raises(ConfigError, match="taken by a built-in one"):
        SpeedSettings(croppers=(("proposal_dense", "center"),))  # before any model loads
    assert main(["bench", "speed", "--repeats", "0"]) == 2


def test_cache_memory_reports_the_bound_in_a_fresh_process() -> None:
    (bounded,) = measure_cache_memory(300, 8, [100 * 8 * 4])
    assert bounded["entries_held"] == 100 and bounded["evictions"] == 200
    assert bounded["bound_held"] and bounded["max_bytes_held"] == 100 * 8 * 4


def test_forward_timer_counts_nested_calls_once_and_detaches() -> None:
    inner = torch.nn.Linear(4, 4)
    outer = torch.nn.Sequential(inner, torch.nn.ReLU())
    timer = ForwardTimer([outer, inner])
    with timer:
        outer(torch.zeros(2, 4))
        inner(torch.zeros(2, 4))
    assert timer.calls == 2 and timer.seconds > 0
    outer(torch.zeros(2, 4))
    assert timer.calls == 2  # hooks removed on exit
    assert not outer._forward_hooks and not inner._forward_pre_hooks


def test_median_seconds_runs_setup_before_every_run() -> None:
    calls: list[str] = []
    median_seconds(lambda: calls.append("run"), 3, warmup=1, setup=lambda: calls.append("setup"))
    assert calls == ["setup", "run"] * 4
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, 0)
