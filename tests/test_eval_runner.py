"""The evaluation runner and the ``pools`` / ``eval`` CLI commands on the tiny colour world.

See :mod:`tests.test_eval_pools` for the world: the full image ranks the big distractor
first, the ground-truth crop ranks the small target first, so the oracle must win.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from region_rerank.cli import main
from region_rerank.croppers.base import BaseCropper
from region_rerank.errors import ConfigError
from region_rerank.eval.datasets import EvalDataset, load_jsonl_dataset
from region_rerank.eval.runner import load_eval_data, run_eval
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, CropDecision, Query
from tests.test_eval_pools import SCENES, make_world


class CountingScorer(FakeScorer):
    """A FakeScorer that counts which candidates it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: Counter[str] = Counter()

    def embed_candidates(self, candidates: Sequence[Candidate], image_options: Any = None) -> Any:
        self.embedded.update(c.id for c in candidates)
        return super().embed_candidates(candidates, image_options)


class RecordingCropper(BaseCropper):
    """Crops the right half of every image; remembers the queries it saw; can be told to
    raise ``KeyboardInterrupt`` on a given call (a user pressing Ctrl-C)."""

    name = "half"

    def __init__(self, interrupt_on_call: int | None = None) -> None:
        self.seen: list[str | None] = []
        self.interrupt_on_call = interrupt_on_call
        self.calls = 0
        self._inner = FakeCropper((0.5, 0.0, 1.0, 1.0))

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        self.seen.extend(q.id for q in queries)
        return self._inner.decide_batch(queries)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("runner_world"))


@pytest.fixture()
def world(world_dir: Path) -> EvalDataset:
    return load_jsonl_dataset(world_dir)


