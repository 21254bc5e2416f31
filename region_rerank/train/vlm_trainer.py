"""r-GRPO training of a Qwen-VL crop policy with a LoRA adapter (``region-rerank train vlm``).

:func:`train_vlm_policy` loads the base model and processor, builds the training set from the
evaluation loaders and pools (frozen-scorer candidate embeddings computed once), trains with
:class:`~region_rerank.train.vlm_grpo.BalancedGRPOTrainer` and the docs/method.md reward, and
writes under ``config.output_dir`` only:

* ``adapter/`` -- the LoRA adapter: ``VLMCropper(base, adapter="OUT/adapter")``;
* ``checkpoints/`` -- TRL checkpoints every ``grpo.save_steps``;
* ``completions.jsonl`` -- every sampled answer with its step, query and reward
  (``completions.rankN.jsonl`` for the other processes of a multi-GPU run);
* ``reward_curve.png``, ``summary.json`` (per-step reward, crop rate, balance fix-ups,
  how far the trainable parameters moved) and ``config.yaml`` (the resolved settings).

Multi-GPU: ``accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m
region_rerank.cli train vlm --config cfg.yaml``; each process builds its own scorer on its
own GPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank.croppers.vlm_prompt import VLMPrompter
from region_rerank.device import from_pretrained, resolve_device_dtype
from region_rerank.errors import ModelLoadError, UnsafeWeightsError
from region_rerank.model_options import ModelOptions
from region_rerank.train.vlm_config import VLMTrainingConfig

if TYPE_CHECKING:
    import torch

__all__ = ["load_policy", "train_vlm_policy", "plot_training_log"]

logger = logging.getLogger(__name__)


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def _process_device(device: str) -> str:
    """The scorer's device in this process (``cuda:LOCAL_RANK`` under accelerate)."""
    resolved, _ = resolve_device_dtype(device, "auto")
    if str(resolved).startswith("cuda") and "LOCAL_RANK" in os.environ and device == "auto":
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return str(resolved)


