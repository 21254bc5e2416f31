"""r-GRPO for the light proposal policy, in a compact loop of our own (it is not a
language model, so TRL's trainer does not apply).

Per batch of queries: the current policy's action probabilities give a decision-balanced
group of ``N`` actions per query (:func:`~region_rerank.train.sampling.sample_groups`),
each action is rewarded from the *real* rankings of the query's pool (the table computed
once by :meth:`~region_rerank.train.policy_set.PolicyTrainingSet.reward_table`: the frozen
scorer's view and candidate embeddings make every reward a matrix product), advantages are
group-relative (not divided by the std by default), and a few inner epochs minimise the
PPO-clipped surrogate plus ``beta`` times the k3 KL estimate to a frozen reference policy.
For a policy trained from scratch the reference is the initial (uniform) policy, so the KL
term acts as an entropy-like regulariser. The epoch with the best validation reward
(greedy decisions; ``select_by``) is kept.

Example:
    >>> cfg = ProposalTrainingConfig(epochs=5)
    >>> result = train_policy(train_set, val_set, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_choice, check_int, check_range
from region_rerank.croppers.proposal import build_policy_net
from region_rerank.train.rewards import RewardConfig
from region_rerank.train.sampling import GroupSamplingConfig, group_advantages, sample_groups

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from region_rerank.train.policy_set import PolicyTrainingSet
    from region_rerank.train.wordings import QuestionWordings

__all__ = [
    "ProposalTrainingConfig",
    "TrainResult",
    "evaluate_policy",
    "train_policy",
    "plot_reward_curve",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProposalTrainingConfig:
    """Settings of :func:`train_policy`.

    Attributes:
        epochs: Passes over the training queries.
        batch_queries: Queries per update batch.
        sampling: Group size, balanced groups, advantage scaling.
        clip_eps: PPO ratio clip.
        inner_epochs: Optimisation passes over each sampled batch.
        beta: KL coefficient to the reference policy (reference code: 0.1).
        lr: Peak AdamW learning rate (linear warm-up, then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_steps: Warm-up steps.
        max_grad_norm: Gradient clipping.
        max_seconds: Stop after this many seconds of training (``None``: no limit).
        seed: Seeds the initialisation and the sampling.
        reward: The reward settings.
        select_by: Validation metric that picks the kept epoch: ``"reward"`` (the
            objective being optimised, greedy decisions) or ``"cond_r1"``; the other breaks
            ties.
    """

    epochs: int = 40
    batch_queries: int = 64
    sampling: GroupSamplingConfig = field(default_factory=GroupSamplingConfig)
    clip_eps: float = 0.2
    inner_epochs: int = 2
    beta: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    max_grad_norm: float = 1.0
    max_seconds: float | None = None
    seed: int = 0
    reward: RewardConfig = field(default_factory=RewardConfig)
    select_by: str = "reward"

    def __post_init__(self) -> None:
        check_choice("select_by", self.select_by, ("reward", "cond_r1"))
        check_int("epochs", self.epochs, 1)
        check_int("batch_queries", self.batch_queries, 1)
        check_range("clip_eps", self.clip_eps, 0.0, 1.0, low_inclusive=False)
        check_int("inner_epochs", self.inner_epochs, 1)
        check_range("beta", self.beta, 0.0)
        check_range("lr", self.lr, 0.0, low_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, low_inclusive=False)
        if self.max_seconds is not None:
            check_range("max_seconds", self.max_seconds, 0.0, low_inclusive=False)


@dataclass
class TrainResult:
    """What :func:`train_policy` returns.

    Attributes:
        net: The selected policy (eval mode).
        best_epoch: Epoch (1-based) of the selected checkpoint.
        history: Per step: ``step``, ``epoch``, ``reward`` (mean group reward), ``loss``,
            ``kl``.
        val_history: Per epoch: :func:`evaluate_policy` on the validation set.
        seconds: Training wall time.
    """

    net: Any
    best_epoch: int
    history: list[dict[str, float]]
    val_history: list[dict[str, float]]
    seconds: float


def _inputs(ts: PolicyTrainingSet, idx: torch.Tensor | slice) -> tuple[torch.Tensor, ...]:
    return ts.question[idx], ts.views[idx], ts.geometry[idx], ts.mask[idx]


def evaluate_policy(
    net: Any, ts: PolicyTrainingSet, rewards: torch.Tensor, first: torch.Tensor
) -> dict[str, float]:
    """Greedy decisions on ``ts``: mean reward, ``cond_r1`` (share of the queries whose
    pool holds a positive where the chosen view ranks one first), crop rates overall and
    split by whether the full image ranks a positive first; with index statistics also
    ``index_r1`` (the chosen view's search ranks a positive first in the whole index, over
    all queries) and ``index_full_r1`` (the same for the full image)."""
    import torch

    net.eval()
    with torch.no_grad():
        choice = net(*_inputs(ts, slice(None))).argmax(-1)
    rows = torch.arange(len(ts))
    crop = (choice != 0).float()
    covered = torch.ones(len(ts), dtype=torch.bool) if ts.covered is None else ts.covered.bool()
    full_first = first[:, 0] & covered

    def rate(sel: torch.Tensor) -> float:
        return float(crop[sel].mean()) if bool(sel.any()) else float("nan")

    out = {
        "reward": float(rewards[rows, choice].mean()),
        "cond_r1": float(first[rows, choice][covered].float().mean()),
        "full_r1": float(first[covered, 0].float().mean()),
        "crop_rate": float(crop.mean()),
        "crop_rate_full_first": rate(full_first),
        "crop_rate_full_not_first": rate(covered & ~full_first),
    }
    if ts.index_stats is not None:
        ranks = ts.index_stats[:, :, 2]
        out["index_r1"] = float((ranks[rows, choice] == 1).float().mean())
        out["index_full_r1"] = float((ranks[:, 0] == 1).float().mean())
    return out


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_policy(
    train_set: PolicyTrainingSet,
    val_set: PolicyTrainingSet,
    config: ProposalTrainingConfig | None = None,
    *,
    wordings: QuestionWordings | None = None,
) -> TrainResult:
    """Train a fresh policy with r-GRPO on ``train_set``; select on ``val_set``.

    Args:
        train_set: Precomputed training actions and pool scores.
        val_set: The same for validation (model selection by greedy CondR@1, ties by
            mean reward).
        config: :class:`ProposalTrainingConfig`.
        wordings: Several wordings of each training question
            (:func:`~region_rerank.train.wordings.build_question_wordings`): each time a
            query is sampled, the policy reads one of them, drawn uniformly (paraphrase
            resampling). Validation always reads the questions as asked.

    Raises:
        ConfigError: ``wordings`` lacks a training query, or its first wordings are not
            the training set's questions (another encoder or shape).

    Returns:
        A :class:`TrainResult` holding the selected network.
    """
    import torch

    cfg = config or ProposalTrainingConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = build_policy_net(train_set.arch)
    ref = copy.deepcopy(net).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    train_set, val_set = train_set.for_reward(cfg.reward), val_set.for_reward(cfg.reward)
    if wordings is not None:
        wordings = wordings.subset(train_set.query_ids)
        wordings.check_questions(train_set.question)
        if not bool((wordings.counts > 1).any()):
            logger.warning("none of the trained queries has a paraphrase: nothing to resample")
    rewards, _ = train_set.reward_table(cfg.reward)
    val_rewards, val_first = val_set.reward_table(cfg.reward)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train_set)
    per_epoch = math.ceil(n / cfg.batch_queries)
    total = cfg.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total, cfg.warmup_steps))
    s_cfg = cfg.sampling
    history: list[dict[str, float]] = []
    val_history: list[dict[str, float]] = []
    best: tuple[float, float] = (-math.inf, -math.inf)
    best_state, best_epoch = copy.deepcopy(net.state_dict()), 0
    started = time.perf_counter()
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for b in range(0, n, cfg.batch_queries):
            idx = perm[b : b + cfg.batch_queries]
            inputs = _inputs(train_set, idx)
            if wordings is not None:
                inputs = (wordings.sample(idx, gen), *inputs[1:])
            with torch.no_grad():
                old_logp = net(*inputs).log_softmax(-1)
                ref_logp = ref(*inputs).log_softmax(-1)
            actions = sample_groups(
                old_logp.exp(), s_cfg.group_size, balanced=s_cfg.balanced, generator=gen
            )
            group_r = rewards[idx].gather(1, actions)
            adv = group_advantages(group_r, scale_rewards=s_cfg.scale_rewards, eps=s_cfg.eps)
            old_lp = old_logp.gather(1, actions)
            ref_lp = ref_logp.gather(1, actions)
            for _ in range(cfg.inner_epochs):
                logp = net(*inputs).log_softmax(-1).gather(1, actions)
                ratio = (logp - old_lp).exp()
                clipped = ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)
                pg = -torch.minimum(ratio * adv, clipped * adv)
                log_ref_ratio = ref_lp - logp
                kl = log_ref_ratio.exp() - log_ref_ratio - 1
                loss = (pg + cfg.beta * kl).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                opt.step()
            sched.step()
            step += 1
            history.append(
                {
                    "step": float(step),
                    "epoch": float(epoch),
                    "reward": float(group_r.mean()),
                    "loss": float(loss.detach()),
                    "kl": float(kl.detach().mean()),
                }
            )
        metrics = evaluate_policy(net, val_set, val_rewards, val_first)
        metrics["epoch"] = float(epoch)
        val_history.append(metrics)
        other = "cond_r1" if cfg.select_by == "reward" else "reward"
        key = (metrics[cfg.select_by], metrics[other])
        if key > best:
            best, best_state, best_epoch = key, copy.deepcopy(net.state_dict()), epoch
        logger.info(
            "epoch %d: train reward %.3f, val reward %.3f, val CondR@1 %.3f, crop rate %.2f",
            epoch,
            sum(h["reward"] for h in history[-per_epoch:]) / per_epoch,
            metrics["reward"],
            metrics["cond_r1"],
            metrics["crop_rate"],
        )
        if cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            logger.info("time budget of %.0fs reached after epoch %d", cfg.max_seconds, epoch)
            break
    net.load_state_dict(best_state)
    net.eval()
    return TrainResult(net, best_epoch, history, val_history, time.perf_counter() - started)


def plot_reward_curve(result: TrainResult, path: str | Path, title: str = "") -> None:
    """Write the training reward curve (mean group reward per step, smoothed) and the
    validation reward / CondR@1 per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in result.history]
    raw = [h["reward"] for h in result.history]
    smooth, acc = [], raw[0] if raw else 0.0
    for r in raw:
        acc = 0.9 * acc + 0.1 * r
        smooth.append(acc)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, raw, alpha=0.3, label="mean group reward")
    ax1.plot(steps, smooth, label="smoothed (EMA 0.9)")
    ax1.set_xlabel("update step")
    ax1.set_ylabel("reward")
    ax1.set_title("training (sampled groups)")
    ax1.legend()
    epochs = [v["epoch"] for v in result.val_history]
    ax2.plot(epochs, [v["reward"] for v in result.val_history], label="val greedy reward")
    ax2.plot(epochs, [v["cond_r1"] for v in result.val_history], label="val CondR@1")
    ax2.plot(epochs, [v["crop_rate"] for v in result.val_history], label="val crop rate", ls=":")
    ax2.axvline(
        result.best_epoch, color="grey", ls="--", label=f"selected (epoch {result.best_epoch})"
    )
    ax2.set_xlabel("epoch")
    ax2.set_title("validation (greedy)")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
