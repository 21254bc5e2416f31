"""The r-GRPO reward as a TRL reward function (VLM policies): parse each completion into
a decision, embed the crop with the frozen scorer and reward it
(:mod:`region_rerank.train.rewards`), optionally mixed with the whole-index reward
(:mod:`region_rerank.train.index_reward`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from region_rerank.boxes import CoordFrame
from region_rerank.errors import ConfigError
from region_rerank.train.index_reward import index_stats, stats_rows
from region_rerank.train.rewards import (
    RewardConfig,
    action_rewards,
    combine_rewards,
    full_reward,
    malformed_reward,
    region_reward,
)

if TYPE_CHECKING:
    import torch

    from region_rerank.images import ImageLoadOptions
    from region_rerank.scorers.base import Scorer

__all__ = ["completion_text", "make_trl_reward"]


def _tool_call_text(calls: Any) -> str:
    """Parsed tool calls (``[{"function": {"name", "arguments"}}]``) back in the policy's
    ``<tool_call>`` text format, for tokenizers whose response parser splits them out."""
    import json

    out = []
    for call in calls if isinstance(calls, Sequence) else ():
        fn = call.get("function", call) if isinstance(call, dict) else None
        if isinstance(fn, dict):
            payload = {"name": fn.get("name"), "arguments": fn.get("arguments")}
            out.append(f"<tool_call>{json.dumps(payload, default=str)}</tool_call>")
    return "".join(out)


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversation (last message's content plus
    its parsed ``tool_calls``, if any)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        content = last.get("content", "") if isinstance(last, dict) else last
        calls = _tool_call_text(last.get("tool_calls")) if isinstance(last, dict) else ""
        if isinstance(content, str) or content is None:
            return (content or "") + calls
        if isinstance(content, Sequence):
            text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return text + calls
    return "" if completion is None else str(completion)


def _per_sample(kwargs: dict[str, Any], name: str, n: int, required: bool = True) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        if required:
            raise ConfigError(f"the region reward needs the per-sample column {name!r}")
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ConfigError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def make_trl_reward(
    scorer: Scorer,
    config: RewardConfig | None = None,
    *,
    frame: CoordFrame | str = CoordFrame.NORM_1000,
    image_options: ImageLoadOptions | None = None,
    min_size: float = 1.0,
    batch_size: int = 32,
    index_embeddings: Any = None,
) -> Callable[..., list[float | None]]:
    """A TRL reward function ``fn(prompts, completions, **kwargs) -> list[float | None]``.

    Each completion is parsed with
    :func:`~region_rerank.croppers.vlm_output.decision_from_output`; a crop is embedded
    by ``scorer`` (the frozen bi-encoder, device crop path) and scored against the sample's
    precomputed candidate embeddings. Per-sample dataset columns (TRL passes them as
    keyword lists):

    * ``image`` -- the query image (any :data:`~region_rerank.types.ImageLike`);
    * ``candidate_embeddings`` -- the pool's ``K x D`` embeddings (tensor / array / lists);
    * ``is_positive`` -- ``K`` relevance flags;
    * ``full_scores`` (optional) -- the pool's ``K`` full-image scores, else computed;
    * ``resized_size`` (optional) -- ``(width, height)`` of the model input, for
      :attr:`~region_rerank.boxes.CoordFrame.QWEN25_RESIZED`;
    * ``index_positive`` (with ``config.retrieval_weight > 0``) -- the positives' rows of
      ``index_embeddings``.

    Build these columns with :func:`region_rerank.train.data.build_reward_examples`.
    With ``retrieval_weight > 0`` the reward mixes in the whole-index reward of the sample's
    view against the full image's search (``index_embeddings``: the ``N x D`` embeddings of
    the KB index); a sample whose pool misses every positive gets the index reward alone.
    Samples with no reward defined get ``None``.

    Raises:
        ConfigError: ``retrieval_weight > 0`` without ``index_embeddings``.
    """
    import torch

    from region_rerank.croppers.vlm_output import decision_from_output, parse_policy_output
    from region_rerank.images import load_image
    from region_rerank.views import embed_views

    cfg = config or RewardConfig()
    coord_frame = CoordFrame(frame)
    retrieval = cfg.retrieval_weight > 0
    if retrieval and index_embeddings is None:
        raise ConfigError("retrieval_weight > 0 needs index_embeddings (the KB index's matrix)")
    index_emb = torch.as_tensor(
        index_embeddings if retrieval else torch.zeros(0, 1), dtype=torch.float32
    )

    def index_reward(kind: str, view_emb: torch.Tensor, cols: Sequence[int]) -> float:
        if kind == "bad":
            return malformed_reward(cfg)
        # rows: the full image, then the crop when there is one (the last action's reward)
        rows = stats_rows(index_stats(scorer.score(view_emb, index_emb).float().cpu(), cols))
        return action_rewards(rows, cfg)[-1]

    def region_rerank_reward(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float | None]:
        n = len(completions)
        images = _per_sample(kwargs, "image", n)
        embs = _per_sample(kwargs, "candidate_embeddings", n)
        flags = _per_sample(kwargs, "is_positive", n)
        given_full = _per_sample(kwargs, "full_scores", n, required=False)
        resized = _per_sample(kwargs, "resized_size", n, required=False)
        index_pos = _per_sample(kwargs, "index_positive", n, required=retrieval)
        decoded = [load_image(img, image_options) for img in images]
        kinds: list[str] = []
        views: list[list[Any]] = []
        for i, completion in enumerate(completions):
            text = completion_text(completion)
            parsed = parse_policy_output(text)
            rs = tuple(resized[i]) if resized[i] is not None else None
            decision = decision_from_output(
                text, decoded[i].size, coord_frame, rs, min_size=min_size, source="trl"
            )
            kind = "full" if not parsed.wants_crop else ("crop" if decision.is_crop else "bad")
            kinds.append(kind)
            with_full = given_full[i] is None or retrieval
            sample_views: list[Any] = [None] if with_full else []
            if kind == "crop":
                sample_views.append(decision.box)
            views.append(sample_views)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and n:
            log_metric("policy/crop_rate", sum(k != "full" for k in kinds) / n)
            log_metric("policy/malformed_rate", kinds.count("bad") / n)
        view_emb = embed_views(scorer, decoded, views, batch_size=batch_size)
        out: list[float | None] = []
        for i, kind in enumerate(kinds):
            pos = [bool(p) for p in flags[i]]
            cols = list(index_pos[i] or ()) if retrieval else []
            if retrieval and not cols:
                out.append(None)  # no indexed positive: no reward defined
                continue
            pool: float | None = None
            if any(pos):
                cands = torch.as_tensor(embs[i], dtype=torch.float32)
                rows = scorer.score(view_emb[i], cands).float().cpu().tolist() if views[i] else []
                full = list(given_full[i]) if given_full[i] is not None else rows[0]
                if kind == "full":
                    pool = full_reward(full, pos, cfg)
                elif kind == "bad":
                    pool = malformed_reward(cfg)
                else:
                    pool = region_reward(full, rows[-1], pos, cfg)
            index = index_reward(kind, view_emb[i], cols) if retrieval else None
            out.append(combine_rewards(pool, index, cfg))
        return out

    return region_rerank_reward
