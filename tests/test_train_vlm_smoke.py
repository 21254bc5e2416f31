"""``region-rerank train vlm`` end to end on tiny random Qwen2.5-VL and Qwen3-VL checkpoints
(built from configs, loaded from folders), the demo world and the real demo scorer, on CPU:
TRL's GRPOTrainer with a peft LoRA, three optimiser steps per family.

Checked: every logged reward equals the reward recomputed here from the scorer's rankings;
every group holds both decisions; the LoRA weights moved; the saved adapter loads into
``VLMCropper(base, adapter=...)``, changes the model's output and produces decisions; the run
writes only under its output folder.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch

from region_rerank.cli import main
from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
from region_rerank.croppers.vlm_output import decision_from_output, parse_policy_output
from region_rerank.demo.world import make_world
from region_rerank.eval.runner import load_eval_data
from region_rerank.factory import build_scorer
from region_rerank.images import load_image
from region_rerank.model_options import ModelOptions
from region_rerank.train.data import build_reward_examples
from region_rerank.train.rewards import region_reward
from region_rerank.types import Query
from tests.tiny.qwen import build_tiny_qwen

pytestmark = pytest.mark.slow

TEMPLATE = "Crop for: {question}"
STEPS, GROUP, QUERIES, POOL = 3, 4, 4, 8
CONFIG = """\
model: {model}
output_dir: {out}
scorer: demo
device: cpu
data: {{path: {world}, split: train, pool_k: {pool}, max_queries: {queries}}}
lora: {{r: 4, alpha: 16, dropout: 0.0}}
grpo:
  num_generations: {group}
  per_device_train_batch_size: {group}
  max_steps: {steps}
  max_completion_length: 20
  learning_rate: 1.0e-3
  warmup_steps: 0
  save_steps: 1000
