"""Build first-stage retrieval pools: the top-``k`` KB entries per query.

The query side is the *full* query image (``scorer.embed_images``), the KB side each entry's
image + text embedding (``scorer.embed_candidates``), as in the reference pipeline. Scores
are the scorer's similarity (cosine for the built-in bi-encoders).

The default path is exact brute force, streamed over the KB: entries are embedded
``batch_size`` at a time, gathered into chunks of ``chunk_size``, and each chunk is scored
against blocks of at most ``chunk_size`` queries and merged into a running top-``k``
(:func:`region_rerank.index.exact_topk`, the same search as
:class:`~region_rerank.index.CandidateIndex`). No score matrix larger than
``chunk_size x chunk_size`` and no KB embedding matrix larger than one chunk is ever held.
Ties are broken deterministically: score descending, then KB id ascending. With FAISS
installed (``use_faiss="auto"`` or ``True``) an exact inner-product index is used instead.

Example:
    >>> from region_rerank.eval.pools import build_pools, write_pools_jsonl  # doctest: +SKIP
    >>> pools = build_pools(dataset, scorer, k=20)  # doctest: +SKIP
    >>> write_pools_jsonl(pools, "data/test/pools.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.cache import EmbeddingCache, pool_embeddings
from region_rerank.errors import ConfigError
from region_rerank.eval._schema import EvalDataset, KBEntry, Pool
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.index import exact_topk, faiss_topk, want_faiss_for
from region_rerank.progress import progress_bar
from region_rerank.types import Candidate

if TYPE_CHECKING:
    import torch

    from region_rerank.index import CandidateIndex

__all__ = ["build_pools", "kb_index", "write_pools_jsonl"]

logger = logging.getLogger(__name__)


def _check_scorer(scorer: Any) -> None:
    missing = [m for m in ("embed_images", "embed_candidates", "score") if not hasattr(scorer, m)]
    if missing:
        raise ConfigError(
            f"build_pools needs a bi-encoder scorer (embed_images, embed_candidates, score); "
            f"{type(scorer).__name__} lacks {missing}. Cross-encoders cannot build pools."
        )


def _embed_queries(
    dataset: EvalDataset, scorer: Any, batch_size: int, options: ImageLoadOptions | None
) -> torch.Tensor:
    import torch

    parts = []
    queries = dataset.queries
    for i in range(0, len(queries), batch_size):
        images = [load_image(q.image, options) for q in queries[i : i + batch_size]]
        parts.append(scorer.embed_images(images).float().cpu())
    return torch.cat(parts, 0)


EmbedFn = Callable[[list[Candidate]], "torch.Tensor"]


def _kb_embedder(
    scorer: Any,
    cache: EmbeddingCache | None,
    dim: int,
    batch_size: int,
    options: ImageLoadOptions | None,
) -> EmbedFn:
    """``candidates -> K x D`` embeddings, through ``cache`` when one is given."""
    if cache is None:
        return lambda batch: scorer.embed_candidates(batch, options)

    def embed(batch: list[Candidate]) -> torch.Tensor:
        mats, _ = pool_embeddings(
            scorer,
            [batch],
            cache,
            dim=dim,
            device="cpu",
            batch_size=batch_size,
            image_options=options,
        )
        return mats[0]

    return embed


def _kb_chunks(
    entries: Sequence[KBEntry],
    embed: EmbedFn,
    batch_size: int,
    chunk_size: int,
    bar: Any,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start index, embeddings)`` chunks of at most ``chunk_size`` entries.

    Embedding batches are always the same ``batch_size`` slices of ``entries``, whatever
    the chunk size, so the embeddings (and the pools) do not depend on ``chunk_size``.
    """
    import torch

    buffer: list[torch.Tensor] = []
    held = 0
    start = 0
    for i in range(0, len(entries), batch_size):
        batch = [e.to_candidate() for e in entries[i : i + batch_size]]
        buffer.append(embed(batch).float().cpu())
        bar.update(len(batch))
        held += len(batch)
        while held >= chunk_size or (held and i + batch_size >= len(entries)):
            flat = torch.cat(buffer, 0)
            chunk, rest = flat[:chunk_size], flat[chunk_size:]
            yield start, chunk
            start += chunk.shape[0]
            buffer = [rest] if rest.shape[0] else []
            held = rest.shape[0]


