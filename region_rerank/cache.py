"""A thread-safe, byte-bounded LRU cache of candidate embeddings, keyed by content.

Keys are digests of what the scorer sees (text and image content) under a namespace that
names the scorer (:func:`scorer_namespace`), so two ``Candidate`` objects with the same
content share one entry, a changed image gets a new one, and two scorers never share one.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._pickling import PicklesWithoutLocks
from region_rerank._validate import check_range
from region_rerank.errors import CandidateError, ScorerError
from region_rerank.oom import map_batches
from region_rerank.salvage import embed_salvaging
from region_rerank.types import Candidate

if TYPE_CHECKING:
    import torch

    from region_rerank.images import ImageLoadOptions
    from region_rerank.scorers.base import Scorer

__all__ = ["EmbeddingCache", "candidate_key", "scorer_namespace", "pool_embeddings"]

logger = logging.getLogger(__name__)


_EXIF_ORIENTATION = 0x0112


def _field(h: Any, tag: bytes, data: bytes) -> None:
    """Feed one tagged, length-prefixed field into ``h`` (so field boundaries are part of
    the digest: text ``"a\\x00img..."`` can never pass for text ``"a"`` plus an image)."""
    h.update(tag)
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _update_with_image(h: Any, image: Any) -> None:
    """Feed an image's content (not its object identity) into the hash ``h``."""
    from PIL import Image

    if isinstance(image, Image.Image):
        # Everything that changes what load_image decodes: mode, size, palette, EXIF
        # orientation, transparency and the current frame, then the raw pixels.
        palette = image.palette
        header = (
            f"{image.mode}:{image.size}:{palette.mode if palette is not None else ''}:"
            f"{image.getexif().get(_EXIF_ORIENTATION)}:{image.info.get('transparency')!r}:"
            f"{getattr(image, 'n_frames', 1)}:{image.tell()}"
        )
        _field(h, b"pil", header.encode())
        _field(h, b"palette", palette.tobytes() if palette is not None else b"")
        _field(h, b"pixels", image.tobytes())
    elif isinstance(image, (bytes, bytearray, memoryview)):
        _field(h, b"bytes", bytes(image))
    elif isinstance(image, (str, Path)):
        text = str(image)
        path = _existing_file(text)
        if path is not None:
            _field(h, b"file", path.read_bytes())
        else:
            _field(h, b"str", text.encode("utf-8", "surrogatepass"))
    else:
        arr = image.detach().cpu().numpy() if hasattr(image, "detach") else image
        import numpy as np

        arr = np.ascontiguousarray(np.asarray(arr))
        _field(h, b"array", f"{arr.dtype}:{arr.shape}".encode())
        _field(h, b"data", arr.tobytes())


def _existing_file(text: str) -> Path | None:
    """The file ``text`` names, resolved as :func:`~region_rerank.images.load_image` does
    (surrounding whitespace, ``file://`` and ``~``), or ``None``."""
    stripped = text.strip()
    if stripped.startswith("file://"):
        stripped = stripped[len("file://") :]
    if len(stripped) >= 4096 or "\n" in stripped or not stripped:
        return None
    try:
        path = Path(stripped).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):  # e.g. a base64 string longer than a file name may be
        return None


def candidate_key(candidate: Candidate, namespace: str) -> str:
    """Content digest of ``candidate`` under ``namespace`` (scorer + embedding config)."""
    h = hashlib.blake2b(digest_size=20)
    _field(h, b"ns", namespace.encode("utf-8", "surrogatepass"))
    _field(h, b"text", (candidate.text or "").encode("utf-8", "surrogatepass"))
    for image in candidate.images:
        _field(h, b"img", b"")
        _update_with_image(h, image)
    return h.hexdigest()


_TOKENS_LOCK = threading.Lock()
_TOKEN_COUNTER = itertools.count()
#: id(scorer) -> (a reference to the scorer, its token). The identity check on lookup makes
#: a token follow the object, not its address: CPython reuses the id of a freed object.
_TOKENS: dict[int, tuple[Any, int]] = {}


