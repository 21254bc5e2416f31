"""scripts/fusion_replay.py: another blend setting, replayed from a crop run and a mean run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _module():
    sys.path.insert(0, str(SCRIPTS))  # the script imports crop_gate beside it
    try:
        spec = importlib.util.spec_from_file_location("fusion_replay", SCRIPTS / "fusion_replay.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fusion_replay"] = mod  # its dataclass looks its module up
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPTS))
    return mod


def _write(folder: Path, method: str, rows: dict[str, dict[str, float]]) -> None:
    """Records of ``method``: per query id, candidate id -> score (ranked best first)."""
    (folder / "records").mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, scores in rows.items():
        ranked = sorted(scores, key=lambda c: -scores[c])
        lines.append(
            {
                "query_id": qid,
                "ranked_ids": ranked,
                "scores": [scores[c] for c in ranked],
                "positives": ["pos"],
            }
        )
    (folder / "records" / f"{method}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines)
    )


# view and full-image similarities of two queries' pools
VIEW = {"a": {"pos": 0.70, "x": 0.72, "y": 0.1}, "b": {"pos": 0.9, "x": 0.5, "y": 0.2}}
FULL = {"a": {"pos": 0.60, "x": 0.40, "y": 0.3}, "b": {"pos": 0.3, "x": 0.6, "y": 0.1}}


def _seed(root: Path, name: str, mod) -> None:
    seed = root / "worlds-x" / name
    mean = {q: {c: (VIEW[q][c] + FULL[q][c]) / 2 for c in VIEW[q]} for q in VIEW}
    _write(seed / mod.CROP_REPORT, "pol", VIEW)
    _write(seed / mod.MEAN_REPORT, "pol", mean)
    # the full method ranks the positive first on a, not on b
    _write(
        seed / mod.CROP_REPORT, "full", {"a": {"pos": 0.6, "x": 0.4}, "b": {"x": 0.6, "pos": 0.3}}
    )


def test_both_similarities_are_recovered_and_replayed(tmp_path: Path) -> None:
    mod = _module()
    _seed(tmp_path, "seed-1", mod)
    (folder,) = mod.seed_folders([tmp_path], "pol")
    queries = {q.ids[0]: q for q in mod.load_queries(folder, "pol")}
    a = next(
        q for q in mod.load_queries(folder, "pol") if set(q.ids) == set(VIEW["a"]) and q.full_first
    )
    for cid, f in zip(a.ids, a.full):
        assert f == pytest.approx(FULL["a"][cid])
    assert queries  # both queries loaded
    qs = mod.load_queries(folder, "pol")
    # crop fusion: a loses its first place (x leads the view by 0.02), b is right
    assert mod.replay(qs, full_weight=0.0) == {"r1": 0.5, "kept_first": 0.0, "full_first": 1}
    # a close margin of 0.05 hands a (margin 0.02) to the full image; b (margin 0.4) keeps
    # its view, which a fixed weight of 1 would not
    close = mod.replay(qs, full_weight=0.0, close_margin=0.05, close_full_weight=1.0)
    assert close == {"r1": 1.0, "kept_first": 1.0, "full_first": 1}
    assert mod.replay(qs, full_weight=1.0)["r1"] == 0.5


def test_the_grid_reports_the_worst_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _module()
    _seed(tmp_path, "seed-1", mod)
    _seed(tmp_path, "seed-2", mod)
    out = tmp_path / "rows.json"
    mod.main([str(tmp_path), "--method", "pol", "--full-weight", "0", "--close-margin", "0,0.05",
              "--close-full-weight", "1", "--json", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [(r["close_margin"], r["r1"], r["min_seed_kept_first"]) for r in rows] == [
        (0.0, 0.5, 0.0),
        (0.05, 1.0, 1.0),
    ]
    assert "2 seed folders, 4 queries" in capsys.readouterr().out


def test_runs_with_different_pools_are_refused(tmp_path: Path) -> None:
    mod = _module()
    _seed(tmp_path, "seed-1", mod)
    folder = tmp_path / "worlds-x" / "seed-1"
    _write(folder / mod.MEAN_REPORT, "pol", {"a": {"pos": 0.5, "z": 0.1}, "b": {"pos": 0.5}})
    with pytest.raises(SystemExit, match="different pools"):
        mod.load_queries(folder, "pol")
    with pytest.raises(SystemExit, match="both"):
        mod.seed_folders([tmp_path / "nothing"], "pol")
