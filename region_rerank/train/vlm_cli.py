"""Arguments and entry point of ``region-rerank train vlm``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

__all__ = ["add_vlm_arguments", "run_vlm_training"]


def add_vlm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``train vlm`` to ``parser``."""
    parser.add_argument("--config", required=True, help="YAML file (see configs/train_vlm.yaml)")
    parser.add_argument("--model", help="override `model` (hub id or local folder)")
    parser.add_argument("--output-dir", help="override `output_dir`")
    parser.add_argument("--max-steps", type=int, help="override `grpo.max_steps`")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_vlm_training(args: argparse.Namespace) -> dict[str, Any]:
    """Load the config with the command-line overrides, train, return the summary."""
    from region_rerank.train.vlm_config import load_vlm_training_config
    from region_rerank.train.vlm_trainer import train_vlm_policy

    cfg = load_vlm_training_config(args.config, model=args.model, output_dir=args.output_dir)
    if args.max_steps is not None:
        cfg = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=args.max_steps))
    return train_vlm_policy(cfg, progress=not args.no_progress)