def _grpo_args(cfg: VLMTrainingConfig, on_cpu: bool, bf16_ok: bool, progress: bool) -> Any:
    from trl import GRPOConfig

    g = cfg.grpo
    # transformers 5 renamed gradient_checkpointing (deprecated alias) to activation_checkpointing.
    fields = getattr(GRPOConfig, "__dataclass_fields__", {})
    key = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    ckpt: dict[str, Any] = {key: g.gradient_checkpointing}
    precision = g.precision if g.precision != "auto" else ("bf16" if bf16_ok else "fp32")
    return GRPOConfig(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"),
        num_generations=g.num_generations,
        beta=g.beta,
        epsilon=g.epsilon,
        loss_type=g.loss_type,
        scale_rewards="group" if g.scale_rewards else "none",
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=0,
        repetition_penalty=1.0,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler_type,
        warmup_steps=g.warmup_steps,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        num_train_epochs=g.num_train_epochs,
        max_steps=g.max_steps,
        steps_per_generation=g.steps_per_generation,
        num_iterations=g.num_iterations,
        mask_truncated_completions=False,
        logging_steps=g.logging_steps,
        save_strategy="steps",
        save_steps=g.save_steps,
        seed=g.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=on_cpu,
        **ckpt,
        remove_unused_columns=False,
        report_to="none",
        log_completions=False,
        use_vllm=False,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def _dump_config(cfg: VLMTrainingConfig, path: Path) -> None:
    import yaml

    values = dataclasses.asdict(cfg)
    values["reward"]["weights"] = list(values["reward"]["weights"])
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")


def plot_training_log(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Write the mean group reward and the crop rate per logged step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in log_history if "reward" in h]
    steps = [h["step"] for h in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [h["reward"] for h in rows], marker=".", label="mean reward")
    crop = [(h["step"], h["policy/crop_rate"]) for h in rows if "policy/crop_rate" in h]
    if crop:
        ax.plot(*zip(*crop), ls=":", label="crop rate of sampled answers")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("reward")
    ax.legend()
    ax.set_title(title or "r-GRPO of the VLM crop policy")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def _recording(reward_fn: Any, path: Path) -> Any:
    """``reward_fn`` that also appends ``{step, query_id, completion, reward}`` rows to
    ``path`` (JSON lines), so every reward of a run can be audited afterwards."""
    from region_rerank.train.trl_reward import completion_text

    def region_rerank_reward(
        prompts: Any = None, completions: Any = (), **kwargs: Any
    ) -> list[float | None]:
        rewards = reward_fn(prompts, completions, **kwargs)
        step = getattr(kwargs.get("trainer_state"), "global_step", None)
        ids = kwargs.get("query_id") or [None] * len(completions)
        with path.open("a", encoding="utf-8") as f:
            for qid, completion, value in zip(ids, completions, rewards):
                row = {"step": step, "query_id": qid, "completion": completion_text(completion)}
                f.write(json.dumps({**row, "reward": value}) + "\n")
        return list(rewards)

    return region_rerank_reward


def _training_rows(
    cfg: VLMTrainingConfig, prompter: VLMPrompter, scorer: Any, progress: bool
) -> tuple[Any, Any]:
    """The TRL dataset, and the KB index's embeddings when the reward weighs retrieval
    (``None`` otherwise)."""
    from region_rerank.cache import EmbeddingCache
    from region_rerank.eval.pools import kb_index
    from region_rerank.eval.runner import load_eval_data
    from region_rerank.train.data import build_reward_examples
    from region_rerank.train.vlm_data import build_vlm_dataset

    dataset = load_eval_data(cfg.data.path, cfg.data.split)
    cache = EmbeddingCache()
    index = None
    if cfg.reward.retrieval_weight > 0:
        index = kb_index(dataset, scorer, cache=cache, progress=progress)
    examples = build_reward_examples(
        dataset, scorer, pool_k=cfg.data.pool_k, progress=progress, cache=cache, index=index
    )
    if cfg.data.max_queries is not None:
        examples = examples[: cfg.data.max_queries]
    rows = build_vlm_dataset(examples, prompter)
    return rows, None if index is None else index.embeddings()


def load_policy(config: VLMTrainingConfig, *, dtype: Any = None) -> tuple[Any, Any, VLMPrompter]:
    """The processor, model and prompter of a training run.

    The processor gets the configured pixel budget (``prompt.min_pixels`` /
    ``prompt.max_pixels``), so the image size stated in the prompt, the reward's coordinate
    frame and what the model sees agree.

    Raises:
        ModelLoadError: The model or its processor cannot be loaded.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        opts = config.model_options
        processor = AutoProcessor.from_pretrained(
            config.model, trust_remote_code=opts.trust_remote_code
        )
        model = from_pretrained(
            AutoModelForImageTextToText,
            config.model,
            dtype=dtype or torch.float32,
            trust_remote_code=opts.trust_remote_code,
            allow_pickle=opts.allow_pickle,
        )
    except UnsafeWeightsError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"train vlm cannot load {config.model!r}: {exc}") from exc
    p = config.prompt
    prompter = VLMPrompter.from_processor(
        processor,
        getattr(model.config, "model_type", None),
        coord_frame=p.coord_frame,
        min_pixels=p.min_pixels,
        max_pixels=p.max_pixels,
        template=p.template,
        max_question_chars=p.max_question_chars,
    )
    if p.min_pixels or p.max_pixels:
        image_processor = processor.image_processor
        image_processor.size = {
            "shortest_edge": prompter.min_pixels,
            "longest_edge": prompter.max_pixels,
        }
        for name in ("min_pixels", "max_pixels"):
            if hasattr(image_processor, name):
                setattr(image_processor, name, getattr(prompter, name))
    return processor, model, prompter


def train_vlm_policy(config: VLMTrainingConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train the LoRA crop policy described by ``config``; return the summary (also
    written to ``{output_dir}/summary.json``).

    Raises:
        ConfigError: Invalid settings, or no usable training query.
        ImportError: The ``train`` extra is missing (``pip install "region-rerank[train]"``).
    """
    from region_rerank._optional import require

    require("trl", feature="VLM policy training")
    peft = require("peft", feature="VLM policy training")
    import torch
    from transformers import set_seed

    from region_rerank.factory import build_scorer
    from region_rerank.train.trl_reward import make_trl_reward
    from region_rerank.train.vlm_grpo import BalancedGRPOTrainer

    started = time.perf_counter()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _dump_config(config, out / "config.yaml")
    set_seed(config.grpo.seed)
    config.model_options.warn_if_remote_code("train vlm", config.model)
    device = _process_device(config.device)
    on_cpu = device == "cpu"
    bf16_ok = not on_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # bf16 weights: by default on GPUs that support it; on request anywhere (also the CPU).
    precision = config.grpo.precision
    dtype = torch.bfloat16 if (bf16_ok and precision == "auto") or precision == "bf16" else None
    processor, model, prompter = load_policy(config, dtype=dtype or torch.float32)
    scorer = build_scorer(config.scorer, model_options=ModelOptions(device=device))
    train_set, index_embeddings = _training_rows(config, prompter, scorer, progress)
    logger.info("train vlm: %d training queries, frame %s", len(train_set), prompter.frame.value)
    reward = make_trl_reward(
        scorer,
        config.reward,
        frame=prompter.frame,
        min_size=config.min_box_size,
        index_embeddings=index_embeddings,
    )
    rank = int(os.environ.get("RANK", "0"))
    log_path = out / ("completions.jsonl" if rank == 0 else f"completions.rank{rank}.jsonl")
    log_path.unlink(missing_ok=True)
    reward = _recording(reward, log_path)
    lora = peft.LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = BalancedGRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=_grpo_args(config, on_cpu, bf16_ok, progress),
        train_dataset=train_set,
        processing_class=processor,
        peft_config=lora,
        balanced=config.balanced,
        region_prefix=config.region_prefix,
    )
    before = _trainable(trainer.model)
    trainer.train()
    after = _trainable(trainer.model)
    trainer.save_model(str(out / "adapter"))
    moved = sum(float((after[n] - before[n]).norm() ** 2) for n in before) ** 0.5
    history = [h for h in trainer.state.log_history if "reward" in h]
    summary: dict[str, Any] = {
        "model": config.model,
        "family": getattr(model.config, "model_type", None),
        "frame": prompter.frame.value,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "train_queries": len(train_set),
        "steps": trainer.state.global_step,
        "trainable_parameters": sum(t.numel() for t in before.values()),
        "trainable_l2_change": moved,
        "balance": dict(trainer.balance_totals),
        "history": [
            {
                k: h[k]
                for k in ("step", "reward", "policy/crop_rate", "policy/malformed_rate", "kl")
                if k in h
            }
            for h in history
        ],
        "adapter": str(out / "adapter"),
        "seconds": time.perf_counter() - started,
    }
    if trainer.accelerator.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if history:
            plot_training_log(trainer.state.log_history, out / "reward_curve.png", config.model)
    logger.info(
        "train vlm: %d steps in %.0fs; adapter in %s",
        summary["steps"],
        summary["seconds"],
        out / "adapter",
    )
    return summary
