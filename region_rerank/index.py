"""A searchable index of candidate embeddings: the first stage of a retrieval pipeline.

:class:`CandidateIndex` holds the ids and the embeddings of a knowledge base, computed by a
scorer (each entry's images and text, combined as the reranker combines them), and finds
the top-``k`` entries for query embeddings:

* exact search with torch by default, over blocks of at most ``chunk_size`` entries and
  queries (memory bounded), ties broken by position (the order entries were added);
* FAISS (``pip install faiss-cpu``) when installed and asked for: an exact inner-product
  index (``"Flat"``) by default, or any FAISS ``index_factory`` type such as the
  approximate ``"HNSW32,Flat"`` (:mod:`region_rerank.faiss_search`). The FAISS index is
  built on the first search that asks for its type and kept until entries are added.

It saves to a folder (``embeddings.safetensors`` + ``index.json`` with the ids and the
scorer's name) and loads back; loading it for a different scorer raises. The evaluation
harness's pool builder (:func:`region_rerank.eval.pools.build_pools`) and the region-aware
retriever (:mod:`region_rerank.retrieval`) search with :func:`exact_topk`, the one
implementation of KB search. A sharded, resumable build for large KBs is in
:mod:`region_rerank.index_shards`.

Example:
    >>> import torch
    >>> index = CandidateIndex(["a", "b", "c"], torch.eye(3))
    >>> index.search(torch.tensor([[0.0, 1.0, 0.0]]), k=2)[0][0]
    ('b', 1.0)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.errors import ConfigError, ModelLoadError
from region_rerank.faiss_search import (
    build_faiss_index,
    faiss_available,
    faiss_search,
    faiss_topk,
    want_faiss,
)

if TYPE_CHECKING:
    import torch

    from region_rerank.cache import EmbeddingCache
    from region_rerank.images import ImageLoadOptions
    from region_rerank.types import Candidate

__all__ = [
    "INDEX_FORMAT",
    "CandidateIndex",
    "embed_candidates_in_batches",
    "exact_topk",
    "faiss_available",
    "faiss_topk",
    "want_faiss_for",
    "want_faiss",
]

logger = logging.getLogger(__name__)

#: Format tag of ``index.json``.
INDEX_FORMAT = "region-rerank-index/1"
ScoreFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
Hits = list[list[tuple[str, float]]]


def _dot(queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    return queries @ block.T


def exact_topk(
    queries: torch.Tensor,
    blocks: Iterable[tuple[int, torch.Tensor]],
    k: int,
    *,
    score: ScoreFn | None = None,
    query_block: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` of ``queries`` over a stream of KB embedding blocks.

    Args:
        queries: ``Q x D`` query embeddings.
        blocks: ``(start position, B x D embeddings)`` in increasing position order; only
            one block is held at a time.
        k: Hits per query.
        score: ``(queries, block) -> Q x B`` similarities (default: dot product, the
            cosine of normalised embeddings).
        query_block: Queries scored at once (bounds the score matrix).

    Returns:
        ``(scores, positions)``, each ``Q x min(k, seen)``, best first; ties go to the
        smaller position. NaN scores rank last.
    """
    import torch

    check_range("k", k, 1)
    score_fn = score or _dot
    queries = queries.float().cpu()
    n_q = queries.shape[0]
    best_s = torch.full((n_q, 0), float("-inf"))
    best_i = torch.zeros((n_q, 0), dtype=torch.long)
    for start, block in blocks:
        block = block.float().cpu()
        idx = torch.arange(start, start + block.shape[0])
        new_s, new_i = [], []
        for q0 in range(0, n_q, query_block):
            sims = score_fn(queries[q0 : q0 + query_block], block).float().cpu()
            sims = torch.nan_to_num(sims, nan=float("-inf"))
            # Kept hits come first and have smaller positions, so a stable sort keeps
            # (score desc, position asc) order on ties.
            scores = torch.cat([best_s[q0 : q0 + query_block], sims], 1)
            cand = torch.cat([best_i[q0 : q0 + query_block], idx.expand(sims.shape[0], -1)], 1)
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
            new_s.append(torch.gather(scores, 1, order))
            new_i.append(torch.gather(cand, 1, order))
        if new_s:
            best_s, best_i = torch.cat(new_s, 0), torch.cat(new_i, 0)
    return best_s, best_i


