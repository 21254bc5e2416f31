"""``train vlm`` settings: YAML loading, strict keys, the shipped configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from region_rerank.errors import ConfigError
from region_rerank.train.rewards import RewardConfig
from region_rerank.train.vlm_config import (
    GRPOSection,
    VLMTrainingConfig,
    load_vlm_training_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_the_reference_setup() -> None:
    cfg = load_vlm_training_config(ROOT / "configs" / "train_vlm.yaml")
    g = cfg.grpo
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 32, 0.1)
    assert cfg.lora.target_modules == "all-linear"
    assert (g.beta, g.loss_type, g.scale_rewards, g.max_completion_length) == (
        0.1,
        "grpo",
        False,
        256,
    )
    assert (g.learning_rate, g.lr_scheduler_type, g.warmup_steps) == (5e-5, "cosine", 50)
    assert cfg.reward == RewardConfig() and cfg.balanced is True
    # Every field of every section is written out: nothing silently falls back to a default.
    text = (ROOT / "configs" / "train_vlm.yaml").read_text()
    for section in (cfg.grpo, cfg.lora, cfg.reward, cfg.data, cfg.prompt):
        for f in dataclasses.fields(section):
            assert f"{f.name}:" in text, f.name


def test_accelerate_config_loads_with_accelerate() -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate" / "multi_gpu.yaml"))
    assert cfg.distributed_type.value == "MULTI_GPU" and cfg.mixed_precision == "bf16"


def test_yaml_roundtrip_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: m\ngrpo: {num_generations: 4, per_device_train_batch_size: 4}\n"
        "reward: {weights: [1, 0, 0, 0], use_margin: false}\n"
    )
    cfg = load_vlm_training_config(path, output_dir="elsewhere", model=None)
    assert cfg.model == "m" and cfg.output_dir == "elsewhere"
    assert cfg.reward.weights == (1.0, 0.0, 0.0, 0.0) and cfg.reward.use_margin is False


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("modle: x\n", "unknown key"),
        ("grpo: {betta: 0.1}\n", "unknown key"),
        ("grpo: {loss_type: ppo}\n", "loss_type"),
        ("grpo: {num_generations: 1}\n", "num_generations"),
        ("lora: 3\n", "must be a mapping"),
        ("- a\n- b\n", "top level"),
        ("grpo: {beta: [\n", "not valid YAML"),
        ("reward: {floor: 1}\n", "floor"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_vlm_training_config(path)


def test_balanced_groups_must_fit_on_one_device() -> None:
    grpo = GRPOSection(num_generations=8, per_device_train_batch_size=4)
    with pytest.raises(ConfigError, match="whole groups"):
        VLMTrainingConfig(grpo=grpo)
    assert VLMTrainingConfig(grpo=grpo, balanced=False).balanced is False
    spg = GRPOSection(num_generations=8, per_device_train_batch_size=4, steps_per_generation=2)
    assert VLMTrainingConfig(grpo=spg).grpo.generation_rows_per_device == 8