def _records(out: Path, method: str) -> list[dict[str, Any]]:
    lines = (out / "records" / f"{method}.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row.pop("seconds")
    return rows


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_oracle_beats_full_and_the_split_is_recorded(world: EvalDataset, tmp_path: Path) -> None:
    results = run_eval(
        world, {"oracle": "oracle"}, FakeScorer(), tmp_path / "run", batch_size=4, progress=False
    )
    assert list(results) == ["full", "oracle"]
    full, oracle = results["full"], results["oracle"]
    assert full["coverage"] == oracle["coverage"] == 1.0
    # Only the large-target query (no box) is right on the full image.
    assert full["CondR@1"] == pytest.approx(1 / len(SCENES))
    assert oracle["CondR@1"] == 1.0 and oracle["CondR@1"] - full["CondR@1"] > 0.5
    assert oracle["crop_rate"] == pytest.approx((len(SCENES) - 1) / len(SCENES))
    # Crop-rate split: the oracle crops every query the full image got wrong, and keeps
    # the full image on the one it got right (no GT box there).
    assert oracle["crop_rate_full_not_first"] == 1.0 and oracle["crop_rate_full_first"] == 0.0
    assert full["crop_rate"] == 0.0 and full["num_full_first"] == 1
    assert oracle["by_question_type"]["small"]["R@1"] == 1.0
    for rec in _records(tmp_path / "run", "oracle"):
        assert rec["full_rank_first_positive"] in (1, 2)
        assert rec["first_positive_rank"] == 1


def test_methods_share_candidate_embeddings(world: EvalDataset, tmp_path: Path) -> None:
    scorer = CountingScorer()
    methods = {"oracle": "oracle", "half": RecordingCropper(), "fake": FakeCropper()}
    run_eval(world, methods, scorer, tmp_path / "run", batch_size=2, progress=False)
    pooled = {cid for pool in world.pools.values() for cid, _ in pool}
    assert set(scorer.embedded) == pooled
    assert max(scorer.embedded.values()) == 1  # once per distinct candidate, all methods


def test_resume_after_limit_matches_a_fresh_run(world: EvalDataset, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    run_eval(world, {"half": RecordingCropper(), "oracle": "oracle"}, FakeScorer(), fresh,
             batch_size=2, progress=False)  # fmt: skip
    out = tmp_path / "resumed"
    first = RecordingCropper()
    partial = run_eval(world, {"half": first, "oracle": "oracle"}, FakeScorer(), out,
                       batch_size=2, progress=False, limit=3)  # fmt: skip
    assert partial["half"]["num_queries"] == 3 and first.seen == ["q0", "q1", "q2"]
    assert len(_records(out, "half")) == 3
    second = RecordingCropper()
    final = run_eval(world, {"half": second, "oracle": "oracle"}, FakeScorer(), out,
                     batch_size=2, progress=False)  # fmt: skip
    assert second.seen == [q.id for q in world.queries[3:]]  # done queries not recomputed
    for method in ("full", "half", "oracle"):
        assert _records(out, method) == _records(fresh, method)
    assert final["half"]["num_queries"] == len(world)


def test_interrupt_keeps_finished_batches(
    world: EvalDataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(world, {"half": RecordingCropper(interrupt_on_call=2)}, FakeScorer(), out,
                 batch_size=3, progress=False)  # fmt: skip
    assert [r["query_id"] for r in _records(out, "half")] == ["q0", "q1", "q2"]
    assert len(_records(out, "full")) == 6  # the full baseline of batch 2 had finished
    assert not (out / "metrics.json").exists()
    with (out / "records" / "half.jsonl").open("a") as fh:
        fh.write('{"query_id": "q3", "ranked')  # a torn line from a killed process
    again = RecordingCropper()
    with caplog.at_level("WARNING"):
        run_eval(world, {"half": again}, FakeScorer(), out, batch_size=3, progress=False)
    assert "unreadable record" in caplog.text
    assert again.seen == [q.id for q in world.queries[3:]]
    fresh = tmp_path / "fresh"
    run_eval(world, {"half": RecordingCropper()}, FakeScorer(), fresh, progress=False)
    key = "query_id"
    for method in ("full", "half"):
        got = sorted(_records(out, method), key=lambda r: r[key])
        assert got == sorted(_records(fresh, method), key=lambda r: r[key])


def test_fingerprint_mismatch_and_no_resume(world: EvalDataset, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, progress=False, limit=2)
    with pytest.raises(ConfigError, match=r"different run.*resume=False"):
        run_eval(world, {"oracle": "oracle", "fake": FakeCropper()}, FakeScorer(), out)
    cropper = RecordingCropper()
    run_eval(world, {"half": cropper}, FakeScorer(), out, progress=False, resume=False)
    assert cropper.seen == [q.id for q in world.queries]
    assert not (out / "records" / "oracle.jsonl").exists()
    assert json.loads((out / "run.json").read_text())["fingerprint"]["methods"] == [
        "full",
        "half",
    ]


def test_another_fusion_is_another_run(world: EvalDataset, tmp_path: Path) -> None:
    from region_rerank import RerankerConfig

    out = tmp_path / "run"
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, progress=False)
    fingerprint = json.loads((out / "run.json").read_text())["fingerprint"]
    assert "reranker" not in fingerprint  # the defaults add nothing: older folders resume
    with pytest.raises(ConfigError, match="different run"):
        run_eval(
            world, {"oracle": "oracle"}, FakeScorer(), out, progress=False,
            reranker_config=RerankerConfig(fusion="max"),
        )  # fmt: skip
    other = tmp_path / "max"
    run_eval(
        world, {"oracle": "oracle"}, FakeScorer(), other, progress=False,
        reranker_config=RerankerConfig(fusion="max", crop_margin=0.1),
    )  # fmt: skip
    recorded = json.loads((other / "run.json").read_text())["fingerprint"]["reranker"]
    assert recorded == {"fusion": "max", "crop_margin": 0.1}
    blend = tmp_path / "blend"
    for weight in (0.5, 0.25):  # the blend weight is part of the run: 0.5 then 0.25 differ
        config = RerankerConfig(fusion="blend", full_weight=weight)
        if weight == 0.25:
            with pytest.raises(ConfigError, match="different run"):
                run_eval(world, {"oracle": "oracle"}, FakeScorer(), blend, progress=False,
                         reranker_config=config)  # fmt: skip
            continue
        run_eval(world, {"oracle": "oracle"}, FakeScorer(), blend, progress=False,
                 reranker_config=config)  # fmt: skip
    recorded = json.loads((blend / "run.json").read_text())["fingerprint"]["reranker"]
    assert recorded == {"fusion": "blend"}  # 0.5 is the default weight
    close = tmp_path / "close"
    config = RerankerConfig(fusion="blend", close_margin=0.05, close_full_weight=0.8)
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), close, progress=False,
             reranker_config=config)  # fmt: skip
    recorded = json.loads((close / "run.json").read_text())["fingerprint"]["reranker"]
    assert recorded == {"fusion": "blend", "close_margin": 0.05, "close_full_weight": 0.8}