def kb_index(
    dataset: EvalDataset,
    scorer: Any,
    *,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
) -> CandidateIndex:
    """A :class:`~region_rerank.index.CandidateIndex` of ``dataset``'s KB, in id order,
    embedded with ``scorer`` (through ``cache`` when given)."""
    from region_rerank.index import CandidateIndex

    entries = [entry.to_candidate() for _, entry in sorted(dataset.kb.items())]
    return CandidateIndex.build(entries, scorer, cache=cache, progress=progress, total=len(entries))


def build_pools(
    dataset: EvalDataset,
    scorer: Any,
    k: int = 20,
    *,
    batch_size: int = 64,
    chunk_size: int = 4096,
    use_faiss: bool | str = "auto",
    image_options: ImageLoadOptions | None = None,
    progress: bool = True,
    cache: EmbeddingCache | None = None,
) -> dict[str, Pool]:
    """Retrieve the top-``k`` KB entries for every query of ``dataset``.

    Args:
        dataset: Queries and KB (existing pools are ignored).
        scorer: A bi-encoder :class:`~region_rerank.scorers.base.Scorer`.
        k: Pool size (capped at the number of KB entries).
        batch_size: Images / candidates per embedding call.
        chunk_size: KB entries (and queries) per scoring block; bounds memory.
        use_faiss: ``"auto"`` (FAISS when installed), ``True`` (require it) or ``False``.
        image_options: Pixel budget / URL policy for decoding images.
        progress: Show a tqdm bar over the KB entries embedded.
        cache: Look KB embeddings up in (and add them to) this cache, keyed by content as
            the reranker keys them, so a later evaluation sharing the cache does not embed
            the KB again.

    Returns:
        Query id -> ``((kb_id, score), ...)`` best first, in dataset query order; ties
        broken by KB id. KB entries with neither text nor images are left out (logged).

    Raises:
        ConfigError: Bad ``k`` / sizes, or a scorer that is not a bi-encoder.
        ImportError: ``use_faiss=True`` and FAISS is not installed.
    """
    check_range("k", k, 1)
    check_range("batch_size", batch_size, 1)
    check_range("chunk_size", chunk_size, 1)
    _check_scorer(scorer)
    faiss_on = want_faiss_for(scorer, use_faiss)
    entries = sorted(
        (e for e in dataset.kb.values() if (e.text and e.text.strip()) or e.images),
        key=lambda e: e.id,
    )
    if len(entries) < len(dataset.kb):
        logger.warning(
            "%d KB entries have neither text nor images and cannot be retrieved",
            len(dataset.kb) - len(entries),
        )
    if not dataset.queries or not entries:
        logger.warning("build_pools: %d queries, %d usable KB entries", len(dataset), len(entries))
        return {q.id: () for q in dataset.queries}
    kk = min(k, len(entries))
    n_chunks = -(-len(entries) // chunk_size)
    logger.info(
        "building top-%d pools: %d queries x %d KB entries (%s, %d chunk(s))",
        kk,
        len(dataset),
        len(entries),
        "faiss" if faiss_on else "brute force",
        n_chunks,
    )
    query_emb = _embed_queries(dataset, scorer, batch_size, image_options)
    embed = _kb_embedder(scorer, cache, int(query_emb.shape[1]), batch_size, image_options)
    with progress_bar(len(entries), "pools (KB)", progress, unit="entry") as bar:
        blocks = _kb_chunks(entries, embed, batch_size, chunk_size, bar)
        if faiss_on:
            scores, idx = faiss_topk(query_emb, blocks, kk)
        else:
            scores, idx = exact_topk(
                query_emb, blocks, kk, score=scorer.score, query_block=chunk_size
            )
    pools: dict[str, Pool] = {}
    for row, query in enumerate(dataset.queries):
        pools[query.id] = tuple(
            (entries[j].id, float(s))
            for s, j in zip(scores[row].tolist(), idx[row].tolist())
            if j >= 0
        )
    return pools


def write_pools_jsonl(pools: Mapping[str, Pool], path: str | os.PathLike[str]) -> Path:
    """Write pools as ``pools.jsonl`` (``{"query_id", "candidates": [{"id", "score"}]}``
    per line), loadable by :func:`region_rerank.eval.datasets.load_pools_jsonl`.

    Args:
        pools: Query id -> ``((kb_id, score), ...)``.
        path: Target file (parent folders are created; an existing file is replaced).

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for qid, pool in pools.items():
            row = {"query_id": qid, "candidates": [{"id": c, "score": s} for c, s in pool]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    logger.info("wrote %d pools to %s", len(pools), out)
    return out
