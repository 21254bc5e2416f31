"""Sharded, resumable index builds: two processes give the same index as one."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from region_rerank.errors import ConfigError
from region_rerank.index import CandidateIndex
from region_rerank.index_shards import build_index_sharded, merge_shards, shard_bounds
from region_rerank.testing import FakeScorer
from region_rerank.types import Candidate

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "purple")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"id": f"e{i:02d}", "text": f"a {WORDS[i % 8]} {i} thing"} for i in range(11)]
    (folder / "kb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'integrations'}"}
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        full_env.pop(key, None)
    full_env.update(env or {})
    out = subprocess.run(
        [sys.executable, "-m", "region_rerank.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _build(data: Path, out: Path, env: dict[str, str] | None = None) -> str:
    args = ["index", "build", "--data", str(data), "--scorer", "fake", "--out", str(out)]
    return _cli(args, env).stdout


def _same(a: Path, b: Path) -> None:
    x, y = CandidateIndex.load(a), CandidateIndex.load(b)
    assert x.ids == y.ids and len(x) == 11
    assert torch.equal(x.embeddings(), y.embeddings())


def test_shards_split_the_kb_without_gaps() -> None:
    for n, world in ((11, 2), (11, 4), (3, 5), (0, 2)):
        spans = [shard_bounds(n, r, world) for r in range(world)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert max(b - a for a, b in spans) - min(b - a for a, b in spans) <= 1


def test_two_ranks_give_the_single_process_index(data: Path, tmp_path: Path) -> None:
    assert "wrote an index of 11" in _build(data, tmp_path / "one")
    out = tmp_path / "two"
    first = _build(data, out, {"RANK": "0", "WORLD_SIZE": "2"})
    assert "rank 0 of 2: shard written" in first and not (out / "index.json").exists()
    assert "wrote an index of 11" in _build(data, out, {"RANK": "1", "WORLD_SIZE": "2"})
    _same(tmp_path / "one", out)


def test_torchrun_with_two_processes(data: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    _build(data, tmp_path / "one")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'integrations'}"}
    out = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "region_rerank.cli",
            "index",
            "build",
            "--data",
            str(data),
            "--scorer",
            "fake",
            "--out",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("wrote an index of 11") == 1  # rank 0 merges after the barrier
    _same(tmp_path / "one", tmp_path / "dist")


def test_a_finished_shard_survives_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = [Candidate(f"e{i:02d}", f"a {WORDS[i % 8]} thing") for i in range(11)]
    out = tmp_path / "idx"
    assert build_index_sharded(entries, FakeScorer(), out, rank=0, world=2) is None
    shard0 = out / "shards" / "shard-00000-of-00002.safetensors"
    stamp = shard0.stat().st_mtime_ns
    # Rank 1 "crashed" before writing; rerunning both keeps shard 0 and completes the index.
    caplog.set_level("INFO")
    assert build_index_sharded(entries, FakeScorer(), out, rank=0, world=2) is None
    assert "already built" in caplog.text and shard0.stat().st_mtime_ns == stamp
    index = build_index_sharded(entries, FakeScorer(), out, rank=1, world=2)
    assert index is not None and index.ids == tuple(c.id for c in entries)
    whole = CandidateIndex.build(entries, FakeScorer(), progress=False)
    assert torch.equal(index.embeddings(), whole.embeddings())


def test_merging_needs_every_shard(tmp_path: Path) -> None:
    entries = [Candidate(f"e{i}", "a red thing") for i in range(4)]
    build_index_sharded(entries, FakeScorer(), tmp_path, rank=0, world=3)
    with pytest.raises(ConfigError, match="shard 1 of 3 is not finished"):
        merge_shards(tmp_path, 3)
    with pytest.raises(ConfigError, match="duplicate ids"):
        build_index_sharded([*entries, entries[0]], FakeScorer(), tmp_path / "x", rank=0, world=1)
