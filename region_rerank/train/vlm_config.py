"""Settings of ``region-rerank train vlm`` (r-GRPO of a Qwen-VL crop policy with LoRA).

Every GRPO setting the method relies on is a field here and is passed to TRL's
``GRPOConfig`` explicitly (TRL's own defaults changed across versions: ``beta`` 0.0,
``loss_type`` ``"dapo"``, ``scale_rewards`` ``"group"``). The defaults are the reference
hyper-parameters of docs/method.md section 4, with the paper's decision-balanced groups.

A YAML file maps onto :class:`VLMTrainingConfig`; unknown keys are errors::

    model: Qwen/Qwen2.5-VL-3B-Instruct
    output_dir: out/vlm_policy
    data: {path: out/world, split: train, pool_k: 20}
    scorer: clip:openai/clip-vit-large-patch14
    lora: {r: 8, alpha: 32, dropout: 0.1}
    grpo: {num_generations: 8, beta: 0.1, max_completion_length: 256}
    reward: {use_margin: true}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from region_rerank._validate import check_choice, check_int, check_range
from region_rerank.croppers.vlm import DEFAULT_MODEL
from region_rerank.errors import ConfigError
from region_rerank.model_options import ModelOptions
from region_rerank.train.rewards import RewardConfig

__all__ = [
    "DataSection",
    "LoraSection",
    "GRPOSection",
    "PromptSection",
    "VLMTrainingConfig",
    "load_vlm_training_config",
]

#: TRL loss aggregations accepted by ``grpo.loss_type``.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")


@dataclass(frozen=True)
class DataSection:
    """Where the training queries come from.

    Attributes:
        path: A dataset in the generic JSONL layout (``region-rerank bench make`` writes
            one; E-VQA / InfoSeek convert to it), or its root when ``split`` is set.
        split: Sub-folder to load (``None``: ``path`` itself).
        pool_k: Pool size when the split has no ``pools.jsonl`` (built with the scorer).
        max_queries: Keep at most this many trainable queries (``None``: all).
    """

    path: str = "out/world"
    split: str | None = "train"
    pool_k: int = 20
    max_queries: int | None = None

    def __post_init__(self) -> None:
        check_int("data.pool_k", self.pool_k, 1)
        if self.max_queries is not None:
            check_int("data.max_queries", self.max_queries, 1)


@dataclass(frozen=True)
class LoraSection:
    """The peft LoRA adapter (defaults: r 8, alpha 32, dropout 0.1, all linear layers)."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        check_int("lora.r", self.r, 1)
        check_int("lora.alpha", self.alpha, 1)
        check_range("lora.dropout", self.dropout, 0.0, 1.0, high_inclusive=False)


@dataclass(frozen=True)
class GRPOSection:
    """The GRPO settings, each passed to ``trl.GRPOConfig`` explicitly.

    Attributes:
        num_generations: Group size ``N`` (paper 8, reference code 4).
        beta: KL weight to the reference policy (the base model without the adapter).
        epsilon: PPO clipping range.
        loss_type: TRL's token aggregation: ``"grpo"`` (per-sequence mean, the original
            GRPO), ``"dr_grpo"``, ``"dapo"`` or ``"bnpo"``.
        scale_rewards: Divide advantages by the group std (the reference does not).
        max_completion_length: Generated tokens per answer (reference: 256).
        temperature, top_p: Sampling of the group's answers.
        learning_rate, lr_scheduler_type, warmup_steps: Optimiser schedule.
        per_device_train_batch_size: *Completions* per device per step (TRL counts
            completions: 8 with ``num_generations`` 8 is one query per step).
        gradient_accumulation_steps, num_train_epochs, max_steps: Length of training
            (``max_steps`` > 0 overrides the epochs).
        steps_per_generation: Optimiser steps per generation batch (``None``: the
            gradient-accumulation steps, TRL's default).
        num_iterations: PPO epochs over each generation batch.
        logging_steps, save_steps: Logging and checkpoint cadence (steps).
        seed: Seed of TRL, sampling and the balance fix-ups.
        precision: ``"auto"`` (bf16 on a GPU that supports it, else fp32), ``"bf16"``,
            ``"fp16"`` or ``"fp32"``.
        gradient_checkpointing: Trade compute for memory on large models.
    """

    num_generations: int = 8
    beta: float = 0.1
    epsilon: float = 0.2
    loss_type: str = "grpo"
    scale_rewards: bool = False
    max_completion_length: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 50
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 2.0
    max_steps: int = -1
    steps_per_generation: int | None = None
    num_iterations: int = 1
    logging_steps: int = 1
    save_steps: int = 500
    seed: int = 0
    precision: str = "auto"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_int("grpo.num_generations", self.num_generations, 2)
        check_range("grpo.beta", self.beta, 0.0)
        check_range("grpo.epsilon", self.epsilon, 0.0, low_inclusive=False)
        check_choice("grpo.loss_type", self.loss_type, LOSS_TYPES)
        check_int("grpo.max_completion_length", self.max_completion_length, 1)
        check_range("grpo.temperature", self.temperature, 0.0, low_inclusive=False)
        check_range("grpo.top_p", self.top_p, 0.0, 1.0, low_inclusive=False)
        check_range("grpo.learning_rate", self.learning_rate, 0.0, low_inclusive=False)
        for name in ("warmup_steps", "logging_steps", "save_steps", "seed"):
            check_int(f"grpo.{name}", getattr(self, name), 0)
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            check_int(f"grpo.{name}", getattr(self, name), 1)
        check_int("grpo.num_iterations", self.num_iterations, 1)
        check_int("grpo.max_steps", self.max_steps, -1)
        check_range("grpo.num_train_epochs", self.num_train_epochs, 0.0, low_inclusive=False)
        if self.steps_per_generation is not None:
            check_int("grpo.steps_per_generation", self.steps_per_generation, 1)
        check_choice("grpo.precision", self.precision, ("auto", "bf16", "fp16", "fp32"))

    @property
    def generation_rows_per_device(self) -> int:
        """Completions each device generates at once (TRL's per-process generation batch)."""
        return self.per_device_train_batch_size * (
            self.steps_per_generation or self.gradient_accumulation_steps
        )