prompt: {{template: "{template}"}}
"""


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _write_config(folder: Path, model: Path, world: Path, steps: int) -> Path:
    """The smoke-run YAML in ``folder`` (output under ``folder/out``)."""
    cfg = folder / "cfg.yaml"
    text = CONFIG.format(
        model=model,
        out=folder / "out",
        world=world,
        pool=POOL,
        queries=QUERIES,
        group=GROUP,
        steps=steps,
        template=TEMPLATE,
    )
    cfg.write_text(text)
    return cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vlm_world")
    make_world(root, seed=0, n_train=6, n_val=0, n_test=0, n_entities=24)
    return root


@pytest.fixture(scope="module")
def scorer() -> Any:
    return build_scorer("demo", model_options=ModelOptions(device="cpu"))


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def run(
    request: pytest.FixtureRequest, world: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    family = request.param
    base = tmp_path_factory.mktemp(f"train_{family}")
    model = build_tiny_qwen(family, base / "model")
    cfg = _write_config(base, model, world, STEPS)
    before = _files(base)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("HF_HOME", str(base / "hf_home"))
        rc = main(["train", "vlm", "--config", str(cfg), "--no-progress"])
    out = base / "out"
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    return {
        "family": family,
        "rc": rc,
        "base": base,
        "model": model,
        "out": out,
        "new_files": _files(base) - before,
        "summary": json.loads((out / "summary.json").read_text()),
        "records": records,
    }


def test_run_writes_adapter_curve_and_summary_only_under_out(run: dict[str, Any]) -> None:
    assert run["rc"] == 0
    out_rel = run["out"].relative_to(run["base"])
    assert run["new_files"], "the run wrote nothing"
    assert all(p.parts[0] == out_rel.name for p in run["new_files"]), sorted(run["new_files"])
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "reward_curve.png",
        "summary.json",
        "config.yaml",
        "completions.jsonl",
    ):
        assert (run["out"] / name).is_file(), name
    s = run["summary"]
    assert s["family"] == run["family"] and s["steps"] == STEPS
    assert len(s["history"]) == STEPS and all("reward" in h for h in s["history"])


def test_trainable_lora_parameters_changed(run: dict[str, Any]) -> None:
    s = run["summary"]
    assert s["trainable_l2_change"] > 1e-4
    assert 0 < s["trainable_parameters"] < 200_000  # the adapter only, not the model


def test_every_group_holds_both_decisions(run: dict[str, Any]) -> None:
    groups: dict[tuple[int, str], list[bool]] = defaultdict(list)
    for r in run["records"]:
        groups[(r["step"], r["query_id"])].append(parse_policy_output(r["completion"]).wants_crop)
    assert len(run["records"]) == STEPS * GROUP
    assert all(len(g) == GROUP and set(g) == {True, False} for g in groups.values()), groups
    assert run["summary"]["balance"]["groups"] == STEPS


def test_rewards_are_computed_from_real_rankings(
    run: dict[str, Any], world: Path, scorer: Any
) -> None:
    examples = build_reward_examples(
        load_eval_data(world, "train"), scorer, pool_k=POOL, progress=False
    )[:QUERIES]
    by_id = {e.query_id: e for e in examples}
    cropper_frame = run["summary"]["frame"]
    seen_full = set()
    for r in run["records"]:
        ex = by_id[r["query_id"]]
        text = r["completion"]
        flags = list(ex.is_positive)
        full = list(ex.full_scores)
        if not parse_policy_output(text).wants_crop:
            first = sorted(range(len(full)), key=lambda i: -full[i])[0]
            expected = 1.0 if flags[first] else 0.0
            seen_full.add(expected)
        else:
            image = load_image(ex.image)
            decision = decision_from_output(text, image.size, cropper_frame, None, min_size=1.0)
            if cropper_frame == "qwen25_resized" or not decision.is_crop:
                # The tiny random policy never writes a usable box after the forced opening.
                assert not decision.is_crop
                expected = -1.0
            else:  # pragma: no cover - depends on the random policy's samples
                crop = image.crop(tuple(int(v) for v in decision.box.as_tuple()))
                crop_scores = scorer.score(scorer.embed_images([crop]), ex.candidate_embeddings)[0]
                expected = region_reward(full, crop_scores.tolist(), flags)
        assert r["reward"] == pytest.approx(expected, abs=1e-6), r
    # The four queries include one the full image already gets right and one it does not,
    # so a constant FULL reward would fail the comparison above.
    assert seen_full == {0.0, 1.0}


def test_adapter_reloads_into_vlmcropper_and_decides(run: dict[str, Any], world: Path) -> None:
    cfg = VLMCropperConfig(max_new_tokens=12, prompt_template=TEMPLATE)
    cropper = VLMCropper(str(run["model"]), adapter=str(run["out"] / "adapter"), config=cfg)
    lora = sum(p.numel() for n, p in cropper.model.named_parameters() if "lora_" in n)
    assert lora == run["summary"]["trainable_parameters"]
    queries = [
        Query(str(world / "train" / json.loads(line)["image"]), json.loads(line)["question"])
        for line in (world / "train" / "queries.jsonl").read_text().splitlines()[:2]
    ]
    decisions = cropper.decide_batch(queries)
    assert len(decisions) == 2 and all(d.raw_output is not None for d in decisions)
    # The trained adapter changes the policy: logits with and without it differ.
    inputs = cropper.processor(
        text=[
            cropper.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
        ],
        images=[load_image(queries[0].image)],
        return_tensors="pt",
    )
    with torch.inference_mode():
        tuned = cropper.model(**inputs).logits
        with cropper.model.disable_adapter():
            plain = cropper.model(**inputs).logits
    assert not torch.allclose(tuned, plain)
    assert os.path.isfile(run["out"] / "adapter" / "adapter_model.safetensors")


def test_two_processes_keep_whole_balanced_groups(world: Path, tmp_path: Path) -> None:
    """The launch ``accelerate launch`` performs for multi-GPU (torchrun, one process per
    device), here with 2 CPU processes on gloo: each process trains on its own queries and
    balances its own groups."""
    import socket
    import subprocess
    import sys

    model = build_tiny_qwen("qwen2_5_vl", tmp_path / "model")
    cfg = _write_config(tmp_path, model, world, 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        port,
    ]
    cmd = [
        *torchrun,
        "-m",
        "region_rerank.cli",
        "train",
        "vlm",
        "--config",
        str(cfg),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen: list[set[str]] = []
    for name in ("completions.jsonl", "completions.rank1.jsonl"):
        groups: dict[tuple[int, str], list[bool]] = defaultdict(list)
        for line in (tmp_path / "out" / name).read_text().splitlines():
            r = json.loads(line)
            groups[(r["step"], r["query_id"])].append(
                parse_policy_output(r["completion"]).wants_crop
            )
        assert len(groups) == 2 and all(
            len(g) == GROUP and set(g) == {True, False} for g in groups.values()
        )
        seen.append({q for _, q in groups})
    assert not seen[0] & seen[1]  # the processes trained on different queries
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 2
