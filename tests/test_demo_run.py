"""The main job end to end on a small world: `region-rerank bench make` and `demo`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from region_rerank.cli import main


def test_bench_make_with_custom_templates(tmp_path: Path) -> None:
    templates = tmp_path / "templates.txt"
    templates.write_text("# new phrasings\nWho catalogued {ref} first?\n")
    out = tmp_path / "world"
    argv = [
        "bench",
        "make",
        "--out",
        str(out),
        "--seed",
        "3",
        "--n-train",
        "4",
        "--n-val",
        "0",
        "--n-test",
        "6",
        "--distractors",
        "2,2",
        "--canvas",
        "160,128",
        "--clutter",
        "0.5",
        "--templates",
        str(templates),
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "test" / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and not (out / "val").exists()
    assert all(r["question"].startswith("Who catalogued ") for r in rows)
    assert Image.open(out / "test" / rows[0]["image"]).size == (160, 128)
    assert len(rows[0]["objects"]) == 3  # target + 2 distractors


def test_bench_make_rejects_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "make", "--out", str(tmp_path), "--distractors", "1"])
    assert "expected two values" in capsys.readouterr().err
    assert main(["bench", "make", "--out", str(tmp_path), "--clutter", "3"]) == 2
    assert "clutter" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-test", "24"]) == 0
    printed = capsys.readouterr().out
    for method in ("full", "center", "random", "text_match", "oracle"):
        assert f"| {method} |" in printed
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["full"]["num_queries"] == 24
    assert metrics["oracle"]["crop_rate"] == 1.0 and metrics["full"]["crop_rate"] == 0.0
    # the mechanism shows even on 24 queries: cropping the right region helps
    assert metrics["oracle"]["MRR"] > metrics["full"]["MRR"]
    for name in ("metrics.md", "methods.png", "examples.png", "pools.jsonl"):
        assert (out / "report" / name).is_file(), name
    # a second run resumes: nothing recomputed, same table
    assert main(["demo", "--out", str(out), "--n-test", "24"]) == 0
    assert capsys.readouterr().out == printed
