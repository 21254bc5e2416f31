"""Arguments and entry point of ``region-rerank train proposal``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.model_options import add_model_option_args, model_options_from_args
from region_rerank.specs import usage_line
from region_rerank.world_cli import add_world_arguments, world_overrides

__all__ = ["add_proposal_arguments", "run_proposal_training"]

logger = logging.getLogger(__name__)


def add_proposal_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training options to ``parser``."""
    from region_rerank.train.proposal_trainer import ProposalTrainingConfig

    d = ProposalTrainingConfig()
    parser.add_argument("--out", default="out/proposal", help="caches, curve, summary, weights")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--world", help="demo-world folder, generated when missing (default: OUT/world)"
    )
    source.add_argument(
        "--data",
        help="train on this dataset folder instead (generic layout: kb.jsonl and split "
        "folders; E-VQA / InfoSeek after `region-rerank convert`); no boxes needed",
    )
    parser.add_argument("--train-split", default="train", help="with --data (default: train)")
    parser.add_argument(
        "--val-split",
        default="val",
        help="with --data; when DATA has no such split, --val-fraction of the training "
        "queries (by a hash of their ids) validate",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="(default 0.1)")
    parser.add_argument(
        "--scorer",
        default="demo",
        help=f"the frozen scorer whose embeddings the policy reads (default: demo): "
        f"{usage_line('scorer', exclude=('cross', 'fake'))}",
    )
    parser.add_argument(
        "--encoder",
        default="scorer",
        help="what the policy reads: 'scorer' (the scorer's embedding of every proposal "
        "crop; default), 'dense:demo' (a fixed encoder independent of the scorer: one demo "
        "CNN forward per image, RoI-pooled, and MiniLM word vectors), 'dense:demo:sentence' "
        "(the same views, the question as MiniLM's sentence embedding), or a scorer spec "
        "(crops through that model)",
    )
    parser.add_argument(
        "--detector",
        default="",
        help="a detector whose boxes join the grid proposals: 'demo' (the demo world's "
        "class-agnostic object detector); recorded in the weights (default: none)",
    )
    add_model_option_args(parser, device="cpu")
    parser.add_argument(
        "--weights", help="output safetensors (default: OUT/proposal_policy.safetensors)"
    )
    parser.add_argument("--n-train", type=int, default=1500, help="train queries if generated")
    parser.add_argument(
        "--world-seed", type=int, default=0, help="seed of the generated world (default 0)"
    )
    add_world_arguments(parser)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--beta", type=float, default=d.beta, help="KL weight")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--group-size", type=int, default=d.sampling.group_size)
    parser.add_argument("--no-margin", action="store_true", help="reward without the margin term")
    parser.add_argument(
        "--retrieval-weight",
        type=float,
        default=0.0,
        help="share of the whole-index (first-stage retrieval) reward in the objective, in "
        "[0, 1]; 0 (default): re-ranking only, as the paper",
    )
    parser.add_argument(
        "--full-first-reward",
        type=float,
        default=d.reward.full_first,
        help="reward of FULL when the full image already ranks a positive first (default "
        "%(default)s); higher makes the policy keep the whole image more often",
    )
    parser.add_argument(
        "--resample-wording",
        action="store_true",
        help="train on the training queries' other wordings too (their 'paraphrases' field; "
        "a generated world writes them with --paraphrases N): each time a query is sampled "
        "the policy reads its question or one of its paraphrases",
    )
    parser.add_argument("--unbalanced", action="store_true", help="plain group sampling")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--select-by",
        choices=("reward", "cond_r1"),
        default=d.select_by,
        help="validation metric that picks the kept epoch",
    )
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is robust on a busy box)"
    )


def run_proposal_training(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the world if missing (or use ``--data``), train, write the weights; return
    the summary."""
    import torch

    from region_rerank.factory import build_scorer
    from region_rerank.train.proposal_run import train_proposal_policy
    from region_rerank.train.proposal_trainer import ProposalTrainingConfig
    from region_rerank.train.rewards import RewardConfig
    from region_rerank.train.sampling import GroupSamplingConfig

    torch.set_num_threads(args.threads)
    if args.data and world_overrides(args):
        raise ConfigError(
            "world options (--phrasing, --target-scale, ...) shape a generated world; they do "
            "not apply to --data"
        )
    world = Path(args.data or args.world or Path(args.out) / "world")
    if not args.data and not (world / "train" / "queries.jsonl").is_file():
        from region_rerank.demo.world import make_world

        logger.info("generating the demo world in %s", world)
        make_world(
            world,
            seed=args.world_seed,
            n_train=args.n_train,
            n_val=200,
            n_test=0,
            **world_overrides(args),
        )
    cfg = ProposalTrainingConfig(
        epochs=args.epochs,
        beta=args.beta,
        lr=args.lr,
        seed=args.seed,
        select_by=args.select_by,
        max_seconds=args.max_seconds,
        sampling=GroupSamplingConfig(group_size=args.group_size, balanced=not args.unbalanced),
        reward=RewardConfig(
            use_margin=not args.no_margin,
            retrieval_weight=args.retrieval_weight,
            full_first=args.full_first_reward,
        ),
    )
    scorer = build_scorer(args.scorer, model_options=model_options_from_args(args))
    return train_proposal_policy(
        world,
        args.out,
        config=cfg,
        weights_out=args.weights,
        scorer=scorer,
        scorer_spec=args.scorer,
        encoder=args.encoder,
        detector=args.detector,
        train_split=args.train_split,
        val_split=args.val_split,
        val_fraction=args.val_fraction,
        resample_wording=args.resample_wording,
    )