def embed_candidates_in_batches(
    candidates: Iterable[Candidate],
    scorer: Any,
    *,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    dim: int | None = None,
    image_options: ImageLoadOptions | None = None,
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Yield ``(ids, B x D float32 CPU embeddings)`` for ``candidates``, ``batch_size`` at a
    time, combined as the reranker combines a candidate's images and text (through
    ``cache`` when given, so a later re-rank reuses them; ``dim`` is then the scorer's
    embedding size, probed with one text when not given)."""
    from region_rerank.cache import pool_embeddings

    check_range("batch_size", batch_size, 1)
    if cache is not None and dim is None:
        dim = int(scorer.embed_texts(["dimension probe"]).shape[1])
    batch: list[Candidate] = []

    def flush() -> tuple[list[str], torch.Tensor]:
        if cache is None:
            emb = scorer.embed_candidates(batch, image_options)
        else:
            mats, _ = pool_embeddings(
                scorer,
                [batch],
                cache,
                dim=int(dim or 0),
                device="cpu",
                batch_size=batch_size,
                image_options=image_options,
            )
            emb = mats[0]
        return [c.id for c in batch], emb.float().cpu()

    for cand in candidates:
        batch.append(cand)
        if len(batch) == batch_size:
            yield flush()
            batch = []
    if batch:
        yield flush()


def _scores_by_inner_product(scorer: Any) -> bool:
    """Whether ``scorer`` scores by the plain inner product of the bi-encoders (so FAISS's
    inner-product search ranks as it does)."""
    from region_rerank.scorers.base import BaseEmbeddingScorer

    return getattr(type(scorer), "score", None) is BaseEmbeddingScorer.score


def want_faiss_for(scorer: Any, use_faiss: bool | str, *, required: bool = False) -> bool:
    """Resolve ``use_faiss`` (see :func:`want_faiss`) for a search scored by ``scorer``
    (``None``: the inner product). FAISS ranks by the inner product, so a scorer that
    overrides ``score()`` is searched exactly under ``"auto"``.

    Raises:
        ConfigError: FAISS is asked for (``use_faiss=True`` or ``required``) but ``scorer``
            scores with its own ``score()``.
    """
    faiss_on = want_faiss(use_faiss)
    if not faiss_on or scorer is None or _scores_by_inner_product(scorer):
        return faiss_on
    if use_faiss is True or required:
        raise ConfigError(
            f"{type(scorer).__name__} scores with its own score(), not the inner product "
            "FAISS searches by: use use_faiss=False"
        )
    return False  # "auto": the scorer's own score, exactly


class CandidateIndex:
    """Ids and embeddings of a KB, searchable by query embeddings.

    Args:
        ids: Entry ids (unique).
        embeddings: ``N x D`` embeddings, row ``i`` for ``ids[i]`` (kept as float32 on
            the CPU).
        scorer_name: Name of the scorer that made them (checked when searching with, or
            loading for, a scorer).

    Raises:
        ConfigError: Duplicate ids, or ids and embeddings that do not line up.
    """

    def __init__(
        self, ids: Sequence[str], embeddings: torch.Tensor, *, scorer_name: str | None = None
    ) -> None:
        import torch

        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._blocks: list[torch.Tensor] = []
        self._dim: int | None = None
        self._faiss: dict[str, Any] = {}
        self._faiss_lock = threading.Lock()
        self.scorer_name = scorer_name
        #: Ids :meth:`build` left out (no text, image or embedding).
        self.skipped: tuple[str, ...] = ()
        self.add(ids, embeddings if len(ids) else torch.zeros(0, embeddings.shape[-1]))

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        candidates: Iterable[Candidate],
        scorer: Any,
        *,
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        image_options: ImageLoadOptions | None = None,
        progress: bool = True,
        total: int | None = None,
    ) -> CandidateIndex:
        """Embed ``candidates`` with ``scorer`` (a bi-encoder) into a new index, streaming
        (only the embeddings are kept).

        Args:
            candidates: The KB entries (any iterable; ``total`` sizes the progress bar).
            scorer: A :class:`~region_rerank.scorers.base.Scorer`.
            batch_size: Candidates per embedding call.
            cache: Share embeddings with a reranker's cache.
            image_options: Pixel budget / URL policy for decoding images.
            progress: Show a progress bar.
            total: Number of candidates, when known.
        """
        from region_rerank.progress import progress_bar

        if not hasattr(scorer, "embed_candidates"):
            raise ConfigError(
                f"an index needs a bi-encoder scorer (embed_candidates); got "
                f"{type(scorer).__name__}. Cross-encoders cannot build an index."
            )
        name = str(getattr(scorer, "name", type(scorer).__name__))
        index: CandidateIndex | None = None
        empty: list[str] = []

        def usable(items: Iterable[Candidate]) -> Iterator[Candidate]:
            for c in items:
                if (c.text and c.text.strip()) or c.images or c.embedding is not None:
                    yield c
                else:
                    empty.append(c.id)

        with progress_bar(total, "index", progress, unit="entry") as bar:
            for ids, emb in embed_candidates_in_batches(
                usable(candidates),
                scorer,
                batch_size=batch_size,
                cache=cache,
                image_options=image_options,
            ):
                if index is None:
                    index = cls(ids, emb, scorer_name=name)
                else:
                    index.add(ids, emb)
                bar.update(len(ids))
        if empty:
            logger.warning(
                "%d entries have neither text, images nor an embedding and are not indexed "
                "(e.g. %s)",
                len(empty),
                empty[:3],
            )
        if index is None:
            raise ConfigError("CandidateIndex.build: no usable candidates were given")
        index.skipped = tuple(empty)
        return index

    def add(self, ids: Sequence[str], embeddings: torch.Tensor) -> None:
        """Append entries.

        Raises:
            ConfigError: A duplicate id, a row count that differs from ``len(ids)``, or an
                embedding size that differs from the index's.
        """
        ids = [str(i) for i in ids]
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
            raise ConfigError(
                f"add: {len(ids)} ids but embeddings of shape {tuple(embeddings.shape)}"
            )
        if self._dim is not None and embeddings.shape[1] != self._dim:
            raise ConfigError(
                f"add: embeddings of size {embeddings.shape[1]}, index has {self._dim}"
            )
        seen = set(self._positions)
        for i in ids:
            if i in seen:
                raise ConfigError(f"add: duplicate id {i!r}")
            seen.add(i)
        for i in ids:
            self._positions[i] = len(self._ids)
            self._ids.append(i)
        self._dim = int(embeddings.shape[1])
        if ids:
            self._blocks.append(embeddings.detach().float().cpu().contiguous())
            self._faiss.clear()  # rebuilt on the next FAISS search

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_faiss"], state["_faiss_lock"] = {}, None  # FAISS objects do not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._faiss_lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> tuple[str, ...]:
        """Entry ids in insertion order."""
        return tuple(self._ids)

    @property
    def positions(self) -> Mapping[str, int]:
        """Entry id -> row of :meth:`embeddings` (a read-only view)."""
        return MappingProxyType(self._positions)

    @property
    def dim(self) -> int | None:
        """Embedding size (``None`` for an index with no entry yet)."""
        return self._dim

    def embeddings(self) -> torch.Tensor:
        """All embeddings, ``N x D`` (a new tensor)."""
        import torch

        if not self._blocks:
            return torch.zeros(0, self._dim or 0)
        return torch.cat(self._blocks, 0)

    def _iter_blocks(self, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        start = 0
        for block in self._blocks:
            for i in range(0, block.shape[0], chunk_size):
                part = block[i : i + chunk_size]
                yield start + i, part
            start += block.shape[0]

    def search(
        self,
        queries: torch.Tensor,
        k: int,
        *,
        scorer: Any = None,
        use_faiss: bool | str = False,
        chunk_size: int = 4096,
        faiss_index: str = "Flat",
        faiss_params: Mapping[str, float] | None = None,
    ) -> Hits:
        """The top-``k`` entries for each query embedding.

        Args:
            queries: ``Q x D`` (or ``D``) query embeddings from the index's scorer.
            k: Hits per query (capped at the index size).
            scorer: The scorer of the query embeddings, checked against the index's scorer
                name; one that overrides the bi-encoders' inner product is searched with its
                own ``score`` (exact torch search only). Default: inner product.
            use_faiss: ``True`` (require FAISS), ``"auto"`` (when installed) or ``False``.
            chunk_size: Entries and queries per scoring block (memory bound).
            faiss_index: The FAISS index type (an ``index_factory`` string): ``"Flat"``
                (exact) or an approximate one such as ``"HNSW32,Flat"``. Built on first
                use and kept.
            faiss_params: FAISS search parameters, e.g. ``{"efSearch": 128}`` (HNSW) or
                ``{"nprobe": 32}`` (IVF).

        Returns:
            For each query, ``[(id, score), ...]`` best first; ties by insertion order.
            An approximate index may return fewer than ``k`` hits.

        Raises:
            ConfigError: Bad ``k``, a dimension mismatch or a different scorer; a FAISS
                index type or parameter without FAISS search (``use_faiss`` off, or a
                ``scorer``, whose own ``score`` is used instead), or one FAISS rejects.
        """
        check_range("k", k, 1)
        check_range("chunk_size", chunk_size, 1)
        if queries.ndim == 1:
            queries = queries[None]
        if self._dim is not None and queries.shape[-1] != self._dim:
            raise ConfigError(
                f"query embeddings of size {queries.shape[-1]}; the index holds size {self._dim}"
            )
        if scorer is not None:
            self.check_scorer(scorer)
        faiss_options = faiss_index != "Flat" or bool(faiss_params)
        faiss_on = want_faiss_for(scorer, use_faiss, required=faiss_options)
        if not faiss_on and faiss_options:
            raise ConfigError(
                "faiss_index / faiss_params need FAISS search: use_faiss=True (or 'auto' with "
                "FAISS installed)"
            )
        if faiss_on:
            s, i = faiss_search(self._faiss_index(faiss_index), queries, k, faiss_params)
        else:
            score = None if scorer is None or _scores_by_inner_product(scorer) else scorer.score
            blocks = self._iter_blocks(chunk_size)
            s, i = exact_topk(queries, blocks, k, score=score, query_block=chunk_size)
        return [
            [(self._ids[j], float(v)) for v, j in zip(srow, irow) if j >= 0]
            for srow, irow in zip(s.tolist(), i.tolist())
        ]

    def _faiss_index(self, spec: str) -> Any:
        with self._faiss_lock:
            if spec not in self._faiss:
                logger.info("building a FAISS %s index of %d entries", spec, len(self))
                self._faiss[spec] = build_faiss_index(self._blocks, self._dim or 0, spec)
            return self._faiss[spec]

    def check_scorer(self, scorer: Any) -> None:
        """Raise :class:`ConfigError` when ``scorer`` is not the one that built the index."""
        name = str(getattr(scorer, "name", type(scorer).__name__))
        if self.scorer_name is not None and name != self.scorer_name:
            raise ConfigError(
                f"the index was built with scorer {self.scorer_name!r}; searching it with "
                f"{name!r} would compare embeddings of different models"
            )

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``embeddings.safetensors`` and ``index.json`` into ``folder``."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": INDEX_FORMAT,
            "scorer": self.scorer_name,
            "dim": self._dim,
            "count": len(self),
            "ids": self._ids,
        }
        # Temporary names, then renames: a reader never sees half a file.
        suffix = f".{os.getpid()}.tmp"
        emb_tmp = out / ("embeddings.safetensors" + suffix)
        meta_tmp = out / ("index.json" + suffix)
        save_file({"embeddings": self.embeddings().contiguous()}, str(emb_tmp))
        meta_tmp.write_text(json.dumps(meta) + "\n", encoding="utf-8")
        emb_tmp.replace(out / "embeddings.safetensors")
        meta_tmp.replace(out / "index.json")
        logger.info("saved an index of %d entries to %s", len(self), out)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, scorer: Any = None) -> CandidateIndex:
        """Load an index written by :meth:`save`.

        Args:
            folder: The index folder.
            scorer: When given, the index must have been built by this scorer.

        Raises:
            ModelLoadError: Missing or unreadable files.
            ConfigError: A different scorer, or files that do not line up.
        """
        from safetensors.torch import load_file

        root = Path(folder)
        try:
            meta = json.loads((root / "index.json").read_text(encoding="utf-8"))
            emb = load_file(str(root / "embeddings.safetensors"))["embeddings"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load an index from {root}: {exc}") from exc
        if meta.get("format") != INDEX_FORMAT:
            raise ConfigError(f"{root}: not a region-rerank index ({meta.get('format')!r})")
        index = cls(meta["ids"], emb, scorer_name=meta.get("scorer"))
        if scorer is not None:
            index.check_scorer(scorer)
        return index