@dataclass(frozen=True)
class PromptSection:
    """The policy's instruction (must match what the cropper uses at inference; the
    defaults are :class:`~region_rerank.croppers.vlm.VLMCropperConfig`'s)."""

    template: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_question_chars: int = 2000
    coord_frame: str = "auto"


@dataclass(frozen=True)
class VLMTrainingConfig:
    """Everything ``region-rerank train vlm`` needs.

    Attributes:
        model: Hub id or local folder of the base Qwen-VL model.
        output_dir: Checkpoints, the final adapter (``{output_dir}/adapter``), the reward
            curve and ``summary.json``. Nothing is written elsewhere.
        scorer: Spec of the frozen scorer whose rankings define the reward
            (:func:`region_rerank.factory.build_scorer`).
        balanced: Decision-balanced groups (paper); ``False`` is the reference code.
        region_prefix: Tokens forced at the start of a REGION answer when a group has none.
        min_box_size: Boxes narrower/shorter than this (pixels) are malformed.
        trust_remote_code: Passed to ``from_pretrained`` (off; warns when on).
        allow_pickle: Also accept pickled base-model weights (off: safetensors only).
        device: ``"auto"`` or a torch device for the model and scorer (CPU forces
            TRL's ``use_cpu``).
        (``trust_remote_code``, ``allow_pickle`` and ``device`` are the base model's
        :class:`~region_rerank.model_options.ModelOptions`, :attr:`model_options`; the
        weights' dtype follows ``grpo.precision``.)
        data, lora, grpo, reward, prompt: The sections above.
    """

    model: str = DEFAULT_MODEL
    output_dir: str = "out/vlm_policy"
    scorer: str = "clip"
    balanced: bool = True
    region_prefix: str = "<tool_call>"
    min_box_size: float = 1.0
    trust_remote_code: bool = False
    allow_pickle: bool = False
    device: str = "auto"
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    reward: RewardConfig = field(default_factory=RewardConfig)
    prompt: PromptSection = field(default_factory=PromptSection)

    @property
    def model_options(self) -> ModelOptions:
        """How the base model loads (its dtype follows ``grpo.precision``)."""
        return ModelOptions(
            device=self.device,
            allow_pickle=self.allow_pickle,
            trust_remote_code=self.trust_remote_code,
        )

    def __post_init__(self) -> None:
        if not self.region_prefix.strip():
            raise ConfigError("region_prefix must be non-empty text (e.g. '<tool_call>')")
        check_range("min_box_size", self.min_box_size, 0.0)
        rows, n = self.grpo.generation_rows_per_device, self.grpo.num_generations
        if self.balanced and rows % n:
            raise ConfigError(
                f"decision-balanced groups need whole groups on each device: "
                f"per_device_train_batch_size x steps_per_generation = {rows} is not a multiple "
                f"of num_generations = {n}"
            )


_SECTIONS: dict[str, type] = {
    "data": DataSection,
    "lora": LoraSection,
    "grpo": GRPOSection,
    "reward": RewardConfig,
    "prompt": PromptSection,
}


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")
    kwargs = dict(values)
    if cls is VLMTrainingConfig:
        for name, section in _SECTIONS.items():
            if name in kwargs:
                kwargs[name] = _build(section, kwargs[name], name)
    if cls is RewardConfig and "weights" in kwargs:
        kwargs["weights"] = tuple(kwargs["weights"])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad value in {where}: {exc}") from exc


def load_vlm_training_config(path: str | os.PathLike[str], **overrides: Any) -> VLMTrainingConfig:
    """Read a YAML file into :class:`VLMTrainingConfig`; ``overrides`` replace top-level
    keys (``None`` values are ignored). Relative ``data.path`` / ``output_dir`` /
    ``model`` paths are kept as given (resolved against the working directory).

    Raises:
        FileNotFoundError: No such file.
        ConfigError: Not a mapping, an unknown key or an invalid value.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(VLMTrainingConfig, values, str(path))
