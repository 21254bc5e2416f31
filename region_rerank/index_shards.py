"""Build a :class:`~region_rerank.index.CandidateIndex` of a large KB across processes.

Launched under ``torchrun`` or ``accelerate launch`` (which set ``RANK`` and
``WORLD_SIZE``), every process embeds one contiguous shard of the KB (entries in id order)
into ``OUT/shards/shard-RRRRR-of-WWWWW.safetensors`` (written to a temporary name, then
renamed, so a file that exists is complete). When all shards exist they are merged, in
rank order, into one index saved in ``OUT``; with a ``torch.distributed`` process group the
ranks wait for each other and rank 0 merges, without one each process merges if it finds
every shard finished (or run :func:`merge_shards` / ``region-rerank index merge``).

A crash loses only the unfinished shards: run the same command again and finished shards
are kept (their ids are checked), so the merged index is the same as one built in a single
process.

Example (4 GPUs)::

    accelerate launch --num_processes 4 -m region_rerank.cli index build \\
        --data data/evqa --scorer clip:openai/clip-vit-large-patch14 --out index/evqa
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.index import CandidateIndex, embed_candidates_in_batches
from region_rerank.types import Candidate

__all__ = ["distributed_rank", "shard_bounds", "build_shard", "merge_shards", "build_index_sharded"]

logger = logging.getLogger(__name__)


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process: from an initialised ``torch.distributed``
    group, else the ``RANK`` / ``WORLD_SIZE`` variables of torchrun / accelerate, else
    ``(0, 1)``."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a base dependency
        pass
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process")
    return rank, world


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """The ``[start, stop)`` entries of shard ``rank`` of ``world`` over ``n`` entries
    (contiguous, sizes differing by at most one)."""
    return rank * n // world, (rank + 1) * n // world


def _shard_path(out: Path, rank: int, world: int) -> Path:
    return out / "shards" / f"shard-{rank:05d}-of-{world:05d}.safetensors"


def _read_shard_ids(path: Path) -> list[str] | None:
    try:
        return list(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["ids"])
    except (OSError, ValueError, KeyError):
        return None


def build_shard(
    entries: Sequence[Candidate],
    scorer: Any,
    out_dir: str | os.PathLike[str],
    rank: int,
    world: int,
    *,
    batch_size: int = 64,
) -> Path:
    """Embed shard ``rank`` of ``world`` of ``entries`` into ``out_dir/shards`` (kept when
    it is already there with the same ids). Returns the shard file."""
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    path = _shard_path(out, rank, world)
    start, stop = shard_bounds(len(entries), rank, world)
    ids = [c.id for c in entries[start:stop]]
    if path.is_file() and _read_shard_ids(path) == ids:
        logger.info("shard %d of %d is already built (%s); kept", rank, world, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        emb
        for _, emb in embed_candidates_in_batches(
            entries[start:stop], scorer, batch_size=batch_size
        )
    ]
    emb = torch.cat(parts, 0) if parts else torch.zeros(0, 0)
    tmp = path.with_name(path.stem + ".tmp.safetensors")
    save_file({"embeddings": emb.contiguous()}, str(tmp))
    meta = {"ids": ids, "scorer": str(getattr(scorer, "name", type(scorer).__name__))}
    path.with_suffix(".json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    tmp.replace(path)  # the shard exists only once it is complete
    logger.info("shard %d of %d: %d entries embedded into %s", rank, world, len(ids), path)
    return path


def merge_shards(out_dir: str | os.PathLike[str], world: int) -> CandidateIndex:
    """Merge the ``world`` finished shards in ``out_dir`` into one index, saved there.

    Raises:
        ConfigError: A shard is missing or its files disagree.
    """
    from safetensors.torch import load_file

    out = Path(out_dir)
    index: CandidateIndex | None = None
    for rank in range(world):
        path = _shard_path(out, rank, world)
        ids = _read_shard_ids(path)
        if not path.is_file() or ids is None:
            raise ConfigError(f"shard {rank} of {world} is not finished ({path}); build it first")
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        emb = load_file(str(path))["embeddings"]
        if not ids:
            continue
        if index is None:
            index = CandidateIndex(ids, emb, scorer_name=meta.get("scorer"))
        else:
            if meta.get("scorer") != index.scorer_name:
                raise ConfigError(
                    f"shard {rank} was built with another scorer ({meta['scorer']!r})"
                )
            index.add(ids, emb)
    if index is None:
        raise ConfigError(f"the {world} shards in {out} hold no entries")
    index.save(out)
    return index


def build_index_sharded(
    entries: Sequence[Candidate],
    scorer: Any,
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    rank: int | None = None,
    world: int | None = None,
) -> CandidateIndex | None:
    """This process's shard, then the merge when every shard is finished.

    Args:
        entries: The whole KB, in the same order in every process (e.g. sorted by id).
        scorer: The bi-encoder.
        out_dir: Index folder (shards under ``shards/``).
        batch_size: Candidates per embedding call.
        rank: This process's shard (default: from :func:`distributed_rank`).
        world: The number of shards (default: from :func:`distributed_rank`).

    Returns:
        The merged index on the process that merged it, else ``None``.
    """
    auto_rank, auto_world = distributed_rank()
    rank = auto_rank if rank is None else rank
    world = auto_world if world is None else world
    ids = [c.id for c in entries]
    if len(set(ids)) != len(ids):
        raise ConfigError("the KB has duplicate ids; an index needs unique ones")
    build_shard(entries, scorer, out_dir, rank, world, batch_size=batch_size)
    try:
        import torch.distributed as dist

        group = dist.is_available() and dist.is_initialized()
    except ImportError:  # pragma: no cover
        group = False
    if group:
        dist.barrier()
        return merge_shards(out_dir, world) if rank == 0 else None
    done = all(_shard_path(Path(out_dir), r, world).is_file() for r in range(world))
    return merge_shards(out_dir, world) if done else None