def test_outputs_and_nothing_written_elsewhere(world_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(world_dir, data)
    dataset = load_jsonl_dataset(data)
    before = _tree(tmp_path)
    out = tmp_path / "report"
    methods = {"oracle": "oracle", "grid half": RecordingCropper()}
    run_eval(dataset, methods, FakeScorer(), out, n_examples=5, progress=False)
    after = _tree(tmp_path)
    new = {p for p in after if p not in before}
    assert all(p.startswith("report/") for p in new)
    assert {p: after[p] for p in before} == before  # nothing outside out_dir changed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["full", "oracle", "grid half"]
    for m in metrics.values():
        assert {"R@1", "CondR@1", "coverage", "MRR", "crop_rate", "by_question_type"} <= set(m)
    table = (out / "metrics.md").read_text()
    assert all(f"| {name} |" in table for name in metrics)
    bars, grid = Image.open(out / "methods.png"), Image.open(out / "examples.png")
    assert bars.size[0] >= 400 and bars.size[1] >= 300
    assert grid.size[0] >= 4 * 250 and grid.size[1] >= 2 * 250  # 5 panels: 2 rows of 4
    stems = {p.name for p in (out / "records").iterdir()}
    assert "full.jsonl" in stems and "oracle.jsonl" in stems and len(stems) == 3


def test_examples_show_boxes_in_method_colours(world: EvalDataset, tmp_path: Path) -> None:
    from region_rerank.eval import report

    out = tmp_path / "one"
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, n_examples=0, progress=False)
    assert not (out / "examples.png").exists()
    recs = {m: {r["query_id"]: r for r in _records(out, m)} for m in ("full", "oracle")}
    path = report.plot_examples(world.queries[:1], recs, tmp_path / "ex.png", n_examples=1)
    assert path is not None
    pixels = Counter(Image.open(path).convert("RGB").getdata())
    assert pixels[(255, 127, 14)] > 20  # the oracle's box, in its tab10 colour (orange)
    full_only = report.plot_examples(
        world.queries[:1], {"full": recs["full"]}, tmp_path / "full.png", n_examples=1
    )
    assert full_only is not None
    assert Counter(Image.open(full_only).convert("RGB").getdata())[(255, 127, 14)] == 0


