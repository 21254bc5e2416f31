"""TRL's ``GRPOTrainer`` with decision-balanced groups wired into generation.

:class:`BalancedGRPOTrainer` lets TRL sample each group, then applies
:func:`region_rerank.train.balance.plan_balance`: a group without FULL gets the FULL answer
in one slot, a group without REGION gets one answer re-sampled from the policy with the
REGION opening forced. Log-probabilities, advantages, clipping and the KL term are TRL's,
computed on the final answers. Forced answers are counted in the logged metrics
``balance/forced_full`` and ``balance/forced_region`` (fraction of groups per batch).

Constraints (checked at construction): transformers generation (not vLLM or continuous
batching), no tools, and one image per prompt for Qwen-VL-style processors (``pixel_values``
split by ``image_grid_thw``). Whole groups must sit on each process; see
:attr:`region_rerank.train.vlm_config.VLMTrainingConfig.balanced`.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
from trl import GRPOTrainer

from region_rerank.croppers.vlm_output import NO_CROP_TOKEN
from region_rerank.errors import ConfigError
from region_rerank.train.balance import answer_kind, plan_balance

__all__ = ["BalancedGRPOTrainer", "slice_multimodal_rows"]

logger = logging.getLogger(__name__)


def slice_multimodal_rows(
    fields: dict[str, Any], rows: list[int], n_rows: int, extra_tokens: int
) -> dict[str, Any]:
    """The processor outputs of ``rows`` only, from a batch of ``n_rows`` one-image prompts.

    ``pixel_values`` (patches of all images stacked) is cut by ``image_grid_thw``; other
    per-prompt tensors are indexed; per-token lists (``mm_token_type_ids``) are extended by
    ``extra_tokens`` text positions (type 0) for the forced prefix.

    Raises:
        ConfigError: No ``image_grid_thw``, not one image per prompt, or a field of unknown
            layout.
    """
    grid = fields.get("image_grid_thw")
    if grid is None or len(grid) != n_rows:
        raise ConfigError(
            "decision-balanced sampling needs exactly one image per prompt and a Qwen-VL "
            "processor (image_grid_thw); set balanced: false for other models"
        )
    grid_t = torch.as_tensor(grid)
    ends = torch.cumsum(grid_t.prod(-1), 0).tolist()
    starts = [0, *ends[:-1]]
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "pixel_values":
            pv = torch.as_tensor(value)
            out[key] = torch.cat([pv[starts[r] : ends[r]] for r in rows])
        elif (
            isinstance(value, list)
            and len(value) == n_rows
            and all(isinstance(v, list) for v in value)
        ):
            out[key] = [list(value[r]) + [0] * extra_tokens for r in rows]
        elif hasattr(value, "__len__") and len(value) == n_rows:
            out[key] = torch.as_tensor(value)[rows]
        else:
            raise ConfigError(f"cannot split the processor field {key!r} per prompt")
    return out


class BalancedGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose training groups always hold both FULL and REGION answers.

    Args:
        *args, **kwargs: Passed to ``trl.GRPOTrainer``.
        balanced: Apply the fix-ups (``False``: plain TRL sampling, the reference code).
        region_prefix: Text forced at the start of a re-sampled REGION answer.

    Raises:
        ConfigError: Balanced sampling with vLLM, continuous batching or tools.
    """

    def __init__(
        self, *args: Any, balanced: bool = True, region_prefix: str = "<tool_call>", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.balanced = balanced
        if balanced and (self.use_vllm or self.use_transformers_continuous_batching or self.tools):
            raise ConfigError(
                "decision-balanced sampling supports transformers generation without tools "
                "(use_vllm / continuous batching / tools are on)"
            )
        tok = self._tokenizer
        self._prefix_ids: list[int] = tok.encode(region_prefix, add_special_tokens=False)
        if not self._prefix_ids or not self.eos_token_ids:
            raise ConfigError(
                "region_prefix must tokenize to at least one token and an EOS must exist"
            )
        self._full_ids: list[int] = [
            *tok.encode(NO_CROP_TOKEN, add_special_tokens=False),
            self.eos_token_ids[0],
        ]
        self._balance_rng = random.Random(self.args.seed)
        self.balance_totals = {"groups": 0, "forced_full": 0, "forced_region": 0}

    def _generate_single_turn(
        self,
        prompt_ids: list[list[int]],
        images: Any,
        multimodal_fields: dict[str, Any],
        num_generations: int,
        has_tool_images: bool = False,
    ) -> tuple[list[list[int]], Any]:
        completion_ids, logprobs = super()._generate_single_turn(
            prompt_ids, images, multimodal_fields, num_generations, has_tool_images
        )
        if not (self.balanced and self.model is not None and self.model.training):
            return completion_ids, logprobs
        n = int(self.num_generations or 0)
        for start in range(0, len(prompt_ids), n):
            if any(prompt_ids[i] != prompt_ids[start] for i in range(start, start + n)):
                raise RuntimeError("TRL did not lay groups out contiguously; cannot balance them")
        texts = self._tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        plan = plan_balance([answer_kind(t) for t in texts], n, self._balance_rng)
        completion_ids = [list(c) for c in completion_ids]
        for row in plan.to_full:
            completion_ids[row] = list(self._full_ids)
        if plan.to_region:
            rows = list(plan.to_region)
            forced_prompts = [list(prompt_ids[r]) + self._prefix_ids for r in rows]
            fields = slice_multimodal_rows(
                multimodal_fields, rows, len(prompt_ids), len(self._prefix_ids)
            )
            continued, _ = super()._generate_single_turn(forced_prompts, None, fields, 1)
            limit = self.max_completion_length
            for row, tail in zip(rows, continued):
                completion_ids[row] = (self._prefix_ids + list(tail))[:limit]
        groups = len(prompt_ids) // n
        self.balance_totals["groups"] += groups
        self.balance_totals["forced_full"] += len(plan.to_full)
        self.balance_totals["forced_region"] += len(plan.to_region)
        metrics = self._metrics["train"]
        metrics["balance/forced_full"].append(len(plan.to_full) / groups)
        metrics["balance/forced_region"].append(len(plan.to_region) / groups)
        return completion_ids, logprobs