def scorer_namespace(scorer: object) -> str:
    """The cache namespace of ``scorer``: its class, ``name`` and ``candidate_config``,
    plus a token unique to this object for the life of the process.

    Unlike ``id(scorer)``, the token of a garbage-collected scorer is never handed to a new
    one, so a cache shared between rerankers can never serve one scorer's embeddings to
    another. Scorers that cannot be weakly referenced are kept alive by this registry.
    """
    key = id(scorer)
    with _TOKENS_LOCK:
        entry = _TOKENS.get(key)
        if entry is None or entry[0]() is not scorer:
            try:
                ref: Any = weakref.ref(scorer)
            except TypeError:
                ref = _Pinned(scorer)
            entry = (ref, next(_TOKEN_COUNTER))
            _TOKENS[key] = entry
    return (
        f"{type(scorer).__module__}.{type(scorer).__qualname__}:{getattr(scorer, 'name', '')}:"
        f"#{entry[1]}:{getattr(scorer, 'candidate_config', '')}"
    )


class _Pinned:
    """A strong reference with the call interface of ``weakref.ref``."""

    def __init__(self, obj: object) -> None:
        self._obj = obj

    def __call__(self) -> object:
        return self._obj


class EmbeddingCache(PicklesWithoutLocks):
    """LRU cache from content key to a 1-D embedding tensor, bounded in bytes.

    Args:
        max_bytes: Upper bound of the summed ``tensor.nbytes`` of stored entries. ``0``
            disables caching.

    Values that are not finite 1-D tensors are refused by :meth:`put`. Entries found on
    read not to be finite 1-D floating-point tensors (of the expected length, when the
    reader gives one) -- e.g. a returned tensor modified in place -- are treated as corrupt:
    dropped, counted in :attr:`corrupt`, and recomputed by the reader.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        check_range("max_bytes", max_bytes, 0)
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.corrupt = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, dim: int | None = None) -> torch.Tensor | None:
        """Return the embedding for ``key`` (marking it recently used) or ``None``.

        The returned tensor is the stored one: treat it as read-only.

        Args:
            key: The content key.
            dim: The expected length; an entry of another length is corrupt.
        """
        import torch

        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            if (
                not isinstance(value, torch.Tensor)
                or value.ndim != 1
                or not value.is_floating_point()
                or (dim is not None and value.shape[0] != dim)
                # One reduction (NaN / inf propagate; a sum overflowing float32 is corrupt too):
                # about 4x cheaper than isfinite().all() on the per-candidate read path.
                or not math.isfinite(float(value.sum()))
            ):
                logger.warning(
                    "dropping corrupt cache entry %s (%s of shape %s)",
                    key,
                    getattr(value, "dtype", type(value).__name__),
                    tuple(getattr(value, "shape", ())),
                )
                self._bytes -= int(getattr(value, "nbytes", 0))
                del self._data[key]
                self.corrupt += 1
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store a detached copy of ``value``, evicting least-recently-used entries over
        the bound."""
        import torch

        size = value.nbytes
        if size > self.max_bytes:
            return
        if value.ndim != 1 or not bool(torch.isfinite(value).all()):
            logger.warning("refusing corrupt cache entry %s (shape %s)", key, tuple(value.shape))
            with self._lock:
                self.corrupt += 1
            return
        # A compact copy: a row of a scorer's batch output is a view that would keep the
        # whole batch alive (and share the caller's buffer) while counting as one row.
        stored = value.detach().clone()
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._data[key] = stored
            self._bytes += size
            while self._bytes > self.max_bytes and self._data:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1

    def clear(self) -> None:
        """Remove every entry (statistics are kept)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Hit / miss / eviction / corrupt counters, entries and bytes."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "corrupt": self.corrupt,
                "entries": len(self._data),
                "bytes": self._bytes,
            }


def pool_embeddings(
    scorer: Scorer,
    pools: list[list[Candidate]],
    cache: EmbeddingCache,
    *,
    dim: int,
    device: Any,
    batch_size: int,
    image_options: ImageLoadOptions | None = None,
    salvage: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Candidate embeddings of several pools, through ``cache``.

    Each distinct content is embedded at most once across all pools (``batch_size`` at a
    time) and stored in ``cache``. A candidate's precomputed ``embedding`` is used as given
    (L2-normalised). A candidate with no text, image or embedding is invalid.

    Args:
        scorer: The bi-encoder.
        pools: Candidate lists.
        cache: Where embeddings are looked up and stored.
        dim: Embedding dimension of the scorer (of the query views).
        device: Device of the returned matrices.
        batch_size: Candidates per ``embed_candidates`` call (halved on out-of-memory
            errors, see :func:`region_rerank.oom.map_batches`).
        image_options: Decoding policy for candidate images.
        salvage: On an image decoding error, score each candidate of the batch without its
            undecodable images (:mod:`region_rerank.salvage`) instead of raising; a
            candidate with nothing left is invalid.

    Returns:
        Per pool, a ``K x dim`` float32 matrix and a ``K`` boolean validity mask (on CPU).

    Raises:
        CandidateError: A precomputed embedding has the wrong dimension or is not finite.
        ScorerError: The scorer returned embeddings of the wrong shape.
    """
    import torch

    namespace = scorer_namespace(scorer)
    resolved: dict[str, torch.Tensor] = {}
    keys: list[list[str | None]] = []
    todo: dict[str, Candidate] = {}
    for pool in pools:
        row: list[str | None] = []
        for cand in pool:
            if cand.embedding is not None or not cand.has_content:
                row.append(None)
                continue
            key = candidate_key(cand, namespace)
            row.append(key)
            if key not in resolved and key not in todo:
                hit = cache.get(key, dim)
                if hit is None:
                    todo[key] = cand
                else:
                    resolved[key] = hit
        keys.append(row)
    items = list(todo.items())

    def embed(chunk: list[Candidate]) -> torch.Tensor:
        emb = scorer.embed_candidates(chunk, image_options)
        if tuple(emb.shape) != (len(chunk), dim):
            raise ScorerError(
                f"{getattr(scorer, 'name', type(scorer).__name__)}.embed_candidates returned "
                f"shape {tuple(emb.shape)} for {len(chunk)} candidates; the query views have "
                f"{dim} dimensions"
            )
        return emb

    def embed_chunk(chunk: list[Candidate]) -> list[tuple[torch.Tensor | None, bool]]:
        if salvage:
            return embed_salvaging(embed, chunk, image_options)
        return [(row, True) for row in embed(chunk)]

    batches = map_batches(
        embed_chunk, [c for _, c in items], batch_size, what="candidate embedding batch"
    )
    for (key, _), (vec, exact) in zip(items, itertools.chain.from_iterable(batches)):
        if vec is None:
            continue
        resolved[key] = vec
        if exact:
            cache.put(key, vec)
    outs, masks = [], []
    zero = torch.zeros(dim, device=device)
    for pool, row in zip(pools, keys):
        rows: list[torch.Tensor] = []
        ok = torch.ones(len(pool), dtype=torch.bool)
        for j, (cand, ckey) in enumerate(zip(pool, row)):
            if ckey is not None and ckey in resolved:
                rows.append(resolved[ckey].to(device))
            elif ckey is None and cand.embedding is not None:
                rows.append(_precomputed(cand, dim, device))
            elif ckey is not None:  # salvage found nothing usable (already logged)
                ok[j] = False
                rows.append(zero)
            else:
                logger.warning("candidate %r has no text, image or embedding; ranked last", cand.id)
                ok[j] = False
                rows.append(zero)
        outs.append(torch.stack(rows).float() if rows else torch.zeros(0, dim, device=device))
        masks.append(ok)
    return outs, masks


def _precomputed(cand: Candidate, dim: int, device: Any) -> torch.Tensor:
    import torch

    vec = torch.as_tensor(cand.embedding, dtype=torch.float32).reshape(-1).to(device)
    if vec.shape[0] != dim:
        raise CandidateError(
            f"candidate {cand.id!r}: precomputed embedding has {vec.shape[0]} dimensions, "
            f"the scorer's have {dim}"
        )
    if not bool(torch.isfinite(vec).all()):
        raise CandidateError(f"candidate {cand.id!r}: precomputed embedding is not finite")
    return vec / vec.norm().clamp_min(1e-12)