def test_missing_pools_error_and_build(world_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "nopools"
    shutil.copytree(world_dir, data)
    (data / "pools.jsonl").unlink()
    dataset = load_jsonl_dataset(data)
    with pytest.raises(ConfigError, match="region-rerank pools"):
        run_eval(dataset, {"oracle": "oracle"}, FakeScorer(), tmp_path / "a", progress=False)
    res = run_eval(dataset, {"oracle": "oracle"}, FakeScorer(), tmp_path / "b", progress=False,
                   build_pools_if_missing=True, pool_k=3)  # fmt: skip
    assert (tmp_path / "b" / "pools.jsonl").is_file() and res["full"]["mean_pool_size"] == 3


def test_bad_methods(world: EvalDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        run_eval(world, {"full": FakeCropper()}, FakeScorer(), tmp_path / "a")
    with pytest.raises(ConfigError, match="QueryCropper or 'oracle'"):
        run_eval(world, {"x": "grounding"}, FakeScorer(), tmp_path / "b")
    assert not list(tmp_path.iterdir())  # rejected before anything was written


def test_plots_skipped_without_matplotlib(
    world: EvalDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level("WARNING"):
        run_eval(world, {"oracle": "oracle"}, FakeScorer(), tmp_path / "r", progress=False)
    assert 'pip install "region-rerank[demo]"' in caplog.text
    assert (tmp_path / "r" / "metrics.json").is_file()
    assert not list((tmp_path / "r").glob("*.png"))


def _split_layout(world_dir: Path, root: Path) -> Path:
    """The demo world's layout: ROOT/kb.jsonl (+ KB images) and ROOT/test/queries.jsonl."""
    split = root / "test"
    shutil.copytree(world_dir, split)
    (split / "pools.jsonl").unlink()
    (split / "kb.jsonl").rename(root / "kb.jsonl")
    (root / "images").mkdir()
    for img in (split / "images").glob("kb_*.png"):
        img.rename(root / "images" / img.name)
    return root


def test_split_layout_loader(world_dir: Path, tmp_path: Path) -> None:
    root = _split_layout(world_dir, tmp_path / "w")
    data = load_eval_data(root, "test")
    assert data.name == "w/test" and len(data) == len(SCENES) and len(data.kb) == 8
    assert all(Path(e.images[0]).is_file() for e in data.kb.values())
    assert all(Path(q.image).is_file() for q in data.queries)


def test_cli_pools_then_eval(
    world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _split_layout(world_dir, tmp_path / "w")
    out = tmp_path / "report"
    argv = ["eval", "--data", str(root), "--split", "test", "--scorer", "fake", "--out", str(out)]
    argv += ["--cropper", "full", "--cropper", "oracle", "--cropper", "tm=text_match"]
    assert main(argv) == 2
    assert "region-rerank pools" in capsys.readouterr().err
    pools_argv = ["pools", "--data", str(root), "--split", "test", "--scorer", "fake", "--k", "4"]
    assert main(pools_argv) == 0
    assert "coverage 100.0%" in capsys.readouterr().out
    assert (root / "test" / "pools.jsonl").is_file()
    assert main([*argv, "--limit", "4", "--batch-size", "2"]) == 0
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = printed.split("wrote")[-2]
    assert all(f"| {m} |" in table for m in ("full", "oracle", "tm"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tm"]["num_queries"] == len(SCENES)
    assert metrics["oracle"]["CondR@1"] > metrics["full"]["CondR@1"]
    assert metrics["tm"]["crop_rate"] > 0
    assert main([*argv, "--cropper", "oracle"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main([*argv, "--no-resume", "--cropper", "extra=full", "--limit", "1"]) == 0


def test_cli_pools_custom_out(world_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p" / "pools.jsonl"
    assert main(["pools", "--data", str(world_dir), "--scorer", "fake", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(SCENES) and all(len(r["candidates"]) == 8 for r in rows)


def test_failing_cropper_and_missing_pool_degrade_per_query(
    world: EvalDataset, tmp_path: Path
) -> None:
    pools = {qid: pool for qid, pool in world.pools.items() if qid != "q0"}
    partial = EvalDataset(name=world.name, queries=world.queries, kb=world.kb, pools=pools)
    broken = FakeCropper(raises=RuntimeError("detector exploded"))
    res = run_eval(partial, {"broken": broken}, FakeScorer(), tmp_path / "r", progress=False)
    # q0 has no pool: it counts as a miss for every method.
    assert res["full"]["coverage"] == pytest.approx((len(SCENES) - 1) / len(SCENES))
    # The cropper fails on every query: each falls back to the full image (same ranking).
    assert res["broken"]["num_fallback"] == len(SCENES) and res["broken"]["crop_rate"] == 0.0
    recs = _records(tmp_path / "r", "broken")
    assert all(r["decision"]["source"] == "fallback" for r in recs)
    assert "detector exploded" in recs[1]["decision"]["reason"]
    assert [r["ranked_ids"] for r in recs] == [
        r["ranked_ids"] for r in _records(tmp_path / "r", "full")
    ]


def test_retrained_weights_under_the_same_name_are_another_run(
    world: EvalDataset, tmp_path: Path
) -> None:
    import torch

    from region_rerank.croppers.proposal import PolicyArch, ProposalPolicyCropper, build_policy_net

    arch = PolicyArch(dim=FakeScorer().embed_texts(["a"]).shape[1], scorer="fake")
    first = ProposalPolicyCropper(FakeScorer(), (build_policy_net(arch), arch))
    out = tmp_path / "run"
    run_eval(world, {"learned": first}, FakeScorer(), out, progress=False, limit=1)
    saved = json.loads((out / "run.json").read_text())["fingerprint"]["weights"]
    assert saved == {"learned": first.weights_digest()}
    run_eval(world, {"learned": first}, FakeScorer(), out, progress=False)  # same weights resume
    net = build_policy_net(arch)
    torch.nn.init.normal_(net.out.weight)
    retrained = ProposalPolicyCropper(FakeScorer(), (net, arch))
    assert retrained.weights_digest() != first.weights_digest()
    with pytest.raises(ConfigError, match="different run"):
        run_eval(world, {"learned": retrained}, FakeScorer(), out, progress=False)


def test_a_folder_from_an_older_version_is_not_resumed_silently(
    world: EvalDataset, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, progress=False, limit=1)
    saved = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**saved, "version": 1}))  # as before weights
    with pytest.raises(ConfigError, match=r"another version of region-rerank.*--no-resume"):
        run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, progress=False)
    run_eval(world, {"oracle": "oracle"}, FakeScorer(), out, progress=False, resume=False)
    assert json.loads((out / "run.json").read_text())["version"] == saved["version"]
