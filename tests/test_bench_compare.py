"""``bench compare``: two quality reports of the same scenes, paired per seed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from region_rerank.bench.compare import COMPARE_FORMAT, compare_reports, load_report
from region_rerank.bench.quality import run_quality
from region_rerank.cli import main
from region_rerank.errors import ConfigError


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same two seeds worded by the training families and by the held-out family."""
    work = tmp_path_factory.mktemp("bc")
    runs = tuple(
        run_quality(
            [1, 2],
            n_test=12,
            methods=("center", "oracle"),
            world={"phrasing": phrasing},
            work_dir=work,
            progress=False,
        )
        for phrasing in ("train", "heldout")
    )
    return runs[0], runs[1]


def test_the_drop_is_the_per_seed_difference(reports: tuple[dict, dict]) -> None:
    train, heldout = reports
    out = compare_reports(train, heldout)
    assert out["format"] == COMPARE_FORMAT
    assert out["seeds"] == [1, 2]
    for name in ("full", "center", "oracle"):
        m = out["methods"][name]
        expected = [
            100 * (train["methods"][name]["per_seed"][s]["cond_r1"]
                   - heldout["methods"][name]["per_seed"][s]["cond_r1"])
            for s in ("1", "2")
        ]  # fmt: skip
        assert list(m["per_seed"].values()) == pytest.approx(expected)
        assert m["drop"] == pytest.approx(sum(expected) / 2)
        assert m["base"] == train["methods"][name]["cond_r1"]
    # The wording changes no scene: what ignores the question scores the same on each seed.
    for name in ("full", "oracle"):
        assert out["methods"][name]["per_seed"] == {"1": 0.0, "2": 0.0}


def test_the_command_prints_and_writes(
    reports: tuple[dict, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for name, rep in zip(("train", "heldout"), reports):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(rep))
    out = tmp_path / "cmp.json"
    args = ["bench", "compare", *map(str, paths), "--figure", "mrr", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| center |" in printed and "drop, points" in printed
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(compare_reports(*reports, figure="mrr")))
    assert written["figure"] == "mrr"


def test_other_scenes_are_refused(reports: tuple[dict, dict]) -> None:
    train, heldout = reports
    small = copy.deepcopy(heldout)
    small["world"]["target_scale"] = [0.2, 0.3]
    with pytest.raises(ConfigError, match=r"world option\(s\) \['target_scale'\] differ"):
        compare_reports(train, small)
    other_seeds = copy.deepcopy(heldout)
    other_seeds["seeds"] = [1, 3]
    with pytest.raises(ConfigError, match="seeds is"):
        compare_reports(train, other_seeds)


def test_a_seed_without_the_figure_is_left_out(reports: tuple[dict, dict]) -> None:
    train, heldout = reports
    gap = copy.deepcopy(heldout)
    gap["methods"]["center"]["per_seed"]["2"]["cond_r1"] = None
    m = compare_reports(train, gap)["methods"]["center"]
    assert m["per_seed"]["2"] is None
    assert m["drop"] == pytest.approx(m["per_seed"]["1"])
    assert m["drop_sd"] is None


def test_bad_inputs_are_config_errors(reports: tuple[dict, dict], tmp_path: Path) -> None:
    train, heldout = reports
    with pytest.raises(ConfigError, match="unknown figure"):
        compare_reports(train, heldout, figure="r@1")
    disjoint = copy.deepcopy(heldout)
    disjoint["methods"] = {"mine": disjoint["methods"]["center"]}
    with pytest.raises(ConfigError, match="no method is in both"):
        compare_reports(train, disjoint)
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="is not a region-rerank-bench-quality/1 report"):
        load_report(speed)
    with pytest.raises(ConfigError, match="cannot read"):
        load_report(tmp_path / "missing.json")
    assert main(["bench", "compare", str(speed), str(speed)]) == 2
