"""``region-rerank index build | merge``: a candidate index of a dataset's KB, sharded over
the processes of ``torchrun`` / ``accelerate launch`` (argparse only at import)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from region_rerank.model_options import add_model_option_args, model_options_from_args

__all__ = ["add_index_parsers"]

logger = logging.getLogger(__name__)


def add_index_parsers(sub: Any) -> None:
    """Register ``index build`` and ``index merge``."""
    from region_rerank.specs import usage_line

    index = sub.add_parser("index", help="build a candidate index of a KB (sharded, resumable)")
    kinds = index.add_subparsers(dest="index_command", required=True)
    build = kinds.add_parser(
        "build",
        help="embed the KB (this process's shard under torchrun / accelerate) and merge",
    )
    build.add_argument("--data", required=True, help="dataset folder with kb.jsonl")
    build.add_argument("--scorer", required=True, help=usage_line("scorer"))
    build.add_argument("--out", required=True, help="index folder (shards in OUT/shards)")
    build.add_argument("--batch-size", type=int, default=64, help="entries per embedding call")
    add_model_option_args(build)
    build.set_defaults(run=_build)
    merge = kinds.add_parser("merge", help="merge finished shards into one index")
    merge.add_argument("--out", required=True, help="index folder")
    merge.add_argument("--shards", type=int, required=True, help="number of shards (processes)")
    merge.set_defaults(run=_merge)


def _build(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from region_rerank.eval.datasets import load_kb_jsonl
    from region_rerank.factory import build_scorer
    from region_rerank.index_shards import build_index_sharded, distributed_rank

    group = _init_process_group()
    rank, world = distributed_rank()
    device = args.device
    if device == "auto" and world > 1:
        import torch

        if torch.cuda.is_available():  # one GPU per process, as accelerate / torchrun expect
            device = f"cuda:{rank % torch.cuda.device_count()}"
    kb = load_kb_jsonl(Path(args.data) / "kb.jsonl")
    entries = [kb[k].to_candidate() for k in sorted(kb)]
    options = replace(model_options_from_args(args), device=device)
    scorer = build_scorer(args.scorer, model_options=options)
    index = build_index_sharded(entries, scorer, args.out, batch_size=args.batch_size)
    if group:
        import torch.distributed as dist

        dist.destroy_process_group()
    if index is not None:
        print(f"wrote an index of {len(index)} entries to {args.out}")
    else:
        print(f"rank {rank} of {world}: shard written to {args.out}/shards")
    return 0


def _init_process_group() -> bool:
    """Join the launcher's process group (torchrun / accelerate set ``MASTER_ADDR``), so the
    ranks wait for each other before rank 0 merges. Returns whether one was started here."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def _merge(args: argparse.Namespace) -> int:
    from region_rerank.index_shards import merge_shards

    index = merge_shards(args.out, args.shards)
    print(f"wrote an index of {len(index)} entries to {args.out}")
    return 0
