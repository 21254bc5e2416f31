"""FAISS search over candidate embeddings (``pip install "region-rerank[index]"``).

* :func:`faiss_topk`: one batched search through an exact inner-product index filled from
  blocks of embeddings (what the evaluation's pool builder uses);
* :func:`build_faiss_index` and :func:`faiss_search`: a persistent index of any FAISS
  ``index_factory`` type, built once and searched many times
  (:meth:`region_rerank.index.CandidateIndex.search` keeps one per type). ``"Flat"`` is
  exact; ``"HNSW32,Flat"`` is an approximate graph index whose search time grows
  sub-linearly with the KB (tune its recall with ``{"efSearch": 128}``); ``"IVF1024,Flat"``
  is trained on the embeddings first (``{"nprobe": 32}``).

Every index uses the inner product (the scorers' embeddings are L2-normalised, so it is
the cosine). Results are re-sorted so that equal scores keep the insertion order, as the
exact torch search does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_choice
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_TRAIN_ROWS",
    "build_faiss_index",
    "faiss_available",
    "faiss_search",
    "faiss_topk",
    "want_faiss",
]

#: Rows used to train an index type that needs training (IVF, PQ); a sample of the KB.
MAX_TRAIN_ROWS = 262_144


def faiss_available() -> bool:
    """Whether FAISS can be imported."""
    return importlib.util.find_spec("faiss") is not None


def _import_faiss() -> Any:
    from region_rerank._optional import require

    return require("faiss", feature="FAISS search (use_faiss=False: exact torch search)")


def want_faiss(use_faiss: bool | str) -> bool:
    """Resolve ``use_faiss``: ``True`` (FAISS required: ``ImportError`` when missing),
    ``False``, or ``"auto"`` (when installed)."""
    if use_faiss is True:
        _import_faiss()
        return True
    if use_faiss is False:
        return False
    check_choice("use_faiss", use_faiss, ("auto",))
    return faiss_available()


def _array(block: torch.Tensor) -> Any:
    import numpy as np

    return np.ascontiguousarray(block.float().cpu().numpy(), dtype=np.float32)


def build_faiss_index(blocks: Iterable[torch.Tensor], dim: int, spec: str = "Flat") -> Any:
    """A FAISS inner-product index of type ``spec`` (an ``index_factory`` string) holding
    ``blocks`` in order (row ``i`` of the concatenation gets FAISS id ``i``).

    Index types that need training are trained on the first :data:`MAX_TRAIN_ROWS` rows.

    Raises:
        ConfigError: ``spec`` is not an index type FAISS knows, or training fails (e.g.
            fewer rows than IVF lists).
        ImportError: FAISS is not installed.
    """
    import numpy as np

    faiss = _import_faiss()
    try:
        index = faiss.index_factory(int(dim), spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise ConfigError(
            f"faiss_index={spec!r} is not a FAISS index_factory string ({first})"
        ) from None
    if index.is_trained:  # streamed: one block in memory besides the index
        for block in blocks:
            index.add(_array(block))
        return index
    arrays = [_array(b) for b in blocks]
    if arrays:
        sample = np.concatenate(arrays)[:MAX_TRAIN_ROWS]
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot train the FAISS index {spec!r} on {len(sample)} rows: "
                f"{str(exc).strip().splitlines()[-1]}"
            ) from None
    for arr in arrays:
        index.add(arr)
    return index


def faiss_search(
    index: Any, queries: torch.Tensor, k: int, params: Mapping[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q x k`` scores and FAISS ids from ``index``, best first, equal scores by id; rows
    an approximate index fills only partly are padded with ``-inf`` and id ``-1``.

    Args:
        index: A FAISS index (:func:`build_faiss_index`).
        queries: ``Q x D`` query embeddings.
        k: Hits per query (capped at the index size).
        params: Search-time parameters (``{"efSearch": 128}`` for HNSW, ``{"nprobe": 32}``
            for IVF), set through ``faiss.ParameterSpace``.

    Raises:
        ConfigError: A parameter the index does not have.
    """
    import torch

    faiss = _import_faiss()
    n = queries.shape[0]
    if index.ntotal == 0:
        return torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long)
    space = faiss.ParameterSpace()
    for name, value in (params or {}).items():
        try:
            space.set_index_parameter(index, name, float(value))
        except RuntimeError:
            raise ConfigError(
                f"faiss_params: {type(index).__name__} has no search parameter {name!r}"
            ) from None
    kk = min(k, index.ntotal)
    scores, ids = index.search(_array(queries), kk)
    s = torch.full((n, kk), float("-inf"))
    i = torch.full((n, kk), -1, dtype=torch.long)
    for row, (sr, ir) in enumerate(zip(scores, ids)):
        hits = sorted((-float(a), int(b)) for a, b in zip(sr, ir) if b >= 0)
        for col, (neg, j) in enumerate(hits):
            s[row, col], i[row, col] = -neg, j
    return s, i


def faiss_topk(
    queries: torch.Tensor, blocks: Iterable[tuple[int, torch.Tensor]], k: int, index: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` with a FAISS index (``IndexFlatIP`` unless ``index`` is given) filled from
    ``blocks``; ties re-sorted by position so results match the exact torch search."""
    import itertools

    import torch

    rows = (block for _, block in blocks)
    if index is None:
        first = next(rows, None)
        if first is None:
            n = queries.shape[0]
            return torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long)
        index = build_faiss_index(itertools.chain([first], rows), int(first.shape[1]))
    else:
        for block in rows:
            index.add(_array(block))
    return faiss_search(index, queries, k)
