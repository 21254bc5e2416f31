"""scripts/crop_gate.py: what a crop gate would do, read off a finished run's records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crop_gate.py"


def _module():
    spec = importlib.util.spec_from_file_location("crop_gate", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(qid: str, ranked: list[str], action: str = "FULL", p: float | None = None) -> dict:
    return {
        "query_id": qid,
        "ranked_ids": ranked,
        "positives": ["pos"],
        "decision": {"action": action, "confidence": p},
    }


def _write(folder: Path, method: str, rows: list[dict]) -> None:
    (folder / "records").mkdir(parents=True, exist_ok=True)
    (folder / "records" / f"{method}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_gated_queries_take_the_full_methods_record(tmp_path: Path) -> None:
    mod = _module()
    run = tmp_path / "work" / "seed-1" / "report-retrieve-fused"
    _write(
        run,
        "full",
        [
            _rec("a", ["pos", "x"]),  # full first
            _rec("b", ["pos", "x"]),  # full first
            _rec("c", ["x", "pos"]),  # full second
            _rec("d", ["x", "y"]),  # no positive retrieved
        ],
    )
    _write(
        run,
        "pol",
        [
            _rec("a", ["pos", "x"], "REGION", 0.9),  # confident and right: kept
            _rec("b", ["x", "pos"], "REGION", 0.3),  # unsure and breaks a first answer
            _rec("c", ["pos", "x"], "REGION", 0.4),  # unsure but fixes it
            _rec("d", ["x", "y"], "FULL", 0.8),
        ],
    )
    free = mod.gate_figures(mod.report_dirs([tmp_path / "work"], "pol"), "pol", 0.0)
    assert free == {
        "tau": 0.0,
        "queries": 4,
        "crop_rate": 0.75,
        "r1": 0.5,
        "coverage": 0.75,
        "kept_first": 0.5,
        "full_first": 2,
    }
    gated = mod.gate_figures([run], "pol", 0.5)
    assert (gated["crop_rate"], gated["r1"], gated["kept_first"]) == (0.25, 0.5, 1.0)
    every = mod.gate_figures([run], "pol", 1.0)  # everything gated: the full method's figures
    assert (every["crop_rate"], every["r1"], every["coverage"]) == (0.0, 0.5, 0.75)
    # a work folder with two runs of the method must say which one
    _write(tmp_path / "work" / "seed-1" / "report-retrieve-fused-fusion-max", "pol", [])
    with pytest.raises(SystemExit, match="--report"):
        mod.report_dirs([tmp_path / "work"], "pol")
    assert mod.report_dirs([tmp_path / "work"], "pol", "report-retrieve-fused") == [run]
